"""What a new user meets on a first run: the schedule a short run gets, subsets of image data,
warnings for results that mean little, the log of each epoch, SIGTERM, file modes, messages and
the demo's baseline."""

from __future__ import annotations

import json
import os
import signal
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import epoch_records, train_args

from reffakd.cli import TRAIN_FLAGS, build_parser, main, resolve
from reffakd.config import DataConfig, SoftLabelConfig, TrainConfig
from reffakd.data.prepare import prepare_data
from reffakd.experiments.demo import compare_line
from reffakd.experiments.show import show
from reffakd.experiments.tables import warned_runs
from reffakd.files import atomic_write_text
from reffakd.training import engine
from reffakd.training.checks import constant_guess, uniform_soft_labels
from reffakd.training.recipe import scale_milestones
from reffakd.training.sinks import epoch_line
from reffakd.training.summary import RunSummary


def resolved(cls: type, command: str, flags: dict | None = None) -> object:
    args = build_parser().parse_args(command.split())
    return resolve(cls, args, TRAIN_FLAGS if flags is None else flags)


# --------------------------------------------------------------------------- 1. the schedule
@pytest.mark.parametrize(
    ("milestones", "of", "to", "expected"),
    [
        ([60, 120, 160], 200, 2, [1]),
        ([60, 120, 160], 200, 10, [3, 6, 8]),
        ([60, 120, 160], 200, 20, [6, 12, 16]),
        ([60, 120, 160], 200, 200, [60, 120, 160]),
        ([60, 120, 160], 200, 1, []),
        ([6, 8], 10, 5, [3, 4]),
    ],
)
def test_milestones_scale_with_the_epochs(milestones, of, to, expected):
    assert scale_milestones(milestones, of, to) == expected


def test_a_short_run_lowers_its_rate_and_small_data_gets_its_recipe():
    short = resolved(TrainConfig, "train --epochs 2")
    assert (short.optim.epochs, short.optim.lr, short.optim.milestones) == (2, 0.05, [1])
    default = resolved(TrainConfig, "train")  # Fashion-MNIST: the fmnist suite's schedule
    assert (default.optim.epochs, default.optim.lr, default.optim.milestones) == (10, 0.05, [6, 8])
    paper = resolved(TrainConfig, "train --dataset cifar100")
    assert (paper.optim.epochs, paper.optim.milestones) == (200, [60, 120, 160])
    assert resolved(TrainConfig, "train --dataset cifar100 --epochs 20").optim.milestones == [
        6,
        12,
        16,
    ]
    text = resolved(TrainConfig, "train --dataset sst2")
    assert (text.optim.epochs, text.optim.batch_size) == (5, 32)


def test_milestones_given_by_the_user_are_kept(tmp_path):
    assert resolved(TrainConfig, "train --epochs 4 --milestones 3").optim.milestones == [3]
    assert resolved(
        TrainConfig, "train --epochs 4 --set optim.milestones=[2]"
    ).optim.milestones == [2]
    config = tmp_path / "run.yaml"
    config.write_text("optim: {epochs: 50, milestones: [10], lr: 0.2}\n")
    from_file = resolved(TrainConfig, f"train --config {config}")
    assert (from_file.optim.epochs, from_file.optim.lr, from_file.optim.milestones) == (
        50,
        0.2,
        [10],
    )


def test_the_autoencoder_schedules_scale_too():
    inline = resolved(TrainConfig, "train --ae-epochs 8")
    assert inline.ae.optim.milestones == [6]  # 3 of 4 epochs
    soft = resolved(SoftLabelConfig, "soft-labels --out x --epochs 8", flags={})
    assert soft.optim.milestones == [6]


