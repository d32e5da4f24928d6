"""Region decoding (detect, point, gaze): coordinates and sizes fed back as embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..modeling.lora import TextAdapter
from .engine import EncodedImage, Engine, TextRequest
from .sampling import SamplingSettings


@torch.inference_mode()
def locate(
    engine: Engine,
    prefix: EncodedImage,
    prompt: Sequence[int],
    with_size: bool,
    max_objects: int,
    eos_id: int | None,
    slots: Mapping[int, torch.Tensor] | None = None,
    adapter: TextAdapter | None = None,
) -> list[dict[str, float]]:
    """Greedy coordinate (and size) decoding after ``prompt``, as the region model was trained.

    Each object costs two positions (x, y), three with a size; decoding stops when the
    text head predicts ``eos_id`` (None: never) or at ``max_objects``. ``slots`` and ``adapter``
    as in ``TextRequest``.
    """
    region = engine.model.region
    if region is None:
        raise ValueError("this model has no region head")
    per_object = 3 if with_size else 2
    room = engine.context - prefix.length - len(prompt)  # the cache is sized for every object
    budget = max(1, min(max_objects * per_object + 1, room))
    greedy = SamplingSettings(max_tokens=budget, temperature=0.0, top_p=1.0)
    request = TextRequest(prefix, prompt, greedy, slots=slots, adapter=adapter)
    rows, hidden, logits = engine.start([request])
    results: list[dict[str, float]] = []
    while (eos_id is None or int(logits.argmax(-1)[0]) != eos_id) and len(results) < max_objects:
        if rows[0].position + per_object > engine.cache.context:
            break
        x = region.decode_coordinate(hidden)
        hidden, _ = engine.step_embeddings(rows, region.encode_coordinate(x))
        y = region.decode_coordinate(hidden)
        feed = region.encode_coordinate(y)
        if with_size:
            hidden, _ = engine.step_embeddings(rows, feed)
            w, h = region.decode_size(hidden)[0].tolist()
            feed = region.encode_size(torch.tensor([[w, h]], device=hidden.device))
            cx, cy = float(x[0]), float(y[0])
            results.append({"x_min": cx - w / 2, "y_min": cy - h / 2, "x_max": cx + w / 2, "y_max": cy + h / 2})
        else:
            results.append({"x": float(x[0]), "y": float(y[0])})
        hidden, logits = engine.step_embeddings(rows, feed)
    return results
