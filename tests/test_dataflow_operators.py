"""Operators in running topologies: hooks, emitting, side outputs, joins, unions,
fused chains, parallelism, event/processing-time timers, watermarks, late data,
and supervision (escalate / skip / restart).

Event-time results are computed by hand in the comments: the source sends a
watermark ``max timestamp seen - max_out_of_orderness`` after each batch
(``batch_size=1`` makes that after each element).
"""
from __future__ import annotations

import collections
import threading
import time

import pytest

from reactor import (Batch, CollectSink, GeneratorSource, IterableSource, Operator,
                     OperatorError, Source, SourceReader, Topology)
from statelets import Appender, Map, Value

from dataflow_support import go, quiet_logs  # noqa: F401 (quiet_logs: autouse)


def n_in(stats):
    """Elements an instance received (the stats key changed from "in" to "messages_in")."""
    return stats["messages_in"] if "messages_in" in stats else stats["in"]


def n_out(stats):
    return stats["messages_out"] if "messages_out" in stats else stats["out"]


def last_counts(rows):
    last = {}
    for k, n in rows:
        last[k] = n
    return last


def assert_exactly_once(rows, data):
    """``rows`` are (key, running count) pairs: each key's counts run 1..Counter[key]."""
    seqs = collections.defaultdict(list)
    for k, n in rows:
        seqs[k].append(n)
    want = collections.Counter(data)
    bad = {k: s for k, s in seqs.items() if s != list(range(1, want[k] + 1))}
    assert not bad, {k: (s[:12], want[k]) for k, s in list(bad.items())[:5]}
    assert set(seqs) == set(want), (set(want) - set(seqs), set(seqs) - set(want))


class AsyncCount(Operator):
    total = Value(int, default=0)

    async def on_element(self, w, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit((w, n))


WORDS = [f"w{(i * 7) % 13}" for i in range(2000)]


def count_topo(op, sink, *, p=1, data=WORDS, **opkw):
    return (Topology("count").source("words", IterableSource(data), batch_size=64)
            .key_by(lambda w: w).operator("count", op, parallelism=p, **opkw).sink("out", sink))


# ----------------------------------------------------------------------------- hooks

def test_async_on_element_counts():
    out = CollectSink()
    r = go(count_topo(AsyncCount, out))
    assert_exactly_once(out.results, WORDS)
    assert r.elements_in == len(WORDS)
    assert n_in(r.operators["count/0"]) == len(WORDS)
    assert n_out(r.operators["count/0"]) == len(WORDS)


def test_plain_on_element_needs_no_coroutine():
    class Upper(Operator):
        def on_element(self, v, ctx):
            ctx.emit(v.upper())
            if v.endswith("0"):
                ctx.emit(v + "!")
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(["a0", "b1", "c10"])).operator("up", Upper)
       .sink("out", out))
    assert out.results == ["A0", "a0!", "B1", "C10", "c10!"]


def test_operator_without_a_handler_fails_naming_it():
    class Empty(Operator):
        pass
    with pytest.raises(OperatorError, match=r"'empty/0'.*override on_element"):
        go(Topology("t").source("s", IterableSource([1])).operator("empty", Empty)
           .sink("out", CollectSink()))


def test_on_batch_gets_whole_batches_with_keys():
    seen = []

    class Sum(Operator):
        total = Value(int, default=0)

        async def on_batch(self, batch, ctx):
            assert isinstance(batch, Batch) and batch.input == 0
            seen.append(len(batch))
            for v, k in zip(batch.values, batch.keys):
                ctx.key = k
                n = await self.total.get() + v
                await self.total.set(n)
                ctx.emit((k, n))
    data = list(range(300))
    for p in (1, 2):
        out = CollectSink()
        seen.clear()
        go(Topology("t").source("s", IterableSource(data), batch_size=7).key_by(lambda v: v % 4)
           .operator("sum", Sum, parallelism=p).sink("out", out))
        assert sum(seen) == len(data) and max(seen) <= 7
        assert last_counts(out.results) == {k: sum(v for v in data if v % 4 == k)
                                            for k in range(4)}


def test_plain_on_batch():
    class Evens(Operator):
        def on_batch(self, batch, ctx):
            assert batch.keys is None and batch.times is None
            for v in batch:
                if v % 2 == 0:
                    ctx.emit(v)
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(range(50)), batch_size=8).operator("ev", Evens)
       .sink("out", out))
    assert out.results == list(range(0, 50, 2))


