"""yoco/selection.py: --pruning_key grammar (reference he-y/you-only-condense-once/argument.py;
docs/algorithms.md#pruning-key-resolution) and selection rules (YOCO reference utils/img_loader.py, load_data_path;
docs/algorithms.md#selection-rules)."""
import os
import random

import pytest
import torch

from utils.errors import UserError
from yoco.selection import (CCS_RATIOS, PruneConfig, allocate_budget, resolve_pruning_key, select_indices,
                              stratified_sampling)


def R(key, ipc_f=10, ipc_t=1, topk=10, dataset="cifar10", **kw):
    c = resolve_pruning_key(key, ipc_f=ipc_f, ipc_t=ipc_t, topk=topk, dataset=dataset, **kw)
    return c.score_key, c.balance, c.use_hard, c.stratified, c.random_selection


# ---------------------------------------------------------------------------------------------------
# the resolution table (docs/algorithms.md#pruning-key-resolution): (key) -> (score key, balance, use_hard, stratified,
# random)
TABLE = [
    ("random", (None, False, False, False, True)),
    ("random_balance", (None, True, False, False, True)),
    ("ssp", ("imbalance_kmeans_1", False, False, False, False)),
    ("ssp_imbalance", ("imbalance_kmeans_1", False, False, False, False)),
    ("ssp_balance", ("kmeans_1", True, False, False, False)),
    ("entropy", ("entropy", False, True, False, False)),
    ("accumulated_margin", ("accumulated_margin", False, True, False, False)),
    ("accumulated_margin_easy", ("accumulated_margin", False, False, False, False)),
    ("forgetting", ("forgetting", False, True, False, False)),
    ("forgetting_easy", ("forgetting", False, False, False, False)),
    ("el2n", ("el2n", False, True, False, False)),
    ("el2n_easy", ("el2n", False, False, False, False)),
    ("el2n_hard", ("el2n", False, True, False, False)),
    ("entropy_balance", ("entropy", True, True, False, False)),
    ("entropy_imbalance", ("entropy", False, True, False, False)),
    ("forgetting_easy_balance", ("forgetting", True, False, False, False)),
    ("ccs", ("el2n", False, False, True, False)),
    ("ccs_balance", ("el2n", False, False, True, False)),  # key replaced entirely: suffix lost (B8)
    ("yoco", ("LBPE_top10", True, False, False, False)),
    ("yoco_imbalance", ("LBPE_top10", False, False, False, False)),
    ("yoco_balance", ("LBPE_top10", True, False, False, False)),
    ("yoco_hard", ("LBPE_top10", True, True, False, False)),
    # modifiers in either order (the reference's substring tests; its README: forgetting_balance_easy)
    ("forgetting_balance_easy", ("forgetting", True, False, False, False)),
    ("el2n_imbalance_hard", ("el2n", False, True, False, False)),  # "_balance" does not match in "_imbalance"
    ("el2n_balance_hard", ("el2n", True, True, False, False)),
    ("yoco_imbalance_easy", ("LBPE_top10", False, False, False, False)),
    ("ssp_balance_easy", ("kmeans_1", True, False, False, False)),
    ("ssp_imbalance_hard", ("imbalance_kmeans_1", False, True, False, False)),
    ("random_balance_hard", (None, True, True, False, True)),
]


@pytest.mark.parametrize("key,expected", TABLE)
def test_resolution_table(key, expected):
    assert R(key) == expected


def test_resolution_depends_on_ipc_t_and_topk():
    assert R("ssp", ipc_f=10, ipc_t=2)[0] == "imbalance_kmeans_2"
    assert R("ssp_balance", ipc_f=50, ipc_t=5)[0] == "kmeans_5"
    assert R("yoco", topk=3)[0] == "LBPE_top3"
    assert R("yoco_imbalance", topk=3)[:2] == ("LBPE_top3", False)


