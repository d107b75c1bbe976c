"""Cost accounting: parameters, FLOPs/MACs, wall time and peak memory per phase of a run.

A run has phases: training a teacher, an autoencoder or a light teacher; computing soft labels;
training the student. Each phase is measured with :class:`PhaseMeter` and described by
:func:`phase_cost`, a JSON-ready dict that can go into a run's ``summary.json``;
:func:`aggregate_costs` sums a list of them.

Conventions:

* FLOPs come from :class:`torch.utils.flop_counter.FlopCounterMode`, which counts only
  matrix-multiply and convolution-like ops (``mm``, ``addmm``, ``bmm``, convolutions, including
  transposed ones, attention). Batch norm, activations, pooling, element-wise ops and bias
  additions are *not* counted. A multiply-add counts as 2 FLOPs, so MACs = FLOPs / 2.
  LSTM/GRU layers, whose fused kernels the counter sees as 0, are counted by hand
  (:mod:`reffakd.models.flops`) and replace whatever the counter saw of them.
* A network is counted on a zero batch of a per-sample shape, or on an example batch (a text
  model on token ids of the mean training length, every position a token:
  :meth:`reffakd.data.prepared.PreparedData.example_input`).
* Training costs ``3 x forward`` per sample (forward + backward, the backward pass being about
  twice the forward); a frozen network that only runs forward costs ``1 x forward``.
* Memory is in MiB (2**20 bytes), reported as ``*_mb``.

>>> from reffakd.models import build_model
>>> forward_flops(build_model("lenet5", 10, 1, 32), (1, 32, 32))["macs"]
416520
"""

from __future__ import annotations

import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from reffakd.models.flops import extra_recurrent_flops

MIB = 2**20
TRAIN_MULTIPLIER = 3  # forward + backward ~ 3 x forward
INFERENCE_MULTIPLIER = 1

Shape = Sequence[int]
# What a network is counted on: a per-sample shape (a zero batch of the model's dtype), or an
# example batch (e.g. the token ids of :meth:`reffakd.data.prepared.PreparedData.example_input`).
ModelInput = Shape | torch.Tensor


# ---------------------------------------------------------------------------------------------
# Static counts


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared ones once); only ``requires_grad`` ones if trainable_only."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_trainable_parameters(model: nn.Module) -> int:
    """Number of parameters with ``requires_grad`` set."""
    return count_parameters(model, trainable_only=True)


def _model_device_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            return tensor.device, tensor.dtype
    return torch.device("cpu"), torch.get_default_dtype()


