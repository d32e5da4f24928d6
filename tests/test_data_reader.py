"""The row reader: accepted rows, and errors that name file, line and problem."""

from __future__ import annotations

import json

import pytest

from moonlet.data import DataFormatError, iter_rows


@pytest.fixture
def images(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.png").write_bytes(b"\x89PNG")
    return tmp_path


def write(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


GOOD = [
    {"image": "img/a.png", "caption": "A red circle.", "length": "short", "objects": ["red circle"], "scene": 0},
    {"image": "img/a.png", "question": "How many circles?", "answer": "1", "type": "count"},
    {"image": "img/a.png", "object": "circle", "boxes": [[0.1, 0.2, 0.3, 0.4]]},
    {"image": "img/a.png", "object": "star", "boxes": []},
    {"image": "img/a.png", "object": "circle", "points": [[0.2, 0.3], [0, 1]]},
    {"image": "img/a.png", "question": "What is it?", "answer": "circle"},
    {"image": "img/a.png", "caption": "Just a caption."},
]


def test_reads_every_kind_of_row(images):
    path = write(images / "rows.jsonl", [GOOD[0], "", *GOOD[1:]])
    rows = list(iter_rows(path))
    assert [r.kind for r in rows] == ["caption", "query", "detect", "detect", "point", "query", "caption"]
    assert rows[0].image == images / "img" / "a.png" and rows[0].objects == ("red circle",) and rows[0].scene == 0
    assert rows[1].answer == "1" and rows[1].type == "count" and rows[5].type is None
    assert rows[2].boxes == ((0.1, 0.2, 0.3, 0.4),) and rows[3].boxes == ()
    assert rows[4].points == ((0.2, 0.3), (0.0, 1.0))
    assert rows[6].length == "normal"
    assert rows[1].source == f"{path}:3"  # blank lines still count


def test_reads_a_directory_in_name_order_and_absolute_paths(images):
    write(images / "b.jsonl", [GOOD[1]])
    write(images / "a.jsonl", [{**GOOD[0], "image": str(images / "img" / "a.png")}])
    (images / "notes.txt").write_text("not data")
    assert [r.kind for r in iter_rows(images)] == ["caption", "query"]


def test_reading_is_lazy(images):
    path = write(images / "rows.jsonl", [GOOD[1], "not json"])
    rows = iter_rows(path)
    assert next(rows).kind == "query"  # the bad second line is not read yet
    with pytest.raises(DataFormatError):
        next(rows)


@pytest.mark.parametrize(
    "line, problem",
    [
        ("not json", "invalid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({"caption": "x"}, '"image" must be a non-empty string'),
        ({"image": "img/a.png"}, "exactly one of caption, question, detect or point; found none"),
        ({"image": "img/a.png", "caption": "x", "question": "q", "answer": "a"}, "found caption and query"),
        ({"image": "img/a.png", "question": "q"}, 'query row is missing "answer"'),
        ({"image": "img/a.png", "question": "q", "answer": 3}, '"answer" must be a non-empty string'),
        ({"image": "img/a.png", "caption": " "}, '"caption" must be a non-empty string'),
        ({"image": "img/a.png", "caption": "x", "length": "huge"}, '"length" must be one of short, normal, long'),
        ({"image": "img/a.png", "object": "cat"}, '"object" needs "boxes" (detect) or "points" (point)'),
        ({"image": "img/a.png", "object": "c", "boxes": [], "points": []}, 'either "boxes" or "points"'),
        ({"image": "img/a.png", "boxes": []}, 'detect row is missing "object"'),
        ({"image": "img/a.png", "object": "c", "boxes": [[0.1, 0.2, 0.3]]}, '"boxes"[0] must be a list of 4 numbers'),
        ({"image": "img/a.png", "object": "c", "boxes": [[10, 20, 30, 40]]}, "outside 0..1"),
        ({"image": "img/a.png", "object": "c", "boxes": [[0.5, 0.2, 0.3, 0.4]]}, "x_min <= x_max"),
        ({"image": "img/a.png", "object": "c", "points": [[0.5, True]]}, '"points"[0] must be a list of 2 numbers'),
        ({"image": "img/a.png", "object": "c", "points": "0.1,0.2"}, '"points" must be a list'),
        ({"image": "img/a.png", "caption": "x", "qestion": "typo"}, "unknown key(s) 'qestion' in a caption row"),
        ({"image": "img/a.png", "caption": "x", "scene": "7"}, '"scene" must be an integer'),
        ({"image": "img/a.png", "caption": "x", "objects": "circle"}, '"objects" must be a list of strings'),
        ({"image": "img/missing.png", "caption": "x"}, "image not found"),
    ],
)
def test_bad_rows_name_file_line_and_problem(images, line, problem):
    path = write(images / "rows.jsonl", [GOOD[0], line])
    with pytest.raises(DataFormatError) as info:
        list(iter_rows(path))
    message = str(info.value)
    assert message.startswith(f"{path}:2: "), message
    assert problem in message, message


def test_image_check_can_be_skipped(images):
    path = write(images / "rows.jsonl", [{"image": "elsewhere.png", "caption": "x"}])
    assert [r.caption for r in iter_rows(path, check_images=False)] == ["x"]


def test_missing_paths_are_reported(tmp_path):
    with pytest.raises(DataFormatError, match="no such file or directory"):
        list(iter_rows(tmp_path / "nope.jsonl"))
    with pytest.raises(DataFormatError, match="no .jsonl files"):
        list(iter_rows(tmp_path))
