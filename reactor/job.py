"""Running a topology: operator instances, edges, watermarks, barriers and restore.

Every source, operator and sink instance is one task in the reactor. Operators
and sinks own a bounded mailbox of events (:mod:`reactor.events`); sources
read their :class:`~reactor.sources.SourceReader` and push downstream. Fused
stateless steps (map/filter/flat_map/key_by) run on the sending side
(:class:`_Output`), which also partitions keyed streams over the receiving
instances.

Checkpoints (Chandy–Lamport with aligned barriers): the
:class:`~reactor.checkpoint.Coordinator` asks every source to inject a barrier
for epoch *n* (recording the source's offset). An instance that has seen the
barrier on one input channel holds that channel's later events back until the
barrier arrived on all of them; then it writes its state (statelets, timers)
to the store, forwards the barrier, acknowledges, and waits for the commit
before it touches state again — so the store's checkpoint for *n* holds
exactly the effects of the elements before the barrier. Sinks prepare their
output at the barrier and make it visible at the commit.
"""
from __future__ import annotations

import inspect
import logging
import math
import os
import shutil
import tempfile
import time
from collections import deque
from itertools import compress
from typing import Any

import attrs

from statelets import Store, StoreConfig
from statelets.tier import HeapTier
from statelets.types import StateletContext
from uring.curio_compat import curio

from . import scheduler as _sched
from .checkpoint import Coordinator
from .errors import CheckpointError, OperatorError, ReactorError, TopologyError
from .events import INF, TICK, Barrier, DataBatch, Tick, Watermark
from .keyed_timers import KeyedTimers
from .store_gate import GatedStore
from .operator import Batch, Context, Operator
from .partition import Partitioner
from .topology import Edge, Node, Plan, Topology

log = logging.getLogger("reactor.job")

__all__ = ["JobConfig", "Job", "JobResult", "run_topology"]


