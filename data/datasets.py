"""Real datasets (reference he-y/Multisize-Dataset-Condensation/data.py; reference
he-y/you-only-condense-once/utils/img_loader.py; docs/data.md; docs/algorithms.md#yoco-condensed-inputs): loading,
normalisation constants, ImageNet subsets.

The 32/28-px datasets are held as uint8 tensors ``[N, C, H, W]`` (``load_tensors``); everything that
trains works on float tensors in [0, 1] and normalises on the fly. Nothing is downloaded unless
``--download`` is given, and a missing dataset is a one-line ``UserError`` that says where we looked.
"""
import gzip
import os
import struct

import numpy as np
import torch

from utils.errors import UserError
from utils.safe_pickle import load_pickle

# MDC reference data.py, MEANS and STDS
MEANS = {
    "cifar": [0.4914, 0.4822, 0.4465], "imagenet": [0.485, 0.456, 0.406],
    "svhn": [0.4377, 0.4438, 0.4728], "mnist": [0.1307], "fashion": [0.2861],
}
STDS = {
    "cifar": [0.2023, 0.1994, 0.2010], "imagenet": [0.229, 0.224, 0.225],
    "svhn": [0.1980, 0.2010, 0.1970], "mnist": [0.3081], "fashion": [0.3530],
}
INFO = {  # nclass, nch, size
    "cifar10": (10, 3, 32), "cifar100": (100, 3, 32), "svhn": (10, 3, 32),
    "mnist": (10, 1, 28), "fashion": (10, 1, 28),
}
# Debian's `dataset-fashion-mnist` package (`dpkg -L dataset-fashion-mnist`)
DEBIAN_FASHION = os.environ.get("FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist")
CLASS100 = os.path.join(os.path.dirname(os.path.abspath(__file__)), "class100.txt")


def stats_key(dataset):
    """CIFAR-100 uses the CIFAR statistics (MDC reference data.py, transform_cifar)."""
    return "cifar" if dataset.startswith("cifar") else dataset


def mean_std(dataset):
    k = stats_key(dataset)
    return MEANS[k], STDS[k]


def _read_idx(path):
    """An MNIST-style idx file (optionally .gz) as a numpy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08:
        raise UserError(f"{path} is not an idx file of unsigned bytes; re-install the dataset")
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _idx_pair(folder, train):
    pre = "train" if train else "t10k"
    for ext in (".gz", ""):
        img = os.path.join(folder, f"{pre}-images-idx3-ubyte{ext}")
        lab = os.path.join(folder, f"{pre}-labels-idx1-ubyte{ext}")
        if os.path.exists(img) and os.path.exists(lab):
            return img, lab
    return None


def _load_mnist_like(name, root, train, download):
    folders = [os.path.join(root, "MNIST" if name == "mnist" else "FashionMNIST", "raw")]  # torchvision's layout
    if name == "fashion":
        folders.append(DEBIAN_FASHION)
    for folder in folders:
        pair = _idx_pair(folder, train)
        if pair:
            x = torch.from_numpy(_read_idx(pair[0]).copy()).unsqueeze(1)
            y = torch.from_numpy(_read_idx(pair[1]).astype(np.int64))
            return x, y
    if download:
        import torchvision

        cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
        ds = cls(root, train=train, download=True)
        return ds.data.unsqueeze(1).clone(), ds.targets.clone().long()
    hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion" else ""
    raise UserError(f"{name} not found in {' or '.join(folders)}; pass --data_dir, add --download{hint}")


def _presence_checked(cls):
    """torchvision's class, but a present file counts as intact: its md5 check re-reads the whole
    dataset on every load; ``--download`` still verifies what it fetches."""

    class Checked(cls):
        def _check_integrity(self):
            return os.path.exists(os.path.join(self.root, self.filename))

    Checked.__name__ = cls.__name__
    return Checked


# torchvision's CIFAR layout: folder, train batches, test batches, label key
CIFAR_FILES = {"cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels"),
               "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels")}


def _load_cifar(name, root, train):
    """CIFAR batches (python pickles) read as torchvision reads them, but through the restricted unpickler
    (``utils.safe_pickle``): a batch file cannot run code. Returns uint8 [N, 3, 32, 32], int64 [N]."""
    folder, train_files, test_files, key = CIFAR_FILES[name]
    xs, ys = [], []
    for f in train_files if train else test_files:
        path = os.path.join(root, folder, f)
        if not os.path.isfile(path):
            raise UserError(f"{name} not found under {os.path.abspath(root)} ({path} is missing); "
                            "pass --data_dir or add --download")
        d = load_pickle(path, f"{name} batch", encoding="latin1")
        if not isinstance(d, dict) or "data" not in d or key not in d:
            raise UserError(f"{path} is not a {name} batch (expected the keys 'data' and {key!r})")
        xs.append(np.asarray(d["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.extend(d[key])
    x = xs[0] if len(xs) == 1 and xs[0].flags.writeable else np.concatenate(xs)  # one file (test sets): no copy
    return torch.from_numpy(x), torch.tensor(ys, dtype=torch.int64)


def dataset_folders(args):
    """The folders the real dataset of ``args`` is read from (what no output may be, or lie inside)."""
    d = args.dataset
    if d == "imagenet":
        return [(args.imagenet_dir, "the dataset of --imagenet_dir")]
    sub = {"mnist": "MNIST", "fashion": "FashionMNIST", "svhn": "svhn"}.get(d) or CIFAR_FILES[d][0]
    return [(os.path.join(args.data_dir, sub), "the dataset of --data_dir")]


def load_tensors(name, root, train=True, download=False):
    """(uint8 images [N, C, H, W], int64 labels [N]) of a 32/28-px dataset, in torchvision's layouts.

    torchvision is imported only for SVHN and ``--download`` (importing it costs ~170 MB of resident
    memory: it loads torch._dynamo and triton); CIFAR and MNIST-style files are read directly."""
    if name in ("mnist", "fashion"):
        return _load_mnist_like(name, root, train, download)
    try:
        if name in ("cifar10", "cifar100"):
            if download:  # fetches the official archive; torchvision md5-checks every file before it reads one
                import torchvision

                cls = torchvision.datasets.CIFAR10 if name == "cifar10" else torchvision.datasets.CIFAR100
                cls(root, train=train, download=True)
            return _load_cifar(name, root, train)
        if name == "svhn":
            import torchvision

            root = os.path.join(root, "svhn")
            cls = torchvision.datasets.SVHN if download else _presence_checked(torchvision.datasets.SVHN)
            ds = cls(root, split="train" if train else "test", download=download)
            return torch.from_numpy(ds.data).contiguous(), torch.from_numpy(ds.labels.astype(np.int64))
    except RuntimeError as e:  # torchvision: "Dataset not found or corrupted"
        raise UserError(f"{name} not found under {os.path.abspath(root)} ({e}); pass --data_dir or add --download")
    raise UserError(f"unknown dataset {name!r}; choose one of cifar10, cifar100, svhn, mnist, fashion, imagenet")


def first_per_class(images, targets, nclass, n, start=0, exclude=None):
    """The first ``n`` samples of every class in dataset order, class-major (the `random` baseline).
    ``exclude``: dataset indices never chosen (the held-out images of ``held_out_indices``), skipped before the
    choice, so a class's later images take their places."""
    keep = torch.ones(len(targets), dtype=torch.bool)
    if exclude is not None:
        keep[exclude] = False
    rows = []
    for c in range(nclass):
        idx = ((targets == c) & keep).nonzero().flatten()[start:start + n]
        if len(idx) < n:
            if exclude is not None:
                raise too_few_besides_held_out(c, len(idx))
            raise UserError(f"class {c} has only {len(idx)} images after offset {start}; lower --ipc")
        rows.append(idx)
    idx = torch.cat(rows)
    return images[idx], targets[idx]


