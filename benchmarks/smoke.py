"""Real-data smoke run: AE soft labels, then a ReffAKD student, on one real dataset.

* ``fashion-mnist`` (default): a LeNet-5 student;
* ``sst2``: the ``rnn_ae`` soft labels and a ``textcnn`` student.

The autoencoder is trained inside the student's run directory (``RUN/ae``). Exits non-zero
unless the student's test accuracy (best-on-validation epoch) reaches ``--min-test-acc``. Data
comes from --data-dir / REFFAKD_DATA like every other command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from reffakd.cli import main as reffakd_main

# Per dataset: the student, and the schedule flags besides the epochs.
SMOKES: dict[str, dict[str, object]] = {
    "fashion-mnist": {"student": "lenet5", "flags": ["--lr", "0.05"]},
    "sst2": {"student": "textcnn", "flags": ["--lr", "0.1", "--batch-size", "32"]},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--dataset", choices=sorted(SMOKES), default="fashion-mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--ae-epochs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--min-test-acc", type=float, default=80.0)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    out = Path(args.out)
    smoke = SMOKES[args.dataset]
    data = ["--data-dir", args.data_dir] if args.data_dir else []
    started = time.perf_counter()
    code = reffakd_main(
        [
            "train",
            "--dataset",
            args.dataset,
            *data,
            "--student",
            str(smoke["student"]),
            "--method",
            "reffakd",
            "--ae-epochs",
            str(args.ae_epochs),
            "--epochs",
            str(args.epochs),
            *smoke["flags"],  # type: ignore[misc]
            "--set",
            f"optim.milestones=[{max(args.epochs - 1, 1)}]",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    if code != 0:
        return code
    summary = json.loads((out / "summary.json").read_text())
    test_acc = summary["best"]["test_top1"]
    print(
        f"smoke {args.dataset}: test accuracy {test_acc:.2f}% (threshold {args.min_test_acc}%), "
        f"{time.perf_counter() - started:.0f}s"
    )
    return 0 if test_acc >= args.min_test_acc else 1


if __name__ == "__main__":
    sys.exit(main())
