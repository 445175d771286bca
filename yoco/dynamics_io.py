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
from utils.fields import Fields
from utils.files import atomic_save, atomic_write, load_torch
from utils.safe_pickle import ZIP_MAGIC, load_pickle

COMPACT_FORMAT = "yoco-dynamics-compact"
COMPACT_VERSION = 1
STATS_FORMAT = "yoco-dynamics-stats"
STATS_VERSION = 1
REGENERATE = "regenerate it with get_training_dynamics.py"
_MISSING = object()
_KINDS = {"int": "integers", "float": "floating-point numbers", "number": "numbers", "bool": "true/false values"}


def _kind(t):
    return "bool" if t.dtype == torch.bool else "float" if t.is_floating_point() else \
        "complex" if t.is_complex() else "int"


def array_field(rec, key, kinds, *, ndim=None, shape=None, lo=None, hi=None, finite=False, neg_inf=False,
                numpy=False, lists=False, default=_MISSING):
    """The array under ``key`` of ``rec`` (a ``utils.fields.Fields``; it checks scalars only) as a CPU tensor, checked
    field by field with ``rec.fail``: a tensor (``numpy``: or a numpy array; ``lists``: or a list of numbers) whose
    elements are of ``kinds`` (``"int"``, ``"float"``, ``"bool"``, ``"number"``: int or float), ``ndim``, ``shape`` (None entries: any size), range ``lo..hi``, finite (``neg_inf``: -inf is
    allowed, a log-probability of 0)."""
    if not rec.has(key):
        if default is _MISSING:
            rec.fail("is missing", key)
        return default
    v = rec.doc[key]
    if numpy and isinstance(v, np.ndarray) and v.dtype.kind in "biuf":
        v = torch.from_numpy(np.ascontiguousarray(v))
    elif lists and isinstance(v, list):
        if not all(isinstance(x, (int, float)) for x in v):
            bad = next(i for i, x in enumerate(v) if not isinstance(x, (int, float)))
            rec.fail(f"is {type(v[bad]).__name__} {str(v[bad])[:30]!r}, expected a number", (key, bad))
        bools = [isinstance(x, bool) for x in v]
        if any(bools) and not all(bools):
            rec.fail("is true/false, expected a number", (key, bools.index(True)))
        v = torch.tensor(v) if v else torch.zeros(0)
    if not torch.is_tensor(v):
        what = "a tensor" + (" or numpy array" if numpy else "") + (" or list of numbers" if lists else "")
        rec.fail(f"is {type(v).__name__}, expected {what}", key)
    k = _kind(v)
    if k not in kinds and not (k in ("int", "float") and "number" in kinds):
        rec.fail(f"holds {str(v.dtype).replace('torch.', '')} values, expected "
                 f"{' or '.join(_KINDS[x] for x in kinds)}", key)
    if ndim is not None and v.dim() != ndim:
        rec.fail(f"has {v.dim()} dimensions {tuple(v.shape)}, expected {ndim}", key)
    if shape is not None and (v.dim() != len(shape) or any(w is not None and n != w for n, w in zip(v.shape, shape))):
        want = "(" + ", ".join("*" if w is None else str(w) for w in shape) + ")"
        rec.fail(f"has shape {tuple(v.shape)}, expected {want}", key)
    if v.numel() and k == "float" and (finite or neg_inf):
        bad = v.isnan() | (v == float("inf")) if neg_inf else ~torch.isfinite(v)
        n = int(bad.sum())
        if n:
            rec.fail(f"holds {n} NaN/Inf values of {v.numel()}", key)
    if v.numel() and k != "bool" and lo is not None and v.min() < lo:
        rec.fail(f"holds {v.min().item()} at {int(v.flatten().argmin())}, below {lo}", key)
    if v.numel() and k != "bool" and hi is not None and v.max() > hi:
        rec.fail(f"holds {v.max().item()} at {int(v.flatten().argmax())}, above {hi}", key)
    return v


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


def _check_records(records, n, c, source=None):
    """What a log must hold beyond its records' fields (``check_log``): epochs 0..E-1, ``c`` classes, indices below
    ``n``. ``source``: the file, for messages."""
    at = f"{source}: " if source else ""
    fix = f"; {REGENERATE}" if source else ""
    if not records:
        raise UserError(f"{at}the training-dynamics log has no records{fix}")
    epochs = sorted({int(r["epoch"]) for r in records})
    if epochs != list(range(len(epochs))):
        raise UserError(f"{at}the dynamics log must cover epochs 0..E-1 without gaps; found epochs "
                        f"{epochs[:5]}...{epochs[-3:]}{fix}")
    for i, r in enumerate(records):
        idx, out = r["idx"], r["output"]
        if out.dim() != 2 or out.shape != (idx.numel(), c):
            raise UserError(f"{at}dynamics record {i} (epoch {r['epoch']}, iteration {r['iteration']}): field 'output' "
                            f"has shape {tuple(out.shape)}, expected ({idx.numel()}, {c}){fix}")
        if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise UserError(f"{at}dynamics record {i} (epoch {r['epoch']}): field 'idx' holds "
                            f"{int(idx.max())}, out of range [0, {n}){fix}")
    return epochs


