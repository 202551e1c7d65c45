"""Sources: where a topology's elements come from, and how they rewind on restore.

A :class:`Source` is a description (picklable, reusable); :meth:`Source.open`
makes a :class:`SourceReader` for one parallel instance, positioned at an
*offset* taken from the last committed checkpoint (None: from the start).
Offsets are JSON values recorded in the checkpoint's metadata, so a restored
job resumes each source exactly where the committed state left it.

Replayable sources (``replayable = True``) give exactly-once state; the TCP
source cannot rewind and is at-most-once.
"""
from __future__ import annotations

import itertools
import os
import time
from typing import Any, Callable, Iterable

from uring.curio_compat import curio

from . import scheduler as _sched
from .errors import ReactorError

__all__ = ["Source", "SourceReader", "IterableSource", "GeneratorSource", "FileSource",
           "TcpSource"]


class SourceReader:
    """Reads one instance's share of a source. Subclasses implement :meth:`read`."""

    async def read(self, max_n: int) -> list[Any] | None:
        """Up to ``max_n`` elements; ``[]`` when none are ready now; None at the end."""
        raise NotImplementedError

    def offset(self) -> Any:
        """JSON-able position after the last element returned (what a restore resumes from)."""
        return None

    async def close(self) -> None:
        """Release files and sockets."""


class Source:
    """Base class of sources."""

    #: Whether the reader can resume at a checkpointed offset (exactly-once state).
    replayable = True
    #: The largest parallelism the source supports (None: any).
    max_parallelism: int | None = None

    def open(self, index: int, parallelism: int, offset: Any) -> SourceReader:
        """A reader for instance ``index`` of ``parallelism``, resuming at ``offset``."""
        raise NotImplementedError

    def describe(self) -> str:
        return type(self).__name__


# ------------------------------------------------------------------------ iterables

class _SliceReader(SourceReader):
    """Instance ``index`` of ``p`` takes every p-th element; offset = elements consumed
    from the whole sequence (so a restore skips exactly what the state has seen)."""

    def __init__(self, seq: Any, index: int, p: int, offset: int, rate: float | None,
                 count: int | None, fn: Callable[[int], Any] | None) -> None:
        self.seq, self.index, self.p = seq, index, p
        self.pos = offset
        self.rate = rate
        self.count = count
        self.fn = fn
        self._it: Any = None
        self._t0 = time.monotonic()
        self._start = offset

    async def read(self, max_n: int) -> list[Any] | None:
        if self.rate is not None:
            # Pace to `rate` elements/s for this instance since it started.
            due = self._t0 + (self.pos - self._start) / self.p / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                await curio.sleep(delay)
            max_n = max(1, min(max_n, int(self.rate * 0.01) or 1))
        pos, p = self.pos, self.p
        if self.fn is not None:
            end = pos + max_n * p
            if self.count is not None:
                end = min(end, self.count)
            if pos >= end:
                return None
            first = pos + (self.index - pos) % p
            fn = self.fn
            out: list[Any] = []
            # In runs of 64, yielding when the slice is spent: fn may be slow.
            for lo in range(first, end, 64 * p):
                out.extend([fn(i) for i in range(lo, min(end, lo + 64 * p), p)])
                await _sched.maybe_yield()
            self.pos = end
            return out
        seq = self.seq
        if isinstance(seq, (list, tuple, range)):       # sliceable: no iteration needed
            if pos >= len(seq):
                return None
            end = min(len(seq), pos + max_n * p)
            first = pos + (self.index - pos) % p
            out = seq[first:end:p] if p > 1 else seq[pos:end]
            self.pos = end
            return list(out) if not isinstance(out, list) else out
        if self._it is None:
            self._it = itertools.islice(iter(seq), pos, None)
        chunk = list(itertools.islice(self._it, max_n * p))
        if not chunk:
            return None
        first = (self.index - pos) % p
        self.pos = pos + len(chunk)
        return chunk[first::p] if p > 1 else chunk

    def offset(self) -> int:
        return self.pos


