"""statelets.codecs: deterministic keys, round-tripping values, errors that name things."""
from __future__ import annotations

import collections
import enum
import math
import pickle
import socket
import struct
import threading

import pytest
from hypothesis import given, settings, strategies as st

from conftest import explain, run_python
from fake_store import FakeStore
from statelets.codecs import (KeyCodec, ValueCodec, decode_key, decode_value, encode_key,
                              encode_value)
from statelets.errors import CodecError, StateletError
from statelets.types import StateletContext, Value, Map, Appender
from uring.curio_compat import curio

W = "statelet 'total' of Count"

# ------------------------------------------------------------------ helpers

scalar_keys = (st.none() | st.booleans()
               | st.integers()
               | st.integers(min_value=-(1 << 3000), max_value=1 << 3000)
               | st.floats(allow_nan=False)
               | st.text() | st.binary())
keys = st.recursive(scalar_keys, lambda inner: st.lists(inner, max_size=4).map(tuple),
                    max_leaves=12)


def same(a, b) -> bool:
    """Equal and of exactly the same types, recursively (1 != True != 1.0 here)."""
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


class Color(enum.IntEnum):
    RED = 1


Point = collections.namedtuple("Point", "x y")


class Label(str):
    pass


class Thing:
    def __init__(self, n):
        self.n = n

    def __eq__(self, other):
        return type(other) is Thing and other.n == self.n


# --------------------------------------------------------------------- keys

@given(keys)
@settings(max_examples=400, deadline=None)
def test_key_round_trip_is_type_exact(k):
    b = encode_key(k, W)
    assert type(b) is bytes
    assert same(decode_key(b), k)


@given(keys, keys)
@settings(max_examples=400, deadline=None)
def test_equal_keys_iff_equal_bytes_and_prefix_free(a, b):
    ea, eb = encode_key(a, W), encode_key(b, W)
    assert (ea == eb) == same(a, b)
    if ea != eb:
        # prefix-free: a store key built from encodings cannot be mistaken for another's
        assert not eb.startswith(ea) and not ea.startswith(eb)


@pytest.mark.parametrize("strategy", [
    st.integers(), st.integers(min_value=-(1 << 2100), max_value=1 << 2100),
    st.floats(allow_nan=False), st.text(), st.binary(),
    st.tuples(st.integers(), st.text()), st.lists(st.integers(), max_size=3).map(tuple),
], ids=["int", "bigint", "float", "str", "bytes", "tuple", "tuples-of-lengths"])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_key_bytes_sort_like_the_keys(strategy, data):
    a, b = data.draw(strategy), data.draw(strategy)
    ea, eb = encode_key(a, W), encode_key(b, W)
    if a == b:
        assert ea == eb
    else:
        assert (a < b) == (ea < eb), (a, b, ea, eb)


def test_keys_of_distinct_types_never_collide():
    ks = [1, True, 1.0, "1", b"1", (1,), ((1,),), 0, False, 0.0, "", b"", (), None, (None,),
          "\x00", b"\x00", ("",), (b"",), -1, 256, 1 << 64, -(1 << 64), float("inf"),
          float("-inf"), "a", "a\x00", "a\x00b", b"a\x00\x01", (1, 2), ((1, 2),), (1, (2,))]
    enc = [encode_key(k, W) for k in ks]
    assert len(set(enc)) == len(ks)
    for i, a in enumerate(enc):
        for j, b in enumerate(enc):
            if i != j:
                assert not b.startswith(a), (ks[i], ks[j])


def test_minus_zero_is_zero_and_bools_are_not_ints():
    assert encode_key(-0.0, W) == encode_key(0.0, W)
    assert encode_key(True, W) != encode_key(1, W)
    assert encode_key(False, W) != encode_key(0, W)


@given(keys)
@settings(max_examples=200, deadline=None)
def test_keys_are_deterministic_across_calls_and_pickling(k):
    b = encode_key(k, W)
    assert encode_key(k, W) == b
    assert encode_key(pickle.loads(pickle.dumps(k)), W) == b


def test_keys_are_deterministic_across_processes_and_hash_seeds():
    sample = ("word", 42, -7, 1 << 80, 2.5, b"\x00raw", None, True, ("nested", (1, "x")))
    code = ("from statelets.codecs import encode_key\n"
            f"print(encode_key({sample!r}, 'w').hex())")
    outs = []
    for seed in ("0", "1", "12345"):
        proc = run_python(code, env={"PYTHONHASHSEED": seed})
        assert proc.returncode == 0, explain(proc)
        outs.append(proc.stdout.strip())
    assert outs[0] == outs[1] == outs[2] == encode_key(sample, "w").hex()


@pytest.mark.parametrize("bad, type_name", [
    ({"a": 1}, "dict"), ([1, 2], "list"), ({1, 2}, "set"), (frozenset([1]), "frozenset"),
    (bytearray(b"x"), "bytearray"), (Thing(1), "Thing"), (Color.RED, "Color"),
    (Point(1, 2), "Point"), (Label("x"), "Label"), (("ok", [1]), "list"),
    (object(), "object"),
])
def test_unencodable_keys_name_type_and_statelet(bad, type_name):
    with pytest.raises(CodecError) as ei:
        encode_key(bad, W)
    msg = str(ei.value)
    assert W in msg and type_name in msg
    assert isinstance(ei.value, StateletError)


def test_nan_key_is_refused_with_a_reason():
    with pytest.raises(CodecError, match=r"statelet 'total' of Count.*NaN"):
        encode_key(float("nan"), W)
    with pytest.raises(CodecError, match="NaN"):
        encode_key(("a", float("nan")), W)


