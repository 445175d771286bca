"""Condensed sets: the reference file formats and multi-formation decoding (reference
he-y/Multisize-Dataset-Condensation/condense_reg.py; reference he-y/you-only-condense-once/utils/img_loader.py;
docs/data.md#decode-order-multi-formation; docs/condensing.md#outputs-and-resume;
docs/algorithms.md#yoco-condensed-inputs).

A condensed set is ``[data, targets]``: float pixels in [0, 1] (not normalised, not clamped),
``[nclass·ipc, C, H, W]``, class-major. With factor f every stored image is a mosaic of f×f tiles;
decoding cuts the tiles and upsamples them back to H×W. Within a class the decoded order is
**crop-major**: all images' crop (0,0), then all images' crop (0,1), ... so the first x·f² decoded
images of a class (subset IPC-x) are exactly what multi-formation initialised from real images
0 … x·f²−1 (MDC reference condense_reg.py, Synthesizer.init; docs/algorithms.md#initialisation).
"""
import glob
import os
import re

import torch
import torch.nn.functional as F

from utils.errors import UserError
from utils.files import atomic_save, load_torch
from training.determinism import bilinear_resize


def decode_zoom(img, y, factor):
    """Decode a batch of mosaics (MDC reference condense_reg.py, Synthesizer.decode_zoom;
    docs/data.md#decode-order-multi-formation): pad by 0.5, ceil tiles, crop-major, bilinear up."""
    if factor <= 1:
        return img, y
    n, c, h, w = img.shape
    rem = h % factor
    if rem:
        img = F.pad(img, (0, factor - rem, 0, factor - rem), value=0.5)
    s = img.shape[-1] // factor
    # [n, c, f, s, f, s] -> [f, f, n, c, s, s]: crop (i, j) of every image, row-major crops
    tiles = img.reshape(n, c, factor, s, factor, s).permute(2, 4, 0, 1, 3, 5).reshape(-1, c, s, s)
    out = bilinear_resize(tiles, (h, w))  # F.interpolate bilinear (training/determinism.py)
    return out, y.repeat(factor * factor)