@attrs.define
class JobConfig:
    """How a topology runs. See :func:`reactor.run`."""

    #: Where state and checkpoints live; None: a temporary directory, removed at the end.
    state_dir: str | None = None
    #: Seconds between checkpoints (None: only the final one).
    checkpoint_every: float | None = 5.0
    #: Also checkpoint after this many source elements (None: by time only).
    checkpoint_every_elements: int | None = None
    #: Committed checkpoints to keep.
    keep_checkpoints: int = 3
    #: Mailbox capacity of each instance, in batches: what a barrier may queue behind
    #: (alignment time), and what keeps a pipeline busy (throughput).
    mailbox_batches: int = 4
    store_config: StoreConfig | None = None
    #: Entries per statelet held as objects in memory (the heap tier) before writing back.
    heap_entries: int = 1 << 18
    #: Run the store's compaction actor.
    compaction: bool = True
    #: Restore this epoch instead of the latest one.
    epoch: int | None = None

    def __attrs_post_init__(self) -> None:
        ce = self.checkpoint_every
        if ce is not None and (not isinstance(ce, (int, float)) or isinstance(ce, bool) or ce <= 0):
            raise ValueError(f"checkpoint_every must be a positive number of seconds or None, "
                             f"got {ce!r}")
        ce = self.checkpoint_every_elements
        if ce is not None and (not isinstance(ce, int) or isinstance(ce, bool) or ce <= 0):
            raise ValueError(f"checkpoint_every_elements must be a positive int or None, got {ce!r}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ValueError(f"keep_checkpoints must be an int >= 1, got {self.keep_checkpoints!r}")
        if not isinstance(self.mailbox_batches, int) or self.mailbox_batches < 1:
            raise ValueError(f"mailbox_batches must be an int >= 1, got {self.mailbox_batches!r}")


@attrs.define
class JobResult:
    """What a finished (or stopped) job reports."""

    topology: str
    epoch: int | None                    # last committed epoch
    restored_from: int | None            # epoch the run started from
    elements_in: int                     # source elements read in this run
    seconds: float
    restarts: int
    dead_letters: list[Any]
    late_dropped: int
    checkpoints: list[dict[str, Any]]
    operators: dict[str, dict[str, Any]]
    #: How long each operator instance was held up by each checkpoint (first barrier
    #: to the commit releasing it), in ms.
    checkpoint_pauses_ms: list[float] = attrs.Factory(list)


class _Restart(Exception):
    """An operator with the ``restart`` policy failed: restart the job from its checkpoint."""

    def __init__(self, error: OperatorError) -> None:
        super().__init__(str(error))
        self.error = error


# ----------------------------------------------------------------------------- outputs

class _Target:
    __slots__ = ("inst", "channel")

    def __init__(self, inst: "_Receiver", channel: int) -> None:
        self.inst = inst
        self.channel = channel


class _Output:
    """One edge as seen by one sending instance: fused steps, partitioning, targets."""

    __slots__ = ("edge", "steps", "targets", "mode", "part", "rr", "sender", "key_fn")

    def __init__(self, edge: Edge, sender: "_Instance", targets: list[_Target]) -> None:
        self.edge = edge
        self.sender = sender
        self.steps = edge.steps
        self.targets = targets
        n = len(targets)
        if edge.keyed:
            self.mode = "key"
            step = [name for kind, _, name in edge.steps if kind == "key_by"][-1]
            self.part = Partitioner(n, f"key_by step {step!r} (before {edge.dst!r})")
        elif edge.broadcast:
            self.mode = "broadcast"
            self.part = None
        elif n == sender.parallelism:
            self.mode = "forward"
            self.part = None
        else:
            self.mode = "rebalance"
            self.part = None
        self.rr = sender.index % n

    def _apply(self, values: list[Any], times: list[Any] | None
               ) -> tuple[list[Any], list[Any] | None, list[Any] | None]:
        keys = None
        for kind, fn, step in self.steps:
            try:
                if kind == "map":
                    values = [fn(v) for v in values]
                    keys = None
                elif kind == "filter":
                    if times is None and keys is None:
                        values = [v for v in values if fn(v)]
                    else:
                        keep = list(map(fn, values))
                        values = list(compress(values, keep))
                        if times is not None:
                            times = list(compress(times, keep))
                        if keys is not None:
                            keys = list(compress(keys, keep))
                elif kind == "flat_map":
                    if times is None:
                        values = [x for v in values for x in fn(v)]
                    else:
                        out_v, out_t = [], []
                        for v, t in zip(values, times):
                            xs = list(fn(v))
                            out_v.extend(xs)
                            out_t.extend([t] * len(xs))
                        values, times = out_v, out_t
                    keys = None
                elif kind == "key_by":
                    keys = [fn(v) for v in values]
                else:  # broadcast: routing only
                    keys = None
            except Exception as exc:
                self._blame(kind, fn, step, values, exc)
        return values, keys, times

    def _blame(self, kind: str, fn: Any, step: str, values: list[Any], exc: Exception) -> None:
        for v in values:            # find the element that fails, to name it
            try:
                r = fn(v)
                if kind == "flat_map":
                    list(r)
            except Exception as e:
                raise OperatorError(f"{step} (fused into {self.sender.name})", v, e) from e
        raise OperatorError(f"{step} (fused into {self.sender.name})", None, exc) from exc

    async def send(self, values: list[Any], times: list[Any] | None) -> None:
        values, keys, times = self._apply(values, times)
        if not values:
            return
        targets = self.targets
        if self.mode == "forward":
            t = targets[self.sender.index]
            await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))
        elif self.mode == "key":
            n = len(targets)
            if n == 1:
                t = targets[0]
                await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))
                return
            part = self.part
            buckets: list[list[int]] = [[] for _ in range(n)]
            try:
                for i, k in enumerate(keys):  # type: ignore[arg-type]
                    buckets[part(k)].append(i)
            except Exception as exc:
                raise OperatorError(f"{self.part.what} (fused into {self.sender.name})",
                                    values[i], exc) from exc
            for t, idx in zip(targets, buckets):
                if idx:
                    await t.inst.mailbox.put(DataBatch(
                        t.channel, [values[i] for i in idx], [keys[i] for i in idx],  # type: ignore[index]
                        [times[i] for i in idx] if times is not None else None))
        elif self.mode == "broadcast":
            for i, t in enumerate(targets):     # own lists: a handler may keep or change them
                await t.inst.mailbox.put(DataBatch(
                    t.channel, values if i == 0 else list(values), None,
                    times if i == 0 or times is None else list(times)))
        else:
            t = targets[self.rr]
            self.rr = (self.rr + 1) % len(targets)
            await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))

    async def broadcast(self, make: Any) -> None:
        """Send a control event (built per target channel) to every target."""
        for t in self.targets:
            await t.inst.mailbox.put(make(t.channel))


