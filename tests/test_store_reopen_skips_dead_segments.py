"""Opening a store skips segments whose records are all dead, and checks itself.

A segment fully superseded by newer writes (and holding no tombstones) adds
nothing to the index; the manifest's live-key count guards the shortcut: if
the dead-byte accounting were ever wrong, the open loads every segment.
"""
from __future__ import annotations

import logging

import uring
from conftest import run_in_ring
from statelets import Store, StoreConfig
from statelets import store as store_mod

CFG = StoreConfig(segment_size=64 << 10, write_buffer_bytes=16 << 10)
KEYS = [b"k%05d" % i for i in range(3000)]


def build(tmp_path):
    async def main(ring):
        st = await Store.open(tmp_path / "s", ring=ring, config=CFG)
        await st.put_many(KEYS, [b"old" * 10] * len(KEYS))
        await st.checkpoint(1)
        await st.put_many(KEYS, [b"new%05d" % i for i in range(len(KEYS))])   # all superseded
        await st.delete(KEYS[0])
        await st.checkpoint(2)
        await st.close()
    run_in_ring(uring.backend_info().backend, main)


def reopen(tmp_path):
    async def main(ring):
        st = await Store.open(tmp_path / "s", ring=ring, config=CFG)
        try:
            return len(st), await st.get_many(KEYS), len(st._segs)
        finally:
            await st.close()
    return run_in_ring(uring.backend_info().backend, main)


EXPECTED = [None] + [b"new%05d" % i for i in range(1, len(KEYS))]


def test_fully_dead_segments_are_skipped_and_the_state_is_exact(tmp_path, monkeypatch):
    build(tmp_path)
    applied = []
    real = Store._load_hints

    def spy(self, loaded, skip=frozenset()):
        applied.append((len(loaded), len(skip)))
        return real(self, loaded, skip)

    monkeypatch.setattr(Store, "_load_hints", spy)
    n, values, segs = reopen(tmp_path)
    assert (n, values) == (len(KEYS) - 1, EXPECTED)
    assert applied and applied[0][1] >= 1, f"no segment was skipped: {applied}"
    assert segs == applied[0][0] + 1                # skipped ones stay registered (+ active)


def test_wrong_dead_accounting_falls_back_to_loading_everything(tmp_path, monkeypatch, caplog):
    build(tmp_path)
    real = store_mod.Manifest.from_json

    def lying(data, path):        # claim every segment is fully dead
        m = real(data, path)
        return store_mod.Manifest(**{**{a: getattr(m, a) for a in (
            "epoch", "segments", "metadata", "max_seq", "next_segment", "live_keys", "created",
            "bytes_linked")}, "dead_bytes": {name: 1 << 40 for name in m.segments}})

    monkeypatch.setattr(store_mod.Manifest, "from_json", staticmethod(lying))
    with caplog.at_level(logging.WARNING, logger="statelets.store"):
        n, values, _ = reopen(tmp_path)
    assert (n, values) == (len(KEYS) - 1, EXPECTED)
    assert "loading all segments" in caplog.text


def test_big_hint_files_are_read_in_streamed_chunks(tmp_path):
    """A hint file over 1 MiB is read through pooled buffers; the index is the same."""
    keys = [b"big-hint-key-%08d" % i for i in range(60_000)]      # ~2.4 MiB of hints

    async def write(ring):
        st = await Store.open(tmp_path / "b", ring=ring)
        await st.put_many(keys, [b"v%d" % i for i in range(len(keys))])
        await st.checkpoint(1)
        await st.close()
        hints = [p for p in (tmp_path / "b" / "segments").iterdir() if p.suffix == ".hint"]
        assert max(p.stat().st_size for p in hints) > 1 << 20

    async def read(ring):
        st = await Store.open(tmp_path / "b", ring=ring)
        try:
            return len(st), await st.get_many(keys[::997])
        finally:
            await st.close()

    backend = uring.backend_info().backend
    run_in_ring(backend, write)
    assert run_in_ring(backend, read) == (len(keys), [b"v%d" % i for i in range(0, len(keys), 997)])
