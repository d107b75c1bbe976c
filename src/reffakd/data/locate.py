"""Finding a dataset on disk, downloading it when allowed, and reading it.

:func:`load_dataset` searches the roots of :func:`reffakd.data.paths.search_roots` in order; in
each it looks in the subfolders named by the spec's ``folder_names`` and then in the folder
itself. The first usable copy is read. If none is found the dataset is downloaded (with checksum
verification) into ``user_cache_dir()/"datasets"/<name>/``, unless ``download=False`` or the
environment sets ``REFFAKD_NO_DOWNLOAD=1``.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from pathlib import Path
from typing import Any

from reffakd.data.dataset import RawDataset
from reffakd.data.paths import ENV_DATA, ENV_NO_DOWNLOAD, search_roots, user_cache_dir
from reffakd.data.readers.archive import is_archive_file
from reffakd.data.readers.common import PathLike
from reffakd.data.spec import DatasetSpec, Found, get_spec
from reffakd.data.text import RawTextDataset
from reffakd.errors import DataError, UserError

log = logging.getLogger(__name__)

DOWNLOAD_TIMEOUT_S = 20.0


def _places(spec: DatasetSpec, root: Path, explicit: bool) -> list[tuple[Path, bool]]:
    """Paths to probe under one root, each with whether it is dedicated to the dataset."""
    if spec.explicit_only:
        return [(root, True)]
    return [(root / name, True) for name in spec.folder_names] + [(root, explicit)]


def locate(spec: DatasetSpec, data_dir: PathLike | None = None) -> Found | None:
    """The first usable copy of the dataset in the search order, or None."""
    assert spec.probe is not None
    if data_dir is not None and Path(data_dir).exists() and not Path(data_dir).is_dir():
        return _given_file(spec, Path(data_dir))
    for root, origin in search_roots(data_dir):
        explicit = origin == "--data-dir"
        if spec.explicit_only and not explicit:
            continue
        for path, dedicated in _places(spec, root, explicit):
            try:
                found = spec.probe(path, dedicated) if path.exists() else None
            except PermissionError as err:
                if explicit:  # the user's own folder: say so, not "not found" later
                    raise DataError(
                        f"cannot read {err.filename or path} ({err.strerror}); check the "
                        "permissions of --data-dir and the folders in it."
                    ) from None
                log.warning("skipping %s: %s", path, err)
                continue
            if found is not None:
                return found
    return None


def _given_file(spec: DatasetSpec, path: Path) -> Found:
    """``--data-dir`` naming a file: a dataset read from one file (a TSV, an archive) takes it;
    others would silently search elsewhere."""
    assert spec.probe is not None
    found = spec.probe(path, True)
    if found is None:
        raise DataError(
            f"--data-dir {path} is a file, not a folder; pass the folder that holds {spec.expects}."
        )
    return found


def _not_found(spec: DatasetSpec, data_dir: PathLike | None, problem: str) -> DataError:
    roots = search_roots(data_dir)
    if spec.explicit_only:
        roots = [r for r in roots if r[1] == "--data-dir"]
    places = ", ".join(
        f"{root} ({origin}{'' if root.exists() else ', missing'})" for root, origin in roots
    )
    where = (
        f"looked in {places} and in their subfolders {', '.join(spec.folder_names)}"
        if spec.folder_names
        else f"looked in {places}"
    )
    how = f"pass --data-dir DIR or set {ENV_DATA}=DIR, where DIR holds {spec.expects}"
    if spec.install_hint:
        how += f", or {spec.install_hint}"
    text = f"{spec.name} not found: {where}; {problem}. To provide it, {how}."
    return DataError(" ".join(text.split()))


# ---------------------------------------------------------------------------------------------
# Downloading


class _DownloadFailed(Exception):
    """The network or the server failed; reported as part of the not-found message."""


def _downloads_disabled() -> bool:
    return os.environ.get(ENV_NO_DOWNLOAD, "").strip().lower() not in ("", "0", "false", "no")


def _hasher(checksum: str) -> Any:
    """sha256 for a 64-digit checksum, else md5."""
    return hashlib.sha256() if len(checksum) == 64 else hashlib.md5(usedforsecurity=False)


def _checksum(path: Path, like: str) -> str:
    """The checksum of ``path``, of the same kind as ``like``."""
    digest = _hasher(like)
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, checksum: str) -> None:
    """Download ``url`` to ``dest`` via a temporary file, verifying its checksum."""
    log.info("downloading %s", url)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}-", suffix=".part")
    try:
        digest = _hasher(checksum)
        with (
            os.fdopen(fd, "wb") as out,
            urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response,
        ):
            for chunk in iter(lambda: response.read(1 << 20), b""):
                out.write(chunk)
                digest.update(chunk)
        if digest.hexdigest() != checksum:
            raise DataError(
                f"checksum mismatch for {url}: {digest.name} {digest.hexdigest()}, expected "
                f"{checksum}; the download was deleted. Try again later, or fetch the data by hand "
                f"and pass --data-dir DIR or set {ENV_DATA}=DIR."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise _DownloadFailed(f"downloading {url} failed ({reason})") from err
    finally:
        Path(tmp).unlink(missing_ok=True)


def _extract(archive: Path, target: Path) -> None:
    """Unpack a tar or zip archive into ``target``, replacing what was unpacked before."""
    log.info("extracting %s", archive)
    staging = Path(tempfile.mkdtemp(dir=target, prefix=".extract-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(staging)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(staging, filter="data")
        for entry in staging.iterdir():
            dest = target / entry.name
            if dest.is_dir() and not dest.is_symlink():
                shutil.rmtree(dest)
            elif dest.exists() or dest.is_symlink():
                dest.unlink()
            os.replace(entry, dest)
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        raise DataError(
            " ".join(f"cannot extract {archive} ({err}); delete it and run again.".split())
        ) from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def download_dataset(spec: DatasetSpec) -> Path:
    """Download (and unpack) a dataset into ``user_cache_dir()/"datasets"/<name>/``."""
    target = user_cache_dir() / "datasets" / spec.name
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise _DownloadFailed(f"cannot create {target} ({err})") from err
    for url, filename, checksum in spec.downloads:
        dest = target / filename
        if not (dest.is_file() and _checksum(dest, checksum) == checksum):
            _fetch(url, dest, checksum)
        if is_archive_file(dest):
            _extract(dest, target)
    return target


# ---------------------------------------------------------------------------------------------
# Loading


def _check(spec: DatasetSpec, raw: RawDataset | RawTextDataset, path: Path) -> None:
    """Catch a copy of the wrong dataset (e.g. MNIST files in a Fashion-MNIST folder).

    Compares what the data says about itself (``raw.facts()``: classes, and for images the
    channels and side) with what the spec fixes.
    """
    found = raw.facts()
    expected = {
        "classes": spec.num_classes,
        "channels": spec.in_channels,
        "pixels per side": spec.native_size,
    }
    for what, value in expected.items():
        if value is not None and what in found and found[what] != value:
            raise DataError(
                f"{spec.name}: {path} has {found[what]} {what}, expected {value}; it is not a "
                f"copy of {spec.name}, point --data-dir/{ENV_DATA} at the right data."
            )


def load_dataset(
    name: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    cache_dir: PathLike | None = None,
) -> RawDataset | RawTextDataset:
    """Find (or download) and read a dataset's official train and test splits.

    ``cache_dir`` is where decoded image files are cached (default
    ``user_cache_dir()/"decoded"``). Raises :class:`DataError` when the data cannot be found or
    is damaged, with a message naming every place searched.
    """
    spec = get_spec(name)
    if spec.explicit_only and data_dir is None:
        raise UserError(
            f"dataset {name!r} reads only from --data-dir DIR; DIR holds {spec.expects}."
        )
    found = locate(spec, data_dir)
    if found is None:
        found = _download_and_locate(spec, data_dir, download)
    raw = found.read(cache_dir)
    _check(spec, raw, found.path)
    raw.name = spec.name
    raw.source = str(found.path)
    return raw


def _remove_if_empty(folder: Path) -> None:
    with contextlib.suppress(OSError):
        folder.rmdir()


def _download_and_locate(spec: DatasetSpec, data_dir: PathLike | None, allowed: bool) -> Found:
    if not spec.downloads:
        raise _not_found(spec, data_dir, "it cannot be downloaded automatically")
    if not allowed:
        raise _not_found(spec, data_dir, "downloading was not requested")
    if _downloads_disabled():
        raise _not_found(spec, data_dir, f"downloading is disabled by {ENV_NO_DOWNLOAD}=1")
    try:
        target = download_dataset(spec)
    except _DownloadFailed as err:
        _remove_if_empty(user_cache_dir() / "datasets" / spec.name)
        raise _not_found(spec, data_dir, str(err)) from err
    assert spec.probe is not None
    found = spec.probe(target, True)
    if found is None:
        raise DataError(
            f"{spec.name}: downloaded into {target} but found no usable data there; delete that "
            "folder and try again."
        )
    return found
