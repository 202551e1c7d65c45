"""uring demo: write a file with Direct I/O, make it durable, read it back.

Run with ``make demo`` (or ``python samples/uring_demo.py [DIR]``). Prints the
backend in use (io_uring, or the sync fallback and why) and the ring's I/O
stats. A later release replaces this with a sample topology.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile

import uring
from uring import DmaFile, DmaStreamReader, DmaStreamWriter, Ring, backend_info

MIB = 1 << 20


async def demo(directory: str) -> int:
    path = os.path.join(directory, "uring-demo.bin")
    payload = os.urandom(8 * MIB + 12345)            # deliberately not aligned
    async with Ring() as ring:
        print(f"backend: {ring.backend} ({ring.reason})")
        f = await DmaFile.open(path, "w")
        print(f"file:    {f.path} ({'O_DIRECT' if f.direct else 'buffered'}, "
              f"alignment {f.offset_align} bytes)")
        async with DmaStreamWriter(f, buffer_size=MIB, write_behind=4) as w:
            await w.write(payload)
        await f.fdatasync()
        print(f"wrote:   {len(payload)} bytes, size on disk {await f.size()}, fdatasync done")

        async with DmaStreamReader(f, buffer_size=MIB, read_ahead=4) as r:
            back = await r.read()
        middle = await f.read_at(3 * MIB + 7, 100)     # random access, any offset
        await f.close()
        ok = back == payload and middle == payload[3 * MIB + 7:3 * MIB + 107]
        print(f"read:    {len(back)} bytes, sha256 {hashlib.sha256(back).hexdigest()[:16]}… "
              f"{'matches' if ok else 'DOES NOT MATCH'}")

        stats = ring.stats()
        print("\nI/O stats:")
        for kind, row in sorted(stats["ops"].items()):
            print(f"  {kind:<10} {row['ops']:>6} ops {row['bytes']:>12} bytes {row['errors']:>3} errors")
        lat = stats["latency_us"]
        print(f"  io_uring_enter calls {stats['enter_calls']}, SQEs per call "
              f"{stats['sqes_per_enter']}, latency p50 {lat['p50']} µs, p99 {lat['p99']} µs")
        print("\n" + json.dumps({"backend": stats["backend"], "ok": ok,
                                 "total_ops": stats["total_ops"]}))
    os.unlink(path)
    return 0 if ok else 1


def main() -> int:
    directory = sys.argv[1] if len(sys.argv) > 1 else None
    info = backend_info()
    if info.backend != "io_uring":
        print(f"note: io_uring unavailable here, using the sync fallback: {info.reason}")
    if directory:
        return uring.run(demo, directory)
    with tempfile.TemporaryDirectory(prefix="uring-demo-", dir=".") as d:
        return uring.run(demo, d)


if __name__ == "__main__":
    sys.exit(main())
