"""``moonlet serve --replicas N``: the moonlet HTTP app as a Ray Serve deployment.

Each replica loads the model itself, then builds the same FastAPI app as ``moonlet serve``
(``create_app(model, **app_options(args))``) in ``__serve_build_asgi_app__``, the hook Ray Serve
(2.60) calls on the replica after the constructor when ``serve.ingress()`` is given no app. Serve
runs the app's lifespan (the batcher's worker thread) and passes streamed responses (SSE, NDJSON)
through its proxy."""

from __future__ import annotations

import argparse
import sys
import time


def deployment(load: dict, options: dict, replicas: int = 1, num_gpus: float = 0, num_cpus: float = 1):
    """A bound Serve application of ``replicas`` moonlet replicas."""
    from ray import serve

    @serve.ingress()
    class Moonlet:
        def __init__(self, load: dict, options: dict):
            import moonlet

            self.model = moonlet.load(**load)
            self.options = options

        def __serve_build_asgi_app__(self):
            from moonlet.server.app import create_app

            return create_app(self.model, **self.options)

    return serve.deployment(
        Moonlet, name="moonlet", num_replicas=replicas, ray_actor_options={"num_gpus": num_gpus, "num_cpus": num_cpus}
    ).bind(load, options)


def start(args: argparse.Namespace, options: dict):
    """Start Serve on ``args.host:args.port`` with ``args.replicas`` replicas; returns the handle."""
    import ray
    from ray import serve

    from .cli import connect

    connect(args.ray)  # None: $RAY_ADDRESS, else a local instance
    gpus = args.gpus_per_replica
    if gpus is None:
        gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    device = args.device or ("cuda" if gpus > 0 else "cpu")
    load = {
        "model": args.model,
        "revision": args.revision,
        "device": device,
        "dtype": args.dtype,
        "compile": args.compile,
    }
    serve.start(http_options={"host": args.host, "port": args.port})
    return serve.run(deployment(load, options, args.replicas, gpus), name="moonlet", route_prefix="/")


def run_replicas(args: argparse.Namespace, options: dict) -> int:
    """Serve until interrupted (``moonlet serve --replicas N``)."""
    try:
        from ray import serve
    except ImportError:
        print("moonlet: error: --replicas needs Ray Serve; pip install 'moonlet[scale]'", file=sys.stderr)
        return 2
    if args.replicas < 1:
        print(f"moonlet: error: --replicas must be positive, got {args.replicas}", file=sys.stderr)
        return 2
    start(args, options)
    root = f"http://{args.host}:{args.port}"
    print(f"moonlet: serving {args.replicas} replicas on {root}/ (moondream endpoint {root}/v1)", file=sys.stderr)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
        return 0
