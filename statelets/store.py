"""The log-structured state store (Bitcask-style index, epoch checkpoints).

Writes go to a write buffer of dirty values; when it is full (or at a
checkpoint) it is appended to the active segment as records. An in-memory
index maps each live key to (segment, offset, length); a read cache with a
byte budget holds values read from disk (Direct I/O bypasses the page cache).

``checkpoint(epoch)`` flushes, seals the active segment (hint file), hard-links
every live segment into ``snapshots/<epoch>/`` and commits a MANIFEST with one
rename. ``Store.open`` restores exactly the latest (or a named) checkpoint
from its manifest and hint files, so whatever a committed checkpoint covers
survives kill -9, and nothing after it is seen. See FORMAT.md.
"""
from __future__ import annotations

import bisect
import errno
import fcntl
import json
import logging
import os
import time
from array import array
from collections import OrderedDict
from typing import Any, Callable, Sequence

import attrs

from uring import DmaFile, Ring
from uring.curio_compat import curio

from . import record, segment as seg
from .cache_refresh import refresh_cached
from .cached_lookup import lookup_cached
from .keyindex import MASK32 as _MASK32, RID_ORD as _RID_ORD, RID_SEG as _RID_SEG
from .keyindex import new_index, rids as _rids
from .errors import CorruptionError, StateletError, StoreFailed
from .snapshot import Manifest, fsync_dir, list_epochs, read_manifest, write_file_durably

log = logging.getLogger("statelets.store")

_TOMBSTONE = object()

MergeFn = Callable[[bytes | None, list[bytes]], bytes]

#: ``put_many`` batches at least this long are appended at once, not buffered.
DIRECT_BATCH = 256
_CHUNK = 1 << 20       # bytes of records encoded and applied between pauses


@attrs.frozen
class StoreConfig:
    """Tuning of a store. Sizes in bytes."""

    segment_size: int = 64 << 20
    cache_bytes: int = 256 << 20
    write_buffer_bytes: int = 32 << 20
    keep_checkpoints: int = 3
    #: A sealed segment whose dead bytes reach this fraction is rewritten.
    compaction_threshold: float = 0.5
    #: Sealed segments smaller than this are merged by size tier (None:
    #: a quarter of segment_size).
    small_segment: int | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("segment_size", "cache_bytes", "write_buffer_bytes", "small_segment"):
            v = getattr(self, name)
            if v is None and name == "small_segment":
                continue
            if not isinstance(v, int) or v < 0:
                raise ValueError(f"StoreConfig.{name} must be a non-negative int, got {v!r}")
        if self.segment_size < 4096 or self.segment_size > (1 << 32) - 1:
            raise ValueError(f"StoreConfig.segment_size must be in 4 KiB..4 GiB, got {self.segment_size}")
        if not isinstance(self.keep_checkpoints, int) or self.keep_checkpoints < 1:
            raise ValueError(f"StoreConfig.keep_checkpoints must be >= 1, got {self.keep_checkpoints!r}")
        if not 0 < self.compaction_threshold <= 1:
            raise ValueError(f"StoreConfig.compaction_threshold must be in (0, 1], "
                             f"got {self.compaction_threshold!r}")


class _SegInfo:
    """What the store knows of one segment file."""

    __slots__ = ("id", "size", "dead", "min_seq", "file", "readers", "sealed", "doomed",
                 "offs")

    def __init__(self, seg_id: int, size: int, min_seq: int, sealed: bool, offs: Any) -> None:
        self.id = seg_id
        # The offset of every record by ordinal (the hint column; for a segment
        # being written, the writer's column, growing in place).
        self.offs = offs
        self.size = size            # bytes of records
        self.dead = 0               # bytes of records no longer live
        self.min_seq = min_seq
        self.file: DmaFile | None = None
        self.readers = 0            # reads in flight (the fd must outlive them)
        self.sealed = sealed
        self.doomed = False         # compacted away: close when readers finish


def _refuse_size(key: bytes, value: bytes) -> None:
    if len(key) > record.MAX_KEY:
        raise ValueError(f"key of {len(key)} bytes is over the store's limit of {record.MAX_KEY} "
                         f"bytes (key starts {key[:32]!r}); use a shorter or hashed key")
    raise ValueError(f"value of {len(value)} bytes for key {key[:64]!r} is over the store's "
                     f"limit of {record.MAX_VALUE} bytes; split it across keys")


async def _default_pause() -> None:
    await curio.sleep(0)


def _fixed_batch(keys: list[Any], values: list[Any], bad: int
                 ) -> tuple[list[bytes], list[bytes], int]:
    """A batch whose pair ``bad`` failed ``record.measure_batch``: bytes-like keys and
    values become bytes (then it is measured again); anything else raises, naming
    the first offender (its type, or its size against the limit)."""
    while bad >= 0:
        k, v = keys[bad], values[bad]
        key, value = _check_bytes("key", k), _check_bytes("value", v)
        if len(key) > record.MAX_KEY or len(value) > record.MAX_VALUE:
            _refuse_size(key, value)
        keys = [_check_bytes("key", x) for x in keys]
        values = [_check_bytes("value", x) for x in values]
        bad, total = record.measure_batch(keys, values)
    return keys, values, total


