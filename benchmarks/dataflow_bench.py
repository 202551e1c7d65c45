#!/usr/bin/env python3
"""Dataflow benchmark: reactor jobs against the same jobs on Bytewax 0.21.

Run from the repository root::

    python benchmarks/dataflow_bench.py --quick     # < 60 s: 200,000 records, 100,000 events
    python benchmarks/dataflow_bench.py             # full: 1,000,000 records and events, ~2-3 min
    python benchmarks/dataflow_bench.py --dir /work/bench --reps 3

What is measured (ours and the baseline in the same process, in the same run;
every ratio is ours / baseline):

* **keyed running count**: records ``(f"key{i % 10000}", i)`` (N = 1,000,000,
  quick 200,000; 10,000 keys), a source batch of 1,000, keyed by the key, a
  running count per key emitted per record, state persisted to a state dir on
  the project's disk with a checkpoint every 1 s. Ours:
  ``Topology.stateful_map`` (the same ``fn(state, record) -> (state, out)`` and
  batching as Bytewax's ``stateful_map``) -> figure
  ``keyed_count_records_per_s``; also as a plain ``Operator`` with ``async def
  on_element`` and a ``Value`` statelet -> ``keyed_count_operator_api_records_per_s``.
  Baseline: ``bytewax_baselines.keyed_count`` with recovery ON (SQLite
  snapshots every 1 s epoch) -> ``keyed_count_vs_bytewax_recovery``. Every
  side is checked: one output per record and a final count of N / 10,000
  for every key.
* **Nexmark q1, q5, q7** (``samples/nexmark/queries.py``) on M events (1,000,000,
  quick 100,000; the default generator config). The generator makes ~300k
  events/s, slower than the queries, so the events are generated *before*
  the clock starts and fed from a list (``IterableSource``); Bytewax gets the
  same bids, extracted from that list beforehand, as ``(auction, date_time)``.
  Ours runs with a state dir on disk and a checkpoint every 1 s; q1 into a
  ``NullSink``, q5 and q7 into a ``CollectSink``. Bytewax q5
  (``bytewax_baselines.nexmark_q5``, 10 s windows every 2 s, no recovery)
  runs in both its variants ("keyed": count_window per auction then a max per
  window, the idiomatic shape; "global": one fold_window over a dict);
  ``nexmark_q5_vs_bytewax`` is against the *faster* variant, and
  ``nexmark_q5_vs_bytewax_keyed`` against the keyed one. Both are time ratios
  over the same stream (ours also reads and filters out the 8 % of events
  that are not bids, Bytewax gets only the bids). The results must be equal:
  ``q5_results_match``.
* **checkpoint pauses**: the stateful_map keyed count over 5,000,000 records
  (also with ``--quick``; made on the fly by a ``GeneratorSource``) with a
  checkpoint requested every 0.1 s and every N/25 records (a checkpoint is
  not started before the previous one committed, so how many are taken
  depends on the disk's commit time; the run is repeated with twice the
  records if it took 20 or fewer; the table says how many); ``checkpoint_pause_p99_ms`` is the p99 (nearest rank) of
  ``JobResult.checkpoint_pauses_ms`` (per operator instance and checkpoint:
  first barrier to the acknowledgement, plus any wait for the previous
  commit) over the checkpoints taken mid-stream; the final checkpoint's pause
  (which waits for its own commit, with no input left behind it) is reported
  apart.

Timing: ours is the wall time of ``reactor.run(topology, ...)`` (reactor and
store start-up and the final checkpoint included); Bytewax's is its
``run_main`` alone. Each measurement is repeated (``--reps``, default 3, quick
2; the keyed Bytewax q5 variant once in full runs, as it takes ~40 s) with the
sides interleaved, and the best repetition of each side counts: the machine is
shared and noisy. Per-repetition rates go to stderr.

Output: a table, then as the very last line one JSON object
``{"bench": "dataflow", "figures": {...}, "ratios": {...}}``. Without Bytewax
(``pip install -e '.[bench]'``) the table says so and the ``*_vs_bytewax*``
ratios are left out.
"""
from __future__ import annotations

