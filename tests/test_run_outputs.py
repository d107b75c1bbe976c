"""What a run leaves to look at: report.html after train and soft-labels, the command line,
metrics.csv, TensorBoard events, ``reffakd show``, and the CLI's small comforts."""

from __future__ import annotations

import builtins
import html
import json
import shlex
import sys
from pathlib import Path

import pytest
from conftest import one_line_error, train_args

import reffakd.cli as cli
from reffakd.cli import main
from reffakd.training.sinks import metrics_csv, scalar_tag

CLI_SOURCE = Path(cli.__file__)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_data, module_env) -> tuple[Path, list[str], str]:
    """One tiny ce run made through the CLI; its arguments and what it printed."""
    out = tmp_path_factory.mktemp("runs") / "ce"
    argv = train_args(tiny_data, out, "--method", "ce", epochs=2, batch_size=100)
    import io
    from contextlib import redirect_stdout

    printed = io.StringIO()
    with redirect_stdout(printed):
        assert main(argv) == 0
    return out, argv, printed.getvalue()


def test_train_records_its_command_and_writes_its_report(finished_run) -> None:
    out, argv, printed = finished_run
    command = shlex.join(["reffakd", *argv])
    assert (out / "command.txt").read_text() == command + "\n"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["command"] == command
    assert printed.splitlines()[-1] == f"report: {out / 'report.html'}"
    page = (out / "report.html").read_text()
    assert html.escape(command) in page and "As recorded in summary.json" in page
    assert f"{summary['best']['val_top1']:.2f}" in page


def test_metrics_csv_is_metrics_jsonl_as_a_table(finished_run) -> None:
    out, _, _ = finished_run
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert (out / "metrics.csv").read_text() == metrics_csv(records)
    header, *rows = (out / "metrics.csv").read_text().splitlines()
    assert header.split(",")[:3] == ["epoch", "lr", "train_loss"] and len(rows) == 2
    assert float(rows[1].split(",")[header.split(",").index("val_top1")]) == records[1]["val_top1"]


def test_metrics_csv_keeps_columns_that_appear_later() -> None:
    text = metrics_csv([{"epoch": 1, "a": 0.5}, {"epoch": 2, "a": 0.25, "b": 3}])
    assert text == "epoch,a,b\n1,0.5,\n2,0.25,3\n"


def test_show_sums_a_run_up_on_one_screen(finished_run, capsys) -> None:
    out, _, _ = finished_run
    summary = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert len(lines) < 25
    assert "method   ce: source none, loss ce" in lines
    assert any(line.startswith("student  lenet5 (") for line in lines)
    best = f"{summary['best']['val_top1']:.2f}%"
    best_row = f"best ({summary['best_epoch']})"
    assert any(line.startswith(best_row) and best in line for line in lines)
    assert f"report   {out / 'report.html'}" in lines
    assert "signal   none (labels only)" in lines


def test_show_an_unfinished_run_and_refuse_a_non_run(finished_run, tmp_path, capsys) -> None:
    out, _, _ = finished_run
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.yaml", "metrics.jsonl"):
        (unfinished / name).write_text((out / name).read_text())
    assert main(["show", str(unfinished)]) == 0
    text = capsys.readouterr().out
    assert "(unfinished)" in text and "epoch 2 of 2" in text
    assert f"reffakd train --resume {unfinished}" in text
    assert main(["show", str(tmp_path / "nothing")]) == 2
    assert "is not a directory" in one_line_error(capsys)


