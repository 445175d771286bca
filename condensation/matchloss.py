"""Matching losses of IDC / MDC (reference he-y/Multisize-Dataset-Condensation/matchloss.py; reg_ipcx.py;
docs/algorithms.md#matching-loss).

* ``dist``: the distances of the MDC reference's matchloss.py, dist (docs/algorithms.md#matching-loss: sum reductions;
  mse is a SUM of squares).
* ``matched_params``: the parameters whose gradients are matched (MDC reference matchloss.py, matchloss;
  docs/algorithms.md#matching-loss).
* ``grad_match_loss``: IDC gradient matching plus MDC's adaptive subset loss (MDC reference reg_ipcx.py,
  grad_loss_for_img_update; docs/algorithms.md#adaptive-subset-loss).
* ``feat_match_loss`` / ``matchloss``: the feat mode and the args-driven dispatch (MDC reference matchloss.py, dist and
  matchloss; docs/algorithms.md#matching-loss).
* ``feature_distances`` / ``feature_distances_from_feats``: MDC's d_x (MDC reference reg_ipcx.py, feat_loss_for_ipc_reg;
  docs/algorithms.md#feature-distance-per-subset).

Fast subset path of ``grad_match_loss`` (re-impl; exact, see ``_syn_grads_split``)
-----------------------------------------------------------------------------------
The reference runs a separate forward on the prefix Ã_S[:n_x] and a second double-backward graph.
When every layer is per-sample (instance/group/layer norm, BatchNorm in eval mode with running
stats), the CE-sum gradient over the batch is the sum of the per-chunk CE-sum gradients. We split
the synthetic batch at the prefix boundaries, run one forward + one ``autograd.grad`` per chunk
(disjoint graphs, each traversed once) and assemble

    g_S = (Σ_chunks G_j) / N,    g_x = (Σ_{chunks inside prefix x} G_j) / n_x .

The synthetic side then costs exactly what plain IDC costs (N images through forward, backward
and double backward) instead of N + n_x. Re-using the full-batch logits for the prefix loss would
be exact too but is *slower*: its second ``autograd.grad`` (and its double backward) traverses the
whole N-image graph again. With batch-dependent layers (BatchNorm in train mode, or without
running stats) the split would change the statistics, so the reference's separate forward is used.

Feature distances (MDC reference reg_ipcx.py, feat_loss_for_ipc_reg; docs/algorithms.md#feature-distance-per-subset) use
their own ``no_grad`` forwards (real, then syn: the reference's two batch sizes, see ``feature_distances``).
They are only needed during window iterations (t = 0
and (t+1) % P == 0, about 1% of the iterations), so re-using the matching forward (which would
need hooks per architecture) is not worth the coupling.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError

METRICS = ("mse", "l1", "l1_mean", "cos", "l2")


def dist(x, y, method="mse"):
    """Distance between two tensors of the same shape (MDC reference matchloss.py, dist and matchloss;
    docs/algorithms.md#matching-loss)."""
    if method == "mse":
        return ((x - y) ** 2).sum()
    if method == "l1":
        return (x - y).abs().sum()
    if method == "l1_mean":
        # Σ over the first dim of the mean |x - y| over the remaining dims
        n = x.shape[0] if x.dim() > 0 else 1
        return (x - y).abs().reshape(n, -1).mean(-1).sum()
    if method == "cos":
        n = x.shape[0] if x.dim() > 0 else 1
        xr, yr = x.reshape(n, -1), y.reshape(n, -1)
        cos = (xr * yr).sum(-1) / (xr.norm(dim=-1) * yr.norm(dim=-1) + 1e-6)
        return (1 - cos).sum()
    if method == "l2":
        raise UserError("--metric l2 is not implemented (as upstream, mdc 9 in docs/reference-differences.md#bugs-fixed); "
                        "use mse, l1, l1_mean or cos")
    raise UserError(f"unknown --metric {method!r}; use one of mse, l1, l1_mean, cos")


def matched_params(model, bias=False, fc=False):
    """Parameters whose gradients are matched, in ``model.parameters()`` order (MDC reference matchloss.py, matchloss;
    docs/algorithms.md#matching-loss).

    1-D parameters (biases, norm affine) only with ``bias``; 2-D (linear weights) only with ``fc``.
    """
    out = []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        if p.dim() == 1 and not bias:
            continue
        if p.dim() == 2 and not fc:
            continue
        out.append(p)
    if not out:
        raise UserError("no parameter gradients to match (all skipped by --bias/--fc); "
                        "set --bias True or --fc True, or use a model with conv layers")
    return out


def is_per_sample(model):
    """True when no layer mixes samples of a batch (MDC reference reg_ipcx.py, feat_loss_for_ipc_reg;
    docs/algorithms.md#feature-distance-per-subset).

    A BatchNorm uses batch statistics in train mode, and also in eval mode without running stats.
    """
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            if m.training or not m.track_running_stats:
                return False
    return True


def grad_distance(g_a, g_b, metric):
    """Σ over matched parameters of dist (MDC reference matchloss.py, dist and matchloss;
    docs/algorithms.md#matching-loss)."""
    total = 0
    for a, b in zip(g_a, g_b):
        total = total + dist(a, b, metric)
    return total


def check_prefixes(subsets, n_syn):
    sizes = [int(n) for n in subsets]
    for n in sizes:
        if not 0 < n <= n_syn:
            raise UserError(f"subset prefix of {n} decoded images does not fit the synthetic batch "
                            f"of {n_syn}; MDC needs --decode_type single and "
                            f"ipc*factor^2 <= --batch_syn_max (docs/algorithms.md#mdc-preconditions)")
    return sizes


def _syn_grads_separate(model, syn, y_syn, params, sizes):
    """Reference formulation (MDC reference reg_ipcx.py, grad_loss_for_img_update;
    docs/algorithms.md#adaptive-subset-loss): full forward plus one forward per prefix."""
    loss = F.cross_entropy(model(syn), y_syn)
    g_syn = torch.autograd.grad(loss, params, create_graph=True)
    g_sub = []
    for n in sizes:
        loss_x = F.cross_entropy(model(syn[:n]), y_syn[:n])
        g_sub.append(torch.autograd.grad(loss_x, params, create_graph=True))
    return g_syn, g_sub


def _syn_grads_split(model, syn, y_syn, params, sizes):
    """Exact chunked formulation for per-sample models (module docstring)."""
    n_syn = syn.shape[0]
    bounds = [0] + sorted({n for n in sizes if n < n_syn}) + [n_syn]
    cum, cum_at = None, {}  # cum_at[b] = Σ of chunk CE-sum gradients over rows [0, b)
    for a, b in zip(bounds[:-1], bounds[1:]):
        loss_sum = F.cross_entropy(model(syn[a:b]), y_syn[a:b], reduction="sum")
        g = torch.autograd.grad(loss_sum, params, create_graph=True)
        cum = list(g) if cum is None else [c + gi for c, gi in zip(cum, g)]
        cum_at[b] = cum
    g_syn = [c / n_syn for c in cum_at[n_syn]]
    g_sub = [[c / n for c in cum_at[n]] for n in sizes]
    return g_syn, g_sub


def grad_match_loss(model, real, y_real, syn, y_syn, params, metric="mse", subsets=(),
                    syn_frozen=None, fast=None):
    """IDC gradient matching plus MDC's adaptive subset loss (MDC reference matchloss.py, matchloss; reg_ipcx.py,
    grad_loss_for_img_update; docs/algorithms.md#matching-loss).

    L = Σ_p [ D(g_R[p], g_S[p]) + Σ_{n in subsets} D(g_R[p], g_n[p]) ],
    g_R = ∇ CE_mean(model(real)) (detached), g_S = ∇ CE_mean(model(syn)) and
    g_n = ∇ CE_mean(model(syn[:n])) with create_graph (subset weight 1, no λ).

    ``real``/``syn`` are the augmented, normalised batches; ``subsets`` are prefix lengths in
    decoded images (x·f² for each MLS x); ``syn_frozen`` (int or None) detaches the first
    ``syn_frozen`` rows of ``syn`` (MDC reference reg_ipcx.py; docs/algorithms.md#freezing: F·f² frozen crops; out of
    place, so the f = 1
    view-of-leaf error of mdc 2 in docs/reference-differences.md#bugs-fixed cannot happen; the DiffAug of matching is
    per-sample with shared parameters, so detaching after augmentation blocks the same pixels as before).
    ``fast``: None = the exact split path when there are subsets and the model is per-sample,
    False = always the reference's separate forward, True = split path (error if not per-sample).
    """
    sizes = check_prefixes(subsets, syn.shape[0])
    if syn_frozen:
        k = int(syn_frozen)
        if not 0 < k <= syn.shape[0]:
            raise UserError(f"frozen prefix of {k} decoded images does not fit the synthetic "
                            f"batch of {syn.shape[0]} (docs/algorithms.md#mls-selection-and-freezing)")
        syn = torch.cat([syn[:k].detach(), syn[k:]], 0)
    per_sample = is_per_sample(model)
    if fast and not per_sample:
        raise UserError("the split subset path needs a model without batch statistics "
                        "(BatchNorm in train mode); use fast=None")
    use_split = bool(sizes) and per_sample and fast is not False
    # real gradients: computed then detached (MDC reference matchloss.py, dist and matchloss;
    # docs/algorithms.md#matching-loss)
    loss_r = F.cross_entropy(model(real), y_real)
    g_real = [g.detach() for g in torch.autograd.grad(loss_r, params)]
    if use_split:
        g_syn, g_sub = _syn_grads_split(model, syn, y_syn, params, sizes)
    else:
        g_syn, g_sub = _syn_grads_separate(model, syn, y_syn, params, sizes)
    loss = grad_distance(g_real, g_syn, metric)
    for g_n in g_sub:  # MDC reference reg_ipcx.py, grad_loss_for_img_update; docs/algorithms.md#adaptive-subset-loss:
    # adaptive subset term
        loss = loss + grad_distance(g_real, g_n, metric)
    return loss


def _as_list(f):
    return list(f) if isinstance(f, (list, tuple)) else [f]


def feat_match_loss(model, real, syn, idx_from, idx_to=-1, metric="mse"):
    """Feature matching (MDC reference matchloss.py, matchloss; docs/algorithms.md#matching-loss): Σ_ℓ D(mean_batch
    Φ_ℓ(real), mean_batch Φ_ℓ(syn)).

    Real features under no_grad; synthetic features keep their graph.
    """
    with torch.no_grad():
        f_real = _as_list(model.get_feature(real, idx_from, idx_to))
    f_syn = _as_list(model.get_feature(syn, idx_from, idx_to))
    loss = 0
    for fr, fs in zip(f_real, f_syn):
        loss = loss + dist(fr.mean(0), fs.mean(0), metric)
    return loss


def parse_f_idx(f_idx):
    """'4' -> (4, -1); '2,3' -> (2, 3) (MDC reference argument.py; docs/algorithms.md#derived-settings)."""
    parts = [s for s in str(f_idx).split(",") if s.strip()]
    try:
        vals = [int(s) for s in parts]
    except ValueError:
        vals = []
    if len(vals) not in (1, 2):
        raise UserError(f"--f_idx {f_idx!r} must be 'from' or 'from,to' (integers)")
    return (vals[0], vals[1]) if len(vals) == 2 else (vals[0], -1)


def _feat_idx(args):
    if getattr(args, "idx_from", None) is not None:
        return args.idx_from, getattr(args, "idx_to", -1)
    return parse_f_idx(getattr(args, "f_idx", "4"))


def matchloss(args, real, syn, y_real, y_syn, model, subsets=(), syn_frozen=None):
    """Dispatch on ``args.match`` (MDC reference matchloss.py, dist and matchloss; docs/algorithms.md#matching-loss):
    grad (uses args.metric/bias/fc) or feat."""
    match = getattr(args, "match", "grad")
    if match == "grad":
        params = matched_params(model, getattr(args, "bias", False), getattr(args, "fc", False))
        return grad_match_loss(model, real, y_real, syn, y_syn, params, args.metric,
                               subsets=subsets, syn_frozen=syn_frozen)
    if match == "feat":
        if subsets:
            raise UserError("--adaptive_reg True needs --match grad (docs/algorithms.md#mdc-preconditions)")
        idx_from, idx_to = _feat_idx(args)
        return feat_match_loss(model, real, syn, idx_from, idx_to, args.metric)
    raise UserError(f"--match {match!r} is not implemented; use grad or feat "
                    "(logit is advertised upstream but unimplemented, mdc 9 in docs/reference-differences.md#bugs-fixed)")


def feature_distances_from_feats(feat_real, feat_syn, prefix_sizes, metric="mse"):
    """d_x for each prefix size n (MDC reference reg_ipcx.py, feat_loss_for_ipc_reg;
    docs/algorithms.md#feature-distance-per-subset) from precomputed feature lists -> list[float].

    d_n = Σ_ℓ D(mean_i Φ_ℓ(real)_i, mean_{j<n} Φ_ℓ(syn)_j). One host sync for all sizes.
    """
    feat_real, feat_syn = _as_list(feat_real), _as_list(feat_syn)
    if len(feat_real) != len(feat_syn):
        raise ValueError("feat_real and feat_syn must have the same number of layers")
    if not prefix_sizes:
        return []
    with torch.no_grad():
        means_r = [f.mean(0) for f in feat_real]
        vals = []
        for n in prefix_sizes:
            n = int(n)
            if not 0 < n <= feat_syn[0].shape[0]:
                raise UserError(f"subset prefix of {n} decoded images does not fit the synthetic "
                                f"batch of {feat_syn[0].shape[0]} (docs/algorithms.md#mdc-preconditions)")
            d = 0
            for mr, fs in zip(means_r, feat_syn):
                d = d + dist(mr, fs[:n].mean(0), metric)
            vals.append(d)
        return torch.stack(vals).float().tolist()


def feature_distances(model, real, syn, prefix_sizes, idx_from, idx_to=-1, metric="mse"):
    """MDC's feature distance of every prefix subset (MDC reference reg_ipcx.py, feat_loss_for_ipc_reg;
    docs/algorithms.md#feature-distance-per-subset); floats only (never back-propagated).

    Real and synthetic features come from a ``no_grad`` forward each, real first then synthetic, for every
    model, as the reference's ``feat_loss_for_ipc_reg``: the synthetic features are computed once for the whole
    batch and indexed. Not one forward of cat(real, syn), even for per-sample models: a convolution's kernel
    (cuDNN's algorithm, oneDNN's blocking) is chosen per batch size and rounds differently, and these values are
    averaged, rounded to 2 decimals and compared for the MLS, where a near-tie decides the choice
    (docs/algorithms.md#ties-and-randomness). The prefix ``fs[:n]`` is the reference's ``fs[list(range(n))]``:
    the same rows, shape, strides and alignment, so ``mean(0)`` reduces them in the same order.
    """
    with torch.no_grad():
        f_real = _as_list(model.get_feature(real, idx_from, idx_to))
        f_syn = _as_list(model.get_feature(syn, idx_from, idx_to))
    return feature_distances_from_feats(f_real, f_syn, prefix_sizes, metric)


__all__ = ["METRICS", "dist", "matched_params", "grad_distance", "is_per_sample", "check_prefixes", "grad_match_loss",
           "feat_match_loss", "parse_f_idx", "matchloss", "feature_distances",
           "feature_distances_from_feats"]
