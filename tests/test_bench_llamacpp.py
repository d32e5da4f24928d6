"""The llama.cpp bench route on the tiny configuration: the GGUF written (read back with gguf's own
reader; needs only gguf), llama.cpp's logits against moonlet's and the route's figures (need
llama-cpp-python, the ``moonlet[bench]`` extra), and ``--llamacpp`` without the extra."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from moonlet.bench import cli as bench_cli
from moonlet.bench.models import bench_config, random_model
from moonlet.modeling.text import attention_mask

gguf = pytest.importorskip("gguf", reason="the GGUF export needs gguf (the dev or moonlet[bench] extra)")

from moonlet.bench.gguf_export import GGUF_KINDS, OUTPUT_KINDS, write_gguf
from moonlet.bench.llamacpp_route import parse_kinds

EXTRA = "llama-cpp-python is not installed (the moonlet[bench] extra)"
PARITY_IDS = [5, 1000, 17, 2047, 3, 640, 99, 1500, 42, 7, 1999, 256, 128, 64, 300, 11]


@pytest.fixture(scope="module")
def text():
    """The bench's tiny text decoder with non-trivial biases and LayerNorms (the bench's own init
    leaves them at 0 and 1, which would hide a misplaced bias)."""
    model = random_model(bench_config("tiny"), torch.device("cpu"), torch.float32)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.text.named_parameters():
            if param.dim() == 1:
                base = 1.0 if name.endswith("weight") else 0.0  # LayerNorm weights around 1, biases around 0
                param.copy_(base + 0.2 * torch.rand(param.shape, generator=generator) - 0.1)
    return model.text


def field(reader, key: str):
    return reader.fields[key].contents()


def expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """GGUF shapes (ne order: columns first) of every tensor, from the configuration."""
    dim, ff, vocab = config.dim, config.ff_dim, config.vocab_size
    qkv = (config.n_heads + 2 * config.n_kv_heads) * config.head_dim
    names = gguf.TENSOR_NAMES
    shapes = {
        f"{names[gguf.MODEL_TENSOR.TOKEN_EMBD]}.weight": (dim, vocab),
        f"{names[gguf.MODEL_TENSOR.OUTPUT_NORM]}.weight": (dim,),
        f"{names[gguf.MODEL_TENSOR.OUTPUT_NORM]}.bias": (dim,),
        f"{names[gguf.MODEL_TENSOR.OUTPUT]}.weight": (dim, vocab),
        f"{names[gguf.MODEL_TENSOR.OUTPUT]}.bias": (vocab,),
    }
    per_block = {
        gguf.MODEL_TENSOR.ATTN_NORM: ((dim,), (dim,)),
        gguf.MODEL_TENSOR.ATTN_QKV: ((dim, qkv), (qkv,)),
        gguf.MODEL_TENSOR.ATTN_OUT: ((dim, dim), (dim,)),
        gguf.MODEL_TENSOR.FFN_UP: ((dim, ff), (ff,)),
        gguf.MODEL_TENSOR.FFN_DOWN: ((ff, dim), (dim,)),
    }
    for block in range(config.n_layers):
        for tensor, (weight, bias) in per_block.items():
            name = names[tensor].format(bid=block)
            shapes[f"{name}.weight"], shapes[f"{name}.bias"] = weight, bias
    return shapes


def moonlet_weights(text) -> dict[str, torch.Tensor]:
    """Moonlet's parameters under the GGUF names they must land at."""
    weights = {"token_embd.weight": text.wte, "output_norm.weight": text.post_ln.weight}
    weights |= {"output_norm.bias": text.post_ln.bias, "output.weight": text.lm_head.weight}
    weights["output.bias"] = text.lm_head.bias
    for index, block in enumerate(text.blocks):
        modules = {
            "attn_norm": block.ln,
            "attn_qkv": block.attn.qkv,
            "attn_output": block.attn.proj,
            "ffn_up": block.mlp.fc1,
            "ffn_down": block.mlp.fc2,
        }
        for name, module in modules.items():
            weights[f"blk.{index}.{name}.weight"] = module.weight
            weights[f"blk.{index}.{name}.bias"] = module.bias
    return weights


