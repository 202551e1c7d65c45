"""Pieces shared by the dataflow test modules."""
from __future__ import annotations

import logging
import os

import pytest

from reactor import Operator, run
from statelets import Value


@pytest.fixture(autouse=True)
def quiet_logs():
    """curio logs every crashed task with its traceback; the tests look at the exceptions.

    Autouse in every module that imports it."""
    logging.disable(logging.CRITICAL)
    yield
    logging.disable(logging.NOTSET)


def go(t, **kw):
    """``reactor.run`` without periodic checkpoints unless the test asks for them."""
    kw.setdefault("checkpoint_every", None)
    return run(t, **kw)


class Count(Operator):
    """The running count of each key: emits ``(key, n)``."""

    total = Value(int, default=0)

    async def on_element(self, w, ctx):
        n = await self.total.get() + 1
        await self.total.set(n)
        ctx.emit((w, n))


def committed_epoch(state_dir) -> int:
    """The newest committed epoch in a job's state dir (0 if none)."""
    try:
        names = os.listdir(os.path.join(str(state_dir), "snapshots"))
    except FileNotFoundError:
        return 0
    return max((int(n) for n in names if n.isdigit()), default=0)
