"""The fallback backend of :class:`~uring.Ring`: the same API on plain syscalls.

Used where io_uring is unavailable (see :mod:`uring.backend`). Each operation
runs to completion in the calling task, so nothing is ever in flight and
cancellation cannot race the kernel. Stats have the same shape as io_uring's
(``enter_calls`` counts syscalls, one operation each).
"""
from __future__ import annotations

import errno
import os
import time
from typing import Any, Callable, Sequence

from . import backend as _backend
from . import opcodes as op
from ._native import ffi, lib
from .errors import check_rc, os_error
from .ring import FileStat, Ring, buffer_view
from .stats import PyIoCounters, summarize


def _dir(fd: int) -> int | None:
    return None if fd == op.AT_FDCWD else fd


class SyncRing(Ring):
    """:class:`~uring.Ring` on plain syscalls. Construct through ``Ring(...)``."""

    backend = _backend.SYNC

    def __init__(self, entries: int = 256, *, backend: str | None = None,
                 fixed_buffers: bool = True, fixed_bytes: int = 8 << 20,
                 flush_threshold: int = 4, spin_us: int = 100) -> None:
        super().__init__(entries, backend=backend, flush_threshold=flush_threshold, spin_us=spin_us)
        info = _backend.backend_info()
        self.reason = info.reason if info.backend == _backend.SYNC else "sync backend requested"
        self.buffers.fixed_reason = "sync backend: no fixed buffers"
        self._counters = PyIoCounters()

    def _run(self, kind: str, name: Any, fn: Callable[..., Any], *args: Any,
             rw: bool = False) -> Any:
        """Run one syscall, timing it, with errors converted and named."""
        if self.fault_injector is not None:
            self._fault(kind, name)
        if self._closed or not self._started:
            self._check_open()
        t0 = time.perf_counter_ns()
        try:
            res = fn(*args)
        except OverflowError as exc:
            raise ValueError(f"invalid argument for {kind}"
                             f"{'' if name is None else f' on {name!r}'}: {exc} (offsets, "
                             f"lengths and fds must be ints in range)") from None
        except OSError as e:
            self._counters.record(kind, 0, time.perf_counter_ns() - t0, True)
            raise os_error(e.errno or 0, kind, name) from None
        self._counters.record(kind, res if rw else 0, time.perf_counter_ns() - t0, False)
        return res

    async def nop(self) -> int:
        self._run("nop", None, lambda: None)
        return 0

    @staticmethod
    def _check_offset(kind: str, offset: int, name: Any) -> None:
        # preadv/pwritev would take -1 as "the current position"; io_uring's
        # unsigned offset refuses it, and so must we, for the same behaviour.
        if not isinstance(offset, int) or offset < 0 or offset >= 1 << 63:
            raise ValueError(f"invalid argument for {kind}"
                             f"{'' if name is None else f' on {name!r}'}: offset {offset!r} "
                             f"must be an int in 0..2**63-1")

    async def read(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,
                   name: str | None = None) -> int:
        self._check_offset("read", offset, name)
        view = buffer_view(buf, nbytes, True)
        return self._run("read", name, os.preadv, fd, [view], offset, rw=True)

    async def write(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,
                    name: str | None = None) -> int:
        self._check_offset("write", offset, name)
        view = buffer_view(buf, nbytes, False)
        return self._run("write", name, os.pwritev, fd, [view], offset, rw=True)

    async def readv(self, fd: int, bufs: Sequence[Any], offset: int, *,
                    name: str | None = None) -> int:
        self._check_offset("read", offset, name)
        views = [buffer_view(b, None, True) for b in bufs]
        return self._run("read", name, os.preadv, fd, views, offset, rw=True)

    async def writev(self, fd: int, bufs: Sequence[Any], offset: int, *,
                     name: str | None = None) -> int:
        self._check_offset("write", offset, name)
        views = [buffer_view(b, None, False) for b in bufs]
        return self._run("write", name, os.pwritev, fd, views, offset, rw=True)

    async def fsync(self, fd: int, *, datasync: bool = False, name: str | None = None) -> None:
        self._run("fsync", name, os.fdatasync if datasync else os.fsync, fd)

    async def fallocate(self, fd: int, offset: int, length: int, mode: int = 0, *,
                        name: str | None = None) -> None:
        if lib is not None:
            self._run("fallocate", name,
                      lambda: check_rc(lib.ur_fallocate(fd, mode, offset, length)))
        elif mode == 0:
            self._run("fallocate", name, os.posix_fallocate, fd, offset, length)
        else:
            raise os_error(errno.EOPNOTSUPP, "fallocate", name)

    async def ftruncate(self, fd: int, length: int, *, name: str | None = None) -> None:
        if length < 0:
            raise ValueError(f"cannot truncate to a negative size ({length})")
        self._run("ftruncate", name, os.ftruncate, fd, length)

    async def openat(self, path: str | os.PathLike, flags: int = os.O_RDONLY,
                     mode: int = 0o644, *, dir_fd: int = op.AT_FDCWD) -> int:
        return self._run("openat", os.fsdecode(path),
                         lambda: os.open(path, flags | os.O_CLOEXEC, mode, dir_fd=_dir(dir_fd)))

    async def close(self, fd: int, *, name: str | None = None) -> None:
        self._run("close", name, os.close, fd)

    def _stat(self, call: Callable[[], Any], name: Any) -> FileStat:
        if lib is not None:
            st = ffi.new("ur_stat *")
            self._run("statx", name, lambda: check_rc(call(st)))
            return FileStat.from_ur_stat(st)
        raise NotImplementedError  # pragma: no cover - replaced below when lib is None

    async def statx(self, path: str | os.PathLike, *, dir_fd: int = op.AT_FDCWD,
                    follow_symlinks: bool = True) -> FileStat:
        name = os.fsdecode(path)
        if lib is None:
            s = self._run("statx", name, lambda: os.stat(path, dir_fd=_dir(dir_fd),
                                                          follow_symlinks=follow_symlinks))
            return _from_os_stat(s)
        flags = 0 if follow_symlinks else op.AT_SYMLINK_NOFOLLOW
        cpath = ffi.new("char[]", os.fsencode(path))
        return self._stat(lambda st: lib.ur_statx_path(dir_fd, cpath, flags, st), name)

    async def fstatx(self, fd: int, *, name: str | None = None) -> FileStat:
        if lib is None:
            return _from_os_stat(self._run("statx", name, os.fstat, fd))
        return self._stat(lambda st: lib.ur_statx_fd(fd, st), name)

    async def renameat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                       old_dir_fd: int = op.AT_FDCWD, new_dir_fd: int = op.AT_FDCWD,
                       flags: int = 0) -> None:
        if flags:
            raise ValueError("rename flags need the io_uring backend (RENAME_NOREPLACE etc.)")
        self._run("renameat", os.fsdecode(old), lambda: os.rename(
            old, new, src_dir_fd=_dir(old_dir_fd), dst_dir_fd=_dir(new_dir_fd)))

    async def unlinkat(self, path: str | os.PathLike, *, dir_fd: int = op.AT_FDCWD,
                       rmdir: bool = False) -> None:
        fn = os.rmdir if rmdir else os.unlink
        self._run("unlinkat", os.fsdecode(path), lambda: fn(path, dir_fd=_dir(dir_fd)))

    async def mkdirat(self, path: str | os.PathLike, mode: int = 0o755, *,
                      dir_fd: int = op.AT_FDCWD) -> None:
        self._run("mkdirat", os.fsdecode(path), lambda: os.mkdir(path, mode, dir_fd=_dir(dir_fd)))

    async def linkat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                     old_dir_fd: int = op.AT_FDCWD, new_dir_fd: int = op.AT_FDCWD) -> None:
        self._run("linkat", os.fsdecode(new), lambda: os.link(
            old, new, src_dir_fd=_dir(old_dir_fd), dst_dir_fd=_dir(new_dir_fd)))

    def stats(self) -> dict[str, Any]:
        c = self._counters
        rows = [(k, n, c.bytes.get(k, 0), c.errors.get(k, 0)) for k, n in c.ops.items()]
        return summarize(backend=self.backend, reason=self.reason, by_kind=rows,
                         lat_hist=c.lat_hist, in_flight=0, enter_calls=c.calls,
                         sqes_submitted=c.calls,
                         extra={"buffers": self.buffers.stats()})


def _from_os_stat(s: os.stat_result) -> FileStat:
    return FileStat(size=s.st_size, mode=s.st_mode, ino=s.st_ino, nlink=s.st_nlink,
                    blksize=s.st_blksize, blocks=s.st_blocks, mtime_ns=s.st_mtime_ns,
                    dio_mem_align=0, dio_offset_align=0)
