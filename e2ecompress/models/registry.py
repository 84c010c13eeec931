"""A decorator registry of model factories: `@register_model`, `create_model(name, **kw)`, `list_models()`.

Every model records `arch` (its registry name) and `init_kwargs` (all constructor arguments), so
`create_model(model.arch, **model.init_kwargs)` rebuilds it; checkpoints store exactly that pair.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Any

from torch import nn

from e2ecompress.errors import InputError
from e2ecompress.models.jet_mae import JetMAE
from e2ecompress.models.mae import MaskedAutoencoderViT
from e2ecompress.models.vit import VisionTransformer

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}

# "tiny" for this project: ~1.7M parameters with the decoder, quick enough to pretrain on 2 CPU cores and
# small enough that the shipped MAE and classifier together stay under 10 MB
TINY = dict(embed_dim=128, depth=6, num_heads=4, mlp_ratio=4.0)
TINY_DECODER = dict(decoder_embed_dim=128, decoder_depth=2, decoder_num_heads=4)
PATCH_SIZES = (5, 8, 16)
DEFAULT_MAE = "mae_vit_tiny_patch8"
DEFAULT_CLASSIFIER = "vit_tiny_patch8"


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory under its function name."""
    name = fn.__name__
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is already registered")
    _REGISTRY[name] = fn
    return fn


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, sorted; `pattern` filters with shell wildcards ('mae_*')."""
    names = sorted(_REGISTRY)
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def is_model(name: str) -> bool:
    return name in _REGISTRY


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build the model `name` with its defaults updated by `overrides`; in_chans is required.

    Raises InputError for an unknown name or an argument the model does not take.
    """
    if name not in _REGISTRY:
        raise InputError(None, f"unknown model {name!r} (known: {', '.join(list_models())})")
    if "in_chans" not in overrides:
        raise InputError(None, f"model {name}: in_chans (the channel count of the data) is required")
    try:
        model = _REGISTRY[name](**overrides)
    except TypeError as e:
        raise InputError(None, f"model {name}: {e}") from None
    model.arch = name
    return model


def classifier_for(mae_arch: str) -> str:
    """The classifier registered for an MAE architecture: 'mae_vit_tiny_patch8' -> 'vit_tiny_patch8'."""
    name = mae_arch.removeprefix("mae_")
    if name == mae_arch or name not in _REGISTRY:
        raise InputError(None, f"no classifier registered for {mae_arch!r}")
    return name


def _mae(patch_size: int, kw: dict[str, Any]) -> MaskedAutoencoderViT:
    return MaskedAutoencoderViT(**{**TINY, **TINY_DECODER, "patch_size": patch_size, **kw})


def _vit(patch_size: int, kw: dict[str, Any]) -> VisionTransformer:
    return VisionTransformer(**{**TINY, "patch_size": patch_size, **kw})


@register_model
def mae_vit_tiny_patch5(**kw: Any) -> MaskedAutoencoderViT:
    """625 patches of 5x5 (125 = 25 * 5, no padding)."""
    return _mae(5, kw)


@register_model
def mae_vit_tiny_patch8(**kw: Any) -> MaskedAutoencoderViT:
    """256 patches of 8x8 (the image is zero-padded to 128)."""
    return _mae(8, kw)


@register_model
def mae_vit_tiny_patch16(**kw: Any) -> MaskedAutoencoderViT:
    """64 patches of 16x16 (the image is zero-padded to 128)."""
    return _mae(16, kw)


@register_model
def vit_tiny_patch5(**kw: Any) -> VisionTransformer:
    return _vit(5, kw)


@register_model
def vit_tiny_patch8(**kw: Any) -> VisionTransformer:
    return _vit(8, kw)


@register_model
def vit_tiny_patch16(**kw: Any) -> VisionTransformer:
    return _vit(16, kw)


# The jet MAE (per-jet masking, occupancy + value heads) and its classifier: 4 blocks of 128 keep the
# study (two pretraining seeds, dozens of classifiers) within a few CPU hours.
JET = dict(embed_dim=128, depth=4, num_heads=4, mlp_ratio=4.0)
JET_DECODER = dict(decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=4)


@register_model
def mae_vit_jet_patch8(**kw: Any) -> JetMAE:
    """JetMAE on 256 patches of 8x8; pretext task in e2ecompress.models.jet_mae."""
    return JetMAE(**{**JET, **JET_DECODER, "patch_size": 8, **kw})


@register_model
def vit_jet_patch8(**kw: Any) -> VisionTransformer:
    """The classifier of mae_vit_jet_patch8: sparse tokens, mean + log(token count) pooling."""
    return VisionTransformer(**{**JET, "patch_size": 8, "sparse": True, "global_pool": "avg_count", **kw})