import argparse
import gc
import json
import math
import operator
import os
import shutil
import signal
import sys
import tempfile
import time
from typing import Any

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _REPO not in sys.path:
    sys.path.append(_REPO)      # samples/ (and the packages, without an editable install)

import bytewax_baselines as bw  # noqa: E402  (benchmarks/ is on sys.path)
from _common import Watchdog, fs_type, print_table  # noqa: E402

from reactor import (CollectSink, GeneratorSource, IterableSource, NullSink, Operator,  # noqa: E402
                     Source, Topology, run)
from reactor.sinks import Sink, SinkWriter  # noqa: E402
from samples.nexmark.generator import Bid, generate  # noqa: E402
from samples.nexmark.queries import build  # noqa: E402
from statelets import Value  # noqa: E402

KEYS = 10_000
BATCH = 1_000
MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}

#: Targets from the issue: ``>=``/``<=`` on the ratio (``*_vs_*`` keys) or the figure.
TARGETS: dict[str, tuple[str, float]] = {
    "keyed_count_records_per_s": (">=", 1_000_000),
    "keyed_count_vs_bytewax_recovery": (">=", 2.0),
    "nexmark_q5_vs_bytewax": (">=", 2.0),
    "checkpoint_pause_p99_ms": ("<=", 50),
}


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the table and the JSON line."""
    print(f"[dataflow_bench] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ our jobs

class LastCountSink(Sink):
    """Counts outputs and keeps the last ``(key, count)`` per key (``dict.update``: C speed)."""

    def __init__(self) -> None:
        self.count = 0
        self.last: dict[str, int] = {}

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        sink = self

        class _Writer(SinkWriter):
            async def write(self, values: list[Any], times: list[Any] | None) -> None:
                sink.count += len(values)
                sink.last.update(values)
        return _Writer()


def _count(state: int | None, _record: tuple[str, int]) -> tuple[int, int]:
    """The stateful_map body, as Bytewax's baseline: state = the key's count so far."""
    n = 1 if state is None else state + 1
    return n, n


class Count(Operator):
    """The same count with the operator API: one ``Value`` per key, one await per access."""

    total = Value(int, default=0)

    async def on_element(self, record: tuple[str, int], ctx: Any) -> None:
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit((ctx.key, n))


def _record(i: int) -> tuple[str, int]:
    return (f"key{i % KEYS}", i)


def keyed_count_topology(records: list | Source, sink: Sink, api: str) -> Topology:
    source = records if isinstance(records, Source) else IterableSource(records)
    t = (Topology(f"keyed-count-{api}")
         .source("records", source, batch_size=BATCH)
         .key_by(operator.itemgetter(0), "by-key"))
    t = t.stateful_map("count", _count) if api == "stateful_map" else t.operator("count", Count)
    return t.sink("out", sink)


def quiesce() -> None:
    """Collect, then freeze what is alive (the inputs) out of the GC's sight; before every
    timed run, both sides. ``reactor.run`` itself does ``gc.collect(); gc.freeze()`` on
    entry, which with the inputs of this benchmark in memory (1M events: ~300 ms) would
    time a traversal of the benchmark's own data, not the job."""
    gc.collect()
    gc.freeze()


def run_job(topology: Topology, root: str, **config: Any) -> tuple[float, Any]:
    """``run(topology)`` with a fresh state dir under ``root``; (wall seconds, JobResult)."""
    state = tempfile.mkdtemp(prefix="state-", dir=root)
    try:
        quiesce()
        t0 = time.perf_counter()
        result = run(topology, state_dir=state, **config)
        return time.perf_counter() - t0, result
    finally:
        gc.unfreeze()
        shutil.rmtree(state, ignore_errors=True)


