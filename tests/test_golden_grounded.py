"""Grounded reasoning, spatial refs, the image-less query and gaze against md2-tiny-grounded (both layouts)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import GOLDEN_2024, GOLDEN_GROUNDED, GOLDEN_MODEL

import moonlet
from moonlet.gaze import gaze_request, without_outliers
from moonlet.generation.sampling import SettingsError
from moonlet.profiles import PROFILES
from moonlet.prompts import PromptBuilder, PromptError
from moonlet.spatial import SpatialRefError, parse_spatial_refs

EXPECTED = json.loads((GOLDEN_GROUNDED / "cases" / "expected.json").read_text())
SETTINGS = {"temperature": 0, "max_tokens": 24}
RUNS = [(case["image"], index) for case in EXPECTED["cases"] for index in range(len(case["runs"]))]


def raise_bias(model, added: dict[str, float]) -> None:
    """The set's lm_head bias change. The recorded logits show the raised bias rounded to bfloat16 (the
    reference added it to the stored bfloat16 tensor), not kept in float32 as the README says."""
    bias = model.model.text.lm_head.bias
    with torch.no_grad():
        for token, value in added.items():
            bias[int(token)] = (bias[int(token)] + value).to(torch.bfloat16).float()


@pytest.fixture(scope="module", params=["layout_b", "layout_a"])
def grounded_model(request):
    path = GOLDEN_MODEL if request.param == "layout_b" else request.getfixturevalue("layout_a_dir")
    model = moonlet.load(path, device="cpu", dtype="float32")
    raise_bias(model, EXPECTED["lm_head_bias_added"])
    return model


def case_run(image: str, index: int):
    case = next(c for c in EXPECTED["cases"] if c["image"] == image)
    path = GOLDEN_GROUNDED / "cases" / image
    return path, case["runs"][index], np.load(str(path).replace(".png", "_expected.npz"))


def test_sampling_is_what_the_runs_assume():
    assert EXPECTED["sampling"] == SETTINGS


@pytest.mark.parametrize(("image", "index"), RUNS, ids=[f"{i}-{n}" for i, n in RUNS])
def test_run(grounded_model, image, index):
    path, run, arrays = case_run(image, index)
    args = run["args"]
    if run["kind"] == "detect_gaze":
        assert grounded_model.detect_gaze(path, eye=tuple(args["eye"])) == {"gaze": run["gaze"]}
        _, hidden, _ = grounded_model.engine.start(
            [gaze_request(grounded_model, grounded_model.encode_image(path), args["eye"])]
        )
        logits = grounded_model.model.region.coordinate_logits(hidden)
        assert (logits - torch.from_numpy(arrays[f"run{index}_gaze_x_logits"][0])).abs().max().item() < 1e-3
        return
    refs = parse_spatial_refs(args.get("spatial_refs"))
    reasoning = args.get("reasoning", False)
    prompt = grounded_model.prompts().query(args["question"], refs=refs, reasoning=reasoning)
    assert prompt == run["prompt_ids"]
    logits = grounded_model.first_token_logits(path, prompt, slots=grounded_model.spatial_slots(refs))
    assert (logits - torch.from_numpy(arrays[f"run{index}_first_logits"][0])).abs().max().item() < 1e-3
    out = grounded_model.query(path, args["question"], reasoning, args.get("spatial_refs"), settings=SETTINGS)
    assert out["answer"] == run["answer"]
    if not reasoning:
        assert set(out) == {"answer"}
        return
    assert set(out) == {"answer", "reasoning"}
    assert out["reasoning"]["text"] == run["reasoning"]["text"]
    got, want = out["reasoning"]["grounding"], run["reasoning"]["grounding"]
    assert [(g["start_idx"], g["end_idx"]) for g in got] == [(w["start_idx"], w["end_idx"]) for w in want]
    for g, w in zip(got, want):
        assert np.allclose(g["points"], w["points"], atol=1e-4) and len(g["points"]) == len(w["points"])


def test_reasoning_streams_the_answer_after_the_reasoning(grounded_model):
    path, run, _ = case_run("astronaut.png", 0)
    out = grounded_model.query(path, run["args"]["question"], reasoning=True, stream=True, settings=SETTINGS)
    assert out["reasoning"]["text"] == run["reasoning"]["text"]  # complete before any answer piece
    pieces = list(out["answer"])
    assert "".join(pieces) == run["answer"]  # no spaces in it: the streamer holds it to the end


def test_imageless_query(grounded_model):
    query = EXPECTED["imageless_query"]
    assert grounded_model.query(None, query["question"], settings=SETTINGS)["answer"] == query["answer"]


def test_coordinate_as_first_reasoning_token(golden_dir):
    """A fault of the reference (it crashes): the first coordinate is decoded from the prompt's last position."""
    model = moonlet.load(golden_dir, device="cpu", dtype="float32")
    raise_bias(model, {**EXPECTED["lm_head_bias_added"], "5": 80.0})
    path = GOLDEN_GROUNDED / "cases" / "astronaut.png"
    prompt = model.prompts().query("Where?", reasoning=True)
    _, hidden, logits = model.engine.start(
        [model.text_request(model.encode_image(path), prompt, model.sampling(SETTINGS))]
    )
    assert int(logits.argmax()) == 5
    first = float(model.model.region.decode_coordinate(hidden)[0])
    out = model.query(path, "Where?", reasoning=True, settings={"temperature": 0, "max_tokens": 4})
    assert out["reasoning"]["text"].startswith("<5>")
    grounded = [p for g in out["reasoning"]["grounding"] for p in g["points"]]
    assert grounded and grounded[0][0] == first


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        ([(1.2, 0.5)], r"spatial_refs\[0\]\[0\] must be a number from 0 to 1"),
        ([(0.5, 0.5), (0.1, 0.2, 0.3)], r"spatial_refs\[1\] must be a point"),
        ([(0.6, 0.2, 0.5, 0.7)], r"spatial_refs\[0\] is a box whose minimum exceeds its maximum"),
        ([("a", 0.2)], r"spatial_refs\[0\]\[0\]"),
        ([(float("nan"), 0.2)], r"spatial_refs\[0\]\[0\]"),
        ("0.5,0.5", "must be a list"),
    ],
)
def test_bad_spatial_refs_are_clear_errors(grounded_model, refs, message):
    with pytest.raises(SpatialRefError, match=message):
        grounded_model.query(GOLDEN_GROUNDED / "cases" / "astronaut.png", "What?", spatial_refs=refs)


