"""uring.curio_compat makes curio 1.6 importable and usable on every supported Python."""
from __future__ import annotations

import multiprocessing.connection
import ssl
import sys
import textwrap

from conftest import explain, run_python


def test_a_small_curio_program_runs():
    import uring.curio_compat
    from uring.curio_compat import curio

    async def producer(q):
        for i in range(5):
            await q.put(i)
            await curio.sleep(0)
        await q.put(None)

    async def consumer(q, out):
        while (item := await q.get()) is not None:
            out.append(item)

    async def main():
        q = curio.Queue()
        out = []
        p = await curio.spawn(producer, q)
        c = await curio.spawn(consumer, q, out)
        await p.join()
        await c.join()
        async with curio.timeout_after(5):
            await curio.sleep(0)
        return out

    assert curio.run(main) == [0, 1, 2, 3, 4]
    assert uring.curio_compat.curio is sys.modules["curio"]


def test_patched_names_exist():
    import uring.curio_compat as compat
    for name in ("CHALLENGE", "WELCOME", "FAILURE"):
        assert hasattr(multiprocessing.connection, name)
    assert hasattr(ssl, "wrap_socket")
    if sys.version_info >= (3, 12):
        assert compat.PATCHED, "3.12+ lacks names curio 1.6 needs: the shim must patch them"
        assert "multiprocessing.connection.CHALLENGE" in compat.PATCHED
        assert multiprocessing.connection.CHALLENGE == b"#CHALLENGE#"
    else:
        assert compat.PATCHED == []
    assert compat.apply() == []          # applying again changes nothing


def test_import_in_a_fresh_process():
    code = textwrap.dedent("""
        import uring.curio_compat, curio

        async def child(x):
            await curio.sleep(0)
            return x * 2

        async def main():
            t = await curio.spawn(child, 21)
            return await t.join()

        assert curio.run(main) == 42
        import multiprocessing.connection as c
        assert c.CHALLENGE
        print("ok", uring.curio_compat.PATCHED)
    """)
    proc = run_python(code, timeout=60)
    assert proc.returncode == 0 and "ok" in proc.stdout, explain(proc)
