"""The state store under faults: corrupt bytes, a full disk, torn tails, wrong inputs.

(a) A flipped byte in a sealed segment is a CorruptionError naming the file
    and the offset (at open, or when the damaged record is read), never a
    wrong value.
(b) ENOSPC from the ring's fault injector while writing segments or the
    MANIFEST: the failing call raises OSError(ENOSPC) naming the file, the
    store is poisoned (StoreFailed, saying to reopen), and reopening restores
    exactly the last committed checkpoint.
(c) A crashed store whose newest segment has a torn tail (garbage appended,
    last record cut, last record flipped) reopens at its last checkpoint, and
    keeps working: what it writes next survives another reopen.
(d) Wrong inputs get errors that say what is wrong.
"""
from __future__ import annotations

import errno
import os
import random
import re
import signal
import subprocess
import sys

import pytest

from uring.curio_compat import curio

from statelets import CorruptionError, StateletError, Store, StoreConfig, StoreFailed

from conftest import explain, run_python

import store_crash_child as child

try:  # the record format (FORMAT.md): only to locate a record's header in a segment
    from statelets.record import HEADER_SIZE
except ImportError:
    HEADER_SIZE = 21

CONFIG = dict(segment_size=64 << 10, write_buffer_bytes=16 << 10, cache_bytes=32 << 10,
              keep_checkpoints=3, compaction_threshold=0.5)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_crash_child.py")


def concat(base, operands):
    return b"|".join(([base] if base is not None else []) + list(operands))


async def open_store(path, **kw):
    store = await Store.open(str(path), config=StoreConfig(**CONFIG), **kw)
    store.register_merge(b"m:", concat)
    return store


async def state_of(store) -> dict[bytes, bytes]:
    items = [(k, v) async for k, v in store.scan(b"")]
    assert [k for k, _ in items] == sorted(k for k, _ in items), "scan is not in key order"
    assert len(items) == len(store), f"scan lists {len(items)} keys, len(store) = {len(store)}"
    return dict(items)


async def assert_state(store, want: dict[bytes, bytes], what: str) -> None:
    got = await state_of(store)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = sorted(k for k in want if k in got and got[k] != want[k])
    assert not (missing or extra or wrong), (
        f"{what}: {len(missing)} keys missing {missing[:5]}, {len(extra)} extra {extra[:5]}, "
        f"{len(wrong)} with wrong values {wrong[:5]}")
    keys = sorted(want)[:200]
    assert await store.get_many(keys) == [want[k] for k in keys], f"{what}: get_many differs"


def fill(rng: random.Random, n: int, prefix: bytes = b"k:", size: int = 600) -> dict[bytes, bytes]:
    return {prefix + b"%05d" % i: rng.randbytes(rng.randint(1, size)) for i in range(n)}


async def put_all(store, kv: dict[bytes, bytes]) -> None:
    for k, v in kv.items():
        await store.put(k, v)


def seg_files(path) -> list[str]:
    d = os.path.join(str(path), "segments")
    return sorted((os.path.join(d, n) for n in os.listdir(d) if n.endswith(".seg")),
                  key=lambda p: int(os.path.basename(p).split(".")[0]))


def numbers_in(text: str) -> set[int]:
    nums = {int(m) for m in re.findall(r"(?<![0-9a-fA-Fx])\d+", text)}
    nums |= {int(m, 16) for m in re.findall(r"0x([0-9a-fA-F]+)", text)}
    return nums


def error_names_file(exc: BaseException, path: str) -> bool:
    base = os.path.basename(path)
    return base in str(exc) or base in str(getattr(exc, "filename", "") or "")


# -- (a) corruption ------------------------------------------------------------------------------

