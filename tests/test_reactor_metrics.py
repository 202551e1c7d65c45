"""reactor.metrics: Prometheus text rendering and the /metrics HTTP server."""
from __future__ import annotations

import re
import signal
import socket
import urllib.error
import urllib.request

import pytest

import reactor
from reactor import Actor, ReactorError
from reactor.metrics import CONTENT_TYPE, escape_label_value, render_prometheus
from uring.curio_compat import curio

# name{labels} value, labels as key="escaped value" pairs (text format 0.0.4).
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf'^[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{{{LABEL}(?:,{LABEL})*\}})? '
                    r'(?:[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|NaN|[-+]Inf)$')
COMMENT = re.compile(r"^# (HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                     r"(counter|gauge|summary|histogram|untyped))$")


def sample_stats() -> dict:
    return {
        "queues": {
            "default": {"shares": 100.0, "runtime_s": 1.25, "vruntime": 0.0125, "slices": 420,
                        "longest_slice_ms": 2.5, "tasks": 3, "yields": 7, "io_charged_s": 0.0},
            'odd "q"\\\n': {"shares": 50.0, "runtime_s": 0.5, "vruntime": 0.01, "slices": 10,
                            "longest_slice_ms": 0.25, "tasks": 1, "yields": 0,
                            "io_charged_s": 0.1},
        },
        "actors": {
            "counter": {"queue": "default", "messages_in": 1000, "messages_out": 990,
                        "batches": 10, "handler_time_s": 0.2, "mailbox_depth": 4,
                        "mailbox_high_water": 128, "mailbox_capacity": 1024, "blocked_s": 0.05,
                        "failures": 1, "restarts": 0, "running": True},
        },
        "timers": {"pending": 2, "fired": 17, "late_max_ms": 1.5, "heap": 3},
        "io": {
            "backend": "io_uring", "reason": 'say "hi"',
            "ops": {"read": {"ops": 10, "bytes": 40960, "errors": 0},
                    "write": {"ops": 5, "bytes": 20480, "errors": 1}},
            "total_ops": 15, "in_flight": 2, "enter_calls": 4, "sqes_submitted": 15,
            "sqes_per_enter": 3.75,
            "latency_us": {"count": 15, "p50": 12.5, "p99": 250.0, "max": 300.0},
            "cq_overflow": 0,
        },
        "stalls": [{"task": "t", "queue": "default", "ms": 12.0, "where": "x.py:1"}],
        "dead_letters": 3,
    }


