"""The evaluation metrics against hand-computed values (no model needed)."""

from __future__ import annotations

import math

import pytest

from moonlet.eval.detection import box_iou, coco_map
from moonlet.eval.metrics import (
    anls,
    binary_metrics,
    count_match,
    exact_match,
    levenshtein,
    relaxed_accuracy,
    vqa_accuracy,
)
from moonlet.eval.normalize import normalize_answer, parse_count, parse_number, yes_no
from moonlet.eval.points import MISS_DISTANCE, nearest_distances, point_in_box
from moonlet.eval.report import format_table, format_value
from moonlet.eval.samples import Sample
from moonlet.eval.scoring import score
from moonlet.eval.synthetic import names_object, score_synthetic

# --- normalisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("two", "2"),
        ("Ten", "10"),
        ("none", "0"),
        ("a dog", "dog"),
        ("The Dog!", "dog"),
        ("an apple", "apple"),
        ("dont", "don't"),
        ("don't", "don't"),
        ("couldn'tve", "couldn't've"),
        ("yes.", "yes"),
        ("Yes, it is.", "yes it is"),
        ("3.5", "3.5"),  # a period before a digit stays
        ("1,000", "1000"),  # digit-comma-digit: marks are deleted, not spaced
        ("red/blue", "red blue"),  # a mark between letters becomes a space
        ("hello ,world", "hello world"),
        ("  multiple\tspaces\n", "multiple spaces"),
        ("its", "its"),  # real words are not turned into contractions
        ("well", "well"),
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_parse_count_and_number():
    assert parse_count("There are three.") == 3
    assert parse_count("12 cats") == 12
    assert parse_count("twelve") == 12
    assert parse_count("1,200") == 1200
    assert parse_count("a few") is None
    assert parse_count(4) == 4
    assert parse_number("12%") == 12
    assert parse_number("$1,234.5") == 1234.5
    assert parse_number("-0.5") == -0.5
    assert parse_number("1.2.3") is None
    assert parse_number("twelve") is None
    assert parse_number("nan") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Yes", "yes"),
        ("yes, there is a dog.", "yes"),
        ("No.", "no"),
        ("There is no dog", "no"),
        ("I don't see one", "no"),
        ("There is a dog", "yes"),
        ("", "no"),
    ],
)
def test_yes_no(text, expected):
    assert yes_no(text) == expected


# --- VQA accuracy -------------------------------------------------------------------------------


def test_vqa_accuracy_leave_one_out():
    # 3 of 10 annotators said "2": leaving one of them out leaves 2 matches (2/3), leaving any
    # other out leaves 3 (capped at 1): (3 * 2/3 + 7 * 1) / 10 = 0.9
    answers = ["2", "2", "2"] + ["3"] * 7
    assert vqa_accuracy("two", answers) == pytest.approx(0.9)
    # one match: only the 9 subsets that keep it score 1/3 -> 9 * (1/3) / 10 = 0.3
    assert vqa_accuracy("4", ["4"] + ["5"] * 9) == pytest.approx(0.3)
    # 4 or more matches score 1 in every subset; none scores 0
    assert vqa_accuracy("yes", ["yes"] * 4 + ["no"] * 6) == pytest.approx(1.0)
    assert vqa_accuracy("maybe", ["yes"] * 4 + ["no"] * 6) == 0.0
    # 2 matches: 2 subsets with 1 left (1/3), 8 subsets with 2 (2/3) -> (2/3 + 16/3) / 10 = 0.6
    assert vqa_accuracy("no", ["no", "no"] + ["yes"] * 8) == pytest.approx(0.6)


def test_vqa_accuracy_normalises_both_sides():
    answers = ["dog"] * 10
    assert vqa_accuracy("A dog.", answers) == 1.0
    assert vqa_accuracy("dont", ["don't"] * 10) == 1.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 1.0
    assert vqa_accuracy("dogs", answers) == 0.0
    assert vqa_accuracy("red", ["red"]) == 1.0  # one answer: plain exact match
    with pytest.raises(ValueError):
        vqa_accuracy("x", [])


def test_exact_and_count_match():
    assert exact_match("The man.", "man") == 1.0
    assert exact_match("two", "2") == 1.0
    assert exact_match("woman", "man") == 0.0
    assert count_match("There are three.", 3) == 1.0
    assert count_match("3 dogs", 4) == 0.0
    assert count_match("none", 0) == 1.0
    assert count_match("many", 2) == 0.0
    assert count_match("2.0", "2") == 1.0  # compared as numbers, not strings


# --- ANLS ----------------------------------------------------------------------------------------


def test_levenshtein():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("same", "same") == 0


