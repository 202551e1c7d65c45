"""The record format of segment files (see FORMAT.md).

``crc32c:u32 | seq:u64 | klen:u32 | vlen:u32 | kind:u8 | key | value``, little
endian. The checksum covers everything after itself. ``seq`` orders records of
one key across segments (compaction moves live records into newer files).
"""
from __future__ import annotations

import struct
from typing import Any

from uring._native import ffi, lib

from .errors import CorruptionError

HEADER = struct.Struct("<IQIIB")
HEADER_SIZE = HEADER.size            # 21 bytes
PUT = 1
DELETE = 2
KINDS = (PUT, DELETE)
_BODY = struct.Struct("<QIIB")
MAX_KEY = 1 << 20                    # sanity bounds for parsing untrusted bytes
MAX_VALUE = 1 << 31


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


def encode_into(out: bytearray, kv: bytes, klens: Any, vlens: Any, kinds: bytes,
                seq0: int, n: int) -> int:
    """Encode ``n`` records (seqs ``seq0``...) into ``out`` (C; see ur_encode_records)."""
    if lib is not None:
        return lib.ur_encode_records(ffi.from_buffer(out), ffi.from_buffer(kv),
                                     ffi.from_buffer("uint32_t[]", klens),
                                     ffi.from_buffer("uint32_t[]", vlens),
                                     ffi.from_buffer(kinds), seq0, n)
    pos = kpos = 0                   # pragma: no cover - without the C extension
    for i in range(n):
        k, v = kv[kpos:kpos + klens[i]], kv[kpos + klens[i]:kpos + klens[i] + vlens[i]]
        kpos += klens[i] + vlens[i]
        rec = encode(seq0 + i, kinds[i], k, v)
        out[pos:pos + len(rec)] = rec
        pos += len(rec)
    return pos


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
