"""Annotations: answers checked against ground truth by re-reading each question, canonical
answer forms, phrasing diversity, captions, and detect/point targets."""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pytest

from moonlet.data import AnnotationConfig, annotate, sample_scene
from moonlet.data.config import SHAPES, SIZE_CLASSES
from moonlet.data.palette import COLOURS
from moonlet.data.phrasing import LEADS

GENERIC = {"shape", "object", "figure", "item", "thing"}
REGIONS = {"top left", "top", "top right", "left", "center", "right", "bottom left", "bottom", "bottom right"}
MARGIN = AnnotationConfig().margin
N_SCENES = 500


@pytest.fixture(scope="module")
def annotated():
    """(scene, rows) for 500 scenes of seed 1."""
    out = []
    for i in range(N_SCENES):
        scene = sample_scene(1, i)
        out.append((scene, annotate(scene)))
    return out


def questions(annotated, kind=None):
    for scene, rows in annotated:
        for row in rows:
            if "question" in row and (kind is None or row["type"] == kind):
                yield scene, row


# --- a small independent reader of the generated questions ------------------------------------


def strip_lead(question: str) -> str:
    for lead in sorted(LEADS, key=len, reverse=True):
        if question.lower().startswith(lead.lower()):  # casual questions start in lower case
            return question[len(lead) :]
    return question


def refs_in(question: str) -> list[dict]:
    """Descriptions in order: {"size", "colour", "shape"} (missing keys: unconstrained)."""
    refs, current = [], {}
    for word in re.findall(r"[a-z]+", strip_lead(question).lower()):
        word = "gray" if word == "grey" else word
        singular = word[:-1] if word.endswith("s") else word
        if word in SIZE_CLASSES:
            current["size"] = word
        elif word in COLOURS:
            current["colour"] = word
        elif word in SHAPES or singular in SHAPES:
            current["shape"] = word if word in SHAPES else singular
            refs.append(current)
            current = {}
        elif word in GENERIC or singular in GENERIC:
            refs.append(current)
            current = {}
    return refs


def matching(scene, ref) -> list[int]:
    return [
        i
        for i, o in enumerate(scene.objects)
        if all(getattr(o, k if k != "colour" else "colour") == v for k, v in ref.items())
    ]


def direction_of(question: str) -> str:
    q = strip_lead(question).lower()
    for word, direction in (
        ("left", "left"),
        ("right", "right"),
        ("higher", "above"),
        ("above", "above"),
        ("up", "above"),
        ("lower", "below"),
        ("below", "below"),
        ("down", "below"),
    ):
        if re.search(rf"\b{word}\b", q):
            return direction
    raise AssertionError(f"no direction in {question!r}")


def is_side(scene, i, j, direction) -> bool:
    (xi, yi), (xj, yj) = scene.objects[i].centre, scene.objects[j].centre
    d = {"left": xj - xi, "right": xi - xj, "above": yj - yi, "below": yi - yj}[direction] / scene.width
    assert abs(d) > MARGIN, "an ambiguous relation was asked about"
    return d > 0


def mentions_text(question: str) -> bool:
    return bool(re.search(r"\b(text|writing|written|words|letters)\b", strip_lead(question).lower()))


def region(x: float, y: float) -> str:
    col = "left" if x < 1 / 3 else "right" if x > 2 / 3 else ""
    row = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else ""
    return " ".join(w for w in (row, col) if w) or "center"


# --- honesty ----------------------------------------------------------------------------------


def test_counting_answers_equal_ground_truth(annotated):
    zeros = 0
    for scene, row in questions(annotated, "count"):
        refs = [r for r in refs_in(row["question"])]
        assert len(refs) == 1, row
        expected = len(matching(scene, refs[0]))
        assert row["answer"] == str(expected), row
        zeros += expected == 0
    assert zeros >= 50  # absent classes are asked about and answered 0


def test_existence_answers_are_honest(annotated):
    no = 0
    for scene, row in questions(annotated, "exists"):
        if mentions_text(row["question"]):
            expected = bool(scene.texts)
        else:
            refs = refs_in(row["question"])
            assert len(refs) == 1 and refs[0], row
            expected = bool(matching(scene, refs[0]))
        assert row["answer"] == ("Yes" if expected else "No"), row
        no += not expected
    assert no >= 100


def test_colour_and_shape_answers_are_honest(annotated):
    absent = 0
    for scene, row in questions(annotated):
        if row["type"] not in ("color", "shape"):
            continue
        if row["type"] == "color" and mentions_text(row["question"]):
            assert row["answer"] == scene.texts[0].colour, row
            continue
        ref = [r for r in refs_in(row["question"]) if r][-1]
        hits = matching(scene, ref)
        if not hits:
            assert row["answer"].startswith("There is no "), row
            absent += 1
            continue
        assert len(hits) == 1, row  # only unambiguous references are asked about
        obj = scene.objects[hits[0]]
        assert row["answer"] == (obj.colour if row["type"] == "color" else obj.shape), row
    assert absent >= 20


