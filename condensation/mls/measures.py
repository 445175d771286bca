"""The per-subset measures the MLS can be chosen from (``--mls_metric``, MDC Table 5).

MDC (reference he-y/Multisize-Dataset-Condensation/reg_ipcx.py; docs/algorithms.md#feature-distance-per-subset) logs, at
every inner step of a window iteration, one number per prefix subset
IPC-x (x = 1..ipc−1) and per class; ``reg_ipcx.average_featlog`` averages them over the window and
``Regularizer.select_reg_ipc`` picks the MLS from the averages. The measure is:

* ``feature`` (MDC, the reference): d_x = Σ_ℓ D(mean Φ_ℓ(real), mean Φ_ℓ(syn[:x·f²])), the feature
  distance of ``condensation.matchloss.feature_distances``;
* ``gradient``: d_x = Σ_p D(g_real[p], g_x[p]), the gradient-matching distance of the prefix, with
  exactly the gradients the subset term of docs/algorithms.md#adaptive-subset-loss (MDC reference reg_ipcx.py,
  grad_loss_for_img_update) would match (same augmented batch, same
  matched parameters, same ``--metric``), computed without a graph (``gradient_distances``);
* ``accuracy``: the accuracy (%) on a fixed real batch of a nearest-class-mean classifier built from
  the prefix only (``PrefixAccuracy``).

The accuracy classifier, precisely: the current condensation network (the one the images are matched
against at that step, in eval mode for the measurement only, no gradient) embeds
(``model.embed``, the features its classifier reads) the normalised, decoded synthetic images of every
class; the centroid of class c for IPC-x is the mean embedding of its first x·f² decoded images (the
prefix MDC trains and evaluates); each image of a fixed real batch is assigned to the nearest centroid
(squared Euclidean distance, first minimum on ties); the measure of class c is the percentage of its
real images assigned to c. Why this classifier: it uses nothing but the prefix (no extra training, so
no learning rate, epochs or random initialisation to choose), costs one forward of the synthetic set
and of the fixed batch per inner step of a window, and is deterministic; a trained linear probe per
prefix would cost ipc−1 trainings per window and add its own randomness. The fixed batch is
``batch_real`` training images per class drawn once from a generator seeded with ``--seed`` (its own
generator: the run's random stream is not touched); they are not removed from the matching pool,
because that would change every real batch of the run and confound the comparison with ``feature``.

Each measure is a registered class (``condensation.mls.registry``; a new measure is one more class here,
docs/contributing.md). torch is imported inside the functions: the command line imports this module for its
choices (``-h`` stays torch-free).
"""
from condensation.mls.registry import Measure, register_measure


def gradient_distances(model, real, y_real, syn, y_syn, params, prefix_sizes, metric="mse"):
    """D(g_real, g_x) for every prefix length n in ``prefix_sizes`` (decoded images) → list[float].

    ``real``/``syn`` are the augmented, normalised batches of the class step; no graph is kept and the
    images receive no gradient (the measure never enters the loss)."""
    import torch
    import torch.nn.functional as F

    from condensation.matchloss import grad_distance

    real, syn = real.detach(), syn.detach()
    with torch.enable_grad():
        g_real = torch.autograd.grad(F.cross_entropy(model(real), y_real), params)
        vals = []
        for n in prefix_sizes:
            g_n = torch.autograd.grad(F.cross_entropy(model(syn[:n]), y_syn[:n]), params)
            vals.append(grad_distance(g_real, g_n, metric).detach())
    return torch.stack(vals).float().tolist()


class PrefixAccuracy:
    """Nearest-class-mean accuracy of every prefix on a fixed real batch (module docstring)."""

    def __init__(self, sampler, classes, n_per_class, norm, seed):
        import torch

        gen = torch.Generator().manual_seed(int(seed))
        self.classes, self.norm = list(classes), norm
        images = [sampler.held_out(c, n_per_class, gen) for c in self.classes]
        self.counts = [len(x) for x in images]
        self.x = torch.cat(images)
        self.y = torch.cat([torch.full((n,), r, dtype=torch.long) for r, n in enumerate(self.counts)]).to(self.x.device)

    def __call__(self, model, synset, ipc):
        """Per class (local order): [accuracy % of IPC-x for x = 1..ipc−1], one host read."""
        import torch

        with torch.no_grad():
            f2 = synset.factor ** 2
            was_training = model.training
            model.eval()
            try:
                f_real = model.embed(self.norm(self.x))
                f_syn = []
                for r in range(len(self.classes)):
                    sl = synset.rows(r)
                    dx, _ = synset.decode_block(synset.data[sl].detach(), synset.targets[sl], 10**9)
                    f_syn.append(model.embed(self.norm(dx)))
            finally:
                model.train(was_training)
            acc = []
            for x in range(1, ipc):
                centroids = torch.stack([f[:x * f2].mean(0) for f in f_syn])               # [C, D]
                d2 = (f_real[:, None, :] - centroids[None, :, :]).pow(2).sum(-1)          # [N, C]
                hit = (d2.argmin(1) == self.y).float()
                acc.append(torch.stack([h.mean() for h in hit.split(self.counts)]) * 100)  # [C]
            return torch.stack(acc, 1).tolist()                                              # [C][ipc-1]


# ------------------------------------------------------------------------------------------------
# the registered measures (``--mls_metric``)


@register_measure("feature", help="feature distance (MDC)", default=True)
class Feature(Measure):
    """The feature distance of every prefix (MDC, reference ``condense_reg.py``;
    ``condensation.matchloss.feature_distances``), at every class step of a window."""

    def class_step(self, model, params, real, y_real, syn, y_syn, sizes, *, metric="mse", idx_from=0, idx_to=-1):
        from condensation.matchloss import feature_distances

        return feature_distances(model, real, syn, sizes, idx_from, idx_to, metric)


@register_measure("gradient", help="gradient-matching distance")
class Gradient(Measure):
    """The gradient-matching distance of every prefix (``gradient_distances``), at every class step of a window."""

    def class_step(self, model, params, real, y_real, syn, y_syn, sizes, *, metric="mse", idx_from=0, idx_to=-1):
        return gradient_distances(model, real, y_real, syn, y_syn, params, sizes, metric)


@register_measure("accuracy", help="nearest-class-mean accuracy on a fixed real batch (docs/condensing.md)")
class Accuracy(Measure):
    """The nearest-class-mean accuracy of every prefix (``PrefixAccuracy``), once per inner step of a window,
    after the class steps; its fixed real batch is drawn from ``--seed`` when the run starts."""
    per_step = False
    one_rank = "the nearest-class-mean classifier needs every class's images on one rank"

    def __init__(self, *, sampler=None, classes=(), args=None, norm=None):
        super().__init__(sampler=sampler, classes=classes, args=args, norm=norm)
        self.fn = PrefixAccuracy(sampler, classes, args.batch_real, norm, args.seed)

    def inner_step(self, model, synset, ipc):
        return self.fn(model, synset, ipc)


__all__ = ["gradient_distances", "PrefixAccuracy", "Feature", "Gradient", "Accuracy"]
