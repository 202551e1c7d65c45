"""Event-time windows (reactor.windows): assigners, functions, lateness, restore, parallelism.

Every expected result below is computed by hand from the listed elements
``(key, value, event time)``. Sources use ``batch_size=1`` where lateness matters,
so that the watermark advances after every element (a batch carries one
watermark after all of its elements).
"""
from __future__ import annotations

import math
import random

import pytest

from reactor import CollectSink, IterableSource, Operator, Topology, run
from reactor.errors import OperatorError, TopologyError
from reactor.windows import (Session, Sliding, Tumbling, Window, WindowError, WindowResult,
                             result_timestamp, window_aggregate, window_process, window_reduce)

pytestmark = pytest.mark.timeout(120)


def ts(e):
    return e[2]


def add_values(a, b):
    """Reduce (key, value, ts) elements: sum of values, latest time."""
    return (a[0], a[1] + b[1], max(a[2], b[2]))


def count_agg(assigner, **kw):
    return window_aggregate(assigner, create=lambda: 0, add=lambda n, e: n + 1,
                            merge=lambda a, b: a + b, **kw)


class Stamp(Operator):
    """Pass-through that pairs each element with its timestamp."""

    def on_element(self, value, ctx):
        ctx.emit((value, ctx.timestamp))


def job(elements, op, *, lag=0.0, batch_size=1024, parallelism=1, stamp=False,
        late_sink=None, on_late="pass", policy="escalate", name="w", sink=None):
    sink = CollectSink() if sink is None else sink
    t = (Topology("windows")
         .source("src", IterableSource(elements), timestamp=ts, max_out_of_orderness=lag,
                 batch_size=batch_size)
         .key_by(lambda e: e[0])
         .operator(name, op, parallelism=parallelism, on_late=on_late, policy=policy))
    if stamp:
        # on_late="drop": a result timestamped late would vanish here.
        t.operator("stamp", Stamp, on_late="drop")
    t.sink("out", sink)
    if late_sink is not None:
        t.sink("late", late_sink, input=f"{name}:late")
    return t, sink


def simple(results):
    """WindowResults as sortable (key, start, end, value) tuples."""
    return sorted((r.key, r.start, r.end, r.value) for r in results)


# ------------------------------------------------------------------------------ assigners

def test_bad_sizes_name_the_argument():
    for make, arg in [(lambda: Tumbling(0), "size"), (lambda: Tumbling(-1.5), "size"),
                      (lambda: Tumbling(math.inf), "size"), (lambda: Tumbling(math.nan), "size"),
                      (lambda: Sliding(0, 1), "size"), (lambda: Sliding(10, 0), "slide"),
                      (lambda: Sliding(10, -2), "slide"), (lambda: Session(0), "gap"),
                      (lambda: Session(-1), "gap")]:
        with pytest.raises(ValueError, match=arg):
            make()
    with pytest.raises(ValueError, match=r"slide \(11\) must not exceed size \(10\)"):
        Sliding(10, 11)
    with pytest.raises(TypeError, match="size"):
        Tumbling("10")
    with pytest.raises(TypeError, match="gap"):
        Session(True)
    with pytest.raises(TypeError, match="offset"):
        Tumbling(10, offset=math.nan)


def test_bad_factory_arguments():
    with pytest.raises(ValueError, match="merge="):
        window_aggregate(Session(5), create=lambda: 0, add=lambda a, e: a + 1)
    window_aggregate(Tumbling(5), create=lambda: 0, add=lambda a, e: a + 1)   # no merge needed
    with pytest.raises(ValueError, match="allowed_lateness"):
        window_reduce(Tumbling(5), add_values, allowed_lateness=-1)
    with pytest.raises(ValueError, match="late must be"):
        window_reduce(Tumbling(5), add_values, late="keep")
    with pytest.raises(TypeError, match="assigner"):
        window_reduce(5, add_values)
    with pytest.raises(TypeError, match="fn must be callable"):
        window_process(Tumbling(5), "nope")


