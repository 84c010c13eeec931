"""Data commands of the command line: make-dataset, info, check, demo."""

from __future__ import annotations

import argparse
import json
import os
import time


def _int_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _pthat_range(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX in GeV, got {text!r}") from None
    if not 0 < lo < hi:
        raise argparse.ArgumentTypeError(f"need 0 < MIN < MAX, got {text}")
    return lo, hi


def _cmd_make_dataset(args) -> int:
    from e2ecompress._extras import require

    require("make-dataset", "generate")
    from e2ecompress.data.dataset import DatasetConfig, make_dataset
    from e2ecompress.data.generator import JetCuts

    lo, hi = args.pthat
    cfg = DatasetConfig(
        layout=args.layout,
        sets=tuple(args.sets.split(",")),
        jets_per_shard=args.jets_per_shard,
        shards=args.shards,
        seed=args.seed,
        pileup_mu=args.pileup,
        cuts=JetCuts(pthat_min=lo, pthat_max=hi),
    )
    man = make_dataset(cfg, args.out, workers=args.workers, progress=not args.quiet)
    thr = man["throughput"]
    made = thr["jets_generated"]
    skipped = sum(s["skipped"] for s in man["shards"])
    rate = (
        f"{thr['jets_per_s']:.1f} jets/s with {thr['workers']} workers, "
        f"{thr['jets_per_cpu_s']:.1f} jets per CPU-second of a worker"
        if made
        else "nothing to do"
    )
    print(
        f"{args.out}: {made} jets in {len(man['shards']) - skipped} new shards "
        f"({skipped} already there) in {thr['wall_s']:.1f} s, {rate}"
    )
    return 0


def _cmd_info(args) -> int:
    from e2ecompress.io import open_jets

    f = open_jets(args.file)
    info = {
        "path": args.file,
        "n_jets": f.n_jets,
        "image_shape": list(f.image_shape),
        "channels": f.channels,
        "columns": [x.name for x in f.other_schema],
    }
    if args.json:
        print(json.dumps({**info, "metadata": f.metadata}, indent=2, default=str))
    else:
        for k, v in info.items():
            print(f"{k}: {v}")
    return 0


def _cmd_check(args) -> int:
    """Read every jet (shapes, finiteness) and print per-channel occupancy."""
    import numpy as np

    from e2ecompress.io import open_jets

    f = open_jets(args.file, channels=args.channels.split(",") if args.channels else None)
    n = 0
    nonzero = np.zeros(f.image_shape[0])
    for b in f.iter_batches(batch_size=256):
        n += len(b)
        nonzero += (b.images != 0).sum(axis=(0, 2, 3))
    occ = ", ".join(f"{c} {v / max(n, 1):.1f}" for c, v in zip(f.channel_names, nonzero, strict=True))
    print(f"{args.file}: {n} jets OK, non-zero pixels/jet: {occ}")
    return 0


def _cmd_demo(args) -> int:
    """Generate a small labelled sample, summarize it, pack it (the default physics level, error-bounded,
    lossless) and unpack."""
    import numpy as np

    from e2ecompress._extras import EXTRAS, require

    require("demo", ("generate",), EXTRAS["generate"])
    from e2ecompress import physics
    from e2ecompress.data.dataset import DatasetConfig, make_dataset
    from e2ecompress.io import open_jets

    out = args.out
    cfg = DatasetConfig(layout="qg3", sets=("labelled",), jets_per_shard=args.jets, shards=(1, 0, 0))
    t0 = time.perf_counter()
    man = make_dataset(cfg, out, workers=1, progress=not args.quiet)
    path = os.path.join(out, man["shards"][0]["path"])
    f = open_jets(path)
    imgs, ys = [], []
    for b in f.iter_batches(batch_size=128):
        imgs.append(b.images)
        ys.append(b.table.column("y").to_numpy())
    images = np.concatenate(imgs)
    y = np.concatenate(ys)
    raw = images.nbytes / len(images)
    on_disk = os.path.getsize(path) / len(images)
    feats = physics.substructure(images, f.channels)
    print(
        f"demo: {len(images)} jets ({int(y.sum())} quark, {int((1 - y).sum())} gluon) in "
        f"{time.perf_counter() - t0:.1f} s -> {path}"
    )
    print(
        f"  raw float32 {raw / 1024:.1f} KiB/jet, parquet+zstd {on_disk / 1024:.2f} KiB/jet, "
        f"zero pixels {100 * float((images == 0).mean()):.2f}%"
    )
    for c, name in enumerate(f.channels):
        nz = (images[:, c] != 0).sum(axis=(1, 2)).mean()
        total = images[:, c].sum(axis=(1, 2)).mean()
        print(f"  {name:7s} non-zero pixels/jet {nz:7.1f}  sum/jet {total:7.1f} GeV")
    for k in ("n_tracks", "girth", "mass"):
        print(f"  {k:9s} quark {feats[k][y == 1].mean():8.4f}  gluon {feats[k][y == 0].mean():8.4f}")
    _demo_codec(path, images)
    return 0


def _demo_codec(path: str, images) -> None:
    import numpy as np

    from e2ecompress import api, physics

    stem = os.path.splitext(path)[0]
    true = physics.jet_kinematics(images, ("ECAL", "HCAL", "Tracks"))
    for label, opts in (
        ("default", {}),  # the default of pack: physics level DEFAULT_QUALITY
        ("bounded", {"max_error": 0.01}),
        ("lossless", {"lossless": True}),
    ):
        packed = f"{stem}.{label}.e2ez"
        print("  " + api.pack(path, packed, **opts).line("packed"))
        restored = f"{stem}.{label}.restored.parquet"
        print("  " + api.unpack(packed, restored).line("unpacked"))
        with api.open_e2ez(packed) as r:
            dec = r.read().images
        reco = physics.jet_kinematics(dec, ("ECAL", "HCAL", "Tracks"))
        res = {k: float(np.std(reco[k] / true[k] - 1)) for k in ("pt", "mass")}
        print(f"    jet pT resolution {100 * res['pt']:.2f}%, jet mass resolution {100 * res['mass']:.2f}%")


def add_commands(sub) -> None:
    """make-dataset, info, check."""
    m = sub.add_parser("make-dataset", help="generate quark/gluon jet images with Pythia 8 + FastJet")
    m.add_argument("out", help="output directory (shards, manifest.json)")
    m.add_argument("--layout", default="qg3", help="qg3 (ECAL, HCAL, Tracks) or e2e8 (8 channels)")
    m.add_argument("--sets", default="labelled,unlabelled", help="labelled, unlabelled or both (comma list)")
    m.add_argument("--jets-per-shard", type=int, default=1000)
    m.add_argument("--shards", type=_int_list, default=(8, 1, 1), help="train,val,test shards per set")
    m.add_argument("--seed", type=int, default=20261129)
    m.add_argument("--pileup", type=float, default=0.0, metavar="MU", help="mean pileup interactions")
    m.add_argument(
        "--pthat",
        type=_pthat_range,
        default=(80.0, 170.0),
        metavar="MIN,MAX",
        help="hard-scatter pT range in GeV (default 80,170: jets of ~70-250 GeV)",
    )
    m.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    m.add_argument("--quiet", action="store_true")
    m.set_defaults(func=_cmd_make_dataset)

    i = sub.add_parser("info", help="describe a jet-image file (parquet or HDF5)")
    i.add_argument("file")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_info)

    c = sub.add_parser("check", help="read every jet of a file and report problems")
    c.add_argument("file")
    c.add_argument("--channels", help="channel names, comma-separated, for files that do not record them")
    c.set_defaults(func=_cmd_check)


def add_demo_command(sub) -> None:
    d = sub.add_parser("demo", help="generate a small sample, pack it, unpack it and summarize")
    d.add_argument("--out", default="data/demo")
    d.add_argument("--jets", type=int, default=200)
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=_cmd_demo)
