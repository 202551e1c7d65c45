"""Large DMA buffers come from 2 MiB-aligned slabs advised as huge pages.

What the kernel then does (back them with a huge page or not) depends on the
machine's THP setting and free memory, so the tests check what we control:
the alignment, the ``MADV_HUGEPAGE`` advice on the mapping (``hg`` in the
VMA's ``VmFlags``), the carving of a slab into pieces that do not overlap, and
that I/O through them round-trips on both backends.
"""
from __future__ import annotations

import os

import pytest

from uring import buffers as B
from uring import DmaBuffer, DmaFile
from uring.buffers import HUGE, SLAB_MIN_CLASS, BufferPool


def vma_flags(address: int) -> list[str]:
    """The VmFlags of the mapping that holds ``address`` (from /proc/self/smaps)."""
    inside = False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(None, 1)[0]
            if "-" in head and not head.endswith(":"):
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "VmFlags:":
                return line.split()[1:]
    raise AssertionError(f"no mapping holds {address:#x}")


needs_smaps = pytest.mark.skipif(not os.path.exists("/proc/self/smaps"),
                                 reason="no /proc/self/smaps on this system")
needs_native = pytest.mark.skipif(B.ffi is None,
                                  reason="the C extension is not built: buffers have no address")


@needs_native
def test_a_slab_is_huge_aligned_and_carved_into_disjoint_pieces():
    pool = BufferPool()
    first = pool.get(1 << 20)
    second = pool.get(1 << 20)
    assert first.address % HUGE == 0 or second.address % HUGE == 0
    assert pool.slabs == 1, "two 1 MiB buffers share one 2 MiB slab"
    assert abs(first.address - second.address) == 1 << 20
    first.view[:] = b"\x01" * len(first.view)
    second.view[:] = b"\x02" * len(second.view)
    assert bytes(first.view[-1:]) == b"\x01" and bytes(second.view[:1]) == b"\x02"
    third = pool.get(1 << 20)
    assert pool.slabs == 2 and third.address % HUGE == 0
    stats = pool.stats()
    assert stats["huge_slabs"] == 2 and stats["transparent_hugepages"] == B.THP_MODE


@needs_native
def test_freed_pieces_are_reused_before_a_new_slab():
    pool = BufferPool()
    bufs = [pool.get(SLAB_MIN_CLASS) for _ in range(HUGE // SLAB_MIN_CLASS)]
    assert pool.slabs == 1
    assert len({b.address for b in bufs}) == len(bufs)
    bufs[3].release()
    again = pool.get(SLAB_MIN_CLASS)
    assert again.address == bufs[3].address and pool.slabs == 1


@needs_native
def test_classes_above_a_huge_page_get_a_slab_of_their_own():
    pool = BufferPool()
    big = pool.get(4 << 20)
    assert big.size == 4 << 20 and big.address % HUGE == 0 and pool.slabs == 1
    assert not pool._free.get(4 << 20), "nothing left over to carve"


@needs_native
def test_small_classes_stay_off_the_slabs():
    pool = BufferPool()
    pool.get(4096)
    pool.get(SLAB_MIN_CLASS // 2)
    assert pool.slabs == 0


@needs_native
@needs_smaps
def test_slabs_and_large_standalone_buffers_are_advised_huge_pages():
    if B._MADV_HUGEPAGE is None:
        pytest.skip("mmap.MADV_HUGEPAGE is not defined on this platform")
    pool = BufferPool()
    buf = pool.get(1 << 20)
    assert "hg" in vma_flags(buf.address), "the slab was not advised MADV_HUGEPAGE"
    own = DmaBuffer.alloc(HUGE)
    assert own.address % HUGE == 0 and "hg" in vma_flags(own.address)
    small = DmaBuffer.alloc(4096)
    assert small.address % 4096 == 0


def test_large_writes_and_reads_round_trip_through_slab_buffers(tmp_path, backend, run):
    path = str(tmp_path / "big.dat")
    pattern = bytes(range(256)) * 4096         # 1 MiB

    async def go(ring):
        f = await DmaFile.open(path, "w+", ring=ring)
        try:
            bufs = [ring.buffers.get(1 << 20) for _ in range(3)]
            for i, buf in enumerate(bufs):
                buf.view[:] = pattern[i:] + pattern[:i]
                assert await f.write_at(buf, i << 20) == 1 << 20
            for buf in bufs:
                buf.release()
            for i in range(3):
                got = await f.read_at(i << 20, 1 << 20)
                assert got == pattern[i:] + pattern[:i]
            return ring.buffers.stats()
        finally:
            await f.close()

    stats = run(go)
    assert stats["outstanding"] == 0
    if B.ffi is not None:
        assert stats["huge_slabs"] >= 1
