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
    bad, total, key_bytes = record.measure_batch(keys, vals, kinds)
    assert bad < 0
    out = bytearray(total + 64)
    base = r.randrange(0, 1 << 20)
    enc = record.encode_batch(keys, vals, kinds, 100, None, 0, out, base, bytearray(), key_bytes)
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
