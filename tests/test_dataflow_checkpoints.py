"""Checkpoints and restore of dataflow jobs.

The workload is a keyed running count: every element ``w`` produces
``(w, n)`` with ``n`` its running count. Exactly-once is checked on the
committed output (``CollectSink`` only shows committed epochs): over all runs
of a state dir, each key's counts are ``1, 2, ..., Counter[key]`` — nothing
skipped, nothing repeated — and the last one is the exact count.
"""
from __future__ import annotations

import collections
import errno
import os
import re
import shutil
import threading
import time

import pytest

from reactor import (CheckpointError, CollectSink, IterableSource, Operator, OperatorError,
                     Source, SourceReader, Topology, current_reactor, run)
from statelets import Map, Value

from dataflow_support import Count, committed_epoch, quiet_logs  # noqa: F401 (quiet_logs: autouse)


WORDS = [f"w{(i * 5) % 11}" for i in range(1500)]
ONE_EACH = sorted(set(WORDS))


class EpochGatedSource(Source):
    """The elements of ``data``, ``step`` at a time: the next ``step`` only once the
    state dir holds a committed epoch for each step released so far.

    With ``checkpoint_every_elements=step`` every step then ends in its own committed
    epoch, however fast the machine: the test observes the commits instead of racing
    them. (A 10 s guard per step turns a missing commit into an error.) With ``hold``
    (a threading.Event) the source does not end after its data until ``hold`` is set
    (or a 20 s guard passes): it keeps the job alive until something was observed.
    """

    def __init__(self, data, state_dir, step, hold=None):
        self.data, self.state_dir, self.step = list(data), str(state_dir), step
        self.hold = hold

    def committed(self):
        return committed_epoch(self.state_dir)

    def open(self, index, parallelism, offset):
        src = self

        class Reader(SourceReader):
            def __init__(self):
                self.pos = offset or 0
                self.base = src.committed()
                self.released = 0
                self.waiting_since = None

            async def read(self, max_n):
                if self.pos >= len(src.data):
                    if src.hold is None or src.hold.is_set():
                        return None
                    self.held_since = getattr(self, "held_since", None) or time.monotonic()
                    return [] if time.monotonic() - self.held_since < 20 else None
                if self.released >= src.step:
                    if src.committed() < self.base + 1:
                        now = time.monotonic()
                        self.waiting_since = self.waiting_since or now
                        if now - self.waiting_since < 10:
                            return []
                        raise RuntimeError(
                            f"EpochGatedSource: no epoch committed within 10 s after element "
                            f"{self.pos} (is checkpoint_every_elements == {src.step}?)")
                    self.base = src.committed()
                    self.released = 0
                    self.waiting_since = None
                n = min(max_n, src.step - self.released)
                out = src.data[self.pos:self.pos + n]
                self.pos += len(out)
                self.released += len(out)
                return out

            def offset(self):
                return self.pos
        return Reader()


STEP = 150


def topo(sink, data=WORDS, op=Count, p=2, gate=None, **opkw):
    """The keyed count; with ``gate`` (the state dir) an epoch commits every STEP elements."""
    source = IterableSource(data) if gate is None else EpochGatedSource(data, gate, STEP)
    return (Topology("ckpt").source("words", source, batch_size=16)
            .key_by(lambda w: w).operator("count", op, parallelism=p, **opkw).sink("out", sink))


OFTEN = dict(checkpoint_every=None, checkpoint_every_elements=STEP)


def seqs_of(rows):
    seqs = collections.defaultdict(list)
    for k, n in rows:
        seqs[k].append(n)
    return seqs


def assert_exactly_once(rows, data, what=""):
    seqs = seqs_of(rows)
    want = collections.Counter(data)
    bad = {k: (s[:5], s[-5:], len(s), want[k]) for k, s in seqs.items()
           if s != list(range(1, want[k] + 1))}
    assert not bad, f"{what}: counts skipped or repeated: {bad}"
    assert set(seqs) == set(want), f"{what}: keys missing {set(want) - set(seqs)}"


def snapshots(d):
    return sorted(int(n) for n in os.listdir(os.path.join(d, "snapshots")) if n.isdigit())


# ------------------------------------------------------------------------- epochs

