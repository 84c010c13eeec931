"""Models: a lightweight ViT Masked Auto-Encoder and ViT classifier for jet images, their registry,
the per-channel input normalizer and safetensors checkpoints.

    model = create_model("mae_vit_tiny_patch8", in_chans=3)
    out = model(normalizer.normalize(imgs))          # MAEOutput(loss, pred, mask, mse_masked, mse_visible)
    save_checkpoint("run/ckpt", model, normalizer=normalizer)
    model = load_model("run/ckpt")                   # or a shipped model's name
"""

from e2ecompress.models.checkpoint import (
    Checkpoint,
    load_checkpoint,
    load_model,
    load_weights,
    read_description,
    save_checkpoint,
    sha256_file,
)
from e2ecompress.models.jet_mae import JetMAE
from e2ecompress.models.layers import count_params, sincos_pos_embed_2d
from e2ecompress.models.mae import MAEOutput, MaskedAutoencoderViT
from e2ecompress.models.normalizer import Normalizer
from e2ecompress.models.registry import (
    DEFAULT_CLASSIFIER,
    DEFAULT_MAE,
    classifier_for,
    create_model,
    list_models,
    register_model,
)
from e2ecompress.models.vit import VisionTransformer

__all__ = [
    "DEFAULT_CLASSIFIER",
    "DEFAULT_MAE",
    "Checkpoint",
    "JetMAE",
    "MAEOutput",
    "MaskedAutoencoderViT",
    "Normalizer",
    "VisionTransformer",
    "classifier_for",
    "count_params",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "load_weights",
    "read_description",
    "register_model",
    "save_checkpoint",
    "sha256_file",
    "sincos_pos_embed_2d",
]
