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

# published figures the report compares with (other data and protocols; see the report's comparison)
PUBLISHED = {
    "public_qg": {"pretrained_accuracy": 0.855, "scratch_accuracy": [0.695, 0.715]},
    "top_mae_2024": {"probe_auc": 0.975, "finetune_auc": 0.983},
}


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


def _pretrain(paths: StudyPaths, seed: int) -> dict:
    run = paths.run("pretrain", seed=seed)
    recs = _records(run)
    state = load_checkpoint(run / "checkpoints" / "best", build=False).state
    epochs = [
        {
            "epoch": r["epoch"],
            "train_loss": r["train_loss"],
            "val_loss": r["val"]["loss"],
            "val_loss_occupancy": r["val"]["loss_occupancy"],
            "val_loss_value": r["val"]["loss_value"],
            "val_mse_occupied": r["val"].get("mse_occupied"),
            "val_mse_zero": r["val"].get("mse_zero"),
            "jets_per_s": r["jets_per_s"],
            "train_wall_s": r["train_wall_s"],
            "val_wall_s": r["val_wall_s"],
        }
        for r in recs
    ]
    last_change = None
    if len(epochs) >= 2:  # relative fall of the validation loss over the last epoch
        a, b = epochs[-2]["val_loss"], epochs[-1]["val_loss"]
        last_change = (a - b) / abs(a) if a else None
    return {
        "records": epochs,
        "val_loss_last_fall": last_change,
        "best_epoch": state["best_epoch"],
        "best_val_loss": state["best"],
        "jets_per_s": mean_std(r["jets_per_s"] for r in recs)[0],
        "epoch_wall_s": mean_std(r["train_wall_s"] for r in recs)[0],
        "settings": _settings(run),
    }


def _models(plan: StudyPlan, paths: StudyPaths, finals: dict) -> dict:
    mae = load_checkpoint(paths.run("pretrain", seed=plan.pretrain_seeds[0]) / "checkpoints" / "best")
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
        ck = load_checkpoint(finals[(m, ref, seed)] / "checkpoints" / "best")
        trainable = ck.model.head if m == "linprobe" else ck.model
        out[m] = {
            "arch": ck.arch,
            "params": count_params(ck.model),
            "params_trained": count_params(trainable),
        }
    return out


