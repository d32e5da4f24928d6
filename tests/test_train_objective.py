"""The training loss: each row's mean over its own targets, then a task-weighted mean over rows."""

from __future__ import annotations

import pytest
import torch
from test_train import dataset, tiny_model, tokenizer  # noqa: F401  (fixtures)

from moonlet.data.reader import iter_rows
from moonlet.prompts import PromptBuilder
from moonlet.train.batch import pack
from moonlet.train.objective import LossWeights, batch_weight, losses, parse_task_weights
from moonlet.train.sequences import SequenceBuilder


@pytest.fixture(scope="module")
def parts(dataset, tokenizer):  # noqa: F811
    """One image's packed rows: a caption, a query, a detect; and the model."""
    model = tiny_model(tokenizer)
    builder = SequenceBuilder(model.config, PromptBuilder(model.config.tokenizer, tokenizer))
    rows = list(iter_rows(dataset))
    image = rows[0].image
    chosen = [next(r for r in rows if r.image == image and r.kind == kind) for kind in ("caption", "query", "detect")]
    crops = model.crops(image)
    sequences = [builder.from_row(r) for r in chosen]
    return model, crops, sequences


def loss_of(model, crops, sequences, weights=LossWeights()):
    with torch.no_grad():
        return losses(model, pack([(crops.normalized(), crops.tiling, sequences)], model.config.prefix_len), weights)


def test_rows_count_once_whatever_their_length(parts):
    """The loss of a batch is the plain mean of each row's own loss."""
    model, crops, sequences = parts
    alone = [float(loss_of(model, crops, [s])["loss"]) for s in sequences]
    together = float(loss_of(model, crops, sequences)["loss"])
    assert together == pytest.approx(sum(alone) / len(alone), rel=1e-5)
    assert [s.task for s in sequences] == ["caption_short", "query_position", "detect"]


def test_task_weights_weigh_rows(parts):
    model, crops, sequences = parts
    alone = [float(loss_of(model, crops, [s])["loss"]) for s in sequences]
    weights = LossWeights(tasks=(("caption", 0.0), ("detect", 3.0)))
    weighted = float(loss_of(model, crops, sequences, weights)["loss"])
    assert weighted == pytest.approx((alone[1] + 3 * alone[2]) / 4, rel=1e-5)
    batch = pack([(crops.normalized(), crops.tiling, sequences)], model.config.prefix_len)
    assert batch_weight(batch, weights) == 4.0
    # a question's type outweighs its family
    by_type = LossWeights(tasks=(("query", 0.0), ("query_position", 2.0)))
    weighted = float(loss_of(model, crops, sequences, by_type)["loss"])
    assert weighted == pytest.approx((alone[0] + 2 * alone[1] + alone[2]) / 4, rel=1e-5)


def test_task_weight_lookup_and_errors():
    weights = LossWeights(tasks=parse_task_weights("caption=0.2, caption_long=0.05,query=2,query_read=5"))
    assert weights.task("caption_short") == 0.2 and weights.task("caption_long") == 0.05
    assert weights.task("query") == 2 and weights.task("point") == 1
    assert weights.task("query_read") == 5 and weights.task("query_count") == 2
    with pytest.raises(ValueError, match="unknown task 'query_spelling'"):
        parse_task_weights("query_spelling=1")
    with pytest.raises(ValueError, match="unknown task 'colour'"):
        parse_task_weights("colour=1")
    with pytest.raises(ValueError, match="NAME=WEIGHT"):
        parse_task_weights("query")
    with pytest.raises(ValueError, match=">= 0"):
        parse_task_weights("point=-1")
