"""Where datasets are looked for and cached: environment variables and search roots.

The search order is the ``--data-dir`` folder, ``$REFFAKD_DATA`` (several folders may be joined
with ``os.pathsep``), the download folder ``user_cache_dir()/"datasets"`` and the system folders
``/usr/share/datasets`` and ``/usr/local/share/datasets``.
"""

from __future__ import annotations

import os
from pathlib import Path

PathLike = str | os.PathLike

ENV_DATA = "REFFAKD_DATA"
ENV_CACHE = "REFFAKD_CACHE"
ENV_NO_DOWNLOAD = "REFFAKD_NO_DOWNLOAD"
SYSTEM_ROOTS: tuple[Path, ...] = (Path("/usr/share/datasets"), Path("/usr/local/share/datasets"))


def user_cache_dir() -> Path:
    """``$REFFAKD_CACHE``, else ``$XDG_CACHE_HOME/reffakd``, else ``~/.cache/reffakd``."""
    override = os.environ.get(ENV_CACHE)
    if override:
        return Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "reffakd"


def search_roots(data_dir: PathLike | None) -> list[tuple[Path, str]]:
    """Search roots in order, each with where it came from."""
    roots: list[tuple[Path, str]] = []
    if data_dir is not None:
        roots.append((Path(data_dir).expanduser(), "--data-dir"))
    for entry in os.environ.get(ENV_DATA, "").split(os.pathsep):
        if entry:
            roots.append((Path(entry).expanduser(), f"${ENV_DATA}"))
    roots.append((user_cache_dir() / "datasets", "download folder"))
    roots.extend((root, "system") for root in SYSTEM_ROOTS)
    seen: set[Path] = set()
    unique = []
    for root, origin in roots:
        if root not in seen:
            seen.add(root)
            unique.append((root, origin))
    return unique


def candidate_roots(data_dir: PathLike | None = None) -> list[Path]:
    """The folders searched, in order: data_dir, $REFFAKD_DATA, the download folder, system."""
    return [root for root, _ in search_roots(data_dir)]
