"""The class-batched inner step (``--class_batch True``; issue 12): the C per-class image steps of one inner
step of docs/algorithms.md#the-condensation-loop (reference he-y/Multisize-Dataset-Condensation/condense_reg.py)
computed in one batched pass, at exactly the positions the sequential loop uses.

Why it is exact
---------------
Within one inner step the matching network is fixed, and class c's matching loss depends only on the
images of class c. The image optimiser is one SGD with momentum over the whole tensor, stepped once per
class (MDC reference condense_reg.py, condense; docs/algorithms.md#the-condensation-loop): a class step moves the
*other* classes' rows by momentum alone (their gradient is
zero: ``b ← μ·b``, ``x ← x − η·b``). So the rows of the class stepped s-th are, when its step comes, its
rows after s zero-gradient steps, which do not depend on any gradient of this inner step. Hence:

1. ``step_positions``: replay the zero-gradient steps on a copy of the tensor (the same two element-wise
   operations on the same full tensor as the optimiser, so the positions round exactly as in the
   sequential loop) and keep each class's rows as its step will see them;
2. draw every class's real batch, decoded-image permutation and DiffAug parameters in the sequential order
   (the random streams are consumed exactly as the sequential loop does) and augment at those positions;
3. ``class_batched_losses``: all classes' matching losses in one batched pass (of at most ``CLASS_CHUNK``
   classes) (``torch.func``: per-class
   parameter gradients with ``vmap(grad(...))``, differentiated once more by autograd for the image
   gradients; the adaptive subset terms by the split formulation of ``condensation.matchloss``: exact for
   per-sample models), then one backward to the positions;
4. apply the C optimiser steps in the sequential order with those gradients (``Condenser`` does it with
   the real optimiser, so the momentum and the images are updated by the same operations as before).

Results equal the sequential loop's up to floating-point summation order (tests/test_class_batch.py:
equal to 1e-10 in float64, and in float32 no farther from a float64 run than the sequential loop
is). The path is opt-in: the batched reductions round differently from the sequential ones, and gradient
matching amplifies rounding differences over iterations, so the default stays the reference's sequential
loop. Needs ``--match grad`` and a per-sample model (no BatchNorm batch statistics), and is not combined
with ``--exact`` (whose point is bit-identity across process counts).
"""
import torch
import torch.nn.functional as F

from condensation.matchloss import check_prefixes, grad_distance, is_per_sample
from utils.errors import UserError

# classes per batched pass: the pass holds the double-backward graphs of all its classes at once (about 0.4 GB
# per class for CIFAR-shaped ConvNet-3 at 40 decoded images), so a CIFAR-100 inner step runs in 10 passes
CLASS_CHUNK = 10


def check_class_batch(args, model):
    """UserError naming why ``--class_batch True`` cannot run with these settings/this model."""
    if args.match != "grad":
        raise UserError("--class_batch True needs --match grad; drop --class_batch or use gradient matching")
    if getattr(args, "exact", False):
        raise UserError("--class_batch True is not combined with --exact True (bit-identity across ranks); "
                        "drop one of them")
    if not is_per_sample(model):
        raise UserError("--class_batch True needs a model without batch statistics (BatchNorm in train mode "
                        "mixes the images of a batch); use --norm_type instance, or drop --class_batch")


def _plain_sgd(opt):
    group = opt.param_groups[0]
    if len(opt.param_groups) != 1 or group.get("nesterov") or group.get("dampening", 0) or \
            group.get("weight_decay", 0):
        raise ValueError("the class-batched step needs the image optimiser: one plain momentum SGD")
    return group["momentum"], group["lr"]


