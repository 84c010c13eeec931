"""Command line: `e2ecompress make-dataset | info | check | pack | unpack | inspect | show | demo`.

User errors (bad input files, bad arguments) print one line naming the file and the problem and exit with
code 2, without a traceback and without leaving partial output behind.

`main` dispatches to the commands in `e2ecompress.commands`: `data` (make-dataset, info, check, demo) and
`codec` (pack, unpack, inspect, show; many shards through `many`).
"""

from __future__ import annotations

import argparse
import sys

from e2ecompress.commands import codec, data
from e2ecompress.errors import E2EError, InputError

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="e2ecompress", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    data.add_commands(sub)
    codec.add_commands(sub)
    data.add_demo_command(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (E2EError, InputError) as exc:
        print(f"e2ecompress: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("e2ecompress: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
