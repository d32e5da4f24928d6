"""Engine logic against a tiny deterministic mock model (no weights, no tokenizer files).

The mock stores, for every fed token, a key ``(id + 1) * (position + 1)`` and a value
``id + 3 * position + 1`` into the KV cache row and position the engine hands it, and its
"hidden state" at a query position is the sum of the stored keys and values that the
attention mask lets it see. The next-token logits are
a known function (``rule``) of that sum and of the last fed id. A pure-Python oracle that
knows the *correct* positions predicts every output, so writing to the wrong cache row, at
the wrong position, or reading stale/padded entries changes the ids.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from torch import nn

from moonlet.config import MoondreamConfig, RegionConfig, TextConfig, VisionConfig
from moonlet.generation.engine import LENGTH, STOP, ContextOverflowError, EncodedImage, Engine, Step, TextRequest
from moonlet.generation.kv_cache import KVCache
from moonlet.generation.locate import locate
from moonlet.generation.sampling import SamplingSettings

VOCAB = 64
CONTEXT = 64
BOS = 0


def key_value(token, position):
    """What the mock stores in the key cache for ``token`` fed at ``position``."""
    return (token + 1) * (position + 1)


def value_value(token, position):
    """What the mock stores in the value cache (a different function, so both are checked)."""
    return token + 3 * position + 1


def sum_rule(total, last):
    return total % VOCAB


def next_rule(total, last):
    return (last + 1) % VOCAB


def constant_rule(value):
    return lambda total, last: torch.full_like(last, value) if isinstance(last, torch.Tensor) else value


def tiny_config(context: int = CONTEXT, vocab: int = VOCAB) -> MoondreamConfig:
    text = TextConfig(dim=8, ff_dim=16, n_layers=1, vocab_size=vocab, max_context=context, n_heads=1, n_kv_heads=1)
    vision = VisionConfig(
        enc_dim=8,
        enc_patch_size=14,
        enc_n_layers=1,
        enc_ff_dim=16,
        enc_n_heads=1,
        proj_out_dim=8,
        proj_inner_dim=16,
        crop_size=28,
        max_crops=1,
        overlap_margin=0,
    )
    region = RegionConfig(dim=8, enabled=False)
    return MoondreamConfig(text=text, vision=vision, region=region, dtype="float32").validate()


class MockModel(nn.Module):
    """Satisfies the part of ``MoondreamModel`` that ``Engine`` uses."""

    def __init__(self, rule=sum_rule, sharpness: float = 1.0, context: int = CONTEXT):
        super().__init__()
        self.config = tiny_config(context)
        self.rule = rule
        self.sharpness = sharpness
        self.region = None
        self.calls: list[dict] = []

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    @property
    def mask_prefix_len(self) -> int:
        return self.config.prefix_len if self.config.text.prefix_bidirectional else 0

    def embed_tokens(self, ids: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(*ids.shape, self.config.text.dim)
        out[..., 0] = ids.float()
        return out

    def forward_embeddings(
        self, embeddings, positions, cache=None, rows=slice(None), kv_len=None, mask_prefix_len=None
    ):
        assert cache is not None, "the engine always runs with a cache"
        assert embeddings.dim() == 3 and positions.shape == embeddings.shape[:2]
        prefix = self.mask_prefix_len if mask_prefix_len is None else mask_prefix_len
        kv_len = kv_len if kv_len is not None else int(positions.max()) + 1
        ids = embeddings[..., 0].round().long()  # B, T
        batch, width = ids.shape
        k = torch.zeros(batch, 1, width, self.config.text.head_dim)
        v = torch.zeros_like(k)
        k[..., 0] = key_value(ids, positions)[:, None].float()
        v[..., 0] = value_value(ids, positions)[:, None].float()
        layer = cache.layer(0, rows)
        layer.write(positions, k, v)
        keys_read, values = layer.read(kv_len)  # B, H, S, D
        assert values.shape[2] == kv_len, "kv_len beyond the cache"
        keys = torch.arange(kv_len)[None, None, :]
        query = positions[:, :, None]
        allowed = (keys <= query) | ((query < prefix) & (keys < prefix))  # B, T, S
        future = bool((allowed & (keys > query)).any())  # a query that sees a later position
        self.calls.append({"positions": positions.clone(), "kv_len": kv_len, "prefix": prefix, "future": future})
        stored = keys_read[:, 0, None, :, 0] + values[:, 0, None, :, 0]  # B, 1, S
        total = (stored * allowed).sum(-1)  # B, T
        hidden = torch.zeros(batch, width, self.config.text.dim)
        hidden[..., 0] = total
        hidden[..., 1] = ids.float()
        return hidden

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        total = hidden[..., 0].round().long()
        last = hidden[..., 1].round().long()
        target = self.rule(total, last)
        distance = (torch.arange(VOCAB) - target[..., None]) % VOCAB
        return -self.sharpness * distance.float()


def oracle(prefix_ids, prompt, max_tokens, stop_ids=(), masked_ids=(), rule=sum_rule, context=CONTEXT):
    """Greedy decoding of the mock, computed in plain Python with the correct positions."""
    history = list(prefix_ids) + list(prompt)
    out: list[int] = []
    first = True
    while True:
        total = sum(key_value(token, pos) + value_value(token, pos) for pos, token in enumerate(history))
        target = int(rule(total, history[-1]))
        banned = set() if first else set(masked_ids)
        token = min((v for v in range(VOCAB) if v not in banned), key=lambda v: (v - target) % VOCAB)
        first = False
        if token in stop_ids:
            return out
        out.append(token)
        if len(out) >= max_tokens or len(history) >= context:
            return out
        history.append(token)


IMAGE_A = (BOS, 10, 11, 12, 13)
IMAGE_B = (BOS, 40, 2, 33, 7)


def make_prefix(engine: Engine, ids, bidirectional: int | None = None) -> EncodedImage:
    embeddings = engine.model.embed_tokens(torch.tensor([list(ids)]))
    if bidirectional is None:
        bidirectional = engine.model.config.prefix_len if len(ids) == engine.model.config.prefix_len else 0
    return engine.prefill_prefix(embeddings, bidirectional)


def greedy(max_tokens: int) -> SamplingSettings:
    return SamplingSettings(max_tokens=max_tokens, temperature=0.0, top_p=1.0)


def run_alone(rule, prefix_ids, prompt, settings, stop_ids=(), masked_ids=(), sharpness=1.0):
    engine = Engine(MockModel(rule, sharpness))
    prefix = make_prefix(engine, prefix_ids)
    (ids,) = engine.generate([TextRequest(prefix, list(prompt), settings, tuple(stop_ids), tuple(masked_ids))])
    return ids


# --- the mock and the oracle themselves -------------------------------------------------------


def test_tiny_config_geometry():
    config = tiny_config()
    assert config.prefix_len == 5 == len(IMAGE_A)
    assert config.text.max_context == CONTEXT and config.text.vocab_size == VOCAB


def test_prefill_prefix_stores_each_token_at_its_position():
    engine = Engine(MockModel())
    prefix = make_prefix(engine, IMAGE_B)
    assert prefix.length == 5
    assert prefix.cache.slots == 1 and prefix.cache.context == 5
    keys = torch.tensor([key_value(t, p) for p, t in enumerate(IMAGE_B)], dtype=torch.float32)
    values = torch.tensor([value_value(t, p) for p, t in enumerate(IMAGE_B)], dtype=torch.float32)
    assert torch.equal(prefix.cache.keys[0, 0, 0, :, 0], keys)
    assert torch.equal(prefix.cache.values[0, 0, 0, :, 0], values)
    assert engine.model.calls[-1]["prefix"] == 5  # bidirectional over the whole image prefix


def test_simple_rule_gives_hand_computed_ids():
    # next id = last fed id + 1: prompt [10, 20] -> 21, 22, 23, 24
    assert run_alone(next_rule, IMAGE_A, [10, 20], greedy(4)) == [21, 22, 23, 24]
    assert run_alone(next_rule, IMAGE_A, [62], greedy(3)) == [63, 0, 1]  # wraps around the vocab


def test_oracle_matches_engine_single_requests():
    cases = [
        (IMAGE_A, [1, 2, 3], 10),
        (IMAGE_B, [9], 7),
        (IMAGE_A, list(range(20, 40)), 12),
        ((BOS,), [5, 6, 7, 8], 9),
    ]
    for prefix_ids, prompt, max_tokens in cases:
        expected = oracle(prefix_ids, prompt, max_tokens)
        assert len(expected) == max_tokens  # no stop ids: exactly max_tokens
        assert run_alone(sum_rule, prefix_ids, prompt, greedy(max_tokens)) == expected


def test_output_depends_on_the_image_prefix():
    # the same prompt after different prefixes must differ, or the prefix copy is not exercised
    a = run_alone(sum_rule, IMAGE_A, [1, 2, 3], greedy(8))
    b = run_alone(sum_rule, IMAGE_B, [1, 2, 3], greedy(8))
    assert a != b
    assert a == oracle(IMAGE_A, [1, 2, 3], 8) and b == oracle(IMAGE_B, [1, 2, 3], 8)


@pytest.mark.parametrize(
    "prefix_ids",
    [
        pytest.param(IMAGE_A, id="image-prefix"),
        pytest.param((BOS,), id="text-only-prefix"),
    ],
)
def test_prompt_and_decode_attention_is_causal(prefix_ids):
    # Regression: _start/_step once left mask_prefix_len to the model default, so after a BOS-only
    # prefix the prompt fell inside the bidirectional window [0, config.prefix_len) and attended
    # later prompt tokens (the reference is fully causal for text-only queries).
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, prefix_ids)
    engine.model.calls.clear()  # the prefix prefill itself may be bidirectional
    engine.generate([TextRequest(prefix, [1, 2, 3], greedy(3))])
    assert len(engine.model.calls) == 3  # one prefill of the prompt, two decode steps
    assert [call["future"] for call in engine.model.calls] == [False, False, False]


# --- max_tokens, stop ids, masked ids -------------------------------------------------------


@pytest.mark.parametrize("max_tokens", [1, 2, 5, 17])
def test_max_tokens_is_respected(max_tokens):
    ids = run_alone(next_rule, IMAGE_A, [30], greedy(max_tokens))
    assert ids == [(31 + i) % VOCAB for i in range(max_tokens)]


def test_stop_id_stops_and_is_not_returned():
    assert run_alone(next_rule, IMAGE_A, [10], greedy(50), stop_ids=(14,)) == [11, 12, 13]
    # any of several stop ids
    assert run_alone(next_rule, IMAGE_A, [10], greedy(50), stop_ids=(40, 13, 30)) == [11, 12]


def test_stop_id_on_the_first_step_gives_nothing():
    engine = Engine(MockModel(next_rule))
    request = TextRequest(make_prefix(engine, IMAGE_A), [10], greedy(5), stop_ids=(11,))
    assert list(engine.generate_stream([request])) == [Step([None], [STOP])]  # the stop is still reported
    assert engine.generate([request]) == [[]]


def test_keep_stop_returns_the_stop_id_last_and_stops():
    engine = Engine(MockModel(next_rule))
    prefix = make_prefix(engine, IMAGE_A)
    keep = TextRequest(prefix, [10], greedy(50), stop_ids=(13,), keep_stop=True)
    drop = TextRequest(prefix, [20], greedy(50), stop_ids=(23,))
    assert engine.generate([keep]) == [[11, 12, 13]]
    steps = list(engine.generate_stream([keep, drop]))
    assert [s.tokens for s in steps] == [[11, 21], [12, 22], [13, None]]
    assert steps[-1].finish_reasons == [STOP, STOP]
    first = TextRequest(prefix, [10], greedy(5), stop_ids=(11,), keep_stop=True)
    assert engine.generate([first]) == [[11]]


def test_stream_yields_one_id_per_row_per_step_and_none_after_stop():
    engine = Engine(MockModel(next_rule))
    prefix = make_prefix(engine, IMAGE_A)
    requests = [
        TextRequest(prefix, [10], greedy(10), stop_ids=(13,)),  # 11, 12, then stop
        TextRequest(prefix, [20], greedy(4)),  # 21..24
    ]
    steps = list(engine.generate_stream(requests))
    assert [s.tokens for s in steps] == [[11, 21], [12, 22], [None, 23], [None, 24]]
    assert [s.finish_reasons for s in steps] == [[None, None], [None, None], [STOP, None], [None, LENGTH]]


def finish_reasons(engine, requests) -> list[str]:
    """Each request's finish reason, from the one step that reports it."""
    found: dict[int, str] = {}
    for step in engine.generate_stream(requests):
        for index, reason in enumerate(step.finish_reasons):
            if reason is not None:
                assert index not in found, "a row finished twice"
                found[index] = reason
    return [found[i] for i in range(len(requests))]


