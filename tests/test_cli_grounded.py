"""The command line's reasoning, spatial refs, gaze and variants, against the Python API on the golden model."""

from __future__ import annotations

import json

import pytest
from conftest import GOLDEN_GROUNDED, GOLDEN_LORA, GOLDEN_MODEL

import moonlet
from moonlet.cli import main

IMAGE = GOLDEN_GROUNDED / "cases" / "astronaut.png"
ADAPTER = GOLDEN_LORA / "adapter.safetensors"
GREEDY = {"temperature": 0, "max_tokens": 8}
FLAGS = ["--model", str(GOLDEN_MODEL), "--dtype", "float32", "--device", "cpu"]


@pytest.fixture(scope="module")
def api():
    return moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")


def run_json(capsys, argv) -> dict:
    assert main(argv + FLAGS) == 0
    return json.loads(capsys.readouterr().out)


def test_query_with_reasoning_and_refs(api, capsys):
    sampling = ["--temperature", "0", "--max-tokens", "8"]
    argv = ["query", str(IMAGE), "What is here?", "--reasoning", "--ref", "0.1,0.2,0.5,0.7", "--ref", "0.6,0.5"]
    got = run_json(capsys, argv + ["--json", *sampling])
    refs = [(0.1, 0.2, 0.5, 0.7), (0.6, 0.5)]
    assert got == api.query(IMAGE, "What is here?", reasoning=True, spatial_refs=refs, settings=GREEDY)
    assert main(["query", str(IMAGE), "What is here?", "--reasoning", *sampling] + FLAGS) == 0
    assert capsys.readouterr().out.startswith("Reasoning: ")


def test_gaze_and_variant(api, capsys):
    assert run_json(capsys, ["gaze", str(IMAGE), "--eye", "0.4,0.35"]) == api.detect_gaze(IMAGE, eye=(0.4, 0.35))
    sampling = ["--temperature", "0", "--max-tokens", "8"]
    got = run_json(capsys, ["caption", str(IMAGE), "--variant", str(ADAPTER), "--json", *sampling])
    assert got == api.caption(IMAGE, settings={**GREEDY, "variant": str(ADAPTER)})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["query", str(IMAGE), "Hi?", "--ref", "0.2,1.4"], "spatial_refs[0][1]"),
        (["query", str(IMAGE), "Hi?", "--variant", "missing-variant"], "unknown variant"),
        (["gaze", str(IMAGE), "--eye", "0.2"], "eye must be a point"),
    ],
)
def test_bad_input_exits_2_naming_it(capsys, argv, message):
    assert main(argv + FLAGS) == 2
    assert message in capsys.readouterr().err
