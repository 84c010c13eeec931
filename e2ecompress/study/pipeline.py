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
import subprocess
import sys
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
        self.invocations: list[dict] = []
        if path.is_file():
            state = json.loads(path.read_text())
            if state.get("plan") != identity:
                diff = sorted(k for k in identity if state.get("plan", {}).get(k) != identity[k])
                raise InputError(
                    path,
                    f"holds a study with other settings ({', '.join(diff)} differ); use another --workdir",
                )
            self.steps = state.get("steps", {})
            self.invocations = state.get("invocations", [])
        # this invocation's wall time, updated at every save, so a killed invocation keeps what it spent
        self._t0 = time.perf_counter()
        self.invocations.append(
            {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "wall_s": 0.0}
        )
        self._save()

    def _save(self) -> None:
        self.invocations[-1]["wall_s"] = round(time.perf_counter() - self._t0, 1)
        write_json(self.path, {"plan": self.identity, "steps": self.steps, "invocations": self.invocations})

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

    def touch(self, every_s: float = 60.0) -> None:
        """Save this invocation's wall time so far (at most every `every_s`): a killed invocation keeps it."""
        if time.perf_counter() - self._t0 - self.invocations[-1]["wall_s"] >= every_s:
            self._save()

    def record(self, name: str, wall_s: float, command: str) -> None:
        """A step run elsewhere (a training process): its wall time adds up over invocations."""
        entry = self.steps.setdefault(name, {"wall_s": 0.0, "invocations": 0})
        entry["wall_s"] = round(entry["wall_s"] + wall_s, 3)
        entry["invocations"] += 1
        entry["command"] = command
        self._save()

    def note(self, name: str, **info: Any) -> None:
        self.steps.setdefault(name, {"wall_s": 0.0, "invocations": 0}).update(info)
        self._save()


def run_state(run: Path) -> dict:
    """The training state of a run directory's last checkpoint ({} when there is none)."""
    last = run / "checkpoints" / "last"
    if not (last / "model.safetensors").is_file():
        return {}
    return dict(load_checkpoint(last, build=False).state)


