"""The tower probe: how well does a vision tower trained from scratch resolve objects by their size?

Only the vision tower of the ``moonlet-nano`` profile (with one variant's vision options) and the
dense auxiliary head (``moonlet.train.dense``) are trained, on the dense objective alone, over
generated scenes; no decoder runs, so a variant costs minutes. Scored on fresh scenes: at the patch
holding each object's centre, is the predicted shape / colour right, per object size (the box's
longer side as a share of the image). A tower that cannot tell a tiny star from a tiny hexagon
caps every decoder skill that needs it (shape questions, counting by shape, detection).

    python -m moonlet.train.tower_probe --train DIR --test DIR --variant v3 --variant v3-256 --steps 1500
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..image import make_crops, normalize
from ..modeling.init import build_random
from ..modeling.vision import VisionEncoder
from ..profiles import PROFILES
from .dense import COLOUR_CLASSES, SHAPE_CLASSES, DenseHead, batch_targets, read_truth
from .probe import report_variants

# Vision options per variant over the moonlet-nano profile's tower ("v3" is the profile's own).
VARIANTS: dict[str, dict] = {
    "v3": {},
    "v3-256": {"crop_size": 256},
    "v3-wide": {"stem_channels": (48, 96)},
    "v3-256-wide": {"crop_size": 256, "stem_channels": (48, 96)},
    "conv3": {"stem_channels": (32, 64, 128)},  # 8x down, then 2x2 patches: wider receptive fields
    "conv4": {"stem_channels": (32, 64, 128, 128)},  # 16x down: each token one stem cell
    "deep2": {"stem_depth": 2},  # a residual stride-1 convolution after each stride-2 one
    "deep3": {"stem_depth": 3},
    "conv3-deep2": {"stem_channels": (32, 64, 128), "stem_depth": 2},
}
# Size buckets: the box's longer side as a share of the image.
SIZE_BUCKETS = ((0.08, "tiny"), (0.16, "small"), (0.3, "medium"), (1.01, "large"))


def size_bucket(box: list[float]) -> str:
    side = max(box[2] - box[0], box[3] - box[1])
    return next(name for limit, name in SIZE_BUCKETS if side < limit)


def load_scenes(data: Path, vision, limit: int | None = None) -> tuple[np.ndarray, list[dict]]:
    """(n, S, S, 3) uint8 crops of the first ``limit`` scenes of a generated dataset, and their truth."""
    truth = list(read_truth(data).items())[:limit]
    pixels = np.stack([make_crops(path, vision).pixels[0] for path, _ in truth])
    return pixels, [scene for _, scene in truth]


def train_tower(args: argparse.Namespace, vision_config) -> tuple[VisionEncoder, DenseHead, float]:
    """The tower (initialised as a from-scratch model is) and the head, trained on the dense loss."""
    base = PROFILES["moonlet-nano"]
    tower = build_random(replace(base, vision=vision_config), seed=args.seed).vision
    head = DenseHead(vision_config, args.seed, object_share=args.object_share, glyph_weight=args.glyph_weight)
    pixels, scenes = load_scenes(Path(args.train), vision_config, args.train_scenes)
    params = [p for n, p in tower.named_parameters() if not n.startswith("proj_mlp")] + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.01)
    order = np.random.default_rng(args.seed)
    started = time.perf_counter()
    for step in range(args.steps):
        for group in optimizer.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / 100)
        chosen = np.sort(order.choice(len(scenes), args.batch_size, replace=False))
        targets = batch_targets([scenes[i] for i in chosen], vision_config.grid_size, glyphs=head.reads_glyphs)
        loss = head.loss(tower(normalize(pixels[chosen])), targets)["dense"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return tower, head, time.perf_counter() - started


@torch.no_grad()
def size_scores(tower: VisionEncoder, head: DenseHead, data: Path, vision_config) -> dict:
    """Shape and colour accuracy at each object's centre patch, per size bucket and overall; with a
    glyph head, ``glyph_top1``: the share of patches holding a character whose most likely glyph
    is one of them."""
    tower.eval()
    pixels, scenes = load_scenes(data, vision_config)
    grid = vision_config.grid_size
    hits: dict[str, list[int]] = {}
    glyph_hits = glyph_patches = 0
    for start in range(0, len(scenes), 32):
        tokens = tower(normalize(pixels[start : start + 32]))
        pred = head(tokens)
        if head.reads_glyphs:
            truth = batch_targets(scenes[start : start + 32], grid, glyphs=True).glyphs  # B, g, g, classes
            holding = truth.sum(-1) > 0
            best = head.glyph_logits(tokens).argmax(-1, keepdim=True)
            glyph_hits += int(truth.gather(-1, best)[..., 0][holding].sum())
            glyph_patches += int(holding.sum())
        for index, scene in enumerate(scenes[start : start + 32]):
            for obj in scene["objects"]:
                cx, cy = obj["point_norm"]
                gx, gy = min(int(cx * grid), grid - 1), min(int(cy * grid), grid - 1)
                shape_ok = SHAPE_CLASSES[int(pred["shape"][index, gy, gx].argmax())] == obj["shape"]
                colour_ok = COLOUR_CLASSES[int(pred["colour"][index, gy, gx].argmax())] == obj["colour"]
                for key in (size_bucket(obj["box_norm"]), "all"):
                    row = hits.setdefault(key, [0, 0, 0])
                    row[0] += shape_ok
                    row[1] += colour_ok
                    row[2] += 1
    out = {}
    for key, (shape_ok, colour_ok, n) in hits.items():
        out[f"shape_{key}"] = round(shape_ok / n, 3)
        out[f"colour_{key}"] = round(colour_ok / n, 3)
        out[f"objects_{key}"] = n
    if glyph_patches:
        out["glyph_top1"] = round(glyph_hits / glyph_patches, 3)
        out["glyph_patches"] = glyph_patches
    return out


def run_variant(args: argparse.Namespace, variant: str) -> dict:
    vision_config = replace(PROFILES["moonlet-nano"].vision, **VARIANTS[variant])
    tower, head, seconds = train_tower(args, vision_config)
    result = {
        "variant": variant,
        "vision": {k: v for k, v in asdict(vision_config).items() if k in VARIANTS[variant]},
        "tokens": vision_config.n_patches,
        "steps": args.steps,
        "train_scenes": args.train_scenes,
        "batch_size": args.batch_size,
        "object_share": args.object_share,
        "glyph_weight": args.glyph_weight,
        "train_s": round(seconds, 1),
        "threads": torch.get_num_threads(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    result.update(size_scores(tower, head, Path(args.test), vision_config))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moonlet.train.tower_probe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", required=True, help="generated scenes with truth/ (moonlet data generate)")
    parser.add_argument("--test", required=True, help="fresh generated scenes (another seed)")
    parser.add_argument(
        "--variant", action="append", choices=sorted(VARIANTS), required=True, help="repeat for several"
    )
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1.5e-3)
    parser.add_argument("--object-share", type=float, default=0.5, help="dense loss share on object patches")
    parser.add_argument("--glyph-weight", type=float, default=0.0, help="weight of the glyph loss (0: none)")
    parser.add_argument("--train-scenes", type=int, default=4000, help="scenes of --train kept in memory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="append one JSON line per variant here")
    report_variants(parser.parse_args(argv), run_variant)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
