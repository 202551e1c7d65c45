"""The store's key index: the C table against the dict implementation (the model)."""
from __future__ import annotations

import random
from array import array

import pytest

from statelets import keyindex, record
from statelets.keyindex import DictKeyIndex

C_AVAILABLE = keyindex.lib is not None
needs_c = pytest.mark.skipif(not C_AVAILABLE, reason=f"key index: {keyindex.IMPLEMENTATION}")


def _rid(sid: int, ordinal: int, length: int) -> int:
    return sid << 64 | ordinal << 32 | length


@pytest.fixture(params=["c", "dict"])
def index(request):
    if request.param == "c":
        if not C_AVAILABLE:
            pytest.skip(f"key index: {keyindex.IMPLEMENTATION}")
        return keyindex.CKeyIndex()
    return DictKeyIndex()


def _batch(r: random.Random, n: int, nkeys: int, deletes: bool):
    keys = [b"k%d" % r.randrange(nkeys) for _ in range(n)]
    lens = array("I", [r.randint(22, 200) for _ in range(n)])
    kinds = bytes(r.choice((record.PUT, record.PUT, record.DELETE)) for _ in range(n)) \
        if deletes else None
    return keys, lens, kinds


def _same(a, b) -> None:
    assert len(a) == len(b)
    assert sorted(a.keys()) == sorted(b.keys())
    for k in b.keys():
        assert a.get(k) == b.get(k)
        assert k in a
    probe = [b"k%d" % i for i in range(0, 6000, 7)]
    assert a.missing(probe) == b.missing(probe) == [k for k in probe if k not in b]
    assert a.live_bytes_by_segment() == b.live_bytes_by_segment()


@needs_c
@pytest.mark.parametrize("seed", range(6))
def test_c_index_matches_the_dict_model(seed: int) -> None:
    """Batches of puts and tombstones, repeated keys included, in order; repoints; pops."""
    r = random.Random(seed)
    c, d = keyindex.CKeyIndex(), DictKeyIndex()
    for sid in range(1, 60):
        keys, lens, kinds = _batch(r, r.randint(0, 300), r.choice((20, 500, 5000)),
                                   r.random() < 0.4)
        if r.random() < 0.3:            # the hint-file path: keys concatenated
            args = (b"".join(keys), array("I", map(len, keys)), sid, 7, lens, kinds)
            assert c.apply_joined(*args) == d.apply_joined(*args)
        else:
            assert c.apply(keys, sid, 7, lens, kinds) == d.apply(keys, sid, 7, lens, kinds)
        if r.random() < 0.2:            # compaction: move some keys, some stale
            some = r.sample(d.keys(), min(len(d), 50))
            olds = [d.get(k) if r.random() < 0.8 else _rid(999, 1, 5) for k in some]
            news = [_rid(1000 + sid, i, r.randint(22, 90)) for i in range(len(some))]
            assert c.repoint(some, olds, news) == d.repoint(some, olds, news)
        if r.random() < 0.2 and len(d):
            k = r.choice(d.keys())
            assert c.pop(k) == d.pop(k)
            assert c.pop(k, "gone") == "gone"
        _same(c, d)


def test_apply_reports_dead_bytes_per_segment(index) -> None:
    assert index.apply([b"a", b"b"], 1, 0, [30, 40]) == {}
    # b replaced (40 dead in 1), a deleted (30 dead in 1, and the tombstone's 25 in 2).
    assert index.apply([b"b", b"a"], 2, 0, [50, 25], bytes([record.PUT, record.DELETE])) == \
        {1: 70, 2: 25}
    assert index.get(b"b") == _rid(2, 0, 50)
    assert b"a" not in index and index.get(b"a") is None
    # A key repeated within one batch: the later record wins, the earlier is dead.
    assert index.apply([b"c", b"c"], 3, 4, [30, 31]) == {3: 30}
    assert index[b"c"] == _rid(3, 5, 31)
    with pytest.raises(KeyError):
        index[b"zz"]


