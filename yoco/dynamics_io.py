"""The YOCO training-dynamics log (reference he-y/you-only-condense-once/get_training_dynamics.py;
docs/algorithms.md#the-dynamics-run): record, save, load, and turn into arrays.

Records (reference layout) are dicts ``{'epoch': int, 'iteration': int, 'idx': int64 (B,),
'output': float16 (B, C) log-softmax}`` in training order. Three file formats:

* **reference pickle** (``td-ipc{IPC}.pickle``): ``pickle.dump({'data-name': str,
  'training_dynamics': [record, ...]})``. It is read with ``utils.safe_pickle``'s restricted unpickler,
  which admits only containers, numbers, strings and tensors (a downloaded file cannot run code).
* **compact** (``.pt``, ``torch.save`` of plain tensors/ints/str, loadable with ``weights_only=True``):
  per epoch one fp16 [N, C] array of the log-softmax of every sample *ordered by sample index*, plus the
  per-epoch log order of the samples (int32 [N]) and per record (epoch, iteration, batch size), which
  rebuild the records exactly (bit-identical fp16 outputs, same order). Every per-epoch array is stored
  losslessly compressed: its bytes are split into byte planes (fp16 high bytes = sign/exponent are very
  repetitive, int32 high bytes are zero) and each plane is deflated by ``zlib`` (Huffman-only or RLE,
  both fast). Sizes vs the pickle (N=400, B=64, synthetic outputs): C=10 -> 2.2x smaller at E=5,
  2.8x at E=50; C=100 -> ~1.7x (the fp16 mantissa bytes are incompressible; the pickle's overhead is
  ~0.7 kB per record). Needs every sample exactly once per epoch (true for the reference trainer);
  otherwise use the reference pickle.
* **stats** (``td-ipc{IPC}-stats.pt``, ``--compact stats``; ``torch.save`` of plain tensors, loadable with
  ``weights_only=True``): not a log but, per epoch and sample, the sufficient statistics of every dynamics
  score of docs/algorithms.md#scores (YOCO reference generate_importance_score.py) (``EpochStats``: log p_y, max_{k!=y}
  p_k, sum_{k!=y} p_k^2, argmax == y) plus the
  batch ids (for ``loss_epoch``) and the labels they were computed with: [E, N] arrays independent of C,
  13 bytes per sample and epoch (fp16 log p_y as stored in the log, two float32, bool, int16 batch id) vs
  2*C bytes of fp16 log-softmax (CIFAR-100 IPC50: ~250 MiB vs ~4 GiB, ~16x smaller). Lossy by design: it cannot
  be turned back into records / the reference pickle (``load_dynamics`` says so).

``load_dynamics`` reads the pickle and the compact format (detected from the file, not the extension).
``epoch_arrays`` / ``to_epoch_array`` turn records into the [E, N, C] array; ``load_score_input`` gives
what ``yoco.scores.compute_scores`` takes, from any of the three formats (it lives in
``yoco.dynamics_stats``, which builds on this module).
"""
import os
import pickle
import zipfile
import zlib
from typing import NamedTuple

import numpy as np
import torch

from utils.errors import UserError
from utils.files import atomic_save, atomic_write, load_torch
from utils.safe_pickle import load_pickle

COMPACT_FORMAT = "yoco-dynamics-compact"
COMPACT_VERSION = 1
STATS_FORMAT = "yoco-dynamics-stats"
STATS_VERSION = 1


def atomic_pickle(obj, path):
    """``pickle.dump`` (default protocol, as the reference) through temp file + rename."""
    atomic_write(path, lambda f: pickle.dump(obj, f))


class DynamicsLog:
    """Accumulates one record per training iteration (YOCO reference get_training_dynamics.py;
    ccs/core/training/Trainer.py; docs/algorithms.md#the-dynamics-run)."""

    def __init__(self):
        self.records = []

    def append(self, epoch, iteration, idx, output):
        """``idx``: decoded-dataset indices (B,); ``output``: log-softmax (B, C) of the same forward pass.
        The output stays on its device (fp16) until ``settle`` moves the records to the CPU (once per
        epoch), so recording never makes the training wait for the host."""
        # clone: a view would pickle its whole base tensor (e.g. the epoch's permutation)
        idx = torch.as_tensor(idx).detach().to("cpu", torch.int64).reshape(-1).clone()
        output = torch.as_tensor(output).detach().to(torch.float16).clone()
        if output.dim() != 2 or output.shape[0] != idx.numel():
            raise UserError(f"dynamics record: output shape {tuple(output.shape)} does not match {idx.numel()} indices")
        self.records.append({"epoch": int(epoch), "iteration": int(iteration), "idx": idx, "output": output})

    def settle(self):
        """Move every record's output to the CPU (before saving or reading the records)."""
        for r in self.records:
            r["output"] = r["output"].cpu()

    def __len__(self):
        return len(self.records)

    def save(self, path, data_name, *, compact=True, num_samples=None):
        if compact:
            save_compact(path, data_name, self.records, num_samples=num_samples)
        else:
            save_reference_pickle(path, data_name, self.records)