def test_assign_is_aligned_and_half_open():
    assert Tumbling(10).assign(0) == [(0, 10)]
    assert Tumbling(10).assign(9.5) == [(0, 10)]
    assert Tumbling(10).assign(10) == [(10, 20)]
    assert Tumbling(10).assign(-3) == [(-10, 0)]
    assert Tumbling(10, offset=3).assign(2) == [(-7, 3)]
    assert Tumbling(10, offset=3).assign(3) == [(3, 13)]
    assert Sliding(10, 5).assign(12) == [(5, 15), (10, 20)]
    assert Sliding(10, 5).assign(10) == [(5, 15), (10, 20)]
    assert Sliding(10, 3).assign(7) == [(0, 10), (3, 13), (6, 16)]      # starts k*3
    assert Sliding(10, 3, offset=1).assign(7) == [(-2, 8), (1, 11), (4, 14), (7, 17)]
    assert Sliding(10, 10).assign(7) == Tumbling(10).assign(7)
    assert Session(30).assign(7) == [(7, 37)]


def test_float_windows_have_identical_bounds():
    # t - t % size differs by rounding between elements of one window; bounds must not.
    a = Tumbling(0.1)
    bounds = {}
    for i in range(3000):
        t = i * 0.0037
        (w,) = a.assign(t)
        assert w[0] <= t < w[1]
        bounds.setdefault(round(w[0] / 0.1), set()).add(w)
    assert all(len(ws) == 1 for ws in bounds.values())
    for t in (0.3, 0.7, 1.0, 2.9999999999999996):
        for s, e in Sliding(0.3, 0.1).assign(t):
            assert s <= t < e


def test_result_timestamp_is_just_below_end():
    assert result_timestamp(10) < 10 and result_timestamp(10) > 10 - 1e-12
    assert Window(0, 10).max_timestamp == result_timestamp(10)
    assert WindowResult("k", 0, 10, 1).window == Window(0, 10)


# ------------------------------------------------------------------------- window kinds

def test_tumbling_sum():
    elements = [("a", 1, 1), ("a", 2, 4), ("b", 5, 7), ("a", 3, 12), ("b", 1, 15),
                ("a", 4, 19.5), ("a", 10, 20)]
    t, sink = job(elements, window_reduce(Tumbling(10), add_values), stamp=True)
    run(t)
    got = sorted(((r.key, r.start, r.end, r.value[1]), when) for r, when in sink.results)
    assert got == [(("a", 0, 10, 3), result_timestamp(10)),
                   (("a", 10, 20, 7), result_timestamp(20)),
                   (("a", 20, 30, 10), result_timestamp(30)),
                   (("b", 0, 10, 5), result_timestamp(10)),
                   (("b", 10, 20, 1), result_timestamp(20))]


def test_tumbling_fires_when_watermark_reaches_end():
    # In order, lag 0: [0,10) of "a" fires when the element at 10 arrives, before 25.
    elements = [("a", 1, 1), ("a", 1, 10), ("a", 1, 25)]
    t, sink = job(elements, window_reduce(Tumbling(10), add_values), batch_size=1)
    run(t)
    assert [(r.start, r.end, r.value[1]) for r in sink.results] == [(0, 10, 1), (10, 20, 1),
                                                                    (20, 30, 1)]


def test_sliding_count_element_in_several_windows():
    elements = [("a", 0, 1), ("a", 0, 6), ("a", 0, 12), ("b", 0, 9)]
    t, sink = job(elements, count_agg(Sliding(10, 5)))
    run(t)
    assert simple(sink.results) == [("a", -5, 5, 1), ("a", 0, 10, 2), ("a", 5, 15, 2),
                                    ("a", 10, 20, 1), ("b", 0, 10, 1), ("b", 5, 15, 1)]


SESSION_ELEMENTS = [("a", 1, 0), ("b", 1, 0), ("a", 2, 5), ("a", 3, 14), ("b", 2, 30),
                    ("b", 3, 8), ("a", 4, 24), ("b", 4, 22), ("b", 5, 15), ("a", 5, 40)]


def test_session_windows_merge_and_split_by_gap():
    # a: 0, 5, 14 are < 10 apart -> [0, 24); 24 is exactly 10 after 14 -> a new session
    #    [24, 34); 40 -> [40, 50).
    # b: 0 -> [0,10); 30 -> [30,40); 8 merges -> [0,18); 22 -> [22,32) merges with
    #    [30,40) -> [22,40); 15 -> [15,25) bridges both -> one session [0, 40).
    t, sink = job(SESSION_ELEMENTS, window_reduce(Session(10), add_values), lag=25,
                  batch_size=1)
    run(t)
    assert sorted((r.key, r.start, r.end, r.value[1]) for r in sink.results) == [
        ("a", 0, 24, 6), ("a", 24, 34, 4), ("a", 40, 50, 5), ("b", 0, 40, 15)]


