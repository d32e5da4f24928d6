"""Shared fixtures: paths to the golden sets and models loaded once per session."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
GOLDEN_ROOT = REPO / "tests" / "golden"  # the reference implementation's outputs: test data of this project
GOLDEN = GOLDEN_ROOT / "md2-tiny"
GOLDEN_MODEL = GOLDEN / "model"
GOLDEN_2024 = GOLDEN_ROOT / "md2-2024-03-13-tiny"
GOLDEN_GROUNDED = GOLDEN_ROOT / "md2-tiny-grounded"
GOLDEN_LORA = GOLDEN_ROOT / "md2-tiny-lora"
for _set in (GOLDEN, GOLDEN_2024, GOLDEN_GROUNDED, GOLDEN_LORA):
    if not (_set / "cases" / "expected.json").is_file():  # missing test data is a failure, never a skip
        raise RuntimeError(f"golden set missing: {_set} (it is part of the repository; is the clone complete?)")


def golden_cases() -> list[dict]:
    return json.loads((GOLDEN / "cases" / "expected.json").read_text())["cases"]


def write_layout_a(directory: Path) -> Path:
    """A layout-A checkpoint directory built from the golden layout-B file and the names map."""
    names = json.loads((GOLDEN / "layout_a" / "layout_a_names.json").read_text())
    tensors = {}
    with safe_open(str(GOLDEN / "model" / "model.safetensors"), framework="pt") as source:
        for name_a, (name_b, transposed) in names.items():
            tensor = source.get_tensor(name_b)
            tensors[name_a] = (tensor.t() if transposed else tensor).contiguous()
    directory.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(GOLDEN / "layout_a" / name, directory / name)
    return directory


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    return GOLDEN_MODEL


@pytest.fixture(scope="session")
def layout_a_dir(tmp_path_factory) -> Path:
    return write_layout_a(tmp_path_factory.mktemp("layout_a"))


@pytest.fixture(scope="session", params=["layout_b", "layout_a"])
def golden_model(request, golden_dir):
    import moonlet

    path = golden_dir if request.param == "layout_b" else request.getfixturevalue("layout_a_dir")
    return moonlet.load(path, device="cpu", dtype="float32")
