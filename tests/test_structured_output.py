"""Structured output (``settings["json_schema"]``) on the Python API and the CLI.

The golden model has random weights, so nothing but the grammar makes its replies JSON: every reply
is parsed and validated with ``jsonschema``, an implementation independent of the one constraining.
"""

from __future__ import annotations

import json

import jsonschema
import pytest
from conftest import GOLDEN_GROUNDED, GOLDEN_MODEL

import moonlet
from moonlet.cli import main
from moonlet.generation.sampling import SettingsError
from moonlet.generation.structured import IncompleteJsonError, SchemaError

IMAGE = GOLDEN_GROUNDED / "cases" / "astronaut.png"
QUESTION = "What is in the picture?"
# Bounded, so that random weights end their JSON within the token limit.
SCHEMA = {
    "type": "object",
    "properties": {
        "colour": {"enum": ["red", "green", "blue"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 20},
        "label": {"type": "string", "maxLength": 8},
        "flags": {"type": "array", "items": {"type": "boolean"}, "maxItems": 3},
    },
    "required": ["colour", "count", "label", "flags"],
    "additionalProperties": False,
}
GREEDY = {"temperature": 0, "max_tokens": 80}


def valid(text: str, schema: dict = SCHEMA) -> dict:
    value = json.loads(text)
    jsonschema.validate(value, schema)
    return value


@pytest.fixture(scope="module")
def api():
    return moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")


@pytest.mark.parametrize("seed", [None, 0, 1, 2])
def test_query_and_caption_match_the_schema(api, seed):
    settings = {**GREEDY, "json_schema": SCHEMA}
    if seed is not None:
        settings |= {"temperature": 1.0, "top_p": 1.0, "seed": seed}
    valid(api.query(IMAGE, QUESTION, settings=settings)["answer"])
    valid(api.caption(IMAGE, settings=settings)["caption"])


def test_unconstrained_replies_are_not_json(api):
    """What the grammar changes: the same model and settings without it do not reply in JSON."""
    with pytest.raises(ValueError):
        json.loads(api.query(IMAGE, QUESTION, settings=GREEDY)["answer"])


def test_stream_batch_and_image_less_query_agree(api):
    settings = {**GREEDY, "json_schema": SCHEMA}
    whole = api.query(IMAGE, QUESTION, settings=settings)["answer"]
    assert "".join(api.query(IMAGE, QUESTION, stream=True, settings=settings)["answer"]) == whole
    batch = api.batch_query([(IMAGE, QUESTION), (IMAGE, "How many?")], settings=settings)
    assert batch[0]["answer"] == whole
    assert batch[1]["answer"] == api.query(IMAGE, "How many?", settings=settings)["answer"]
    valid(api.query(None, QUESTION, settings=settings)["answer"])


def test_a_constant_schema_gives_its_one_value(api):
    schema = {"const": {"answer": "yes", "n": [1, 2]}}
    assert json.loads(api.query(IMAGE, QUESTION, settings={**GREEDY, "json_schema": schema})["answer"]) == {
        "answer": "yes",
        "n": [1, 2],
    }


def test_reasoning_runs_free_and_the_answer_follows_the_schema(api):
    settings = {"temperature": 0, "max_tokens": 24}
    free = api.query(IMAGE, QUESTION, reasoning=True, settings=settings)
    constrained = api.query(IMAGE, QUESTION, reasoning=True, settings={**settings, "json_schema": {"enum": [1, 2]}})
    assert constrained["reasoning"] == free["reasoning"]
    assert json.loads(constrained["answer"]) in (1, 2)


def test_running_out_of_tokens_is_a_clear_error(api):
    with pytest.raises(IncompleteJsonError, match=r"max_tokens \(3\) before its JSON was complete"):
        api.query(IMAGE, QUESTION, settings={"temperature": 0, "max_tokens": 3, "json_schema": SCHEMA})
    with pytest.raises(IncompleteJsonError):
        "".join(api.query(IMAGE, QUESTION, stream=True, settings={"max_tokens": 3, "json_schema": SCHEMA})["answer"])


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "foo"}, "json_schema: "),
        ('{"type": "object"}', "json_schema: must be a JSON schema object, got str"),
        ({"type": "string", "pattern": "("}, "json_schema: "),
        ({"type": "object", "properties": {"a": {"$ref": "#/nowhere"}}}, "json_schema: "),
    ],
)
def test_bad_schemas_are_errors_naming_json_schema(api, schema, message):
    with pytest.raises(SchemaError, match=message):
        api.query(IMAGE, QUESTION, settings={"json_schema": schema})


def test_detect_and_point_refuse_a_schema(api):
    for skill in (api.detect, api.point):
        with pytest.raises(SettingsError, match="json_schema applies to query and caption"):
            skill(IMAGE, "face", settings={"json_schema": SCHEMA})


def test_the_embedded_model_replies_in_json():
    nano = moonlet.load()
    schema = {
        "type": "object",
        # a free string may run to max_tokens with a small model (v3 at step 8,200 does): an enum ends
        "properties": {
            "count": {"type": "integer", "minimum": 0, "maximum": 9},
            "shape": {"enum": ["circle", "square", "triangle", "hexagon", "star", "heart"]},
        },
        "required": ["count", "shape"],
        "additionalProperties": False,
    }
    reply = nano.query(
        nano.encode_image(str(IMAGE)),
        "How many triangles are there?",
        settings={
            **GREEDY,
            "json_schema": schema,
        },
    )
    assert set(valid(reply["answer"], schema)) == {"count", "shape"}


def test_cli_json_schema_file(api, capsys, tmp_path):
    path = tmp_path / "schema.json"
    path.write_text(json.dumps(SCHEMA))
    flags = ["--model", str(GOLDEN_MODEL), "--dtype", "float32", "--device", "cpu", "--temperature", "0"]
    assert main(["query", str(IMAGE), QUESTION, "--json-schema", str(path), "--max-tokens", "80", *flags]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed == api.query(IMAGE, QUESTION, settings={**GREEDY, "json_schema": SCHEMA})["answer"]
    valid(printed)
    path.write_text("[1, 2]")
    with pytest.raises(SystemExit):
        main(["query", str(IMAGE), QUESTION, "--json-schema", str(path), *flags])
    assert "must hold a JSON object" in capsys.readouterr().err
