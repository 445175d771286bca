"""YOCO importance scores from a training-dynamics log (spec yoco §3.2–3.3).

``compute_scores`` returns the reference score-pickle dict (same keys, dtypes and quirks). Each family of
keys is a function in the ``SCORES`` registry, run in the reference order (spec yoco §3.2 "Computation
order"): ``kmeans`` -> ``entropy_loss`` -> ``dynamics`` (targets, correctness, forgetting,
last_correctness, accumulated_margin, last_correct_count, correct_num, loss_epoch) -> ``el2n`` ->
``LBPE_top``. A family returns ``{key: value}`` or ``{}`` when its inputs were not given:

* ``kmeans_*`` / ``imbalance_kmeans_*`` need ``features`` (``model.embed`` of ckpt-last on clean images);
* ``entropy`` / ``loss`` need ``logits_last`` (ckpt-last, eval mode, clean images);
* ``loss_epoch`` (and ``use_loss``) needs ``batch_ids`` (from ``yoco.dynamics_io.epoch_arrays``; a stats
  file carries its own).
A faithful score file therefore passes all three.

Dynamics input: either ``logp`` [E, N, C] log-softmax (any float dtype; fp16 is lossless and is converted to
float32 one epoch at a time) or a ``yoco.dynamics_stats.DynamicsStats`` (the ``--compact stats`` file). Either
way every dynamics key is computed from per-epoch ``EpochStats`` (for ``logp``: ``EpochStats.from_logp``
epoch by epoch), so both inputs share one set of formulas. Notation: ``p = exp(logp)``, ``y`` = dataset
labels, epochs 0..E-1.
"""
import os

import torch

from utils.config import registrar
from utils.errors import UserError
from training.kmeans import kmeans, nearest_to_centroids
from utils.safe_pickle import load_pickle
from yoco.dynamics_io import atomic_pickle
from yoco.dynamics_stats import DynamicsStats, EpochStats

KMEANS_NS = (1, 2, 5, 10)  # spec yoco §3.2: kmeans_{n}, n in {1, 2, 5, 10}

SCORES = {}


register_score = registrar(SCORES, "score family")  # @register_score(name): fn(ctx, out) -> dict


def _per_class_indices(targets, C):
    return [(targets == c).nonzero().flatten() for c in range(C)]


@register_score("kmeans")
def _kmeans_lists(ctx, out):
    """spec yoco §3.2 "SSP": indices of the samples nearest to k-means centroids of embed features.

    ``kmeans_{n}``: per class (class order), K = n*f^2 clusters of that class's features; when K exceeds
    the class size it is **clamped to the class size** (the reference would fail). ``imbalance_kmeans_{n}``:
    one k-means over all N samples with K = n*f^2*C (clamped to N). Duplicates possible (B10).
    Seeded with ``seed`` (the reference is unseeded).
    """
    feats = ctx["features"]
    if feats is None:
        return {}
    y, C, f2, seed = ctx["targets"], ctx["C"], ctx["factor"] ** 2, ctx["seed"]
    feats = feats.reshape(feats.shape[0], -1)
    res = {}
    for n in KMEANS_NS:
        picked = []
        for idx in _per_class_indices(y.to(feats.device), C):
            if idx.numel() == 0:
                continue
            cent, _ = kmeans(feats[idx], min(n * f2, idx.numel()), seed=seed)
            picked += idx[nearest_to_centroids(feats[idx], cent)].tolist()
        res[f"kmeans_{n}"] = [int(i) for i in picked]
    for n in KMEANS_NS:
        cent, _ = kmeans(feats, min(n * f2 * C, feats.shape[0]), seed=seed)
        res[f"imbalance_kmeans_{n}"] = [int(i) for i in nearest_to_centroids(feats, cent).tolist()]
    return res


@register_score("entropy_loss")
def _entropy_loss(ctx, out):
    """spec yoco §3.2: entropy -sum q ln(q + 1e-10) and CE of the final model on clean images."""
    logits = ctx["logits_last"]
    if logits is None:
        return {}
    logits = logits.detach().float().cpu()
    q = logits.softmax(1)
    entropy = -(q * torch.log(q + 1e-10)).sum(1)
    loss = torch.nn.functional.cross_entropy(logits, ctx["targets"], reduction="none")
    return {"entropy": entropy, "loss": loss}


