"""Training CLI on a tiny generated dataset: every subcommand, resume, evaluation, DDP with torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from e2ecompress.errors import InputError
from e2ecompress.models import load_checkpoint
from e2ecompress.train import config as C
from e2ecompress.train.cli import main
from e2ecompress.train.data import SparseJets, epoch_batches, label_subset
from e2ecompress.train.optim import lr_at, param_groups

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "configs" / "tiny"
QUIET = ["--no-progress"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 jets per shard, labelled (4 quark + 4 gluon) and unlabelled, one shard per split (~5 s)."""
    from e2ecompress.data.dataset import DatasetConfig, make_dataset

    out = tmp_path_factory.mktemp("tiny_dataset")
    cfg = DatasetConfig(sets=("labelled", "unlabelled"), jets_per_shard=8, shards=(1, 1, 1), seed=1)
    make_dataset(cfg, out, workers=1, progress=False)
    return out


@pytest.fixture(scope="module")
def mae_run(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "mae"
    assert main(["pretrain", "--config", str(TINY / "pretrain.yaml"), "--data", str(data), "--out", str(out),
                 *QUIET]) == 0  # fmt: skip
    return out


def _train(command: str, data: Path, out: Path, *extra: str) -> int:
    cfg = TINY / ("finetune.yaml" if command in ("finetune", "linprobe") else f"{command}.yaml")
    return main([command, "--config", str(cfg), "--data", str(data), "--out", str(out), *QUIET, *extra])


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


# --- CLI surface ---------------------------------------------------------------------------------------


def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for cmd in ("pretrain", "finetune", "linprobe", "scratch", "evaluate", "bench-sparse"):
        assert cmd in text
    with pytest.raises(SystemExit):
        main(["finetune", "--help"])
    assert "--label-fraction" in capsys.readouterr().out
    assert main(["--list-models"]) == 0
    assert "mae_vit_tiny_patch8" in capsys.readouterr().out


def test_config_layers_and_errors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 7\noptim: {lr: 0.5, betas: [0.8, 0.9]}\nmodel: {kwargs: {depth: 2}}\n")
    args = C.merge(C.load_file(f), C.parse_override("optim.lr=1e-2"))
    cfg = C.apply_dict(C.default_config("pretrain"), args)
    assert cfg.epochs == 7 and cfg.optim.lr == 0.01 and cfg.optim.betas == (0.8, 0.9)
    assert cfg.model.kwargs == {"depth": 2} and cfg.data.batch_size == 64
    assert C.parse_override("data.max_train_jets=null") == {"data": {"max_train_jets": None}}
    with pytest.raises(InputError, match=r"unknown config key 'optim\.lrr'"):
        C.apply_dict(C.default_config("pretrain"), C.parse_override("optim.lrr=1"))
    with pytest.raises(InputError, match="epochs: expected int"):
        C.apply_dict(C.default_config("pretrain"), {"epochs": "many"})
    with pytest.raises(InputError, match="key=value"):
        C.parse_override("optim.lr")
    assert C.default_config("finetune").optim.layer_decay < 1.0
    assert C.default_config("finetune").optim.lr < C.default_config("scratch").optim.lr


def test_bad_invocations_exit_2(data, tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path / "r"), *QUIET]) == 2
    assert "--data" in capsys.readouterr().err
    assert main(["finetune", "--data", str(data), "--out", str(tmp_path / "r"), *QUIET]) == 2
    assert "--init" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path), "--out", str(tmp_path / "r"), *QUIET]) == 2
    assert "no parquet shards" in capsys.readouterr().err
    assert (
        main(["pretrain", "--data", str(data), "--out", str(tmp_path / "r"), "--set", "nope=1", *QUIET]) == 2
    )
    assert "unknown config key" in capsys.readouterr().err


# --- data and optimizer pieces -------------------------------------------------------------------------


def test_sparse_jets_round_trip(make_images):
    images = make_images(5, 3, occupancy=0.02)
    jets = SparseJets.from_dense(images, {"y": np.arange(5.0)}, ("ECAL", "HCAL", "Tracks"))
    assert np.array_equal(jets.dense(np.arange(5)), images)
    idx = np.array([3, 0, 3])
    assert np.array_equal(jets.dense(idx), images[idx])
    sub = jets.subset(np.array([4, 1]))
    assert np.array_equal(sub.dense(np.arange(2)), images[[4, 1]]) and list(sub.columns["y"]) == [4.0, 1.0]
    norm = jets.fit_normalizer()
    assert np.allclose(jets.normalized(norm).dense(np.arange(5)), norm.normalize(images), atol=1e-6)
    assert len(jets.values) < images.size * 0.05  # stored sparsely


def test_label_subset_balanced_deterministic_nested():
    labels = np.array([0] * 60 + [1] * 40)
    ten = label_subset(labels, 0.1, seed=0)
    assert (labels[ten] == 0).sum() == 6 and (labels[ten] == 1).sum() == 4
    assert np.array_equal(ten, label_subset(labels, 0.1, seed=0))
    assert set(label_subset(labels, 0.05, seed=0)) <= set(ten)
    assert not np.array_equal(ten, label_subset(labels, 0.1, seed=1))
    assert len(label_subset(labels, 1.0, seed=3)) == 100
    assert (labels[label_subset(labels, 0.001, seed=0)] == 1).any()  # every class keeps at least one jet