def test_session_aggregate_needs_and_uses_merge():
    span = window_aggregate(
        Session(10), create=lambda: (0, math.inf, -math.inf),
        add=lambda acc, e: (acc[0] + 1, min(acc[1], e[2]), max(acc[2], e[2])),
        merge=lambda x, y: (x[0] + y[0], min(x[1], y[1]), max(x[2], y[2])),
        result=lambda acc: {"clicks": acc[0], "duration": acc[2] - acc[1]})
    t, sink = job(SESSION_ELEMENTS, span, lag=25, batch_size=1)
    run(t)
    assert simple_dicts(sink.results) == [
        ("a", 0, 24, 3, 14), ("a", 24, 34, 1, 0), ("a", 40, 50, 1, 0), ("b", 0, 40, 5, 30)]


def simple_dicts(results):
    return sorted((r.key, r.start, r.end, r.value["clicks"], r.value["duration"])
                  for r in results)


def test_session_process_sees_merged_elements():
    t, sink = job(SESSION_ELEMENTS, window_process(
        Session(10), lambda key, w, els: [sorted(e[1] for e in els)]), lag=25, batch_size=1)
    run(t)
    assert simple(sink.results) == [("a", 0, 24, [1, 2, 3]), ("a", 24, 34, [4]),
                                    ("a", 40, 50, [5]), ("b", 0, 40, [1, 2, 3, 4, 5])]


def test_aggregate_with_result():
    elements = [("a", 2, 1), ("a", 4, 2), ("a", 9, 3), ("b", 1, 4), ("a", 5, 11)]
    mean = window_aggregate(Tumbling(10), create=lambda: [0, 0],
                            add=lambda acc, e: [acc[0] + e[1], acc[1] + 1],
                            result=lambda acc: acc[0] / acc[1])
    t, sink = job(elements, mean)
    run(t)
    assert simple(sink.results) == [("a", 0, 10, 5.0), ("a", 10, 20, 5.0), ("b", 0, 10, 1.0)]


def test_process_function_sees_all_elements():
    seen = []

    def describe(key, window, elements):
        seen.append((key, window, [e[1] for e in elements]))
        values = [e[1] for e in elements]
        yield ("min", min(values))
        yield ("max", max(values))

    elements = [("a", 3, 1), ("a", 1, 2), ("b", 7, 3), ("a", 2, 4), ("a", 9, 15)]
    t, sink = job(elements, window_process(Tumbling(10), describe))
    run(t)
    assert sorted(seen) == [("a", Window(0, 10), [3, 1, 2]), ("a", Window(10, 20), [9]),
                            ("b", Window(0, 10), [7])]
    assert simple(sink.results) == [("a", 0, 10, ("max", 3)), ("a", 0, 10, ("min", 1)),
                                    ("a", 10, 20, ("max", 9)), ("a", 10, 20, ("min", 9)),
                                    ("b", 0, 10, ("max", 7)), ("b", 0, 10, ("min", 7))]


def test_process_function_returning_none_emits_nothing():
    t, sink = job([("a", 1, 1)], window_process(Tumbling(10), lambda k, w, els: None))
    run(t)
    assert sink.results == []


def test_results_cascade_into_downstream_windows():
    # Per-key 10-unit sums, then a global 20-unit total of those sums: the results'
    # timestamps (just below their end) fall in the right downstream window.
    elements = [("a", 1, 1), ("b", 2, 5), ("a", 3, 12), ("b", 4, 18), ("a", 5, 25),
                ("b", 6, 39)]
    sink = CollectSink()
    t = (Topology("cascade")
         .source("src", IterableSource(elements), timestamp=ts, batch_size=1)
         .key_by(lambda e: e[0])
         .operator("per-key", window_reduce(Tumbling(10), add_values))
         .key_by(lambda r: "all")
         .operator("total", window_aggregate(Tumbling(20), create=lambda: 0,
                                             add=lambda n, r: n + r.value[1]),
                   on_late="drop")
         .sink("out", sink))
    res = run(t)
    assert res.late_dropped == 0
    assert simple(sink.results) == [("all", 0, 20, 10), ("all", 20, 40, 11)]


# --------------------------------------------------------------------------- lateness

