"""Codecs: statelet keys and values to bytes and back.

Keys need a *deterministic* encoding: the store finds a record by its key
bytes, so the same key must give the same bytes in every call, every process
and every run (no ``hash()``, no pickle).  Values only need to round-trip, so
they take a fast path for common types and fall back to (cloud)pickle.

Key encoding (``encode_key``) — one tag byte per item, then:

=======  ======  ===========================================================
type     tag     payload
=======  ======  ===========================================================
None     0x05    —
False    0x06    —
True     0x07    —
int < 0  0x10    complement of (length of magnitude, big-endian magnitude)
int >= 0 0x11    length of magnitude, big-endian magnitude (0 has length 0)
float    0x20    8 bytes: IEEE-754 big-endian, sign flipped (all bits if < 0)
str      0x30    UTF-8 (surrogatepass), 0x00 escaped as 00 FF, ends in 00 01
bytes    0x31    raw bytes, 0x00 escaped as 00 FF, ends in 00 01
tuple    0x40    the items' encodings, then 0x00
=======  ======  ===========================================================

A length is one byte when <= 247, else 0xF7 + n followed by n big-endian
length bytes.  The encoding is:

* injective and type-exact: ``1``, ``True``, ``1.0``, ``"1"`` and ``b"1"`` all
  differ (tags differ), and ``encode_key(a) == encode_key(b)`` exactly when
  ``type(a) is type(b) and a == b`` (recursively for tuples);
* prefix-free: no encoded key is a proper prefix of another, so a store key
  built by concatenating encodings (namespace, statelet, current key, map key)
  cannot be confused with another, and a scan over ``prefix`` = everything
  before the map key finds exactly one map;
* order-preserving within a type (ints and floats numerically, str by code
  point, bytes lexicographically, tuples item by item, shorter first).

``-0.0`` is encoded as ``0.0`` (they are equal); NaN is refused (it is not
equal to itself, so it cannot find its own state back).  Subclasses (IntEnum,
namedtuple, str subclasses...) are refused rather than silently collapsed
into their base type.

Value encoding (``encode_value``): a tag byte and a payload for exact
``None`` (01), ``False`` (02), ``True`` (03), ``int`` (04: 1, 4 or 8 bytes
little-endian signed, by magnitude; 05: two's complement beyond 64 bits),
``float`` (06: 8-byte struct), ``str`` (07: UTF-8) and ``bytes`` (08);
anything else, tuples included, is a pickle (protocol 5, whose first byte
0x80 is its tag): the C pickler where it is equivalent, cloudpickle where
only cloudpickle can (lambdas, local classes, things defined in
``__main__``), so values restore in another process.  Tuples are pickled
because the C pickler encodes a small tuple ~3x faster than a per-item codec
written in Python.
"""
from __future__ import annotations

import struct
from pickle import dumps as _pickle_dumps, loads as _pickle_loads
from typing import Any, Callable

import cloudpickle

from statelets.errors import CodecError

__all__ = [
    "encode_key", "decode_key", "encode_value", "decode_value",
    "KeyCodec", "ValueCodec", "key_codec", "value_codec", "type_name",
]


def type_name(obj_or_type: Any) -> str:
    """A readable name of a value's type (module-qualified unless builtin)."""
    tp = obj_or_type if isinstance(obj_or_type, type) else type(obj_or_type)
    mod = getattr(tp, "__module__", "builtins")
    qual = getattr(tp, "__qualname__", repr(tp))
    return qual if mod == "builtins" else f"{mod}.{qual}"


# --------------------------------------------------------------------- keys

K_NONE, K_FALSE, K_TRUE = 0x05, 0x06, 0x07
K_NEGINT, K_INT = 0x10, 0x11
K_FLOAT = 0x20
K_STR, K_BYTES = 0x30, 0x31
K_TUPLE = 0x40
K_TUPLE_END = 0x00

