"""Benchmarks. ``moonlet bench`` (``python -m moonlet.bench``) measures speed and memory of moonlet
side by side with the transformers route, both at the same dimensions and dtype with cheap
deterministic random weights (or a checkpoint for moonlet with ``--model``). Times are medians over
``--repeats`` runs after ``--warmup`` runs; decode speed is the median interval between consecutive
tokens. Output: a table, then one JSON line.

- ``models``: the measured configurations and random weights; ``plan``: the shared inputs;
- ``measure``: timing, memory and bandwidth helpers;
- ``moonlet_route``, ``transformers_route``: the two routes; ``llamacpp_route`` (``--llamacpp``): the
  text decoder through llama.cpp, from a GGUF written by ``gguf_export``;
- ``kernel_timings``: every fp16/int8/int4 matmul kernel; ``peaks``: FLOP counts, the time a part's
  own linear calls take alone (its floor) and the peak memory of loading a checkpoint (``--load-peaks``);
- ``report``: ratios, table and JSON result; ``cli``: the ``moonlet bench`` sub-command.

Separate benchmarks: ``python -m moonlet.bench.server`` (concurrent against sequential HTTP
requests), ``python -m moonlet.bench.loadtest`` (the server at 1×, 2× and 4× its capacity) and
``python -m moonlet.bench.ray`` (``moonlet batch`` alone and through the Ray pipeline).
"""
