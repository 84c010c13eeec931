"""Packing many shards: in-process and on Dask clusters, byte-identical to api.pack, with a manifest, failed
shards recorded, and workers killed mid-shard."""

from __future__ import annotations

import glob
import json
import os
import signal
import threading
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sparse_images

from e2ecompress import api, cli, distributed
from e2ecompress.codec.options import PackOptions
from e2ecompress.commands.many import is_many
from e2ecompress.errors import InputError
from e2ecompress.io import Batch, open_jets, write_jets

N_SHARDS, N_JETS = 4, 20
OPTS = {"max_error": 0.01, "chunk_size": 8}  # bounded: no model; 3 chunks per shard
CLUSTER_TIMEOUT = 120  # a loaded 2-core machine starts worker processes slowly


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    """4 parquet shards of 20 jets, and their .e2ez packed one by one with api.pack (the reference)."""
    rng = np.random.default_rng(7)
    src = tmp_path_factory.mktemp("shards")
    ref = tmp_path_factory.mktemp("serial")
    for i in range(N_SHARDS):
        table = pa.table({"y": rng.integers(0, 2, N_JETS).astype(np.float32)})
        write_jets(src / f"shard-{i:04d}.parquet", [Batch(sparse_images(rng, N_JETS), table)], channels="qg3")
        api.pack(src / f"shard-{i:04d}.parquet", ref / f"shard-{i:04d}.e2ez", **OPTS)
    return src, ref


def _same_as_serial(out, ref) -> None:
    for i in range(N_SHARDS):
        name = f"shard-{i:04d}.e2ez"
        assert (out / name).read_bytes() == (ref / name).read_bytes(), name


def _no_temp_files(out) -> None:
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def _manifest(out) -> dict:
    return json.loads((out / "manifest.json").read_text())


def test_expand_inputs_and_dispatch(shards, tmp_path):
    src, _ = shards
    names = [f"shard-{i:04d}.parquet" for i in range(N_SHARDS)]
    (src / "notes.txt").write_text("not a shard")
    try:
        assert distributed.expand_inputs(src, distributed.PACK_INPUTS) == [str(src / n) for n in names]
        assert distributed.expand_inputs(str(src / "*-000[12].parquet"), (".parquet",)) == [
            str(src / n) for n in names[1:3]
        ]
        files = [str(src / names[2]), str(src / names[0]), str(src / names[2])]
        assert distributed.expand_inputs(files, (".parquet",)) == files[:2]
    finally:
        (src / "notes.txt").unlink()
    with pytest.raises(InputError, match="no files match"):
        distributed.expand_inputs(str(tmp_path / "*.parquet"), (".parquet",))
    with pytest.raises(InputError, match="no such file"):
        distributed.expand_inputs([str(src / names[0]), str(tmp_path / "gone.parquet")], (".parquet",))
    with pytest.raises(InputError, match=r"no \*.e2ez files"):
        distributed.expand_inputs(tmp_path, (".e2ez",))

    one = str(src / names[0])
    assert not is_many([one], str(tmp_path / "x.e2ez"))
    assert not is_many([str(tmp_path / "missing.parquet")], "x.e2ez")
    assert is_many([one], str(tmp_path) + os.sep)
    assert is_many([one], str(tmp_path))  # an existing directory
    assert is_many([str(src)], "out")
    assert is_many([str(src / "*.parquet")], "out")
    assert is_many([one, one], "out")


