"""The Bytewax baselines of benchmarks/bytewax_baselines.py compute what they claim.

Skipped as a whole where Bytewax 0.21 is missing (the reason says how to get it).
"""
from __future__ import annotations

import os
import random
import sys
from collections import Counter

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "benchmarks"))
import bytewax_baselines as bb  # noqa: E402

_why = bb.available()
if _why is not None:
    pytest.skip(_why, allow_module_level=True)


def _records(n: int = 5_000, keys: int = 50) -> list[tuple[str, int]]:
    rng = random.Random(7)
    return [(f"key{rng.randrange(keys)}", i) for i in range(n)]


@pytest.mark.parametrize("recovery", [False, True], ids=["no-recovery", "recovery"])
def test_keyed_count_exact(tmp_path, recovery):
    records = _records()
    expected = Counter(k for k, _ in records)
    rec_dir = str(tmp_path) if recovery else None
    # Twice with the same directory: each run must start fresh, not resume.
    for _ in range(2 if recovery else 1):
        r = bb.keyed_count(records, batch_size=100, epoch_s=0.01, recovery_dir=rec_dir)
        assert r["records"] == r["outputs"] == len(records)
        assert r["last_counts"] == dict(expected)
        assert len(r["last_counts"]) == 50
        assert r["recovery"] is recovery
        assert r["seconds"] > 0 and r["records_per_s"] > 0
    if recovery:
        assert r["recovery_db_bytes"] > 0
        assert os.listdir(tmp_path) == []  # the partitions are removed after the run


# window_ms=10, slide_ms=5: windows [-5,5) [0,10) [5,15) [10,20) [15,25), named by end.
HAND_BIDS = [(1, 0), (2, 1), (1, 3), (3, 6), (3, 7), (2, 8), (3, 12), (1, 14), (2, 16)]
HAND_RESULTS = [
    (5, 1, 2),                                # [-5,5): 1 x2, 2 x1
    (10, 1, 2), (10, 2, 2), (10, 3, 2),       # [0,10): three-way tie, all emitted
    (15, 3, 3),                               # [5,15): 3 x3, 2 x1, 1 x1
    (20, 1, 1), (20, 2, 1), (20, 3, 1),       # [10,20): tie at 1
    (25, 2, 1),                               # [15,25): only bid at 16
]


@pytest.mark.parametrize("variant", ["keyed", "global"])
@pytest.mark.parametrize("batch_size", [1, 4])
def test_q5_hand_computed(variant, batch_size):
    r = bb.nexmark_q5(HAND_BIDS, window_ms=10, slide_ms=5, batch_size=batch_size,
                      variant=variant)
    assert r["results"] == HAND_RESULTS
    assert r["events"] == len(HAND_BIDS) and r["late_bids"] == 0 and r["windows"] == 5


def _brute_q5(bids, window_ms, slide_ms):
    per_window: dict[int, Counter] = {}
    for auction, t in bids:
        start = (t // slide_ms) * slide_ms
        while start > t - window_ms:
            per_window.setdefault(start + window_ms, Counter())[auction] += 1
            start -= slide_ms
    out = []
    for end, counts in per_window.items():
        top = max(counts.values())
        out += [(end, a, c) for a, c in counts.items() if c == top]
    return sorted(out)


@pytest.mark.parametrize("variant", ["keyed", "global"])
def test_q5_matches_brute_force(variant):
    rng = random.Random(3)
    bids = [(rng.randrange(5), i // 3) for i in range(3_000)]
    r = bb.nexmark_q5(bids, window_ms=100, slide_ms=20, batch_size=64, variant=variant)
    assert r["results"] == _brute_q5(bids, 100, 20)


@pytest.mark.parametrize("variant", ["keyed", "global"])
def test_q5_disorder(variant):
    swapped = list(HAND_BIDS)
    swapped[0], swapped[2] = swapped[2], swapped[0]       # (1,3) before (1,0)
    ok = bb.nexmark_q5(swapped, window_ms=10, slide_ms=5, lateness_ms=3, variant=variant)
    assert ok["results"] == HAND_RESULTS and ok["late_bids"] == 0
    late = bb.nexmark_q5([(1, 20), (1, 3)], window_ms=10, slide_ms=5, variant=variant)
    assert late["late_bids"] == 2       # t=3 is in [-5,5) and [0,10), both closed at 20
    assert late["results"] == [(25, 1, 1), (30, 1, 1)]
