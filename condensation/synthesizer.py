"""The synthetic set being condensed (reference he-y/Multisize-Dataset-Condensation/condense_reg.py, Synthesizer; IDC's
``Synthesizer``).

One leaf tensor ``data`` [nrows·ipc, C, H, W] with requires_grad, in **[0, 1] pixel space**
(unnormalised; normalisation happens inside the matching augmentation), class-major rows. In the
class-partitioned script (MDC reference condense_reg_mp.py; docs/algorithms.md#class-partitioned-condensation) the
tensor holds only the partition's classes: row block
``r`` belongs to the real class ``classes[r]`` and ``targets`` carry the real class ids.

Multi-formation (factor f): every stored image is a mosaic of f×f tiles, decoded crop-major by
``data.condensed.decode_class`` (MDC reference condense_reg.py, Synthesizer.decode_zoom;
docs/data.md#decode-order-multi-formation), so the first x·f² decoded images of a class are
subset IPC-x. The ``mix`` initialisation fills tile k = i·f + j of stored image m with real image
k·ipc + m of the class (nearest-downsampled), which makes decoded index d correspond to real init
image d (MDC reference condense_reg.py, Synthesizer.init; docs/algorithms.md#initialisation).
"""
import io

import numpy as np
import torch
import torch.nn.functional as F

from data.condensed import decode_class
from utils.errors import UserError
from utils.files import atomic_write_bytes


def tile_sizes(size, factor):
    """Tile sides along one axis: s = size//f, the first size mod f tiles get s+1 (MDC reference condense_reg.py,
    Synthesizer.init; docs/algorithms.md#initialisation).

    224 px with f = 3 gives [75, 75, 74]; 32 px with f = 2 gives [16, 16].
    """
    s, rem = divmod(size, factor)
    return [s + 1 if i < rem else s for i in range(factor)]


def mix_tiles(real, ipc, factor):
    """Mosaics [ipc, C, H, W] from ``ipc·f²`` real images [ipc·f², C, H, W] (MDC reference condense_reg.py,
    Synthesizer.init; docs/algorithms.md#initialisation).

    Tile k = i·f + j (row-major) of stored image m receives real image k·ipc + m, downsampled with
    ``F.interpolate`` in its default (nearest) mode to the tile size.
    """
    n, c, h, w = real.shape
    if n != ipc * factor * factor:
        raise ValueError(f"mix_tiles: need ipc*f^2 = {ipc * factor * factor} images, got {n}")
    hs, ws = tile_sizes(h, factor), tile_sizes(w, factor)
    out = real.new_empty(ipc, c, h, w)
    y0 = 0
    for i in range(factor):
        x0 = 0
        for j in range(factor):
            k = i * factor + j
            tile = F.interpolate(real[k * ipc:(k + 1) * ipc], size=(hs[i], ws[j]))  # nearest
            out[:, :, y0:y0 + hs[i], x0:x0 + ws[j]] = tile
            x0 += ws[j]
        y0 += hs[i]
    return out


