"""Far more concurrent operations than ring entries: callers wait for a slot, none fail."""
from __future__ import annotations

import random

import pytest

from uring import DmaFile
from uring.curio_compat import curio

from conftest import settle


@pytest.mark.timeout(180)
def test_ten_thousand_concurrent_operations_on_an_eight_entry_ring(run, backend, data_dir):
    n_tasks = 10_000
    block = 4096
    nblocks = 256
    content = random.Random(11).randbytes(block * nblocks)
    rng = random.Random(12)
    kinds = [rng.choice(["nop", "read"]) for _ in range(n_tasks)]
    peak = [0]

    async def main(ring):
        f = await DmaFile.open(data_dir / "small.bin", "w")
        await f.write_at(content, 0)
        before = ring.stats()
        results: list[bool] = []

        async def one(i: int) -> None:
            if kinds[i] == "nop":
                await ring.nop()
                results.append(True)
            else:
                off = (i % nblocks) * block
                results.append(await f.read_at(off, block) == content[off:off + block])
            peak[0] = max(peak[0], ring.in_flight)

        tasks = [await curio.spawn(one, i) for i in range(n_tasks)]
        for t in tasks:
            await t.join()
        assert len(results) == n_tasks and all(results)
        assert await settle(ring) == 0
        after = ring.stats()
        await f.close()
        return before, after

    before, after = run(main, entries=8)

    def count(stats, kind):
        return stats["ops"].get(kind, {}).get("ops", 0)

    n_reads = kinds.count("read")
    assert count(after, "nop") - count(before, "nop") == kinds.count("nop")
    assert count(after, "read") - count(before, "read") == n_reads
    assert after["ops"]["read"]["bytes"] - before["ops"].get("read", {}).get("bytes", 0) \
        == n_reads * block
    assert after["total_ops"] - before["total_ops"] == n_tasks
    assert after["in_flight"] == 0
    assert after["ops"]["read"]["errors"] == 0
    if backend == "io_uring":
        # never more in flight than the completion queue can hold
        assert 0 < peak[0] <= after["cq_entries"]
        assert after["cq_overflow"] == 0
        assert after["sq_entries"] == 8
    else:
        assert peak[0] == 0


def test_more_waiters_than_slots_with_cancellations(run, backend):
    """Tasks waiting for a free slot can be cancelled without losing the slot."""
    async def main(ring):
        tasks = [await curio.spawn(ring.nop) for _ in range(500)]
        await curio.sleep(0)
        for t in tasks[::3]:
            await t.cancel()
        for t in tasks:
            try:
                await t.join()
            except curio.TaskError as e:
                assert isinstance(e.__cause__, curio.CancelledError)
        assert await settle(ring) == 0
        # every slot is usable again
        more = [await curio.spawn(ring.nop) for _ in range(200)]
        for t in more:
            await t.join()
        assert ring.in_flight == 0
    run(main, entries=8)
