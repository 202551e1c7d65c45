"""One timer service per reactor: a heap of deadlines served by one curio task.

Pending timers cost a heap entry each and no CPU until due (100,000 pending
timers are ~100 bytes apiece). Cancellation is lazy: a cancelled entry stays in
the heap until it reaches the top, and the heap is rebuilt when more than half
of it is cancelled. Callbacks run in the timer task; a callback returning an
awaitable has it spawned as a task of the service's queue, so a slow callback
never delays other timers.

Precision: the task waits on a ``timerfd`` armed at the earliest deadline
(absolute ``CLOCK_MONOTONIC``, the clock of ``time.monotonic``), so timers fire
within tens of microseconds of due at low load, never early, and an idle
reactor spends no CPU on them. Scheduling an earlier timer just re-arms the
timerfd. Without the uring C extension the task falls back to curio sleeps,
which the selector rounds up to whole milliseconds.
"""
from __future__ import annotations

import heapq
import inspect
import logging
import math
import time
from typing import Any, Callable

import os

from curio.sched import SchedFIFO
from curio.traps import _read_wait

from uring._native import lib
from uring.selectable import SelectableFd
from uring.curio_compat import curio

log = logging.getLogger("reactor.timers")


class Timer:
    """A scheduled callback; ``cancel()`` it, read ``due`` and ``fired``."""

    __slots__ = ("due", "seq", "callback", "args", "interval", "cancelled", "fired", "_service")

    def __init__(self, service: "TimerService", due: float, seq: int, callback: Callable[..., Any],
                 args: tuple, interval: float | None) -> None:
        self._service = service
        self.due = due
        self.seq = seq
        self.callback = callback
        self.args = args
        self.interval = interval
        self.cancelled = False
        self.fired = 0

    def cancel(self) -> bool:
        """Cancel the timer; returns False if it already fired (one-shot) or was cancelled."""
        if self.cancelled or (self.fired and self.interval is None):
            return False
        self.cancelled = True
        svc = self._service
        svc._cancelled += 1
        svc._pending -= 1
        if svc._cancelled > 1024 and svc._cancelled > len(svc._heap) // 2:
            svc._compact()          # keep memory bounded under schedule/cancel churn
        return True

    def __lt__(self, other: "Timer") -> bool:
        return (self.due, self.seq) < (other.due, other.seq)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else f"fired {self.fired}x" if self.fired else "pending"
        return f"<Timer due={self.due:.6f} {getattr(self.callback, '__qualname__', self.callback)} {state}>"


class TimerService:
    """Processing-time timers on the monotonic clock (``time.monotonic``)."""

    def __init__(self, wake: Callable[[Any], None] | None = None) -> None:
        self._heap: list[Timer] = []
        self._seq = 0
        self._pending = 0
        self._cancelled = 0
        self._armed = math.inf            # deadline the task sleeps towards
        self._sched = SchedFIFO()
        self._wake_sync = wake            # wakes a sched from sync code (reactor supplies it)
        self.fired = 0
        self.late_max = 0.0               # worst lateness seen (s)
        self.clock = time.monotonic
        self._tfd: SelectableFd | None = None

    @property
    def pending(self) -> int:
        """Timers scheduled and neither fired (one-shot) nor cancelled."""
        return self._pending

    def schedule_at(self, when: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call ``callback(*args)`` at monotonic time ``when``."""
        return self._push(when, callback, args, None)

    def schedule_after(self, delay: float, callback: Callable[..., Any], *args: Any) -> Timer:
        """Call ``callback(*args)`` after ``delay`` seconds."""
        if delay < 0:
            raise ValueError(f"timer delay must be >= 0, got {delay}")
        return self._push(self.clock() + delay, callback, args, None)

    def schedule_periodic(self, interval: float, callback: Callable[..., Any], *args: Any,
                          first: float | None = None) -> Timer:
        """Call ``callback(*args)`` every ``interval`` seconds (first after ``first``)."""
        if not interval > 0:
            raise ValueError(f"periodic interval must be > 0, got {interval}")
        start = self.clock() + (interval if first is None else first)
        return self._push(start, callback, args, interval)

    def _push(self, when: float, callback: Callable[..., Any], args: tuple,
              interval: float | None) -> Timer:
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, got {callback!r}")
        if not isinstance(when, (int, float)) or math.isnan(when):
            raise TypeError(f"timer time must be a number, got {when!r}")
        self._seq += 1
        t = Timer(self, float(when), self._seq, callback, args, interval)
        heapq.heappush(self._heap, t)
        self._pending += 1
        if when < self._armed:
            self._armed = when
            if self._tfd is not None:
                lib.ur_timerfd_arm(self._tfd.fd, max(when, 1e-9))
            elif self._sched and self._wake_sync is not None:
                self._wake_sync(self._sched)
        return t

    def _compact(self) -> None:
        # In place: _fire_due may hold a reference to the heap (a callback that
        # cancels many timers compacts while it runs).
        heap = self._heap
        heap[:] = [t for t in heap if not t.cancelled]
        heapq.heapify(heap)
        self._cancelled = 0

    async def _fire_due(self) -> None:
        heap = self._heap
        now = self.clock()
        while heap and heap[0].due <= now:
            t = heapq.heappop(heap)
            if t.cancelled:
                self._cancelled -= 1
                continue
            late = now - t.due
            if late > self.late_max:
                self.late_max = late
            t.fired += 1
            self.fired += 1
            if t.interval is not None:
                t.due += t.interval
                if t.due <= now:                       # fell behind: skip missed ticks
                    t.due = now + t.interval
                heapq.heappush(heap, t)
            else:
                self._pending -= 1
            try:
                res = t.callback(*t.args)
                if inspect.isawaitable(res):
                    await curio.spawn(res, daemon=True)
            except Exception:
                log.exception("timer callback %r failed", t.callback)

    async def run(self) -> None:
        """The timer task body: wait for the next deadline, fire, repeat."""
        fd = lib.ur_timerfd_create() if lib is not None else -1
        if fd < 0:
            log.info("timers: no timerfd (%s); using curio sleeps (1 ms resolution)",
                     "no C extension" if lib is None else os.strerror(-fd))
            return await self._run_sleeping()
        self._tfd = SelectableFd(fd)
        try:
            while True:
                await self._fire_due()
                self._drop_cancelled_top()
                heap = self._heap
                self._armed = heap[0].due if heap else math.inf
                lib.ur_timerfd_arm(fd, max(self._armed, 1e-9) if heap else 0.0)
                await _read_wait(self._tfd)
                try:
                    os.read(fd, 8)              # clear the expiration count
                except BlockingIOError:
                    pass
        finally:
            self._tfd = None
            self._armed = math.inf
            os.close(fd)

    def _drop_cancelled_top(self) -> None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
            self._cancelled -= 1

    async def _run_sleeping(self) -> None:
        while True:
            await self._fire_due()
            self._drop_cancelled_top()
            heap = self._heap
            if not heap:
                self._armed = math.inf
                await self._sched.suspend("TIMER_IDLE")
                continue
            self._armed = heap[0].due
            delay = self._armed - self.clock()
            if delay > 0:
                await curio.ignore_after(delay, self._sched.suspend("TIMER_WAIT"))
            self._armed = math.inf

    def stats(self) -> dict[str, Any]:
        return {"pending": self._pending, "fired": self.fired,
                "late_max_ms": round(self.late_max * 1000, 3), "heap": len(self._heap)}
