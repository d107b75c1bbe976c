"""ReffAKD's autoencoder: trained on reconstruction with the standard engine, then its
embeddings of k samples per class give the AESL soft labels (docs/methods.md §2).

The autoencoder depends on the modality (:data:`AUTOENCODERS`, keyed by the data's modality):

* images: the ``cae``, trained on the MSE of the [0, 1] image. It takes inputs whose side is a
  multiple of 8 (three stride-2 stages); other image sizes are resized to the next multiple of 8
  by the batch transform (bilinear, the same ``grid_sample`` pass that normalises every batch),
  so a 28×28 folder trains a 32×32 autoencoder;
* text: the ``rnn_ae`` (a GRU sequence autoencoder) on the run's vocabulary, trained on token
  cross-entropy with padding ignored; its embedding is the encoder's final state.

Both expose the same protocol: ``reconstruction_loss(x)`` (the training loss),
``per_sample_loss(x)`` (``(B,)``, for evaluation), ``encode(x)`` (``(B, d)`` embeddings) and
``encoder_network`` (the part that ``encode`` runs, for cost accounting).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
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
from reffakd.config import AugmentConfig, ComputeConfig, SoftLabelConfig
from reffakd.data.augment import BatchTransform
from reffakd.data.loader import Transform
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared import PreparedData
from reffakd.data.prepared_images import augment_policy
from reffakd.models import build_embedder, build_model, input_tokenizer
from reffakd.models.cae import DOWNSAMPLE
from reffakd.runtime import resolve_device, seed_everything
from reffakd.training.checkpoint import load_checkpoint
from reffakd.training.checks import uniform_soft_labels
from reffakd.training.cost import PhaseMeter, cost_summary, phase_cost
from reffakd.training.job import FitSpec, Fitted, check_recorded_config, run_job
from reffakd.training.rundir import RunDir, check_resumable, open_run, write_record
from reffakd.training.sinks import epoch_sinks, require_tensorboard
from reffakd.training.summary import RunSummary, write_summary
from reffakd.training.task import Task

KIND = "soft-label"


def ae_input_size(image_size: int) -> int:
    """The autoencoder's input side: ``image_size`` rounded up to a multiple of 8."""
    return -(-image_size // DOWNSAMPLE) * DOWNSAMPLE


@dataclass
class AutoencoderSetup:
    """An autoencoder for one dataset: the model (registry ``name``), the transform its batches
    go through, an example batch for cost counting, and the name of its reconstruction loss."""

    name: str
    model: nn.Module
    transform: Transform
    example: Tensor
    metric: str


def image_autoencoder(data: PreparedData, augment: AugmentConfig) -> AutoencoderSetup:
    """The ``cae`` on [0, 1] images (no normalisation) at the next multiple of 8."""
    assert data.image_shape is not None
    channels, image_size, _ = data.image_shape
    size = ae_input_size(image_size)
    model = build_model("cae", data.splits.num_classes, in_channels=channels, image_size=size)
    policy = augment_policy(data.spec, augment)
    transform = BatchTransform(size, [0.0] * channels, [1.0] * channels, policy)
    return AutoencoderSetup("cae", model, transform, torch.zeros(1, channels, size, size), "mse")


def text_autoencoder(data: PreparedData, augment: AugmentConfig) -> AutoencoderSetup:
    """The ``rnn_ae`` on the run's token ids (token dropout as for the students, off by default)."""
    model = build_model("rnn_ae", data.splits.num_classes, **data.model_input)
    transform = data.batch_transform(augment)
    return AutoencoderSetup("rnn_ae", model, transform, data.example_input(), "token_ce")


AUTOENCODERS: dict[str, Callable[[PreparedData, AugmentConfig], AutoencoderSetup]] = {
    "image": image_autoencoder,
    "text": text_autoencoder,
}


class Reconstruction(Task):
    """Autoencoder training on its reconstruction loss (docs/methods.md §2.2); the metric is
    logged and selected (lowest on validation) under ``metric``."""

    selection_mode = "min"

    def __init__(self, autoencoder: nn.Module, metric: str = "mse") -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.selection_metric = metric

    def forward_train(
        self, inputs: Tensor, labels: Tensor, indices: Tensor, epoch: int
    ) -> tuple[Tensor, dict[str, Tensor]]:
        loss = self.autoencoder.reconstruction_loss(inputs)
        return loss.detach(), {self.selection_metric: loss}

    def eval_sums(self, inputs: Tensor, labels: Tensor) -> dict[str, Tensor]:
        per_sample = self.autoencoder.per_sample_loss(inputs)
        return {self.selection_metric: per_sample.sum().to(torch.float64)}

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
    compute: ComputeConfig | None = None,
) -> SoftLabels:
    """Train the data's autoencoder on reconstruction, embed k samples per class, and write AESL
    to ``out``.

    Everything is read and checked (data, class counts, the autoencoder) before the folder is
    locked and ``config.yaml`` written, so a refused run leaves ``out`` as it found it.
    ``command``: the command line, kept in ``command.txt`` and the summary. ``compute``: how the
    autoencoder trains (a student run passes its own resolved precision); default fp32.
    """
    out = Path(out)
    run_dir = RunDir(out)
    finished = (out / "soft_labels.pt").exists() and run_dir.is_complete()
    if resume and check_recorded_config(run_dir, SoftLabelConfig, config, KIND) and finished:
        return SoftLabels.load(out / "soft_labels.pt")
    if config.embedder:
        return _embedder_soft_labels(config, out, resume=resume, data=data, command=command)
    if config.tensorboard:
        require_tensorboard()
    data = data or prepare_data(config.data)
    splits = data.splits
    require_two_per_class(splits.train.labels, list(splits.class_names))
    job = AutoencoderJob(
        config,
        data,
        resolve_device(config.device),
        _autoencoder(config, data),
        command,
        compute or ComputeConfig(precision="fp32"),
    )
    run_job(job, out, resume=resume and run_dir.holds_run())
    return job.labels


