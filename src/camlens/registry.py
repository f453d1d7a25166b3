"""Method names -> classes. Feeds the public API, the CLI's choices and the contract tests."""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

from .errors import ArgumentError, MethodNotFoundError

if TYPE_CHECKING:  # pragma: no cover
    from .methods.base import BaseCAM

__all__ = ["register", "get_method", "available_methods", "registered_classes"]

_METHODS: dict[str, type["BaseCAM"]] = {}
_ALIASES: dict[str, str] = {}

C = TypeVar("C", bound=type)


def _key(name: str) -> str:
    return name.lower().replace("-", "").replace("_", "").replace(" ", "")


def register(name: str, *aliases: str):  # type: ignore[no-untyped-def]
    """Class decorator: register a CAM method under ``name`` (and optional aliases)."""

    def deco(cls: C) -> C:
        if name in _METHODS and _METHODS[name] is not cls:
            raise ArgumentError(f"method name {name!r} is already registered to {_METHODS[name].__name__}")
        _METHODS[name] = cls  # type: ignore[assignment]
        for alias in (name, *aliases):
            _ALIASES[_key(alias)] = name
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return deco


def _load() -> None:
    from . import methods  # noqa: F401  (importing registers every method)


def available_methods() -> list[str]:
    """Registered method names, in registration order."""
    _load()
    return list(_METHODS)


def registered_classes() -> list[type["BaseCAM"]]:
    """The registered classes, in registration order (without loading the methods package)."""
    return list(_METHODS.values())


def get_method(name: str) -> type["BaseCAM"]:
    """The class registered under ``name`` (case, '-', '_' and spaces ignored; aliases accepted)."""
    _load()
    key = _key(name)
    if key not in _ALIASES:
        import difflib

        close = difflib.get_close_matches(key, list(_ALIASES), n=3)
        hint = f"; did you mean {', '.join(repr(_ALIASES[c]) for c in close)}?" if close else ""
        raise MethodNotFoundError(f"unknown CAM method {name!r}; available: {', '.join(_METHODS)}{hint}")
    return _METHODS[_ALIASES[key]]