def test_on_start_and_on_stop_once_per_instance_and_on_stop_may_emit():
    class Life(Operator):
        seen = Value(int, default=0)

        def on_start(self, ctx):
            ctx.emit(("start", self.name, self.index, self.parallelism, ctx.operator))
            self.n = 0

        async def on_element(self, v, ctx):
            self.n += 1
            await self.seen.set(await self.seen.get() + 1)

        async def on_stop(self, ctx):
            ctx.emit(("stop", self.index, self.n))
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(range(100))).key_by(lambda v: v % 10)
       .operator("life", Life, parallelism=3).sink("out", out))
    starts = sorted(r for r in out.results if r[0] == "start")
    stops = sorted(r for r in out.results if r[0] == "stop")
    assert starts == [("start", "life", i, 3, f"life/{i}") for i in range(3)]
    assert [s[1] for s in stops] == [0, 1, 2]
    assert sum(s[2] for s in stops) == 100
    assert len(out.results) == 6


def test_side_outputs_read_with_op_colon_name():
    class Split(Operator):
        def on_element(self, v, ctx):
            if v % 3 == 0:
                ctx.emit_to("fizz", v)
            elif v % 3 == 1:
                ctx.emit_to("late", (v,))        # a user's own "late" side output
            else:
                ctx.emit(v)
    main, fizz, late = CollectSink(), CollectSink(), CollectSink()
    go(Topology("t").source("s", IterableSource(range(12))).operator("split", Split)
       .sink("main", main)
       .map("x10", lambda v: v * 10, input="split:fizz").sink("fizz", fizz)
       .sink("late", late, input="split:late"))
    assert main.results == [2, 5, 8, 11]
    assert fizz.results == [0, 30, 60, 90]
    assert late.results == [(1,), (4,), (7,), (10,)]


def test_emit_to_an_unread_side_output_fails_naming_it():
    class Bad(Operator):
        def on_element(self, v, ctx):
            ctx.emit_to("nobody", v)
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("s", IterableSource([1])).operator("bad", Bad)
           .sink("out", CollectSink()))
    assert "bad/0" in str(ei.value) and "'nobody'" in str(ei.value)


class Join(Operator):
    """A keyed inner join of (key, value) pairs from two inputs."""
    left = Appender()
    right = Appender()

    async def on_element(self, v, ctx):
        k, x = v
        if ctx.input == 0:
            await self.left.append(x)
            for r in await self.right.get():
                ctx.emit((k, x, r))
        else:
            assert ctx.input == 1
            await self.right.append(x)
            for l_ in await self.left.get():
                ctx.emit((k, l_, x))


@pytest.mark.parametrize("p", [1, 3])
def test_connect_keyed_join(p):
    left = [(f"k{i % 5}", f"L{i}") for i in range(20)]
    right = [(f"k{i % 7}", f"R{i}") for i in range(14)]
    out = CollectSink()
    go(Topology("t")
       .source("L", IterableSource(left), batch_size=3).key_by(lambda v: v[0], "kl")
       .source("R", IterableSource(right), batch_size=2).key_by(lambda v: v[0], "kr")
       .connect("join", "kl", "kr", Join, parallelism=p).sink("out", out))
    want = sorted((lk, lv, rv) for lk, lv in left for rk, rv in right if lk == rk)
    assert sorted(out.results) == want


def test_connect_input_index_on_unkeyed_streams():
    class Tag(Operator):
        def on_element(self, v, ctx):
            ctx.emit((ctx.input, v))
    out = CollectSink()
    go(Topology("t").source("a", IterableSource("xyz")).source("b", IterableSource([1, 2]))
       .connect("tag", "a", "b", Tag).sink("out", out))
    assert sorted(out.results, key=repr) == sorted(
        [(0, "x"), (0, "y"), (0, "z"), (1, 1), (1, 2)], key=repr)


def test_union_of_three_streams_with_fused_steps():
    out = CollectSink()
    go(Topology("t")
       .source("a", IterableSource(range(5)))
       .source("b", GeneratorSource(lambda i: 100 + i, count=3))
       .source("c", IterableSource(["7", "8"])).map("toint", int)
       .union("u", "a", "b", "toint").filter("odd", lambda v: v % 2)
       .map("neg", lambda v: -v).sink("out", out))
    assert sorted(out.results) == sorted(-v for v in [1, 3, 101, 7])