def test_in_process_matches_api_and_manifest(shards, tmp_path):
    src, ref = shards
    out = tmp_path / "packed"
    seen = []
    done = distributed.pack_many(str(src / "*.parquet"), out, on_result=seen.append, **OPTS)
    assert done.runner == "in-process" and len(seen) == N_SHARDS and not done.failed
    _same_as_serial(out, ref)
    _no_temp_files(out)
    man = _manifest(out)
    assert man["format"] == "e2ecompress-packed" and man["options"]["max_error"] == 0.01
    for i, s in enumerate(man["shards"]):
        name = f"shard-{i:04d}.e2ez"
        size = (out / name).stat().st_size
        assert s["input"] == str(src / f"shard-{i:04d}.parquet") and s["output"] == name
        assert (s["status"], s["error"], s["model_id"], s["mode"]) == ("ok", None, None, "bounded")
        assert s["n_jets"] == N_JETS and s["bytes"] == size and s["bytes_per_jet"] == size / N_JETS
        assert 0 < s["max_abs_error"] <= 0.01
    t = man["totals"]
    assert (t["shards"], t["ok"], t["failed"], t["n_jets"]) == (N_SHARDS, N_SHARDS, 0, N_SHARDS * N_JETS)
    assert t["bytes"] == sum(s["bytes"] for s in man["shards"])

    restored = tmp_path / "restored"
    back = distributed.unpack_many(out, restored, fmt="h5")
    assert not back.failed and _manifest(restored)["format"] == "e2ecompress-unpacked"
    assert sorted(p.name for p in restored.iterdir()) == [
        "manifest.json",
        *(f"shard-{i:04d}.h5" for i in range(N_SHARDS)),
    ]
    with open_jets(src / "shard-0001.parquet") as f, open_jets(restored / "shard-0001.h5") as g:
        assert np.max(np.abs(f.read().images - g.read().images)) <= 0.01


def test_cli_single_file_unchanged(shards, tmp_path, capsys):
    src, ref = shards
    out = tmp_path / "one.e2ez"
    assert (
        cli.main(
            ["pack", str(src / "shard-0000.parquet"), str(out), "--max-error", "0.01", "--chunk-size", "8"]
        )
        == 0
    )
    assert out.read_bytes() == (ref / "shard-0000.e2ez").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.e2ez"]  # no manifest for one file
    assert "packed 20 jets" in capsys.readouterr().out
    assert cli.main(["unpack", str(out), str(tmp_path / "one.parquet"), "--quiet"]) == 0
    assert cli.main(["pack", str(tmp_path / "missing.parquet"), str(tmp_path / "m.e2ez")]) == 2


def test_user_errors_are_results_not_retried(tmp_path, shards):
    src, _ = shards
    bad = tmp_path / "bad.parquet"
    bad.write_bytes((src / "shard-0000.parquet").read_bytes()[:3000])
    r = distributed._pack_shard(
        "bad.parquet", str(bad), str(tmp_path / "bad.e2ez"), PackOptions(**OPTS)
    )  # no exception
    assert r.status == "failed" and "bad.parquet" in r.error and "\n" not in r.error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.parquet"]


def test_refuses_to_overwrite_other_work(shards, tmp_path):
    src, _ = shards
    other = tmp_path / "other"
    other.mkdir()
    (other / "shard-0000.h5").write_bytes(b"")
    with pytest.raises(InputError, match=r"would write shard-0000\.e2ez"):
        distributed.pack_many([src / "shard-0000.parquet", other / "shard-0000.h5"], tmp_path / "o", **OPTS)
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match="is a file"):
        distributed.pack_many(src, tmp_path / "file", **OPTS)
    with pytest.raises(InputError, match="output directory"):
        distributed.pack_many(src, tmp_path / "new.e2ez", **OPTS)
    (other / "manifest.json").write_text('{"format": "e2ecompress-dataset"}')
    with pytest.raises(InputError, match="not an e2ecompress pack manifest"):
        distributed.pack_many(src, other, **OPTS)
    with pytest.raises(TypeError):
        distributed.pack_many(src, tmp_path / "o", max_eror=0.01)
    with pytest.raises(ValueError, match="choose one"):
        distributed.pack_many(src, tmp_path / "o", quality=2, lossless=True)
    assert not (tmp_path / "o").exists()


