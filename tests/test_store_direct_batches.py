"""put_many batches that skip the write buffer (``DIRECT_BATCH`` pairs or more).

They are appended to the active segment at once and become readable from the
file only when a read needs them; these tests pin down what that must not
change: read-your-writes, ordering against buffered puts, the read cache, the
dead-byte accounting compaction relies on, and restore after a checkpoint.
"""
from __future__ import annotations

import errno
import random

import pytest

from conftest import run_with_store
from statelets import store as store_mod
from statelets.keyindex import rid_segment
from uring.curio_compat import curio

N = store_mod.DIRECT_BATCH * 4


def keys_vals(n: int = N, tag: bytes = b"a") -> tuple[list[bytes], list[bytes]]:
    keys = [b"key%06d" % i for i in range(n)]
    return keys, [tag + b"-%06d" % i + b"x" * 60 for i in range(n)]


def test_uncached_values_are_read_back_from_the_unflushed_tail(tmp_path, backend):
    keys, vals = keys_vals()

    async def body(store):
        await store.put_many(keys, vals)
        assert store._wbuf == {}, "a direct batch must not go through the write buffer"
        assert store._active.readable < store._active.size, "setup: the tail is unflushed"
        assert len(store._cache) == 0
        got = await store.get_many(keys[::7])
        assert got == vals[::7]
        assert await store.get(keys[-1]) == vals[-1]
        assert store._active.readable == store._active.size
        return True

    assert run_with_store(tmp_path, body, backend=backend)


def test_order_against_buffered_puts_is_kept(tmp_path, backend):
    keys, vals = keys_vals()

    async def body(store):
        await store.put(keys[0], b"buffered-before")         # older: the batch wins
        await store.put_many(keys, vals)
        await store.put(keys[1], b"buffered-after")          # newer: it wins
        assert await store.get(keys[0]) == vals[0]
        assert await store.get(keys[1]) == b"buffered-after"
        await store.checkpoint(1)
        return True

    assert run_with_store(tmp_path, body, backend=backend)

    async def reopened(store):
        assert await store.get(keys[0]) == vals[0]
        assert await store.get(keys[1]) == b"buffered-after"
        assert await store.get_many(keys[2:]) == vals[2:]
        return True

    assert run_with_store(tmp_path, reopened, backend=backend)


def test_cached_keys_hold_the_new_value_and_a_racing_read_caches_nothing_stale(tmp_path, backend):
    n = 10_000                          # more than one 4096-record chunk: the append pauses
    keys, vals = keys_vals(n)
    _, vals2 = keys_vals(n, tag=b"b")
    late = n - 5                        # in the last chunk

    async def body(store):
        await store.put_many(keys, vals)
        await store.checkpoint(1)
        assert await store.get(keys[3]) == vals[3]          # now cached

        async def slow_pause():
            await curio.sleep(0.05)     # long enough for the racing read to finish
        store.pause = slow_pause
        # A read of an uncached key racing the batch finishes while the batch is
        # half appended: it may return either value, but must not leave the old
        # one in the cache.
        reader = await curio.spawn(store.get, keys[late])
        await curio.sleep(0)                                # the reader is on the disk
        await store.put_many(keys, vals2)
        assert (await reader.join()) in (vals[late], vals2[late])
        assert store._cache.get(keys[late]) in (None, vals2[late])
        assert await store.get(keys[3]) == vals2[3]
        assert await store.get(keys[late]) == vals2[late]
        return True

    assert run_with_store(tmp_path, body, backend=backend)


