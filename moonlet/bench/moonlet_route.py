"""The moonlet route: the model to measure, then vision, image embedding, prefill, first token and
decode speed through the engine."""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from ..checkpoints.loading import load_model
from ..generation.engine import EncodedImage, Engine, TextRequest, bucket
from ..generation.sampling import SamplingSettings
from ..modeling.model import MoondreamModel
from ..quant import plan_for, quantize_
from ..quant.formats import apply_formats, load_formats, weight_formats
from .measure import kv_bytes_per_slot, step_intervals, sync
from .models import bench_config, random_model, resize
from .peaks import flop_shares
from .plan import Plan


def moonlet_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """The model to measure (random weights, or ``--model`` in the bench's dtype), its configuration
    at full depth and its layers' formats and kernels."""
    if args.model:
        model, _, _ = load_model(args.model, revision=args.revision, device=device, dtype=dtype)
        full = model.config
        model = resize(model, args.layers, args.context)
        if args.quant != "none":
            quantize_(model, args.quant, include=tuple(args.quant_parts.split(",")))
    else:  # random weights take the formats a load of a checkpoint stored like the release would
        full = bench_config(args.config)
        model = random_model(bench_config(args.config, args.layers, args.context), device, dtype)
        formats = load_formats(plan_for(device=device), full.dtype, args.dtype is not None)
        if args.quant != "none":
            formats |= dict.fromkeys(args.quant_parts.split(","), args.quant)
        apply_formats(model, formats)
    return model, full, describe_formats(weight_formats(model))


def describe_formats(counts: dict[str, int]) -> str:
    """``{"int8/fbgemm": 97, "bfloat16": 60}`` → ``"int8/fbgemm x97, bfloat16 x60"``."""
    return ", ".join(f"{name} x{count}" for name, count in sorted(counts.items(), key=lambda kv: -kv[1]))


@torch.inference_mode()
def measure_moonlet(model: MoondreamModel, plan: Plan) -> dict:
    engine, route = Engine(model, compile=plan.compile), "moonlet"  # compiles on the untimed warm-up runs
    pixels_one = plan.one_crop.normalized()[:1].to(plan.device, plan.dtype)
    pixels_many = plan.crops.normalized().to(plan.device, plan.dtype)
    out = {
        "vision_1crop_ms": plan.time_ms(f"{route} vision_1crop_ms", lambda: model.vision(pixels_one)),
        "vision_many_ms": plan.time_ms(f"{route} vision_many_ms", lambda: model.vision(pixels_many)),
        "image_embedding_ms": plan.time_ms(f"{route} image_embedding_ms", lambda: model.image_embedding(plan.crops)),
    }
    prefix = model.prefix_embeddings(model.image_embedding(plan.crops))

    def prefill() -> EncodedImage:
        return engine.prefill_prefix(prefix, model.mask_prefix_len)

    out["prefill_ms"] = plan.time_ms(f"{route} prefill_ms", prefill)
    # FLOPs are counted eagerly: ``forward`` skips the compiled wrapper that ``--compile`` puts on the tower
    out["flop_shares"] = flop_shares(
        model, plan, lambda: model.vision.forward(pixels_one), out["vision_1crop_ms"], prefill, out["prefill_ms"]
    )
    encoded = prefill()

    def request(enc: EncodedImage, tokens: int) -> TextRequest:
        return TextRequest(enc, plan.prompt, SamplingSettings(max_tokens=tokens, temperature=0.0, top_p=1.0))

    def new_image():
        enc = engine.prefill_prefix(model.prefix_embeddings(model.image_embedding(plan.crops)), model.mask_prefix_len)
        return engine.generate([request(enc, 1)])

    out["ttft_new_ms"] = plan.time_ms(f"{route} ttft_new_ms", new_image)
    out["ttft_cached_ms"] = plan.time_ms(f"{route} ttft_cached_ms", lambda: engine.generate([request(encoded, 1)]))
    decode = {}
    for batch in plan.batch_sizes:
        needed = bucket(encoded.length + len(plan.prompt) + plan.new_tokens, engine.context)  # the engine's sized cache
        if not plan.fits("moonlet", batch, batch * kv_bytes_per_slot(model.config, plan.dtype, needed)):
            continue
        intervals = []
        for run in range(plan.warmup + plan.repeats):
            stamps = []
            for _ in engine.generate_stream([request(encoded, plan.new_tokens)] * batch):
                sync(plan.device)
                stamps.append(time.perf_counter())
            if run >= plan.warmup:
                intervals += step_intervals(stamps)
        decode[str(batch)] = batch / statistics.median(intervals)
        plan.log(f"{route} decode batch {batch}: {decode[str(batch)]:.1f} tokens/s")
        engine.cache = None  # give the batch's cache back before the next size
    out["decode_tok_s"] = decode
    return out
