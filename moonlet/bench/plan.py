"""What to measure: the inputs both routes share (crops, a prompt) and their settings."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import numpy as np
import torch

from ..config import MoondreamConfig
from ..image import Crops
from .measure import free_bytes, median_time

QUESTION_IDS = (1841, 318, 287, 428, 2939, 30)  # a short question's worth of token ids


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
