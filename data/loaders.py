"""Batch iterators (reference he-y/Multisize-Dataset-Condensation/data.py, ClassDataLoader and ClassMemDataLoader).

``TensorLoader`` replaces the reference's ``MultiEpochsDataLoader`` over a ``TensorDataset`` for
in-memory data: a fresh shuffle per epoch, batches of ``batch_size`` with the last one partial,
normalisation done once per batch on the device instead of per sample (identical values); per-sample
ImageNet augmentation on the main thread or in ``--workers`` processes. ``ClassSampler`` is ``ClassMemDataLoader``/``ClassDataLoader``: class-wise real batches
for gradient matching (without replacement within a class epoch), deterministic first-images slices
with ``start_idx`` for initialisation, and all-class batches for the network updates.
``test_loader`` gives the real test set of every evaluation (test.py, in-run evaluations, YOCO dynamics);
``held_out_loader`` the training images ``test.py --val_per_class`` holds out, prepared the same way.
"""
import random
import sys
from concurrent.futures import ThreadPoolExecutor

import torch

from data.datasets import byte_table, compact_or_normalised, held_out_of, imagenet_folder, load_tensors, test_tensors
from training.augment import imagenet_test_transform


class TensorLoader:
    """Shuffled mini-batches of in-memory images. Yields ``(x, y)`` or ``(x, y, idx)``.

    ``images`` are float in [0, 1] (or uint8, turned into [0, 1] per batch); ``transform`` is a batched
    function applied on the device (e.g. ``Normalize``; one with ``takes_uint8 = True``, such as
    ``ByteNormalize``, receives uint8 batches as they are); ``sample_transform`` a per-sample one (ImageNet
    crops/jitter).
    """

    def __init__(self, images, targets, batch_size, shuffle=True, device="cpu", transform=None,
                 sample_transform=None, return_index=False, workers=0):
        self.device = torch.device(device)
        keep_on_cpu = sample_transform is not None
        self.images = images if keep_on_cpu else images.to(self.device)
        self.targets = targets.to(self.device)
        self.batch_size, self.shuffle = batch_size, shuffle
        self.transform, self.sample_transform = transform, sample_transform
        self.return_index = return_index
        self.workers = workers if sample_transform is not None else 0
        self._pool = None

    def __len__(self):
        return (len(self.targets) + self.batch_size - 1) // self.batch_size

    @property
    def dataset_size(self):
        return len(self.targets)

    def __iter__(self):
        """The permutation is drawn on the CPU (CPU and GPU runs see the same batches) and copied to the
        device once per pass; batches are then sliced on the device without a host wait. ``idx`` (with
        ``return_index``) is the CPU slice."""
        n = len(self.targets)
        order = torch.randperm(n) if self.shuffle else torch.arange(n)
        order_dev = order.to(self.device)
        for s in range(0, n, self.batch_size):
            idx, idx_dev = order[s:s + self.batch_size], order_dev[s:s + self.batch_size]
            if self.sample_transform is not None:
                x = self._augment(idx).to(self.device, non_blocking=True)
            else:
                x = self.images[idx_dev]
            if x.dtype == torch.uint8 and not getattr(self.transform, "takes_uint8", False):
                x = x.float().div_(255)
            if self.transform is not None:
                x = self.transform(x)
            y = self.targets[idx_dev]
            yield (x, y, idx) if self.return_index else (x, y)


    def _augment(self, idx):
        """Per-sample transform of a batch: on the main thread (``workers=0``, the default: the global torch
        RNG draws the augmentations, as in a plain loop), else in ``workers`` processes, each with its own
        generator seeded from the global RNG once per pass (reproducible under a seed, but other random
        draws than ``workers=0``). Pinned when the batch goes to a GPU."""
        if not self.workers:
            x = torch.stack([self.sample_transform(self.images[i]) for i in idx.tolist()])
        else:
            if self._pool is None:
                ctx = torch.multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
                self._pool = ctx.Pool(self.workers, initializer=_worker_init, initargs=(self.images, self.sample_transform))
            seeds = torch.randint(0, 2**62, (self.workers,)).tolist()
            chunks = [(seeds[k], idx[k::self.workers]) for k in range(self.workers)]
            parts = self._pool.starmap(_worker_augment, chunks)
            x = torch.empty((len(idx),) + parts[0].shape[1:], dtype=parts[0].dtype)
            for k, part in enumerate(parts):
                x[k::self.workers] = part
        return x.pin_memory() if self.device.type == "cuda" else x

    def close(self):
        if self._pool is not None:
            self._pool.terminate()
            self._pool = None

    def __del__(self):
        self.close()


