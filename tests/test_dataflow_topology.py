"""Topology validation: malformed topologies are refused before anything runs, with a
message naming the step; parallelism changes against an existing state dir.

Every refusal is checked twice where it applies: from ``validate()`` and from
``run()`` — which must raise before it creates anything in the ``state_dir``.
"""
from __future__ import annotations

import collections
import os

import pytest

from reactor import (CollectSink, IterableSource, Operator, Topology,
                     TopologyError, run)
from statelets import Map, Value

from dataflow_support import Count, quiet_logs  # noqa: F401 (quiet_logs: autouse)


class Pairs(Operator):
    """Keyed, with its statelet declared on a base class (found through the MRO)."""
    seen = Map(str, int)


class SubPairs(Pairs):
    def on_element(self, v, ctx):
        ctx.emit(v)


class Stateless(Operator):
    def on_element(self, v, ctx):
        ctx.emit(v)


def src(data=(1, 2, 3)):
    return IterableSource(list(data))


def refused(build, *needles, state_dir=None):
    """``build()`` (or validating/running what it returns) raises TopologyError naming
    every needle; returns the message."""
    with pytest.raises(TopologyError) as ei:
        t = build()
        t.validate()
    msg = str(ei.value)
    for n in needles:
        assert n in msg, f"the message does not name {n!r}: {msg}"
    if state_dir is not None:
        # run() refuses it too, before touching the state dir.
        with pytest.raises(TopologyError):
            run(build(), state_dir=str(state_dir), checkpoint_every=None)
        assert not os.path.exists(state_dir), f"run() created {state_dir} for an invalid topology"
    return msg


# ------------------------------------------------------------------------- structure

def test_cycle_through_forward_references(tmp_path):
    msg = refused(lambda: (Topology("t").source("s", src())
                           .map("a", str, input="b")
                           .map("b", str, input="a")
                           .sink("out", CollectSink(), input="b")),
                  "cycle", state_dir=tmp_path / "st")
    assert "a -> b -> a" in msg or "b -> a -> b" in msg, msg


def test_cycle_through_a_union_and_an_operator():
    msg = refused(lambda: (Topology("t").source("s", src())
                           .union("u", "s", "op")
                           .operator("op", Stateless, input="u")
                           .sink("out", CollectSink(), input="op")),
                  "cycle")
    assert "u" in msg and "op" in msg, msg


def test_self_loop():
    refused(lambda: (Topology("t").source("s", src()).map("m", str, input="s")
                     .map("loop", str, input="loop").sink("out", CollectSink(), input="m")),
            "cycle", "loop -> loop")


def test_unknown_input(tmp_path):
    refused(lambda: (Topology("t").source("s", src()).map("m", str, input="nope")
                     .sink("out", CollectSink())),
            "'m'", "'nope'", "does not exist", state_dir=tmp_path / "st")


def test_unknown_input_of_connect_and_union():
    refused(lambda: (Topology("t").source("s", src())
                     .connect("j", "s", "ghost", Stateless).sink("out", CollectSink())),
            "'j'", "'ghost'")
    refused(lambda: (Topology("t").source("s", src())
                     .union("u", "s", "phantom").sink("out", CollectSink())),
            "'u'", "'phantom'")


def test_dangling_step(tmp_path):
    refused(lambda: (Topology("t").source("s", src()).map("unused", str)
                     .sink("out", CollectSink(), input="s")),
            "'unused'", "dangling", state_dir=tmp_path / "st")


def test_dangling_operator_and_source():
    refused(lambda: (Topology("t").source("s", src()).source("s2", src())
                     .operator("op", Stateless, input="s").sink("out", CollectSink(), input="s")),
            "'s2'", "'op'", "dangling")


def test_duplicate_names():
    with pytest.raises(TopologyError, match="'dup'.*unique"):
        Topology("t").source("dup", src()).map("dup", str)
    with pytest.raises(TopologyError, match="'x'"):
        Topology("t").source("s", src()).operator("x", Stateless).sink("x", CollectSink())


