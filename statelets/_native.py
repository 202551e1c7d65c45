"""statelets' C extension (key index, record batches), or None where it is missing.

It walks CPython lists and bytes in place (see ``_index_build.py``), so it is
used only on CPython. Importing statelets never fails without it: the key
index falls back to a dict and record batches to Python encoding.
"""
from __future__ import annotations

import sys

try:
    if sys.implementation.name != "cpython":
        raise ImportError(f"it walks CPython objects; this is {sys.implementation.name}")
    from ._index_c import ffi, lib
    IMPORT_ERROR: str | None = None
except ImportError as exc:  # pragma: no cover - only on broken installs / other VMs
    ffi = lib = None
    IMPORT_ERROR = f"statelets C extension not usable ({exc}); reinstall with 'pip install -e .'"
