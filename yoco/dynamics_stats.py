"""The ``--compact stats`` format of the YOCO dynamics log (see ``yoco.dynamics_io``'s docstring):
per epoch and sample the sufficient statistics of every dynamics score of docs/algorithms.md#scores (reference
he-y/you-only-condense-once/generate_importance_score.py), [E, N]
arrays independent of the number of classes. ``yoco.scores`` computes every score from
``EpochStats`` on both paths (full log or stats file), so the two give the same scores.
"""
from typing import NamedTuple

import torch

from utils.errors import UserError
from utils.files import atomic_save
from yoco.dynamics_io import (STATS_FORMAT, STATS_VERSION, check_file, check_nc, compact_arrays, is_compact, load_blob,
                              load_epoch_arrays, record_layout)


class EpochStats(NamedTuple):
    """Per-sample statistics of one epoch from which every dynamics score of docs/algorithms.md#scores (YOCO reference
    generate_importance_score.py) follows
    (``yoco.scores``): CE = -logp_y, p_y = exp(logp_y), AUM term p_y - p_other, error norm
    |onehot(y) - p|_2 = sqrt((1 - p_y)^2 + sq_other). ``sq_other`` excludes the label: the algebraically equal
    sqrt(1 - 2 p_y + sum_k p_k^2) cancels catastrophically in float32 for confident samples (p_y -> 1)."""
    logp_y: torch.Tensor  # [N] float32 log p_y (the stored value, exactly)
    p_other: torch.Tensor  # [N] float32 max_{k != y} p_k
    sq_other: torch.Tensor  # [N] float32 sum_{k != y} p_k^2
    correct: torch.Tensor  # [N] bool argmax_k p_k == y (torch.argmax: the first maximal index on ties)

    @classmethod
    def from_logp(cls, logp, targets):
        """``logp`` [N, C] log-softmax of one epoch (any float dtype, computed in float32), ``targets`` [N].

        ``correct`` is the argmax of the float32 probabilities ``exp(logp)``, not of ``logp``, as the YOCO
        reference's ``generate_importance_score.py`` (``training_dynamics_metrics``: ``exp(output).argmax``): exp
        can round two distinct float32 log-probabilities to one probability, and the tie then goes to the first
        class (docs/algorithms.md#ties-and-randomness). For an fp16 log both argmaxes agree (exp keeps its grid apart)."""
        lp = logp.float()
        y = torch.as_tensor(targets).long().reshape(-1, 1)
        p = lp.exp()
        q = p.scatter(1, y, 0.0)
        return cls(lp.gather(1, y).squeeze(1), p.scatter(1, y, float("-inf")).max(1).values, (q * q).sum(1),
                   p.argmax(1) == y.squeeze(1))


class DynamicsStats(NamedTuple):
    """The ``EpochStats`` of a whole log stacked to [E, N] (the stats file), with the batch structure."""
    logp_y: torch.Tensor  # [E, N] dtype of the log (fp16: lossless)
    p_other: torch.Tensor  # [E, N] float32
    sq_other: torch.Tensor  # [E, N] float32
    correct: torch.Tensor  # [E, N] bool
    batch_ids: torch.Tensor  # [E, N] int64, as ``EpochArrays.batch_ids``
    targets: torch.Tensor  # [N] int64 labels the statistics were computed with
    num_classes: int

    @property
    def shape(self):
        """``(E, N, C)`` of the log these statistics summarise."""
        return (*self.logp_y.shape, self.num_classes)

    def epoch(self, e):
        return EpochStats(self.logp_y[e].float(), self.p_other[e].float(), self.sq_other[e].float(),
                          self.correct[e].bool())


def _check_targets(targets, n, c):
    y = torch.as_tensor(targets).long().cpu().reshape(-1)
    if y.numel() != n:
        raise UserError(f"the dynamics log has {n} samples but {y.numel()} labels were given")
    if n and (int(y.min()) < 0 or int(y.max()) >= c):
        raise UserError(f"labels must lie in [0, {c}) for a log with {c} classes")
    return y


