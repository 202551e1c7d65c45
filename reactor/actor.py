"""Actors: one curio task each, a bounded batched mailbox, supervision.

Subclass :class:`Actor` and implement ``on_message`` (plain function or
coroutine) or ``on_batch`` for whole batches. Start it with
``await reactor.start_actor(actor, queue=...)`` (or ``await actor.start()``
inside a running reactor), send with ``send``/``send_batch``/``try_send``,
stop with ``await actor.stop()``.

Supervision decides what an exception in a handler does:

- ``"escalate"`` (default): the actor stops and the reactor's run fails with an
  :class:`~reactor.errors.ActorError` naming the actor and the message;
- ``"restart"``: ``on_stop`` then ``on_start`` run again and the actor goes on
  with the next message (up to ``max_restarts`` times, then it escalates);
- ``"skip"``: the message and its error go to the reactor's dead letters and the
  actor goes on.
"""
from __future__ import annotations

import inspect
import logging
import time
from typing import Any, Awaitable, Iterable

import attrs

from .errors import ActorError, MailboxClosed, ReactorError
from .mailbox import Mailbox
from uring.curio_compat import curio

from .scheduler import TaskQueue, maybe_yield

log = logging.getLogger("reactor.actor")

POLICIES = ("escalate", "restart", "skip")


@attrs.frozen
class DeadLetter:
    """A message an actor with the ``skip`` policy failed to handle."""

    actor: str
    message: Any
    error: BaseException


