"""Model registry, architectures and parameter counts."""

from __future__ import annotations

import builtins
import sys
import types
from collections.abc import Callable

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


def cifar_resnet_param_count(depth: int, widths: tuple[int, ...], classes: int) -> int:
    """Hand count: 3x3 stem + BN, n BasicBlocks per stage (1x1 conv + BN shortcut), Linear."""
    n = (depth - 2) // 6

    def block(c_in: int, c_out: int) -> int:
        shortcut = c_in * c_out + 2 * c_out if c_in != c_out else 0
        return 9 * c_in * c_out + 9 * c_out * c_out + 4 * c_out + shortcut

    total = 3 * widths[0] * 9 + 2 * widths[0]
    c_in = widths[0]
    for width in widths[1:]:
        total += block(c_in, width) + (n - 1) * block(width, width)
        c_in = width
    return total + widths[-1] * classes + classes


def lenet5_param_count(in_channels: int, classes: int) -> int:
    """Hand count: conv 6@5x5 + BN, conv 16@5x5 + BN, FC 400-120-84-classes (with biases)."""
    convs = (in_channels * 6 * 25 + 6 + 2 * 6) + (6 * 16 * 25 + 16 + 2 * 16)
    return convs + (400 * 120 + 120) + (120 * 84 + 84) + (84 * classes + classes)


@pytest.mark.parametrize(
    ("name", "count"),
    [
        # the published CIFAR-10 counts (He et al. 2016, Table 6: 0.27M, 0.85M, 1.7M)
        ("resnet8", 78_042),
        ("resnet20", 272_474),
        ("resnet56", 855_770),
        ("resnet110", 1_730_714),
        ("shufflenetv2", 1_263_278),
    ],
)
def test_parameter_counts_at_10_classes(name: str, count: int) -> None:
    assert n_params(build_model(name, num_classes=10, in_channels=3)) == count


@pytest.mark.parametrize("depth", [8, 14, 20, 32, 44, 56, 110])
@pytest.mark.parametrize("classes", [10, 100])
def test_cifar_resnet_counts_equal_the_hand_count(depth: int, classes: int) -> None:
    model = build_model(f"resnet{depth}", num_classes=classes, in_channels=3)
    assert n_params(model) == cifar_resnet_param_count(depth, (16, 16, 32, 64), classes)


@pytest.mark.parametrize(("name", "depth"), [("resnet8x4", 8), ("resnet32x4", 32)])
def test_wide_cifar_resnet_counts_equal_the_hand_count(name: str, depth: int) -> None:
    model = build_model(name, num_classes=100, in_channels=3)
    assert n_params(model) == cifar_resnet_param_count(depth, (32, 64, 128, 256), 100)


def test_lenet5_parameter_count() -> None:
    assert lenet5_param_count(1, 10) == 61_750
    assert n_params(build_model("lenet5", num_classes=10, in_channels=1)) == 61_750
    model = build_model("lenet5", num_classes=100, in_channels=3)
    assert n_params(model) == lenet5_param_count(3, 100)


# --- feature-map sizes of the stages -------------------------------------------------------


def stage_shapes(name: str, in_channels: int, image_size: int) -> dict[str, tuple[int, ...]]:
    """The (C, H, W) of each of ``model.feature_stages`` in one forward pass."""
    model = build_model(name, num_classes=10, in_channels=in_channels, image_size=image_size)
    modules = dict(model.eval().named_modules())
    shapes: dict[str, tuple[int, ...]] = {}
    for stage in model.feature_stages:
        modules[stage].register_forward_hook(
            lambda m, a, out, stage=stage: shapes.__setitem__(stage, tuple(out.shape[1:]))
        )
    with torch.no_grad():
        model(torch.randn(1, in_channels, image_size, image_size))
    return shapes


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("resnet20", [(16, 32, 32), (32, 16, 16), (64, 8, 8)]),
        ("resnet8x4", [(64, 32, 32), (128, 16, 16), (256, 8, 8)]),
        ("wrn_16_2", [(32, 32, 32), (64, 16, 16), (128, 8, 8)]),
        ("wrn_40_1", [(16, 32, 32), (32, 16, 16), (64, 8, 8)]),
        ("resnet18", [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4)]),
        ("resnet50", [(256, 32, 32), (512, 16, 16), (1024, 8, 8), (2048, 4, 4)]),
        # no pool after the fourth block at 32x32, as in RepDistiller
        ("vgg8", [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4)]),
        # width 0.5: 16 24 32 64 96 160 320 halved; the stem has stride 2
        (
            "mobilenetv2",
            [(8, 16, 16), (12, 16, 16), (16, 8, 8), (32, 4, 4), (48, 4, 4), (80, 2, 2)]
            + [(160, 2, 2)],
        ),
        ("shufflenetv2", [(116, 16, 16), (232, 8, 8), (464, 4, 4)]),
    ],
)
def test_stage_feature_map_sizes_at_32x32(name: str, expected: list[tuple[int, ...]]) -> None:
    assert list(stage_shapes(name, 3, 32).values()) == expected


