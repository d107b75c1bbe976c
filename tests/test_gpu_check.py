"""benchmarks/gpu_check.py on the CPU: its cheap parts give the answers a GPU must give."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def load_check():
    spec = importlib.util.spec_from_file_location("gpu_check", PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recurrent_layers_run_in_fp32_under_bf16_autocast():
    report = load_check().rnn_dtypes(torch.device("cpu"))
    assert report == {"bilstm": ["torch.float32"], "rnn_ae": ["torch.float32"], "ok": True}


def test_a_bf16_run_resumes_bit_identically(tmp_path):
    report = load_check().resume_identity(torch.device("cpu"), tmp_path, quick=True)
    assert report == {"max_abs_delta_w": 0.0, "bit_identical": True}


def test_the_sentinel_finds_no_sync_and_sees_one(tmp_path):
    check = load_check()
    assert check.sync_check(torch.device("cpu"), tmp_path)["ok"]
    with check.SyncSentinel() as sentinel:
        float(torch.ones(2).sum())
    assert [found.split(" ")[0] for found in sentinel.found] == ["_local_scalar_dense"]