class Synthesizer:
    """Condensed images of ``classes`` (default: all ``nclass``), ``ipc`` stored images each."""

    def __init__(self, args, nclass, nch, size, device, classes=None, stream=None):
        self.ipc = int(args.ipc)
        self.factor = max(1, int(args.factor))
        self.decode_type = args.decode_type
        self.batch_syn_max = int(args.batch_syn_max)
        self.classes = list(range(nclass)) if classes is None else [int(c) for c in classes]
        self.nclass, self.nch, self.size = nclass, nch, size
        self.device = torch.device(device)
        n = len(self.classes) * self.ipc
        # noisy start, clamp(N(0,1)/4 + 0.5, 0, 1) (MDC reference condense_reg.py, Synthesizer.init;
        # docs/algorithms.md#initialisation); ``stream(c)`` (--exact): each class block
        # is drawn from its class's random stream, so a shard draws what the single-process run draws
        if stream is None:
            noise = torch.randn(n, nch, size, size)
        else:
            blocks = []
            for c in self.classes:
                with stream(c):
                    blocks.append(torch.randn(self.ipc, nch, size, size))
            noise = torch.cat(blocks)
        data = (noise / 4 + 0.5).clamp_(0, 1)
        self.data = data.to(self.device).requires_grad_(True)
        self.targets = torch.tensor(self.classes, dtype=torch.long).repeat_interleave(self.ipc).to(self.device)

    # ---- layout --------------------------------------------------------------------------------
    def rows(self, r):
        """Row slice of class block ``r`` (local index into ``classes``)."""
        return slice(r * self.ipc, (r + 1) * self.ipc)

    def init(self, sampler, init_type, start_idx=0, picked=None):
        """Initialise every class block (MDC reference condense_reg.py, Synthesizer.init;
        docs/algorithms.md#initialisation). ``picked[r]`` (DREAM, MDC reference query_strategies/kmeans_sampling.py,
        KMeansSampling; docs/algorithms.md#dream) gives the
        real images [ipc·f², C, H, W] to use instead of the first images of the class."""
        if init_type == "noise":
            return
        f2 = self.factor ** 2
        with torch.no_grad():
            for r, c in enumerate(self.classes):
                n = self.ipc * f2 if init_type == "mix" else self.ipc
                if picked is not None:
                    real = picked[r]
                else:
                    try:  # the deterministic block [start_idx·n, (start_idx+1)·n) of class c
                        real, _ = sampler.class_sample(c, n, start_idx)
                    except ValueError as e:
                        raise UserError(f"initialisation: {e}; lower --ipc/--factor or --start_idx")
                real = real.to(self.device, torch.float)
                block = mix_tiles(real, self.ipc, self.factor) if init_type == "mix" else real
                self.data[self.rows(r)] = block

    # ---- decoding and sampling (MDC reference condense_reg.py; docs/data.md#decode-order-multi-formation) ------------
    def decode_block(self, x, y, bound=None):
        return decode_class(x, y, self.factor, self.decode_type, bound or self.batch_syn_max)

    def sample(self, r, max_size=None, block=None):
        """Decoded synthetic images of class block ``r`` with the gradient path to ``data`` (or to ``block``,
        the block's stored images at another position: the class-batched step, condensation/batched.py).

        If more than ``max_size`` (batch_syn_max) decoded images exist, keep a random subset chosen
        by a numpy permutation (MDC reference condense_reg.py, Synthesizer.subsample and Synthesizer.sample). Returns
        (images, labels, indices or None).
        """
        max_size = max_size or self.batch_syn_max
        block = self.data[self.rows(r)] if block is None else block
        x, y = self.decode_block(block, self.targets[self.rows(r)], max_size)
        idx = None
        if x.shape[0] > max_size:
            idx = torch.from_numpy(np.random.permutation(x.shape[0])[:max_size]).to(self.device)
            x, y = x[idx], y[idx]
        return x, y, idx

    @torch.no_grad()
    def decoded(self):
        """Detached decoded evaluation set of every class (MDC reference condense_reg.py, Synthesizer.loader and
        Synthesizer.test: the bound decode uses 128). Returns (images, labels) on CPU."""
        xs, ys = [], []
        for r in range(len(self.classes)):
            sl = self.rows(r)
            dx, dy = self.decode_block(self.data[sl].detach(), self.targets[sl], 128)
            xs.append(dx.cpu())
            ys.append(dy.cpu())
        return torch.cat(xs), torch.cat(ys)

    @torch.no_grad()
    def decoded_prefix(self, ipcx):
        """Subset IPC-x as MDC trains and evaluates it: per class the first x·f² decoded images of
        the whole class block, crop-major (MDC reference condense_reg.py, Synthesizer.loader with
        ``indices=idx[x]``; test.py, Cx_Cy; docs/algorithms.md#multi-formation-and-subsets)."""
        xs, ys = [], []
        n = ipcx * self.factor ** 2
        for r in range(len(self.classes)):
            sl = self.rows(r)
            dx, dy = self.decode_block(self.data[sl].detach(), self.targets[sl], 10**9)
            xs.append(dx[:n].cpu())
            ys.append(dy[:n].cpu())
        return torch.cat(xs), torch.cat(ys)

    # ---- state ---------------------------------------------------------------------------------
    def clamp_(self):
        with torch.no_grad():
            self.data.clamp_(0, 1)

    def load(self, data):
        if tuple(data.shape) != tuple(self.data.shape):
            raise UserError(f"saved images have shape {tuple(data.shape)}, this run needs "
                            f"{tuple(self.data.shape)}; check --ipc/--factor/--dataset")
        with torch.no_grad():
            self.data.copy_(data.to(self.device))


def grid_png(images, max_num=200, size=64, nrow=10):
    """PNG bytes of a grid of the first ``max_num`` images, clamped, nearest-resized to ``size`` if larger
    (MDC reference data.py, save_img)."""
    from torchvision.utils import save_image

    x = images[:max_num].detach().float().cpu().clamp(0, 1)
    if x.shape[-1] > size:
        x = F.interpolate(x, size=(size, size), mode="nearest")
    buf = io.BytesIO()
    save_image(x, buf, nrow=nrow, format="png")
    return buf.getvalue()


def save_grid(path, images, max_num=200, size=64, nrow=10):
    """``grid_png`` written atomically to ``path``; returns the PNG bytes."""
    png = grid_png(images, max_num, size, nrow)
    atomic_write_bytes(path, png)
    return png
