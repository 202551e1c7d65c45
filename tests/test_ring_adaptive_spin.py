"""The spin before sleeping adapts: a spin that catches no completion makes
the next one half as long (down to a sixteenth of ``spin_us``), and one that
catches a completion restores the whole spin."""
from __future__ import annotations

import os
import threading

import uring
from uring import Ring

from conftest import needs_io_uring

pytestmark = needs_io_uring


async def _late_read(ring: Ring, fds: tuple[int, int], delay: float) -> None:
    """Read one byte of pipe ``fds`` that a thread writes ``delay`` s later: no
    timer caps the spin, which runs its whole length and misses."""
    r, w = fds
    timer = threading.Timer(delay, os.write, (w, b"z"))
    timer.start()
    try:
        assert await ring.read(r, bytearray(1), 0) == 1
    finally:
        timer.join()


def _with_pipe(spin_us: int, body) -> None:
    async def main():
        async with Ring(backend="io_uring", spin_us=spin_us) as ring:
            assert ring.wait_mode == "selector"
            fds = os.pipe()
            try:
                await body(ring, fds)
            finally:
                os.close(fds[0])
                os.close(fds[1])
    uring.run(main)


def test_spin_halves_after_a_miss_and_recovers_on_a_catch():
    async def body(ring, fds):
        assert ring.stats()["spin_next_us"] == 1000
        await _late_read(ring, fds, 0.05)
        assert ring.stats()["spin_next_us"] == 500
        await _late_read(ring, fds, 0.05)
        assert ring.stats()["spin_next_us"] == 250
        # A nop completes inside the submit: the spin catches it.
        assert await ring.nop() == 0
        assert ring.stats()["spin_next_us"] == 1000
    _with_pipe(1000, body)


def test_spin_never_drops_below_a_sixteenth():
    async def body(ring, fds):
        for _ in range(8):
            await _late_read(ring, fds, 0.01)
        assert ring.stats()["spin_next_us"] == 20
    _with_pipe(320, body)