# Tumbling(10), allowed_lateness=5, in-order watermark (lag 0):
#   (1), (3)         -> [0,10) = 3
#   (11)             -> wm 11: [0,10) fires 3
#   (2) late         -> [0,10) kept until 15: updated and re-fired: 7
#   (16)             -> wm 16: [0,10) purged (cleanup timer at 15)
#   (4) late         -> [0,10) is gone: late-dropped
#   (12) late        -> [10,20) has not fired (end 20 > wm 16): just added
#   end of input     -> [10,20) = 1 + 1 + 1 = 3
LATE_ELEMENTS = [("a", 1, 1), ("a", 2, 3), ("a", 1, 11), ("a", 4, 2), ("a", 1, 16),
                 ("a", 8, 4), ("a", 1, 12)]


def test_allowed_lateness_refires_then_drops_and_counts():
    op = window_reduce(Tumbling(10), add_values, allowed_lateness=5)
    t, sink = job(LATE_ELEMENTS, op, batch_size=1, stamp=False)
    run(t)
    assert [(r.start, r.end, r.value[1]) for r in sink.results] == [(0, 10, 3), (0, 10, 7),
                                                                    (10, 20, 3)]
    assert op.late_dropped_total == 1


def test_late_elements_to_side_output():
    op = window_reduce(Tumbling(10), add_values, allowed_lateness=5, late="side")
    late = CollectSink()
    t, sink = job(LATE_ELEMENTS, op, batch_size=1, late_sink=late)
    run(t)
    assert late.results == [("a", 8, 4)]
    assert [(r.start, r.value[1]) for r in sink.results] == [(0, 3), (0, 7), (10, 3)]
    assert op.late_dropped_total == 1


def test_no_allowed_lateness_drops_everything_after_firing():
    op = window_reduce(Tumbling(10), add_values)
    t, sink = job(LATE_ELEMENTS, op, batch_size=1)
    run(t)
    # (2) and (4) are late for the fired [0,10); (12) is late but [10,20) is still open.
    assert [(r.start, r.value[1]) for r in sink.results] == [(0, 3), (10, 3)]
    assert op.late_dropped_total == 2


def test_topology_on_late_drop_preempts_allowed_lateness():
    # The topology drops every element behind the watermark before the window sees it.
    op = window_reduce(Tumbling(10), add_values, allowed_lateness=5)
    t, sink = job(LATE_ELEMENTS, op, batch_size=1, on_late="drop")
    res = run(t)
    assert [(r.start, r.value[1]) for r in sink.results] == [(0, 3), (10, 2)]
    assert res.late_dropped == 3
    assert op.late_dropped_total == 0


def test_session_late_merge_within_lateness_refires():
    # Session(10), lateness 5, lag 0: (0) -> [0,10); (12) wm 12 -> fires [0,10)=1;
    # (1) late: [1,11) overlaps [0,10) -> [0,11), end 11 <= wm: fires now = 2;
    # (17) wm 17: [0,11)'s cleanup at 16 purges it, [12,22) grows to [12,27);
    # (1.5) late: [1.5,11.5) overlaps no live session and 11.5 + 5 <= 17: dropped;
    # (3) late: [3,13) overlaps [12,27) -> [3,27), not yet fired; end: [3,27) = 3.
    elements = [("a", 1, 0), ("a", 1, 12), ("a", 1, 1), ("a", 1, 17), ("a", 1, 1.5),
                ("a", 1, 3)]
    op = count_agg(Session(10), allowed_lateness=5)
    t, sink = job(elements, op, batch_size=1)
    run(t)
    assert [(r.start, r.end, r.value) for r in sink.results] == [(0, 10, 1), (0, 11, 2),
                                                                 (3, 27, 3)]
    assert op.late_dropped_total == 1


def test_out_of_order_within_bound_is_not_late():
    rng = random.Random(7)
    inorder = [(f"k{i % 3}", i, i * 0.5) for i in range(200)]
    shuffled = inorder[:]
    # Displace elements by at most 4 positions = 2.0 event-time units < lag 3.
    for i in range(0, len(shuffled) - 4, 5):
        chunk = shuffled[i:i + 5]
        rng.shuffle(chunk)
        shuffled[i:i + 5] = chunk
    results = []
    for elements in (inorder, shuffled):
        op = window_aggregate(Sliding(10, 2.5), create=lambda: 0, add=lambda n, e: n + e[1])
        t, sink = job(elements, op, lag=3.0, batch_size=1)
        run(t)
        assert op.late_dropped_total == 0
        results.append(simple(sink.results))
    assert results[0] == results[1]
    # Hand check one window: k0 holds i = 0, 3, 6, ... ; [0,10) holds times 0..9.5 -> i < 20.
    assert ("k0", 0, 10, sum(range(0, 20, 3))) in results[0]


# -------------------------------------------------------------------------------- state

