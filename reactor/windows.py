"""Event-time windows: assigners and window functions on statelets and event-time timers.

Flink/Beam semantics on the reactor's dataflow::

    from reactor import CollectSink, IterableSource, Topology, run
    from reactor.windows import Session, Tumbling, window_aggregate, window_reduce

    clicks = [("ann", 1, 0.5), ("bob", 1, 3.0), ("ann", 1, 7.5), ("ann", 1, 12.0)]
    sink = CollectSink()
    topology = (Topology("clicks")
                .source("clicks", IterableSource(clicks), timestamp=lambda e: e[2],
                        max_out_of_orderness=2.0)
                .key_by(lambda e: e[0])
                .operator("per-10s", window_aggregate(Tumbling(10.0), create=lambda: 0,
                                                      add=lambda n, e: n + e[1]))
                .sink("out", sink))
    run(topology)
    # sink.results == [WindowResult("ann", 0.0, 10.0, 2), WindowResult("bob", 0.0, 10.0, 1),
    #                  WindowResult("ann", 10.0, 20.0, 1)]   (in some order)

**Windows** are half-open intervals ``[start, end)`` of event time.
:class:`Tumbling` and :class:`Sliding` windows are aligned to ``offset``
(default 0): the window holding ``t`` starts at ``offset + k * slide`` for an
integer ``k``, so all keys share window boundaries. :class:`Session` windows
are per key: an element at ``t`` opens ``[t, t + gap)``, and windows that
*overlap* merge — two elements are in the same session when their timestamps
are **less than** ``gap`` apart (exactly ``gap`` apart: two sessions; this
differs from Flink, which also merges windows that merely touch, and so can
merge an element into a session that already fired).

**Window functions** return an :class:`~reactor.operator.Operator` subclass (a
new class per call) to put after a ``key_by``::

    .key_by(lambda e: e.user).operator("sessions", window_reduce(Session(30.0), fn))

- :func:`window_reduce` — ``fn(a, b)`` folds the elements of a window;
- :func:`window_aggregate` — ``create() -> acc``, ``add(acc, element) -> acc``,
  ``result(acc) -> value``, ``merge(a, b) -> acc`` (needed for sessions);
- :func:`window_process` — ``fn(key, window, elements) -> iterable`` sees all the
  elements of a window (kept in an ``Appender``).

**Firing.** A window fires once the watermark reaches its ``end`` (an
event-time timer at ``end`` per (key, window)): the operator emits
:class:`WindowResult` ``(key, start, end, value)`` (one per output of
``window_process``). The result's timestamp is :func:`result_timestamp`
``(end)`` = ``math.nextafter(end, -inf)``, the largest float below ``end`` —
the float analogue of Flink's ``end - 1`` ms: it lies inside the window (a
downstream window of the same assigner puts it in the same window) and is not
late downstream, since results are sent before the watermark that fired them.

The reactor's watermark ``W`` promises that no element with a timestamp
``< W`` follows (an element at exactly ``W`` is on time); a window ``[s, e)`` is
therefore complete when ``W >= e``.

**Allowed lateness.** An element is *late* when its timestamp is below the
operator's watermark. With ``allowed_lateness=L``, a window's state is kept
until the watermark reaches ``end + L``; a late element for a window still
kept updates it and fires it again at once (accumulating: each firing emits
the whole window's result so far, as Flink does). An element whose windows
are all past ``end + L`` is dropped and counted — or, with ``late="side"``,
sent to the side output ``"late"`` (read it with ``input="step:late"``).
The count is the instance attribute ``late_dropped`` and, summed over all
instances of the class in this process, the class attribute
``late_dropped_total`` (plain counters, not state: a job restarted from a
checkpoint counts the replayed elements again).

Note that :meth:`Topology.operator`'s own ``on_late`` option filters elements
older than the operator's watermark *before* the operator sees them: with
``on_late="drop"`` or ``"side"`` allowed lateness never gets a chance. Keep the
default ``on_late="pass"`` for window operators, and use their ``late=``
option instead.

**State.** Per key, one ``Value`` statelet ``windows`` holds a dict
``{(start, end): accumulator}`` of the key's live windows (for
``window_process`` the element count; the elements are in an ``Appender``
statelet ``elements`` scoped to the composite key ``(key, start, end)``). A key
has few live windows, so one read and one write per element beat a ``Map``
(whose iteration would scan the store). A window's entry is removed when the
watermark passes ``end + allowed_lateness``; a key with no windows left has no
state at all. Both statelets and the timers are checkpointed with the job, so
windows survive restores (and changes of parallelism).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import attrs

from statelets.types import Appender, Value

from .errors import ReactorError
from .operator import Context, Operator
from .scheduler import maybe_yield

__all__ = [
    "WindowAssigner", "Tumbling", "Sliding", "Session", "Window", "WindowResult", "WindowError",
    "WindowOperator", "window_reduce", "window_aggregate", "window_process", "result_timestamp",
]

_LATE_MODES = ("drop", "side")
_MISSING = object()
_NEG_INF = -math.inf
_isfinite = math.isfinite


class WindowError(ReactorError):
    """A window operator met an element it cannot place (e.g. without an event time)."""


def result_timestamp(end: float) -> float:
    """The timestamp of the results of window ``[start, end)``: the largest float below ``end``."""
    return math.nextafter(end, _NEG_INF)


def _check_span(owner: str, arg: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{owner}: {arg} must be a number of event-time units, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{owner}: {arg} must be a positive finite number, got {value!r}")


def _check_offset(owner: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{owner}: offset must be a finite number, got {value!r}")


# --------------------------------------------------------------------------- assigners

class WindowAssigner:
    """Maps an event time to the windows ``(start, end)`` it belongs to.

    ``merging`` assigners (sessions) give one proto-window per element, which
    the operator merges with the key's overlapping windows.
    """

    merging: bool = False

    def assign(self, t: float) -> list[tuple[Any, Any]]:
        """The windows ``(start, end)`` holding event time ``t``, by ascending start."""
        raise NotImplementedError


def _aligned(t: Any, size: Any, slide: Any, offset: Any) -> list[tuple[Any, Any]]:
    """Windows ``[offset + k*slide, offset + k*slide + size)`` holding ``t``.

    Each window's bounds are computed from its index ``k`` alone, so every element
    of a window yields bit-identical bounds (``t - t % slide`` would not, with floats).
    """
    k = (t - offset) // slide
    if offset + k * slide > t:          # float rounding of the quotient
        k -= 1
    elif offset + (k + 1) * slide <= t:
        k += 1
    out = []
    while True:
        start = offset + k * slide
        end = start + size
        if end <= t:
            break
        out.append((start, end))
        k -= 1
    out.reverse()
    return out


@attrs.frozen
class Tumbling(WindowAssigner):
    """Fixed, non-overlapping windows of ``size``: ``[offset + k*size, offset + (k+1)*size)``."""

    size: float
    offset: float = 0

    def __attrs_post_init__(self) -> None:
        _check_span("Tumbling", "size", self.size)
        _check_offset("Tumbling", self.offset)

    def assign(self, t: float) -> list[tuple[Any, Any]]:
        return _aligned(t, self.size, self.size, self.offset)


@attrs.frozen
class Sliding(WindowAssigner):
    """Windows of ``size`` starting every ``slide`` (``0 < slide <= size``): an element is in
    about ``size / slide`` windows."""

    size: float
    slide: float
    offset: float = 0

    def __attrs_post_init__(self) -> None:
        _check_span("Sliding", "size", self.size)
        _check_span("Sliding", "slide", self.slide)
        if self.slide > self.size:
            raise ValueError(f"Sliding: slide ({self.slide!r}) must not exceed size "
                             f"({self.size!r}); elements between windows would be lost")
        _check_offset("Sliding", self.offset)

    def assign(self, t: float) -> list[tuple[Any, Any]]:
        return _aligned(t, self.size, self.slide, self.offset)


@attrs.frozen
class Session(WindowAssigner):
    """Per-key sessions: elements less than ``gap`` apart share a window, which ends
    ``gap`` after its last element."""

    gap: float
    merging = True

    def __attrs_post_init__(self) -> None:
        _check_span("Session", "gap", self.gap)

    def assign(self, t: float) -> list[tuple[Any, Any]]:
        return [(t, t + self.gap)]


# ------------------------------------------------------------------------------ results

@attrs.frozen(order=True)
class Window:
    """A window ``[start, end)`` as ``window_process`` functions see it."""

    start: Any
    end: Any

    @property
    def max_timestamp(self) -> float:
        """The largest timestamp inside the window (that of its results)."""
        return result_timestamp(self.end)


@attrs.frozen
class WindowResult:
    """What a window operator emits: ``value`` computed over ``key``'s window ``[start, end)``."""

    key: Any
    start: Any
    end: Any
    value: Any

    @property
    def window(self) -> Window:
        """The window as a :class:`Window`."""
        return Window(self.start, self.end)


