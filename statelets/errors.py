"""Errors of the statelets package: they name the statelet, file or offset involved."""
from __future__ import annotations


class StateletError(Exception):
    """Base class of errors raised by the state store and the statelet types."""


class CorruptionError(StateletError):
    """Stored data failed its checksum or does not parse; names the file and offset."""

    def __init__(self, message: str, *, path: str | None = None, offset: int | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.offset = offset


class StoreFailed(StateletError):
    """A write failed earlier (e.g. a full disk); the store must be reopened.

    Reopening restores the last committed checkpoint, which the failure never damaged.
    """


class CodecError(StateletError):
    """A key or value could not be encoded (names the statelet and the type)."""
