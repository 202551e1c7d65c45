"""A curio selector through which an io_uring ring becomes the kernel's wait.

Without it, a ring runs two helper tasks: a flusher that submits the SQEs of a
scheduler pass, and a reaper that sleeps on an eventfd in curio's epoll and
wakes the finished tasks. Each operation then costs about three scheduler
passes and three syscalls (submit, ``epoll_wait``, eventfd read).

With ``curio.run(main, selector=RingSelector())`` (what :func:`uring.run` and
the reactor runtime do), the first io_uring :class:`~uring.Ring` started in
that kernel *attaches* to the selector, and at the end of every scheduler
pass the kernel's ``select(timeout)`` call

1. submits the SQEs prepared during the pass,
2. when nothing is ready to run, sleeps in ``io_uring_enter`` itself (submit
   and wait in one syscall), bounded by curio's timeout; a one-shot poll on
   the selector's epoll fd, kept in the ring, ends the wait as soon as a
   socket, timerfd or curio's own wake-up socket is ready,
3. reaps the completions and appends the finished tasks to curio's ready
   queue, so they run in the very next pass.

``epoll_wait`` is only called when that poll has fired. Other rings in the same
kernel (and rings under a plain ``curio.run``) keep the helper tasks.
"""
from __future__ import annotations

import selectors
from collections import deque
from typing import Any

from .curio_compat import curio


def kernel_ready_queue(kernel: Any) -> deque | None:
    """curio 1.6's ready queue, read from its kernel loop's closure; None if absent.

    curio keeps the queue in a local of ``Kernel._make_kernel_runtime``; the
    loop function (``kernel._runner``) closes over it. Appending a task there
    (with the state ``reschedule_task`` sets) is how curio itself wakes one.
    """
    fn = getattr(kernel, "_runner", None)
    try:
        cells = dict(zip(fn.__code__.co_freevars, fn.__closure__))
        ready = cells["ready"].cell_contents
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    return ready if isinstance(ready, deque) else None


class RingSelector(selectors.EpollSelector):
    """An epoll selector that one io_uring ring can take over (see module docs).

    Pass it to curio: ``curio.run(main, selector=RingSelector())`` or
    ``curio.Kernel(selector=RingSelector())``. It behaves as a plain
    ``EpollSelector`` while no ring is attached.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ring: Any = None

    @property
    def ring(self) -> Any:
        """The attached ring, or None."""
        return self._ring

    def attach(self, ring: Any) -> bool:
        """Let ``ring`` run the waits; False if another ring already does."""
        if self._ring is not None:
            return False
        self._ring = ring
        return True

    def detach(self, ring: Any) -> None:
        """Stop routing waits through ``ring`` (no-op if it is not attached)."""
        if self._ring is ring:
            self._ring = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ring = self._ring
        if ring is None:
            return super().select(timeout)
        return ring._select(self, timeout)

    def epoll_select(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """The plain epoll wait, for the attached ring."""
        return super().select(timeout)



def run(corofunc: Any, *args: Any, **kernel_kwargs: Any) -> Any:
    """``curio.run`` with a :class:`RingSelector`: rings started inside wait in io_uring."""
    kernel_kwargs.setdefault("selector", RingSelector())
    return curio.run(corofunc, *args, **kernel_kwargs)
