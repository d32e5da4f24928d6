"""What a training run is: its configuration (a frozen dataclass, also the ``moonlet train`` flags),
the learning-rate schedule, which parameters train, and their optimiser groups."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..modeling.model import MoondreamModel
from .lora import add_lora
from .objective import parse_task_weights

MODES = ("full", "text", "region", "lora")
SCHEDULES = ("cosine", "wsd")


@dataclass(frozen=True)
class TrainConfig:
    data: str | tuple[str, ...]  # one dataset, or several used together
    out: str
    steps: int = 1000
    batch_size: int = 8  # images per optimizer step (all ranks together, before accumulation)
    grad_accum: int = 1
    lr: float = 3e-4
    lr_vision: float | None = None  # default: lr
    lr_projection: float | None = None  # default: lr (the reference recipe uses higher)
    lr_region: float | None = None
    weight_decay: float = 0.01
    warmup: int = 50
    min_lr_ratio: float = 0.1
    # "cosine": warm-up, then cosine decay to min_lr_ratio over the run. "wsd" (warmup-stable-decay):
    # warm-up, a constant rate, and a linear cool-down to min_lr_ratio over the last decay_steps; a
    # run can be extended later from its last pre-cool-down checkpoint at no loss.
    schedule: str = "cosine"
    decay_steps: int = 0
    task_weights: str = ""  # e.g. "caption=0.2,caption_long=0.05,query_read=3" (moonlet.train.objective.TASKS)
    clip: float = 1.0
    seed: int = 0
    mode: str = "full"
    lora_rank: int = 8
    lora_alpha: float = 16.0
    eval_data: str | None = None
    eval_every: int = 200
    eval_images: int = 32
    dense_weight: float = 0.0  # weight of the dense auxiliary loss on the vision tokens (moonlet.train.dense); 0: off
    # share of the dense colour/shape losses on the patches that hold an object (the rest on background);
    # 0: a plain mean over patches
    dense_object_share: float = 0.0
    # weight of the per-patch glyph loss (which letters and digits lie in each text patch); 0: no glyph head
    dense_glyph_weight: float = 0.0
    # weight of the loss that makes each image token's patch place (x, y) linearly readable from the
    # decoder's image tokens (moonlet.train.dense); 0: off
    dense_place_weight: float = 0.0
    # A compact copy of the resumable state (float32 weights, bfloat16 moments), overwritten at every
    # save and resumed from when the run directory has none: training across machines and sessions.
    state_dir: str | None = None
    stop_after_min: float = 0.0  # save and stop after this many minutes of training (0: no limit)
    dev_data: str | None = None  # a generated dev set (its own seed): scored by greedy decoding every eval_every steps
    dev_scenes: int = 100
    save_every: int = 500
    log_every: int = 10
    rows_per_image: int | None = None  # sample this many of an image's rows per step (default: all)
    region_weight: float = 1.0  # weight of coordinate/size targets against token targets
    bin_sigma: float = 0.0  # Gaussian soft labels for region bins, in bins (0: one-hot)
    progress: bool = True

    def validate(self) -> TrainConfig:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("steps, batch_size and grad_accum must be positive")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        if not 0 <= self.decay_steps <= self.steps - self.warmup:
            raise ValueError(
                f"decay_steps {self.decay_steps} must be in [0, steps - warmup = {self.steps - self.warmup}]"
            )
        for name in ("dense_object_share", "dense_glyph_weight", "dense_place_weight"):
            if getattr(self, name) and not self.dense_weight:
                raise ValueError(f"{name} needs the dense head: set dense_weight > 0")
        parse_task_weights(self.task_weights)
        return self


def learning_rate_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio`` or (wsd) constant and a linear cool-down."""
    if step < config.warmup:
        return (step + 1) / config.warmup
    if config.schedule == "wsd":
        into_decay = step - (config.steps - config.decay_steps)
        if into_decay < 0:
            return 1.0
        return 1.0 - (1.0 - config.min_lr_ratio) * (into_decay + 1) / config.decay_steps
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def select_trainable(model: MoondreamModel, config: TrainConfig) -> None:
    if config.mode == "lora":
        add_lora(model, config.lora_rank, config.lora_alpha)
        return
    model.requires_grad_(config.mode == "full")
    if config.mode == "text":
        model.text.requires_grad_(True)
    elif config.mode == "region":
        if model.region is None:
            raise ValueError("this model has no region heads to train")
        model.region.requires_grad_(True)


def parameter_groups(model: MoondreamModel, config: TrainConfig) -> list[dict]:
    """One AdamW group per module family; no weight decay on biases, norms and embeddings tables."""
    rates = {
        "projection": config.lr_projection or config.lr,
        "vision": config.lr_vision or config.lr,
        "region": config.lr_region or config.lr,
        "text": config.lr,
    }
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        family = "projection" if name.startswith("vision.proj_mlp") else name.split(".")[0]
        decay = param.dim() >= 2 and "wte" not in name and "pos_emb" not in name and "features" not in name
        groups.setdefault((family, decay), []).append(param)
    return [
        {
            "params": params,
            "lr": rates[family],
            "base_lr": rates[family],
            "weight_decay": config.weight_decay if decay else 0.0,
            "name": f"{family}{'' if decay else '.no_decay'}",
        }
        for (family, decay), params in sorted(groups.items())
    ]
