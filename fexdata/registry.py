"""One way to register things by name: models, `fex eval` sections and input layouts.

A `Registry` is a read-only mapping from name to entry. Entries add themselves where they are defined,
with the `register(name)` decorator, so there is no second list to keep in step. Iteration follows
registration order, which is the order the package imports its modules (report order for sections,
--help order for layouts); `ranked()` sorts by the rank each entry registered with, keeping that order
within a rank (layout detection). Looking up an unknown name raises the registry's FexError subclass,
naming the known entries.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Callable, Generic, TypeVar

from fexdata.errors import FexError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, error: type[FexError], hint: str = "choose one of: {known}",
                 name_attr: str | None = None) -> None:
        """`kind` names an entry in messages ("model"); `error` is raised for an unknown name, with `hint`
        (`{known}` is replaced by the names); `name_attr`, when given, is set on each entry to its name."""
        self.kind, self.error, self.hint, self.name_attr = kind, error, hint, name_attr
        self._entries: dict[str, T] = {}
        self._ranks: dict[str, int] = {}

    def register(self, name: str, *, rank: int = 0) -> Callable[[T], T]:
        """Decorator: add the decorated entry under `name`; a second entry of one name is a bug in fex."""
        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            if self.name_attr:
                setattr(entry, self.name_attr, name)
            self._entries[name] = entry
            self._ranks[name] = rank
            return entry
        return add

    def lookup(self, name: str) -> T:
        """The entry of `name`; the registry's error, naming every known entry, when there is none."""
        if name not in self._entries:
            known = ", ".join(self._entries)
            raise self.error(f"unknown {self.kind} {name!r}; known: {known}", self.hint.format(known=known))
        return self._entries[name]

    def ranked(self) -> list[str]:
        """Names by rank, in registration order within a rank."""
        return sorted(self._entries, key=self._ranks.__getitem__)

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._entries)})"
