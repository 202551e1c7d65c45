"""Aligned memory for Direct I/O: :class:`DmaBuffer` and the pool that lends them.

``O_DIRECT`` needs buffers aligned to the device's memory alignment, so I/O
memory comes from ``posix_memalign`` (via the C extension) and is exposed to
Python as a ``memoryview``. A :class:`BufferPool` keeps freed buffers by size
class, and may own an *arena* registered with the kernel as fixed buffers
(``IORING_REGISTER_BUFFERS``) where the memlock limit allows: reads and writes
into those skip per-operation page pinning.

Buffers of 64 KiB and more (and the arena) are carved from 2 MiB-aligned
private mappings advised ``MADV_HUGEPAGE``. On 4 KiB pages a 1 MiB buffer is
256 scattered pages, and a device that takes fewer segments per request
(virtio-blk: 254) splits every 1 MiB transfer in two; inside a huge page it is
one segment, the block layer can merge neighbouring writes, and pinning it is
one folio instead of 256 pages. Where transparent huge pages are off the same
mappings simply stay on small pages.

A buffer handed to the kernel must outlive the operation even if the task that
issued it was cancelled: the ring *pins* a buffer whose operation it abandons,
and :meth:`DmaBuffer.release` defers the return to the pool until the
completion arrives, so the kernel never writes into memory that was reused.
"""
from __future__ import annotations

import mmap
import resource
from typing import Any

from ._native import ffi, lib

PAGE = 4096
MIN_CLASS = 4096
#: Largest pooled size; bigger buffers are allocated for one use.
MAX_CLASS = 8 << 20
#: Fixed (registered) arena layout: size class -> count. 5.5 MiB in total.
ARENA_LAYOUT = ((4096, 128), (64 << 10, 16), (1 << 20, 4))
#: Transparent huge page size (x86-64; arm64 with 4 KiB base pages).
HUGE = 2 << 20
#: Pooled classes from this size up are carved from huge-page slabs.
SLAB_MIN_CLASS = 64 << 10


