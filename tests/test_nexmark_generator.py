"""Tests of the deterministic Nexmark generator (samples/nexmark/generator.py)."""
from __future__ import annotations

import hashlib
import math
import os
import pickle
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import attrs
import pytest

import samples.nexmark as nexmark_pkg
from samples.nexmark.generator import (
    CHANNELS_NUMBER,
    DEFAULT_BASE_TIME_MS,
    FIRST_AUCTION_ID,
    FIRST_CATEGORY_ID,
    FIRST_PERSON_ID,
    HOT_CHANNELS,
    NUM_CATEGORIES,
    Auction,
    Bid,
    NexmarkConfig,
    Person,
    event_at,
    event_size,
    generate,
    kind_of,
)

REPO = Path(__file__).resolve().parents[1]
KIND_OF_TYPE = {Person: "person", Auction: "auction", Bid: "bid"}


def _digest(events) -> str:
    return hashlib.sha256(repr(list(events)).encode()).hexdigest()


# --- determinism and random access ----------------------------------------------

def test_defaults_match_beam():
    c = NexmarkConfig()
    assert (c.first_event_rate, c.person_proportion, c.auction_proportion,
            c.bid_proportion) == (10_000, 1, 3, 46)
    assert (c.num_active_people, c.num_in_flight_auctions, c.hot_auction_ratio,
            c.hot_seller_ratio, c.hot_bidder_ratio) == (1000, 100, 2, 4, 4)
    assert (c.avg_person_byte_size, c.avg_auction_byte_size,
            c.avg_bid_byte_size) == (200, 500, 100)
    assert (c.base_time, c.seed, c.max_out_of_order_ms, c.first_event_id) == (
        DEFAULT_BASE_TIME_MS, 0, 0, 0)


def test_same_config_same_events():
    a = list(generate(3000, NexmarkConfig(seed=7)))
    b = list(generate(3000, NexmarkConfig(seed=7)))
    assert a == b
    assert list(generate(500)) == list(generate(500, NexmarkConfig()))


def test_deterministic_across_processes():
    # Nothing may depend on hash randomisation or other per-process state.
    code = ("import hashlib, sys; from samples.nexmark.generator import generate, NexmarkConfig;"
            "sys.stdout.write(hashlib.sha256(repr(list(generate(2000, NexmarkConfig("
            "seed=3, max_out_of_order_ms=20)))).encode()).hexdigest())")
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out == _digest(generate(2000, NexmarkConfig(seed=3, max_out_of_order_ms=20)))


def test_different_seed_different_events_same_structure():
    a = list(generate(2000, NexmarkConfig(seed=1)))
    b = list(generate(2000, NexmarkConfig(seed=2)))
    assert a != b
    bids_a = [e for e in a if isinstance(e, Bid)]
    bids_b = [e for e in b if isinstance(e, Bid)]
    assert sum(x != y for x, y in zip(bids_a, bids_b)) > 0.9 * len(bids_a)
    # Kinds, ids and timestamps do not depend on the seed.
    assert [type(e) for e in a] == [type(e) for e in b]
    assert [e.id for e in a if not isinstance(e, Bid)] == [
        e.id for e in b if not isinstance(e, Bid)]
    assert [e.date_time for e in a] == [e.date_time for e in b]


@pytest.mark.parametrize("config", [
    NexmarkConfig(),
    NexmarkConfig(seed=99, max_out_of_order_ms=250, first_event_id=17),
    NexmarkConfig(person_proportion=2, auction_proportion=5, bid_proportion=13,
                  first_event_rate=333.3),
])
def test_random_access_matches_generate(config):
    events = list(generate(3000, config))
    assert len(events) == 3000
    for i in list(range(120)) + list(range(0, 3000, 37)) + [2999]:
        assert event_at(i, config) == events[i]
    for k, n in ((0, 0), (0, 10), (1, 99), (49, 51), (1234, 700), (2990, 10)):
        assert list(generate(n, config, start=k)) == events[k:k + n]
    # Resuming far away needs no history.
    assert list(generate(3, config, start=10**9)) == [
        event_at(10**9 + j, config) for j in range(3)]


