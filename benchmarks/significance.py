"""Differences against ce and ls, with 95% intervals and Welch's p, from a committed
``results.json`` (a bench's per-seed accuracies), for benches whose run directories are gone.

    python benchmarks/significance.py docs/results/fmnist/results.json

writes ``significance.md`` beside the file: the same table a bench now puts in its
``results.md`` (``reffakd.experiments.bench.comparisons``), on the test accuracy of the
best-on-validation epoch and, separately, of the last epoch.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from reffakd.experiments.bench import comparisons
from reffakd.experiments.tables import comparison_markdown


def significance_markdown(results: dict, name: str) -> str:
    lines = [f"# Differences against ce and ls: {name}", ""]
    lines.append(
        "Written by `python benchmarks/significance.py` from this folder's `results.json`."
    )
    for key, title in (("test_best", "best-on-val epoch"), ("test_last", "last epoch")):
        rows = [{**row, "test_best": row[key]} for row in results["rows"]]
        table = comparison_markdown(comparisons(rows), title)
        lines += ["", f"## Test top-1, {title}", *table[2:]]  # its own heading replaces ours
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, nargs="+", help="results.json files")
    for path in parser.parse_args().results:
        results = json.loads(path.read_text())
        out = path.with_name("significance.md")
        out.write_text(significance_markdown(results, results.get("suite", path.parent.name)))
        print(out)


if __name__ == "__main__":
    main()
