"""Datasets in their real on-disk formats, condensed-set I/O, multi-formation decode order, loaders."""
import os

import pytest
import torch
import torch.nn.functional as F

import data.datasets as dd
from data.condensed import (check_condensed, class_prefix, decode, decode_bound, decode_zoom, latest_data_file,
                            load_condensed, save_condensed)
from data.loaders import ClassSampler, TensorLoader
from fakedata import make_mnist_like
from utils.errors import UserError


@pytest.mark.parametrize("name,shape,n", [("cifar10", (3, 32, 32), 100), ("cifar100", (3, 32, 32), 200),
                                          ("svhn", (3, 32, 32), 100), ("mnist", (1, 28, 28), 100),
                                          ("fashion", (1, 28, 28), 100)])
def test_real_formats_load(fake_root, name, shape, n):
    x, y = dd.load_tensors(name, fake_root, train=True)
    assert x.dtype == torch.uint8 and tuple(x.shape[1:]) == shape and len(x) == len(y) == n
    nclass = 100 if name == "cifar100" else 10
    assert torch.equal(y, torch.arange(n) % nclass)  # the fake sets cycle through the classes
    # the class-dependent brightness survives the format round trip (channel order, layout)
    assert x[y == nclass - 1].float().mean() > x[y == 0].float().mean() + 50
    xt, yt = dd.load_tensors(name, fake_root, train=False)
    assert len(xt) == (100 if name == "cifar100" else 50)


def test_fashion_from_debian_package_dir(tmp_path, monkeypatch):
    deb = make_mnist_like(str(tmp_path / "deb"), n_train=30, n_test=20, gz=True)
    monkeypatch.setattr(dd, "DEBIAN_FASHION", deb)
    x, y = dd.load_tensors("fashion", str(tmp_path / "empty"), train=True)
    assert x.shape == (30, 1, 28, 28) and len(y) == 30


def test_missing_dataset_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(dd, "DEBIAN_FASHION", str(tmp_path / "nowhere"))
    for name in ("cifar10", "svhn", "fashion"):
        with pytest.raises(UserError, match="--download|--data_dir"):
            dd.load_tensors(name, str(tmp_path), train=True)


def test_imagenet_subset_classes_and_ipc(fake_root):
    ds = dd.imagenet_folder(os.path.join(fake_root, "imagenet"), "train", nclass=10, ipc=2)
    assert ds.classes[:2] == ["n02869837", "n01749939"]  # class100.txt order (reference
    # he-y/Multisize-Dataset-Condensation/misc/class100.txt)
    assert len(ds) == 20 and ds.targets[:4] == [0, 0, 1, 1]
    x, y = dd.imagenet_tensors(ds, 32)
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.uint8
    with pytest.raises(UserError, match="imagenet_dir"):
        dd.imagenet_folder(os.path.join(fake_root, "nope"), "train", nclass=10)


def test_first_per_class():
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    x = torch.arange(6).float()
    xs, ys = dd.first_per_class(x, y, 2, 2)
    assert xs.tolist() == [0, 2, 1, 3] and ys.tolist() == [0, 0, 1, 1]
    with pytest.raises(UserError):
        dd.first_per_class(x, y, 2, 4)


# ------------------------------------------------------------------------------------------------
# decode order (MDC reference condense_reg.py; reference he-y/you-only-condense-once/utils/img_loader.py;
# docs/data.md#decode-order-multi-formation; docs/algorithms.md#evaluation-protocol, #yoco-condensed-inputs)


