"""Converters from real annotations to moonlet rows: COCO instances and captions, Localized
Narratives, and an optional caption rewording step through an OpenAI-compatible endpoint.

    from moonlet.data.convert import convert_coco, convert_narratives, rewrite_dataset
    convert_coco("annotations/instances_val2017.json", "val2017", "data/coco",
                 captions="annotations/captions_val2017.json")
"""

from __future__ import annotations

from .coco import convert_coco
from .narratives import convert_narratives
from .rewrite import rewrite_dataset

__all__ = ["convert_coco", "convert_narratives", "rewrite_dataset"]
