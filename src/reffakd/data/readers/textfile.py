"""The user's own labelled texts: a CSV, TSV or JSONL file (:class:`TextFileOptions`,
:func:`read_textfile`), or a folder with ``train.<ext>`` and ``test.<ext>``
(:func:`find_textfiles`).

Labels are integers 0..C-1 or class names (sorted); a single file is split into train and test
by a seeded, stratified draw recorded in ``extra``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reffakd.data.readers.common import PathLike
from reffakd.data.readers.text_files import (
    SourceFile,
    check_width,
    decode_utf8,
    delimited_rows,
    held_out_record,
    row_error,
    short_repr,
    text_field,
)
from reffakd.data.text import LabelledTexts, RawTextDataset, hold_out_texts
from reffakd.errors import DataError, UserError
from reffakd.files import read_regular

TEXTFILE_TEST_FRACTION = 0.2
TEXTFILE_TEST_SEED = 0
TEXTFILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}


@dataclass(frozen=True)
class TextFileOptions:
    """How to read a user's text file.

    ``format``: ``csv``, ``tsv`` or ``jsonl``; None takes it from the extension. ``text_column``
    and ``label_column``: a header name (CSV/TSV with a header, or a JSONL key) or a 0-based
    column index (negative counts from the end); None means ``text``/``label`` when the header
    has them, else the first/last column. ``header``: whether a CSV/TSV starts with a header row.
    ``test_fraction``/``split_seed``: the stratified test split drawn from a single file.
    """

    format: str | None = None
    text_column: str | int | None = None
    label_column: str | int | None = None
    header: bool = True
    test_fraction: float = TEXTFILE_TEST_FRACTION
    split_seed: int = TEXTFILE_TEST_SEED


@dataclass(frozen=True)
class _Record:
    line: int
    text: str
    label: str


def textfile_format(path: Path, options: TextFileOptions) -> str:
    fmt = options.format or TEXTFILE_FORMATS.get(path.suffix.lower())
    if fmt not in TEXTFILE_FORMATS.values():
        known = ", ".join(TEXTFILE_FORMATS)
        raise UserError(
            f"{path}: unknown text file format; name it {known} or set the format option."
        )
    return fmt


def _column(
    spec: str | int | None,
    default: str,
    fallback: int,
    header: list[str] | None,
    width: int,
    where: str,
) -> int:
    """The 0-based index of a column given by name, index or default."""
    if spec is None:
        return header.index(default) if header and default in header else fallback % width
    if isinstance(spec, str):
        if header is None:
            raise UserError(
                f"{where}: column {spec!r} needs a header row; give a column index instead."
            )
        if spec not in header:
            raise UserError(f"{where}: no column {spec!r}; the header has {', '.join(header)}.")
        return header.index(spec)
    if not -width <= spec < width:
        raise UserError(f"{where}: column {spec} does not exist; rows have {width} columns.")
    return spec % width


def _delimited_records(file: SourceFile, delimiter: str, options: TextFileOptions) -> list[_Record]:
    rows = delimited_rows(file, delimiter, quoted=True)
    first = next(rows, None)
    if first is None:
        return []
    header = [cell.strip() for cell in first[1]] if options.header else None
    width = len(first[1])
    text_at = _column(options.text_column, "text", 0, header, width, file.where)
    label_at = _column(options.label_column, "label", -1, header, width, file.where)
    if text_at == label_at:
        raise UserError(
            f"{file.where}: the text and label columns are the same column ({text_at})."
        )
    records = []
    for line, row in rows if header else [first, *rows]:
        check_width(file, line, row, width)
        records.append(_Record(line, text_field(file, line, row[text_at]), row[label_at].strip()))
    return records


def _json_value(file: SourceFile, line: int, record: dict, key: str) -> object:
    if key not in record or record[key] is None:
        raise row_error(file.where, line, f"no {key!r} field")
    return record[key]


def _json_label(file: SourceFile, line: int, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise row_error(
            file.where, line, f"label {short_repr(value)} is not a string or an integer"
        )
    return str(value).strip()


def _jsonl_records(file: SourceFile, options: TextFileOptions) -> list[_Record]:
    keys = [options.text_column or "text", options.label_column or "label"]
    if any(isinstance(k, int) for k in keys):
        raise UserError(f"{file.where}: JSONL rows are objects; name the text and label keys.")
    records = []
    for line, raw in enumerate(decode_utf8(file).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise row_error(file.where, line, f"invalid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise row_error(file.where, line, "not a JSON object")
        text = _json_value(file, line, record, str(keys[0]))
        if not isinstance(text, str):
            raise row_error(file.where, line, f"text {short_repr(text)} is not a string")
        label = _json_label(file, line, _json_value(file, line, record, str(keys[1])))
        records.append(_Record(line, text_field(file, line, text), label))
    return records


def _read_records(path: Path, options: TextFileOptions) -> tuple[SourceFile, list[_Record]]:
    fmt = textfile_format(path, options)
    file = SourceFile(str(path), read_regular(path, "text file"))
    if fmt == "jsonl":
        records = _jsonl_records(file, options)
    else:
        records = _delimited_records(file, "," if fmt == "csv" else "\t", options)
    for record in records:
        if not record.label:
            raise row_error(file.where, record.line, "missing label")
    return file, records


_INTEGER = re.compile(r"[+-]?\d+")


def _integer_labels(file: SourceFile, records: Sequence[_Record]) -> bool:
    """True when every label is an integer; a column that mixes integers and names is refused
    (``0, 1, neg, pos`` would otherwise be four classes)."""
    integer = [r for r in records if _INTEGER.fullmatch(r.label)]
    if integer and len(integer) < len(records):
        name = next(r for r in records if not _INTEGER.fullmatch(r.label))
        raise row_error(
            file.where,
            name.line,
            f"label {short_repr(name.label)} is a name, but line {integer[0].line} has the integer "
            f"label {integer[0].label}",
            "use integers 0..C-1 or names for every row",
        )
    return bool(records) and len(integer) == len(records)


def _label_key(label: str, integers: bool) -> str:
    return str(int(label)) if integers and _INTEGER.fullmatch(label) else label


def _class_names(file: SourceFile, records: Sequence[_Record], integers: bool) -> list[str]:
    """Integer labels 0..C-1 name classes "0".."C-1"; other labels are names, sorted."""
    if integers:
        for record in records:
            if int(record.label) < 0:
                problem = f"label {record.label} is negative"
                raise row_error(file.where, record.line, problem, "number the classes 0..C-1")
    keys = {_label_key(r.label, integers) for r in records}
    if len(keys) < 2:
        raise DataError(
            f"{file.where}: found {len(keys)} class(es); a classifier needs at least 2."
        )
    if integers:
        _refuse_gaps(file, sorted(int(k) for k in keys))
        return [str(i) for i in range(len(keys))]
    return sorted(keys)


def _refuse_gaps(file: SourceFile, values: list[int]) -> None:
    """Integer labels must be 0..C-1: a skipped value would be a class without a sample."""
    if values[-1] == len(values) - 1:
        return
    missing: list[int] = []
    expected = 0
    for value in values:  # walk the gaps: the largest label may be 10**12
        missing.extend(range(expected, min(value, expected + 5 - len(missing))))
        expected = value + 1
    raise DataError(
        f"{file.where}: the integer labels skip {', '.join(map(str, missing[:5]))} (found "
        f"{len(values)} values up to {values[-1]}), which would be classes without a sample; "
        "number the classes 0..C-1 without gaps, or use names."
    )


def _labelled(
    file: SourceFile, records: Sequence[_Record], names: list[str], integers: bool
) -> LabelledTexts:
    ids = {name: i for i, name in enumerate(names)}
    labels = []
    for record in records:
        key = _label_key(record.label, integers)
        if key not in ids:
            raise row_error(
                file.where,
                record.line,
                f"label {short_repr(record.label)} does not occur in the training data",
            )
        labels.append(ids[key])
    return LabelledTexts([r.text for r in records], torch.tensor(labels, dtype=torch.int64))


def read_textfile(
    train: PathLike, test: PathLike | None = None, options: TextFileOptions | None = None
) -> RawTextDataset:
    """The user's labelled texts: train and test files, or one file split by ``options``."""
    options = options or TextFileOptions()
    train_file, train_records = _read_records(Path(train), options)
    integers = _integer_labels(train_file, train_records)
    names = _class_names(train_file, train_records, integers)
    whole = _labelled(train_file, train_records, names, integers)
    if test is None:
        if not 0.0 < options.test_fraction < 1.0:
            raise UserError(f"test_fraction must be in (0, 1), got {options.test_fraction}")
        train_part, test_part = hold_out_texts(
            whole, options.test_fraction, options.split_seed, len(names)
        )
        extra = held_out_record(options.test_fraction, options.split_seed)
        return RawTextDataset("textfile", train_part, test_part, names, str(train), extra)
    test_file, test_records = _read_records(Path(test), options)
    test_part = _labelled(test_file, test_records, names, integers)
    return RawTextDataset("textfile", whole, test_part, names, f"{train} + {test}")


def find_textfiles(path: PathLike) -> tuple[Path, Path | None] | None:
    """A data file itself, or a folder's ``train.<ext>`` and ``test.<ext>``; None if neither."""
    path = Path(path)
    if path.is_file():
        return (path, None) if path.suffix.lower() in TEXTFILE_FORMATS else None
    for ext in TEXTFILE_FORMATS:
        if (path / f"train{ext}").is_file() and (path / f"test{ext}").is_file():
            return path / f"train{ext}", path / f"test{ext}"
    return None
