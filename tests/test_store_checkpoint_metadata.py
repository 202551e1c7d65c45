"""Checkpoint metadata comes back from a reopen exactly as it was given, or is refused."""
from __future__ import annotations

import pytest

from statelets import Store


@pytest.mark.parametrize("bad", [{1: "int key"}, {"t": (1, 2)}])
def test_metadata_that_json_would_change_is_refused(run, data_dir, bad):
    async def body(ring):
        store = await Store.open(data_dir / "s")
        try:
            await store.put(b"k", b"v")
            with pytest.raises(TypeError, match="JSON round trip"):
                await store.checkpoint(1, bad)
            m = await store.checkpoint(1, {"offsets": [1, 2], "name": "x"})   # still usable
            assert m.epoch == 1
        finally:
            await store.close()
        store = await Store.open(data_dir / "s")
        try:
            assert store.metadata == {"offsets": [1, 2], "name": "x"}
            assert await store.get(b"k") == b"v"
        finally:
            await store.close()
    run(body)