def test_finish_reasons_say_why_each_row_stopped():
    engine = Engine(MockModel(next_rule))
    prefix = make_prefix(engine, IMAGE_A)
    longest = [1] * (CONTEXT - len(IMAGE_A) - 1)  # room for 2 tokens before the context is full
    requests = [
        TextRequest(prefix, [10], greedy(50), stop_ids=(13,)),  # a stop id
        TextRequest(prefix, [20], greedy(3)),  # max_tokens
        TextRequest(prefix, longest, greedy(50)),  # the context
        TextRequest(prefix, [30], greedy(3), stop_ids=(33,), keep_stop=True),  # a kept stop id as the last token
        TextRequest(prefix, [40], greedy(3), stop_ids=(44,)),  # max_tokens just before the stop id
    ]
    assert finish_reasons(engine, requests) == [STOP, LENGTH, LENGTH, STOP, LENGTH]
    assert [len(ids) for ids in engine.generate(requests)] == [2, 3, 2, 3, 3]


def test_masked_ids_are_masked_only_after_the_first_step():
    rule = constant_rule(7)  # the model always prefers 7, then 8, 9, ...
    assert run_alone(rule, IMAGE_A, [1], greedy(4)) == [7, 7, 7, 7]
    assert run_alone(rule, IMAGE_A, [1], greedy(4), masked_ids=(7,)) == [7, 8, 8, 8]
    assert run_alone(rule, IMAGE_A, [1], greedy(4), masked_ids=(7, 8)) == [7, 9, 9, 9]


