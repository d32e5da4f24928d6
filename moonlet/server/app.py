"""The FastAPI application: state, middleware, the small routes, and the protocol routers."""

from __future__ import annotations

import hashlib
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse

from . import routes_moondream, routes_ollama, routes_openai
from .auth import api_key_dependency
from .batcher import Batcher
from .errors import install_handlers
from .inputs import served_name
from .limits import ServerLimits
from .metrics import Metrics, MetricsMiddleware
from .middleware import BodyLimitMiddleware, ConcurrencyLimitMiddleware

STATIC = Path(__file__).with_name("static")


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
    limits: ServerLimits

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


def create_app(
    model, api_key: str | None = None, limits: ServerLimits | None = None, name: str | None = None, **overrides
) -> FastAPI:
    """A server for a loaded ``moonlet.Moondream``; its worker thread starts with the app.

    ``limits`` (default ``ServerLimits()``) with any of its fields overridden by keyword, e.g.
    ``create_app(model, max_queue=16)``.
    """
    if model.tokenizer is None:
        raise ValueError("the server needs a model loaded with a tokenizer")
    limits = replace(limits or ServerLimits(), **overrides)
    metrics = Metrics()
    batcher = Batcher(
        model,
        max_batch=limits.max_batch,
        max_queue=limits.max_queue,
        batch_window_s=limits.batch_window_ms / 1000,
        metrics=metrics,
    )
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
        limits=limits,
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
    app.add_middleware(ConcurrencyLimitMiddleware, limit=limits.max_concurrent)
    app.add_middleware(BodyLimitMiddleware, limit=limits.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app
