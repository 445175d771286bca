"""Augmentations: Normalize, differentiable DiffAug (reference he-y/Multisize-Dataset-Condensation/misc/augment.py;
reference he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#augmentation, #the-dynamics-run),
CutMix (MDC reference misc/utils.py, Normalize and rand_bbox; train.py)
and the ImageNet ColorJitter/Lighting transforms (MDC reference data.py, transform_imagenet).

DiffAug ops are module-level functions ``<op>_fn(x, batch)`` built from a parameter draw
(``<op>_params``) and a deterministic application (``<op>_apply``), so that tests can check the
ranges. All draws follow the reference RNG usage: ``batch=True`` draws one value per call from
numpy; ``batch=False`` draws per-sample values from torch (flip, colour, crop, cutout) or numpy
(scale, rotate). Every tensor is created on the input's device.
"""
import math
import random

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision.transforms as T

from cli.arguments import check_aug_strategy
from utils.errors import UserError
from training.determinism import grid_sample_bilinear

# MDC reference misc/augment.py, DiffAug; docs/algorithms.md#augmentation: fixed DiffAug constants
PROB_FLIP = 0.5
BRIGHTNESS = 1.0
SATURATION = 2.0
CONTRAST = 0.5
RATIO_CROP_PAD = 0.125
RATIO_SCALE = 1.2
RATIO_ROTATE = 15.0  # degrees
# affine_grid/grid_sample: the reference calls them without align_corners, i.e. torch's default
# (False since torch 1.3); we pass it explicitly to silence the warning, same numbers. (For square
# images and theta without translation, as here, True and False give the same sampling grid.)
ALIGN_CORNERS = False