def save_reference_pickle(path, data_name, records):
    """The reference ``td-ipc{IPC}.pickle`` layout (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run), written atomically."""
    recs = [{"epoch": int(r["epoch"]), "iteration": int(r["iteration"]), "idx": r["idx"], "output": r["output"]}
            for r in records]
    atomic_pickle({"data-name": data_name, "training_dynamics": recs}, path)


# ----------------------------------------------------------------------------------------------------
# arrays

class EpochArrays(NamedTuple):
    logp: torch.Tensor  # [E, N, C] log-softmax, rows ordered by sample index
    epochs: list  # epoch numbers, == list(range(E))
    batch_ids: torch.Tensor  # [E, N] int64: position of the sample's batch within its epoch


def _check_records(records, n, c):
    if not records:
        raise UserError("the training-dynamics log has no records")
    epochs = sorted({int(r["epoch"]) for r in records})
    if epochs != list(range(len(epochs))):
        raise UserError(f"the dynamics log must cover epochs 0..E-1 without gaps; found epochs {epochs[:5]}...{epochs[-3:]}")
    for r in records:
        idx, out = r["idx"], r["output"]
        if out.dim() != 2 or out.shape != (idx.numel(), c):
            raise UserError(f"dynamics record (epoch {r['epoch']}, iteration {r['iteration']}): output shape "
                            f"{tuple(out.shape)}, expected ({idx.numel()}, {c})")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise UserError(f"dynamics record (epoch {r['epoch']}): sample index out of range [0, {n})")
    return epochs


def _check_coverage(counts, epochs):
    """YOCO reference get_training_dynamics.py; ccs/core/training/Trainer.py; docs/algorithms.md#the-dynamics-run: every
    sample is observed exactly once per epoch."""
    for e in epochs:
        bad = (counts[e] != 1).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise UserError(f"dynamics log epoch {e}: sample {i} observed {int(counts[e, i])} times "
                            f"({bad.numel()} samples not observed exactly once); every sample must appear once per epoch")


def record_layout(records, N, C, fill=None):
    """Walk the records in log order (``fill(epoch, idx, record)`` per record) -> ``(epochs, batch_ids [E, N])``,
    after checking that every sample is observed exactly once per epoch."""
    epochs = _check_records(records, N, C)
    E = len(epochs)
    batch_ids = torch.full((E, N), -1, dtype=torch.int64)
    counts = torch.zeros(E, N, dtype=torch.int64)
    pos = [0] * E
    for r in records:
        e, idx = int(r["epoch"]), r["idx"].long()
        if fill is not None:
            fill(e, idx, r)
        batch_ids[e, idx] = pos[e]
        pos[e] += 1
        counts[e].index_add_(0, idx, torch.ones_like(idx))
    _check_coverage(counts, epochs)
    return epochs, batch_ids


def epoch_arrays(records, N, C, *, dtype=torch.float32):
    """Records -> ``EpochArrays(logp [E,N,C] dtype, epochs, batch_ids [E,N])``.

    ``batch_ids[e, i]`` = index (in log order within epoch e) of the record holding sample i; this is the
    batch structure ``loss_epoch`` needs (YOCO reference generate_importance_score.py; docs/algorithms.md#scores).
    ``dtype=torch.float16`` is lossless (the log is
    fp16) and halves memory for large logs; scores convert one epoch at a time.
    """
    E = 1 + max((int(r["epoch"]) for r in records), default=-1)  # validated by record_layout
    logp = torch.zeros(max(E, 0), N, C, dtype=dtype)

    def fill(e, idx, r):
        logp[e, idx] = r["output"].to(dtype)

    epochs, batch_ids = record_layout(records, N, C, fill)
    return EpochArrays(logp, epochs, batch_ids)


def to_epoch_array(records, N, C, *, dtype=torch.float32):
    """``(logp [E, N, C], epochs)``: log-softmax of sample i in epoch e (each sample once per epoch)."""
    arr = epoch_arrays(records, N, C, dtype=dtype)
    return arr.logp, arr.epochs


# ----------------------------------------------------------------------------------------------------
# compact format

def _deflate(plane):
    """One byte plane -> the smaller of two fast zlib encodings (both decoded by plain ``decompress``)."""
    out = []
    for strategy in (zlib.Z_HUFFMAN_ONLY, zlib.Z_RLE):
        c = zlib.compressobj(9, zlib.DEFLATED, 15, 9, strategy)
        out.append(c.compress(plane) + c.flush())
    return min(out, key=len)


