"""A run directory: resolved config, log file, per-epoch metrics, checkpoints. Only rank 0 writes.

RUN/config.json          the resolved configuration (+ world size, versions)
RUN/train.log            the log (also on stderr)
RUN/metrics.jsonl        one JSON record per epoch: train loss, val metrics, lr, jets/s, wall time
RUN/checkpoints/last/    written after every epoch (what --resume continues from)
RUN/checkpoints/best/    the best epoch on the validation split
"""

from __future__ import annotations

import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from e2ecompress.train.dist import DistInfo


class _TqdmHandler(logging.Handler):
    """Log lines that do not break a progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stderr)


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None so metrics.jsonl stays strict JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj


def write_json(path: str | Path, obj: Any) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_json_safe(obj), indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


class RunDir:
    def __init__(self, out: str | Path, info: DistInfo, progress: bool = True):
        self.path = Path(out)
        self.info = info
        self.progress = progress and info.is_main
        self.last = self.path / "checkpoints" / "last"
        self.best = self.path / "checkpoints" / "best"
        self.logger = logging.getLogger(f"e2ecompress.train.run{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        fmt = logging.Formatter(f"%(asctime)s [rank {info.rank}] %(message)s", "%Y-%m-%d %H:%M:%S")
        console = _TqdmHandler(logging.INFO if info.is_main else logging.WARNING)
        console.setFormatter(fmt)
        self.logger.addHandler(console)
        if info.is_main:
            self.path.mkdir(parents=True, exist_ok=True)
            file = logging.FileHandler(self.path / "train.log")
            file.setFormatter(fmt)
            self.logger.addHandler(file)

    def log(self, msg: str, *args: Any) -> None:
        self.logger.info(msg, *args)

    def warn(self, msg: str, *args: Any) -> None:
        self.logger.warning(msg, *args)

    def has_checkpoint(self) -> bool:
        return (self.last / "model.safetensors").is_file() or (
            self.path / "checkpoints" / "last.old"
        ).is_dir()

    def save_config(self, cfg: dict[str, Any]) -> None:
        if self.info.is_main:
            write_json(self.path / "config.json", cfg)

    def record(self, rec: dict[str, Any]) -> None:
        if self.info.is_main:
            with open(self.path / "metrics.jsonl", "a") as f:
                f.write(json.dumps(_json_safe(rec), sort_keys=True) + "\n")

    def records(self) -> list[dict[str, Any]]:
        p = self.path / "metrics.jsonl"
        return (
            [json.loads(line) for line in p.read_text().splitlines() if line.strip()] if p.is_file() else []
        )

    def bar(self, total: int, desc: str) -> tqdm:
        return tqdm(
            total=total,
            desc=desc,
            unit="batch",
            leave=False,
            disable=not self.progress,
            file=sys.stderr,
            dynamic_ncols=True,
        )

    def close(self) -> None:
        for h in list(self.logger.handlers):
            self.logger.removeHandler(h)
            h.close()