class Actor:
    """Base class of actors. Override ``on_message`` or ``on_batch``.

    Args:
        name: unique name in the reactor (default: class name + number).
        capacity: mailbox capacity in elements (default ``mailbox_capacity``).
        queue: task queue the actor runs in (default: the starting task's queue).
        policy: ``"escalate"``, ``"restart"`` or ``"skip"``.
        max_restarts: restarts allowed under ``"restart"`` before escalating.
    """

    mailbox_capacity: int = 1024
    _counter = 0

    def __init__(self, *, name: str | None = None, capacity: int | None = None,
                 queue: TaskQueue | None = None, policy: str = "escalate",
                 max_restarts: int = 3) -> None:
        if policy not in POLICIES:
            raise ValueError(f"unknown supervision policy {policy!r}: expected one of "
                             f"{', '.join(POLICIES)}")
        Actor._counter += 1
        self.name = name if name is not None else f"{type(self).__name__}-{Actor._counter}"
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"actor name must be a non-empty str, got {self.name!r}")
        self.mailbox = Mailbox(capacity if capacity is not None else self.mailbox_capacity,
                               self.name)
        self.queue = queue
        self.policy = policy
        self.max_restarts = max_restarts
        self.restarts = 0
        self.reactor: Any = None
        self.task: Any = None
        self.children: list[Actor] = []
        self.error: ActorError | None = None
        # stats
        self.messages_in = 0
        self.messages_out = 0
        self.handler_time = 0.0
        self.batches = 0
        self.failures = 0
        self._msg_is_coro = inspect.iscoroutinefunction(type(self).on_message)
        self._custom_batch = type(self).on_batch is not Actor.on_batch

    # -- to override --------------------------------------------------------------
    async def on_start(self) -> None:
        """Called once before the first message (and again after a restart)."""

    async def on_stop(self) -> None:
        """Called when the actor stops (mailbox closed and drained, or stopped)."""

    def on_message(self, message: Any) -> Any:
        """Handle one message; may be a plain function or a coroutine."""
        raise NotImplementedError(f"actor {self.name!r} ({type(self).__name__}) must override "
                                  f"on_message or on_batch")

    async def on_batch(self, batch: list[Any]) -> None:
        """Handle a batch; the default calls ``on_message`` per element, yielding when due."""
        if self._msg_is_coro:
            for m in batch:
                await self.on_message(m)
                await maybe_yield()
        else:
            handle = self.on_message
            for m in batch:
                handle(m)
                await maybe_yield()

    # -- sending ------------------------------------------------------------------
    def send(self, message: Any) -> Awaitable[None]:
        """Deliver one message; waits while the mailbox is full (backpressure).

        A plain function returning the mailbox's coroutine: one coroutine frame
        per message on the per-element path.
        """
        return self.mailbox.put(message)

    def send_batch(self, messages: Iterable[Any]) -> Awaitable[None]:
        """Deliver a batch of messages with one wake-up of the receiver."""
        return self.mailbox.put_batch(messages)

    def try_send(self, message: Any) -> bool:
        """Deliver without waiting; False if the mailbox is full."""
        return self.mailbox.try_put(message)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self, *, queue: TaskQueue | None = None) -> "Actor":
        """Start the actor's task in the running reactor."""
        from .runtime import current_reactor
        return await current_reactor().start_actor(self, queue=queue or self.queue)

    async def spawn_child(self, child: "Actor", *, queue: TaskQueue | None = None) -> "Actor":
        """Start ``child`` (in ``queue``, default this actor's); stopped with this actor."""
        self.children.append(child)
        return await self.reactor.start_actor(child, queue=queue or child.queue or self.queue)

    async def stop(self) -> None:
        """Close the mailbox and wait until the actor has drained it and stopped.

        Called from the actor's own handler it only closes the mailbox: the
        actor stops after the current batch and what is still pending.
        """
        await self.mailbox.close()
        if self.task is not None and self.task is not await curio.current_task():
            await self.task.wait()

    async def join(self) -> None:
        """Wait for the actor to stop; raises its ``ActorError`` if it failed."""
        if self.task is not None:
            await self.task.wait()
        if self.error is not None:
            raise self.error

    @property
    def running(self) -> bool:
        return self.task is not None and not self.task.terminated

    # -- the actor's task ------------------------------------------------------------
    async def _run(self) -> None:
        try:
            await self._call_phase(self.on_start, "starting")
            mailbox = self.mailbox
            clock = time.perf_counter
            while True:
                batch = await mailbox.get_batch()
                if batch is None:
                    break
                self.messages_in += len(batch)
                self.batches += 1
                t0 = clock()
                try:
                    if self._custom_batch:
                        try:
                            await self.on_batch(batch)
                        except Exception as exc:
                            await self._supervise(batch, exc)
                    else:
                        await self._handle_each(batch)
                finally:
                    self.handler_time += clock() - t0
                await maybe_yield()
        except ActorError as e:
            self.error = e
            await self._shutdown_children()
            await self.mailbox.close()
            await self.reactor._actor_failed(self, e)
            if e.phase != "stopping":
                # Release what on_start acquired (files, ...); a failure here is
                # logged, the original error stays the one reported.
                try:
                    res = self.on_stop()
                    if inspect.isawaitable(res):
                        await res
                except Exception:
                    log.exception("actor %r: on_stop after failure raised", self.name)
            return
        await self._shutdown_children()
        await self._call_phase(self.on_stop, "stopping", final=True)

    async def _handle_each(self, batch: list[Any]) -> None:
        """Default batch loop with per-message supervision."""
        coro = self._msg_is_coro
        handle = self.on_message
        s = self.reactor.scheduler
        clock = s._clock
        for m in batch:
            try:
                if coro:
                    await handle(m)
                else:
                    handle(m)
            except Exception as exc:
                await self._supervise(m, exc)
            # maybe_yield(), inlined: this loop runs once per element.
            if clock() - s._t0 >= s._current._tq.slice:
                await s.yield_now()

    async def _supervise(self, message: Any, exc: Exception) -> None:
        self.failures += 1
        err = ActorError(self.name, message, exc)
        if self.policy == "skip":
            self.reactor.dead_letters.append(DeadLetter(self.name, message, exc))
            log.warning("%s (message sent to dead letters)", err)
            return
        if self.policy == "restart" and self.restarts < self.max_restarts:
            self.restarts += 1
            log.warning("%s; restarting (%d/%d)", err, self.restarts, self.max_restarts)
            await self._call_phase(self.on_stop, "stopping for restart")
            await self._call_phase(self.on_start, "restarting")
            return
        raise err

    async def _call_phase(self, fn: Any, phase: str, final: bool = False) -> None:
        try:
            res = fn()
            if inspect.isawaitable(res):
                await res
        except ActorError:
            raise
        except Exception as exc:
            err = ActorError(self.name, None, exc, phase=phase)
            if final:
                self.error = err
                await self.reactor._actor_failed(self, err)
            else:
                raise err from exc

    async def _shutdown_children(self) -> None:
        for child in self.children:
            if child.running:
                await child.stop()

    def stats(self) -> dict[str, Any]:
        mb = self.mailbox
        return {
            "queue": self.task._tq.name if self.task is not None else None,
            "messages_in": self.messages_in, "messages_out": self.messages_out,
            "batches": self.batches, "handler_time_s": round(self.handler_time, 6),
            "mailbox_depth": len(mb), "mailbox_high_water": mb.high_water,
            "mailbox_capacity": mb.capacity, "blocked_s": round(mb.blocked_time, 6),
            "failures": self.failures, "restarts": self.restarts,
            "running": self.running,
        }

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


__all__ = ["Actor", "DeadLetter", "POLICIES", "ReactorError", "MailboxClosed"]
