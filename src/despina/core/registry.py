"""A named registry of plug-in classes, with third-party entry points loaded on demand."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from importlib.metadata import entry_points
from typing import Generic, Protocol, TypeVar

from despina.core.errors import ConfigError, NotFoundError

logger = logging.getLogger(__name__)


class Named(Protocol):
    name: str


T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Maps names to plug-in classes; an object, so tests can build a fresh one."""

    def __init__(self, kind: str, entry_point_group: str | None = None) -> None:
        self.kind = kind
        self._entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._entry_points_loaded = entry_point_group is None

    def register(self, item: T) -> T:
        """Add ``item`` under its ``name`` attribute; usable as a class decorator."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a {self.kind} needs a non-empty string attribute 'name'")
        if name in self._items and self._items[name] is not item:
            raise ConfigError(f"a {self.kind} named {name!r} is already registered")
        self._items[name] = item
        return item

    def get(self, name: str) -> T:
        """The class registered as ``name``; NotFoundError lists the known names."""
        self._load_entry_points()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "none"
            raise NotFoundError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self._load_entry_points()
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_entry_points()
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        self._load_entry_points()
        return iter(list(self._items.values()))

    def _load_entry_points(self) -> None:
        if self._entry_points_loaded or self._entry_point_group is None:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self._entry_point_group):
            try:
                self.register(ep.load())
            except Exception:  # a broken plug-in must not break the built-ins
                logger.exception("could not load %s plug-in %s", self.kind, ep.name)
