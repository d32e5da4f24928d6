"""Optional API key, sent as ``X-Moondream-Auth: KEY`` or ``Authorization: Bearer KEY``."""

from __future__ import annotations

import hmac

from fastapi import Request

from .errors import ApiError


def presented_key(request: Request) -> str | None:
    key = request.headers.get("x-moondream-auth")
    if key:
        return key.strip()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None


def api_key_dependency(expected: str | None):
    """A FastAPI dependency that rejects requests without the key (a no-op when no key is set)."""

    async def require_key(request: Request) -> None:
        if not expected:
            return
        key = presented_key(request)
        if key is None:
            missing = "missing API key: send X-Moondream-Auth or Authorization: Bearer"
            raise ApiError(401, missing, {"WWW-Authenticate": "Bearer"})
        if not hmac.compare_digest(key.encode(), expected.encode()):
            raise ApiError(401, "invalid API key", {"WWW-Authenticate": "Bearer"})

    return require_key
