"""The :class:`Reactor`: one curio kernel, one uring ring, task queues, timers, stats.

``reactor.run(main, *args, ...)`` builds a reactor, runs ``main(*args)`` in the
default task queue and returns its result. SIGINT/SIGTERM shut down cleanly:
``main`` is cancelled, actors are stopped (``on_stop`` runs), the ring drains
and closes, and ``run`` returns ``None`` with ``reactor.shutdown_reason`` set.
An actor failing under the ``escalate`` policy cancels ``main`` and ``run``
raises that :class:`~reactor.errors.ActorError`.
"""
from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
from typing import Any, Callable

from curio.kernel import Kernel

from uring import Ring, RingSelector
from uring.curio_compat import curio

from . import scheduler as _sched
from .actor import Actor, DeadLetter
from .errors import ActorError, ReactorError
from .scheduler import DEFAULT_SLICE, Scheduler, TaskQueue
from .timers import TimerService

log = logging.getLogger("reactor")

_local = threading.local()


def current_reactor() -> "Reactor":
    """The reactor running in this thread."""
    r = getattr(_local, "reactor", None)
    if r is None:
        raise ReactorError("no reactor is running in this thread: start one with reactor.run(main)")
    return r


class Reactor:
    """Owns the kernel, the ring, the task queues, the timer service and the stats.

    Create one through :func:`run`; inside ``main`` get it with
    :func:`current_reactor`.
    """

    def __init__(self, *, ring_entries: int = 256, io_backend: str | None = None,
                 slice: float = DEFAULT_SLICE, stall_threshold: float | None = None,
                 handle_signals: bool = True, stats_interval: float | None = None,
                 metrics_port: int | None = None) -> None:
        self.scheduler = Scheduler(slice=slice, stall_threshold=stall_threshold)
        self.system = self.scheduler.queue("reactor", shares=1000)
        self.ring_entries = ring_entries
        self.io_backend = io_backend
        self.ring: Ring | None = None
        self.timers = TimerService()
        self.actors: dict[str, Actor] = {}
        self.dead_letters: list[DeadLetter] = []
        #: Dataflow jobs run in this reactor (see reactor.job).
        self.jobs: list[Any] = []
        self.handle_signals = handle_signals
        self.stats_interval = stats_interval
        self.metrics_port = metrics_port
        self.shutdown_reason: str | None = None
        self.failure: BaseException | None = None
        self._main_task: Any = None
        self._signal_sock: tuple[socket.socket, socket.socket] | None = None
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup = -1
        self.metrics_server: Any = None
        #: (host, port) the metrics server is bound to, once it is (port 0 picks one).
        self.metrics_address: tuple[str, int] | None = None

    # -- queues, tasks, actors ---------------------------------------------------------
    def queue(self, name: str, shares: "float | Callable[[], float]" = 100,
              slice: float | None = None) -> TaskQueue:
        """Create a task queue with ``shares`` (a number or a callable re-read every 250 ms)."""
        return self.scheduler.queue(name, shares, slice or self.scheduler.default.slice)

    @property
    def queues(self) -> dict[str, TaskQueue]:
        return self.scheduler.queues

    async def spawn(self, corofunc: Callable[..., Any], *args: Any,
                    queue: TaskQueue | None = None, daemon: bool = False) -> Any:
        """Spawn a curio task in ``queue`` (default: the caller's queue)."""
        return await self.scheduler.spawn(corofunc, *args, queue=queue, daemon=daemon)

    async def start_actor(self, actor: Actor, *, queue: TaskQueue | None = None) -> Actor:
        """Start ``actor``'s task (in ``queue``, else the actor's, else the caller's)."""
        if not isinstance(actor, Actor):
            raise TypeError(f"start_actor needs an Actor instance, got {actor!r}")
        if actor.task is not None:
            raise ReactorError(f"actor {actor.name!r} was already started")
        if actor.name in self.actors and self.actors[actor.name].running:
            raise ReactorError(f"an actor named {actor.name!r} is already running; "
                               f"give each actor a unique name=")
        actor.reactor = self
        actor.mailbox.scheduler = self.scheduler
        q = queue or actor.queue
        actor.task = await self.scheduler.spawn(actor._run, queue=q, daemon=True)
        actor.task.actor = actor
        actor.task.actor_name = actor.name
        self.actors[actor.name] = actor
        return actor

    async def start_compaction(self, store: Any, **controller: Any) -> Any:
        """Run ``store``'s compaction in its own task queue under a backlog controller.

        Returns the :class:`statelets.compaction.Compactor`; its shares follow
        the store's dead-byte backlog and its I/O is charged to its queue.
        """
        from statelets.compaction import Compactor
        from .scheduler import QueueQuota
        compactor = Compactor(store, **controller)
        name = f"compaction:{os.path.basename(store.path)}"
        q = self.queues.get(name) or self.queue(name, shares=compactor.shares)
        compactor.task = await self.spawn(compactor.run, QueueQuota(q), queue=q, daemon=True)
        return compactor

    async def _actor_failed(self, actor: Actor, err: ActorError) -> None:
        log.error("%s", err)
        if self.failure is None:
            self.failure = err
            if self._main_task is not None and not self._main_task.terminated:
                await self._main_task.cancel(blocking=False)

    def request_shutdown(self, reason: str = "requested") -> None:
        """Ask the reactor to stop (as SIGTERM does)."""
        self.shutdown_reason = self.shutdown_reason or reason
        if self._signal_sock is not None:
            try:
                self._signal_sock[0].send(b"\0")
            except OSError:
                pass

    # -- running ---------------------------------------------------------------------------
    def run(self, main: Callable[..., Any], *args: Any) -> Any:
        """Run ``main(*args)`` to completion (or until a signal) and return its result."""
        if getattr(_local, "reactor", None) is not None:
            raise ReactorError("a reactor is already running in this thread")
        if not callable(main):
            raise TypeError(f"reactor.run needs an async function, got {main!r}")
        _local.reactor = self
        _sched._install(self.scheduler)
        # RingSelector: the reactor's ring submits, sleeps and wakes its tasks
        # from the kernel's own wait (uring/wait_selector.py).
        kernel = Kernel(selector=RingSelector(), activations=[self.scheduler])
        try:
            with kernel:
                result = kernel.run(self._bootstrap, main, args)
        finally:
            _sched._install(None)
            _local.reactor = None
        if self.failure is not None:
            raise self.failure
        return result

    async def _bootstrap(self, main: Callable[..., Any], args: tuple) -> Any:
        # Internal tasks (timers, dispatcher; the ring has none while it is the
        # kernel's wait) run in the high-share "reactor" queue; user code
        # starts in "default".
        s = self.scheduler
        me = await curio.current_task()
        me._tq.tasks -= 1
        me._tq = self.system
        self.system.tasks += 1
        self.timers._wake_sync = s.wake_sync
        internal = [await curio.spawn(self.timers.run, daemon=True),
                    await curio.spawn(s._dispatcher, daemon=True)]
        internal.append(await curio.spawn(self._signal_watch, daemon=True))
        async with Ring(self.ring_entries, backend=self.io_backend) as ring:
            self.ring = ring
            if self.metrics_port is not None:
                from .metrics import open_metrics_socket, serve_metrics
                # Bind now: a taken port fails run() before main starts, and
                # self.metrics_address holds the bound (host, port) from here on.
                msock = open_metrics_socket(self, self.metrics_port)
                self.metrics_server = await curio.spawn(
                    serve_metrics(self, self.metrics_port, sock=msock), daemon=True)
                internal.append(self.metrics_server)
            if self.stats_interval:
                from .live import live_view
                internal.append(await curio.spawn(live_view, self, self.stats_interval, daemon=True))
            result = None
            await curio.sleep(0)        # end the startup run (ring setup, arena)...
            s.detect_stalls = True      # ...so that it is not reported as a stall
            try:
                self._main_task = await s.spawn(_guarded_main, main, args, queue=s.default)
                try:
                    result = await self._main_task.join()
                    if isinstance(result, _MainFailed):
                        if self.failure is None:
                            raise result.error
                        result = None
                except curio.TaskError as e:
                    cause = e.__cause__
                    if self.failure is not None:
                        # An escalated actor failure is the root cause; what main
                        # saw (cancellation, a closed mailbox) is its consequence.
                        result = None
                    elif isinstance(cause, curio.TaskCancelled) and self.shutdown_reason:
                        result = None
                    elif cause is not None:
                        # Keep the cause's own chain (an OperatorError's user exception);
                        # hide the TaskError wrapper.
                        cause.__suppress_context__ = True
                        raise cause
                    else:
                        raise
            finally:
                await self._stop_actors()
                for t in internal:
                    await t.cancel()
                self._restore_signals()
        self.ring = None
        return result

    async def _stop_actors(self) -> None:
        for actor in list(self.actors.values()):
            if actor.running:
                try:
                    async with curio.timeout_after(10):
                        await actor.stop()
                except curio.TaskTimeout:
                    log.error("actor %r did not stop within 10 s; cancelling it", actor.name)
                    await actor.task.cancel()

    # -- signals -----------------------------------------------------------------------------
    async def _signal_watch(self) -> None:
        """SIGINT/SIGTERM or request_shutdown(): cancel main; the rest unwinds from there.

        Signal handlers are installed only with ``handle_signals`` and in the
        main thread; request_shutdown() works either way.
        """
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        self._signal_sock = (wsock, rsock)
        received: list[int] = []

        def handler(signum: int, frame: Any) -> None:
            received.append(signum)
        if self.handle_signals and threading.current_thread() is threading.main_thread():
            self._old_wakeup = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, handler)
        try:
            sock = curio.io.Socket(rsock)
            while True:
                await sock.recv(64)
                if received or self.shutdown_reason:
                    if received:
                        self.shutdown_reason = signal.Signals(received[-1]).name
                    log.info("reactor: shutting down (%s)", self.shutdown_reason)
                    if self._main_task is not None and not self._main_task.terminated:
                        await self._main_task.cancel(blocking=False)
                    received.clear()
        finally:
            self._restore_signals()

    def _restore_signals(self) -> None:
        if self._old_handlers:
            for sig, h in self._old_handlers.items():
                signal.signal(sig, h)
            self._old_handlers.clear()
            signal.set_wakeup_fd(self._old_wakeup)
        if self._signal_sock is not None:
            for s in self._signal_sock:
                s.close()
            self._signal_sock = None

    # -- stats --------------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """A JSON-able snapshot: queues, actors, timers, ring I/O, stalls."""
        return {
            "queues": self.scheduler.stats(),
            # Dataflow instances report in the shape of actors (live view, metrics).
            "actors": {**{name: a.stats() for name, a in self.actors.items()},
                       **{i.name: i.stats() for job in self.jobs for i in job.instances}},
            "checkpoints": [c for job in self.jobs for c in job.coordinator.history[-5:]],
            "timers": self.timers.stats(),
            "io": self.ring.stats() if self.ring is not None else None,
            "stalls": list(self.scheduler.stalls),
            "dead_letters": len(self.dead_letters),
        }