def test_masked_ids_apply_to_their_own_row_only():
    engine = Engine(MockModel(constant_rule(7)))
    prefix = make_prefix(engine, IMAGE_A)
    requests = [
        TextRequest(prefix, [1], greedy(3), masked_ids=(7,)),
        TextRequest(prefix, [1, 2], greedy(3)),
        TextRequest(prefix, [3], greedy(3), masked_ids=(7, 8)),
    ]
    assert engine.generate(requests) == [[7, 8, 8], [7, 7, 7], [7, 9, 9]]


def test_masked_ids_also_apply_when_sampling():
    # sharp logits: sampling at low temperature is effectively greedy, so the mask must be honoured
    settings = SamplingSettings(max_tokens=4, temperature=0.05, top_p=1.0, seed=3)
    assert run_alone(constant_rule(7), IMAGE_A, [1], settings, masked_ids=(7,), sharpness=10.0) == [7, 8, 8, 8]


# --- batching -------------------------------------------------------------------------------


MIXED = [
    # prefix ids, prompt, max_tokens, stop ids, masked ids
    (IMAGE_A, [1, 2, 3], 9, (), ()),
    (IMAGE_B, [4], 14, (), ()),
    (IMAGE_A, list(range(30, 52)), 6, (), ()),
    (IMAGE_B, [17, 18, 19, 20, 21, 22, 23], 20, (), ()),
]