def _thp_mode() -> str:
    """The machine's transparent-huge-page setting ("always", "madvise", "never", ...)."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            text = f.read()
    except OSError:
        return "unavailable"
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else "unknown"


THP_MODE = _thp_mode()
_MADV_HUGEPAGE = getattr(mmap, "MADV_HUGEPAGE", None)


def _round_class(size: int) -> int:
    c = MIN_CLASS
    while c < size:
        c <<= 1
    return c


def _raw_alloc(size: int, align: int) -> tuple[Any, int, memoryview]:
    """Allocate aligned memory; returns (owner, address, view)."""
    if lib is not None:
        ptr = lib.ur_alloc(size, align)
        if ptr == ffi.NULL:
            raise MemoryError(f"cannot allocate {size} bytes aligned to {align}")
        ptr = ffi.gc(ptr, lib.ur_dealloc, size)
        return ptr, int(ffi.cast("uintptr_t", ptr)), memoryview(ffi.buffer(ptr, size))
    # Without the extension (sync backend only): anonymous mmap is page aligned.
    m = mmap.mmap(-1, max(size, PAGE))
    return m, 0, memoryview(m)[:size]


def _huge_alloc(size: int) -> tuple[Any, int, memoryview]:
    """``size`` bytes of zeroed memory aligned to :data:`HUGE`, advised huge pages.

    A private anonymous mapping (shared ones are shmem, which THP leaves
    alone by default) one huge page larger than needed, so an aligned start
    exists; the slack is never touched and so never backed.
    """
    span = -(-size // HUGE) * HUGE
    m = mmap.mmap(-1, span + HUGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    addr = 0
    if ffi is not None:
        cdata = ffi.from_buffer(m)
        addr = int(ffi.cast("uintptr_t", cdata))
        ffi.release(cdata)
    skip = -addr % HUGE
    if _MADV_HUGEPAGE is not None:
        try:
            m.madvise(_MADV_HUGEPAGE, skip, span)
        except OSError:
            pass    # a kernel without THP: small pages, still correct
    return m, addr + skip, memoryview(m)[skip:skip + size]


class DmaBuffer:
    """Aligned memory usable for Direct I/O.

    ``view`` is a writable ``memoryview`` of ``size`` bytes, ``address`` its
    address for the kernel and ``buf_index`` its fixed-buffer index (-1 if not
    registered). Pooled buffers go back with :meth:`release` (or ``with``);
    buffers from :meth:`alloc` are freed when garbage collected.
    """

    __slots__ = ("address", "size", "view", "buf_index", "pool", "_owner",
                 "_pins", "_released", "_parent", "__weakref__")

    def __init__(self, owner: Any, address: int, view: memoryview, *,
                 buf_index: int = -1, pool: "BufferPool | None" = None) -> None:
        self._owner = owner
        self.address = address
        self.view = view
        self.size = len(view)
        self.buf_index = buf_index
        self.pool = pool
        self._pins = 0
        self._released = False
        self._parent: DmaBuffer | None = None

    def slice(self, start: int, stop: int | None = None) -> "DmaBuffer":
        """A view of ``[start:stop]`` usable for I/O; pinning it pins this buffer.

        For I/O into part of a pooled buffer: if the operation is abandoned,
        the whole buffer stays out of the pool until the kernel is done.
        """
        stop = self.size if stop is None else stop
        if not 0 <= start <= stop <= self.size:
            raise ValueError(f"slice [{start}:{stop}] outside the buffer's {self.size} bytes")
        part = DmaBuffer(self, self.address + start, self.view[start:stop],
                         buf_index=self.buf_index, pool=None)
        part._parent = self
        return part

    @classmethod
    def alloc(cls, size: int, align: int = PAGE) -> "DmaBuffer":
        """A standalone zero-filled buffer of ``size`` bytes aligned to ``align``."""
        if size <= 0:
            raise ValueError(f"buffer size must be positive, got {size}")
        if align <= 0 or align & (align - 1):
            raise ValueError(f"alignment must be a power of two, got {align}")
        if size >= HUGE and align <= HUGE:
            return cls(*_huge_alloc(size))
        owner, addr, view = _raw_alloc(size, align)
        return cls(owner, addr, view)

    def release(self) -> None:
        """Return the buffer to its pool (deferred while the kernel still owns it)."""
        if self._released:
            return
        self._released = True
        if self._pins == 0 and self.pool is not None:
            self.pool._put(self)

    # Pinning: the ring holds the kernel's claim on an abandoned operation.
    def _pin(self) -> None:
        if self._parent is not None:
            self._parent._pin()
        self._pins += 1

    def _unpin(self) -> None:
        if self._parent is not None:
            self._parent._unpin()
        self._pins -= 1
        if self._pins == 0 and self._released and self.pool is not None:
            self.pool._put(self)

    @property
    def in_kernel(self) -> bool:
        """True while an abandoned operation may still write into this buffer."""
        return self._pins > 0

    def __enter__(self) -> "DmaBuffer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __len__(self) -> int:
        return self.size

    def __repr__(self) -> str:
        fixed = f" fixed#{self.buf_index}" if self.buf_index >= 0 else ""
        return f"<DmaBuffer {self.size} bytes at {self.address:#x}{fixed}>"


class BufferPool:
    """Size-classed free lists of :class:`DmaBuffer`, optionally with a fixed arena.

    ``get(n)`` returns a buffer of at least ``n`` bytes (a power-of-two class,
    at least 4 KiB, page aligned). Registered arena buffers are preferred for
    their class. Classes from :data:`SLAB_MIN_CLASS` up come from huge-page
    slabs of 2 MiB (or one class, if larger), whose other pieces go to the free
    list. ``max_free_bytes`` bounds what the pool keeps for reuse.
    """

    def __init__(self, *, max_free_bytes: int = 64 << 20) -> None:
        self.max_free_bytes = max_free_bytes
        self._free: dict[int, list[DmaBuffer]] = {}
        self._fixed_free: dict[int, list[DmaBuffer]] = {}
        self._free_bytes = 0
        self.outstanding = 0          # handed out and not yet back
        self.allocated = 0            # heap buffers ever allocated
        self.slabs = 0                # huge-page slabs ever mapped
        self.arena: DmaBuffer | None = None
        self.arena_sizes: list[int] = []
        self.fixed_reason = "not registered"

    def get(self, size: int) -> DmaBuffer:
        """A buffer of at least ``size`` bytes; give it back with ``release()``."""
        cls = _round_class(max(size, 1))
        buf = None
        fixed = self._fixed_free.get(cls)
        if fixed:
            buf = fixed.pop()
        else:
            free = self._free.get(cls)
            if free:
                buf = free.pop()
                self._free_bytes -= cls
        if buf is None:
            if cls >= SLAB_MIN_CLASS:
                buf = self._carve(cls)
            else:
                owner, addr, view = _raw_alloc(cls, PAGE)
                buf = DmaBuffer(owner, addr, view, pool=self)
            self.allocated += 1
        buf._released = False
        self.outstanding += 1
        return buf

    def _carve(self, cls: int) -> DmaBuffer:
        """One buffer of class ``cls`` from a new huge-page slab; the rest go free."""
        owner, addr, view = _huge_alloc(max(cls, HUGE))
        self.slabs += 1
        pieces = [DmaBuffer(owner, addr + off, view[off:off + cls], pool=self)
                  for off in range(0, max(cls, HUGE), cls)]
        # The spare pieces are already mapped: keep them even past
        # max_free_bytes (by less than one slab), or the slab is wasted.
        self._free.setdefault(cls, []).extend(pieces[1:])
        self._free_bytes += cls * (len(pieces) - 1)
        return pieces[0]

    def _put(self, buf: DmaBuffer) -> None:
        self.outstanding -= 1
        if buf.buf_index >= 0:
            self._fixed_free.setdefault(buf.size, []).append(buf)
        elif buf.size <= MAX_CLASS and self._free_bytes + buf.size <= self.max_free_bytes:
            self._free.setdefault(buf.size, []).append(buf)
            self._free_bytes += buf.size

    @property
    def fixed_count(self) -> int:
        """How many registered (fixed) buffers the pool owns."""
        return len(self.arena_sizes)

    def build_arena(self, budget: int) -> tuple[int, list[int]] | None:
        """Allocate the fixed arena within ``budget`` bytes; returns (address, sizes).

        The caller registers it with the kernel and calls :meth:`adopt_arena`
        on success. Returns None when the budget cannot hold the smallest layout.
        """
        sizes: list[int] = []
        total = 0
        for cls, count in ARENA_LAYOUT:
            for _ in range(count):
                if total + cls > budget:
                    break
                sizes.append(cls)
                total += cls
        if not sizes:
            return None
        self.arena = DmaBuffer(*_huge_alloc(total))
        self.arena_sizes = sizes
        return self.arena.address, sizes

    def adopt_arena(self) -> None:
        """Carve the registered arena into fixed buffers (index = iovec index)."""
        assert self.arena is not None
        off = 0
        for i, cls in enumerate(self.arena_sizes):
            view = self.arena.view[off:off + cls]
            buf = DmaBuffer(self.arena, self.arena.address + off, view, buf_index=i, pool=self)
            self._fixed_free.setdefault(cls, []).append(buf)
            off += cls

    def drop_arena(self) -> None:
        """Forget the arena (registration failed or the ring closed)."""
        self._fixed_free.clear()
        self.arena = None
        self.arena_sizes = []

    def stats(self) -> dict[str, Any]:
        """Pool figures for the I/O stats."""
        return {
            "outstanding": self.outstanding,
            "allocated": self.allocated,
            "free_bytes": self._free_bytes,
            "fixed_buffers": self.fixed_count,
            "fixed_reason": self.fixed_reason,
            "huge_slabs": self.slabs,
            "transparent_hugepages": THP_MODE,
        }


def memlock_budget(requested: int) -> tuple[int, str]:
    """Bytes we may register as fixed buffers, and why that much.

    Registered buffers are charged to RLIMIT_MEMLOCK (unlimited for root with
    CAP_IPC_LOCK, which we cannot see cheaply, so we stay under the limit).
    """
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if soft == resource.RLIM_INFINITY:
        return requested, "memlock unlimited"
    budget = min(requested, soft // 2)
    return budget, f"memlock limit {soft} bytes, using {budget}"
