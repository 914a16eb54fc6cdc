import pytest

from ebm.config import ConfigError, EBMConfig


def test_defaults_follow_design():
    cfg = EBMConfig()
    assert (cfg.latent_dim, cfg.knn_k, cfg.max_splats, cfg.n_splats_init) == (640, 64, 150000, 10000)
    assert cfg.noise_levels == (0.01, 0.05, 0.1, 0.2, 0.5)
    assert (cfg.langevin_steps, cfg.langevin_dt, cfg.langevin_gamma, cfg.langevin_T) == (150, 0.2, 0.2, 1.0)
    assert (cfg.langevin_kappa, cfg.eval_flow_steps, cfg.eval_flow_dt) == (2.0, 20, 0.001)
    assert (cfg.context_local, cfg.context_medium, cfg.context_global) == (12, 64, 512)
    assert cfg.curriculum_capacities == (5000, 30000, 50000)


def test_json_roundtrip():
    cfg = EBMConfig(latent_dim=64, context_heads=4, noise_levels=(0.1, 0.3))
    assert EBMConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"knn_k": 0}, "knn_k"),
        ({"min_kappa": 60.0}, "min_kappa"),
        ({"moe_active": 5}, "moe_active"),
        ({"soc_threshold": 1.5}, "soc_threshold"),
        ({"knn_index": "ivf"}, "knn_index"),
        ({"head_dtype": "float16"}, "head_dtype"),
        ({"latent_dim": 30, "context_heads": 8}, "divisible"),
        ({"curriculum_boundaries": (3, 1)}, "increasing"),
        ({"noise_levels": ()}, "noise_levels"),
    ],
)
def test_invalid_values_raise_clear_errors(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        EBMConfig(**changes)


def test_overrides_are_typed():
    cfg = EBMConfig().with_overrides(
        ["knn_k=16", "learning_rate=3e-4", "curriculum=false", "noise_levels=0.1,0.2", "knn_index=hnsw"]
    )
    assert cfg.knn_k == 16 and cfg.learning_rate == 3e-4 and cfg.curriculum is False
    assert cfg.noise_levels == (0.1, 0.2) and cfg.knn_index == "hnsw"
    with pytest.raises(ConfigError, match="cannot parse"):
        EBMConfig().with_overrides(["knn_k=many"])
    with pytest.raises(ConfigError, match="bad override"):
        EBMConfig().with_overrides(["no_such_key=1"])
    with pytest.raises(ConfigError, match="unknown config keys"):
        EBMConfig.from_dict({"nope": 1})


@pytest.mark.parametrize(
    "changes,fragment",
    [
        ({"learning_rate": float("inf")}, "learning_rate must be a finite number"),
        ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
        ({"learning_rate": "3e-4"}, "learning_rate must be a finite number"),
        ({"knn_k": True}, "knn_k must be an integer"),
        ({"knn_k": 2.5}, "knn_k must be an integer"),
        ({"curriculum": "yes"}, "curriculum must be true or false"),
        ({"noise_levels": (0.1, "x")}, "noise_levels must be tuple of float"),
    ],
)
def test_wrong_types_and_non_finite_values_are_refused(changes, fragment):
    with pytest.raises(ConfigError, match=fragment):
        EBMConfig(**changes)


def test_every_field_has_a_meaning():
    described = EBMConfig.describe()
    assert len(described) == len(EBMConfig.__dataclass_fields__)
    assert all(meaning for _, _, _, meaning in described), [name for name, _, _, m in described if not m]


def test_a_checkpoint_from_before_the_landscape_keeps_its_flow_and_takes_todays_chain():
    """Its langevin_dt drove ppl_decoder's flow too: the flow keeps it, the sampler's chain does not."""
    old = {k: v for k, v in EBMConfig().to_dict().items() if k not in ("langevin_kappa", "eval_flow_dt")}
    old |= {"langevin_steps": 20, "langevin_dt": 0.01, "langevin_gamma": 0.1}
    cfg = EBMConfig.from_saved(old)
    assert cfg.eval_flow_dt == 0.01
    assert (cfg.langevin_steps, cfg.langevin_dt, cfg.langevin_gamma) == (150, 0.2, 0.2)
    assert EBMConfig.from_saved(EBMConfig(langevin_dt=0.3).to_dict()).langevin_dt == 0.3  # today's: as saved
