"""Throughput of ``moonlet batch`` alone and through the Ray pipeline on the same images.

    python -m moonlet.bench.ray --images 64 --workers 2

Both runs are timed end to end through the CLI entry point (model loading included; for Ray the
actors' start and model loads too, but not ``ray.init``), each into a fresh output."""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _images(folder: Path, count: int, size: int) -> None:
    from ..data.config import SceneConfig
    from ..data.generate import make_example

    for i in range(count):
        (folder / f"{i:05d}.png").write_bytes(make_example(0, i, SceneConfig(width=size, height=size)).png)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moonlet.bench.ray", description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    parser.add_argument("--model", help="default: the embedded model")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1, help="Ray model actors (default 1)")
    parser.add_argument("--cpus-per-worker", type=float, default=1)
    parser.add_argument("--ray", default="local", help="Ray address (default: a local instance)")
    args = parser.parse_args(argv)

    from ..cli import main as moonlet_main
    from ..scale.cli import connect

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "images").mkdir()
        _images(root / "images", args.images, args.size)
        common = [
            str(root / "images"),
            "--batch-size",
            str(args.batch_size),
            "--max-tokens",
            str(args.max_tokens),
            "--device",
            "cpu",
            *(["--model", args.model] if args.model else []),
        ]
        runs = {}
        start = time.perf_counter()
        moonlet_main(["batch", *common, "--out", str(root / "single.jsonl")])
        runs["single"] = time.perf_counter() - start
        connect(args.ray)
        start = time.perf_counter()
        moonlet_main(
            [
                "batch",
                *common,
                "--out",
                str(root / "ray"),
                "--ray",
                args.ray,
                "--workers",
                str(args.workers),
                "--cpus-per-worker",
                str(args.cpus_per_worker),
            ]
        )
        runs["ray"] = time.perf_counter() - start
    result = {name: {"seconds": round(s, 2), "images_per_s": round(args.images / s, 3)} for name, s in runs.items()}
    result["ratio_ray_over_single"] = round(runs["single"] / runs["ray"], 3)
    settings = {
        "images": args.images,
        "size": args.size,
        "batch_size": args.batch_size,
        "max_tokens": args.max_tokens,
        "workers": args.workers,
        "cpus_per_worker": args.cpus_per_worker,
    }
    print(json.dumps({**settings, **result}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