def test_no_source_and_no_sink():
    msg = refused(lambda: Topology("empty"), "no source", "no sink")
    assert "'empty'" in msg
    refused(lambda: Topology("t").source("s", src()).map("m", str), "no sink", "'m'")
    refused(lambda: Topology("t").sink("out", CollectSink(), input="x"), "no source", "'x'")
    with pytest.raises(TopologyError, match="'m'.*nothing to attach"):
        Topology("t").map("m", str)


def test_reading_from_a_sink():
    refused(lambda: (Topology("t").source("s", src()).sink("a", CollectSink())
                     .sink("b", CollectSink(), input="a")),
            "'b'", "sink 'a'")


def test_every_problem_is_listed():
    msg = refused(lambda: (Topology("t").source("s", src()).map("m", str, input="nope")
                           .map("orphan", str, input="s")),
                  "'nope'", "no sink", "'orphan'")
    assert msg.count("\n  - ") >= 3, msg


# ------------------------------------------------------------------------ keyed state

def test_keyed_statelets_without_key_by(tmp_path):
    refused(lambda: (Topology("t").source("s", src()).operator("count", Count)
                     .sink("out", CollectSink())),
            "'count'", "total", "key_by", state_dir=tmp_path / "st")


def test_keyed_statelets_on_a_base_class_without_key_by():
    refused(lambda: (Topology("t").source("s", src()).operator("pairs", SubPairs)
                     .sink("out", CollectSink())),
            "'pairs'", "seen", "key_by")


def test_map_after_key_by_drops_the_key():
    refused(lambda: (Topology("t").source("s", src()).key_by(str).map("m", str)
                     .operator("count", Count).sink("out", CollectSink())),
            "'count'", "key_by")
    refused(lambda: (Topology("t").source("s", src()).key_by(str).flat_map("fm", lambda v: [v])
                     .operator("count", Count).sink("out", CollectSink())),
            "'count'", "key_by")


def test_filter_and_union_after_key_by_keep_the_key():
    out = CollectSink()
    t = (Topology("t").source("a", src([1, 2, 2])).key_by(str, "ka").filter("f", bool)
         .source("b", src([2, 3])).key_by(str, "kb")
         .union("u", "f", "kb").operator("count", Count).sink("out", out))
    t.validate()
    run(t, checkpoint_every=None)
    last = {}
    for w, n in out.results:
        last[w] = max(last.get(w, 0), n)
    assert last == {1: 1, 2: 3, 3: 1}


def test_union_with_one_unkeyed_input_is_refused():
    refused(lambda: (Topology("t").source("a", src()).key_by(str, "ka")
                     .source("b", src())
                     .union("u", "ka", "b").operator("count", Count).sink("out", CollectSink())),
            "'count'", "'b'", "not keyed")


def test_connect_with_one_unkeyed_side_is_refused():
    class Join(Operator):
        left = Value()

        def on_element(self, v, ctx):
            pass
    refused(lambda: (Topology("t").source("a", src()).key_by(str, "ka")
                     .source("b", src())
                     .connect("join", "ka", "b", Join).sink("out", CollectSink())),
            "'join'", "'b'", "not keyed")


def test_stateless_operator_needs_no_key_by():
    Topology("t").source("s", src()).operator("op", Stateless).sink("out", CollectSink()).validate()


# ------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("p", [0, -1, 1.5, "2", True, None])
def test_bad_parallelism(p):
    with pytest.raises(TopologyError, match=r"'count'.*parallelism"):
        Topology("t").source("s", src()).key_by(str).operator("count", Count, parallelism=p)
    with pytest.raises(TopologyError, match=r"'s'.*parallelism"):
        Topology("t").source("s", src(), parallelism=p)
    with pytest.raises(TopologyError, match=r"'out'.*parallelism"):
        Topology("t").source("s", src()).sink("out", CollectSink(), parallelism=p)


def test_operator_instance_instead_of_class():
    with pytest.raises(TopologyError, match=r"'count'.*class Count.*not an instance"):
        Topology("t").source("s", src()).key_by(str).operator("count", Count())


