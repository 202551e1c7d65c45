"""record.value_of: the point-read check of one record (C helper and Python fallback)."""
from __future__ import annotations

import pytest

from statelets import record
from statelets.errors import CorruptionError

KEY = b"user:42"
REC = record.encode(7, record.PUT, KEY, b"the value")


@pytest.fixture(params=["c", "python"])
def impl(request, monkeypatch):
    if request.param == "c":
        if record._check_record is None:
            pytest.skip("the C extension is not built")
    else:
        monkeypatch.setattr(record, "_check_record", None)
    return request.param


def test_the_value_of_an_intact_record(impl):
    assert record.value_of(REC, KEY, path="f.seg", offset=100) == b"the value"
    empty = record.encode(1, record.PUT, KEY, b"")
    assert record.value_of(empty, KEY, path="f.seg", offset=0) == b""


@pytest.mark.parametrize("damage", ["checksum", "other key", "tombstone", "cut short",
                                    "bad kind", "too long"])
def test_damage_names_the_file_and_offset(impl, damage):
    data = bytearray(REC)
    if damage == "checksum":
        data[-1] ^= 1
    elif damage == "other key":
        data = bytearray(record.encode(7, record.PUT, b"user:43", b"the value"))
    elif damage == "tombstone":
        data = bytearray(record.encode(7, record.DELETE, KEY, b""))
    elif damage == "cut short":
        data = data[:-3]
    elif damage == "bad kind":
        data[20] = 9
    elif damage == "too long":
        data += b"\0" * 5
    with pytest.raises(CorruptionError) as err:
        record.value_of(bytes(data), KEY, path="/d/00000003.seg", offset=4096)
    assert "/d/00000003.seg" in str(err.value) and "4096" in str(err.value)
    assert err.value.offset == 4096
