"""One timer service per reactor: a heap of deadlines served by one curio task.

Pending timers cost a heap entry each and no CPU until due (100,000 pending
timers are ~100 bytes apiece). Cancellation is lazy: a cancelled entry stays in
the heap until it reaches the top, and the heap is rebuilt when more than half
of it is cancelled. Callbacks run in the timer task; a callback returning an
awaitable has it spawned as a task of the service's queue, so a slow callback
never delays other timers.

Precision: the selector sleeps in whole milliseconds, so the task wakes a
little early and yields until the deadline: timers fire within ~1 ms of due at
low load, and never early.
"""
from __future__ import annotations

import heapq
import inspect
import logging
import math
import time
from typing import Any, Callable

from curio.sched import SchedFIFO

from uring.curio_compat import curio

log = logging.getLogger("reactor.timers")

#: Wake this long before a deadline and yield until it (selector ms rounding).
EARLY = 0.0012


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
        self._service._cancelled += 1
        self._service._pending -= 1
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
        if when < self._armed and self._sched and self._wake_sync is not None:
            self._armed = when
            self._wake_sync(self._sched)
        return t

    def _compact(self) -> None:
        self._heap = [t for t in self._heap if not t.cancelled]
        heapq.heapify(self._heap)
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
        if self._cancelled > 1024 and self._cancelled > len(heap) // 2:
            self._compact()

    async def run(self) -> None:
        """The timer task body: sleep until the next deadline, fire, repeat."""
        while True:
            await self._fire_due()
            heap = self._heap
            while heap and heap[0].cancelled:
                heapq.heappop(heap)
                self._cancelled -= 1
            if not heap:
                self._armed = math.inf
                await self._sched.suspend("TIMER_IDLE")
                continue
            due = heap[0].due
            self._armed = due
            delay = due - self.clock()
            if delay > EARLY:
                await curio.ignore_after(delay - EARLY, self._sched.suspend("TIMER_WAIT"))
            elif delay > 0:
                await curio.sleep(0)                    # yield until the deadline passes
            self._armed = math.inf

    def stats(self) -> dict[str, Any]:
        return {"pending": self._pending, "fired": self.fired,
                "late_max_ms": round(self.late_max * 1000, 3), "heap": len(self._heap)}
