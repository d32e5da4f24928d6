"""ASGI middleware for the HTTP-level limits: body size and requests in progress."""

from __future__ import annotations

from fastapi import HTTPException
from fastapi.responses import JSONResponse

from .errors import error_body
from .limits import MODEL_ROUTES, RETRY_AFTER


def _reply(scope, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(scope.get("path", ""), status, message), status_code=status, headers=headers)


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
            await _reply(scope, 413, message)(scope, receive, send)
            return
        seen = 0

        async def limited_receive():
            nonlocal seen
            event = await receive()
            if event["type"] == "http.request":
                seen += len(event.get("body", b""))
                if seen > self.limit:  # raised while the route reads its body: a JSON 413
                    raise HTTPException(413, message)
            return event

        await self.app(scope, limited_receive, send)


class ConcurrencyLimitMiddleware:
    """429 with Retry-After once ``limit`` model requests are in hand (streams count until done)."""

    def __init__(self, app, limit: int):
        self.app = app
        self.limit = limit
        self.active = 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") != "POST" or scope.get("path") not in MODEL_ROUTES:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            message = f"server busy: {self.limit} requests are in progress, retry later"
            await _reply(scope, 429, message, RETRY_AFTER)(scope, receive, send)
            return
        self.active += 1  # the event loop is single-threaded: no lock needed
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1