def test_map_filter_flat_map_chain():
    lines = ["a b c", "", "b c", "c  d e", "a"]
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(lines), batch_size=2)
       .flat_map("split", str.split).filter("not_e", lambda w: w != "e")
       .map("upper", str.upper).flat_map("twice", lambda w: [w, w.lower()])
       .sink("out", out))
    want = [x for ln in lines for w in ln.split() if w != "e" for x in (w.upper(), w)]
    assert out.results == want


def test_operator_to_operator_chain_with_rebalance():
    class Inc(Operator):
        def on_element(self, v, ctx):
            ctx.emit(v + 1)
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(range(1000)), batch_size=10)
       .operator("inc1", Inc, parallelism=3).map("x2", lambda v: v * 2)
       .operator("inc2", Inc, parallelism=2).sink("out", out))
    assert sorted(out.results) == sorted((v + 1) * 2 + 1 for v in range(1000))


def test_keyed_parallelism_gives_the_same_results():
    results = {}
    for p in (1, 2, 4):
        out = CollectSink()
        r = go(count_topo(AsyncCount, out, p=p))
        assert_exactly_once(out.results, WORDS)
        results[p] = sorted(out.results)
        busy = [name for name, st in r.operators.items()
                if name.startswith("count/") and n_in(st) > 0]
        assert len(busy) == min(p, 13) or p == 1, (p, r.operators)
    assert results[1] == results[2] == results[4]


def test_keyed_parallel_source_and_operator():
    data = [f"k{i % 17}" for i in range(3000)]
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(data), parallelism=3, batch_size=50)
       .key_by(lambda w: w).operator("count", AsyncCount, parallelism=2).sink("out", out))
    assert_exactly_once(out.results, data)


# ------------------------------------------------------------------------ event time

class Windows(Operator):
    """Per key: sums over tumbling windows [w, w+10), emitted when the watermark passes w+9."""
    sums = Map(int, int)

    async def on_element(self, v, ctx):
        _, t, x = v
        assert ctx.timestamp == t
        w = t // 10 * 10
        await self.sums.put(w, await self.sums.get(w, 0) + x)
        ctx.register_event_timer(w + 9)

    async def on_timer(self, t, ctx):
        assert ctx.timer_domain == "event" and ctx.timestamp == t
        w = t - 9
        s = await self.sums.get(w)
        await self.sums.remove(w)
        ctx.emit((ctx.key, w, s, ctx.watermark))


# (key, event time, value)
EVENTS = [("a", 1, 1), ("b", 3, 10), ("a", 12, 2), ("a", 5, 4), ("b", 25, 100), ("a", 8, 8),
          ("a", 31, 1000)]


def event_topo(sink, on_late, late_sink=None, p=1):
    t = (Topology("ev").source("s", IterableSource(EVENTS), timestamp=lambda v: v[1],
                               max_out_of_orderness=5, batch_size=1)
         .key_by(lambda v: v[0]).operator("win", Windows, on_late=on_late, parallelism=p)
         .sink("out", sink))
    if late_sink is not None:
        t.sink("late", late_sink, input="win:late")
    return t


# Watermarks after each element: -4, -2, 7, 7, 20, 20, 26, then inf at the end.
# ("a",5) arrives at watermark 7 and ("a",8) at 20: both late.
# Watermark 20 fires a@9 (sum 1), b@9 (10), a@19 (2); the end fires b@29 (100), a@39 (1000).
ON_TIME = [("a", 0, 1, 20), ("b", 0, 10, 20), ("a", 10, 2, 20), ("b", 20, 100, float("inf")),
           ("a", 30, 1000, float("inf"))]


@pytest.mark.parametrize("p", [1, 2])
def test_event_time_windows_drop_late(p):
    out = CollectSink()
    r = go(event_topo(out, "drop", p=p))
    assert sorted(out.results) == sorted(ON_TIME)
    assert r.late_dropped == 2


