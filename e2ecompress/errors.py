"""Exceptions that the CLI turns into one clear line and exit code 2."""

from __future__ import annotations

import os


class E2EError(Exception):
    """Base class for user-facing errors (bad input, corrupt files, wrong model)."""


class InputError(E2EError, ValueError):
    """A file or argument that cannot be used: names the file and the problem."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class DecodeError(E2EError, ValueError):
    """A compressed stream or container that is corrupt or truncated."""


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (Arrow and HDF5 messages span several)."""
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