def test_several_epochs_are_committed(tmp_path):
    d = str(tmp_path / "state")
    out = CollectSink()
    r = run(topo(out, gate=d), state_dir=d, keep_checkpoints=100, **OFTEN)
    epochs = [c["epoch"] for c in r.checkpoints]
    assert len(epochs) == len(WORDS) // STEP + 1, r.checkpoints
    assert epochs == list(range(1, len(epochs) + 1))
    assert r.epoch == epochs[-1] and r.restored_from is None
    assert [c["final"] for c in r.checkpoints] == [False] * (len(epochs) - 1) + [True]
    assert snapshots(d) == epochs
    assert_exactly_once(out.results, WORDS)


def test_time_driven_and_final_checkpoints(tmp_path):
    d = str(tmp_path / "state")
    r = run(topo(CollectSink()), state_dir=d, checkpoint_every=None)
    assert [c["epoch"] for c in r.checkpoints] == [1] and r.checkpoints[0]["final"]


def test_restore_from_every_retained_epoch(tmp_path):
    base = str(tmp_path / "state")
    first = CollectSink()
    r = run(topo(first, gate=base), state_dir=base, keep_checkpoints=100, **OFTEN)
    epochs = snapshots(base)
    assert len(epochs) == len(WORDS) // STEP + 1 and epochs[-1] == r.epoch
    more = WORDS + ONE_EACH                  # every key appears after every epoch's offset
    for n in epochs:
        d = str(tmp_path / f"from-{n}")
        shutil.copytree(base, d)
        out = CollectSink()
        r2 = run(topo(out, data=more, p=3), state_dir=d, epoch=n, checkpoint_every=None)
        assert r2.restored_from == n, (n, r2.restored_from)
        # The source rewound to epoch n's offset: what it read again plus what epoch n
        # had seen is the whole input, and each key's counts go on from n's state.
        seqs = seqs_of(out.results)
        total = collections.Counter(more)
        assert sum(len(s) for s in seqs.values()) == r2.elements_in, n
        assert set(seqs) == set(total), n
        for k, s in seqs.items():
            assert s == list(range(total[k] - len(s) + 1, total[k] + 1)), (
                f"restored epoch {n}: counts of {k!r} after the restore are {s[:5]}..{s[-3:]}, "
                f"expected a run ending at {total[k]}")
        # And epoch n's committed output (the first run's, up to n) joins it exactly.
        assert {k: s[-1] for k, s in seqs.items()} == dict(total)


def test_restore_from_every_epoch_retained_by_default(tmp_path):
    base = str(tmp_path / "state")
    run(topo(CollectSink(), gate=base), state_dir=base, **OFTEN)
    epochs = snapshots(base)
    assert len(epochs) == 3, epochs            # keep_checkpoints defaults to 3
    for n in epochs:
        d = str(tmp_path / f"from-{n}")
        shutil.copytree(base, d)
        out = CollectSink()
        r = run(topo(out, data=WORDS + ONE_EACH), state_dir=d, epoch=n, checkpoint_every=None)
        assert r.restored_from == n
        assert {k: s[-1] for k, s in seqs_of(out.results).items()} == dict(
            collections.Counter(WORDS + ONE_EACH))


def test_restoring_an_older_epoch_with_a_collect_sink_is_exactly_once(tmp_path):
    d = str(tmp_path / "state")
    first = CollectSink()
    r = run(topo(first, gate=d), state_dir=d, keep_checkpoints=100, **OFTEN)
    assert r.epoch >= 3
    # Restoring epoch 1 in place abandons the later ones; the run continues from 1.
    again = CollectSink()
    r2 = run(topo(again), state_dir=d, epoch=1, **OFTEN)
    assert r2.restored_from == 1
    assert snapshots(d)[-1] == r2.epoch
    seqs = seqs_of(again.results)
    total = collections.Counter(WORDS)
    assert {k: s[-1] for k, s in seqs.items()} == dict(total)
    # A later plain run starts from the new timeline's last epoch and reads nothing.
    r3 = run(topo(CollectSink()), state_dir=d, checkpoint_every=None)
    assert r3.restored_from == r2.epoch and r3.elements_in == 0


def test_missing_epoch_is_refused(tmp_path):
    d = str(tmp_path / "state")
    run(topo(CollectSink()), state_dir=d, checkpoint_every=None)
    with pytest.raises(CheckpointError, match=r"epoch 99"):
        run(topo(CollectSink()), state_dir=d, epoch=99, checkpoint_every=None)


