"""Run a Nexmark query on reactor, from the shell or with ``reactor run``.

::

    python -m samples.nexmark.run q5 --events 100000 [--out DIR] [--state-dir D]
    NEXMARK_QUERY=q7 NEXMARK_EVENTS=200000 reactor run samples/nexmark/run.py --state-dir D

``python -m`` runs the query and prints a one-line summary (events, seconds,
events/s, result lines); results go as JSON lines to ``--out`` (default
``nexmark-out/<query>``) through a transactional FileSink, so a job killed and
run again with the same ``--state-dir`` resumes from its last checkpoint and
the committed output holds each result once.

For ``reactor run`` this file defines a module-level ``topology`` built from
environment variables: ``NEXMARK_QUERY`` (default q5), ``NEXMARK_EVENTS``
(default 100000), ``NEXMARK_OUT`` (default ``nexmark-out/<query>``) and
``NEXMARK_OUT_OF_ORDER_MS`` (the generator's disorder, default 0).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

if __package__ in (None, ""):       # `reactor run samples/nexmark/run.py` runs this by path
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from reactor import FileSink, run  # noqa: E402

from samples.nexmark.generator import NexmarkConfig  # noqa: E402
from samples.nexmark.queries import DEFAULT_OUT, QUERIES, build, json_line  # noqa: E402


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text.replace("_", ""))
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {text!r}") from None


def build_from_env() -> "object":
    """The topology ``reactor run`` picks up (see the module docstring)."""
    query = os.environ.get("NEXMARK_QUERY", "q5").lower()
    events = _env_int("NEXMARK_EVENTS", 100_000)
    config = NexmarkConfig(max_out_of_order_ms=_env_int("NEXMARK_OUT_OF_ORDER_MS", 0))
    out = os.environ.get("NEXMARK_OUT") or os.path.join(DEFAULT_OUT, query)
    return build(query, events, config=config, out=out)


topology = build_from_env()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m samples.nexmark.run",
                                description="Run one Nexmark query on reactor.")
    p.add_argument("query", choices=sorted(QUERIES), help="which query")
    p.add_argument("--events", type=int, default=100_000, help="events to generate (100000)")
    p.add_argument("--out", help="FileSink directory (default nexmark-out/QUERY)")
    p.add_argument("--state-dir", help="state and checkpoints (default: a temporary directory)")
    p.add_argument("--checkpoint-every", type=float, default=1.0,
                   help="seconds between checkpoints (1.0)")
    p.add_argument("--out-of-order-ms", type=int, default=0,
                   help="generator disorder, also the watermark lag (0)")
    p.add_argument("--window-ms", type=int, help="window length (q5, q7, q8; default 10000)")
    p.add_argument("--slide-ms", type=int, help="q5's window slide (default 2000)")
    p.add_argument("--batch-size", type=int, help="source batch size (default 256)")
    args = p.parse_args(argv)

    options: dict = {"batch_size": args.batch_size}
    if args.window_ms is not None:
        if args.query not in ("q5", "q7", "q8"):
            p.error(f"--window-ms applies to q5, q7 and q8, not {args.query}")
        options["window_ms"] = args.window_ms
    if args.slide_ms is not None:
        if args.query != "q5":
            p.error("--slide-ms applies to q5 only")
        options["slide_ms"] = args.slide_ms
    out = args.out or os.path.join(DEFAULT_OUT, args.query)
    config = NexmarkConfig(max_out_of_order_ms=args.out_of_order_ms)
    sink = FileSink(out, format=json_line)
    topo = build(args.query, args.events, config=config, sink=sink, **options)
    t0 = time.perf_counter()
    result = run(topo, state_dir=args.state_dir, checkpoint_every=args.checkpoint_every)
    seconds = time.perf_counter() - t0
    if result is None:
        print(f"{args.query}: stopped by a signal; run again with the same --state-dir to resume",
              file=sys.stderr)
        return 1
    lines = sum(1 for _ in sink.read_committed())
    restored = (f", restored from epoch {result.restored_from}"
                if result.restored_from is not None else "")
    print(f"{args.query}: {result.elements_in:,} events in {seconds:.2f} s "
          f"({result.elements_in / seconds if seconds else 0:,.0f} events/s{restored}); "
          f"{lines:,} result lines in {out}; epoch {result.epoch} committed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
