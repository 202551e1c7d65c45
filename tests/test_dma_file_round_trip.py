"""DmaFile: aligned writes and reads at any offset and length give back the bytes written."""
from __future__ import annotations

import errno
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import uring
from uring import DmaBuffer, DmaFile

from conftest import run_in_ring


def apply_write(model: bytearray, offset: int, data: bytes) -> None:
    """What a write does to a file, on a bytearray (an empty write changes nothing)."""
    if not data:
        return
    if offset > len(model):
        model.extend(bytes(offset - len(model)))
    model[offset:offset + len(data)] = data


def test_alignment_is_reported_by_the_file(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            assert f.direct
            a = f.offset_align
            assert a >= 512 and a & (a - 1) == 0
            assert f.mem_align >= 1 and f.mem_align & (f.mem_align - 1) == 0
            assert str(data_dir / "f") in repr(f)
    run(main)


@pytest.mark.parametrize("blocks", [1, 2, 7, 8, 9, 64, 300])
def test_round_trip_of_aligned_writes_at_many_offsets(run, data_dir, blocks):
    rng = random.Random(blocks)

    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            model = bytearray()
            for start_block in (0, 1, 3, 8, 17):
                data = rng.randbytes(blocks * a)
                assert await f.write_at(data, start_block * a) == len(data)
                apply_write(model, start_block * a, data)
            assert await f.size() == len(model)
            assert await f.read_at(0, len(model)) == bytes(model)
            for _ in range(50):
                off = rng.randrange(0, len(model) + 3 * a)
                n = rng.randrange(0, 3 * a)
                assert await f.read_at(off, n) == bytes(model[off:off + n]), (off, n)
    run(main)


def test_reads_at_edge_offsets_and_lengths(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            data = random.Random(1).randbytes(4 * a)
            await f.write_at(data, 0)
            size = len(data)
            cases = [
                (0, 0), (a - 1, 0), (size, 0), (size + 5 * a, 0),   # length 0
                (0, 1), (a - 1, 1), (a - 1, 2), (a, a), (1, a), (a - 1, a + 2),  # across boundaries
                (0, size), (1, size - 2), (3, 3 * a + 7),
                (size - 1, 1), (size - 1, 10), (size - a - 3, 3 * a),  # spanning EOF
                (size, 1), (size, a), (size + 1, 100), (size + 10 * a, a),  # past EOF
            ]
            for off, n in cases:
                got = await f.read_at(off, n)
                assert isinstance(got, bytes)
                assert got == data[off:off + n], (off, n)
            assert await f.read_at(size + 1, 100) == b""
    run(main)


def test_read_spanning_an_unaligned_end_of_file(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            data = random.Random(2).randbytes(3 * a)
            await f.write_at(data, 0)
            await f.truncate(2 * a + 77)
            data = data[:2 * a + 77]
            assert await f.size() == len(data)
            for off, n in [(0, 10 * a), (2 * a, a), (2 * a + 76, 5), (2 * a + 77, 5),
                           (a + 1, a + 76), (a + 1, a + 77)]:
                assert await f.read_at(off, n) == data[off:off + n], (off, n)
    run(main)


def test_write_of_dma_buffers_pooled_and_standalone(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            pooled = ring.buffers.get(2 * a)
            try:
                pooled.view[:] = b"p" * pooled.size
                assert await f.write_at(pooled, 0, 2 * a) == 2 * a
            finally:
                pooled.release()
            own = DmaBuffer.alloc(a, 4096)
            own.view[:] = b"o" * a
            assert await f.write_at(own, 2 * a) == a
            # other bytes-like data is copied into a pool buffer first
            assert await f.write_at(memoryview(b"m" * a), 3 * a) == a
            assert await f.write_at(bytearray(b"b" * a), 4 * a) == a
            assert await f.write_at(b"", 5 * a) == 0
            assert await f.read_at(0, 10 * a) == b"p" * 2 * a + b"o" * a + b"m" * a + b"b" * a
            assert ring.buffers.outstanding == 0
    run(main)


def test_dma_buffer_not_aligned_for_the_device_is_copied(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            big = DmaBuffer.alloc(4 * a, 4096)
            # a view starting 8 bytes in: the address is not a multiple of mem_align
            odd = DmaBuffer(big, big.address + 8, big.view[8:8 + 2 * a])
            odd.view[:] = bytes(range(256)) * (2 * a // 256)
            assert odd.address % f.mem_align
            assert await f.write_at(odd, a) == 2 * a
            assert await f.read_at(a, 2 * a) == bytes(odd.view)
            assert ring.buffers.outstanding == 0
    run(main)


def test_reads_larger_than_the_biggest_pooled_buffer(run, data_dir):
    size = 9 << 20                        # above the pool's largest class (8 MiB)
    data = random.Random(9).randbytes(size)

    async def main(ring):
        async with await DmaFile.open(data_dir / "huge.bin", "w") as f:
            await f.write_at(data, 0)
            assert await f.read_at(0, size) == data
            assert await f.read_at(1, size) == data[1:]
            assert ring.buffers.outstanding == 0
    run(main)


def test_read_into_an_aligned_buffer(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            a = f.offset_align
            data = random.Random(3).randbytes(2 * a)
            await f.write_at(data, 0)
            with ring.buffers.get(4 * a) as buf:
                assert await f.read_into(buf, a, 2 * a) == a      # short at EOF
                assert bytes(buf.view[:a]) == data[a:]
                with pytest.raises(ValueError, match="read_into"):
                    await f.read_into(buf, 1, a)
    run(main)


# -- the unaligned-write error ----------------------------------------------------------
@pytest.mark.parametrize("what", ["offset", "length", "both"])
def test_unaligned_write_names_file_offset_length_and_alignment(run, data_dir, what):
    path = data_dir / "unaligned.bin"

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            a = f.offset_align
            off = {"offset": 3, "length": a, "both": a + 1}[what]
            n = {"offset": a, "length": a + 5, "both": 7}[what]
            with pytest.raises(ValueError) as ei:
                await f.write_at(b"x" * n, off)
            msg = str(ei.value)
            assert str(path) in msg
            assert str(a) in msg
            if what in ("offset", "both"):
                assert f"offset {off}" in msg
            if what in ("length", "both"):
                assert f"length {n}" in msg
            # nothing was written
            assert await f.size() == 0
    run(main)


def test_write_to_a_file_opened_read_only_is_ebadf_naming_the_file(run, data_dir):
    path = data_dir / "ro.bin"
    path.write_bytes(b"z" * 4096)

    async def main(ring):
        async with await DmaFile.open(path, "r") as f:
            with pytest.raises(OSError) as ei:
                await f.write_at(b"x" * f.offset_align, 0)
            assert ei.value.errno == errno.EBADF
            assert ei.value.filename == str(path)
            # a direct ring write on the read-only fd fails the same way, from the kernel
            with ring.buffers.get(4096) as buf:
                with pytest.raises(OSError) as ei:
                    await ring.write(f.fd, buf, 0, name=f.path)
            assert ei.value.errno == errno.EBADF
            assert ei.value.filename == str(path)
        assert path.read_bytes() == b"z" * 4096
    run(main)


def test_negative_or_non_int_offsets_are_refused(run, data_dir):
    async def main(ring):
        async with await DmaFile.open(data_dir / "f", "w") as f:
            for off, n in [(-1, 1), (0, -1), (1.0, 1), (0, True)]:
                with pytest.raises(TypeError):
                    await f.read_at(off, n)
    run(main)


def test_io_on_a_closed_file_names_it(run, data_dir):
    path = data_dir / "closed.bin"

    async def main(ring):
        f = await DmaFile.open(path, "w")
        await f.close()
        await f.close()                       # idempotent
        assert f.closed
        with pytest.raises(ValueError, match="closed.bin"):
            await f.read_at(0, 1)
        with pytest.raises(ValueError, match="closed.bin"):
            await f.write_at(b"x" * 512, 0)
    run(main)


# -- property: any sequence of aligned writes, an optional truncate, then any reads -----
write_ops = st.lists(st.tuples(st.integers(0, 40), st.integers(0, 12)), min_size=0, max_size=6)
read_ops = st.lists(st.tuples(st.integers(0, 60 * 512), st.integers(0, 12 * 512)),
                    min_size=1, max_size=12)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(writes=write_ops, cut=st.one_of(st.none(), st.integers(0, 50 * 512)), reads=read_ops,
       seed=st.integers(0, 2**32))
def test_read_at_matches_a_bytes_model(backend, data_dir, writes, cut, reads, seed):
    rng = random.Random(seed)
    path = data_dir / "model.bin"

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            a = f.offset_align
            model = bytearray()
            for block, nblocks in writes:
                data = rng.randbytes(nblocks * a)
                assert await f.write_at(data, block * a) == len(data)
                apply_write(model, block * a, data)
            if cut is not None:
                await f.truncate(cut)
                del model[cut:]
                model.extend(bytes(cut - len(model)))
            assert await f.size() == len(model)
            for off, n in reads:
                assert await f.read_at(off, n) == bytes(model[off:off + n]), (off, n)
            assert ring.buffers.outstanding == 0
        assert os.path.getsize(path) == len(model)

    run_in_ring(backend, main)
