"""ImageNet input throughput: images per second decoded (condensation's streaming source) and augmented
(the evaluation's per-sample RandomResizedCrop, flip, jitter, lighting), on the main thread vs in workers.

    python benchmarks/imagenet_input.py [--workers 2] [--images 200] [--reps 5]

Writes a fake ImageNet folder of JPEGs (10 classes, 375 x 500 px like typical ImageNet photos) to a
temporary folder, then times, alternating, ``data.loaders.ClassSampler`` drawing class batches from the
folder (decode + resize 224 + centre crop; ``workers`` decoding threads, same images) and
``data.loaders.TensorLoader`` with the ImageNet training transform on 224-px tensors (``workers``
processes). Prints images/s for workers 0 and N (median and range) and their ratio, with the machine.
"""
import argparse
import os
import statistics
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.machine import alternate, describe, summary  # noqa: E402
from data.datasets import imagenet_folder, imagenet_load_transform  # noqa: E402
from data.loaders import ClassSampler, TensorLoader  # noqa: E402
from training.augment import imagenet_train_transform  # noqa: E402


def fake_imagenet(root, n_per_class, nclass=10, seed=0):
    from PIL import Image

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(here, "data", "class100.txt")) as f:
        wnids = f.read().split()[:nclass]  # the ImageNet-10 classes
    rng = np.random.default_rng(seed)
    for split in ("train", "val"):
        for c, w in enumerate(wnids):
            d = os.path.join(root, split, w)
            os.makedirs(d, exist_ok=True)
            for i in range(n_per_class if split == "train" else 1):
                img = (rng.random((375, 500, 3)) * 64 + c * 19).astype(np.uint8)
                Image.fromarray(img).save(os.path.join(d, f"{i}.JPEG"), quality=90)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=max(2, (os.cpu_count() or 2)))
    p.add_argument("--images", type=int, default=200, help="images per timed run")
    p.add_argument("--reps", type=int, default=5)
    a = p.parse_args(argv)
    print(describe())
    with tempfile.TemporaryDirectory() as root:
        fake_imagenet(root, a.images // 10 + 1)
        ds = imagenet_folder(root, "train", 10, transform=imagenet_load_transform(224))
        samplers = {w: ClassSampler(ds, ds.targets, 10, a.images // 10, workers=w) for w in (0, a.workers)}
        decode = {f"decode, {w} threads": (lambda s=s: [s.class_sample(c) for c in range(10)])
                  for w, s in samplers.items()}
        x, y = torch.rand(a.images, 3, 224, 224), torch.arange(a.images) % 10
        tf = imagenet_train_transform(224, from_tensor=True)
        loaders = {w: TensorLoader(x, y, 64, True, "cpu", sample_transform=tf, workers=w) for w in (0, a.workers)}
        augment = {f"augment, {w} processes": (lambda ld=ld: [b for b in ld]) for w, ld in loaders.items()}
        for cases in (decode, augment):
            for fn in cases.values():
                fn()  # warm-up (worker start, file cache)
            times = alternate(cases, a.reps)
            rate = {k: [a.images / t for t in v] for k, v in times.items()}
            (n0, r0), (n1, r1) = rate.items()
            for name, r in rate.items():
                print(f"{name:>22}: {summary(r)} images/s")
            print(f"{'ratio':>22}: {statistics.median(r1) / statistics.median(r0):.2f}x ({n1} vs {n0})")
        for ld in loaders.values():
            ld.close()


if __name__ == "__main__":
    main()
