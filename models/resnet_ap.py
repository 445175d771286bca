"""ResNetAP: ResNet with average pooling instead of strided convs (reference
he-y/Multisize-Dataset-Condensation/models/resnet_ap.py; reference he-y/you-only-condense-once/get_training_dynamics.py;
docs/algorithms.md#the-dynamics-run).

All convs have stride 1.  A downsampling block average-pools (kernel = stride = 2) after its first
conv's norm/ReLU; its shortcut is conv1x1 -> AvgPool(stride) -> norm.  Convs carry a bias only for
norm 'sn' or 'none'; 'sn' wraps every conv in spectral norm (torch parametrization) and uses no norm.

Layouts and ``net_size`` as in ``models/resnet.py``: ImageNet (base int(64*width), x2, x4, x8) or
CIFAR (32, 64, 128, 256, n = (depth-2)//6 BasicBlocks per stage; width ignored).  Intro block:
large = Conv7x7/1 -> norm -> ReLU -> AvgPool(4) (224 -> 56); mid = Conv3x3 -> norm -> ReLU ->
AvgPool(2); small = Conv3x3 -> norm -> ReLU.

Bottleneck (depth >= 50, not used by the papers; our choice, spec silent on the pool position):
conv1x1 -> norm -> ReLU -> conv3x3 -> norm -> ReLU -> AvgPool(stride) -> conv1x1 -> norm.

``get_feature`` indices 0..6 and ``embed`` (pooled vector) come from ``ResNetFeatures``.
"""
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils.parametrizations import spectral_norm

from .resnet import ResNetFeatures, init_resnet_weights, make_norm, net_size, stage_plan

NORMS_AP = ("instance", "batch", "sn", "none")


def conv_ap(in_ch, out_ch, k, norm_type):
    """Stride-1 conv; bias only for sn/none; spectral-norm wrapped for sn (MDC reference models/resnet_ap.py,
    ResNetAP)."""
    conv = nn.Conv2d(in_ch, out_ch, k, stride=1, padding=k // 2,
                     bias=norm_type in ("sn", "none"))
    return spectral_norm(conv) if norm_type == "sn" else conv


def _pool(stride):
    return nn.AvgPool2d(stride, stride) if stride > 1 else nn.Identity()


class BasicBlockAP(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride, norm_type):
        super().__init__()
        self.conv1 = conv_ap(in_planes, planes, 3, norm_type)
        self.bn1 = make_norm(norm_type, planes)
        self.pool = _pool(stride)
        self.conv2 = conv_ap(planes, planes, 3, norm_type)
        self.bn2 = make_norm(norm_type, planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(conv_ap(in_planes, planes, 1, norm_type), _pool(stride),
                                          make_norm(norm_type, planes))

    def forward(self, x):
        out = self.pool(F.relu(self.bn1(self.conv1(x))))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class BottleneckAP(nn.Module):
    expansion = 4

    def __init__(self, in_planes, planes, stride, norm_type):
        super().__init__()
        out_planes = planes * self.expansion
        self.conv1 = conv_ap(in_planes, planes, 1, norm_type)
        self.bn1 = make_norm(norm_type, planes)
        self.conv2 = conv_ap(planes, planes, 3, norm_type)
        self.bn2 = make_norm(norm_type, planes)
        self.pool = _pool(stride)
        self.conv3 = conv_ap(planes, out_planes, 1, norm_type)
        self.bn3 = make_norm(norm_type, out_planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != out_planes:
            self.shortcut = nn.Sequential(conv_ap(in_planes, out_planes, 1, norm_type),
                                          _pool(stride), make_norm(norm_type, out_planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.pool(F.relu(self.bn2(self.conv2(out))))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class ResNetAP(ResNetFeatures):
    """ResNetAP(dataset, depth, nclass, width=1.0, norm_type='instance', size=32, nch=3)."""

    def __init__(self, dataset, depth, nclass, width=1.0, norm_type="instance", size=32, nch=3):
        super().__init__()
        if norm_type not in NORMS_AP:
            raise ValueError(f"ResNetAP: unknown norm_type {norm_type!r}; use one of "
                             f"{', '.join(NORMS_AP)}")
        kind, chans, nblocks = stage_plan(dataset, depth, base=int(64 * width))
        if chans[0] < 1:
            raise ValueError(f"ResNetAP: width {width} gives no channels")
        block = BottleneckAP if kind == "bottleneck" else BasicBlockAP
        self.net_size = net_size(dataset, size)
        c0 = chans[0]
        if self.net_size == "large":
            intro = [conv_ap(nch, c0, 7, norm_type), make_norm(norm_type, c0),
                     nn.ReLU(inplace=True), nn.AvgPool2d(4, 4)]
        else:
            intro = [conv_ap(nch, c0, 3, norm_type), make_norm(norm_type, c0), nn.ReLU(inplace=True)]
            if self.net_size == "mid":
                intro.append(nn.AvgPool2d(2, 2))
        self.layer0 = nn.Sequential(*intro)
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


__all__ = ["ResNetAP", "BasicBlockAP", "BottleneckAP", "NORMS_AP"]
