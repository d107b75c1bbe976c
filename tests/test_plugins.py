"""Plugins: other packages register models, datasets, sources and losses through entry points.

An installed package is a ``*.dist-info`` folder with an ``entry_points.txt`` on ``sys.path``;
the tests write one by hand, and install a real package with pip."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import reffakd
from reffakd.errors import UserError
from reffakd.registry import Registry

SRC = str(Path(reffakd.__file__).resolve().parents[1])

PLUGIN_MODULE = textwrap.dedent(
    '''
    """A third-party package adding one entry of every kind."""
    import torch
    from torch import nn

    from reffakd.data.spec import DatasetSpec
    from reffakd.kd.loss_objectives import Objective
    from reffakd.kd.source_teachers import ClassTableSource


    def plugin_net(num_classes=10, in_channels=3, image_size=32):
        """A linear classifier from a plugin."""
        return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size**2, num_classes))


    PLUGIN_DIGITS = DatasetSpec("plugin-digits", 3, 1, 8, 8, ["a", "b", "c"])


    def plugin_source(context, weight: float = 1.0):
        """Uniform rows from a plugin."""
        c = context.num_classes
        return ClassTableSource(torch.full((c, c), 1.0 / c))


    class PluginLoss(Objective):
        """Cross-entropy from a plugin."""

        def __call__(self, logits, labels, signal, epoch):
            return {"ce": nn.functional.cross_entropy(logits, labels)}
    '''
)

ENTRY_POINTS = textwrap.dedent(
    """
    [reffakd.models]
    plugin_net = reffakd_plugin_demo:plugin_net

    [reffakd.datasets]
    plugin-digits = reffakd_plugin_demo:PLUGIN_DIGITS

    [reffakd.sources]
    plugin_uniform = reffakd_plugin_demo:plugin_source

    [reffakd.losses]
    plugin_ce = reffakd_plugin_demo:PluginLoss
    """
)


def installed_by_hand(root: Path, name: str, entry_points: str, modules: dict[str, str]) -> Path:
    """What an installed distribution leaves on sys.path: its modules and a dist-info folder."""
    root.mkdir(parents=True, exist_ok=True)
    for module, code in modules.items():
        (root / f"{module}.py").write_text(code)
    info = root / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return root


def run_python(code: str, *paths: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), SRC])}
    result = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_reffakd_list_shows_every_kind_of_plugin(tmp_path) -> None:
    site = installed_by_hand(
        tmp_path / "site", "reffakd-plugin-demo", ENTRY_POINTS,
        {"reffakd_plugin_demo": PLUGIN_MODULE},
    )  # fmt: skip
    printed = run_python(
        "from reffakd.cli import main\n"
        "for what in ('models', 'datasets', 'sources', 'losses'):\n"
        "    main(['list', what])\n"
        "from reffakd.models import build_model\n"
        "print('logits', tuple(build_model('plugin_net', 3, 1, 8)(__import__('torch')"
        ".zeros(2, 1, 8, 8)).shape))\n",
        site,
    )
    lines = printed.splitlines()
    model = next(line for line in lines if line.startswith("plugin_net "))
    assert model.split()[1] == f"{3 * 32 * 32 * 10 + 10:,}"  # parameters at 3x32x32, 10 classes
    assert any(line.split()[:3] == ["plugin-digits", "3", "1x8x8"] for line in lines)
    assert any(line.split(maxsplit=1) == ["plugin_uniform", "Uniform rows from a plugin."]
               for line in lines)  # fmt: skip
    assert any(line.split(maxsplit=1) == ["plugin_ce", "Cross-entropy from a plugin."]
               for line in lines)  # fmt: skip
    assert "logits (2, 3)" in lines


@pytest.fixture
def group(tmp_path, monkeypatch):
    """A fresh entry-point group, read from a distribution on a private path."""

    def install(entry_points: str, modules: dict[str, str]) -> Registry:
        name = f"test.group{len(list(tmp_path.iterdir()))}"
        installed_by_hand(tmp_path / name, "demo-" + name[-1], f"[{name}]\n{entry_points}", modules)
        monkeypatch.syspath_prepend(str(tmp_path / name))
        return Registry("thing", entry_points=name)

    yield install
    for module in ("demo_objects", "demo_registers", "demo_broken"):
        sys.modules.pop(module, None)


def test_objects_register_under_their_entry_point_name(group) -> None:
    registry = group("first = demo_objects:FIRST\n", {"demo_objects": "FIRST = object()\n"})
    assert registry.names() == ["first"]
    assert registry.get("first") is sys.modules["demo_objects"].FIRST


def test_a_module_entry_point_registers_itself(group) -> None:
    code = (
        "from reffakd.models import register_model\n"
        "@register_model('self_registered_net')\n"
        "def net(num_classes=10, in_channels=3, image_size=32):\n"
        "    raise AssertionError('not built here')\n"
    )
    registry = group("anything = demo_registers\n", {"demo_registers": code})
    try:
        assert registry.names() == []  # the module registered into the models registry
        assert "self_registered_net" in reffakd.models.MODELS
    finally:
        reffakd.models.MODELS._items.pop("self_registered_net", None)


def test_broken_and_clashing_plugins_are_one_line_errors(group) -> None:
    broken = group("bad = demo_broken:thing\n", {"demo_broken": "import no_such_dependency\n"})
    with pytest.raises(
        UserError,
        match=r"plugin entry point bad = demo_broken:thing .* failed "
        r"to load \(ModuleNotFoundError: No module named 'no_such_dependency'\)",
    ):
        broken.get("bad")
    clash = group("first = demo_objects:FIRST\n", {"demo_objects": "FIRST = object()\n"})
    clash.add("first", object())
    with pytest.raises(UserError, match="registers thing 'first', which is already registered"):
        clash.names()


@pytest.mark.slow
def test_a_pip_installed_plugin_shows_in_reffakd_list_models(tmp_path) -> None:
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the test package needs setuptools in this environment")
    package = tmp_path / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "reffakd-pip-plugin"
            version = "0.1"

            [project.entry-points."reffakd.models"]
            pip_plugin_net = "reffakd_pip_plugin:plugin_net"

            [tool.setuptools]
            py-modules = ["reffakd_pip_plugin"]
            """
        )
    )
    (package / "reffakd_pip_plugin.py").write_text(PLUGIN_MODULE)
    target = tmp_path / "site"
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(package)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert time.perf_counter() - started < 120
    assert list(target.glob("reffakd_pip_plugin-0.1.dist-info/entry_points.txt"))
    printed = run_python("from reffakd.cli import main\nmain(['list', 'models'])\n", target)
    assert any(line.startswith("pip_plugin_net ") for line in printed.splitlines())
