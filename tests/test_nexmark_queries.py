"""Nexmark queries (samples/nexmark/queries.py) against plain-Python references.

Each query runs as a reactor job on a small generated stream and its results
are compared with a straightforward computation over ``generate(n, cfg)``
written here, independently of the operators; the windowed and stateful
queries also run on a stream with bounded disorder (``max_out_of_order_ms``).
q5 is also compared with the Bytewax baseline on the same bids.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from reactor import CollectSink, run
from samples.nexmark.generator import Auction, Bid, NexmarkConfig, Person, generate
from samples.nexmark.queries import build, q5

REPO = Path(__file__).resolve().parents[1]
N = 12_000
IN_ORDER = NexmarkConfig(first_event_rate=1_000)   # 12,000 events: 12 s of event time
DISORDERED = NexmarkConfig(first_event_rate=1_000, max_out_of_order_ms=700, seed=7)


def _run(query: str, n: int, cfg: NexmarkConfig, tmp_path: Path, **options) -> list:
    sink = CollectSink()
    tmp_path.mkdir(parents=True, exist_ok=True)
    result = run(build(query, n, config=cfg, sink=sink, **options),
                 state_dir=str(tmp_path / f"state-{query}"), checkpoint_every=0.2)
    assert result.elements_in == n
    assert not result.dead_letters
    return sink.results


def _events(n: int, cfg: NexmarkConfig) -> list:
    return list(generate(n, cfg))


# --------------------------------------------------------------------- references

def ref_q1(events: list) -> list:
    return [(b.auction, b.bidder, (b.price * 89) // 100, b.channel, b.url, b.date_time, b.extra)
            for b in events if isinstance(b, Bid)]


def ref_q2(events: list, skip: int = 123) -> list:
    return [(b.auction, b.price) for b in events if isinstance(b, Bid) and b.auction % skip == 0]


def ref_q3(events: list) -> list:
    persons = {p.id: p for p in events
               if isinstance(p, Person) and p.state in ("OR", "ID", "CA")}
    return sorted((persons[a.seller].name, persons[a.seller].city, persons[a.seller].state, a.id)
                  for a in events
                  if isinstance(a, Auction) and a.category == 10 and a.seller in persons)


def ref_winners(events: list) -> list:
    """(expires, arrival, auction, category, price, bidder) of each auction with a winner."""
    auctions: dict[int, tuple[int, Auction]] = {}
    best: dict[int, Bid] = {}
    for pos, e in enumerate(events):
        if isinstance(e, Auction):
            auctions[e.id] = (pos, e)
        elif isinstance(e, Bid) and e.auction in auctions:
            a = auctions[e.auction][1]
            if e.price < a.reserve or not a.date_time <= e.date_time < a.expires:
                continue
            b = best.get(a.id)
            if b is None or (e.price, -e.date_time) > (b.price, -b.date_time):
                best[a.id] = e
    return sorted((a.expires, pos, a.id, a.category, best[a.id].price, best[a.id].bidder)
                  for pos, a in auctions.values() if a.id in best)


def ref_q4(events: list) -> list:
    sums: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    out = []
    for _, _, _, category, price, _ in ref_winners(events):
        s = sums[category]
        s[0] += price
        s[1] += 1
        out.append((category, s[0] / s[1]))
    return out


def ref_q5(events: list, window_ms: int = 10_000, slide_ms: int = 2_000) -> list:
    counts: dict[int, Counter] = defaultdict(Counter)
    for b in events:
        if not isinstance(b, Bid):
            continue
        t = b.date_time
        start = t - t % slide_ms                  # the latest window start <= t
        while start > t - window_ms:
            counts[start + window_ms][b.auction] += 1
            start -= slide_ms
    out = []
    for end, c in counts.items():
        top = max(c.values())
        out.extend((end, a, n) for a, n in c.items() if n == top)
    return sorted(out)


def ref_q7(events: list, window_ms: int = 10_000) -> list:
    windows: dict[int, list[Bid]] = defaultdict(list)
    for b in events:
        if isinstance(b, Bid):
            windows[b.date_time // window_ms].append(b)
    out = []
    for k, bids in windows.items():
        top = max(b.price for b in bids)
        out.extend(((k + 1) * window_ms, b.auction, b.bidder, b.price, b.date_time)
                   for b in bids if b.price == top)
    return sorted(out)


def ref_q8(events: list, window_ms: int = 10_000) -> list:
    persons = {(p.date_time // window_ms, p.id): p.name for p in events if isinstance(p, Person)}
    return sorted((a.date_time // window_ms * window_ms, a.seller,
                   persons[(a.date_time // window_ms, a.seller)], a.reserve)
                  for a in events
                  if isinstance(a, Auction) and (a.date_time // window_ms, a.seller) in persons)


# -------------------------------------------------------------------------- tests

def test_q0_passes_every_event_through(tmp_path: Path) -> None:
    n = 3_000
    assert _run("q0", n, IN_ORDER, tmp_path) == _events(n, IN_ORDER)


def test_q1_converts_every_bid_in_order(tmp_path: Path) -> None:
    events = _events(N, IN_ORDER)
    got = _run("q1", N, IN_ORDER, tmp_path)
    assert got == ref_q1(events)
    assert len(got) > 10_000


def test_q2_selects_the_bids_of_every_123rd_auction(tmp_path: Path) -> None:
    events = _events(N, IN_ORDER)
    got = _run("q2", N, IN_ORDER, tmp_path)
    assert got == ref_q2(events)
    assert got, "the stream should hold some selected bids"
    assert _run("q2", N, IN_ORDER, tmp_path / "skip7", auction_skip=7) == ref_q2(events, 7)


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q3_joins_local_sellers_with_their_category_10_auctions(cfg: NexmarkConfig,
                                                               tmp_path: Path) -> None:
    got = _run("q3", N, cfg, tmp_path)
    want = ref_q3(_events(N, cfg))
    assert sorted(got) == want
    assert len(want) > 10


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q4_running_mean_of_winning_bids_per_category(cfg: NexmarkConfig, tmp_path: Path) -> None:
    events = _events(N, cfg)
    got = _run("q4", N, cfg, tmp_path)
    want = ref_q4(events)
    assert len(want) > 100
    assert got == want          # same closing order (expires, then arrival), same floats


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q5_hot_items_per_sliding_window(cfg: NexmarkConfig, tmp_path: Path) -> None:
    n = 20_000
    events = _events(n, cfg)
    got = _run("q5", n, cfg, tmp_path)
    want = ref_q5(events)
    assert sorted(got) == want
    assert len({r[0] for r in want}) >= 8
    # Output order: windows in end order, tied auctions ascending.
    assert got == sorted(got)


def test_q5_window_that_is_not_a_multiple_of_the_slide(tmp_path: Path) -> None:
    n = 12_000
    events = _events(n, DISORDERED)
    got = _run("q5", n, DISORDERED, tmp_path, window_ms=3_000, slide_ms=2_000)
    assert sorted(got) == ref_q5(events, 3_000, 2_000)
    # Hopping windows with gaps: bids between windows count nowhere.
    got = _run("q5", n, DISORDERED, tmp_path / "gaps", window_ms=1_000, slide_ms=1_500)
    assert sorted(got) == ref_q5(events, 1_000, 1_500)


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q5_matches_the_bytewax_baseline(cfg: NexmarkConfig, tmp_path: Path) -> None:
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        import bytewax_baselines as bw
    finally:
        sys.path.remove(str(REPO / "benchmarks"))
    why = bw.available()
    if why is not None:
        pytest.skip(f"bytewax baseline unavailable: {why}")
    n = 20_000
    events = _events(n, cfg)
    bids = [(b.auction, b.date_time) for b in events if isinstance(b, Bid)]
    theirs = bw.nexmark_q5(bids, window_ms=10_000, slide_ms=2_000,
                           lateness_ms=cfg.max_out_of_order_ms)
    assert theirs["late_bids"] == 0
    sink = CollectSink()
    run(q5(events, config=cfg, sink=sink), state_dir=str(tmp_path / "state"),
        checkpoint_every=0.2)
    assert sorted(sink.results) == theirs["results"]
    assert len(theirs["results"]) >= 8


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q7_highest_bids_per_tumbling_window(cfg: NexmarkConfig, tmp_path: Path) -> None:
    n = 20_000
    events = _events(n, cfg)
    got = _run("q7", n, cfg, tmp_path)
    assert sorted(got) == ref_q7(events)
    got = _run("q7", n, cfg, tmp_path / "1s", window_ms=1_000)
    want = ref_q7(events, 1_000)
    assert sorted(got) == want
    assert len({r[0] for r in want}) >= 15


@pytest.mark.parametrize("cfg", [IN_ORDER, DISORDERED], ids=["in-order", "disordered"])
def test_q8_new_users_with_auctions_in_their_window(cfg: NexmarkConfig, tmp_path: Path) -> None:
    n = 20_000
    events = _events(n, cfg)
    got = _run("q8", n, cfg, tmp_path)
    want = ref_q8(events)
    assert sorted(got) == want
    assert len(want) > 100
    got = _run("q8", n, cfg, tmp_path / "2s", window_ms=2_000)
    assert sorted(got) == ref_q8(events, 2_000)


def test_queries_on_a_pregenerated_list_match_the_generator_source(tmp_path: Path) -> None:
    events = _events(N, DISORDERED)
    a, b = CollectSink(), CollectSink()
    run(build("q7", events, config=DISORDERED, sink=a), state_dir=str(tmp_path / "a"))
    run(build("q7", N, config=DISORDERED, sink=b), state_dir=str(tmp_path / "b"))
    assert a.results == b.results and a.results


def test_build_rejects_unknown_queries_and_bad_windows() -> None:
    with pytest.raises(ValueError, match="unknown Nexmark query 'q6'"):
        build("q6", 10)
    with pytest.raises(ValueError, match="slide_ms must be a positive int"):
        build("q5", 10, slide_ms=0)
    with pytest.raises(TypeError, match="events must be"):
        build("q1", 1.5)


def test_cli_writes_json_lines_and_reactor_run_picks_up_the_env(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "samples.nexmark.run", "q7", "--events", "15000",
                        "--out", str(out), "--state-dir", str(tmp_path / "st")],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "q7: 15,000 events" in p.stdout
    lines = [json.loads(ln) for f in sorted(out.glob("part-*.txt")) for ln in f.read_text().splitlines()]
    assert sorted(map(tuple, lines)) == ref_q7(_events(15_000, NexmarkConfig()))

    reactor_bin = Path(sys.executable).with_name("reactor")
    if not reactor_bin.exists():
        pytest.skip("the reactor console script is not installed in this environment")
    out2 = tmp_path / "out2"
    env.update(NEXMARK_QUERY="q2", NEXMARK_EVENTS="6000", NEXMARK_OUT=str(out2))
    p = subprocess.run([str(reactor_bin), "run", str(REPO / "samples/nexmark/run.py"),
                        "--state-dir", str(tmp_path / "st2")],
                       cwd=tmp_path, env={k: v for k, v in env.items() if k != "PYTHONPATH"},
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    lines = [tuple(json.loads(ln)) for f in sorted(out2.glob("part-*.txt"))
             for ln in f.read_text().splitlines()]
    assert lines == ref_q2(_events(6_000, NexmarkConfig()))


def test_q5_after_kill_9_and_restore_emits_each_window_once(tmp_path: Path) -> None:
    """Windowed state and timers survive a crash: the committed output of a run killed
    mid-stream and resumed from its state dir equals the reference, with no duplicates."""
    import signal
    import time

    n = 150_000
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out, state = tmp_path / "out", tmp_path / "state"
    cmd = [sys.executable, "-m", "samples.nexmark.run", "q5", "--events", str(n),
           "--out-of-order-ms", "300", "--checkpoint-every", "0.1",
           "--out", str(out), "--state-dir", str(state)]
    p = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        # Kill once some window output has committed (polling the child's output dir).
        while not list(out.glob("part-*.txt")) and p.poll() is None:
            assert time.monotonic() < deadline, "no committed output within 30 s"
            time.sleep(0.02)
        killed = p.poll() is None
        if killed:
            p.send_signal(signal.SIGKILL)
        p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    if not killed:
        pytest.skip("the job finished before it could be killed (machine too fast)")
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "restored from epoch" in r.stdout
    lines = [tuple(json.loads(ln)) for f in sorted(out.glob("part-*.txt"))
             for ln in f.read_text().splitlines()]
    want = ref_q5(_events(n, NexmarkConfig(max_out_of_order_ms=300)))
    assert len(lines) == len(set(lines))
    assert sorted(lines) == want
