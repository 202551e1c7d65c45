"""Nexmark queries q0-q5, q7 and q8 as reactor topologies.

Each query is a builder returning a :class:`reactor.Topology`::

    from reactor import run
    from samples.nexmark.queries import build

    topology = build("q5", 100_000)                  # 100,000 generated events
    run(topology, state_dir="state", checkpoint_every=1.0)
    # results: JSON lines in nexmark-out/q5/part-0-EPOCH.txt

or ``q5(100_000, window_ms=10_000, slide_ms=2_000, sink=CollectSink())``.

Every builder takes the same first arguments:

* ``events``: how many events to generate (an int: the source is
  ``GeneratorSource(lambda i: event_at(i, config), count=events)``), or a
  sequence of events already generated (``IterableSource``; what the
  benchmarks use, since generating costs more than most queries).
* ``config``: the :class:`~samples.nexmark.generator.NexmarkConfig` of the
  generator (also when ``events`` is a list: its ``max_out_of_order_ms`` sets
  the watermark lag).
* ``sink``: where results go; default a :class:`reactor.FileSink` writing one
  JSON value per line to ``out`` (default ``nexmark-out/<query>``).
* ``batch_size``: source batch size (default 256 generated events, or 1024
  from a list).

Event time is each event's ``date_time`` (ms since the Unix epoch); the
source's watermark trails the highest timestamp seen by
``config.max_out_of_order_ms``, which is exactly the disorder the generator
can introduce, so no event is ever late. Windows are half-open ``[start,
end)`` intervals aligned to epoch 0, and a window's result is emitted once the
watermark reaches its end (an event-time timer at ``end``).

The semantics follow Apache Beam's Nexmark suite
(``org.apache.beam.sdk.nexmark.queries``); each builder's docstring says what
it computes, its output tuple, and where it departs from Beam. The windowed
operators (q5, q7, q8) and the stateful ones (q3, q4) keep all their state in
statelets and event-time timers, so they restore exactly from a checkpoint.
q1, q5 and q7 are written for speed (fused stateless steps, ``on_batch``
hooks, heap-tiered ``Aggregator``/``Reducer`` statelets touched once per
batch and pane rather than once per event).

Windowed operators that keep one window's state per key (q5's panes, q7's
windows) must run with parallelism 1: a window's result needs every pane.
"""
from __future__ import annotations

import json
import operator as _op
import os
from collections import Counter
from functools import partial
from math import gcd
from typing import Any, Callable, Sequence

import attrs

from reactor import Batch, Context, FileSink, GeneratorSource, IterableSource, Operator, Topology
from reactor.sinks import Sink
from statelets import Aggregator, Appender, Reducer, Value

from samples.nexmark.generator import Auction, Bid, Event, NexmarkConfig, Person, event_at

__all__ = [
    "QUERIES", "build", "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8",
    "to_euros", "json_line", "DEFAULT_OUT",
    "LocalItemSuggestion", "WinningBids", "HotItems", "HighestBid", "NewUserAuctions",
]

#: Where the default FileSink writes (``nexmark-out/<query>``), relative to the cwd.
DEFAULT_OUT = "nexmark-out"

_DEFAULT_CONFIG = NexmarkConfig()
_date_time = _op.attrgetter("date_time")


# ------------------------------------------------------------------------ plumbing

def _json_default(o: Any) -> Any:
    if attrs.has(type(o)):
        return {"kind": type(o).__name__.lower(), **attrs.asdict(o)}
    return str(o)


def json_line(value: Any) -> str:
    """One result as a JSON line (tuples as arrays, Nexmark events as objects with a "kind")."""
    return json.dumps(value, separators=(",", ":"), default=_json_default)


def _sink(sink: Sink | None, out: str | os.PathLike | None, query: str) -> Sink:
    if sink is not None:
        return sink
    return FileSink(out if out is not None else os.path.join(DEFAULT_OUT, query),
                    format=json_line)


def _start(name: str, events: int | Sequence[Event], config: NexmarkConfig,
           batch_size: int | None) -> Topology:
    """A topology with the event source ``events`` (timestamps: ``date_time``).

    Default batch size: 1024 events from a list, 256 generated ones (generating
    costs ~4 us an event, and a source does not yield the core within a batch).
    """
    if isinstance(events, bool) or not isinstance(events, (int, Sequence)):
        raise TypeError(f"{name}: events must be a number of events to generate or a sequence "
                        f"of Nexmark events, got {type(events).__name__}")
    if isinstance(events, int):
        if events < 0:
            raise ValueError(f"{name}: events must be >= 0, got {events}")
        source: Any = GeneratorSource(partial(event_at, config=config), count=events)
    else:
        source = IterableSource(events)
    if batch_size is None:
        batch_size = 256 if isinstance(events, int) else 1024
    return Topology(name).source("events", source, timestamp=_date_time,
                                 max_out_of_orderness=config.max_out_of_order_ms,
                                 batch_size=batch_size)


