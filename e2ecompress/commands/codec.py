"""Codec commands of the command line: pack, unpack, inspect, show (see `e2ecompress.api`); many shards go
through `many`."""

from __future__ import annotations

import argparse
import json
import os
import sys

from e2ecompress.commands.many import cli_many, is_many
from e2ecompress.errors import E2EError, InputError


def _eps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def _level(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer level, got {text!r}") from None
    if not 1 <= value <= 5:
        raise argparse.ArgumentTypeError(f"must be a level from 1 to 5, got {value}")
    return value


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _pack_mode_problem(args) -> str | None:
    """Why the pack options do not make one mode (None if they do)."""
    if args.latent and (args.max_error is not None or args.lossless):
        return "--latent takes --quality, not --max-error or --lossless"
    if args.predictor != "none" and args.max_error is None:
        return "--predictor model goes with --max-error"
    if args.keep_fraction != 1.0 and not args.latent:
        return "--keep-fraction goes with --latent"
    return None


def _cmd_pack(args) -> int:
    from e2ecompress import api
    from e2ecompress.codec.options import PackOptions

    problem = _pack_mode_problem(args)
    if problem:
        raise E2EError(problem)
    opts = {
        "model": args.model,
        "quality": args.quality,
        "max_error": args.max_error,
        "lossless": args.lossless,
        "latent": args.latent,
        "predictor": args.predictor,
        "keep_fraction": args.keep_fraction,
        "unbiased": args.unbiased,
        "chunk_size": args.chunk_size,
        "embed_model": args.embed_model,
        "channels": args.channels.split(",") if args.channels else None,
    }
    if is_many(args.input, args.output):
        run = {"workers": args.workers, "scheduler": args.scheduler, "quiet": args.quiet}
        return cli_many("pack", args.input, args.output, options=PackOptions(**opts), **run)
    (src,) = args.input
    if not os.path.exists(src):
        raise InputError(src, "no such file")
    options = PackOptions(**opts)
    summary = api.pack_with(src, args.output, options, progress=not args.quiet and sys.stderr.isatty())
    _report(summary, "packed", args)
    return 0


def _report(summary, verb: str, args) -> None:
    if args.json:
        print(json.dumps(summary.to_dict()))
        return
    print(summary.line(verb))
    if args.profile:
        print(summary.profile_line())


def _cmd_unpack(args) -> int:
    from e2ecompress import api

    if is_many(args.input, args.output):
        run = {"workers": args.workers, "scheduler": args.scheduler, "quiet": args.quiet}
        return cli_many("unpack", args.input, args.output, fmt=args.format, model=args.model, **run)
    fmt = {"h5": "hdf5"}.get(args.format, args.format)
    summary = api.unpack(
        args.input[0], args.output, model=args.model, fmt=fmt, progress=not args.quiet and sys.stderr.isatty()
    )
    _report(summary, "unpacked", args)
    return 0


def _cmd_inspect(args) -> int:
    from e2ecompress import api

    info = api.inspect(args.input)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    h = info["header"]
    codec = h.get("codec", {})
    model = h.get("model") or {}
    print(f"{info['path']}: {info['n_jets']} jets in {info['n_chunks']} chunks, {info['bytes']} bytes")
    print(f"  {info['bytes_per_jet']:.1f} bytes/jet, {info['ratio_vs_raw']:.0f}x smaller than raw float32")
    print(f"  layout {h.get('layout')}, channels {', '.join(h.get('channels', []))}, shape {h.get('shape')}")
    setting = {
        "lossy": f"quality {codec.get('quality')}",
        "physics": f"level {codec.get('quality')}",
        "bounded": f"max error {codec.get('max_error')}",
    }
    print(f"  mode {codec.get('mode')} {setting.get(codec.get('mode'), '')}".rstrip())
    if model:
        print(f"  model {model.get('name')} id {model.get('id', '')[:16]} embedded={model.get('embedded')}")
    if info.get("budget"):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in info["budget"].items() if v >= 0.05)
        print(f"  bytes/jet: images {info['image_bytes_per_jet']:.1f}; {parts}")
    footer = info.get("footer") or {}
    if "max_abs_error" in footer:
        print(f"  max |error| measured at pack: {footer['max_abs_error']:.4g} GeV")
    src = h.get("source", {})
    print(f"  from {src.get('name')} ({src.get('format')}, {src.get('bytes')} bytes), {h.get('created_by')}")
    return 0


