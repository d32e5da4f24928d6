"""Batch inference on one machine (``moonlet batch``); the Ray pipeline in ``moonlet.scale`` builds on it.

- ``inputs``: a folder, glob or manifest (local or a URI) as records, and reading their bytes;
- ``rows``: the task and one batch of records through a model as output rows (shared with Ray);
- ``output``: the resumable JSONL file (keys already written, a torn last line cut);
- ``runner``: ``run_batch``, the loop tying them together with a progress bar.
"""
