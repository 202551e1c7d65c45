"""The ``reactor`` command, driven as a user would: in subprocesses.

Every command (run, snapshots, restore, inspect) and every error path: one
``reactor: error:`` line, a ``hint:`` line, no traceback unless ``--debug``,
exit status 1 (2 for usage errors). The samples run through it too.
"""
from __future__ import annotations

import collections
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "samples")
SCRIPT = os.path.join(os.path.dirname(sys.executable), "reactor")
REACTOR = [SCRIPT] if os.access(SCRIPT, os.X_OK) else [sys.executable, "-m", "reactor.cli"]

pytestmark = pytest.mark.timeout(60)


def reactor(*args: Any, cwd: Any = None, env: dict[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess:
    full = dict(os.environ)
    full.update(env or {})
    return subprocess.run(REACTOR + [str(a) for a in args], cwd=cwd, env=full,
                          capture_output=True, text=True, timeout=timeout)


def explain(p: subprocess.CompletedProcess) -> str:
    return f"exit {p.returncode}\n--- stdout ---\n{p.stdout[-3000:]}\n--- stderr ---\n{p.stderr[-3000:]}"


def ok(p: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert p.returncode == 0, explain(p)
    assert "Traceback" not in p.stderr, explain(p)
    return p


def error(p: subprocess.CompletedProcess, *message: str, hint: str = "",
          code: int = 1) -> str:
    """Check a reported error; returns its ``reactor: error:`` line."""
    assert p.returncode == code, explain(p)
    assert "Traceback" not in p.stderr, explain(p)
    lines = p.stderr.splitlines()
    errs = [ln for ln in lines if ln.startswith("reactor: error: ")]
    hints = [ln for ln in lines if ln.startswith("hint: ")]
    assert len(errs) == 1 and len(hints) == 1, explain(p)
    assert lines.index(hints[0]) == lines.index(errs[0]) + 1, explain(p)
    for m in message:
        assert m in errs[0], f"{m!r} not in {errs[0]!r}\n" + explain(p)
    assert hint in hints[0], f"{hint!r} not in {hints[0]!r}\n" + explain(p)
    return errs[0]


def write(path: Any, code: str) -> str:
    with open(path, "w") as f:
        f.write(textwrap.dedent(code))
    return str(path)


# A job that writes (key, running count) to a FileSink; paced so that it
# commits several epochs. COUNT and OUT come from the environment.
COUNTER_JOB = """
    import os
    from reactor import FileSink, GeneratorSource, Operator, Topology
    from statelets import Value

    class Count(Operator):
        total = Value(int, default=0)

        async def on_element(self, x, ctx):
            n = await self.total.get() + 1
            await self.total.set(n)
            ctx.emit([ctx.key, n])

    COUNT = int(os.environ.get("COUNT", "600"))
    topology = (Topology("counter")
                .source("gen", GeneratorSource(lambda i: i, count=COUNT,
                                               rate=float(os.environ.get("RATE", "3000"))))
                .key_by(lambda i: i % 7)
                .operator("count", Count)
                .sink("out", FileSink(os.environ["OUT"])))
"""


def committed(out_dir: Any, first_epoch: int = 0) -> list[Any]:
    """The FileSink records committed by epochs >= first_epoch."""
    from reactor import FileSink
    sink = FileSink(str(out_dir))
    records = []
    for path in sink.committed_files():
        epoch = int(os.path.basename(path).rsplit("-", 1)[1].split(".")[0])
        if epoch >= first_epoch:
            with open(path) as f:
                records.extend(json.loads(ln) for ln in f.read().splitlines())
    return records


def retained(state: Any) -> list[int]:
    from statelets.snapshot import list_epochs
    return list_epochs(os.path.join(state, "snapshots"))


@pytest.fixture
def counter_state(tmp_path):
    """A state dir of COUNTER_JOB run to completion (several epochs); returns (job, state, env)."""
    job = write(tmp_path / "counter.py", COUNTER_JOB)
    env = {"OUT": str(tmp_path / "out"), "COUNT": "600"}
    state = tmp_path / "state"
    p = ok(reactor("run", job, "--state-dir", state, "--checkpoint-every", "0.03", env=env))
    assert re.search(r"epoch \d+ committed", p.stderr), explain(p)
    assert len(retained(state)) >= 2, (retained(state), explain(p))
    return job, state, env


# ------------------------------------------------------------------------------ usage

def test_usage_errors_exit_2():
    p = reactor()
    assert p.returncode == 2 and "COMMAND" in p.stderr, explain(p)
    assert ok(reactor("--help")).stdout.count("snapshots") >= 1
    for sub in ("run", "snapshots", "restore", "inspect"):
        h = ok(reactor(sub, "--help")).stdout
        assert "--debug" in h, h
    assert "not removed" in reactor("restore", "--help").stdout.replace("\n", " ").lower()
    error(reactor("run"), "FILE", hint="reactor run --help", code=2)
    error(reactor("run", "x.py", "--checkpoint-every", "-1"), "--checkpoint-every", code=2)
    error(reactor("run", "x.py", "--epoch", "abc"), "--epoch", code=2)
    error(reactor("restore", "somewhere"), "--epoch", code=2)
    error(reactor("frobnicate"), "invalid choice", code=2)
    error(reactor("run", os.path.join(SAMPLES, "wordcount.py"), "--epoch", "3"),
          "--epoch needs --state-dir", hint="--state-dir", code=2)


# ---------------------------------------------------------------------- loading FILE

def test_run_missing_file(tmp_path):
    error(reactor("run", tmp_path / "nope.py"), "no such file", hint="Topology")
    error(reactor("run", tmp_path), "is a directory", hint="Topology")


def test_run_finds_the_topology_or_says_why_not(tmp_path):
    none = write(tmp_path / "none.py", "x = 1\n")
    error(reactor("run", none), "defines no Topology", hint="global named `topology`")

    several = write(tmp_path / "several.py", """
        from reactor import IterableSource, NullSink, Topology
        a = Topology("a").source("s", IterableSource([1])).sink("o", NullSink())
        b = Topology("b").source("s", IterableSource([1])).sink("o", NullSink())
    """)
    error(reactor("run", several), "several topologies (a, b)", hint="`topology`")

    wrong = write(tmp_path / "wrong.py", "topology = 42\n")
    error(reactor("run", wrong), "the global `topology` is a int", hint="build_topology")

    broken = write(tmp_path / "broken.py", "import no_such_module_for_reactor_cli\n")
    e = error(reactor("run", broken), "failed while it was being loaded",
              "ModuleNotFoundError", hint="--debug")
    assert "no_such_module_for_reactor_cli" in e
    p = reactor("run", broken, "--debug")
    assert p.returncode == 1 and "Traceback" in p.stderr, explain(p)

    exits = write(tmp_path / "exits.py", "import sys\nsys.exit(3)\n")
    error(reactor("run", exits), "sys.exit(3)", hint="__main__")

    # build_topology() is used; the __main__ block does not run; the file's dir is importable.
    write(tmp_path / "helper_mod_for_cli.py", "VALUES = [1, 2, 3]\n")
    built = write(tmp_path / "built.py", """
        from helper_mod_for_cli import VALUES
        from reactor import IterableSource, PrintSink, Topology
        def build_topology():
            return Topology("built").source("s", IterableSource(VALUES)).sink("o", PrintSink())
        if __name__ == "__main__":
            raise SystemExit("the __main__ block ran")
    """)
    p = ok(reactor("run", built))
    assert p.stdout.split() == ["1", "2", "3"], explain(p)
    assert "job 'built' done: epoch 1 committed" in p.stderr, explain(p)
    assert "3 source elements" in p.stderr and "started afresh" in p.stderr, explain(p)

    takes_args = write(tmp_path / "args.py", "def build_topology(n):\n    pass\n")
    error(reactor("run", takes_args), "build_topology() takes arguments (n)")


def test_run_topology_error(tmp_path):
    bad = write(tmp_path / "bad.py", """
        from reactor import IterableSource, Topology
        topology = Topology("bad").source("s", IterableSource([1])).map("m", lambda x: x)
    """)
    e = error(reactor("run", bad, "--state-dir", tmp_path / "st"), "topology 'bad'", "no sink",
              hint="nothing ran")
    assert "dangling" in e


def test_run_operator_error(tmp_path):
    job = write(tmp_path / "opfail.py", """
        from reactor import IterableSource, NullSink, Operator, Topology
        class Boom(Operator):
            async def on_element(self, x, ctx):
                if x == 3:
                    raise ValueError("three is right out")
                ctx.emit(x)
        topology = (Topology("opfail").source("s", IterableSource(range(10)))
                    .operator("boom", Boom).sink("o", NullSink()))
    """)
    state = tmp_path / "st"
    error(reactor("run", job, "--state-dir", state), "operator 'boom/0' failed on element 3",
          "ValueError: three is right out", hint="resumes from it")
    p = reactor("run", job, "--debug")
    assert p.returncode == 1 and "Traceback" in p.stderr, explain(p)
    assert "three is right out" in p.stderr


def test_run_options_reach_the_reactor(tmp_path):
    job = write(tmp_path / "tiny.py", """
        from reactor import GeneratorSource, NullSink, Topology
        topology = (Topology("tiny").source("g", GeneratorSource(lambda i: i, count=300, rate=1000))
                    .sink("o", NullSink()))
    """)
    p = ok(reactor("run", job, "--stats", "0.1", "--metrics-port", "0",
                   "--checkpoint-every", "0"))
    assert "300 source elements" in p.stderr, explain(p)
    assert "ops/s" in p.stderr or "queue" in p.stderr.lower(), explain(p)   # the live view
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        error(reactor("run", job, "--metrics-port", port), f"metrics port {port}",
              "already in use")


def test_run_stopped_by_a_signal(tmp_path):
    job = write(tmp_path / "counter.py", COUNTER_JOB)
    state = tmp_path / "state"
    env = dict(os.environ, OUT=str(tmp_path / "out"), COUNT="100000", RATE="2000")
    proc = subprocess.Popen(REACTOR + ["run", job, "--state-dir", str(state),
                                       "--checkpoint-every", "0.05"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while not retained(state) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "stopped by a signal" in err and "Traceback" not in err, err
    # ... and the next run resumes from what it committed.
    p = ok(reactor("run", job, "--state-dir", state, env={"OUT": str(tmp_path / "out"),
                                                           "COUNT": "1000", "RATE": "100000"}))
    assert "restored from epoch" in p.stderr, explain(p)


# --------------------------------------------------------------------- the wordcount sample

def test_wordcount_sample_run_snapshots_inspect(tmp_path):
    env = {"WORDCOUNT_INPUT": str(tmp_path / "in.txt"), "WORDCOUNT_OUTPUT": str(tmp_path / "out"),
           "WORDCOUNT_LINES": "3000"}
    state = tmp_path / "state"
    p = ok(reactor("run", os.path.join(SAMPLES, "wordcount.py"), "--state-dir", state,
                   "--checkpoint-every", "0.05", cwd=tmp_path, env=env))
    assert "job 'wordcount' done" in p.stderr and "3000 source elements" in p.stderr, explain(p)
    assert not os.path.exists(tmp_path / ".wordcount"), "the env vars must be used"

    with open(tmp_path / "in.txt") as f:
        text = f.read()
    expected = collections.Counter(text.split())
    from reactor import FileSink
    last: dict[str, int] = {}
    for ln in FileSink(str(tmp_path / "out")).read_committed():
        word, n = json.loads(ln)
        last[word] = max(last.get(word, 0), n)
    assert last == dict(expected)

    snaps = ok(reactor("snapshots", state)).stdout
    epochs = retained(state)
    assert epochs and f"lines/0={len(text.encode())}" in snaps, snaps
    assert "wordcount" in snaps and "latest" in snaps, snaps
    for e in epochs:
        assert re.search(rf"^\s*{e}\s", snaps, re.M), snaps

    out = ok(reactor("inspect", state)).stdout
    row = re.search(r"^\s*count\s+total\s+(\d+)\s+(\d+)\s", out, re.M)
    assert row, out
    assert int(row.group(1)) == len(expected) == int(row.group(2)), out
    assert f"epoch {epochs[-1]}" in out and "segment" in out and "live" in out, out
    assert re.search(r"timers:\s+\(none\)", out), out


def test_wordcount_sample_as_a_script(tmp_path):
    env = dict(os.environ, WORDCOUNT_INPUT=str(tmp_path / "in.txt"), WORDCOUNT_LINES="500",
               WORDCOUNT_OUTPUT=str(tmp_path / "out"), WORDCOUNT_STATE=str(tmp_path / "st"))
    p = subprocess.run([sys.executable, os.path.join(SAMPLES, "wordcount.py")], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "wordcount: epoch" in p.stdout, explain(p)
    assert retained(tmp_path / "st"), explain(p)


# -------------------------------------------------------------------------- restore

def test_restore_then_run_resumes_from_that_epoch(counter_state, tmp_path):
    job, state, env = counter_state
    epochs = retained(state)
    target, latest = epochs[0], epochs[-1]
    snaps = ok(reactor("snapshots", state)).stdout
    offset = int(re.search(rf"^\s*{target}\s.*gen/0=(\d+)", snaps, re.M).group(1))
    assert offset < 600, snaps

    p = ok(reactor("restore", state, "--epoch", target))
    new = latest + 1
    assert f"restored epoch {target}" in p.stdout and f"epoch {new}" in p.stdout, explain(p)
    assert "not removed" in p.stdout, explain(p)
    assert retained(state)[-1] == new and all(e <= target or e == new for e in retained(state))
    snaps = ok(reactor("snapshots", state)).stdout
    assert re.search(rf"^\s*{new}\s.*gen/0={offset}\b.*restore of epoch {target}", snaps, re.M), snaps

    # The run resumes from the restored state and offset: it reads only the rest,
    # and the counts it emits continue from the epoch's state up to the full totals.
    p = ok(reactor("run", job, "--state-dir", state, "--checkpoint-every", "0.03", env=env))
    assert f"restored from epoch {new}" in p.stderr, explain(p)
    assert f"{600 - offset} source elements" in p.stderr, explain(p)
    after = committed(env["OUT"], first_epoch=new + 1)
    assert after, "the resumed run committed no output"
    finals: dict[int, int] = {}
    for k, n in after:
        finals[k] = max(finals.get(k, 0), n)
    assert finals == dict(collections.Counter(i % 7 for i in range(600)))
    assert len(after) == 600 - offset

    # Restoring the latest epoch changes nothing.
    latest = retained(state)[-1]
    p = ok(reactor("restore", state, "--epoch", latest))
    assert "already the latest" in p.stdout and retained(state)[-1] == latest


def test_run_with_epoch_resumes_from_it(counter_state):
    job, state, env = counter_state
    target = retained(state)[0]
    p = ok(reactor("run", job, "--state-dir", state, "--epoch", target, env=env))
    assert f"restored from epoch {target}" in p.stderr, explain(p)


def test_unknown_epoch_lists_the_retained_ones(counter_state):
    job, state, env = counter_state
    listed = ", ".join(map(str, retained(state)))
    for args in (("restore", state, "--epoch", 999), ("inspect", state, "--epoch", 999),
                 ("run", job, "--state-dir", state, "--epoch", 999)):
        error(reactor(*args, env=env), "no checkpoint for epoch 999",
              f"retained epochs: {listed}", hint="reactor snapshots")


def test_inspect_an_older_epoch_with_map_statelets_and_timers(tmp_path):
    job = write(tmp_path / "timers.py", """
        from reactor import GeneratorSource, NullSink, Operator, Topology
        from statelets import Map, Value

        class C(Operator):
            total = Value(int, default=0)
            last = Map(int, int)

            async def on_element(self, x, ctx):
                await self.total.set(await self.total.get() + 1)
                await self.last.put(x % 3, x)
                ctx.register_processing_timer(4e9 + x % 5)
                ctx.emit(x)

        class Pass(Operator):
            async def on_element(self, x, ctx):
                ctx.emit(x)

        topology = (Topology("timers").source("g", GeneratorSource(lambda i: i, count=700, rate=3000))
                    .key_by(lambda x: x % 7).operator("c", C, parallelism=2)
                    .operator("stateless", Pass).sink("o", NullSink()))
    """)
    state = tmp_path / "st"
    ok(reactor("run", job, "--state-dir", state, "--checkpoint-every", "0.02"))
    out = ok(reactor("inspect", state)).stdout
    assert re.search(r"^\s*c \(x2\)\s+last \(map\)\s+7\s+21\s", out, re.M), out
    assert re.search(r"^\s+total\s+7\s+7\s", out, re.M), out
    assert re.search(r"^\s*c\s+0\s+35\s*$", out, re.M), out          # timers: event, processing
    assert re.search(r"^\s*stateless\s+\(no state\)", out, re.M), out
    first = retained(state)[0]
    out = ok(reactor("inspect", state, "--epoch", first)).stdout
    assert f"epoch {first} (latest is {retained(state)[-1]}" in out, out
    # Opening an older epoch to look at it changes nothing for the latest one.
    out = ok(reactor("inspect", state)).stdout
    assert re.search(r"^\s*c \(x2\)\s+last \(map\)\s+7\s+21\s", out, re.M), out
    assert retained(state)[-1] in (int(x) for x in re.findall(r"epoch (\d+) \(the latest", out))


# --------------------------------------------------------------------- state dir errors

def test_state_dir_errors(tmp_path):
    missing, afile, plain = tmp_path / "missing", tmp_path / "afile", tmp_path / "plain"
    afile.write_text("x")
    plain.mkdir()
    (plain / "something.txt").write_text("x")
    for cmd in (("snapshots",), ("inspect",), ("restore", "--epoch", "1")):
        error(reactor(cmd[0], missing, *cmd[1:]), "no state dir", hint="--state-dir")
        error(reactor(cmd[0], afile, *cmd[1:]), "is a file", hint="--state-dir")
        error(reactor(cmd[0], plain, *cmd[1:]), "not a reactor state dir", hint="--state-dir")
    assert not missing.exists(), "a read-only command created the state dir"
    job = os.path.join(SAMPLES, "wordcount.py")
    error(reactor("run", job, "--state-dir", afile), "is a file", hint="new directory")
    error(reactor("run", job, "--state-dir", plain), "not empty and is not a reactor state dir",
          hint="new or empty directory")
    error(reactor("run", job, "--state-dir", missing, "--epoch", "2"), "no state dir",
          hint="--epoch")


def test_empty_store(tmp_path):
    (tmp_path / "st" / "snapshots").mkdir(parents=True)
    assert "no committed checkpoints" in ok(reactor("snapshots", tmp_path / "st")).stdout
    error(reactor("inspect", tmp_path / "st"), "no committed checkpoint", hint="run a job")
    error(reactor("restore", tmp_path / "st", "--epoch", "1"), "retained epochs: none")


def test_a_running_job_holds_the_state_dir(counter_state):
    job, state, env = counter_state
    fd = os.open(os.path.join(state, "LOCK"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)     # as a running job's store does
        for args in (("run", job, "--state-dir", state), ("inspect", state),
                     ("restore", state, "--epoch", retained(state)[0])):
            error(reactor(*args, env=env), "is in use", "a job is running",
                  hint="reactor snapshots")
        out = ok(reactor("snapshots", state)).stdout
        assert "a job is running" in out and "latest" in out, out
    finally:
        os.close(fd)


def test_damaged_manifest(counter_state):
    job, state, env = counter_state
    epochs = retained(state)
    with open(os.path.join(state, "snapshots", str(epochs[-1]), "MANIFEST"), "w") as f:
        f.write("garbage\n")
    out = ok(reactor("snapshots", state)).stdout
    assert re.search(rf"^\s*{epochs[-1]}\s.*DAMAGED", out, re.M), out
    error(reactor("inspect", state), "latest checkpoint", "damaged", hint="--epoch")
    error(reactor("run", job, "--state-dir", state, env=env), "MANIFEST",
          hint=f"reactor restore {state} --epoch N")
    ok(reactor("inspect", state, "--epoch", epochs[0]))
    ok(reactor("restore", state, "--epoch", epochs[0]))
    ok(reactor("run", job, "--state-dir", state, env=env))


# ----------------------------------------------------------------------- the TCP sample

def test_tcp_sample_terminates_by_itself():
    p = subprocess.run([sys.executable, os.path.join(SAMPLES, "tcp_lines.py")],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, explain(p)
    lines = p.stdout.splitlines()
    assert "the: 3" in lines and "dog: 3" in lines and "be: 2" in lines, explain(p)
    assert "4 lines received" in p.stdout, explain(p)


def test_tcp_sample_under_reactor_run():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, TCP_LINES_PORT=str(port))
    proc = subprocess.Popen(REACTOR + ["run", os.path.join(SAMPLES, "tcp_lines.py")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except ConnectionRefusedError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
                time.sleep(0.02)
        with conn:
            conn.sendall(b"hello tcp\nhello again\n")
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, (out, err)
    assert out.splitlines() == ["hello: 1", "tcp: 1", "hello: 2", "again: 1"], (out, err)
    assert "2 source elements" in err, err
