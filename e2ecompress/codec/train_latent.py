"""Train the latent codec (`LatentAutoencoder`) from the pretrained MAE, fit its entropy tables, evaluate.

    python -m e2ecompress.codec.train_latent --data data/study --out runs/latent3 --steps 480 \\
        --time-limit 29 --resume --ship e2ecompress/models/pretrained/latent_qg3_default

Loss = D + λ·R: D the channel mean of the per-channel MSE over the non-zero pixels (normalized space), R
the rate model's bits per jet. Each batch draws its quantization step from the levels' steps (one model
serves every level) and, half the time, codes only a random 25-100% of each jet's occupied tokens (the
"decoder inpaints" operating point). λ is fixed by default and small: a large λ early in training
collapses the latents before the decoder learns to use them; the levels' steps then set the rate. With
--target-bytes, a slow multiplicative controller moves λ to hold the middle level's bytes/jet (the batch's
empirical symbol entropy) on the target.

The run directory holds config.json, train.log, metrics.jsonl, state/ (weights, optimizer, step, λ: what
--resume continues from; every step's randomness is seeded by (seed, step), so a resumed run repeats the
uninterrupted one), and at the end final/ (the codec checkpoint, float16 weights) and eval.json.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from e2ecompress.codec.latent import (
    DEFAULT_LEVELS,
    LatentAutoencoder,
    LatentCodec,
    LatentSymbols,
)
from e2ecompress.errors import E2EError
from e2ecompress.fsutil import atomic_directory, write_json
from e2ecompress.models import load_model
from e2ecompress.models.checkpoint import _flatten_optimizer, _unflatten_optimizer
from e2ecompress.physics import jet_kinematics
from e2ecompress.train.data import epoch_batches, load_split
from e2ecompress.train.engine import derive_seed

NO_DECAY = ("cls_token", "mask_token", "drop_token")
RATE_PARAMS = ("token_loc", "token_log_scale", "cls_loc", "cls_log_scale")


@dataclass
class LatentTrainConfig:
    data: str = "data/study"
    out: str = "runs/latent"
    init: str = "mae_qg3_default"
    latent_dim: int = 8
    steps: int = 1500
    batch_size: int = 64
    lr: float = 3e-4
    min_lr: float = 1e-6
    warmup: float = 0.05  # fraction of the steps
    weight_decay: float = 0.05
    lam: float = 5e-5  # per bit per jet
    target_bytes: float | None = None
    lam_gain: float = 0.005
    lam_min: float = 2e-5
    lam_max: float = 2e-3
    rate_lr_scale: float = 30.0  # the rate model's location/scale must track the latents quickly
    bucket: int = 16  # batches are cut from groups of bucket * batch_size jets sorted by token count
    keep_all_prob: float = 0.5
    min_keep: float = 0.25
    max_train_jets: int | None = None
    val_jets: int = 2000
    fit_jets: int = 10000
    val_every: int = 250
    save_every: int = 100
    seed: int = 0
    threads: int = 2
    ship: str | None = None
    time_limit: float | None = None  # minutes of training; past it the run saves its state and finishes


class Log:
    def __init__(self, path: Path):
        self.file = open(path, "a")  # open for the whole run

    def __call__(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}"
        print(line, flush=True)
        self.file.write(line + "\n")
        self.file.flush()


def lr_at(step: int, cfg: LatentTrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    t = min((step - warm) / max(cfg.steps - warm, 1), 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def make_optimizer(model: LatentAutoencoder, cfg: LatentTrainConfig) -> torch.optim.AdamW:
    decay, no_decay, rate = [], [], []
    for name, p in model.named_parameters():
        plain = p.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in NO_DECAY
        (rate if name in RATE_PARAMS else no_decay if plain else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "lr_scale": 1.0},
        {"params": no_decay, "weight_decay": 0.0, "lr_scale": 1.0},
        {"params": rate, "weight_decay": 0.0, "lr_scale": cfg.rate_lr_scale},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), foreach=False)


def token_counts(jets, patch_size: int) -> np.ndarray:
    """Occupied patches per jet of a SparseJets: int64 [N]."""
    _, H, W = jets.shape
    pix = jets.index % (H * W)
    grid = -(-W // patch_size)
    patch = (pix // W // patch_size) * grid + (pix % W) // patch_size
    jet = np.repeat(np.arange(len(jets)), np.diff(jets.offsets))
    key = np.unique(jet.astype(np.int64) * grid * grid + patch)
    return np.bincount(key // (grid * grid), minlength=len(jets))


def bucketed_batches(counts: np.ndarray, cfg: LatentTrainConfig, epoch: int) -> list[np.ndarray]:
    """One epoch's batches: a seeded shuffle cut into groups of bucket * batch_size jets, each sorted by
    token count and cut into batches (less padding in the encoder), in a shuffled batch order."""
    order = epoch_batches(len(counts), cfg.batch_size * cfg.bucket, cfg.seed, epoch)
    batches = []
    for group in order:
        group = group[np.argsort(counts[group], kind="stable")]
        batches += [group[s : s + cfg.batch_size] for s in range(0, len(group), cfg.batch_size)]
    perm = np.random.default_rng(derive_seed(cfg.seed, "batches", epoch)).permutation(len(batches))
    return [batches[i] for i in perm]


def save_state(path: Path, model, optimizer, state: dict) -> None:
    """The resumable training state, written to a temporary sibling and swapped in."""
    with atomic_directory(path) as tmp:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, tmp / "model.safetensors")
        tensors, meta = _flatten_optimizer(optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        (tmp / "state.json").write_text(json.dumps({**state, "optimizer": meta}, indent=2))


def load_state(path: Path, model, optimizer) -> dict:
    state = json.loads((path / "state.json").read_text())
    model.load_state_dict(load_file(path / "model.safetensors"))
    optimizer.load_state_dict(
        _unflatten_optimizer(load_file(path / "optimizer.safetensors"), state["optimizer"])
    )
    return state


@torch.no_grad()
def quick_val(model: LatentAutoencoder, val_norm, n: int, step: float = 1.0) -> dict:
    """Distortion and rate-model bytes/jet (rounded latents) on the first n validation jets."""
    model.eval()
    mse, bits, count = 0.0, 0.0, 0
    for s in range(0, n, 128):
        idx = np.arange(s, min(s + 128, n))
        out = model(torch.from_numpy(val_norm.dense(idx)), step)
        mse += float(out.mse.mean()) * len(idx)
        bits += float(out.bits.sum())
        count += len(idx)
    model.train()
    return {"distortion": mse / count, "bytes_per_jet": bits / count / 8}


def train(cfg: LatentTrainConfig, resume: bool, log: Log) -> LatentAutoencoder:
    out = Path(cfg.out)
    mae = load_model(cfg.init)
    normalizer = mae.normalizer
    train_raw = load_split(cfg.data, "unlabelled", "train", cfg.max_train_jets)
    val_raw = load_split(cfg.data, "unlabelled", "val", cfg.val_jets)
    train_jets, val_norm = train_raw.normalized(normalizer), val_raw.normalized(normalizer)
    log(
        f"data {cfg.data}: train {len(train_jets)} jets, val {len(val_norm)}; "
        f"init {cfg.init} ({mae.model_id[:12]})"
    )
    torch.manual_seed(cfg.seed)
    model = LatentAutoencoder.from_mae(mae, cfg.latent_dim)
    optimizer = make_optimizer(model, cfg)
    start, lam, bytes_ema = 0, cfg.lam, None
    if resume and (out / "state" / "state.json").is_file():
        st = load_state(out / "state", model, optimizer)
        start, lam, bytes_ema = st["step"], st["lam"], st["bytes_ema"]
        log(f"resumed from {out / 'state'} at step {start}, lambda {lam:.3g}")
    counts = token_counts(train_jets, model.patch_size)
    epoch_cache: dict[int, list[np.ndarray]] = {}
    steps_per_epoch = len(bucketed_batches(counts, cfg, 0))
    level_steps = sorted(DEFAULT_LEVELS.values())
    mid_step = level_steps[len(level_steps) // 2]
    model.train()
    t0, seen = time.perf_counter(), 0
    metrics = open(out / "metrics.jsonl", "a")
    for step in range(start, cfg.steps):
        epoch, k = divmod(step, steps_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = bucketed_batches(counts, cfg, epoch)
        idx = epoch_cache[epoch][k]
        gen_seed = derive_seed(cfg.seed, step)
        torch.manual_seed(gen_seed)
        rng = np.random.default_rng(gen_seed)
        q = float(level_steps[rng.integers(len(level_steps))])
        keep = None
        if rng.random() >= cfg.keep_all_prob:
            keep = torch.from_numpy(rng.uniform(cfg.min_keep, 1.0, len(idx)).astype(np.float32))
        for g in optimizer.param_groups:
            g["lr"] = lr_at(step, cfg) * g["lr_scale"]
        res = model(torch.from_numpy(train_jets.dense(idx)), q, keep)
        distortion = res.mse.mean()
        rate = res.bits.mean()
        loss = distortion + lam * rate
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += len(idx)
        # the controller watches the middle level whatever this batch's step was
        now = symbol_entropy_bytes(res.z_cls, res.z_tokens, len(idx), mid_step)
        bytes_ema = now if bytes_ema is None else 0.95 * bytes_ema + 0.05 * now
        if cfg.target_bytes:
            lam = float(
                np.clip(lam * (bytes_ema / cfg.target_bytes) ** cfg.lam_gain, cfg.lam_min, cfg.lam_max)
            )
        loss, distortion, rate = loss.item(), distortion.item(), rate.item()
        rec = {"step": step + 1, "epoch": step / steps_per_epoch, "loss": loss, "D": distortion}
        rec.update(
            {"bits": float(rate), "q": q, "keep": keep is not None, "lam": lam, "bytes_ema": bytes_ema}
        )
        if (step + 1) % cfg.val_every == 0 or step + 1 == cfg.steps:
            rec["val"] = quick_val(model, val_norm, min(500, len(val_norm)))
        metrics.write(json.dumps(rec) + "\n")
        metrics.flush()
        if (step + 1) % 25 == 0 or "val" in rec:
            rate_js = seen / (time.perf_counter() - t0)
            log(
                f"step {step + 1}/{cfg.steps} D {distortion:.4f} bits {rate:.0f} (q={q}) "
                f"step-{mid_step:g} bytes/jet ema {bytes_ema:.1f} lambda {lam:.3g} lr {lr_at(step, cfg):.2e} "
                f"{rate_js:.1f} jets/s" + (f" val {rec['val']}" if "val" in rec else "")
            )
        late = cfg.time_limit is not None and time.perf_counter() - t0 > 60 * cfg.time_limit
        if (step + 1) % cfg.save_every == 0 or step + 1 == cfg.steps or late:
            state = {"step": step + 1, "lam": lam, "bytes_ema": bytes_ema, "config": asdict(cfg)}
            save_state(out / "state", model, optimizer, state)
        if late:
            log(f"time limit of {cfg.time_limit} min reached: stopping after step {step + 1}")
            break
    metrics.close()
    return model


def symbol_entropy_bytes(z_cls: torch.Tensor, z_tokens: torch.Tensor, n_jets: int, step: float) -> float:
    """Bytes per jet of the symbols round(z / step) at the batch's empirical per-dim entropy: about what
    the fitted rANS tables will cost (the logistic rate model overestimates peaked dims)."""
    total = 0.0
    for z in (z_cls, z_tokens):
        sym = torch.round(z.detach() / step).to(torch.int64)
        for d in range(sym.shape[1]):
            _, counts = torch.unique(sym[:, d], return_counts=True)
            p = counts.double() / counts.sum()
            total += float(-(p * torch.log2(p)).sum()) * len(sym)
    return total / n_jets / 8


def resolution(true: np.ndarray, reco: np.ndarray) -> dict:
    ok = true > 0
    r = reco[ok] / true[ok] - 1.0
    q16, q84 = np.percentile(r, [16, 84])
    return {"std": float(r.std()), "mean": float(r.mean()), "half_68": float((q84 - q16) / 2)}


def split_symbols(sym: LatentSymbols, size: int) -> list[LatentSymbols]:
    """Consecutive chunks of `size` jets."""
    starts = np.concatenate([[0], np.cumsum(sym.keep.sum(1))])
    return [
        LatentSymbols(
            sym.cls[s : s + size],
            sym.tokens[starts[s] : starts[min(s + size, len(sym.cls))]],
            sym.occ[s : s + size],
            sym.keep[s : s + size],
        )
        for s in range(0, len(sym.cls), size)
    ]


def evaluate(codec: LatentCodec, images: np.ndarray, eta: np.ndarray | None, log: Log) -> dict:
    """Per level (and keep fraction 0.25): rANS bytes/jet, distortion, pT / mass resolution, speed."""
    channels = codec.channels
    truth = jet_kinematics(images, channels, eta)
    nz = images != 0
    target = codec.normalizer.normalize(images)
    results = {}
    for level in sorted(codec.levels):
        for fraction in (1.0, 0.25):
            t = time.perf_counter()
            sym = codec.encode(images, level)
            t_enc = time.perf_counter() - t
            if fraction < 1.0:
                keep = codec.default_keep(sym.occ, fraction)
                sym = codec.encode(images, level, keep)
            data = codec.compress(sym, level)
            chunked = sum(len(codec.compress(part, level)) for part in split_symbols(sym, 256))
            back = codec.decompress(data, sym.occ, sym.keep, len(images), level)
            assert np.array_equal(back.cls, sym.cls) and np.array_equal(back.tokens, sym.tokens)
            t = time.perf_counter()
            decoded = codec.decode(sym.cls, sym.tokens, sym.occ, sym.keep, level) * nz
            t_dec = time.perf_counter() - t
            err = (codec.normalizer.normalize(decoded) - target) ** 2
            mse = [float(err[:, c][nz[:, c]].mean()) for c in range(images.shape[1])]
            reco = jet_kinematics(decoded, channels, eta)
            tables = codec.tables[level]
            escapes = sum(
                int(np.sum((s - t.offsets < 0) | (s - t.offsets >= t.escape)))
                for s, t in ((sym.cls, tables["cls"]), (sym.tokens, tables["tokens"]))
            )
            key = f"level{level}" + ("" if fraction == 1.0 else f"_keep{fraction}")
            results[key] = {
                "step": codec.levels[level],
                "keep_fraction": fraction,
                "bytes_per_jet": len(data) / len(images),
                "bytes_per_jet_chunks256": chunked / len(images),
                "tokens_per_jet": len(sym.tokens) / len(images),
                "escape_rate": escapes / max(sym.cls.size + sym.tokens.size, 1),
                "distortion": float(np.mean(mse)),
                "mse_per_channel": mse,
                "pt_res": resolution(truth["pt"], reco["pt"]),
                "mass_res": resolution(truth["mass"], reco["mass"]),
                "encode_jets_per_s": len(images) / t_enc,
                "decode_jets_per_s": len(images) / t_dec,
            }
            r = results[key]
            log(
                f"{key}: {r['bytes_per_jet']:.1f} B/jet "
                f"({r['bytes_per_jet_chunks256']:.1f} in 256-jet chunks), D {r['distortion']:.4f}, "
                f"pT res {r['pt_res']['std']:.4f}, mass res {r['mass_res']['std']:.4f}, "
                f"escapes {r['escape_rate']:.2e}, encode {r['encode_jets_per_s']:.0f} jets/s, "
                f"decode {r['decode_jets_per_s']:.0f} jets/s"
            )
    return results


def finish(model: LatentAutoencoder, cfg: LatentTrainConfig, log: Log) -> dict:
    """float16-round the weights, fit the tables on training jets, evaluate on val, write final/ (+ ship)."""
    out = Path(cfg.out)
    mae = load_model(cfg.init)
    with torch.no_grad():
        for p in model.state_dict().values():
            p.copy_(p.half().float())
    codec = LatentCodec(model, mae.normalizer, dict(DEFAULT_LEVELS), channels=mae.channels)
    train_raw = load_split(cfg.data, "unlabelled", "train", cfg.max_train_jets)
    pick = np.random.default_rng(derive_seed(cfg.seed, "fit")).permutation(len(train_raw))[: cfg.fit_jets]
    t = time.perf_counter()
    z_cls, z_tok, _ = codec.latents(train_raw.dense(np.sort(pick)))
    codec.fit_tables(z_cls, z_tok)
    log(
        f"tables fitted on {len(pick)} training jets ({len(z_tok)} tokens) in {time.perf_counter() - t:.0f} s"
    )
    val = load_split(cfg.data, "unlabelled", "val", cfg.val_jets)
    images = val.dense(np.arange(len(val)))
    results = evaluate(codec, images, val.columns.get("eta"), log)
    summary = {"config": asdict(cfg), "val": results, "val_jets": len(val), "fit_jets": len(pick)}
    state_file = out / "state" / "state.json"
    if state_file.is_file():
        state = json.loads(state_file.read_text())
        summary.update(lambda_final=state["lam"], steps_done=state["step"])
    model_id = codec.save(out / "final", torch.float16, summary)
    write_json(out / "eval.json", {"model_id": model_id, **summary})
    log(f"final codec {out / 'final'}: model id {model_id}")
    if cfg.ship:
        shipped = codec.save(cfg.ship, torch.float16, summary)
        check = LatentCodec.load(cfg.ship)
        a, b = codec.encode(images[:64], 2), check.encode(images[:64], 2)
        assert shipped == check.model_id and np.array_equal(a.tokens, b.tokens)
        size = sum(p.stat().st_size for p in Path(cfg.ship).iterdir())
        log(f"shipped {cfg.ship}: {size} bytes, model id {shipped}")
    return summary


def parse_args(argv: Sequence[str] | None) -> tuple[LatentTrainConfig, argparse.Namespace]:
    defaults = LatentTrainConfig()
    p = argparse.ArgumentParser(
        prog="python -m e2ecompress.codec.train_latent", description=__doc__.split("\n")[0]
    )
    for name, value in asdict(defaults).items():
        kind = (
            type(value) if value is not None else (float if name in ("target_bytes", "time_limit") else int)
        )
        kind = str if name in ("ship",) else kind
        p.add_argument(f"--{name.replace('_', '-')}", type=kind, default=value)
    p.add_argument("--resume", action="store_true", help="continue from OUT/state when it exists")
    p.add_argument("--eval-only", action="store_true", help="skip training: finish from OUT/state")
    args = p.parse_args(argv)
    cfg = LatentTrainConfig(**{k: getattr(args, k) for k in asdict(defaults)})
    return cfg, args


def main(argv: Sequence[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", asdict(cfg))
    log = Log(out / "train.log")
    try:
        if args.eval_only:
            model = LatentAutoencoder.from_mae(load_model(cfg.init), cfg.latent_dim)
            model.load_state_dict(load_file(out / "state" / "model.safetensors"))
        else:
            model = train(cfg, args.resume, log)
        finish(model, cfg, log)
    except E2EError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
