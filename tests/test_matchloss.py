"""Matching losses (reference he-y/Multisize-Dataset-Condensation/matchloss.py; reg_ipcx.py;
docs/algorithms.md#matching-loss): distances, gradient matching, fast subset path."""
import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError
from condensation.matchloss import (dist, feat_match_loss, feature_distances, feature_distances_from_feats,
                             grad_match_loss, is_per_sample, matched_params, matchloss, parse_f_idx)


class TinyNet(nn.Module):
    """ConvNet-like: [conv3x3(bias) -> norm -> relu -> avgpool] x depth -> linear; get_feature."""

    def __init__(self, nch=2, width=4, depth=2, size=8, nclass=3, norm="instance"):
        super().__init__()
        self.convs, self.norms = nn.ModuleList(), nn.ModuleList()
        for d in range(depth):
            self.convs.append(nn.Conv2d(nch if d == 0 else width, width, 3, padding=1))
            self.norms.append(nn.GroupNorm(width, width) if norm == "instance" else nn.BatchNorm2d(width))
        self.fc = nn.Linear(width * (size // 2 ** depth) ** 2, nclass)

    def get_feature(self, x, idx_from, idx_to=-1):
        idx_to = idx_from if idx_to == -1 else idx_to
        out = []
        for d in range(idx_to + 1):
            x = F.avg_pool2d(F.relu(self.norms[d](self.convs[d](x))), 2)
            if d >= idx_from:
                out.append(x)
        return out

    def forward(self, x):
        return self.fc(self.get_feature(x, len(self.convs) - 1)[0].flatten(1))


def _data(n_real=6, n_syn=12, nch=2, size=8, nclass=3, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    real = torch.randn(n_real, nch, size, size, generator=g, dtype=dtype)
    syn = torch.randn(n_syn, nch, size, size, generator=g, dtype=dtype).requires_grad_(True)
    yr = torch.full((n_real,), 1, dtype=torch.long)
    ys = torch.full((n_syn,), 1, dtype=torch.long)
    return real, yr, syn, ys


def _model(dtype=torch.float64, **kw):
    torch.manual_seed(0)
    return TinyNet(**kw).to(dtype).train()


# ---- dist (MDC reference matchloss.py, dist and matchloss; docs/algorithms.md#matching-loss) -------------------------
def test_dist_values_by_hand():
    x = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    y = torch.tensor([[0.0, 2.0], [1.0, 1.0]])
    assert dist(x, y, "mse").item() == pytest.approx(1 + 0 + 4 + 9)
    assert dist(x, y, "l1").item() == pytest.approx(6.0)
    assert dist(x, y, "l1_mean").item() == pytest.approx(0.5 + 2.5)
    cos = (1 - 4 / (math.sqrt(5) * 2 + 1e-6)) + (1 - 7 / (5 * math.sqrt(2) + 1e-6))
    assert dist(x, y, "cos").item() == pytest.approx(cos, rel=1e-6)
    assert dist(x, x, "cos").item() == pytest.approx(2 * (1 - 1 / (1 + 1e-6 / 5)), abs=1e-6)
    with pytest.raises(UserError, match="not implemented"):
        dist(x, y, "l2")
    with pytest.raises(UserError):
        dist(x, y, "huber")


def test_matched_params_selection():
    m = TinyNet()
    assert [p.shape for p in matched_params(m)] == [m.convs[0].weight.shape, m.convs[1].weight.shape]
    with_bias = matched_params(m, bias=True)
    assert len(with_bias) == 2 + 2 + 4 + 1  # conv kernels, conv biases, norm affine, fc bias
    assert any(p is m.fc.weight for p in matched_params(m, fc=True))
    assert [id(p) for p in matched_params(m, True, True)] == [id(p) for p in m.parameters()]


# ---- gradient matching (MDC reference matchloss.py, matchloss; reg_ipcx.py, grad_loss_for_img_update;
# docs/algorithms.md#matching-loss) ----
class Linear1x1(nn.Module):
    """logits = W x for 1x1 'images': a 1x1 conv with a 4-D kernel, no bias."""

    def __init__(self, nch, nclass):
        super().__init__()
        self.conv = nn.Conv2d(nch, nclass, 1, bias=False)

    def forward(self, x):
        return self.conv(x).flatten(1)


def test_grad_matching_by_hand_linear_model():
    """CE gradient of a linear model: ∇W = mean_i (softmax(W x_i) − e_{y_i}) x_iᵀ."""
    torch.manual_seed(1)
    m = Linear1x1(3, 4).double()
    real = torch.randn(5, 3, 1, 1, dtype=torch.float64)
    syn = torch.randn(6, 3, 1, 1, dtype=torch.float64)
    yr, ys = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([2, 2, 1, 0, 3, 1])
    W = m.conv.weight.detach()[:, :, 0, 0]

    def hand_grad(x, y):
        x = x[:, :, 0, 0]
        err = torch.softmax(x @ W.T, 1) - F.one_hot(y, 4).double()
        return err.T @ x / len(x)

    g_r, g_s, g_3 = hand_grad(real, yr), hand_grad(syn, ys), hand_grad(syn[:3], ys[:3])
    expect = ((g_r - g_s) ** 2).sum() + ((g_r - g_3) ** 2).sum()
    for fast in (False, None):
        got = grad_match_loss(m, real, yr, syn, ys, matched_params(m), "mse", subsets=[3], fast=fast)
        assert got.item() == pytest.approx(expect.item(), rel=1e-10)
    l1 = grad_match_loss(m, real, yr, syn, ys, matched_params(m), "l1")
    assert l1.item() == pytest.approx((g_r - g_s).abs().sum().item(), rel=1e-10)


def _naive_loss(m, real, yr, syn, ys, subsets):
    """Independent computation: per-sample gradients averaged by hand, explicit sums of squares."""
    params = matched_params(m)

    def mean_grad(x, y, create):
        gs = [torch.autograd.grad(F.cross_entropy(m(x[i:i + 1]), y[i:i + 1]), params,
                                  create_graph=create) for i in range(len(x))]
        return [sum(g[j] for g in gs) / len(x) for j in range(len(params))]

    g_r = [g.detach() for g in mean_grad(real, yr, False)]
    total = sum(((a - b) ** 2).sum() for a, b in zip(g_r, mean_grad(syn, ys, True)))
    for n in subsets:
        total = total + sum(((a - b) ** 2).sum() for a, b in zip(g_r, mean_grad(syn[:n], ys[:n], True)))
    return total


@pytest.mark.parametrize("fast", [False, None])
def test_grad_matching_vs_naive_per_sample_and_finite_difference(fast):
    m = _model()
    real, yr, syn, ys = _data()
    loss = grad_match_loss(m, real, yr, syn, ys, matched_params(m), "mse", subsets=[4], fast=fast)
    (grad,) = torch.autograd.grad(loss, syn)
    naive = _naive_loss(m, real, yr, syn, ys, [4])
    (grad_naive,) = torch.autograd.grad(naive, syn)
    assert loss.item() == pytest.approx(naive.item(), rel=1e-9)
    assert torch.allclose(grad, grad_naive, rtol=1e-7, atol=1e-12)
    # central finite differences on a few pixels (float64)
    eps = 1e-6
    for idx in [(0, 0, 1, 2), (3, 1, 4, 4), (7, 0, 7, 0)]:
        s_p, s_m = syn.detach().clone(), syn.detach().clone()
        s_p[idx] += eps
        s_m[idx] -= eps
        lp = grad_match_loss(m, real, yr, s_p, ys, matched_params(m), "mse", subsets=[4], fast=fast)
        lm = grad_match_loss(m, real, yr, s_m, ys, matched_params(m), "mse", subsets=[4], fast=fast)
        fd = (lp.item() - lm.item()) / (2 * eps)
        assert fd == pytest.approx(grad[idx].item(), rel=1e-4, abs=1e-9)


def _loss_and_grad(m, real, yr, syn, ys, **kw):
    syn = syn.detach().clone().requires_grad_(True)
    loss = grad_match_loss(m, real, yr, syn, ys, matched_params(m), "mse", **kw)
    loss.backward()
    return loss.item(), syn.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("subsets,frozen", [([4], None), ([8], 4), ([11], None), ([12], None),
                                             ([4, 8], None), ([8, 4, 8], 4)])
def test_fast_subset_path_equals_separate_forward(dtype, subsets, frozen):
    m = _model(dtype)
    real, yr, syn, ys = _data(dtype=dtype)
    l_slow, g_slow = _loss_and_grad(m, real, yr, syn, ys, subsets=subsets, syn_frozen=frozen, fast=False)
    l_fast, g_fast = _loss_and_grad(m, real, yr, syn, ys, subsets=subsets, syn_frozen=frozen, fast=True)
    assert l_fast == pytest.approx(l_slow, rel=1e-5)
    err = (g_fast - g_slow).abs().max() / g_slow.abs().max()
    assert err < 1e-5


def test_batchnorm_falls_back_to_separate_forward():
    m = _model(norm="batch")
    assert not is_per_sample(m)
    assert is_per_sample(m.eval())
    m.train()
    real, yr, syn, ys = _data()
    with pytest.raises(UserError):
        grad_match_loss(m, real, yr, syn, ys, matched_params(m), subsets=[4], fast=True)
    torch.manual_seed(0)
    a = _loss_and_grad(m, real, yr, syn, ys, subsets=[4], fast=None)
    torch.manual_seed(0)
    b = _loss_and_grad(m, real, yr, syn, ys, subsets=[4], fast=False)
    assert a[0] == pytest.approx(b[0], rel=1e-9) and torch.allclose(a[1], b[1])


@pytest.mark.parametrize("subsets", [[], [4], [8]])
def test_frozen_prefix_gets_no_gradient(subsets):
    """Freezing (docs/algorithms.md#freezing): detaching the first F·f² rows blocks every term for exactly those
    rows."""
    m = _model(torch.float32)
    real, yr, syn, ys = _data(dtype=torch.float32)
    _, g = _loss_and_grad(m, real, yr, syn, ys, subsets=subsets, syn_frozen=4)
    assert torch.all(g[:4] == 0)
    assert torch.all(g[4:].flatten(1).abs().sum(1) > 0)
    with pytest.raises(UserError):
        _loss_and_grad(m, real, yr, syn, ys, subsets=[13])


# ---- feature distances / feat matching (MDC reference matchloss.py, matchloss; reg_ipcx.py, feat_loss_for_ipc_reg;
# docs/algorithms.md#matching-loss) ----
def test_feature_distances_match_naive_loop():
    m = _model(torch.float32, depth=3)
    real, _, syn, _ = _data(dtype=torch.float32)
    sizes = [4, 8, 12]
    got = feature_distances(m, real, syn, sizes, idx_from=1, idx_to=2)
    assert isinstance(got, list) and all(isinstance(v, float) for v in got)
    with torch.no_grad():
        fr = m.get_feature(real, 1, 2)
        naive = []
        for n in sizes:  # separate forward on each prefix
            fs = m.get_feature(syn[:n], 1, 2)
            naive.append(sum(((a.mean(0) - b.mean(0)) ** 2).sum().item() for a, b in zip(fr, fs)))
    assert got == pytest.approx(naive, rel=1e-5)
    with torch.no_grad():
        pre = feature_distances_from_feats(m.get_feature(real, 1, 2), m.get_feature(syn, 1, 2), sizes)
    assert pre == pytest.approx(got, rel=1e-5)
    assert feature_distances_from_feats(fr, fr, []) == []
    # BatchNorm model: separate forwards (no crash), finite floats
    mb = _model(torch.float32, norm="batch")
    assert all(math.isfinite(v) for v in feature_distances(mb, real, syn, sizes, 1))


def test_feat_match_loss_and_dispatch():
    m = _model(torch.float32)
    real, yr, syn, ys = _data(dtype=torch.float32)
    loss = feat_match_loss(m, real, syn, 0, 1, "mse")
    fr, fs = m.get_feature(real, 0, 1), m.get_feature(syn, 0, 1)
    naive = sum(((a.mean(0) - b.mean(0)) ** 2).sum() for a, b in zip(fr, fs))
    assert loss.item() == pytest.approx(naive.item(), rel=1e-5)
    (g,) = torch.autograd.grad(loss, syn)
    assert g.abs().sum() > 0
    args = SimpleNamespace(match="feat", metric="mse", f_idx="0,1")
    assert matchloss(args, real, syn, yr, ys, m).item() == pytest.approx(loss.item(), rel=1e-6)
    args = SimpleNamespace(match="grad", metric="l1", bias=False, fc=False)
    direct = grad_match_loss(m, real, yr, syn, ys, matched_params(m), "l1")
    assert matchloss(args, real, syn, yr, ys, m).item() == pytest.approx(direct.item(), rel=1e-6)
    with pytest.raises(UserError):
        matchloss(SimpleNamespace(match="logit", metric="mse"), real, syn, yr, ys, m)
    assert parse_f_idx("4") == (4, -1) and parse_f_idx("2,3") == (2, 3)
    with pytest.raises(UserError):
        parse_f_idx("a")