def error_norm(st):
    """|onehot(y) - p|_2 per sample from ``EpochStats`` = sqrt((1 - p_y)^2 + sum_{k != y} p_k^2); 1 - p_y as
    -expm1(log p_y), accurate also for confident samples (p_y -> 1)."""
    return (torch.expm1(st.logp_y).square() + st.sq_other).sqrt()


def sum_of_batch_means(values, batch_ids):
    """Sum over the batches of the batch means of ``values`` [N] (``batch_ids`` [N]: batch of each sample)."""
    nb = int(batch_ids.max()) + 1
    sums = torch.zeros(nb).index_add_(0, batch_ids, values)
    cnt = torch.bincount(batch_ids, minlength=nb).float()
    return (sums[cnt > 0] / cnt[cnt > 0]).sum()


@register_score("dynamics")
def _dynamics(ctx, out):
    """Per-epoch statistics of the training outputs (spec yoco §3.2), one pass over the epochs' ``EpochStats``."""
    E, N, batch_ids = ctx["E"], ctx["N"], ctx["batch_ids"]
    correctness = torch.zeros(N, dtype=torch.int32)
    forgetting = torch.zeros(N, dtype=torch.int32)
    prev = torch.zeros(N, dtype=torch.bool)  # "previous" starts as wrong: first observation never counts
    aum = torch.zeros(N, dtype=torch.float32)
    correct_num = torch.zeros(E, dtype=torch.int32)
    loss_epoch = torch.zeros(E, dtype=torch.float32)
    err = torch.zeros(E, N, dtype=torch.float32)  # per-epoch error norm |onehot(y) - p|_2
    for e in range(E):
        st = ctx["epoch_stats"](e)
        acc = st.correct
        correctness += acc.int()
        forgetting += (prev & ~acc).int()  # correct before, wrong now; never-learned stay 0 (B6)
        prev = acc
        correct_num[e] = int(acc.sum())
        aum += st.logp_y.exp() - st.p_other  # AUM on probabilities, summed over ALL epochs (quirk)
        err[e] = error_norm(st)
        if batch_ids is not None:  # sum over the epoch's batches of the batch-mean CE (CE = -log p_y)
            loss_epoch[e] = sum_of_batch_means(-st.logp_y, batch_ids[e])
    ctx["err"] = err
    res = {
        "targets": ctx["targets"].to(torch.int32),
        "correctness": correctness,
        "forgetting": forgetting,
        "last_correctness": prev.to(torch.int32),
        "accumulated_margin": aum,
        "last_correct_count": torch.zeros(N, dtype=torch.int32),  # never filled in the reference (dead)
        "correct_num": correct_num,
    }
    if batch_ids is not None:
        res["loss_epoch"] = loss_epoch
    return res


@register_score("el2n")
def _el2n(ctx, out):
    """spec yoco §3.2: ``LBPE_0_10`` = sum of the error norm over epochs 0..9 (those available);
    ``el2n`` is the SAME tensor object (identity survives pickling)."""
    t = ctx["err"][:10].sum(0)
    return {"LBPE_0_10": t, "el2n": t}


def top_epochs(values, k, *, largest=True):
    """The ``k`` epochs with the largest (or smallest) ``values``; ties -> lower epoch first (stable sort).

    The reference uses ``torch.topk`` whose tie order is implementation-defined (spec yoco §3.2, U3).
    """
    order = torch.sort(values, descending=largest, stable=True).indices
    return [int(e) for e in order[:k]]


@register_score("LBPE_top")
def _lbpe_top(ctx, out):
    """spec yoco §3.2 LBPE (YOCO): sum of the error norm over the K epochs of [0, stop_epoch) with the most
    correct training predictions; stores each chosen ``LBPE_{e}_{e+1}`` and ``LBPE_top{K}``. With
    ``use_loss`` also ``neg_loss_epoch`` (= -loss_epoch) and ``loss_LBPE_top{K}`` over the K epochs of
    smallest ``loss_epoch``. The paper's mean over epochs is a sum here (same ranking)."""
    err, stop = ctx["err"], ctx["stop_epoch"]
    res = {}

    def lbpe(epochs):
        total = torch.zeros_like(err[0])
        for e in epochs:
            key = f"LBPE_{e}_{e + 1}"
            res.setdefault(key, err[e].clone())
            total = total + res[key]
        return total

    for K in ctx["topk"]:
        res[f"LBPE_top{K}"] = lbpe(top_epochs(out["correct_num"][:stop], K, largest=True))
    if ctx["use_loss"]:
        res["neg_loss_epoch"] = -out["loss_epoch"]
        for K in ctx["topk"]:
            res[f"loss_LBPE_top{K}"] = lbpe(top_epochs(out["loss_epoch"][:stop], K, largest=False))
    return res


