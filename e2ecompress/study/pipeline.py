"""The study's steps, each skipped when its output is already there, so a killed run continues.

dataset -> MAE pretraining -> reconstruction evaluations -> classifiers (method x label fraction x seed)
-> their test evaluations -> substructure baseline -> results, shipped models, figures, study.md/json.

Training goes through the training CLI in this process (`e2ecompress.train.cli.main(argv)`), so each
step's ledger entry holds the exact `python -m e2ecompress.train ...` command that reproduces it; a run
directory that holds a checkpoint but not all its epochs is continued with --resume (which gives the
same weights as an uninterrupted run). Test splits are read only after every model is trained.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from e2ecompress.errors import E2EError, InputError
from e2ecompress.models import load_checkpoint
from e2ecompress.study.plan import RECON_SPLITS, SPLITS, SUBSETS, StudyPaths, StudyPlan
from e2ecompress.train.rundir import write_json


def display(path: str | os.PathLike) -> str:
    """A path as commands should show it: relative to the working directory when inside it."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


class Ledger:
    """WORKDIR/study_state.json: the plan the work directory belongs to, and per step the wall time spent
    (summed over the invocations that finished it) and the command that reproduces it."""

    def __init__(self, path: Path, identity: dict):
        self.path = path
        self.identity = identity
        self.steps: dict[str, dict] = {}
        if path.is_file():
            state = json.loads(path.read_text())
            if state.get("plan") != identity:
                diff = sorted(k for k in identity if state.get("plan", {}).get(k) != identity[k])
                raise InputError(
                    path,
                    f"holds a study with other settings ({', '.join(diff)} differ); use another --workdir",
                )
            self.steps = state.get("steps", {})
        self._save()

    def _save(self) -> None:
        write_json(self.path, {"plan": self.identity, "steps": self.steps})

    def run(self, name: str, fn: Callable[[], Any], command: str | None = None, replace: bool = False) -> Any:
        """fn(), timed. replace: a step redone by every invocation (figures, shipping) keeps its last
        time only; otherwise the times of the invocations that finished parts of a step add up."""
        t0 = time.perf_counter()
        out = fn()
        entry = self.steps.setdefault(name, {"wall_s": 0.0, "invocations": 0})
        if replace:
            entry.update(wall_s=0.0, invocations=0)
        entry["wall_s"] = round(entry["wall_s"] + time.perf_counter() - t0, 3)
        entry["invocations"] += 1
        if command is not None:
            entry["command"] = command
        self._save()
        return out

    def note(self, name: str, **info: Any) -> None:
        self.steps.setdefault(name, {"wall_s": 0.0, "invocations": 0}).update(info)
        self._save()


def finished_epochs(run: Path) -> int:
    last = run / "checkpoints" / "last"
    if not (last / "model.safetensors").is_file():
        return 0
    return int(load_checkpoint(last, build=False).state.get("epoch", 0))


