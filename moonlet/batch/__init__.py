"""Batch inference on one machine: inputs, rows and the resumable JSONL writer (Ray runs in ``moonlet.scale``)."""
