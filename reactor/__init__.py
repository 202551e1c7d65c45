"""reactor: stateful stream processing on one core.

Subclass :class:`Operator`, declare statelets (``statelets.Value`` ...) as class
attributes, build a :class:`Topology` and :func:`run` it with a ``state_dir``:
the job checkpoints its state exactly-once and restores by itself.

Below the dataflow API: a :class:`Reactor` owns one curio kernel, one uring
ring, task queues with shares, a timer service and stats; :class:`Actor` is a
mailbox-driven component; call :func:`maybe_yield` in long loops.
"""
from __future__ import annotations

from uring.curio_compat import curio  # noqa: F401  (the shim first; also reactor.curio)

from .actor import Actor, DeadLetter
from .errors import (ActorError, CheckpointError, MailboxClosed, OperatorError, ReactorError,
                     ShutdownRequested, TopologyError)
from .mailbox import Mailbox
from .runtime import Reactor, current_reactor, run
from .scheduler import Scheduler, TaskQueue, maybe_yield
from .timers import Timer, TimerService
from .operator import Batch, Context, Operator
from .topology import Topology
from .sources import FileSource, GeneratorSource, IterableSource, Source, SourceReader, TcpSource
from .sinks import CollectSink, FileSink, NullSink, PrintSink, Sink, SinkWriter
from .job import JobConfig, JobResult, run_topology

__all__ = [
    "Actor", "ActorError", "Batch", "CheckpointError", "CollectSink", "Context", "DeadLetter",
    "FileSink", "FileSource", "GeneratorSource", "IterableSource", "JobConfig", "JobResult",
    "Mailbox", "MailboxClosed", "NullSink", "Operator", "OperatorError", "PrintSink", "Reactor",
    "ReactorError", "Scheduler", "ShutdownRequested", "Sink", "SinkWriter", "Source",
    "SourceReader", "TaskQueue", "TcpSource", "Timer", "TimerService", "Topology",
    "TopologyError", "current_reactor", "maybe_yield", "run", "run_topology",
]
