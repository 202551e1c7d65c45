"""The io_uring backend of :class:`~uring.Ring`, integrated with curio.

How an operation travels (see IO_URING_NOTES.md for the measurements):

1. The calling task takes a *slot* (at most ``cq_entries - CANCEL_HEADROOM``
   operations are in flight, so completions can never overflow; a caller
   finding no slot waits, it never gets an error), writes one SQE with a single
   cffi call and sleeps on the ring's :class:`_Waiters` scheduler.
2. SQEs are submitted as soon as an early-submit size is pending (between
   ``flush_threshold`` and the SQ size: it grows while the kernel completes
   submissions inside the call, or while the loop is CPU-bound, and drops back
   when they go to a device), otherwise at the end of the scheduler pass.
3. Completions are drained from the CQ into arrays with one call; each result
   becomes the sleeping task's trap result and the tasks are made ready.

Steps 2 and 3 run in one of two ways. Under a kernel whose selector is a
:class:`~uring.wait_selector.RingSelector` (``uring.run``, the reactor
runtime), the ring *attaches* to it: the kernel's ``select`` at the end of each
pass submits, sleeps in ``io_uring_enter`` when nothing is ready, reaps, and
returns the finished tasks to curio directly. Otherwise two helper tasks do
it: a flusher, which the first SQE of a pass wakes and which runs behind the
tasks already ready, and a reaper, which sleeps on an eventfd registered with
the ring (kept registered with curio's epoll) and wakes the finished tasks
with one ``_scheduler_wake``.

A task cancelled while its operation is in flight *abandons* the slot: the
buffer stays referenced (and pinned, if it is a pooled :class:`DmaBuffer`)
until the CQE arrives, and an ``ASYNC_CANCEL`` asks the kernel to stop early.
user_data carries a generation so a late cancel can never hit a reused slot.
"""
from __future__ import annotations

import errno
import logging
import os
import types
from collections import deque
from typing import Any, Awaitable, Sequence

from curio.sched import SchedBase, SchedFIFO
from curio.traps import _get_kernel, _read_wait, _scheduler_wait, _scheduler_wake

from . import backend as _backend
from . import opcodes as op
from ._native import ffi, lib
from .buffers import DmaBuffer, memlock_budget
from .curio_compat import curio
from .errors import RingClosedError, UringError, check_rc, os_error
from .ring import FileStat, Ring, buffer_view
from .selectable import SelectableFd
from .stats import summarize
from .wait_selector import RingSelector, kernel_ready_queue

log = logging.getLogger("uring")

SLOT_BITS = 16
SLOT_MASK = (1 << SLOT_BITS) - 1
CANCEL_BIT = 1 << 63
#: user_data = (sequence << SLOT_BITS) | slot, below CANCEL_BIT: a late cancel
#: names one exact operation, never whatever reuses the slot later.
UD_MASK = CANCEL_BIT - 1
#: CQ entries kept free for ASYNC_CANCEL completions.
CANCEL_HEADROOM = 16
_FREE = -1
#: ``_Waiters.arming`` for a task waiting until nothing is in flight (close).
_DRAIN = -2


class _Borrowed:
    """A foreign buffer lent to the kernel: the cffi view of it and the memoryview.

    Released explicitly at completion: a ``from_buffer`` cdata left to the
    garbage collector inside a reference cycle (an exception's traceback, say)
    crashes cffi 2.1 at collection time.
    """

    __slots__ = ("cdata", "view")

    def __init__(self, cdata: Any, view: memoryview) -> None:
        self.cdata = cdata
        self.view = view

    def release(self) -> None:
        if self.cdata is not None:
            ffi.release(self.cdata)
            self.cdata = None


def _dirfd(fd: int) -> int | None:
    """os.* spelling of a dir fd: None for AT_FDCWD."""
    return None if fd == op.AT_FDCWD else fd


def _release_borrowed(keep: Any) -> None:
    """Release every foreign buffer an operation held (the kernel is done with it)."""
    if keep.__class__ is _Borrowed:
        keep.release()
    elif isinstance(keep, list):
        for k in keep:
            if k.__class__ is _Borrowed:
                k.release()


def _pin_buffers(keep: Any, delta: int) -> None:
    """Pin (+1) or unpin (-1) every pooled buffer an operation holds.

    ``keep`` is a DmaBuffer, or for vectored I/O a list holding them.
    """
    if isinstance(keep, DmaBuffer):
        keep._pin() if delta > 0 else keep._unpin()
    elif isinstance(keep, list):
        for k in keep:
            if isinstance(k, DmaBuffer):
                k._pin() if delta > 0 else k._unpin()


