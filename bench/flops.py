"""Floating-point work of a model, counted from its layers' shapes (no profiler needed).

Multiply-adds per image: Conv2D ``out_h * out_w * filters * k_h * k_w * in_channels``; Conv2DTranspose
``in_h * in_w * in_channels * k_h * k_w * filters`` (every input pixel scatters a kernel); Dense
``inputs * units``. A multiply-add is 2 FLOPs. A training step is counted as 3 forward passes: the
forward pass, the gradient with respect to the activations and the one with respect to the weights
(the usual convention; the first layer's input gradient is not computed, so it slightly overcounts).
Biases, activations, the loss and the optimizer are ignored: they are memory-bound, not FLOP-bound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras


@dataclass
class LayerWork:
    name: str
    kind: str
    macs: int  # multiply-adds per image, forward


def _spatial(shape) -> tuple[int, int, int]:
    _, height, width, channels = shape
    return height, width, channels


def layer_macs(layer: keras.layers.Layer) -> int:
    """Forward multiply-adds per image of one layer; 0 for layers without a matrix product."""
    if isinstance(layer, keras.layers.Conv2DTranspose):
        in_h, in_w, in_c = _spatial(layer.input.shape)
        k_h, k_w = layer.kernel_size
        return in_h * in_w * in_c * k_h * k_w * layer.filters
    if isinstance(layer, keras.layers.Conv2D):
        out_h, out_w, _ = _spatial(layer.output.shape)
        in_c = layer.input.shape[-1]
        k_h, k_w = layer.kernel_size
        return out_h * out_w * layer.filters * k_h * k_w * in_c
    if isinstance(layer, keras.layers.Dense):
        return math.prod(layer.input.shape[1:]) * layer.units
    return 0


def model_work(*parts: keras.Model) -> list[LayerWork]:
    """The layers with a matrix product in functional models (e.g. an encoder and a decoder)."""
    work = []
    for part in parts:
        for layer in part.layers:
            macs = layer_macs(layer)
            if macs:
                work.append(LayerWork(f"{part.name}/{layer.name}", type(layer).__name__, macs))
    return work


def training_flops_per_image(*parts: keras.Model) -> int:
    return 3 * 2 * sum(layer.macs for layer in model_work(*parts))
