"""Sources and sinks: what they produce, how they resume, what they make visible.

* ``FileSource``: lines (``\\n`` and ``\\r\\n``, empty lines, a last line without
  a newline, multi-byte text across read chunks); the reader resumes at every
  offset it reports; a job resumes mid-file after a failure.
* ``IterableSource`` over lists, ranges, strings, sets, factories, one-shot
  generators; ``GeneratorSource`` with ``count``; parallel splits; offsets.
* ``TcpSource`` with ``stop_when_idle``: lines from several clients (curio
  sockets and a plain socket in a thread).
* ``FileSink``: only committed epochs are visible; stale ``.inprogress`` files
  are removed on start; ``PrintSink`` (capsys), ``NullSink``.
"""
from __future__ import annotations

import collections
import json
import os
import socket
import time

import pytest

from reactor import (CollectSink, FileSink, FileSource, GeneratorSource, IterableSource,
                     JobConfig, NullSink, Operator, OperatorError, PrintSink, Reactor,
                     ReactorError, Source, SourceReader, TcpSource, Topology)
from reactor import curio
from reactor.job import run_topology

from dataflow_support import Count, committed_epoch, go, quiet_logs  # noqa: F401 (quiet_logs: autouse)
from conftest import run_in_ring


def collect(source, **srckw):
    out = CollectSink()
    go(Topology("t").source("s", source, **srckw).sink("out", out))
    return out.results


class Gated(Source):
    """Wraps a source: after each ``step`` elements it releases no more until the state
    dir holds one more committed epoch. With ``checkpoint_every_elements=step`` every
    step then ends in its own commit, however fast the machine (the test observes the
    commits instead of racing them; a 10 s guard per step turns a missing commit into an
    error rather than a hang)."""

    def __init__(self, inner, state_dir, step):
        self.inner, self.state_dir, self.step = inner, str(state_dir), step
        self.max_parallelism = inner.max_parallelism

    def committed(self):
        return committed_epoch(self.state_dir)

    def open(self, index, parallelism, offset):
        gate, inner = self, self.inner.open(index, parallelism, offset)

        class Reader(SourceReader):
            def __init__(self):
                self.base, self.released, self.since = gate.committed(), 0, None

            async def read(self, max_n):
                if self.released >= gate.step:
                    if gate.committed() <= self.base:
                        self.since = self.since or time.monotonic()
                        if time.monotonic() - self.since < 10:
                            return []
                        raise RuntimeError(f"Gated: no epoch committed within 10 s (is "
                                           f"checkpoint_every_elements == {gate.step}?)")
                    self.base, self.released, self.since = gate.committed(), 0, None
                batch = await inner.read(min(max_n, gate.step - self.released))
                if batch:
                    self.released += len(batch)
                return batch

            def offset(self):
                return inner.offset()

            async def close(self):
                await inner.close()
        return Reader()


# ------------------------------------------------------------------------ FileSource

def write(path, text, encoding="utf-8"):
    with open(path, "wb") as f:
        f.write(text.encode(encoding))
    return str(path)


@pytest.mark.parametrize("text,lines", [
    ("a\nb\nc\n", ["a", "b", "c"]),
    ("a\nb\nc", ["a", "b", "c"]),                       # no newline at EOF
    ("only", ["only"]),
    ("", []),
    ("\n", [""]),
    ("a\n\n\nb\n\n", ["a", "", "", "b", ""]),           # empty lines are elements
    ("crlf\r\nline\r\nlast", ["crlf", "line", "last"]),
])
def test_file_source_lines(tmp_path, text, lines):
    assert collect(FileSource(write(tmp_path / "in.txt", text))) == lines


def test_file_source_across_chunks_with_multibyte_text(tmp_path):
    # Lines straddle the 4096-byte reads, some in the middle of a UTF-8 character.
    lines = [("é" * (i % 50)) + f"-{i}-" + ("ж" * (i % 7)) for i in range(3000)]
    p = write(tmp_path / "in.txt", "\n".join(lines))
    assert collect(FileSource(p, chunk=4096), batch_size=37) == lines


def test_file_source_latin1(tmp_path):
    p = write(tmp_path / "in.txt", "café\nnaïve", encoding="latin-1")
    assert collect(FileSource(p, encoding="latin-1")) == ["café", "naïve"]


