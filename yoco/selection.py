"""YOCO ``--pruning_key`` grammar and subset selection on the decoded set (reference
he-y/you-only-condense-once/argument.py; utils/img_loader.py; docs/algorithms.md#selection-rules).

The selection rules (``@register_rule``: ``random``, ``listed`` for SSP's index lists, ``ranked`` for the hard or
easy end of a score, ``stratified`` for CCS), the ``--pruning_key`` modifiers and the bases ``random`` and ``ccs``
are registered here (``yoco/registry.py``); the bases that select by a score (``el2n``, ``yoco``, ...) are declared
with their scores in ``yoco/scores.py``, which this module imports, so that importing it registers every entry.
A key is read by exact tokens over the registered names (``parse_pruning_key``). Torch is imported on first use:
the command line imports this module for ``--pruning_key``'s help.

Pure functions of (scores, N, C, IPC_F, IPC_T, f) returning decoded indices; no data is loaded here
(decoding lives in ``data.condensed``). Decoded layout (YOCO reference utils/img_loader.py, load_data_path and decode;
docs/algorithms.md#yoco-condensed-inputs): class c owns the index range
[c*n_c, (c+1)*n_c) with n_c = IPC_F*f^2; class membership for balanced selection comes from that range.
m = IPC_T*f^2 decoded images per class, M = m*C in total (the integer form of the reference's int(IPC_T/IPC_F·N),
docs/algorithms.md#selection-rules).

Deviations from the reference, all documented where they occur:
* ties: every sort of scores is stable and ties go to the **lower decoded index** whichever end is kept (the
  reference ``argsort`` has no tie rule, docs/algorithms.md#ties-and-randomness); "easy" selections therefore sort
  ascending and keep the first M instead of keeping the last M of a descending sort (same set up to ties; the
  returned order is lowest score first instead of highest first, which only permutes the training set).
  Not a deviation: the CCS strata are visited in the reference's own ``torch.argsort`` order of their sizes
  (``strata_order``, docs/algorithms.md#ccs-strata-and-budget), since equal sizes are common there and change the picks;
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
from dataclasses import dataclass

from utils.errors import UserError
from utils.lazy import lazy_module
from yoco import scores  # noqa: F401  (registers the scores and their pruning bases)
from yoco.registry import (RULES, Base, accepted_keys, default_rule, modifier_groups, output_of, pruning_bases,
                           register_modifier, register_rule, rule_of)

torch = lazy_module("torch")  # imported on first use (module docstring)

# the reference's modifiers (its argument.py, the pruning-key block): its substring tests do not depend on their
# order, and its README names both orders ("forgetting_easy_balance or forgetting_balance_easy"); a key carries at
# most one of each field. Its substring tests would also run ``random_sideways`` as ``random``: the accepted keys
# are exactly a registered base followed by these (``yoco.registry.accepted_keys``); anything else is refused.
register_modifier("_hard", "use_hard", True)  # keep the hardest images
register_modifier("_easy", "use_hard", False)
register_modifier("_balance", "balance", True)  # balanced construction: a quota of m images in every class
register_modifier("_imbalance", "balance", False)
DEFAULT_PRUNING_KEY = "yoco"  # the reference's --pruning_key default
KEY_EXAMPLES = "yoco, el2n_easy, random_balance, forgetting_easy_balance = forgetting_balance_easy"

# YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget: CCS hard cut-off ratio r by
# (dataset, IPC_F, IPC_T)
CCS_RATIOS = {
    ("cifar10", 10, 1): 0.3, ("cifar10", 10, 2): 0.1, ("cifar10", 10, 5): 0.0,
    ("cifar10", 50, 1): 0.3, ("cifar10", 50, 2): 0.3, ("cifar10", 50, 5): 0.3, ("cifar10", 50, 10): 0.1,
    ("cifar100", 10, 1): 0.5, ("cifar100", 10, 2): 0.4, ("cifar100", 10, 5): 0.2,
    ("cifar100", 20, 1): 0.5, ("cifar100", 20, 2): 0.5, ("cifar100", 20, 5): 0.3,
    ("cifar100", 50, 1): 0.5, ("cifar100", 50, 2): 0.5, ("cifar100", 50, 5): 0.5, ("cifar100", 50, 10): 0.3,
    ("imagenet", 10, 1): 0.3, ("imagenet", 10, 2): 0.2, ("imagenet", 10, 5): 0.1,
    ("imagenet", 20, 1): 0.3, ("imagenet", 20, 2): 0.3, ("imagenet", 20, 5): 0.2,
}
N_STRATA = 50  # YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget


@dataclass
class PruneConfig:
    score_key: str | None  # key in the score file (None for random selection)
    balance: bool  # Balanced Construction: per-class quota m (YOCO reference utils/img_loader.py, load_data_path;
    # docs/algorithms.md#balanced-construction)
    use_hard: bool  # keep the highest scores (before the AUM flip)
    stratified: bool  # CCS: hard cut-off + stratified sampling
    random_selection: bool
    prune_score_ratio: float  # CCS cut-off ratio r (0.0 when not stratified: unused)
    rule: str = ""  # the selection rule (yoco.registry.RULES); "" = the one the fields above name (default_rule_of)

    def __post_init__(self):
        if not self.rule:
            self.rule = default_rule_of(self)


def default_rule_of(cfg):
    """The rule a configuration built without one runs: the rule whose flag it sets (``random_selection``,
    ``stratified``), else the rule of its score key's kind (index lists: ``listed``; per-image scores, and a key
    no score declares: ``ranked``)."""
    flagged = [r.name for r in RULES.values() if r.flag and getattr(cfg, r.flag, False)]
    if len(flagged) > 1:
        raise ValueError(f"a pruning configuration names one rule, not {' and '.join(flagged)}")
    if flagged:
        return flagged[0]
    out = output_of(cfg.score_key)
    return default_rule(out.kind if out is not None and out.kind != "stats" else "scores").name


def _check_ipcs(ipc_f, ipc_t):
    if ipc_t < 1 or ipc_t >= ipc_f:
        raise UserError(f"the target IPC (--slct_ipc {ipc_t}) must be in [1, IPC_F={ipc_f}): pruning keeps fewer "
                        "images than the full condensed set")


def base_names():
    """The registered bases, the default first, then in the order of YOCO Table 1 (help and refusal)."""
    names = [b.name for b in pruning_bases()]
    return sorted(names, key=lambda n: n != DEFAULT_PRUNING_KEY)


def pruning_key_help():
    """``--pruning_key``'s help, from the registries."""
    groups = "".join(f"[{'|'.join(tokens)}]" for tokens in modifier_groups().values())
    return f"<base>{groups} (modifiers in either order), base: {', '.join(base_names())}"