def test_revisions_without_grounding_refuse_it_naming_the_revision(grounded_model):
    builder = PromptBuilder(PROFILES["2025-01-09"].tokenizer, grounded_model.tokenizer)
    with pytest.raises(PromptError, match="2025-06-21"):
        builder.require_grounded("reasoning", "2025-01-09")
    with pytest.raises(SettingsError, match="reasoning must be true or false"):
        grounded_model.query(None, "Hi?", reasoning="yes")


def test_gaze_prioritize_accuracy_is_seeded_and_mirrored(grounded_model):
    path = GOLDEN_GROUNDED / "cases" / "chelsea.png"
    face = (0.3, 0.2, 0.6, 0.5)
    unstable = {"prioritize_accuracy": True}
    first = grounded_model.detect_gaze(path, face=face, unstable_settings=unstable, settings={"seed": 3})
    again = grounded_model.detect_gaze(path, face=face, unstable_settings=unstable, settings={"seed": 3})
    assert first == again and first["gaze"] is not None
    assert 0 <= first["gaze"]["x"] <= 1 and 0 <= first["gaze"]["y"] <= 1
    with pytest.raises(ValueError, match="needs face"):
        grounded_model.detect_gaze(path, unstable_settings=unstable)
    with pytest.raises(SettingsError, match="unknown unstable_settings"):
        grounded_model.detect_gaze(path, eye=(0.5, 0.5), unstable_settings={"prioritise": True})
    with pytest.raises(SpatialRefError, match=r"eye\[1\]"):
        grounded_model.detect_gaze(path, eye=(0.5, 2))


def test_gaze_outliers_are_dropped():
    cluster = [{"x": 0.5 + d, "y": 0.5} for d in (0.0, 0.01, 0.02, -0.01, -0.02)]
    assert without_outliers(cluster + [{"x": 0.95, "y": 0.05}]) == cluster


def test_force_detect_decodes_a_point_where_the_model_would_stop(golden_dir):
    model = moonlet.load(golden_dir, device="cpu", dtype="float32")
    raise_bias(model, {"0": 200.0})  # the end id wins at once
    path = GOLDEN_GROUNDED / "cases" / "astronaut.png"
    assert model.detect_gaze(path, eye=(0.4, 0.35)) == {"gaze": None}
    forced = model.detect_gaze(path, eye=(0.4, 0.35), unstable_settings={"force_detect": True})["gaze"]
    assert forced is not None and set(forced) == {"x", "y"}


def test_transformers_entry_reasons_and_detects_gaze():
    """The drop-in import gives the 2025-06-21 calls their golden results; older revisions refuse
    them naming the revision that has them."""
    from moonlet.transformers import AutoModelForCausalLM

    # float32 as the golden runs (without it a CPU with native bf16 loads bf16)
    model = AutoModelForCausalLM.from_pretrained(
        GOLDEN_MODEL, revision=None, trust_remote_code=True, torch_dtype=torch.float32
    )
    raise_bias(model, EXPECTED["lm_head_bias_added"])
    for image, index in RUNS:
        path, run, _ = case_run(image, index)
        args = run["args"]
        if run["kind"] == "detect_gaze":
            assert model.detect_gaze(path, eye=tuple(args["eye"])) == {"gaze": run["gaze"]}
        elif args.get("reasoning"):
            out = model.query(
                path, args["question"], reasoning=True, spatial_refs=args.get("spatial_refs"), settings=SETTINGS
            )
            assert out["answer"] == run["answer"] and out["reasoning"]["text"] == run["reasoning"]["text"]
    old = AutoModelForCausalLM.from_pretrained(GOLDEN_2024 / "model", trust_remote_code=True)
    path = GOLDEN_GROUNDED / "cases" / "astronaut.png"
    with pytest.raises(PromptError, match="reasoning needs revision 2025-06-21"):
        old.query(path, "Hi?", reasoning=True)
    with pytest.raises(PromptError, match="spatial_refs needs revision 2025-06-21"):
        old.query(path, "Hi?", spatial_refs=[(0.2, 0.3)])
    with pytest.raises(NotImplementedError, match="detect_gaze needs revision 2025-01-09"):
        old.detect_gaze(path, eye=(0.5, 0.5))
