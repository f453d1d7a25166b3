"""A tiny torchvision ViT for running CNN-style methods on tokens through a reshape_transform."""

from __future__ import annotations

import numpy as np
import torch
import torchvision

from camlens.reshape import TokenReshape


def check_on_vit_tokens(cls, **kwargs) -> None:
    """``cls`` on the last block's ``ln_1`` tokens of a 2-block ViT (32 px, 4x4 patch grid)."""
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=5
    ).eval()
    with torch.no_grad():
        vit.heads.head.weight.normal_(0, 0.5)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    cam = cls(vit, "encoder.layers[-1].ln_1", reshape_transform=TokenReshape.from_model(vit), **kwargs)
    exp = cam.explain(x, target_category=[1, 2])
    assert exp.layer_maps[0].shape == (2, 4, 4)
    out = exp.numpy()
    assert out.shape == (2, 32, 32) and np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    assert float(exp.layer_maps[0].std()) > 0
