"""The store's key index: every live key → the record holding its value.

Record ids are ints ``segment << 64 | ordinal << 32 | record length``
(:func:`rids`): offsets live in per-segment arrays, read only by point reads,
and the length rides along so that counting an overwritten record's bytes as
dead needs no second random memory access. Two implementations with one
interface:

* :class:`CKeyIndex` (the default): a C hash table with the keys in one arena
  (``statelets/_index_build.py``). Batches cross into C once and overlap their
  cache misses; a key costs about 40 bytes instead of about 110.
* :class:`DictKeyIndex`: a CPython dict, used where the extension is not built
  (or not on CPython). ``IMPLEMENTATION`` says which one is in use and why.

A batch call (:meth:`apply`) applies the records of one segment in order and
returns the bytes it made dead, per segment: the store's compaction accounting
needs exactly that, and in C it costs no second pass.
"""
from __future__ import annotations

import logging
import sys
from array import array
from collections.abc import Sequence
from itertools import compress, filterfalse, repeat
from operator import add, and_, eq, not_, rshift
from typing import Any

from . import record

from ._native import IMPORT_ERROR, ffi, lib

log = logging.getLogger("statelets.keyindex")

RID_SEG = 64                    # record id layout: segment << 64 | ordinal << 32 | length
RID_ORD = 32
MASK32 = (1 << 32) - 1

IMPLEMENTATION = "C" if lib is not None else f"python dict ({IMPORT_ERROR})"


def rids(seg_id: int, first: int, lens: Any) -> Any:
    """Record ids of the records ``first``, ``first + 1``... of segment ``seg_id``
    (lengths ``lens``): one range plus the lengths, no per-key Python arithmetic."""
    base = (seg_id << RID_SEG) | (first << RID_ORD)
    return map(add, range(base, base + (len(lens) << RID_ORD), 1 << RID_ORD), lens)


def rid_segment(rid: int) -> int:
    """The segment id of record id ``rid``."""
    return rid >> RID_SEG


def _u32(lens: Any) -> array:
    """``lens`` as an array of C uint32 (the layout the C calls take)."""
    return lens if isinstance(lens, array) and lens.typecode == "I" else array("I", lens)


