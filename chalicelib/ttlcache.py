"""A process cache with bounded age and size: the one shape of mailbridge's in-process caches (verified API
keys, decrypted secrets keys).

An entry lives `ttl()` seconds from when it was put (the setting is read at each put, so a changed setting
applies to new entries; a ttl ≤ 0 stores nothing) on the monotonic clock, and at most `max_entries` entries are
kept, the least recently used dropped first. Thread-safe: one lock per cache, held only for dictionary work.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    def __init__(self, ttl: Callable[[], float], max_entries: int = 1024):
        self.ttl, self.max_entries = ttl, max_entries
        self._lock = threading.Lock()
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def get(self, key: K) -> V | None:
        """The value while it is fresh, else None (an expired entry is dropped)."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            if hit[0] <= time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return hit[1]

    def put(self, key: K, value: V) -> None:
        ttl = self.ttl()
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (time.monotonic() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def pop(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
