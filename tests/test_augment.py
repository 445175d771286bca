"""Tests for training/augment.py (reference he-y/Multisize-Dataset-Condensation/data.py; reference
he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#augmentation, #the-dynamics-run)."""
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

import training.augment as A
from training.augment import (DiffAug, Normalize, ColorJitter, Lighting, cutmix, rand_bbox,
                           imagenet_train_transform, imagenet_test_transform)
from utils.errors import UserError

DEV = torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed(s):
    np.random.seed(s)
    torch.manual_seed(s)
    random.seed(s)


def big(n, h, w=None):
    """An [n,1,h,w] tensor without the memory (only shape/device matter for parameter draws)."""
    return torch.zeros(1, 1, 1, 1, device=DEV).expand(n, 1, h, w or h)


def test_normalize_values_and_dtype():
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64, device=DEV)
    mean, std = [0.1, 0.2, 0.3], [0.5, 0.25, 2.0]
    y = Normalize(mean, std)(x)
    assert y.dtype == torch.float64 and y.device == x.device
    for c in range(3):
        torch.testing.assert_close(y[:, c], (x[:, c] - mean[c]) / std[c])


# ------------------------------------------------------------------------ colour ranges
def test_brightness_range_per_sample_and_batch():
    seed(0)
    out = A.brightness_fn(torch.zeros(4000, 1, 2, 2, device=DEV), batch=False)
    shift = out[:, 0, 0, 0]
    assert (out == shift.view(-1, 1, 1, 1)).all()          # one additive shift per image
    assert shift.min() >= -0.5 and shift.max() <= 0.5
    assert shift.min() < -0.49 and shift.max() > 0.49
    shifts = [float(A.brightness_fn(torch.zeros(3, 1, 2, 2), batch=True).unique().item()) for _ in range(300)]
    assert -0.5 <= min(shifts) < -0.45 and 0.45 < max(shifts) <= 0.5


def _factor(x, out, m):
    f = (out - m) / (x - m)
    return f.flatten(1)


def test_saturation_factor_in_0_2():
    seed(1)
    x = torch.rand(4000, 3, 2, 2, device=DEV)
    m = x.mean(dim=1, keepdim=True)
    f = _factor(x, A.saturation_fn(x, batch=False), m)
    torch.testing.assert_close(f, f[:, :1].expand_as(f), rtol=1e-3, atol=1e-3)
    f = f[:, 0]
    assert f.min() >= -1e-4 and f.max() <= 2 + 1e-4 and f.min() < 0.02 and f.max() > 1.98


def test_contrast_factor_in_half_to_three_halves():
    seed(2)
    x = torch.rand(4000, 3, 2, 2, device=DEV)
    m = x.mean(dim=[1, 2, 3], keepdim=True)
    f = _factor(x, A.contrast_fn(x, batch=False), m)
    torch.testing.assert_close(f, f[:, :1].expand_as(f), rtol=1e-3, atol=1e-3)
    f = f[:, 0]
    assert f.min() >= 0.5 - 1e-4 and f.max() <= 1.5 + 1e-4 and f.min() < 0.51 and f.max() > 1.49


# ------------------------------------------------------------------------ crop
@pytest.mark.parametrize("h,s", [(32, 4), (28, 4), (224, 28)])
def test_crop_shift_range_endpoints(h, s):
    assert A._crop_shift(h) == s
    seed(3)
    tx, ty = A.crop_params(big(5000, h), batch=False)
    assert tx.shape == (5000, 1, 1) and tx.dtype == torch.long
    for t in (tx, ty):
        assert t.min().item() == -s and t.max().item() == s
    draws = [A.crop_params(big(2, h), batch=True) for _ in range(400)]
    assert min(d[0] for d in draws) == -s and max(d[1] for d in draws) == s


@pytest.mark.parametrize("h", [32, 28, 224])
def test_crop_endpoint_zero_fill(h):
    s = A._crop_shift(h)
    x = torch.rand(1, 2, h, h, device=DEV) + 1.0                 # strictly positive
    out = A.translate_apply(x, s, -s)                            # out[i, j] = x[i + s, j - s]
    torch.testing.assert_close(out[:, :, :h - s, s:], x[:, :, s:, :h - s])
    assert (out[:, :, h - s:, :] == 0).all() and (out[:, :, :, :s] == 0).all()
    assert (out[:, :, :h - s, s:] > 0).all()


