"""A run directory holds everything of one run, and a lock so two processes never share it.

Layout: ``config.yaml`` (resolved), ``metrics.jsonl`` (one line per epoch),
``checkpoints/last.pt`` and ``checkpoints/best.pt``, ``summary.json``, plots, and the
artefacts of the method (e.g. ``soft_labels.pt``, or an ``ae/`` sub-run).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from reffakd.errors import UserError

LOCK_NAME = ".lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDir:
    """Paths inside a run directory plus an exclusive, stale-aware lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._locked = False

    config = property(lambda self: self.path / "config.yaml")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    summary = property(lambda self: self.path / "summary.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    last_checkpoint = property(lambda self: self.path / "checkpoints" / "last.pt")
    best_checkpoint = property(lambda self: self.path / "checkpoints" / "best.pt")

    def holds_run(self) -> bool:
        return self.config.exists() or self.last_checkpoint.exists()

    def is_complete(self) -> bool:
        return self.summary.exists()

    def lock(self) -> None:
        """Take the lock, or raise UserError if a live process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / LOCK_NAME
        for _ in range(2):
            try:
                fd = os.open(lock_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except OSError as exc:
                if exc.errno != errno.EEXIST:
                    raise
                holder = self._lock_holder(lock_path)
                if holder is not None:
                    raise UserError(
                        f"run directory {self.path} is in use by process {holder['pid']} on "
                        f"{holder['host']}; wait for it to finish or choose another --out."
                    ) from None
                lock_path.unlink(missing_ok=True)  # stale: its process is gone
                continue
            with os.fdopen(fd, "w") as handle:
                json.dump({"pid": os.getpid(), "host": socket.gethostname()}, handle)
            self._locked = True
            return
        raise UserError(f"could not lock run directory {self.path}; remove {lock_path} if stale.")

    def _lock_holder(self, lock_path: Path) -> dict[str, Any] | None:
        """The live holder of the lock, or None when the lock is stale."""
        try:
            holder = json.loads(lock_path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            # Unreadable: possibly being written by a process that just created it.
            try:
                age = time.time() - lock_path.stat().st_mtime
            except OSError:
                return None
            return {"pid": "unknown", "host": "unknown"} if age < 30 else None
        if host != socket.gethostname():
            return holder  # cannot check another machine's processes: assume alive
        if pid == os.getpid() or not _pid_alive(pid):
            return None
        return holder

    def unlock(self) -> None:
        if self._locked:
            (self.path / LOCK_NAME).unlink(missing_ok=True)
            self._locked = False

    def __enter__(self) -> RunDir:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
