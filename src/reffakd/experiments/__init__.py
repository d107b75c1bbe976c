"""Experiments built on training runs: benchmark suites, tuning, the demo, model cost, plots and
listings for the CLI."""