# ----------------------------------------------------------------------------- operators

class WindowOperator(Operator):
    """Base of the classes :func:`window_reduce` & co. make; not used directly.

    Class attributes set per factory call: ``assigner``, ``allowed_lateness``,
    ``late`` ("drop" or "side"), the statelets, and ``late_dropped_total``.
    """

    assigner: WindowAssigner
    allowed_lateness: float = 0.0
    late: str = "drop"
    #: Elements dropped (or sent to "late") beyond allowed lateness, over all instances.
    late_dropped_total: int = 0
    windows: Any            # Value(dict): {(start, end): accumulator}

    #: Elements of this instance dropped (or sent to "late") beyond allowed lateness.
    late_dropped: int = 0
    #: Whether windows hold accumulators updated by ``_first``/``_fold`` (inlined).
    _inline_acc = False

    # -- hooks of the concrete kinds ------------------------------------------------------
    async def _add(self, ctx: Context, state: dict, w: tuple, value: Any) -> None:
        raise NotImplementedError

    async def _merge(self, ctx: Context, state: dict, old: list[tuple], target: tuple) -> None:
        raise NotImplementedError

    async def _fire(self, ctx: Context, state: dict, w: tuple) -> None:
        raise NotImplementedError

    async def _purge(self, ctx: Context, state: dict, w: tuple) -> None:
        state.pop(w, None)

    # -- elements -------------------------------------------------------------------------
    async def on_element(self, value: Any, ctx: Context) -> None:
        ts = ctx.timestamp
        cls = ts.__class__
        if (cls is not float and cls is not int) or not _isfinite(ts):
            if (not isinstance(ts, (int, float)) or isinstance(ts, bool)
                    or not _isfinite(ts)):
                self._bad_timestamp(value, ts)
        state = await self.windows.get()
        if state is None:
            state = {}
        wm = ctx.watermark
        lateness = self.allowed_lateness
        if self.assigner.merging:
            target = await self._add_merging(ctx, state, value, ts, wm)
            if target is None:
                return
            await self.windows.set(state)
            if target[1] <= wm:             # late, within allowed lateness: fire again now
                await self._fire(ctx, state, target)
            await maybe_yield()
            return
        fire: list[tuple] | None = None
        accepted = False
        inline = self._inline_acc
        for w in self.assigner.assign(ts):
            end = w[1]
            if end + lateness <= wm:        # purged already
                continue
            accepted = True
            if inline:                      # accumulators: no coroutine per window
                acc = state.get(w, _MISSING)
                new = acc is _MISSING
                state[w] = self._first(value) if new else self._fold(acc, value)
            else:
                new = w not in state
                await self._add(ctx, state, w, value)
            if end <= wm:
                if fire is None:
                    fire = []
                fire.append(w)
            elif new:                       # an existing window has its timers already
                ctx.register_event_timer(end)
            if new and lateness:
                ctx.register_event_timer(end + lateness)
        if not accepted:
            self._late(value, ctx)
            return
        await self.windows.set(state)
        if fire is not None:
            for w in fire:
                await self._fire(ctx, state, w)
        # The runtime checks the quota only every 256 elements (and not between timers):
        # too coarse for handlers of ~10 µs, so check it here too (a clock read).
        await maybe_yield()

    async def _add_merging(self, ctx: Context, state: dict, value: Any, ts: Any,
                           wm: float) -> tuple | None:
        """Add ``value`` to its session, merging windows; returns the session (None: late)."""
        lateness = self.allowed_lateness
        p_start, p_end = proto = self.assigner.assign(ts)[0]
        over = [w for w in state if w[0] < p_end and p_start < w[1]]
        if not over:
            if p_end + lateness <= wm:
                self._late(value, ctx)
                return None
            target = proto
        else:
            # Live windows are disjoint and each overlaps the proto-window, so their
            # union with it is one interval that overlaps no other live window.
            target = (min(p_start, min(w[0] for w in over)), max(p_end, max(w[1] for w in over)))
            if len(over) == 1 and over[0] == target:
                await self._add(ctx, state, target, value)      # timers unchanged
                return target
            over.sort()
            await self._merge(ctx, state, over, target)
            needed = set()
            for w in state:
                needed.add(w[1])
                if lateness:
                    needed.add(w[1] + lateness)
            for w in over:
                for t in ((w[1], w[1] + lateness) if lateness else (w[1],)):
                    if t not in needed:
                        ctx.delete_event_timer(t)
        await self._add(ctx, state, target, value)
        if target[1] > wm:
            ctx.register_event_timer(target[1])
        if lateness:
            ctx.register_event_timer(target[1] + lateness)
        return target

    def _late(self, value: Any, ctx: Context) -> None:
        self.late_dropped += 1
        type(self).late_dropped_total += 1
        if self.late == "side":
            ctx.emit_to("late", value)

    def _bad_timestamp(self, value: Any, ts: Any) -> None:
        if ts is None:
            raise WindowError(f"window operator {self.name!r}: element {value!r} has no event "
                              f"time; give the source timestamp=lambda element: ...")
        raise WindowError(f"window operator {self.name!r}: element {value!r} has event time "
                          f"{ts!r}; windows need a finite int or float")

    # -- timers ---------------------------------------------------------------------------
    async def on_timer(self, time: float, ctx: Context) -> None:
        if ctx.timer_domain != "event":
            return
        state = await self.windows.get()
        if not state:
            return
        for w in [w for w in state if w[1] == time]:
            await self._fire(ctx, state, w)
        lateness = self.allowed_lateness
        dead = [w for w in state if w[1] + lateness <= time]
        if dead:
            for w in dead:
                await self._purge(ctx, state, w)
            if state:
                await self.windows.set(state)
            else:
                await self.windows.clear()
        await maybe_yield()

    def _emit(self, ctx: Context, w: tuple, value: Any) -> None:
        ctx.emit(WindowResult(ctx.key, w[0], w[1], value), result_timestamp(w[1]))


