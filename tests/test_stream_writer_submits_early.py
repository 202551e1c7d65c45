"""A full buffer of a DmaStreamWriter reaches the kernel before write() returns.

A producer that appends in a loop without ever waiting (the state store
encoding a batch) must not hold its writes back until ``write_behind``
buffers are full: the device would then sit idle while the producer works,
and the producer would stall while the device catches up.
"""
from __future__ import annotations

import os

from uring import DmaFile, DmaStreamWriter
from uring.curio_compat import curio

from conftest import needs_io_uring, run_in_ring

BUF = 64 << 10


def test_a_filled_buffer_is_written_while_the_producer_keeps_going(run, data_dir, backend):
    path = os.path.join(data_dir, "stream.dat")
    block = bytes(range(256)) * (BUF // 256)

    async def go(ring):
        f = await DmaFile.open(path, "w", ring=ring)
        try:
            w = DmaStreamWriter(f, buffer_size=BUF, write_behind=4)
            before = ring.stats()["sqes_submitted"]
            await w.write(block)             # fills the first buffer exactly
            submitted = ring.stats()["sqes_submitted"] - before
            on_disk = None
            if backend == "sync":
                with open(path, "rb") as fh:
                    on_disk = fh.read(BUF)
            await w.write(b"tail")
            await w.close()
            return submitted, on_disk
        finally:
            await f.close()

    submitted, on_disk = run(go)
    assert submitted >= 1, "the full buffer's write was not handed to the kernel"
    if on_disk is not None:                  # the sync backend writes as it submits
        assert on_disk == block
    with open(path, "rb") as fh:
        assert fh.read() == block + b"tail"


@needs_io_uring
def test_ring_submit_hands_prepared_operations_over_at_once():
    async def go(ring):
        task = await curio.spawn(ring.nop)
        await curio.sleep(0)                 # the task prepares its nop and waits
        pending = ring.submit()
        again = ring.submit()                # nothing left to hand over
        await task.join()
        return pending, again

    pending, again = run_in_ring("io_uring", go, flush_threshold=64)
    assert pending >= 1 and again == 0


def test_ring_submit_is_a_no_op_on_the_sync_backend():
    async def go(ring):
        return ring.submit()

    assert run_in_ring("sync", go) == 0
