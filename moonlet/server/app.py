"""The FastAPI application: state, middleware, the small routes, and the protocol routers."""

from __future__ import annotations

import hashlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from . import routes_moondream, routes_ollama, routes_openai
from .auth import api_key_dependency
from .batcher import Batcher
from .errors import error_body, install_handlers
from .inputs import served_name
from .metrics import Metrics, MetricsMiddleware

STATIC = Path(__file__).with_name("static")
DEFAULT_MAX_BODY = 20 * 1024 * 1024


@dataclass
class ServerState:
    model: object
    batcher: Batcher
    metrics: Metrics
    name: str
    started: float
    dtype: str
    device: str
    parameters: int

    @property
    def parameter_size(self) -> str:
        n = self.parameters
        return f"{n / 1e9:.1f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"

    @property
    def size_bytes(self) -> int:
        return self.parameters * {"float32": 4, "bfloat16": 2, "float16": 2}.get(self.dtype, 4)

    @property
    def digest(self) -> str:
        return hashlib.sha256(f"{self.name}:{self.parameters}:{self.dtype}".encode()).hexdigest()


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes, declared or streamed."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body is larger than {self.limit} bytes"
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            response = JSONResponse(error_body(scope.get("path", ""), 413, message), status_code=413)
            await response(scope, receive, send)
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)


def create_app(
    model,
    api_key: str | None = None,
    max_batch: int = 8,
    max_queue: int = 256,
    batch_window_ms: float = 5.0,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    name: str | None = None,
) -> FastAPI:
    """A server for a loaded ``moonlet.Moondream``; its worker thread starts with the app."""
    if model.tokenizer is None:
        raise ValueError("the server needs a model loaded with a tokenizer")
    metrics = Metrics()
    batcher = Batcher(model, max_batch=max_batch, max_queue=max_queue, batch_window_s=batch_window_ms / 1000, metrics=metrics)
    metrics.queue_depth = lambda: batcher.depth
    state = ServerState(
        model=model,
        batcher=batcher,
        metrics=metrics,
        name=name or served_name(model),
        started=time.time(),
        dtype=str(model.model.dtype).removeprefix("torch."),
        device=str(model.model.device),
        parameters=model.model.num_parameters(),
    )
    metrics.model_name = state.name

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        try:
            yield
        finally:
            batcher.stop()

    app = FastAPI(title="moonlet", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.moonlet = state
    install_handlers(app)
    auth = [Depends(api_key_dependency(api_key))]

    @app.get("/health")
    async def health():
        body = {
            "status": "ok" if batcher.alive else "worker stopped",
            "model": state.name,
            "device": state.device,
            "dtype": state.dtype,
            "queue_depth": batcher.depth,
            "uptime_s": round(time.time() - state.started, 3),
        }
        return JSONResponse(body, status_code=200 if batcher.alive else 503)

    @app.get("/metrics", dependencies=auth)
    async def prometheus():
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/", include_in_schema=False)
    async def index():
        # The page holds no data; its API calls carry the key the user types in.
        page = STATIC / "index.html"
        if not page.is_file():
            raise HTTPException(404, "the web page is not installed")
        return FileResponse(page, media_type="text/html; charset=utf-8")

    app.include_router(routes_moondream.build_router(state, auth))
    app.include_router(routes_openai.build_router(state, auth))
    app.include_router(routes_ollama.build_router(state, auth))
    app.add_middleware(BodyLimitMiddleware, limit=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
