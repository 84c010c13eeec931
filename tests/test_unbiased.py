"""Bounded mode with unbiased=True: non-zero pixels stay non-zero, towers are within max_error as a whole."""

from __future__ import annotations

import numpy as np
import pytest
from test_codec import CHANNELS, SIZE, K, jet_images
from test_pack import run_cli

from e2ecompress import api
from e2ecompress.codec import sparse
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.io import Batch, write_jets


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    x, _ = jet_images(np.random.default_rng(21), 24)
    small = np.random.default_rng(22).random(x.shape) < 0.002  # hits below the bound, both signs
    small[:, 1] = False  # HCAL stays tower planes
    x[small] = np.random.default_rng(23).uniform(-0.05, 0.05, int(small.sum())).astype(np.float32)
    return x


@pytest.mark.parametrize("eps", [0.01, 0.1])
def test_unbiased_keeps_pixels_and_tower_sums(images, eps):
    plain = ImageCodec(CodecConfig(mode="bounded", max_error=eps), CHANNELS, SIZE)
    fair = ImageCodec(CodecConfig(mode="bounded", max_error=eps, unbiased=True), CHANNELS, SIZE)
    streams, rec = fair.compress(images)
    dec = fair.decompress(streams, len(images))
    assert dec.tobytes() == rec.tobytes()
    nz = images != 0
    assert (dec[~nz] == 0).all() and (dec[nz] != 0).all()
    assert np.abs(dec.astype(np.float64) - images).max() <= eps
    assert np.sign(dec[nz]).tolist() == np.sign(images[nz]).tolist()
    codes = sparse.find_block_offsets(images[:, 1], K)
    blocks = codes != sparse.FULL
    for planes in (images[blocks, 1], dec[blocks, 1]):
        assert (sparse.find_block_offsets(planes, K) == codes[blocks]).all()  # still tower planes
    towers = (
        sparse.to_blocks(p.astype(np.float64), codes[blocks], K) * K * K
        for p in (images[blocks, 1], dec[blocks, 1])
    )
    assert np.abs(np.subtract(*towers)).max() <= eps  # a tower's energy within eps
    lost = plain.decompress(plain.compress(images)[0], len(images))
    assert ((lost == 0) & nz).any()  # without the option small hits vanish


def test_unbiased_through_cli_and_numcodecs(images, tmp_path, capsys):
    src = tmp_path / "in.parquet"
    write_jets(src, [Batch(images)], channels=CHANNELS)
    code, _, _ = run_cli(capsys, "pack", src, tmp_path / "u.e2ez", "--max-error", "0.1", "--unbiased")
    assert code == 0
    assert api.inspect(tmp_path / "u.e2ez")["header"]["codec"]["unbiased"] is True
    dec = api.read(tmp_path / "u.e2ez").images
    assert (dec[images != 0] != 0).all()
    codec = E2ECodec("bounded", max_error=0.1, unbiased=True)
    assert E2ECodec.from_config(codec.get_config()).get_config() == codec.get_config()
    out = codec.decode(codec.encode(images))
    assert (out[images != 0] != 0).all()
    with pytest.raises(ValueError, match="bounded"):
        CodecConfig(mode="lossless", unbiased=True)
