"""YOCO ``--pruning_key`` grammar and subset selection on the decoded set (spec yoco §4–§5).

Pure functions of (scores, N, C, IPC_F, IPC_T, f) returning decoded indices; no data is loaded here
(decoding lives in ``data.condensed``). Decoded layout (spec yoco §1.3): class c owns the index range
[c*n_c, (c+1)*n_c) with n_c = IPC_F*f^2; class membership for balanced selection comes from that range.
m = IPC_T*f^2 decoded images per class, M = m*C in total (the integer form of spec yoco §5).

Deviations from the reference, all documented where they occur:
* ties: every sort of scores is stable and ties go to the **lower decoded index** whichever end is kept (the
  reference ``argsort`` has no tie rule, spec yoco §5.5/U2); "easy" selections therefore sort ascending
  and keep the first M instead of keeping the last M of a descending sort (same set up to ties; the
  returned order is lowest score first instead of highest first, which only permutes the training set).
  Not a deviation: the CCS strata are visited in the reference's own ``torch.argsort`` order of their sizes
  (``strata_order``, spec yoco §5.3 step 5), since equal sizes are common there and change the picks;
* randomness: ``seed=None`` uses the global RNGs (python ``random`` / torch, seeded by
  ``utils.config.set_seed``); an int seed uses local generators (the reference is unseeded);
* ``strata_random_select`` has the honest name: True = random within each CCS stratum. The reference's
  ``--strata_fixed_select`` flag is inverted (B9: passing it selects *randomly*; its default absence is the
  deterministic "first candidates" rule). The CLI should pass
  ``strata_random_select=args.strata_random_select or args.strata_fixed_select`` (the reference flag
  kept as a deprecated alias with its reference meaning, plus a warning); our default (False) = the
  reference default.
"""
import random
import re
from dataclasses import dataclass

import torch

from utils.errors import UserError

# spec yoco §4 step 1: accepted base keys (substring rules) and step 2 suffixes
BASE_KEYS = ("entropy", "accumulated_margin", "forgetting", "el2n", "random", "ssp", "ccs", "yoco")
SUFFIXES = ("_hard", "_easy", "_balance", "_imbalance")
SCORE_BASES = ("entropy", "accumulated_margin", "forgetting", "el2n")
HARDNESS, BALANCE = "_hard|_easy", "_balance|_imbalance"
# the keys the reference resolves as intended: a base, then at most one hardness and at most one balance
# modifier in either order. Its step-2 substring tests (spec yoco §4) do not depend on the order, and its
# README names both orders ("forgetting_easy_balance or forgetting_balance_easy"); "_balance" never matches
# inside "_imbalance" (an "m" precedes "balance" there). Its substring tests would also run
# ``random_sideways`` as ``random``; we refuse anything else.
KEY_GRAMMAR = re.compile(rf"({'|'.join(BASE_KEYS)})((?:{HARDNESS})(?:{BALANCE})?|(?:{BALANCE})(?:{HARDNESS})?)?")

# spec yoco §5.4: CCS hard cut-off ratio r by (dataset, IPC_F, IPC_T)
CCS_RATIOS = {
    ("cifar10", 10, 1): 0.3, ("cifar10", 10, 2): 0.1, ("cifar10", 10, 5): 0.0,
    ("cifar10", 50, 1): 0.3, ("cifar10", 50, 2): 0.3, ("cifar10", 50, 5): 0.3, ("cifar10", 50, 10): 0.1,
    ("cifar100", 10, 1): 0.5, ("cifar100", 10, 2): 0.4, ("cifar100", 10, 5): 0.2,
    ("cifar100", 20, 1): 0.5, ("cifar100", 20, 2): 0.5, ("cifar100", 20, 5): 0.3,
    ("cifar100", 50, 1): 0.5, ("cifar100", 50, 2): 0.5, ("cifar100", 50, 5): 0.5, ("cifar100", 50, 10): 0.3,
    ("imagenet", 10, 1): 0.3, ("imagenet", 10, 2): 0.2, ("imagenet", 10, 5): 0.1,
    ("imagenet", 20, 1): 0.3, ("imagenet", 20, 2): 0.3, ("imagenet", 20, 5): 0.2,
}
N_STRATA = 50  # spec yoco §5.4
AUM_KEY = "accumulated_margin"


