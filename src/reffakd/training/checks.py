"""Results that finish without an error and still mean little: nearly uniform soft labels, and a
student no better than always predicting the most common class.

Each check returns a one-sentence warning, or None. Runs record theirs in ``summary.json``
(``warnings``), print them when they finish, and ``show`` and the report repeat them.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from typing import Any

import torch

# Mean row entropy at or above this share of log2(C) bits: the rows barely differ from uniform.
NEARLY_UNIFORM = 0.99
# A best validation top-1 within this many points of the most common class's share.
CONSTANT_GUESS_POINTS = 0.1


def uniform_soft_labels(entropy_bits: Any, num_classes: int) -> str | None:
    """A warning when soft labels of mean row entropy ``entropy_bits`` are nearly uniform."""
    if not isinstance(entropy_bits, int | float) or num_classes < 2:
        return None
    most = math.log2(num_classes)
    if entropy_bits < NEARLY_UNIFORM * most:
        return None
    return (
        f"the soft labels are nearly uniform (mean row entropy {entropy_bits:.3f} of at most "
        f"{most:.3f} bits): they carry little class similarity, so distilling from them acts "
        "much like label smoothing; a larger --boost or a lower --temperature sharpens them."
    )


def majority_share(labels: torch.Tensor, num_classes: int) -> tuple[int, float]:
    """The most common class of ``labels`` and its share in percent."""
    counts = torch.bincount(labels, minlength=num_classes)
    top = int(counts.argmax())
    return top, 100.0 * float(counts[top]) / max(len(labels), 1)


def constant_guess(best: dict[str, Any], splits: Any, class_names: Sequence[str]) -> str | None:
    """A warning when the best epoch's accuracy is no better than always predicting the most
    common class (on validation, or on train when nothing is held out)."""
    split = "val" if len(splits.val) else "train"
    accuracy = best.get(f"{split}_top1")
    labels = getattr(splits, split).labels
    if not isinstance(accuracy, int | float) or len(labels) == 0:
        return None
    top, share = majority_share(labels, len(class_names))
    if accuracy > share + CONSTANT_GUESS_POINTS:
        return None
    seen = f"{split} {accuracy:.2f}% (the class is {share:.2f}% of {split})"
    if len(splits.test) and isinstance(best.get("test_top1"), int | float):
        _, test_share = majority_share(splits.test.labels, len(class_names))
        seen += f", test {best['test_top1']:.2f}% ({test_share:.2f}% of test)"
    return (
        f"the student is no better than always predicting class {class_names[top]!r}: {seen}; "
        "it has probably collapsed to one class: try a lower --lr, more epochs, or check the "
        "labels."
    )


def print_warnings(warnings: Sequence[str]) -> None:
    for warning in warnings:
        print(f"reffakd: warning: {warning}", file=sys.stderr, flush=True)