def test_where_answers_match_the_object_region(annotated):
    n = 0
    for scene, row in questions(annotated, "where"):
        if mentions_text(row["question"]):
            box = scene.texts[0].box
            x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        else:
            ref = [r for r in refs_in(row["question"]) if r][-1]
            hits = matching(scene, ref)
            if not hits:
                assert row["answer"] == f"There is no {ref['shape']}.", row
                continue
            assert len(hits) == 1, row
            x, y = scene.objects[hits[0]].centre
        assert row["answer"] == region(x / scene.width, y / scene.height), row
        n += 1
    assert n >= 100


def test_relation_answers_are_honest(annotated):
    counted = 0
    for scene, row in questions(annotated):
        kind, q = row["type"], row["question"]
        if kind not in ("position", "relative_object", "count_relative"):
            continue
        refs = refs_in(q)
        b = matching(scene, refs[-1])
        assert len(b) == 1, row
        j, direction = b[0], direction_of(q)
        if kind == "position":
            a = matching(scene, [r for r in refs if r][0])
            assert len(a) == 1, row
            assert row["answer"] == ("Yes" if is_side(scene, a[0], j, direction) else "No"), row
        elif kind == "relative_object":
            hits = [i for i in range(len(scene.objects)) if i != j and is_side(scene, i, j, direction)]
            assert row["answer"] == (scene.objects[hits[0]].name if hits else "Nothing"), row
            assert len(hits) <= 1, row
        else:
            assert len(refs) == 2, row
            members = [i for i in matching(scene, refs[0]) if i != j]
            assert row["answer"] == str(sum(is_side(scene, i, j, direction) for i in members)), row
        counted += 1
    assert counted >= 300


def test_reading_answers_are_the_text(annotated):
    absent = 0
    for scene, row in questions(annotated, "read"):
        if scene.texts:
            assert row["answer"] == scene.texts[0].text, row
        else:
            assert row["answer"] == "There is no text.", row
            absent += 1
    assert absent >= 10


def test_answers_are_short_and_canonical(annotated):
    forms = {
        "count": lambda a: a.isdigit(),
        "color": lambda a: a in COLOURS or a.startswith("There is no "),
        "shape": lambda a: a in SHAPES or a.startswith("There is no "),
        "exists": lambda a: a in ("Yes", "No"),
        "position": lambda a: a in ("Yes", "No"),
        "where": lambda a: a in REGIONS or a.startswith("There is no "),
        "relative_object": lambda a: a == "Nothing" or (a.split()[0] in COLOURS and a.split()[-1] in SHAPES),
        "count_relative": lambda a: a.isdigit(),
        "read": lambda a: 0 < len(a) <= 20,
    }
    seen = Counter()
    for _, row in questions(annotated):
        assert forms[row["type"]](row["answer"]), row
        seen[row["type"]] += 1
    assert set(seen) == set(forms)


def test_yes_no_answers_are_balanced(annotated):
    for kind in ("exists", "position"):
        answers = Counter(row["answer"] for _, row in questions(annotated, kind))
        assert 0.35 <= answers["Yes"] / sum(answers.values()) <= 0.65, (kind, answers)


# --- diversity --------------------------------------------------------------------------------

CONTENT = sorted([*COLOURS, "grey", *SHAPES, *(s + "s" for s in SHAPES), *SIZE_CLASSES], key=len, reverse=True)
CONTENT_RE = re.compile(r"\b(" + "|".join(CONTENT) + r")\b")


def phrasing(text: str, scene) -> str:
    """The wording with the scene's particulars (colours, shapes, sizes, numbers, text) masked."""
    for t in scene.texts:
        text = text.replace(t.text, "<text>")
    return re.sub(r"\d+", "<n>", CONTENT_RE.sub("<x>", text))


def test_no_phrasing_dominates_a_question_type(annotated):
    by_type = defaultdict(Counter)
    for scene, row in questions(annotated):
        by_type[row["type"]][phrasing(row["question"], scene)] += 1
    for kind, forms in by_type.items():
        total = sum(forms.values())
        top, top_n = forms.most_common(1)[0]
        assert total >= 150, (kind, total)
        assert top_n / total <= 0.08, (kind, top, top_n / total)
        assert len(forms) >= 60, (kind, len(forms))


LIST_WORDS = {*CONTENT, "one", "two", "three", "four", "five", "six", "a", "an", "and", ","}