def _with_stops(cases):
    """Give each case a stop id taken from its own greedy output (when long enough) and a masked id."""
    out = []
    for index, (prefix_ids, prompt, max_tokens, _, _) in enumerate(cases):
        free = oracle(prefix_ids, prompt, max_tokens)
        stop = (free[index + 1],) if len(free) > index + 1 else ()
        masked = (free[0],) if index % 2 else ()
        out.append((prefix_ids, prompt, max_tokens, stop, masked))
    return out


@pytest.mark.parametrize("stops", [False, True], ids=["no-stops", "stops-and-masks"])
def test_mixed_batch_equals_each_request_alone(stops):
    cases = _with_stops(MIXED) if stops else MIXED
    alone = [run_alone(sum_rule, p, q, greedy(m), s, k) for p, q, m, s, k in cases]
    expected = [oracle(p, q, m, s, k) for p, q, m, s, k in cases]
    assert alone == expected
    lengths = {len(ids) for ids in expected}
    assert len(lengths) > 1  # rows finish at different steps

    engine = Engine(MockModel(sum_rule))
    prefixes = {ids: make_prefix(engine, ids) for ids in (IMAGE_A, IMAGE_B)}
    requests = [TextRequest(prefixes[p], q, greedy(m), s, k) for p, q, m, s, k in cases]
    assert engine.generate(requests) == expected
    # and in another order (row index must not matter)
    assert engine.generate(requests[::-1]) == expected[::-1]


def test_engine_reuse_across_batch_sizes_does_not_leak_state():
    engine = Engine(MockModel(sum_rule))
    prefixes = {ids: make_prefix(engine, ids) for ids in (IMAGE_A, IMAGE_B)}
    big = [TextRequest(prefixes[p], q, greedy(m)) for p, q, m, _, _ in MIXED]
    engine.generate(big)  # fills the shared cache with other requests' keys
    slots = engine.cache.slots
    small = TextRequest(prefixes[IMAGE_B], [4, 5], greedy(10))
    assert engine.generate([small]) == [oracle(IMAGE_B, [4, 5], 10)]
    assert engine.cache.slots == slots  # reused, not reallocated
    assert engine.generate(big) == [oracle(p, q, m) for p, q, m, _, _ in MIXED]