class DictKeyIndex:
    """The key index as a CPython dict (the fallback; also the reference in tests)."""

    def __init__(self) -> None:
        self._d: dict[bytes, int] = {}

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key: bytes) -> bool:
        return key in self._d

    def __getitem__(self, key: bytes) -> int:
        return self._d[key]

    def __setitem__(self, key: bytes, rid: int) -> None:
        self._d[key] = rid

    def get(self, key: bytes) -> int | None:
        return self._d.get(key)

    def pop(self, key: bytes, default: Any = None) -> Any:
        return self._d.pop(key, default)

    def clear(self) -> None:
        self._d.clear()

    def keys(self) -> list[bytes]:
        return list(self._d)

    def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys of ``keys`` not in the index, in order."""
        return list(filterfalse(self._d.__contains__, keys))

    @property
    def memory(self) -> int:
        """Approximate bytes held (the dict and its key and id objects)."""
        return sys.getsizeof(self._d) + sum(map(sys.getsizeof, self._d)) + 36 * len(self._d)

    def apply(self, keys: Sequence[bytes], sid: int, first: int, lens: Sequence[int],
              kinds: bytes | None = None) -> dict[int, int]:
        """Apply records ``first``, ``first + 1``... of segment ``sid`` in order.

        Record i puts ``keys[i]`` (``lens[i]`` bytes long), or deletes it where
        ``kinds[i]`` is a tombstone. Returns the bytes made dead per segment:
        replaced and deleted versions, and the tombstones themselves.
        """
        index = self._d
        ids = list(rids(sid, first, lens))
        dead: dict[int, int] = {}
        if (kinds is None or record.DELETE not in kinds) and len(set(keys)) == len(keys):
            # Dead bytes summed per segment with C-level passes (a batch's old
            # versions sit in a few segments).
            olds = list(filter(None, map(index.get, keys)))
            if olds:
                sids = list(map(rshift, olds, repeat(RID_SEG, len(olds))))
                distinct = set(sids)
                for s in distinct:
                    mine = olds if len(distinct) == 1 else compress(olds, map(eq, sids, repeat(s)))
                    dead[s] = sum(map(and_, mine, repeat(MASK32)))
            index.update(zip(keys, ids))
            return dead
        for key, kind, rid in zip(keys, kinds or repeat(record.PUT), ids):
            old = index.pop(key, None) if kind == record.DELETE else index.get(key)
            if old is not None:
                dead[old >> RID_SEG] = dead.get(old >> RID_SEG, 0) + (old & MASK32)
            if kind == record.DELETE:
                dead[sid] = dead.get(sid, 0) + (rid & MASK32)
            else:
                index[key] = rid
        return dead

    def apply_joined(self, kbuf: bytes, klens: Sequence[int], sid: int, first: int,
                     lens: Sequence[int], kinds: bytes | None = None) -> dict[int, int]:
        """:meth:`apply` with the keys concatenated in ``kbuf`` (``klens`` long each)."""
        keys, pos = [], 0
        for n in klens:
            keys.append(bytes(kbuf[pos:pos + n]))
            pos += n
        return self.apply(keys, sid, first, lens, kinds)

    def repoint(self, keys: Sequence[bytes], old_rids: Sequence[int],
                new_rids: Sequence[int]) -> int:
        """Point each key at its new id where it still has its old one; bytes moved."""
        index, moved = self._d, 0
        for key, old, new in zip(keys, old_rids, new_rids):
            if index.get(key) == old:
                index[key] = new
                moved += new & MASK32
        return moved

    def live_bytes_by_segment(self) -> dict[int, int]:
        live: dict[int, int] = {}
        for rid in self._d.values():
            live[rid >> RID_SEG] = live.get(rid >> RID_SEG, 0) + (rid & MASK32)
        return live


class CKeyIndex:
    """The key index as a C hash table (see ``statelets/_index_build.py``).

    Keys must be ``bytes``: a batch call that meets anything else raises
    ``TypeError`` having applied part of the batch, so the store checks its
    batches first. Not thread-safe: a store belongs to one curio kernel.
    """

    def __init__(self) -> None:
        ix = lib.kx_new()
        if ix == ffi.NULL:
            raise MemoryError("cannot allocate the store's key index")
        self._ix = ffi.gc(ix, lib.kx_free)
        self._len_out = ffi.new("uint32_t *")
        self._loc_out = ffi.new("uint64_t *")
        self._dcap = 0
        self._dsids: Any = None
        self._dbytes: Any = None
        self._ndead = ffi.new("size_t *")

    def __len__(self) -> int:
        return lib.kx_len(self._ix)

    def __contains__(self, key: bytes) -> bool:
        return lib.kx_get(self._ix, key, len(key), self._len_out) != 0

    def get(self, key: bytes) -> int | None:
        loc = lib.kx_get(self._ix, key, len(key), self._len_out)
        return (loc << RID_ORD) | self._len_out[0] if loc else None

    def __getitem__(self, key: bytes) -> int:
        rid = self.get(key)
        if rid is None:
            raise KeyError(key)
        return rid

    def __setitem__(self, key: bytes, rid: int) -> None:
        if lib.kx_set(self._ix, key, len(key), rid >> RID_ORD, rid & MASK32,
                      self._loc_out, self._len_out) < 0:
            raise MemoryError("the store's key index cannot grow (out of memory)")

    def pop(self, key: bytes, default: Any = None) -> Any:
        if lib.kx_pop(self._ix, key, len(key), self._loc_out, self._len_out):
            return (self._loc_out[0] << RID_ORD) | self._len_out[0]
        return default

    def clear(self) -> None:
        lib.kx_clear(self._ix)

    def keys(self) -> list[bytes]:
        out: list[Any] = [None] * len(self)
        rc = lib.kx_keys_into(self._ix, id(out))
        if rc == -2:
            raise MemoryError("out of memory listing the store's keys")
        if rc:
            raise RuntimeError("key index changed while its keys were listed")
        return out

    def missing(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys of ``keys`` not in the index, in order: one C call."""
        if not isinstance(keys, list):
            keys = list(keys)
        found = bytearray(len(keys))
        if lib.kx_contains_many(self._ix, id(keys), len(keys), ffi.from_buffer(found)) < 0:
            self._checked(-1, keys)
        return list(compress(keys, map(not_, found)))

    @property
    def memory(self) -> int:
        """Bytes held by the table and the key arena."""
        return lib.kx_memory(self._ix)

    def _dead_room(self, n: int) -> None:
        if n > self._dcap:
            self._dcap = max(n, 1024)
            self._dsids = ffi.new("uint64_t[]", self._dcap)
            self._dbytes = ffi.new("uint64_t[]", self._dcap)

    def _dead(self) -> dict[int, int]:
        nd = self._ndead[0]
        if not nd:
            return {}
        return dict(zip(self._dsids[0:nd], self._dbytes[0:nd]))

    def apply(self, keys: Sequence[bytes], sid: int, first: int, lens: Sequence[int],
              kinds: bytes | None = None) -> dict[int, int]:
        """As :meth:`DictKeyIndex.apply`: one C call for the batch."""
        if not isinstance(keys, list):
            keys = list(keys)
        n = len(keys)
        lens = _u32(lens)
        self._dead_room(n + 1)
        self._ndead[0] = self._dcap
        rc = lib.kx_apply(self._ix, id(keys), ffi.NULL, ffi.NULL, n,
                          kinds if kinds is not None else ffi.NULL, (sid << RID_ORD) | first,
                          ffi.from_buffer("uint32_t[]", lens), self._dsids, self._dbytes,
                          self._ndead)
        return self._checked(rc, keys)

    def apply_joined(self, kbuf: bytes, klens: Sequence[int], sid: int, first: int,
                     lens: Sequence[int], kinds: bytes | None = None) -> dict[int, int]:
        """:meth:`apply` with the keys concatenated in ``kbuf``: no key objects made."""
        klens = _u32(klens)
        lens = _u32(lens)
        n = len(klens)
        if sum(klens) > len(kbuf) or len(lens) != n:
            raise ValueError(f"apply_joined: {n} key lengths (sum {sum(klens)}) for "
                             f"{len(kbuf)} key bytes and {len(lens)} record lengths")
        self._dead_room(n + 1)
        self._ndead[0] = self._dcap
        rc = lib.kx_apply(self._ix, 0, ffi.from_buffer(kbuf), ffi.from_buffer("uint32_t[]", klens),
                          n, kinds if kinds is not None else ffi.NULL, (sid << RID_ORD) | first,
                          ffi.from_buffer("uint32_t[]", lens), self._dsids, self._dbytes,
                          self._ndead)
        return self._checked(rc, None)

    def _checked(self, rc: int, keys: list[Any] | None) -> dict[int, int]:
        if rc == -2:
            raise MemoryError("the store's key index cannot grow (out of memory)")
        if rc == -1:
            bad = next((k for k in keys or () if k.__class__ is not bytes
                        or len(k) > record.MAX_KEY), None)
            raise TypeError(f"key index: keys must be bytes of at most {record.MAX_KEY} bytes, "
                            f"got {type(bad).__name__}"
                            + (f" of {len(bad)} bytes" if isinstance(bad, bytes) else ""))
        return self._dead()

    def repoint(self, keys: Sequence[bytes], old_rids: Sequence[int],
                new_rids: Sequence[int]) -> int:
        """As :meth:`DictKeyIndex.repoint`: one C call."""
        if not isinstance(keys, list):
            keys = list(keys)
        n = len(keys)
        if not n:
            return 0
        old = array("Q", map(rshift, old_rids, repeat(RID_ORD, n)))
        new = array("Q", map(rshift, new_rids, repeat(RID_ORD, n)))
        lens = array("I", map(and_, new_rids, repeat(MASK32, n)))
        moved = lib.kx_repoint(self._ix, id(keys), ffi.from_buffer("uint64_t[]", old),
                               ffi.from_buffer("uint64_t[]", new),
                               ffi.from_buffer("uint32_t[]", lens), n)
        if moved < 0:
            self._checked(-1, keys)
        return moved

    def live_bytes_by_segment(self) -> dict[int, int]:
        cap = 64
        while True:
            sids = ffi.new("uint64_t[]", cap)
            sizes = ffi.new("uint64_t[]", cap)
            n = lib.kx_live_by_segment(self._ix, sids, sizes, cap)
            if n <= cap:
                return dict(zip(sids[0:n], sizes[0:n]))
            cap *= 4


def new_index() -> CKeyIndex | DictKeyIndex:
    """A key index of the best implementation available here."""
    return CKeyIndex() if lib is not None else DictKeyIndex()
