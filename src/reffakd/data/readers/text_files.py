"""What the text readers share: their files, gathered from a folder or an archive, decoded,
split into delimited rows, and the one-line errors that name the file and line.

A file inside an archive is named ``archive:member`` in messages.
"""

from __future__ import annotations

import csv
import io
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from reffakd.data.readers.common import PathLike
from reffakd.errors import DataError

# ---------------------------------------------------------------------------------------------
# Files in a folder or an archive


@dataclass(frozen=True)
class SourceFile:
    """A file's bytes and its name for messages."""

    where: str  # for messages: a path, or archive:member
    data: bytes


def row_error(
    where: str, line: int, problem: str, fix: str = "fix or delete that row"
) -> DataError:
    """The one-line error for a bad row: file, line, problem and fix."""
    return DataError(" ".join(f"{where}, line {line}: {problem}; {fix}.".split()))


def short_repr(value: object, limit: int = 40) -> str:
    """``repr(value)`` cut to ``limit`` characters, for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_junk(member: str) -> bool:
    parts = member.replace("\\", "/").split("/")
    return "__MACOSX" in parts or parts[-1].startswith(".")


def _pick_members(members: Sequence[str], names: Sequence[str]) -> dict[str, str]:
    """For each wanted base name, the shallowest archive member with that name."""
    chosen: dict[str, str] = {}
    for member in sorted(members, key=lambda m: (m.count("/"), m)):
        base = member.rsplit("/", 1)[-1]
        if base in names and base not in chosen and not _is_junk(member):
            chosen[base] = member
    return chosen


def _archive_files(path: Path, names: Sequence[str]) -> dict[str, SourceFile]:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                files = [i.filename for i in zf.infolist() if not i.is_dir()]
                picked = _pick_members(files, names)
                return {n: SourceFile(f"{path}:{m}", zf.read(m)) for n, m in picked.items()}
        with tarfile.open(path) as tar:
            regular = {m.name: m for m in tar.getmembers() if m.isfile()}
            picked = _pick_members(list(regular), names)
            return {
                n: SourceFile(f"{path}:{m}", tar.extractfile(regular[m]).read())  # type: ignore[union-attr]
                for n, m in picked.items()
            }
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        problem = " ".join(str(err).split())
        raise DataError(
            f"cannot read archive {path} ({problem}); delete it and fetch it again."
        ) from err


def collect_files(
    path: PathLike, names: Sequence[str], subfolders: Sequence[str] = ()
) -> dict[str, SourceFile]:
    """The files called ``names`` in folder ``path`` (or its first subfolder that has any of
    them), or in archive ``path``. Missing names are simply absent from the result."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path} does not exist; check the path.")
    if not path.is_dir():
        return _archive_files(path, names)
    for folder in (path, *(path / sub for sub in subfolders)):
        present = [n for n in names if (folder / n).is_file()]
        if present:
            return {n: SourceFile(str(folder / n), (folder / n).read_bytes()) for n in present}
    return {}


def require_file(
    files: dict[str, SourceFile], name: str, path: PathLike, expects: str
) -> SourceFile:
    if name not in files:
        raise DataError(f"{path}: no {name} found; expected {expects}.")
    return files[name]


# ---------------------------------------------------------------------------------------------
# Decoding and delimited rows


def decode_utf8(file: SourceFile) -> str:
    """UTF-8 text (a leading BOM dropped); invalid bytes raise DataError naming the line."""
    try:
        return file.data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = file.data[: err.start].count(b"\n") + 1
        raise row_error(
            file.where,
            line,
            f"invalid UTF-8 (byte {file.data[err.start]:#04x})",
            "save the file as UTF-8",
        ) from err


def delimited_rows(
    file: SourceFile, delimiter: str, quoted: bool
) -> Iterator[tuple[int, list[str]]]:
    """``(line where the row starts, fields)`` of a CSV/TSV file, blank lines skipped.

    ``quoted``: fields may be quoted as in CSV (delimiters, newlines and doubled quotes inside
    quotes); otherwise every quote character is text.
    """
    reader = csv.reader(
        io.StringIO(decode_utf8(file), newline=""),
        delimiter=delimiter,
        quoting=csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE,
        strict=quoted,
    )
    line = 1
    try:
        for row in reader:
            if row:
                yield line, row
            line = reader.line_num + 1
    except csv.Error as err:
        raise row_error(file.where, line, f"malformed row ({err})", "check its quotes") from err


def check_width(file: SourceFile, line: int, row: list[str], width: int) -> None:
    if len(row) != width:
        raise row_error(
            file.where,
            line,
            f"expected {width} columns, found {len(row)}",
            "fix the row (quote fields that contain the delimiter)",
        )


def text_field(file: SourceFile, line: int, value: str) -> str:
    text = value.strip()
    if not text:
        raise row_error(file.where, line, "empty text")
    return text


def held_out_record(fraction: float, seed: int) -> dict:
    """What ``extra`` records about a test split held out of the training data."""
    return {
        "test_split": f"held out {fraction:.0%} of every class, seed {seed}",
        "test_fraction": fraction,
        "test_seed": seed,
    }
