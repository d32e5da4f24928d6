"""The one-object pointing probe: does a vision tower trained from scratch carry where things are?

A model of the ``moonlet-nano`` profile, with the vision options of one variant, is trained from
scratch on pointing alone over one-object scenes, then scored on fresh scenes two ways:

- **decoder pointing**: ``point(image, object)`` through the engine, a hit when the point falls
  inside the object's true box (what a user gets);
- **linear probes** from the frozen vision tokens to the object's centre (ridge regression, fitted
  on training scenes): on the flattened tokens (position available from the token index, as a
  decoder with a perfect positional read-out would see it) and on their mean (position only
  where the token *values* carry it, as an attention average sees it).

Good probes with poor decoder pointing put the bottleneck in the decoder; poor probes, in the tower.

    python -m moonlet.train.probe --train DIR --test DIR --variant conv-sincos --steps 800 --out probe.jsonl
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from ..api import Moondream
from ..checkpoints.loading import EMBEDDED_DIR, EMBEDDED_MODEL
from ..eval.points import inside
from ..modeling.init import build_random
from ..profiles import PROFILES
from ..tokenizer import Tokenizer
from .trainer import TrainConfig, Trainer

# Vision options per variant; every other field is the moonlet-nano profile's.
CONV = {"stem": "conv", "stem_channels": (32, 64), "enc_patch_size": 16}
VARIANTS: dict[str, dict] = {
    "baseline": {},
    "patch-norm": {"patch_norm": True},
    "sincos": {"patch_norm": True, "position_table": "sincos"},
    "coordconv": {"patch_norm": True, "coord_channels": True},
    "conv": {**CONV, "crop_size": 144, "patch_norm": True},
    "conv-sincos": {**CONV, "crop_size": 144, "patch_norm": True, "position_table": "sincos"},
    "conv-sincos-coord": {
        **CONV,
        "crop_size": 144,
        "patch_norm": True,
        "position_table": "sincos",
        "coord_channels": True,
    },
    "conv-sincos-192": {**CONV, "crop_size": 192, "patch_norm": True, "position_table": "sincos"},
}
# Variants that also train the dense auxiliary head (moonlet.train.dense) with this weight.
DENSE_VARIANTS = {"conv-sincos+dense": ("conv-sincos", 1.0), "baseline+dense": ("baseline", 1.0)}


def scenes(data: Path) -> list[dict]:
    """Ground truth of every one-object scene of a generated dataset, with its image path."""
    out = []
    for path in sorted((data / "truth").glob("*.jsonl")):
        for line in path.read_text().splitlines():
            scene = json.loads(line)
            if len(scene["objects"]) != 1:
                raise ValueError(f"{path}: the probe needs one-object scenes (moonlet data generate --objects 1)")
            scene["image"] = str((data / scene["image"]).resolve())
            out.append(scene)
    return out


def object_name(scene: dict, index: int) -> str:
    """Alternate the shape alone and colour + shape, as users ask both."""
    obj = scene["objects"][0]
    return obj["shape"] if index % 2 else f"{obj['colour']} {obj['shape']}"


def write_point_rows(train: list[dict], directory: Path) -> Path:
    path = directory / "points.jsonl"
    with path.open("w") as f:
        for index, scene in enumerate(train):
            point = scene["objects"][0]["point_norm"]
            f.write(
                json.dumps({"image": scene["image"], "object": object_name(scene, index), "points": [point]}) + "\n"
            )
    return path


@torch.no_grad()
def vision_tokens(model, images: list[str]) -> torch.Tensor:
    """(n, grid², enc_dim) frozen vision-tower outputs of each image's crop."""
    features = []
    for image in images:
        crops = model.crops(image)
        features.append(model.vision(crops.normalized().to(model.dtype))[0])
    return torch.stack(features)


