"""YOCO importance scores from a training-dynamics log (reference
he-y/you-only-condense-once/generate_importance_score.py; docs/algorithms.md#scores).

``compute_scores`` returns the reference score-pickle dict (same keys, dtypes and quirks). Each family of
keys is a function registered with ``@register_score`` (``yoco/registry.py``), which declares the keys it writes
(their kind: per-image scores with their direction, index lists, other statistics; the key a pruning base
selects by) and the values it reads (``INPUTS``, or what another family writes or provides, such as the per-epoch
``error_norms`` of ``dynamics``). The families run in the order of those inputs (``computation_order``); the file
lists their keys in the reference's order, ``FILE_ORDER``: ``kmeans`` -> ``entropy_loss`` -> ``dynamics``
(targets, correctness, forgetting, last_correctness, accumulated_margin, last_correct_count, correct_num,
loss_epoch) -> ``el2n`` -> ``LBPE_top``. A family returns ``{key: value}`` or ``{}`` when its inputs were not
given:

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
from typing import Callable, NamedTuple

from utils.errors import UserError
from utils.lazy import lazy_module
from yoco.registry import SCORES, Base, Output, computation_order, declared, output_of, register_score

torch = lazy_module("torch")  # imported on first use: the command line imports this module (its registrations) for -h

KMEANS_NS = (1, 2, 5, 10)  # kmeans_{n}, n in {1, 2, 5, 10} (docs/algorithms.md#ssp-k-means-lists)

# what compute_scores gives the families (``inputs`` of ``@register_score`` name these, or another family's keys)
INPUTS = ("epochs", "labels", "n_classes", "stop_epoch", "topk", "use_loss", "batch_ids", "logits_last", "features",
          "factor", "seed")
# the reference's score pickle lists the families' keys in this order (reference generate_importance_score.py:
# kmeans_metric, post_training_metrics, training_dynamics_metrics, then EL2N and the LBPE top-K); a family the
# reference lacks follows, by name
FILE_ORDER = ("kmeans", "entropy_loss", "dynamics", "el2n", "LBPE_top")


class Epochs(NamedTuple):
    """The dynamics log as the families read it: ``E`` epochs of ``N`` samples; ``stats(e)`` the epoch's
    ``EpochStats``."""
    E: int
    N: int
    stats: Callable


def _per_class_indices(targets, C):
    return [(targets == c).nonzero().flatten() for c in range(C)]


@register_score("kmeans", inputs=("features", "labels", "n_classes", "factor", "seed"), kind="clustering",
                outputs=("kmeans_{n}", Output("imbalance_kmeans_{n}", base=Base(
                    "ssp", key=("imbalance_kmeans_{ipc_t}", "kmeans_{ipc_t}"), hard=False, label="SSP", row=1))))
def _kmeans_lists(features, labels, n_classes, factor, seed):
    """YOCO's "SSP" lists (docs/algorithms.md#ssp-k-means-lists; YOCO reference generate_importance_score.py,
    kmeans_metric): indices of the samples nearest to k-means centroids of embed features.

    ``kmeans_{n}``: per class (class order), K = n*f^2 clusters of that class's features; when K exceeds
    the class size it is **clamped to the class size** (the reference would fail). ``imbalance_kmeans_{n}``:
    one k-means over all N samples with K = n*f^2*C (clamped to N). Duplicates possible (B10).
    Seeded with ``seed`` (the reference is unseeded).
    """
    from training.kmeans import kmeans, nearest_to_centroids

    if features is None:
        return {}
    y, C, f2 = labels, n_classes, factor ** 2
    feats = features.reshape(features.shape[0], -1)
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


@register_score("entropy_loss", inputs=("logits_last", "labels"), direction="hard",
                outputs=(Output("entropy", base=Base(label="Entropy", row=2)), "loss"))
def _entropy_loss(logits_last, labels):
    """Entropy and loss (docs/algorithms.md#forgetting-aum-and-entropy): entropy -sum q ln(q + 1e-10) and CE of the
    final model on clean images."""
    if logits_last is None:
        return {}
    logits = logits_last.detach().float().cpu()
    q = logits.softmax(1)
    entropy = -(q * torch.log(q + 1e-10)).sum(1)
    loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
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


# AUM: a high margin marks an easy image, so the default ("hard") selection keeps the lowest margins (reference
# utils/img_loader.py, load_data_path, flips use_hard for accumulated_margin)
@register_score("dynamics", inputs=("epochs", "labels", "batch_ids"), kind="stats", provides=("error_norms",),
                outputs=("targets", "correctness",
                         Output("forgetting", "scores", "hard",
                                Base(label="Forg.", variants={"_easy": "Forg. (easy)"}, row=4)),
                         "last_correctness",
                         Output("accumulated_margin", "scores", "easy",
                                Base(label="AUM", variants={"_easy": "AUM (easy)"}, row=3)),
                         "last_correct_count", "correct_num", "loss_epoch"))
def _dynamics(epochs, labels, batch_ids):
    """Per-epoch statistics of the training outputs (YOCO reference generate_importance_score.py;
    docs/algorithms.md#scores), one pass over the epochs' ``EpochStats``."""
    E, N = epochs.E, epochs.N
    correctness = torch.zeros(N, dtype=torch.int32)
    forgetting = torch.zeros(N, dtype=torch.int32)
    prev = torch.zeros(N, dtype=torch.bool)  # "previous" starts as wrong: first observation never counts
    aum = torch.zeros(N, dtype=torch.float32)
    correct_num = torch.zeros(E, dtype=torch.int32)
    loss_epoch = torch.zeros(E, dtype=torch.float32)
    err = torch.zeros(E, N, dtype=torch.float32)  # per-epoch error norm |onehot(y) - p|_2
    for e in range(E):
        st = epochs.stats(e)
        acc = st.correct
        correctness += acc.int()
        forgetting += (prev & ~acc).int()  # correct before, wrong now; never-learned stay 0 (B6)
        prev = acc
        correct_num[e] = int(acc.sum())
        aum += st.logp_y.exp() - st.p_other  # AUM on probabilities, summed over ALL epochs (quirk)
        err[e] = error_norm(st)
        if batch_ids is not None:  # sum over the epoch's batches of the batch-mean CE (CE = -log p_y)
            loss_epoch[e] = sum_of_batch_means(-st.logp_y, batch_ids[e])
    res = {
        "targets": labels.to(torch.int32),
        "correctness": correctness,
        "forgetting": forgetting,
        "last_correctness": prev.to(torch.int32),
        "accumulated_margin": aum,
        "last_correct_count": torch.zeros(N, dtype=torch.int32),  # never filled in the reference (dead)
        "correct_num": correct_num,
    }
    if batch_ids is not None:
        res["loss_epoch"] = loss_epoch
    return {**res, "error_norms": err}


@register_score("el2n", inputs=("error_norms",), direction="hard",
                outputs=("LBPE_0_10",
                         Output("el2n", base=Base(label="EL2N", variants={"_easy": "EL2N (easy)"}, row=5))))
def _el2n(error_norms):
    """EL2N (docs/algorithms.md#el2n-and-lbpe): ``LBPE_0_10`` = sum of the error norm over epochs 0..9 (those
    available); ``el2n`` is the SAME tensor object (identity survives pickling).

    The sum is the YOCO reference's sequence (``generate_importance_score.py``, ``LBPE``: a float32 zero vector
    and ``+=`` epoch after epoch), ((0 + e_0) + e_1) + ..., not ``error_norms[:10].sum(0)``, whose CPU reduction
    groups the epochs differently and rounds differently; the score is ranked, so a near-tie decides the
    selection (docs/algorithms.md#ties-and-randomness)."""
    t = torch.zeros_like(error_norms[0])
    for e in range(min(10, error_norms.shape[0])):
        t = t + error_norms[e]
    return {"LBPE_0_10": t, "el2n": t}


def top_epochs(values, k, *, largest=True):
    """The ``k`` epochs with the largest (or smallest) ``values``; ties -> lower epoch first (stable sort).

    The reference uses ``torch.topk`` whose tie order is implementation-defined (docs/algorithms.md#el2n-and-lbpe).
    """
    order = torch.sort(values, descending=largest, stable=True).indices
    return [int(e) for e in order[:k]]


@register_score("LBPE_top", inputs=("error_norms", "correct_num", "loss_epoch", "stop_epoch", "topk", "use_loss"),
                direction="hard",
                outputs=("LBPE_{e}_{e1}",
                         Output("LBPE_top{k}", base=Base("yoco", key="LBPE_top{topk}", hard=False, balance=True,
                                                         label="LBPE + balanced (YOCO)",
                                                         variants={"_imbalance": "LBPE, imbalanced"}, row=7)),
                         Output("neg_loss_epoch", "stats"), "loss_LBPE_top{k}"))
def _lbpe_top(error_norms, correct_num, loss_epoch, stop_epoch, topk, use_loss):
    """YOCO's LBPE (docs/algorithms.md#el2n-and-lbpe; YOCO reference generate_importance_score.py, LBPE): sum of the
    error norm over the K epochs of [0, stop_epoch) with the most
    correct training predictions; stores each chosen ``LBPE_{e}_{e+1}`` and ``LBPE_top{K}``. With
    ``use_loss`` also ``neg_loss_epoch`` (= -loss_epoch) and ``loss_LBPE_top{K}`` over the K epochs of
    smallest ``loss_epoch``. The paper's mean over epochs is a sum here (same ranking)."""
    err, stop = error_norms, stop_epoch
    res = {}

    def lbpe(epochs):
        total = torch.zeros_like(err[0])
        for e in epochs:
            key = f"LBPE_{e}_{e + 1}"
            res.setdefault(key, err[e].clone())
            total = total + res[key]
        return total

    for K in topk:
        res[f"LBPE_top{K}"] = lbpe(top_epochs(correct_num[:stop], K, largest=True))
    if use_loss:
        res["neg_loss_epoch"] = -loss_epoch
        for K in topk:
            res[f"loss_LBPE_top{K}"] = lbpe(top_epochs(loss_epoch[:stop], K, largest=False))
    return res


def _dynamics_source(dynamics, targets):
    """``(Epochs, C)``: the log's epochs (``stats(e)`` gives the ``EpochStats`` of epoch e) and its classes."""
    from yoco.dynamics_stats import DynamicsStats, EpochStats

    if isinstance(dynamics, DynamicsStats):
        E, N, C = dynamics.shape
        if targets.numel() == N and not torch.equal(targets, dynamics.targets):
            raise UserError("the dynamics statistics were computed with other labels than the dataset's; "
                            "recompute them (get_training_dynamics.py --compact stats) on this data")
        return Epochs(E, N, dynamics.epoch), C
    if not torch.is_tensor(dynamics) or dynamics.dim() != 3:
        raise UserError(f"logp must be [E, N, C], got {tuple(getattr(dynamics, 'shape', ()))}")
    E, N, C = dynamics.shape
    return Epochs(E, N, lambda e: EpochStats.from_logp(dynamics[e], targets)), C


def compute_scores(dynamics, targets, *, stop_epoch, topk, use_loss=False, batch_ids=None, logits_last=None,
                   features=None, factor=1, seed=0):
    """All score keys of docs/algorithms.md#score-file (YOCO reference generate_importance_score.py) as a dict
    (insertion order = reference computation order).

    dynamics: logp [E, N, C] log-softmax per epoch (``yoco.dynamics_io.epoch_arrays``) or a
    ``yoco.dynamics_stats.DynamicsStats`` (stats file; same scores up to float32 rounding); targets [N] labels;
    stop_epoch E_stop (LBPE epochs are chosen in [0, E_stop)); topk an int or list of ints;
    batch_ids [E, N] batch position of each sample per epoch (for ``loss_epoch``; default for a
    ``DynamicsStats``: its own); logits_last [N, C]; features [N, D]; factor f (k-means K = n*f^2); seed for k-means.
    """
    from yoco.dynamics_stats import DynamicsStats

    targets = torch.as_tensor(targets).long().cpu().reshape(-1)
    epochs, C = _dynamics_source(dynamics, targets)
    E, N = epochs.E, epochs.N
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
    given = {"epochs": epochs, "labels": targets, "n_classes": C, "stop_epoch": int(stop_epoch), "topk": topk,
             "use_loss": bool(use_loss), "batch_ids": None if batch_ids is None else batch_ids.long().cpu(),
             "logits_last": logits_last, "features": features, "factor": int(factor), "seed": int(seed)}
    return run_scores(given)


def run_scores(given):
    """Every registered family on the inputs ``given`` ({name in ``INPUTS``: value}), in the order of their
    inputs; the score file's dict, its keys in ``file_order``. A family is called with exactly the values it
    declares (None for one another family did not write: a key it writes only with some inputs)."""
    values, results = dict(given), {}
    for score in computation_order(set(given)):
        res = score.fn(**{name: values.get(name) for name in score.inputs})
        wrong = [k for k in res if not declared(score, k)]
        if wrong:
            raise ValueError(f"score {score.name} returned keys it does not declare: {', '.join(map(str, wrong))}")
        results[score.name] = res
        values.update(res)
    out = {}
    for name in file_order():
        out.update((k, v) for k, v in results[name].items() if k not in SCORES[name].provides)
    return out


def file_order():
    """The families in the score file's order: ``FILE_ORDER``, then the others by name."""
    return [n for n in FILE_ORDER if n in SCORES] + sorted(n for n in SCORES if n not in FILE_ORDER)


def save_score_file(path, d):
    """Reference format: ``pickle.dump(dict)`` (YOCO reference generate_importance_score.py;
    docs/algorithms.md#score-file), written atomically."""
    from yoco.dynamics_io import atomic_pickle

    atomic_pickle(d, path)


# what the score file's reader checks beyond a key's declared kind (``yoco.registry.output_of``; keys of the
# ``dynamics`` and ``LBPE_top`` families above): counts are integers >= 0, and these keys hold one value per epoch
COUNT_KEYS = ("targets", "correctness", "forgetting", "last_correctness", "last_correct_count", "correct_num")
PER_EPOCH_KEYS = ("correct_num", "loss_epoch", "neg_loss_epoch")
SCORE_FILE_FIX = "recompute it with generate_importance_score.py, or pass another --score_file"


def load_score_file(path, n=None):
    """Read a score pickle (ours or the reference's) with the restricted unpickler (``utils.safe_pickle``), every key
    checked (``check_score_file``; ``n``: the decoded images it must score, None: not known here)."""
    if not os.path.exists(path):
        raise UserError(f"score file {path!r} not found; run generate_importance_score.py first")
    from utils.safe_pickle import load_pickle

    return check_score_file(load_pickle(path, "score file"), path, n)


def check_score_file(d, path, n=None):
    """The one check of a score file's contents (YOCO reference generate_importance_score.py;
    docs/algorithms.md#score-file), key by key as ``yoco.registry`` declares it: a clustering (``kmeans_{n}``) is a
    list (or tensor) of integer indices in [0, N); every other key a 1-D numeric tensor, numpy array or list without
    NaN/Inf, of N entries (one per decoded image; N = ``n``, else the length of ``targets``, else of the first such
    key) or E (``PER_EPOCH_KEYS``, one per epoch, the same E for all); ``COUNT_KEYS`` hold integers >= 0. A key no
    score declares is checked as per-image scores (it is read as such). One-line ``UserError`` naming the file, the
    key and the fix."""
    from utils.fields import Fields
    from yoco.dynamics_io import array_field

    rec = Fields(d, path, SCORE_FILE_FIX)
    if not d:
        rec.fail("holds no scores (an empty mapping)")
    bad = [k for k in d if not isinstance(k, str)]
    if bad:
        rec.fail(f"has the key {bad[0]!r} ({type(bad[0]).__name__}); the keys of a score file are names")
    arrays, lists = {}, []
    for key, v in d.items():
        out = output_of(key)
        if out is not None and out.kind == "clustering":
            lists.append(key)
            continue
        if out is None and not (torch.is_tensor(v) or isinstance(v, list) or type(v).__module__ == "numpy"):
            continue  # an undeclared key that holds no array (a name, a note): not a score
        ints = key in COUNT_KEYS
        arrays[key] = array_field(rec, key, ("int",) if ints else ("number",), ndim=1, finite=True,
                                  lo=0 if ints else None, numpy=True, lists=True)
    sizes = {}  # "N" / "E" -> (key, length) of the first key that set it
    if n is not None:
        sizes["N"] = ("the decoded set", int(n))
    for key in ("targets", *arrays):
        if key in arrays:
            what = "E" if key in PER_EPOCH_KEYS else "N"
            ref, length = sizes.setdefault(what, (key, arrays[key].numel()))
            if arrays[key].numel() != length:
                one = "one per epoch" if what == "E" else "one per decoded image"
                rec.fail(f"has {arrays[key].numel()} entries, but {ref!r} has {length} ({one})", key)
    if "correct_num" in arrays and "N" in sizes and arrays["correct_num"].numel() \
            and int(arrays["correct_num"].max()) > sizes["N"][1]:
        rec.fail(f"holds {int(arrays['correct_num'].max())} correct predictions in an epoch of {sizes['N'][1]} images",
                 "correct_num")
    hi = sizes["N"][1] - 1 if "N" in sizes else None
    for key in lists:
        if torch.is_tensor(d[key]) or type(d[key]).__module__ == "numpy":
            array_field(rec, key, ("int",), ndim=1, lo=0, hi=hi, numpy=True)
        else:  # a flat list (the reference's), or per-class lists of one level (as released)
            rec.get(key, list)
            rec.tree(key, int, 2, lo=0, hi=hi)
    return d
