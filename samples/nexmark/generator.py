"""Deterministic, random-access Nexmark event generator.

Follows the Apache Beam Nexmark generator
(``org.apache.beam.sdk.nexmark.sources.generator``: ``GeneratorConfig``,
``PersonGenerator``, ``AuctionGenerator``, ``BidGenerator``, ``PriceGenerator``,
``StringsGenerator``; channels/urls as in the later Beam/Flink ``BidGenerator``).
Each event is a pure function of ``(config, index)``, so a source can start or
resume at any offset without replaying the stream: ``event_at(i, cfg)`` is the
``i``-th element of ``generate(n, cfg)``.

What matches Beam:

* Event kinds cycle with period ``person + auction + bid`` proportions (1:3:46 by
  default): within each period the first slots are persons, then auctions, then
  bids. Kinds and ids derive from the event id ``first_event_id + index``.
* Person and auction ids start at ``FIRST_PERSON_ID`` / ``FIRST_AUCTION_ID``
  (1000) and follow Beam's ``lastBase0PersonId`` / ``lastBase0AuctionId``;
  categories are ``FIRST_CATEGORY_ID + [0, 5)``.
* Hot sellers / auctions / bidders are chosen with probability ``1 - 1/ratio``
  as the first (second, for bidders) member of the latest batch of 100; the rest
  pick a random in-flight auction or active person.
* Prices are ``round(10 ** (u * 6) * 100)``; strings, names, cities, states,
  credit cards, channels ("Google", "Facebook", "Baidu", "Apple" half the time,
  otherwise ``channel-<n>`` for n < 10,000) and urls look like Beam's; auction
  lengths average the time until ``num_in_flight_auctions`` more auctions exist.

Deliberate differences (each for a property Beam does not give):

* Referential integrity: Beam lets references run up to 10 ids ahead
  (``PERSON_ID_LEAD`` / ``AUCTION_ID_LEAD``) and its hot bidder ``batch + 1`` can
  also be a person not yet created. Here every seller, bidder and bid auction is
  an id whose Person/Auction event has an index at or before the referring
  event (with ``first_event_id=0``; otherwise "exists" is in event-id space).
* Timestamps use exact integer arithmetic: ``base_time +
  floor(index * 1000 / first_event_rate)``, i.e. the truncated accumulated
  inter-event delay without float round-off (in floats ``int(195 * (1000 / 3))``
  is 64999, not 65000).
* Disorder is bounded: with ``max_out_of_order_ms = d`` each event's date_time
  is shifted back by a pseudo-random amount in ``[0, d]``, so for any ``i < j``,
  ``ts[j] >= ts[i] - d`` (Beam's ``outOfOrderGroupSize`` is not modelled).
* Randomness is a splitmix64-style hash of ``(seed, event id, field)`` rather
  than ``java.util.Random``, and strings are slices of fixed pseudo-random text
  pools, so values are Beam-*like*, not Beam-identical, and stable across
  Python versions.
* Sizes: ``event_size`` counts 8 bytes per int field plus the length of every
  str field (Beam ignores some), and ``extra`` is padded to
  ``avg - size ± 20%`` so mean sizes land near the configured averages. Bids
  cannot shrink below channel + url (a url is 52-77 chars), so at the default
  100 bytes they average about 108.

Performance: ``generate`` made 266,000-310,000 events/s on one core (six runs
of 1,000,000 events with the default config, CPython 3.11, on a shared 2-core
machine; ``python -c "from samples.nexmark.generator import _bench;
print(_bench())"``). ``event_at`` adds about 1 us per call (config lookup).
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction
from typing import Callable, Iterator, Union

import attrs

__all__ = [
    "AUCTION",
    "BID",
    "CHANNELS_NUMBER",
    "DEFAULT_BASE_TIME_MS",
    "FIRST_AUCTION_ID",
    "FIRST_CATEGORY_ID",
    "FIRST_PERSON_ID",
    "HOT_CHANNELS",
    "NUM_CATEGORIES",
    "PERSON",
    "Auction",
    "Bid",
    "Event",
    "NexmarkConfig",
    "Person",
    "event_at",
    "event_size",
    "generate",
    "kind_of",
]

# --- Beam constants -----------------------------------------------------------

FIRST_PERSON_ID = 1000
"""Id of the first person (Beam ``GeneratorConfig.FIRST_PERSON_ID``)."""
FIRST_AUCTION_ID = 1000
"""Id of the first auction (Beam ``GeneratorConfig.FIRST_AUCTION_ID``)."""
FIRST_CATEGORY_ID = 10
"""Lowest auction category (Beam ``GeneratorConfig.FIRST_CATEGORY_ID``)."""
NUM_CATEGORIES = 5
"""Number of auction categories; few so small runs still find matches."""
HOT_CHANNELS = ("Google", "Facebook", "Baidu", "Apple")
"""Channels that receive half of all bids (Beam ``BidGenerator.HOT_CHANNELS``)."""
CHANNELS_NUMBER = 10_000
"""Number of distinct non-hot ``channel-<n>`` channels."""
DEFAULT_BASE_TIME_MS = 1_436_918_400_000
"""Default ``base_time``: 2015-07-15T00:00:00Z in epoch ms (arbitrary but fixed)."""

PERSON = "person"
AUCTION = "auction"
BID = "bid"

# Hot entities are the first (sellers, auctions) or second (bidders) member of
# the most recent batch of this many ids, as in Beam.
_HOT_BATCH = 100
_MIN_STRING_LENGTH = 3  # Beam StringsGenerator.MIN_STRING_LENGTH
_US_STATES = ("AZ", "CA", "ID", "OR", "WA", "WY")
_US_CITIES = ("Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
              "Bend", "Redmond", "Seattle", "Kent", "Cheyenne")
_FIRST_NAMES = ("Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate",
                "Julie", "Sarah", "Deiter", "Walter")
_LAST_NAMES = ("Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton",
               "Smith", "Jones", "Noris")


# --- Event model ---------------------------------------------------------------

@attrs.frozen
class Person:
    """A person registering with the auction site (Beam ``model.Person``)."""

    id: int
    name: str
    email_address: str
    credit_card: str
    city: str
    state: str
    date_time: int  # epoch ms
    extra: str


@attrs.frozen
class Auction:
    """An item put up for auction by ``seller`` (Beam ``model.Auction``)."""

    id: int
    item_name: str
    description: str
    initial_bid: int
    reserve: int
    date_time: int  # epoch ms
    expires: int  # epoch ms, > date_time
    seller: int
    category: int
    extra: str


@attrs.frozen
class Bid:
    """A bid by ``bidder`` on ``auction`` (Beam ``model.Bid``)."""

    auction: int
    bidder: int
    price: int
    channel: str
    url: str
    date_time: int  # epoch ms
    extra: str


Event = Union[Person, Auction, Bid]
"""Any Nexmark event."""


def event_size(event: Event) -> int:
    """Approximate byte size of ``event``: 8 per int field plus each str's length.

    This is the measure ``extra`` is padded against, so its mean over a stream
    is near the configured ``avg_*_byte_size`` (when that exceeds the unpadded
    size).
    """
    size = 0
    for field in attrs.fields(type(event)):
        value = getattr(event, field.name)
        size += len(value) if isinstance(value, str) else 8
    return size


# --- Configuration -------------------------------------------------------------

def _check_int(name: str, value: object, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"NexmarkConfig.{name} must be an int, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"NexmarkConfig.{name} must be >= {minimum}, got {value}")


@attrs.frozen(cache_hash=True)  # cached: event_at looks plans up by config
class NexmarkConfig:
    """Generator parameters, with Beam's ``NexmarkConfiguration`` defaults.

    ``first_event_rate`` (events/s) sets the inter-event delay of
    ``1000 / first_event_rate`` ms; ``*_proportion`` set the kind mix;
    ``num_active_people`` / ``num_in_flight_auctions`` bound the window random
    references are drawn from; ``hot_*_ratio`` r makes a reference hot with
    probability ``1 - 1/r`` (1 disables hot picks); ``avg_*_byte_size`` are the
    targets for ``event_size``; ``base_time`` is the date_time of index 0
    (``DEFAULT_BASE_TIME_MS``, 2015-07-15T00:00:00Z); ``seed`` selects the
    pseudo-random stream; ``max_out_of_order_ms`` bounds how far an event's
    date_time may be shifted back; ``first_event_id`` offsets the event id that
    kinds, ids and random fields derive from (Beam's ``firstEventId``).

    Raises TypeError for non-int fields and ValueError for out-of-range ones.
    """

    first_event_rate: float = 10_000
    person_proportion: int = 1
    auction_proportion: int = 3
    bid_proportion: int = 46
    num_active_people: int = 1000
    num_in_flight_auctions: int = 100
    hot_auction_ratio: int = 2
    hot_seller_ratio: int = 4
    hot_bidder_ratio: int = 4
    avg_person_byte_size: int = 200
    avg_auction_byte_size: int = 500
    avg_bid_byte_size: int = 100
    base_time: int = DEFAULT_BASE_TIME_MS
    seed: int = 0
    max_out_of_order_ms: int = 0
    first_event_id: int = 0

    def __attrs_post_init__(self) -> None:
        rate = self.first_event_rate
        if isinstance(rate, bool) or not isinstance(rate, (int, float)):
            raise TypeError(f"NexmarkConfig.first_event_rate must be a number, got {rate!r}")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"NexmarkConfig.first_event_rate must be finite and > 0, got {rate}")
        for name in ("person_proportion", "auction_proportion", "bid_proportion",
                     "num_in_flight_auctions", "avg_person_byte_size",
                     "avg_auction_byte_size", "avg_bid_byte_size",
                     "max_out_of_order_ms", "first_event_id"):
            _check_int(name, getattr(self, name), 0)
        for name in ("num_active_people", "hot_auction_ratio", "hot_seller_ratio",
                     "hot_bidder_ratio"):
            _check_int(name, getattr(self, name), 1)
        _check_int("base_time", self.base_time, None)
        _check_int("seed", self.seed, None)
        p, a, b = self.person_proportion, self.auction_proportion, self.bid_proportion
        if p + a + b == 0:
            raise ValueError("NexmarkConfig proportions must not all be 0")
        # Auctions need a seller and bids an auction and a bidder to refer to.
        if a and not p:
            raise ValueError("NexmarkConfig.auction_proportion > 0 needs person_proportion > 0")
        if b and not (p and a):
            raise ValueError(
                "NexmarkConfig.bid_proportion > 0 needs person_proportion > 0 "
                "and auction_proportion > 0")


_DEFAULT_CONFIG = NexmarkConfig()

# --- Hashing and string pools --------------------------------------------------

_M64 = 0xFFFF_FFFF_FFFF_FFFF
_GAMMA = 0x9E37_79B9_7F4A_7C15  # splitmix64 increment
_MUL1 = 0xBF58_476D_1CE4_E5B9
_MUL2 = 0x94D0_49BB_1331_11EB
# Constants xor-ed into an event's first hash to derive further independent words.
_C1, _C2, _C3, _C4 = (0x5851_F42D_4C95_7F2D, 0x1405_7B7E_F767_814F,
                      0x2545_F491_4F6C_DD1D, 0xD6E8_FEB8_6659_FD93)
_PRICE_SCALE = 6.0 / (1 << 40)  # 40 random bits -> [0, 6) exponent


def _mix64(z: int) -> int:
    """splitmix64 finaliser: a cheap, well-mixed 64-bit hash of ``z``."""
    z &= _M64
    z = ((z ^ (z >> 30)) * _MUL1) & _M64
    z = ((z ^ (z >> 27)) * _MUL2) & _M64
    return z ^ (z >> 31)


_POOL_SPAN = 1 << 16  # string offsets are 16-bit
_LETTER_TABLE = bytes(97 + b % 26 for b in range(256))
# ~1 in 13 chars is a space, like Beam's nextString.
_TEXT_TABLE = bytes(32 if b < 20 else 97 + b % 26 for b in range(256))


def _pool(key: int, length: int, table: bytes) -> str:
    """``length`` pseudo-random chars from ``table``, fixed by ``key``."""
    raw = b"".join(_mix64(key + k * _GAMMA).to_bytes(8, "little")
                   for k in range(1, length // 8 + 2))
    return raw[:length].translate(table).decode("ascii")


# Slicing fixed pools is ~100x cheaper than drawing strings char by char; the
# pools are seed-independent (the seed picks offsets and lengths).
_TEXT = _pool(0x7E47, _POOL_SPAN + 128, _TEXT_TABLE)
_LETTERS = _pool(0x1E77, _POOL_SPAN + 1024, _LETTER_TABLE)


def _base_url(key: int) -> str:
    """A Beam-like item url: three short path segments with '_' for spaces."""
    segs = []
    for k in (1, 2, 3):
        h = _mix64(key + k * _GAMMA)
        o = (h >> 8) & 0xFFFF
        segs.append(_TEXT[o:o + _MIN_STRING_LENGTH + (h & 1)].replace(" ", "_"))
    return "https://www.nexmark.com/" + "/".join(segs) + "/item.htm?query=1"


_HOT_URLS = tuple(_base_url(_mix64(0x407 + i)) for i in range(len(HOT_CHANNELS)))


def _java_reverse_abs(n: int) -> int:
    """``abs(Integer.reverse(n))`` for 0 <= n < 2**31, as in Beam's channel ids.

    Gives 2**31 for n == 1, where Java's abs overflows to a negative value.
    """
    r = int(f"{n:032b}"[::-1], 2)
    return (1 << 32) - r if r >= 1 << 31 else r


@functools.lru_cache(maxsize=None)  # at most CHANNELS_NUMBER entries
def _channel(n: int) -> tuple[str, str]:
    """``(channel, url)`` of non-hot channel ``n``; fixed per n, as Beam caches them."""
    key = _mix64(0xC4A7 + n * _GAMMA)
    url = _base_url(key)
    if key % 10:  # 9 in 10 urls carry the channel id, as in Beam
        url += f"&channel_id={_java_reverse_abs(n)}"
    return f"channel-{n}", url


def _extra_span(avg: int, current: int) -> tuple[int, int]:
    """``(min_size, span)`` so ``min_size + [0, span)`` averages ``avg - current``.

    Beam's nextExtra: ``desired ± 20%``, empty when already over the average.
    """
    if current > avg:
        return 0, 1
    want = avg - current
    delta = int(want * 0.2 + 0.5)  # Java Math.round
    return want - delta, 2 * delta + 1


# --- Per-config plan -----------------------------------------------------------

_Maker = Callable[[int, int], Event]

# Building frozen slotted instances through their slot descriptors is ~2x faster
# than the attrs __init__ (the classes have no validators or converters, which
# tests/test_nexmark_generator.py checks).
_new = object.__new__


def _slot_setters(cls: type) -> tuple:
    return tuple(getattr(cls, a.name).__set__ for a in attrs.fields(cls))


class _Plan:
    """Per-config constants and the three event makers, built once per config."""

    __slots__ = ("total", "kinds", "makers", "first_event_id")

    def __init__(self, cfg: NexmarkConfig) -> None:
        P, A, B = cfg.person_proportion, cfg.auction_proportion, cfg.bid_proportion
        T = P + A + B
        self.total = T
        self.first_event_id = cfg.first_event_id
        self.kinds = (PERSON,) * P + (AUCTION,) * A + (BID,) * B
        P1, A1 = P - 1, A - 1

        delay = Fraction(1000) / Fraction(cfg.first_event_rate)  # ms per event, exact
        num, den, base = delay.numerator, delay.denominator, cfg.base_time
        ooo = cfg.max_out_of_order_ms
        ooo1 = ooo + 1
        seed = cfg.seed & _M64
        ka = _mix64(seed ^ 0x4E45_584D_4152_4B00)  # content stream key
        kd = _mix64(seed ^ 0x4E45_584D_4152_4B01)  # disorder stream key
        nap, nif = cfg.num_active_people, cfg.num_in_flight_auctions
        har, hsr, hbr = cfg.hot_auction_ratio, cfg.hot_seller_ratio, cfg.hot_bidder_ratio
        avg_p, avg_a, avg_b = (cfg.avg_person_byte_size, cfg.avg_auction_byte_size,
                               cfg.avg_bid_byte_size)
        # Events until num_in_flight_auctions more auctions exist (Beam's horizon).
        auction_horizon_events = (nif * T) // A if A else 0

        max_extra = max(avg_p, avg_a, avg_b) * 6 // 5 + 2
        letters = _LETTERS
        if len(letters) < _POOL_SPAN + max_extra:
            letters = (letters * (max_extra // len(letters) + 2))[:_POOL_SPAN + max_extra]
        text = _TEXT
        mix = _mix64
        new = _new
        # Closure cells, not module globals, for the hot paths.
        G, M, MUL1, MUL2 = _GAMMA, _M64, _MUL1, _MUL2
        C1, C2, C3, C4 = _C1, _C2, _C3, _C4
        NCH = CHANNELS_NUMBER
        PS = _PRICE_SCALE
        HB = _HOT_BATCH
        FP, FA, FC = FIRST_PERSON_ID, FIRST_AUCTION_ID, FIRST_CATEGORY_ID

        def stamp(i: int, e: int) -> int:
            ts = base + (i * num) // den
            if ooo:
                ts -= mix(kd + e * G) % ooo1
            return ts

        def recent_person(lp: int, r32: int) -> int:
            # One of the last num_active_people persons created (Beam without lead).
            n = lp + 1
            act = n if n < nap else nap
            return n - act + ((r32 * act) >> 32)

        sp_id, sp_name, sp_email, sp_cc, sp_city, sp_state, sp_dt, sp_extra = \
            _slot_setters(Person)

        def person(i: int, e: int) -> Person:
            epoch, off = divmod(e, T)
            ha = mix(ka + e * G)
            hb = mix(ha ^ C1)
            hc = mix(ha ^ C2)
            name = (_FIRST_NAMES[((ha & 0xFFFF) * 11) >> 16] + " "
                    + _LAST_NAMES[(((ha >> 16) & 0xFFFF) * 9) >> 16])
            o1, o2 = (ha >> 32) & 0xFFFF, ha >> 48
            email = (letters[o1:o1 + 3 + (hc & 3)] + "@"
                     + letters[o2:o2 + 3 + ((hc >> 2) & 1)] + ".com")
            cc = "%04d %04d %04d %04d" % (
                (hb & 0xFFFF) % 10000, ((hb >> 16) & 0xFFFF) % 10000,
                ((hb >> 32) & 0xFFFF) % 10000, (hb >> 48) % 10000)
            city = _US_CITIES[(((hc >> 8) & 0xFFFF) * 10) >> 16]
            state = _US_STATES[(((hc >> 24) & 0xFFFF) * 6) >> 16]
            mn, span = _extra_span(avg_p, 16 + len(name) + len(email) + len(cc)
                                   + len(city) + len(state))
            o = (hc >> 40) & 0xFFFF
            extra = letters[o:o + mn + (((hc >> 56) * span) >> 8)]
            obj = new(Person)
            sp_id(obj, epoch * P + off + FP)
            sp_name(obj, name)
            sp_email(obj, email)
            sp_cc(obj, cc)
            sp_city(obj, city)
            sp_state(obj, state)
            sp_dt(obj, stamp(i, e))
            sp_extra(obj, extra)
            return obj

        (sa_id, sa_name, sa_desc, sa_init, sa_res, sa_dt, sa_exp, sa_seller, sa_cat,
         sa_extra) = _slot_setters(Auction)

        def auction(i: int, e: int) -> Auction:
            epoch, off = divmod(e, T)
            lp = epoch * P + P1
            ha = mix(ka + e * G)
            hb = mix(ha ^ C1)
            hc = mix(ha ^ C2)
            hd = mix(ha ^ C3)
            if (hc & 0xFFFF) % hsr:
                seller = lp // HB * HB  # hot: first of the latest batch of persons
            else:
                seller = recent_person(lp, hd & 0xFFFFFFFF)
            initial = round(10.0 ** ((ha >> 24) * PS) * 100.0)
            reserve = initial + round(10.0 ** ((hb >> 24) * PS) * 100.0)
            o1, o2 = ha & 0xFFFF, hb & 0xFFFF
            name = text[o1:o1 + 3 + ((((hc >> 32) & 0xFFFF) * 17) >> 16)].strip()
            desc = text[o2:o2 + 3 + (((hc >> 48) * 97) >> 16)].strip()
            nominal = base + (i * num) // den
            ts = nominal - mix(kd + e * G) % ooo1 if ooo else nominal
            horizon = base + ((i + auction_horizon_events) * num) // den - nominal
            expires = ts + 1 + (((hd >> 32) * max(2 * horizon, 1)) >> 32)
            mn, span = _extra_span(avg_a, 56 + len(name) + len(desc))
            he = mix(ha ^ C4)
            o = he & 0xFFFF
            extra = letters[o:o + mn + ((((he >> 16) & 0xFFFF) * span) >> 16)]
            obj = new(Auction)
            sa_id(obj, epoch * A + off - P + FA)
            sa_name(obj, name)
            sa_desc(obj, desc)
            sa_init(obj, initial)
            sa_res(obj, reserve)
            sa_dt(obj, ts)
            sa_exp(obj, expires)
            sa_seller(obj, seller + FP)
            sa_cat(obj, FC + ((((hc >> 16) & 0xFFFF) * NUM_CATEGORIES) >> 16))
            sa_extra(obj, extra)
            return obj

        # Channel tables with the bid's extra padding precomputed per channel,
        # since channel and url are a bid's only variable-size fields.
        def channel_entry(ch: str, url: str) -> tuple[str, str, int, int]:
            return (ch, url) + _extra_span(avg_b, 32 + len(ch) + len(url))

        hot = tuple(channel_entry(c, u) for c, u in zip(HOT_CHANNELS, _HOT_URLS))
        chans: list = [None] * CHANNELS_NUMBER
        sb_auc, sb_bidder, sb_price, sb_ch, sb_url, sb_dt, sb_extra = _slot_setters(Bid)

        def bid(i: int, e: int) -> Bid:
            epoch = e // T
            la = epoch * A + A1  # last auction created so far (base 0)
            lp = epoch * P + P1  # last person created so far (base 0)
            # Two hash words cover the common (hot) path; mix64 inlined for speed.
            h = (ka + e * G) & M
            h = ((h ^ (h >> 30)) * MUL1) & M
            h = ((h ^ (h >> 27)) * MUL2) & M
            ha = h ^ (h >> 31)
            h = ha ^ C1
            h = ((h ^ (h >> 30)) * MUL1) & M
            h = ((h ^ (h >> 27)) * MUL2) & M
            hb = h ^ (h >> 31)
            hc = -1
            if (hb & 0xFFFF) % har:
                auc = la // HB * HB  # hot: first of the latest batch of auctions
            else:
                hc = mix(ha ^ C2)
                lo = la - nif if la > nif else 0
                auc = lo + (((hc & 0xFFFFFFFF) * (la - lo + 1)) >> 32)
            if ((hb >> 16) & 0xFFFF) % hbr:
                # Hot: second of the latest batch of persons (Beam's +1), but
                # never a person not created yet.
                bidder = lp // HB * HB + 1
                if bidder > lp:
                    bidder = lp
            else:
                if hc < 0:
                    hc = mix(ha ^ C2)
                n = lp + 1
                act = n if n < nap else nap
                bidder = n - act + (((hc >> 32) * act) >> 32)
            cb = hb >> 32
            if cb & 1:  # HOT_CHANNELS_RATIO = 2
                entry = hot[(cb >> 1) & 3]
            else:
                k = (((cb >> 1) & 0x7FFF) * NCH) >> 15
                entry = chans[k]
                if entry is None:
                    entry = chans[k] = channel_entry(*_channel(k))
            ch, url, mn, span = entry
            o = ha & 0xFFFF
            ts = base + (i * num) // den
            if ooo:
                ts -= mix(kd + e * G) % ooo1
            obj = new(Bid)
            sb_auc(obj, auc + FA)
            sb_bidder(obj, bidder + FP)
            sb_price(obj, round(10.0 ** ((ha >> 24) * PS) * 100.0))
            sb_ch(obj, ch)
            sb_url(obj, url)
            sb_dt(obj, ts)
            sb_extra(obj, letters[o:o + mn + (((hb >> 48) * span) >> 16)])
            return obj

        self.makers: tuple[_Maker, ...] = (person,) * P + (auction,) * A + (bid,) * B


@functools.lru_cache(maxsize=64)
def _plan_for(config: NexmarkConfig) -> _Plan:
    return _Plan(config)


def _check_index(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


# --- Public API ----------------------------------------------------------------

def kind_of(index: int, config: NexmarkConfig | None = None) -> str:
    """Kind of event ``index``: ``"person"``, ``"auction"`` or ``"bid"``.

    Kinds repeat with period ``person + auction + bid`` proportions over the
    event id ``config.first_event_id + index``: persons first, then auctions,
    then bids.
    """
    _check_index("index", index)
    plan = _plan_for(config or _DEFAULT_CONFIG)
    return plan.kinds[(index + plan.first_event_id) % plan.total]


def event_at(index: int, config: NexmarkConfig | None = None) -> Event:
    """The event at 0-based stream position ``index``, from the index alone.

    Pure and random access: equal to the ``index``-th element of
    ``generate(index + 1, config)``.
    """
    _check_index("index", index)
    plan = _plan_for(config or _DEFAULT_CONFIG)
    e = index + plan.first_event_id
    return plan.makers[e % plan.total](index, e)


def generate(n: int, config: NexmarkConfig | None = None,
             start: int = 0) -> Iterator[Event]:
    """Events ``start .. start + n - 1``, each equal to ``event_at(i, config)``.

    Arguments are validated eagerly; iteration holds no state beyond the
    position, so a consumer may stop and resume with another ``start``.
    """
    _check_index("n", n)
    _check_index("start", start)
    plan = _plan_for(config or _DEFAULT_CONFIG)
    return _iterate(plan, start, start + n)


def _iterate(plan: _Plan, start: int, stop: int) -> Iterator[Event]:
    makers, total, first = plan.makers, plan.total, plan.first_event_id
    for i in range(start, stop):
        e = i + first
        yield makers[e % total](i, e)


def _bench(n: int = 1_000_000) -> float:
    """Events/s of ``generate`` with the default config (for the docstring)."""
    import time

    t0 = time.perf_counter()
    for _ in generate(n):
        pass
    return n / (time.perf_counter() - t0)

