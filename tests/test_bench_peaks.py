"""The bench's hardware references: FLOP counts against a hand count, GEMM rates, load peaks."""

from __future__ import annotations

import pytest
import torch
from conftest import GOLDEN_MODEL
from torch import nn

from moonlet.bench.peaks import flops_of, linear_floor_seconds, load_peak_bytes
from moonlet.quant import quantised_linear


def test_flops_of_a_linear_stack_is_the_hand_count():
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 32))
    x = torch.randn(10, 64)
    assert flops_of(lambda: model(x)) == 2 * 10 * (64 * 256 + 256 * 32)


def test_linear_floor_counts_every_call_at_its_rows():
    """The floor times each linear call of the function alone: a stack run twice makes 4 calls,
    and the floor is positive and no more than the function's own time allows (with slack)."""
    model = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 32))
    x = torch.randn(10, 64)
    seconds, calls = linear_floor_seconds(model, lambda: (model(x), model(x[:3])), torch.device("cpu"), torch.float32)
    assert calls == 4 and 0 < seconds < 1.0
    assert not model[0]._forward_pre_hooks  # the hooks are gone


def test_load_peak_is_measured_in_a_fresh_process():
    plain, quantised = load_peak_bytes(GOLDEN_MODEL, dtype="float32"), load_peak_bytes(GOLDEN_MODEL, "int8")
    assert 50 * 2**20 < quantised and 50 * 2**20 < plain  # at least the interpreter and torch
    # the parent's resident memory at the fork is not the child's (ru_maxrss would count it)
    resident = torch.ones(3 * 2**30 // 4)  # 3 GiB, touched
    assert load_peak_bytes(GOLDEN_MODEL, "int8") < 2 * 2**30
    del resident


@pytest.mark.parametrize(
    ("mode", "kernel"), [("int8", "fbgemm"), ("int8", "pack"), ("int4", "pack"), ("fp16", "fbgemm")]
)
def test_quantised_kernels_count_as_the_matmul_they_replace(mode, kernel):
    layer = quantised_linear(mode, torch.randn(64, 256), None, 128, kernel)
    x = torch.randn(5, 256)
    assert layer.kernel == kernel and flops_of(lambda: layer(x)) == 2 * 5 * 256 * 64
