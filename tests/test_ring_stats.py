"""Ring.stats(): the same JSON-able shape on both backends, counts that match the work done."""
from __future__ import annotations

import json
import os

import pytest

from uring import DmaBuffer


def test_a_fresh_ring_has_empty_stats(run, backend):
    async def main(ring):
        return ring.stats()

    stats = run(main)
    assert stats["backend"] == backend
    assert isinstance(stats["reason"], str) and stats["reason"]
    assert stats["ops"] == {}
    assert stats["total_ops"] == 0
    assert stats["in_flight"] == 0
    assert stats["latency_us"]["count"] == 0
    assert stats["latency_us"]["p50"] == stats["latency_us"]["p99"] == 0
    assert stats["sqes_per_enter"] == 0


def test_stats_shape_and_counts(run, backend, data_dir):
    async def main(ring):
        for _ in range(3):
            await ring.nop()
        fd = await ring.openat(data_dir / "s.bin", os.O_RDWR | os.O_CREAT | os.O_DIRECT)
        buf = DmaBuffer.alloc(4096)
        buf.view[:] = b"w" * 4096
        assert await ring.write(fd, buf, 0, name="s") == 4096
        assert await ring.write(fd, buf, 4096, name="s") == 4096
        assert await ring.read(fd, buf, 0, name="s") == 4096
        with pytest.raises(OSError):
            await ring.read(fd + 5000, buf, 0, name="bad")
        await ring.fsync(fd, datasync=True)
        await ring.fallocate(fd, 0, 16384)
        await ring.ftruncate(fd, 8192)
        st = await ring.fstatx(fd)
        assert st.size == 8192
        await ring.close(fd)
        return ring.stats()

    stats = run(main)
    json.dumps(stats)                                     # JSON-able
    for key in ("backend", "reason", "ops", "total_ops", "in_flight", "enter_calls",
                "sqes_submitted", "sqes_per_enter", "latency_us"):
        assert key in stats, key
    assert set(stats["latency_us"]) >= {"p50", "p99"}
    assert stats["backend"] == backend
    for kind, row in stats["ops"].items():
        assert set(row) == {"ops", "bytes", "errors"}, kind
    ops = {k: (r["ops"], r["bytes"], r["errors"]) for k, r in stats["ops"].items()}
    assert ops == {
        "nop": (3, 0, 0),
        "openat": (1, 0, 0),
        "write": (2, 8192, 0),
        "read": (2, 4096, 1),
        "fsync": (1, 0, 0),
        "fallocate": (1, 0, 0),
        "ftruncate": (1, 0, 0),
        "statx": (1, 0, 0),
        "close": (1, 0, 0),
    }
    assert stats["total_ops"] == 13
    assert stats["in_flight"] == 0
    assert stats["enter_calls"] >= 1
    # operations the kernel lacks run as plain syscalls (io_uring only)
    fallback = sum(stats.get("sync_fallback_ops", {}).values())
    assert stats["sqes_submitted"] >= stats["total_ops"] - fallback
    assert stats["sqes_per_enter"] == round(stats["sqes_submitted"] / stats["enter_calls"], 2)
    lat = stats["latency_us"]
    assert lat["count"] >= stats["total_ops"] - fallback
    assert 0 < lat["p50"] <= lat["p99"]
    assert stats["buffers"]["outstanding"] == 0
    if backend == "sync":
        # one syscall per operation
        assert stats["enter_calls"] == stats["sqes_submitted"] == stats["total_ops"]


def test_stats_count_dma_file_operations(run, backend, data_dir):
    from uring import DmaFile

    async def main(ring):
        async with await DmaFile.open(data_dir / "d.bin", "w") as f:
            a = f.offset_align
            await f.write_at(b"x" * (4 * a), 0)
            assert await f.read_at(a, a) == b"x" * a
            await f.fdatasync()
        return ring.stats(), a

    stats, a = run(main)
    assert stats["ops"]["write"] == {"ops": 1, "bytes": 4 * a, "errors": 0}
    assert stats["ops"]["read"] == {"ops": 1, "bytes": a, "errors": 0}
    assert stats["ops"]["fsync"]["ops"] == 1
    assert stats["ops"]["openat"]["ops"] == 1
    assert stats["ops"]["close"]["ops"] == 1
