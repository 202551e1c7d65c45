#!/usr/bin/env python3
"""Bytewax 0.21 baselines for ``dataflow_bench.py``: the same jobs reactor runs, on Bytewax.

Importable (``benchmarks/`` on ``sys.path``, as every benchmark script has it)::

    from bytewax_baselines import available, keyed_count, nexmark_q5

    why = available()            # None, or why the baseline cannot run
    r = keyed_count(records, recovery_dir="/work/bench/bw")   # recovery ON
    q = nexmark_q5(bids)

or run on synthetic data to see the figures::

    python benchmarks/bytewax_baselines.py          # 200k records / 10k keys; 200k bids

Every function builds a fresh ``Dataflow`` and runs it with
``bytewax.testing.run_main`` in this process and thread (one worker: Bytewax's
single-process mode, the same single core reactor gets). Only ``run_main`` is
timed: building the dataflow, creating the recovery partitions and checking
the results are outside the clock, so the figures are Bytewax's execution rate
and nothing of ours.

With ``recovery_dir`` given, the run uses Bytewax's own recovery (SQLite
partitions, a state snapshot of every changed key at the end of each epoch of
``epoch_s``): the partitions are created in a fresh directory under
``recovery_dir`` (a reused directory would make Bytewax *resume* the earlier
execution and skip input), and removed after the run.
"""
from __future__ import annotations

import os
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable

BYTEWAX_SERIES = "0.21"
INSTALL_HINT = "pip install -e '.[bench]'"

# Event time is milliseconds since the Unix epoch; windows are aligned to it.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# What the event clock believes "system time" is: a constant, so the watermark
# is purely event-driven (see nexmark_q5's docstring for why).
_FROZEN_NOW = datetime(2000, 1, 1, tzinfo=timezone.utc)


def available() -> str | None:
    """None if Bytewax 0.21 is importable here, else why not (a one-line reason).

    The API this module uses (``bytewax.operators.windowing``, ``init_db_dir``,
    ``StatelessSinkPartition``) is the 0.21 one; other series changed it, so
    another version counts as unavailable rather than risking a wrong figure.
    """
    try:
        from importlib.metadata import PackageNotFoundError, version
        try:
            ver = version("bytewax")
        except PackageNotFoundError:
            return f"bytewax not installed: {INSTALL_HINT}"
        import bytewax.operators  # noqa: F401
        import bytewax.operators.windowing  # noqa: F401
        import bytewax.recovery  # noqa: F401
        import bytewax.testing  # noqa: F401
    except ImportError as exc:
        return f"bytewax not installed or broken ({exc}): {INSTALL_HINT}"
    if not (ver == BYTEWAX_SERIES or ver.startswith(BYTEWAX_SERIES + ".")):
        return f"bytewax {ver} installed, these baselines need {BYTEWAX_SERIES}.x: {INSTALL_HINT}"
    return None


def _require() -> None:
    why = available()
    if why is not None:
        raise RuntimeError(why)


def _bytewax_version() -> str:
    from importlib.metadata import version
    return version("bytewax")


# --- sinks --------------------------------------------------------------------

def _counting_sink(keep_last: bool = False) -> Any:
    """A ``DynamicSink`` whose partition only counts items (and, with
    ``keep_last``, remembers the last value per key of ``(key, value)`` items).

    Both are one C-level call per *batch* (``len`` and ``dict.update``), O(1)
    per item, so the sink costs next to nothing and the figure is the
    dataflow's, not the output's. Per-key order is preserved by Bytewax (one
    worker), so the last value ``dict.update`` keeps is the key's final one.
    """
    from bytewax.outputs import DynamicSink, StatelessSinkPartition

    class _Part(StatelessSinkPartition):
        def __init__(self, sink: "_Sink") -> None:
            self.sink = sink

        def write_batch(self, items: list) -> None:
            self.sink.count += len(items)
            if keep_last:
                self.sink.last.update(items)

    class _Sink(DynamicSink):
        def __init__(self) -> None:
            self.count = 0
            self.last: dict = {}

        def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
            return _Part(self)

    return _Sink()


def _list_sink(out: list) -> Any:
    """``TestingSink`` (appends every item): for the small result streams only."""
    from bytewax.testing import TestingSink
    return TestingSink(out)


# --- running ------------------------------------------------------------------

