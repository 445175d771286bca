"""The reference's module name for MDC's regulariser (``from reg_ipcx import Regularizer``): the code lives in
``condensation.mls`` (docs/algorithms.md, "MLS selection and freezing")."""
from condensation.mls.regularizer import *  # noqa: F401,F403
