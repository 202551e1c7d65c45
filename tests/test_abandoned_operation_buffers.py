"""Memory handed to the kernel stays the kernel's until the completion arrives.

When a task is cancelled (or an operation fails) while its SQE is in flight,
every buffer of the operation must stay alive and out of the pool until the
CQE is reaped (DESIGN.md "uring", IO_URING_NOTES.md "Pitfalls"), and nothing
about the abandoned operation may break the interpreter later.

A pipe makes "still in flight" deterministic: a read from an empty pipe stays
pending until someone writes (io_uring ignores the offset on pipes). What
could crash the interpreter runs in a subprocess.
"""
from __future__ import annotations

import os
import textwrap

import pytest

from uring.curio_compat import curio

from conftest import explain, run_python, settle


@pytest.fixture
def io_uring_only(backend):
    if backend != "io_uring":
        pytest.skip("the sync backend runs each operation to completion: nothing is ever "
                    "in flight to abandon, and it cannot read pipes at an offset")
    return backend


async def start_then_cancel(coro_fn, *args):
    """Spawn ``coro_fn(*args)``, let it submit, then cancel it without waiting.

    Returns the task; its operation is abandoned but not yet reaped (the reaper
    has not run since), so it is certainly still in flight.
    """
    task = await curio.spawn(coro_fn, *args)
    await curio.sleep(0)
    await task.cancel(blocking=False)
    return task


async def finish(task) -> None:
    try:
        await task.join()
    except curio.TaskError:
        pass


def test_a_pooled_buffer_of_an_abandoned_read_is_pinned(run, io_uring_only):
    async def main(ring):
        r, w = os.pipe()
        try:
            buf = ring.buffers.get(4096)
            task = await start_then_cancel(ring.read, r, buf, 0, 4096)
            assert ring.in_flight == 1
            assert buf.in_kernel
            buf.release()
            lent = [ring.buffers.get(4096) for _ in range(4)]
            assert all(b is not buf for b in lent)
            for b in lent:
                b.release()
            await finish(task)
            assert await settle(ring) == 0
            assert not buf.in_kernel
            assert ring.buffers.outstanding == 0
        finally:
            os.close(r)
            os.close(w)
    run(main)


def test_pooled_buffers_of_an_abandoned_readv_are_pinned(run, io_uring_only):
    """``readv`` into pool buffers, cancelled in flight: each buffer must be pinned
    (``in_kernel``) and must not be lent again before the completion."""
    async def main(ring):
        r, w = os.pipe()
        try:
            bufs = [ring.buffers.get(4096) for _ in range(3)]
            task = await start_then_cancel(ring.readv, r, bufs, 0)
            assert ring.in_flight == 1                      # not completed yet
            pinned = [b.in_kernel for b in bufs]
            for b in bufs:
                b.release()
            lent = [ring.buffers.get(4096) for _ in range(8)]
            reused = [b for b in bufs if any(b is x for x in lent)]
            for b in lent:
                b.release()
            await finish(task)
            assert await settle(ring) == 0
            assert ring.buffers.outstanding == 0
            assert pinned == [True, True, True], \
                "buffers of an abandoned readv are not pinned while the kernel owns them"
            assert not reused, "the pool lent buffers an abandoned readv still reads into"
        finally:
            os.close(r)
            os.close(w)
    run(main)


