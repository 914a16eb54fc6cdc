from ebm.geometry import random_points
from ebm.knn import SplatIndex, exact_knn, recall


def test_flat_index_equals_brute_force(gen):
    mu = random_points(2000, 32, gen)
    q = random_points(300, 32, gen)
    index = SplatIndex("flat")
    index.build(mu)
    found = index.search(q, 16)
    truth = exact_knn(q, mu, 16)
    # Same sets (order can differ only on exact ties).
    assert recall(found, truth) == 1.0
    scores = (q.unsqueeze(1) * mu[found]).sum(-1)
    assert (scores[:, :-1] >= scores[:, 1:] - 1e-6).all()


def test_hnsw_recall_is_high(gen):
    mu = random_points(5000, 64, gen)
    q = random_points(500, 64, gen)
    index = SplatIndex("hnsw", ef_search=256)
    index.build(mu)
    r = recall(index.search(q, 10), exact_knn(q, mu, 10))
    print(f"HNSW recall@10 on 5000 x 64: {r:.4f}")
    assert r >= 0.99


def test_staleness_and_k_clamp(gen):
    mu = random_points(10, 8, gen)
    index = SplatIndex("flat", rebuild_cos=0.99)
    assert index.is_stale(mu)
    index.ensure(mu)
    assert not index.is_stale(mu)
    moved = mu.clone()
    moved[3] = -moved[3]
    assert index.is_stale(moved)
    assert index.search(mu, 50).shape == (10, 10)
