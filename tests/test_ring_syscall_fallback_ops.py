"""Operations an older kernel's io_uring lacks run as plain syscalls, same results and errors."""
from __future__ import annotations

import errno
import os

import pytest

from uring import Ring, backend_info
from uring import opcodes as op
from uring.curio_compat import curio

pytestmark = pytest.mark.skipif(backend_info().backend != "io_uring",
                                reason=f"needs io_uring: {backend_info().reason}")

OPTIONAL = {op.RENAMEAT, op.UNLINKAT, op.MKDIRAT, op.LINKAT, op.FTRUNCATE, op.FALLOCATE}


def test_metadata_ops_fall_back_to_syscalls(tmp_path):
    async def main():
        async with Ring(backend="io_uring") as ring:
            ring._supported = ring._supported - OPTIONAL     # as on an older kernel
            d = tmp_path / "dir"
            await ring.mkdirat(d)
            fd = await ring.openat(d / "a", os.O_RDWR | os.O_CREAT)
            await ring.fallocate(fd, 0, 8192, name="a")
            await ring.ftruncate(fd, 4096, name="a")
            assert os.fstat(fd).st_size == 4096
            await ring.close(fd)
            await ring.linkat(d / "a", d / "b")
            await ring.renameat(d / "b", d / "c")
            assert sorted(os.listdir(d)) == ["a", "c"]
            await ring.unlinkat(d / "c")
            await ring.unlinkat(d / "a")
            await ring.unlinkat(d, rmdir=True)
            with pytest.raises(FileNotFoundError) as ei:
                await ring.unlinkat(d / "missing")
            assert ei.value.errno == errno.ENOENT and ei.value.filename == str(d / "missing")
            ring.fault_injector = lambda kind, name: errno.ENOSPC if kind == "mkdirat" else None
            with pytest.raises(OSError) as ei:
                await ring.mkdirat(tmp_path / "full")
            assert ei.value.errno == errno.ENOSPC
            fallback = ring.stats()["sync_fallback_ops"]
            for kind in ("mkdirat", "fallocate", "ftruncate", "linkat", "renameat", "unlinkat"):
                assert fallback.get(kind), (kind, fallback)
    curio.run(main)
