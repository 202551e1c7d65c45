"""A tiny in-memory Store implementing the byte-level API the statelets use.

Only the methods of the store contract: ``put``, ``get``, ``delete``,
``merge``, ``register_merge``, ``get_many``, ``scan`` (all async except
``register_merge``) and ``len``.  Unlike the real store, which folds a merge
operand into the value at write time, this one keeps operands pending and
folds them on read (as RocksDB does), in runs of up to ``fold_every``
operands — so statelet merge functions are exercised with several operands
at once, and with a base that is itself a fold result.  It checks that keys
and values are ``bytes``, so a statelet handing it anything else fails.
"""
from __future__ import annotations

from typing import AsyncIterator, Callable, Sequence

MergeFn = Callable[[bytes | None, list[bytes]], bytes]


def _bytes(what: str, v: object) -> bytes:
    if type(v) is not bytes:
        raise TypeError(f"fake store: {what} must be bytes, got {type(v).__name__}")
    return v  # type: ignore[return-value]


class FakeStore:
    """In-memory stand-in for ``statelets.Store`` (the contract's methods only)."""

    def __init__(self, fold_every: int = 3) -> None:
        self._data: dict[bytes, bytes] = {}
        self._pending: dict[bytes, list[bytes]] = {}
        self._merges: list[tuple[bytes, MergeFn]] = []
        self.fold_every = fold_every
        self.merge_calls: list[tuple[bytes | None, int]] = []  # (base, number of operands)
        self.registrations = 0

    def _fn(self, key: bytes) -> MergeFn:
        for p, fn in self._merges:
            if key.startswith(p):
                return fn
        raise LookupError(f"fake store: no merge function registered for key {key!r}")

    def _fold(self, key: bytes) -> None:
        ops = self._pending.pop(key, None)
        if not ops:
            return
        fn = self._fn(key)
        base = self._data.get(key)
        self.merge_calls.append((base, len(ops)))
        out = fn(base, list(ops))
        self._data[key] = _bytes("merge result", out)

    async def put(self, key: bytes, value: bytes) -> None:
        _bytes("key", key)
        _bytes("value", value)
        self._pending.pop(key, None)
        self._data[key] = value

    async def delete(self, key: bytes) -> None:
        _bytes("key", key)
        self._pending.pop(key, None)
        self._data.pop(key, None)

    def register_merge(self, prefix: bytes, fn: MergeFn) -> None:
        _bytes("merge prefix", prefix)
        self.registrations += 1
        self._merges = [(p, f) for p, f in self._merges if p != prefix] + [(prefix, fn)]
        self._merges.sort(key=lambda pf: -len(pf[0]))

    async def merge(self, key: bytes, operand: bytes) -> None:
        _bytes("key", key)
        _bytes("merge operand", operand)
        self._fn(key)  # fail now, as the real store does, when nothing is registered
        ops = self._pending.setdefault(key, [])
        ops.append(operand)
        if len(ops) >= self.fold_every:
            self._fold(key)

    async def get(self, key: bytes) -> bytes | None:
        _bytes("key", key)
        self._fold(key)
        return self._data.get(key)

    async def get_many(self, keys: Sequence[bytes]) -> list[bytes | None]:
        return [await self.get(k) for k in keys]

    async def scan(self, prefix: bytes = b"") -> AsyncIterator[tuple[bytes, bytes]]:
        _bytes("prefix", prefix)
        for k in sorted(set(self._data) | set(self._pending)):
            if k.startswith(prefix):
                v = await self.get(k)
                if v is not None:
                    yield k, v

    def __len__(self) -> int:
        return len(set(self._data) | set(self._pending))

    def dump(self) -> dict[bytes, bytes]:
        """Every key and its folded value (for assertions)."""
        for k in list(self._pending):
            self._fold(k)
        return dict(self._data)
