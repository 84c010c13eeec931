"""AdamW parameter groups (no decay on biases/norms/tokens; layer-wise LR decay) and the LR schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from e2ecompress.errors import InputError
from e2ecompress.train.config import OptimConfig

NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed")


def param_groups(model: nn.Module, weight_decay: float, layer_decay: float = 1.0) -> list[dict]:
    """Groups of trainable parameters with `lr_scale` (layer decay) and `weight_decay`.

    With layer_decay < 1 the model must have `layer_id(name)` (VisionTransformer): parameters of layer
    i get lr_scale = layer_decay ** (depth + 1 - i), so the head trains at the full rate, the embedding
    at the smallest (BEiT / MAE fine-tuning).
    """
    if layer_decay < 1.0 and not hasattr(model, "layer_id"):
        raise InputError(None, f"layer decay needs a ViT classifier, not a {type(model).__name__}")
    groups: dict[tuple[int, bool], dict] = {}
    n_layers = len(getattr(model, "blocks", ())) + 1
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        decay = not (p.ndim <= 1 or name.endswith(".bias") or name in NO_DECAY_NAMES)
        layer = model.layer_id(name) if layer_decay < 1.0 else n_layers
        key = (layer, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "weight_decay": weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (n_layers - layer),
            }
        groups[key]["params"].append(p)
        groups[key]["names"].append(name)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    groups = param_groups(model, cfg.weight_decay, cfg.layer_decay)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), foreach=False)


def lr_at(epoch: float, cfg: OptimConfig, epochs: int) -> float:
    """Linear warm-up over warmup_epochs, then a half cosine from lr to min_lr at `epochs`."""
    if epoch < cfg.warmup_epochs:
        return cfg.lr * epoch / cfg.warmup_epochs
    span = max(epochs - cfg.warmup_epochs, 1e-12)
    t = min((epoch - cfg.warmup_epochs) / span, 1.0)
    return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1.0 + math.cos(math.pi * t))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
