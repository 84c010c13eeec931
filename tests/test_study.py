"""The study command end to end at --scale tiny (~25 s, in a subprocess), resuming it, and its parts:
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
SPECS = (".4f", ".4g", ".1f", ".2e")  # every number format report.py uses
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
    assert {r["method"] for r in res["classification"]["runs"]} == {"finetune", "scratch", "linprobe"}
    assert len(res["classification"]["runs"]) == 3 * 2  # methods x fractions {0.5, 1} x one seed
    assert res["targets"][0]["status"] == "n/a"  # no 10% fraction at this scale
    assert {t["status"] for t in res["targets"]} <= {"PASS", "MISS", "n/a"}
    assert set(res["reconstruction"]) == {"unlabelled/train", "unlabelled/test", "labelled/test"}
    assert res["total_wall_s"] > 0 and res["step_groups"]["pretrain"]["steps"] == 1


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
    row = f"| fine-tuned MAE | 1 | 16 | 1 | {report.pm(ft['auc_mean'], ft['auc_std'])} |"
    assert row in md
    energy = res["derived"]["energy_error_ratio"]["unlabelled/test"]
    assert f"on unlabelled/test is {report.fmt(energy)} times" in md


def test_test_scores_match_test_metrics(study):
    work = study / "work"
    for run in (work / "finetune" / "f1" / "s0", work / "scratch" / "f0.5" / "s0"):
        scores = np.load(run / "test_scores.npz")
        metrics = json.loads((run / "test.json").read_text())["metrics"]
        assert len(scores["prob"]) == metrics["n_jets"] == 16
        assert roc_auc_score(scores["label"], scores["prob"]) == pytest.approx(metrics["auc"])


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
    for name, step in before["steps"].items():
        if name.startswith(("dataset", "pretrain", "finetune", "scratch", "linprobe", "test", "baseline")):
            assert after["steps"][name]["invocations"] == step["invocations"] == 1, name
    assert after["classification"]["runs"] == before["classification"]["runs"]
    assert after["reconstruction"] == before["reconstruction"]
    assert "[study] python -m e2ecompress.train pretrain" not in proc.stdout


# --- parts ---------------------------------------------------------------------------------------------


def test_ledger_refuses_another_plan(tmp_path):
    Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0]}).run("a", lambda: 1, "cmd")
    again = Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0]})
    assert again.steps["a"]["invocations"] == 1 and again.steps["a"]["command"] == "cmd"
    with pytest.raises(InputError, match="seeds differ"):
        Ledger(tmp_path / "state.json", {"scale": "tiny", "seeds": [0, 1]})


def test_plan_validation():
    kw = dict(scale="x", data=DataPlan(16, (1, 1, 1), (1, 1, 1)), pretrain_epochs=1, pretrain_batch_size=4,
              classifier_batch_size=4, seeds=(0,), configs={c: f"{c}.yaml" for c in
              ("pretrain", "finetune", "scratch", "linprobe")})  # fmt: skip
    plan = StudyPlan(fractions=(0.1, 1.0), classifier_epochs=(3, 2), **kw)
    assert plan.epochs_at(0.1) == 3 and plan.reference_fraction == 1.0
    assert plan.identity()["configs"]["finetune"] == "finetune.yaml" and "threads" not in plan.identity()
    with pytest.raises(InputError, match="one length"):
        StudyPlan(fractions=(0.1, 1.0), classifier_epochs=(3,), **kw)
    with pytest.raises(InputError, match=r"in \(0, 1\]"):
        StudyPlan(fractions=(0.0,), classifier_epochs=(3,), **kw)


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


def test_mean_std_summary_and_targets():
    assert collect.mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # sample std
    assert collect.mean_std([0.5, math.nan]) == (0.5, None) and collect.mean_std([]) == (None, None)
    runs = [{"fraction": f, "auc": a, "accuracy": 0.5} for f, a in ((0.1, 0.6), (0.1, 0.8), (1.0, 0.9))]
    s = collect.summarize(runs)
    assert s["0.1"]["auc_mean"] == pytest.approx(0.7) and s["1"]["n_seeds"] == 1 and s["1"]["auc_std"] is None
    gaps = {
        "0.1": {"finetune_minus_scratch": 0.03},
        "1": {
            "finetune_minus_scratch": -0.01,
            "finetune_minus_lr_image": 0.05,
            "finetune_minus_lr_truth": None,
        },
    }
    derived = {"auc_gaps": gaps, "energy_error_ratio": {"unlabelled/test": 1.02}}
    status = [t["status"] for t in collect.targets({"derived": derived})]
    assert status == ["PASS", "MISS", "PASS", "n/a", "PASS"]
    derived["energy_error_ratio"]["unlabelled/test"] = 0.9
    assert collect.targets({"derived": derived})[-1]["status"] == "MISS"


def test_ship_checkpoint_float16_and_limit(study, tmp_path):
    src = study / "work" / "pretrain" / "checkpoints" / "best"
    run = study / "work" / "pretrain"
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
