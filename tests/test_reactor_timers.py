"""reactor.timers: due order, never early, cancellation, periodic timers, wake-ups, scale."""
from __future__ import annotations

import gc
import random
import time
import tracemalloc

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reactor
from uring.curio_compat import curio


@pytest.mark.timeout(30)
def test_many_random_timers_fire_in_due_order_and_never_early():
    rng = random.Random(1234)
    n = 500

    async def main():
        timers = reactor.current_reactor().timers
        base = time.monotonic()
        order: list[int] = []
        late: list[float] = []
        all_fired = curio.Event()
        dues = [base + rng.uniform(0.0, 0.3) for _ in range(n)]
        # a few exact ties: same due time, fire in scheduling order
        dues[10] = dues[11] = dues[12]

        def cb(i):
            now = time.monotonic()
            late.append(now - dues[i])
            order.append(i)

        for i, due in enumerate(dues):
            timers.schedule_at(due, cb, i)
        timers.schedule_at(max(dues), all_fired.set)   # last (ties fire in order)
        assert timers.pending == n + 1
        async with curio.timeout_after(10):
            await all_fired.wait()
        return order, late, dues, timers.pending

    order, late, dues, pending = reactor.run(main)
    assert len(order) == n and pending == 0
    expected = sorted(range(n), key=lambda i: (dues[i], i))
    assert order == expected
    assert min(late) >= 0, f"a timer fired {-min(late) * 1000:.3f} ms early"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(min_value=0.0, max_value=0.05), min_size=1, max_size=40))
def test_timers_fire_in_order_never_early_property(delays):
    async def main():
        timers = reactor.current_reactor().timers
        fired: list[tuple[int, float, float]] = []
        done = curio.Event()
        t = []

        def cb(i):
            fired.append((i, t[i].due, time.monotonic()))

        for i, d in enumerate(delays):
            t.append(timers.schedule_after(d, cb, i))
        last = max(tm.due for tm in t)
        timers.schedule_at(last, done.set)     # a coroutine-returning callback: run as a task
        async with curio.timeout_after(5):
            await done.wait()
        return fired, [tm.due for tm in t]

    fired, dues = reactor.run(main, handle_signals=False)
    assert [i for i, _, _ in fired] == sorted(range(len(delays)), key=lambda i: (dues[i], i))
    assert all(at >= due for _, due, at in fired)


def test_cancelled_timers_never_fire():
    async def main():
        timers = reactor.current_reactor().timers
        fired: list[int] = []
        done = curio.Event()
        ts = [timers.schedule_after(0.001 * (i % 20), fired.append, i) for i in range(200)]
        cancelled = set(range(0, 200, 2))
        results = [ts[i].cancel() for i in sorted(cancelled)]
        again = [ts[i].cancel() for i in sorted(cancelled)]
        pending_after_cancel = timers.pending
        timers.schedule_after(0.03, done.set)
        async with curio.timeout_after(5):
            await done.wait()
        after_fire = [ts[i].cancel() for i in range(1, 200, 2)]
        return (fired, cancelled, results, again, pending_after_cancel, after_fire,
                [t.fired for t in ts], timers.pending)

    (fired, cancelled, results, again, pending_mid, after_fire,
     fired_counts, pending_end) = reactor.run(main)
    assert all(results) and not any(again)
    assert pending_mid == 100
    assert not cancelled & set(fired)
    assert sorted(fired) == list(range(1, 200, 2))
    assert not any(after_fire), "cancel() after a one-shot timer fired must return False"
    assert fired_counts == [0 if i in cancelled else 1 for i in range(200)]
    assert pending_end == 0


