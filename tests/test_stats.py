"""Differences over seeds: Student's t against a numerically integrated density, Welch's
test and the paired interval against hand-computed values, and the bench's tables."""

from __future__ import annotations

import importlib.util
import math
import statistics
from pathlib import Path

import pytest
import yaml
from test_bench import tiny_suite

from reffakd.errors import UserError
from reffakd.experiments.bench import comparisons, load_suite, run_suite
from reffakd.experiments.report import write_report
from reffakd.experiments.stats import difference, t_cdf, t_quantile, welch


def t_density(x: float, df: float) -> float:
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    return math.exp(log_c - (df + 1) / 2 * math.log1p(x * x / df))


def naive_t_cdf(t: float, df: float, steps: int = 20000) -> float:
    """0.5 + ∫_0^t density (Simpson's rule)."""
    h = t / steps
    total = t_density(0, df) + t_density(t, df)
    total += sum((4 if k % 2 else 2) * t_density(k * h, df) for k in range(1, steps))
    return 0.5 + total * h / 3


@pytest.mark.parametrize(("t", "df"), [(0.5, 1), (2.0, 2), (1.7, 4.41), (2.5, 10), (-1.3, 7)])
def test_t_cdf_matches_the_integrated_density(t, df):
    assert t_cdf(t, df) == pytest.approx(naive_t_cdf(t, df), abs=1e-8)


def test_t_quantiles_are_the_table_values():
    assert t_quantile(0.975, 1) == pytest.approx(12.7062, abs=1e-3)
    assert t_quantile(0.975, 2) == pytest.approx(4.3027, abs=1e-3)
    assert t_quantile(0.975, 4) == pytest.approx(2.7764, abs=1e-3)
    assert t_quantile(0.975, 30) == pytest.approx(2.0423, abs=1e-3)


def test_welch_by_hand():
    a, b = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]
    va, vb = (5 / 3) / 4, (20 / 3) / 4  # sample variances over n
    t, df, p = welch(a, b)
    assert t == pytest.approx(-2.5 / math.sqrt(va + vb))
    assert df == pytest.approx((va + vb) ** 2 / (va**2 / 3 + vb**2 / 3))
    assert p == pytest.approx(2 * (1 - naive_t_cdf(abs(t), df)), abs=1e-7)
    assert all(math.isnan(v) for v in welch([1.0], b))


def test_paired_interval_by_hand():
    method = {0: 90.0, 1: 91.0, 2: 92.5}
    reference = {0: 89.0, 1: 89.5, 2: 91.0}
    d = [1.0, 1.5, 1.5]
    diff = difference(method, reference)
    half = 4.302653 * statistics.stdev(d) / math.sqrt(3)
    assert diff.paired and diff.n == 3
    assert diff.mean == pytest.approx(statistics.fmean(d))
    assert diff.low == pytest.approx(diff.mean - half, abs=1e-4)
    assert diff.high == pytest.approx(diff.mean + half, abs=1e-4)
    assert diff.verdict == "better"
    assert difference(reference, method).verdict == "worse"


def test_equal_differences_on_every_seed_give_no_interval():
    same = difference({0: 90.0, 1: 91.0}, {0: 89.0, 1: 90.0})
    assert same.mean == pytest.approx(1.0) and math.isnan(same.low) and same.verdict == "n/a"


def test_significance_script_tables_best_and_last(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "significance.py"
    spec = importlib.util.spec_from_file_location("significance", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    significance_markdown = module.significance_markdown
    rows = [
        {"dataset": "d", "method": m, "seeds": [0, 1, 2], "test_best": b, "test_last": b[::-1]}
        for m, b in (("ce", [1.0, 2.0, 3.0]), ("kd", [2.0, 3.1, 4.2]))
    ]
    text = significance_markdown({"rows": rows}, "tiny")
    assert "## Test top-1, best-on-val epoch" in text and "## Test top-1, last epoch" in text
    assert "| d | kd | +1.10 [" in text and ": better |" in text


def test_one_seed_has_no_interval_and_unpaired_seeds_use_welch():
    single = difference({0: 90.0}, {0: 89.0})
    assert math.isnan(single.low) and single.verdict == "n/a"
    unpaired = difference({0: 90.0, 1: 88.0}, {2: 89.0, 3: 89.5})
    assert not unpaired.paired and unpaired.low < 0 < unpaired.high
    assert unpaired.verdict == "tie"


def test_comparisons_pair_every_method_with_ce_and_ls():
    rows = [
        {"dataset": "d", "method": m, "seeds": [0, 1], "test_best": v}
        for m, v in (("ce", [1.0, 2.0]), ("ls", [1.5, 2.0]), ("kd", [2.0, 4.0]))
    ]
    found = {(c["method"], c["reference"]): c for c in comparisons(rows)}
    assert set(found) == {("ls", "ce"), ("kd", "ce"), ("ce", "ls"), ("kd", "ls")}
    assert found[("kd", "ce")]["mean"] == pytest.approx(1.5)


def test_budget_runs_intervals_and_convergence_reach_the_tables(tiny_data, tmp_path):
    path = tiny_suite(tmp_path, ["ce", "ls"], [0, 1])
    suite = yaml.safe_load(path.read_text())
    suite["ce_budget"] = [2]
    path.write_text(yaml.safe_dump(suite))
    out = tmp_path / "bench"
    results = run_suite(load_suite(str(path)), out, data_dir=str(tiny_data))
    rows = {r["method"]: r for r in results["rows"]}
    budget = out / "runs" / "fashion-mnist" / "ce@2x" / "s0"
    assert yaml.safe_load((budget / "config.yaml").read_text())["optim"]["epochs"] == 2
    assert rows["ce@2x"]["total_flops"] == pytest.approx(2 * rows["ce"]["total_flops"], rel=1e-6)
    assert rows["ce@2x"]["total_seconds"] > 0
    markdown = (out / "results.md").read_text()
    assert "## Differences against ce and ls" in markdown
    assert "## Accuracy for the compute spent" in markdown
    assert "| fashion-mnist | ce@2x |" in markdown
    assert "## Has ce converged?" not in markdown  # one epoch: nothing to judge
    assert (out / "budget.png").stat().st_size > 1000
    report = write_report(out).read_text()
    assert "Differences against ce and ls" in report and "Accuracy for the compute" in report


def test_ce_budget_must_be_multiples_above_one(tmp_path):
    path = tiny_suite(tmp_path, ["ce"], [0])
    suite = yaml.safe_load(path.read_text())
    suite["ce_budget"] = [0.5]
    path.write_text(yaml.safe_dump(suite))
    with pytest.raises(UserError, match="multiples > 1"):
        load_suite(str(path))
