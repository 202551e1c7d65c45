"""A Ring is used between start and close, is the thread's current ring while entered,
and accepts a fault injector for tests of full disks."""
from __future__ import annotations

import errno
import os

import pytest

import uring
from uring import DmaFile, NoRingError, Ring, RingClosedError
from uring.curio_compat import curio

from conftest import run_in_ring


def test_operations_before_start_raise_ring_closed_error(backend):
    async def main():
        ring = Ring(backend=backend)
        with pytest.raises(RingClosedError, match="not started"):
            await ring.nop()
        with pytest.raises(RingClosedError):
            await ring.statx("/")
        await ring.start()
        try:
            await ring.nop()
        finally:
            await ring.aclose()
    curio.run(main)


def test_operations_after_close_raise_ring_closed_error(backend, data_dir):
    async def main():
        async with Ring(backend=backend) as ring:
            f = await DmaFile.open(data_dir / "f", "w")
        assert ring.closed
        with pytest.raises(RingClosedError, match="closed"):
            await ring.nop()
        with pytest.raises(RingClosedError):
            await f.read_at(0, 10)
        with pytest.raises(RingClosedError):
            await ring.start()
        await ring.aclose()                 # idempotent
    curio.run(main)


def test_current_ring(backend, data_dir):
    with pytest.raises(NoRingError, match="Ring"):
        Ring.current()

    async def main():
        with pytest.raises(NoRingError):
            Ring.current()
        async with Ring(backend=backend) as outer:
            assert Ring.current() is outer
            async with Ring(backend=backend) as inner:
                assert Ring.current() is inner
                f = await DmaFile.open(data_dir / "f", "w")   # no ring=: the current one
                assert f.ring is inner
                await f.close()
                g = await DmaFile.open(data_dir / "g", "w", ring=outer)   # explicit ring=
                assert g.ring is outer
                await g.close()
            assert Ring.current() is outer
        with pytest.raises(NoRingError):
            Ring.current()
        with pytest.raises(NoRingError):
            await DmaFile.open(data_dir / "h", "w")
    curio.run(main)
    assert issubclass(NoRingError, uring.UringError)


def test_an_invalid_open_mode_names_the_path(run, data_dir):
    path = data_dir / "modes.bin"

    async def main(ring):
        for mode in ("rw", "a", "", "W"):
            with pytest.raises(ValueError) as ei:
                await DmaFile.open(path, mode)
            assert str(path) in str(ei.value)
            assert repr(mode) in str(ei.value)
        assert not path.exists()
    run(main)


@pytest.mark.parametrize("entries", [0, -1, 32769, 2.5, "8", None])
def test_invalid_ring_sizes_are_refused(backend, entries):
    with pytest.raises(ValueError, match="entries"):
        Ring(entries, backend=backend)


def test_smallest_ring_works(run):
    async def main(ring):
        for _ in range(50):
            await ring.nop()
        return ring.stats()["total_ops"]
    assert run(main, entries=1) == 50


def test_fault_injector_fails_writes_with_enospc_naming_the_file(run, data_dir):
    path = data_dir / "full.bin"
    seen = []

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            a = f.offset_align
            await f.write_at(b"a" * a, 0)

            def inject(kind, name):
                seen.append((kind, name))
                return errno.ENOSPC if kind == "write" else None
            ring.fault_injector = inject
            with pytest.raises(OSError) as ei:
                await f.write_at(b"b" * a, a)
            assert ei.value.errno == errno.ENOSPC
            assert ei.value.filename == str(path)
            assert "write" in str(ei.value)
            # other kinds still work while writes fail
            assert await f.read_at(0, a) == b"a" * a
            ring.fault_injector = None
            await f.write_at(b"c" * a, a)
            assert await f.read_at(0, 2 * a) == b"a" * a + b"c" * a
        assert ring.buffers.outstanding == 0
    run(main)
    assert ("write", str(path)) in seen
    assert any(kind == "read" for kind, _ in seen)


def test_fault_injector_applies_to_every_kind(run, data_dir):
    async def main(ring):
        ring.fault_injector = lambda kind, name: errno.EIO
        with pytest.raises(OSError) as ei:
            await ring.nop()
        assert ei.value.errno == errno.EIO
        with pytest.raises(OSError) as ei:
            await ring.statx(data_dir)
        assert ei.value.errno == errno.EIO and ei.value.filename == str(data_dir)
        with pytest.raises(OSError) as ei:
            await DmaFile.open(data_dir / "x", "w")
        assert ei.value.filename == str(data_dir / "x")
        ring.fault_injector = None
        await ring.nop()
        assert not (data_dir / "x").exists()
    run(main)


def test_closing_a_ring_waits_for_operations_in_flight(backend, data_dir):
    """aclose() lets operations of other tasks finish (or fail cleanly), never hangs them."""
    done = []

    async def main():
        async with Ring(backend=backend) as ring:
            f = await DmaFile.open(data_dir / "c.bin", "w")
            await f.write_at(b"q" * (1 << 20), 0)

            async def reader():
                try:
                    done.append(len(await f.read_at(0, 1 << 20)))
                except RingClosedError:
                    done.append("closed")
            tasks = [await curio.spawn(reader) for _ in range(20)]
            await curio.sleep(0)
        assert ring.closed
        for t in tasks:
            await t.join()
        os.close(f.fd)
        return ring
    ring = curio.run(main)
    assert len(done) == 20
    assert all(d == 1 << 20 or d == "closed" for d in done), done
    assert ring.in_flight == 0


def test_run_in_ring_helper_returns_the_result(backend):
    async def main(ring):
        assert Ring.current() is ring
        return ring.backend
    assert run_in_ring(backend, main) == backend