_ESC_FROM, _ESC_TO, _TERM = b"\x00", b"\x00\xff", b"\x00\x01"
_INVERT = bytes(255 - i for i in range(256))
_F64 = struct.Struct(">d")
_U64 = struct.Struct(">Q")
_SIGN = 1 << 63
_ALL = (1 << 64) - 1

_B_NONE, _B_FALSE, _B_TRUE = bytes([K_NONE]), bytes([K_FALSE]), bytes([K_TRUE])
_B_ZERO = bytes([K_INT, 0])


def _enc_len(n: int) -> bytes:
    """Order-preserving, self-delimiting length: 1 byte up to 247, else 0xF7+k, k bytes."""
    if n <= 0xF7:
        return bytes((n,))
    k = (n.bit_length() + 7) >> 3
    return bytes((0xF7 + k,)) + n.to_bytes(k, "big")


def _key_int(n: int) -> bytes:
    if n >= 0:
        if n < 256:
            return _SMALL_INT_KEYS[n]
        size = (n.bit_length() + 7) >> 3
        if size <= 0xF7:
            return bytes((K_INT, size)) + n.to_bytes(size, "big")
        return bytes((K_INT,)) + _enc_len(size) + n.to_bytes(size, "big")
    m = -n
    size = (m.bit_length() + 7) >> 3
    # Complementing length and magnitude makes bigger magnitudes sort first.
    return bytes((K_NEGINT,)) + (_enc_len(size) + m.to_bytes(size, "big")).translate(_INVERT)


_SMALL_INT_KEYS = [bytes((K_INT, 0))] + [bytes((K_INT, 1, i)) for i in range(1, 256)]


def _key_float(f: float, what: str) -> bytes:
    if f != f:
        raise CodecError(f"{what}: cannot use float NaN as a key: NaN is not equal to itself, "
                         f"so it could never find its own state again; map it to None or a "
                         f"string first")
    if f == 0.0:
        f = 0.0  # -0.0 == 0.0, so they must share their bytes
    bits = _U64.unpack(_F64.pack(f))[0]
    bits = bits ^ _ALL if bits & _SIGN else bits | _SIGN
    return bytes((K_FLOAT,)) + _U64.pack(bits)


def _key_str(s: str, what: str) -> bytes:
    return (b"\x30" + s.encode("utf-8", "surrogatepass").replace(_ESC_FROM, _ESC_TO) + _TERM)


def _key_bytes(b: bytes, what: str) -> bytes:
    return b"\x31" + b.replace(_ESC_FROM, _ESC_TO) + _TERM


def _key_tuple(t: tuple, what: str) -> bytes:
    parts = [b"\x40"]
    for item in t:
        parts.append(encode_key(item, what))
    parts.append(b"\x00")
    return b"".join(parts)


_KEY_ENCODERS: dict[type, Callable[[Any, str], bytes]] = {
    int: lambda n, what: _key_int(n),
    str: _key_str,
    bytes: _key_bytes,
    tuple: _key_tuple,
    float: _key_float,
    bool: lambda b, what: _B_TRUE if b else _B_FALSE,
    type(None): lambda _, what: _B_NONE,
}

_KEY_TYPE_HINTS = {
    dict: "a dict is mutable and unordered for this purpose: use a tuple of sorted items",
    list: "a list is mutable: use a tuple",
    set: "a set has no deterministic order: use a tuple of its sorted items (or a frozenset "
         "converted to one)",
    frozenset: "a frozenset has no deterministic order: use tuple(sorted(...))",
    bytearray: "a bytearray is mutable: use bytes(...)",
    memoryview: "a memoryview is mutable: use bytes(...)",
}