def _closed_prep(*args: Any) -> int:
    raise RingClosedError("the ring is closed")


@types.coroutine
def _trap(request: tuple) -> Any:
    """Yield one prepared curio trap and return its result (raised if an exception).

    What ``curio.traps._scheduler_wait`` does, minus two frames per operation.
    """
    result = yield request
    if isinstance(result, BaseException):
        raise result
    return result


class _Waiters(SchedBase):
    """Tasks sleeping on the ring: on an operation's slot, for a slot, or for the drain.

    ``arming`` is set by the task right before it traps (nothing else runs in
    between), telling ``_kernel_suspend`` what the task waits for. The reaper
    fills ``batch`` with the tasks to wake and wakes them all in one trap.
    """

    def __init__(self, ring: "UringRing") -> None:
        self.arming = _FREE
        self.owners: list[Any] = ring._owners
        self.removers = ring._removers
        self.space: deque[list[Any]] = deque()
        self.drain: list[list[Any]] = []
        self.batch: list[Any] = []
        #: The trap an operation's task sleeps in (built once).
        self.io_wait = ("trap_sched_wait", self, "IO_WAIT")

    def __len__(self) -> int:
        return len(self.batch)

    def _kernel_suspend(self, task: Any) -> Any:
        slot = self.arming
        if slot >= 0:
            self.owners[slot] = task
            return self.removers[slot]
        item = [task]
        (self.drain.append if slot == _DRAIN else self.space.append)(item)

        def remove() -> None:
            item[0] = None
        return remove

    def _kernel_wake(self, ntasks: int = 1) -> list[Any]:
        batch, self.batch = self.batch, []
        return batch

    def pop_space(self, n: int) -> list[Any]:
        """Up to ``n`` tasks waiting for a slot, oldest first."""
        out = []
        space = self.space
        while space and len(out) < n:
            task = space.popleft()[0]
            if task is not None:
                out.append(task)
        return out

    def pop_drain(self) -> list[Any]:
        """Every task waiting for the drain."""
        out = [item[0] for item in self.drain if item[0] is not None]
        self.drain.clear()
        return out


