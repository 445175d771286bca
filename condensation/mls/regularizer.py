"""MDC regulariser: MLS selection and freezing (reference he-y/Multisize-Dataset-Condensation/reg_ipcx.py;
docs/algorithms.md#mls-selection-and-freezing; module name kept from upstream).

Per class c there is one ``Regularizer``. Each outer iteration t:

* at every per-class update: ``reg.update_status(t)``; F = ``reg.get_freeze_ipc()``; if F > 0 the
  first F·f² decoded crops are detached; the subset term uses ``reg.regularized()`` (≤ 1 MLS);
* during window iterations (``is_window(t, P)``) a measure of every prefix subset is logged per inner
  step (``--mls_metric``: the feature distance d_x of docs/algorithms.md#feature-distance-per-subset (MDC reference
  reg_ipcx.py, feat_loss_for_ipc_reg) by default);
* at the end of a window iteration: d̄ = ``average_featlog(...)`` and, for every class,
  ``reg.select_reg_ipc(d̄[c], it=t + 1)`` (MDC reference reg_ipcx.py, select_reg_ipc; docs/algorithms.md#mls-selection).

Arithmetic (the reference's, read from its ``condense_reg.py``/``reg_ipcx.py``): d̄ is the float32 sum
of the logged float32 values over classes and steps, divided by nclass and then by inner_loop in
float32 and rounded to 2 decimals by ``torch.round(·, decimals=2)``; Δ = |d̄_prev − d̄_cur| is computed
in float32 (not rounded again) and the MLS is the **first** maximum (smallest x among exact ties;
the reference's unstable ``argsort`` has no tie rule, mdc 13 in docs/reference-differences.md#bugs-fixed).

Ablation switches of the adaptive subset loss (MDC Table 3; the defaults are MDC):

* ``select``: the selection rule, an entry of ``condensation.mls.RULES`` (``condensation/mls/rules.py``:
  ``change``, the reference's Compare; ``distance``; ``random``), which picks the MLS from d̄; this class
  keeps the freezing and the bookkeeping common to every rule (quit[x], the d̄ history, the logged Δ);
* ``freeze=False``: finished subsets are never frozen (``get_freeze_ipc`` is always −1).
"""
from dataclasses import asdict, dataclass

import torch

from condensation.mls.registry import RULES
from utils.errors import UserError


def is_window(t, period):
    """Measurement window (docs/algorithms.md#windows-and-save-points): t == 0 or (t + 1) % P == 0."""
    return t == 0 or (t + 1) % period == 0


def subset_prefix_sizes(ipc, factor):
    """Decoded prefix length of every subset IPC-x, x = 1..ipc-1: [x·f²] (MDC reference condense_reg.py;
    docs/algorithms.md#multi-formation-and-subsets, #the-condensation-loop)."""
    f2 = max(1, int(factor)) ** 2
    return [x * f2 for x in range(1, ipc)]


def check_mdc_args(ipc, factor=1, decode_type="single", batch_syn_max=None):
    """Preconditions of MDC (mdc 3 in docs/reference-differences.md#bugs-fixed; docs/algorithms.md#mdc-preconditions);
    raise UserError when violated."""
    if ipc is None or ipc < 2:
        raise UserError(f"--adaptive_reg True needs --ipc >= 2 (got {ipc}): MDC trains the subsets "
                        "IPC-1..IPC-(ipc-1) of one condensed set")
    if decode_type != "single":
        raise UserError(f"--adaptive_reg True needs --decode_type single (got {decode_type}): "
                        "prefix subsets are undefined otherwise (docs/algorithms.md#mdc-preconditions)")
    f2 = max(1, int(factor)) ** 2
    if batch_syn_max is not None and ipc * f2 > batch_syn_max:
        raise UserError(f"--adaptive_reg True needs ipc*factor^2 = {ipc * f2} <= --batch_syn_max "
                        f"{batch_syn_max}: subsampling would break the prefix subsets (docs/algorithms.md#mdc-preconditions)")