def test_crop_fn_is_translation_by_drawn_shift():
    x = torch.rand(6, 3, 8, 8, device=DEV)
    seed(4)
    tx, ty = A.crop_params(x, batch=False)
    seed(4)
    out = A.crop_fn(x, batch=False)
    for i in range(6):
        ref = A.translate_apply(x[i:i + 1], int(tx[i]), int(ty[i]))
        torch.testing.assert_close(out[i:i + 1], ref)
    assert len({(int(a), int(b)) for a, b in zip(tx.flatten(), ty.flatten())}) > 1


# ------------------------------------------------------------------------ scale / rotate
def test_scale_params_range():
    seed(5)
    th = A.scale_params(big(5000, 32), batch=False)
    lo, hi = 1 / 1.2, 1.2
    for d in (th[:, 0, 0], th[:, 1, 1]):
        assert d.min() >= lo and d.max() <= hi and d.min() < lo + 0.01 and d.max() > hi - 0.01
    assert (th[:, 0, 1:] == 0).all() and (th[:, 1, [0, 2]] == 0).all()
    assert not torch.equal(th[:, 0, 0], th[:, 1, 1])            # sx, sy independent
    thb = A.scale_params(big(4, 32), batch=True)
    assert (thb == thb[:1]).all()


def test_rotate_params_range():
    seed(6)
    th = A.rotate_params(big(5000, 32), batch=False)
    ang = torch.atan2(th[:, 1, 0], th[:, 0, 0]) * 180 / math.pi
    assert ang.abs().max() <= 15 + 1e-4 and ang.min() < -14.9 and ang.max() > 14.9
    torch.testing.assert_close(th[:, 0, 1], -th[:, 1, 0])
    torch.testing.assert_close(th[:, 0, 0], th[:, 1, 1])
    assert (th[:, :, 2] == 0).all()


def test_affine_identity_and_zero_padding():
    x = torch.rand(2, 3, 8, 8, device=DEV)
    eye = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], device=DEV).expand(2, 2, 3)
    torch.testing.assert_close(A.affine_apply(x, eye), x)
    out = A.affine_apply(torch.ones_like(x), eye * 1.2)         # zoom out -> zero border
    assert out[:, :, 0, 0].max() < 1 and out[:, :, 4, 4].min() == 1


