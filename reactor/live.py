"""A ``top``-like live view of the reactor, printed every ``stats_interval`` seconds.

``Reactor(stats_interval=1.0)`` runs :func:`live_view` on stderr: task queues
(shares, CPU %, virtual runtime, slices/s, longest slice, tasks), actors
(messages in/out per second, handler %, mailbox depth/high water, time senders
were blocked) and one I/O line (ops/s, MB/s, in flight, SQEs per enter,
p50/p99 latency). Rates are deltas between two snapshots; on a terminal the
screen is cleared between frames, elsewhere frames are separated by a blank
line. :func:`render_frame` is the pure formatting step.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

from uring.curio_compat import curio

log = logging.getLogger("reactor.live")

CLEAR = "\x1b[H\x1b[2J"       # cursor home, clear screen
MAX_ROWS = 20                 # rows per table; the rest is summarised in one line


def _rate(cur: Any, prev: Any, dt: float) -> float | None:
    """Per-second rate of a counter; None without a previous value or time."""
    if not isinstance(cur, (int, float)) or dt <= 0 or prev is None:
        return None
    p = prev if isinstance(prev, (int, float)) else 0
    delta = cur - p
    if delta < 0:                 # counter reset (e.g. an actor re-created): count from 0
        delta = cur
    return delta / dt


def _si(x: float | None, digits: int = 1) -> str:
    """Compact number: 950, 12.3k, 4.5M; '-' for None."""
    if x is None:
        return "-"
    a = abs(x)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if a >= scale:
            return f"{x / scale:.{digits}f}{unit}"
    if a >= 100 or x == int(x):
        return f"{x:.0f}"
    return f"{x:.{digits}f}"


def _fixed(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> list[str]:
    """Columns padded to their widest cell; the first ``left`` are left-aligned."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i < left else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(headers)] + [line(r) for r in rows]


def _name(name: Any, width: int = 28) -> str:
    s = str(name).replace("\n", " ")
    return s if len(s) <= width else s[:width - 1] + "…"


