import torch

from ebm import EBMModel, small_config, training_loss
from ebm.upkeep import SplatUpkeep


def _setup(**changes):
    cfg = small_config(curriculum_unit="step", curriculum_boundaries=(3, 6), curriculum_capacities=(64, 160, 256), **changes)
    freq = torch.arange(cfg.vocab_size, 0, -1).float()
    upkeep = SplatUpkeep(cfg, freq)
    torch.manual_seed(0)
    model = EBMModel(cfg, n_splats=upkeep.initial_splats(), token_freq=freq)
    upkeep.start(model)
    opt = torch.optim.AdamW(model.parameter_groups(), lr=cfg.learning_rate)
    return cfg, upkeep, model, opt


def test_phase_change_grows_the_store_and_sets_its_temperature():
    cfg, upkeep, model, opt = _setup()
    assert upkeep.before_step(model, 0, 2, opt) == []
    before = model.splats.n
    [(kind, fields)] = upkeep.before_step(model, 0, 3, opt)
    assert kind == "phase" and fields["name"] == "mid" and fields["spawned"] > 0
    assert model.splats.n == before + fields["spawned"] <= 160
    assert abs(float(model.splats.tau) - cfg.curriculum_temperatures[1]) < 1e-6


def test_phase_is_restored_as_saved_so_a_boundary_checkpoint_still_grows():
    """A checkpoint written at the end of the last step of a phase: resume enters the next one."""
    _, upkeep, model, opt = _setup()
    state = upkeep.state_dict()  # phase 0, saved at step 3 before the next step's phase check
    _, resumed, model2, opt2 = _setup()
    resumed.load_state_dict(state)
    events = resumed.before_step(model2, 0, 3, opt2)
    assert [kind for kind, _ in events] == ["phase"] and events[0][1]["spawned"] > 0


def test_after_step_ages_counts_and_checks_when_due(gen):
    cfg, upkeep, model, opt = _setup(soc_check_interval=2, soc_threshold=0.0)
    tokens = torch.randint(cfg.vocab_size, (4, cfg.context_global + cfg.seq_length + 1), generator=gen)
    out = training_loss(model, tokens, gen)
    assert upkeep.after_step(model, out, 1, 0.0, 1e-3, opt) == []
    assert model.splats.usage.sum() > 0 and len(upkeep.soc.buffer) == out.target_points.shape[0]
    [(kind, fields)] = upkeep.after_step(model, out, 2, 0.0, 1e-3, opt)
    assert kind == "soc" and fields["avalanche"] and fields["n_splats"] == model.splats.n
