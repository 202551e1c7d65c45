"""Key-by partitioning that is stable across processes and restarts.

Python's ``hash()`` of a str changes per process, so instance ownership of a
key is decided by a CRC of the key's deterministic store encoding instead: the
same key always lands on the same instance for a given parallelism, and a
restore (or a change of parallelism) re-derives ownership from the key alone.
"""
from __future__ import annotations

import zlib
from typing import Any

from statelets.codecs import encode_key

_CACHE_LIMIT = 1 << 17


class Partitioner:
    """Maps keys to one of ``n`` instances; caches recent keys (streams repeat keys)."""

    __slots__ = ("n", "_cache", "what")

    def __init__(self, n: int, what: str = "key_by") -> None:
        self.n = n
        self.what = what
        self._cache: dict[Any, int] = {}

    def __call__(self, key: Any) -> int:
        try:
            return self._cache[key]
        except KeyError:
            pass
        except TypeError:
            raise TypeError(f"{self.what}: key {key!r} of type {type(key).__name__} is not "
                            f"hashable; return a str, int, bytes or a tuple of them") from None
        p = partition_of(key, self.n, self.what)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        # 1 == 1.0 == True share a dict slot but not an encoding: cache only exact types.
        if key.__class__ in (str, int, bytes):
            self._cache[key] = p
        return p


def partition_of(key: Any, n: int, what: str = "key_by") -> int:
    """The instance (0..n-1) that owns ``key``."""
    if n == 1:
        return 0
    return zlib.crc32(encode_key(key, what)) % n