_WORKER = {}


def _worker_init(images, transform):
    torch.set_num_threads(1)
    _WORKER.update(images=images, transform=transform)


def _worker_augment(seed, idx):
    """One worker's share of a batch, under its own seed (torch, and python's ``random`` that ColorJitter's
    order uses)."""
    torch.manual_seed(seed)
    random.seed(seed)
    return torch.stack([_WORKER["transform"](_WORKER["images"][i]) for i in idx.tolist()])


class ByteNormalize:
    """A ``TensorLoader`` transform normalising a uint8 batch ``[B, C, H, W]`` on its device by table look-up:
    ``table[c, v]`` (``data.datasets.byte_table``) holds the normalised value of byte ``v`` in channel ``c``,
    computed once on the CPU with the arithmetic of the float test set, so the batch equals bit for bit
    the rows of a test set normalised in advance (``data.datasets.normalise``), on any device (a CUDA
    division by a scalar multiplies by its reciprocal instead, which can differ in the last bit)."""

    takes_uint8 = True

    def __init__(self, table, device="cpu"):
        self.table = table.reshape(-1).to(device)
        self.offset = (torch.arange(table.shape[0], device=device) * table.shape[1]).view(1, -1, 1, 1)

    def __call__(self, x):
        return self.table[x.long() + self.offset.to(x.device)]


