"""Click sessions: event-time session windows per user.

A deterministic click stream: a few users, each clicking in bursts (clicks
0.5–20 s apart) separated by idle stretches of 1–10 minutes. Clicks arrive up
to 5 s out of order, which the source's ``max_out_of_orderness`` absorbs.
Session windows with a 30 s gap (of event time) group each user's bursts into
sessions; an aggregate counts each session's clicks and measures its duration
(first to last click). Every session is printed as its window closes, then
the sessions are checked against the bursts the generator made.

Run it with ``python samples/sessions.py [STATE_DIR]`` or
``reactor run samples/sessions.py``.
"""
from __future__ import annotations

import math
import random
import sys
from typing import NamedTuple

from reactor import CollectSink, IterableSource, PrintSink, Topology, run
from reactor.windows import Session, WindowOperator, WindowResult, window_aggregate

GAP = 30.0              # seconds of event time without a click that end a session
USERS = 12
BURSTS = 40             # per user
MAX_DELAY = 5.0         # how far out of order clicks arrive


class Click(NamedTuple):
    user: str
    page: str
    time: float         # event time, seconds


def generate(seed: int = 2024) -> tuple[list[Click], list[tuple[str, float, float, int]]]:
    """The clicks in arrival order, and the sessions they form: (user, first, last, clicks)."""
    rng = random.Random(seed)
    pages = ["/", "/search", "/item", "/cart", "/checkout", "/help"]
    clicks: list[Click] = []
    sessions = []
    for u in range(USERS):
        user = f"user{u:02d}"
        t = rng.uniform(0, 120)
        for _ in range(BURSTS):
            first = t
            n = rng.randint(1, 15)
            for i in range(n):
                if i:
                    t += rng.uniform(0.5, 20.0)         # < GAP: same session
                clicks.append(Click(user, rng.choice(pages), round(t, 3)))
            sessions.append((user, round(first, 3), round(t, 3), n))
            t += rng.uniform(60.0, 600.0)               # > GAP: a new session
    # Arrival order: event time plus a random delay of up to MAX_DELAY.
    arrival = sorted(clicks, key=lambda c: c.time + rng.uniform(0, MAX_DELAY))
    return arrival, sessions


def summary() -> type[WindowOperator]:
    """(clicks, first, last) per session; merged sessions add up."""
    return window_aggregate(
        Session(GAP),
        create=lambda: (0, math.inf, -math.inf),
        add=lambda acc, c: (acc[0] + 1, min(acc[1], c.time), max(acc[2], c.time)),
        merge=lambda a, b: (a[0] + b[0], min(a[1], b[1]), max(a[2], b[2])),
        result=lambda acc: {"clicks": acc[0], "first": acc[1], "last": acc[2]},
    )


def show(r: WindowResult) -> str:
    v = r.value
    return (f"{r.key}  session [{r.start:9.1f}, {r.end:9.1f})  clicks={v['clicks']:2d}  "
            f"duration={v['last'] - v['first']:6.1f}s")


clicks, expected_sessions = generate()
collected = CollectSink()

topology = (Topology("sessions")
            .source("clicks", IterableSource(clicks), timestamp=lambda c: c.time,
                    max_out_of_orderness=MAX_DELAY)
            .key_by(lambda c: c.user)
            .operator("sessions", summary())
            .sink("print", PrintSink(show))
            .sink("check", collected, input="sessions"))


def check() -> bool:
    got = sorted((r.key, r.value["first"], r.value["last"], r.value["clicks"])
                 for r in collected.results)
    ok = got == sorted(expected_sessions)
    print(f"{len(clicks)} clicks, {len(got)} sessions "
          f"({'as generated' if ok else 'DIFFERENT from the generated ones'})")
    return ok


if __name__ == "__main__":
    result = run(topology, state_dir=sys.argv[1] if len(sys.argv) > 1 else None)
    if result is None:                      # stopped by a signal
        sys.exit(1)
    print(f"{result.elements_in} elements in {result.seconds:.2f} s, "
          f"checkpoint epoch {result.epoch}")
    if result.restored_from is not None:
        # Resumed from a state dir: the sessions before that epoch were printed back then.
        print(f"resumed from epoch {result.restored_from}: {len(collected.results)} sessions "
              f"closed in this run")
        sys.exit(0)
    sys.exit(0 if check() else 1)
