"""What quantisation costs in answers: golden-case logit error and greedy answers
(``golden_accuracy``), and greedy answer agreement with the unquantised model on a dataset's
questions (``answer_agreement``). Bounds and results: docs/benchmarks.md.

    python -m moonlet.eval.agreement MODEL_DIR CASES_DIR [--include text,vision,region]
    python -m moonlet.eval.agreement MODEL_DIR --data DATASET [--limit N] [--modes int8]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch

import moonlet
from moonlet.data import iter_rows
from moonlet.quant import KERNELS, quantize_


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def golden_accuracy(
    model_dir,
    cases_dir,
    mode: str = "none",
    include: Iterable[str] = ("text",),
    dtype: str = "float32",
    max_tokens: int = 12,
    kernel: str = "auto",
    group_size: int = 128,
    only: Iterable[str] | None = None,
) -> list[dict]:
    """Per golden case: first-token logit error against the recorded ``query_logits`` and the
    greedy answer against the recorded ``answer_ids``, for a model quantised with ``mode``
    (``none``: unquantised, e.g. to see what ``dtype`` alone costs). ``only``: these images."""
    cases_dir = Path(cases_dir)
    model = moonlet.load(model_dir, device="cpu", dtype=dtype)
    if mode != "none":
        quantize_(model, mode, include, group_size=group_size, kernel=kernel)
    rows = []
    for case in json.loads((cases_dir / "expected.json").read_text())["cases"]:
        if only is not None and case["image"] not in only:
            continue
        image = cases_dir / case["image"]
        recorded = np.load(cases_dir / case["image"].replace(".png", "_expected.npz"))
        expected = torch.from_numpy(recorded["query_logits"][0])
        prompt = model.prompts().query(case["question"])
        logits = model.first_token_logits(image, prompt).float()
        delta = logits - expected
        settings = model.sampling({"temperature": 0, "max_tokens": max_tokens})
        answer = model.engine.generate([model.text_request(model.encode_image(image), prompt, settings)])[0]
        want = case["answer_ids"][:max_tokens]
        rows.append(
            {
                "case": case["image"],
                "rel_max_err": float(delta.abs().max() / expected.abs().max()),
                "rel_rms_err": float(delta.norm() / expected.norm()),
                "top1_same": int(logits.argmax()) == int(expected.argmax()),
                "greedy_same": answer == want,
                "greedy_common_prefix": _common_prefix(answer, want),
                "greedy_tokens": len(want),
            }
        )
    return rows


def answer_agreement(
    model_dir,
    data,
    mode: str = "int8",
    include: Iterable[str] = ("text",),
    dtype: str = "float32",
    limit: int = 1000,
    batch_size: int = 16,
    max_tokens: int = 32,
    kernel: str = "auto",
    group_size: int = 128,
) -> dict:
    """Greedy answers of the model quantised with ``mode`` against the unquantised model in the same
    ``dtype``, on the first ``limit`` questions of a dataset (``docs/data.md`` format): the share
    that are identical, per question type, and against the dataset's answers for both."""
    rows = [row for row in iter_rows(data) if row.kind == "query"][:limit]
    if not rows:
        raise ValueError(f"no questions found in {data}")
    settings = {"temperature": 0, "max_tokens": max_tokens}

    def answers(model) -> list[str]:
        out: list[str] = []
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            out += [a["answer"].strip() for a in model.batch_query([(r.image, r.question) for r in chunk], settings)]
        return out

    model = moonlet.load(model_dir, device="cpu", dtype=dtype)
    reference = answers(model)
    quantize_(model, mode, include, group_size=group_size, kernel=kernel)
    model.prefix_cache.clear()  # the cached image prefixes hold the unquantised decoder's keys/values
    quantised = answers(model)
    by_type: dict[str, list[int]] = {}
    for row, a, b in zip(rows, reference, quantised):
        by_type.setdefault(row.type or "untyped", []).append(int(a == b))
    truth = [(r.answer or "").strip() for r in rows]
    return {
        "mode": mode,
        "dtype": dtype,
        "include": list(include),
        "questions": len(rows),
        "agreement": sum(a == b for a, b in zip(reference, quantised)) / len(rows),
        "agreement_by_type": {k: round(sum(v) / len(v), 4) for k, v in sorted(by_type.items())},
        "reference_exact": sum(a == t for a, t in zip(reference, truth)) / len(rows),
        "quantised_exact": sum(b == t for b, t in zip(quantised, truth)) / len(rows),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m moonlet.eval.agreement MODEL_DIR CASES_DIR``: golden accuracy of each mode, a
    table and a JSON line. ``python -m moonlet.eval.agreement MODEL_DIR --data DATASET``: greedy
    answer agreement of each quantised mode with the unquantised model on the dataset's questions."""
    parser = argparse.ArgumentParser(prog="python -m moonlet.eval.agreement", description=main.__doc__)
    parser.add_argument("model_dir")
    parser.add_argument("cases_dir", nargs="?", help="golden cases directory (expected.json and its images)")
    parser.add_argument("--data", help="a dataset to measure answer agreement on instead of golden cases")
    parser.add_argument("--limit", type=int, default=1000, help="questions of --data to use (default 1000)")
    parser.add_argument("--include", default="text", help="parts to quantise (default text)")
    parser.add_argument("--dtype", default="float32", help="the unquantised reference's dtype (default float32)")
    parser.add_argument("--kernel", default="auto", choices=KERNELS)
    parser.add_argument("--group-size", type=int, default=128, help="int4 group size (default 128)")
    parser.add_argument("--modes", default="none,int8,int4", help="modes to compare (default none,int8,int4)")
    args = parser.parse_args(argv)
    if args.data:
        for mode in [m for m in args.modes.split(",") if m != "none"]:
            result = answer_agreement(
                args.model_dir,
                args.data,
                mode,
                args.include.split(","),
                args.dtype,
                args.limit,
                kernel=args.kernel,
                group_size=args.group_size,
            )
            print(json.dumps(result))
        return 0
    if not args.cases_dir:
        parser.error("give CASES_DIR or --data")
    report = {}
    for mode in args.modes.split(","):
        rows = golden_accuracy(
            args.model_dir,
            args.cases_dir,
            mode,
            args.include.split(","),
            args.dtype,
            kernel=args.kernel,
            group_size=args.group_size,
        )
        report[mode] = rows
        for r in rows:
            print(
                f"{mode:5} {r['case']:16} rel max {r['rel_max_err']:.4f}  rel rms {r['rel_rms_err']:.4f}  "
                f"top-1 {'same' if r['top1_same'] else 'DIFF'}  "
                f"greedy {r['greedy_common_prefix']}/{r['greedy_tokens']}"
            )
    print(
        json.dumps(
            {
                "dtype": args.dtype,
                "include": args.include,
                "kernel": args.kernel,
                "group_size": args.group_size,
                "cases": report,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
