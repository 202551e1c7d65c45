"""A read that opens a segment compaction retires meanwhile finds the key again.

The reader looks the key up, then waits to open the segment's file; compaction
copies the live record elsewhere, repoints the index and unlinks the file.
The read must follow the key, not fail with ENOENT (a crash test caught it).
"""
from __future__ import annotations

import uring
from conftest import run_in_ring
from statelets import Store, StoreConfig
from statelets import segment as seg
from statelets import store as store_mod
from statelets.keyindex import rid_segment
from uring.curio_compat import curio

CFG = StoreConfig(segment_size=16 << 10, write_buffer_bytes=4 << 10, compaction_threshold=0.5)


def test_read_follows_a_key_whose_segment_was_retired_before_it_opened(tmp_path, monkeypatch):
    path = tmp_path / "s"
    filler = [b"f%04d" % i for i in range(40)]

    async def prepare(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        await st.put(b"A", b"the value of A")
        await st.put_many(filler, [b"x" * 100] * len(filler))
        await st.checkpoint(1)
        await st.put_many(filler, [b"y" * 100] * len(filler))     # seg 1 is now mostly dead
        await st.checkpoint(2)
        await st.close()

    backend = uring.backend_info().backend
    run_in_ring(backend, prepare)

    real_open = store_mod.DmaFile.open
    gate: dict[str, object] = {}

    class SlowOpen:
        """DmaFile whose open of the watched segment waits until compaction is done."""

        @staticmethod
        async def open(p, *a, **k):
            watched = gate.get("watched")
            if watched and str(p).endswith(watched):
                await gate["done"].wait()
            return await real_open(p, *a, **k)

    async def race(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        try:
            sid = rid_segment(st._index[b"A"])
            assert sid in st.compaction_candidates(), "setup: A's segment should be compacted"
            gate["watched"] = seg.segment_name(sid)
            gate["done"] = curio.Event()
            monkeypatch.setattr(store_mod, "DmaFile", SlowOpen)
            reader = await curio.spawn(st.get, b"A")
            await curio.sleep(0)                       # the reader is waiting to open
            await st.compact()
            assert rid_segment(st._index[b"A"]) != sid   # A moved
            await gate["done"].set()
            return await reader.join()
        finally:
            monkeypatch.setattr(store_mod, "DmaFile", real_open.__self__)
            await st.close()

    assert run_in_ring(backend, race) == b"the value of A"
