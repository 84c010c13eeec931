"""Entropy coding for the latent codec: rANS with static per-dimension tables (`e2ecompress.codec.rans`)."""

from e2ecompress.codec.rans import (
    EscapeTable,
    RansTable,
    build_tables,
    cost_bits,
    decode,
    decode_symbols,
    encode,
    encode_symbols,
    histogram,
    simd,
    table_sha256,
)

__all__ = [
    "EscapeTable",
    "RansTable",
    "build_tables",
    "cost_bits",
    "decode",
    "decode_symbols",
    "encode",
    "encode_symbols",
    "histogram",
    "simd",
    "table_sha256",
]
