"""Converters from real annotations (COCO, Localized Narratives) and the caption rewording step,
on tiny fixtures in the official formats (tests/fixtures/make_convert_fixtures.py writes them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moonlet.data.cli import main as data_main
from moonlet.data.convert import convert_coco, convert_narratives, rewrite_dataset
from moonlet.data.convert.coco import image_rows, iter_coco, load_json
from moonlet.data.convert.names import mentions, plural
from moonlet.data.convert.rewrite import check_reply
from moonlet.data.reader import iter_rows

FIXTURES = Path(__file__).parent / "fixtures"
COCO = FIXTURES / "coco"
INSTANCES, CAPTIONS = COCO / "instances_val2017.json", COCO / "captions_val2017.json"
NARRATIVES = FIXTURES / "narratives" / "open_images_validation_localized_narratives.jsonl"


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for f in sorted(out.glob("shard-*.jsonl")) for line in f.read_text().splitlines()]


def shard_bytes(out: Path) -> bytes:
    return b"".join(f.read_bytes() for f in sorted(out.glob("shard-*.jsonl")))


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("coco") / "rows"
    convert_coco(INSTANCES, COCO / "images", out, captions=CAPTIONS, seed=0, questions_per_image=6)
    return out


@pytest.fixture(scope="module")
def truth() -> dict:
    """(image id, category) -> list of (bbox, iscrowd), read straight from the fixture file."""
    data = load_json(INSTANCES)
    names = {c["id"]: c["name"] for c in data["categories"]}
    out: dict = {}
    for ann in data["annotations"]:
        out.setdefault((ann["image_id"], names[ann["category_id"]]), []).append((ann["bbox"], ann["iscrowd"]))
    return out


@pytest.fixture(scope="module")
def many_seeds() -> list[tuple[int, list[dict]]]:
    """(image id, rows) for every fixture image under 30 seeds: enough draws to cover each branch."""
    data = load_json(INSTANCES)
    names = sorted(c["name"] for c in data["categories"])
    return [
        (img.id, image_rows(img, texts, names, seed, 6))
        for seed in range(30)
        for _, img, texts in iter_coco(data, load_json(CAPTIONS))
    ]


# --- COCO -------------------------------------------------------------------------------------


def test_coco_rows_are_accepted_by_the_reader_and_validate(coco, capsys):
    meta = json.loads((coco / "meta.json").read_text())
    rows = list(iter_rows(coco))  # images are checked too
    assert meta["complete"] and meta["images"] == 3 and meta["rows"] == len(rows) == len(rows_of(coco))
    assert {r.kind for r in rows} == {"caption", "query", "detect", "point"}
    assert data_main(["data", "validate", str(coco)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == len(rows)


def test_coco_boxes_are_normalised_from_pixel_xywh(coco):
    dogs = next(r for r in rows_of(coco) if r["scene"] == 139 and r.get("object") == "dog" and "boxes" in r)
    # [4.5, 10, 20, 16] and [40, 20, 12.25, 18] in a 64 x 48 image, left to right
    assert dogs["boxes"] == [[0.0703, 0.2083, 0.3828, 0.5417], [0.625, 0.4167, 0.8164, 0.7917]]
    points = next(r for r in rows_of(coco) if r["scene"] == 139 and r.get("object") == "dog" and "points" in r)
    assert points["points"] == [[round(14.5 / 64, 4), round(18 / 48, 4)], [round(46.125 / 64, 4), round(29 / 48, 4)]]


def test_coco_captions_are_the_annotations_tidied(coco):
    captions = [(r["scene"], r["caption"], r["length"]) for r in rows_of(coco) if "caption" in r]
    assert captions == [
        (139, "Two dogs and a man playing with a frisbee.", "short"),
        (139, "A man throws a frisbee to his dogs.", "short"),
        (285, "People skiing down a snowy hill.", "short"),
        (632, "An empty room with white walls.", "short"),
    ]


def test_counts_and_existence_answers_match_the_annotations(many_seeds, truth):
    names = {name for _, name in truth} | {"bicycle", "car", "cat", "hot dog"}
    seen = set()
    for image_id, rows in many_seeds:
        for row in rows:
            if "question" not in row:
                continue
            (name,) = mentions(row["question"], names)  # exactly one category per question
            anns = truth.get((image_id, name), [])
            if row["type"] == "count":
                assert not any(crowd for _, crowd in anns), "no count question for a category with a crowd region"
                assert row["answer"] == str(len(anns))  # digits, like the synthetic pipeline
            else:
                assert row["answer"] == ("Yes" if anns else "No")
            seen.add((row["type"], row["answer"] in ("0", "No")))
    assert seen == {("count", True), ("count", False), ("exists", True), ("exists", False)}


def test_crowd_categories_get_no_counts_boxes_or_points_but_exist(many_seeds):
    crowd_image = [rows for image_id, rows in many_seeds if image_id == 285]
    person = [r for rows in crowd_image for r in rows if "question" in r and mentions(r["question"], {"person"})]
    assert person and all(r["type"] == "exists" and r["answer"] == "Yes" for r in person)
    assert all(r["object"] != "person" for rows in crowd_image for r in rows if "object" in r)


def test_absent_targets_are_empty_and_really_absent(many_seeds, truth):
    for image_id, rows in many_seeds:
        for row in rows:
            found = row.get("boxes", row.get("points"))
            if found is None:
                continue
            anns = truth.get((image_id, row["object"]), [])
            if found:
                assert len(found) == len(anns) and not any(crowd for _, crowd in anns)
            else:
                assert not anns  # an empty list only for a category with no annotation at all


def test_same_seed_same_bytes_other_seed_other_wording(coco, tmp_path):
    convert_coco(INSTANCES, COCO / "images", tmp_path / "again", captions=CAPTIONS, seed=0, questions_per_image=6)
    convert_coco(INSTANCES, COCO / "images", tmp_path / "other", captions=CAPTIONS, seed=1, questions_per_image=6)
    again, other = shard_bytes(tmp_path / "again"), shard_bytes(tmp_path / "other")
    assert again == shard_bytes(coco) and other != again
    # only the wording, question order and distractors differ; captions and present targets do not
    assert [r for r in rows_of(tmp_path / "other") if "caption" in r] == [r for r in rows_of(coco) if "caption" in r]


def test_missing_images_are_skipped_and_counted(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "000000000285.png").write_bytes((COCO / "images" / "000000000285.png").read_bytes())
    meta = convert_coco(INSTANCES, images, tmp_path / "out", seed=0)
    assert meta["images"] == 1 and meta["missing_images"] == 2
    assert {r["image"] for r in rows_of(tmp_path / "out")} == {"../images/000000000285.png"}
    assert not any("caption" in r for r in rows_of(tmp_path / "out"))  # no captions file given
    with pytest.raises(FileExistsError):
        convert_coco(INSTANCES, images, tmp_path / "out")


def test_plural_and_mentions():
    assert [plural(n) for n in ("person", "bus", "wine glass", "teddy bear", "skis", "knife", "toothbrush")] == [
        "people",
        "buses",
        "wine glasses",
        "teddy bears",
        "pairs of skis",
        "knives",
        "toothbrushes",
    ]
    assert mentions("A hot dog and two Dogs near some people.", {"dog", "hot dog", "person", "cat"}) == {
        "hot dog",
        "dog",
        "person",
    }
    assert mentions("A hot dog on a plate.", {"dog", "hot dog"}) == {"hot dog"}


# --- Localized Narratives ---------------------------------------------------------------------


def in_span_mean(record: dict, utterance: str) -> list[float]:
    """The mean of the in-image trace points recorded while ``utterance`` was spoken (first time)."""
    u = next(u for u in record["timed_caption"] if u["utterance"].strip(",.").lower() == utterance)
    pts = [
        (p["x"], p["y"])
        for seg in record["traces"]
        for p in seg
        if u["start_time"] <= p["t"] <= u["end_time"] and 0 <= p["x"] <= 1 and 0 <= p["y"] <= 1
    ]
    return [round(sum(v) / len(pts), 4) for v in zip(*pts)]


def test_narratives_captions_and_points_follow_the_trace(tmp_path):
    meta = convert_narratives(NARRATIVES, FIXTURES / "narratives" / "images", tmp_path / "out", seed=0)
    assert meta["narratives"] == 2 and meta["missing_images"] == 1 and meta["complete"]
    rows = rows_of(tmp_path / "out")
    assert len(list(iter_rows(tmp_path / "out"))) == len(rows) == meta["rows"]
    records = [json.loads(line) for line in NARRATIVES.read_text().splitlines()]
    assert rows[0]["image"].endswith("images/000000391895.jpg")  # COCO ids are padded to 12 digits
    assert [r["caption"] for r in rows if "caption" in r] == [
        records[0]["caption"],
        "A red car parked beside a bicycle.",
    ]
    points = {(Path(r["image"]).stem, r["object"]): r["points"] for r in rows if "points" in r}
    # "dog" said twice at the same place: one point; "grass" too spread out, "cat" one in-image
    # point, "trees" plural, "In this image" / "a" / "and" stop words, "bicycle" no trace: no row
    assert points == {
        ("000000391895", "dog"): [in_span_mean(records[0], "dog")],
        ("000000391895", "ball"): [in_span_mean(records[0], "ball")],
        ("0a1b2c3d4e5f6789", "car"): [in_span_mean(records[1], "car")],
    }
    assert points[("000000391895", "dog")] == [[0.3, 0.61]]  # the off-image sample (x = 1.4) is left out
    assert all(0 <= v <= 1 for pts in points.values() for p in pts for v in p)
    again = tmp_path / "again"
    convert_narratives(NARRATIVES, FIXTURES / "narratives" / "images", again, seed=0)
    assert shard_bytes(again) == shard_bytes(tmp_path / "out")


# --- rewording captions -----------------------------------------------------------------------


def test_check_reply_rejects_unannotated_categories():
    vocab = {"dog", "cat", "frisbee", "person", "hot dog"}
    known = {"dog", "frisbee"}
    assert check_reply("Two dogs chase a frisbee.", "Dogs play with a frisbee.", known, vocab) is None
    assert check_reply("Two dogs and a cat.", "Dogs play.", known, vocab) == "names unannotated: cat"
    # a name the original caption already uses is not an addition
    assert check_reply("A man and his dogs.", "A person with dogs.", known, vocab) is None
    assert check_reply("", "Dogs.", known, vocab) == "empty reply"
    assert check_reply("Dogs.", "Dogs.", known, vocab) == "unchanged"
    assert check_reply("Yes", "Two dogs play with a frisbee on the grass.", known, vocab) == "too short"


@pytest.fixture(scope="module")
def fake_endpoint():
    """An OpenAI-compatible endpoint: captions naming a frisbee get a cat added, others are reworded;
    ``/broken`` always fails. Records each request."""
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401
    from fastapi import FastAPI, HTTPException

    from moonlet.server.testing import running_server

    app, seen = FastAPI(), []

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        seen.append(body)
        caption = body["messages"][-1]["content"].split("\n")[0].removeprefix("Caption: ")
        reply = f'"{caption[:-1]}, and a cat."' if "frisbee" in caption else f"In short: {caption}"
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": reply}}]}

    @app.post("/broken/v1/chat/completions")
    async def broken(body: dict):
        seen.append(body)
        raise HTTPException(500, "down")

    with running_server(app) as base:
        yield base, seen


def test_rewrite_keeps_captions_that_add_categories(coco, fake_endpoint, tmp_path):
    base, seen = fake_endpoint
    seen.clear()
    meta = rewrite_dataset(coco, tmp_path / "out", base, model="fake", seed=0)
    assert meta["complete"] and meta["captions"] == 4 and meta["rewritten"] == 2
    assert meta["kept"] == {"names unannotated": 2}
    assert "Objects annotated in the image: dog, frisbee, person" in seen[0]["messages"][-1]["content"]
    assert seen[0]["model"] == "fake" and "Do not add" in seen[0]["messages"][0]["content"]
    log = [json.loads(line) for line in (tmp_path / "out" / "rewrites" / "log.jsonl").read_text().splitlines()]
    assert [e["rewritten"] for e in log] == [False, False, True, True]
    assert log[0]["reason"] == "names unannotated: cat"
    captions = [r["caption"] for r in rows_of(tmp_path / "out") if "caption" in r]
    assert captions == [
        log[0]["original"],
        log[1]["original"],
        "In short: People skiing down a snowy hill.",
        "In short: An empty room with white walls.",
    ]
    rows = list(iter_rows(tmp_path / "out"))  # image paths were rebased; non-caption rows unchanged
    assert len(rows) == len(rows_of(coco))
    assert [r for r in rows_of(tmp_path / "out") if "caption" not in r] == [
        r for r in rows_of(coco) if "caption" not in r
    ]


def test_rewrite_stops_calling_a_failing_endpoint(coco, fake_endpoint, tmp_path):
    base, seen = fake_endpoint
    seen.clear()
    meta = rewrite_dataset(coco, tmp_path / "out", base + "/broken/v1", max_failures=2, timeout=5)
    assert len(seen) == 2 and meta["rewritten"] == 0
    assert meta["kept"] == {"endpoint disabled after 2 failures in a row": 2, "request failed": 2}
    assert shard_bytes(tmp_path / "out") != b"" and len(list(iter_rows(tmp_path / "out"))) == len(rows_of(coco))


def test_rewrite_round_trip_through_moonlet_serve(coco, tmp_path):
    """A real server with the embedded model: every caption gets a reply, and each is either used
    (naming no unannotated category) or kept with the check's reason."""
    import fastapi  # noqa: F401
    import uvicorn  # noqa: F401

    import moonlet
    from moonlet.server.app import create_app
    from moonlet.server.testing import running_server

    app = create_app(moonlet.load(device="cpu"), api_key="k")
    with running_server(app) as base:
        assert (
            data_main(
                [
                    "data",
                    "rewrite",
                    "--data",
                    str(coco),
                    "--out",
                    str(tmp_path / "out"),
                    "--endpoint",
                    base,
                    "--api-key",
                    "k",
                    "--temperature",
                    "0",
                    "--timeout",
                    "20",
                ]
            )
            == 0
        )
    log = [json.loads(line) for line in (tmp_path / "out" / "rewrites" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 4 and all(isinstance(e["reply"], str) for e in log)  # a reply each: the request worked
    assert all(
        e["rewritten"]
        or e["reason"] == check_reply(e["reply"], e["original"], set(), set())
        or e["reason"].startswith("names unannotated")
        for e in log
    )
    categories = set(json.loads((coco / "meta.json").read_text())["categories"])
    annotated = {(r["image"], r["object"]) for r in rows_of(coco) if r.get("boxes")}
    captions = [(r["image"], r["caption"]) for r in rows_of(tmp_path / "out") if "caption" in r]
    for entry, (image, caption) in zip(log, captions):
        assert caption == (entry["reply"] if entry["rewritten"] else entry["original"]) and image == entry["image"]
        if entry["rewritten"]:  # what it names is annotated there, or was in the original
            added = mentions(caption, categories) - mentions(entry["original"], categories)
            assert all((image, name) in annotated for name in added)
    assert len(list(iter_rows(tmp_path / "out"))) == len(rows_of(coco))


# --- command line -----------------------------------------------------------------------------


def test_cli_convert_both_sources(tmp_path, capsys):
    assert (
        data_main(
            [
                "data",
                "convert",
                "coco",
                "--instances",
                str(INSTANCES),
                "--captions",
                str(CAPTIONS),
                "--images",
                str(COCO / "images"),
                "--out",
                str(tmp_path / "coco"),
                "--seed",
                "5",
                "--questions",
                "2",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 3 and summary["kinds"]["query"] == 6
    assert (
        data_main(
            [
                "data",
                "convert",
                "narratives",
                "--narratives",
                str(NARRATIVES),
                "--images",
                str(FIXTURES / "narratives" / "images"),
                "--out",
                str(tmp_path / "ln"),
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["narratives"] == 2
    assert (
        data_main(
            [
                "data",
                "convert",
                "coco",
                "--instances",
                str(INSTANCES),
                "--images",
                str(COCO / "images"),
                "--out",
                str(tmp_path / "coco"),
            ]
        )
        == 2
    )  # not empty
    assert "not empty" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"images": [], "annotations": []}))  # no "categories"
    assert (
        data_main(
            [
                "data",
                "convert",
                "coco",
                "--instances",
                str(broken),
                "--images",
                str(COCO / "images"),
                "--out",
                str(tmp_path / "broken"),
            ]
        )
        == 2
    )
    assert "lacks a field: 'categories'" in capsys.readouterr().err
    assert (
        data_main(
            [
                "data",
                "rewrite",
                "--data",
                str(tmp_path / "coco"),
                "--out",
                str(tmp_path / "coco"),
                "--endpoint",
                "http://127.0.0.1:9",
                "--force",
            ]
        )
        == 2
    )  # would overwrite its input
    assert len(list(iter_rows(tmp_path / "coco"))) == summary["rows"]
