"""Training loops: MAE pretraining, and fine-tuning / from-scratch / linear-probe classifiers.

One epoch loop serves all four: DistributedSampler batches, per-step LR (warm-up + cosine), DDP when
torchrun launched us, validation on rank 0 over the whole validation split, `checkpoints/last` after
every epoch and `checkpoints/best` on a better validation score (pretrain: masked-patch MSE; classifiers:
ROC AUC). Randomness (dropout, drop path, mask noise, batch order) is re-seeded from (seed, epoch, rank)
at every epoch, so a run resumed from `last` continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from e2ecompress.errors import InputError
from e2ecompress.models import (
    JetMAE,
    MaskedAutoencoderViT,
    Normalizer,
    classifier_for,
    count_params,
    create_model,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from e2ecompress.train import dist
from e2ecompress.train.config import TrainConfig, to_dict, validate
from e2ecompress.train.data import epoch_batches, label_subset, load_split, step_batches, to_tensor
from e2ecompress.train.evaluate import features, head_proba, predict_proba, reconstruction
from e2ecompress.train.jet_recon import val_loss
from e2ecompress.train.metrics import classification_metrics
from e2ecompress.train.optim import lr_at, make_optimizer, set_lr
from e2ecompress.train.rundir import RunDir


def derive_seed(*parts: int | str) -> int:
    """A 31-bit seed from a tuple of ints/strings (stable across runs and platforms)."""
    ints = [p if isinstance(p, int) else int.from_bytes(p.encode(), "little") for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1)[0] & 0x7FFFFFFF)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (third-party code may draw from the legacy global state)
    torch.manual_seed(seed)


@dataclass
class Task:
    """What the shared loop needs to know about one kind of training."""

    model: nn.Module  # what is checkpointed
    trainable: nn.Module  # what DDP wraps and what is put in train mode
    normalizer: Normalizer
    channels: tuple[str, ...] | None
    n_train: int
    step: Callable  # (module, idx, generator) -> (loss, n)
    validate: Callable[[], dict]  # rank 0 only -> metrics with "score"
    higher_is_better: bool


def _load_normalizer_and_data(cfg: TrainConfig, subset: str, run: RunDir):
    train = load_split(cfg.data.root, subset, "train", cfg.data.max_train_jets)
    val = load_split(cfg.data.root, subset, "val", cfg.data.max_val_jets)
    run.log(
        "data %s: train %d jets, val %d jets, %d channels %s, occupancy %.4f",
        cfg.data.root,
        len(train),
        len(val),
        train.in_chans,
        train.channels,
        train.occupancy,
    )
    return train, val


def _pretrain_task(cfg: TrainConfig, info: dist.DistInfo, run: RunDir, resumed: Normalizer | None) -> Task:
    train_raw, val_raw = _load_normalizer_and_data(cfg, "unlabelled", run)
    normalizer = resumed or train_raw.fit_normalizer()
    run.log("normalizer %s", normalizer)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.name, in_chans=train_raw.in_chans, **cfg.model.kwargs).to(info.device)
    train, val = train_raw.normalized(normalizer), val_raw.normalized(normalizer)
    ratio = cfg.mask_ratio

    def step(module, idx, gen):
        x = to_tensor(train, idx, info.device)
        noise = torch.rand(len(idx), model.num_patches, generator=gen).to(info.device)
        return module(x, ratio, noise).loss, len(idx)

    def validate_() -> dict:
        if isinstance(model, JetMAE):
            m = val_loss(
                model, val, cfg.data.eval_batch_size, ratio, derive_seed(cfg.seed, "val"), info.device
            )
            return {"score": m["loss"], "val": m}
        m = reconstruction(
            model,
            val_raw,
            val,
            normalizer,
            cfg.data.eval_batch_size,
            ratio,
            derive_seed(cfg.seed, "val"),
            info.device,
        )
        return {"score": m["mse_masked_mean"], "val": m}

    return Task(model, model, normalizer, train_raw.channels, len(train), step, validate_, False)


def _classifier(cfg: TrainConfig, in_chans: int, channels) -> tuple[nn.Module, Normalizer | None]:
    """The classifier and, when it comes from --init, the pretrained normalizer."""
    kwargs = dict(cfg.model.kwargs)
    if cfg.command == "linprobe":
        kwargs["probe"] = True
    if not cfg.init:  # scratch without a reference checkpoint
        torch.manual_seed(cfg.seed)
        return create_model(cfg.model.name, in_chans=in_chans, **kwargs), None
    ckpt = load_checkpoint(cfg.init, in_chans=in_chans)
    if not isinstance(ckpt.model, MaskedAutoencoderViT):
        raise InputError(ckpt.path, f"holds a {ckpt.arch}, not a pretrained MAE")
    if ckpt.normalizer is None:
        raise InputError(ckpt.path, "the checkpoint has no normalizer")
    if ckpt.channels and channels and tuple(ckpt.channels) != tuple(channels):
        raise InputError(
            ckpt.path,
            f"pretrained on channels {', '.join(ckpt.channels)}, the labelled data has {', '.join(channels)}",
        )
    cfg.model.name = classifier_for(ckpt.arch)
    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model.name, **{**ckpt.model.encoder_kwargs(), **kwargs})
    if cfg.command != "scratch":  # scratch --init: the same architecture and normalizer, random weights
        model.load_encoder_state(ckpt.model.state_dict(), source=ckpt.path)
    return model, ckpt.normalizer


def _classify_task(cfg: TrainConfig, info: dist.DistInfo, run: RunDir, resumed: Normalizer | None) -> Task:
    train_raw, val_raw = _load_normalizer_and_data(cfg, "labelled", run)
    model, normalizer = _classifier(cfg, train_raw.in_chans, train_raw.channels)
    model = model.to(info.device)
    normalizer = resumed or normalizer or train_raw.fit_normalizer()  # fitted on images only, no labels
    keep = label_subset(train_raw.labels, cfg.data.label_fraction, cfg.data.label_seed)
    train_raw = train_raw.subset(keep)
    run.log(
        "label fraction %.4g: %d training jets (%d quark)",
        cfg.data.label_fraction,
        len(keep),
        int(train_raw.labels.sum()),
    )
    train, val = train_raw.normalized(normalizer), val_raw.normalized(normalizer)
    y_train = torch.from_numpy(train.labels).to(info.device)
    y_val = val_raw.labels
    bs = cfg.data.eval_batch_size

    if cfg.command == "linprobe":
        for p in model.parameters():
            p.requires_grad_(False)
        for p in model.head.parameters():
            p.requires_grad_(True)
        t0 = time.perf_counter()
        f_train = features(model, train, bs, info.device)
        f_val = features(model, val, bs, info.device)
        run.log(
            "linprobe: cached frozen features of %d + %d jets in %.1f s",
            len(train),
            len(val),
            time.perf_counter() - t0,
        )

        def step(module, idx, gen):
            t = torch.from_numpy(idx).to(info.device)
            return F.cross_entropy(module(f_train[t]), y_train[t]), len(idx)

        def validate_() -> dict:
            m = classification_metrics(y_val, head_proba(model.head, f_val, bs))
            return {"score": m["auc"], "val": m}

        return Task(model, model.head, normalizer, train_raw.channels, len(train), step, validate_, True)

    def step(module, idx, gen):
        t = torch.from_numpy(idx).to(info.device)
        return F.cross_entropy(module(to_tensor(train, idx, info.device)), y_train[t]), len(idx)

    def validate_() -> dict:
        m = classification_metrics(y_val, predict_proba(model, val, bs, info.device))
        return {"score": m["auc"], "val": m}

    return Task(model, model, normalizer, train_raw.channels, len(train), step, validate_, True)


def _better(score: float, best: float | None, higher: bool) -> bool:
    if score != score:  # NaN never wins
        return False
    return best is None or (score > best if higher else score < best)


def _fit(cfg: TrainConfig, info: dist.DistInfo, run: RunDir, task: Task, state: dict, optim_state) -> dict:
    model, trainable = task.model.to(info.device), task.trainable
    optimizer = make_optimizer(model, cfg.optim)
    if optim_state is not None:
        optimizer.load_state_dict(optim_state)
    module = DistributedDataParallel(trainable) if info.distributed else trainable
    epoch0, step = state.get("epoch", 0), state.get("step", 0)
    best, best_epoch = state.get("best"), state.get("best_epoch")
    run.log(
        "%s %s: %d parameters (%d trainable), %d epochs from epoch %d, world size %d",
        cfg.command,
        model.arch,
        count_params(model),
        count_params(model, True),
        cfg.epochs,
        epoch0,
        info.world_size,
    )
    stop = cfg.epochs if cfg.stop_after_epochs is None else min(cfg.epochs, epoch0 + cfg.stop_after_epochs)
    for epoch in range(epoch0, stop):
        torch.manual_seed(derive_seed(cfg.seed, epoch, info.rank, "torch"))
        gen = torch.Generator().manual_seed(derive_seed(cfg.seed, epoch, info.rank, "mask"))
        if state.get("complete"):
            break
        if cfg.steps_per_epoch:
            batches = step_batches(
                task.n_train,
                cfg.data.batch_size,
                cfg.steps_per_epoch,
                cfg.seed,
                epoch,
                info.rank,
                info.world_size,
            )
        else:
            batches = epoch_batches(
                task.n_train, cfg.data.batch_size, cfg.seed, epoch, info.rank, info.world_size
            )
        model.eval()  # linprobe: the frozen encoder stays in eval mode
        trainable.train()
        loss_sum = n_sum = 0.0
        t0 = time.perf_counter()
        bar = run.bar(len(batches), f"{cfg.command} epoch {epoch + 1}/{cfg.epochs}")
        lr = cfg.optim.lr
        for i, idx in enumerate(batches):
            lr = lr_at(epoch + i / len(batches), cfg.optim, cfg.epochs)
            set_lr(optimizer, lr)
            loss, n = task.step(module, idx, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.optim.clip_grad:
                nn.utils.clip_grad_norm_(trainable.parameters(), cfg.optim.clip_grad)
            optimizer.step()
            step += 1
            loss_sum += float(loss.detach()) * n
            n_sum += n
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", lr=f"{lr:.2e}")
            bar.update(1)
        bar.close()
        wall = time.perf_counter() - t0
        loss_sum, n_sum = dist.all_reduce_sum(info, [loss_sum, n_sum])
        rec = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lr,
            "train_loss": loss_sum / max(n_sum, 1),
            "jets_per_s": n_sum / max(wall, 1e-9),
            "train_wall_s": round(wall, 3),
        }
        if info.is_main:
            t1 = time.perf_counter()
            val = task.validate()
            rec.update(val_score=val["score"], val=val["val"], val_wall_s=round(time.perf_counter() - t1, 3))
            improved = _better(val["score"], best, task.higher_is_better)
            if improved:
                best, best_epoch = val["score"], epoch + 1
            patience_over = cfg.patience is not None and epoch + 1 - (best_epoch or 0) >= cfg.patience
            complete = epoch + 1 >= cfg.epochs or patience_over
            ckpt_state = {
                "complete": complete,
                "early_stopped": patience_over and epoch + 1 < cfg.epochs,
                "epoch": epoch + 1,
                "step": step,
                "best": best,
                "best_epoch": best_epoch,
                "command": cfg.command,
                "world_size": info.world_size,
            }
            kw = dict(normalizer=task.normalizer, channels=task.channels, extra={"config": to_dict(cfg)})
            save_checkpoint(run.last, model, optimizer=optimizer, state=ckpt_state, **kw)
            if improved:
                save_checkpoint(run.best, model, state=ckpt_state, **kw)
            run.record(rec)
            run.log(
                "epoch %d/%d step %d: train loss %.5f, val score %.5f%s, %.1f jets/s",
                epoch + 1,
                cfg.epochs,
                step,
                rec["train_loss"],
                val["score"],
                " (best)" if improved else "",
                rec["jets_per_s"],
            )
        dist.barrier(info)
        if cfg.patience is not None and epoch + 1 - (best_epoch or 0) >= cfg.patience:
            run.log(
                "early stop: no better validation score in %d epochs (best epoch %s)",
                cfg.patience,
                best_epoch,
            )
            stop = epoch + 1
            break
    return {
        "epochs_done": stop,
        "step": step,
        "best": best,
        "best_epoch": best_epoch,
        "run": str(run.path),
        "rank": info.rank,
        "world_size": info.world_size,
    }


def run_train(cfg: TrainConfig, resume: bool = False) -> dict:
    """Train as cfg.command says; returns a summary (rank 0's view)."""
    validate(cfg)
    info = dist.setup(cfg.device)
    try:
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(derive_seed(cfg.seed, info.rank))
        run = RunDir(cfg.out, info, cfg.progress)
        try:
            return _run(cfg, info, run, resume)
        finally:
            run.close()
    finally:
        dist.cleanup(info)


def _run(cfg: TrainConfig, info: dist.DistInfo, run: RunDir, resume: bool) -> dict:
    state: dict = {}
    optim_state = None
    normalizer = None
    ckpt = None
    if run.has_checkpoint():
        if not resume:
            raise InputError(
                str(run.path), "already holds a run; continue it with --resume or use another --out"
            )
        ckpt = load_checkpoint(run.last, build=False, with_optimizer=True)
        state, optim_state, normalizer = ckpt.state, ckpt.optimizer_state, ckpt.normalizer
        run.log("resuming from %s: epoch %d, step %d", run.last, state.get("epoch", 0), state.get("step", 0))
        if info.is_main:  # drop records of epochs after the checkpoint (an interrupted epoch)
            keep = [r for r in run.records() if r.get("epoch", 0) <= state.get("epoch", 0)]
            (run.path / "metrics.jsonl").write_text("".join(_line(r) for r in keep))
    elif resume:
        run.log("--resume: no checkpoint in %s yet, starting from scratch", run.path)
    make = _pretrain_task if cfg.command == "pretrain" else _classify_task
    task = make(cfg, info, run, normalizer)
    if ckpt is not None:
        load_weights(task.model, run.last)
    run.save_config({**to_dict(cfg), "world_size": info.world_size, "resumed_from_epoch": state.get("epoch")})
    summary = _fit(cfg, info, run, task, state, optim_state)
    run.log("done: %s", summary)
    return summary


def _line(rec: dict) -> str:
    return json.dumps(rec, sort_keys=True) + "\n"
