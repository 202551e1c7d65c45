"""``make demo``: word count, killed with SIGKILL mid-run, restored, checked exactly-once.

1. generates a deterministic input (``samples/wordcount.py``'s generator);
2. runs ``reactor run samples/wordcount.py --state-dir .demo/state
   --checkpoint-every 0.2`` and kills it with SIGKILL once two checkpoints
   have committed;
3. shows ``reactor snapshots``, then runs the job again: it restores the last
   committed epoch by itself and runs to the end;
4. reads the committed output (every ``(word, running count)`` the FileSink
   committed, across both runs) and checks it against an independent
   ``collections.Counter`` over the input: the last count of every word must
   match, and each ``(word, n)`` must appear exactly once;
5. shows ``reactor inspect``.

Everything lives in ``.demo/`` under the project (removed at the start, and
at the end when the demo passes). Exit status 1 if a check fails.
"""
from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, ".demo")
INPUT = os.path.join(DEMO, "input.txt")
OUTPUT = os.path.join(DEMO, "out")
STATE = os.path.join(DEMO, "state")
LINES = 150_000                 # ~1.2M words: a run takes a few seconds
KILL_AFTER_EPOCHS = 2

sys.path.insert(0, ROOT)
os.environ.update(WORDCOUNT_INPUT=INPUT, WORDCOUNT_OUTPUT=OUTPUT, WORDCOUNT_LINES=str(LINES))


def rel(path: str) -> str:
    return os.path.relpath(path, ROOT)


def reactor_cmd() -> list[str]:
    """The ``reactor`` console script of this interpreter (else ``python -m reactor.cli``)."""
    script = os.path.join(os.path.dirname(sys.executable), "reactor")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "reactor.cli"]


def show(title: str) -> None:
    print(f"\n== {title}", flush=True)


def show_child_stderr(lines: list[str]) -> None:
    """The child's stderr, indented; scheduler stall warnings are only counted."""
    stalls = [ln for ln in lines if "stall:" in ln]
    for ln in lines:
        if "stall:" not in ln:
            print(f"   | {ln.rstrip()}")
    if stalls:
        print(f"   | ({len(stalls)} scheduler stall warning(s) omitted)")


def cli(*args: str) -> str:
    """Run a ``reactor`` subcommand; print and return its output."""
    p = subprocess.run(reactor_cmd() + list(args), cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    print(f"$ reactor {' '.join(args)}")
    for ln in (p.stdout + p.stderr).splitlines():
        print(f"   {ln}")
    if p.returncode != 0:
        raise SystemExit(f"demo: `reactor {' '.join(args)}` failed with exit status "
                         f"{p.returncode}")
    return p.stdout


def committed_epochs() -> list[int]:
    from statelets.snapshot import list_epochs
    return list_epochs(os.path.join(STATE, "snapshots"))


def first_run() -> None:
    """Start the job and SIGKILL it once KILL_AFTER_EPOCHS checkpoints have committed."""
    args = ["run", "samples/wordcount.py", "--state-dir", rel(STATE), "--checkpoint-every", "0.2"]
    show(f"run the job, then kill -9 it after {KILL_AFTER_EPOCHS} checkpoints")
    print(f"$ reactor {' '.join(args)} &")
    t0 = time.monotonic()
    proc = subprocess.Popen(reactor_cmd() + args, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(proc.stdout), daemon=True)
    reader.start()
    epochs: list[int] = []
    while proc.poll() is None and time.monotonic() - t0 < 30:
        epochs = committed_epochs()
        if len(epochs) >= KILL_AFTER_EPOCHS:
            break
        time.sleep(0.02)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join(5)
        show_child_stderr(out)
        print(f"killed the job with SIGKILL {time.monotonic() - t0:.1f} s in, after epoch(s) "
              f"{', '.join(map(str, epochs))} committed (exit status {proc.returncode})")
    else:
        reader.join(5)
        show_child_stderr(out)
        print(f"note: the job finished (exit status {proc.returncode}) before it could be "
              f"killed; the restore below has nothing left to do")


def second_run() -> None:
    args = ["run", "samples/wordcount.py", "--state-dir", rel(STATE), "--checkpoint-every", "0.2"]
    show("run it again: it restores the last committed epoch by itself")
    print(f"$ reactor {' '.join(args)}")
    p = subprocess.run(reactor_cmd() + args, cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    show_child_stderr((p.stdout + p.stderr).splitlines())
    if p.returncode != 0:
        raise SystemExit(f"demo: the second run failed with exit status {p.returncode}")


def check() -> bool:
    """Compare the committed output with an independent count of the input."""
    from reactor import FileSink
    show("check the committed output against an independent count")
    with open(INPUT, encoding="utf-8") as f:
        expected = collections.Counter(w for line in f for w in line.split())
    last: dict[str, int] = {}
    seen: collections.Counter = collections.Counter()
    lines = FileSink(OUTPUT).read_committed()
    for ln in lines:
        word, n = json.loads(ln)
        seen[(word, n)] += 1
        if n > last.get(word, 0):
            last[word] = n
    print(f"committed output: {len(lines)} (word, count) records in "
          f"{len(FileSink(OUTPUT).committed_files())} files; input: {sum(expected.values())} "
          f"words, {len(expected)} distinct")
    print("top words:")
    for word, n in expected.most_common(8):
        print(f"   {word:<12} {last.get(word, 0):>8}  (independent count {n})")
    ok = True
    if last != dict(expected):
        wrong = sorted(w for w in set(last) | set(expected) if last.get(w) != expected.get(w))
        print(f"counts DO NOT match an independent count: {len(wrong)} word(s) differ, e.g. "
              + ", ".join(f"{w}: {last.get(w)} vs {expected.get(w)}" for w in wrong[:5]))
        ok = False
    else:
        print("counts match an independent count: OK")
    dup = [k for k, c in seen.items() if c > 1]
    missing = sum(n for n in expected.values()) - len(seen)
    if dup or missing:
        print(f"exactly-once output: FAILED ({len(dup)} duplicated (word, n) records, "
              f"{missing} missing)")
        ok = False
    else:
        print("each (word, n) committed exactly once, across the kill: OK")
    return ok


def main() -> int:
    t0 = time.monotonic()
    shutil.rmtree(DEMO, ignore_errors=True)
    os.makedirs(DEMO)
    sys.path.insert(0, os.path.join(ROOT, "samples"))
    from wordcount import generate_input    # the environment above sets its paths
    if not os.path.exists(INPUT):
        generate_input(INPUT, LINES)
    print(f"input: {rel(INPUT)}, {LINES} lines, {os.path.getsize(INPUT) / 1e6:.1f} MB "
          f"(deterministic)")
    first_run()
    show("the checkpoints that survived the kill")
    cli("snapshots", rel(STATE))
    second_run()
    ok = check()
    show("what the state holds")
    cli("inspect", rel(STATE))
    print(f"\ndemo {'passed' if ok else 'FAILED'} in {time.monotonic() - t0:.1f} s")
    if ok:
        shutil.rmtree(DEMO, ignore_errors=True)
    else:
        print(f"(left {rel(DEMO)}/ for a look)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
