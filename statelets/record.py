"""The record format of segment files (see FORMAT.md).

``crc32c:u32 | seq:u64 | klen:u32 | vlen:u32 | kind:u8 | key | value``, little
endian. The checksum covers everything after itself. ``seq`` orders records of
one key across segments (compaction moves live records into newer files).
"""
from __future__ import annotations

import struct
from array import array
from typing import Any

from uring._native import ffi, lib

from ._native import ffi as _kffi, lib as _klib
from .errors import CorruptionError

HEADER = struct.Struct("<IQIIB")
HEADER_SIZE = HEADER.size            # 21 bytes
PUT = 1
DELETE = 2
KINDS = (PUT, DELETE)
_BODY = struct.Struct("<QIIB")
MAX_KEY = 1 << 20                    # sanity bounds for parsing untrusted bytes
MAX_VALUE = 1 << 31
_kout = _kffi.new("uint64_t[2]") if _kffi is not None else None


if lib is not None:
    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        """CRC-32C of ``data`` (continuing from ``crc``)."""
        return lib.ur_crc32c(crc, ffi.from_buffer(data), len(data))
else:  # pragma: no cover - only without the C extension
    _TABLE = []
    for _i in range(256):
        _c = _i
        for _ in range(8):
            _c = (_c >> 1) ^ (0x82F63B78 if _c & 1 else 0)
        _TABLE.append(_c)

    def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
        c = crc ^ 0xFFFFFFFF
        for b in bytes(data):
            c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
        return c ^ 0xFFFFFFFF


def measure_batch(keys: list[bytes], values: list[Any], kinds: bytes | None = None
                  ) -> tuple[int, int]:
    """Check a batch of pairs before anything is written.

    Returns ``(bad, record_bytes)``: ``bad`` is -1 when every key is bytes of
    at most ``MAX_KEY`` and every value (a tombstone's, where ``kinds`` says
    DELETE, is ignored) bytes of at most ``MAX_VALUE``, else the index of the
    first pair that is not; ``record_bytes`` is the records' total size.
    """
    n = len(keys)
    if _klib is not None:
        _kout[0] = 0
        bad = _klib.kx_measure(id(keys), id(values), n, kinds if kinds is not None else _kffi.NULL,
                               MAX_KEY, MAX_VALUE, _kout)
        return bad, _kout[0]
    rec = 0                          # pragma: no cover - without the C extension
    for i, (k, v) in enumerate(zip(keys, values)):
        delete = kinds is not None and kinds[i] == DELETE
        if k.__class__ is not bytes or len(k) > MAX_KEY or not delete and (
                v.__class__ is not bytes or len(v) > MAX_VALUE):
            return i, rec
        rec += HEADER_SIZE + len(k) + (0 if delete else len(v))
    return -1, rec


HINT_ROW = struct.Struct("<QIIIB")   # a hint row's head (FORMAT.md): seq, offset, length, klen, kind
HINT_ROW_SIZE = HINT_ROW.size        # 21 bytes: never more than its record's header


class Encoded:
    """Records encoded from a batch: ``count`` pairs, their bytes, lengths,
    file offsets and hint rows (``hint_bytes`` of them, in the hint buffer)."""

    __slots__ = ("count", "data", "lens", "offs", "hint_bytes")

    def __init__(self, count: int, data: Any, lens: array, offs: array, hint_bytes: int) -> None:
        self.count, self.data, self.lens, self.offs = count, data, lens, offs
        self.hint_bytes = hint_bytes


