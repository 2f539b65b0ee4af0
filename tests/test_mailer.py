"""
L{Mailer} against a scripted in-memory server on a fake clock: reuse and
retirement of connections, retries of only what was deferred, flow control,
cancellation in each phase, stopping, and what it reports.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from random import Random
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import implementer

from mailclient import Attempt, Mailer, SendResult
from mailclient.errors import (
    AllRecipientsRefusedError,
    ConnectionLostError,
    InvalidArgumentError,
    MailerStoppedError,
    QueueFullError,
    SendCancelledError,
    SMTPConnectError,
    TLSRequiredError,
)
from mailclient.testing import MemoryEndpoint, ScriptedServer, runFor, settle
from tests.helpers import FakeTLSOptions, Outcome

SENDER = "app@example.com"


def message(number: int = 1, size: int = 0) -> bytes:
    """
    A small message (or one of at least C{size} octets) that names its
    number.
    """
    body = b"message %d\r\n.leading dot\r\n" % number
    if size:
        body += (b"x" * 76 + b"\r\n") * (size // 78 + 1)
    return (
        b"Subject: test %d\r\nMessage-ID: <m%d@example.com>\r\n\r\n" % (number, number)
        + body
    )


class World:
    """
    A clock, a scripted server, and mailers connected to it.
    """

    def __init__(self, **serverOptions: Any) -> None:
        self.clock = Clock()
        self.server = ScriptedServer(self.clock, **serverOptions)
        self.endpoint = MemoryEndpoint(self.clock, self.server)

    def mailer(self, **options: Any) -> Mailer:
        """
        A mailer for the server, without TLS, jitter seeded.
        """
        options.setdefault("tls", "none")
        options.setdefault("heloName", "client.example")
        options.setdefault("random", Random(4))
        return Mailer(None, endpoint=self.endpoint, reactor=self.clock, **options)

    def settle(self) -> None:
        """
        Let everything due now happen.
        """
        settle(self.clock)

    def run(self, seconds: float) -> None:
        """
        Move the clock forward, running everything on the way.
        """
        runFor(self.clock, seconds)

    def delivered(self) -> list[tuple[int, tuple[str, ...]]]:
        """
        What the server delivered: (connection, recipients) per message.
        """
        return [(d.connection, d.recipients) for d in self.server.deliveries]


def send(
    mailer: Mailer, to: str | list[str] = "ok@example.net", n: int = 1
) -> Outcome[SendResult]:
    """
    Send message C{n} to C{to}, capturing the outcome.
    """
    return Outcome(mailer.send(SENDER, to, message(n)))


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    """
    The mailer's log events during the test.
    """
    seen: list[LogEvent] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "mailclient.mailer":
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


class TestSending:
    def test_sameResultAsSendmail(self) -> None:
        """
        C{send} fires with a L{SendResult} for every recipient, the final
        reply, one attempt in its history, and the session's info.
        """
        world = World()
        mailer = world.mailer()
        outcome = send(mailer, ["a@example.net", "b@example.net"])
        world.settle()
        result = outcome.value()
        assert result.accepted == ("a@example.net", "b@example.net")
        assert result.reply is not None and result.reply.code == 250
        assert result.attempts == 1
        assert len(result.history) == 1 and isinstance(result.history[0], Attempt)
        assert result.history[0].connection == 1
        assert result.session is not None
        assert world.server.deliveries[0].data.endswith(b"..leading dot\r\n"[1:])

    def test_manyMessagesFewConnections(self) -> None:
        """
        Fifty messages given at once go over at most C{maxConnections}
        connections, each delivered once.
        """
        world = World()
        mailer = world.mailer(maxConnections=3)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(50)]
        world.settle()
        assert all(o.value().accepted for o in outcomes)
        assert len(world.server.connections) == 3
        assert sorted(r for _, (r,) in world.delivered()) == sorted(
            f"r{n}@example.net" for n in range(50)
        )
        assert mailer.stats.connectionsOpen == 3

    def test_pipelinedBehindTheMessageInFlight(self) -> None:
        """
        With one connection, the next message's envelope is written behind
        the end of the previous message's data (pipelining), and no RSET is
        sent between clean transactions.
        """
        world = World()
        mailer = world.mailer(maxConnections=1)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(3)]
        world.settle()
        assert all(o.value().accepted for o in outcomes)
        commands = world.server.connections[0].verbs()
        assert "RSET" not in commands
        assert commands.count("MAIL") == 3
        assert all("PIPELINING" in o.value().extensions for o in outcomes)

    def test_badInputFailsTheDeferred(self) -> None:
        """
        An invalid address fails the Deferred (nothing raised, nothing
        queued, no connection opened).
        """
        world = World()
        mailer = world.mailer()
        outcome = Outcome(mailer.send(SENDER, "bad\r\naddress@x", message()))
        outcome.error(InvalidArgumentError)
        world.settle()
        assert world.server.connections == []
        assert mailer.stats.queueDepth == 0

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("maxConnections", 0),
            ("maxQueued", -1),
            ("retries", -1),
            ("idleTimeout", -1),
            ("maxMessagesPerSecond", 0),
        ],
    )
    def test_badSettingsRaise(self, option: str, value: object) -> None:
        """
        A bad limit is refused when the mailer is made.
        """
        with pytest.raises(InvalidArgumentError):
            World().mailer(**{option: value})


class TestConnections:
    def test_idleCloseThenReuse(self) -> None:
        """
        A connection idle for C{idleTimeout} is closed with QUIT; the next
        message opens a new one.
        """
        world = World()
        mailer = world.mailer(idleTimeout=10.0)
        send(mailer, n=1)
        world.settle()
        world.run(9.0)
        assert world.server.connections[0].isOpen
        world.run(2.0)
        assert world.server.connections[0].closedBy == "client-quit"
        assert mailer.stats.connectionsOpen == 0
        second = send(mailer, n=2)
        world.settle()
        assert second.value().accepted
        assert [c for c, _ in world.delivered()] == [1, 2]

    def test_serverIdleCloseSeen(self) -> None:
        """
        A server that closes an idle connection (421) retires it without
        harm; the next message goes on a new connection, first attempt.
        """
        world = World(idleTimeout=5.0)
        mailer = world.mailer(idleTimeout=60.0)
        send(mailer, n=1)
        world.settle()
        world.run(6.0)
        assert world.server.connections[0].closedBy == "server"
        assert mailer.stats.connectionsOpen == 0
        second = send(mailer, n=2)
        world.settle()
        assert second.value().attempts == 1
        assert [c for c, _ in world.delivered()] == [1, 2]

    def test_halfOpenConnectionProbed(self) -> None:
        """
        A connection idle longer than C{probeAfter} is checked with NOOP
        first; when the server no longer answers (half-open), it is dropped
        and the message goes on a new connection without being charged an
        attempt.
        """
        world = World(idleTimeout=3.0, idleBlackhole=True)
        mailer = world.mailer(probeAfter=2.0, idleTimeout=60.0, timeout=5.0)
        send(mailer, n=1)
        world.settle()
        world.run(10.0)
        second = send(mailer, n=2)
        world.settle()
        assert not second.called
        assert len(world.server.connections) == 1  # probing, not yet replaced
        world.run(6.0)
        result = second.value()
        assert result.attempts == 1 and result.history[0].connection == 2
        assert [c for c, _ in world.delivered()] == [1, 2]

    def test_probeAnsweredKeepsConnection(self) -> None:
        """
        A probe answered with 250 keeps the connection, which then carries
        the message.
        """
        world = World()
        mailer = world.mailer(probeAfter=2.0, idleTimeout=60.0)
        send(mailer, n=1)
        world.settle()
        world.run(5.0)
        second = send(mailer, n=2)
        world.settle()
        assert second.value().history[0].connection == 1
        assert "NOOP" in world.server.connections[0].verbs()
        assert len(world.server.connections) == 1

    def test_421MidSessionRetiresOnlyThatConnection(self) -> None:
        """
        A 421 to the third MAIL on connection 1 closes only connection 1:
        that message is retried on another connection, the others are
        delivered once each, and nothing is lost.
        """
        world = World()
        world.server.rule(
            "MAIL", connection=1, transaction=3, reply=b"421 4.3.2 going down"
        )
        mailer = world.mailer(maxConnections=2, retryBaseDelay=1.0)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(8)]
        world.settle()
        world.run(5.0)
        results = [o.value() for o in outcomes]
        assert all(r.accepted for r in results)
        assert sorted(r.attempts for r in results) == [1] * 7 + [2]
        retried = next(r for r in results if r.attempts == 2)
        assert retried.history[0].error is not None
        assert "421" in retried.history[0].error
        assert world.server.connections[0].closedBy == "server"
        assert world.server.connections[1].isOpen
        recipients = sorted(r for _, (r,) in world.delivered())
        assert recipients == sorted(f"r{n}@example.net" for n in range(8))

    def test_maxConnectionAge(self) -> None:
        """
        A connection older than C{maxConnectionAge} takes no new message: it
        is closed with QUIT and a new one carries the next.
        """
        world = World()
        mailer = world.mailer(maxConnectionAge=10.0, idleTimeout=60.0)
        send(mailer, n=1)
        world.settle()
        world.run(11.0)
        second = send(mailer, n=2)
        world.settle()
        assert second.value().history[0].connection == 2
        assert world.server.connections[0].closedBy == "client-quit"

    def test_maxMessagesPerConnection(self) -> None:
        """
        With C{maxMessagesPerConnection=3}, seven messages over one
        connection at a time use three connections (3, 3, 1), each closed
        with QUIT when spent.
        """
        world = World()
        mailer = world.mailer(maxConnections=1, maxMessagesPerConnection=3)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(7)]
        world.settle()
        assert all(o.value().accepted for o in outcomes)
        assert world.server.messagesPerConnection() == [3, 3, 1]
        assert [c.closedBy for c in world.server.connections[:2]] == [
            "client-quit",
            "client-quit",
        ]

    def test_connectFailureRetried(self) -> None:
        """
        When no connection can be made, waiting messages are charged an
        attempt and retried after the backoff; the result's history shows
        the connection failure.
        """
        world = World()
        world.server.rule("CONNECT", refuse=True, times=1)
        mailer = world.mailer(retryBaseDelay=2.0)
        outcome = send(mailer)
        world.settle()
        assert not outcome.called
        world.run(5.0)
        result = outcome.value()
        assert result.attempts == 2
        first = result.history[0]
        assert first.connection is None
        assert first.error is not None and "SMTPConnectError" in first.error
        assert result.history[1].started >= 1.0

    def test_connectFailuresExhaustRetries(self) -> None:
        """
        A destination that never accepts a connection fails the message with
        L{SMTPConnectError} after C{retries} more attempts.
        """
        world = World()
        world.server.rule("CONNECT", refuse=True)
        mailer = world.mailer(retries=2, retryBaseDelay=1.0)
        outcome = send(mailer)
        world.run(60.0)
        error = outcome.error(SMTPConnectError)
        assert error.result is not None
        assert error.result.attempts == 3
        assert error.result.recipients["ok@example.net"].status == "not-attempted"

    def test_hangingConnectTimesOut(self) -> None:
        """
        A connection attempt that never completes is given up after the
        timeout and counts as a failed attempt.
        """
        world = World()
        world.server.rule("CONNECT", hang=True, times=1)
        mailer = world.mailer(timeout=5.0, retryBaseDelay=1.0)
        outcome = send(mailer)
        world.run(5.5)
        assert not outcome.called
        world.run(5.0)
        result = outcome.value()
        assert result.history[0].error is not None
        assert "no connection within 5s" in result.history[0].error

    def test_permanentSessionFailureFailsAtOnce(self) -> None:
        """
        A session that can never be used (TLS required, not offered) fails
        every waiting message at once, without retries.
        """
        world = World()
        mailer = world.mailer(tls="starttls", tlsOptions=FakeTLSOptions())
        outcomes = [send(mailer, n=n) for n in range(3)]
        world.settle()
        for o in outcomes:
            assert o.error(TLSRequiredError).result is not None
        assert world.server.deliveries == []
        assert all("MAIL" not in c.verbs() for c in world.server.connections)


class TestRetries:
    def test_onlyTheDeferredRecipientIsRetried(self) -> None:
        """
        One recipient deferred (450) and one accepted: only the deferred one
        is sent again, after the backoff, in a transaction of its own; the
        accepted one gets the message once.
        """
        world = World()
        world.server.rule("RCPT", match="later@", reply=b"450 4.2.0 later", times=1)
        mailer = world.mailer(retryBaseDelay=2.0)
        outcome = send(mailer, ["ok@example.net", "later@example.net"])
        world.settle()
        assert not outcome.called
        assert world.delivered() == [(1, ("ok@example.net",))]
        world.run(0.99)
        assert len(world.server.deliveries) == 1
        world.run(2.1)
        result = outcome.value()
        assert result.accepted == ("ok@example.net", "later@example.net")
        assert [a.recipients for a in result.history] == [
            ("ok@example.net", "later@example.net"),
            ("later@example.net",),
        ]
        assert result.history[0].outcome["later@example.net"].code == 450
        assert world.delivered() == [
            (1, ("ok@example.net",)),
            (1, ("later@example.net",)),
        ]
        assert mailer.stats.retries == 1

    def test_backoffGrowsAndIsBounded(self) -> None:
        """
        Delays double from C{retryBaseDelay} (with jitter within +/-50%) up
        to C{retryMaxDelay}, and C{retries} bounds the attempts: the
        recipient is then "deferred" and the send fails with every attempt
        in its result.
        """
        world = World()
        world.server.rule("RCPT", reply=b"451 4.3.0 not now")
        mailer = world.mailer(retries=4, retryBaseDelay=1.0, retryMaxDelay=3.0)
        outcome = send(mailer)
        world.run(100.0)
        error = outcome.error(AllRecipientsRefusedError)
        assert error.result is not None
        history = error.result.history
        assert len(history) == 5
        gaps = [b.started - a.started for a, b in itertools.pairwise(history)]
        for gap, base in zip(gaps, [1.0, 2.0, 3.0, 3.0], strict=True):
            assert 0.5 * base <= gap <= 1.5 * base + 0.01
        assert error.result.recipients["ok@example.net"].status == "deferred"

    def test_retryWindowBoundsTime(self) -> None:
        """
        No attempt starts later than C{retryWindow} after the send was
        queued, whatever C{retries} says.
        """
        world = World()
        world.server.rule("RCPT", reply=b"451 4.3.0 not now")
        mailer = world.mailer(
            retries=100, retryBaseDelay=4.0, retryMaxDelay=4.0, retryWindow=20.0
        )
        outcome = send(mailer)
        world.run(200.0)
        error = outcome.error(AllRecipientsRefusedError)
        assert error.result is not None
        assert all(a.started <= 20.0 for a in error.result.history)
        assert 3 <= len(error.result.history) <= 8

    def test_rejectedNeverRetried(self) -> None:
        """
        A permanent refusal (550) is final: one attempt.
        """
        world = World()
        world.server.rule("RCPT", reply=b"550 5.1.1 no such user")
        mailer = world.mailer()
        outcome = send(mailer)
        world.run(60.0)
        error = outcome.error(AllRecipientsRefusedError)
        assert error.result is not None and error.result.attempts == 1

    def test_dropDuringDataRetried(self) -> None:
        """
        A connection dropped in the middle of the data (before the end of
        it) delivered nothing: the message is retried on a new connection
        and delivered once.
        """
        world = World()
        world.server.rule("DATA", dropAfter=2000, times=1)
        mailer = world.mailer(retryBaseDelay=1.0)
        outcome = Outcome(mailer.send(SENDER, "ok@example.net", message(1, 400000)))
        world.settle()
        world.run(3.0)
        result = outcome.value()
        assert result.attempts == 2
        assert result.history[0].outcome["ok@example.net"].status == "deferred"
        assert [c for c, _ in world.delivered()] == [2]

    def test_neverResentAfterTheFinalDot(self) -> None:
        """
        A drop after the end of the data, before its reply, leaves the
        recipient "unknown": it is not resent (the server may have
        delivered it).
        """
        world = World()
        world.server.rule("END-OF-DATA", drop=True, times=1)
        mailer = world.mailer(retryBaseDelay=1.0)
        outcome = send(mailer)
        world.run(30.0)
        result = outcome.error(ConnectionLostError).result
        assert result is not None
        assert result.recipients["ok@example.net"].status == "unknown"
        assert result.attempts == 1
        assert world.server.connectAttempts == 1

    def test_resendAfterDataWhenAllowed(self) -> None:
        """
        With C{resendAfterData=True} an "unknown" recipient is sent again.
        """
        world = World()
        world.server.rule("END-OF-DATA", drop=True, times=1)
        mailer = world.mailer(retryBaseDelay=1.0, resendAfterData=True)
        outcome = send(mailer)
        world.run(30.0)
        result = outcome.value()
        assert result.attempts == 2
        assert result.history[0].outcome["ok@example.net"].status == "unknown"
        assert len(world.server.deliveries) == 1


class TestFlowControl:
    def test_queueFull(self) -> None:
        """
        Beyond C{maxQueued} waiting sends, C{send} fails at once with
        L{QueueFullError}; nothing of it is sent.
        """
        world = World()
        mailer = world.mailer(maxQueued=2)
        first, second = send(mailer, n=1), send(mailer, n=2)
        third = send(mailer, n=3)
        assert third.error(QueueFullError).limit == 2
        world.settle()
        assert first.value().accepted and second.value().accepted
        assert len(world.server.deliveries) == 2

    def test_messagesPerSecond(self) -> None:
        """
        C{maxMessagesPerSecond=2} spaces six messages over about two and a
        half seconds on the clock.
        """
        world = World()
        mailer = world.mailer(maxMessagesPerSecond=2)
        outcomes = [send(mailer, n=n) for n in range(6)]
        world.settle()
        assert sum(o.called for o in outcomes) == 2
        world.run(1.0)
        assert sum(o.called for o in outcomes) == 4
        world.run(1.0)
        assert all(o.called for o in outcomes)

    def test_throttlingSlowsThenRecovers(self, events: list[LogEvent]) -> None:
        """
        A 454 "slow down" reply halves the connections (4 -> 2) and the pace;
        the deferred recipient is retried; after C{throttleRecovery} seconds
        without another, the mailer is back to full speed.
        """
        world = World()
        world.server.rule(
            "MAIL", reply=b"454 4.7.0 too many messages, slow down", times=1
        )
        mailer = world.mailer(
            maxConnections=4, throttleRecovery=30.0, retryBaseDelay=1.0
        )
        first = send(mailer, n=0)
        world.settle()
        assert mailer.stats.throttleLevel == 1
        assert mailer.stats.throttled == 1
        assert any("slow down" in str(e.get("log_format")) for e in events)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(1, 12)]
        world.run(3.0)
        assert first.value().attempts == 2
        assert all(o.value().accepted for o in outcomes)
        assert len(world.server.connections) <= 2
        world.run(31.0)
        assert mailer.stats.throttleLevel == 0
        more = [send(mailer, f"s{n}@example.net", n) for n in range(12)]
        world.settle()
        assert all(o.value().accepted for o in more)
        assert mailer.stats.connectionsOpen == 4

    def test_421ThrottleAtGreeting(self) -> None:
        """
        A 421 "too many connections" greeting is throttling too: the mailer
        opens fewer connections and the messages still go.
        """
        world = World()
        world.server.rule(
            "GREETING",
            connection=3,
            reply=b"421 4.7.0 too many connections from your IP",
        )
        mailer = world.mailer(maxConnections=4, retryBaseDelay=1.0)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(20)]
        world.run(10.0)
        assert all(o.value().accepted for o in outcomes)
        assert mailer.stats.throttled >= 1


class TestCancel:
    def test_cancelWaiting(self) -> None:
        """
        Cancelling a send still waiting for a connection drops it: nothing
        of it is sent; the others go.
        """
        world = World()
        mailer = world.mailer(maxConnections=1)
        first = send(mailer, n=1)
        d = mailer.send(SENDER, "gone@example.net", message(2))
        cancelled = Outcome(d)
        d.cancel()
        error = cancelled.error(SendCancelledError)
        assert error.phase == "queued"
        world.settle()
        assert first.value().accepted
        assert all("gone" not in c for c in world.server.connections[0].commands)

    def test_cancelWaitingForRetry(self) -> None:
        """
        Cancelling a send that waits for its retry stops the retry; what
        the first attempt learnt stays in the result.
        """
        world = World()
        world.server.rule("RCPT", match="later@", reply=b"450 4.2.0 later")
        mailer = world.mailer(retryBaseDelay=5.0)
        d = mailer.send(SENDER, ["ok@example.net", "later@example.net"], message())
        outcome = Outcome(d)
        world.settle()
        d.cancel()
        result = outcome.error(SendCancelledError).result
        assert result is not None
        assert result.recipients["ok@example.net"].status == "accepted"
        assert result.recipients["later@example.net"].status == "deferred"
        world.run(30.0)
        assert world.server.connections[0].verbs().count("MAIL") == 1

    def test_cancelBeforeDataKeepsConnection(self) -> None:
        """
        Cancelled while the server has not answered its RCPT: the
        transaction is reset and the same connection carries the next
        message.
        """
        world = World(capabilities=(b"ENHANCEDSTATUSCODES",))
        world.server.rule("RCPT", stall=True, times=1)
        mailer = world.mailer(maxConnections=1)
        d = mailer.send(SENDER, "slow@example.net", message(1))
        cancelled = Outcome(d)
        world.settle()
        assert world.server.stalled == [1]
        d.cancel()
        result = cancelled.error(SendCancelledError).result
        assert result is not None
        assert result.recipients["slow@example.net"].status == "not-attempted"
        world.server.release()
        after = send(mailer, n=2)
        world.settle()
        assert after.value().history[0].connection == 1
        verbs = world.server.connections[0].verbs()
        assert verbs[-4:] == ["RSET", "MAIL", "RCPT", "DATA"]
        assert [c for c, _ in world.delivered()] == [1]

    def test_cancelDuringDataDropsConnection(self) -> None:
        """
        Cancelled in the middle of its data: the connection is dropped
        without the end of the data (nothing delivered, "not-attempted"),
        and the next message goes on a new connection.
        """
        world = World()
        world.server.rule("DATA", stallAfter=1000, times=1)
        mailer = world.mailer(maxConnections=1)
        d = mailer.send(SENDER, "big@example.net", message(1, 400000))
        cancelled = Outcome(d)
        world.settle()
        d.cancel()
        result = cancelled.error(SendCancelledError).result
        assert result is not None
        assert result.recipients["big@example.net"].status == "not-attempted"
        world.settle()
        assert world.server.connections[0].closedBy == "client-abort"
        assert world.server.deliveries == []
        after = send(mailer, n=2)
        world.settle()
        assert after.value().history[0].connection == 2

    def test_cancelAfterFinalDotIsUnknown(self) -> None:
        """
        Cancelled after its end of data left, before the reply: the
        connection is dropped and the recipient is "unknown".
        """
        world = World()
        world.server.rule("END-OF-DATA", stall=True, times=1)
        mailer = world.mailer()
        d = mailer.send(SENDER, "ok@example.net", message(1))
        cancelled = Outcome(d)
        world.settle()
        d.cancel()
        result = cancelled.error(SendCancelledError).result
        assert result is not None
        assert result.recipients["ok@example.net"].status == "unknown"
        assert result.attempts == 1

    def test_cancelAffectsOnlyThatSend(self) -> None:
        """
        Of two messages on one connection, cancelling the second during its
        data leaves the first (already answered) accepted, once.
        """
        world = World()
        world.server.rule("DATA", transaction=2, stallAfter=500, times=1)
        mailer = world.mailer(maxConnections=1, retryBaseDelay=1.0)
        first = send(mailer, n=1)
        d = mailer.send(SENDER, "b@example.net", message(2, 100000))
        second = Outcome(d)
        world.settle()
        assert first.value().accepted
        d.cancel()
        second.error(SendCancelledError)
        world.run(5.0)
        assert world.delivered() == [(1, ("ok@example.net",))]


class TestStop:
    def test_stopDrainsThenQuits(self) -> None:
        """
        Stopping with messages in flight and waiting lets them all finish,
        then closes every connection with QUIT; new sends are refused.
        """
        world = World()
        mailer = world.mailer(maxConnections=2)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(10)]
        stopped = Outcome(mailer.stopService())
        assert send(mailer, n=99).error(MailerStoppedError)
        world.settle()
        assert all(o.value().accepted for o in outcomes)
        stopped.value()
        assert {c.closedBy for c in world.server.connections} == {"client-quit"}
        assert mailer.stats.connectionsOpen == 0

    def test_stopDeadlineCancelsWhatIsLeft(self) -> None:
        """
        A message stuck past C{stopTimeout} is given up (its recipient
        "unknown" once its data left), the message behind it on the same
        connection fails with L{MailerStoppedError} (not retried), and the
        stop completes.
        """
        world = World()
        world.server.rule("END-OF-DATA", match=b"message 1\r", stall=True)
        world.server.rule("RCPT", match="later@", reply=b"450 4.2.0 later")
        mailer = world.mailer(stopTimeout=5.0, retryBaseDelay=60.0)
        stuck = send(mailer, n=1)
        waiting = send(mailer, "later@example.net", n=2)
        world.settle()
        stopped = Outcome(mailer.stopService())
        world.run(4.0)
        assert not stopped.called
        world.run(2.0)
        stopped.value()
        result = stuck.error(SendCancelledError).result
        assert result is not None
        assert result.recipients["ok@example.net"].status == "unknown"
        # Its envelope was pipelined behind the stuck message's data, and
        # never answered: nothing is known of it, and it is not retried.
        waitingError = waiting.error(MailerStoppedError)
        assert waitingError.result is not None
        later = waitingError.result.recipients["later@example.net"]
        assert later.status == "not-attempted"
        assert mailer.stats.connectionsOpen == 0

    def test_restartAfterStop(self) -> None:
        """
        A stopped mailer can be started again.
        """
        world = World()
        mailer = world.mailer()
        Outcome(mailer.stopService()).value()
        mailer.startService()
        outcome = send(mailer)
        world.settle()
        assert outcome.value().accepted


class TestObservability:
    def test_stats(self) -> None:
        """
        The counters add up: recipients by final status, messages, retries,
        connections, queue depth.
        """
        world = World()
        world.server.rule("RCPT", match="no@", reply=b"550 5.1.1 no")
        world.server.rule("RCPT", match="later@", reply=b"450 4.2.0 later", times=1)
        mailer = world.mailer(maxConnections=1, retryBaseDelay=1.0)
        outcomes = [
            send(mailer, ["a@example.net", "no@example.net"], 1),
            send(mailer, "later@example.net", 2),
            send(mailer, "no@example.net", 3),
        ]
        assert mailer.stats.queueDepth == 3
        world.settle()
        world.run(3.0)
        for o in outcomes:
            assert o.called
        stats = mailer.stats
        assert (stats.sent, stats.rejected, stats.deferred) == (2, 2, 0)
        assert (stats.messagesSent, stats.messagesFailed) == (2, 1)
        assert stats.retries == 1
        assert stats.connectionsOpened == 1 and stats.connectionsOpen == 1
        assert stats.queueDepth == 0 and stats.inFlight == 0

    def test_logEvents(self, events: list[LogEvent]) -> None:
        """
        A connection logs when it opens, is ready and closes; each attempt
        of a message logs its destination, message id, recipients,
        statuses, codes, queue id and timings.
        """
        world = World()
        mailer = world.mailer(idleTimeout=1.0)
        send(mailer, ["a@example.net", "b@example.net"])
        world.settle()
        world.run(2.0)
        formats = [str(e["log_format"]) for e in events]
        assert any("opening" in f for f in formats)
        assert any("ready" in f for f in formats)
        assert any("closed after" in f for f in formats)
        message = next(e for e in events if "messageId" in e)
        assert message["messageId"] == "<m1@example.com>"
        assert message["destination"] == repr(world.endpoint)
        assert message["attempt"] == 1 and message["connection"] == 1
        assert message["recipients"] == ("a@example.net", "b@example.net")
        assert message["statuses"] == ("accepted", "accepted")
        assert message["codes"] == (250, 250)
        assert message["replyCode"] == 250
        assert message["accepted"] == 2 and message["count"] == 2
        assert message["duration"] >= 0 and message["error"] is None
        ready = next(e for e in events if "tlsVersion" in e and "server" in e)
        assert ready["server"] == "mx.test"


class TestMore:
    def test_connectFailureWithAnotherConnectionReady(self) -> None:
        """
        A connection that fails while another is ready costs the waiting
        messages nothing: they go over the ready one, first attempt.
        """
        world = World()
        world.server.rule("CONNECT", refuse=True, times=1)
        mailer = world.mailer(maxConnections=2)
        first = send(mailer, n=0)
        world.run(5.0)
        assert first.value().attempts == 2  # the only connection failed
        world.server.rule("CONNECT", refuse=True, times=1)
        outcomes = [send(mailer, f"r{n}@example.net", n) for n in range(5)]
        world.run(5.0)
        assert [o.value().attempts for o in outcomes] == [1] * 5

    def test_retryDueAfterTheStopDeadlineFailsAtOnce(self) -> None:
        """
        At stop, a message whose retry is due after the deadline fails at
        once with L{MailerStoppedError}; one that had a recipient accepted
        fires with its result (the deferred one stays "deferred").
        """
        world = World()
        world.server.rule("RCPT", match="later@", reply=b"450 4.2.0 later")
        mailer = world.mailer(retryBaseDelay=60.0, stopTimeout=5.0)
        only = send(mailer, "later@example.net", n=1)
        mixed = send(mailer, ["ok@example.net", "later@example.net"], n=2)
        world.settle()
        stopped = Outcome(mailer.stopService())
        error = only.error(MailerStoppedError)
        assert error.result is not None
        assert error.result.recipients["later@example.net"].status == "deferred"
        result = mixed.value()
        assert result.recipients["later@example.net"].status == "deferred"
        assert result.accepted == ("ok@example.net",)
        world.settle()
        stopped.value()

    def test_stopWhileConnecting(self) -> None:
        """
        Stopping while the only connection attempt hangs: at the deadline
        the attempt is cancelled, the waiting message fails with
        L{MailerStoppedError}, and the stop completes.
        """
        world = World()
        world.server.rule("CONNECT", hang=True)
        mailer = world.mailer(stopTimeout=2.0, timeout=60.0)
        waiting = send(mailer)
        stopped = Outcome(mailer.stopService())
        world.run(1.0)
        assert not stopped.called
        world.run(1.5)
        waiting.error(MailerStoppedError)
        stopped.value()
        assert mailer.stats.connectionsOpen == 0

    def test_stopWhenNeverStarted(self) -> None:
        """
        Stopping a mailer that never sent anything completes at once.
        """
        Outcome(World().mailer().stopService()).value()

    def test_messageIdOfAnEmailMessage(self, events: list[LogEvent]) -> None:
        """
        The log event of an C{EmailMessage} carries its Message-ID.
        """
        from email.message import EmailMessage

        world = World()
        mailer = world.mailer()
        email = EmailMessage()
        email["Message-ID"] = "<abc@example.com>"
        email.set_content("hi\n")
        outcome = Outcome(mailer.send(SENDER, "ok@example.net", email))
        world.settle()
        assert outcome.value().accepted
        assert [e["messageId"] for e in events if "messageId" in e] == [
            "<abc@example.com>"
        ]

    def test_probeRefusedRetiresConnection(self) -> None:
        """
        A probe refused (NOOP answered 421) retires the connection; the
        message goes on a new one, not charged an attempt.
        """
        world = World()
        world.server.rule("NOOP", reply=b"421 4.4.2 bye")
        mailer = world.mailer(probeAfter=2.0, idleTimeout=60.0)
        send(mailer, n=1)
        world.settle()
        world.run(5.0)
        second = send(mailer, n=2)
        world.settle()
        result = second.value()
        assert result.attempts == 1 and result.history[0].connection == 2


def test_resultFieldsKnownToTheMailer() -> None:
    """
    The Mailer builds a one-attempt result field by field (for speed): a
    new L{SendResult} field must be added there too.
    """
    import attrs

    assert list(attrs.fields_dict(SendResult)) == [
        "sender",
        "recipients",
        "reply",
        "session",
        "transcript",
        "timings",
        "attempts",
        "extensions",
        "history",
    ]
