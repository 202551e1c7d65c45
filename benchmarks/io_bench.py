#!/usr/bin/env python3
"""I/O benchmark of ``uring``: DmaFile from curio tasks against fio, preadv and threads.

Run from the repository root::

    python benchmarks/io_bench.py --quick          # < 60 s, 256 MiB file
    python benchmarks/io_bench.py                  # full: 1 GiB file, 8 s per side, ~2.5 min
    python benchmarks/io_bench.py --backend sync   # the fallback backend, same patterns

Patterns (ours: ``DmaFile`` through one ``Ring(entries=256)``, one curio task per
"in flight" operation, each with its own pooled 4 KiB or 1 MiB buffer):

* 4 KiB random reads, aligned offsets uniform over the file, 1/32/128 tasks,
  ``read_into`` (zero copy, the store's path); plus ``read_at`` with 32 tasks;
* 1 MiB sequential writes (8 tasks writing consecutive blocks of the already
  written test file) and 1 MiB sequential reads (8 tasks);
* NOP round trips with 32 tasks (no disk).

Baselines, measured in the same run and interleaved with ours (A B B A, each
leg half the time) so that drift on a noisy host hits both sides: fio (io_uring engine, O_DIRECT) for each disk
pattern; one Python loop of ``os.preadv`` (depth 1); 32 Python threads running
``os.preadv`` loops (throughput and CPU per operation).

Output: a table, then as the very last line one JSON object
``{"bench": "io", "figures": {...}, "ratios": {...}}``; every ratio is ours
divided by a baseline from this run (``cpu_per_op_*``: lower is better).
MB/s means 10**6 bytes per second.
"""
from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import attrs

# Normally uring comes from the venv (editable install); without one, fall back
# to the checkout this script lives in.
try:
    import uring  # noqa: F401
except ImportError:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import uring  # noqa: E402
from uring import DmaFile, Ring, backend_info  # noqa: E402
from uring.curio_compat import curio  # noqa: E402

import _common  # noqa: E402  (benchmarks/ is on sys.path)
from _common import Watchdog, fs_type  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
BLOCK = 4 * KiB
BIG = 1 * MiB
RING_ENTRIES = 256
SEQ_TASKS = 8
FILE_NAME = "io_bench.dat"

#: Filesystems whose "Direct I/O" is the page cache: figures there mean nothing.
MEMORY_FS = {"tmpfs", "ramfs", "devtmpfs", "hugetlbfs"}

#: Targets from the issue. Ratio keys compare to a baseline; the nop figure is absolute.
TARGETS = {
    "randread_4k_t128_vs_fio": 0.90,
    "randread_4k_t32_vs_fio": 0.80,
    "seqwrite_1m_vs_fio": 0.90,
    "randread_4k_t1_vs_pread": 0.85,
    "randread_4k_t32_vs_threads32": 1.0,
    "nop_ops_per_s_t32": 500_000,
}


def log(msg: str) -> None:
    """Progress on stderr, so stdout holds only the table and the JSON line."""
    print(f"[io_bench] {msg}", file=sys.stderr, flush=True)


# -- the test directory and file ---------------------------------------------------

def prepare_dir(arg: str | None) -> tuple[str, bool]:
    """The directory for the test file and whether we created it (then we remove it)."""
    path = os.path.abspath(arg) if arg else os.getcwd()
    probe = path
    while not os.path.exists(probe):          # check before creating anything
        probe = os.path.dirname(probe)
    kind = fs_type(probe)
    if kind in MEMORY_FS:
        sys.exit(f"io_bench: {path} is on {kind}, which serves O_DIRECT from memory, so "
                 f"the figures would be meaningless. Pass --dir on a real disk "
                 f"(e.g. --dir /work/io_bench).")
    if arg:
        created = not os.path.isdir(path)
        os.makedirs(path, exist_ok=True)
        return path, created
    return tempfile.mkdtemp(prefix=".io_bench-", dir=path), True


def check_backend(backend: str | None) -> tuple[str, str]:
    """Open and close a ring of the requested backend; exit with the reason if it fails."""
    got: list[str] = []

    async def probe() -> None:
        async with Ring(entries=8, backend=backend) as ring:
            got[:] = [ring.backend, ring.reason]

    try:
        curio.run(probe)
    except Exception as e:      # UringError or the OSError of io_uring_setup
        sys.exit(f"io_bench: cannot start a {backend or 'default'} ring: {e} "
                 f"(backend_info: {backend_info().reason}); try --backend sync")
    return got[0], got[1]