def test_event_time_windows_late_to_side_output():
    out, late = CollectSink(with_times=True), CollectSink(with_times=True)
    r = go(event_topo(out, "side", late))
    # Window results carry their timer's time as timestamp.
    assert sorted(out.results) == sorted((row, row[1] + 9) for row in ON_TIME)
    assert late.results == [(("a", 5, 4), 5), (("a", 8, 8), 8)]
    assert r.late_dropped == 0


def test_event_time_late_data_passes_by_default():
    # With on_late="pass" the late elements are processed: a@9 gets 1+4 (registered
    # again while the watermark is 7, fires at 20) and ("a", 8) re-registers a@9 after
    # it fired: it fires at the next watermark (26) with 8.
    out = CollectSink()
    r = go(event_topo(out, "pass"))
    assert sorted(out.results) == sorted([
        ("a", 0, 5, 20), ("b", 0, 10, 20), ("a", 10, 2, 20), ("a", 0, 8, 26),
        ("b", 20, 100, float("inf")), ("a", 30, 1000, float("inf"))])
    assert r.late_dropped == 0


def test_timestamps_flow_through_fused_steps_and_emit():
    class Shift(Operator):
        def on_element(self, v, ctx):
            ctx.emit(v)                              # keeps the element's timestamp
            ctx.emit(-v, timestamp=ctx.timestamp + 1000)
    seen = []

    class Times(Operator):
        def on_element(self, v, ctx):
            seen.append((v, ctx.timestamp))
            ctx.emit(v)
    out = CollectSink(with_times=True)
    go(Topology("t").source("s", IterableSource([1, 2, 3]), timestamp=lambda v: v * 10)
       .flat_map("dup", lambda v: [v, v]).operator("shift", Shift)
       .filter("all", lambda v: True).operator("times", Times).sink("out", out))
    want = [(1, 10), (-1, 1010), (1, 10), (-1, 1010), (2, 20), (-2, 1020), (2, 20),
            (-2, 1020), (3, 30), (-3, 1030), (3, 30), (-3, 1030)]
    assert seen == want
    assert out.results == want


def test_untimed_stream_has_no_timestamps():
    out = CollectSink(with_times=True)
    go(Topology("t").source("s", IterableSource("ab")).sink("out", out))
    assert out.results == [("a", None), ("b", None)]


def test_at_most_one_timer_per_key_and_time_and_deletion():
    class Timers(Operator):
        def on_element(self, v, ctx):
            k, _ = v
            ctx.register_event_timer(100)
            ctx.register_event_timer(100)
            ctx.register_event_timer(200)
            ctx.register_event_timer(300)
            if k == "b":
                ctx.delete_event_timer(200)
                ctx.delete_event_timer(250)        # none there: a no-op
            if k == "c":
                ctx.delete_event_timer(300)
                ctx.register_event_timer(300)      # again after the deletion

        def on_timer(self, t, ctx):
            ctx.emit((ctx.key, t))
    out = CollectSink()
    data = [("a", 1), ("a", 2), ("b", 3), ("c", 4), ("a", 5), ("b", 6)]
    go(Topology("t").source("s", IterableSource(data), timestamp=lambda v: v[1])
       .key_by(lambda v: v[0]).operator("tm", Timers, parallelism=2).sink("out", out))
    assert sorted(out.results) == [("a", 100), ("a", 200), ("a", 300), ("b", 100), ("b", 300),
                                   ("c", 100), ("c", 200), ("c", 300)]


def test_timer_registered_from_a_timer_fires_too():
    class Chain(Operator):
        def on_element(self, v, ctx):
            ctx.register_event_timer(10)

        def on_timer(self, t, ctx):
            ctx.emit((ctx.key, t))
            if t < 40:
                ctx.register_event_timer(t + 10)
    out = CollectSink()
    go(Topology("t").source("s", IterableSource([("k", 1)]), timestamp=lambda v: v[1])
       .key_by(lambda v: v[0]).operator("chain", Chain).sink("out", out))
    assert out.results == [("k", 10), ("k", 20), ("k", 30), ("k", 40)]


def test_timers_need_a_key():
    class NoKey(Operator):
        def on_element(self, v, ctx):
            ctx.register_event_timer(5)
    with pytest.raises(OperatorError, match=r"'nokey/0'.*key_by"):
        go(Topology("t").source("s", IterableSource([1]), timestamp=float)
           .operator("nokey", NoKey).sink("out", CollectSink()))


