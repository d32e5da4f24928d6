"""The command line: skills, drawing, batch (resumable, error rows), download, info, exit codes."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

from moonlet.cli import main

from conftest import GOLDEN

CHEAP = GOLDEN / "cases" / "tiny_scene.png"


@pytest.fixture(scope="module")
def model_dir(golden_dir):
    return str(golden_dir)


def test_query_json(model_dir, capsys):
    assert main(["query", str(CHEAP), "What is in this image?", "--model", model_dir, "--json",
                 "--max-tokens", "4", "--temperature", "0"]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"answer"}


def test_detect_draws_boxes(model_dir, tmp_path, capsys):
    out = tmp_path / "drawn.png"
    assert main(["detect", str(CHEAP), "face", "--model", model_dir, "--max-objects", "2", "--out", str(out)]) == 0
    drawn = Image.open(out).convert("RGB")
    original = Image.open(CHEAP).convert("RGB")
    assert drawn.size == original.size and drawn.tobytes() != original.tobytes()


def test_batch_is_resumable_and_reports_bad_images(model_dir, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "b.png", "c.png"):
        shutil.copy(CHEAP, folder / name)
    out = tmp_path / "out.jsonl"
    args = ["batch", str(folder), "--out", str(out), "--model", model_dir, "--max-tokens", "3", "--batch-size", "2"]
    assert main(args) == 0
    rows = [json.loads(l) for l in out.read_text().splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(str(folder / n) for n in ("a.png", "b.png", "c.png"))
    assert all("caption" in r for r in rows)
    # interrupted mid-write: a torn line, then a new image; the rerun completes each image once
    out.write_text(out.read_text() + '{"image": "torn')
    (folder / "d.png").write_bytes(b"not an image")
    assert main(args) == 1  # one image failed, reported as an error row
    rows = [json.loads(l) for l in out.read_text().splitlines()]  # the torn line is gone
    images = [r["image"] for r in rows]
    assert len(images) == len(set(images)) == 4
    assert "error" in next(r for r in rows if r["image"].endswith("d.png"))


def test_download_offline_fails_clearly(tmp_path, monkeypatch, capsys):
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    assert main(["download", "vikhyatk/moondream2"]) == 2
    assert "not in the local Hugging Face cache" in capsys.readouterr().err


def test_info_and_bad_input_exit_codes(model_dir, tmp_path, capsys):
    assert main(["info", "--model", model_dir, "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["profile"] == "2025-06-21" and info["weights_bytes"] > 0
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    assert main(["query", str(bad), "Hi?", "--model", model_dir]) == 2
    assert "cannot decode image" in capsys.readouterr().err