def test_default_config_is_used_when_omitted():
    assert event_at(123) == event_at(123, NexmarkConfig())
    assert kind_of(4) == "bid"


def test_first_event_id_shifts_content_not_timestamps():
    base, shifted = NexmarkConfig(), NexmarkConfig(first_event_id=7)
    for i in range(300):
        assert kind_of(i, shifted) == kind_of(i + 7, base)
        a, b = event_at(i, shifted), event_at(i + 7, base)
        assert a.date_time == DEFAULT_BASE_TIME_MS + i // 10
        if isinstance(a, Bid):
            assert attrs.evolve(a, date_time=b.date_time) == b
        else:
            assert a.id == b.id


# --- kinds and ids --------------------------------------------------------------

def test_mix_is_exactly_1_3_46():
    events = list(generate(5000))
    counts = Counter(type(e) for e in events)
    assert counts == {Person: 100, Auction: 300, Bid: 4600}
    for i, e in enumerate(events):
        expected = "person" if i % 50 < 1 else "auction" if i % 50 < 4 else "bid"
        assert kind_of(i) == expected == KIND_OF_TYPE[type(e)]


def test_custom_proportions():
    c = NexmarkConfig(person_proportion=2, auction_proportion=5, bid_proportion=13)
    counts = Counter(type(e) for e in generate(2000, c))
    assert counts == {Person: 200, Auction: 500, Bid: 1300}
    only_people = NexmarkConfig(person_proportion=1, auction_proportion=0, bid_proportion=0)
    assert [e.id for e in generate(5, only_people)] == [1000, 1001, 1002, 1003, 1004]


@pytest.mark.parametrize("config", [
    NexmarkConfig(),
    # No hot picks: every reference is a random recent id.
    NexmarkConfig(seed=5, hot_auction_ratio=1, hot_seller_ratio=1, hot_bidder_ratio=1,
                  num_active_people=7, num_in_flight_auctions=3),
    # Almost always hot.
    NexmarkConfig(seed=6, hot_auction_ratio=1000, hot_seller_ratio=1000,
                  hot_bidder_ratio=1000),
])
def test_ids_and_references_exist_at_or_before_use(config):
    """Ids start at 1000 and are consecutive; references never point forward."""
    next_person, next_auction = FIRST_PERSON_ID, FIRST_AUCTION_ID
    nap, nif = config.num_active_people, config.num_in_flight_auctions
    for e in generate(30_000, config):
        if isinstance(e, Person):
            assert e.id == next_person
            next_person += 1
        elif isinstance(e, Auction):
            assert e.id == next_auction
            next_auction += 1
            last_person = next_person - 1
            assert max(FIRST_PERSON_ID, last_person - max(nap, 100)) <= e.seller <= last_person
        else:
            last_person, last_auction = next_person - 1, next_auction - 1
            assert max(FIRST_AUCTION_ID, last_auction - max(nif, 100)) <= e.auction <= last_auction
            assert max(FIRST_PERSON_ID, last_person - max(nap, 100)) <= e.bidder <= last_person
    assert next_person == FIRST_PERSON_ID + 600
    assert next_auction == FIRST_AUCTION_ID + 1800


def test_hot_ratios_take_effect():
    def hot_auction_share(config):
        bids = [e for e in generate(20_000, config) if isinstance(e, Bid)]
        return sum((b.auction - FIRST_AUCTION_ID) % 100 == 0 for b in bids) / len(bids)

    # Beam: P(hot) = 1 - 1/ratio, plus random picks that happen to be a batch head.
    assert 0.45 < hot_auction_share(NexmarkConfig()) < 0.6
    assert hot_auction_share(NexmarkConfig(hot_auction_ratio=1)) < 0.05
    assert hot_auction_share(NexmarkConfig(hot_auction_ratio=10)) > 0.85


