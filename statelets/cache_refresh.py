"""Cached keys take a batch's new values: the read cache's write path.

A store whose cache holds most of its data pays one random cache lookup per
key on every batch of puts (the keys must stay cached, with their new
values: dropping them would turn the next gets into disk reads). The C
extension does that pass with one lookup per key and no intermediate lists;
the Python version, used without it, does it with a few C-level passes.
"""
from __future__ import annotations

from itertools import compress, repeat
from operator import is_not
from typing import Any

from ._native import lib as _klib


def refresh_cached(cache: dict[bytes, bytes], keys: list[bytes], values: list[bytes]) -> int:
    """Give every key of ``keys`` held in ``cache`` its value from ``values``, in place.

    Later pairs win over earlier ones with the same key; the cache's order
    (an ``OrderedDict``'s eviction order) does not change and no key is added.
    ``keys`` and ``values`` are lists of bytes of the same length. Returns the
    change in the bytes of cached values.
    """
    if not cache:
        return 0
    if _klib is not None and keys.__class__ is list and values.__class__ is list:
        delta = _delta
        hits = _klib.kx_refresh_cached(id(cache), id(keys), id(values), len(keys), delta)
        if hits >= 0:
            return delta[0]
        # Stopped part-way (a value that is not bytes): the Python pass redoes
        # the batch; the keys already done add nothing the second time.
        return delta[0] + _refresh_py(cache, keys, values)
    return _refresh_py(cache, keys, values)


def _refresh_py(cache: dict[bytes, Any], keys: list[bytes], values: list[Any]) -> int:
    olds = list(map(cache.get, keys))
    n_cold = olds.count(None)
    if n_cold == len(olds):
        return 0
    if n_cold:
        hot = list(map(is_not, olds, repeat(None)))
        keys, values, olds = (list(compress(keys, hot)), list(compress(values, hot)),
                              list(compress(olds, hot)))
    newest = dict(zip(keys, values))                # later pairs win
    if len(newest) != len(keys):                    # a key repeats: count it once
        olds = list(dict(zip(keys, olds)).values())
    cache.update(newest)                            # in place: no reordering
    return sum(map(len, newest.values())) - sum(map(len, olds))


if _klib is not None:
    from ._native import ffi as _kffi
    _delta = _kffi.new("int64_t[1]")
