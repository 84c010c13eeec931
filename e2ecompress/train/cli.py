"""`python -m e2ecompress.train {pretrain,finetune,linprobe,scratch,evaluate,bench-sparse}`.

    python -m e2ecompress.train pretrain --data data/qg --out runs/mae --epochs 20
    python -m e2ecompress.train finetune --data data/qg --init runs/mae/checkpoints/best --out runs/ft \\
        --label-fraction 0.1 --seed 1
    python -m e2ecompress.train scratch --data data/qg --init runs/mae/checkpoints/best --out runs/sc \\
        --lr 1e-3
    python -m e2ecompress.train linprobe --data data/qg --init runs/mae/checkpoints/best --out runs/lp
    python -m e2ecompress.train evaluate --checkpoint runs/ft/checkpoints/best --data data/qg --split test \\
        --out runs/ft/test.json
    python -m e2ecompress.train bench-sparse --data data/qg --steps 30 --out bench_sparse.json
    torchrun --nproc-per-node 2 -m e2ecompress.train pretrain --data data/qg --out runs/mae_ddp

Settings come from the command's defaults, then `--config FILE` (YAML/JSON), then the flags, then
`--set key=value` (dotted keys: optim.lr, data.batch_size, model.kwargs.depth, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from e2ecompress.errors import E2EError
from e2ecompress.train import config as C

EXIT_USAGE = 2

# flag dest -> dotted config key
_TRAIN_FLAGS = {
    "data": "data.root",
    "out": "out",
    "init": "init",
    "model": "model.name",
    "epochs": "epochs",
    "batch_size": "data.batch_size",
    "lr": "optim.lr",
    "seed": "seed",
    "label_fraction": "data.label_fraction",
    "mask_ratio": "mask_ratio",
    "max_train_jets": "data.max_train_jets",
    "max_val_jets": "data.max_val_jets",
    "threads": "threads",
    "device": "device",
    "stop_after_epochs": "stop_after_epochs",
}
_EVAL_FLAGS = {
    "checkpoint": "checkpoint",
    "data": "root",
    "subset": "subset",
    "split": "split",
    "out": "out",
    "batch_size": "batch_size",
    "max_jets": "max_jets",
    "mask_ratio": "mask_ratio",
    "seed": "seed",
    "threads": "threads",
    "device": "device",
}
_BENCH_FLAGS = {
    "data": "root",
    "model": "model.name",
    "steps": "steps",
    "batch_size": "batch_size",
    "lr": "lr",
    "mask_ratio": "mask_ratio",
    "val_jets": "val_jets",
    "seed": "seed",
    "out": "out",
    "threads": "threads",
}

_HELP = {
    "pretrain": "MAE pretraining on unlabelled/train (validation: unlabelled/val reconstruction)",
    "finetune": "fine-tune a pretrained MAE encoder as a quark/gluon classifier (layer-wise LR decay)",
    "linprobe": "linear probe: frozen MAE encoder + BatchNorm(affine=False) + Linear",
    "scratch": "the classifier from random weights (--init: take only architecture and normalizer)",
    "evaluate": "metrics of a checkpoint on a whole split (the only command that reads test)",
    "bench-sparse": "dense vs sparse-aware MAE encoder: throughput and reconstruction MSE",
}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="YAML or JSON file with settings")
    p.add_argument(
        "--set",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        dest="overrides",
        help="override any setting (dotted key, YAML value); repeatable",
    )
    p.add_argument("--threads", type=int, help="torch threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _train_parser(sub, name: str) -> None:
    p = sub.add_parser(name, help=_HELP[name], description=_HELP[name])
    p.add_argument("--data", metavar="DIR", help="dataset directory (make-dataset output)")
    p.add_argument("--out", metavar="DIR", help="run directory")
    p.add_argument(
        "--init",
        metavar="CKPT",
        help="pretrained MAE checkpoint" + ("" if name != "pretrain" else " (unused by pretrain)"),
    )
    p.add_argument("--model", metavar="NAME", help="registry name (see --list-models)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--seed", type=int)
    p.add_argument("--label-fraction", type=float, help="class-balanced fraction of labelled/train to use")
    p.add_argument("--mask-ratio", type=float)
    p.add_argument("--max-train-jets", type=int)
    p.add_argument("--max-val-jets", type=int)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"))
    p.add_argument("--resume", action="store_true", help="continue from RUN/checkpoints/last")
    p.add_argument("--stop-after-epochs", type=int, metavar="N", help="stop this invocation after N epochs")
    _common(p)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m e2ecompress.train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--list-models", action="store_true", help="print the registered models and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in C.TRAIN_COMMANDS:
        _train_parser(sub, name)
    p = sub.add_parser("evaluate", help=_HELP["evaluate"], description=_HELP["evaluate"])
    p.add_argument("--checkpoint", metavar="CKPT", help="checkpoint directory or shipped model name")
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--subset", choices=("labelled", "unlabelled"))
    p.add_argument("--split", choices=("train", "val", "test"))
    p.add_argument("--out", metavar="FILE", help="metrics JSON")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--max-jets", type=int)
    p.add_argument("--mask-ratio", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", choices=("cpu", "cuda", "auto"))
    _common(p)
    p = sub.add_parser("bench-sparse", help=_HELP["bench-sparse"], description=_HELP["bench-sparse"])
    p.add_argument("--data", metavar="DIR")
    p.add_argument("--model", metavar="NAME")
    p.add_argument("--steps", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--mask-ratio", type=float)
    p.add_argument("--val-jets", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", metavar="FILE", help="results JSON")
    _common(p)
    return parser


def resolve(cfg: Any, args: argparse.Namespace, flags: dict[str, str]) -> Any:
    """Defaults <- --config file <- explicit flags <- --set overrides."""
    layered: dict[str, Any] = {}
    if args.config:
        data = C.load_file(args.config)
        cmd = data.pop("command", None)
        if cmd is not None and cmd != args.command:
            raise E2EError(f"{args.config}: a config for {cmd!r}, not {args.command!r}")
        layered = data
    for dest, key in flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            layered = C.merge(layered, C.nested(key, value))
    for text in args.overrides:
        layered = C.merge(layered, C.parse_override(text))
    C.apply_dict(cfg, layered)
    if getattr(args, "no_progress", False):
        cfg.progress = False
    return cfg


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        from e2ecompress.models import list_models

        print("\n".join(list_models()))
        return 0
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command in C.TRAIN_COMMANDS:
            from e2ecompress.train.engine import run_train

            cfg = C.validate(resolve(C.default_config(args.command), args, _TRAIN_FLAGS))
            summary = run_train(cfg, resume=args.resume)
            # one write of one line: lines from several torchrun ranks sharing a pipe never interleave
            sys.stdout.write(json.dumps(summary, sort_keys=True) + "\n")
            sys.stdout.flush()
        elif args.command == "evaluate":
            from e2ecompress.train.evaluate import run_evaluate

            cfg = resolve(C.EvalConfig(), args, _EVAL_FLAGS)
            if not cfg.checkpoint or not cfg.root:
                raise E2EError("evaluate needs --checkpoint and --data")
            result = run_evaluate(cfg, _bar_factory(cfg.progress))
            print(
                json.dumps(
                    result["metrics"] | {"n_jets": result["n_jets"], "model_id": result["model_id"]},
                    indent=2,
                    sort_keys=True,
                    default=str,
                )
            )
        else:
            from e2ecompress.train.bench import bench_sparse

            cfg = resolve(C.BenchConfig(), args, _BENCH_FLAGS)
            if not cfg.root:
                raise E2EError("bench-sparse needs --data")
            bench_sparse(cfg)
    except E2EError as e:
        print(f"python -m e2ecompress.train {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return 0


def _bar_factory(enabled: bool):
    from tqdm import tqdm

    def make(total: int, desc: str):
        return tqdm(total=total, desc=desc, unit="batch", leave=False, disable=not enabled, file=sys.stderr)

    return make
