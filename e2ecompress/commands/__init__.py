"""The commands of the `e2ecompress` command line, dispatched by `e2ecompress.cli.main`.

- `data`: make-dataset, info, check, demo;
- `codec`: pack, unpack, inspect, show;
- `many`: pack / unpack of many shards (what a command line means many, the per-shard report).
"""