class ClassSampler:
    """Real training data for condensation, class by class (MDC reference data.py; condense_reg.py;
    docs/algorithms.md#the-condensation-loop).

    ``images`` is a uint8/float tensor (in-memory, ``--load_memory True``) or any indexable dataset
    returning ``(image_tensor, label)`` (streaming). Outputs are float in [0, 1] on ``device``.
    """

    def __init__(self, images, targets, nclass, batch_size, device="cpu", drop_last=False, workers=0):
        self.device = torch.device(device)
        # streaming (ImageNet folders): decode a batch in ``workers`` threads (PIL releases the GIL); the
        # decoding has no randomness, so the batch is the same with any number of threads
        self._decoder = ThreadPoolExecutor(workers) if workers > 0 and not torch.is_tensor(images) else None
        self.drop_last = drop_last
        self.in_memory = torch.is_tensor(images)
        self.images = images.to(self.device) if self.in_memory else images
        self.targets = torch.as_tensor(targets).long()
        self.nclass, self.batch_size = nclass, batch_size
        self.cls_idx = [(self.targets == c).nonzero().flatten() for c in range(nclass)]
        # in-memory data: index queues and labels live on the run device, so drawing a batch never waits
        # for the host; permutations are drawn on the CPU (CPU and GPU runs draw the same batches) and
        # moved once per class epoch / pass
        self.queue_device = self.device if self.in_memory else torch.device("cpu")
        self._targets = self.targets.to(self.queue_device)
        self._cls_idx = [i.to(self.queue_device) for i in self.cls_idx]
        self._cls_queue = [torch.empty(0, dtype=torch.long, device=self.queue_device) for _ in range(nclass)]
        self._all_queue = torch.empty(0, dtype=torch.long, device=self.queue_device)

    def _fetch(self, idx):
        if self.in_memory:
            x = self.images[idx.to(self.device)]
        else:
            decode = lambda i: torch.as_tensor(self.images[i][0])  # noqa: E731
            imgs = self._decoder.map(decode, idx.tolist()) if self._decoder else map(decode, idx.tolist())
            x = torch.stack(list(imgs))
            x = (x.pin_memory() if self.device.type == "cuda" else x).to(self.device, non_blocking=True)
        return x.float().div_(255) if x.dtype == torch.uint8 else x.float()

    def class_indices(self, c, n, start_idx=0):
        """Dataset indices of the deterministic block ``[start_idx·n, (start_idx+1)·n)`` of class c."""
        idx = self.cls_idx[c][start_idx * n:(start_idx + 1) * n]
        if len(idx) < n:
            raise ValueError(f"class {c} has {len(self.cls_idx[c])} images, fewer than block {start_idx} of {n}")
        return idx

    def held_out(self, c, n, generator):
        """``min(n, n_c)`` images of class c at positions drawn by ``generator`` (a fixed batch, e.g. the
        MLS accuracy measure's); the sampler's own queues and the global RNG are not touched."""
        idx = self.cls_idx[c][torch.randperm(len(self.cls_idx[c]), generator=generator)[:n]]
        return self._fetch(idx)

    def class_sample(self, c, ipc=-1, start_idx=0):
        """With ``ipc > 0`` the first-images block (initialisation); otherwise the next random class
        batch of ``min(n_c, batch_size)``, without replacement within a class epoch."""
        if ipc > 0:
            idx = self.class_indices(c, ipc, start_idx)
        else:
            bs = min(len(self.cls_idx[c]), self.batch_size)
            if len(self._cls_queue[c]) < bs:  # drop_last: a new class epoch
                perm = torch.randperm(len(self.cls_idx[c]))
                self._cls_queue[c] = self._cls_idx[c][perm.to(self.queue_device)]
            idx, self._cls_queue[c] = self._cls_queue[c][:bs], self._cls_queue[c][bs:]
        x = self._fetch(idx)
        return x, torch.full((len(idx),), c, dtype=torch.long, device=self.device)

    def sample(self):
        """The next all-class batch of ``batch_size`` from a persistent shuffled pass over the training
        set. Without ``drop_last`` a pass ends with its partial batch (the reference's
        ``ClassMemDataLoader``); with it the remainder is dropped and a new pass starts (the
        ``drop_last=True`` loader of the reference's ``condense_reg_mp.py``)."""
        if len(self._all_queue) < (self.batch_size if self.drop_last else 1):
            self._all_queue = torch.randperm(len(self.targets)).to(self.queue_device)
        idx, self._all_queue = self._all_queue[:self.batch_size], self._all_queue[self.batch_size:]
        return self._fetch(idx), self._targets[idx].to(self.device)

    def batches_per_pass(self):
        """Length of the reference's real-data loader: the most all-class batches one network-update
        or ``early`` epoch takes (ceil(N / batch), floor with ``drop_last``, at least 1)."""
        n = len(self.targets)
        return max(1, n // self.batch_size if self.drop_last else -(-n // self.batch_size))

    def state_dict(self):
        """The queues as CPU tensors: a checkpoint loads on any device."""
        return {"cls_queue": [q.cpu() for q in self._cls_queue], "all_queue": self._all_queue.cpu()}

    def load_state_dict(self, st):
        self._cls_queue = [torch.as_tensor(q).long().to(self.queue_device) for q in st["cls_queue"]]
        self._all_queue = torch.as_tensor(st["all_queue"]).long().to(self.queue_device)


class DeviceLoader:
    """Moves the ``(x, y)`` batches of a torch DataLoader (ImageNet folders) to ``device``."""

    def __init__(self, loader, device):
        self.loader, self.device = loader, device

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        for x, y in self.loader:  # pinned by the loader on CUDA: the copies overlap with compute
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


# Validation batches on the CPU hold at most this many images: a batch of 500 CIFAR images through ConvNet-3
# w128 takes ~570 MB of transient activations (conv and norm outputs of 262 MB each), more than a whole
# training step at batch 64 (~250 MB), and was the peak of an evaluation's memory; 100 take ~110 MB. The
# network's outputs per image do not depend on the batch (checked bitwise with oneDNN), so top-1/top-5
# counts are unchanged and the mean loss differs only by the rounding of the per-batch float32 sums;
# speed per image is the same (benchmarks/eval_memory.py).
CPU_TEST_BATCH = 100


def test_loader(args, device, batch_size, *, workers=0, preload_max=0):
    """The real test set as batches on ``device`` (the validations of MDC's test.py, docs/evaluating.md#protocol,
    and of YOCO's dynamics run, docs/algorithms.md#the-dynamics-run).

    32/28-px datasets: the test set in memory as stored (uint8, a quarter of the float32 size), each batch
    normalised on ``device`` by ``ByteNormalize`` (the values of the float32 test set, bit for bit); on
    the CPU in batches of at most ``CPU_TEST_BATCH``.
    ImageNet: the val folder of the class subset (``--phase``/``--dseed`` when the script has them),
    decoded per access by ``workers`` processes, or decoded once and kept when it has at most
    ``preload_max`` images."""
    if args.dataset == "imagenet":
        return _folder_batches(_eval_folder(args, "val"), device, batch_size, workers, preload_max)
    tx, ty = test_tensors(args, compact=True)
    return _memory_batches(tx, ty, args.dataset, device, batch_size)


def held_out_loader(args, device, batch_size, *, workers=0):
    """The held-out training images of ``test.py --val_per_class K`` (``data.datasets.held_out_of`` of the
    train split, ``--val_seed``; docs/evaluating.md#held-out-validation) as batches on ``device``, prepared
    exactly as the test set of ``test_loader`` (the same normalisation, no augmentation, in a fixed order). The
    ImageNet batches come from a DataLoader with a generator of its own: iterating it draws nothing from the
    global RNG, so the training draws are the same with and without the held-out set."""
    if args.dataset == "imagenet":
        ds = _eval_folder(args, "train")
        idx = held_out_of(args, lambda: ds.targets)
        return _folder_batches(torch.utils.data.Subset(ds, idx.tolist()), device, batch_size, workers,
                               generator=torch.Generator())
    x, y = load_tensors(args.dataset, args.data_dir, train=True, download=args.download)
    idx = held_out_of(args, lambda: y)
    return _memory_batches(compact_or_normalised(x[idx], args.dataset), y[idx], args.dataset, device, batch_size)


def _eval_folder(args, split):
    """An ImageNet split of the class subset with the test transform (resize, centre crop, normalise)."""
    return imagenet_folder(args.imagenet_dir, split, args.nclass, getattr(args, "phase", 0), getattr(args, "dseed", 0),
                           transform=imagenet_test_transform(args.size))


def _folder_batches(ds, device, batch_size, workers, preload_max=0, generator=None):
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, num_workers=workers,
                                     pin_memory=torch.device(device).type == "cuda", generator=generator)
    if len(ds) <= preload_max:
        return [(bx.to(device), by.to(device)) for bx, by in dl]
    return DeviceLoader(dl, device)


def _memory_batches(x, y, dataset, device, batch_size):
    """Fixed-order batches of in-memory real images: uint8 ones normalised per batch by ``ByteNormalize``, float
    ones (already normalised) as they are."""
    norm = ByteNormalize(byte_table(dataset, x.shape[1]), device) if x.dtype == torch.uint8 else None
    if torch.device(device).type == "cpu":
        batch_size = min(batch_size, CPU_TEST_BATCH)
    return TensorLoader(x, y, batch_size, False, device, transform=norm)
