#!/usr/bin/env python3
"""I/O benchmark of ``uring``: DmaFile from curio tasks against fio, preadv and threads.

Run from the repository root::

    python benchmarks/io_bench.py --quick          # < 60 s, 256 MiB file
    python benchmarks/io_bench.py                  # full: 1 GiB file, ~9 s per pattern
    python benchmarks/io_bench.py --backend sync   # the fallback backend, same patterns

Patterns (ours: ``DmaFile`` through one ``Ring(entries=256)``, one curio task per
"in flight" operation, each with its own pooled 4 KiB or 1 MiB buffer):

* 4 KiB random reads, aligned offsets uniform over the file, 1/32/128 tasks,
  ``read_into`` (zero copy, the store's path); plus ``read_at`` with 32 tasks;
* 1 MiB sequential writes (8 tasks writing consecutive blocks of the already
  written test file) and 1 MiB sequential reads (8 tasks);
* NOP round trips with 32 tasks (no disk).

Baselines, measured in the same run and interleaved with ours so that drift on
a noisy host hits both sides: fio (io_uring engine, O_DIRECT) for each disk
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

# Normally uring comes from the venv (editable install); without one, fall back
# to the checkout this script lives in.
try:
    import uring  # noqa: F401
except ImportError:
    sys.path.append(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from uring import DmaFile, Ring, backend_info  # noqa: E402
from uring.curio_compat import curio  # noqa: E402

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
                mnt = fields[4].encode().decode("unicode_escape")   # \040 for spaces
                if (real == mnt or real.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, right.split()[0]
    except OSError:
        pass
    return kind


def prepare_dir(arg: str | None) -> tuple[str, bool]:
    """The directory for test files and whether we created it (then we remove it)."""
    if arg:
        path = os.path.abspath(arg)
        os.makedirs(path, exist_ok=True)
        created = False
    else:
        path = tempfile.mkdtemp(prefix=".io_bench-", dir=os.getcwd())
        created = True
    kind = fs_type(path)
    if kind in MEMORY_FS:
        if created:
            shutil.rmtree(path, ignore_errors=True)
        sys.exit(f"io_bench: {path} is on {kind}, which serves O_DIRECT from memory; "
                 f"the figures would be meaningless. Pass --dir on a real disk "
                 f"(e.g. --dir /work/io_bench).")
    return path, created


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


# -- fio -----------------------------------------------------------------------------

def run_fio(path: str, size: int, rw: str, bs: str, depth: int, duration: float,
            warmup: float) -> dict[str, float]:
    """One fio job; returns iops, bytes/s and CPU seconds per operation."""
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
    iops = float(side["iops"])
    runtime_s = job["job_runtime"] / 1000.0 or duration
    cpu_frac = (job["usr_cpu"] + job["sys_cpu"]) / 100.0
    ops = iops * runtime_s
    return {"iops": iops, "bw": float(side["bw_bytes"]),
            "cpu_per_op": cpu_frac * runtime_s / ops if ops else 0.0}


# -- ours: DmaFile from curio tasks -----------------------------------------------------

class Window:
    """Counts operations and CPU time over the measured window (after the warm-up)."""

    def __init__(self) -> None:
        self.count = [0]         # bumped by every task after each operation
        self.running = True
        self.ops = 0
        self.seconds = 0.0
        self.cpu = 0.0

    async def measure(self, warmup: float, duration: float) -> None:
        await curio.sleep(warmup)
        c0, t0, p0 = self.count[0], time.perf_counter(), time.process_time()
        await curio.sleep(duration)
        c1, t1, p1 = self.count[0], time.perf_counter(), time.process_time()
        self.running = False
        self.ops, self.seconds, self.cpu = c1 - c0, t1 - t0, p1 - p0

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_op(self) -> float:
        return self.cpu / self.ops if self.ops else 0.0


def run_ours(backend: str | None, path: str, size: int, pattern: str, tasks: int,
             duration: float, warmup: float) -> dict[str, Any]:
    """One pattern in its own curio kernel and Ring; returns rate, CPU and ring stats."""
    result: dict[str, Any] = {}

    async def main() -> None:
        async with Ring(entries=RING_ENTRIES, backend=backend) as ring:
            # The sync backend completes every operation without suspending, so
            # a task must yield now and then or the timer task never runs.
            yield_mask = 63 if ring.backend == "sync" else -1
            win = Window()
            count = win.count
            f = await DmaFile.open(path, "r+", ring=ring)
            nblocks = size // BLOCK
            nbig = size // BIG
            next_big = [0]

            async def randread_into() -> None:
                buf = ring.buffers.get(BLOCK)
                rand = random.Random().random
                try:
                    n = 0
                    while win.running:
                        got = await f.read_into(buf, int(rand() * nblocks) * BLOCK)
                        if got != BLOCK:
                            raise RuntimeError(f"short read: {got} bytes")
                        count[0] += 1
                        n += 1
                        if not n & yield_mask:
                            await curio.sleep(0)
                finally:
                    buf.release()

            async def randread_at() -> None:
                rand = random.Random().random
                n = 0
                while win.running:
                    data = await f.read_at(int(rand() * nblocks) * BLOCK, BLOCK)
                    if len(data) != BLOCK:
                        raise RuntimeError(f"short read: {len(data)} bytes")
                    count[0] += 1
                    n += 1
                    if not n & yield_mask:
                        await curio.sleep(0)

            async def seq(write: bool) -> None:
                buf = ring.buffers.get(BIG)
                buf.view[:] = b"\xa5" * BIG
                try:
                    n = 0
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
                        n += 1
                        if not n & yield_mask:
                            await curio.sleep(0)
                finally:
                    buf.release()

            async def nops() -> None:
                nop = ring.nop
                n = 0
                while win.running:
                    await nop()
                    count[0] += 1
                    n += 1
                    if not n & yield_mask:
                        await curio.sleep(0)

            work: Callable[[], Any] = {
                "randread": randread_into, "read_at": randread_at,
                "seqwrite": lambda: seq(True), "seqread": lambda: seq(False),
                "nop": nops,
            }[pattern]
            try:
                group = [await curio.spawn(work) for _ in range(tasks)]
                await win.measure(warmup, duration)
                for t in group:
                    await t.join()
            finally:
                win.running = False
                await f.close()
            st = ring.stats()
            result.update(rate=win.rate, cpu_per_op=win.cpu_per_op, backend=ring.backend,
                          reason=ring.reason, direct=f.direct,
                          sqes_per_enter=st.get("sqes_per_enter", 0.0),
                          p50_us=st["latency_us"]["p50"], p99_us=st["latency_us"]["p99"],
                          fixed=st.get("buffers", {}).get("fixed_reason", ""))

    curio.run(main)
    return result


# -- Python baselines: a preadv loop and a pool of threads ---------------------------

def run_pread_loop(path: str, size: int, duration: float, warmup: float) -> dict[str, float]:
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
    return {"iops": ops / (t1 - t0), "cpu_per_op": cpu / ops}


def run_threads(path: str, size: int, nthreads: int, duration: float,
                warmup: float) -> dict[str, float]:
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
    return {"iops": ops / (t1 - t0), "cpu_per_op": (p1 - p0) / ops if ops else 0.0}


# -- report ---------------------------------------------------------------------------

def fmt(v: float | None, unit: str = "") -> str:
    if v is None:
        return "-"
    if unit == "us":
        return f"{v:.2f} us"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def print_table(rows: list[tuple[str, float | None, float | None, str, float | None, str]],
                notes: list[str]) -> None:
    head = ("pattern", "ours", "baseline", "ratio", "target", "")
    body = []
    for name, ours, base, unit, ratio, key in rows:
        target = TARGETS.get(key)
        if key == "nop_ops_per_s_t32":
            check = ours
        else:
            check = ratio
        if target is None or check is None:
            mark = ""
            tstr = "-"
        else:
            mark = "met" if check >= target else "MISSED"
            tstr = f">= {target:,.0f}" if target >= 100 else f">= {target:.2f}"
        body.append((name, fmt(ours, unit), fmt(base, unit),
                     "-" if ratio is None else f"{ratio:.2f}", tstr, mark))
    widths = [max(len(r[i]) for r in [head] + body) for i in range(len(head))]
    line = "  ".join("{:<%d}" % widths[0] if i == 0 else "{:>%d}" % w
                     for i, w in enumerate(widths))
    print(line.format(*head))
    print("  ".join("-" * w for w in widths))
    for r in body:
        print(line.format(*r))
    for n in notes:
        print(n)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="256 MiB file, ~2 s per pattern: the whole run stays under 60 s")
    p.add_argument("--dir", help="directory for the test file (a real disk, not tmpfs); "
                                 "default: a temporary directory under the current one")
    p.add_argument("--backend", choices=("auto", "io_uring", "sync"), default="auto",
                   help="ring backend (default: what uring.backend_info() picks)")
    p.add_argument("--keep", action="store_true",
                   help="keep the test file (reused by the next run with the same --dir)")
    p.add_argument("--json-only", action="store_true", help="print only the JSON line")
    p.add_argument("--duration", type=float, help="seconds measured per pattern")
    p.add_argument("--size-mib", type=int, help="test file size in MiB")
    args = p.parse_args(argv)

    wall0 = time.perf_counter()
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = 0.4 if args.quick else 1.0
    size = (args.size_mib or (256 if args.quick else 1024)) * MiB
    if size < 64 * MiB or size % BIG:
        sys.exit("io_bench: --size-mib must be a whole number >= 64")
    backend = None if args.backend == "auto" else args.backend
    have_fio = shutil.which("fio") is not None
    if not have_fio:
        print("fio not found: install with apt-get install -y fio", flush=True)

    directory, created = prepare_dir(args.dir)
    path = os.path.join(directory, FILE_NAME)
    info = backend_info()
    log(f"backend {args.backend} (process default: {info.backend}, {info.reason}); "
        f"file {path}, {size // MiB} MiB; {duration:g} s per pattern after {warmup:g} s warm-up")

    res: dict[str, Any] = {}
    fio: dict[str, dict[str, float]] = {}

    def ours(key: str, pattern: str, tasks: int, dur: float = duration) -> None:
        log(f"ours {key} ...")
        res[key] = run_ours(backend, path, size, pattern, tasks, dur, warmup)

    def fio_job(key: str, rw: str, bs: str, depth: int) -> None:
        if have_fio:
            log(f"fio {key} ...")
            fio[key] = run_fio(path, size, rw, bs, depth, duration, warmup)

    try:
        reused = make_test_file(path, size)
        if reused:
            log(f"reusing {path}")
        # Interleaved: each of ours runs right next to the baselines it is compared to.
        ours("nop_t32", "nop", 32, min(duration, 1.5))
        fio_job("t1", "randread", "4k", 1)
        ours("t1", "randread", 1)
        log("preadv loop t1 ...")
        pread = run_pread_loop(path, size, duration, warmup)
        fio_job("t32", "randread", "4k", 32)
        ours("t32", "randread", 32)
        log("32 threads ...")
        threads = run_threads(path, size, 32, duration, warmup)
        ours("read_at_t32", "read_at", 32)
        fio_job("t128", "randread", "4k", 128)
        ours("t128", "randread", 128)
        fio_job("seqwrite", "write", "1m", SEQ_TASKS)
        ours("seqwrite", "seqwrite", SEQ_TASKS)
        fio_job("seqread", "read", "1m", SEQ_TASKS)
        ours("seqread", "seqread", SEQ_TASKS)
    finally:
        if not args.keep:
            try:
                os.unlink(path)
            except OSError:
                pass
            if created:
                shutil.rmtree(directory, ignore_errors=True)

    def mb(bytes_per_s: float) -> float:
        return bytes_per_s / 1e6

    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 3) if a is not None and b else None

    f_get = lambda k, field: fio[k][field] if k in fio else None  # noqa: E731
    seqw = res["seqwrite"]["rate"] * BIG
    seqr = res["seqread"]["rate"] * BIG
    figures: dict[str, Any] = {
        "backend": res["t32"]["backend"],
        "direct_io": res["t32"]["direct"],
        "file_mib": size // MiB,
        "duration_s": duration,
        "randread_4k_t1_iops": round(res["t1"]["rate"]),
        "randread_4k_t32_iops": round(res["t32"]["rate"]),
        "randread_4k_t128_iops": round(res["t128"]["rate"]),
        "randread_4k_t32_read_at_iops": round(res["read_at_t32"]["rate"]),
        "seqwrite_1m_mb_s": round(mb(seqw)),
        "seqread_1m_mb_s": round(mb(seqr)),
        "nop_ops_per_s_t32": round(res["nop_t32"]["rate"]),
        "pread_randread_4k_t1_iops": round(pread["iops"]),
        "threads32_randread_4k_iops": round(threads["iops"]),
        "cpu_s_per_100k_ops_t32": round(res["t32"]["cpu_per_op"] * 1e5, 3),
        "cpu_s_per_100k_ops_threads32": round(threads["cpu_per_op"] * 1e5, 3),
        "cpu_s_per_100k_ops_pread_t1": round(pread["cpu_per_op"] * 1e5, 3),
        "randread_4k_t32_sqes_per_enter": res["t32"]["sqes_per_enter"],
        "randread_4k_t32_p99_us": res["t32"]["p99_us"],
    }
    if fio:
        figures.update({
            "fio_randread_4k_t1_iops": round(fio["t1"]["iops"]),
            "fio_randread_4k_t32_iops": round(fio["t32"]["iops"]),
            "fio_randread_4k_t128_iops": round(fio["t128"]["iops"]),
            "fio_seqwrite_1m_mb_s": round(mb(fio["seqwrite"]["bw"])),
            "fio_seqread_1m_mb_s": round(mb(fio["seqread"]["bw"])),
            "cpu_s_per_100k_ops_fio_t32": round(fio["t32"]["cpu_per_op"] * 1e5, 3),
        })

    ratios: dict[str, float] = {}
    pairs = {
        "randread_4k_t128_vs_fio": (res["t128"]["rate"], f_get("t128", "iops")),
        "randread_4k_t32_vs_fio": (res["t32"]["rate"], f_get("t32", "iops")),
        "randread_4k_t1_vs_fio": (res["t1"]["rate"], f_get("t1", "iops")),
        "seqwrite_1m_vs_fio": (seqw, f_get("seqwrite", "bw")),
        "seqread_1m_vs_fio": (seqr, f_get("seqread", "bw")),
        "randread_4k_t1_vs_pread": (res["t1"]["rate"], pread["iops"]),
        "randread_4k_t32_vs_threads32": (res["t32"]["rate"], threads["iops"]),
        "cpu_per_op_t32_vs_threads32": (res["t32"]["cpu_per_op"], threads["cpu_per_op"]),
    }
    for key, (a, b) in pairs.items():
        r = ratio(a, b)
        if r is not None:
            ratios[key] = r
    figures["wall_s"] = round(time.perf_counter() - wall0, 1)

    if not args.json_only:
        fio_t = lambda k, field="iops": f_get(k, field)  # noqa: E731
        rows = [
            ("randread 4K t1 IOPS vs fio", res["t1"]["rate"], fio_t("t1"), "",
             ratios.get("randread_4k_t1_vs_fio"), "randread_4k_t1_vs_fio"),
            ("randread 4K t1 IOPS vs preadv loop", res["t1"]["rate"], pread["iops"], "",
             ratios.get("randread_4k_t1_vs_pread"), "randread_4k_t1_vs_pread"),
            ("randread 4K t32 IOPS vs fio", res["t32"]["rate"], fio_t("t32"), "",
             ratios.get("randread_4k_t32_vs_fio"), "randread_4k_t32_vs_fio"),
            ("randread 4K t32 IOPS vs 32 threads", res["t32"]["rate"], threads["iops"], "",
             ratios.get("randread_4k_t32_vs_threads32"), "randread_4k_t32_vs_threads32"),
            ("CPU per op t32 vs 32 threads (lower=better)", res["t32"]["cpu_per_op"] * 1e6,
             threads["cpu_per_op"] * 1e6, "us", ratios.get("cpu_per_op_t32_vs_threads32"),
             "cpu_per_op_t32_vs_threads32"),
            ("randread 4K t32 read_at IOPS vs fio", res["read_at_t32"]["rate"], fio_t("t32"),
             "", ratio(res["read_at_t32"]["rate"], fio_t("t32")), ""),
            ("randread 4K t128 IOPS vs fio", res["t128"]["rate"], fio_t("t128"), "",
             ratios.get("randread_4k_t128_vs_fio"), "randread_4k_t128_vs_fio"),
            ("seqwrite 1M MB/s vs fio (8 in flight)", mb(seqw),
             None if "seqwrite" not in fio else mb(fio["seqwrite"]["bw"]), "",
             ratios.get("seqwrite_1m_vs_fio"), "seqwrite_1m_vs_fio"),
            ("seqread 1M MB/s vs fio (8 in flight)", mb(seqr),
             None if "seqread" not in fio else mb(fio["seqread"]["bw"]), "",
             ratios.get("seqread_1m_vs_fio"), "seqread_1m_vs_fio"),
            ("nop round trips/s, 32 tasks", res["nop_t32"]["rate"], None, "", None,
             "nop_ops_per_s_t32"),
        ]
        t32 = res["t32"]
        notes = [
            "",
            f"backend: {t32['backend']} ({t32['reason']}); O_DIRECT: {t32['direct']}; "
            f"fixed buffers: {t32['fixed']}",
            f"file: {size // MiB} MiB on {fs_type(directory)}; {duration:g} s per pattern "
            f"after {warmup:g} s warm-up; wall {figures['wall_s']:g} s",
            "cpu_s per 100k ops: ours t32 {:.3f}, 32 threads {:.3f}, preadv loop {:.3f}{}".format(
                figures["cpu_s_per_100k_ops_t32"], figures["cpu_s_per_100k_ops_threads32"],
                figures["cpu_s_per_100k_ops_pread_t1"],
                f", fio t32 {figures['cpu_s_per_100k_ops_fio_t32']:.3f}" if fio else ""),
            f"ours t32: {t32['sqes_per_enter']} SQEs per io_uring_enter, latency p50 "
            f"{t32['p50_us']} us, p99 {t32['p99_us']} us",
        ]
        if not fio:
            notes.append("fio not found: install with apt-get install -y fio "
                         "(the *_vs_fio ratios are skipped)")
        print_table(rows, notes)

    print(json.dumps({"bench": "io", "figures": figures, "ratios": ratios}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