def test_anls_threshold():
    gold = "abcdefghijklmnopqrst"  # 20 characters
    assert anls("abcdefghijklmnopqrst", [gold]) == 1.0
    # 9 edits: NL = 0.45 < 0.5 -> similarity 0.55 counts
    assert anls("abcdefghijkXXXXXXXXX", [gold]) == pytest.approx(0.55)
    # 10 edits: NL = 0.5 is not below the threshold -> 0
    assert anls("abcdefghijXXXXXXXXXX", [gold]) == 0.0
    # 11 edits -> 0
    assert anls("abcdefghiXXXXXXXXXXX", [gold]) == 0.0


def test_anls_case_whitespace_and_best_answer():
    assert anls("  ITC limited ", ["itc Limited"]) == 1.0
    assert anls("ITC", ["ITC Limited", "ITC"]) == 1.0
    # "abcx" vs "abcd": one edit in four -> 0.75; the better of two golds is taken
    assert anls("abcx", ["zzzz", "abcd"]) == pytest.approx(0.75)
    assert anls("", [""]) == 1.0


# --- ChartQA relaxed accuracy -----------------------------------------------------------------------


def test_relaxed_accuracy():
    assert relaxed_accuracy("10.4", "10") == 1.0  # 4 % off
    assert relaxed_accuracy("10.5", "10") == 1.0  # exactly 5 %
    assert relaxed_accuracy("10.6", "10") == 0.0  # 6 % off
    assert relaxed_accuracy("-9.6", "-10") == 1.0
    assert relaxed_accuracy("12%", "12") == 1.0
    assert relaxed_accuracy("1,000", "1020") == 1.0
    assert relaxed_accuracy("0", "0") == 1.0
    assert relaxed_accuracy("0.01", "0") == 0.0  # no tolerance around zero
    assert relaxed_accuracy("Yes", "yes") == 1.0
    assert relaxed_accuracy("blue ", ["red", "Blue"]) == 1.0
    assert relaxed_accuracy("2019.", "2019") == 1.0
    assert relaxed_accuracy("red", "blue") == 0.0


# --- POPE ----------------------------------------------------------------------------------------


def test_binary_metrics_hand_computed():
    predictions = ["yes", "Yes, there is.", "no", "No.", "yes"]
    labels = ["yes", "no", "no", "yes", "yes"]
    # TP 2, FP 1, TN 1, FN 1
    result = binary_metrics(predictions, labels)
    assert result["accuracy"] == pytest.approx(3 / 5)
    assert result["precision"] == pytest.approx(2 / 3)
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(2 / 3)
    assert result["yes_ratio"] == pytest.approx(3 / 5)
    skewed = binary_metrics(["yes", "yes", "yes", "no"], ["yes", "no", "no", "no"])
    assert skewed["precision"] == pytest.approx(1 / 3) and skewed["recall"] == 1.0
    assert skewed["f1"] == pytest.approx(0.5)
    with pytest.raises(ValueError):
        binary_metrics(["yes"], ["maybe"])


# --- detection mAP -------------------------------------------------------------------------------


def test_box_iou():
    iou = box_iou([[1, 1, 11, 11]], [[0, 0, 10, 10], [20, 20, 30, 30]])
    assert iou[0, 0] == pytest.approx(81 / 119)
    assert iou[0, 1] == 0.0
    crowd = box_iou([[10, 10, 20, 20]], [[0, 0, 100, 100]], crowd=[True])
    assert crowd[0, 0] == pytest.approx(1.0)  # a crowd box divides by the detection's area


CAT_GT = [
    {"image": "a", "category": "cat", "box": [0, 0, 10, 10]},
    {"image": "a", "category": "cat", "box": [20, 20, 30, 30]},
    {"image": "b", "category": "cat", "box": [0, 0, 10, 10]},
]
CAT_DETS = [
    {"image": "a", "category": "cat", "box": [0, 0, 10, 10], "score": 0.9},  # IoU 1
    {"image": "a", "category": "cat", "box": [50, 50, 60, 60], "score": 0.8},  # false positive
    {"image": "b", "category": "cat", "box": [1, 1, 11, 11], "score": 0.7},  # IoU 0.68
]
# Ranked TP, FP, TP(IoU <= 0.68): at thresholds .50-.65 recall 1/3, 1/3, 2/3 with interpolated
# precision 1, 2/3, 2/3 -> 34 recall points at 1 and 33 at 2/3: AP = 56/101. At .70-.95 the
# third is a miss -> 34 points at 1: AP = 34/101.
AP50 = 56 / 101
AP_CAT = (4 * 56 / 101 + 6 * 34 / 101) / 10


def test_coco_map_hand_computed():
    result = coco_map(CAT_GT, CAT_DETS)
    assert result["map50"] == pytest.approx(AP50)
    assert result["map"] == pytest.approx(AP_CAT)
    assert result["map75"] == pytest.approx(34 / 101)
    assert result["per_category"]["cat"]["ap50"] == pytest.approx(AP50)


