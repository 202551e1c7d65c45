"""DmaStreamWriter and DmaStreamReader: any byte sequence round-trips exactly."""
from __future__ import annotations

import errno
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from uring import DmaFile, DmaStreamReader, DmaStreamWriter
from uring.curio_compat import curio

from conftest import run_in_ring, settle

BUF = 4096   # small buffers: many writes and reads in flight


def chunks_of(data: bytes, rng: random.Random, biggest: int) -> list[bytes]:
    out, i = [], 0
    while i < len(data):
        n = rng.randint(1, biggest)
        out.append(data[i:i + n])
        i += n
    return out


async def write_stream(path, chunks, **kw) -> int:
    f = await DmaFile.open(path, "w")
    try:
        w = DmaStreamWriter(f, **kw)
        for c in chunks:
            assert await w.write(c) == len(c)
        await w.close()
        return w.position
    finally:
        await f.close()


async def read_stream(path, *, sizes: list[int] | None = None, **kw) -> bytes:
    f = await DmaFile.open(path, "r")
    try:
        async with DmaStreamReader(f, **kw) as r:
            if sizes is None:
                return await r.read()
            parts = []
            i = 0
            while True:
                part = await r.read(sizes[i % len(sizes)])
                i += 1
                if not part:
                    return b"".join(parts)
                parts.append(part)
    finally:
        await f.close()


@pytest.mark.parametrize("size", [0, 1, 511, 512, 513, BUF - 1, BUF, BUF + 1, 3 * BUF + 7,
                                  3 * (1 << 20) + 123])
def test_writer_then_reader_round_trip(run, data_dir, size):
    rng = random.Random(size)
    data = rng.randbytes(size)
    path = data_dir / "stream.bin"

    async def main(ring):
        written = await write_stream(path, chunks_of(data, rng, 3 * BUF) if data else [b""],
                                     buffer_size=BUF, write_behind=4)
        assert written == size
        assert (await ring.statx(path)).size == size     # exact, not padded
        assert await read_stream(path, buffer_size=BUF) == data
        assert await read_stream(path, buffer_size=BUF, read_ahead=3,
                                 sizes=[1, 7, 513, BUF + 1, 100000]) == data
        assert await settle(ring) == 0
        assert ring.buffers.outstanding == 0
    run(main)
    assert path.stat().st_size == size
    assert path.read_bytes() == data


def test_several_mib_in_random_chunks_with_big_buffers(run, data_dir):
    rng = random.Random(99)
    data = rng.randbytes(5 * (1 << 20) + 333)
    path = data_dir / "big-stream.bin"

    async def main(ring):
        assert await write_stream(path, chunks_of(data, rng, 200_000),
                                  buffer_size=1 << 20, write_behind=2) == len(data)
        assert await read_stream(path, buffer_size=64 << 10, read_ahead=4,
                                 sizes=[rng.randint(1, 300_000) for _ in range(50)]) == data
        assert ring.buffers.outstanding == 0
    run(main)
    assert path.read_bytes() == data


def test_flush_then_more_writes_then_close(run, data_dir):
    path = data_dir / "flushed.bin"
    rng = random.Random(5)
    first, second, third = rng.randbytes(700), rng.randbytes(BUF * 2 + 5), rng.randbytes(3)

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            w = DmaStreamWriter(f, buffer_size=BUF)
            await w.write(first)
            await w.flush()
            # everything appended so far is in the file (the tail padded with zeros)
            assert await f.read_at(0, len(first)) == first
            assert (await f.size()) % f.offset_align == 0
            await w.write(second)
            await w.sync()
            assert await f.read_at(0, len(first) + len(second)) == first + second
            await w.write(third)
            assert w.position == len(first) + len(second) + len(third)
            await w.close()
            await w.close()                      # idempotent
            assert await f.size() == w.position
    run(main)
    assert path.read_bytes() == first + second + third


def test_writer_from_an_aligned_start_offset(run, data_dir):
    path = data_dir / "offset.bin"

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            a = f.offset_align
            await f.write_at(b"H" * a, 0)
            async with DmaStreamWriter(f, start=a, buffer_size=BUF) as w:
                await w.write(b"payload")
            assert w.position == 7
            assert await f.size() == a + 7
            return a
    a = run(main)
    assert path.read_bytes() == b"H" * a + b"payload"


