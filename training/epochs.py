"""Training and evaluation loops shared by every network we train (reference
he-y/Multisize-Dataset-Condensation/train.py, train_epoch and validate):
the evaluation protocol (``evaluation.protocol``), the network updates of condensation
(``condensation.loop``) and YOCO's training dynamics (``yoco.dynamics``).
"""
import contextlib

import numpy as np
import torch
import torch.nn.functional as F

from training.augment import cutmix
from utils.errors import StopTraining


def correct_counts(output, target, topk=(1, 5)):
    """Number of top-k hits for each k (the reference's ``accuracy``, MDC reference misc/utils.py, accuracy, before it
    divides), as one tensor on the output's device: no host wait."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, 1, True, True).indices.t()
    correct = pred.eq(target.view(1, -1))
    return torch.stack([correct[:min(k, maxk)].sum() for k in topk])


def train_one_epoch(model, loader, optimizer, *, aug=None, mixup="cut", mix_p=0.5, beta=1.0, n_data=-1,
                    scheduler=None, on_batch=None, metrics=True, amp=contextlib.nullcontext):
    """One pass of ``loader`` (MDC reference train.py, train_epoch). Returns (top1, top5, loss) averages, or None
    with ``metrics=False``, or with ``metrics="device"`` the unread sums [Σ loss·b, top-1 hits, top-5 hits] on
    the device and the sample count (condensation's network updates: the loop reads them with its loss).

    Per batch: DSA under no_grad, then with probability ``mix_p`` CutMix
    (loss = r·CE(y) + (1−r)·CE(y_perm)), accuracy against the original labels, SGD step.
    ``scheduler`` is stepped per iteration when given (YOCO dynamics, reference
    he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#the-dynamics-run);
    ``on_batch(iteration, idx, output)`` sees the training forward pass (YOCO's dynamics log),
    which needs a loader yielding ``(x, y, idx)``. Stops after ``n_data`` samples when n_data > 0.
    ``amp``: the context of the forward pass and loss (``training.precision.autocast``; backward outside it).

    No host wait per batch: losses, hit counts and the finiteness of the losses accumulate on the device
    and are read once at the end of the pass (a non-finite loss stops training there: StopTraining).
    """
    model.train()
    n_seen, finite = 0, None
    sums = None  # [Σ loss·b, top-1 hits, top-5 hits] on the device
    for it, batch in enumerate(loader):
        x, y = batch[0], batch[1]
        if aug is not None:
            with torch.no_grad():
                x = aug(x)
        r = np.random.rand(1)
        if mixup == "cut" and r < mix_p:
            x, y_a, y_b, ratio = cutmix(x, y, beta)
            with amp():
                out = model(x)
                loss = ratio * F.cross_entropy(out, y_a) + (1 - ratio) * F.cross_entropy(out, y_b)
        else:
            with amp():
                out = model(x)
                loss = F.cross_entropy(out, y)
        ok = torch.isfinite(loss.detach())
        finite = ok if finite is None else finite & ok
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if on_batch is not None:
            on_batch(it, batch[2], out.detach())
        b = len(y)
        if metrics:
            part = torch.cat([(loss.detach().double() * b).view(1), correct_counts(out.detach(), y).double()])
            sums = part if sums is None else sums + part
        n_seen += b
        if 0 < n_data <= n_seen:
            break
    if finite is not None and not bool(finite):
        raise StopTraining("non-finite training loss; lower --lr")
    if not metrics:
        return None
    if metrics == "device":
        return sums, n_seen
    if sums is None:
        return 0.0, 0.0, 0.0
    loss_sum, c1, c5 = sums.tolist()
    return c1 * 100.0 / n_seen, c5 * 100.0 / n_seen, loss_sum / n_seen


@torch.no_grad()
def evaluate(model, loader, amp=contextlib.nullcontext):
    """Top-1, top-5 and mean CE on ``loader`` in eval mode (MDC reference train.py, validate).

    On CPU the 4-D weights go channels-last for the pass (oneDNN runs inference ~25% faster,
    benchmarks/eval_epoch.py) and back afterwards; the values are the same up to float rounding.
    """
    model.eval()
    cpu = next(model.parameters()).device.type == "cpu"
    if cpu:
        model.to(memory_format=torch.channels_last)
    n, sums = 0, None  # [Σ CE, top-1 hits, top-5 hits] on the device, read once
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            with amp():
                out = model(x)
            out = out.float()
            part = torch.cat([F.cross_entropy(out, y, reduction="sum").double().view(1),
                              correct_counts(out, y).double()])
            sums = part if sums is None else sums + part
            n += len(y)
    finally:
        if cpu:
            model.to(memory_format=torch.contiguous_format)
    tot_loss, c1, c5 = sums.tolist()
    return c1 * 100.0 / n, c5 * 100.0 / n, tot_loss / n