def _key_error(key: Any, what: str) -> CodecError:
    tp = type(key)
    hint = _KEY_TYPE_HINTS.get(tp)
    if hint is None:
        for base in (int, str, bytes, tuple, float):
            if isinstance(key, base):
                hint = (f"it is a subclass of {base.__name__}; convert it with "
                        f"{base.__name__}(key) (or use .value for an Enum) so that it cannot "
                        f"collide with a plain {base.__name__}")
                break
        else:
            hint = ("keys must be None, bool, int, float, str, bytes or tuples of them; "
                    "map the object to one of those (e.g. an id or a tuple of fields)")
    return CodecError(f"{what}: cannot encode a key of type {type_name(tp)} deterministically: "
                      f"{hint}")


def encode_key(key: Any, what: str) -> bytes:
    """Deterministic, prefix-free, order-preserving bytes of ``key``.

    ``what`` names the statelet (for messages).  Raises ``CodecError`` naming
    the type and the statelet when ``key`` has no deterministic encoding.
    """
    t = type(key)
    if t is str:
        return b"\x30" + key.encode("utf-8", "surrogatepass").replace(_ESC_FROM, _ESC_TO) + _TERM
    if t is int:
        return _SMALL_INT_KEYS[key] if 0 <= key < 256 else _key_int(key)
    enc = _KEY_ENCODERS.get(t)
    if enc is None:
        raise _key_error(key, what)
    try:
        return enc(key, what)
    except RecursionError:
        raise CodecError(f"{what}: key nested too deeply to encode") from None


def _read_len(b: bytes, pos: int, invert: bool) -> tuple[int, int]:
    first = b[pos] ^ 0xFF if invert else b[pos]
    pos += 1
    if first <= 0xF7:
        return first, pos
    k = first - 0xF7
    raw = b[pos:pos + k]
    if invert:
        raw = raw.translate(_INVERT)
    return int.from_bytes(raw, "big"), pos + k


def decode_key_from(b: bytes, pos: int = 0) -> tuple[Any, int]:
    """Decode one key starting at ``pos``; returns ``(key, end)``."""
    try:
        tag = b[pos]
        pos += 1
        if tag == K_INT:
            size, pos = _read_len(b, pos, False)
            return int.from_bytes(b[pos:pos + size], "big"), pos + size
        if tag == K_STR or tag == K_BYTES:
            end = b.index(_TERM, pos)
            raw = b[pos:end].replace(_ESC_TO, _ESC_FROM)
            if tag == K_STR:
                return raw.decode("utf-8", "surrogatepass"), end + 2
            return raw, end + 2
        if tag == K_TUPLE:
            items = []
            while b[pos] != K_TUPLE_END:
                item, pos = decode_key_from(b, pos)
                items.append(item)
            return tuple(items), pos + 1
        if tag == K_NEGINT:
            size, pos = _read_len(b, pos, True)
            mag = int.from_bytes(b[pos:pos + size].translate(_INVERT), "big")
            return -mag, pos + size
        if tag == K_FLOAT:
            bits = _U64.unpack_from(b, pos)[0]
            bits = bits ^ _SIGN if bits & _SIGN else bits ^ _ALL
            return _F64.unpack(_U64.pack(bits))[0], pos + 8
        if tag == K_NONE:
            return None, pos
        if tag == K_FALSE:
            return False, pos
        if tag == K_TRUE:
            return True, pos
    except (IndexError, ValueError, struct.error, UnicodeDecodeError) as e:
        raise CodecError(f"malformed key bytes {bytes(b)[:64]!r} at offset {pos}: {e}") from e
    raise CodecError(f"malformed key bytes {bytes(b)[:64]!r}: unknown tag 0x{tag:02x} at "
                     f"offset {pos - 1}")


def decode_key(b: bytes) -> Any:
    """The key whose ``encode_key`` bytes are exactly ``b``."""
    key, end = decode_key_from(b, 0)
    if end != len(b):
        raise CodecError(f"malformed key bytes {bytes(b)[:64]!r}: {len(b) - end} trailing "
                         f"byte(s) after offset {end}")
    return key


# ------------------------------------------------------------------- values