def render_frame(prev_stats: dict[str, Any] | None, stats: dict[str, Any], dt: float,
                 *, max_rows: int = MAX_ROWS) -> str:
    """One frame of the live view from two :meth:`Reactor.stats` snapshots ``dt`` s apart.

    ``prev_stats`` may be None (first frame): rates then show as ``-``. A frame
    has no blank lines, so a blank line separates frames in a log.
    """
    prev_stats = prev_stats or {}
    have_prev = bool(prev_stats) and dt > 0
    lines: list[str] = []

    io = stats.get("io") or {}
    timers = stats.get("timers") or {}
    ptimers = prev_stats.get("timers") or {}
    fired = _rate(timers.get("fired"), ptimers.get("fired", 0) if have_prev else None, dt)
    lines.append(
        f"reactor  interval {dt:.2f} s  backend {io.get('backend', 'none')}  "
        f"timers {timers.get('pending', 0)} pending, {_si(fired)} fired/s  "
        f"stalls {len(stats.get('stalls') or ())}  dead letters {stats.get('dead_letters', 0)}")

    # -- queues ------------------------------------------------------------------------
    queues = stats.get("queues") or {}
    pqueues = prev_stats.get("queues") or {}
    qrows = []
    for name, q in queues.items():
        p = pqueues.get(name, {}) if have_prev else None
        cpu = _rate(q.get("runtime_s"), None if p is None else p.get("runtime_s", 0), dt)
        slices = _rate(q.get("slices"), None if p is None else p.get("slices", 0), dt)
        qrows.append((cpu if cpu is not None else -1.0, name, [
            _name(name), f"{q.get('shares', 0):g}", _fixed(None if cpu is None else cpu * 100),
            f"{q.get('vruntime', 0.0):.6f}", _si(slices), f"{q.get('longest_slice_ms', 0.0):.3f}",
            str(q.get("tasks", 0))]))
    qrows.sort(key=lambda r: (-r[0], r[1]))
    lines += _table(["QUEUE", "SHARES", "CPU%", "VRUNTIME", "SLICES/S", "LONGEST MS", "TASKS"],
                    [r[2] for r in qrows[:max_rows]])
    if len(qrows) > max_rows:
        lines.append(f"… and {len(qrows) - max_rows} more queues")

    # -- actors --------------------------------------------------------------------------
    actors = stats.get("actors") or {}
    pactors = prev_stats.get("actors") or {}
    if actors:
        arows = []
        for name, a in actors.items():
            p = pactors.get(name, {}) if have_prev else None   # new actor: counted from 0

            def r(key: str) -> float | None:
                return _rate(a.get(key), None if p is None else p.get(key, 0), dt)
            handler, blocked = r("handler_time_s"), r("blocked_s")
            arows.append((handler if handler is not None else -1.0, name, [
                _name(name), _si(r("messages_in")), _si(r("messages_out")),
                _fixed(None if handler is None else handler * 100),
                f"{a.get('mailbox_depth', 0)}/{a.get('mailbox_high_water', 0)}",
                _fixed(None if blocked is None else blocked * 1000)]))
        arows.sort(key=lambda r: (-r[0], r[1]))
        lines += _table(["ACTOR", "IN/S", "OUT/S", "HANDLER%", "MAILBOX D/HW", "BLOCKED MS/S"],
                        [r[2] for r in arows[:max_rows]])
        if len(arows) > max_rows:
            lines.append(f"… and {len(arows) - max_rows} more actors")

    # -- I/O -----------------------------------------------------------------------------
    if io:
        pio = (prev_stats.get("io") or {}) if have_prev else None
        ops = _rate(io.get("total_ops"), None if pio is None else pio.get("total_ops", 0), dt)
        nbytes = sum((row or {}).get("bytes", 0) for row in (io.get("ops") or {}).values())
        pbytes = None if pio is None else sum((row or {}).get("bytes", 0)
                                              for row in (pio.get("ops") or {}).values())
        bps = _rate(nbytes, pbytes, dt)
        # SQEs per enter over this interval; lifetime ratio without a previous snapshot.
        spe: float | None = io.get("sqes_per_enter")
        if pio is not None:
            d_enter = io.get("enter_calls", 0) - pio.get("enter_calls", 0)
            d_sqes = io.get("sqes_submitted", 0) - pio.get("sqes_submitted", 0)
            spe = d_sqes / d_enter if d_enter > 0 else None
        lat = io.get("latency_us") or {}
        lines.append(
            f"I/O  {_si(ops)} ops/s  {_fixed(None if bps is None else bps / 1e6, 2)} MB/s  "
            f"in flight {io.get('in_flight', 0)}  SQEs/enter {_fixed(spe, 2)}  "
            f"p50 {_fixed(lat.get('p50'))} µs  p99 {_fixed(lat.get('p99'))} µs (since start)")
    else:
        lines.append("I/O  ring not running")
    return "\n".join(lines) + "\n"


def _isatty(out: Any) -> bool:
    try:
        return bool(out.isatty())
    except (AttributeError, ValueError, OSError):
        return False


async def live_view(reactor: Any, interval: float, out: TextIO | None = None) -> None:
    """Print a frame of :func:`render_frame` to ``out`` every ``interval`` seconds, forever.

    ``out`` defaults to ``sys.stderr`` as it is when the view starts. A TTY is
    cleared between frames; other outputs get frames separated by a blank line.
    If ``out`` fails (closed, broken pipe) the view logs it and stops.
    """
    if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not interval > 0:
        raise ValueError(f"live view interval must be a positive number of seconds, got {interval!r}")
    if out is None:
        out = sys.stderr
    tty = _isatty(out)
    clock = time.monotonic
    prev, t_prev = reactor.stats(), clock()
    first = True
    while True:
        await curio.sleep(interval)
        stats, now = reactor.stats(), clock()
        frame = render_frame(prev, stats, now - t_prev)
        prev, t_prev = stats, now
        text = CLEAR + frame if tty else frame if first else "\n" + frame
        first = False
        try:
            out.write(text)
            out.flush()
        except (OSError, ValueError) as e:
            log.warning("live view stopped: cannot write to %r: %s", out, e)
            return


__all__ = ["live_view", "render_frame"]