def _pack(t):
    """Lossless: little-endian bytes split into byte planes, each deflated separately (concatenated
    self-delimiting zlib streams)."""
    a = np.ascontiguousarray(t.numpy())
    a = a.astype(a.dtype.newbyteorder("<"), copy=False)
    planes = np.ascontiguousarray(a.view(np.uint8).reshape(-1, a.dtype.itemsize).T)
    return b"".join(_deflate(p.tobytes()) for p in planes)


def _unpack(buf, np_dtype, shape):
    dt = np.dtype(np_dtype).newbyteorder("<")
    planes = []
    for _ in range(dt.itemsize):
        d = zlib.decompressobj()
        planes.append(np.frombuffer(d.decompress(buf), dtype=np.uint8))
        buf = d.unused_data
    a = np.ascontiguousarray(np.stack(planes, 1)).view(dt).reshape(shape)
    return torch.from_numpy(a.astype(np.dtype(np_dtype).newbyteorder("="), copy=True))


def save_compact(path, data_name, records, *, num_samples=None):
    """Write the compact format (see module docstring); ``num_samples`` defaults to max index + 1.

    Layout (``torch.save`` of a dict, few storages so the container overhead stays small):
    ``logp``/``order``: uint8, the per-epoch packed arrays concatenated, epoch e at
    ``offsets[0|1, e]:offsets[0|1, e+1]``; ``records``: int32 [R, 3] = (epoch, iteration, batch size)
    in log order; plus ``epochs``, ``num_samples``, ``num_classes``, ``data-name``, ``format``, ``version``.
    """
    if not records:
        raise UserError("the training-dynamics log has no records")
    n = int(num_samples) if num_samples is not None else 1 + max(int(r["idx"].max()) for r in records if r["idx"].numel())
    c = int(records[0]["output"].shape[1])
    arr = epoch_arrays(records, n, c, dtype=torch.float16)
    order = [[] for _ in arr.epochs]
    for r in records:
        order[int(r["epoch"])].append(r["idx"].to(torch.int32))
    lp = [_pack(arr.logp[e]) for e in arr.epochs]
    od = [_pack(torch.cat(o)) for o in order]
    offsets = torch.tensor([[0] + np.cumsum([len(b) for b in x]).tolist() for x in (lp, od)], dtype=torch.int64)
    blob = {
        "format": COMPACT_FORMAT, "version": COMPACT_VERSION, "data-name": data_name,
        "num_samples": n, "num_classes": c,
        "epochs": torch.tensor(arr.epochs, dtype=torch.int64),
        "logp": torch.frombuffer(bytearray(b"".join(lp)), dtype=torch.uint8),
        "order": torch.frombuffer(bytearray(b"".join(od)), dtype=torch.uint8),
        "offsets": offsets,
        "records": torch.tensor([[int(r["epoch"]), int(r["iteration"]), r["idx"].numel()] for r in records],
                                dtype=torch.int32),
    }
    atomic_save(blob, path)


_VERSIONS = {COMPACT_FORMAT: COMPACT_VERSION, STATS_FORMAT: STATS_VERSION}


def load_blob(path):
    """A torch-saved dynamics file (compact log or stats), format and version checked."""
    blob = load_torch(path, "training-dynamics file", "regenerate it with get_training_dynamics.py")
    fmt = blob.get("format") if isinstance(blob, dict) else None
    if fmt not in _VERSIONS:
        raise UserError(f"{path} is a torch file but not a training-dynamics log (compact or stats)")
    if blob.get("version") != _VERSIONS[fmt]:
        raise UserError(f"{path}: unsupported {fmt} version {blob.get('version')}")
    return blob


def _no_records(path):
    return UserError(f"{path} is a statistics-only dynamics file (--compact stats): it holds per-sample score "
                     "statistics, not the log-softmax records, so it cannot be converted back to the reference "
                     "pickle (rerun get_training_dynamics.py without --compact stats for that)")


def _compact_epoch(blob, e):
    """(logp [N, C] fp16 by sample index, order [N] int64 = samples in log order) of epoch e."""
    n, c, off = blob["num_samples"], blob["num_classes"], blob["offsets"]
    lp = blob["logp"][int(off[0, e]):int(off[0, e + 1])].numpy().tobytes()
    od = blob["order"][int(off[1, e]):int(off[1, e + 1])].numpy().tobytes()
    return _unpack(lp, np.float16, (n, c)), _unpack(od, np.int32, (n,)).long()


