"""``pytorch_grad_cam.metrics``: pytorch-grad-cam's metric classes with its argument orders and
definitions (score *differences* in the target's units), on camlens's batched code."""