def ridge_probe(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Ridge regression in its dual form (features may outnumber samples): test predictions."""
    mean, scale = train_x.mean(0), train_x.std(0).clamp(min=1e-6)
    a, b = (train_x - mean) / scale, (test_x - mean) / scale
    gram = a @ a.T + alpha * a.shape[1] ** 0.5 * torch.eye(a.shape[0], dtype=a.dtype)
    y_mean = train_y.mean(0)
    dual = torch.linalg.solve(gram, train_y - y_mean)
    return b @ (a.T @ dual) + y_mean


def probe_scores(model, train: list[dict], test: list[dict], n_fit: int) -> dict:
    fit = train[:n_fit]
    train_tokens = vision_tokens(model, [s["image"] for s in fit]).double()
    test_tokens = vision_tokens(model, [s["image"] for s in test]).double()
    train_y = torch.tensor([s["objects"][0]["point_norm"] for s in fit], dtype=torch.float64)
    boxes = [s["objects"][0]["box_norm"] for s in test]
    truth = torch.tensor([s["objects"][0]["point_norm"] for s in test], dtype=torch.float64)
    out = {}
    for name, reduce in (("flat", lambda t: t.flatten(1)), ("mean", lambda t: t.mean(1))):
        predicted = ridge_probe(reduce(train_tokens), train_y, reduce(test_tokens))
        out[f"probe_{name}_hit"] = float(np.mean([inside(p.tolist(), b) for p, b in zip(predicted, boxes)]))
        out[f"probe_{name}_error"] = float((predicted - truth).abs().mean())
    features = test_tokens
    out["token_rms"] = float(features.pow(2).mean().sqrt())
    return out


@torch.no_grad()
def decoder_pointing(moondream: Moondream, test: list[dict]) -> dict:
    hits, answered = 0, 0
    for index, scene in enumerate(test):
        points = moondream.point(scene["image"], object_name(scene, index), settings={"max_objects": 1})["points"]
        if points:
            answered += 1
            hits += inside((points[0]["x"], points[0]["y"]), scene["objects"][0]["box_norm"])
    return {"point_hit": hits / len(test), "point_answered": answered / len(test)}


def run_variant(args: argparse.Namespace, variant: str) -> dict:
    torch.manual_seed(args.seed)
    vision_variant, dense_weight = DENSE_VARIANTS.get(variant, (variant, 0.0))
    base = PROFILES["moonlet-nano"]
    config = replace(base, vision=replace(base.vision, **VARIANTS[vision_variant]))
    tokenizer = Tokenizer.from_file(EMBEDDED_DIR / EMBEDDED_MODEL / "tokenizer.json")
    model = build_random(config, seed=args.seed)
    train, test = scenes(Path(args.train)), scenes(Path(args.test))[: args.test_scenes]
    result = {
        "variant": variant,
        "dense_weight": dense_weight,
        "vision": {k: v for k, v in asdict(config.vision).items() if k in VARIANTS[vision_variant]},
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_scenes": len(train),
        "test_scenes": len(test),
        "threads": torch.get_num_threads(),
        "cpu": torch.backends.cpu.get_cpu_capability(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        data = write_point_rows(train, Path(tmp))
        if dense_weight:  # the head reads each image's ground truth beside the rows
            (Path(tmp) / "truth").mkdir()
            with (Path(tmp) / "truth" / "scenes.jsonl").open("w") as f:
                f.writelines(json.dumps(scene) + "\n" for scene in train)
        trainer = Trainer(
            model,
            tokenizer,
            TrainConfig(
                data=str(data),
                out=str(Path(tmp) / "run"),
                steps=args.steps,
                batch_size=args.batch_size,
                lr=args.lr,
                warmup=min(100, args.steps // 10),
                eval_every=0,
                save_every=0,
                log_every=max(1, args.steps // 20),
                region_weight=1.0,
                bin_sigma=args.bin_sigma,
                seed=args.seed,
                progress=False,
                dense_weight=dense_weight,
            ),
        )
        started = time.perf_counter()
        history = trainer.fit()
        result["train_s"] = round(time.perf_counter() - started, 1)
    tail = history[-max(1, len(history) // 10) :]
    result["coord_loss_end"] = round(float(np.mean([h["coord"] for h in tail if "coord" in h])), 4)
    model.eval()
    result.update(decoder_pointing(Moondream(model, tokenizer), test))
    result.update(probe_scores(model, train, test, args.probe_fit))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moonlet.train.probe", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--train", required=True, help="one-object scenes to train on (moonlet data generate --objects 1)"
    )
    parser.add_argument("--test", required=True, help="fresh one-object scenes (another seed)")
    parser.add_argument(
        "--variant",
        action="append",
        choices=sorted(VARIANTS) + sorted(DENSE_VARIANTS),
        required=True,
        help="vision options to try (repeat for several)",
    )
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--bin-sigma", type=float, default=8.0)
    parser.add_argument("--test-scenes", type=int, default=300)
    parser.add_argument("--probe-fit", type=int, default=1500, help="training scenes the linear probes are fitted on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="append one JSON line per variant here")
    report_variants(parser.parse_args(argv), run_variant)
    return 0


def report_variants(args: argparse.Namespace, run) -> None:
    """``run(args, variant)`` for each ``args.variant``: one JSON line each, printed and appended to ``args.out``."""
    for variant in args.variant:
        line = json.dumps(run(args, variant))
        print(line, flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
