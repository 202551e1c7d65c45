"""The ``reactor`` command: run a topology file, list, restore and inspect checkpoints.

::

    reactor run FILE.py [--state-dir D] [--checkpoint-every S] [--stats S]
                        [--metrics-port P] [--epoch N]
    reactor snapshots D            # retained checkpoints (works while a job runs)
    reactor restore D --epoch N    # the next run resumes from epoch N
    reactor inspect D [--epoch N]  # operators, statelets, keys, timers, store stats

Every command takes ``--debug`` (tracebacks and info logs). Errors print one
``reactor: error: ...`` line and a ``hint: ...`` line and exit with 1 (2 for a
usage error).
"""
from __future__ import annotations

import argparse
import errno
import fcntl
import inspect as _pyinspect
import logging
import os
import runpy
import sys
import time
import traceback
from typing import Any, Sequence

__all__ = ["main", "CliError", "load_topology"]

PROG = "reactor"


class CliError(Exception):
    """An error the CLI reports as ``reactor: error: MESSAGE`` plus ``hint: HINT``."""

    def __init__(self, message: str, hint: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse with the CLI's error format (and exit status 2 for usage errors)."""

    def error(self, message: str) -> "None":  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{PROG}: error: {message}\n"
                         f"hint: see `{self.prog} --help`\n")
        sys.exit(2)


# ------------------------------------------------------------------------------ helpers

def _flat(text: Any) -> str:
    """A message on one line (some core messages list problems on several, as "- ..." items)."""
    out = ""
    for ln in str(text).splitlines():
        ln = " ".join(ln.split())
        if ln.startswith("- "):
            ln = ln[2:]
        if not ln:
            continue
        out = ln if not out else out + (" " if out.endswith(":") else "; ") + ln
    return out


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not v > 0 or v != v or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return v


def _checkpoint_every(text: str) -> float | None:
    if text.strip().lower() in ("0", "0.0", "none", "never"):
        return None
    return _positive_float(text)


def _int_in(text: str, what: str, lo: int, hi: int, bounds: str) -> int:
    """``text`` as an int in ``lo..hi``; else an argparse error naming ``what``."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} is an integer, got {text!r}") from None
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError(f"{what} is {bounds}, got {v}")
    return v


def _epoch(text: str) -> int:
    return _int_in(text, "an epoch", 0, sys.maxsize, ">= 0")


def _port(text: str) -> int:
    return _int_in(text, "a port", 0, 65535, "in 0..65535 (0: any free port)")


def _size(n: int | float) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"  # pragma: no cover


def _when(ts: Any) -> str:
    if not isinstance(ts, (int, float)):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def _table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(headers)] + [line(r) for r in rows])


def _epochs_text(epochs: list[int]) -> str:
    return ", ".join(map(str, epochs)) if epochs else "none"


def _lock_held(state_dir: str) -> bool:
    """True if a process holds the store's LOCK (a job is running on ``state_dir``)."""
    path = os.path.join(state_dir, "LOCK")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        return exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _in_use_error(state_dir: str) -> CliError:
    return CliError(f"state dir {state_dir!r} is in use: a job is running on it (its LOCK is held)",
                    f"wait for that job to finish or stop it (Ctrl-C / SIGTERM); "
                    f"`reactor snapshots {state_dir}` works while it runs")


def _is_store(state_dir: str) -> bool:
    return os.path.isdir(os.path.join(state_dir, "snapshots"))


def _require_store(state_dir: str) -> str:
    """Check that ``state_dir`` is an existing store directory (never create one)."""
    if not os.path.exists(state_dir):
        raise CliError(f"no state dir {state_dir!r}: no such directory",
                       "pass the directory a job ran with (`reactor run FILE --state-dir DIR`)")
    if not os.path.isdir(state_dir):
        raise CliError(f"state dir {state_dir!r} is a file, not a directory",
                       "pass the directory a job ran with (`reactor run FILE --state-dir DIR`)")
    if not _is_store(state_dir):
        raise CliError(f"{state_dir!r} is not a reactor state dir (it has no snapshots/ "
                       f"directory)",
                       "pass the directory a job ran with (`reactor run FILE --state-dir DIR`)")
    return state_dir


