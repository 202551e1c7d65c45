"""An io_uring ring works the same whether it waits through the kernel's selector
(``uring.run``, the reactor runtime) or through its helper tasks (plain
``curio.run``), and in selector mode the rest of curio keeps working: sockets,
sleeps, wake-ups from threads, signals, a second ring, a failing wait."""
from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time

import pytest

import uring
import uring.uring_ring as uring_ring
from uring import DmaFile, Ring, RingClosedError, RingSelector, UringError
from uring.curio_compat import curio

from conftest import needs_io_uring

pytestmark = needs_io_uring

RUNNERS = {"selector": uring.run, "tasks": curio.run}


@pytest.fixture(params=sorted(RUNNERS))
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


def run_mode(mode: str, main, *args):
    return RUNNERS[mode](main, *args)


def test_the_first_ring_attaches_under_uring_run_and_not_under_curio_run(mode):
    async def main():
        async with Ring(backend="io_uring") as ring:
            await ring.nop()
            return ring.wait_mode, ring.stats()["wait"]
    assert run_mode(mode, main) == (mode, mode)


def test_round_trips_and_many_operations_on_a_small_ring(mode, data_dir):
    path = data_dir / "f"
    data = os.urandom(1 << 20)

    async def main():
        async with Ring(8, backend="io_uring") as ring:
            f = await DmaFile.open(path, "w+")
            await f.write_at(data, 0)
            results = {}

            async def reader(i):
                off = (i * 7919) % (len(data) - 5000)
                results[i] = (off, await f.read_at(off, 5000))
            tasks = [await curio.spawn(reader, i) for i in range(2000)]
            for t in tasks:
                await t.join()
            await f.close()
            assert ring.in_flight == 0
            return results
    for off, got in run_mode(mode, main).values():
        assert got == data[off:off + 5000]


def test_cancelling_operations_in_flight_leaks_nothing(mode, data_dir):
    path = data_dir / "f"

    async def main():
        async with Ring(16, backend="io_uring") as ring:
            f = await DmaFile.open(path, "w+")
            await f.write_at(b"\x5a" * (1 << 20), 0)

            async def spin():
                while True:
                    await f.read_at(4096, 4096)
            for _ in range(200):
                t = await curio.spawn(spin)
                await curio.sleep(0)
                await t.cancel()
            assert await f.read_at(0, 8) == b"\x5a" * 8
            await f.close()
            for _ in range(1000):
                if ring.in_flight == 0:
                    break
                await ring.nop()
            return ring.in_flight, ring.buffers.stats()
    left, buffers = run_mode(mode, main)
    assert left == 0
    assert buffers["outstanding"] == 0


async def _sleep_and_socket_waits(a: socket.socket, b: socket.socket, payload: bytes):
    """(seconds a 50 ms curio.sleep took, what ``a`` received, seconds it waited
    for a send on ``b`` made 50 ms later from a thread)."""
    t0 = time.monotonic()
    await curio.sleep(0.05)
    slept = time.monotonic() - t0
    threading.Timer(0.05, b.send, args=(payload,)).start()
    t0 = time.monotonic()
    got = await curio.io.Socket(a).recv(len(payload))
    return slept, got, time.monotonic() - t0


def test_sockets_sleeps_and_thread_wakeups_keep_working_while_the_ring_waits():
    """Nothing is in flight: the kernel sleeps in io_uring_enter, and the poll on
    its epoll fd must end that sleep for a socket, a sleep or a thread."""
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        async with Ring(backend="io_uring") as ring:
            assert ring.wait_mode == "selector"
            slept, got, socket_wait = await _sleep_and_socket_waits(a, b, b"ping")

            t0 = time.monotonic()
            await curio.run_in_thread(time.sleep, 0.05)
            thread_wait = time.monotonic() - t0
            await ring.nop()
            return slept, got, socket_wait, thread_wait
    try:
        slept, got, socket_wait, thread_wait = uring.run(main)
    finally:
        a.close()
        b.close()
    assert got == b"ping"
    # Generous bounds: a missed wake-up would wait for curio's next deadline.
    assert 0.04 <= slept < 1.0
    assert socket_wait < 1.0
    assert thread_wait < 1.0


def test_a_signal_ends_the_wait_and_its_handler_runs_at_once():
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(time.monotonic()))

    async def main():
        async with Ring(backend="io_uring") as ring:
            assert ring.wait_mode == "selector"
            t0 = time.monotonic()
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            await curio.sleep(1.0)
            return t0
    try:
        t0 = uring.run(main)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert fired and fired[0] - t0 < 0.5


def test_a_second_ring_in_the_same_kernel_uses_helper_tasks(data_dir):
    async def main():
        async with Ring(backend="io_uring") as first, Ring(backend="io_uring") as second:
            f1 = await DmaFile.open(data_dir / "a", "w+", ring=first)
            f2 = await DmaFile.open(data_dir / "b", "w+", ring=second)
            await f1.write_at(b"1" * 4096, 0)
            await f2.write_at(b"2" * 4096, 0)
            got = (await f1.read_at(0, 4), await f2.read_at(0, 4))
            await f1.close()
            await f2.close()
            return first.wait_mode, second.wait_mode, got
    assert uring.run(main) == ("selector", "tasks", (b"1111", b"2222"))