def _configured(cls: type, **settings: Any) -> type:
    """A subclass of operator ``cls`` with ``settings`` as class attributes.

    (A class, not a factory function, so that ``Topology.validate`` still sees
    the statelets and checks that the input is keyed.)
    """
    return type(cls.__name__, (cls,), dict(settings))


def _is_bid(e: Event) -> bool:
    return e.__class__ is Bid


def _is_auction(e: Event) -> bool:
    return e.__class__ is Auction


def _is_person(e: Event) -> bool:
    return e.__class__ is Person


def _check_ms(query: str, **values: int) -> None:
    for name, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{query}: {name} must be a positive int of milliseconds, got {v!r}")


# ----------------------------------------------------------------------------- q0

def q0(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None) -> Topology:
    """q0, *passthrough*: every event, unchanged (measures the source and sink alone).

    Output: the events themselves (Person/Auction/Bid objects; the default
    FileSink writes them as JSON objects with a ``"kind"`` field).
    """
    return _start("nexmark-q0", events, config, batch_size).sink("out", _sink(sink, out, "q0"))


# ----------------------------------------------------------------------------- q1

def to_euros(bid: Bid) -> tuple:
    """Beam's Query1 conversion: ``price * 89 / 100`` in integer arithmetic (USD to EUR)."""
    return (bid.auction, bid.bidder, bid.price * 89 // 100, bid.channel, bid.url,
            bid.date_time, bid.extra)


def q1(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None) -> Topology:
    """q1, *currency conversion*: every bid with its price converted from dollars to euros.

    ``price * 89 // 100`` as Beam's ``Query1`` (integer cents; Flink's SQL
    version multiplies by 0.908 instead). Output per bid: ``(auction, bidder,
    price_eur, channel, url, date_time, extra)``.

    Stateless: a filter and a map fused into the source's output edge (no
    operator task, no mailbox hop before the sink).
    """
    return (_start("nexmark-q1", events, config, batch_size)
            .filter("bids", _is_bid)
            .map("to-euros", to_euros)
            .sink("out", _sink(sink, out, "q1")))


# ----------------------------------------------------------------------------- q2

def q2(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None,
       auction_skip: int = 123) -> Topology:
    """q2, *selection*: the bids on every ``auction_skip``-th auction.

    Keeps bids with ``auction % auction_skip == 0`` (Beam's ``auctionSkip``,
    default 123). Output: ``(auction, price)`` (Beam's ``AuctionPrice``).
    """
    if isinstance(auction_skip, bool) or not isinstance(auction_skip, int) or auction_skip < 1:
        raise ValueError(f"q2: auction_skip must be an int >= 1, got {auction_skip!r}")

    def selected(e: Event) -> bool:
        return e.__class__ is Bid and e.auction % auction_skip == 0

    return (_start("nexmark-q2", events, config, batch_size)
            .filter("selected-bids", selected)
            .map("auction-price", lambda b: (b.auction, b.price))
            .sink("out", _sink(sink, out, "q2")))


# ----------------------------------------------------------------------------- q3

class LocalItemSuggestion(Operator):
    """q3's incremental join, keyed by person id: persons (input 0) x auctions (input 1).

    A person's ``(name, city, state)`` is kept once seen; an auction whose
    seller is known is emitted at once; one whose seller has not arrived yet
    waits in ``pending`` for ``wait_ms`` of event time (an event-time timer
    drops it then: sellers outside the states never arrive, since they are
    filtered out before the join).
    """

    person = Value()            # (name, city, state) of the seller
    pending = Appender()        # (auction id, date_time) waiting for the seller
    wait_ms = 10_000

    async def on_element(self, e: Any, ctx: Context) -> None:
        if ctx.input == 0:
            p = (e.name, e.city, e.state)
            await self.person.set(p)
            waiting = await self.pending.get()
            if waiting:
                for auction, _ in waiting:
                    ctx.emit((*p, auction))
                await self.pending.clear()
            return
        p = await self.person.get()
        if p is not None:
            ctx.emit((*p, e.id))
        else:
            await self.pending.append((e.id, e.date_time))
            ctx.register_event_timer(e.date_time + self.wait_ms)

    async def on_timer(self, t: float, ctx: Context) -> None:
        waiting = await self.pending.get()
        if waiting:
            keep = [w for w in waiting if w[1] + self.wait_ms > t]
            if len(keep) != len(waiting):
                await self.pending.update(keep)


