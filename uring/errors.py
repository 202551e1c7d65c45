"""Errors of the uring package: one hierarchy, messages that name the file."""
from __future__ import annotations

import errno as _errno
import os


class UringError(Exception):
    """Base class for errors raised by the uring package itself (not by the OS)."""


class RingClosedError(UringError):
    """An operation was attempted on a ring that is closed or not started."""


class NoRingError(UringError):
    """No ring is running in this thread and none was passed explicitly."""


def os_error(err: int, op: str, name: str | None = None) -> OSError:
    """An ``OSError`` for a failed operation, carrying errno and the file name.

    ``err`` is a positive errno. The message names the operation so that
    ``[Errno 9] Bad file descriptor (read): 'data/seg-0001'`` says what failed
    and on which file. ``OSError`` picks the matching subclass from errno
    (``FileNotFoundError`` for ENOENT, and so on).
    """
    msg = f"{os.strerror(err)} ({op})"
    if name is not None:
        return OSError(err, msg, os.fsdecode(name))
    return OSError(err, msg)


def check_rc(rc: int) -> int:
    """Return a C helper's result, or raise the OSError its negative errno stands for."""
    if rc < 0:
        raise OSError(-rc, os.strerror(-rc))
    return rc


ENOSPC = _errno.ENOSPC
EOPNOTSUPP = _errno.EOPNOTSUPP
