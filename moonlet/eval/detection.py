"""COCO-style detection mAP with numpy: greedy matching by score per image and category,
101-point interpolated precision, averaged over categories (and IoU thresholds).

Boxes are ``[x_min, y_min, x_max, y_max]`` in any consistent unit (IoU does not change when
x and y are scaled, so normalised boxes give the same result as pixels).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


def box_iou(dets: np.ndarray, gts: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix (len(dets), len(gts)); for crowd boxes the union is the detection's area."""
    dets = np.asarray(dets, dtype=np.float64).reshape(-1, 4)
    gts = np.asarray(gts, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(dets[:, None, 0], gts[None, :, 0])
    y0 = np.maximum(dets[:, None, 1], gts[None, :, 1])
    x1 = np.minimum(dets[:, None, 2], gts[None, :, 2])
    y1 = np.minimum(dets[:, None, 3], gts[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_d = np.clip(dets[:, 2] - dets[:, 0], 0, None) * np.clip(dets[:, 3] - dets[:, 1], 0, None)
    area_g = np.clip(gts[:, 2] - gts[:, 0], 0, None) * np.clip(gts[:, 3] - gts[:, 1], 0, None)
    union = area_d[:, None] + area_g[None, :] - inter
    if crowd is not None and len(gts):
        union = np.where(np.asarray(crowd, dtype=bool)[None, :], area_d[:, None], union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _match_image(dets, gts, crowd, thresholds):
    """(T, D) arrays: detection matched a real box, detection matched a crowd box (ignored)."""
    order = np.argsort(crowd, kind="stable")  # real boxes first, crowd boxes last
    gts, crowd = gts[order], crowd[order]
    ious = box_iou(dets, gts, crowd)
    matched = np.zeros((len(thresholds), len(dets)), dtype=bool)
    ignored = np.zeros_like(matched)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(len(gts), dtype=bool)
        for d in range(len(dets)):
            best, best_iou = -1, min(threshold, 1 - 1e-10)
            for g in range(len(gts)):
                if taken[g] and not crowd[g]:
                    continue
                if best > -1 and not crowd[best] and crowd[g]:
                    break  # a real match beats any crowd box
                if ious[d, g] < best_iou:
                    continue
                best, best_iou = g, ious[d, g]
            if best == -1:
                continue
            if crowd[best]:
                ignored[t, d] = True
            else:
                matched[t, d] = True
                taken[best] = True
    return matched, ignored


def average_precision(scores: np.ndarray, matched: np.ndarray, ignored: np.ndarray, n_gt: int) -> float:
    """101-point interpolated AP of detections pooled over images (one IoU threshold)."""
    order = np.argsort(-scores, kind="mergesort")
    keep = ~ignored[order]
    tp = matched[order][keep].astype(np.float64)
    if not len(tp):
        return 0.0
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(1.0 - tp)
    recall = tp_sum / n_gt
    precision = tp_sum / (tp_sum + fp_sum)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # make it non-increasing
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def coco_map(
    ground_truth: Iterable[Mapping[str, Any]],
    detections: Iterable[Mapping[str, Any]],
    thresholds: Iterable[float] = COCO_IOU_THRESHOLDS,
    max_dets: int = 100,
) -> dict[str, Any]:
    """mAP over categories and IoU thresholds.

    ``ground_truth`` rows: ``{"image", "category", "box", "crowd"?}``; ``detections`` rows:
    ``{"image", "category", "box", "score"?}`` (score 1.0 when absent; equal scores rank by
    image key, then input order).
    Returns ``map`` (mean over thresholds), ``map50``, ``map75`` when 0.75 is a threshold, and
    ``per_category`` AP; categories without real ground-truth boxes are left out.
    """
    thresholds = np.asarray(list(thresholds), dtype=np.float64)
    gts: dict[Any, dict[Any, list]] = defaultdict(lambda: defaultdict(list))
    dets: dict[Any, dict[Any, list]] = defaultdict(lambda: defaultdict(list))
    for row in ground_truth:
        gts[row["category"]][row["image"]].append((list(row["box"]), bool(row.get("crowd", False))))
    for row in detections:
        dets[row["category"]][row["image"]].append((list(row["box"]), float(row.get("score", 1.0))))

    per_category: dict[str, list[float]] = {}
    for category in sorted(set(gts) | set(dets), key=str):
        aps = _category_ap(gts.get(category, {}), dets.get(category, {}), thresholds, max_dets)
        if aps is not None:
            per_category[str(category)] = aps

    result: dict[str, Any] = {"categories": len(per_category), "map": 0.0, "map50": 0.0}
    if not per_category:
        return result
    table = np.array(list(per_category.values()))
    result["map"] = float(table.mean())
    columns = {}
    for name, value in (("map50", 0.5), ("map75", 0.75)):
        hit = np.flatnonzero(np.isclose(thresholds, value))
        if len(hit):
            columns[name] = hit[0]
            result[name] = float(table[:, hit[0]].mean())
    result["per_category"] = {
        category: {"ap": float(np.mean(aps)), **({"ap50": aps[columns["map50"]]} if "map50" in columns else {})}
        for category, aps in per_category.items()
    }
    return result


def _image_order(gts: Mapping, dets: Mapping) -> list:
    """Images sorted by key (pycocotools pools them in image-id order, which decides ties
    between equal scores); keys that cannot be compared keep first-seen order."""
    images = list(dict.fromkeys([*gts, *dets]))
    try:
        return sorted(images)
    except TypeError:
        return images


def _category_ap(gts: Mapping, dets: Mapping, thresholds: np.ndarray, max_dets: int) -> list[float] | None:
    """AP per threshold for one category; None when it has no real ground-truth box."""
    n_gt, scores, matched, ignored = 0, [], [], []
    for image in _image_order(gts, dets):
        boxes = gts.get(image, [])
        crowd = np.array([c for _, c in boxes], dtype=bool)
        n_gt += int((~crowd).sum())
        found = dets.get(image, [])
        found = [found[i] for i in np.argsort([-s for _, s in found], kind="stable")][:max_dets]
        if not found:
            continue
        gt_boxes = np.array([b for b, _ in boxes], dtype=np.float64).reshape(-1, 4)
        m, ig = _match_image(np.array([b for b, _ in found], dtype=np.float64), gt_boxes, crowd, thresholds)
        scores.extend(s for _, s in found)
        matched.append(m)
        ignored.append(ig)
    if n_gt == 0:
        return None
    if not scores:
        return [0.0] * len(thresholds)
    score_arr = np.array(scores)
    m_all, ig_all = np.concatenate(matched, axis=1), np.concatenate(ignored, axis=1)
    return [average_precision(score_arr, m_all[t], ig_all[t], n_gt) for t in range(len(thresholds))]
