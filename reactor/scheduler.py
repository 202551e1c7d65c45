"""Task queues with shares on top of curio's kernel (glommio/Seastar style).

Every task runs in a :class:`TaskQueue`. The :class:`Scheduler` is a curio
``Activation``: it times each run of each task (``running``/``suspended``) and
charges exactly that task's queue, growing its virtual runtime by
``cpu_time / shares``. Tasks cooperate by calling :func:`maybe_yield` between
units of work; once their queue's slice is spent they yield, and the queue with
the lowest virtual runtime among those with a task waiting to continue runs
next. A queue that was idle starts at the current minimum virtual runtime, so
idling earns no burst of credit.

Tasks woken by I/O, mailboxes or timers still run in curio's FIFO order; the
shares decide between tasks that *want* the core, which is where fairness
matters (a busy operator against compaction, say).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Callable

from curio.kernel import Activation
from curio.traps import _get_current, _scheduler_wait, _scheduler_wake
from curio.sched import SchedFIFO

from uring.curio_compat import curio

log = logging.getLogger("reactor.scheduler")

DEFAULT_SLICE = 0.0005           # 0.5 ms
SHARES_REFRESH = 0.25            # dynamic shares are re-read every 250 ms
#: A queue that has not run for this long is treated as waking from idle.
IDLE_AFTER = 0.002


class TaskQueue:
    """A class of tasks sharing the core in proportion to ``shares``.

    ``shares`` is a number or a callable re-read every 250 ms (for controllers
    such as compaction's backlog controller). ``slice`` is how long a task of
    this queue runs before :func:`maybe_yield` gives others a turn.
    """

    def __init__(self, name: str, shares: "float | Callable[[], float]" = 100,
                 slice: float = DEFAULT_SLICE) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"task queue name must be a non-empty str, got {name!r}")
        if not callable(shares):
            _check_shares(name, shares)
        if not isinstance(slice, (int, float)) or slice <= 0:
            raise ValueError(f"task queue {name!r}: slice must be a positive number of "
                             f"seconds, got {slice!r}")
        self.name = name
        self._shares_src = shares
        self.shares = float(shares() if callable(shares) else shares)
        _check_shares(name, self.shares)
        self.slice = float(slice)
        self.vruntime = 0.0          # seconds of CPU / shares
        self.runtime = 0.0           # seconds of CPU charged (including I/O charges)
        self.io_charged = 0.0        # part of runtime charged for I/O
        #: Cost of one byte of I/O in CPU seconds charged by charge_io (default
        #: 1 s per GiB; a tunable weight, not a measurement).
        self.io_cost_per_byte = 1.0 / (1 << 30)
        self.slices = 0              # task runs (one per curio scheduling of a task)
        self.longest = 0.0           # longest single run
        self.tasks = 0               # live tasks in this queue
        self.yields = 0              # times a task of this queue yielded its slice
        self.last_ran = 0.0          # when a task of this queue last stopped running
        self.parked = _Parked()      # tasks that yielded and want the core
        self.in_line = 0             # tasks yielded-and-continuing or woken from parking
        self._shares_read = time.perf_counter()

    def refresh_shares(self, now: float) -> None:
        """Re-read dynamic shares (at most every 250 ms)."""
        if callable(self._shares_src) and now - self._shares_read >= SHARES_REFRESH:
            self._shares_read = now
            try:
                value = float(self._shares_src())
                _check_shares(self.name, value)
                self.shares = value
            except Exception as exc:     # a broken controller must not stop the core
                log.error("task queue %r: shares callable failed (%s); keeping %s",
                          self.name, exc, self.shares)

    def charge_io(self, nbytes: int) -> None:
        """Charge ``nbytes`` of I/O issued by this queue at ``io_cost_per_byte`` s/byte."""
        if nbytes > 0:
            self.charge(nbytes * self.io_cost_per_byte)

    def charge(self, seconds: float, *, io: bool = True) -> None:
        """Charge extra cost to this queue, e.g. I/O bytes × a cost per byte."""
        if seconds < 0:
            raise ValueError(f"cannot charge a negative cost ({seconds}) to {self.name!r}")
        self.runtime += seconds
        if io:
            self.io_charged += seconds
        self.vruntime += seconds / self.shares

    def stats(self) -> dict[str, Any]:
        return {
            "shares": self.shares, "runtime_s": round(self.runtime, 6),
            "vruntime": round(self.vruntime, 9), "slices": self.slices,
            "longest_slice_ms": round(self.longest * 1000, 3), "tasks": self.tasks,
            "yields": self.yields, "parked": len(self.parked), "io_charged_s": round(self.io_charged, 6),
        }

    def __repr__(self) -> str:
        return f"<TaskQueue {self.name} shares={self.shares:g} vruntime={self.vruntime:.6f}>"


class _Parked(SchedFIFO):
    """FIFO of parked tasks; truthy while any task is parked."""

    def __bool__(self) -> bool:
        return self._actual_len > 0


class QueueQuota:
    """The quota hook a queue hands to work that must share the core (e.g. compaction).

    ``await pause()`` yields when the slice is spent; ``charge_io(n)`` charges
    ``n`` bytes of I/O to the queue.
    """

    def __init__(self, queue: TaskQueue) -> None:
        self.queue = queue

    async def pause(self) -> None:
        await maybe_yield()

    def charge_io(self, nbytes: int) -> None:
        self.queue.charge_io(nbytes)


def _innermost(coro: Any) -> tuple[str, int] | None:
    """(file, line) where a suspended coroutine chain is waiting: the innermost frame.

    A stall report should point at the code that ran long, not at the task's
    outermost wrapper.
    """
    where = None
    seen = 0
    while coro is not None and seen < 100:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        if where is not None and "/curio/" in frame.f_code.co_filename:
            break                       # the trap itself says nothing about who ran long
        where = (frame.f_code.co_filename, frame.f_lineno)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        seen += 1
    return where


def _check_shares(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"task queue {name!r}: shares must be a positive number, got {value!r}")


class Scheduler(Activation):
    """Accounting and choice between task queues; installed as a curio activation."""

    def __init__(self, *, default_shares: float = 100, slice: float = DEFAULT_SLICE,
                 stall_threshold: float | None = None) -> None:
        self.default = TaskQueue("default", default_shares, slice)
        self.queues: dict[str, TaskQueue] = {"default": self.default}
        self.stall_threshold = stall_threshold    # None: 10 × the queue's slice
        self.stalls: deque[dict[str, Any]] = deque(maxlen=100)
        self.detect_stalls = False      # the reactor turns it on once started
        self._spawn_queue: TaskQueue | None = None
        self._current: Any = None
        self.current_actor: Any = None         # actor of the running task, if any
        self._next_refresh = 0.0
        self._dispatch_wait = SchedFIFO()
        self._t0 = 0.0
        self._clock = time.perf_counter

    # -- queues --------------------------------------------------------------------
    def queue(self, name: str, shares: "float | Callable[[], float]" = 100,
              slice: float = DEFAULT_SLICE) -> TaskQueue:
        """Create a task queue (names are unique)."""
        if name in self.queues:
            raise ValueError(f"task queue {name!r} already exists")
        q = TaskQueue(name, shares, slice)
        floor = self._min_vruntime()
        q.vruntime = floor if floor is not None else max(
            (other.vruntime for other in self.queues.values()), default=0.0)
        self.queues[name] = q
        return q

    def _min_vruntime(self, exclude: TaskQueue | None = None) -> float | None:
        """Lowest vruntime among queues that want the core (parked or in line), if any."""
        vals = [q.vruntime for q in self.queues.values()
                if q is not exclude and (q.parked or q.in_line)]
        return min(vals) if vals else None

    async def spawn(self, corofunc: Callable[..., Any], *args: Any, queue: TaskQueue | None = None,
                    daemon: bool = False) -> Any:
        """Spawn a curio task into ``queue`` (default: the spawning task's queue)."""
        if queue is not None and self.queues.get(queue.name) is not queue:
            raise ValueError(f"task queue {queue.name!r} does not belong to this scheduler")
        self._spawn_queue = queue
        try:
            return await curio.spawn(corofunc, *args, daemon=daemon)
        finally:
            self._spawn_queue = None

    # -- curio activation hooks -------------------------------------------------------
    def activate(self, kernel: Any) -> None:
        self.kernel = kernel
        # curio's wake trap touches only the sched and the ready queue, so it can
        # be called from synchronous code running inside a task (try_send, timers).
        self._trap_wake = kernel._traps["trap_sched_wake"]

    def wake_sync(self, sched: Any, n: int = 1) -> None:
        """Wake ``n`` tasks sleeping on ``sched`` from non-async code in a task."""
        if len(sched):
            self._trap_wake(sched, min(n, len(sched)))

    def created(self, task: Any) -> None:
        q = self._spawn_queue
        if q is None:
            cur = self._current
            q = cur._tq if cur is not None and hasattr(cur, "_tq") else self.default
        task._tq = q
        q.tasks += 1

    def running(self, task: Any) -> None:
        now = self._clock()
        self._current = task
        self._t0 = now
        q = task._tq
        self.current_actor = getattr(task, "actor", None)
        contending = task.__dict__.pop("_contending", False)
        if not contending and now - q.last_ran > IDLE_AFTER:
            # Waking from idle: no credit for the time it did not want the core.
            # (A task resuming from a yield was contending all along: no floor.)
            floor = self._min_vruntime(exclude=q)
            if floor is not None and q.vruntime < floor:
                q.vruntime = floor

    def suspended(self, task: Any, trap: Any) -> None:
        now = self._clock()
        dt = now - self._t0
        q = task._tq
        q.runtime += dt
        q.vruntime += dt / q.shares
        q.slices += 1
        q.last_ran = now
        if dt > q.longest:
            q.longest = dt
        threshold = self.stall_threshold if self.stall_threshold is not None else 10 * q.slice
        if dt > threshold and self.detect_stalls:
            self._report_stall(task, q, dt)
        self._current = None

    def terminated(self, task: Any) -> None:
        task._tq.tasks -= 1

    def _report_stall(self, task: Any, q: TaskQueue, dt: float) -> None:
        where = _innermost(getattr(task, "coro", None))
        if where is None:
            try:
                where = task.where()
            except Exception:
                where = None
        if where and where[0] is not None:
            at = f"{where[0]}:{where[1]}"
        else:                           # the task ended in this run: name its function
            code = getattr(getattr(task, "coro", None), "cr_code", None)
            at = f"{code.co_filename}:{code.co_firstlineno} (ended)" if code else "?"
        name = getattr(task, "actor_name", None) or task.name
        entry = {"task": name, "queue": q.name, "ms": round(dt * 1000, 3), "where": at}
        self.stalls.append(entry)
        log.warning("stall: %s in queue %r ran %.1f ms without yielding (at %s)",
                    name, q.name, dt * 1000, entry["where"])

    # -- cooperative preemption -----------------------------------------------------------
    async def yield_now(self) -> None:
        """Give the core to the queue with the lowest virtual runtime that wants it.

        Queues *contend* when a task of theirs is parked here or is *in line*
        (yielded and continuing, or woken from parking and not yet running).
        If this task's queue has the lowest virtual runtime among contenders it
        continues after letting tasks woken by I/O run; otherwise it parks,
        waking the best parked task unless that queue already has one in line.
        The dispatcher wakes the best parked task whenever no queue has a task
        in line (the holder of the core blocked), so parking never idles it.
        """
        task = await _get_current()
        task._contending = True
        q = task._tq
        now = self._clock()
        q.yields += 1
        if now >= self._next_refresh:
            self._next_refresh = now + SHARES_REFRESH
            for other in self.queues.values():
                other.refresh_shares(now)
        # Charge the slice so far before comparing (suspended() has not run yet).
        best = None
        best_v = q.vruntime + (now - self._t0) / q.shares
        for other in self.queues.values():
            if other is not q and (other.parked or other.in_line) and other.vruntime < best_v:
                best, best_v = other, other.vruntime
        if best is None:
            q.in_line += 1
            try:
                await curio.sleep(0)    # let tasks woken by I/O run, then continue
            finally:
                q.in_line -= 1
            return
        if not best.in_line and best.parked:
            best.in_line += 1
            await _scheduler_wake(best.parked, 1)
        if self._dispatch_wait._actual_len:
            await _scheduler_wake(self._dispatch_wait, 1)
        await _scheduler_wait(q.parked, "YIELD")
        q.in_line -= 1                  # woken by a handoff or the dispatcher

    async def _dispatcher(self) -> None:
        """Wakes the best parked task whenever no queue has a task in line."""
        queues = self.queues
        while True:
            if not any(q.parked for q in queues.values()):
                await _scheduler_wait(self._dispatch_wait, "IDLE")
                continue
            await curio.sleep(0)
            if any(q.in_line for q in queues.values()):
                continue                # the core has a holder
            best = None
            for q in queues.values():
                if q.parked and (best is None or q.vruntime < best.vruntime):
                    best = q
            if best is not None:
                best.in_line += 1
                await _scheduler_wake(best.parked, 1)

    def stats(self) -> dict[str, Any]:
        return {name: q.stats() for name, q in self.queues.items()}


# One reactor per thread: its scheduler is thread-local (Python may switch
# threads between any two bytecodes, so a process-wide pointer would be wrong).
_tls = threading.local()


def _current() -> "Scheduler | None":
    return getattr(_tls, "s", None)


def current_scheduler() -> Scheduler:
    """The scheduler of the reactor running in this thread."""
    s = getattr(_tls, "s", None)
    if s is None:
        from .errors import ReactorError
        raise ReactorError("no reactor is running in this thread: call reactor.run(main) first")
    return s


def _install(s: Scheduler | None) -> None:
    _tls.s = s


async def maybe_yield() -> None:
    """Yield the core if the current queue's slice is spent; cheap otherwise.

    Call it between units of work in long loops; actor loops do it for you.
    """
    s = getattr(_tls, "s", None)
    if s is not None and s._current is not None:
        if s._clock() - s._t0 >= s._current._tq.slice:
            await s.yield_now()
