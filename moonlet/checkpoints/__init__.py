"""Checkpoints: safetensors reading and writing, layouts, hub resolution, config.json and conversion from transformers."""
