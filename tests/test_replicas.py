"""Data-parallel training under torchrun (trainer.replicas, ebm.shard), on CPU with gloo.

Two processes with a global batch of 16 must train the same model as one process with the same
batch: same losses, same SOC and curriculum edits, same final parameters. float32 heads: with
bf16 a sum over 8 rows rounds differently from one over 16 and the runs drift apart.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from conftest import records, small_model, train, train_command

from ebm.splats import adopt_store_state, store_state
from runs.checkpoint import load_checkpoint
from trainer.replicas import ReplicaError, Replicas

# SOC avalanches (merge, spawn) every 10 steps and curriculum growth at steps 12 and 24: the
# store changes shape four times in 30 steps.
EDITS = (
    "--set",
    "curriculum_unit=step",
    "--set",
    "curriculum_boundaries=[12,24]",
    "--set",
    "schedule_steps=30",
    "--set",
    "head_dtype=float32",
)
REL = 1e-5


@pytest.fixture(scope="module")
def runs(workspace):
    """One process for 30 steps; two processes for 30; two for 15, resumed by two and by one."""
    for run_id, procs, steps in (("dp1", 1, 30), ("dp2", 2, 30), ("dp2x2", 2, 15), ("dp2x1", 2, 15)):
        proc = train(workspace, "--run-id", run_id, "--max-steps", str(steps), *EDITS, procs=procs)
        assert proc.returncode == 0, proc.stderr[-3000:]
    for run_id, procs in (("dp2x2", 2), ("dp2x1", 1)):
        proc = train(workspace, "--resume", run_id, "--max-steps", "30", procs=procs)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return workspace


def batches(ws, run_id: str) -> dict[int, dict]:
    return {r["step"]: r for r in records(ws, run_id) if r["type"] == "batch"}  # a resumed step: its last record


def edits(ws, run_id: str) -> list[tuple]:
    recs = [r for r in records(ws, run_id) if r["type"] in ("soc", "phase")]
    return [(r["type"], r["step"], r.get("spawned"), r.get("merged"), r["n_splats"]) for r in recs]


def assert_same_run(
    ws, a: str, b: str, keys=("loss", "nll", "dsm", "dec", "balance", "grad_norm"), params_rel: float = REL
) -> None:
    ra, rb = batches(ws, a), batches(ws, b)
    assert sorted(ra) == sorted(rb) == list(range(1, 31))
    for step in ra:
        for key in keys:
            assert abs(ra[step][key] - rb[step][key]) <= REL * abs(ra[step][key]), (step, key, ra[step][key], rb[step][key])
    pa = load_checkpoint(ws / "checkpoints" / a / "latest.pt")["model"]
    pb = load_checkpoint(ws / "checkpoints" / b / "latest.pt")["model"]
    assert pa.keys() == pb.keys()
    for key, value in pa.items():
        if torch.is_tensor(value) and value.is_floating_point():  # relative error in norm, per tensor
            assert ((value - pb[key]).norm() / value.norm().clamp_min(1e-12)).item() <= params_rel, key


def test_two_processes_train_the_model_one_process_trains(runs):
    shape_changes = [e for e in edits(runs, "dp1") if e[2] or e[3]]
    assert len(shape_changes) >= 3, edits(runs, "dp1")  # the test exercises the broadcast of edits
    assert edits(runs, "dp2") == edits(runs, "dp1")
    assert_same_run(runs, "dp1", "dp2")
    meta = records(runs, "dp2")[0]
    assert meta["type"] == "meta" and meta["replicas"] == 2


def test_resume_with_the_same_or_another_number_of_processes(runs):
    assert_same_run(runs, "dp2", "dp2x2")
    assert_same_run(runs, "dp2", "dp2x1")
    assert edits(runs, "dp2x1") == edits(runs, "dp1")


def test_two_machines_train_the_model_one_process_trains(runs):
    """The README's multi-machine command, both "machines" on this one: two torchrun agents meet
    through the c10d rendezvous (not --standalone) and share --out, as machines share a folder."""
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-id", "two-nodes", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}"]
    launcher = [torchrun, "--nnodes", "2", "--nproc-per-node", "1", *rendezvous]
    cmd, env = train_command(runs, "--run-id", "nodes2", "--max-steps", "30", *EDITS, launcher=launcher)
    logs = [runs / f"node{i}.out" for i in range(2)]  # files, not pipes: a full pipe would stall its agent
    agents = [subprocess.Popen(cmd, cwd=runs, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT) for log in logs]
    codes = [agent.wait(timeout=300) for agent in agents]
    assert codes == [0, 0], [log.read_text()[-3000:] for log in logs]
    assert records(runs, "nodes2")[0]["replicas"] == 2
    assert edits(runs, "nodes2") == edits(runs, "dp1")
    assert_same_run(runs, "dp1", "nodes2")


def test_only_rank_zero_writes(runs):
    logs = sorted(p.name for p in (runs / "logs" / "ebm").glob("dp2*.jsonl"))
    assert logs == ["dp2.jsonl", "dp2x1.jsonl", "dp2x2.jsonl"]
    lines = (runs / "logs" / "ebm" / "dp2.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if '"type":"batch"' in line]
    assert steps == list(range(1, 31))  # one record per step, not one per process


def test_gradient_accumulation_takes_the_steps_of_one_batch(workspace):
    # Each micro-batch keeps its slice of the one-batch noise; the score-matching normaliser and
    # the router's load are the micro-batch's, so those two terms are weighted out here.
    mean_terms = ("--set", "lambda_dsm=0", "--set", "lambda_bal=0")
    for run_id, k, precision in (("acc1", "1", []), ("acc2", "2", ["--precision", "fp32"])):
        flags = [*EDITS[:-2], *(precision or EDITS[-2:])]  # fp32 heads either way: by --set or by --precision
        proc = train(workspace, "--run-id", run_id, "--max-steps", "30", "--grad-accum", k, *flags, *mean_terms)
        assert proc.returncode == 0, proc.stderr[-3000:]
    # Every step's losses agree to 1e-5. Since the decoder stopped training the shared parts, the
    # splat means, gains and usage drift further (5e-5, 6e-6 and 1e-4 in norm after 30 steps).
    # The suspected cause, not yet traced, is the other summation order of the micro-batches,
    # which Adam magnifies for splats whose gradient is rounding noise around zero.
    assert_same_run(workspace, "acc1", "acc2", keys=("loss", "nll", "dec", "grad_norm"), params_rel=3e-4)
    meta = records(workspace, "acc2")[0]
    assert (meta["grad_accum"], meta["precision"], meta["head_dtype"]) == (2, "fp32", "float32")
    assert edits(workspace, "acc2") == edits(workspace, "acc1")


def test_batch_that_does_not_split_is_refused(workspace):
    proc = train(workspace, "--run-id", "odd", "--max-steps", "2", "--batch-size", "15", procs=2)
    assert proc.returncode != 0
    assert "batch_size 15 does not split over 2 processes; use a multiple of 2" in proc.stderr


def test_detach_under_torchrun_says_how(workspace):
    proc = train(workspace, "--detach", procs=2)
    assert proc.returncode != 0 and "nohup torchrun" in proc.stderr


def test_store_state_carries_an_edit_to_another_replica():
    a, b = small_model(), small_model()
    opt_a = torch.optim.AdamW(a.parameters(), lr=1e-2)
    opt_b = torch.optim.AdamW(b.parameters(), lr=1e-2)
    for model, opt in ((a, opt_a), (b, opt_b)):  # Adam moments on every row
        s = model.splats
        (s.mu_raw.sum() + s.log_alpha.sum() + s.kappa_raw.sum()).backward()
        opt.step()
    a.splats.spawn(torch.randn(5, a.cfg.splat_dim), step=3, phase=1, optimizer=opt_a)  # rank 0's edit
    adopt_store_state(b.splats, store_state(a.splats, opt_a), opt_b)
    assert b.splats.n == a.splats.n == 64 + 5
    for key, value in a.splats.state_dict().items():
        if torch.is_tensor(value):
            assert torch.equal(value, b.splats.state_dict()[key]), key
    params_b = {id(p) for group in opt_b.param_groups for p in group["params"]}
    for name in ("mu_raw", "log_alpha", "kappa_raw"):
        new = getattr(b.splats, name)
        assert id(new) in params_b  # the optimiser steps the adopted Parameter
        for key in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(opt_b.state[new][key], opt_a.state[getattr(a.splats, name)][key])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _check_replicas(rank: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    replicas = Replicas(rank, 2)
    model = small_model()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    replicas.check_same(model, opt)  # same seed: same model
    if rank == 0:
        model.splats.spawn(torch.randn(3, model.cfg.splat_dim), step=1, phase=0, optimizer=opt)
    replicas.sync_store(model, opt)  # rank 0's edit reaches rank 1 and the check passes
    outcome = [model.splats.n]
    if rank == 1:
        with torch.no_grad():
            model.splats.kappa_raw[0] += 1e-3  # a replica that drifted
    try:
        replicas.check_same(model, opt)
        outcome.append("passed")
    except ReplicaError:
        outcome.append("raised")
    results[rank] = outcome
    replicas.close()


def test_replicas_that_differ_are_caught_on_every_rank():
    results = mp.Manager().dict()
    mp.spawn(_check_replicas, args=(_free_port(), results), nprocs=2, join=True)
    assert dict(results) == {0: [67, "raised"], 1: [67, "raised"]}
