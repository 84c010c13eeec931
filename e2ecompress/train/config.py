"""Run configurations as dataclasses, filled from defaults, a YAML/JSON file and `key=value` overrides.

Resolution order (later wins): the command's defaults -> `--config FILE` -> explicit CLI flags -> `--set`.
Keys are dotted paths into the dataclasses (`optim.lr`, `data.batch_size`, `model.kwargs.depth`); values
are parsed as YAML (`1e-3`, `true`, `null`, `[0.9, 0.95]`). Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from e2ecompress.errors import InputError
from e2ecompress.models.registry import DEFAULT_CLASSIFIER, DEFAULT_MAE

TRAIN_COMMANDS = ("pretrain", "finetune", "linprobe", "scratch")


class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads 1e-3 (no dot) as a string; here it is a float, as in JSON and YAML 1.2."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_load(text):
    return yaml.load(text, Loader=_Loader)  # a SafeLoader subclass: no arbitrary objects


@dataclass
class DataConfig:
    root: str = ""  # a make-dataset directory: {labelled,unlabelled}/{train,val,test}/shard-*.parquet
    batch_size: int = 64
    eval_batch_size: int = 128
    max_train_jets: int | None = None  # the first N jets of the training split (shard order)
    max_val_jets: int | None = None
    label_fraction: float = 1.0  # classifiers: a class-balanced subset of labelled/train
    label_seed: int = 0  # the subset depends on this only, not on the training seed


@dataclass
class ModelConfig:
    name: str = DEFAULT_MAE  # registry name; finetune/linprobe take it from --init
    kwargs: dict[str, Any] = field(default_factory=dict)  # create_model overrides (depth, sparse, ...)


@dataclass
class OptimConfig:
    lr: float = 1e-3  # peak learning rate (absolute, not scaled by the batch size)
    min_lr: float = 1e-6
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_epochs: float = 1.0
    layer_decay: float = 1.0  # finetune: lr scale decay^(depth + 1 - layer) from the head down
    clip_grad: float | None = None


@dataclass
class TrainConfig:
    command: str = "pretrain"
    out: str = ""  # run directory: config.json, train.log, metrics.jsonl, checkpoints/{last,best}
    init: str | None = None  # pretrained MAE checkpoint (finetune, linprobe; scratch: architecture only)
    epochs: int = 20
    seed: int = 0
    mask_ratio: float | None = None  # pretrain: None uses the model's
    device: str = "cpu"  # cpu, cuda or auto
    threads: int | None = None  # torch threads per process (None: torch's default)
    progress: bool = True
    stop_after_epochs: int | None = None  # end this invocation early (continue with --resume)
    # step budget: an "epoch" is this many optimizer steps (batches drawn from fresh shuffles of the
    # training set), so runs on 1% and 100% of the labels take the same number of steps
    steps_per_epoch: int | None = None
    patience: int | None = None  # early stopping: end after this many epochs without a better val score
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)


@dataclass
class EvalConfig:
    checkpoint: str = ""
    root: str = ""
    subset: str | None = None  # labelled / unlabelled; default: labelled for classifiers, unlabelled for MAE
    split: str = "test"
    out: str | None = None  # metrics JSON path (printed either way)
    batch_size: int = 128
    max_jets: int | None = None
    mask_ratio: float | None = None  # MAE: None uses the model's
    seed: int = 0  # MAE: the masking noise
    device: str = "cpu"
    threads: int | None = None
    progress: bool = True


@dataclass
class BenchConfig:
    root: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    steps: int = 20
    batch_size: int = 32
    lr: float = 1e-3
    mask_ratio: float = 0.75
    val_jets: int = 256
    seed: int = 0
    out: str | None = None
    threads: int | None = None
    progress: bool = True


def default_config(command: str) -> TrainConfig:
    """Per-command defaults, tuned for short CPU runs (see configs/*.yaml for the study's settings)."""
    if command not in TRAIN_COMMANDS:
        raise InputError(None, f"unknown command {command!r} (known: {', '.join(TRAIN_COMMANDS)})")
    cfg = TrainConfig(command=command)
    if command == "pretrain":
        cfg.optim = OptimConfig(lr=1e-3, weight_decay=0.05, betas=(0.9, 0.95), warmup_epochs=1.0)
    elif command == "finetune":
        cfg.model = ModelConfig(DEFAULT_CLASSIFIER, {"drop_path_rate": 0.1})
        cfg.optim = OptimConfig(
            lr=5e-4, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=1.0, layer_decay=0.75
        )
        cfg.epochs = 10
    elif command == "scratch":
        cfg.model = ModelConfig(DEFAULT_CLASSIFIER, {"drop_path_rate": 0.1})
        cfg.optim = OptimConfig(lr=1e-3, weight_decay=0.05, betas=(0.9, 0.999), warmup_epochs=1.0)
        cfg.epochs = 10
    else:  # linprobe: only BatchNorm(affine=False) + Linear trains, on cached frozen features
        cfg.model = ModelConfig(DEFAULT_CLASSIFIER, {})
        cfg.optim = OptimConfig(lr=3e-3, min_lr=0.0, weight_decay=0.0, betas=(0.9, 0.999), warmup_epochs=1.0)
        cfg.epochs = 10
    return cfg


# --- generic dataclass <- dict ------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, key)
            except InputError as e:
                errors.append(e)
        raise errors[0]
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise InputError(None, f"config {key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, args, strict=True))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise InputError(None, f"config {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is bool and isinstance(value, bool):
        return value
    if tp is str and isinstance(value, str | int | float) and not isinstance(value, bool):
        return str(value)
    if tp is Any:
        return value
    raise InputError(None, f"config {key}: expected {_type_name(tp)}, got {value!r}")


def apply_dict(obj: Any, values: dict[str, Any], prefix: str = "") -> Any:
    """Update dataclass `obj` in place from a nested mapping; unknown keys raise InputError."""
    if not isinstance(values, dict):
        raise InputError(None, f"config {prefix or 'file'}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in values.items():
        key = f"{prefix}{k}"
        if k not in names:
            raise InputError(None, f"unknown config key {key!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, k)
        if dataclasses.is_dataclass(current):
            apply_dict(current, v, f"{key}.")
        else:
            setattr(obj, k, _coerce(v, hints[k], key))
    return obj


def parse_override(text: str) -> dict[str, Any]:
    """'optim.lr=1e-3' -> {'optim': {'lr': 0.001}} (the value parsed as YAML)."""
    if "=" not in text:
        raise InputError(None, f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return nested(key.strip(), value)


def nested(key: str, value: Any) -> dict[str, Any]:
    """'a.b.c', v -> {'a': {'b': {'c': v}}}."""
    parts = key.split(".")
    if not all(parts):
        raise InputError(None, f"bad config key {key!r}")
    out: dict[str, Any] = {}
    node = out
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Deep merge of nested dicts (extra wins)."""
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_file(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML or JSON config file as a dict (a `command:` key, if any, is left for the caller)."""
    path = os.fspath(path)
    try:
        with open(path) as f:
            data = yaml_load(f)
    except OSError as e:
        raise InputError(path, f"cannot read config ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise InputError(path, f"not valid YAML/JSON: {' '.join(str(e).split())[:200]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(path, "a config file must hold a mapping")
    return data


def to_dict(cfg: Any) -> dict[str, Any]:
    return asdict(cfg)


def to_json(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def validate(cfg: TrainConfig) -> TrainConfig:
    if cfg.command not in TRAIN_COMMANDS:
        raise InputError(None, f"unknown command {cfg.command!r}")
    if not cfg.data.root:
        raise InputError(None, "no dataset: give --data DIR (a make-dataset output)")
    if not cfg.out:
        raise InputError(None, "no run directory: give --out DIR")
    if cfg.steps_per_epoch is not None and cfg.steps_per_epoch < 1:
        raise InputError(None, f"steps_per_epoch must be >= 1, got {cfg.steps_per_epoch}")
    if cfg.patience is not None and cfg.patience < 1:
        raise InputError(None, f"patience must be >= 1, got {cfg.patience}")
    if cfg.epochs < 1:
        raise InputError(None, f"epochs must be >= 1, got {cfg.epochs}")
    if cfg.data.batch_size < 1 or cfg.data.eval_batch_size < 1:
        raise InputError(None, "batch sizes must be >= 1")
    if not 0.0 < cfg.data.label_fraction <= 1.0:
        raise InputError(None, f"label fraction must be in (0, 1], got {cfg.data.label_fraction}")
    if cfg.command in ("finetune", "linprobe") and not cfg.init:
        raise InputError(None, f"{cfg.command} needs a pretrained MAE checkpoint: give --init PATH")
    if cfg.mask_ratio is not None and not 0.0 <= cfg.mask_ratio < 1.0:
        raise InputError(None, f"mask ratio must be in [0, 1), got {cfg.mask_ratio}")
    if not 0.0 < cfg.optim.layer_decay <= 1.0:
        raise InputError(None, f"layer decay must be in (0, 1], got {cfg.optim.layer_decay}")
    if cfg.device not in ("cpu", "cuda", "auto"):
        raise InputError(None, f"device must be cpu, cuda or auto, got {cfg.device!r}")
    return cfg