class Normalize(nn.Module):
    """(x - mean) / std broadcast over NCHW; follows x's device and dtype (MDC reference misc/utils.py, Normalize and
    rand_bbox)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float).view(1, -1, 1, 1), persistent=False)

    def forward(self, x):
        return (x - self.mean.to(x.device, x.dtype)) / self.std.to(x.device, x.dtype)


# ---------------------------- parameter draws (MDC reference misc/augment.py, DiffAug; docs/algorithms.md#augmentation)
def _unit(x, batch):
    """u ~ U(0,1): one numpy float (batch) or torch [N,1,1,1] per sample."""
    if batch:
        return float(np.random.uniform())
    return torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)


def _crop_shift(size):
    """Maximal crop shift s = int(0.125*size + 0.5): 4 for 32 and 28, 28 for 224."""
    return int(size * RATIO_CROP_PAD + 0.5)


def _cutout_size(size, ratio=0.5):
    """Cutout side k = int(ratio*size + 0.5): 16 for 32, 14 for 28, 112 for 224."""
    return int(size * ratio + 0.5)


def _randint(x, low, high, batch):
    """Integer in [low, high): numpy int (batch) or torch long [N,1,1] per sample."""
    if batch:
        return int(np.random.randint(low, high))
    return torch.randint(low, high, size=(x.size(0), 1, 1), device=x.device)


def crop_params(x, batch):
    """Shifts (tx along H, ty along W), each uniform over the integers [-s, s]."""
    sx, sy = _crop_shift(x.size(2)), _crop_shift(x.size(3))
    return _randint(x, -sx, sx + 1, batch), _randint(x, -sy, sy + 1, batch)


def translate_params(x, batch):
    """Width-only shift ty in [-s, s] (the unused `translate` op)."""
    sy = _crop_shift(x.size(3))
    return _randint(x, -sy, sy + 1, batch)


def cutout_params(x, batch, ratio=0.5):
    """Cutout centres (ox, oy), each randint[0, size + 1 - (k mod 2))."""
    kx, ky = _cutout_size(x.size(2), ratio), _cutout_size(x.size(3), ratio)
    return (_randint(x, 0, x.size(2) + (1 - kx % 2), batch),
            _randint(x, 0, x.size(3) + (1 - ky % 2), batch))


def scale_params(x, batch):
    """theta [N,2,3] = [[sx,0,0],[0,sy,0]], sx, sy ~ U(1/1.2, 1.2) from numpy."""
    n = 1 if batch else x.size(0)
    lo = 1.0 / RATIO_SCALE
    sx = np.random.uniform(size=n) * (RATIO_SCALE - lo) + lo
    sy = np.random.uniform(size=n) * (RATIO_SCALE - lo) + lo
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 1, 1] = sx, sy
    return torch.tensor(theta, dtype=x.dtype, device=x.device).expand(x.size(0), 2, 3)


def rotate_params(x, batch):
    """theta [N,2,3] = [[cos,-sin,0],[sin,cos,0]], angle ~ U(-15deg, 15deg) from numpy."""
    n = 1 if batch else x.size(0)
    a = (np.random.uniform(size=n) - 0.5) * 2 * RATIO_ROTATE / 180 * math.pi
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = np.cos(a), -np.sin(a)
    theta[:, 1, 0], theta[:, 1, 1] = np.sin(a), np.cos(a)
    return torch.tensor(theta, dtype=x.dtype, device=x.device).expand(x.size(0), 2, 3)


# ---------------------------------------------------------------- deterministic application
def translate_apply(x, tx, ty):
    """Integer translation with zero fill: pad 1 pixel of zeros and gather with clamped indices
    (every out-of-range read hits the zero border). Differentiable w.r.t. x. MDC reference misc/augment.py,
    DiffAug.crop_fn."""
    n, _, h, w = x.shape
    dev = x.device
    ih = torch.clamp(torch.arange(h, device=dev).view(1, h, 1) + tx + 1, 0, h + 1)
    iw = torch.clamp(torch.arange(w, device=dev).view(1, 1, w) + ty + 1, 0, w + 1)
    ib = torch.arange(n, device=dev).view(n, 1, 1)
    x_pad = F.pad(x, (1, 1, 1, 1)).permute(0, 2, 3, 1)  # N, H+2, W+2, C
    return x_pad[ib, ih, iw].permute(0, 3, 1, 2)


def cutout_apply(x, ox, oy, ratio=0.5):
    """Zero a k x k square with rows/cols o - k//2 ... o - k//2 + k - 1 clamped to the image."""
    n, _, h, w = x.shape
    dev = x.device
    kx, ky = _cutout_size(h, ratio), _cutout_size(w, ratio)
    gx = torch.clamp(torch.arange(kx, device=dev).view(1, kx, 1) + ox - kx // 2, 0, h - 1)
    gy = torch.clamp(torch.arange(ky, device=dev).view(1, 1, ky) + oy - ky // 2, 0, w - 1)
    gb = torch.arange(n, device=dev).view(n, 1, 1)
    gb, gx, gy = torch.broadcast_tensors(gb, gx, gy)
    mask = torch.ones(n, h, w, dtype=x.dtype, device=dev)
    mask[gb, gx, gy] = 0
    return x * mask.unsqueeze(1)


def affine_apply(x, theta):
    """affine_grid + bilinear grid_sample with zero padding (MDC reference misc/augment.py, DiffAug.scale_fn and
    DiffAug.rotate_fn)."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=ALIGN_CORNERS)
    return grid_sample_bilinear(x, grid)  # F.grid_sample bilinear, zeros, align_corners False


# ---------------------------------------- ops (MDC reference misc/augment.py, DiffAug; docs/algorithms.md#augmentation)
def flip_fn(x, batch):
    """Horizontal flip (width axis) with probability 0.5."""
    if batch:
        return x.flip(3) if np.random.uniform() < PROB_FLIP else x
    coin = torch.rand(x.size(0), 1, 1, 1, device=x.device)
    return torch.where(coin < PROB_FLIP, x.flip(3), x)


def brightness_fn(x, batch):
    """x + (u - 0.5) * 1.0: additive shift in [-0.5, 0.5]."""
    return x + (_unit(x, batch) - 0.5) * BRIGHTNESS


def saturation_fn(x, batch):
    """(x - m) * 2u + m with m the per-pixel channel mean: factor in [0, 2]."""
    m = x.mean(dim=1, keepdim=True)
    return (x - m) * (_unit(x, batch) * SATURATION) + m


def contrast_fn(x, batch):
    """(x - m) * (u + 0.5) + m with m the per-image mean over (C,H,W): factor in [0.5, 1.5]."""
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    return (x - m) * (_unit(x, batch) + CONTRAST) + m


def crop_fn(x, batch):
    return translate_apply(x, *crop_params(x, batch))


def translate_fn(x, batch):
    return translate_apply(x, 0, translate_params(x, batch))


def scale_fn(x, batch):
    return affine_apply(x, scale_params(x, batch))


def rotate_fn(x, batch):
    return affine_apply(x, rotate_params(x, batch))


def cutout_fn(x, batch, ratio=0.5):
    return cutout_apply(x, *cutout_params(x, batch, ratio), ratio=ratio)


# name -> list of op names applied in order; DiffAug looks ops up in OPS at call time
OPS = {"flip": flip_fn, "brightness": brightness_fn, "saturation": saturation_fn,
       "contrast": contrast_fn, "crop": crop_fn, "translate": translate_fn,
       "scale": scale_fn, "rotate": rotate_fn, "cutout": cutout_fn}
GROUPS = {"color": ["brightness", "saturation", "contrast"]}  # the colour order of the reference's DiffAug


class DiffAug(nn.Module):
    """Differentiable siamese augmentation (MDC reference misc/augment.py, DiffAug; docs/algorithms.md#augmentation).
    Order per call: flip, colour
    (brightness, saturation, contrast), exactly one op of L chosen by np.random.randint, cutout.
    ``single=True`` (reference semantics) puts flip/color/cutout into L as ordinary choices."""

    def __init__(self, strategy="color_crop_cutout", batch=True, ratio_cutout=0.5, single=False):
        super().__init__()
        self.batch = batch
        self.ratio_cutout = ratio_cutout
        self.strategy = strategy
        self.aug = not (strategy == "" or strategy.lower() == "none")
        self.flip = self.color = self.cutout = False
        self.ops = []  # the list L
        if not self.aug:
            return
        check_aug_strategy(strategy)
        for tok in strategy.lower().split("_"):
            if tok in ("flip", "color", "cutout") and not single:
                setattr(self, tok, True)
            else:
                self.ops.append(tok)

    def _run(self, name, x):
        if name == "cutout":
            return OPS["cutout"](x, self.batch, self.ratio_cutout)
        for op in GROUPS.get(name, [name]):
            x = OPS[op](x, self.batch)
        return x

    def forward(self, x, single_aug=True):
        if not self.aug:
            return x
        if self.flip:
            x = self._run("flip", x)
        if self.color:
            x = self._run("color", x)
        if self.ops:
            if single_aug:  # one op of L, choice drawn once per call (numpy)
                x = self._run(self.ops[np.random.randint(len(self.ops))], x)
            else:
                for name in self.ops:
                    x = self._run(name, x)
        if self.cutout:
            x = self._run("cutout", x)
        return x.contiguous()

    def extra_repr(self):
        return f"strategy={self.strategy!r}, batch={self.batch}, ratio_cutout={self.ratio_cutout}"


# ---------------------------------------------- CutMix (MDC reference misc/utils.py, Normalize and rand_bbox; train.py)
def rand_bbox(size, lam):
    """Box (bbx1, bby1, bbx2, bby2) on dims (2, 3): side int(dim*sqrt(1-lam)), numpy centre, clip."""
    W, H = size[2], size[3]  # reference naming: "W" is dim 2, "H" is dim 3
    r = np.sqrt(1.0 - lam)
    cut_w, cut_h = int(W * r), int(H * r)
    cx, cy = np.random.randint(W), np.random.randint(H)
    bbx1 = int(np.clip(cx - cut_w // 2, 0, W))
    bby1 = int(np.clip(cy - cut_h // 2, 0, H))
    bbx2 = int(np.clip(cx + cut_w // 2, 0, W))
    bby2 = int(np.clip(cy + cut_h // 2, 0, H))
    return bbx1, bby1, bbx2, bby2


def cutmix(x, y, beta=1.0):
    """CutMix (MDC reference train.py, train_epoch): lam ~ Beta(beta, beta) (numpy), perm = torch.randperm on x's
    device, paste x[perm] into the box of a copy of x. Returns (x_mixed, y_a, y_b, ratio) with
    ratio = 1 - box_area/(H*W) of the clipped box; loss = ratio*CE(y_a) + (1-ratio)*CE(y_b)."""
    lam = np.random.beta(beta, beta)
    perm = torch.randperm(x.size(0), device=x.device)
    bbx1, bby1, bbx2, bby2 = rand_bbox(x.size(), lam)
    out = x.clone()
    out[:, :, bbx1:bbx2, bby1:bby2] = x[perm, :, bbx1:bbx2, bby1:bby2]
    ratio = 1.0 - (bbx2 - bbx1) * (bby2 - bby1) / (x.size(-1) * x.size(-2))
    return out, y, y[perm], float(ratio)


# ------------------------------------------------------ ImageNet transforms (MDC reference data.py, transform_imagenet)
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # MDC reference data.py, MEANS and STDS
IMAGENET_STD = [0.229, 0.224, 0.225]
PCA_EIGVAL = [0.2175, 0.0188, 0.0045]
PCA_EIGVEC = [[-0.5675, 0.7192, 0.4009],
              [-0.5808, -0.0045, -0.8140],
              [-0.5836, -0.6948, 0.4203]]


def _grayscale(img):
    """Luma (0.299 R + 0.587 G + 0.114 B) repeated on the three channels."""
    g = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
    return g.unsqueeze(0).expand_as(img)


def _lerp(img, target, var):
    """img + alpha * (target - img), alpha ~ U(-var, var) from python `random`."""
    return img.lerp(target, random.uniform(-var, var))


class ColorJitter:
    """Brightness (lerp to black), contrast (lerp to the mean grey) and saturation (lerp to the
    greyscale image) in a random order (python `random.shuffle`), on one CHW float tensor."""

    def __init__(self, brightness=0.4, contrast=0.4, saturation=0.4):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, img):
        ops = []
        if self.brightness != 0:
            ops.append(lambda t: _lerp(t, torch.zeros_like(t), self.brightness))
        if self.contrast != 0:
            ops.append(lambda t: _lerp(t, _grayscale(t).mean().expand_as(t), self.contrast))
        if self.saturation != 0:
            ops.append(lambda t: _lerp(t, _grayscale(t), self.saturation))
        random.shuffle(ops)
        for op in ops:
            img = op(img)
        return img

    def __repr__(self):
        return f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, saturation={self.saturation})"


class Lighting:
    """AlexNet PCA lighting noise: alpha ~ N(0, alphastd) x3 (torch RNG), per-image RGB offset
    sum_j eigvec[:, j] * alpha_j * eigval_j added to every pixel."""

    def __init__(self, alphastd=0.1, eigval=PCA_EIGVAL, eigvec=PCA_EIGVEC):
        self.alphastd = alphastd
        self.eigval = torch.tensor(eigval)
        self.eigvec = torch.tensor(eigvec)

    def __call__(self, img):
        if self.alphastd == 0:
            return img
        alpha = torch.empty(3, dtype=img.dtype, device=img.device).normal_(0, self.alphastd)
        eigvec = self.eigvec.to(img.device, img.dtype)
        eigval = self.eigval.to(img.device, img.dtype)
        rgb = (eigvec * (alpha * eigval).view(1, 3)).sum(1)
        return img + rgb.view(3, 1, 1)

    def __repr__(self):
        return f"Lighting(alphastd={self.alphastd})"


def _resize(size, train):
    if size > 0:
        return [T.Resize(size), T.CenterCrop(size)]
    if size == 0:
        return []
    return [T.RandomResizedCrop(224)] if train else [T.Resize(256), T.CenterCrop(224)]


def imagenet_train_transform(size=224, rrc=True, rrc_size=None, augment=True, from_tensor=False,
                             normalize=True):
    """Order (MDC reference data.py, transform_imagenet): resize, cast, RRC(scale 0.5-1), flip, jitter, lighting,
    Normalize."""
    if size == 0 and not rrc_size:
        raise UserError("imagenet transform with size 0 needs rrc_size > 0")
    tfs = _resize(size, train=True) + ([] if from_tensor else [T.ToTensor()])
    if augment:
        if rrc and size >= 0:
            tfs.append(T.RandomResizedCrop(rrc_size or size, scale=(0.5, 1.0)))
        tfs += [T.RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4), Lighting(0.1)]
    if normalize:
        tfs.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(tfs)


def imagenet_test_transform(size=224, from_tensor=False, normalize=True):
    """Resize(size) + CenterCrop(size) (size < 0: Resize 256 + CenterCrop 224), cast, Normalize."""
    tfs = _resize(size, train=False) + ([] if from_tensor else [T.ToTensor()])
    if normalize:
        tfs.append(T.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return T.Compose(tfs)
