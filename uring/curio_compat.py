"""Make curio 1.6 importable on Python 3.12+.

curio 1.6 is the last release on PyPI. It reads three constants from
``multiprocessing.connection`` that 3.12 removed (``CHALLENGE``, ``WELCOME``,
``FAILURE``) and decorates with ``ssl.wrap_socket``, which 3.12 removed too.
Every package of ours imports curio through this module, so the shim is in
place before curio's first import. On 3.11 it changes nothing.
"""
from __future__ import annotations

import multiprocessing.connection as _mpc
import ssl as _ssl

# Values as they were in CPython <= 3.11 (Lib/multiprocessing/connection.py).
_MPC_CONSTANTS = {
    "CHALLENGE": b"#CHALLENGE#",
    "WELCOME": b"#WELCOME#",
    "FAILURE": b"#FAILURE#",
}


def _wrap_socket(sock, keyfile=None, certfile=None, server_side=False,
                 cert_reqs=_ssl.CERT_NONE, ssl_version=None, ca_certs=None,
                 do_handshake_on_connect=True, suppress_ragged_eofs=True,
                 ciphers=None):
    """Stand-in for the ``ssl.wrap_socket`` removed in 3.12, built on SSLContext."""
    protocol = _ssl.PROTOCOL_TLS_SERVER if server_side else _ssl.PROTOCOL_TLS_CLIENT
    context = _ssl.SSLContext(ssl_version if ssl_version is not None else protocol)
    if not server_side:
        context.check_hostname = False
    context.verify_mode = cert_reqs
    if certfile:
        context.load_cert_chain(certfile, keyfile)
    if ca_certs:
        context.load_verify_locations(ca_certs)
    if ciphers:
        context.set_ciphers(ciphers)
    return context.wrap_socket(sock, server_side=server_side,
                               do_handshake_on_connect=do_handshake_on_connect,
                               suppress_ragged_eofs=suppress_ragged_eofs)


def apply() -> list[str]:
    """Install the missing names; returns the ones that were patched."""
    patched = []
    for name, value in _MPC_CONSTANTS.items():
        if not hasattr(_mpc, name):
            setattr(_mpc, name, value)
            patched.append(f"multiprocessing.connection.{name}")
    if not hasattr(_ssl, "wrap_socket"):
        _ssl.wrap_socket = _wrap_socket
        patched.append("ssl.wrap_socket")
    return patched


PATCHED = apply()

import curio  # noqa: E402  (must come after apply())

__all__ = ["curio", "PATCHED", "apply"]
