"""What every reader shares: path types and the one-line error for damaged files."""

from __future__ import annotations

import os

from reffakd.errors import DataError

PathLike = str | os.PathLike
FIX_HINT = "delete it and re-download, or point --data-dir/REFFAKD_DATA at a good copy"


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def corrupt(where: object, problem: str) -> DataError:
    return DataError(one_line(f"{where}: {problem}; {FIX_HINT}."))
