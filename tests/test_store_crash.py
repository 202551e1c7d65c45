"""Crash consistency: a writer SIGKILLed at any moment loses nothing it committed
and keeps nothing it did not.

Each round starts ``tests/store_crash_child.py`` on a store directory. The child
replays a deterministic sequence of puts, deletes and merges over 2000 keys,
checkpointing every 150 operations with metadata ``{"ops": n}`` and printing
each committed epoch as soon as ``checkpoint`` returns (and compacting now and
then). The parent kills it with SIGKILL after a random 0.05-1.0 s, opens the
store, and checks:

* the restored checkpoint's metadata says how many operations it holds; the
  store equals the replayed sequence up to that count, key for key (get_many
  over the whole key space) with no extra keys (scan) and the right ``len``;
* the last epoch the child printed is <= the restored epoch: a checkpoint
  that returned is never lost.

Rounds are chained in groups on one directory, so later children recover a
crashed store, continue the sequence from the restored checkpoint and get
killed again (crashes during recovery, compaction and checkpoints included).
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys

import pytest

import uring

from statelets import Store, StoreConfig

from conftest import run_in_ring

import store_crash_child as child

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "store_crash_child.py")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_child(path: str, seed: int, backend: str, delay: float) -> tuple[list[tuple[int, int]], str, int]:
    """Start the child, SIGKILL it after ``delay`` s; returns (printed commits, stderr, rc)."""
    proc = subprocess.Popen([sys.executable, CHILD, path, str(seed), "--backend", backend],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    try:
        proc.wait(delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    commits = []
    for line in out.decode().splitlines():
        parts = line.split()
        if len(parts) == 2 and all(p.isdigit() for p in parts):
            commits.append((int(parts[0]), int(parts[1])))
    return commits, err.decode(), proc.returncode


async def recover_and_check(path: str, seed: int, printed: list[tuple[int, int]],
                            what: str) -> tuple[int | None, int]:
    """Open the store, compare it with the replayed sequence; returns (epoch, ops)."""
    store = await Store.open(path, config=StoreConfig(**child.CONFIG))
    try:
        store.register_merge(b"m:", child.concat)
        epoch, meta = child.manifest_metadata(store)
        if printed:
            last_epoch, last_ops = printed[-1]
            assert epoch is not None and epoch >= last_epoch, (
                f"{what}: the child saw checkpoint {last_epoch} (ops {last_ops}) return, but "
                f"the store restored epoch {epoch}: a committed checkpoint was lost")
            if epoch == last_epoch:
                assert meta.get("ops") == last_ops, (
                    f"{what}: epoch {epoch} restored with metadata {meta}, the child "
                    f"committed it with ops={last_ops}")
        if epoch is None:
            assert meta == {}, f"{what}: no checkpoint retained, but metadata {meta}"
        assert "ops" in meta or epoch is None, f"{what}: epoch {epoch} has metadata {meta}"
        n_ops = int(meta.get("ops", 0))
        assert n_ops % child.OPS_PER_CHECKPOINT == 0, f"{what}: metadata {meta}"
        want = child.expected_state(seed, n_ops)

        got = await store.get_many(child.ALL_KEYS)
        wrong = [(k, g[:16] if g else g, want.get(k, b"")[:16] if k in want else None)
                 for k, g in zip(child.ALL_KEYS, got) if g != want.get(k)]
        assert not wrong, (f"{what}: restored epoch {epoch} (ops {n_ops}) differs from the "
                           f"replay in {len(wrong)} keys, e.g. (key, got, want) {wrong[:5]}")
        items = [(k, v) async for k, v in store.scan(b"")]
        assert [k for k, _ in items] == sorted(want), (
            f"{what}: scan lists {len(items)} keys, the replay has {len(want)}; extra "
            f"{sorted({k for k, _ in items} - set(want))[:5]}, missing "
            f"{sorted(set(want) - {k for k, _ in items})[:5]}")
        assert dict(items) == want, f"{what}: scan values differ from the replay"
        assert len(store) == len(want), f"{what}: len(store) = {len(store)}, want {len(want)}"
        # A few single gets too (the cache path, not only the batched one).
        for k in random.Random(n_ops).sample(child.ALL_KEYS, 20):
            assert await store.get(k) == want.get(k), f"{what}: get({k!r}) differs"
        return epoch, n_ops
    finally:
        await store.close()


def crash_rounds(backend: str, base: str, rounds: int, chain: int, seed0: int) -> dict:
    summary = {"kills": 0, "exited": 0, "commits_seen": 0, "max_epoch": 0}
    for r in range(rounds):
        group, step = divmod(r, chain)
        path = os.path.join(base, f"store-{group}")
        seed = seed0 + group              # one op sequence per directory
        rng = random.Random(seed0 * 1_000_003 + r)
        delay = rng.uniform(0.05, 1.0)
        what = (f"round {r} (dir {path}, seed {seed}, child {step + 1} of {chain} on this dir, "
                f"killed after {delay:.3f} s, backend {backend}; repro: python "
                f"tests/store_crash_child.py DIR {seed} --backend {backend})")
        printed, err, rc = run_child(path, seed, backend, delay)
        if rc != -signal.SIGKILL:
            pytest.fail(f"{what}: the child exited by itself with status {rc}:\n{err[-3000:]}")
        summary["kills"] += 1
        summary["commits_seen"] += len(printed)
        epochs = [e for e, _ in printed]
        assert epochs == sorted(set(epochs)), f"{what}: printed epochs {epochs} not increasing"
        epoch, _ = run_in_ring(backend, lambda ring: recover_and_check(path, seed, printed, what))
        summary["max_epoch"] = max(summary["max_epoch"], epoch or 0)
    return summary


@pytest.mark.timeout(300)
def test_sigkill_never_loses_a_committed_checkpoint(backend, data_dir):
    # 50 rounds on the backend this machine uses by default, a few on the other.
    rounds = 50 if backend == uring.backend_info().backend else 12
    s = crash_rounds(backend, str(data_dir), rounds=rounds, chain=5, seed0=7)
    print(s)
    assert s["commits_seen"] > 0, f"no child ever committed a checkpoint before being killed: {s}"


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_sigkill_never_loses_a_committed_checkpoint_long(backend, data_dir):
    s = crash_rounds(backend, str(data_dir), rounds=300, chain=10, seed0=1000)
    print(s)
    assert s["commits_seen"] > 0, s
