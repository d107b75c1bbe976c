"""MR (sentence polarity v1.0): ``rt-polarity.pos`` and ``rt-polarity.neg``, as files or in
``rt-polaritydata.tar.gz``.

The files are latin-1, one sentence a line; only ``\\n`` ends a line (byte 0x85 is text).
There is no official split: a stratified 10% drawn with seed ``MR_TEST_SEED`` is the test
split, recorded in ``extra``.
"""

from __future__ import annotations

import torch

from reffakd.data.readers.common import PathLike
from reffakd.data.readers.text_files import (
    SourceFile,
    collect_files,
    held_out_record,
    require_file,
    text_field,
)
from reffakd.data.text import LabelledTexts, RawTextDataset, hold_out_texts

MR_CLASSES = ["negative", "positive"]
MR_TEST_FRACTION = 0.1
MR_TEST_SEED = 0

_MR_EXPECTS = "rt-polarity.pos and rt-polarity.neg, or rt-polaritydata.tar.gz"


def _latin1_lines(file: SourceFile) -> list[str]:
    """One sentence a line; only b"\\n" ends a line (0x85 is NEL under str.splitlines)."""
    lines = file.data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    texts = []
    for number, raw in enumerate(lines, start=1):
        texts.append(text_field(file, number, raw.decode("latin-1")))
    return texts


def read_mr(
    path: PathLike, test_fraction: float = MR_TEST_FRACTION, seed: int = MR_TEST_SEED
) -> RawTextDataset:
    """MR from a folder (or ``rt-polaritydata/``) or the official tarball; test is held out."""
    files = collect_files(path, ("rt-polarity.neg", "rt-polarity.pos"), ("rt-polaritydata",))
    negative = _latin1_lines(require_file(files, "rt-polarity.neg", path, _MR_EXPECTS))
    positive = _latin1_lines(require_file(files, "rt-polarity.pos", path, _MR_EXPECTS))
    labels = torch.tensor([0] * len(negative) + [1] * len(positive), dtype=torch.int64)
    whole = LabelledTexts(negative + positive, labels)
    train, test = hold_out_texts(whole, test_fraction, seed, len(MR_CLASSES))
    extra = held_out_record(test_fraction, seed)
    return RawTextDataset("mr", train, test, list(MR_CLASSES), str(path), extra)
