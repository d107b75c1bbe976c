"""Readers for text classification data on disk: SST-2, AG News, MR and the user's own files.

Every reader takes a folder or an archive (tar or zip) and returns a
:class:`~reffakd.data.text.RawTextDataset`. Rows that cannot be read raise a one-line
:class:`DataError` naming the file (``archive:member`` inside an archive) and the line.

* ``sst2``, GLUE layout: ``train.tsv`` and ``dev.tsv`` (header ``sentence<TAB>label``, fields
  never quoted); dev is the test split and GLUE's unlabelled ``test.tsv`` is ignored. When
  ``test.tsv`` has a label column, the folder is the re-split layout instead: train is
  ``train.tsv`` + ``dev.tsv`` (together the GLUE train set) and test is ``test.tsv`` (GLUE dev).
* ``agnews``: the official ``train.csv``/``test.csv`` (no header; class index 1-4, title,
  description; text = title + " " + description), or ``test.tsv`` with ``train.tsv`` (else
  ``dev.tsv``) as train: ``text<TAB>class name``, no header, CSV-style quoting. The feed's
  artefacts are cleaned (:func:`clean_agnews_text`).
* ``mr``: ``rt-polarity.pos``/``rt-polarity.neg`` (latin-1, one sentence a line; only ``\\n``
  ends a line, byte 0x85 is text), as files or in ``rt-polaritydata.tar.gz``. There is no
  official split: a stratified 10% drawn with seed ``MR_TEST_SEED`` is the test split, recorded
  in ``extra``.
* ``textfile``: the user's CSV, TSV or JSONL (:class:`TextFileOptions`, :func:`read_textfile`).
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import tarfile
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from reffakd.data.readers.common import PathLike
from reffakd.data.text import LabelledTexts, RawTextDataset, hold_out_texts
from reffakd.errors import DataError, UserError
from reffakd.files import read_regular

SST2_CLASSES = ["negative", "positive"]
AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
MR_CLASSES = ["negative", "positive"]
MR_TEST_FRACTION = 0.1
MR_TEST_SEED = 0
TEXTFILE_TEST_FRACTION = 0.2
TEXTFILE_TEST_SEED = 0
TEXTFILE_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl"}
AGNEWS_CLEANING = (
    "backslash-escaped $ unescaped, other backslash runs (line breaks of the feed) made spaces, "
    "HTML character references decoded, also those whose & became a space (' #39;', ' quot;'), "
    "whitespace collapsed"
)


# ---------------------------------------------------------------------------------------------
# Files in a folder or an archive


@dataclass(frozen=True)
class _File:
    where: str  # for messages: a path, or archive:member
    data: bytes


def _row_error(
    where: str, line: int, problem: str, fix: str = "fix or delete that row"
) -> DataError:
    return DataError(" ".join(f"{where}, line {line}: {problem}; {fix}.".split()))


def _short(value: object, limit: int = 40) -> str:
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


def _archive_files(path: Path, names: Sequence[str]) -> dict[str, _File]:
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                files = [i.filename for i in zf.infolist() if not i.is_dir()]
                picked = _pick_members(files, names)
                return {n: _File(f"{path}:{m}", zf.read(m)) for n, m in picked.items()}
        with tarfile.open(path) as tar:
            regular = {m.name: m for m in tar.getmembers() if m.isfile()}
            picked = _pick_members(list(regular), names)
            return {
                n: _File(f"{path}:{m}", tar.extractfile(regular[m]).read())  # type: ignore[union-attr]
                for n, m in picked.items()
            }
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
        problem = " ".join(str(err).split())
        raise DataError(
            f"cannot read archive {path} ({problem}); delete it and fetch it again."
        ) from err


def _collect_files(
    path: PathLike, names: Sequence[str], subfolders: Sequence[str] = ()
) -> dict[str, _File]:
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
            return {n: _File(str(folder / n), (folder / n).read_bytes()) for n in present}
    return {}


def _require(files: dict[str, _File], name: str, path: PathLike, expects: str) -> _File:
    if name not in files:
        raise DataError(f"{path}: no {name} found; expected {expects}.")
    return files[name]


# ---------------------------------------------------------------------------------------------
# Decoding and delimited rows


def _decode_utf8(file: _File) -> str:
    """UTF-8 text (a leading BOM dropped); invalid bytes raise DataError naming the line."""
    try:
        return file.data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = file.data[: err.start].count(b"\n") + 1
        raise _row_error(
            file.where,
            line,
            f"invalid UTF-8 (byte {file.data[err.start]:#04x})",
            "save the file as UTF-8",
        ) from err


def _rows(file: _File, delimiter: str, quoted: bool) -> Iterator[tuple[int, list[str]]]:
    """``(line where the row starts, fields)`` of a CSV/TSV file, blank lines skipped.

    ``quoted``: fields may be quoted as in CSV (delimiters, newlines and doubled quotes inside
    quotes); otherwise every quote character is text.
    """
    reader = csv.reader(
        io.StringIO(_decode_utf8(file), newline=""),
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
        raise _row_error(file.where, line, f"malformed row ({err})", "check its quotes") from err


def _check_width(file: _File, line: int, row: list[str], width: int) -> None:
    if len(row) != width:
        raise _row_error(
            file.where,
            line,
            f"expected {width} columns, found {len(row)}",
            "fix the row (quote fields that contain the delimiter)",
        )


def _text_field(file: _File, line: int, value: str) -> str:
    text = value.strip()
    if not text:
        raise _row_error(file.where, line, "empty text")
    return text


# ---------------------------------------------------------------------------------------------
# SST-2

_SST2_EXPECTS = "train.tsv and dev.tsv with header 'sentence<TAB>label' (GLUE SST-2)"


def _sst2_header(file: _File) -> list[str]:
    first = file.data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return [cell.strip() for cell in first.rstrip("\r").split("\t")]


def _read_sst2_tsv(file: _File) -> LabelledTexts:
    rows = _rows(file, "\t", quoted=False)
    header = [cell.strip() for cell in next(rows, (1, []))[1]]
    if "sentence" not in header or "label" not in header:
        raise _row_error(
            file.where, 1, f"header {header} lacks 'sentence' and 'label'", "use GLUE's SST-2 files"
        )
    text_at, label_at = header.index("sentence"), header.index("label")
    texts, labels = [], []
    for line, row in rows:
        _check_width(file, line, row, len(header))
        if row[label_at].strip() not in ("0", "1"):
            raise _row_error(file.where, line, f"label {_short(row[label_at])} is not 0 or 1")
        texts.append(_text_field(file, line, row[text_at]))
        labels.append(int(row[label_at]))
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def _concat(parts: Sequence[LabelledTexts]) -> LabelledTexts:
    texts = [t for part in parts for t in part.texts]
    return LabelledTexts(texts, torch.cat([part.labels for part in parts]))


def read_sst2(path: PathLike) -> RawTextDataset:
    """SST-2 from a folder (or its ``SST-2/`` subfolder) or from ``SST-2.zip``; see the module."""
    files = _collect_files(path, ("train.tsv", "dev.tsv", "test.tsv"), ("SST-2",))
    train = _read_sst2_tsv(_require(files, "train.tsv", path, _SST2_EXPECTS))
    test_file = files.get("test.tsv")
    if test_file is not None and "label" in _sst2_header(test_file):
        parts = [train] + ([_read_sst2_tsv(files["dev.tsv"])] if "dev.tsv" in files else [])
        layout = "train.tsv + dev.tsv as train, labelled test.tsv (GLUE dev) as test"
        train, test = _concat(parts), _read_sst2_tsv(test_file)
    else:
        test = _read_sst2_tsv(_require(files, "dev.tsv", path, _SST2_EXPECTS))
        layout = "GLUE: train.tsv as train, dev.tsv as test (unlabelled test.tsv ignored)"
    return RawTextDataset("sst2", train, test, list(SST2_CLASSES), str(path), {"layout": layout})


# ---------------------------------------------------------------------------------------------
# AG News

_AGNEWS_EXPECTS = (
    "train.csv and test.csv (official AG News CSVs) or test.tsv with train.tsv or dev.tsv "
    "(text<TAB>class name)"
)
_BACKSLASHES = re.compile(r"\\+")
# a reference whose "&" the feed replaced by a space (" #39;") or dropped ("(#36;5")
_BARE_REFERENCE = re.compile(r"(?: |(?<![&\w]))(#\d+|amp|quot|lt|gt|nbsp|apos);")


def clean_agnews_text(text: str) -> str:
    r"""Undo the AG News feed's artefacts (the official files and their derivatives have them).

    ``\$`` is an escaped dollar; any other run of backslashes stands for a line break of the
    source feed (``"hold\nationwide"`` is *hold* + *nationwide*, so backslash-n must not be
    read as a newline escape) and becomes a space; HTML character references are decoded,
    also where the feed replaced their ``&`` by a space (``"It #39;s"`` -> ``"It's"``,
    ``"AT amp;T"`` -> ``"AT&T"``) or dropped it; runs of whitespace become one space.
    """
    text = _BACKSLASHES.sub(" ", text.replace("\\$", "$"))
    text = html.unescape(_BARE_REFERENCE.sub(r"&\1;", text))
    return " ".join(text.split())


def _agnews_text(file: _File, line: int, raw: str) -> str:
    return _text_field(file, line, clean_agnews_text(raw))


def _read_agnews_csv(file: _File) -> LabelledTexts:
    texts, labels = [], []
    for line, row in _rows(file, ",", quoted=True):
        _check_width(file, line, row, 3)
        index = row[0].strip()
        if index not in ("1", "2", "3", "4"):
            raise _row_error(file.where, line, f"class index {_short(row[0])} is not 1-4")
        texts.append(_agnews_text(file, line, f"{row[1]} {row[2]}"))
        labels.append(int(index) - 1)
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def _read_agnews_tsv(file: _File) -> LabelledTexts:
    texts, labels = [], []
    for line, row in _rows(file, "\t", quoted=True):
        _check_width(file, line, row, 2)
        name = row[1].strip()
        if name not in AGNEWS_CLASSES:
            raise _row_error(
                file.where, line, f"class {_short(row[1])} is not one of {AGNEWS_CLASSES}"
            )
        texts.append(_agnews_text(file, line, row[0]))
        labels.append(AGNEWS_CLASSES.index(name))
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def read_agnews(path: PathLike) -> RawTextDataset:
    """AG News from a folder (or ``ag_news_csv/``) or an archive; the official CSVs win."""
    names = ("train.csv", "test.csv", "train.tsv", "dev.tsv", "test.tsv")
    files = _collect_files(path, names, ("ag_news_csv",))
    extra = {"text_cleaning": AGNEWS_CLEANING}
    if "train.csv" in files or "test.csv" in files:
        train = _read_agnews_csv(_require(files, "train.csv", path, _AGNEWS_EXPECTS))
        test = _read_agnews_csv(_require(files, "test.csv", path, _AGNEWS_EXPECTS))
        extra["layout"] = "official train.csv / test.csv"
    else:
        train_name = "train.tsv" if "train.tsv" in files else "dev.tsv"
        train = _read_agnews_tsv(_require(files, train_name, path, _AGNEWS_EXPECTS))
        test = _read_agnews_tsv(_require(files, "test.tsv", path, _AGNEWS_EXPECTS))
        extra["layout"] = f"{train_name} as train, test.tsv as test"
    return RawTextDataset("agnews", train, test, list(AGNEWS_CLASSES), str(path), extra)


# ---------------------------------------------------------------------------------------------
# MR (sentence polarity v1.0)

_MR_EXPECTS = "rt-polarity.pos and rt-polarity.neg, or rt-polaritydata.tar.gz"


def _latin1_lines(file: _File) -> list[str]:
    """One sentence a line; only b"\\n" ends a line (0x85 is NEL under str.splitlines)."""
    lines = file.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    texts = []
    for number, raw in enumerate(lines, start=1):
        texts.append(_text_field(file, number, raw.decode("latin-1")))
    return texts


def read_mr(
    path: PathLike, test_fraction: float = MR_TEST_FRACTION, seed: int = MR_TEST_SEED
) -> RawTextDataset:
    """MR from a folder (or ``rt-polaritydata/``) or the official tarball; test is held out."""
    files = _collect_files(path, ("rt-polarity.neg", "rt-polarity.pos"), ("rt-polaritydata",))
    negative = _latin1_lines(_require(files, "rt-polarity.neg", path, _MR_EXPECTS))
    positive = _latin1_lines(_require(files, "rt-polarity.pos", path, _MR_EXPECTS))
    labels = torch.tensor([0] * len(negative) + [1] * len(positive), dtype=torch.int64)
    whole = LabelledTexts(negative + positive, labels)
    train, test = hold_out_texts(whole, test_fraction, seed, len(MR_CLASSES))
    extra = _held_out_record(test_fraction, seed)
    return RawTextDataset("mr", train, test, list(MR_CLASSES), str(path), extra)


def _held_out_record(fraction: float, seed: int) -> dict:
    return {
        "test_split": f"held out {fraction:.0%} of every class, seed {seed}",
        "test_fraction": fraction,
        "test_seed": seed,
    }


# ---------------------------------------------------------------------------------------------
# The user's own files


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


def _delimited_records(file: _File, delimiter: str, options: TextFileOptions) -> list[_Record]:
    rows = _rows(file, delimiter, quoted=True)
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
        _check_width(file, line, row, width)
        records.append(_Record(line, _text_field(file, line, row[text_at]), row[label_at].strip()))
    return records


def _json_value(file: _File, line: int, record: dict, key: str) -> object:
    if key not in record or record[key] is None:
        raise _row_error(file.where, line, f"no {key!r} field")
    return record[key]


def _json_label(file: _File, line: int, value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _row_error(file.where, line, f"label {_short(value)} is not a string or an integer")
    return str(value).strip()


def _jsonl_records(file: _File, options: TextFileOptions) -> list[_Record]:
    keys = [options.text_column or "text", options.label_column or "label"]
    if any(isinstance(k, int) for k in keys):
        raise UserError(f"{file.where}: JSONL rows are objects; name the text and label keys.")
    records = []
    for line, raw in enumerate(_decode_utf8(file).split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as err:
            raise _row_error(file.where, line, f"invalid JSON ({err.msg})") from err
        if not isinstance(record, dict):
            raise _row_error(file.where, line, "not a JSON object")
        text = _json_value(file, line, record, str(keys[0]))
        if not isinstance(text, str):
            raise _row_error(file.where, line, f"text {_short(text)} is not a string")
        label = _json_label(file, line, _json_value(file, line, record, str(keys[1])))
        records.append(_Record(line, _text_field(file, line, text), label))
    return records


def _read_records(path: Path, options: TextFileOptions) -> tuple[_File, list[_Record]]:
    fmt = textfile_format(path, options)
    file = _File(str(path), read_regular(path, "text file"))
    if fmt == "jsonl":
        records = _jsonl_records(file, options)
    else:
        records = _delimited_records(file, "," if fmt == "csv" else "\t", options)
    for record in records:
        if not record.label:
            raise _row_error(file.where, record.line, "missing label")
    return file, records


_INTEGER = re.compile(r"[+-]?\d+")


def _integer_labels(file: _File, records: Sequence[_Record]) -> bool:
    """True when every label is an integer; a column that mixes integers and names is refused
    (``0, 1, neg, pos`` would otherwise be four classes)."""
    integer = [r for r in records if _INTEGER.fullmatch(r.label)]
    if integer and len(integer) < len(records):
        name = next(r for r in records if not _INTEGER.fullmatch(r.label))
        raise _row_error(
            file.where,
            name.line,
            f"label {_short(name.label)} is a name, but line {integer[0].line} has the integer "
            f"label {integer[0].label}",
            "use integers 0..C-1 or names for every row",
        )
    return bool(records) and len(integer) == len(records)


def _label_key(label: str, integers: bool) -> str:
    return str(int(label)) if integers and _INTEGER.fullmatch(label) else label


def _class_names(file: _File, records: Sequence[_Record], integers: bool) -> list[str]:
    """Integer labels 0..C-1 name classes "0".."C-1"; other labels are names, sorted."""
    if integers:
        for record in records:
            if int(record.label) < 0:
                problem = f"label {record.label} is negative"
                raise _row_error(file.where, record.line, problem, "number the classes 0..C-1")
    keys = {_label_key(r.label, integers) for r in records}
    if len(keys) < 2:
        raise DataError(
            f"{file.where}: found {len(keys)} class(es); a classifier needs at least 2."
        )
    if integers:
        _refuse_gaps(file, sorted(int(k) for k in keys))
        return [str(i) for i in range(len(keys))]
    return sorted(keys)


def _refuse_gaps(file: _File, values: list[int]) -> None:
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
    file: _File, records: Sequence[_Record], names: list[str], integers: bool
) -> LabelledTexts:
    ids = {name: i for i, name in enumerate(names)}
    labels = []
    for record in records:
        key = _label_key(record.label, integers)
        if key not in ids:
            raise _row_error(
                file.where,
                record.line,
                f"label {_short(record.label)} does not occur in the training data",
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
        extra = _held_out_record(options.test_fraction, options.split_seed)
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
