"""The CLI end to end on tiny data, every bad input, and interrupted-then-resumed training."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import epoch_records
from conftest import train_args as shared_train_args
from PIL import Image

from reffakd.cli import main


def train_args(data: Path, out: Path, *extra: str) -> list[str]:
    return shared_train_args(data, out, *extra, epochs=2, batch_size=64)


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "reffakd", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


def assert_one_line_error(result, capsys=None, pattern: str = "") -> str:
    err = result.stderr if capsys is None else capsys.readouterr().err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("reffakd: error:")
    assert pattern.lower() in lines[0].lower(), lines[0]
    return lines[0]


def assert_plot(path: Path) -> None:
    """A PNG that decodes, of a plausible size, and not a blank canvas."""
    with Image.open(path) as image:
        assert image.format == "PNG" and min(image.size) >= 200
        pixels = np.asarray(image.convert("L"))
    assert pixels.std() > 10 and len(np.unique(pixels)) > 20


def soft_label_args(data: Path, out: Path, epochs: int = 1, k: int = 4) -> list[str]:
    """CLI arguments of a short ``soft-labels`` run on the tiny Fashion-MNIST."""
    return [
        "soft-labels",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(data),
        "--out",
        str(out),
        "--epochs",
        str(epochs),
        "-k",
        str(k),
        "--no-progress",
    ]


def test_soft_labels_then_reffakd_student(tiny_data, tmp_path, capsys):
    sl_dir = tmp_path / "sl"
    code = main(soft_label_args(tiny_data, sl_dir, epochs=1, k=5))
    assert code == 0
    assert_plot(sl_dir / "soft_labels.png")
    payload = torch.load(sl_dir / "soft_labels.pt", weights_only=True)
    table, meta = payload["soft_labels"], payload["meta"]
    assert table.shape == (10, 10)
    assert torch.allclose(table.sum(1), torch.ones(10), atol=1e-5)
    for key in (
        "dataset",
        "class_names",
        "seed",
        "samples_per_class",
        "boost",
        "temperature",
        "reconstruction_mse_val",
        "ae_weights_sha256",
    ):
        assert key in meta
    assert meta["boost"] == 0.008 and meta["samples_per_class"] == 5

    out = tmp_path / "student"
    code = main(
        train_args(
            tiny_data, out, "--method", "reffakd", "--soft-labels", str(sl_dir / "soft_labels.pt")
        )
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "best epoch" in printed and "last epoch 2" in printed
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2]
    for key in (
        "train_loss",
        "train_kd",
        "val_top1",
        "val_top5",
        "test_top1",
        "test_top5",
        "lr",
        "seconds",
    ):
        assert key in records[0]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"]["val_top1"] == max(r["val_top1"] for r in records)
    assert summary["selection_metric"] == "val_top1"
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["method"] == "reffakd" and config["optim"]["epochs"] == 2
    last = torch.load(out / "checkpoints" / "last.pt", weights_only=True)
    best = torch.load(out / "checkpoints" / "best.pt", weights_only=True)
    assert last["epoch"] == 2 and best["epoch"] == summary["best_epoch"]
    assert best["record"]["val_top1"] == summary["best"]["val_top1"]
    kept = torch.load(out / "soft_labels.pt", weights_only=True)["soft_labels"]
    assert torch.equal(kept, table)  # the run keeps the table it trained with
    assert_plot(out / "soft_labels.png")
    assert_plot(out / "curves.png")


def test_soft_labels_are_bit_identical_for_the_same_seed(tiny_data, tmp_path):
    tables = []
    for name in ("a", "b"):
        assert main(soft_label_args(tiny_data, tmp_path / name)) == 0
        tables.append(torch.load(tmp_path / name / "soft_labels.pt", weights_only=True))
    assert torch.equal(tables[0]["soft_labels"], tables[1]["soft_labels"])
    assert tables[0]["meta"]["ae_weights_sha256"] == tables[1]["meta"]["ae_weights_sha256"]


def test_reffakd_without_file_trains_the_autoencoder_inside_the_run(tiny_data, tmp_path):
    out = tmp_path / "inline"
    assert main(train_args(tiny_data, out, "--method", "reffakd", "--ae-epochs", "1")) == 0
    made = torch.load(out / "ae" / "soft_labels.pt", weights_only=True)
    kept = torch.load(out / "soft_labels.pt", weights_only=True)
    assert torch.equal(made["soft_labels"], kept["soft_labels"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["soft_labels"]["ae_weights_sha256"] == made["meta"]["ae_weights_sha256"]
    assert summary["phases"]["teacher_signal_seconds"] > 0
    phases = [phase["phase"] for phase in summary["cost"]["phases"]]
    assert phases == ["autoencoder_training", "soft_label_computation", "student_training"]


def _final_state(run: Path) -> tuple[list[dict], dict]:
    records = epoch_records(run)
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"]
    return records, state


def test_interrupted_run_resumes_bit_identically(tiny_data, tmp_path):
    args = [
        "train",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tiny_data),
        "--student",
        "lenet5",
        "--method",
        "reffakd",
        "--ae-epochs",
        "1",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--no-progress",
        "--set",
        "optim.milestones=[2,3]",
    ]
    full = run_cli(*args, "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr

    killed = run_cli(*args, "--out", str(tmp_path / "cut"), env={"REFFAKD_FAULT_AFTER_EPOCH": "2"})
    assert killed.returncode == -9  # SIGKILL after epoch 2's checkpoint: a real interruption
    assert not (tmp_path / "cut" / "summary.json").exists()
    resumed = run_cli("train", "--resume", str(tmp_path / "cut"), "--no-progress")
    assert resumed.returncode == 0, resumed.stderr

    full_records, full_state = _final_state(tmp_path / "full")
    cut_records, cut_state = _final_state(tmp_path / "cut")
    assert full_records == cut_records
    assert full_state.keys() == cut_state.keys()
    for key in full_state:
        assert torch.equal(full_state[key], cut_state[key]), key


# --------------------------------------------------------------------------- bad inputs
def test_dataset_not_found(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(train_args(empty, tmp_path / "out")) == 2
    line = assert_one_line_error(None, capsys, "fashion-mnist")
    assert str(empty) in line and "REFFAKD_DATA" in line
    assert not (tmp_path / "out").exists()


def test_truncated_data_file(tiny_data, tmp_path, capsys):
    broken = tmp_path / "broken" / "fashion-mnist"
    broken.mkdir(parents=True)
    for f in (tiny_data / "fashion-mnist").iterdir():
        data = f.read_bytes()
        (broken / f.name).write_bytes(data[: len(data) // 2] if "train-images" in f.name else data)
    assert main(train_args(broken.parent, tmp_path / "out")) == 2
    assert_one_line_error(None, capsys, "train-images")


def test_image_label_count_mismatch(tiny_data, tmp_path, capsys):
    from conftest import write_idx_labels

    broken = tmp_path / "mismatch" / "fashion-mnist"
    broken.mkdir(parents=True)
    for f in (tiny_data / "fashion-mnist").iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    write_idx_labels(broken / "t10k-labels-idx1-ubyte.gz", torch.arange(37) % 10)
    assert main(train_args(broken.parent, tmp_path / "out")) == 2
    assert_one_line_error(None, capsys, "mismatch")


@pytest.mark.parametrize(
    ("table", "pattern"),
    [(torch.full((4, 4), 0.25), "shape"), (torch.rand(10, 10) + 0.5, "probability")],
)
def test_bad_soft_label_files(tiny_data, tmp_path, capsys, table, pattern):
    path = tmp_path / "bad.pt"
    torch.save({"soft_labels": table, "meta": {}}, path)
    before = path.read_bytes()
    assert (
        main(
            train_args(
                tiny_data, tmp_path / "out", "--method", "reffakd", "--soft-labels", str(path)
            )
        )
        == 2
    )
    assert_one_line_error(None, capsys, pattern)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--dataset", "fashion-mnistt"], "unknown dataset"),
        (["--student", "lenet6"], "unknown model"),
        (["--method", "refakd"], "unknown method"),
    ],
)
def test_unknown_names(tiny_data, tmp_path, capsys, flags, pattern):
    args = train_args(tiny_data, tmp_path / "out") + flags
    assert main(args) == 2
    assert_one_line_error(None, capsys, pattern)
    assert not (tmp_path / "out").exists()


def test_corrupt_checkpoint_on_resume(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "ce")) == 0
    (out / "summary.json").unlink()
    ckpt = out / "checkpoints" / "last.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 2
    assert_one_line_error(None, capsys, "corrupt")
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert before == after


def test_run_directory_in_use_or_finished_is_refused(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "ce")) == 0
    capsys.readouterr()
    assert main(train_args(tiny_data, out, "--method", "ce")) == 2
    assert_one_line_error(None, capsys, "already holds")

    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / ".lock").write_text('{"pid": 999999999, "host": "gone"}')  # a crashed run's file
    holder = (
        "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
        "fcntl.flock(fd, fcntl.LOCK_EX); os.ftruncate(fd, 0); "
        'os.write(fd, b\'{"pid": 7, "host": "h"}\'); '
        "print('locked', flush=True); time.sleep(60)"
    )
    sleeper = subprocess.Popen(
        [sys.executable, "-c", holder, str(busy / ".lock")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert sleeper.stdout.readline().strip() == "locked"
        assert main(train_args(tiny_data, busy, "--method", "ce")) == 2
        assert_one_line_error(None, capsys, "in use by process 7 on h")
    finally:
        sleeper.kill()
        sleeper.wait()
    # the kernel dropped the dead process's lock: the leftover file does not block the run
    assert main(train_args(tiny_data, busy, "--method", "ce")) == 0
    assert not (busy / ".lock").exists()


def test_module_entry_point_reports_errors_without_traceback(tmp_path):
    result = run_cli("train", "--dataset", "nope", "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert_one_line_error(result, None, "unknown dataset")


def test_resume_after_a_kill_while_the_inline_autoencoder_trains(tiny_data, tmp_path):
    out = tmp_path / "run"
    args = train_args(tiny_data, out, "--method", "reffakd", "--ae-epochs", "2")
    killed = run_cli(*args, env={"REFFAKD_FAULT_AFTER_EPOCH": "1"})
    assert killed.returncode == -9  # SIGKILL after the autoencoder's first epoch
    ae_epochs = (out / "ae" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in ae_epochs] == [1]
    assert not (out / "checkpoints").exists()  # the student had not started
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0

    full = tmp_path / "full"
    assert main(train_args(tiny_data, full, "--method", "reffakd", "--ae-epochs", "2")) == 0
    for name in ("ae/soft_labels.pt", "soft_labels.pt"):
        made = torch.load(out / name, weights_only=True)
        expected = torch.load(full / name, weights_only=True)
        assert torch.equal(made["soft_labels"], expected["soft_labels"]), name
    ae_state = torch.load(out / "ae" / "checkpoints" / "last.pt", weights_only=True)["model"]
    ae_full = torch.load(full / "ae" / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(ae_state[k], ae_full[k]) for k in ae_full)
    cut_records, cut_state = _final_state(out)
    full_records, full_state = _final_state(full)
    assert cut_records == full_records
    assert all(torch.equal(cut_state[k], full_state[k]) for k in full_state)


def test_soft_labels_resume_keeps_the_runs_own_config(tiny_data, tmp_path):
    out = tmp_path / "sl"
    first = soft_label_args(tiny_data, out, epochs=2)
    killed = run_cli(*first, env={"REFFAKD_FAULT_AFTER_EPOCH": "1"})
    assert killed.returncode == -9
    config = (out / "config.yaml").read_text()
    resumed = run_cli(
        "soft-labels",
        "--out",
        str(out),
        "--resume",
        "--no-progress",
        env={"REFFAKD_DATA": str(tiny_data)},
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (out / "config.yaml").read_text() == config
    assert (out / "soft_labels.pt").exists()


def test_soft_labels_resume_refuses_a_training_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "ce")) == 0
    (out / "summary.json").unlink()
    before = (out / "config.yaml").read_text()
    capsys.readouterr()
    assert main(["soft-labels", "--out", str(out), "--resume", "--no-progress"]) == 2
    line = assert_one_line_error(None, capsys, "is a training run, not a soft-labels run")
    assert f"continue it with `reffakd train --resume {out}`" in line
    assert (out / "config.yaml").read_text() == before


@pytest.mark.parametrize(
    ("flags", "pattern"),
    [
        (["--set", "optim.epochs=abc"], "must be an integer"),
        (["--set", "optim.milestones=5"], "must be a list"),
        (["--set", "data=3"], "must be a mapping"),
        (["--set", "augment.crop_padding=-3"], "crop_padding"),
        (["--epochs", "0"], "epochs must be >= 1"),
        (["--batch-size", "0"], "batch_size"),
        (["--set", "data.val_fraction=1.5"], "val_fraction"),
    ],
)
def test_bad_config_values_are_one_line_errors(tiny_data, tmp_path, capsys, flags, pattern):
    assert main(train_args(tiny_data, tmp_path / "out", *flags)) == 2
    assert_one_line_error(None, capsys, pattern)
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_unavailable_device_is_a_one_line_error(tiny_data, tmp_path, capsys):
    assert main(train_args(tiny_data, tmp_path / "out", "--device", "cuda")) == 2
    assert_one_line_error(None, capsys, "CUDA is not available")
    assert not (tmp_path / "out").exists()