def test_coco_map_averages_categories_and_skips_those_without_gt():
    gt = CAT_GT + [{"image": "a", "category": "dog", "box": [0, 0, 5, 5]}]  # never detected: AP 0
    dets = CAT_DETS + [{"image": "a", "category": "bird", "box": [0, 0, 5, 5]}]  # no bird in gt: ignored
    result = coco_map(gt, dets)
    assert result["categories"] == 2
    assert result["map50"] == pytest.approx(AP50 / 2)
    assert result["map"] == pytest.approx(AP_CAT / 2)
    assert set(result["per_category"]) == {"cat", "dog"}


def test_coco_map_crowd_boxes_are_ignored():
    extra_det = {"image": "c", "category": "cat", "box": [10, 10, 20, 20], "score": 0.95}
    crowd = {"image": "c", "category": "cat", "box": [0, 0, 100, 100], "crowd": True}
    assert coco_map(CAT_GT + [crowd], CAT_DETS + [extra_det])["map"] == pytest.approx(AP_CAT)
    # the same box as a real annotation: the detection is a false positive and recall drops
    real = dict(crowd, crowd=False)
    assert coco_map(CAT_GT + [real], CAT_DETS + [extra_det])["map"] < AP_CAT


def test_coco_map_perfect_and_empty():
    perfect = coco_map(CAT_GT, [dict(g, score=1.0) for g in CAT_GT])
    assert perfect["map"] == pytest.approx(1.0) and perfect["map50"] == pytest.approx(1.0)
    nothing = coco_map(CAT_GT, [])
    assert nothing["map"] == 0.0 and nothing["categories"] == 1


def test_coco_map_max_dets_per_image():
    dets = [{"image": "a", "category": "cat", "box": [50, 50, 60, 60], "score": 0.99}] * 3 + CAT_DETS
    # with room for only 2 detections in image a, both are false positives
    limited = coco_map(CAT_GT, dets, max_dets=2)
    full = coco_map(CAT_GT, dets)
    assert limited["map50"] < full["map50"]


# --- pointing, captions ---------------------------------------------------------------------------


def test_point_metrics():
    counts = point_in_box(
        [[0.5, 0.5], [0.9, 0.9], [0.1, 0.1]], [[0.4, 0.4, 0.6, 0.6], [0.0, 0.0, 0.2, 0.2], [0.7, 0.0, 0.8, 0.1]]
    )
    assert counts == {"points": 3, "hits": 2, "boxes": 3, "covered": 2}
    assert nearest_distances([[0.0, 0.0], [1.0, 1.0]], [[0.3, 0.4]]) == [pytest.approx(0.5)]
    assert nearest_distances([], [[0.5, 0.5]]) == [MISS_DISTANCE]


def test_names_object():
    assert names_object("Two dogs and a red car.", "dog")
    assert names_object("A Traffic  Light at night", "traffic light")
    assert not names_object("a category chart", "cat")
    assert not names_object("a red car", "bus")


# --- scoring and report -----------------------------------------------------------------------------


def _sample(i, answers, answer_type):
    return Sample(id=str(i), image=None, question="q", answers=answers, categories={"answer_type": answer_type})