def _compact_records(blob):
    cache, offset, records = {}, {}, []
    for e, it, b in blob["records"].tolist():
        if e not in cache:
            cache = {e: _compact_epoch(blob, e)}  # records are grouped by epoch in practice
        logp, order = cache[e]
        o = offset.get(e, 0)
        idx = order[o:o + b].clone()
        offset[e] = o + b
        records.append({"epoch": e, "iteration": it, "idx": idx, "output": logp[idx].clone()})
    return records


def is_compact(path):
    """True for the torch-saved formats (compact log or stats), False for the reference pickle."""
    return zipfile.is_zipfile(path)


def check_file(path):
    if os.path.isdir(path):
        raise UserError(f"the training-dynamics file {path} is a folder, not a file; pass the td-ipc{{IPC}}.pickle "
                        "(.pt, -stats.pt) file in it to --td-file")
    if not os.path.isfile(path):
        raise UserError(f"training-dynamics file {path!r} not found; run get_training_dynamics.py first")


def load_dynamics(path):
    """Read a dynamics log (pickle or compact) -> ``{'data-name': str, 'training_dynamics': [record, ...]}``.

    The reference pickle is read with the restricted unpickler (``utils.safe_pickle``): a file that
    names anything but containers, numbers, strings and tensors is refused. A stats file has no
    records: ``UserError``.
    """
    check_file(path)
    if is_compact(path):
        blob = load_blob(path)
        if blob["format"] == STATS_FORMAT:
            raise _no_records(path)
        return {"data-name": blob["data-name"], "training_dynamics": _compact_records(blob)}
    d = load_pickle(path, "training-dynamics log")
    if not isinstance(d, dict) or not isinstance(d.get("training_dynamics"), list):
        raise UserError(f"{path} is not a training-dynamics log (expected keys 'data-name', 'training_dynamics')")
    for i, r in enumerate(d["training_dynamics"]):
        if not (isinstance(r, dict) and torch.is_tensor(r.get("idx")) and torch.is_tensor(r.get("output"))
                and r["output"].dim() == 2 and "epoch" in r and "iteration" in r):
            raise UserError(f"{path} is not a training-dynamics log: its record {i} is not a dict of 'epoch', "
                            "'iteration', 'idx' (tensor) and 'output' ([B, C] tensor); regenerate it with "
                            "get_training_dynamics.py")
    return d


def check_nc(path, n, c, N, C):
    """The one check that a dynamics file (log or stats: ``n`` samples, ``c`` classes) belongs to the set being
    scored (``N`` decoded samples, ``C`` classes; None: not checked)."""
    if (N is not None and N != n) or (C is not None and C != c):
        have = f"{N} samples" if C is None else f"{N} samples of {C} classes" if N is not None else f"{C} classes"
        raise UserError(f"{path}: the training dynamics cover {n} samples of {c} classes but the (decoded) set has "
                        f"{have}: they were recorded on another set; re-run get_training_dynamics.py on this set, "
                        "or pass the --custom-data-dir (and -d, --ipc, -f) of the set they were recorded on, or the "
                        "--td-file of this set")


def compact_arrays(path, blob, N, C, dtype):
    n, c = blob["num_samples"], blob["num_classes"]
    check_nc(path, n, c, N, C)
    epochs = blob["epochs"].tolist()
    logp = torch.empty(len(epochs), n, c, dtype=dtype)
    batch_ids = torch.empty(len(epochs), n, dtype=torch.int64)
    sizes = {e: [] for e in epochs}
    for e, _, b in blob["records"].tolist():
        sizes[e].append(b)
    for e in epochs:
        lp, order = _compact_epoch(blob, e)
        logp[e] = lp.to(dtype)
        batch_ids[e, order] = torch.repeat_interleave(torch.arange(len(sizes[e])), torch.tensor(sizes[e]))
    return EpochArrays(logp, epochs, batch_ids)


def load_epoch_arrays(path, N=None, C=None, *, dtype=torch.float16):
    """``(data_name, EpochArrays)`` straight from a log file; the compact format skips rebuilding records."""
    check_file(path)
    if not is_compact(path):
        d = load_dynamics(path)
        recs = d["training_dynamics"]
        if recs:  # the size of the set the log was recorded on: every sample is logged once per epoch
            n = 1 + max((int(r["idx"].max()) for r in recs if r["idx"].numel()), default=-1)
            check_nc(path, n, int(recs[0]["output"].shape[-1]), N, C)
            N = n if N is None else N
            C = C if C is not None else int(recs[0]["output"].shape[-1])
        return d["data-name"], epoch_arrays(recs, N, C, dtype=dtype)
    blob = load_blob(path)
    if blob["format"] == STATS_FORMAT:
        raise _no_records(path)
    return blob["data-name"], compact_arrays(path, blob, N, C, dtype)
