"""Shared fixtures of the test suite.

``backend`` runs a test once per I/O backend ("io_uring" and "sync"); the
io_uring run is skipped, with the reason, where this process falls back.
``run(fn, **ring_kwargs)`` drives ``await fn(ring)`` under ``curio.run`` inside
``async with uring.Ring(backend=backend, **ring_kwargs) as ring:`` and returns
its result.
"""
from __future__ import annotations

import os
from typing import Any, Awaitable, Callable

import pytest

import uring
import uring.backend
from uring.curio_compat import curio

BACKENDS = ["io_uring", "sync"]


def io_uring_skip_reason() -> str | None:
    """Why the io_uring backend cannot run here, or None if it can."""
    info = uring.backend_info()
    if info.backend != "io_uring":
        return f"io_uring backend unavailable here: {info.backend} backend chosen because {info.reason}"
    return None


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a test runs on; io_uring is skipped where it is missing."""
    if request.param == "io_uring":
        # backend tests may have reset the decision: probe afresh, not a stale patch
        why = io_uring_skip_reason()
        if why:
            print(why)
            pytest.skip(why)
    return request.param


async def in_ring(backend: str, fn: Callable[[Any], Awaitable[Any]], **ring_kwargs: Any) -> Any:
    """``await fn(ring)`` inside ``async with uring.Ring(backend=backend) as ring``."""
    async with uring.Ring(backend=backend, **ring_kwargs) as ring:
        return await fn(ring)


def run_in_ring(backend: str, fn: Callable[[Any], Awaitable[Any]], **ring_kwargs: Any) -> Any:
    """Run ``fn(ring)`` to completion under ``curio.run`` and return its result."""
    return curio.run(in_ring, backend, fn, **ring_kwargs)


@pytest.fixture
def run(backend: str) -> Callable[..., Any]:
    """``run(fn, **ring_kwargs)``: ``run_in_ring`` bound to this test's backend."""
    def runner(fn: Callable[[Any], Awaitable[Any]], **ring_kwargs: Any) -> Any:
        return run_in_ring(backend, fn, **ring_kwargs)
    return runner


def fs_type(path: str | os.PathLike) -> str:
    """The filesystem type holding ``path`` (from /proc/self/mounts), or "?"."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                inside = path == mnt or path.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


@pytest.fixture
def data_dir(tmp_path) -> Any:
    """A per-test directory; tmpfs would hide alignment bugs, so say so if it is one."""
    kind = fs_type(tmp_path)
    if kind == "tmpfs":
        print(f"warning: {tmp_path} is on tmpfs; O_DIRECT alignment is not enforced there")
    return tmp_path
