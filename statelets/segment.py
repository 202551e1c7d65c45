"""Segment files and their hint files (see FORMAT.md).

A segment is an append-only file of records written through a
``DmaStreamWriter``; once sealed it never changes. Sealing writes a *hint
file*: every record's (seq, kind, offset, length, key) without the values, in
columns, so that opening the store rebuilds the index without reading data.
Records are encoded in C a batch at a time; Python only builds columns.
"""
from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate, chain, repeat
from operator import add
from typing import Any, Iterator

from uring import DmaFile, DmaStreamReader, DmaStreamWriter, Ring

from . import record
from .errors import CorruptionError

HINT_MAGIC = b"RHNT"
HINT_VERSION = 2
_HINT_HEAD = struct.Struct("<4sIII")          # magic, version, count, crc32c(body)


def segment_name(seg_id: int) -> str:
    return f"{seg_id:08d}.seg"


def hint_name(seg_id: int) -> str:
    return f"{seg_id:08d}.hint"


def parse_id(name: str) -> int | None:
    stem, _, ext = name.partition(".")
    if ext not in ("seg", "hint") or not stem.isdigit():
        return None
    return int(stem)


class Hints:
    """A segment's hint columns: seqs, kinds, offsets, lengths, keys (parallel)."""

    __slots__ = ("seqs", "kinds", "offs", "lens", "_keys", "_raw", "_klens")

    def __init__(self, seqs: Any, kinds: bytes, offs: Any, lens: Any,
                 keys: list[bytes] | None = None, *, raw: bytes = b"",
                 klens: Any = None) -> None:
        self.seqs, self.kinds, self.offs, self.lens = seqs, kinds, offs, lens
        self._keys, self._raw, self._klens = keys, raw, klens

    @property
    def keys(self) -> list[bytes]:
        """The keys, cut out of the key blob on first use (a segment an open skips
        never pays for it)."""
        if self._keys is None:
            ends = list(accumulate(self._klens or ()))
            self._keys = list(map(self._raw.__getitem__, map(slice, [0] + ends[:-1], ends)))
            self._raw, self._klens = b"", None
        return self._keys

    def key_blob(self) -> tuple[bytes, Any] | None:
        """The keys still concatenated, with their lengths (None once cut out)."""
        return (self._raw, self._klens) if self._keys is None else None

    def __len__(self) -> int:
        return len(self.kinds)


class ActiveSegment:
    """The segment being appended to: a writer plus the hint columns so far."""

    def __init__(self, seg_id: int, path: str, file: DmaFile, writer: DmaStreamWriter) -> None:
        self.id = seg_id
        self.path = path
        self.file = file
        self.writer = writer
        self.seqs = array("Q")
        self.offs = array("I")
        self.lens = array("I")
        self.kinds = bytearray()
        self.keys: list[bytes] = []
        self.min_seq = 0
        #: Bytes a read from the file sees (the rest is still in the writer).
        self.readable = 0

    @classmethod
    async def create(cls, ring: Ring, directory: str, seg_id: int,
                     buffer_size: int = 1 << 20) -> "ActiveSegment":
        path = f"{directory}/{segment_name(seg_id)}"
        f = await DmaFile.open(path, "x", ring=ring)
        return cls(seg_id, path, f, DmaStreamWriter(f, buffer_size=buffer_size, write_behind=4))

    @property
    def size(self) -> int:
        return self.writer.position

    async def append_columns(self, keys: list[bytes], values: list[bytes], kinds: bytes,
                             seqs: Any, *, klens: array | None = None,
                             vlens: array | None = None) -> tuple[list[int], list[int]]:
        """Append records (``seqs`` an int start or a sequence); returns offsets and lengths.

        ``klens``/``vlens``: the keys' and values' lengths when the caller has them.
        """
        n = len(keys)
        if not n:
            return [], []
        if isinstance(seqs, int):
            seqs = range(seqs, seqs + n)
        if klens is None:
            klens = array("I", map(len, keys))
        if vlens is None:
            vlens = array("I", map(len, values))
        lens = list(map(add, map(add, klens, vlens), repeat(record.HEADER_SIZE, n)))
        offs = list(accumulate(lens, initial=self.writer.position))[:-1]
        out = bytearray(sum(lens))
        kv = b"".join(chain.from_iterable(zip(keys, values)))
        if isinstance(seqs, range) and seqs.step == 1:
            record.encode_into(out, kv, klens, vlens, kinds, seqs.start, n)
        else:                       # compaction keeps each record's own seq
            out[:] = b"".join(map(record.encode, seqs, kinds, keys, values))
        await self.writer.write(out)
        if not self.seqs:
            self.min_seq = seqs[0]
        self.seqs.extend(seqs)
        self.offs.extend(offs)
        self.lens.extend(lens)
        self.kinds += kinds
        self.keys.extend(keys)
        return offs, lens

    async def flush(self) -> None:
        """Make everything appended readable from the file (padded tail written)."""
        pos = self.writer.position
        await self.writer.flush()
        self.readable = pos

    async def seal(self, directory: str) -> None:
        """Finish the file (exact length, fdatasync) and write its hint file durably."""
        pos = self.writer.position
        await self.writer.close()
        self.readable = pos
        await self.file.fdatasync()
        await write_hints(self.file.ring, f"{directory}/{hint_name(self.id)}",
                          Hints(self.seqs, bytes(self.kinds), self.offs, self.lens, self.keys))


