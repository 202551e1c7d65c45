"""Segment files and their hint files (see FORMAT.md).

A segment is an append-only file of records written through a
``DmaStreamWriter``; once sealed it never changes. Beside it a *hint file*
gets every record's (seq, offset, length, kind, key) without the value, one
row per record, so that opening the store rebuilds the index without reading
data. The rows are streamed to ``<id>.hint.tmp`` as the records are encoded
(in C, a batch at a time, both in one pass); sealing appends a trailer and
renames the file. The segment keeps in memory only the records' offsets.
"""
from __future__ import annotations

import struct
import sys
from array import array
from itertools import accumulate
from typing import Any, Iterator

from uring import DmaFile, DmaStreamReader, DmaStreamWriter, Ring

from . import record
from ._native import ffi as _kffi, lib as _klib
from .errors import CorruptionError

HINT_MAGIC = b"RHNT"
HINT_VERSION = 3
_HINT_TRAILER = struct.Struct("<III4s")        # count, crc32c(rows), version, magic
_V2_HEAD = struct.Struct("<4sIII")             # version 2: magic, version, count, crc32c(body)
_HINT_BUFFER = 1 << 20


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


class ActiveSegment:
    """The segment being appended to: its writer, its hint file's writer, and
    the records' offsets (reads find a record by its ordinal)."""

    def __init__(self, seg_id: int, path: str, file: DmaFile, writer: DmaStreamWriter,
                 hint_path: str, hint_file: DmaFile) -> None:
        self.id = seg_id
        self.path = path
        self.file = file
        self.writer = writer
        self.offs = array("I")
        self.min_seq = 0
        #: Bytes a read from the file sees (the rest is still in the writer).
        self.readable = 0
        self.hint_path = hint_path              # the final name; rows go to hint_path + ".tmp"
        self.hint_file = hint_file
        self.hints = DmaStreamWriter(hint_file, buffer_size=_HINT_BUFFER, write_behind=2)
        self._hint_crc = 0
        self._scratch = bytearray()

    @classmethod
    async def create(cls, ring: Ring, directory: str, seg_id: int,
                     buffer_size: int = 1 << 20) -> "ActiveSegment":
        path = f"{directory}/{segment_name(seg_id)}"
        hint_path = f"{directory}/{hint_name(seg_id)}"
        f = await DmaFile.open(path, "x", ring=ring)
        try:
            # A leftover temp file is an unsealed segment's (recovery deletes them).
            h = await DmaFile.open(hint_path + ".tmp", "w", ring=ring)
        except BaseException:
            await f.close()
            raise
        return cls(seg_id, path, f, DmaStreamWriter(f, buffer_size=buffer_size, write_behind=4),
                   hint_path, h)

    @property
    def count(self) -> int:
        """Records appended so far (the next record's ordinal)."""
        return len(self.offs)

    @property
    def size(self) -> int:
        return self.writer.position

    async def append_records(self, keys: list[bytes], values: list[Any], kinds: bytes | None,
                             start: int, seq0: int, seqs: array | None, limit: int
                             ) -> record.Encoded:
        """Append whole records for pairs ``start``... of a measured batch, at most
        ``limit`` bytes of them, encoded straight into the writer's DMA buffer,
        and their hint rows.

        Record j has seq ``seqs[j]`` (or ``seq0 + j``). Returns what was appended;
        ``count`` is 0 when the next record is bigger than ``limit`` and the
        segment is not empty (an empty one takes a record of any size). A record
        that does not fit in what is left of the writer's buffer is encoded on
        its own and copied in (once per buffer).
        """
        base = self.writer.position
        view = await self.writer.reserve()
        out = view[:min(len(view), limit)]
        size = record.record_size(keys[start], values[start],
                                  kinds[start] if kinds is not None else record.PUT)
        in_place = size <= len(out)
        if not in_place:
            if size > limit and self.size:
                return record.Encoded(0, b"", array("I"), array("I"), 0)
            out = bytearray(size)
        # Rows go straight into the hint writer's buffer when they surely fit
        # (a row is never longer than its record), else through a scratch buffer.
        hview = await self.hints.reserve()
        direct = len(hview) >= len(out)
        if not direct:
            if len(self._scratch) < len(out):
                # Sized for a whole buffer at once: growing it step by step
                # faulted in a fresh mapping each time (1.7k faults per 1M keys).
                self._scratch = bytearray(max(len(out), _HINT_BUFFER))
            hview = memoryview(self._scratch)
        enc = record.encode_batch(keys, values, kinds, seq0, seqs, start, out, base, hview)
        n = enc.count
        if not n:                   # unreachable: the first record was made to fit
            raise AssertionError(f"{self.path}: a record that fits was not encoded")
        self.offs.extend(enc.offs)          # before any await: reads find the records
        if not self.min_seq:
            self.min_seq = seqs[0] if seqs is not None else seq0
        rows = hview[:enc.hint_bytes]
        self._hint_crc = record.crc32c(rows, self._hint_crc)
        if direct:
            await self.hints.commit(enc.hint_bytes)
        else:
            await self.hints.write(rows)
        if in_place:
            await self.writer.commit(len(enc.data))
        else:
            await self.writer.write(enc.data)
        return enc

    async def append_columns(self, keys: list[bytes], values: list[Any], kinds: bytes,
                             seqs: array) -> tuple[int, array]:
        """Append every pair, record i with seq ``seqs[i]`` (compaction keeps each
        record's own); returns the ordinal of the first and the records' lengths."""
        first = self.count
        bad, total = record.measure_batch(keys, values, kinds)
        if bad >= 0:
            raise ValueError(f"append_columns: pair {bad} is not a valid record")
        pos = 0
        lens = array("I")
        while pos < len(keys):
            enc = await self.append_records(keys, values, kinds, pos, 0, seqs[pos:], total)
            lens.extend(enc.lens)
            total -= len(enc.data)
            pos += enc.count
        return first, lens

    async def flush(self) -> None:
        """Make everything appended readable from the file (padded tail written)."""
        pos = self.writer.position
        await self.writer.flush()
        self.readable = pos

    async def seal(self) -> None:
        """Finish the file (exact length, fdatasync), then the hint file: its
        trailer, fdatasync, and the rename from the temp name that makes it whole."""
        pos = self.writer.position
        await self.writer.close()
        self.readable = pos
        await self.file.fdatasync()
        try:
            await self.hints.write(_HINT_TRAILER.pack(
                self.count, self._hint_crc, HINT_VERSION, HINT_MAGIC))
            await self.hints.close()
            await self.hint_file.fdatasync()
        finally:
            await self.hint_file.close()
        await self.file.ring.renameat(self.hint_path + ".tmp", self.hint_path)

    async def abandon(self) -> None:
        """Stop without sealing (the store is closing, failed, or a compaction
        was cancelled): buffers released, both files closed. The segment and
        its temp hint file stay on disk for the next open to delete."""
        for w in (self.writer, self.hints):
            try:
                await w.close()
            except Exception:
                pass
        await self.hint_file.close()
        await self.file.close()


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


