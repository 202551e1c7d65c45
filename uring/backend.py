"""Which I/O backend runs, and why.

``io_uring`` is used when the kernel allows it; otherwise the same API runs on
plain syscalls (the ``sync`` backend). Reasons to fall back: ``REACTOR_IO=sync``
in the environment, the C extension missing, ``io_uring_setup`` failing
(ENOSYS on old kernels, EPERM from a container's seccomp filter or
``kernel.io_uring_disabled``), or an opcode the ring needs not being supported.
The decision is made once per process, logged once, and visible through
:func:`backend_info` and every ring's stats.
"""
from __future__ import annotations

import errno
import logging
import os
import platform
from typing import Optional

import attrs

from . import opcodes
from ._native import IMPORT_ERROR, ffi, lib

log = logging.getLogger("uring")

IO_URING = "io_uring"
SYNC = "sync"
ENV_VAR = "REACTOR_IO"


@attrs.frozen
class BackendInfo:
    """The backend in use and the reason for it."""

    backend: str
    reason: str
    kernel: str = platform.release()
    #: Opcodes the kernel reported as supported (empty for the sync backend).
    opcodes: tuple[int, ...] = ()

    def as_dict(self) -> dict:
        return {"backend": self.backend, "reason": self.reason, "kernel": self.kernel}


_info: Optional[BackendInfo] = None


def probe_io_uring() -> int:
    """0 if ``io_uring_setup`` works here, else a positive errno. Tests patch this."""
    if lib is None:
        return errno.ENOSYS
    rc = lib.ur_probe_syscall()
    return -rc if rc < 0 else 0


def _disabled_sysctl() -> str:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return f.read().strip()
    except OSError:
        return "?"


def _probe_opcodes() -> tuple[tuple[int, ...], str | None]:
    r = lib.ur_new()
    try:
        rc = lib.ur_setup(r, 4, 0, 1)
        if rc < 0:
            return (), f"io_uring_setup failed: {errno.errorcode.get(-rc, -rc)} ({os.strerror(-rc)})"
        sup = ffi.new("uint8_t[64]")
        last = lib.ur_probe(r, sup, 64)
        if last < 0:
            return (), f"IORING_REGISTER_PROBE failed: {os.strerror(-last)}"
        ops = tuple(i for i in range(64) if sup[i])
        missing = [opcodes.KIND.get(o, str(o)) for o in opcodes.REQUIRED if o not in ops]
        if missing:
            return ops, f"kernel io_uring lacks required opcodes: {', '.join(missing)}"
        return ops, None
    finally:
        lib.ur_free(r)


def _decide() -> BackendInfo:
    forced = os.environ.get(ENV_VAR, "").strip().lower()
    if forced in ("sync", "fallback", "syscalls"):
        return BackendInfo(SYNC, f"{ENV_VAR}={forced} set in the environment")
    if forced not in ("", "auto", "uring", "io_uring"):
        log.warning("ignoring %s=%r: expected 'sync' or 'io_uring'", ENV_VAR, forced)
    if IMPORT_ERROR:
        return BackendInfo(SYNC, IMPORT_ERROR)
    err = probe_io_uring()
    if err:
        name = errno.errorcode.get(err, str(err))
        why = {
            errno.ENOSYS: "kernel has no io_uring",
            errno.EPERM: "blocked (seccomp filter or kernel.io_uring_disabled="
                         f"{_disabled_sysctl()})",
            errno.EACCES: "denied (kernel.io_uring_disabled=" f"{_disabled_sysctl()})",
        }.get(err, os.strerror(err))
        return BackendInfo(SYNC, f"io_uring_setup failed with {name}: {why}")
    ops, problem = _probe_opcodes()
    if problem:
        return BackendInfo(SYNC, problem, opcodes=ops)
    return BackendInfo(IO_URING, "io_uring available", opcodes=ops)


def backend_info() -> BackendInfo:
    """The backend rings use by default in this process and why (decided once, logged once)."""
    global _info
    if _info is None:
        _info = _decide()
        log.info("uring backend: %s (%s)", _info.backend, _info.reason)
    return _info


def reset() -> None:
    """Forget the decision so the next :func:`backend_info` probes again (for tests)."""
    global _info
    _info = None


def fallback_after_setup_error(err: int) -> BackendInfo:
    """Record that a ring's own ``io_uring_setup`` failed; later rings go sync."""
    global _info
    name = errno.errorcode.get(err, str(err))
    _info = BackendInfo(SYNC, f"io_uring_setup failed with {name}: {os.strerror(err)}")
    log.warning("uring backend: %s (%s)", _info.backend, _info.reason)
    return _info
