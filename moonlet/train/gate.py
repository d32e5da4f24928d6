"""Go/no-go checks between training stages: the latest dev figures against stated floors.

    python -m moonlet.train.gate runs/nano/train/metrics.jsonl --stage see dev_point=0.6 dev_qa_color=0.7

Exit status 0 when every figure of the newest dev evaluation meets its floor, 1 otherwise (the
figures and floors are printed either way), 2 when the log holds no dev evaluation yet.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .plot import read_metrics


def latest_dev(rows: list[dict]) -> dict | None:
    evaluated = [r for r in rows if any(key.startswith("dev_") for key in r)]
    return evaluated[-1] if evaluated else None


def check(row: dict, floors: dict[str, float]) -> list[str]:
    """The failures, as readable lines (empty: go)."""
    failures = []
    for key, floor in floors.items():
        value = row.get(key)
        if value is None or value < floor:
            failures.append(f"{key} = {value if value is not None else 'missing'} < {floor}")
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m moonlet.train.gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("metrics", type=Path)
    parser.add_argument("floors", nargs="+", metavar="KEY=FLOOR", help="e.g. dev_point=0.6")
    parser.add_argument("--stage", default="stage", help="name printed with the verdict")
    args = parser.parse_args(argv)
    floors = {}
    for item in args.floors:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("dev_"):
            parser.error(f"{item!r}: expected dev_KEY=FLOOR")
        floors[key] = float(value)
    row = latest_dev(read_metrics([args.metrics])) if args.metrics.is_file() else None
    if row is None:
        print(f"{args.stage}: no dev evaluation in {args.metrics} yet")
        return 2
    failures = check(row, floors)
    figures = ", ".join(f"{k} {row.get(k)}" for k in floors)
    print(
        f"{args.stage} at step {row['step']} ({row.get('images')} images): {figures}: "
        + ("GO" if not failures else "NO-GO (" + "; ".join(failures) + ")")
    )
    return 0 if not failures else 1


if __name__ == "__main__":
    raise SystemExit(main())
