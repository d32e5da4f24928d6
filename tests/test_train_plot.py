"""Training curves from metrics logs: resumed stretches merged by step, a PNG written."""

from __future__ import annotations

import json

from PIL import Image

from moonlet.train.plot import main, read_metrics


def test_stretches_merge_by_step_and_the_plot_is_written(tmp_path):
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text("".join(json.dumps({"step": s, "images": 16 * s, "loss": 5.0 / s}) + "\n" for s in (1, 2, 3)))
    rows = [
        {"step": 3, "images": 48, "loss": 1.0, "dev_qa": 0.4, "dev_point": 0.2},
        {"step": 4, "images": 64, "loss": 0.9, "dense": 0.5},
    ]
    second.write_text("".join(json.dumps(r) + "\n" for r in rows))
    merged = read_metrics([first, second])
    assert [r["step"] for r in merged] == [1, 2, 3, 4] and merged[2]["loss"] == 1.0
    out = tmp_path / "curves.png"
    assert main([str(first), str(second), "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.format == "PNG" and image.width > 600


def test_gate_reads_the_newest_dev_figures(tmp_path, capsys):
    from moonlet.train.gate import main as gate

    log = tmp_path / "metrics.jsonl"
    assert gate([str(log), "dev_qa=0.5"]) == 2
    rows = [
        {"step": 1, "images": 8, "loss": 2.0, "dev_qa": 0.9, "dev_point": 0.9},
        {"step": 2, "images": 16, "loss": 1.9},
        {"step": 3, "images": 24, "loss": 1.8, "dev_qa": 0.6, "dev_point": 0.7},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert gate([str(log), "dev_qa=0.5", "dev_point=0.65", "--stage", "see"]) == 0
    assert "see at step 3 (24 images)" in capsys.readouterr().out
    assert gate([str(log), "dev_qa=0.7"]) == 1
    assert "NO-GO (dev_qa = 0.6 < 0.7)" in capsys.readouterr().out
    assert gate([str(log), "dev_read=0.1"]) == 1  # a figure never measured is not a pass
