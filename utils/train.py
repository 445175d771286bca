"""Training and evaluation loops shared by every network we train (spec mdc §6 ``train_epoch``/``validate``):
the evaluation protocol (``evaluation.protocol``), the network updates of condensation
(``condensation.loop``) and YOCO's training dynamics (``yoco.dynamics``).
"""
import numpy as np
import torch
import torch.nn.functional as F

from utils.augment import cutmix
from utils.errors import StopTraining


def accuracy(output, target, topk=(1,)):
    """Top-k accuracies in % (spec mdc §4)."""
    maxk = min(max(topk), output.shape[1])
    pred = output.topk(maxk, 1, True, True).indices.t()
    correct = pred.eq(target.view(1, -1))
    return [correct[:min(k, maxk)].reshape(-1).float().sum().item() * 100.0 / target.size(0) for k in topk]


def train_one_epoch(model, loader, optimizer, *, aug=None, mixup="cut", mix_p=0.5, beta=1.0, n_data=-1,
                    scheduler=None, on_batch=None):
    """One pass of ``loader`` (spec mdc §6 ``train_epoch``). Returns (top1, top5, loss) averages.

    Per batch: DSA under no_grad, then with probability ``mix_p`` CutMix
    (loss = r·CE(y) + (1−r)·CE(y_perm)), accuracy against the original labels, SGD step.
    ``scheduler`` is stepped per iteration when given (YOCO dynamics, spec yoco §2.4);
    ``on_batch(iteration, idx, output)`` sees the training forward pass (YOCO's dynamics log),
    which needs a loader yielding ``(x, y, idx)``. Stops after ``n_data`` samples when n_data > 0.
    """
    model.train()
    n_seen, tot_loss, tot1, tot5 = 0, 0.0, 0.0, 0.0
    for it, batch in enumerate(loader):
        x, y = batch[0], batch[1]
        if aug is not None:
            with torch.no_grad():
                x = aug(x)
        r = np.random.rand(1)
        if mixup == "cut" and r < mix_p:
            x, y_a, y_b, ratio = cutmix(x, y, beta)
            out = model(x)
            loss = ratio * F.cross_entropy(out, y_a) + (1 - ratio) * F.cross_entropy(out, y_b)
        else:
            out = model(x)
            loss = F.cross_entropy(out, y)
        if not torch.isfinite(loss):
            raise StopTraining(f"non-finite training loss {loss.item()}; lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if on_batch is not None:
            on_batch(it, batch[2], out.detach())
        b = len(y)
        a1, a5 = accuracy(out.detach(), y, (1, 5))
        tot_loss, tot1, tot5, n_seen = tot_loss + loss.item() * b, tot1 + a1 * b, tot5 + a5 * b, n_seen + b
        if 0 < n_data <= n_seen:
            break
    return tot1 / max(n_seen, 1), tot5 / max(n_seen, 1), tot_loss / max(n_seen, 1)


@torch.no_grad()
def evaluate(model, loader):
    """Top-1, top-5 and mean CE on ``loader`` in eval mode (spec mdc §6 ``validate``).

    On CPU the 4-D weights go channels-last for the pass (oneDNN runs inference ~25% faster,
    benchmarks/eval_epoch.py) and back afterwards; the values are the same up to float rounding.
    """
    model.eval()
    cpu = next(model.parameters()).device.type == "cpu"
    if cpu:
        model.to(memory_format=torch.channels_last)
    n, tot_loss, tot1, tot5 = 0, 0.0, 0.0, 0.0
    try:
        for batch in loader:
            x, y = batch[0], batch[1]
            out = model(x)
            b = len(y)
            a1, a5 = accuracy(out, y, (1, 5))
            tot_loss += F.cross_entropy(out, y, reduction="sum").item()
            tot1, tot5, n = tot1 + a1 * b, tot5 + a5 * b, n + b
    finally:
        if cpu:
            model.to(memory_format=torch.contiguous_format)
    return tot1 / n, tot5 / n, tot_loss / n
