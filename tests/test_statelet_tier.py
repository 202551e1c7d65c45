"""statelets.tier: the heap tier of Value, Reducer and Aggregator.

Values live as objects in memory and reach the store only at ``flush()``;
a checkpoint after the flush holds them, a reopen reads them back.
"""
from __future__ import annotations

import pytest

import uring
from conftest import run_in_ring
from statelets import Store
from statelets.errors import CodecError, StateletError
from statelets.tier import HeapTier
from statelets.types import Aggregator, Reducer, StateletContext, Value


class Owner:
    count = Value(int, default=0)
    anything = Value(default=None)
    total = Reducer(lambda a, b: a + b, int)
    mean = Aggregator(lambda: [0, 0], lambda acc, x: [acc[0] + x, acc[1] + 1],
                      result=lambda acc: acc[0] / acc[1])


def run(tmp_path, body, max_entries=1 << 18):
    async def main(ring):
        store = await Store.open(tmp_path / "s", ring=ring)
        owner = Owner()
        tier = HeapTier(max_entries)
        owner.statelet_context = StateletContext(store, "op", tier=tier)
        try:
            return await body(owner, store, tier)
        finally:
            await store.close()
    return run_in_ring(uring.backend_info().backend, main)


def reopen(tmp_path, key):
    async def main(ring):
        store = await Store.open(tmp_path / "s", ring=ring)
        owner = Owner()
        owner.statelet_context = StateletContext(store, "op", key)   # no tier: straight reads
        try:
            return await owner.count.get(), await owner.total.get(), await owner.mean.get()
        finally:
            await store.close()
    return run_in_ring(uring.backend_info().backend, main)


def test_values_stay_in_memory_until_flush_then_survive_a_checkpoint(tmp_path):
    async def body(o, store, tier):
        ctx = o.statelet_context
        for k in ("a", "b", "a"):
            ctx.current_key = k
            await o.count.set(await o.count.get() + 1)
            await o.total.add(5)
            await o.mean.add(4)
        assert len(store) == 0              # nothing written yet
        assert tier.dirty == 6
        await ctx.flush()
        assert tier.dirty == 0 and len(store) == 6
        await store.checkpoint(1)
        ctx.current_key = "a"
        return await o.count.get(), await o.total.get(), await o.mean.get()

    assert run(tmp_path, body) == (2, 10, 4.0)
    assert reopen(tmp_path, "a") == (2, 10, 4.0)     # straight from the store, no tier


def test_clear_is_written_back_as_a_delete(tmp_path):
    async def body(o, store, tier):
        ctx = o.statelet_context
        ctx.current_key = "k"
        await o.count.set(3)
        await ctx.flush()
        assert len(store) == 1
        await o.count.clear()
        assert await o.count.get() == 0
        await ctx.flush()
        return len(store)

    assert run(tmp_path, body) == 0


def test_mutable_values_are_not_aliased(tmp_path):
    async def body(o, store, tier):
        o.statelet_context.current_key = "k"
        v = [1, 2]
        await o.anything.set(v)
        v.append(3)                          # mutating after set changes nothing
        got = await o.anything.get()
        got.append(4)                        # nor does mutating what get() returned
        return await o.anything.get()

    assert run(tmp_path, body) == [1, 2]


def test_type_and_picklability_are_checked_at_set(tmp_path):
    async def body(o, store, tier):
        import threading
        o.statelet_context.current_key = "k"
        with pytest.raises(TypeError, match="count"):
            await o.count.set("nope")
        with pytest.raises(CodecError, match="anything"):
            await o.anything.set(threading.Lock())
        return len(o.anything._heap)

    assert run(tmp_path, body) == 0


def test_equal_keys_of_different_types_stay_apart(tmp_path):
    async def body(o, store, tier):
        ctx = o.statelet_context
        for i, k in enumerate((1, True, 1.0, "1", b"1", (1,))):
            ctx.current_key = k
            await o.count.set(i)
        out = []
        for k in (1, True, 1.0, "1", b"1", (1,)):
            ctx.current_key = k
            out.append(await o.count.get())
        await ctx.flush()
        return out, len(store)

    assert run(tmp_path, body) == ([0, 1, 2, 3, 4, 5], 6)


def test_spill_past_max_entries_writes_back_and_reads_again(tmp_path):
    async def body(o, store, tier):
        ctx = o.statelet_context
        for i in range(50):
            ctx.current_key = i
            await o.count.set(i * 2)
        assert tier.spills >= 1
        assert len(o.count._heap) <= 10
        out = []
        for i in range(50):
            ctx.current_key = i
            out.append(await o.count.get())
        return out

    assert run(tmp_path, body, max_entries=10) == [i * 2 for i in range(50)]


def test_missing_key_needs_a_current_key(tmp_path):
    async def body(o, store, tier):
        o.statelet_context.current_key = None
        with pytest.raises(StateletError, match="current key"):
            await o.count.get()
        return True

    assert run(tmp_path, body)


def test_tier_rejects_bad_budget():
    with pytest.raises(ValueError, match="max_entries"):
        HeapTier(0)
