"""Write moonlet's text decoder as a GGUF file of llama.cpp's "phi2" architecture (for the llama.cpp
bench route). Needs the ``gguf`` package (``moonlet[bench]``).

Layouts match without reordering: the fused qkv rows are q, k, v with heads contiguous (llama.cpp
views them the same way), and phi2's rotary is NeoX-style (dims j and j + r/2 of the first r dims
of each head), as moonlet's split-half ``apply_rotary``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..modeling.text import TextDecoder

GGUF_KINDS = ("F32", "F16", "Q8_0", "Q4_0")
# A 4-bit file keeps its output layer wider, as llama.cpp's own quantiser does (6 bits) and
# moonlet's int4 does (int8): Q8_0 here, so both routes read the same bytes per token.
OUTPUT_KINDS = {"Q4_0": "Q8_0"}
ARCH = "phi2"
EOS_TEXT = "<|endoftext|>"


def gguf_module():
    """The ``gguf`` package, or an ImportError naming the extra that brings it."""
    try:
        import gguf
    except ImportError as error:
        raise ImportError("the llama.cpp route needs gguf: pip install 'moonlet[bench]'") from error
    return gguf


def tensor_name(key: str, block: int | None = None, suffix: str = "weight") -> str:
    """llama.cpp's phi2 tensor name for a MODEL_TENSOR key, e.g. ("ATTN_QKV", 0) → blk.0.attn_qkv.weight."""
    gguf = gguf_module()
    tensor = gguf.MODEL_TENSOR[key]
    if tensor not in gguf.MODEL_TENSORS[gguf.MODEL_ARCH.PHI2]:
        raise ValueError(f"{key} is not a phi2 tensor")
    base = gguf.TENSOR_NAMES[tensor]
    return f"{base.format(bid=block) if block is not None else base}.{suffix}"


def linear_weight(module: torch.nn.Module, label: str) -> torch.Tensor:
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or not weight.is_floating_point():
        raise ValueError(f"{label}: export needs plain float weights (export before quantising the model)")
    return weight


def decoder_tensors(text: TextDecoder) -> Iterator[tuple[str, torch.Tensor]]:
    """(GGUF name, tensor) for every weight of the decoder, in file order; (out, in) matrices as in torch."""
    yield tensor_name("TOKEN_EMBD"), text.wte
    for index, block in enumerate(text.blocks):
        pairs = (
            ("ATTN_NORM", block.ln),
            ("ATTN_QKV", block.attn.qkv),
            ("ATTN_OUT", block.attn.proj),
            ("FFN_UP", block.mlp.fc1),
            ("FFN_DOWN", block.mlp.fc2),
        )
        for key, module in pairs:
            yield tensor_name(key, index), linear_weight(module, f"blocks.{index}.{key.lower()}")
            yield tensor_name(key, index, "bias"), module.bias
    yield tensor_name("OUTPUT_NORM"), text.post_ln.weight
    yield tensor_name("OUTPUT_NORM", suffix="bias"), text.post_ln.bias
    yield tensor_name("OUTPUT"), linear_weight(text.lm_head, "lm_head")
    yield tensor_name("OUTPUT", suffix="bias"), text.lm_head.bias


def synthetic_vocab(vocab_size: int) -> tuple[list[str], list[str], list[int]]:
    """A "gpt2"-type BPE vocabulary of ``vocab_size`` tokens: the 256 byte-level characters, then
    two-character tokens each with its merge, then one control token (BOS/EOS). The bench feeds
    token ids, so only its shape matters; llama.cpp needs it to load the model."""
    from tokenizers.pre_tokenizers import ByteLevel

    gguf = gguf_module()
    alphabet = sorted(ByteLevel.alphabet())
    pairs = vocab_size - len(alphabet) - 1
    if not 0 <= pairs <= len(alphabet) ** 2:
        raise ValueError(f"text.vocab_size {vocab_size}: the synthetic vocabulary needs 257 to 65793 tokens")
    merges = [f"{alphabet[i // len(alphabet)]} {alphabet[i % len(alphabet)]}" for i in range(pairs)]
    tokens = [*alphabet, *(merge.replace(" ", "") for merge in merges), EOS_TEXT]
    types = [int(gguf.TokenType.NORMAL)] * (vocab_size - 1) + [int(gguf.TokenType.CONTROL)]
    return tokens, merges, types


def encode(gguf, name: str, tensor: torch.Tensor, kind: str) -> tuple[np.ndarray, object]:
    """The tensor's data in the file: matrices in ``kind``, vectors (norms, biases) in F32."""
    data = tensor.detach().to("cpu", torch.float32).numpy()
    if data.ndim == 1 or kind == "F32":
        return data, gguf.GGMLQuantizationType.F32
    if kind == "F16":
        return data.astype(np.float16), gguf.GGMLQuantizationType.F16
    qtype = gguf.GGMLQuantizationType[kind]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if data.shape[-1] % block:
        raise ValueError(f"{name}: row length {data.shape[-1]} is not a multiple of {kind}'s block of {block}")
    return gguf.quants.quantize(data, qtype), qtype


def write_gguf(text: TextDecoder, path: str | Path, kind: str = "F16") -> Path:
    """Write ``text`` (moonlet's text decoder) to ``path`` as a phi2 GGUF with matrices in ``kind``."""
    if kind not in GGUF_KINDS:
        raise ValueError(f"GGUF type {kind!r}: expected one of {', '.join(GGUF_KINDS)}")
    config = text.config
    if config.gelu != "tanh":
        raise ValueError(f"text.gelu {config.gelu!r}: llama.cpp's phi2 uses the tanh GELU")
    gguf = gguf_module()
    path = Path(path)
    writer = gguf.GGUFWriter(path, ARCH)
    writer.add_name("moonlet text decoder")
    file_types = {"F32": "ALL_F32", "F16": "MOSTLY_F16", "Q8_0": "MOSTLY_Q8_0", "Q4_0": "MOSTLY_Q4_0"}
    writer.add_file_type(int(gguf.LlamaFileType[file_types[kind]]))
    if kind in ("Q8_0", "Q4_0"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(config.max_context)
    writer.add_embedding_length(config.dim)
    writer.add_feed_forward_length(config.ff_dim)
    writer.add_block_count(config.n_layers)
    writer.add_head_count(config.n_heads)
    writer.add_head_count_kv(config.n_kv_heads)
    writer.add_layer_norm_eps(config.layer_norm_eps)
    writer.add_rope_dimension_count(config.rotary_dim)
    writer.add_rope_freq_base(config.rope_theta)
    writer.add_vocab_size(config.vocab_size)
    tokens, merges, types = synthetic_vocab(config.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_merges(merges)
    writer.add_token_types(types)
    writer.add_bos_token_id(config.vocab_size - 1)
    writer.add_eos_token_id(config.vocab_size - 1)
    writer.add_add_bos_token(False)
    output = tensor_name("OUTPUT")
    for name, tensor in decoder_tensors(text):
        data, qtype = encode(gguf, name, tensor, OUTPUT_KINDS.get(kind, kind) if name == output else kind)
        writer.add_tensor(name, data, raw_dtype=qtype if data.dtype == np.uint8 else None)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
