"""Per-key timers of one operator instance, kept as state in the job's store.

At most one timer per (domain, key, time). Registrations and deletions change
an in-memory heap at once and are written to the store before the instance
next yields the core (and always before it acknowledges a checkpoint), so the
committed state holds exactly the timers of its epoch. On start, an instance
loads the timers of the keys it owns (by the same partitioning as its input),
so they survive restores and parallelism changes.
"""
from __future__ import annotations

import heapq
import math
from typing import Any

from statelets.codecs import decode_key, encode_key
from statelets.types import store_prefix

from .partition import partition_of

_DOMAINS = {"event": 0, "processing": 1}
_NAMES = ("event", "processing")


def timers_prefix(operator: str) -> bytes:
    """Store prefix of the timers of operator ``operator`` (all instances)."""
    return store_prefix("\x00timers", operator)


class KeyedTimers:
    """Event-time and processing-time timers of one instance."""

    def __init__(self, operator: str, instance: str) -> None:
        self.operator = operator
        self.instance = instance
        self.prefix = timers_prefix(operator)
        self._heaps: tuple[list, list] = ([], [])
        self._live: tuple[set, set] = (set(), set())
        self._seq = 0
        self._ops: list[tuple[bytes, bool]] = []       # (store key, put?) not yet written
        #: Called with the earliest processing-time due time when it moves earlier.
        self.on_processing_head: Any = None

    def __len__(self) -> int:
        return len(self._live[0]) + len(self._live[1])

    def _skey(self, d: int, key: Any, t: float) -> bytes:
        return self.prefix + encode_key((d, t, key), f"timer of operator {self.operator!r}")

    def register(self, domain: str, key: Any, t: Any) -> None:
        d = _DOMAINS[domain]
        if not isinstance(t, (int, float)) or isinstance(t, bool) or math.isnan(t):
            raise TypeError(f"operator {self.instance!r}: a {domain}-time timer needs a number "
                            f"(seconds or event-time units), got {t!r}")
        live = self._live[d]
        if (key, t) in live:
            return
        live.add((key, t))
        self._seq += 1
        heap = self._heaps[d]
        head = heap[0][0] if heap else None
        heapq.heappush(heap, (t, self._seq, key))
        self._ops.append((self._skey(d, key, t), True))
        if d == 1 and self.on_processing_head is not None and (head is None or t < head):
            self.on_processing_head(t)

    def delete(self, domain: str, key: Any, t: Any) -> None:
        d = _DOMAINS[domain]
        live = self._live[d]
        if (key, t) in live:
            live.discard((key, t))      # the heap entry is skipped when it surfaces
            self._ops.append((self._skey(d, key, t), False))

    def pop_due(self, domain: str, limit: float) -> list[tuple[float, Any]]:
        """Remove and return the (time, key) timers of ``domain`` with time <= ``limit``."""
        d = _DOMAINS[domain]
        heap, live = self._heaps[d], self._live[d]
        out = []
        while heap and heap[0][0] <= limit:
            t, _, key = heapq.heappop(heap)
            if (key, t) in live:
                live.discard((key, t))
                self._ops.append((self._skey(d, key, t), False))
                out.append((t, key))
        return out

    def next_processing(self) -> float | None:
        heap, live = self._heaps[1], self._live[1]
        while heap and (heap[0][2], heap[0][0]) not in live:
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    @property
    def dirty(self) -> bool:
        return bool(self._ops)

    def take_ops(self) -> list[tuple[bytes, bool]]:
        """Take the pending registrations/deletions (to write later with write_ops)."""
        ops, self._ops = self._ops, []
        return ops

    async def persist(self, store: Any) -> None:
        """Write pending registrations/deletions to the store."""
        await self.write_ops(self.take_ops(), store)

    @staticmethod
    async def write_ops(ops: list[tuple[bytes, bool]], store: Any) -> None:
        for k, put in ops:
            if put:
                await store.put(k, b"")
            else:
                await store.delete(k)

    async def load(self, store: Any, index: int, parallelism: int) -> int:
        """Load this instance's timers from the store; returns how many."""
        n = len(self.prefix)
        count = 0
        async for k, _ in store.scan(self.prefix):
            d, t, key = decode_key(k[n:])
            if partition_of(key, parallelism) != index:
                continue
            if (key, t) not in self._live[d]:
                self._live[d].add((key, t))
                self._seq += 1
                heapq.heappush(self._heaps[d], (t, self._seq, key))
                count += 1
        return count
