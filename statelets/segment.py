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
from itertools import accumulate
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

    def __init__(self, seqs: Any, kinds: bytes | bytearray, offs: Any, lens: Any,
                 keys: list[bytes] | None = None, *, raw: bytes | bytearray = b"",
                 klens: Any = None) -> None:
        self.seqs, self.kinds, self.offs, self.lens = seqs, kinds, offs, lens
        self._keys, self._raw, self._klens = keys, raw, klens

    @property
    def keys(self) -> list[bytes]:
        """The keys, cut out of the key blob on first use (a segment an open skips
        never pays for it)."""
        if self._keys is None:
            ends = list(accumulate(self._klens or ()))
            raw = self._raw if self._raw.__class__ is bytes else bytes(self._raw)
            self._keys = list(map(raw.__getitem__, map(slice, [0] + ends[:-1], ends)))
            self._raw, self._klens = b"", None
        return self._keys

    def key_blob(self) -> tuple[bytes, Any] | None:
        """The keys still concatenated, with their lengths (None once cut out)."""
        return (self._raw, self._klens) if self._keys is None else None

    def __len__(self) -> int:
        return len(self.kinds)


_PUTS = bytes((record.PUT,)) * 8192


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
        self.klens = array("I")
        self.key_blob = bytearray()     # the keys, concatenated (the hint file's layout)
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

    async def append_records(self, keys: list[bytes], values: list[Any], kinds: bytes | None,
                             start: int, seq0: int, seqs: array | None, limit: int,
                             key_room: int) -> record.Encoded:
        """Append whole records for pairs ``start``... of a measured batch, at most
        ``limit`` bytes of them, encoded straight into the writer's DMA buffer.

        Record j has seq ``seqs[j]`` (or ``seq0 + j``). Returns what was appended;
        ``count`` is 0 when the next record is bigger than ``limit`` and the
        segment is not empty (an empty one takes a record of any size). A record
        that does not fit in what is left of the writer's buffer is encoded on
        its own and copied in (once per buffer).
        """
        base = self.writer.position
        view = await self.writer.reserve()
        enc = record.encode_batch(keys, values, kinds, seq0, seqs, start,
                                  view[:min(len(view), limit)], base, self.key_blob, key_room)
        in_place = True
        if not enc.count:
            size = record.record_size(keys[start], values[start],
                                      kinds[start] if kinds is not None else record.PUT)
            if size > limit and self.size:
                return enc
            enc = record.encode_batch(keys, values, kinds, seq0, seqs, start, bytearray(size),
                                      base, self.key_blob, key_room)
            in_place = False
        n = enc.count
        self.offs.extend(enc.offs)          # before any await: reads find the records
        self.lens.extend(enc.lens)
        self.klens.extend(enc.klens)
        self.seqs.extend(enc.seqs)
        if kinds is None:
            self.kinds += _PUTS[:n] if n <= len(_PUTS) else bytes((record.PUT,)) * n
        else:
            self.kinds += kinds[start:start + n]
        if not self.min_seq:
            self.min_seq = enc.seqs[0]
        if in_place:
            await self.writer.commit(len(enc.data))
        else:
            await self.writer.write(enc.data)
        return enc

    async def append_columns(self, keys: list[bytes], values: list[Any], kinds: bytes,
                             seqs: array) -> tuple[int, array]:
        """Append every pair, record i with seq ``seqs[i]`` (compaction keeps each
        record's own); returns the ordinal of the first and the records' lengths."""
        first = len(self.lens)
        bad, total, key_bytes = record.measure_batch(keys, values, kinds)
        if bad >= 0:
            raise ValueError(f"append_columns: pair {bad} is not a valid record")
        pos = 0
        lens = array("I")
        while pos < len(keys):
            enc = await self.append_records(keys, values, kinds, pos, 0, seqs[pos:], total,
                                            key_bytes)
            lens.extend(enc.lens)
            total -= len(enc.data)
            key_bytes -= enc.key_bytes
            pos += enc.count
        return first, lens

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
        # The columns as they are (no copies: nothing appends to a sealed segment).
        await write_hints(self.file.ring, f"{directory}/{hint_name(self.id)}",
                          Hints(self.seqs, self.kinds, self.offs, self.lens,
                                raw=self.key_blob, klens=self.klens))


async def write_hints(ring: Ring, path: str, hints: Hints) -> None:
    """Write a hint file (temp name, fdatasync, rename): all or nothing.

    The columns go from their arrays straight into the writer's DMA buffers
    (the checksum is taken over them in place first): a 64 MiB segment's
    hints are some 20 MB, and every joined copy of them was fresh memory.
    """
    n = len(hints)
    blob = hints.key_blob()
    if blob is None:
        blob = (b"".join(hints.keys), array("I", map(len, hints.keys)))
    body = (_le(hints.seqs, "Q"), _le(hints.offs, "I"), _le(hints.lens, "I"),
            _le(blob[1], "I"), memoryview(hints.kinds), memoryview(blob[0]))
    crc = 0
    for part in body:
        crc = record.crc32c(part, crc)
    tmp = path + ".tmp"
    f = await DmaFile.open(tmp, "w", ring=ring)
    try:
        async with DmaStreamWriter(f, buffer_size=1 << 20) as w:
            await w.write(_HINT_HEAD.pack(HINT_MAGIC, HINT_VERSION, n, crc))
            for part in body:
                await w.write(part)
        await f.fdatasync()
    finally:
        await f.close()
    await ring.renameat(tmp, path)


def _le(a: Any, typecode: str) -> memoryview:
    """Column ``a`` as little-endian ``typecode`` bytes (the format's), a view
    of ``a`` itself when it already is one."""
    if a.__class__ is not array or a.typecode != typecode or sys.byteorder != "little":
        a = array(typecode, a)
        if sys.byteorder != "little":
            a.byteswap()
    return memoryview(a).cast("B")


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