def _check_coverage(counts, epochs, source=None):
    """YOCO reference get_training_dynamics.py; ccs/core/training/Trainer.py; docs/algorithms.md#the-dynamics-run: every
    sample is observed exactly once per epoch."""
    for e in epochs:
        bad = (counts[e] != 1).nonzero().flatten()
        if bad.numel():
            i = int(bad[0])
            raise UserError(f"{source + ': ' if source else ''}dynamics log epoch {e}: sample {i} observed "
                            f"{int(counts[e, i])} times ({bad.numel()} samples not observed exactly once); every "
                            "sample must appear once per epoch" + (f"; {REGENERATE}" if source else ""))


def record_layout(records, N, C, fill=None, source=None):
    """Walk the records in log order (``fill(epoch, idx, record)`` per record) -> ``(epochs, batch_ids [E, N])``,
    after checking that every sample is observed exactly once per epoch (``source``: the file, for messages)."""
    epochs = _check_records(records, N, C, source)
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
    _check_coverage(counts, epochs, source)
    return epochs, batch_ids


def epoch_arrays(records, N, C, *, dtype=torch.float32, source=None):
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

    epochs, batch_ids = record_layout(records, N, C, fill, source)
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
    """A torch-saved dynamics file (compact log or stats), every field checked (``check_blob``)."""
    blob = load_torch(path, "training-dynamics file", REGENERATE)
    return check_blob(blob, path)


def check_blob(blob, path):
    """The one check of the two torch-saved formats (module docstring), field by field: format and version, the
    sizes, and every array's type, shape and range (the compact log's offsets and per-epoch batch sizes, the stats'
    [E, N] columns and labels). One-line ``UserError`` naming the file, the field and the fix."""
    top = Fields(blob, path, REGENERATE)
    fmt = blob.get("format")
    if fmt not in _VERSIONS:
        top.fail(f"is {fmt!r}: this torch file is not a training-dynamics log (compact or stats)", "format")
    top.get("version", int, choices=(_VERSIONS[fmt],))
    top.get("data-name", str, nonempty=True)
    n = top.get("num_samples", int, lo=1)
    c = top.get("num_classes", int, lo=1)
    if fmt == COMPACT_FORMAT:
        epochs = array_field(top, "epochs", ("int",), ndim=1)
        E = epochs.numel()
        if E == 0 or not torch.equal(epochs, torch.arange(E, dtype=epochs.dtype)):
            top.fail(f"is {epochs.tolist()[:6]}, expected the epochs 0..E-1 (at least one)", "epochs")
        sizes = {}
        for key, row in (("logp", 0), ("order", 1)):
            sizes[key] = array_field(top, key, ("int",), ndim=1).numel()
            if top.doc[key].dtype != torch.uint8:
                top.fail(f"holds {top.doc[key].dtype}, expected uint8 (packed bytes)", key)
        off = array_field(top, "offsets", ("int",), shape=(2, E + 1), lo=0)
        for key, row in (("logp", 0), ("order", 1)):
            if int(off[row, 0]) != 0 or bool((off[row, 1:] < off[row, :-1]).any()) or int(off[row, -1]) != sizes[key]:
                top.fail(f"is not 0, ..., {sizes[key]} non-decreasing (the ends of the epochs in '{key}')",
                         ("offsets", row))
        recs = array_field(top, "records", ("int",), shape=(None, 3), lo=0)
        if not len(recs):
            top.fail("is empty: the log has no records", "records")
        if int(recs[:, 0].max()) >= E:
            top.fail(f"names epoch {int(recs[:, 0].max())}, but the file has epochs 0..{E - 1}", "records")
        per = torch.zeros(E, dtype=torch.int64).index_add_(0, recs[:, 0].long(), recs[:, 2].long())
        bad = (per != n).nonzero().flatten()
        if bad.numel():
            e = int(bad[0])
            top.fail(f"epoch {e} holds {int(per[e])} samples, not num_samples = {n} (every sample once per epoch)",
                     "records")
    else:
        array_field(top, "targets", ("int",), shape=(n,), lo=0, hi=c - 1)
        cols = {}
        for key, kinds, checks in (("logp_y", ("float",), dict(neg_inf=True, hi=0)),
                                   ("p_other", ("float",), dict(finite=c > 1, lo=0, hi=1) if c > 1 else {}),
                                   ("sq_other", ("float",), dict(finite=True, lo=0, hi=1)),
                                   ("correct", ("bool",), {}), ("batch_ids", ("int",), dict(lo=0))):
            cols[key] = array_field(top, key, kinds, ndim=2, **checks)
        E = cols["logp_y"].shape[0]
        for key, v in cols.items():
            if tuple(v.shape) != (E, n) or E == 0:
                top.fail(f"has shape {tuple(v.shape)}, expected [E, num_samples] = [{E}, {n}] as 'logp_y' "
                         "(at least one epoch)", key)
    return blob


