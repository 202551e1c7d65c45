"""Failed operations raise OSError (the matching subclass) with errno and the file name."""
from __future__ import annotations

import errno
import os

import pytest

import uring
from uring import DmaBuffer, DmaFile


def bogus_fd() -> int:
    """An fd number that is certainly not open in this process."""
    fd = os.open("/dev/null", os.O_RDONLY)
    os.close(fd)
    return fd + 10_000


# These tests pass DmaBuffers: a failed io_uring operation on a bytearray or
# memoryview can crash the interpreter's garbage collector once its traceback
# sits in a reference cycle (pytest.raises makes one), which
# test_abandoned_buffers.py exposes in a subprocess.

def test_read_on_a_bogus_fd_is_ebadf_with_the_given_name(run):
    async def main(ring):
        fd = bogus_fd()
        with ring.buffers.get(4096) as buf:
            with pytest.raises(OSError) as ei:
                await ring.read(fd, buf, 0, name="x")
            assert ei.value.errno == errno.EBADF
            assert ei.value.filename == "x"
            assert "read" in str(ei.value)
            # without a name there is no filename, but still the errno
            with pytest.raises(OSError) as ei:
                await ring.read(fd, buf, 0, 16)
            assert ei.value.errno == errno.EBADF
            assert ei.value.filename is None
        assert ring.stats()["ops"]["read"]["errors"] == 2
    run(main)


def test_read_on_a_closed_fd_is_ebadf(run, data_dir):
    async def main(ring):
        fd = await ring.openat(data_dir / "f", os.O_RDWR | os.O_CREAT)
        await ring.close(fd, name="f")
        # nothing in this task opens a file between the close and the read
        with ring.buffers.get(4096) as buf:
            with pytest.raises(OSError) as ei:
                await ring.read(fd, buf, 0, name="x")
        assert (ei.value.errno, ei.value.filename) == (errno.EBADF, "x")
        with pytest.raises(OSError) as ei:
            await ring.close(fd, name="again")
        assert (ei.value.errno, ei.value.filename) == (errno.EBADF, "again")
    run(main)


@pytest.mark.parametrize("op", ["write", "readv", "writev", "fsync", "fallocate",
                                "ftruncate", "fstatx", "close"])
def test_every_fd_operation_reports_ebadf_with_the_name(run, op):
    async def main(ring):
        fd = bogus_fd()
        buf = ring.buffers.get(4096)
        calls = {
            "write": lambda: ring.write(fd, buf, 0, name="y"),
            "readv": lambda: ring.readv(fd, [buf, DmaBuffer.alloc(512)], 0, name="y"),
            "writev": lambda: ring.writev(fd, [buf], 0, name="y"),
            "fsync": lambda: ring.fsync(fd, datasync=True, name="y"),
            "fallocate": lambda: ring.fallocate(fd, 0, 4096, name="y"),
            "ftruncate": lambda: ring.ftruncate(fd, 0, name="y"),
            "fstatx": lambda: ring.fstatx(fd, name="y"),
            "close": lambda: ring.close(fd, name="y"),
        }
        try:
            with pytest.raises(OSError) as ei:
                await calls[op]()
        finally:
            buf.release()
        assert ei.value.errno == errno.EBADF
        assert ei.value.filename == "y"
    run(main)


def test_opening_a_missing_file_is_file_not_found_with_its_name(run, data_dir):
    path = data_dir / "missing"

    async def main(ring):
        with pytest.raises(FileNotFoundError) as ei:
            await DmaFile.open(path, "r")
        assert ei.value.errno == errno.ENOENT
        assert ei.value.filename == str(path)
        with pytest.raises(FileNotFoundError) as ei:
            await DmaFile.open(str(path), "r+")
        assert ei.value.filename == str(path)
        with pytest.raises(FileNotFoundError) as ei:
            await ring.openat(path)
        assert ei.value.filename == str(path)
        assert not path.exists()
    run(main)


def test_exclusive_create_of_an_existing_file_is_file_exists(run, data_dir):
    path = data_dir / "there"
    path.write_bytes(b"keep")

    async def main(ring):
        with pytest.raises(FileExistsError) as ei:
            await DmaFile.open(path, "x")
        assert ei.value.errno == errno.EEXIST
        assert ei.value.filename == str(path)
    run(main)
    assert path.read_bytes() == b"keep"


def test_path_operations_on_missing_paths_name_the_path(run, data_dir):
    missing = data_dir / "nope"

    async def main(ring):
        with pytest.raises(FileNotFoundError) as ei:
            await ring.statx(missing)
        assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, str(missing))
        with pytest.raises(FileNotFoundError) as ei:
            await ring.unlinkat(missing)
        assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, str(missing))
        with pytest.raises(FileNotFoundError) as ei:
            await ring.unlinkat(missing, rmdir=True)
        assert ei.value.filename == str(missing)
        with pytest.raises(FileNotFoundError) as ei:
            await ring.renameat(missing, data_dir / "other")
        assert (ei.value.errno, ei.value.filename) == (errno.ENOENT, str(missing))
        assert not (data_dir / "other").exists()
        stats = ring.stats()["ops"]
        assert stats["statx"]["errors"] == 1
        assert stats["unlinkat"]["errors"] == 2
        assert stats["renameat"]["errors"] == 1
    run(main)


def test_directory_errors_keep_their_errno(run, data_dir):
    d = data_dir / "d"
    d.mkdir()
    (d / "child").write_bytes(b"")

    async def main(ring):
        with pytest.raises(OSError) as ei:
            await ring.unlinkat(d, rmdir=True)            # not empty
        assert ei.value.errno == errno.ENOTEMPTY
        assert ei.value.filename == str(d)
        with pytest.raises(OSError) as ei:
            await ring.unlinkat(d)                        # a directory, without rmdir
        assert ei.value.errno in (errno.EISDIR, errno.EPERM)
        assert ei.value.filename == str(d)
        with pytest.raises(NotADirectoryError) as ei:
            await ring.unlinkat(d / "child", rmdir=True)
        assert ei.value.filename == str(d / "child")
    run(main)
    assert (d / "child").exists()


def test_errors_are_named_when_the_path_is_bytes(run, data_dir):
    missing = os.fsencode(data_dir / "bytes-missing")

    async def main(ring):
        with pytest.raises(FileNotFoundError) as ei:
            await ring.statx(missing)
        assert ei.value.filename == os.fsdecode(missing)
    run(main)


def test_uring_errors_share_one_base_class():
    assert issubclass(uring.RingClosedError, uring.UringError)
    assert issubclass(uring.NoRingError, uring.UringError)
    assert not issubclass(uring.UringError, OSError)
