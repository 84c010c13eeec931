"""The MAE study in one command: data, MAE pretraining, reconstruction, classifiers, report.

    python tools/reproduce_study.py --scale full     # ~2.5 h on 2 CPU cores; ships the models
    python tools/reproduce_study.py --scale tiny     # the whole pipeline on toy sizes, ~2 minutes

Writes OUT/study.md, OUT/study.json and OUT/study_*.png; run directories and evaluation JSON go to
WORKDIR. Every step is skipped when its output exists, so run the same command again to continue a
study that was stopped; every invocation's wall time is kept in WORKDIR/study_state.json and reported.
Data are generated into DATA when absent.

--scale full, on 2 CPU cores (two training processes at once, one torch thread each; the measured
times of a run are in the report's Wall time section):

| phase               | work                                                                   |
|---------------------|------------------------------------------------------------------------|
| data                | 54,000 unlabelled (50,000 / 2,000 / 2,000) and 22,000 labelled         |
|                     | (16,000 / 2,000 / 4,000, balanced quark/gluon) jets; ~10 min           |
| pretraining         | 2 seeds at once, 4 epochs x 50,000 jets each, validation on 2,000;     |
|                     | ~60 jets/s per process when both run: ~14 min per epoch               |
| reconstruction      | per seed: 2,000 unlabelled/train, 2,000 unlabelled/test, 4,000         |
|                     | labelled/test jets                                                     |
| learning-rate grid  | seed 0, label fractions 10 % and 100 %, 3 points per method (fine-tune |
|                     | and scratch): 12 runs of 160 optimizer steps x 64 jets                 |
| classifiers         | seeds 1-2 with the chosen points (8 runs) + 6 linear probes            |
| test evaluation     | every final model on the 4,000 labelled/test jets, after all training  |
| baseline, figures   | substructure logistic regressions (10 fits per feature set), PNGs      |

Every fine-tuned and scratch run gets the same 160-step budget (4 epochs x 40 steps) whatever its label
fraction, with early stopping (patience 2) on the validation AUC; seeds 0-2, each drawing its own
labelled subset. The shipped MAE is the one of pretraining seed 0.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import tempfile
from pathlib import Path

from e2ecompress.errors import E2EError
from e2ecompress.study.plan import DataPlan, StudyPaths, StudyPlan

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def full_plan(**kw) -> StudyPlan:
    jet = CONFIGS / "jet"
    return StudyPlan(
        scale="full",
        data=DataPlan(
            jets_per_shard=1000, labelled_shards=(16, 2, 4), unlabelled_shards=(50, 2, 2), workers=2
        ),
        configs={c: str(jet / f"{c}.yaml") for c in ("pretrain", "finetune", "scratch", "linprobe")},
        pretrain_epochs=4,
        pretrain_batch_size=128,
        pretrain_seeds=(0, 1),
        fractions=(0.1, 1.0),
        classifier_epochs=4,
        steps_per_epoch=40,
        classifier_batch_size=64,
        patience=2,
        grid={
            "finetune": ((3e-4, 0.75), (1e-3, 0.75), (1e-3, 0.9)),
            "scratch": ((3e-4, 1.0), (1e-3, 1.0), (3e-3, 1.0)),
        },
        seeds=(0, 1, 2),
        eval_batch_size=256,
        recon_train_jets=2000,
        **{"threads": 1, "workers": 2, **kw},
    )


def tiny_plan(**kw) -> StudyPlan:
    tiny = CONFIGS / "jet" / "tiny"
    return StudyPlan(
        scale="tiny",
        data=DataPlan(jets_per_shard=16, labelled_shards=(1, 1, 1), unlabelled_shards=(1, 1, 1), workers=2),
        configs={c: str(tiny / f"{c}.yaml") for c in ("pretrain", "finetune", "scratch", "linprobe")},
        pretrain_epochs=1,
        pretrain_batch_size=4,
        pretrain_seeds=(0, 1),
        fractions=(0.5, 1.0),
        classifier_epochs=2,
        steps_per_epoch=2,
        classifier_batch_size=4,
        patience=1,
        grid={"finetune": ((1e-3, 0.75), (3e-3, 0.75)), "scratch": ((1e-3, 1.0), (3e-3, 1.0))},
        seeds=(0, 1),
        eval_batch_size=16,
        recon_train_jets=16,
        **{"threads": 1, "workers": 2, **kw},
    )


PLANS = {"full": full_plan, "tiny": tiny_plan}
DEFAULTS = {"data": "data/study", "workdir": "runs/study", "out": "results"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python tools/reproduce_study.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scale", choices=sorted(PLANS), default="full")
    p.add_argument("--data", metavar="DIR", help="dataset directory (full: data/study; tiny: a temp dir)")
    p.add_argument("--workdir", metavar="DIR", help="run directories (full: runs/study; tiny: a temp dir)")
    p.add_argument(
        "--out", metavar="DIR", help="study.md, study.json, PNGs (full: results; tiny: a temp dir)"
    )
    p.add_argument(
        "--ship",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="copy the models into e2ecompress/models/pretrained/ (default: only at --scale full)",
    )
    p.add_argument("--ship-dir", metavar="DIR", help="ship there instead of the package (for tests)")
    p.add_argument("--threads", type=int, help="torch threads (default: full 2, tiny 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ship = args.scale == "full" if args.ship is None else args.ship
    extra = {"ship": ship}
    if args.threads:
        extra["threads"] = args.threads
    plan = PLANS[args.scale](**extra)
    dirs = {k: getattr(args, k) for k in DEFAULTS}
    if args.scale == "tiny" and not all(dirs.values()):
        tmp = Path(tempfile.mkdtemp(prefix="e2e-study-tiny-"))
        dirs = {k: v or str(tmp / k) for k, v in dirs.items()}
    dirs = {k: Path(v or DEFAULTS[k]) for k, v in dirs.items()}
    paths = StudyPaths(data=dirs["data"], workdir=dirs["workdir"], out=dirs["out"])
    command = "python tools/reproduce_study.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    from e2ecompress.study.pipeline import run_study

    try:
        res = run_study(
            plan,
            paths,
            progress=not args.no_progress,
            command=command.strip(),
            ship_dir=Path(args.ship_dir) if args.ship_dir else None,
        )
    except E2EError as e:
        print(f"reproduce_study: error: {e}", file=sys.stderr)
        return 2
    for t in res["targets"]:
        value = "n/a" if t["measured"] is None else f"{t['measured']:.4f}"
        print(f"{t['status']:>4}  {t['target']}: {value} (wanted {t['op']} {t['threshold']:g})")
    print(f"wall time {res['total_wall_s']:.1f} s; report: {paths.out / 'study.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