def _no_records(path):
    return UserError(f"{path} is a statistics-only dynamics file (--compact stats): it holds per-sample score "
                     "statistics, not the log-softmax records, so it cannot be converted back to the reference "
                     "pickle (rerun get_training_dynamics.py without --compact stats for that)")


def _compact_epoch(blob, e, path="the compact dynamics file"):
    """(logp [N, C] fp16 by sample index, order [N] int64 = samples in log order) of epoch e; packed bytes that do
    not decompress to those arrays, or an order that is not every sample once, are a one-line ``UserError``."""
    n, c, off = blob["num_samples"], blob["num_classes"], blob["offsets"]
    rec = Fields(blob, path, REGENERATE)
    out = []
    for key, row, dtype, shape in (("logp", 0, np.float16, (n, c)), ("order", 1, np.int32, (n,))):
        buf = blob[key][int(off[row, e]):int(off[row, e + 1])].numpy().tobytes()
        try:
            out.append(_unpack(buf, dtype, shape))
        except (zlib.error, ValueError) as err:
            rec.fail(f"epoch {e}: its packed bytes do not hold a {list(shape)} array "
                     f"({type(err).__name__}: {str(err)[:60]}): the file is truncated or damaged", key)
    lp, order = out[0], out[1].long()
    if bool(lp.isnan().any()) or bool((lp == float("inf")).any()):
        rec.fail(f"epoch {e} holds NaN/Inf log-probabilities (the dynamics run diverged); re-run "
                 "get_training_dynamics.py with a lower learning rate", "logp")
    if n and (int(order.min()) < 0 or int(order.max()) >= n
              or not bool((torch.bincount(order, minlength=n) == 1).all())):
        rec.fail(f"epoch {e} is not every sample 0..{n - 1} once", "order")
    return lp, order


def _compact_records(blob, path):
    cache, offset, records = {}, {}, []
    for e, it, b in blob["records"].tolist():
        if e not in cache:
            cache = {e: _compact_epoch(blob, e, path)}  # records are grouped by epoch in practice
        logp, order = cache[e]
        o = offset.get(e, 0)
        idx = order[o:o + b].clone()
        offset[e] = o + b
        records.append({"epoch": e, "iteration": it, "idx": idx, "output": logp[idx].clone()})
    return records


def is_compact(path):
    """True for the torch-saved formats (compact log or stats), False for the reference pickle: told by the file's
    first bytes (a zip archive), so that a truncated torch file is named as such, not as a damaged pickle."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == ZIP_MAGIC
    except OSError:
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
        return {"data-name": blob["data-name"], "training_dynamics": _compact_records(blob, path)}
    return check_log(load_pickle(path, "training-dynamics log"), path)


def check_log(d, path):
    """The one check of the reference pickle's contents (YOCO reference get_training_dynamics.py;
    docs/algorithms.md#the-dynamics-run), field by field: ``data-name`` a string, ``training_dynamics`` a list of
    records ``{'epoch': int >= 0, 'iteration': int >= 0, 'idx': int tensor (B,) >= 0, 'output': float tensor (B, C)}``
    with one C for all records and no NaN/+Inf output (-inf: a probability of 0). One-line ``UserError`` naming the
    file, the record and the field."""
    top = Fields(d, path, REGENERATE)
    top.get("data-name", str, nonempty=True)
    recs = top.get("training_dynamics", list)
    c, group = None, []
    for i, r in enumerate(recs):
        rec = Fields(r, path, REGENERATE, index=i)
        rec.get("epoch", int, lo=0)
        rec.get("iteration", int, lo=0)
        idx = array_field(rec, "idx", ("int",), ndim=1)
        out = array_field(rec, "output", ("float",), ndim=2)
        if out.shape[0] != idx.numel() or (c is not None and out.shape[1] != c):
            rec.fail(f"has shape {tuple(out.shape)}, expected ({idx.numel()}, {c or 'C'}): one row per index of "
                     f"'idx'" + (f" and the {c} classes of record 0" if c is not None else ""), "output")
        c = out.shape[1] if c is None else c
        group.append(rec)
        if len(group) == 512 or i == len(recs) - 1:  # the value checks, a group of records at a time (fast)
            _check_values(group)
            group = []
    return d


def _check_values(group):
    """The range and finiteness checks of ``check_log`` on a group of checked records, in one pass; the record at
    fault is then found and named by ``array_field``."""
    idx = torch.cat([rec.doc["idx"].reshape(-1) for rec in group])
    out = torch.cat([rec.doc["output"].reshape(-1) for rec in group])
    if (idx.numel() and int(idx.min()) < 0) or bool(out.isnan().any()) or bool((out == float("inf")).any()):
        for rec in group:
            array_field(rec, "idx", ("int",), ndim=1, lo=0)
            array_field(rec, "output", ("float",), ndim=2, neg_inf=True)


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
        lp, order = _compact_epoch(blob, e, path)
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
        return d["data-name"], epoch_arrays(recs, N, C, dtype=dtype, source=path)
    blob = load_blob(path)
    if blob["format"] == STATS_FORMAT:
        raise _no_records(path)
    return blob["data-name"], compact_arrays(path, blob, N, C, dtype)
