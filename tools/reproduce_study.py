"""The MAE study in one command: data, MAE pretraining, reconstruction, classifiers, report.

    python tools/reproduce_study.py --scale full     # ~102 min on 2 idle CPU cores; ships the models
    python tools/reproduce_study.py --scale tiny     # the whole pipeline on toy sizes, under 2 minutes

Writes OUT/study.md, OUT/study.json and OUT/study_*.png; run directories and evaluation JSON go to
WORKDIR. Every step is skipped when its output exists, so run the same command again to continue a
study that was stopped. Data are generated into DATA when absent.

Budget of --scale full on the 2-core CPU, from rates measured there on an idle machine (other jobs on
the same cores slow every step, by up to 3x when we measured): generation 57 jets/s (2 workers);
sparse-aware MAE training ~100 jets/s (batch 64); sparse-aware ViT classifier ~84 jets/s training
(batch 32) and ~175 jets/s inference; reconstruction evaluation ~230 jets/s; 2 torch threads.
Sparse-aware (`model.kwargs.sparse=true`: empty patches never enter the encoder) is used for every model;
it trains the classifier 2.8x and the MAE 1.35x faster than dense at the same size.

| step                | work                                                              | estimate |
|---------------------|-------------------------------------------------------------------|----------|
| data, unlabelled    | 50,000 train + 2,000 val + 2,000 test jets                        |   16 min |
| data, labelled      | 4,000 train + 1,000 val + 3,000 test jets (balanced quark/gluon)  |  2.5 min |
| pretrain MAE        | read 50,000 jets, fit normalizer (1.5 min); 3 epochs x 50,000     |   27 min |
|                     |   jets; validation 3 x 2,000 jets                                 |          |
| reconstruction eval | 2,000 unlabelled/train, 2,000 unlabelled/test, 3,000 lab./test    |  0.5 min |
| finetune            | 3 seeds x (5 ep x 4,000 + 8 ep x 400 + 12 ep x 40 jets)           |   14 min |
|                     |   + validation: 3 seeds x 25 epochs x 1,000 jets                  |    7 min |
| scratch             | the same epochs and jets as finetune                              |   21 min |
| linprobe            | frozen features once per run (9 x ~2,500 jets), head on cache     |  1.5 min |
| test evaluation     | 27 models x 3,000 jets, after all training                        |    8 min |
| data loading        | labelled train + val read by each of the 27 runs                  |    3 min |
| baseline, figures   | substructure of 8,000 jets, 54 x 6 LR fits; PNGs; shipping checks |  1.5 min |
| total               |                                                                   | ~102 min |

Label fractions 1%, 10%, 100% with 12, 8 and 5 epochs: every method gets the same epochs at a given
fraction, and the small fractions get more epochs so that they take more than a handful of optimizer
steps (12 x 2 and 8 x 13 steps of 32 jets). Seeds 0, 1, 2; each seed draws its own labelled subset.
The shipped MAE is trained on the 50,000 unlabelled training jets (the study plan asks for at least 50k).
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
        pretrain_epochs=6,
        pretrain_batch_size=128,
        pretrain_seeds=(0, 1),
        fractions=(0.01, 0.1, 1.0),
        classifier_epochs=6,
        steps_per_epoch=40,
        classifier_batch_size=64,
        patience=3,
        grid={
            "finetune": ((3e-4, 0.75), (1e-3, 0.75), (1e-3, 0.9)),
            "scratch": ((3e-4, 1.0), (1e-3, 1.0), (3e-3, 1.0)),
        },
        seeds=(0, 1, 2, 3, 4),
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
