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


class TopologyError(ReactorError):
    """A topology is malformed (cycle, unknown input, dangling step, ...) or does not
    match the state it is asked to restore; raised before anything runs."""


class OperatorError(ActorError):
    """An operator failed on an element (or in a lifecycle hook).

    ``operator`` is the instance name (``"count/0"``), ``element`` the element
    (None for hooks); ``__cause__`` the user's exception.
    """

    def __init__(self, operator: str, element: Any, cause: BaseException,
                 phase: str = "handling") -> None:
        self.operator = operator
        self.element = element
        text = repr(element)
        if len(text) > 200:
            text = text[:197] + "..."
        what = f"on element {text}" if phase == "handling" else f"in {phase}"
        ReactorError.__init__(self, f"operator {operator!r} failed {what}: "
                                    f"{type(cause).__name__}: {cause}")
        self.actor, self.message, self.phase = operator, element, phase
        self.__cause__ = cause


class CheckpointError(ReactorError):
    """A checkpoint could not be taken or restored; the previous one is intact."""
