"""Compaction as an actor body, with a backlog controller for its shares.

The runtime runs :meth:`Compactor.run` in its own task queue whose shares are
:meth:`Compactor.shares` (re-read every 250 ms), as ScyllaDB's backlog
controller does: no backlog, few shares; a growing dead-byte backlog, more. An
idle core lets it run flat out whatever its shares; busy operators keep it to
its share. ``statelets`` never imports the runtime: it receives a
:class:`Quota` (pause between units of work, charge I/O bytes).
"""
from __future__ import annotations

import logging
from typing import Any, Protocol

from uring.curio_compat import curio

from .store import Store

log = logging.getLogger("statelets.compaction")


class Quota(Protocol):
    """What the runtime hands compaction: a cooperative pause and an I/O meter."""

    async def pause(self) -> None:
        """Yield the core if this task's slice is spent."""

    def charge_io(self, nbytes: int) -> None:
        """Charge ``nbytes`` of I/O to this task's queue."""


class Compactor:
    """Runs compaction passes while the store has work; sleeps otherwise.

    Args:
        store: the store to compact.
        min_shares, max_shares: the controller's range.
        full_backlog: backlog (dead ÷ sealed bytes) at which shares reach the max.
        idle_interval: how often to look for work when there is none (seconds).
        segments_per_pass: segments rewritten per pass (bounds one pass's memory).
    """

    def __init__(self, store: Store, *, min_shares: float = 10, max_shares: float = 500,
                 full_backlog: float = 0.5, idle_interval: float = 0.25,
                 segments_per_pass: int = 4) -> None:
        if not 0 < min_shares <= max_shares:
            raise ValueError(f"need 0 < min_shares <= max_shares, got {min_shares}, {max_shares}")
        self.store = store
        self.min_shares = min_shares
        self.max_shares = max_shares
        self.full_backlog = full_backlog
        self.idle_interval = idle_interval
        self.segments_per_pass = segments_per_pass
        self.passes = 0
        self.errors = 0

    def shares(self) -> float:
        """Backlog controller: shares grow linearly with the dead-byte backlog."""
        backlog = self.store.compaction_backlog()
        frac = min(1.0, backlog / self.full_backlog) if self.full_backlog > 0 else 1.0
        return self.min_shares + (self.max_shares - self.min_shares) * frac

    async def run(self, quota: Quota | None = None) -> None:
        """The actor body: compact while there are candidates, until cancelled."""
        pause = quota.pause if quota is not None else None
        charge = quota.charge_io if quota is not None else None
        while True:
            store = self.store
            if store._closed or store._failed is not None:
                return
            if store.compaction_candidates():
                result = await store.compact(self.segments_per_pass, pause=pause, charge_io=charge)
                self.passes += 1
                log.debug("compaction pass: %s", result)
                if pause is not None:
                    await pause()
            else:
                await curio.sleep(self.idle_interval)

    def stats(self) -> dict[str, Any]:
        return {"passes": self.passes, "shares": round(self.shares(), 2),
                "backlog": round(self.store.compaction_backlog(), 4)}
