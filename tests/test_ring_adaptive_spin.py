"""The spin before sleeping adapts: a spin that catches no completion makes
the next one half as long (down to a sixteenth of ``spin_us``), and one that
catches a completion restores the whole spin."""
from __future__ import annotations

import os
import threading

import pytest

import uring
from uring import Ring
from uring.curio_compat import curio

from conftest import io_uring_skip_reason


def test_spin_halves_after_a_miss_and_recovers_on_a_catch():
    why = io_uring_skip_reason()
    if why:
        pytest.skip(why)

    async def main():
        async with Ring(backend="io_uring", spin_us=1000) as ring:
            assert ring.wait_mode == "selector"
            assert ring.stats()["spin_next_us"] == 1000
            r, w = os.pipe()
            try:
                # Completes 50 ms later, from a thread: no timer caps the spin,
                # which runs its full 1 ms and misses.
                timer = threading.Timer(0.05, os.write, (w, b"z"))
                timer.start()
                buf = bytearray(1)
                assert await ring.read(r, buf, 0) == 1
                timer.join()
                assert ring.stats()["spin_next_us"] == 500
                timer = threading.Timer(0.05, os.write, (w, b"z"))
                timer.start()
                assert await ring.read(r, buf, 0) == 1
                timer.join()
                assert ring.stats()["spin_next_us"] == 250
                # A nop completes inside the submit: the spin catches it.
                assert await ring.nop() == 0
                assert ring.stats()["spin_next_us"] == 1000
            finally:
                os.close(r)
                os.close(w)
    uring.run(main)


def test_spin_never_drops_below_a_sixteenth():
    why = io_uring_skip_reason()
    if why:
        pytest.skip(why)

    async def main():
        async with Ring(backend="io_uring", spin_us=320) as ring:
            r, w = os.pipe()
            try:
                for _ in range(8):
                    timer = threading.Timer(0.01, os.write, (w, b"z"))
                    timer.start()
                    assert await ring.read(r, bytearray(1), 0) == 1
                    timer.join()
                assert ring.stats()["spin_next_us"] == 20
            finally:
                os.close(r)
                os.close(w)
    uring.run(main)
