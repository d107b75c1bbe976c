"""A run directory holds everything of one run, and a lock so two processes never share it.

Layout: ``config.yaml`` (resolved), ``command.txt`` (the command lines that started and resumed
it), ``metrics.jsonl`` (one line per epoch) and ``metrics.csv`` (the same, as a table),
``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``summary.json``, plots, and the
artefacts of the method (e.g. ``soft_labels.pt``, or an ``ae/`` sub-run).

The lock is an ``fcntl.flock`` on ``.lock``: the kernel drops it when its process ends, however
it ends, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from reffakd.config import dump_yaml, from_dict, load_yaml, to_dict
from reffakd.errors import UserError
from reffakd.files import atomic_write_text

LOCK_NAME = ".lock"
COMMAND_FILE = "command.txt"


class RunDir:
    """Paths inside a run directory plus an exclusive lock held while a process works in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._created = False

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    metrics_csv = property(lambda self: self.path / "metrics.csv")
    commands = property(lambda self: self.path / COMMAND_FILE)
    summary = property(lambda self: self.path / "summary.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.pt")

    def holds_run(self) -> bool:
        return self.config.exists() or self.last_checkpoint.exists()

    def is_complete(self) -> bool:
        return self.summary.exists()

    def lock(self) -> None:
        """Take the lock, or raise UserError if another process holds it."""
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK_NAME
        while True:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                self._forget_created()
                raise UserError(
                    f"run directory {self.path} is in use by process {holder}; wait for it to "
                    "finish or choose another --out."
                ) from None
            if _same_file(fd, lock_path):
                break
            os.close(fd)  # the file was replaced while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._lock_fd = fd

    def unlock(self) -> None:
        """Release the lock; a directory this lock created and nothing else used is removed."""
        if self._lock_fd is None:
            return
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        self._forget_created()

    def _forget_created(self) -> None:
        if self._created:
            with contextlib.suppress(OSError):  # only succeeds when the run left nothing behind
                self.path.rmdir()
            self._created = False

    def __enter__(self) -> RunDir:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


def _read_holder(fd: int) -> str:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"{holder['pid']} on {holder['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "(unknown)"


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def open_run(out: Path, resume: bool, what: str) -> RunDir:
    """Lock ``out``; refuse to start a new run over an existing one."""
    run_dir = RunDir(out)
    if not resume and run_dir.holds_run():
        raise UserError(
            f"{out} already holds a {what} run; continue it with --resume {out}, "
            "or choose a new --out."
        )
    run_dir.lock()
    return run_dir


def check_or_write_config(run_dir: RunDir, cls: type, config: Any, what: str) -> None:
    """Write ``config.yaml``, or check that a resumed run was made with this same config."""
    if run_dir.config.exists():
        try:
            existing = from_dict(cls, load_yaml(run_dir.config))
        except UserError:
            raise UserError(
                f"{run_dir.path} holds a run of another kind, not a {what} run; "
                "choose another --out."
            ) from None
        if _comparable(existing) != _comparable(config):
            raise UserError(
                f"{run_dir.path} holds a {what} run made with other options; resume it with "
                "its own options (--resume alone) or choose another --out."
            )
        return
    atomic_write_text(run_dir.config, dump_yaml(config))


def _comparable(config: Any) -> dict[str, Any]:
    """A config without the keys that may change between an interrupted run and its resume."""
    values = to_dict(config)
    for key in ("progress", "device", "tensorboard"):
        values.pop(key, None)
    return values


def record_command(folder: Path, command: str | None) -> None:
    """Append the command line that (re)started the run to ``folder/command.txt``."""
    if not command:
        return
    path = Path(folder) / COMMAND_FILE
    earlier = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, earlier + command.rstrip("\n") + "\n")