# ------------------------------------------------------------------------ cutout
@pytest.mark.parametrize("h,k", [(32, 16), (28, 14), (224, 112)])
def test_cutout_size_and_area(h, k):
    assert A._cutout_size(h) == k
    x = torch.ones(1, 2, h, h, device=DEV)
    out = A.cutout_apply(x, h // 2, h // 2)
    assert (out[0, 0] == 0).sum().item() == k * k and torch.equal(out[0, 0], out[0, 1])
    zr = (out[0, 0] == 0).nonzero()
    assert zr[:, 0].min() == h // 2 - k // 2 and zr[:, 0].max() == h // 2 - k // 2 + k - 1
    corner = A.cutout_apply(x, 0, 0)                              # clamped at the border
    assert (corner[0, 0] == 0).sum().item() == (k - k // 2) ** 2
    seed(7)
    ox, oy = A.cutout_params(big(5000, h), batch=False)
    hi = h + 1 - (k % 2) - 1
    for o in (ox, oy):
        assert o.min().item() == 0 and o.max().item() == hi


def test_rounding_is_int_of_half_up():
    # int(r*size + 0.5), not Python's banker's round(): 2.5 -> 3, 12.5 -> 13
    assert A._crop_shift(20) == 3 and A._cutout_size(25) == 13


def test_flip_is_width_axis():
    x = torch.rand(2, 3, 6, 7, device=DEV)
    seen = set()
    for s in range(20):
        seed(s)
        out = A.flip_fn(x, batch=True)
        assert torch.equal(out, x) or torch.equal(out, x.flip(3))
        seen.add(torch.equal(out, x))
    assert seen == {True, False}
    seed(0)
    out = A.flip_fn(x[:1].expand(64, 3, 6, 7), batch=False)
    flipped = torch.tensor([torch.equal(o, x[0].flip(2)) for o in out])
    kept = torch.tensor([torch.equal(o, x[0]) for o in out])
    assert (flipped | kept).all() and flipped.any() and kept.any()


def test_cutout_odd_side_centre_range():
    seed(8)
    ox, _ = A.cutout_params(big(3000, 30), batch=False)      # k = int(15.5) = 15 (odd)
    assert A._cutout_size(30) == 15 and ox.max().item() == 29


# ------------------------------------------------------------------------ DiffAug semantics
STRATS = ["color_crop_cutout", "color_crop_flip_scale_rotate", "flip_color_crop_scale_rotate_cutout",
          "color_crop", "color_crop_scale_rotate"]


@pytest.mark.parametrize("strategy", STRATS)
def test_batch_shares_params_per_sample_does_not(strategy):
    img = torch.rand(1, 3, 16, 16, device=DEV)
    x = img.expand(8, 3, 16, 16)
    for s in range(5):
        seed(s)
        out = DiffAug(strategy, batch=True)(x)
        assert out.is_contiguous() and out.shape == x.shape
        assert torch.allclose(out, out[:1].expand_as(out), atol=1e-6)
    seed(0)
    out = DiffAug(strategy, batch=False)(x)
    assert not torch.allclose(out, out[:1].expand_as(out), atol=1e-3)


def test_batch_mode_same_geometry_for_different_images():
    # siamese: real and synthetic images in one call get the same crop and cutout
    x = torch.rand(2, 3, 32, 32, device=DEV) + 10.0
    seed(9)
    out = DiffAug("crop_cutout", batch=True)(x)
    assert torch.equal(out[0] == 0, out[1] == 0) and (out[0] == 0).any()


@pytest.mark.parametrize("batch", [True, False])
def test_seed_reproducibility(batch):
    x = torch.rand(4, 3, 16, 16, device=DEV)
    aug = DiffAug("color_crop_cutout_flip_scale_rotate", batch=batch)
    outs = []
    for s in (11, 11, 12):
        seed(s)
        outs.append(torch.stack([aug(x) for _ in range(4)]))
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


def test_which_rng_each_mode_uses():
    x = torch.rand(4, 3, 16, 16, device=DEV)
    # batch=True: every draw is numpy; torch seed irrelevant
    outs = []
    for ts in (1, 2):
        np.random.seed(0); torch.manual_seed(ts)
        outs.append(DiffAug("color_crop_cutout_flip_scale_rotate", batch=True)(x))
    assert torch.equal(*outs)
    # batch=False: flip/colour/crop/cutout draw from torch (choice from a 1-element L is fixed)
    outs = []
    for ns in (1, 2):
        np.random.seed(ns); torch.manual_seed(0)
        outs.append(DiffAug("flip_color_crop_cutout", batch=False)(x))
    assert torch.equal(*outs)
    # batch=False: scale/rotate (and the op choice) draw from numpy
    outs = []
    for ts in (1, 2):
        np.random.seed(0); torch.manual_seed(ts)
        outs.append(DiffAug("scale_rotate", batch=False)(x))
    assert torch.equal(*outs)


def test_identity_strategies_and_bad_token():
    x = torch.rand(2, 3, 8, 8)
    assert DiffAug("", batch=True)(x) is x and DiffAug("none")(x) is x and DiffAug("None")(x) is x
    with pytest.raises(UserError):
        DiffAug("color_blur")


@pytest.mark.parametrize("batch", [True, False])
@pytest.mark.parametrize("strategy", ["color_crop_cutout", "flip_scale", "rotate", "translate"])
def test_gradient_flows(strategy, batch):
    seed(13)
    x = torch.rand(4, 3, 16, 16, device=DEV, requires_grad=True)
    out = DiffAug(strategy, batch=batch)(x)
    g, = torch.autograd.grad((out * torch.rand_like(out)).sum(), x, create_graph=True)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_crop_gradient_is_exact_shift():
    x = torch.rand(1, 1, 8, 8, device=DEV, requires_grad=True)
    A.translate_apply(x, 2, -3).sum().backward()
    expected = torch.zeros(8, 8, device=DEV)
    expected[2:, :5] = 1                                          # only the rows/cols that are read
    assert torch.equal(x.grad[0, 0], expected)


def test_affine_gradcheck():
    x = torch.rand(2, 2, 5, 5, dtype=torch.float64, device=DEV, requires_grad=True)
    seed(14)
    th = A.rotate_params(x, batch=False)
    assert torch.autograd.gradcheck(lambda t: A.affine_apply(t, th), (x,))


def test_application_order(monkeypatch):
    calls = []
    for name, fn in list(A.OPS.items()):
        monkeypatch.setitem(A.OPS, name, (lambda n, f: lambda x, b, *r: (calls.append(n), f(x, b, *r))[1])(name, fn))
    aug = DiffAug("cutout_scale_crop_color_flip", batch=True)
    assert aug.ops == ["scale", "crop"]
    for s in range(20):
        calls.clear()
        seed(s)
        aug(torch.rand(2, 3, 8, 8))
        assert calls[:4] == ["flip", "brightness", "saturation", "contrast"]
        assert calls[4] in ("scale", "crop") and calls[5:] == ["cutout"]
    calls.clear()
    aug(torch.rand(2, 3, 8, 8), single_aug=False)
    assert calls[4:] == ["scale", "crop", "cutout"]


@pytest.mark.parametrize("batch", [True, False])
def test_rng_stream_matches_manual_composition(batch):
    x = torch.rand(3, 3, 32, 32, device=DEV)
    seed(21)
    out = DiffAug("color_crop_cutout_flip_scale", batch=batch)(x)
    seed(21)
    y = A.flip_fn(x, batch)
    for f in (A.brightness_fn, A.saturation_fn, A.contrast_fn):
        y = f(y, batch)
    y = (A.crop_fn, A.scale_fn)[np.random.randint(2)](y, batch)
    y = A.cutout_fn(y, batch, 0.5)
    torch.testing.assert_close(out, y)


def test_single_puts_everything_in_L():
    aug = DiffAug("color_crop_cutout", batch=True, single=True)
    assert aug.ops == ["color", "crop", "cutout"] and not (aug.flip or aug.color or aug.cutout)
    x = torch.rand(2, 3, 8, 8) + 5
    seed(0)
    outs = [aug(x) for _ in range(30)]
    # some calls are a pure crop or pure colour (no cutout after them): fewer than 16 zeros
    assert any((o == 0).sum() < 2 * 3 * 16 for o in outs)


# ------------------------------------------------------------------------ CutMix
def test_rand_bbox_lam_one_and_clipping():
    seed(30)
    for _ in range(50):
        x1, y1, x2, y2 = rand_bbox((4, 3, 8, 16), 1.0)
        assert (x2 - x1) * (y2 - y1) == 0
    sides = set()
    for _ in range(500):
        x1, y1, x2, y2 = rand_bbox((4, 3, 8, 16), 0.0)        # cut = whole dims, clipped
        assert 0 <= x1 <= x2 <= 8 and 0 <= y1 <= y2 <= 16
        assert x2 - x1 <= 8 and y2 - y1 <= 16
        sides.add((x2 - x1, y2 - y1))
    assert (8, 16) in sides and min(s[0] for s in sides) == 4   # centre 0 -> [0, 4)
    lam = 0.75                                                   # r = 0.5 -> cut 4 x 8
    for _ in range(200):
        x1, y1, x2, y2 = rand_bbox((1, 1, 8, 16), lam)
        assert x2 - x1 <= 4 and y2 - y1 <= 8


def test_cutmix_area_partner_and_no_inplace():
    n, h, w = 6, 12, 10
    y = torch.arange(n, device=DEV)
    x = (torch.arange(n, device=DEV, dtype=torch.float) + 1).view(n, 1, 1, 1).expand(n, 3, h, w).clone()
    x0 = x.clone()
    seen_partial = False
    for s in range(40):
        seed(s)
        out, ya, yb, ratio = cutmix(x, y, beta=1.0)
        assert torch.equal(x, x0) and torch.equal(ya, y) and isinstance(ratio, float)
        perm = yb                                                 # y is arange -> yb == perm
        assert sorted(perm.tolist()) == list(range(n))
        i = int((perm != torch.arange(n, device=DEV)).nonzero()[0])
        box = out[i, 0] != x[i, 0]
        area = int(box.sum())
        assert ratio == pytest.approx(1 - area / (h * w))
        assert (out[i][:, box] == perm[i].item() + 1).all()           # pasted from the partner
        if area:
            r, c = box.nonzero()[:, 0], box.nonzero()[:, 1]
            assert area == (r.max() - r.min() + 1) * (c.max() - c.min() + 1)   # a rectangle
            seen_partial |= 0 < area < h * w
    assert seen_partial


def test_cutmix_lambda_from_beta():
    # beta -> large: lam ~ 0.5, cut = int(32 * sqrt(0.5)) = 22 -> unclipped area 22*22
    x = torch.zeros(2, 1, 32, 32)
    ratios = []
    for s in range(60):
        seed(s)
        ratios.append(cutmix(x, torch.arange(2), beta=1e5)[3])
    assert min(ratios) == pytest.approx(1 - 22 * 22 / 1024)


# ------------------------------------------------------------------------ ImageNet transforms
def test_color_jitter_ranges_and_python_rng():
    img = torch.full((3, 4, 4), 0.5)
    b = ColorJitter(0.4, 0, 0)
    vals = []
    for s in range(300):
        random.seed(s)
        vals.append(b(img)[0, 0, 0].item())                        # 0.5 * (1 - alpha)
    assert min(vals) >= 0.3 - 1e-6 and max(vals) <= 0.7 + 1e-6 and min(vals) < 0.31 and max(vals) > 0.69
    grey = torch.rand(1, 4, 4).expand(3, 4, 4)
    torch.testing.assert_close(ColorJitter(0, 0, 0.4)(grey), grey)   # saturation: grey fixed
    x = torch.rand(3, 4, 4)
    c = ColorJitter(0, 0.4, 0)(x)
    g = 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    alpha = (c - x) / (g.mean() - x)
    assert alpha.std() < 1e-4 and alpha.abs().max() <= 0.4 + 1e-5
    j = ColorJitter()
    random.seed(5); torch.manual_seed(0); a = j(x)
    random.seed(5); torch.manual_seed(1); b2 = j(x)
    random.seed(6); c2 = j(x)
    assert torch.equal(a, b2) and not torch.equal(a, c2)


def test_lighting_offset():
    img = torch.rand(3, 5, 5)
    torch.manual_seed(3)
    out = Lighting(0.1)(img)
    torch.manual_seed(3)
    alpha = torch.empty(3).normal_(0, 0.1)
    vec = torch.tensor(A.PCA_EIGVEC) @ (alpha * torch.tensor(A.PCA_EIGVAL))
    torch.testing.assert_close(out - img, vec.view(3, 1, 1).expand(3, 5, 5))
    assert torch.equal(Lighting(0)(img), img)


def test_imagenet_transform_order_and_shapes():
    tf = imagenet_train_transform(size=32)
    names = [type(t).__name__ for t in tf.transforms]
    assert names == ["Resize", "CenterCrop", "ToTensor", "RandomResizedCrop", "RandomHorizontalFlip",
                     "ColorJitter", "Lighting", "Normalize"]
    assert tf.transforms[3].scale == (0.5, 1.0)
    pil = Image.fromarray(np.random.RandomState(0).randint(0, 255, (40, 48, 3), dtype=np.uint8))
    seed(0)
    assert tf(pil).shape == (3, 32, 32)
    assert imagenet_train_transform(size=32, rrc_size=16)(pil).shape == (3, 16, 16)
    te = imagenet_test_transform(32)
    assert te(pil).shape == (3, 32, 32) and torch.equal(te(pil), te(pil))
    assert [type(t).__name__ for t in imagenet_test_transform(-1).transforms][:2] == ["Resize", "CenterCrop"]
