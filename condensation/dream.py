"""DREAM real-image selection for condensation (``-s dream``, reference
he-y/Multisize-Dataset-Condensation/query_strategies/kmeans_sampling.py; docs/algorithms.md#dream; Table 8 "MDC on
DREAM").

* Initialisation: per class, k-means (euclidean, ``training.kmeans``) on ``model.embed`` features of
  a freshly initialised network with k = ipc·f²; the real image nearest to each centroid, in
  centroid order, feeds the ``mix`` tiles (decoded index d = centroid d). With ``--init random``
  (only possible at f = 1) the reference computes the picks and then ignores them: its random branch
  takes the first ipc real images of each class; we do the same unless ``--dream_random_init picks``.
* Real batches: every ``--interval`` inner steps, per class, k-means with k = batch_real on the
  current network's features; the images nearest to the centroids are that class's real batch
  until the next re-clustering.

As the reference, the features are computed on **unnormalised** images (mdc 18 in
docs/reference-differences.md#reference-quirks-kept, kept)
and the network needs ``embed`` (ConvNet, ResNetAP). The k-means seed is drawn from the global torch
RNG, so a seeded run (and a resumed one) is reproducible.
"""
import torch

from utils.errors import UserError
from training.kmeans import kmeans, nearest_to_centroids


def check_dream(args, model):
    if not hasattr(model, "embed"):
        raise UserError(f"-s dream needs a network with embed() (convnet, resnet_ap); got --net_type {args.net_type}")
    if args.dataset == "imagenet" and not args.load_memory:
        raise UserError("-s dream keeps every training image in memory; pass --load_memory True")


EMBED_CHUNK = 256  # the reference embeds a class in DataLoader batches of 256 (its query_strategies Data)


@torch.no_grad()
def embed_all(model, x, chunk=EMBED_CHUNK):
    """``model.embed`` of ``x`` in chunks of 256 images, as the reference: with batch-norm networks in
    train mode the chunking changes the features, hence the picks."""
    return torch.cat([model.embed(x[i:i + chunk]).flatten(1) for i in range(0, len(x), chunk)])


def class_images(sampler, c):
    """All training images of class c (float in [0, 1], on the sampler's device)."""
    return sampler.class_sample(c, len(sampler.cls_idx[c]), 0)


def nearest_images(model, x, k):
    """The ``k`` images of ``x`` nearest to the k-means centroids of their features."""
    k = min(int(k), len(x))
    feats = embed_all(model, x)
    seed = int(torch.randint(0, 2**31 - 1, (1,)).item())
    centroids, _ = kmeans(feats, k, seed=seed)
    return x[nearest_to_centroids(feats, centroids).to(x.device)]


def dream_init(model, sampler, classes, n):
    """Per class (in ``classes`` order) the ``n`` = ipc·f² images used by the mix initialisation."""
    picked = []
    for c in classes:
        x, _ = class_images(sampler, c)
        if len(x) < n:
            raise UserError(f"class {c} has {len(x)} images, fewer than ipc*factor^2 = {n}")
        picked.append(nearest_images(model, x, n))
    return picked


def init_picks(args, model, sampler, classes, n):
    """``(init_type, picked)`` for ``Synthesizer.init`` of a DREAM run: the k-means picks feed the mix
    tiles; with ``--init random`` the reference computes the picks (the same RNG stream) and then takes
    the first ipc images of each class instead (MDC reference query_strategies/kmeans_sampling.py, KMeansSampling;
    docs/algorithms.md#dream): ``("random", None)`` unless ``--dream_random_init picks``."""
    check_dream(args, model)
    picked = dream_init(model, sampler, classes, n)
    if args.init != "random":
        return args.init, picked
    return ("random", None) if args.dream_random_init == "first" else ("mix", picked)


def dream_batches(model, sampler, classes, batch_real):
    """Per class the real batch (images, labels) for the next ``--interval`` inner steps."""
    out = []
    for c in classes:
        x, _ = class_images(sampler, c)
        sel = nearest_images(model, x, batch_real)
        out.append((sel, torch.full((len(sel),), c, dtype=torch.long, device=sel.device)))
    return out
