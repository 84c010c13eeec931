"""File-system guards shared by the writers: never write over an input, clean temporaries of dead runs."""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from e2ecompress.errors import InputError

_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:32] or "host"
# `.{base}.partial-{host}-{pid}[.k]` (.e2ez writer; older files: no host), `.{base}.{pid}.{hex}.tmp` (io)
_PARTIAL = re.compile(r"\.(?P<base>.+)\.partial-(?:(?P<host>[A-Za-z0-9_-]+)-)?(?P<pid>\d+)(?:\.\d+)?")
_TMP = re.compile(r"\.(?P<base>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp")


def temp_name(base: str) -> str:
    """The temporary name `.{base}.partial-{host}-{pid}` for a file being written to `base`."""
    return f".{base}.partial-{_HOST}-{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or an impossible pid): leave its file alone
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[str]:
    """Remove the temporaries that killed runs (of this host) left beside `path`; returns their names.

    A temporary is stale when the process that named it no longer runs; files of live processes and of
    other hosts (a shared file system) are left alone."""
    path = os.path.abspath(os.fspath(path))
    directory, base = os.path.split(path)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        m = _PARTIAL.fullmatch(name) or _TMP.fullmatch(name)
        if m is None or m["base"] != base:
            continue
        host = m.groupdict().get("host")
        if host not in (None, _HOST) or _pid_alive(int(m["pid"])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
            removed.append(name)
    return removed


def _same(a: str, b: str) -> bool:
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)  # hard links, bind mounts
    except OSError:
        return False


def refuse_overwriting_inputs(
    inputs: Iterable[str | os.PathLike], outputs: Iterable[str | os.PathLike]
) -> None:
    """InputError when an output path is (or links to) one of the inputs: checked before anything is
    written, so an input is never replaced."""
    ins = [os.fspath(p) for p in inputs]
    for out in map(os.fspath, outputs):
        for src in ins:
            if _same(out, src):
                raise InputError(out, f"is the input {src}; choose another output path (nothing written)")


def json_safe(value: Any) -> Any:
    """`value` as plain JSON data: dicts (keys json accepts are kept, other keys become str), lists and
    tuples -> lists, numpy scalars and arrays -> Python numbers and lists, paths -> str, NaN / inf -> None,
    anything else -> str(value)."""
    if isinstance(value, dict):
        return {_json_key(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    np = sys.modules.get("numpy")  # numpy values exist only once numpy is imported
    if np is not None and isinstance(value, np.generic | np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def _json_key(key: Any) -> Any:
    if key is None or isinstance(key, bool | int | float | str):
        return key
    np = sys.modules.get("numpy")
    if np is not None and isinstance(key, np.generic):
        return _json_key(key.item())
    if isinstance(key, os.PathLike):
        return os.fspath(key)
    return str(key)


_counter = itertools.count(1)


def atomic_write(path: str | os.PathLike, data: bytes | str, *, fsync: bool = False) -> None:
    """Write `data` (str: UTF-8) to `path` all at once: into a new temporary file
    `.{name}.partial-{host}-{pid}.{k}` beside it, then os.replace; the temporary is removed on failure, so
    `path` holds either its old content or the new one. fsync=True flushes the file to disk first."""
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    if isinstance(data, str):
        data = data.encode("utf-8")
    stem = os.path.join(directory, temp_name(base))
    while True:
        tmp = f"{stem}.{next(_counter)}"
        try:
            fh = open(tmp, "xb")
        except FileExistsError:
            continue
        break
    try:
        with fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json(
    path: str | os.PathLike, obj: Any, *, indent: int | None = 2, sort_keys: bool = True, fsync: bool = False
) -> None:
    """Write json_safe(obj) as strict JSON (ASCII, one trailing newline) to `path` with atomic_write."""
    text = json.dumps(json_safe(obj), indent=indent, sort_keys=sort_keys, allow_nan=False)
    atomic_write(path, text + "\n", fsync=fsync)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Write a directory all at once: yields a new temporary directory `.{name}.XXXXXXXX` beside `path`
    (parents created); when the block ends without an exception it takes `path`'s place (an old `path`
    goes to `{name}.old` for the swap and is then removed), otherwise it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        old = path.with_name(path.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
