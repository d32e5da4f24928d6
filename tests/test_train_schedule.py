"""Warmup-stable-decay schedule, and the dev set scored by greedy decoding while training."""

from __future__ import annotations

import json

import pytest
from test_train import dataset, tiny_model, tokenizer  # noqa: F401  (fixtures)

from moonlet.train.options import learning_rate_factor
from moonlet.train.trainer import TrainConfig, Trainer


def test_wsd_warms_up_holds_then_cools_down_linearly():
    config = TrainConfig(data="x", out="y", steps=100, warmup=10, schedule="wsd", decay_steps=20, min_lr_ratio=0.0)
    factors = [learning_rate_factor(step, config) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == 1.0
    assert set(factors[10:80]) == {1.0}  # stable: extending the run changes nothing before the cool-down
    assert factors[80] == pytest.approx(1 - 1 / 20) and factors[99] == pytest.approx(0.0)
    assert all(a > b for a, b in zip(factors[80:], factors[81:]))


def test_schedule_settings_are_checked():
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(data="x", out="y", schedule="step").validate()
    with pytest.raises(ValueError, match="decay_steps 95 must be in"):
        TrainConfig(data="x", out="y", steps=100, warmup=10, schedule="wsd", decay_steps=95).validate()
    with pytest.raises(ValueError, match="unknown task"):
        TrainConfig(data="x", out="y", task_weights="colour=1").validate()


def test_dev_figures_reach_the_metrics_log(dataset, tokenizer, tmp_path):  # noqa: F811
    config = TrainConfig(
        data=str(dataset),
        out=str(tmp_path / "run"),
        steps=2,
        batch_size=4,
        warmup=1,
        eval_every=2,
        save_every=0,
        log_every=1,
        progress=False,
        dev_data=str(dataset),
        dev_scenes=8,
    )
    Trainer(tiny_model(tokenizer), tokenizer, config).fit()
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "dev_qa" not in rows[0]
    last = rows[-1]
    assert last["step"] == 2 and last["images"] == 8
    for key in ("dev_qa", "dev_point", "dev_map50"):
        assert 0.0 <= last[key] <= 1.0
    assert any(key.startswith("dev_qa_") for key in last)  # per question type
