"""The training loop: AdamW with per-module learning rates, warm-up + cosine schedule,
gradient accumulation and clipping, bf16 autocast on GPU, periodic evaluation, safetensors
checkpoints with exact resume, a JSONL metrics log, and data parallelism under torchrun.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..modeling.model import MoondreamModel
from ..progress import progress_bar
from ..prompts import PromptBuilder
from .batch import pack
from .checkpoint import has_training_state, latest_checkpoint, load_training_state, save_training_state
from .data import BatchOrder, ImageGroup, load_groups
from .dense import DenseHead, batch_targets, read_truth
from .dev_eval import BAR_KEYS, dev_samples, evaluate_dev
from .lora import merge_lora
from .objective import LossWeights, batch_weight, losses, parse_task_weights
from .options import TrainConfig, learning_rate_factor, parameter_groups, select_trainable
from .sequences import SequenceBuilder

METRICS_LOG = "metrics.jsonl"  # one JSON line per logged step, in the run directory (and the state)


class TrainingModule(nn.Module):
    """Wraps the model so that DDP sees the whole loss computation as one forward()."""

    def __init__(self, model: MoondreamModel, weights: LossWeights, dense_head: DenseHead | None = None):
        super().__init__()
        self.model = model
        self.weights = weights
        self.dense_head = dense_head

    def forward(self, batch):
        return losses(self.model, batch, self.weights, self.dense_head)


class Trainer:
    def __init__(self, model: MoondreamModel, tokenizer, config: TrainConfig):
        self.config = config.validate()
        self.rank = int(os.environ.get("RANK", 0))
        self.world = int(os.environ.get("WORLD_SIZE", 1))
        if self.world > 1 and not torch.distributed.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            torch.distributed.init_process_group(backend)
        if config.batch_size % self.world:
            raise ValueError(f"batch size {config.batch_size} must divide evenly across {self.world} processes")
        self.model = model
        self.tokenizer = tokenizer
        self.device = model.device
        select_trainable(model, config)
        model.train()
        self.weights = LossWeights(config.region_weight, config.bin_sigma, parse_task_weights(config.task_weights))
        self.dense_head, self.truth = None, {}
        if config.dense_weight > 0:
            if model.config.vision.crop_scheme != "single":
                raise ValueError("dense_weight needs a single-crop model (vision.crop_scheme 'single')")
            self.truth = read_truth(config.data)
            self.dense_head = DenseHead(
                model.config.vision,
                config.seed,
                config.dense_object_share,
                config.dense_glyph_weight,
                config.dense_place_weight,
            ).to(self.device)
        self.module: nn.Module = TrainingModule(model, self.weights, self.dense_head)
        # every parameter of the run by name: the model's, then the training-only head's
        self.parameters_by_name = dict(model.named_parameters())
        if self.dense_head is not None:
            self.parameters_by_name |= {f"dense_head.{n}": p for n, p in self.dense_head.named_parameters()}
        if self.world > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.module = nn.parallel.DistributedDataParallel(
                self.module, device_ids=device_ids, find_unused_parameters=True
            )
        groups = parameter_groups(model, config)
        if self.dense_head is not None:
            head = list(self.dense_head.parameters())
            groups.append({"params": head, "lr": config.lr, "base_lr": config.lr, "weight_decay": 0.0, "name": "dense"})
        self.optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.95))
        self.builder = SequenceBuilder(model.config, PromptBuilder(model.config.tokenizer, tokenizer))
        self.groups = load_groups(config.data)
        self.eval_groups = load_groups(config.eval_data)[: config.eval_images] if config.eval_data else []
        self.dev = dev_samples(config.dev_data, config.dev_scenes) if config.dev_data and self.is_main else []
        self.order = BatchOrder(len(self.groups), config.batch_size * config.grad_accum, config.seed)
        self.out = Path(config.out)
        self.step = 0
        self.stopped_early = False  # fit() stopped by stop_after_min before the last step
        self.autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self.device.type == "cuda" and torch.cuda.is_bf16_supported()
            else nullcontext()
        )

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # --- data -----------------------------------------------------------------------------

    def _prepare(self, group: ImageGroup, rows=None):
        crops = self.model.crops(group.image)
        sequences = [self.builder.from_row(row) for row in (rows or group.rows)]
        return crops.normalized().to(self.model.dtype), crops.tiling, sequences

    def _rows(self, step: int, index: int) -> list:
        """The rows of group ``index`` used at ``step``: all, or a sample fixed by (seed, step, index)."""
        rows = self.groups[index].rows
        k = self.config.rows_per_image
        if k is None or k >= len(rows):
            return list(rows)
        chosen = np.random.default_rng([self.config.seed, step, index]).choice(len(rows), k, replace=False)
        return [rows[i] for i in sorted(chosen)]

    def _micro_batches(self, step: int):
        """This rank's images for ``step``, split into ``grad_accum`` packed micro-batches."""
        chosen = self.order.batch(step, self.rank, self.world)
        per_micro = max(1, len(chosen) // self.config.grad_accum)
        for start in range(0, len(chosen), per_micro):
            indices = chosen[start : start + per_micro]
            batch = pack(
                [self._prepare(self.groups[i], self._rows(step, i)) for i in indices], self.model.config.prefix_len
            )
            if self.dense_head is not None:
                batch.dense = batch_targets(
                    [self._truth(self.groups[i]) for i in indices],
                    self.model.config.vision.grid_size,
                    glyphs=self.dense_head.reads_glyphs,
                )
            yield batch.to(self.device)

    def _truth(self, group: ImageGroup) -> dict:
        scene = self.truth.get(str(Path(group.image).resolve()))
        if scene is None:
            raise ValueError(
                f"dense_weight needs each image's ground truth (truth/ of a generated dataset); none for {group.image}"
            )
        return scene

    # --- loop -----------------------------------------------------------------------------

    def resume(self) -> bool:
        """Continue from the run directory's latest checkpoint, else from ``state_dir``'s state."""
        checkpoint = latest_checkpoint(self.out)
        if checkpoint is None and self.config.state_dir and has_training_state(Path(self.config.state_dir)):
            checkpoint = Path(self.config.state_dir)
        if checkpoint is None:
            return False
        # the training-only dense head may gain parts (e.g. glyphs) when a run resumes; the model may not
        state = load_training_state(
            checkpoint, self.parameters_by_name, self.optimizer, lambda name: name.startswith("dense_head.")
        )
        self.step = state["step"]
        return True

    def train_step(self) -> dict[str, float]:
        """One optimiser step over this rank's micro-batches. The loss is the weighted mean over
        every row of the global batch (all micro-batches, all ranks), so accumulation and data
        parallelism change nothing but the speed."""
        self._set_lr()
        self.optimizer.zero_grad(set_to_none=True)
        micro = list(self._micro_batches(self.step))
        weight = torch.tensor(
            [sum(batch_weight(batch, self.weights) for batch in micro)], dtype=torch.float64, device=self.device
        )
        if self.world > 1:
            torch.distributed.all_reduce(weight)
        total_weight = max(float(weight), 1e-9)
        totals: dict[str, float] = {"loss": 0.0}
        for index, batch in enumerate(micro):
            sync = index == len(micro) - 1 or not hasattr(self.module, "no_sync")
            with nullcontext() if sync else self.module.no_sync(), self.autocast:
                parts = self.module(batch)
                # DDP averages gradients over ranks: scale by the world size to get the global sum's gradient
                objective = parts["loss_sum"] * (self.world / total_weight)
                if "dense" in parts:  # a mean over this rank's images; DDP averages it over ranks
                    objective = objective + self.config.dense_weight * parts["dense"] / len(micro)
                objective.backward()
            totals["loss"] += float(parts["loss_sum"].detach()) / total_weight
            for key, value in parts.items():
                if key not in ("loss", "loss_sum"):
                    totals[key] = totals.get(key, 0.0) + float(value.detach()) / len(micro)
        if self.world > 1:  # the global batch's loss; the other parts stay rank-local
            loss = torch.tensor([totals["loss"]], dtype=torch.float64, device=self.device)
            torch.distributed.all_reduce(loss)
            totals["loss"] = float(loss)
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        totals["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.config.clip))
        self.optimizer.step()
        self.step += 1
        return totals

    def _out_of_time(self, started: float) -> bool:
        """Whether the time limit has passed, agreed by every rank (rank 0's clock decides)."""
        late = torch.tensor([float(time.time() - started > 60 * self.config.stop_after_min)], device=self.device)
        if self.world > 1:
            torch.distributed.broadcast(late, src=0)
        return bool(late.item())

    def _set_lr(self) -> None:
        factor = learning_rate_factor(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = group["base_lr"] * factor

    @torch.no_grad()
    def evaluate(self) -> float | None:
        if not self.eval_groups:
            return None
        self.model.eval()
        total = 0.0
        for start in range(0, len(self.eval_groups), self.config.batch_size):
            items = [self._prepare(g) for g in self.eval_groups[start : start + self.config.batch_size]]
            with self.autocast:
                batch = pack(items, self.model.config.prefix_len).to(self.device)
                total += float(losses(self.model, batch, self.weights)["loss"]) * len(items)
        self.model.train()
        return total / len(self.eval_groups)

    def save(self) -> Path | None:
        if not self.is_main:
            return None
        extra = {"config": asdict(self.config)}
        if self.config.state_dir:
            state = Path(self.config.state_dir)
            save_training_state(
                state,
                self.parameters_by_name,
                self.optimizer,
                self.step,
                extra,
                moments_dtype=torch.bfloat16,
                pointer=False,
            )
            log = self.out / METRICS_LOG
            if log.is_file():  # the history travels with the state: the stage gates and the curves read it
                shutil.copyfile(log, state / METRICS_LOG)
        return save_training_state(
            self.out / f"checkpoint-{self.step:07d}", self.parameters_by_name, self.optimizer, self.step, extra
        )

    def export(self, directory: Path | None = None, dtype: torch.dtype | None = None) -> Path | None:
        """Write the trained model as a loadable checkpoint (LoRA adapters merged)."""
        from ..checkpoints.save import save_pretrained

        if not self.is_main:
            return None
        if self.config.mode == "lora":
            merge_lora(self.model)
        self.model.eval()
        return save_pretrained(ModelWithTokenizer(self.model, self.tokenizer), directory or self.out / "model", dtype)

    def fit(self, resume: bool = False) -> list[dict]:
        if resume:
            self.resume()
        self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / METRICS_LOG
        kept = Path(self.config.state_dir) / METRICS_LOG if self.config.state_dir else None
        if resume and self.is_main and not log_path.exists() and kept is not None and kept.is_file():
            shutil.copyfile(kept, log_path)  # a fresh machine: the log goes on from the state's copy
        history = []
        shown = self.config.progress and self.is_main
        progress = progress_bar(self.config.steps, self.step, "train", shown, unit="step")
        started = time.time()
        shown_dev: dict[str, str] = {}
        self.stopped_early = False
        while self.step < self.config.steps:
            if self.config.stop_after_min and self._out_of_time(started):
                self.stopped_early = True
                self.save()
                break
            metrics = self.train_step()
            metrics["step"] = self.step
            metrics["lr"] = self.optimizer.param_groups[0]["lr"]
            metrics["elapsed_s"] = round(time.time() - started, 3)
            metrics["images"] = self.step * self.config.batch_size * self.config.grad_accum
            evaluating = bool(self.config.eval_every) and self.step % self.config.eval_every == 0
            if evaluating and self.eval_groups:
                metrics["eval_loss"] = self.evaluate()
            if evaluating and self.dev:
                metrics.update(evaluate_dev(self.model, self.tokenizer, self.dev))
                shown_dev = {short: f"{metrics[key]:.2f}" for key, short in BAR_KEYS.items() if key in metrics}
            history.append(metrics)
            if self.is_main and (
                self.step % self.config.log_every == 0 or self.step == self.config.steps or evaluating
            ):
                with log_path.open("a") as log:
                    log.write(json.dumps(metrics) + "\n")
            progress.update(1)
            progress.set_postfix(loss=f"{metrics['loss']:.4f}", **shown_dev)
            if self.config.save_every and self.step % self.config.save_every == 0:
                self.save()
        progress.close()
        return history


@dataclass
class ModelWithTokenizer:
    """A network and its tokenizer, in the shape ``save_pretrained`` saves (as a ``Moondream`` is)."""

    model: MoondreamModel
    tokenizer: object
