"""A bounded, thread-safe, least-recently-used in-memory cache.

One lock guards every read and write, so concurrent ``get``/``put``/``get_or_create`` never
see a half-updated map and never race into a ``KeyError``. A read moves its entry to the
most recently used end; a write past the size bound drops the least recently used entry.

``get_or_create`` runs its ``make`` outside the lock (making may be slow: a signature
check); if two threads make the same key at once, the first value stored wins and both
callers get it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar, overload

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
D = TypeVar("D")

_MISSING = object()


class Lru(Generic[K, V]):
    """At most ``size`` entries; the least recently used one goes first."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"an LRU cache needs room for at least one entry, not {size}")
        self.size = size
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    @overload
    def get(self, key: K) -> V | None: ...

    @overload
    def get(self, key: K, default: D) -> V | D: ...

    def get(self, key: K, default: object = None) -> object:
        """The value for ``key`` (now the most recently used), else ``default``."""
        with self._lock:
            value = self._items.get(key, _MISSING)  # type: ignore[arg-type]
            if value is _MISSING:
                return default
            self._items.move_to_end(key)
            return value

    def put(self, key: K, value: V) -> None:
        """Store ``value`` as the most recently used entry, dropping the least recently
        used ones past the size bound."""
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get_or_create(self, key: K, make: Callable[[], V]) -> V:
        """The value for ``key``; if absent, ``make()`` is stored and returned (an
        exception from ``make`` stores nothing)."""
        found = self.get(key, _MISSING)
        if found is not _MISSING:
            return found  # type: ignore[return-value]
        value = make()
        with self._lock:
            existing = self._items.get(key, _MISSING)  # type: ignore[arg-type]
            if existing is not _MISSING:
                self._items.move_to_end(key)
                return existing  # type: ignore[return-value]
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
            return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def keys(self) -> list[K]:
        """The keys, least recently used first (a snapshot)."""
        with self._lock:
            return list(self._items)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: object) -> bool:
        """Whether ``key`` is cached (does not count as a use)."""
        with self._lock:
            return key in self._items
