"""Statelet types: keyed state declared as class attributes of an operator.

::

    class Count(Operator):
        total = Value(int, default=0)

        async def on_element(self, word, ctx):
            n = await self.total.get() + 1
            await self.total.set(n)

As in Flink, every statelet is scoped to the *current key* (the key of the
element being processed) and namespaced by its owner (the operator) and its
own attribute name.  The types follow Flink's keyed state: ``Value``
(ValueState), ``Map`` (MapState), ``Appender`` (ListState), ``Reducer``
(ReducingState) and ``Aggregator`` (AggregatingState).

Binding protocol (the runtime's side, no ``reactor`` import here): the owner
instance has an attribute ``statelet_context`` — any object with ``.store``
(a :class:`statelets.Store`), ``.namespace`` (a str naming the operator) and
``.current_key`` (the current element's key; ``None`` when there is none);
:class:`StateletContext` is a ready-made one.  ``self.total`` on an instance
returns a bound statelet, created on first access and cached on the
instance, whose async methods read and write the store under the context's
current key at the time of the call.

Store key layout: ``K(namespace) K(statelet name) K(current key) [K(map
key)]`` where ``K`` is :func:`statelets.codecs.encode_key`.  That encoding is
prefix-free, so the bytes of one (namespace, statelet, current key) can never
be a prefix of another's: a map's scan prefix sees exactly its own entries,
and a statelet's merge prefix exactly its own keys.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import attrs

from statelets.codecs import (KeyCodec, ValueCodec, decode_key, decode_value, encode_key,
                              encode_value, type_name, _short_repr)
from statelets.errors import CodecError, StateletError

__all__ = ["StateletContext", "Statelet", "Value", "Map", "Appender", "Reducer", "Aggregator",
           "BoundStatelet", "BoundValue", "BoundMap", "BoundAppender", "BoundReducer",
           "BoundAggregator", "store_prefix"]

_UNSET = object()
_PLAIN = (int, str, bytes, bool, float, None.__class__)
_ABSENT = object()      # heap tier: the key has no value in the store


class _Packed(bytes):
    """Heap tier: a value held encoded (mutable or unusual types)."""

    __slots__ = ()


def _heap_key(ck: Any, what: str) -> Any:
    """The heap dict key of a current key: str/int as is (fast), others by encoding.

    1 == 1.0 == True share a dict slot but are different store keys, so only
    str and int are used directly; an encoded key is wrapped in a tuple, which
    no str or int equals.
    """
    if ck is None:
        raise StateletError(f"{what} needs a current key: declare key_by upstream (the current "
                            f"element has no key, or its key function returned None)")
    return ("\0", encode_key(ck, what))

# Values that need no defensive copy when handed out as a default.
_IMMUTABLE = (int, float, str, bytes, bool, type(None), complex, frozenset)


@attrs.define(slots=True)
class StateletContext:
    """What a statelet's owner provides: the store, its namespace and the current key.

    The runtime sets ``current_key`` before each element; ``None`` means the
    operator has no key (statelets then refuse to work).
    """

    store: Any
    namespace: str
    current_key: Any = None
    #: A :class:`statelets.tier.HeapTier`: hot values held as objects, written back at flush().
    tier: Any = None

    async def flush(self) -> None:
        """Write what the heap tier holds back to the store (no-op without a tier)."""
        if self.tier is not None:
            await self.tier.flush()


def store_prefix(namespace: str, name: str) -> bytes:
    """The store-key prefix of all the state of statelet ``name`` in ``namespace``."""
    what = f"statelet {name!r} in namespace {namespace!r}"
    return encode_key(namespace, what) + encode_key(name, what)


class Statelet:
    """Base of the statelet declarations (a data descriptor).

    Reading the attribute on an owner instance returns a bound statelet
    (cached on the instance); assigning to it is an error, since state is
    changed with ``await self.x.set(...)`` and friends.
    """

    kind = "Statelet"
    _bound_class: type["BoundStatelet"]

    def __init__(self) -> None:
        self.name: str | None = None
        self.owner: type | None = None
        self.owner_name: str | None = None

    def __set_name__(self, owner: type, name: str) -> None:
        if self.name is not None and (self.name != name or self.owner is not owner):
            raise TypeError(f"the {self.kind} declared as {self.owner_name}.{self.name} is reused "
                            f"as {owner.__name__}.{name}; declare a separate {self.kind}(...) "
                            f"for each attribute")
        self.name = name
        self.owner: type | None = owner
        self.owner_name = owner.__name__
        self._declared()

    def _declared(self) -> None:
        """Hook: checks that need the name (e.g. the default's type)."""

    @property
    def what(self) -> str:
        """How messages name this statelet."""
        return f"statelet {self.name!r} of {self.owner_name}"

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        try:
            return instance.__dict__[self.name]
        except KeyError:
            return self.bind(instance)
        except AttributeError:
            raise TypeError(f"{self.what}: its owner {type(instance).__name__} has no __dict__ "
                            f"(__slots__?) to cache the bound statelet in; add '__dict__' to "
                            f"its __slots__") from None

    def __set__(self, instance: Any, value: Any) -> None:
        raise AttributeError(f"cannot assign to {self.what}: it is state, not an attribute; "
                             f"use `await self.{self.name}.set(...)` (or put/add/append)")

    def __delete__(self, instance: Any) -> None:
        raise AttributeError(f"cannot delete {self.what}; use `await self.{self.name}.clear()`")

    def bind(self, owner: Any) -> "BoundStatelet":
        """The bound statelet of ``owner`` (created and cached on first use)."""
        if self.name is None:
            raise TypeError(f"this {self.kind} was never declared as a class attribute, so it "
                            f"has no name; declare it in the operator's class body")
        bound = self._bound_class(self, owner)
        owner.__dict__[self.name] = bound
        return bound

    def __repr__(self) -> str:
        return f"<{self.kind} {self.owner_name}.{self.name}>"


class BoundStatelet:
    """A statelet bound to one owner instance; resolves store keys per call.

    Caches the prefix (per store and namespace) and the encoding of the last
    current key (by identity: keys are immutable), so the per-call cost is a
    few attribute reads when the key repeats.
    """

    __slots__ = ("statelet", "owner", "what", "_store", "_ns", "_prefix", "_ck", "_full",
                 "_heap", "_dirty", "_sctx", "_tier")
    #: Whether this kind of statelet can live in a heap tier.
    _tierable = False

    def __init__(self, statelet: Statelet, owner: Any) -> None:
        self.statelet = statelet
        self.owner = owner
        self.what = f"statelet {statelet.name!r} of {type(owner).__name__}"
        self._store: Any = None
        self._ns: Any = None
        self._prefix = b""
        self._ck: Any = _UNSET  # the last current key, and _prefix + its encoding
        self._full = b""
        self._heap: dict[Any, Any] | None = None   # heap tier: heap key -> value
        self._dirty: dict[Any, Any] = {}            # heap key -> current key, changed entries
        self._sctx: Any = None
        self._tier: Any = None

    def _key(self) -> tuple[Any, bytes]:
        """(store, key bytes of this statelet under the current key)."""
        try:
            ctx = self.owner.statelet_context
            store, ns = ctx.store, ctx.namespace
        except AttributeError:
            ctx = store = ns = None
        if store is not self._store or store is None or ns != self._ns:
            self._rebind(ctx)
            store = ctx.store
        ck = ctx.current_key
        if ck is not self._ck:
            if ck is None:
                raise StateletError(
                    f"{self.what} needs a current key: declare key_by upstream (the current "
                    f"element has no key, or its key function returned None)")
            self._full = self._prefix + encode_key(ck, self.what)
            self._ck = ck
        return store, self._full

    def _rebind(self, ctx: Any) -> None:
        if ctx is None:
            raise StateletError(
                f"{self.what} is not bound to a store: statelets work only inside a running "
                f"operator (the runtime sets `statelet_context` on it); outside one, set "
                f"`statelet_context = StateletContext(store, namespace, current_key)` yourself")
        store, namespace = getattr(ctx, "store", None), getattr(ctx, "namespace", None)
        if store is None:
            raise StateletError(f"{self.what} is not bound to a store: its owner's "
                                f"statelet_context has no store")
        if not isinstance(namespace, str):
            raise StateletError(f"{self.what}: statelet_context.namespace must be a str naming "
                                f"the operator, got {_short_repr(namespace)}")
        name = self.statelet.name
        self.what = f"statelet {name!r} of {type(self.owner).__name__} (operator {namespace!r})"
        self._prefix = store_prefix(namespace, name)  # type: ignore[arg-type]
        self._store, self._ns = store, namespace
        self._ck = _UNSET  # the prefix changed: re-derive the full key
        self._registered(store)
        tier = getattr(ctx, "tier", None)
        if tier is not None and self._tierable:
            self._heap, self._dirty, self._sctx, self._tier = {}, {}, ctx, tier
            tier.register(self)

    def _first_use(self) -> dict[Any, Any] | None:
        """Bind on the first call, so that a heap tier is in place before any access."""
        self._rebind(getattr(self.owner, "statelet_context", None))
        return self._heap

    def bind_now(self) -> None:
        """Bind to the owner's statelet context now (normally done on first use)."""
        self._rebind(getattr(self.owner, "statelet_context", None))

    # -- heap tier ---------------------------------------------------------------------------
    def _hk(self) -> tuple[Any, Any]:
        """(heap key, current key) of the current element."""
        ck = self._sctx.current_key
        c = ck.__class__
        return (ck if c is str or c is int else _heap_key(ck, self.what)), ck

    async def _held(self) -> tuple[Any, Any, Any]:
        """(heap key, current key, held value or ``_ABSENT``), reading a miss from the store."""
        hk, ck = self._hk()
        v = self._heap.get(hk, _UNSET)  # type: ignore[union-attr]
        if v is _UNSET:
            v = await self._load(hk, ck)
        return hk, ck, v

    def _forget(self) -> None:
        """Heap tier: the current key has no value any more (written back as a delete)."""
        hk, ck = self._hk()
        self._heap[hk] = _ABSENT  # type: ignore[index]
        self._dirty[hk] = ck

    def _check_input(self, x: Any) -> None:
        """Type and picklability checks of an input, now rather than at write-back."""
        st = self.statelet
        if not (x.__class__ in _IMMUTABLE and (st.type is None or isinstance(x, st.type))):
            st.codec.encode(x, self.what)

    async def _load(self, hk: Any, ck: Any) -> Any:
        """Read a key missing from the heap from the store (held clean)."""
        b = await self._store.get(self._store_key(ck))
        v = _ABSENT if b is None else self._from_store(b)
        heap = self._heap
        if len(heap) >= self._tier.max_entries:  # type: ignore[arg-type]
            await self._spill()
        heap[hk] = v  # type: ignore[index]
        return v

    def _from_store(self, b: bytes) -> Any:
        v = decode_value(b)
        return v if v.__class__ in _IMMUTABLE else _Packed(b)

    def _to_store(self, v: Any) -> bytes:
        raise NotImplementedError

    def _store_key(self, ck: Any) -> bytes:
        return self._prefix + encode_key(ck, self.what)

    def _capture(self) -> list[tuple[Any, Any]]:
        """Take the changed entries as (current key, value) and mark them clean.

        Values come out frozen: immutable objects as they are, anything else in
        its store encoding, so the owner may go on changing its state while the
        captured entries wait to be written (a checkpoint's write-back).
        """
        dirty, self._dirty = self._dirty, {}
        heap = self._heap
        out = []
        for hk, ck in dirty.items():
            v = heap[hk]  # type: ignore[index]
            c = v.__class__
            if v is not _ABSENT and c is not _Packed and c not in _IMMUTABLE:
                v = _Packed(self._to_store(v))
            out.append((ck, v))
        return out

    async def _write_items(self, items: list[tuple[Any, Any]], store: Any = None) -> None:
        """Write captured entries to ``store`` (default: the bound one)."""
        store = store if store is not None else self._store
        pause = getattr(store, "pause", None)      # the runtime's yield hook, if any
        for i, (ck, v) in enumerate(items):
            if pause is not None and i & 511 == 511:
                await pause()
            key = self._store_key(ck)
            if v is _ABSENT:
                await store.delete(key)
            elif v.__class__ is _Packed:
                await store.put(key, bytes(v))
            else:
                await store.put(key, self._to_store(v))

    async def _write_back(self) -> None:
        await self._write_items(self._capture())

    async def _spill(self) -> None:
        """Over budget: write back and forget the held entries."""
        await self._write_back()
        self._heap.clear()  # type: ignore[union-attr]
        self._tier.spills += 1

    def _registered(self, store: Any) -> None:
        """Hook: register merge functions with a store seen for the first time."""

    def __repr__(self) -> str:
        return f"<bound {self.what}>"


# ------------------------------------------------------------------- Value

class Value(Statelet):
    """One value per key (Flink ValueState).

    ``Value(int, default=0)``: ``get()`` returns the default (a fresh copy if
    it is mutable) when the key has none; ``set(v)`` checks ``isinstance(v,
    int)`` when a type is declared.  Values are copies: mutate, then ``set``.
    """

    kind = "Value"

    def __init__(self, type: type | tuple[type, ...] | None = None, default: Any = None) -> None:
        super().__init__()
        self.codec = ValueCodec(type)
        self.type = type
        self.default = default
        self._default_bytes: bytes | None = None
        # Classes a heap tier may hold as objects without a codec check.
        self.plain = frozenset(c for c in _PLAIN if type is None or issubclass(c, type))

    def _declared(self) -> None:
        d = self.default
        if d is not None and self.type is not None and not isinstance(d, self.type):
            raise TypeError(f"{self.what} holds {type_name(self.type)} but its default is "
                            f"{type_name(d)} ({_short_repr(d)})")
        if not isinstance(d, _IMMUTABLE):
            # Handed out as a fresh copy each time, so mutating it cannot leak between keys.
            self._default_bytes = encode_value(d, f"default of {self.what}")

    def make_default(self) -> Any:
        """The default value (a fresh copy when mutable)."""
        b = self._default_bytes
        return self.default if b is None else decode_value(b)


class BoundValue(BoundStatelet):
    """A ``Value`` bound to an owner: ``get``, ``set``, ``clear``."""

    __slots__ = ()
    statelet: Value
    _tierable = True

    async def get(self) -> Any:
        """The value under the current key, or the default."""
        heap = self._heap
        if heap is None and self._store is None:
            heap = self._first_use()
        if heap is not None:
            ck = self._sctx.current_key       # _hk(), inlined: the per-element path
            c = ck.__class__
            hk = ck if c is str or c is int else _heap_key(ck, self.what)
            v = heap.get(hk, _UNSET)
            if v is _UNSET:
                v = await self._load(hk, ck)
            if v is _ABSENT:
                return self.statelet.make_default()
            return decode_value(v) if v.__class__ is _Packed else v
        store, key = self._key()
        b = await store.get(key)
        if b is None:
            return self.statelet.make_default()
        return decode_value(b)

    async def set(self, value: Any) -> None:
        """Store ``value`` under the current key."""
        heap = self._heap
        if heap is None and self._store is None:
            heap = self._first_use()
        if heap is not None:
            ck = self._sctx.current_key
            c = ck.__class__
            hk = ck if c is str or c is int else _heap_key(ck, self.what)
            st = self.statelet
            c = value.__class__
            if c in st.plain:                              # held as is, nothing to check
                heap[hk] = value
            elif c in _IMMUTABLE and (st.type is None or isinstance(value, st.type)):
                st.codec.encode(value, self.what)          # complex, frozenset: check contents
                heap[hk] = value
            else:   # checked and encoded now: an unpicklable value fails here, not at a checkpoint
                heap[hk] = _Packed(st.codec.encode(value, self.what))
            self._dirty[hk] = ck
            if len(heap) > self._tier.max_entries:
                await self._spill()
            return
        store, key = self._key()
        await store.put(key, self.statelet.codec.encode(value, self.what))

    async def clear(self) -> None:
        """Forget the value under the current key (``get`` returns the default again)."""
        if (self._heap if self._store is not None else self._first_use()) is not None:
            self._forget()
            return
        store, key = self._key()
        await store.delete(key)

    def _to_store(self, v: Any) -> bytes:
        return bytes(v) if v.__class__ is _Packed else self.statelet.codec.encode(v, self.what)


Value._bound_class = BoundValue


# --------------------------------------------------------------------- Map

class Map(Statelet):
    """A map per key (Flink MapState): ``Map(str, int)`` checks keys and values."""

    kind = "Map"

    def __init__(self, key_type: type | tuple[type, ...] | None = None,
                 value_type: type | tuple[type, ...] | None = None) -> None:
        super().__init__()
        self.key_codec = KeyCodec(key_type)
        self.value_codec = ValueCodec(value_type)
        self.key_type, self.value_type = key_type, value_type


class _MapView:
    """``items()``/``keys()``/``values()``: ``await`` it for a list, or ``async for`` over it.

    Either way the entries are read when the view is awaited or its iteration
    starts, as a snapshot in key order, so the loop body may change the map.
    """

    __slots__ = ("_bound", "_store", "_base", "_mode", "_it")

    def __init__(self, bound: "BoundMap", mode: int) -> None:
        self._bound = bound
        # The current key is resolved now, not when iteration starts.
        self._store, self._base = bound._key()
        self._mode = mode
        self._it: Iterator[Any] | None = None

    async def _collect(self) -> list[Any]:
        n = len(self._base)
        kdec, vdec, mode = decode_key, decode_value, self._mode
        out = []
        async for k, v in self._store.scan(self._base):
            if mode == 0:
                out.append((kdec(k[n:]), vdec(v)))
            elif mode == 1:
                out.append(kdec(k[n:]))
            else:
                out.append(vdec(v))
        return out

    def __await__(self) -> Any:
        return self._collect().__await__()

    def __aiter__(self) -> "_MapView":
        return self

    async def __anext__(self) -> Any:
        if self._it is None:
            self._it = iter(await self._collect())
        try:
            return next(self._it)
        except StopIteration:
            raise StopAsyncIteration from None


class BoundMap(BoundStatelet):
    """A ``Map`` bound to an owner."""

    __slots__ = ()
    statelet: Map

    def _entry(self, k: Any) -> tuple[Any, bytes]:
        store, base = self._key()
        return store, base + self.statelet.key_codec.encode(k, self.what)

    async def get(self, k: Any, default: Any = None) -> Any:
        """The value of map key ``k`` under the current key, or ``default``."""
        store, key = self._entry(k)
        b = await store.get(key)
        return default if b is None else decode_value(b)

    async def put(self, k: Any, v: Any) -> None:
        """Set map key ``k`` to ``v`` under the current key."""
        store, key = self._entry(k)
        await store.put(key, self.statelet.value_codec.encode(v, self.what))

    async def put_all(self, items: Any) -> None:
        """``put`` every (k, v) of a mapping or an iterable of pairs."""
        pairs = items.items() if hasattr(items, "items") else items
        for k, v in pairs:
            await self.put(k, v)

    async def remove(self, k: Any) -> None:
        """Remove map key ``k`` (a no-op if absent)."""
        store, key = self._entry(k)
        await store.delete(key)

    async def contains(self, k: Any) -> bool:
        """Whether map key ``k`` is present under the current key."""
        store, key = self._entry(k)
        contains = getattr(store, "contains", None)  # beyond the API: no value read
        if contains is not None:
            return await contains(key)
        return await store.get(key) is not None

    def items(self) -> _MapView:
        """(key, value) pairs in key order: ``await m.items()`` or ``async for k, v in m.items()``."""
        return _MapView(self, 0)

    def keys(self) -> _MapView:
        """Map keys in key order (``await`` for a list, or ``async for``)."""
        return _MapView(self, 1)

    def values(self) -> _MapView:
        """Values in key order (``await`` for a list, or ``async for``)."""
        return _MapView(self, 2)

    async def is_empty(self) -> bool:
        """Whether the map under the current key has no entries."""
        store, base = self._key()
        it = store.scan(base)
        try:
            async for _ in it:
                return False
            return True
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:  # curio refuses async generators left unfinished
                await aclose()

    async def clear(self) -> None:
        """Remove every entry of the map under the current key."""
        store, base = self._key()
        keys = [k async for k, _ in store.scan(base)]
        for k in keys:
            await store.delete(k)


Map._bound_class = BoundMap


# ---------------------------------------------------------------- Appender

_LONG = 0xFF  # an element longer than 254 bytes: 0xFF, then 4 bytes of length


def _frame(e: bytes) -> bytes:
    n = len(e)
    return (bytes((n,)) if n < _LONG else b"\xff" + n.to_bytes(4, "little")) + e


def _unframe(b: bytes) -> list[Any]:
    out, pos, end = [], 0, len(b)
    dec = decode_value
    while pos < end:
        n = b[pos]
        pos += 1
        if n == _LONG:
            n = int.from_bytes(b[pos:pos + 4], "little")
            pos += 4
        out.append(dec(b[pos:pos + n]))
        pos += n
    if pos != end:
        raise CodecError(f"malformed list bytes: the last element overruns by {pos - end} bytes")
    return out


def _append_merge(base: bytes | None, operands: list[bytes]) -> bytes:
    # Operands are already framed elements: appending is concatenation, so the
    # list is never decoded on write.
    if base is None:
        return operands[0] if len(operands) == 1 else b"".join(operands)
    return base + b"".join(operands)


class Appender(Statelet):
    """A list per key you append to (Flink ListState): ``Appender(str)``."""

    kind = "Appender"

    def __init__(self, type: type | tuple[type, ...] | None = None) -> None:
        super().__init__()
        self.codec = ValueCodec(type)
        self.type = type


class BoundAppender(BoundStatelet):
    """An ``Appender`` bound to an owner: ``append``, ``extend``, ``get``, ``update``, ``clear``."""

    __slots__ = ()
    statelet: Appender

    def _registered(self, store: Any) -> None:
        store.register_merge(self._prefix, _append_merge)

    async def append(self, x: Any) -> None:
        """Append ``x`` to the list under the current key."""
        store, key = self._key()
        await store.merge(key, _frame(self.statelet.codec.encode(x, self.what)))

    async def extend(self, xs: Iterable[Any]) -> None:
        """Append every element of ``xs`` (one store operation)."""
        store, key = self._key()
        enc = self.statelet.codec.encode
        operand = b"".join([_frame(enc(x, self.what)) for x in xs])
        if operand:
            await store.merge(key, operand)

    async def get(self) -> list[Any]:
        """The list under the current key (``[]`` when empty)."""
        store, key = self._key()
        b = await store.get(key)
        return [] if b is None else _unframe(b)

    async def update(self, xs: Iterable[Any]) -> None:
        """Replace the list under the current key with ``xs``."""
        store, key = self._key()
        enc = self.statelet.codec.encode
        value = b"".join([_frame(enc(x, self.what)) for x in xs])
        if value:
            await store.put(key, value)
        else:
            await store.delete(key)

    async def clear(self) -> None:
        """Empty the list under the current key."""
        store, key = self._key()
        await store.delete(key)


Appender._bound_class = BoundAppender


# ----------------------------------------------------------------- Reducer

class Reducer(Statelet):
    """A value per key folded with ``fn(acc, x) -> acc`` (Flink ReducingState).

    ``add(x)`` stores ``x`` if the key has nothing yet, else ``fn(current,
    x)``.  ``fn`` should be associative: a store may fold a run of additions
    before it meets the stored value.
    """

    kind = "Reducer"

    def __init__(self, fn: Callable[[Any, Any], Any], type: type | tuple[type, ...] | None = None
                 ) -> None:
        super().__init__()
        if not callable(fn):
            raise TypeError(f"Reducer(fn) needs a callable fn(acc, x) -> acc, got {_short_repr(fn)}")
        self.fn = fn
        self.codec = ValueCodec(type)
        self.type = type


class BoundReducer(BoundStatelet):
    """A ``Reducer`` bound to an owner: ``add``, ``get``, ``clear``."""

    __slots__ = ()
    statelet: Reducer

    def _registered(self, store: Any) -> None:
        fn, encode, what = self.statelet.fn, self.statelet.codec.encode, self.what

        def reduce_merge(base: bytes | None, operands: list[bytes]) -> bytes:
            it = iter(operands)
            acc = decode_value(base) if base is not None else decode_value(next(it))
            for op in it:
                try:
                    acc = fn(acc, decode_value(op))
                except Exception as e:
                    e.add_note(f"in the reduce function of {what}")
                    raise
            return encode(acc, f"{what}: result of its reduce function")

        store.register_merge(self._prefix, reduce_merge)

    _tierable = True

    async def add(self, x: Any) -> None:
        """Fold ``x`` into the value under the current key."""
        heap = self._heap if self._store is not None else self._first_use()
        if heap is not None:
            self._check_input(x)
            hk, ck, acc = await self._held()
            st = self.statelet
            if acc is _ABSENT:
                acc = x
            else:
                try:
                    acc = st.fn(acc, x)
                except Exception as e:
                    e.add_note(f"in the reduce function of {self.what}")
                    raise
            heap[hk] = acc
            self._dirty[hk] = ck
            return
        store, key = self._key()
        await store.merge(key, self.statelet.codec.encode(x, self.what))

    async def get(self) -> Any:
        """The reduced value under the current key, or None if nothing was added.

        With a heap tier the object itself is returned: don't mutate it.
        """
        if (self._heap if self._store is not None else self._first_use()) is not None:
            acc = (await self._held())[2]
            return None if acc is _ABSENT else acc
        store, key = self._key()
        b = await store.get(key)
        return None if b is None else decode_value(b)

    async def clear(self) -> None:
        """Forget the reduced value under the current key."""
        if (self._heap if self._store is not None else self._first_use()) is not None:
            self._forget()
            return
        store, key = self._key()
        await store.delete(key)

    def _from_store(self, b: bytes) -> Any:
        return decode_value(b)

    def _to_store(self, v: Any) -> bytes:
        return encode_value(v, f"{self.what}: result of its reduce function")


Reducer._bound_class = BoundReducer


# -------------------------------------------------------------- Aggregator

# The stored value is an accumulator; an operand is an input or (from a
# store that folds runs of operands without their base) an accumulator.
_ACC, _INPUT = b"A", b"X"


class Aggregator(Statelet):
    """An accumulator per key (Flink AggregatingState).

    ``create() -> acc`` starts one, ``add(acc, x) -> acc`` adds an input,
    ``merge(a, b) -> acc`` combines two (needed only when a store folds
    operands without their base; optional otherwise), ``result(acc) -> out``
    is what ``get()`` returns (identity by default).  ``type`` checks inputs.
    """

    kind = "Aggregator"

    def __init__(self, create: Callable[[], Any], add: Callable[[Any, Any], Any],
                 merge: Callable[[Any, Any], Any] | None = None,
                 result: Callable[[Any], Any] | None = None,
                 type: type | tuple[type, ...] | None = None) -> None:
        super().__init__()
        for label, f in (("create", create), ("add", add)):
            if not callable(f):
                raise TypeError(f"Aggregator({label}=...) must be callable, got {_short_repr(f)}")
        for label, f in (("merge", merge), ("result", result)):
            if f is not None and not callable(f):
                raise TypeError(f"Aggregator({label}=...) must be callable or None, got "
                                f"{_short_repr(f)}")
        self.create, self.add, self.merge, self.result = create, add, merge, result
        self.codec = ValueCodec(type)
        self.type = type


class BoundAggregator(BoundStatelet):
    """An ``Aggregator`` bound to an owner: ``add``, ``get``, ``clear``."""

    __slots__ = ()
    statelet: Aggregator

    def _registered(self, store: Any) -> None:
        agg, what = self.statelet, self.what

        def aggregate_merge(base: bytes | None, operands: list[bytes]) -> bytes:
            try:
                acc = decode_value(memoryview(base)[1:]) if base is not None else agg.create()
                for op in operands:
                    body = memoryview(op)[1:]
                    if op[:1] == _INPUT:
                        acc = agg.add(acc, decode_value(body))
                    elif agg.merge is None:
                        raise StateletError(f"{what}: the store folded additions separately, so "
                                            f"accumulators must be merged: give the Aggregator "
                                            f"a merge(a, b) function")
                    else:
                        acc = agg.merge(acc, decode_value(body))
            except StateletError:
                raise
            except Exception as e:
                e.add_note(f"in the aggregate functions of {what}")
                raise
            return _ACC + encode_value(acc, f"{what}: accumulator")

        store.register_merge(self._prefix, aggregate_merge)

    _tierable = True

    async def add(self, x: Any) -> None:
        """Add input ``x`` to the accumulator under the current key."""
        heap = self._heap if self._store is not None else self._first_use()
        if heap is not None:
            self._check_input(x)
            hk, ck, acc = await self._held()
            agg = self.statelet
            try:
                if acc is _ABSENT:
                    acc = agg.create()
                    encode_value(acc, f"{self.what}: accumulator")   # picklable, checked once
                acc = agg.add(acc, x)
            except (StateletError, CodecError):
                raise
            except Exception as e:
                e.add_note(f"in the aggregate functions of {self.what}")
                raise
            heap[hk] = acc
            self._dirty[hk] = ck
            return
        store, key = self._key()
        await store.merge(key, _INPUT + self.statelet.codec.encode(x, self.what))

    async def get(self) -> Any:
        """``result(acc)`` under the current key, or None if nothing was added."""
        if (self._heap if self._store is not None else self._first_use()) is not None:
            acc = (await self._held())[2]
            if acc is _ABSENT:
                return None
            result = self.statelet.result
            return acc if result is None else result(acc)
        store, key = self._key()
        b = await store.get(key)
        if b is None:
            return None
        acc = decode_value(memoryview(b)[1:])
        result = self.statelet.result
        return acc if result is None else result(acc)

    async def clear(self) -> None:
        """Forget the accumulator under the current key."""
        if (self._heap if self._store is not None else self._first_use()) is not None:
            self._forget()
            return
        store, key = self._key()
        await store.delete(key)

    def _from_store(self, b: bytes) -> Any:
        return decode_value(memoryview(b)[1:])

    def _to_store(self, v: Any) -> bytes:
        return _ACC + encode_value(v, f"{self.what}: accumulator")


Aggregator._bound_class = BoundAggregator
