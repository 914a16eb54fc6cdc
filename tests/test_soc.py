import torch

from ebm import small_config
from ebm.geometry import normalize, random_points
from ebm.knn import SplatIndex
from ebm.soc import HistoryBuffer, SOCController
from ebm.splats import SplatStore


def _store(cfg, mu):
    return SplatStore(cfg, mu.shape[0], mu)


def test_merge_duplicates_weighted(gen):
    cfg = small_config(soc_merge_cos=0.999)
    base = random_points(10, cfg.latent_dim, gen)
    mu = torch.cat([base, base[:3] + 1e-4 * torch.randn(3, cfg.latent_dim, generator=gen)])
    store = _store(cfg, mu)
    store.log_alpha.data[:] = torch.log(torch.arange(1.0, 14.0))
    index = SplatIndex()
    index.build(store.position)
    merged = store.merge_close(index.search, step=5)
    assert merged == 3 and store.n == 10
    # alpha of a merged pair is the sum of both.
    assert torch.allclose(store.log_alpha.exp()[:3], torch.tensor([1.0 + 11, 2.0 + 12, 3.0 + 13]))
    assert torch.allclose(store.mu.norm(dim=-1), torch.ones(10))


def test_prune_only_dead_and_old(gen):
    cfg = small_config(soc_prune_alpha=0.01, soc_prune_min_age=100)
    store = _store(cfg, random_points(6, cfg.latent_dim, gen))
    store.log_alpha.data[:] = torch.log(torch.tensor([1.0, 1e-3, 1e-3, 1e-3, 1.0, 1e-3]))
    store.usage[:] = torch.tensor([0.0, 0.0, 0.5, 0.0, 0.0, 0.0])  # splat 2 is used
    store.birth_step[:] = torch.tensor([0, 0, 0, 150, 0, 10])  # splat 3 too young at step 200
    assert store.prune_dead(step=200) == 2  # splats 1 and 5
    assert store.n == 4


def test_avalanche_spawns_at_uncovered_targets_and_rebuilds(gen):
    cfg = small_config(soc_threshold=0.5, soc_spawn_max=5, coverage_kernel=0.5, knn_k=4)
    store = _store(cfg, random_points(8, cfg.latent_dim, gen))
    index = SplatIndex()
    soc = SOCController(cfg)
    covered_targets = store.position[:2].repeat(5, 1)  # exactly on splats
    new_targets = random_points(3, cfg.splat_dim, gen).repeat(10, 1)  # 3 distinct uncovered (context, token) pairs
    soc.observe(torch.cat([covered_targets, new_targets]), torch.zeros(40))
    event = soc.check(store, index, step=100, capacity=100)
    assert event.activity == 30 / 40 and event.avalanche
    assert event.counts.spawned == 3 and store.n == 11
    assert index.size == 11
    # The new splats sit on the targets (key at the context, mean at the token), which are now
    # covered: activity falls to zero.
    again = soc.check(store, index, step=200, capacity=100)
    assert again.activity == 0.0 and not again.avalanche
    assert soc.rate() == 0.5


def test_a_triggered_check_that_edits_nothing_is_not_an_avalanche(gen):
    """At capacity, with nothing to merge or prune, a check over the threshold edits nothing: it
    is logged as triggered, and the SOC rate does not count it."""
    cfg = small_config(soc_threshold=0.5, coverage_kernel=0.5, knn_k=4)
    store = _store(cfg, random_points(8, cfg.latent_dim, gen))
    soc = SOCController(cfg)
    soc.observe(random_points(20, cfg.splat_dim, gen), torch.zeros(20))
    event = soc.check(store, SplatIndex(), step=100, capacity=store.n)
    assert event.triggered and not event.avalanche and event.as_dict()["size"] == 0
    assert soc.rate() == 0.0


def test_spawn_respects_capacity(gen):
    cfg = small_config(soc_threshold=0.1, soc_spawn_max=50)
    store = _store(cfg, random_points(8, cfg.latent_dim, gen))
    soc = SOCController(cfg)
    soc.observe(random_points(40, cfg.splat_dim, gen), torch.zeros(40))
    event = soc.check(store, SplatIndex(), step=10, capacity=12)
    assert event.counts.spawned == 4 and store.n == 12


def test_resize_remaps_optimizer_state(gen):
    cfg = small_config()
    store = _store(cfg, random_points(5, cfg.latent_dim, gen))
    opt = torch.optim.Adam(store.parameters(), lr=0.1)
    store.log_alpha.sum().backward()
    opt.step()
    before = opt.state[store.log_alpha]["exp_avg"].clone()
    store.resize(torch.tensor([4, 0]), new_mu=normalize(torch.randn(2, cfg.splat_dim)), optimizer=opt)
    after = opt.state[store.log_alpha]["exp_avg"]
    assert torch.equal(after, torch.cat([before[[4, 0]], torch.zeros(2)]))
    store.log_alpha.sum().backward()
    opt.step()  # the optimiser still works with the resized parameters


def test_history_buffer_ring(gen):
    buf = HistoryBuffer(5, 3)
    for i in range(3):
        buf.add(torch.full((3, 3), float(i)), torch.full((3,), float(i)))
    pts, en = buf.contents()
    assert len(buf) == 5 and sorted(en.tolist()) == [1.0, 1.0, 2.0, 2.0, 2.0]
    clone = HistoryBuffer(1, 3)
    clone.load_state_dict(buf.state_dict())
    assert torch.equal(clone.contents()[1], en)


def test_history_buffer_lives_on_the_device_of_its_points():
    """On a GPU run the buffer must not copy each step's (N, D) targets to the host; the "meta"
    device stands in for a GPU: any device the buffer does not start on."""
    buf = HistoryBuffer(5, 3)
    buf.add(torch.zeros(2, 3, device="meta"), torch.zeros(2, device="meta"))
    assert buf.points.device.type == "meta" and buf.energies.device.type == "meta" and len(buf) == 2


def test_an_edit_while_an_older_graph_is_alive_leaves_backward_working():
    """A graph from before the edit kept alive (a held loss) used to make the next backward fail
    with "invalid gradient ... expected shape [K_old]": resized .data kept the old accumulator."""
    cfg = small_config()
    store = SplatStore(cfg, 8, normalize(torch.randn(8, cfg.latent_dim)))
    opt = torch.optim.AdamW(store.parameters(), lr=1e-2)
    held = store.log_alpha[torch.tensor([0, 1])].sum()  # noqa: F841 - alive across the edit on purpose
    store.resize(torch.arange(8), new_mu=normalize(torch.randn(4, cfg.splat_dim)), optimizer=opt)
    (store.log_alpha[torch.tensor([0, 11])].sum() + store.mu[11].sum() + store.kappa[3]).backward()
    opt.step()
    assert store.log_alpha.grad.shape == (12,) and store.log_alpha.grad[11] == 1
    assert all(p in {id(q) for g in opt.param_groups for q in g["params"]} for p in map(id, store.parameters()))
