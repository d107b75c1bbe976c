"""Text as a modality of the whole tool: the prepared data, soft labels from the text
autoencoder, every preset through the CLI on a tiny SST-2 written in GLUE's TSV layout, the saved
vocabulary and the teacher checks, listings and cost."""

from __future__ import annotations

import json
import math
import random
import shutil
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, preset_signal

from reffakd.aesl.similarity import soft_labels_from_similarity
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.cli import main
from reffakd.config import AugmentConfig, DataConfig
from reffakd.data.loader import BatchLoader
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared_text import PreparedText
from reffakd.data.text import TextSplit
from reffakd.data.text_augment import TextBatchTransform
from reffakd.data.vocab import PAD, UNK, Vocab
from reffakd.errors import UserError
from reffakd.kd.methods import PRESETS
from reffakd.models import build_model

POSITIVE = ["good", "great", "lovely", "superb", "fun"]
NEGATIVE = ["bad", "awful", "dull", "poor", "boring"]
FILLER = ["the", "movie", "film", "plot", "was", "is", "a", "and", "it", "this", "quite"]


def sentence(rng: random.Random, label: int) -> str:
    """Filler words around one or two sentiment words of the label's side."""
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 6))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def write_tsv(path: Path, rows: list[tuple[str, int]]) -> None:
    lines = ["sentence\tlabel"] + [f"{text}\t{label}" for text, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_tiny_sst2(folder: Path, n_train: int = 96, n_dev: int = 32, seed: int = 0) -> Path:
    """GLUE's SST-2 layout: train.tsv, dev.tsv (the test split) and an unlabelled test.tsv."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", n_train), ("dev.tsv", n_dev)):
        write_tsv(folder / name, [(sentence(rng, i % 2), i % 2) for i in range(n)])
    unlabelled = ["index\tsentence"] + [f"{i}\t{sentence(rng, i % 2)}" for i in range(8)]
    (folder / "test.tsv").write_text("\n".join(unlabelled) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> Path:
    return write_tiny_sst2(tmp_path_factory.mktemp("text") / "sst2")


def text_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--dataset",
        "sst2",
        "--data-dir",
        str(data),
        "--student",
        "textcnn",
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--lr",
        "0.05",
        "--no-progress",
        "--set",
        "optim.milestones=[1]",
        *extra,
    ]


@pytest.fixture(scope="module")
def text_teacher(text_data, tmp_path_factory, module_env) -> Path:
    """A textcnn trained with CE for one epoch: the teacher of the network sources."""
    out = tmp_path_factory.mktemp("teacher") / "run"
    assert main(text_args(text_data, out, "--method", "ce")) == 0
    return out


@pytest.fixture(scope="module")
def text_soft_labels(text_data, tmp_path_factory, module_env) -> Path:
    out = tmp_path_factory.mktemp("aesl") / "sl"
    args = ["soft-labels", "--dataset", "sst2", "--data-dir", str(text_data), "--out", str(out)]
    args += ["--epochs", "2", "-k", "8", "--lr", "0.5", "--no-progress"]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def tokens(text_data, module_env) -> int:
    """The tiny data's mean training length, rounded up: what text models are counted at."""
    data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    assert isinstance(data, PreparedText)
    return data.tokens_per_sample


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


# --------------------------------------------------------------------------- prepared data
def test_prepared_text_gives_model_input_example_and_transform(text_data):
    data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data), max_len=12))
    assert isinstance(data, PreparedText) and data.image_shape is None
    vocab = data.vocab
    assert data.model_input == {"vocab_size": len(vocab), "max_len": 12, "pad_id": PAD}
    # the vocabulary comes from the training part only: 10% of train held out as validation
    assert data.splits.sizes() == {"train": 86, "val": 10, "test": 32}
    assert set(POSITIVE + NEGATIVE + FILLER) >= set(vocab.itos[4:])
    mean = data.splits.train.lengths.double().mean().item()
    assert data.tokens_per_sample == math.ceil(mean) < 12
    assert torch.equal(data.example_input(2), torch.full((2, data.tokens_per_sample), UNK))
    model = build_model("textcnn", 2, **data.model_input)
    assert model(data.example_input(3)).shape == (3, 2)
    transform = data.batch_transform(AugmentConfig())
    assert not transform.augments
    batch = data.splits.train.inputs[:5]
    assert torch.equal(transform(batch, train=True), batch)
    assert data.batch_transform(AugmentConfig(token_dropout=0.2)).augments