def test_periodic_timer_fires_repeatedly_until_cancelled():
    async def main():
        timers = reactor.current_reactor().timers
        ticks: list[float] = []
        enough = curio.Event()
        start = time.monotonic()

        def tick():
            ticks.append(time.monotonic())
            if len(ticks) == 5:
                return enough.set()           # awaitable: run as a task

        t = timers.schedule_periodic(0.01, tick)
        assert timers.pending == 1
        async with curio.timeout_after(5):
            await enough.wait()
        assert t.cancel() is True             # periodic: cancellable after firing
        assert t.cancel() is False
        n = len(ticks)
        fired = t.fired
        await curio.sleep(0.05)               # workload: five more intervals
        return start, ticks, n, fired, timers.pending

    start, ticks, n, fired, pending = reactor.run(main)
    assert n >= 5 and fired == n
    assert len(ticks) == n, "a cancelled periodic timer fired again"
    assert pending == 0
    # each tick at or after start + k * interval (never early)
    for k, at in enumerate(ticks, start=1):
        assert at >= start + k * 0.01 - 1e-9


def test_periodic_timer_first_and_self_cancel():
    interval = 0.1

    async def main():
        timers = reactor.current_reactor().timers
        ticks: list[float] = []
        box: list = []
        third = curio.Event()

        def tick():
            ticks.append(time.monotonic())
            if len(ticks) == 3:
                box[0].cancel()               # a periodic timer cancelling itself
                return third.set()

        t0 = time.monotonic()
        box.append(timers.schedule_periodic(interval, tick, first=0))
        async with curio.timeout_after(5):
            await third.wait()
        await curio.sleep(2.5 * interval)     # workload: would be two more ticks
        return t0, ticks, timers.pending, box[0].fired

    t0, ticks, pending, fired = reactor.run(main)
    assert len(ticks) == 3 == fired and pending == 0
    assert ticks[0] - t0 < interval           # first=0: not one interval later
    assert ticks[1] >= ticks[0] + interval - 1e-9 or ticks[1] >= t0 + interval - 1e-9
    assert ticks[2] >= t0 + 2 * interval - 1e-9


@pytest.mark.timeout(30)
def test_earlier_timer_scheduled_while_service_sleeps_fires_on_time():
    async def main():
        timers = reactor.current_reactor().timers
        late_timer = timers.schedule_after(3600, lambda: None)
        await curio.sleep(0.02)               # the service now sleeps towards +1 h
        fired = curio.Event()
        at: list[float] = []

        def cb():
            at.append(time.monotonic())
            return fired.set()

        t = timers.schedule_after(0.05, cb)
        async with curio.timeout_after(5):
            await fired.wait()
        late_timer.cancel()
        return t.due, at[0]

    due, at = reactor.run(main)
    assert at >= due
    assert at - due < 0.05, f"earlier timer fired {1000 * (at - due):.1f} ms late"


def test_earlier_timer_from_another_task_wakes_an_idle_service():
    async def other(timers, at, fired):
        def cb():
            at.append(time.monotonic())
            return fired.set()
        return timers.schedule_after(0.03, cb)

    async def main():
        r = reactor.current_reactor()
        fired = curio.Event()
        at: list[float] = []
        await curio.sleep(0.01)                # service idle: no timers at all
        t = await (await r.spawn(other, r.timers, at, fired, queue=r.queue("q", 10))).join()
        async with curio.timeout_after(5):
            await fired.wait()
        return t.due, at[0]

    due, at = reactor.run(main)
    assert due <= at < due + 0.05


@pytest.mark.timeout(60)
def test_hundred_thousand_pending_timers():
    n = 100_000

    async def main():
        timers = reactor.current_reactor().timers
        cb = lambda: None  # noqa: E731
        gc.collect()
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            far = time.monotonic() + 3600
            ts = [timers.schedule_at(far + i * 1e-6, cb) for i in range(n)]
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        pending = timers.pending
        await curio.sleep(0.01)                # the service runs and goes back to sleep
        cancelled = sum(t.cancel() for t in ts)
        return pending, after - before, cancelled, timers.pending

    pending, grown, cancelled, pending_end = reactor.run(main)
    assert pending == n
    assert grown < 40 * 1024 * 1024, f"100k pending timers took {grown / 2**20:.1f} MiB"
    assert cancelled == n
    assert pending_end == 0


