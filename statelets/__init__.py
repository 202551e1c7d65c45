"""statelets: keyed state types and the log-structured store that persists them.

The store (:class:`Store`) keeps records in append-only segment files written
through one uring ring with Direct I/O, an in-memory index with hint files, a
read cache and a write buffer; checkpoints are manifests plus hard links.
``statelets`` never imports ``reactor``: the runtime hands it a ring and, for
compaction, a pause hook and an I/O charge hook.
"""
from __future__ import annotations

from .errors import CodecError, CorruptionError, StateletError, StoreFailed
from .snapshot import Manifest
from .store import Store, StoreConfig

__all__ = ["CodecError", "CorruptionError", "Manifest", "StateletError", "Store",
           "StoreConfig", "StoreFailed"]

try:  # statelet types (Value, Map, ...) build on the store
    from .types import Aggregator, Appender, Map, Reducer, StateletContext, Value  # noqa: F401
    __all__ += ["Aggregator", "Appender", "Map", "Reducer", "StateletContext", "Value"]
except ImportError:  # pragma: no cover - while types.py is being written
    pass