@dataclass
class PruneConfig:
    score_key: str | None  # key in the score file (None for random selection)
    balance: bool  # Balanced Construction: per-class quota m (spec yoco §5.3 step 5)
    use_hard: bool  # keep the highest scores (before the AUM flip)
    stratified: bool  # CCS: hard cut-off + stratified sampling
    random_selection: bool
    prune_score_ratio: float  # CCS cut-off ratio r (0.0 when not stratified: unused)


def _check_ipcs(ipc_f, ipc_t):
    if ipc_t < 1 or ipc_t >= ipc_f:
        raise UserError(f"the target IPC (--slct_ipc {ipc_t}) must be in [1, IPC_F={ipc_f}): pruning keeps fewer "
                        "images than the full condensed set")


def _valid_keys_msg():
    return ("a --pruning_key is one of " + ", ".join(BASE_KEYS)
            + ", optionally followed by _hard or _easy and/or by _balance or _imbalance, in either order (e.g. "
            + "yoco, el2n_easy, random_balance, forgetting_easy_balance = forgetting_balance_easy)")


def check_pruning_key(key):
    """``key`` if it follows ``KEY_GRAMMAR``, else a one-line ``UserError`` listing the grammar."""
    if not KEY_GRAMMAR.fullmatch(str(key)):
        raise UserError(f"unknown --pruning_key {key!r}; {_valid_keys_msg()}")
    return str(key)


def ccs_ratio(dataset, ipc_f, ipc_t, override=None):
    """CCS cut-off r (spec yoco §5.4 table); ``override`` (``--prune_score_ratio``) wins when given."""
    if override is not None:
        if not 0.0 <= float(override) < 1.0:
            raise UserError(f"--prune_score_ratio {override} must be in [0, 1)")
        return float(override)
    r = CCS_RATIOS.get((dataset, int(ipc_f), int(ipc_t)))
    if r is None:
        raise UserError(f"the CCS table (spec yoco §5.4) has no cut-off ratio for dataset={dataset}, IPC_F={ipc_f}, "
                        f"IPC_T={ipc_t}; pass --prune_score_ratio explicitly")
    return r


def _check_ccs_type(ccs_type):
    if ccs_type not in ("ccs_1", "ccs_2"):
        raise UserError(f"--ccs_type {ccs_type!r} must be ccs_1 or ccs_2")


def ccs_reads_ratio(dataset, ccs_type):
    """Whether the CCS cut-off ratio is read, as in the reference's ``utils/img_loader.load_data_path``
    (spec yoco §5.3): its ImageNet branch reads it for every stratified selection (it has no ``ccs_2`` code);
    its other branch (CIFAR, and here our other non-ImageNet sets) sets the global cut to 0 under ``ccs_2``
    and reads the ratio only in its balanced ``ccs_2`` code, which no key reaches (``ccs`` resolves to an
    unbalanced ``el2n``, spec yoco §4). So ``ccs_2`` off ImageNet needs no table entry."""
    return ccs_type != "ccs_2" or dataset == "imagenet"