def too_few_besides_held_out(c, n):
    return UserError(f"class {c} has only {n} images besides those held out by --val_per_class; lower --ipc or "
                     "--val_per_class")


def held_out_indices(targets, nclass, k, seed):
    """Dataset indices of ``k`` training images per class held out for validation (``test.py --val_per_class``,
    docs/evaluating.md#held-out-validation), class-major: for each class in turn, the first ``k`` of a permutation
    of its indices drawn by one local ``torch.Generator`` seeded with ``seed`` (the global RNGs are not touched).
    They depend only on the labels, ``k`` and ``seed``: the same set on every run and resume. A class with fewer
    than ``k`` images is a ``UserError``."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for c in range(nclass):
        idx = (targets == c).nonzero().flatten()
        if len(idx) < k:
            raise UserError(f"--val_per_class {k}: class {c} has only {len(idx)} training images; pass "
                            f"--val_per_class {len(idx)} or less")
        rows.append(idx[torch.randperm(len(idx), generator=g)[:k]])
    return torch.cat(rows)


def held_out_of(args, labels):
    """``held_out_indices`` of ``test.py --val_per_class K --val_seed S`` for the train split whose labels
    ``labels()`` gives (called only when the option is on); None when it is off (K = 0)."""
    if args.val_per_class <= 0:
        return None
    return held_out_indices(torch.as_tensor(labels()), args.nclass, args.val_per_class, args.val_seed)


# ------------------------------------------------------------------------------------------------
# ImageNet subsets (MDC reference data.py, ImageFolder; misc/class100.txt)


def find_subclasses(train_dir, nclass, phase=0, seed=0):
    """Class folders of the ImageNet subset: block ``phase`` of ``nclass`` classes.

    seed 0 uses the reference's class100.txt order; otherwise a seeded permutation of the sorted
    folders (with a local RNG: the reference reseeded the global numpy RNG, mdc 16 in
    docs/reference-differences.md#bugs-fixed).
    """
    phase = max(0, phase)
    if seed == 0:
        with open(CLASS100) as f:
            names = f.read().split()
    else:
        names = sorted(e.name for e in os.scandir(train_dir) if e.is_dir())
        names = [names[i] for i in np.random.RandomState(seed).permutation(len(names))]
    block = names[nclass * phase: nclass * (phase + 1)]
    if len(block) < nclass:
        raise UserError(f"only {len(block)} ImageNet classes available for --nclass {nclass} --phase {phase}")
    return block


def imagenet_folder(root, split, nclass, phase=0, seed=0, transform=None, ipc=-1, exclude=None):
    """A torchvision ``DatasetFolder`` restricted to the subset classes, labels in list order. ``ipc > 0``
    keeps the first ``ipc`` samples per class, skipping the positions in ``exclude`` (indices of the whole
    class-major folder: the held-out images of ``held_out_indices``)."""
    import torchvision

    split_dir = os.path.join(root, split)
    if not os.path.isdir(split_dir):
        raise UserError(f"ImageNet folder {split_dir} not found; pass --imagenet_dir with train/ and val/")
    classes = find_subclasses(os.path.join(root, "train"), nclass, phase, seed)
    missing = [c for c in classes if not os.path.isdir(os.path.join(split_dir, c))]
    if missing:
        raise UserError(f"{split_dir} lacks class folders {missing[:3]}...; check --imagenet_dir")

    class Subset(torchvision.datasets.ImageFolder):
        def find_classes(self, directory):
            return classes, {c: i for i, c in enumerate(classes)}

    ds = Subset(split_dir, transform=transform)
    ds.samples = ds.imgs = sorted(ds.samples, key=lambda s: s[1])  # class-major, file order within
    ds.targets = [y for _, y in ds.samples]
    if ipc > 0:  # the first ipc samples per class in file order (MDC reference data.py, ImageFolder)
        keep, count, skip = [], {}, set() if exclude is None else set(exclude.tolist())
        for i, (path, y) in enumerate(ds.samples):
            if i not in skip and count.get(y, 0) < ipc:
                keep.append((path, y))
                count[y] = count.get(y, 0) + 1
        short = [c for c in range(nclass) if count.get(c, 0) < ipc]
        if exclude is not None and short:
            raise too_few_besides_held_out(short[0], count.get(short[0], 0))
        ds.samples = ds.imgs = keep
        ds.targets = [y for _, y in keep]
    return ds


def imagenet_load_transform(size):
    """Resize + CenterCrop + PILToTensor (uint8): the condensation source (MDC reference condense_reg.py,
    load_resized_data)."""
    from torchvision import transforms as T

    return T.Compose([T.Resize(size), T.CenterCrop(size), T.PILToTensor()])


def imagenet_tensors(ds, size, desc="decode"):
    """Decode an ImageNet folder once into uint8 tensors at ``size`` (``--load_memory``)."""
    from tqdm import tqdm

    tf = imagenet_load_transform(size)
    xs = [tf(ds.loader(p)) for p, _ in tqdm(ds.samples, desc=desc, leave=False)]
    return torch.stack(xs), torch.tensor(ds.targets)


def normalise(x, dataset):
    """Float32 ``(x / 255 - mean) / std`` per channel of images ``[N, C, H, W]`` with values in 0..255: ToTensor's
    division then Normalize (MDC reference condense_reg.py, load_resized_data), on a copy (``x`` is left alone), in that
    order, one operation at a time on the CPU."""
    mean, std = mean_std(dataset)
    x = x.to(torch.float32, copy=True).div_(255)
    return x.sub_(torch.tensor(mean).view(1, -1, 1, 1)).div_(torch.tensor(std).view(1, -1, 1, 1))


def byte_table(dataset, nch):
    """``[nch, 256]`` float32: ``normalise`` of every byte value in every channel. An elementwise function of
    (channel, value), so looking a uint8 image up in it gives bit for bit what ``normalise`` gives, on any
    device (``data.loaders.ByteNormalize``)."""
    values = torch.arange(256, dtype=torch.uint8).view(1, 1, 1, 256).expand(1, nch, 1, 256)
    return normalise(values, dataset).view(nch, 256)


def test_tensors(args, compact=False):
    """Test images [N, C, H, W] and labels of a 32/28-px dataset (MDC reference condense_reg.py, load_resized_data).

    By default the images are normalised float32 (``normalise``). ``compact=True`` returns them as stored
    when that is uint8 (every 32/28-px format we read: CIFAR pickles, SVHN .mat, MNIST idx), a quarter of
    the memory, for normalising per batch (``data.loaders.test_loader``); any other dtype is normalised
    as by default, so the caller tells the two apart by the dtype."""
    x, y = load_tensors(args.dataset, args.data_dir, train=False, download=args.download)
    return (compact_or_normalised(x, args.dataset) if compact else normalise(x, args.dataset)), y


def compact_or_normalised(x, dataset):
    """Real images as stored when they are uint8 (normalised per batch by ``data.loaders.ByteNormalize``), else
    ``normalise``d: the two forms ``test_tensors(compact=True)`` returns, told apart by the dtype."""
    return x if x.dtype == torch.uint8 else normalise(x, dataset)