class IterableSource(Source):
    """Elements of an iterable; replayable by position.

    Pass a sequence (list, range, ...), a re-iterable, or a zero-argument
    function returning an iterator: a restore skips the elements before the
    committed offset. A one-shot iterator (a generator object) works for one
    run in a process; restarting the job in the same process needs one of the
    others, and says so.
    """

    def __init__(self, data: Iterable[Any] | Callable[[], Iterable[Any]], *,
                 rate: float | None = None) -> None:
        if callable(data) and not hasattr(data, "__iter__"):
            self._factory = data
            self._data = None
        elif hasattr(data, "__iter__"):
            self._factory = None
            self._data = data
        else:
            raise TypeError(f"IterableSource needs an iterable or a function returning one, "
                            f"got {type(data).__name__}")
        if rate is not None and (not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"IterableSource: rate must be a positive number of elements/s, "
                             f"got {rate!r}")
        self.rate = rate
        self._one_shot_used = False

    def open(self, index: int, parallelism: int, offset: Any) -> SourceReader:
        if offset is not None and (not isinstance(offset, int) or offset < 0):
            raise ReactorError(f"IterableSource: checkpointed offset {offset!r} is not an element "
                               f"count; was the state written by another topology?")
        if self._factory is not None:
            data = self._factory()
        else:
            data = self._data
            if iter(data) is data:      # a one-shot iterator
                if self._one_shot_used and parallelism == 1:
                    raise ReactorError(
                        "IterableSource over a one-shot iterator (a generator?) cannot be read "
                        "twice in one process (job restart); pass a list or a function that "
                        "returns a fresh iterator")
                if parallelism > 1:
                    raise ReactorError("IterableSource over a one-shot iterator cannot be split "
                                       "over parallel instances; pass a list or a function")
                self._one_shot_used = True
        return _SliceReader(data, index, parallelism, offset or 0, self.rate, None, None)


class GeneratorSource(Source):
    """Element ``i`` is ``fn(i)`` for i = 0, 1, ... (``count`` of them, or forever),
    optionally paced to ``rate`` elements per second; replayable by index."""

    def __init__(self, fn: Callable[[int], Any], *, count: int | None = None,
                 rate: float | None = None) -> None:
        if not callable(fn):
            raise TypeError(f"GeneratorSource needs fn(i) -> element, got {fn!r}")
        if count is not None and (not isinstance(count, int) or count < 0):
            raise ValueError(f"GeneratorSource: count must be an int >= 0 or None, got {count!r}")
        if rate is not None and (not isinstance(rate, (int, float)) or rate <= 0):
            raise ValueError(f"GeneratorSource: rate must be a positive number of elements/s, "
                             f"got {rate!r}")
        self.fn, self.count, self.rate = fn, count, rate

    def open(self, index: int, parallelism: int, offset: Any) -> SourceReader:
        return _SliceReader(None, index, parallelism, int(offset or 0), self.rate, self.count,
                            self.fn)


# ---------------------------------------------------------------------------- files

class _FileReader(SourceReader):
    def __init__(self, path: str, offset: int, encoding: str, chunk: int) -> None:
        self.path = path
        self.pos = offset            # byte position after the last returned line
        self.encoding = encoding
        self.chunk = chunk
        self._file: Any = None
        self._read_pos = offset      # byte position of the next read
        self._buf = b""
        self._lines: list[bytes] = []
        self._eof = False

    async def read(self, max_n: int) -> list[Any] | None:
        from uring import DmaFile
        if self._file is None:
            try:
                self._file = await DmaFile.open(self.path, "r")
            except FileNotFoundError:
                raise FileNotFoundError(f"FileSource: no such file {self.path!r}") from None
            size = await self._file.size()
            if self.pos > size:
                raise ReactorError(f"FileSource {self.path!r}: the checkpoint resumes at byte "
                                   f"{self.pos} but the file has only {size}; it was truncated "
                                   f"or replaced since")
        while not self._lines:
            if self._eof:
                if self._buf:           # a last line without a newline
                    line, self._buf = self._buf, b""
                    self.pos += len(line)
                    return [line.decode(self.encoding)]
                return None
            data = await self._file.read_at(self._read_pos, self.chunk)
            self._read_pos += len(data)
            if len(data) < self.chunk:
                self._eof = True
            buf = self._buf + data
            cut = buf.rfind(b"\n")
            if cut < 0:
                self._buf = buf
                continue
            self._lines = buf[:cut + 1].splitlines(keepends=True)
            self._lines.reverse()        # pop() from the end: cheap
            self._buf = buf[cut + 1:]
        lines = self._lines
        take = lines[-max_n:]            # a copy: `lines` keeps what is not taken
        del lines[len(lines) - len(take):]
        take.reverse()
        self.pos += sum(map(len, take))
        enc = self.encoding
        return [ln.rstrip(b"\r\n").decode(enc) for ln in take]

    def offset(self) -> int:
        return self.pos

    async def close(self) -> None:
        if self._file is not None:
            await self._file.close()
            self._file = None


