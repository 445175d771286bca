"""Deterministic stand-ins for the three operations we differentiate through that have no
deterministic CUDA backward kernel (``torch.use_deterministic_algorithms`` raises for them):

* bilinear ``F.interpolate`` (multi-formation decoding, reference he-y/Multisize-Dataset-Condensation/condense_reg.py;
  docs/data.md#decode-order-multi-formation), replaced by two matrix
  products with the interpolation matrices (bilinear resizing is separable);
* ``F.adaptive_avg_pool2d(x, 1)`` (ResNet-10-BN, DenseNet heads), replaced by a mean;
* bilinear ``F.grid_sample`` with zero padding (DSA scale/rotate, MDC reference misc/augment.py, DiffAug;
  docs/algorithms.md#augmentation), replaced by four
  gathers (gather's CUDA backward is deterministic in deterministic mode).

Each stand-in is used only where the original would fail: in ``--deterministic True`` mode, on a
non-CPU tensor that takes part in autograd. Everywhere else the original operation runs, so CPU
results (and non-deterministic CUDA runs) are exactly what they were. The stand-ins compute the same
function; they differ from the originals by float rounding only (tests/test_determinism.py).
"""
import torch
import torch.nn.functional as F


def use_standin(x, force=False):
    """True where the original op's backward would raise: deterministic mode, a non-CPU tensor, grad on."""
    return force or (x.device.type != "cpu" and torch.are_deterministic_algorithms_enabled()
                     and torch.is_grad_enabled() and x.requires_grad)


def _linear_matrix(n_in, n_out, like):
    """(n_out, n_in) matrix of 1-D linear interpolation with align_corners=False, as F.interpolate
    computes it (the resized basis vectors; its forward is deterministic everywhere)."""
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device).unsqueeze(1)  # n_in signals of length n_in
    with torch.no_grad():
        return F.interpolate(eye, size=n_out, mode="linear", align_corners=False).squeeze(1).t()


def bilinear_resize(x, size, force=False):
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)``."""
    if not use_standin(x, force):
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    mh = _linear_matrix(x.shape[-2], size[0], x)
    mw = _linear_matrix(x.shape[-1], size[1], x)
    return torch.einsum("hi,ncij,wj->nchw", mh, x, mw)


def global_avg_pool(x, force=False):
    """``F.adaptive_avg_pool2d(x, 1)``."""
    if not use_standin(x, force):
        return F.adaptive_avg_pool2d(x, 1)
    return x.mean(dim=(2, 3), keepdim=True)


def grid_sample_bilinear(x, grid, force=False):
    """``F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)``."""
    if not use_standin(x, force):
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    n, c, h, w = x.shape
    ho, wo = grid.shape[1:3]
    ix = ((grid[..., 0] + 1) * w - 1) / 2  # unnormalise (align_corners=False)
    iy = ((grid[..., 1] + 1) * h - 1) / 2
    x0, y0 = ix.floor(), iy.floor()
    flat = x.reshape(n, c, h * w)
    out = x.new_zeros(n, c, ho * wo)
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):
        xc, yc = x0 + dx, y0 + dy
        wgt = (1 - (ix - xc).abs()) * (1 - (iy - yc).abs())  # bilinear weight of this corner
        inside = (xc >= 0) & (xc <= w - 1) & (yc >= 0) & (yc <= h - 1)
        idx = (yc.clamp(0, h - 1) * w + xc.clamp(0, w - 1)).long().reshape(n, 1, -1).expand(n, c, -1)
        out = out + flat.gather(2, idx) * (wgt * inside).reshape(n, 1, -1)
    return out.reshape(n, c, ho, wo)
