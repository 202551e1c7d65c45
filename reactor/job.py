"""Running a topology: operator instances, edges, watermarks, barriers and restore.

A :class:`Job` builds one instance per parallel copy of each source, operator
and sink (:mod:`reactor.instances`, :mod:`reactor.operator_instance`), wires
them with :class:`~reactor.routing.Output` edges, and runs them as tasks with
the checkpoint :class:`~reactor.checkpoint.Coordinator`.

Checkpoints (Chandy–Lamport with aligned barriers): the
:class:`~reactor.checkpoint.Coordinator` asks every source to inject a barrier
for epoch *n* (recording the source's offset). An instance that has seen the
barrier on one input channel holds that channel's later events back until the
barrier arrived on all of them; then it writes its state (statelets, timers)
for the coordinator, forwards the barrier, acknowledges and goes on, its own
store writes held until the commit — so the store's checkpoint for *n* holds
exactly the effects of the elements before the barrier. Sinks prepare their
output at the barrier and make it visible at the commit.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from typing import Any

import attrs

from statelets import Store, StoreConfig
from uring.curio_compat import curio

from . import scheduler as _sched
from .checkpoint import Coordinator
from .errors import CheckpointError, TopologyError
from .instances import Instance, SinkInstance, SourceInstance
from .operator_instance import OperatorInstance, RestartJob
from .routing import Output, Target
from .topology import Plan, Topology

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
        self.instances: list[Instance] = []
        self.sources: list[SourceInstance] = []
        self.sinks: list[SinkInstance] = []
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
        by_node: dict[str, list[Instance]] = {}
        for node in self.plan.nodes:
            maxp = getattr(node.fn, "max_parallelism", None)
            if node.kind in ("source", "sink") and maxp is not None and node.parallelism > maxp:
                raise TopologyError(f"{node.kind} {node.name!r}: {type(node.fn).__name__} supports "
                                    f"parallelism up to {maxp}, got {node.parallelism}")
            insts: list[Instance] = []
            for i in range(node.parallelism):
                key = f"{node.name}/{i}"
                if node.kind == "source":
                    inst: Instance = SourceInstance(self, node, i, offsets.get(key),
                                                      watermarks.get(key))
                    self.sources.append(inst)  # type: ignore[arg-type]
                elif node.kind == "sink":
                    inst = SinkInstance(self, node, i, sink_states.get(key))
                    self.sinks.append(inst)  # type: ignore[arg-type]
                else:
                    inst = OperatorInstance(self, node, i)
                insts.append(inst)
            by_node[node.name] = insts
            self.instances.extend(insts)
            if node.kind == "sink" and hasattr(node.fn, "cleanup"):
                node.fn.cleanup([sink_states.get(f"{node.name}/{i}")
                                 for i in range(node.parallelism)], self.restored_from)
        for e in self.plan.edges:
            for sender in by_node[e.src]:
                targets = [Target(r, r.add_channel(e.port))  # type: ignore[attr-defined]
                           for r in by_node[e.dst]]
                sender.outputs.setdefault(e.output, []).append(Output(e, sender, targets))
                if e.output is not None:
                    sender.side_outputs.add(e.output)

    async def run(self) -> None:
        """Run every instance until the final checkpoint commits (or one fails)."""
        failures: list[BaseException] = []
        done = curio.Event()
        remaining = len(self.instances)

        async def supervised(inst: Instance) -> None:
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
            except RestartJob as r:
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
