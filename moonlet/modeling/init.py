"""Weight initialisation (the one place it happens): ``init_weights`` for models trained from scratch,
``init_uniform_`` for cheap benchmark weights, and ``build_random`` to build a model with either."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ..config import MoondreamConfig
from .model import MoondreamModel

LINEAR_STD = 0.02
FOURIER_STD = 10.0  # frequencies (cycles per unit) of the coordinate/size Fourier features


@torch.no_grad()
def init_weights(model: MoondreamModel, seed: int = 0) -> MoondreamModel:
    """Normal(0, 0.02) linears and embeddings, zero biases, unit LayerNorms; residual output
    projections scaled by 1/sqrt(2·layers); He-normal stem convolutions; Fourier frequencies
    Normal(0, 10)."""
    generator = torch.Generator().manual_seed(seed)

    def normal_(tensor: torch.Tensor, std: float) -> None:
        tensor.copy_(torch.randn(tensor.shape, generator=generator) * std)

    depth_scale = (2 * max(model.config.text.n_layers, 1)) ** -0.5
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            residual = name.endswith(("attn.proj", "mlp.fc2")) and ".blocks." in name
            normal_(module.weight, LINEAR_STD * (depth_scale if residual else 1.0))
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.Conv2d):  # the conv stem: He-normal for the GELUs that follow
            fan_in = module.in_channels * module.kernel_size[0] * module.kernel_size[1]
            normal_(module.weight, (2.0 / fan_in) ** 0.5)
            module.bias.zero_()
        elif isinstance(module, nn.LayerNorm):
            module.weight.fill_(1.0)
            module.bias.zero_()
    normal_(model.text.wte, LINEAR_STD)
    normal_(model.vision.pos_emb, LINEAR_STD)
    if model.region is not None:
        normal_(model.region.coord_features, FOURIER_STD)
        normal_(model.region.size_features, FOURIER_STD)
    return model


@torch.no_grad()
def init_uniform_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Cheap deterministic random weights at memory speed, for benchmarks: U(±1/√fan_in) matrices,
    unit LayerNorms, zero biases. Works on any module (ours or transformers'), on any device."""
    norms = {id(m.weight) for m in module.modules() if isinstance(m, nn.LayerNorm)}
    for index, (name, param) in enumerate(module.named_parameters()):
        if id(param) in norms:
            param.fill_(1.0)
        elif param.dim() < 2 or name.endswith("bias"):
            param.zero_()
        else:
            bound = param[0].numel() ** -0.5
            gen = torch.Generator(device=param.device).manual_seed(seed + index)
            param.uniform_(-bound, bound, generator=gen)
    return module


def build_random(
    config: MoondreamConfig,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    init: Callable[[nn.Module, int], object] = init_weights,
) -> MoondreamModel:
    """A freshly initialised model, allocated once on ``device`` in ``dtype`` (the derived tables
    stay float32). ``init``: ``init_weights`` (training) or ``init_uniform_`` (benchmarks)."""
    with torch.device("meta"):
        model = MoondreamModel(config)
    model = model.to(dtype).to_empty(device=device)
    model.init_buffers(device)
    init(model, seed)
    return model