@torch.no_grad()
def step_positions(opt, data, blocks):
    """The image tensor as each class step of one inner step sees it (module docstring, step 1).

    ``blocks``: the row slices of the classes in step order. Returns a tensor like ``data`` whose rows of
    the class stepped s-th hold ``data`` after s zero-gradient optimiser steps. Before the first optimiser
    step ever there is no momentum buffer and nothing moves (PyTorch creates the buffer from the first
    gradient, which is zero outside the first class's rows)."""
    mu, lr = _plain_sgd(opt)
    buf = opt.state.get(data, {}).get("momentum_buffer")
    x = data.detach().clone()
    if buf is None or mu == 0:
        return x
    out = torch.empty_like(x)
    b = buf.clone()
    for s, rows in enumerate(blocks):
        out[rows] = x[rows]
        if s + 1 < len(blocks):
            b.mul_(mu)
            x.add_(b, alpha=-lr)
    return out


def _named(model, params):
    """Names of ``params`` in ``model`` (torch.func addresses parameters by name)."""
    ids = {id(p) for p in params}
    return [n for n, p in model.named_parameters() if id(p) in ids]


def class_batched_losses(model, params, real, y_real, syn, y_syn, metric="mse", subsets=(), frozen=0):
    """Matching loss of every class of one group in one batched pass (MDC reference matchloss.py, matchloss;
    reg_ipcx.py, grad_loss_for_img_update; docs/algorithms.md#matching-loss).

    ``real`` [C, n, ...], ``syn`` [C, N, ...]: the augmented, normalised batches of C classes sharing the
    prefix sizes ``subsets`` (decoded images) and the frozen prefix ``frozen``; ``y_*`` [C, n] / [C, N].
    Per class: L_c = Σ_p D(g_R[p], g_S[p]) + Σ_n D(g_R[p], g_n[p]), g_R detached, as ``grad_match_loss``
    computes it with the split path. Returns the losses [C], differentiable with respect to ``syn``."""
    from torch.func import functional_call, grad, vmap

    names = _named(model, params)
    sizes = check_prefixes(subsets, syn.shape[1])
    if frozen:
        syn = torch.cat([syn[:, :frozen].detach(), syn[:, frozen:]], 1)

    def ce(p, x, y, reduction):
        return F.cross_entropy(functional_call(model, p, (x,)), y, reduction=reduction)

    p0 = {n: p.detach() for n, p in zip(names, params)}
    g_real = vmap(grad(lambda p, x, y: ce(p, x, y, "mean")), in_dims=(None, 0, 0))(p0, real, y_real)
    g_real = {n: g.detach() for n, g in g_real.items()}
    n_syn = syn.shape[1]
    if sizes:  # the split formulation: chunks at the prefix boundaries (condensation/matchloss.py)
        bounds = [0] + sorted({n for n in sizes if n < n_syn}) + [n_syn]
        chunk_grad = vmap(grad(lambda p, x, y: ce(p, x, y, "sum")), in_dims=(None, 0, 0))
        cum, cum_at = None, {}  # Σ of the chunks' CE-sum gradients over rows [0, b), per class
        for a, b in zip(bounds[:-1], bounds[1:]):
            g = chunk_grad(p0, syn[:, a:b], y_syn[:, a:b])
            cum = g if cum is None else {n: cum[n] + g[n] for n in names}
            cum_at[b] = cum
        g_syn = {n: c / n_syn for n, c in cum_at[n_syn].items()}
        g_sub = [{k: c / n for k, c in cum_at[n].items()} for n in sizes]
    else:  # plain IDC: the mean CE of the whole synthetic batch, as grad_match_loss without subsets
        g_syn = vmap(grad(lambda p, x, y: ce(p, x, y, "mean")), in_dims=(None, 0, 0))(p0, syn, y_syn)
        g_sub = []

    def losses(g_s, g_subs, g_r):
        total = grad_distance([g_r[n] for n in names], [g_s[n] for n in names], metric)
        for g_n in g_subs:  # MDC reference reg_ipcx.py, grad_loss_for_img_update;
        # docs/algorithms.md#adaptive-subset-loss: adaptive subset terms
            total = total + grad_distance([g_r[n] for n in names], [g_n[n] for n in names], metric)
        return total

    return vmap(losses)(g_syn, g_sub, g_real)