def _record(
    run_dir: RunDir,
    config: SoftLabelConfig,
    data: PreparedData,
    command: str | None,
    model: nn.Module | None = None,
) -> None:
    """Check what a resume continues from (the data, ``model``'s checkpoint), then record the
    run (config, data fingerprint, command line) before any work. The config a resume
    continues with was checked before the folder was locked."""
    fingerprint = data.fingerprint()
    check_resumable(run_dir, fingerprint, model)
    data.save_inputs(run_dir.path)
    write_record(run_dir, config, fingerprint, command, write_config=not run_dir.config.exists())


def _autoencoder(config: SoftLabelConfig, data: PreparedData) -> AutoencoderSetup:
    """The seeded autoencoder of the data's modality (:data:`AUTOENCODERS`), and its transform."""
    seed_everything(config.seed)
    return AUTOENCODERS[data.spec.modality](data, config.augment)


@dataclass
class AutoencoderJob:
    """The autoencoder trained on reconstruction, then AESL from its best checkpoint (the
    :class:`~reffakd.training.job.RunJob` parts)."""

    config: SoftLabelConfig
    data: PreparedData
    device: torch.device
    setup: AutoencoderSetup
    command: str | None
    compute: ComputeConfig
    kind: str = KIND
    labels: SoftLabels = field(init=False)

    def prepare(self, run_dir: RunDir) -> None:
        pass

    def record(self, run_dir: RunDir) -> None:
        _record(run_dir, self.config, self.data, self.command, self.setup.model)

    def fit_spec(self, run_dir: RunDir) -> FitSpec:
        config, setup = self.config, self.setup
        return FitSpec(
            Reconstruction(setup.model, setup.metric),
            self.data.splits,
            setup.transform,
            config.optim,
            seed=config.seed,
            device=self.device,
            desc="autoencoder",
            phase="autoencoder_training",
            curves=[f"{split}_{setup.metric}" for split in ("train", "val", "test")],
            compute=dataclasses.replace(self.compute, compile=False, sync_bn=False),
            progress=config.progress,
            sinks=epoch_sinks(run_dir.path, config.tensorboard),
        )

    def finish(self, run_dir: RunDir, fitted: Fitted) -> RunSummary:
        config, setup, data = self.config, self.setup, self.data
        ae = setup.model
        ae.load_state_dict(load_checkpoint(run_dir.best_checkpoint)["model"])
        with PhaseMeter("soft_label_computation", self.device) as label_meter:
            labels = _aesl_from_autoencoder(config, ae, data, setup.transform, self.device)
        phases = [
            phase_cost(
                "autoencoder_training",
                {setup.name: ae},
                setup.example,
                config.optim.epochs * len(data.splits.train),
                fitted.meter,
                trained=[setup.name],
            ),
            phase_cost(
                "soft_label_computation",
                {f"{setup.name}_encoder": ae.encoder_network},
                setup.example,
                labels.meta["samples_embedded"],
                label_meter.result,
                trained=[],
            ),
        ]
        labels.meta.update(
            **_training_meta(fitted.training, setup, config.optim.epochs),
            soft_label_seconds=label_meter.result["seconds"],
            cost={"phases": phases},
        )
        self.labels = labels
        _save_labels(run_dir, labels, data, "AESL")
        return _labels_summary(fitted.training, labels, data, phases, self.command)


def _training_meta(training: RunSummary, setup: AutoencoderSetup, epochs: int) -> dict[str, Any]:
    """What the soft labels record of the autoencoder they came from."""
    metric = setup.metric
    return {
        "ae_model": setup.name,
        "ae_epochs": epochs,
        "ae_best_epoch": training.best_epoch,
        "reconstruction_metric": metric,
        f"reconstruction_{metric}_val": training.best.get(f"val_{metric}"),
        f"reconstruction_{metric}_last": training.last.get(f"val_{metric}"),
        "ae_train_seconds": training.seconds_total,
    }