def test_epoch_batches_shard_by_rank():
    one = np.concatenate(epoch_batches(10, 4, seed=0, epoch=0))
    assert sorted(one) == list(range(10))
    assert np.array_equal(one, np.concatenate(epoch_batches(10, 4, seed=0, epoch=0)))
    assert not np.array_equal(one, np.concatenate(epoch_batches(10, 4, seed=0, epoch=1)))
    ranks = [epoch_batches(10, 2, seed=0, epoch=0, rank=r, world_size=2) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1])
    assert set(np.concatenate(ranks[0])).isdisjoint(np.concatenate(ranks[1]))


def test_layer_decay_groups_and_schedule():
    from e2ecompress.models import create_model

    v = create_model("vit_tiny_patch8", in_chans=3, embed_dim=32, depth=2, num_heads=2)
    groups = param_groups(v, weight_decay=0.05, layer_decay=0.5)
    scale = {n: g["lr_scale"] for g in groups for n in g["names"]}
    decay = {n: g["weight_decay"] for g in groups for n in g["names"]}
    assert scale["head.weight"] == 1.0 and scale["blocks.1.attn.qkv.weight"] == 0.5
    assert scale["blocks.0.attn.qkv.weight"] == 0.25 and scale["patch_embed.proj.weight"] == 0.125
    assert decay["blocks.0.attn.qkv.weight"] == 0.05 and decay["blocks.0.norm1.weight"] == 0.0
    assert decay["cls_token"] == 0.0 and decay["head.bias"] == 0.0
    mae = create_model("mae_vit_tiny_patch8", in_chans=3, embed_dim=32, depth=1, num_heads=2)
    with pytest.raises(InputError, match="layer decay needs a ViT classifier"):
        param_groups(mae, weight_decay=0.05, layer_decay=0.5)
    opt = C.OptimConfig(lr=1.0, min_lr=0.0, warmup_epochs=2)
    assert lr_at(0, opt, 10) == 0 and lr_at(1, opt, 10) == 0.5 and lr_at(2, opt, 10) == 1.0
    assert lr_at(6, opt, 10) == pytest.approx(0.5) and lr_at(10, opt, 10) == pytest.approx(0.0)


# --- subcommands ---------------------------------------------------------------------------------------


def test_pretrain_writes_run_dir(mae_run):
    cfg = json.loads((mae_run / "config.json").read_text())
    assert cfg["command"] == "pretrain" and cfg["epochs"] == 2 and cfg["model"]["kwargs"]["embed_dim"] == 32
    recs = _records(mae_run)
    assert [r["epoch"] for r in recs] == [1, 2] and [r["step"] for r in recs] == [2, 4]
    for r in recs:
        assert r["train_loss"] > 0 and r["jets_per_s"] > 0
        assert set(r["val"]["mse_masked"]) == {"ECAL", "HCAL", "Tracks"}
        assert {"energy_sum_rel_diff", "jet_rel_diff", "mse_visible"} <= set(r["val"])
    log = (mae_run / "train.log").read_text()
    assert "epoch 2/2" in log and "jets/s" in log
    ck = load_checkpoint(mae_run / "checkpoints" / "last")
    assert ck.state["epoch"] == 2 and ck.state["step"] == 4 and ck.normalizer is not None
    assert ck.channels == ["ECAL", "HCAL", "Tracks"] and ck.extra["config"]["command"] == "pretrain"
    assert (mae_run / "checkpoints" / "best" / "model.safetensors").is_file()


def test_finetune_linprobe_scratch(data, mae_run, tmp_path):
    init = str(mae_run / "checkpoints" / "best")
    mae = load_checkpoint(init)
    for cmd in ("finetune", "linprobe", "scratch"):
        assert _train(cmd, data, tmp_path / cmd, "--init", init) == 0, cmd
        recs = _records(tmp_path / cmd)
        assert len(recs) == 2 and all(0 <= r["val"]["auc"] <= 1 and r["val"]["n_jets"] == 8 for r in recs)
        best = load_checkpoint(tmp_path / cmd / "checkpoints" / "best")
        assert best.arch == "vit_tiny_patch8" and best.normalizer == mae.normalizer
        assert best.state["best"] == max(r["val"]["auc"] for r in recs)
        enc = {k: v for k, v in best.model.state_dict().items() if k.startswith("blocks.")}
        same = all(torch.equal(v, mae.model.state_dict()[k]) for k, v in enc.items())
        assert same == (cmd == "linprobe"), cmd  # frozen only in the probe; scratch has its own weights
    probe = load_checkpoint(tmp_path / "linprobe" / "checkpoints" / "last").model
    assert isinstance(probe.head[0], torch.nn.BatchNorm1d)
    # scratch without --init, on half of the labels
    assert _train("scratch", data, tmp_path / "s2", "--label-fraction", "0.5") == 0
    assert "4 training jets" in (tmp_path / "s2" / "train.log").read_text()


