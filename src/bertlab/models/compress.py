"""Making a trained model smaller: drop its top encoder layers, quantise its linear layers."""
from __future__ import annotations

import warnings

import torch
from torch import nn

from bertlab.errors import ConfigError
from bertlab.models.network import encoder_parts


def drop_top_layers(net: nn.Module, n: int) -> None:
    """Keep the lowest layers; the head then reads the output of the last one kept."""
    _, layers = encoder_parts(net)
    if not 0 <= n < len(layers):
        raise ConfigError(f"drop_layers={n} is not valid; this encoder has {len(layers)} layers, "
                          f"so use 0..{len(layers) - 1}")
    if n:
        stack = net.base_model.encoder if hasattr(net.base_model, "encoder") else \
            net.base_model.transformer
        stack.layer = nn.ModuleList(layers[:len(layers) - n])
        net.config.num_hidden_layers = len(layers) - n


def quantize(model: nn.Module) -> nn.Module:
    """int8 dynamic quantisation of every nn.Linear (weights int8, activations quantised per
    batch at run time): PyTorch's own, CPU only."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao announces its move to torchao
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def compress(model, drop_layers: int = 0, int8: bool = False):
    """`model` (a TextClassifier) made smaller in place; returns it."""
    drop_top_layers(model.net, drop_layers)
    if int8:
        model.net = quantize(model.net)
    return model
