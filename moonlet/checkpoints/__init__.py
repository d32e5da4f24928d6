"""Checkpoints: safetensors reading and writing, layouts, hub resolution, config.json, conversion
from transformers."""
