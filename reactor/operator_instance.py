"""Operator instances: a user's Operator at work on its share of the keys.

An instance calls the operator's hooks for data batches (per element or per
batch), fires its keyed timers as the watermark or the clock passes them,
applies the supervision policy to failures, and takes part in checkpoints:
at an aligned barrier it captures its state changes (heap-tier statelets,
timer registrations) for the coordinator to write, forwards the barrier,
acknowledges, and goes on — its own writes to the store wait for the commit
(:class:`~reactor.store_gate.GatedStore`).
"""
from __future__ import annotations

import inspect
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from statelets.errors import CorruptionError, StoreFailed
from statelets.tier import HeapTier
from statelets.types import StateletContext

from . import scheduler as _sched
from .errors import OperatorError, TopologyError
from .events import INF, TICK, Barrier, DataBatch, Tick, Watermark
from .instances import Receiver
from .keyed_timers import KeyedTimers
from .operator import Batch, Context, Operator
from .store_gate import GatedStore
from .topology import Node

if TYPE_CHECKING:
    from .job import Job

log = logging.getLogger("reactor.job")

__all__ = ["OperatorInstance", "RestartJob"]

class RestartJob(Exception):
    """An operator with the ``restart`` policy failed: restart the job from its checkpoint."""

    def __init__(self, error: OperatorError) -> None:
        super().__init__(str(error))
        self.error = error


