"""Results as JSON on disk and as a plain-text table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RAW_SUFFIXES = ("distance",)  # metrics printed as they are, not as percentages


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def format_value(name: str, value: Any) -> str:
    """Integers as they are; fractions as percentages with two decimals; distances raw."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or name == "n" or name.endswith("_n"):
        return str(int(value))
    if name.endswith(RAW_SUFFIXES):
        return f"{value:.4f}"
    return f"{100 * value:.2f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(header), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def format_table(results: dict[str, Any]) -> str:
    """The headline metrics, then one table per breakdown axis (scores in %)."""
    title = f"{results.get('benchmark', '?')}: n={results.get('n', 0)}"
    if results.get("missing"):
        title += f" ({results['missing']} without prediction)"
    lines = [title, ""]
    metrics = results.get("metrics", {})
    lines += _table(["metric", "value"], [[k, format_value(k, v)] for k, v in metrics.items()])
    for axis, groups in results.get("categories", {}).items():
        columns = list(dict.fromkeys(k for g in groups.values() for k in g))
        rows = [[str(name), *(format_value(c, g.get(c, "")) for c in columns)] for name, g in groups.items()]
        lines += ["", *_table([axis, *columns], rows)]
    lines.append("\n(scores in %; distances in normalised image units)" if metrics else "\n(no predictions to score)")
    return "\n".join(lines)