def resolve_pruning_key(key, *, ipc_f, ipc_t, topk, dataset, prune_score_ratio=None, ccs_type="ccs_1"):
    """Resolve ``--pruning_key`` exactly as spec yoco §4 (substring rules, first match wins).

    The CCS ratio is looked up only where the reference reads it (``ccs_reads_ratio``); elsewhere it is 0.0,
    the cut the reference applies there."""
    _check_ipcs(ipc_f, ipc_t)
    _check_ccs_type(ccs_type)
    k = check_pruning_key(key)
    balance = use_hard = stratified = random_selection = False
    ratio = 0.0
    # step 1 — base key
    if any(s in k for s in SCORE_BASES):
        balance, use_hard = False, True
    elif "random" in k:
        balance, random_selection = False, True
    elif "ssp" in k:
        k = k.replace("ssp", f"imbalance_kmeans_{ipc_t}")
    elif "ccs" in k:
        k = "el2n"  # the key is replaced entirely: suffixes are lost (B8)
        balance, use_hard, stratified = False, False, True
        if ccs_reads_ratio(dataset, ccs_type):
            ratio = ccs_ratio(dataset, ipc_f, ipc_t, prune_score_ratio)
    elif "yoco" in k:
        k = k.replace("yoco", f"LBPE_top{topk}")
        balance, use_hard = True, False
    else:
        raise UserError(f"unknown --pruning_key {key!r}; {_valid_keys_msg()}")
    if prune_score_ratio is not None and not (stratified and ccs_reads_ratio(dataset, ccs_type)):
        where = "on ImageNet only with --ccs_type ccs_2" if stratified else "only with --pruning_key ccs"
        raise UserError(f"--prune_score_ratio {prune_score_ratio} would have no effect: the CCS cut-off is read "
                        f"{where} (as the reference); leave it out")
    # step 2 — suffixes
    if "_hard" in k:
        use_hard, k = True, k.replace("_hard", "")
    elif "_easy" in k:
        use_hard, k = False, k.replace("_easy", "")
    if "_balance" in k:  # "imbalance_kmeans" has no leading underscore: never matches here
        balance, k = True, k.replace("_balance", "")
        if k.startswith("imbalance_kmeans"):
            k = f"kmeans_{ipc_t}"
    elif "_imbalance" in k:
        balance, k = False, k.replace("_imbalance", "")
    return PruneConfig(score_key=None if random_selection else k, balance=balance, use_hard=use_hard,
                       stratified=stratified, random_selection=random_selection, prune_score_ratio=ratio)


# ----------------------------------------------------------------------------------------------------
# selection rules (spec yoco §5)

def rank(scores, descending):
    """Stable sort order of ``scores``: ties keep ascending decoded index (spec yoco §5.5 advice)."""
    return torch.sort(scores, descending=descending, stable=True).indices


def strata_order(counts):
    """The order in which CCS visits its strata (spec yoco §5.3 step 5, §5.4): ascending size, equal sizes in
    the order the reference gets. Reading taken: the reference (``ccs/core/data/Coreset.py``,
    ``CoresetSelection.stratified_sampling`` and its inner ``bin_allocate``) collects the per-stratum counts
    as a CPU int64 tensor and orders them with a plain ``torch.argsort`` (not stable); the same call on the same
    dtype and device is made here, so strata of equal size are visited as the reference visits them (not
    lowest index first: a stable sort would differ for 50 strata with many ties)."""
    return torch.argsort(torch.tensor([int(c) for c in counts], dtype=torch.int64)).tolist()


def allocate_budget(counts, budget):
    """CCS budget allocation (spec yoco §5.4): visit strata in ``strata_order``; with R budget left and q
    strata unvisited (current one included) give min(n_k, floor(R / q))."""
    counts = [int(c) for c in counts]
    alloc = [0] * len(counts)
    left = int(budget)
    for j, i in enumerate(strata_order(counts)):
        a = min(counts[i], left // (len(counts) - j))
        alloc[i] = a
        left -= a
    return alloc


def stratified_sampling(scores, budget, *, n_strata=N_STRATA, random_select=False, generator=None):
    """CCS StratifiedSampling (spec yoco §5.4) on sorted ``scores``; returns positions (LongTensor).

    lo = min, hi = max*1.0001, width (hi-lo)/n_strata, stratum k = [lo+k*w, lo+(k+1)*w) computed in the
    scores' float precision (quirk kept: a negative max falls outside the last stratum; all-equal zero
    scores give w = 0 and select nothing). Within a stratum: the first ``alloc_k`` candidates in position
    order, or a random permutation when ``random_select`` (``generator`` or the global torch RNG).
    """
    s = torch.as_tensor(scores).float().reshape(-1).cpu()
    if s.numel() == 0 or budget <= 0:
        return torch.zeros(0, dtype=torch.long)
    lo, hi = s.min(), s.max() * 1.0001
    w = (hi - lo) / n_strata
    members = [((s >= lo + k * w) & (s < lo + (k + 1) * w)).nonzero().flatten() for k in range(n_strata)]
    alloc = allocate_budget([p.numel() for p in members], budget)
    picked = []
    for pos, a in zip(members, alloc):
        if random_select and pos.numel():
            pos = pos[torch.randperm(pos.numel(), generator=generator)]
        picked.append(pos[:a])
    return torch.cat(picked)


def _random_indices(cfg, N, C, n_c, m, seed):
    """spec yoco §5.1: python ``random.sample`` globally (m*C) or per class (m from its index range)."""
    rng = random.Random(seed) if seed is not None else random
    if cfg.balance:
        idx = [i for c in range(C) for i in rng.sample(range(c * n_c, (c + 1) * n_c), m)]
    else:
        idx = rng.sample(range(N), m * C)
    return torch.tensor(idx, dtype=torch.long)


def _score_tensor(scores, key, N):
    if scores is None:
        raise UserError(f"--pruning_key needs the score '{key}' but no score file was loaded; pass --score_file")
    if key not in scores:
        raise UserError(f"score file has no key '{key}'; keys present: {', '.join(sorted(map(str, scores)))}")
    v = scores[key]
    if "kmeans" in key:  # spec yoco §5.2: a stored index list, used as is (duplicates possible)
        t = torch.as_tensor(list(v), dtype=torch.long)
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= N):
            raise UserError(f"score '{key}' holds indices outside [0, {N}); the score file does not match the data")
        return t
    t = torch.as_tensor(v).detach().cpu().reshape(-1)
    if t.numel() != N:
        raise UserError(f"score '{key}' has {t.numel()} entries but the decoded set has N={N} samples; "
                        "the score file belongs to another condensed set")
    bad = int((~torch.isfinite(t)).sum()) if t.is_floating_point() else 0
    if bad:  # NaN sorts anywhere: the selection would be meaningless
        raise UserError(f"score '{key}' holds {bad} NaN/Inf values of {N} (the dynamics run diverged); recompute "
                        "the dynamics (get_training_dynamics.py, e.g. with a lower --lr) and the scores")
    return t


