"""The position probe: where does a two-object relation get lost between the picture and the answer?

For every ordered pair of objects that colour + shape name uniquely in a generated scene, and for
each of the four directions that the centres settle (more than ``margin`` apart), the model is asked
"Is the A <relation> the B?" in one packed pass. Reported:

- **accuracy** of the Yes/No answer per direction (and the share of "Yes");
- **image tokens → place**: ridge read-outs of each object's centre (x, y) from the vision tower's
  feature at the object's centre patch and from the projected image token the decoder reads there
  (the place must survive the projection for the decoder to compare it);
- **noun tokens → place**: after each text block, read-outs of (x_A, y_A, x_B, y_B) from the hidden
  state at the last token of A's and of B's name (does the question pick up where the named object is?).

Read-outs are fitted on the first ``fit_share`` of the scenes and scored (R²) on the rest.

    python -m moonlet.train.position_probe MODEL_DIR --data DIR [--scenes 200] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..checkpoints.loading import load_model
from ..data.facts import DIRECTIONS
from ..data.phrasing import RELATIONS
from ..prompts import PromptBuilder
from .batch import pack
from .dense import read_truth
from .objective import packed_hidden
from .probe import ridge_probe
from .sequences import SequenceBuilder


@dataclass(frozen=True)
class PositionQuestion:
    text: str
    answer: bool
    a: int  # object indices in the scene
    b: int
    direction: str


def position_questions(scene: dict, margin: float = 0.05) -> list[PositionQuestion]:
    """Every settled "Is the A <relation> the B?" of a scene's uniquely named pairs, in all four
    directions (the relation's first phrasing)."""
    objects = scene["objects"]
    names = Counter((o["colour"], o["shape"]) for o in objects)
    unique = [i for i, o in enumerate(objects) if names[o["colour"], o["shape"]] == 1]
    out = []
    for i in unique:
        for j in unique:
            if i == j:
                continue
            (xi, yi), (xj, yj) = objects[i]["point_norm"], objects[j]["point_norm"]
            for direction in DIRECTIONS:
                gap = {"left": xj - xi, "right": xi - xj, "above": yj - yi, "below": yi - yj}[direction]
                if abs(gap) <= margin:
                    continue
                a, b = objects[i], objects[j]
                text = f"Is the {a['colour']} {a['shape']} {RELATIONS[direction][0]} the {b['colour']} {b['shape']}?"
                out.append(PositionQuestion(text, gap > 0, i, j, direction))
    return out


def _name_end(tokenizer, prompt: list[int], question: str, upto: str) -> int:
    """Slot of the last token of ``question[:end of upto]`` within ``prompt``."""
    ids = tokenizer.encode(question)
    offset = next(k for k in range(len(prompt)) if prompt[k : k + len(ids)] == ids)
    end = question.index(upto) + len(upto)
    return offset + len(tokenizer.encode(question[:end])) - 1


@torch.no_grad()
def collect(net, tokenizer, truth: list[tuple[str, dict]], margin: float = 0.05) -> dict[str, np.ndarray]:
    """One packed forward pass per scene; arrays of what the report reads out."""
    cfg = net.config
    builder = SequenceBuilder(cfg, PromptBuilder(cfg.tokenizer, tokenizer))
    grid = cfg.vision.grid_size
    yes, no = tokenizer.encode("Yes")[0], tokenizer.encode("No")[0]
    blocks: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: blocks.append(o[0])) for b in net.text.blocks]
    rows: dict[str, list] = {k: [] for k in ("token", "feature", "place", "place_scene")}
    rows.update({k: [] for k in ("correct", "said_yes", "direction", "scene", "coords", "noun_a", "noun_b")})
    try:
        for index, (image, scene) in enumerate(truth):
            questions = position_questions(scene, margin)
            if not questions:
                continue
            prompts = [builder.prompts.query(q.text) for q in questions]
            seqs = [builder.text(p, "Yes" if q.answer else "No", "query_position") for p, q in zip(prompts, questions)]
            crops = net.crops(image)
            batch = pack([(crops.normalized(), crops.tiling, seqs)], cfg.prefix_len)
            blocks.clear()
            hidden, features, image_tokens = packed_hidden(net, batch)
            logits = net.logits(hidden)[0]
            layers = torch.stack([h[cfg.prefix_len :] for h in blocks])  # n_blocks, L, dim
            for obj in scene["objects"]:
                x, y = obj["point_norm"]
                patch = min(int(y * grid), grid - 1) * grid + min(int(x * grid), grid - 1)
                rows["token"].append(image_tokens[0, patch].numpy())
                rows["feature"].append(features[0, patch].numpy())
                rows["place"].append((x, y))
                rows["place_scene"].append(index)
            start = 0
            for q, prompt, seq in zip(questions, prompts, seqs):
                slot = start + len(prompt) - 1  # predicts the answer's first token
                said_yes = bool(logits[slot, yes] > logits[slot, no])
                a, b = scene["objects"][q.a], scene["objects"][q.b]
                rows["correct"].append(said_yes == q.answer)
                rows["said_yes"].append(said_yes)
                rows["direction"].append(q.direction)
                rows["scene"].append(index)
                rows["coords"].append((*a["point_norm"], *b["point_norm"]))
                a_end = start + _name_end(tokenizer, prompt, q.text, f"{a['colour']} {a['shape']}")
                b_end = start + _name_end(tokenizer, prompt, q.text, q.text[:-1])
                rows["noun_a"].append(layers[:, a_end].numpy())
                rows["noun_b"].append(layers[:, b_end].numpy())
                start += len(seq)
    finally:
        for hook in hooks:
            hook.remove()
    return {k: np.array(v) for k, v in rows.items()}


