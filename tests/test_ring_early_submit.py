"""Early submission adapts: operations the kernel completes inside
``io_uring_enter`` (nops) grow the early-submit size up to the SQ size, so a
pass of them costs one syscall; an operation that goes to a device or waits
(a read of an empty pipe) brings it back to ``flush_threshold`` at once."""
from __future__ import annotations

import os
import time

import pytest

import uring
from uring import Ring
from uring.curio_compat import curio

from conftest import needs_io_uring


async def _nops(ring: Ring, tasks: int, each: int) -> None:
    async def worker() -> None:
        for _ in range(each):
            assert await ring.nop() == 0
    group = [await curio.spawn(worker) for _ in range(tasks)]
    for t in group:
        await t.join()


@needs_io_uring
@pytest.mark.parametrize("attached", [True, False], ids=["selector", "tasks"])
def test_inline_completions_grow_the_early_size_and_device_waits_reset_it(attached):
    async def main():
        async with Ring(entries=64, backend="io_uring", flush_threshold=4) as ring:
            assert ring.stats()["early_submit"] == 4
            await _nops(ring, 32, 50)
            assert ring.stats()["early_submit"] == 64
            # 32 tasks each pass, submitted with at most a few syscalls.
            calls0 = ring.stats()["enter_calls"]
            await _nops(ring, 32, 50)
            per_op = (ring.stats()["enter_calls"] - calls0) / (32 * 50)
            assert per_op < 1 / 8, per_op

            # Reads of empty pipes wait in the kernel: the size is back at 4.
            pipes = [os.pipe() for _ in range(8)]
            try:
                async def read(fd: int) -> bytes:
                    buf = bytearray(4)
                    n = await ring.read(fd, buf, 0)
                    return bytes(buf[:n])
                readers = [await curio.spawn(read, r) for r, _ in pipes]
                await curio.sleep(0.05)
                assert ring.stats()["early_submit"] == 4
                for i, (_, w) in enumerate(pipes):
                    os.write(w, b"p%03d" % i)
                got = [await t.join() for t in readers]
                assert got == [b"p%03d" % i for i in range(8)]
            finally:
                for r, w in pipes:
                    os.close(r)
                    os.close(w)
            assert ring.wait_mode == ("selector" if attached else "tasks")
    (uring.run if attached else curio.run)(main)


def test_flush_threshold_is_checked(backend):
    for bad in (0, -1, 2.0, True, "4"):
        with pytest.raises(ValueError, match="flush_threshold"):
            Ring(backend=backend, flush_threshold=bad)


@needs_io_uring
def test_flush_threshold_above_the_sq_size_acts_as_the_sq_size():
    async def main():
        async with Ring(entries=16, backend="io_uring", flush_threshold=1000) as ring:
            assert ring.stats()["early_submit"] == 16
            await _nops(ring, 40, 10)
    uring.run(main)



@needs_io_uring
def test_a_cpu_bound_loop_submits_once_per_pass_and_a_waiting_one_at_once(data_dir):
    """Under uring.run, a loop that hardly waits for 10 ms windows counts as
    CPU-bound (``stats()["cpu_bound"]``): device reads stop resetting the early
    size, so a pass's operations go in one syscall. Once the loop waits for
    the device again, the size is back at ``flush_threshold``."""
    path = os.path.join(data_dir, "blocks.dat")
    with open(path, "wb") as f:
        f.write(os.urandom(64 * 4096))

    def burn(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    async def main():
        async with Ring(entries=64, backend="io_uring", flush_threshold=4) as ring:
            f = await uring.DmaFile.open(path, "r", ring=ring)
            seen = {}
            stop = [False]

            async def busy(i: int) -> None:
                buf = ring.buffers.get(4096)
                try:
                    while not stop[0]:
                        await f.read_into(buf, (i * 7 % 64) * 4096)
                        burn(0.0005)        # far longer than a 4 KiB read
                finally:
                    buf.release()

            group = [await curio.spawn(busy, i) for i in range(16)]
            await curio.sleep(0.3)
            st = ring.stats()
            seen["busy"] = (st["cpu_bound"], st["early_submit"])
            calls0, ops0 = st["enter_calls"], st["sqes_submitted"]
            await curio.sleep(0.2)
            st = ring.stats()
            seen["sqes_per_enter"] = (st["sqes_submitted"] - ops0) / max(1, st["enter_calls"] - calls0)
            stop[0] = True
            for t in group:
                await t.join()
            # Waiting reads (empty pipes) for a few windows: the loop is idle.
            r, w = os.pipe()
            try:
                reader = await curio.spawn(ring.read, r, bytearray(4), 0)
                await curio.sleep(0.05)
                st = ring.stats()
                seen["waiting"] = (st["cpu_bound"], st["early_submit"])
                os.write(w, b"done")
                assert await reader.join() == 4
            finally:
                os.close(r)
                os.close(w)
            await f.close()
            return seen

    seen = uring.run(main)
    cpu_bound, early = seen["busy"]
    assert cpu_bound and early > 4, seen
    assert seen["sqes_per_enter"] > 4, seen
    assert seen["waiting"] == (False, 4), seen
