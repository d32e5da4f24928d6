"""The embedded model on pictures our generator did not draw (tests/plain_scenes.py): counting,
colour and existence questions on 20 plain scenes, seeded apart from every training seed."""

from __future__ import annotations

import pytest
from plain_scenes import plain_scene, questions

import moonlet

SEEDS = range(9100, 9120)  # 20 scenes; no training, dev or test set uses these
FLOOR = 0.85
# The shipped moonlet-nano v3 gets 100 of 100 at step 17,368 (measured; so did step 12,650; 84 at
# step 8,200; v2, trained on generator version 1, got 45).


@pytest.fixture(scope="module")
def model():
    return moonlet.load(device="cpu")


def test_plain_scenes_are_what_they_claim():
    image, objects = plain_scene(SEEDS[0])
    assert image.size == (256, 256) and 1 <= len(objects) <= 3
    asked = questions(objects, SEEDS[0])
    assert len(asked) == 5 and {answer for _, answer in asked} >= {"Yes", "No"}


def test_answers_plain_pictures_drawn_by_other_code(model):
    right, total = 0, 0
    for seed in SEEDS:
        image, objects = plain_scene(seed)
        asked = questions(objects, seed)
        answers = model.batch_query([(image, question) for question, _ in asked], settings={"temperature": 0})
        for (_, expected), got in zip(asked, answers):
            right += got["answer"].strip().rstrip(".").lower() == expected.lower()
            total += 1
    assert right / total >= FLOOR, f"{right} of {total} right"
