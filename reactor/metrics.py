"""Prometheus metrics over HTTP, served by the reactor itself (no threads).

``Reactor(metrics_port=9100)`` serves ``GET /metrics`` on 127.0.0.1 in the
Prometheus text exposition format 0.0.4, built from :meth:`Reactor.stats`:
task queues (label ``queue``), actors (label ``actor``), ring I/O (label
``kind``), timers, stalls, dead letters and ``reactor_info``.

The server is a curio accept loop with one small task per connection in the
reactor's own task queue; it speaks just enough HTTP/1.1 (keep-alive, HEAD,
404/405/400/431/503) and every client error stays inside its connection's task.
:func:`render_prometheus` is the pure stats → text step, usable without a server.
"""
from __future__ import annotations

import errno
import logging
import math
import re
import socket
import time
from typing import Any, Iterable
from urllib.parse import urlsplit

from uring.curio_compat import curio

from .errors import ReactorError

log = logging.getLogger("reactor.metrics")

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRICS_PATH = "/metrics"

MAX_HEAD = 8192            # bytes of request line + headers
MAX_CLIENTS = 64           # concurrent connections; more get 503
REQUEST_TIMEOUT = 10.0     # s to receive a whole request head once it started
IDLE_TIMEOUT = 30.0        # s a keep-alive connection may wait for its next request
WRITE_TIMEOUT = 10.0       # s to send one response
LINGER_TIMEOUT = 2.0       # s to drain a client's input before closing on it
LINGER_BYTES = 1 << 20     # most bytes drained so

# -- text exposition format --------------------------------------------------------------


