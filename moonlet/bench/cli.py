"""``moonlet bench``: speed and memory of moonlet, side by side with the transformers route.

Both routes run at the same dimensions and dtype with cheap deterministic random weights
(or a checkpoint for moonlet with ``--model``). The transformers route is
``SiglipVisionModel`` + our projection MLP (transformers has no equivalent) + ``PhiForCausalLM``
(fully causal; moonlet's bidirectional image prefix costs the same). Times are medians over
``--repeats`` runs after ``--warmup`` runs; decode speed is the median interval between
consecutive tokens. Output: a table, then one JSON line.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from typing import Callable

import numpy as np
import torch
from torch import nn

from .config import MoondreamConfig
from .generation.engine import bucket, EncodedImage, Engine, TextRequest
from .image import Crops, pool_to_grid, reconstruct_from_crops
from .modeling.layers import MLP
from .checkpoints.loading import load_model, parse_dtype
from .modeling.model import MoondreamModel
from .profiles import PROFILES
from .quant import quantize_, tensor_bytes
from .generation.sampling import SamplingSettings

PROFILE = "2025-06-21"
QUESTION_IDS = (1841, 318, 287, 428, 2939, 30)  # a short question's worth of token ids
TIME_KEYS = ("vision_1crop_ms", "vision_many_ms", "image_embedding_ms", "prefill_ms", "ttft_new_ms", "ttft_cached_ms")
LABELS = {
    "vision_1crop_ms": "vision trunk, 1 crop (ms)",
    "vision_many_ms": "vision trunk, {crops} crops (ms)",
    "image_embedding_ms": "image embedding, {crops} crops (ms)",
    "prefill_ms": "image prefix prefill, {prefix} tokens (ms)",
    "ttft_new_ms": "first token, new image (ms)",
    "ttft_cached_ms": "first token, encoded image (ms)",
    "peak_mem_mb": "peak memory (MiB)",
}


# --- configuration and weights --------------------------------------------------------------


def bench_config(kind: str, layers: int | None = None, context: int | None = None) -> MoondreamConfig:
    """The real 2025-06-21 dimensions, or a tiny model of the same shape; optionally shallower."""
    config = PROFILES[PROFILE]
    if kind == "tiny":
        config = replace(
            config,
            text=replace(config.text, dim=128, ff_dim=256, n_layers=2, vocab_size=2048, n_heads=2, n_kv_heads=2),
            vision=replace(config.vision, enc_dim=32, enc_ff_dim=64, enc_n_layers=2, enc_n_heads=4,
                           proj_out_dim=128, proj_inner_dim=128),
            region=replace(config.region, dim=128, inner_dim=128),
        )
    elif kind != "real":
        raise ValueError(f"unknown bench config {kind!r}")
    if layers:
        config = replace(config, text=replace(config.text, n_layers=layers),
                         vision=replace(config.vision, enc_n_layers=layers))
    if context:
        config = replace(config, text=replace(config.text, max_context=context))
    return config.validate()


@torch.no_grad()
def init_cheap_(module: nn.Module, seed: int = 0) -> None:
    """Deterministic random weights at memory speed: U(±1/√fan_in) matrices, unit LayerNorms, zero biases."""
    norms = {id(m.weight) for m in module.modules() if isinstance(m, nn.LayerNorm)}
    for index, (name, param) in enumerate(module.named_parameters()):
        if id(param) in norms:
            param.fill_(1.0)
        elif param.dim() < 2 or name.endswith("bias"):
            param.zero_()
        else:
            bound = param[0].numel() ** -0.5
            gen = torch.Generator(device=param.device).manual_seed(seed + index)
            param.uniform_(-bound, bound, generator=gen)


def build_random(config: MoondreamConfig, device: torch.device, dtype: torch.dtype, seed: int = 0) -> MoondreamModel:
    """MoondreamModel on the meta device, then storage in ``dtype`` on ``device`` and cheap weights."""
    with torch.device("meta"):
        model = MoondreamModel(config)
    model = model.to(dtype).to_empty(device=device)
    init_cheap_(model, seed)
    model.text.init_buffers(device)
    return model.eval().requires_grad_(False)


def resize(model: MoondreamModel, layers: int | None = None, context: int | None = None) -> MoondreamModel:
    """Keep the first ``layers`` text and vision blocks of a loaded model; set its text context."""
    text, vision = model.config.text, model.config.vision
    if layers:
        text = replace(text, n_layers=min(layers, text.n_layers))
        vision = replace(vision, enc_n_layers=min(layers, vision.enc_n_layers))
        model.text.blocks = model.text.blocks[: text.n_layers]
        model.vision.blocks = model.vision.blocks[: vision.enc_n_layers]
    if context:
        text = replace(text, max_context=context)
    model.config = replace(model.config, text=text, vision=vision).validate()
    model.text.config, model.vision.config = text, vision
    model.text.init_buffers(model.device)
    return model


# --- measurement helpers --------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    """Median wall time of ``fn`` in seconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) to the current one
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def peak_bytes(device: torch.device) -> int | None:
    """CUDA: max_memory_allocated; CPU: the process's peak resident set size (VmHWM)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return _proc_status("VmHWM:")


def resident_bytes(device: torch.device) -> int | None:
    """CUDA: memory_allocated; CPU: the process's resident set size now (VmRSS)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device)
    return _proc_status("VmRSS:")


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def free_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


