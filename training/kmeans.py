"""Seeded euclidean k-means on torch (DREAM init/batches, docs/algorithms.md#dream;
YOCO "SSP" lists, docs/algorithms.md#ssp-k-means-lists).

The reference uses ``fast_pytorch_kmeans.KMeans(mode='euclidean')`` with its defaults (max_iter 100,
tol 1e-4, initial centroids = random data points, unseeded). This is an independent Lloyd k-means with
the same defaults, made deterministic:

* initial centroids: ``k`` *distinct* data rows drawn with a local ``torch.Generator(seed)`` (the global
  RNGs are never touched);
* assignment: nearest centroid, ties to the lower centroid index (``argmin`` keeps the first minimum);
* update: mean of the assigned rows; an **empty cluster keeps its previous centroid** (deterministic);
* stop when the summed squared centroid shift is ``<= tol`` or after ``n_iter`` iterations; the returned
  labels are the assignment to the returned centroids.

Runs on the CPU whatever the device of ``x`` (the results come back on ``x``'s device): the matrices are
small, and the CUDA scatter-add of the update (``index_add_``) is nondeterministic, so a seeded GPU run would
not repeat; on the CPU every run (CPU or GPU) clusters identically.
"""
import torch

from utils.errors import UserError

_CHUNK_ELEMS = 1 << 24  # rows x centroids per distance block (bounds memory for N=20000, k=4000)


def pairwise_distance(a, b):
    """Euclidean distances [A, B] as docs/algorithms.md#ssp-k-means-lists (reference
    he-y/you-only-condense-once/generate_importance_score.py): sqrt(clamp(|a|^2 + |b|^2 - 2 a.b, min=1e-12))."""
    a2 = (a * a).sum(1, keepdim=True)
    b2 = (b * b).sum(1).unsqueeze(0)
    d2 = a2 + b2 - 2.0 * (a @ b.t())
    return d2.clamp_min(1e-12).sqrt()


def _assign(x, centroids):
    """Index of the nearest centroid for every row of ``x`` (computed in row blocks)."""
    step = max(1, _CHUNK_ELEMS // max(1, centroids.shape[0]))
    out = [pairwise_distance(x[i:i + step], centroids).argmin(1) for i in range(0, x.shape[0], step)]
    return torch.cat(out)


def _check(x, k):
    if x.dim() != 2:
        raise UserError(f"k-means needs a 2-D feature matrix [N, D], got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= int(k) <= n:
        raise UserError(f"k-means with k={k} clusters needs 1 <= k <= number of samples ({n})")


def kmeans(x, k, *, n_iter=100, tol=1e-4, seed=0):
    """Cluster the rows of ``x`` [N, D] into ``k`` groups; returns ``(centroids [k, D], labels [N])``.

    Deterministic for a given ``seed`` (see the module docstring for the rules).
    """
    _check(x, k)
    k, device = int(k), x.device
    x = x.detach().float().cpu()
    n = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    init = torch.randperm(n, generator=g)[:k]  # distinct data points
    centroids = x[init].clone()
    for _ in range(int(n_iter)):
        labels = _assign(x, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k).to(x.dtype).unsqueeze(1)
        # empty clusters keep their previous centroid (deterministic)
        new = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
        shift = (new - centroids).pow(2).sum().item()
        centroids = new
        if shift <= tol:
            break
    return centroids.to(device), _assign(x, centroids).to(device)


def nearest_to_centroids(x, centroids):
    """For every centroid, the index of the closest row of ``x`` (LongTensor [k]).

    Distances as docs/algorithms.md#ssp-k-means-lists (YOCO reference generate_importance_score.py, kmeans_metric); ties
    go to the lower row index. Two centroids may share their
    nearest sample, so duplicates are possible, exactly as in the reference (yoco B10 in
    docs/reference-differences.md#reference-quirks-kept).
    """
    device = x.device
    x = x.detach().float().cpu()  # on the CPU, like kmeans
    centroids = centroids.detach().float().cpu()
    step = max(1, _CHUNK_ELEMS // max(1, x.shape[0]))
    out = [pairwise_distance(centroids[i:i + step], x).argmin(1) for i in range(0, centroids.shape[0], step)]
    return torch.cat(out).long().to(device)
