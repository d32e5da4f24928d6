"""``moonlet bench`` (and ``python -m moonlet.bench``): speed and memory of moonlet, side by side
with the transformers route, or the int8/int4 kernels alone (``--kernels``)."""

from __future__ import annotations

import argparse
import gc
import json
import sys

import torch

from ..checkpoints.loading import default_dtype, parse_dtype
from ..cli_args import add_model_arguments
from ..quant import WEIGHT_FORMATS
from .kernel_timings import kernel_timings
from .llamacpp_route import measure_llamacpp, missing_packages, parse_kinds
from .measure import copy_bandwidth, decode_bytes_per_token, mib, peak_bytes, reset_peak, resident_bytes
from .models import bench_config
from .moonlet_route import measure_moonlet, moonlet_model
from .peaks import load_peaks
from .plan import Plan
from .report import bench_result, format_table
from .transformers_route import HFRoute, measure_transformers

MODEL_HELP = "load this checkpoint (directory, .safetensors or hub id) instead of random weights"


def run_kernels(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> int:
    rows = [int(r) for r in args.kernel_rows.split(",")]
    timings = kernel_timings(bench_config(args.config), device, dtype, rows, args.repeats)
    for m, row in timings.items():
        print(f"rows {m:>5}: " + "  ".join(f"{k} {v:.2f} ms" for k, v in row.items()))
    print(
        json.dumps(
            {
                "kernels_ms_per_layer": timings,
                "config": args.config,
                "device": str(device),
                "dtype": str(dtype).removeprefix("torch."),
                "threads": torch.get_num_threads(),
            }
        )
    )
    return 0


def run_routes(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> tuple[Plan, dict]:
    """Both routes, one after the other (one model in memory at a time)."""
    reset_peak(device)
    before = mib(peak_bytes(device))
    model, full, quant = moonlet_model(args, device, dtype)
    after_load = mib(resident_bytes(device))  # the model loaded (and quantised), nothing run yet
    plan = Plan(args, model.config, device, dtype)
    ours = measure_moonlet(model, plan)
    ours["peak_mem_mb"], ours["mem_before_mb"], ours["mem_after_load_mb"] = mib(peak_bytes(device)), before, after_load
    kv_len = plan.config.prefix_len + len(plan.prompt) + plan.new_tokens // 2
    facts = {
        "per_token": decode_bytes_per_token(model, kv_len),
        "params": model.num_parameters(),
        "full": full,
        "quant": quant,
    }
    del model
    hf = None
    if not args.skip_transformers:
        reset_peak(device)
        before = mib(peak_bytes(device))
        cache = args.hf_cache if args.hf_cache != "auto" else ("static" if device.type == "cuda" else "dynamic")
        hf_dtype = parse_dtype(args.hf_dtype, dtype)  # e.g. moonlet in bfloat16/int8 against transformers in float32
        hf = measure_transformers(HFRoute(plan.config, device, hf_dtype, cache), plan)
        hf["peak_mem_mb"], hf["mem_before_mb"], hf["cache"] = mib(peak_bytes(device)), before, cache
        hf["dtype"] = str(hf_dtype).removeprefix("torch.")
        gc.collect()
    llamacpp = run_llamacpp(args, device, dtype, plan) if args.llamacpp else None
    return plan, {"moonlet": ours, "transformers": hf, "llamacpp": llamacpp, **facts}


def run_llamacpp(args: argparse.Namespace, device: torch.device, dtype: torch.dtype, plan: Plan) -> dict:
    """The llama.cpp route on moonlet's text decoder weights: the same model rebuilt (random weights are
    deterministic per device and dtype; ``--model`` is loaded again) with plain layers, then exported."""
    plain = {"quant": "none", "dtype": str(dtype).removeprefix("torch.")}  # a dtype given: no 16-bit formats
    model, _, _ = moonlet_model(argparse.Namespace(**{**vars(args), **plain}), device, dtype)
    text = model.text
    del model
    result = measure_llamacpp(text, args.llamacpp, plan, torch.get_num_threads())
    del text
    gc.collect()
    return result


def llamacpp_kinds(text: str) -> list[str]:
    try:
        return parse_kinds(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def run_bench(args: argparse.Namespace) -> int:
    """``moonlet bench``: print the table, then the JSON line."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = parse_dtype(args.dtype, default_dtype(bench_config(args.config), device))  # as a load picks it
    if args.llamacpp and args.kernels:
        print("moonlet: error: --llamacpp measures the text decoder, not with --kernels", file=sys.stderr)
        return 2
    if args.llamacpp and (missing := missing_packages()):
        print(f"moonlet: error: --llamacpp needs {', '.join(missing)}: pip install 'moonlet[bench]'", file=sys.stderr)
        return 2
    if args.kernels:
        return run_kernels(args, device, dtype)
    if args.load_peaks:
        peaks = load_peaks(args.load_peaks, bench_config(args.config, args.layers, args.context))
        for quant, peak in peaks.items():
            print(f"load {quant:>5}: peak RSS {mib(peak):,.0f} MiB")
        print(json.dumps({"load_peak_mb": {q: mib(p) for q, p in peaks.items()}, "config": args.config}))
        return 0
    bandwidth = copy_bandwidth(device)
    plan, routes = run_routes(args, device, dtype)
    result = bench_result(args, device, dtype, plan, routes, bandwidth)
    print(format_table(result))
    print(json.dumps(result))
    return 0


def add_bench_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("bench", help="measure speed and memory against the transformers route")
    p.add_argument(
        "--config", choices=["tiny", "real"], default="real", help="model dimensions (default: real 2025-06-21)"
    )
    add_model_arguments(p, model_help=MODEL_HELP)
    p.add_argument("--layers", type=int, help="keep only this many text and vision layers (quick runs)")
    p.add_argument("--context", type=int, help="text context (KV cache length; default: the profile's 2048)")
    p.add_argument("--crops", type=int, default=13, help="crops of the many-crop image (default 13)")
    p.add_argument("--batch-sizes", default="1,4,16,32", help="decode batch sizes (default 1,4,16,32)")
    p.add_argument("--new-tokens", type=int, default=32, help="tokens decoded per run (default 32)")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per figure; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument(
        "--quant",
        choices=["none", *WEIGHT_FORMATS],
        default="none",
        help="weights of --quant-parts: fp16, bf16, int8 or int4 (the rest: the kernel plan's, as a load picks)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile moonlet's vision encoder and decode step (CUDA graphs on GPU); needs --warmup >= 1",
    )
    p.add_argument("--quant-parts", default="text", help="parts to quantise: text,vision,region (default text)")
    p.add_argument("--hf-dtype", help="dtype of the transformers route (default: --dtype)")
    p.add_argument(
        "--hf-cache",
        choices=["auto", "static", "dynamic"],
        default="auto",
        help="transformers KV cache (auto: static on GPU, dynamic on CPU)",
    )
    p.add_argument("--skip-transformers", action="store_true", help="measure moonlet only")
    p.add_argument("--threads", type=int, help="torch CPU threads (and llama.cpp's with --llamacpp)")
    p.add_argument(
        "--llamacpp",
        type=llamacpp_kinds,
        metavar="TYPES",
        help="also run the text decoder in llama.cpp as GGUF of these types (F32,F16,Q8_0,Q4_0); "
        "needs the moonlet[bench] extra",
    )
    p.add_argument("--kernels", action="store_true", help="time the int8/int4 matmul kernels per layer instead")
    p.add_argument("--kernel-rows", default="1,4,16,32,730", help="activation rows for --kernels")
    p.add_argument(
        "--load-peaks",
        metavar="DIR",
        help="instead: peak RSS of loading a random bf16 checkpoint (written to DIR once) in float, int8 and int4",
    )
    p.set_defaults(handler=run_bench)
    return p


def main(argv: list[str] | None = None) -> int:
    """``python -m moonlet.bench …`` (the same options as ``moonlet bench``)."""
    parser = argparse.ArgumentParser(prog="moonlet")
    add_bench_parser(parser.add_subparsers(dest="command", required=True))
    return run_bench(parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)]))