def escape_label_value(value: Any) -> str:
    """A label value as the exposition format wants it: ``\\``, ``"`` and newline escaped."""
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: Any) -> str:
    """A sample value: ints as is, floats shortest round-trip, ``NaN``/``+Inf``/``-Inf``."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    f = float(value)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return repr(f)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float))       # bool included: True renders as 1


class _Family:
    __slots__ = ("name", "type", "help", "samples")

    def __init__(self, name: str, type_: str, help_: str) -> None:
        self.name = name
        self.type = type_
        self.help = help_
        self.samples: list[tuple[str, dict[str, Any], Any]] = []

    def add(self, labels: dict[str, Any] | None, value: Any, suffix: str = "") -> None:
        if value is None or not _number(value):
            return
        self.samples.append((suffix, labels or {}, value))

    def render(self, out: list[str]) -> None:
        if not self.samples:
            return
        out.append(f"# HELP {self.name} {_escape_help(self.help)}")
        out.append(f"# TYPE {self.name} {self.type}")
        for suffix, labels, value in self.samples:
            if labels:
                text = ",".join(f'{k}="{escape_label_value(v)}"' for k, v in labels.items())
                out.append(f"{self.name}{suffix}{{{text}}} {format_value(value)}")
            else:
                out.append(f"{self.name}{suffix} {format_value(value)}")


def _scaled(value: Any, divisor: float) -> Any:
    """``value / divisor`` (ms → s is ``/ 1000``: dividing keeps reprs short); None if not a number."""
    if not _number(value):
        return None
    return value if divisor == 1 else value / divisor


# (stats key, metric suffix, type, help, divisor to base units) per queue / per actor
_QUEUE_METRICS = [
    ("shares", "shares", "gauge", "Shares of the task queue (its weight against the others).", 1),
    ("runtime_s", "runtime_seconds_total", "counter",
     "CPU seconds charged to the task queue (including I/O charges).", 1),
    ("vruntime", "vruntime", "gauge", "Virtual runtime of the task queue (CPU seconds / shares).", 1),
    ("slices", "slices_total", "counter", "Task runs in the task queue.", 1),
    ("longest_slice_ms", "longest_slice_seconds", "gauge",
     "Longest single task run in the task queue, in seconds.", 1000),
    ("tasks", "tasks", "gauge", "Live tasks in the task queue.", 1),
    ("yields", "yields_total", "counter", "Times a task of the queue yielded its slice.", 1),
    ("io_charged_s", "io_charged_seconds_total", "counter",
     "Seconds of I/O cost charged to the task queue.", 1),
]

_ACTOR_METRICS = [
    ("messages_in", "messages_in_total", "counter", "Messages the actor received.", 1),
    ("messages_out", "messages_out_total", "counter", "Messages the actor sent.", 1),
    ("handler_time_s", "handler_seconds_total", "counter",
     "Seconds the actor spent in its handlers.", 1),
    ("mailbox_depth", "mailbox_depth", "gauge", "Messages waiting in the actor's mailbox.", 1),
    ("mailbox_high_water", "mailbox_high_water", "gauge",
     "Largest batch the actor took from its mailbox.", 1),
    ("mailbox_capacity", "mailbox_capacity", "gauge", "Capacity of the actor's mailbox.", 1),
    ("blocked_s", "blocked_seconds_total", "counter",
     "Seconds senders waited for room in the actor's mailbox (backpressure).", 1),
    ("batches", "batches_total", "counter", "Batches the actor took from its mailbox.", 1),
    ("failures", "failures_total", "counter", "Messages whose handler raised.", 1),
    ("restarts", "restarts_total", "counter", "Restarts of the actor under the restart policy.", 1),
    ("running", "running", "gauge", "1 while the actor's task runs.", 1),
]


def render_prometheus(stats: dict[str, Any]) -> str:
    """Render a :meth:`Reactor.stats` snapshot as Prometheus text format 0.0.4.

    Pure: it reads only ``stats``. Missing sections (``io`` is None before the
    ring starts) and non-numeric values are left out rather than guessed.
    """
    families: list[_Family] = []

    def family(name: str, type_: str, help_: str) -> _Family:
        f = _Family(name, type_, help_)
        families.append(f)
        return f

    io = stats.get("io") or None
    info = family("reactor_info", "gauge", "Reactor build information; the value is always 1.")
    labels = {"backend": (io or {}).get("backend") or "none"}
    if io and io.get("reason"):
        labels["reason"] = io["reason"]
    info.add(labels, 1)

    queues = stats.get("queues") or {}
    for key, suffix, type_, help_, scale in _QUEUE_METRICS:
        f = family(f"reactor_queue_{suffix}", type_, help_)
        for name, q in queues.items():
            f.add({"queue": name}, _scaled((q or {}).get(key), scale))

    actors = stats.get("actors") or {}
    for key, suffix, type_, help_, scale in _ACTOR_METRICS:
        f = family(f"reactor_actor_{suffix}", type_, help_)
        for name, a in actors.items():
            f.add({"actor": name}, _scaled((a or {}).get(key), scale))

    if io:
        ops = io.get("ops") or {}
        for key, suffix, help_ in (("ops", "ops_total", "I/O operations completed, by kind."),
                                   ("bytes", "bytes_total", "Bytes transferred, by kind."),
                                   ("errors", "errors_total", "I/O operations that failed, by kind.")):
            f = family(f"reactor_io_{suffix}", "counter", help_)
            for kind, row in ops.items():
                f.add({"kind": kind}, (row or {}).get(key))
        family("reactor_io_in_flight", "gauge",
               "I/O operations submitted and not yet completed.").add(None, io.get("in_flight"))
        family("reactor_io_enter_calls_total", "counter",
               "io_uring_enter system calls (operations for the sync backend).").add(
                   None, io.get("enter_calls"))
        family("reactor_io_sqes_submitted_total", "counter",
               "Submission queue entries submitted.").add(None, io.get("sqes_submitted"))
        family("reactor_io_sqes_per_enter", "gauge",
               "Submission queue entries per io_uring_enter call since the ring started.").add(
                   None, io.get("sqes_per_enter"))
        lat = io.get("latency_us") or {}
        f = family("reactor_io_latency_seconds", "summary",
                   "I/O operation latency since the ring started (log-linear histogram, <= 19 % error).")
        for q, key in (("0.5", "p50"), ("0.99", "p99")):
            f.add({"quantile": q}, _scaled(lat.get(key), 1e6))
        if f.samples:
            f.add(None, lat.get("count"), suffix="_count")
        family("reactor_io_latency_max_seconds", "gauge",
               "Largest I/O operation latency since the ring started.").add(
                   None, _scaled(lat.get("max"), 1e6))
        family("reactor_io_cq_overflow_total", "counter",
               "Completions the kernel dropped because the completion queue was full.").add(
                   None, io.get("cq_overflow"))

    timers = stats.get("timers") or {}
    family("reactor_timers_pending", "gauge", "Timers scheduled and not yet fired or cancelled.").add(
        None, timers.get("pending"))
    family("reactor_timers_fired_total", "counter", "Timer callbacks fired.").add(
        None, timers.get("fired"))
    family("reactor_timers_late_max_seconds", "gauge", "Worst lateness of a timer so far.").add(
        None, _scaled(timers.get("late_max_ms"), 1000))

    stalls = stats.get("stalls")
    if stalls is not None:
        family("reactor_stalls", "gauge",
               "Stalls (a task ran past the stall threshold without yielding) in the "
               "scheduler's log of recent stalls; the log keeps the last 100.").add(
                   None, len(stalls))
    dead = stats.get("dead_letters")
    if isinstance(dead, (list, tuple)):
        dead = len(dead)
    family("reactor_dead_letters_total", "counter",
           "Messages that failed under the skip policy (dead letters).").add(None, dead)

    out: list[str] = []
    for f in families:
        f.render(out)
    return "\n".join(out) + "\n"


# -- binding ----------------------------------------------------------------------------------


def open_metrics_socket(reactor: Any, port: int, host: str = "127.0.0.1") -> Any:
    """Bind and listen on ``host:port``; sets ``reactor.metrics_address`` and logs it.

    Synchronous (binding does not block), so the reactor can fail at startup,
    before ``main`` runs, when the port is taken. Returns a curio socket.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"metrics_port must be an int in 0..65535 (0 = any free port), got {port!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart past TIME_WAIT
        sock.bind((host, port))
        sock.listen(128)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise ReactorError(
                f"metrics port {port} on {host} is already in use (another reactor or exporter "
                f"listens there): pass a free metrics_port=, or metrics_port=0 for any free port, "
                f"or stop the process holding port {port}") from e
        if e.errno == errno.EACCES:
            raise ReactorError(
                f"metrics port {port} on {host}: permission denied (ports below 1024 need "
                f"privileges): pass metrics_port= of 1024 or more, or 0 for any free port") from e
        raise ReactorError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}; "
                           f"check the host and metrics_port=") from e
    bound = sock.getsockname()
    reactor.metrics_address = (host, bound[1])
    log.info("reactor: serving metrics on http://%s:%d%s",
             f"[{host}]" if family == socket.AF_INET6 else host, bound[1], METRICS_PATH)
    return curio.io.Socket(sock)