def make_test_file(path: str, size: int) -> bool:
    """Create ``path`` of ``size`` bytes with large aligned direct writes; True if reused."""
    try:
        if os.path.getsize(path) == size:
            return True
    except OSError:
        pass
    st = os.statvfs(os.path.dirname(path))
    if st.f_bavail * st.f_frsize < size + 64 * MiB:
        sys.exit(f"io_bench: not enough free space in {os.path.dirname(path)} for a "
                 f"{size // MiB} MiB test file; use --dir elsewhere or --size-mib")
    t0 = time.perf_counter()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    except OSError as e:
        sys.exit(f"io_bench: cannot open {path} with O_DIRECT ({e.strerror}); "
                 f"use --dir on a filesystem that supports Direct I/O")
    chunk = 8 * MiB
    buf = mmap.mmap(-1, chunk)                   # page aligned, as O_DIRECT needs
    buf.write(random.Random(1).randbytes(chunk))  # not zeros: nothing may elide them
    try:
        os.posix_fallocate(fd, 0, size)
        off = 0
        while off < size:
            n = os.pwritev(fd, [memoryview(buf)[:min(chunk, size - off)]], off)
            off += n
        os.fdatasync(fd)
    finally:
        os.close(fd)
        buf.close()
    log(f"created {path} ({size // MiB} MiB) in {time.perf_counter() - t0:.2f} s")
    return False


@attrs.define
class Measure:
    """What one measured window (or several, added up) produced."""

    ops: int = 0
    nbytes: int = 0
    seconds: float = 0.0
    cpu: float = 0.0          # CPU seconds of the process doing the I/O
    legs: int = 0
    info: dict[str, Any] = attrs.field(factory=dict)

    def add(self, other: "Measure") -> None:
        self.ops += other.ops
        self.nbytes += other.nbytes
        self.seconds += other.seconds
        self.cpu += other.cpu
        self.legs += 1
        for k, v in other.info.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                self.info[k] = self.info.get(k, 0) + v
            else:
                self.info[k] = v

    @property
    def rate(self) -> float:
        """Operations per second."""
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def bandwidth(self) -> float:
        """Bytes per second."""
        return self.nbytes / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_op(self) -> float:
        return self.cpu / self.ops if self.ops else 0.0


def mirrored(legs: dict[str, Callable[[float], Measure]], duration: float,
             rounds: int = 1) -> dict[str, Measure]:
    """Run each side ``2 * rounds`` legs of ``duration / (2 * rounds)``, in order
    and then in reverse, ``rounds`` times (A B C C B A, A B C C B A...).

    A drift of the host (a neighbour's load, the device flushing what the
    previous leg wrote) then lands on every side about equally, and more,
    shorter legs follow a drift more closely.
    """
    out = {name: Measure() for name in legs}
    order = list(legs)
    for name in (order + order[::-1]) * rounds:
        leg = legs[name](duration / (2 * rounds))
        log(f"  {name}: {leg.rate:,.0f} ops/s, {leg.bandwidth / 1e6:,.0f} MB/s, "
            f"{leg.cpu_per_op * 1e6:.1f} us CPU/op")
        out[name].add(leg)
    return out


# -- fio -----------------------------------------------------------------------------

def run_fio(path: str, size: int, rw: str, bs: str, depth: int, duration: float,
            warmup: float) -> Measure:
    """One fio job (io_uring engine, O_DIRECT, one process) after ``warmup`` seconds."""
    cmd = [
        "fio", "--name=x", "--filename=" + path.replace(":", "\\:"),
        "--ioengine=io_uring", "--direct=1", f"--rw={rw}", f"--bs={bs}",
        f"--iodepth={depth}", "--numjobs=1", f"--size={size}", "--norandommap",
        "--randrepeat=0", "--fallocate=none", "--time_based",
        f"--runtime={int(duration * 1000)}ms", f"--ramp_time={int(warmup * 1000)}ms",
        "--output-format=json",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + warmup + 60)
    if out.returncode != 0:
        raise RuntimeError(f"fio failed ({out.returncode}): {out.stderr.strip()[:500]}\n"
                           f"command: {' '.join(cmd)}")
    text = out.stdout
    job = json.loads(text[text.index("{"):])["jobs"][0]
    side = job["write"] if "write" in rw else job["read"]
    seconds = side["runtime"] / 1000.0
    if not side["total_ios"] or not seconds:
        raise RuntimeError(f"fio did no I/O: {' '.join(cmd)}")
    # usr_cpu/sys_cpu are percentages of one CPU over the job's run time.
    cpu = (job["usr_cpu"] + job["sys_cpu"]) / 100.0 * seconds
    return Measure(ops=side["total_ios"], nbytes=side["io_bytes"], seconds=seconds, cpu=cpu)


