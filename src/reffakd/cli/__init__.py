# PYTHON_ARGCOMPLETE_OK
"""Command-line interface: ``reffakd {soft-labels,train,demo,bench,tune,cost,list,report,show}``.

Every bad input ends in a one-line ``reffakd: error: ...`` message and exit code 2. Shell
completion comes from argcomplete when it is installed (``pip install 'reffakd[completion]'``,
then ``eval "$(register-python-argcomplete reffakd)"``).

The parser is in :mod:`~reffakd.cli.parser`, flags become configs in :mod:`~reffakd.cli.flags`,
and each sub-command is a function in :mod:`~reffakd.cli.commands`; this module runs one and
turns every error into its one line and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from reffakd.cli.commands import COMMANDS
from reffakd.cli.flags import TRAIN_FLAGS, resolve
from reffakd.cli.parser import build_parser, enable_completion
from reffakd.errors import NonFiniteLossError, StorageError, UserError
from reffakd.files import os_error_message
from reffakd.training.distributed import world_from_env
from reffakd.training.rundir import RunDir

__all__ = ["COMMANDS", "TRAIN_FLAGS", "build_parser", "enable_completion", "main", "resolve"]


# How to continue a run of each command, once its run directory holds one.
RESUME_COMMANDS = {
    "train": "reffakd train --resume {run}",
    "demo": "reffakd train --resume {run}",
    "soft-labels": "reffakd soft-labels --out {run} --resume",
    "bench": "run the same command again to continue",
    "tune": "run the same command again to continue",
}


def _continue_hint(args: argparse.Namespace) -> str | None:
    """``continue with `...``` for a command whose run directory holds a run, else None."""
    template = RESUME_COMMANDS.get(args.command)
    run = getattr(args, "run_dir", None)
    if template is None:
        return None
    if "{run}" not in template:
        return template
    if run is None or not RunDir(run).holds_run():
        return None
    return f"continue with `{template.format(run=shlex.quote(str(run)))}`"


class Terminated(BaseException):
    """SIGTERM arrived: like KeyboardInterrupt, it unwinds the run (locks released, half-written
    temp files removed; every checkpoint is written atomically, so the last one is whole)."""


def _raise_terminated(signum: int, frame: Any) -> NoReturn:
    raise Terminated


@contextlib.contextmanager
def _sigterm_stops_cleanly() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` while the command runs (main thread only)."""
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:  # not the main thread: signals cannot be handled here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _stopped_message(args: argparse.Namespace) -> str:
    """What a SIGTERM'd command says: that it stopped, where the run stands, how to resume."""
    hint = _continue_hint(args)
    run = getattr(args, "run_dir", None)
    done = ""
    if run is not None and (Path(run) / "metrics.jsonl").is_file():
        epochs = len((Path(run) / "metrics.jsonl").read_text(encoding="utf-8").splitlines())
        done = f" after {epochs} finished epoch{'s' * (epochs != 1)} (checkpoint kept)"
    return f"reffakd: stopped by SIGTERM{done}{'; ' + hint if hint else ''}."


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    enable_completion(parser)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["reffakd", *argv])
    with _sigterm_stops_cleanly():
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command != "train" and world_from_env().enabled:
            raise UserError(
                f"only `reffakd train` runs under torchrun, not `reffakd {args.command}`; "
                "run it as one process."
            )
        return COMMANDS[args.command](args)
    except StorageError as exc:
        hint = _continue_hint(args)
        then = f", then {hint}" if hint else " or choose another --out"
        print(f"reffakd: error: {exc}; {exc.advice}{then}.", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"reffakd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the user's files, read or written anywhere: one line
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"reffakd: error: {message}.", file=sys.stderr)
        return UserError.exit_code
    except NonFiniteLossError as exc:
        print(f"reffakd: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = _continue_hint(args)
        print(f"reffakd: interrupted{'; ' + hint if hint else ''}.", file=sys.stderr)
        return 130
    except Terminated:
        print(_stopped_message(args), file=sys.stderr)
        return 128 + signal.SIGTERM
