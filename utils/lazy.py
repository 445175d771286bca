"""``torch = lazy_module("torch")``: a module imported on its first attribute access.

For the modules whose registrations the command line reads (``yoco/scores.py``, ``yoco/selection.py``): importing
them registers their entries without loading torch, so ``-h`` stays instant (tests/test_help.py); their
functions use the real module. The stand-in is not put into ``sys.modules``.
"""
import importlib
import types


class _LazyModule(types.ModuleType):
    def __getattr__(self, name):
        value = getattr(importlib.import_module(self.__name__), name)
        setattr(self, name, value)  # later look-ups find it directly
        return value


def lazy_module(name):
    """A stand-in for module ``name`` that imports it on first use (``torch.sort`` imports torch)."""
    return _LazyModule(name)
