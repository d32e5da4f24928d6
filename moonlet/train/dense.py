"""A dense auxiliary objective on the vision tokens, from the scenes' ground truth (training only).

Each patch of the (single-crop) patch grid predicts, from its own vision token:
- ``centre``: a heat map with a Gaussian bump at each object's centre (binary cross-entropy);
- ``colour`` / ``shape``: the class of the topmost object covering the patch centre, or background;
- ``text``: whether the patch centre lies in a rendered text's box;
- ``offset`` / ``size``: at the patch holding an object's centre, the centre's place inside the
  patch and the object's box width and height (L1);
- ``glyph`` (optional): on the patches of a text's box, which characters have their centre in the
  patch (multi-label binary cross-entropy over letters and digits), so the tower learns to read.
- ``place`` (optional): from the decoder's image tokens (after the projection), the place of the
  token's own patch, (x, y) of its centre (mean squared error through a linear read-out). The
  decoder's attention mixes the values of the tokens it looks at, so a place it is to compare must
  be readable from them linearly; without this the projection kept x and dropped y.

The head is a module of the training wrapper, not of the model: exports never contain it. It
teaches the tower colour, shape and place directly, instead of only through the decoder.
"""

from __future__ import annotations

import functools
import json
import string
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ..config import VisionConfig
from ..data.config import SHAPES
from ..data.fonts import text_layout
from ..data.palette import COLOURS

COLOUR_CLASSES = ("background", *COLOURS)
SHAPE_CLASSES = ("background", *SHAPES)
GLYPH_CLASSES = string.digits + string.ascii_uppercase + string.ascii_lowercase
GLYPH_INDEX = {char: index for index, char in enumerate(GLYPH_CLASSES)}
HEAT_SIGMA = 0.75  # patches


def read_truth(datasets) -> dict[str, dict]:
    """Resolved image path → ground-truth scene, for every generated dataset that has ``truth/``."""
    paths = [datasets] if isinstance(datasets, (str, Path)) else list(datasets)
    truth = {}
    for data in map(Path, paths):
        folder = data / "truth" if data.is_dir() else data.parent / "truth"
        for shard in sorted(folder.glob("*.jsonl")):
            for line in shard.read_text(encoding="utf-8").splitlines():
                scene = json.loads(line)
                truth[str((folder.parent / scene["image"]).resolve())] = scene
    return truth


@dataclass
class DenseTargets:
    """Per-patch targets of a batch of images, each (B, grid, grid[, 2])."""

    centre: torch.Tensor
    colour: torch.Tensor
    shape: torch.Tensor
    text: torch.Tensor
    at_centre: torch.Tensor  # bool: the patch holds an object's centre
    offset: torch.Tensor
    size: torch.Tensor
    glyphs: torch.Tensor | None = None  # (B, grid, grid, len(GLYPH_CLASSES)) multi-hot, when asked for

    def to(self, device) -> DenseTargets:
        return DenseTargets(**{k: None if v is None else v.to(device) for k, v in self.__dict__.items()})


def scene_targets(scene: dict, grid: int, glyphs: bool = False) -> dict[str, torch.Tensor]:
    """One scene's targets on a grid × grid patch grid (the crop stretches the whole image);
    ``glyphs``: also the characters per patch (needs the scene's texts with font, size and angle)."""
    places = patch_places(grid).view(grid, grid, 2)  # patch centres, normalised
    xs, ys = places[..., 0], places[..., 1]
    colour = torch.zeros(grid, grid, dtype=torch.long)
    shape = torch.zeros(grid, grid, dtype=torch.long)
    text = torch.zeros(grid, grid)
    heat = torch.zeros(grid, grid)
    at_centre = torch.zeros(grid, grid, dtype=torch.bool)
    offset = torch.zeros(grid, grid, 2)
    size = torch.zeros(grid, grid, 2)
    for obj in scene["objects"]:  # drawing order: later objects cover earlier ones
        x0, y0, x1, y1 = obj["box_norm"]
        inside = (xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)
        colour[inside] = COLOUR_CLASSES.index(obj["colour"]) if obj["colour"] in COLOUR_CLASSES else 0
        shape[inside] = SHAPE_CLASSES.index(obj["shape"]) if obj["shape"] in SHAPE_CLASSES else 0
        cx, cy = obj["point_norm"]
        gx, gy = min(int(cx * grid), grid - 1), min(int(cy * grid), grid - 1)
        bump = torch.exp(-((xs * grid - cx * grid) ** 2 + (ys * grid - cy * grid) ** 2) / (2 * HEAT_SIGMA**2))
        heat = torch.maximum(heat, bump)
        at_centre[gy, gx] = True
        offset[gy, gx] = torch.tensor([cx * grid - gx, cy * grid - gy])
        size[gy, gx] = torch.tensor([x1 - x0, y1 - y0])
    for item in scene.get("texts", []):
        x0, y0, x1, y1 = item["box_norm"]
        text[(xs >= x0) & (xs <= x1) & (ys >= y0) & (ys <= y1)] = 1.0
    out = {
        "centre": heat,
        "colour": colour,
        "shape": shape,
        "text": text,
        "at_centre": at_centre,
        "offset": offset,
        "size": size,
    }
    if glyphs:
        out["glyphs"] = glyph_targets(scene, grid)
    return out