def test_operator_that_is_not_an_operator():
    with pytest.raises(TopologyError, match=r"'x'.*dict does not subclass"):
        Topology("t").source("s", src()).operator("x", dict)
    with pytest.raises(TopologyError, match=r"'x'"):
        Topology("t").source("s", src()).operator("x", 42)


def test_factory_returning_a_non_operator_is_refused_at_start():
    t = (Topology("t").source("s", src()).operator("fac", lambda: object())
         .sink("out", CollectSink()))
    with pytest.raises(TopologyError, match="'fac'"):
        run(t, checkpoint_every=None)


def test_bad_policy_and_on_late():
    with pytest.raises(TopologyError, match=r"'count'.*policy 'retry'"):
        Topology("t").source("s", src()).key_by(str).operator("count", Count, policy="retry")
    with pytest.raises(TopologyError, match=r"'count'.*on_late 'keep'"):
        Topology("t").source("s", src()).key_by(str).operator("count", Count, on_late="keep")
    with pytest.raises(TopologyError, match=r"'j'.*policy"):
        Topology("t").source("s", src()).connect("j", "s", "s", Stateless, policy=None)
    with pytest.raises(TopologyError, match=r"'count'.*max_restarts"):
        Topology("t").source("s", src()).key_by(str).operator("count", Count, max_restarts=-1)


def test_union_and_connect_arity():
    with pytest.raises(TopologyError, match=r"union 'u'.*at least two"):
        Topology("t").source("s", src()).union("u", "s")
    with pytest.raises(TopologyError, match=r"union 'u'.*at least two"):
        Topology("t").source("s", src()).union("u")
    with pytest.raises(TopologyError, match=r"union 'u'.*step names"):
        Topology("t").source("s", src()).union("u", "s", ["s"])
    with pytest.raises(TopologyError, match=r"connect 'j'.*right"):
        Topology("t").source("s", src()).connect("j", "s", ["s", "s"], Stateless)
    with pytest.raises(TopologyError, match=r"connect 'j'.*left"):
        Topology("t").source("s", src()).connect("j", None, "s", Stateless)
    with pytest.raises(TypeError):
        Topology("t").source("s", src()).connect("j", "s", Stateless)  # missing right


def test_side_output_of_a_non_operator(tmp_path):
    refused(lambda: (Topology("t").source("s", src()).map("m", str)
                     .sink("out", CollectSink(), input="m:late")),
            "'out'", "'m:late'", "only operators", state_dir=tmp_path / "st")
    refused(lambda: (Topology("t").source("s", src())
                     .sink("out", CollectSink(), input="s:late")),
            "'s:late'", "source")


def test_bad_names_and_arguments():
    with pytest.raises(TopologyError, match="':' or '/'"):
        Topology("t").source("a:b", src())
    with pytest.raises(TopologyError, match="':' or '/'"):
        Topology("t").source("s", src()).map("a/b", str)
    with pytest.raises(TopologyError, match="non-empty"):
        Topology("t").source("", src())
    with pytest.raises(TopologyError, match="non-empty name"):
        Topology("")
    with pytest.raises(TopologyError, match=r"source 's'.*Source"):
        Topology("t").source("s", [1, 2, 3])
    with pytest.raises(TopologyError, match=r"sink 'out'.*Sink"):
        Topology("t").source("s", src()).sink("out", print)
    with pytest.raises(TopologyError, match=r"'m'.*map needs a function"):
        Topology("t").source("s", src()).map("m", 3)
    with pytest.raises(TopologyError, match=r"'s'.*max_out_of_orderness"):
        Topology("t").source("s", src(), max_out_of_orderness=-1)
    with pytest.raises(TopologyError, match=r"'s'.*idle_timeout"):
        Topology("t").source("s", src(), idle_timeout=0)
    with pytest.raises(TopologyError, match=r"'s'.*batch_size"):
        Topology("t").source("s", src(), batch_size=0)


