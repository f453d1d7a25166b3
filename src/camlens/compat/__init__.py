"""Compatibility layers for code written against other CAM libraries (application layer).

* :mod:`camlens.compat.grad_cam` mirrors pytorch-grad-cam 1.5's public module tree: replace
  ``pytorch_grad_cam`` with ``camlens.compat.grad_cam`` in the import lines and the code runs on
  camlens (see docs/migrating.md).

The library core never imports this package.
"""