def test_set_pop_and_growth(index) -> None:
    n = 50_000
    for i in range(n):
        index[b"key%d" % i] = _rid(1, i, 30)
    assert len(index) == n
    assert index.get(b"key49999") == _rid(1, 49999, 30)
    for i in range(0, n, 2):
        assert index.pop(b"key%d" % i) == _rid(1, i, 30)
    assert len(index) == n // 2
    assert all(index.get(b"key%d" % i) == (None if i % 2 == 0 else _rid(1, i, 30))
               for i in range(n))
    assert index.live_bytes_by_segment() == {1: 30 * (n // 2)}
    index.clear()
    assert len(index) == 0 and index.keys() == []


@needs_c
def test_arena_is_reclaimed_after_churn() -> None:
    """Deleted keys' bytes are reclaimed: churning keys does not grow memory without bound."""
    ix = keyindex.CKeyIndex()
    big = b"x" * 1000
    for rnd in range(40):
        keys = [big + b"%d-%d" % (rnd, i) for i in range(200)]
        ix.apply(keys, rnd + 1, 0, [1100] * 200)
        ix.apply(keys, rnd + 100, 0, [1030] * 200, bytes([record.DELETE]) * 200)
    assert len(ix) == 0
    assert ix.memory < 8 << 20          # 8 MB of keys went through; ~2 MB peak live


def test_empty_and_maximal_keys(index) -> None:
    top = b"k" * record.MAX_KEY
    index.apply([b"", top], 1, 0, [21, 21 + record.MAX_KEY])
    assert index.get(b"") == _rid(1, 0, 21)
    assert index.get(top) == _rid(1, 1, 21 + record.MAX_KEY)
    assert sorted(index.keys()) == [b"", top]


@needs_c
def test_c_index_refuses_non_bytes_keys_naming_the_type() -> None:
    ix = keyindex.CKeyIndex()
    with pytest.raises(TypeError, match="keys must be bytes.*got str"):
        ix.apply([b"a", "b"], 1, 0, [22, 22])
    with pytest.raises(TypeError, match="got bytes of 2097152 bytes"):
        ix.apply([b"k" * (2 << 20)], 1, 0, [22])
    with pytest.raises(ValueError, match="key lengths"):
        ix.apply_joined(b"abc", [2, 2], 1, 0, [22, 22])


@needs_c
def test_store_behaves_the_same_on_either_index(tmp_path, monkeypatch) -> None:
    """A store workload (batches, deletes, checkpoints, compaction, reopen) gives the
    same contents and the same dead-byte accounting on the C and the dict index."""
    from conftest import run_with_store
    from statelets import store as store_mod

    async def workload(store):
        r = random.Random(11)
        for rnd in range(6):
            keys = [b"k%05d" % r.randrange(3000) for _ in range(700)]
            await store.put_many(keys, [b"v%d-" % rnd + k for k in keys])       # direct batch
            await store.put_many(keys[:50], [b"small" + k for k in keys[:50]])  # buffered
            for k in keys[50:120]:
                await store.delete(k)
            await store.checkpoint(rnd + 1)
            await store.compact()
        return {k: v async for k, v in store.scan()}, store.stats()["dead_bytes"]

    async def reread(store):
        return {k: v async for k, v in store.scan()}, store.stats()["dead_bytes"]

    out = {}
    for impl in (keyindex.CKeyIndex, DictKeyIndex):
        monkeypatch.setattr(store_mod, "new_index", impl)
        path = tmp_path / impl.__name__
        path.mkdir()
        written = run_with_store(path, workload, segment_size=64 << 10)
        reopened = run_with_store(path, reread, segment_size=64 << 10)
        assert reopened[0] == written[0]
        out[impl] = written
    assert out[keyindex.CKeyIndex] == out[DictKeyIndex]
    assert len(out[DictKeyIndex][0]) > 1000
