"""Optional dependencies, installed as extras of the package.

The base install (numpy, pyarrow, zstandard, h5py) packs, unpacks and inspects with the classical modes
(--max-error, --lossless). The rest comes with extras:

    ml        the learned latent codec (--latent, --predictor model), training, the study    torch, ...
    generate  make-dataset, demo: Pythia 8 + FastJet jet generation, the detector simulation
    dist      pack / unpack of many shards on several workers or a Dask cluster
    zarr      the numcodecs / zarr codec
    plot      `e2ecompress show`

A command that needs a missing extra raises `MissingExtraError`, which the command lines print as one
line naming the `pip install` to run, and exit with code 2.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Sequence
from typing import Any

from e2ecompress.errors import E2EError

# extra -> the top-level modules it provides (import names)
EXTRAS: dict[str, tuple[str, ...]] = {
    "ml": ("torch", "safetensors", "yaml", "sklearn", "matplotlib", "tqdm"),
    "generate": ("pythia8mc", "fastjet", "awkward", "numba", "tqdm"),
    "dist": ("distributed",),
    "zarr": ("numcodecs", "zarr"),
    "plot": ("matplotlib",),
}
# import name -> what pip calls it, where they differ
_PIP_NAMES = {"yaml": "pyyaml", "sklearn": "scikit-learn", "distributed": "dask[distributed]"}


class MissingExtraError(E2EError, ImportError):
    """A command needs modules of an extra that is not installed; says which `pip install` to run."""

    def __init__(self, what: str, missing: Sequence[str], extras: Sequence[str]):
        self.what = what
        self.missing = tuple(missing)
        self.extras = tuple(extras)
        names = ", ".join(_PIP_NAMES.get(m, m) for m in self.missing)
        super().__init__(
            f"{what} needs {names}, not installed: pip install 'e2ecompress[{','.join(self.extras)}]'"
        )


def available(module: str) -> bool:
    """True when top-level `module` can be imported (looked up, not imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(what: str, extras: str | Sequence[str], modules: Iterable[str] | None = None) -> None:
    """Raise MissingExtraError unless every module of `extras` (or just `modules`) is installed.

    what: the feature or command that needs them, as the user would name it ("pack --quality").
    """
    extras = (extras,) if isinstance(extras, str) else tuple(extras)
    if modules is None:
        modules = [m for e in extras for m in EXTRAS[e]]
    missing = [m for m in dict.fromkeys(modules) if not available(m)]
    if missing:
        lacking = [e for e in extras if any(m in EXTRAS[e] for m in missing)] or list(extras)
        raise MissingExtraError(what, missing, lacking)


class _NoBar:
    """Stands in for a tqdm bar when tqdm is not installed: progress is simply not shown."""

    def update(self, n: int = 1) -> None:
        pass

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True, **kwargs: Any) -> Any:
    """A tqdm bar, or one that shows nothing when `enabled` is false or tqdm is not installed."""
    if not enabled or not available("tqdm"):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, **kwargs)
