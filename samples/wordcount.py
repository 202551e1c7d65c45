"""Word count: the job ``make demo`` runs, in the shape of DESIGN.md's example.

Lines of a text file are split into words, keyed by word, and counted by an
operator whose only state is one ``Value`` per word; every element emits
``(word, running count)`` to a transactional :class:`~reactor.FileSink`, so
the committed output holds each ``(word, n)`` exactly once, even across a
``kill -9`` and a restore.

Run it either way::

    reactor run samples/wordcount.py --state-dir .wordcount/state --checkpoint-every 1
    python samples/wordcount.py            # the same, with the settings below

Environment (all optional):

- ``WORDCOUNT_INPUT``: the input text file (default ``.wordcount/input.txt``);
  a deterministic one is generated when it is missing.
- ``WORDCOUNT_LINES``: how many lines to generate then (default 20000).
- ``WORDCOUNT_OUTPUT``: the FileSink's directory (default ``.wordcount/out``).
- ``WORDCOUNT_STATE``: the state dir when run with ``python`` (default
  ``.wordcount/state``; ``reactor run`` takes ``--state-dir`` instead).
"""
from __future__ import annotations

import os
import random

from reactor import FileSink, FileSource, Operator, Topology, run
from statelets import Value

INPUT = os.environ.get("WORDCOUNT_INPUT", os.path.join(".wordcount", "input.txt"))
OUTPUT_DIR = os.environ.get("WORDCOUNT_OUTPUT", os.path.join(".wordcount", "out"))
STATE_DIR = os.environ.get("WORDCOUNT_STATE", os.path.join(".wordcount", "state"))
LINES = int(os.environ.get("WORDCOUNT_LINES", "20000"))

# A small vocabulary; words are drawn with Zipf-like weights, so a few are
# very frequent and most are rare, as in real text.
VOCABULARY = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has more would will "
    "stream state operator epoch barrier checkpoint restore segment manifest ring kernel "
    "reactor actor mailbox timer window watermark source sink key value map reducer batch "
    "core queue shares quota slice compaction snapshot offset commit record index cache buffer"
).split()


def generate_input(path: str, lines: int, *, seed: int = 2022) -> None:
    """Write ``lines`` lines of 4-12 words to ``path``, the same bytes for the same arguments."""
    rng = random.Random(seed)
    weights = [1.0 / (rank + 1) for rank in range(len(VOCABULARY))]
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _ in range(lines):
            f.write(" ".join(rng.choices(VOCABULARY, weights, k=rng.randint(4, 12))) + "\n")
    os.replace(tmp, path)       # a reader never sees half a file


class Count(Operator):
    """Counts each word: one ``int`` per key, emitted as ``(word, running count)``."""

    total = Value(int, default=0)          # keyed: scoped to ctx.key (the word)

    async def on_element(self, word, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit((word, n))


if not os.path.exists(INPUT):
    generate_input(INPUT, LINES)

topology = (Topology("wordcount")
            .source("lines", FileSource(INPUT))
            .flat_map("split", str.split)
            .key_by(lambda word: word)
            .operator("count", Count)
            .sink("out", FileSink(OUTPUT_DIR)))


if __name__ == "__main__":
    result = run(topology, state_dir=STATE_DIR, checkpoint_every=1.0)
    if result is not None:
        print(f"wordcount: epoch {result.epoch} committed, {result.elements_in} lines in "
              f"{result.seconds:.2f} s (restored from epoch {result.restored_from}); "
              f"output in {OUTPUT_DIR}/")