def test_state_is_cleaned_when_windows_are_purged():
    base = window_reduce(Tumbling(10), add_values, allowed_lateness=5)
    after: dict = {}

    class Probe(base):
        async def on_timer(self, time, ctx):
            await super().on_timer(time, ctx)
            after[(ctx.key, time)] = await self.windows.get()

    elements = [("a", 1, 1), ("a", 1, 11), ("b", 1, 2), ("a", 1, 30)]
    t, sink = job(elements, Probe, batch_size=1)
    run(t)
    # a: [0,10) fires at 10 but stays until 15; gone after 15. Everything gone at the end.
    assert after[("a", 10)] == {(0, 10): ("a", 1, 1), (10, 20): ("a", 1, 11)}
    # (the element at 30 is in before the watermark 30 fires the timers at 10, 15, 20)
    assert after[("a", 15)] == {(10, 20): ("a", 1, 11), (30, 40): ("a", 1, 30)}
    assert after[("a", 20)] == {(10, 20): ("a", 1, 11), (30, 40): ("a", 1, 30)}
    assert after[("a", 25)] == {(30, 40): ("a", 1, 30)}
    assert after[("a", 45)] is None and after[("b", 15)] is None
    assert {k for k, _ in after} == {"a", "b"}


def test_process_state_is_cleaned():
    base = window_process(Session(5), lambda k, w, els: [len(els)])
    leftovers = []

    class Probe(base):
        async def on_stop(self, ctx):
            for key in ("a", "b"):
                for w in [(0, 7), (0, 5), (2, 7), (10, 15), (1, 6)]:
                    ctx.key = (key, *w)
                    leftovers.extend(await self.elements.get())
            ctx.key = None

    elements = [("a", 1, 0), ("a", 1, 2), ("b", 1, 1), ("a", 1, 10)]
    t, sink = job(elements, Probe, batch_size=1)
    run(t)
    assert simple(sink.results) == [("a", 0, 7, 2), ("a", 10, 15, 1), ("b", 1, 6, 1)]
    assert leftovers == []


def test_missing_timestamp_is_a_clear_error():
    sink = CollectSink()
    t = (Topology("no-time").source("src", IterableSource([("a", 1, 1)]))
         .key_by(lambda e: e[0]).operator("w", window_reduce(Tumbling(10), add_values))
         .sink("out", sink))
    with pytest.raises(OperatorError) as info:
        run(t)
    # (reactor.run re-raises the OperatorError "from None", losing its __cause__)
    assert WindowError.__name__ in str(info.value)
    assert "no event time" in str(info.value) and "timestamp=" in str(info.value)


def test_window_operator_needs_key_by():
    t = (Topology("unkeyed").source("src", IterableSource([("a", 1, 1)]), timestamp=ts)
         .operator("w", window_reduce(Tumbling(10), add_values)).sink("out", CollectSink()))
    with pytest.raises(TopologyError, match="key_by"):
        t.validate()


# ---------------------------------------------------------------------- restore, parallel

def stream(n=400, keys=7, seed=3):
    """A deterministic stream with bursts and some disorder (all within lag 4)."""
    rng = random.Random(seed)
    out, t = [], 0.0
    for i in range(n):
        t += rng.choice([0.2, 0.5, 1.0, 3.0, 12.0])
        out.append((f"u{rng.randrange(keys)}", rng.randrange(100), round(t - rng.random() * 3, 3)))
    return out


def all_kinds():
    return {
        "tumbling": window_reduce(Tumbling(10), add_values),
        "sliding": count_agg(Sliding(15, 5), allowed_lateness=2),
        "session": count_agg(Session(4), allowed_lateness=1),
        "process": window_process(Session(4), lambda k, w, els: [sorted(e[1] for e in els)]),
    }


@pytest.mark.parametrize("kind", ["tumbling", "sliding", "session", "process"])
def test_checkpointing_run_equals_stateless_run(kind, tmp_path):
    elements = stream()
    t, sink = job(elements, all_kinds()[kind], lag=4, batch_size=8)
    run(t)
    expected = simple(sink.results)
    assert expected
    t, sink = job(elements, all_kinds()[kind], lag=4, batch_size=8)
    res = run(t, state_dir=str(tmp_path / "state"), checkpoint_every=None,
              checkpoint_every_elements=40)
    assert res.epoch is not None and res.epoch >= 2       # mid-stream ones, not just the final
    assert simple(sink.results) == expected


class Boom(Exception):
    pass