def _dir_bytes(path: str) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _run(flow: Any, *, epoch_s: float, recovery_dir: str | None) -> dict:
    """``run_main(flow)``, timed; with ``recovery_dir``, recovery ON in a fresh
    subdirectory holding 1 partition (run_main is one worker, so one partition
    is what ``python -m bytewax.recovery DIR 1`` would make for it).

    Returns ``{"seconds", "recovery", "recovery_db_bytes"?}``.
    """
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.testing import run_main

    epoch = timedelta(seconds=epoch_s)
    if recovery_dir is None:
        t0 = time.perf_counter()
        run_main(flow, epoch_interval=epoch)
        return {"seconds": time.perf_counter() - t0, "recovery": False}

    os.makedirs(recovery_dir, exist_ok=True)
    # Fresh every time: existing partitions would make run_main resume the
    # previous execution (from its last epoch) instead of running from scratch.
    db_dir = tempfile.mkdtemp(prefix="bytewax-recovery-", dir=recovery_dir)
    try:
        init_db_dir(Path(db_dir), 1)
        config = RecoveryConfig(db_dir)
        t0 = time.perf_counter()
        run_main(flow, epoch_interval=epoch, recovery_config=config)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "recovery": True, "recovery_db_bytes": _dir_bytes(db_dir)}
    finally:
        shutil.rmtree(db_dir, ignore_errors=True)


# --- keyed running count ---------------------------------------------------------

def _count_mapper(state: int | None, _record: tuple[str, int]) -> tuple[int, int]:
    """``stateful_map`` body: state is the key's count so far (None the first time)."""
    n = 1 if state is None else state + 1
    return n, n


def keyed_count(records: list[tuple[str, int]], *, batch_size: int = 1000,
                epoch_s: float = 1.0, recovery_dir: str | None = None) -> dict:
    """Keyed running count on Bytewax: for every ``(key, value)`` record emit
    ``(key, running_count_for_key)``.

    ``TestingSource(records, batch_size)`` -> ``key_on`` (the record's key) ->
    ``stateful_map`` (state = count) -> a counting sink (O(1) per item). With
    ``recovery_dir``: recovery ON (``RecoveryConfig``, 1 partition, a snapshot
    every ``epoch_s``), the baseline of ``keyed_count_vs_bytewax_recovery``;
    without, no recovery (``epoch_s`` still sets the epoch length).

    Returns ``{"records", "seconds", "records_per_s", "outputs", "last_counts",
    "recovery", "recovery_db_bytes" (recovery only), "batch_size", "epoch_s",
    "bytewax"}``; ``last_counts`` maps every key to its final count. Raises
    ``RuntimeError`` if the outputs are not exactly one per record (so a wrong
    run never turns into a figure).
    """
    _require()
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSource

    n = len(records)
    flow = Dataflow("keyed_count")
    inp = op.input("inp", flow, TestingSource(records, batch_size=batch_size))
    keyed = op.key_on("key", inp, lambda rec: rec[0])
    counts = op.stateful_map("count", keyed, _count_mapper)
    sink = _counting_sink(keep_last=True)
    op.output("out", counts, sink)

    run = _run(flow, epoch_s=epoch_s, recovery_dir=recovery_dir)
    if sink.count != n:
        raise RuntimeError(f"bytewax keyed_count emitted {sink.count} outputs for {n} records")
    seconds = run.pop("seconds")
    return {"records": n, "seconds": seconds,
            "records_per_s": n / seconds if seconds > 0 else float("inf"),
            "outputs": sink.count, "last_counts": dict(sink.last),
            **run, "batch_size": batch_size, "epoch_s": epoch_s,
            "bytewax": _bytewax_version()}


# --- Nexmark q5 -------------------------------------------------------------------

def _max_fold_builder() -> list:
    return [0, []]


def _max_fold(acc: list, item: tuple[int, int]) -> list:
    """Keep the highest count and every auction that has it (ties: all of them)."""
    auction, count = item
    if count > acc[0]:
        return [count, [auction]]
    if count == acc[0]:
        acc[1].append(auction)
    return acc


def _count_by_auction(counts: dict, bid: tuple[int, int]) -> dict:
    auction = bid[0]
    counts[auction] = counts.get(auction, 0) + 1
    return counts


def _hottest(counts: dict) -> tuple[int, list[int]]:
    top = max(counts.values())
    return top, sorted(a for a, c in counts.items() if c == top)


