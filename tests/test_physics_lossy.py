"""The physics levels (mode "physics", `pack --quality`): what every level keeps, determinism, inputs without
channel names, corrupt streams, pack's check and the CLI / API / numcodecs defaults."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sparse_images
from test_pack import assert_one_line_error, run_cli

from e2ecompress import api
from e2ecompress.codec import cone, physics_check
from e2ecompress.codec.image import CodecConfig, ImageCodec
from e2ecompress.codec.numcodecs_codec import E2ECodec
from e2ecompress.codec.physics_lossy import DEFAULT_LEVEL, LEVELS
from e2ecompress.errors import DecodeError, E2EError
from e2ecompress.io import open_jets
from e2ecompress.physics import jet_kinematics

CHANNELS = ("ECAL", "HCAL", "Tracks")
FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "jets_small.parquet")
SIZE = (125, 125)


@pytest.fixture(scope="module")
def jets() -> np.ndarray:
    """24 generated jets: ECAL, HCAL towers (5 x 5 blocks), tracks, noise."""
    with open_jets(FIXTURE) as f:
        return f.read(0, f.n_jets).images.copy()


def physics(level: int | None = None, channels=CHANNELS, size=SIZE) -> ImageCodec:
    return ImageCodec(CodecConfig(mode="physics", quality=level), channels, size)


def _cone_promises(x: np.ndarray, d: np.ndarray, level: int) -> None:
    """What a level keeps, checked pixel by pixel inside the cone (pixel planes)."""
    lv = LEVELS[level]
    inside = cone.pixel_cone(*x.shape[2:], lv.radius)
    xi, di = x[:, :, inside], d[:, :, inside]
    assert np.array_equal(xi != 0, di != 0)  # positions exact, zeros stay zeros
    nz = xi != 0
    assert (np.abs(di[nz].astype(np.float64) - xi[nz]) <= lv.max_rel * np.abs(xi[nz])).all()
    assert not np.isnan(d).any()
    outside = ~inside
    assert np.array_equal((x[:, :, outside] != 0).sum(-1), (d[:, :, outside] != 0).sum(-1))  # counts kept


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_every_level_keeps_its_promises(jets, level):
    codec = physics(level)
    streams, rec = codec.compress(jets)
    dec = codec.decompress(streams, len(jets))
    assert dec.dtype == np.float32 and np.array_equal(dec.view(np.int32), rec.view(np.int32))
    assert {"phys", "planes"} <= set(streams) and any(k.startswith("c1.blk.") for k in streams)
    rel, _ = physics_check.check(jets, dec, LEVELS[level])  # sums, towers, outside values too
    assert rel <= LEVELS[level].max_rel
    lv = LEVELS[level]
    inside = cone.pixel_cone(125, 125, lv.radius)
    for c in (0, 2):  # pixel channels: the same checks by hand
        _cone_promises(jets[:, c : c + 1], dec[:, c : c + 1], level)
        true = jets[:, c][:, inside].astype(np.float64).sum(-1)
        got = dec[:, c][:, inside].astype(np.float64).sum(-1)
        assert np.abs(got - true).max() <= (2.0 ** -(lv.sum_bits + 1) * (1 + lv.bound) + 1e-6) * true.max()
    true, got = jet_kinematics(jets, CHANNELS), jet_kinematics(dec, CHANNELS)
    for q in ("pt", "mass"):  # the kinematic cone (R = 0.4) lies inside the coded one
        assert np.abs(got[q] / true[q] - 1).max() < lv.max_rel


def test_levels_trade_size_for_precision(jets):
    sizes = [
        sum(len(v) for v in physics(q).compress(jets, decoded=False)[0].values()) for q in sorted(LEVELS)
    ]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert [LEVELS[q].max_rel for q in sorted(LEVELS)] == sorted(
        (LEVELS[q].max_rel for q in LEVELS), reverse=True
    )


def test_synthetic_shapes_signs_and_edge_cases(rng):
    """Odd sizes, one channel, negative values, mixed-sign planes, empty and all-zero chunks."""
    x = sparse_images(rng, 9, 2, 40, 33, occupancy=0.2)
    x[::2, 1] *= -1.0  # negative planes
    x[1, 0, 15:25, 10:20] *= np.where(rng.random((10, 10)) < 0.5, -1.0, 1.0).astype(np.float32)  # mixed
    for level in sorted(LEVELS):
        codec = physics(level, ("a", "b"), (40, 33))
        streams, rec = codec.compress(x)
        dec = codec.decompress(streams, len(x))
        assert np.array_equal(dec, rec)
        _cone_promises(x, dec, level)
        physics_check.check(x, dec, LEVELS[level])
    one = physics(3, ("only",), (8, 8))
    for chunk in (np.zeros((0, 1, 8, 8), np.float32), np.zeros((3, 1, 8, 8), np.float32)):
        streams, _ = one.compress(chunk)
        assert np.array_equal(one.decompress(streams, len(chunk)), chunk)


def test_encoding_is_deterministic_and_decoding_thread_independent(jets, tmp_path):
    codec = physics()
    a, _ = codec.compress(jets)
    b, _ = physics().compress(jets.copy())
    assert a == b
    out = tmp_path / "jets.e2ez"
    api.pack(FIXTURE, out, chunk_size=10)
    here = hashlib.sha256(api.read(out).images.tobytes()).hexdigest()
    script = (
        "import hashlib, sys; from e2ecompress import api; "
        "print(hashlib.sha256(api.read(sys.argv[1]).images.tobytes()).hexdigest())"
    )
    for threads in ("1", "3"):
        env = {**os.environ, "OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}
        r = subprocess.run([sys.executable, "-c", script, str(out)], env=env, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == here


def test_public_style_input_without_channel_names(jets, tmp_path):
    image_type = pa.list_(pa.list_(pa.list_(pa.float32())))
    table = pa.table({"X_jets": pa.array(jets.tolist(), type=image_type), "y": np.arange(len(jets)) % 2})
    public = tmp_path / "public.parquet"
    pq.write_table(table, public)
    with open_jets(public) as f:
        assert f.channels is None
    summary = api.pack(public, tmp_path / "p.e2ez")
    named = api.pack(FIXTURE, tmp_path / "n.e2ez")
    assert summary.mode == "physics" and summary.image_bytes == named.image_bytes  # towers found in data
    dec = api.read(tmp_path / "p.e2ez").images
    assert np.array_equal(dec, api.read(tmp_path / "n.e2ez").images)
    physics_check.check(jets, dec, LEVELS[DEFAULT_LEVEL])


def test_corrupt_streams_raise_decode_error(jets):
    codec = physics()
    streams, _ = codec.compress(jets[:12])
    rng = np.random.default_rng(3)
    for name, data in streams.items():
        cases = [dict(streams, **{name: data[: len(data) // 2]})] if data else []
        cases.append({k: v for k, v in streams.items() if k != name})
        for _ in range(4):
            if data:
                raw = bytearray(data)
                raw[int(rng.integers(len(raw)))] ^= 1 << int(rng.integers(8))
                cases.append(dict(streams, **{name: bytes(raw)}))
        for case in cases:
            try:
                dec = codec.decompress(case, 12)
            except DecodeError:
                continue
            assert name in case and len(case[name]) == len(data)  # a flip that decodes: images, not garbage
            assert dec.shape == jets[:12].shape and np.isfinite(dec).all()
    with pytest.raises(DecodeError):
        codec.decompress(dict(streams, phys=b"\x09" + streams["phys"][1:]), 12)


def test_corrupt_file_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "j.e2ez"
    api.pack(FIXTURE, out)
    raw = bytearray(out.read_bytes())
    raw[len(raw) // 2] ^= 0x10
    out.write_bytes(bytes(raw))
    code, _, err = run_cli(capsys, "unpack", out, tmp_path / "back.parquet")
    assert_one_line_error(code, err, "j.e2ez")


def test_pack_checks_what_it_wrote(tmp_path, monkeypatch):
    from e2ecompress.codec import physics_lossy

    real = physics_lossy.PhysicsCodec.decompress

    def broken(self, streams, n_jets, out=None):
        images = real(self, streams, n_jets, out)
        images[0, 0, 62, 62] = 0.0 if images[0, 0, 62, 62] else 1.0  # a position inside the cone
        return images

    monkeypatch.setattr(physics_lossy.PhysicsCodec, "decompress", broken)
    dst = tmp_path / "bad.e2ez"
    with pytest.raises(E2EError, match=r"bad\.e2ez: jets 0\.\.23: channel 0: .*inside the cone") as e:
        api.pack(FIXTURE, dst)
    assert "\n" not in str(e.value) and not dst.exists()


def test_values_beyond_the_grid_are_refused(tmp_path):
    x = np.zeros((2, 1, 9, 9), np.float32)
    x[0, 0, 4, 4] = 1e-40  # subnormal: no relative precision
    table = pa.table(
        {"X_jets": pa.array(x.tolist(), type=pa.list_(pa.list_(pa.list_(pa.float32())))), "y": [0, 1]}
    )
    src = tmp_path / "tiny.parquet"
    pq.write_table(table, src)
    with pytest.raises(E2EError, match=r"t\.e2ez: jets 0\.\.1: .*relative error"):
        api.pack(src, tmp_path / "t.e2ez")
    assert not (tmp_path / "t.e2ez").exists()


def test_cli_default_is_the_physics_level(tmp_path, capsys):
    out = tmp_path / "d.e2ez"
    code, text, _ = run_cli(capsys, "pack", FIXTURE, out, "--quiet")
    assert code == 0 and "(physics)" in text
    codec = api.inspect(out)["header"]["codec"]
    assert codec["mode"] == "physics" and codec["quality"] == DEFAULT_LEVEL == api.DEFAULT_LEVEL
    assert run_cli(capsys, "pack", FIXTURE, tmp_path / "q1.e2ez", "--quality", "1")[0] == 0
    assert api.inspect(tmp_path / "q1.e2ez")["header"]["codec"] == {**codec, "quality": 1}
    assert (tmp_path / "q1.e2ez").stat().st_size < out.stat().st_size
    for argv, needle in (
        (["--latent", "--max-error", "0.1"], "--latent"),
        (["--keep-fraction", "0.5"], "--keep-fraction"),
        (["--quality", "2", "--predictor", "model"], "--predictor"),
    ):
        code, _, err = run_cli(capsys, "pack", FIXTURE, tmp_path / "x.e2ez", *argv)
        assert_one_line_error(code, err, needle)
    with pytest.raises(SystemExit):
        run_cli(capsys, "pack", FIXTURE, tmp_path / "x.e2ez", "--quality", "6")
    assert "--quality" in capsys.readouterr().err and not (tmp_path / "x.e2ez").exists()


def test_api_and_numcodecs_defaults(jets):
    assert api.make_config() == CodecConfig(mode="physics", quality=DEFAULT_LEVEL)
    assert api.make_config(quality=1).quality == 1 and api.make_config(quality=1).mode == "physics"
    assert api.make_config(latent=True) == CodecConfig(mode="lossy", quality=api.DEFAULT_QUALITY)
    with pytest.raises(ValueError, match="latent"):
        api.make_config(latent=True, lossless=True)
    for bad in (0, 6, 2.5):
        with pytest.raises(ValueError, match="physics quality"):
            CodecConfig(mode="physics", quality=bad)
    codec = E2ECodec()
    assert codec.get_config()["mode"] == "physics" and codec.get_config()["quality"] == DEFAULT_LEVEL
    frame = codec.encode(jets)
    dec = E2ECodec.from_config(codec.get_config()).decode(frame)
    physics_check.check(jets, dec, LEVELS[DEFAULT_LEVEL])


def test_channels_sharing_positions_in_the_cone(rng):
    """A second channel occupied exactly where the first is (track d0 beside track pT) codes its cone
    positions with the first as context, and still decodes to the same cone positions."""
    from conftest import sparse_images

    from e2ecompress.codec import ctxocc
    from e2ecompress.codec.image import CodecConfig, ImageCodec

    x = sparse_images(rng, 8, 2, occupancy=0.02)
    x[:, 1] = np.where(x[:, 0] != 0, np.abs(x[:, 0]) * 0.5 + np.float32(0.1), 0).astype(np.float32)
    codec = ImageCodec(CodecConfig(mode="physics", quality=3), ("a", "b"), (125, 125))
    streams, _ = codec.compress(x)
    assert ctxocc.uses_context(streams["c1.px.o"]) and not ctxocc.uses_context(streams["c0.px.o"])
    assert len(streams["c1.px.o"]) < 0.6 * len(streams["c0.px.o"])  # the model learns in a few planes
    dec = codec.decompress(streams, len(x))
    yy, xx = np.mgrid[:125, :125]
    cone = (yy - 62) ** 2 + (xx - 62) ** 2 < 24**2
    for c in range(2):
        assert np.array_equal(dec[:, c][:, cone] != 0, x[:, c][:, cone] != 0)
