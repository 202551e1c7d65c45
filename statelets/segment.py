"""Segment files and their hint files (see FORMAT.md).

A segment is an append-only file of records written through a
``DmaStreamWriter``; once sealed it never changes. Sealing writes a *hint
file*: every record's (seq, kind, offset, length, key) without the values, so
that opening the store rebuilds the index without reading any data.
"""
from __future__ import annotations

import struct
from typing import Iterator

from uring import DmaFile, DmaStreamWriter, Ring

from . import record
from .errors import CorruptionError

HINT_MAGIC = b"RHNT"
HINT_VERSION = 1
_HINT_HEAD = struct.Struct("<4sIII")          # magic, version, count, crc32c(body)
_HINT_ENTRY = struct.Struct("<QIIIB")         # seq, offset, length, klen, kind


def segment_name(seg_id: int) -> str:
    return f"{seg_id:08d}.seg"


def hint_name(seg_id: int) -> str:
    return f"{seg_id:08d}.hint"


def parse_id(name: str) -> int | None:
    stem, _, ext = name.partition(".")
    if ext not in ("seg", "hint") or not stem.isdigit():
        return None
    return int(stem)


class HintEntry(tuple):
    """(seq, kind, offset, length, key) of one record."""

    __slots__ = ()


class ActiveSegment:
    """The segment being appended to: a writer plus the hint entries so far."""

    def __init__(self, seg_id: int, path: str, file: DmaFile, writer: DmaStreamWriter) -> None:
        self.id = seg_id
        self.path = path
        self.file = file
        self.writer = writer
        self.entries: list[tuple[int, int, int, int, bytes]] = []   # seq, kind, off, len, key
        self.min_seq = 0

    @classmethod
    async def create(cls, ring: Ring, directory: str, seg_id: int,
                     buffer_size: int = 1 << 20) -> "ActiveSegment":
        path = f"{directory}/{segment_name(seg_id)}"
        f = await DmaFile.open(path, "x", ring=ring)
        return cls(seg_id, path, f, DmaStreamWriter(f, buffer_size=buffer_size, write_behind=4))

    @property
    def size(self) -> int:
        return self.writer.position

    async def append(self, records: list[tuple[int, int, bytes, bytes]]) -> list[int]:
        """Append (seq, kind, key, value) records; returns the offset of each."""
        offsets = []
        chunk: list[bytes] = []
        chunk_bytes = 0
        pos = self.writer.position
        enc = record.encode
        entries = self.entries
        for seq, kind, key, value in records:
            rec = enc(seq, kind, key, value)
            if not entries:
                self.min_seq = seq
            entries.append((seq, kind, pos, len(rec), key))
            offsets.append(pos)
            pos += len(rec)
            chunk.append(rec)
            chunk_bytes += len(rec)
            if chunk_bytes >= 1 << 20:
                await self.writer.write(b"".join(chunk))
                chunk, chunk_bytes = [], 0
        if chunk:
            await self.writer.write(b"".join(chunk))
        return offsets

    async def flush(self) -> None:
        """Make everything appended readable from the file (padded tail written)."""
        await self.writer.flush()

    async def seal(self, directory: str) -> None:
        """Finish the file (exact length, fdatasync) and write its hint file durably."""
        await self.writer.close()
        await self.file.fdatasync()
        await write_hints(self.file.ring, f"{directory}/{hint_name(self.id)}", self.entries)


async def write_hints(ring: Ring, path: str, entries: list[tuple[int, int, int, int, bytes]]) -> None:
    """Write a hint file (temp name, fdatasync, rename): all or nothing."""
    pack = _HINT_ENTRY.pack
    fixed = b"".join([pack(seq, off, ln, len(key), kind) for seq, kind, off, ln, key in entries])
    body = fixed + b"".join([e[4] for e in entries])
    data = _HINT_HEAD.pack(HINT_MAGIC, HINT_VERSION, len(entries), record.crc32c(body)) + body
    tmp = path + ".tmp"
    f = await DmaFile.open(tmp, "w", ring=ring)
    try:
        async with DmaStreamWriter(f, buffer_size=1 << 20) as w:
            await w.write(data)
        await f.fdatasync()
    finally:
        await f.close()
    await ring.renameat(tmp, path)


async def read_hints(ring: Ring, path: str) -> list[tuple[int, int, int, int, bytes]]:
    """Entries (seq, kind, offset, length, key) of a hint file; CorruptionError if damaged."""
    f = await DmaFile.open(path, "r", ring=ring)
    try:
        size = await f.size()
        data = await f.read_at(0, size)
    finally:
        await f.close()
    return parse_hints(data, path)


def parse_hints(data: bytes, path: str) -> list[tuple[int, int, int, int, bytes]]:
    if len(data) < _HINT_HEAD.size:
        raise CorruptionError(f"{path}: hint file is cut short ({len(data)} bytes)", path=path, offset=0)
    magic, version, count, crc = _HINT_HEAD.unpack_from(data, 0)
    if magic != HINT_MAGIC or version != HINT_VERSION:
        raise CorruptionError(f"{path}: not a hint file (magic {magic!r}, version {version})",
                              path=path, offset=0)
    body = memoryview(data)[_HINT_HEAD.size:]
    if record.crc32c(body) != crc:
        raise CorruptionError(f"{path}: hint file checksum mismatch", path=path, offset=_HINT_HEAD.size)
    fixed_len = count * _HINT_ENTRY.size
    if fixed_len > len(body):
        raise CorruptionError(f"{path}: hint file claims {count} entries but is too short",
                              path=path, offset=_HINT_HEAD.size)
    keys = bytes(body[fixed_len:])
    out = []
    kpos = 0
    append = out.append
    for seq, off, ln, klen, kind in _HINT_ENTRY.iter_unpack(body[:fixed_len]):
        append((seq, kind, off, ln, keys[kpos:kpos + klen]))
        kpos += klen
    if kpos != len(keys):
        raise CorruptionError(f"{path}: hint file keys do not add up", path=path,
                              offset=_HINT_HEAD.size + fixed_len)
    return out


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