def stats_from_records(records, targets, N, C):
    """Records -> ``DynamicsStats``; one [N, C] epoch at a time (little memory), row order by sample index
    as ``epoch_arrays`` (so the statistics equal ``EpochStats.from_logp(logp[e], targets)`` bit for bit)."""
    y = _check_targets(targets, N, C)
    epochs, batch_ids = record_layout(records, N, C)
    by_epoch = [[] for _ in epochs]
    for r in records:
        by_epoch[int(r["epoch"])].append(r)
    dtype = records[0]["output"].dtype
    E = len(epochs)
    cols = [torch.empty(E, N, dtype=dtype), torch.empty(E, N), torch.empty(E, N), torch.empty(E, N, dtype=torch.bool)]
    buf = torch.zeros(N, C, dtype=dtype)
    for e, recs in enumerate(by_epoch):
        for r in recs:
            buf[r["idx"].long()] = r["output"].to(dtype)
        for col, v in zip(cols, EpochStats.from_logp(buf, y)):
            col[e] = v.to(col.dtype)  # logp_y: float32 of a `dtype` value -> exact
    return DynamicsStats(*cols, batch_ids, y, C)


def _max_index(records):
    return max(int(r["idx"].max()) for r in records if r["idx"].numel())


def save_stats(path, data_name, records, targets, *, num_samples=None):
    """Write ``td-ipc{IPC}-stats.pt`` (see module docstring): ``torch.save`` of a dict of plain tensors
    ``logp_y``, ``p_other``, ``sq_other``, ``correct``, ``batch_ids`` (int16, int32 beyond 32767 batches),
    ``targets`` + ``num_samples``, ``num_classes``, ``data-name``, ``format``, ``version``; atomic."""
    if not records:
        raise UserError("the training-dynamics log has no records")
    n = int(num_samples) if num_samples is not None else _max_index(records) + 1
    c = int(records[0]["output"].shape[1])
    st = stats_from_records(records, targets, n, c)
    bid = st.batch_ids.to(torch.int16 if int(st.batch_ids.max()) < 2 ** 15 else torch.int32)
    atomic_save({"format": STATS_FORMAT, "version": STATS_VERSION, "data-name": data_name, "num_samples": n,
                 "num_classes": c, "targets": st.targets, "logp_y": st.logp_y, "p_other": st.p_other,
                 "sq_other": st.sq_other, "correct": st.correct, "batch_ids": bid}, path)


def stats_from_blob(path, blob, N, C):
    """A loaded stats file (``load_blob``) as ``DynamicsStats``, with shape checks."""
    n, c = blob["num_samples"], blob["num_classes"]
    check_nc(path, n, c, N, C)
    cols = [blob[k] for k in ("logp_y", "p_other", "sq_other", "correct", "batch_ids")]
    if any(t.dim() != 2 or t.shape[1] != n for t in cols) or len({t.shape[0] for t in cols}) != 1:
        raise UserError(f"{path}: damaged stats file (arrays are not all [E, {n}])")
    return DynamicsStats(*cols[:4], cols[4].long(), blob["targets"].long(), c)


def load_score_input(path, N=None, C=None, *, dtype=torch.float16):
    """``(data_name, dynamics, batch_ids)`` for ``yoco.scores.compute_scores`` from any dynamics file:
    ``dynamics`` = logp [E, N, C] (pickle, compact; ``dtype``) or ``DynamicsStats`` (stats file)."""
    check_file(path)
    if not is_compact(path):
        name, arr = load_epoch_arrays(path, N, C, dtype=dtype)
        return name, arr.logp, arr.batch_ids
    blob = load_blob(path)
    if blob["format"] == STATS_FORMAT:
        st = stats_from_blob(path, blob, N, C)
        return blob["data-name"], st, st.batch_ids
    arr = compact_arrays(path, blob, N, C, dtype)
    return blob["data-name"], arr.logp, arr.batch_ids
