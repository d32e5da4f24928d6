"""``moonlet batch --ray [ADDRESS]``: the batch command's Ray options and runner."""

from __future__ import annotations

import argparse
import sys


def add_ray_batch_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("Ray (bulk inference on a cluster; pip install 'moonlet[scale]')")
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        metavar="ADDRESS",
        help="run on Ray: alone, a local instance; else a cluster address such as auto or ray://head:10001",
    )
    group.add_argument("--workers", type=int, default=1, help="model actors (default 1)")
    group.add_argument(
        "--gpus-per-worker", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs, else 0)"
    )
    group.add_argument("--cpus-per-worker", type=float, default=1, help="CPUs per actor (default 1)")
    group.add_argument("--format", default="jsonl", choices=["jsonl", "parquet"], help="shard format (default jsonl)")
    group.add_argument("--shard-rows", type=int, default=1000, help="rows per output shard (default 1000)")
    group.add_argument("--limit", type=int, help="stop after this many new images (a rerun does the rest)")


class RayMissingError(ValueError):
    def __init__(self):
        super().__init__("--ray needs Ray; pip install 'moonlet[scale]'")


def connect(address: str | None) -> None:
    """``ray.init`` for ``--ray``: "local" starts a local instance; an address joins a cluster."""
    try:
        import ray
    except ImportError:
        raise RayMissingError() from None

    if not ray.is_initialized():
        ray.init(address=None if address in (None, "local") else address, log_to_driver=False)


def run_ray_batch(args: argparse.Namespace) -> int:
    from ..batch.rows import Task
    from .pipeline import run_pipeline

    if min(args.workers, args.batch_size, args.shard_rows) < 1:
        print("moonlet: error: --workers, --batch-size and --shard-rows must be positive", file=sys.stderr)
        return 2
    try:
        connect(args.ray)
    except RayMissingError as exc:
        print(f"moonlet: error: {exc}", file=sys.stderr)
        return 2
    summary = run_pipeline(
        args.source,
        args.out,
        Task.from_args(args),
        model=args.model,
        revision=args.revision,
        device=args.device,
        dtype=args.dtype,
        workers=args.workers,
        gpus_per_worker=args.gpus_per_worker,
        cpus_per_worker=args.cpus_per_worker,
        batch_size=args.batch_size,
        shard_rows=args.shard_rows,
        fmt=args.format,
        limit=args.limit,
        image_column=args.image_column,
        key_column=args.key_column,
        progress=True,
    )
    print(
        f"moonlet: wrote {summary.written} rows ({summary.errors} errors) in {len(summary.shards)} shards "
        f"to {args.out}; skipped {summary.skipped} already written",
        file=sys.stderr,
    )
    return 1 if summary.errors else 0