def _cmd_show(args) -> int:
    from e2ecompress._extras import require

    require("show", "plot")
    from e2ecompress import api
    from e2ecompress.viz import plot_event

    with api.open_e2ez(args.input, args.model) as r:
        if not 0 <= args.event < r.n_jets:
            raise InputError(args.input, f"event {args.event} out of range (0..{r.n_jets - 1})")
        decoded = r.read(args.event, args.event + 1).images[0]
        original = None
        src = args.original
        if src is None:
            guess = os.path.join(os.path.dirname(os.path.abspath(args.input)), r.header["source"]["name"])
            src = guess if os.path.exists(guess) else None
        if src is not None:
            from e2ecompress.io import open_jets

            with open_jets(src) as f:
                if f.n_jets != r.n_jets or f.image_shape != r.shape:
                    raise InputError(src, "does not match the packed file (jet count or image shape)")
                original = f.read(args.event, args.event + 1).images[0]
        plot_event(
            decoded,
            original,
            r.channels,
            args.out,
            title=f"{os.path.basename(args.input)} event {args.event}",
        )
    print(
        f"{args.out}: event {args.event}"
        + (" (original vs decoded)" if original is not None else " (decoded)")
    )
    return 0


def _add_output_options(parser) -> None:
    parser.add_argument(
        "--profile", action="store_true", help="one file: also print the seconds spent per stage"
    )
    parser.add_argument(
        "--json", action="store_true", help="one file: print the summary (sizes, speed, stage times) as JSON"
    )


def _add_cluster_options(parser) -> None:
    run = parser.add_mutually_exclusive_group()
    run.add_argument(
        "--workers", type=_positive, default=1, metavar="N", help="many shards: N local processes"
    )
    run.add_argument("--scheduler", metavar="ADDRESS", help="many shards: a Dask scheduler, tcp://HOST:8786")


def add_commands(sub) -> None:
    p = sub.add_parser("pack", help="compress a parquet / HDF5 jet file (or many shards) into .e2ez")
    p.add_argument("input", nargs="+", help="a file, or many: files, a quoted glob pattern, a directory")
    p.add_argument(
        "output", help="OUT.e2ez, or OUT_DIR/ for many shards (OUT_DIR/<stem>.e2ez, manifest.json)"
    )
    p.add_argument("--model", help="latent model name or checkpoint directory (default: latent_qg3_default)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quality",
        type=_level,
        help="physics level, 1 (smallest) to 5 (most precise); the default mode, level 3 "
        "(with --latent: the latent codec's level)",
    )
    mode.add_argument("--max-error", type=_eps, metavar="EPS", help="every pixel within EPS GeV")
    mode.add_argument("--lossless", action="store_true", help="exact float32 values")
    p.add_argument(
        "--latent",
        action="store_true",
        help="the learned latent codec (research; ml extra) at --quality, 1 to 5 (default 3)",
    )
    p.add_argument(
        "--predictor",
        choices=("none", "model"),
        default="none",
        help="with --max-error: code residuals against the latent model's prediction",
    )
    p.add_argument(
        "--keep-fraction",
        type=float,
        default=1.0,
        help="lossy: share of occupied patches whose latents are stored (decoder inpaints the rest)",
    )
    p.add_argument(
        "--unbiased",
        action="store_true",
        help="with --max-error: non-zero pixels stay non-zero and each tower (block) is within EPS as a "
        "whole, so energy sums are not biased (costs a few bytes/jet)",
    )
    p.add_argument("--chunk-size", type=_positive, default=512, metavar="N", help="jets per chunk")
    p.add_argument("--embed-model", action="store_true", help="store the model in the file")
    p.add_argument("--channels", help="channel names for files that do not record them")
    p.add_argument("--quiet", action="store_true")
    _add_output_options(p)
    _add_cluster_options(p)
    p.set_defaults(func=_cmd_pack)

    u = sub.add_parser("unpack", help="decode an .e2ez file (or many) to parquet or HDF5 (by suffix)")
    u.add_argument(
        "input", nargs="+", help="an .e2ez file, or many: files, a quoted glob pattern, a directory"
    )
    u.add_argument("output", help="OUT.parquet or OUT.h5, or OUT_DIR/ for many (OUT_DIR/<stem>.parquet)")
    u.add_argument("--model", help="model to decode with (default: embedded, else the one recorded)")
    u.add_argument("--format", choices=("parquet", "h5"), help="output format (default: by suffix; parquet)")
    u.add_argument("--quiet", action="store_true")
    _add_output_options(u)
    _add_cluster_options(u)
    u.set_defaults(func=_cmd_unpack)

    i = sub.add_parser("inspect", help="describe an .e2ez file without decoding it")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_inspect)

    s = sub.add_parser("show", help="plot one event of an .e2ez file (decoded, and the original if found)")
    s.add_argument("input")
    s.add_argument("--event", type=int, default=0)
    s.add_argument("-o", "--out", default="event.png")
    s.add_argument("--original", help="the packed input file (default: looked up beside the .e2ez)")
    s.add_argument("--model")
    s.set_defaults(func=_cmd_show)