def _retained(state_dir: str) -> list[int]:
    from statelets.snapshot import list_epochs
    return list_epochs(os.path.join(state_dir, "snapshots"))


def _require_epoch(state_dir: str, epoch: int) -> list[int]:
    epochs = _retained(state_dir)
    if epoch not in epochs:
        raise CliError(f"no checkpoint for epoch {epoch} in {state_dir!r}; retained epochs: "
                       f"{_epochs_text(epochs)}",
                       f"pick one of the retained epochs (`reactor snapshots {state_dir}`); "
                       f"older ones were removed when newer ones committed")
    return epochs


def _read_manifest(state_dir: str, epoch: int) -> Any:
    """The Manifest of ``epoch``, read without the store (and its LOCK); None if it is gone."""
    from statelets.snapshot import MANIFEST, Manifest
    path = os.path.join(state_dir, "snapshots", str(epoch), MANIFEST)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None             # removed by retention since listing (a job is running)
    return Manifest.from_json(data, path)


def _offsets_text(meta: dict[str, Any], width: int = 48) -> str:
    sources = meta.get("sources")
    if not isinstance(sources, dict) or not sources:
        return "-"
    text = ", ".join(f"{k}={v}" for k, v in sorted(sources.items()))
    return text if len(text) <= width else text[:width - 1] + "…"


def _run_in_reactor(main: Any, *args: Any) -> Any:
    """Run ``main(*args)`` in a reactor (the store does its I/O through the ring)."""
    import reactor
    return reactor.run(main, *args)


def _store_error(exc: BaseException, state_dir: str, epoch: int | None) -> CliError:
    from statelets import CorruptionError, StateletError
    text = _flat(exc)
    if isinstance(exc, StateletError) and "LOCK held" in text:
        return _in_use_error(state_dir)
    if isinstance(exc, CorruptionError):
        which = f"the checkpoint of epoch {epoch}" if epoch is not None else "the latest checkpoint"
        return CliError(f"{which} in {state_dir!r} is damaged: {text}",
                        f"open an older retained epoch with --epoch (`reactor snapshots "
                        f"{state_dir}` lists them)")
    return CliError(f"cannot open the state dir {state_dir!r}: {type(exc).__name__}: {text}",
                    "run with --debug for the traceback")


# ----------------------------------------------------------------------------- topology

