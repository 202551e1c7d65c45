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


def test_overwrites_keep_cached_keys_cached_with_exact_byte_accounting(tmp_path):
    """Batches (direct and buffered, with repeated keys, over partly cached keys)
    leave every cached key holding its newest value, and the cache's byte count
    equal to what it holds."""
    n = 600

    def held(store) -> int:
        return sum(len(k) + len(v) + 64 for k, v in store._cache.items())

    async def body(store):
        keys = [key(i) for i in range(n)]
        await store.put_many(keys, [VALUE] * n)
        await store.checkpoint(1)
        await store.get_many(keys[::2])                  # every other key cached
        for rnd, batch in enumerate((keys, keys[:100])):   # direct, then buffered
            vals = [b"n%d-" % rnd + k * (1 + i % 3) for i, k in enumerate(batch)]
            # key 0 repeats at the end with another value: that one must win
            await store.put_many(batch + [keys[0]], vals + [b"last%d" % rnd])
            assert store._cache[keys[0]] == b"last%d" % rnd
            for k, v in zip(batch[1:], vals[1:]):
                if k in store._cache:
                    assert store._cache[k] == v
            assert set(store._cache) == set(keys[::2])  # no key joined or left the cache
            assert store._cache_bytes == held(store)
        return True

    assert run_with_store(tmp_path, body, cache_bytes=10 << 20)
