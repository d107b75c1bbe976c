"""A run directory holds everything of one run, and a lock so two processes never share it.

Layout: ``config.yaml`` (resolved), ``command.txt`` (the command lines that started and resumed
it), ``data.json`` (the data's fingerprint, :mod:`reffakd.data.fingerprint`), ``metrics.jsonl``
(one line per epoch) and ``metrics.csv`` (the same, as a table), ``checkpoints/last.pt`` and
``checkpoints/best.pt``, ``summary.json``, plots, and the artefacts of the method (e.g.
``soft_labels.pt``, or an ``ae/`` sub-run).

The lock is an ``fcntl.flock`` on ``.lock``: the kernel drops it when its process ends, however
it ends, so a killed run never leaves a stale lock behind. Taking it also clears the temp files
a killed writer left (no one else can be writing there then).

A run is resumed with the config it was made with: :func:`config_changes` names what a new config
would change, apart from :data:`FREE_ON_RESUME`, which changes where and how visibly a run goes,
never its results.

A run starts in two steps, the same for every kind of run: :func:`check_resumable` (the data and
the checkpoint a resume continues from), then :func:`write_record` (config, data fingerprint and
command line, before any work). A refused resume leaves the run byte for byte as it was, and a
run killed at any point afterwards still records the command that started it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from torch import nn

from reffakd.config import dump_yaml, to_dict
from reffakd.data.fingerprint import fingerprint_difference, read_fingerprint, write_fingerprint
from reffakd.errors import UserError
from reffakd.files import atomic_write_text, refused_writes, remove_orphan_temps
from reffakd.training.checkpoint import check_checkpoint

LOCK_NAME = ".lock"
COMMAND_FILE = "command.txt"
FREE_ON_RESUME = ("progress", "device", "data.data_dir", "tensorboard")
RESUME_HOW = {"training": "--resume {out}", "soft-label": "--out {out} --resume"}


class RunDir:
    """Paths inside a run directory plus an exclusive lock held while a process works in it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None
        self._created: list[Path] = []  # the folders lock() made, innermost first

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

    def busy_with(self) -> str | None:
        """The process holding this folder's lock (``PID on HOST``), or None when none does."""
        try:
            fd = os.open(self.path / LOCK_NAME, os.O_RDWR)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd)
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def lock(self) -> None:
        """Take the lock, or raise UserError if another process holds it or the folder cannot
        be made or written; then clear the temp files of killed writers."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(
                f"run directory {self.path} is a file, not a folder; choose another --out."
            )
        self._created = [p for p in (self.path, *self.path.parents) if not p.exists()]
        with refused_writes(self.path, "create the run directory"):
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            with refused_writes(self.path, "write into the run directory"):
                self._take_lock()
        except UserError:
            if self._lock_fd is None:
                self._forget_created()
            else:
                self.unlock()
            raise
        remove_orphan_temps(self.path)
        remove_orphan_temps(self.checkpoints)

    def _take_lock(self) -> None:
        lock_path = self.path / LOCK_NAME
        while True:
            fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                if _is_stale(holder):  # the flock lives on in a leftover process: replace it
                    lock_path.unlink(missing_ok=True)
                    continue
                raise UserError(
                    f"run directory {self.path} is in use by process {_describe(holder)}; wait "
                    "for it to finish or choose another --out."
                ) from None
            if _same_file(fd, lock_path):
                break
            os.close(fd)  # the file was replaced while we waited: lock the new one
        self._lock_fd = fd
        os.ftruncate(fd, 0)
        pid = os.getpid()
        holder = {"pid": pid, "host": socket.gethostname(), "start": process_start(pid)}
        os.write(fd, json.dumps(holder).encode())

    def unlock(self) -> None:
        """Release the lock; a directory this lock created and nothing else used is removed."""
        if self._lock_fd is None:
            return
        (self.path / LOCK_NAME).unlink(missing_ok=True)
        os.close(self._lock_fd)
        self._lock_fd = None
        self._forget_created()

    def _forget_created(self) -> None:
        """Remove the folders lock() made, as long as the run left nothing in them."""
        with contextlib.suppress(OSError):  # rmdir fails on the first folder that is not empty
            for folder in self._created:
                folder.rmdir()
        self._created = []

    def __enter__(self) -> RunDir:
        self.lock()
        return self

    def __exit__(self, *exc: object) -> None:
        self.unlock()


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        holder = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder or "host" not in holder:
        return "(unknown)"
    return f"{holder['pid']} on {holder['host']}"


def process_start(pid: int) -> int | None:
    """The start time of process ``pid`` in clock ticks since boot (field 22 of
    ``/proc/PID/stat``); None where there is no /proc or no such process."""
    stat = _proc_stat(pid)
    if stat is None:
        return None
    try:
        return int(stat[19])  # fields after the command's ")": state is field 3, start is 22
    except (IndexError, ValueError):
        return None


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the command name (which may hold spaces)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 1 :].split()


def _is_stale(holder: dict[str, Any]) -> bool:
    """A lock whose recorded process, on this host, is gone, a zombie, or another process
    with the same PID (its start time differs from the recorded one). Its flock is then held
    by a leftover (a child that inherited the descriptor), not by a live run."""
    pid, start = holder.get("pid"), holder.get("start")
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return False
    stat = _proc_stat(pid)
    if stat is None:  # no such process, or no /proc to ask
        return Path("/proc/self/stat").exists() or not _pid_alive(pid)
    if stat[0] == "Z":
        return True
    return isinstance(start, int) and process_start(pid) != start


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == path.stat().st_ino
    except FileNotFoundError:
        return False


def open_run(out: Path, resume: bool, what: str) -> RunDir:
    """Lock ``out``; refuse to start a new run over an existing one."""
    run_dir = RunDir(out)
    if not resume and run_dir.holds_run():
        holder = run_dir.busy_with()
        if holder is not None:
            raise UserError(
                f"{out} holds a run that is still running (process {_describe(holder)}); "
                "wait for it to finish, or choose a new --out."
            )
        how = RESUME_HOW.get(what, "--resume").format(out=out)
        raise UserError(
            f"{out} already holds a run; continue it with {how}, or choose a new --out."
        )
    run_dir.lock()
    return run_dir


def config_changes(recorded: Any, requested: Any) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (recorded, requested)}`` for every value that differs, except the keys of
    :data:`FREE_ON_RESUME` (at any depth, e.g. ``ae.device``)."""
    old, new = _flatten(to_dict(recorded)), _flatten(to_dict(requested))
    changes = {}
    for key in sorted(set(old) | set(new)):
        if any(key == free or key.endswith(f".{free}") for free in FREE_ON_RESUME):
            continue
        if old.get(key) != new.get(key):
            changes[key] = (old.get(key), new.get(key))
    return changes


