"""``pytorch_grad_cam.activations_and_gradients``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from camlens.hooks import HookSet, resolve_layers

__all__ = ["ActivationsAndGradients"]


class ActivationsAndGradients:
    """pytorch-grad-cam's hook holder: ``ActivationsAndGradients(model, target_layers,
    reshape_transform, detach=True)``; calling it runs the model and records each target layer's
    output in ``.activations`` and, after the caller's ``backward()``, its gradient in
    ``.gradients`` (both in layer order, after ``reshape_transform``; detached unless
    ``detach=False``).

    Unlike camlens's methods, whose hooks live for one call, these hooks stay until
    :meth:`release` (or the ``with`` block ends), as in pytorch-grad-cam. Tensors stay on the
    model's device (pytorch-grad-cam copies them to the CPU).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        target_layers: Sequence[Any],
        reshape_transform: Callable[[torch.Tensor], torch.Tensor] | None,
        detach: bool = True,
    ) -> None:
        self.model = model
        self.reshape_transform = reshape_transform
        self.detach = detach
        self.activations: list[torch.Tensor] = []
        self.gradients: list[torch.Tensor] = []
        self._hooks = HookSet()
        self._grads: dict[int, torch.Tensor] = {}
        for index, (_, module) in enumerate(resolve_layers(model, list(target_layers))):
            self._hooks.forward(module, self._recorder(index))

    def _keep(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.reshape_transform is not None:
            tensor = self.reshape_transform(tensor)
        return tensor.detach() if self.detach else tensor

    def _recorder(self, index: int) -> Callable[..., None]:
        def hook(module: torch.nn.Module, args: Any, output: torch.Tensor) -> None:
            self.activations.append(self._keep(output))
            if isinstance(output, torch.Tensor) and output.requires_grad:

                def store(grad: torch.Tensor) -> None:
                    self._grads[index] = self._keep(grad)
                    self.gradients = [self._grads[i] for i in sorted(self._grads)]

                output.register_hook(store)

        return hook

    def __call__(self, x: torch.Tensor) -> Any:
        self.activations, self.gradients, self._grads = [], [], {}
        return self.model(x)

    def release(self) -> None:
        """Remove the hooks from the model."""
        self._hooks.remove()

    def __enter__(self) -> "ActivationsAndGradients":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
