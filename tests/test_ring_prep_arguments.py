"""Every operation's arguments go through one C entry point (on io_uring, the
ring's bound ``prep`` builtin): values outside their C types are refused with a
ValueError naming the operation, the slot is given back, and a closed ring's
entry point refuses to touch the freed ring."""
from __future__ import annotations

import pytest

import uring
from uring import Ring, RingClosedError
from uring.curio_compat import curio

from conftest import needs_io_uring, run_in_ring

BAD_OFFSETS = [-1, 2**64, 1.5, "0"]


@pytest.mark.parametrize("offset", BAD_OFFSETS, ids=repr)
def test_bad_offset_is_a_value_error_and_the_ring_goes_on(backend, data_dir, offset):
    path = data_dir / "f"
    path.write_bytes(b"x" * 4096)

    async def body(ring):
        fd = await ring.openat(path)
        try:
            buf = bytearray(16)
            with pytest.raises(ValueError, match=r"invalid argument for read on 'f'"):
                await ring.read(fd, buf, offset, name="f")
            assert ring.in_flight == 0
            assert await ring.read(fd, buf, 8) == 16
            assert bytes(buf) == b"x" * 16
        finally:
            await ring.close(fd)
    run_in_ring(backend, body)


@needs_io_uring
@pytest.mark.parametrize("fd", [2**40, -(2**40), None], ids=repr)
def test_bad_fd_is_a_value_error_on_io_uring(fd):
    async def body(ring):
        with pytest.raises(ValueError, match="invalid argument for read"):
            await ring.read(fd, bytearray(8), 0)
        assert ring.in_flight == 0
        assert await ring.nop() == 0
    run_in_ring("io_uring", body)


@needs_io_uring
def test_prep_entry_point_is_bound_to_its_ring_and_refuses_after_close():
    async def main():
        async with Ring(backend="io_uring") as ring:
            prep = ring._prep
            with pytest.raises(TypeError, match="8 arguments"):
                prep(0, -1, 0)
            assert await ring.nop() == 0
        # The builtin held the freed ring's address: the ring swapped it out.
        assert ring._prep is not prep
        with pytest.raises(RingClosedError):
            ring._prep(0, -1, 0, 0, 0, 0, 1, -1)
        with pytest.raises(RingClosedError):
            await ring.nop()
    uring.run(main)


@needs_io_uring
def test_two_rings_prep_into_their_own_queues():
    async def main():
        async with Ring(backend="io_uring") as a, Ring(backend="io_uring") as b:
            results = []

            async def nops(ring, n):
                for _ in range(n):
                    results.append((ring, await ring.nop()))
            t1 = await curio.spawn(nops, a, 300)
            t2 = await curio.spawn(nops, b, 200)
            await t1.join()
            await t2.join()
            assert sum(1 for r, _ in results if r is a) == 300
            assert sum(1 for r, _ in results if r is b) == 200
            assert a.stats()["ops"]["nop"]["ops"] == 300
            assert b.stats()["ops"]["nop"]["ops"] == 200
    uring.run(main)