def test_malformed_key_bytes_raise_codec_error():
    for bad in (b"", b"\xee", b"\x30abc", b"\x11\x05\x01", encode_key(1, W) + b"\x00",
                b"\x40\x11\x00"):
        with pytest.raises(CodecError):
            decode_key(bad)


def test_typed_key_codec_checks_isinstance():
    kc = KeyCodec(str)
    assert decode_key(kc.encode("a", W)) == "a"
    with pytest.raises(TypeError, match=r"statelet 'total' of Count.*str.*int"):
        kc.encode(3, W)


# ------------------------------------------------------------------- values

scalar_values = (st.none() | st.booleans() | st.integers()
                 | st.integers(min_value=-(1 << 2000), max_value=1 << 2000)
                 | st.floats(allow_nan=False) | st.text() | st.binary())
values = st.recursive(
    scalar_values,
    lambda inner: (st.lists(inner, max_size=4).map(tuple) | st.lists(inner, max_size=4)
                   | st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=12)


def same_value(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) in (tuple, list):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    if type(a) is float:
        return struct.pack("<d", a) == struct.pack("<d", b)  # -0.0 stays -0.0
    return a == b


@given(values)
@settings(max_examples=400, deadline=None)
def test_value_round_trip_keeps_types(v):
    b = encode_value(v, W)
    assert type(b) is bytes
    assert same_value(decode_value(b), v)
    assert same_value(decode_value(memoryview(b)), v)


@pytest.mark.parametrize("v", [
    -128, 127, 128, -129, (1 << 31) - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1,
    float("nan"), -0.0, float("inf"), "\ud800lone surrogate", "ünïcødé", 1 << 63, -(1 << 63),
    (1 << 63) - 1, -(1 << 63) - 1, 1 << 200, -(1 << 200), -1, 0, b"", "", (), ((),),
    Color.RED, Point(1, "a"), Label("x"), Thing(3), {"a": [1, (2, b"3")]}, {1, 2},
    bytearray(b"ab"), (True, 1, 1.0, "1", b"1", None),
])
def test_value_edge_cases_round_trip_exactly(v):
    out = decode_value(encode_value(v, W))
    assert type(out) is type(v)
    if isinstance(v, float) and math.isnan(v):
        assert math.isnan(out)
    elif isinstance(v, float):
        assert struct.pack("<d", out) == struct.pack("<d", v)
    else:
        assert out == v


def test_lambdas_and_local_classes_round_trip_via_cloudpickle():
    class Local:
        def __init__(self):
            self.f = lambda x: x * 3

    out = decode_value(encode_value(Local(), W))
    assert out.f(2) == 6
    assert decode_value(encode_value(lambda: 41, W))() == 41


def test_classes_from_main_restore_in_a_process_that_lacks_them():
    writer = ("from statelets.codecs import encode_value\n"
              "class Point:\n"
              "    def __init__(self, x): self.x = x\n"
              "print(encode_value((Point(7), Point), 'w').hex())")
    proc = run_python(writer)
    assert proc.returncode == 0, explain(proc)
    reader = ("from statelets.codecs import decode_value\n"
              f"p, cls = decode_value(bytes.fromhex({proc.stdout.strip()!r}))\n"
              "print(p.x, type(p) is cls)")
    proc2 = run_python(reader)
    assert proc2.returncode == 0, explain(proc2)
    assert proc2.stdout.split() == ["7", "True"]


@pytest.mark.parametrize("make, type_name", [
    (threading.Lock, "lock"),
    (lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM), "socket"),
    (lambda: ("fine", threading.Lock()), "tuple"),
])
def test_unpicklable_values_name_type_and_statelet(make, type_name):
    v = make()
    try:
        with pytest.raises(CodecError) as ei:
            encode_value(v, W)
        assert W in str(ei.value) and type_name in str(ei.value)
    finally:
        if isinstance(v, socket.socket):
            v.close()


def test_malformed_value_bytes_raise_codec_error():
    for bad in (b"", b"\xee", b"\x04", b"\x04\x01\x02", b"\x06\x00", b"\x07\xff\xfe"):
        with pytest.raises(CodecError):
            decode_value(bad)


def test_typed_value_codec_names_statelet_expected_and_actual():
    vc = ValueCodec(int)
    assert decode_value(vc.encode(5, W)) == 5
    assert decode_value(vc.encode(True, W)) is True  # isinstance(True, int)
    with pytest.raises(TypeError) as ei:
        vc.encode("5", W)
    msg = str(ei.value)
    assert W in msg and "int" in msg and "str" in msg
    with pytest.raises(TypeError, match="int or str"):
        ValueCodec((int, str)).encode(1.5, W)
    with pytest.raises(TypeError, match="class or a tuple of classes"):
        ValueCodec("int")  # type: ignore[arg-type]


# --------------------------------------- failures at set(), not at a snapshot

class Count:
    total = Value()
    seen = Map()
    log = Appender()

    def __init__(self, store):
        self.statelet_context = StateletContext(store, "count", "k")


def test_unpicklable_value_fails_at_set_not_later():
    async def main():
        store = FakeStore()
        op = Count(store)
        with pytest.raises(CodecError, match=r"statelet 'total' of Count \(operator 'count'\).*lock"):
            await op.total.set(threading.Lock())
        with pytest.raises(CodecError, match=r"statelet 'seen'.*lock"):
            await op.seen.put("a", threading.Lock())
        with pytest.raises(CodecError, match=r"statelet 'log'.*lock"):
            await op.log.append(threading.Lock())
        with pytest.raises(CodecError, match=r"statelet 'seen'.*dict"):
            await op.seen.put({"un": "hashable"}, 1)
        op.statelet_context.current_key = ["a", "list"]
        with pytest.raises(CodecError, match=r"statelet 'total'.*list"):
            await op.total.get()
        assert len(store) == 0  # nothing half-written

    curio.run(main)