def load_topology(path: str) -> Any:
    """Execute ``path`` (as module ``__reactor__``) and return the Topology it defines.

    A global named ``topology``, else the only Topology among the globals, else
    the result of a zero-argument ``build_topology()``.
    """
    from .topology import Topology
    if not os.path.exists(path):
        raise CliError(f"no such file: {path!r}",
                       "pass the path of a Python file that builds a Topology, e.g. "
                       "`reactor run samples/wordcount.py`")
    if os.path.isdir(path):
        raise CliError(f"{path!r} is a directory, not a Python file",
                       "pass the path of a Python file that builds a Topology, e.g. "
                       "`reactor run samples/wordcount.py`")
    # As `python FILE` does: the file's directory comes first on sys.path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    argv, sys.argv = sys.argv, [path]
    try:
        ns = runpy.run_path(path, run_name="__reactor__")
    except SystemExit as exc:
        raise CliError(f"{path} called sys.exit({exc.code!r}) while it was being loaded",
                       "put the code that runs the job under `if __name__ == \"__main__\":`; "
                       "`reactor run` only needs the topology") from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        raise CliError(f"{path} failed while it was being loaded: {type(exc).__name__}: "
                       f"{_flat(exc)}",
                       "fix the error in the file (run with --debug for the traceback)") from exc
    finally:
        sys.argv = argv
    hint = ("assign the topology to a global named `topology`, or define a zero-argument "
            "`build_topology()` that returns it")
    topo = ns.get("topology")
    if topo is not None:
        if isinstance(topo, Topology):
            return topo
        raise CliError(f"{path}: the global `topology` is a {type(topo).__name__}, not a "
                       f"reactor.Topology", hint)
    found: dict[int, tuple[str, Any]] = {}
    for name, value in ns.items():
        if isinstance(value, Topology) and not name.startswith("__"):
            found.setdefault(id(value), (name, value))
    if len(found) == 1:
        return next(iter(found.values()))[1]
    build = ns.get("build_topology")
    if callable(build):
        try:
            required = [p for p in _pyinspect.signature(build).parameters.values()
                        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                               p.POSITIONAL_OR_KEYWORD,
                                                               p.KEYWORD_ONLY)]
        except (TypeError, ValueError):
            required = []
        if required:
            raise CliError(f"{path}: build_topology() takes arguments "
                           f"({', '.join(p.name for p in required)}); it must take none", hint)
        try:
            topo = build()
        except Exception as exc:
            raise CliError(f"{path}: build_topology() failed: {type(exc).__name__}: {_flat(exc)}",
                           "fix the error in the file (run with --debug for the traceback)") from exc
        if not isinstance(topo, Topology):
            raise CliError(f"{path}: build_topology() returned a {type(topo).__name__}, not a "
                           f"reactor.Topology", hint)
        return topo
    if len(found) > 1:
        names = ", ".join(sorted(n for n, _ in found.values()))
        raise CliError(f"{path} defines several topologies ({names}); which one to run is "
                       f"ambiguous", "name the one to run `topology` (or define "
                       "build_topology() returning it)")
    raise CliError(f"{path} defines no Topology", hint)


# ----------------------------------------------------------------------------------- run