def test_text_batches_group_texts_of_similar_length():
    lengths = torch.tensor([3, 9, 1, 4, 7, 2, 8, 5, 6, 1, 2])
    split = TextSplit(
        (torch.arange(12)[None] < lengths[:, None]).long() * 7,
        lengths,
        torch.zeros(11, dtype=torch.long),
        ["a", "b"],
        ["x"] * 11,
    )
    order = torch.randperm(11, generator=torch.Generator().manual_seed(0))
    arranged = split.batch_order(order, 3, torch.Generator().manual_seed(1))
    assert sorted(arranged.tolist()) == list(range(11))
    batches = [sorted(lengths[b].tolist()) for b in arranged.split(3)]
    # one chunk here: the full batches are the sorted lengths cut in threes, shuffled; the
    # short batch (the two longest texts) stays last
    assert sorted(batches[:3]) == [[1, 1, 2], [2, 3, 4], [5, 6, 7]]
    assert batches[3] == [8, 9]
    evaluation = split.batch_order(torch.arange(11), 3, None)
    assert lengths[evaluation].tolist() == sorted(lengths.tolist())


def test_text_batches_are_trimmed_from_the_cpu_lengths_to_multiples_of_8():
    lengths = torch.tensor([3, 9, 1, 0, 20, 2])
    tokens = (torch.arange(24)[None] < lengths[:, None]).long() * 7
    split = TextSplit(tokens, lengths, torch.zeros(6, dtype=torch.long), ["a", "b"], ["x"] * 6)
    batches = list(BatchLoader(split, 2))  # sorted by length: [0, 1], [2, 3], [9, 20]
    assert [b.inputs.shape[1] for b in batches] == [8, 8, 24]
    for batch in batches:
        assert torch.equal(batch.inputs, tokens[batch.indices, : batch.inputs.shape[1]])
    assert torch.equal(TextBatchTransform()(tokens), tokens)  # the transform trims nothing


@pytest.mark.parametrize(
    ("config", "augment", "message"),
    [
        (DataConfig(name="sst2", image_size=32), None, "data.image_size applies to image"),
        (DataConfig(name="fashion-mnist", min_freq=2), None, "data.min_freq applies to text"),
        (DataConfig(name="sst2"), AugmentConfig(flip=True), "augment.flip applies to image"),
        (
            DataConfig(name="fashion-mnist"),
            AugmentConfig(token_dropout=0.1),
            "augment.token_dropout applies to text",
        ),
        (DataConfig(name="sst2", textfile={"colum": 1}), None, "data.textfile"),
    ],
)
def test_options_of_the_other_modality_are_refused(text_data, tiny_data, config, augment, message):
    folders = {"sst2": text_data, "fashion-mnist": tiny_data}
    config.data_dir = str(folders[config.name])
    with pytest.raises(UserError, match=message):
        data = prepare_data(config)
        data.batch_transform(augment or AugmentConfig())


# --------------------------------------------------------------------------- soft labels
def test_text_soft_labels_shape_rows_and_records(text_soft_labels, tokens):
    labels = SoftLabels.load(text_soft_labels / "soft_labels.pt")
    meta = labels.meta
    assert labels.table.shape == (2, 2) and labels.similarity.shape == (2, 2)
    torch.testing.assert_close(labels.table.sum(1), torch.ones(2))
    # GRU states lie in [-1, 1]: cosines are signed, each in [-1, 1], S symmetric
    assert labels.similarity.abs().max() <= 1.0 + 1e-6
    torch.testing.assert_close(labels.similarity, labels.similarity.T)
    expected = soft_labels_from_similarity(
        labels.similarity.double(), meta["boost"], meta["temperature"]
    )
    torch.testing.assert_close(labels.table, expected)
    assert meta["ae_model"] == "rnn_ae" and meta["embedding_dim"] == 64
    assert meta["samples_embedded"] == 16 and meta["reconstruction_metric"] == "token_ce"
    assert math.isfinite(meta["reconstruction_token_ce_val"])
    assert (meta["boost"], meta["temperature"]) == (0.01, 1.0)  # the sst2 defaults
    summary = summary_of(text_soft_labels)
    phases = {p["phase"]: p for p in summary["cost"]["phases"]}
    encoder = phases["soft_label_computation"]["networks"]["rnn_ae_encoder"]
    assert encoder["samples_seen"] == 16 and encoder["input_shape"] == [tokens]
    assert phases["autoencoder_training"]["networks"]["rnn_ae"]["trained"]
    vocab = Vocab.load(text_soft_labels / "vocab.json")
    assert summary["inputs"]["vocab_fingerprint"] == vocab.fingerprint()
    assert (text_soft_labels / "soft_labels.png").stat().st_size > 1000
    report = (text_soft_labels / "report.html").read_text()
    assert "val token CE" in report and "lowest validation token CE" in report


# --------------------------------------------------------------------------- every preset
def preset_flags(name: str, teacher: Path, soft_labels: Path) -> list[str]:
    source = preset_signal(name)
    flags = {
        "teacher": ["--teacher", str(teacher)],
        "self": ["--teacher", str(teacher)],
        "aesl": ["--soft-labels", str(soft_labels / "soft_labels.pt")],
        "uskd": ["--set", "source.feature_layer=convs.0"],  # textcnn names no stages
        "lwkd": [
            "--set",
            "source.teacher_epochs=1",
            "--set",
            "source.per_class=20",
            "--set",
            "source.pool_per_class=4",
        ],
    }
    return flags.get(source, [])