@dataclass
class RegularizedIPC:
    """State of subset IPC-x (MDC reference reg_ipcx.py; docs/algorithms.md#freezing). ``iteration`` is quit[x] (−1 =
    never selected)."""
    ipcx: int
    iteration: int = -1
    regularize: bool = False
    keep_freeze: bool = False


class Regularizer:
    """MLS bookkeeping of one class (MDC reference reg_ipcx.py; docs/algorithms.md#mls-selection-and-freezing)."""

    def __init__(self, ipc, adaptive_period=100, select="change", freeze=True, random_key=0, hparams=None):
        check_mdc_args(ipc)
        if int(adaptive_period) < 1:
            raise UserError(f"--adaptive_period must be >= 1 (got {adaptive_period})")
        self.ipc = int(ipc)
        self.adaptive_period = int(adaptive_period)
        self.select, self.freeze, self.random_key = select, bool(freeze), random_key
        # the rule's own object (its hyper-parameters ``hparams``, {name: value}, and its state)
        self.rule = RULES.of(select)(self.ipc, random_key, **(hparams or {}))
        self.reg_list = [RegularizedIPC(x) for x in range(self.ipc + 1)]  # x = 0..ipc
        self.prev_ipcx_list = []   # MLS of the previous selection (≤ 1 element)
        self.prev = None           # previous d̄ vector (length ipc-1)
        self.history = []          # every d̄ vector used for a selection
        self.last_delta = None     # Δ of the last selection (None for a first-window selection)
        self.selections = []       # [it, mls] pairs, for logging

    # ---- MDC reference reg_ipcx.py; docs/algorithms.md#freezing ------------------------------------------------------
    def update_status(self, t):
        """At every per-class update: x with quit[x] == t stops being regularised, becomes
        frozen-eligible (keep_freeze is never cleared). Idempotent."""
        for r in self.reg_list:
            if r.iteration == t:
                r.regularize = False
                r.keep_freeze = True

    def regularized(self):
        """Active MLS (list, ≤ 1 element) whose subset loss is added (MDC reference reg_ipcx.py,
        grad_loss_for_img_update; docs/algorithms.md#adaptive-subset-loss)."""
        return [r.ipcx for r in self.reg_list if r.regularize]

    def get_freeze_ipc(self):
        """Largest finished x below the smallest active MLS; −1 if none, if no MLS is active or with
        freezing off (``freeze=False``, MDC Table 3)."""
        active = self.regularized()
        if not active or not self.freeze:
            return -1
        below = [r.ipcx for r in self.reg_list if r.keep_freeze and r.ipcx < min(active)]
        return max(below) if below else -1

    # ---- MDC reference reg_ipcx.py, select_reg_ipc; docs/algorithms.md#mls-selection ---------------------------------
    def select_reg_ipc(self, dbar_cur, it):
        """Pick the MLS from d̄ (length ipc−1, index i ↔ x = i+1) at iteration ``it`` = t+1.

        The rule picks the MLS from d̄ and the previous window's d̄ (``condensation/mls/rules.py``: ``change``,
        x = 1 when it == 1 or there is no previous vector, else the first maximum of the float32 |Δ|;
        ``distance``: the first maximum of d̄; ``random``: a keyed random x). Sets quit[MLS] = it + P.
        Returns the MLS.
        """
        cur = [float(v) for v in dbar_cur]
        if len(cur) != self.ipc - 1 and self.rule.needs_measure:
            raise ValueError(f"select_reg_ipc: need {self.ipc - 1} distances, got {len(cur)}")
        mls, delta = self.rule.select(cur, it, self.prev)
        if not 1 <= mls < self.ipc:
            raise ValueError(f"--mls_select {self.select} chose IPC-{mls}; a subset is IPC-1..IPC-{self.ipc - 1}")
        for x in self.prev_ipcx_list:    # un-regularise the previous selection
            self.reg_list[x].regularize = False
        self.prev_ipcx_list = [mls]
        self.reg_list[mls].regularize = True
        self.reg_list[mls].iteration = it + self.adaptive_period
        self.history.append(cur)
        self.prev = cur
        self.last_delta = delta
        self.selections.append([int(it), mls])
        return mls

    # ---- resume (JSON-serialisable, no pickle) -------------------------------------------------
    def state_dict(self):
        """The regulariser's state, then the rule's own (``rule_state``) when it has one: the checkpoint of a
        stateless rule (every rule of MDC Table 3) is the one written before the rules were entries."""
        state = {"ipc": self.ipc, "adaptive_period": self.adaptive_period,
                 "reg_list": [asdict(r) for r in self.reg_list],
                 "prev_ipcx_list": list(self.prev_ipcx_list),
                 "prev": None if self.prev is None else list(self.prev),
                 "history": [list(h) for h in self.history],
                 "last_delta": None if self.last_delta is None else list(self.last_delta),
                 "selections": [list(s) for s in self.selections]}
        own = self.rule.state_dict()
        if own:
            state["rule_state"] = own
        return state

    def load_state_dict(self, state):
        if int(state["ipc"]) != self.ipc:
            raise UserError(f"regulariser state is for --ipc {state['ipc']}, this run has "
                            f"--ipc {self.ipc}")
        self.adaptive_period = int(state["adaptive_period"])
        self.reg_list = [RegularizedIPC(int(r["ipcx"]), int(r["iteration"]), bool(r["regularize"]),
                                        bool(r["keep_freeze"])) for r in state["reg_list"]]
        self.prev_ipcx_list = [int(x) for x in state["prev_ipcx_list"]]
        self.prev = None if state["prev"] is None else [float(v) for v in state["prev"]]
        self.history = [[float(v) for v in h] for h in state["history"]]
        self.last_delta = (None if state["last_delta"] is None
                           else [float(v) for v in state["last_delta"]])
        self.selections = [[int(a), int(b)] for a, b in state.get("selections", [])]
        self.rule.load_state_dict(state.get("rule_state", {}))

    def __repr__(self):
        return (f"Regularizer(ipc={self.ipc}, P={self.adaptive_period}, select={self.select}, freeze={self.freeze}, "
                f"mls={self.regularized()}, freeze={self.get_freeze_ipc()})")


