"""DenseNet-BC for 32-px images, ``densenet_cifar`` (reference
he-y/Multisize-Dataset-Condensation/models/densenet_cifar.py; reference he-y/you-only-condense-once/test.py;
docs/algorithms.md#pruned-set-evaluation).

Growth rate 12, dense blocks [6, 12, 24, 16] of bottleneck layers
(BN -> ReLU -> Conv1x1(4*growth) -> BN -> ReLU -> Conv3x3(growth), output concatenated in front of the
input), transitions BN -> ReLU -> Conv1x1(floor(C * 0.5)) -> AvgPool(2), stem Conv3x3(nch -> 2*growth),
final BN -> ReLU -> average pool -> Linear.  Convs have no bias; PyTorch default initialisation.
Channels: 24 -> 96 -> 48 -> 192 -> 96 -> 384 -> 192 -> 384 -> Linear(384, nclass).

Extensions (documented): the stem takes ``nch`` input channels (upstream: 3 only), and the final
pooling is a global adaptive average pool, identical to upstream's avg-pool 4 on the 4x4 map of a
32-px input, and also valid for the 3x3 map of a 28-px (MNIST / Fashion) input.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from training.determinism import global_avg_pool


class DenseBottleneck(nn.Module):
    def __init__(self, in_planes, growth_rate):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        return torch.cat([out, x], 1)


class Transition(nn.Module):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, 1, bias=False)

    def forward(self, x):
        return F.avg_pool2d(self.conv(F.relu(self.bn(x))), 2)


class DenseNet(nn.Module):
    """DenseNet(nblocks, growth_rate=12, reduction=0.5, nclass=10, nch=3)."""

    def __init__(self, nblocks=(6, 12, 24, 16), growth_rate=12, reduction=0.5, nclass=10, nch=3):
        super().__init__()
        planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(nch, planes, 3, padding=1, bias=False)
        for i, n in enumerate(nblocks):
            layers = []
            for _ in range(n):
                layers.append(DenseBottleneck(planes, growth_rate))
                planes += growth_rate
            setattr(self, f"dense{i + 1}", nn.Sequential(*layers))
            if i < len(nblocks) - 1:
                out_planes = int(math.floor(planes * reduction))
                setattr(self, f"trans{i + 1}", Transition(planes, out_planes))
                planes = out_planes
        self.nstages = len(nblocks)
        self.bn = nn.BatchNorm2d(planes)
        self.num_feat = planes
        self.linear = nn.Linear(planes, nclass)

    def embed(self, x):
        """Pooled feature vector [B, 384] (before the classifier)."""
        out = self.conv1(x)
        for i in range(1, self.nstages + 1):
            out = getattr(self, f"dense{i}")(out)
            if i < self.nstages:
                out = getattr(self, f"trans{i}")(out)
        out = F.relu(self.bn(out))
        return global_avg_pool(out).flatten(1)

    def forward(self, x):
        return self.linear(self.embed(x))


def densenet_cifar(nclass=10, nch=3):
    """DenseNet-BC, growth 12, blocks [6, 12, 24, 16], reduction 0.5 (MDC reference models/densenet_cifar.py)."""
    return DenseNet((6, 12, 24, 16), growth_rate=12, reduction=0.5, nclass=nclass, nch=nch)


__all__ = ["DenseNet", "densenet_cifar"]