class UringRing(Ring):
    """:class:`~uring.Ring` on io_uring. Construct through ``Ring(...)``."""

    backend = _backend.IO_URING

    def __init__(self, entries: int = 256, *, backend: str | None = None,
                 fixed_buffers: bool = True, fixed_bytes: int = 8 << 20,
                 flush_threshold: int = 4, spin_us: int = 100) -> None:
        super().__init__(entries, backend=backend, flush_threshold=flush_threshold, spin_us=spin_us)
        if lib is None:
            raise UringError(_backend.backend_info().reason)
        self.reason = _backend.backend_info().reason
        self._r = lib.ur_new()
        cq = max(2 * entries, CANCEL_HEADROOM * 2)
        self._max_slots = min(cq - CANCEL_HEADROOM, SLOT_MASK)
        rc = lib.ur_setup(self._r, entries, cq, self._max_slots)
        if rc < 0:
            lib.ur_free(self._r)
            self._r = None
            raise os_error(-rc, "io_uring_setup")
        self.sq_entries = self._r.sq_entries
        self.cq_entries = self._r.cq_entries
        # The early-submit size adapts between the threshold and the SQ size
        # (ur_adapt_early); Python reads it back once per pass and per submit.
        self._r.early = self._r.early_min = min(self.flush_threshold, self.sq_entries)
        self._early = self._r.early
        info = _backend.backend_info()
        self._supported = frozenset(info.opcodes) if info.backend == _backend.IO_URING else frozenset()
        if not self._supported:
            sup = ffi.new("uint8_t[64]")
            if lib.ur_probe(self._r, sup, 64) >= 0:
                self._supported = frozenset(i for i in range(64) if sup[i])

        n = self._max_slots
        self._free = list(range(n - 1, -1, -1))
        self._owners: list[Any] = [None] * n
        self._keep: list[Any] = [None] * n
        self._ud_of = [_FREE] * n
        self._seq = 0
        self._prep = self._bind_prep()
        self._abandoned = [False] * n
        self._removers = [self._make_remover(i) for i in range(n)]
        self._waiters = _Waiters(self)
        self._cancels = 0               # cancels submitted (C counts their CQEs)
        self._broken: UringError | None = None
        self._pending = 0
        self._flush_armed = False
        self._flush_sched = SchedFIFO()
        self._slot_buf = ffi.new("uint32_t[]", self.cq_entries)
        self._res_buf = ffi.new("int32_t[]", self.cq_entries)
        self._tasks: list[Any] = []
        self._selector: RingSelector | None = None
        self._ready: Any = None             # curio's ready queue, while attached
        self._epfd = -1                     # the attached selector's epoll fd
        self._epoll_ready = ffi.new("int *")
        self._fallback_ops: dict[str, int] = {}

        efd = lib.ur_eventfd()
        if efd < 0:
            self._teardown()
            raise os_error(-efd, "eventfd")
        self._efd = SelectableFd(efd)
        rc = lib.ur_register_eventfd(self._r, efd)
        if rc < 0:
            self._teardown()
            raise os_error(-rc, "io_uring_register(EVENTFD)")
        if fixed_buffers:
            self._register_arena(fixed_bytes)
        else:
            self.buffers.fixed_reason = "disabled by fixed_buffers=False"

    def _bind_prep(self) -> Any:
        """``ur_prep`` on this ring without the ring argument, as the C module's
        fast builtin (``ur_bind_prep``): the one C call every operation makes."""
        ns: dict[str, Any] = {}
        if lib.ur_bind_prep(self._r, id(ns)) < 0:
            self._teardown()
            raise MemoryError("uring: cannot make the ring's prep function")
        return ns["prep"]

    def _register_arena(self, fixed_bytes: int) -> None:
        budget, why = memlock_budget(fixed_bytes)
        built = self.buffers.build_arena(budget)
        if built is None:
            self.buffers.fixed_reason = f"no room for fixed buffers ({why})"
            return
        base, sizes = built
        arr = ffi.new("uint32_t[]", sizes)
        rc = lib.ur_register_buffers(self._r, base, arr, len(sizes))
        if rc < 0:
            self.buffers.drop_arena()
            self.buffers.fixed_reason = (f"IORING_REGISTER_BUFFERS failed: {os.strerror(-rc)} "
                                         f"({why}); using unregistered buffers")
            log.info("uring: %s", self.buffers.fixed_reason)
            return
        self.buffers.adopt_arena()
        self.buffers.fixed_reason = f"{len(sizes)} buffers, {sum(sizes)} bytes registered ({why})"

    def _make_remover(self, slot: int):
        def remove() -> None:
            self._owners[slot] = None
            self._abandon(slot, self._ud_of[slot])
        return remove

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        await super().start()
        if self._tasks or self._selector is not None:
            return
        kernel = await _get_kernel()
        sel = getattr(kernel, "_selector", None)
        ready = kernel_ready_queue(kernel)
        if (isinstance(sel, RingSelector) and ready is not None and lib.ur_can_wait(self._r)
                and sel.attach(self)):
            # The kernel's select() submits, waits and reaps from now on: no
            # helper tasks, and no eventfd signal per completion.
            self._selector = sel
            self._ready = ready
            self._epfd = sel.fileno()
            self._flush_armed = True        # the end-of-pass flush is always due
            lib.ur_unregister_eventfd(self._r)
            return
        self._tasks.append(await curio.spawn(self._guarded_task, self._reaper, "reaper",
                                             daemon=True))
        self._tasks.append(await curio.spawn(self._guarded_task, self._flusher, "flusher",
                                             daemon=True))

    async def aclose(self) -> None:
        if self._r is None:
            return
        self._closed = True
        self._update_guard()
        if self._started and self._broken is None and self._inflight + self._cancels_in_flight > 0:
            self._submit_now()
            # Operations in flight belong to tasks that are still waiting or to
            # abandoned slots; reaping completes both. Bounded: file I/O ends.
            try:
                async with curio.timeout_after(30):
                    self._waiters.arming = _DRAIN
                    await _scheduler_wait(self._waiters, "IO_DRAIN")
            except curio.TaskTimeout:
                log.error("uring: %d operations still in flight after 30 s at close",
                          self._inflight + self._cancels_in_flight)
        for t in self._tasks:
            await t.cancel()
        self._tasks.clear()
        self._detach()
        self._teardown()

    def _detach(self) -> None:
        """Give the kernel's waits back to epoll and withdraw the poll on its fd."""
        sel, self._selector = self._selector, None
        self._ready = None
        if sel is None:
            return
        sel.detach(self)
        if self._r is not None and lib.ur_cancel_poll(self._r) > 0:
            self._cancels += 1
            self._submit_now()

    def _teardown(self) -> None:
        """Free the ring and the eventfd. Blocks to drain if operations remain."""
        if self._r is None:
            return
        r = self._r
        if r.pending:
            lib.ur_submit(r, 0)
        # Last resort (kernel gone, tasks cancelled, a ring task crashed): wait
        # synchronously so the kernel is done with every buffer before the
        # memory can go. Counted from the C side, which sees every CQE.
        # A selector poll still armed holds no buffer: it is not waited for.
        while r.sqes_submitted - r.cqes_reaped - r.cancel_cqes - r.poll_cqes - r.poll_armed > 0:
            rc = lib.ur_submit(r, 1)
            if rc < 0 and rc != -errno.EINTR:
                log.error("uring: cannot drain the ring at close: %s", os.strerror(-rc))
                break
            self._reap_sync()
        efd = getattr(self, "_efd", None)
        if efd is not None:
            os.close(efd.fd)
            self._efd = None
        if self.buffers.arena is not None:
            lib.ur_unregister_buffers(self._r)
        self._prep = _closed_prep         # it is bound to the memory freed next
        lib.ur_free(self._r)
        self._r = None
        self._closed = True

    def __del__(self) -> None:
        if getattr(self, "_r", None) is not None:
            try:
                self._teardown()
            except Exception:  # pragma: no cover - interpreter shutdown
                pass

    @property
    def _inflight(self) -> int:
        return self._max_slots - len(self._free)

    @property
    def _cancels_in_flight(self) -> int:
        return self._cancels - (self._r.cancel_cqes if self._r is not None else 0)

    @property
    def in_flight(self) -> int:
        return self._inflight

    @property
    def wait_mode(self) -> str:
        """``"selector"`` when attached to the kernel's RingSelector, else ``"tasks"``."""
        return "selector" if self._selector is not None else "tasks"

    # -- submission ------------------------------------------------------------
    def submit(self) -> int:
        r = self._r
        if r is None:
            return 0
        n = r.pending
        self._submit_now()
        return n - r.pending

    def _submit_now(self) -> None:
        if self._r.pending == 0:
            self._pending = 0
            return
        r = self._r
        rc = lib.ur_submit(r, 0)
        if rc < 0 and rc not in (-errno.EAGAIN, -errno.EBUSY):
            raise UringError(f"io_uring_enter failed: {os.strerror(-rc)}")
        self._pending = r.pending
        self._early = r.early

    async def _flusher(self) -> None:
        """Submits what a scheduler pass prepared, then reaps inline completions."""
        # Nothing runs between the checks below and the wait (traps that do not
        # suspend return at once), so an armed flush is never lost: a task that
        # prepares an SQE while the flusher is not waiting leaves it pending, and
        # the flusher sees it at the top of the loop.
        sched = self._flush_sched
        while True:
            if not self._pending:
                self._flush_armed = False
                await _scheduler_wait(sched, "IO_FLUSH")
            self._flush_armed = False
            if self._pending:
                self._submit_now()
            await self._reap()

    async def _submit(self, opcode: int, fd: int, addr: int, length: int, off: int,
                      flags: int, keep: Any, buf_index: int, name: Any) -> int:
        # The hot path of every operation: keep it to plain attribute and list
        # operations plus one cffi call (IO_URING_NOTES.md: ~2 us per op budget).
        if self._guarded:
            self._precheck(op.KIND[opcode], name)
        free = self._free
        waiters = self._waiters
        while not free:
            waiters.arming = _FREE
            await _scheduler_wait(waiters, "IO_SLOT_WAIT")
            if self._closed:
                self._check_open()
        slot = free.pop()
        seq = self._seq = self._seq + 1
        ud = (seq << SLOT_BITS | slot) & UD_MASK
        self._ud_of[slot] = ud
        self._keep[slot] = keep
        try:
            full = self._prep(opcode, fd, addr, length, off, flags, ud, buf_index)
        except (OverflowError, TypeError) as exc:      # bad argument: give the slot back
            if keep is not None and keep.__class__ is not DmaBuffer:
                _release_borrowed(keep)
            self._keep[slot] = None
            self._ud_of[slot] = _FREE
            free.append(slot)
            raise ValueError(f"invalid argument for {op.KIND[opcode]}"
                             f"{'' if name is None else f' on {name!r}'}: {exc} (offsets, "
                             f"lengths and fds must be ints in range)") from None
        if full:
            # SQ full: hand the kernel what is there; SUBMIT_ALL frees every SQE.
            self._submit_now()
            while self._prep(opcode, fd, addr, length, off, flags, ud, buf_index):
                await curio.sleep(0)
                self._submit_now()
        pending = self._pending = self._pending + 1
        if pending >= self._early:
            self._submit_now()
        elif not self._flush_armed:
            self._flush_armed = True
            if len(self._flush_sched):
                await _scheduler_wake(self._flush_sched, 1)
        waiters.arming = slot
        try:
            res = await _trap(waiters.io_wait)
        except BaseException:
            # Cancelled: by now the slot may have completed and been taken by
            # another task's operation; only an operation still ours is given up.
            if self._ud_of[slot] == ud:
                self._owners[slot] = None
                self._abandon(slot, ud)
            raise
        if res < 0:
            raise os_error(-res, op.KIND[opcode], name)
        return res

    def _abandon(self, slot: int, ud: int) -> None:
        """The waiter is gone: keep the buffer alive and ask the kernel to cancel."""
        if self._ud_of[slot] != ud or self._abandoned[slot]:
            return                      # already completed, or already abandoned
        self._abandoned[slot] = True
        _pin_buffers(self._keep[slot], 1)
        if self._r is None or self._cancels_in_flight >= CANCEL_HEADROOM:
            return                      # it will complete on its own
        if self._prep(op.ASYNC_CANCEL, -1, ud, 0, 0, 0, CANCEL_BIT | slot, -1) == 0:
            self._cancels += 1
            self._submit_now()

    # -- completion --------------------------------------------------------------
    async def _guarded_task(self, body: Any, what: str) -> None:  # helper-task mode
        """Run a ring task; if it dies, fail every waiter instead of hanging them."""
        try:
            await body()
        except (curio.CancelledError, GeneratorExit):
            raise
        except BaseException as exc:
            err = UringError(f"the ring's {what} task crashed ({type(exc).__name__}: {exc}); "
                             f"the ring is closed and its pending operations failed")
            err.__cause__ = exc
            log.error("%s", err, exc_info=exc)
            await self._fail_all(err)

    async def _fail_all(self, err: UringError) -> None:
        """Mark the ring broken and wake every waiter with ``err``."""
        batch = self._break(err)
        if batch:
            self._waiters.batch = batch
            await _scheduler_wake(self._waiters, len(batch))

    def _break(self, err: UringError) -> list[Any]:
        """Mark the ring broken; returns every waiter, its trap result set to ``err``.

        Buffers of operations still in flight stay pinned: the kernel may write
        into them until the ring's teardown has drained it.
        """
        self._broken = err
        self._closed = True
        self._update_guard()
        batch = []
        for slot, task in enumerate(self._owners):
            if self._ud_of[slot] != _FREE:
                self._abandoned[slot] = True
                _pin_buffers(self._keep[slot], 1)
            if task is not None:
                self._owners[slot] = None
                task._trap_result = err
                batch.append(task)
        for task in self._waiters.pop_space(len(self._waiters.space)):
            task._trap_result = err
            batch.append(task)
        for task in self._waiters.pop_drain():
            task._trap_result = None
            batch.append(task)
        return batch

    async def _reaper(self) -> None:
        efd = self._efd
        clear = lib.ur_eventfd_clear
        while True:
            await _read_wait(efd)
            clear(efd.fd)               # clear first, then drain: no lost wake-up
            await self._reap()

    def _complete(self, n: int) -> list[Any]:
        """Process ``n`` reaped completions; returns the tasks to wake."""
        slots = ffi.unpack(self._slot_buf, n)
        results = ffi.unpack(self._res_buf, n)
        owners = self._owners
        keep = self._keep
        ud_of = self._ud_of
        batch = []
        append = batch.append
        for slot, res in zip(slots, results):
            task = owners[slot]
            if task is not None:
                owners[slot] = None
                task._trap_result = res
                append(task)
            elif self._abandoned[slot]:
                self._abandoned[slot] = False
                _pin_buffers(keep[slot], -1)
            k = keep[slot]
            if k is not None and k.__class__ is not DmaBuffer:
                _release_borrowed(k)
            keep[slot] = None
            ud_of[slot] = _FREE
        self._free.extend(slots)
        return batch

    def _collect(self, n: int) -> list[Any]:
        """The tasks to wake after ``n`` completions were reaped into the result
        arrays, their trap results set.

        Besides the operations' owners: tasks waiting for a slot, as many as
        slots are free, and the closing task once nothing is in flight. (One
        reap drains the CQ: it holds at most ``cq_entries``.)
        """
        waiters = self._waiters
        batch = self._complete(n) if n else []
        if waiters.space and self._free:
            for task in waiters.pop_space(len(self._free)):
                task._trap_result = None
                batch.append(task)
        if waiters.drain and self._inflight + self._cancels_in_flight == 0:
            for task in waiters.pop_drain():
                task._trap_result = None
                batch.append(task)
        return batch

    async def _reap(self) -> None:
        if self._r is None:
            return
        batch = self._collect(lib.ur_reap(self._r, self._slot_buf, self._res_buf,
                                          self.cq_entries))
        if batch:
            waiters = self._waiters
            waiters.batch = batch
            await _scheduler_wake(waiters, len(batch))

    def _select(self, sel: RingSelector, timeout: float | None) -> list[Any]:
        """The kernel's wait while attached (see wait_selector): submit, maybe sleep, reap."""
        r = self._r
        ready = self._ready
        try:
            # One C call: submit; when nothing is ready, sleep in the ring until
            # a completion, the poll on the epoll fd, or curio's timeout; reap.
            ns = -1 if timeout is None else int(timeout * 1e9) if timeout > 0 else 0
            spin = self.spin_us * 1000 if len(self._free) < self._max_slots else 0
            n = lib.ur_select(r, timeout != 0, ns, spin, self._epfd, self._slot_buf,
                              self._res_buf, self.cq_entries, self._epoll_ready)
            if n < 0:
                raise UringError(f"io_uring_enter (wait) failed: {os.strerror(-n)}")
            self._pending = r.pending
            batch = self._collect(n)
            if self._epoll_ready[0]:
                events = sel.epoll_select(0)
                lib.ur_arm_poll(r, self._epfd)      # submitted by the next select
            else:
                events = []         # the poll is in the kernel: epoll has nothing
        except Exception as exc:        # never take the kernel down: fail the ring's waiters
            err = UringError(f"the ring's wait in the kernel's selector failed "
                             f"({type(exc).__name__}: {exc}); the ring is closed and its "
                             f"pending operations failed")
            err.__cause__ = exc
            log.error("%s", err, exc_info=exc)
            sel.detach(self)
            self._selector = self._ready = None
            batch = self._break(err)
            events = sel.epoll_select(0)
        if batch:
            # What curio's reschedule_task does, for the whole batch.
            for task in batch:
                task.state = "READY"
                task.cancel_func = None
            ready.extend(batch)
        self._early = r.early
        return events

    def _reap_sync(self) -> None:
        n = lib.ur_reap(self._r, self._slot_buf, self._res_buf, self.cq_entries)
        if n:
            for task in self._complete(n):
                task._trap_result = RingClosedError("ring closed while the operation was in flight")

    # -- operations ----------------------------------------------------------------
    def _buf(self, buf: Any, nbytes: int | None, writable: bool) -> tuple[int, int, int, Any]:
        """(address, length, fixed index, object to keep alive) for a buffer."""
        if isinstance(buf, DmaBuffer):
            n = buf.size if nbytes is None else nbytes
            if n < 0 or n > buf.size:
                raise ValueError(f"nbytes={n} outside the buffer's {buf.size} bytes")
            root = buf._parent if buf._parent is not None else buf
            idx = buf.buf_index if root.pool is self.buffers else -1
            return buf.address, n, idx, buf
        view = buffer_view(buf, nbytes, writable)
        cdata = ffi.from_buffer(view, require_writable=writable)
        return int(ffi.cast("uintptr_t", cdata)), len(view), -1, _Borrowed(cdata, view)

    # Operations that go straight to the ring are plain functions returning the
    # _submit coroutine: one coroutine frame per operation instead of two.
    def nop(self) -> Awaitable[int]:  # type: ignore[override]
        return self._submit(op.NOP, -1, 0, 0, 0, 0, None, -1, None)

    def read(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,  # type: ignore[override]
             name: str | None = None) -> Awaitable[int]:
        if buf.__class__ is DmaBuffer and nbytes is not None and 0 <= nbytes <= buf.size:
            idx = buf.buf_index if buf.pool is self.buffers else -1
            if idx >= 0:
                return self._submit(op.READ_FIXED, fd, buf.address, nbytes, offset, 0, buf, idx, name)
            return self._submit(op.READ, fd, buf.address, nbytes, offset, 0, buf, -1, name)
        addr, n, idx, keep = self._buf(buf, nbytes, True)
        if idx >= 0:
            return self._submit(op.READ_FIXED, fd, addr, n, offset, 0, keep, idx, name)
        return self._submit(op.READ, fd, addr, n, offset, 0, keep, -1, name)

    def write(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,  # type: ignore[override]
              name: str | None = None) -> Awaitable[int]:
        addr, n, idx, keep = self._buf(buf, nbytes, False)
        if idx >= 0:
            return self._submit(op.WRITE_FIXED, fd, addr, n, offset, 0, keep, idx, name)
        return self._submit(op.WRITE, fd, addr, n, offset, 0, keep, -1, name)

    def _iovecs(self, bufs: Sequence[Any], writable: bool) -> tuple[Any, list[Any]]:
        arr = ffi.new("uint64_t[]", 2 * max(1, len(bufs)))   # struct iovec layout
        keep: list[Any] = [arr]
        for i, b in enumerate(bufs):
            addr, n, _idx, k = self._buf(b, None, writable)
            arr[2 * i] = addr
            arr[2 * i + 1] = n
            keep.append(k)
        return arr, keep

    def readv(self, fd: int, bufs: Sequence[Any], offset: int, *,  # type: ignore[override]
              name: str | None = None) -> Awaitable[int]:
        arr, keep = self._iovecs(bufs, True)
        addr = int(ffi.cast("uintptr_t", arr))
        return self._submit(op.READV, fd, addr, len(bufs), offset, 0, keep, -1, name)

    def writev(self, fd: int, bufs: Sequence[Any], offset: int, *,  # type: ignore[override]
               name: str | None = None) -> Awaitable[int]:
        arr, keep = self._iovecs(bufs, False)
        addr = int(ffi.cast("uintptr_t", arr))
        return self._submit(op.WRITEV, fd, addr, len(bufs), offset, 0, keep, -1, name)

    async def fsync(self, fd: int, *, datasync: bool = False, name: str | None = None) -> None:
        flags = op.FSYNC_DATASYNC if datasync else 0
        await self._submit(op.FSYNC, fd, 0, 0, 0, flags, None, -1, name)

    async def fallocate(self, fd: int, offset: int, length: int, mode: int = 0, *,
                        name: str | None = None) -> None:
        if op.FALLOCATE not in self._supported:
            return self._fallback("fallocate", name,
                                  lambda: check_rc(lib.ur_fallocate(fd, mode, offset, length)))
        # FALLOCATE: the length travels in addr and the mode in len.
        await self._submit(op.FALLOCATE, fd, length, mode, offset, 0, None, -1, name)

    async def ftruncate(self, fd: int, length: int, *, name: str | None = None) -> None:
        if length < 0:
            raise ValueError(f"cannot truncate to a negative size ({length})")
        if op.FTRUNCATE not in self._supported:
            return self._fallback("ftruncate", name, lambda: os.ftruncate(fd, length))
        await self._submit(op.FTRUNCATE, fd, 0, 0, length, 0, None, -1, name)

    def _fallback(self, kind: str, name: Any, fn: Any) -> None:
        """Run an operation the kernel's ring lacks as a plain syscall (counted in stats)."""
        if self._guarded:
            self._precheck(kind, name)
        try:
            fn()
        except OSError as e:
            raise os_error(e.errno or 0, kind, name) from None
        self._fallback_ops[kind] = self._fallback_ops.get(kind, 0) + 1

    async def openat(self, path: str | os.PathLike, flags: int = os.O_RDONLY,
                     mode: int = 0o644, *, dir_fd: int = op.AT_FDCWD) -> int:
        name = os.fsdecode(path)
        cpath = ffi.new("char[]", os.fsencode(path))
        addr = int(ffi.cast("uintptr_t", cpath))
        return await self._submit(op.OPENAT, dir_fd, addr, mode, 0, flags | os.O_CLOEXEC,
                                  cpath, -1, name)

    async def close(self, fd: int, *, name: str | None = None) -> None:
        await self._submit(op.CLOSE, fd, 0, 0, 0, 0, None, -1, name)

    async def _statx(self, dir_fd: int, path: bytes, flags: int, name: str | None) -> FileStat:
        cpath = ffi.new("char[]", path)
        raw = ffi.new("char[]", lib.ur_statx_raw_size())
        keep = (cpath, raw)
        await self._submit(op.STATX, dir_fd, int(ffi.cast("uintptr_t", cpath)),
                           op.STATX_BASIC_STATS | op.STATX_DIOALIGN,
                           int(ffi.cast("uintptr_t", raw)), flags, keep, -1, name)
        st = ffi.new("ur_stat *")
        lib.ur_stat_decode(raw, st)
        return FileStat.from_ur_stat(st)

    async def statx(self, path: str | os.PathLike, *, dir_fd: int = op.AT_FDCWD,
                    follow_symlinks: bool = True) -> FileStat:
        flags = 0 if follow_symlinks else op.AT_SYMLINK_NOFOLLOW
        return await self._statx(dir_fd, os.fsencode(path), flags, os.fsdecode(path))

    async def fstatx(self, fd: int, *, name: str | None = None) -> FileStat:
        return await self._statx(fd, b"", op.AT_EMPTY_PATH, name)

    async def renameat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                       old_dir_fd: int = op.AT_FDCWD, new_dir_fd: int = op.AT_FDCWD,
                       flags: int = 0) -> None:
        name = os.fsdecode(old)
        if op.RENAMEAT not in self._supported:
            return self._fallback("renameat", name, lambda: os.rename(
                old, new, src_dir_fd=_dirfd(old_dir_fd), dst_dir_fd=_dirfd(new_dir_fd)))
        cold = ffi.new("char[]", os.fsencode(old))
        cnew = ffi.new("char[]", os.fsencode(new))
        # RENAMEAT carries the new dir fd in the (unsigned) len field.
        await self._submit(op.RENAMEAT, old_dir_fd, int(ffi.cast("uintptr_t", cold)),
                           new_dir_fd & 0xFFFFFFFF,
                           int(ffi.cast("uintptr_t", cnew)), flags, (cold, cnew), -1, name)

    async def unlinkat(self, path: str | os.PathLike, *, dir_fd: int = op.AT_FDCWD,
                       rmdir: bool = False) -> None:
        name = os.fsdecode(path)
        flags = op.AT_REMOVEDIR if rmdir else 0
        if op.UNLINKAT not in self._supported:
            return self._fallback("unlinkat", name, lambda: (os.rmdir if rmdir else os.unlink)(
                path, dir_fd=_dirfd(dir_fd)))
        cpath = ffi.new("char[]", os.fsencode(path))
        await self._submit(op.UNLINKAT, dir_fd, int(ffi.cast("uintptr_t", cpath)), 0, 0, flags,
                           cpath, -1, name)

    async def mkdirat(self, path: str | os.PathLike, mode: int = 0o755, *,
                      dir_fd: int = op.AT_FDCWD) -> None:
        name = os.fsdecode(path)
        if op.MKDIRAT not in self._supported:
            return self._fallback("mkdirat", name, lambda: os.mkdir(path, mode,
                                                                   dir_fd=_dirfd(dir_fd)))
        cpath = ffi.new("char[]", os.fsencode(path))
        await self._submit(op.MKDIRAT, dir_fd, int(ffi.cast("uintptr_t", cpath)), mode, 0, 0,
                           cpath, -1, name)

    async def linkat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                     old_dir_fd: int = op.AT_FDCWD, new_dir_fd: int = op.AT_FDCWD) -> None:
        name = os.fsdecode(new)
        if op.LINKAT not in self._supported:
            return self._fallback("linkat", name, lambda: os.link(
                old, new, src_dir_fd=_dirfd(old_dir_fd), dst_dir_fd=_dirfd(new_dir_fd)))
        cold = ffi.new("char[]", os.fsencode(old))
        cnew = ffi.new("char[]", os.fsencode(new))
        # LINKAT: new dir fd in len, new path in addr2 (the off field).
        await self._submit(op.LINKAT, old_dir_fd, int(ffi.cast("uintptr_t", cold)),
                           new_dir_fd & 0xFFFFFFFF, int(ffi.cast("uintptr_t", cnew)), 0,
                           (cold, cnew), -1, name)

    # -- stats ---------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        r = self._r
        if r is None:
            return {"backend": self.backend, "reason": self.reason, "closed": True}
        rows = [(op.KIND.get(o, f"op{o}"), r.ops[o], r.bytes[o], r.errors[o]) for o in range(64)]
        rows += [(k, n, 0, 0) for k, n in self._fallback_ops.items()]
        return summarize(
            backend=self.backend, reason=self.reason, by_kind=rows,
            lat_hist=list(r.lat_hist), in_flight=self._inflight,
            enter_calls=r.enter_calls, sqes_submitted=r.sqes_submitted,
            extra={"wait": self.wait_mode, "sq_entries": self.sq_entries,
                   "early_submit": self._early,
                   "spin_next_us": (r.spin_budget or self.spin_us * 1000) // 1000,
                   "cpu_bound": bool(r.cpu_bound),
                   "cq_entries": self.cq_entries,
                   "cq_overflow": r.cq_overflow, "buffers": self.buffers.stats(),
                   "sync_fallback_ops": dict(self._fallback_ops)})