def cmd_run(args: argparse.Namespace) -> int:
    """``reactor run FILE``."""
    import reactor
    from .errors import (ActorError, CheckpointError, OperatorError, ReactorError,
                         TopologyError)
    state_dir = args.state_dir
    if args.epoch is not None and state_dir is None:
        raise CliError("--epoch needs --state-dir (the checkpoints live there)",
                       "pass --state-dir DIR with the directory of the earlier run", code=2)
    # Check the state dir before running the user's file (cheap, and nothing happens).
    if state_dir is not None:
        if os.path.exists(state_dir) and not os.path.isdir(state_dir):
            raise CliError(f"state dir {state_dir!r} is a file, not a directory",
                           "pass a new directory (it is created) or the state dir of an earlier run")
        if os.path.isdir(state_dir):
            if not _is_store(state_dir) and os.listdir(state_dir):
                raise CliError(f"{state_dir!r} is not empty and is not a reactor state dir (no "
                               f"snapshots/ in it)",
                               "pass a new or empty directory, or the state dir of an earlier run")
            if _lock_held(state_dir):
                raise _in_use_error(state_dir)
            if args.epoch is not None:
                _require_epoch(state_dir, args.epoch)
        elif args.epoch is not None:
            raise CliError(f"no state dir {state_dir!r}, so no epoch {args.epoch} to resume from",
                           "pass the directory of an earlier run, or drop --epoch to start afresh")
    topology = load_topology(args.file)
    options: dict[str, Any] = {"state_dir": state_dir}
    if args.checkpoint_every is not _UNSET:
        options["checkpoint_every"] = args.checkpoint_every
    if args.stats is not None:
        options["stats_interval"] = args.stats
    if args.metrics_port is not None:
        options["metrics_port"] = args.metrics_port
    if args.epoch is not None:
        options["epoch"] = args.epoch
    resume = (f"; the last committed checkpoint in {state_dir} is intact and the next "
              f"`reactor run` resumes from it" if state_dir else "")
    try:
        result = reactor.run(topology, **options)
    except TopologyError as exc:
        raise CliError(_flat(exc), f"fix the topology in {args.file}; nothing ran and the state "
                                   f"dir is unchanged") from exc
    except OperatorError as exc:
        raise CliError(_flat(exc), f"fix the operator (--debug shows the traceback){resume}") from exc
    except CheckpointError as exc:
        from statelets import CorruptionError
        text = _flat(exc)
        if "LOCK held" in text and state_dir:
            raise _in_use_error(state_dir) from exc
        # (reactor.run re-raises with `from None`, which drops __cause__: match the text too.)
        damaged = isinstance(exc.__cause__, CorruptionError) or (
            text.startswith("cannot open the state dir")
            and any(w in text for w in ("MANIFEST", "corrupt", "checksum", "torn")))
        if damaged and state_dir:
            raise CliError(text, f"resume from an older retained epoch: `reactor run {args.file} "
                                 f"--state-dir {state_dir} --epoch N`, or make it the latest with "
                                 f"`reactor restore {state_dir} --epoch N` (`reactor snapshots "
                                 f"{state_dir}` lists them)") from exc
        raise CliError(text, f"fix the cause and run again (--debug shows the traceback)"
                             f"{resume}") from exc
    except (ActorError, ReactorError) as exc:
        raise CliError(_flat(exc), "run with --debug for the traceback") from exc
    except Exception as exc:
        raise CliError(f"job {topology.name!r} failed: {type(exc).__name__}: {_flat(exc)}",
                       f"run with --debug for the traceback{resume}") from exc
    if result is None:
        sys.stderr.write(f"{PROG}: job {topology.name!r} stopped by a signal before it finished"
                         + (f"; the next run with --state-dir {state_dir} resumes from the last "
                            f"committed epoch\n" if state_dir else "\n"))
        return 130
    restored = (f"restored from epoch {result.restored_from}" if result.restored_from is not None
                else "started afresh")
    extra = ""
    if result.restarts:
        extra += f", {result.restarts} restart(s)"
    if result.dead_letters:
        extra += f", {len(result.dead_letters)} dead letter(s)"
    if result.late_dropped:
        extra += f", {result.late_dropped} late element(s) dropped"
    where = f" in {state_dir}" if state_dir else " (temporary state dir, removed)"
    sys.stderr.write(f"{PROG}: job {topology.name!r} done: epoch {result.epoch} committed{where}, "
                     f"{result.elements_in} source elements in {result.seconds:.2f} s, "
                     f"{restored}{extra}\n")
    return 0


# ----------------------------------------------------------------------------- snapshots

def cmd_snapshots(args: argparse.Namespace) -> int:
    """``reactor snapshots D``: reads the MANIFESTs directly, so it works while a job runs."""
    from statelets import CorruptionError
    state_dir = _require_store(args.state_dir)
    epochs = _retained(state_dir)
    running = _lock_held(state_dir)
    status = " (a job is running on it)" if running else ""
    if not epochs:
        print(f"{state_dir}: no committed checkpoints{status}")
        return 0
    rows = []
    for e in epochs:
        try:
            m = _read_manifest(state_dir, e)
        except CorruptionError as exc:
            rows.append([str(e), "?", "?", "?", "?", "?", f"DAMAGED: {_flat(exc)}"])
            continue
        if m is None:
            continue
        meta = m.metadata or {}
        note = []
        if "restored_from_epoch" in meta:
            note.append(f"restore of epoch {meta['restored_from_epoch']}")
        if e == epochs[-1]:
            note.append("latest: the next run resumes here")
        rows.append([str(e), _when(m.created), str(meta.get("job", "-")),
                     _offsets_text(meta), _size(m.bytes_linked), str(m.live_keys),
                     "; ".join(note)])
    print(f"{state_dir}: {len(rows)} retained checkpoint(s){status}")
    print(_table(["EPOCH", "COMMITTED", "JOB", "SOURCE OFFSETS", "NEW BYTES", "KEYS", "NOTE"],
                 rows, right={0, 4, 5}))
    return 0