def _valid_keys_msg():
    groups = " and/or ".join("by " + " or ".join(tokens) for tokens in modifier_groups().values())
    return (f"a --pruning_key is one of {', '.join(base_names())}, optionally followed {groups}, in either order "
            f"(e.g. {KEY_EXAMPLES})")


def parse_pruning_key(key):
    """``(Base, {field: value})`` of a key: a registered base and its modifiers, read by exact tokens (a look-up
    in ``accepted_keys``); anything else is a one-line ``UserError`` listing the grammar."""
    found = accepted_keys().get(str(key))
    if found is None:
        raise UserError(f"unknown --pruning_key {key!r}; {_valid_keys_msg()}")
    return found


def check_pruning_key(key):
    """``key`` if it is an accepted key (``parse_pruning_key``), else a one-line ``UserError`` listing the grammar."""
    parse_pruning_key(key)
    return str(key)


def ccs_ratio(dataset, ipc_f, ipc_t, override=None):
    """CCS cut-off r (YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget); ``override``
    (``--prune_score_ratio``) wins when given."""
    if override is not None:
        if not 0.0 <= float(override) < 1.0:
            raise UserError(f"--prune_score_ratio {override} must be in [0, 1)")
        return float(override)
    r = CCS_RATIOS.get((dataset, int(ipc_f), int(ipc_t)))
    if r is None:
        raise UserError(f"the CCS table (docs/algorithms.md#ccs-strata-and-budget) has no cut-off ratio for dataset={dataset}, IPC_F={ipc_f}, "
                        f"IPC_T={ipc_t}; pass --prune_score_ratio explicitly")
    return r


def _check_ccs_type(ccs_type):
    if ccs_type not in ("ccs_1", "ccs_2"):
        raise UserError(f"--ccs_type {ccs_type!r} must be ccs_1 or ccs_2")


def ccs_reads_ratio(dataset, ccs_type):
    """Whether the CCS cut-off ratio is read, as in the reference's ``utils/img_loader.load_data_path``
    (YOCO reference utils/img_loader.py, load_data_path; docs/algorithms.md#selection-rules): its ImageNet branch reads
    it for every stratified selection (it has no ``ccs_2`` code);
    its other branch (CIFAR, and here our other non-ImageNet sets) sets the global cut to 0 under ``ccs_2``
    and reads the ratio only in its balanced ``ccs_2`` code, which no key reaches (``ccs`` resolves to an
    unbalanced ``el2n``, YOCO reference argument.py; docs/algorithms.md#pruning-key-resolution). So ``ccs_2`` off
    ImageNet needs no table entry."""
    return ccs_type != "ccs_2" or dataset == "imagenet"


