"""Near-ties are decided as the reference code decides them (docs/algorithms.md#ties-and-randomness).

For every computation whose rounding or tie rule decides a discrete choice, near-tie inputs (values one ulp
apart, exact ties, inputs where two algebraically equal formulas round differently) go through our function
and through an independent re-derivation, written here, of the reference's operation sequence (MDC reference
``reg_ipcx.py``, ``select_reg_ipc`` and ``feat_loss_for_ipc_reg``; ``condense_reg.py``, the regulariser
update; YOCO reference ``generate_importance_score.py``, ``training_dynamics_metrics`` and ``LBPE``;
``ccs/core/data/Coreset.py``, ``stratified_sampling``; ``utils/img_loader.py``, ``load_data_path``). Fast tier,
CPU only.
"""
import numpy as np
import pytest
import torch

from condensation.matchloss import feature_distances
from condensation.mls.regularizer import Regularizer, average_featlog
from yoco.dynamics_stats import EpochStats
from yoco.scores import SCORES, top_epochs
from yoco.selection import PruneConfig, select_indices, stratified_sampling


def f32(x):
    """The float32 value of ``x`` as a python float."""
    return float(np.float32(x))


def ulp_up(x, k=1):
    v = np.float32(x)
    for _ in range(k):
        v = np.nextafter(v, np.float32(np.inf), dtype=np.float32)
    return float(v)


# ---- MDC: the MLS choice ---------------------------------------------------------------------------------------

def reference_change_pick(prev, cur):
    """MDC reference reg_ipcx.py, select_reg_ipc: float32 tensors of the python lists (the default dtype),
    |prev − cur|, ``torch.argsort(descending=True)[0]``, +1 for the x of IPC-x."""
    diff = torch.abs(torch.tensor(prev) - torch.tensor(cur))
    return 1 + int(torch.argsort(diff, descending=True)[0])


def ours_change_pick(prev, cur):
    reg = Regularizer(len(cur) + 1, adaptive_period=100)
    reg.select_reg_ipc(prev, it=1)  # the first window: x = 1, and ``prev`` becomes the previous vector
    return reg.select_reg_ipc(cur, it=100)


def float64_beats_float32_cases(n_cases=20, size=5):
    """Inputs where the float64 Δ and the float32 Δ have different first maxima (so a float64 rule fails)."""
    rng = np.random.default_rng(0)
    out = []
    while len(out) < n_cases:
        base = rng.uniform(0, 50, size)
        prev = base.tolist()
        cur = (base + rng.choice([-1, 1], size) * 0.37 + rng.uniform(-3e-6, 3e-6, size)).tolist()
        d64 = np.abs(np.array(prev) - np.array(cur))
        if int(np.argmax(d64)) + 1 != reference_change_pick(prev, cur):
            out.append((prev, cur))
    return out


def test_mls_change_rule_is_the_references_float32_first_maximum():
    cases = float64_beats_float32_cases()
    # exact ties of Δ (the reference's CPU argsort of <= 9 values is an insertion sort: the first maximum)
    cases += [([1.0, 2.0, 3.0, 4.0], [1.5, 2.5, 3.5, 4.5]), ([0.0] * 9, [0.25] * 9),
              ([5.0, 5.0, 5.0], [4.0, 6.0, 4.0]), ([f32(0.1), f32(0.2)], [f32(0.2), f32(0.1)])]
    # Δ one ulp apart, the larger one last
    a = f32(1.3)
    cases += [([0.0, 0.0, 0.0], [a, -a, -ulp_up(a)]), ([10.0] * 4, [10.0 + a, 10.0 - a, 10.0, ulp_up(10.0 + a)])]
    for prev, cur in cases:
        assert ours_change_pick(prev, cur) == reference_change_pick(prev, cur), (prev, cur)


def test_mls_distance_rule_first_maximum():
    reg = Regularizer(6, select="distance")
    cur = [1.0, ulp_up(1.0), ulp_up(1.0), 0.5, ulp_up(1.0)]
    assert reg.select_reg_ipc(cur, it=1) == 2  # the first of the exact maxima, not the last


def reference_dbar(loss_list_per_class, nclass, inner_loop, class_wise):
    """MDC reference condense_reg.py, the regulariser update at the end of a window iteration."""
    if class_wise:
        return [torch.round(torch.sum(torch.tensor(log), axis=0) / inner_loop, decimals=2).tolist()
                for log in loss_list_per_class]
    flat = torch.Tensor(loss_list_per_class).reshape(-1, len(loss_list_per_class[0][0]))
    g = torch.round(torch.sum(flat, axis=0) / nclass / inner_loop, decimals=2).tolist()
    return [g for _ in loss_list_per_class]


def test_dbar_is_the_references_float32_average_and_rounding():
    rng = np.random.default_rng(1)
    C, steps, n = 10, 10, 9
    logs = [[[f32(v) for v in rng.uniform(30, 40, n)] for _ in range(steps)] for _ in range(C)]
    # values at a rounding boundary of 2 decimals: x.xx5 ± one ulp, where float64 and float32 means differ
    for c in range(C):
        logs[c][0][0] = f32(32.225)
        logs[c][1][1] = ulp_up(32.225)
    for cw in (False, True):
        assert average_featlog(logs, C, steps, class_wise=cw) == reference_dbar(logs, C, steps, cw)


