"""AG News: the official ``train.csv``/``test.csv``, or ``test.tsv`` with ``train.tsv`` (else
``dev.tsv``) as train.

The CSVs have no header; a row is class index 1-4, title, description, and the text is title +
" " + description. The TSVs are ``text<TAB>class name``, no header, CSV-style quoting. The
feed's artefacts are cleaned (:func:`clean_agnews_text`).
"""

from __future__ import annotations

import html
import re

import torch

from reffakd.data.readers.common import PathLike
from reffakd.data.readers.text_files import (
    SourceFile,
    check_width,
    collect_files,
    delimited_rows,
    require_file,
    row_error,
    short_repr,
    text_field,
)
from reffakd.data.text import LabelledTexts, RawTextDataset

AGNEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
AGNEWS_CLEANING = (
    "backslash-escaped $ unescaped, other backslash runs (line breaks of the feed) made spaces, "
    "HTML character references decoded, also those whose & became a space (' #39;', ' quot;'), "
    "whitespace collapsed"
)

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


def _agnews_text(file: SourceFile, line: int, raw: str) -> str:
    return text_field(file, line, clean_agnews_text(raw))


def _read_agnews_csv(file: SourceFile) -> LabelledTexts:
    texts, labels = [], []
    for line, row in delimited_rows(file, ",", quoted=True):
        check_width(file, line, row, 3)
        index = row[0].strip()
        if index not in ("1", "2", "3", "4"):
            raise row_error(file.where, line, f"class index {short_repr(row[0])} is not 1-4")
        texts.append(_agnews_text(file, line, f"{row[1]} {row[2]}"))
        labels.append(int(index) - 1)
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def _read_agnews_tsv(file: SourceFile) -> LabelledTexts:
    texts, labels = [], []
    for line, row in delimited_rows(file, "\t", quoted=True):
        check_width(file, line, row, 2)
        name = row[1].strip()
        if name not in AGNEWS_CLASSES:
            raise row_error(
                file.where, line, f"class {short_repr(row[1])} is not one of {AGNEWS_CLASSES}"
            )
        texts.append(_agnews_text(file, line, row[0]))
        labels.append(AGNEWS_CLASSES.index(name))
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def read_agnews(path: PathLike) -> RawTextDataset:
    """AG News from a folder (or ``ag_news_csv/``) or an archive; the official CSVs win."""
    names = ("train.csv", "test.csv", "train.tsv", "dev.tsv", "test.tsv")
    files = collect_files(path, names, ("ag_news_csv",))
    extra = {"text_cleaning": AGNEWS_CLEANING}
    if "train.csv" in files or "test.csv" in files:
        train = _read_agnews_csv(require_file(files, "train.csv", path, _AGNEWS_EXPECTS))
        test = _read_agnews_csv(require_file(files, "test.csv", path, _AGNEWS_EXPECTS))
        extra["layout"] = "official train.csv / test.csv"
    else:
        train_name = "train.tsv" if "train.tsv" in files else "dev.tsv"
        train = _read_agnews_tsv(require_file(files, train_name, path, _AGNEWS_EXPECTS))
        test = _read_agnews_tsv(require_file(files, "test.tsv", path, _AGNEWS_EXPECTS))
        extra["layout"] = f"{train_name} as train, test.tsv as test"
    return RawTextDataset("agnews", train, test, list(AGNEWS_CLASSES), str(path), extra)
