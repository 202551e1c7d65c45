"""Compaction runs as an actor body in its own task queue, under the backlog controller."""
from __future__ import annotations

import os

import reactor
from reactor import current_reactor, maybe_yield
from statelets import Store, StoreConfig
from uring.curio_compat import curio


def test_store_compaction_runs_in_its_own_queue_and_keeps_state(tmp_path):
    path = tmp_path / "state"
    cfg = StoreConfig(segment_size=256 << 10, write_buffer_bytes=32 << 10,
                      cache_bytes=64 << 10)

    async def main():
        r = current_reactor()
        store = await Store.open(path, config=cfg)
        compactor = await r.start_compaction(store, idle_interval=0.01)
        queue = r.queues[f"compaction:{os.path.basename(store.path)}"]
        model = {}
        epoch = 0
        for i in range(30_000):
            k = b"k%03d" % (i % 500)
            v = b"%d" % i
            await store.put(k, v)
            model[k] = v
            if i % 3000 == 2999:
                epoch += 1
                await store.checkpoint(epoch)
            await maybe_yield()
        for _ in range(200):                       # let compaction catch up
            if not store.compaction_candidates():
                break
            await curio.sleep(0.01)
        assert compactor.passes > 0
        assert queue.runtime > 0 and queue.io_charged > 0   # its CPU and I/O were charged
        assert compactor.min_shares <= queue.shares <= compactor.max_shares
        assert {k: v async for k, v in store.scan()} == model
        await compactor.task.cancel()
        await store.close()
        reopened = await Store.open(path, config=cfg)
        try:
            assert reopened.epoch == epoch
            assert {k: v async for k, v in reopened.scan()} == model  # last put was checkpointed
        finally:
            await reopened.close()

    reactor.run(main)
