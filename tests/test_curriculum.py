from ebm import small_config
from ebm.curriculum import Curriculum


def test_curriculum_phases():
    cfg = small_config(curriculum_boundaries=(2, 4), curriculum_capacities=(64, 128, 256))
    cur = Curriculum(cfg)
    assert [cur.phase(e, 0).name for e in (0, 1, 2, 3, 4, 9)] == ["init", "init", "mid", "mid", "max", "max"]
    assert cur.phase(3, 0).capacity == 128 and cur.phase(0, 0).temperature > cur.phase(4, 0).temperature
    flat = Curriculum(small_config(curriculum=False))
    assert flat.phase(9, 0).capacity == flat.cfg.n_splats_init


def test_phase_by_index_matches_the_clock():
    cur = Curriculum(small_config(curriculum_boundaries=(2, 4), curriculum_capacities=(64, 128, 256)))
    assert [cur.by_index(i) for i in range(3)] == [cur.phase(0, 0), cur.phase(2, 0), cur.phase(4, 0)]