# ---------------------------------------------------------------------------- instances

class _Instance:
    """Common parts of source, operator and sink instances."""

    kind = "?"

    def __init__(self, job: "Job", node: Node, index: int) -> None:
        self.job = job
        self.node = node.name
        self.index = index
        self.parallelism = node.parallelism
        self.name = f"{node.name}/{index}"
        self.outputs: dict[str | None, list[_Output]] = {}
        self.side_outputs: set[str] = set()
        self.task: Any = None
        self.elements_in = 0
        self.elements_out = 0
        self.busy = 0.0
        self.pauses: list[float] = []

    async def _send(self, output: str | None, values: list[Any], times: list[Any] | None) -> None:
        outs = self.outputs.get(output)
        if not outs or not values:
            return
        self.elements_out += len(values)
        for o in outs:
            await o.send(values, times)

    async def _control(self, make: Any) -> None:
        for outs in self.outputs.values():
            for o in outs:
                await o.broadcast(make)

    def stats(self) -> dict[str, Any]:
        """Figures in the shape of actor stats (so the live view and metrics show them)."""
        p = sorted(self.pauses)
        mb = getattr(self, "mailbox", None)
        return {"kind": self.kind, "queue": self.task._tq.name if self.task is not None else None,
                "messages_in": self.elements_in, "messages_out": self.elements_out,
                "handler_time_s": round(self.busy, 6),
                "mailbox_depth": len(mb) if mb is not None else 0,
                "mailbox_high_water": mb.high_water if mb is not None else 0,
                "mailbox_capacity": mb.capacity if mb is not None else 0,
                "blocked_s": round(mb.blocked_time, 6) if mb is not None else 0.0,
                "failures": 0, "restarts": self.job.restarts,
                "running": self.task is not None and not self.task.terminated,
                "checkpoint_pause_max_ms": round(p[-1] * 1e3, 3) if p else None}


class _Receiver(_Instance):
    """An instance with a mailbox and input channels (operators and sinks)."""

    def __init__(self, job: "Job", node: Node, index: int) -> None:
        super().__init__(job, node, index)
        from .mailbox import Mailbox
        self.mailbox = Mailbox(job.config.mailbox_batches, self.name)
        self.port_of: list[int] = []         # channel -> input port
        self.channel_wm: list[float] = []
        self.idle: list[bool] = []
        self.finished: list[bool] = []
        self.wm = -INF
        self.blocked: set[int] = set()
        self.held: list[Any] = []
        self.barrier_epoch: int | None = None
        self.barrier_t0 = 0.0

    def add_channel(self, port: int) -> int:
        self.port_of.append(port)
        self.channel_wm.append(-INF)
        self.idle.append(False)
        self.finished.append(False)
        return len(self.port_of) - 1

    def _new_watermark(self) -> float | None:
        """The minimum over active channels, if it advanced."""
        active = [w for w, idle, fin in zip(self.channel_wm, self.idle, self.finished)
                  if not idle and not fin]
        if not active:
            if all(self.finished):
                new = INF
            else:
                return None
        else:
            new = min(active)
        if new > self.wm:
            self.wm = new
            return new
        return None

    def _on_barrier(self, b: Barrier) -> bool:
        """Record a barrier; True once it has arrived on every channel."""
        if self.barrier_epoch is None:
            self.barrier_epoch = b.epoch
            self.barrier_t0 = time.perf_counter()
        elif b.epoch != self.barrier_epoch:
            raise CheckpointError(f"{self.name}: barrier of epoch {b.epoch} arrived while "
                                  f"aligning epoch {self.barrier_epoch}")
        self.blocked.add(b.channel)
        if b.final:
            self.finished[b.channel] = True
        return len(self.blocked) == len(self.port_of)

    def _aligned(self, queue: deque) -> tuple[int, bool]:
        """Release held events; returns (epoch, whether every channel has ended)."""
        epoch = self.barrier_epoch
        assert epoch is not None
        self.barrier_epoch = None
        self.blocked.clear()
        if self.held:
            queue.extendleft(reversed(self.held))
            self.held = []
        return epoch, all(self.finished)


