"""Topologies: a builder for DAGs of sources, operators and sinks, and their validation.

::

    topology = (Topology("wordcount")
                .source("lines", FileSource("words.txt"))
                .flat_map("split", str.split)
                .key_by(lambda word: word)
                .operator("count", Count)
                .sink("out", PrintSink()))

Each step attaches to the previous one unless ``input=`` names another step
(``"name"``, or ``"name:output"`` for an operator's side output such as
``"count:late"``). ``union`` and ``connect`` take several inputs.

Stateless steps (``map``, ``filter``, ``flat_map``, ``key_by``, ``union``)
are not tasks of their own: they run fused into the sending side of the edge
(as Flink chains operators), so an element crosses a mailbox only on its way
into a source-fed operator or sink. Keys are computed once, by the sender.

:meth:`Topology.validate` (called by ``run`` before anything starts) refuses
cycles, unknown inputs, dangling steps, duplicate names, keyed statelets
without a ``key_by`` upstream and malformed arguments, with one message per
problem.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Iterable

import attrs

from .errors import TopologyError

__all__ = ["Topology", "Node", "Edge", "Plan", "TopologyError"]

_VIRTUAL = ("map", "filter", "flat_map", "key_by", "broadcast", "union")
_POLICIES = ("escalate", "skip", "restart")
_LATE = ("pass", "drop", "side")
# Attributes the runtime sets on operator instances: a statelet may not use them.
_RESERVED = frozenset({"name", "index", "parallelism", "statelet_context"})


@attrs.define(eq=False)
class Node:
    """One step of a topology (as declared)."""

    name: str
    kind: str                       # source | map | filter | flat_map | key_by | union | operator | sink
    inputs: list[str]               # "name" or "name:output"
    fn: Any = None                  # transform/key function, operator factory, source or sink
    parallelism: int = 1
    options: dict[str, Any] = attrs.Factory(dict)

    @property
    def physical(self) -> bool:
        return self.kind not in _VIRTUAL


@attrs.define(eq=False)
class Edge:
    """A physical connection: ``src``'s output ``output`` feeds ``dst``'s input ``port``.

    ``steps`` are the fused stateless steps applied by the sender, in order:
    ``("map"|"filter"|"flat_map"|"key_by", fn, node_name)``.
    """

    src: str
    output: str | None
    dst: str
    port: int
    steps: list[tuple[str, Callable[..., Any], str]]

    @property
    def keyed(self) -> bool:
        """Whether elements arrive with a key (a key_by not undone by a later map)."""
        keyed = False
        for kind, _, _ in self.steps:
            if kind == "key_by":
                keyed = True
            elif kind in ("map", "flat_map", "broadcast"):
                keyed = False
        return keyed

    @property
    def broadcast(self) -> bool:
        """Whether every receiving instance gets every element."""
        return any(kind == "broadcast" for kind, _, _ in self.steps)


@attrs.define(eq=False)
class Plan:
    """The physical DAG: sources, operators and sinks in topological order, and the edges."""

    nodes: list[Node]
    edges: list[Edge]

    def inputs_of(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.dst == name]

    def outputs_of(self, name: str) -> list[Edge]:
        return [e for e in self.edges if e.src == name]

    def fingerprint(self) -> dict[str, Any]:
        """What a checkpoint records to recognise the topology on restore."""
        return {n.name: {"kind": n.kind, "parallelism": n.parallelism} for n in self.nodes}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise TopologyError(f"step names must be non-empty strings, got {name!r}")
    if ":" in name or "/" in name:
        raise TopologyError(f"step name {name!r} may not contain ':' or '/' "
                            f"(':' selects a side output, '/' an instance)")
    return name


def _check_parallelism(name: str, p: Any) -> int:
    if not isinstance(p, int) or isinstance(p, bool) or p < 1:
        raise TopologyError(f"step {name!r}: parallelism must be an int >= 1, got {p!r}")
    return p


def _check_callable(name: str, kind: str, fn: Any) -> Any:
    if not callable(fn):
        raise TopologyError(f"step {name!r}: {kind} needs a function, got {fn!r}")
    return fn


class Topology:
    """A named DAG of steps, built fluently; see the module docstring."""

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise TopologyError(f"a topology needs a non-empty name, got {name!r}")
        self.name = name
        self.nodes: dict[str, Node] = {}
        self._cursor: str | None = None
        self._anon = 0

    # -- building ---------------------------------------------------------------------
    def _add(self, node: Node) -> "Topology":
        if node.name in self.nodes:
            raise TopologyError(f"topology {self.name!r}: two steps are named {node.name!r}; "
                                f"step names must be unique")
        self.nodes[node.name] = node
        self._cursor = node.name
        return self

    def _input(self, name: str, input: str | None) -> list[str]:
        if input is None:
            if self._cursor is None:
                raise TopologyError(f"step {name!r} has nothing to attach to: start with "
                                    f".source(...) or pass input='step'")
            return [self._cursor]
        if not isinstance(input, str):
            raise TopologyError(f"step {name!r}: input must be a step name, got {input!r}")
        return [input]

    def _auto(self, kind: str) -> str:
        self._anon += 1
        return f"{kind}-{self._anon}"

    def source(self, name: str, source: Any, *, parallelism: int = 1,
               timestamp: Callable[[Any], float] | None = None,
               max_out_of_orderness: float = 0.0, idle_timeout: float | None = None,
               batch_size: int = 1024) -> "Topology":
        """A source (see :mod:`reactor.sources`). ``timestamp(element)`` gives event time;
        watermarks trail the highest timestamp seen by ``max_out_of_orderness``; a source
        silent for ``idle_timeout`` seconds stops holding back downstream watermarks."""
        name = _check_name(name)
        from .sources import Source
        if not isinstance(source, Source):
            raise TopologyError(f"source {name!r}: expected a reactor.sources.Source (e.g. "
                                f"IterableSource(...), FileSource(path)), got {source!r}")
        if timestamp is not None:
            _check_callable(name, "timestamp", timestamp)
        if not isinstance(max_out_of_orderness, (int, float)) or max_out_of_orderness < 0:
            raise TopologyError(f"source {name!r}: max_out_of_orderness must be a number >= 0, "
                                f"got {max_out_of_orderness!r}")
        if idle_timeout is not None and (not isinstance(idle_timeout, (int, float))
                                         or idle_timeout <= 0):
            raise TopologyError(f"source {name!r}: idle_timeout must be a positive number of "
                                f"seconds or None, got {idle_timeout!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise TopologyError(f"source {name!r}: batch_size must be an int >= 1, got {batch_size!r}")
        return self._add(Node(name, "source", [], source, _check_parallelism(name, parallelism),
                              {"timestamp": timestamp, "max_out_of_orderness": max_out_of_orderness,
                               "idle_timeout": idle_timeout, "batch_size": batch_size}))

    def map(self, name: str, fn: Callable[[Any], Any], *, input: str | None = None) -> "Topology":
        """Replace each element with ``fn(element)``."""
        name = _check_name(name)
        return self._add(Node(name, "map", self._input(name, input), _check_callable(name, "map", fn)))

    def filter(self, name: str, fn: Callable[[Any], bool], *, input: str | None = None) -> "Topology":
        """Keep the elements for which ``fn(element)`` is true."""
        name = _check_name(name)
        return self._add(Node(name, "filter", self._input(name, input),
                              _check_callable(name, "filter", fn)))

    def flat_map(self, name: str, fn: Callable[[Any], Iterable[Any]], *,
                 input: str | None = None) -> "Topology":
        """Replace each element with the elements of ``fn(element)`` (same timestamp)."""
        name = _check_name(name)
        return self._add(Node(name, "flat_map", self._input(name, input),
                              _check_callable(name, "flat_map", fn)))

    def key_by(self, fn: Callable[[Any], Any], name: str | None = None, *,
               input: str | None = None) -> "Topology":
        """Key the stream by ``fn(element)``: the next operator's statelets are scoped to it,
        and its instances each own the keys that hash to them (stable across restarts)."""
        name = _check_name(name) if name is not None else self._auto("key_by")
        return self._add(Node(name, "key_by", self._input(name, input),
                              _check_callable(name, "key_by", fn)))

    def broadcast(self, name: str | None = None, *, input: str | None = None) -> "Topology":
        """Send every element to every instance of the next step (e.g. rules or
        configuration for all instances of a connected operator)."""
        name = _check_name(name) if name is not None else self._auto("broadcast")
        return self._add(Node(name, "broadcast", self._input(name, input)))

    def union(self, name: str, *inputs: str) -> "Topology":
        """Merge the named streams into one."""
        name = _check_name(name)
        if len(inputs) < 2:
            raise TopologyError(f"union {name!r} needs at least two inputs, got {list(inputs)}")
        for i in inputs:
            if not isinstance(i, str):
                raise TopologyError(f"union {name!r}: inputs must be step names, got {i!r}")
        return self._add(Node(name, "union", list(inputs)))

    def operator(self, name: str, operator: Any, *, parallelism: int = 1,
                 input: str | None = None, policy: str = "escalate", max_restarts: int = 3,
                 on_late: str = "pass") -> "Topology":
        """An :class:`~reactor.operator.Operator` subclass (or a factory returning one).

        ``policy``: what an exception in a handler does — ``"escalate"`` fails the
        job (the last committed checkpoint stays intact), ``"skip"`` sends the
        element to the dead letters and goes on, ``"restart"`` restarts the job
        from the last committed checkpoint (at most ``max_restarts`` times).
        ``on_late``: elements older than the operator's watermark are passed on
        (``"pass"``), dropped and counted (``"drop"``) or sent to the side output
        ``"name:late"`` (``"side"``).
        """
        name = _check_name(name)
        return self._add(Node(name, "operator", self._input(name, input),
                              self._check_operator(name, operator),
                              _check_parallelism(name, parallelism),
                              self._op_options(name, policy, max_restarts, on_late)))

    def stateful_map(self, name: str, fn: Callable[[Any, Any], tuple[Any, Any]], *,
                     parallelism: int = 1, input: str | None = None, policy: str = "escalate",
                     max_restarts: int = 3) -> "Topology":
        """Per key: ``fn(state, value) -> (new_state, output)``; emits ``(key, output)``.

        The state starts as None for a new key; returning None as the new state
        forgets the key. Needs a ``key_by`` upstream. Bytewax's contract, with
        the state in a heap-tiered statelet (see :mod:`reactor.stateful_map`).
        """
        from .stateful_map import stateful_map
        name = _check_name(name)
        _check_callable(name, "stateful_map", fn)
        return self.operator(name, stateful_map(fn), parallelism=parallelism, input=input,
                             policy=policy, max_restarts=max_restarts)

    def connect(self, name: str, left: str, right: str, operator: Any, *, parallelism: int = 1,
                policy: str = "escalate", max_restarts: int = 3,
                on_late: str = "pass") -> "Topology":
        """A two-input operator (joins): elements of ``left`` arrive with ``ctx.input == 0``,
        those of ``right`` with ``ctx.input == 1``; its watermark is the minimum of both."""
        name = _check_name(name)
        for side, i in (("left", left), ("right", right)):
            if not isinstance(i, str):
                raise TopologyError(f"connect {name!r}: {side} must be a step name, got {i!r}")
        return self._add(Node(name, "operator", [left, right], self._check_operator(name, operator),
                              _check_parallelism(name, parallelism),
                              self._op_options(name, policy, max_restarts, on_late)))

    def sink(self, name: str, sink: Any, *, parallelism: int = 1,
             input: str | None = None) -> "Topology":
        """A sink (see :mod:`reactor.sinks`)."""
        name = _check_name(name)
        from .sinks import Sink
        if not isinstance(sink, Sink):
            raise TopologyError(f"sink {name!r}: expected a reactor.sinks.Sink (e.g. PrintSink(), "
                                f"CollectSink(), FileSink(dir)), got {sink!r}")
        return self._add(Node(name, "sink", self._input(name, input), sink,
                              _check_parallelism(name, parallelism)))

    @staticmethod
    def _check_operator(name: str, operator: Any) -> Any:
        from .operator import Operator
        if inspect.isclass(operator):
            if not issubclass(operator, Operator):
                raise TopologyError(f"operator {name!r}: {operator.__name__} does not subclass "
                                    f"reactor.Operator")
            return operator
        if isinstance(operator, Operator):
            raise TopologyError(f"operator {name!r}: pass the class {type(operator).__name__} (or a "
                                f"factory function), not an instance: each parallel instance gets "
                                f"its own object")
        if not callable(operator):
            raise TopologyError(f"operator {name!r}: expected an Operator subclass or a factory "
                                f"returning one, got {operator!r}")
        return operator

    @staticmethod
    def _op_options(name: str, policy: str, max_restarts: int, on_late: str) -> dict[str, Any]:
        if policy not in _POLICIES:
            raise TopologyError(f"operator {name!r}: unknown policy {policy!r}; expected one of "
                                f"{', '.join(_POLICIES)}")
        if not isinstance(max_restarts, int) or max_restarts < 0:
            raise TopologyError(f"operator {name!r}: max_restarts must be an int >= 0")
        if on_late not in _LATE:
            raise TopologyError(f"operator {name!r}: unknown on_late {on_late!r}; expected one of "
                                f"{', '.join(_LATE)}")
        return {"policy": policy, "max_restarts": max_restarts, "on_late": on_late}

    # -- validation and planning ----------------------------------------------------------------
    def validate(self) -> Plan:
        """Check the topology and return its physical plan; raises :class:`TopologyError`
        listing every problem found."""
        problems: list[str] = []
        nodes = self.nodes
        if not any(n.kind == "source" for n in nodes.values()):
            problems.append("it has no source: start with .source(name, Source)")
        if not any(n.kind == "sink" for n in nodes.values()):
            problems.append("it has no sink: end each stream with .sink(name, Sink)")
        consumers: dict[str, list[str]] = {n: [] for n in nodes}
        for n in nodes.values():
            for ref in n.inputs:
                src, _, output = ref.partition(":")
                if src not in nodes:
                    problems.append(f"step {n.name!r} reads from {src!r}, which does not exist")
                    continue
                if output and nodes[src].kind != "operator":
                    problems.append(f"step {n.name!r} reads side output {ref!r}, but {src!r} is a "
                                    f"{nodes[src].kind}; only operators have side outputs")
                if nodes[src].kind == "sink":
                    problems.append(f"step {n.name!r} reads from sink {src!r}; sinks have no output")
                consumers[src].append(n.name)
        for n in nodes.values():
            if n.kind != "sink" and not consumers[n.name]:
                problems.append(f"step {n.name!r} ({n.kind}) is dangling: nothing reads its "
                                f"output; add a .sink(...) after it or remove it")
        for n in nodes.values():
            if n.kind == "operator" and n.options.get("on_late") == "side" \
                    and f"{n.name}:late" not in {r for m in nodes.values() for r in m.inputs}:
                problems.append(f"operator {n.name!r} sends late elements to its side output "
                                f"'late' (on_late='side') but nothing reads it: add a step "
                                f"with input='{n.name}:late', or use on_late='drop'")
        cycle = self._find_cycle()
        if cycle:
            problems.append("it has a cycle: " + " -> ".join(cycle))
        if problems:
            raise TopologyError(f"topology {self.name!r} is invalid:\n  - " + "\n  - ".join(problems))
        plan = self._plan()
        for node in plan.nodes:
            if node.kind != "operator":
                continue
            stateful = _keyed_statelets(node.fn)
            clash = sorted(set(stateful) & _RESERVED)
            if clash:
                problems.append(
                    f"operator {node.name!r}: statelet name(s) {', '.join(map(repr, clash))} "
                    f"clash with attributes the runtime sets on every operator "
                    f"({', '.join(sorted(_RESERVED))}); rename them")
            if stateful:
                for e in plan.inputs_of(node.name):
                    if not e.keyed and not e.broadcast:
                        problems.append(
                            f"operator {node.name!r} declares keyed statelets ({', '.join(stateful)}) "
                            f"but its input from {e.src!r} is not keyed: add .key_by(fn) right "
                            f"before it (a map or flat_map after key_by drops the key)")
        if problems:
            raise TopologyError(f"topology {self.name!r} is invalid:\n  - " + "\n  - ".join(problems))
        return plan

    def _find_cycle(self) -> list[str] | None:
        WHITE, GREY, BLACK = 0, 1, 2
        color = {n: WHITE for n in self.nodes}
        stack: list[str] = []

        def visit(n: str) -> list[str] | None:
            color[n] = GREY
            stack.append(n)
            for ref in self.nodes[n].inputs:
                src = ref.partition(":")[0]
                if src not in self.nodes:
                    continue
                if color[src] == GREY:
                    return stack[stack.index(src):] + [src]
                if color[src] == WHITE:
                    found = visit(src)
                    if found:
                        return found
            stack.pop()
            color[n] = BLACK
            return None

        for n in self.nodes:
            if color[n] == WHITE:
                found = visit(n)
                if found:
                    return list(reversed(found))
        return None

    def _plan(self) -> Plan:
        nodes = self.nodes
        edges: list[Edge] = []

        def producers(ref: str) -> list[tuple[str, str | None, list[tuple[str, Any, str]]]]:
            """Trace ``ref`` back through virtual steps to physical (node, output, steps)."""
            src, _, output = ref.partition(":")
            node = nodes[src]
            if node.physical:
                return [(src, output or None, [])]
            out = []
            for upstream in node.inputs:
                for p, o, steps in producers(upstream):
                    extra = [] if node.kind == "union" else [(node.kind, node.fn, node.name)]
                    out.append((p, o, steps + extra))
            return out

        order = self._topo_order()
        physical = [nodes[n] for n in order if nodes[n].physical]
        for node in physical:
            for port, ref in enumerate(node.inputs):
                for src, output, steps in producers(ref):
                    edges.append(Edge(src, output, node.name, port, steps))
        return Plan(physical, edges)

    def _topo_order(self) -> list[str]:
        seen: set[str] = set()
        order: list[str] = []

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for ref in self.nodes[n].inputs:
                visit(ref.partition(":")[0])
            order.append(n)

        for n in self.nodes:
            visit(n)
        return order

    def __repr__(self) -> str:
        return f"<Topology {self.name!r}: {', '.join(self.nodes)}>"


def _keyed_statelets(factory: Any) -> list[str]:
    """Names of the statelets an operator class declares (keyed by construction)."""
    from statelets.types import Statelet
    if not inspect.isclass(factory):
        return []
    names = []
    for klass in factory.__mro__:
        for attr, value in vars(klass).items():
            if isinstance(value, Statelet) and attr not in names:
                names.append(attr)
    return names