def test_on_watermark_sees_increasing_watermarks():
    seen = []

    class Wm(Operator):
        def on_element(self, v, ctx):
            pass

        def on_watermark(self, wm, ctx):
            assert ctx.watermark == wm
            seen.append(wm)
            ctx.emit(wm)
    data = [3, 1, 7, 7, 2, 15, 11, 30]
    out = CollectSink()
    go(Topology("t").source("s", IterableSource(data), timestamp=lambda v: v,
                            max_out_of_orderness=2, batch_size=1)
       .operator("wm", Wm).sink("out", out))
    # max seen - 2 after each element, only when it grows: 1, 5, 13, 28, then inf.
    assert seen == [1, 5, 13, 28, float("inf")]
    assert out.results == seen


def test_watermark_is_the_minimum_over_inputs():
    seen = []

    class Wm(Operator):
        def on_element(self, v, ctx):
            pass

        def on_watermark(self, wm, ctx):
            seen.append(wm)
    # Source "slow" stays at time 0 until it ends; the operator's watermark must not pass
    # it while it is active, however far "fast" goes.
    go(Topology("t")
       .source("fast", IterableSource([10, 20, 30, 40]), timestamp=float, batch_size=1)
       .source("slow", IterableSource([0]), timestamp=float)
       .union("u", "fast", "slow").operator("wm", Wm).sink("out", CollectSink()))
    assert seen == sorted(seen) and len(set(seen)) == len(seen), seen
    assert seen[-1] == float("inf")
    assert all(w <= 0 for w in seen[:-1]), seen


class UntilFlag(Source):
    """Yields ``data`` and then nothing (``[]``) until ``flag`` is set (or a 20 s guard
    passes), then ends: keeps a job alive until something has been observed."""

    def __init__(self, data, flag: threading.Event) -> None:
        self.data, self.flag = list(data), flag

    def open(self, index, parallelism, offset):
        src = self

        class Reader(SourceReader):
            def __init__(self):
                self.pos = offset or 0
                self.deadline = time.monotonic() + 20

            async def read(self, max_n):
                if self.pos < len(src.data):
                    out = src.data[self.pos:self.pos + max_n]
                    self.pos += len(out)
                    return out
                if src.flag.is_set() or time.monotonic() > self.deadline:
                    return None
                return []

            def offset(self):
                return self.pos
        return Reader()


def test_processing_time_timers_fire():
    flag = threading.Event()
    fired = []
    keys = ["a", "b", "c"]

    class PT(Operator):
        def on_element(self, v, ctx):
            t = ctx.processing_time() + 0.05
            ctx.register_processing_timer(t)
            ctx.register_processing_timer(t)           # at most one per (key, time)
            if v == "c":
                ctx.register_processing_timer(t + 0.01)
                ctx.delete_processing_timer(t + 0.01)

        def on_timer(self, t, ctx):
            fired.append((ctx.key, ctx.timer_domain, time.time() >= t))
            ctx.emit(ctx.key)
            if len(fired) == len(keys):
                flag.set()
    out = CollectSink()
    go(Topology("t").source("s", UntilFlag(keys, flag)).key_by(lambda v: v)
       .operator("pt", PT).sink("out", out))
    assert flag.is_set(), f"processing-time timers did not fire within 20 s: {fired}"
    assert sorted(fired) == [(k, "processing", True) for k in keys]
    assert sorted(out.results) == keys


def test_idle_source_stops_holding_back_the_watermark():
    # "quiet" produces nothing until the timer has fired; without idle_timeout the
    # operator's watermark (the minimum over both inputs) could not pass 50 before it.
    flag = threading.Event()

    class FireAt50(Operator):
        def on_element(self, v, ctx):
            ctx.register_event_timer(50)

        def on_timer(self, t, ctx):
            ctx.emit((t, ctx.watermark))
            flag.set()
    out = CollectSink()
    go(Topology("t")
       .source("busy", UntilFlag([("k", i) for i in range(100)], flag), timestamp=lambda v: v[1],
               batch_size=10)
       .source("quiet", UntilFlag([], flag), timestamp=lambda v: v[1], idle_timeout=0.05)
       .union("u", "busy", "quiet").key_by(lambda v: v[0]).operator("t", FireAt50)
       .sink("out", out))
    assert flag.is_set(), "the timer did not fire while the idle source was quiet"
    assert len(out.results) == 1 and out.results[0][0] == 50
    assert 50 <= out.results[0][1] < float("inf"), out.results