class _SourceInstance(_Instance):
    kind = "source"

    def __init__(self, job: "Job", node: Node, index: int, offset: Any,
                 watermark: float | None = None) -> None:
        super().__init__(job, node, index)
        self.source = node.fn
        self.offset = offset
        self.opts = node.options
        self.requests: deque[tuple[int, bool]] = deque()
        self._event = curio.Event()
        self.done = False
        self.wm = -INF
        self.max_ts = -INF
        # A restore resumes the watermark too: elements late before a crash stay late.
        self.restored_wm = watermark
        if watermark is not None:
            self.wm = watermark
            self.max_ts = watermark + node.options["max_out_of_orderness"]
        #: The watermark sent before each epoch's barrier (recorded in the checkpoint).
        self.barrier_wm: dict[int, float] = {}
        self.reader: Any = None

    async def request(self, epoch: int, final: bool) -> None:
        """Called by the coordinator: inject a barrier for ``epoch`` at the next chance."""
        self.requests.append((epoch, final))
        await self._event.set()

    async def _inject(self) -> bool:
        """Handle barrier requests; True when a final one was sent."""
        while self.requests:
            epoch, final = self.requests.popleft()
            offset = self.reader.offset()
            self.barrier_wm[epoch] = self.wm
            await self._control(lambda ch: Barrier(ch, epoch, final))
            await self.job.coordinator.ack(self, epoch, offset)
            if final:
                return True
        return False

    async def run(self) -> None:
        job = self.job
        src = self.source
        try:
            self.reader = src.open(self.index, self.parallelism, self.offset)
        except Exception as exc:
            raise OperatorError(self.name, None, exc, phase=f"opening {src.describe()}") from exc
        if self.restored_wm is not None:
            wm = self.restored_wm
            await self._control(lambda ch: Watermark(ch, wm))
        ts_fn = self.opts["timestamp"]
        lag = self.opts["max_out_of_orderness"]
        idle_timeout = self.opts["idle_timeout"]
        batch_size = self.opts["batch_size"]
        coord = job.coordinator
        clock = time.perf_counter
        last_data = time.monotonic()
        idle_sent = False
        try:
            while True:
                if self.requests and await self._inject():
                    return
                if self.done:
                    self._event.clear()
                    if not self.requests:
                        await self._event.wait()
                    continue
                try:
                    batch = await self.reader.read(batch_size)
                except (OperatorError, curio.CancelledError):
                    raise
                except Exception as exc:
                    raise OperatorError(self.name, None, exc,
                                        phase=f"reading {src.describe()}") from exc
                if batch is None:
                    self.done = True
                    await self._control(lambda ch: Watermark(ch, INF))
                    await coord.source_done(self)
                    continue
                if not batch:
                    if idle_timeout is not None and not idle_sent and \
                            time.monotonic() - last_data >= idle_timeout:
                        idle_sent = True
                        wm = self.wm
                        await self._control(lambda ch: Watermark(ch, wm, idle=True))
                    if not self.requests:
                        self._event.clear()
                        async with curio.ignore_after(0.05):
                            await self._event.wait()
                    continue
                last_data = time.monotonic()
                idle_sent = False
                t0 = clock()
                n = len(batch)
                self.elements_in += n
                times = None
                if ts_fn is not None:
                    try:
                        times = [ts_fn(v) for v in batch]
                        top = max(times)
                    except Exception as exc:
                        for v in batch:
                            try:
                                float(ts_fn(v))
                            except Exception as e:
                                raise OperatorError(f"timestamp of {self.name}", v, e) from e
                        raise OperatorError(f"timestamp of {self.name}", None, exc) from exc
                    if top > self.max_ts:
                        self.max_ts = top
                await self._send(None, batch, times)
                if ts_fn is not None and self.max_ts - lag > self.wm:
                    self.wm = wm = self.max_ts - lag
                    await self._control(lambda ch: Watermark(ch, wm))
                self.busy += clock() - t0
                if coord.count(n):
                    await coord.trigger()
                await _sched.maybe_yield()
        finally:
            await self.reader.close()


