"""OpenAI-compatible routes: POST /v1/chat/completions and GET /v1/models.

Moondream answers one question about one image, so a chat becomes a query: the text of the
last user message is the question and the most recent ``image_url`` part (a data URL) is the
image. A last user message with an image and no text is captioned instead. ``response_format``
``json_object`` or ``json_schema`` constrains the reply to JSON (any object, or the schema's).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from fastapi import APIRouter, Request
from pydantic import StrictInt

from ..generation.structured import JSON_OBJECT
from .errors import ApiError
from .inputs import StrictBody, decode_image, refuse_unsupported
from .textjobs import (
    finish_text,
    job_events,
    prompt_builder,
    sampling_settings,
    sse,
    sse_response,
    start_text,
    text_options,
)


class ChatMessage(StrictBody):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[Any] | None = None
    tool_call_id: str | None = None


# Chat-completions fields this server knows but does not implement: refused when set.
UNSUPPORTED = (
    "tools",
    "tool_choice",
    "functions",
    "function_call",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "reasoning",
    "reasoning_effort",
)


class ChatBody(StrictBody):
    messages: list[ChatMessage]
    model: str | None = None
    stream: bool = False
    max_tokens: StrictInt | None = None
    max_completion_tokens: StrictInt | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: StrictInt | None = None
    n: StrictInt | None = None
    stream_options: dict[str, Any] | None = None
    user: str | None = None  # accepted and ignored, as are metadata and store
    metadata: dict[str, Any] | None = None
    store: bool | None = None
    tools: list[Any] | None = None
    tool_choice: Any = None
    functions: list[Any] | None = None
    function_call: Any = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stop: str | list[str] | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    reasoning: bool | None = None  # the moondream client's chat sends it
    reasoning_effort: str | None = None


def split_messages(messages: list[ChatMessage]) -> tuple[str, str | None, str]:
    """(question, image data URL or None, field path of the image) from a chat."""
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise ApiError(422, "messages: at least one user message is needed")
    question = ""
    image, image_field = None, "messages"
    for index, message in enumerate(messages):
        content = message.content
        texts: list[str] = []
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            for part_index, part in enumerate(content):
                where = f"messages.{index}.content.{part_index}"
                kind = part.get("type")
                if kind == "text":
                    if not isinstance(part.get("text"), str):
                        raise ApiError(422, f"{where}.text: expected a string")
                    texts.append(part["text"])
                elif kind == "image_url":
                    url = part.get("image_url")
                    url = url.get("url") if isinstance(url, dict) else url
                    if not isinstance(url, str):
                        raise ApiError(422, f"{where}.image_url.url: expected a data URL string")
                    image, image_field = url, f"{where}.image_url.url"
                else:
                    raise ApiError(422, f"{where}.type: unsupported content part {kind!r}; use 'text' or 'image_url'")
        if index == users[-1]:
            question = "\n".join(t for t in texts if t.strip()).strip()
    return question, image, image_field


SCHEMA_FIELDS = {"name", "description", "schema", "strict"}


def response_schema(response_format: dict[str, Any] | None) -> dict | None:
    """The JSON schema a ``response_format`` asks for: None for text, any object for ``json_object``."""
    if response_format is None:
        return None
    kind = response_format.get("type")
    extra = set(response_format) - {"type", "json_schema"}
    if extra:
        raise ApiError(422, f"response_format: unknown fields {sorted(extra)}")
    if kind == "text":
        return None
    if kind == "json_object":
        return JSON_OBJECT
    if kind != "json_schema":
        raise ApiError(422, f"response_format.type: {kind!r} is not one of 'text', 'json_object', 'json_schema'")
    spec = response_format.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise ApiError(422, "response_format.json_schema.schema: a JSON schema object is required")
    unknown = set(spec) - SCHEMA_FIELDS
    if unknown:
        raise ApiError(422, f"response_format.json_schema: unknown fields {sorted(unknown)}")
    return spec["schema"]


def build_router(state, dependencies) -> APIRouter:
    router = APIRouter(dependencies=dependencies)

    @router.get("/v1/models")
    async def models():
        entry = {"id": state.name, "object": "model", "created": int(state.started), "owned_by": "moonlet"}
        return {"object": "list", "data": [entry]}

    @router.post("/v1/chat/completions")
    async def chat(body: ChatBody, request: Request):
        if body.n not in (None, 1):
            raise ApiError(422, "n: only n=1 is supported")
        refuse_unsupported(body, UNSUPPORTED)
        json_schema = response_schema(body.response_format)
        for index, message in enumerate(body.messages):
            refuse_unsupported(message, ("tool_calls", "tool_call_id"), f"messages.{index}.")
        question, image_url, image_field = split_messages(body.messages)
        if not question and image_url is None:
            raise ApiError(422, "messages: the last user message has no text and no image")
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        raw = {"max_tokens": limit, "temperature": body.temperature, "top_p": body.top_p, "seed": body.seed}
        settings = sampling_settings(state.model, {k: v for k, v in raw.items() if v is not None}, "")
        fields = {"image": image_field, "text": "messages", "settings": "settings"}
        if question:
            prompt = prompt_builder(state.model, "messages", lambda p: p.query(question))
        else:
            prompt = prompt_builder(state.model, "messages", lambda p: p.caption("normal"))
        asked_schema = (body.response_format or {}).get("type") == "json_schema"
        schema_field = "response_format.json_schema.schema" if asked_schema else "response_format"
        options = await text_options(state.model, None, "", json_schema=json_schema, schema_field=schema_field)
        image = None
        if image_url is not None:
            image = await asyncio.to_thread(decode_image, image_url, image_field, state.limits)
        job = await start_text(
            request,
            state.batcher,
            prompt,
            settings,
            image,
            body.stream,
            fields,
            state.limits.request_timeout_s,
            options,
        )
        completion_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        head = {"id": completion_id, "created": created, "model": state.name}

        def usage(figures) -> dict[str, int]:
            return {
                "prompt_tokens": figures.input_tokens,
                "completion_tokens": figures.output_tokens,
                "total_tokens": figures.input_tokens + figures.output_tokens,
            }

        if not body.stream:
            result = await finish_text(job, fields, request)
            return {
                **head,
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": result.finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": usage(result.figures),
                "metrics": result.figures.as_dict(),
            }

        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict, finish_reason=None, **extra) -> str:
            choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
            return sse({**head, "object": "chat.completion.chunk", "choices": [choice], **extra})

        async def events():
            yield chunk({"role": "assistant", "content": ""})
            async for kind, value in job_events(job, request):
                if kind == "text":
                    yield chunk({"content": value})
                elif kind == "done":
                    yield chunk({}, value.finish_reason, metrics=value.figures.as_dict())
                    if include_usage:
                        closing = {"object": "chat.completion.chunk", "choices": [], "usage": usage(value.figures)}
                        yield sse({**head, **closing})
                elif kind == "error":
                    yield sse({"error": {"message": value, "type": "server_error", "param": None, "code": 500}})
            yield sse("[DONE]")

        return sse_response(events())

    return router
