"""Model registry, architectures and parameter counts."""

from __future__ import annotations

import builtins
import sys
import types

import pytest
import torch
from torch import nn

from reffakd.errors import UserError
from reffakd.models import build_model, is_text_model, list_models
from reffakd.models.cae import ConvAutoencoder

# The ReffAKD notebooks' Tiny ImageNet heads exist at 64x64 only (tested on their own below).
NOTEBOOK_HEADS = ("resnet18_tin", "resnet50_tin")
CLASSIFIERS = [
    name
    for name in list_models()
    if name != "cae" and name not in NOTEBOOK_HEADS and not is_text_model(name)
]

EXPECTED = {
    "cae",
    "lenet5",
    "resnet18",
    "resnet50",
    "resnet18_tin",
    "resnet50_tin",
    "resnet8",
    "resnet14",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "resnet8x4",
    "resnet32x4",
    "wrn_16_1",
    "wrn_16_2",
    "wrn_40_1",
    "wrn_40_2",
    "vgg8",
    "vgg13",
    "mobilenetv2",
    "shufflenetv2",
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_has_the_expected_models() -> None:
    assert set(list_models()) >= EXPECTED


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize(("num_classes", "in_channels"), [(10, 1), (100, 3)])
def test_forward_gives_logits(name: str, num_classes: int, in_channels: int) -> None:
    model = build_model(name, num_classes=num_classes, in_channels=in_channels, image_size=32)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, in_channels, 32, 32))
    assert out.shape == (2, num_classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(
    "name", ["resnet18", "lenet5", "resnet8x4", "vgg8", "wrn_16_2", "resnet18_tin"]
)
def test_forward_at_64x64(name: str) -> None:
    model = build_model(name, num_classes=200, in_channels=3, image_size=64).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 200)


def test_a_training_step_lowers_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", num_classes=10, in_channels=3).train()
    images, labels = torch.randn(8, 3, 32, 32), torch.arange(8)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    losses = []
    for _ in range(3):
        loss = torch.nn.functional.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
        optimizer.step()
        losses.append(loss.item())
    assert losses[2] < losses[0]


@pytest.mark.parametrize(
    ("name", "count"),
    [
        ("resnet8x4", 1_233_540),
        ("resnet32x4", 7_433_860),
        ("wrn_40_2", 2_255_156),
        ("resnet56", 861_620),
        ("resnet18", 11_220_132),
        ("resnet50", 23_705_252),
        ("shufflenetv2", 1_355_528),  # 1,263,278 at 10 classes
        ("mobilenetv2", 812_836),
        ("vgg8", 3_965_028),
        ("vgg13", 9_462_180),
    ],
)
def test_parameter_counts_at_100_classes(name: str, count: int) -> None:
    assert n_params(build_model(name, num_classes=100, in_channels=3)) == count


@pytest.mark.parametrize(
    ("name", "count"),
    [
        # global average pooling: Linear(512 e, 200)
        ("resnet18", 11_271_432),
        ("resnet50", 23_910_152),
        # the notebooks' head: avg_pool2d(out, 4) on the 8x8 map, 2x2 cells, Linear(4 512 e, 200)
        ("resnet18_tin", 11_578_632),
        ("resnet50_tin", 25_138_952),
    ],
)
def test_parameter_counts_tiny_imagenet(name: str, count: int) -> None:
    model = build_model(name, num_classes=200, in_channels=3, image_size=64)
    assert n_params(model) == count


@pytest.mark.parametrize(("name", "expansion"), [("resnet18_tin", 1), ("resnet50_tin", 4)])
def test_notebook_head_classifier_sees_2x2_cells(name: str, expansion: int) -> None:
    model = build_model(name, num_classes=200, in_channels=3, image_size=64)
    assert model.fc.in_features == 4 * 512 * expansion
    plain = build_model(name.removesuffix("_tin"), num_classes=200, in_channels=3, image_size=64)
    assert n_params(model) - n_params(plain) == 3 * 512 * expansion * 200


@pytest.mark.parametrize("name", NOTEBOOK_HEADS)
@pytest.mark.parametrize("image_size", [32, 96])
def test_notebook_head_refuses_other_sizes(name: str, image_size: int) -> None:
    with pytest.raises(UserError, match="needs 64x64 inputs") as info:
        build_model(name, num_classes=200, in_channels=3, image_size=image_size)
    assert "\n" not in str(info.value)


def test_notebook_head_refuses_other_input_sizes() -> None:
    model = build_model("resnet18_tin", num_classes=200, in_channels=3, image_size=64).eval()
    with pytest.raises(ValueError, match="built for 64x64 inputs, got 32x32"):
        model(torch.randn(1, 3, 32, 32))


