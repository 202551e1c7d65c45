"""The reactor's exception hierarchy: messages name the actor, message or queue."""
from __future__ import annotations

from typing import Any


class ReactorError(Exception):
    """Base class of errors raised by the reactor runtime."""


class ActorError(ReactorError):
    """An actor failed while handling a message (or starting/stopping).

    ``actor`` is the actor's name, ``message`` the message that failed (None
    for on_start/on_stop), and ``__cause__`` the original exception.
    """

    def __init__(self, actor: str, message: Any, cause: BaseException, phase: str = "handling") -> None:
        self.actor = actor
        self.message = message
        self.phase = phase
        text = repr(message)
        if len(text) > 200:
            text = text[:197] + "..."
        what = f"{phase} message {text}" if phase == "handling" else phase
        super().__init__(f"actor {actor!r} failed {what}: {type(cause).__name__}: {cause}")
        self.__cause__ = cause


class MailboxClosed(ReactorError):
    """A message was sent to an actor whose mailbox is closed (it stopped)."""


class ShutdownRequested(ReactorError):
    """The reactor is shutting down (SIGINT/SIGTERM or an explicit request)."""
