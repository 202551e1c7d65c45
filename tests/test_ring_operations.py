"""Each Ring operation, called directly, does what its syscall does."""
from __future__ import annotations

import os
import random
import stat

import pytest

from uring import DmaBuffer, FileStat
from uring.dma_file import FALLOC_FL_KEEP_SIZE

from conftest import fs_type


async def open_buffered(ring, path):
    return await ring.openat(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)


async def open_direct(ring, path):
    return await ring.openat(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)


def test_nop_round_trips(run):
    async def main(ring):
        for _ in range(5):
            await ring.nop()
        assert ring.stats()["ops"]["nop"]["ops"] == 5
        assert ring.in_flight == 0
    run(main)


def test_nop_returns_zero_on_both_backends(run):
    # Ring.nop is documented "returns 0" (the CQE result); both backends agree
    async def main(ring):
        assert await ring.nop() == 0
    run(main)


@pytest.mark.parametrize("bad", ["offset", "nbytes_type", "fd"])
def test_an_operation_refused_for_its_arguments_leaves_nothing_in_flight(run, data_dir, bad):
    async def main(ring):
        fd = await open_buffered(ring, data_dir / "args.bin")
        try:
            with ring.buffers.get(4096) as buf:
                args = {"offset": (fd, buf, -1), "nbytes_type": (fd, buf, 0, "4096"),
                        "fd": (2**40, buf, 0)}[bad]
                # both backends refuse the same arguments the same way: a value out
                # of range is a ValueError, a value of the wrong type a TypeError
                with pytest.raises(TypeError if bad == "nbytes_type" else ValueError):
                    await ring.read(*args)
            assert ring.in_flight == 0
            # the ring still works, and can close (a leaked slot would block close)
            await ring.nop()
            assert ring.in_flight == 0
        finally:
            await ring.close(fd)
    run(main)


def test_read_and_write_with_dma_buffers_on_a_direct_fd(run, data_dir):
    async def main(ring):
        path = data_dir / "direct.bin"
        fd = await open_direct(ring, path)
        try:
            data = random.Random(1).randbytes(8192)
            with ring.buffers.get(8192) as wbuf:
                wbuf.view[:8192] = data
                assert await ring.write(fd, wbuf, 0, 8192, name="d") == 8192
            own = DmaBuffer.alloc(4096)
            own.view[:] = data[:4096]
            assert await ring.write(fd, own, 8192) == 4096             # default: whole buffer
            with ring.buffers.get(16384) as rbuf:
                assert await ring.read(fd, rbuf, 0, name="d") == 12288  # short at EOF
                assert bytes(rbuf.view[:12288]) == data + data[:4096]
            back = DmaBuffer.alloc(4096)
            assert await ring.read(fd, back, 4096, 4096) == 4096
            assert bytes(back.view) == data[4096:]
        finally:
            await ring.close(fd)
        assert path.read_bytes() == data + data[:4096]
    run(main)


def test_read_and_write_with_bytearray_and_memoryview(run, data_dir):
    async def main(ring):
        fd = await open_buffered(ring, data_dir / "plain.bin")
        try:
            assert await ring.write(fd, b"hello world", 0) == 11
            assert await ring.write(fd, memoryview(b"HELLO"), 0) == 5
            assert await ring.write(fd, bytearray(b"!!!xyz"), 11, 3) == 3   # nbytes limits
            out = bytearray(32)
            assert await ring.read(fd, out, 0) == 14
            assert bytes(out[:14]) == b"HELLO world!!!"
            view = memoryview(bytearray(8))
            assert await ring.read(fd, view[2:], 6, 5) == 5
            assert bytes(view) == b"\0\0world\0"
            assert await ring.read(fd, bytearray(4), 100) == 0             # past EOF
            # a non-byte memoryview is read as bytes
            ints = memoryview(bytearray(8)).cast("I")
            assert await ring.read(fd, ints, 0) == 8
            assert ints.tobytes() == b"HELLO wo"
        finally:
            await ring.close(fd)
    run(main)


def test_buffer_arguments_are_checked(run, data_dir):
    async def main(ring):
        fd = await open_buffered(ring, data_dir / "f")
        try:
            with pytest.raises(TypeError, match="read-only"):
                await ring.read(fd, b"immutable", 0)
            with pytest.raises(ValueError, match="nbytes"):
                await ring.read(fd, bytearray(4), 0, 5)
            with pytest.raises(ValueError, match="nbytes"):
                await ring.write(fd, b"abc", 0, -1)
            with ring.buffers.get(4096) as buf:
                with pytest.raises(ValueError, match="nbytes"):
                    await ring.read(fd, buf, 0, buf.size + 1)
            assert ring.in_flight == 0
        finally:
            await ring.close(fd)
    run(main)


