"""The state store against a dict model: any sequence of operations, flushes,
checkpoints, reopens and compactions leaves exactly the state the model says.

A hypothesis ``RuleBasedStateMachine`` drives one :class:`statelets.Store` and a
plain dict side by side. The store's configuration is tiny (64 KiB segments,
16 KiB write buffer, 32 KiB cache) so that a few dozen steps seal many
segments, miss the cache, and leave dead bytes for compaction.

Semantics the model encodes (from the store's API contract):

* ``merge`` on a ``b"m:"`` key appends an operand; the registered merge
  function joins base and operands with ``b"|"``, so the model does too.
* ``checkpoint(epoch)`` commits the current state; the model keeps a copy of it
  per epoch. Only ``keep_checkpoints`` (3) epochs are retained.
* ``reopen`` (close + ``Store.open``) restores the LAST COMMITTED checkpoint:
  everything written after it is gone. ``Store.open(epoch=e)`` restores an
  older retained epoch exactly.
* ``compact()`` never changes what is visible.

Every step runs as a coroutine in one long-lived curio kernel (a worker
thread) inside one entered ``uring.Ring``; hypothesis' thread hands it jobs
through a ``curio.UniversalQueue``.
"""
from __future__ import annotations

import concurrent.futures
import random
import shutil
import sys
import tempfile
import threading
import traceback
from typing import Any, Awaitable, Callable

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition,
                                 rule, run_state_machine_as_test)

import uring
from uring.curio_compat import curio

from statelets import Store, StoreConfig

from conftest import settle

SEP = b"|"
CONFIG = dict(segment_size=64 << 10, write_buffer_bytes=16 << 10, cache_bytes=32 << 10,
              keep_checkpoints=3, compaction_threshold=0.5)
KEEP = CONFIG["keep_checkpoints"]

#: Plain keys: "k:1" is a prefix of "k:10".."k:19" (prefix scans), a key equal
#: to a scan prefix ("k:"), binary bytes, and one long key.
PLAIN_KEYS = ([b"k:%d" % i for i in range(20)] + [b"k:", b"k:1\x00", b"k:1\xff",
              b"k:long-" + b"x" * 300, b"\x00", b"\xff\xfe"])
#: Keys under the merge prefix (put and delete apply to them too).
MERGE_KEYS = [b"m:%d" % i for i in range(8)]
ALL_KEYS = PLAIN_KEYS + MERGE_KEYS
ABSENT = [b"never-written", b"k:100", b"m:", b"l"]
PREFIXES = [b"", b"k:", b"k:1", b"k:1\x00", b"m:", b"m:7", b"\x00", b"\xff", b"zz", b"k:long-"]


def concat(base: bytes | None, operands: list[bytes]) -> bytes:
    """The merge function: base (if any) then operands, joined by SEP."""
    parts = ([base] if base is not None else []) + list(operands)
    return SEP.join(parts)


values = st.one_of(
    st.binary(max_size=48),
    # Big values, cheap to generate: bigger than the write buffer sometimes.
    st.builds(lambda b, n: bytes([b]) * n, st.integers(0, 255), st.integers(0, 20_000)),
)


