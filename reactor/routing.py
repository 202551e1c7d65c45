"""Edges as a sending instance sees them: fused stateless steps, partitioning, targets.

Stateless steps (map, filter, flat_map, key_by, broadcast) run here, on the
sending side of an edge, as Flink chains operators: an element crosses a
mailbox only on its way into an operator or sink. Keys are computed once, by
the sender, and travel with the batch.
"""
from __future__ import annotations

from itertools import compress
from typing import TYPE_CHECKING, Any

from .errors import OperatorError
from .events import DataBatch
from .partition import Partitioner
from .topology import Edge

if TYPE_CHECKING:
    from .instances import Instance, Receiver

__all__ = ["Target", "Output"]

class Target:
    __slots__ = ("inst", "channel")

    def __init__(self, inst: "Receiver", channel: int) -> None:
        self.inst = inst
        self.channel = channel


class Output:
    """One edge as seen by one sending instance: fused steps, partitioning, targets."""

    __slots__ = ("edge", "steps", "targets", "mode", "part", "rr", "sender", "key_fn")

    def __init__(self, edge: Edge, sender: "Instance", targets: list[Target]) -> None:
        self.edge = edge
        self.sender = sender
        self.steps = edge.steps
        self.targets = targets
        n = len(targets)
        if edge.keyed:
            self.mode = "key"
            step = [name for kind, _, name in edge.steps if kind == "key_by"][-1]
            self.part = Partitioner(n, f"key_by step {step!r} (before {edge.dst!r})")
        elif edge.broadcast:
            self.mode = "broadcast"
            self.part = None
        elif n == sender.parallelism:
            self.mode = "forward"
            self.part = None
        else:
            self.mode = "rebalance"
            self.part = None
        self.rr = sender.index % n

    def _apply(self, values: list[Any], times: list[Any] | None
               ) -> tuple[list[Any], list[Any] | None, list[Any] | None]:
        keys = None
        for kind, fn, step in self.steps:
            try:
                if kind == "map":
                    values = [fn(v) for v in values]
                    keys = None
                elif kind == "filter":
                    if times is None and keys is None:
                        values = [v for v in values if fn(v)]
                    else:
                        keep = list(map(fn, values))
                        values = list(compress(values, keep))
                        if times is not None:
                            times = list(compress(times, keep))
                        if keys is not None:
                            keys = list(compress(keys, keep))
                elif kind == "flat_map":
                    if times is None:
                        values = [x for v in values for x in fn(v)]
                    else:
                        out_v, out_t = [], []
                        for v, t in zip(values, times):
                            xs = list(fn(v))
                            out_v.extend(xs)
                            out_t.extend([t] * len(xs))
                        values, times = out_v, out_t
                    keys = None
                elif kind == "key_by":
                    keys = [fn(v) for v in values]
                else:  # broadcast: routing only
                    keys = None
            except Exception as exc:
                self._blame(kind, fn, step, values, exc)
        return values, keys, times

    def _blame(self, kind: str, fn: Any, step: str, values: list[Any], exc: Exception) -> None:
        for v in values:            # find the element that fails, to name it
            try:
                r = fn(v)
                if kind == "flat_map":
                    list(r)
            except Exception as e:
                raise OperatorError(f"{step} (fused into {self.sender.name})", v, e) from e
        raise OperatorError(f"{step} (fused into {self.sender.name})", None, exc) from exc

    async def send(self, values: list[Any], times: list[Any] | None) -> None:
        values, keys, times = self._apply(values, times)
        if not values:
            return
        targets = self.targets
        if self.mode == "forward":
            t = targets[self.sender.index]
            await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))
        elif self.mode == "key":
            n = len(targets)
            if n == 1:
                t = targets[0]
                await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))
                return
            part = self.part
            buckets: list[list[int]] = [[] for _ in range(n)]
            try:
                for i, k in enumerate(keys):  # type: ignore[arg-type]
                    buckets[part(k)].append(i)
            except Exception as exc:
                raise OperatorError(f"{self.part.what} (fused into {self.sender.name})",
                                    values[i], exc) from exc
            for t, idx in zip(targets, buckets):
                if idx:
                    await t.inst.mailbox.put(DataBatch(
                        t.channel, [values[i] for i in idx], [keys[i] for i in idx],  # type: ignore[index]
                        [times[i] for i in idx] if times is not None else None))
        elif self.mode == "broadcast":
            for i, t in enumerate(targets):     # own lists: a handler may keep or change them
                await t.inst.mailbox.put(DataBatch(
                    t.channel, values if i == 0 else list(values), None,
                    times if i == 0 or times is None else list(times)))
        else:
            t = targets[self.rr]
            self.rr = (self.rr + 1) % len(targets)
            await t.inst.mailbox.put(DataBatch(t.channel, values, keys, times))

    async def broadcast(self, make: Any) -> None:
        """Send a control event (built per target channel) to every target."""
        for t in self.targets:
            await t.inst.mailbox.put(make(t.channel))
