"""reactor: a single-core runtime of cooperative actors with task-queue shares.

The runtime layer (this issue): :func:`run` a coroutine on a :class:`Reactor`
that owns one curio kernel, one uring :class:`~uring.Ring`, task queues with
shares, a timer service and stats. Subclass :class:`Actor` for mailbox-driven
components; call :func:`maybe_yield` in long loops.
"""
from __future__ import annotations

from uring.curio_compat import curio  # noqa: F401  (the shim first; also reactor.curio)

from .actor import Actor, DeadLetter
from .errors import ActorError, MailboxClosed, ReactorError, ShutdownRequested
from .mailbox import Mailbox
from .runtime import Reactor, current_reactor, run
from .scheduler import Scheduler, TaskQueue, maybe_yield
from .timers import Timer, TimerService

__all__ = [
    "Actor", "ActorError", "DeadLetter", "Mailbox", "MailboxClosed", "Reactor",
    "ReactorError", "Scheduler", "ShutdownRequested", "TaskQueue", "Timer",
    "TimerService", "current_reactor", "maybe_yield", "run",
]
