"""The :class:`Ring`: every disk operation of a reactor, as curio awaitables.

``Ring(...)`` returns the backend decided by :func:`uring.backend_info`: an
:class:`~uring.uring_ring.UringRing` (io_uring) or a
:class:`~uring.sync_ring.SyncRing` (plain syscalls). Both offer the same
operations, stats and errors; use it as ``async with Ring() as ring:`` inside
a curio task. While entered, it is the thread's current ring
(:meth:`Ring.current`), which :class:`~uring.DmaFile` uses by default.

Operations raise ``OSError`` carrying errno and the file name given as
``name=`` (or the path, for path operations).
"""
from __future__ import annotations

import logging
import os
import threading
from typing import Any, Callable, Optional, Sequence

import attrs

from . import backend as _backend
from .buffers import BufferPool, DmaBuffer
from .errors import NoRingError, RingClosedError, os_error
from .opcodes import AT_FDCWD

log = logging.getLogger("uring")

#: ``fault_injector(kind, name) -> errno | None``: a test hook that makes an
#: operation fail with the returned errno before it reaches the kernel.
FaultInjector = Callable[[str, Optional[str]], Optional[int]]

_local = threading.local()


@attrs.frozen
class FileStat:
    """What ``statx`` reports about a file (the fields this project uses)."""

    size: int
    mode: int
    ino: int
    nlink: int
    blksize: int
    blocks: int
    mtime_ns: int
    #: Direct I/O alignment of memory and of file offsets; 0 if not reported.
    dio_mem_align: int
    dio_offset_align: int

    @classmethod
    def from_ur_stat(cls, st: Any) -> "FileStat":
        """From the C extension's ``ur_stat`` (filled by statx)."""
        return cls(size=st.size, mode=st.mode, ino=st.ino, nlink=st.nlink,
                   blksize=st.blksize, blocks=st.blocks,
                   mtime_ns=st.mtime_sec * 1_000_000_000 + st.mtime_nsec,
                   dio_mem_align=st.dio_mem_align, dio_offset_align=st.dio_offset_align)


