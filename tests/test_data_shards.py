"""Dataset files: layout, incremental writing, index-range runs, meta.json and the CLI."""

from __future__ import annotations

import argparse
import json

import pytest

from moonlet.data import generate_dataset, iter_examples, iter_rows
from moonlet.data.cli import add_data_parser, main, run_data


def lines(path):
    return path.read_text().splitlines()


def test_dataset_layout_and_meta(tmp_path):
    meta = generate_dataset(tmp_path / "ds", count=7, seed=1, shard_size=3)
    out = tmp_path / "ds"
    assert sorted(p.name for p in out.glob("shard-*.jsonl")) == [
        "shard-00000.jsonl",
        "shard-00001.jsonl",
        "shard-00002.jsonl",
    ]
    assert sorted(p.name for p in (out / "images").iterdir()) == [f"{i:06d}.png" for i in range(7)]
    on_disk = json.loads((out / "meta.json").read_text())
    assert on_disk == meta
    assert meta["complete"] is True and meta["seed"] == 1 and meta["count"] == 7 and meta["scenes"] == 7
    assert meta["image_size"] == [256, 256] and meta["version"]
    rows = [json.loads(line) for p in sorted(out.glob("shard-*.jsonl")) for line in lines(p)]
    assert len(rows) == meta["rows"] > 7 * 10
    assert [sorted({r["scene"] for r in rows if r["image"] == f"images/{i:06d}.png"}) for i in range(7)] == [
        [i] for i in range(7)
    ]
    scenes_per_shard = [{json.loads(line)["scene"] for line in lines(out / f"shard-{n:05d}.jsonl")} for n in range(3)]
    assert scenes_per_shard == [{0, 1, 2}, {3, 4, 5}, {6}]
    truth = [json.loads(line) for n in range(3) for line in lines(out / "truth" / f"shard-{n:05d}.jsonl")]
    assert [t["scene"] for t in truth] == list(range(7))
    assert all(t["objects"] and t["image"].startswith("images/") for t in truth)
    read = list(iter_rows(out))
    assert len(read) == len(rows)
    assert {r.kind for r in read} == {"caption", "query", "detect", "point"}
    assert all(r.image.is_file() for r in read)


def test_rows_and_images_are_written_as_scenes_arrive(tmp_path):
    out = tmp_path / "ds"
    seen = []

    def watched():
        for example in iter_examples(seed=2, count=5):
            if seen:  # everything before this example is already on disk, and nothing after it
                last = seen[-1]
                shard = out / f"shard-{last // 2:05d}.jsonl"
                written = [json.loads(line)["scene"] for line in lines(shard)]
                assert written and written[-1] == last
                assert (out / f"images/{last:06d}.png").is_file()
                assert not (out / f"images/{example.index:06d}.png").exists()
                assert json.loads((out / "meta.json").read_text())["complete"] is False
            seen.append(example.index)
            yield example

    generate_dataset(out, count=5, seed=2, shard_size=2, examples=watched())
    assert seen == [0, 1, 2, 3, 4]
    assert json.loads((out / "meta.json").read_text())["complete"] is True


def test_separate_index_ranges_give_identical_files(tmp_path):
    whole, part = tmp_path / "whole", tmp_path / "part"
    generate_dataset(whole, count=6, seed=4, shard_size=3)
    generate_dataset(part, count=2, start=4, seed=4, shard_size=3)
    assert sorted(p.name for p in part.glob("shard-*.jsonl")) == ["shard-00001.jsonl"]
    ours = lines(part / "shard-00001.jsonl")
    theirs = [line for line in lines(whole / "shard-00001.jsonl") if json.loads(line)["scene"] in (4, 5)]
    assert ours == theirs and ours
    for i in (4, 5):
        assert (part / f"images/{i:06d}.png").read_bytes() == (whole / f"images/{i:06d}.png").read_bytes()


def test_refuses_to_write_over_a_dataset_unless_asked(tmp_path):
    generate_dataset(tmp_path, count=2, seed=0, shard_size=1)
    with pytest.raises(FileExistsError):
        generate_dataset(tmp_path, count=1, seed=0)
    meta = generate_dataset(tmp_path, count=1, seed=3, overwrite=True, truth=False)
    assert meta["seed"] == 3
    assert [p.name for p in tmp_path.glob("shard-*.jsonl")] == ["shard-00000.jsonl"]
    assert [p.name for p in (tmp_path / "images").iterdir()] == ["000000.png"]
    assert not list(tmp_path.glob("truth/*.jsonl"))


def test_cli_generate_and_validate(tmp_path, capsys):
    out = tmp_path / "cli"
    assert (
        main(
            [
                "data",
                "generate",
                "--out",
                str(out),
                "--count",
                "3",
                "--seed",
                "9",
                "--shard-size",
                "2",
                "--size",
                "128",
                "--questions",
                "4",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["scenes"] == 3 and summary["shards"] == ["shard-00000.jsonl", "shard-00001.jsonl"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["image_size"] == [128, 128] and meta["annotation_config"]["questions"] == 4
    assert main(["data", "validate", str(out)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["rows"] == summary["rows"] and report["kinds"]["query"] == 12
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"image": "x.png", "caption": "hi"}\n')
    assert main(["data", "validate", str(bad)]) == 2
    assert f"{bad}:1: image not found" in capsys.readouterr().err
    assert main(["data", "generate", "--out", str(out), "--count", "1"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_cli_plugs_into_a_parent_parser(tmp_path):
    parser = argparse.ArgumentParser(prog="moonlet")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("caption")
    add_data_parser(sub)
    args = parser.parse_args(["data", "generate", "--out", str(tmp_path / "d"), "--count", "1", "--seed", "5"])
    assert (args.command, args.data_command, args.count, args.seed, args.shard_size) == ("data", "generate", 1, 5, 1000)
    assert run_data(args) == 0
    assert (tmp_path / "d" / "shard-00000.jsonl").is_file()
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "generate", "--out", "x", "--count", "-1"])