def forward_flops(
    model: nn.Module,
    input_shape: Shape,
    device: str | torch.device | None = None,
    batch_size: int = 1,
    example_input: torch.Tensor | None = None,
) -> dict[str, Any]:
    """FLOPs and MACs of one forward pass per sample, counted by torch's ``FlopCounterMode``.

    ``input_shape`` excludes the batch dimension, e.g. ``(3, 32, 32)``. The model runs in eval
    mode under ``no_grad`` on a zero batch of ``batch_size`` (on ``device``, default the model's
    own) and the total is divided by ``batch_size``; its train/eval mode is restored afterwards.

    Only matmul- and convolution-like ops are counted (transposed convolutions by their input
    positions, which is the exact multiply count); batch norm, activations, pooling, element-wise
    ops and bias additions are not. torch counts a multiply-add as 2 FLOPs, so
    ``macs = flops // 2``. Returns ``{"flops", "macs", "by_op", "input_shape"}`` where ``by_op``
    maps each counted aten op to its FLOPs per sample.

    ``example_input`` (e.g. int64 token ids ``(B, L)`` for a text model, see
    :func:`reffakd.models.flops.full_length_ids`) replaces the zero batch; then ``input_shape``
    and ``batch_size`` are read from it. Recurrent layers (LSTM/GRU) are counted by hand, the
    correction to torch's count being ``by_op["recurrent_correction"]`` (see
    :mod:`reffakd.models.flops`).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    own_device, dtype = _model_device_dtype(model)
    if example_input is None:
        inputs = torch.zeros(batch_size, *input_shape, device=device or own_device, dtype=dtype)
    else:
        inputs = example_input.to(device or own_device)
        batch_size, input_shape = len(inputs), tuple(inputs.shape[1:])
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(inputs)
        recurrent = extra_recurrent_flops(model, inputs)  # RNNs by hand; 0 without RNNs
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts().get("Global", {})  # absent when nothing was counted
    by_op = {str(op): n // batch_size for op, n in counts.items()}
    if recurrent:
        by_op["recurrent_correction"] = recurrent // batch_size
    flops = (counter.get_total_flops() + recurrent) // batch_size
    return {"flops": flops, "macs": flops // 2, "by_op": by_op, "input_shape": list(input_shape)}


def training_flops(forward_flops_per_sample: float, samples_seen: int) -> float:
    """FLOPs of training on ``samples_seen`` samples: ``3 x forward x samples``.

    The usual approximation: the backward pass costs about twice the forward (gradients with
    respect to both activations and weights), so forward + backward ~ 3 x forward. The
    optimizer step and the uncounted ops (see :func:`forward_flops`) are left out.
    """
    return float(TRAIN_MULTIPLIER * forward_flops_per_sample * samples_seen)


def inference_flops(forward_flops_per_sample: float, samples_seen: int) -> float:
    """FLOPs of running a frozen network forward on ``samples_seen`` samples."""
    return float(INFERENCE_MULTIPLIER * forward_flops_per_sample * samples_seen)


# ---------------------------------------------------------------------------------------------
# Time and memory


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size, in bytes (None where unsupported).

    ``ru_maxrss`` is in KiB on Linux and in bytes on macOS. On Linux it is the peak since the
    last :func:`reset_peak_rss` (which :class:`PhaseMeter` calls when a phase starts);
    elsewhere it is the peak over the process's life.
    """
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def _proc_status_bytes(field: str) -> int | None:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    """The resident set size right now, in bytes (Linux only; None elsewhere)."""
    return _proc_status_bytes("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; False where that is unsupported.

    Linux (since 4.0) resets ``VmHWM``, which ``ru_maxrss`` also reads, when ``5`` is written
    to ``/proc/self/clear_refs``. This lets one process measure each phase's own peak.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return True


# Meters that are running; a nested meter resets the peak mark, so it first hands the peak so
# far to the meters around it.
_running_meters: list[PhaseMeter] = []


def _share_peak_with_running_meters() -> None:
    peak = peak_rss_bytes()
    if peak is None:
        return
    for meter in _running_meters:
        meter._rss_peak = max(meter._rss_peak or 0, peak)


def _mib(n_bytes: float | None) -> float | None:
    return None if n_bytes is None else round(n_bytes / MIB, 3)


def _cuda_device(device: str | torch.device | None) -> torch.device | None:
    if device is None:
        return None
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return device


class PhaseMeter:
    """Wall seconds and peak memory of one phase; a context manager or ``start()``/``stop()``.

    On CPU the memory is the peak RSS *during the phase* (``peak_rss_scope: "phase"``) where the
    kernel's peak mark can be reset (Linux); elsewhere it is the process's lifetime peak at the
    end of the phase (``"process"``), which earlier phases may have set. ``rss_increase_mb`` is
    how far that peak rose above the RSS the process held when the phase started. Meters may
    nest: an inner one does not hide its peak from the outer one. On a CUDA ``device`` the
    allocator's peak statistics are reset at the start and ``cuda_peak_mb`` is
    ``torch.cuda.max_memory_allocated`` at the end; it is None otherwise.

    >>> with PhaseMeter("student") as meter:
    ...     pass
    >>> sorted(meter.result)
    ['cuda_peak_mb', 'peak_rss_mb', 'peak_rss_scope', 'phase', 'rss_increase_mb', 'seconds']
    """

    def __init__(self, phase: str, device: str | torch.device | None = None) -> None:
        self.phase = phase
        self.cuda = _cuda_device(device)
        self._started: float | None = None
        self._rss_start: int | None = None
        self._rss_peak: int | None = None
        self._rss_scope = "process"
        self.result: dict[str, Any] = {}

    def start(self) -> PhaseMeter:
        if self.cuda is not None:
            torch.cuda.synchronize(self.cuda)
            torch.cuda.reset_peak_memory_stats(self.cuda)
        _share_peak_with_running_meters()
        self._rss_scope = "phase" if reset_peak_rss() else "process"
        self._rss_start = current_rss_bytes()
        self._rss_peak = None
        _running_meters.append(self)
        self._started = time.perf_counter()
        return self

    def stop(self) -> dict[str, Any]:
        if self._started is None:
            raise RuntimeError("PhaseMeter.stop() called before start()")
        if self.cuda is not None:
            torch.cuda.synchronize(self.cuda)
        seconds = time.perf_counter() - self._started
        _share_peak_with_running_meters()
        if self in _running_meters:
            _running_meters.remove(self)
        peak = self._rss_peak
        start = self._rss_start if self._rss_start is not None else peak
        increase = None if peak is None or start is None else max(0, peak - start)
        cuda_peak = None
        if self.cuda is not None:
            cuda_peak = torch.cuda.max_memory_allocated(self.cuda)
        self.result = {
            "phase": self.phase,
            "seconds": round(seconds, 4),
            "peak_rss_mb": _mib(peak),
            "peak_rss_scope": self._rss_scope if peak is not None else None,
            "rss_increase_mb": _mib(increase),
            "cuda_peak_mb": _mib(cuda_peak),
        }
        return self.result

    def __enter__(self) -> PhaseMeter:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# Phases


def _per_network(value: Any, names: Iterable[str], what: str) -> dict[str, Any]:
    """``value`` for every network, or look each network up when ``value`` is a mapping."""
    names = list(names)
    if not isinstance(value, Mapping):
        return dict.fromkeys(names, value)
    missing = [n for n in names if n not in value]
    if missing:
        raise ValueError(f"{what} is missing networks {missing}")
    return {n: value[n] for n in names}


def _is_trained(model: nn.Module) -> bool:
    return any(p.requires_grad for p in model.parameters())


def input_flops(model: nn.Module, model_input: ModelInput) -> dict[str, Any]:
    """:func:`forward_flops` of ``model`` on a shape or an example batch."""
    if isinstance(model_input, torch.Tensor):
        return forward_flops(model, model_input.shape[1:], example_input=model_input)
    return forward_flops(model, model_input)


def network_cost(
    model: nn.Module,
    model_input: ModelInput,
    samples_seen: int,
    trained: bool,
    forward: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Parameters, per-sample forward FLOPs/MACs and the phase FLOPs of one network;
    ``forward``: its :func:`input_flops`, when counted before (on the eager network)."""
    forward = forward or input_flops(model, model_input)
    cost = training_flops if trained else inference_flops
    return {
        "trained": trained,
        "params": count_parameters(model),
        "trainable_params": count_trainable_parameters(model),
        "input_shape": forward["input_shape"],
        "forward_flops": forward["flops"],
        "forward_macs": forward["macs"],
        "samples_seen": int(samples_seen),
        "flops": cost(forward["flops"], samples_seen),
    }


def phase_cost(
    name: str,
    models: Mapping[str, nn.Module],
    input_shape: ModelInput | Mapping[str, ModelInput],
    samples_seen: int | Mapping[str, int],
    meter_result: Mapping[str, Any] | None = None,
    trained: Collection[str] | None = None,
    forwards: Mapping[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything a phase cost, as a JSON-ready dict for ``summary.json``.

    ``models`` names the networks that ran in the phase, e.g. ``{"student": s, "teacher": t}``
    (for soft-label computation pass only what runs, e.g. the autoencoder's ``encoder``).
    ``input_shape`` (a per-sample shape or an example batch, see :data:`ModelInput`) and
    ``samples_seen`` (samples each network processed, summed over epochs) are shared or given
    per network. ``trained`` names the networks being trained (3 x forward
    per sample); the rest only run forward (1 x). By default a network is trained when any of
    its parameters requires grad. ``meter_result`` is :attr:`PhaseMeter.result`. ``forwards``:
    the networks' :func:`input_flops` counted before the phase (before ``torch.compile``, whose
    networks the FLOP counter cannot always run).

    Returns ``{"phase", "seconds", "peak_rss_mb", "peak_rss_scope", "rss_increase_mb",
    "cuda_peak_mb",
    "networks": {name: network_cost(...)}, "params_trained", "training_flops",
    "inference_flops", "total_flops"}``.
    """
    shapes = _per_network(input_shape, models, "input_shape")
    samples = _per_network(samples_seen, models, "samples_seen")
    if trained is None:
        trained = [n for n, m in models.items() if _is_trained(m)]
    unknown = set(trained) - set(models)
    if unknown:
        raise ValueError(f"trained names unknown networks {sorted(unknown)}")
    forwards = forwards or {}
    networks = {
        n: network_cost(m, shapes[n], samples[n], n in trained, forwards.get(n))
        for n, m in models.items()
    }
    meter = dict(meter_result or {})
    train_total = sum(c["flops"] for c in networks.values() if c["trained"])
    infer_total = sum(c["flops"] for c in networks.values() if not c["trained"])
    return {
        "phase": name,
        "seconds": meter.get("seconds"),
        "peak_rss_mb": meter.get("peak_rss_mb"),
        "peak_rss_scope": meter.get("peak_rss_scope"),
        "rss_increase_mb": meter.get("rss_increase_mb"),
        "cuda_peak_mb": meter.get("cuda_peak_mb"),
        "networks": networks,
        "params_trained": sum(c["params"] for c in networks.values() if c["trained"]),
        "training_flops": float(train_total),
        "inference_flops": float(infer_total),
        "total_flops": float(train_total + infer_total),
    }


def _sum_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def aggregate_costs(phases: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Totals over phase costs: summed seconds and FLOPs, the highest memory peaks.

    ``params_trained`` sums over phases, i.e. counts every network trained anywhere in the run.
    """
    return {
        "phases": [p["phase"] for p in phases],
        "seconds": _sum_known(p.get("seconds") for p in phases),
        "peak_rss_mb": _max_known(p.get("peak_rss_mb") for p in phases),
        "cuda_peak_mb": _max_known(p.get("cuda_peak_mb") for p in phases),
        "params_trained": sum(int(p.get("params_trained", 0)) for p in phases),
        "training_flops": float(sum(p.get("training_flops", 0.0) for p in phases)),
        "inference_flops": float(sum(p.get("inference_flops", 0.0) for p in phases)),
        "total_flops": float(sum(p.get("total_flops", 0.0) for p in phases)),
    }


def cost_summary(
    signal_phases: list[dict[str, Any]], own_phases: list[dict[str, Any]]
) -> dict[str, Any]:
    """All phases, their totals, and the teacher-signal part (incl. teacher inference).

    ``signal_phases`` made the teacher signal (a teacher's or an autoencoder's training, soft
    labels); the frozen networks inside ``own_phases`` (a teacher run during distillation) count
    towards the signal too.
    """
    inference = sum(
        net["flops"]
        for phase in own_phases
        for net in phase["networks"].values()
        if not net["trained"]
    )
    signal = aggregate_costs(signal_phases) if signal_phases else {}
    return {
        "phases": [*signal_phases, *own_phases],
        "total": aggregate_costs([*signal_phases, *own_phases]),
        "teacher_signal": {
            "flops": float(signal.get("total_flops", 0.0) + inference),
            "seconds": float(signal.get("seconds") or 0.0),
            "peak_mb": float(signal.get("cuda_peak_mb") or signal.get("peak_rss_mb") or 0.0),
            "params": int(signal.get("params_trained", 0)),
            "inference_flops_during_distillation": float(inference),
        },
    }
