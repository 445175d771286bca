"""training/kmeans.py: seeded determinism, cluster recovery, nearest_to_centroids (reference
he-y/you-only-condense-once/generate_importance_score.py; docs/algorithms.md#ssp-k-means-lists)."""
import pytest
import torch

from utils.errors import UserError
from training.kmeans import kmeans, nearest_to_centroids, pairwise_distance


def _blobs(seed=0, per=30):
    g = torch.Generator().manual_seed(seed)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]])
    x = torch.cat([c + 0.3 * torch.randn(per, 2, generator=g) for c in centers])
    return x, centers, torch.arange(4).repeat_interleave(per)


def test_seeded_determinism_and_global_rng_untouched():
    x, _, _ = _blobs()
    state = torch.get_rng_state()
    c1, l1 = kmeans(x, 4, seed=3)
    c2, l2 = kmeans(x, 4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # local generator only
    assert torch.equal(c1, c2) and torch.equal(l1, l2)
    assert l1.dtype == torch.int64 and l1.shape == (x.shape[0],) and c1.shape == (4, 2)


def _is_recovered(labels, truth, k):
    return all(len(set(labels[truth == c].tolist())) == 1 for c in range(k)) and len(set(labels.tolist())) == k


def test_recovers_well_separated_clusters():
    x, centers, truth = _blobs()
    # two blobs: Lloyd from any pair of distinct data points converges to the true split
    two = truth < 2
    for seed in range(5):
        _, labels = kmeans(x[two], 2, seed=seed)
        assert _is_recovered(labels, truth[two], 2)
    # four blobs: random init (as the reference library) can stop in a local optimum for some seeds,
    # so check a seed that starts with one point per blob, and that most seeds succeed
    cent, labels = kmeans(x, 4, seed=1)
    assert _is_recovered(labels, truth, 4)
    assert (pairwise_distance(centers, cent).min(1).values < 0.5).all()
    assert sum(_is_recovered(kmeans(x, 4, seed=s)[1], truth, 4) for s in range(10)) >= 5


def test_k_equals_n_and_duplicate_points():
    x = torch.tensor([[0.0], [0.0], [5.0]])  # duplicate rows: distinct indices, possibly equal points
    cent, labels = kmeans(x, 3, seed=0)
    assert cent.shape == (3, 1) and labels.shape == (3,)
    assert torch.isfinite(cent).all()  # the empty cluster keeps its previous centroid


def test_bad_k():
    x = torch.zeros(3, 2)
    with pytest.raises(UserError):
        kmeans(x, 4)
    with pytest.raises(UserError):
        kmeans(x, 0)


def test_nearest_to_centroids():
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0], [5.0, 6.0]])
    cent = torch.tensor([[0.9, 0.0], [5.0, 5.4], [0.2, 0.0], [100.0, 100.0]])
    idx = nearest_to_centroids(x, cent)
    assert idx.dtype == torch.int64
    assert idx.tolist() == [1, 2, 0, 3]  # 5.4: |5.4-5|=0.4 < |6-5.4|=0.6 -> row 2
    # duplicates are possible (two centroids nearest to the same sample), as in the reference
    assert nearest_to_centroids(x, torch.tensor([[0.1, 0.0], [-0.1, 0.0]])).tolist() == [0, 0]
    # ties go to the lower index
    assert nearest_to_centroids(x, torch.tensor([[0.5, 0.0]])).tolist() == [0]


def test_pairwise_distance_clamp():
    a = torch.tensor([[1.0, 2.0]])
    d = pairwise_distance(a, a)
    assert d.item() == pytest.approx(1e-6, abs=1e-6)  # sqrt(clamp(0, 1e-12)) = 1e-6


def _near_ties(seed, n=400, d=512, k=40):
    """Non-negative features (as after a ReLU) and centroids at the exact midpoints of two samples: the two
    distances tie in exact arithmetic, so the rounding of the distance formula decides the nearest sample."""
    g = torch.Generator().manual_seed(seed)
    x = torch.relu(torch.randn(n, d, generator=g)) * 3
    i = torch.randint(0, n, (k,), generator=g)
    j = (i + 1 + torch.randint(0, n - 1, (k,), generator=g)) % n
    return x, (x[i] + x[j]) / 2


def _reference_distance(x, y):
    """The references' euclidean_dist, re-derived: norms expanded and added, then the fused addmm (beta 1,
    alpha -2), then clamp and sqrt (MDC reference query_strategies/kmeans_sampling.py; YOCO reference
    generate_importance_score.py, kmeans_metric)."""
    m, n = x.size(0), y.size(0)
    dist = torch.pow(x, 2).sum(1, keepdim=True).expand(m, n) + torch.pow(y, 2).sum(1, keepdim=True).expand(n, m).t()
    dist.addmm_(x, y.t(), beta=1, alpha=-2)
    return dist.clamp(min=1e-12).sqrt()


def test_nearest_sample_breaks_near_ties_as_the_reference():
    """On BLAS libraries that fuse the multiply-add (this machine's among them), the unfused
    ``|a|² + |b|² - 2 a·b`` picks the other sample of many of these ties; the choice must be the reference's."""
    for seed in range(20):
        x, cent = _near_ties(seed)
        assert torch.equal(nearest_to_centroids(x, cent), _reference_distance(cent, x).argmin(dim=1)), seed
        assert torch.equal(pairwise_distance(cent, x), _reference_distance(cent, x)), seed


def test_kmeans_assignment_breaks_near_ties_as_the_library():
    """The assignment is the first maximum of fast_pytorch_kmeans's ``euc_sim`` (``2 * a @ bᵀ - |a|² - |b|²``),
    re-derived here; the samples are the midpoints, the centroids the samples (ties between two centroids)."""
    from training.kmeans import _assign

    for seed in range(20):
        pts, mids = _near_ties(seed)
        sim = 2 * mids @ pts.transpose(-2, -1) - (mids ** 2).sum(dim=1)[..., :, None] - (pts ** 2).sum(dim=1)[..., None, :]
        assert torch.equal(_assign(mids, pts), sim.max(dim=-1)[1]), seed
