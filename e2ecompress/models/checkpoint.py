"""Checkpoints as safetensors + JSON, never pickle.

A checkpoint is a directory:

    model.safetensors      the weights; its one metadata entry "e2ecompress" is JSON (sorted keys) with the
                           architecture (registry name + all constructor kwargs), the normalizer and the
                           channel names, so this file alone rebuilds the model. model id = its SHA-256.
    optimizer.safetensors  optional: optimizer state tensors named "state.<param index>.<key>"
    checkpoint.json        model id, the same description, training state (epoch, step, best metric, ...),
                           the optimizer's param groups and non-tensor state, free-form "extra"

It is written to a temporary sibling and swapped in with renames, so a crash leaves the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from e2ecompress.errors import InputError
from e2ecompress.models.normalizer import Normalizer
from e2ecompress.models.registry import create_model, is_model

FORMAT = "e2ecompress-checkpoint"
VERSION = 1
META_KEY = "e2ecompress"
MODEL_FILE = "model.safetensors"
OPTIM_FILE = "optimizer.safetensors"
JSON_FILE = "checkpoint.json"
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


@dataclass
class Checkpoint:
    path: str
    model_id: str
    arch: str
    kwargs: dict[str, Any]
    model: nn.Module | None
    normalizer: Normalizer | None
    channels: list[str] | None
    state: dict[str, Any] = field(default_factory=dict)
    optimizer_state: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _describe(model: nn.Module, normalizer: Normalizer | None, channels) -> dict[str, Any]:
    arch = getattr(model, "arch", None)
    kwargs = getattr(model, "init_kwargs", None)
    if arch is None or kwargs is None:
        raise ValueError("the model has no arch/init_kwargs: build it with create_model")
    return {
        "format": FORMAT,
        "version": VERSION,
        "arch": arch,
        "kwargs": dict(kwargs),
        "normalizer": None if normalizer is None else normalizer.to_dict(),
        "channels": None if channels is None else list(channels),
    }


def _flatten_optimizer(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for pid, st in sd["state"].items():
        for key, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{int(pid)}.{key}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{int(pid)}.{key}"] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, t in tensors.items():
        _, pid, key = name.split(".", 2)
        state.setdefault(int(pid), {})[key] = t
    for name, v in meta.get("scalars", {}).items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = v
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": {pid: state[pid] for pid in sorted(state)}, "param_groups": groups}


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=True))


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    normalizer: Normalizer | None = None,
    channels=None,
    optimizer: torch.optim.Optimizer | None = None,
    state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> str:
    """Write the checkpoint directory `path` (replacing one there); returns the model id."""
    model = getattr(model, "module", model)  # DDP-wrapped
    path = Path(path)
    desc = _describe(model, normalizer, channels)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(weights, tmp / MODEL_FILE, metadata={META_KEY: json.dumps(desc, sort_keys=True)})
        model_id = sha256_file(tmp / MODEL_FILE)
        record = {**desc, "model_id": model_id, "state": dict(state or {}), "extra": dict(extra or {})}
        if optimizer is not None:
            tensors, meta = _flatten_optimizer(optimizer.state_dict())
            save_file(tensors, tmp / OPTIM_FILE)
            record["optimizer"] = meta
        _write_json(tmp / JSON_FILE, record)
        old = path.with_name(path.name + ".old")
        if old.exists():
            shutil.rmtree(old)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return model_id


def resolve_path(name_or_path: str | os.PathLike) -> Path:
    """The checkpoint directory of: a directory, its model.safetensors / checkpoint.json, a shipped name."""
    p = Path(name_or_path)
    old = Path(str(p) + ".old")
    if not p.is_file() and not (p / MODEL_FILE).is_file() and (old / MODEL_FILE).is_file():
        return old  # interrupted between the two renames of save_checkpoint
    if p.is_dir():
        return p
    if p.is_file() and p.name in (MODEL_FILE, JSON_FILE):
        return p.parent
    if p.is_file() and p.suffix == ".safetensors":
        return p
    shipped = PRETRAINED_DIR / str(name_or_path)
    if os.sep not in str(name_or_path) and shipped.is_dir():
        return shipped
    names = sorted(d.name for d in PRETRAINED_DIR.iterdir() if d.is_dir()) if PRETRAINED_DIR.is_dir() else []
    raise InputError(
        os.fspath(name_or_path),
        "no such checkpoint (not a checkpoint directory, a .safetensors "
        f"file or a shipped model; shipped: {', '.join(names) or 'none'})",
    )


def read_description(path: str | os.PathLike) -> dict[str, Any]:
    """The architecture/normalizer/channels description stored in a weights file (reads the header only)."""
    p = resolve_path(path)
    weights = p if p.is_file() else p / MODEL_FILE
    if not weights.is_file():
        raise InputError(os.fspath(p), f"no {MODEL_FILE} in the checkpoint directory")
    try:
        with safe_open(weights, framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise InputError(os.fspath(weights), f"not a safetensors file ({e})") from None
    try:
        desc = json.loads(meta[META_KEY])
    except (KeyError, ValueError):
        raise InputError(os.fspath(weights), "safetensors file without an e2ecompress description") from None
    if desc.get("format") != FORMAT or not isinstance(desc.get("version"), int):
        raise InputError(os.fspath(weights), "not an e2ecompress checkpoint")
    if desc["version"] > VERSION:
        raise InputError(os.fspath(weights), f"checkpoint version {desc['version']} is newer than {VERSION}")
    return desc


def _channels_text(kwargs: dict[str, Any], channels) -> str:
    names = f" ({', '.join(channels)})" if channels else ""
    return f"in_chans={kwargs.get('in_chans')}{names}"


def check_compatible(
    desc: dict[str, Any],
    path: str,
    *,
    arch: str | None = None,
    in_chans: int | None = None,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """InputError unless the checkpoint is `arch` (with these kwargs) for `in_chans` channels."""
    have = f"{desc['arch']} with {_channels_text(desc['kwargs'], desc.get('channels'))}"
    if arch is not None and desc["arch"] != arch:
        raise InputError(path, f"holds a {have}, not a {arch}")
    if in_chans is not None and desc["kwargs"].get("in_chans") != in_chans:
        raise InputError(path, f"holds a {have}; the data has {in_chans} channels")
    for k, v in (kwargs or {}).items():
        if desc["kwargs"].get(k) != v:
            raise InputError(path, f"holds a {have} with {k}={desc['kwargs'].get(k)!r}, expected {v!r}")


def load_checkpoint(
    path: str | os.PathLike,
    *,
    arch: str | None = None,
    in_chans: int | None = None,
    build: bool = True,
    with_optimizer: bool = False,
) -> Checkpoint:
    """Read a checkpoint; rebuild the model and load its weights (strict) when `build`.

    arch / in_chans: what the caller expects; anything else is an InputError naming the difference.
    """
    p = resolve_path(path)
    desc = read_description(p)
    where = os.fspath(p)
    check_compatible(desc, where, arch=arch, in_chans=in_chans)
    if not is_model(desc["arch"]):
        raise InputError(where, f"architecture {desc['arch']!r} is not registered in this version")
    weights_path = p if p.is_file() else p / MODEL_FILE
    record: dict[str, Any] = {}
    if p.is_dir() and (p / JSON_FILE).is_file():
        record = json.loads((p / JSON_FILE).read_text())
    model = None
    if build:
        model = create_model(desc["arch"], **desc["kwargs"])
        load_weights(model, weights_path)
        model.eval()
    optim_state = None
    if with_optimizer and "optimizer" in record and (p / OPTIM_FILE).is_file():
        optim_state = _unflatten_optimizer(load_file(p / OPTIM_FILE), record["optimizer"])
    normalizer = Normalizer.from_dict(desc["normalizer"]) if desc.get("normalizer") else None
    return Checkpoint(
        path=where,
        model_id=sha256_file(weights_path),
        arch=desc["arch"],
        kwargs=desc["kwargs"],
        model=model,
        normalizer=normalizer,
        channels=desc.get("channels"),
        state=record.get("state", {}),
        optimizer_state=optim_state,
        extra=record.get("extra", {}),
    )


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """Load a weights file into `model` (strict); InputError when architecture or shapes differ."""
    model = getattr(model, "module", model)
    p = resolve_path(path)
    weights = p if p.is_file() else p / MODEL_FILE
    desc = read_description(weights)
    check_compatible(
        desc, os.fspath(weights), arch=getattr(model, "arch", None), in_chans=getattr(model, "in_chans", None)
    )
    state = load_file(weights)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        first = " ".join(str(e).split())[:300]
        raise InputError(os.fspath(weights), f"weights do not fit the model: {first}") from None


def load_model(name_or_path: str | os.PathLike) -> nn.Module:
    """A ready model (eval mode) from a checkpoint path or a shipped name; carries `normalizer`,
    `channels` and `model_id` attributes."""
    ckpt = load_checkpoint(name_or_path)
    model = ckpt.model
    model.normalizer = ckpt.normalizer
    model.channels = ckpt.channels
    model.model_id = ckpt.model_id
    return model
