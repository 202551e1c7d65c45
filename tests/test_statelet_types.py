"""statelets.types: Value, Map, Appender, Reducer, Aggregator over a Store.

Every test runs against the in-memory fake store (tests/fake_store.py, which
folds merge operands lazily) and against the real ``statelets.Store`` in a
temporary directory (which folds them on write); the real one is skipped,
with the reason, while it cannot open/put/get.
"""
from __future__ import annotations

import functools
import threading
from typing import Any, Awaitable, Callable

import pytest
from hypothesis import given, settings, strategies as st

import uring
from conftest import run_in_ring
from fake_store import FakeStore
from statelets.codecs import decode_value, encode_key, encode_value
from statelets.errors import CodecError, StateletError
from statelets.types import (Aggregator, Appender, Map, Reducer, StateletContext, Value,
                             store_prefix)
from uring.curio_compat import curio

# ---------------------------------------------------------------- the stores


@functools.lru_cache(maxsize=1)
def real_store_problem() -> str | None:
    """Why the real Store cannot be used (None if a smoke open/put/get works)."""
    try:
        from statelets.store import Store  # noqa: F401
    except Exception as e:
        return f"statelets.store does not import yet: {type(e).__name__}: {e}"
    import tempfile

    async def smoke(ring):
        with tempfile.TemporaryDirectory() as d:
            s = await Store.open(d, ring=ring)
            try:
                await s.put(b"k", b"v")
                assert await s.get(b"k") == b"v"
            finally:
                await s.close()

    try:
        run_in_ring(uring.backend_info().backend, smoke)
    except BaseException as e:  # noqa: BLE001 - any failure means "not usable yet"
        return f"statelets.store is not usable yet: {type(e).__name__}: {e}"
    return None


class Env:
    """The store under test, and a way to 'restart' from a checkpoint."""

    def __init__(self, kind: str, store: Any, path: Any = None, ring: Any = None) -> None:
        self.kind, self.store, self.path, self.ring = kind, store, path, ring
        self.epoch = 0

    async def restart(self) -> Any:
        """Checkpoint, close and reopen; returns the new store (statelets must rebind)."""
        if self.kind == "fake":
            new = FakeStore(self.store.fold_every)
            new._data = self.store.dump()
        else:
            from statelets.store import Store
            self.epoch += 1
            await self.store.checkpoint(self.epoch)
            await self.store.close()
            new = await Store.open(self.path, ring=self.ring)
        self.store = new
        return new


@pytest.fixture(params=["fake", "real"])
def drive(request, tmp_path) -> Callable[[Callable[[Env], Awaitable[Any]]], Any]:
    """``drive(body)`` runs ``await body(env)`` on a fake or a real store."""
    if request.param == "fake":
        def fake(body):
            async def main():
                return await body(Env("fake", FakeStore()))
            return curio.run(main)
        return fake
    why = real_store_problem()
    if why:
        pytest.skip(why)

    def real(body):
        from statelets.store import Store

        async def main(ring):
            env = Env("real", await Store.open(tmp_path / "state", ring=ring),
                      tmp_path / "state", ring)
            try:
                return await body(env)
            finally:
                await env.store.close()
        return run_in_ring(uring.backend_info().backend, main)
    return real


# ------------------------------------------------------------------ operators

def average_agg() -> Aggregator:
    return Aggregator(create=lambda: (0, 0), add=lambda acc, x: (acc[0] + x, acc[1] + 1),
                      merge=lambda a, b: (a[0] + b[0], a[1] + b[1]),
                      result=lambda acc: acc[0] / acc[1])


class Count:
    total = Value(int, default=0)
    last = Value()
    seen = Map(str, int)
    anything = Map()
    log = Appender()
    words = Appender(str)
    biggest = Reducer(max, type=int)
    sum = Reducer(lambda a, b: a + b)
    avg = average_agg()
    buckets = Value(default=[])

    def __init__(self, store: Any, namespace: str = "count", key: Any = "k") -> None:
        self.statelet_context = StateletContext(store, namespace, key)

    def key(self, k: Any) -> "Count":
        self.statelet_context.current_key = k
        return self