def q3(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None,
       states: Sequence[str] = ("OR", "ID", "CA"), category: int = 10,
       wait_ms: int = 10_000) -> Topology:
    """q3, *local item suggestion*: who sells in category ``category`` in some states.

    An incremental (non-windowed) join of persons living in ``states``
    (default OR, ID, CA) with the auctions in ``category`` (default 10) on
    ``auction.seller == person.id``, as Beam's ``Query3``. Output, once per
    matching auction, as soon as both sides are there: ``(name, city, state,
    auction_id)`` (Beam's ``NameCityStateId``).

    Dataflow: two filtered branches of the event stream, keyed by person id
    and by seller, ``connect``-ed into :class:`LocalItemSuggestion` (keyed
    ``Value``/``Appender`` state on both sides). Persons stay in state for the
    job's life (Beam drops them after ``maxAuctionsWaitingTime``); auctions
    wait ``wait_ms`` of event time for their seller.
    """
    _check_ms("q3", wait_ms=wait_ms)
    wanted = frozenset(states)

    def local_person(e: Event) -> bool:
        return e.__class__ is Person and e.state in wanted

    def in_category(e: Event) -> bool:
        return e.__class__ is Auction and e.category == category

    return (_start("nexmark-q3", events, config, batch_size)
            .filter("local-persons", local_person, input="events")
            .key_by(_op.attrgetter("id"), "persons-by-id")
            .filter("category-auctions", in_category, input="events")
            .key_by(_op.attrgetter("seller"), "auctions-by-seller")
            .connect("join", "persons-by-id", "auctions-by-seller",
                     _configured(LocalItemSuggestion, wait_ms=wait_ms))
            .sink("out", _sink(sink, out, "q3")))


# ----------------------------------------------------------------------------- q4

class WinningBids(Operator):
    """q4's first stage, keyed by auction id: the winning bid of each auction.

    An auction registers an event-time timer at its ``expires``; each valid
    bid (``auction.date_time <= bid.date_time < expires``, ``price >=
    reserve``) replaces the best one if its price is higher, or equal with an
    earlier ``date_time`` (Beam's ``PRICE_THEN_DESCENDING_TIME``; a full tie
    keeps the bid seen first). When the watermark reaches ``expires`` the
    timer emits ``(auction, category, price, bidder)`` for the winner (nothing
    if no bid was valid) and the auction's state is dropped. A bid whose
    auction is not in state (never seen, or already closed) is ignored:
    an auction precedes its bids in the stream (the generator guarantees
    it), and a bid for a closed auction has ``date_time >= expires``.
    """

    auction = Value()           # (category, reserve, date_time, expires)
    best = Value()              # (price, date_time, bidder)

    async def on_element(self, e: Any, ctx: Context) -> None:
        if e.__class__ is Auction:
            await self.auction.set((e.category, e.reserve, e.date_time, e.expires))
            ctx.register_event_timer(e.expires)
            return
        a = await self.auction.get()
        if a is None:
            return
        price, t = e.price, e.date_time
        if price < a[1] or not a[2] <= t < a[3]:
            return
        b = await self.best.get()
        if b is None or price > b[0] or (price == b[0] and t < b[1]):
            await self.best.set((price, t, e.bidder))

    async def on_timer(self, t: float, ctx: Context) -> None:
        a = await self.auction.get()
        b = await self.best.get()
        if a is not None and b is not None:
            ctx.emit((ctx.key, a[0], b[0], b[2]))
        await self.auction.clear()
        await self.best.clear()


def _running_mean(state: tuple[int, int] | None, winner: tuple) -> tuple[tuple[int, int], float]:
    total, n = state if state is not None else (0, 0)
    total, n = total + winner[2], n + 1
    return (total, n), total / n


def _auction_key(e: Event) -> int:
    return e.id if e.__class__ is Auction else e.auction  # type: ignore[union-attr]


