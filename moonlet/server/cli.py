"""``moonlet serve``: its argparse sub-command and runner."""

from __future__ import annotations

import argparse
import math
import os
import sys

from ..cli_args import add_model_arguments, add_quant_arguments, quant_choice
from .limits import MIB, LimitError, ServerLimits

LOOPBACK = ("127.0.0.1", "localhost", "::1")
LIMIT_FLAGS = {  # ServerLimits field -> the serve flag that sets it
    "max_body_bytes": "--max-body-mb",
    "max_batch": "--max-batch",
    "max_queue": "--max-queue",
    "max_concurrent": "--max-concurrent",
    "batch_window_ms": "--batch-window-ms",
    "request_timeout_s": "--request-timeout",
    "max_image_pixels": "--max-image-pixels",
    "image_url_max_bytes": "--image-url-max-mb",
}


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
    p.add_argument(
        "--api-key", default=None, help="require this key on every route but /health and / (default: $MOONLET_API_KEY)"
    )
    d = ServerLimits()
    limits = p.add_argument_group("limits (docs/reliability.md)")
    limits.add_argument(
        "--max-batch",
        type=int,
        default=d.max_batch,
        help=f"most text requests decoded together (default: {d.max_batch})",
    )
    limits.add_argument(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help=f"most jobs waiting for the model before 503 (default: {d.max_queue})",
    )
    limits.add_argument(
        "--max-concurrent",
        type=int,
        default=d.max_concurrent,
        help=f"most model requests in progress before 429 (default: {d.max_concurrent})",
    )
    limits.add_argument(
        "--request-timeout",
        type=float,
        default=d.request_timeout_s,
        help=f"seconds before a request gets 504 (default: {d.request_timeout_s:g})",
    )
    limits.add_argument(
        "--batch-window-ms",
        type=float,
        default=d.batch_window_ms,
        help=f"how long an idle worker waits for company (default: {d.batch_window_ms:g})",
    )
    limits.add_argument(
        "--max-body-mb",
        type=float,
        default=d.max_body_bytes / MIB,
        help=f"largest request body in MiB (default: {d.max_body_bytes / MIB:g})",
    )
    limits.add_argument(
        "--max-image-pixels",
        type=int,
        default=d.max_image_pixels,
        help=f"largest image, width x height, refused before decoding (default: {d.max_image_pixels})",
    )
    limits.add_argument(
        "--allow-image-urls", action="store_true", help="fetch http(s) image URLs (public addresses only; default: off)"
    )
    limits.add_argument(
        "--image-url-max-mb",
        type=float,
        default=d.image_url_max_bytes / MIB,
        help=f"largest fetched image in MiB (default: {d.image_url_max_bytes / MIB:g})",
    )
    limits.add_argument(
        "--shutdown-timeout",
        type=float,
        default=None,
        help="seconds to let in-flight requests finish on shutdown (default: no limit)",
    )
    p.add_argument("--name", default=None, help="model id reported to clients (default: from --model)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    add_model_arguments(p)
    add_quant_arguments(p)
    p.add_argument(
        "--variant",
        action="append",
        metavar="NAME=PATH",
        help="register a LoRA variant for settings.variant (repeatable); PATH: a .safetensors / .pt adapter",
    )
    p.add_argument("--allow-network", action="store_true", help="let hosted variant ids be downloaded")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the vision encoder and decode step (CUDA graphs on GPU); the first requests compile",
    )
    scale = p.add_argument_group("replicas (Ray Serve; pip install 'moonlet[scale]'; docs/scale.md)")
    scale.add_argument("--replicas", type=int, help="serve N replicas, each with its own model, through Ray Serve")
    scale.add_argument(
        "--gpus-per-replica", type=float, help="GPUs per replica (default: 1 if the Ray cluster has GPUs, else 0)"
    )
    scale.add_argument(
        "--ray", metavar="ADDRESS", help="Ray cluster to join (default: $RAY_ADDRESS, else a local instance)"
    )
    return p


def mib_to_bytes(megabytes: float, field: str) -> int:
    """``megabytes`` MiB in bytes; LimitError naming ``field`` for a NaN or an infinity."""
    if not math.isfinite(megabytes):
        raise LimitError(field, f"must be a finite number, got {megabytes}")
    return int(megabytes * MIB)


def app_options(args: argparse.Namespace) -> dict:
    """``create_app`` keyword arguments (key, limits, name) from parsed ``serve`` arguments."""
    limits = ServerLimits(
        max_body_bytes=mib_to_bytes(args.max_body_mb, "max_body_bytes"),
        max_batch=args.max_batch,
        max_queue=args.max_queue,
        max_concurrent=args.max_concurrent,
        batch_window_ms=args.batch_window_ms,
        request_timeout_s=args.request_timeout,
        max_image_pixels=args.max_image_pixels,
        allow_image_urls=args.allow_image_urls,
        image_url_max_bytes=mib_to_bytes(args.image_url_max_mb, "image_url_max_bytes"),
    )
    return dict(api_key=args.api_key or os.environ.get("MOONLET_API_KEY") or None, limits=limits, name=args.name)


def run_serve(args: argparse.Namespace) -> int:
    """Load the model and serve until interrupted. 0 on a clean stop, 1 on failure, 2 on bad usage."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        missing = f"the server needs extra packages ({exc.name}); pip install 'moonlet[serve]'"
        print(f"moonlet: error: {missing}", file=sys.stderr)
        return 2
    import moonlet

    if not 0 <= args.port <= 65535:
        print(f"moonlet: error: --port must be from 0 to 65535, got {args.port}", file=sys.stderr)
        return 2
    try:
        options = app_options(args)
    except LimitError as exc:  # a limit out of range: name the flag that set it
        print(f"moonlet: error: {LIMIT_FLAGS.get(exc.field, exc.field)} {exc.problem}", file=sys.stderr)
        return 2
    if args.host not in LOOPBACK and not options["api_key"]:
        warning = f"serving on {args.host} without an API key (set --api-key or MOONLET_API_KEY)"
        print(f"moonlet: warning: {warning}", file=sys.stderr)
    if args.replicas is not None:
        from ..scale.serve import run_replicas

        return run_replicas(args, options)  # each replica loads the model and builds create_app(model, **options)
    variants = {}
    for item in args.variant or []:
        name, equals, path = item.partition("=")
        if not equals or not name or not path:
            print(f"moonlet serve: --variant expects NAME=PATH, got {item!r}", file=sys.stderr)
            return 2
        variants[name] = path
    model = moonlet.load(
        args.model,
        revision=args.revision,
        device=args.device,
        dtype=args.dtype,
        compile=args.compile,
        variants=variants,
        allow_network=args.allow_network,
        **quant_choice(args),
    )
    app = create_app(model, **options)
    shown = f"[{args.host}]" if ":" in args.host else args.host
    root = f"http://{shown}:{args.port}"
    print(f"moonlet: serving {app.state.moonlet.name} on {root}/ (moondream endpoint {root}/v1)", file=sys.stderr)
    config = uvicorn.Config(
        app, host=args.host, port=args.port, log_level=args.log_level, timeout_graceful_shutdown=args.shutdown_timeout
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:
        return 0
    except (OSError, SystemExit) as exc:  # uvicorn exits when it cannot bind
        print(f"moonlet: error: cannot serve on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0 if server.started else 1
