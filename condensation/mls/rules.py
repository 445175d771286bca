"""The MLS selection rules of MDC Table 3 (``--mls_select``), one registered class each
(``condensation.mls.registry``; a new rule is one more class here, docs/contributing.md).

Arithmetic (the reference's, read from its ``condense_reg.py``/``reg_ipcx.py``): d̄ is float32 (computed by
``average_featlog``); Δ = |d̄_prev − d̄_cur| is computed in float32 (not rounded again) and a maximum is the
**first** one (smallest x among exact ties; the reference's unstable ``argsort`` has no tie rule). torch is
imported inside the functions: the command line imports this module for its choices (``-h`` stays torch-free).
"""
import random

from condensation.mls.registry import Rule, register_rule


def _first_max(values):
    """1 + the index of the first maximum of the float32 ``values`` (x of the subset IPC-x)."""
    import torch

    return 1 + int(torch.argmax(values))


@register_rule("change", help="largest change of the measure since the previous window (MDC)", default=True)
class Change(Rule):
    """Compare (MDC, reference ``reg_ipcx.py``, ``Regularizer.select_reg_ipc``): the first window (it = 1, or
    no previous d̄) picks x = 1; later windows the x whose d̄ changed most since the previous window."""

    def select(self, cur, it, prev):
        import torch

        if it == 1 or prev is None:
            return 1, None
        d = (torch.tensor(prev, dtype=torch.float32) - torch.tensor(cur, dtype=torch.float32)).abs()
        return _first_max(d), d.tolist()


@register_rule("distance", help="largest measure itself")
class Distance(Rule):
    """Calculate without Compare (MDC Table 3): the x with the largest d̄ itself, every window."""

    def select(self, cur, it, prev):
        import torch

        return _first_max(torch.tensor(cur, dtype=torch.float32)), None


@register_rule("random", help="a seeded random subset")
class Random(Rule):
    """Neither (MDC Table 3): a uniformly random x in 1..ipc−1 every window, drawn from a stream keyed by
    (key, it) only, so it does not touch the global RNG and survives a resume; it measures nothing."""
    needs_measure = False

    def select(self, cur, it, prev):
        return random.Random(f"mls:{self.key}:{int(it)}").randint(1, self.ipc - 1), None


__all__ = ["Change", "Distance", "Random"]
