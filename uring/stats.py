"""I/O statistics: per-kind counters and a log-linear latency histogram.

The io_uring backend keeps its counters in C (filled at reap time); the sync
backend keeps the same shape in Python. Both are summarised by
:func:`summarize` into one JSON-able dict, so stats read the same whatever
backend runs.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

#: Histogram buckets: 4 per power of two of nanoseconds (<= 19 % error).
HIST_BUCKETS = 256


def hist_bucket(ns: int) -> int:
    """Bucket of a latency in ns; same formula as ``ur_hist_bucket`` in C."""
    if ns < 4:
        return max(ns, 0)
    msb = ns.bit_length() - 1
    b = msb * 4 + ((ns >> (msb - 2)) & 3)
    return b if b < HIST_BUCKETS else HIST_BUCKETS - 1


def hist_value(bucket: int) -> int:
    """Midpoint (ns) of a bucket; inverse of :func:`hist_bucket`."""
    if bucket < 4:
        return bucket
    msb, sub = divmod(bucket, 4)
    lo = (1 << msb) | (sub << (msb - 2))
    return lo + (1 << (msb - 2)) // 2


def percentile(hist: Sequence[int], q: float) -> float:
    """The q-quantile (0..1) in microseconds from a bucket histogram, 0 if empty."""
    total = sum(hist)
    if not total:
        return 0.0
    rank = q * total
    seen = 0
    for b, n in enumerate(hist):
        seen += n
        if n and seen >= rank:
            return hist_value(b) / 1000.0
    return hist_value(len(hist) - 1) / 1000.0


class PyIoCounters:
    """Counters of the sync backend, shaped like the C ones."""

    __slots__ = ("ops", "bytes", "errors", "lat_hist", "calls")

    def __init__(self) -> None:
        self.ops: dict[str, int] = {}
        self.bytes: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.lat_hist = [0] * HIST_BUCKETS
        self.calls = 0

    def record(self, kind: str, nbytes: int, ns: int, failed: bool) -> None:
        self.ops[kind] = self.ops.get(kind, 0) + 1
        if failed:
            self.errors[kind] = self.errors.get(kind, 0) + 1
        elif nbytes:
            self.bytes[kind] = self.bytes.get(kind, 0) + nbytes
        self.lat_hist[hist_bucket(ns)] += 1
        self.calls += 1


def summarize(*, backend: str, reason: str, by_kind: Iterable[tuple[str, int, int, int]],
              lat_hist: Sequence[int], in_flight: int, enter_calls: int,
              sqes_submitted: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Build the stats dict from raw counters.

    ``by_kind`` yields ``(kind, ops, bytes, errors)``; rows of one kind are added.
    """
    ops: dict[str, dict[str, int]] = {}
    for kind, n, b, e in by_kind:
        if not (n or b or e):
            continue
        row = ops.setdefault(kind, {"ops": 0, "bytes": 0, "errors": 0})
        row["ops"] += n
        row["bytes"] += b
        row["errors"] += e
    total = sum(lat_hist)
    out: dict[str, Any] = {
        "backend": backend,
        "reason": reason,
        "ops": ops,
        "total_ops": sum(r["ops"] for r in ops.values()),
        "in_flight": in_flight,
        "enter_calls": enter_calls,
        "sqes_submitted": sqes_submitted,
        "sqes_per_enter": round(sqes_submitted / enter_calls, 2) if enter_calls else 0.0,
        "latency_us": {
            "count": total,
            "p50": round(percentile(lat_hist, 0.50), 2),
            "p99": round(percentile(lat_hist, 0.99), 2),
            "max": round(percentile(lat_hist, 1.0), 2),
        },
    }
    if extra:
        out.update(extra)
    return out