def nexmark_q5(bids: list[tuple[int, int]], *, window_ms: int = 10_000, slide_ms: int = 2_000,
               batch_size: int = 1000, epoch_s: float = 1.0, recovery_dir: str | None = None,
               lateness_ms: int = 0, variant: str = "keyed") -> dict:
    """Nexmark q5 ("hot items") on Bytewax: per sliding window, the auction(s)
    with the most bids.

    Input: bids ``(auction_id, date_time_ms)``, event time in milliseconds
    since the Unix epoch, in roughly increasing time order.

    What it computes (Beam's Query5 semantics):

    * Windows: sliding, length ``window_ms``, a new one every ``slide_ms``,
      aligned to epoch 0 ms: window starts are the multiples of ``slide_ms``
      (negative ones too, as in Beam), each window is ``[start, start +
      window_ms)`` (start inclusive, end exclusive), so a bid at ``t`` is in
      every window whose start is in ``(t - window_ms, t]`` —
      ``window_ms / slide_ms`` windows when that divides.
    * Per window, the bids of each auction are counted; the result is every
      auction whose count equals the window's maximum: ties emit *all* tied
      auctions (Beam's combine concatenates the tied lists), one output each,
      ``(window_end_ms, auction_id, count)``. Windows without bids emit
      nothing (Beam's ``withoutDefaults``).
    * Event time, watermark: ``EventClock(wait_for_system_duration =
      lateness_ms)`` with a frozen ``now_getter`` (and ``to_system_utc`` ->
      None), so the watermark is *purely event-driven*: the largest timestamp
      seen minus ``lateness_ms``, never advanced by wall-clock time. (Bytewax's
      default adds the system time elapsed since that timestamp, which makes
      in-order bids "late" whenever processing lags event time: results would
      depend on machine speed.) A bid older than the watermark for its
      windows is dropped as late and counted in ``"late_bids"`` (window, bid
      pairs); with in-order input (or disorder <= ``lateness_ms``) nothing
      is late. At end of input the watermark goes to +inf and every window
      fires.
    * ``results`` is the sorted list of output tuples, comparable as-is.

    Dataflow, ``variant="keyed"`` (default; the idiomatic Bytewax shape,
    Beam's ``Count.perElement`` + ``Combine.globally``): ``count_window``
    keyed by auction (``SlidingWindower(length, offset, align_to=epoch)``) ->
    re-key by window id -> ``fold_final`` keeping the max and its auctions.
    Bytewax has a clock *per key*, so an auction's window closes when *that
    auction* sees a bid past the window's end (or at end of input): no step
    can tell when a window is complete across all auctions before the end of
    input, so the per-window max is emitted at end of input (results are
    the same; only when they appear differs). Lateness is per auction here
    (Beam's watermark is global), which only matters for out-of-order input.

    ``variant="global"``: one key for all bids, ``fold_window`` into a
    ``{auction: count}`` dict per window, max at window close: one clock,
    so a global watermark and each window emitted as soon as it closes,
    exactly Beam's firing; one key cannot spread over several workers.

    Returns ``{"events", "seconds", "events_per_s", "results", "windows",
    "late_bids", "variant", "recovery", ...}``.
    """
    if variant not in ("keyed", "global"):
        raise ValueError(f"variant must be 'keyed' or 'global', not {variant!r}")
    _require()
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import (EventClock, SlidingWindower, count_window,
                                             fold_window)
    from bytewax.testing import TestingSource

    clock = EventClock(
        ts_getter=lambda bid: _EPOCH + timedelta(milliseconds=bid[1]),
        wait_for_system_duration=timedelta(milliseconds=lateness_ms),
        # Frozen "system time": the watermark moves only with event time, and
        # the runtime is never asked to wake up a key to close windows (that
        # would only re-read the same watermark).
        now_getter=lambda: _FROZEN_NOW,
        to_system_utc=lambda _ts: None,
    )
    windower = SlidingWindower(length=timedelta(milliseconds=window_ms),
                               offset=timedelta(milliseconds=slide_ms), align_to=_EPOCH)

    flow = Dataflow(f"nexmark_q5_{variant}")
    inp = op.input("bids", flow, TestingSource(bids, batch_size=batch_size))
    if variant == "keyed":
        wo = count_window("count", inp, clock, windower, key=lambda bid: str(bid[0]))
        # (auction, (window_id, count)) -> keyed by window id: (auction, count)
        per_window = op.map("by_window", wo.down,
                            lambda kv: (str(kv[1][0]), (int(kv[0]), kv[1][1])))
        tops = op.fold_final("max", per_window, _max_fold_builder, _max_fold)
        results_stream = op.flat_map(
            "emit", tops,
            lambda kv: [(int(kv[0]) * slide_ms + window_ms, a, kv[1][0]) for a in kv[1][1]])
    else:
        keyed = op.key_on("all", inp, lambda _bid: "all")
        wo = fold_window("count", keyed, clock, windower, dict, _count_by_auction,
                         lambda a, b: {k: a.get(k, 0) + b.get(k, 0) for k in a.keys() | b.keys()},
                         ordered=False)

        def emit(kv: tuple[str, tuple[int, dict]]) -> Iterable[tuple[int, int, int]]:
            window_id, counts = kv[1]
            top, auctions = _hottest(counts)
            end = window_id * slide_ms + window_ms
            return [(end, a, top) for a in auctions]

        results_stream = op.flat_map("emit", wo.down, emit)

    results: list = []
    op.output("out", results_stream, _list_sink(results))
    late = _counting_sink()
    op.output("late", wo.late, late)

    run = _run(flow, epoch_s=epoch_s, recovery_dir=recovery_dir)
    n = len(bids)
    seconds = run.pop("seconds")
    results.sort()
    return {"events": n, "seconds": seconds,
            "events_per_s": n / seconds if seconds > 0 else float("inf"),
            "results": results, "windows": len({r[0] for r in results}),
            "late_bids": late.count, "variant": variant, **run,
            "window_ms": window_ms, "slide_ms": slide_ms, "lateness_ms": lateness_ms,
            "batch_size": batch_size, "epoch_s": epoch_s, "bytewax": _bytewax_version()}


