"""A bounded mailbox that carries batches: one await per batch, not per element.

Senders append elements (singly or as a batch) to the pending list; the single
receiver takes *everything* pending in one call. Capacity counts elements: a
sender that would overflow it waits (backpressure, all the way back to the
sources), except that a batch larger than the capacity is admitted into an
empty mailbox so it cannot wait forever.
"""
from __future__ import annotations

import time
from typing import Any, Iterable

from curio.sched import SchedFIFO
from curio.traps import _scheduler_wait, _scheduler_wake

from . import scheduler as _sched
from .errors import MailboxClosed


class Mailbox:
    """Bounded multi-producer, single-consumer queue of elements, drained in batches."""

    __slots__ = ("owner", "capacity", "_items", "_receiver", "_senders", "closed",
                 "high_water", "blocked_time", "blocked_count", "received", "scheduler")

    def __init__(self, capacity: int, owner: str = "?") -> None:
        if not isinstance(capacity, int) or isinstance(capacity, bool) or capacity < 1:
            raise ValueError(f"mailbox of {owner!r}: capacity must be an int >= 1, got {capacity!r}")
        self.owner = owner
        self.capacity = capacity
        self._items: list[Any] = []
        self._receiver = SchedFIFO()
        self._senders = SchedFIFO()
        self.closed = False
        self.high_water = 0
        self.blocked_time = 0.0         # seconds senders spent waiting for room
        self.blocked_count = 0
        self.received = 0
        #: The owning reactor's scheduler (set when the actor starts); else the thread's.
        self.scheduler: Any = None

    def __len__(self) -> int:
        return len(self._items)

    def _check_closed(self) -> None:
        if self.closed:
            raise MailboxClosed(f"mailbox of actor {self.owner!r} is closed (the actor stopped); "
                                f"check that it is running before sending")

    async def _wait_room(self, n: int) -> None:
        t0 = time.perf_counter()
        self.blocked_count += 1
        try:
            while self._items and len(self._items) + n > self.capacity:
                self._check_closed()
                await _scheduler_wait(self._senders, "MAILBOX_FULL")
            self._check_closed()
        finally:
            self.blocked_time += time.perf_counter() - t0

    async def put(self, item: Any) -> None:
        """Append one element; waits while the mailbox is full.

        Also the per-element hot path of actors: credits the sending actor and
        yields the core when the sender's slice is spent (a producer loop that
        never fills the mailbox must still share the core).
        """
        if len(self._items) >= self.capacity or self.closed:
            await self._wait_room(1)
        self._items.append(item)     # re-read: get_batch swaps the list while we wait
        if self._receiver._actual_len:
            await _scheduler_wake(self._receiver, 1)
        s = self.scheduler or _sched._current()
        if s is not None:
            actor = s.current_actor
            if actor is not None:
                actor.messages_out += 1
            cur = s._current
            if cur is not None and s._clock() - s._t0 >= cur._tq.slice:
                await s.yield_now()

    async def put_batch(self, batch: Iterable[Any]) -> None:
        """Append a batch of elements; waits until it fits (an empty mailbox admits any batch)."""
        if not isinstance(batch, list):
            batch = list(batch)
        if not batch:
            return
        items = self._items
        if (items and len(items) + len(batch) > self.capacity) or self.closed:
            await self._wait_room(len(batch))
            items = self._items
        items.extend(batch)
        if self._receiver._actual_len:
            await _scheduler_wake(self._receiver, 1)
        s = self.scheduler or _sched._current()
        if s is not None and s.current_actor is not None:
            s.current_actor.messages_out += len(batch)

    def try_put(self, item: Any) -> bool:
        """Append without waiting; False if full. The receiver is woken by the reactor."""
        self._check_closed()
        if len(self._items) >= self.capacity:
            return False
        self._items.append(item)
        s = self.scheduler or _sched._current()
        if s is not None:
            if self._receiver._actual_len:
                s.wake_sync(self._receiver)
            if s.current_actor is not None:
                s.current_actor.messages_out += 1
        return True

    async def get_batch(self) -> list[Any] | None:
        """Everything pending (waits if empty); None once closed and drained."""
        while not self._items:
            if self.closed:
                return None
            await _scheduler_wait(self._receiver, "MAILBOX_EMPTY")
        items = self._items
        self._items = []
        n = len(items)
        self.received += n
        if n > self.high_water:
            self.high_water = n
        if self._senders._actual_len:
            await _scheduler_wake(self._senders, self._senders._actual_len)
        return items

    async def close(self) -> None:
        """Refuse further sends; the receiver drains what is pending, then gets None."""
        if self.closed:
            return
        self.closed = True
        if self._receiver._actual_len:
            await _scheduler_wake(self._receiver, 1)
        if self._senders._actual_len:
            await _scheduler_wake(self._senders, self._senders._actual_len)
