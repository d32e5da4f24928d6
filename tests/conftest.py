"""Shared fixtures: paths to the golden sets and models loaded once per session."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MOONLET_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden" / "md2-tiny"


def golden_cases() -> list[dict]:
    path = GOLDEN / "cases" / "expected.json"
    if not path.is_file():
        return []
    return json.loads(path.read_text())["cases"]


def require_golden() -> None:
    if not GOLDEN.is_dir():
        pytest.skip(f"golden vectors not found at {GOLDEN} (set MOONLET_SHARED)")


def write_layout_a(directory: Path) -> Path:
    """A layout-A checkpoint directory built from the golden layout-B file and the names map."""
    require_golden()
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
    require_golden()
    return GOLDEN / "model"


@pytest.fixture(scope="session")
def layout_a_dir(tmp_path_factory) -> Path:
    return write_layout_a(tmp_path_factory.mktemp("layout_a"))


@pytest.fixture(scope="session", params=["layout_b", "layout_a"])
def golden_model(request, golden_dir):
    import moonlet

    path = golden_dir if request.param == "layout_b" else request.getfixturevalue("layout_a_dir")
    return moonlet.load(path, device="cpu", dtype="float32")
