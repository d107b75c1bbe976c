"""End-to-end jobs: data -> models -> teacher signal -> loss -> engine.

``make_soft_labels`` trains the autoencoder and computes AESL; ``train_student`` trains a student
with any method. Both write a self-contained run directory and can resume.
"""

from __future__ import annotations

import platform
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from reffakd import __version__
from reffakd.aesl import (
    SoftLabels,
    class_similarity,
    entropy_bits,
    sample_per_class,
    save_heatmap,
    soft_labels_from_similarity,
    weights_hash,
)
from reffakd.config import (
    AugmentConfig,
    DataConfig,
    SoftLabelConfig,
    TrainConfig,
    dump_yaml,
    from_dict,
    load_yaml,
    to_dict,
)
from reffakd.cost import PhaseMeter, aggregate_costs, phase_cost
from reffakd.data.augment import AugmentPolicy, BatchTransform, channel_stats
from reffakd.data.catalog import DatasetSpec, get_spec, load_dataset
from reffakd.data.dataset import DataSplits, hold_out_validation
from reffakd.engine import Trainer, load_checkpoint, write_summary
from reffakd.errors import UserError
from reffakd.methods import resolve_method
from reffakd.models import build_model
from reffakd.objectives import OBJECTIVES, build_objective
from reffakd.plots import plot_curves
from reffakd.rundir import RunDir
from reffakd.sources import SOURCES, SourceContext, build_source
from reffakd.tasks import Distiller, Reconstruction
from reffakd.utils import format_percent, resolve_device, seed_everything


@dataclass
class PreparedData:
    spec: DatasetSpec
    splits: DataSplits
    image_size: int
    mean: list[float]
    std: list[float]


def prepare_data(config: DataConfig) -> PreparedData:
    """Load a dataset, hold out validation, and compute normalisation from the train part."""
    spec = get_spec(config.name)
    raw = load_dataset(config.name, data_dir=config.data_dir, download=config.download)
    splits = hold_out_validation(raw, config.val_fraction, config.split_seed)
    mean, std = channel_stats(splits.train.images)
    image_size = config.image_size or spec.default_image_size or splits.train.shape[-1]
    return PreparedData(spec, splits, image_size, mean, std)


def augment_policy(spec: DatasetSpec, config: AugmentConfig) -> AugmentPolicy:
    """The dataset's default policy with any explicitly set field replaced."""
    if not config.enabled:
        return AugmentPolicy()
    defaults = spec.augment
    return AugmentPolicy(
        crop_padding=int(_pick(config.crop_padding, defaults.get("crop_padding", 0))),
        flip=bool(_pick(config.flip, defaults.get("flip", False))),
        rotation=float(_pick(config.rotation, defaults.get("rotation", 0.0))),
    )


def _pick(value: Any, default: Any) -> Any:
    return default if value is None else value


def _check_or_write_config(run_dir: RunDir, cls: type, config: Any, what: str) -> None:
    """Write ``config.yaml``, or check that a resumed run was made with this same config."""
    from reffakd.utils import atomic_write_text

    if run_dir.config.exists():
        try:
            existing = from_dict(cls, load_yaml(run_dir.config))
        except UserError:
            raise UserError(
                f"{run_dir.path} holds a run of another kind, not a {what} run; "
                "choose another --out."
            ) from None
        if _comparable(existing) != _comparable(config):
            raise UserError(
                f"{run_dir.path} holds a {what} run made with other options; resume it with "
                "its own options (--resume alone) or choose another --out."
            )
        return
    atomic_write_text(run_dir.config, dump_yaml(config))


def _comparable(config: Any) -> dict[str, Any]:
    """A config without the keys that may change between an interrupted run and its resume."""
    values = to_dict(config)
    for key in ("progress", "device"):
        values.pop(key, None)
    return values


def open_run(out: Path, resume: bool, what: str) -> RunDir:
    """Lock ``out``; refuse to start a new run over an existing one."""
    run_dir = RunDir(out)
    if not resume and run_dir.holds_run():
        raise UserError(
            f"{out} already holds a {what} run; continue it with --resume {out}, "
            "or choose a new --out."
        )
    run_dir.lock()
    return run_dir