class Other:
    total = Value(int, default=0)

    def __init__(self, store: Any, namespace: str = "other", key: Any = "k") -> None:
        self.statelet_context = StateletContext(store, namespace, key)


# ---------------------------------------------------------------------- Value

def test_value_get_set_clear_per_key(drive):
    async def body(env):
        op = Count(env.store)
        assert await op.key("a").total.get() == 0
        await op.total.set(5)
        await op.key("b").total.set(7)
        assert await op.key("a").total.get() == 5
        assert await op.key("b").total.get() == 7
        await op.key("a").total.clear()
        assert await op.total.get() == 0
        assert await op.key("b").total.get() == 7
        assert await op.last.get() is None
        await op.last.set({"any": ("thing", 1)})
        assert await op.last.get() == {"any": ("thing", 1)}
        await op.last.set(None)
        assert await op.last.get() is None
    drive(body)


def test_current_keys_of_any_encodable_type_are_separate(drive):
    async def body(env):
        op = Count(env.store)
        ks = [1, True, 1.0, "1", b"1", (1,), 0, False, "a", "a\x00b", ("a", 2)]
        for i, k in enumerate(ks):
            await op.key(k).total.set(i)
        for i, k in enumerate(ks):
            assert await op.key(k).total.get() == i, k
    drive(body)


def test_value_type_is_checked_and_named(drive):
    async def body(env):
        op = Count(env.store)
        with pytest.raises(TypeError) as ei:
            await op.total.set("five")
        msg = str(ei.value)
        assert "statelet 'total' of Count" in msg and "int" in msg and "str" in msg
        assert await op.total.get() == 0
    drive(body)


def test_mutable_default_is_a_fresh_copy(drive):
    async def body(env):
        op = Count(env.store)
        d = await op.buckets.get()
        d.append("leak")
        assert await op.buckets.get() == []
        assert await op.key("other").buckets.get() == []
    drive(body)


def declaration_error(ei: pytest.ExceptionInfo) -> str:
    """Python < 3.12 wraps errors of __set_name__ in a RuntimeError."""
    e = ei.value
    return str(e.__cause__ if isinstance(e, RuntimeError) else e)


def test_default_of_wrong_type_fails_at_class_creation():
    with pytest.raises((TypeError, RuntimeError)) as ei:
        class Bad:
            n = Value(int, default="zero")
    assert "statelet 'n' of Bad holds int but its default is str" in declaration_error(ei)


def test_statelets_of_different_operators_and_names_do_not_collide(drive):
    async def body(env):
        a, b, c = Count(env.store), Other(env.store), Count(env.store, namespace="count2")
        await a.total.set(1)
        await b.total.set(2)
        await c.total.set(3)
        await a.last.set(4)
        assert [await a.total.get(), await b.total.get(), await c.total.get(),
                await a.last.get()] == [1, 2, 3, 4]
    drive(body)


def test_assigning_or_deleting_a_statelet_is_refused():
    op = Count(FakeStore())
    with pytest.raises(AttributeError, match=r"await self.total.set"):
        op.total = 5
    with pytest.raises(AttributeError, match=r"clear"):
        del op.total
    assert isinstance(Count.__dict__["total"], Value)
    assert op.total is op.total  # bound once per instance
    assert Count(FakeStore()).total is not op.total


def test_reusing_a_declaration_is_refused():
    v = Value()
    with pytest.raises((TypeError, RuntimeError)) as ei:
        class Twice:
            a = v
            b = v
    assert "reused as Twice.b" in declaration_error(ei)


# ------------------------------------------------------------ missing context