def test_rerunning_a_finished_job_does_nothing_and_keeps_the_state(tmp_path):
    d = str(tmp_path / "state")
    first = CollectSink()
    r1 = run(topo(first), state_dir=d, **OFTEN)
    again = CollectSink()
    r2 = run(topo(again), state_dir=d, **OFTEN)
    assert r2.restored_from == r1.epoch
    assert r2.elements_in == 0 and again.results == []
    # The state is intact: a longer input continues every count from its total.
    third = CollectSink()
    r3 = run(topo(third, data=WORDS + ONE_EACH), state_dir=d, **OFTEN)
    assert r3.elements_in == len(ONE_EACH)
    assert sorted(third.results) == sorted((k, c + 1) for k, c in
                                           collections.Counter(WORDS).items())


# -------------------------------------------------------------------- failures

def test_unpicklable_state_names_the_statelet_and_keeps_the_checkpoint(tmp_path):
    class Hoard(Operator):
        total = Value(int, default=0)
        thing = Value()

        async def on_element(self, w, ctx):
            n = await self.total.get() + 1
            await self.total.set(n)
            if w == "w3" and n == 100:
                await self.thing.set(threading.Lock())
            ctx.emit((w, n))
    d = str(tmp_path / "state")
    first = CollectSink()
    with pytest.raises(OperatorError) as ei:
        run(topo(first, op=Hoard, gate=d), state_dir=d, **OFTEN)
    msg = str(ei.value)
    assert "'thing'" in msg and "Hoard" in msg and "pickle" in msg, msg
    epochs = snapshots(d)
    assert epochs, "no checkpoint was committed before the failure"
    again = CollectSink()
    r = run(topo(again), state_dir=d, checkpoint_every=None)
    assert r.restored_from == epochs[-1]
    assert_exactly_once(first.results + again.results, WORDS, "after the unpicklable value")


ESCALATE = {"armed": True}