def test_rescheduled_timers_do_not_grow_the_heap_without_bound():
    """The per-key idle-timeout pattern: each event cancels and re-arms a far timer.

    The timer service documents that the heap is rebuilt once more than half
    of it is cancelled; that must hold even when no timer ever fires.
    """
    async def main():
        timers = reactor.current_reactor().timers
        cb = lambda: None  # noqa: E731
        t = timers.schedule_after(3600, cb)
        await curio.sleep(0.01)                # the service sleeps towards that deadline
        for _ in range(50_000):
            t.cancel()
            t = timers.schedule_after(3600, cb)
            await reactor.maybe_yield()
        await curio.sleep(0.01)
        return timers.pending, timers.stats()["heap"]

    pending, heap = reactor.run(main)
    assert pending == 1
    assert heap <= 2 * 1024 + 2 * pending, f"{heap} heap entries for {pending} pending timer"


def test_timer_callback_returning_coroutine_is_run():
    async def main():
        timers = reactor.current_reactor().timers
        done = curio.Event()
        seen: list = []

        async def later(x):
            await curio.sleep(0.001)
            seen.append(x)
            await done.set()

        timers.schedule_after(0.005, lambda: later("coro"))
        timers.schedule_after(0.001, later, "func")   # async function: call returns a coroutine
        async with curio.timeout_after(5):
            while len(seen) < 2:
                await done.wait()
                done.clear()
        return seen

    assert sorted(reactor.run(main)) == ["coro", "func"]


def test_failing_callback_does_not_stop_the_service():
    async def main():
        timers = reactor.current_reactor().timers
        done = curio.Event()

        def boom():
            raise RuntimeError("callback failed")

        timers.schedule_after(0.001, boom)
        timers.schedule_after(0.005, done.set)
        async with curio.timeout_after(5):
            await done.wait()
        return timers.stats()

    stats = reactor.run(main)
    assert stats["fired"] >= 2 and stats["pending"] == 0


def test_schedule_at_in_the_past_fires_promptly():
    async def main():
        timers = reactor.current_reactor().timers
        done = curio.Event()
        t = timers.schedule_at(time.monotonic() - 10, done.set)
        async with curio.timeout_after(5):
            await done.wait()
        return t.fired

    assert reactor.run(main) == 1


def test_timer_argument_validation():
    async def main():
        timers = reactor.current_reactor().timers
        with pytest.raises(ValueError):
            timers.schedule_after(-1, lambda: None)
        with pytest.raises(ValueError):
            timers.schedule_periodic(0, lambda: None)
        with pytest.raises(TypeError):
            timers.schedule_after(1, "not callable")
        with pytest.raises(TypeError):
            timers.schedule_at(float("nan"), lambda: None)
        with pytest.raises(TypeError):
            timers.schedule_at("soon", lambda: None)
        return timers.pending

    assert reactor.run(main) == 0


def test_mass_cancel_from_a_callback_does_not_refire_timers():
    """A callback that cancels many timers (compacting the heap) while others are due.

    Every timer due in the same firing pass must fire exactly once, and the
    pending count must end at 0 (not below).
    """
    async def main():
        timers = reactor.current_reactor().timers
        far = [timers.schedule_after(3600, lambda: None) for _ in range(3000)]
        counts = [0] * 10
        done = curio.Event()

        def cancel_all():
            for t in far:
                t.cancel()

        def cb(i):
            counts[i] += 1

        due = time.monotonic() + 0.02
        timers.schedule_at(due, cancel_all)
        ts = [timers.schedule_at(due, cb, i) for i in range(10)]
        timers.schedule_at(due + 0.05, done.set)
        async with curio.timeout_after(5):
            await done.wait()
        await curio.sleep(0.02)                # workload: a double fire would land here
        return counts, [t.fired for t in ts], timers.pending

    counts, fired, pending = reactor.run(main)
    assert counts == [1] * 10, f"timers fired {counts} times"
    assert fired == [1] * 10
    assert pending == 0