def test_row_that_stops_first_does_not_disturb_others():
    # row 0 stops on its very first token; rows 1 and 2 go on
    first = oracle(IMAGE_A, [1, 2], 1)[0]
    engine = Engine(MockModel(sum_rule))
    prefixes = {ids: make_prefix(engine, ids) for ids in (IMAGE_A, IMAGE_B)}
    requests = [
        TextRequest(prefixes[IMAGE_A], [1, 2], greedy(30), stop_ids=(first,)),
        TextRequest(prefixes[IMAGE_B], [8, 9, 10, 11], greedy(15)),
        TextRequest(prefixes[IMAGE_A], [3], greedy(12)),
    ]
    expected = [[], oracle(IMAGE_B, [8, 9, 10, 11], 15), oracle(IMAGE_A, [3], 12)]
    steps = [s.tokens for s in engine.generate_stream(requests)]
    assert len(steps) == 15
    assert all(step[0] is None for step in steps)
    assert [[s[i] for s in steps if s[i] is not None] for i in range(3)] == expected
    assert all(step[2] is None for step in steps[12:])


def test_row_that_reaches_the_context_does_not_disturb_others():
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, IMAGE_B)
    longest = [(5 * i + 1) % VOCAB for i in range(CONTEXT - len(IMAGE_B) - 1)]  # room for 2 tokens
    requests = [TextRequest(prefix, longest, greedy(50)), TextRequest(prefix, [2, 3], greedy(10))]
    expected = [oracle(IMAGE_B, longest, 50), oracle(IMAGE_B, [2, 3], 10)]
    assert [len(ids) for ids in expected] == [2, 10]
    assert engine.generate(requests) == expected


# Regression: _step once advanced the position of finished rows too, so a finished row with a
# long prompt was fed past the context while other rows continued (IndexError in the cache write).
def test_finished_row_with_long_prompt_does_not_overflow_the_context():
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, IMAGE_A)
    long_prompt = list(range(1, 51))  # positions 5..54; 9 free positions after it
    requests = [
        TextRequest(prefix, long_prompt, greedy(1)),  # done after one token
        TextRequest(prefix, [4], greedy(20)),  # keeps the batch running for 19 more steps
    ]
    assert engine.generate(requests) == [oracle(IMAGE_A, long_prompt, 1), oracle(IMAGE_A, [4], 20)]


# Regression: with a BOS-only prefix the prompt and decode positions once fell inside the model's
# bidirectional window (mask_prefix_len defaulted to config.prefix_len), so in a batch such a row
# attended right-padding keys beyond its own end and the batch output differed from the run alone.
def test_batch_with_text_only_and_image_prefixes_equals_alone():
    engine = Engine(MockModel(sum_rule))
    text_only = make_prefix(engine, (BOS,))
    image = make_prefix(engine, IMAGE_A)
    cases = [((BOS,), text_only, [7], 8), (IMAGE_A, image, list(range(20, 30)), 8)]
    alone = [run_alone(sum_rule, ids, prompt, greedy(m)) for ids, _, prompt, m in cases]
    assert alone == [oracle(ids, prompt, m) for ids, _, prompt, m in cases]
    batch = engine.generate([TextRequest(prefix, prompt, greedy(m)) for _, prefix, prompt, m in cases])
    assert batch == alone


# Regression: _start once padded positions as prefix.length + arange(width) for every row, so a row
# with a longer prefix and a short prompt next to a long prompt got pad positions >= max_context.
def test_batch_with_different_prefix_lengths_near_the_context_limit():
    engine = Engine(MockModel(sum_rule))
    text_only = make_prefix(engine, (BOS,))
    image = make_prefix(engine, IMAGE_A)
    long_prompt = [(3 * i) % VOCAB for i in range(1, 61)]  # positions 1..60: fits after BOS
    requests = [TextRequest(text_only, long_prompt, greedy(2)), TextRequest(image, [9], greedy(2))]
    assert engine.generate(requests) == [oracle((BOS,), long_prompt, 2), oracle(IMAGE_A, [9], 2)]


# --- seeded sampling ------------------------------------------------------------------------