def decode_bound(img, y, factor, bound=128):
    """``bound`` decoding (MDC reference condense_reg.py, Synthesizer.decode_zoom;
    docs/data.md#decode-order-multi-formation; the reference's ``decode_zoom_bound``).

    Reading implemented (n stored images of one class block, in stored order): ``left = n``
    undecoded images, ``done = 0`` decoded crops, ``room = bound - n``. For g = factor, factor-1,
    …, 2: decode the next ``k = min(room // g², left)`` not-yet-decoded images (the lowest stored
    indices first) with factor g, then ``left -= k``, ``done += k·g²`` and the room is recomputed as
    ``room = bound - done - left`` (one slot stays reserved for every undecoded image). At g = 1
    every remaining image is kept as it is (factor 1). The output is the concatenation of the
    blocks in that order — largest factor first, each block crop-major as ``decode_zoom`` — so
    images ``[0, k_f)`` are at factor f, the next ``k_{f-1}`` at f-1, …, the rest at 1; no image is
    dropped. E.g. n = 20, f = 3, bound = 128: 12 images × 9 + 3 × 4 + 5 × 1 = 125 crops; n = 50,
    f = 2: 19 × 4 + 31 = 107. While room ≥ 0 it stays ≥ 0 and the total is ≤ bound.

    Guard (differs from the reference): the room is negative only when n > bound; the reference
    then slices with a negative count and decodes far more than the bound. Here a negative room
    counts as 0, so every image stays at factor 1 (n outputs, the stored images unchanged).
    """
    out, outy, start, left, done = [], [], 0, len(img), 0
    for f in range(factor, 0, -1):
        if left == 0:
            break
        room = bound - done - left  # one slot reserved for every image not yet decoded
        n = left if f == 1 else min(max(room, 0) // (f * f), left)
        if n:
            d, dy = decode_zoom(img[start:start + n], y[start:start + n], f)
            out.append(d)
            outy.append(dy)
            start, left, done = start + n, left - n, done + n * f * f
    return torch.cat(out), torch.cat(outy)


def decode_class(img, y, factor, decode_type="single", bound=128):
    """Decode one class block with the reference's decode types (single / multi / bound)."""
    if decode_type == "multi":
        parts = [decode_zoom(img, y, f) for f in range(1, factor + 1)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    if decode_type == "bound":
        return decode_bound(img, y, factor, bound)
    return decode_zoom(img, y, factor)


def decode(data, targets, factor, decode_type="single", nclass=None, bound=128):
    """Decode a whole class-major set, class by class (MDC reference test.py, load_data_path and decode). Returns
    (images, labels)."""
    if factor <= 1 and decode_type != "multi":
        return data, targets
    nclass = nclass or int(targets.max()) + 1
    ipc = len(data) // nclass
    xs, ys = [], []
    for c in range(nclass):
        x, y = decode_class(data[c * ipc:(c + 1) * ipc], targets[c * ipc:(c + 1) * ipc], factor, decode_type, bound)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def class_prefix(images, labels, nclass, per_class, keep):
    """Per class, the first ``keep`` of its ``per_class`` rows (subset IPC-y, MDC reference test.py, Cx_Cy;
    docs/algorithms.md#evaluation-protocol)."""
    if keep > per_class:
        raise UserError(f"asked for {keep} images per class but the set has only {per_class}")
    idx = torch.cat([torch.arange(c * per_class, c * per_class + keep) for c in range(nclass)])
    return images[idx], labels[idx]


# ------------------------------------------------------------------------------------------------
# I/O


def save_condensed(path, data, targets):
    """Write ``[data, targets]`` in the reference format (float32 CPU, int64), atomically."""
    atomic_save([data.detach().float().cpu(), targets.detach().long().cpu()], path)


def set_fix(flag="--test_data_dir"):
    """The advice when a condensed set cannot be read, for the command whose option ``flag`` names the set (None: a
    command without such an option)."""
    where = f"check {flag}" if flag else "check the path"
    return f"{where} (a condensed set is a torch file [data, targets] of tensors)"


def _load(path, fix=None):
    return load_torch(path, "condensed set", fix or set_fix())


def data_iteration(path):
    """The iteration of a ``data_{it}.pt`` file name, or None (``data.pt``, other names)."""
    m = re.search(r"data_(\d+)\.pt$", os.path.basename(path))
    return int(m.group(1)) if m else None


def data_iterations(folder):
    """The iterations of the ``data_{it}.pt`` files of ``folder``, ascending."""
    return sorted(it for p in glob.glob(os.path.join(folder, "data_*.pt")) if (it := data_iteration(p)) is not None)


def latest_data_file(folder, niter=None, strict=False):
    """``data_{niter}.pt`` if present, else ``data.pt``, else the highest ``data_{it}.pt`` (the reference
    hard-coded ``data_2000.pt``, mdc 7 in docs/reference-differences.md#bugs-fixed). ``strict`` (an ``--niter`` the user
    asked for): ``data_{niter}.pt`` or a one-line error listing the iterations the folder holds, never another file."""
    its = data_iterations(folder)
    if strict:
        p = os.path.join(folder, f"data_{niter}.pt")
        if os.path.exists(p):
            return p
        held = f"it holds iterations {', '.join(map(str, its))}" if its else "it holds no data_{it}.pt"
        also = " and data.pt (the final set: leave out --niter)" if os.path.exists(os.path.join(folder, "data.pt")) \
            else ""
        raise UserError(f"--niter {niter}: {folder} has no data_{niter}.pt; {held}{also}; pass --niter with one "
                        "of them")
    for name in ([f"data_{niter}.pt"] if niter else []) + ["data.pt"]:
        p = os.path.join(folder, name)
        if os.path.exists(p):
            return p
    if not its:
        raise UserError(f"no data_*.pt or data.pt in {folder}: it is not a condensation run folder (or the run "
                        "has not reached its first save point)")
    return os.path.join(folder, f"data_{its[-1]}.pt")


def load_condensed(path, condense_key="idc", niter=None, experiment=0, strict=False, fix=None):
    """Read a condensed set of any supported format as (float data [N,C,H,W], long targets [N]).

    idc / dream: ``[data, targets]`` (folder → ``data_{niter}.pt``/``data.pt``/latest, or a .pt file);
    mtt: ``images_best.pt`` + ``labels_best.pt``; dsa (DC's and DSA's result dicts): ``data[experiment] =
    [images, labels]`` — YOCO reads experiment 0 (YOCO reference utils/img_loader.py, load_data_path), MDC's ``test.py
    -s dc|dsa`` experiment 3
    (its reference: "exp_idx=3 can recover 52.1 baseline of dsa"); kip: ``[images NHWC, one-hot labels]``.
    mtt/dsa/kip are stored normalised. ``strict``: a folder's ``data_{niter}.pt`` or an error
    (``latest_data_file``). Pixels must be floating point: an integer set (uint8 0…255) is refused, never
    trained on as floats in 0…255. ``fix``: the advice of a file that cannot be read (default ``set_fix()``, the
    advice of ``test.py``: the caller chooses it, naming only options of its own command).
    """
    if condense_key == "mtt":
        folder = path if os.path.isdir(path) else os.path.dirname(path)
        x = _load(os.path.join(folder, "images_best.pt"), fix)
        y = _load(os.path.join(folder, "labels_best.pt"), fix)
        if not (torch.is_tensor(x) and torch.is_tensor(y)):
            raise UserError(f"{folder}: images_best.pt / labels_best.pt must each hold one tensor (MTT format)")
        return _float_pixels(x, os.path.join(folder, "images_best.pt")), y.long()
    if os.path.isdir(path):
        idc = condense_key in ("idc", "dream")
        path = latest_data_file(path, niter, strict) if idc else os.path.join(path, "data.pt")
    obj = _load(path, fix)
    if condense_key == "dsa":
        if not isinstance(obj, dict) or "data" not in obj:
            raise UserError(f"{path} is not a DSA result dict with a 'data' entry")
        runs = obj["data"]
        if not isinstance(runs, (list, tuple)) or len(runs) <= experiment:
            n = len(runs) if isinstance(runs, (list, tuple)) else 0
            raise UserError(f"{path} holds {n} experiment(s) in 'data'; experiment {experiment} is evaluated "
                            "(MDC's test.py -s dc|dsa reads the fourth, as its reference): use a result file of "
                            "the full DC/DSA run")
        obj = runs[experiment]
    if not isinstance(obj, (list, tuple)) or len(obj) != 2 or not all(torch.is_tensor(t) for t in obj):
        raise UserError(f"{path} does not hold [data, targets] tensors")
    x, y = obj
    if condense_key == "kip":
        x = x.permute(0, 3, 1, 2)
        y = y.argmax(1)
    if x.dim() != 4 or y.dim() != 1 or len(x) != len(y):
        raise UserError(f"{path}: data {tuple(x.shape)} / targets {tuple(y.shape)} are not [N,C,H,W] / [N]")
    return _float_pixels(x, path).contiguous(), y.long()


def _float_pixels(x, path):
    """Condensed images are floating point; integer pixels would be trained on as floats in 0…255."""
    if not x.is_floating_point():
        raise UserError(f"{path} stores {str(x.dtype).replace('torch.', '')} pixels; condensed sets are floating "
                        "point ([0, 1] for idc/dream sets, normalised for mtt/dsa/kip): convert it, e.g. "
                        "torch.save([x.float() / 255, y], path) for 0…255 images")
    return x.float()


def check_condensed(data, targets, nclass, nch, size, ipc=None, path="", ipc_fix=None,
                    set_flag="--test_data_dir"):
    """Shape and class-layout checks with one-line errors (class-major, equal ipc per class). ``ipc_fix``:
    the advice when the set does not hold ``ipc`` images per class (default: pass the right ``--ipc``);
    ``set_flag``: the option of the calling command that names the set."""
    where = f"{path}: " if path else ""
    if len(data) == 0:
        raise UserError(f"{where}the condensed set holds no images; point {set_flag} at a finished run")
    bad = int((~torch.isfinite(data)).sum()) if data.is_floating_point() else 0
    if bad:
        raise UserError(f"{where}the condensed set holds {bad} NaN/Inf pixel values (a diverged run); point "
                        f"{set_flag} at an earlier data_{{it}}.pt or condense again with a lower "
                        "`condense_reg.py --lr_img`")
    if data.shape[1] != nch or data.shape[-1] != size or data.shape[-2] != size:
        raise UserError(f"{where}images are {tuple(data.shape[1:])}, the dataset needs ({nch}, {size}, {size}); "
                        "check -d/--dataset")
    if len(data) % nclass:
        raise UserError(f"{where}{len(data)} images do not split into {nclass} classes; check -d/--dataset")
    per = len(data) // nclass
    want = torch.arange(nclass).repeat_interleave(per)
    if not torch.equal(targets.cpu(), want):
        raise UserError(f"{where}targets are not class-major blocks of {per} for {nclass} classes")
    if ipc is not None and ipc > 0 and per != ipc:
        raise UserError(f"{where}holds {per} images per class, not {ipc}; {ipc_fix or f'pass --ipc {per}'}")
    return per


def load_decoded(paths, nclass, nch, size, factor, *, condense_key="idc", niter=None, ipc=None,
                 decode_type="single", where=None, experiment=0, strict=False, ipc_fix=None,
                 set_flag="--test_data_dir"):
    """Load, check and decode a condensed set: the one way from files on disk to training images
    (``test.py``, ``get_training_dynamics.py``, ``generate_importance_score.py``).

    ``paths``: a folder or file (see ``load_condensed``), or a list of them whose images are
    concatenated before the checks (the class partitions of ``condense_reg_mp.py``). ``ipc`` pins the
    stored images per class (a mismatch is a one-line error naming the right ``--ipc``); ``where``
    names the set in messages; ``experiment``: which run of a DC/DSA result dict; ``strict``: ``niter`` was
    asked for explicitly (``latest_data_file``); ``ipc_fix``: see ``check_condensed``; ``set_flag``: the option of
    the calling command that names the set (its messages' advice). Returns (decoded images, labels, stored images
    per class)."""
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    fix = set_fix(set_flag)
    parts = [load_condensed(p, condense_key, niter, experiment, strict, fix=fix) for p in paths]
    x, y = parts[0] if len(parts) == 1 else (torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))
    per = check_condensed(x, y, nclass, nch, size, ipc, where or paths[0], ipc_fix, set_flag)
    x, y = decode(x, y, factor, decode_type, nclass)
    return x, y, per