@functools.lru_cache(maxsize=8192)
def _glyph_centres(text: str, font: str, size: int, angle: float) -> tuple:
    return tuple(text_layout(text, font, size, angle)[1])


def glyph_targets(scene: dict, grid: int) -> torch.Tensor:
    """(grid, grid, len(GLYPH_CLASSES)): 1 where a letter or digit has its ink centre in the patch."""
    out = torch.zeros(grid, grid, len(GLYPH_CLASSES))
    for item in scene.get("texts", []):
        x0, y0 = item["box"][:2]
        for char, centre in zip(item["text"], _glyph_centres(item["text"], item["font"], item["size"], item["angle"])):
            if centre is None or char not in GLYPH_INDEX:
                continue
            gx = min(max(int((x0 + centre[0]) / scene["width"] * grid), 0), grid - 1)
            gy = min(max(int((y0 + centre[1]) / scene["height"] * grid), 0), grid - 1)
            out[gy, gx, GLYPH_INDEX[char]] = 1.0
    return out


def batch_targets(scenes: list[dict], grid: int, glyphs: bool = False) -> DenseTargets:
    per_scene = [scene_targets(scene, grid, glyphs) for scene in scenes]
    return DenseTargets(**{key: torch.stack([t[key] for t in per_scene]) for key in per_scene[0]})