def test_list_datasets_shows_each_schedule(capsys):
    assert main(["list", "datasets"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["fashion-mnist"].endswith("10 epochs, lr 0.05, batch 128, x0.2 after 6, 8")
    assert rows["cifar100"].endswith("200 epochs, lr 0.1, batch 128, x0.2 after 60, 120, 160")


def test_train_prints_its_schedule(tiny_data, tmp_path, capsys):
    args = train_args(tiny_data, tmp_path / "run", epochs=2)
    args.remove("optim.milestones=[1]")
    args.remove("--set")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "schedule: 2 epochs, sgd lr 0.05, batch 128, lr x0.2 after epoch 1 "
        "(fashion-mnist's default lr; milestones scaled to the epochs)"
    ) in out
    recorded = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert recorded["optim"]["milestones"] == [1]


# --------------------------------------------------------------------------- 2. image subsets
def test_train_limit_takes_a_stratified_subset_of_images(tiny_data):
    whole = prepare_data(DataConfig(data_dir=str(tiny_data)))
    limited = prepare_data(DataConfig(data_dir=str(tiny_data), train_limit=100))
    assert len(whole.splits.train) == 270 and len(limited.splits.train) == 100
    assert torch.bincount(limited.splits.train.labels).tolist() == [10] * 10
    assert torch.equal(limited.splits.val.labels, whole.splits.val.labels)  # untouched
    assert limited.describe()["train_limit"] == 100
    assert limited.describe()["train_before_limit"] == 270
    again = prepare_data(DataConfig(data_dir=str(tiny_data), train_limit=100))
    assert torch.equal(again.splits.train.images, limited.splits.train.images)


# --------------------------------------------------------------------------- 3. warnings
def test_nearly_uniform_soft_labels_are_named():
    assert "nearly uniform (mean row entropy 3.315 of at most 3.322 bits)" in (
        uniform_soft_labels(3.315, 10) or ""
    )
    assert uniform_soft_labels(2.5, 10) is None
    assert uniform_soft_labels(None, 10) is None


class _Sized:
    def __init__(self, labels: list[int]) -> None:
        self.labels = torch.tensor(labels)

    def __len__(self) -> int:
        return len(self.labels)


def test_a_constant_guess_is_named():
    """The issue's SST-2 numbers: 55.78% of validation and 50.92% of test are 'positive'."""
    splits = SimpleNamespace(
        train=_Sized([0, 1]),
        val=_Sized([1] * 5578 + [0] * 4422),
        test=_Sized([1] * 444 + [0] * 428),
    )
    names = ["negative", "positive"]
    warning = constant_guess({"val_top1": 55.78, "test_top1": 50.92}, splits, names)
    assert warning is not None
    assert warning.startswith(
        "the student is no better than always predicting class 'positive': val 55.78% (the "
        "class is 55.78% of val), test 50.92% (50.92% of test); it has probably collapsed"
    )
    assert constant_guess({"val_top1": 80.0}, splits, names) is None


def test_warnings_reach_the_log_the_summary_show_and_the_report(tiny_data, tmp_path, capsys):
    run = tmp_path / "stuck"
    assert main(train_args(tiny_data, run, "--lr", "0")) == 0  # a constant model
    err = capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    if summary["best"]["val_top1"] > 10.1:  # lr 0 can still beat a guess by chance
        pytest.skip("the untrained model happens to beat a constant guess")
    assert "reffakd: warning: the student is no better than always predicting" in err
    assert summary["warnings"] and "collapsed to one class" in summary["warnings"][0]
    assert "warning" in show(run) and "collapsed to one class" in show(run)
    assert main(["report", str(run)]) == 0
    assert 'class="warning"' in (run / "report.html").read_text()


def test_soft_label_runs_record_a_uniform_warning(tiny_data, tmp_path, capsys):
    out = tmp_path / "aesl"
    args = ["soft-labels", "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1"]
    assert main([*args, "-k", "4", "--no-progress", "--boost", "0"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    entropy = summary["soft_labels"]["entropy_bits"]
    expected = uniform_soft_labels(entropy, 10)
    assert summary["warnings"] == ([expected] if expected else [])
    if expected:
        assert expected in capsys.readouterr().err
        assert "warning" in show(out)


def test_a_bench_lists_the_warnings_of_its_runs():
    rows = [
        {"dataset": "sst2", "method": "ce", "warnings": [{"seed": 0, "warning": "collapsed."}]},
        {"dataset": "sst2", "method": "ls", "warnings": []},
    ]
    assert warned_runs(rows) == ["sst2 ce seed 0: collapsed."]


# --------------------------------------------------------------------------- 4. log and SIGTERM
def test_each_epoch_prints_one_line(tiny_data, tmp_path, capsys):
    assert main(train_args(tiny_data, tmp_path / "run", epochs=2)) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if ", epoch " in line]
    assert [line.split(" | ")[0] for line in lines] == [
        "ce lenet5, epoch 1/2",
        "ce lenet5, epoch 2/2",
    ]
    assert all(" | val " in line and " | test " in line for line in lines)


def test_epoch_line_names_the_metric():
    record = {"epoch": 1, "lr": 0.1, "train_loss": 0.5, "val_mse": 0.0123, "seconds": 2.0}
    assert epoch_line("autoencoder", 1, 4, record, "mse") == (
        "autoencoder, epoch 1/4 | loss 0.5000 | val mse 0.0123 | lr 0.1 | 2.0s"
    )


def _final(run: Path) -> tuple[list[dict], dict]:
    records = epoch_records(run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    return records, {k: v.tolist() for k, v in state.items()}


def test_sigterm_says_it_stopped_and_the_run_resumes_identically(
    tiny_data, tmp_path, capsys, monkeypatch
):
    real = engine.Trainer.run_epoch

    def terminated(self, epoch, *args):
        if epoch == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self, epoch, *args)

    run = tmp_path / "run"
    args = train_args(tiny_data, run, epochs=3)
    monkeypatch.setattr(engine.Trainer, "run_epoch", terminated)
    before = signal.getsignal(signal.SIGTERM)
    assert main(args) == 143
    err = capsys.readouterr().err.strip()
    assert err == (
        "reffakd: stopped by SIGTERM after 1 finished epoch (checkpoint kept); continue with "
        f"`reffakd train --resume {run}`."
    )
    assert signal.getsignal(signal.SIGTERM) is before  # restored after the command
    assert not (run / ".lock").exists() and not list(run.rglob("*.tmp"))
    monkeypatch.setattr(engine.Trainer, "run_epoch", real)
    assert main(["train", "--resume", str(run), "--no-progress"]) == 0
    assert main(train_args(tiny_data, tmp_path / "whole", epochs=3)) == 0
    assert _final(run) == _final(tmp_path / "whole")


# --------------------------------------------------------------------------- 5. file modes
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_run_files_follow_the_umask(tmp_path, umask, mode):
    previous = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "file.txt", "text")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "file.txt").stat().st_mode) == mode


