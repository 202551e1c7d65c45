"""The heap tier: decoded values of hot keys kept in memory, written back at flush.

A :class:`HeapTier` on a :class:`~statelets.types.StateletContext` makes the
single-value statelets (``Value``, ``Reducer``, ``Aggregator``) of that owner
read and write Python objects in a dict per statelet instead of encoding
every access into the store, as Flink's heap state backend does. ``flush()``
writes the changed entries to the store (the runtime calls it before each
checkpoint, so a checkpoint holds everything); past ``max_entries`` per
statelet the tier writes back and forgets the entries it holds.

Values of immutable types are held as objects; anything else is held
encoded (so a caller mutating a value it read cannot change the state
behind the statelet's back, and an unpicklable value still fails at
``set()``). Map and Appender statelets go to the store directly.
"""
from __future__ import annotations

from typing import Any

__all__ = ["HeapTier"]


class HeapTier:
    """Registry of the heap-tiered statelets of one owner."""

    def __init__(self, max_entries: int = 1 << 18) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError(f"HeapTier: max_entries must be an int >= 1, got {max_entries!r}")
        self.max_entries = max_entries
        self.members: list[Any] = []
        self.flushes = 0
        self.spills = 0

    def register(self, bound: Any) -> None:
        self.members.append(bound)

    @property
    def dirty(self) -> int:
        """Entries changed since the last flush."""
        return sum(len(b._dirty) for b in self.members)

    @property
    def entries(self) -> int:
        return sum(len(b._heap) for b in self.members)

    def capture(self) -> list[tuple[Any, list[tuple[Any, Any]]]]:
        """Take every changed entry (values frozen) and mark it clean; write the result
        later with :meth:`write`. Lets an owner go on while its checkpoint is written."""
        return [(b, b._capture()) for b in self.members if b._dirty]

    @staticmethod
    async def write(captured: list[tuple[Any, list[tuple[Any, Any]]]], store: Any) -> None:
        """Write what :meth:`capture` took to ``store``."""
        for bound, items in captured:
            await bound._write_items(items, store)

    async def flush(self) -> None:
        """Write every changed entry to the store."""
        self.flushes += 1
        for b in self.members:
            if b._dirty:
                await b._write_back()
