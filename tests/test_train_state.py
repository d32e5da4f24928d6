"""Training across machines: a compact resumable state outside the run directory, and a time limit."""

from __future__ import annotations

import json
import shutil

import torch
from safetensors.torch import load_file
from test_train import dataset, tokenizer  # noqa: F401  (fixtures)

from moonlet.cli import main
from moonlet.train.cli import STOPPED_EARLY


def argv(data, tokenizer_file, out, state, steps, *extra):
    return [
        "train",
        "--data",
        str(data),
        "--out",
        str(out),
        "--profile",
        "moonlet-nano",
        "--tokenizer",
        str(tokenizer_file),
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--warmup",
        "1",
        "--schedule",
        "wsd",
        "--save-every",
        "2",
        "--eval-every",
        "0",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--rows-per-image",
        "3",
        "--state-dir",
        str(state),
        "--resume",
        *extra,
    ]


def losses(out):
    return {r["step"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def test_a_fresh_machine_resumes_from_the_state_dir(dataset, tokenizer, tmp_path):  # noqa: F811
    tokenizer.backend.save(str(tmp_path / "tokenizer.json"))
    state = tmp_path / "training" / "nano"
    assert main(argv(dataset, tmp_path / "tokenizer.json", tmp_path / "straight", tmp_path / "other", 4)) == 0
    assert main(argv(dataset, tmp_path / "tokenizer.json", tmp_path / "first", state, 2)) == 0
    assert sorted(p.name for p in state.iterdir()) == [
        "config.json",
        "metrics.jsonl",
        "optimizer.safetensors",
        "tokenizer.json",
        "trainable.safetensors",
        "trainer_state.json",
    ]
    weights = load_file(str(state / "trainable.safetensors"))
    moments = load_file(str(state / "optimizer.safetensors"))
    assert all(t.dtype == torch.float32 for t in weights.values())
    assert {t.dtype for k, t in moments.items() if k.endswith("exp_avg")} == {torch.bfloat16}
    shutil.rmtree(tmp_path / "first")  # the next stretch runs elsewhere: only the state is left
    assert main(argv(dataset, tmp_path / "tokenizer.json", tmp_path / "second", state, 4)) == 0
    resumed, straight = losses(tmp_path / "second"), losses(tmp_path / "straight")
    assert sorted(resumed) == [1, 2, 3, 4]  # it went on from step 2, its log from the state's copy
    assert all(abs(resumed[step] - straight[step]) < 1e-6 for step in (1, 2))
    for step in (3, 4):  # the same run up to the bfloat16 rounding of the optimizer's moments
        assert abs(resumed[step] - straight[step]) < 2e-2 * straight[step]
    assert json.loads((state / "trainer_state.json").read_text())["step"] == 4


def test_a_time_limit_saves_and_says_so(dataset, tokenizer, tmp_path, capsys):  # noqa: F811
    tokenizer.backend.save(str(tmp_path / "tokenizer.json"))
    code = main(
        argv(
            dataset, tmp_path / "tokenizer.json", tmp_path / "run", tmp_path / "state", 50, "--stop-after-min", "0.0001"
        )
    )
    assert code == STOPPED_EARLY
    assert "run the same command again to continue" in capsys.readouterr().out
    assert not (tmp_path / "run" / "model").exists()  # nothing exported from an unfinished run
    assert json.loads((tmp_path / "state" / "trainer_state.json").read_text())["step"] < 50