@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_trains_a_text_student(
    text_data, tmp_path, text_teacher, text_soft_labels, tokens, name
):
    out = tmp_path / "run"
    flags = preset_flags(name, text_teacher, text_soft_labels)
    assert main(text_args(text_data, out, "--method", name, *flags)) == 0
    summary = summary_of(out)
    assert summary["method"]["name"] == name
    assert 0.0 <= summary["best"]["test_top1"] <= 100.0
    assert math.isfinite(summary["last"]["val_loss"])
    assert summary["inputs"]["modality"] == "text"
    assert Vocab.load(out / "vocab.json") == Vocab.load(text_teacher / "vocab.json")
    student = next(p for p in summary["cost"]["phases"] if p["phase"] == "student_training")
    assert student["networks"]["student"]["input_shape"] == [tokens]
    if PRESETS.get(name).source == "lwkd":
        config = (out / "light_teacher" / "config.yaml").read_text()
        assert "in_channels: 1" in config and "image_size: 32" in config


def test_kd_teacher_counts_on_token_ids(text_data, tmp_path, text_teacher, tokens):
    out = tmp_path / "kd"
    assert main(text_args(text_data, out, "--method", "kd", "--teacher", str(text_teacher))) == 0
    student = next(p for p in summary_of(out)["cost"]["phases"] if p["phase"] == "student_training")
    teacher = student["networks"]["teacher"]
    # textcnn pads a text shorter than its widest filter (5) to that width
    conv = sum(2 * (max(tokens, 5) - k + 1) * k * 300 * 100 for k in (3, 4, 5))
    assert teacher["forward_flops"] == conv + 2 * 300 * 2 and not teacher["trained"]


# --------------------------------------------------------------------------- vocabulary
def test_a_teacher_with_another_vocabulary_is_refused(text_data, tmp_path, text_teacher, capsys):
    args = ["--method", "kd", "--teacher", str(text_teacher), "--set", "data.max_vocab=12"]
    assert main(text_args(text_data, tmp_path / "out", *args)) == 2
    line = one_line_error(capsys)
    assert "another vocabulary" in line and "12 tokens" in line
    assert not (tmp_path / "out").exists()


def test_a_teacher_without_a_vocabulary_file_is_refused(text_data, tmp_path, text_teacher, capsys):
    copy = tmp_path / "teacher"
    shutil.copytree(text_teacher, copy)
    (copy / "vocab.json").unlink()
    args = text_args(text_data, tmp_path / "out", "--method", "kd", "--teacher", str(copy))
    assert main(args) == 2
    assert "no vocab.json" in one_line_error(capsys)


def test_an_image_teacher_or_model_on_text_is_a_one_line_error(text_data, tmp_path, capsys):
    assert main(text_args(text_data, tmp_path / "a", "--student", "lenet5")) == 2
    assert "is an image model" in one_line_error(capsys)


def test_resuming_with_a_changed_vocabulary_is_refused(text_data, tmp_path):
    data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    data.save_inputs(tmp_path)
    data.save_inputs(tmp_path)  # the same vocabulary again: fine
    other = prepare_data(DataConfig(name="sst2", data_dir=str(text_data), max_vocab=10))
    with pytest.raises(UserError, match="another vocabulary"):
        other.save_inputs(tmp_path)


# --------------------------------------------------------------------------- listings and cost
def test_listings_show_text_entries(capsys):
    assert main(["list", "datasets"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:]}
    for name in ("sst2", "agnews", "mr", "textfile"):
        assert "text (word tokens)" in rows[name]
    assert main(["list", "models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[2:-1]}
    # textcnn at 10,000 tokens and 10 classes: 300 V + 360,300 + 301 C
    assert rows["textcnn"].split()[1] == f"{300 * 10_000 + 360_300 + 3010:,}"
    assert "vocab_size=10000, max_len=64" in rows["rnn_ae"]


def test_cost_of_a_text_model(text_data, capsys):
    args = ["cost", "textcnn", "--dataset", "sst2", "--vocab-size", "1000", "--tokens", "20"]
    assert main([*args, "--json"]) == 0
    cost = json.loads(capsys.readouterr().out)
    conv = sum(2 * (20 - k + 1) * k * 300 * 100 for k in (3, 4, 5))
    assert cost["forward_flops"] == conv + 2 * 300 * 2
    assert cost["params"] == 300 * 1000 + 360_300 + 602
    assert cost["train_samples_per_epoch"] == 29_780 + 37_569 - 2978 - 3757
    measured = ["cost", "rnn_ae", "--dataset", "sst2", "--data-dir", str(text_data), "--json"]
    assert main(measured) == 0
    cost = json.loads(capsys.readouterr().out)
    data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    assert cost["input_shape"] == [data.tokens_per_sample]
    assert cost["train_samples_per_epoch"] == 86
    assert main([*args, "--image-size", "32"]) == 2
    assert "--image-size applies to image" in one_line_error(capsys)
