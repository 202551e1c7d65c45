"""Sinks: where results go, and how they take part in epoch commits.

A :class:`Sink` is a description; :meth:`Sink.open` makes a
:class:`SinkWriter` for one parallel instance. Writers see the protocol of an
epoch: ``write`` batches, then ``prepare(epoch)`` when the epoch's barrier has
arrived (make its output durable but not yet visible; return a JSON state that
the checkpoint records), then ``commit(epoch, state)`` once the checkpoint is
committed (make it visible; idempotent, as a restore repeats it for the last
committed epoch). A job that fails before a commit never shows that epoch's
output: transactional sinks are exactly-once.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, TextIO

from .errors import ReactorError

__all__ = ["Sink", "SinkWriter", "PrintSink", "CollectSink", "FileSink", "NullSink"]


class SinkWriter:
    """One instance's writer; override what the sink needs."""

    async def write(self, values: list[Any], times: list[Any] | None) -> None:
        raise NotImplementedError

    async def prepare(self, epoch: int) -> Any:
        """Make the epoch's output durable (not visible); return a JSON state."""
        return None

    async def commit(self, epoch: int, state: Any) -> None:
        """Make the epoch's output visible (idempotent)."""

    async def close(self) -> None:
        """Release resources (output not committed is discarded)."""


class Sink:
    """Base class of sinks."""

    max_parallelism: int | None = None

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        """A writer for instance ``index``; ``state`` is what its ``prepare`` returned for the
        last committed epoch (None when starting afresh)."""
        raise NotImplementedError


# ------------------------------------------------------------------------------ print

class _PrintWriter(SinkWriter):
    def __init__(self, sink: "PrintSink", index: int, parallelism: int) -> None:
        self.sink = sink
        self.prefix = f"{index}> " if parallelism > 1 else ""
        self.pending: list[str] = []

    async def write(self, values: list[Any], times: list[Any] | None) -> None:
        fmt = self.sink.format
        lines = [self.prefix + fmt(v) for v in values]
        if self.sink.on_commit:
            self.pending.extend(lines)
        else:
            self.sink._print(lines)

    async def prepare(self, epoch: int) -> Any:
        lines, self.pending = self.pending, []
        self._ready = lines
        return None

    async def commit(self, epoch: int, state: Any) -> None:
        lines = getattr(self, "_ready", None)
        if lines:
            self.sink._print(lines)
            self._ready = []


class PrintSink(Sink):
    """Prints each element (``format(element)``, default ``str``) to ``file`` (stdout).

    With ``on_commit=True`` lines are printed only once their epoch commits
    (exactly-once within a process); by default they print as they arrive.
    """

    def __init__(self, format: Callable[[Any], str] = str, *, file: TextIO | None = None,
                 on_commit: bool = False) -> None:
        if not callable(format):
            raise TypeError(f"PrintSink(format=...) must be callable, got {format!r}")
        self.format = format
        self.file = file
        self.on_commit = on_commit

    def _print(self, lines: list[str]) -> None:
        f = self.file or sys.stdout
        f.write("\n".join(lines) + "\n")
        f.flush()

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        return _PrintWriter(self, index, parallelism)


class NullSink(Sink):
    """Discards elements, counting them (``sink.count``): for benchmarks."""

    def __init__(self) -> None:
        self.count = 0

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        sink = self

        class _Null(SinkWriter):
            async def write(self, values: list[Any], times: list[Any] | None) -> None:
                sink.count += len(values)
        return _Null()


# ---------------------------------------------------------------------------- collect

class _CollectWriter(SinkWriter):
    def __init__(self, sink: "CollectSink") -> None:
        self.sink = sink
        self.pending: list[Any] = []
        self.ready: dict[int, list[Any]] = {}

    async def write(self, values: list[Any], times: list[Any] | None) -> None:
        if self.sink.with_times:
            self.pending.extend(zip(values, times if times is not None else [None] * len(values)))
        else:
            self.pending.extend(values)

    async def prepare(self, epoch: int) -> Any:
        self.ready[epoch], self.pending = self.pending, []
        return None

    async def commit(self, epoch: int, state: Any) -> None:
        for e in sorted(k for k in self.ready if k <= epoch):
            self.sink.results.extend(self.ready.pop(e))

    async def close(self) -> None:
        self.pending.clear()
        self.ready.clear()


class CollectSink(Sink):
    """Collects committed elements into ``results`` (a list): for tests and notebooks.

    Only epochs that committed appear, so after a job restart ``results`` holds
    each element exactly once. With ``with_times=True`` each result is a
    ``(value, timestamp)`` pair.
    """

    def __init__(self, *, with_times: bool = False) -> None:
        self.results: list[Any] = []
        self.with_times = with_times

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        return _CollectWriter(self)


# ------------------------------------------------------------------------------- files