def test_file_source_missing_file_names_it(tmp_path):
    missing = str(tmp_path / "nope.txt")
    with pytest.raises(Exception) as ei:
        collect(FileSource(missing))
    assert "nope.txt" in str(ei.value)


def test_file_source_arguments():
    with pytest.raises(ValueError, match="chunk"):
        FileSource("x", chunk=1000)
    with pytest.raises(ReactorError, match="byte position"):
        FileSource("x").open(0, 1, "12")


def read_all(reader, max_n):
    """Read to the end; returns [(elements, offset after them), ...]."""
    async def body(ring):
        out = []
        try:
            while True:
                batch = await reader.read(max_n)
                if batch is None:
                    return out
                out.append((batch, reader.offset()))
        finally:
            await reader.close()
    return body


@pytest.mark.parametrize("tail", ["\n", ""], ids=["newline-at-eof", "no-newline-at-eof"])
def test_file_source_resumes_at_every_offset(tmp_path, tail):
    lines = [f"line {i} " + "x" * (i * 37 % 300) for i in range(120)] + ["", "end"]
    p = write(tmp_path / "in.txt", "\n".join(lines) + tail)
    src = FileSource(p, chunk=4096)
    batches = run_in_ring("sync", read_all(src.open(0, 1, None), 5))
    assert [x for b, _ in batches for x in b] == lines
    offsets = [0] + [off for _, off in batches]
    assert offsets[-1] == os.path.getsize(p)
    seen = 0
    for (batch, _), start in zip(batches + [([], None)], offsets):
        # Resuming at the offset after `seen` lines gives exactly the rest.
        rest = run_in_ring("sync", read_all(src.open(0, 1, start), 7))
        assert [x for b, _ in rest for x in b] == lines[seen:], f"resumed at byte {start}"
        seen += len(batch)


def test_file_source_offset_past_the_end_is_refused(tmp_path):
    p = write(tmp_path / "in.txt", "a\nb\n")
    with pytest.raises(ReactorError, match="truncated or replaced"):
        run_in_ring("sync", read_all(FileSource(p).open(0, 1, 100), 5))


ARM = {"on": False}


class CountFailing(Count):
    async def on_element(self, w, ctx):
        if ARM["on"] and w == "w4" and await self.total.get() == 60:
            raise RuntimeError("fail mid-file")
        await Count.on_element(self, w, ctx)


def test_job_resumes_mid_file_after_a_failure(tmp_path):
    words = [f"w{i % 7}" for i in range(700)]
    p = write(tmp_path / "in.txt", "\n".join(words))           # no newline at EOF
    d = str(tmp_path / "state")

    def t(sink, gated=False):
        source = Gated(FileSource(p), d, 50) if gated else FileSource(p)
        return (Topology("f").source("s", source, batch_size=8)
                .key_by(lambda w: w)
                .operator("count", CountFailing).sink("out", sink))
    first = CollectSink()
    ARM["on"] = True
    try:
        with pytest.raises(OperatorError):
            go(t(first, gated=True), state_dir=d, checkpoint_every_elements=50)
    finally:
        ARM["on"] = False
    again = CollectSink()
    r = go(t(again), state_dir=d)
    seqs = collections.defaultdict(list)
    for w, n in first.results + again.results:
        seqs[w].append(n)
    want = collections.Counter(words)
    assert dict(seqs) == {w: list(range(1, c + 1)) for w, c in want.items()}
    assert r.restored_from is not None, "no checkpoint committed before the failure"
    assert r.elements_in < len(words), "the restored run read the file from the start"


# -------------------------------------------------------------------- IterableSource

@pytest.mark.parametrize("data", [list(range(50)), range(50), tuple(range(50))],
                         ids=["list", "range", "tuple"])
@pytest.mark.parametrize("p", [1, 3])
def test_iterable_source_sequences(data, p):
    got = collect(IterableSource(data), parallelism=p, batch_size=4)
    assert sorted(got) == list(data)


def test_iterable_source_factory_and_reiterables():
    assert collect(IterableSource(lambda: (i * i for i in range(10)))) == [i * i for i in range(10)]
    assert sorted(collect(IterableSource(lambda: iter(range(20))), parallelism=3,
                          batch_size=2)) == list(range(20))
    assert collect(IterableSource("abc")) == ["a", "b", "c"]
    assert sorted(collect(IterableSource({5, 1, 3}))) == [1, 3, 5]