class Study:
    def __init__(self, plan: StudyPlan, paths: StudyPaths, progress: bool = True, log=print):
        self.plan = plan
        self.paths = paths
        self.progress = progress
        self.log = log
        paths.workdir.mkdir(parents=True, exist_ok=True)
        self.ledger = Ledger(paths.ledger, plan.identity())

    # --- data ---------------------------------------------------------------------------------------

    def manifest_path(self, subset: str) -> Path:
        return self.paths.data / f"manifest-{subset}.json"

    def dataset(self) -> None:
        from e2ecompress.data.dataset import DatasetConfig, make_dataset

        d = self.plan.data
        for subset in SUBSETS:
            saved = self.manifest_path(subset)
            want = {f"{subset}/{s}": d.count(subset, s) for s in SPLITS}
            if saved.is_file() and json.loads(saved.read_text()).get("counts") == want:
                continue
            cfg = DatasetConfig(
                layout=d.layout,
                sets=(subset,),
                jets_per_shard=d.jets_per_shard,
                shards=d.shards(subset),
                seed=d.seed,
            )
            cmd = self.dataset_command(subset)
            self.log(f"[study] {cmd}")
            man = self.ledger.run(
                f"dataset/{subset}",
                lambda cfg=cfg: make_dataset(cfg, self.paths.data, d.workers, self.progress),
                cmd,
            )
            # manifest.json describes the last make-dataset call only; keep each set's beside it
            shutil.copyfile(self.paths.data / "manifest.json", saved)
            self.ledger.note(f"dataset/{subset}", throughput=man["throughput"])
        for subset in SUBSETS:
            for i, split in enumerate(SPLITS):
                n = len(list((self.paths.data / subset / split).glob("*.parquet")))
                if n != d.shards(subset)[i]:
                    raise InputError(
                        self.paths.data / subset / split,
                        f"holds {n} shards, the plan {d.shards(subset)[i]}; use another --data",
                    )

    def dataset_command(self, subset: str) -> str:
        """The make-dataset command equivalent to this study's generation of `subset`."""
        d = self.plan.data
        return (
            f"e2ecompress make-dataset {display(self.paths.data)} --layout {d.layout} --sets {subset} "
            f"--jets-per-shard {d.jets_per_shard} --shards {','.join(map(str, d.shards(subset)))} "
            f"--seed {d.seed} --workers {d.workers}"
        )

    # --- training -----------------------------------------------------------------------------------

    @property
    def mae_best(self) -> Path:
        return self.paths.run("pretrain") / "checkpoints" / "best"

    def train_argv(self, command: str, fraction: float | None = None, seed: int = 0) -> list[str]:
        p = self.plan
        pretrain = command == "pretrain"
        epochs = p.pretrain_epochs if pretrain else p.epochs_at(fraction)
        argv = [
            command,
            "--config",
            display(p.configs[command]),
            "--data",
            display(self.paths.data),
            "--out",
            display(self.paths.run(command, fraction, seed)),
            "--epochs",
            str(epochs),
            "--seed",
            str(seed),
            "--batch-size",
            str(p.pretrain_batch_size if pretrain else p.classifier_batch_size),
        ]
        if not pretrain:
            argv += ["--init", display(self.mae_best), "--label-fraction", f"{fraction:g}"]
            argv += ["--set", f"data.label_seed={seed}"]  # each seed draws its own labelled subset
        argv += ["--set", f"data.eval_batch_size={p.eval_batch_size}"]
        argv += ["--set", f"model.kwargs.sparse={str(p.sparse).lower()}"]
        if p.threads:
            argv += ["--threads", str(p.threads)]
        if not self.progress:
            argv.append("--no-progress")
        return [*argv, "--resume"]

    def command_for(self, command: str, fraction: float | None = None, seed: int = 0) -> str:
        return "python -m e2ecompress.train " + shlex.join(self.train_argv(command, fraction, seed))

    def train(self, command: str, fraction: float | None = None, seed: int = 0) -> Path:
        from e2ecompress.train.cli import main as train_main

        run = self.paths.run(command, fraction, seed)
        epochs = self.plan.pretrain_epochs if command == "pretrain" else self.plan.epochs_at(fraction)
        if finished_epochs(run) >= epochs:
            return run
        argv = self.train_argv(command, fraction, seed)
        cmd = self.command_for(command, fraction, seed)
        self.log(f"[study] {cmd}")
        name = "pretrain" if command == "pretrain" else f"{command}/f{fraction:g}/s{seed}"
        rc = self.ledger.run(name, lambda: train_main(argv), cmd)
        if rc != 0 or finished_epochs(run) < epochs:
            raise E2EError(f"study step {name} failed (exit {rc}): {cmd}")
        if not (run / "checkpoints" / "best" / "model.safetensors").is_file():
            raise E2EError(
                f"study step {name}: no epoch had a finite validation score, so no best checkpoint"
            )
        return run

    # --- evaluation ---------------------------------------------------------------------------------

    def evaluate(
        self,
        name: str,
        checkpoint: Path | str,
        subset: str,
        split: str,
        out: Path,
        max_jets: int | None = None,
        scores: Path | None = None,
        replace: bool = False,
    ) -> dict:
        from e2ecompress.train.config import EvalConfig
        from e2ecompress.train.evaluate import run_evaluate

        if out.is_file() and (scores is None or scores.is_file()):
            return json.loads(out.read_text())
        ck = checkpoint if isinstance(checkpoint, str) else display(checkpoint)
        cfg = EvalConfig(
            checkpoint=ck,
            root=display(self.paths.data),
            subset=subset,
            split=split,
            out=display(out),
            batch_size=self.plan.eval_batch_size,
            max_jets=max_jets,
            seed=self.plan.mask_seed,
            threads=self.plan.threads,
            progress=False,
        )
        flags = {
            "--checkpoint": cfg.checkpoint,
            "--data": cfg.root,
            "--subset": subset,
            "--split": split,
            "--out": cfg.out,
            "--batch-size": cfg.batch_size,
            "--max-jets": max_jets,
            "--seed": cfg.seed,
        }
        argv = ["evaluate"] + [str(x) for k, v in flags.items() if v is not None for x in (k, v)]
        cmd = "python -m e2ecompress.train " + shlex.join(argv)
        self.log(f"[study] {cmd}")
        return self.ledger.run(name, lambda: run_evaluate(cfg, None, scores_out=scores), cmd, replace)

    def baseline(self) -> dict:
        from e2ecompress.study.baseline import run_baseline

        out = self.paths.baseline_json
        if out.is_file():
            return json.loads(out.read_text())
        self.log("[study] substructure logistic regression (truth-level and image-level features)")
        p = self.plan
        res = self.ledger.run(
            "baseline",
            lambda: run_baseline(
                self.paths.data, p.fractions, p.seeds, p.reference_fraction, out.with_suffix(".npz")
            ),
        )
        write_json(out, res)
        return res


