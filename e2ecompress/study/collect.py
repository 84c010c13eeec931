"""Gather a finished study from its run directories into one JSON-safe dict, with the derived figures
(differences, ratios) and the study's goals computed here, so the report only formats numbers."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from e2ecompress.models import count_params, load_checkpoint
from e2ecompress.study.baseline import FEATURE_SETS, read_columns
from e2ecompress.study.plan import RECON_SPLITS, SUBSETS, StudyPaths, StudyPlan
from e2ecompress.train.data import label_subset

GAIN_AT_10 = 0.02  # fine-tuned minus scratch AUC wanted at 10% of the labels
ENERGY_GAP = 0.05  # |test / train - 1| of the energy-sum error counted as "within a few %"


def fkey(fraction: float) -> str:
    return f"{fraction:g}"


def mean_std(values: Iterable[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (ddof=1; None for fewer than two values); NaNs are dropped."""
    v = np.array([x for x in values if x is not None and not math.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return None, None
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def summarize(runs: Sequence[dict], keys: Sequence[str] = ("auc", "accuracy")) -> dict:
    """{fraction: {key_mean, key_std, n_seeds}} over the runs (one method)."""
    out: dict[str, dict] = {}
    for f in sorted({r["fraction"] for r in runs}):
        sel = [r for r in runs if r["fraction"] == f]
        entry: dict = {"n_seeds": len(sel)}
        for k in keys:
            entry[f"{k}_mean"], entry[f"{k}_std"] = mean_std(r[k] for r in sel)
        out[fkey(f)] = entry
    return out


def _records(run: Path) -> list[dict]:
    p = run / "metrics.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def _settings(run: Path) -> dict:
    cfg = json.loads((run / "config.json").read_text())
    keep = ("lr", "min_lr", "weight_decay", "warmup_epochs", "layer_decay")
    return {
        "epochs": cfg["epochs"],
        "batch_size": cfg["data"]["batch_size"],
        "model": cfg["model"]["name"],
        "model_kwargs": cfg["model"]["kwargs"],
        "mask_ratio": cfg.get("mask_ratio"),
        **{k: cfg["optim"][k] for k in keep},
    }


def _data(paths: StudyPaths) -> dict:
    counts, generation = {}, {}
    for subset in SUBSETS:
        man = json.loads((paths.data / f"manifest-{subset}.json").read_text())
        counts.update(man["counts"])
        generation[subset] = man["throughput"]
    return {"counts": counts, "generation": generation, "channels": man["channels"], "layout": man["layout"]}


def _pretrain(paths: StudyPaths) -> dict:
    run = paths.run("pretrain")
    recs = _records(run)
    state = load_checkpoint(run / "checkpoints" / "best", build=False).state
    epochs = [
        {
            "epoch": r["epoch"],
            "train_loss": r["train_loss"],
            "val_mse_masked_mean": r["val"]["mse_masked_mean"],
            "val_mse_visible_mean": r["val"]["mse_visible_mean"],
            "jets_per_s": r["jets_per_s"],
            "train_wall_s": r["train_wall_s"],
            "val_wall_s": r["val_wall_s"],
        }
        for r in recs
    ]
    return {
        "records": epochs,
        "best_epoch": state["best_epoch"],
        "best_val_mse_masked": state["best"],
        "jets_per_s": mean_std(r["jets_per_s"] for r in recs)[0],
        "settings": _settings(run),
    }


def _models(plan: StudyPlan, paths: StudyPaths) -> dict:
    mae = load_checkpoint(paths.run("pretrain") / "checkpoints" / "best")
    enc = sum(t.numel() for t in mae.model.encoder_state().values())
    out = {
        "mae": {
            "arch": mae.arch,
            "kwargs": mae.kwargs,
            "params": count_params(mae.model),
            "params_encoder": enc,
            "params_decoder": count_params(mae.model) - enc,
            "model_id": mae.model_id,
        }
    }
    ref, seed = plan.reference_fraction, plan.seeds[0]
    for m in plan.methods:
        ck = load_checkpoint(paths.run(m, ref, seed) / "checkpoints" / "best")
        trainable = ck.model.head if m == "linprobe" else ck.model
        out[m] = {
            "arch": ck.arch,
            "params": count_params(ck.model),
            "params_trained": count_params(trainable),
        }
    return out


def _classification(plan: StudyPlan, paths: StudyPaths) -> dict:
    y_train = read_columns(paths.data, "labelled", "train", ("y",))[:, 0].astype(np.int64)
    runs = []
    for m in plan.methods:
        for f in plan.fractions:
            for seed in plan.seeds:
                run = paths.run(m, f, seed)
                test = json.loads(paths.test_json(m, f, seed).read_text())
                state = load_checkpoint(run / "checkpoints" / "best", build=False).state
                recs = _records(run)
                runs.append(
                    {
                        "method": m,
                        "fraction": f,
                        "seed": seed,
                        "n_train": len(label_subset(y_train, f, seed)),
                        "epochs": len(recs),
                        "best_epoch": state["best_epoch"],
                        "val_auc": state["best"],
                        "auc": test["metrics"]["auc"],
                        "accuracy": test["metrics"]["accuracy"],
                        "log_loss": test["metrics"]["log_loss"],
                        "n_test": test["n_jets"],
                        "jets_per_s": mean_std(r["jets_per_s"] for r in recs)[0],
                        "wall_s": round(sum(r["train_wall_s"] + r["val_wall_s"] for r in recs), 3),
                        "test_wall_s": test["wall_s"],
                    }
                )
    ref = plan.reference_fraction
    return {
        "runs": runs,
        "summary": {m: summarize([r for r in runs if r["method"] == m]) for m in plan.methods},
        "settings": {m: _settings(paths.run(m, ref, plan.seeds[0])) for m in plan.methods},
        "jets_per_s": {
            m: mean_std(r["jets_per_s"] for r in runs if r["method"] == m and r["fraction"] == ref)[0]
            for m in plan.methods
        },
        "test_jets_per_s": mean_std(r["n_test"] / r["test_wall_s"] for r in runs if r["test_wall_s"])[0],
    }


def _reconstruction(path: Path) -> dict:
    ev = json.loads(path.read_text())
    return ev["metrics"] | {"wall_s": ev["wall_s"]}


def _baseline(paths: StudyPaths) -> dict:
    res = json.loads(paths.baseline_json.read_text())
    for kind in FEATURE_SETS:
        res[kind]["summary"] = summarize(res[kind]["runs"])
    return res


def _get(d: dict, *keys):
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def derive(res: dict, plan: StudyPlan) -> dict:
    """Differences between methods per label fraction, and the reconstruction train/test ratios."""
    cls, base = res["classification"]["summary"], res["baseline"]
    gaps: dict[str, dict] = {}
    for f in map(fkey, plan.fractions):
        ft = _get(cls, "finetune", f, "auc_mean")
        gaps[f] = {
            "finetune_minus_scratch": _sub(ft, _get(cls, "scratch", f, "auc_mean")),
            "finetune_minus_linprobe": _sub(ft, _get(cls, "linprobe", f, "auc_mean")),
            "finetune_minus_lr_image": _sub(ft, _get(base, "image", "summary", f, "auc_mean")),
            "finetune_minus_lr_truth": _sub(ft, _get(base, "truth", "summary", f, "auc_mean")),
        }
    rec = res["reconstruction"]
    err = {k: _get(rec, k, "jet_rel_diff", "energy", "mean_abs") for k in rec}
    mse = {k: _get(rec, k, "mse_masked_mean") for k in rec}

    def ratio(v: dict, k: str) -> float | None:
        a, b = v.get(k), v.get("unlabelled/train")
        return None if a is None or not b else a / b

    return {
        "auc_gaps": gaps,
        "energy_error": err,
        "energy_error_ratio": {k: ratio(err, k) for k in rec if k != "unlabelled/train"},
        "mse_masked_ratio": {k: ratio(mse, k) for k in rec if k != "unlabelled/train"},
    }


def targets(res: dict) -> list[dict]:
    gaps, d = res["derived"]["auc_gaps"], res["derived"]
    ratio = d["energy_error_ratio"].get("unlabelled/test")
    rows = [
        ("fine-tuned − scratch AUC at 10% of the labels", _get(gaps, "0.1", "finetune_minus_scratch"),
         ">=", GAIN_AT_10),
        ("fine-tuned − scratch AUC at 100% of the labels (not worse)",
         _get(gaps, "1", "finetune_minus_scratch"), ">=", 0.0),
        ("fine-tuned − substructure LR AUC, image-level features, 100% of the labels",
         _get(gaps, "1", "finetune_minus_lr_image"), ">", 0.0),
        ("fine-tuned − substructure LR AUC, generator-level features, 100% of the labels",
         _get(gaps, "1", "finetune_minus_lr_truth"), ">", 0.0),
        ("|test / train − 1| of the calorimeter energy-sum error (unlabelled)",
         None if ratio is None else abs(ratio - 1.0), "<=", ENERGY_GAP),
    ]  # fmt: skip
    out = []
    for name, value, op, limit in rows:
        if value is None:
            status = "n/a"
        else:
            ok = {">=": value >= limit, ">": value > limit, "<=": value <= limit}[op]
            status = "PASS" if ok else "MISS"
        out.append({"target": name, "measured": value, "op": op, "threshold": limit, "status": status})
    return out


def collect(plan: StudyPlan, paths: StudyPaths) -> dict:
    res = {
        "scale": plan.scale,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "plan": plan.identity() | {"threads": plan.threads},
        "data": _data(paths),
        "models": _models(plan, paths),
        "pretrain": _pretrain(paths),
        "reconstruction": {f"{a}/{b}": _reconstruction(paths.recon_json(a, b)) for a, b in RECON_SPLITS},
        "classification": _classification(plan, paths),
        "baseline": _baseline(paths),
        "shipped": None,
    }
    res["derived"] = derive(res, plan)
    res["targets"] = targets(res)
    return res


def add_steps(res: dict, steps: dict) -> None:
    """Per-step wall times from the ledger, summed per kind of step (dataset, pretrain, finetune, ...)."""
    res["steps"] = steps
    groups: dict[str, dict] = {}
    for name, e in steps.items():
        g = groups.setdefault(name.split("/")[0], {"wall_s": 0.0, "steps": 0})
        g["wall_s"] = round(g["wall_s"] + e["wall_s"], 3)
        g["steps"] += 1
    res["step_groups"] = groups
    res["total_wall_s"] = round(sum(e["wall_s"] for e in steps.values()), 3)
