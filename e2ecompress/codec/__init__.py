"""The image codec and its parts.

- `rans`: rANS with static per-dimension tables (C++), `intcode`: adaptive integer streams over it;
- `sparse`: exact occupancy, block (HCAL tower) planes and predicted quantized / lossless values;
- `latent`: the learned latent codec (MAE encoder -> bottleneck -> rANS; MAE decoder);
- `image`: `CodecConfig` + `ImageCodec`, one chunk of images <-> named byte streams (.e2ez chunks);
- `numcodecs_codec`: `E2ECodec`, the same codec for numcodecs / zarr.
- `options`: `PackOptions` (the options of a pack, checked once) and `make_config`;
- `header`: `PackHeader`, the .e2ez JSON header;
- `models`: latent models loaded by name or directory, embedded in an .e2ez and loaded back.
"""

from e2ecompress.codec.rans import (
    EscapeTable,
    RansTable,
    build_tables,
    compress,
    compress_symbols,
    cost_bits,
    decompress,
    decompress_symbols,
    histogram,
    simd,
    table_sha256,
)

__all__ = [
    "EscapeTable",
    "RansTable",
    "build_tables",
    "compress",
    "compress_symbols",
    "cost_bits",
    "decompress",
    "decompress_symbols",
    "histogram",
    "simd",
    "table_sha256",
]
