"""``DmaFile``: a file opened with ``O_DIRECT``, read and written through a Ring.

Direct I/O bypasses the page cache, so buffer addresses, file offsets and
lengths must be multiples of the device's alignment. ``DmaFile`` learns that
alignment from ``statx`` (``dio_mem_align``/``dio_offset_align``; 4096 where
the kernel does not report it), aligns reads internally (``read_at`` takes any
offset and length) and demands aligned writes (``write_at`` raises a
``ValueError`` saying what was wrong).

Where the filesystem refuses ``O_DIRECT`` the file is opened buffered and
``direct`` is False; the alignment rules stay the same so that code behaves
identically everywhere (tmpfs would otherwise hide alignment bugs).
"""
from __future__ import annotations

import errno
import logging
import os
from typing import Any

from .buffers import DmaBuffer
from .errors import os_error
from .ring import FileStat, Ring

log = logging.getLogger("uring")

DEFAULT_ALIGN = 4096
FALLOC_FL_KEEP_SIZE = 0x01

#: open modes: r (read), r+ (read/write), w/w+ (create, truncate),
#: x (create, must not exist), c (create if missing, keep contents).
MODES = {
    "r": os.O_RDONLY,
    "r+": os.O_RDWR,
    "w": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "x": os.O_RDWR | os.O_CREAT | os.O_EXCL,
    "c": os.O_RDWR | os.O_CREAT,
}


