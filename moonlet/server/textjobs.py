"""Helpers the routes share to run a text job and stream its pieces as SSE or NDJSON."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..prompts import PromptError
from ..sampling import SamplingSettings, SettingsError
from .batcher import Batcher, TextJob, TextResult
from .errors import ApiError, model_error
from .metrics import ARRIVED

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def sampling_settings(model, settings, field: str) -> SamplingSettings:
    """The model's defaults overridden by ``settings``; 422 naming ``field`` when invalid."""
    try:
        return model._settings(settings)
    except SettingsError as exc:
        raise ApiError(422, f"{field}: {exc}" if field else str(exc)) from None


def prompt_builder(model, field: str, build) -> list[int]:
    """Prompt ids from ``build(PromptBuilder)``; 422 naming ``field`` when the text is unusable."""
    try:
        return build(model._prompts())
    except PromptError as exc:
        raise ApiError(422, f"{field}: {exc}") from None


async def start_text(
    request: Request, batcher: Batcher, prompt, settings, image, stream: bool, fields: dict[str, str]
) -> TextJob:
    """Queue a job; a streaming one is awaited until accepted so errors still get a status code."""
    try:
        job = batcher.submit_text(prompt, settings, image=image, stream=stream, arrived=request.scope.get(ARRIVED))
    except Exception as exc:
        raise model_error(exc, **fields) from None
    if stream:
        try:
            kind, value = await job.channel.get()
        except asyncio.CancelledError:
            job.cancelled = True
            raise
        if kind == "error":
            raise model_error(value, **fields)
    return job


async def finish_text(job: TextJob, fields: dict[str, str], request: Request | None = None) -> TextResult:
    """The final result of a non-streaming job, errors mapped to ApiError.

    With ``request``, a client that hangs up stops its row instead of leaving it running.
    """
    result = asyncio.ensure_future(job.result())
    waiters = {result}
    if request is not None:
        waiters.add(asyncio.ensure_future(_disconnected(request)))
    try:
        done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in waiters:
            task.cancel()
    if result not in done:
        job.cancelled = True
        raise ApiError(499, "client closed the request")
    try:
        return result.result()
    except Exception as exc:
        raise model_error(exc, **fields) from None


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body was read already, so only a disconnect comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def job_events(job: TextJob) -> AsyncIterator[tuple[str, Any]]:
    """("text", piece)… then ("done", TextResult) or ("error", message); stops the row on disconnect."""
    try:
        while True:
            kind, value = await job.channel.get()
            if kind == "error":
                yield "error", model_error(value).message
                return
            yield kind, value
            if kind == "done":
                return
    finally:
        job.cancelled = True


def sse(data: Any) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)
    return f"data: {payload}\n\n"


def ndjson(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False) + "\n"


def sse_response(lines: AsyncIterator[str], headers: dict[str, str] | None = None) -> StreamingResponse:
    return StreamingResponse(lines, media_type="text/event-stream", headers={**SSE_HEADERS, **(headers or {})})


def ndjson_response(lines: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(lines, media_type="application/x-ndjson")
