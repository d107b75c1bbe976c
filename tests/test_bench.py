import html
import json
import math
import shlex

import pytest
import yaml

from reffakd.cli import main
from reffakd.errors import UserError
from reffakd.experiments.bench import _add_ratios, load_suite, packaged_suites, run_suite
from reffakd.experiments.report import write_report
from reffakd.experiments.tables import format_mean_std, mean_std


def test_mean_and_sample_std():
    mean, std = mean_std([70.0, 72.0, 74.0])
    assert mean == pytest.approx(72.0)
    assert std == pytest.approx(2.0)  # sample std: sqrt(((−2)² + 0 + 2²) / (3 − 1))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))
    assert format_mean_std([70.0, 72.0, 74.0]) == "72.00 ± 2.00"
    assert format_mean_std([71.234]) == "71.23"


def test_packaged_suites_load():
    names = packaged_suites()
    for name in (
        "fmnist-quick",
        "fmnist",
        "cifar10-quick",
        "cifar10",
        "paper-cifar100",
        "paper-tinyimagenet",
    ):
        assert name in names
        assert load_suite(name).methods
    with pytest.raises(UserError, match="unknown suite"):
        load_suite("no-such-suite")


def tiny_suite(tmp_path, methods, seeds):
    suite = {
        "name": "tiny",
        "datasets": ["fashion-mnist"],
        "seeds": seeds,
        "methods": methods,
        "student": {
            "student": "lenet5",
            "optim": {"epochs": 1, "batch_size": 100, "milestones": [1]},
        },
        "teacher": {"student": "lenet5", "optim": {"epochs": 1, "batch_size": 100}},
        "ae": {"optim": {"epochs": 1, "batch_size": 100}, "samples_per_class": 4},
    }
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def test_tiny_suite_runs_shares_artefacts_and_resumes(tiny_data, tmp_path, capsys):
    path = tiny_suite(tmp_path, ["ce", "ls", "reffakd", "tfkd-self", "kd"], [0, 1])
    out = tmp_path / "bench"
    results = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    for name in (
        "results.md",
        "results.csv",
        "results.json",
        "accuracy_vs_cost.png",
        "curves.png",
        "aesl_fashion-mnist.png",
    ):
        assert (out / name).exists(), name
    rows = {row["method"]: row for row in results["rows"]}
    assert set(rows) == {"ce", "ls", "reffakd", "tfkd-self", "kd"}
    assert all(row["seeds"] == [0, 1] for row in rows.values())
    assert len(list((out / "shared" / "fashion-mnist").glob("s*/aesl/soft_labels.pt"))) == 2
    assert len(list((out / "shared" / "fashion-mnist").glob("s*/teacher/summary.json"))) == 2
    self_config = yaml.safe_load(
        (out / "runs" / "fashion-mnist" / "tfkd-self" / "s0" / "config.yaml").read_text()
    )
    assert self_config["source"]["run"].endswith("runs/fashion-mnist/ce/s0")
    markdown = (out / "results.md").read_text()
    assert "| fashion-mnist | reffakd | 2 |" in markdown and "±" in markdown
    assert "Seeds in this table: 0, 1." in markdown
    capsys.readouterr()

    (out / "runs" / "fashion-mnist" / "ls" / "s1" / "summary.json").unlink()
    again = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    printed = capsys.readouterr().out
    assert printed.count("skip (finished)") == 11  # 2 teachers + 10 runs, one unfinished
    assert "resume:" in printed and "ls/s1" in printed
    assert json.loads((out / "results.json").read_text())["rows"] == again["rows"]