def run_study(
    plan: StudyPlan, paths: StudyPaths, progress: bool = True, command: str = "", ship_dir: Path | None = None
) -> dict:
    """Run (or continue) the whole study; returns the results written to OUT/study.json."""
    from e2ecompress.study import collect, figures, report, ship

    if plan.threads:
        torch.set_num_threads(plan.threads)
    s = Study(plan, paths, progress)
    s.dataset()
    s.train("pretrain")
    for subset, split in RECON_SPLITS:
        limit = plan.recon_train_jets if split == "train" else None
        s.evaluate(
            f"reconstruction/{subset}/{split}",
            s.mae_best,
            subset,
            split,
            paths.recon_json(subset, split),
            max_jets=limit,
        )
    grid = [(seed, f, m) for seed in plan.seeds for f in plan.fractions for m in plan.methods]
    for seed, f, m in grid:
        s.train(m, f, seed)
    for seed, f, m in grid:  # the test split, once per model, after all training
        s.evaluate(
            f"test/{m}/f{f:g}/s{seed}",
            paths.run(m, f, seed) / "checkpoints" / "best",
            "labelled",
            "test",
            paths.test_json(m, f, seed),
            scores=paths.test_scores(m, f, seed),
        )
    s.baseline()
    results = collect.collect(plan, paths)
    results["command"] = command
    if plan.ship:
        results["shipped"] = ship.ship_study(s, results, ship_dir)
    paths.out.mkdir(parents=True, exist_ok=True)
    results["figures"] = s.ledger.run(
        "figures", lambda: figures.study_figures(plan, paths, results), replace=True
    )
    collect.add_steps(results, s.ledger.steps)
    write_json(paths.out / "study.json", results)
    # the report is rendered from the JSON just written, so the two hold the same numbers
    results = json.loads((paths.out / "study.json").read_text())
    (paths.out / "study.md").write_text(report.render(results))
    return results
