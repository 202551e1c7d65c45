"""The compiled extension, or None where it could not be built or loaded.

Importing uring must never crash: without the extension only the sync
backend is available, and :func:`uring.backend_info` says why.
"""
from __future__ import annotations

try:
    from ._uring_c import ffi, lib
    IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    ffi = None
    lib = None
    IMPORT_ERROR = f"uring C extension not importable ({exc}); reinstall with 'pip install -e .'"