def tiled(nclass, ipc, f, size, ch=1):
    """Stored mosaics whose tile k of image m (class c) is the constant c*1000 + k*100 + m."""
    s = -(-size // f)
    x = torch.zeros(nclass * ipc, ch, f * s, f * s)
    for c in range(nclass):
        for m in range(ipc):
            for i in range(f):
                for j in range(f):
                    x[c * ipc + m, :, i * s:(i + 1) * s, j * s:(j + 1) * s] = c * 1000 + (i * f + j) * 100 + m
    return x[..., :size, :size].contiguous(), torch.arange(nclass).repeat_interleave(ipc)


@pytest.mark.parametrize("f", [1, 2, 3])
def test_decode_is_crop_major_per_class(f):
    nclass, ipc, size = 3, 4, 30  # 30 % 3 == 0 and 30 % 2 == 0: every tile is constant
    x, y = tiled(nclass, ipc, f, size)
    dec, dy = decode(x, y, f, nclass=nclass)
    n = ipc * f * f
    assert dec.shape == (nclass * n, 1, size, size)
    for c in range(nclass):
        for d in range(n):
            k, m = divmod(d, ipc)  # decoded index d of class c = tile k of stored image m
            v = dec[c * n + d]
            assert torch.allclose(v, torch.full_like(v, c * 1000 + k * 100 + m)), (c, d)
            assert dy[c * n + d] == c


def test_ipc_x_prefix_is_first_x_f2_decoded():
    """IPC-x = the first x·f² decoded images per class: with ipc 10, f 2, IPC-1 = TL of images 0-3."""
    x, y = tiled(2, 10, 2, 32)
    dec, dy = decode(x, y, 2, nclass=2)
    sub, sy = class_prefix(dec, dy, 2, 40, 4)
    assert sub[:, 0, 0, 0].tolist() == [0, 1, 2, 3, 1000, 1001, 1002, 1003]
    sub5, _ = class_prefix(dec, dy, 2, 40, 20)  # IPC-5 = the top halves of all 10 images
    assert sorted(set((sub5[:20, 0, 0, 0] // 100).long().tolist())) == [0, 1]


def test_decode_odd_size_28_f3_matches_manual_crop():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 28, 28)
    dec, _ = decode_zoom(x, torch.zeros(2, dtype=torch.long), 3)
    padded = F.pad(x, (0, 2, 0, 2), value=0.5)  # 28 -> 30, tiles of 10 (MDC reference condense_reg.py,
    # Synthesizer.decode_zoom; docs/data.md#decode-order-multi-formation)
    for i in range(3):
        for j in range(3):
            for m in range(2):
                crop = padded[m:m + 1, :, i * 10:(i + 1) * 10, j * 10:(j + 1) * 10]
                want = F.interpolate(crop, size=(28, 28), mode="bilinear", align_corners=False)
                assert torch.allclose(dec[(i * 3 + j) * 2 + m], want[0], atol=1e-6)


def test_decode_multi_and_bound():
    x, y = tiled(1, 10, 3, 30)
    multi, _ = decode(x, y, 3, "multi", nclass=1)
    assert len(multi) == 10 * (1 + 4 + 9)
    b, by = decode_bound(x, y, 3, bound=40)
    assert len(b) <= 40 and len(by) == len(b)
    assert len(decode_bound(x, y, 3, bound=200)[0]) == 90  # enough room: everything at f = 3


def _bound_expected(x, y, split):
    """Concatenated decode_zoom blocks for a hand-computed split {factor: image count}, largest first."""
    xs, ys, start = [], [], 0
    for g in sorted(split, reverse=True):
        k = split[g]
        if k:
            d, dy = decode_zoom(x[start:start + k], y[start:start + k], g)
            xs.append(d)
            ys.append(dy)
            start += k
    assert start == len(x)
    return torch.cat(xs), torch.cat(ys)


@pytest.mark.parametrize("n,f,bound,split,total", [
    (20, 3, 128, {3: 12, 2: 3, 1: 5}, 125),  # ImageNet IPC 20: room 108 -> 12·9, room 12 -> 3·4, 5·1
    (50, 2, 128, {2: 19, 1: 31}, 107),  # ImageNet IPC 50, f 2: room 78 -> 19·4, then 31·1
    (5, 3, 30, {3: 2, 2: 2, 1: 1}, 27),  # room 25 -> 2·9; room 30-18-3=9 -> 2·4; 1
    (6, 3, 20, {3: 1, 2: 1, 1: 4}, 17),  # room 14 -> 1·9; room 20-9-5=6 -> 1·4; room 3 -> 4·1
    (4, 2, 16, {2: 3, 1: 1}, 13),  # room 12 -> 3·4; 1
    (3, 3, 3, {3: 0, 2: 0, 1: 3}, 3),  # room 0: nothing fits above factor 1
    (10, 3, 200, {3: 10}, 90),  # enough room: all at the largest factor
])
def test_decode_bound_reference_split(n, f, bound, split, total):
    """The reference's decode_zoom_bound budget: which images land at which factor, and the order."""
    torch.manual_seed(n + f)
    x, y = torch.rand(n, 3, 12, 12), torch.arange(n)  # the labels name the source images
    got, gy = decode_bound(x, y, f, bound)
    want, wy = _bound_expected(x, y, split)
    assert len(got) == total <= bound
    assert torch.equal(gy, wy) and torch.allclose(got, want)
    # the same through the class-block decode used by training/evaluation (two classes)
    xx, yy = torch.cat([x, x + 1]), torch.arange(2).repeat_interleave(n)
    dx, dy = decode(xx, yy, f, "bound", nclass=2, bound=bound)
    assert len(dx) == 2 * total and torch.equal(dy, torch.arange(2).repeat_interleave(total))
    assert torch.allclose(dx[:total], want) and torch.allclose(dx[total:], _bound_expected(x + 1, y, split)[0])


def test_decode_bound_imagenet_source_images():
    """IPC 20, f 3, bound 128: images 0-11 at f 3 (crop-major), 12-14 at f 2, 15-19 untouched."""
    x, y = torch.rand(20, 3, 12, 12), torch.arange(20)
    got, gy = decode_bound(x, y, 3, 128)
    assert gy.tolist() == list(range(12)) * 9 + [12, 13, 14] * 4 + list(range(15, 20))
    assert torch.equal(got[-5:], x[15:])


def test_decode_bound_negative_room_guard():
    """More stored images than the bound: the reference's room is negative (it would decode 91 crops
    here); the guard keeps every image at factor 1, so the output is the stored block itself."""
    x, y = torch.rand(10, 3, 12, 12), torch.arange(10)
    got, gy = decode_bound(x, y, 3, bound=8)
    assert torch.equal(got, x) and torch.equal(gy, y)


def test_condensed_io_formats(tmp_path):
    x, y = torch.rand(20, 3, 8, 8), torch.arange(10).repeat_interleave(2)
    save_condensed(str(tmp_path / "run" / "data_300.pt"), x, y)
    save_condensed(str(tmp_path / "run" / "data_100.pt"), x * 0, y)
    assert latest_data_file(str(tmp_path / "run")).endswith("data_300.pt")
    lx, ly = load_condensed(str(tmp_path / "run"))
    assert torch.equal(lx, x) and torch.equal(ly, y)
    torch.save({"data": [[x, y]]}, tmp_path / "dsa.pt")
    assert torch.equal(load_condensed(str(tmp_path / "dsa.pt"), "dsa")[0], x)
    torch.save([x.permute(0, 2, 3, 1), F.one_hot(y, 10).float()], tmp_path / "kip.pt")
    kx, ky = load_condensed(str(tmp_path / "kip.pt"), "kip")
    assert torch.equal(kx, x) and torch.equal(ky, y)
    os.makedirs(tmp_path / "mtt")
    torch.save(x, tmp_path / "mtt" / "images_best.pt")
    torch.save(y, tmp_path / "mtt" / "labels_best.pt")
    assert torch.equal(load_condensed(str(tmp_path / "mtt"), "mtt")[1], y)


def test_condensed_checks(tmp_path):
    x, y = torch.rand(20, 3, 32, 32), torch.arange(10).repeat_interleave(2)
    assert check_condensed(x, y, 10, 3, 32) == 2
    with pytest.raises(UserError, match="dataset"):
        check_condensed(x, y, 10, 1, 28)
    with pytest.raises(UserError, match="classes"):
        check_condensed(x[:15], y[:15], 10, 3, 32)
    with pytest.raises(UserError, match="--ipc 2"):
        check_condensed(x, y, 10, 3, 32, ipc=5)
    with pytest.raises(UserError, match="class-major"):
        check_condensed(x, y.flip(0), 10, 3, 32)
    torch.save({"not": "a set"}, tmp_path / "bad.pt")
    with pytest.raises(UserError):
        load_condensed(str(tmp_path / "bad.pt"))
    with pytest.raises(UserError, match="not found"):
        load_condensed(str(tmp_path / "missing.pt"))


# ------------------------------------------------------------------------------------------------
# loaders


def test_class_sampler_blocks_and_epochs():
    y = torch.arange(40) % 2
    x = torch.arange(40, dtype=torch.uint8).view(40, 1, 1, 1).expand(40, 1, 2, 2).contiguous()
    s = ClassSampler(x, y, 2, batch_size=4)
    init, iy = s.class_sample(1, ipc=3, start_idx=1)  # class 1 = odd indices; block 1 of 3 = 7, 9, 11
    assert (init[:, 0, 0, 0] * 255).round().tolist() == [7, 9, 11] and iy.tolist() == [1, 1, 1]
    seen = torch.cat([(s.class_sample(0)[0][:, 0, 0, 0] * 255).round() for _ in range(5)])
    assert sorted(seen.long().tolist()) == list(range(0, 40, 2))  # one class epoch, no repeats
    xb, yb = s.sample()
    assert len(xb) == 4 and xb.dtype == torch.float32


def test_tensor_loader_partial_last_batch():
    x, y = torch.rand(10, 1, 2, 2), torch.arange(10)
    ld = TensorLoader(x, y, 4, shuffle=True, return_index=True)
    batches = list(ld)
    assert len(ld) == 3 and [len(b[1]) for b in batches] == [4, 4, 2]
    idx = torch.cat([b[2] for b in batches])
    assert sorted(idx.tolist()) == list(range(10))
    assert all(torch.equal(b[1], b[2]) for b in batches)  # labels follow their indices
