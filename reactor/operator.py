"""Operators: what users subclass, and the :class:`Context` their hooks receive.

::

    class Count(Operator):
        total = Value(int, default=0)            # keyed: scoped to ctx.key

        async def on_element(self, word, ctx):
            n = await self.total.get() + 1
            await self.total.set(n)
            ctx.emit((word, n))

Every hook may be a plain function or a coroutine function; plain ones are
called without creating a coroutine. Statelets declared as class attributes
are bound per instance to the job's store, namespaced by the operator's name
and scoped to the current key (``ctx.key``).

Timers (per key, at most one per (key, time), stored as state so they survive
a restore): ``ctx.register_event_timer(t)`` fires ``on_timer(t, ctx)`` once
the watermark passes ``t``; ``ctx.register_processing_timer(t)`` once the wall
clock (``time.time()``) reaches ``t`` — also after a restore, if it came due
while the job was down.
"""
from __future__ import annotations

import time
from typing import Any

__all__ = ["Operator", "Context", "Batch"]

_SAME = object()


class Batch:
    """The elements an ``on_batch`` hook receives: parallel lists of values, keys, times.

    ``keys`` is None on unkeyed inputs, ``times`` when the stream has no event
    time. To use statelets for an element, set ``ctx.key`` to its key first.
    """

    __slots__ = ("values", "keys", "times", "input")

    def __init__(self, values: list[Any], keys: list[Any] | None, times: list[Any] | None,
                 input: int) -> None:
        self.values, self.keys, self.times, self.input = values, keys, times, input

    def __len__(self) -> int:
        return len(self.values)

    def __iter__(self) -> Any:
        return iter(self.values)

    def __repr__(self) -> str:
        return f"<Batch input={self.input} n={len(self.values)}>"


class Operator:
    """Base class of user operators; override ``on_element`` (or ``on_batch``).

    Attributes set by the runtime before ``on_start``: ``name`` (the operator's
    step name), ``index`` and ``parallelism`` (this instance among its peers).
    """

    name: str = ""
    index: int = 0
    parallelism: int = 1

    def on_start(self, ctx: "Context") -> Any:
        """Called once before the first element (after a restore, too)."""

    def on_element(self, value: Any, ctx: "Context") -> Any:
        """Handle one element; ``ctx.key``/``ctx.timestamp``/``ctx.input`` describe it."""
        raise NotImplementedError(f"operator {self.name!r} ({type(self).__name__}) must override "
                                  f"on_element or on_batch")

    #: Override as ``def on_batch(self, batch: Batch, ctx)`` (or async) to take whole
    #: batches; ``on_element`` is then not called.
    on_batch: Any = None

    def on_timer(self, time: float, ctx: "Context") -> Any:
        """A timer registered for ``ctx.key`` fired (``ctx.timer_domain``: "event"/"processing")."""

    def on_watermark(self, watermark: float, ctx: "Context") -> Any:
        """The operator's watermark (minimum over its inputs) advanced to ``watermark``."""

    def on_stop(self, ctx: "Context") -> Any:
        """Called once when every input has ended (not on a crash or a cancel)."""


class Context:
    """What a hook sees and can do: the current element, emitting, timers.

    One per operator instance, reused across calls (don't keep it beyond a hook).
    """

    __slots__ = ("_inst", "_sctx", "timestamp", "input", "watermark", "epoch", "timer_domain",
                 "_out_values", "_out_times", "_side")

    def __init__(self, inst: Any, sctx: Any) -> None:
        self._inst = inst
        self._sctx = sctx
        self.timestamp: Any = None
        self.input = 0
        self.watermark = float("-inf")
        self.epoch = 0
        self.timer_domain: str | None = None
        self._out_values: list[Any] = []
        self._out_times: list[Any] = []
        self._side: dict[str, tuple[list[Any], list[Any]]] = {}

    # -- the current element -------------------------------------------------------------
    @property
    def key(self) -> Any:
        """The current key (None on unkeyed inputs); setting it re-scopes the statelets."""
        return self._sctx.current_key

    @key.setter
    def key(self, value: Any) -> None:
        self._sctx.current_key = value

    @property
    def operator(self) -> str:
        """This instance's name, e.g. ``"count/0"``."""
        return self._inst.name

    # -- emitting ------------------------------------------------------------------------
    def emit(self, value: Any, timestamp: Any = _SAME) -> None:
        """Send ``value`` downstream (keeping the current element's timestamp unless given)."""
        self._out_values.append(value)
        self._out_times.append(self.timestamp if timestamp is _SAME else timestamp)

    def emit_to(self, output: str, value: Any, timestamp: Any = _SAME) -> None:
        """Send ``value`` to the side output ``output`` (read it with ``input="op:output"``)."""
        if output is None:
            return self.emit(value, timestamp)
        try:
            vals, times = self._side[output]
        except KeyError:
            if output not in self._inst.side_outputs:
                raise ValueError(
                    f"operator {self._inst.name!r} has no side output {output!r}: nothing reads "
                    f"it (connect a step with input='{self._inst.node}:{output}')") from None
            vals, times = self._side[output] = ([], [])
        vals.append(value)
        times.append(self.timestamp if timestamp is _SAME else timestamp)

    # -- timers --------------------------------------------------------------------------
    def register_event_timer(self, time: float) -> None:
        """Call ``on_timer(time)`` for the current key once the watermark reaches ``time``."""
        self._inst.timers.register("event", self._need_key("register_event_timer"), time)

    def register_processing_timer(self, time: float) -> None:
        """Call ``on_timer(time)`` for the current key once ``time.time()`` reaches ``time``."""
        self._inst.timers.register("processing", self._need_key("register_processing_timer"),
                                   time)

    def delete_event_timer(self, time: float) -> None:
        """Cancel the current key's event-time timer at ``time`` (a no-op if there is none)."""
        self._inst.timers.delete("event", self._need_key("delete_event_timer"), time)

    def delete_processing_timer(self, time: float) -> None:
        """Cancel the current key's processing-time timer at ``time`` (no-op if none)."""
        self._inst.timers.delete("processing", self._need_key("delete_processing_timer"), time)

    @staticmethod
    def processing_time() -> float:
        """The wall clock processing-time timers follow (``time.time()``)."""
        return time.time()

    def _need_key(self, what: str) -> Any:
        k = self._sctx.current_key
        if k is None:
            raise ValueError(f"operator {self._inst.name!r}: {what} needs a current key; timers "
                             f"are per key, so key the input with .key_by(fn)")
        return k
