"""Word count over the network: lines from a TCP socket, counted per word, printed.

``TcpSource`` -> words -> keyed count -> ``PrintSink``. Delivery is
**at-most-once**: a socket cannot rewind, so lines received after the last
committed checkpoint are lost if the job crashes (the counts of committed
epochs survive; the source simply does not replay). Use a replayable source
(FileSource, GeneratorSource) where every element must count exactly once.

Run it directly and it also starts a small client thread that sends a few
lines and disconnects; with ``stop_when_idle=True`` the job then ends by
itself::

    python samples/tcp_lines.py

Or serve on a fixed port and feed it yourself (the job ends when the last
client disconnects)::

    reactor run samples/tcp_lines.py          # listens on 127.0.0.1:9999 (TCP_LINES_PORT)
    printf 'to be or not to be\\n' | nc -q0 127.0.0.1 9999
"""
from __future__ import annotations

import os
import socket
import threading
import time

from reactor import Operator, PrintSink, TcpSource, Topology, run
from statelets import Value

# Run directly: any free port (the client below reads it); else a fixed one for `nc`.
PORT = int(os.environ.get("TCP_LINES_PORT", "0" if __name__ == "__main__" else "9999"))

LINES = [
    "the quick brown fox jumps over the lazy dog",
    "the dog sleeps",
    "a fox is quick and a dog is lazy",
    "to be or not to be",
]


class Count(Operator):
    """Running count per word, emitted as ``word: n``."""

    total = Value(int, default=0)

    async def on_element(self, word, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit(f"{word}: {n}")


source = TcpSource("127.0.0.1", PORT, stop_when_idle=True)

topology = (Topology("tcp_lines")
            .source("socket", source)
            .flat_map("split", str.split)
            .key_by(lambda word: word)
            .operator("count", Count)
            .sink("print", PrintSink()))


def send_lines(src: TcpSource, lines: list[str], timeout: float = 10.0) -> None:
    """Wait until ``src`` is bound, connect, send ``lines``, disconnect (a plain thread)."""
    deadline = time.monotonic() + timeout
    while src.address is None:
        if time.monotonic() > deadline:
            raise RuntimeError("tcp_lines: the TcpSource did not bind in time")
        time.sleep(0.01)
    with socket.create_connection(src.address, timeout=timeout) as conn:
        for line in lines:
            conn.sendall(line.encode() + b"\n")


if __name__ == "__main__":
    client = threading.Thread(target=send_lines, args=(source, LINES), daemon=True)
    client.start()
    result = run(topology, checkpoint_every=1.0)
    client.join(5)
    if result is not None:
        print(f"tcp_lines: {result.elements_in} lines received, epoch {result.epoch} committed")