def resolve_pruning_key(key, *, ipc_f, ipc_t, topk, dataset, prune_score_ratio=None, ccs_type="ccs_1"):
    """Resolve ``--pruning_key`` as the reference's argument.py (its pruning-key block;
    docs/algorithms.md#pruning-key-resolution): the base's selection, then its modifiers (a base that ignores
    them, ``ccs``, keeps its own: the reference replaces the whole key), then its score key.

    The CCS ratio is looked up only where the reference reads it (``ccs_reads_ratio``); elsewhere it is 0.0,
    the cut the reference applies there."""
    _check_ipcs(ipc_f, ipc_t)
    _check_ccs_type(ccs_type)
    base, modifiers = parse_pruning_key(key)
    rule = rule_of(base)
    settings = {"use_hard": base.hard, "balance": base.balance, **(modifiers if base.modifiers else {})}
    reads_ratio = rule.reads_ratio and ccs_reads_ratio(dataset, ccs_type)
    ratio = ccs_ratio(dataset, ipc_f, ipc_t, prune_score_ratio) if reads_ratio else 0.0
    if prune_score_ratio is not None and not reads_ratio:
        keys = " or ".join(f"--pruning_key {b.name}" for b in pruning_bases() if rule_of(b).reads_ratio)
        where = "on ImageNet only with --ccs_type ccs_2" if rule.reads_ratio else f"only with {keys}"
        raise UserError(f"--prune_score_ratio {prune_score_ratio} would have no effect: the CCS cut-off is read "
                        f"{where} (as the reference); leave it out")
    flags = {"stratified": False, "random_selection": False}
    if rule.flag:
        flags[rule.flag] = True
    return PruneConfig(score_key=base.score_key(balance=settings["balance"], ipc_t=ipc_t, topk=topk),
                       balance=settings["balance"], use_hard=settings["use_hard"], prune_score_ratio=ratio,
                       rule=rule.name, **flags)


# ----------------------------------------------------------------------------------------------------
# selection rules (YOCO reference utils/img_loader.py, load_data_path; docs/algorithms.md#selection-rules)

def rank(scores, descending):
    """Stable sort order of ``scores``: ties keep ascending decoded index (docs/algorithms.md#ties-and-randomness)."""
    return torch.sort(scores, descending=descending, stable=True).indices


def strata_order(counts):
    """The order in which CCS visits its strata (docs/algorithms.md#ccs-strata-and-budget): ascending size, equal sizes
    in the order the reference gets. Reading taken: the reference (``ccs/core/data/Coreset.py``,
    ``CoresetSelection.stratified_sampling`` and its inner ``bin_allocate``) collects the per-stratum counts
    as a CPU int64 tensor and orders them with a plain ``torch.argsort`` (not stable); the same call on the same
    dtype and device is made here, so strata of equal size are visited as the reference visits them (not
    lowest index first: a stable sort would differ for 50 strata with many ties)."""
    return torch.argsort(torch.tensor([int(c) for c in counts], dtype=torch.int64)).tolist()


def allocate_budget(counts, budget):
    """CCS budget allocation (YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget): visit
    strata in ``strata_order``; with R budget left and q
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
    """CCS StratifiedSampling (YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget) on
    sorted ``scores``; returns positions (LongTensor).

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


@dataclass(frozen=True)
class Selection:
    """What a rule selects from besides the score values: the decoded layout (class c owns the index range
    [c*n_c, (c+1)*n_c)), m images per class and M = m*C in all, the score's direction (``high_is_hard``: False
    for a score whose high values are easy, AUM) and the run's options (``select_indices``)."""
    N: int
    C: int
    n_c: int
    m: int
    high_is_hard: bool = True
    seed: int | None = None
    strata_random_select: bool = False
    ccs_type: str = "ccs_1"
    imagenet: bool = False

    @property
    def M(self):
        return self.m * self.C

    @property
    def blocks(self):
        return [(c * self.n_c, (c + 1) * self.n_c) for c in range(self.C)]


@register_rule("random", reads=None, flag="random_selection",
               bases=(Base("random", key=None, hard=False, label="Random", variants={"_balance": "Random + balanced"},
                           row=0),))
def _random_indices(values, cfg, sel):
    """YOCO reference utils/img_loader.py, load_data_path; docs/algorithms.md#selection-rules: python ``random.sample``
    globally (m*C) or per class (m from its index range)."""
    rng = random.Random(sel.seed) if sel.seed is not None else random
    if cfg.balance:
        idx = [i for a, b in sel.blocks for i in rng.sample(range(a, b), sel.m)]
    else:
        idx = rng.sample(range(sel.N), sel.M)
    return torch.tensor(idx, dtype=torch.long)


