"""Tasks cancelled while their I/O is in flight leave no trace.

Thousands of reads and rewrites are cancelled at random moments (``task.cancel``,
tiny ``timeout_after``/``ignore_after``). Afterwards nothing is in flight, every
pool buffer is back, the file is intact, and no completed read saw bytes that
were not the file's: a buffer still owned by the kernel was never lent again.
"""
from __future__ import annotations

import random

import pytest

from uring import DmaFile
from uring.curio_compat import curio

from conftest import settle

MiB = 1 << 20
FILE_SIZE = 64 * MiB
CHUNK = 4 * MiB


def expected_content() -> bytes:
    return random.Random(20240601).randbytes(FILE_SIZE)


@pytest.fixture(scope="module")
def content() -> bytes:
    return expected_content()


async def join_quietly(task) -> None:
    """Join a task that may have been cancelled; any other failure propagates."""
    try:
        await task.join()
    except curio.TaskError as e:
        if not isinstance(e.__cause__, curio.CancelledError):
            raise


async def create_file(path, content: bytes) -> DmaFile:
    f = await DmaFile.open(path, "w")
    for off in range(0, FILE_SIZE, CHUNK):
        assert await f.write_at(content[off:off + CHUNK], off) == CHUNK
    return f


async def verify_file(f: DmaFile, content: bytes) -> None:
    for off in range(0, FILE_SIZE, CHUNK):
        got = await f.read_at(off, CHUNK)
        assert got == content[off:off + CHUNK], f"file corrupted in [{off}, {off + CHUNK})"