def test_score_vqa_with_categories_and_missing():
    samples = [
        _sample(1, ["yes"] * 10, "yes/no"),
        _sample(2, ["no"] * 10, "yes/no"),
        _sample(3, ["2"] * 10, "number"),
        _sample(4, ["red"] * 10, "other"),  # not predicted
    ]
    result = score("vqa", samples, {"1": "Yes.", "2": "yes", "3": "two"})
    assert result["n"] == 3 and result["missing"] == 1
    assert result["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert result["categories"]["answer_type"]["yes/no"] == {"n": 2, "accuracy": 0.5}
    assert result["categories"]["answer_type"]["number"] == {"n": 1, "accuracy": 1.0}
    assert "other" not in result["categories"]["answer_type"]


def test_score_list_categories_count_once_each():
    samples = [
        Sample(id="1", image=None, answers=["ITC"], categories={"question_type": ["layout", "form"]}),
        Sample(id="2", image=None, answers=["0.28"], categories={"question_type": ["layout"]}),
    ]
    result = score("anls", samples, {"1": "ITC", "2": "wrong"})
    assert result["metrics"]["anls"] == pytest.approx(0.5)
    assert result["categories"]["question_type"]["layout"] == {"n": 2, "anls": 0.5}
    assert result["categories"]["question_type"]["form"] == {"n": 1, "anls": 1.0}


def test_score_pope_per_category():
    samples = [
        Sample(id=f"{c}:{i}", image=None, answers=[label], categories={"category": c})
        for c in ("random", "adversarial")
        for i, label in enumerate(["yes", "no"])
    ]
    predictions = {"random:0": "yes", "random:1": "no", "adversarial:0": "yes", "adversarial:1": "Yes."}
    result = score("pope", samples, predictions)
    assert result["categories"]["category"]["random"]["accuracy"] == 1.0
    assert result["categories"]["category"]["adversarial"]["accuracy"] == 0.5
    assert result["categories"]["category"]["adversarial"]["yes_ratio"] == 1.0
    assert result["metrics"]["accuracy"] == pytest.approx(0.75)


def test_score_detection_uses_all_samples():
    samples = [
        Sample(
            id="a:cat",
            image=None,
            task="detect",
            question="cat",
            target={"image": "a", "boxes": [[0, 0, 0.5, 0.5]], "crowd": [False]},
        ),
        Sample(
            id="b:cat",
            image=None,
            task="detect",
            question="cat",
            target={"image": "b", "boxes": [[0.5, 0.5, 1, 1]], "crowd": [False]},
        ),
    ]
    result = score("map", samples, {"a:cat": [[0, 0, 0.5, 0.5]], "b:cat": []})
    # one of two boxes found, no false positives: precision 1 up to recall 1/2 -> 51/101
    assert result["metrics"]["map50"] == pytest.approx(51 / 101)
    assert result["categories"]["category"]["cat"]["n"] == 2


def test_score_synthetic_tasks():
    image = "img.png"
    square = [[0.2, 0.2, 0.6, 0.6]]
    pairs = [
        (Sample(id="q1", image=image, question="color?", answers=["red"], categories={"type": "color"}), "Red."),
        (Sample(id="q2", image=image, question="count?", answers=["3"], categories={"type": "count"}), "two"),
        (Sample(id="q3", image=image, question="count?", answers=["2"], categories={"type": "count"}), "There are 2."),
        (
            Sample(
                id="d1",
                image=image,
                task="detect",
                question="square",
                target={"image": "x", "boxes": square, "crowd": [False]},
            ),
            square,
        ),
        (
            Sample(
                id="d2", image=image, task="detect", question="circle", target={"image": "x", "boxes": [], "crowd": []}
            ),
            [],
        ),
        (
            Sample(
                id="d3", image=image, task="detect", question="star", target={"image": "x", "boxes": [], "crowd": []}
            ),
            square,
        ),
        (
            Sample(
                id="p1",
                image=image,
                task="point",
                question="square",
                target={"points": [[0.5, 0.5]], "boxes": [[0.4, 0.4, 0.6, 0.6]]},
            ),
            [[0.5, 0.5], [0.9, 0.9]],
        ),
        (Sample(id="p2", image=image, task="point", question="square", target={"points": [[0.5, 0.5]]}), [[0.5, 0.53]]),
        (Sample(id="p3", image=image, task="point", question="star", target={"points": []}), [[0.1, 0.1]]),
        (Sample(id="c1", image=image, task="caption", target={"objects": ["square", "circle"]}), "A red square."),
    ]
    metrics, categories = score_synthetic(pairs)
    assert metrics["qa_accuracy"] == pytest.approx(2 / 3)  # "two" != "3"; "There are 2." == "2" as numbers
    assert categories["type"]["color"] == {"n": 1, "accuracy": 1.0}
    assert categories["type"]["count"] == {"n": 2, "accuracy": 0.5}
    assert metrics["detect_map50"] == pytest.approx(1.0)  # false positives on absent names have no AP
    assert metrics["detect_absent_n"] == 2 and metrics["detect_absent_empty"] == 0.5
    assert metrics["point_n"] == 3
    assert metrics["point_in_box"] == 0.5 and metrics["point_box_recall"] == 1.0
    assert metrics["point_mean_distance"] == pytest.approx(0.03)
    assert metrics["point_within_0.05"] == 1.0
    assert metrics["point_absent_n"] == 1 and metrics["point_absent_empty"] == 0.0
    assert metrics["caption_object_recall"] == 0.5


def test_report_formatting():
    assert format_value("accuracy", 0.71234) == "71.23"
    assert format_value("n", 12) == "12"
    assert format_value("point_mean_distance", 0.0312) == "0.0312"
    table = format_table(
        {
            "benchmark": "vqav2",
            "n": 2,
            "metrics": {"accuracy": 0.5},
            "categories": {"answer_type": {"yes/no": {"n": 2, "accuracy": 0.5}}},
        }
    )
    assert "vqav2: n=2" in table and "answer_type" in table and "50.00" in table
    assert math.isclose(float(table.split("accuracy")[1].split()[0]), 50.0)
