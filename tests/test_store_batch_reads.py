"""``get_many`` looks a batch up in the write buffers and the cache in one C
pass (``statelets.cached_lookup``), and ``scan`` cuts a prefix's run out of
the sorted keys with two binary searches. Both must answer exactly what the
per-key Python path answers, whatever state each key is in.
"""
from __future__ import annotations

import random

import pytest

from statelets import Store, StoreConfig
from statelets import cached_lookup, store as store_mod
from statelets._native import lib

CFG = StoreConfig(segment_size=64 << 10, write_buffer_bytes=8 << 10, cache_bytes=16 << 10)


async def mixed_store(path, ring, rng: random.Random) -> tuple[Store, dict[bytes, bytes]]:
    """Keys on disk, in the cache, deleted, and in the write buffer, and a model."""
    st = await Store.open(path, ring=ring, config=CFG)
    model: dict[bytes, bytes] = {}
    keys = [b"k%04d" % i for i in range(600)]
    vals = [rng.randbytes(rng.randint(1, 60)) for _ in keys]
    await st.put_many(keys, vals)
    model.update(zip(keys, vals))
    await st.checkpoint(1)
    for k in rng.sample(keys, 150):              # into the cache
        assert await st.get(k) == model[k]
    for k in rng.sample(keys, 60):               # buffered tombstones
        await st.delete(k)
        model.pop(k, None)
    for k in rng.sample(keys, 40):               # buffered puts
        v = rng.randbytes(9)
        await st.put(k, v)
        model[k] = v
    return st, model


def test_get_many_matches_the_python_path(run, tmp_path, monkeypatch):
    rng = random.Random(7)

    async def body(ring):
        st, model = await mixed_store(tmp_path / "s", ring, rng)
        try:
            for trial in range(30):
                batch = [b"k%04d" % rng.randrange(700) for _ in range(rng.randint(1, 300))]
                fast = await st.get_many(batch)
                assert fast == [model.get(k) for k in batch], f"trial {trial}"
            hits = st.cache_hits
            with monkeypatch.context() as m:        # the per-key Python loop
                m.setattr(cached_lookup, "_klib", None)
                slow = await st.get_many(batch)
            assert slow == fast
            assert st.cache_hits > hits
        finally:
            await st.close()

    run(body)


def test_get_many_takes_bytes_like_keys_and_other_sequences(run, tmp_path):
    async def body(ring):
        st = await Store.open(tmp_path / "s", ring=ring, config=CFG)
        try:
            await st.put_many([b"a", b"b"], [b"1", b"2"])
            assert await st.get_many([bytearray(b"a"), memoryview(b"b"), b"c"]) == [b"1", b"2", None]
            assert await st.get_many((b"b", b"a")) == [b"2", b"1"]
            assert await st.get_many([]) == []
            with pytest.raises(TypeError, match="key must be bytes"):
                await st.get_many([b"a", 3])
        finally:
            await st.close()

    run(body)


@pytest.mark.skipif(lib is None, reason="the statelets C extension is not built")
def test_lookup_cached_reports_misses_hits_and_marks():
    tomb = object()
    wbuf = {b"w": b"W", b"dead": tomb}
    flushing = {b"f": b"F", b"w": b"old"}
    cache = {b"c": b"C", b"w": b"stale", b"dead": b"stale"}
    ref: set[bytes] = set()
    keys = [b"w", b"f", b"c", b"dead", b"none", b"c"]
    out, misses, hits = cached_lookup.lookup_cached(keys, wbuf, flushing, cache, tomb, ref)
    assert out == [b"W", b"F", b"C", None, None, b"C"]
    assert misses == [4] and hits == 2 and ref == {b"c"}
    assert cached_lookup.lookup_cached([b"c", bytearray(b"x")], wbuf, {}, cache, tomb, None) is None


def test_prefix_slice_is_the_run_of_keys_with_the_prefix():
    rng = random.Random(5)
    alphabet = [b"\x00", b"\x01", b"a", b"\xfe", b"\xff"]
    for _ in range(3000):
        keys = sorted({b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
                       for _ in range(rng.randint(0, 40))})
        p = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 3)))
        assert store_mod._prefix_slice(keys, p) == [k for k in keys if k.startswith(p)], (keys, p)


def test_scan_sees_index_and_buffered_keys_in_order(run, tmp_path):
    rng = random.Random(11)

    async def body(ring):
        st, model = await mixed_store(tmp_path / "s", ring, rng)
        try:
            got = [(k, v) async for k, v in st.scan()]
            assert got == sorted(model.items())
            await st.put(b"k0001x", b"new")              # after the sorted list was built
            model[b"k0001x"] = b"new"
            got = [(k, v) async for k, v in st.scan(b"k000")]
            assert got == sorted((k, v) for k, v in model.items() if k.startswith(b"k000"))
            assert [k async for k, _v in st.scan(b"\xff")] == []
        finally:
            await st.close()

    run(body)