def test_dbar_then_pick_end_to_end():
    """Many random windows: our d̄ and MLS equal the reference's at every window (ties and near-ties included:
    d̄ is rounded to 2 decimals, so equal Δ are common)."""
    rng = np.random.default_rng(2)
    C, steps, ipc = 4, 3, 6
    reg_ref_prev = None
    regs = [Regularizer(ipc) for _ in range(C)]
    for it in (1, 100, 200, 300, 400, 500):
        logs = [[[f32(v) for v in rng.uniform(1, 1.1, ipc - 1)] for _ in range(steps)] for _ in range(C)]
        ours = average_featlog(logs, C, steps)
        ref = reference_dbar(logs, C, steps, False)
        assert ours == ref
        picks = [r.select_reg_ipc(d, it=it) for r, d in zip(regs, ours)]
        want = 1 if reg_ref_prev is None else reference_change_pick(reg_ref_prev, ref[0])
        assert picks == [want] * C
        reg_ref_prev = ref[0]


class SpyNet(torch.nn.Module):
    """A per-sample network whose ``get_feature`` records the batch sizes it is called with (two layers)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.randn(12, 7, generator=g)
        self.w2 = torch.randn(7, 5, generator=g)
        self.calls = []

    def get_feature(self, x, idx_from, idx_to=-1):
        self.calls.append(x.shape[0])
        h1 = torch.tanh(x.flatten(1) @ self.w1)
        return [h1, torch.tanh(h1 @ self.w2)]


def test_feature_distances_are_the_references_two_forwards():
    """MDC reference reg_ipcx.py, feat_loss_for_ipc_reg: a forward of the real batch, one of the synthetic
    batch, then per prefix Σ_ℓ dist(real.mean(0), syn[list(range(n))].mean(0)) (add_loss), ``.item()``."""
    g = torch.Generator().manual_seed(3)
    real, syn = torch.randn(16, 3, 2, 2, generator=g), torch.randn(12, 3, 2, 2, generator=g)
    sizes = [4, 8]
    m = SpyNet()
    got = feature_distances(m, real, syn, sizes, 0, -1, "mse")
    assert m.calls == [16, 12]  # not one forward of cat(real, syn): kernels are chosen per batch size
    m.calls.clear()
    with torch.no_grad():
        ft, fs = m.get_feature(real, 0), m.get_feature(syn, 0)
    ref = []
    for n in sizes:
        loss = None
        for i in range(len(fs)):
            d = (ft[i].mean(0) - fs[i][list(range(n))].mean(0)).pow(2).sum()
            loss = d if loss is None else loss + d
        ref.append(loss.item())
    assert got == ref


# ---- YOCO: the dynamics statistics and the scores -------------------------------------------------------------

def test_correctness_is_the_argmax_of_the_probabilities():
    """YOCO reference generate_importance_score.py, training_dynamics_metrics: ``exp(output).argmax(1)``. Two
    float32 log-probabilities one ulp apart can have the same float32 exp: the tie goes to the first class."""
    x = np.float32(-0.75)
    found = None
    for _ in range(10000):  # the first x whose next float32 has the same float32 exp
        nx = np.nextafter(x, np.float32(0), dtype=np.float32)
        if torch.tensor([float(x)]).exp().item() == torch.tensor([float(nx)]).exp().item():
            found = (float(x), float(nx))
            break
        x = nx
    assert found is not None
    lo, hi = found  # hi > lo, exp(hi) == exp(lo)
    lp = torch.tensor([[lo, hi, -3.0], [hi, lo, -3.0], [-3.0, lo, hi]])
    y = torch.tensor([1, 0, 2])  # the class of the larger log-probability
    ref = torch.exp(lp.float()).argmax(dim=1) == y
    assert EpochStats.from_logp(lp, y).correct.tolist() == ref.tolist() == [False, True, False]


def test_el2n_is_the_references_epoch_by_epoch_sum():
    """YOCO reference generate_importance_score.py, LBPE: a float32 zero vector, ``+=`` one epoch at a time.
    A CPU ``sum(0)`` over the epochs groups them differently (it differs here on some samples)."""
    for n in (17, 257, 1000):  # the CPU reduction's grouping depends on the row length
        g = torch.Generator().manual_seed(4)
        err = torch.rand(12, n, generator=g) ** 4
        ref = torch.zeros(n)
        for e in range(10):
            ref[torch.arange(n)] += err[e]
        d = SCORES["el2n"].fn(error_norms=err)
        assert torch.equal(d["el2n"], ref) and d["el2n"] is d["LBPE_0_10"]
    short = torch.rand(3, 5, generator=g)  # fewer than 10 epochs: those available
    assert torch.equal(SCORES["el2n"].fn(error_norms=short)["el2n"], (short[0] + short[1]) + short[2])


def test_lbpe_epochs_near_ties_follow_the_values():
    """YOCO reference generate_importance_score.py, compute_topk: ``correct_num[:stop].topk(k)`` and, with
    --use-loss, ``(loss_epoch * -1)[:stop].topk(k)``. Values one ulp apart are ordered by value (exact ties:
    lower epoch first, docs/algorithms.md#el2n-and-lbpe)."""
    base = 2.5
    loss = torch.tensor([ulp_up(base, k) for k in (3, 0, 5, 1, 4, 2)])
    for k in (1, 3, 6):
        assert top_epochs(loss, k, largest=False) == (loss.clone() * (-1)).topk(k)[1].tolist()
    cn = torch.tensor([5, 9, 7, 8, 6], dtype=torch.int32)
    assert top_epochs(cn, 3) == cn.topk(3)[1].tolist()


# ---- YOCO: the selection -------------------------------------------------------------------------------------

def ulp_scores(n, seed):
    """``n`` distinct float32 scores in a few clusters of values one ulp apart, shuffled."""
    rng = np.random.default_rng(seed)
    vals = [ulp_up(c, k) for c in (0.5, 1.0, 3.0) for k in range(n // 3 + 1)][:n]
    rng.shuffle(vals)
    return torch.tensor(vals, dtype=torch.float32)


def reference_ranked(s, M, use_hard, key):
    """YOCO reference utils/img_loader.py, load_data_path (no CCS): ``argsort(descending=True)``, AUM's use_hard
    flipped, the first M (hard) or the last M (easy). With distinct values its order is fully determined."""
    if key == "accumulated_margin":
        use_hard = not use_hard
    order = s.argsort(descending=True)
    return order[:M] if use_hard else order[-M:]


@pytest.mark.parametrize("key", ["el2n", "accumulated_margin", "entropy"])
@pytest.mark.parametrize("use_hard", [True, False])
def test_ranked_selection_near_ties(key, use_hard):
    N, C, f = 40, 2, 2
    s = ulp_scores(N, seed=5)
    cfg = PruneConfig(score_key=key, balance=False, use_hard=use_hard, stratified=False, random_selection=False,
                      prune_score_ratio=0.0)
    got = select_indices({key: s}, cfg, N=N, C=C, ipc_f=5, ipc_t=1, factor=f)
    ref = reference_ranked(s, 8, use_hard, key)
    assert sorted(got.tolist()) == sorted(ref.tolist())
    if use_hard != (key == "accumulated_margin"):  # the hard end of a descending sort: the same order too
        assert got.tolist() == ref.tolist()


def reference_stratified(score, coreset_num, stratas=50):
    """YOCO reference ccs/core/data/Coreset.py, stratified_sampling (first candidates): float32 bounds
    min + k·step, sizes as a tensor ordered by ``torch.argsort``, min(n_k, rest // bins_left)."""
    min_score = torch.min(score)
    max_score = torch.max(score) * 1.0001
    step = (max_score - min_score) / stratas
    nums = torch.tensor([int(torch.logical_and(score >= min_score + k * step,
                                               score < min_score + (k + 1) * step).sum()) for k in range(stratas)])
    order = torch.argsort(nums)
    rest, budgets = coreset_num, torch.zeros(stratas, dtype=torch.int64)
    for i, b in enumerate(order.tolist()):
        cur = min(int(nums[b]), rest // (stratas - i))
        budgets[b] = cur
        rest -= cur
    idx = torch.arange(score.shape[0])
    out = []
    for k in range(stratas):
        mask = torch.logical_and(score >= min_score + k * step, score < min_score + (k + 1) * step)
        out += idx[mask][:int(budgets[k])].tolist()
    return out


def test_ccs_strata_edges_near_ties():
    """Scores exactly on a float32 stratum edge and one ulp either side: each lands in the stratum the
    reference's float32 comparisons give (a float64 edge would move some)."""
    g = torch.Generator().manual_seed(6)
    s = torch.rand(300, generator=g) * 3 + 0.1
    mx = s.max()
    lo, hi = s.min(), mx * 1.0001
    w = (hi - lo) / 50
    edges = [float(lo + k * w) for k in range(1, 50)]
    extra = [v for e in edges for v in (e, ulp_up(e), float(np.nextafter(np.float32(e), np.float32(0))))]
    s = torch.cat([s, torch.tensor(extra)])
    s = s[torch.randperm(s.numel(), generator=g)]
    s = s[s <= mx]  # the bounds stay those of the 300 scores
    s_sorted = s.sort(descending=True).values
    for budget in (40, 123):
        assert stratified_sampling(s_sorted, budget).tolist() == reference_stratified(s_sorted, budget)
    # float64 edges would classify some of these values differently: the case tells the two apart
    d = s_sorted.double()
    lo64, w64 = float(s_sorted.min()), (float(s_sorted.max()) * 1.0001 - float(s_sorted.min())) / 50
    k32 = [int(((s_sorted >= lo + k * w) & (s_sorted < lo + (k + 1) * w)).sum()) for k in range(50)]
    k64 = [int(((d >= lo64 + k * w64) & (d < lo64 + (k + 1) * w64)).sum()) for k in range(50)]
    assert k32 != k64
