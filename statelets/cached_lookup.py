"""A batch of keys looked up in memory before the index: the read path of
``Store.get_many`` (and so of ``scan``).

Each key is looked up in the write buffer, the buffer being flushed and the
read cache, in that order. In Python that is about 380 ns per key (a loop of
dict lookups, checks and counters); the C extension does the pass in one
call, prefetching the cache's table ahead of the lookups, and returns only
the keys found nowhere, which must go to the index. The Python loop remains
for installs without the extension.
"""
from __future__ import annotations

from array import array
from typing import Any

from ._native import ffi as _kffi, lib as _klib

if _klib is not None:
    _hits = _kffi.new("uint64_t[1]")


def lookup_cached(keys: list[bytes], wbuf: dict[bytes, Any], flushing: dict[bytes, Any],
                  cache: dict[bytes, bytes], tombstone: Any, ref: set[bytes] | None
                  ) -> tuple[list[Any], list[int], int] | None:
    """``(values, misses, hits)`` for ``keys`` (a list), or None when a key is
    not bytes (the caller converts or refuses the keys, then asks again).

    ``values[i]`` is the value found for key i (None for a deletion or a key
    found nowhere); ``misses`` lists the indexes of the keys found nowhere, in
    order; ``hits`` counts keys found in ``cache``, each added to ``ref``
    (unless None: CLOCK's marks).
    """
    n = len(keys)
    out: list[Any] = [None] * n
    if _klib is None:
        return _lookup_py(keys, wbuf, flushing, cache, tombstone, ref, out)
    miss = array("I", bytes(4 * n))
    nmiss = _klib.kx_lookup_cached(
        id(keys), n, id(wbuf), id(flushing) if flushing else 0, id(cache), id(tombstone),
        id(ref) if ref is not None else 0, id(out), _kffi.from_buffer("uint32_t[]", miss), _hits)
    if nmiss < 0:
        return None
    return out, miss[:nmiss].tolist(), _hits[0]


def _lookup_py(keys: list[bytes], wbuf: dict[bytes, Any], flushing: dict[bytes, Any],
               cache: dict[bytes, bytes], tombstone: Any, ref: set[bytes] | None,
               out: list[Any]) -> tuple[list[Any], list[int], int] | None:
    misses = []
    hits = 0
    for i, k in enumerate(keys):
        if k.__class__ is not bytes:
            return None
        v = wbuf.get(k)
        if v is None and flushing:
            v = flushing.get(k)
        if v is not None:
            if v is not tombstone:
                out[i] = v
            continue
        v = cache.get(k)
        if v is None:
            misses.append(i)
            continue
        if ref is not None:
            ref.add(k)
        hits += 1
        out[i] = v
    return out, misses, hits
