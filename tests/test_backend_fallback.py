"""Where io_uring is unavailable the same API runs on plain syscalls, and says why."""
from __future__ import annotations

import errno
import json
import textwrap

import pytest

import uring
import uring.backend
from uring.curio_compat import curio
from uring.sync_ring import SyncRing

from conftest import explain, run_python


@pytest.fixture
def fresh_backend(monkeypatch, request):
    """A backend decision made afresh in this test and forgotten afterwards."""
    monkeypatch.delenv("REACTOR_IO", raising=False)
    uring.backend.reset()
    request.addfinalizer(uring.backend.reset)
    return monkeypatch


async def small_io(ring, path) -> bytes:
    async with await uring.DmaFile.open(path, "w", ring=ring) as f:
        await f.write_at(b"fallback" * 64, 0)
        await ring.nop()
        return await f.read_at(0, 8)


def test_reactor_io_sync_forces_the_fallback(fresh_backend, data_dir):
    fresh_backend.setenv("REACTOR_IO", "sync")
    uring.backend.reset()
    info = uring.backend_info()
    assert info.backend == "sync"
    assert "REACTOR_IO" in info.reason
    assert info.as_dict()["backend"] == "sync"

    async def main():
        async with uring.Ring() as ring:
            assert ring.backend == "sync"
            assert isinstance(ring, SyncRing)
            assert "REACTOR_IO" in ring.reason
            assert await small_io(ring, data_dir / "f") == b"fallback"
            stats = ring.stats()
            assert stats["backend"] == "sync" and "REACTOR_IO" in stats["reason"]
    curio.run(main)


@pytest.mark.parametrize("value", ["SYNC", " fallback ", "syscalls"])
def test_reactor_io_spellings(fresh_backend, value):
    fresh_backend.setenv("REACTOR_IO", value)
    uring.backend.reset()
    assert uring.backend_info().backend == "sync"


def test_an_unknown_reactor_io_value_is_ignored_with_a_warning(fresh_backend, caplog):
    fresh_backend.setenv("REACTOR_IO", "bogus")
    fresh_backend.setattr(uring.backend, "probe_io_uring", lambda: errno.ENOSYS)
    uring.backend.reset()
    with caplog.at_level("WARNING", logger="uring"):
        info = uring.backend_info()
    assert "REACTOR_IO" in caplog.text and "bogus" in caplog.text
    assert info.backend == "sync"
    assert "ENOSYS" in info.reason                 # decided by the probe, not the variable


@pytest.mark.parametrize("err, words", [(errno.EPERM, ["EPERM", "seccomp"]),
                                        (errno.ENOSYS, ["ENOSYS", "no io_uring"]),
                                        (errno.EACCES, ["EACCES", "io_uring_disabled"])])
def test_a_failing_io_uring_setup_falls_back_and_says_why(fresh_backend, data_dir, err, words):
    fresh_backend.setattr(uring.backend, "probe_io_uring", lambda: err)
    uring.backend.reset()
    info = uring.backend_info()
    assert info.backend == "sync"
    for w in words:
        assert w in info.reason, info.reason
    assert info.opcodes == ()

    async def main():
        ring = uring.Ring()
        assert ring.backend == "sync"
        async with ring:
            assert await small_io(ring, data_dir / "f") == b"fallback"
            assert words[0] in ring.stats()["reason"]
    curio.run(main)


def test_the_decision_is_made_once_until_reset(fresh_backend):
    calls = []

    def probe():
        calls.append(1)
        return errno.EPERM
    fresh_backend.setattr(uring.backend, "probe_io_uring", probe)
    uring.backend.reset()
    first = uring.backend_info()
    assert uring.backend_info() is first
    assert len(calls) == 1
    uring.backend.reset()
    uring.backend_info()
    assert len(calls) == 2


def test_a_ring_setup_failure_makes_later_rings_sync(fresh_backend):
    info = uring.backend.fallback_after_setup_error(errno.ENOMEM)
    assert info.backend == "sync" and "ENOMEM" in info.reason
    assert uring.backend_info() is info
    assert uring.Ring().backend == "sync"


def test_asking_for_a_backend_explicitly(fresh_backend):
    fresh_backend.setenv("REACTOR_IO", "sync")
    uring.backend.reset()
    assert uring.Ring(backend="sync").backend == "sync"
    with pytest.raises(ValueError, match="bogus"):
        uring.Ring(backend="bogus")


def test_import_and_a_ring_work_in_a_fresh_process_with_reactor_io_sync(data_dir):
    code = textwrap.dedent(f"""
        import json
        import uring
        from uring.curio_compat import curio

        async def main():
            async with uring.Ring() as ring:
                f = await uring.DmaFile.open({str(data_dir / "sub.bin")!r}, "w")
                await f.write_at(b"s" * 4096, 0)
                data = await f.read_at(100, 10)
                await f.close()
                await ring.nop()
                return ring.backend, ring.reason, data.decode(), ring.stats()["total_ops"]

        backend, reason, data, ops = curio.run(main)
        info = uring.backend_info()
        print(json.dumps({{"info": [info.backend, info.reason], "ring": backend,
                          "reason": reason, "data": data, "ops": ops}}))
    """)
    proc = run_python(code, env={"REACTOR_IO": "sync"}, timeout=60)
    assert proc.returncode == 0, explain(proc)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["info"][0] == "sync" and "REACTOR_IO" in out["info"][1]
    assert out["ring"] == "sync" and "REACTOR_IO" in out["reason"]
    assert out["data"] == "s" * 10
    assert out["ops"] > 0
