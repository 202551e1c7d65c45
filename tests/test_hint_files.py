"""Hint files (FORMAT.md, version 3): one row per record, streamed to
``<id>.hint.tmp`` while the segment is written, then a trailer and a rename
when it is sealed. Older version-2 hint files (columns) still open.
"""
from __future__ import annotations

import os
import struct

import pytest

from statelets import CorruptionError, Store, StoreConfig
from statelets import record, segment as seg

CFG = StoreConfig(segment_size=64 << 10, write_buffer_bytes=16 << 10)
BIG = StoreConfig(segment_size=64 << 20)
KEYS = [b"hint-key-%05d" % i for i in range(4000)]


def values(tag: bytes) -> list[bytes]:
    return [tag + b"%05d" % i * 3 for i in range(len(KEYS))]


def files(path, suffix: str) -> list[str]:
    d = os.path.join(path, "segments")
    return sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(suffix))


def test_hint_rows_match_the_records_of_their_segment(run, tmp_path):
    path = tmp_path / "s"

    async def body(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        await st.put_many(KEYS, values(b"a"))
        for k in KEYS[::7]:
            await st.delete(k)
        await st.checkpoint(1)
        await st.close()
        hints = files(path, ".hint")
        assert len(hints) >= 2, hints
        for hp in hints:
            data = open(hp, "rb").read()
            assert data[-4:] == seg.HINT_MAGIC
            h = seg.parse_hints(data, hp)
            records = list(seg.scan_records(open(hp[:-5] + ".seg", "rb").read(), hp))
            assert len(h) == len(records)
            got = list(zip(h.seqs, h.offs, h.lens, h.kinds, h.keys))
            want = [(sq, off, size, kind, key) for off, sq, kind, key, _v, size in records]
            assert got == want, f"{hp}: hint rows differ from the segment's records"

    run(body)


def test_the_active_segment_streams_its_rows_and_an_open_discards_them(run, tmp_path):
    path = tmp_path / "s"

    async def body(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        await st.put_many(KEYS, values(b"a"))
        await st.checkpoint(1)
        await st.close()
        # Big segments: more than a 1 MiB buffer of rows while the segment is open.
        st = await Store.open(path, ring=ring, config=BIG)
        more = [b"more-%07d" % i for i in range(50_000)]
        await st.put_many(more, [b"x"] * len(more))           # after the checkpoint
        tmp = files(path, ".hint.tmp")
        assert len(tmp) == 1, "no temp hint file beside the active segment"
        assert os.path.getsize(tmp[0]) >= 1 << 20, "the active segment's rows were not streamed"
        await st.close()
        st = await Store.open(path, ring=ring, config=BIG)
        try:
            assert not os.path.exists(tmp[0]), "the unsealed segment's rows survived an open"
            assert not os.path.exists(tmp[0][:-len(".hint.tmp")] + ".seg")
            assert await st.get_many(KEYS) == values(b"a")
        finally:
            await st.close()

    run(body)


def _as_version_2(h: seg.Hints) -> bytes:
    """The columns as an older release wrote them (FORMAT.md, version 2)."""
    keys = h.keys
    body = (b"".join(struct.pack("<Q", s) for s in h.seqs)
            + b"".join(struct.pack("<I", o) for o in h.offs)
            + b"".join(struct.pack("<I", n) for n in h.lens)
            + b"".join(struct.pack("<I", len(k)) for k in keys)
            + bytes(h.kinds) + b"".join(keys))
    return struct.pack("<4sIII", b"RHNT", 2, len(h), record.crc32c(body)) + body


def test_version_2_hint_files_still_open(run, tmp_path):
    path = tmp_path / "s"

    async def body(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        await st.put_many(KEYS, values(b"a"))
        await st.put_many(KEYS[:100], values(b"c")[:100])
        await st.delete(KEYS[-1])
        await st.checkpoint(1)
        await st.close()
        for hp in files(path, ".hint"):
            h = seg.parse_hints(open(hp, "rb").read(), hp)
            with open(hp, "wb") as f:               # the links in the snapshot share it
                f.write(_as_version_2(h))
        st = await Store.open(path, ring=ring, config=CFG)
        try:
            want = values(b"c")[:100] + values(b"a")[100:-1] + [None]
            assert await st.get_many(KEYS) == want
        finally:
            await st.close()

    run(body)


def _sealed_hint(tmp_path) -> bytes:
    rows = bytearray(1 << 16)
    out = bytearray(1 << 16)
    keys = [b"k%d" % i for i in range(5)]
    enc = record.encode_batch(keys, [b"v" * 9] * 5, None, 40, None, 0, out, 0, rows)
    body = bytes(rows[:enc.hint_bytes])
    return body + struct.pack("<IIII", 5, record.crc32c(body), 3, int.from_bytes(b"RHNT", "little"))


def test_a_good_hint_file_parses(tmp_path):
    h = seg.parse_hints(_sealed_hint(tmp_path), "x.hint")
    assert list(h.seqs) == [40, 41, 42, 43, 44]
    assert h.keys == [b"k0", b"k1", b"k2", b"k3", b"k4"]
    assert bytes(h.kinds) == bytes([record.PUT]) * 5


@pytest.mark.parametrize("damage,words", [
    ("flip-row", "checksum mismatch"),
    ("cut-trailer", "trailer"),
    ("empty", "trailer"),
    ("more-rows", "too short"),
    ("fewer-rows", "do not add up"),
    ("long-key", "do not add up"),
])
def test_a_damaged_hint_file_is_a_corruption_error_naming_it(tmp_path, damage, words):
    data = bytearray(_sealed_hint(tmp_path))
    body, trailer = data[:-16], data[-16:]
    n, crc, version, magic = struct.unpack("<IIII", trailer)
    if damage == "flip-row":
        data[3] ^= 0x40
    elif damage == "cut-trailer":
        data = data[:-3]
    elif damage == "empty":
        data = bytearray()
    elif damage in ("more-rows", "fewer-rows"):
        data = body + struct.pack("<IIII", n + (1 if damage == "more-rows" else -1), crc,
                                  version, magic)
    else:                                   # a key length that runs past the rows
        body[16:20] = struct.pack("<I", 1000)
        data = body + struct.pack("<IIII", n, record.crc32c(bytes(body)), version, magic)
    with pytest.raises(CorruptionError) as e:
        seg.parse_hints(bytes(data), "/d/segments/00000007.hint")
    assert "/d/segments/00000007.hint" in str(e.value) and words in str(e.value), str(e.value)


def _open_paths() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


def test_a_cancelled_compaction_closes_its_output_and_the_store_goes_on(run, tmp_path):
    from uring.curio_compat import curio
    path = tmp_path / "s"

    async def body(ring):
        st = await Store.open(path, ring=ring, config=CFG)
        try:
            for tag in (b"a", b"b", b"c"):
                await st.put_many(KEYS, values(tag))
            await st.checkpoint(1)
            assert st.compaction_candidates()
            started = curio.Event()

            async def slow_pause():
                await started.set()
                await curio.sleep(3600)

            task = await curio.spawn(st.compact(pause=slow_pause))
            await started.wait()
            outs = [p for p in _open_paths() if p.endswith(".hint.tmp")]
            await task.cancel()
            left = _open_paths()
            assert len([p for p in left if p.endswith(".hint.tmp")]) == len(outs) - 1, \
                "the cancelled compaction's hint file is still open"
            await st.put_many(KEYS[:10], values(b"d")[:10])
            result = await st.compact()
            assert result["segments"] >= 1, result
            await st.checkpoint(2)
            assert await st.get_many(KEYS) == values(b"d")[:10] + values(b"c")[10:]
        finally:
            await st.close()
        st = await Store.open(path, ring=ring, config=CFG)
        try:
            assert await st.get_many(KEYS) == values(b"d")[:10] + values(b"c")[10:]
        finally:
            await st.close()

    run(body)
