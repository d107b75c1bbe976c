"""Speed of the text pipeline, and the cost of text soft labels against the teacher they replace.

1. Epoch time / pure compute for ``textcnn`` on SST-2 (target <= 1.15). The epoch runs through
   the engine: the length-grouped batch order, index gathers, trimming to the longest text,
   forward, backward, SGD step, metrics. Pure compute is the same forward+backward+step calls
   of the same model on the very same batches, made before the clock starts. 1.0 means the text
   pipeline is free. Both are timed in wall seconds and in CPU seconds of this process
   (``time.process_time``); on a machine shared with other jobs the CPU-time ratio is the
   steadier one.
2. Soft labels against a teacher, measured one epoch each and scaled to a schedule: FLOPs and
   seconds of training the ``rnn_ae`` for ``--ae-epochs`` epochs and embedding k samples per
   class, against training the teacher for ``--teacher-epochs`` epochs and running it frozen on
   every batch of ``--student-epochs`` student epochs (what KD needs and ReffAKD does not).
   FLOPs follow :mod:`reffakd.training.cost` (a text counted at the mean training length).

Usage: python benchmarks/text_speed.py [--data-dir DIR] [--epochs 2] [--teacher transformer]
       [--skip-cost] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from reffakd.aesl.autoencoder import AUTOENCODERS, Reconstruction
from reffakd.config import AugmentConfig, DataConfig, OptimConfig
from reffakd.data.loader import BatchLoader
from reffakd.data.prepare import prepare_data
from reffakd.data.prepared import PreparedData
from reffakd.kd.loss_objectives import build_objective
from reffakd.kd.task import Distiller
from reffakd.models import build_model
from reffakd.training.cost import forward_flops, inference_flops, training_flops
from reffakd.training.engine import Trainer
from reffakd.training.rundir import RunDir

BATCH = 64
LR = 0.02


def _trainer(task: torch.nn.Module, data: PreparedData, tmp: str, batch: int = BATCH) -> Trainer:
    optim = OptimConfig(epochs=1, batch_size=batch, lr=LR, milestones=[1])
    transform = data.batch_transform(AugmentConfig())
    return Trainer(task, data.splits, transform, optim, RunDir(tmp), progress=False)


def _loader(trainer: Trainer, data: PreparedData, batch: int) -> BatchLoader:
    return BatchLoader(data.splits.train, batch, shuffle=True, generator=trainer.data_generator)


def engine_epoch(data: PreparedData, tmp: str, seed: int) -> tuple[float, list]:
    """Train seconds of one engine epoch of textcnn with CE, and the batches it trained on."""
    torch.manual_seed(seed)
    student = build_model("textcnn", data.splits.num_classes, **data.model_input)
    trainer = _trainer(Distiller(student, None, build_objective("ce", {})), data, tmp)
    state = trainer.data_generator.get_state()
    transform = data.batch_transform(AugmentConfig())
    batches = [(transform(b.inputs, train=True), b.labels) for b in _loader(trainer, data, BATCH)]
    trainer.data_generator.set_state(state)  # the engine sees the very same batches
    loader = _loader(trainer, data, BATCH)
    with Clock() as clock:
        trainer.train_one_epoch(1, loader)
    return clock, batches


class Clock:
    """Wall and process-CPU seconds of a ``with`` block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu


def pure_compute(data: PreparedData, batches: list, seed: int) -> Clock:
    """Forward+backward+step of textcnn on batches made before the clock starts."""
    torch.manual_seed(seed)
    model = build_model("textcnn", data.splits.num_classes, **data.model_input)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9, weight_decay=5e-4)
    model.train()
    with Clock() as clock:
        for inputs, labels in batches:
            loss = F.cross_entropy(model(inputs), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return clock


def warm_up(data: PreparedData, tmp: str) -> None:
    """One untimed pass, so that neither timed side pays for first-use kernel and allocator set-up.

    Batches are trimmed to their longest text, so the first epoch meets every length for the
    first time; without this the first engine epoch measured about 1.35x its later ones.
    """
    _, batches = engine_epoch(data, tmp, seed=0)
    pure_compute(data, batches, seed=0)


def pipeline_ratio(data: PreparedData, epochs: int, tmp: str) -> dict:
    warm_up(data, tmp)
    rows = []
    for epoch in range(epochs):
        engine, batches = engine_epoch(data, tmp, seed=epoch)
        pure = pure_compute(data, batches, seed=epoch)
        rows.append({"wall": engine.wall / pure.wall, "cpu": engine.cpu / pure.cpu})
        print(
            f"  textcnn epoch {engine.wall:7.1f}s wall / {engine.cpu:7.1f}s CPU, pure compute "
            f"{pure.wall:7.1f}s / {pure.cpu:7.1f}s: ratio {rows[-1]['wall']:.3f} wall, "
            f"{rows[-1]['cpu']:.3f} CPU; {len(data.splits.train) / engine.wall:,.0f} texts/s"
        )
    return {
        "textcnn_epoch_over_pure_wall": round(statistics.median(r["wall"] for r in rows), 3),
        "textcnn_epoch_over_pure_cpu": round(statistics.median(r["cpu"] for r in rows), 3),
        "ratios": rows,
    }


def timed_epoch(task: torch.nn.Module, data: PreparedData, tmp: str, batch: int) -> float:
    """CPU seconds of one training epoch (steadier than wall time on a shared machine)."""
    trainer = _trainer(task, data, tmp, batch)
    loader = _loader(trainer, data, batch)
    with Clock() as clock:
        trainer.train_one_epoch(1, loader)
    print(f"  {type(task).__name__} epoch: {clock.wall:.1f}s wall, {clock.cpu:.1f}s CPU")
    return clock.cpu


def soft_labels_against_teacher(data: PreparedData, args: argparse.Namespace, tmp: str) -> dict:
    """One measured epoch of the autoencoder and of the teacher, scaled to the schedule."""
    samples = len(data.splits.train)
    setup = AUTOENCODERS[data.spec.modality](data, AugmentConfig())
    ae_epoch = timed_epoch(Reconstruction(setup.model, setup.metric), data, tmp, 128)
    ae_forward = forward_flops(setup.model, setup.example.shape[1:], example_input=setup.example)
    embedded = args.k * data.splits.num_classes
    encoder = setup.model.encoder_network
    enc_forward = forward_flops(encoder, setup.example.shape[1:], example_input=setup.example)
    with torch.no_grad(), Clock() as embedding:
        setup.model.eval()
        setup.model.encode(data.splits.train.inputs[:embedded])
    embed_seconds = embedding.cpu
    aesl_flops = training_flops(ae_forward["flops"], samples * args.ae_epochs) + inference_flops(
        enc_forward["flops"], embedded
    )
    aesl_seconds = ae_epoch * args.ae_epochs + embed_seconds

    teacher = build_model(args.teacher, data.splits.num_classes, **data.model_input)
    task = Distiller(teacher, None, build_objective("ce", {}))
    teacher_epoch = timed_epoch(task, data, tmp, BATCH)
    example = data.example_input()
    t_forward = forward_flops(teacher, example.shape[1:], example_input=example)
    teacher.eval()
    with torch.no_grad(), Clock() as inference:
        for inputs in data.splits.train.inputs[:2048].split(BATCH):
            teacher(data.batch_transform(AugmentConfig())(inputs))
    infer_per_sample = inference.cpu / 2048
    teacher_flops = training_flops(
        t_forward["flops"], samples * args.teacher_epochs
    ) + inference_flops(t_forward["flops"], samples * args.student_epochs)
    teacher_seconds = (
        teacher_epoch * args.teacher_epochs + infer_per_sample * samples * args.student_epochs
    )
    result = {
        "tokens_per_sample": data.example_input().shape[1],
        "seconds_are": "CPU seconds of this process",
        "rnn_ae_epoch_s": round(ae_epoch, 1),
        "rnn_ae_forward_flops": ae_forward["flops"],
        "aesl_flops": aesl_flops,
        "aesl_seconds": round(aesl_seconds, 1),
        "teacher": args.teacher,
        "teacher_epoch_s": round(teacher_epoch, 1),
        "teacher_forward_flops": t_forward["flops"],
        "teacher_flops": teacher_flops,
        "teacher_seconds": round(teacher_seconds, 1),
        "flops_ratio": round(aesl_flops / teacher_flops, 4),
        "seconds_ratio": round(aesl_seconds / teacher_seconds, 4),
        "schedule": {
            "ae_epochs": args.ae_epochs,
            "teacher_epochs": args.teacher_epochs,
            "student_epochs": args.student_epochs,
            "k": args.k,
        },
    }
    print(json.dumps(result, indent=2))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir")
    parser.add_argument("--epochs", type=int, default=2, help="engine epochs to time (median)")
    parser.add_argument("--teacher", default="transformer")
    parser.add_argument("--ae-epochs", type=int, default=4)
    parser.add_argument("--teacher-epochs", type=int, default=3)
    parser.add_argument("--student-epochs", type=int, default=3)
    parser.add_argument("-k", type=int, default=40)
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--json", help="write the results to this file")
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="reffakd-text-speed-")
    started = time.perf_counter()
    data = prepare_data(DataConfig(name="sst2", data_dir=args.data_dir))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; SST-2 prepared in "
        f"{time.perf_counter() - started:.1f}s: {len(data.splits.train):,} training texts, "
        f"vocabulary {len(data.vocab):,}, {data.example_input().shape[1]} tokens per text"
    )
    result: dict = {}
    if not args.skip_ratio:
        result.update(pipeline_ratio(data, args.epochs, tmp))
    if not args.skip_cost:
        result["soft_labels_vs_teacher"] = soft_labels_against_teacher(data, args, tmp)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "ratios"}, indent=2))


if __name__ == "__main__":
    main()
