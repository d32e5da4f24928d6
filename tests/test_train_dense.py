"""The dense auxiliary head: targets from ground truth, trained with the model, never exported."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from test_train import dataset, tiny_model, tokenizer  # noqa: F401  (fixtures)

from moonlet.train.dense import COLOUR_CLASSES, SHAPE_CLASSES, DenseHead, batch_targets, patch_places, scene_targets
from moonlet.train.trainer import TrainConfig, Trainer

SCENE = {
    "objects": [
        {"shape": "star", "colour": "red", "box_norm": [0.1, 0.1, 0.4, 0.4], "point_norm": [0.25, 0.3]},
        {"shape": "circle", "colour": "blue", "box_norm": [0.3, 0.3, 0.6, 0.6], "point_norm": [0.45, 0.45]},
    ],
    "texts": [{"box_norm": [0.7, 0.8, 0.95, 0.9]}],
}


def test_targets_follow_the_scene():
    t = scene_targets(SCENE, grid=10)
    assert t["centre"][3, 2] > 0.75 and t["centre"][4, 4] == 1.0  # the patches of (0.25, 0.3) and (0.45, 0.45)
    assert t["centre"][9, 9] < 1e-3
    assert COLOUR_CLASSES[t["colour"][2, 2]] == "red" and SHAPE_CLASSES[t["shape"][2, 2]] == "star"
    assert COLOUR_CLASSES[t["colour"][3, 3]] == "blue"  # drawn later: on top where they overlap
    assert t["colour"][8, 1] == 0 and t["shape"][8, 1] == 0  # background
    assert t["text"][8, 8] == 1 and t["text"][1, 1] == 0
    assert t["at_centre"].sum() == 2 and t["at_centre"][3, 2]
    assert torch.allclose(t["offset"][3, 2], torch.tensor([0.5, 0.0]), atol=1e-5)
    assert torch.allclose(t["size"][3, 2], torch.tensor([0.3, 0.3]), atol=1e-5)


def test_dense_head_trains_resumes_exactly_and_is_not_exported(dataset, tokenizer, tmp_path):  # noqa: F811
    """With the constant rate of warmup-stable-decay, a run of 2 steps extended to 4 is the run of 4."""

    def run(out, steps, resume=False):
        config = TrainConfig(
            data=str(dataset),
            out=str(out),
            steps=steps,
            batch_size=4,
            warmup=1,
            lr=3e-3,
            schedule="wsd",
            save_every=2,
            eval_every=0,
            log_every=1,
            progress=False,
            dense_weight=1.0,
            rows_per_image=3,
        )
        trainer = Trainer(tiny_model(tokenizer), tokenizer, config)
        return trainer, trainer.fit(resume=resume)

    _, straight = run(tmp_path / "a", 4)
    assert all("dense_centre" in h and "dense_colour" in h for h in straight)
    run(tmp_path / "b", 2)
    trainer, resumed = run(tmp_path / "b", 4, resume=True)
    assert [h["loss"] for h in resumed] == [h["loss"] for h in straight[2:]]
    assert [h["dense"] for h in resumed] == [h["dense"] for h in straight[2:]]
    with safe_open(str(tmp_path / "b" / "checkpoint-0000002" / "trainable.safetensors"), "pt") as f:
        assert any(k.startswith("dense_head.") for k in f.keys())
    exported = trainer.export()
    with safe_open(str(exported / "model.safetensors"), "pt") as f:
        assert not any("dense" in k for k in f.keys())
    assert "dense" not in json.loads((exported / "config.json").read_text())["config"]


def test_object_share_balances_object_and_background_patches():
    """With object_share 0.5 the object patches carry half the colour/shape loss, however few."""
    from moonlet.config import VisionConfig
    from moonlet.train.dense import DenseHead, batch_targets

    vision = VisionConfig(enc_dim=16, enc_patch_size=4, crop_size=40, enc_n_layers=1, enc_ff_dim=32, enc_n_heads=2)
    targets = batch_targets([SCENE], vision.grid_size)
    on_object = targets.shape.flatten() != 0
    assert 0 < on_object.sum() < on_object.numel() / 2
    weights = DenseHead(vision, object_share=0.5).patch_weights(targets.shape.flatten())
    assert torch.isclose(weights[on_object].sum(), torch.tensor(0.5)) and torch.isclose(
        weights.sum(), torch.tensor(1.0)
    )
    assert DenseHead(vision).patch_weights(targets.shape.flatten()) is None
    # a head that predicts background everywhere loses more once objects weigh half
    tokens = torch.zeros(1, vision.grid_size**2, vision.enc_dim)
    plain, balanced = DenseHead(vision), DenseHead(vision, object_share=0.5)
    with torch.no_grad():
        for head in (plain, balanced):
            head.out.bias.zero_()
            head.out.bias[head.sizes["centre"] + head.sizes["colour"]] = 5.0  # the shape logits' background class
    plain_loss, balanced_loss = plain.loss(tokens, targets), balanced.loss(tokens, targets)
    assert balanced_loss["dense_shape"] > 2 * plain_loss["dense_shape"]
    assert torch.isclose(plain_loss["dense_centre"], balanced_loss["dense_centre"])
    try:
        TrainConfig(data="d", out="o", dense_object_share=0.5).validate()
    except ValueError as error:
        assert "dense_weight" in str(error)
    else:
        raise AssertionError("dense_object_share without the dense head was accepted")


def test_glyph_targets_follow_the_rendered_text():
    """Each letter's patch follows where the renderer drew it, turned or not."""
    from moonlet.data.fonts import available_fonts, text_layout
    from moonlet.train.dense import GLYPH_INDEX, glyph_targets

    font = available_fonts()[0]
    for angle in (0.0, 90.0):
        alpha, _ = text_layout("AB 7", font, 20, angle)
        h, w = alpha.shape
        scene = {"width": 200, "height": 200, "texts": [{"text": "AB 7", "font": font, "size": 20, "angle": angle}]}
        scene["texts"][0]["box"] = [60, 80, 60 + w, 80 + h]
        targets = glyph_targets(scene, grid=20)  # 10-px patches
        cells = {char: tuple(targets[..., GLYPH_INDEX[char]].nonzero()[0].tolist()) for char in "AB7"}
        assert targets.sum() == 3  # the space has no ink
        rows, cols = zip(*cells.values())
        if angle == 0:  # one row, left to right, inside the box
            assert len(set(rows)) == 1 and cols[0] < cols[1] < cols[2] and 6 <= cols[0] and cols[2] < (60 + w) / 10 + 1
        else:  # turned counter-clockwise: bottom to top, one column
            assert len(set(cols)) == 1 and rows[0] > rows[1] > rows[2]


