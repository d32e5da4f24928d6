"""Error replies: one exception type for the routes, JSON bodies shaped per protocol.

Statuses: 400 malformed input (bad JSON, bad image data, prompt too long), 401 auth,
413 body too large, 422 well-formed JSON that fails validation (missing field, wrong type,
bad settings), 501 unsupported by the model, 503 queue full, 500 anything else (logged,
never echoed back).
"""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..generation.engine import ContextOverflowError
from ..generation.sampling import SettingsError
from ..image import ImageError
from ..prompts import PromptError
from ..spatial import SpatialRefError
from ..variants import VariantError
from .limits import RETRY_AFTER

logger = logging.getLogger("moonlet.server")

OPENAI_PATHS = ("/v1/chat/", "/v1/models")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class QueueFullError(RuntimeError):
    """The worker queue is at capacity."""


class WorkerDownError(RuntimeError):
    """The model worker thread is not running."""


def model_error(
    exc: BaseException, image: str = "image_url", text: str = "question", settings: str = "settings"
) -> ApiError:
    """Map an exception from the model or the batcher to a reply naming the request field."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageError):
        return ApiError(400, f"{image}: {exc}")
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, f"{text}: {exc}")
    if isinstance(exc, PromptError):
        return ApiError(422, f"{text}: {exc}")
    if isinstance(exc, SettingsError):
        return ApiError(422, f"{settings}: {exc}")
    if isinstance(exc, VariantError):
        return ApiError(422, f"{settings}.variant: {exc}")
    if isinstance(exc, SpatialRefError):  # its message names the ref (spatial_refs[i], eye, face)
        return ApiError(422, str(exc))
    if isinstance(exc, QueueFullError):
        return ApiError(503, "server busy: too many queued requests, retry later", dict(RETRY_AFTER))
    if isinstance(exc, WorkerDownError):
        return ApiError(503, "the model worker is not running")
    if isinstance(exc, NotImplementedError):
        return ApiError(501, str(exc))
    logger.error("request failed", exc_info=(type(exc), exc, exc.__traceback__))
    return ApiError(500, "internal server error")


def error_body(path: str, status: int, message: str) -> dict:
    """``{"error": message}``; OpenAI routes get OpenAI's ``{"error": {"message", "type", ...}}``."""
    if path.startswith(OPENAI_PATHS):
        kind = "invalid_request_error" if status < 500 else "server_error"
        if status == 401:
            kind = "authentication_error"
        return {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return {"error": message}


def error_response(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(request.url.path, status, message), status_code=status, headers=headers)


def _validation_message(exc: RequestValidationError) -> tuple[int, str]:
    parts = []
    status = 422
    for error in exc.errors():
        location = [str(p) for p in error.get("loc", ()) if p != "body"]
        if error.get("type") == "json_invalid":
            status = 400
            parts.append(f"invalid JSON body: {error.get('ctx', {}).get('error', error.get('msg'))}")
            continue
        field = ".".join(location) or "body"
        message = "unknown field" if error.get("type") == "extra_forbidden" else error.get("msg", "invalid value")
        parts.append(f"{field}: {message}")
    return status, "; ".join(parts) or "invalid request"


def install_handlers(app) -> None:
    """Register the JSON error handlers on a FastAPI app."""

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError):
        return error_response(request, exc.status, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        status, message = _validation_message(exc)
        return error_response(request, status, message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}"
        return error_response(request, exc.status_code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        logger.error("unhandled error on %s", request.url.path, exc_info=(type(exc), exc, exc.__traceback__))
        return error_response(request, 500, "internal server error")
