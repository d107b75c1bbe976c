"""Where a Hugging Face model or tokenizer comes from, and the lazy ``transformers`` import.

``hf:FOLDER`` is read from the folder with ``local_files_only`` (never the network).
``hf:HUB_ID`` is loaded through the hub: downloaded when needed, unless the environment sets
``HF_HUB_OFFLINE`` (then only the local cache is read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reffakd.errors import UserError

PREFIX = "hf"
INSTALL = "pip install 'reffakd[transformers]'"


def import_transformers(what: str) -> Any:
    """The ``transformers`` module, or a one-line UserError saying how to install it."""
    try:
        import transformers
    except ImportError:
        raise UserError(f"{what} needs the optional package transformers: {INSTALL}") from None
    return transformers


def hub_location(reference: str) -> tuple[str, bool]:
    """``(folder or hub id, local_files_only)`` of ``hf:DIR_OR_ID``."""
    target = reference.partition(":")[2] if reference.startswith(f"{PREFIX}:") else reference
    if not target:
        raise UserError(f"{reference!r} names no model: use hf:FOLDER or hf:HUB_ID.")
    if Path(target).is_dir():
        return str(Path(target).resolve()), True
    offline = os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0", "false", "False")
    return target, offline


def canonical_reference(reference: str) -> str:
    """``hf:`` and an absolute folder (so a run resumes from any directory), or the hub id."""
    target, local = hub_location(reference)
    return f"{PREFIX}:{target}" if local and Path(target).is_dir() else reference
