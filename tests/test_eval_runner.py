"""The eval runner and CLI: batching, resuming, re-scoring (a stand-in model), and one
end-to-end run on the tiny golden checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import moonlet
from moonlet.eval.benchmarks import BENCHMARKS, load_samples
from moonlet.eval.cli import add_eval_parser, main
from moonlet.eval.runner import predict, read_predictions

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "eval"
from conftest import GOLDEN_MODEL  # noqa: E402


class FakeModel:
    """Answers from a table; records how it was called."""

    def __init__(self, answers: dict[str, str] | None = None):
        self.answers = answers or {}
        self.batches: list[int] = []
        self.settings: list = []
        self.calls: list[tuple[str, str]] = []

    def batch_query(self, items, settings=None):
        self.batches.append(len(items))
        self.settings.append(settings)
        for image, _ in items:
            assert Path(image).is_file()
        return [{"answer": self.answers.get(q.split("?")[0] + "?", "no idea")} for _, q in items]

    def detect(self, image, obj, settings=None):
        self.calls.append(("detect", obj))
        return {"objects": [{"x_min": 0.25, "y_min": 0.25, "x_max": 0.75, "y_max": 0.75}]}

    def point(self, image, obj, settings=None):
        self.calls.append(("point", obj))
        return {"points": [{"x": 0.5, "y": 0.5}]}

    def caption(self, image, length="normal", stream=False, settings=None):
        self.calls.append(("caption", length, settings["max_tokens"]))
        return {"caption": "A red square."}


VQA_ANSWERS = {"How many cats are there?": "Two.", "Is the cat black?": "yes", "What is on the table?": "a laptop"}


def vqa_samples():
    return load_samples(BENCHMARKS["vqav2"], FIXTURES / "vqav2")


def test_predict_batches_and_greedy_settings(tmp_path):
    model = FakeModel(VQA_ANSWERS)
    out = tmp_path / "predictions.jsonl"
    predictions = predict(model, BENCHMARKS["vqav2"], vqa_samples(), out, batch_size=2, progress=False)
    assert model.batches == [2, 1]
    assert model.settings[0] == {"temperature": 0, "max_tokens": BENCHMARKS["vqav2"].max_tokens}
    assert predictions == {"42000": "Two.", "42001": "yes", "73000": "a laptop"}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["prompt"] == "How many cats are there? Answer with a single word or phrase."
    assert read_predictions(out) == predictions


def test_predict_resumes_and_drops_a_torn_line(tmp_path):
    out = tmp_path / "predictions.jsonl"
    samples = vqa_samples()
    predict(FakeModel(VQA_ANSWERS), BENCHMARKS["vqav2"], samples[:1], out, progress=False)
    with open(out, "a") as handle:
        handle.write('{"id": "42001", "predic')  # interrupted mid-write
    model = FakeModel(VQA_ANSWERS)
    predictions = predict(model, BENCHMARKS["vqav2"], samples, out, batch_size=8, progress=False)
    assert model.batches == [2]  # only the two missing questions
    assert set(predictions) == {"42000", "42001", "73000"}
    assert len(out.read_text().splitlines()) == 3


def test_predict_other_tasks(tmp_path):
    samples = load_samples(BENCHMARKS["synthetic"], FIXTURES / "synthetic")
    model = FakeModel({"What color is the square?": "red", "How many squares are there?": "1"})
    predictions = predict(model, BENCHMARKS["synthetic"], samples, tmp_path / "p.jsonl", batch_size=4, progress=False)
    assert model.batches == [2]
    assert ("detect", "square") in model.calls and ("caption", "short", 256) in model.calls
    assert predictions["test:3"] == [[0.25, 0.25, 0.75, 0.75]]
    assert predictions["test:5"] == [[0.5, 0.5]]


def run_cli(argv, monkeypatch, model=None):
    def fake_load(*args, **kwargs):
        if model is None:
            raise AssertionError("the model should not be loaded")
        return model

    monkeypatch.setattr(moonlet, "load", fake_load)
    return main(argv)


def test_cli_run_rescore_and_resume(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["vqav2", "--data", str(FIXTURES / "vqav2"), "--out", str(out), "--no-progress"]
    assert run_cli(argv + ["--batch-size", "2"], monkeypatch, FakeModel(VQA_ANSWERS)) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 3 and results["metrics"]["accuracy"] == pytest.approx(1.0)
    assert results["categories"]["answer_type"]["number"]["accuracy"] == pytest.approx(1.0)
    assert "answer_type" in capsys.readouterr().out
    # everything is predicted: a second run loads no model
    assert run_cli(argv, monkeypatch) == 0
    # re-score edited predictions without a model
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    rows[0]["prediction"] = "3"  # one of ten annotators said 3: 0.3
    (out / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert run_cli(argv + ["--rescore"], monkeypatch) == 0
    rescored = json.loads((out / "results.json").read_text())
    assert rescored["rescored"] is True
    assert rescored["metrics"]["accuracy"] == pytest.approx((0.3 + 1 + 1) / 3)


def test_cli_limit_and_fresh(tmp_path, monkeypatch):
    out = tmp_path / "run"
    argv = ["vqav2", "--data", str(FIXTURES / "vqav2"), "--out", str(out), "--no-progress"]
    assert run_cli(argv + ["--limit", "1"], monkeypatch, FakeModel(VQA_ANSWERS)) == 0
    assert json.loads((out / "results.json").read_text())["n"] == 1
    model = FakeModel({})
    assert run_cli(argv + ["--fresh"], monkeypatch, model) == 0
    assert model.batches == [3]
    assert json.loads((out / "results.json").read_text())["metrics"]["accuracy"] == 0.0


def test_cli_errors(tmp_path, monkeypatch, capsys):
    assert run_cli(["gqa", "--data", str(tmp_path / "missing"), "--out", str(tmp_path)], monkeypatch) == 2
    assert "data path not found" in capsys.readouterr().err
    argv = ["gqa", "--data", str(FIXTURES / "gqa"), "--out", str(tmp_path / "none"), "--rescore"]
    assert run_cli(argv, monkeypatch) == 2
    assert "nothing to re-score" in capsys.readouterr().err


def test_add_eval_parser_wires_into_a_parent_parser():
    import argparse

    parser = argparse.ArgumentParser(prog="moonlet")
    sub = parser.add_subparsers(dest="command", required=True)
    add_eval_parser(sub)
    args = parser.parse_args(["eval", "pope", "--data", "x", "--limit", "5", "--model", "m", "--dtype", "float32"])
    assert (args.command, args.benchmark, args.limit, args.model, args.dtype) == ("eval", "pope", 5, "m", "float32")
    assert args.batch_size == 8 and callable(args.func)


def test_end_to_end_on_the_golden_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["synthetic", "--data", str(FIXTURES / "synthetic"), "--model", str(GOLDEN_MODEL), "--device", "cpu",
            "--dtype", "float32", "--out", str(out), "--batch-size", "2", "--max-tokens", "4", "--max-objects", "2",
            "--no-progress"]
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [r["task"] for r in rows] == ["query", "query", "detect", "detect", "point", "point", "point", "caption"]
    assert all(isinstance(r["prediction"], str) for r in rows if r["task"] in ("query", "caption"))
    assert all(len(r["prediction"]) <= 2 for r in rows if r["task"] in ("detect", "point"))
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 8 and results["missing"] == 0
    assert {"qa_accuracy", "detect_map50", "point_in_box", "caption_object_recall"} <= set(results["metrics"])
    assert "qa_accuracy" in capsys.readouterr().out


def test_rescore_needs_no_images(tmp_path, monkeypatch):
    data = tmp_path / "vqav2"
    data.mkdir()
    for name in ("v2_OpenEnded_mscoco_val2014_questions.json", "v2_mscoco_val2014_annotations.json"):
        (data / name).write_text((FIXTURES / "vqav2" / name).read_text())
    out = tmp_path / "run"
    out.mkdir()
    (out / "predictions.jsonl").write_text(json.dumps({"id": "42001", "prediction": "Yes."}) + "\n")
    argv = ["vqav2", "--data", str(data), "--out", str(out)]
    assert run_cli(argv, monkeypatch) == 2  # predicting needs the images
    assert run_cli(argv + ["--rescore"], monkeypatch) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["n"], results["missing"]) == (1, 2)
    assert results["metrics"]["accuracy"] == pytest.approx(1.0)  # 9 of 10 annotators said yes


def test_resume_refuses_predictions_from_another_model(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    argv = ["vqav2", "--data", str(FIXTURES / "vqav2"), "--out", str(out), "--no-progress", "--limit", "1"]
    assert run_cli(argv + ["--model", "a"], monkeypatch, FakeModel(VQA_ANSWERS)) == 0
    assert run_cli(argv + ["--model", "b"], monkeypatch, FakeModel(VQA_ANSWERS)) == 2
    assert "different model" in capsys.readouterr().err
    assert run_cli(argv + ["--model", "b", "--fresh"], monkeypatch, FakeModel(VQA_ANSWERS)) == 0
    assert run_cli(argv + ["--rescore"], monkeypatch) == 0
    assert json.loads((out / "results.json").read_text())["model"] == "b"


def test_progress_bar_falls_back_without_tqdm(monkeypatch, tmp_path):
    import sys

    from moonlet.progress import progress_bar

    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now fails
    with progress_bar(3, desc="x") as bar:
        bar.update(3)
    assert type(bar).__name__ == "SilentBar"
    model = FakeModel(VQA_ANSWERS)
    predict(model, BENCHMARKS["vqav2"], vqa_samples(), tmp_path / "p.jsonl", progress=True)
    assert model.batches == [3]
