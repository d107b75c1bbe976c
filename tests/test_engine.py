import pytest
import torch
import torch.nn.functional as F

from reffakd.config import OptimConfig
from reffakd.data.augment import BatchTransform
from reffakd.data.dataset import DataSplits, ImageSplit
from reffakd.errors import NonFiniteLossError
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.engine import Trainer
from reffakd.training.rundir import RunDir
from reffakd.training.summary import summarize
from reffakd.training.task import Task, topk_correct


class Linear(Task):
    """A tiny classifier whose loss turns NaN from ``nan_epoch`` on."""

    def __init__(self, nan_epoch: int = 99) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3))
        self.nan_epoch = nan_epoch

    def forward_train(self, images, labels, indices, epoch):
        logits = self.net(images)
        loss = F.cross_entropy(logits, labels)
        if epoch >= self.nan_epoch:
            loss = loss * float("nan")
        return logits, {"ce": loss}

    def eval_sums(self, images, labels):
        return topk_correct(self.net(images), labels, (1,))


def tiny_splits() -> DataSplits:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 255, (30, 1, 4, 4), generator=g, dtype=torch.uint8)
    split = ImageSplit(images, torch.arange(30) % 3, ["a", "b", "c"])
    return DataSplits("toy", split, split.subset(torch.arange(6)), split.subset(torch.arange(6)))


def trainer(tmp_path, task, epochs=3) -> Trainer:
    optim = OptimConfig(epochs=epochs, batch_size=8, lr=0.1, milestones=[2])
    transform = BatchTransform(4, [0.5], [0.25])
    return Trainer(task, tiny_splits(), transform, optim, RunDir(tmp_path), progress=False)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    run = trainer(tmp_path, Linear(nan_epoch=2))
    with pytest.raises(NonFiniteLossError, match="epoch 2"):
        run.fit()
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_lr_schedule_and_best_selection_on_validation(tmp_path):
    result = trainer(tmp_path, Linear()).fit()
    assert [r["lr"] for r in result.history] == pytest.approx([0.1, 0.1, 0.1 * 0.2])
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["epoch"] == result.summary["best_epoch"]


def test_summary_reports_best_on_validation_and_last():
    history = [
        {"epoch": 1, "val_top1": 50.0, "test_top1": 70.0},
        {"epoch": 2, "val_top1": 60.0, "test_top1": 40.0},
        {"epoch": 3, "val_top1": 55.0, "test_top1": 90.0},
    ]
    summary = summarize(history, "val_top1", "max")
    assert summary["best_epoch"] == 2 and summary["best"]["test_top1"] == 40.0
    assert summary["last"]["test_top1"] == 90.0


def test_nan_metrics_never_win_best_selection(tmp_path):
    run = trainer(tmp_path, Linear())
    run.history = [{"epoch": 1, "val_top1": float("nan")}]
    assert not run._is_best(run.history[-1])
    run.history.append({"epoch": 2, "val_top1": 40.0})
    assert run._is_best(run.history[-1])
    run.history.append({"epoch": 3, "val_top1": 40.0})
    assert not run._is_best(run.history[-1])  # ties keep the first epoch
