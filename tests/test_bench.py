"""``moonlet bench`` on the tiny configuration: it runs end to end and prints the JSON line.
No timing is asserted."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from moonlet.bench.cli import add_bench_parser, main, run_bench
from moonlet.bench.measure import decode_bytes_per_token
from moonlet.bench.models import bench_config, random_model
from moonlet.bench.plan import synthetic_crops
from moonlet.bench.transformers_route import hf_configs

QUICK = [
    "--config",
    "tiny",
    "--repeats",
    "1",
    "--warmup",
    "0",
    "--new-tokens",
    "3",
    "--batch-sizes",
    "1,2",
    "--crops",
    "3",
    "--threads",
    "1",
]
ROUTE_KEYS = {
    "vision_1crop_ms",
    "vision_many_ms",
    "image_embedding_ms",
    "prefill_ms",
    "ttft_new_ms",
    "ttft_cached_ms",
    "decode_tok_s",
    "peak_mem_mb",
}


def _run(capsys, *extra: str) -> tuple[str, dict]:
    threads = torch.get_num_threads()
    try:
        assert main([*QUICK, *extra]) == 0
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    return "\n".join(lines[:-1]), json.loads(lines[-1])


def test_bench_tiny_end_to_end(capsys):
    import transformers  # noqa: F401

    table, result = _run(capsys)
    assert "decode, batch 2" in table and "speed-up" in table
    for key in ("config", "device", "dtype", "depth", "moonlet", "transformers", "ratios", "bandwidth", "skipped"):
        assert key in result
    for route in ("moonlet", "transformers"):
        assert ROUTE_KEYS <= set(result[route])
        assert set(result[route]["decode_tok_s"]) == {"1", "2"}
        assert all(v > 0 for v in result[route]["decode_tok_s"].values())
    assert {"ttft_cached_ms", "decode_tok_s_1"} <= set(result["ratios"])
    assert {"copy_gb_s", "decode_mb_per_token", "limit_tok_s", "moonlet_fraction"} <= set(result["bandwidth"])
    assert result["depth"] == {"text_layers": 2, "vision_layers": 2, "text_layers_full": 2, "vision_layers_full": 2}


def test_bench_layers_and_quant_without_transformers(capsys):
    _, result = _run(capsys, "--skip-transformers", "--layers", "1", "--quant", "int8")
    assert result["transformers"] is None and result["ratios"] == {}
    assert result["depth"]["text_layers"] == 1 and result["depth"]["text_layers_full"] == 2
    assert "int8/" in result["quant"]


@pytest.mark.slow
def test_bench_static_cache_route(capsys):
    """The GPU default (transformers' static cache) exercised on CPU."""
    import transformers  # noqa: F401

    _, result = _run(capsys, "--hf-cache", "static", "--dtype", "bfloat16")
    assert result["transformers"]["cache"] == "static"


def test_parser_registers_bench():
    parser = argparse.ArgumentParser()
    add_bench_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--config", "tiny", "--layers", "3", "--skip-transformers"])
    assert args.handler is run_bench and args.layers == 3 and args.batch_sizes == "1,4,16,32"


def test_cheap_init_is_deterministic_and_finite():
    config = bench_config("tiny")
    a = random_model(config, torch.device("cpu"), torch.float32)
    b = random_model(config, torch.device("cpu"), torch.float32)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q) and torch.isfinite(p).all(), name
    assert torch.equal(a.text.blocks[0].ln.weight, torch.ones(config.text.dim))


def test_transformers_configs_have_our_dimensions():
    import transformers  # noqa: F401

    config = bench_config("real", layers=3)
    siglip, phi = hf_configs(config)
    assert (siglip.hidden_size, siglip.num_hidden_layers, siglip.image_size) == (1152, 3, 378)
    assert (phi.hidden_size, phi.num_hidden_layers, phi.vocab_size) == (2048, 3, 51200)


def test_decode_bytes_count_decoder_weights_and_cache():
    config = bench_config("tiny")
    model = random_model(config, torch.device("cpu"), torch.float32)
    t = config.text
    weights = sum(p.numel() for p in model.text.parameters()) - model.text.wte.numel()
    cache = 2 * t.n_layers * t.n_kv_heads * t.head_dim * 100
    assert decode_bytes_per_token(model, 100) == 4 * (weights + cache)


def test_synthetic_crops_tile_the_rest():
    config = bench_config("tiny")
    assert synthetic_crops(config, 13).tiling == (3, 4)
    assert synthetic_crops(config, 2).tiling == (1, 1)
    assert synthetic_crops(config, 13).pixels.shape == (13, 378, 378, 3)
