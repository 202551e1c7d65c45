"""The store as one operator instance sees it: writes wait for the epoch it acknowledged.

After an instance acknowledges epoch *n* it goes on processing, but nothing it
writes may reach the store before the coordinator has committed *n* —
otherwise the checkpoint of *n* would hold effects of elements after *n*'s
barrier. Heap-tiered statelets keep such changes in memory anyway; direct
writes (Map, Appender, timers, a tier spilling over budget) pass through
this gate and wait for the commit. Reads are never held up.
"""
from __future__ import annotations

import time
from typing import Any


class GatedStore:
    """Forwards to ``store``; ``put``/``delete``/``merge`` wait while the gate is closed."""

    def __init__(self, store: Any, coordinator: Any) -> None:
        self._store = store
        self._coordinator = coordinator
        #: The epoch acknowledged and not yet known to be committed (None: open).
        self.epoch: int | None = None
        #: Seconds writes spent waiting for commits.
        self.waited = 0.0
        # Reads go straight to the store (bound once: no __getattr__ per call).
        self.get = store.get
        self.get_many = store.get_many

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def _wait(self) -> None:
        coord = self._coordinator
        epoch = self.epoch
        if coord.committed is None or coord.committed < epoch:  # type: ignore[operator]
            t0 = time.perf_counter()
            await coord.wait_committed(epoch)
            self.waited += time.perf_counter() - t0
        self.epoch = None

    async def put(self, key: bytes, value: bytes) -> None:
        if self.epoch is not None:
            await self._wait()
        await self._store.put(key, value)

    async def delete(self, key: bytes) -> None:
        if self.epoch is not None:
            await self._wait()
        await self._store.delete(key)

    async def merge(self, key: bytes, operand: bytes) -> None:
        if self.epoch is not None:
            await self._wait()
        await self._store.merge(key, operand)
