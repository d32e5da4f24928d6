"""Concurrent against sequential requests on a loopback server, side by side in one run.

    python -m moonlet.bench.server [--model PATH] [--requests 8] [--max-tokens 32]

Starts the app on a free loopback port, sends N /v1/query requests one after another, then the
same N at once (the worker batches them), and prints both wall times, their ratio and the
per-request latencies; then one JSON line. Bounded: exactly 2·N requests, loopback only.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUESTIONS = ("How many shapes are there?", "What colour is the star?", "Is there a circle?", "What does the text say?")


def _payload(image: Path, index: int, max_tokens: int) -> dict:
    data = base64.b64encode(image.read_bytes()).decode()
    return {
        "image_url": f"data:image/png;base64,{data}",
        "question": QUESTIONS[index % len(QUESTIONS)],
        "settings": {"temperature": 0, "max_tokens": max_tokens},
    }


def measure(model, image: Path, requests: int, max_tokens: int) -> dict:
    import httpx

    from ..server.app import create_app
    from ..server.testing import running_server

    payloads = [_payload(image, i, max_tokens) for i in range(requests)]
    app = create_app(model, max_batch=requests)
    with running_server(app) as base, httpx.Client(base_url=base, timeout=600) as client:

        def send(payload: dict) -> float:
            started = time.perf_counter()
            reply = client.post("/v1/query", json=payload)
            reply.raise_for_status()
            return time.perf_counter() - started

        send(payloads[0])  # warm-up: encodes the image once (the prefix cache serves it after)
        started = time.perf_counter()
        sequential = [send(p) for p in payloads]
        sequential_s = time.perf_counter() - started
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=requests) as pool:
            concurrent = list(pool.map(send, payloads))
        concurrent_s = time.perf_counter() - started
    return {
        "requests": requests,
        "max_tokens": max_tokens,
        "sequential_s": round(sequential_s, 3),
        "concurrent_s": round(concurrent_s, 3),
        "speedup": round(sequential_s / concurrent_s, 2),
        "sequential_p50_s": round(statistics.median(sequential), 3),
        "concurrent_p50_s": round(statistics.median(concurrent), 3),
        "concurrent_max_s": round(max(concurrent), 3),
    }


def main(argv: list[str] | None = None) -> int:
    import moonlet

    parser = argparse.ArgumentParser(
        prog="python -m moonlet.bench.server", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", help="checkpoint (default: the embedded model)")
    parser.add_argument("--image", default=str(Path(__file__).resolve().parents[2] / "examples" / "scene.png"))
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--device")
    args = parser.parse_args(argv)
    model = moonlet.load(args.model, device=args.device)
    result = measure(model, Path(args.image), args.requests, args.max_tokens)
    print(f"{args.requests} requests, {args.max_tokens} tokens max, model {model.name} on {model.model.device}")
    print(f"  sequential  {result['sequential_s']:8.3f} s   (p50 {result['sequential_p50_s']:.3f} s)")
    print(
        f"  concurrent  {result['concurrent_s']:8.3f} s   "
        f"(p50 {result['concurrent_p50_s']:.3f} s, max {result['concurrent_max_s']:.3f} s)"
    )
    print(f"  speed-up    {result['speedup']:8.2f}x")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
