"""The examples run, on tiny data, exactly as a reader would run them."""

from __future__ import annotations

import json
import re
import runpy
import sys
from pathlib import Path

import pytest
from conftest import train_args

from reffakd.cli import main

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def run_example(name: str, monkeypatch, capsys) -> str:
    monkeypatch.syspath_prepend(str(EXAMPLES))  # as `python examples/NAME.py` would
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), "--tiny"])
    capsys.readouterr()
    try:
        runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    finally:
        sys.modules.pop("your_data", None)
    return capsys.readouterr().out


def test_own_loop(monkeypatch, capsys) -> None:
    printed = run_example("own_loop.py", monkeypatch, capsys).splitlines()
    epochs = [line for line in printed if line.startswith("epoch ")]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1", "epoch 2", "epoch 3"]
    assert all(re.search(r"\(ce [0-9.]+, kd [0-9.]+\)$", line) for line in epochs)
    accuracy = float(re.fullmatch(r"test accuracy ([0-9.]+)%", printed[-1]).group(1))
    assert accuracy > 50  # ten bar heights; chance is 10%


def test_the_readme_shows_own_loop_as_it_is() -> None:
    """The README and docs/api.md show the example as it is."""
    code = (EXAMPLES / "own_loop.py").read_text()
    body = code.split('"""', 2)[2].strip()  # without the module docstring
    for page in ("README.md", "docs/api.md"):
        assert f"```python\n{body}\n```" in (REPO / page).read_text(), page


def test_hf_dataset(monkeypatch, capsys) -> None:
    pytest.importorskip("datasets", reason="the hf extra (datasets) is not installed")
    printed = run_example("hf_dataset.py", monkeypatch, capsys).splitlines()
    assert printed[0] == "classes: ['top', 'upper', 'lower', 'bottom']"
    rows = [[float(p) for p in line.split(":")[1].split()] for line in printed[2:6]]
    for index, row in enumerate(rows):
        assert sum(row) == pytest.approx(1.0, abs=2e-3)
        assert max(row) == row[index]  # each class is most similar to itself


def _epochs_and_accuracy(printed: list[str], pattern: str) -> tuple[list[str], float]:
    epochs = [line.split(":")[0] for line in printed if line.startswith("epoch ")]
    accuracy = next(
        re.search(pattern, line) for line in reversed(printed) if re.search(pattern, line)
    )
    return epochs, float(accuracy.group(1))


def test_lightning_module(monkeypatch, capsys) -> None:
    pytest.importorskip("lightning", reason="the lightning extra is not installed")
    printed = run_example("lightning_module.py", monkeypatch, capsys).splitlines()
    epochs, accuracy = _epochs_and_accuracy(printed, r"val accuracy ([0-9.]+)%$")
    assert epochs == ["epoch 1", "epoch 2", "epoch 3"]
    assert all(re.search(r"\(ce [0-9.]+, kd [0-9.]+\)", line) for line in printed if "val" in line)
    assert accuracy > 50  # ten bar heights; chance is 10%


def test_hf_trainer(monkeypatch, capsys) -> None:
    pytest.importorskip("transformers", reason="the trainer extra is not installed")
    pytest.importorskip("accelerate", reason="the trainer extra is not installed")
    printed = run_example("hf_trainer.py", monkeypatch, capsys).splitlines()
    epochs, accuracy = _epochs_and_accuracy(printed, r"^test accuracy ([0-9.]+)%$")
    assert epochs == ["epoch 1", "epoch 2", "epoch 3"]
    assert accuracy > 50


def test_own_model_from_the_command_line(tiny_data, tmp_path, monkeypatch, capsys) -> None:
    guide = (EXAMPLES / "own_model_cli.md").read_text()
    assert "--student my_models:small_cnn" in guide
    monkeypatch.chdir(EXAMPLES)  # the guide runs from examples/, where my_models.py is
    monkeypatch.setattr(sys, "path", list(sys.path))
    out = tmp_path / "small-cnn"
    extra = ["--student", "my_models:small_cnn", "--method", "reffakd", "--ae-epochs", "1",
             "--set", "ae.samples_per_class=4", "--set", "ae.optim.milestones=[1]"]  # fmt: skip
    try:
        assert main(train_args(tiny_data, out, *extra, epochs=1, batch_size=100)) == 0
        summary = json.loads((out / "summary.json").read_text())
        assert summary["student"] == "my_models:small_cnn"
        assert summary["student_parameters"] == 16 * 9 + 16 + 32 * 16 * 9 + 32 + 32 * 16 * 10 + 10
        assert main(["show", str(out)]) == 0
        assert "student  my_models:small_cnn" in capsys.readouterr().out
    finally:
        sys.modules.pop("my_models", None)