class OperatorInstance(Receiver):
    kind = "operator"

    def __init__(self, job: "Job", node: Node, index: int) -> None:
        super().__init__(job, node, index)
        self.policy = node.options["policy"]
        self.on_late = node.options["on_late"]
        try:
            op = node.fn()
        except Exception as exc:
            raise OperatorError(self.name, None, exc, phase="construction") from exc
        if not isinstance(op, Operator):
            raise TopologyError(f"operator {node.name!r}: its factory returned {op!r}, not an "
                                f"Operator")
        op.name, op.index, op.parallelism = node.name, index, node.parallelism
        self.op = op
        self.store = GatedStore(job.store, job.coordinator)
        self.sctx = StateletContext(self.store, node.name, tier=HeapTier(job.config.heap_entries))
        op.statelet_context = self.sctx
        self.ctx = Context(self, self.sctx)
        self.ctx.epoch = (job.restored_from or 0) + 1       # the epoch being processed
        self.timers = KeyedTimers(node.name, self.name)
        self.timers.on_processing_head = self._arm_processing
        self.captured: Any = None
        self._armed: Any = None
        self.late_dropped = 0
        cls = type(op)
        self._batch_hook = op.on_batch if getattr(cls, "on_batch", None) is not None else None
        self._element = op.on_element
        self._element_coro = inspect.iscoroutinefunction(cls.on_element)
        self._has_timers = cls.on_timer is not Operator.on_timer
        self._has_wm_hook = cls.on_watermark is not Operator.on_watermark

    # -- helpers -------------------------------------------------------------------------
    async def _call(self, fn: Any, *args: Any, phase: str) -> None:
        try:
            r = fn(*args)
            if inspect.isawaitable(r):
                await r
        except Exception as exc:
            raise self._error(None, exc, phase) from exc

    def _error(self, element: Any, exc: Exception, phase: str = "handling") -> Exception:
        err = OperatorError(self.name, element, exc, phase=phase)
        if self.policy == "restart" and phase == "handling":
            return RestartJob(err)
        return err

    async def _flush(self) -> None:
        ctx = self.ctx
        if ctx._out_values:
            values, times = ctx._out_values, ctx._out_times
            ctx._out_values, ctx._out_times = [], []
            await self._send(None, values, times)
        if ctx._side:
            side, ctx._side = ctx._side, {}
            for name, (values, times) in side.items():
                await self._send(name, values, times)
        if self.timers.dirty:
            await self.timers.persist(self.store)

    def _arm_processing(self, t: float) -> None:
        if self._armed is not None:
            self._armed.cancel()
        reactor = self.job.reactor
        mb = self.mailbox

        def tick() -> None:
            try:
                mb.try_put(TICK)
            except Exception:       # the instance has stopped
                pass
        self._armed = reactor.timers.schedule_after(max(0.0, t - time.time()), tick)

    async def _fire(self, domain: str, limit: float) -> None:
        # Until none is due: a handler may register a timer that is due already.
        while True:
            due = self.timers.pop_due(domain, limit)
            if not due:
                return
            await self._fire_due(domain, due)

    async def _fire_due(self, domain: str, due: list[tuple[float, Any]]) -> None:
        ctx, op = self.ctx, self.op
        ctx.timer_domain = domain
        try:
            s = self.job.reactor.scheduler
            for n, (t, key) in enumerate(due):
                if n & 31 == 31 and s._clock() - s._t0 >= s._current._tq.slice:
                    await self._flush()
                    await s.yield_now()
                self.sctx.current_key = key
                ctx.timestamp = t if domain == "event" else None
                try:
                    r = op.on_timer(t, ctx)
                    if inspect.isawaitable(r):
                        await r
                except Exception as exc:
                    await self._failed(("timer", domain, t, key), exc)
        finally:
            ctx.timer_domain = None
        await self._flush()

    async def _failed(self, element: Any, exc: Exception) -> None:
        if isinstance(exc, (CorruptionError, StoreFailed)):
            # The state itself is damaged or unusable: no policy may skip over it or
            # retry on top of it. The job fails; the last committed checkpoint stays.
            raise OperatorError(self.name, element, exc, phase="handling") from exc
        if self.policy == "skip":
            self.job.dead_letters.append((self.name, element, exc))
            log.warning("%s (skipped; element sent to dead letters)",
                        OperatorError(self.name, element, exc))
            return
        raise self._error(element, exc)

    # -- data ----------------------------------------------------------------------------
    async def _data(self, b: DataBatch) -> None:
        ctx = self.ctx
        ctx.input = self.port_of[b.channel]
        values, keys, times = b.values, b.keys, b.times
        n = len(values)
        self.elements_in += n
        if self.on_late != "pass" and times is not None and self.wm > -INF:
            wm = self.wm
            late = [i for i, t in enumerate(times) if t is not None and t < wm]
            if late:
                lateset = set(late)
                if self.on_late == "side":
                    for i in late:
                        ctx._side.setdefault("late", ([], []))
                        ctx._side["late"][0].append(values[i])
                        ctx._side["late"][1].append(times[i])
                else:
                    self.late_dropped += len(late)
                keep = [i for i in range(n) if i not in lateset]
                values = [values[i] for i in keep]
                keys = [keys[i] for i in keep] if keys is not None else None
                times = [times[i] for i in keep]
                n = len(values)
        sctx = self.sctx
        if self._batch_hook is not None:
            sctx.current_key = None
            ctx.timestamp = None
            try:
                r = self._batch_hook(Batch(values, keys, times, ctx.input), ctx)
                if inspect.isawaitable(r):
                    await r
            except Exception as exc:
                await self._failed(Batch(values, keys, times, ctx.input), exc)
            await self._flush()
            return
        handle = self._element
        coro = self._element_coro
        s = self.job.reactor.scheduler
        clock = s._clock
        i = 0
        while i < n:
            try:
                if coro:
                    while i < n:
                        if keys is not None:
                            sctx.current_key = keys[i]
                        ctx.timestamp = times[i] if times is not None else None
                        await handle(values[i], ctx)
                        i += 1
                        if not i & 31 and clock() - s._t0 >= s._current._tq.slice:
                            await self._flush()
                            await s.yield_now()
                else:
                    while i < n:
                        if keys is not None:
                            sctx.current_key = keys[i]
                        ctx.timestamp = times[i] if times is not None else None
                        handle(values[i], ctx)
                        i += 1
                        if not i & 31 and clock() - s._t0 >= s._current._tq.slice:
                            await self._flush()
                            await s.yield_now()
            except (OperatorError, RestartJob):
                raise
            except Exception as exc:
                await self._failed(values[i], exc)
                i += 1
        await self._flush()

    async def _watermark(self, w: Watermark) -> None:
        ch = w.channel
        if w.idle:
            self.idle[ch] = True
        else:
            self.idle[ch] = False
            if w.time > self.channel_wm[ch]:
                self.channel_wm[ch] = w.time
        new = self._new_watermark()
        if new is None:
            if w.idle and all(i or f for i, f in zip(self.idle, self.finished)):
                wm = self.wm
                await self._control(lambda c: Watermark(c, wm, idle=True))
            return
        self.ctx.watermark = new
        if self._has_timers:
            await self._fire("event", new)
        if self._has_wm_hook:
            await self._call(self.op.on_watermark, new, self.ctx, phase="on_watermark")
            await self._flush()
        await self._control(lambda c: Watermark(c, new))

    async def _checkpoint(self, epoch: int, final: bool) -> None:
        if final:
            self.sctx.current_key = None
            await self._call(self.op.on_stop, self.ctx, phase="on_stop")
            await self._flush()
        job = self.job
        store = self.store
        if store.epoch is not None:      # the previous epoch's gate (committed by now)
            await store._wait()
        if store.waited and self.pauses:  # writes held up by the previous epoch's commit
            self.pauses[-1] += store.waited
        store.waited = 0.0
        self.ctx.epoch = epoch + 1
        # Take the epoch's state changes now (cheap: no encoding of immutable values);
        # the coordinator writes them to the store before committing the epoch.
        self.captured = (self.sctx.tier.capture(), self.timers.take_ops())
        await self._control(lambda c: Barrier(c, epoch, final))
        await job.coordinator.ack(self, epoch, None)
        # Go on processing (or, after the final barrier, stop): writes to the store
        # wait for the commit (GatedStore); the sinks wait for the final one.
        store.epoch = epoch
        self.pauses.append(time.perf_counter() - self.barrier_t0)

    async def write_captured(self, store: Any) -> None:
        """Write the state changes taken at the barrier (called by the coordinator)."""
        captured, self.captured = self.captured, None
        if captured is not None:
            tier_items, timer_ops = captured
            await HeapTier.write(tier_items, store)
            await KeyedTimers.write_ops(timer_ops, store)

    async def run(self) -> None:
        n = await self.timers.load(self.store, self.index, self.parallelism)
        if n:
            log.info("%s: restored %d timers", self.name, n)
        await self._call(self.op.on_start, self.ctx, phase="on_start")
        await self._flush()
        if self.timers.next_processing() is not None:
            self._arm_processing(self.timers.next_processing())  # type: ignore[arg-type]
        queue: deque[Any] = deque()
        clock = time.perf_counter
        try:
            while True:
                if not queue:
                    nxt = self.timers.next_processing()
                    if nxt is not None and nxt <= time.time():
                        await self._fire("processing", time.time())
                    await self._refill(queue)
                    continue
                item = queue.popleft()
                cls = item.__class__
                if cls is Tick:
                    continue
                if item.channel in self.blocked:
                    self.held.append(item)
                    continue
                t0 = clock()
                if cls is DataBatch:
                    if self.idle[item.channel]:
                        self.idle[item.channel] = False
                    await self._data(item)
                elif cls is Watermark:
                    await self._watermark(item)
                elif cls is Barrier:
                    if self._on_barrier(item):
                        epoch, final = self._aligned(queue)
                        await self._checkpoint(epoch, final)
                        if final:
                            return
                self.busy += clock() - t0
                await _sched.maybe_yield()
        finally:
            if self._armed is not None:
                self._armed.cancel()