def test_overwrites_are_counted_dead_where_the_old_records_live(tmp_path):
    keys, vals = keys_vals()
    _, vals2 = keys_vals(tag=b"b")

    async def body(store):
        await store.put_many(keys, vals)
        await store.checkpoint(1)
        first = {rid_segment(store._index[k]) for k in keys}
        assert all(store._segs[s].dead == 0 for s in first)
        half = len(keys) // 2
        await store.put_many(keys[:half], vals2[:half])
        await store.checkpoint(2)
        dead = sum(store._segs[s].dead for s in first)
        rec = [store._segs[rid_segment(store._index[k])] for k in keys[:half]]
        assert all(r.id not in first for r in rec), "the new versions live in newer segments"
        # Exactly the old records of the overwritten half are dead.
        expected = sum(store_mod.record.HEADER_SIZE + len(k) + len(v)
                       for k, v in zip(keys[:half], vals[:half]))
        assert dead == expected
        # A batch that repeats a key: its later pair wins, and the earlier one's
        # record is dead from the start (besides the older versions it replaces).
        before = store._segs[store._active.id].dead
        await store.put_many(keys[:10] + keys[:10] + keys[10:N // 2],
                             vals[:10] + vals2[:10] + vals[10:N // 2])
        assert store._segs[store._active.id].dead == before + sum(
            store_mod.record.HEADER_SIZE + len(k) + len(v) for k, v in zip(keys[:10], vals[:10]))
        assert await store.get_many(keys[:10]) == vals2[:10]
        return True

    assert run_with_store(tmp_path, body, segment_size=1 << 20)


def test_batches_spanning_segments_compact_and_reopen(tmp_path, backend):
    n = 6000
    keys, vals = keys_vals(n)
    _, vals2 = keys_vals(n, tag=b"b")

    async def body(store):
        for j in range(0, n, 1000):
            await store.put_many(keys[j:j + 1000], vals[j:j + 1000])
        await store.checkpoint(1)
        for j in range(0, n, 1000):
            await store.put_many(keys[j:j + 1000][::-1], vals2[j:j + 1000][::-1])
        await store.checkpoint(2)
        assert len([s for s in store._segs.values() if s.sealed]) > 4
        result = await store.compact()
        assert result["segments"] > 0
        assert await store.get_many(keys) == vals2
        await store.checkpoint(3)
        return True

    assert run_with_store(tmp_path, body, backend=backend, segment_size=128 << 10, cache_bytes=64 << 10)

    async def reopened(store):
        assert len(store) == n
        assert await store.get_many(keys) == vals2
        return True

    assert run_with_store(tmp_path, reopened, backend=backend, segment_size=128 << 10, cache_bytes=64 << 10)


def assert_restores_epoch_1(tmp_path, keys, vals):
    """Reopened after a failure, the store is exactly checkpoint 1."""
    async def reopened(store):
        assert store.epoch == 1
        assert await store.get_many(keys) == vals
        return True

    assert run_with_store(tmp_path, reopened)


def test_a_failed_direct_append_fails_the_store_and_keeps_the_checkpoint(tmp_path):
    keys, vals = keys_vals()
    _, vals2 = keys_vals(tag=b"b")

    async def body(store):
        await store.put_many(keys, vals)
        await store.checkpoint(1)
        ring = store.ring

        def full(kind, name):
            return errno.ENOSPC if kind.startswith("write") and str(name).endswith(".seg") else None
        ring.fault_injector = full
        try:
            with pytest.raises(OSError) as err:
                for _ in range(200):            # until a buffer goes to disk
                    await store.put_many(keys, vals2)
                await store.get(keys[0])        # or until a read flushes the tail
        finally:
            ring.fault_injector = None
        assert err.value.errno == errno.ENOSPC
        with pytest.raises(store_mod.StoreFailed):
            await store.put_many(keys, vals2)
        return True

    assert run_with_store(tmp_path, body)
    assert_restores_epoch_1(tmp_path, keys, vals)


def test_a_read_whose_tail_flush_fails_fails_the_store(tmp_path):
    keys, vals = keys_vals()
    _, vals2 = keys_vals(tag=b"b")

    async def body(store):
        await store.put_many(keys, vals)
        await store.checkpoint(1)
        await store.put_many(keys, vals2)           # in the writer's memory only
        assert store._active.readable < store._active.size
        store._cache.clear()
        store._cache_bytes = 0
        store.ring.fault_injector = (
            lambda kind, name: errno.ENOSPC if kind.startswith("write") else None)
        try:
            with pytest.raises(OSError) as err:
                await store.get(keys[7])
        finally:
            store.ring.fault_injector = None
        assert err.value.errno == errno.ENOSPC
        with pytest.raises(store_mod.StoreFailed):
            await store.get(keys[8])
        return True

    assert run_with_store(tmp_path, body)
    assert_restores_epoch_1(tmp_path, keys, vals)


def test_records_bigger_than_a_writer_buffer_or_a_segment(tmp_path, backend):
    """Records larger than the writer's 1 MiB buffer, and than a whole segment, go in
    whole (alone in a segment when they must) and read back, also after reopening."""
    rng = random.Random(4)
    keys = [b"big%04d" % i for i in range(300)]
    vals = [rng.randbytes(rng.choice((10, 300, (1 << 20) + 17, (3 << 20) + 5)))
            if i % 50 == 0 else rng.randbytes(100) for i in range(300)]

    async def body(store):
        await store.put_many(keys, vals)
        assert await store.get_many(keys) == vals
        await store.checkpoint(1)
        return True

    async def reread(store):
        return await store.get_many(keys) == vals

    assert run_with_store(tmp_path, body, backend=backend, segment_size=2 << 20)
    assert run_with_store(tmp_path, reread, backend=backend, segment_size=2 << 20)