def test_report_command_prints_one_line(finished_run, capsys) -> None:
    out, _, _ = finished_run
    (out / "report.html").unlink()
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    assert capsys.readouterr().out == f"report: {out / 'report.html'}\n"
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_a_failed_report_is_a_warning_not_a_failed_run(tiny_data, tmp_path, monkeypatch, capsys):
    def broken(directory: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(cli.commands, "write_report", broken)
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--method", "ce", epochs=1, batch_size=100)) == 0
    captured = capsys.readouterr()
    assert (out / "summary.json").exists()
    assert captured.err.strip() == (
        f"reffakd: warning: report not written (OSError: disk full); retry with "
        f"`reffakd report {out}`."
    )


def test_soft_labels_write_their_report_and_command(tiny_data, tmp_path, capsys) -> None:
    out = tmp_path / "aesl"
    argv = [
        "soft-labels",
        "--dataset",
        f"fashion-mnist:{tiny_data}",
        "--out",
        str(out),
        "--epochs",
        "1",
        "-k",
        "4",
        "--no-progress",
        "--set",
        "optim.milestones=[1]",
    ]
    assert main(argv) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out.splitlines()
    assert (out / "command.txt").read_text() == shlex.join(["reffakd", *argv]) + "\n"
    page = (out / "report.html").read_text()
    assert "Soft-label run: AESL · fashion-mnist" in page
    assert json.loads((out / "summary.json").read_text())["command"] == shlex.join(
        ["reffakd", *argv]
    )


# ---------------------------------------------------------------------------- --dataset NAME:PATH
def test_dataset_with_a_path_is_dataset_and_data_dir(tiny_data, tmp_path, capsys) -> None:
    config_of = tmp_path / "a"
    argv = train_args(tiny_data, config_of, "--method", "ce", epochs=1, batch_size=100)
    at = argv.index("--data-dir")
    del argv[at : at + 2]
    argv[argv.index("fashion-mnist")] = f"fashion-mnist:{tiny_data}"
    assert main(argv) == 0
    recorded = (config_of / "config.yaml").read_text()
    assert "name: fashion-mnist" in recorded and f"data_dir: {tiny_data}" in recorded
    capsys.readouterr()
    clash = [*argv, "--data-dir", str(tiny_data)]
    assert main(clash) == 2
    assert "already names the folder; drop --data-dir" in one_line_error(capsys)
    assert main(["train", "--dataset", "imagefolder:", "--out", str(tmp_path / "b")]) == 2
    assert "use NAME, or NAME:PATH" in one_line_error(capsys)


# ---------------------------------------------------------------------------- TensorBoard
def test_tensorboard_tags() -> None:
    assert [scalar_tag(k) for k in ("train_kd", "val_top1", "test_loss", "lr", "seconds")] == [
        "train/kd",
        "val/top1",
        "test/loss",
        "lr",
        "time/seconds",
    ]


def test_tensorboard_events_read_back(tiny_data, tmp_path) -> None:
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    argv = train_args(tiny_data, out, "--method", "ls", "--tensorboard", epochs=2, batch_size=100)
    assert main(argv) == 0
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/soft_ce", "train/top1", "val/top1", "test/top1", "lr"} <= tags
    assert {"time/seconds", "time/train_seconds"} <= tags
    for tag, key in (("train/soft_ce", "train_soft_ce"), ("val/top1", "val_top1"), ("lr", "lr")):
        scalars = events.Scalars(tag)
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in records], rel=1e-6)


def test_tensorboard_missing_is_one_line_and_writes_nothing(tiny_data, tmp_path, monkeypatch,
                                                            capsys) -> None:  # fmt: skip
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):
        if name.split(".")[0] == "tensorboard":
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    for module in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    out = tmp_path / "run"
    assert main(train_args(tiny_data, out, "--tensorboard", epochs=1)) == 2
    assert "--tensorboard needs the optional package tensorboard: pip install" in one_line_error(
        capsys
    )
    assert not out.exists()


# ---------------------------------------------------------------------------- completion
def test_shell_completion_when_argcomplete_is_installed(monkeypatch) -> None:
    assert "# PYTHON_ARGCOMPLETE_OK" in CLI_SOURCE.read_text()[:1024]  # argcomplete's marker
    seen = []
    fake = type(sys)("argcomplete")
    fake.autocomplete = lambda parser: seen.append(parser.prog)
    monkeypatch.setitem(sys.modules, "argcomplete", fake)
    cli.enable_completion(cli.build_parser())
    assert seen == ["reffakd"]
    monkeypatch.setitem(sys.modules, "argcomplete", None)  # not installed: nothing happens
    cli.enable_completion(cli.build_parser())
    assert seen == ["reffakd"]
