"""A store writer to be killed: the child process of tests/test_store_crash.py.

    python tests/store_crash_child.py DIR SEED [--backend B] [--mode loop|torn]

``loop`` (default): opens the store in DIR (restoring its latest checkpoint,
whose metadata says how many operations of the sequence it holds), then
replays the deterministic operation sequence of SEED from there forever,
checkpointing every ``OPS_PER_CHECKPOINT`` operations with metadata
``{"ops": n}`` and printing ``"<epoch> <ops>"`` (flushed) as soon as each
checkpoint has returned. Every few checkpoints it also runs a compaction pass.
The parent SIGKILLs it at a random moment.

``torn``: writes ``TORN_KEYS`` keys, checkpoints epoch 1 (prints
``"1 <ops>"``), writes more than three write buffers of further records so
the active segment holds data past the checkpoint, prints ``"dirty"`` and
SIGKILLs itself without closing.

The operation sequence (:func:`operations`) and the expected state
(:func:`expected_state`) are shared with the parent, which replays them.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import sys
from typing import Any, Iterator

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

N_KEYS = 2000
N_MERGE_KEYS = 400           # the last N_MERGE_KEYS keys are under the merge prefix
OPS_PER_CHECKPOINT = 150
COMPACT_EVERY = 4            # checkpoints
SEP = b"|"
CONFIG = dict(segment_size=128 << 10, write_buffer_bytes=32 << 10, cache_bytes=64 << 10,
              keep_checkpoints=3, compaction_threshold=0.5)
TORN_KEYS = 300
BATCH = 300                  # pairs per put_many (over statelets.store.DIRECT_BATCH)


def key_of(i: int) -> bytes:
    if i >= N_KEYS - N_MERGE_KEYS:
        return b"m:%05d" % i
    return b"k:%05d" % i


ALL_KEYS = [key_of(i) for i in range(N_KEYS)]


def concat(base: bytes | None, operands: list[bytes]) -> bytes:
    """The merge function: base (if any) then operands, joined by SEP."""
    return SEP.join(([base] if base is not None else []) + list(operands))


def operations(seed: int) -> Iterator[tuple[str, bytes, Any]]:
    """The endless deterministic sequence ``(op, key, value)`` for ``seed``."""
    rng = random.Random(seed)
    n = 0
    while True:
        r = rng.random()
        if r < 0.02:
            # A put_many batch long enough to bypass the write buffer (keys may
            # repeat inside it: the later pair wins).
            pairs = [(key_of(rng.randrange(N_KEYS)), b"%d/%d:" % (n, j) + rng.randbytes(
                rng.choice([0, 8, 40, 100]))) for j in range(BATCH)]
            yield "batch", b"", pairs
        elif r < 0.6:
            size = rng.choice([0, 8, 40, 100, 300, 1000]) if rng.random() < 0.97 else 6000
            # Values carry their op index, so a value from the wrong op is visible.
            yield "put", key_of(rng.randrange(N_KEYS)), b"%d:" % n + rng.randbytes(size)
        elif r < 0.75:
            yield "delete", key_of(rng.randrange(N_KEYS)), None
        else:
            i = rng.randrange(N_KEYS - N_MERGE_KEYS, N_KEYS)
            yield "merge", key_of(i), b"%d" % n
        n += 1


def expected_state(seed: int, n_ops: int) -> dict[bytes, bytes]:
    """The state after the first ``n_ops`` operations of ``seed``'s sequence."""
    state: dict[bytes, bytes] = {}
    for _, (op, key, value) in zip(range(n_ops), operations(seed)):
        if op == "put":
            state[key] = value
        elif op == "batch":
            state.update(value)
        elif op == "delete":
            state.pop(key, None)
        else:
            state[key] = concat(state.get(key), [value])
    return state


def manifest_metadata(store) -> tuple[int | None, dict]:
    """(epoch, metadata) of the checkpoint an opened store was restored from.

    ``store.manifest`` is that checkpoint's Manifest (None for a store with no
    checkpoint); ``store.epoch`` and ``store.metadata`` must agree with it.
    """
    m = store.manifest
    if m is None:
        assert store.epoch is None and not store.metadata, (store.epoch, store.metadata)
        return None, {}
    assert (store.epoch, store.metadata) == (m.epoch, m.metadata), (
        f"store.epoch/metadata {store.epoch}/{store.metadata} disagree with store.manifest "
        f"{m.epoch}/{m.metadata}")
    return m.epoch, dict(m.metadata)


async def apply(store, op: str, key: bytes, value: Any) -> None:
    if op == "put":
        await store.put(key, value)
    elif op == "batch":
        await store.put_many([k for k, _ in value], [v for _, v in value])
    elif op == "delete":
        await store.delete(key)
    else:
        await store.merge(key, value)


async def loop(path: str, seed: int) -> None:
    from statelets import Store, StoreConfig
    store = await Store.open(path, config=StoreConfig(**CONFIG))
    store.register_merge(b"m:", concat)
    epoch, meta = manifest_metadata(store)
    done = int(meta.get("ops", 0))
    epoch = epoch or 0
    ops = operations(seed)
    for _ in range(done):          # skip what the restored checkpoint already holds
        next(ops)
    n = done
    while True:
        for _ in range(OPS_PER_CHECKPOINT):
            await apply(store, *next(ops))
            n += 1
        epoch += 1
        m = await store.checkpoint(epoch, metadata={"ops": n})
        print(f"{m.epoch} {n}", flush=True)
        if epoch % COMPACT_EVERY == 0:
            await store.compact()


async def torn(path: str, seed: int) -> None:
    from statelets import Store, StoreConfig
    store = await Store.open(path, config=StoreConfig(**CONFIG))
    store.register_merge(b"m:", concat)
    ops = operations(seed)
    n = 0
    while n < TORN_KEYS:
        await apply(store, *next(ops))
        n += 1
    await store.checkpoint(1, metadata={"ops": n})
    print(f"1 {n}", flush=True)
    written = 0
    while written < 3 * CONFIG["write_buffer_bytes"] + 1000:
        op, key, value = next(ops)
        if op == "put":
            await store.put(key, value)
            written += len(key) + len(value)
    print("dirty", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("dir")
    p.add_argument("seed", type=int)
    p.add_argument("--backend", default=None)
    p.add_argument("--mode", choices=["loop", "torn"], default="loop")
    a = p.parse_args()

    import uring

    async def run() -> None:
        async with uring.Ring(backend=a.backend):
            await (loop if a.mode == "loop" else torn)(a.dir, a.seed)

    uring.run(run)


if __name__ == "__main__":
    main()
