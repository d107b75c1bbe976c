# PYTHON_ARGCOMPLETE_OK
"""Command-line interface: ``reffakd {soft-labels,train,demo,bench,tune,cost,list,report,show}``.

Every bad input ends in a one-line ``reffakd: error: ...`` message and exit code 2. Shell
completion comes from argcomplete when it is installed (``pip install 'reffakd[completion]'``,
then ``eval "$(register-python-argcomplete reffakd)"``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from reffakd.aesl.autoencoder import make_soft_labels
from reffakd.config import (
    SoftLabelConfig,
    TrainConfig,
    apply_overrides,
    from_dict,
    load_yaml,
    merge,
    to_dict,
)
from reffakd.data.user import USER_DATA
from reffakd.distill.build import absolute_paths
from reffakd.distill.train import train_student
from reffakd.errors import NonFiniteLossError, StorageError, UserError, first_line
from reffakd.experiments.bench import load_suite, run_suite
from reffakd.experiments.cost import CostOptions, cost_input, format_model_cost, model_cost
from reffakd.experiments.demo import run_demo
from reffakd.experiments.listing import LISTINGS
from reffakd.experiments.report import write_report
from reffakd.experiments.show import show
from reffakd.experiments.tune import parse_grid, run_tune
from reffakd.files import os_error_message
from reffakd.models import is_user_module_name
from reffakd.training.distributed import world_from_env
from reffakd.training.rundir import RunDir, config_changes, describe_changes
from reffakd.training.runs import load_run_config, run_kind
from reffakd.training.summary import summary_line


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


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(
        prog="reffakd", description="Teacher-free knowledge distillation (ReffAKD, LW-KD, KD)."
    )
    sub = parser.add_subparsers(dest="command", required=True)

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

    demo = sub.add_parser("demo", help="AESL + ReffAKD LeNet-5 on Fashion-MNIST, short schedule")
    demo.add_argument("--data-dir")
    demo.add_argument("--out", help="run directory (default runs/demo-<time>)")
    demo.add_argument("--ae-epochs", type=int, default=2)
    demo.add_argument("--epochs", type=int, default=5)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default="auto")
    demo.add_argument("--no-progress", action="store_true")

    bench = sub.add_parser("bench", help="run a benchmark suite and write results tables/plots")
    bench.add_argument("suite", help="packaged suite name (see `reffakd list suites`) or YAML file")
    bench.add_argument("--out", help="bench directory (default runs/bench/<suite>)")
    bench.add_argument("--data-dir")
    bench.add_argument("--seeds", type=int, nargs="+", help="override the suite's seeds")

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

    lister = sub.add_parser("list", help="list registered names")
    lister.add_argument(
        "what", choices=["datasets", "models", "methods", "sources", "losses", "suites"]
    )

    report = sub.add_parser("report", help="write DIR/report.html for a run or bench directory")
    report.add_argument("directory", help="run, soft-label run or bench directory")

    shower = sub.add_parser("show", help="a run or bench directory on one screen")
    shower.add_argument("directory", help="run, soft-label run or bench directory")
    return parser


def _enable_completion(parser: argparse.ArgumentParser) -> None:
    """Shell completion through argcomplete, when it is installed (an optional extra)."""
    try:
        import argcomplete
    except ImportError:
        return
    argcomplete.autocomplete(parser)


def _flag_values(args: argparse.Namespace, mapping: dict[str, str]) -> dict[str, Any]:
    """Turn set flags into a nested override dict using dotted config keys."""
    values: dict[str, Any] = {}
    for flag, key in mapping.items():
        value = getattr(args, flag, None)
        if value is None or value is False:
            continue
        node = values
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return values


COMMON_FLAGS = {
    "dataset": "data.name",
    "data_dir": "data.data_dir",
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "milestones": "optim.milestones",
    "optimizer": "optim.name",
    "schedule": "optim.schedule",
    "warmup_epochs": "optim.warmup_epochs",
    "clip_grad_norm": "optim.clip_grad_norm",
    "seed": "seed",
    "device": "device",
}


def _split_dataset_path(args: argparse.Namespace) -> None:
    """``--dataset NAME:PATH`` -> ``--dataset NAME --data-dir PATH``."""
    name, colon, path = (getattr(args, "dataset", None) or "").partition(":")
    if not colon:
        return
    if not name or not path:
        raise UserError(f"--dataset {args.dataset!r}: use NAME, or NAME:PATH as in imagefolder:DIR")
    if getattr(args, "data_dir", None):
        raise UserError(
            f"--dataset {args.dataset} already names the folder; drop --data-dir {args.data_dir}."
        )
    args.dataset, args.data_dir = name, path


def _resolve(
    cls: type, args: argparse.Namespace, extra_flags: dict[str, str], base: Any = None
) -> Any:
    """The config of ``cls`` from ``base`` (default: the defaults), the config file, the flags
    and ``--set``, in that order."""
    _split_dataset_path(args)
    values = to_dict(cls() if base is None else base)
    if args.config:
        values = merge(values, load_yaml(args.config))
    values = merge(values, _flag_values(args, {**COMMON_FLAGS, **extra_flags}))
    if args.no_progress:
        values["progress"] = False
    if getattr(args, "tensorboard", False):
        values["tensorboard"] = True
    values = apply_overrides(values, args.overrides)
    return from_dict(cls, values)


def _resumed(
    recorded: Any, args: argparse.Namespace, extra_flags: dict[str, str], run: Path, may: str
) -> Any:
    """The recorded config with the flags applied; refused when a flag would change it beyond
    ``may`` (the keys a resume may change, besides FREE_ON_RESUME)."""
    config = _resolve(type(recorded), args, extra_flags, base=recorded)
    if isinstance(config, TrainConfig):
        absolute_paths(config.source)
    changes = config_changes(recorded, config)
    changes.pop(may, None)
    if changes:
        flags = {
            key: f"--{flag.replace('_', '-')}"
            for flag, key in {**COMMON_FLAGS, **extra_flags}.items()
        }
        allowed = "--device, --data-dir, --no-progress" + (", --epochs" if may else "")
        raise UserError(
            f"--resume continues {run} as it was made, but the flags change "
            f"{describe_changes(changes, flags)}; drop {'it' if len(changes) == 1 else 'them'} "
            f"(a resume takes {allowed}), "
            "or start a new run with another --out."
        )
    return config


# What `soft-labels --resume` says about a run directory of another kind.
NOT_SOFT_LABELS = {
    "train": "{out} is a training run, not a soft-labels run; continue it with "
    "`reffakd train --resume {out}`.",
    "light-teacher": "{out} is an LW-KD light-teacher run, not a soft-labels run.",
}
SOFT_LABEL_FLAGS = {
    "samples_per_class": "samples_per_class",
    "boost": "boost",
    "temperature": "temperature",
    "embedder": "embedder",
}


def cmd_soft_labels(args: argparse.Namespace) -> int:
    out = args.run_dir = Path(args.out)
    kind = run_kind(out) if args.resume else None
    if kind in NOT_SOFT_LABELS:
        raise UserError(NOT_SOFT_LABELS[kind].format(out=out))
    if kind == "soft-labels":
        recorded = from_dict(SoftLabelConfig, load_yaml(out / "config.yaml"))
        config = _resumed(recorded, args, SOFT_LABEL_FLAGS, out, may="")
    else:
        config = _resolve(SoftLabelConfig, args, SOFT_LABEL_FLAGS)
    started = time.perf_counter()
    labels = make_soft_labels(config, out, resume=args.resume, command=args.command_line)
    meta = labels.meta
    metric = meta.get("reconstruction_metric", "mse")
    error = meta.get(f"reconstruction_{metric}_val")
    made = f"embedder {meta['embedder']}" if meta.get("embedder") else f"AE val {metric} {error}"
    print(
        f"soft labels: {Path(args.out) / 'soft_labels.pt'} ({labels.num_classes}x"
        f"{labels.num_classes}, boost {meta['boost']}, mean row entropy "
        f"{meta['entropy_bits']:.4f} bits, {made})"
    )
    print(f"heatmap: {Path(args.out) / 'soft_labels.png'} | {time.perf_counter() - started:.1f}s")
    _write_report_after(Path(args.out))
    return 0


TRAIN_FLAGS = {
    "student": "student",
    "method": "method",
    "source": "source.name",
    "loss": "loss.name",
    "soft_labels": "source.soft_labels",
    "teacher": "source.run",
    "alpha": "loss.alpha",
    "temperature": "loss.temperature",
    "kl_reduction": "loss.reduction",
    "ae_epochs": "ae.optim.epochs",
    "precision": "compute.precision",
    "channels_last": "compute.channels_last",
    "compile": "compute.compile",
    "sync_bn": "compute.sync_bn",
    "deterministic": "compute.deterministic",
}


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        out = args.run_dir = Path(args.resume)
        if args.out and Path(args.out).resolve() != out.resolve():
            raise UserError(
                f"--resume {out} continues the run in its own folder; drop --out {args.out}."
            )
        recorded = load_run_config(out)
        _refuse_api_run(out, recorded)
        config = _resumed(recorded, args, TRAIN_FLAGS, out, may="optim.epochs")
        resume = True
    else:
        config = _resolve(TrainConfig, args, TRAIN_FLAGS)
        default = f"runs/{config.data.name}-{config.method}-{config.student}-s{config.seed}"
        out = args.run_dir = Path(args.out or default)
        resume = False
    summary = train_student(config, out, resume=resume, command=args.command_line)
    if world_from_env().is_main:  # under torchrun, one report for the job, written once
        print(summary_line(summary))
        print(f"run directory: {out}")
        _write_report_after(out)
    return 0


def _refuse_api_run(out: Path, config: TrainConfig) -> None:
    """A run of a module or data passed in Python cannot be rebuilt from the command line."""
    passed = [
        what
        for what, was_passed in (
            (f"the module {config.student}", is_user_module_name(config.student)),
            ("its data", config.data.name == USER_DATA),
        )
        if was_passed
    ]
    if passed:
        raise UserError(
            f"{out} was trained on {' and '.join(passed)} passed to train_student in Python, "
            "which the command line cannot rebuild; resume it in Python: train_student(config, "
            "out, resume=True, student=..., data=...)."
        )


def _write_report_after(directory: Path) -> None:
    """Write the report of a finished run; a failure is a warning, the run stays finished."""
    try:
        path = write_report(directory)
    except Exception as exc:  # the run's results are safe on disk whatever went wrong here
        print(
            f"reffakd: warning: report not written ({type(exc).__name__}: {first_line(exc)}); "
            f"retry with `reffakd report {directory}`.",
            file=sys.stderr,
        )
        return
    print(f"report: {path}")


def cmd_demo(args: argparse.Namespace) -> int:
    args.out = args.run_dir = Path(args.out or time.strftime("runs/demo-%Y%m%d-%H%M%S"))
    code = run_demo(args)
    _write_report_after(Path(args.out))
    return code


def cmd_tune(args: argparse.Namespace) -> int:
    grid = parse_grid(args.grid)
    base = _resolve(TrainConfig, args, {**TRAIN_FLAGS, "teacher": "source.run"})
    record = run_tune(base, grid, Path(args.out), samples=args.samples)
    print(
        f"best: {record['best']['params']} val {record['best']['val_best']:.2f}% "
        f"-> {Path(args.out) / 'best.yaml'} (use with `reffakd train --config`)"
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    suite = load_suite(args.suite)
    if args.seeds:
        suite.seeds = list(args.seeds)
    out = Path(args.out or f"runs/bench/{suite.name}")
    run_suite(suite, out, data_dir=args.data_dir, command=args.command_line)
    print((out / "results.md").read_text())
    print(f"bench directory: {out}")
    _write_report_after(out)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    print(LISTINGS[args.what]())
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    print(f"report: {write_report(Path(args.directory))}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(show(Path(args.directory)))
    return 0


def cmd_cost(args: argparse.Namespace) -> int:
    for flag in ("batch_size", "epochs"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be positive, got {value}")
    if not 0.0 <= args.val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    options = CostOptions(
        args.image_size,
        args.in_channels,
        args.num_classes,
        args.vocab_size,
        args.tokens,
        args.val_fraction,
        args.data_dir,
    )
    cost = model_cost(
        args.model, cost_input(args.dataset, options, args.model), args.batch_size, args.epochs
    )
    if args.json:
        print(json.dumps({"dataset": args.dataset, **cost}, indent=2))
    else:
        print(format_model_cost(cost, args.dataset))
    return 0


COMMANDS = {
    "soft-labels": cmd_soft_labels,
    "train": cmd_train,
    "demo": cmd_demo,
    "bench": cmd_bench,
    "tune": cmd_tune,
    "list": cmd_list,
    "cost": cmd_cost,
    "report": cmd_report,
    "show": cmd_show,
}


# How to continue a run of each command, once its run directory holds one.
RESUME_COMMANDS = {
    "train": "reffakd train --resume {run}",
    "demo": "reffakd train --resume {run}",
    "soft-labels": "reffakd soft-labels --out {run} --resume",
    "bench": "run the same command again to continue",
    "tune": "run the same command again to continue",
}


def _continue_hint(args: argparse.Namespace) -> str | None:
    """``continue with `...``` for a command whose run directory holds a run, else None."""
    template = RESUME_COMMANDS.get(args.command)
    run = getattr(args, "run_dir", None)
    if template is None:
        return None
    if "{run}" not in template:
        return template
    if run is None or not RunDir(run).holds_run():
        return None
    return f"continue with `{template.format(run=shlex.quote(str(run)))}`"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    _enable_completion(parser)
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["reffakd", *argv])
    try:
        if args.command != "train" and world_from_env().enabled:
            raise UserError(
                f"only `reffakd train` runs under torchrun, not `reffakd {args.command}`; "
                "run it as one process."
            )
        return COMMANDS[args.command](args)
    except StorageError as exc:
        hint = _continue_hint(args)
        then = f", then {hint}" if hint else " or choose another --out"
        print(f"reffakd: error: {exc}; {exc.advice}{then}.", file=sys.stderr)
        return exc.exit_code
    except UserError as exc:
        print(f"reffakd: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # the user's files, read or written anywhere: one line
        message = os_error_message(exc)
        if message is None:
            raise
        print(f"reffakd: error: {message}.", file=sys.stderr)
        return UserError.exit_code
    except NonFiniteLossError as exc:
        print(f"reffakd: stopped: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        hint = _continue_hint(args)
        print(f"reffakd: interrupted{'; ' + hint if hint else ''}.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