def _dynamics_source(dynamics, targets):
    """``(E, N, C, epoch_stats)`` where ``epoch_stats(e)`` gives the ``EpochStats`` of epoch e."""
    if isinstance(dynamics, DynamicsStats):
        E, N, C = dynamics.shape
        if targets.numel() == N and not torch.equal(targets, dynamics.targets):
            raise UserError("the dynamics statistics were computed with other labels than the dataset's; "
                            "recompute them (get_training_dynamics.py --compact stats) on this data")
        return E, N, C, dynamics.epoch
    if not torch.is_tensor(dynamics) or dynamics.dim() != 3:
        raise UserError(f"logp must be [E, N, C], got {tuple(getattr(dynamics, 'shape', ()))}")
    E, N, C = dynamics.shape
    return E, N, C, lambda e: EpochStats.from_logp(dynamics[e], targets)


def compute_scores(dynamics, targets, *, stop_epoch, topk, use_loss=False, batch_ids=None, logits_last=None,
                   features=None, factor=1, seed=0):
    """All score keys of spec yoco §3.3 as a dict (insertion order = reference computation order).

    dynamics: logp [E, N, C] log-softmax per epoch (``yoco.dynamics_io.epoch_arrays``) or a
    ``yoco.dynamics_stats.DynamicsStats`` (stats file; same scores up to float32 rounding); targets [N] labels;
    stop_epoch E_stop (LBPE epochs are chosen in [0, E_stop)); topk an int or list of ints;
    batch_ids [E, N] batch position of each sample per epoch (for ``loss_epoch``; default for a
    ``DynamicsStats``: its own); logits_last [N, C]; features [N, D]; factor f (k-means K = n*f^2); seed for k-means.
    """
    targets = torch.as_tensor(targets).long().cpu().reshape(-1)
    E, N, C, epoch_stats = _dynamics_source(dynamics, targets)
    if isinstance(dynamics, DynamicsStats) and batch_ids is None:
        batch_ids = dynamics.batch_ids
    if targets.numel() != N:
        raise UserError(f"the dynamics log has {N} samples but the dataset has {targets.numel()} labels")
    if targets.numel() and (int(targets.min()) < 0 or int(targets.max()) >= C):
        raise UserError(f"labels must lie in [0, {C}) for a log with {C} classes")
    topk = [int(topk)] if isinstance(topk, int) else [int(k) for k in topk]
    if not 1 <= stop_epoch <= E:
        raise UserError(f"--stop_epoch {stop_epoch} must be in [1, {E}] (the log has {E} epochs)")
    if any(not 1 <= k <= stop_epoch for k in topk):
        raise UserError(f"--topk {topk} must be in [1, stop_epoch={stop_epoch}]")
    if batch_ids is not None and tuple(batch_ids.shape) != (E, N):
        raise UserError(f"batch_ids must be [E, N] = [{E}, {N}], got {tuple(batch_ids.shape)}")
    if use_loss and batch_ids is None:
        raise UserError("--use-loss needs the batch structure of the log (batch_ids) to compute loss_epoch")
    for name, t, rows in (("logits_last", logits_last, N), ("features", features, N)):
        if t is not None and t.shape[0] != rows:
            raise UserError(f"{name} has {t.shape[0]} rows but the dynamics log has {N} samples")
    ctx = {"E": E, "N": N, "epoch_stats": epoch_stats, "targets": targets, "C": C, "stop_epoch": int(stop_epoch),
           "topk": topk, "use_loss": bool(use_loss), "batch_ids": None if batch_ids is None else batch_ids.long().cpu(),
           "logits_last": logits_last, "features": features, "factor": int(factor), "seed": int(seed)}
    out = {}
    for fn in SCORES.values():
        out.update(fn(ctx, out))
    return out


def save_score_file(path, d):
    """Reference format: ``pickle.dump(dict)`` (spec yoco §3.3), written atomically."""
    atomic_pickle(d, path)


def load_score_file(path):
    """Read a score pickle (ours or the reference's) with the restricted unpickler (``utils.safe_pickle``)."""
    if not os.path.exists(path):
        raise UserError(f"score file {path!r} not found; run generate_importance_score.py first")
    d = load_pickle(path, "score file")
    if not isinstance(d, dict):
        raise UserError(f"{path} is not a score file (expected a pickled dict)")
    return d
