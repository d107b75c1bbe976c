"""Multi-process training under torchrun (gloo, CPU): equal to one process, rank 0 alone writes,
resume after the whole job is killed; and the sharding maths without a process group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_image_splits, train_args, write_tiny_idx_dataset

from reffakd.cli import main
from reffakd.config import OptimConfig, TrainConfig
from reffakd.data.augment import AugmentPolicy, BatchTransform
from reffakd.data.loader import BatchLoader, shard_rows
from reffakd.distill.build import check_shards
from reffakd.errors import UserError
from reffakd.training.distributed import DistContext, rank_seed

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch has no torch.distributed"
)

EPOCHS = 3
# 269 training images (299 minus a 30-image validation split): batches of 64 leave a last batch
# of 13, split 7 / 6 over two processes, so the uneven-share loss weighting is exercised.
RUN = ("--student", "mlp", "--method", "ls", "--batch-size", "64", "--epochs", str(EPOCHS))


def torchrun(*args: str, env: dict | None = None, procs: int = 2) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(procs), "-m", "reffakd", *args]
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


def run_args(data: Path, out: Path, *extra: str) -> list[str]:
    args = train_args(data, out, *extra)
    for flag in ("--epochs", "--batch-size"):  # RUN sets these
        at = args.index(flag)
        del args[at : at + 2]
    return args


def files(run: Path) -> list[str]:
    return sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())


def metrics(run: Path) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if "seconds" not in k} for line in lines]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def odd_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("odd")
    write_tiny_idx_dataset(root / "fashion-mnist", n_train=299)
    return root


@pytest.fixture(scope="module")
def runs(odd_data, tmp_path_factory, module_env) -> dict[str, Path]:
    """The same run in one process and in two (a module fixture: the tests below share them)."""
    base = tmp_path_factory.mktemp("runs")
    assert main(run_args(odd_data, base / "single", *RUN)) == 0
    ddp = torchrun(*run_args(odd_data, base / "ddp", *RUN))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    return {"single": base / "single", "ddp": base / "ddp", "base": base, "log": ddp.stdout}


@pytest.mark.slow
def test_two_processes_give_the_weights_of_one(runs):
    single, ddp = weights(runs["single"]), weights(runs["ddp"])
    assert single.keys() == ddp.keys()
    for key in single:
        assert torch.allclose(single[key], ddp[key], atol=1e-5, rtol=0), key
    for one, two in zip(metrics(runs["single"]), metrics(runs["ddp"]), strict=True):
        assert one.keys() == two.keys()
        for key in one:
            assert one[key] == pytest.approx(two[key], abs=1e-3), key
    summary = json.loads((runs["ddp"] / "summary.json").read_text())
    assert summary["distributed"] == {
        "world_size": 2,
        "batch_size": 64,
        "batch_size_per_process": 32,
    }
    assert runs["log"].count("run directory:") == 1  # one report for the job


@pytest.mark.slow
def test_only_rank_zero_writes(runs):
    assert files(runs["ddp"]) == files(runs["single"])
    assert [r["epoch"] for r in metrics(runs["ddp"])] == list(range(1, EPOCHS + 1))


@pytest.mark.slow
def test_ddp_resume_after_the_job_is_killed(runs, odd_data):
    cut = runs["base"] / "cut"
    killed = torchrun(*run_args(odd_data, cut, *RUN), env={"REFFAKD_FAULT_AFTER_EPOCH": "1"})
    assert killed.returncode != 0
    assert torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    assert not (cut / "summary.json").exists()
    resumed = torchrun("train", "--resume", str(cut), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert metrics(cut) == metrics(runs["ddp"])
    full = weights(runs["ddp"])
    for key, value in weights(cut).items():
        assert torch.equal(value, full[key]), key


@pytest.mark.slow
def test_inline_soft_labels_are_made_once_by_rank_zero(odd_data, tmp_path):
    args = ("--student", "mlp", "--method", "reffakd", "--ae-epochs", "1")
    assert main(train_args(odd_data, tmp_path / "single", *args)) == 0
    ddp = torchrun(*train_args(odd_data, tmp_path / "ddp", *args))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    assert files(tmp_path / "ddp") == files(tmp_path / "single")
    made = torch.load(tmp_path / "ddp" / "soft_labels.pt", weights_only=True)["soft_labels"]
    alone = torch.load(tmp_path / "single" / "soft_labels.pt", weights_only=True)["soft_labels"]
    assert torch.equal(made, alone)  # the autoencoder ran in one process, as in a plain run
    assert len((tmp_path / "ddp" / "ae" / "metrics.jsonl").read_text().splitlines()) == 1


# ----------------------------------------------------------------------- without a process group
def test_shards_cover_a_batch_once_in_order():
    for count in (1, 7, 13, 64):
        for world in (1, 2, 3, 4):
            parts = [shard_rows(count, r, world) for r in range(world)]
            rows = [i for part in parts for i in range(count)[part]]
            assert rows == list(range(count))
            sizes = [part.stop - part.start for part in parts]
            assert max(sizes) - min(sizes) <= 1


def test_each_rank_gets_its_share_of_the_one_process_augmented_batch():
    splits = tiny_image_splits()
    transform = BatchTransform(16, [0.3], [0.3], AugmentPolicy(2, True, 15.0))

    def epoch(rank: int, world: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(3)
        loader = BatchLoader(
            splits.train, 20, shuffle=True, generator=generator, rank=rank, world_size=world
        )
        return [
            transform(b.inputs, train=True, generator=generator, rows=b.rows, total=b.total)
            for b in loader
        ]

    whole = epoch(0, 1)
    shares = [epoch(rank, 3) for rank in range(3)]
    for step, batch in enumerate(whole):
        assert torch.equal(torch.cat([share[step] for share in shares]), batch)


def test_rank_weights_make_the_global_mean():
    # loss_r × n_r·W/N, averaged over W ranks, is the mean over all N samples.
    per_sample = torch.arange(13, dtype=torch.float64)
    world = 2
    parts = [per_sample[shard_rows(13, r, world)] for r in range(world)]
    weighted = [p.mean() * len(p) * world / 13 for p in parts]
    assert sum(weighted) / world == pytest.approx(per_sample.mean())


def test_batch_must_split_over_the_processes():
    splits = tiny_image_splits(n=50)
    two = DistContext(rank=0, world_size=2)
    with pytest.raises(UserError, match="does not split over 2 processes"):
        check_shards(TrainConfig(optim=OptimConfig(batch_size=15)), splits, two)
    three = DistContext(rank=0, world_size=3)
    with pytest.raises(UserError, match="last training batch would hold 2"):
        check_shards(TrainConfig(optim=OptimConfig(batch_size=24)), splits, three)
    check_shards(TrainConfig(optim=OptimConfig(batch_size=16)), splits, two)  # 50 % 16 = 2


def test_single_process_does_not_touch_torch_distributed(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    from reffakd.training import distributed

    def refuse(*args, **kwargs):
        raise AssertionError("a single process must not start a process group")

    monkeypatch.setattr(torch.distributed, "init_process_group", refuse)
    with distributed.process_group("cpu") as context:
        assert context == DistContext() and not context.enabled
        assert context.main_first(lambda: 5) == 5
        context.barrier()


def test_rank_seeds_are_the_run_seed_on_rank_zero_and_distinct_elsewhere():
    assert rank_seed(7, 0) == 7
    seeds = {rank_seed(7, r) for r in range(1, 8)}
    assert len(seeds) == 7 and 7 not in seeds and rank_seed(7, 1) == rank_seed(7, 1)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pskd", "ols"])
def test_self_kd_state_is_merged_over_the_processes(odd_data, tmp_path, method):
    """PS-KD's per-sample store and OLS's class sums are merged at each epoch's end, so two
    processes train the weights (and keep the state) of one."""
    run = ("--student", "mlp", "--method", method, "--batch-size", "64", "--epochs", "3")
    assert main(run_args(odd_data, tmp_path / "single", *run)) == 0
    ddp = torchrun(*run_args(odd_data, tmp_path / "ddp", *run))
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single, two = weights(tmp_path / "single"), weights(tmp_path / "ddp")
    for key in single:
        assert torch.allclose(single[key], two[key], atol=1e-5, rtol=0), key
    states = [
        torch.load(tmp_path / name / "checkpoints" / "last.pt", weights_only=False)["extra"]
        for name in ("single", "ddp")
    ]
    for key, value in states[0]["source"].items():
        assert torch.allclose(value.float(), states[1]["source"][key].float(), atol=1e-5), key


def test_methods_that_add_samples_to_a_batch_refuse_torchrun(odd_data, tmp_path):
    run = ("--student", "mlp", "--method", "cskd", "--batch-size", "64", "--epochs", "1")
    ddp = torchrun(*run_args(odd_data, tmp_path / "ddp", *run))
    assert ddp.returncode != 0
    assert "reffakd: error: method 'cskd' adds samples to each batch" in ddp.stderr
    assert not (tmp_path / "ddp").exists()  # refused before anything was written
    assert "site-packages/reffakd" not in ddp.stderr and "src/reffakd" not in ddp.stderr
