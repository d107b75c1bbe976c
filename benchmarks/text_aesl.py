"""How flat text AESL rows are, for a grid of diagonal boosts and temperatures.

For each text dataset the ``rnn_ae`` is trained with the soft-label recipe of ``reffakd
soft-labels`` (or reused from ``--out``), and the table is re-derived from its class similarity S
for every boost b and temperature τ: AESL = softmax((S + b I) / τ). Per table it reports

* ``H/Hmax``: the mean row entropy over log2 C (1 = uniform rows),
* ``diag``: the mean mass on the true class, P[y][y] (1/C = uniform),
* ``margin``: the mean of P[y][y] − max_{c≠y} P[y][c].

It also prints S's mean diagonal and off-diagonal, and (with ``--reference FILE``) the same
figures for an image soft-label file, e.g. Fashion-MNIST's, for comparison.

Usage: python benchmarks/text_aesl.py --out DIR [--datasets sst2 agnews mr] [--data-dir DIR]
       [--ae-epochs N] [-k K] [--reference soft_labels.pt] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.aesl.similarity import soft_labels_from_similarity
from reffakd.aesl.soft_labels import SoftLabels
from reffakd.config import DataConfig, OptimConfig, SoftLabelConfig

BOOSTS = (0.0, 0.008, 0.05)
TEMPERATURES = (1.0, 0.3, 0.1, 0.05, 0.02)


def flatness(table: torch.Tensor) -> dict[str, float]:
    """Entropy over its maximum, diagonal mass and diagonal margin of a (C, C) row table."""
    c = table.shape[0]
    p = table.double().clamp_min(1e-12)
    entropy = float((-(p * p.log2()).sum(1)).mean()) / math.log2(c)
    diag = table.diagonal().double()
    others = table.double().masked_fill(torch.eye(c, dtype=torch.bool), -1.0).amax(1)
    return {
        "H/Hmax": round(entropy, 4),
        "diag": round(float(diag.mean()), 4),
        "margin": round(float((diag - others).mean()), 4),
    }


def similarity_summary(similarity: torch.Tensor) -> dict[str, float]:
    c = similarity.shape[0]
    off = similarity[~torch.eye(c, dtype=torch.bool)]
    return {
        "S_diag_mean": round(float(similarity.diagonal().mean()), 4),
        "S_off_mean": round(float(off.mean()), 4),
        "S_min": round(float(similarity.min()), 4),
    }


def grid(similarity: torch.Tensor) -> list[dict[str, float]]:
    rows = []
    for boost in BOOSTS:
        for temperature in TEMPERATURES:
            table = soft_labels_from_similarity(similarity.double(), boost, temperature)
            rows.append({"boost": boost, "temperature": temperature, **flatness(table)})
    return rows


def soft_labels_for(dataset: str, args: argparse.Namespace) -> tuple[SoftLabels, float]:
    config = SoftLabelConfig(
        data=DataConfig(name=dataset, data_dir=args.data_dir),
        optim=OptimConfig(
            epochs=args.ae_epochs,
            lr=args.ae_lr,
            milestones=[max(args.ae_epochs - 1, 1)],
            batch_size=args.ae_batch_size,
        ),
        samples_per_class=args.k,
        progress=False,
    )
    started = time.perf_counter()
    labels = make_soft_labels(config, Path(args.out) / dataset, resume=True)
    return labels, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the soft-label runs")
    parser.add_argument("--datasets", nargs="+", default=["sst2", "agnews", "mr"])
    parser.add_argument("--data-dir")
    parser.add_argument("--ae-epochs", type=int, default=4)
    parser.add_argument("--ae-lr", type=float, default=0.1)
    parser.add_argument("--ae-batch-size", type=int, default=128)
    parser.add_argument("-k", type=int, default=40, help="samples per class")
    parser.add_argument("--reference", help="an image soft_labels.pt to compare with")
    parser.add_argument("--json", help="write every figure to this file")
    args = parser.parse_args()
    record: dict[str, object] = {}
    if args.reference:
        reference = SoftLabels.load(args.reference)
        record["reference"] = {
            "file": args.reference,
            "as_made": flatness(reference.table),
            **similarity_summary(reference.similarity),
        }
        print(f"reference {args.reference}: {record['reference']}")
    for dataset in args.datasets:
        labels, seconds = soft_labels_for(dataset, args)
        meta = labels.meta
        metric = meta.get("reconstruction_metric", "mse")
        entry = {
            "seconds": round(seconds, 1),
            "reconstruction_val": meta.get(f"reconstruction_{metric}_val"),
            **similarity_summary(labels.similarity),
            "grid": grid(labels.similarity),
        }
        record[dataset] = entry
        print(
            f"\n{dataset}: {seconds:.0f}s, val {metric} {entry['reconstruction_val']}, "
            f"S diag {entry['S_diag_mean']} off {entry['S_off_mean']} min {entry['S_min']}"
        )
        print(f"  S = {labels.similarity.tolist()}")
        print("  boost  tau    H/Hmax  diag    margin")
        for row in entry["grid"]:
            print(
                f"  {row['boost']:<6} {row['temperature']:<6} {row['H/Hmax']:<7} "
                f"{row['diag']:<7} {row['margin']}"
            )
    if args.json:
        Path(args.json).write_text(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