def parse_hints(data: bytes | bytearray, path: str) -> Hints:
    """The columns of a hint file's bytes (version 3, or version 2 as older
    releases wrote it); CorruptionError naming ``path`` if damaged."""
    t = len(data) - _HINT_TRAILER.size
    if t >= 0:
        n, crc, version, magic = _HINT_TRAILER.unpack_from(data, t)
        if magic == HINT_MAGIC and version == HINT_VERSION:
            return _parse_rows(memoryview(data)[:t], n, crc, path)
    if data[:4] == HINT_MAGIC:
        return _parse_v2(data, path)
    raise CorruptionError(f"{path}: not a hint file (no {HINT_MAGIC!r} trailer of version "
                          f"{HINT_VERSION}); it may be cut short", path=path, offset=max(t, 0))


def _parse_rows(rows: memoryview, n: int, crc: int, path: str) -> Hints:
    if record.crc32c(rows) != crc:
        raise CorruptionError(f"{path}: hint file checksum mismatch", path=path, offset=0)
    key_bytes = len(rows) - record.HINT_ROW_SIZE * n
    if key_bytes < 0:
        raise CorruptionError(f"{path}: hint file claims {n} rows but is too short",
                              path=path, offset=0)
    seqs, offs, lens, klens = (array("Q", bytes(8 * n)), array("I", bytes(4 * n)),
                               array("I", bytes(4 * n)), array("I", bytes(4 * n)))
    kinds, raw = bytearray(n), bytearray(key_bytes)
    if _klib is not None:
        bad = _klib.kx_hint_columns(
            _kffi.from_buffer(rows), len(rows), n, _kffi.from_buffer("uint64_t[]", seqs),
            _kffi.from_buffer("uint32_t[]", offs), _kffi.from_buffer("uint32_t[]", lens),
            _kffi.from_buffer("uint32_t[]", klens), _kffi.from_buffer(kinds),
            _kffi.from_buffer(raw), key_bytes)
    else:                            # pragma: no cover - without the C extension
        bad, p, kp = -1, 0, 0
        for j in range(n):
            if len(rows) - p < record.HINT_ROW_SIZE:
                bad = p
                break
            seqs[j], offs[j], lens[j], klens[j], kinds[j] = record.HINT_ROW.unpack_from(rows, p)
            kl = klens[j]
            q = p + record.HINT_ROW_SIZE
            if len(rows) - q < kl or key_bytes - kp < kl:
                bad = p
                break
            raw[kp:kp + kl] = rows[q:q + kl]
            kp += kl
            p = q + kl
        if bad < 0 and (p != len(rows) or kp != key_bytes):
            bad = p
    if bad >= 0:
        raise CorruptionError(f"{path}: hint rows do not add up (at byte {bad} of "
                              f"{len(rows)}, {n} rows)", path=path, offset=bad)
    if sys.byteorder != "little":    # pragma: no cover - the format is little endian
        for col in (seqs, offs, lens, klens):
            col.byteswap()
    return Hints(seqs, bytes(kinds), offs, lens, raw=raw, klens=klens)