def copy_bandwidth(device: torch.device, nbytes: int | None = None) -> float:
    """Bytes per second moved by a large tensor copy (each byte read once and written once)."""
    nbytes = nbytes or (2 << 30 if device.type == "cuda" else 512 << 20)
    source = torch.ones(nbytes, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)
    seconds = median_time(lambda: target.copy_(source), device, repeats=5, warmup=2)
    return 2 * nbytes / seconds


def step_intervals(stamps: list[float]) -> list[float]:
    """Decode step times from the arrival times of each step's tokens, the first token onwards."""
    return [b - a for a, b in zip(stamps, stamps[1:])]


def synthetic_crops(config: MoondreamConfig, count: int, seed: int = 0) -> Crops:
    """``count`` random uint8 crops: a global crop plus a tiling of ``count − 1`` tiles."""
    size = config.vision.crop_size
    pixels = np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    tiles = max(1, count - 1)
    rows = max(r for r in range(1, tiles + 1) if tiles % r == 0 and r * r <= tiles)
    return Crops(pixels, (rows, tiles // rows))


def prompt_ids(config: MoondreamConfig) -> list[int]:
    """A query prompt of the profile's template around a short question, ids kept in the vocabulary."""
    tok = config.tokenizer
    t = tok.templates
    ids = [*t.query_prefix, *QUESTION_IDS, *t.query_suffix, *tok.query_answer_ids]
    return [i % config.text.vocab_size for i in ids]


def kv_bytes_per_slot(config: MoondreamConfig, dtype: torch.dtype, length: int | None = None) -> int:
    text = config.text
    length = length or text.max_context
    return 2 * text.n_layers * text.n_kv_heads * length * text.head_dim * torch.empty((), dtype=dtype).element_size()


def decode_bytes_per_token(model: MoondreamModel, kv_len: int) -> int:
    """Bytes one batch-1 decode step must read: decoder weights (not the embedding table) and the keys/values."""
    text = model.text
    skip = text.wte.numel() * text.wte.element_size()
    skip += sum(b.numel() * b.element_size() for b in (text.rope_cos, text.rope_sin))
    return tensor_bytes(text) - skip + kv_bytes_per_slot(model.config, model.dtype, kv_len)


# --- the moonlet route --------------------------------------------------------------------


class Plan:
    """What to measure: inputs shared by both routes."""

    def __init__(self, args: argparse.Namespace, config: MoondreamConfig, device: torch.device, dtype: torch.dtype):
        self.device, self.dtype, self.config = device, dtype, config
        self.repeats, self.warmup = args.repeats, args.warmup
        self.new_tokens = args.new_tokens
        self.compile = getattr(args, "compile", False)
        self.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",") if b.strip()]
        single = config.vision.crop_scheme == "single"  # 2024-03-13: one stretched crop per image
        if not single and args.crops < 2:
            raise ValueError("--crops: at least 2 (the global crop and one tile)")
        self.crops = synthetic_crops(config, 1 if single else args.crops)
        self.one_crop = synthetic_crops(config, 1)
        self.prompt = prompt_ids(config)
        self.skipped: list[str] = []

    def time_ms(self, label: str, fn: Callable[[], object]) -> float:
        value = 1e3 * median_time(fn, self.device, self.repeats, self.warmup)
        self.log(f"{label}: {value:.1f} ms")
        return value

    @staticmethod
    def log(message: str) -> None:
        print(f"bench: {message}", file=sys.stderr, flush=True)

    def fits(self, route: str, batch: int, bytes_needed: int) -> bool:
        if bytes_needed < 0.8 * free_bytes(self.device):
            return True
        self.skipped.append(f"{route} batch {batch}: needs {bytes_needed / 2**30:.1f} GiB of cache")
        return False


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
    out["prefill_ms"] = plan.time_ms(f"{route} prefill_ms", lambda: engine.prefill_prefix(prefix, model.mask_prefix_len))
    encoded = engine.prefill_prefix(prefix, model.mask_prefix_len)

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


