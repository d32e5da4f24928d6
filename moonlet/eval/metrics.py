"""Per-question scores (VQA accuracy, exact match, counts, ANLS, relaxed accuracy) and the
yes/no classification metrics. Detection lives in ``detection.py``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from .normalize import normalize_answer, parse_count, parse_number, yes_no


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy: for each annotator left out, min(#other annotators who gave the
    prediction / 3, 1); averaged over the leave-one-out subsets (10 choose 9 for 10 answers).

    Prediction and answers go through :func:`normalize_answer`. With a single answer the
    score is plain exact match.
    """
    if not answers:
        raise ValueError("VQA accuracy needs at least one ground-truth answer")
    pred = normalize_answer(prediction)
    gold = [normalize_answer(a) for a in answers]
    if len(gold) == 1:
        return float(pred == gold[0])
    hits = [g == pred for g in gold]
    total = sum(hits)
    return sum(min((total - hit) / 3.0, 1.0) for hit in hits) / len(gold)


def exact_match(prediction: str, answer) -> float:
    """1.0 when prediction and answer are equal after :func:`normalize_answer`."""
    return float(normalize_answer(prediction) == normalize_answer(answer))


def count_match(prediction: str, answer) -> float:
    """1.0 when the first number in the prediction equals the gold count (compared as numbers)."""
    gold = parse_count(answer)
    if gold is None:
        raise ValueError(f"gold count {answer!r} is not a number")
    pred = parse_count(prediction)
    return float(pred is not None and pred == gold)


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _anls_text(text: str) -> str:
    return " ".join(str(text).strip().lower().split())


def anls(prediction: str, answers: Sequence[str], threshold: float = 0.5) -> float:
    """Average Normalised Levenshtein Similarity for one question: max over gold answers of
    1 - NL when NL < threshold, else 0, with NL = edit distance / longer length, compared
    case-insensitively with surrounding whitespace trimmed (inner runs collapsed)."""
    if not answers:
        raise ValueError("ANLS needs at least one ground-truth answer")
    pred = _anls_text(prediction)
    best = 0.0
    for answer in answers:
        gold = _anls_text(answer)
        longest = max(len(pred), len(gold))
        distance = levenshtein(pred, gold) / longest if longest else 0.0
        best = max(best, 1.0 - distance if distance < threshold else 0.0)
    return best


def relaxed_match(prediction: str, answer, tolerance: float = 0.05) -> float:
    """ChartQA relaxed accuracy: when both parse as numbers, correct if
    |pred - gold| <= tolerance * |gold|; otherwise case-insensitive exact string match."""
    pred_num, gold_num = parse_number(prediction), parse_number(answer)
    if pred_num is not None and gold_num is not None:
        return float(abs(pred_num - gold_num) <= tolerance * abs(gold_num))
    return float(str(prediction).strip().lower() == str(answer).strip().lower())


def relaxed_accuracy(prediction: str, answers: Sequence[str] | str, tolerance: float = 0.05) -> float:
    """:func:`relaxed_match` against one answer or the best of several."""
    if isinstance(answers, str):
        answers = [answers]
    return max(relaxed_match(prediction, a, tolerance) for a in answers)


def binary_metrics(predictions: Iterable[str], labels: Iterable[str]) -> dict[str, float]:
    """Accuracy, precision, recall, F1 and yes-ratio with "yes" as the positive class.

    Predictions are read with :func:`yes_no`; labels must be "yes" or "no".
    """
    tp = fp = tn = fn = 0
    for prediction, label in zip(predictions, labels, strict=True):
        label = str(label).strip().lower()
        if label not in ("yes", "no"):
            raise ValueError(f"yes/no label expected, got {label!r}")
        said_yes = yes_no(prediction) == "yes"
        if said_yes:
            tp += label == "yes"
            fp += label == "no"
        else:
            fn += label == "yes"
            tn += label == "no"
    n = tp + fp + tn + fn
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "accuracy": (tp + tn) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "yes_ratio": (tp + fp) / n if n else 0.0,
    }