def test_iterable_source_one_shot_generator():
    assert collect(IterableSource(x for x in "xyz")) == ["x", "y", "z"]
    with pytest.raises(Exception, match="one-shot"):
        collect(IterableSource(x for x in "xyz"), parallelism=2)
    with pytest.raises(TypeError):
        IterableSource(42)
    with pytest.raises(ValueError, match="rate"):
        IterableSource([1], rate=0)


@pytest.mark.parametrize("data", [collections.deque([1, 2, 3]), {1: "a", 2: "b", 3: "c"}],
                         ids=["deque", "dict"])
def test_iterable_source_deque_and_dict(data):
    assert collect(IterableSource(data)) == list(data)


def test_iterable_source_offsets_resume_exactly():
    data = list(range(100))
    for p in (1, 2):
        for idx in range(p):
            src = IterableSource(data)
            batches = run_in_ring("sync", read_all(src.open(idx, p, None), 6))
            mine = [x for b, _ in batches for x in b]
            assert mine == data[idx::p]
            for batch_no in range(len(batches)):
                off = batches[batch_no][1]
                rest = run_in_ring("sync", read_all(src.open(idx, p, off), 5))
                assert [x for b, _ in rest for x in b] == [x for x in data[off:] if x % p == idx]


def test_generator_source_count_and_parallelism():
    assert collect(GeneratorSource(lambda i: i * 2, count=10)) == [i * 2 for i in range(10)]
    assert collect(GeneratorSource(lambda i: i, count=0)) == []
    got = collect(GeneratorSource(lambda i: i, count=1000), parallelism=3, batch_size=16)
    assert sorted(got) == list(range(1000))
    with pytest.raises(ValueError, match="count"):
        GeneratorSource(str, count=-1)
    with pytest.raises(TypeError):
        GeneratorSource(5)


def test_generator_source_offsets_resume():
    src = GeneratorSource(lambda i: f"e{i}", count=40)
    batches = run_in_ring("sync", read_all(src.open(1, 2, None), 4))
    assert [x for b, _ in batches for x in b] == [f"e{i}" for i in range(1, 40, 2)]
    off = batches[1][1]
    rest = run_in_ring("sync", read_all(src.open(1, 2, off), 4))
    assert [x for b, _ in rest for x in b] == [f"e{i}" for i in range(off, 40) if i % 2 == 1]


def test_generator_source_with_rate_is_complete():
    assert collect(GeneratorSource(lambda i: i, count=200, rate=20_000)) == list(range(200))


# ------------------------------------------------------------------------- TcpSource

def tcp_job(source, sink):
    return (Topology("tcp").source("lines", source).map("up", str.upper).sink("out", sink))


def run_with_clients(source, sink, clients):
    """Run the job in a reactor; ``clients(host, port)`` is a coroutine run alongside it."""
    async def main():
        job = await curio.spawn(run_topology, tcp_job(source, sink),
                                JobConfig(checkpoint_every=None))
        host, port = await source.wait_bound()
        await clients(host, port)
        return await job.join()
    return Reactor(handle_signals=False).run(main)


def test_tcp_source_receives_lines_from_curio_clients():
    src, out = TcpSource(stop_when_idle=True), CollectSink()

    async def clients(host, port):
        a = await curio.open_connection(host, port)
        b = await curio.open_connection(host, port)
        await a.sendall(b"hello\nwor")
        await b.sendall("b1\r\nb2 \xe9\n".encode())
        await a.sendall(b"ld\n")
        await a.close()
        await b.close()
    r = run_with_clients(src, out, clients)
    assert sorted(out.results) == ["B1", "B2 \xc9", "HELLO", "WORLD"]
    assert r.elements_in == 4


def test_tcp_source_receives_lines_from_a_plain_socket_in_a_thread():
    src, out = TcpSource(stop_when_idle=True), CollectSink()
    lines = [f"line {i}" for i in range(500)]

    def blocking_client(host, port):
        with socket.create_connection((host, port)) as s:
            data = ("\n".join(lines) + "\n").encode()
            for i in range(0, len(data), 1000):
                s.sendall(data[i:i + 1000])

    async def clients(host, port):
        await curio.run_in_thread(blocking_client, host, port)
    run_with_clients(src, out, clients)
    assert out.results == [ln.upper() for ln in lines]


