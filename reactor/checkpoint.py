"""The checkpoint coordinator: triggers epochs, collects acknowledgements, commits.

An epoch commits in one atomic step: the store's checkpoint (statelets,
timers) with the source offsets, sink states and the topology's shape in its
metadata. Only then are sinks told to publish the epoch's output and are
operators released to change state again. A failure anywhere before the
commit leaves the previous checkpoint as the one a restore finds.
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any

from uring.curio_compat import curio

from .errors import CheckpointError

log = logging.getLogger("reactor.checkpoint")

#: Metadata format of job checkpoints (in the store's MANIFEST).
METADATA_VERSION = 1


class Coordinator:
    """Runs the epochs of one :class:`~reactor.job.Job`."""

    def __init__(self, job: Any, committed: int | None) -> None:
        self.job = job
        self.committed = committed
        self.epoch = committed if committed is not None else 0   # last epoch started
        self.in_flight: int | None = None
        self.final_requested = False
        self.acks: dict[str, Any] = {}
        self.expected = 0
        self.sources_done: set[str] = set()
        self.elements = 0
        self.history: list[dict[str, Any]] = []
        self._committed_event = curio.Event()
        self._all_acked = curio.Event()
        self._started = curio.Event()       # set when an epoch starts
        self._t0 = 0.0
        self._pending_final = False

    @property
    def every_elements(self) -> int | None:
        return self.job.config.checkpoint_every_elements

    def count(self, n: int) -> bool:
        """Count source elements; True when an element-driven checkpoint is due."""
        self.elements += n
        every = self.every_elements
        return every is not None and self.elements >= every and self.in_flight is None

    async def trigger(self, final: bool = False) -> None:
        """Start the next epoch (unless one is in flight; a final one then follows it)."""
        if self.final_requested:
            return
        if self.in_flight is not None:
            if final:
                self._pending_final = True
            return
        self.elements = 0
        self.epoch += 1
        epoch = self.epoch
        self.in_flight = epoch
        self.final_requested = final
        self.expected = len(self.job.instances)
        self.acks = {}
        self._all_acked.clear()
        self._t0 = time.perf_counter()
        await self._started.set()
        for src in self.job.sources:
            await src.request(epoch, final)

    async def source_done(self, src: Any) -> None:
        self.sources_done.add(src.name)
        if len(self.sources_done) == len(self.job.sources):
            await self.trigger(final=True)

    async def ack(self, inst: Any, epoch: int, state: Any) -> None:
        if epoch != self.in_flight:
            raise CheckpointError(f"{inst.name} acknowledged epoch {epoch} but epoch "
                                  f"{self.in_flight} is in flight")
        self.acks[inst.name] = state
        if len(self.acks) == self.expected:
            await self._all_acked.set()

    async def wait_committed(self, epoch: int) -> None:
        while self.committed is None or self.committed < epoch:
            await self._committed_event.wait()

    async def _commit(self) -> None:
        job = self.job
        epoch = self.in_flight
        assert epoch is not None
        t_aligned = time.perf_counter()
        sources = {s.name: self.acks[s.name] for s in job.sources}
        # -inf (no watermark yet) has no JSON form: such sources are left out.
        wms = {s.name: s.barrier_wm.pop(epoch, -math.inf) for s in job.sources}
        watermarks = {k: v for k, v in wms.items() if v > -math.inf}
        sinks = {s.name: self.acks[s.name] for s in job.sinks}
        metadata = {"version": METADATA_VERSION, "job": job.topology.name,
                    "topology": job.plan.fingerprint(), "sources": sources, "sinks": sinks,
                    "watermarks": watermarks,
                    "committed_at": time.time()}
        try:
            for inst in job.instances:      # state changes the operators took at the barrier
                write = getattr(inst, "write_captured", None)
                if write is not None:
                    await write(job.store)
            manifest = await job.store.checkpoint(epoch, metadata)
        except Exception as exc:
            raise CheckpointError(
                f"checkpoint of epoch {epoch} failed: {type(exc).__name__}: {exc}; the last "
                f"committed epoch ({self.committed}) is intact — fix the cause and run again "
                f"to resume from it") from exc
        self.committed = epoch
        for s in job.sinks:
            await s.writer.commit(epoch, sinks[s.name])
        t1 = time.perf_counter()
        self.history.append({"epoch": epoch, "final": self.final_requested,
                             "align_s": round(t_aligned - self._t0, 6),
                             "commit_s": round(t1 - t_aligned, 6),
                             "new_bytes": manifest.bytes_linked})
        self.in_flight = None
        # Wake everyone waiting for this commit, then re-arm for the next one.
        ev = self._committed_event
        await ev.set()
        self._committed_event = curio.Event()

    async def run(self) -> None:
        """The coordinator's task: time-driven triggers and commits."""
        every = self.job.config.checkpoint_every
        next_at = time.monotonic() + every if every else None
        while True:
            timeout = None if next_at is None else max(0.0, next_at - time.monotonic())
            if self.in_flight is not None:
                await self._all_acked.wait()
                final = self.final_requested
                await self._commit()
                if final:
                    return
                if self._pending_final:
                    self._pending_final = False
                    await self.trigger(final=True)
                continue
            self._started.clear()
            if timeout is None:
                await self._started.wait()      # an element- or end-driven trigger
                continue
            async with curio.ignore_after(timeout):
                await self._started.wait()
            if self.in_flight is None and time.monotonic() >= next_at:
                await self.trigger()
            if next_at is not None and time.monotonic() >= next_at:
                next_at = time.monotonic() + every
