"""Helpers shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""
from __future__ import annotations

import faulthandler
import os
import re
import sys
import threading
import time
from typing import Any, Callable


def fs_type(path: str) -> str:
    """Filesystem type of ``path`` from /proc/self/mountinfo (longest mount prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fields = left.split()
                if len(fields) < 5 or not right:
                    continue
                # Octal escapes (\040 for a space) as the kernel writes them.
                mnt = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, right.split()[0]
    except OSError:
        pass
    return kind


def fmt(v: Any) -> str:
    """A figure for the table: ``-`` for None, thousands separators from 100 up."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def print_figures(rows: list[tuple[str, Any, Any, Any, str]],
                  targets: dict[str, tuple[str, float]], notes: list[str]) -> None:
    """:func:`print_table` of ``(name, ours, baseline, ratio, key)`` rows of raw figures."""
    print_table("metric", [(name, fmt(ours), fmt(base), ratio, key, ours)
                           for name, ours, base, ratio, key in rows], targets, notes)


def print_table(first: str, rows: list[tuple[str, str, str, Any, str, Any]],
                targets: dict[str, tuple[str, float]], notes: list[str]) -> None:
    """The readable table every benchmark prints before its JSON line.

    ``rows`` are ``(name, ours_text, baseline_text, ratio, key, ours_value)``;
    ``key`` names the ``targets`` entry ``(op, target)`` checked: a ``*_vs_*``
    key checks the ratio, any other key the "ours" value.
    """
    head = (first, "ours", "baseline", "ratio", "target", "met?")
    body = []
    for name, ours_text, base_text, ratio, key, ours in rows:
        tstr, mark = "-", ""
        if key in targets:
            op, target = targets[key]
            value = ratio if "_vs_" in key else ours
            tstr = f"{op} {target:,.0f}" if target >= 100 else f"{op} {target:g}"
            if value is not None:
                ok = value >= target if op == ">=" else value <= target
                mark = "met" if ok else "MISSED"
        body.append((name, ours_text, base_text, "-" if ratio is None else f"{ratio:.2f}",
                     tstr, mark))
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = "  ".join(("{:<%d}" if i == 0 else "{:>%d}") % w for i, w in enumerate(widths))
    print(line.format(*head).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in body:
        print(line.format(*r).rstrip())
    for note in notes:
        print(note)
    sys.stdout.flush()


class Watchdog:
    """Last resort against a wedged ring or store: if a step overruns its deadline,
    say which, optionally dump every thread's stack, clean up and exit with 3."""

    def __init__(self, name: str, cleanup: Callable[[], None], *, what: str,
                 dump_stacks: bool = False) -> None:
        self.name = name
        self.what = what
        self.cleanup = cleanup
        self.dump_stacks = dump_stacks
        self.label = ""
        self.deadline = float("inf")
        self.lock = threading.Lock()
        threading.Thread(target=self._watch, daemon=True, name=f"{name}-watchdog").start()

    def arm(self, label: str, seconds: float) -> None:
        with self.lock:
            self.label, self.deadline = label, time.monotonic() + seconds

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            with self.lock:
                late = time.monotonic() > self.deadline
            if late:
                stacks = (f"; stacks follow (for curio tasks use py-spy dump --pid "
                          f"{os.getpid()} next time), then giving up" if self.dump_stacks
                          else "; giving up")
                print(f"{self.name}: '{self.label}' did not finish in time (a hung "
                      f"{self.what}?){stacks}", file=sys.stderr, flush=True)
                if self.dump_stacks:
                    faulthandler.dump_traceback(all_threads=True)
                try:
                    self.cleanup()
                finally:
                    os._exit(3)
