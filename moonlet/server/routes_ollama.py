"""Ollama-compatible routes: POST /api/generate, /api/chat, /api/show; GET /api/tags, /api/ps, /api/version.

Images are base64 strings in ``images`` (the last one is used); ``stream`` defaults to true
and streams newline-delimited JSON. The closing object carries Ollama's timing fields in
nanoseconds. ``options`` understood: temperature, top_p, seed, num_predict. ``think: true`` runs
grounded reasoning and returns its text as ``thinking`` (the chat message's, or generate's).
``format`` ("json" or a JSON schema) constrains the reply to JSON.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from typing import Any

from fastapi import APIRouter, Request

from .. import __version__
from ..generation.structured import JSON_OBJECT
from .errors import ApiError
from .inputs import StrictBody, decode_image, refuse_unsupported
from .textjobs import (
    finish_text,
    job_events,
    ndjson,
    ndjson_response,
    prompt_builder,
    sampling_settings,
    start_text,
    text_options,
)


class OllamaBody(StrictBody):
    """Fields both routes take. ``keep_alive`` is accepted and ignored (the model stays loaded);
    ``tools`` is refused when set; ``format`` is "json" or a schema; ``think`` is true or false."""

    model: str | None = None
    stream: bool = True
    options: dict[str, Any] | None = None
    keep_alive: Any = None
    format: Any = None
    think: Any = None
    tools: list[Any] | None = None


UNSUPPORTED = ("tools",)
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


class ShowBody(StrictBody):
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool | None = None


def format_schema(value: Any) -> dict | None:
    """Ollama's ``format``: "json" (any JSON object) or a JSON schema object; None or "" for text."""
    if value is None or value == "":
        return None
    if value == "json":
        return JSON_OBJECT
    if isinstance(value, dict):
        return value
    raise ApiError(422, f'format: expected "json" or a JSON schema object, got {value!r}')


def thinking_flag(think: Any) -> bool:
    """Ollama's ``think``: true runs grounded reasoning; its effort levels are not part of moondream2."""
    if think is None or isinstance(think, bool):
        return bool(think)
    raise ApiError(422, f"think: only true or false are supported (moondream2 has no reasoning levels), got {think!r}")


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

    details = {
        "format": "safetensors",
        "family": "moondream",
        "families": ["moondream"],
        "parameter_size": state.parameter_size,
        "quantization_level": state.dtype.upper(),
    }

    def entry() -> dict:
        stamp = datetime.fromtimestamp(state.started, timezone.utc).isoformat().replace("+00:00", "Z")
        return {
            "name": state.name,
            "model": state.name,
            "modified_at": stamp,
            "size": state.size_bytes,
            "digest": state.digest,
            "details": details,
        }

    @router.get("/api/tags")
    async def tags():
        return {"models": [entry()]}

    @router.get("/api/ps")
    async def ps():
        """The one loaded model; it stays loaded while the server runs (no expiry)."""
        loaded = {k: v for k, v in entry().items() if k != "modified_at"}
        on_gpu = state.model.model.device.type != "cpu"
        return {"models": [{**loaded, "expires_at": "9999-12-31T23:59:59Z", "size_vram": state.size_bytes * on_gpu}]}

    @router.post("/api/show")
    async def show(body: ShowBody):
        asked = body.model or body.name
        if asked is not None and asked not in (state.name, f"{state.name}:latest"):
            raise ApiError(404, f"model: {asked!r} not found; this server serves {state.name!r}")
        config = state.model.config
        capabilities = ["completion", "vision"]
        if state.model.prompts().grounded:
            capabilities.append("thinking")
        return {
            "modelfile": f"# moonlet serves {state.name} (profile {config.profile})",
            "parameters": "",
            "template": "",
            "details": details,
            "model_info": {
                "general.architecture": "moondream",
                "general.parameter_count": state.model.model.num_parameters(),
                "moondream.context_length": config.text.max_context,
                "moondream.embedding_length": config.text.dim,
                "moondream.block_count": config.text.n_layers,
                "moonlet.profile": config.profile,
            },
            "capabilities": capabilities,
            "modified_at": entry()["modified_at"],
        }

    @router.get("/api/version")
    async def version():
        return {"version": __version__}

    async def run(
        request: Request, body, text: str, text_field: str, images: list[str] | None, image_field: str, shape
    ):
        """Shared by generate and chat; ``shape(piece, thinking)`` wraps output text for the protocol."""
        settings = ollama_settings(state.model, body.options)
        reasoning = thinking_flag(body.think)
        name = body.model or state.name
        if not text.strip() and not images:
            return {"model": name, "created_at": now_rfc3339(), **shape(""), "done": True, "done_reason": "load"}
        if reasoning:
            prompt_builder(state.model, "think", lambda p: p.require_grounded("think", state.model.config.profile))
            if not text.strip():
                raise ApiError(422, f"{text_field}: think needs a question")
        if text.strip():
            prompt = prompt_builder(state.model, text_field, lambda p: p.query(text, reasoning=reasoning))
        else:
            prompt = prompt_builder(state.model, text_field, lambda p: p.caption("normal"))
        image = None
        if images:
            image = await asyncio.to_thread(decode_image, images[-1], f"{image_field}.{len(images) - 1}", state.limits)
        fields = {"image": image_field, "text": text_field, "settings": "options"}
        schema = format_schema(body.format)
        options = await text_options(
            state.model, None, "options", reasoning=reasoning, json_schema=schema, schema_field="format"
        )
        timeout = state.limits.request_timeout_s
        job = await start_text(request, state.batcher, prompt, settings, image, body.stream, fields, timeout, options)
        if not body.stream:
            result = await finish_text(job, fields, request)
            return {
                "model": name,
                "created_at": now_rfc3339(),
                **shape(result.text, result.reasoning["text"] if result.reasoning else None),
                "done": True,
                "done_reason": result.finish_reason,
                **timings(result.figures),
            }

        async def lines():
            async for kind, value in job_events(job, request):
                if kind == "reasoning":
                    yield ndjson(
                        {"model": name, "created_at": now_rfc3339(), **shape("", value["text"]), "done": False}
                    )
                elif kind == "text":
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

        def shape(piece: str, thinking: str | None = None) -> dict:
            return {"response": piece, **({"thinking": thinking} if thinking is not None else {})}

        return await run(request, body, body.prompt, "prompt", body.images, "images", shape)

    @router.post("/api/chat")
    async def chat(body: ChatBody, request: Request):
        def shape(piece: str, thinking: str | None = None) -> dict:
            extra = {"thinking": thinking} if thinking is not None else {}
            return {"message": {"role": "assistant", "content": piece, **extra}}

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
