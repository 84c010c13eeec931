"""File-system guards shared by the writers: never write over an input, clean temporaries of dead runs."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Iterable

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