def q4(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None) -> Topology:
    """q4, *average price per category*: the running mean of winning-bid prices per category.

    Winning bids as Beam's ``WinningBids`` (see :class:`WinningBids`: the
    highest valid bid before the auction expires, decided when the watermark
    passes ``expires``), then per category the mean over all its auctions
    closed so far, updated at each close: output ``(category, mean_price)``
    (a float), one per closed auction with a winner — the Nexmark SQL
    definition (``AVG`` over all closed auctions). Beam's ``Query4`` instead
    averages within sliding windows of ``windowSizeSec``.

    Dataflow: auctions and bids, keyed by auction id on one channel (so an
    auction always arrives before its bids) -> :class:`WinningBids` -> keyed
    by category -> ``stateful_map`` keeping ``(sum, count)``.
    """
    def auction_or_bid(e: Event) -> bool:
        return e.__class__ is not Person

    return (_start("nexmark-q4", events, config, batch_size)
            .filter("auctions-and-bids", auction_or_bid)
            .key_by(_auction_key, "by-auction")
            .operator("winning-bids", WinningBids)
            .key_by(_op.itemgetter(1), "by-category")
            .stateful_map("mean-price", _running_mean)
            .sink("out", _sink(sink, out, "q4")))


# ----------------------------------------------------------------------------- q5

def _count_into(acc: Counter, auctions: list[int]) -> Counter:
    acc.update(auctions)        # counting an iterable runs in C
    return acc


def _merge_counts(a: Counter, b: Counter) -> Counter:
    a.update(b)
    return a


