"""refresh_cached: cached keys take a batch's new values in place, in C and in
Python alike (order kept, later pairs win, nothing added, exact byte delta)."""
from __future__ import annotations

import random
from collections import OrderedDict

import pytest

from statelets import cache_refresh
from statelets.cache_refresh import _refresh_py, refresh_cached


def _model(cache, keys, values):
    delta = 0
    for k, v in zip(keys, values):
        if k in cache:
            delta += len(v) - len(cache[k])
            cache[k] = v
    return delta


IMPLS = {"c": refresh_cached, "py": _refresh_py}


@pytest.mark.parametrize("impl", sorted(IMPLS))
@pytest.mark.parametrize("cls", [dict, OrderedDict])
def test_random_batches_match_the_model(impl, cls):
    if impl == "c" and cache_refresh._klib is None:
        pytest.skip("statelets C extension not built")
    rng = random.Random(7)
    universe = [b"k%05d" % i for i in range(3000)]
    cached = rng.sample(universe, 1500)
    cache = cls((k, rng.randbytes(rng.randrange(0, 50))) for k in cached)
    model = OrderedDict(cache)
    for _ in range(50):
        n = rng.randrange(0, 400)
        keys = [rng.choice(universe) for _ in range(n)]      # repeats included
        values = [rng.randbytes(rng.randrange(0, 60)) for _ in range(n)]
        got = IMPLS[impl](cache, keys, values)
        assert got == _model(model, keys, values)
        assert list(cache.items()) == list(model.items())     # same order, same values


def test_large_cache_uses_the_prefetching_path_and_stays_exact():
    if cache_refresh._klib is None:
        pytest.skip("statelets C extension not built")
    n = 300_000            # a table with 32-bit indices
    keys = [b"key%09d" % i for i in range(n)]
    cache = OrderedDict((k, b"x" * (i % 7)) for i, k in enumerate(keys))
    rng = random.Random(3)
    batch = rng.sample(keys, 5000) + [b"absent-1", b"absent-2"]
    vals = [b"y" * (i % 11) for i in range(len(batch))]
    expect = OrderedDict(cache)
    assert refresh_cached(cache, batch, vals) == _model(expect, batch, vals)
    assert list(cache.items()) == list(expect.items())
    assert b"absent-1" not in cache


def test_a_value_that_is_not_bytes_falls_back_to_python_without_losing_bytes():
    if cache_refresh._klib is None:
        pytest.skip("statelets C extension not built")
    cache = OrderedDict([(b"a", b"12"), (b"b", b"1234"), (b"c", b"")])
    keys = [b"a", b"b", b"c"]
    values = [b"123", bytearray(b"1"), b"xyz"]       # the C pass stops at b"b"
    assert refresh_cached(cache, keys, values) == (3 - 2) + (1 - 4) + (3 - 0)
    assert cache == {b"a": b"123", b"b": bytearray(b"1"), b"c": b"xyz"}


def test_an_empty_cache_or_batch_changes_nothing():
    assert refresh_cached({}, [b"a"], [b"b"]) == 0
    cache = {b"a": b"1"}
    assert refresh_cached(cache, [], []) == 0
    assert cache == {b"a": b"1"}
