"""Standard ResNet with strided convs (reference he-y/Multisize-Dataset-Condensation/models/resnet.py; reference
he-y/you-only-condense-once/test.py; docs/algorithms.md#pruned-set-evaluation), plus helpers shared with ResNetAP.

Two layouts (MDC reference models/resnet_ap.py, ResNetAP; models/resnet.py, ResNet):
* ImageNet (dataset name starting with 'imagenet'): channels 64, 128, 256, 512 (x4 for
  Bottleneck), blocks per stage from ``IMAGENET_BLOCKS``, strides 1, 2, 2, 2.
* CIFAR (every other dataset: cifar*, svhn, mnist, fashion): channels 32, 64, 128, 256,
  n = (depth - 2) // 6 BasicBlocks per stage, strides 1, 2, 2, 2 (depth 10 -> 1 block per stage).
The intro block follows the size rule of ``net_size`` (small / mid / large).

Extension (documented): the final pooling is a global adaptive average pool, which equals the
upstream fixed-size pool for the supported sizes (e.g. 4x4 for 32 px, 7x7 for 224 px) and also
works for 28-px inputs.

Module layout: ``layer0`` (intro), ``layer1``..``layer4``, ``fc``.  ``get_feature`` indices: 0 =
intro output, 1-4 = layer1-4 outputs, 5 = pooled vector, 6 = logits (MDC reference models/resnet_ap.py, ResNetAP).
"""
import math

import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from training.determinism import global_avg_pool

IMAGENET_BLOCKS = {10: [1, 1, 1, 1], 18: [2, 2, 2, 2], 34: [3, 4, 6, 3], 50: [3, 4, 6, 3],
                   101: [3, 4, 23, 3], 152: [3, 8, 36, 3], 200: [3, 24, 36, 3]}
BOTTLENECK_MIN_DEPTH = 50  # MDC reference models/resnet_ap.py, ResNetAP: 10/18/34 BasicBlock, 50 and deeper Bottleneck


def net_size(dataset, size):
    """'small' if cifar or size <= 64, 'mid' if size <= 128, else 'large' (MDC reference models/resnet_ap.py,
    ResNetAP)."""
    if "cifar" in dataset or size <= 64:
        return "small"
    return "mid" if size <= 128 else "large"


def is_imagenet(dataset):
    return dataset.startswith("imagenet")


def make_norm(norm_type, ch):
    """instance = GroupNorm(C, C); batch = BatchNorm2d; sn / none = identity (MDC reference models/resnet_ap.py,
    ResNetAP)."""
    if norm_type == "instance":
        return nn.GroupNorm(ch, ch, affine=True)
    if norm_type == "batch":
        return nn.BatchNorm2d(ch)
    if norm_type in ("sn", "none"):
        return nn.Identity()
    raise ValueError(f"unknown norm_type {norm_type!r}; use instance, batch, sn or none")


def init_resnet_weights(model):
    """Conv weight ~ N(0, sqrt(2 / (k_h*k_w*out))); norm weight 1, bias 0; Linear default (MDC reference
    models/resnet_ap.py, ResNetAP)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            n = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            w = (m.parametrizations.weight.original if parametrize.is_parametrized(m, "weight")
                 else m.weight)
            nn.init.normal_(w, 0.0, math.sqrt(2.0 / n))
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResNetFeatures(nn.Module):
    """Shared forward / embed / get_feature for ResNet and ResNetAP."""

    def _trunk(self):
        return [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]

    def embed(self, x):
        """Globally pooled last-stage feature vector [B, C_final]."""
        for stage in self._trunk():
            x = stage(x)
        return global_avg_pool(x).flatten(1)

    def forward(self, x):
        return self.fc(self.embed(x))

    def get_feature(self, x, idx_from, idx_to=-1):
        """List of outputs for indices idx_from..idx_to (idx_to = -1: just idx_from), MDC reference models/resnet_ap.py,
        ResNetAP."""
        if idx_to == -1:
            idx_to = idx_from
        if not 0 <= idx_from <= idx_to <= 6:
            raise ValueError(f"get_feature: need 0 <= idx_from <= idx_to <= 6, "
                             f"got ({idx_from}, {idx_to})")
        stages = self._trunk() + [lambda t: global_avg_pool(t).flatten(1), self.fc]
        feats = []
        for i in range(idx_to + 1):
            x = stages[i](x)
            if i >= idx_from:
                feats.append(x)
        return feats


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride, norm_type):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = make_norm(norm_type, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = make_norm(norm_type, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:  # strided 1x1 shortcut (MDC reference models/resnet.py, ResNet)
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), make_norm(norm_type, planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride, norm_type):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = make_norm(norm_type, planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = make_norm(norm_type, planes)
        self.conv3 = nn.Conv2d(planes, out_planes, 1, bias=False)
        self.bn3 = make_norm(norm_type, out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                make_norm(norm_type, out_planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def stage_plan(dataset, depth, base=64):
    """(block kind, channels per stage, blocks per stage) for the layout of ``dataset``."""
    if is_imagenet(dataset):
        if depth not in IMAGENET_BLOCKS:
            raise ValueError(f"ResNet depth {depth} not supported for ImageNet; use one of "
                             f"{sorted(IMAGENET_BLOCKS)}")
        kind = "bottleneck" if depth >= BOTTLENECK_MIN_DEPTH else "basic"
        return kind, [base, base * 2, base * 4, base * 8], IMAGENET_BLOCKS[depth]
    n = (depth - 2) // 6  # CIFAR layout, width ignored (MDC reference models/resnet_ap.py, ResNetAP)
    if n < 1:
        raise ValueError(f"ResNet depth {depth} too small for the CIFAR layout (need >= 8)")
    return "basic", [32, 64, 128, 256], [n, n, n, n]


class ResNet(ResNetFeatures):
    """ResNet(dataset, depth, nclass, norm_type='batch', size=32, nch=3) (MDC reference models/resnet.py, ResNet)."""

    def __init__(self, dataset, depth, nclass, norm_type="batch", size=32, nch=3):
        super().__init__()
        if norm_type not in ("batch", "instance"):
            raise ValueError(f"ResNet: norm_type must be batch or instance, got {norm_type!r}")
        kind, chans, nblocks = stage_plan(dataset, depth)
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.net_size = net_size(dataset, size)
        c0 = chans[0]
        if self.net_size == "large":  # 7x7/2 + maxpool (MDC reference models/resnet.py, ResNet)
            self.layer0 = nn.Sequential(
                nn.Conv2d(nch, c0, 7, stride=2, padding=3, bias=False), make_norm(norm_type, c0),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        elif self.net_size == "mid":
            self.layer0 = nn.Sequential(
                nn.Conv2d(nch, c0, 3, padding=1, bias=False), make_norm(norm_type, c0),
                nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        else:
            self.layer0 = nn.Sequential(
                nn.Conv2d(nch, c0, 3, padding=1, bias=False), make_norm(norm_type, c0),
                nn.ReLU(inplace=True))
        in_planes = c0
        for i, (c, n, s) in enumerate(zip(chans, nblocks, [1, 2, 2, 2])):
            blocks = []
            for j in range(n):
                blocks.append(block(in_planes, c, s if j == 0 else 1, norm_type))
                in_planes = c * block.expansion
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.num_feat = in_planes
        self.fc = nn.Linear(in_planes, nclass)
        init_resnet_weights(self)


__all__ = ["ResNet", "BasicBlock", "Bottleneck", "ResNetFeatures", "net_size", "is_imagenet",
           "make_norm", "init_resnet_weights", "stage_plan", "IMAGENET_BLOCKS"]
