"""A dataflow job to be killed: the child process of tests/test_dataflow_crash.py.

    python tests/dataflow_crash_child.py INPUT STATE_DIR OUT_DIR [--rate LINES_PER_S]
                                         [--every N] [--parallelism P]

Runs a keyed word count over the lines of INPUT (``FileSource``), restoring
from STATE_DIR by itself, checkpointing every N source lines, and writes
``[word, running count]`` for every word to a ``FileSink`` in OUT_DIR. A
pass-through operator paces the lines to ``--rate`` per second so that a kill
at a random moment lands in the middle of the run rather than after it.

Prints ``started`` (flushed) once the job's operators are running, so the
parent can time its SIGKILL from there, and ``done <epoch> <elements_in>``
when the job finished.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from reactor import FileSink, FileSource, Operator, Topology, run  # noqa: E402
from reactor import curio  # noqa: E402
from statelets import Value  # noqa: E402

RATE = 4000.0


class Pace(Operator):
    """Forwards its input, sleeping so that lines flow at ``RATE`` per second."""

    announced = False

    def on_start(self, ctx) -> None:
        if not Pace.announced:
            Pace.announced = True
            print("started", flush=True)

    async def on_batch(self, batch, ctx) -> None:
        for v in batch.values:
            ctx.emit(v)
        await curio.sleep(len(batch) / RATE)


class Count(Operator):
    """The running count of each word."""

    total = Value(int, default=0)

    async def on_element(self, word, ctx) -> None:
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit([word, n])


def topology(path: str, out: str, parallelism: int) -> Topology:
    return (Topology("crash-wordcount")
            .source("lines", FileSource(path), batch_size=16)
            .operator("pace", Pace)
            .flat_map("split", str.split)
            .key_by(lambda w: w)
            .operator("count", Count, parallelism=parallelism)
            .sink("out", FileSink(out)))


def main() -> None:
    global RATE
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("state_dir")
    p.add_argument("out_dir")
    p.add_argument("--rate", type=float, default=RATE)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--parallelism", type=int, default=2)
    a = p.parse_args()
    RATE = a.rate
    res = run(topology(a.input, a.out_dir, a.parallelism), state_dir=a.state_dir,
              checkpoint_every=None, checkpoint_every_elements=a.every, handle_signals=False)
    print(f"done {res.epoch} {res.elements_in}", flush=True)


if __name__ == "__main__":
    main()
