"""Moondream cloud-compatible routes: POST /v1/caption, /v1/query, /v1/detect, /v1/point, and our
extension /v1/gaze (``detect_gaze``).

Bodies are what the official ``moondream`` client sends (``image_url`` as a base64 data URL,
``stream``, ``settings`` with ``variant``; ``reasoning`` and ``spatial_refs`` on query); streams are
SSE events ``{"chunk": text, "completed": false}`` (with reasoning, the first carries
``"reasoning": {...}``) closed by ``{"completed": true, "metrics": {...}}``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request

from ..spatial import SpatialRefError, parse_ref, parse_spatial_refs
from .errors import ApiError, model_error
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
    text_options,
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
    reasoning: bool = False  # grounded reasoning (2025-06-21)
    spatial_refs: list[Any] | None = None  # points [x, y] and boxes [x_min, y_min, x_max, y_max] (2025-06-21)


class LocateBody(MoondreamBody):
    image_url: str
    object: str
    stream: bool = False  # sent by the client's detect; results come whole
    spatial_refs: list[Any] | None = None  # the client's point() sends it; moondream2's detect and point take none


class GazeBody(MoondreamBody):
    """Our extension: ``detect_gaze`` (the reference's experimental skill)."""

    image_url: str
    eye: list[Any] | None = None
    face: list[Any] | None = None
    unstable_settings: dict[str, Any] | None = None


def build_router(state, dependencies) -> APIRouter:
    router = APIRouter(dependencies=dependencies)

    async def text_reply(request: Request, key: str, prompt, body, image, fields, refs=None, reasoning=False):
        settings = sampling_settings(state.model, body.settings, "settings")
        options = await text_options(state.model, body.settings, "settings", refs, reasoning)
        request_id = uuid.uuid4().hex
        timeout = state.limits.request_timeout_s
        job = await start_text(request, state.batcher, prompt, settings, image, body.stream, fields, timeout, options)
        if not body.stream:
            result = await finish_text(job, fields, request)
            thought = {"reasoning": result.reasoning} if reasoning else {}
            return {
                "request_id": request_id,
                key: result.text,
                **thought,
                "finish_reason": result.finish_reason,
                "metrics": result.figures.as_dict(),
            }

        async def events():
            async for kind, value in job_events(job, request):
                if kind == "reasoning":
                    yield sse({"chunk": "", "reasoning": value, "completed": False})
                elif kind == "text":
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
        try:
            refs = parse_spatial_refs(body.spatial_refs)
        except SpatialRefError as exc:
            raise ApiError(422, str(exc)) from None
        if body.reasoning or refs:
            feature = "reasoning" if body.reasoning else "spatial_refs"
            prompt_builder(state.model, feature, lambda p: p.require_grounded(feature, state.model.config.profile))
        prompt = prompt_builder(state.model, "question", lambda p: p.query(body.question, "", refs, body.reasoning))
        image = None
        if body.image_url is not None:
            image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        return await text_reply(request, "answer", prompt, body, image, fields, refs, body.reasoning)

    async def locate(request: Request, body: LocateBody, skill: str, key: str):
        refuse_unsupported(body, ("stream", "spatial_refs"))
        image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        return await run_whole(request, key, lambda model: getattr(model, skill)(image, body.object, body.settings))

    async def run_whole(request: Request, key: str, call, text: str = "object"):
        """Run ``call(model)`` on the worker between batches; ``{key: result[key], "metrics": ...}``."""
        created = request.scope.get(ARRIVED, time.perf_counter())

        def work(model):
            started = time.perf_counter()
            found = call(model)[key]
            return found, started, time.perf_counter()

        timeout = state.limits.request_timeout_s
        try:  # a detection already running finishes (it is bounded by max_objects); a queued one is dropped
            left = timeout - (time.perf_counter() - created)
            found, started, finished = await asyncio.wait_for(state.batcher.run(work), left)
        except asyncio.TimeoutError:
            raise timed_out(timeout) from None
        except Exception as exc:
            raise model_error(exc, image="image_url", text=text, settings="settings") from None
        metrics = {
            "queue_ms": round((started - created) * 1000, 3),
            "total_ms": round((finished - created) * 1000, 3),
        }
        if isinstance(found, list):
            metrics["count"] = len(found)
        return {"request_id": uuid.uuid4().hex, key: found, "metrics": metrics}

    @router.post("/v1/detect")
    async def detect(body: LocateBody, request: Request):
        return await locate(request, body, "detect", "objects")

    @router.post("/v1/point")
    async def point(body: LocateBody, request: Request):
        return await locate(request, body, "point", "points")

    @router.post("/v1/gaze")
    async def gaze(body: GazeBody, request: Request):
        unstable = body.unstable_settings or {}
        try:
            eye = parse_ref(body.eye, "eye", sizes=(2,)) if body.eye is not None else None
            face = parse_ref(body.face, "face", sizes=(4,)) if body.face is not None else None
        except SpatialRefError as exc:
            raise ApiError(422, str(exc)) from None
        if eye is None and not unstable.get("prioritize_accuracy"):
            raise ApiError(422, "eye: required (the eye's [x, y], normalised) unless prioritize_accuracy is set")
        if face is None and unstable.get("prioritize_accuracy"):
            raise ApiError(422, "face: prioritize_accuracy needs the face's box [x_min, y_min, x_max, y_max]")
        image = await asyncio.to_thread(decode_image, body.image_url, "image_url", state.limits)
        return await run_whole(
            request, "gaze", lambda model: model.detect_gaze(image, eye, face, unstable, body.settings), "eye"
        )

    return router