def test_tcp_source_keeps_a_last_line_without_newline():
    src, out = TcpSource(stop_when_idle=True), CollectSink()

    async def clients(host, port):
        a = await curio.open_connection(host, port)
        await a.sendall(b"one\ntwo")
        await a.close()
    run_with_clients(src, out, clients)
    assert out.results == ["ONE", "TWO"]


def test_tcp_source_parallelism_is_limited():
    from reactor import TopologyError
    with pytest.raises(TopologyError, match=r"'lines'.*parallelism up to 1"):
        go(Topology("tcp").source("lines", TcpSource(), parallelism=2).sink("out", CollectSink()))


# -------------------------------------------------------------------------- FileSink

WORDS = [f"w{i % 9}" for i in range(900)]


def sink_topo(words_path, sink, op=Count, p=1, gate=None, step=100):
    source = FileSource(words_path)
    if gate is not None:
        source = Gated(source, gate, step)
    return (Topology("fs").source("s", source, batch_size=8)
            .key_by(lambda w: w).operator("count", op, parallelism=p).sink("out", sink))


def parsed(sink):
    return [tuple(json.loads(ln)) for ln in sink.read_committed()]


def check_prefix(rows):
    last = {}
    for w, n in rows:
        assert n == last.get(w, 0) + 1, f"{w!r}: count {n} after {last.get(w, 0)}"
        last[w] = n
    return last


def test_file_sink_writes_committed_epochs(tmp_path):
    p = write(tmp_path / "in.txt", "\n".join(WORDS) + "\n")
    out = tmp_path / "out"
    sink = FileSink(out)
    d = str(tmp_path / "state")
    r = go(sink_topo(p, sink, gate=d), state_dir=d, checkpoint_every_elements=100)
    files = sink.committed_files()
    assert len(files) >= len(WORDS) // 100 and all(os.path.basename(f).startswith("part-0-") for f in files)
    assert not [n for n in os.listdir(out) if n.endswith(".inprogress")]
    epochs = [int(os.path.basename(f)[len("part-0-"):-len(".txt")]) for f in files]
    assert epochs == sorted(epochs) and epochs[-1] <= r.epoch
    assert check_prefix(parsed(sink)) == dict(collections.Counter(WORDS))


def test_file_sink_shows_only_committed_output_after_a_failure(tmp_path):
    p = write(tmp_path / "in.txt", "\n".join(WORDS))
    out, d = tmp_path / "out", str(tmp_path / "state")
    sink = FileSink(out)
    ARM["on"] = True
    try:
        with pytest.raises(OperatorError):
            go(sink_topo(p, sink, op=CountFailing, gate=d, step=60), state_dir=d,
               checkpoint_every_elements=60)
    finally:
        ARM["on"] = False
    before = parsed(sink)
    last = check_prefix(before)          # a prefix of the exactly-once output
    assert 0 < sum(last.values()) == len(before) < len(WORDS)
    # A stale epoch left by some earlier crash, and a file that is not ours.
    (out / "part-0-00000999.txt.inprogress").write_text('["stale",1]\n')
    (out / "notes.txt.inprogress").write_text("not the sink's\n")
    go(sink_topo(p, FileSink(out), op=CountFailing), state_dir=d)
    names = os.listdir(out)
    assert "part-0-00000999.txt.inprogress" not in names
    assert "notes.txt.inprogress" in names
    assert not [n for n in names if n.startswith("part-") and n.endswith(".inprogress")]
    assert check_prefix(parsed(sink)) == dict(collections.Counter(WORDS))


