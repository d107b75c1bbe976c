"""No host sync in a training step: a dispatch-mode sentinel records every op that would make
the host wait for a GPU (reading a scalar, ``nonzero``, boolean indexing, ``is_nonzero``) while
the engine trains, for each family of methods on images and text. On the CPU these ops are
cheap, but they are the ones that sync on a GPU. The epoch-end check and metric means may sync
(once an epoch) and are left out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from conftest import train_args
from test_text_runs import text_args, write_tiny_sst2

from reffakd.cli import main
from reffakd.training import engine
from reffakd.training.syncs import SyncSentinel


@pytest.fixture
def sentinel(monkeypatch) -> Iterator[SyncSentinel]:
    """Every engine epoch's steps run under the sentinel (any phase: student, autoencoder,
    light teacher); the epoch-end check and means do not."""
    watch = SyncSentinel()
    train_one_epoch = engine.Trainer.train_one_epoch

    def watched(self, *args, **kwargs):
        with watch:
            return train_one_epoch(self, *args, **kwargs)

    def paused(function):
        def run(*args, **kwargs):
            watch.paused = True
            try:
                return function(*args, **kwargs)
            finally:
                watch.paused = False

        return run

    monkeypatch.setattr(engine.Trainer, "train_one_epoch", watched)
    monkeypatch.setattr(engine.FiniteCheck, "run", paused(engine.FiniteCheck.run))
    monkeypatch.setattr(engine, "_means", paused(engine._means))
    yield watch


def test_the_sentinel_sees_what_would_sync():
    x = torch.arange(6.0)
    with SyncSentinel() as watch:
        float(x.sum())
        x[x > 2].sum()
        bool(x.any())
    names = [found.split(" ")[0] for found in watch.found]
    assert "_local_scalar_dense" in names and ("index" in names or "nonzero" in names)


@pytest.fixture(scope="module")
def teachers(tiny_data, tmp_path_factory, module_env) -> dict[str, Path]:
    """A lenet5 and a textcnn trained with CE: the teachers of the cached KD runs."""
    base = tmp_path_factory.mktemp("teachers")
    text = write_tiny_sst2(base / "sst2")
    assert main(train_args(tiny_data, base / "image", "--batch-size", "90")) == 0
    assert main(text_args(text, base / "text", "--method", "ce", "--device", "cpu")) == 0
    return {"image": base / "image", "text": base / "text", "text_data": text}


CACHED = ("--set", "augment.enabled=false", "--set", "source.cache=true")
LWKD = ("--set", "source.teacher_epochs=1", "--set", "source.per_class=20")
CASES = [
    ("image", "lenet5", "ce", ()),
    ("image", "lenet5", "kd", CACHED),
    ("image", "lenet5", "kd+dkd", CACHED),
    ("image", "lenet5", "lwkd", (*LWKD, "--set", "source.pool_per_class=4")),
    ("image", "lenet5", "reffakd", ("--ae-epochs", "1")),
    ("text", "textcnn", "kd", CACHED),
    ("text", "bilstm", "ce", ()),
    ("text", "bilstm", "reffakd", ("--ae-epochs", "1")),  # its autoencoder is the rnn_ae
    ("text", "textcnn", "reffakd+dkd", ("--ae-epochs", "1")),
    *(("image", "lenet5", name, ()) for name in ("pskd", "cskd", "ols", "dlb", "zipf-ls")),
    ("text", "textcnn", "cskd", ()),
    ("text", "textcnn", "dlb", ()),
]


@pytest.mark.parametrize(("modality", "student", "method", "extra"), CASES)
def test_training_steps_do_not_sync(
    sentinel, teachers, tiny_data, tmp_path, modality, student, method, extra
):
    teacher = ("--teacher", str(teachers[modality])) if method.startswith("kd") else ()
    flags = ("--student", student, "--method", method, *teacher, *extra)
    if modality == "image":  # 270 training images: 3 steps
        args = train_args(tiny_data, tmp_path / "run", *flags, "--batch-size", "90")
    else:  # 87 training texts: 3 steps
        args = text_args(teachers["text_data"], tmp_path / "run", *flags, "--device", "cpu")
    assert main(args) == 0
    assert sentinel.found == []