def test_readv_and_writev(run, data_dir):
    async def main(ring):
        path = data_dir / "vec.bin"
        fd = await open_buffered(ring, path)
        try:
            n = await ring.writev(fd, [b"abc", bytearray(b"defg"), memoryview(b"hij")], 2, name="v")
            assert n == 10
            a, b, c = bytearray(4), bytearray(5), bytearray(10)
            assert await ring.readv(fd, [a, b, c], 0, name="v") == 12
            assert (bytes(a), bytes(b), bytes(c[:3])) == (b"\0\0ab", b"cdefg", b"hij")
        finally:
            await ring.close(fd)
        assert path.read_bytes() == b"\0\0abcdefghij"

        # with DmaBuffers on an O_DIRECT fd
        fd = await open_direct(ring, data_dir / "vec-direct.bin")
        try:
            bufs = [ring.buffers.get(4096) for _ in range(3)]
            for i, buf in enumerate(bufs):
                buf.view[:] = bytes([65 + i]) * 4096
            assert await ring.writev(fd, bufs, 4096) == 3 * 4096
            outs = [DmaBuffer.alloc(4096), DmaBuffer.alloc(8192)]
            assert await ring.readv(fd, outs, 0) == 3 * 4096
            assert bytes(outs[0].view) == bytes(4096)
            assert bytes(outs[1].view) == b"A" * 4096 + b"B" * 4096
            for buf in bufs:
                buf.release()
            assert ring.buffers.outstanding == 0
        finally:
            await ring.close(fd)
    run(main)


@pytest.mark.parametrize("datasync", [False, True])
def test_fsync(run, data_dir, datasync):
    async def main(ring):
        fd = await open_buffered(ring, data_dir / "sync.bin")
        try:
            await ring.write(fd, b"durable", 0)
            assert await ring.fsync(fd, datasync=datasync, name="s") is None
        finally:
            await ring.close(fd)
        assert ring.stats()["ops"]["fsync"]["ops"] == 1
    run(main)
    assert (data_dir / "sync.bin").read_bytes() == b"durable"


def test_fallocate_grows_the_file_and_keep_size_does_not(run, data_dir):
    async def main(ring):
        path = data_dir / "alloc.bin"
        fd = await open_buffered(ring, path)
        try:
            await ring.fallocate(fd, 0, 1 << 20, name="a")
            st = await ring.fstatx(fd)
            assert st.size == 1 << 20
            assert st.blocks * 512 >= 1 << 20
            await ring.fallocate(fd, 1 << 20, 1 << 20, FALLOC_FL_KEEP_SIZE, name="a")
            st2 = await ring.fstatx(fd)
            assert st2.size == 1 << 20                  # size stays
            assert st2.blocks * 512 >= 2 << 20          # space is reserved beyond it
            # the bytes allocated read back as zeros
            out = bytearray(100)
            assert await ring.read(fd, out, 4096) == 100
            assert out == bytes(100)
        finally:
            await ring.close(fd)
        assert os.path.getsize(path) == 1 << 20
    run(main)


def test_fallocate_through_dma_file(run, data_dir):
    from uring import DmaFile

    async def main(ring):
        async with await DmaFile.open(data_dir / "pre.bin", "w") as f:
            await f.pre_allocate(1 << 16, keep_size=True)
            assert await f.size() == 0
            await f.pre_allocate(1 << 16)
            assert await f.size() == 1 << 16
    run(main)


def test_ftruncate(run, data_dir):
    async def main(ring):
        path = data_dir / "trunc.bin"
        fd = await open_buffered(ring, path)
        try:
            await ring.write(fd, b"x" * 1000, 0)
            await ring.ftruncate(fd, 10, name="t")
            assert (await ring.fstatx(fd)).size == 10
            await ring.ftruncate(fd, 5000)
            assert (await ring.fstatx(fd)).size == 5000
            out = bytearray(5000)
            assert await ring.read(fd, out, 0) == 5000
            assert out == b"x" * 10 + bytes(4990)
            with pytest.raises(ValueError, match="negative"):
                await ring.ftruncate(fd, -1)
        finally:
            await ring.close(fd)
    run(main)


