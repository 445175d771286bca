"""MDC's adaptive subset loss: most-learnable-subset (MLS) selection and freezing (docs/algorithms.md).

The package itself is the torch-free MLS registry (``condensation.mls.registry``), complete: importing it
registers the selection rules (``rules.py``) and the measures (``measures.py``). The regulariser
(``regularizer.py``, torch) is imported by name; the reference's module name for it is ``reg_ipcx``."""
from condensation.mls import measures, registry, rules  # noqa: F401  (the entries register themselves)
from condensation.mls.registry import *  # noqa: F401,F403

__all__ = list(registry.__all__)
