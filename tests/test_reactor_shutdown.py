"""reactor shutdown: SIGINT/SIGTERM/request_shutdown stop actors cleanly and leak no fds.

The signal tests run a small reactor program in a subprocess (signals and fd
counts are process-wide), wait for it to print "ready", signal it and read
what it printed on the way out.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import reactor
from uring.curio_compat import curio

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent('''
    import os, sys
    sys.path.insert(0, {root!r})
    import reactor
    from uring import DmaFile
    from uring.curio_compat import curio

    mode, data_dir = sys.argv[1], sys.argv[2]
    box = {{}}

    def fds():
        return len(os.listdir("/proc/self/fd"))

    class Worker(reactor.Actor):
        async def on_start(self):
            # each worker holds an open Direct I/O file until it stops
            self.file = await DmaFile.open(os.path.join(data_dir, self.name + ".bin"), "w")
            await self.file.write_at(b"x" * 4096, 0)

        async def on_message(self, m):
            if m == "shutdown":
                reactor.current_reactor().request_shutdown("asked by " + self.name)

        async def on_stop(self):
            await self.file.close()
            print("on_stop", self.name, flush=True)

    async def main():
        r = reactor.current_reactor()
        box["r"] = r
        q = r.queue("workers", 50)
        workers = [await r.start_actor(Worker(name=f"w{{i}}"), queue=q) for i in range(3)]
        async with await DmaFile.open(os.path.join(data_dir, "main.bin"), "w") as f:
            await f.write_at(b"m" * 4096, 0)
            await curio.sleep(0.01)           # let the workers start (open their files)
            print("ready", flush=True)
            if mode in ("request", "request-nosignals"):
                await workers[1].send("shutdown")
            elif mode == "request-main":
                r.request_shutdown("asked by main")
            n = 0
            while True:                        # loop forever, until shut down
                if mode == "busy":
                    n += sum(range(100))
                    await reactor.maybe_yield()
                else:
                    await curio.sleep(0.01)
                    n += 1
        return "main returned"

    if __name__ == "__main__":
        before = fds()
        result = reactor.run(main, handle_signals=(mode != "request-nosignals"))
        after = fds()
        print("result", repr(result), flush=True)
        print("reason", box["r"].shutdown_reason, flush=True)
        print("fds", before, after, flush=True)
''')


def _run_until_ready(tmp_path: Path, mode: str) -> subprocess.Popen:
    script = tmp_path / "prog.py"
    script.write_text(SCRIPT.format(root=str(ROOT)))
    data = tmp_path / "data"
    data.mkdir()
    # stderr goes to a file and stdout stays small, so the child never blocks on a
    # full pipe; stdout is read through proc.stdout only (communicate() would
    # bypass what readline() already buffered)
    err = open(tmp_path / "stderr.txt", "w")
    proc = subprocess.Popen([sys.executable, str(script), mode, str(data)],
                            stdout=subprocess.PIPE, stderr=err, text=True, cwd=str(tmp_path))
    err.close()
    proc.err_path = tmp_path / "stderr.txt"
    line = proc.stdout.readline()            # blocks until the program is ready
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        pytest.fail(f"program did not get ready: {line!r}{proc.stdout.read()}\n"
                    f"{proc.err_path.read_text()}")
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 20,
            on_timeout: str = "program did not exit after shutdown") -> tuple[list[str], str]:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"{on_timeout} (within {timeout} s)\n{proc.stdout.read()}\n"
                    f"{proc.err_path.read_text()}")
    out, err = proc.stdout.read(), proc.err_path.read_text()
    proc.stdout.close()
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return out.splitlines(), err


def _check_clean_exit(lines: list[str], err: str, reason: str) -> None:
    stopped = sorted(line.split()[1] for line in lines if line.startswith("on_stop"))
    assert stopped == ["w0", "w1", "w2"], (lines, err)
    assert "result None" in lines, lines
    assert f"reason {reason}" in lines, lines
    fds = [line for line in lines if line.startswith("fds")]
    assert len(fds) == 1, lines
    _, before, after = fds[0].split()
    assert int(after) == int(before), f"fd leak: {before} open before reactor.run, {after} after"
    assert "Traceback" not in err, err


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("mode", ["sleepy", "busy"])
def test_signal_shuts_down_cleanly(tmp_path, sig, mode):
    proc = _run_until_ready(tmp_path, mode)
    proc.send_signal(sig)
    lines, err = _finish(proc)
    _check_clean_exit(lines, err, signal.Signals(sig).name)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("mode,reason", [("request", "asked by w1"),
                                         ("request-main", "asked by main")])
def test_request_shutdown_from_inside_shuts_down_cleanly(tmp_path, mode, reason):
    proc = _run_until_ready(tmp_path, mode)
    lines, err = _finish(proc)
    _check_clean_exit(lines, err, reason)


@pytest.mark.timeout(60)
def test_request_shutdown_works_without_signal_handling(tmp_path):
    """``handle_signals=False`` (embedding, tests, non-main threads): request_shutdown still works."""
    proc = _run_until_ready(tmp_path, "request-nosignals")
    # the program does not exit by itself if request_shutdown is ignored: bound the wait
    lines, err = _finish(proc, timeout=5, on_timeout="request_shutdown() was ignored with "
                         "handle_signals=False: the reactor kept running")
    _check_clean_exit(lines, err, "asked by w1")


def test_request_shutdown_in_process_returns_none_and_restores_signals():
    before_int = signal.getsignal(signal.SIGINT)
    before_term = signal.getsignal(signal.SIGTERM)
    stopped = []

    class A(reactor.Actor):
        def on_message(self, m):
            pass

        async def on_stop(self):
            stopped.append(self.name)

    async def main():
        r = reactor.current_reactor()
        await r.start_actor(A(name="a1"))
        r.request_shutdown("enough")
        await curio.sleep(5)
        return "not shut down"

    r = reactor.Reactor()
    assert r.run(main) is None
    assert r.shutdown_reason == "enough"
    assert stopped == ["a1"]
    assert signal.getsignal(signal.SIGINT) is before_int
    assert signal.getsignal(signal.SIGTERM) is before_term
    old = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(old)
    assert old == -1


def test_run_returns_main_result_and_passes_args():
    async def main(a, b):
        return a + b

    assert reactor.run(main, 2, 3) == 5


def test_main_exception_propagates():
    async def main():
        raise KeyError("from main")

    with pytest.raises(KeyError, match="from main"):
        reactor.run(main)
    with pytest.raises(reactor.ReactorError):
        reactor.current_reactor()           # cleaned up after a failure too


def test_nested_run_raises_reactor_error():
    async def inner():
        return 1

    async def main():
        with pytest.raises(reactor.ReactorError, match="already running"):
            reactor.run(inner)
        return reactor.current_reactor()

    r = reactor.run(main)
    assert isinstance(r, reactor.Reactor)


def test_current_reactor_outside_raises():
    with pytest.raises(reactor.ReactorError, match="reactor.run"):
        reactor.current_reactor()


def test_run_needs_a_callable():
    with pytest.raises(TypeError):
        reactor.run("main")
    with pytest.raises(reactor.ReactorError):
        reactor.current_reactor()


def test_stats_are_json_serialisable():
    class Echo(reactor.Actor):
        def on_message(self, m):
            pass

    async def main():
        r = reactor.current_reactor()
        q = r.queue("work", 10)
        a = await r.start_actor(Echo(name="echo"), queue=q)
        for i in range(10):
            await a.send(i)
        r.timers.schedule_after(3600, lambda: None)
        await curio.sleep(0.001)
        live = r.stats()
        await a.stop()
        return live, r.stats()

    live, final = reactor.run(main)
    for snap in (live, final):
        text = json.dumps(snap)
        back = json.loads(text)
        assert {"queues", "actors", "io"} <= set(back)
    assert {"default", "reactor", "work"} <= set(live["queues"])
    assert live["queues"]["work"]["shares"] == 10
    assert live["actors"]["echo"]["queue"] == "work"
    assert final["actors"]["echo"]["messages_in"] == 10
    assert live["io"] is not None
    assert live["timers"]["pending"] == 1


def test_main_runs_in_default_queue_and_internals_in_reactor_queue():
    async def main():
        r = reactor.current_reactor()
        return r.scheduler._current._tq.name, r.system.name, r.system.tasks

    name, system, system_tasks = reactor.run(main)
    assert name == "default" and system == "reactor" and system_tasks >= 2


def test_fds_are_not_leaked_in_process(tmp_path):
    from uring import DmaFile

    async def main():
        f = await DmaFile.open(tmp_path / "f.bin", "w")
        await f.write_at(b"z" * 4096, 0)
        await f.close()

    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        reactor.run(main)
    assert len(os.listdir("/proc/self/fd")) == before


def test_reactor_in_a_thread_with_request_shutdown():
    """A reactor runs in a non-main thread (no signal handlers) and request_shutdown stops it."""
    import threading

    out: list = []

    async def main():
        r = reactor.current_reactor()
        r.timers.schedule_after(0.01, r.request_shutdown, "from a timer")
        await curio.sleep(5)
        return "not shut down"

    def target():
        r = reactor.Reactor()
        out.append((r.run(main), r.shutdown_reason))

    before_int = signal.getsignal(signal.SIGINT)
    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive()
    assert out == [(None, "from a timer")]
    assert signal.getsignal(signal.SIGINT) is before_int


def test_reactor_run_in_another_thread_does_not_disturb_this_one():
    """Reactors are per thread (current_reactor() is thread-local); so must the scheduler be.

    A reactor that runs (and ends) in another thread while this one runs must
    not uninstall this reactor's scheduler: its actors must keep working.
    """
    import threading

    class Rec(reactor.Actor):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.got: list = []

        def on_message(self, m):
            self.got.append(m)

    async def other():
        return "other"

    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Rec(name="local"))
        results: list = []
        t = threading.Thread(target=lambda: results.append(reactor.run(other)))
        t.start()
        t.join()                               # blocks this reactor briefly; fine for a test
        await a.send(1)
        await a.send(2)
        await a.stop()
        return results, a.got, reactor.current_reactor() is r

    results, got, same = reactor.run(main)
    assert results == ["other"] and same
    assert got == [1, 2], "the actor lost its scheduler when another thread's reactor ended"