@pytest.mark.parametrize("offset", [0, 1, 511, 512, 4095, 4097, 10_000, 40_000])
def test_reader_from_an_unaligned_offset_and_with_an_end(run, data_dir, offset):
    data = random.Random(offset).randbytes(5 * BUF + 321)
    path = data_dir / "r.bin"
    path.write_bytes(data)

    async def main(ring):
        assert await read_stream(path, offset=offset, buffer_size=BUF) == data[offset:]
        for end in (offset, offset + 1, offset + 600, 3 * BUF, len(data), len(data) + 9999):
            got = await read_stream(path, offset=offset, end=end, buffer_size=BUF,
                                    sizes=[1000, 3])
            assert got == data[offset:end], end
        assert ring.buffers.outstanding == 0
    run(main)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(size=st.integers(0, 6 * BUF), offset=st.integers(0, 7 * BUF),
       end=st.one_of(st.none(), st.integers(0, 7 * BUF)),
       sizes=st.lists(st.integers(1, 2 * BUF), min_size=1, max_size=5),
       read_ahead=st.integers(1, 4))
def test_reader_matches_slicing(backend, data_dir, size, offset, end, sizes, read_ahead):
    data = random.Random(size).randbytes(size)
    path = data_dir / "prop.bin"
    path.write_bytes(data)
    want = data[offset:end] if end is not None else data[offset:]
    if end is not None and end < offset:
        want = b""

    async def main(ring):
        f = await DmaFile.open(path, "r")
        try:
            async with DmaStreamReader(f, offset=offset, end=end, buffer_size=BUF,
                                       read_ahead=read_ahead) as r:
                parts = []
                for i in range(7 * BUF + 2):             # each read makes progress or ends
                    n = sizes[i % len(sizes)]
                    part = await r.read(n)
                    assert len(part) <= n
                    assert await r.read(0) == b""
                    if not part:
                        break
                    parts.append(part)
                assert r.position == offset + len(want)
                return b"".join(parts)
        finally:
            await f.close()

    assert run_in_ring(backend, main) == want


def test_readexactly_and_eof(run, data_dir):
    path = data_dir / "exact.bin"
    data = random.Random(8).randbytes(1000)
    path.write_bytes(data)

    async def main(ring):
        async with await DmaFile.open(path, "r") as f:
            async with DmaStreamReader(f, buffer_size=BUF) as r:
                assert await r.readexactly(10) == data[:10]
                assert await r.readexactly(0) == b""
                with pytest.raises(EOFError) as ei:
                    await r.readexactly(2000)
                msg = str(ei.value)
                assert str(path) in msg
                assert "2000" in msg and "990" in msg        # wanted, and what was left
                assert await r.read() == b""
            async with DmaStreamReader(f, offset=1000, buffer_size=BUF) as r:
                with pytest.raises(EOFError):
                    await r.readexactly(1)
        assert ring.buffers.outstanding == 0
    run(main)


def test_reader_closed_early_returns_its_buffers(run, data_dir):
    path = data_dir / "early.bin"
    path.write_bytes(random.Random(9).randbytes(40 * BUF))

    async def main(ring):
        async with await DmaFile.open(path, "r") as f:
            r = DmaStreamReader(f, buffer_size=BUF, read_ahead=4)
            assert len(await r.read(BUF + 10)) == BUF + 10
            await r.close()
            await r.close()                               # idempotent
            with pytest.raises(ValueError, match="early.bin"):
                await r.read(1)
        assert await settle(ring) == 0
        assert ring.buffers.outstanding == 0
    run(main)


def test_stream_argument_errors_name_the_file(run, data_dir):
    path = data_dir / "args.bin"

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            a = f.offset_align
            with pytest.raises(ValueError) as ei:
                DmaStreamWriter(f, buffer_size=a + 1)
            assert str(path) in str(ei.value) and str(a) in str(ei.value)
            with pytest.raises(ValueError) as ei:
                DmaStreamWriter(f, start=1)
            assert str(path) in str(ei.value)
            with pytest.raises(ValueError):
                DmaStreamWriter(f, write_behind=0)
            with pytest.raises(ValueError) as ei:
                DmaStreamReader(f, buffer_size=0)
            assert str(path) in str(ei.value)
            with pytest.raises(ValueError):
                DmaStreamReader(f, read_ahead=0)
            w = DmaStreamWriter(f, buffer_size=BUF)
            await w.close()
            with pytest.raises(ValueError, match="args.bin"):
                await w.write(b"late")
    run(main)


def test_writer_errors_name_the_file(run, data_dir):
    path = data_dir / "readonly.bin"
    path.write_bytes(b"")

    async def main(ring):
        async with await DmaFile.open(path, "r") as f:
            w = DmaStreamWriter(f, buffer_size=BUF)
            with pytest.raises(OSError) as ei:
                await w.write(b"x" * (3 * BUF))      # full buffers are written behind
                await w.close()
            assert ei.value.errno == errno.EBADF
            assert ei.value.filename == str(path)
            # the error sticks: later calls report it too
            with pytest.raises(OSError) as ei2:
                await w.write(b"more")
            assert ei2.value.errno == errno.EBADF
            await w.close()
        assert await settle(ring) == 0
        assert ring.buffers.outstanding == 0
    run(main)