async def write_hints(ring: Ring, path: str, hints: Hints) -> None:
    """Write a hint file (temp name, fdatasync, rename): all or nothing."""
    n = len(hints)
    klens = array("I", map(len, hints.keys))
    body = b"".join((_le(array("Q", hints.seqs)), _le(array("I", hints.offs)),
                     _le(array("I", hints.lens)), _le(klens), bytes(hints.kinds),
                     b"".join(hints.keys)))
    data = _HINT_HEAD.pack(HINT_MAGIC, HINT_VERSION, n, record.crc32c(body)) + body
    tmp = path + ".tmp"
    f = await DmaFile.open(tmp, "w", ring=ring)
    try:
        async with DmaStreamWriter(f, buffer_size=1 << 20) as w:
            await w.write(data)
        await f.fdatasync()
    finally:
        await f.close()
    await ring.renameat(tmp, path)


def _le(a: array) -> bytes:
    if sys.byteorder != "little":   # the format is little endian
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _col(typecode: str, raw: memoryview) -> array:
    a = array(typecode)
    a.frombytes(raw)
    if sys.byteorder != "little":
        a.byteswap()
    return a


async def read_hints(ring: Ring, path: str) -> Hints:
    """The hint columns of a hint file; CorruptionError if damaged."""
    f = await DmaFile.open(path, "r", ring=ring)
    try:
        size = await f.size()
        if size <= 1 << 20:
            data = await f.read_at(0, size)
        else:
            # Pooled 1 MiB buffers with reads in flight: no fresh multi-MiB DMA
            # allocation (and its page faults) per hint file.
            reader = DmaStreamReader(f, buffer_size=1 << 20, read_ahead=4, end=size)
            try:
                data = await reader.read()
            finally:
                await reader.close()
    finally:
        await f.close()
    return parse_hints(data, path)


def parse_hints(data: bytes, path: str) -> Hints:
    if len(data) < _HINT_HEAD.size:
        raise CorruptionError(f"{path}: hint file is cut short ({len(data)} bytes)", path=path, offset=0)
    magic, version, n, crc = _HINT_HEAD.unpack_from(data, 0)
    if magic != HINT_MAGIC or version != HINT_VERSION:
        raise CorruptionError(f"{path}: not a hint file (magic {magic!r}, version {version})",
                              path=path, offset=0)
    body = memoryview(data)[_HINT_HEAD.size:]
    if record.crc32c(body) != crc:
        raise CorruptionError(f"{path}: hint file checksum mismatch", path=path,
                              offset=_HINT_HEAD.size)
    if n * 21 > len(body):
        raise CorruptionError(f"{path}: hint file claims {n} entries but is too short",
                              path=path, offset=_HINT_HEAD.size)
    p = 0
    seqs = _col("Q", body[p:p + 8 * n]); p += 8 * n
    offs = _col("I", body[p:p + 4 * n]); p += 4 * n
    lens = _col("I", body[p:p + 4 * n]); p += 4 * n
    klens = _col("I", body[p:p + 4 * n]); p += 4 * n
    kinds = bytes(body[p:p + n]); p += n
    raw = bytes(body[p:])
    if sum(klens) != len(raw):
        raise CorruptionError(f"{path}: hint file keys do not add up", path=path,
                              offset=_HINT_HEAD.size + p)
    return Hints(seqs, kinds, offs, lens, raw=raw, klens=klens)


def scan_records(data: bytes, path: str) -> Iterator[tuple[int, int, int, bytes, bytes, int]]:
    """Records of a segment's bytes: (offset, seq, kind, key, value, size).

    Stops at a clean end (zero padding); raises CorruptionError at a damaged
    record, naming the file and offset.
    """
    pos = 0
    while pos < len(data):
        rec = record.decode_at(data, pos, path=path)
        if rec is None:
            return
        seq, kind, key, value, size = rec
        yield pos, seq, kind, key, value, size
        pos += size


async def read_segment(ring: Ring, path: str) -> bytes:
    """The whole content of a sealed segment."""
    f = await DmaFile.open(path, "r", ring=ring)
    try:
        return await f.read_at(0, await f.size())
    finally:
        await f.close()