class _MainFailed:
    """What main raised, handed to run() as a result (curio would log a task crash)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


async def _guarded_main(main: Callable[..., Any], args: tuple) -> Any:
    try:
        return await main(*args)
    except (curio.CancelledError, SystemExit, KeyboardInterrupt):
        raise
    except Exception as exc:
        return _MainFailed(exc)


_REACTOR_OPTIONS = ("ring_entries", "io_backend", "slice", "stall_threshold", "handle_signals",
                    "stats_interval", "metrics_port")


def run(main: Any, *args: Any, **config: Any) -> Any:
    """Run ``main(*args)`` on a new :class:`Reactor` built with ``config``; returns its result.

    ``main`` may also be a :class:`~reactor.topology.Topology`: then the keyword
    arguments are those of :class:`~reactor.job.JobConfig` (``state_dir``,
    ``checkpoint_every``, ...) plus the reactor's (``stats_interval``,
    ``metrics_port``, ...), the job restores from ``state_dir`` by itself, and
    the result is a :class:`~reactor.job.JobResult` (None if stopped by a signal).
    """
    from .topology import Topology
    if isinstance(main, Topology):
        from .job import JobConfig, run_topology
        if args:
            raise TypeError("run(topology, ...) takes keyword arguments only")
        reactor_cfg = {k: config.pop(k) for k in list(config) if k in _REACTOR_OPTIONS}
        try:
            job_cfg = JobConfig(**config)
        except TypeError as exc:
            raise TypeError(f"run(topology, ...): {exc}; job options are "
                            f"{', '.join(f.name for f in JobConfig.__attrs_attrs__)}, reactor "
                            f"options {', '.join(_REACTOR_OPTIONS)}") from None
        main.validate()
        # Objects alive now (modules, the user's input data) will outlive the job:
        # frozen, full collections stop walking them again and again, which
        # otherwise stalls the core for milliseconds at a time.
        gc.freeze()
        try:
            return Reactor(**reactor_cfg).run(run_topology, main, job_cfg)
        finally:
            gc.unfreeze()
    return Reactor(**config).run(main, *args)
