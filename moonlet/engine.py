"""Generation engine: owns the KV cache, prefix reuse, sampling, stopping and batching.

The engine works on token ids and embeddings only; prompts are built by ``moonlet.prompts``
and text is produced by the API layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from .kv_cache import KVCache
from .model import MoondreamModel
from .sampling import SamplingSettings, select_next


class ContextOverflowError(ValueError):
    """A prompt that does not fit the model's context."""


@dataclass
class EncodedImage:
    """A prefilled prefix (BOS + image, or BOS alone): its keys/values for positions [0, length)."""

    cache: KVCache  # one slot, context = length
    length: int
    embedding: torch.Tensor | None = None  # (grid², dim) projected image features, if any

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


@dataclass
class _Row:
    request: TextRequest
    position: int  # where the next fed token goes
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    done: bool = False


class Engine:
    def __init__(self, model: MoondreamModel):
        self.model = model
        self.cache: KVCache | None = None

    @property
    def context(self) -> int:
        return self.model.config.text.max_context

    # --- prefixes -------------------------------------------------------------------------

    @torch.inference_mode()
    def prefill_prefix(self, embeddings: torch.Tensor, bidirectional: int) -> EncodedImage:
        """Run (1, T, dim) prefix embeddings once and keep their keys and values.

        ``bidirectional``: how many leading positions attend to each other both ways.
        """
        length = embeddings.shape[1]
        cache = KVCache.allocate(self.model.config.text, 1, self.model.device, self.model.dtype, context=length)
        positions = torch.arange(length, device=self.model.device)[None]
        self.model.forward_embeddings(embeddings, positions, cache, kv_len=length, mask_prefix_len=bidirectional)
        return EncodedImage(cache, length)

    # --- text generation ------------------------------------------------------------------

    def _ensure_slots(self, count: int) -> KVCache:
        """The shared cache with at least ``count`` rows, allocated once and grown only for larger batches."""
        if self.cache is None or self.cache.slots < count or self.cache.keys.device != self.model.device:
            self.cache = None  # free the old one first
            self.cache = KVCache.allocate(self.model.config.text, count, self.model.device, self.model.dtype)
        return self.cache

    def check_fits(self, prefix_length: int, prompt_length: int) -> None:
        if prompt_length < 1:
            raise ValueError("the prompt is empty")
        limit = self.context - prefix_length
        if prompt_length + 1 > limit:
            raise ContextOverflowError(
                f"the prompt is {prompt_length} tokens but at most {limit - 1} fit after the "
                f"{prefix_length}-token image prefix (context {self.context})"
            )

    def _start(self, requests: Sequence[TextRequest]) -> tuple[list[_Row], torch.Tensor, torch.Tensor]:
        """Copy each prefix into its cache row and prefill every prompt; returns rows, last hidden, logits."""
        cache = self._ensure_slots(len(requests))
        device = self.model.device
        rows = []
        for index, request in enumerate(requests):
            self.check_fits(request.prefix.length, len(request.prompt))
            cache.copy_rows(request.prefix.cache, slice(0, 1), slice(index, index + 1), request.prefix.length)
            generator = None
            if request.settings.seed is not None:
                generator = torch.Generator(device=device).manual_seed(int(request.settings.seed))
            rows.append(_Row(request, request.prefix.length + len(request.prompt), generator))
        # Right-pad the prompts. Padded keys land beyond each row's end (clamped to the last
        # context slot) and are overwritten before any query can see them.
        width = max(len(r.prompt) for r in requests)
        ids = torch.full((len(requests), width), requests[0].stop_ids[0] if requests[0].stop_ids else 0)
        positions = torch.zeros((len(requests), width), dtype=torch.long)
        for index, request in enumerate(requests):
            ids[index, : len(request.prompt)] = torch.tensor(list(request.prompt))
            positions[index] = (request.prefix.length + torch.arange(width)).clamp(max=self.context - 1)
        ids, positions = ids.to(device), positions.to(device)
        hidden = self._forward(self.model.embed_tokens(ids), positions, len(requests))
        last = torch.tensor([len(r.prompt) - 1 for r in requests], device=device)
        hidden = hidden[torch.arange(len(requests), device=device), last]  # B, dim
        return rows, hidden, self.model.logits(hidden)

    def _forward(self, embeddings: torch.Tensor, positions: torch.Tensor, batch: int) -> torch.Tensor:
        """Prompt and decode tokens are always causal: the bidirectional block is the prefix's alone."""
        return self.model.forward_embeddings(
            embeddings, positions, self.cache, rows=slice(0, batch), kv_len=int(positions.max()) + 1, mask_prefix_len=0
        )

    def _step(self, rows: list[_Row], embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed one embedding (B, dim) per row at its position; returns hidden (B, dim), logits (B, V).

        Finished rows are fed at their last position (their output is ignored) and do not advance.
        """
        positions = torch.tensor([[min(r.position, self.context - 1)] for r in rows], device=self.model.device)
        hidden = self._forward(embeddings[:, None], positions, len(rows))[:, 0]
        for row in rows:
            if not row.done:
                row.position += 1
        return hidden, self.model.logits(hidden)

    def _select(self, rows: list[_Row], logits: torch.Tensor, first: bool) -> list[int]:
        logits = logits.float()
        if not first:
            for index, row in enumerate(rows):
                if row.request.masked_ids:
                    logits[index, list(row.request.masked_ids)] = float("-inf")
        settings = [r.request.settings for r in rows]
        if all(s.temperature == 0 for s in settings):
            return logits.argmax(-1).tolist()
        return [
            int(select_next(logits[i : i + 1], s.temperature, s.top_p, rows[i].generator)[0])
            for i, s in enumerate(settings)
        ]

    @torch.inference_mode()
    def generate_stream(self, requests: Sequence[TextRequest]) -> Iterator[list[int | None]]:
        """Yield, per decode step, each row's new token id (None once the row has stopped).

        Rows stop on a stop id (yielded only with ``keep_stop``) or after ``max_tokens`` tokens.
        """
        rows, _, logits = self._start(requests)
        first = True
        while True:
            chosen = self._select(rows, logits, first)
            first = False
            step: list[int | None] = []
            for row, token in zip(rows, chosen):
                if row.done:
                    step.append(None)
                    continue
                if token in row.request.stop_ids:
                    row.done = True
                    if row.request.keep_stop:
                        row.tokens.append(token)
                    step.append(token if row.request.keep_stop else None)
                    continue
                row.tokens.append(token)
                step.append(token)
                if len(row.tokens) >= row.request.settings.max_tokens or row.position >= self.context:
                    row.done = True
            if any(t is not None for t in step):
                yield step
            if all(r.done for r in rows):
                return
            feed = torch.tensor([t if t is not None else 0 for t in chosen], device=self.model.device)
            _, logits = self._step(rows, self.model.embed_tokens(feed))

    def generate(self, requests: Sequence[TextRequest]) -> list[list[int]]:
        """Generated ids per request (the stop id only with ``keep_stop``)."""
        outputs: list[list[int]] = [[] for _ in requests]
        for step in self.generate_stream(requests):
            for output, token in zip(outputs, step):
                if token is not None:
                    output.append(token)
        return outputs

    # --- region decoding (detect / point) -------------------------------------------------

    @torch.inference_mode()
    def locate(
        self, prefix: EncodedImage, prompt: Sequence[int], with_size: bool, max_objects: int, eos_id: int
    ) -> list[dict[str, float]]:
        """Greedy coordinate (and size) decoding after ``prompt``, as the region model was trained.

        Each object costs two positions (x, y), three with a size; decoding stops when the
        text head predicts ``eos_id`` or at ``max_objects``.
        """
        region = self.model.region
        if region is None:
            raise ValueError("this model has no region head")
        greedy = SamplingSettings(max_tokens=1, temperature=0.0, top_p=1.0)
        rows, hidden, logits = self._start([TextRequest(prefix, prompt, greedy)])
        per_object = 3 if with_size else 2
        results: list[dict[str, float]] = []
        while int(logits.argmax(-1)[0]) != eos_id and len(results) < max_objects:
            if rows[0].position + per_object > self.context:
                break
            x = region.decode_coordinate(hidden)
            hidden, _ = self._step(rows, region.encode_coordinate(x))
            y = region.decode_coordinate(hidden)
            feed = region.encode_coordinate(y)
            if with_size:
                hidden, _ = self._step(rows, feed)
                w, h = region.decode_size(hidden)[0].tolist()
                feed = region.encode_size(torch.tensor([[w, h]], device=hidden.device))
                cx, cy = float(x[0]), float(y[0])
                results.append({"x_min": cx - w / 2, "y_min": cy - h / 2, "x_max": cx + w / 2, "y_max": cy + h / 2})
            else:
                results.append({"x": float(x[0]), "y": float(y[0])})
            hidden, logits = self._step(rows, feed)
        return results