def select_indices(scores, cfg, *, N, C, ipc_f, ipc_t, factor, strata_random_select=False, ccs_type="ccs_1",
                   seed=None, imagenet=False):
    """Decoded indices of the pruned subset for every rule of spec yoco §5.1–5.6 (LongTensor).

    ``ccs_type`` follows the reference per branch (its ``yoco/selection.py``): on CIFAR (and our other
    non-ImageNet sets) ``ccs_2`` replaces the global hard cut-off by a cut of the hardest ``r`` inside each
    class (balanced keys; an imbalanced ``ccs_2`` selection cuts nothing); the ImageNet branch has no
    ``ccs_2`` code, so there it is ``ccs_1``."""
    _check_ipcs(ipc_f, ipc_t)
    n_c, m = ipc_f * factor ** 2, ipc_t * factor ** 2
    if N != C * n_c:
        raise UserError(f"decoded set has N={N} samples, expected C*IPC_F*f^2 = {C}*{ipc_f}*{factor}^2 = {C * n_c}")
    _check_ccs_type(ccs_type)
    M = m * C
    if cfg.random_selection:
        return _random_indices(cfg, N, C, n_c, m, seed)
    key = cfg.score_key
    s = _score_tensor(scores, key, N)
    if "kmeans" in key:
        return s
    is_aum = key == AUM_KEY  # high margin = easy: the direction is flipped (spec yoco §5.3 step 2)
    blocks = [(c * n_c, (c + 1) * n_c) for c in range(C)]
    if not cfg.stratified:
        hard = cfg.use_hard != is_aum  # keep the highest scores iff hard
        if not cfg.balance:
            return rank(s, hard)[:M]
        # Balanced Construction (spec yoco §5.3 step 5): quota m inside every class index range
        return torch.cat([a + rank(s[a:b], hard)[:m] for a, b in blocks])
    # CCS (spec yoco §5.3 steps 3–5, §5.4): drop the int(r*N) hardest, then stratified sampling
    r = cfg.prune_score_ratio
    per_class_cut = ccs_type == "ccs_2" and not imagenet
    order = rank(s, not is_aum)[0 if per_class_cut else int(r * N):]
    gen = torch.Generator().manual_seed(int(seed)) if seed is not None else None
    sample = dict(random_select=strata_random_select, generator=gen)
    if not cfg.balance:
        return order[stratified_sampling(s[order], M, **sample)]
    parts = []
    for a, b in blocks:
        sub = order[(order >= a) & (order < b)]
        if per_class_cut and r > 0:  # keeps the hardest (1 - r) of the class: the easiest r go, as in the reference
            sub = sub[:int((1 - r) * sub.numel())]
        parts.append(sub[stratified_sampling(s[sub], m, **sample)])
    return torch.cat(parts)
