"""Checkpoint manifests: ``snapshots/<epoch>/MANIFEST`` plus hard links to segments.

A checkpoint is committed by one rename: the snapshot is built in
``snapshots/.tmp-<epoch>/`` (hard links, MANIFEST written and fsynced), then
renamed to ``snapshots/<epoch>/`` and the directory fsynced. A directory
without a valid MANIFEST is not a checkpoint.
"""
from __future__ import annotations

import json
import os
import time
from typing import Any

import attrs

from uring import DmaFile, DmaStreamWriter, Ring

from . import record
from .errors import CorruptionError

MANIFEST = "MANIFEST"
FORMAT_VERSION = 1


@attrs.frozen
class Manifest:
    """What a committed checkpoint holds."""

    epoch: int
    segments: tuple[str, ...]
    metadata: dict[str, Any]
    max_seq: int
    next_segment: int
    live_keys: int
    created: float = attrs.field(factory=time.time)
    bytes_linked: int = 0
    #: Dead bytes per segment name at commit time (saves a pass over the index
    #: when opening); absent in older manifests.
    dead_bytes: dict[str, int] | None = None

    def to_json(self) -> bytes:
        body = json.dumps({
            "format": FORMAT_VERSION, "epoch": self.epoch, "segments": list(self.segments),
            "metadata": self.metadata, "max_seq": self.max_seq,
            "next_segment": self.next_segment, "live_keys": self.live_keys,
            "created": self.created, "bytes_linked": self.bytes_linked,
            "dead_bytes": self.dead_bytes,
        }, sort_keys=True).encode()
        return json.dumps({"crc32c": record.crc32c(body), "body": body.decode()}).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, path: str) -> "Manifest":
        try:
            outer = json.loads(data)
            body = outer["body"].encode()
            if record.crc32c(body) != outer["crc32c"]:
                raise CorruptionError(f"{path}: manifest checksum mismatch", path=path, offset=0)
            d = json.loads(body)
            if d.get("format") != FORMAT_VERSION:
                raise CorruptionError(f"{path}: unknown manifest format {d.get('format')!r}",
                                      path=path, offset=0)
            return cls(epoch=d["epoch"], segments=tuple(d["segments"]), metadata=d["metadata"],
                       max_seq=d["max_seq"], next_segment=d["next_segment"],
                       live_keys=d["live_keys"], created=d["created"],
                       bytes_linked=d.get("bytes_linked", 0),
                       dead_bytes=d.get("dead_bytes"))
        except CorruptionError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CorruptionError(f"{path}: manifest does not parse ({exc})", path=path, offset=0) from None


async def write_file_durably(ring: Ring, path: str, data: bytes) -> None:
    """Write ``data`` to a new file and fdatasync it."""
    f = await DmaFile.open(path, "x", ring=ring)
    try:
        async with DmaStreamWriter(f, buffer_size=max(4096, -(-len(data) // 4096) * 4096)) as w:
            await w.write(data)
        await f.fdatasync()
    finally:
        await f.close()


async def fsync_dir(ring: Ring, path: str) -> None:
    """fsync a directory (makes renames and links in it durable)."""
    fd = await ring.openat(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        await ring.fsync(fd, name=path)
    finally:
        await ring.close(fd, name=path)


async def read_manifest(ring: Ring, snap_dir: str) -> Manifest:
    path = f"{snap_dir}/{MANIFEST}"
    f = await DmaFile.open(path, "r", ring=ring)
    try:
        data = await f.read_at(0, await f.size())
    finally:
        await f.close()
    return Manifest.from_json(data, path)


def list_epochs(snapshots_dir: str) -> list[int]:
    """Committed epochs present (directories named by a number), ascending."""
    try:
        names = os.listdir(snapshots_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n) for n in names if n.isdigit())