def caption_phrasing(text: str) -> str:
    """The caption's wording with each listing of objects collapsed to <list>."""
    out = []
    for token in re.findall(r"[A-Za-z]+|[^A-Za-z\s]", text):
        mark = "<list>" if token.lower() in LIST_WORDS else token
        if not (mark == "<list>" and out and out[-1] == "<list>"):
            out.append(mark)
    return " ".join(out)


def test_captions_vary(annotated):
    forms = defaultdict(Counter)
    for _scene, rows in annotated:
        for row in rows:
            if "caption" in row:
                first = row["caption"] if row["length"] == "short" else row["caption"].split(".")[0]
                forms[row["length"]][caption_phrasing(first)] += 1
    assert set(forms) == {"short", "normal", "long"}
    for length, counts in forms.items():
        assert counts.most_common(1)[0][1] / sum(counts.values()) <= 0.12, (length, counts.most_common(3))
        assert len(counts) >= 10, (length, counts)


# --- captions and targets ---------------------------------------------------------------------


def test_captions_grow_with_length_and_name_every_object(annotated):
    for scene, rows in annotated[:100]:
        caps = {r["length"]: r for r in rows if "caption" in r}
        assert len(caps["short"]["caption"]) < len(caps["normal"]["caption"]) < len(caps["long"]["caption"])
        for row in caps.values():
            assert sorted(row["objects"]) == sorted(o.name for o in scene.objects)
        for obj in scene.objects:
            assert obj.shape in caps["short"]["caption"]
            assert obj.colour in caps["long"]["caption"] or (obj.colour == "gray" and "grey" in caps["long"]["caption"])
        if scene.texts:
            assert f'"{scene.texts[0].text}"' in caps["normal"]["caption"]
            assert f'"{scene.texts[0].text}"' in caps["long"]["caption"]


def test_detect_and_point_targets_match_ground_truth(annotated):
    empty = 0
    for scene, rows in annotated[:200]:
        for row in rows:
            if "object" not in row:
                continue
            name = row["object"]
            if name == "text":
                expected = [t.box for t in scene.texts]
            else:
                words = name.split()
                ref = {"shape": words[-1]} if words[-1] in SHAPES else {}
                if len(words) == 2:
                    ref["colour"] = words[0]
                hits = sorted(matching(scene, ref), key=lambda i: scene.objects[i].centre)
                expected = [scene.objects[i].box for i in hits]
            if "boxes" in row:
                assert row["boxes"] == [scene.norm_box(b) for b in expected], row
            else:
                assert len(row["points"]) == len(expected), row
                assert row["points"] == sorted(row["points"]), row
                for (x, y), box in zip(row["points"], expected):  # one point in each box, in order
                    assert box[0] / scene.width <= x <= box[2] / scene.width, row
                    assert box[1] / scene.height <= y <= box[3] / scene.height, row
            empty += not expected
    assert empty >= 40  # absent objects get empty lists


def test_rows_per_scene_follow_the_config():
    scene = sample_scene(2, 9)
    rows = annotate(scene, AnnotationConfig(caption_lengths=("long",), questions=4, detect=1, point=3))
    assert sum("caption" in r for r in rows) == 1
    assert sum("question" in r for r in rows) == 4
    assert sum("boxes" in r for r in rows) == 1
    assert sum("points" in r for r in rows) == 3
    assert all(r["scene"] == 9 for r in rows)
    assert annotate(scene) == annotate(scene)


def test_a_curriculum_config_restricts_question_types_and_relations():
    """Only position and count_relative questions, only "left" and "above" relations; answers stay honest."""
    config = AnnotationConfig(
        caption_lengths=(),
        questions=6,
        detect=0,
        point=0,
        question_types=("position", "count_relative"),
        relations=("left", "above"),
    )
    annotated = [(scene, annotate(scene, config)) for scene in (sample_scene(4, i) for i in range(120))]
    rows = [row for _, scene_rows in annotated for row in scene_rows]
    assert rows and all("question" in row for row in rows)
    assert {row["type"] for row in rows} == {"position", "count_relative"}
    assert {direction_of(row["question"]) for row in rows} == {"left", "above"}
    # of two types, each may take half of a scene's questions (of the default nine, a third)
    most = [
        Counter(row["type"] for row in scene_rows).most_common(1)[0][1] for _, scene_rows in annotated if scene_rows
    ]
    assert max(most) > 2
    test_relation_answers_are_honest(annotated)


@pytest.mark.parametrize(
    "field, value", [("question_types", ("position", "colur")), ("relations", ("lft",)), ("relations", ())]
)
def test_unknown_question_types_and_relations_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        AnnotationConfig(**{field: value})