def average_featlog(featlog_per_class, nclass, inner_loop, class_wise=False):
    """d̄ per class from the window's log (MDC reference reg_ipcx.py, select_reg_ipc; docs/algorithms.md#mls-selection),
    in the reference's float32 arithmetic.

    ``featlog_per_class[c]`` is the list of d-vectors (length ipc−1) logged at each inner step.
    Global: the float32 sum over all classes and steps, / nclass, / inner_loop, rounded to 2 dp,
    returned (as copies) for every class. Class-wise: class c's sum / inner_loop, rounded to 2 dp.
    The values returned are the float32 results as Python floats (e.g. 32.22999954223633).
    """
    vecs = [list(v) for log in featlog_per_class for v in log]
    if not vecs:
        raise ValueError("average_featlog: empty feature-distance log")
    n = len(vecs[0])
    if any(len(v) != n for v in vecs):
        raise ValueError("average_featlog: d-vectors of different lengths")
    if not class_wise:
        total = torch.tensor(vecs, dtype=torch.float32).reshape(-1, n).sum(0)
        g = torch.round(total / nclass / inner_loop, decimals=2).tolist()
        return [list(g) for _ in featlog_per_class]
    return [torch.round(torch.tensor(log, dtype=torch.float32).sum(0) / inner_loop, decimals=2).tolist()
            for log in featlog_per_class]


__all__ = ["is_window", "subset_prefix_sizes", "check_mdc_args", "RegularizedIPC", "Regularizer",
           "average_featlog"]