class _OperatorInstance(_Receiver):
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
            return _Restart(err)
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
            except (OperatorError, _Restart):
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
        job = self.job
        n = await self.timers.load(self.store, self.index, self.parallelism)
        if n:
            log.info("%s: restored %d timers", self.name, n)
        await self._call(self.op.on_start, self.ctx, phase="on_start")
        await self._flush()
        if self.timers.next_processing() is not None:
            self._arm_processing(self.timers.next_processing())  # type: ignore[arg-type]
        queue: deque[Any] = deque()
        mailbox = self.mailbox
        clock = time.perf_counter
        try:
            while True:
                if not queue:
                    nxt = self.timers.next_processing()
                    if nxt is not None and nxt <= time.time():
                        await self._fire("processing", time.time())
                    items = await mailbox.get_batch()
                    if items is None:
                        raise ReactorError(f"{self.name}: mailbox closed before the final barrier")
                    queue.extend(items)
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


class _SinkInstance(_Receiver):
    kind = "sink"

    def __init__(self, job: "Job", node: Node, index: int, state: Any) -> None:
        super().__init__(job, node, index)
        self.sink = node.fn
        self.writer = self.sink.open(index, self.parallelism, state)
        self.restored_state = state

    async def run(self) -> None:
        job = self.job
        if self.restored_state is not None and job.restored_from is not None:
            # The commit of the restored epoch may not have finished before the crash.
            await self.writer.commit(job.restored_from, self.restored_state)
        queue: deque[Any] = deque()
        mailbox = self.mailbox
        writer = self.writer
        try:
            while True:
                if not queue:
                    items = await mailbox.get_batch()
                    if items is None:
                        raise ReactorError(f"{self.name}: mailbox closed before the final barrier")
                    queue.extend(items)
                    continue
                item = queue.popleft()
                cls = item.__class__
                if item.channel in self.blocked:
                    self.held.append(item)
                    continue
                if cls is DataBatch:
                    self.elements_in += len(item.values)
                    t0 = time.perf_counter()
                    try:
                        await writer.write(item.values, item.times)
                    except curio.CancelledError:
                        raise
                    except Exception as exc:
                        raise OperatorError(self.name, item.values[0], exc,
                                            phase="writing a batch starting with "
                                                  f"{item.values[0]!r:.80}") from exc
                    self.busy += time.perf_counter() - t0
                elif cls is Barrier:
                    if self._on_barrier(item):
                        epoch, final = self._aligned(queue)
                        try:
                            state = await writer.prepare(epoch)
                        except curio.CancelledError:
                            raise
                        except Exception as exc:
                            raise CheckpointError(
                                f"sink {self.name!r} could not prepare epoch {epoch}: "
                                f"{type(exc).__name__}: {exc}; the last committed epoch "
                                f"({job.coordinator.committed}) is intact") from exc
                        await job.coordinator.ack(self, epoch, state)
                        self.pauses.append(time.perf_counter() - self.barrier_t0)
                        if final:
                            await job.coordinator.wait_committed(epoch)
                            return
                await _sched.maybe_yield()
        finally:
            await writer.close()