def _check_int(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{name} must be a non-negative int, got {value!r}")
    return value


class DmaFile:
    """A Direct I/O file. Open with ``await DmaFile.open(path, mode)``."""

    def __init__(self, ring: Ring, fd: int, path: str, *, direct: bool,
                 mem_align: int, offset_align: int, writable: bool) -> None:
        self.ring = ring
        self.fd = fd
        self.path = path
        self.direct = direct
        self.mem_align = mem_align
        self.offset_align = offset_align
        self.writable = writable
        self._closed = False

    @classmethod
    async def open(cls, path: str | os.PathLike, mode: str = "r", *, ring: Ring | None = None,
                   direct: bool = True, perm: int = 0o644) -> "DmaFile":
        """Open ``path`` (modes: r, r+, w, w+, x, c) for Direct I/O through ``ring``.

        ``ring`` defaults to :meth:`Ring.current`. With ``direct=False`` (or if
        the filesystem refuses ``O_DIRECT``) the file is opened buffered.
        """
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} for {os.fsdecode(path)!r}: "
                             f"expected one of {', '.join(MODES)}")
        ring = ring if ring is not None else Ring.current()
        name = os.fsdecode(path)
        flags = MODES[mode]
        fd = -1
        is_direct = False
        if direct:
            try:
                fd = await ring.openat(path, flags | os.O_DIRECT, perm)
                is_direct = True
            except OSError as e:
                if e.errno != errno.EINVAL:
                    raise
                log.info("uring: %s refuses O_DIRECT; opening it buffered", name)
                if flags & os.O_EXCL:
                    flags &= ~(os.O_EXCL | os.O_CREAT)   # the failed open created it
        if fd < 0:
            fd = await ring.openat(path, flags, perm)
        try:
            st = await ring.fstatx(fd, name=name)
        except BaseException:
            await ring.close(fd, name=name)
            raise
        mem = st.dio_mem_align if is_direct and st.dio_mem_align else DEFAULT_ALIGN
        off = st.dio_offset_align if is_direct and st.dio_offset_align else DEFAULT_ALIGN
        return cls(ring, fd, name, direct=is_direct, mem_align=mem, offset_align=off,
                   writable=mode != "r")

    # -- reads ---------------------------------------------------------------------
    def _check(self) -> None:
        if self._closed:
            raise ValueError(f"I/O on closed DmaFile {self.path!r}")

    async def read_at(self, offset: int, length: int) -> bytes:
        """Read ``length`` bytes at ``offset`` (any values); shorter at end of file."""
        if self._closed:
            self._check()
        if offset.__class__ is not int or length.__class__ is not int or offset < 0 or length < 0:
            _check_int("offset", offset)
            _check_int("length", length)
        if length == 0:
            return b""
        a = self.offset_align
        skip = offset % a
        start = offset - skip
        size = -(-(skip + length) // a) * a
        buf = self.ring.buffers.get(size)
        try:
            # One read nearly always suffices (point reads of the store's hot path).
            got = await self.ring.read(self.fd, buf, start, size, name=self.path)
            if got < size:
                got = await self._fill(buf, start, size, got)
            if got <= skip:
                return b""
            return buf.view[skip:min(got, skip + length)].tobytes()
        finally:
            buf.release()

    async def _fill(self, buf: DmaBuffer, start: int, size: int, got: int | None = None) -> int:
        """Read ``size`` aligned bytes at ``start`` into ``buf`` (``got`` of them already
        there); stops at EOF."""
        if got is None:
            got = await self.ring.read(self.fd, buf, start, size, name=self.path)
        while got < size and got % self.offset_align == 0 and got > 0:
            # A short aligned read before EOF (rare): continue where it stopped.
            n = await self.ring.read(self.fd, buf.slice(got, size), start + got, name=self.path)
            if n <= 0:
                break
            got += n
        return got

    async def read_into(self, buf: DmaBuffer | Any, offset: int, nbytes: int | None = None) -> int:
        """Read at an aligned ``offset`` into an aligned buffer; returns the byte count."""
        self._check()
        _check_int("offset", offset)
        n = len(buf) if nbytes is None else _check_int("nbytes", nbytes)
        self._check_alignment("read_into", offset, n)
        return await self.ring.read(self.fd, buf, offset, n, name=self.path)

    # -- writes --------------------------------------------------------------------
    def _check_alignment(self, what: str, offset: int, length: int) -> None:
        a = self.offset_align
        if offset % a or length % a:
            bad = []
            if offset % a:
                bad.append(f"offset {offset} is not a multiple of {a}")
            if length % a:
                bad.append(f"length {length} is not a multiple of {a}")
            raise ValueError(f"{what} on {self.path!r}: {' and '.join(bad)} (Direct I/O "
                             f"alignment of this file); pad the data or use DmaStreamWriter")

    async def write_at(self, data: DmaBuffer | bytes | bytearray | memoryview, offset: int,
                       nbytes: int | None = None) -> int:
        """Write ``data`` at ``offset``; both must be aligned to ``offset_align``.

        A :class:`DmaBuffer` is written in place; other bytes-like data is
        copied into an aligned buffer first. Returns the bytes written.
        """
        self._check()
        if not self.writable:
            raise os_error(errno.EBADF, "write_at (file opened read-only)", self.path)
        _check_int("offset", offset)
        if isinstance(data, DmaBuffer):
            n = data.size if nbytes is None else _check_int("nbytes", nbytes)
            if n > data.size:
                raise ValueError(f"nbytes={n} exceeds the buffer's {data.size} bytes")
            self._check_alignment("write_at", offset, n)
            if data.address % self.mem_align == 0:
                return await self._write_all(data, offset, n)
            src: Any = data.view[:n]
        else:
            src = memoryview(data).cast("B")
            n = len(src) if nbytes is None else _check_int("nbytes", nbytes)
            src = src[:n]
            self._check_alignment("write_at", offset, n)
        if n == 0:
            return 0
        buf = self.ring.buffers.get(n)
        try:
            buf.view[:n] = src
            return await self._write_all(buf, offset, n)
        finally:
            buf.release()

    async def _write_all(self, buf: DmaBuffer, offset: int, n: int) -> int:
        done = await self.ring.write(self.fd, buf, offset, n, name=self.path)
        while done < n:
            w = await self.ring.write(self.fd, buf.slice(done, n), offset + done, name=self.path)
            if w <= 0:
                raise os_error(errno.EIO, "write (no progress)", self.path)
            done += w
        return done

    # -- metadata --------------------------------------------------------------------
    async def fdatasync(self) -> None:
        """Make written data durable (``fdatasync``)."""
        self._check()
        await self.ring.fsync(self.fd, datasync=True, name=self.path)

    async def fsync(self) -> None:
        """Make data and metadata durable (``fsync``)."""
        self._check()
        await self.ring.fsync(self.fd, name=self.path)

    async def pre_allocate(self, size: int, *, keep_size: bool = False) -> None:
        """Reserve ``size`` bytes on disk (``fallocate``); with ``keep_size`` the size stays."""
        self._check()
        _check_int("size", size)
        await self.ring.fallocate(self.fd, 0, size, FALLOC_FL_KEEP_SIZE if keep_size else 0,
                                  name=self.path)

    async def truncate(self, size: int) -> None:
        """Set the file's size."""
        self._check()
        _check_int("size", size)
        await self.ring.ftruncate(self.fd, size, name=self.path)

    async def stat(self) -> FileStat:
        """``statx`` of the open file."""
        self._check()
        return await self.ring.fstatx(self.fd, name=self.path)

    async def size(self) -> int:
        """Current size in bytes."""
        return (await self.stat()).size

    async def close(self) -> None:
        """Close the file (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self.ring.close(self.fd, name=self.path)

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> "DmaFile":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        mode = "direct" if self.direct else "buffered"
        return f"<DmaFile {self.path!r} fd={self.fd} {mode} align={self.offset_align}>"