def test_injected_write_failure_surfaces_from_the_writer(run, data_dir):
    path = data_dir / "full.bin"

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            w = DmaStreamWriter(f, buffer_size=BUF, write_behind=2)
            await w.write(b"ok" * BUF)             # two buffers written before the disk fills
            await w.flush()
            ring.fault_injector = lambda kind, name: errno.ENOSPC if kind == "write" else None
            with pytest.raises(OSError) as ei:
                for _ in range(3):                  # the third waits for the first to finish
                    await w.write(b"z" * BUF)
            assert ei.value.errno == errno.ENOSPC
            assert ei.value.filename == str(path)
            # the error sticks: close reports it too, and the writer is then closed
            with pytest.raises(OSError) as ei:
                await w.close()
            assert ei.value.errno == errno.ENOSPC
            await w.close()
            ring.fault_injector = None
            assert await f.read_at(0, 2 * BUF) == b"ok" * BUF
        assert await settle(ring) == 0
        # DmaStreamWriter._write_full takes the full buffer out of the writer before
        # waiting for an older write; when that wait raises, nobody releases it
        assert ring.buffers.outstanding == 0, "the writer leaked a pool buffer after a failed write"
    run(main)


def test_reader_errors_name_the_file(run, data_dir):
    path = data_dir / "unreadable.bin"
    path.write_bytes(b"r" * (4 * BUF))

    async def main(ring):
        async with await DmaFile.open(path, "r") as f:
            ring.fault_injector = lambda kind, name: errno.EIO if kind == "read" else None
            r = DmaStreamReader(f, buffer_size=BUF)
            with pytest.raises(OSError) as ei:
                await r.read(10)
            ring.fault_injector = None
            assert ei.value.errno == errno.EIO
            assert ei.value.filename == str(path)
            await r.close()
        assert await settle(ring) == 0
        assert ring.buffers.outstanding == 0
    run(main)


def test_a_cancelled_append_loses_no_written_bytes_and_no_buffer(run, data_dir):
    """An actor cancelled mid-append, its writer closed afterwards: the file holds every
    byte the writer counted (position), and no pool buffer is left out."""
    path = data_dir / "cancelled.bin"
    rng = random.Random(21)

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            for attempt in range(30):
                w = DmaStreamWriter(f, buffer_size=BUF, write_behind=1)

                async def append():
                    for _ in range(50):
                        await w.write(b"c" * (BUF // 2 + 1))

                t = await curio.spawn(append)
                for _ in range(rng.randint(1, 6)):
                    await curio.sleep(0)
                await t.cancel()
                await w.close()
                # every byte the writer counted is in the file: no block went missing
                size = await f.size()
                assert size == w.position
                data = await f.read_at(0, size)
                assert data == b"c" * size, \
                    f"attempt {attempt}: zeros at {data.find(0)} of {size}: a block was lost"
                assert await settle(ring) == 0
                assert ring.buffers.outstanding == 0, \
                    f"attempt {attempt}: a pool buffer leaked from a cancelled append"
    run(main)


def test_reserve_and_commit_fill_buffers_in_place(run, data_dir):
    """reserve() hands out the current buffer's free space; commit(n) appends what was
    put there, interleaving with write() and flush() like any append."""
    path = data_dir / "reserved.bin"
    rng = random.Random(9)
    expected = bytearray()

    async def main(ring):
        async with await DmaFile.open(path, "w") as f:
            w = DmaStreamWriter(f, buffer_size=BUF)
            for i in range(40):
                view = await w.reserve()
                assert 0 < len(view) <= BUF
                n = rng.randint(0, len(view))
                chunk = rng.randbytes(n)
                view[:n] = chunk
                await w.commit(n)
                expected.extend(chunk)
                if i % 7 == 0:                   # ordinary appends in between
                    more = rng.randbytes(rng.randint(1, 3 * BUF))
                    await w.write(more)
                    expected.extend(more)
                if i % 11 == 0:
                    await w.flush()
                assert w.position == len(expected)
            view = await w.reserve()
            with pytest.raises(ValueError, match="commit.*reserved.*reserved.bin"):
                await w.commit(len(view) + 1)
            await w.close()
    run(main)
    assert path.read_bytes() == bytes(expected)