def finished(run: Path) -> bool:
    """The run ended (all its epochs, or stopped early) and has a best checkpoint."""
    st = run_state(run)
    done = bool(st.get("complete")) or (
        "complete" not in st and st.get("command") == "linprobe" and st.get("epoch", 0) > 0
    )
    return done and (run / "checkpoints" / "best" / "model.safetensors").is_file()


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

    def mae_best(self, pretrain_seed: int) -> Path:
        return self.paths.run("pretrain", seed=pretrain_seed) / "checkpoints" / "best"

    def train_argv(
        self,
        command: str,
        run: Path,
        seed: int,
        fraction: float | None = None,
        init: Path | None = None,
        lr: float | None = None,
        layer_decay: float | None = None,
    ) -> list[str]:
        p = self.plan
        pretrain = command == "pretrain"
        argv = [command, "--config", display(p.configs[command]), "--data", display(self.paths.data)]
        argv += ["--out", display(run), "--seed", str(seed)]
        if pretrain:
            argv += ["--epochs", str(p.pretrain_epochs), "--batch-size", str(p.pretrain_batch_size)]
        else:
            argv += ["--init", display(init), "--label-fraction", f"{fraction:g}"]
            argv += ["--batch-size", str(p.classifier_batch_size)]
            argv += ["--set", f"data.label_seed={seed}"]  # each seed draws its own labelled subset
            if command != "linprobe":
                argv += ["--epochs", str(p.classifier_epochs)]
                argv += ["--set", f"steps_per_epoch={p.steps_per_epoch}"]
                if p.patience:
                    argv += ["--set", f"patience={p.patience}"]
        if lr is not None:
            argv += ["--set", f"optim.lr={lr:g}"]
        if layer_decay is not None:
            argv += ["--set", f"optim.layer_decay={layer_decay:g}"]
        argv += ["--set", f"data.eval_batch_size={p.eval_batch_size}"]
        if p.threads:
            argv += ["--threads", str(p.threads)]
        argv.append("--no-progress")
        return [*argv, "--resume"]

    def run_jobs(self, jobs: list[tuple[str, list[str], Path]]) -> None:
        """Train (name, argv, run directory) jobs not finished yet, `plan.workers` processes at once; each
        job's wall time and reproducing command go to the ledger."""
        todo = [j for j in jobs if not finished(j[2])]
        running: list[tuple[str, list[str], Path, subprocess.Popen, float, Any]] = []
        logs = self.paths.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        if self.plan.threads:
            env["OMP_NUM_THREADS"] = str(self.plan.threads)
        failed: list[str] = []
        while todo or running:
            while todo and len(running) < max(self.plan.workers, 1):
                name, argv, run = todo.pop(0)
                cmd = self.command(argv)
                self.log(f"[study] {cmd}")
                log = open(logs / (name.replace("/", "_") + ".log"), "w")
                proc = subprocess.Popen(
                    [sys.executable, "-m", "e2ecompress.train", *argv], stdout=log, stderr=log, env=env
                )
                running.append((name, argv, run, proc, time.perf_counter(), log))
            time.sleep(0.2)
            self.ledger.touch()
            for job in list(running):
                name, argv, run, proc, t0, log = job
                if proc.poll() is None:
                    continue
                running.remove(job)
                log.close()
                cmd = self.command(argv)
                if proc.returncode != 0 or not finished(run):
                    failed.append(f"{name} (exit {proc.returncode}, log {display(log.name)})")
                    continue
                self.ledger.record(name, time.perf_counter() - t0, cmd)
        if failed:
            raise E2EError(f"study steps failed: {'; '.join(failed)}")

    def pretrain(self) -> None:
        jobs = []
        for ps in self.plan.pretrain_seeds:
            run = self.paths.run("pretrain", seed=ps)
            jobs.append((f"pretrain/s{ps}", self.train_argv("pretrain", run, ps), run))
        self.run_jobs(jobs)

    def grid_search(self) -> dict:
        """Seed seeds[0] at every grid point; -> {method: {fraction key: chosen point and every score}}."""
        p = self.plan
        seed = p.seeds[0]
        init = self.mae_best(p.pretrain_seed_for(seed))
        jobs = []
        for f in p.fractions:
            for m in ("finetune", "scratch"):
                if m not in p.methods:
                    continue
                for lr, ld in p.grid[m]:
                    run = self.paths.grid_run(m, f, lr, ld)
                    argv = self.train_argv(m, run, seed, f, init, lr, ld if m == "finetune" else None)
                    jobs.append((f"grid/{m}/f{f:g}/lr{lr:g}_ld{ld:g}", argv, run))
        self.run_jobs(jobs)
        chosen: dict = {}
        for f in p.fractions:
            for m in ("finetune", "scratch"):
                if m not in p.methods:
                    continue
                points = []
                for lr, ld in p.grid[m]:
                    st = run_state(self.paths.grid_run(m, f, lr, ld))
                    points.append(
                        {
                            "lr": lr,
                            "layer_decay": ld,
                            "val_auc": st.get("best"),
                            "best_epoch": st.get("best_epoch"),
                            "epochs": st.get("epoch"),
                        }
                    )
                best = max(points, key=lambda q: -1.0 if q["val_auc"] is None else q["val_auc"])
                chosen.setdefault(m, {})[f"{f:g}"] = {"chosen": best, "grid": points}
        return chosen

    def final_run(self, method: str, fraction: float, seed: int, chosen: dict) -> Path:
        return self.final_job(method, fraction, seed, chosen)[2]

    def final_job(self, method: str, fraction: float, seed: int, chosen: dict) -> tuple[str, list[str], Path]:
        """(ledger name, training argv, run directory) of the final run of (method, fraction, seed): for
        seeds[0] of a grid-searched method, that is the chosen grid run itself."""
        p = self.plan
        init = self.mae_best(p.pretrain_seed_for(seed))
        if method == "linprobe":
            run = self.paths.run(method, fraction, seed)
            return f"linprobe/f{fraction:g}/s{seed}", self.train_argv(method, run, seed, fraction, init), run
        c = chosen[method][f"{fraction:g}"]["chosen"]
        lr, ld = c["lr"], c["layer_decay"]
        if seed == p.seeds[0]:
            run = self.paths.grid_run(method, fraction, lr, ld)
            name = f"grid/{method}/f{fraction:g}/lr{lr:g}_ld{ld:g}"
        else:
            run = self.paths.run(method, fraction, seed)
            name = f"{method}/f{fraction:g}/s{seed}"
        argv = self.train_argv(method, run, seed, fraction, init, lr, ld if method == "finetune" else None)
        return name, argv, run

    def classifiers(self, chosen: dict) -> None:
        p = self.plan
        jobs = [
            self.final_job(m, f, seed, chosen)
            for seed in p.seeds
            for f in p.fractions
            for m in p.methods
            if m == "linprobe" or seed != p.seeds[0]
        ]
        self.run_jobs(jobs)

    @staticmethod
    def command(argv: list[str]) -> str:
        return "python -m e2ecompress.train " + shlex.join(argv)

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

    t_start = time.perf_counter()
    if plan.threads:
        torch.set_num_threads(plan.threads)
    s = Study(plan, paths, progress)
    s.dataset()
    s.ledger.run("pretrain/all", s.pretrain)
    for ps in plan.pretrain_seeds:
        for subset, split in RECON_SPLITS:
            limit = plan.recon_train_jets if split == "train" else None
            s.evaluate(
                f"reconstruction/s{ps}/{subset}/{split}",
                s.mae_best(ps),
                subset,
                split,
                paths.recon_json(subset, split, ps),
                max_jets=limit,
            )
    chosen = s.ledger.run("grid/all", s.grid_search)
    write_json(paths.workdir / "grid.json", chosen)
    s.ledger.run("classifiers/all", lambda: s.classifiers(chosen))
    finals = {}
    for seed in plan.seeds:  # the test split, once per model, after all training
        for f in plan.fractions:
            for m in plan.methods:
                run = s.final_run(m, f, seed, chosen)
                finals[(m, f, seed)] = run
                s.evaluate(
                    f"test/{m}/f{f:g}/s{seed}",
                    run / "checkpoints" / "best",
                    "labelled",
                    "test",
                    run / "test.json",
                    scores=run / "test_scores.npz",
                )
    s.baseline()
    results = collect.collect(plan, paths, chosen, finals)
    results["command"] = command
    if plan.ship:
        results["shipped"] = ship.ship_study(s, results, ship_dir, finals)
    paths.out.mkdir(parents=True, exist_ok=True)
    results["figures"] = s.ledger.run(
        "figures", lambda: figures.study_figures(plan, paths, results, finals), replace=True
    )
    collect.add_steps(results, s.ledger.steps, s.ledger.invocations)
    results["invocation_wall_s"] = round(time.perf_counter() - t_start, 1)
    write_json(paths.out / "study.json", results)
    # the report is rendered from the JSON just written, so the two hold the same numbers
    results = json.loads((paths.out / "study.json").read_text())
    (paths.out / "study.md").write_text(report.render(results))
    return results