def encode_batch(keys: list[bytes], values: list[Any], kinds: bytes | None, seq0: int,
                 seqs: array | None, start: int, out: Any, base: int, hint: Any) -> Encoded:
    """Encode pairs ``start``... of a batch :func:`measure_batch` accepted into the
    writable buffer ``out``, as many whole records as fit, and their hint rows
    into the writable buffer ``hint``.

    Record j has seq ``seqs[j]`` (or ``seq0 + j``); a pair whose kind is DELETE
    becomes a tombstone. ``offs`` are file offsets from ``base``. A hint row is
    never longer than its record, so a ``hint`` as long as ``out`` never stops
    the batch early. When not even the first record fits, ``count`` is 0;
    :func:`record_size` says how much it needs.
    """
    cap = len(out)
    m = min(len(keys) - start, cap // HEADER_SIZE)
    if m <= 0:
        return Encoded(0, b"", array("I"), array("I"), 0)
    lens, offs = array("I", bytes(4 * m)), array("I", bytes(4 * m))
    if _klib is not None:
        count = _klib.kx_encode(id(keys), id(values), start, m,
                                kinds if kinds is not None else _kffi.NULL, seq0,
                                _kffi.from_buffer("uint64_t[]", seqs) if seqs is not None
                                else _kffi.NULL, _kffi.from_buffer(out), cap, base,
                                _kffi.from_buffer("uint32_t[]", lens),
                                _kffi.from_buffer("uint32_t[]", offs),
                                _kffi.from_buffer(hint), len(hint), _kout)
        used, hint_bytes = _kout[0], _kout[1]
    else:                            # pragma: no cover - without the C extension
        count = used = hint_bytes = 0
        for j in range(m):
            i = start + j
            kind = DELETE if kinds is not None and kinds[i] == DELETE else PUT
            seq = seqs[j] if seqs is not None else seq0 + j
            rec = encode(seq, kind, keys[i], b"" if kind == DELETE else values[i])
            row = HINT_ROW.pack(seq, base + used, len(rec), len(keys[i]), kind) + keys[i]
            if used + len(rec) > cap or hint_bytes + len(row) > len(hint):
                break
            out[used:used + len(rec)] = rec
            hint[hint_bytes:hint_bytes + len(row)] = row
            lens[j], offs[j] = len(rec), base + used
            used += len(rec)
            hint_bytes += len(row)
            count += 1
    del lens[count:], offs[count:]
    return Encoded(count, memoryview(out)[:used], lens, offs, hint_bytes)


def record_size(key: bytes, value: Any, kind: int = PUT) -> int:
    """Bytes of the record for one pair."""
    return HEADER_SIZE + len(key) + (0 if kind == DELETE else len(value))


_check_record = lib.ur_check_record if lib is not None else None


def value_of(data: bytes, key: bytes, *, path: str, offset: int) -> bytes:
    """The value of the record ``data`` (exactly one record) read for ``key``.

    A record that fails its checksum, has a damaged header, holds another key
    or is a tombstone (the index points only at puts) raises
    :class:`CorruptionError` naming ``path`` and ``offset``. One C call checks it all where the extension is
    built; otherwise :func:`decode_at` does the same in Python.
    """
    if _check_record is not None:
        kind = _check_record(data, len(data), key, len(key))
        if kind == PUT:
            return data[HEADER_SIZE + len(key):]
    # Damaged (decode_at names how), or intact but not the put of ``key``.
    rec = decode_at(data, 0, path=path, base=offset)
    if rec is None or rec[1] != PUT or rec[2] != key or rec[4] != len(data):
        raise CorruptionError(f"{path}: record at offset {offset} is not the one the index "
                              f"expects (key {key!r})", path=path, offset=offset)
    return rec[3]


def encode(seq: int, kind: int, key: bytes, value: bytes) -> bytes:
    """One record as bytes."""
    body = _BODY.pack(seq, len(key), len(value), kind) + key + value
    return struct.pack("<I", crc32c(body)) + body


def decode_at(buf: bytes | memoryview, pos: int, *, path: str, base: int = 0
              ) -> tuple[int, int, bytes, bytes, int] | None:
    """Parse the record at ``buf[pos:]``: (seq, kind, key, value, size), or None at a clean end.

    A record that is cut short or fails its checksum raises
    :class:`CorruptionError` naming ``path`` and the file offset ``base + pos``;
    an all-zero header (the padded tail of a segment) is a clean end.
    """
    if len(buf) - pos < HEADER_SIZE:
        if any(buf[pos:]):
            raise CorruptionError(f"{path}: record at offset {base + pos} is cut short",
                                  path=path, offset=base + pos)
        return None
    crc, seq, klen, vlen, kind = HEADER.unpack_from(buf, pos)
    if crc == 0 and seq == 0 and klen == 0 and vlen == 0 and kind == 0:
        return None
    end = pos + HEADER_SIZE + klen + vlen
    if kind not in KINDS or klen > MAX_KEY or vlen > MAX_VALUE or end > len(buf):
        raise CorruptionError(f"{path}: bad record header at offset {base + pos} "
                              f"(kind {kind}, key {klen} bytes, value {vlen} bytes)",
                              path=path, offset=base + pos)
    if crc32c(memoryview(buf)[pos + 4:end]) != crc:
        raise CorruptionError(f"{path}: checksum mismatch in the record at offset {base + pos}",
                              path=path, offset=base + pos)
    k0 = pos + HEADER_SIZE
    return seq, kind, bytes(buf[k0:k0 + klen]), bytes(buf[k0 + klen:end]), end - pos