# ------------------------------------------------------------------------ supervision

class Fragile(Operator):
    total = Value(int, default=0)

    async def on_element(self, w, ctx):
        if w == "boom":
            raise ValueError("cannot count boom")
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit((w, n))


BOOM = [f"w{i % 5}" for i in range(500)]
BOOM[321] = "boom"


def test_escalate_raises_operator_error_naming_instance_and_element():
    with pytest.raises(OperatorError) as ei:
        go(count_topo(Fragile, CollectSink(), data=BOOM))
    e = ei.value
    assert e.operator == "count/0" and e.element == "boom"
    assert "'count/0'" in str(e) and "'boom'" in str(e) and "cannot count boom" in str(e)
    assert isinstance(e.__cause__, ValueError)


def test_escalate_names_the_right_parallel_instance():
    from reactor.partition import partition_of
    with pytest.raises(OperatorError) as ei:
        go(count_topo(Fragile, CollectSink(), data=BOOM, p=3))
    assert ei.value.operator == f"count/{partition_of('boom', 3)}"


def test_escalate_in_hooks_names_the_phase():
    class BadStart(Operator):
        def on_start(self, ctx):
            raise RuntimeError("no start")

        def on_element(self, v, ctx):
            pass

    class BadStop(Operator):
        def on_element(self, v, ctx):
            pass

        async def on_stop(self, ctx):
            raise RuntimeError("no stop")
    for cls, phase in ((BadStart, "on_start"), (BadStop, "on_stop")):
        with pytest.raises(OperatorError) as ei:
            go(Topology("t").source("s", IterableSource([1])).operator("op", cls)
               .sink("out", CollectSink()))
        assert ei.value.operator == "op/0" and phase in str(ei.value), str(ei.value)


def test_skip_sends_to_dead_letters_and_output_is_complete():
    out = CollectSink()
    r = go(count_topo(Fragile, out, data=BOOM, policy="skip"))
    assert len(r.dead_letters) == 1
    inst, element, exc = r.dead_letters[0]
    assert (inst, element) == ("count/0", "boom") and isinstance(exc, ValueError)
    assert_exactly_once(out.results, [w for w in BOOM if w != "boom"])


def test_skip_in_on_batch_dead_letters_the_batch():
    class BadBatch(Operator):
        def on_batch(self, batch, ctx):
            if 13 in batch.values:
                raise KeyError(13)
            for v in batch:
                ctx.emit(v)
    out = CollectSink()
    r = go(Topology("t").source("s", IterableSource(range(40)), batch_size=10)
           .operator("bb", BadBatch, policy="skip").sink("out", out))
    assert out.results == [v for v in range(40) if not 10 <= v < 20]
    assert len(r.dead_letters) == 1 and list(r.dead_letters[0][1]) == list(range(10, 20))


FAIL_ONCE = {"armed": True, "failures": 0}


