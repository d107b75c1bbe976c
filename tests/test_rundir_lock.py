"""The run-directory lock: a lock whose recorded process is gone, a zombie or another process
with the same PID is stale; a live holder's is not (training/rundir.py)."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reffakd.errors import UserError
from reffakd.training.rundir import RunDir, process_start

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="needs /proc for process start times"
)


@pytest.fixture
def leftover(tmp_path) -> Iterator[Path]:
    """A run folder whose flock is held by another open file (what a child that inherited the
    killed run's descriptor keeps), with the holder's record left to each test to write."""
    folder = tmp_path / "run"
    folder.mkdir()
    fd = os.open(folder / ".lock", os.O_CREAT | os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        os.close(fd)


def record(folder: Path, pid: int, start: int | None) -> None:
    holder = {"pid": pid, "host": socket.gethostname(), "start": start}
    (folder / ".lock").write_text(json.dumps(holder))


def zombie() -> subprocess.Popen:
    """A child that has exited but is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    for _ in range(200):
        stat = Path(f"/proc/{child.pid}/stat").read_text()
        if stat[stat.rfind(")") + 2] == "Z":
            return child
        time.sleep(0.05)
    raise AssertionError("the child did not become a zombie")


def test_a_lock_held_for_a_zombie_is_stale(leftover):
    child = zombie()
    try:
        record(leftover, child.pid, process_start(child.pid))
        with RunDir(leftover) as run_dir:
            assert json.loads((run_dir.path / ".lock").read_text())["pid"] == os.getpid()
    finally:
        child.wait()


def test_a_lock_of_a_pid_that_started_at_another_time_is_stale(leftover):
    record(leftover, os.getpid(), (process_start(os.getpid()) or 0) + 1)  # a reused PID
    with RunDir(leftover):
        pass


def test_a_lock_of_a_process_that_is_gone_is_stale(leftover):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    record(leftover, child.pid, 1)
    with RunDir(leftover):
        pass


def test_a_live_holder_keeps_its_lock(leftover):
    record(leftover, os.getpid(), process_start(os.getpid()))
    with pytest.raises(UserError, match=f"in use by process {os.getpid()} on ") as refused:
        RunDir(leftover).lock()
    assert "\n" not in str(refused.value)


def test_the_lock_records_the_holders_start_time(tmp_path):
    with RunDir(tmp_path / "run") as run_dir:
        holder = json.loads((run_dir.path / ".lock").read_text())
    assert holder["start"] == process_start(os.getpid()) is not None