class FileSource(Source):
    """Lines of a text file (without their newline); offset = byte position.

    Reads go through the shared ring in ``chunk``-byte reads, never blocking the core.
    """

    max_parallelism = 1

    def __init__(self, path: str | os.PathLike, *, encoding: str = "utf-8",
                 chunk: int = 1 << 20) -> None:
        self.path = os.fsdecode(path)
        self.encoding = encoding
        if chunk <= 0 or chunk % 4096:
            raise ValueError(f"FileSource: chunk must be a positive multiple of 4096, got {chunk}")
        self.chunk = chunk

    def open(self, index: int, parallelism: int, offset: Any) -> SourceReader:
        if offset is not None and (not isinstance(offset, int) or offset < 0):
            raise ReactorError(f"FileSource {self.path!r}: checkpointed offset {offset!r} is not "
                               f"a byte position")
        return _FileReader(self.path, offset or 0, self.encoding, self.chunk)

    def describe(self) -> str:
        return f"FileSource({self.path!r})"


# ------------------------------------------------------------------------------ TCP

class _TcpReader(SourceReader):
    def __init__(self, source: "TcpSource") -> None:
        self.source = source
        self.lines: list[str] = []
        self.closed = False
        self._server: Any = None
        self._wake = curio.Event()
        self.connections = 0

    async def _serve(self) -> None:
        sock = curio.socket.socket(curio.socket.AF_INET, curio.socket.SOCK_STREAM)
        sock.setsockopt(curio.socket.SOL_SOCKET, curio.socket.SO_REUSEADDR, 1)
        sock.bind((self.source.host, self.source.port))
        sock.listen(16)
        self.source.address = sock.getsockname()
        self.source._bound.set()
        async with sock:
            async with curio.TaskGroup() as g:
                while True:
                    client, _ = await sock.accept()
                    self.connections += 1
                    await g.spawn(self._client, client)

    async def _client(self, client: Any) -> None:
        async with client:
            buf = b""
            while True:
                data = await client.recv(65536)
                if not data:
                    break
                buf += data
                *lines, buf = buf.split(b"\n")
                if lines:
                    enc = self.source.encoding
                    self.lines.extend(ln.rstrip(b"\r").decode(enc, "replace") for ln in lines)
                    await self._wake.set()
            if buf:                     # a last line without a newline
                self.lines.append(buf.rstrip(b"\r").decode(self.source.encoding, "replace"))
                await self._wake.set()
            self.connections -= 1
            if self.source.stop_when_idle and self.connections == 0:
                self.closed = True
                await self._wake.set()

    async def read(self, max_n: int) -> list[Any] | None:
        if self._server is None:
            self._server = await curio.spawn(self._serve, daemon=True)
        if not self.lines:
            if self.closed:
                return None
            self._wake.clear()
            try:
                async with curio.ignore_after(0.05):
                    await self._wake.wait()
            except curio.TaskTimeout:
                pass
        out, self.lines = self.lines[:max_n], self.lines[max_n:]
        return out

    async def close(self) -> None:
        if self._server is not None:
            await self._server.cancel()
            self._server = None


class TcpSource(Source):
    """Lines received on a TCP port (curio sockets), from any number of clients.

    **At-most-once**: a socket cannot rewind, so lines received after the last
    committed checkpoint are lost on a crash. ``port=0`` picks a free port
    (read it from ``source.address`` once bound). With ``stop_when_idle`` the
    source ends when the last client disconnects.
    """

    replayable = False
    max_parallelism = 1

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, encoding: str = "utf-8",
                 stop_when_idle: bool = False) -> None:
        self.host, self.port, self.encoding = host, port, encoding
        self.stop_when_idle = stop_when_idle
        self.address: tuple[str, int] | None = None
        self._bound = _ThreadSafeFlag()

    def open(self, index: int, parallelism: int, offset: Any) -> SourceReader:
        return _TcpReader(self)

    async def wait_bound(self, timeout: float = 10.0) -> tuple[str, int]:
        """Wait (from a curio task) until the server socket is bound; returns its address."""
        t0 = time.monotonic()
        while not self._bound.is_set():
            if time.monotonic() - t0 > timeout:
                raise ReactorError("TcpSource: the server did not bind in time")
            await curio.sleep(0.01)
        return self.address  # type: ignore[return-value]


class _ThreadSafeFlag:
    def __init__(self) -> None:
        import threading
        self._e = threading.Event()

    def set(self) -> None:
        self._e.set()

    def is_set(self) -> bool:
        return self._e.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._e.wait(timeout)
