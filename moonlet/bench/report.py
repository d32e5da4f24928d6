"""The bench report: speed-up ratios, the table and the JSON result."""

from __future__ import annotations

import argparse
import os

import torch

from ..quant import plan_for
from .plan import Plan

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
        label = LABELS[key].format(**names)
        lines.append(f"{label:42} {_fmt(ours.get(key)):>12} {_fmt(hf.get(key)):>13} {_fmt(ratio):>9}")
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
    for part, figures in ours.get("flop_shares", {}).items():
        lines.append(
            f"{part}: {figures['gflop']} GFLOP; its {figures['linear_calls']} linear calls alone, timed at the "
            f"same shapes and kernels, take {figures['linear_floor_ms']:,.1f} ms: "
            f"{figures['share_of_linear_floor'] * 100:.0f}% of its time (moonlet)"
        )
    depth = result["depth"]
    hf_dtype = (hf or {}).get("dtype")
    hf_note = f" (transformers {hf_dtype})" if hf_dtype and hf_dtype != result["dtype"] else ""
    lines.append(
        f"{result['config']} dims, text {depth['text_layers']}/{depth['text_layers_full']} layers, vision "
        f"{depth['vision_layers']}/{depth['vision_layers_full']}, {result['dtype']}{hf_note} "
        f"on {result['device_name']}, "
        f"{result['threads']} threads, quant {result['quant']}; speed-up = transformers time / moonlet time"
    )
    lines += llamacpp_lines(result)
    lines += [f"skipped: {s}" for s in result["skipped"]]
    return "\n".join(lines)


def llamacpp_lines(result: dict) -> list[str]:
    """The llama.cpp section: each GGUF type's first-token time and batch-1 decode next to moonlet's."""
    llama = result.get("llamacpp")
    if not llama:
        return []
    ours = result["moonlet"]
    moonlet_label = f"moonlet {result['dtype']}, quant {result['quant']}"
    lines = [
        f"llama.cpp route (text decoder, llama-cpp-python {llama['version']}): {llama['threads']} threads, "
        f"prompt {llama['prompt_tokens']} tokens after {llama['prefix_tokens']} cached, "
        f"{llama['new_tokens']} new tokens, {llama['decode']}",
        f"{'':42} {'first token (ms)':>17} {'decode (tokens/s)':>18}",
        f"{moonlet_label:42} {_fmt(ours.get('ttft_cached_ms')):>17} {_fmt(ours['decode_tok_s'].get('1')):>18}",
    ]
    for kind, run in llama["runs"].items():
        label = f"llama.cpp {kind} ({run['file_mb']:.1f} MiB)"
        lines.append(f"{label:42} {_fmt(run['first_token_ms']):>17} {_fmt(run['decode_tok_s']):>18}")
    return lines


def ratios(ours: dict, hf: dict | None) -> dict:
    if not hf:
        return {}
    ratios = {k: hf[k] / ours[k] for k in TIME_KEYS if ours.get(k) and hf.get(k)}
    for batch, value in ours["decode_tok_s"].items():
        if hf["decode_tok_s"].get(batch):
            ratios[f"decode_tok_s_{batch}"] = value / hf["decode_tok_s"][batch]
    if ours.get("peak_mem_mb") and hf.get("peak_mem_mb"):
        ratios["peak_mem_mb"] = hf["peak_mem_mb"] / ours["peak_mem_mb"]
    return ratios


def bench_result(
    args: argparse.Namespace, device: torch.device, dtype: torch.dtype, plan: Plan, routes: dict, bandwidth: float
) -> dict:
    """The JSON result of a run: settings, both routes' figures, ratios and the bandwidth bound."""
    config, ours, hf, full = plan.config, routes["moonlet"], routes["transformers"], routes["full"]
    limit = bandwidth / routes["per_token"]

    def fraction(route: dict | None) -> float | None:
        single = (route or {}).get("decode_tok_s", {}).get("1")
        return single / limit if single else None

    return {
        "config": args.model or args.config,
        "profile": config.profile,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else plan_for().cpu,
        "kernel_plan": plan_for(device=device).as_dict(),
        "dtype": str(dtype).removeprefix("torch."),
        "threads": torch.get_num_threads(),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "quant": routes["quant"],
        "depth": {
            "text_layers": config.text.n_layers,
            "vision_layers": config.vision.enc_n_layers,
            "text_layers_full": full.text.n_layers,
            "vision_layers_full": full.vision.enc_n_layers,
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
        "llamacpp": routes.get("llamacpp"),
        "ratios": ratios(ours, hf),
        "bandwidth": {
            "copy_gb_s": bandwidth / 1e9,
            "decode_mb_per_token": routes["per_token"] / 1e6,
            "limit_tok_s": limit,
            "moonlet_fraction": fraction(ours),
            "transformers_fraction": fraction(hf),
        },
        "skipped": plan.skipped,
    }