def sampled(seed, max_tokens=12, prompt=(5, 6)):
    settings = SamplingSettings(max_tokens=max_tokens, temperature=1.0, top_p=1.0, seed=seed)
    return run_alone(sum_rule, IMAGE_A, list(prompt), settings, sharpness=0.01)  # nearly flat logits


def test_seeded_sampling_repeats_for_the_same_seed():
    first = sampled(1234)
    assert len(first) == 12
    assert sampled(1234) == first


def test_seeded_sampling_differs_for_another_seed():
    runs = {tuple(sampled(seed)) for seed in (1, 2, 3)}
    assert len(runs) == 3
    # flat logits: the sample is not the greedy path
    assert sampled(1) != oracle(IMAGE_A, [5, 6], 12)


def test_seeded_rows_in_a_batch_equal_their_runs_alone():
    engine = Engine(MockModel(sum_rule, sharpness=0.01))
    prefix = make_prefix(engine, IMAGE_A)
    settings = [
        SamplingSettings(max_tokens=10, temperature=1.0, top_p=1.0, seed=11),
        SamplingSettings(max_tokens=6, temperature=0.0, top_p=1.0),
        SamplingSettings(max_tokens=8, temperature=0.7, top_p=0.9, seed=22),
    ]
    prompts = [[5, 6], [1, 2, 3], [9]]
    alone = [run_alone(sum_rule, IMAGE_A, p, s, sharpness=0.01) for p, s in zip(prompts, settings)]
    batch = engine.generate([TextRequest(prefix, p, s) for p, s in zip(prompts, settings)])
    assert batch == alone
    assert batch[1] == oracle(IMAGE_A, [1, 2, 3], 6)  # the greedy row is still greedy


# --- context limit and empty prompts ----------------------------------------------------------


def test_context_overflow_raises_with_the_allowed_length():
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, IMAGE_A)
    allowed = CONTEXT - len(IMAGE_A) - 1  # one position is kept for the first generated token
    with pytest.raises(ContextOverflowError, match=rf"at most {allowed} fit") as info:
        engine.generate([TextRequest(prefix, [1] * (allowed + 1), greedy(3))])
    assert str(allowed + 1) in str(info.value)
    assert isinstance(info.value, ValueError)
    # the same check for a text-only prefix: one more position is free
    text_only = make_prefix(engine, (BOS,))
    with pytest.raises(ContextOverflowError, match=rf"at most {CONTEXT - 2} fit"):
        engine.generate([TextRequest(text_only, [1] * (CONTEXT - 1), greedy(3))])
    # one overflowing request fails the whole batch
    with pytest.raises(ContextOverflowError):
        engine.generate([TextRequest(prefix, [1], greedy(3)), TextRequest(prefix, [1] * 80, greedy(3))])


def test_longest_prompt_fits_and_generation_stops_at_the_context():
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, IMAGE_A)
    allowed = CONTEXT - len(IMAGE_A) - 1
    for length, room in ((allowed, 2), (allowed - 1, 3), (allowed - 4, 6)):
        prompt = [(7 * i) % VOCAB for i in range(length)]
        (ids,) = engine.generate([TextRequest(prefix, prompt, greedy(100))])
        assert ids == oracle(IMAGE_A, prompt, 100)
        assert len(ids) == room  # the last token needs no position of its own


def test_empty_prompt_raises():
    engine = Engine(MockModel(sum_rule))
    prefix = make_prefix(engine, IMAGE_A)
    with pytest.raises(ValueError, match="empty") as info:
        engine.generate([TextRequest(prefix, [], greedy(3))])
    assert not isinstance(info.value, ContextOverflowError)
    with pytest.raises(ValueError, match="empty"):
        engine.generate([TextRequest(prefix, [1], greedy(3)), TextRequest(prefix, [], greedy(3))])


def test_locate_without_region_head_raises():
    engine = Engine(MockModel(sum_rule))
    with pytest.raises(ValueError, match="no region head"):
        locate(engine, make_prefix(engine, IMAGE_A), [1, 2], with_size=True, max_objects=3, eos_id=0)


def test_kv_cache_allocate_uses_the_text_geometry():
    config = tiny_config()
    cache = KVCache.allocate(config.text, 3, "cpu", torch.float32)
    assert cache.keys.shape == (1, 3, 1, CONTEXT, 8) and cache.values.shape == cache.keys.shape
    assert cache.nbytes() == 2 * 3 * CONTEXT * 8 * 4
    small = KVCache.allocate(replace(config.text, n_layers=2), 1, "cpu", torch.float32, context=5)
    assert small.keys.shape == (2, 1, 1, 5, 8)
