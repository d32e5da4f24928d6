"""Helpers the routes share to run a text job and stream its pieces as SSE or NDJSON."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..generation.sampling import SamplingSettings, SettingsError
from ..generation.structured import SchemaError
from ..prompts import PromptError
from ..spatial import SpatialRefError, parse_spatial_refs
from ..variants import VariantError
from .batcher import Batcher, TextJob, TextOptions, TextResult
from .errors import ApiError, model_error
from .metrics import ARRIVED

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sampling_settings(model, settings, field: str) -> SamplingSettings:
    """The model's defaults overridden by ``settings``; 422 naming ``field`` when invalid."""
    try:
        return model.sampling(settings)
    except SettingsError as exc:
        raise ApiError(422, f"{field}: {exc}" if field else str(exc)) from None


def prompt_builder(model, field: str, build) -> list[int]:
    """Prompt ids from ``build(PromptBuilder)``; 422 naming ``field`` when the text is unusable."""
    try:
        return build(model.prompts())
    except PromptError as exc:
        raise ApiError(422, f"{field}: {exc}") from None


def timed_out(seconds: float) -> ApiError:
    return ApiError(504, f"the request took longer than {seconds:g} s (the server's --request-timeout)")


def remaining(job: TextJob) -> float | None:
    return None if job.deadline is None else max(0.0, job.deadline - time.perf_counter())


async def text_options(
    model, settings, field: str, refs=None, reasoning: bool = False, json_schema=None, schema_field: str = ""
) -> TextOptions:
    """A query's variant (checked and loaded now; 422 naming ``field``.variant), refs, reasoning and
    JSON schema (``settings["json_schema"]`` or ``json_schema``; compiled now, 422 naming ``schema_field``)."""
    try:
        parsed = tuple(parse_spatial_refs(refs))
    except SpatialRefError as exc:
        raise ApiError(422, str(exc)) from None
    settings = settings if isinstance(settings, dict) else {}
    variant = settings.get("variant")
    if variant is not None:
        try:
            await asyncio.to_thread(model.variants.get, variant)
        except VariantError as exc:
            raise ApiError(422, f"{field}.variant: {exc}") from None
    if json_schema is None and settings.get("json_schema") is not None:
        json_schema, schema_field = settings["json_schema"], f"{field}.json_schema"
    if json_schema is not None:
        try:
            await asyncio.to_thread(model.constraint, {"json_schema": json_schema})
        except SchemaError as exc:
            raise ApiError(422, f"{schema_field}: {exc.detail}") from None
    return TextOptions(variant, parsed, reasoning, json_schema)


async def start_text(
    request: Request,
    batcher: Batcher,
    prompt,
    settings,
    image,
    stream: bool,
    fields: dict[str, str],
    timeout_s: float,
    options: TextOptions | None = None,
) -> TextJob:
    """Queue a job; a streaming one is awaited until accepted so errors still get a status code."""
    arrived = request.scope.get(ARRIVED, time.perf_counter())
    try:
        job = batcher.submit_text(prompt, settings, image=image, stream=stream, arrived=arrived, options=options)
    except Exception as exc:
        raise model_error(exc, **fields) from None
    job.timeout_s = timeout_s
    if stream:
        try:
            kind, value = await asyncio.wait_for(job.channel.get(), remaining(job))
        except asyncio.TimeoutError:
            job.cancelled = True
            raise timed_out(timeout_s) from None
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        if kind == "error":
            raise model_error(value, **fields)
    return job


class ClientGone(Exception):
    """The client hung up before its reply was complete."""


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body was read already, so only a disconnect comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _next_event(job: TextJob, disconnect: asyncio.Future | None) -> tuple[str, Any]:
    """The job's next event; TimeoutError past its deadline, ClientGone once ``disconnect`` is done."""
    event = asyncio.ensure_future(job.channel.get())
    waiters = {event} if disconnect is None else {event, disconnect}
    done, _ = await asyncio.wait(waiters, timeout=remaining(job), return_when=asyncio.FIRST_COMPLETED)
    if event in done:
        return event.result()
    event.cancel()  # nothing was taken from the queue
    if not done:
        raise asyncio.TimeoutError
    raise ClientGone


async def _events(job: TextJob, request: Request | None) -> AsyncIterator[tuple[str, Any]]:
    """The job's events until it ends; its row is stopped when the client goes or time runs out."""
    disconnect = asyncio.ensure_future(_disconnected(request)) if request is not None else None
    try:
        while True:
            kind, value = await _next_event(job, disconnect)
            yield kind, value
            if kind in ("done", "error"):
                return
    finally:
        job.cancelled = True
        if disconnect is not None:
            disconnect.cancel()


async def finish_text(job: TextJob, fields: dict[str, str], request: Request | None = None) -> TextResult:
    """The final result of a non-streaming job, errors mapped to ApiError; 504 past its deadline.

    With ``request``, a client that hangs up stops its row instead of leaving it running.
    """
    try:
        async for kind, value in _events(job, request):
            if kind == "done":
                return value
            if kind == "error":
                raise model_error(value, **fields)
    except asyncio.TimeoutError:
        raise timed_out(job.timeout_s) from None
    except ClientGone:
        raise ApiError(499, "client closed the request") from None
    raise ApiError(500, "the job ended without a result")


async def job_events(job: TextJob, request: Request | None = None) -> AsyncIterator[tuple[str, Any]]:
    """("reasoning", dict) with reasoning, ("text", piece)… then ("done", TextResult) or ("error", message);
    stops the row on disconnect."""
    try:
        async for kind, value in _events(job, request):
            if kind == "started":
                continue
            yield kind, (model_error(value).message if kind == "error" else value)
    except asyncio.TimeoutError:
        yield "error", timed_out(job.timeout_s).message
    except ClientGone:
        return


def sse(data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def ndjson(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


def sse_response(lines: AsyncIterator[str], headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(lines, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})


def ndjson_response(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="application/x-ndjson")
