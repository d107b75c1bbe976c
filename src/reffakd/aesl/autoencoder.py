"""ReffAKD's autoencoder: trained on reconstruction with the standard engine, then its
embeddings of k samples per class give the AESL soft labels (docs/methods.md §2).

The autoencoder takes inputs whose side is a multiple of 8 (three stride-2 stages); other image
sizes are resized to the next multiple of 8 by the batch transform (bilinear, the same
``grid_sample`` pass that normalises every batch), so a 28×28 folder trains a 32×32 autoencoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reffakd import __version__
from reffakd.aesl.heatmap import save_heatmap
from reffakd.aesl.similarity import (
    class_similarity,
    entropy_bits,
    require_two_per_class,
    sample_per_class,
    soft_labels_from_similarity,
)
from reffakd.aesl.soft_labels import SoftLabels, weights_hash
from reffakd.config import SoftLabelConfig
from reffakd.data.augment import BatchTransform
from reffakd.data.prepare import PreparedData, augment_policy, prepare_data
from reffakd.models import build_model
from reffakd.models.cae import DOWNSAMPLE
from reffakd.runtime import resolve_device, seed_everything
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.cost import PhaseMeter, cost_summary, phase_cost
from reffakd.training.engine import Trainer
from reffakd.training.plots import plot_curves
from reffakd.training.rundir import (
    RunDir,
    check_or_write_config,
    check_recorded_config,
    open_run,
    record_command,
)
from reffakd.training.sinks import epoch_sinks, require_tensorboard
from reffakd.training.summary import write_summary
from reffakd.training.task import Task

KIND = "soft-label"


def ae_input_size(image_size: int) -> int:
    """The autoencoder's input side: ``image_size`` rounded up to a multiple of 8."""
    return -(-image_size // DOWNSAMPLE) * DOWNSAMPLE


class Reconstruction(Task):
    """Autoencoder training on reconstruction MSE of the [0, 1] image (docs/methods.md §2.2)."""

    selection_metric = "mse"
    selection_mode = "min"

    def __init__(self, autoencoder: nn.Module) -> None:
        super().__init__()
        self.autoencoder = autoencoder

    def forward_train(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        recon = self.autoencoder(inputs)
        return recon, {"mse": F.mse_loss(recon, inputs)}

    def eval_sums(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        recon = self.autoencoder(inputs)
        per_sample = F.mse_loss(recon, inputs, reduction="none").flatten(1).mean(dim=1)
        return {"mse": per_sample.sum().to(torch.float64)}

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.autoencoder.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        return self.autoencoder.load_state_dict(state_dict, strict=strict, assign=assign)


def make_soft_labels(
    config: SoftLabelConfig,
    out: Path,
    *,
    resume: bool = False,
    data: PreparedData | None = None,
    command: str | None = None,
) -> SoftLabels:
    """Train the CAE on reconstruction, embed k samples per class, and write AESL to ``out``.

    Everything is read and checked (data, class counts, the autoencoder) before the folder is
    locked and ``config.yaml`` written, so a refused run leaves ``out`` as it found it.
    ``command``: the command line, kept in ``command.txt`` and the summary.
    """
    out = Path(out)
    run_dir = RunDir(out)
    finished = (out / "soft_labels.pt").exists() and run_dir.is_complete()
    if resume and finished and check_recorded_config(run_dir, SoftLabelConfig, config, KIND):
        return SoftLabels.load(out / "soft_labels.pt")
    if config.tensorboard:
        require_tensorboard()
    data = data or prepare_data(config.data)
    splits = data.splits
    require_two_per_class(splits.train.labels, list(splits.class_names))
    device = resolve_device(config.device)
    ae, transform = _autoencoder(config, data)
    run_dir = open_run(out, resume and run_dir.holds_run(), KIND)
    try:
        return _make_soft_labels_locked(config, run_dir, data, device, ae, transform, command)
    finally:
        run_dir.unlock()


def _autoencoder(config: SoftLabelConfig, data: PreparedData) -> tuple[nn.Module, BatchTransform]:
    """The seeded CAE for the data's channels at :func:`ae_input_size`, and its transform."""
    seed_everything(config.seed)
    in_channels = data.splits.in_channels
    size = ae_input_size(data.image_size)
    ae = build_model("cae", data.splits.num_classes, in_channels, size)
    transform = BatchTransform(
        size,
        [0.0] * in_channels,
        [1.0] * in_channels,
        augment_policy(data.spec, config.augment),
    )
    return ae, transform


def _make_soft_labels_locked(
    config: SoftLabelConfig,
    run_dir: RunDir,
    data: PreparedData,
    device: torch.device,
    ae: nn.Module,
    transform: BatchTransform,
    command: str | None = None,
) -> SoftLabels:
    in_channels = data.splits.in_channels
    size = transform.out_size
    check_or_write_config(run_dir, SoftLabelConfig, config, KIND)
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
        sinks=epoch_sinks(run_dir.path, config.tensorboard),
    )
    if run_dir.last_checkpoint.exists():
        trainer.resume()
    record_command(run_dir.path, command)  # once the run is known to start or continue
    with PhaseMeter("autoencoder_training", device) as train_meter:
        result = trainer.fit()
    best = load_checkpoint(run_dir.best_checkpoint)
    ae.load_state_dict(best["model"])
    with PhaseMeter("soft_label_computation", device) as label_meter:
        labels = _aesl_from_autoencoder(config, ae, data, transform, device)
    shape = (in_channels, size, size)
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
    if command:
        summary["command"] = command
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