# -- ours: DmaFile from curio tasks -----------------------------------------------------

class Window:
    """Counts operations and CPU time over the measured window (after the warm-up)."""

    def __init__(self) -> None:
        self.count = [0]         # bumped by every task after each operation
        #: When the next timer is due: tasks of the sync backend, whose operations
        #: never suspend, yield to the scheduler once it has passed.
        self.due = [float("inf")]
        self.running = True
        self.ops = 0
        self.seconds = 0.0
        self.cpu = 0.0

    async def measure(self, warmup: float, duration: float) -> None:
        self.due[0] = time.perf_counter() + warmup
        await curio.sleep(warmup)
        c0, t0, p0 = self.count[0], time.perf_counter(), time.process_time()
        self.due[0] = t0 + duration
        await curio.sleep(duration)
        c1, t1, p1 = self.count[0], time.perf_counter(), time.process_time()
        self.running = False
        self.ops, self.seconds, self.cpu = c1 - c0, t1 - t0, p1 - p0


def run_ours(backend: str | None, path: str, size: int, pattern: str, tasks: int,
             duration: float, warmup: float) -> Measure:
    """One pattern in its own curio kernel and Ring, ``tasks`` tasks, after ``warmup``."""
    result = Measure()

    async def main() -> None:
        async with Ring(entries=RING_ENTRIES, backend=backend) as ring:
            # The sync backend completes every operation without suspending, so
            # its tasks must yield when the timer is due or it would never run.
            sync = ring.backend == "sync"
            win = Window()
            count = win.count
            due = win.due
            clock = time.perf_counter
            f = await DmaFile.open(path, "r+", ring=ring)
            nblocks = size // BLOCK
            nbig = size // BIG
            next_big = [0]

            async def randread_into() -> None:
                buf = ring.buffers.get(BLOCK)
                rand = random.Random().random
                try:
                    while win.running:
                        got = await f.read_into(buf, int(rand() * nblocks) * BLOCK)
                        if got != BLOCK:
                            raise RuntimeError(f"short read: {got} bytes")
                        count[0] += 1
                        if sync and clock() >= due[0]:
                            await curio.sleep(0)
                finally:
                    buf.release()

            async def randread_at() -> None:
                rand = random.Random().random
                while win.running:
                    data = await f.read_at(int(rand() * nblocks) * BLOCK, BLOCK)
                    if len(data) != BLOCK:
                        raise RuntimeError(f"short read: {len(data)} bytes")
                    count[0] += 1
                    if sync and clock() >= due[0]:
                        await curio.sleep(0)

            async def seq(write: bool) -> None:
                buf = ring.buffers.get(BIG)
                buf.view[:] = b"\xa5" * BIG
                try:
                    while win.running:
                        blk = next_big[0]
                        next_big[0] = (blk + 1) % nbig
                        if write:
                            got = await f.write_at(buf, blk * BIG)
                        else:
                            got = await f.read_into(buf, blk * BIG)
                        if got != BIG:
                            raise RuntimeError(f"short {'write' if write else 'read'}: {got}")
                        count[0] += 1
                        if sync and clock() >= due[0]:
                            await curio.sleep(0)
                finally:
                    buf.release()

            async def nops() -> None:
                nop = ring.nop
                while win.running:
                    await nop()
                    count[0] += 1
                    if sync and clock() >= due[0]:
                        await curio.sleep(0)

            work: Callable[[], Any] = {
                "randread": randread_into, "read_at": randread_at,
                "seqwrite": lambda: seq(True), "seqread": lambda: seq(False),
                "nop": nops,
            }[pattern]
            try:
                group = [await curio.spawn(work) for _ in range(tasks)]
                await win.measure(warmup, duration)
                # Each task stops after its current operation: a few ms at most.
                try:
                    async with curio.timeout_after(10):
                        for t in group:
                            await t.join()
                except curio.TaskTimeout:
                    raise RuntimeError(
                        f"{pattern} x{tasks}: operations stopped completing (in flight: "
                        f"{ring.in_flight}); a ring task probably crashed, see above") from None
                if not win.ops:
                    raise RuntimeError(f"{pattern} x{tasks}: no operation completed in "
                                       f"{duration:g} s")
            finally:
                win.running = False
                await f.close()
            st = ring.stats()
            opsize = BIG if pattern.startswith("seq") else BLOCK if pattern != "nop" else 0
            result.ops, result.seconds, result.cpu = win.ops, win.seconds, win.cpu
            result.nbytes = win.ops * opsize
            result.info = {
                "backend": ring.backend, "reason": ring.reason, "direct": f.direct,
                "enter_calls": st.get("enter_calls", 0),
                "sqes_submitted": st.get("sqes_submitted", 0),
                "p50_us": st["latency_us"]["p50"], "p99_us": st["latency_us"]["p99"],
                "fixed": st.get("buffers", {}).get("fixed_reason", ""),
            }

    uring.run(main)      # the ring is the kernel's wait, as in the reactor runtime
    return result