class _FileWriter(SinkWriter):
    def __init__(self, sink: "FileSink", index: int, state: Any) -> None:
        self.sink = sink
        self.index = index
        self.lines: list[str] = []
        self.nbytes = 0
        self.restored = state
        self._prepared: dict[int, str] = {}

    def _names(self, epoch: int) -> tuple[str, str]:
        d, p = self.sink.directory, self.sink.prefix
        final = os.path.join(d, f"{p}-{self.index}-{epoch:08d}{self.sink.suffix}")
        return final + ".inprogress", final

    async def write(self, values: list[Any], times: list[Any] | None) -> None:
        fmt = self.sink.format
        self.lines.extend(fmt(v) for v in values)

    async def prepare(self, epoch: int) -> Any:
        from uring import DmaFile, DmaStreamWriter
        lines, self.lines = self.lines, []
        if not lines:
            return None
        from . import scheduler as _sched
        tmp, final = self._names(epoch)
        enc = self.sink.encoding
        f = await DmaFile.open(tmp, "w")
        try:
            async with DmaStreamWriter(f) as w:
                # In chunks, yielding between them: an epoch's output may be large.
                for i in range(0, len(lines), 16384):
                    await w.write(("\n".join(lines[i:i + 16384]) + "\n").encode(enc))
                    await _sched.maybe_yield()
            await f.fdatasync()
        finally:
            await f.close()
        self._prepared[epoch] = tmp
        return {"epoch": epoch, "tmp": os.path.basename(tmp), "final": os.path.basename(final)}

    async def commit(self, epoch: int, state: Any) -> None:
        from uring import Ring
        if not state:
            return
        d = self.sink.directory
        tmp, final = os.path.join(d, state["tmp"]), os.path.join(d, state["final"])
        ring = Ring.current()
        try:
            await ring.renameat(tmp, final)
        except FileNotFoundError:
            if not os.path.exists(final):
                raise ReactorError(f"FileSink: committed output {tmp!r} of epoch {epoch} is "
                                   f"missing; was the output directory changed?") from None
        self._prepared.pop(epoch, None)
        await _fsync_dir(d)

    async def close(self) -> None:
        self.lines.clear()


async def _fsync_dir(path: str) -> None:
    from uring import Ring
    ring = Ring.current()
    fd = await ring.openat(path, os.O_RDONLY | os.O_DIRECTORY, 0)
    try:
        await ring.fsync(fd)
    finally:
        await ring.close(fd)


class FileSink(Sink):
    """Writes elements as lines (``format``, default JSON) to files in ``directory``,
    exactly-once: each epoch's lines go to ``PREFIX-INSTANCE-EPOCH.txt.inprogress``, made
    durable at the barrier and renamed to ``PREFIX-INSTANCE-EPOCH.txt`` once the epoch commits.

    Readers should ignore ``*.inprogress`` (left-overs of an epoch that never
    committed are removed on the next run). Read the committed output in
    order with :meth:`read_committed`. The sink owns the ``PREFIX-*`` files of
    its directory: a run restored from epoch N removes those of later epochs,
    and a run without state starts the output over.
    """

    def __init__(self, directory: str | os.PathLike, *, prefix: str = "part",
                 format: Callable[[Any], str] | None = None, suffix: str = ".txt",
                 encoding: str = "utf-8") -> None:
        self.directory = os.fsdecode(directory)
        if "/" in prefix or not prefix:
            raise ValueError(f"FileSink: prefix must be a non-empty file name part, got {prefix!r}")
        self.prefix = prefix
        self.format = format or (lambda v: json.dumps(v, separators=(",", ":"), default=str))
        if not callable(self.format):
            raise TypeError(f"FileSink(format=...) must be callable, got {format!r}")
        self.suffix = suffix
        self.encoding = encoding

    def open(self, index: int, parallelism: int, state: Any) -> SinkWriter:
        os.makedirs(self.directory, exist_ok=True)
        return _FileWriter(self, index, state)

    def cleanup(self, committed: list[Any], epoch: int | None = None) -> None:
        """Called on start: remove ``.inprogress`` files no committed state names, and the
        committed files of epochs after ``epoch`` (the one restored; None: a fresh start)
        — output of an abandoned history, which the run will produce again."""
        keep = {s["tmp"] for s in committed if s}
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return
        p, sfx = self.prefix + "-", self.suffix
        for n in names:
            if not n.startswith(p):
                continue
            if n.endswith(".inprogress"):
                if n not in keep:
                    os.unlink(os.path.join(self.directory, n))
            elif n.endswith(sfx):
                try:
                    file_epoch = int(n[len(p):-len(sfx)].split("-")[1])
                except (ValueError, IndexError):
                    continue
                if file_epoch > (epoch or 0):
                    os.unlink(os.path.join(self.directory, n))

    def committed_files(self) -> list[str]:
        """Committed output files, in epoch order (then instance)."""
        out = []
        p, s = self.prefix + "-", self.suffix
        for n in os.listdir(self.directory) if os.path.isdir(self.directory) else []:
            if n.startswith(p) and n.endswith(s):
                try:
                    idx, epoch = n[len(p):-len(s)].split("-")
                    out.append((int(epoch), int(idx), os.path.join(self.directory, n)))
                except ValueError:
                    continue
        return [path for _, _, path in sorted(out)]

    def read_committed(self) -> list[str]:
        """All committed lines, in epoch order (blocking file reads: call outside the job)."""
        lines: list[str] = []
        for path in self.committed_files():
            with open(path, encoding=self.encoding) as f:
                lines.extend(f.read().splitlines())
        return lines