V_NONE, V_FALSE, V_TRUE = 0x01, 0x02, 0x03
V_INT, V_BIGINT, V_FLOAT = 0x04, 0x05, 0x06
V_STR, V_BYTES = 0x07, 0x08
# A pickle (protocol >= 2) starts with its PROTO opcode 0x80, which serves as
# its tag: no copy to add a tag, none to strip it.
V_PICKLE = 0x80

_Q = struct.Struct("<q")
_D = struct.Struct("<d")
_B_VNONE, _B_VFALSE, _B_VTRUE = b"\x01", b"\x02", b"\x03"
_INT_TAG, _FLOAT_TAG = b"\x04", b"\x06"
_pack_q, _pack_d, _pack_i = _Q.pack, _D.pack, struct.Struct("<i").pack
_unpack_q, _unpack_d, _unpack_i = _Q.unpack_from, _D.unpack_from, struct.Struct("<i").unpack_from
_I64_MIN, _I64_MAX = -(1 << 63), (1 << 63) - 1
_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1
# An int value is 1, 4 or 8 bytes after its tag (its length says which): small
# counters, the commonest values, take 2 bytes, shared and never allocated.
_SMALL_INT_VALUES = [b"\x04" + i.to_bytes(1, "little", signed=True) for i in range(-128, 128)]
_INT8 = [i - 256 if i > 127 else i for i in range(256)]


def _dec_int(b: bytes) -> int:
    n = len(b)
    if n == 2:
        return _INT8[b[1]]
    if n == 5:
        return _unpack_i(b, 1)[0]
    if n == 9:
        return _unpack_q(b, 1)[0]
    raise struct.error(f"an int value has 1, 4 or 8 bytes, not {n - 1}")


try:  # cloudpickle's registry of modules it pickles by value (private; checked defensively)
    from cloudpickle import cloudpickle as _cp_impl
    _BY_VALUE_MODULES = _cp_impl._PICKLE_BY_VALUE_MODULES
    if not isinstance(_BY_VALUE_MODULES, set):
        raise TypeError
except Exception:  # pragma: no cover - a future cloudpickle without it
    _BY_VALUE_MODULES = None


def _pickle(v: Any, what: str) -> bytes:
    """Tag + pickle of ``v``: the C pickler when that is equivalent, else cloudpickle.

    The C pickler is ~8x faster than cloudpickle (~0.25 us vs ~2 us for a small
    tuple or dict), and both produce what ``pickle.loads`` reads.  They differ
    only where cloudpickle pickles *by value*: lambdas and local classes (the C
    pickler refuses those, so we fall back), things defined in ``__main__``
    (the C pickler would store a reference to ``__main__``, which another
    process cannot resolve: we detect the name and fall back), and modules
    registered with ``cloudpickle.register_pickle_by_value`` (then we always
    use cloudpickle).
    """
    if _BY_VALUE_MODULES is not None and not _BY_VALUE_MODULES:
        try:
            data = _pickle_dumps(v, 5)
            if data.find(b"__main__") < 0:  # (find: 2x faster than `in` here)
                return data
        except Exception:  # refused by the C pickler: cloudpickle may manage
            pass
    try:
        return cloudpickle.dumps(v, protocol=5)
    except Exception as e:  # TypeError, PicklingError, AttributeError, RecursionError...
        raise CodecError(f"{what}: cannot store a value of type {type_name(v)}: it cannot be "
                         f"pickled ({type(e).__name__}: {e}); store something picklable "
                         f"(e.g. the data it holds) instead") from e


def _val_int(n: int, what: str) -> bytes:
    if -128 <= n < 128:
        return _SMALL_INT_VALUES[n + 128]
    if _I32_MIN <= n <= _I32_MAX:
        return _INT_TAG + _pack_i(n)
    if _I64_MIN <= n <= _I64_MAX:
        return _INT_TAG + _pack_q(n)
    size = (n + (n < 0)).bit_length() // 8 + 1  # two's complement with room for the sign
    return b"\x05" + n.to_bytes(size, "little", signed=True)


