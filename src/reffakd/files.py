"""Writing files so that a crash never leaves a half-written one: atomic bytes, text, JSON,
torch objects and matplotlib figures; and reading the user's files as regular files only.

When the file system refuses a write (a full disk, a read-only mount, no permission, a file where
a folder should be), the error is a :class:`~reffakd.errors.StorageError` naming the path: the
user's folder is the problem, not the program. :func:`os_error_message` is the one place an
``OSError`` of the user's files (a read or a write) becomes a one-line message; ``OSError`` s of
other kinds stay as they are.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from reffakd.errors import DataError, StorageError

# Every errno here is the folder's state, which the user can change (and what to change);
# anything else is a bug and keeps its traceback.
REFUSED_WRITE = {
    errno.ENOSPC: "free some space",
    errno.EDQUOT: "free some space",
    errno.EFBIG: "free some space",
    errno.EROFS: "make the folder writable",
    errno.EACCES: "make the folder writable",
    errno.EPERM: "make the folder writable",
    errno.ENOTDIR: "fix the path",
    errno.EISDIR: "fix the path",
    errno.EEXIST: "fix the path",
    errno.ENAMETOOLONG: "fix the path",
    errno.ELOOP: "fix the path",
}
TEMP_SUFFIX = ".tmp"
# The same states met on any access, read or write: what the user changes.
OS_ADVICE = {
    **REFUSED_WRITE,
    errno.EACCES: "check the permissions of the file and its folders",
    errno.EPERM: "check the permissions of the file and its folders",
    errno.ENOENT: "check the path",
    errno.ENXIO: "pass a regular file",
    errno.EIO: "check the disk or copy the file elsewhere",
}


def os_error_message(exc: OSError) -> str | None:
    """``PATH: reason; what to change`` for an OSError of the user's files, else None (a bug)."""
    advice = OS_ADVICE.get(exc.errno) if exc.errno is not None else None
    if advice is None:
        return None
    where = f"{exc.filename}: " if exc.filename is not None else ""
    return f"{where}{exc.strerror or exc}; {advice}"


def read_regular(path: Path, what: str) -> bytes:
    """The bytes of a user's file, which must be a regular file (:func:`regular_file`); the
    file system refusing the read stays an OSError, for :func:`os_error_message` to word."""
    return regular_file(path, what).read_bytes()


def regular_file(path: Path, what: str) -> Path:
    """``path`` if it is a regular file (through symlinks); else a DataError naming what it is.

    Readers check this before opening: a FIFO named like an image would block the read forever,
    a dangling symlink or a folder would fail with a less helpful error.
    """
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        state = "a dangling symlink" if path.is_symlink() else "missing"
        raise DataError(
            f"{what} {path} is {state}; remove it or point it at a real file."
        ) from None
    if not stat.S_ISREG(mode):
        kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, socket or device)"
        raise DataError(f"{what} {path} is {kind}; remove it or replace it with a regular file.")
    return path


@contextlib.contextmanager
def refused_writes(path: Path, action: str = "write") -> Iterator[None]:
    """Turn the file system refusing a write under ``path`` into a one-line StorageError."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in REFUSED_WRITE:
            raise
        raise StorageError(
            f"cannot {action} {path}: {exc.strerror or exc}", REFUSED_WRITE[exc.errno]
        ) from None


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``.

    The temp file is ``.<name>.<random>.tmp``; it is removed on any failure, and a process
    killed mid-write leaves one that :func:`remove_orphan_temps` clears later.
    """
    path = Path(path)
    with refused_writes(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def remove_orphan_temps(folder: Path) -> list[Path]:
    """Delete the temp files :func:`atomic_write_bytes` left in ``folder`` when its process was
    killed mid-write. Only call it while no other process can be writing there (under a lock).
    """
    removed = []
    for temp in Path(folder).glob(f".*{TEMP_SUFFIX}"):
        if temp.is_file():
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def figure_png(fig: Any, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    pyplot().close(fig)
    return buffer.getvalue()


def save_figure(fig: Any, path: Path, dpi: int = 100) -> None:
    """Write a matplotlib figure as PNG, atomically, and close it."""
    atomic_write_bytes(Path(path), figure_png(fig, dpi))


def pyplot() -> Any:
    """matplotlib's pyplot on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