def test_openat_and_close(run, data_dir):
    async def main(ring):
        path = data_dir / "opened"
        fd = await ring.openat(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        assert fd >= 0
        assert not os.get_inheritable(fd)             # O_CLOEXEC is always added
        assert stat.S_IMODE(os.fstat(fd).st_mode) == 0o640 & ~current_umask()
        assert await ring.close(fd, name="opened") is None
        with pytest.raises(OSError):
            os.fstat(fd)
        # relative to a directory fd
        dfd = await ring.openat(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = await ring.openat("opened", os.O_RDONLY, dir_fd=dfd)
            assert os.path.samestat(os.fstat(fd), os.stat(path))
            await ring.close(fd)
        finally:
            await ring.close(dfd)
        # a pathlib path, a str and bytes all open
        for p in (path, str(path), os.fsencode(path)):
            fd = await ring.openat(p)
            await ring.close(fd)
        assert ring.stats()["ops"]["openat"]["ops"] == 6
    run(main)


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_statx_and_fstatx(run, data_dir):
    path = data_dir / "st.bin"
    path.write_bytes(b"s" * 12345)
    os.symlink(path, data_dir / "link")

    async def main(ring):
        st = await ring.statx(path)
        assert isinstance(st, FileStat)
        ref = os.stat(path)
        assert st.size == 12345
        assert st.ino == ref.st_ino
        assert st.mode == ref.st_mode and stat.S_ISREG(st.mode)
        assert st.nlink == 1
        assert st.blksize == ref.st_blksize
        assert st.mtime_ns == ref.st_mtime_ns
        if fs_type(path) in ("ext4", "xfs", "btrfs"):
            # Direct I/O alignment is reported by these filesystems (statx DIOALIGN)
            assert st.dio_mem_align > 0
            assert st.dio_offset_align > 0
        assert (await ring.statx(data_dir / "link")).ino == ref.st_ino
        lst = await ring.statx(data_dir / "link", follow_symlinks=False)
        assert stat.S_ISLNK(lst.mode)
        fd = await ring.openat(path)
        try:
            fst = await ring.fstatx(fd, name="st")
            assert fst == st
        finally:
            await ring.close(fd)
        dst = await ring.statx(data_dir)
        assert stat.S_ISDIR(dst.mode)
    run(main)


def test_dio_alignment_is_reported_on_io_uring_and_ext4(data_dir):
    from conftest import io_uring_skip_reason, run_in_ring
    why = io_uring_skip_reason()
    if why:
        pytest.skip(why)
    if fs_type(data_dir) != "ext4":
        pytest.skip(f"{data_dir} is on {fs_type(data_dir)}, not ext4")
    path = data_dir / "dio.bin"
    path.write_bytes(b"")

    async def main(ring):
        st = await ring.statx(path)
        assert st.dio_mem_align > 0 and st.dio_offset_align > 0
        return st
    st = run_in_ring("io_uring", main)
    assert st.dio_offset_align & (st.dio_offset_align - 1) == 0


def test_renameat(run, data_dir):
    old, new = data_dir / "old", data_dir / "new"
    old.write_bytes(b"payload")
    (data_dir / "replaced").write_bytes(b"gone")

    async def main(ring):
        assert await ring.renameat(old, new) is None
        assert not old.exists()
        assert new.read_bytes() == b"payload"
        # replaces an existing target atomically
        await ring.renameat(str(new), str(data_dir / "replaced"))
        assert (data_dir / "replaced").read_bytes() == b"payload"
        # relative to directory fds
        dfd = await ring.openat(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            await ring.renameat("replaced", "final", old_dir_fd=dfd, new_dir_fd=dfd)
        finally:
            await ring.close(dfd)
        assert (data_dir / "final").read_bytes() == b"payload"
    run(main)


def test_unlinkat_of_a_file_and_of_a_directory(run, data_dir):
    f = data_dir / "file"
    f.write_bytes(b"")
    d = data_dir / "dir"
    d.mkdir()
    (data_dir / "rel").write_bytes(b"")

    async def main(ring):
        await ring.unlinkat(f)
        assert not f.exists()
        await ring.unlinkat(d, rmdir=True)
        assert not d.exists()
        dfd = await ring.openat(data_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            await ring.unlinkat("rel", dir_fd=dfd)
        finally:
            await ring.close(dfd)
        assert not (data_dir / "rel").exists()
        assert ring.stats()["ops"]["unlinkat"]["ops"] == 3
    run(main)
