"""Generation engine: owns the KV cache, prefix reuse, sampling, stopping and batching.

The engine works on token ids and embeddings only; prompts are built by ``moonlet.prompts``
and text is produced by the API layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

from ..modeling.lora import TextAdapter, batch_adapter
from ..modeling.model import MoondreamModel
from .kv_cache import KVCache
from .reasoning import Reasoning, ReasoningStep
from .sampling import SamplingSettings, select_next
from .structured import TokenConstraint


class ContextOverflowError(ValueError):
    """A prompt that does not fit the model's context."""


@dataclass
class EncodedImage:
    """A prefilled prefix (BOS + image, or BOS alone): its keys/values for positions [0, length)."""

    cache: KVCache  # one slot, context = length
    length: int
    embedding: torch.Tensor | None = None  # (grid², dim) projected image features, if any
    variant: str | None = None  # the LoRA variant the prefix was encoded with (its keys differ)

    @property
    def nbytes(self) -> int:
        return self.cache.nbytes()


@dataclass
class TextRequest:
    prefix: EncodedImage
    prompt: Sequence[int]
    settings: SamplingSettings
    stop_ids: tuple[int, ...] = ()
    masked_ids: tuple[int, ...] = ()  # logits set to -inf at every step after the first
    keep_stop: bool = False  # return the stop id as the last token (2024 revisions do)
    slots: Mapping[int, torch.Tensor] | None = None  # prompt index → (dim,) embedding fed instead of the id's
    reasoning: Reasoning | None = None  # a grounded reasoning phase before the answer
    adapter: TextAdapter | None = None  # the LoRA variant applied to every step (the prefix's too)
    constraint: TokenConstraint | None = None  # a grammar the answer must follow (structured output)

    @property
    def budget(self) -> int:
        """Cache positions the generated tokens may take (reasoning, the fed answer id, the answer)."""
        return self.settings.max_tokens * (2 if self.reasoning else 1) + (1 if self.reasoning else 0)


STOP = "stop"  # the row produced one of its stop ids
LENGTH = "length"  # the row reached its max_tokens or the model's context


@dataclass(frozen=True)
class Step:
    """One decode step of a batch, a list entry per request.

    ``tokens``: the row's new id, None when it has none (finished, or a stop id not kept).
    ``finish_reasons``: on the step a row finishes, ``STOP`` or ``LENGTH``; otherwise None.
    ``reasoning``: with any reasoning row, its ``ReasoningStep`` while it reasons (``tokens`` are
    then the answer's only).
    """

    tokens: list[int | None]
    finish_reasons: list[str | None]
    reasoning: list[ReasoningStep | None] | None = None


@dataclass
class DecodeRow:
    """One request's decoding state in the shared cache (returned by ``Engine.start``)."""

    request: TextRequest
    position: int  # where the next fed token goes
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    finish_reason: str | None = None
    thinking: bool = False  # in the reasoning phase
    fresh: bool = True  # the next token is its phase's first (nothing masked)
    thoughts: int = 0  # reasoning tokens so far
    adapter: TextAdapter | None = None  # the batch's updates: every row's own variant (see ``batch_adapter``)

    @property
    def masked_ids(self) -> tuple[int, ...]:
        return self.request.reasoning.masked_ids if self.thinking else self.request.masked_ids

    @property
    def done(self) -> bool:
        return self.finish_reason is not None


KV_BUCKET = 64  # attention lengths and cache sizes are rounded up to this, so shapes repeat


