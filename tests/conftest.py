"""Shared fixtures of the test suite.

``backend`` runs a test once per I/O backend ("io_uring" and "sync"); the
io_uring run is skipped, with the reason, where this process falls back.
``run(fn, **ring_kwargs)`` drives ``await fn(ring)`` under ``uring.run`` inside
``async with uring.Ring(backend=backend, **ring_kwargs) as ring:`` and returns
its result; afterwards the ring must have nothing left in flight.
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import traceback
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


#: Marks a test (or, as ``pytestmark``, a module) that needs the io_uring
#: backend: skipped with the reason where this process falls back.
needs_io_uring = pytest.mark.skipif(io_uring_skip_reason() is not None,
                                    reason=io_uring_skip_reason() or "")


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend a test runs on; io_uring is skipped where it is missing."""
    if request.param == "io_uring":
        why = io_uring_skip_reason()
        if why:
            print(why)
            pytest.skip(why)
    return request.param


async def settle(ring: Any, max_nops: int = 10_000) -> int:
    """Await nops until the ring reports nothing in flight; returns what is left.

    Abandoned operations complete on their own (or are cancelled); each nop is
    a round trip through the reaper, so a bounded number of them lets every
    straggler finish without sleeping. Non-zero means operations that never
    complete.
    """
    for _ in range(max_nops):
        if ring.closed or ring.in_flight == 0:
            return 0
        await ring.nop()
    return 0 if ring.closed else ring.in_flight


async def in_ring(backend: str, fn: Callable[[Any], Awaitable[Any]], *,
                  report: Callable[[int, BaseException | None], None] | None = None,
                  **ring_kwargs: Any) -> Any:
    """``await fn(ring)`` inside ``async with uring.Ring(backend=backend) as ring``.

    Afterwards (pass or fail) the ring is settled and ``report(left, exc)`` is
    told how many operations never completed, before the ring is closed.
    """
    async with uring.Ring(backend=backend, **ring_kwargs) as ring:
        exc: BaseException | None = None
        try:
            return await fn(ring)
        except BaseException as e:
            exc = e
            raise
        finally:
            left = await settle(ring)
            if report is not None:
                report(left, exc)


def run_in_ring(backend: str, fn: Callable[[Any], Awaitable[Any]], *, timeout: float = 90,
                **ring_kwargs: Any) -> Any:
    """Run ``fn(ring)`` to completion under ``curio.run`` and return its result.

    ``curio.run`` runs in a worker thread so that a ring that can never close
    (an operation that never completes makes ``aclose`` block in the kernel,
    out of reach of pytest-timeout's signal) fails this test instead of hanging
    the whole suite.
    """
    box: dict[str, Any] = {}
    body_done = threading.Event()
    done = threading.Event()

    def report(left: int, exc: BaseException | None) -> None:
        box["left"], box["body_exc"] = left, exc
        body_done.set()

    def worker() -> None:
        try:
            # uring.run: the ring attaches to the kernel's selector, as under the
            # reactor runtime (test_ring_wait_modes.py covers plain curio.run).
            box["result"] = uring.run(functools.partial(in_ring, backend, fn, report=report,
                                                         **ring_kwargs))
        except BaseException as e:  # handed to the test's thread
            box["exc"] = e
        finally:
            body_done.set()
            done.set()

    t = threading.Thread(target=worker, name=f"curio-{backend}", daemon=True)
    t.start()
    if not body_done.wait(timeout):
        pytest.fail(f"test body did not finish within {timeout} s on the {backend} backend:\n"
                    + _stack_of(t), pytrace=False)
    left = box.get("left", 0)
    if left:
        msg = (f"{left} operation(s) still in flight on the {backend} ring after the test body "
               f"and 10000 nops: they never complete (a leaked slot?), so closing the ring "
               f"would block forever")
        raise AssertionError(msg) from box.get("body_exc")
    if not done.wait(60):
        pytest.fail(f"closing the {backend} ring did not finish within 60 s:\n" + _stack_of(t),
                    pytrace=False)
    if "exc" in box:
        raise box["exc"]
    return box.get("result")


def _stack_of(t: threading.Thread) -> str:
    frame = sys._current_frames().get(t.ident or -1)
    return "".join(traceback.format_stack(frame)) if frame is not None else "(thread gone)"


def run_with_store(path: str | os.PathLike, body: Callable[[Any], Awaitable[Any]], *,
                   backend: str | None = None, **config: Any) -> Any:
    """Open a ``Store`` at ``path/s`` (``StoreConfig(**config)``) in a ring, return
    ``await body(store)``, and close the store whatever happens."""
    from statelets import Store, StoreConfig

    async def main(ring: Any) -> Any:
        store = await Store.open(os.path.join(path, "s"), ring=ring,
                                 config=StoreConfig(**config))
        try:
            return await body(store)
        finally:
            await store.close()
    return run_in_ring(backend or uring.backend_info().backend, main)


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


def run_python(code: str, *, env: dict[str, str] | None = None,
               timeout: float = 120) -> subprocess.CompletedProcess:
    """Run ``code`` with this interpreter in a fresh process (faulthandler on).

    For what could crash or hang the test process itself, and for checks of
    import-time behaviour. ``env`` entries are added to the current environment.
    """
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-X", "faulthandler", "-c", code],
                          capture_output=True, text=True, env=full_env, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def explain(proc: subprocess.CompletedProcess) -> str:
    """A failure message showing how a subprocess ended."""
    return (f"exit status {proc.returncode}\n--- stdout ---\n{proc.stdout[-3000:]}"
            f"\n--- stderr ---\n{proc.stderr[-3000:]}")