def test_after_the_attached_ring_closes_the_kernel_waits_in_epoll_again():
    sel = RingSelector()

    async def main():
        async with Ring(backend="io_uring") as ring:
            assert sel.ring is ring
            await ring.nop()
        assert sel.ring is None
        t0 = time.monotonic()
        await curio.sleep(0.02)
        return time.monotonic() - t0
    assert curio.run(main, selector=sel) < 1.0


class _FailingWait:
    """The C library, except that waiting in the ring fails with EIO."""

    def __init__(self, real):
        self._real = real

    def __getattr__(self, name):
        return getattr(self._real, name)

    @staticmethod
    def ur_select(r, block, timeout_ns, spin_ns, epfd, slots, res, max_, epoll_ready):
        return -errno.EIO


def test_a_failing_wait_fails_the_rings_operations_not_the_kernel(monkeypatch, data_dir):
    monkeypatch.setattr(uring_ring, "lib", _FailingWait(uring_ring.lib))
    fd = os.open(data_dir, os.O_RDONLY)

    async def main():
        async with Ring(backend="io_uring") as ring:
            # Nothing else is ready: the kernel waits in the ring, which fails.
            with pytest.raises(UringError, match="Input/output error"):
                await ring.fsync(fd, name="dir")
            with pytest.raises(RingClosedError, match="broken"):
                await ring.nop()
            assert ring.wait_mode == "tasks"
            t0 = time.monotonic()
            await curio.sleep(0.02)           # the kernel itself goes on
            return time.monotonic() - t0
    try:
        assert uring.run(main) < 1.0
    finally:
        os.close(fd)


def test_a_cancelled_task_does_not_disown_the_next_operation_in_its_slot(mode):
    """A task cancelled mid-operation runs its clean-up later: by then its slot
    may have completed and been taken by another task, whose operation must
    still wake it (it once cleared the new owner, and that task hung)."""
    r, w = os.pipe()

    async def main():
        async with Ring(backend="io_uring") as ring:
            buf = bytearray(16)
            async def a_body():
                return await ring.read(r, buf, 0, name="pipe")
            a = await curio.spawn(a_body)
            for _ in range(3):
                await curio.sleep(0)              # a's read is in flight, on an empty pipe
            slot_a = ring._owners.index(a)

            async def b_body():
                return await ring.nop()
            # b is ready before a's cancellation: the next pass reaps a's
            # cancelled read (freeing its slot), runs b (which takes that slot,
            # the last freed), and only then runs a's clean-up.
            b = await curio.spawn(b_body)
            await a.cancel(blocking=False)
            async with curio.timeout_after(5):
                got = await b.join()
            with pytest.raises(curio.TaskError):
                await a.join()              # it was cancelled
            assert a.cancelled
            return slot_a, got, ring.in_flight
    try:
        slot_a, got, left = run_mode(mode, main)
    finally:
        os.close(r)
        os.close(w)
    assert got == 0
    assert left == 0


def test_the_reactor_runtime_runs_its_ring_as_the_kernels_wait(data_dir):
    import reactor
    from reactor.runtime import current_reactor

    async def main():
        ring = current_reactor().ring
        f = await DmaFile.open(data_dir / "f", "w+", ring=ring)
        await f.write_at(b"r" * 4096, 0)
        got = await f.read_at(0, 3)
        await f.close()
        t0 = time.monotonic()
        await curio.sleep(0.02)               # timers still wake the kernel
        return ring.wait_mode, got, time.monotonic() - t0
    mode, got, slept = reactor.run(main)
    assert (mode, got) == ("selector", b"rrr")
    assert slept < 1.0


def test_spinning_before_sleeping_never_delays_timers_or_sockets():
    """With operations in flight the kernel watches the CQ before sleeping;
    a timer due sooner, or a socket becoming ready, still ends the wait."""
    r, w = os.pipe()
    a, b = socket.socketpair()
    a.setblocking(False)

    async def main():
        async with Ring(backend="io_uring", spin_us=1_000_000) as ring:   # 1 s of spin
            stuck = await curio.spawn(ring.read, r, bytearray(8), 0)      # never completes
            await curio.sleep(0)
            assert ring.in_flight == 1
            slept, got, socket_wait = await _sleep_and_socket_waits(a, b, b"x")
            await stuck.cancel()
            return slept, got, socket_wait
    try:
        slept, got, socket_wait = uring.run(main)
    finally:
        for fd in (r, w):
            os.close(fd)
        a.close()
        b.close()
    assert 0.04 <= slept < 0.5
    assert got == b"x" and socket_wait < 0.5


@pytest.mark.parametrize("bad", [-1, 1_000_001, 1.5, True, "10"])
def test_spin_us_must_be_a_sane_int(bad):
    with pytest.raises(ValueError, match="spin_us"):
        Ring(backend="io_uring", spin_us=bad)
