"""The text datasets of the catalog: ``sst2``, ``agnews``, ``mr`` and ``textfile``.

The ``DATASETS`` registry imports this module on its first lookup. Search order, downloads
(checksum-verified) and not-found messages are those of :mod:`reffakd.data.locate`; besides
the usual folder names each dataset is also looked for under ``text/<name>/`` of a data root.
:func:`load_text_dataset` is the entry point; ``textfile`` reads only from ``--data-dir``: one
CSV/TSV/JSONL file (a seeded, stratified 20% then becomes the test split) or a folder holding
``train.<ext>`` and ``test.<ext>``.

Checksums, as published by others (the original sites publish none):

* SST-2.zip md5 from torchtext (``torchtext/datasets/sst2.py``);
* AG News train.csv/test.csv md5 from torchtext (``torchtext/datasets/ag_news.py``), which
  downloads the same mirror of the Zhang et al. release;
* rt-polaritydata.tar.gz sha256 from Hugging Face datasets
  (``datasets/rotten_tomatoes/dataset_infos.json``, 487,770 bytes), recorded there for their
  copy of the Cornell tarball; it is assumed identical to the file on the Cornell site.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from pathlib import Path

from reffakd.data.locate import load_dataset
from reffakd.data.readers.agnews import AGNEWS_CLASSES, read_agnews
from reffakd.data.readers.archive import ARCHIVE_SUFFIXES, is_archive_file
from reffakd.data.readers.common import PathLike
from reffakd.data.readers.mr import MR_CLASSES, read_mr
from reffakd.data.readers.sst2 import SST2_CLASSES, read_sst2
from reffakd.data.readers.textfile import TextFileOptions, find_textfiles, read_textfile
from reffakd.data.spec import DATASETS, DatasetSpec, Found, get_spec
from reffakd.data.text import RawTextDataset
from reffakd.errors import DataError, UserError

Reader = Callable[[Path], RawTextDataset]
_PEEK_BYTES = 1 << 16
_AGNEWS_MIRROR = (
    "https://raw.githubusercontent.com/mhjabreel/CharCnn_Keras/master/data/ag_news_csv/"
)
TEXTFILE_EXPECTS = (
    "a .csv, .tsv or .jsonl file of texts and labels (20% then held out as test), or a folder "
    "with train.<ext> and test.<ext>"
)


def _first_row(path: Path, delimiter: str) -> list[str]:
    """The first CSV row of a file (read from its first 64 KiB), or [] if unreadable."""
    if not path.is_file():
        return []
    with path.open("rb") as f:
        head = f.read(_PEEK_BYTES).decode("utf-8-sig", errors="replace")
    try:
        return next(csv.reader(io.StringIO(head, newline=""), delimiter=delimiter), [])
    except csv.Error:
        return []


def _found(path: Path, read: Reader) -> Found:
    return Found(path, lambda cache_dir: read(path))


def _archive_probe(path: Path, dedicated: bool, stem: str, read: Reader) -> Found | None:
    """An archive given as the place itself: accepted if dedicated or named like the official."""
    named = path.name.lower().startswith(stem.lower())
    return _found(path, read) if is_archive_file(path) and (dedicated or named) else None


def _archive_in(folder: Path, stem: str) -> Path | None:
    """``folder/<stem><suffix>`` for the first archive suffix (readers.archive order) present."""
    for suffix in ARCHIVE_SUFFIXES:
        if (folder / (stem + suffix)).is_file():
            return folder / (stem + suffix)
    return None


# ---------------------------------------------------------------------------------------------
# Probes


def _is_sst2_folder(folder: Path, dedicated: bool) -> bool:
    """GLUE's file names, and its header; in a folder dedicated to SST-2 the names are enough,
    so that files without their header are read, and refused naming it, not "not found"."""
    header = [cell.strip() for cell in _first_row(folder / "train.tsv", "\t")]
    has_other = (folder / "dev.tsv").is_file() or (folder / "test.tsv").is_file()
    named = (folder / "train.tsv").is_file() and has_other
    return named and (dedicated or ("sentence" in header and "label" in header))


def _sst2_probe(path: Path, dedicated: bool) -> Found | None:
    if path.is_file():
        return _archive_probe(path, dedicated, "SST-2", read_sst2)
    for folder, own in ((path, dedicated), (path / "SST-2", True)):
        if _is_sst2_folder(folder, own):
            return _found(folder, read_sst2)
    archive = _archive_in(path, "SST-2")
    return _found(archive, read_sst2) if archive else None


_AGNEWS_INDEX = re.compile(r"\s*[1-4]\s*")


def _is_agnews_csv_folder(folder: Path) -> bool:
    row = _first_row(folder / "train.csv", ",")
    return (
        (folder / "test.csv").is_file() and len(row) == 3 and bool(_AGNEWS_INDEX.fullmatch(row[0]))
    )


def _is_agnews_tsv_folder(folder: Path) -> bool:
    row = _first_row(folder / "test.tsv", "\t")
    has_train = (folder / "train.tsv").is_file() or (folder / "dev.tsv").is_file()
    return has_train and len(row) == 2 and row[1].strip() in AGNEWS_CLASSES


def _agnews_probe(path: Path, dedicated: bool) -> Found | None:
    if path.is_file():
        return _archive_probe(path, dedicated, "ag_news_csv", read_agnews)
    for folder in (path, path / "ag_news_csv"):
        if _is_agnews_csv_folder(folder):
            return _found(folder, read_agnews)
    archive = _archive_in(path, "ag_news_csv")
    if archive:
        return _found(archive, read_agnews)
    return _found(path, read_agnews) if _is_agnews_tsv_folder(path) else None


def _mr_probe(path: Path, dedicated: bool) -> Found | None:
    if path.is_file():
        return _archive_probe(path, dedicated, "rt-polaritydata", read_mr)
    for folder in (path, path / "rt-polaritydata"):
        if (folder / "rt-polarity.pos").is_file() and (folder / "rt-polarity.neg").is_file():
            return _found(folder, read_mr)
    archive = _archive_in(path, "rt-polaritydata")
    return _found(archive, read_mr) if archive else None


def _textfile_probe(path: Path, dedicated: bool) -> Found | None:
    files = find_textfiles(path)
    if files is None:
        return None
    train, test = files
    return Found(path, lambda cache_dir: read_textfile(train, test))


# ---------------------------------------------------------------------------------------------
# Registered datasets

# AESL boosts (docs/methods.md §2.11): the smallest boost that makes every class's own entry
# the largest of its row with the default recipe on the offline data, plus 0.01, rounded up to
# a multiple of 0.005; the temperature stays 1. Other text data keeps the image default.
_TEXT_FIELDS = {
    "in_channels": None,
    "native_size": None,
    "default_image_size": None,
    "augment": {},
    "modality": "text",
}

# The student schedules `reffakd train` uses when not told, after the agnews and mr suites.
_SHORT_TEXT_RECIPE = {"epochs": 5, "batch_size": 32, "milestones": [4]}
_TEXT_RECIPE = {"epochs": 10, "batch_size": 32, "milestones": [6, 8]}

for _spec in (
    DatasetSpec(
        name="sst2",
        recipe=_SHORT_TEXT_RECIPE,
        num_classes=2,
        class_names=list(SST2_CLASSES),
        folder_names=["sst2", "SST-2", "sst-2", "text/sst2"],
        downloads=[
            (
                "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip",
                "SST-2.zip",
                "9f81648d4199384278b86e315dac217c",
            )
        ],
        expects="GLUE's SST-2 folder (train.tsv, dev.tsv) or SST-2.zip",
        # train holds phrases, test whole sentences (longer): 56 tokens keep every GLUE
        # sentence and phrase whole, where the 99th percentile of train (38) would cut 3% of test
        max_len=56,
        aesl_boost=0.01,
        probe=_sst2_probe,
        **_TEXT_FIELDS,
    ),
    DatasetSpec(
        name="agnews",
        recipe=_SHORT_TEXT_RECIPE,
        num_classes=4,
        class_names=list(AGNEWS_CLASSES),
        folder_names=["agnews", "ag_news", "ag-news", "AG_NEWS", "text/agnews"],
        downloads=[
            (_AGNEWS_MIRROR + "train.csv", "train.csv", "b1a00f826fdfbd249f79597b59e1dc12"),
            (_AGNEWS_MIRROR + "test.csv", "test.csv", "d52ea96a97a2d943681189a97654912d"),
        ],
        expects="the official train.csv and test.csv, ag_news_csv.tar.gz, or test.tsv with "
        "train.tsv or dev.tsv (text<TAB>class name)",
        probe=_agnews_probe,
        aesl_boost=0.055,
        **_TEXT_FIELDS,
    ),
    DatasetSpec(
        name="mr",
        recipe=_TEXT_RECIPE,
        num_classes=2,
        class_names=list(MR_CLASSES),
        folder_names=["mr", "MR", "rt-polaritydata", "text/mr"],
        downloads=[
            (
                "https://www.cs.cornell.edu/people/pabo/movie-review-data/rt-polaritydata.tar.gz",
                "rt-polaritydata.tar.gz",
                "a05befe52aafda71d458d188a1c54506a998b1308613ba76bbda2e5029409ce9",
            )
        ],
        expects="rt-polarity.pos and rt-polarity.neg, or rt-polaritydata.tar.gz",
        probe=_mr_probe,
        aesl_boost=0.015,
        **_TEXT_FIELDS,
    ),
    DatasetSpec(
        name="textfile",
        recipe=_TEXT_RECIPE,
        num_classes=None,
        expects=TEXTFILE_EXPECTS,
        probe=_textfile_probe,
        explicit_only=True,
        **_TEXT_FIELDS,
    ),
):
    DATASETS.add(_spec.name, _spec)


def text_dataset_names() -> list[str]:
    return [name for name in DATASETS.names() if DATASETS.get(name).modality == "text"]


# ---------------------------------------------------------------------------------------------
# Loading


def _load_textfile(data_dir: PathLike | None, options: TextFileOptions) -> RawTextDataset:
    if data_dir is None:
        raise UserError(
            f"dataset 'textfile' reads only from --data-dir PATH; PATH is {TEXTFILE_EXPECTS}."
        )
    path = Path(data_dir).expanduser()
    if path.is_file():
        return read_textfile(path, None, options)
    files = find_textfiles(path)
    if files is None:
        raise DataError(f"textfile: {path} is neither {TEXTFILE_EXPECTS}; point --data-dir at one.")
    return read_textfile(files[0], files[1], options)


def load_text_dataset(
    name: str,
    data_dir: PathLike | None = None,
    download: bool = True,
    options: TextFileOptions | None = None,
) -> RawTextDataset:
    """Find (or download) and read a text dataset's train and test splits.

    ``options`` applies to ``textfile`` only (columns, format, header, test split).
    """
    spec = get_spec(name)
    if spec.modality != "text":
        known = ", ".join(text_dataset_names())
        raise UserError(f"dataset {name!r} is not a text dataset; text datasets: {known}.")
    if name == "textfile":
        return _load_textfile(data_dir, options or TextFileOptions())
    raw = load_dataset(name, data_dir, download)
    assert isinstance(raw, RawTextDataset)
    return raw
