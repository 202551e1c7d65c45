"""A batch encoded in C (checksums four records at a time) is byte for byte
the records ``record.encode`` makes one at a time, whatever their sizes."""
from __future__ import annotations

import random

import pytest

from statelets import record


@pytest.mark.parametrize("seed", range(8))
def test_batch_equals_single_records(seed: int) -> None:
    r = random.Random(seed)
    n = r.randint(1, 40)                # not a multiple of 4 most of the time
    keys = [r.randbytes(r.choice((0, 1, 7, 8, 9, 15, 16, 33, 200))) for _ in range(n)]
    vals = [r.randbytes(r.choice((0, 1, 5, 8, 63, 64, 100, 1000))) for _ in range(n)]
    kinds = bytes(r.choice((record.PUT, record.PUT, record.DELETE)) for _ in range(n)) \
        if seed % 2 else None
    bad, total = record.measure_batch(keys, vals, kinds)
    assert bad < 0
    out = bytearray(total + 64)
    base = r.randrange(0, 1 << 20)
    hint = bytearray(len(out))
    enc = record.encode_batch(keys, vals, kinds, 100, None, 0, out, base, hint)
    assert enc.count == n
    expected = b"".join(
        record.encode(100 + j, kinds[j] if kinds else record.PUT, keys[j],
                      b"" if kinds and kinds[j] == record.DELETE else vals[j])
        for j in range(n))
    assert bytes(enc.data) == expected
    pos = 0
    for j in range(n):
        seq, kind, key, value, size = record.decode_at(expected, pos, path="batch", base=base)
        assert (seq, key, enc.offs[j]) == (100 + j, keys[j], base + pos)
        pos += size


@pytest.mark.parametrize("seed", range(4))
def test_batch_writes_one_hint_row_per_record(seed: int) -> None:
    """The hint rows kx_encode writes beside the records are the format's
    (seq, offset, length, key length, kind, key), and never outgrow them."""
    r = random.Random(100 + seed)
    n = r.randint(1, 40)
    keys = [r.randbytes(r.choice((0, 1, 9, 16, 200))) for _ in range(n)]
    vals = [r.randbytes(r.choice((0, 5, 100))) for _ in range(n)]
    kinds = bytes(r.choice((record.PUT, record.DELETE)) for _ in range(n)) if seed % 2 else None
    _bad, total = record.measure_batch(keys, vals, kinds)
    out = bytearray(total)
    hint = bytearray(total)
    base = 4096 * seed
    enc = record.encode_batch(keys, vals, kinds, 7, None, 0, out, base, hint)
    assert enc.count == n and enc.hint_bytes <= len(enc.data)
    rows = b"".join(
        record.HINT_ROW.pack(7 + j, enc.offs[j], enc.lens[j], len(keys[j]),
                             kinds[j] if kinds else record.PUT) + keys[j] for j in range(n))
    assert bytes(hint[:enc.hint_bytes]) == rows


def test_a_short_hint_buffer_stops_the_batch_at_a_whole_row() -> None:
    keys = [b"k%03d" % i for i in range(10)]
    vals = [b"v" * 10] * 10
    out = bytearray(10_000)
    row = record.HINT_ROW_SIZE + 4
    hint = bytearray(3 * row + row // 2)
    enc = record.encode_batch(keys, vals, None, 1, None, 0, out, 0, hint)
    assert enc.count == 3 and enc.hint_bytes == 3 * row