# --- autoencoder ---------------------------------------------------------------------------


def cae_param_count(c: int) -> int:
    widths = [c, 12, 24, 48]
    encoder = sum(a * b * 16 + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    decoder = sum(b * a * 16 + a for a, b in zip(widths[:-1], widths[1:], strict=True))
    return encoder + decoder


def test_cae_parameter_count() -> None:
    assert cae_param_count(3) == 47_355
    assert n_params(build_model("cae", num_classes=10, in_channels=3)) == 47_355
    assert n_params(build_model("cae", num_classes=10, in_channels=1)) == cae_param_count(1)


@pytest.mark.parametrize(("image_size", "dim"), [(32, 768), (64, 3072)])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_cae_shapes(image_size: int, dim: int, in_channels: int) -> None:
    model = build_model("cae", num_classes=0, in_channels=in_channels, image_size=image_size)
    assert isinstance(model, ConvAutoencoder)
    assert model.embedding_dim == dim
    x = torch.rand(2, in_channels, image_size, image_size)
    with torch.no_grad():
        z = model.encode(x)
        recon = model(x)
    assert z.shape == (2, dim)
    assert (z >= 0).all()  # after the last ReLU
    assert recon.shape == x.shape
    assert recon.min() >= 0 and recon.max() <= 1


def test_cae_layers() -> None:
    model = ConvAutoencoder(in_channels=3, image_size=32)
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    deconvs = [m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels) for m in convs] == [(3, 12), (12, 24), (24, 48)]
    assert [(m.in_channels, m.out_channels) for m in deconvs] == [(48, 24), (24, 12), (12, 3)]
    for m in convs + deconvs:
        assert (m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1))
    assert isinstance(model.decoder[-1], nn.Sigmoid)


@pytest.mark.parametrize("image_size", [30, 4, 0])
def test_cae_rejects_bad_image_size(image_size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 8"):
        ConvAutoencoder(in_channels=3, image_size=image_size)


# --- LeNet-5 ---------------------------------------------------------------------------------


def test_lenet5_structure() -> None:
    model = build_model("lenet5", num_classes=10, in_channels=1, image_size=32)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size) for m in convs] == [
        (1, 6, (5, 5)),
        (6, 16, (5, 5)),
    ]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 2
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 2
    fcs = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in fcs] == [(400, 120), (120, 84), (84, 10)]


# --- registry errors and adapters ------------------------------------------------------------


def test_unknown_name_lists_known_models() -> None:
    with pytest.raises(UserError) as info:
        build_model("resnet9000", num_classes=10)
    message = str(info.value)
    assert "resnet9000" in message
    assert "resnet8x4" in message and "lenet5" in message


@pytest.fixture
def no_optional_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def fake_import(name: str, *args: object, **kwargs: object) -> object:
        if name.split(".")[0] in {"timm", "torchvision"}:
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for mod in [m for m in sys.modules if m.split(".")[0] in {"timm", "torchvision"}]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setattr(builtins, "__import__", fake_import)


@pytest.mark.usefixtures("no_optional_packages")
@pytest.mark.parametrize("spec", ["timm:resnet18", "torchvision:resnet18"])
def test_adapter_missing_package(spec: str) -> None:
    package = spec.split(":")[0]
    with pytest.raises(UserError, match=f"needs the optional package {package}: pip install"):
        build_model(spec, num_classes=10)


def test_unknown_prefix_is_an_import_path() -> None:
    with pytest.raises(UserError, match="cannot import module 'keras'.*timm:NAME"):
        build_model("keras:resnet18", num_classes=10)


def test_timm_adapter_passes_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, dict[str, object]]] = []

    def create_model(name: str, **kwargs: object) -> nn.Module:
        calls.append((name, kwargs))
        return nn.Linear(1, 1)

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    build_model("timm:vit_tiny", num_classes=7, in_channels=1, image_size=32)
    assert calls == [("vit_tiny", {"pretrained": False, "num_classes": 7, "in_chans": 1})]


def test_torchvision_adapter_replaces_first_conv(monkeypatch: pytest.MonkeyPatch) -> None:
    def get_model(name: str, weights: object = None, num_classes: int = 1000) -> nn.Module:
        assert weights is None
        stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, num_classes))
        return nn.Sequential(stem, nn.Conv2d(8, 8, 1), head)

    fake = types.SimpleNamespace(models=types.SimpleNamespace(get_model=get_model))
    monkeypatch.setitem(sys.modules, "torchvision", fake)
    model = build_model("torchvision:tiny", num_classes=5, in_channels=1)
    assert model[0][0].in_channels == 1
    assert model(torch.randn(2, 1, 16, 16)).shape == (2, 5)
