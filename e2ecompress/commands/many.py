"""`e2ecompress pack|unpack` of many shards: what a command line means many, and the per-shard report."""

from __future__ import annotations

import glob
import os
import sys
from collections.abc import Sequence
from typing import Any

from e2ecompress.distributed import ShardResult, pack_many, unpack_many


def is_many(inputs: Sequence[str], output: str) -> bool:
    """Whether a pack / unpack command line means many shards: several inputs, a glob pattern or a
    directory in, or a directory out (an existing one, or a path ending with a separator)."""
    if len(inputs) != 1:
        return True
    src = inputs[0]
    seps = tuple(s for s in (os.sep, os.altsep, "/") if s)
    return (
        os.path.isdir(src)
        or (not os.path.exists(src) and glob.has_magic(src))
        or output.endswith(seps)
        or os.path.isdir(output)
    )


def cli_many(kind: str, inputs: Sequence[str], output: str, *, quiet: bool = False, **kwargs: Any) -> int:
    """`e2ecompress pack|unpack` for many shards: a line per shard as it finishes (failures on stderr),
    a total line, and exit code 2 when any shard failed."""
    verb = "packed" if kind == "pack" else "unpacked"

    def report(result: ShardResult) -> None:
        if not result.ok:
            print(f"e2ecompress: error: {result.error}", file=sys.stderr)
        elif not quiet:
            print(result.line(verb), flush=True)

    run = pack_many if kind == "pack" else unpack_many
    summary = run(inputs, output, on_result=report, **kwargs)
    print(summary.line())
    if summary.failed:
        names = ", ".join(s.input for s in summary.failed)
        print(f"e2ecompress: error: {len(summary.failed)} shard(s) failed: {names}", file=sys.stderr)
        return 2
    return 0