def test_source_over_its_max_parallelism(tmp_path):
    from reactor import FileSource
    p = tmp_path / "in.txt"
    p.write_text("a\nb\n")
    t = (Topology("t").source("s", FileSource(p), parallelism=2)
         .sink("out", CollectSink()))
    with pytest.raises(TopologyError, match=r"'s'.*parallelism up to 1"):
        run(t, checkpoint_every=None)


# ----------------------------------------------------------- parallelism vs state dir

WORDS = [f"w{i % 11}" for i in range(600)]
MORE = [f"w{i % 7}" for i in range(300)]


def count_topology(words, sink, *, source_p=1, op_p=2):
    return (Topology("pchange")
            .source("words", IterableSource(words), parallelism=source_p, batch_size=32)
            .key_by(lambda w: w)
            .operator("count", Count, parallelism=op_p)
            .sink("out", sink))


def test_source_parallelism_change_is_refused(tmp_path):
    d = str(tmp_path / "state")
    first = CollectSink()
    r = run(count_topology(WORDS, first), state_dir=d, checkpoint_every=None)
    assert r.epoch is not None
    with pytest.raises(TopologyError) as ei:
        run(count_topology(WORDS, CollectSink(), source_p=2), state_dir=d, checkpoint_every=None)
    msg = str(ei.value)
    assert "'words'" in msg and "parallelism 1" in msg and "2" in msg, msg
    assert "offset" in msg, f"the message does not say why (per-instance offsets): {msg}"
    # The state is untouched: the old parallelism still resumes it.
    again = CollectSink()
    r2 = run(count_topology(WORDS + MORE, again), state_dir=d, checkpoint_every=None)
    assert r2.restored_from == r.epoch
    last = {}
    for w, n in first.results + again.results:
        last[w] = n
    assert last == dict(collections.Counter(WORDS + MORE))


def test_sink_parallelism_change_is_refused(tmp_path):
    d = str(tmp_path / "state")
    run(count_topology(WORDS, CollectSink()), state_dir=d, checkpoint_every=None)
    t = (Topology("pchange")
         .source("words", IterableSource(WORDS), batch_size=32)
         .key_by(lambda w: w)
         .operator("count", Count, parallelism=2)
         .sink("out", CollectSink(), parallelism=2))
    with pytest.raises(TopologyError, match=r"sink 'out'.*parallelism 1"):
        run(t, state_dir=d, checkpoint_every=None)


def test_keyed_operator_parallelism_change_repartitions_state(tmp_path):
    d = str(tmp_path / "state")
    first, second, third = CollectSink(), CollectSink(), CollectSink()
    r1 = run(count_topology(WORDS, first, op_p=2), state_dir=d, checkpoint_every=None)
    r2 = run(count_topology(WORDS + MORE, second, op_p=3), state_dir=d, checkpoint_every=None)
    assert r2.restored_from == r1.epoch and r2.elements_in == len(MORE)
    assert {k for k in r2.operators if k.startswith("count/")} == {"count/0", "count/1",
                                                                   "count/2"}
    # Each key's counts go on from where the 2-instance run left them.
    seqs = collections.defaultdict(list)
    for w, n in first.results + second.results:
        seqs[w].append(n)
    total = collections.Counter(WORDS + MORE)
    assert {w: s for w, s in seqs.items()} == {w: list(range(1, total[w] + 1)) for w in total}
    # ... and down to 1 instance again.
    r3 = run(count_topology(WORDS + MORE + MORE, third, op_p=1), state_dir=d,
             checkpoint_every=None)
    assert r3.restored_from == r2.epoch
    last = {w: n for w, n in third.results}
    total.update(MORE)
    assert last == {w: total[w] for w in set(MORE)}


def test_late_side_output_nobody_reads(tmp_path):
    class Pass(Operator):
        def on_element(self, v, ctx):
            ctx.emit(v)
    refused(lambda: Topology("t").source("s", src()).operator("op", Pass, on_late="side")
            .sink("o", CollectSink()),
            "'op'", "on_late='side'", "input='op:late'", state_dir=tmp_path / "state")
