"""`bench-sparse`: dense vs sparse-aware MAE encoder, trained side by side on the same jets and steps.

Both runs start from the same initial weights and see the same batches and mask noise; the sparse one
drops empty patches from the encoder (`sparse=True`). Reported per mode: training throughput (jets/s,
the first step excluded as warm-up), mean visible tokens per batch, and on validation jets the masked /
visible per-channel MSE in the model's own mode and under the same dense random masks (a like-for-like
quality comparison), plus the occupied-patch statistics of the data.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from e2ecompress import ops
from e2ecompress.models import count_params, create_model
from e2ecompress.train.config import BenchConfig, to_dict
from e2ecompress.train.data import epoch_batches, load_split, to_tensor
from e2ecompress.train.rundir import write_json

MODES = ("dense", "sparse")


@torch.no_grad()
def _val_mse(model, val, batch_size: int, mask_ratio: float, seed: int, sparse: bool) -> dict:
    model.eval()
    model.sparse = sparse
    gen = torch.Generator().manual_seed(seed)
    per_patch = model.pixel_valid.sum(dim=1).double()
    sq_m = sq_v = 0.0
    n_m = n_v = 0.0
    for s in range(0, len(val), batch_size):
        idx = np.arange(s, min(s + batch_size, len(val)))
        x = to_tensor(val, idx, torch.device("cpu"))
        out = model(x, mask_ratio, torch.rand(len(idx), model.num_patches, generator=gen))
        m = float((out.mask.double() * per_patch).sum())
        v = float(((1 - out.mask.double()) * per_patch).sum())
        sq_m += float(out.mse_masked.double().mean()) * m
        sq_v += float(out.mse_visible.double().mean()) * v
        n_m, n_v = n_m + m, n_v + v
    return {"mse_masked": sq_m / max(n_m, 1), "mse_visible": sq_v / max(n_v, 1)}


def bench_sparse(cfg: BenchConfig, log=print) -> dict:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_raw = load_split(cfg.root, "unlabelled", "train", cfg.steps * cfg.batch_size)
    val_raw = load_split(cfg.root, "unlabelled", "val", cfg.val_jets)
    normalizer = train_raw.fit_normalizer()
    train, val = train_raw.normalized(normalizer), val_raw.normalized(normalizer)
    torch.manual_seed(cfg.seed)
    base = create_model(cfg.model.name, in_chans=train.in_chans, **{**cfg.model.kwargs, "sparse": False})
    init = {k: v.clone() for k, v in base.state_dict().items()}
    occ_counts = [
        ops.patch_occupancy(
            to_tensor(val, np.arange(s, min(s + 256, len(val))), torch.device("cpu")), base.patch_size
        )[1]
        for s in range(0, len(val), 256)
    ]
    counts = torch.cat(occ_counts).double()
    result = {
        "config": to_dict(cfg),
        "arch": base.arch,
        "params": count_params(base),
        "num_patches": base.num_patches,
        "dense_visible": int(base.num_patches * (1 - cfg.mask_ratio)),
        "occupied_patches": {
            "mean": float(counts.mean()),
            "max": int(counts.max()),
            "fraction": float(counts.mean() / base.num_patches),
        },
        "modes": {},
    }
    batches = []
    epoch = 0
    while len(batches) < cfg.steps:
        batches += epoch_batches(len(train), cfg.batch_size, cfg.seed, epoch)
        epoch += 1
    batches = batches[: cfg.steps]
    for mode in MODES:
        model = create_model(
            cfg.model.name, in_chans=train.in_chans, **{**cfg.model.kwargs, "sparse": mode == "sparse"}
        )
        model.load_state_dict(init)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.05)
        gen = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        model.train()
        tokens, losses, t_start, jets = [], [], None, 0
        for i, idx in enumerate(batches):
            if i == 1:
                t_start, jets = time.perf_counter(), 0
            x = to_tensor(train, idx, torch.device("cpu"))
            latent, mask, ids_restore = model.forward_encoder(
                x, cfg.mask_ratio, torch.rand(len(idx), model.num_patches, generator=gen)
            )
            loss, _, _ = model.forward_loss(x, model.forward_decoder(latent, ids_restore), mask)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tokens.append(latent.shape[1] - 1)
            losses.append(float(loss.detach()))
            jets += len(idx)
        wall = time.perf_counter() - t_start if t_start is not None else float("nan")
        rec = {
            "jets_per_s": jets / wall if wall == wall and wall > 0 else None,
            "timed_steps": len(batches) - 1,
            "mean_visible_tokens": float(np.mean(tokens)),
            "final_train_loss": float(np.mean(losses[-5:])),
            "val_own_mode": _val_mse(model, val, 64, cfg.mask_ratio, cfg.seed + 1, mode == "sparse"),
            "val_dense_masks": _val_mse(model, val, 64, cfg.mask_ratio, cfg.seed + 1, False),
        }
        result["modes"][mode] = rec
        log(
            f"{mode:6s}: {rec['jets_per_s'] or float('nan'):8.1f} jets/s, "
            f"{rec['mean_visible_tokens']:6.1f} visible tokens, "
            f"val masked MSE {rec['val_own_mode']['mse_masked']:.5f} (own masks), "
            f"{rec['val_dense_masks']['mse_masked']:.5f} (dense masks)"
        )
    d, s = result["modes"]["dense"], result["modes"]["sparse"]
    if d["jets_per_s"] and s["jets_per_s"]:
        result["speedup_sparse_over_dense"] = s["jets_per_s"] / d["jets_per_s"]
        log(f"sparse / dense throughput: {result['speedup_sparse_over_dense']:.2f}x")
    if cfg.out:
        write_json(cfg.out, result)
    return result