def test_missing_context_and_missing_key_are_clear_errors():
    async def main():
        class Bare:
            total = Value(int)

        with pytest.raises(StateletError, match=r"statelet 'total' of Bare is not bound"):
            await Bare().total.get()
        op = Count(FakeStore(), key=None)
        with pytest.raises(StateletError) as ei:
            await op.total.get()
        msg = str(ei.value)
        assert "statelet 'total' of Count" in msg and "needs a current key" in msg
        assert "key_by" in msg
        with pytest.raises(StateletError, match="needs a current key"):
            await op.log.append(1)
        with pytest.raises(StateletError, match="namespace must be a str"):
            await Count(FakeStore(), namespace=None).total.get()
        op.statelet_context = StateletContext(None, "count", "k")
        with pytest.raises(StateletError, match="no store"):
            await op.total.get()
    curio.run(main)


# ------------------------------------------------------------------------ Map

def test_map_operations(drive):
    async def body(env):
        op = Count(env.store)
        m = op.seen
        assert await m.get("x") is None and await m.get("x", 0) == 0
        assert await m.is_empty()
        for w, n in [("b", 2), ("a", 1), ("c", 3)]:
            await m.put(w, n)
        assert await m.contains("a") and not await m.contains("z")
        assert await m.items() == [("a", 1), ("b", 2), ("c", 3)]
        assert await m.keys() == ["a", "b", "c"]
        assert await m.values() == [1, 2, 3]
        assert [kv async for kv in m.items()] == [("a", 1), ("b", 2), ("c", 3)]
        await m.remove("b")
        await m.remove("never there")
        assert await m.keys() == ["a", "c"]
        assert not await m.is_empty()
        await m.put_all({"d": 4})
        assert await m.get("d") == 4
    drive(body)


def test_map_scan_sees_only_its_own_current_key(drive):
    async def body(env):
        op = Count(env.store)
        # keys whose encodings would be prefixes of each other without care
        cks = ["a", "a\x00", "a\x00b", "a\x00\x01", b"a", ("a",), ("a", "b"), 1, 256, 1 << 70]
        for i, ck in enumerate(cks):
            await op.key(ck).anything.put("k", i)
            await op.key(ck).anything.put(("k", i), i)
            await op.total.set(i)  # a neighbouring statelet under the same key
        for i, ck in enumerate(cks):
            assert await op.key(ck).anything.items() == [("k", i), (("k", i), i)], ck
        await op.key("a").anything.clear()
        assert await op.anything.items() == []
        assert await op.key("a\x00b").anything.keys() == ["k", ("k", 2)]
        assert await op.key("a").total.get() == 0
    drive(body)


def test_map_may_change_while_iterating_and_loops_may_break(drive):
    async def body(env):
        op = Count(env.store)
        for i in range(10):
            await op.anything.put(i, str(i))
        async for k in op.anything.keys():
            if k % 2:
                await op.anything.remove(k)
        assert await op.anything.keys() == [0, 2, 4, 6, 8]
        async for k, v in op.anything.items():
            assert v == "0"
            break
        assert not await op.anything.is_empty()
        await op.anything.clear()
        assert await op.anything.is_empty()
    drive(body)


def test_map_key_order_follows_the_keys(drive):
    async def body(env):
        op = Count(env.store)
        ks = [5, -3, 1 << 70, -(1 << 70), 0, 255, 256, -1]
        for k in ks:
            await op.anything.put(k, k)
        assert await op.anything.keys() == sorted(ks)
    drive(body)


def test_map_types_and_keys_are_checked(drive):
    async def body(env):
        op = Count(env.store)
        with pytest.raises(TypeError, match=r"statelet 'seen' of Count.*keys of str.*int"):
            await op.seen.put(1, 1)
        with pytest.raises(TypeError, match=r"statelet 'seen' of Count.*int.*str"):
            await op.seen.put("a", "1")
        with pytest.raises(CodecError, match=r"statelet 'anything' of Count.*list"):
            await op.anything.put([1], 1)
        with pytest.raises(CodecError, match=r"statelet 'anything'.*NaN"):
            await op.anything.get(float("nan"))
        assert await op.seen.is_empty() and await op.anything.is_empty()
    drive(body)