def test_field_values_look_like_beam():
    events = list(generate(20_000, NexmarkConfig(seed=11)))
    people = [e for e in events if isinstance(e, Person)]
    auctions = [e for e in events if isinstance(e, Auction)]
    bids = [e for e in events if isinstance(e, Bid)]
    for p in people:
        assert re.fullmatch(r"[A-Z][a-z]+ [A-Z][a-z]+", p.name)
        assert re.fullmatch(r"[a-z]{3,6}@[a-z]{3,4}\.com", p.email_address)
        assert re.fullmatch(r"\d{4} \d{4} \d{4} \d{4}", p.credit_card)
        assert p.state in ("AZ", "CA", "ID", "OR", "WA", "WY")
    assert {a.category for a in auctions} == set(
        range(FIRST_CATEGORY_ID, FIRST_CATEGORY_ID + NUM_CATEGORIES))
    for a in auctions:
        assert 100 <= a.initial_bid <= a.reserve
        assert a.expires > a.date_time
        assert len(a.item_name) < 20 and len(a.description) < 100
    prices = [b.price for b in bids]
    assert 100 <= min(prices) and max(prices) <= 100_000_000
    # log10(price / 100) is uniform on [0, 6): median price is about 10**3 * 100.
    median = sorted(prices)[len(prices) // 2]
    assert 10**4.7 < median < 10**5.3
    hot = sum(b.channel in HOT_CHANNELS for b in bids) / len(bids)
    assert 0.45 < hot < 0.55
    for b in bids:
        assert b.url.startswith("https://www.nexmark.com/")
        if b.channel not in HOT_CHANNELS:
            m = re.fullmatch(r"channel-(\d+)", b.channel)
            assert m and int(m.group(1)) < CHANNELS_NUMBER
    # A channel always maps to the same url.
    urls = {}
    for b in bids:
        assert urls.setdefault(b.channel, b.url) == b.url


# --- timestamps -----------------------------------------------------------------

def test_timestamps_in_order_without_disorder():
    events = list(generate(5000))
    ts = [e.date_time for e in events]
    assert ts[0] == DEFAULT_BASE_TIME_MS
    assert all(a <= b for a, b in zip(ts, ts[1:]))
    # 10,000 events/s: one millisecond per 10 events.
    assert ts == [DEFAULT_BASE_TIME_MS + i // 10 for i in range(5000)]


def test_timestamps_exact_for_fractional_delay():
    c = NexmarkConfig(first_event_rate=3, base_time=0)  # 333.33... ms apart
    assert [event_at(i, c).date_time for i in range(30)] == [i * 1000 // 3 for i in range(30)]
    c = NexmarkConfig(first_event_rate=10.0, base_time=5)  # 100 ms, float rate
    assert [event_at(i, c).date_time for i in range(60)] == [5 + 100 * i for i in range(60)]


@pytest.mark.parametrize("bound", [1, 7, 250])
def test_disorder_is_bounded(bound):
    c = NexmarkConfig(max_out_of_order_ms=bound, seed=bound)
    ts = [e.date_time for e in generate(20_000, c)]
    nominal = [DEFAULT_BASE_TIME_MS + i // 10 for i in range(20_000)]
    assert all(0 <= n - t <= bound for n, t in zip(nominal, ts))
    # For every i < j: ts[j] >= ts[i] - bound  <=>  ts[j] >= max(ts[:j]) - bound.
    running_max = ts[0]
    for t in ts[1:]:
        assert t >= running_max - bound
        running_max = max(running_max, t)
    # And the stream really is out of order, using the whole bound.
    assert sum(b < a for a, b in zip(ts, ts[1:])) > 100
    assert max(n - t for n, t in zip(nominal, ts)) == bound


# --- sizes ----------------------------------------------------------------------

def _mean_sizes(config, n=30_000):
    sizes: dict[type, list[int]] = {Person: [], Auction: [], Bid: []}
    for e in generate(n, config):
        sizes[type(e)].append(event_size(e))
    return {k: sum(v) / len(v) for k, v in sizes.items()}


def test_average_sizes_near_defaults():
    means = _mean_sizes(NexmarkConfig())
    assert means[Person] == pytest.approx(200, rel=0.1)
    assert means[Auction] == pytest.approx(500, rel=0.1)
    # Bids: url + channel alone often exceed the 100 bytes, so the mean is a bit above.
    assert means[Bid] == pytest.approx(100, rel=0.15)


def test_average_sizes_follow_config():
    c = NexmarkConfig(avg_person_byte_size=1000, avg_auction_byte_size=80_000,
                      avg_bid_byte_size=1500)
    means = _mean_sizes(c, n=5000)
    assert means[Person] == pytest.approx(1000, rel=0.05)
    assert means[Auction] == pytest.approx(80_000, rel=0.05)
    assert means[Bid] == pytest.approx(1500, rel=0.05)
    # Below the unpadded size there is no padding at all.
    assert all(e.extra == "" for e in generate(1000, NexmarkConfig(
        avg_person_byte_size=0, avg_auction_byte_size=0, avg_bid_byte_size=0)))


# --- model classes --------------------------------------------------------------

def test_events_are_frozen_and_equal_to_attrs_constructed():
    # The generator builds instances via slot descriptors; that is only sound
    # while the classes have no validators or converters.
    for cls in (Person, Auction, Bid):
        for f in attrs.fields(cls):
            assert f.validator is None and f.converter is None
    for e in generate(200, NexmarkConfig(seed=4)):
        rebuilt = type(e)(**attrs.asdict(e))
        assert rebuilt == e and hash(rebuilt) == hash(e)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            e.extra = "x"


def test_config_pickles_and_evolves():
    c = NexmarkConfig(seed=3, max_out_of_order_ms=9)
    c2 = pickle.loads(pickle.dumps(c))
    assert c2 == c and hash(c2) == hash(c)
    assert list(generate(100, c2)) == list(generate(100, c))
    assert attrs.evolve(c, seed=4).seed == 4


def test_package_reexports():
    from samples.nexmark import generator

    assert sorted(nexmark_pkg.__all__) == sorted(generator.__all__)
    for name in generator.__all__:
        assert getattr(nexmark_pkg, name) is getattr(generator, name)


# --- validation -----------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(first_event_rate=0), "first_event_rate"),
    (dict(first_event_rate=-5), "first_event_rate"),
    (dict(first_event_rate=math.inf), "first_event_rate"),
    (dict(first_event_rate=math.nan), "first_event_rate"),
    (dict(person_proportion=-1), "person_proportion"),
    (dict(bid_proportion=-3), "bid_proportion"),
    (dict(person_proportion=0, auction_proportion=0, bid_proportion=0), "all be 0"),
    (dict(person_proportion=0), "person_proportion > 0"),
    (dict(auction_proportion=0), "auction_proportion > 0"),
    (dict(num_active_people=0), "num_active_people"),
    (dict(num_in_flight_auctions=-1), "num_in_flight_auctions"),
    (dict(hot_auction_ratio=0), "hot_auction_ratio"),
    (dict(hot_seller_ratio=-2), "hot_seller_ratio"),
    (dict(hot_bidder_ratio=0), "hot_bidder_ratio"),
    (dict(avg_person_byte_size=-1), "avg_person_byte_size"),
    (dict(avg_auction_byte_size=-1), "avg_auction_byte_size"),
    (dict(avg_bid_byte_size=-1), "avg_bid_byte_size"),
    (dict(max_out_of_order_ms=-1), "max_out_of_order_ms"),
    (dict(first_event_id=-1), "first_event_id"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        NexmarkConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [
    dict(person_proportion=1.5), dict(seed="0"), dict(first_event_rate=True),
    dict(first_event_rate="10"), dict(base_time=1.0),
])
def test_config_rejects_bad_types(kwargs):
    with pytest.raises(TypeError):
        NexmarkConfig(**kwargs)


def test_bad_positions_raise_eagerly():
    with pytest.raises(ValueError):
        event_at(-1)
    with pytest.raises(ValueError):
        kind_of(-1)
    with pytest.raises(ValueError):
        generate(-1)  # raised on the call, not on first next()
    with pytest.raises(ValueError):
        generate(1, start=-1)
    with pytest.raises(TypeError):
        event_at(1.0)
