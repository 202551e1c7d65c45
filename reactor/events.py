"""What travels between operator instances: data batches and control events.

A mailbox item is one of these. Data moves in :class:`DataBatch` es (one await
per batch); watermarks and epoch barriers are separate items, so they keep
their place in the stream relative to the data around them.
"""
from __future__ import annotations

import math
from typing import Any

INF = math.inf


class DataBatch:
    """Elements from one upstream channel: values, with keys and timestamps when known.

    ``keys`` is set on key-by edges (computed once, by the sender); ``times``
    holds event timestamps (None when the stream has none).
    """

    __slots__ = ("channel", "values", "keys", "times")

    def __init__(self, channel: int, values: list[Any], keys: list[Any] | None,
                 times: list[Any] | None) -> None:
        self.channel = channel
        self.values = values
        self.keys = keys
        self.times = times

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"<DataBatch channel={self.channel} n={len(self.values)}>"


class Watermark:
    """No element with a timestamp below ``time`` will follow on this channel.

    ``idle`` marks a channel that produces nothing for now: it does not hold
    back the minimum downstream until it sends a watermark again.
    """

    __slots__ = ("channel", "time", "idle")

    def __init__(self, channel: int, time: float, idle: bool = False) -> None:
        self.channel = channel
        self.time = time
        self.idle = idle

    def __repr__(self) -> str:
        return f"<Watermark channel={self.channel} time={self.time}{' idle' if self.idle else ''}>"


class Barrier:
    """An epoch marker (Chandy–Lamport): everything before it belongs to ``epoch``.

    ``final`` barriers also end the channel: nothing follows them.
    """

    __slots__ = ("channel", "epoch", "final")

    def __init__(self, channel: int, epoch: int, final: bool = False) -> None:
        self.channel = channel
        self.epoch = epoch
        self.final = final

    def __repr__(self) -> str:
        return f"<Barrier channel={self.channel} epoch={self.epoch}{' final' if self.final else ''}>"


class Tick:
    """Wakes an instance so it fires processing-time timers that came due."""

    __slots__ = ()


TICK = Tick()