class FailsAt(Operator):
    total = Value(int, default=0)

    async def on_element(self, w, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        if ESCALATE["armed"] and w == "w7" and n == 90:
            raise RuntimeError("w7 #90")
        ctx.emit((w, n))


def test_escalated_failure_keeps_the_last_committed_checkpoint(tmp_path):
    d = str(tmp_path / "state")
    ESCALATE["armed"] = True
    first = CollectSink()
    with pytest.raises(OperatorError, match=r"'count/\d'.*'w7'"):
        run(topo(first, op=FailsAt, gate=d), state_dir=d, **OFTEN)
    epochs = snapshots(d)
    assert epochs, "no checkpoint was committed before the failure"
    assert_prefix = seqs_of(first.results)
    assert all(s == list(range(1, len(s) + 1)) for s in assert_prefix.values())
    ESCALATE["armed"] = False
    again = CollectSink()
    r = run(topo(again, op=FailsAt), state_dir=d, **OFTEN)
    assert r.restored_from == epochs[-1]
    assert_exactly_once(first.results + again.results, WORDS, "after an escalated failure")


def test_event_timers_survive_a_failure_and_fire_once(tmp_path):
    class Deadline(Operator):
        seen = Value(int, default=0)

        async def on_element(self, v, ctx):
            w, t = v
            n = await self.seen.get() + 1
            await self.seen.set(n)
            ctx.register_event_timer(10_000)
            if ESCALATE["armed"] and t == 900:
                raise RuntimeError("crash at t=900")

        async def on_timer(self, t, ctx):
            ctx.emit((ctx.key, t, await self.seen.get()))
    data = [(f"k{i % 6}", i) for i in range(1200)]
    d = str(tmp_path / "state")

    def t(sink):
        return (Topology("timers").source("s", EpochGatedSource(data, d, STEP),
                                          timestamp=lambda v: v[1], batch_size=16)
                .key_by(lambda v: v[0]).operator("dl", Deadline, parallelism=2)
                .sink("out", sink))
    ESCALATE["armed"] = True
    first = CollectSink()
    with pytest.raises(OperatorError):
        run(t(first), state_dir=d, **OFTEN)
    assert snapshots(d) and first.results == []
    ESCALATE["armed"] = False
    again = CollectSink()
    run(t(again), state_dir=d, **OFTEN)
    assert sorted(again.results) == [(f"k{i}", 10_000, 200) for i in range(6)]


def test_processing_timers_survive_a_failure(tmp_path):
    fired = []
    flag = threading.Event()
    due = {}

    class Remind(Operator):
        def on_element(self, v, ctx):
            if v == "reg":
                due["t"] = ctx.processing_time() + 0.5
                ctx.register_processing_timer(due["t"])
            elif v == "boom" and ESCALATE["armed"]:
                raise RuntimeError("boom")

        def on_timer(self, t, ctx):
            fired.append((ctx.key, t, time.time() >= t))
            ctx.emit(ctx.key)
            flag.set()
    d = str(tmp_path / "state")
    # Epoch 1 commits after the first 5 elements (the timer in it); "boom" is the 10th.
    data = ["reg"] + ["pad"] * 8 + ["boom"]

    def t(sink):
        return (Topology("pt").source("s", EpochGatedSource(data, d, 5, hold=flag), batch_size=1)
                .key_by(lambda v: "k").operator("remind", Remind).sink("out", sink))
    ESCALATE["armed"] = True
    with pytest.raises(OperatorError, match="boom"):
        run(t(CollectSink()), state_dir=d, checkpoint_every=None, checkpoint_every_elements=5)
    if fired:
        pytest.skip("the timer fired before the injected failure (a very slow machine)")
    assert snapshots(d) == [1]
    ESCALATE["armed"] = False
    out = CollectSink()
    r = run(t(out), state_dir=d, checkpoint_every=None, checkpoint_every_elements=5)
    assert r.restored_from == 1
    assert flag.is_set(), "the restored processing-time timer did not fire within 20 s"
    assert fired == [("k", due["t"], True)]
    assert out.results == ["k"]


# --------------------------------------------------------- a checkpoint that fails

def manifest_fault(from_epoch, hits, fired):
    """A ring fault injector: ENOSPC on every MANIFEST operation of epoch >= from_epoch."""
    def inject(kind, name):
        if not name or "MANIFEST" not in name.upper():
            return None
        m = re.search(r"(?:\.tmp-|/)(\d+)/MANIFEST", name)
        if m and int(m.group(1)) < from_epoch:
            return None
        hits.append((kind, name))
        fired.set()
        return errno.ENOSPC
    return inject


REACTOR = {}


class InjectingCount(Count):
    """Installs ``INJECT["fn"]`` as the ring's fault injector when the job starts."""

    def on_start(self, ctx):
        r = current_reactor()
        REACTOR["r"] = r
        if INJECT.get("fn") is not None:
            r.ring.fault_injector = INJECT["fn"]


INJECT = {}


def run_with_failing_checkpoint(d, sink, grace=3.0):
    """Run with checkpoints of epoch >= 3 failing (ENOSPC on the MANIFEST). Returns what
    run() returned or raised, and the injector's hits. A watchdog stops the job if it
    has not ended ``grace`` s after the first injected fault (a hang, not an error)."""
    hits, fired = [], threading.Event()
    INJECT["fn"] = manifest_fault(3, hits, fired)
    REACTOR.clear()
    stop = threading.Event()

    def watchdog():
        while not fired.wait(0.05):
            if stop.is_set():
                return
        if not stop.wait(grace) and "r" in REACTOR:
            REACTOR["r"].request_shutdown("test watchdog: the job hung after a failed checkpoint")
    w = threading.Thread(target=watchdog, daemon=True)
    w.start()
    try:
        outcome = run(topo(sink, op=InjectingCount, p=1, gate=d), state_dir=d,
                      handle_signals=False, **OFTEN)
    except BaseException as e:      # noqa: BLE001 - inspected by the caller
        outcome = e
    finally:
        stop.set()
        INJECT["fn"] = None
        w.join()
    return outcome, hits


def test_failed_checkpoint_raises_checkpoint_error(tmp_path):
    d = str(tmp_path / "state")
    outcome, hits = run_with_failing_checkpoint(d, CollectSink())
    assert hits, "the fault injector never fired"
    assert isinstance(outcome, CheckpointError), (
        f"run() {'raised' if isinstance(outcome, BaseException) else 'returned'} {outcome!r} "
        f"after ENOSPC on {hits[0]}; expected CheckpointError")
    assert "epoch 3" in str(outcome) and "intact" in str(outcome)


def test_previous_checkpoint_restores_after_a_failed_one(tmp_path):
    d = str(tmp_path / "state")
    first = CollectSink()
    outcome, hits = run_with_failing_checkpoint(d, first)
    assert hits, "the fault injector never fired"
    assert not (outcome is not None and not isinstance(outcome, BaseException)), (
        f"the job finished although checkpoint 3 failed: {outcome}")
    assert snapshots(d) == [1, 2], os.listdir(os.path.join(d, "snapshots"))
    again = CollectSink()
    r = run(topo(again, p=1), state_dir=d, **OFTEN)
    assert r.restored_from == 2
    assert_exactly_once(first.results + again.results, WORDS, "after a failed checkpoint")


# ----------------------------------------------------- event time across a restore

WINDOW_FAIL = {"armed": False}


class Windows(Operator):
    """Per-key sums over tumbling event-time windows of 50, emitted by event timers."""
    sums = Map(int, int)

    async def on_element(self, v, ctx):
        k, t, x = v
        if WINDOW_FAIL["armed"] and t == 700:
            raise RuntimeError("fail at t=700")
        w = t // 50 * 50
        await self.sums.put(w, await self.sums.get(w, 0) + x)
        ctx.register_event_timer(w + 49)

    async def on_timer(self, t, ctx):
        w = t - 49
        s = await self.sums.get(w)
        await self.sums.remove(w)
        ctx.emit((ctx.key, w, s))


def window_events():
    import random
    rng = random.Random(3)
    data = []
    for i in range(1000):
        t = max(0, i + rng.randint(-30, 5))
        data.append((f"k{i % 5}", 701 if t == 700 else t, i))
    data[700] = ("k0", 700, 700)             # the only element at t=700
    return data


def test_event_time_windows_are_exactly_once_across_a_failure_and_a_rescale(tmp_path):
    """Late decisions, window contents and timers come out as in an uninterrupted run
    after a failure at t=700, a restore (watermarks restored with the offsets) and a
    parallelism change 2 -> 3 (timers re-partitioned with their keys)."""
    data = window_events()

    def t(sink, d, p):
        return (Topology("win")
                .source("s", EpochGatedSource(data, d, STEP), timestamp=lambda v: v[1],
                        max_out_of_orderness=10, batch_size=8)
                .key_by(lambda v: v[0]).operator("win", Windows, parallelism=p, on_late="drop")
                .sink("out", sink))
    ref_dir = str(tmp_path / "ref")
    ref = CollectSink()
    WINDOW_FAIL["armed"] = False
    r = run(t(ref, ref_dir, 2), state_dir=ref_dir, **OFTEN)
    assert r.late_dropped > 0 and len(ref.results) == 100
    d = str(tmp_path / "state")
    first = CollectSink()
    WINDOW_FAIL["armed"] = True
    try:
        with pytest.raises(OperatorError, match="t=700"):
            run(t(first, d, 2), state_dir=d, **OFTEN)
    finally:
        WINDOW_FAIL["armed"] = False
    again = CollectSink()
    r2 = run(t(again, d, 3), state_dir=d, **OFTEN)
    assert r2.restored_from is not None and first.results
    both = first.results + again.results
    assert len(both) == len(set(both)), "a window was emitted twice"
    assert sorted(both) == sorted(ref.results)


def test_corrupt_state_fails_the_job_even_under_skip(tmp_path):
    """A damaged segment is not a bad element: `skip` must not skip over it."""
    import glob
    import statelets
    from reactor import OperatorError

    d = str(tmp_path / "state")
    words = [f"w{i % 50}" for i in range(2000)]

    class Count(Operator):
        total = Value(int, default=0)

        async def on_element(self, w, ctx):
            await self.total.set(await self.total.get() + 1)

    def topo(source):     # a new source name reads the input again, over the stored counts
        return (Topology("c").source(source, IterableSource(words)).key_by(lambda w: w)
                .operator("count", Count, policy="skip").sink("o", CollectSink()))

    run(topo("s"), state_dir=d, checkpoint_every=None)
    segs = sorted(p for p in glob.glob(f"{d}/segments/*") if not p.endswith((".hint", ".tmp")))
    segs = [p for p in segs if os.path.getsize(p) > 64]
    assert segs, "expected a sealed segment with records"
    with open(segs[0], "r+b") as f:             # flip a byte inside the first record's value
        f.seek(40)
        b = f.read(1)
        f.seek(40)
        f.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(OperatorError) as ei:
        run(topo("again"), state_dir=d, checkpoint_every=None)
    assert isinstance(ei.value.__cause__, statelets.CorruptionError)
    assert "count/0" in str(ei.value)
