"""The llama.cpp route: moonlet's text decoder exported to GGUF (F32, F16, Q8_0, Q4_0) and run through
llama-cpp-python's low-level API at the bench's thread count, prompt and number of new tokens.
Needs the ``moonlet[bench]`` extra (gguf, llama-cpp-python)."""

from __future__ import annotations

import importlib.util
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..modeling.text import TextDecoder
from .gguf_export import GGUF_KINDS, write_gguf
from .measure import median_time, step_intervals
from .plan import Plan

EXTRA_PACKAGES = {"gguf": "gguf", "llama_cpp": "llama-cpp-python"}
CPU = torch.device("cpu")


def missing_packages() -> list[str]:
    """The ``moonlet[bench]`` packages that are not installed (pip names)."""
    return [pip for module, pip in EXTRA_PACKAGES.items() if importlib.util.find_spec(module) is None]


def llama_cpp_module():
    try:
        import llama_cpp
    except ImportError as error:
        raise ImportError("the llama.cpp route needs llama-cpp-python: pip install 'moonlet[bench]'") from error
    return llama_cpp


def parse_kinds(text: str) -> list[str]:
    """``F16,Q8_0`` → ["F16", "Q8_0"]; an unknown or repeated type is an error naming it."""
    kinds = [kind.strip().upper() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in GGUF_KINDS]
    if unknown or not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"{text!r}: expected distinct GGUF types from {','.join(GGUF_KINDS)}")
    return kinds


class LlamaCppDecoder:
    """One GGUF loaded in llama.cpp, driven token by token through sequence 0 of its KV cache."""

    def __init__(self, path: str | Path, n_ctx: int, threads: int, n_batch: int = 512, exact_cache: bool = False):
        """``exact_cache``: float32 keys/values (parity checks) instead of llama.cpp's default float16."""
        self.lib = llama_cpp_module()
        cache_types = {"type_k": self.lib.GGML_TYPE_F32, "type_v": self.lib.GGML_TYPE_F32} if exact_cache else {}
        self.llm = self.lib.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=n_batch,
            n_ubatch=n_batch,
            n_gpu_layers=0,
            logits_all=False,
            verbose=False,
            **cache_types,
        )
        self.ctx, self.n_batch, self.n_vocab = self.llm.ctx, n_batch, self.llm.n_vocab()
        self.batch = self.lib.llama_batch_init(n_batch, 0, 1)

    def decode(self, ids: Sequence[int], start: int, outputs: str = "last") -> None:
        """Run ``ids`` at positions ``start…``, in chunks of n_batch; logits for the last token or all."""
        for offset in range(0, len(ids), self.n_batch):
            chunk = ids[offset : offset + self.n_batch]
            batch = self.batch
            batch.n_tokens = len(chunk)
            for i, token in enumerate(chunk):
                batch.token[i], batch.pos[i] = int(token), start + offset + i
                batch.n_seq_id[i], batch.seq_id[i][0] = 1, 0
                batch.logits[i] = outputs == "all" or offset + i == len(ids) - 1
            status = self.lib.llama_decode(self.ctx, batch)
            if status != 0:
                raise RuntimeError(f"llama_decode returned {status} at position {start + offset}")

    def logits(self, index: int = -1) -> np.ndarray:
        """The logits of output ``index`` of the last decode (−1: the last one), copied."""
        pointer = self.lib.llama_get_logits_ith(self.ctx, index)
        return np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).copy()

    def next_token(self) -> int:
        """Greedy: the argmax of the last decode's last logits."""
        pointer = self.lib.llama_get_logits_ith(self.ctx, -1)
        return int(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).argmax())

    def forget(self, start: int) -> None:
        """Drop the cached keys/values from position ``start`` on."""
        if not self.lib.llama_memory_seq_rm(self.lib.llama_get_memory(self.ctx), 0, start, -1):
            raise RuntimeError(f"llama.cpp could not drop the cache from position {start}")

    def close(self) -> None:
        if self.batch is not None:
            self.lib.llama_batch_free(self.batch)
            self.batch = None
        self.llm.close()