class CurioThread:
    """A curio kernel in a worker thread, with one ``uring.Ring`` entered for its whole life.

    ``call(fn)`` runs ``await fn()`` in that kernel and returns its result (or
    raises its exception) in the calling thread.
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.jobs = curio.UniversalQueue()
        self.ready = threading.Event()
        self.ring: Any = None
        self.left = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"store-model-{backend}", daemon=True)
        self.thread.start()
        if not self.ready.wait(30):
            raise RuntimeError(f"the {backend} ring did not start within 30 s")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            curio.run(self._main)
        except BaseException as e:
            self.error = e
        finally:
            self.ready.set()

    async def _main(self) -> None:
        async with uring.Ring(backend=self.backend) as ring:
            self.ring = ring
            self.ready.set()
            try:
                while True:
                    job = await self.jobs.get()
                    if job is None:
                        break
                    fn, fut = job
                    try:
                        result = await fn()
                    except (curio.errors.TaskCancelled, curio.errors.KernelExit):
                        raise
                    except BaseException as e:  # handed to the caller's thread
                        fut.set_exception(e)
                    else:
                        fut.set_result(result)
            finally:
                self.left = await settle(ring)

    def call(self, fn: Callable[[], Awaitable[Any]], timeout: float = 120) -> Any:
        if not self.thread.is_alive():
            raise RuntimeError(f"the curio thread is gone: {self.error!r}")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self.jobs.put((fn, fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            frame = sys._current_frames().get(self.thread.ident or -1)
            stack = "".join(traceback.format_stack(frame)) if frame else "(thread gone)"
            raise AssertionError(f"store operation did not finish within {timeout} s on the "
                                 f"{self.backend} backend; curio thread:\n{stack}") from None

    def close(self) -> None:
        self.jobs.put(None)
        self.thread.join(60)
        assert not self.thread.is_alive(), "the curio thread did not stop within 60 s"
        assert self.left == 0, f"{self.left} operation(s) never completed on the {self.backend} ring"
        if self.error is not None:
            raise self.error


async def open_store(path: str, epoch: int | None = None) -> Any:
    store = await Store.open(path, config=StoreConfig(**CONFIG), epoch=epoch)
    store.register_merge(b"m:", concat)
    return store


async def visible_state(store: Any) -> tuple[list[tuple[bytes, bytes]], int, list]:
    items = [(k, v) async for k, v in store.scan(b"")]
    return items, len(store), await store.get_many(ALL_KEYS + ABSENT)


class StoreMachine(RuleBasedStateMachine):
    """One store and one dict, stepped together."""

    def __init__(self, io: CurioThread, root: str) -> None:
        super().__init__()
        self.io = io
        self.path = tempfile.mkdtemp(prefix="store-", dir=root)
        self.model: dict[bytes, bytes] = {}
        self.snapshots: dict[int, dict[bytes, bytes]] = {}  # epoch -> committed state
        self.committed: list[int] = []      # epochs the store should retain, ascending
        self.max_epoch = 0                  # epochs must keep increasing past every one used
        self.latest: int | None = None      # what a plain reopen restores
        self.restored: int | None = None    # opened at this older epoch, no checkpoint since
        self.store: Any = None
        self.steps = 0

    def call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        return self.io.call(fn)

    # -- helpers -------------------------------------------------------------------
    def check_all(self, what: str) -> None:
        items, n, got = self.call(lambda: visible_state(self.store))
        expected = sorted(self.model.items())
        if items != expected:
            missing = sorted(set(self.model) - {k for k, _ in items})
            extra = sorted({k for k, _ in items} - set(self.model))
            wrong = sorted(k for k, v in items if k in self.model and self.model[k] != v)
            raise AssertionError(
                f"after {what}: scan(b'') differs from the model: missing keys {missing[:10]}, "
                f"extra keys {extra[:10]}, wrong values for {wrong[:10]}, "
                f"in order: {[k for k, _ in items] == sorted(k for k, _ in items)}")
        assert n == len(self.model), f"after {what}: len(store) = {n}, model has {len(self.model)}"
        want = [self.model.get(k) for k in ALL_KEYS + ABSENT]
        bad = [(k, g if g is None else len(g), w if w is None else len(w))
               for k, g, w in zip(ALL_KEYS + ABSENT, got, want) if g != w]
        assert not bad, f"after {what}: get_many differs (key, got len, want len): {bad[:10]}"

    def check_retained(self) -> None:
        retained = self.call(self._checkpoints)
        assert retained == self.committed[-KEEP:], (
            f"checkpoints() = {retained}, expected the last {KEEP} committed epochs "
            f"{self.committed[-KEEP:]}")

    async def _checkpoints(self) -> list[int]:
        return list(self.store.checkpoints())

    # -- rules ---------------------------------------------------------------------
    @initialize()
    def open_fresh(self) -> None:
        self.store = self.call(lambda: open_store(self.path))
        self.check_all("opening a fresh directory")
        assert self.call(self._checkpoints) == []

    @rule(key=st.sampled_from(ALL_KEYS), value=values)
    def put(self, key: bytes, value: bytes) -> None:
        self.call(lambda: self.store.put(key, value))
        self.model[key] = value

    def _put_batch(self, batch: list[tuple[bytes, bytes]]) -> None:
        async def go() -> None:
            for k, v in batch:
                await self.store.put(k, v)
        self.call(go)
        for k, v in batch:
            self.model[k] = v

    @rule(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 40), size=st.integers(100, 8000))
    def put_many(self, seed: int, n: int, size: int) -> None:
        """Many big overwrites at once: fills the write buffer, seals segments."""
        rng = random.Random(seed)
        self._put_batch([(rng.choice(ALL_KEYS), rng.randbytes(rng.randint(size // 2, size)))
                         for _ in range(n)])

    @rule(seed=st.integers(0, 2**32 - 1), rounds=st.integers(1, 12))
    def churn(self, seed: int, rounds: int) -> None:
        """The same few keys overwritten again and again: mostly dead bytes (compaction food)."""
        rng = random.Random(seed)
        keys = rng.sample(ALL_KEYS, 6)
        self._put_batch([(k, rng.randbytes(rng.randint(1000, 6000)))
                         for _ in range(rounds) for k in keys])

    @rule(key=st.sampled_from(ALL_KEYS + ABSENT[:1]))
    def delete(self, key: bytes) -> None:
        self.call(lambda: self.store.delete(key))
        self.model.pop(key, None)

    @rule(key=st.sampled_from(MERGE_KEYS), operand=st.binary(max_size=24))
    def merge(self, key: bytes, operand: bytes) -> None:
        self.call(lambda: self.store.merge(key, operand))
        self.model[key] = concat(self.model.get(key), [operand])

    @rule(key=st.sampled_from(ALL_KEYS + ABSENT))
    def get(self, key: bytes) -> None:
        got = self.call(lambda: self.store.get(key))
        assert got == self.model.get(key), (
            f"get({key!r}) = {None if got is None else got[:40]!r}... "
            f"(len {None if got is None else len(got)}), model has "
            f"{None if self.model.get(key) is None else len(self.model[key])} bytes")

    @rule(keys=st.lists(st.sampled_from(ALL_KEYS + ABSENT), max_size=20))
    def get_many(self, keys: list[bytes]) -> None:
        got = self.call(lambda: self.store.get_many(keys))
        assert isinstance(got, list) and len(got) == len(keys), (
            f"get_many of {len(keys)} keys returned {type(got).__name__} of "
            f"{len(got) if hasattr(got, '__len__') else '?'}")
        want = [self.model.get(k) for k in keys]
        bad = [k for k, g, w in zip(keys, got, want) if g != w]
        assert not bad, f"get_many({keys!r}) wrong for {bad}"

    @rule(prefix=st.sampled_from(PREFIXES))
    def scan(self, prefix: bytes) -> None:
        async def go() -> list[tuple[bytes, bytes]]:
            return [(k, v) async for k, v in self.store.scan(prefix)]
        got = self.call(go)
        want = sorted((k, v) for k, v in self.model.items() if k.startswith(prefix))
        assert [k for k, _ in got] == [k for k, _ in want], (
            f"scan({prefix!r}) keys {[k for k, _ in got]} != model {[k for k, _ in want]}")
        assert got == want, f"scan({prefix!r}) returned the right keys with wrong values"

    @rule(step=st.integers(1, 3))
    def checkpoint(self, step: int) -> None:
        epoch = self.max_epoch + step
        meta = {"step": self.steps, "epoch": epoch, "note": "model"}
        manifest = self.call(lambda: self.store.checkpoint(epoch, metadata=meta))
        assert manifest.epoch == epoch, f"checkpoint({epoch}) returned epoch {manifest.epoch}"
        assert manifest.metadata == meta, (
            f"checkpoint({epoch}) returned metadata {manifest.metadata!r}, given {meta!r}")
        assert all(isinstance(s, str) for s in manifest.segments), manifest.segments
        self.snapshots[epoch] = dict(self.model)
        self.max_epoch = self.latest = epoch
        if self.restored is None:
            self.committed.append(epoch)
            self.check_retained()
            return
        # The first checkpoint after opening an older epoch: the store may keep the
        # later epochs of the abandoned history or drop them ("rewind"); nothing else.
        keep = (self.committed + [epoch])[-KEEP:]
        rewind = ([e for e in self.committed if e <= self.restored] + [epoch])[-KEEP:]
        retained = self.call(self._checkpoints)
        assert retained in (keep, rewind), (
            f"checkpoints() = {retained} after checkpoint {epoch} following a restore of epoch "
            f"{self.restored} (retained before: {self.committed}); expected {keep} (later epochs "
            f"kept) or {rewind} (later epochs dropped)")
        self.committed = retained
        self.restored = None

    @rule()
    def reopen(self) -> None:
        """Close and open: the latest committed checkpoint comes back, nothing after it."""
        self.call(lambda: self.store.close())
        self.store = None
        self.store = self.call(lambda: open_store(self.path))
        self.model = dict(self.snapshots[self.latest]) if self.latest is not None else {}
        self.check_all(f"reopening (latest committed epoch {self.latest})")
        self.check_retained()
        if self.latest != self.restored:
            self.restored = None

    @precondition(lambda self: self.committed)
    @rule(data=st.data())
    def reopen_at_retained_epoch(self, data: st.DataObject) -> None:
        """``Store.open(epoch=e)`` restores that retained epoch exactly."""
        epoch = data.draw(st.sampled_from(self.committed[-KEEP:]), label="epoch")
        self.call(lambda: self.store.close())
        self.store = None
        self.store = self.call(lambda: open_store(self.path, epoch=epoch))
        self.model = dict(self.snapshots[epoch])
        self.check_all(f"opening at retained epoch {epoch} (retained {self.committed[-KEEP:]})")
        # Whether epochs newer than `epoch` stay retained after restoring an
        # older one is the store's choice; it must not invent or resurrect any.
        retained = self.call(self._checkpoints)
        assert epoch in retained, f"opened at epoch {epoch}, but checkpoints() = {retained}"
        assert set(retained) <= set(self.committed[-KEEP:]), (
            f"checkpoints() = {retained} after opening at {epoch}; only "
            f"{self.committed[-KEEP:]} were retained")
        assert retained == sorted(retained), f"checkpoints() not ascending: {retained}"
        self.committed = retained
        self.latest = retained[-1]
        self.restored = epoch if epoch != retained[-1] else None

    @rule(limit=st.sampled_from([None, 1, 2]))
    def compact(self, limit: int | None) -> None:
        """A compaction pass changes nothing visible."""
        result = self.call(lambda: self.store.compact(max_segments=limit))
        assert isinstance(result, dict), f"compact() returned {type(result).__name__}, not a dict"
        self.check_all(f"compact(max_segments={limit}) -> {result}")

    @rule()
    def stats(self) -> None:
        async def go() -> tuple[dict, float]:
            return self.store.stats(), self.store.compaction_backlog()
        stats, backlog = self.call(go)
        assert isinstance(stats, dict)
        assert 0.0 <= backlog <= 1.0, f"compaction_backlog() = {backlog}, not a ratio"

    @invariant()
    def length_matches(self) -> None:
        self.steps += 1
        if self.store is None:
            return

        async def go() -> int:
            return len(self.store)
        n = self.call(go)
        assert n == len(self.model), f"len(store) = {n}, model has {len(self.model)} keys"

    def teardown(self) -> None:
        try:
            if self.store is not None:
                self.call(lambda: self.store.close())
        finally:
            shutil.rmtree(self.path, ignore_errors=True)


SETTINGS = settings(max_examples=40, stateful_step_count=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


@pytest.mark.timeout(900)
def test_store_matches_dict_model(backend, data_dir):
    io = CurioThread(backend)
    try:
        run_state_machine_as_test(lambda: StoreMachine(io, str(data_dir)), settings=SETTINGS)
    finally:
        io.close()


@pytest.mark.timeout(300)
def test_store_model_handles_many_segments(backend, data_dir):
    """A fixed long run (no shrinking): thousands of overwrites, checkpoints,
    compactions and reopens, checked in full after each phase."""
    io = CurioThread(backend)
    rng = random.Random(20240611)
    m = StoreMachine(io, str(data_dir))
    try:
        m.open_fresh()
        for phase in range(12):
            for _ in range(150):
                r = rng.random()
                key = rng.choice(ALL_KEYS)
                if r < 0.55:
                    m.put(key, rng.randbytes(rng.choice([0, 10, 300, 3000, 9000])))
                elif r < 0.7:
                    m.delete(key)
                else:
                    m.merge(rng.choice(MERGE_KEYS), rng.randbytes(rng.randint(0, 20)))
            m.check_all(f"phase {phase} writes")
            m.checkpoint(1)
            if phase % 3 == 1:
                m.compact(None)
            if phase % 4 == 3:
                m.reopen()
            if phase % 5 == 4:
                epoch = m.committed[-KEEP:][0]
                m.call(lambda: m.store.close())
                m.store = m.call(lambda: open_store(m.path, epoch=epoch))
                m.model = dict(m.snapshots[epoch])
                m.check_all(f"opening at epoch {epoch}")
                m.committed = m.call(m._checkpoints)
                m.latest = m.committed[-1]
                m.restored = epoch if epoch != m.latest else None
        m.reopen()
    finally:
        try:
            m.teardown()
        finally:
            io.close()


# -- several tasks on one store (actors share the core, not the store's invariants) ----------------

def _cfg(**over: Any) -> Any:
    return StoreConfig(**{**CONFIG, **over})


async def _full_check(store: Any, model: dict[bytes, bytes], what: str) -> None:
    items = [(k, v) async for k, v in store.scan(b"")]
    bad = sorted({k for k, _ in items} ^ set(model)) + sorted(
        k for k, v in items if k in model and model[k] != v)
    assert not bad, f"{what}: {len(bad)} keys differ from the model, e.g. {bad[:5]}"
    assert len(store) == len(model), f"{what}: len(store) = {len(store)}, model {len(model)}"
    keys = sorted(model)
    got = [await store.get(k) for k in keys]
    wrong = [k for k, g in zip(keys, got) if g != model[k]]
    assert not wrong, f"{what}: get() differs from the model for {len(wrong)} keys, e.g. {wrong[:5]}"


def test_reads_during_a_flush_see_the_latest_put(run, data_dir):
    """A value put (and returned) before another task's put starts a flush is
    what every reader sees while that flush runs, and afterwards."""
    path = str(data_dir / "store")
    big = 5000        # values not cached when appended

    async def body(ring):
        store = await Store.open(path, config=_cfg(segment_size=64 << 10,
                                                   write_buffer_bytes=256 << 10))
        try:
            keys = [b"k:%03d" % i for i in range(40)]
            old = {k: b"old" + bytes([i]) * big for i, k in enumerate(keys)}
            new = {k: b"new" + bytes([i]) * big for i, k in enumerate(keys)}
            for k in keys:
                await store.put(k, old[k])
            await store.checkpoint(1)                   # old values on disk, not cached
            for k in keys:
                await store.put(k, new[k])              # buffered
            stale = []

            async def reader() -> None:
                while not done:
                    for k in keys:
                        v = await store.get(k)
                        if v != new[k]:
                            stale.append((k, v[:3] if v else v))
                    await curio.sleep(0)

            done = False
            t = await curio.spawn(reader)
            # Another task's writes fill the buffer: the flush spans several segments.
            for i in range(60):
                await store.put(b"fill:%03d" % i, bytes([i]) * big)
            done = True
            await t.join()
            assert not stale, (f"{len(stale)} reads during a flush returned an older value than "
                               f"the put that had returned, e.g. {stale[:3]}")
            for k in keys:
                assert await store.get(k) == new[k], f"after the flush, get({k!r}) is stale"
        finally:
            await store.close()
    run(body)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_concurrent_tasks_agree_with_model(run, data_dir, seed):
    """One writer, three readers and a compaction loop in separate tasks: the
    readers only ever see values the writer put, and at the end (and after a
    reopen) the store equals the model."""
    path = str(data_dir / "store")

    async def body(ring):
        rng = random.Random(seed)
        store = await Store.open(path, config=_cfg())
        store.register_merge(b"m:", concat)
        model: dict[bytes, bytes] = {}
        history: dict[bytes, set] = {k: {None} for k in ALL_KEYS}   # every value a key ever had
        errors: list[str] = []
        stop = False

        async def writer() -> None:
            epoch = 0
            for i in range(1500):
                r = rng.random()
                k = rng.choice(ALL_KEYS)
                if r < 0.6:
                    v = rng.randbytes(rng.choice([5, 500, 3000, 7000]))
                    history[k].add(v)
                    model[k] = v
                    await store.put(k, v)
                elif r < 0.75:
                    model.pop(k, None)
                    await store.delete(k)
                elif r < 0.95:
                    k = rng.choice(MERGE_KEYS)
                    model[k] = concat(model.get(k), [b"%d" % i])
                    history[k].add(model[k])
                    await store.merge(k, b"%d" % i)
                else:
                    epoch += 1
                    await store.checkpoint(epoch)
                if i % 7 == 0:
                    await curio.sleep(0)
            epoch += 1
            await store.checkpoint(epoch)

        async def reader(n: int) -> None:
            r = random.Random(n)
            while not stop:
                ks = r.sample(ALL_KEYS, 5)
                for k, v in zip(ks, await store.get_many(ks)):
                    if v not in history[k]:
                        errors.append(f"reader {n}: get_many -> {k!r} = {v!r:.40} never put")
                k = r.choice(ALL_KEYS)
                v = await store.get(k)
                if v not in history[k]:
                    errors.append(f"reader {n}: get({k!r}) = {v!r:.40} never put")
                await curio.sleep(0)

        async def compactor() -> None:
            while not stop:
                await store.compact(pause=lambda: curio.sleep(0))
                await curio.sleep(0)

        tasks = [await curio.spawn(reader, n) for n in range(3)]
        tasks.append(await curio.spawn(compactor))
        try:
            await writer()
        finally:
            stop = True
            for t in tasks:
                await t.join()
        assert not errors, f"{len(errors)} reads returned values never written: {errors[:5]}"
        await _full_check(store, model, "after the concurrent run")
        await store.close()
        store = await Store.open(path, config=_cfg())
        try:
            await _full_check(store, model, "reopened after the concurrent run")
        finally:
            await store.close()
    run(body)