class Ring:
    """One reactor's I/O ring. ``Ring()`` picks the backend; see module docs.

    Args:
        entries: submission queue size; completions get twice as many slots and
            at most that many operations are in flight (more callers wait).
        backend: ``"io_uring"``, ``"sync"`` or None for the process default.
        fixed_buffers: register the buffer pool's arena as fixed buffers when
            the memlock limit allows (io_uring only).
        fixed_bytes: upper bound of the registered arena.
        flush_threshold: submit as soon as this many SQEs are pending, so a
            device starts on a pass's first operations while the rest are
            prepared; fewer are submitted at the end of the scheduler pass.
            Values above ``entries`` act as ``entries``. The ring doubles it
            (up to ``entries``) after each submit whose
            operations all completed inside the call (nops, page-cache hits:
            an early submit only adds a syscall there) and goes back to it
            after one whose operations went to a device -- unless the loop
            is CPU-bound (``stats()["cpu_bound"]``, under ``uring.run``),
            when it keeps growing (io_uring only).
        spin_us: when the ring is the kernel's wait (``uring.run``, the
            reactor runtime), nothing is ready to run and operations are in
            flight, watch for completions this long before sleeping. A
            completion due within microseconds then skips the sleep and
            wake-up, about 25 us each on a VM. The CPU is busy during the
            spin; 0 disables it. A spin that catches nothing halves the
            next one (down to a sixteenth), one that catches a completion
            restores it.
    """

    backend: str = "?"
    reason: str = ""

    def __new__(cls, entries: int = 256, *, backend: str | None = None, **kwargs: Any) -> "Ring":
        if cls is not Ring:
            return super().__new__(cls)
        from .sync_ring import SyncRing
        from .uring_ring import UringRing
        if backend is None:
            backend = _backend.backend_info().backend
        if backend == _backend.SYNC:
            return super().__new__(SyncRing)
        if backend == _backend.IO_URING:
            return super().__new__(UringRing)
        raise ValueError(f"unknown backend {backend!r}: expected 'io_uring', 'sync' or None")

    def __init__(self, entries: int = 256, *, backend: str | None = None,
                 fixed_buffers: bool = True, fixed_bytes: int = 8 << 20,
                 flush_threshold: int = 4, spin_us: int = 100) -> None:
        if not isinstance(entries, int) or entries < 1 or entries > 32768:
            raise ValueError(f"ring entries must be an int in 1..32768, got {entries!r}")
        self.entries = entries
        if not isinstance(spin_us, int) or isinstance(spin_us, bool) or not 0 <= spin_us <= 1_000_000:
            raise ValueError(f"spin_us must be an int in 0..1000000 (microseconds), got {spin_us!r}")
        self.spin_us = spin_us
        if not isinstance(flush_threshold, int) or isinstance(flush_threshold, bool) \
                or flush_threshold < 1:
            raise ValueError(f"flush_threshold must be an int >= 1 (pending SQEs), "
                             f"got {flush_threshold!r}")
        self.flush_threshold = flush_threshold
        self.buffers = BufferPool()
        self._fault_injector: FaultInjector | None = None
        self._started = False
        self._closed = False
        # True while any slow-path check applies (not started, closed, faults):
        # the hot path tests this one flag.
        self._guarded = True

    # -- lifecycle -----------------------------------------------------------
    async def start(self) -> None:
        """Start the ring's tasks in the running curio kernel."""
        if self._closed:
            raise RingClosedError("this ring was closed; create a new Ring")
        self._started = True
        self._update_guard()

    async def aclose(self) -> None:
        """Wait for operations in flight, stop the ring's tasks and free the ring."""
        self._closed = True
        self._update_guard()

    async def __aenter__(self) -> "Ring":
        await self.start()
        self._previous = getattr(_local, "ring", None)
        _local.ring = self
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            await self.aclose()
        finally:
            _local.ring = self._previous

    @staticmethod
    def current() -> "Ring":
        """The ring entered (``async with``) in this thread."""
        ring = getattr(_local, "ring", None)
        if ring is None:
            raise NoRingError("no uring.Ring is running in this thread: use "
                              "'async with uring.Ring() as ring:' or pass ring=")
        return ring

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def in_flight(self) -> int:
        """Operations submitted and not yet completed (0 for the sync backend)."""
        return 0

    def submit(self) -> int:
        """Hand every prepared operation to the kernel now; returns how many.

        Operations are normally submitted at the end of a scheduler pass (or
        once ``flush_threshold`` are pending). A task that starts a long
        operation and then keeps the core busy calls this so the device works
        meanwhile. A no-op on the sync backend, whose operations never wait.
        """
        return 0

    def stats(self) -> dict[str, Any]:
        """JSON-able I/O stats: backend, ops/bytes/errors by kind, latency, batching."""
        raise NotImplementedError

    # -- helpers shared by backends -------------------------------------------
    @property
    def fault_injector(self) -> FaultInjector | None:
        """Test hook: ``fn(kind, name) -> errno | None`` fails operations before the kernel.

        ``kind`` is the stats kind (``"write"``, ``"fsync"``, ...) and ``name``
        the file name given to the operation. Used to simulate a full disk.
        """
        return self._fault_injector

    @fault_injector.setter
    def fault_injector(self, fn: FaultInjector | None) -> None:
        self._fault_injector = fn
        self._update_guard()

    def _update_guard(self) -> None:
        self._guarded = self._closed or not self._started or self._fault_injector is not None

    def _precheck(self, kind: str, name: str | None) -> None:
        """Slow-path checks before an operation: ring state, then injected faults."""
        self._check_open()
        if self._fault_injector is not None:
            self._fault(kind, name)

    def _check_open(self) -> None:
        broken = getattr(self, "_broken", None)
        if broken is not None:
            raise RingClosedError(f"I/O on a broken ring: {broken}") from broken
        if self._closed:
            raise RingClosedError("I/O on a closed ring; create a new Ring")
        if not self._started:
            raise RingClosedError("I/O on a ring that is not started: use "
                                  "'async with Ring() as ring:' or 'await ring.start()'")

    def _fault(self, kind: str, name: str | None) -> None:
        err = self._fault_injector(kind, name)  # type: ignore[misc]
        if err:
            raise os_error(err, kind, name)

    # -- operations (documented here, implemented by each backend) -------------
    async def nop(self) -> int:
        """A round trip through the ring that does nothing; returns 0."""
        raise NotImplementedError

    async def read(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,
                   name: str | None = None) -> int:
        """Read up to ``nbytes`` (default: the buffer's size) at ``offset`` into ``buf``.

        ``buf`` is a :class:`DmaBuffer` or any writable buffer. Returns the
        byte count (short at EOF).
        """
        raise NotImplementedError

    async def write(self, fd: int, buf: Any, offset: int, nbytes: int | None = None, *,
                    name: str | None = None) -> int:
        """Write ``nbytes`` (default: all) of ``buf`` at ``offset``; returns bytes written."""
        raise NotImplementedError

    async def readv(self, fd: int, bufs: Sequence[Any], offset: int, *,
                    name: str | None = None) -> int:
        """Scatter read into ``bufs`` starting at ``offset``."""
        raise NotImplementedError

    async def writev(self, fd: int, bufs: Sequence[Any], offset: int, *,
                     name: str | None = None) -> int:
        """Gather write of ``bufs`` starting at ``offset``."""
        raise NotImplementedError

    async def fsync(self, fd: int, *, datasync: bool = False, name: str | None = None) -> None:
        """``fsync`` (or ``fdatasync`` with ``datasync=True``)."""
        raise NotImplementedError

    async def fallocate(self, fd: int, offset: int, length: int, mode: int = 0, *,
                        name: str | None = None) -> None:
        """``fallocate(fd, mode, offset, length)``."""
        raise NotImplementedError

    async def ftruncate(self, fd: int, length: int, *, name: str | None = None) -> None:
        """Set the file's size (io_uring ``FTRUNCATE`` where supported, else a syscall)."""
        raise NotImplementedError

    async def openat(self, path: str | os.PathLike, flags: int = os.O_RDONLY,
                     mode: int = 0o644, *, dir_fd: int = AT_FDCWD) -> int:
        """Open ``path``; returns the fd (``O_CLOEXEC`` is always added)."""
        raise NotImplementedError

    async def close(self, fd: int, *, name: str | None = None) -> None:
        """Close ``fd``."""
        raise NotImplementedError

    async def statx(self, path: str | os.PathLike, *, dir_fd: int = AT_FDCWD,
                    follow_symlinks: bool = True) -> FileStat:
        """``statx`` of a path, including the Direct I/O alignment where reported."""
        raise NotImplementedError

    async def fstatx(self, fd: int, *, name: str | None = None) -> FileStat:
        """``statx`` of an open file."""
        raise NotImplementedError

    async def renameat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                       old_dir_fd: int = AT_FDCWD, new_dir_fd: int = AT_FDCWD,
                       flags: int = 0) -> None:
        """Rename ``old`` to ``new`` (atomic on one filesystem)."""
        raise NotImplementedError

    async def unlinkat(self, path: str | os.PathLike, *, dir_fd: int = AT_FDCWD,
                       rmdir: bool = False) -> None:
        """Remove a file (or an empty directory with ``rmdir=True``)."""
        raise NotImplementedError

    async def mkdirat(self, path: str | os.PathLike, mode: int = 0o755, *,
                      dir_fd: int = AT_FDCWD) -> None:
        """Create a directory."""
        raise NotImplementedError

    async def linkat(self, old: str | os.PathLike, new: str | os.PathLike, *,
                     old_dir_fd: int = AT_FDCWD, new_dir_fd: int = AT_FDCWD) -> None:
        """Create the hard link ``new`` to ``old``."""
        raise NotImplementedError


def buffer_view(buf: Any, nbytes: int | None, writable: bool) -> memoryview:
    """A byte memoryview of ``buf`` limited to ``nbytes``, with a clear error if too small."""
    view = buf.view if isinstance(buf, DmaBuffer) else memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    if writable and view.readonly:
        raise TypeError(f"cannot read into a read-only buffer ({type(buf).__name__})")
    if nbytes is None:
        return view
    if nbytes < 0 or nbytes > len(view):
        raise ValueError(f"nbytes={nbytes} outside the buffer's {len(view)} bytes")
    return view[:nbytes]