@pytest.mark.parametrize("kind", GGUF_KINDS)
def test_gguf_tensors_and_metadata(text, kind, tmp_path):
    config = text.config
    reader = gguf.GGUFReader(write_gguf(text, tmp_path / f"tiny-{kind}.gguf", kind))
    tensors = {t.name: t for t in reader.tensors}
    shapes = expected_shapes(config)
    assert set(tensors) == set(shapes)
    weights = moonlet_weights(text)
    tolerance = {"F32": 0.0, "F16": 1e-3, "Q8_0": 1e-2, "Q4_0": 0.15}[kind]  # relative to each matrix's largest entry
    for name, tensor in tensors.items():
        assert tuple(int(n) for n in tensor.shape) == shapes[name], name
        matrix = len(shapes[name]) == 2
        stored_kind = OUTPUT_KINDS.get(kind, kind) if name == "output.weight" else kind  # a 4-bit file's output: Q8_0
        assert tensor.tensor_type.name == (stored_kind if matrix else "F32"), name
        stored = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(tuple(reversed(shapes[name])))
        ours = weights[name].detach().numpy()
        assert np.abs(stored - ours).max() <= tolerance * np.abs(ours).max() + 1e-7, name
    assert field(reader, "general.architecture") == "phi2"
    assert field(reader, "general.file_type") == int(
        {"F32": 0, "F16": 1, "Q8_0": 7, "Q4_0": 2}[kind]
    )  # llama.cpp's LLAMA_FTYPE_* values
    arch = gguf.Keys.LLM
    assert field(reader, arch.BLOCK_COUNT.format(arch="phi2")) == config.n_layers
    assert field(reader, arch.EMBEDDING_LENGTH.format(arch="phi2")) == config.dim
    assert field(reader, arch.FEED_FORWARD_LENGTH.format(arch="phi2")) == config.ff_dim
    assert field(reader, arch.CONTEXT_LENGTH.format(arch="phi2")) == config.max_context
    attention, rope = gguf.Keys.Attention, gguf.Keys.Rope
    assert field(reader, attention.HEAD_COUNT.format(arch="phi2")) == config.n_heads
    assert field(reader, attention.HEAD_COUNT_KV.format(arch="phi2")) == config.n_kv_heads
    assert field(reader, attention.LAYERNORM_EPS.format(arch="phi2")) == pytest.approx(config.layer_norm_eps)
    assert field(reader, rope.DIMENSION_COUNT.format(arch="phi2")) == config.rotary_dim
    assert field(reader, rope.FREQ_BASE.format(arch="phi2")) == pytest.approx(config.rope_theta)
    tok = gguf.Keys.Tokenizer
    assert field(reader, tok.MODEL) == "gpt2"
    tokens, merges = field(reader, tok.LIST), field(reader, tok.MERGES)
    assert len(tokens) == len(set(tokens)) == config.vocab_size
    assert len(merges) == config.vocab_size - 257
    assert all(m.replace(" ", "") in set(tokens) for m in merges)
    assert field(reader, tok.BOS_ID) == field(reader, tok.EOS_ID) == config.vocab_size - 1


def test_gguf_refuses_what_llama_cpp_cannot_run(text, tmp_path):
    with pytest.raises(ValueError, match="Q5_K"):
        write_gguf(text, tmp_path / "x.gguf", "Q5_K")
    with pytest.raises(ValueError, match="distinct GGUF types"):
        parse_kinds("F16,F16")
    with pytest.raises(ValueError, match="Q2"):
        parse_kinds("F16,Q2")
    assert parse_kinds("f16, q8_0") == ["F16", "Q8_0"]


def test_llamacpp_flag_without_the_extra(monkeypatch, capsys):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real_find_spec(name, *a)
    )
    assert bench_cli.main(["--config", "tiny", "--llamacpp", "F16"]) == 2
    err = capsys.readouterr().err
    assert "llama-cpp-python" in err and "moonlet[bench]" in err


def moonlet_logits(text, ids: list[int]) -> np.ndarray:
    tokens = torch.tensor([ids])
    positions = torch.arange(len(ids))[None]
    with torch.inference_mode():
        hidden = text(text.embed(tokens), positions, attention_mask(positions, positions, 0))
        return text.logits(hidden)[0].numpy()


def test_llamacpp_logits_equal_moonlets(text, tmp_path):
    pytest.importorskip("llama_cpp", reason=EXTRA)
    from moonlet.bench.llamacpp_route import llamacpp_logits

    path = write_gguf(text, tmp_path / "tiny-F32.gguf", "F32")
    theirs = llamacpp_logits(path, PARITY_IDS, threads=1, exact_cache=True)
    ours = moonlet_logits(text, PARITY_IDS)
    assert theirs.shape == ours.shape == (len(PARITY_IDS), text.config.vocab_size)
    # llama.cpp's GELU reads a float16 table, the rest is float32: ~3e-4 of the largest logit here,
    # while a dropped qkv bias moves the logits by ~0.13 of it
    assert np.abs(theirs - ours).max() <= 2e-3 * np.abs(ours).max()
    assert (theirs.argmax(-1) == ours.argmax(-1)).all()


def test_llamacpp_route_figures(text, tmp_path):
    pytest.importorskip("llama_cpp", reason=EXTRA)
    from moonlet.bench.llamacpp_route import LlamaCppDecoder, measure_decoder

    decoder = LlamaCppDecoder(write_gguf(text, tmp_path / "tiny-Q4_0.gguf", "Q4_0"), n_ctx=64, threads=1)
    try:
        figures = measure_decoder(decoder, PARITY_IDS, new_tokens=4, prefix_len=16, repeats=2, warmup=1)
    finally:
        decoder.close()
    assert figures["first_token_ms"] > 0 and figures["decode_tok_s"] > 0


def test_bench_with_llamacpp_route(capsys):
    pytest.importorskip("llama_cpp", reason=EXTRA)
    threads = torch.get_num_threads()
    quick = ["--config", "tiny", "--repeats", "1", "--warmup", "0", "--new-tokens", "3", "--batch-sizes", "1"]
    try:
        assert (
            bench_cli.main([*quick, "--crops", "2", "--threads", "1", "--skip-transformers", "--llamacpp", "F16,Q8_0"])
            == 0
        )
    finally:
        torch.set_num_threads(threads)
    lines = capsys.readouterr().out.strip().splitlines()
    table, result = "\n".join(lines[:-1]), json.loads(lines[-1])
    llama = result["llamacpp"]
    assert set(llama["runs"]) == {"F16", "Q8_0"}
    assert llama["threads"] == 1 and llama["new_tokens"] == 3 and llama["prompt_tokens"] == result["prompt_tokens"]
    assert llama["prefix_tokens"] == result["prefix_tokens"]
    assert all(run["first_token_ms"] > 0 and run["decode_tok_s"] > 0 for run in llama["runs"].values())
    assert "llama.cpp Q8_0" in table and "first token (ms)" in table and "1 threads" in table