@pytest.mark.parametrize("weight, head", [("dense_glyph_weight", "glyph_out"), ("dense_place_weight", "place_out")])
def test_a_resumed_run_may_add_a_dense_head_part_but_not_model_parameters(dataset, tokenizer, tmp_path, weight, head):  # noqa: F811
    """Resuming with --dense-glyph-weight or --dense-place-weight adds a fresh part to the training-only
    head; everything saved comes back."""
    from moonlet.train.checkpoint import load_training_state

    def trainer(out, steps, part_weight=0.0):
        config = TrainConfig(
            data=str(dataset),
            out=str(out),
            steps=steps,
            batch_size=2,
            warmup=1,
            schedule="wsd",
            save_every=2,
            eval_every=0,
            progress=False,
            dense_weight=1.0,
            rows_per_image=2,
            **{weight: part_weight},
        )
        return Trainer(tiny_model(tokenizer), tokenizer, config)

    first = trainer(tmp_path / "run", 2)
    first.fit()
    resumed = trainer(tmp_path / "run", 3, part_weight=1.0)
    fresh_part = getattr(resumed.dense_head, head).weight.detach().clone()
    resumed.resume()
    assert resumed.step == 2
    for name, param in first.parameters_by_name.items():
        assert torch.equal(resumed.parameters_by_name[name], param), name
    assert torch.equal(getattr(resumed.dense_head, head).weight, fresh_part)
    history = resumed.fit()
    assert history and resumed.step == 3
    if head == "place_out":  # every image has places (glyphs need text in the step's images)
        assert "dense_place" in history[-1]
    # a model parameter the checkpoint lacks is still refused
    with pytest.raises(ValueError, match="does not fit this run"):
        load_training_state(
            tmp_path / "run" / "checkpoint-0000002",
            {**first.parameters_by_name, "text.extra": torch.nn.Parameter(torch.zeros(1))},
            first.optimizer,
            lambda name: name.startswith("dense_head."),
        )


def test_the_place_loss_reads_each_image_token_patch_place_and_trains_the_tokens():
    from moonlet.profiles import PROFILES

    vision = PROFILES["moonlet-nano"].vision
    grid = vision.grid_size
    places = patch_places(grid)
    assert places.shape == (grid * grid, 2)
    assert torch.allclose(places[1], torch.tensor([1.5, 0.5]) / grid)  # row 0, column 1: (x, y)
    assert torch.allclose(places[grid], torch.tensor([0.5, 1.5]) / grid)  # row 1, column 0
    head = DenseHead(vision, place_weight=2.0)
    targets = batch_targets([SCENE], grid)
    tokens = torch.randn(1, grid * grid, vision.enc_dim)
    image_tokens = torch.randn(1, grid * grid, vision.proj_out_dim, requires_grad=True)
    parts = head.loss(tokens, targets, image_tokens)
    unplaced = DenseHead(vision).loss(tokens, targets)
    assert "dense_place" in parts and "dense_place" not in unplaced
    assert torch.allclose(parts["dense"], unplaced["dense"] + 2.0 * parts["dense_place"])
    parts["dense_place"].backward()
    assert image_tokens.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="image tokens"):
        head.loss(tokens, targets)
