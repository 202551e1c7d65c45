"""reactor actors and mailboxes: delivery, batches, backpressure, supervision, lifecycle."""
from __future__ import annotations

import pytest

import reactor
from uring.curio_compat import curio


class Recorder(reactor.Actor):
    """Records every message; counts on_start/on_stop calls."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.got: list = []
        self.starts = 0
        self.stops = 0

    async def on_start(self):
        self.starts += 1

    async def on_stop(self):
        self.stops += 1

    def on_message(self, m):
        self.got.append(m)


class AsyncRecorder(Recorder):
    async def on_message(self, m):
        await curio.sleep(0)
        self.got.append(m)


class Failing(Recorder):
    """Fails on messages that are str starting with "bad"."""

    def on_message(self, m):
        if isinstance(m, str) and m.startswith("bad"):
            raise ValueError(f"cannot handle {m}")
        self.got.append(m)


class AsyncFailing(Recorder):
    async def on_message(self, m):
        await curio.sleep(0)
        if isinstance(m, str) and m.startswith("bad"):
            raise ValueError(f"cannot handle {m}")
        self.got.append(m)


# -- delivery ------------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder], ids=["plain", "coroutine"])
def test_messages_are_delivered_in_order(cls):
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(cls(name="rec", capacity=16))
        for i in range(2000):
            await a.send(i)
        await a.stop()
        return a.got, a.stats(), a.starts, a.stops

    got, stats, starts, stops = reactor.run(main)
    assert got == list(range(2000))
    assert (starts, stops) == (1, 1)
    assert stats["messages_in"] == 2000
    assert stats["mailbox_depth"] == 0
    assert stats["running"] is False
    assert stats["handler_time_s"] > 0


def test_send_batch_delivers_in_order_in_few_batches():
    class Batches(reactor.Actor):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.batches_seen: list[list] = []

        async def on_batch(self, batch):
            self.batches_seen.append(list(batch))

    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Batches(name="b", capacity=1000))
        await a.send_batch([1, 2, 3])
        await a.send_batch(iter([4, 5]))         # any iterable
        await a.send_batch([])                   # no-op
        await a.send(6)
        await a.stop()
        return a.batches_seen, a.stats()

    seen, stats = reactor.run(main)
    assert [m for b in seen for m in b] == [1, 2, 3, 4, 5, 6]
    assert stats["messages_in"] == 6
    assert stats["batches"] == len(seen) <= 3     # one await per batch, not per element


def test_send_batch_larger_than_capacity_waits_for_an_empty_mailbox():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Recorder(name="r", capacity=4))
        await a.send(0)
        await a.send_batch(list(range(1, 11)))   # 10 > capacity: admitted once empty
        await a.send_batch(list(range(11, 14)))
        await a.stop()
        return a.got

    assert reactor.run(main) == list(range(14))


def test_try_send_returns_false_when_full():
    async def main():
        r = reactor.current_reactor()
        gate = curio.Event()

        class Gated(Recorder):
            async def on_start(self):
                await gate.wait()

        a = await r.start_actor(Gated(name="g", capacity=3))
        results = [a.try_send(i) for i in range(5)]
        depth = len(a.mailbox)
        await gate.set()
        await a.stop()
        return results, depth, a.got

    results, depth, got = reactor.run(main)
    assert results == [True, True, True, False, False]
    assert depth == 3
    assert got == [0, 1, 2]


def test_try_send_wakes_a_waiting_actor():
    async def main():
        r = reactor.current_reactor()
        done = curio.Event()

        class Signal(reactor.Actor):
            async def on_message(self, m):
                await done.set()

        a = await r.start_actor(Signal(name="s"))
        await curio.sleep(0)                     # let it block on its empty mailbox
        assert a.try_send("x") is True
        async with curio.timeout_after(5):
            await done.wait()
        await a.stop()
        return a.stats()["messages_in"]

    assert reactor.run(main) == 1


@pytest.mark.timeout(60)
def test_backpressure_bounds_mailbox_depth():
    n, capacity = 100_000, 100

    class Slow(reactor.Actor):
        def __init__(self, **kw):
            super().__init__(**kw)
            self.count = 0
            self.last = -1
            self.in_order = True

        def on_message(self, m):
            x = 0
            for i in range(50):                   # slower than the producer's send
                x += i
            if m != self.last + 1:
                self.in_order = False
            self.last = m
            self.count += 1

    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Slow(name="slow", capacity=capacity))
        max_depth = 0
        for i in range(n):
            await a.send(i)
            d = len(a.mailbox)
            if d > max_depth:
                max_depth = d
        await a.stop()
        return max_depth, a.stats(), a.count, a.in_order

    max_depth, stats, count, in_order = reactor.run(main)
    assert count == n and in_order
    assert max_depth <= capacity
    assert stats["mailbox_high_water"] <= capacity
    assert stats["mailbox_capacity"] == capacity
    assert stats["blocked_s"] > 0
    assert stats["messages_in"] == n


def test_messages_out_counts_sends_from_an_actor():
    class Forward(reactor.Actor):
        def __init__(self, target, **kw):
            super().__init__(**kw)
            self.target = target

        async def on_message(self, m):
            await self.target.send(m)
            self.target.try_send(m)

    async def main():
        r = reactor.current_reactor()
        sink = await r.start_actor(Recorder(name="sink", capacity=1000))
        fwd = await r.start_actor(Forward(sink, name="fwd"))
        for i in range(10):
            await fwd.send(i)
        await fwd.stop()
        await sink.stop()
        return fwd.stats(), sink.stats(), sink.got

    fwd, sink, got = reactor.run(main)
    assert fwd["messages_in"] == 10 and fwd["messages_out"] == 20
    assert sink["messages_in"] == 20
    assert sorted(got) == sorted(list(range(10)) * 2)


def test_actor_runs_in_its_queue():
    async def main():
        r = reactor.current_reactor()
        q = r.queue("ops", 50)
        a = await r.start_actor(Recorder(name="inq"), queue=q)
        b = Recorder(name="own", queue=q)
        await b.start()
        await a.send(1)
        await b.send(1)
        stats = (a.stats()["queue"], b.stats()["queue"])
        await a.stop()
        await b.stop()
        return stats, q.runtime

    (qa, qb), runtime = reactor.run(main)
    assert qa == qb == "ops"
    assert runtime > 0


# -- supervision ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls", [Failing, AsyncFailing], ids=["plain", "coroutine"])
def test_escalate_fails_run_with_actor_error(cls):
    bystander = Recorder(name="bystander")

    async def main():
        r = reactor.current_reactor()
        await r.start_actor(bystander)
        a = await r.start_actor(cls(name="worker"))
        await a.send(1)
        await a.send("bad-msg")
        await a.send(2)
        await curio.sleep(30)                    # cancelled by the failure
        return "not reached"

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(main)
    err = info.value
    assert err.actor == "worker"
    assert err.message == "bad-msg"
    assert isinstance(err.__cause__, ValueError)
    assert "cannot handle bad-msg" in str(err.__cause__)
    assert "'worker'" in str(err) and "'bad-msg'" in str(err)
    assert bystander.stops == 1                  # the others were stopped cleanly


def test_escalate_from_on_start_and_on_stop():
    class BadStart(reactor.Actor):
        async def on_start(self):
            raise RuntimeError("no start")

        def on_message(self, m):
            pass

    class BadStop(reactor.Actor):
        async def on_stop(self):
            raise RuntimeError("no stop")

        def on_message(self, m):
            pass

    async def start_main():
        await reactor.current_reactor().start_actor(BadStart(name="bs"))
        await curio.sleep(30)

    async def stop_main():
        a = await reactor.current_reactor().start_actor(BadStop(name="bt"))
        await a.stop()

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(start_main)
    assert info.value.actor == "bs" and info.value.message is None
    assert "start" in str(info.value) and isinstance(info.value.__cause__, RuntimeError)

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(stop_main)
    assert info.value.actor == "bt" and "stop" in str(info.value)
    assert isinstance(info.value.__cause__, RuntimeError)


def test_escalate_while_producer_is_blocked_on_backpressure():
    """A source blocked on a full mailbox of an actor that fails: run still raises ActorError.

    The failing actor closes its mailbox, so the blocked ``send`` raises
    MailboxClosed in ``main``; the reactor must report the root cause (the
    ActorError), not the producer's secondary MailboxClosed.
    """
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Failing(name="fragile", capacity=1))
        await a.send("bad-first")
        for i in range(100):
            await a.send(i)

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(main)
    assert info.value.actor == "fragile"
    assert info.value.message == "bad-first"


def test_blocked_sender_gets_mailbox_closed_when_actor_fails():
    out: list = []

    async def producer(a):
        try:
            for i in range(100):
                await a.send(i)
        except reactor.MailboxClosed as e:
            out.append(e)

    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Failing(name="fragile2", capacity=1))
        await a.send("bad-first")
        p = await r.spawn(producer, a)
        await p.join()

    with pytest.raises(reactor.ActorError):
        reactor.run(main)
    assert len(out) == 1 and "'fragile2'" in str(out[0])


@pytest.mark.parametrize("cls", [Failing, AsyncFailing], ids=["plain", "coroutine"])
def test_restart_calls_on_start_again_and_continues(cls):
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(cls(name="phoenix", policy="restart", max_restarts=3))
        for m in [1, "bad-1", 2, "bad-2", 3]:
            await a.send(m)
        await a.stop()
        return a.got, a.starts, a.stops, a.stats()

    got, starts, stops, stats = reactor.run(main)
    assert got == [1, 2, 3]
    assert starts == 3                           # initial + 2 restarts
    assert stops == 3                            # before each restart + final
    assert stats["restarts"] == 2 and stats["failures"] == 2


def test_restart_escalates_after_max_restarts():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Failing(name="tired", policy="restart", max_restarts=2))
        for m in ["bad-1", 1, "bad-2", 2, "bad-3", 3]:
            await a.send(m)
        await a.join()
        await curio.sleep(30)

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(main)
    assert info.value.actor == "tired"
    assert info.value.message == "bad-3"
    assert isinstance(info.value.__cause__, ValueError)


@pytest.mark.parametrize("cls", [Failing, AsyncFailing], ids=["plain", "coroutine"])
def test_skip_sends_failures_to_dead_letters(cls):
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(cls(name="skipper", policy="skip"))
        for m in [1, "bad-1", 2, "bad-2", 3]:
            await a.send(m)
        await a.stop()
        return a.got, list(r.dead_letters), a.stats(), r.stats()["dead_letters"]

    got, dead, stats, ndead = reactor.run(main)
    assert got == [1, 2, 3]
    assert [d.message for d in dead] == ["bad-1", "bad-2"]
    assert all(d.actor == "skipper" for d in dead)
    assert all(isinstance(d.error, ValueError) for d in dead)
    assert "bad-2" in str(dead[1].error)
    assert stats["failures"] == 2 and ndead == 2


class BatchFailing(reactor.Actor):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.got: list = []
        self.starts = 0

    async def on_start(self):
        self.starts += 1

    async def on_batch(self, batch):
        if any(m == "bad" for m in batch):
            raise KeyError("batch has bad")
        self.got.extend(batch)


def test_on_batch_failure_escalates_with_the_batch():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(BatchFailing(name="batcher"))
        await a.send_batch([1, "bad", 2])
        await curio.sleep(30)

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(main)
    assert info.value.actor == "batcher"
    assert info.value.message == [1, "bad", 2]
    assert isinstance(info.value.__cause__, KeyError)


def test_on_batch_failure_skip_and_restart():
    async def main(policy):
        r = reactor.current_reactor()
        a = await r.start_actor(BatchFailing(name="batcher", policy=policy))
        await a.send_batch([1, 2])
        await curio.sleep(0)
        await a.send_batch(["bad", 3])
        await curio.sleep(0)
        await a.send_batch([4])
        await a.stop()
        return a.got, a.starts, [(d.actor, d.message) for d in r.dead_letters]

    got, starts, dead = reactor.run(main, "skip")
    assert got == [1, 2, 4] and starts == 1
    assert dead == [("batcher", ["bad", 3])]
    got, starts, dead = reactor.run(main, "restart")
    assert got == [1, 2, 4] and starts == 2 and dead == []


# -- lifecycle ------------------------------------------------------------------------------

def test_children_are_stopped_with_their_parent():
    class Parent(Recorder):
        async def on_start(self):
            await super().on_start()
            self.kid = await self.spawn_child(Recorder(name="kid"))

        async def on_stop(self):
            self.kid_running_at_stop = self.kid.running
            await super().on_stop()

    async def main():
        r = reactor.current_reactor()
        p = await r.start_actor(Parent(name="parent"))
        await p.send("hello")
        await curio.sleep(0)
        kid = p.kid
        await kid.send("to kid")
        assert kid.running
        await p.stop()
        return kid.running, kid.stops, kid.got, p.kid_running_at_stop

    running, stops, got, at_stop = reactor.run(main)
    assert running is False and stops == 1 and got == ["to kid"]
    assert at_stop is False                      # children stop before the parent's on_stop


def test_children_are_stopped_when_parent_fails():
    kid = Recorder(name="kid2")

    class Parent(Failing):
        async def on_start(self):
            await self.spawn_child(kid)

    async def main():
        r = reactor.current_reactor()
        p = await r.start_actor(Parent(name="parent2"))
        await curio.sleep(0)
        await p.send("bad")
        await curio.sleep(30)

    with pytest.raises(reactor.ActorError):
        reactor.run(main)
    assert not kid.running and kid.stops == 1


def test_sending_to_a_stopped_actor_raises_mailbox_closed():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Recorder(name="gone"))
        await a.send(1)
        await a.stop()
        errors = []
        for send in (lambda: a.send(2), lambda: a.send_batch([3, 4])):
            try:
                await send()
            except reactor.MailboxClosed as e:
                errors.append(str(e))
        try:
            a.try_send(5)
        except reactor.MailboxClosed as e:
            errors.append(str(e))
        return errors, a.got

    errors, got = reactor.run(main)
    assert got == [1]
    assert len(errors) == 3
    assert all("'gone'" in e for e in errors)
    assert issubclass(reactor.MailboxClosed, reactor.ReactorError)


def test_stop_drains_pending_messages():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(AsyncRecorder(name="drain", capacity=100))
        for i in range(50):
            await a.send(i)
        await a.stop()
        await a.stop()                            # idempotent
        await a.join()
        return a.got, a.stops

    got, stops = reactor.run(main)
    assert got == list(range(50)) and stops == 1


def test_duplicate_running_actor_names_are_rejected():
    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Recorder(name="dup"))
        with pytest.raises(reactor.ReactorError, match="dup"):
            await r.start_actor(Recorder(name="dup"))
        with pytest.raises(reactor.ReactorError, match="already started"):
            await r.start_actor(a)
        await a.stop()
        b = await r.start_actor(Recorder(name="dup"))  # the name is free once it stopped
        await b.send(1)
        await b.stop()
        return b.got

    assert reactor.run(main) == [1]


def test_actor_constructor_validation():
    with pytest.raises(ValueError, match="policy"):
        Recorder(policy="ignore")
    with pytest.raises(ValueError, match="capacity"):
        Recorder(capacity=0)
    with pytest.raises(TypeError):
        Recorder(name="")
    a, b = Recorder(), Recorder()
    assert a.name != b.name

    async def main():
        with pytest.raises(TypeError):
            await reactor.current_reactor().start_actor(object())

    reactor.run(main)


def test_actor_without_handler_fails_with_actor_error():
    async def main():
        a = await reactor.current_reactor().start_actor(reactor.Actor(name="blank"))
        await a.send(1)
        await curio.sleep(30)

    with pytest.raises(reactor.ActorError) as info:
        reactor.run(main)
    assert isinstance(info.value.__cause__, NotImplementedError)


def test_actors_left_running_are_stopped_when_main_returns():
    actors = [Recorder(name=f"left-{i}") for i in range(3)]

    async def main():
        r = reactor.current_reactor()
        for a in actors:
            await r.start_actor(a)
            await a.send("x")
        return "done"

    assert reactor.run(main) == "done"
    assert all(a.stops == 1 and a.got == ["x"] and not a.running for a in actors)


def test_actor_can_stop_itself_from_a_handler():
    """``await self.stop()`` inside on_message closes the mailbox and the actor ends.

    Waiting for its own task to finish from inside that task can never
    complete, so stop() must not deadlock when called by the actor itself.
    """
    class Quitter(Recorder):
        async def on_message(self, m):
            self.got.append(m)
            if m == "quit":
                await self.stop()

    async def main():
        r = reactor.current_reactor()
        a = await r.start_actor(Quitter(name="quitter"))
        await a.send(1)
        await a.send("quit")
        try:
            async with curio.timeout_after(2):
                await a.join()
        except curio.TaskTimeout:
            await a.task.cancel()               # don't make the reactor's shutdown wait 10 s
            return "deadlocked"
        return a.got, a.stops, a.running

    result = reactor.run(main)
    assert result != "deadlocked", "actor.stop() called from its own handler never returns"
    got, stops, running = result
    assert got == [1, "quit"] and stops == 1 and running is False