# -- serving --------------------------------------------------------------------------------


async def serve_metrics(reactor: Any, port: int, host: str = "127.0.0.1", *,
                        sock: Any = None) -> None:
    """Serve ``GET /metrics`` on ``host:port`` until cancelled.

    ``port=0`` binds any free port; the bound ``(host, port)`` is in
    ``reactor.metrics_address`` once bound. ``sock`` is a socket already opened
    by :func:`open_metrics_socket` (the reactor binds before ``main`` starts).
    A taken port raises :class:`~reactor.errors.ReactorError` naming it.
    """
    if sock is None:
        sock = open_metrics_socket(reactor, port, host)
    clients: dict[Any, Any] = {}        # task -> client socket
    try:
        while True:
            try:
                client, addr = await sock.accept()
            except OSError as e:         # EMFILE, ENFILE, ECONNABORTED...: keep serving
                log.warning("metrics: accept failed: %s", e)
                await curio.sleep(0.1)
                continue
            if len(clients) >= MAX_CLIENTS:
                task = await curio.spawn(_refuse, client, clients, daemon=True)
            else:
                task = await curio.spawn(_serve_client, reactor, client, addr, clients, daemon=True)
            clients[task] = client
    finally:
        for task, client in list(clients.items()):
            await task.cancel()
            await client.close()
        await sock.close()
        reactor.metrics_address = None


_END_OF_HEAD = re.compile(rb"\r?\n\r?\n")
_VERSION = re.compile(r"HTTP/(\d)\.(\d)")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            408: "Request Timeout", 431: "Request Header Fields Too Large",
            500: "Internal Server Error", 503: "Service Unavailable",
            505: "HTTP Version Not Supported"}


def _response(status: int, body: bytes, *, content_type: str = "text/plain; charset=utf-8",
              keep_alive: bool = False, head_only: bool = False,
              extra: Iterable[tuple[str, str]] = ()) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS[status]}", f"Content-Type: {content_type}",
             f"Content-Length: {len(body)}",
             f"Connection: {'keep-alive' if keep_alive else 'close'}"]
    lines += [f"{k}: {v}" for k, v in extra]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + body


async def _send(client: Any, data: bytes) -> bool:
    """Send with a timeout; False if the client is gone or too slow."""
    try:
        async with curio.timeout_after(WRITE_TIMEOUT):
            await client.sendall(data)
        return True
    except (OSError, curio.TaskTimeout):
        return False


async def _refuse(client: Any, clients: dict[Any, Any]) -> None:
    me = await curio.current_task()
    try:
        if await _send(client, _response(503, b"too many metrics clients\n",
                                         extra=[("Retry-After", "1")])):
            await _linger_close(client)
    finally:
        clients.pop(me, None)
        await client.close()