# ---------------------------------------------------------------------------------- job

class Job:
    """One run of a topology in the current reactor (see :func:`run_topology`)."""

    def __init__(self, topology: Topology, config: JobConfig, reactor: Any,
                 store: Store, restarts: int = 0) -> None:
        self.topology = topology
        self.plan: Plan = topology.validate()
        self.config = config
        self.reactor = reactor
        self.store = store
        self.restarts = restarts
        self.dead_letters: list[Any] = []
        manifest = store.manifest
        self.restored_from: int | None = manifest.epoch if manifest is not None else None
        meta = store.metadata if manifest is not None else {}
        self._check_restore(meta)
        self.coordinator = Coordinator(self, self.restored_from)
        self.instances: list[_Instance] = []
        self.sources: list[_SourceInstance] = []
        self.sinks: list[_SinkInstance] = []
        self._build(meta)

    def _check_restore(self, meta: dict[str, Any]) -> None:
        old = meta.get("topology")
        if not old:
            return
        problems = []
        for node in self.plan.nodes:
            before = old.get(node.name)
            if before is None or before["parallelism"] == node.parallelism:
                continue
            if node.kind == "operator":
                continue        # keyed state and timers re-partition by key hash
            problems.append(
                f"{node.kind} {node.name!r} had parallelism {before['parallelism']} in the "
                f"checkpoint of epoch {self.restored_from} and now has {node.parallelism}: "
                + ("its read offsets are per instance, so they cannot be re-split"
                   if node.kind == "source" else
                   "its committed output is per instance"))
        if problems:
            raise TopologyError(
                f"topology {self.topology.name!r} cannot restore state dir "
                f"{self.store.path!r}:\n  - " + "\n  - ".join(problems) +
                "\n  keep the old parallelism, or start from an empty state dir")

    def _build(self, meta: dict[str, Any]) -> None:
        offsets = meta.get("sources", {})
        watermarks = meta.get("watermarks", {})
        sink_states = meta.get("sinks", {})
        by_node: dict[str, list[_Instance]] = {}
        for node in self.plan.nodes:
            maxp = getattr(node.fn, "max_parallelism", None)
            if node.kind in ("source", "sink") and maxp is not None and node.parallelism > maxp:
                raise TopologyError(f"{node.kind} {node.name!r}: {type(node.fn).__name__} supports "
                                    f"parallelism up to {maxp}, got {node.parallelism}")
            insts: list[_Instance] = []
            for i in range(node.parallelism):
                key = f"{node.name}/{i}"
                if node.kind == "source":
                    inst: _Instance = _SourceInstance(self, node, i, offsets.get(key),
                                                      watermarks.get(key))
                    self.sources.append(inst)  # type: ignore[arg-type]
                elif node.kind == "sink":
                    inst = _SinkInstance(self, node, i, sink_states.get(key))
                    self.sinks.append(inst)  # type: ignore[arg-type]
                else:
                    inst = _OperatorInstance(self, node, i)
                insts.append(inst)
            by_node[node.name] = insts
            self.instances.extend(insts)
            if node.kind == "sink" and hasattr(node.fn, "cleanup"):
                node.fn.cleanup([sink_states.get(f"{node.name}/{i}")
                                 for i in range(node.parallelism)], self.restored_from)
        for e in self.plan.edges:
            for sender in by_node[e.src]:
                targets = [_Target(r, r.add_channel(e.port))  # type: ignore[attr-defined]
                           for r in by_node[e.dst]]
                sender.outputs.setdefault(e.output, []).append(_Output(e, sender, targets))
                if e.output is not None:
                    sender.side_outputs.add(e.output)

    async def run(self) -> None:
        """Run every instance until the final checkpoint commits (or one fails)."""
        failures: list[BaseException] = []
        done = curio.Event()
        remaining = len(self.instances)

        async def supervised(inst: _Instance) -> None:
            nonlocal remaining
            try:
                await inst.run()  # type: ignore[attr-defined]
            except curio.CancelledError:
                raise
            except BaseException as exc:
                failures.append(exc)
                await done.set()
            finally:
                remaining -= 1
                if remaining == 0:
                    await done.set()

        s = self.reactor.scheduler
        tasks = [await s.spawn(supervised, inst, daemon=True) for inst in self.instances]
        for inst, t in zip(self.instances, tasks):
            inst.task = t
            t.actor_name = inst.name        # stall reports and stats name the instance
        async def coordinate() -> None:
            try:
                await self.coordinator.run()
            except curio.CancelledError:
                raise
            except BaseException as exc:      # a failed commit fails the job, loudly
                failures.append(exc)
                await done.set()

        ticker = await s.spawn(coordinate, daemon=True)
        try:
            await done.wait()
        finally:
            await ticker.cancel()
            for t in tasks:
                if not t.terminated:
                    await t.cancel()
        if failures:
            raise failures[0]

    def result(self, seconds: float) -> JobResult:
        ops: dict[str, dict[str, Any]] = {}
        late = 0
        for inst in self.instances:
            ops[inst.name] = inst.stats()
            late += getattr(inst, "late_dropped", 0)
        return JobResult(
            topology=self.topology.name, epoch=self.coordinator.committed,
            restored_from=self.restored_from,
            elements_in=sum(s.elements_in for s in self.sources), seconds=seconds,
            restarts=self.restarts, dead_letters=list(self.dead_letters), late_dropped=late,
            checkpoints=list(self.coordinator.history), operators=ops,
            checkpoint_pauses_ms=[round(p * 1e3, 3) for inst in self.instances
                                  if inst.kind == "operator" for p in inst.pauses])


