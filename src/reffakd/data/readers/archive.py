"""Directories and archives (tar of any compression, zip) as read-only trees of files."""

from __future__ import annotations

import hashlib
import os
import stat as stat_module
import tarfile
import zipfile
import zlib
from pathlib import Path

from reffakd.data.readers.common import FIX_HINT, PathLike, corrupt
from reffakd.errors import DataError
from reffakd.files import read_regular, regular_file

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)


def is_hidden(rel: str) -> bool:
    return any(part.startswith(".") for part in rel.split("/"))


def is_image(rel: str) -> bool:
    return os.path.splitext(rel)[1].lower() in IMAGE_EXTENSIONS and not is_hidden(rel)


class Tree:
    """A directory or an archive seen as relative POSIX paths -> bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release open handles."""

    def files(self) -> list[str]:
        raise NotImplementedError

    def read(self, rel: str) -> bytes:
        raise NotImplementedError

    def identity(self) -> str:
        """A string that changes whenever the content may have changed."""
        stat = self.path.stat()
        return f"{self.path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"

    def describe(self, rel: str) -> str:
        return f"{rel} in {self.path}"

    def missing(self, rel: str) -> DataError:
        return DataError(f"{self.describe(rel)} is missing; the dataset is incomplete, {FIX_HINT}.")


def _raise(err: OSError) -> None:
    """os.walk skips a folder it cannot list; an unreadable folder is the user's to fix."""
    raise err


def _regular_stat(path: Path) -> os.stat_result | None:
    """The stat of a regular file (through symlinks); None for anything else."""
    try:
        result = path.stat()
    except FileNotFoundError:  # a dangling symlink
        return None
    return result if stat_module.S_ISREG(result.st_mode) else None


class DirTree(Tree):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._stats: dict[str, tuple[int, int]] | None = None

    def _scan(self) -> dict[str, tuple[int, int]]:
        if self._stats is None:
            stats = {}
            walk = os.walk(self.path, onerror=_raise, followlinks=True)
            for dirpath, dirnames, filenames in walk:
                dirnames[:] = [d for d in dirnames if not d.startswith(".")]
                base = Path(dirpath).relative_to(self.path).as_posix()
                for filename in filenames:
                    if filename.startswith("."):
                        continue
                    rel = filename if base == "." else f"{base}/{filename}"
                    stat = _regular_stat(Path(dirpath, filename))
                    if stat is not None:
                        stats[rel] = (stat.st_size, stat.st_mtime_ns)
                    elif is_image(rel):  # a FIFO named like an image would block the read
                        regular_file(Path(dirpath, filename), "image")
            self._stats = dict(sorted(stats.items()))
        return self._stats

    def files(self) -> list[str]:
        return list(self._scan())

    def read(self, rel: str) -> bytes:
        if not (self.path / rel).exists() and not (self.path / rel).is_symlink():
            raise self.missing(rel)
        return read_regular(self.path / rel, "file")

    def identity(self) -> str:
        digest = hashlib.sha256()
        for rel, (size, mtime) in self._scan().items():
            digest.update(f"{rel}\0{size}\0{mtime}\n".encode())
        return f"dir\0{digest.hexdigest()}"

    def describe(self, rel: str) -> str:
        return str(self.path / rel)


def member_name(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


class TarTree(Tree):
    """A tar archive, read in one sequential pass (fast for compressed tars)."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._members: dict[str, bytes] | None = None

    def _load(self) -> dict[str, bytes]:
        if self._members is None:
            members = {}
            try:
                with tarfile.open(self.path, "r:*") as tar:
                    for member in tar:
                        name = member_name(member.name)
                        if member.isfile() and not is_hidden(name):
                            members[name] = tar.extractfile(member).read()  # type: ignore[union-attr]
            except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
                raise corrupt(self.path, f"unreadable or truncated archive ({err})") from err
            self._members = dict(sorted(members.items()))
        return self._members

    def files(self) -> list[str]:
        return list(self._load())

    def read(self, rel: str) -> bytes:
        try:
            return self._load()[rel]
        except KeyError:
            raise self.missing(rel) from None


class ZipTree(Tree):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        try:
            self._zip = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as err:
            raise corrupt(path, f"unreadable zip archive ({err})") from err

    def close(self) -> None:
        self._zip.close()

    def files(self) -> list[str]:
        names = (member_name(info.filename) for info in self._zip.infolist() if not info.is_dir())
        return sorted(name for name in names if not is_hidden(name))

    def read(self, rel: str) -> bytes:
        try:
            return self._zip.read(rel)
        except KeyError:
            raise self.missing(rel) from None
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise corrupt(self.describe(rel), f"damaged archive member ({err})") from err


def open_tree(path: PathLike) -> Tree:
    """Open a directory, tar (any compression) or zip archive as a tree of files."""
    path = Path(path)
    if path.is_dir():
        return DirTree(path)
    if not path.exists() and not path.is_symlink():
        raise DataError(f"{path} does not exist; check --data-dir/REFFAKD_DATA.")
    regular_file(path, "archive")  # a pipe would block the read
    if zipfile.is_zipfile(path):
        return ZipTree(path)
    try:
        is_tar = tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        is_tar = False
    if is_tar:
        return TarTree(path)
    raise corrupt(path, "neither a directory nor a readable tar or zip archive")


def find_prefix(tree: Tree, filename: str) -> str | None:
    """The folder prefix ("" or "top/") of the shallowest file called ``filename``."""
    hits = [rel for rel in tree.files() if rel.rsplit("/", 1)[-1] == filename]
    if not hits:
        return None
    best = min(hits, key=lambda rel: (rel.count("/"), rel))
    return best[: len(best) - len(filename)]


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")


def is_archive_file(path: Path) -> bool:
    """Whether ``path`` is a file whose name says tar (any compression) or zip."""
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)
