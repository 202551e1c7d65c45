"""reactor.live: the top-like frame and the live view task."""
from __future__ import annotations

import io
import re

import pytest

import reactor
from reactor import Actor
from reactor.live import CLEAR, live_view, render_frame
from uring.curio_compat import curio


def snapshot(t: float) -> dict:
    """Stats of a reactor ``t`` seconds into a steady load."""
    return {
        "queues": {
            "default": {"shares": 100.0, "runtime_s": 0.25 * t, "vruntime": 0.0025 * t,
                        "slices": int(1000 * t), "longest_slice_ms": 1.5, "tasks": 3},
            "compaction": {"shares": 10.0, "runtime_s": 0.05 * t, "vruntime": 0.005 * t,
                           "slices": int(100 * t), "longest_slice_ms": 0.75, "tasks": 1},
        },
        "actors": {
            "splitter": {"messages_in": int(2000 * t), "messages_out": int(10000 * t),
                         "handler_time_s": 0.1 * t, "mailbox_depth": 7,
                         "mailbox_high_water": 256, "blocked_s": 0.002 * t},
        },
        "timers": {"pending": 4, "fired": int(10 * t)},
        "io": {"backend": "sync", "ops": {"write": {"ops": int(500 * t), "bytes": int(2e6 * t),
                                                    "errors": 0}},
               "total_ops": int(500 * t), "in_flight": 3, "enter_calls": int(100 * t),
               "sqes_submitted": int(400 * t), "sqes_per_enter": 4.0,
               "latency_us": {"count": 1, "p50": 12.5, "p99": 480.0, "max": 500.0}},
        "stalls": [],
        "dead_letters": 0,
    }


def row(frame: str, name: str) -> list[str]:
    for line in frame.splitlines():
        if line.split() and line.split()[0] == name:
            return line.split()
    raise AssertionError(f"no row {name!r} in\n{frame}")


def test_render_frame_rates_from_deltas():
    frame = render_frame(snapshot(10.0), snapshot(12.0), 2.0)
    # QUEUE SHARES CPU% VRUNTIME SLICES/S LONGEST MS TASKS
    default = row(frame, "default")
    assert default[1] == "100" and default[2] == "25.0"          # 0.5 s CPU in 2 s
    assert default[4] == "1.0k" and default[5] == "1.500" and default[6] == "3"
    compaction = row(frame, "compaction")
    assert compaction[2] == "5.0" and compaction[4] == "100"
    # highest CPU first
    assert frame.index("default") < frame.index("compaction")
    # ACTOR IN/S OUT/S HANDLER% MAILBOX BLOCKED MS/S
    splitter = row(frame, "splitter")
    assert splitter[1:] == ["2.0k", "10.0k", "10.0", "7/256", "2.0"]
    io_line = next(line for line in frame.splitlines() if line.startswith("I/O"))
    assert "500 ops/s" in io_line and "2.00 MB/s" in io_line and "in flight 3" in io_line
    assert "SQEs/enter 4.00" in io_line and "p50 12.5 µs" in io_line and "p99 480.0 µs" in io_line
    assert "4 pending" in frame and "10 fired/s" in frame


def test_render_frame_first_frame_and_new_actor():
    first = render_frame(None, snapshot(1.0), 1.0)
    assert row(first, "default")[2] == "-" and row(first, "splitter")[1] == "-"
    prev = snapshot(1.0)
    del prev["actors"]["splitter"]           # started during the interval: counted from 0
    frame = render_frame(prev, snapshot(1.0), 1.0)
    assert row(frame, "splitter")[1] == "2.0k"
    stats = snapshot(1.0)
    stats["io"] = None
    assert "ring not running" in render_frame(None, stats, 1.0)


def test_render_frame_truncates_long_tables():
    stats = snapshot(1.0)
    stats["actors"] = {f"a{i}": stats["actors"]["splitter"] for i in range(30)}
    frame = render_frame(stats, stats, 1.0, max_rows=5)
    assert "… and 25 more actors" in frame
    assert sum(1 for line in frame.splitlines() if re.match(r"a\d+ ", line)) == 5


class Busy(Actor):
    def on_message(self, message):
        sum(range(200))


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("tty", [False, True])
def test_live_view_writes_frames(tty):
    out = FakeTTY() if tty else io.StringIO()

    async def main():
        r = reactor.current_reactor()
        actor = await r.start_actor(Busy(name="busy-actor"))
        view = await curio.spawn(live_view, r, 0.05, out, daemon=True)
        for i in range(400):
            await actor.send(i)
            if i % 50 == 0:
                await curio.sleep(0.02)
        await curio.sleep(0.2)
        await view.cancel()

    reactor.run(main, handle_signals=False)
    text = out.getvalue()
    if tty:
        frames = text.split(CLEAR)[1:]
        assert text.startswith(CLEAR)
    else:
        frames = text.split("\n\n")
        assert CLEAR not in text
    assert len(frames) >= 3
    assert "busy-actor" in text and "default" in text and "QUEUE" in text and "I/O" in text
    rates = [float(line.split()[1].rstrip("k")) for line in text.splitlines()
             if line.startswith("busy-actor")]
    assert any(r > 0 for r in rates)


def test_live_view_rejects_bad_interval():
    async def main():
        await live_view(reactor.current_reactor(), 0)
    with pytest.raises(ValueError, match="interval"):
        reactor.run(main, handle_signals=False)


def test_stats_interval_runs_the_view(capsys):
    async def main():
        await curio.sleep(0.25)
    reactor.run(main, handle_signals=False, stats_interval=0.05)
    err = capsys.readouterr().err
    assert "QUEUE" in err and "reactor  interval" in err
