"""Moondream cloud-compatible routes: POST /v1/caption, /v1/query, /v1/detect, /v1/point.

Bodies are what the official ``moondream`` client sends (``image_url`` as a base64 data URL,
``stream``, ``settings``); streams are SSE events ``{"chunk": text, "completed": false}``
closed by ``{"completed": true, "metrics": {...}}``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request

from .errors import model_error
from .inputs import StrictBody, decode_image, refuse_unsupported
from .metrics import ARRIVED
from .textjobs import (
    finish_text,
    job_events,
    prompt_builder,
    sampling_settings,
    sse,
    sse_response,
    start_text,
    timed_out,
)


class MoondreamBody(StrictBody):
    """Fields every route takes; the official client sends ``model`` when one is chosen."""

    model: str | None = None
    settings: dict[str, Any] | None = None


class CaptionBody(MoondreamBody):
    image_url: str
    length: Literal["short", "normal", "long"] = "normal"
    stream: bool = False


class QueryBody(MoondreamBody):
    question: str
    image_url: str | None = None
    stream: bool = False
    reasoning: bool | None = None  # moondream 3 only
    spatial_refs: list[Any] | None = None  # moondream 3 only


class LocateBody(MoondreamBody):
    image_url: str
    object: str
    stream: bool = False  # sent by the client's detect; results come whole
    spatial_refs: list[Any] | None = None  # moondream 3 only


def build_router(state, dependencies) -> APIRouter:
    router = APIRouter(dependencies=dependencies)

    async def text_reply(request: Request, key: str, prompt, body, image, fields):
        settings = sampling_settings(state.model, body.settings, "settings")
        request_id = uuid.uuid4().hex
        job = await start_text(
            request, state.batcher, prompt, settings, image, body.stream, fields, state.limits.request_timeout_s
        )
        if not body.stream:
            result = await finish_text(job, fields, request)
            return {
                "request_id": request_id,
                key: result.text,
                "finish_reason": result.finish_reason,
                "metrics": result.figures.as_dict(),
            }

        async def events():
            async for kind, value in job_events(job, request):
                if kind == "text":
                    yield sse({"chunk": value, "completed": False})
                elif kind == "done":
                    figures = value.figures.as_dict()
                    done = {"completed": True, "request_id": request_id, "finish_reason": value.finish_reason}
                    yield sse({**done, "metrics": figures})
                elif kind == "error":
                    yield sse({"completed": True, "request_id": request_id, "error": value})

        return sse_response(events(), {"X-Request-Id": request_id})

    @router.post("/v1/caption")
    async def caption(body: CaptionBody, request: Request):
        fields = {"image": "image_url", "text": "length", "settings": "settings"}
        prompt = prompt_builder(state.model, "length", lambda p: p.caption(body.length))
        image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        return await text_reply(request, "caption", prompt, body, image, fields)

    @router.post("/v1/query")
    async def query(body: QueryBody, request: Request):
        fields = {"image": "image_url", "text": "question", "settings": "settings"}
        refuse_unsupported(body, ("reasoning", "spatial_refs"))
        prompt = prompt_builder(state.model, "question", lambda p: p.query(body.question))
        image = None
        if body.image_url is not None:
            image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        return await text_reply(request, "answer", prompt, body, image, fields)

    async def locate(request: Request, body: LocateBody, skill: str, key: str):
        refuse_unsupported(body, ("stream", "spatial_refs"))
        created = request.scope.get(ARRIVED, time.perf_counter())
        image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        settings = body.settings

        def work(model):
            started = time.perf_counter()
            found = getattr(model, skill)(image, body.object, settings=settings)[key]
            return found, started, time.perf_counter()

        timeout = state.limits.request_timeout_s
        try:  # a detection already running finishes (it is bounded by max_objects); a queued one is dropped
            left = timeout - (time.perf_counter() - created)
            found, started, finished = await asyncio.wait_for(state.batcher.run(work), left)
        except asyncio.TimeoutError:
            raise timed_out(timeout) from None
        except Exception as exc:
            raise model_error(exc, image="image_url", text="object", settings="settings") from None
        metrics = {
            "queue_ms": round((started - created) * 1000, 3),
            "total_ms": round((finished - created) * 1000, 3),
            "count": len(found),
        }
        return {"request_id": uuid.uuid4().hex, key: found, "metrics": metrics}

    @router.post("/v1/detect")
    async def detect(body: LocateBody, request: Request):
        return await locate(request, body, "detect", "objects")

    @router.post("/v1/point")
    async def point(body: LocateBody, request: Request):
        return await locate(request, body, "point", "points")

    return router
