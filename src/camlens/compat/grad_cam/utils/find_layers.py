"""``pytorch_grad_cam.utils.find_layers``: walk and edit a model's module tree."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

__all__ = [
    "replace_layer_recursive",
    "replace_all_layer_type_recursive",
    "find_layer_types_recursive",
    "find_layer_predicate_recursive",
]


def replace_layer_recursive(model: nn.Module, old_layer: nn.Module, new_layer: nn.Module) -> bool:
    """Replace the first occurrence of the module ``old_layer`` (by identity); True if found."""
    for name, child in model.named_children():
        if child is old_layer:
            setattr(model, name, new_layer)
            return True
        if replace_layer_recursive(child, old_layer, new_layer):
            return True
    return False


def replace_all_layer_type_recursive(model: nn.Module, old_layer_type: type, new_layer: nn.Module) -> None:
    """Replace every submodule that is an instance of ``old_layer_type`` by ``new_layer``."""
    for name, child in model.named_children():
        if isinstance(child, old_layer_type):
            setattr(model, name, new_layer)
        else:
            replace_all_layer_type_recursive(child, old_layer_type, new_layer)


def find_layer_predicate_recursive(model: nn.Module, predicate: Callable[[nn.Module], bool]) -> list[nn.Module]:
    """Every submodule (below ``model``, depth first) for which ``predicate`` is true."""
    found = []
    for child in model.children():
        if predicate(child):
            found.append(child)
        found.extend(find_layer_predicate_recursive(child, predicate))
    return found


def find_layer_types_recursive(model: nn.Module, layer_types: Sequence[type]) -> list[nn.Module]:
    """Every submodule that is an instance of one of ``layer_types``."""
    kinds = tuple(layer_types)
    return find_layer_predicate_recursive(model, lambda m: isinstance(m, kinds))
