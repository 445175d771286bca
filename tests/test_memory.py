"""The compact test set (issue 12): kept as uint8, normalised per batch, the same values as the float32 test set
of before, bit for bit; and the allocator settings of ``utils.config.tune_allocator``. No timings and no
resident-memory figures here: benchmarks/eval_memory.py measures those."""
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

import data.datasets as dd
import data.loaders as dl
from data.loaders import ByteNormalize, TensorLoader

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def old_test_tensors(name, root):
    """The float32 test set exactly as ``test_tensors`` built it before issue 12."""
    x, y = dd.load_tensors(name, root, train=False)
    mean, std = dd.mean_std(name)
    x = x.float().div_(255)
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x, y


def args_for(name, root):
    return SimpleNamespace(dataset=name, data_dir=root, download=False)


@pytest.mark.parametrize("name", ["cifar10", "fashion", "svhn", "mnist", "cifar100"])
def test_compact_test_set_gives_the_same_batches_bitwise(fake_root, name):
    ox, oy = old_test_tensors(name, fake_root)
    loader = dl.test_loader(args_for(name, fake_root), "cpu", 17)  # 17: a partial last batch
    assert loader.images.dtype == torch.uint8 and loader.images.shape == ox.shape
    assert isinstance(loader.transform, ByteNormalize)
    batches = list(loader)
    assert [len(b[1]) for b in batches] == [len(b) for b in torch.split(oy, 17)]
    for (bx, by), ex, ey in zip(batches, torch.split(ox, 17), torch.split(oy, 17)):
        assert bx.dtype == torch.float32 and bx.is_contiguous()
        assert torch.equal(bx, ex) and torch.equal(by, ey)  # bitwise, not merely close


@pytest.mark.parametrize("name", ["cifar10", "fashion"])
def test_test_tensors_default_and_compact(fake_root, name):
    ox, oy = old_test_tensors(name, fake_root)
    x, y = dd.test_tensors(args_for(name, fake_root))  # the default: normalised float32, as before
    assert x.dtype == torch.float32 and torch.equal(x, ox) and torch.equal(y, oy)
    cx, cy = dd.test_tensors(args_for(name, fake_root), compact=True)
    raw, _ = dd.load_tensors(name, fake_root, train=False)
    assert cx.dtype == torch.uint8 and torch.equal(cx, raw) and torch.equal(cy, oy)


