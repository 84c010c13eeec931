"""The study command end to end at --scale tiny (~80 s, in a subprocess), resuming it, and its parts:
baseline, tables, targets, shipping."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from e2ecompress.errors import E2EError, InputError
from e2ecompress.models import load_checkpoint
from e2ecompress.study import baseline, collect, report
from e2ecompress.study.pipeline import Ledger
from e2ecompress.study.plan import DataPlan, StudyPlan
from e2ecompress.study.ship import ship_checkpoint

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "tools" / "reproduce_study.py"
PNGS = ("study_loss.png", "study_reconstruction.png", "study_roc.png", "study_auc_vs_fraction.png")
SPECS = (".4f", ".4g", ".1f", ".2e", "+.4f")  # every number format report.py uses
NUMBER = re.compile(r"-?\d+\.\d+(?:e[-+]\d+)?")


def _run_tiny(root: Path) -> subprocess.CompletedProcess:
    """The study command, shipping into root/shipped instead of the package."""
    argv = [sys.executable, str(SCRIPT), "--scale", "tiny", "--no-progress"]
    argv += ["--ship", "--ship-dir", str(root / "shipped")]
    argv += [f"--{k}={root / d}" for k, d in (("data", "data"), ("workdir", "work"), ("out", "out"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("study")
    proc = _run_tiny(root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


def _numbers(obj):
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return
    if isinstance(obj, int | float):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)


def test_tiny_study_writes_report_json_and_pngs(study):
    out = study / "out"
    for name in PNGS:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
    res = json.loads((out / "study.json").read_text())
    md = (out / "study.md").read_text()
    assert res["scale"] == "tiny" and res["command"].startswith("python tools/reproduce_study.py")
    for name in PNGS:
        assert f"]({name})" in md
    assert res["data"]["counts"]["unlabelled/train"] == 16
    runs = res["classification"]["runs"]
    assert {r["method"] for r in runs} == {"finetune", "scratch", "linprobe"}
    assert len(runs) == 3 * 2 * 2  # methods x fractions {0.5, 1} x seeds {0, 1}
    assert {(r["seed"], r["pretrain_seed"]) for r in runs} == {(0, 0), (1, 1)}
    # the same step budget for every fraction; seed 0 of a grid-searched method is the chosen grid run
    assert {r["steps"] for r in runs if r["method"] != "linprobe"} <= {2, 4}
    for m in ("finetune", "scratch"):
        for f in ("0.5", "1"):
            g = res["grid"][m][f]
            assert len(g["grid"]) == 2 and g["chosen"]["val_auc"] == max(p["val_auc"] for p in g["grid"])
    by_name = {t["target"]: t for t in res["targets"]}
    assert by_name["fine-tuned − scratch AUC at 10% labels: CI lower end"]["status"] == "n/a"
    assert {t["status"] for t in res["targets"]} <= {"PASS", "MISS", "n/a"}
    assert set(res["reconstruction"]) == {"s0", "s1"}
    for rec in res["reconstruction"].values():
        assert set(rec) == {"unlabelled/train", "unlabelled/test", "labelled/test"}
        r = rec["unlabelled/test"]
        assert set(r["mse_ratio_to_zero"]) == {"ECAL", "HCAL", "Tracks"} and r["n_jets"] == 16
    for f, d in res["differences"].items():
        assert set(d) == {"scratch", "linprobe", "lr_image", "lr_truth"}, f
        assert all(e["ci_low"] <= e["diff"] <= e["ci_high"] for e in d.values())
    assert res["step_groups"]["pretrain"]["steps"] == 2 and len(res["invocations"]) == 1
    assert res["invocations"][0]["wall_s"] > 0


def test_every_number_in_the_report_comes_from_the_json(study):
    res = json.loads((study / "out" / "study.json").read_text())
    md = (study / "out" / "study.md").read_text()
    allowed = {format(float(x), s) for x in _numbers(res) for s in SPECS}
    tokens = NUMBER.findall(md)
    assert len(tokens) > 50
    assert [t for t in tokens if t not in allowed] == []
    for t in res["targets"]:
        assert f"| {t['target'].replace('|', chr(92) + '|')} | {report.fmt(t['measured'])} |" in md
    ft = res["classification"]["summary"]["finetune"]["1"]
    row = next(line for line in md.splitlines() if line.startswith("| fine-tuned MAE | 100 % | 16 |"))
    assert report.pm(ft["auc_mean"], ft["auc_std"]) in row
    d = res["differences"]["1"]["scratch"]
    assert f"[{report.fmt(d['ci_low'], '+.4f')}, {report.fmt(d['ci_high'], '+.4f')}]" in md


def test_test_scores_match_test_metrics(study):
    work = study / "work"
    runs = [
        work / "finetune" / "f1" / "s1",
        work / "scratch" / "f0.5" / "s1",
        work / "linprobe" / "f1" / "s0",
    ]
    runs += list((work / "grid" / "finetune" / "f1").glob("*/"))
    for run in runs:
        if not (run / "test.json").is_file():  # grid points that were not chosen are never tested
            continue
        scores = np.load(run / "test_scores.npz")
        metrics = json.loads((run / "test.json").read_text())["metrics"]
        assert len(scores["prob"]) == metrics["n_jets"] == 16
        assert roc_auc_score(scores["label"], scores["prob"]) == pytest.approx(metrics["auc"])
    tested = [p for p in (work / "grid" / "finetune" / "f1").glob("*/") if (p / "test.json").is_file()]
    assert len(tested) == 1  # only the chosen grid point sees the test set


def test_shipped_models(study):
    res = json.loads((study / "out" / "study.json").read_text())
    s = res["shipped"]
    for kind, name in (("mae", "mae_qg3_default"), ("classifier", "qg_classifier_default")):
        d = study / "shipped" / name
        assert sorted(p.name for p in d.iterdir()) == [
            "README.md", "checkpoint.json", "config.json", "metrics.jsonl", "model.safetensors", "train.log"
        ]  # fmt: skip
        ck = load_checkpoint(d)
        assert ck.model_id == s[kind]["model_id"] and ck.normalizer is not None
        assert s[kind]["bytes"] <= s["limit_bytes"] and s[kind]["dtype"] == "float32"  # tiny: fits
        readme = (d / "README.md").read_text()
        assert "python -m e2ecompress.train pretrain" in readme and res["command"] in readme
    assert (
        "python -m e2ecompress.train finetune"
        in (study / "shipped" / "qg_classifier_default" / "README.md").read_text()
    )
    assert s["classifier"]["test"]["auc"] == pytest.approx(s["classifier"]["float32_test"]["auc"])


def test_rerun_skips_finished_steps(study):
    before = json.loads((study / "out" / "study.json").read_text())
    proc = _run_tiny(study)
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((study / "out" / "study.json").read_text())
    kinds = ("dataset", "pretrain", "grid", "finetune", "scratch", "linprobe", "test", "baseline")
    for name, step in before["steps"].items():
        if name.startswith(kinds) and not name.endswith("/all"):
            assert after["steps"][name]["invocations"] == step["invocations"] == 1, name
    assert after["classification"]["runs"] == before["classification"]["runs"]
    assert after["reconstruction"] == before["reconstruction"]
    assert "[study] python -m e2ecompress.train pretrain" not in proc.stdout
    assert len(after["invocations"]) == 2 and after["invocations"][0] == before["invocations"][0]


# --- parts ---------------------------------------------------------------------------------------------


def test_ledger_refuses_another_plan(tmp_path):
    Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0]}).run("a", lambda: 1, "cmd")
    again = Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0]})
    assert again.steps["a"]["invocations"] == 1 and again.steps["a"]["command"] == "cmd"
    assert len(again.invocations) == 2  # every invocation is kept, with its own wall time
    with pytest.raises(InputError, match="seeds differ"):
        Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0, 1]})


def test_plan_validation():
    kw = dict(scale="x", data=DataPlan(16, (1, 1, 1), (1, 1, 1)), pretrain_epochs=1, pretrain_batch_size=4,
              classifier_batch_size=4, classifier_epochs=3, steps_per_epoch=5, configs={c: f"{c}.yaml"
              for c in ("pretrain", "finetune", "scratch", "linprobe")})  # fmt: skip
    plan = StudyPlan(fractions=(0.1, 1.0), seeds=(3, 4, 5), pretrain_seeds=(0, 1), **kw)
    assert plan.classifier_steps == 15 and plan.reference_fraction == 1.0
    assert [plan.pretrain_seed_for(s) for s in (3, 4, 5)] == [0, 1, 0]
    assert plan.identity()["configs"]["finetune"] == "finetune.yaml" and "threads" not in plan.identity()
    with pytest.raises(InputError, match=r"in \(0, 1\]"):
        StudyPlan(fractions=(0.0,), seeds=(0,), **kw)
    with pytest.raises(InputError, match="no learning-rate grid for scratch"):
        StudyPlan(fractions=(1.0,), seeds=(0,), grid={"finetune": ((1e-3, 0.75),)}, **kw)
    with pytest.raises(InputError, match="at least one seed"):
        StudyPlan(fractions=(1.0,), seeds=(), **kw)


def test_baseline_fit_select(rng):
    y = np.repeat([0, 1], 100)
    X = np.column_stack([y + rng.normal(0, 0.7, 200), rng.normal(0, 1, 200)])
    pipe, info = baseline.fit_select(X[::2], y[::2], X[1::2], y[1::2])
    assert info["C"] in baseline.C_GRID and info["val_auc"] > 0.8 and info["converged"]
    assert pipe.predict_proba(X).shape == (200, 2)
    with pytest.raises(ValueError, match="one class"):
        baseline.fit_select(X[:10], np.zeros(10), X, y)
    with pytest.raises(ValueError, match="empty grid"):
        baseline.fit_select(X, y, X, y, grid=())


def test_baseline_features_follow_training_order(study):
    data = study / "data"
    cols = baseline.read_columns(data, "labelled", "train", ("y", *baseline.TRUTH_FEATURES))
    assert cols.shape == (16, 5) and set(np.unique(cols[:, 0])) == {0.0, 1.0}
    names, X, y = baseline.image_features(data, "train", batch_size=5)
    assert {"girth", "ptd", "mass", "n_calo", "n_tracks"} <= set(names) and X.shape == (16, len(names))
    assert np.array_equal(y, cols[:, 0].astype(np.int64)) and np.isfinite(X).all()


def test_fmt_pm_and_table():
    assert report.fmt(None) == report.fmt(math.nan) == report.fmt(math.inf) == "–"
    assert report.fmt(3) == "3" and report.fmt(True) == "True" and report.fmt(0.123456) == "0.1235"
    assert report.fmt(1e-3, ".2e") == "1.00e-03"
    assert report.pm(0.5, None) == "0.5000" and report.pm(0.5, 0.01) == "0.5000 ± 0.0100"
    t = report.table(["a", "b|c"], [["x|y", 1], ["z\nw", "2"]])
    assert t.splitlines() == ["| a | b\\|c |", "|:---|---:|", "| x\\|y | 1 |", "| z w | 2 |"]
    assert report.table(["a", "b"], [], "cc").splitlines()[1] == "|:---:|:---:|"
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        report.table(["a", "b"], [["x"]])
    with pytest.raises(ValueError, match="align"):
        report.table(["a", "b"], [], "lx")


def test_mean_std_and_summary():
    assert collect.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std
    assert collect.mean_std([0.5, math.nan]) == (0.5, None) and collect.mean_std([]) == (None, None)
    runs = [{"fraction": f, "auc": a, "accuracy": 0.5} for f, a in ((0.1, 0.6), (0.1, 0.8), (1.0, 0.9))]
    s = collect.summarize(runs)
    assert s["0.1"]["auc_mean"] == pytest.approx(0.7) and s["1"]["n_seeds"] == 1 and s["1"]["auc_std"] is None


def test_auc_fast_matches_sklearn(rng):
    y = rng.integers(0, 2, 500)
    s = np.round(y * 0.3 + rng.normal(0, 1, 500), 1)  # rounded: many ties
    assert collect.auc_fast(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert math.isnan(collect.auc_fast(np.ones(5), s[:5]))


def test_paired_bootstrap(rng):
    y = np.repeat([0, 1], 300)
    good = [y + rng.normal(0, 0.8, 600) for _ in range(5)]
    bad = [y + rng.normal(0, 3.0, 600) for _ in range(5)]
    d = collect.paired_bootstrap(y, good, bad, n_boot=200)
    assert d["diff"] > 0.1 and d["excludes_zero"] and d["ci_low"] > 0 and d["n_seeds"] == 5
    same = collect.paired_bootstrap(y, good, good, n_boot=50)
    assert same["diff"] == same["ci_low"] == same["ci_high"] == 0.0 and not same["excludes_zero"]
    noisy = collect.paired_bootstrap(y, good, [g + rng.normal(0, 0.05, 600) for g in good], n_boot=200)
    assert noisy["ci_low"] < 0 < noisy["ci_high"] and not noisy["excludes_zero"]


def test_targets():
    rec = {
        "mse_ratio_to_zero": {"ECAL": 0.4, "HCAL": 0.6, "Tracks": 0.5},
        "masked_energy": {
            "ECAL": {"response_hard": 0.95, "response_soft": 1.2},
            "HCAL": {"response_hard": 0.8, "response_soft": 0.93},
        },
        "occupancy": {"ECAL": {"recall": 0.5}, "HCAL": {"recall": 0.2}},
    }
    res = {
        "plan": {"pretrain_seeds": [7]},
        "reconstruction": {"s7": {"unlabelled/test": rec}},
        "differences": {"1": {"lr_image": {"ci_low": 0.01}}, "0.1": {"scratch": {"ci_low": -0.002}}},
        "classification": {"summary": {"finetune": {"1": {"auc_mean": 0.81}}}},
    }
    got = [t["status"] for t in collect.targets(res)]
    # MSE ratios; ECAL response hard, soft, recall; HCAL the same; the three classifier goals
    assert got == [
        "PASS",
        "MISS",
        "PASS",
        "PASS",
        "MISS",
        "PASS",
        "MISS",
        "PASS",
        "MISS",
        "PASS",
        "MISS",
        "PASS",
    ]
    res["differences"] = {}
    assert [t["status"] for t in collect.targets(res)][-3:] == ["n/a", "n/a", "PASS"]


def test_ship_checkpoint_float16_and_limit(study, tmp_path):
    src = study / "work" / "pretrain" / "s0" / "checkpoints" / "best"
    run = study / "work" / "pretrain" / "s0"
    info = ship_checkpoint(src, tmp_path / "m16", run_dir=run, readme=lambda i: i["dtype"], limit_bytes=10**6,
                           dtype="float16")  # fmt: skip
    assert (tmp_path / "m16" / "README.md").read_text() == "float16" and info["dtype"] == "float16"
    a, b = load_checkpoint(src), load_checkpoint(tmp_path / "m16")
    assert b.normalizer == a.normalizer and info["source_model_id"] == a.model_id != b.model_id
    for k, v in a.model.state_dict().items():
        assert b.model.state_dict()[k].dtype == v.dtype  # loaded back into float32
        assert np.allclose(b.model.state_dict()[k].numpy(), v.numpy(), rtol=1e-3, atol=1e-4), k
    assert 0 < info["max_abs_weight_change"] < 1e-2
    with pytest.raises(E2EError, match="over the limit"):
        ship_checkpoint(src, tmp_path / "big", run_dir=run, readme=str, limit_bytes=1000)
    assert not (tmp_path / "big").exists() and not any(p.name.startswith(".big") for p in tmp_path.iterdir())
