"""The store's read cache: a byte budget, CLOCK (second-chance) eviction."""
from __future__ import annotations

from conftest import run_with_store

VALUE = b"v" * 200
ENTRY = 8 + len(VALUE) + 64          # key + value + the per-entry overhead counted


def key(i: int) -> bytes:
    return b"k%07d" % i


def test_a_key_read_often_survives_a_stream_of_one_time_reads(tmp_path):
    room = 100                                   # entries the budget holds
    n = 2000

    async def body(store):
        await store.put_many([key(i) for i in range(n)], [VALUE] * n)
        await store.checkpoint(1)                # everything on disk, nothing cached
        hot = key(0)
        assert await store.get(hot) == VALUE
        assert not store._cache_marking, "no marks while the cache has room"
        for i in range(1, n):                    # 20x the cache's capacity of cold keys
            assert await store.get(key(i)) == VALUE
            misses = store.cache_misses
            assert await store.get(hot) == VALUE
            assert store.cache_misses == misses, f"the hot key was evicted after {i} cold reads"
            assert store._cache_bytes <= store.config.cache_bytes
        assert store._cache_marking
        assert len(store._cache) <= room
        return True

    assert run_with_store(tmp_path, body, cache_bytes=room * ENTRY)


def test_without_reuse_the_cache_keeps_the_newest_entries_within_budget(tmp_path):
    room = 50
    n = 400

    async def body(store):
        await store.put_many([key(i) for i in range(n)], [VALUE] * n)
        await store.checkpoint(1)
        for i in range(n):
            assert await store.get(key(i)) == VALUE
            assert store._cache_bytes <= store.config.cache_bytes
        assert set(store._cache) == {key(i) for i in range(n - room, n)}
        return True

    assert run_with_store(tmp_path, body, cache_bytes=room * ENTRY)
