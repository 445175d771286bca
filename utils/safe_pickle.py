"""Reading the reference's pickle formats without running code from the file.

The YOCO reference stores its training-dynamics logs (``td-ipc{IPC}.pickle``) and score files
(``data-score-ipc{IPC}-ep{E}.pickle``) with ``pickle.dump``, and CIFAR ships its batches as pickles;
users download such files from others. ``pickle.load`` would call any callable the file names, so
these files are read by ``RestrictedUnpickler``, which admits only what those formats contain:
builtin containers and numbers, ``collections.OrderedDict``, numpy arrays, dtypes and scalars, and torch
tensors. A torch tensor pickles its storage as ``torch.storage._load_from_bytes(bytes)``, i.e. a nested
``torch.load``; that call is replaced by ``torch.load(..., weights_only=True)``. Anything else is
refused with a one-line ``UserError`` naming the file and the refused global, before it is called.
"""
import io
import pickle

import torch

from utils.errors import UserError


def _storage_from_bytes(data):
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


def _allowed():
    """(module, name) -> the callable the unpickler may use."""
    import collections

    import numpy as np

    core = getattr(np, "_core", None) or np.core  # numpy 2.x / 1.x
    table = {("collections", "OrderedDict"): collections.OrderedDict,
             ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
             ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
             ("torch.storage", "_load_from_bytes"): _storage_from_bytes,
             ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):  # files written by numpy 1.x or 2.x
        table[(mod, "_reconstruct")] = core.multiarray._reconstruct
        table[(mod, "scalar")] = core.multiarray.scalar
    return table


class RefusedGlobal(pickle.UnpicklingError):
    pass


class RestrictedUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` whose ``find_class`` admits only the globals of the reference formats."""

    def __init__(self, f, **kw):
        super().__init__(f, **kw)
        self._table = _allowed()

    def find_class(self, module, name):
        fn = self._table.get((module, name))
        if fn is None:
            raise RefusedGlobal(f"{module}.{name}")
        return fn


def load_pickle(path, what, **kw):
    """Unpickle ``path`` (a ``what``, for messages) with ``RestrictedUnpickler``; every failure is a
    one-line ``UserError``: a refused global, a truncated or damaged file."""
    try:
        with open(path, "rb") as f:
            return RestrictedUnpickler(f, **kw).load()
    except RefusedGlobal as e:
        raise UserError(f"{path}: refused to load this {what}: it asks to call {e}, which a {what} never "
                        "contains (loading it could run code); use a file produced by this project or the "
                        "reference code")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            RuntimeError) as e:
        why = str(e).splitlines()[0] if str(e) else "unexpected end of file"
        raise UserError(f"{path}: cannot read this {what} ({type(e).__name__}: {why}); the file is truncated or "
                        "damaged: regenerate it")