# ---------------------------------------------------------------------------- soft labels
def make_soft_labels(
    config: SoftLabelConfig,
    out: Path,
    *,
    resume: bool = False,
    data: PreparedData | None = None,
) -> SoftLabels:
    """Train the CAE on reconstruction, embed k samples per class, and write AESL to ``out``."""
    out = Path(out)
    if resume and (out / "soft_labels.pt").exists() and (out / "summary.json").exists():
        return SoftLabels.load(out / "soft_labels.pt")
    data = data or prepare_data(config.data)
    device = resolve_device(config.device)
    run_dir = open_run(out, resume and RunDir(out).holds_run(), "soft-label")
    try:
        return _make_soft_labels_locked(config, run_dir, data, device)
    finally:
        run_dir.unlock()


def _make_soft_labels_locked(
    config: SoftLabelConfig, run_dir: RunDir, data: PreparedData, device: torch.device
) -> SoftLabels:
    seed_everything(config.seed)
    in_channels = data.splits.in_channels
    ae = build_model("cae", data.splits.num_classes, in_channels, data.image_size)
    transform = BatchTransform(
        data.image_size,
        [0.0] * in_channels,
        [1.0] * in_channels,
        augment_policy(data.spec, config.augment),
    )
    _check_or_write_config(run_dir, SoftLabelConfig, config, "soft-label")
    trainer = Trainer(
        Reconstruction(ae),
        data.splits,
        transform,
        config.optim,
        run_dir,
        seed=config.seed,
        device=device,
        progress=config.progress,
        desc="autoencoder",
    )
    if run_dir.last_checkpoint.exists():
        trainer.resume()
    with PhaseMeter("autoencoder_training", device) as train_meter:
        result = trainer.fit()
    best = load_checkpoint(run_dir.best_checkpoint)
    ae.load_state_dict(best["model"])
    with PhaseMeter("soft_label_computation", device) as label_meter:
        labels = _aesl_from_autoencoder(config, ae, data, transform, device)
    shape = (in_channels, data.image_size, data.image_size)
    phases = [
        phase_cost(
            "autoencoder_training",
            {"cae": ae},
            shape,
            config.optim.epochs * len(data.splits.train),
            {**train_meter.result, "seconds": result.summary["seconds_total"]},
            trained=["cae"],
        ),
        phase_cost(
            "soft_label_computation",
            {"cae_encoder": getattr(ae, "encoder", ae)},
            shape,
            labels.meta["samples_embedded"],
            label_meter.result,
            trained=[],
        ),
    ]
    labels.meta.update(
        ae_epochs=config.optim.epochs,
        ae_best_epoch=result.summary["best_epoch"],
        reconstruction_mse_val=result.summary["best"].get("val_mse"),
        reconstruction_mse_last=result.summary["last"].get("val_mse"),
        ae_train_seconds=result.summary["seconds_total"],
        soft_label_seconds=label_meter.result["seconds"],
        cost={"phases": phases},
    )
    labels.save(run_dir.path / "soft_labels.pt")
    save_heatmap(labels, run_dir.path / "soft_labels.png", f"AESL, {data.spec.name}")
    plot_curves(result.history, run_dir.path / "curves.png", ["train_mse", "val_mse", "test_mse"])
    summary = {**result.summary, "soft_labels": labels.meta, "cost": cost_summary(phases, [])}
    write_summary(run_dir, summary)
    return labels


@torch.no_grad()
def embed(
    ae: torch.nn.Module,
    images: torch.Tensor,
    transform: BatchTransform,
    device: torch.device,
    batch_size: int = 500,
) -> torch.Tensor:
    """Encoder embeddings in eval mode, without augmentation (docs/methods.md §2.3)."""
    ae.eval()
    parts = []
    for start in range(0, len(images), batch_size):
        x = transform(images[start : start + batch_size].to(device), train=False)
        parts.append(ae.encode(x).cpu())
    return torch.cat(parts)


def _aesl_from_autoencoder(
    config: SoftLabelConfig,
    ae: torch.nn.Module,
    data: PreparedData,
    transform: BatchTransform,
    device: torch.device,
) -> SoftLabels:
    train = data.splits.train
    chosen = sample_per_class(
        train.labels, config.samples_per_class, config.seed, train.num_classes
    )
    embeddings = embed(ae, train.images[chosen], transform, device)
    similarity = class_similarity(embeddings, train.labels[chosen], train.num_classes)
    boost = data.spec.aesl_boost if config.boost is None else config.boost
    table = soft_labels_from_similarity(similarity, boost, config.temperature)
    meta = {
        "dataset": data.spec.name,
        "class_names": list(train.class_names),
        "seed": config.seed,
        "samples_per_class": config.samples_per_class,
        "boost": boost,
        "temperature": config.temperature,
        "embedding_dim": int(embeddings.shape[1]),
        "samples_embedded": int(len(chosen)),
        "ae_weights_sha256": weights_hash(ae.state_dict()),
        "entropy_bits": round(entropy_bits(table), 6),
        "reffakd_version": __version__,
    }
    return SoftLabels(table, similarity.to(torch.float32), meta)


