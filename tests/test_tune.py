import json

import pytest
import torch
import yaml

from reffakd.cli import main
from reffakd.experiments.tune import parse_grid, trials


def test_grid_parsing_and_sampling():
    grid = parse_grid(["loss.alpha=0.1,0.5", "loss.temperature=1,4,20"])
    assert grid == {"loss.alpha": [0.1, 0.5], "loss.temperature": [1, 4, 20]}
    assert len(trials(grid, None, 0)) == 6
    sampled = trials(grid, 3, 0)
    assert len(sampled) == 3 and sampled == trials(grid, 3, 0)


def test_tune_selects_on_validation_and_writes_a_usable_config(tiny_data, tmp_path, capsys):
    out = tmp_path / "tune"
    args = [
        "tune",
        "--dataset",
        "fashion-mnist",
        "--data-dir",
        str(tiny_data),
        "--student",
        "lenet5",
        "--method",
        "reffakd",
        "--epochs",
        "1",
        "--no-progress",
        "--set",
        "ae.optim.epochs=1",
        "--set",
        "ae.samples_per_class=4",
        "--grid",
        "loss.alpha=0.1,0.5",
        "--grid",
        "aesl.boost=0,0.5",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    record = json.loads((out / "tune.json").read_text())
    assert len(record["trials"]) == 4
    assert record["best"]["val_best"] == max(t["val_best"] for t in record["trials"])
    boosted = torch.load(out / "trials" / "001" / "aesl_soft_labels.pt", weights_only=True)
    plain = torch.load(out / "trials" / "000" / "aesl_soft_labels.pt", weights_only=True)
    assert boosted["meta"]["boost"] == 0.5 and plain["meta"]["boost"] == 0
    assert boosted["soft_labels"].diag().mean() > plain["soft_labels"].diag().mean()
    best = yaml.safe_load((out / "best.yaml").read_text())
    assert best["loss"]["alpha"] == record["best"]["params"]["loss.alpha"]
    table = (out / "tune.md").read_text()
    assert table.split("\n\n")[0].count("\n") == 5  # header, rule, 4 trials
    effect = record["selection_effect"]
    on_test = max(t["test_max"] for t in record["trials"])
    assert effect["chosen_on_test"]["test"] == on_test
    assert effect["chosen_on_validation"]["test"] == record["best"]["test_at_val_best"]
    assert effect["optimism_points"] == pytest.approx(on_test - record["best"]["test_at_val_best"])
    assert effect["optimism_points"] >= 0 and "points of optimism" in table
    capsys.readouterr()
    assert (
        main(
            [
                "train",
                "--config",
                str(out / "best.yaml"),
                "--out",
                str(tmp_path / "again"),
                "--data-dir",
                str(tiny_data),
                "--no-progress",
            ]
        )
        == 0
    )