def _parse_v2(data: bytes | bytearray, path: str) -> Hints:
    """Version 2: a head, then the columns one after the other."""
    if len(data) < _V2_HEAD.size:
        raise CorruptionError(f"{path}: hint file is cut short ({len(data)} bytes)", path=path, offset=0)
    magic, version, n, crc = _V2_HEAD.unpack_from(data, 0)
    if magic != HINT_MAGIC or version != 2:
        raise CorruptionError(f"{path}: not a hint file (magic {magic!r}, version {version})",
                              path=path, offset=0)
    body = memoryview(data)[_V2_HEAD.size:]
    if record.crc32c(body) != crc:
        raise CorruptionError(f"{path}: hint file checksum mismatch", path=path,
                              offset=_V2_HEAD.size)
    if n * 21 > len(body):
        raise CorruptionError(f"{path}: hint file claims {n} entries but is too short",
                              path=path, offset=_V2_HEAD.size)
    p = 0
    seqs = _col("Q", body[p:p + 8 * n]); p += 8 * n
    offs = _col("I", body[p:p + 4 * n]); p += 4 * n
    lens = _col("I", body[p:p + 4 * n]); p += 4 * n
    klens = _col("I", body[p:p + 4 * n]); p += 4 * n
    kinds = bytes(body[p:p + n]); p += n
    raw = bytes(body[p:])
    if sum(klens) != len(raw):
        raise CorruptionError(f"{path}: hint file keys do not add up", path=path,
                              offset=_V2_HEAD.size + p)
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
