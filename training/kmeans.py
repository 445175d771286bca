"""Seeded euclidean k-means on torch (DREAM init/batches, docs/algorithms.md#dream;
YOCO "SSP" lists, docs/algorithms.md#ssp-k-means-lists).

The reference uses ``fast_pytorch_kmeans.KMeans(mode='euclidean')`` with its defaults (max_iter 100,
tol 1e-4, initial centroids = random data points, unseeded). This is an independent Lloyd k-means with
the same defaults, made deterministic:

* initial centroids: ``k`` *distinct* data rows drawn with a local ``torch.Generator(seed)`` (the global
  RNGs are never touched);
* assignment: nearest centroid by the reference library's euclidean similarity, computed in its order
  (``2 * a @ bᵀ - |a|² - |b|²``, fast_pytorch_kmeans ``KMeans.euc_sim``), ties to the lower centroid index
  (the first maximum, as its ``max(dim=-1)``);
* update: mean of the assigned rows; an **empty cluster keeps its previous centroid** (deterministic);
* stop when the summed squared centroid shift is ``<= tol`` or after ``n_iter`` iterations; the returned
  labels are the assignment to the returned centroids.

The clustering runs on the CPU whatever the device of ``x`` (the results come back on ``x``'s device): the
matrices are small, and the CUDA scatter-add of the update (``index_add_``) is nondeterministic, so a seeded
GPU run would not repeat; on the CPU every run (CPU or GPU) clusters identically. The nearest sample of each
centroid (``nearest_to_centroids``) is chosen on ``x``'s device, as the reference does.

Why the operation sequences matter: ``|a|² + |b|² - 2 a·b`` computed as three separate ops and the
reference's ``xx + yy`` followed by the fused ``addmm_`` are equal in exact arithmetic but rounded
differently (the BLAS fuses the last multiply-add), so a near-tie between two samples can break the other
way. Every distance here that decides a choice is computed with the reference's own sequence of operations,
operand order and (absence of) chunking.
"""
import torch

from utils.errors import UserError

_CHUNK_ELEMS = 1 << 27  # rows x centroids per similarity block (512 MiB of float32): larger matrices are split by rows


def pairwise_distance(x, y):
    """Euclidean distances [M, N] between the rows of ``x`` [M, D] and ``y`` [N, D], with the operation
    sequence of the references' ``euclidean_dist`` (MDC reference query_strategies/kmeans_sampling.py,
    KMeansSampling.euclidean_dist; YOCO reference generate_importance_score.py, kmeans_metric): the squared
    norms expanded to [M, N] and added (``xx + yy``), then the fused ``addmm_`` with beta 1, alpha -2, then
    ``clamp(min=1e-12).sqrt()``. Not reordered, not split: near-ties break as in the reference."""
    m, n = x.shape[0], y.shape[0]
    xx = torch.pow(x, 2).sum(1, keepdim=True).expand(m, n)
    yy = torch.pow(y, 2).sum(1, keepdim=True).expand(n, m).t()
    dist = xx + yy
    dist.addmm_(x, y.t(), beta=1, alpha=-2)
    return dist.clamp(min=1e-12).sqrt()


def euclidean_similarity(a, b):
    """The k-means library's similarity [M, N] (larger = nearer), in its order of operations
    (fast_pytorch_kmeans ``KMeans.euc_sim``, which the references' k-means uses): ``2 * a @ bᵀ - |a|² - |b|²``."""
    return 2 * a @ b.transpose(-2, -1) - (a ** 2).sum(dim=1)[..., :, None] - (b ** 2).sum(dim=1)[..., None, :]


def _assign(x, centroids):
    """Index of the nearest centroid for every row of ``x`` (the first maximum of the library's similarity;
    computed in row blocks only when the matrix would exceed ``_CHUNK_ELEMS``, as the library splits by rows)."""
    step = max(1, _CHUNK_ELEMS // max(1, centroids.shape[0]))
    out = [euclidean_similarity(x[i:i + step], centroids).max(dim=-1)[1] for i in range(0, x.shape[0], step)]
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
    """For every centroid, the index of the closest row of ``x`` (LongTensor [k]), on ``x``'s device.

    As the references' query (MDC reference query_strategies/kmeans_sampling.py, KMeansSampling.query; YOCO
    reference generate_importance_score.py, kmeans_metric): ``argmin`` over ``pairwise_distance(centroids, x)``
    in one piece, so ties go to the lower row index. Two centroids may share their nearest sample, so
    duplicates are possible, exactly as in the reference (yoco B10 in
    docs/reference-differences.md#reference-quirks-kept).
    """
    x = x.detach().float()
    centroids = centroids.detach().float().to(x.device)
    return pairwise_distance(centroids, x).argmin(dim=1).long()