def bucket(length: int, limit: int) -> int:
    """``length`` rounded up to a multiple of KV_BUCKET, at most ``limit``."""
    return min(limit, -(-length // KV_BUCKET) * KV_BUCKET)


class Engine:
    """Text generation and region decoding over one model.

    ``compile``: run each decode step through ``torch.compile`` (CUDA graphs on GPU, via
    ``mode="reduce-overhead"``) and compile the model's vision encoder in place, each as one
    graph (``fullgraph=True``). Attention
    lengths are bucketed, so a compiled step is reused for every step of a bucket; the first
    step of each new (batch size, bucket) compiles.
    """

    def __init__(self, model: MoondreamModel, compile: bool = False):
        self.model = model
        self.cache: KVCache | None = None
        # CPUs run half-precision attention far slower than float32 (2.4 against 0.4 ms for one
        # decode step over 768 keys): keep keys and values in float32 there.
        low = model.dtype in (torch.bfloat16, torch.float16)
        self.cache_dtype = torch.float32 if low and model.device.type == "cpu" else model.dtype
        self.compiled = compile
        self._decode = self._decode_step
        if compile:
            mode = "reduce-overhead" if model.device.type == "cuda" else None
            # fullgraph: a graph break is an error rather than a silent fall back to eager pieces
            self._decode = torch.compile(self._decode_step, mode=mode, dynamic=False, fullgraph=True)
            model.vision.compile(dynamic=False, fullgraph=True)  # in place: parameter names stay as they are

    @property
    def context(self) -> int:
        return self.model.config.text.max_context

    # --- prefixes -------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill_prefix(
        self, embeddings: torch.Tensor, bidirectional: int, adapter: TextAdapter | None = None
    ) -> EncodedImage:
        """Run (1, T, dim) prefix embeddings once and keep their keys and values.

        ``bidirectional``: how many leading positions attend to each other both ways; ``adapter``: a variant.
        """
        length = embeddings.shape[1]
        cache = KVCache.allocate(self.model.config.text, 1, self.model.device, self.cache_dtype, context=length)
        positions = torch.arange(length, device=self.model.device)[None]
        variant = {"adapter": adapter} if adapter is not None else {}  # only models with a text decoder take one
        self.model.forward_embeddings(
            embeddings, positions, cache, kv_len=length, mask_prefix_len=bidirectional, **variant
        )
        return EncodedImage(cache, length, variant=adapter.name if adapter else None)

    # --- text generation ------------------------------------------------------------------

    def _ensure_slots(self, count: int, length: int) -> KVCache:
        """The shared cache with at least ``count`` rows of ``length`` positions; reallocated only
        when a batch needs more rows or positions than it has."""
        cache = self.cache
        if cache is None or cache.slots < count or cache.context < length or cache.keys.device != self.model.device:
            slots = max(count, cache.slots if cache is not None else 0)
            context = max(length, cache.context if cache is not None else 0)
            self.cache = None  # free the old one first
            self.cache = KVCache.allocate(self.model.config.text, slots, self.model.device, self.cache_dtype, context)
            if self.compiled and self.model.device.type == "cuda":  # CUDA graphs write it in place
                torch._dynamo.mark_static_address(self.cache.keys)
                torch._dynamo.mark_static_address(self.cache.values)
        return self.cache

    def check_fits(self, prefix_length: int, prompt_length: int) -> None:
        """ContextOverflowError unless the prompt and one new token fit after the prefix."""
        if prompt_length < 1:
            raise ValueError("the prompt is empty")
        limit = self.context - prefix_length
        if prompt_length + 1 > limit:
            raise ContextOverflowError(
                f"the prompt is {prompt_length} tokens but at most {limit - 1} fit after the "
                f"{prefix_length}-token image prefix (context {self.context})"
            )

    @torch.inference_mode()
    def start(self, requests: Sequence[TextRequest]) -> tuple[list[DecodeRow], torch.Tensor, torch.Tensor]:
        """Copy each prefix into its cache row and prefill every prompt.

        Returns the rows, each prompt's last hidden state (B, dim) and its next-token logits (B, V).
        """
        adapter = check_batch(requests)
        for request in requests:
            self.check_fits(request.prefix.length, len(request.prompt))
        # Right-pad the prompts to one width; each row needs its prefix, the padded prompt and
        # its new tokens (padded keys land beyond the row's end and are overwritten in turn).
        width = max(len(r.prompt) for r in requests)
        needed = max(r.prefix.length + width + r.budget for r in requests)
        cache = self._ensure_slots(len(requests), bucket(needed, self.context))
        device = self.model.device
        rows = []
        for index, request in enumerate(requests):
            cache.copy_rows(request.prefix.cache, slice(0, 1), slice(index, index + 1), request.prefix.length)
            generator = None
            if request.settings.seed is not None:
                generator = torch.Generator(device=device).manual_seed(int(request.settings.seed))
            row = DecodeRow(request, request.prefix.length + len(request.prompt), generator, adapter=adapter)
            row.thinking = request.reasoning is not None
            rows.append(row)
        ids = torch.full((len(requests), width), requests[0].stop_ids[0] if requests[0].stop_ids else 0)
        positions = torch.zeros((len(requests), width), dtype=torch.long)
        for index, request in enumerate(requests):
            ids[index, : len(request.prompt)] = torch.tensor(list(request.prompt))
            positions[index] = (request.prefix.length + torch.arange(width)).clamp(max=cache.context - 1)
        kv_len = bucket(int(positions.max()) + 1, cache.context)  # host tensor: no device sync
        ids, positions = ids.to(device), positions.to(device)
        embeddings = self.model.embed_tokens(ids)
        for index, request in enumerate(requests):
            for slot, vector in (request.slots or {}).items():
                embeddings[index, slot] = vector.to(embeddings.dtype)
        hidden = self._forward(embeddings, positions, len(requests), kv_len, adapter)
        last = torch.tensor([len(r.prompt) - 1 for r in requests], device=device)
        hidden = hidden[torch.arange(len(requests), device=device), last]  # B, dim
        return rows, hidden, self.model.logits(hidden)

    def _forward(
        self, embeddings: torch.Tensor, positions: torch.Tensor, batch: int, kv_len: int, adapter=None
    ) -> torch.Tensor:
        """Prompt and decode tokens are always causal: the bidirectional block is the prefix's alone.
        Keys past a row's own position are masked, so a bucketed ``kv_len`` changes nothing."""
        variant = {"adapter": adapter} if adapter is not None else {}
        return self.model.forward_embeddings(
            embeddings, positions, self.cache, rows=slice(0, batch), kv_len=kv_len, mask_prefix_len=0, **variant
        )

    def _decode_step(self, ids: torch.Tensor, positions: torch.Tensor, kv_len: int, adapter=None) -> torch.Tensor:
        """One token per row: ids (B,) at positions (B, 1) → logits (B, V). Compiled when asked."""
        hidden = self._forward(self.model.embed_tokens(ids)[:, None], positions, ids.shape[0], kv_len, adapter)
        return self.model.logits(hidden[:, 0])

    def _advance(self, rows: list[DecodeRow]) -> tuple[torch.Tensor, int]:
        """Positions (B, 1) to feed each row's next token at, and the attention length; rows
        still running move on. Finished rows are fed at their last position (output ignored)."""
        last = self.cache.context - 1
        fed = [min(r.position, last) for r in rows]  # host ints: the attention length needs no sync
        for row in rows:
            if not row.done:
                row.position += 1
        return torch.tensor(fed, device=self.model.device)[:, None], bucket(max(fed) + 1, self.cache.context)

    @torch.inference_mode()
    def step(self, rows: list[DecodeRow], ids: torch.Tensor) -> torch.Tensor:
        """Feed one token id per row of a ``start`` batch (ids (B,)); returns the next logits (B, V).

        The cache holds each request's ``settings.max_tokens`` tokens; rows marked done are fed at
        their last position and their logits mean nothing.
        """
        return self._decode(ids.to(self.model.device), *self._advance(rows), rows[0].adapter)

    def step_embeddings(self, rows: list[DecodeRow], embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one embedding (B, dim) per row; returns hidden (B, dim) and logits (B, V)."""
        positions, kv_len = self._advance(rows)
        hidden = self._forward(embeddings[:, None], positions, len(rows), kv_len, rows[0].adapter)[:, 0]
        return hidden, self.model.logits(hidden)

    def _select(self, rows: list[DecodeRow], logits: torch.Tensor) -> list[int]:
        """Each row's next id; its masked ids are -inf except on its phase's first token."""
        logits = logits.float()
        for index, row in enumerate(rows):
            if not row.fresh and row.masked_ids:
                logits[index, list(row.masked_ids)] = float("-inf")
            row.fresh = False
            constraint = row.request.constraint
            if constraint is not None and not row.thinking and not row.done:
                logits[index, ~constraint.allowed()] = float("-inf")
                if not torch.isfinite(logits[index]).any():
                    raise RuntimeError("the grammar allows no id the model may produce here")
        settings = [r.request.settings for r in rows]
        if all(s.temperature == 0 for s in settings):
            return logits.argmax(-1).tolist()
        return [
            int(select_next(logits[i : i + 1], s.temperature, s.top_p, rows[i].generator)[0])
            for i, s in enumerate(settings)
        ]

    @torch.inference_mode()
    def generate_stream(self, requests: Sequence[TextRequest]) -> Iterator[Step]:
        """Yield a ``Step`` per decode step: each row's new token id and, when it finishes, why.

        Rows stop on a stop id (yielded only with ``keep_stop``) or after ``max_tokens`` tokens or at
        the context. Every row's finishing step is yielded, even one with no token in it.
        """
        rows, hidden, logits = self.start(requests)
        grounded = any(row.thinking for row in rows)
        while True:
            chosen = self._select(rows, logits)
            tokens: list[int | None] = []
            reasons: list[str | None] = []
            thoughts: list[ReasoningStep | None] = []
            coordinates: dict[int, float] = {}  # row → coordinate fed instead of its token
            for index, (row, token) in enumerate(zip(rows, chosen)):
                was_done, thought = row.done, None
                if row.thinking:
                    thought, chosen[index] = self._think(row, token, hidden[index])
                    if thought.coordinate is not None and row.thinking:
                        coordinates[index] = thought.coordinate
                tokens.append(None if was_done or thought is not None else self._take(row, token))
                reasons.append(None if was_done else row.finish_reason)
                thoughts.append(thought)
            if any(t is not None for t in tokens) or any(reasons) or any(thoughts):
                yield Step(tokens, reasons, thoughts if grounded else None)
            if all(r.done for r in rows):
                return
            feed = torch.tensor(chosen, device=self.model.device)
            if not any(row.thinking or index in coordinates for index, row in enumerate(rows)):
                logits = self.step(rows, feed)
                continue
            embeddings = self.model.embed_tokens(feed)
            for index, value in coordinates.items():
                embeddings[index] = self.model.region.encode_coordinate(torch.tensor([value], device=feed.device))[0]
            hidden, logits = self.step_embeddings(rows, embeddings)

    def _think(self, row: DecodeRow, token: int, hidden: torch.Tensor) -> tuple[ReasoningStep, int]:
        """A reasoning row's token: its event and the id to feed (the answer id once the phase ends)."""
        spec = row.request.reasoning
        if token == spec.answer_id:
            row.thinking, row.fresh = False, True
            return ReasoningStep(None, finished=True), token
        coordinate = None
        if token == spec.coord_id:  # decoded from the state whose logits chose the token
            coordinate = float(self.model.region.decode_coordinate(hidden[None])[0])
        row.thoughts += 1
        # the answer id and at least one answer token must still fit after this token
        if row.thoughts >= row.request.settings.max_tokens or row.position + 2 >= self.cache.context:
            row.thinking, row.fresh = False, True
            return ReasoningStep(token, coordinate, finished=True), spec.answer_id
        return ReasoningStep(token, coordinate), token

    def _take(self, row: DecodeRow, token: int) -> int | None:
        """Add ``token`` to a running row, marking it finished if it stops here; the id to yield."""
        if row.request.constraint is not None:
            row.request.constraint.advance(token)
        if token in row.request.stop_ids:
            row.finish_reason = STOP
            if not row.request.keep_stop:
                return None
        elif len(row.tokens) + 1 >= row.request.settings.max_tokens or row.position >= self.cache.context:
            row.finish_reason = LENGTH
        row.tokens.append(token)
        return token

    def generate(self, requests: Sequence[TextRequest]) -> list[list[int]]:
        """Generated ids per request (the stop id only with ``keep_stop``)."""
        outputs: list[list[int]] = [[] for _ in requests]
        for step in self.generate_stream(requests):
            for output, token in zip(outputs, step.tokens):
                if token is not None:
                    output.append(token)
        return outputs


def check_batch(requests: Sequence[TextRequest]) -> TextAdapter | None:
    """The batch's updates, each row with its own variant (or none); ValueError when a row's prefix
    was encoded under another variant than the row's."""
    for request in requests:
        own = request.adapter.name if request.adapter else None
        if request.prefix.variant != own:
            raise ValueError(
                f"the image was encoded with variant {request.prefix.variant!r} but the request uses {own!r}"
            )
    return batch_adapter([request.adapter for request in requests])
