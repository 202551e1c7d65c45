"""Store.put_many: a batch of puts with the same meaning as putting one by one."""
from __future__ import annotations

import pytest

from conftest import run_with_store
from statelets import record


def test_same_result_as_single_puts_including_repeats_and_overwrites(tmp_path):
    keys = [b"k%05d" % (i % 700) for i in range(2000)]          # repeats inside the batch
    vals = [b"v%d" % i for i in range(2000)]

    async def body(store):
        await store.put(b"k00001", b"old")
        await store.put_many(keys, vals)
        expected = dict(zip(keys, vals))                         # later pairs win
        got = await store.get_many(list(expected))
        assert got == list(expected.values())
        assert len(store) == 700
        return True

    assert run_with_store(tmp_path, body)


def test_values_survive_flushes_checkpoint_and_reopen(tmp_path):
    keys = [b"key%06d" % i for i in range(5000)]
    vals = [bytes([i % 251]) * 90 for i in range(5000)]

    async def write(store):
        for j in range(0, 5000, 1000):
            await store.put_many(keys[j:j + 1000], vals[j:j + 1000])
        await store.checkpoint(1)
        return True

    async def read(store):
        return await store.get_many(keys)

    assert run_with_store(tmp_path, write, write_buffer_bytes=64 << 10, segment_size=256 << 10)
    assert run_with_store(tmp_path, read) == vals


def test_cached_keys_see_the_new_values_and_scans_see_new_keys(tmp_path):
    async def body(store):
        await store.put(b"a1", b"x")
        await store.checkpoint(1)
        assert await store.get(b"a1") == b"x"                    # now cached
        assert [k async for k, _ in store.scan(b"a")] == [b"a1"]  # the scan index exists
        await store.put_many([b"a1", b"a2", b"b1"], [b"y", b"z", b"w"])
        assert await store.get(b"a1") == b"y"
        return [k async for k, _ in store.scan(b"a")]

    assert run_with_store(tmp_path, body) == [b"a1", b"a2"]


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    async def body(store):
        with pytest.raises(ValueError, match="2 keys but 1 values"):
            await store.put_many([b"a", b"b"], [b"1"])
        with pytest.raises(TypeError, match="key"):
            await store.put_many([b"a", "b"], [b"1", b"2"])
        with pytest.raises(TypeError, match="value"):
            await store.put_many([b"a", b"b"], [b"1", 2])
        with pytest.raises(ValueError, match="over the store's limit"):
            await store.put_many([b"a", b"k" * (record.MAX_KEY + 1)], [b"1", b"2"])
        await store.put_many([], [])
        return len(store)

    assert run_with_store(tmp_path, body) == 0
