"""In-process caches of the files source: parsed files and header sniffing results, bounded in memory."""

from __future__ import annotations

import threading
from collections import OrderedDict

DEFAULT_CACHE_BYTES = 512 * 2**20


class BoundedCache:
    """A thread-safe LRU bounded by the memory of what it holds."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> object | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: tuple, value: object, nbytes: int) -> None:
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if nbytes > self.max_bytes:
                return  # larger than the whole budget: serve it once, keep nothing
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def info(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
                "max_bytes": self.max_bytes,
            }


PARSED = BoundedCache(DEFAULT_CACHE_BYTES)  # normalised frames per file (or Parquet row group)
PEEKED = BoundedCache(8 * 2**20)  # header sniffing results per file, about 1 kB each


def cache_info() -> dict[str, int]:
    """Entries, bytes, hits and misses of the in-process cache of parsed files."""
    return PARSED.info()


def clear_cache() -> None:
    """Forget every parsed file (tests; or after rewriting files in place within the same second)."""
    PARSED.clear()
    PEEKED.clear()