class FailsOnce(Operator):
    total = Value(int, default=0)

    async def on_element(self, w, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        if w == "w3" and n == 70 and FAIL_ONCE["armed"]:
            FAIL_ONCE["armed"] = False
            FAIL_ONCE["failures"] += 1
            raise RuntimeError("transient failure")
        ctx.emit((w, n))


@pytest.mark.parametrize("p", [1, 2])
def test_restart_resumes_from_the_last_checkpoint_exactly_once(p, tmp_path):
    from test_dataflow_checkpoints import EpochGatedSource
    FAIL_ONCE.update(armed=True, failures=0)
    data = [f"w{i % 5}" for i in range(600)]
    out = CollectSink()
    d = str(tmp_path / "state")
    # An epoch commits every 100 elements; the failure comes at element ~350.
    t = (Topology("count").source("words", EpochGatedSource(data, d, 100), batch_size=16)
         .key_by(lambda w: w).operator("count", FailsOnce, parallelism=p, policy="restart")
         .sink("out", out))
    r = go(t, state_dir=d, checkpoint_every_elements=100)
    assert FAIL_ONCE["failures"] == 1 and r.restarts == 1
    assert r.restored_from is not None and r.restored_from >= 3, r.restored_from
    assert len(out.results) == len(set(out.results)) == len(data), "duplicates or losses"
    assert_exactly_once(out.results, data)


def test_restart_without_any_checkpoint_starts_over():
    FAIL_ONCE.update(armed=True, failures=0)
    data = [f"w{i % 5}" for i in range(600)]
    out = CollectSink()
    r = go(count_topo(FailsOnce, out, data=data, policy="restart"))
    assert r.restarts == 1
    assert_exactly_once(out.results, data)


def test_skip_policy_covers_timers():
    class BadTimer(Operator):
        def on_element(self, v, ctx):
            ctx.register_event_timer(v[1] + 1)

        def on_timer(self, t, ctx):
            if ctx.key == "bad":
                raise ValueError("bad timer")
            ctx.emit((ctx.key, t))
    out = CollectSink()
    r = go(Topology("t").source("s", IterableSource([("ok", 1), ("bad", 2), ("ok2", 3)]),
                                timestamp=lambda v: v[1])
           .key_by(lambda v: v[0]).operator("bt", BadTimer, policy="skip").sink("out", out))
    assert sorted(out.results) == [("ok", 2), ("ok2", 4)]
    assert len(r.dead_letters) == 1
    inst, element, exc = r.dead_letters[0]
    assert inst == "bt/0" and "bad" in repr(element) and isinstance(exc, ValueError)


def test_restart_with_max_restarts_zero_escalates():
    FAIL_ONCE.update(armed=True, failures=0)
    with pytest.raises(OperatorError, match=r"'count/0'.*transient"):
        go(count_topo(FailsOnce, CollectSink(), data=[f"w{i % 5}" for i in range(600)],
                      policy="restart", max_restarts=0))


def test_restart_gives_up_after_max_restarts():
    class Always(Operator):
        def on_element(self, v, ctx):
            if v == 3:
                raise RuntimeError("always")
            ctx.emit(v)
    with pytest.raises(OperatorError, match=r"'always/0'.*element 3"):
        go(Topology("t").source("s", IterableSource(range(10))).operator(
            "always", Always, policy="restart", max_restarts=2).sink("out", CollectSink()))


def test_exception_in_fused_map_names_the_step():
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("s", IterableSource([1, 2, 0, 4])).map("invert", lambda x: 1 / x)
           .sink("out", CollectSink()))
    assert "invert" in str(ei.value) and ei.value.element == 0
    assert isinstance(ei.value.__cause__, ZeroDivisionError)


def test_exception_in_fused_key_function_names_the_step():
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("s", IterableSource(["a", "b", None, "c"]))
           .key_by(lambda w: w.upper(), "by_upper").operator("count", AsyncCount)
           .sink("out", CollectSink()))
    assert "by_upper" in str(ei.value) and ei.value.element is None


def test_exception_in_fused_filter_and_flat_map_after_an_operator_names_the_step():
    class Id(Operator):
        def on_element(self, v, ctx):
            ctx.emit(v)
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("s", IterableSource([1, 2, "x", 4])).operator("id", Id)
           .filter("positive", lambda v: v > 0).sink("out", CollectSink()))
    assert "positive" in str(ei.value) and "id/0" in str(ei.value) and ei.value.element == "x"
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("s", IterableSource([[1], [2], 3])).flat_map("spread", iter)
           .sink("out", CollectSink()))
    assert "spread" in str(ei.value) and ei.value.element == 3


def test_exception_in_timestamp_function_names_the_source():
    with pytest.raises(OperatorError) as ei:
        go(Topology("t").source("src", IterableSource([1, 2, "x"]), timestamp=lambda v: v + 0)
           .sink("out", CollectSink()))
    assert "src" in str(ei.value) and ei.value.element == "x"


def test_context_epoch_follows_the_barriers():
    seen = []

    class Epochs(Operator):
        def on_element(self, v, ctx):
            seen.append(ctx.epoch)
            ctx.emit(v)
    out = CollectSink()
    r = go(Topology("t").source("s", IterableSource(list(range(400))), batch_size=10)
           .operator("e", Epochs).sink("o", out), checkpoint_every_elements=100)
    assert len(out.results) == 400
    assert seen[0] == 1 and seen == sorted(seen)        # starts at 1, never goes back
    assert seen[-1] <= r.epoch                          # (the final epoch may hold none)
    assert len(set(seen)) > 1
