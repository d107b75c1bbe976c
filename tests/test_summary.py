"""RunSummary (summary.json, typed) and the run job's one resume policy."""

from __future__ import annotations

import json

import pytest

from reffakd.config import OptimConfig, TrainConfig
from reffakd.training.job import ResumeConflict, refuse_changes
from reffakd.training.rundir import RunDir
from reffakd.training.summary import RunSummary, read_summary, summary_line, write_summary

# A student run's summary.json as older versions wrote it: a list command and a teacher record
# whose key RunSummary has no field for.
OLD_STUDENT_SUMMARY = {
    "selection_metric": "val_top1",
    "selection_mode": "max",
    "epochs": 3,
    "best_epoch": 2,
    "best": {"epoch": 2, "val_top1": 81.5, "test_top1": 80.25},
    "last": {"epoch": 3, "val_top1": 80.0, "test_top1": 80.5},
    "method": {"name": "kd", "source": "teacher", "loss": "kd"},
    "student": "lenet5",
    "split_sizes": {"train": 90, "val": 10, "test": 20},
    "cost": {
        "phases": [{"phase": "teacher_training", "seconds": 4.5, "flops": 2e9}],
        "teacher_signal": {"flops": 3e9, "seconds": 5.0, "peak_mb": 12.0},
    },
    "command": ["reffakd", "train", "--method", "kd"],
    "warnings": [],
    "teacher": {"run": "runs/teacher", "student": "resnet8"},
}


def test_an_old_summary_reads_and_writes_back_unchanged(tmp_path) -> None:
    summary = RunSummary.from_json(OLD_STUDENT_SUMMARY)
    assert summary.best["test_top1"] == 80.25 and summary.best_epoch == 2
    assert summary.record("teacher") == {"run": "runs/teacher", "student": "resnet8"}
    assert summary.record("soft_labels") == {} and summary.warnings == []
    assert summary.phase_seconds("teacher_training") == 4.5
    assert summary.phase_seconds("synthesis") is None
    assert summary.signal_cost == {"flops": 3e9, "seconds": 5.0, "peak_mb": 12.0}
    assert summary.to_json() == OLD_STUDENT_SUMMARY
    write_summary(RunDir(tmp_path), summary)
    assert json.loads((tmp_path / "summary.json").read_text()) == OLD_STUDENT_SUMMARY
    assert read_summary(tmp_path) == summary


def test_a_run_that_trained_nothing_writes_no_epoch_records() -> None:
    made = RunSummary(soft_labels={"embedder": "hf:model"}, command="reffakd soft-labels")
    assert made.to_json() == {
        "soft_labels": {"embedder": "hf:model"},
        "cost": {},
        "command": "reffakd soft-labels",
        "warnings": [],
    }
    assert made.signal_cost == {"flops": 0.0, "seconds": 0.0, "peak_mb": 0.0}


def test_an_unfinished_or_unreadable_run_has_no_summary(tmp_path) -> None:
    assert read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("{truncated")
    assert read_summary(tmp_path) is None
    (tmp_path / "summary.json").write_text("[1, 2]")
    assert read_summary(tmp_path) is None


def test_summary_line_names_both_epochs() -> None:
    assert summary_line(RunSummary.from_json(OLD_STUDENT_SUMMARY)) == (
        "best epoch 2: val 81.50% test 80.25% | last epoch 3: val 80.00% test 80.50%"
    )
    assert summary_line(RunSummary(best_epoch=1, epochs=1)) == (
        "best epoch 1: val n/a test n/a | last epoch 1: val n/a test n/a"
    )


def test_a_resume_refuses_changes_outside_its_policy() -> None:
    recorded = TrainConfig(seed=0, optim=OptimConfig(epochs=3, lr=0.1))
    requested = TrainConfig(seed=1, optim=OptimConfig(epochs=5, lr=0.1), device="cpu")
    with pytest.raises(ResumeConflict) as refused:
        refuse_changes(recorded, requested, "changes {changes}", may_change=("optim.epochs",))
    assert refused.value.changes == {"seed": (0, 1)}  # device is free, epochs may change
    assert str(refused.value) == "changes seed 0 -> 1"
    with pytest.raises(ResumeConflict, match=r"optim.epochs 3 -> 5, seed 0 -> 1"):
        refuse_changes(recorded, requested, "changes {changes}")
    requested.seed = 0
    refuse_changes(recorded, requested, "changes {changes}", may_change=("optim.epochs",))
