"""Ship the study's models inside the package (`e2ecompress/models/pretrained/<name>/`), loadable by name.

Each shipped directory is a checkpoint (model.safetensors + checkpoint.json, weights in float32, or in
float16 when float32 would not fit the size limit; `load_model` loads either into a float32 model) plus
the training run's config.json, train.log and metrics.jsonl and a README.md with the commands that made
it. It is assembled in a temporary sibling, checked (size, loads, weights match the source) and then
swapped in.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from e2ecompress.errors import E2EError
from e2ecompress.models import load_checkpoint, load_model, save_checkpoint
from e2ecompress.models.checkpoint import PRETRAINED_DIR

RUN_FILES = ("config.json", "train.log", "metrics.jsonl")
DTYPES = {"float32": torch.float32, "float16": torch.float16}


def dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def ship_checkpoint(
    src: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    run_dir: str | os.PathLike,
    readme: Callable[[dict], str],
    limit_bytes: int,
    dtype: str = "auto",
) -> dict:
    """Copy checkpoint `src` (and the run's logs) to the directory `dest`; returns what was shipped.

    readme: gets {"dtype", "source_model_id"} and returns the text of dest/README.md.

    dtype: float32, float16, or auto (float16 when the float32 weights take over 80% of the limit).
    Raises E2EError when the directory would exceed `limit_bytes`.
    """
    ck = load_checkpoint(src)
    source = {k: v.detach().clone() for k, v in ck.model.state_dict().items()}
    if dtype == "auto":
        size32 = sum(v.numel() * 4 for v in source.values() if v.is_floating_point())
        dtype = "float32" if size32 <= 0.8 * limit_bytes else "float16"
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be auto, float32 or float16, got {dtype!r}")
    model = ck.model.to(DTYPES[dtype])
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    extra = {**ck.extra, "shipped": {"dtype": dtype, "source_model_id": ck.model_id}}
    save_checkpoint(tmp, model, normalizer=ck.normalizer, channels=ck.channels, state=ck.state, extra=extra)
    for name in RUN_FILES:
        shutil.copyfile(Path(run_dir) / name, tmp / name)
    (tmp / "README.md").write_text(readme({"dtype": dtype, "source_model_id": ck.model_id}))
    size = dir_bytes(tmp)
    if size > limit_bytes:
        shutil.rmtree(tmp)
        raise E2EError(f"{dest.name}: {size} bytes in {dtype}, over the limit of {limit_bytes}")
    shipped = load_checkpoint(tmp)
    diff = max(
        (float((v.float() - source[k].float()).abs().max()) for k, v in shipped.model.state_dict().items()),
        default=0.0,
    )
    old = dest.with_name(f".{dest.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        os.replace(dest, old)
    os.replace(tmp, dest)
    shutil.rmtree(old, ignore_errors=True)
    return {
        "name": dest.name,
        "dtype": dtype,
        "bytes": size,
        "weights_bytes": (dest / "model.safetensors").stat().st_size,
        "model_id": shipped.model_id,
        "source_model_id": ck.model_id,
        "max_abs_weight_change": diff,
    }


def _readme(name: str, what: str, info: dict, commands: list[str], study_command: str) -> str:
    steps = "\n".join(f"    {c}" for c in commands)
    return (
        f"# {name}\n\n{what}\n\n"
        f'Loaded by `e2ecompress.models.load_model("{name}")` (no network). Weights stored as '
        f"{info['dtype']} and loaded into a float32 model; the float32 original has model id "
        f"`{info['source_model_id']}`.\n\n"
        f"Reproduce from the repository root:\n\n    {study_command}\n\n"
        f"which runs, among the study's other steps:\n\n{steps}\n\n"
        f"and copies the run's `checkpoints/best` here. The training log is `train.log` (per epoch: "
        f"`metrics.jsonl`), the resolved configuration `config.json`.\n"
    )


def ship_study(study, results: dict, ship_dir: Path | None, finals: dict) -> dict:
    """Ship the MAE of the first pretraining seed and the classifier fine-tuned from it (seeds[0], the
    reference label fraction), then evaluate the shipped copies (loaded from where they were put) on the
    test splits. finals: (method, fraction, seed) -> run directory."""
    plan, paths = study.plan, study.paths
    root = Path(ship_dir) if ship_dir is not None else PRETRAINED_DIR
    root.mkdir(parents=True, exist_ok=True)
    ps = plan.pretrain_seeds[0]
    pre_run = paths.run("pretrain", seed=ps)
    cmds = [study.dataset_command(s) for s in ("unlabelled", "labelled")]
    cmds.append(study.command(study.train_argv("pretrain", pre_run, ps)))
    counts, mae = results["data"]["counts"], results["models"]["mae"]
    checks = paths.workdir / "shipped"
    shutil.rmtree(checks, ignore_errors=True)  # the shipped copies are evaluated afresh every time
    try:
        shown = root.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        shown = root
    out: dict = {"dir": str(shown)}
    # the limit is for all shipped models together: each gets an equal share
    n_models = 2 if "finetune" in plan.methods else 1
    share = plan.ship_limit_bytes // n_models

    def copy(step: str, src: Path, name: str, what: str, run_dir: Path) -> dict:
        return study.ledger.run(
            step,
            lambda: ship_checkpoint(
                src,
                root / name,
                run_dir=run_dir,
                readme=lambda i: _readme(name, what, i, cmds, results["command"]),
                limit_bytes=share,
            ),
            replace=True,
        )

    name = plan.ship_names["mae"]
    pre = results["pretrain"][f"s{ps}"]
    what = (
        f"Masked auto-encoder `{mae['arch']}` ({mae['params']} parameters) pretrained for "
        f"{len(pre['records'])} epochs (best: epoch {pre['best_epoch']} on unlabelled/val) on the "
        f"{counts['unlabelled/train']} jets of unlabelled/train, pretraining seed {ps}."
    )
    info = copy("ship/mae", study.mae_best(ps), name, what, pre_run)
    ev = study.evaluate(
        "ship/reconstruction", root / name, "unlabelled", "test", checks / "mae.json", replace=True
    )
    float32 = results["reconstruction"][f"s{ps}"]["unlabelled/test"]
    keys = ("mse_occupied", "mse_ratio_to_zero")
    info["test"] = {k: ev["metrics"][k] for k in keys}
    info["float32_test"] = {k: float32[k] for k in keys}
    out["mae"] = info

    if "finetune" in plan.methods:
        ref, seed = plan.reference_fraction, plan.seeds[0]
        run = next(
            r
            for r in results["classification"]["runs"]
            if (r["method"], r["fraction"], r["seed"]) == ("finetune", ref, seed)
        )
        name = plan.ship_names["classifier"]
        what = (
            f"Quark/gluon classifier: the encoder of `{plan.ship_names['mae']}` fine-tuned for "
            f"{run['epochs']} epochs ({run['steps']} optimizer steps) on {run['n_train']} labelled jets "
            f"(seed {seed}); best epoch {run['best_epoch']} on labelled/val."
        )
        cmds.append(study.command(study.final_job("finetune", ref, seed, results["grid"])[1]))
        src_run = finals[("finetune", ref, seed)]
        info = copy("ship/classifier", src_run / "checkpoints" / "best", name, what, src_run)
        ev = study.evaluate(
            "ship/test", root / name, "labelled", "test", checks / "classifier.json", replace=True
        )
        info["test"] = {k: ev["metrics"][k] for k in ("auc", "accuracy")}
        info["float32_test"] = {k: run[k] for k in ("auc", "accuracy")}
        out["classifier"] = info
    out["total_bytes"] = sum(out[k]["bytes"] for k in ("mae", "classifier") if k in out)
    out["limit_bytes"] = plan.ship_limit_bytes
    if out["total_bytes"] > plan.ship_limit_bytes:
        raise E2EError(f"shipped models take {out['total_bytes']} bytes, over {plan.ship_limit_bytes}")
    if root == PRETRAINED_DIR:  # the point of shipping: loadable by name
        for k in ("mae", "classifier"):
            if k in out:
                out[k]["loaded_by_name"] = load_model(plan.ship_names[k]).model_id == out[k]["model_id"]
    return out