def check_counts(side: str, outputs: int, last: dict, n: int) -> None:
    want = n // KEYS
    if outputs != n:
        raise SystemExit(f"dataflow_bench: {side} emitted {outputs} outputs for {n} records")
    if len(last) != KEYS or any(v != want for v in last.values()):
        bad = next((k, v) for k, v in last.items() if v != want) if last else None
        raise SystemExit(f"dataflow_bench: {side} got wrong final counts ({len(last)} keys; "
                         f"first wrong: {bad}, want {want})")


def ours_keyed_count(records: list, root: str, api: str) -> float:
    sink = LastCountSink()
    seconds, _ = run_job(keyed_count_topology(records, sink, api), root, checkpoint_every=1.0)
    check_counts(f"ours ({api})", sink.count, sink.last, len(records))
    return len(records) / seconds


def bytewax_keyed_count(records: list, root: str) -> float:
    quiesce()
    try:
        r = bw.keyed_count(records, batch_size=BATCH, epoch_s=1.0, recovery_dir=root)
    finally:
        gc.unfreeze()
    check_counts("bytewax", r["outputs"], r["last_counts"], len(records))
    return r["records_per_s"]


def ours_nexmark(query: str, events: list, root: str) -> tuple[float, list]:
    sink: Any = NullSink() if query == "q1" else CollectSink()
    seconds, result = run_job(build(query, events, sink=sink), root, checkpoint_every=1.0)
    if result.elements_in != len(events):
        raise SystemExit(f"dataflow_bench: {query} read {result.elements_in} of {len(events)}")
    if query == "q1":
        bids = sum(1 for e in events if e.__class__ is Bid)
        if sink.count != bids:
            raise SystemExit(f"dataflow_bench: q1 emitted {sink.count} bids of {bids}")
        return seconds, []
    return seconds, sorted(sink.results)


def p99(samples: list[float]) -> float | None:
    if not samples:
        return None
    s = sorted(samples)
    return s[max(0, math.ceil(0.99 * len(s)) - 1)]


# ------------------------------------------------------------------ main