# ------------------------------------------------------------------------------- restore

async def _restore(state_dir: str, epoch: int) -> dict[str, Any]:
    from statelets import Store
    store = await Store.open(state_dir, epoch=epoch)
    try:
        before = store.checkpoints()
        latest = before[-1]
        meta = store.metadata
        if epoch == latest:
            return {"noop": True, "meta": meta}
        meta["restored_from_epoch"] = epoch
        new = latest + 1
        await store.checkpoint(new, meta)
        return {"noop": False, "new": new, "meta": meta,
                "discarded": [e for e in before if e > epoch],
                "retained": store.checkpoints()}
    finally:
        await store.close()


class _DropRecords(logging.Filter):
    """Drops log records whose message contains ``text``."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


def cmd_restore(args: argparse.Namespace) -> int:
    """``reactor restore D --epoch N``."""
    state_dir = _require_store(args.state_dir)
    if _lock_held(state_dir):
        raise _in_use_error(state_dir)
    _require_epoch(state_dir, args.epoch)
    # The store logs that the checkpoint discards the later ones; we say it below.
    quiet = _DropRecords("discards later checkpoints")
    store_log = logging.getLogger("statelets.store")
    store_log.addFilter(quiet)
    try:
        r = _run_in_reactor(_restore, state_dir, args.epoch)
    except CliError:
        raise
    except Exception as exc:
        raise _store_error(exc, state_dir, args.epoch) from exc
    finally:
        store_log.removeFilter(quiet)
    meta = r["meta"]
    job = meta.get("job", "?")
    if r["noop"]:
        print(f"epoch {args.epoch} is already the latest checkpoint in {state_dir}: the next run "
              f"of job {job!r} resumes from it; nothing changed")
        return 0
    discarded = r["discarded"]
    print(f"restored epoch {args.epoch} of job {job!r} in {state_dir} as the new latest "
          f"checkpoint, epoch {r['new']} (source offsets: {_offsets_text(meta, 200)})")
    print(f"discarded the later checkpoints: {_epochs_text(discarded)}")
    print(f"the next `reactor run ... --state-dir {state_dir}` resumes from epoch {args.epoch}'s "
          f"state and source offsets")
    print(f"note: output that sinks already committed for epochs {_epochs_text(discarded)} is "
          f"not removed (e.g. FileSink files of those epochs); delete it yourself if the rerun "
          f"must not see it twice")
    return 0


# ------------------------------------------------------------------------------- inspect

_TIMERS_NS = "\x00timers"
_DOMAINS = {0: "event", 1: "processing"}


async def _inspect(state_dir: str, epoch: int | None) -> dict[str, Any]:
    from statelets import Store
    from statelets.codecs import decode_key_from
    store = await Store.open(state_dir, epoch=epoch)
    try:
        statelets: dict[tuple[str, str], dict[str, Any]] = {}
        timers: dict[str, dict[str, int]] = {}
        other = {"entries": 0, "bytes": 0}
        async for k, v in store.scan(b""):
            try:
                ns, p = decode_key_from(k, 0)
                name, p = decode_key_from(k, p)
                if ns == _TIMERS_NS:
                    (d, _t, _key), _ = decode_key_from(k, p)
                    row = timers.setdefault(name, {"event": 0, "processing": 0})
                    row[_DOMAINS.get(d, str(d))] = row.get(_DOMAINS.get(d, str(d)), 0) + 1
                    continue
                start = p
                _ck, p = decode_key_from(k, p)
            except Exception:
                other["entries"] += 1
                other["bytes"] += len(k) + len(v)
                continue
            s = statelets.setdefault((str(ns), str(name)), {"keys": set(), "entries": 0,
                                                            "bytes": 0, "map": False})
            s["keys"].add(k[start:p])
            s["entries"] += 1
            s["bytes"] += len(k) + len(v)
            if p < len(k):
                s["map"] = True         # a map key follows the current key
        return {"epoch": store.epoch, "manifest": store.manifest, "stats": store.stats(),
                "checkpoints": store.checkpoints(), "statelets": statelets, "timers": timers,
                "other": other}
    finally:
        await store.close()


def cmd_inspect(args: argparse.Namespace) -> int:
    """``reactor inspect D [--epoch N]``."""
    state_dir = _require_store(args.state_dir)
    if _lock_held(state_dir):
        raise _in_use_error(state_dir)
    if args.epoch is not None:
        _require_epoch(state_dir, args.epoch)
    if not _retained(state_dir):
        raise CliError(f"{state_dir!r} has no committed checkpoint to inspect",
                       "run a job with --state-dir until it commits an epoch")
    try:
        r = _run_in_reactor(_inspect, state_dir, args.epoch)
    except CliError:
        raise
    except Exception as exc:
        raise _store_error(exc, state_dir, args.epoch) from exc
    m = r["manifest"]
    meta = m.metadata or {}
    latest = r["checkpoints"][-1] if r["checkpoints"] else None
    which = "the latest" if r["epoch"] == latest else f"latest is {latest}"
    print(f"state dir:  {os.path.abspath(state_dir)}")
    print(f"checkpoint: epoch {r['epoch']} ({which}; retained {_epochs_text(r['checkpoints'])}), "
          f"committed {_when(m.created)}, job {meta.get('job', '?')!r}")
    print(f"sources:    {_offsets_text(meta, 200)}")
    print()
    # Operators of the checkpointed topology, also those without state.
    topo = meta.get("topology") if isinstance(meta.get("topology"), dict) else {}
    ops = [n for n, d in topo.items() if isinstance(d, dict) and d.get("kind") == "operator"]
    stl = r["statelets"]
    names = list(dict.fromkeys(ops + sorted({ns for ns, _ in stl} | set(r["timers"]))))
    rows = []
    for op in names:
        par = topo.get(op, {}).get("parallelism") if isinstance(topo.get(op), dict) else None
        label = op if par in (None, 1) else f"{op} (x{par})"
        mine = sorted((name, s) for (ns, name), s in stl.items() if ns == op)
        if not mine:
            rows.append([label, "(no state)", "0", "0", _size(0)])
        for name, s in mine:
            rows.append([label, name + (" (map)" if s["map"] else ""), str(len(s["keys"])),
                         str(s["entries"]), _size(s["bytes"])])
            label = ""
    print("operators and their statelets:")
    if rows:
        print(_indent(_table(["OPERATOR", "STATELET", "KEYS", "ENTRIES", "BYTES"], rows,
                             right={2, 3, 4})))
    else:
        print("  (none)")
    if r["other"]["entries"]:
        print(f"  + {r['other']['entries']} entries ({_size(r['other']['bytes'])}) whose keys are "
              f"not statelet keys")
    print()
    print("timers:")
    trows = [[op, str(t.get("event", 0)), str(t.get("processing", 0))]
             for op, t in sorted(r["timers"].items())]
    if trows:
        print(_indent(_table(["OPERATOR", "EVENT", "PROCESSING"], trows, right={1, 2})))
    else:
        print("  (none)")
    st = r["stats"]
    print()
    print(f"store: {len(m.segments)} segment(s), {_size(st['disk_bytes'])} of records (live "
          f"{_size(st['live_bytes'])}, dead {_size(st['dead_bytes'])}, compaction backlog "
          f"{st['backlog']:.0%}), {st['live_keys']} live keys")
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + ln for ln in text.splitlines())


# ---------------------------------------------------------------------------------- main

_UNSET: Any = object()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``reactor`` command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true",
                        help="show tracebacks on errors and info logs")
    p = _Parser(prog=PROG, description="Run reactor topologies and manage their checkpoints.")
    # Its own dest: a subcommand's default would overwrite a shared one.
    p.add_argument("--debug", dest="debug_top", action="store_true",
                   help="show tracebacks on errors and info logs")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", parents=[common], help="run the topology a Python file defines",
                       description="Execute FILE (as module __reactor__, so its `if __name__ == "
                       "\"__main__\"` block does not run), take its Topology (a global named "
                       "`topology`, else the only Topology, else build_topology()) and run it. "
                       "With --state-dir the job checkpoints there and resumes from the last "
                       "committed epoch by itself.")
    r.add_argument("file", metavar="FILE", help="Python file that builds a Topology")
    r.add_argument("--state-dir", metavar="DIR",
                   help="state and checkpoints (default: a temporary dir, removed at the end)")
    r.add_argument("--checkpoint-every", metavar="S", type=_checkpoint_every, default=_UNSET,
                   help="seconds between checkpoints (default 5; 0: only the final one)")
    r.add_argument("--stats", metavar="S", type=_positive_float,
                   help="print a live view of queues, operators and I/O every S seconds")
    r.add_argument("--metrics-port", metavar="P", type=_port,
                   help="serve Prometheus metrics on 127.0.0.1:P (0: any free port)")
    r.add_argument("--epoch", metavar="N", type=_epoch,
                   help="resume from retained epoch N instead of the latest")
    r.set_defaults(func=cmd_run)

    s = sub.add_parser("snapshots", parents=[common], help="list the retained checkpoints",
                       description="List the retained checkpoints of a state dir from their "
                       "MANIFESTs (also while a job runs on it).")
    s.add_argument("state_dir", metavar="DIR", help="the state dir of a job")
    s.set_defaults(func=cmd_snapshots)

    rs = sub.add_parser("restore", parents=[common],
                        help="make a retained epoch the one the next run resumes from",
                        description="Make retained epoch N the checkpoint the next run resumes "
                        "from: its state and source offsets are committed again as a new latest "
                        "epoch and the checkpoints after N are discarded. Output that sinks "
                        "already committed for the later epochs is NOT removed.")
    rs.add_argument("state_dir", metavar="DIR", help="the state dir of a job")
    rs.add_argument("--epoch", metavar="N", type=_epoch, required=True,
                    help="the retained epoch to go back to")
    rs.set_defaults(func=cmd_restore)

    i = sub.add_parser("inspect", parents=[common],
                       help="operators, statelets, keys, timers and store stats of a checkpoint",
                       description="Open a checkpoint (the latest, or --epoch N) and show each "
                       "operator's statelets (keys, entries, bytes), its timers and the store's "
                       "segments and live/dead bytes. Needs the state dir not to be in use.")
    i.add_argument("state_dir", metavar="DIR", help="the state dir of a job")
    i.add_argument("--epoch", metavar="N", type=_epoch, help="inspect this retained epoch")
    i.set_defaults(func=cmd_inspect)
    return p


def _setup_logging(debug: bool) -> None:
    root = logging.getLogger()
    if not root.handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
        root.addHandler(h)
    root.setLevel(logging.INFO if debug else logging.WARNING)
    if not debug:
        # curio logs the traceback of a job's failed main task ("Task Crash")
        # although reactor.run re-raises the error, which we report on one line.
        logging.getLogger("curio.kernel").addFilter(_DropRecords("Task Crash"))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``reactor`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    debug = bool(getattr(args, "debug", False) or args.debug_top)
    _setup_logging(debug)
    try:
        return args.func(args)
    except CliError as exc:
        if debug:
            cause = exc.__cause__ or exc.__context__
            traceback.print_exception(cause if cause is not None else exc)
        sys.stderr.write(f"{PROG}: error: {exc.message}\nhint: {exc.hint}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG}: interrupted\n")
        return 130
    except Exception as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"{PROG}: error: {type(exc).__name__}: {_flat(exc)}\n"
                         f"hint: this is unexpected; run with --debug for the traceback and "
                         f"report it\n")
        return 1


if __name__ == "__main__":
    sys.exit(main())