class _BadRequest(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status


async def _read_head(client: Any, buf: bytearray) -> bytes | None:
    """Read one request head (through the blank line) from ``client``; None on EOF/idle.

    A keep-alive connection may wait ``IDLE_TIMEOUT`` for its next request; once
    a request has started, all of its head must arrive within ``REQUEST_TIMEOUT``.
    """
    deadline = time.monotonic() + REQUEST_TIMEOUT if buf else None
    while True:
        m = _END_OF_HEAD.search(buf)
        if m is not None:
            head = bytes(buf[:m.start()])
            del buf[:m.end()]
            return head
        if len(buf) > MAX_HEAD:
            raise _BadRequest(431, f"request head larger than {MAX_HEAD} bytes")
        wait = IDLE_TIMEOUT if deadline is None else max(deadline - time.monotonic(), 0.0)
        try:
            async with curio.timeout_after(wait):
                data = await client.recv(4096)
        except curio.TaskTimeout:
            if buf:
                raise _BadRequest(408, "request head not received in time") from None
            return None
        if not data:
            if buf.strip():
                raise _BadRequest(400, "connection closed in the middle of a request head")
            return None
        buf += data
        if deadline is None:
            deadline = time.monotonic() + REQUEST_TIMEOUT


def _parse_head(head: bytes) -> tuple[str, str, tuple[int, int], dict[str, str]]:
    text = head.decode("latin-1")
    lines = text.split("\n")
    while lines and not lines[0].strip():       # tolerate blank lines before a request
        lines.pop(0)
    if not lines:
        raise _BadRequest(400, "empty request")
    parts = lines[0].rstrip("\r").split(" ")
    if len(parts) != 3 or not _TOKEN.fullmatch(parts[0]) or not parts[1]:
        raise _BadRequest(400, "malformed request line")
    method, target, version = parts
    v = _VERSION.fullmatch(version)
    if v is None:
        raise _BadRequest(400, "malformed HTTP version")
    ver = (int(v.group(1)), int(v.group(2)))
    if ver[0] != 1:
        raise _BadRequest(505, f"HTTP version {version} not supported; use HTTP/1.1")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        line = line.rstrip("\r")
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN.fullmatch(name):
            raise _BadRequest(400, "malformed header line")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return method, target, ver, headers


def _path_of(target: str) -> str:
    if target.startswith("/"):
        return target.split("?", 1)[0].split("#", 1)[0]
    if target.lower().startswith(("http://", "https://")):
        return urlsplit(target).path or "/"
    return target                     # "*" or garbage: never a known path


async def _serve_client(reactor: Any, client: Any, addr: Any, clients: dict[Any, Any]) -> None:
    me = await curio.current_task()
    buf = bytearray()
    linger = False                       # we close first: drain what the client still sends
    try:
        while True:
            try:
                head = await _read_head(client, buf)
                if head is None:
                    return
                method, target, version, headers = _parse_head(head)
            except _BadRequest as e:
                linger = await _send(client, _response(e.status, f"{e}\n".encode()))
                return
            tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
            keep_alive = "keep-alive" in tokens if version < (1, 1) else "close" not in tokens
            # Bodies are not read: a request carrying one ends its connection.
            length = headers.get("content-length", "0").strip() or "0"
            if "transfer-encoding" in headers or not length.isdigit() or int(length) > 0:
                keep_alive = False
            path = _path_of(target)
            head_only = method == "HEAD"
            if path != METRICS_PATH:
                resp = _response(404, f"not found: {path[:200]}; metrics are at {METRICS_PATH}\n"
                                 .encode("utf-8", "replace"), keep_alive=keep_alive,
                                 head_only=head_only)
            elif method not in ("GET", "HEAD"):
                resp = _response(405, f"method {method} not allowed; use GET\n".encode(),
                                 keep_alive=keep_alive, extra=[("Allow", "GET, HEAD")])
            else:
                try:
                    body = render_prometheus(reactor.stats()).encode("utf-8")
                    resp = _response(200, body, content_type=CONTENT_TYPE,
                                     keep_alive=keep_alive, head_only=head_only)
                except Exception:
                    log.exception("metrics: rendering the stats failed")
                    resp = _response(500, b"rendering the stats failed; see the reactor's log\n")
                    keep_alive = False
            if not await _send(client, resp):
                return
            if not keep_alive:
                linger = True
                return
    except OSError as e:                 # reset by peer and the like: the client's problem
        log.debug("metrics: client %s: %s", addr, e)
    except Exception:                    # a bug here must not take the reactor down
        log.exception("metrics: client %s failed", addr)
    finally:
        clients.pop(me, None)
        if linger:
            await _linger_close(client)
        await client.close()


async def _linger_close(client: Any) -> None:
    """Half-close, then read and drop what the client still sends (bounded).

    Closing a socket with unread input makes the kernel send a reset, which can
    destroy a response (400, 431, 405 to a request with a body) before the
    client has read it.
    """
    try:
        await client.shutdown(socket.SHUT_WR)
        async with curio.ignore_after(LINGER_TIMEOUT):
            drained = 0
            while drained < LINGER_BYTES:
                data = await client.recv(65536)
                if not data:
                    break
                drained += len(data)
    except OSError:
        pass


__all__ = ["CONTENT_TYPE", "escape_label_value", "format_value", "open_metrics_socket",
           "render_prometheus", "serve_metrics"]