def prepare_dir(arg: str | None) -> str:
    parent = os.path.abspath(arg or os.path.join(_REPO, ".bench-tmp"))
    os.makedirs(parent, exist_ok=True)
    kind = fs_type(parent)
    if kind in MEMORY_FS:
        sys.exit(f"dataflow_bench: {parent} is on {kind}; state must go to a real disk "
                 f"(pass --dir on one)")
    return tempfile.mkdtemp(prefix="dataflow_bench-", dir=parent)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smaller inputs: under 60 s")
    p.add_argument("--records", type=int, help="keyed-count records (1,000,000; quick 200,000)")
    p.add_argument("--events", type=int, help="Nexmark events (1,000,000; quick 100,000)")
    p.add_argument("--pause-records", type=int,
                   help="records of the checkpoint-pause run (5,000,000)")
    p.add_argument("--reps", type=int, help="repetitions per side, best counts (3; quick 2)")
    p.add_argument("--dir", help="parent of the state dirs (a real disk; default "
                                 "<repo>/.bench-tmp)")
    args = p.parse_args(argv)

    quick = args.quick
    n = args.records or (200_000 if quick else 1_000_000)
    m = args.events or (100_000 if quick else 1_000_000)
    n_pause = pause_base = args.pause_records or 5_000_000
    reps = args.reps or (2 if quick else 3)
    if n % KEYS:
        sys.exit(f"dataflow_bench: --records must be a multiple of {KEYS}")
    why = bw.available()
    have_bw = why is None
    root = prepare_dir(args.dir)
    wall0 = time.perf_counter()
    load0 = os.getloadavg()[0]
    log(f"{n:,} records, {m:,} events, {reps} reps, state under {root} ({fs_type(root)}); "
        f"bytewax: {'yes' if have_bw else why}")

    watchdog = Watchdog("dataflow_bench", lambda: shutil.rmtree(root, ignore_errors=True),
                        what="job", dump_stacks=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    step = 60 if quick else 300
    figures: dict[str, Any] = {"records": n, "keys": KEYS, "events": m, "reps": reps,
                               "bytewax": bw._bytewax_version() if have_bw else None,
                               "state_fs": fs_type(root)}
    ratios: dict[str, float] = {}
    notes: list[str] = [""]
    try:
        # -- keyed running count ------------------------------------------------------
        watchdog.arm("building records", step)
        records = [(f"key{i % KEYS}", i) for i in range(n)]
        best = {"stateful_map": 0.0, "operator": 0.0, "bytewax": 0.0}
        for rep in range(reps):
            order = ["stateful_map", "operator", "bytewax"]
            if rep % 2:
                order.reverse()
            for side in order:
                if side == "bytewax" and not have_bw:
                    continue
                watchdog.arm(f"keyed count {side} rep {rep + 1}", step)
                v = (bytewax_keyed_count(records, root) if side == "bytewax"
                     else ours_keyed_count(records, root, side))
                log(f"keyed count {side} rep {rep + 1}: {v:,.0f} records/s")
                best[side] = max(best[side], v)
        kc, kc_op, kc_bw = best["stateful_map"], best["operator"], best["bytewax"]
        figures["keyed_count_records_per_s"] = round(kc)
        figures["keyed_count_operator_api_records_per_s"] = round(kc_op)
        if have_bw:
            figures["bytewax_keyed_count_recovery_records_per_s"] = round(kc_bw)
            ratios["keyed_count_vs_bytewax_recovery"] = round(kc / kc_bw, 3)
        del records

        # -- Nexmark ------------------------------------------------------------------
        watchdog.arm("generating events", step)
        t0 = time.perf_counter()
        events = list(generate(m))
        gen_rate = m / (time.perf_counter() - t0)
        figures["nexmark_generator_events_per_s"] = round(gen_rate)
        bids = [(e.auction, e.date_time) for e in events if e.__class__ is Bid]
        figures["nexmark_bids"] = len(bids)
        qbest = {"q1": math.inf, "q5": math.inf, "q7": math.inf}
        q5_results: list = []
        bw_best = {"global": math.inf, "keyed": math.inf}
        bw_results: dict[str, list] = {}
        for rep in range(reps):
            order = ["q1", "q5", "q7", "bw-global", "bw-keyed"]
            if rep % 2:
                order.reverse()
            for side in order:
                if side.startswith("bw-"):
                    variant = side[3:]
                    if not have_bw or (variant == "keyed" and rep > 0 and not quick):
                        continue
                    watchdog.arm(f"bytewax q5 {variant} rep {rep + 1}", step * 2)
                    quiesce()
                    try:
                        r = bw.nexmark_q5(bids, window_ms=10_000, slide_ms=2_000,
                                          variant=variant)
                    finally:
                        gc.unfreeze()
                    seconds = r["seconds"]
                    bw_results[variant] = r["results"]
                    bw_best[variant] = min(bw_best[variant], seconds)
                    log(f"bytewax q5 {variant} rep {rep + 1}: {m / seconds:,.0f} events/s "
                        f"({len(bids) / seconds:,.0f} bids/s)")
                    continue
                watchdog.arm(f"nexmark {side} rep {rep + 1}", step)
                seconds, results = ours_nexmark(side, events, root)
                if side == "q5":
                    q5_results = results
                elif side == "q7":
                    figures["nexmark_q7_results"] = len(results)
                qbest[side] = min(qbest[side], seconds)
                log(f"nexmark {side} rep {rep + 1}: {m / seconds:,.0f} events/s")
        for q in ("q1", "q5", "q7"):
            figures[f"nexmark_{q}_events_per_s"] = round(m / qbest[q])
        figures["nexmark_q5_results"] = len(q5_results)
        figures["nexmark_q5_windows"] = len({r[0] for r in q5_results})
        match: bool | None = None
        if have_bw:
            match = all(res == q5_results for res in bw_results.values())
            figures["q5_results_match"] = match
            if not match:
                for variant, res in bw_results.items():
                    if res != q5_results:
                        only_ours = sorted(set(q5_results) - set(res))[:5]
                        only_bw = sorted(set(res) - set(q5_results))[:5]
                        print(f"!!! q5 MISMATCH against bytewax ({variant}): ours "
                              f"{len(q5_results)} results, bytewax {len(res)}; only ours "
                              f"{only_ours}, only bytewax {only_bw}", flush=True)
                        log(f"q5 MISMATCH against bytewax {variant}")
            fastest = min(bw_best, key=bw_best.get)  # type: ignore[arg-type]
            figures["bytewax_q5_global_events_per_s"] = round(m / bw_best["global"])
            figures["bytewax_q5_keyed_events_per_s"] = round(m / bw_best["keyed"])
            ratios["nexmark_q5_vs_bytewax"] = round(bw_best[fastest] / qbest["q5"], 3)
            ratios["nexmark_q5_vs_bytewax_keyed"] = round(bw_best["keyed"] / qbest["q5"], 3)
        del events, bids

        # -- checkpoint pauses ---------------------------------------------------------
        # Records made on the fly (GeneratorSource): the run must be long enough for
        # >= 20 checkpoints, and a checkpoint starts only once the previous one
        # committed, so the count depends on the disk; doubled (once) if short.
        while True:
            watchdog.arm("checkpoint pauses", step * 3)
            sink = LastCountSink()
            seconds, result = run_job(
                keyed_count_topology(GeneratorSource(_record, count=n_pause), sink,
                                     "stateful_map"),
                root, checkpoint_every=0.1, checkpoint_every_elements=max(1, n_pause // 25))
            check_counts("ours (checkpoint pauses)", sink.count, sink.last, n_pause)
            log(f"checkpoint pauses: {n_pause:,} records, {len(result.checkpoints)} checkpoints")
            if len(result.checkpoints) > 20 or n_pause > pause_base:
                break
            n_pause *= 2
        pauses = list(result.checkpoint_pauses_ms)
        cps = result.checkpoints
        # One operator instance: its pauses are the checkpoints', in order. The final
        # checkpoint's "pause" waits for its commit with the stream over (nothing is
        # held up behind it), so the figure is over the checkpoints taken mid-stream.
        if len(pauses) == len(cps):
            in_stream = [ms for ms, c in zip(pauses, cps) if not c.get("final")]
        else:
            in_stream = pauses
            notes.append("checkpoint pauses: could not tell the final checkpoint's pause "
                         "apart; all counted")
        figures["checkpoint_pause_p99_ms"] = p99(in_stream)
        figures["checkpoint_pause_max_ms"] = max(in_stream) if in_stream else None
        figures["checkpoint_pause_samples"] = len(in_stream)
        figures["checkpoint_pause_final_ms"] = pauses[-1] if len(pauses) == len(cps) else None
        figures["checkpoint_pause_p99_incl_final_ms"] = p99(pauses)
        figures["checkpoints_taken"] = len(result.checkpoints)
        figures["checkpoint_run_records_per_s"] = round(n_pause / seconds)
        log(f"checkpoint pauses: {len(pauses)} samples over {len(result.checkpoints)} "
            f"checkpoints, p99 {figures['checkpoint_pause_p99_ms']} ms")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    watchdog.arm("done", 3600)

    figures["load_avg_start"] = round(load0, 2)
    figures["load_avg_end"] = round(os.getloadavg()[0], 2)
    figures["wall_s"] = round(time.perf_counter() - wall0, 1)

    def r(key: str) -> float | None:
        return ratios.get(key)

    def rate(v: float | None) -> str:
        return "-" if v is None else f"{v:,.0f}"

    missing = "n/a (no bytewax)"
    bw_kc = figures.get("bytewax_keyed_count_recovery_records_per_s")
    bw_q5_best = max(figures.get("bytewax_q5_global_events_per_s", 0),
                     figures.get("bytewax_q5_keyed_events_per_s", 0)) if have_bw else None
    rows = [
        ("keyed count, stateful_map (records/s)", rate(kc), "-", None,
         "keyed_count_records_per_s", kc),
        ("  vs Bytewax stateful_map, recovery on", rate(kc), rate(bw_kc) if have_bw else missing,
         r("keyed_count_vs_bytewax_recovery"), "keyed_count_vs_bytewax_recovery", kc),
        ("keyed count, Operator + Value (records/s)", rate(kc_op), "-", None,
         "keyed_count_operator_api_records_per_s", kc_op),
        ("nexmark q1 (events/s)", rate(figures["nexmark_q1_events_per_s"]), "-", None,
         "nexmark_q1_events_per_s", figures["nexmark_q1_events_per_s"]),
        ("nexmark q5 (events/s) vs Bytewax, faster variant",
         rate(figures["nexmark_q5_events_per_s"]), rate(bw_q5_best) if have_bw else missing,
         r("nexmark_q5_vs_bytewax"), "nexmark_q5_vs_bytewax", figures["nexmark_q5_events_per_s"]),
        ("  vs Bytewax keyed variant (count_window per auction)",
         rate(figures["nexmark_q5_events_per_s"]),
         rate(figures.get("bytewax_q5_keyed_events_per_s")) if have_bw else missing,
         r("nexmark_q5_vs_bytewax_keyed"), "nexmark_q5_vs_bytewax_keyed",
         figures["nexmark_q5_events_per_s"]),
        ("nexmark q7 (events/s)", rate(figures["nexmark_q7_events_per_s"]), "-", None,
         "nexmark_q7_events_per_s", figures["nexmark_q7_events_per_s"]),
        (f"checkpoint pause p99 (ms; {figures['checkpoint_pause_samples']} mid-stream of "
         f"{figures['checkpoints_taken']} checkpoints)",
         "-" if figures["checkpoint_pause_p99_ms"] is None
         else f"{figures['checkpoint_pause_p99_ms']:.1f}", "-", None,
         "checkpoint_pause_p99_ms", figures["checkpoint_pause_p99_ms"]),
    ]
    notes += [
        f"{n:,} keyed-count records over {KEYS:,} keys (batches of {BATCH:,}); {m:,} Nexmark "
        f"events ({figures['nexmark_bids']:,} bids), generated beforehand (the generator alone "
        f"makes {gen_rate:,.0f} events/s) and fed from a list; Bytewax gets the same bids.",
        f"Best of {reps} repetitions per side, sides interleaved (a noisy shared machine); the "
        f"keyed Bytewax q5 variant runs {'once' if not quick else f'{reps} times'}.",
        "Ours: wall time of reactor.run() with a state dir on disk, a checkpoint every 1 s "
        f"({figures['state_fs']}); Bytewax: run_main() alone; keyed count with recovery on "
        "(1 s epochs), q5 without.",
        "q5 ratios are time ratios over the same stream (ours also filters out the non-bids).",
    ]
    if have_bw:
        notes.append(f"q5 results match Bytewax (both variants): {match} "
                     f"({figures['nexmark_q5_results']} results, "
                     f"{figures['nexmark_q5_windows']} windows)")
    else:
        notes.append(f"Bytewax is missing ({why}); the *_vs_bytewax* ratios are left out. "
                     f"Install with {bw.INSTALL_HINT}.")
    notes.append(f"Checkpoint pauses: keyed count over {n_pause:,} records, a checkpoint "
                 f"requested every 0.1 s or {max(1, n_pause // 25):,} records; mid-stream max "
                 f"{figures['checkpoint_pause_max_ms']} ms; the final checkpoint's "
                 f"{figures['checkpoint_pause_final_ms']} ms is left out of the p99 (with it: "
                 f"{figures['checkpoint_pause_p99_incl_final_ms']} ms).")
    notes.append("Before each timed run (both sides) the inputs are frozen out of the GC's "
                 "sight (gc.collect + gc.freeze, untimed).")
    notes.append(f"Load average {figures['load_avg_start']} at start, "
                 f"{figures['load_avg_end']} at end; {figures['wall_s']} s in all.")
    print_table("dataflow", rows, TARGETS, notes)
    print(json.dumps({"bench": "dataflow", "figures": figures, "ratios": ratios}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