def test_stage_feature_map_sizes_of_lenet5_and_vgg8_at_64x64() -> None:
    assert stage_shapes("lenet5", 1, 32) == {"features.0": (6, 14, 14), "features.1": (16, 5, 5)}
    assert stage_shapes("lenet5", 1, 64) == {"features.0": (6, 30, 30), "features.1": (16, 13, 13)}
    # three pools before the fourth block, a fourth only at 64x64
    assert list(stage_shapes("vgg8", 3, 64).values())[3:] == [(512, 8, 8), (512, 4, 4)]


# --- forward passes against a naive reference ------------------------------------------------


def naive_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """One image (C, H, W) through ``conv`` by an explicit loop over output positions."""
    (k, _), (s, _), (p, _) = conv.kernel_size, conv.stride, conv.padding
    c, h, w = x.shape
    padded = torch.zeros(c, h + 2 * p, w + 2 * p, dtype=x.dtype)
    padded[:, p : p + h, p : p + w] = x
    out_h, out_w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    out = torch.zeros(conv.out_channels, out_h, out_w, dtype=x.dtype)
    for i in range(out_h):
        for j in range(out_w):
            patch = padded[:, i * s : i * s + k, j * s : j * s + k]
            out[:, i, j] = (conv.weight * patch).sum(dim=(1, 2, 3))
    return out if conv.bias is None else out + conv.bias[:, None, None]


def naive_bn(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Eval-mode BatchNorm from its running statistics."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None]


def naive_max_pool2(x: torch.Tensor) -> torch.Tensor:
    c, h, w = x.shape
    out = torch.zeros(c, h // 2, w // 2, dtype=x.dtype)
    for i in range(h // 2):
        for j in range(w // 2):
            out[:, i, j] = x[:, 2 * i : 2 * i + 2, 2 * j : 2 * j + 2].amax(dim=(1, 2))
    return out


def naive_linear(x: torch.Tensor, fc: nn.Linear) -> torch.Tensor:
    return (fc.weight * x[None, :]).sum(dim=1) + fc.bias


def relu(x: torch.Tensor) -> torch.Tensor:
    return x.clamp(min=0)


def fixed_weights(model: nn.Module) -> nn.Module:
    """Float64, eval mode, every parameter and BatchNorm statistic drawn from a fixed seed."""
    generator = torch.Generator().manual_seed(0)
    model = model.double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.rand(p.shape, generator=generator, dtype=p.dtype) - 0.5)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=generator) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=generator) + 0.5)
    return model


NaiveForward = Callable[[nn.Module, torch.Tensor], torch.Tensor]


def naive_lenet5(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    for stage in model.features:
        conv, bn = stage[0], stage[1]
        x = naive_max_pool2(relu(naive_bn(naive_conv(x, conv), bn)))
    fc1, fc2, fc3 = (m for m in model.classifier if isinstance(m, nn.Linear))
    x = x.flatten()
    return naive_linear(relu(naive_linear(relu(naive_linear(x, fc1)), fc2)), fc3)


def naive_basic_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = relu(naive_bn(naive_conv(x, block.conv1), block.bn1))
    out = naive_bn(naive_conv(out, block.conv2), block.bn2)
    if isinstance(block.downsample, nn.Identity):
        shortcut = x
    else:
        shortcut = naive_bn(naive_conv(x, block.downsample[0]), block.downsample[1])
    return relu(out + shortcut)


def naive_cifar_resnet(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = relu(naive_bn(naive_conv(x, model.conv1), model.bn1))
    for stage in (model.layer1, model.layer2, model.layer3):
        for block in stage:
            x = naive_basic_block(block, x)
    return naive_linear(x.mean(dim=(1, 2)), model.fc)


@pytest.mark.parametrize(
    ("name", "in_channels", "size", "naive"),
    [("lenet5", 1, 32, naive_lenet5), ("resnet8", 3, 8, naive_cifar_resnet)],
)
def test_forward_equals_a_naive_forward(
    name: str, in_channels: int, size: int, naive: NaiveForward
) -> None:
    model = build_model(name, num_classes=10, in_channels=in_channels, image_size=size)
    model = fixed_weights(model)
    images = torch.rand(2, in_channels, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model(images.double())
        expected = torch.stack([naive(model, image.double()) for image in images])
    assert out.shape == (2, 10)
    assert torch.allclose(out, expected, rtol=1e-10, atol=1e-10)
    assert out.std() > 0.1  # the weights are not degenerate: a real comparison


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