@register_rule("listed", reads="clustering", default_for="clustering")
def _listed(values, cfg, sel):
    """SSP: the stored index list, used as is (duplicates possible; reference utils/img_loader.py, load_data_path)."""
    return values


@register_rule("ranked", reads="scores", default_for="scores")
def _ranked(values, cfg, sel):
    """The M hardest (``use_hard``) or easiest images, or with balanced construction the m hardest or easiest of
    every class (reference utils/img_loader.py, load_data_path; docs/algorithms.md#balanced-construction)."""
    descending = cfg.use_hard == sel.high_is_hard  # keep the highest values iff they are the ones wanted
    if not cfg.balance:
        return rank(values, descending)[:sel.M]
    return torch.cat([a + rank(values[a:b], descending)[:sel.m] for a, b in sel.blocks])


@register_rule("stratified", reads="scores", flag="stratified", reads_ratio=True,
               bases=(Base("ccs", key="el2n", hard=False, modifiers=False, label="CCS", row=6),))
def _stratified(values, cfg, sel):
    """CCS (YOCO reference ccs/core/data/Coreset.py; docs/algorithms.md#ccs-strata-and-budget): drop the
    int(r*N) hardest, then stratified sampling. ``ccs_type`` follows the reference per branch (its
    ``yoco/selection.py``): on CIFAR (and our other non-ImageNet sets) ``ccs_2`` replaces the global hard cut-off
    by a cut of the hardest ``r`` inside each class (balanced keys; an imbalanced ``ccs_2`` selection cuts
    nothing); the ImageNet branch has no ``ccs_2`` code, so there it is ``ccs_1``."""
    r, s = cfg.prune_score_ratio, values
    per_class_cut = sel.ccs_type == "ccs_2" and not sel.imagenet
    order = rank(s, sel.high_is_hard)[0 if per_class_cut else int(r * sel.N):]
    gen = torch.Generator().manual_seed(int(sel.seed)) if sel.seed is not None else None
    sample = dict(random_select=sel.strata_random_select, generator=gen)
    if not cfg.balance:
        return order[stratified_sampling(s[order], sel.M, **sample)]
    parts = []
    for a, b in sel.blocks:
        sub = order[(order >= a) & (order < b)]
        if per_class_cut and r > 0:  # keeps the hardest (1 - r) of the class: the easiest r go, as in the reference
            sub = sub[:int((1 - r) * sub.numel())]
        parts.append(sub[stratified_sampling(s[sub], sel.m, **sample)])
    return torch.cat(parts)


def _score_values(scores, key, N, rule):
    """The values of score ``key`` as ``rule`` reads them, checked against the decoded set: an index list
    (LongTensor) for a clustering, else one value per decoded image. How a key is read comes from its
    declaration (``yoco.registry.output_of``); a key no score declares is read as per-image scores."""
    if scores is None:
        raise UserError(f"--pruning_key needs the score '{key}' but no score file was loaded; pass --score_file")
    if key not in scores:
        raise UserError(f"score file has no key '{key}'; keys present: {', '.join(sorted(map(str, scores)))}")
    out = output_of(key)
    kind = "clustering" if out is not None and out.kind == "clustering" else "scores"
    if kind != rule.reads:
        raise UserError(f"the {rule.name} selection reads {rule.reads}, but score '{key}' is a {kind}")
    v = scores[key]
    if kind == "clustering":  # YOCO reference utils/img_loader.py, load_data_path; docs/algorithms.md#selection-rules:
    # a stored index list, used as is (duplicates possible)
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
    """Decoded indices of the pruned subset for every rule of docs/algorithms.md#selection-rules (YOCO reference
    utils/img_loader.py, load_data_path) (LongTensor):
    the rule ``cfg.rule`` on the values of ``cfg.score_key``, in the direction its declaration gives (a high AUM
    margin is easy: the direction is flipped, YOCO reference utils/img_loader.py, load_data_path)."""
    _check_ipcs(ipc_f, ipc_t)
    n_c, m = ipc_f * factor ** 2, ipc_t * factor ** 2
    if N != C * n_c:
        raise UserError(f"decoded set has N={N} samples, expected C*IPC_F*f^2 = {C}*{ipc_f}*{factor}^2 = {C * n_c}")
    _check_ccs_type(ccs_type)
    rule = RULES[cfg.rule]
    values = None if rule.reads is None else _score_values(scores, cfg.score_key, N, rule)
    out = None if rule.reads is None else output_of(cfg.score_key)
    sel = Selection(N=N, C=C, n_c=n_c, m=m, high_is_hard=out is None or out.direction != "easy", seed=seed,
                    strata_random_select=strata_random_select, ccs_type=ccs_type, imagenet=imagenet)
    return rule.fn(values, cfg, sel)