# -- Python baselines: a preadv loop and a pool of threads ---------------------------

def run_pread_loop(path: str, size: int, duration: float, warmup: float) -> Measure:
    """4 KiB random ``os.preadv`` on an O_DIRECT fd from one Python loop (depth 1)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    buf = mmap.mmap(-1, BLOCK)      # page aligned; a bytearray fails with O_DIRECT
    bufs = [buf]
    rand = random.Random().random
    nblocks = size // BLOCK
    preadv = os.preadv
    clock = time.perf_counter
    try:
        end_warm = clock() + warmup
        while clock() < end_warm:
            for _ in range(16):
                preadv(fd, bufs, int(rand() * nblocks) * BLOCK)
        ops = 0
        t0, p0 = clock(), time.process_time()
        end = t0 + duration
        while True:
            for _ in range(16):
                if preadv(fd, bufs, int(rand() * nblocks) * BLOCK) != BLOCK:
                    raise RuntimeError("short preadv")
            ops += 16
            t1 = clock()
            if t1 >= end:
                break
        cpu = time.process_time() - p0
    finally:
        os.close(fd)
        buf.close()
    return Measure(ops=ops, nbytes=ops * BLOCK, seconds=t1 - t0, cpu=cpu)


def run_threads(path: str, size: int, nthreads: int, duration: float,
                warmup: float) -> Measure:
    """``nthreads`` Python threads each looping 4 KiB random ``os.preadv`` (O_DIRECT)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    counts = [0] * nthreads
    stop = threading.Event()
    nblocks = size // BLOCK
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        buf = mmap.mmap(-1, BLOCK)
        bufs = [buf]
        rand = random.Random().random
        preadv = os.preadv
        is_set = stop.is_set
        try:
            while not is_set():
                if preadv(fd, bufs, int(rand() * nblocks) * BLOCK) != BLOCK:
                    raise RuntimeError("short preadv")
                counts[i] += 1
        except BaseException as e:     # reported by the main thread
            errors.append(e)
            stop.set()
        finally:
            buf.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(nthreads)]
    try:
        for t in threads:
            t.start()
        time.sleep(warmup)
        c0, t0, p0 = sum(counts), time.perf_counter(), time.process_time()
        time.sleep(duration)
        c1, t1, p1 = sum(counts), time.perf_counter(), time.process_time()
    finally:
        stop.set()
        for t in threads:
            t.join()
        os.close(fd)
    if errors:
        raise errors[0]
    ops = c1 - c0
    return Measure(ops=ops, nbytes=ops * BLOCK, seconds=t1 - t0, cpu=p1 - p0)


# -- report ---------------------------------------------------------------------------

def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "us":
        return f"{v:.2f} us"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


Row = tuple[str, "float | None", "float | None", str, "float | None", str]