# ---------------------------------------------------------------------------- students
def validate_names(config: TrainConfig) -> None:
    """Fail fast, before any data is read or file written, on unknown names."""
    get_spec(config.data.name)
    method = resolve_method(config.method, config.source, config.loss)
    if method.source is not None:
        SOURCES.get(method.source)
    OBJECTIVES.get(method.loss)
    if ":" not in config.student:
        from reffakd.models import MODELS

        MODELS.get(config.student)


def load_run_config(run: Path) -> TrainConfig:
    path = Path(run) / "config.yaml"
    if not path.exists():
        raise UserError(f"{run} is not a run directory (no config.yaml); check the path.")
    return from_dict(TrainConfig, load_yaml(path))


def train_student(config: TrainConfig, out: Path, *, resume: bool = False) -> dict[str, Any]:
    """Train ``config.student`` with ``config.method``; returns the run summary."""
    out = Path(out)
    validate_names(config)
    data = prepare_data(config.data)
    device = resolve_device(config.device)
    run_dir = open_run(out, resume, "training")
    try:
        return _train_locked(config, run_dir, data, device, resume)
    finally:
        run_dir.unlock()


def _train_locked(
    config: TrainConfig, run_dir: RunDir, data: PreparedData, device: torch.device, resume: bool
) -> dict[str, Any]:
    from reffakd.utils import atomic_write_text

    if resume and run_dir.is_complete():
        import json

        return json.loads(run_dir.summary.read_text())
    _absolute_paths(config.source)
    method = resolve_method(config.method, config.source, config.loss)
    splits = data.splits
    policy = augment_policy(data.spec, config.augment)
    seed_everything(config.seed)
    student = build_model(config.student, splits.num_classes, splits.in_channels, data.image_size)
    phases: dict[str, float] = {}
    context = SourceContext(
        dataset=data.spec.name,
        num_classes=splits.num_classes,
        class_names=list(splits.class_names),
        in_channels=splits.in_channels,
        image_size=data.image_size,
        run_dir=run_dir.path,
        device=device,
        student=config.student,
        make_soft_labels=lambda: _inline_soft_labels(config, run_dir, data, phases),
        extra={
            "data_dir": config.data.data_dir,
            "seed": config.seed,
            "progress": config.progress,
            "augment_enabled": not policy.is_identity,
            "split": {
                "val_fraction": config.data.val_fraction,
                "split_seed": config.data.split_seed,
            },
        },
    )
    # Written before the source is built, so a run stopped while its autoencoder or light
    # teacher trains can be resumed; a fresh run whose source is refused leaves nothing behind.
    fresh = not run_dir.config.exists()
    atomic_write_text(run_dir.config, dump_yaml(config))
    source = None
    if method.source is not None:
        started = time.perf_counter()
        try:
            source = build_source(method.source, method.source_options, context)
        except UserError:
            if fresh and not run_dir.last_checkpoint.exists():
                run_dir.config.unlink(missing_ok=True)
            raise
        phases.setdefault("teacher_signal_seconds", round(time.perf_counter() - started, 3))
    _keep_soft_labels(context, run_dir)
    objective = build_objective(method.loss, method.loss_options)
    task = Distiller(student, source, objective)
    transform = BatchTransform(data.image_size, data.mean, data.std, policy)
    seed_everything(config.seed)
    trainer = Trainer(
        task,
        splits,
        transform,
        config.optim,
        run_dir,
        seed=config.seed,
        device=device,
        progress=config.progress,
        desc=f"{config.method} {config.student}",
    )
    if resume and run_dir.last_checkpoint.exists():
        trainer.resume()
    with PhaseMeter("student_training", device) as meter:
        result = trainer.fit()
    student_phase = _student_phase(config, data, student, source, meter.result, result.summary)
    cost = cost_summary(_signal_phases(context), [student_phase])
    plot_curves(
        result.history, run_dir.path / "curves.png", ["train_top1", "val_top1", "test_top1"]
    )
    summary = {
        **result.summary,
        "method": method.__dict__,
        "student": config.student,
        "student_parameters": sum(p.numel() for p in student.parameters()),
        "dataset": data.spec.name,
        "data_source": splits.source,
        "split_sizes": splits.sizes(),
        "seed": config.seed,
        "device": str(device),
        "phases": phases,
        "teacher": context.extra.get("teacher"),
        "light_teacher": context.extra.get("light_teacher"),
        "cost": cost,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "reffakd_version": __version__,
    }
    write_summary(run_dir, summary)
    return summary


