"""A small name -> factory registry, shared by models, sources, losses and datasets.

Other packages add entries through entry points (``importlib.metadata``), in the group each
registry names, e.g. in a plugin's ``pyproject.toml``::

    [project.entry-points."reffakd.models"]
    tiny_cnn = "my_package.models:tiny_cnn"     # registered as the model "tiny_cnn"
    my_models = "my_package.models"             # a module: imported, it registers itself

An entry point that loads to a module is imported (its decorators register what it defines);
any other object is registered under the entry point's name.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
from collections.abc import Callable, Iterator
from types import ModuleType
from typing import Any, Generic, TypeVar

from reffakd.errors import UserError, first_line

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to factories. Unknown names raise :class:`UserError` with close matches.

    ``autoload`` names modules that register more entries; they are imported on the first
    lookup, so a plugin can depend on the module that defines the registry without a cycle.
    ``entry_points`` is the entry-point group through which installed packages register more
    entries; it is read on the first lookup too, after the built-in modules.
    """

    def __init__(
        self, kind: str, autoload: tuple[str, ...] = (), entry_points: str | None = None
    ) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._autoload = list(autoload)
        self.entry_point_group = entry_points
        self._entry_points_read = entry_points is None

    def _load_plugins(self) -> None:
        while self._autoload:
            importlib.import_module(self._autoload.pop(0))
        if not self._entry_points_read:
            self._entry_points_read = True  # first: a plugin may look names up while loading
            for entry_point in importlib.metadata.entry_points(group=self.entry_point_group):
                self._load_entry_point(entry_point)

    def _load_entry_point(self, entry_point: importlib.metadata.EntryPoint) -> None:
        where = f"entry point {entry_point.name} = {entry_point.value} ({self.entry_point_group})"
        try:
            item: Any = entry_point.load()
        except Exception as exc:  # a broken plugin, whatever it raises, is the user's to fix
            raise UserError(
                f"plugin {where} failed to load ({type(exc).__name__}: {first_line(exc)}); "
                "fix or uninstall the package that provides it."
            ) from None
        if isinstance(item, ModuleType) or self._items.get(entry_point.name) is item:
            return  # a module registers itself; a decorated object is already in
        if entry_point.name in self._items:
            raise UserError(
                f"plugin {where} registers {self.kind} {entry_point.name!r}, which is already "
                "registered; rename it in the plugin's entry points."
            )
        self._items[entry_point.name] = item

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = item
            return item

        return decorator

    def add(self, name: str, item: T) -> None:
        self.register(name)(item)

    def get(self, name: str) -> T:
        self._load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise UserError(self.unknown_message(name)) from None

    def unknown_message(self, name: str) -> str:
        self._load_plugins()
        close = difflib.get_close_matches(name, list(self._items), n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        return f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(sorted(self._items))}."

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._load_plugins()
        return iter(sorted(self._items))
