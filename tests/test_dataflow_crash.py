"""Crash consistency of a dataflow job: SIGKILL at random moments loses nothing and
repeats nothing.

Each chain starts ``tests/dataflow_crash_child.py`` — a keyed word count over a
``FileSource`` with a ``state_dir``, a ``FileSink`` output and a checkpoint
every 100 source lines — on a fresh state/output directory, SIGKILLs it at a
random moment after it reports ``started``, starts it again (it restores by
itself), kills it again, ... and finally lets it run to the end. Then:

* after every kill, the committed output (``FileSink.read_committed()``) is a
  prefix of the exactly-once output: each word's running counts are
  ``1, 2, ..., m`` — no value skipped or repeated;
* at the end, the last running count of each word equals the exact
  ``collections.Counter`` of the input, every count appears exactly once, and
  no ``.inprogress`` file is left behind.
"""
from __future__ import annotations

import collections
import json
import os
import random
import signal
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CHILD = os.path.join(HERE, "dataflow_crash_child.py")
ROOT = os.path.dirname(HERE)

N_LINES = 2000
WORDS_PER_LINE = 10
KILLS_PER_CHAIN = 4


def make_input(path: str, seed: int) -> collections.Counter:
    """20k words over ~300 distinct ones (skewed, like text); no newline at the end."""
    rng = random.Random(seed)
    lines = [" ".join(f"w{int(rng.paretovariate(1.2)) % 300}" for _ in range(WORDS_PER_LINE))
             for _ in range(N_LINES)]
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return collections.Counter(w for ln in lines for w in ln.split())


def committed(out_dir: str) -> list[tuple[str, int]]:
    from reactor import FileSink
    return [tuple(json.loads(ln)) for ln in FileSink(out_dir).read_committed()]


def check_prefix(rows: list[tuple[str, int]], what: str) -> dict[str, int]:
    """Each word's counts must run 1, 2, ..., m in the committed output; returns the m's."""
    last: dict[str, int] = {}
    for i, (w, n) in enumerate(rows):
        want = last.get(w, 0) + 1
        assert n == want, (
            f"{what}: committed line {i} is {[w, n]} but the previous committed count of {w!r} "
            f"was {want - 1}: a count was " + ("repeated (duplicate output)" if n < want else
                                               "skipped (lost output)"))
        last[w] = n
    return last


def start(inp: str, state: str, out: str, errfile) -> subprocess.Popen:
    # stderr goes to a file: stdout is read with readline() and then read(), never mixed
    # with communicate() (whose raw reads would miss what readline() already buffered).
    return subprocess.Popen([sys.executable, CHILD, inp, state, out],
                            stdout=subprocess.PIPE, stderr=errfile, cwd=ROOT)


def crash_loop(base: str, kills_wanted: int, seed: int) -> dict[str, int]:
    rng = random.Random(seed)
    inp = os.path.join(base, "input.txt")
    expected = make_input(inp, seed)
    stats = {"kills": 0, "chains": 0, "runs": 0, "ended_before_kill": 0}
    while stats["kills"] < kills_wanted:
        chain = stats["chains"]
        stats["chains"] += 1
        state = os.path.join(base, f"state-{chain}")
        out = os.path.join(base, f"out-{chain}")
        history: list[str] = []
        finished = False
        for attempt in range(KILLS_PER_CHAIN + 1):
            last_try = attempt == KILLS_PER_CHAIN or stats["kills"] >= kills_wanted
            errpath = os.path.join(base, f"stderr-{chain}-{attempt}.txt")
            with open(errpath, "wb") as errfile:
                proc = start(inp, state, out, errfile)
            stats["runs"] += 1
            first = proc.stdout.readline().decode()        # "started" (or EOF on failure)
            delay = None if last_try else rng.uniform(0.0, 0.45)
            what = (f"chain {chain} run {attempt} (seed {seed}, history {history}; repro: python "
                    f"tests/dataflow_crash_child.py {inp} {state} {out})")
            try:
                proc.wait(60 if delay is None else delay)
            except subprocess.TimeoutExpired:
                if delay is None:
                    proc.kill()
                    pytest.fail(f"{what}: the child did not finish within 60 s")
                proc.send_signal(signal.SIGKILL)
            proc.wait(60)
            text = first + proc.stdout.read().decode()
            proc.stdout.close()
            with open(errpath, "rb") as f:
                err = f.read()
            if proc.returncode == -signal.SIGKILL:
                stats["kills"] += 1
                history.append(f"killed after {delay:.3f}s")
                check_prefix(committed(out), f"{what}, after the kill")
                continue
            assert proc.returncode == 0, (f"{what}: the child exited with status "
                                          f"{proc.returncode}\n{text[-2000:]}\n{err.decode()[-3000:]}")
            assert "done" in text, (f"{what}: the child did not report done:\n{text}\n"
                                    f"{err.decode()[-3000:]}")
            if delay is not None:
                stats["ended_before_kill"] += 1
            history.append("finished")
            finished = True
            break
        assert finished, f"chain {chain}: the last run was not allowed to finish ({history})"
        what = f"chain {chain} (seed {seed}, history {history})"
        rows = committed(out)
        last = check_prefix(rows, what)
        assert last == dict(expected), (
            f"{what}: final counts differ from the input's Counter: "
            f"{sorted((w, last.get(w), expected.get(w)) for w in set(last) | set(expected) if last.get(w) != expected.get(w))[:10]}")
        assert len(rows) == sum(expected.values()), (what, len(rows))
        left = [n for n in os.listdir(out) if n.endswith(".inprogress")]
        assert not left, f"{what}: stale .inprogress files after the job finished: {left}"
    return stats


def parallel_crash_loops(base: str, kills_wanted: int, seed: int, workers: int = 2) -> dict:
    """Independent crash loops (own input, dirs and seed) side by side, to use the cores."""
    from concurrent.futures import ThreadPoolExecutor
    share = -(-kills_wanted // workers)
    dirs = [os.path.join(base, f"w{i}") for i in range(workers)]
    for d in dirs:
        os.makedirs(d)
    with ThreadPoolExecutor(workers) as ex:
        futs = [ex.submit(crash_loop, d, share, seed + i) for i, d in enumerate(dirs)]
        results = [f.result() for f in futs]
    return {k: sum(r[k] for r in results) for k in results[0]}


def test_sigkill_keyed_count_is_exactly_once(tmp_path):
    stats = parallel_crash_loops(str(tmp_path), kills_wanted=30, seed=11)
    print(stats)
    assert stats["kills"] >= 30, stats


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_sigkill_keyed_count_is_exactly_once_long(tmp_path):
    stats = parallel_crash_loops(str(tmp_path), kills_wanted=300, seed=1234)
    print(stats)
    assert stats["kills"] >= 300, stats