def _val_str(s: str, what: str) -> bytes:
    try:
        return b"\x07" + s.encode()
    except UnicodeEncodeError:  # lone surrogates: keep them exactly via pickle
        return _pickle(s, what)


_FAST_VALUE_ENCODERS: dict[type, Callable[[Any, str], bytes]] = {
    int: _val_int,
    str: _val_str,
    float: lambda f, what: _FLOAT_TAG + _pack_d(f),
    bytes: lambda b, what: b"\x08" + b,
    type(None): lambda _, what: _B_VNONE,
    bool: lambda b, what: _B_VTRUE if b else _B_VFALSE,
    # Tuples (and everything else) go to _pickle: the C pickler encodes a small
    # tuple of scalars in ~0.25 us, 3x faster than a per-item codec in Python.
}


def encode_value(v: Any, what: str) -> bytes:
    """Bytes of ``v`` for the store: a tag byte and a payload.

    Exact ``int`` (64-bit: struct; larger: two's complement), ``float``,
    ``str``, ``bytes``, ``bool`` and ``None`` have their own tags; tuples and
    everything else are pickled (the C pickler, or cloudpickle where only it
    can).  Raises ``CodecError`` naming the statelet (``what``) and the type
    when ``v`` cannot be pickled, so a bad value fails where it is stored, not
    at the next snapshot.
    """
    t = type(v)
    # int and ASCII str inline: they are most of what operators store.
    if t is int:
        if -128 <= v < 128:
            return _SMALL_INT_VALUES[v + 128]
        if _I32_MIN <= v <= _I32_MAX:
            return _INT_TAG + _pack_i(v)
        return _val_int(v, what)
    if t is str and v.isascii():
        return b"\x07" + v.encode()
    enc = _FAST_VALUE_ENCODERS.get(t)
    if enc is None:
        return _pickle(v, what)
    return enc(v, what)


_VALUE_DECODERS: list[Callable[[bytes], Any] | None] = [None] * 256
_VALUE_DECODERS[V_NONE] = lambda b: None
_VALUE_DECODERS[V_FALSE] = lambda b: False
_VALUE_DECODERS[V_TRUE] = lambda b: True
_VALUE_DECODERS[V_INT] = _dec_int
_VALUE_DECODERS[V_BIGINT] = lambda b: int.from_bytes(b[1:], "little", signed=True)
_VALUE_DECODERS[V_FLOAT] = lambda b: _unpack_d(b, 1)[0]
_VALUE_DECODERS[V_STR] = lambda b: str(b[1:], "utf-8")
_VALUE_DECODERS[V_BYTES] = lambda b: bytes(b[1:])
_VALUE_DECODERS[V_PICKLE] = _pickle_loads


def decode_value(b: bytes | memoryview) -> Any:
    """The value ``encode_value`` turned into ``b`` (bytes or a memoryview).

    Raises ``CodecError`` for bytes no encoder produced (unknown tag, wrong
    length); an object whose unpickling fails raises what its class raises.
    """
    try:
        tag = b[0]
        if tag == V_INT:
            n = len(b)
            if n == 2:
                return _INT8[b[1]]
            if n == 5:
                return _unpack_i(b, 1)[0]
            return _dec_int(b)
        if tag == V_STR and b.__class__ is bytes:
            return b[1:].decode()
        dec = _VALUE_DECODERS[tag]
    except IndexError:
        raise CodecError("malformed value bytes: empty") from None
    except (struct.error, UnicodeDecodeError) as e:
        raise CodecError(f"malformed value bytes {bytes(b)[:64]!r}: {e}") from e
    if dec is None:
        raise CodecError(f"malformed value bytes {bytes(b)[:64]!r}: unknown tag 0x{tag:02x}")
    try:
        return dec(b)
    except (struct.error, UnicodeDecodeError) as e:
        raise CodecError(f"malformed value bytes {bytes(b)[:64]!r}: {e}") from e


# ------------------------------------------------------------ typed codecs

