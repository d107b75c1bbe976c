"""Mixed precision, memory format and compilation: how fast a step runs, not what it computes.

* ``auto`` (the default): resolved once per run, before anything is written, to ``bf16`` with
  channels-last where the device does bf16 matrix work in hardware (a CUDA GPU with bf16, a CPU
  with AMX or AVX512-BF16 units), else to ``fp32``; the run records the concrete value.
* ``fp32``: no autocast at all (bit-identical to code without these options).
* ``bf16``: ``torch.autocast`` with bfloat16; same exponent range as fp32, so no loss scaling.
* ``fp16``: ``torch.autocast`` with float16 and a ``torch.amp.GradScaler``: the loss is scaled
  before ``backward``, gradients are unscaled before clipping and the step, and steps whose
  gradients overflowed are skipped while the scale adapts. The scaler's state is checkpointed.

Loss maths runs in fp32 whatever the precision (the task casts logits before any softmax).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

from reffakd.config import ComputeConfig
from reffakd.errors import UserError, first_line

DTYPES: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}


AUTO = "auto"
CPU_BF16_UNITS = ("amx_bf16", "avx512_bf16")


def cpu_bf16_units() -> list[str]:
    """The CPU's bf16 matrix units that torch reports (``amx_bf16``, ``avx512_bf16``), empty on a
    CPU without them. oneDNN's own ``_is_mkldnn_bf16_supported`` is not used: it is also true on
    AVX512 CPUs that emulate bf16 (slower than fp32)."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return [unit for unit in CPU_BF16_UNITS if found.get(unit)]
    checks = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    cpu = getattr(torch._C, "_cpu", None)
    return [unit for unit, check in checks.items() if bool(getattr(cpu, check, bool)())]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` does bf16 matrix work in hardware."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(cpu_bf16_units())
    return False


def resolve_compute(compute: ComputeConfig, device: torch.device) -> ComputeConfig:
    """``compute`` with ``precision: auto`` made concrete for ``device``: ``bf16`` and
    channels-last where :func:`native_bf16`, else ``fp32``; other precisions unchanged."""
    if compute.precision != AUTO:
        return compute
    if native_bf16(device):
        return dataclasses.replace(compute, precision="bf16", channels_last=True)
    return dataclasses.replace(compute, precision="fp32")


class Precision:
    """Autocast, the gradient scaler (fp16 only) and the input memory format of one run."""

    def __init__(self, compute: ComputeConfig, device: torch.device) -> None:
        compute = resolve_compute(compute, device)
        self.name = compute.precision
        self.dtype = DTYPES[compute.precision]
        self.device_type = device.type
        self.channels_last = compute.channels_last
        self.scaler = torch.amp.GradScaler(device.type) if compute.precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def inputs(self, images: Tensor) -> Tensor:
        """Images in the run's memory format (NHWC for 4-D inputs with ``channels_last``)."""
        if self.channels_last and images.ndim == 4:
            return images.contiguous(memory_format=torch.channels_last)
        return images

    def backward(self, loss: Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer: torch.optim.Optimizer) -> None:
        """True gradients in ``.grad`` (before clipping); only fp16 scales them."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


def prepare_networks(
    networks: Iterable[nn.Module], compute: ComputeConfig, device: torch.device
) -> None:
    """Channels-last weights and in-place ``torch.compile`` (state_dict keys unchanged) for the
    networks that run on every batch; ``cudnn.benchmark`` on CUDA (unless deterministic)."""
    set_deterministic(compute.deterministic)
    if device.type == "cuda" and not compute.deterministic:
        torch.backends.cudnn.benchmark = True
    compute = resolve_compute(compute, device)
    for network in networks:
        if compute.channels_last:
            network.to(memory_format=torch.channels_last)
        if compute.compile:
            network.compile()


def set_deterministic(enabled: bool) -> None:
    """Deterministic kernels for the rest of the process (``compute.deterministic``): cuDNN
    without autotuning, ``torch.use_deterministic_algorithms`` (ops that have no deterministic
    version warn) and the cuBLAS workspace setting that makes its matmuls repeatable. Call it
    before the first CUDA matmul; nothing happens when ``enabled`` is False."""
    if not enabled:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def check_compiler(device: torch.device) -> None:
    """Compile and run a tiny function, so that a missing compiler toolchain is a one-line error
    before the run starts, not a traceback at its first batch."""
    try:
        with _quiet_dynamo():
            twice = torch.compile(lambda x: x * 2.0 + 1.0)
            twice(torch.ones(4, device=device))
    except Exception as exc:  # any backend failure means the same thing to the user
        raise UserError(
            f"--compile needs a working torch.compile backend on {device} "
            f"({type(exc).__name__}: {first_line(exc)}); install a C++ compiler (CPU) or "
            "Triton (CUDA), or drop --compile."
        ) from None


@contextlib.contextmanager
def _quiet_dynamo() -> Iterator[None]:
    """Raise compile errors instead of logging them and falling back."""
    import torch._dynamo.config as dynamo_config

    saved = dynamo_config.suppress_errors
    dynamo_config.suppress_errors = False
    try:
        yield
    finally:
        dynamo_config.suppress_errors = saved