def describe_changes(
    changes: dict[str, tuple[Any, Any]], names: dict[str, str] | None = None
) -> str:
    """``optim.lr 0.1 -> 0.05, seed 0 -> 1``; ``names`` renames keys (e.g. to their flags)."""
    names = names or {}
    return ", ".join(
        f"{names.get(key, key)} {old!r} -> {new!r}" for key, (old, new) in changes.items()
    )


def _flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):  # an empty section adds nothing
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def record_command(folder: Path, command: str | None) -> None:
    """Append the command line that (re)started the run to ``folder/command.txt``."""
    if not command:
        return
    path = Path(folder) / COMMAND_FILE
    earlier = path.read_text(encoding="utf-8") if path.exists() else ""
    atomic_write_text(path, earlier + command.rstrip("\n") + "\n")


def check_data(run: Path, fingerprint: dict[str, Any], what: str, fix: str) -> None:
    """Refuse data that differs from what ``run`` recorded in ``data.json`` (no record: accept).
    ``what`` names the run in the message ("--resume RUN", "teacher run RUN")."""
    recorded = read_fingerprint(run)
    difference = None if recorded is None else fingerprint_difference(recorded, fingerprint)
    if difference:
        raise UserError(f"{what} was made on other data than this run's ({difference}); {fix}")


def check_resumable(run_dir: RunDir, fingerprint: dict[str, Any], module: nn.Module | None) -> None:
    """Before anything is written: the data is the run's own, and ``last.pt`` (if any) holds
    ``module``'s weights (its state dict: names and shapes) and a history.
    A run without a ``data.json`` or a ``last.pt`` has nothing to compare there."""
    check_data(
        run_dir.path,
        fingerprint,
        f"--resume {run_dir.path}",
        "point --data-dir at the data the run was made on, or start a new run with another --out.",
    )
    if module is not None and run_dir.last_checkpoint.exists():
        check_checkpoint(run_dir.last_checkpoint, module)


def write_record(
    run_dir: RunDir,
    config: Any,
    fingerprint: dict[str, Any] | None,
    command: str | None,
    *,
    write_config: bool = True,
) -> None:
    """``config.yaml``, ``data.json`` and ``command.txt``: what the run is, on what data, and
    the command that (re)started it, written before any work."""
    if write_config:
        atomic_write_text(run_dir.config, dump_yaml(config))
    if fingerprint is not None:
        write_fingerprint(run_dir.path, fingerprint)
    record_command(run_dir.path, command)