class ValueCodec:
    """Encodes the values of one statelet, checking a declared type if any.

    ``ValueCodec(int)`` refuses anything ``isinstance`` does not accept with a
    ``TypeError`` naming the statelet, the expected and the actual type;
    ``ValueCodec(None)`` accepts anything encodable.
    """

    __slots__ = ("type", "encode", "decode")

    def __init__(self, tp: type | tuple[type, ...] | None = None) -> None:
        _check_type_arg(tp, "value type")
        self.type = tp
        self.decode: Callable[[bytes], Any] = decode_value
        if tp is None:
            self.encode: Callable[[Any, str], bytes] = encode_value
        elif tp is int:
            def encode(v: Any, what: str) -> bytes:
                if v.__class__ is int:  # inlined fast path
                    if -128 <= v < 128:
                        return _SMALL_INT_VALUES[v + 128]
                    if _I32_MIN <= v <= _I32_MAX:
                        return _INT_TAG + _pack_i(v)
                    return _val_int(v, what)
                if not isinstance(v, int):
                    raise TypeError(f"{what} holds int but was given {type_name(v)} "
                                    f"({_short_repr(v)})")
                return encode_value(v, what)
            self.encode = encode
        elif tp is str:
            def encode(v: Any, what: str) -> bytes:
                if v.__class__ is str and v.isascii():  # inlined fast path
                    return b"\x07" + v.encode()
                if not isinstance(v, str):
                    raise TypeError(f"{what} holds str but was given {type_name(v)} "
                                    f"({_short_repr(v)})")
                return encode_value(v, what)
            self.encode = encode
        else:
            def encode(v: Any, what: str, _tp: Any = tp) -> bytes:
                if not isinstance(v, _tp):
                    raise TypeError(f"{what} holds {_expected(_tp)} but was given "
                                    f"{type_name(v)} ({_short_repr(v)})")
                return encode_value(v, what)
            self.encode = encode

    def __repr__(self) -> str:
        return f"ValueCodec({_expected(self.type) if self.type else 'any'})"


class KeyCodec:
    """Encodes the map keys of one statelet, checking a declared type if any."""

    __slots__ = ("type", "encode", "decode")

    def __init__(self, tp: type | tuple[type, ...] | None = None) -> None:
        _check_type_arg(tp, "key type")
        self.type = tp
        self.decode: Callable[[bytes], Any] = decode_key
        if tp is None:
            self.encode: Callable[[Any, str], bytes] = encode_key
        else:
            def encode(k: Any, what: str, _tp: Any = tp) -> bytes:
                if not isinstance(k, _tp):
                    raise TypeError(f"{what} has keys of {_expected(_tp)} but was given a key "
                                    f"of type {type_name(k)} ({_short_repr(k)})")
                return encode_key(k, what)
            self.encode = encode

    def __repr__(self) -> str:
        return f"KeyCodec({_expected(self.type) if self.type else 'any'})"


def value_codec(tp: type | tuple[type, ...] | None = None) -> ValueCodec:
    """A ``ValueCodec`` for values of type ``tp`` (``None``: any type)."""
    return ValueCodec(tp)


def key_codec(tp: type | tuple[type, ...] | None = None) -> KeyCodec:
    """A ``KeyCodec`` for keys of type ``tp`` (``None``: any encodable key)."""
    return KeyCodec(tp)


def _check_type_arg(tp: Any, label: str) -> None:
    if tp is None or isinstance(tp, type):
        return
    if isinstance(tp, tuple) and tp and all(isinstance(t, type) for t in tp):
        return
    raise TypeError(f"a statelet's {label} must be a class or a tuple of classes, not "
                    f"{_short_repr(tp)}")


def _expected(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(type_name(t) for t in tp)
    return type_name(tp)


def _short_repr(v: Any, limit: int = 60) -> str:
    try:
        r = repr(v)
    except Exception:
        r = f"<{type_name(v)} object>"
    return r if len(r) <= limit else r[:limit - 3] + "..."