def test_file_sink_parallel_instances_format_prefix_suffix(tmp_path):
    out = tmp_path / "out"
    sink = FileSink(out, prefix="res", suffix=".csv", format=lambda v: f"{v[0]},{v[1]}")
    t = (Topology("fs").source("s", IterableSource(WORDS), batch_size=8).key_by(lambda w: w)
         .operator("count", Count, parallelism=2).sink("out", sink, parallelism=2))
    go(t, state_dir=str(tmp_path / "state"), checkpoint_every_elements=200)
    names = sorted(os.listdir(out))
    assert names and all(n.startswith("res-") and n.endswith(".csv") for n in names)
    assert {n.split("-")[1] for n in names} <= {"0", "1"}
    rows = [(w, int(n)) for w, n in (ln.split(",") for ln in sink.read_committed())]
    assert sorted(rows) == sorted((w, i) for w, c in collections.Counter(WORDS).items()
                                  for i in range(1, c + 1))
    files = sink.committed_files()
    keyed = [(int(f.rsplit("-", 1)[1][:-4]), int(f.rsplit("-", 2)[1])) for f in files]
    assert keyed == sorted(keyed), "committed_files is not in (epoch, instance) order"


def test_file_sink_arguments():
    with pytest.raises(ValueError, match="prefix"):
        FileSink("x", prefix="a/b")
    with pytest.raises(ValueError, match="prefix"):
        FileSink("x", prefix="")


def test_file_sink_of_an_empty_stream_writes_nothing(tmp_path):
    out = tmp_path / "out"
    sink = FileSink(out)
    go(Topology("fs").source("s", IterableSource([])).sink("out", sink))
    assert sink.committed_files() == [] and sink.read_committed() == []


def test_file_sink_restoring_an_older_epoch_is_exactly_once(tmp_path):
    p = write(tmp_path / "in.txt", "\n".join(WORDS))
    out, d = tmp_path / "out", str(tmp_path / "state")
    sink = FileSink(out)

    r = go(sink_topo(p, sink, gate=d), state_dir=d, keep_checkpoints=100,
           checkpoint_every_elements=100)
    assert r.epoch >= 3, r.checkpoints
    go(sink_topo(p, sink), state_dir=d, epoch=1)
    rows = parsed(sink)
    assert check_prefix(rows) == dict(collections.Counter(WORDS))
    assert len(rows) == len(WORDS)


# ------------------------------------------------------------------- Print/Null sinks

def test_print_sink_prints_each_element(capsys):
    go(Topology("p").source("s", IterableSource(["a", "b"])).map("m", str.upper)
       .sink("out", PrintSink()))
    assert capsys.readouterr().out == "A\nB\n"


def test_print_sink_format_and_instance_prefix(capsys):
    go(Topology("p").source("s", IterableSource(range(6)), batch_size=1)
       .sink("out", PrintSink(lambda v: f"<{v}>"), parallelism=2))
    lines = capsys.readouterr().out.splitlines()
    assert all(ln[:3] in ("0> ", "1> ") for ln in lines), lines
    assert {ln[:3] for ln in lines} == {"0> ", "1> "}, "one instance printed everything"
    assert sorted(ln[3:] for ln in lines) == sorted(f"<{i}>" for i in range(6))


def test_print_sink_on_commit_prints_only_committed_epochs(capsys, tmp_path):
    class FailAt(Operator):
        def on_element(self, v, ctx):
            if v == 70:
                raise RuntimeError("stop")
            ctx.emit(v)
    d = str(tmp_path / "state")
    with pytest.raises(OperatorError):
        go(Topology("p").source("s", Gated(IterableSource(range(100)), d, 20), batch_size=5)
           .operator("f", FailAt).sink("out", PrintSink(on_commit=True)),
           state_dir=d, checkpoint_every_elements=20)
    printed = [int(x) for x in capsys.readouterr().out.split()]
    assert printed == list(range(len(printed))) and 20 <= len(printed) < 70, printed
    go(Topology("p").source("s", IterableSource(range(30)))
       .sink("out", PrintSink(on_commit=True)))
    assert capsys.readouterr().out.split() == [str(i) for i in range(30)]


def test_print_sink_to_a_file(tmp_path):
    path = tmp_path / "printed.txt"
    with open(path, "w") as f:
        go(Topology("p").source("s", IterableSource([1, 2])).sink("out", PrintSink(file=f)))
    assert path.read_text() == "1\n2\n"
    with pytest.raises(TypeError):
        PrintSink(format=3)


def test_null_sink_counts():
    sink = NullSink()
    go(Topology("n").source("s", GeneratorSource(lambda i: i, count=1234)).sink("out", sink))
    assert sink.count == 1234
