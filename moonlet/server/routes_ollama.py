"""Ollama-compatible routes: POST /api/generate, /api/chat; GET /api/tags, /api/version.

Images are base64 strings in ``images`` (the last one is used); ``stream`` defaults to true
and streams newline-delimited JSON. The closing object carries Ollama's timing fields in
nanoseconds. ``options`` understood: temperature, top_p, seed, num_predict.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request

from .. import __version__
from .errors import ApiError
from .inputs import StrictBody, decode_image, refuse_unsupported
from .textjobs import finish_text, job_events, ndjson, ndjson_response, prompt_builder, sampling_settings, start_text


class OllamaBody(StrictBody):
    """Fields both routes take. ``keep_alive`` is accepted and ignored (the model stays loaded);
    ``format``, ``think`` and ``tools`` are refused when set."""

    model: str | None = None
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: Any = None
    format: Any = None
    think: Any = None
    tools: list[Any] | None = None


UNSUPPORTED = ("format", "think", "tools")
GENERATE_UNSUPPORTED = (*UNSUPPORTED, "system", "template", "suffix", "context", "raw")


class GenerateBody(OllamaBody):
    prompt: str = ""
    images: list[str] | None = None
    system: str | None = None
    template: str | None = None
    suffix: str | None = None
    context: list[int] | None = None
    raw: bool | None = None


class OllamaMessage(StrictBody):
    role: str
    content: str | None = None
    images: list[str] | None = None
    thinking: str | None = None
    tool_calls: list[Any] | None = None
    tool_name: str | None = None


class ChatBody(OllamaBody):
    messages: list[OllamaMessage]


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def ollama_settings(model, options: dict[str, Any] | None):
    """Sampling settings from Ollama options; unknown options are ignored as Ollama does."""
    options = options or {}
    settings: dict[str, Any] = {k: options[k] for k in ("temperature", "top_p", "seed") if k in options}
    limit = options.get("num_predict")
    if limit is not None:
        if not isinstance(limit, int) or isinstance(limit, bool):
            raise ApiError(422, f"options.num_predict: expected an integer, got {limit!r}")
        if limit > 0:  # -1 / -2 / 0: Ollama's "no fixed limit"; the model default applies
            settings["max_tokens"] = limit
    return sampling_settings(model, settings, "options")


def timings(figures) -> dict[str, int]:
    def ns(a, b):
        return int((b - a) * 1e9) if a is not None and b is not None else 0

    return {
        "total_duration": ns(figures.created, figures.finished),
        "load_duration": 0,  # the model is loaded once at start-up
        "prompt_eval_count": figures.input_tokens,
        "prompt_eval_duration": ns(figures.started, figures.first_token),
        "eval_count": figures.output_tokens,
        "eval_duration": ns(figures.first_token, figures.finished),
    }


def build_router(state, dependencies) -> APIRouter:
    router = APIRouter(dependencies=dependencies)

    @router.get("/api/tags")
    async def tags():
        stamp = datetime.fromtimestamp(state.started, timezone.utc).isoformat().replace("+00:00", "Z")
        details = {
            "format": "safetensors",
            "family": "moondream",
            "families": ["moondream"],
            "parameter_size": state.parameter_size,
            "quantization_level": state.dtype.upper(),
        }
        entry = {
            "name": state.name,
            "model": state.name,
            "modified_at": stamp,
            "size": state.size_bytes,
            "digest": state.digest,
            "details": details,
        }
        return {"models": [entry]}

    @router.get("/api/version")
    async def version():
        return {"version": __version__}

    async def run(
        request: Request, body, text: str, text_field: str, images: list[str] | None, image_field: str, shape
    ):
        """Shared by generate and chat; ``shape(piece)`` wraps output text for the protocol."""
        settings = ollama_settings(state.model, body.options)
        name = body.model or state.name
        if not text.strip() and not images:
            return {"model": name, "created_at": now_rfc3339(), **shape(""), "done": True, "done_reason": "load"}
        if text.strip():
            prompt = prompt_builder(state.model, text_field, lambda p: p.query(text))
        else:
            prompt = prompt_builder(state.model, text_field, lambda p: p.caption("normal"))
        image = None
        if images:
            image = await asyncio.to_thread(decode_image, images[-1], f"{image_field}.{len(images) - 1}", state.limits)
        fields = {"image": image_field, "text": text_field, "settings": "options"}
        job = await start_text(
            request, state.batcher, prompt, settings, image, body.stream, fields, state.limits.request_timeout_s
        )
        if not body.stream:
            result = await finish_text(job, fields, request)
            return {
                "model": name,
                "created_at": now_rfc3339(),
                **shape(result.text),
                "done": True,
                "done_reason": result.finish_reason,
                **timings(result.figures),
            }

        async def lines():
            async for kind, value in job_events(job, request):
                if kind == "text":
                    yield ndjson({"model": name, "created_at": now_rfc3339(), **shape(value), "done": False})
                elif kind == "done":
                    closing = {"done": True, "done_reason": value.finish_reason, **timings(value.figures)}
                    yield ndjson({"model": name, "created_at": now_rfc3339(), **shape(""), **closing})
                elif kind == "error":
                    yield ndjson({"error": value})

        return ndjson_response(lines())

    @router.post("/api/generate")
    async def generate(body: GenerateBody, request: Request):
        refuse_unsupported(body, GENERATE_UNSUPPORTED)
        return await run(request, body, body.prompt, "prompt", body.images, "images", lambda piece: {"response": piece})

    @router.post("/api/chat")
    async def chat(body: ChatBody, request: Request):
        def shape(piece: str) -> dict:
            return {"message": {"role": "assistant", "content": piece}}

        refuse_unsupported(body, UNSUPPORTED)
        for index, message in enumerate(body.messages):
            refuse_unsupported(message, ("tool_calls", "tool_name"), f"messages.{index}.")
        if not body.messages:  # Ollama's way to load a model
            return await run(request, body, "", "messages", None, "messages", shape)
        users = [i for i, m in enumerate(body.messages) if m.role == "user"]
        if not users:
            raise ApiError(422, "messages: at least one user message is needed")
        last = users[-1]
        images, image_field = None, "messages"
        for index, message in enumerate(body.messages):
            if message.images:
                images, image_field = message.images, f"messages.{index}.images"
        text = body.messages[last].content or ""
        return await run(request, body, text, f"messages.{last}.content", images, image_field, shape)

    return router