def test_ccs_ratio_table_and_override():
    assert len(CCS_RATIOS) == 23
    cfg = resolve_pruning_key("ccs", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")
    assert cfg.prune_score_ratio == 0.3
    assert resolve_pruning_key("ccs", ipc_f=20, ipc_t=5, topk=10, dataset="cifar100").prune_score_ratio == 0.3
    assert resolve_pruning_key("ccs", ipc_f=10, ipc_t=2, topk=10, dataset="imagenet").prune_score_ratio == 0.2
    with pytest.raises(UserError, match=r"dataset=cifar10, IPC_F=20, IPC_T=1.*--prune_score_ratio"):
        resolve_pruning_key("ccs", ipc_f=20, ipc_t=1, topk=10, dataset="cifar10")
    ok = resolve_pruning_key("ccs", ipc_f=20, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=0.2)
    assert ok.prune_score_ratio == 0.2
    with pytest.raises(UserError):
        resolve_pruning_key("ccs", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=1.5)
    assert resolve_pruning_key("el2n", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10").prune_score_ratio == 0.0


def _keys_in_both_orders():
    for base in ("random", "ssp", "entropy", "accumulated_margin", "forgetting", "el2n", "ccs", "yoco"):
        for h in ("_hard", "_easy"):
            for b in ("_balance", "_imbalance"):
                yield base + h + b, base + b + h


def test_modifier_order_does_not_matter():
    """The YOCO reference's argument.py (docs/algorithms.md#pruning-key-resolution) tests the modifiers by substring, so
    both orders resolve alike (78 keys were
    refused before); the configurations and the selected indices are identical."""
    g = torch.Generator().manual_seed(0)
    scores = {k: torch.rand(16, generator=g) for k in ("entropy", "accumulated_margin", "forgetting", "el2n",
                                                        "LBPE_top10")}
    scores.update({"imbalance_kmeans_1": [3, 9, 1, 0, 15, 8, 2, 4], "kmeans_1": [0, 1, 2, 3, 8, 9, 10, 11]})
    pairs = list(_keys_in_both_orders())
    assert len(pairs) == 32
    for a, b in pairs:
        r = 0.25 if a.startswith("ccs") else None  # the cut-off is read by ccs only
        ca = resolve_pruning_key(a, ipc_f=2, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=r)
        cb = resolve_pruning_key(b, ipc_f=2, ipc_t=1, topk=10, dataset="cifar10", prune_score_ratio=r)
        assert ca == cb, (a, b)
        assert sel(a, scores, ratio=r, seed=1) == sel(b, scores, ratio=r, seed=1), (a, b)


@pytest.mark.parametrize("key", ["el2n_hard_easy", "el2n_balance_imbalance", "el2n_easy_easy",
                                 "el2n_balance_balance", "el2n_hard_balance_easy", "el2n_sideways",
                                 "random_sideways", "el2n_balance_x", "balance_el2n", "yoco_"])
def test_unknown_modifiers_refused(key):
    with pytest.raises(UserError, match=r"unknown --pruning_key .*either order") as e:
        R(key)
    assert "\n" not in str(e.value)  # the one-line refusal listing the grammar


def test_resolution_errors():
    with pytest.raises(UserError, match="yoco"):
        R("herding")
    with pytest.raises(UserError):
        R("LBPE_top10")  # score keys are not pruning keys
    with pytest.raises(UserError):
        R("yoco", ipc_f=10, ipc_t=10)
    with pytest.raises(UserError):
        R("yoco", ipc_f=10, ipc_t=0)


# ---------------------------------------------------------------------------------------------------
# selection (docs/algorithms.md#selection-rules). Toy decoded set: C=2, IPC_F=2, f=2 -> n_c=8, N=16; IPC_T=1 -> m=4,
# M=8.
GEOM = dict(N=16, C=2, ipc_f=2, ipc_t=1, factor=2)


def sel(key, scores, **kw):
    cfg = resolve_pruning_key(key, ipc_f=2, ipc_t=1, topk=10, dataset="cifar10",
                              prune_score_ratio=kw.pop("ratio", None))
    return select_indices(scores, cfg, **GEOM, **kw).tolist()


def ramp(key):
    return {key: torch.arange(16, dtype=torch.float32)}  # class 1 (indices 8..15) scores higher


def test_balanced_vs_imbalanced():
    assert sorted(sel("el2n", ramp("el2n"))) == list(range(8, 16))  # global hardest: all class 1
    assert sel("el2n_balance", ramp("el2n")) == [7, 6, 5, 4, 15, 14, 13, 12]  # quota m=4 per class
    assert sel("el2n_easy", ramp("el2n")) == list(range(8))  # global easiest: all class 0
    s = {"LBPE_top10": torch.arange(16, dtype=torch.float32)}
    assert sel("yoco", s) == [0, 1, 2, 3, 8, 9, 10, 11]  # per class the m lowest LBPE
    assert sel("yoco_imbalance", s) == list(range(8))


def test_yoco_worked_example_counts():
    # CIFAR-10, IPC_F 10 -> IPC_T 1, f=2 (docs/algorithms.md#selection-rules): N=400, 4 per class, 40 total
    g = torch.Generator().manual_seed(0)
    s = {"LBPE_top10": torch.rand(400, generator=g) + torch.arange(400) // 40}  # class c scores in [c, c+1)
    cfg = resolve_pruning_key("yoco", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")
    idx = select_indices(s, cfg, N=400, C=10, ipc_f=10, ipc_t=1, factor=2)
    assert torch.bincount(idx // 40, minlength=10).tolist() == [4] * 10
    for c in range(10):
        block = s["LBPE_top10"][c * 40:(c + 1) * 40]
        assert sorted((idx[idx // 40 == c] - c * 40).tolist()) == sorted(block.argsort()[:4].tolist())
    imb = resolve_pruning_key("yoco_imbalance", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")
    assert (select_indices(s, imb, N=400, C=10, ipc_f=10, ipc_t=1, factor=2) // 40).tolist() == [0] * 40


def test_aum_direction_is_flipped():
    s = ramp("accumulated_margin")
    assert sorted(sel("accumulated_margin", s)) == list(range(8))  # default "hard" = LOWEST margins
    assert sorted(sel("accumulated_margin_easy", s)) == list(range(8, 16))  # easy = highest margins
    assert sorted(sel("accumulated_margin_balance", s)) == [0, 1, 2, 3, 8, 9, 10, 11]


def test_ties_go_to_lower_decoded_index():
    f = torch.zeros(16, dtype=torch.int32)
    f[[3, 9]] = 2
    f[[5, 12, 14]] = 1
    s = {"forgetting": f}
    assert sel("forgetting", s) == [3, 9, 5, 12, 14, 0, 1, 2]  # ties (0s) -> lowest indices
    assert sel("forgetting_easy", s) == [0, 1, 2, 4, 6, 7, 8, 10]  # 0s in index order
    assert sel("forgetting_balance", s) == [3, 5, 0, 1, 9, 12, 14, 8]
    # large set with many ties (torch's unstable sort would permute them): python's stable sort as oracle
    g = torch.Generator().manual_seed(0)
    big = {"forgetting": torch.randint(0, 3, (400,), generator=g, dtype=torch.int32)}
    v = big["forgetting"].tolist()
    for key, hard in (("forgetting", True), ("forgetting_easy", False)):
        cfg = resolve_pruning_key(key, ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")
        got = select_indices(big, cfg, N=400, C=10, ipc_f=10, ipc_t=1, factor=2).tolist()
        assert got == sorted(range(400), key=lambda i: -v[i] if hard else v[i])[:40]


def test_random_selection():
    a = sel("random", None, seed=1)
    assert a == sel("random", None, seed=1) and len(a) == 8 and len(set(a)) == 8 and all(0 <= i < 16 for i in a)
    b = sel("random_balance", None, seed=1)
    assert [i // 8 for i in b] == [0] * 4 + [1] * 4 and len(set(b)) == 8
    random.seed(5)
    g1 = sel("random", None)  # seed=None: the global python RNG (seeded by set_seed)
    random.seed(5)
    assert sel("random", None) == g1


def test_kmeans_lists_used_as_is():
    s = {"imbalance_kmeans_1": [3, 3, 9, 1, 0, 15, 8, 8], "kmeans_1": [0, 1, 2, 2, 8, 9, 10, 11]}
    assert sel("ssp", s) == [3, 3, 9, 1, 0, 15, 8, 8]  # duplicates kept (B10)
    assert sel("ssp_balance", s) == [0, 1, 2, 2, 8, 9, 10, 11]
    with pytest.raises(UserError, match="outside"):
        sel("ssp", {"imbalance_kmeans_1": [0, 16]})


def test_selection_errors():
    with pytest.raises(UserError, match=r"15 entries.*N=16"):
        sel("el2n", {"el2n": torch.zeros(15)})
    with pytest.raises(UserError, match="keys present: entropy, forgetting"):
        sel("el2n", {"forgetting": torch.zeros(16), "entropy": torch.zeros(16)})
    with pytest.raises(UserError):
        sel("el2n", None)
    cfg = resolve_pruning_key("el2n", ipc_f=2, ipc_t=1, topk=10, dataset="cifar10")
    with pytest.raises(UserError, match="N=17"):
        select_indices(ramp("el2n"), cfg, **dict(GEOM, N=17))
    with pytest.raises(UserError):
        select_indices(ramp("el2n"), cfg, **dict(GEOM, ipc_t=2))
    with pytest.raises(UserError):
        select_indices(ramp("el2n"), cfg, **GEOM, ccs_type="ccs_3")


# ---------------------------------------------------------------------------------------------------
# CCS (docs/algorithms.md#ccs-strata-and-budget)

def reference_strata_picks(s, budget, stable=False):
    """Positions picked by the reference's CCS sampling (YOCO reference ccs/core/data/Coreset.py;
    docs/algorithms.md#ccs-strata-and-budget) of the descending scores ``s``,
    derived here independently: 50 strata, sizes as a CPU int64 tensor ordered by ``torch.argsort`` (the
    reference's ``bin_allocate``) or, for comparison, by a stable sort (lowest stratum first)."""
    lo, hi = s.min(), s.max() * 1.0001
    w = (hi - lo) / 50
    members = [[p for p in range(len(s)) if lo + k * w <= s[p] < lo + (k + 1) * w] for k in range(50)]
    sizes = torch.tensor([len(m) for m in members], dtype=torch.int64)
    order = torch.sort(sizes, stable=True).indices if stable else torch.argsort(sizes)
    left, take = budget, {}
    for q, k in zip(range(50, 0, -1), order.tolist()):
        take[k] = min(len(members[k]), left // q)
        left -= take[k]
    return [p for k in range(50) for p in members[k][:take[k]]], sizes.tolist()


def test_allocate_budget_hand_example():
    # strata sizes [2, 2, 2, 1, 3], budget 4: visit 3 (q=5: min(1, 4//5)=0), 0 (q=4: min(2, 1)=1),
    # 1 (q=3: min(2, 3//3)=1), 2 (q=2: min(2, 2//2)=1), 4 (q=1: min(3, 1)=1)
    assert allocate_budget([2, 2, 2, 1, 3], 4) == [1, 1, 1, 0, 1]
    # budget 7: 3 -> min(1, 7//5)=1 (R=6); 0 -> min(2, 6//4)=1 (R=5); 1 -> min(2, 5//3)=1 (R=4);
    # 2 -> min(2, 4//2)=2 (R=2); 4 -> min(3, 2//1)=2
    assert allocate_budget([2, 2, 2, 1, 3], 7) == [1, 1, 2, 1, 2]
    assert allocate_budget([2, 2, 2, 1, 3], 10) == [2, 2, 2, 1, 3]
    assert sum(allocate_budget([0, 5, 0], 20)) == 5  # pool smaller than budget


def test_stratified_sampling_hand_example():
    s = torch.tensor([10, 9.5, 9, 8, 5, 4.5, 4, 3.9, 1, 0])  # sorted high -> low
    # lo=0, hi=10.001, w=2.0002 -> strata {8,9} {6,7} {4,5} {3} {0,1,2} (positions)
    assert stratified_sampling(s, 4, n_strata=5).tolist() == [8, 6, 4, 0]  # first = highest in stratum
    assert stratified_sampling(s, 7, n_strata=5).tolist() == [8, 6, 4, 5, 3, 0, 1]
    g = torch.Generator().manual_seed(0)
    r = stratified_sampling(s, 7, n_strata=5, random_select=True, generator=g).tolist()
    assert r[0] in (8, 9) and r[1] in (6, 7) and sorted(r[2:4]) == [4, 5] and r[4] == 3
    assert len(r[5:]) == 2 and set(r[5:]) <= {0, 1, 2}
    assert stratified_sampling(torch.zeros(5), 3).numel() == 0  # w = 0: nothing selected (quirk)


def test_ccs_cutoff_and_strata_budget():
    # ratio 0.25: drop int(0.25*16)=4 highest el2n (12..15); 12 remaining values in 12 distinct strata of 50;
    # allocation visits the 38 empty strata, then the 12 singletons in torch.argsort order with R=8:
    # floor(8/q) = 0 for q=12..9 (the first 4 singletons visited get nothing), then 1 for q=8..1
    kept = torch.arange(11, -1, -1, dtype=torch.float32)  # the remaining scores 11..0, highest first
    picks, sizes = reference_strata_picks(kept, 8)
    assert sizes.count(1) == 12 and len(picks) == 8
    assert sel("ccs", ramp("el2n"), ratio=0.25) == [11 - p for p in picks]
    picks, _ = reference_strata_picks(torch.arange(15, -1, -1, dtype=torch.float32), 8)  # no cut: 16 singletons
    assert sel("ccs", ramp("el2n"), ratio=0.0) == [15 - p for p in picks]
    # AUM + stratified sorts ascending: the cut-off drops the LOWEST margins (hardest)
    cfg = PruneConfig("accumulated_margin", False, True, True, False, 0.25)
    picks, _ = reference_strata_picks(torch.arange(4, 16, dtype=torch.float32), 8)  # kept 4..15, lowest first
    got = select_indices(ramp("accumulated_margin"), cfg, **GEOM).tolist()
    assert got == [4 + p for p in picks] and min(got) >= 4


def test_ccs_random_within_strata_and_balanced():
    s = {"el2n": torch.tensor([0.0, 0.1, 0.2, 0.3, 5, 5.1, 5.2, 5.3, 0, 0.1, 0.2, 0.3, 9, 9.1, 9.2, 9.3])}
    det = sel("ccs", s, ratio=0.0)
    assert det == sel("ccs", s, ratio=0.0)
    rnd = sel("ccs", s, ratio=0.0, strata_random_select=True, seed=3)
    assert rnd == sel("ccs", s, ratio=0.0, strata_random_select=True, seed=3) and len(rnd) == 8
    cfg = PruneConfig("el2n", True, False, True, False, 0.0)  # balanced CCS: per class budget m=4
    b = select_indices(s, cfg, **GEOM).tolist()
    assert [i // 8 for i in b] == [0] * 4 + [1] * 4


def test_ccs_strata_visited_in_reference_argsort_order():
    """Equal stratum sizes: the budget goes round the strata in torch.argsort's order of the int64 sizes, as
    the reference's bin_allocate does, not lowest stratum first (docs/algorithms.md#ccs-strata-and-budget)."""
    sizes = [1, 2, 0, 2, 3, 0, 2, 1, 0, 2] * 5  # many ties; stratum k holds values in [k, k + 0.5]
    values = [0.0] + [k + 0.1 + 0.2 * j for k in range(1, 49) for j in range(sizes[k])] + [49.1, 50.0]
    s = torch.tensor(sorted(values, reverse=True))  # lo = 0, hi = 50.005: stratum width 1.0001
    expected, got_sizes = reference_strata_picks(s, 30)
    assert got_sizes == sizes
    assert expected != reference_strata_picks(s, 30, stable=True)[0]  # the case tells the two orders apart
    assert stratified_sampling(s, 30).tolist() == expected
    assert allocate_budget(sizes, 30) == [sum(1 for p in expected if lo <= s[p] < lo + 1.0001)
                                          for lo in (k * 1.0001 for k in range(50))]


def test_ccs_cifar10_10_to_1_picks_follow_reference_strata_order():
    """ccs at cifar10 IDC 10->1 (N=400, M=40, r=0.3): drop the 120 highest el2n, then the reference sampling."""
    g = torch.Generator().manual_seed(0)
    el2n = torch.rand(400, generator=g)
    order = sorted(range(400), key=lambda i: -float(el2n[i]))[120:]  # tie-free scores: any sort agrees
    picks, _ = reference_strata_picks(el2n[order], 40)
    expected = [order[p] for p in picks]
    assert expected != [order[p] for p in reference_strata_picks(el2n[order], 40, stable=True)[0]]
    cfg = resolve_pruning_key("ccs", ipc_f=10, ipc_t=1, topk=10, dataset="cifar10")
    assert select_indices({"el2n": el2n}, cfg, N=400, C=10, ipc_f=10, ipc_t=1, factor=2).tolist() == expected


def test_ccs_2_reads_the_ratio_only_where_the_reference_does():
    """The reference's CIFAR branch sets the global cut to 0 under ccs_2 and never reads the ratio for ccs
    (unbalanced); its ImageNet branch reads it. cifar10 11->3 has no table entry."""
    kw = dict(ipc_f=11, ipc_t=3, topk=10)
    cfg = resolve_pruning_key("ccs", dataset="cifar10", ccs_type="ccs_2", **kw)
    assert (cfg.stratified, cfg.balance, cfg.prune_score_ratio) == (True, False, 0.0)
    with pytest.raises(UserError, match="--prune_score_ratio"):
        resolve_pruning_key("ccs", dataset="cifar10", **kw)  # ccs_1 reads it
    with pytest.raises(UserError, match="--prune_score_ratio"):
        resolve_pruning_key("ccs", dataset="imagenet", ccs_type="ccs_2", **kw)
    with pytest.raises(UserError, match="ccs_3"):
        resolve_pruning_key("ccs", dataset="cifar10", ccs_type="ccs_3", **kw)
    g = torch.Generator().manual_seed(1)
    s = {"el2n": torch.rand(440, generator=g)}
    geom = dict(N=440, C=10, ipc_f=11, ipc_t=3, factor=2)
    no_cut = resolve_pruning_key("ccs", dataset="cifar10", prune_score_ratio=0.0, **kw)
    assert select_indices(s, cfg, **geom, ccs_type="ccs_2").tolist() == select_indices(s, no_cut, **geom).tolist()


def test_ccs_type_follows_the_reference_per_branch():
    """ccs_2 (the reference's yoco/selection.py): the CIFAR branch skips the global cut-off and cuts the
    easiest r inside each class (balanced keys only); the ImageNet branch has no ccs_2 code (= ccs_1)."""
    bal = PruneConfig("el2n", True, False, True, False, 0.25)
    imb = PruneConfig("el2n", False, False, True, False, 0.25)
    pick = lambda cfg, **kw: select_indices(ramp("el2n"), cfg, **GEOM, **kw).tolist()  # noqa: E731
    ccs_1 = pick(bal)
    assert max(ccs_1) == 11  # the global cut-off dropped 12..15
    ccs_2 = pick(bal, ccs_type="ccs_2")
    # class 0 keeps its hardest int(0.75*8)=6 (7..2), class 1 keeps 15..10; 4 of each by stratified sampling
    picks, _ = reference_strata_picks(torch.arange(7, 1, -1, dtype=torch.float32), 4)  # same for both classes
    assert ccs_2 == [7 - p for p in picks] + [15 - p for p in picks]
    assert pick(bal, ccs_type="ccs_2", imagenet=True) == ccs_1 == pick(bal, imagenet=True)
    no_cut = PruneConfig("el2n", False, False, True, False, 0.0)
    assert pick(imb, ccs_type="ccs_2") == pick(no_cut) != pick(imb)  # CIFAR, imbalanced: nothing is cut
    assert pick(imb, ccs_type="ccs_2", imagenet=True) == pick(imb)


# ---------------------------------------------------------------------------------------------------
# test.py glue

def test_default_score_file_paths():
    from yoco.pruning import default_stop_epoch, dynamics_dir, score_name
    assert os.path.join(dynamics_dir("reproduce_3", "idc", "cifar10", 10), score_name(10, 100)) == \
        "raid/reproduce_3/dynamics_and_scores/idc/cifar10/ipc10/data-score-ipc10-ep100.pickle"
    assert os.path.join(dynamics_dir("reproduce_1", "idc", "imagenet", 20), score_name(20, 200)) == \
        "raid/reproduce_1/dynamics_and_scores/idc/imagenet10/ipc20/data-score-ipc20-ep200.pickle"
    assert default_stop_epoch("dsa", "cifar10") == 100  # B2: the generator writes ep100


def test_prune_decoded(tmp_path):
    import argparse
    import warnings

    from yoco.pruning import prune_decoded
    from yoco.scores import save_score_file
    save_score_file(str(tmp_path / "s.pickle"), {"LBPE_top10": torch.arange(16, dtype=torch.float32),
                                                  "el2n": torch.arange(16, dtype=torch.float32)})
    x, y = torch.arange(16).float().view(16, 1), torch.arange(16) // 8
    a = argparse.Namespace(pruning_key="yoco", slct_ipc=1, ipc=2, nclass=2, factor=2, dataset="cifar10",
                           condense_key="idc", topk=10, stop_epoch=100, score_file=str(tmp_path / "s.pickle"),
                           reproduce_exp="reproduce_3", prune_score_ratio=None, ccs_type="ccs_1",
                           strata_random_select=False, strata_fixed_select=False, explicit=[])
    px, py = prune_decoded(a, x, y)
    assert px.flatten().tolist() == [0, 1, 2, 3, 8, 9, 10, 11] and py.tolist() == [0] * 4 + [1] * 4
    with pytest.raises(UserError, match="--prune_score_ratio 0.0 would have no effect"):  # an unread explicit ratio
        prune_decoded(argparse.Namespace(**{**vars(a), "prune_score_ratio": 0.0}), x, y)
    a.pruning_key, a.strata_fixed_select, a.score_file = "ccs", True, str(tmp_path / "s.pickle")
    a.prune_score_ratio = 0.0
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert len(prune_decoded(a, x, y)[0]) == 8
    assert any("strata_fixed_select" in str(m.message) for m in w)
    a.score_file, a.pruning_key, a.prune_score_ratio = "", "yoco", None
    with pytest.raises(UserError, match="ep100.pickle"):  # the default path, not present here
        prune_decoded(a, x, y)


def test_imagenet_set_found_under_the_name_condense_py_writes(tmp_path):
    """The reference's pruning looks for …_factor3_mix_ipc10, its condense.py writes …_factor3_lr0.003_mix_ipc10:
    the released name wins, else the one condense.py wrote; two candidates are an error naming both."""
    from yoco.pruning import imagenet_idc_dir
    released = "resnet10apin_grad_l1_ely10_nd500_cut_factor3_mix_ipc10"
    ours = "resnet10apin_grad_l1_ely10_nd500_cut_factor3_lr0.003_mix_ipc10"
    assert imagenet_idc_dir(str(tmp_path), 10) == str(tmp_path / released)  # nothing there: the released name
    (tmp_path / ours).mkdir()
    (tmp_path / "resnet10apin_grad_l1_ely10_nd500_cut_factor3_lr0.003_mix_ipc100").mkdir()  # IPC 100: no match
    assert imagenet_idc_dir(str(tmp_path), 10) == str(tmp_path / ours)
    (tmp_path / "resnet10apin_grad_l1_ely10_nd500_cut_factor3_bound_lr0.003_mix_ipc20").mkdir()
    assert imagenet_idc_dir(str(tmp_path), 20).endswith("factor3_bound_lr0.003_mix_ipc20")
    (tmp_path / "resnet10apin_grad_l1_ely10_nd500_cut_factor3_lr0.001_mix_ipc10").mkdir()
    with pytest.raises(UserError, match="several"):
        imagenet_idc_dir(str(tmp_path), 10)
    (tmp_path / released).mkdir()
    assert imagenet_idc_dir(str(tmp_path), 10) == str(tmp_path / released)


def test_dynamics_seed_per_repetition():
    from cli.yoco_options import reproduce_seed
    assert [reproduce_seed(f"reproduce_{k}") for k in (1, 2, 3)] == [1, 2, 3]
    assert reproduce_seed("mine") == 0
