"""The server's limits: one frozen config (middleware.py enforces the HTTP-level ones).

Where each limit bites:
- ``max_body_bytes``: 413 before the body is read (declared length) or while it streams in.
- ``max_concurrent``: model requests being handled at once (queued or decoding, streams until
  their last byte); one more gets 429 with ``Retry-After``.
- ``max_queue``: jobs waiting for the model worker; one more gets 503 with ``Retry-After``.
- ``request_timeout_s``: a request still unanswered after this long gets 504 (a stream gets a
  closing error event) and its generation stops.
- ``max_image_pixels``: images larger than this (width × height, read from the header) are
  refused with 413 before they are decoded.
- ``allow_image_urls``: off by default; when on, http(s) image URLs are fetched with
  ``image_url_max_bytes`` and ``image_url_timeout_s`` and never from private addresses.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..image import DEFAULT_MAX_PIXELS

MODEL_ROUTES = frozenset(
    {"/v1/caption", "/v1/query", "/v1/detect", "/v1/point", "/v1/chat/completions", "/api/generate", "/api/chat"}
)
MIB = 1024 * 1024
RETRY_AFTER = {"Retry-After": "1"}  # seconds, on 429 and 503


class LimitError(ValueError):
    """A limit out of range; ``field`` names the ServerLimits field, ``problem`` says what is wrong."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field} {problem}")
        self.field = field
        self.problem = problem


POSITIVE_LIMITS = (
    "max_body_bytes",
    "max_batch",
    "max_queue",
    "max_concurrent",
    "request_timeout_s",
    "max_image_pixels",
    "image_url_max_bytes",
    "image_url_timeout_s",
)


@dataclass(frozen=True)
class ServerLimits:
    """What the server accepts; a value out of range raises ``LimitError``."""

    max_body_bytes: int = 20 * MIB
    max_batch: int = 8
    max_queue: int = 256
    max_concurrent: int = 64
    batch_window_ms: float = 5.0
    request_timeout_s: float = 300.0
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    allow_image_urls: bool = False
    image_url_max_bytes: int = 20 * MIB
    image_url_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        for name in POSITIVE_LIMITS:
            if not getattr(self, name) > 0:
                raise LimitError(name, f"must be positive, got {getattr(self, name)!r}")
        if self.batch_window_ms < 0:
            raise LimitError("batch_window_ms", f"must not be negative, got {self.batch_window_ms!r}")