# --- the transformers route ---------------------------------------------------------------


def hf_configs(config: MoondreamConfig):
    """SiglipVisionConfig and PhiConfig with our dimensions (checked by converting them back)."""
    import transformers

    from .checkpoints.config_json import phi_kwargs, siglip_kwargs, text_config_from_phi, vision_config_from_siglip

    v, t = config.vision, config.text
    siglip = transformers.SiglipVisionConfig(**siglip_kwargs(v), vision_use_head=False, attn_implementation="sdpa")
    phi = transformers.PhiConfig(
        **phi_kwargs(t), tie_word_embeddings=False, attn_implementation="sdpa",
        pad_token_id=0, bos_token_id=config.tokenizer.bos_id, eos_token_id=None,
    )
    back_v = vision_config_from_siglip(siglip)
    back_t = text_config_from_phi(phi)
    assert (back_v.enc_dim, back_v.enc_n_layers, back_v.enc_ff_dim) == (v.enc_dim, v.enc_n_layers, v.enc_ff_dim)
    assert replace(back_t, prefix_bidirectional=t.prefix_bidirectional) == t
    return siglip, phi


def _build_hf(cls, hf_config, device: torch.device, dtype: torch.dtype, seed: int) -> nn.Module:
    """A transformers model built on meta and filled cheaply; buffers come from a one-layer twin."""
    with torch.device("meta"):
        model = cls(hf_config)
    model = model.to(dtype).to_empty(device=device)
    init_cheap_(model, seed)
    twin_config = copy.deepcopy(hf_config)
    twin_config.num_hidden_layers = 1
    if hasattr(twin_config, "vocab_size"):
        twin_config.vocab_size = 8
    twin = dict(cls(twin_config).named_buffers())
    for name, _ in list(model.named_buffers()):
        if name not in twin:
            raise RuntimeError(f"no value for buffer {name} of {cls.__name__}")
        owner, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(owner), leaf, twin[name].to(device))
    return model.eval().requires_grad_(False)