def test_evaluate_classifier_and_reconstruction(data, mae_run, tmp_path, capsys):
    init = str(mae_run / "checkpoints" / "best")
    assert _train("finetune", data, tmp_path / "ft", "--init", init) == 0
    out = tmp_path / "test.json"
    ckpt = str(tmp_path / "ft" / "checkpoints" / "best")
    assert main(["evaluate", "--checkpoint", ckpt, "--data", str(data), "--split", "test", "--out", str(out),
                 *QUIET]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert res["kind"] == "classification" and res["subset"] == "labelled" and res["n_jets"] == 8
    assert 0 <= res["metrics"]["auc"] <= 1 and 0 <= res["metrics"]["accuracy"] <= 1
    assert res["model_id"] == load_checkpoint(ckpt).model_id
    capsys.readouterr()
    for subset, split in (("unlabelled", "train"), ("labelled", "test")):
        argv = ["evaluate", "--checkpoint", init, "--data", str(data), "--subset", subset, "--split", split]
        assert main([*argv, *QUIET]) == 0
        m = json.loads(capsys.readouterr().out)
        assert m["n_jets"] == 8 and m["mse_masked_mean"] > 0 and m["clipped_at_zero"]
        assert set(m["energy_sum_rel_diff"]) == {"ECAL", "HCAL", "Tracks"}
        assert set(m["jet_rel_diff"]) == {"energy", "pt", "mass"}
    assert (
        main(["evaluate", "--checkpoint", ckpt, "--data", str(data), "--subset", "unlabelled", *QUIET]) == 2
    )
    assert "no labels" in capsys.readouterr().err


def test_resume_continues_exactly(data, tmp_path):
    extra = ["--epochs", "2", "--set", "model.kwargs.drop_path_rate=0.1"]
    assert _train("pretrain", data, tmp_path / "a", *extra) == 0
    assert _train("pretrain", data, tmp_path / "b", *extra, "--stop-after-epochs", "1") == 0
    assert load_checkpoint(tmp_path / "b" / "checkpoints" / "last").state["step"] == 2
    assert _train("pretrain", data, tmp_path / "b", *extra) == 2  # a run is there: --resume or another --out
    assert _train("pretrain", data, tmp_path / "b", *extra, "--resume") == 0
    a, b = (load_checkpoint(tmp_path / r / "checkpoints" / "last", with_optimizer=True) for r in "ab")
    assert b.state["epoch"] == 2 and b.state["step"] == 4
    assert a.model_id == b.model_id  # bitwise the same weights as the uninterrupted run
    assert [r["epoch"] for r in _records(tmp_path / "b")] == [1, 2]
    assert [r["train_loss"] for r in _records(tmp_path / "a")] == [
        r["train_loss"] for r in _records(tmp_path / "b")
    ]
    assert "resuming from" in (tmp_path / "b" / "train.log").read_text()


def test_finetune_refuses_other_channels(data, tmp_path, capsys):
    from e2ecompress.models import Normalizer, create_model, save_checkpoint

    mae8 = create_model("mae_vit_tiny_patch8", in_chans=8, embed_dim=32, depth=1, num_heads=2,
                        decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)  # fmt: skip
    save_checkpoint(tmp_path / "mae8", mae8, normalizer=Normalizer([1.0] * 8, [1.0] * 8))
    assert _train("finetune", data, tmp_path / "ft", "--init", str(tmp_path / "mae8")) == 2
    assert "data has 3 channels" in capsys.readouterr().err


def test_bench_sparse(data, tmp_path):
    out = tmp_path / "bench.json"
    assert main(["bench-sparse", "--config", str(TINY / "bench-sparse.yaml"), "--data", str(data), "--out",
                 str(out), *QUIET]) == 0  # fmt: skip
    res = json.loads(out.read_text())
    assert set(res["modes"]) == {"dense", "sparse"}
    d, s = res["modes"]["dense"], res["modes"]["sparse"]
    assert s["mean_visible_tokens"] < d["mean_visible_tokens"] == res["dense_visible"]
    assert d["jets_per_s"] > 0 and s["val_dense_masks"]["mse_masked"] > 0


def test_torchrun_two_processes_gloo(data, tmp_path):
    out = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    train = [
        "-m",
        "e2ecompress.train",
        "pretrain",
        "--config",
        str(TINY / "pretrain.yaml"),
        "--data",
        str(data),
    ]
    cmd = [*launcher, *train, "--out", str(out), "--batch-size", "2", *QUIET]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert sorted(s["rank"] for s in summaries) == [0, 1]
    assert all(s["world_size"] == 2 and s["step"] == 4 for s in summaries)  # 8 jets / 2 ranks / batch 2
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    ck = load_checkpoint(out / "checkpoints" / "last")
    assert ck.state["world_size"] == 2 and ck.state["epoch"] == 2
    assert [r["epoch"] for r in _records(out)] == [1, 2]  # rank 0 alone writes
