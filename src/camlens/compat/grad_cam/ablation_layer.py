"""``pytorch_grad_cam.ablation_layer``: which layout AblationCAM ablates in.

In pytorch-grad-cam these modules replace the target layer during AblationCAM. camlens never
swaps modules: it ablates channel ``k`` of the layer's own output through a forward hook (or on
the captured output, re-running only the network's tail), along the axis that holds the channels,
which it finds from ``reshape_transform`` (the last axis for ViT tokens). So these classes only
say which layout the user meant; they hold no state and are never called.
"""

from __future__ import annotations

from torch import nn

from camlens.errors import LayerOutputError

__all__ = ["AblationLayer", "AblationLayerVit", "AblationLayerFasterRCNN"]


class AblationLayer(nn.Module):
    """Channels-first ``(N, C, h, w)`` activations (CNNs): camlens's default."""

    def forward(self, x):  # pragma: no cover - camlens never inserts this module
        raise LayerOutputError("AblationLayer is a marker for camlens.compat AblationCAM; it is not run")


class AblationLayerVit(AblationLayer):
    """Token activations ``(N, tokens, C)``: pass the matching ``reshape_transform`` to AblationCAM."""


class AblationLayerFasterRCNN(AblationLayer):
    """Feature-pyramid outputs (a dict of levels) of torchvision detectors."""