async def run_topology(topology: Topology, config: JobConfig) -> JobResult:
    """Run ``topology`` in the current reactor; restores from ``config.state_dir``.

    Operators with the ``restart`` policy restart the whole job from the last
    committed checkpoint (exactly-once state); other failures raise
    :class:`~reactor.errors.OperatorError` and leave that checkpoint intact.
    """
    from .runtime import current_reactor
    topology.validate()         # refuse a bad topology before touching the state dir
    reactor = current_reactor()
    temp = None
    state_dir = config.state_dir
    if state_dir is None:
        temp = state_dir = tempfile.mkdtemp(prefix=f"reactor-{topology.name}-")
    else:
        try:
            os.makedirs(state_dir, exist_ok=True)   # once, before the job: parents too
        except OSError as exc:
            raise CheckpointError(f"cannot create the state dir {state_dir!r}: {exc}") from exc
    store_config = config.store_config or StoreConfig(keep_checkpoints=config.keep_checkpoints)
    restarts = 0
    t0 = time.perf_counter()
    dead: list[Any] = []
    try:
        while True:
            try:
                store = await Store.open(state_dir, config=store_config, epoch=config.epoch)
            except Exception as exc:
                raise CheckpointError(f"cannot open the state dir {state_dir!r}: {exc}") from exc
            # The store yields through the scheduler (only when the slice is spent).
            store.pause = _sched.maybe_yield
            compactor = None
            try:
                job = Job(topology, config, reactor, store, restarts)
                job.dead_letters = dead
                if job.restored_from is not None:
                    log.info("job %s: restored epoch %d from %s", topology.name,
                             job.restored_from, state_dir)
                if config.compaction:
                    compactor = await reactor.start_compaction(store)
                reactor.jobs.append(job)
                await job.run()
                return job.result(time.perf_counter() - t0)
            except _Restart as r:
                policy_max = topology.nodes[r.error.operator.split("/")[0]].options["max_restarts"]
                if restarts >= policy_max:
                    raise r.error from r.error.__cause__
                restarts += 1
                log.warning("%s; restarting the job from the last committed checkpoint (%d/%d)",
                            r.error, restarts, policy_max)
            finally:
                if compactor is not None and compactor.task is not None:
                    await compactor.task.cancel()
                await store.close()
            config = attrs.evolve(config, epoch=None)   # a restart resumes the latest epoch
    finally:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