# ------------------------------------------------------------------- Appender

def test_appender(drive):
    async def body(env):
        op = Count(env.store)
        assert await op.log.get() == []
        await op.log.append(1)
        await op.log.append("two")
        await op.log.extend([(3,), None, b"x" * 1000, {"d": 1}])
        await op.log.extend([])
        assert await op.log.get() == [1, "two", (3,), None, b"x" * 1000, {"d": 1}]
        await op.key("other").log.append("o")
        assert await op.log.get() == ["o"]
        await op.key("k").log.clear()
        assert await op.log.get() == []
        await op.log.append("again")
        assert await op.log.get() == ["again"]
        await op.log.update(["x", "y"])
        assert await op.log.get() == ["x", "y"]
        await op.log.update([])
        assert await op.log.get() == []
        assert await op.key("other").log.get() == ["o"]
    drive(body)


def test_appender_many_and_typed(drive):
    async def body(env):
        op = Count(env.store)
        for i in range(300):
            await op.words.append(f"w{i}" * (i % 7))
        assert await op.words.get() == [f"w{i}" * (i % 7) for i in range(300)]
        with pytest.raises(TypeError, match=r"statelet 'words' of Count.*str.*int"):
            await op.words.append(5)
        with pytest.raises(TypeError, match=r"statelet 'words'"):
            await op.words.extend(["ok", 5])
        assert len(await op.words.get()) == 300  # the bad extend wrote nothing
    drive(body)


# -------------------------------------------------------------------- Reducer

def test_reducer(drive):
    async def body(env):
        op = Count(env.store)
        assert await op.biggest.get() is None
        for x in [3, 9, 2, 7]:
            await op.biggest.add(x)
        assert await op.biggest.get() == 9
        await op.key("b").biggest.add(-5)
        assert await op.biggest.get() == -5
        assert await op.key("k").biggest.get() == 9
        await op.biggest.clear()
        assert await op.biggest.get() is None
        await op.biggest.add(1)
        assert await op.biggest.get() == 1
        for s in ["a", "b", "c", "d"]:
            await op.sum.add(s)
        assert await op.sum.get() == "abcd"  # order kept
        with pytest.raises(TypeError, match=r"statelet 'biggest' of Count.*int.*str"):
            await op.biggest.add("x")
    drive(body)


def test_reducer_function_errors_name_the_statelet(drive):
    async def body(env):
        op = Count(env.store)
        await op.sum.add(1)
        with pytest.raises(TypeError) as ei:
            await op.sum.add("x")      # 1 + "x"
            await op.sum.get()         # a store folding on read fails here instead
        assert any("statelet 'sum' of Count" in n for n in getattr(ei.value, "__notes__", []))
    drive(body)


# ----------------------------------------------------------------- Aggregator

def test_aggregator(drive):
    async def body(env):
        op = Count(env.store)
        assert await op.avg.get() is None
        for x in [1, 2, 3, 6]:
            await op.avg.add(x)
        assert await op.avg.get() == 3.0
        await op.key("b").avg.add(10)
        assert await op.avg.get() == 10.0
        await op.key("k").avg.clear()
        assert await op.avg.get() is None
        await op.avg.add(4)
        assert await op.avg.get() == 4.0
    drive(body)


def test_aggregator_merges_accumulators_folded_apart():
    """A store may fold a run of operands without its base: merge() combines the results."""
    store = FakeStore()
    op = Count(store)
    bound = op.avg
    bound._key()  # binds and registers the merge function
    fn = store._fn(bound._prefix)

    def x(v):  # an input operand
        return b"X" + encode_value(v, "w")

    run = fn(None, [x(1), x(2)])             # an accumulator, without the base
    base = fn(None, [x(10)])
    total = fn(base, [run, x(3)])
    assert decode_value(total[1:]) == (16, 4)

    class NoMerge:
        avg = Aggregator(create=lambda: 0, add=lambda a, v: a + v)

    nm = NoMerge()
    nm.statelet_context = StateletContext(store, "nm", "k")
    nm.avg._key()
    fn2 = store._fn(nm.avg._prefix)
    with pytest.raises(StateletError, match=r"statelet 'avg' of .*NoMerge.*merge\(a, b\)"):
        fn2(fn2(None, [x(1)]), [fn2(None, [x(2)])])