def test_bench_cli(tiny_data, tmp_path, capsys):
    path = tiny_suite(tmp_path, ["ce"], [0])
    argv = ["bench", str(path), "--out", str(tmp_path / "b"), "--data-dir", str(tiny_data)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| fashion-mnist | ce | 1 |" in printed
    # The bench's command line is kept, and its report written at the end.
    assert (tmp_path / "b" / "command.txt").read_text() == shlex.join(["reffakd", *argv]) + "\n"
    report = tmp_path / "b" / "report.html"
    assert f"report: {report}" in printed.splitlines()
    page = report.read_text()
    assert "Bench: tiny" in page and html.escape(shlex.join(["reffakd", *argv])) in page
    assert main(["bench", "nope"]) == 2


def test_teacher_signal_cost_is_accounted(tiny_data, tmp_path):
    path = tiny_suite(tmp_path, ["ce", "reffakd", "kd"], [0])
    out = tmp_path / "bench"
    results = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    rows = {row["method"]: row for row in results["rows"]}
    assert rows["ce"]["signal_flops"] == 0
    assert rows["reffakd"]["signal_flops"] > 0 and rows["kd"]["signal_flops"] > 0
    for key in ("flops", "seconds", "peak_mb"):
        assert rows["kd"][f"signal_{key}_vs_kd"] == pytest.approx(1.0)
        assert rows["ce"][f"signal_{key}_vs_kd"] == 0
    assert rows["reffakd"]["signal_peak_mb_vs_kd"] > 0
    summary = json.loads(
        (out / "runs" / "fashion-mnist" / "kd" / "s0" / "summary.json").read_text()
    )
    phases = [p["phase"] for p in summary["cost"]["phases"]]
    assert phases == ["teacher:teacher_training", "student_training"]
    student = summary["cost"]["phases"][-1]
    assert set(student["networks"]) == {"student", "teacher"}
    n = student["networks"]["teacher"]
    assert n["flops"] == n["forward_flops"] * n["samples_seen"]  # frozen: forward only
    signal = summary["cost"]["teacher_signal"]
    teacher_training = summary["cost"]["phases"][0]["total_flops"]
    assert signal["flops"] == pytest.approx(teacher_training + n["flops"])


def test_lwkd_runs_of_one_seed_share_one_light_teacher(tiny_data, tmp_path):
    path = tiny_suite(tmp_path, ["lwkd", "lwkd-noadv"], [0])
    suite = yaml.safe_load(path.read_text())
    small_teacher = {"source": {"teacher_epochs": 1, "per_class": 20}}
    suite["method_options"] = {"lwkd": small_teacher, "lwkd-noadv": small_teacher}
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "bench"
    results = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    runs = out / "runs" / "fashion-mnist"
    trained = runs / "lwkd" / "s0" / "light_teacher"
    assert (trained / "summary.json").exists()
    assert not (runs / "lwkd-noadv" / "s0" / "light_teacher").exists()
    config = yaml.safe_load((runs / "lwkd-noadv" / "s0" / "config.yaml").read_text())
    assert config["source"]["run"] == str(trained)
    rows = {row["method"]: row for row in results["rows"]}
    assert rows["lwkd-noadv"]["signal_flops"] == rows["lwkd"]["signal_flops"] > 0


def test_a_diverging_method_run_is_recorded_and_the_bench_goes_on(tiny_data, tmp_path, capsys):
    path = tiny_suite(tmp_path, ["ce", "ls"], [0])
    suite = yaml.safe_load(path.read_text())
    suite["method_options"] = {"ls": {"optim": {"lr": 1e30}}}  # blows up within an epoch
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "bench"
    results = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    rows = {row["method"]: row for row in results["rows"]}
    assert rows["ce"]["seeds"] == [0] and rows["ce"]["diverged"] == []
    assert rows["ls"]["seeds"] == [] and rows["ls"]["diverged"][0]["seed"] == 0
    assert "non-finite loss" in rows["ls"]["diverged"][0]["error"]
    run = out / "runs" / "fashion-mnist" / "ls" / "s0"
    assert (run / "diverged.json").exists() and not (run / "summary.json").exists()
    markdown = (out / "results.md").read_text()
    assert "| fashion-mnist | ls | 0 | – |" in markdown
    assert "Diverged (non-finite loss" in markdown and "- fashion-mnist ls seed 0: " in markdown
    assert "diverged: " in capsys.readouterr().out

    again = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    assert "skip (diverged; delete the folder to try again)" in capsys.readouterr().out
    assert again["rows"][1]["diverged"] == rows["ls"]["diverged"]
    page = write_report(out).read_text()
    assert "Diverged (non-finite loss; not in the means): fashion-mnist ls seed 0: " in page


def test_cost_ratios_fall_back_to_another_teacher_method_when_kd_has_no_run():
    def row(method, flops, seeds):
        return {"dataset": "d", "method": method, "seeds": seeds, "signal_flops": flops,
                "signal_seconds": flops, "signal_peak_mb": flops}  # fmt: skip

    rows = [row("ce", 0, [0]), row("kd", 0, []), row("reffakd", 5, [0]), row("kd+dkd", 50, [0])]
    _add_ratios(rows)
    assert [r["signal_flops_vs_kd"] for r in rows] == [0, 0, 0.1, 1.0]
    rows[1].update(seeds=[0], signal_flops=25)  # kd finished: it is the reference again
    _add_ratios(rows)
    assert rows[2]["signal_flops_vs_kd"] == 0.2 and rows[3]["signal_flops_vs_kd"] == 2.0