class DenseHead(nn.Module):
    """Vision tokens (B, grid², enc_dim) → per-patch predictions of every target."""

    def __init__(
        self,
        config: VisionConfig,
        seed: int = 0,
        object_share: float = 0.0,
        glyph_weight: float = 0.0,
        place_weight: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= object_share < 1.0:
            raise ValueError(f"dense object share {object_share} must be in [0, 1)")
        for name, weight in (("glyph", glyph_weight), ("place", place_weight)):
            if weight < 0:
                raise ValueError(f"dense {name} weight {weight} must be >= 0")
        self.grid = config.grid_size
        self.object_share = object_share
        self.glyph_weight = glyph_weight
        self.place_weight = place_weight
        self.sizes = {
            "centre": 1,
            "colour": len(COLOUR_CLASSES),
            "shape": len(SHAPE_CLASSES),
            "text": 1,
            "offset": 2,
            "size": 2,
        }
        self.norm = nn.LayerNorm(config.enc_dim)
        self.out = nn.Linear(config.enc_dim, sum(self.sizes.values()))
        generator = torch.Generator().manual_seed(seed)  # the same head for the same seed, whatever ran before
        _init_linear(self.out, generator)
        # a head of its own (not a slice of ``out``): runs without glyphs keep their parameter shapes
        self.glyph_out = nn.Linear(config.enc_dim, len(GLYPH_CLASSES)) if glyph_weight else None
        if self.glyph_out is not None:
            _init_linear(self.glyph_out, generator)
        # the place read-out sees image tokens as the decoder's layer norms do: normalised per token
        self.place_norm = nn.LayerNorm(config.proj_out_dim, elementwise_affine=False)
        self.place_out = nn.Linear(config.proj_out_dim, 2) if place_weight else None
        if self.place_out is not None:
            _init_linear(self.place_out, generator)

    @property
    def reads_glyphs(self) -> bool:
        return self.glyph_out is not None

    def glyph_logits(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, grid², enc_dim) → (B, grid, grid, len(GLYPH_CLASSES))."""
        return self.glyph_out(self.norm(tokens)).view(tokens.shape[0], self.grid, self.grid, -1)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        b = tokens.shape[0]
        flat = self.out(self.norm(tokens)).view(b, self.grid, self.grid, -1)  # B, g, g, outputs
        return dict(zip(self.sizes, flat.split(list(self.sizes.values()), dim=-1)))

    def loss(
        self, tokens: torch.Tensor, targets: DenseTargets, image_tokens: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Each part's mean over the batch's patches (glyphs: over the patches of text boxes, summed
        over characters); ``dense`` is their sum, glyphs weighted by ``glyph_weight`` and the place
        of the decoder's ``image_tokens`` (B, grid², text dim) by ``place_weight``."""
        pred = self(tokens.float())
        weights = self.patch_weights(targets.shape.flatten())
        parts = {
            "centre": F.binary_cross_entropy_with_logits(pred["centre"][..., 0], targets.centre),
            "colour": _weighted_mean(
                F.cross_entropy(pred["colour"].flatten(0, 2), targets.colour.flatten(), reduction="none"), weights
            ),
            "shape": _weighted_mean(
                F.cross_entropy(pred["shape"].flatten(0, 2), targets.shape.flatten(), reduction="none"), weights
            ),
            "text": F.binary_cross_entropy_with_logits(pred["text"][..., 0], targets.text),
        }
        chosen = targets.at_centre
        if chosen.any():
            parts["offset"] = F.l1_loss(pred["offset"][chosen].sigmoid(), targets.offset[chosen])
            parts["size"] = F.l1_loss(pred["size"][chosen].sigmoid(), targets.size[chosen])
        dense = sum(parts.values())
        on_text = targets.text > 0.5
        if self.reads_glyphs and targets.glyphs is not None and on_text.any():
            logits = self.glyph_logits(tokens.float())[on_text]  # text patches, glyph classes
            bce = F.binary_cross_entropy_with_logits(logits, targets.glyphs[on_text], reduction="none")
            parts["glyph"] = bce.sum(-1).mean()
            dense = dense + self.glyph_weight * parts["glyph"]
        if self.place_out is not None:
            if image_tokens is None:
                raise ValueError("the dense place loss needs the decoder's image tokens")
            pred = self.place_out(self.place_norm(image_tokens.float()))  # B, grid², (x, y)
            parts["place"] = F.mse_loss(pred, patch_places(self.grid, pred.device).expand_as(pred))
            dense = dense + self.place_weight * parts["place"]
        out = {f"dense_{k}": v for k, v in parts.items()}
        out["dense"] = dense
        return out

    def patch_weights(self, shape: torch.Tensor) -> torch.Tensor | None:
        """(N,) weights of the colour and shape losses per patch: ``object_share`` of the total on the
        patches that hold an object, the rest on the background ones (None: a plain mean). Objects
        cover a small part of most scenes, so a plain mean spends most of the signal on background."""
        if not self.object_share:
            return None
        on_object = (shape != 0).float()
        n_object = on_object.sum()
        n_background = on_object.numel() - n_object
        if n_object == 0 or n_background == 0:
            return None
        return on_object * (self.object_share / n_object) + (1 - on_object) * ((1 - self.object_share) / n_background)


def patch_places(grid: int, device=None) -> torch.Tensor:
    """(grid², 2): (x, y) of each patch centre in row-major order, normalised to 0..1."""
    centres = (torch.arange(grid, dtype=torch.float32, device=device) + 0.5) / grid
    ys, xs = torch.meshgrid(centres, centres, indexing="ij")
    return torch.stack((xs.flatten(), ys.flatten()), dim=-1)


@torch.no_grad()
def _init_linear(layer: nn.Linear, generator: torch.Generator) -> None:
    """N(0, 0.02) weights from ``generator`` (the same head for the same seed), zero bias."""
    layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator) * 0.02)
    layer.bias.zero_()


def _weighted_mean(losses: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Weights that sum to one, or None for the plain mean."""
    return losses.mean() if weights is None else (losses * weights).sum()