def _student_phase(
    config: TrainConfig,
    data: PreparedData,
    student: torch.nn.Module,
    source: Any,
    meter: dict[str, Any],
    summary: dict[str, Any],
) -> dict[str, Any]:
    """Student training, with any frozen network the source runs on every batch."""
    networks = {"student": student}
    teacher = getattr(source, "teacher", None)
    if isinstance(teacher, torch.nn.Module):
        networks["teacher"] = teacher
    shape = (data.splits.in_channels, data.image_size, data.image_size)
    return phase_cost(
        "student_training",
        networks,
        shape,
        config.optim.epochs * len(data.splits.train),
        {**meter, "seconds": summary["seconds_total"]},
        trained=["student"],
    )


def _signal_phases(context: SourceContext) -> list[dict[str, Any]]:
    """Phases that made the teacher signal: the AE behind AESL, or a teacher's own training."""
    phases: list[dict[str, Any]] = []
    labels = context.extra.get("soft_labels")
    if labels is not None:
        phases += labels.meta.get("cost", {}).get("phases", [])
    for key in ("teacher", "light_teacher"):
        info = context.extra.get(key) or {}
        run = info.get("run_dir") or info.get("run")
        summary_path = Path(run) / "summary.json" if run else None
        if summary_path is None or not summary_path.exists():
            continue
        import json

        teacher_cost = json.loads(summary_path.read_text()).get("cost", {})
        for phase in teacher_cost.get("phases", []):
            renamed = "teacher_training" if phase["phase"] == "student_training" else phase["phase"]
            phases.append({**phase, "phase": f"{key}:{renamed}"})
    return phases


def cost_summary(
    signal_phases: list[dict[str, Any]], own_phases: list[dict[str, Any]]
) -> dict[str, Any]:
    """All phases, their totals, and the teacher-signal part (incl. teacher inference)."""
    inference = sum(
        net["flops"]
        for phase in own_phases
        for name, net in phase["networks"].items()
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


def _absolute_paths(source_options: dict[str, Any]) -> None:
    """Store file paths of the source absolute, so ``--resume`` works from any folder."""
    for key in ("run", "soft_labels"):
        if source_options.get(key):
            source_options[key] = str(Path(source_options[key]).resolve())


def _inline_soft_labels(
    config: TrainConfig, run_dir: RunDir, data: PreparedData, phases: dict[str, float]
) -> SoftLabels:
    """AESL made inside the student's run directory (``ae/``), reused on resume."""
    ae_config = replace(
        config.ae,
        data=config.data,
        seed=config.seed,
        device=config.device,
        progress=config.progress,
    )
    started = time.perf_counter()
    labels = make_soft_labels(ae_config, run_dir.path / "ae", resume=True, data=data)
    phases["soft_labels_seconds"] = round(time.perf_counter() - started, 3)
    return labels


def _keep_soft_labels(context: SourceContext, run_dir: RunDir) -> None:
    labels: SoftLabels | None = context.extra.get("soft_labels")
    if labels is None:
        return
    target = run_dir.path / "soft_labels.pt"
    labels.save(target)
    heatmap = run_dir.path / "ae" / "soft_labels.png"
    if heatmap.exists():
        shutil.copyfile(heatmap, run_dir.path / "soft_labels.png")
    else:
        save_heatmap(labels, run_dir.path / "soft_labels.png", f"AESL, {context.dataset}")


def summary_line(summary: dict[str, Any]) -> str:
    """Best-on-validation and last-epoch accuracy in one line."""

    def accuracy(record: dict[str, Any], split: str) -> str:
        return format_percent(record.get(f"{split}_top1"))

    best, last = summary["best"], summary["last"]
    return (
        f"best epoch {summary['best_epoch']}: val {accuracy(best, 'val')} "
        f"test {accuracy(best, 'test')} | last epoch {summary['epochs']}: "
        f"val {accuracy(last, 'val')} test {accuracy(last, 'test')}"
    )


__all__ = [
    "PreparedData",
    "make_soft_labels",
    "prepare_data",
    "train_student",
    "load_run_config",
    "summary_line",
]
