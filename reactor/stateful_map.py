"""``stateful_map``: a keyed running state folded by a plain function, per element.

``Topology.stateful_map("count", fn)`` after ``key_by``: for each element,
``fn(state, value) -> (new_state, output)`` is called with the key's state
(None the first time), the new state is kept (returning None as the state
forgets the key) and ``(key, output)`` is emitted — Bytewax's ``stateful_map``
contract, on reactor's exactly-once checkpoints.

The state lives in a heap-tiered ``Value`` statelet; the operator takes whole
batches and reaches the tier's dict directly, so there is no await per
element unless a key must be read from the store.
"""
from __future__ import annotations

from typing import Any, Callable

from statelets.codecs import decode_value
from statelets.types import _ABSENT, _IMMUTABLE, _UNSET, Value, _heap_key, _Packed

from .operator import Batch, Context, Operator

__all__ = ["stateful_map"]


def stateful_map(fn: Callable[[Any, Any], tuple[Any, Any]]) -> type[Operator]:
    """An Operator class applying ``fn(state, value) -> (state, output)`` per key."""
    if not callable(fn):
        raise TypeError(f"stateful_map needs fn(state, value) -> (state, output), got {fn!r}")

    class StatefulMap(Operator):
        state = Value()

        async def on_start(self, ctx: Context) -> None:
            self.state.bind_now()

        async def on_batch(self, batch: Batch, ctx: Context) -> None:
            bound = self.state
            heap = bound._heap
            if heap is None:    # no heap tier (not run by a job): the plain statelet API
                for key, value in zip(batch.keys or [], batch.values):
                    ctx.key = key
                    st = await bound.get()
                    st, out = fn(st, value)
                    if st is None:
                        await bound.clear()
                    else:
                        await bound.set(st)
                    ctx.emit((key, out))
                return
            dirty = bound._dirty
            what = bound.what
            encode = bound.statelet.codec.encode
            values, keys, times = batch.values, batch.keys, batch.times
            out_v = ctx._out_values
            out_t = ctx._out_times
            if keys is None:
                raise TypeError(f"stateful_map {self.name!r} needs a keyed input: add .key_by(fn)")
            for i, key in enumerate(keys):
                c = key.__class__
                hk = key if c is str or c is int else _heap_key(key, what)
                st = heap.get(hk, _UNSET)
                if st is _UNSET:
                    st = await bound._load(hk, key)
                if st is _ABSENT:
                    st = None
                elif st.__class__ is _Packed:
                    st = decode_value(st)
                try:
                    st, out = fn(st, values[i])
                except Exception as exc:
                    # The operator's policy decides: skip (dead letter), escalate, restart.
                    await ctx._inst._failed(values[i], exc)
                    continue
                if st is None:
                    heap[hk] = _ABSENT
                elif st.__class__ in _IMMUTABLE:
                    heap[hk] = st
                else:
                    heap[hk] = _Packed(encode(st, what))
                dirty[hk] = key
                out_v.append((key, out))
                out_t.append(times[i] if times is not None else None)
            if len(heap) > bound._tier.max_entries:
                await bound._spill()

    StatefulMap.__qualname__ = StatefulMap.__name__ = f"StatefulMap[{getattr(fn, '__name__', 'fn')}]"
    return StatefulMap