class _AccWindowOperator(WindowOperator):
    """Windows holding one accumulator each (reduce and aggregate)."""

    _inline_acc = True

    @staticmethod
    def _first(value: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def _fold(acc: Any, value: Any) -> Any:
        raise NotImplementedError

    @staticmethod
    def _combine(a: Any, b: Any) -> Any:
        raise NotImplementedError

    _result: Callable[[Any], Any] | None = None

    async def _add(self, ctx: Context, state: dict, w: tuple, value: Any) -> None:
        acc = state.get(w, _MISSING)
        state[w] = self._first(value) if acc is _MISSING else self._fold(acc, value)

    async def _merge(self, ctx: Context, state: dict, old: list[tuple], target: tuple) -> None:
        combine = self._combine
        acc = state.pop(old[0])
        for w in old[1:]:
            acc = combine(acc, state.pop(w))
        state[target] = acc

    async def _fire(self, ctx: Context, state: dict, w: tuple) -> None:
        acc = state[w]
        result = self._result
        self._emit(ctx, w, acc if result is None else result(acc))


class _ProcessWindowOperator(WindowOperator):
    """Windows keeping their elements (in an Appender scoped to ``(key, start, end)``)."""

    elements: Any           # Appender()

    @staticmethod
    def _process(key: Any, window: Window, elements: list[Any]) -> Iterable[Any]:
        raise NotImplementedError

    async def _add(self, ctx: Context, state: dict, w: tuple, value: Any) -> None:
        key = ctx.key
        ctx.key = (key, w[0], w[1])         # the window's own list
        try:
            await self.elements.append(value)
        finally:
            ctx.key = key
        state[w] = state.get(w, 0) + 1

    async def _merge(self, ctx: Context, state: dict, old: list[tuple], target: tuple) -> None:
        key = ctx.key
        merged: list[Any] = []
        count = 0
        try:
            for w in old:
                ctx.key = (key, w[0], w[1])
                merged.extend(await self.elements.get())
                await self.elements.clear()
                count += state.pop(w)
            ctx.key = (key, target[0], target[1])
            await self.elements.update(merged)
        finally:
            ctx.key = key
        state[target] = count

    async def _fire(self, ctx: Context, state: dict, w: tuple) -> None:
        key = ctx.key
        ctx.key = (key, w[0], w[1])
        try:
            elements = await self.elements.get()
        finally:
            ctx.key = key
        out = self._process(key, Window(w[0], w[1]), elements)
        if out is None:
            return
        try:
            it = iter(out)
        except TypeError:
            raise TypeError(f"window operator {self.name!r}: the process function must return "
                            f"an iterable of outputs (or None), got {out!r}") from None
        for value in it:
            self._emit(ctx, w, value)

    async def _purge(self, ctx: Context, state: dict, w: tuple) -> None:
        state.pop(w, None)
        key = ctx.key
        ctx.key = (key, w[0], w[1])
        try:
            await self.elements.clear()
        finally:
            ctx.key = key


# ----------------------------------------------------------------------------- factories

def _check_common(what: str, assigner: Any, allowed_lateness: Any, late: Any) -> None:
    if not isinstance(assigner, WindowAssigner):
        raise TypeError(f"{what}: assigner must be a WindowAssigner (Tumbling(size), "
                        f"Sliding(size, slide), Session(gap)), got {assigner!r}")
    if isinstance(allowed_lateness, bool) or not isinstance(allowed_lateness, (int, float)):
        raise TypeError(f"{what}: allowed_lateness must be a number of event-time units, got "
                        f"{allowed_lateness!r}")
    if not math.isfinite(allowed_lateness) or allowed_lateness < 0:
        raise ValueError(f"{what}: allowed_lateness must be a finite number >= 0, got "
                         f"{allowed_lateness!r}")
    if late not in _LATE_MODES:
        raise ValueError(f"{what}: late must be 'drop' or 'side', got {late!r}")


def _check_fn(what: str, arg: str, fn: Any, optional: bool = False) -> None:
    if fn is None and optional:
        return
    if not callable(fn):
        raise TypeError(f"{what}: {arg} must be callable, got {fn!r}")


def _make(kind: str, base: type, assigner: WindowAssigner, allowed_lateness: float, late: str,
          doc: str, **fns: Any) -> type[WindowOperator]:
    ns: dict[str, Any] = {
        "__doc__": doc,
        "__module__": __name__,
        "assigner": assigner,
        "allowed_lateness": allowed_lateness,
        "late": late,
        "late_dropped_total": 0,
        "windows": Value(dict),
    }
    if base is _ProcessWindowOperator:
        ns["elements"] = Appender()
    for name, fn in fns.items():
        ns[name] = staticmethod(fn) if fn is not None else None
    cls = type(kind, (base,), ns)
    cls.__qualname__ = kind
    return cls


def window_reduce(assigner: WindowAssigner, fn: Callable[[Any, Any], Any], *,
                  allowed_lateness: float = 0.0, late: str = "drop") -> type[WindowOperator]:
    """An operator folding each window's elements with ``fn(a, b)`` (associative).

    Emits ``WindowResult(key, start, end, reduced)``; a one-element window's value is
    the element itself. Session windows merge with ``fn`` too.
    """
    _check_common("window_reduce", assigner, allowed_lateness, late)
    _check_fn("window_reduce", "fn", fn)
    return _make("WindowReduce", _AccWindowOperator, assigner, allowed_lateness, late,
                 f"Windows of {assigner!r} reduced with {getattr(fn, '__name__', fn)}.",
                 _first=lambda v: v, _fold=fn, _combine=fn, _result=None)


def window_aggregate(assigner: WindowAssigner, create: Callable[[], Any],
                     add: Callable[[Any, Any], Any], result: Callable[[Any], Any] | None = None,
                     merge: Callable[[Any, Any], Any] | None = None, *,
                     allowed_lateness: float = 0.0, late: str = "drop") -> type[WindowOperator]:
    """An operator aggregating each window: ``create() -> acc``, ``add(acc, element) -> acc``,
    ``result(acc) -> value`` (identity if None), ``merge(a, b) -> acc`` (required for
    session windows, which merge).

    Emits ``WindowResult(key, start, end, result(acc))``. ``add`` and ``merge`` may
    mutate and return their first argument: accumulators are stored, not shared.
    """
    what = "window_aggregate"
    _check_common(what, assigner, allowed_lateness, late)
    _check_fn(what, "create", create)
    _check_fn(what, "add", add)
    _check_fn(what, "result", result, optional=True)
    _check_fn(what, "merge", merge, optional=True)
    if assigner.merging and merge is None:
        raise ValueError(f"{what}: {assigner!r} windows merge, so their accumulators must be "
                         f"merged too: pass merge=lambda a, b: ... (combining two accumulators)")

    def first(value: Any) -> Any:
        return add(create(), value)

    def no_merge(a: Any, b: Any) -> Any:     # unreachable: only merging assigners combine
        raise WindowError(f"{what}: accumulators need merging; pass merge=...")

    return _make("WindowAggregate", _AccWindowOperator, assigner, allowed_lateness, late,
                 f"Windows of {assigner!r} aggregated with {getattr(add, '__name__', add)}.",
                 _first=first, _fold=add, _combine=merge or no_merge, _result=result)


def window_process(assigner: WindowAssigner,
                   fn: Callable[[Any, Window, list[Any]], Iterable[Any] | None], *,
                   allowed_lateness: float = 0.0, late: str = "drop") -> type[WindowOperator]:
    """An operator calling ``fn(key, window, elements)`` when a window fires, with all of
    its elements (in arrival order; a merged session lists its parts by start time).

    Each output of the returned iterable (None: no output) is emitted as
    ``WindowResult(key, start, end, output)``. Keeping every element costs memory
    and store traffic: prefer :func:`window_aggregate` where an accumulator does.
    """
    _check_common("window_process", assigner, allowed_lateness, late)
    _check_fn("window_process", "fn", fn)
    return _make("WindowProcess", _ProcessWindowOperator, assigner, allowed_lateness, late,
                 f"Windows of {assigner!r} processed by {getattr(fn, '__name__', fn)}.",
                 _process=fn)
