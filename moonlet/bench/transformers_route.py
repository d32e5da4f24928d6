"""The transformers route at the same dimensions: ``SiglipVisionModel`` + our projection MLP
(transformers has no equivalent) + ``PhiForCausalLM`` (fully causal; moonlet's bidirectional image
prefix costs the same), with cheap random weights."""

from __future__ import annotations

import copy
import statistics
import time
from dataclasses import replace

import torch
from torch import nn

from ..checkpoints.config_json import phi_kwargs, siglip_kwargs, text_config_from_phi, vision_config_from_siglip
from ..config import MoondreamConfig
from ..image import Crops, pool_to_grid, reconstruct_from_crops
from ..modeling.init import init_uniform_
from ..modeling.layers import MLP
from .measure import kv_bytes_per_slot, step_intervals
from .plan import Plan


def hf_configs(config: MoondreamConfig):
    """SiglipVisionConfig and PhiConfig with our dimensions (checked by converting them back)."""
    import transformers

    v, t = config.vision, config.text
    siglip = transformers.SiglipVisionConfig(**siglip_kwargs(v), vision_use_head=False, attn_implementation="sdpa")
    phi = transformers.PhiConfig(
        **phi_kwargs(t),
        tie_word_embeddings=False,
        attn_implementation="sdpa",
        pad_token_id=0,
        bos_token_id=config.tokenizer.bos_id,
        eos_token_id=None,
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
    init_uniform_(model, seed)
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
        init_uniform_(self.proj, 3)

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
            **inputs,
            attention_mask=torch.ones(ids.shape, dtype=torch.long, device=self.device),
            past_key_values=cache,
            max_new_tokens=tokens,
            min_new_tokens=tokens,
            do_sample=False,
            streamer=streamer,
            pad_token_id=0,
            eos_token_id=None,
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
        fresh = hf.prefix_embeddings(hf.image_embedding(plan.crops))
        embeds = torch.cat((fresh, hf.phi.get_input_embeddings()(prompt)), 1)
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