@pytest.mark.parametrize("where", ["value", "key", "checksum"])
def test_corrupt_byte_in_sealed_segment_is_reported(run, data_dir, where):
    path = data_dir / "store"
    rng = random.Random(1)
    kv = fill(rng, 200)
    target = b"k:target"
    value = b"TARGET-VALUE-" + bytes(range(256)) * 8 + b"-END"
    kv[target] = value

    async def setup(ring):
        store = await open_store(path)
        await put_all(store, kv)
        await store.checkpoint(1)
        await store.close()
    run(setup)

    hits = []
    for seg in seg_files(path):
        data = open(seg, "rb").read()
        pos = data.find(value)
        if pos >= 0:
            hits.append((seg, pos, data))
    assert len(hits) == 1, f"value expected in exactly one segment, found in {[h[0] for h in hits]}"
    seg, vpos, data = hits[0]
    assert os.path.exists(seg[:-4] + ".hint"), f"{seg} is not sealed (no .hint) after a checkpoint"
    kpos = data.rfind(target, 0, vpos)
    assert 0 < kpos < vpos, "key not found just before its value"
    # The record header (checksum first) precedes the key; its size is the format's.
    rec = kpos - HEADER_SIZE
    assert rec >= 0 and data[rec + HEADER_SIZE:].startswith(target), "record header not found"
    flip = {"value": vpos + len(value) // 2, "key": kpos + 3, "checksum": rec + 1}[where]
    with open(seg, "r+b") as f:
        f.seek(flip)
        old = f.read(1)
        f.seek(flip)
        f.write(bytes([old[0] ^ 0x5A]))
        f.flush()
        os.fsync(f.fileno())

    async def check(ring):
        try:
            store = await open_store(path)
        except CorruptionError as e:
            return e, "open"
        try:
            try:
                got = await store.get(target)
            except CorruptionError as e:
                return e, "get"
            return got, "no error"
        finally:
            await store.close()

    async def check_batched(ring):
        """The batched reads (get_many, scan) report it the same way."""
        try:
            store = await open_store(path)
        except CorruptionError:
            return []
        others = [k for k in sorted(kv) if k != target][:5]
        errors = []
        try:
            for what, call in [("get_many", lambda: store.get_many(others + [target] + others)),
                               ("scan", lambda: _collect(store.scan(b"k:")))]:
                try:
                    await call()
                except CorruptionError as e:
                    errors.append((what, e))
                except BaseException as e:
                    raise AssertionError(f"{what} over the damaged record raised "
                                         f"{type(e).__name__}: {e!r}, not CorruptionError") from e
                else:
                    raise AssertionError(f"{what} over the damaged record of {target!r} "
                                         f"raised nothing")
        finally:
            await store.close()
        return errors

    for what, e in run(check_batched):
        assert error_names_file(e, seg), f"{what}: CorruptionError does not name {seg}: {e}"

    result, when = run(check)
    assert isinstance(result, CorruptionError), (
        f"byte {flip} of {seg} ({where} of the record of {target!r}) flipped: {when} returned "
        f"{result[:40] if isinstance(result, bytes) else result!r} instead of raising CorruptionError")
    msg = str(result)
    assert error_names_file(result, seg), f"CorruptionError does not name {os.path.basename(seg)}: {msg}"
    # The offset named must be that of the damaged record (or the damaged byte).
    ok = [n for n in numbers_in(msg) if rec <= n <= flip]
    assert ok, (f"CorruptionError names no offset of the damaged record (record at {rec}, byte "
                f"{flip} flipped): {msg}")
    off = getattr(result, "offset", None)
    if off is not None:
        assert off in ok, f"CorruptionError.offset = {off}, message: {msg}"


async def _collect(aiter):
    return [x async for x in aiter]


def test_corrupt_hint_file_is_reported_or_rebuilt(run, data_dir):
    """A damaged hint file: either a CorruptionError naming it, or the store
    rebuilds the index from the segment and every value is right."""
    path = data_dir / "store"
    kv = fill(random.Random(2), 300)

    async def setup(ring):
        store = await open_store(path)
        await put_all(store, kv)
        await store.checkpoint(1)
        await store.close()
    run(setup)
    hints = sorted(p[:-4] + ".hint" for p in seg_files(path) if os.path.exists(p[:-4] + ".hint"))
    assert hints, "no hint file after a checkpoint"
    hint = hints[0]
    size = os.path.getsize(hint)
    with open(hint, "r+b") as f:
        f.seek(size // 2)
        b = f.read(1)
        f.seek(size // 2)
        f.write(bytes([b[0] ^ 0xFF]))

    async def check(ring):
        try:
            store = await open_store(path)
        except CorruptionError as e:
            assert error_names_file(e, hint), f"CorruptionError does not name {hint}: {e}"
            return
        try:
            await assert_state(store, kv, "after damaging a hint file")
        except CorruptionError as e:
            assert error_names_file(e, hint), f"CorruptionError does not name {hint}: {e}"
        finally:
            await store.close()
    run(check)


# -- (b) full disk ----------------------------------------------------------------------------

def injector(kinds, match):
    hits = []

    def inject(kind, name):
        if kind in kinds and name and match(name):
            hits.append((kind, name))
            return errno.ENOSPC
        return None
    return inject, hits


@pytest.mark.parametrize("when,kind,suffix", [("puts", "write", ".seg"),
                                              ("checkpoint", "write", ".seg"),
                                              ("checkpoint", "fsync", ".seg"),
                                              ("checkpoint", "write", ".hint"),
                                              ("checkpoint", "renameat", ".hint")])
def test_enospc_on_segments_keeps_last_checkpoint(run, data_dir, when, kind, suffix):
    path = data_dir / "store"
    rng = random.Random(3)
    committed = fill(rng, 150)
    committed.update({b"m:%d" % i: b"a|b" for i in range(5)})

    async def body(ring):
        store = await open_store(path)
        await put_all(store, {k: v for k, v in committed.items() if not k.startswith(b"m:")})
        for i in range(5):
            await store.merge(b"m:%d" % i, b"a")
            await store.merge(b"m:%d" % i, b"b")
        await store.checkpoint(1, metadata={"n": 1})
        await assert_state(store, committed, "after checkpoint 1")

        # Hint files may be written under a temporary name (".hint.tmp").
        inject, hits = injector({kind}, lambda n: n.endswith(suffix) or n.endswith(suffix + ".tmp"))
        ring.fault_injector = inject
        err = None
        where = None
        try:
            # More than a hundred write buffers for "puts"; a few records for "checkpoint".
            n = 2000 if when == "puts" else 20
            for i in range(n):
                where = f"put #{i}"
                await store.put(b"k:%05d" % (i % 300), rng.randbytes(1000))
                await store.delete(b"k:%05d" % ((i + 7) % 300))
                await store.merge(b"m:%d" % (i % 5), b"x")
            where = "checkpoint(2)"
            await store.checkpoint(2, metadata={"n": 2})
            where = "nothing"
        except BaseException as e:
            err = e
        assert err is not None, (
            f"{len(hits)} injected ENOSPC ({kind} on {suffix} files) yet every put and "
            f"checkpoint(2) succeeded: the failure was lost")
        assert hits, f"{where} raised {err!r} but the injector never fired"
        assert isinstance(err, OSError) and err.errno == errno.ENOSPC, (
            f"{where} raised {type(err).__name__}: {err} (chained: {err.__cause__!r}); "
            f"expected OSError(ENOSPC)")
        assert error_names_file(err, hits[0][1]), (
            f"the ENOSPC error does not name the {suffix} file {hits[0][1]}: {err!r} (filename "
            f"{getattr(err, 'filename', None)!r})")
        if when == "puts":
            assert where.startswith("put"), f"ENOSPC while writing segments surfaced only at {where}"

        # Poisoned: later writes say to reopen.
        for what, call in [("put", lambda: store.put(b"k:after", b"v")),
                           ("delete", lambda: store.delete(b"k:00001")),
                           ("merge", lambda: store.merge(b"m:1", b"y")),
                           ("checkpoint", lambda: store.checkpoint(3))]:
            try:
                await call()
            except StoreFailed as e:
                assert "reopen" in str(e).lower(), f"StoreFailed from {what} does not say to reopen: {e}"
            except BaseException as e:
                raise AssertionError(f"{what} on a store whose write failed raised "
                                     f"{type(e).__name__}: {e}, expected StoreFailed") from e
            else:
                raise AssertionError(f"{what} on a store whose write failed succeeded")

        ring.fault_injector = None
        try:
            await store.close()
        except StoreFailed:
            pass   # a poisoned store may say so again on close; it must still let go
        store = await open_store(path)
        try:
            assert store.checkpoints() == [1], f"checkpoints() = {store.checkpoints()} after reopen"
            await assert_state(store, committed, "reopened after ENOSPC")
            # And it works again: epoch 2 was never committed, so it is free.
            after = dict(committed)
            after[b"k:new"] = b"new"
            del after[b"k:00000"]
            after[b"m:0"] += b"|z"
            await store.put(b"k:new", b"new")
            await store.delete(b"k:00000")
            await store.merge(b"m:0", b"z")
            await store.checkpoint(2)
        finally:
            await store.close()
        store = await open_store(path)
        try:
            assert store.checkpoints() == [1, 2]
            await assert_state(store, after, "checkpoint 2 after recovering from ENOSPC")
        finally:
            await store.close()
    run(body)


@pytest.mark.parametrize("kind", ["write", "fsync", "renameat"])
def test_enospc_on_manifest_leaves_previous_checkpoint(run, data_dir, kind):
    """ENOSPC while committing the MANIFEST: checkpoint raises, the previous
    checkpoint stays the latest (renameat: the commit rename of the snapshot,
    whose name may be its directory rather than the MANIFEST file)."""
    path = data_dir / "store"
    rng = random.Random(4)
    first = fill(rng, 100)
    second = dict(first)
    second.update(fill(rng, 60, prefix=b"k2:"))

    def match(name: str) -> bool:
        if "MANIFEST" in name.upper():
            return True
        return kind == "renameat" and "snapshots" in name

    async def body(ring):
        store = await open_store(path)
        await put_all(store, first)
        await store.checkpoint(1, metadata={"n": 1})
        await put_all(store, {k: v for k, v in second.items() if k not in first})
        inject, hits = injector({kind}, match)
        ring.fault_injector = inject
        try:
            await store.checkpoint(2, metadata={"n": 2})
        except OSError as e:
            assert e.errno == errno.ENOSPC, f"checkpoint(2) raised {e!r}"
            assert error_names_file(e, hits[0][1]), f"the error does not name {hits[0][1]}: {e!r}"
        except BaseException as e:
            raise AssertionError(f"checkpoint(2) with ENOSPC on {kind} of {hits} raised "
                                 f"{type(e).__name__}: {e}, expected OSError(ENOSPC)") from e
        else:
            raise AssertionError(f"checkpoint(2) succeeded although {kind} of the MANIFEST failed "
                                 f"(injector hits: {hits}; if none, the MANIFEST is not written "
                                 f"through the ring)")
        with pytest.raises(StoreFailed):
            await store.put(b"k:after", b"v")
        ring.fault_injector = None
        try:
            await store.close()
        except StoreFailed:
            pass
        store = await open_store(path)
        try:
            assert store.checkpoints() == [1], (
                f"checkpoints() = {store.checkpoints()}: the failed checkpoint 2 is listed")
            await assert_state(store, first, "reopened after a failed MANIFEST commit")
            await store.put(b"k:again", b"1")
            m = await store.checkpoint(2, metadata={"n": 22})
            assert m.epoch == 2 and m.metadata == {"n": 22}
        finally:
            await store.close()
        store = await open_store(path)
        try:
            assert store.checkpoints() == [1, 2]
            await assert_state(store, {**first, b"k:again": b"1"}, "checkpoint 2 retried")
        finally:
            await store.close()
        # The older epoch is intact too.
        store = await open_store(path, epoch=1)
        try:
            await assert_state(store, first, "epoch 1 after the retried checkpoint 2")
        finally:
            await store.close()
    run(body)


def test_enospc_during_compaction_keeps_last_checkpoint(run, data_dir):
    """A full disk while compaction writes its output: compact() raises
    OSError(ENOSPC), and reopening restores the last checkpoint intact."""
    path = data_dir / "store"
    rng = random.Random(9)

    async def body(ring):
        store = await open_store(path)
        model: dict[bytes, bytes] = {}
        for r in range(6):                   # overwrite the same keys: mostly dead segments
            kv = fill(rng, 120, size=900)
            model.update(kv)
            await put_all(store, kv)
        await store.checkpoint(1)
        assert store.compaction_backlog() > 0.3, store.stats()
        inject, hits = injector({"write", "fsync", "renameat"},
                                lambda n: n.endswith(".seg") or ".hint" in n)
        ring.fault_injector = inject
        try:
            result = await store.compact()
        except OSError as e:
            assert e.errno == errno.ENOSPC and hits, repr(e)
            assert error_names_file(e, hits[0][1]), f"the error does not name {hits[0][1]}: {e!r}"
        else:
            raise AssertionError(f"compact() under ENOSPC returned {result} (injector hits: {hits})")
        ring.fault_injector = None
        try:
            await store.close()
        except StoreFailed:
            pass
        store = await open_store(path)
        try:
            assert store.checkpoints() == [1]
            await assert_state(store, model, "reopened after ENOSPC during compaction")
            await store.compact()            # and compaction works again
            await assert_state(store, model, "compacted after the reopen")
            await store.checkpoint(2)
        finally:
            await store.close()
        store = await open_store(path)
        try:
            await assert_state(store, model, "checkpoint 2 after compaction")
        finally:
            await store.close()
    run(body)


# -- (c) torn tail ----------------------------------------------------------------------------

def crash_torn(path: str, backend: str, seed: int) -> None:
    proc = subprocess.run([sys.executable, CHILD, path, str(seed), "--backend", backend,
                           "--mode", "torn"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == -signal.SIGKILL and "dirty" in proc.stdout, explain(proc)


@pytest.mark.parametrize("damage", ["garbage", "truncate", "flip-last", "zeros-then-garbage"])
def test_torn_tail_of_crashed_store_is_cut(run, backend, data_dir, damage):
    path = str(data_dir / "store")
    seed = 11
    crash_torn(path, backend, seed)
    segs = seg_files(path)
    assert segs, "the crashed store has no segment files"
    active = segs[-1]
    assert not os.path.exists(active[:-4] + ".hint"), f"newest segment {active} is sealed"
    # The newest segment with data on disk (the active one if its data reached the disk).
    with_data = [s for s in segs if open(s, "rb").read().rstrip(b"\0")]
    assert with_data
    rng = random.Random(damage)
    if damage in ("garbage", "zeros-then-garbage"):
        data = open(active, "rb").read()
        end = len(data.rstrip(b"\0"))
        if damage == "zeros-then-garbage":
            end += 4096
        with open(active, "r+b") as f:
            f.seek(end)
            f.write(rng.randbytes(777))
    else:
        victim = with_data[-1]
        data = open(victim, "rb").read()
        end = len(data.rstrip(b"\0"))
        assert end > 100
        with open(victim, "r+b") as f:
            if damage == "truncate":
                f.truncate(end - 7)
            else:
                f.seek(end - 5)
                b = f.read(1)
                f.seek(end - 5)
                f.write(bytes([b[0] ^ 1]))

    want1 = child.expected_state(seed, child.TORN_KEYS)

    async def body(ring):
        store = await Store.open(path, config=StoreConfig(**child.CONFIG))
        store.register_merge(b"m:", child.concat)
        try:
            assert store.checkpoints() == [1], store.checkpoints()
            await assert_state(store, want1, f"reopened after a crash with a torn tail ({damage})")
            # Keep writing past the cut, more than a segment's worth.
            rng2 = random.Random(5)
            more = {b"z:%05d" % i: rng2.randbytes(500) for i in range(600)}
            await put_all(store, more)
            await store.checkpoint(2)
        finally:
            await store.close()
        store = await Store.open(path, config=StoreConfig(**child.CONFIG))
        store.register_merge(b"m:", child.concat)
        try:
            await assert_state(store, {**want1, **more}, "checkpoint 2 written after the cut")
        finally:
            await store.close()
    run(body)


def test_crash_before_first_checkpoint_opens_empty(run, backend, data_dir):
    """A writer killed before any checkpoint: the directory opens empty."""
    path = str(data_dir / "store")
    code = (f"import sys, os, signal; sys.path.insert(0, 'tests'); import store_crash_child as c\n"
            f"import uring\nfrom uring.curio_compat import curio\nfrom statelets import Store, StoreConfig\n"
            f"async def main():\n"
            f"    async with uring.Ring(backend={backend!r}):\n"
            f"        s = await Store.open({path!r}, config=StoreConfig(**c.CONFIG))\n"
            f"        for i in range(3000):\n"
            f"            await s.put(b'k:%d' % i, b'x' * 200)\n"
            f"        os.kill(os.getpid(), signal.SIGKILL)\n"
            f"curio.run(main)\n")
    proc = run_python(code)
    assert proc.returncode == -signal.SIGKILL, explain(proc)

    async def body(ring):
        store = await open_store(path)
        try:
            assert store.checkpoints() == []
            await assert_state(store, {}, "a store killed before its first checkpoint")
        finally:
            await store.close()
    run(body)


# -- (d) wrong inputs ---------------------------------------------------------------------------

def test_non_bytes_keys_and_values_are_type_errors(run, data_dir):
    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            cases = [("put key", lambda: store.put(123, b"v"), "key", "int"),
                     ("put key str", lambda: store.put("k", b"v"), "key", "str"),
                     ("put value", lambda: store.put(b"k", "v"), "value", "str"),
                     ("put value None", lambda: store.put(b"k", None), "value", "None"),
                     ("delete key", lambda: store.delete(1.5), "key", "float"),
                     ("merge key", lambda: store.merge(["m:1"], b"x"), "key", "list"),
                     ("merge operand", lambda: store.merge(b"m:1", 7), "", "int"),
                     ("get key", lambda: store.get("k"), "key", "str")]
            for what, call, word, tname in cases:
                with pytest.raises(TypeError) as ei:
                    await call()
                msg = str(ei.value)
                assert word in msg.lower() and tname in msg, (
                    f"{what}: TypeError does not say what is wrong ({word!r}, {tname!r}): {msg!r}")
            # Nothing was written by the rejected calls, and the store still works.
            assert len(store) == 0
            await store.put(b"k", b"v")
            assert await store.get(b"k") == b"v"
            await store.checkpoint(1)
        finally:
            await store.close()
    run(body)


def test_merge_without_a_merge_function_is_an_error(run, data_dir):
    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            with pytest.raises(StateletError) as ei:
                await store.merge(b"nofn:1", b"x")
            assert "nofn:1" in str(ei.value) or "merge" in str(ei.value).lower(), str(ei.value)
            assert await store.get(b"nofn:1") is None
        finally:
            await store.close()
    run(body)


def test_checkpoint_epochs_must_increase(run, data_dir):
    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            await store.put(b"a", b"1")
            await store.checkpoint(7)
            for bad in (7, 5, 0):
                with pytest.raises(StateletError) as ei:
                    await store.checkpoint(bad)
                assert "7" in str(ei.value), (
                    f"checkpoint({bad}) after 7: the error does not name the last epoch: {ei.value}")
            for bad in ("8", 8.0, None):
                with pytest.raises((TypeError, StateletError)):
                    await store.checkpoint(bad)
            # A rejected epoch is a caller's mistake, not a failed write: the store goes on.
            await store.put(b"b", b"2")
            m = await store.checkpoint(8)
            assert m.epoch == 8
            assert store.checkpoints() == [7, 8]
        finally:
            await store.close()
        store = await open_store(data_dir / "store")
        try:
            with pytest.raises(StateletError) as ei:
                await store.checkpoint(8)
            assert "8" in str(ei.value), str(ei.value)
            await assert_state(store, {b"a": b"1", b"b": b"2"}, "after reopening")
        finally:
            await store.close()
    run(body)


def test_negative_epoch_is_a_value_error(run, data_dir):
    """-1 is an int: a wrong value (StateletError or ValueError), not a TypeError."""
    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            with pytest.raises((StateletError, ValueError)) as ei:
                await store.checkpoint(-1)
            assert "-1" in str(ei.value)
            await store.checkpoint(0)
        finally:
            await store.close()
    run(body)


def test_checkpoint_after_opening_an_older_epoch(run, data_dir):
    """Open epoch 1 while 2 and 3 are retained, then checkpoint 2 again: either
    a clear StateletError before anything is written, or a checkpoint 2 that
    holds the new state. Never a failed (poisoned) store."""
    path = data_dir / "store"

    async def body(ring):
        store = await open_store(path)
        try:
            for e in (1, 2, 3):
                await store.put(b"e", b"%d" % e)
                await store.checkpoint(e)
        finally:
            await store.close()
        store = await open_store(path, epoch=1)
        try:
            assert await store.get(b"e") == b"1"
            await store.put(b"x", b"after-1")
            try:
                m = await store.checkpoint(2)
            except StoreFailed as e:
                raise AssertionError(f"checkpoint(2) after opening epoch 1 poisoned the store: "
                                     f"{e} (cause {e.__cause__!r})") from e
            except OSError as e:
                raise AssertionError(f"checkpoint(2) after opening epoch 1 (2 and 3 retained) "
                                     f"failed with an I/O error instead of a clear refusal: "
                                     f"{e!r}") from e
            except StateletError as e:
                assert "2" in str(e), str(e)
                await store.put(b"y", b"still-usable")   # a refusal must not poison it
                m = await store.checkpoint(4)
                assert m.epoch == 4
                want = {b"e": b"1", b"x": b"after-1", b"y": b"still-usable"}
                latest = 4
            else:
                assert m.epoch == 2
                want = {b"e": b"1", b"x": b"after-1"}
                latest = 2
        finally:
            await store.close()
        store = await open_store(path, epoch=latest)
        try:
            await assert_state(store, want, f"epoch {latest} committed after opening epoch 1")
        finally:
            await store.close()
    run(body)


def test_checkpoint_metadata_round_trips(run, data_dir):
    meta = {"ops": 5, "s": "x\u00e9", "l": [1, 2, [3]], "d": {"a": None}, "f": 1.5, "b": True,
            "big": 2**62}

    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            await store.put(b"a", b"1")
            m = await store.checkpoint(1, metadata=meta)
            assert m.metadata == meta
        finally:
            await store.close()
        store = await open_store(data_dir / "store")
        try:
            assert store.metadata == meta, f"metadata after reopen: {store.metadata!r}"
            assert store.manifest.metadata == meta and store.manifest.epoch == 1
        finally:
            await store.close()
    run(body)


@pytest.mark.parametrize("bad", [{"x": object()}, {"b": b"bytes"}, {"s": {1, 2}}, ["not", "dict"]],
                         ids=["object", "bytes", "set", "list"])
def test_bad_checkpoint_metadata_is_refused_without_poisoning(run, data_dir, bad):
    """Metadata that cannot be stored is the caller's mistake: a clear error
    before anything is committed, and the store goes on working."""
    async def body(ring):
        store = await open_store(data_dir / "store")
        try:
            await store.put(b"a", b"1")
            with pytest.raises((TypeError, ValueError, StateletError)) as ei:
                await store.checkpoint(1, metadata=bad)
            assert not isinstance(ei.value, StoreFailed), repr(ei.value)
            assert "metadata" in str(ei.value).lower(), (
                f"the error does not say the metadata is at fault: {ei.value!r}")
            assert store.checkpoints() == []
            try:
                await store.put(b"b", b"2")
                m = await store.checkpoint(1, metadata={"ok": 1})
            except StoreFailed as e:
                raise AssertionError(f"bad metadata poisoned the store: {e}") from e
            assert m.epoch == 1
        finally:
            await store.close()
        store = await open_store(data_dir / "store")
        try:
            await assert_state(store, {b"a": b"1", b"b": b"2"}, "after the refused checkpoint")
            assert store.metadata == {"ok": 1}
        finally:
            await store.close()
    run(body)


def test_oversized_key_is_refused_or_round_trips(run, data_dir):
    """A key longer than the record format allows must be refused by put
    (a clear error naming the size), never committed and then reported as
    corruption when read back."""
    key = b"K" * ((1 << 20) + 1)
    path = data_dir / "store"

    async def body(ring):
        store = await open_store(path)
        refused = None
        try:
            try:
                await store.put(key, b"v")
            except (ValueError, StateletError) as e:
                refused = e
                assert "key" in str(e).lower(), str(e)
            await store.put(b"small", b"s")
            await store.checkpoint(1)
        finally:
            await store.close()
        store = await open_store(path)
        try:
            got = await store.get(key)
            assert got == (None if refused else b"v"), f"get(huge key) = {got!r}"
            assert await store.get(b"small") == b"s"
        except CorruptionError as e:
            raise AssertionError(f"a {len(key)}-byte key was accepted and committed, then read "
                                 f"back as corruption: {e}") from e
        finally:
            await store.close()
    run(body)


def test_open_on_a_file_is_a_clear_error(run, data_dir):
    f = data_dir / "not-a-dir"
    f.write_bytes(b"hello")

    async def body(ring):
        with pytest.raises((StateletError, OSError)) as ei:
            await open_store(f)
        e = ei.value
        assert str(f) in str(e) or str(f) == str(getattr(e, "filename", "")), (
            f"opening a store on a file: the error does not name the path: {e!r}")
        assert f.read_bytes() == b"hello", "the file was modified"
    run(body)


def test_open_missing_epoch_lists_retained(run, data_dir):
    path = data_dir / "store"

    async def body(ring):
        store = await open_store(path)
        try:
            for e in (1, 2, 3, 4, 5):
                await store.put(b"e", b"%d" % e)
                await store.checkpoint(e * 10)
            assert store.checkpoints() == [30, 40, 50]
        finally:
            await store.close()
        for bad in (10, 35, 60):
            with pytest.raises(StateletError) as ei:
                await open_store(path, epoch=bad)
            msg = str(ei.value)
            assert str(bad) in msg and all(str(e) in msg for e in (30, 40, 50)), (
                f"opening epoch {bad}: the error does not name it and list the retained "
                f"30, 40, 50: {msg}")
        # The failed opens did not hold the lock or damage anything.
        store = await open_store(path, epoch=40)
        try:
            assert await store.get(b"e") == b"4"
        finally:
            await store.close()
        store = await open_store(path)
        try:
            assert await store.get(b"e") == b"5"
        finally:
            await store.close()
    run(body)


def test_open_missing_epoch_in_empty_store(run, data_dir):
    async def body(ring):
        with pytest.raises(StateletError) as ei:
            await open_store(data_dir / "store", epoch=3)
        assert "3" in str(ei.value), str(ei.value)
    run(body)


def test_second_open_of_same_dir_is_refused(run, backend, data_dir):
    path = data_dir / "store"

    async def body(ring):
        store = await open_store(path)
        try:
            await store.put(b"a", b"1")
            await store.checkpoint(1)
            with pytest.raises(StateletError) as ei:
                await open_store(path)
            msg = str(ei.value)
            assert "lock" in msg.lower() and str(path) in msg, (
                f"second open in the same process: the error should name the LOCK and the "
                f"directory: {msg}")
            # Another process too.
            code = ("import sys; sys.path.insert(0, 'tests')\n"
                    "import uring\nfrom uring.curio_compat import curio\n"
                    "from statelets import Store, StateletError\n"
                    "async def main():\n"
                    f"    async with uring.Ring(backend={backend!r}):\n"
                    "        try:\n"
                    f"            s = await Store.open({str(path)!r})\n"
                    "        except StateletError as e:\n"
                    "            print('REFUSED', e)\n"
                    "        else:\n"
                    "            print('OPENED')\n"
                    "            await s.close()\n"
                    "curio.run(main)\n")
            proc = await curio.run_in_thread(run_python, code)
            assert proc.returncode == 0 and "REFUSED" in proc.stdout, explain(proc)
            assert "lock" in proc.stdout.lower(), proc.stdout
            # The refused opens changed nothing.
            assert await store.get(b"a") == b"1"
            await store.put(b"b", b"2")
            await store.checkpoint(2)
        finally:
            await store.close()
        store = await open_store(path)   # released by close
        try:
            await assert_state(store, {b"a": b"1", b"b": b"2"}, "after the refused opens")
        finally:
            await store.close()
    run(body)


# -- resources -----------------------------------------------------------------------------------

def test_cold_batched_reads_do_not_leak_file_descriptors(run, data_dir):
    """get_many over many keys of a cold (just reopened) store opens each
    segment once, and close() leaves no descriptor behind: a recovering
    process that reads its whole state must not run out of fds."""
    path = data_dir / "store"
    kv = fill(random.Random(6), 1500, size=200)

    def fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    async def body(ring):
        store = await open_store(path)
        try:
            await put_all(store, kv)
            await store.checkpoint(1)
        finally:
            await store.close()
        n_segs = len(seg_files(path))
        before = fds()
        store = await open_store(path)
        try:
            keys = sorted(kv)
            assert await store.get_many(keys) == [kv[k] for k in keys]
            during = fds()
            assert during - before <= n_segs + 8, (
                f"{during - before} descriptors opened to read {len(keys)} cold keys from "
                f"{n_segs} segments: each concurrent read opened the segment again")
        finally:
            await store.close()
        after = fds()
        assert after == before, f"close() left {after - before} file descriptors open"
    run(body)
