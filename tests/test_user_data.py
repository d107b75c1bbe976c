"""The user's own data in every form it comes (tensors, datasets, batches, mappings, PIL), and
AESL soft labels made from it with the project's own autoencoder machinery."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, TensorDataset

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.fit import AESL, MODALITIES
from reffakd.cli import main
from reffakd.config import AugmentConfig, DataConfig, OptimConfig, SoftLabelConfig
from reffakd.data.prepare import prepare_data
from reffakd.data.user import (
    USER_DATA,
    as_uint8_images,
    gather,
    prepare_user_data,
    user_splits,
)
from reffakd.errors import UserError
from reffakd.experiments.report import report_kind


def images_and_labels(n: int = 40, side: int = 12, classes: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % classes
    images = torch.randint(0, 256, (n, 1, side, side), generator=g, dtype=torch.uint8)
    return images, labels


# ---------------------------------------------------------------------------- gather
def test_every_form_gives_the_same_tensors() -> None:
    images, labels = images_and_labels()
    floats = images.float() / 255
    pairs = list(zip(images, labels, strict=True))
    forms = {
        "tensors": (images, labels),
        "numpy": (images.numpy(), labels.numpy()),
        "list of labels": (images, labels.tolist()),
        "tensor dataset": TensorDataset(images, labels),
        "list of samples": [(x, int(y)) for x, y in pairs],
        "batches": DataLoader(TensorDataset(images, labels), batch_size=16),
        "generator": ((images[i : i + 7], labels[i : i + 7]) for i in range(0, 40, 7)),
        "mapping rows": [{"image": x, "label": y} for x, y in pairs],
        "PIL rows": [(Image.fromarray(x[0].numpy()), int(y)) for x, y in pairs],
    }
    for name, data in forms.items():
        inputs, got = gather(data)
        if inputs.dim() == 3:  # PIL gray images are (H, W)
            inputs = inputs.unsqueeze(1)
        assert torch.equal(as_uint8_images(inputs), images), name
        assert got.dtype == torch.int64 and torch.equal(got, labels), name
    inputs, _ = gather(TensorDataset(floats, labels))
    assert torch.equal(as_uint8_images(inputs), images)  # ToTensor's k/255 come back exactly


def test_rgb_pil_images_are_channels_first() -> None:
    pixels = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3) * 10  # two 2x3 planes
    rgb = Image.fromarray(np.stack([pixels[0], pixels[1], pixels[0]], axis=-1))
    inputs, _ = gather([(rgb, 1), (rgb, 0)])
    assert inputs.shape == (2, 3, 2, 3)
    assert torch.equal(inputs[0, 1], torch.from_numpy(pixels[1]))


def test_bad_data_is_refused_in_one_line() -> None:
    images, labels = images_and_labels()
    cases = [
        ((images, labels.float()), "labels must be integer class indices"),
        ((images, labels[:5]), "one row per sample"),
        ([{"img": images[0], "label": 1}], r"keys img, label, not 'image'.*keys="),
        ([(images[0], 1), (images[0, :, :5], 0)], "different shapes"),
        ([], "holds no samples"),
        (images, "cannot read samples from a Tensor"),
        ((images, labels - 1), "class indices >= 0"),
    ]
    for data, message in cases:
        with pytest.raises(UserError, match=message):
            gather(data)
    with pytest.raises(UserError, match=r"float images must lie in \[0, 1\].*Normalize"):
        as_uint8_images((images.float() - 128) / 64)
    with pytest.raises(UserError, match="look channels-last.*permute"):
        as_uint8_images(images.permute(0, 2, 3, 1).repeat(1, 1, 1, 3))
    with pytest.raises(UserError, match=r"integer images must lie in \[0, 255\]"):
        as_uint8_images(images.long() * 2)
    assert torch.equal(as_uint8_images(images.long()), images)


# ---------------------------------------------------------------------------- splits
def test_user_splits_hold_out_validation_or_take_the_given_splits() -> None:
    images, labels = images_and_labels(n=40)
    splits = user_splits((images, labels), val_fraction=0.25, split_seed=3)
    # stratified: round(10 * 0.25) = 2 of each class's 10 (half to even)
    assert splits.name == USER_DATA and splits.sizes() == {"train": 32, "val": 8, "test": 0}
    assert torch.bincount(splits.val.labels).tolist() == [2, 2, 2, 2]
    assert splits.class_names == ["0", "1", "2", "3"]
    given = user_splits(
        {
            "train": TensorDataset(images, labels),
            "validation": (images[:8], labels[:8]),
            "test": (images[:4], labels[:4]),
            "class_names": ["a", "b", "c", "d"],
        },
        val_fraction=0.1,
        split_seed=0,
    )
    assert given.sizes() == {"train": 40, "val": 8, "test": 4}
    assert given.class_names == ["a", "b", "c", "d"]
    assert torch.equal(given.val.images, images[:8])
    with pytest.raises(UserError, match="unknown data key 'tests'"):
        user_splits({"train": (images, labels), "tests": None}, val_fraction=0.1, split_seed=0)
    with pytest.raises(UserError, match="labels go up to 3 but there are 2 classes"):
        user_splits(
            {"train": (images, labels), "class_names": ["a", "b"]}, val_fraction=0, split_seed=0
        )


def test_torchvision_classes_name_the_classes() -> None:
    images, labels = images_and_labels()
    dataset = TensorDataset(images, labels)
    dataset.classes = ["w", "x", "y", "z"]  # what torchvision datasets carry
    assert user_splits(dataset, val_fraction=0, split_seed=0).class_names == ["w", "x", "y", "z"]


def test_prepared_user_data() -> None:
    images, labels = images_and_labels()
    prepared = prepare_user_data(user_splits((images, labels), val_fraction=0, split_seed=0), None)
    assert prepared.image_size == 12 and prepared.input_shape == (1, 12, 12)
    assert prepared.spec.name == USER_DATA and prepared.spec.augment["flip"] is False
    expected = images.double().div(255)
    assert prepared.mean[0] == pytest.approx(float(expected.mean()), abs=1e-9)
    wide = torch.zeros(8, 1, 12, 16, dtype=torch.uint8)
    splits = user_splits((wide, torch.arange(8) % 2), val_fraction=0, split_seed=0)
    with pytest.raises(UserError, match="12x16.*data.image_size"):
        prepare_user_data(splits, None)
    assert prepare_user_data(splits, 16).image_size == 16


# ---------------------------------------------------------------------------- AESL.fit
def fashion_like(n_per_class: int = 12):
    """Tiny 28x28 images whose bright block position depends on the class."""
    labels = torch.arange(10 * n_per_class) % 10
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 60, (len(labels), 1, 28, 28), generator=g, dtype=torch.uint8)
    for i, label in enumerate(labels.tolist()):
        row, col = divmod(label, 4)
        images[i, 0, 2 + row * 8 : 8 + row * 8, 2 + col * 6 : 7 + col * 6] = 230
    return images, labels


RECIPE = {"epochs": 1, "batch_size": 50, "samples_per_class": 4, "progress": False}


def test_fit_is_the_soft_label_run_on_the_same_data(tmp_path) -> None:
    """AESL.fit on tensors gives exactly the table `reffakd soft-labels` makes from files."""
    from conftest import write_tiny_idx_dataset

    write_tiny_idx_dataset(tmp_path / "data" / "fashion-mnist", n_train=120, n_test=20)
    config = SoftLabelConfig(
        data=DataConfig(name="fashion-mnist", data_dir=str(tmp_path / "data")),
        augment=AugmentConfig(enabled=False),
        optim=OptimConfig(epochs=1, batch_size=50, milestones=[1]),
        samples_per_class=4,
        boost=0.01,
        progress=False,
        device="cpu",
    )
    reference = make_soft_labels(config, tmp_path / "cli")
    whole = DataConfig(name="fashion-mnist", data_dir=str(tmp_path / "data"), val_fraction=0)
    train = prepare_data(whole).splits.train
    labels = AESL.fit(
        (train.images, train.labels),
        num_classes=10,
        class_names=train.class_names,
        boost=0.01,
        device="cpu",
        **{**RECIPE, "progress": True},
    )
    assert torch.equal(labels.table, reference.table)
    assert labels.meta["ae_weights_sha256"] == reference.meta["ae_weights_sha256"]
    assert labels.meta["dataset"] == USER_DATA
    assert labels.meta["class_names"] == list(train.class_names)


def test_fit_accepts_floats_and_datasets_alike_and_keeps_a_run(tmp_path) -> None:
    images, labels = fashion_like()
    from_tensors = AESL.fit((images, labels), 10, **RECIPE)
    from_floats = AESL.fit(TensorDataset(images.float() / 255, labels), 10, **RECIPE)
    assert torch.equal(from_tensors.table, from_floats.table)
    rows = from_tensors.table.sum(dim=1)
    assert torch.allclose(rows, torch.ones(10), atol=1e-6)
    kept = AESL.fit((images, labels), 10, out=tmp_path / "ae", image_size=16, **RECIPE)
    assert kept.meta["embedding_dim"] == 48 * 2 * 2  # 16x16 input, three stride-2 stages
    assert report_kind(tmp_path / "ae") == "soft-labels"
    assert torch.equal(AESL.load(tmp_path / "ae" / "soft_labels.pt").table, kept.table)
    assert main(["report", str(tmp_path / "ae")]) == 0


def test_fit_refuses_what_it_cannot_use() -> None:
    images, labels = fashion_like()
    with pytest.raises(UserError, match="3 class names for num_classes=10"):
        AESL.fit((images, labels), 10, class_names=["a", "b", "c"], **RECIPE)
    with pytest.raises(UserError, match="no autoencoder takes torch.int64 inputs of shape"):
        AESL.fit((torch.zeros(40, 7, dtype=torch.int64), labels[:40]), 10, **RECIPE)
    with pytest.raises(UserError, match="unknown option 'modality.crop'"):
        AESL.fit((images, labels), 10, crop=3, **RECIPE)
    with pytest.raises(UserError, match="unknown input modality 'audio'"):
        AESL.fit((images, labels), 10, modality="audio", **RECIPE)


class TokenModality:
    """A stand-in for a text autoencoder: records what it was given."""

    accepts_text = "token ids (N, L)"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def accepts(self, inputs: torch.Tensor) -> bool:
        return inputs.dim() == 2 and not inputs.is_floating_point()

    def fit(self, inputs, labels, class_names, config, out, max_length: int = 16):
        self.calls.append((inputs.shape, class_names, config.seed, max_length))
        return "labels from the text autoencoder"


def test_other_modalities_plug_in_through_the_table(monkeypatch) -> None:
    tokens = TokenModality()
    monkeypatch.setitem(MODALITIES._items, "tokens", tokens)
    ids = torch.randint(0, 50, (20, 9))
    result = AESL.fit((ids, torch.arange(20) % 2), 2, seed=5, max_length=9, **RECIPE)
    assert result == "labels from the text autoencoder"
    assert tokens.calls == [((20, 9), ["0", "1"], 5, 9)]
    with pytest.raises(UserError, match="modality 'tokens' takes token ids"):
        AESL.fit(fashion_like(), 10, modality="tokens", **RECIPE)