def r_squared(predicted: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Per column."""
    return 1 - ((predicted - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0).clip(min=1e-12)


def _read_out(x: np.ndarray, y: np.ndarray, scene: np.ndarray, cut: int, alpha: float) -> list[float]:
    fit, score = scene < cut, scene >= cut
    predicted = ridge_probe(*(torch.from_numpy(v).double() for v in (x[fit], y[fit], x[score])), alpha=alpha)
    return [round(float(v), 3) for v in r_squared(predicted.numpy(), y[score])]


def report(rows: dict[str, np.ndarray], fit_share: float = 0.7, alpha: float = 1.0) -> dict:
    """Accuracy per direction and the R² of each read-out (fitted on scenes before the cut)."""
    if not len(rows["correct"]):
        raise ValueError("no position questions: the probe needs scenes with two or more uniquely named objects")
    cut = int(fit_share * (rows["scene"].max() + 1))
    out = {
        "questions": len(rows["correct"]),
        "accuracy": round(float(rows["correct"].mean()), 3),
        "yes_share": round(float(rows["said_yes"].mean()), 3),
        "accuracy_by_direction": {
            d: round(float(rows["correct"][rows["direction"] == d].mean()), 3)
            for d in DIRECTIONS
            if (rows["direction"] == d).any()
        },
    }
    for name in ("feature", "token"):
        out[f"{name}_place_r2"] = _read_out(rows[name], rows["place"], rows["place_scene"], cut, alpha)
    for name in ("noun_a", "noun_b"):
        out[f"{name}_r2_by_block"] = [
            _read_out(rows[name][:, block], rows["coords"], rows["scene"], cut, alpha)
            for block in range(rows[name].shape[1])
        ]
    return out


def format_report(result: dict) -> str:
    by_direction = ", ".join(f"{d} {v:.3f}" for d, v in result["accuracy_by_direction"].items())
    lines = [
        f"{result['questions']} position questions: accuracy {result['accuracy']:.3f} ({by_direction}); "
        f"'Yes' {result['yes_share']:.3f}",
        "R² of (x, y) at the object's centre patch: vision feature {}, image token (projected) {}".format(
            *(result[f"{k}_place_r2"] for k in ("feature", "token"))
        ),
    ]
    for name, label in (("noun_a", "A's name"), ("noun_b", "B's name")):
        for block, r2 in enumerate(result[f"{name}_r2_by_block"], start=1):
            lines.append(f"R² at {label} after block {block}: xA {r2[0]} yA {r2[1]} xB {r2[2]} yB {r2[3]}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m moonlet.train.position_probe", description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model directory (config.json, model.safetensors, tokenizer.json)")
    parser.add_argument("--data", required=True, type=Path, help="a generated dataset with truth/")
    parser.add_argument("--scenes", type=int, default=200, help="first N scenes of --data")
    parser.add_argument("--margin", type=float, default=0.05, help="skip directions whose centres are this close")
    parser.add_argument("--alpha", type=float, default=10.0, help="ridge strength of the read-outs")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    net, tokenizer, _ = load_model(args.model, dtype="float32")
    net.eval()
    truth = list(read_truth(args.data).items())[: args.scenes]
    if not truth:
        raise SystemExit(f"{args.data}: no ground truth (truth/*.jsonl); make the data with moonlet data generate")
    result = report(collect(net, tokenizer, truth, args.margin), alpha=args.alpha)
    print(format_report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