# ----------------------------------------------------- binding and the stores

def test_merge_functions_register_once_per_store_and_again_after_restart(drive):
    async def body(env):
        op = Count(env.store)
        await op.log.append(1)
        await op.log.append(2)
        await op.biggest.add(5)
        await op.avg.add(2)
        await op.total.set(9)
        await op.seen.put("w", 1)
        if env.kind == "fake":
            assert env.store.registrations == 3  # log, biggest, avg: once each
        store = await env.restart()
        op.statelet_context.store = store
        assert await op.log.get() == [1, 2]
        await op.log.append(3)                   # needs the merge function again
        await op.biggest.add(4)
        await op.avg.add(4)
        assert await op.log.get() == [1, 2, 3]
        assert await op.biggest.get() == 5
        assert await op.avg.get() == 3.0
        assert await op.total.get() == 9
        assert await op.seen.items() == [("w", 1)]
    drive(body)


def test_all_state_lives_under_its_statelet_prefix(drive):
    async def body(env):
        op = Count(env.store)
        await op.total.set(1)
        await op.seen.put("a", 1)
        await op.log.append("x")
        await op.avg.add(1)
        keys = [k async for k, _ in env.store.scan(b"")]
        names = ["total", "seen", "log", "avg"]
        for k in keys:
            assert sum(k.startswith(store_prefix("count", n)) for n in names) == 1, k
        ck = encode_key("k", "w")
        assert store_prefix("count", "total") + ck in keys
        assert store_prefix("count", "seen") + ck + encode_key("a", "w") in keys
    drive(body)


def test_unpicklable_value_fails_at_set_on_both_stores(drive):
    async def body(env):
        op = Count(env.store)
        with pytest.raises(CodecError, match=r"statelet 'last' of Count.*lock"):
            await op.last.set(threading.Lock())
        assert await op.last.get() is None
    drive(body)


# ------------------------------------------------ a model check (fake store)

ops = st.lists(st.tuples(
    st.sampled_from(["put", "remove", "append", "add", "set", "clear_map", "clear_log"]),
    st.sampled_from(["k1", "k2", ("k", 1)]),
    st.one_of(st.integers(-3, 3), st.text(max_size=2))), max_size=40)


@given(ops, st.integers(1, 4))
@settings(max_examples=150, deadline=None)
def test_statelets_behave_like_dicts_and_lists(script, fold_every):
    async def main():
        store = FakeStore(fold_every)
        op = Count(store)
        model: dict[Any, dict[str, Any]] = {}
        for action, ck, arg in script:
            op.key(ck)
            m = model.setdefault(ck, {"map": {}, "log": [], "last": None})
            if action == "put":
                await op.anything.put(arg, ck)
                m["map"][arg] = ck
            elif action == "remove":
                await op.anything.remove(arg)
                m["map"].pop(arg, None)
            elif action == "append":
                await op.log.append(arg)
                m["log"].append(arg)
            elif action == "add":
                await op.log.extend([arg, arg])
                m["log"] += [arg, arg]
            elif action == "set":
                await op.last.set(arg)
                m["last"] = arg
            elif action == "clear_map":
                await op.anything.clear()
                m["map"].clear()
            else:
                await op.log.clear()
                m["log"].clear()
        for ck, m in model.items():
            op.key(ck)
            assert dict(await op.anything.items()) == m["map"]
            assert await op.log.get() == m["log"]
            assert await op.last.get() == m["last"]
    curio.run(main)
