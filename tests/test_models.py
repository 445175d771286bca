"""Tests for models/ and models/flops.py (reference he-y/Multisize-Dataset-Condensation/models/; reference
he-y/you-only-condense-once/get_training_dynamics.py; docs/algorithms.md#the-dynamics-run, #pruned-set-evaluation)."""
import argparse
import math

import pytest
import torch
import torch.nn as nn

from models import MODELS, ModelError, create_model, define_model, register_model
from models.convnet import ConvNet
from utils.errors import UserError
from models.flops import count_flops, train_step_flops


def _x(b, c, s):
    torch.manual_seed(0)
    return torch.randn(b, c, s, s)


# ---------------------------------------------------------------- ConvNet (MDC reference models/convnet.py, ConvNet)
def test_convnet3_shapes_32px():
    m = create_model("convnet", nclass=10, nch=3, size=32)
    x = _x(2, 3, 32)
    assert m(x).shape == (2, 10)
    (f,) = m.get_feature(x, 2)
    assert f.shape == (2, 128, 4, 4)
    feats = m.get_feature(x, 0, 2)
    assert [tuple(t.shape) for t in feats] == [(2, 128, 16, 16), (2, 128, 8, 8), (2, 128, 4, 4)]
    assert torch.allclose(feats[2], f)
    assert m.embed(x).shape == (2, 2048)
    assert torch.allclose(m.classifier(m.embed(x)), m(x), atol=1e-6)


def test_convnet_28px_one_channel():
    m = create_model("convnet", nclass=10, nch=1, size=28, dataset="mnist")
    assert m.layers["conv"][0].padding == (3, 3) and m.layers["conv"][1].padding == (1, 1)
    x = _x(2, 1, 28)
    assert m(x).shape == (2, 10)
    assert m.get_feature(x, 0)[0].shape == (2, 128, 16, 16)  # 28 + 6 - 2 = 32 -> pool 16
    assert m.classifier.in_features == 2048


@pytest.mark.parametrize("norm", ["instance", "batch", "layer", "group", "none"])
def test_convnet_norms(norm):
    m = ConvNet(10, 3, 32, 3, norm, (32, 32))
    x = _x(2, 3, 32)
    assert m(x).shape == (2, 10)
    assert m.get_feature(x, 1, 2)[1].shape == (2, 32, 4, 4)  # works for 'none' too (mdc 10 in
    # docs/reference-differences.md#bugs-fixed)


def test_convnet_none_has_no_norm_params_and_sn_rejected():
    m = ConvNet(10, 3, 128, 3, "none", (32, 32))
    assert not any("norm" in n for n, _ in m.named_parameters())
    with pytest.raises(ValueError):
        ConvNet(10, 3, 128, 3, "sn", (32, 32))
    with pytest.raises(ValueError):
        m.get_feature(_x(1, 3, 32), 3)


