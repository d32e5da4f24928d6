"""Training curves: dev figures (and the loss) against images seen, from a run's metrics log.

python -m moonlet.train.plot runs/nano/train/metrics.jsonl --out docs/models/moonlet-nano-curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# Dev figures drawn, with their legend labels, in this order.
CURVES = {
    "dev_qa": "QA (all types)",
    "dev_point": "pointing (in box)",
    "dev_map50": "detection mAP@0.5",
    "dev_read": "reading",
    "dev_caption_recall": "caption object recall",
    "dev_detect_absent_empty": "absent: no boxes",
}


def read_metrics(paths: list[Path]) -> list[dict]:
    """Rows of one or more metrics logs in order; a later row for the same step replaces an earlier one
    (a stretch that resumed from an earlier checkpoint)."""
    by_step: dict[int, dict] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                by_step[row["step"]] = row
    return [by_step[step] for step in sorted(by_step)]


def plot(rows: list[dict], out: Path, title: str = "moonlet-nano training") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, (dev, loss) = pyplot.subplots(1, 2, figsize=(12, 4.5))
    for key, label in CURVES.items():
        points = [(r["images"], r[key]) for r in rows if key in r]
        if points:
            dev.plot(*zip(*points), marker=".", label=label)
    dev.set(xlabel="images seen", ylabel="dev score", ylim=(0, 1), title="dev set, greedy decoding")
    dev.grid(alpha=0.3)
    dev.legend(fontsize=8)
    points = [(r["images"], r["loss"]) for r in rows if "loss" in r and "images" in r]
    if points:
        loss.plot(*zip(*points), lw=0.8, label="training loss")
    dense = [(r["images"], r["dense"]) for r in rows if "dense" in r]
    if dense:
        loss.plot(*zip(*dense), lw=0.8, label="dense auxiliary loss")
    loss.set(xlabel="images seen", title="losses", yscale="log")
    loss.grid(alpha=0.3)
    loss.legend(fontsize=8)
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    pyplot.close(figure)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moonlet.train.plot", description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", nargs="+", type=Path, help="metrics.jsonl of a run (several: one curve, in order)")
    parser.add_argument("--out", required=True, type=Path, help="PNG to write")
    parser.add_argument("--title", default="moonlet-nano training")
    args = parser.parse_args(argv)
    rows = read_metrics(args.metrics)
    if not rows:
        parser.error("the metrics logs hold no rows")
    print(plot(rows, args.out, args.title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
