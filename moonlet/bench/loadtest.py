"""A bounded load test on loopback: drive the server at 1×, 2× and 4× its capacity.

Capacity is ``--max-concurrent`` (requests the server handles at once). At each level that many
times the capacity of clients send queries back to back for ``--seconds``; the report gives
p50/p99 latency of the answered requests, throughput, replies by status, and checks that no
request was lost: every request got an HTTP reply, every refusal was a 429/503 with
Retry-After, and the server's own count of answered requests equals the clients' count.

    python -m moonlet.bench.loadtest                      # embedded model, capacity 8, 20 s per level
    python -m moonlet.bench.loadtest --model DIR --max-concurrent 16 --levels 1 2 4 --seconds 30
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import re
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

BUNDLED_IMAGE = Path(__file__).resolve().parents[2] / "examples" / "scene.png"


@dataclass
class LevelResult:
    level: float
    clients: int
    seconds: float
    statuses: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)  # answered (200) requests only
    lost: int = 0  # no HTTP reply at all (connection error or client timeout)
    refusals_without_retry_after: int = 0
    server_answered: int | None = None

    @property
    def answered(self) -> int:
        return self.statuses.get(200, 0)

    def summary(self) -> dict:
        ordered = sorted(self.latencies)

        def pct(p: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000, 1) if ordered else None

        return {
            "level": self.level,
            "clients": self.clients,
            "requests": sum(self.statuses.values()) + self.lost,
            "answered": self.answered,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "lost": self.lost,
            "refusals_without_retry_after": self.refusals_without_retry_after,
            "server_answered": self.server_answered,
            "p50_ms": pct(0.50),
            "p99_ms": pct(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 1) if ordered else None,
            "answered_per_s": round(self.answered / self.seconds, 2),
            "ok": self.lost == 0 and self.refusals_without_retry_after == 0 and self.server_answered == self.answered,
        }


def answered_by_server(metrics_text: str, route: str) -> int:
    pattern = rf'moonlet_requests_total\{{route="{re.escape(route)}",status="200"\}} (\d+)'
    found = re.search(pattern, metrics_text)
    return int(found.group(1)) if found else 0


async def run_level(
    base: str, level: float, capacity: int, seconds: float, body: dict, headers: dict, timeout: float
) -> LevelResult:
    import httpx

    clients = max(1, round(level * capacity))
    result = LevelResult(level, clients, seconds)
    limits = httpx.Limits(max_connections=clients + 2, max_keepalive_connections=clients + 2)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout, limits=limits) as client:
        before = answered_by_server((await client.get("/metrics")).text, "/v1/query")
        stop_at = time.perf_counter() + seconds

        async def one_client() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    reply = await client.post("/v1/query", json=body)
                except httpx.HTTPError:
                    result.lost += 1
                    continue
                result.statuses[reply.status_code] += 1
                if reply.status_code == 200:
                    result.latencies.append(time.perf_counter() - started)
                elif reply.status_code in (429, 503):
                    if "retry-after" not in reply.headers:
                        result.refusals_without_retry_after += 1
                    await asyncio.sleep(0.02)  # a polite client backs off a little before trying again

        await asyncio.gather(*(one_client() for _ in range(clients)))
        after = answered_by_server((await client.get("/metrics")).text, "/v1/query")
    result.server_answered = after - before
    return result


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'level':>5} {'clients':>7} {'requests':>8} {'answered':>8} {'429':>5} {'503':>5} {'504':>5} {'other':>5} "
        f"{'lost':>4} {'p50 ms':>8} {'p99 ms':>8} {'ans/s':>7} {'ok':>4}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        s = r["statuses"]
        other = sum(v for k, v in s.items() if k not in ("200", "429", "503", "504"))
        lines.append(
            f"{r['level']:>4g}× {r['clients']:>7} {r['requests']:>8} {r['answered']:>8} "
            f"{s.get('429', 0):>5} {s.get('503', 0):>5} {s.get('504', 0):>5} {other:>5} {r['lost']:>4} "
            f"{r['p50_ms'] or '-':>8} {r['p99_ms'] or '-':>8} {r['answered_per_s']:>7} {'yes' if r['ok'] else 'NO':>4}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m moonlet.bench.loadtest", description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an already running server (default: start one on loopback)")
    p.add_argument("--api-key", help="key for --url")
    p.add_argument("--model", help="model for the started server (default: the embedded model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-concurrent", type=int, default=8, help="the server's capacity (default: 8)")
    p.add_argument("--max-queue", type=int, default=None, help="the started server's queue (default: = capacity)")
    p.add_argument("--max-batch", type=int, default=8)
    p.add_argument("--levels", type=float, nargs="+", default=[1, 2, 4], help="multiples of capacity (default: 1 2 4)")
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each level (default: 20)")
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--image", default=str(BUNDLED_IMAGE))
    p.add_argument("--timeout", type=float, default=120.0, help="client timeout per request in seconds")
    args = p.parse_args(argv)

    data = base64.b64encode(Path(args.image).read_bytes()).decode()
    body = {
        "image_url": "data:image/png;base64," + data,
        "question": "How many shapes are there?",
        "settings": {"temperature": 0, "max_tokens": args.max_tokens},
    }
    headers = {"X-Moondream-Auth": args.api_key} if args.api_key else {}

    async def levels(base: str) -> list[dict]:
        return [
            (await run_level(base, level, args.max_concurrent, args.seconds, body, headers, args.timeout)).summary()
            for level in args.levels
        ]

    if args.url:
        rows = asyncio.run(levels(args.url.rstrip("/")))
    else:
        import moonlet

        from ..server.app import create_app
        from ..server.testing import running_server

        model = moonlet.load(args.model, device=args.device)
        app = create_app(
            model,
            max_concurrent=args.max_concurrent,
            max_queue=args.max_queue or args.max_concurrent,
            max_batch=args.max_batch,
        )
        with running_server(app) as base:
            rows = asyncio.run(levels(base))
    print(format_table(rows))
    print(json.dumps({"loadtest": rows, "max_concurrent": args.max_concurrent, "seconds": args.seconds}))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