def _classification(plan: StudyPlan, paths: StudyPaths, finals: dict) -> dict:
    y_train = read_columns(paths.data, "labelled", "train", ("y",))[:, 0].astype(np.int64)
    runs = []
    for (m, f, seed), run in finals.items():
        test = json.loads((run / "test.json").read_text())
        state = load_checkpoint(run / "checkpoints" / "best", build=False).state
        recs = _records(run)
        last = recs[-1] if recs else {}
        runs.append(
            {
                "method": m,
                "fraction": f,
                "seed": seed,
                "pretrain_seed": plan.pretrain_seed_for(seed),
                "n_train": len(label_subset(y_train, f, seed)),
                "epochs": len(recs),
                "steps": last.get("step"),
                "best_epoch": state["best_epoch"],
                "val_auc": state["best"],
                "auc": test["metrics"]["auc"],
                "accuracy": test["metrics"]["accuracy"],
                "log_loss": test["metrics"]["log_loss"],
                "n_test": test["n_jets"],
                "jets_per_s": mean_std(r["jets_per_s"] for r in recs)[0],
                "wall_s": round(sum(r["train_wall_s"] + r.get("val_wall_s", 0.0) for r in recs), 3),
                "test_wall_s": test["wall_s"],
            }
        )
    ref = plan.reference_fraction
    return {
        "runs": runs,
        "summary": {m: summarize([r for r in runs if r["method"] == m]) for m in plan.methods},
        "settings": {m: _settings(finals[(m, ref, plan.seeds[0])]) for m in plan.methods},
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


def auc_fast(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC by ranks (ties share their mean rank)."""
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def paired_bootstrap(
    y: np.ndarray, a: Sequence[np.ndarray], b: Sequence[np.ndarray], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Mean over seeds of AUC(a_k) - AUC(b_k) on the test set, and its 95 % bootstrap interval.

    a[k], b[k]: test scores of seed k of the two methods (paired: same labelled subset, same jets).
    Each replicate resamples the test jets and the seeds (with replacement), so the interval holds
    both the test-set and the training-seed spread.
    """
    rng = np.random.default_rng(seed)
    k = len(a)
    point = float(np.mean([auc_fast(y, a[i]) - auc_fast(y, b[i]) for i in range(k)]))
    reps = np.empty(n_boot)
    for r in range(n_boot):
        idx = rng.integers(0, len(y), len(y))
        ks = rng.integers(0, k, k)
        yy = y[idx]
        reps[r] = np.mean([auc_fast(yy, a[i][idx]) - auc_fast(yy, b[i][idx]) for i in ks])
    lo, hi = np.nanpercentile(reps, [2.5, 97.5])
    return {"diff": point, "ci_low": float(lo), "ci_high": float(hi), "n_seeds": k, "n_boot": n_boot,
            "excludes_zero": bool(lo > 0 or hi < 0)}  # fmt: skip


def differences(plan: StudyPlan, paths: StudyPaths, finals: dict, n_boot: int = 1000) -> dict:
    """Paired bootstrap of fine-tuned minus each other method, per label fraction."""
    base = np.load(paths.baseline_json.with_suffix(".npz"))
    y = base["label"].astype(np.int64)
    out: dict = {}
    for f in plan.fractions:
        scores: dict[str, list[np.ndarray]] = {}
        for m in plan.methods:
            scores[m] = []
            for seed in plan.seeds:
                npz = np.load(finals[(m, f, seed)] / "test_scores.npz")
                if not np.array_equal(npz["label"], y):
                    raise ValueError("test scores and baseline labels are not the same jets")
                scores[m].append(npz["prob"])
        for kind in FEATURE_SETS:
            scores[f"lr_{kind}"] = [base[f"prob_{kind}_f{f:g}_s{seed}"] for seed in plan.seeds]
        if "finetune" not in scores:
            continue
        out[fkey(f)] = {
            other: paired_bootstrap(y, scores["finetune"], scores[other], n_boot)
            for other in scores
            if other != "finetune"
        }
    return out


def _recon_targets(rec: dict) -> list[tuple]:
    """Reconstruction targets on unlabelled/test of the first pretraining seed."""
    r = rec.get("unlabelled/test", {})
    rows = []
    for c in ("ECAL", "HCAL", "Tracks"):
        ratio = _get(r, "mse_ratio_to_zero", c)
        if ratio is not None:
            rows.append((f"{c}: masked occupied-patch MSE / zero prediction", ratio, "<=", 0.5))
    for c in ("ECAL", "HCAL"):
        for kind, label in (("hard", "hard image"), ("soft", "expected energy")):
            resp = _get(r, "masked_energy", c, f"response_{kind}")
            if resp is not None:
                rows.append(
                    (
                        f"{c}: masked-region energy response − 1 (absolute), {label}",
                        abs(resp - 1.0),
                        "<=",
                        0.10,
                    )
                )
        rec_ = _get(r, "occupancy", c, "recall")
        if rec_ is not None:
            rows.append((f"{c}: occupancy recall in masked regions", rec_, ">=", 0.5))
    return rows


def targets(res: dict) -> list[dict]:
    d = res["differences"]
    rows = _recon_targets(res["reconstruction"].get(f"s{res['plan']['pretrain_seeds'][0]}", {}))

    def ci(f, other):
        return _get(d, f, other, "ci_low")

    rows += [
        ("fine-tuned − substructure LR (image features) AUC at 100% labels: CI lower end",
         ci("1", "lr_image"), ">", 0.0),
        ("fine-tuned − scratch AUC at 10% labels: CI lower end", ci("0.1", "scratch"), ">", 0.0),
        ("shipped classifier (fine-tuned, 100% labels) test AUC",
         _get(res, "classification", "summary", "finetune", "1", "auc_mean"), ">=", 0.80),
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


def collect(plan: StudyPlan, paths: StudyPaths, chosen: dict, finals: dict) -> dict:
    res = {
        "scale": plan.scale,
        "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "plan": plan.identity() | {"threads": plan.threads, "workers": plan.workers},
        "data": _data(paths),
        "models": _models(plan, paths, finals),
        "pretrain": {f"s{ps}": _pretrain(paths, ps) for ps in plan.pretrain_seeds},
        "reconstruction": {
            f"s{ps}": {f"{a}/{b}": _reconstruction(paths.recon_json(a, b, ps)) for a, b in RECON_SPLITS}
            for ps in plan.pretrain_seeds
        },
        "grid": chosen,
        "classification": _classification(plan, paths, finals),
        "baseline": _baseline(paths),
        "shipped": None,
        "published": PUBLISHED,
    }
    res["differences"] = differences(plan, paths, finals, 1000 if plan.scale == "full" else 50)
    res["targets"] = targets(res)
    return res


def add_steps(res: dict, steps: dict, invocations: list[dict]) -> None:
    """Per-step wall times from the ledger, summed per kind of step (dataset, pretrain, finetune, ...).

    Steps named "*/all" time a whole phase (its jobs run in parallel), the others one job each."""
    res["steps"] = steps
    res["invocations"] = invocations
    groups: dict[str, dict] = {}
    for name, e in steps.items():
        if name.endswith("/all"):
            continue
        g = groups.setdefault(name.split("/")[0], {"wall_s": 0.0, "steps": 0})
        g["wall_s"] = round(g["wall_s"] + e["wall_s"], 3)
        g["steps"] += 1
    res["step_groups"] = groups
    res["phases"] = {k.removesuffix("/all"): e["wall_s"] for k, e in steps.items() if k.endswith("/all")}
    res["total_wall_s"] = round(
        sum(e["wall_s"] for k, e in steps.items() if k.endswith("/all") or k.split("/")[0] not in
            {"pretrain", "grid", "finetune", "scratch", "linprobe"}), 3)  # fmt: skip