# A DmaFile whose file grows between DmaFile._fill's first (short, aligned) read
# and its second read -- a reader tailing a file being appended. A pipe holds the
# second read in flight. Runs in a subprocess (with the garbage collector off)
# because of the crash below.
READ_AT_CONTINUATION = textwrap.dedent("""
    import gc, json, os, sys
    gc.disable()
    from uring.curio_compat import curio
    import uring
    from uring import DmaFile

    async def main():
        out = {}
        async with uring.Ring(backend="io_uring") as ring:
            r, w = os.pipe()
            f = DmaFile(ring, r, "tail.log", direct=False, mem_align=512,
                        offset_align=512, writable=False)
            os.write(w, b"a" * 512)          # the first read returns 512 of 1024
            lent = []
            get = ring.buffers.get
            ring.buffers.get = lambda n: lent.append(get(n)) or lent[-1]
            task = await curio.spawn(f.read_at, 0, 1024)
            for _ in range(10000):           # until the second read is in flight
                if ring.stats()["ops"].get("read", {}).get("ops") == 1 and ring.in_flight:
                    break
                await curio.sleep(0)
            del ring.buffers.get
            await task.cancel(blocking=False)
            buf = lent[0]
            out["in_flight"] = ring.in_flight
            out["pinned"] = buf.in_kernel
            await task.wait()
            out["in_flight_after_release"] = ring.in_flight
            again = ring.buffers.get(1024)
            out["lent_again_while_in_flight"] = again is buf and out["in_flight_after_release"] > 0
            again.release()
            os.write(w, b"b" * 512)
            while ring.in_flight:
                await ring.nop()
            out["outstanding"] = ring.buffers.outstanding
        print(json.dumps(out))
        sys.stdout.flush()
        os._exit(0)                          # skip the final collection (see the crash test)

    curio.run(main)
""")


def test_a_read_at_continuation_keeps_its_pool_buffer_pinned(io_uring_only):
    proc = run_python(READ_AT_CONTINUATION, timeout=60)
    assert proc.returncode == 0, explain(proc)
    import json
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["in_flight"] == 1, out
    # DmaFile._fill reads the rest into buf.view[got:size], a slice the ring does
    # not pin: the pool buffer goes back to the pool while the kernel owns it.
    assert out["pinned"], f"read_at's pool buffer is not pinned during its second read: {out}"
    assert not out["lent_again_while_in_flight"], out
    assert out["outstanding"] == 0, out


# The interpreter must survive a garbage collection after an io_uring operation
# on a bytearray/memoryview failed or was cancelled while its traceback sits in
# a reference cycle (an exception stored in a task, a logger, pytest.raises).
GC_AFTER_ABANDON = textwrap.dedent("""
    import gc, os, sys
    from uring.curio_compat import curio
    import uring

    BACKEND, SCENARIO = sys.argv[1], sys.argv[2]

    class Holder:
        pass

    async def main():
        async with uring.Ring(backend=BACKEND) as ring:
            for i in range(20):
                if SCENARIO == "failed":
                    fd = os.open(os.devnull, os.O_RDONLY)
                    os.close(fd)
                    try:
                        await ring.read(fd + 5000, bytearray(4096), 0, name="x")
                    except OSError as e:
                        h = Holder(); h.me = h; h.error = e   # the error kept in a cycle
                        del h, e
                else:
                    r, w = os.pipe()
                    task = await curio.spawn(ring.read, r, memoryview(bytearray(4096)), 0)
                    await curio.sleep(0)
                    await task.cancel()       # the task keeps its TaskCancelled: a cycle
                    del task
                    os.close(w); os.close(r)
                while ring.in_flight:
                    await ring.nop()
                gc.collect()
        print("survived")

    curio.run(main)
""")


@pytest.mark.parametrize("scenario", ["failed", "cancelled"])
def test_gc_survives_abandoned_operations_on_bytearrays(backend, scenario):
    if backend == "sync" and scenario == "cancelled":
        pytest.skip("the sync backend cannot read a pipe at an offset")
    code = GC_AFTER_ABANDON.replace('sys.argv[1], sys.argv[2]', f'{backend!r}, {scenario!r}')
    proc = run_python(code, timeout=90)
    assert proc.returncode == 0 and "survived" in proc.stdout, (
        f"the interpreter crashed in a garbage collection after a {scenario} io_uring "
        f"operation on a bytearray (a cffi from_buffer of a memoryview, kept with that "
        f"memoryview, collected in one cycle):\n" + explain(proc))
