"""Analytic FLOP counts for compute reporting (DESIGN.md ``models/flops.py``).

Convention: one multiply-accumulate (MAC) = 2 FLOPs.  Only ``nn.Conv2d`` and ``nn.Linear`` are
counted (they dominate); biases, norms, activations, pooling and additions are ignored.
* Conv2d: 2 * out.numel() * (in_channels / groups) * k_h * k_w
* Linear: 2 * out.numel() * in_features
A training step (forward + backward) is counted as 3x the forward FLOPs (the backward pass costs
about 2x the forward: gradients w.r.t. inputs and w.r.t. weights).
"""
import torch
import torch.nn as nn


def _conv_flops(m, out):
    k_h, k_w = m.kernel_size
    return 2 * out.numel() * (m.in_channels // m.groups) * k_h * k_w


def _linear_flops(m, out):
    return 2 * out.numel() * m.in_features


def count_flops(model, input_shape, device=None):
    """Forward FLOPs of one forward pass of a zero batch of ``input_shape`` (e.g. (B, C, H, W)).

    ``device`` defaults to the device of the model's first parameter (cpu if it has none).  The
    model runs in eval mode under ``no_grad``; its train/eval mode is restored afterwards.
    """
    if device is None:
        p = next(model.parameters(), None)
        device = p.device if p is not None else torch.device("cpu")
    total = [0]
    handles = []

    def hook(m, inp, out):
        total[0] += _conv_flops(m, out) if isinstance(m, nn.Conv2d) else _linear_flops(m, out)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return int(total[0])


def train_step_flops(model, input_shape, device=None):
    """FLOPs of one training step (forward + backward) on a batch of ``input_shape``: 3x forward."""
    return 3 * count_flops(model, input_shape, device=device)


__all__ = ["count_flops", "train_step_flops"]