class HotItems(Operator):
    """q5's operator: bid counts per auction in panes, hottest auctions per sliding window.

    The input is keyed by *pane*: ``date_time // pane_ms`` with ``pane_ms =
    gcd(window_ms, slide_ms)``, so every window is a whole number of panes
    and a pane's bids belong to exactly the same windows. State: one
    ``Aggregator`` (a ``Counter`` auction -> bids) per pane, heap-tiered and
    added to once per pane per batch (the counting itself is C, via
    ``Counter.update``).

    Timers: when a pane's state is created, an event-time timer is
    registered for the end of every window holding it, under the key of
    that window's first pane (so a window has exactly one timer whichever
    panes have bids). When it fires, the window's panes are summed, every
    auction with the highest count is emitted as ``(window_end, auction,
    count)`` (ascending auction id), and the panes no later window needs
    are cleared.

    Lateness: bids in a pane whose last window already fired are dropped
    and counted in ``late``; a pane some of whose windows fired still counts
    for the others (Beam's per-window lateness).
    """

    counts = Aggregator(Counter, _count_into, _merge_counts)
    window_ms = 10_000
    slide_ms = 2_000
    pane_ms = 2_000

    def __init__(self) -> None:
        self.late = 0

    def _windows(self, pane: int) -> list[int]:
        """Starts of the windows holding ``pane`` (latest first)."""
        t = pane * self.pane_ms
        slide, length = self.slide_ms, self.window_ms
        s = t - t % slide
        out = []
        while s > t - length:
            out.append(s)
            s -= slide
        return out

    async def on_batch(self, batch: Batch, ctx: Context) -> None:
        keys, values = batch.keys, batch.values
        lo, hi = min(keys), max(keys)  # type: ignore[type-var, arg-type]
        if lo == hi:
            groups = {lo: [b.auction for b in values]}
        else:
            groups = {}
            for k, b in zip(keys, values):  # type: ignore[arg-type]
                g = groups.get(k)
                if g is None:
                    groups[k] = [b.auction]
                else:
                    g.append(b.auction)
        wm = ctx.watermark
        counts = self.counts
        length, pane_ms = self.window_ms, self.pane_ms
        for pane, auctions in groups.items():
            starts = self._windows(pane)
            if not starts or starts[0] + length <= wm:
                self.late += len(auctions)      # late for every window (or in no window)
                continue
            ctx.key = pane
            if await counts.get() is None:      # a new pane: make sure its windows fire
                for s in starts:
                    if s + length > wm:
                        ctx.key = s // pane_ms
                        ctx.register_event_timer(s + length)
                ctx.key = pane
            await counts.add(auctions)

    async def on_timer(self, end: float, ctx: Context) -> None:
        end = int(end)
        start = end - self.window_ms
        first = start // self.pane_ms
        counts = self.counts
        total: Counter = Counter()
        for pane in range(first, first + self.window_ms // self.pane_ms):
            ctx.key = pane
            acc = await counts.get()
            if acc:
                total.update(acc)
        # Panes before the next window's start are needed by no later window.
        for pane in range(first, first + min(self.slide_ms, self.window_ms) // self.pane_ms):
            ctx.key = pane
            await counts.clear()
        if total:
            top = max(total.values())
            for auction in sorted(a for a, c in total.items() if c == top):
                ctx.emit((end, auction, top))


def q5(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None,
       window_ms: int = 10_000, slide_ms: int = 2_000) -> Topology:
    """q5, *hot items*: per sliding window, the auction(s) with the most bids.

    Windows: length ``window_ms``, a new one every ``slide_ms``, aligned to
    epoch 0 (starts are the multiples of ``slide_ms``), ``[start, start +
    window_ms)``. Per window, the bids of each auction are counted; every
    auction whose count equals the window's maximum is emitted (ties: all of
    them), as ``(window_end_ms, auction, count)``, once the watermark reaches
    the window's end; windows without bids emit nothing. This is Beam's
    ``Query5`` and exactly what ``benchmarks/bytewax_baselines.nexmark_q5``
    computes, with the same defaults (10 s windows every 2 s; Beam's own
    defaults are ``windowSizeSec=10``, ``windowPeriodSec=5``), so the two
    result lists compare as they are (sorted).

    Dataflow: bids keyed by pane -> :class:`HotItems` (parallelism 1).
    """
    _check_ms("q5", window_ms=window_ms, slide_ms=slide_ms)
    pane_ms = gcd(window_ms, slide_ms)
    op = _configured(HotItems, window_ms=window_ms, slide_ms=slide_ms, pane_ms=pane_ms)

    def pane_of(b: Bid) -> int:
        return b.date_time // pane_ms

    return (_start("nexmark-q5", events, config, batch_size)
            .filter("bids", _is_bid)
            .key_by(pane_of, "by-pane")
            .operator("hot-items", op)
            .sink("out", _sink(sink, out, "q5")))


# ----------------------------------------------------------------------------- q7

def _best_bids(a: tuple, b: tuple) -> tuple:
    """Reduce ``(max_price, bids_at_that_price)`` pairs (ties keep all bids, in order)."""
    if a[0] > b[0]:
        return a
    if b[0] > a[0]:
        return b
    return (a[0], a[1] + b[1])


class HighestBid(Operator):
    """q7's operator, keyed by tumbling window index ``date_time // window_ms``.

    Per batch, the bids of each window are reduced to their top price and
    the bids at it (plain Python over the batch), then folded once into the
    window's heap-tiered ``Reducer``; the first fold registers an event-time
    timer at the window's end, which emits every top bid as ``(window_end,
    auction, bidder, price, date_time)`` (in arrival order) and clears the
    window. Bids for a window that already fired are dropped (``late``).
    """

    best = Reducer(_best_bids)
    window_ms = 10_000

    def __init__(self) -> None:
        self.late = 0

    async def on_batch(self, batch: Batch, ctx: Context) -> None:
        keys, values = batch.keys, batch.values
        lo, hi = min(keys), max(keys)  # type: ignore[type-var, arg-type]
        if lo == hi:
            groups = {lo: values}
        else:
            groups = {}
            for k, b in zip(keys, values):  # type: ignore[arg-type]
                g = groups.get(k)
                if g is None:
                    groups[k] = [b]
                else:
                    g.append(b)
        wm = ctx.watermark
        best = self.best
        length = self.window_ms
        for window, bids in groups.items():
            end = (window + 1) * length
            if end <= wm:
                self.late += len(bids)
                continue
            top = max([b.price for b in bids])
            found = tuple([(b.auction, b.bidder, top, b.date_time)
                           for b in bids if b.price == top])
            ctx.key = window
            if await best.get() is None:
                ctx.register_event_timer(end)
            await best.add((top, found))

    async def on_timer(self, end: float, ctx: Context) -> None:
        acc = await self.best.get()
        if acc is not None:
            end = int(end)
            for bid in acc[1]:
                ctx.emit((end, *bid))
        await self.best.clear()


def q7(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None,
       window_ms: int = 10_000) -> Topology:
    """q7, *highest bid*: the bid(s) with the highest price in each tumbling window.

    Windows ``[k * window_ms, (k + 1) * window_ms)`` (Beam's
    ``windowSizeSec``, default 10 s). As Beam's ``Query7`` (max price per
    window, then the bids at that price), every bid at the window's top
    price is emitted, as ``(window_end_ms, auction, bidder, price,
    date_time)``, once the watermark reaches the window's end.

    Dataflow: bids keyed by window index -> :class:`HighestBid`
    (parallelism 1 is not needed for correctness here, as one key holds a
    whole window).
    """
    _check_ms("q7", window_ms=window_ms)
    op = _configured(HighestBid, window_ms=window_ms)

    def window_of(b: Bid) -> int:
        return b.date_time // window_ms

    return (_start("nexmark-q7", events, config, batch_size)
            .filter("bids", _is_bid)
            .key_by(window_of, "by-window")
            .operator("highest-bid", op)
            .sink("out", _sink(sink, out, "q7")))


# ----------------------------------------------------------------------------- q8

class NewUserAuctions(Operator):
    """q8's windowed join, keyed by ``(window index, person id)``: persons (input 0)
    and the auctions they opened (input 1, keyed by seller) in the same tumbling window.

    State per key: the person's name and the reserves of the auctions; the
    first event of a key registers a timer at the window's end, which emits
    ``(window_start, person_id, name, reserve)`` per auction if the person
    registered in that window, then clears the key. Events for a window that
    already fired are dropped (``late``).
    """

    person_name = Value()       # (not `name`: Operator.name is the step's name)
    reserves = Appender()
    window_ms = 10_000

    def __init__(self) -> None:
        self.late = 0

    async def on_element(self, e: Any, ctx: Context) -> None:
        end = (ctx.key[0] + 1) * self.window_ms
        if end <= ctx.watermark:
            self.late += 1
            return
        ctx.register_event_timer(end)
        if ctx.input == 0:
            await self.person_name.set(e.name)
        else:
            await self.reserves.append(e.reserve)

    async def on_timer(self, end: float, ctx: Context) -> None:
        name = await self.person_name.get()
        if name is not None:
            window, person = ctx.key
            for reserve in await self.reserves.get():
                ctx.emit((window * self.window_ms, person, name, reserve))
        await self.person_name.clear()
        await self.reserves.clear()


def q8(events: int | Sequence[Event], *, config: NexmarkConfig = _DEFAULT_CONFIG,
       sink: Sink | None = None, out: str | None = None, batch_size: int | None = None,
       window_ms: int = 10_000) -> Topology:
    """q8, *monitor new users*: people who opened auctions in the window they registered in.

    Tumbling windows of ``window_ms`` (Beam's ``windowSizeSec``, 10 s): persons
    keyed by id and auctions keyed by seller are co-grouped per window, as
    Beam's ``Query8``; for each person registered in a window, one output
    per auction they opened in that same window: ``(window_start_ms,
    person_id, name, reserve)`` (Beam's ``IdNameReserve`` plus the window
    start), emitted when the watermark reaches the window's end.

    Dataflow: two branches keyed by ``(window, person id)`` ``connect``-ed into
    :class:`NewUserAuctions`.
    """
    _check_ms("q8", window_ms=window_ms)

    def person_key(p: Person) -> tuple[int, int]:
        return (p.date_time // window_ms, p.id)

    def seller_key(a: Auction) -> tuple[int, int]:
        return (a.date_time // window_ms, a.seller)

    return (_start("nexmark-q8", events, config, batch_size)
            .filter("persons", _is_person, input="events")
            .key_by(person_key, "persons-by-window")
            .filter("auctions", _is_auction, input="events")
            .key_by(seller_key, "auctions-by-window")
            .connect("join", "persons-by-window", "auctions-by-window",
                     _configured(NewUserAuctions, window_ms=window_ms))
            .sink("out", _sink(sink, out, "q8")))


# -------------------------------------------------------------------------- build

#: Query name -> builder.
QUERIES: dict[str, Callable[..., Topology]] = {
    "q0": q0, "q1": q1, "q2": q2, "q3": q3, "q4": q4, "q5": q5, "q7": q7, "q8": q8,
}


def build(query: str, events: int | Sequence[Event], *,
          config: NexmarkConfig = _DEFAULT_CONFIG, sink: Sink | None = None,
          out: str | None = None, **options: Any) -> Topology:
    """The topology of ``query`` ("q0" ... "q8") over ``events``; ``options`` go to its
    builder (e.g. ``window_ms``/``slide_ms`` for q5, ``batch_size`` for all)."""
    try:
        builder = QUERIES[query.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"unknown Nexmark query {query!r}; expected one of "
                         f"{', '.join(QUERIES)}") from None
    return builder(events, config=config, sink=sink, out=out, **options)
