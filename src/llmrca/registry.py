"""One small registry class, used by every extension point (input formats, judges, backends, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from llmrca.errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names mapped to implementations, with ``register``, ``get`` and ``available``.

    Parameters
    ----------
    kind : str
        What the registry holds, used in error messages ("input format", "judge").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T | None = None, *, replace: bool = False):
        """Register ``item`` under ``name``; without ``item``, return a decorator."""
        def _add(obj: T) -> T:
            if name in self._items and not replace:
                raise ValueError(f"{self.kind} '{name}' is already registered")
            self._items[name] = obj
            return obj

        if item is None:
            return _add
        return _add(item)

    def get(self, name: str) -> T:
        """Return the item registered as ``name``; unknown names list the valid ones."""
        try:
            return self._items[name]
        except KeyError:
            raise UnknownNameError(self.kind, name, self._items) from None

    def available(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.available())


Factory = Callable[..., T]
