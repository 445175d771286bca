"""Tiny fake datasets written in the real on-disk formats, so the real loading code runs in tests.

CIFAR-10/100: python pickles under ``cifar-10-batches-py`` / ``cifar-100-python``; SVHN: MATLAB
``.mat`` (``X`` [32,32,3,N], ``y`` [N,1] with 10 for digit 0); MNIST / Fashion-MNIST: idx files
(``FashionMNIST/raw`` in torchvision's layout, or gzipped as in the Debian package); ImageNet: an
ImageFolder tree ``train/<wnid>/*.png`` and ``val/<wnid>/*.png``. Images carry a class-dependent
mean so that a network can learn something in a few epochs.
"""
import gzip
import os
import pickle
import struct

import numpy as np


def _images(rng, n, h, w, c, labels, nclass):
    base = (labels[:, None, None, None] + 0.5) / nclass * 200
    noise = rng.integers(0, 56, size=(n, h, w, c))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _labels(n, nclass):
    return np.arange(n) % nclass


def make_cifar(root, nclass=10, n_train=100, n_test=50, seed=0):
    rng = np.random.default_rng(seed)
    if nclass == 10:
        folder, key = os.path.join(root, "cifar-10-batches-py"), "labels"
        train_files = [f"data_batch_{i}" for i in range(1, 6)]
        test_files, meta, meta_key = ["test_batch"], "batches.meta", "label_names"
    else:
        folder, key = os.path.join(root, "cifar-100-python"), "fine_labels"
        train_files, test_files, meta, meta_key = ["train"], ["test"], "meta", "fine_label_names"
    os.makedirs(folder, exist_ok=True)
    for files, n in ((train_files, n_train), (test_files, n_test)):
        y = _labels(n, nclass)
        x = _images(rng, n, 32, 32, 3, y, nclass).transpose(0, 3, 1, 2).reshape(n, -1)
        for i, name in enumerate(files):
            part = slice(i * n // len(files), (i + 1) * n // len(files))
            with open(os.path.join(folder, name), "wb") as f:
                pickle.dump({"data": x[part], key: y[part].tolist()}, f)
    with open(os.path.join(folder, meta), "wb") as f:
        pickle.dump({meta_key: [f"class{i}" for i in range(nclass)]}, f)
    return root


def make_svhn(root, n_train=100, n_test=50, seed=0):
    import scipy.io

    rng = np.random.default_rng(seed)
    folder = os.path.join(root, "svhn")
    os.makedirs(folder, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        y = _labels(n, 10)
        x = _images(rng, n, 32, 32, 3, y, 10).transpose(1, 2, 3, 0)  # [32, 32, 3, N]
        mat_y = np.where(y == 0, 10, y).reshape(-1, 1).astype(np.uint8)
        scipy.io.savemat(os.path.join(folder, f"{split}_32x32.mat"), {"X": x, "y": mat_y})
    return root


def _write_idx(path, arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def make_mnist_like(folder, n_train=100, n_test=50, seed=0, gz=False):
    """idx files in ``folder`` (``<root>/FashionMNIST/raw`` or ``<root>/MNIST/raw``, or a Debian dir)."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    ext = ".gz" if gz else ""
    for pre, n in (("train", n_train), ("t10k", n_test)):
        y = _labels(n, 10)
        x = _images(rng, n, 28, 28, 1, y, 10)[..., 0]
        _write_idx(os.path.join(folder, f"{pre}-images-idx3-ubyte{ext}"), x)
        _write_idx(os.path.join(folder, f"{pre}-labels-idx1-ubyte{ext}"), y)
    return folder


def make_imagenet(root, nclass=10, n_train=6, n_val=3, size=40, seed=0):
    from PIL import Image

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "data", "class100.txt")) as f:
        wnids = f.read().split()[:nclass]
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c, w in enumerate(wnids):
            d = os.path.join(root, split, w)
            os.makedirs(d, exist_ok=True)
            y = np.full(n, c)
            for i, img in enumerate(_images(rng, n, size, size, 3, y, nclass)):
                Image.fromarray(img).save(os.path.join(d, f"{w}_{i:03d}.png"))
    return root