def test_cli_workers_bad_shards_recorded_others_identical(shards, tmp_path, capsys):
    """A truncated shard and a NaN shard fail with their one-line error; the others are packed by a
    2-process LocalCluster, byte-identical to api.pack; exit code 2; the manifest records all."""
    src, ref = shards
    data = tmp_path / "data"
    data.mkdir()
    for p in src.iterdir():
        (data / p.name).write_bytes(p.read_bytes())
    (data / "shard-9000.parquet").write_bytes((src / "shard-0000.parquet").read_bytes()[:5000])
    images = np.zeros((3, 3, 125, 125), np.float32)
    images[1, 2, 3, 4] = np.nan
    column = pa.array(images.tolist(), pa.list_(pa.list_(pa.list_(pa.float32()))))
    pq.write_table(pa.table({"X_jets": column}), data / "shard-9001.parquet")
    out = tmp_path / "out"
    argv = ["pack", str(data), f"{out}{os.sep}", "--max-error", "0.01", "--chunk-size", "8", "--workers", "2"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert any("shard-9000.parquet" in line and "truncated" in line for line in err), err
    assert any("shard-9001.parquet" in line and "non-finite" in line for line in err), err
    assert "4/6 shards, 2 FAILED" in captured.out and "LocalCluster" in captured.out
    _same_as_serial(out, ref)
    _no_temp_files(out)
    assert not (out / "shard-9000.e2ez").exists() and not (out / "shard-9001.e2ez").exists()
    man = _manifest(out)
    failed = {s["output"]: s for s in man["shards"] if s["status"] == "failed"}
    assert sorted(failed) == ["shard-9000.e2ez", "shard-9001.e2ez"]
    assert all(s["error"] and s["n_jets"] == 0 for s in failed.values())
    t = man["totals"]
    assert (t["shards"], t["ok"], t["failed"], t["n_jets"], t["workers"]) == (6, 4, 2, 4 * N_JETS, 2)


def _install_faults(marker_dir: str, hang: str, fail: str, broken: str) -> None:
    """On a worker: the first attempt at `hang` stops after its first chunk (for the test to kill the
    worker), the first attempt at `fail` raises an unexpected error (for Dask to retry), and every attempt
    at `broken` raises one."""
    from e2ecompress.format import writer

    original = writer.ContainerWriter.write_chunk
    if getattr(original, "faulty", False):
        return

    def first_time(what: str) -> bool:
        try:
            with open(os.path.join(marker_dir, what), "x") as fh:
                fh.write(str(os.getpid()))
            return True
        except FileExistsError:
            return False

    def write_chunk(self, *args, **kwargs):
        original(self, *args, **kwargs)
        name = os.path.basename(self.path)
        if name == fail and first_time("failed"):
            raise RuntimeError("transient trouble")
        if name == broken:
            with open(os.path.join(marker_dir, "broken"), "a") as fh:
                fh.write("attempt\n")
            raise RuntimeError("persistent trouble")
        if name == hang and first_time("hung"):
            time.sleep(CLUSTER_TIMEOUT)

    write_chunk.faulty = True
    writer.ContainerWriter.write_chunk = write_chunk


def test_killed_worker_and_transient_error_rerun(shards, tmp_path):
    """SIGKILL the worker packing shard 2 mid-file and make shard 1 raise once: the run completes with
    every output identical to api.pack, no partial files, all shards ok; then unpack on the same cluster."""
    from distributed import Client, LocalCluster

    src, ref = shards
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    partial_seen: list[list[str]] = []

    def kill_when_hung() -> None:
        deadline = time.monotonic() + CLUSTER_TIMEOUT
        pid = ""
        while time.monotonic() < deadline and not pid:
            time.sleep(0.05)
            pid = (markers / "hung").read_text().strip() if (markers / "hung").exists() else ""
        if pid:
            partial_seen.append(glob.glob(str(out / ".shard-0002.e2ez.partial-*")))
            os.kill(int(pid), signal.SIGKILL)

    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster, timeout=CLUSTER_TIMEOUT) as client,
    ):
        client.wait_for_workers(2, timeout=CLUSTER_TIMEOUT)
        faults = (str(markers), "shard-0002.e2ez", "shard-0001.e2ez", "broken.e2ez")
        client.run(_install_faults, *faults)
        killer = threading.Thread(target=kill_when_hung, daemon=True)
        killer.start()
        done = distributed.pack_many(src, out, client=client, **OPTS)
        killer.join(timeout=CLUSTER_TIMEOUT)
        assert partial_seen and len(partial_seen[0]) == 1  # killed mid-file
        assert (markers / "failed").exists()
        assert [s.status for s in done.shards] == ["ok"] * N_SHARDS, [s.error for s in done.shards]
        _same_as_serial(out, ref)
        _no_temp_files(out)
        assert _manifest(out)["totals"]["ok"] == N_SHARDS

        back = distributed.unpack_many(out, tmp_path / "restored", client=client)
        assert not back.failed and back.n_jets == N_SHARDS * N_JETS
        with (
            open_jets(src / "shard-0002.parquet") as f,
            open_jets(tmp_path / "restored/shard-0002.parquet") as g,
        ):
            assert np.max(np.abs(f.read().images - g.read().images)) <= 0.01