def crash_once(kind, armed, after=math.inf, ready=lambda: True):
    """``kind``'s operator, failing once, on the first element it folds whose time is
    ``>= after`` once ``ready()`` (e.g. "an epoch with results has committed")."""
    make = {"tumbling": lambda f: window_reduce(Tumbling(10), f),
            "session": lambda f: window_reduce(Session(4), f, allowed_lateness=1)}[kind]

    def fn(a, b):
        if armed["on"] and b[2] >= after and ready():
            armed["on"] = False
            raise Boom("injected")
        return add_values(a, b)
    return make(fn)


@pytest.mark.parametrize("kind", ["tumbling", "session"])
def test_restart_mid_stream_restores_windows(kind, tmp_path):
    elements = stream()
    t, sink = job(elements, crash_once(kind, {"on": False}), lag=4, batch_size=8)
    run(t)
    expected = simple(sink.results)
    sink = CollectSink()
    armed = {"on": True}
    t, _ = job(elements, crash_once(kind, armed, elements[250][2], lambda: bool(sink.results)),
               lag=4, batch_size=8, policy="restart", sink=sink)
    res = run(t, state_dir=str(tmp_path / "state"), checkpoint_every=None,
              checkpoint_every_elements=40)
    assert not armed["on"] and res.restarts == 1
    assert res.restored_from is not None            # not from scratch: from a checkpoint
    assert simple(sink.results) == expected


@pytest.mark.parametrize("parallelism", [1, 2])
def test_resume_in_a_new_run_after_a_failure(parallelism, tmp_path):
    # Run 1 fails (escalate) after some checkpoints; run 2 restores the last one (with
    # the same or another parallelism) and finishes: together they emit each result once.
    elements = stream()
    t, sink = job(elements, crash_once("session", {"on": False}), lag=4, batch_size=8)
    run(t)
    expected = simple(sink.results)
    state = str(tmp_path / "state")
    first = CollectSink()
    t, _ = job(elements, crash_once("session", {"on": True}, elements[300][2],
                                    lambda: bool(first.results)),
               lag=4, batch_size=8, sink=first)
    with pytest.raises(OperatorError, match="injected"):
        run(t, state_dir=state, checkpoint_every=None, checkpoint_every_elements=40)
    assert first.results                    # some epochs committed before the failure
    t, second = job(elements, crash_once("session", {"on": False}), lag=4, batch_size=8,
                    parallelism=parallelism)
    res = run(t, state_dir=state, checkpoint_every=None, checkpoint_every_elements=40)
    assert res.restored_from is not None
    assert simple(first.results + second.results) == expected


@pytest.mark.parametrize("kind", ["tumbling", "sliding", "session", "process"])
def test_parallelism_two_equals_one(kind):
    elements = stream(n=600, keys=11, seed=5)
    got = []
    for p in (1, 2):
        op = all_kinds()[kind]
        t, sink = job(elements, op, lag=4, batch_size=16, parallelism=p)
        run(t)
        got.append(simple(sink.results))
        assert op.late_dropped_total == 0
    assert got[0] and got[0] == got[1]


def test_restore_keeps_late_elements_late(tmp_path):
    # Epoch 1 ends right after (15) fired and purged [0,10); then the late (3) is dropped.
    # Once epoch 1 has committed, fail; the restart resumes at (3) with the checkpointed
    # watermark, so (3) is late again and [0,10) does not fire a second time.
    elements = ([("a", 1, 1), ("a", 1, 2), ("a", 1, 15), ("a", 1, 3)] +
                [("b", 1, 15)] * 1000 + [("a", 1, 16)])
    armed = {"on": True}
    sink = CollectSink()

    def fn(x, y):
        if y[0] == "b" and sink.results and armed["on"]:
            armed["on"] = False
            raise Boom("injected after epoch 1 committed")
        return add_values(x, y)

    t = (Topology("restore-late")
         .source("src", IterableSource(elements), timestamp=ts, batch_size=1)
         .key_by(lambda e: e[0])
         .operator("w", window_reduce(Tumbling(10), fn), policy="restart")
         .sink("out", sink))
    res = run(t, state_dir=str(tmp_path / "state"), checkpoint_every=None,
              checkpoint_every_elements=3, keep_checkpoints=100)
    assert res.restarts == 1
    assert simple(sink.results) == [("a", 0, 10, ("a", 2, 2)), ("a", 10, 20, ("a", 2, 16)),
                                    ("b", 10, 20, ("b", 1000, 15))]
