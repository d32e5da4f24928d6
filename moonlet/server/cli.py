"""``moonlet serve``: its argparse sub-command and runner."""

from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def add_serve_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` sub-command (model arguments included) to an argparse subparsers object."""
    p = subparsers.add_parser(
        "serve",
        help="serve the model over HTTP (Moondream, OpenAI and Ollama compatible; web page at /)",
        description="Serve a model over HTTP. Routes: /v1/caption /v1/query /v1/detect /v1/point, "
        "/v1/chat/completions /v1/models, /api/generate /api/chat /api/tags, /health, /metrics, and a web page at /.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=2020, help="port (default: 2020, the moondream client's local endpoint)")
    p.add_argument("--api-key", default=None, help="require this key on every route but /health and / (default: $MOONLET_API_KEY)")
    p.add_argument("--max-batch", type=int, default=8, help="most text requests decoded together (default: 8)")
    p.add_argument("--max-queue", type=int, default=256, help="most requests waiting before 503 (default: 256)")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="how long an idle worker waits for company (default: 5)")
    p.add_argument("--max-body-mb", type=float, default=20.0, help="largest request body in MiB (default: 20)")
    p.add_argument("--name", default=None, help="model id reported to clients (default: from --model)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--model", help="checkpoint directory, .safetensors file or hub id (default: the embedded model)")
    p.add_argument("--revision", help="hub revision (tag, branch or commit)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU, float32 on CPU)")
    return p


def app_options(args: argparse.Namespace) -> dict:
    """``create_app`` keyword arguments (key, limits, name) from parsed ``serve`` arguments."""
    return dict(
        api_key=args.api_key or os.environ.get("MOONLET_API_KEY") or None,
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        batch_window_ms=args.batch_window_ms,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        name=args.name,
    )


def run_serve(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted. 0 on a clean stop, 1 on failure, 2 on bad usage."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        print(f"moonlet: error: the server needs extra packages ({exc.name}); pip install 'moonlet[serve]'", file=sys.stderr)
        return 2
    import moonlet

    for flag, value in (("--max-batch", args.max_batch), ("--max-queue", args.max_queue), ("--port", args.port)):
        if value < (0 if flag == "--port" else 1):
            print(f"moonlet: error: {flag} must be positive, got {value}", file=sys.stderr)
            return 2
    if args.host not in LOOPBACK and not app_options(args)["api_key"]:
        print(f"moonlet: warning: serving on {args.host} without an API key (set --api-key or MOONLET_API_KEY)", file=sys.stderr)
    model = moonlet.load(args.model, revision=args.revision, device=args.device, dtype=args.dtype)
    app = create_app(model, **app_options(args))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    root = f"http://{shown}:{args.port}"
    print(f"moonlet: serving {app.state.moonlet.name} on {root}/ (moondream endpoint {root}/v1)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level))
    try:
        server.run()
    except KeyboardInterrupt:
        return 0
    except (OSError, SystemExit) as exc:  # uvicorn exits when it cannot bind
        print(f"moonlet: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0 if server.started else 1
