"""Ray: bulk inference equals ``moonlet batch`` row by row, resumes without duplicates and turns a
bad image into an error row; Ray data generation writes the single-process bytes; the Serve
deployment answers the official moondream client. One local Ray instance (2 CPUs) for the module."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path

import pytest
import ray

from moonlet.batch.rows import TIMING  # noqa: E402
from moonlet.cli import build_parser, main  # noqa: E402
from moonlet.scale.sink import ShardSink  # noqa: E402

GREEDY = {"temperature": 0, "max_tokens": 6}
KEY = "scale-test-key"


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    try:
        from ray import serve

        serve.shutdown()
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def model_dir(golden_dir) -> str:
    return str(golden_dir)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Seven small scenes and one file that is not an image."""
    from moonlet.data.config import SceneConfig
    from moonlet.data.generate import make_example

    folder = tmp_path_factory.mktemp("images")
    for i in range(7):
        (folder / f"{i:03d}.png").write_bytes(make_example(0, i, SceneConfig(width=96, height=96)).png)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def without_timing(rows) -> list[dict]:
    return sorted(({k: v for k, v in r.items() if k != TIMING} for r in rows), key=lambda r: r["image"])


def single_process(args: list[str], out: Path) -> list[dict]:
    assert main(["batch", *args, "--out", str(out)]) == 1  # the broken image is an error row
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_ray_rows_equal_moonlet_batch_and_bad_image_is_an_error_row(images, model_dir, tmp_path):
    args = [str(images), "--model", model_dir, "--max-tokens", "5", "--batch-size", "3"]
    expected = single_process(args, tmp_path / "single.jsonl")
    assert main(["batch", *args, "--out", str(tmp_path / "ray"), "--ray", "--workers", "1"]) == 1
    rows = ShardSink(str(tmp_path / "ray")).rows()
    assert without_timing(rows) == without_timing(expected)
    assert len(rows) == 8 and all(set(r[TIMING]) == {"decode_s", "infer_s"} for r in rows)
    broken = next(r for r in rows if r["image"].endswith("broken.png"))
    assert "error" in broken and "image" in broken["error"]


def test_manifest_with_per_row_prompts_and_parquet(images, model_dir, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    lines = [
        {"id": f"q{i}", "image": str(images / f"{i:03d}.png"), "object": ["face", "circle"][i % 2]} for i in range(4)
    ]
    lines.append({"id": "bad", "image": str(images / "broken.png"), "object": "face"})
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    args = [str(manifest), "--key-column", "id", "--detect", "thing", "--max-objects", "2", "--model", model_dir]
    expected = single_process(args, tmp_path / "single.jsonl")
    assert main(["batch", *args, "--out", str(tmp_path / "ray"), "--ray", "--format", "parquet"]) == 1
    rows = ShardSink(str(tmp_path / "ray"), "parquet").rows()
    # parquet cannot tell a null from a missing field: its reader drops nulls (here: revision)
    assert without_timing(rows) == without_timing({k: v for k, v in r.items() if v is not None} for r in expected)
    assert [r["object"] for r in without_timing(rows)[1:]] == ["face", "circle", "face", "circle"]


def test_interrupted_run_resumes_with_every_row_once(images, model_dir, tmp_path):
    from moonlet.batch.rows import Task
    from moonlet.scale.pipeline import run_pipeline

    out = tmp_path / "ray"
    task = Task(max_tokens=4, model=model_dir)
    first = run_pipeline(str(images), str(out), task, model=model_dir, batch_size=2, shard_rows=2, limit=3)
    assert first.written == 3 and first.skipped == 0
    (out / ".tmp-part-crashed-00000.jsonl").write_text('{"image": "torn')  # a shard cut short by a kill
    second = run_pipeline(str(images), str(out), task, model=model_dir, batch_size=2, shard_rows=2)
    assert second.skipped == 3 and second.written == 5 and second.errors == 1
    keys = [r["image"] for r in ShardSink(str(out)).rows()]
    assert len(keys) == len(set(keys)) == 8
    assert not list(out.glob(".tmp-*"))
    third = run_pipeline(str(images), str(out), task, model=model_dir)
    assert third.written == 0 and third.skipped == 8


def test_ray_data_generation_is_byte_identical(tmp_path):
    common = [
        "data",
        "generate",
        "--count",
        "40",
        "--seed",
        "3",
        "--shard-size",
        "15",
        "--size",
        "64",
        "--questions",
        "3",
    ]
    assert main([*common, "--out", str(tmp_path / "single")]) == 0
    assert main([*common, "--out", str(tmp_path / "ray"), "--ray"]) == 0
    files = lambda root: {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}  # noqa: E731
    single, sharded = files(tmp_path / "single"), files(tmp_path / "ray")
    assert len(single) == 40 + 2 * 3 + 1 and single == sharded


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_replica_answers_the_moondream_client(model_dir, images):
    import moondream
    from PIL import Image

    import moonlet
    from moonlet.scale.serve import start
    from moonlet.server.cli import app_options

    port = _free_port()
    args = build_parser().parse_args(
        ["serve", "--model", model_dir, "--device", "cpu", "--port", str(port), "--api-key", KEY, "--replicas", "1"]
    )
    start(args, app_options(args))
    md = moondream.vl(endpoint=f"http://127.0.0.1:{port}/v1", api_key=KEY)
    picture = Image.open(images / "000.png").convert("RGB")
    local = moonlet.load(model_dir, device="cpu")
    sent = base64.b64decode(md.encode_image(picture).image_url.split(",", 1)[1])  # the JPEG the client sends
    assert md.caption(picture, settings=GREEDY)["caption"] == local.caption(sent, settings=GREEDY)["caption"]
    expected = local.query(sent, "What is this?", settings=GREEDY)["answer"]
    pieces = list(md.query(picture, "What is this?", stream=True, settings=GREEDY)["answer"])
    assert pieces and "".join(pieces) == expected
    limit = {"max_objects": 2}
    assert (
        md.detect(picture, "face", settings=limit)["objects"] == local.detect(sent, "face", settings=limit)["objects"]
    )
    assert md.point(picture, "face", settings=limit)["points"] == local.point(sent, "face", settings=limit)["points"]