def _check_bytes(what: str, v: Any) -> bytes:
    if isinstance(v, bytes):
        return v
    if isinstance(v, (bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"store {what} must be bytes, got {type(v).__name__}")


def _prefix_slice(keys: list[bytes], p: bytes) -> list[bytes]:
    """The run of sorted ``keys`` that start with ``p`` (two binary searches)."""
    lo = bisect.bisect_left(keys, p)
    # The keys starting with p sort below p's successor: p with its last byte
    # that is not 0xff incremented and the rest cut (none: they run to the end).
    stem = p.rstrip(b"\xff")
    if not stem:
        return keys[lo:]
    hi = bisect.bisect_left(keys, stem[:-1] + bytes((stem[-1] + 1,)), lo)
    return keys[lo:hi]


class _Scan:
    """Async iterator over a key-ordered snapshot of the keys under a prefix."""

    def __init__(self, store: "Store", prefix: bytes) -> None:
        self.store = store
        self.prefix = prefix
        self._keys: list[bytes] | None = None
        self._pos = 0
        self._ready: list[tuple[bytes, bytes]] = []

    def __aiter__(self) -> "_Scan":
        return self

    async def __anext__(self) -> tuple[bytes, bytes]:
        store = self.store
        if self._keys is None:
            self._keys = store._keys_under(self.prefix)
        while not self._ready:
            if self._pos >= len(self._keys):
                raise StopAsyncIteration
            chunk = self._keys[self._pos:self._pos + 256]
            self._pos += len(chunk)
            values = await store.get_many(chunk)
            self._ready = [(k, v) for k, v in zip(chunk, values) if v is not None]
            self._ready.reverse()
        return self._ready.pop()


class Store:
    """A log-structured key/value store on one uring Ring. Open with ``await Store.open(dir)``."""

    def __init__(self, path: str, ring: Ring, config: StoreConfig) -> None:
        self.path = path
        self.ring = ring
        self.config = config
        self.seg_dir = f"{path}/segments"
        self.snap_dir = f"{path}/snapshots"
        self._index = new_index()
        # Prefix scans: a sorted list of keys (built on the first scan; may hold
        # deleted keys, which reads filter out) plus the keys new since then.
        self._sorted: list[bytes] | None = None
        self._added: set[bytes] = set()
        self._added_sorted: list[bytes] | None = []
        self._wbuf: dict[bytes, Any] = {}
        self._wbuf_bytes = 0
        self._flushing: dict[bytes, Any] = {}    # the buffer being appended, still readable
        # Bumped by every change to the index or the write buffers: a read that
        # sees it unchanged after its disk I/O caches the value without
        # re-checking that nothing newer arrived meanwhile.
        self._mutations = 0
        # The read cache is CLOCK (second-chance FIFO): a hit only marks the key in
        # _cache_ref; eviction gives marked keys another round. Moving each hit to
        # the end of an LRU list costs more than the rest of a cached get. Hits are
        # marked only once the cache is nearly full (_cache_marking): until
        # something may be evicted, a mark is a second random memory access per
        # get that buys nothing.
        self._cache: OrderedDict[bytes, bytes] = OrderedDict()
        self._cache_ref: set[bytes] = set()
        self._cache_marking = False
        self._cache_bytes = 0
        self._segs: dict[int, _SegInfo] = {}
        self._active: seg.ActiveSegment | None = None
        self._next_id = 1
        self._seq = 0
        self._merges: list[tuple[bytes, MergeFn]] = []
        self._failed: BaseException | None = None
        self._closed = False
        self._lock_fd = -1
        self._compacting = False
        # Serialises structural changes: appends to the active segment, sealing,
        # checkpoints and compaction's retirement of old segments.
        self._mutex = curio.Lock()
        self._open_lock = curio.Lock()
        #: Awaited between chunks of long work (flushes); the runtime sets its
        #: cooperative yield here. Default: yield to curio every ~0.5 ms.
        self.pause: Callable[[], Any] = _default_pause
        self._work_start = 0.0
        #: The manifest of the checkpoint restored or last committed (None if none).
        self.manifest: Manifest | None = None
        # stats
        self.user_bytes = 0           # bytes of keys+values put by the user
        self.disk_bytes_written = 0   # bytes appended to segments (incl. compaction)
        self.compaction_bytes = 0
        self.compactions = 0
        self.cache_hits = 0
        self.cache_misses = 0
        self.last_checkpoint: dict[str, Any] = {}

    @property
    def epoch(self) -> int | None:
        """Epoch of the checkpoint restored or last committed (None if none)."""
        return self.manifest.epoch if self.manifest is not None else None

    @property
    def metadata(self) -> dict[str, Any]:
        """Metadata of that checkpoint (a copy; empty if none)."""
        return dict(self.manifest.metadata) if self.manifest is not None else {}

    # -- opening ------------------------------------------------------------------
    @classmethod
    async def open(cls, path: str | os.PathLike, *, config: StoreConfig | None = None,
                   epoch: int | None = None, ring: Ring | None = None) -> "Store":
        """Open (or create) the store at ``path``, restoring the latest or the named checkpoint."""
        path = os.path.abspath(os.fsdecode(path))
        if os.path.exists(path) and not os.path.isdir(path):
            raise StateletError(f"state directory {path!r} is a file, not a directory; "
                                f"pass a directory path (it is created if missing)")
        ring = ring if ring is not None else Ring.current()
        store = cls(path, ring, config or StoreConfig())
        await store._open(epoch)
        return store

    async def _open(self, epoch: int | None) -> None:
        for d in (self.path, self.seg_dir, self.snap_dir):
            try:
                await self.ring.mkdirat(d)
            except FileExistsError:
                pass
        self._take_lock()
        try:
            await self._restore(epoch)
            await self._new_active()
        except BaseException:
            self._release_lock()
            raise

    def _take_lock(self) -> None:
        fd = os.open(f"{self.path}/LOCK", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise StateletError(f"state directory {self.path!r} is in use by another store "
                                    f"(LOCK held); close it first, or use another directory") from None
            raise
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    async def _restore(self, epoch: int | None) -> None:
        epochs = list_epochs(self.snap_dir)
        existing = {seg.parse_id(n) for n in os.listdir(self.seg_dir)} - {None}
        max_id = max(existing, default=0)
        if epoch is not None and epoch not in epochs:
            raise StateletError(f"no checkpoint for epoch {epoch} in {self.path!r}; retained "
                                f"epochs: {epochs or 'none'}")
        manifest = None
        if epochs:
            chosen = epoch if epoch is not None else epochs[-1]
            manifest = await read_manifest(self.ring, f"{self.snap_dir}/{chosen}")
            if chosen != epochs[-1]:
                # Ids of segments any checkpoint references must never be reused;
                # ids only grow, so the newest manifest holds the highest.
                try:
                    m = await read_manifest(self.ring, f"{self.snap_dir}/{epochs[-1]}")
                    max_id = max(max_id, m.next_segment - 1)
                except (CorruptionError, OSError):
                    pass
        keep: set[str] = set()
        if manifest is not None:
            self.manifest = manifest
            self._seq = manifest.max_seq
            max_id = max(max_id, manifest.next_segment - 1)
            snap = f"{self.snap_dir}/{manifest.epoch}"
            loaded: list[tuple[int, seg.Hints]] = []
            for name in manifest.segments:
                sid = seg.parse_id(name)
                if sid is None:
                    raise CorruptionError(f"{snap}/MANIFEST names a bad segment {name!r}",
                                          path=f"{snap}/MANIFEST", offset=0)
                for n in (name, seg.hint_name(sid)):
                    keep.add(n)
                    if not os.path.exists(f"{self.seg_dir}/{n}"):
                        # Compacted away after this checkpoint: restore from the snapshot.
                        await self.ring.linkat(f"{snap}/{n}", f"{self.seg_dir}/{n}")
                loaded.append((sid, await seg.read_hints(
                    self.ring, f"{self.seg_dir}/{seg.hint_name(sid)}")))
            dead = manifest.dead_bytes
            skip = set()
            if dead is not None:
                # A segment all of whose records are dead (superseded by newer ones)
                # holds nothing the index needs; one with tombstones still may (a
                # tombstone keeps an older put buried), so it is always loaded.
                for sid, h in loaded:
                    size = h.offs[-1] + h.lens[-1] if len(h) else 0
                    if size and dead.get(seg.segment_name(sid), -1) >= size \
                            and record.DELETE not in h.kinds:
                        skip.add(sid)
            self._load_hints(loaded, skip)
            if skip and len(self._index) != manifest.live_keys:
                # The dead-byte accounting disagrees with the key count: trust neither
                # and load every segment.
                log.warning("store %s: skipping fully dead segments lost keys (%d live, "
                            "manifest says %d); loading all segments", self.path,
                            len(self._index), manifest.live_keys)
                self._index.clear()
                self._segs.clear()
                self._load_hints(loaded)
            if dead is not None and all(seg.segment_name(sid) in dead for sid in self._segs):
                for sid, info in self._segs.items():
                    info.dead = dead[seg.segment_name(sid)]
            else:
                # Live-byte accounting: everything not pointed to by the index is dead.
                live = self._index.live_bytes_by_segment()
                for sid, info in self._segs.items():
                    info.dead = info.size - live.get(sid, 0)
        # Whatever is not part of the restored checkpoint is discarded: writes
        # after it, compaction outputs, temp files.
        for name in os.listdir(self.seg_dir):
            if name not in keep:
                await self.ring.unlinkat(f"{self.seg_dir}/{name}")
        for name in os.listdir(self.snap_dir):
            if name.startswith(".tmp-"):
                await self._remove_tree(f"{self.snap_dir}/{name}")
        self._next_id = max_id + 1

    def _load_hints(self, loaded: list[tuple[int, seg.Hints]],
                    skip: set[int] | frozenset[int] = frozenset()) -> None:
        """Rebuild the index from hint columns: per key, the highest seq wins.

        Segments whose seq ranges do not overlap (the usual case) are applied in
        seq order with bulk dict updates; overlapping ones (compaction outputs)
        take the per-key comparison.
        """
        index = self._index
        spans = []
        for sid, h in loaded:
            n = len(h)
            size = h.offs[-1] + h.lens[-1] if n else 0
            lo, hi = (min(h.seqs), max(h.seqs)) if n else (0, 0)
            self._segs[sid] = _SegInfo(sid, size, lo, sealed=True, offs=h.offs)
            spans.append((lo, hi, sid, h))
        spans = [sp for sp in spans if sp[2] not in skip]     # registered, not indexed
        spans.sort(key=lambda t: (t[0], t[1]))
        overlap = any(spans[i][0] <= spans[i - 1][1] for i in range(1, len(spans))
                      if len(spans[i][3]) and len(spans[i - 1][3]))
        seen: dict[bytes, int] = {}
        for _lo, _hi, sid, h in spans:
            if not overlap:
                kinds = h.kinds if record.DELETE in h.kinds else None
                blob = h.key_blob()
                if blob is not None:    # straight from the hint file's key blob
                    index.apply_joined(blob[0], blob[1], sid, 0, h.lens, kinds)
                else:
                    index.apply(h.keys, sid, 0, h.lens, kinds)
                continue
            for key, kind, loc, sq in zip(h.keys, h.kinds, _rids(sid, 0, h.lens), h.seqs):
                prev = seen.get(key)
                if prev is not None and prev > sq:
                    continue
                seen[key] = sq
                if kind == record.PUT:
                    index[key] = loc
                else:
                    index.pop(key, None)

    # -- reads --------------------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._failed is not None:
            raise StoreFailed(f"store {self.path!r} failed earlier ({self._failed}); reopen it to "
                              f"restore the last committed checkpoint") from self._failed
        if self._closed:
            raise StateletError(f"store {self.path!r} is closed")

    async def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or None."""
        v = self._wbuf.get(key)
        if v is None and self._flushing:
            v = self._flushing.get(key)
        if v is not None:
            return None if v is _TOMBSTONE else v
        v = self._cache.get(key)
        if v is not None:
            if self._cache_marking:
                self._cache_ref.add(key)
            self.cache_hits += 1
            return v
        if self._closed or self._failed is not None:
            self._check_usable()
        if key.__class__ is not bytes:
            key = _check_bytes("key", key)
            return await self.get(key)
        loc = self._index.get(key)
        if loc is None:
            return None
        self.cache_misses += 1
        mark = self._mutations
        value = await self._read(key, loc)
        # Cache only if nothing newer arrived while we read (a put drops the key
        # from the cache; caching the old value after it would resurrect it).
        if value is not None and (mark == self._mutations or (
                self._index.get(key) == loc and key not in self._wbuf
                and key not in self._flushing)):
            self._cache_put(key, value)
        return value

    async def _read(self, key: bytes, loc: int) -> bytes | None:
        sid = loc >> _RID_SEG
        info = self._segs.get(sid)
        if info is None:
            # Compaction retired that segment after the caller looked the key up:
            # resolve the key again (it may have moved, changed or gone).
            return await self.get(key)
        off = info.offs[(loc >> _RID_ORD) & _MASK32]
        ln = loc & _MASK32
        info.readers += 1               # before any await: retirement must wait for us
        try:
            f = info.file
            if f is None:
                async with self._open_lock:     # concurrent misses share one descriptor
                    if info.file is None and not info.doomed:
                        try:
                            info.file = await DmaFile.open(
                                f"{self.seg_dir}/{seg.segment_name(sid)}", "r", ring=self.ring)
                        except FileNotFoundError:
                            if not info.doomed:
                                raise
                    f = info.file
            if sid == self._active.id and off + ln > self._active.readable:
                await self._make_readable(sid, off + ln)
            # Retired by compaction (its file unlinked) before we could open it.
            data = await f.read_at(off, ln) if f is not None else None
        finally:
            info.readers -= 1
            if info.doomed and info.readers == 0:
                await self._close_seg(info)
        if data is None:
            return await self.get(key)  # the key moved (or changed, or went): look again
        return record.value_of(data, key, path=f.path, offset=off)

    async def _make_readable(self, sid: int, end: int) -> None:
        """Write out the active segment's tail: a read needs bytes still in the writer."""
        async with self._mutex:
            active = self._active
            if sid != active.id or end <= active.readable:
                return                  # written (or sealed) while we waited
            try:
                await active.flush()
            except BaseException as exc:
                self._fail(exc)         # the tail is lost: as for a failed flush
                raise

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        """Values of ``keys`` (None where missing); disk reads for the misses go out together."""
        if keys.__class__ is not list:
            keys = list(keys)
        if not keys:
            return []
        ref = self._cache_ref if self._cache_marking else None
        found = lookup_cached(keys, self._wbuf, self._flushing, self._cache, _TOMBSTONE, ref)
        if found is None:                   # a key is not bytes: convert (or refuse) them all
            keys = [_check_bytes("key", k) for k in keys]
            found = lookup_cached(keys, self._wbuf, self._flushing, self._cache, _TOMBSTONE, ref)
        out, absent, hits = found
        self.cache_hits += hits
        index_get = self._index.get
        misses = []
        for i in absent:
            k = keys[i]
            loc = index_get(k)
            if loc is not None:
                misses.append((i, k, loc))
        if len(misses) == 1:
            i, k, loc = misses[0]
            out[i] = await self.get(k)
        elif misses:
            self._check_usable()
            self.cache_misses += len(misses)
            mark = self._mutations
            async with curio.TaskGroup() as g:
                tasks = [(i, k, loc, await g.spawn(self._read, k, loc)) for i, k, loc in misses]
            for i, k, loc, t in tasks:
                v = t.result
                out[i] = v
                # Cache only values nothing newer replaced while we read.
                if v is not None and (mark == self._mutations or (
                        self._index.get(k) == loc and k not in self._wbuf
                        and k not in self._flushing)):
                    self._cache_put(k, v)
        return out

    def _cache_put(self, key: bytes, value: bytes) -> None:
        budget = self.config.cache_bytes
        size = len(key) + len(value) + 64
        if size > budget:
            return
        cache = self._cache
        old = cache.pop(key, None)
        if old is not None:
            self._cache_bytes -= len(key) + len(old) + 64
        cache[key] = value
        self._cache_bytes += size
        if not self._cache_marking and self._cache_bytes > budget - (budget >> 3):
            self._cache_marking = True
        ref = self._cache_ref
        while self._cache_bytes > budget:
            k, v = cache.popitem(last=False)
            if k in ref:                # referenced since its last turn: a second chance
                ref.discard(k)
                cache[k] = v
                continue
            self._cache_bytes -= len(k) + len(v) + 64

    def _cache_drop(self, key: bytes) -> None:
        old = self._cache.pop(key, None)
        self._cache_ref.discard(key)
        if old is not None:
            self._cache_bytes -= len(key) + len(old) + 64

    def _pending(self) -> dict[bytes, Any]:
        """Buffered writes not yet in the index: the buffer being flushed, then newer ones."""
        if not self._flushing:
            return self._wbuf
        merged = dict(self._flushing)
        merged.update(self._wbuf)
        return merged

    def __len__(self) -> int:
        n = len(self._index)
        for k, v in self._pending().items():
            in_index = k in self._index
            if v is _TOMBSTONE:
                n -= in_index
            else:
                n += not in_index
        return n

    async def contains(self, key: bytes) -> bool:
        """True if ``key`` has a value."""
        v = self._wbuf.get(key)
        if v is None and self._flushing:
            v = self._flushing.get(key)
        if v is not None:
            return v is not _TOMBSTONE
        return key in self._index

    def _keys_under(self, p: bytes) -> list[bytes]:
        """Sorted candidate keys under prefix ``p`` (deleted ones are dropped by the reads).

        Costs a binary search plus the keys found, not a pass over every key:
        the sorted list is rebuilt only when many keys were added since.
        """
        srt = self._sorted
        if srt is None or len(self._added) > max(4096, 8 * int(len(srt) ** 0.5)):
            # The index's keys are unique and come in insertion order, which is
            # often nearly sorted (sort() then finds long runs): no set, which
            # would cost a pass and scramble that order.
            index = self._index
            srt = index.keys()
            srt.extend(k for k, v in self._pending().items()
                       if v is not _TOMBSTONE and k not in index)
            srt.sort()
            self._sorted = srt
            self._added = set()
            self._added_sorted = []
        out = _prefix_slice(srt, p)
        if self._added:
            if self._added_sorted is None:
                self._added_sorted = sorted(self._added)
            extra = _prefix_slice(self._added_sorted, p)
            if extra:
                out = sorted(set(out).union(extra))
        return out

    def scan(self, prefix: bytes = b"") -> "_Scan":
        """Live (key, value) pairs whose key starts with ``prefix``, in key order.

        ``async for k, v in store.scan(p):`` — the keys are a snapshot taken when
        the iteration starts; values are read in batches. Breaking out early is
        fine (a plain async iterator, not an async generator).
        """
        self._check_usable()
        return _Scan(self, _check_bytes("prefix", prefix))

    # -- writes ---------------------------------------------------------------------------
    async def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` (buffered; durable at the next checkpoint)."""
        if key.__class__ is not bytes or value.__class__ is not bytes:
            key = _check_bytes("key", key)
            value = _check_bytes("value", value)
        if len(key) > record.MAX_KEY or len(value) > record.MAX_VALUE:
            _refuse_size(key, value)
        if self._failed is not None or self._closed:
            self._check_usable()
        wbuf = self._wbuf
        if self._sorted is not None and key not in self._index and key not in self._added:
            self._added.add(key)            # a new key for prefix scans
            self._added_sorted = None
        old = wbuf.get(key)
        if old is not None and old is not _TOMBSTONE:
            self._wbuf_bytes -= len(old)
        else:
            self._wbuf_bytes += len(key) + 32
        wbuf[key] = value
        self._mutations += 1
        self._wbuf_bytes += len(value)
        self.user_bytes += len(key) + len(value)
        cache = self._cache
        old_c = cache.get(key)
        if old_c is not None:
            # Keep a cached key cached with its new value: read-modify-write
            # keys (counters) stay in memory across flushes.
            cache[key] = value
            self._cache_bytes += len(value) - len(old_c)
        if self._wbuf_bytes >= self.config.write_buffer_bytes:
            async with self._mutex:
                await self._flush()

    async def put_many(self, keys: Sequence[bytes], values: Sequence[bytes]) -> None:
        """``put`` every key to its value, as one batch (a WriteBatch's worth of work).

        The batch is checked and measured in one C pass before anything changes
        (a bad pair raises, naming it, and nothing of the batch is written).
        Later pairs win over earlier ones with the same key. A batch of
        ``DIRECT_BATCH`` pairs or more skips the write buffer: it is encoded
        straight into the active segment and applied to the index in one call.
        """
        if len(keys) != len(values):
            raise ValueError(f"put_many: {len(keys)} keys but {len(values)} values")
        if not keys:
            return
        if keys.__class__ is not list:
            keys = list(keys)
        if values.__class__ is not list:
            values = list(values)
        bad, total = record.measure_batch(keys, values)
        if bad >= 0:
            keys, values, total = _fixed_batch(keys, values, bad)
        if self._failed is not None or self._closed:
            self._check_usable()
        if self._sorted is not None:
            added = self._added
            new = [k for k in self._index.missing(keys) if k not in added]
            if new:
                added.update(new)
                self._added_sorted = None
        n = len(keys)
        user = total - record.HEADER_SIZE * n
        self.user_bytes += user
        if n >= DIRECT_BATCH:
            async with self._mutex:
                if self._wbuf:                      # older buffered writes go first
                    await self._flush()
                self._check_usable()
                await self._append_batch(keys, values, None, total, recache=True)
            return
        wbuf = self._wbuf
        # Counted as if every key were new to the buffer: an overwrite within it
        # only makes the next flush come a little early.
        wbuf.update(zip(keys, values))
        self._mutations += 1
        self._wbuf_bytes += user + 32 * n
        self._recache(keys, values)
        if self._wbuf_bytes >= self.config.write_buffer_bytes:
            async with self._mutex:
                await self._flush()

    def _recache(self, keys: list[bytes], values: list[bytes]) -> None:
        """Cached keys among ``keys`` stay cached, holding their new value (later pairs win)."""
        self._cache_bytes += refresh_cached(self._cache, keys, values)

    async def delete(self, key: bytes) -> None:
        """Remove ``key`` (a no-op if absent)."""
        key = _check_bytes("key", key)
        if len(key) > record.MAX_KEY:
            _refuse_size(key, b"")
        self._check_usable()
        old = self._wbuf.get(key)
        if old is not None and old is not _TOMBSTONE:
            self._wbuf_bytes -= len(old)
        elif old is None:
            self._wbuf_bytes += len(key) + 32
        self._wbuf[key] = _TOMBSTONE
        self._mutations += 1
        self._cache_drop(key)
        if self._wbuf_bytes >= self.config.write_buffer_bytes:
            async with self._mutex:
                await self._flush()

    def register_merge(self, prefix: bytes, fn: MergeFn) -> None:
        """Use ``fn(base, operands) -> value`` for ``merge`` on keys starting with ``prefix``."""
        prefix = _check_bytes("merge prefix", prefix)
        if not callable(fn):
            raise TypeError(f"merge function for prefix {prefix!r} must be callable, got {fn!r}")
        self._merges = [(p, f) for p, f in self._merges if p != prefix] + [(prefix, fn)]
        self._merges.sort(key=lambda pf: -len(pf[0]))     # longest prefix wins

    async def merge(self, key: bytes, operand: bytes) -> None:
        """Fold ``operand`` into ``key``'s value with the registered merge function.

        Folding happens on write: the current value (write buffer, cache, or one
        disk read when cold) is combined with the operand and stored as a put.
        """
        key = _check_bytes("key", key)
        operand = _check_bytes("merge operand", operand)
        for p, fn in self._merges:
            if key.startswith(p):
                break
        else:
            raise StateletError(f"no merge function registered for key {key!r}; call "
                                f"register_merge(prefix, fn) first")
        base = await self.get(key)
        await self.put(key, fn(base, [operand]))

    async def _flush(self) -> None:
        """Append the write buffer to the active segment. Callers hold ``_mutex``."""
        if not self._wbuf:
            return
        self._check_usable()
        wbuf, self._wbuf, self._wbuf_bytes = self._wbuf, {}, 0
        self._flushing = wbuf
        await self._append_buffer(wbuf)
        try:
            # A full buffer's worth: write the tail out too, so the file holds
            # it (reads need not flush, a crash leaves it to the torn-tail rules).
            await self._active.flush()
        except BaseException as exc:
            self._fail(exc)
            raise

    async def _append_buffer(self, buf: dict[bytes, Any]) -> None:
        """Append the write buffer ``buf`` (which is ``_flushing``) as records. Callers hold ``_mutex``."""
        keys = list(buf)
        vals = list(buf.values())
        kinds = bytes([record.DELETE if v is _TOMBSTONE else record.PUT for v in vals]) \
            if _TOMBSTONE in vals else None
        try:
            _bad, total = record.measure_batch(keys, vals, kinds)
            await self._append_batch(keys, vals, kinds, total, recache=False)
        finally:
            self._flushing = {}

    async def _append_batch(self, keys: list[bytes], vals: list[Any], kinds: bytes | None,
                            total: int, *, recache: bool) -> None:
        """Append a measured batch as records and point the index at them, rolling
        segments when full. Callers hold ``_mutex``.

        Each chunk (up to 1 MiB of records) is encoded, applied to the index and
        to the cache without an await in between, so other tasks see a batch of
        one chunk whole or not at all; a longer batch is readable from
        ``_flushing`` until its last chunk is in. ``recache``: cached keys take
        their new values (a direct batch; buffered writes did so when put). Pauses between chunks so a big
        batch does not hold the core. The records become readable from the file
        when a read needs them (see ``_read``): appends do not wait for I/O.
        """
        n = len(keys)
        if total > _CHUNK and not self._flushing:
            self._flushing = dict(zip(keys, vals)) if kinds is None else \
                {k: (_TOMBSTONE if kd == record.DELETE else v)
                 for k, v, kd in zip(keys, vals, kinds)}
        seg_size = self.config.segment_size
        pos = 0
        try:
            while pos < n:
                active = self._active
                room = seg_size - active.size
                first = active.count
                seq0 = self._seq + 1
                enc = await active.append_records(keys, vals, kinds, pos, seq0, None,
                                                  min(room, _CHUNK))
                if not enc.count:           # the next record needs a fresh segment
                    await self._roll()
                    continue
                self._apply(enc, keys, vals, kinds, pos, first, recache)
                pos += enc.count
                if pos < n:
                    await self.pause()
        except BaseException as exc:
            self._fail(exc)
            raise
        finally:
            self._flushing = {}

    def _apply(self, enc: record.Encoded, keys: list[bytes], vals: list[Any],
               kinds: bytes | None, pos: int, first: int, recache: bool) -> None:
        """Point the index at an appended chunk (pairs ``pos``..., ordinals ``first``...)."""
        count = enc.count
        self._seq += count
        sid = self._active.id
        segs = self._segs
        chunk = keys if pos == 0 and count == len(keys) else keys[pos:pos + count]
        ckinds = kinds[pos:pos + count] if kinds is not None else None
        self._mutations += 1
        # Older versions (and tombstones, never live data) become dead bytes in
        # their segments, summed per segment by the index as it applies the chunk.
        for old_sid, nbytes in self._index.apply(chunk, sid, first, enc.lens, ckinds).items():
            segs[old_sid].dead += nbytes
        if recache and self._cache:
            self._recache(chunk, vals[pos:pos + count])
        info = segs[sid]
        if not info.min_seq:
            info.min_seq = self._active.min_seq
        self.disk_bytes_written += len(enc.data)
        info.size = self._active.size

    def _take_id(self) -> int:
        """A fresh segment id, taken before any await (a roll and a compaction may race)."""
        sid = self._next_id
        self._next_id += 1
        return sid

    async def _roll(self) -> None:
        """Seal the active segment and start a new one."""
        active = self._active
        await active.seal()
        info = self._segs[active.id]
        info.sealed = True
        info.file = active.file                # keep the fd for reads
        await self._new_active()

    async def _new_active(self) -> None:
        sid = self._take_id()
        active = self._active = await seg.ActiveSegment.create(self.ring, self.seg_dir, sid)
        self._segs[sid] = _SegInfo(sid, 0, 0, sealed=False, offs=active.offs)

    def _fail(self, exc: BaseException) -> None:
        if self._failed is None and not isinstance(exc, (curio.CancelledError, GeneratorExit)):
            self._failed = exc
            log.error("store %s failed: %s; reopen to restore the last checkpoint", self.path, exc)

    # -- checkpoints ------------------------------------------------------------------------
    async def checkpoint(self, epoch: int, metadata: dict[str, Any] | None = None) -> Manifest:
        """Commit everything written so far as checkpoint ``epoch`` (atomically)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool):
            raise TypeError(f"checkpoint epoch must be an int, got {type(epoch).__name__}")
        if epoch < 0:
            raise ValueError(f"checkpoint epoch must be >= 0, got {epoch}")
        if self.epoch is not None and epoch <= self.epoch:
            raise StateletError(f"checkpoint epoch {epoch} must be greater than the last committed "
                                f"epoch {self.epoch} of {self.path!r}")
        if metadata is not None and not isinstance(metadata, dict):
            raise TypeError(f"checkpoint metadata must be a dict, got {type(metadata).__name__}")
        metadata = dict(metadata or {})
        try:                            # refuse before anything is written
            same = json.loads(json.dumps(metadata)) == metadata
        except (TypeError, ValueError) as exc:
            raise TypeError(f"checkpoint metadata must be JSON-serialisable (it goes into the "
                            f"MANIFEST): {exc}") from None
        if not same:
            raise TypeError("checkpoint metadata must survive a JSON round trip unchanged (str "
                            "keys; lists, not tuples): it is stored in the MANIFEST as JSON")
        self._check_usable()
        async with self._mutex:
            return await self._checkpoint(epoch, metadata)

    async def _checkpoint(self, epoch: int, metadata: dict[str, Any]) -> Manifest:
        t0 = time.perf_counter()
        # Opened at an older epoch: checkpoints after it belong to an abandoned
        # history. The first new checkpoint replaces them (restore = rewind).
        newer = [e for e in list_epochs(self.snap_dir)
                 if self.epoch is None or e > self.epoch]
        if newer:
            log.warning("store %s: checkpoint %d after restoring epoch %s discards later "
                        "checkpoints %s", self.path, epoch, self.epoch, newer)
            for e in newer:
                await self._remove_tree(f"{self.snap_dir}/{e}")
        try:
            await self._flush()
            active = self._active
            new_bytes = active.size
            if active.size:
                await self._roll()
            # The just-created active segment is not part of the checkpoint.
            names = []
            for sid in sorted(self._segs):
                info = self._segs[sid]
                if info.sealed and not info.doomed:
                    names.append(seg.segment_name(sid))
            manifest = Manifest(epoch=epoch, segments=tuple(names), metadata=metadata,
                                max_seq=self._seq, next_segment=self._next_id,
                                live_keys=len(self._index), bytes_linked=new_bytes,
                                dead_bytes={n: self._segs[seg.parse_id(n)].dead for n in names})
            tmp = f"{self.snap_dir}/.tmp-{epoch}"
            try:
                await self.ring.mkdirat(tmp)
            except FileExistsError:
                await self._remove_tree(tmp)
                await self.ring.mkdirat(tmp)
            for name in names:
                sid = seg.parse_id(name)
                await self.ring.linkat(f"{self.seg_dir}/{name}", f"{tmp}/{name}")
                await self.ring.linkat(f"{self.seg_dir}/{seg.hint_name(sid)}",
                                       f"{tmp}/{seg.hint_name(sid)}")
            await write_file_durably(self.ring, f"{tmp}/MANIFEST", manifest.to_json())
            await fsync_dir(self.ring, tmp)
            await self.ring.renameat(tmp, f"{self.snap_dir}/{epoch}")     # the commit point
            await fsync_dir(self.ring, self.snap_dir)
        except BaseException as exc:
            self._fail(exc)
            raise
        self.manifest = manifest
        await self._retain()
        self.last_checkpoint = {"epoch": epoch, "seconds": round(time.perf_counter() - t0, 6),
                                "new_bytes": new_bytes, "segments": len(names)}
        return manifest

    async def _retain(self) -> None:
        epochs = list_epochs(self.snap_dir)
        for e in epochs[:-self.config.keep_checkpoints]:
            await self._remove_tree(f"{self.snap_dir}/{e}")

    async def _remove_tree(self, path: str) -> None:
        for name in os.listdir(path):
            await self.ring.unlinkat(f"{path}/{name}")
        await self.ring.unlinkat(path, rmdir=True)

    def checkpoints(self) -> list[int]:
        """Retained committed epochs, ascending."""
        return list_epochs(self.snap_dir)

    # -- compaction ---------------------------------------------------------------------------
    def compaction_backlog(self) -> float:
        """Dead bytes ÷ bytes in sealed segments (0 when there is nothing to reclaim)."""
        total = dead = 0
        for info in self._segs.values():
            if info.sealed and not info.doomed:
                total += info.size
                dead += info.dead
        return dead / total if total else 0.0

    def compaction_candidates(self) -> list[int]:
        """Sealed segments worth rewriting, most dead first.

        A segment qualifies when its dead bytes reach ``compaction_threshold``.
        Small segments (checkpoints seal one each) are merged by size tier, as
        in size-tiered compaction: four of a similar size (within a factor of
        4) are merged together, so a byte is rewritten about log4(segment size
        ÷ checkpoint size) times rather than at every pass.
        """
        cfg = self.config
        small = cfg.small_segment if cfg.small_segment is not None else cfg.segment_size // 4
        dead: list[tuple[float, int]] = []
        tiers: dict[int, list[int]] = {}
        for info in self._segs.values():
            if not info.sealed or info.doomed or info.size == 0:
                continue
            ratio = info.dead / info.size
            if ratio >= cfg.compaction_threshold:
                dead.append((ratio, info.id))
            elif info.size < small:
                tier = max(0, (info.size // 4096).bit_length() - 1) // 2
                tiers.setdefault(tier, []).append(info.id)
        dead.sort(reverse=True)
        merge = [sid for ids in tiers.values() if len(ids) >= 4 for sid in sorted(ids)]
        return [sid for _r, sid in dead] + merge

    async def compact(self, max_segments: int | None = None, *,
                      pause: Callable[[], Any] | None = None,
                      charge_io: Callable[[int], Any] | None = None) -> dict[str, Any]:
        """One compaction pass: rewrite the live records of candidate segments.

        ``pause`` is awaited between records (the runtime's quota/yield hook) and
        ``charge_io(nbytes)`` is told the bytes read and written, so compaction
        runs under its task queue's share. Readers are never blocked: the index
        is repointed key by key, and old files stay open until their reads end.
        """
        self._check_usable()
        if self._compacting:
            return {"segments": 0, "reason": "a compaction is already running"}
        self._compacting = True
        try:
            return await self._compact(max_segments, pause, charge_io)
        except BaseException as exc:
            if not isinstance(exc, (curio.CancelledError, GeneratorExit)):
                self._fail(exc)
            raise
        finally:
            self._compacting = False

    async def _compact(self, max_segments: int | None, pause: Any, charge_io: Any) -> dict[str, Any]:
        candidates = self.compaction_candidates()
        if max_segments is not None:
            candidates = candidates[:max_segments]
        if not candidates:
            return {"segments": 0, "reclaimed": 0, "rewritten": 0}
        out_id = self._take_id()
        out = await seg.ActiveSegment.create(self.ring, self.seg_dir, out_id)
        out_info = _SegInfo(out_id, 0, 0, sealed=False, offs=out.offs)
        self._segs[out_id] = out_info
        others_min_seq = min((i.min_seq for i in self._segs.values()
                              if i.id not in candidates and i.id != out_id and i.size), default=None)
        try:
            moves, reclaimed, rewritten = await self._copy_live(
                candidates, out, out_id, others_min_seq, pause, charge_io)
            await out.seal()
        except BaseException:
            # Failed or cancelled before it was sealed: nothing points into the
            # output yet. Its files are left for the next open to delete.
            self._segs.pop(out_id, None)
            await out.abandon()
            raise
        async with self._mutex:
            return await self._retire(candidates, out, out_id, out_info, moves, reclaimed, rewritten)

    async def _copy_live(self, candidates: list[int], out: Any, out_id: int,
                         others_min_seq: int | None, pause: Any, charge_io: Any
                         ) -> tuple[list[tuple[bytes, int, int, int]], int, int]:
        """Append the live records of ``candidates`` to ``out`` (and the
        tombstones an older segment may still need); returns the moves (key,
        old rid, new rid, length) and the bytes reclaimed and rewritten."""
        rewritten = reclaimed = seen = 0
        moves: list[tuple[bytes, int, int, int]] = []   # key, old rid, new rid, len
        for sid in candidates:
            info = self._segs[sid]
            path = f"{self.seg_dir}/{seg.segment_name(sid)}"
            data = await seg.read_segment(self.ring, path)
            if charge_io is not None:
                charge_io(len(data))
            c_keys: list[bytes] = []
            c_vals: list[bytes] = []
            c_kinds = bytearray()
            c_seqs: list[int] = []
            c_old: list[int] = []
            index = self._index
            base = sid << _RID_SEG
            ordinal = -1
            for off, seq_no, kind, key, value, size in seg.scan_records(data, path):
                seen += 1               # dead records cost CPU too: pause on every 256th
                if pause is not None and seen & 255 == 0:
                    await pause()
                ordinal += 1
                loc = base | (ordinal << _RID_ORD) | size
                if kind == record.PUT and index.get(key) == loc:
                    c_old.append(loc)
                elif kind == record.DELETE and key not in index and (
                        others_min_seq is not None and others_min_seq < seq_no):
                    # An older segment may still hold a put this tombstone hides.
                    c_old.append(-1)
                else:
                    continue
                c_keys.append(key)
                c_vals.append(value)
                c_kinds.append(kind)
                c_seqs.append(seq_no)
            if c_keys:
                first, lens = await out.append_columns(c_keys, c_vals, bytes(c_kinds),
                                                       array("Q", c_seqs))
                for key, old_loc, new_rid, ln, kind in zip(c_keys, c_old, _rids(out_id, first, lens),
                                                           lens, c_kinds):
                    moves.append((key, old_loc, new_rid, ln))
                    if kind == record.PUT:
                        rewritten += ln
                written = sum(lens)
                self.disk_bytes_written += written
                self.compaction_bytes += written
                if charge_io is not None:
                    charge_io(written)
            reclaimed += info.size
        return moves, reclaimed, rewritten

    async def _retire(self, candidates: list[int], out: Any, out_id: int, out_info: _SegInfo,
                      moves: list[tuple[bytes, int, int, int]], reclaimed: int,
                      rewritten: int) -> dict[str, Any]:
        # Repoint the index: only keys still at the location we copied (a put
        # during compaction wins), then retire the old segments.
        self._mutations += 1
        moved = [m for m in moves if m[1] >= 0]       # -1: a tombstone, never indexed
        live = self._index.repoint([m[0] for m in moved], [m[1] for m in moved],
                                   [m[2] for m in moved])
        out_info.size = out.size
        out_info.dead = out.size - live
        out_info.min_seq = out.min_seq
        out_info.sealed = True
        out_info.file = out.file
        for sid in candidates:
            info = self._segs.pop(sid)
            info.doomed = True
            for name in (seg.segment_name(sid), seg.hint_name(sid)):
                await self.ring.unlinkat(f"{self.seg_dir}/{name}")   # snapshots keep their links
            if info.readers == 0:
                await self._close_seg(info)
        if out.size == 0:
            self._segs.pop(out_id, None)
            await out.file.close()
            for name in (seg.segment_name(out_id), seg.hint_name(out_id)):
                await self.ring.unlinkat(f"{self.seg_dir}/{name}")
        self.compactions += 1
        return {"segments": len(candidates), "reclaimed": reclaimed - out.size,
                "rewritten": rewritten, "output": seg.segment_name(out_id) if out.size else None}

    async def _close_seg(self, info: _SegInfo) -> None:
        if info.file is not None:
            f, info.file = info.file, None
            await f.close()

    # -- closing and stats ------------------------------------------------------------------
    async def close(self) -> None:
        """Close files and release the directory lock. Uncheckpointed writes are discarded."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._active is not None:
                await self._active.abandon()
            for info in self._segs.values():
                if info.file is not None and not info.file.closed:
                    await self._close_seg(info)
        finally:
            self._release_lock()

    async def __aenter__(self) -> "Store":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stats(self) -> dict[str, Any]:
        """Sizes, amplification inputs, cache and compaction figures."""
        total = sum(i.size for i in self._segs.values())
        dead = sum(i.dead for i in self._segs.values())
        return {
            "path": self.path, "epoch": self.epoch, "live_keys": len(self),
            "segments": len(self._segs), "disk_bytes": total, "live_bytes": total - dead,
            "dead_bytes": dead, "backlog": round(self.compaction_backlog(), 4),
            "write_buffer_bytes": self._wbuf_bytes, "cache_bytes": self._cache_bytes,
            "cache_entries": len(self._cache), "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses, "user_bytes": self.user_bytes,
            "disk_bytes_written": self.disk_bytes_written,
            "compaction_bytes": self.compaction_bytes, "compactions": self.compactions,
            "last_checkpoint": dict(self.last_checkpoint), "failed": repr(self._failed) if self._failed else None,
        }
