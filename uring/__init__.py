"""uring: Direct I/O through one io_uring ring per reactor, from curio tasks.

Public API::

    from uring import Ring, DmaFile, DmaStreamWriter, DmaStreamReader, backend_info

    async def main():
        async with Ring() as ring:                      # io_uring, or the sync fallback
            f = await DmaFile.open("data.bin", "w")     # O_DIRECT where supported
            await f.write_at(b"x" * 4096, 0)            # aligned writes
            print(await f.read_at(10, 5))               # any offset and length
            await f.close()
            print(ring.stats())

    uring.run(main)      # curio.run, with the ring as the kernel's wait

``uring.run`` is ``curio.run`` with a :class:`RingSelector`: the ring submits,
waits and wakes its tasks from the kernel's own wait, with no helper tasks.
Under a plain ``curio.run`` the same code works through a reaper task.
``backend_info()`` says which backend rings use and why; ``REACTOR_IO=sync``
forces the fallback. Nothing here crashes at import where io_uring is missing.
"""
from __future__ import annotations

from .backend import BackendInfo, backend_info
from .buffers import BufferPool, DmaBuffer
from .dma_file import DmaFile
from .errors import NoRingError, RingClosedError, UringError
from .ring import FileStat, Ring
from .stream import DmaStreamReader, DmaStreamWriter
from .wait_selector import RingSelector, run

__all__ = [
    "BackendInfo", "BufferPool", "DmaBuffer", "DmaFile", "DmaStreamReader",
    "DmaStreamWriter", "FileStat", "NoRingError", "Ring", "RingClosedError",
    "RingSelector", "UringError", "backend_info", "run",
]