def test_convnet3_param_count_and_order():
    m = create_model("convnet", nclass=10, nch=3, size=32)
    w = 128
    conv = (3 * 9 * w + w) + 2 * (w * 9 * w + w)
    norm = 3 * 2 * w
    fc = w * 4 * 4 * 10 + 10
    assert sum(p.numel() for p in m.parameters()) == conv + norm + fc == 320010
    names = [n for n, _ in m.named_parameters()]
    expect = ([f"layers.conv.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
              + [f"layers.norm.{i}.{k}" for i in range(3) for k in ("weight", "bias")]
              + ["classifier.weight", "classifier.bias"])
    assert names == expect  # MDC reference models/convnet.py, ConvNet


def test_convnet_param_dims_split():
    # MDC reference matchloss.py, matchloss; docs/algorithms.md#matching-loss: by default only the 3 conv kernels (4-D)
    # are matched, 1-D/2-D are skipped
    m = create_model("convnet", nclass=10)
    dims = [p.dim() for p in m.parameters()]
    assert dims.count(4) == 3 and dims.count(2) == 1 and dims.count(1) == 3 + 6 + 1
    assert [i for i, d in enumerate(dims) if d == 4] == [0, 2, 4]


def test_convnet_width_and_depth_rule():
    m = create_model("convnet", nclass=100, depth=10, width=0.5)  # depth > 4 -> 3 (MDC reference argument.py)
    assert m.net_depth == 3 and m.net_width == 64
    assert create_model("convnet", nclass=10, depth=4).net_depth == 4


# ---------------------------------------------------------------- ResNetAP / ResNet / DenseNet
def test_resnet_ap10_imagenet_224():
    m = create_model("resnet_ap", nclass=10, size=224, depth=10, dataset="imagenet")
    assert m.net_size == "large"
    x = _x(1, 3, 224)
    with torch.no_grad():
        feats = m.get_feature(x, 0, 6)
    shapes = [tuple(f.shape) for f in feats]
    assert shapes == [(1, 64, 56, 56), (1, 64, 56, 56), (1, 128, 28, 28), (1, 256, 14, 14),
                      (1, 512, 7, 7), (1, 512), (1, 10)]
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert len(convs) == 1 + 4 * 2 + 3 and all(c.stride == (1, 1) and c.bias is None for c in convs)
    assert sum(p.dim() == 4 for p in m.parameters()) == 12  # incl. 1x1 shortcuts (MDC reference matchloss.py,
    # matchloss; docs/algorithms.md#matching-loss)


def test_resnet_ap_cifar_layout_and_init():
    m = create_model("resnet10_ap", nclass=10, size=32, dataset="cifar10")
    assert m.net_size == "small" and m.fc.in_features == 256
    x = _x(2, 3, 32)
    assert m(x).shape == (2, 10) and m.embed(x).shape == (2, 256)
    assert m.get_feature(x, 4)[0].shape == (2, 256, 4, 4)
    w = m.layer4[0].conv2.weight  # 256x256x3x3: std ~ sqrt(2 / (9 * 256))
    assert abs(w.std().item() / math.sqrt(2 / (9 * 256)) - 1) < 0.02
    gn = m.layer4[0].bn2
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 256
    assert torch.all(gn.weight == 1) and torch.all(gn.bias == 0)
    m1 = create_model("resnet10_ap", nclass=10, nch=1, size=28, dataset="mnist")
    assert m1(_x(2, 1, 28)).shape == (2, 10)


def test_resnet_ap_sn_and_none_use_conv_bias():
    for norm in ("sn", "none"):
        m = create_model("resnet_ap", nclass=10, depth=10, norm_type=norm)
        assert m.layer0[0].bias is not None
        assert m(_x(2, 3, 32)).shape == (2, 10)


def test_resnet10_bn_cifar():
    m = create_model("resnet10_bn", nclass=10, size=32, dataset="cifar10")
    assert [len(getattr(m, f"layer{i}")) for i in range(1, 5)] == [1, 1, 1, 1]
    assert m.layer2[0].conv1.stride == (2, 2) and m.layer2[0].shortcut[0].stride == (2, 2)
    assert isinstance(m.layer1[0].bn1, nn.BatchNorm2d) and m.layer0[0].out_channels == 32
    assert m(_x(2, 3, 32)).shape == (2, 10)
    m1 = create_model("resnet10_in", nclass=10, nch=1, size=28, dataset="fashion")
    assert isinstance(m1.layer1[0].bn1, nn.GroupNorm) and m1(_x(2, 1, 28)).shape == (2, 10)
    assert len(create_model("resnet18_bn", nclass=10).layer3) == 2
    with pytest.raises(ValueError):
        create_model("resnet", nclass=10, depth=10, norm_type="none")


def test_resnet18_imagenet_matches_known_size():
    m = create_model("resnet", nclass=1000, depth=18, norm_type="batch", size=224, dataset="imagenet")
    assert sum(p.numel() for p in m.parameters()) == 11689512  # the standard ResNet-18


def test_densenet_cifar():
    m = create_model("densenet", nclass=10)
    assert m.conv1.out_channels == 24 and m.linear.in_features == 384
    assert len(m.dense1) == 6 and len(m.dense4) == 16
    assert m(_x(1, 3, 32)).shape == (1, 10)
    m1 = create_model("densenet", nclass=10, nch=1, size=28, dataset="mnist")
    assert m1(_x(1, 1, 28)).shape == (1, 10)


# ---------------------------------------------------------------- registry (MDC reference train.py)
def test_registry_names_and_errors():
    for name in ("convnet", "resnet_ap", "resnet", "densenet", "resnet10_bn", "resnet10_in",
                 "resnet18_bn", "resnet10_ap", "convnet3"):
        assert name in MODELS
    with pytest.raises(ValueError) as e:
        create_model("vgg11", nclass=10)
    assert "convnet" in str(e.value) and "resnet10_ap" in str(e.value)
    assert isinstance(e.value, UserError) and isinstance(e.value, ModelError)
    with pytest.raises(ValueError):
        register_model("convnet")(lambda **kw: None)
    with pytest.raises(ModelError):  # constructor errors are wrapped too
        create_model("resnet_ap", nclass=10, depth=3)


def test_define_model():
    args = argparse.Namespace(net_type="convnet", depth=10, width=1.0, norm_type="instance",
                              size=32, nch=3, dataset="cifar10")
    m = define_model(args, 100)
    assert isinstance(m, ConvNet) and m.net_depth == 3 and m.classifier.out_features == 100
    args.net_type, args.size, args.dataset = "resnet_ap", 224, "imagenet"
    m = define_model(args, 10)
    assert m.net_size == "large" and m.fc.in_features == 512
    args.net_type = "efficient"
    with pytest.raises(ValueError):
        define_model(args, 10)


# ---------------------------------------------------------------- flops
def test_flops_convnet3_by_hand():
    m = create_model("convnet3", nclass=10)
    macs = (128 * 32 * 32 * 3 * 9) + (128 * 16 * 16 * 128 * 9) + (128 * 8 * 8 * 128 * 9) + 2048 * 10
    assert count_flops(m, (1, 3, 32, 32)) == 2 * macs == 101490688
    assert count_flops(m, (2, 3, 32, 32)) == 4 * macs
    assert train_step_flops(m, (1, 3, 32, 32)) == 6 * macs
    m.train()
    count_flops(m, (1, 3, 32, 32))
    assert m.training  # mode restored


def test_flops_linear_and_grouped_conv():
    assert count_flops(nn.Linear(7, 5), (3, 7)) == 2 * 3 * 7 * 5
    conv = nn.Conv2d(8, 8, 3, padding=1, groups=4)
    assert count_flops(conv, (1, 8, 4, 4)) == 2 * (8 * 4 * 4) * 2 * 9
