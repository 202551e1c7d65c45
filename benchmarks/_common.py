"""Helpers shared by the benchmark scripts (run as ``python benchmarks/X.py``)."""
from __future__ import annotations

import os
import re


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
