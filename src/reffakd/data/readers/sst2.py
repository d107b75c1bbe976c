"""SST-2 in the GLUE layout: ``train.tsv`` and ``dev.tsv`` (header ``sentence<TAB>label``, fields
never quoted).

Dev is the test split and GLUE's unlabelled ``test.tsv`` is ignored. When ``test.tsv`` has a
label column, the folder is the re-split layout instead: train is ``train.tsv`` + ``dev.tsv``
(together the GLUE train set) and test is ``test.tsv`` (GLUE dev).
"""

from __future__ import annotations

from collections.abc import Sequence

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

SST2_CLASSES = ["negative", "positive"]

_SST2_EXPECTS = "train.tsv and dev.tsv with header 'sentence<TAB>label' (GLUE SST-2)"


def _sst2_header(file: SourceFile) -> list[str]:
    first = file.data.split(b"\n", 1)[0].decode("utf-8-sig", errors="replace")
    return [cell.strip() for cell in first.rstrip("\r").split("\t")]


def _read_sst2_tsv(file: SourceFile) -> LabelledTexts:
    rows = delimited_rows(file, "\t", quoted=False)
    header = [cell.strip() for cell in next(rows, (1, []))[1]]
    if "sentence" not in header or "label" not in header:
        raise row_error(
            file.where, 1, f"header {header} lacks 'sentence' and 'label'", "use GLUE's SST-2 files"
        )
    text_at, label_at = header.index("sentence"), header.index("label")
    texts, labels = [], []
    for line, row in rows:
        check_width(file, line, row, len(header))
        if row[label_at].strip() not in ("0", "1"):
            raise row_error(file.where, line, f"label {short_repr(row[label_at])} is not 0 or 1")
        texts.append(text_field(file, line, row[text_at]))
        labels.append(int(row[label_at]))
    return LabelledTexts(texts, torch.tensor(labels, dtype=torch.int64))


def _concat(parts: Sequence[LabelledTexts]) -> LabelledTexts:
    texts = [t for part in parts for t in part.texts]
    return LabelledTexts(texts, torch.cat([part.labels for part in parts]))


def read_sst2(path: PathLike) -> RawTextDataset:
    """SST-2 from a folder (or its ``SST-2/`` subfolder) or from ``SST-2.zip``; see the module."""
    files = collect_files(path, ("train.tsv", "dev.tsv", "test.tsv"), ("SST-2",))
    train = _read_sst2_tsv(require_file(files, "train.tsv", path, _SST2_EXPECTS))
    test_file = files.get("test.tsv")
    if test_file is not None and "label" in _sst2_header(test_file):
        parts = [train] + ([_read_sst2_tsv(files["dev.tsv"])] if "dev.tsv" in files else [])
        layout = "train.tsv + dev.tsv as train, labelled test.tsv (GLUE dev) as test"
        train, test = _concat(parts), _read_sst2_tsv(test_file)
    else:
        test = _read_sst2_tsv(require_file(files, "dev.tsv", path, _SST2_EXPECTS))
        layout = "GLUE: train.tsv as train, dev.tsv as test (unlabelled test.tsv ignored)"
    return RawTextDataset("sst2", train, test, list(SST2_CLASSES), str(path), {"layout": layout})