def llamacpp_logits(path: str | Path, ids: Sequence[int], threads: int = 1, exact_cache: bool = True) -> np.ndarray:
    """llama.cpp's logits (len(ids), vocab) for ``ids`` from position 0, causal (for parity tests)."""
    size = max(len(ids), 16)
    decoder = LlamaCppDecoder(path, n_ctx=size, threads=threads, n_batch=size, exact_cache=exact_cache)
    try:
        decoder.decode(ids, 0, outputs="all")
        return np.stack([decoder.logits(i) for i in range(len(ids))])
    finally:
        decoder.close()


def stand_in_prefix(length: int, vocab_size: int) -> list[int]:
    """Token ids that fill the cache where moonlet holds BOS + the image (llama.cpp gets no image)."""
    return [(17 * i + 1) % vocab_size for i in range(length)]


def measure_decoder(
    decoder: LlamaCppDecoder, prompt: Sequence[int], new_tokens: int, prefix_len: int, repeats: int, warmup: int
) -> dict:
    """First-token time (prefill of ``prompt`` after ``prefix_len`` cached tokens, then the greedy
    first token) and batch-1 decode tokens/s (median interval over ``new_tokens`` greedy tokens)."""
    if new_tokens < 2:
        raise ValueError("--new-tokens: the llama.cpp route needs at least 2 to time decode steps")
    if repeats < 1:
        raise ValueError("--repeats: at least 1")
    decoder.forget(0)
    if prefix_len:
        decoder.decode(stand_in_prefix(prefix_len, decoder.n_vocab), 0)

    def first_token() -> int:
        decoder.forget(prefix_len)
        decoder.decode(prompt, prefix_len)
        return decoder.next_token()

    first_token_ms = 1e3 * median_time(first_token, CPU, repeats, warmup)
    intervals = []
    for run in range(warmup + repeats):
        token, position = first_token(), prefix_len + len(prompt)
        stamps = [time.perf_counter()]
        for _ in range(new_tokens - 1):
            decoder.decode([token], position)
            token, position = decoder.next_token(), position + 1
            stamps.append(time.perf_counter())
        if run >= warmup:
            intervals += step_intervals(stamps)
    return {"first_token_ms": first_token_ms, "decode_tok_s": 1.0 / statistics.median(intervals)}


def measure_llamacpp(text: TextDecoder, kinds: Sequence[str], plan: Plan, threads: int) -> dict:
    """Export ``text`` once per GGUF type into a temporary directory and measure each in llama.cpp."""
    prefix_len = plan.config.prefix_len
    n_ctx = prefix_len + len(plan.prompt) + plan.new_tokens
    if n_ctx > text.config.max_context:
        raise ValueError(f"--context {text.config.max_context}: the llama.cpp run needs {n_ctx} positions")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="moonlet-gguf-") as folder:
        for kind in kinds:
            path = write_gguf(text, Path(folder) / f"text-{kind}.gguf", kind)
            started = time.perf_counter()
            decoder = LlamaCppDecoder(path, n_ctx=n_ctx, threads=threads)
            load_s = time.perf_counter() - started
            try:
                figures = measure_decoder(decoder, plan.prompt, plan.new_tokens, prefix_len, plan.repeats, plan.warmup)
            finally:
                decoder.close()
            runs[kind] = {**figures, "file_mb": path.stat().st_size / 2**20, "load_s": load_s}
            plan.log(
                f"llama.cpp {kind}: first token {figures['first_token_ms']:.1f} ms, "
                f"decode {figures['decode_tok_s']:.1f} tokens/s"
            )
            path.unlink()
    return {
        "threads": threads,
        "prefix_tokens": prefix_len,
        "prompt_tokens": len(plan.prompt),
        "new_tokens": plan.new_tokens,
        "decode": "greedy, batch 1",
        "version": getattr(llama_cpp_module(), "__version__", None),
        "runs": runs,
    }