# --- synthetic data + __main__ ------------------------------------------------------

def synthetic_records(n: int = 200_000, keys: int = 10_000, seed: int = 1) -> list[tuple[str, int]]:
    """``n`` records ``(key, i)``, keys ``"k0".."k{keys-1}"`` chosen uniformly."""
    rng = random.Random(seed)
    return [(f"k{rng.randrange(keys)}", i) for i in range(n)]


def synthetic_bids(n: int = 200_000, auctions: int = 100, step_ms: float = 0.1,
                   seed: int = 1) -> list[tuple[int, int]]:
    """``n`` bids ``(auction_id, date_time_ms)``: auctions 1000..1000+auctions-1
    chosen uniformly, time advancing ``step_ms`` per bid (truncated to whole
    ms, so in order), starting at 0 ms."""
    rng = random.Random(seed)
    return [(1000 + rng.randrange(auctions), int(i * step_ms)) for i in range(n)]


def _main(argv: list[str] | None = None) -> int:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--keys", type=int, default=10_000)
    parser.add_argument("--bids", type=int, default=200_000)
    parser.add_argument("--auctions", type=int, default=100)
    parser.add_argument("--dir", default=None,
                        help="where the recovery partitions go (default: a temp dir)")
    args = parser.parse_args(argv)

    why = available()
    if why is not None:
        print(why, file=sys.stderr)
        return 2

    def show(name: str, result: dict, drop: str) -> None:
        shown = {k: v for k, v in result.items() if k != drop}
        print(f"{name}: {json.dumps(shown)}", flush=True)

    records = synthetic_records(args.records, args.keys)
    expected: dict[str, int] = {}
    for key, _ in records:
        expected[key] = expected.get(key, 0) + 1
    with tempfile.TemporaryDirectory(prefix="bytewax-bench-", dir=args.dir) as tmp:
        try:
            sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
            from _common import fs_type
            print(f"recovery dir {tmp} on {fs_type(tmp)}", flush=True)
        except ImportError:
            pass
        for rec_dir in (None, tmp):
            r = keyed_count(records, recovery_dir=rec_dir)
            assert r["last_counts"] == expected, "keyed_count: wrong final counts"
            show(f"keyed_count recovery={'on' if rec_dir else 'off'}", r, "last_counts")

    bids = synthetic_bids(args.bids, args.auctions)
    ref = None
    for variant in ("keyed", "global"):
        q = nexmark_q5(bids, variant=variant)
        if ref is None:
            ref = q["results"]
        assert q["results"] == ref, "nexmark_q5 variants disagree"
        show(f"nexmark_q5 variant={variant}", q, "results")
    print(f"q5 results: {len(ref)}, first {ref[:3]}, last {ref[-3:]}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