def samples(text: str) -> dict[str, float]:
    """Sample lines as {'name{labels}': value}."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


def test_render_is_valid_exposition_text():
    text = render_prometheus(sample_stats())
    assert text.endswith("\n")
    seen_types: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        assert line, "no blank lines in the exposition"
        if line.startswith("#"):
            assert COMMENT.match(line), line
            if line.startswith("# TYPE"):
                _, _, name, kind = line.split(" ")
                assert name not in seen_types, f"family {name} declared twice"
                seen_types[name] = kind
                current = name
        else:
            assert SAMPLE.match(line), line
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)
            # every sample belongs to the family declared just before it
            assert name == current or (seen_types[current] == "summary"
                                       and name in (f"{current}_count", f"{current}_sum")), line
    s = samples(text)
    assert s['reactor_info{backend="io_uring",reason="say \\"hi\\""}'] == 1
    assert s['reactor_queue_shares{queue="default"}'] == 100
    assert s['reactor_queue_runtime_seconds_total{queue="default"}'] == 1.25
    assert s['reactor_queue_vruntime{queue="default"}'] == 0.0125
    assert s['reactor_queue_slices_total{queue="default"}'] == 420
    assert s['reactor_queue_longest_slice_seconds{queue="default"}'] == 0.0025
    assert s['reactor_queue_tasks{queue="default"}'] == 3
    assert s['reactor_actor_messages_in_total{actor="counter"}'] == 1000
    assert s['reactor_actor_messages_out_total{actor="counter"}'] == 990
    assert s['reactor_actor_handler_seconds_total{actor="counter"}'] == 0.2
    assert s['reactor_actor_mailbox_depth{actor="counter"}'] == 4
    assert s['reactor_actor_mailbox_high_water{actor="counter"}'] == 128
    assert s['reactor_actor_blocked_seconds_total{actor="counter"}'] == 0.05
    assert s['reactor_io_ops_total{kind="read"}'] == 10
    assert s['reactor_io_bytes_total{kind="write"}'] == 20480
    assert s['reactor_io_errors_total{kind="write"}'] == 1
    assert s["reactor_io_in_flight"] == 2
    assert s["reactor_io_enter_calls_total"] == 4
    assert s["reactor_io_sqes_per_enter"] == 3.75
    assert s['reactor_io_latency_seconds{quantile="0.5"}'] == pytest.approx(12.5e-6)
    assert s['reactor_io_latency_seconds{quantile="0.99"}'] == pytest.approx(250e-6)
    assert s["reactor_io_latency_seconds_count"] == 15
    assert s["reactor_timers_pending"] == 2
    assert s["reactor_timers_fired_total"] == 17
    assert s["reactor_stalls"] == 1
    assert s["reactor_dead_letters_total"] == 3
    assert seen_types["reactor_io_latency_seconds"] == "summary"
    assert seen_types["reactor_actor_messages_in_total"] == "counter"
    assert seen_types["reactor_actor_mailbox_depth"] == "gauge"


def test_label_values_are_escaped():
    assert escape_label_value('a"b') == 'a\\"b'
    assert escape_label_value("a\\b") == "a\\\\b"
    assert escape_label_value("a\nb") == "a\\nb"
    text = render_prometheus(sample_stats())
    # queue 'odd "q"\<newline>' -> odd \"q\"\\\n, on one line
    assert 'reactor_queue_shares{queue="odd \\"q\\"\\\\\\n"} 50.0' in text.splitlines()


def test_render_without_ring_or_sections():
    stats = sample_stats()
    stats["io"] = None
    stats["actors"] = {}
    text = render_prometheus(stats)
    assert 'reactor_info{backend="none"} 1' in text
    assert "reactor_io_" not in text and "reactor_actor_" not in text
    assert render_prometheus({}).startswith("# HELP reactor_info")


def test_render_parses_with_prometheus_client_if_installed():
    parser = pytest.importorskip("prometheus_client.parser")
    families = {f.name: f for f in parser.text_string_to_metric_families(
        render_prometheus(sample_stats()))}
    assert families["reactor_io_latency_seconds"].type == "summary"
    names = {s.labels.get("queue") for s in families["reactor_queue_shares"].samples}
    assert names == {"default", 'odd "q"\\\n'}


class Sink(Actor):
    def on_message(self, message):
        pass


def _get(url: str, method: str = "GET"):
    req = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()


def _raw(host: str, port: int, data: bytes) -> bytes:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_http_server_serves_metrics_404_405_and_survives_bad_clients():
    async def main():
        r = reactor.current_reactor()
        host, port = r.metrics_address            # bound before main starts
        assert port > 0
        sink = await r.start_actor(Sink(name='sink "1"'))
        for i in range(50):
            await sink.send(i)
        await curio.sleep(0.01)
        base = f"http://{host}:{port}"
        results = {}

        async def fetch(key, *args):
            results[key] = await curio.run_in_thread(*args)
        # bad clients first, concurrently with good ones
        async with curio.TaskGroup() as g:
            for i in range(6):
                await g.spawn(fetch, f"get{i}", _get, base + "/metrics")
            await g.spawn(fetch, "garbage", _raw, host, port, b"\x00\xffnot http at all\r\n\r\n")
            await g.spawn(fetch, "eof", _raw, host, port, b"GET /metr")
            await g.spawn(fetch, "huge", _raw, host, port, b"GET /metrics HTTP/1.1\r\nX: "
                          + b"a" * 20000 + b"\r\n\r\n")
            await g.spawn(fetch, "nope", _get, base + "/nope")
            await g.spawn(fetch, "post", _get, base + "/metrics", "POST")
            await g.spawn(fetch, "head", _get, base + "/metrics", "HEAD")
        # keep-alive: two requests on one connection
        results["pipelined"] = await curio.run_in_thread(
            _raw, host, port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
                              b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        results["after"] = await curio.run_in_thread(_get, base + "/metrics")
        return results

    res = reactor.run(main, metrics_port=0, handle_signals=False)
    for i in range(6):
        status, headers, body = res[f"get{i}"]
        assert status == 200
        assert headers["Content-Type"] == CONTENT_TYPE
        s = samples(body)
        assert s['reactor_actor_messages_in_total{actor="sink \\"1\\""}'] == 50
        assert s['reactor_queue_tasks{queue="default"}'] >= 1
        assert 'reactor_info{backend="' in body
    assert res["nope"][0] == 404
    assert res["post"][0] == 405 and res["post"][1]["Allow"] == "GET, HEAD"
    assert res["head"][0] == 200 and res["head"][2] == ""
    assert res["garbage"].startswith(b"HTTP/1.1 400 ")
    assert res["eof"] in (b"", ) or res["eof"].startswith(b"HTTP/1.1 400 ")
    assert res["huge"].startswith(b"HTTP/1.1 431 ")
    pipelined = res["pipelined"]
    assert pipelined.startswith(b"HTTP/1.1 200 OK")
    assert pipelined.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 404 Not Found" in pipelined
    assert res["after"][0] == 200


def test_server_stops_with_the_reactor_and_frees_the_port():
    async def main():
        return reactor.current_reactor().metrics_address
    host, port = reactor.run(main, metrics_port=0, handle_signals=False)
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))                 # nobody listens there any more
        s.listen()


def test_port_in_use_names_the_port_and_main_never_runs():
    ran = []

    async def main():
        ran.append(True)

    before = signal.getsignal(signal.SIGINT)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ReactorError) as info:
            reactor.run(main, metrics_port=port)
    msg = str(info.value)
    assert str(port) in msg and "already in use" in msg and "metrics_port=0" in msg
    assert ran == []
    assert signal.getsignal(signal.SIGINT) is before


def test_invalid_port_is_refused():
    async def main():
        pass
    with pytest.raises(ValueError, match="65535"):
        reactor.run(main, metrics_port=70000, handle_signals=False)
