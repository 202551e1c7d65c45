"""Sequential Direct I/O: a write-behind appender and a read-ahead reader.

``DmaStreamWriter`` copies appended bytes into aligned buffers and writes each
full buffer while the caller keeps appending (up to ``write_behind`` writes in
flight). ``flush()`` writes the partial tail padded to the alignment but keeps
it in memory, so later appends rewrite that block; ``close()`` writes the tail
and truncates the file to the exact length written.

``DmaStreamReader`` keeps ``read_ahead`` aligned reads in flight ahead of the
caller and serves ``read(n)`` from them.
"""
from __future__ import annotations

from collections import deque
from typing import Any

from .buffers import DmaBuffer
from .curio_compat import curio
from .dma_file import DmaFile


def _unwrap(exc: BaseException) -> BaseException:
    """The original error of a failed helper task (curio wraps it in TaskError)."""
    if isinstance(exc, curio.TaskError) and exc.__cause__ is not None:
        return exc.__cause__
    return exc


class DmaStreamWriter:
    """Appends to a :class:`DmaFile` from ``start`` (aligned), writing behind the caller.

    The writer does not close the file; ``close()`` finishes its writes and
    truncates the file to ``start + position``.
    """

    def __init__(self, file: DmaFile, *, start: int = 0, buffer_size: int = 1 << 20,
                 write_behind: int = 4) -> None:
        a = file.offset_align
        if buffer_size <= 0 or buffer_size % a:
            raise ValueError(f"buffer_size {buffer_size} must be a positive multiple of the "
                             f"file's alignment {a} ({file.path!r})")
        if start % a:
            raise ValueError(f"start {start} must be a multiple of {a} ({file.path!r})")
        if write_behind < 1:
            raise ValueError(f"write_behind must be >= 1, got {write_behind}")
        self.file = file
        self.start = start
        self.buffer_size = buffer_size
        self.write_behind = write_behind
        self._buf: DmaBuffer | None = None
        self._fill = 0
        self._base = start                 # file offset of the current buffer
        self._writes: deque[Any] = deque()  # tasks writing full buffers, oldest first
        self._error: BaseException | None = None
        self._closed = False

    @property
    def position(self) -> int:
        """Bytes appended so far (the logical length from ``start``)."""
        return self._base - self.start + self._fill

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error
        if self._closed:
            raise ValueError(f"write to closed DmaStreamWriter on {self.file.path!r}")

    async def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; returns its length. Waits only when writes fall behind."""
        self._raise_pending()
        src = memoryview(data).cast("B")
        total = len(src)
        size = self.buffer_size
        while src:
            if self._buf is None:
                self._buf = self.file.ring.buffers.get(size)
            elif self._fill == size:          # left full by an interrupted write()
                await self._write_full()
                continue
            n = min(size - self._fill, len(src))
            self._buf.view[self._fill:self._fill + n] = src[:n]
            self._fill += n
            src = src[n:]
            if self._fill == size:
                await self._write_full()
        return total

    async def reserve(self) -> memoryview:
        """The free space of the current buffer, to fill in place and then :meth:`commit`.

        Never empty (a full buffer is written out first). Spares a copy when the
        caller can produce its bytes straight into DMA memory (the state store
        encodes records there). Bytes put in the view count only once committed,
        and the view is valid until the next await on this writer.
        """
        self._raise_pending()
        if self._buf is not None and self._fill == self.buffer_size:
            await self._write_full()
        if self._buf is None:
            self._buf = self.file.ring.buffers.get(self.buffer_size)
        return self._buf.view[self._fill:]

    async def commit(self, n: int) -> None:
        """Append the first ``n`` bytes put in the view the last :meth:`reserve` returned."""
        self._raise_pending()
        if self._buf is None or not 0 <= n <= self.buffer_size - self._fill:
            raise ValueError(f"commit({n}) does not match the reserved space of the writer "
                             f"on {self.file.path!r}")
        self._fill += n
        if self._fill == self.buffer_size:
            await self._write_full()

    async def _write_full(self) -> None:
        # Wait for room *before* taking the buffer: if the wait fails or is
        # cancelled, the full buffer stays here and flush()/close() write it.
        while len(self._writes) >= self.write_behind:
            await self._join_oldest()
        buf, base = self._buf, self._base
        task = await curio.spawn(self._write_buffer, buf, base)   # never blocks
        self._writes.append(task)
        self._buf, self._fill = None, 0
        self._base += self.buffer_size
        # Let the write task prepare its operation (it is ahead of us in the
        # ready queue) and hand it to the kernel now. A caller that appends in
        # a loop without waiting would otherwise keep it unsubmitted until
        # write_behind buffers are full, then stall while all of them are
        # written: the device and the caller would take turns.
        await curio.sleep(0)
        self.file.ring.submit()

    async def _write_buffer(self, buf: DmaBuffer, base: int) -> None:
        try:
            await self.file.write_at(buf, base, self.buffer_size)
        finally:
            buf.release()

    async def _join_oldest(self) -> None:
        task = self._writes.popleft()
        try:
            await task.join()
        except curio.TaskError as e:
            if self._error is None:
                self._error = _unwrap(e)
            raise self._error from None

    async def _drain(self) -> None:
        while self._writes:
            await self._join_oldest()

    async def flush(self) -> None:
        """Wait for every write; write the partial tail (padded, kept for more appends)."""
        self._raise_pending()
        await self._drain()
        if self._fill and self._buf is not None:
            a = self.file.offset_align
            padded = -(-self._fill // a) * a
            self._buf.view[self._fill:padded] = bytes(padded - self._fill)
            await self.file.write_at(self._buf, self._base, padded)

    async def sync(self) -> None:
        """``flush()`` then ``fdatasync``: everything appended so far is durable."""
        await self.flush()
        await self.file.fdatasync()

    async def close(self) -> None:
        """Flush, truncate the file to the exact length written, release buffers."""
        if self._closed:
            return
        try:
            await self.flush()
            await self.file.truncate(self.start + self.position)
        finally:
            self._closed = True
            for task in self._writes:
                await task.cancel()
            self._writes.clear()
            if self._buf is not None:
                self._buf.release()
                self._buf = None

    async def __aenter__(self) -> "DmaStreamWriter":
        return self

    async def __aexit__(self, exc_type: Any, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:                       # do not mask the original error
            try:
                await self.close()
            except Exception:
                pass


class DmaStreamReader:
    """Reads a :class:`DmaFile` sequentially from ``offset`` with reads in flight ahead."""

    def __init__(self, file: DmaFile, *, offset: int = 0, buffer_size: int = 1 << 20,
                 read_ahead: int = 2, end: int | None = None) -> None:
        a = file.offset_align
        if buffer_size <= 0 or buffer_size % a:
            raise ValueError(f"buffer_size {buffer_size} must be a positive multiple of the "
                             f"file's alignment {a} ({file.path!r})")
        if read_ahead < 1:
            raise ValueError(f"read_ahead must be >= 1, got {read_ahead}")
        self.file = file
        self.buffer_size = buffer_size
        self.read_ahead = read_ahead
        self.end = end
        self._next = offset - offset % a      # file offset of the next chunk to request
        self._skip = offset % a               # bytes to drop from the first chunk
        self._pending: deque[Any] = deque()   # tasks reading chunks, in file order
        self._chunk: DmaBuffer | None = None
        self._view = memoryview(b"")
        self._eof_seen = False                # a short chunk was requested: no more reads
        self._closed = False
        self.position = offset

    async def _read_chunk(self, off: int) -> tuple[DmaBuffer, int]:
        buf = self.file.ring.buffers.get(self.buffer_size)
        try:
            n = await self.file._fill(buf, off, self.buffer_size)
        except BaseException:
            buf.release()
            raise
        return buf, n

    async def _top_up(self) -> None:
        while not self._eof_seen and len(self._pending) < self.read_ahead:
            if self.end is not None and self._next >= self.end:
                self._eof_seen = True
                break
            task = await curio.spawn(self._read_chunk, self._next)
            self._pending.append((self._next, task))
            self._next += self.buffer_size

    async def _advance(self) -> bool:
        """Move to the next chunk; False at end of file."""
        if self._chunk is not None:
            self._chunk.release()
            self._chunk = None
        await self._top_up()
        if not self._pending:
            return False
        chunk_off, task = self._pending.popleft()
        try:
            buf, n = await task.join()
        except curio.TaskError as e:
            raise _unwrap(e) from None
        if n < self.buffer_size:
            self._eof_seen = True
            await self._cancel_pending()      # reads past EOF: not needed
        self._chunk = buf
        stop = n if self.end is None else min(n, max(0, self.end - chunk_off))
        self._view = buf.view[self._skip:max(self._skip, stop)]
        self._skip = 0
        await self._top_up()
        return True

    async def _cancel_pending(self) -> None:
        for _off, task in self._pending:
            await task.cancel()
            if task.exception is None and task.result is not None:
                task.result[0].release()
        self._pending.clear()

    async def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes (all remaining if negative); ``b""`` at end of file."""
        if self._closed:
            raise ValueError(f"read from closed DmaStreamReader on {self.file.path!r}")
        parts = []
        want = n if n >= 0 else None
        while want is None or want > 0:
            if not self._view:
                if not await self._advance() or not self._view:
                    break
            take = len(self._view) if want is None else min(want, len(self._view))
            parts.append(bytes(self._view[:take]))
            self._view = self._view[take:]
            self.position += take
            if want is not None:
                want -= take
        return b"".join(parts)

    async def readexactly(self, n: int) -> bytes:
        """Exactly ``n`` bytes, or ``EOFError`` naming the file and how many were left."""
        data = await self.read(n)
        if len(data) < n:
            raise EOFError(f"{self.file.path!r}: wanted {n} bytes at offset "
                           f"{self.position - len(data)}, only {len(data)} left")
        return data

    async def close(self) -> None:
        """Cancel reads ahead and release buffers (the file stays open)."""
        if self._closed:
            return
        self._closed = True
        await self._cancel_pending()
        if self._chunk is not None:
            self._chunk.release()
            self._chunk = None
        self._view = memoryview(b"")

    async def __aenter__(self) -> "DmaStreamReader":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