def _save_labels(run_dir: RunDir, labels: SoftLabels, data: PreparedData, title: str) -> None:
    """The run's soft-label file and heatmap."""
    labels.save(run_dir.path / "soft_labels.pt")
    save_heatmap(labels, run_dir.path / "soft_labels.png", f"{title}, {data.spec.name}")


def _labels_summary(
    training: RunSummary,
    labels: SoftLabels,
    data: PreparedData,
    phases: list[dict[str, Any]],
    command: str | None,
) -> RunSummary:
    """A soft-label run's summary (``training``: the autoencoder's, empty for an embedder)."""
    warning = uniform_soft_labels(labels.meta.get("entropy_bits"), labels.num_classes)
    return dataclasses.replace(
        training,
        soft_labels=labels.meta,
        inputs=data.describe(),
        cost=cost_summary(phases, []),
        command=command or None,
        warnings=[warning] if warning else [],  # a training run prints its own
    )


def _embedder_soft_labels(
    config: SoftLabelConfig,
    out: Path,
    *,
    resume: bool = False,
    data: PreparedData | None = None,
    command: str | None = None,
) -> SoftLabels:
    """AESL from a pretrained encoder (``config.embedder``, ``hf:DIR_OR_ID``) instead of a
    trained autoencoder: the same k samples per class, class similarity, boost and row softmax,
    on the encoder's mean-pooled embeddings of its own tokenizer's ids. Nothing is trained; the
    embedding pass is the one cost phase."""
    assert config.embedder is not None
    run_dir = RunDir(Path(out))
    tokenizer = input_tokenizer(config.embedder)
    if data is None:
        data = prepare_data(config.data, tokenizer)
    else:
        data = data.inputs_for(tokenizer, out, config.data)
    splits = data.splits
    require_two_per_class(splits.train.labels, list(splits.class_names))
    device = resolve_device(config.device)
    seed_everything(config.seed)
    encoder = build_embedder(config.embedder).requires_grad_(False).eval().to(device)
    transform = data.batch_transform(AugmentConfig(enabled=False))
    run_dir = open_run(out, resume and run_dir.holds_run(), KIND)
    try:
        _record(run_dir, config, data, command)
        with PhaseMeter("soft_label_computation", device) as meter:
            labels = _aesl_from_autoencoder(config, encoder, data, transform, device)
        phase = phase_cost(
            "soft_label_computation",
            {"embedder": encoder},
            data.example_input(),
            labels.meta["samples_embedded"],
            meter.result,
            trained=[],
        )
        labels.meta.update(
            embedder=config.embedder,
            soft_label_seconds=meter.result["seconds"],
            cost={"phases": [phase]},
        )
        _save_labels(run_dir, labels, data, "AESL (embedder)")
        write_summary(run_dir, _labels_summary(RunSummary(), labels, data, [phase], command))
        return labels
    finally:
        run_dir.unlock()


@torch.no_grad()
def embed(
    ae: torch.nn.Module,
    inputs: torch.Tensor,
    transform: Transform,
    device: torch.device,
    batch_size: int = 500,
) -> torch.Tensor:
    """Encoder embeddings in eval mode, without augmentation (docs/methods.md §2.3)."""
    ae.eval()
    parts = []
    for start in range(0, len(inputs), batch_size):
        x = transform(inputs[start : start + batch_size].to(device), train=False)
        parts.append(ae.encode(x).cpu())
    return torch.cat(parts)


def _aesl_from_autoencoder(
    config: SoftLabelConfig,
    ae: torch.nn.Module,
    data: PreparedData,
    transform: Transform,
    device: torch.device,
) -> SoftLabels:
    train = data.splits.train
    chosen = sample_per_class(
        train.labels, config.samples_per_class, config.seed, train.num_classes
    )
    embeddings = embed(ae, train.inputs[chosen], transform, device)
    similarity = class_similarity(embeddings, train.labels[chosen], train.num_classes)
    boost = data.spec.aesl_boost if config.boost is None else config.boost
    temperature = data.spec.aesl_temperature if config.temperature is None else config.temperature
    table = soft_labels_from_similarity(similarity, boost, temperature)
    meta = {
        "dataset": data.spec.name,
        "class_names": list(train.class_names),
        "seed": config.seed,
        "samples_per_class": config.samples_per_class,
        "boost": boost,
        "temperature": temperature,
        "embedding_dim": int(embeddings.shape[1]),
        "samples_embedded": int(len(chosen)),
        "ae_weights_sha256": weights_hash(ae.state_dict()),
        "entropy_bits": round(entropy_bits(table), 6),
        "reffakd_version": __version__,
    }
    return SoftLabels(table, similarity.to(torch.float32), meta)