def print_table(rows: list[Row], notes: list[str]) -> None:
    """pattern | ours | baseline | ratio | target | met/MISSED."""
    _common.print_table("pattern", [(name, fmt(ours, unit), fmt(base, unit), ratio, key, ours)
                                    for name, ours, base, unit, ratio, key in rows],
                        {k: (">=", t) for k, t in TARGETS.items()}, notes)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="256 MiB file, ~2 s per side and pattern: the run stays under 60 s")
    p.add_argument("--dir", help="directory for the test file (a real disk, not tmpfs); "
                                 "default: a temporary directory under the current one")
    p.add_argument("--backend", choices=("auto", "io_uring", "sync"), default="auto",
                   help="ring backend (default: what uring.backend_info() picks)")
    p.add_argument("--keep", action="store_true",
                   help="keep the test file (reused by the next run with the same --dir)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    p.add_argument("--duration", type=float,
                   help="seconds measured per side and pattern (default 2, full 8)")
    p.add_argument("--size-mib", type=int, help="test file size in MiB (default 256, full 1024)")
    p.add_argument("--rounds", type=int, choices=range(1, 9), metavar="1..8",
                   help="mirrored rounds of legs per side (default 1 quick, 2 full)")
    args = p.parse_args(argv)

    wall0 = time.perf_counter()
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.3 if args.quick else 1.0
    # Full runs interleave the sides twice (A B B A A B B A): on this kind of
    # host a single pair of legs per side left ratios ±0.05 apart between runs.
    rounds = args.rounds or (1 if args.quick else 2)
    size = (args.size_mib or (256 if args.quick else 1024)) * MiB
    if size < 64 * MiB:
        sys.exit("io_bench: --size-mib must be at least 64")
    backend = None if args.backend == "auto" else args.backend
    have_fio = shutil.which("fio") is not None
    if not have_fio:
        print("fio not found: install with apt-get install -y fio", flush=True)

    used, why = check_backend(backend)
    directory, created = prepare_dir(args.dir)
    path = os.path.join(directory, FILE_NAME)
    load0 = os.getloadavg()[0]
    log(f"backend {used} ({why}); "
        f"file {path}, {size // MiB} MiB; {duration:g} s per side and pattern, "
        f"{warmup:g} s warm-up per leg")

    def cleanup() -> None:
        if args.keep:
            return
        try:
            os.unlink(path)
        except OSError:
            pass
        if created:
            shutil.rmtree(directory, ignore_errors=True)

    watchdog = Watchdog("io_bench", cleanup, what="ring or device")
    leg_limit = warmup + duration + 45     # generous: fio start-up, ring close, a slow disk

    def ours(pattern: str, tasks: int) -> Callable[[float], Measure]:
        def leg(d: float) -> Measure:
            watchdog.arm(f"ours {pattern} x{tasks}", leg_limit)
            return run_ours(backend, path, size, pattern, tasks, d, warmup)
        return leg

    def fio_leg(rw: str, bs: str, depth: int) -> Callable[[float], Measure]:
        def leg(d: float) -> Measure:
            watchdog.arm(f"fio {rw} {bs} iodepth={depth}", leg_limit)
            return run_fio(path, size, rw, bs, depth, d, warmup)
        return leg

    def pread_leg(d: float) -> Measure:
        watchdog.arm("preadv loop", leg_limit)
        return run_pread_loop(path, size, d, warmup)

    def threads_leg(d: float) -> Measure:
        watchdog.arm("32 preadv threads", leg_limit)
        return run_threads(path, size, 32, d, warmup)

    def group(title: str, legs: dict[str, Callable[[float], Measure] | None]) -> dict[str, Measure]:
        log(title)
        return mirrored({k: v for k, v in legs.items() if v is not None}, duration, rounds)

    # SIGTERM (e.g. a CI timeout) unwinds like Ctrl-C, so the test file goes away.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    m: dict[str, Measure] = {}
    try:
        watchdog.arm("creating the test file", 120)
        if make_test_file(path, size):
            log(f"reusing {path}")
        log("nop round trips, 32 tasks")
        m["nop_t32"] = Measure()
        m["nop_t32"].add(ours("nop", 32)(max(1.0, duration / 2)))
        # Each of ours is measured between the baselines it is compared to (A B C C B A).
        g = group("4K random reads, depth 1", {
            "fio_t1": fio_leg("randread", "4k", 1) if have_fio else None,
            "t1": ours("randread", 1), "pread_t1": pread_leg})
        m.update(g)
        g = group("4K random reads, depth 32", {
            "fio_t32": fio_leg("randread", "4k", 32) if have_fio else None,
            "t32": ours("randread", 32), "threads32": threads_leg})
        m.update(g)
        log("4K random reads with read_at, 32 tasks")
        m["read_at_t32"] = Measure()
        m["read_at_t32"].add(ours("read_at", 32)(duration / 2))
        m.update(group("4K random reads, depth 128", {
            "fio_t128": fio_leg("randread", "4k", 128) if have_fio else None,
            "t128": ours("randread", 128)}))
        m.update(group("1M sequential writes, 8 in flight", {
            "fio_seqwrite": fio_leg("write", "1m", SEQ_TASKS) if have_fio else None,
            "seqwrite": ours("seqwrite", SEQ_TASKS)}))
        m.update(group("1M sequential reads, 8 in flight", {
            "fio_seqread": fio_leg("read", "1m", SEQ_TASKS) if have_fio else None,
            "seqread": ours("seqread", SEQ_TASKS)}))
        watchdog.arm("", float("inf"))
    finally:
        cleanup()

    def get(key: str, attr: str) -> float | None:
        return getattr(m[key], attr) if key in m else None

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    t32 = m["t32"]
    mb = 1e6
    figures: dict[str, Any] = {
        "backend": t32.info["backend"],
        "direct_io": t32.info["direct"],
        "file_mib": size // MiB,
        "duration_s": duration,
        "legs_per_side": 2 * rounds,
        "randread_4k_t1_iops": round(m["t1"].rate),
        "randread_4k_t32_iops": round(t32.rate),
        "randread_4k_t128_iops": round(m["t128"].rate),
        "randread_4k_t32_read_at_iops": round(m["read_at_t32"].rate),
        "seqwrite_1m_mb_s": round(m["seqwrite"].bandwidth / mb),
        "seqread_1m_mb_s": round(m["seqread"].bandwidth / mb),
        "nop_ops_per_s_t32": round(m["nop_t32"].rate),
        "pread_randread_4k_t1_iops": round(m["pread_t1"].rate),
        "threads32_randread_4k_iops": round(m["threads32"].rate),
        "cpu_s_per_100k_ops_t32": round(t32.cpu_per_op * 1e5, 3),
        "cpu_s_per_100k_ops_threads32": round(m["threads32"].cpu_per_op * 1e5, 3),
        "cpu_s_per_100k_ops_pread_t1": round(m["pread_t1"].cpu_per_op * 1e5, 3),
        # Ours at depth 1 spins before sleeping (Ring spin_us): busier CPU, less latency.
        "cpu_s_per_100k_ops_t1": round(m["t1"].cpu_per_op * 1e5, 3),
        "cpu_s_per_100k_ops_nop_t32": round(m["nop_t32"].cpu_per_op * 1e5, 3),
    }
    if t32.info["backend"] == "io_uring" and t32.info.get("enter_calls"):
        figures["randread_4k_t32_sqes_per_enter"] = round(
            t32.info["sqes_submitted"] / t32.info["enter_calls"], 2)
    if have_fio:
        figures.update({
            "fio_randread_4k_t1_iops": round(m["fio_t1"].rate),
            "fio_randread_4k_t32_iops": round(m["fio_t32"].rate),
            "fio_randread_4k_t128_iops": round(m["fio_t128"].rate),
            "fio_seqwrite_1m_mb_s": round(m["fio_seqwrite"].bandwidth / mb),
            "fio_seqread_1m_mb_s": round(m["fio_seqread"].bandwidth / mb),
            "cpu_s_per_100k_ops_fio_t32": round(m["fio_t32"].cpu_per_op * 1e5, 3),
        })

    pairs = {
        "randread_4k_t128_vs_fio": (m["t128"].rate, get("fio_t128", "rate")),
        "randread_4k_t32_vs_fio": (t32.rate, get("fio_t32", "rate")),
        "randread_4k_t1_vs_fio": (m["t1"].rate, get("fio_t1", "rate")),
        "seqwrite_1m_vs_fio": (m["seqwrite"].bandwidth, get("fio_seqwrite", "bandwidth")),
        "seqread_1m_vs_fio": (m["seqread"].bandwidth, get("fio_seqread", "bandwidth")),
        "randread_4k_t1_vs_pread": (m["t1"].rate, m["pread_t1"].rate),
        "randread_4k_t32_vs_threads32": (t32.rate, m["threads32"].rate),
        "cpu_per_op_t32_vs_threads32": (t32.cpu_per_op, m["threads32"].cpu_per_op),
    }
    ratios = {k: r for k, (a, b) in pairs.items() if (r := ratio(a, b)) is not None}
    figures["loadavg_1m_start"] = round(load0, 2)
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    figures["wall_s"] = round(time.perf_counter() - wall0, 1)

    if not args.json_only:
        rows: list[Row] = [
            ("randread 4K t1 IOPS vs fio", m["t1"].rate, get("fio_t1", "rate"), "",
             ratios.get("randread_4k_t1_vs_fio"), "randread_4k_t1_vs_fio"),
            ("randread 4K t1 IOPS vs preadv loop", m["t1"].rate, m["pread_t1"].rate, "",
             ratios.get("randread_4k_t1_vs_pread"), "randread_4k_t1_vs_pread"),
            ("randread 4K t32 IOPS vs fio", t32.rate, get("fio_t32", "rate"), "",
             ratios.get("randread_4k_t32_vs_fio"), "randread_4k_t32_vs_fio"),
            ("randread 4K t32 IOPS vs 32 threads", t32.rate, m["threads32"].rate, "",
             ratios.get("randread_4k_t32_vs_threads32"), "randread_4k_t32_vs_threads32"),
            ("CPU per op t32 vs 32 threads (lower=better)", t32.cpu_per_op * 1e6,
             m["threads32"].cpu_per_op * 1e6, "us", ratios.get("cpu_per_op_t32_vs_threads32"),
             "cpu_per_op_t32_vs_threads32"),
            ("randread 4K t32 read_at IOPS vs fio", m["read_at_t32"].rate,
             get("fio_t32", "rate"), "", ratio(m["read_at_t32"].rate, get("fio_t32", "rate")),
             ""),
            ("randread 4K t128 IOPS vs fio", m["t128"].rate, get("fio_t128", "rate"), "",
             ratios.get("randread_4k_t128_vs_fio"), "randread_4k_t128_vs_fio"),
            ("seqwrite 1M MB/s vs fio, 8 in flight", m["seqwrite"].bandwidth / mb,
             None if not have_fio else m["fio_seqwrite"].bandwidth / mb, "",
             ratios.get("seqwrite_1m_vs_fio"), "seqwrite_1m_vs_fio"),
            ("seqread 1M MB/s vs fio, 8 in flight", m["seqread"].bandwidth / mb,
             None if not have_fio else m["fio_seqread"].bandwidth / mb, "",
             ratios.get("seqread_1m_vs_fio"), "seqread_1m_vs_fio"),
            ("nop round trips/s, 32 tasks", m["nop_t32"].rate, None, "", None,
             "nop_ops_per_s_t32"),
        ]
        cpu = [f"ours t32 {figures['cpu_s_per_100k_ops_t32']:.3f}",
               f"32 threads {figures['cpu_s_per_100k_ops_threads32']:.3f}",
               f"ours t1 {figures['cpu_s_per_100k_ops_t1']:.3f}",
               f"preadv loop {figures['cpu_s_per_100k_ops_pread_t1']:.3f}",
               f"ours nop t32 {figures['cpu_s_per_100k_ops_nop_t32']:.3f}"]
        if have_fio:
            cpu.append(f"fio t32 {figures['cpu_s_per_100k_ops_fio_t32']:.3f}")
        notes = [
            "",
            f"backend: {t32.info['backend']} ({t32.info['reason']}); O_DIRECT: "
            f"{t32.info['direct']}; fixed buffers: {t32.info['fixed']}",
            f"file: {size // MiB} MiB on {fs_type(directory)}; each side measured "
            f"{duration:g} s in {2 * rounds} legs ({' '.join(['A B B A'] * rounds)}) after "
            f"{warmup:g} s warm-up each; "
            f"MB = 10^6 bytes",
            "cpu_s per 100k ops: " + ", ".join(cpu),
            f"load average (1 min) {load0:.2f} at start, {figures['loadavg_1m_end']:.2f} "
            f"at end: other work on this machine skews every figure; wall "
            f"{figures['wall_s']:g} s",
        ]
        if t32.info["backend"] == "io_uring" and "randread_4k_t32_sqes_per_enter" in figures:
            notes.append(f"ours t32: {figures['randread_4k_t32_sqes_per_enter']} SQEs per "
                         f"io_uring_enter, completion latency p50 {t32.info['p50_us'] / t32.legs:.0f} us, "
                         f"p99 {t32.info['p99_us'] / t32.legs:.0f} us (mean over legs)")
        if not have_fio:
            notes.append("fio not found: install with apt-get install -y fio "
                         "(the *_vs_fio ratios are skipped)")
        print_table(rows, notes)

    print(json.dumps({"bench": "io", "figures": figures, "ratios": ratios}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