def test_byte_table_is_the_normalisation_of_every_byte():
    for name, nch in (("cifar10", 3), ("svhn", 3), ("mnist", 1), ("fashion", 1)):
        table = dd.byte_table(name, nch)
        assert table.shape == (nch, 256) and table.dtype == torch.float32
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (5, nch, 7, 7), dtype=torch.uint8, generator=g)
        assert torch.equal(ByteNormalize(table)(x), dd.normalise(x, name))
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    mean, std = dd.mean_std("cifar10")
    ref = (x.float() / 255 - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    assert torch.equal(dd.normalise(x, "cifar10"), ref)  # ToTensor's /255, then Normalize: that order
    assert dd.normalise(x, "cifar10").data_ptr() != x.data_ptr() and x.dtype == torch.uint8  # input untouched


def test_non_uint8_test_set_is_normalised_in_advance(fake_root, monkeypatch):
    """A format stored other than as bytes (none of ours today) keeps the float path."""
    x, y = dd.load_tensors("cifar10", fake_root, train=False)
    monkeypatch.setattr(dd, "load_tensors", lambda *a, **k: (x.double(), y))
    cx, _ = dd.test_tensors(args_for("cifar10", fake_root), compact=True)
    assert cx.dtype == torch.float32 and torch.equal(cx, old_test_tensors("cifar10", fake_root)[0])
    loader = dl.test_loader(args_for("cifar10", fake_root), "cpu", 500)
    assert loader.transform is None and loader.images.dtype == torch.float32
    assert torch.equal(next(iter(loader))[0], cx[:len(cx)])


def test_cpu_test_batches_are_capped(fake_root, monkeypatch):
    monkeypatch.setattr(dl, "CPU_TEST_BATCH", 8)
    loader = dl.test_loader(args_for("cifar10", fake_root), "cpu", 500)
    assert loader.batch_size == 8 and [len(b[1]) for b in loader] == [8] * 6 + [2]
    assert dl.test_loader(args_for("cifar10", fake_root), "cpu", 5).batch_size == 5


def test_tensor_loader_uint8_without_byte_transform_still_scales():
    x = torch.tensor([0, 51, 255], dtype=torch.uint8).view(3, 1, 1, 1)
    (bx, _), = TensorLoader(x, torch.arange(3), 3, shuffle=False)
    assert bx.dtype == torch.float32 and torch.equal(bx.flatten(), torch.tensor([0, 51, 255]).float() / 255)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_compact_test_set_on_cuda_bitwise(fake_root):
    ox, oy = old_test_tensors("cifar10", fake_root)  # normalised on the CPU, as before
    loader = dl.test_loader(args_for("cifar10", fake_root), "cuda", 500)
    assert loader.images.is_cuda and loader.images.dtype == torch.uint8
    (bx, by), = list(loader)
    assert torch.equal(bx.cpu(), ox) and torch.equal(by.cpu(), oy)


MALLOC_PROBE = r"""
import ctypes, json, sys
sys.path.insert(0, sys.argv[1])
import inspect
from utils.config import tune_allocator

class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                               "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
applied = tune_allocator()
defaults = inspect.signature(tune_allocator).parameters
mmap_at, trim_at = defaults["mmap_threshold"].default, defaults["trim_threshold"].default

def mmapped(size):
    before = libc.mallinfo2().hblkhd
    p = libc.malloc(size)
    ctypes.memset(p, 1, size)
    grew = libc.mallinfo2().hblkhd - before
    libc.free(p)
    return grew >= size

small = mmap_at - (1 << 20)          # just below the mmap threshold: from the heap
blocks = [libc.malloc(small) for _ in range(trim_at // small + 2)]  # a heap top larger than the trim threshold
for p in blocks:
    ctypes.memset(p, 1, small)
peak = libc.mallinfo2().arena
for p in blocks:
    libc.free(p)
print(json.dumps({"applied": applied, "big_mmapped": mmapped(mmap_at + (1 << 20)), "small_mmapped": mmapped(small),
                  "heap_peak": peak, "heap_after": libc.mallinfo2().arena, "trim_at": trim_at}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_tune_allocator_sets_what_it_says():
    """In a fresh interpreter: True on Linux; a block above the mmap threshold is mmapped (and so returned on
    free), one below comes from the heap; a free heap top above the trim threshold is given back."""
    import json

    p = subprocess.run([sys.executable, "-c", MALLOC_PROBE, ROOT], capture_output=True, text=True, timeout=300)
    if p.returncode != 0 and "mallinfo2" in p.stderr:
        pytest.skip("glibc without mallinfo2 (< 2.33)")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout.strip().splitlines()[-1])
    assert r["applied"] is True
    assert r["big_mmapped"] and not r["small_mmapped"]
    assert r["heap_peak"] > r["trim_at"] and r["heap_after"] < r["trim_at"]


def test_tune_allocator_values_are_bounded():
    """Finite: blocks above the mmap threshold go back to the system on free, and so does a free heap top
    above the trim threshold (the setting before issue 12 kept everything: 1 GiB and 2^31 - 1)."""
    import inspect

    from utils.config import tune_allocator

    defaults = inspect.signature(tune_allocator).parameters
    assert 32 << 20 < defaults["mmap_threshold"].default < 1 << 30  # above a batch-64 activation of ConvNet-3
    assert defaults["trim_threshold"].default < 1 << 30