def test_a_run_directory_is_readable_by_others(tiny_data, tmp_path):
    previous = os.umask(0o022)
    try:
        assert main(train_args(tiny_data, tmp_path / "run")) == 0
    finally:
        os.umask(previous)
    for name in ("config.yaml", "summary.json", "metrics.jsonl", "checkpoints/last.pt"):
        assert stat.S_IMODE((tmp_path / "run" / name).stat().st_mode) == 0o644, name


# --------------------------------------------------------------------------- 6. messages
def test_soft_labels_accepts_a_soft_label_run_directory(tiny_data, tmp_path):
    labels = tmp_path / "aesl"
    soft = ["soft-labels", "--data-dir", str(tiny_data), "--out", str(labels), "--epochs", "1"]
    assert main([*soft, "-k", "4", "--no-progress"]) == 0
    run = tmp_path / "student"
    assert (
        main(train_args(tiny_data, run, "--method", "reffakd", "--soft-labels", str(labels))) == 0
    )
    summary = json.loads((run / "summary.json").read_text())
    assert summary["soft_labels"]["entropy_bits"] == pytest.approx(
        json.loads((labels / "summary.json").read_text())["soft_labels"]["entropy_bits"]
    )


def test_show_names_the_text_autoencoder_metric(tmp_path):
    run = tmp_path / "text-aesl"
    run.mkdir()
    (run / "config.yaml").write_text("data: {name: sst2}\n")
    summary = {
        "epochs": 1,
        "best_epoch": 1,
        "best": {"val_token_ce": 5.4321},
        "soft_labels": {
            "dataset": "sst2",
            "reconstruction_metric": "token_ce",
            "boost": 0.01,
            "temperature": 1.0,
            "entropy_bits": 0.9998,
        },
    }
    (run / "summary.json").write_text(json.dumps(summary))
    (run / "soft_labels.pt").write_bytes(b"")
    text = show(run)
    assert "val token CE 5.432" in text and "None" not in text


# --------------------------------------------------------------------------- 7. the demo
def test_the_demo_compares_with_its_baseline():
    ours = RunSummary(best={"val_top1": 89.30, "test_top1": 88.73})
    theirs = RunSummary(best={"val_top1": 89.10, "test_top1": 88.90})
    assert compare_line(ours, theirs) == (
        "ReffAKD vs ce baseline (best epochs): val 89.30% vs 89.10% (+0.20 points), "
        "test 88.73% vs 88.90% (-0.17 points)"
    )


def test_the_demo_trains_a_ce_baseline_beside_reffakd(tiny_data, tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--data-dir", str(tiny_data), "--out", str(out), "--epochs", "1"]
    assert main([*args, "--ae-epochs", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "phase 3, cross-entropy LeNet-5 baseline" in printed
    assert "ReffAKD vs ce baseline (best epochs): val " in printed
    baseline = yaml.safe_load((out / "ce-baseline" / "config.yaml").read_text())
    ours = yaml.safe_load((out / "config.yaml").read_text())
    assert baseline["method"] == "ce" and ours["method"] == "reffakd"
    assert baseline["optim"] == ours["optim"] and baseline["seed"] == ours["seed"]
    assert (out / "ce-baseline" / "report.html").exists()