class _Stamps:
    """A generate() streamer that only records when each step's tokens arrive."""

    def __init__(self):
        self.times: list[float] = []

    def put(self, value) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class HFRoute:
    def __init__(self, config: MoondreamConfig, device: torch.device, dtype: torch.dtype, cache: str):
        import transformers

        self.config, self.device, self.dtype, self.cache_kind = config, device, dtype, cache
        siglip_config, phi_config = hf_configs(config)
        self.siglip = _build_hf(transformers.SiglipVisionModel, siglip_config, device, dtype, 1)
        self.phi = _build_hf(transformers.PhiForCausalLM, phi_config, device, dtype, 2)
        v = config.vision
        self.proj = MLP(v.proj_in_dim, v.proj_inner_dim, v.proj_out_dim, gelu=v.gelu).to(device, dtype)
        init_cheap_(self.proj, 3)

    def image_embedding(self, crops: Crops) -> torch.Tensor:
        """SigLIP features, then moonlet's stitching, pooling and projection (no transformers equivalent)."""
        v = self.config.vision
        pixels = crops.normalized().to(self.device, self.dtype)
        features = self.siglip(pixel_values=pixels).last_hidden_state
        if v.crop_scheme == "single":
            return self.proj(features[0])
        tiles = features[1:].view(-1, v.grid_size, v.grid_size, v.enc_dim)
        local = pool_to_grid(reconstruct_from_crops(tiles, crops.tiling, v.overlap_margin), v.grid_size)
        return self.proj(torch.cat((features[0], local.reshape(-1, v.enc_dim)), dim=-1))

    def prefix_embeddings(self, image_embedding: torch.Tensor) -> torch.Tensor:
        bos = torch.tensor([[self.config.tokenizer.bos_id]], device=self.device)
        return torch.cat((self.phi.get_input_embeddings()(bos), image_embedding[None]), dim=1)

    def new_cache(self, length: int):
        import transformers

        if self.cache_kind == "static":
            return transformers.StaticCache(config=self.phi.config, max_cache_len=length)
        return transformers.DynamicCache(config=self.phi.config)

    def prefill(self, prefix: torch.Tensor, total: int):
        cache = self.new_cache(total)
        self.phi(inputs_embeds=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return cache

    def generate(self, ids: torch.Tensor, cache, tokens: int, streamer=None, embeds: torch.Tensor | None = None):
        inputs = {"inputs_embeds": embeds} if embeds is not None else {"input_ids": ids}
        return self.phi.generate(
            **inputs, attention_mask=torch.ones(ids.shape, dtype=torch.long, device=self.device),
            past_key_values=cache, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False,
            streamer=streamer, pad_token_id=0, eos_token_id=None,
        )


@torch.inference_mode()
def measure_transformers(hf: HFRoute, plan: Plan) -> dict:
    route = "transformers"
    pixels_one = plan.one_crop.normalized()[:1].to(plan.device, hf.dtype)
    pixels_many = plan.crops.normalized().to(plan.device, hf.dtype)
    out = {
        "vision_1crop_ms": plan.time_ms(f"{route} vision_1crop_ms", lambda: hf.siglip(pixel_values=pixels_one)),
        "vision_many_ms": plan.time_ms(f"{route} vision_many_ms", lambda: hf.siglip(pixel_values=pixels_many)),
        "image_embedding_ms": plan.time_ms(f"{route} image_embedding_ms", lambda: hf.image_embedding(plan.crops)),
    }
    prefix = hf.prefix_embeddings(hf.image_embedding(plan.crops))
    length = prefix.shape[1]
    prompt = torch.tensor([plan.prompt], device=plan.device)
    ids = torch.cat((torch.zeros(1, length, dtype=torch.long, device=plan.device), prompt), dim=1)
    total = ids.shape[1] + plan.new_tokens + 1
    out["prefill_ms"] = plan.time_ms(f"{route} prefill_ms", lambda: hf.prefill(prefix, total))
    encoded = hf.prefill(prefix, total)

    def new_image():
        embeds = torch.cat((hf.prefix_embeddings(hf.image_embedding(plan.crops)), hf.phi.get_input_embeddings()(prompt)), 1)
        return hf.generate(ids, hf.new_cache(total), 1, embeds=embeds)

    out["ttft_new_ms"] = plan.time_ms(f"{route} ttft_new_ms", new_image)
    out["ttft_cached_ms"] = plan.time_ms(f"{route} ttft_cached_ms", lambda: hf.generate(ids, copy.deepcopy(encoded), 1))
    decode = {}
    for batch in plan.batch_sizes:
        if not plan.fits("transformers", batch, 2 * batch * kv_bytes_per_slot(hf.config, hf.dtype, total)):
            continue
        if hf.cache_kind == "static":  # a batch-wide prefix, copied for each run
            base = hf.prefill(prefix.expand(batch, -1, -1), total)
        else:
            base = copy.deepcopy(encoded)
            base.batch_repeat_interleave(batch)
        intervals = []
        for run in range(plan.warmup + plan.repeats):
            stamps = _Stamps()
            hf.generate(ids.expand(batch, -1), copy.deepcopy(base), plan.new_tokens, streamer=stamps)
            if run >= plan.warmup:
                intervals += step_intervals(stamps.times[1:])  # the first put is the prompt itself
        decode[str(batch)] = batch / statistics.median(intervals)
        plan.log(f"{route} decode batch {batch}: {decode[str(batch)]:.1f} tokens/s")
        del base
    out["decode_tok_s"] = decode
    return out


# --- int8 / int4 kernel timings -------------------------------------------------------------


@torch.inference_mode()
def kernel_timings(config: MoondreamConfig, device: torch.device, dtype: torch.dtype, rows: list[int], plan_repeats: int) -> dict:
    """ms per decoder layer's four matmuls (qkv, proj, fc1, fc2), two layers cycled so weights leave the cache."""
    from .quant import Int4Linear, Int8Linear

    t = config.text
    shapes = [(t.dim, (t.n_heads + 2 * t.n_kv_heads) * t.head_dim), (t.dim, t.dim), (t.dim, t.ff_dim), (t.ff_dim, t.dim)]
    dense = []
    for index, (k, n) in enumerate(shapes * 2):
        layer = nn.Linear(k, n).to(device, dtype)
        init_cheap_(layer, index)
        dense.append(layer)
    variants = {"dense": dense}
    for kernel in ("pack", "dequant"):
        try:
            variants[f"int8_{kernel}"] = [Int8Linear(layer, kernel) for layer in dense]
        except RuntimeError:
            pass
        try:
            variants[f"int4_{kernel}"] = [Int4Linear(layer, 128, kernel) for layer in dense]
        except RuntimeError:
            pass
    result = {}
    for m in rows:
        x = torch.randn(m, t.dim, device=device).to(dtype)
        xs = {t.dim: x, t.ff_dim: torch.randn(m, t.ff_dim, device=device).to(dtype)}
        row = {}
        for name, layers in variants.items():
            def run():
                for layer in layers:
                    layer(xs[layer.in_features])
            row[name] = 1e3 * median_time(run, device, plan_repeats, 1) / 2
        result[str(m)] = row
    return result


# --- driver ---------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None:
        return "-"
    return f"{value:,.1f}" if value >= 10 else f"{value:.3g}"


def format_table(result: dict) -> str:
    ours, hf = result["moonlet"], result.get("transformers") or {}
    names = {"crops": result["crops"], "prefix": result["prefix_tokens"]}
    lines = [f"{'':42} {'moonlet':>12} {'transformers':>13} {'speed-up':>9}"]
    for key in (*TIME_KEYS, "peak_mem_mb"):
        ratio = result["ratios"].get(key)
        lines.append(f"{LABELS[key].format(**names):42} {_fmt(ours.get(key)):>12} {_fmt(hf.get(key)):>13} {_fmt(ratio):>9}")
    for batch, tok_s in ours["decode_tok_s"].items():
        other = hf.get("decode_tok_s", {}).get(batch)
        ratio = result["ratios"].get(f"decode_tok_s_{batch}")
        lines.append(f"{f'decode, batch {batch} (tokens/s)':42} {_fmt(tok_s):>12} {_fmt(other):>13} {_fmt(ratio):>9}")
    bw = result["bandwidth"]
    lines.append(
        f"decode bandwidth limit: {bw['decode_mb_per_token']:.1f} MB/token at {bw['copy_gb_s']:.1f} GB/s copy "
        f"= {bw['limit_tok_s']:.1f} tokens/s; batch 1 reaches {_fmt(100 * (bw['moonlet_fraction'] or 0))}% (moonlet)"
        + (f", {_fmt(100 * bw['transformers_fraction'])}% (transformers)" if bw.get("transformers_fraction") else "")
    )
    depth = result["depth"]
    hf_dtype = (hf or {}).get("dtype")
    hf_note = f" (transformers {hf_dtype})" if hf_dtype and hf_dtype != result["dtype"] else ""
    lines.append(
        f"{result['config']} dims, text {depth['text_layers']}/{depth['text_layers_full']} layers, vision "
        f"{depth['vision_layers']}/{depth['vision_layers_full']}, {result['dtype']}{hf_note} on {result['device_name']}, "
        f"{result['threads']} threads, quant {result['quant']}; speed-up = transformers time / moonlet time"
    )
    lines += [f"skipped: {s}" for s in result["skipped"]]
    return "\n".join(lines)


def _ratios(ours: dict, hf: dict | None) -> dict:
    if not hf:
        return {}
    ratios = {k: hf[k] / ours[k] for k in TIME_KEYS if ours.get(k) and hf.get(k)}
    for batch, value in ours["decode_tok_s"].items():
        if hf["decode_tok_s"].get(batch):
            ratios[f"decode_tok_s_{batch}"] = value / hf["decode_tok_s"][batch]
    if ours.get("peak_mem_mb") and hf.get("peak_mem_mb"):
        ratios["peak_mem_mb"] = hf["peak_mem_mb"] / ours["peak_mem_mb"]
    return ratios


def _mib(value: int | None) -> float | None:
    return None if value is None else value / 2**20


def run_kernels(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> int:
    rows = [int(r) for r in args.kernel_rows.split(",")]
    timings = kernel_timings(bench_config(args.config), device, dtype, rows, args.repeats)
    for m, row in timings.items():
        print(f"rows {m:>5}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in row.items()))
    print(json.dumps({"kernels_ms_per_layer": timings, "config": args.config, "device": str(device),
                      "dtype": str(dtype).removeprefix("torch."), "threads": torch.get_num_threads()}))
    return 0


def moonlet_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """The model to measure (random weights, or ``--model``), its configuration at full depth and
    the quantisation applied."""
    if args.model:
        model, _, _ = load_model(args.model, revision=args.revision, device=device, dtype=dtype)
        full = model.config
        model = resize(model, args.layers, args.context)
    else:
        full = bench_config(args.config)
        model = build_random(bench_config(args.config, args.layers, args.context), device, dtype)
    quant = args.quant
    if quant != "none":
        report = quantize_(model, quant, include=tuple(args.quant_parts.split(",")))
        quant = f"{quant} {args.quant_parts} ({','.join(sorted(report['kernels']))})"
    return model, full, quant


def run_routes(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[Plan, dict]:
    """Both routes, one after the other (one model in memory at a time)."""
    reset_peak(device)
    before = _mib(peak_bytes(device))
    model, full, quant = moonlet_model(args, device, dtype)
    after_load = _mib(resident_bytes(device))  # the model loaded (and quantised), nothing run yet
    plan = Plan(args, model.config, device, dtype)
    ours = measure_moonlet(model, plan)
    ours["peak_mem_mb"], ours["mem_before_mb"], ours["mem_after_load_mb"] = _mib(peak_bytes(device)), before, after_load
    kv_len = plan.config.prefix_len + len(plan.prompt) + plan.new_tokens // 2
    facts = {"per_token": decode_bytes_per_token(model, kv_len), "params": model.num_parameters(),
             "full": full, "quant": quant}
    del model
    hf = None
    if not args.skip_transformers:
        reset_peak(device)
        before = _mib(peak_bytes(device))
        cache = args.hf_cache if args.hf_cache != "auto" else ("static" if device.type == "cuda" else "dynamic")
        hf_dtype = parse_dtype(args.hf_dtype, dtype)  # e.g. moonlet in bfloat16/int8 against transformers in float32
        hf = measure_transformers(HFRoute(plan.config, device, hf_dtype, cache), plan)
        hf["peak_mem_mb"], hf["mem_before_mb"], hf["cache"] = _mib(peak_bytes(device)), before, cache
        hf["dtype"] = str(hf_dtype).removeprefix("torch.")
        gc.collect()
    return plan, {"moonlet": ours, "transformers": hf, **facts}


def run_bench(args: argparse.Namespace) -> int:
    """``moonlet bench``: print the table, then the JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = parse_dtype(args.dtype, torch.bfloat16 if device.type == "cuda" else torch.float32)
    if args.kernels:
        return run_kernels(args, device, dtype)
    bandwidth = copy_bandwidth(device)
    plan, routes = run_routes(args, device, dtype)
    config, ours, hf, full = plan.config, routes["moonlet"], routes["transformers"], routes["full"]
    limit = bandwidth / routes["per_token"]

    def fraction(route: dict | None) -> float | None:
        single = (route or {}).get("decode_tok_s", {}).get("1")
        return single / limit if single else None

    result = {
        "config": args.model or args.config,
        "profile": config.profile,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "quant": routes["quant"],
        "depth": {
            "text_layers": config.text.n_layers, "vision_layers": config.vision.enc_n_layers,
            "text_layers_full": full.text.n_layers, "vision_layers_full": full.vision.enc_n_layers,
        },
        "parameters": routes["params"],
        "crops": len(plan.crops.pixels),
        "prefix_tokens": config.prefix_len,
        "prompt_tokens": len(plan.prompt),
        "new_tokens": plan.new_tokens,
        "repeats": plan.repeats,
        "warmup": plan.warmup,
        "moonlet": ours,
        "transformers": hf,
        "ratios": _ratios(ours, hf),
        "bandwidth": {
            "copy_gb_s": bandwidth / 1e9,
            "decode_mb_per_token": routes["per_token"] / 1e6,
            "limit_tok_s": limit,
            "moonlet_fraction": fraction(ours),
            "transformers_fraction": fraction(hf),
        },
        "skipped": plan.skipped,
    }
    print(format_table(result))
    print(json.dumps(result))
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="measure speed and memory against the transformers route")
    p.add_argument("--config", choices=["tiny", "real"], default="real", help="model dimensions (default: real 2025-06-21)")
    p.add_argument("--model", help="load this checkpoint (directory, .safetensors or hub id) instead of random weights")
    p.add_argument("--revision", help="hub revision for --model")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: cuda if available)")
    p.add_argument("--dtype", help="float32, bfloat16 or float16 (default: bf16 on GPU, float32 on CPU)")
    p.add_argument("--layers", type=int, help="keep only this many text and vision layers (quick runs)")
    p.add_argument("--context", type=int, help="text context (KV cache length; default: the profile's 2048)")
    p.add_argument("--crops", type=int, default=13, help="crops of the many-crop image (default 13)")
    p.add_argument("--batch-sizes", default="1,4,16,32", help="decode batch sizes (default 1,4,16,32)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens decoded per run (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--quant", choices=["none", "int8", "int4"], default="none", help="quantise moonlet's weights")
    p.add_argument("--compile", action="store_true", help="torch.compile moonlet's vision encoder and decode step (CUDA graphs on GPU); needs --warmup >= 1")
    p.add_argument("--quant-parts", default="text", help="parts to quantise: text,vision,region (default text)")
    p.add_argument("--hf-dtype", help="dtype of the transformers route (default: --dtype)")
    p.add_argument("--hf-cache", choices=["auto", "static", "dynamic"], default="auto",
                   help="transformers KV cache (auto: static on GPU, dynamic on CPU)")
    p.add_argument("--skip-transformers", action="store_true", help="measure moonlet only")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--kernels", action="store_true", help="time the int8/int4 matmul kernels per layer instead")
    p.add_argument("--kernel-rows", default="1,4,16,32,730", help="activation rows for --kernels")
    p.set_defaults(handler=run_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m moonlet.bench …`` (the same options as ``moonlet bench``)."""
    parser = argparse.ArgumentParser(prog="moonlet")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return run_bench(parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    raise SystemExit(main())