@pytest.mark.timeout(240)
def test_thousands_of_cancellations_leave_nothing_behind(run, backend, data_dir, content):
    rng = random.Random(7)
    n_tasks = 3000
    wave = 100
    outcome = {"done": 0, "cancelled_in_op": 0, "timed_out": 0}
    wrong: list[str] = []

    async def main(ring):
        f = await create_file(data_dir / "big.bin", content)
        a = f.offset_align

        async def op(kind: str, off: int, n: int) -> None:
            if kind == "read_at":
                data = await f.read_at(off, n)
                if data != content[off:off + n]:
                    wrong.append(f"read_at({off}, {n}) returned other bytes")
            elif kind == "ring.read":
                buf = ring.buffers.get(n)
                try:
                    got = await ring.read(f.fd, buf, off, n, name=f.path)
                    if bytes(buf.view[:got]) != content[off:off + got]:
                        wrong.append(f"ring.read({off}, {n}) filled other bytes")
                finally:
                    buf.release()
            else:  # rewrite the bytes already there: a reused buffer would corrupt the file
                await f.write_at(content[off:off + n], off)

        async def body(kind: str, off: int, n: int, limit: str, tiny: float) -> None:
            try:
                if limit == "timeout_after":
                    try:
                        async with curio.timeout_after(tiny):
                            await op(kind, off, n)
                    except curio.TaskTimeout:
                        outcome["timed_out"] += 1
                        return
                elif limit == "ignore_after":
                    async with curio.ignore_after(tiny) as scope:
                        await op(kind, off, n)
                    if scope.expired:
                        outcome["timed_out"] += 1
                        return
                else:
                    await op(kind, off, n)
            except curio.CancelledError:
                outcome["cancelled_in_op"] += 1
                raise
            outcome["done"] += 1

        for _ in range(n_tasks // wave):
            tasks = []
            for _ in range(wave):
                kind = rng.choice(["read_at", "read_at", "ring.read", "write_at"])
                if kind == "read_at":
                    # reads stay inside the file: reads across EOF are covered elsewhere
                    off = rng.randrange(0, FILE_SIZE - a)
                    n = rng.randrange(0, min(256 << 10, FILE_SIZE - off))
                else:
                    off = rng.randrange(0, FILE_SIZE // a) * a
                    n = min(rng.choice([a, 4096, 64 << 10, 256 << 10]), FILE_SIZE - off)
                    n -= n % a
                limit = rng.choice(["cancel", "cancel", "cancel", "timeout_after", "ignore_after"])
                tiny = rng.choice([1e-6, 1e-5, 5e-5, 2e-4])
                tasks.append((limit, await curio.spawn(body, kind, off, n, limit, tiny)))
            rng.shuffle(tasks)
            for limit, t in tasks:
                if rng.random() < 0.3:
                    await curio.sleep(0)          # let the ring submit and reap a little
                if limit == "cancel":
                    await t.cancel(blocking=False)
            for _limit, t in tasks:
                await join_quietly(t)

        assert await settle(ring) == 0
        assert ring.in_flight == 0
        assert ring.buffers.outstanding == 0
        assert not wrong, wrong[:5]
        await verify_file(f, content)
        await f.close()
        stats = ring.stats()
        assert stats["in_flight"] == 0
        return stats

    stats = run(main)
    print(outcome, stats["ops"])
    cancelled = outcome["cancelled_in_op"] + outcome["timed_out"]
    assert outcome["done"] + cancelled <= n_tasks
    if backend == "io_uring":
        # most cancellations must really hit operations in flight
        assert cancelled >= 1000, outcome


def test_data_is_intact_after_cancelled_rewrites_through_ring_write(run, backend, data_dir):
    """Writes from pool buffers cancelled mid-flight, while other tasks grab and scribble
    on pool buffers of the same size: the file ends up with the intended bytes."""
    size = 8 * MiB
    block = 256 << 10
    good = random.Random(3).randbytes(size)
    rng = random.Random(4)

    async def main(ring):
        f = await DmaFile.open(data_dir / "w.bin", "w")
        await f.write_at(good, 0)

        async def rewrite(off: int) -> None:
            buf = ring.buffers.get(block)
            try:
                buf.view[:block] = good[off:off + block]
                await ring.write(f.fd, buf, off, block, name=f.path)
            finally:
                buf.release()

        async def scribble() -> None:
            # takes whatever the pool lends and overwrites it: harmless unless the
            # pool lends a buffer the kernel is still writing from
            for _ in range(4):
                with ring.buffers.get(block) as buf:
                    buf.view[:block] = b"\xee" * block
                await curio.sleep(0)

        for _ in range(40):
            tasks = [await curio.spawn(rewrite, rng.randrange(0, size // block) * block)
                     for _ in range(24)]
            await curio.sleep(0)
            for t in tasks:
                await t.cancel(blocking=False)
            scribblers = [await curio.spawn(scribble) for _ in range(8)]
            for t in tasks + scribblers:
                await join_quietly(t)
        assert await settle(ring) == 0
        assert ring.buffers.outstanding == 0
        assert await f.read_at(0, size) == good
        await f.close()

    run(main)


def test_released_buffer_is_not_lent_again_while_the_kernel_owns_it(run, backend, data_dir,
                                                                      content):
    """``DmaBuffer.release`` of a buffer whose read was abandoned defers its return."""
    size = 4 * MiB

    async def main(ring):
        f = await create_file(data_dir / "big.bin", content)
        seen_in_kernel = 0
        for attempt in range(60):
            buf = ring.buffers.get(size)
            task = await curio.spawn(ring.read, f.fd, buf, (attempt % 16) * size, size)
            await curio.sleep(0)                  # the read is submitted
            await task.cancel()
            await join_quietly(task)
            pinned = buf.in_kernel
            before = ring.buffers.outstanding
            buf.release()
            if pinned:
                seen_in_kernel += 1
                assert ring.buffers.outstanding == before  # not back yet
                others = [ring.buffers.get(size) for _ in range(3)]
                assert all(o is not buf for o in others), "pool lent a buffer the kernel owns"
                for o in others:
                    o.release()
            assert await settle(ring) == 0
            assert not buf.in_kernel
            assert ring.buffers.outstanding == 0  # it came back once the read completed
        await f.close()
        return seen_in_kernel

    seen = run(main)
    if backend == "io_uring":
        assert seen > 0, "no read was still in flight when cancelled: the pin was never exercised"
    else:
        assert seen == 0                          # nothing is ever in flight on the sync backend
