"""Operator-graph instances: the common parts, sources and sinks.

Every source, operator and sink instance is one task in the reactor.
Receivers (operators and sinks) own a bounded mailbox of events
(:mod:`reactor.events`) and input channels (one per upstream instance and
edge); they align epoch barriers across their channels, holding back the
events of channels whose barrier has arrived. Sources read their
:class:`~reactor.sources.SourceReader`, stamp event time, emit watermarks and
inject the barriers the coordinator asks for. Operator instances are in
:mod:`reactor.operator_instance`.
"""
from __future__ import annotations

import time
from collections import deque
from typing import TYPE_CHECKING, Any

from uring.curio_compat import curio

from . import scheduler as _sched
from .errors import CheckpointError, OperatorError, ReactorError
from .events import INF, Barrier, DataBatch, Watermark
from .topology import Node

if TYPE_CHECKING:
    from .job import Job
    from .routing import Output

__all__ = ["Instance", "Receiver", "SourceInstance", "SinkInstance"]

class Instance:
    """Common parts of source, operator and sink instances."""

    kind = "?"

    def __init__(self, job: "Job", node: Node, index: int) -> None:
        self.job = job
        self.node = node.name
        self.index = index
        self.parallelism = node.parallelism
        self.name = f"{node.name}/{index}"
        self.outputs: dict[str | None, list[Output]] = {}
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


class Receiver(Instance):
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

    async def _refill(self, queue: deque) -> None:
        """Move everything pending in the mailbox into ``queue`` (waits while it is empty)."""
        items = await self.mailbox.get_batch()
        if items is None:
            raise ReactorError(f"{self.name}: mailbox closed before the final barrier")
        queue.extend(items)

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


class SourceInstance(Instance):
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


class SinkInstance(Receiver):
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
        writer = self.writer
        try:
            while True:
                if not queue:
                    await self._refill(queue)
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
