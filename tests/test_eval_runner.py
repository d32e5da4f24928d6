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


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union if union > 0 else 0.0


def test_end_to_end_on_the_golden_checkpoint(tmp_path, capsys):
    """Each prediction is what the model gives when called directly with the runner's settings, and the
    scores are what the predictions file gives when scored by hand (and by --rescore)."""
    out = tmp_path / "run"
    argv = [
        "synthetic",
        "--data",
        str(FIXTURES / "synthetic"),
        "--model",
        str(GOLDEN_MODEL),
        "--device",
        "cpu",
        "--dtype",
        "float32",
        "--out",
        str(out),
        "--batch-size",
        "2",
        "--max-tokens",
        "4",
        "--max-objects",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "qa_accuracy" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    samples = {s.id: s for s in load_samples(BENCHMARKS["synthetic"], FIXTURES / "synthetic")}
    assert [r["id"] for r in rows] == list(samples)
    assert [r["task"] for r in rows] == ["query", "query", "detect", "detect", "point", "point", "point", "caption"]

    model = moonlet.load(GOLDEN_MODEL, device="cpu", dtype="float32")
    greedy, located = {"temperature": 0, "max_tokens": 4}, {"max_objects": 2}
    for row in rows:
        sample = samples[row["id"]]
        if row["task"] == "query":
            direct = model.query(sample.image, sample.question, settings=greedy)["answer"]
        elif row["task"] == "caption":
            direct = model.caption(sample.image, sample.target["length"], settings=greedy)["caption"]
        elif row["task"] == "detect":
            objects = model.detect(sample.image, sample.question, settings=located)["objects"]
            direct = [[o["x_min"], o["y_min"], o["x_max"], o["y_max"]] for o in objects]
        else:
            direct = [[p["x"], p["y"]] for p in model.point(sample.image, sample.question, settings=located)["points"]]
        assert row["prediction"] == direct, row
        assert row["task"] not in ("detect", "point") or 1 <= len(direct) <= 2, row

    # the scores, by hand from the file's predictions and the fixture's truth
    by_task = {
        task: [(samples[r["id"]], r["prediction"]) for r in rows if r["task"] == task]
        for task in ("query", "detect", "point", "caption")
    }
    qa = [p.strip().lower() == s.answers[0].lower() for s, p in by_task["query"]]
    boxed = [(s, p) for s, p in by_task["point"] if "boxes" in s.target]
    inside = [any(b[0] <= x <= b[2] and b[1] <= y <= b[3] for b in s.target["boxes"]) for s, p in boxed for x, y in p]
    unboxed = [(s, p) for s, p in by_task["point"] if "boxes" not in s.target]
    distances = [
        min(((x - gx) ** 2 + (y - gy) ** 2) ** 0.5 for x, y in p) for s, p in unboxed for gx, gy in s.target["points"]
    ]
    absent = [not p for s, p in by_task["detect"] if not s.target["boxes"]]
    recall = [
        sum(o.lower() in p.lower() for o in s.target["objects"]) / len(s.target["objects"])
        for s, p in by_task["caption"]
    ]
    ious = [_iou(b, g) for s, p in by_task["detect"] for b in p for g in s.target["boxes"]]
    assert max(ious) < 0.5  # so no detection is a hit at IoU 0.5: mAP50 is 0
    results = json.loads((out / "results.json").read_text())
    assert results["n"] == 8 and results["missing"] == 0
    metrics = results["metrics"]
    assert (metrics["qa_n"], metrics["detect_n"], metrics["point_n"], metrics["caption_n"]) == (2, 2, 3, 1)
    assert metrics["qa_accuracy"] == pytest.approx(sum(qa) / len(qa))
    assert metrics["point_in_box"] == pytest.approx(sum(inside) / len(inside))
    assert metrics["point_mean_distance"] == pytest.approx(sum(distances) / len(distances))
    assert metrics["point_within_0.05"] == pytest.approx(sum(d <= 0.05 for d in distances) / len(distances))
    assert (metrics["detect_absent_n"], metrics["detect_absent_empty"]) == (len(absent), sum(absent) / len(absent))
    assert metrics["caption_object_recall"] == pytest.approx(sum(recall) / len(recall))
    assert metrics["detect_map50"] == 0.0
    assert results["categories"]["type"] == {
        "color": {"n": 1, "accuracy": float(qa[0])},
        "count": {"n": 1, "accuracy": float(qa[1])},
    }
    # --rescore reads only the file and gives the same scores
    assert main(argv + ["--rescore"]) == 0
    rescored = json.loads((out / "results.json").read_text())
    assert rescored["rescored"] is True and rescored["metrics"] == metrics


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
