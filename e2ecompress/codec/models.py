"""The latent models of the codec: loaded by name or checkpoint directory, embedded in an .e2ez as
attachments (`model/<checkpoint file>`) and loaded back from them.

torch, safetensors and the checkpoint module are imported only when a model is loaded or embedded (the
ml extra), so that importing this module costs nothing in the base install.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

from e2ecompress.errors import E2EError, InputError

if TYPE_CHECKING:
    from e2ecompress.codec.latent import LatentCodec

DEFAULT_MODEL = "latent_qg3_default"
ATTACHMENT_PREFIX = "model/"  # an embedded model's files are the attachments model/<file name>


def _require() -> None:
    from e2ecompress._extras import require

    require("the learned latent codec (lossy mode, --predictor model)", "ml", ("torch", "safetensors"))


def _checkpoint_files() -> tuple[str, ...]:
    """The files of a latent checkpoint directory that an .e2ez embeds, in the order it stores them."""
    from e2ecompress.models.checkpoint import JSON_FILE, MODEL_FILE

    return (MODEL_FILE, JSON_FILE)


def load(name_or_path: str | os.PathLike) -> LatentCodec:
    """A LatentCodec from a shipped model name or a checkpoint directory; E2EError naming the extra when
    the ml extra is missing, InputError when the checkpoint cannot be read."""
    _require()
    from e2ecompress.codec.latent import LatentCodec

    try:
        return LatentCodec.load(name_or_path)
    except E2EError:
        raise
    except (OSError, ValueError, KeyError) as e:
        raise InputError(os.fspath(name_or_path), f"cannot load the model ({e})") from None


def attachments(latent: LatentCodec) -> dict[str, bytes]:
    """The attachments that embed a loaded model in an .e2ez: {"model/<file>": the file's bytes}."""
    return {ATTACHMENT_PREFIX + name: (Path(latent.path) / name).read_bytes() for name in _checkpoint_files()}


def from_attachments(names: Collection[str], read: Callable[[str], bytes]) -> LatentCodec | None:
    """The model embedded in an .e2ez whose attachments are `names` (`read(name)` gives one's bytes), or
    None when it embeds none. The checkpoint loader reads directories only, so the files go through a
    temporary directory that is removed once the model is loaded."""
    _require()
    files = _checkpoint_files()
    if ATTACHMENT_PREFIX + files[0] not in names:
        return None
    with tempfile.TemporaryDirectory(prefix="e2ez-model-") as tmp:
        for name in files:
            Path(tmp, name).write_bytes(read(ATTACHMENT_PREFIX + name))
        return load(tmp)
