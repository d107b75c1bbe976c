"""The argument parser: one function per sub-command, errors in one line."""

from __future__ import annotations

import argparse
from typing import Any, NoReturn


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dataset",
        help="dataset name (see `reffakd list datasets`); NAME:PATH also sets --data-dir, "
        "e.g. imagefolder:photos/",
    )
    parser.add_argument(
        "--data-dir",
        help="folder holding the dataset (else REFFAKD_DATA, cache, "
        "system locations, then download)",
    )
    parser.add_argument("--config", help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. optim.lr=0.05",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--milestones", type=int, nargs="*")
    parser.add_argument("--optimizer", help="sgd (default) or adamw")
    parser.add_argument("--schedule", help="multistep (default, per epoch) or cosine (per step)")
    parser.add_argument("--warmup-epochs", type=float, help="linear learning-rate warm-up")
    parser.add_argument("--clip-grad-norm", type=float, help="clip the global gradient norm")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--device", help="auto (default), cpu, cuda, cuda:N or mps")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _tensorboard(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        help="write per-epoch scalars to RUN/tensorboard (needs the tensorboard package)",
    )


class OneLineErrors(argparse.ArgumentParser):
    """argparse whose errors are one line, like every other bad input (the usage is one
    ``--help`` away); sub-commands inherit it."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"reffakd: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def _add_soft_labels(sub: Any) -> None:
    soft = sub.add_parser("soft-labels", help="train the autoencoder and write AESL soft labels")
    _common(soft)
    soft.add_argument("--out", required=True, help="run directory to create")
    soft.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out as it was made (other flags may only repeat its "
        "values; --device, --data-dir and --no-progress may change)",
    )
    soft.add_argument("-k", "--samples-per-class", type=int)
    soft.add_argument("--boost", type=float, help="diagonal boost (default: per dataset)")
    soft.add_argument(
        "--temperature", type=float, help="softmax temperature on S (default: per dataset)"
    )
    soft.add_argument(
        "--embedder",
        help="text: embed with a pretrained encoder hf:DIR_OR_ID (mean pooling) instead of "
        "training the autoencoder",
    )
    _tensorboard(soft)


def _add_train(sub: Any) -> None:
    train = sub.add_parser("train", help="train a student with a method")
    _common(train)
    train.add_argument(
        "--student",
        help="model name (see `reffakd list models`), timm:NAME, torchvision:NAME, or an import "
        "path package.module:factory to your own model",
    )
    train.add_argument("--method", help="preset (see `reffakd list methods`)")
    train.add_argument("--source", help="teacher-signal source, overriding the preset's")
    train.add_argument("--loss", help="loss, overriding the preset's")
    train.add_argument("--soft-labels", help="AESL file for the aesl source")
    train.add_argument(
        "--teacher",
        metavar="RUN_DIR",
        help="trained teacher run (or a .pt checkpoint in one) for the teacher and self sources",
    )
    train.add_argument("--alpha", type=float, help="KD weight")
    train.add_argument("--temperature", type=float, help="KD temperature")
    train.add_argument(
        "--kl-reduction",
        choices=["batchmean", "mean"],
        help="batchmean = true KL (default); mean = reference KLDivLoss() / C",
    )
    train.add_argument("--ae-epochs", type=int, help="autoencoder epochs when AESL is made inline")
    train.add_argument(
        "--out", help="run directory (default runs/<dataset>-<method>-<student>-s<seed>)"
    )
    train.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue the run in RUN_DIR as it was made; --epochs N extends (or, unfinished, "
        "shortens) it, --device, --data-dir and --no-progress may change, other flags are refused",
    )
    _tensorboard(train)
    train.add_argument(
        "--precision",
        help="auto (default: bf16 + channels-last where the device has bf16 matrix units, else "
        "fp32; the run records which), fp32, bf16 or fp16 autocast",
    )
    train.add_argument(
        "--channels-last", action="store_true", help="NHWC memory format (conv nets)"
    )
    train.add_argument(
        "--compile", action="store_true", help="torch.compile the student and a teacher"
    )
    train.add_argument(
        "--sync-bn", action="store_true", help="BatchNorm over the global batch (torchrun, CUDA)"
    )
    train.add_argument(
        "--deterministic", action="store_true", help="deterministic kernels only (slower on GPUs)"
    )


def _add_demo(sub: Any) -> None:
    demo = sub.add_parser(
        "demo",
        help="AESL + ReffAKD LeNet-5 beside a cross-entropy baseline on Fashion-MNIST, short "
        "schedule",
    )
    demo.add_argument("--data-dir")
    demo.add_argument("--out", help="run directory (default runs/demo-<time>)")
    demo.add_argument("--ae-epochs", type=int, default=2)
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--no-progress", action="store_true")


def _add_bench(sub: Any) -> None:
    bench = sub.add_parser("bench", help="run a benchmark suite and write results tables/plots")
    bench.add_argument("suite", help="packaged suite name (see `reffakd list suites`) or YAML file")
    bench.add_argument("--out", help="bench directory (default runs/bench/<suite>)")
    bench.add_argument("--data-dir")
    bench.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")


def _add_cost(sub: Any) -> None:
    cost = sub.add_parser("cost", help="parameters, FLOPs and MACs of a model at a dataset's input")
    cost.add_argument("model", help="model name (see `reffakd list models`)")
    cost.add_argument("--dataset", required=True, help="dataset giving the input shape")
    cost.add_argument("--image-size", type=int, help="input side (default: the dataset's)")
    cost.add_argument("--in-channels", type=int, help="input channels (default: the dataset's)")
    cost.add_argument("--num-classes", type=int, help="classes (default: the dataset's)")
    cost.add_argument(
        "--vocab-size", type=int, help="text: vocabulary size (default: measured on the data)"
    )
    cost.add_argument(
        "--tokens", type=int, help="text: tokens per text (default: the data's mean length)"
    )
    cost.add_argument("--data-dir", help="text: where to measure vocabulary and length")
    cost.add_argument("--batch-size", type=int, default=128, help="for steps per epoch")
    cost.add_argument("--epochs", type=int, help="also print the training FLOPs of N epochs")
    cost.add_argument(
        "--val-fraction", type=float, default=0.1, help="validation hold-out from train"
    )
    cost.add_argument("--json", action="store_true", help="print machine-readable JSON")


def _add_tune(sub: Any) -> None:
    tune = sub.add_parser("tune", help="grid/random search on the validation split")
    _common(tune)
    tune.add_argument("--student")
    tune.add_argument("--method")
    tune.add_argument("--soft-labels")
    tune.add_argument("--teacher")
    tune.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="values to try, e.g. loss.alpha=0.1,0.3 or aesl.boost=0,0.008",
    )
    tune.add_argument("--samples", type=int, help="random search: try this many combinations")
    tune.add_argument("--out", required=True, help="tune directory")


def _add_list(sub: Any) -> None:
    lister = sub.add_parser("list", help="list registered names")
    lister.add_argument(
        "what", choices=["datasets", "models", "methods", "sources", "losses", "suites"]
    )


def _add_report(sub: Any) -> None:
    report = sub.add_parser("report", help="write DIR/report.html for a run or bench directory")
    report.add_argument("directory", help="run, soft-label run or bench directory")


def _add_show(sub: Any) -> None:
    shower = sub.add_parser("show", help="a run or bench directory on one screen")
    shower.add_argument("directory", help="run, soft-label run or bench directory")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="reffakd", description="Teacher-free knowledge distillation (ReffAKD, LW-KD, KD)."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_soft_labels, _add_train, _add_demo, _add_bench, _add_cost, _add_tune):
        add(sub)
    for add in (_add_list, _add_report, _add_show):
        add(sub)
    return parser


def enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete, when it is installed (an optional extra)."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)
