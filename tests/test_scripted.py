"""
Tests for L{mailclient.testing}: the in-memory transports and endpoint, the
scripted SMTP server on its own (with a raw client), and the server with the
real L{ESMTPClient}.  Everything runs on a fake clock.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    NoProtocol,
)
from twisted.internet.interfaces import IAddress, IPullProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient import errors
from mailclient._source import CHUNK_SIZE
from mailclient.protocol import ESMTPClient, Phase, Timeouts
from mailclient.testing import (
    DEFAULT_CAPABILITIES,
    MemoryEndpoint,
    MemoryTransport,
    ScriptedServer,
    runFor,
    settle,
)
from tests.helpers import Outcome

SENDER = "alice@example.test"
MESSAGE = b"From: alice@example.test\r\nSubject: hi\r\n\r\nHello.\r\n"


def bigMessage(size: int) -> bytes:
    """
    A message of about C{size} octets: short CRLF lines, some starting with
    a dot.
    """
    lines = [b"Subject: big", b""]
    total = 16
    n = 0
    while total < size:
        line = b".%06d " % n + b"x" * 70 if n % 7 == 0 else b"line %06d" % n
        lines.append(line)
        total += len(line) + 2
        n += 1
    return b"\r\n".join(lines) + b"\r\n"


class OneProtocol(Factory):
    """
    A factory that hands out one prepared protocol.
    """

    def __init__(self, prepared: Protocol) -> None:
        self.prepared = prepared

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """
        The prepared protocol.
        """
        return self.prepared


class RawClient(Protocol):
    """
    A client that writes what it is told and records what it receives.

    @ivar received: every byte received.
    @ivar lost: why the connection was lost, once it was.
    """

    def __init__(self) -> None:
        self.received = bytearray()
        self.lost: Failure | None = None
        self._taken = 0

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data}.
        """
        self.received += data

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Record C{reason}.
        """
        self.lost = reason

    def say(self, *lines: bytes) -> None:
        """
        Write C{lines}, each ended with CRLF, in one write.
        """
        assert self.transport is not None
        self.transport.write(b"".join(line + b"\r\n" for line in lines))

    def take(self) -> list[bytes]:
        """
        The reply lines received since the last call.
        """
        new = bytes(self.received[self._taken :])
        self._taken = len(self.received)
        return new.split(b"\r\n")[:-1]


def newClient(clock: Clock, **options: Any) -> ESMTPClient:
    """
    A client named C{client.test}, without TLS.
    """
    options.setdefault("tls", "none")
    options.setdefault("heloName", "client.test")
    return ESMTPClient(clock=clock, **options)


def connected(clock: Clock, endpoint: MemoryEndpoint, **options: Any) -> ESMTPClient:
    """
    A new client connected through C{endpoint}, past the greeting and EHLO
    (as far as the script lets it go).
    """
    client = newClient(clock, **options)
    outcome = Outcome(endpoint.connect(OneProtocol(client)))
    settle(clock)
    assert outcome.value() is client
    return client


def rawSession(
    clock: Clock, server: ScriptedServer, *lines: bytes
) -> tuple[RawClient, list[bytes]]:
    """
    Connect a L{RawClient} to C{server}, write C{lines} in one write (if
    any), settle; return the client and every line received.
    """
    raw = RawClient()
    Outcome(MemoryEndpoint(clock, server).connect(OneProtocol(raw)))
    settle(clock)
    if lines:
        raw.say(*lines)
        settle(clock)
    return raw, raw.take()


@pytest.fixture
def clock() -> Clock:
    """
    A fresh fake clock.
    """
    return Clock()


@pytest.fixture
def server(clock: Clock) -> ScriptedServer:
    """
    A server with the default settings.
    """
    return ScriptedServer(clock)


@pytest.fixture
def endpoint(clock: Clock, server: ScriptedServer) -> MemoryEndpoint:
    """
    An endpoint to C{server}, with no delay and no latency.
    """
    return MemoryEndpoint(clock, server)


# -- the clock helpers ----------------------------------------------------------


class TestClock:
    """
    L{settle} and L{runFor}.
    """

    def test_settleRunsWhatIsDueNow(self, clock: Clock) -> None:
        """
        L{settle} runs the calls due now and those they schedule for now,
        but not later ones, and leaves the time alone.
        """
        ran: list[str] = []
        clock.callLater(0, lambda: clock.callLater(0, ran.append, "chained"))
        clock.callLater(1, ran.append, "later")
        assert settle(clock) == 2
        assert ran == ["chained"]
        assert clock.seconds() == 0

    def test_settleLimit(self, clock: Clock) -> None:
        """
        A call that reschedules itself forever makes L{settle} fail instead
        of hanging.
        """

        def again() -> None:
            clock.callLater(0, again)

        again()
        with pytest.raises(RuntimeError, match="still busy"):
            settle(clock, limit=50)

    def test_runForKeepsTime(self, clock: Clock) -> None:
        """
        L{runFor} runs each call at its own time, so a call scheduled by
        another one is timed from the right moment.
        """
        seen: list[float] = []
        clock.callLater(
            1, lambda: clock.callLater(2, lambda: seen.append(clock.seconds()))
        )
        runFor(clock, 5)
        assert seen == [3]
        assert clock.seconds() == 5


# -- transports --------------------------------------------------------------------


def transportPair(
    clock: Clock, latency: float = 0.0, window: int = 1000
) -> tuple[MemoryTransport, RawClient, MemoryTransport, RawClient]:
    """
    Two raw protocols joined by a pair of L{MemoryTransport}s.
    """
    a = IPv4Address("TCP", "192.0.2.1", 1)
    b = IPv4Address("TCP", "192.0.2.2", 2)
    left = MemoryTransport(clock, a, b, latency=latency, window=window)
    right = MemoryTransport(clock, b, a, latency=latency, window=window)
    left.peer, right.peer = right, left
    leftProtocol, rightProtocol = RawClient(), RawClient()
    left.protocol, right.protocol = leftProtocol, rightProtocol
    leftProtocol.makeConnection(left)
    rightProtocol.makeConnection(right)
    return left, leftProtocol, right, rightProtocol


@implementer(IPullProducer)
class Pieces:
    """
    A pull producer that writes one piece of C{size} bytes per
    C{resumeProducing}, C{count} times, then unregisters.
    """

    def __init__(self, transport: MemoryTransport, size: int, count: int) -> None:
        self.transport = transport
        self.size = size
        self.count = count
        self.resumed = 0
        self.stopped = False

    def resumeProducing(self) -> None:
        """
        Write the next piece (the last one unregisters).
        """
        self.resumed += 1
        if self.count:
            self.count -= 1
            self.transport.write(b"x" * self.size)
        if not self.count:
            self.transport.unregisterProducer()

    def stopProducing(self) -> None:
        """
        Record the call.
        """
        self.stopped = True


class TestTransport:
    """
    L{MemoryTransport} on its own, between two raw protocols.
    """

    def test_writeArrivesLaterInOrder(self, clock: Clock) -> None:
        """
        Bytes written arrive from a call on the clock, never inside
        C{write}, in order and one C{dataReceived} per write; C{latency}
        delays them.
        """
        left, _, right, received = transportPair(clock, latency=0.5)
        left.write(b"one ")
        left.writeSequence([b"two", b" "])
        left.write(b"three")
        assert received.received == b""
        runFor(clock, 0.4)
        assert received.received == b""
        runFor(clock, 0.1)
        assert received.received == b"one two three"
        assert (left.bytesWritten, left.writes, right.bytesReceived) == (13, 3, 13)

    def test_loseConnection(self, clock: Clock) -> None:
        """
        C{loseConnection} delivers what was written, then both ends lose the
        connection with C{ConnectionDone}; later writes are dropped.
        """
        left, leftProtocol, _, rightProtocol = transportPair(clock)
        left.write(b"last words")
        left.loseConnection()
        left.write(b"ignored")
        settle(clock)
        assert rightProtocol.received == b"last words"
        assert leftProtocol.lost is not None and rightProtocol.lost is not None
        assert leftProtocol.lost.check(ConnectionDone)
        assert rightProtocol.lost.check(ConnectionDone)

    def test_abortConnection(self, clock: Clock) -> None:
        """
        C{abortConnection} drops what is in flight; this end loses the
        connection with C{ConnectionAborted}, the peer with
        C{ConnectionLost}.
        """
        left, leftProtocol, _, rightProtocol = transportPair(clock)
        left.write(b"never seen")
        left.abortConnection()
        settle(clock)
        assert rightProtocol.received == b""
        assert leftProtocol.lost is not None and rightProtocol.lost is not None
        assert leftProtocol.lost.check(ConnectionAborted)
        assert rightProtocol.lost.check(ConnectionLost)
        assert not rightProtocol.lost.check(ConnectionAborted)

    def test_pullProducerPacedByWindow(self, clock: Clock) -> None:
        """
        A pull producer is asked for more from calls on the clock while
        fewer than C{window} bytes are unread; when the peer stops reading
        it waits, and goes on when the peer reads again.
        """
        left, _, right, rightProtocol = transportPair(clock, window=1000)
        producer = Pieces(left, 400, 10)
        left.registerProducer(producer, False)
        assert producer.resumed == 0
        right.pauseProducing()
        settle(clock)
        assert left.bytesWritten == 1200  # three pieces reach the window
        assert rightProtocol.received == b""
        right.resumeProducing()
        settle(clock)
        assert rightProtocol.received == b"x" * 4000
        assert left.producer is None

    def test_loseConnectionWaitsForProducer(self, clock: Clock) -> None:
        """
        C{loseConnection} with a producer registered closes only once the
        producer is unregistered, after everything it wrote.
        """
        left, leftProtocol, _, rightProtocol = transportPair(clock, window=10**6)
        producer = Pieces(left, 100, 3)
        left.registerProducer(producer, False)
        left.loseConnection()
        settle(clock)
        assert rightProtocol.received == b"x" * 300
        assert leftProtocol.lost is not None and rightProtocol.lost is not None

    def test_producerStoppedOnLoss(self, clock: Clock) -> None:
        """
        A producer still registered when the connection is lost is told to
        stop.
        """
        left, _, right, _ = transportPair(clock)
        producer = Pieces(left, 1, 10**6)
        left.registerProducer(producer, False)
        right.pauseProducing()
        settle(clock)
        right.abortConnection()
        settle(clock)
        assert producer.stopped


# -- the endpoint ------------------------------------------------------------------


class TestEndpoint:
    """
    L{MemoryEndpoint}: delays, refused and hanging attempts.
    """

    def test_connectTakesDelay(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A connection attempt takes the endpoint's delay on the clock; then
        the Deferred fires with the factory's protocol, connected, and the
        server records the connection.
        """
        endpoint = MemoryEndpoint(clock, server, delay=2.0)
        raw = RawClient()
        outcome = Outcome(endpoint.connect(OneProtocol(raw)))
        runFor(clock, 1.9)
        assert not outcome.called and server.connections == []
        runFor(clock, 0.1)
        assert outcome.value() is raw
        assert raw.take() == [b"220 mx.test ESMTP"]
        [record] = server.connections
        assert (record.number, record.openedAt, server.openConnections) == (1, 2.0, 1)
        assert raw.transport is not None
        assert raw.transport.getPeer() == IPv4Address("TCP", "192.0.2.25", 25)

    def test_refusedThenConnected(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A CONNECT rule with C{refuse} fails that many attempts with
        C{ConnectionRefusedError}; the next one connects.
        """
        server.rule("CONNECT", refuse=True, times=1)
        first = Outcome(endpoint.connect(OneProtocol(RawClient())))
        second = Outcome(endpoint.connect(OneProtocol(RawClient())))
        settle(clock)
        first.error(ConnectionRefusedError)
        second.value()
        assert (server.connectAttempts, len(server.connections)) == (2, 1)

    def test_hangingConnectCancelled(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A CONNECT rule with C{hang} leaves the attempt pending however long
        the clock runs; cancelling it fails it with C{CancelledError}.
        """
        server.rule("CONNECT", hang=True)
        d = endpoint.connect(OneProtocol(RawClient()))
        outcome = Outcome(d)
        runFor(clock, 3600)
        assert not outcome.called
        d.cancel()
        outcome.error(CancelledError)
        assert server.connections == []

    def test_cancelDuringDelay(self, clock: Clock, server: ScriptedServer) -> None:
        """
        Cancelling an attempt still under way (a CONNECT rule's delay adds
        to the endpoint's) fails it with C{CancelledError}, and nothing
        connects later.
        """
        server.rule("CONNECT", delay=5)
        endpoint = MemoryEndpoint(clock, server, delay=1)
        d = endpoint.connect(OneProtocol(RawClient()))
        outcome = Outcome(d)
        runFor(clock, 5.9)
        d.cancel()
        runFor(clock, 10)
        outcome.error(CancelledError)
        assert server.connections == []

    def test_noProtocol(self, clock: Clock, endpoint: MemoryEndpoint) -> None:
        """
        A factory that builds no protocol fails the attempt with
        C{NoProtocol}.
        """
        factory = Factory()
        factory.buildProtocol = lambda addr: None  # type: ignore[method-assign]
        outcome = Outcome(endpoint.connect(factory))
        settle(clock)
        outcome.error(NoProtocol)


# -- the server with a raw client ----------------------------------------------------


class TestServer:
    """
    The server's state machine, driven by a raw client.
    """

    def test_ehlo(self, clock: Clock, server: ScriptedServer) -> None:
        """
        The server greets, then answers EHLO with its name and the default
        capabilities, and HELO with its name.
        """
        _, lines = rawSession(clock, server, b"EHLO c.test", b"HELO c.test")
        assert lines == [
            b"220 mx.test ESMTP",
            b"250-mx.test",
            b"250-PIPELINING",
            b"250-8BITMIME",
            b"250-SIZE 10485760",
            b"250 ENHANCEDSTATUSCODES",
            b"250 mx.test",
        ]

    def test_sequenceErrors(self, clock: Clock, server: ScriptedServer) -> None:
        """
        Commands out of order get 503 (554 for DATA without a recipient),
        unknown ones 500, bad syntax 501, unoffered ones 502; NOOP, VRFY and
        RSET are answered.
        """
        _, lines = rawSession(
            clock,
            server,
            b"MAIL FROM:<a@x.test>",
            b"EHLO c.test",
            b"RCPT TO:<b@y.test>",
            b"DATA",
            b"MAIL FROM:<a@x.test>",
            b"MAIL FROM:<a@x.test>",
            b"DATA",
            b"RCPT b@y.test",
            b"RSET",
            b"MAIL FROM: nobody",
            b"FROB",
            b"STARTTLS",
            b"NOOP",
            b"VRFY bob",
        )
        codes = [line[:3] for line in lines if line[3:4] == b" "]
        assert codes == [
            b"220",
            b"503",  # MAIL before EHLO
            b"250",  # EHLO
            b"503",  # RCPT before MAIL
            b"503",  # DATA before MAIL
            b"250",  # MAIL
            b"503",  # nested MAIL
            b"554",  # DATA without a recipient
            b"501",  # RCPT syntax
            b"250",  # RSET
            b"501",  # MAIL syntax
            b"500",  # unknown
            b"502",  # not offered
            b"250",  # NOOP
            b"252",  # VRFY
        ]

    def test_pipelinedRepliesInOneWrite(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        A pipelined group of commands arriving in one delivery is answered
        in order, in one write.
        """
        raw, _ = rawSession(clock, server, b"EHLO c.test")
        transport = server.connections[0].serverTransport
        assert isinstance(transport, MemoryTransport)
        writes = transport.writes
        raw.say(b"MAIL FROM:<a@x.test>", b"RCPT TO:<b@y.test>", b"DATA")
        settle(clock)
        assert raw.take() == [
            b"250 2.1.0 Ok",
            b"250 2.1.5 Ok",
            b"354 End data with <CR><LF>.<CR><LF>",
        ]
        assert transport.writes == writes + 1

    def test_dataDotStuffing(self, clock: Clock, server: ScriptedServer) -> None:
        """
        DATA reads lines until the lone dot, removes the dot-stuffing, and
        records the message with its CRLF line ends; the final 250 carries a
        queue id.
        """
        _, lines = rawSession(
            clock,
            server,
            b"EHLO c.test",
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<b@y.test>",
            b"DATA",
            b"Subject: dots",
            b"",
            b"..leading dot",
            b"...",
            b"end",
            b".",
        )
        assert lines[-1] == b"250 2.0.0 Ok: queued as C1T1"
        [delivery] = server.deliveries
        assert delivery.data == b"Subject: dots\r\n\r\n.leading dot\r\n..\r\nend\r\n"
        assert (delivery.sender, delivery.recipients) == ("a@x.test", ("b@y.test",))
        assert server.connections[0].commands == [
            "EHLO c.test",
            "MAIL FROM:<a@x.test>",
            "RCPT TO:<b@y.test>",
            "DATA",
        ]

    def test_bdatExactOctets(self, clock: Clock) -> None:
        """
        With CHUNKING, BDAT reads exactly the octets announced (whatever
        they contain), answers each chunk, and delivers the chunks joined
        after C{BDAT n LAST}.
        """
        server = ScriptedServer(clock, chunking=True)
        first = b"Subject: x\r\n\r\n.\r\nQUIT\r\n"
        raw, _ = rawSession(
            clock, server, b"EHLO c.test", b"MAIL FROM:<>", b"RCPT TO:<b@y.test>"
        )
        assert raw.transport is not None
        raw.transport.write(
            b"BDAT %d\r\n" % len(first) + first + b"BDAT 3 LAST\r\nendNOOP\r\n"
        )
        settle(clock)
        assert raw.take() == [
            b"250 2.0.0 %d octets received" % len(first),
            b"250 2.0.0 Ok: queued as C1T1",
            b"250 2.0.0 Ok",
        ]
        assert server.deliveries[0].data == first + b"end"
        assert server.connections[0].verbs()[-3:] == ["BDAT", "BDAT", "NOOP"]

    def test_bdatNotOffered(self, clock: Clock, server: ScriptedServer) -> None:
        """
        Without CHUNKING, BDAT is refused with 502, after its octets were
        read.
        """
        _, lines = rawSession(
            clock, server, b"EHLO c.test", b"BDAT 6 LAST", b"NOOP", b"NOOP"
        )
        assert lines[-2:] == [b"502 5.5.1 BDAT not offered", b"250 2.0.0 Ok"]

    def test_sizeLimit(self, clock: Clock) -> None:
        """
        MAIL with a SIZE above the advertised limit is refused with 552.
        """
        server = ScriptedServer(clock, capabilities=[b"SIZE 100"])
        _, lines = rawSession(
            clock, server, b"EHLO c.test", b"MAIL FROM:<a@x.test> SIZE=101"
        )
        assert lines[-1] == b"552 Message size exceeds fixed limit"

    def test_quit(self, clock: Clock, server: ScriptedServer) -> None:
        """
        QUIT gets 221 and the server closes; the record says the client
        quit.
        """
        raw, lines = rawSession(clock, server, b"QUIT")
        assert lines[-1] == b"221 2.0.0 Bye"
        assert raw.lost is not None and raw.lost.check(ConnectionDone)
        record = server.connections[0]
        assert (record.closedBy, record.closedAt, server.openConnections) == (
            "client-quit",
            0.0,
            0,
        )

    def test_refusedGreeting(self, clock: Clock, server: ScriptedServer) -> None:
        """
        After a 554 greeting (a GREETING rule) the server answers every
        command but QUIT with 503.
        """
        server.rule("GREETING", reply=b"554 5.7.1 go away")
        _, lines = rawSession(clock, server, b"EHLO c.test", b"QUIT")
        assert lines == [
            b"554 5.7.1 go away",
            b"503 5.5.1 No SMTP service here",
            b"221 2.0.0 Bye",
        ]

    def test_ruleFilters(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A rule fires only for its verb, argument substring, connection and
        transaction, and at most C{times} times.
        """
        rule = server.rule(
            "RCPT",
            match="TEMPFAIL@",
            connection=1,
            transaction=2,
            times=1,
            reply=b"450 4.2.1 later",
        )
        _, lines = rawSession(
            clock,
            server,
            b"EHLO c.test",
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<tempfail@y.test>",
            b"RSET",
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<ok@y.test>",
            b"RCPT TO:<tempfail@y.test>",
            b"RCPT TO:<tempfail@z.test>",
        )
        assert [line[:3] for line in lines[-3:]] == [b"250", b"450", b"250"]
        assert (rule.fired, rule.active) == (1, False)
        assert lines[-4] == b"250 2.1.0 Ok"

    def test_ruleValidation(self, server: ScriptedServer) -> None:
        """
        Rules that make no sense are refused when written.
        """
        bad: list[dict[str, Any]] = [
            {"verb": "MAIL", "refuse": True},
            {"verb": "CONNECT", "reply": b"250 ok"},
            {"verb": "RCPT", "dropAfter": 10},
            {"verb": "DATA", "dropAfter": 1, "stallAfter": 1},
            {"verb": "MAIL", "drop": True, "reply": b"250 ok"},
            {"verb": "MAIL", "stall": True, "delay": 1},
            {"verb": "MAIL", "abort": True},
            {"verb": "MAIL", "times": 0},
            {"verb": "MAIL", "reply": b"hello"},
            {"verb": "GREETING", "match": "x"},
        ]
        for kwargs in bad:
            verb = kwargs.pop("verb")
            with pytest.raises(ValueError):
                server.rule(verb, **kwargs)
        assert server.rules == []


# -- the server with the real client -------------------------------------------------


class TestSessions:
    """
    Whole sessions of the real client against the server.
    """

    def test_twoPipelinedMessages(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        Two messages queued at once go over one connection, pipelined; the
        server delivers both byte for byte, dot-stuffing undone; QUIT closes
        the connection as the client's doing.
        """
        client = connected(clock, endpoint)
        one = b"Subject: one\r\n\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
        two = b"Subject: two\r\n\r\nsecond\r\n"
        first = Outcome(client.send(SENDER, ["a@x.test", "b@x.test"], one))
        second = Outcome(client.send(SENDER, "c@x.test", two))
        settle(clock)
        assert first.value().accepted == ("a@x.test", "b@x.test")
        assert second.value().queueId == "C1T2"
        assert [(d.transaction, d.recipients, d.data) for d in server.deliveries] == [
            (1, ("a@x.test", "b@x.test"), one),
            (2, ("c@x.test",), two),
        ]
        assert server.messagesPerConnection() == [2]
        quit = Outcome(client.quit())
        settle(clock)
        quit.value()
        [record] = server.connections
        assert record.closedBy == "client-quit"
        assert record.verbs() == [
            *("EHLO", "MAIL", "RCPT", "RCPT", "DATA"),
            *("MAIL", "RCPT", "DATA", "QUIT"),
        ]
        assert server.openConnections == 0

    def test_largeMessageStreamed(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A message larger than the client's block is pulled from the client
        block by block (it registers as a producer) and arrives intact.
        """
        client = connected(clock, endpoint)
        message = bigMessage(5 * CHUNK_SIZE)
        outcome = Outcome(client.send(SENDER, "a@x.test", message))
        settle(clock)
        outcome.value()
        assert server.deliveries[0].data == message

    def test_tempfailOnceThenAccepted(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A 450 rule for one recipient, once: the first send defers that
        recipient and delivers to the other; sending again to it succeeds.
        """
        server.rule("RCPT", match="tempfail@", reply=b"450 4.2.1 later", times=1)
        client = connected(clock, endpoint)
        first = Outcome(client.send(SENDER, ["ok@x.test", "tempfail@x.test"], MESSAGE))
        settle(clock)
        result = first.value()
        assert result.recipients["ok@x.test"].status == "accepted"
        deferred = result.recipients["tempfail@x.test"]
        assert (deferred.status, deferred.code, deferred.phase) == (
            "deferred",
            450,
            "RCPT",
        )
        second = Outcome(client.send(SENDER, "tempfail@x.test", MESSAGE))
        settle(clock)
        assert second.value().accepted == ("tempfail@x.test",)
        assert [d.recipients for d in server.deliveries] == [
            ("ok@x.test",),
            ("tempfail@x.test",),
        ]

    def test_allRecipientsDeferred(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        When a rule defers every recipient the send fails with
        L{errors.AllRecipientsRefusedError}, transient, and nothing is
        delivered.
        """
        server.rule("RCPT", reply=b"450 4.2.1 later")
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, ["a@x.test", "b@x.test"], MESSAGE))
        settle(clock)
        error = outcome.error(errors.AllRecipientsRefusedError)
        assert error.isTransient
        assert server.deliveries == []

    def test_throttleThenRecovery(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        MAIL refused with 454 twice (throttling): those sends fail with a
        transient L{errors.SenderRefusedError}; the third is delivered on
        the same connection.
        """
        server.rule("MAIL", reply=b"454 4.7.0 slow down", times=2)
        client = connected(clock, endpoint)
        outcomes = [Outcome(client.send(SENDER, "a@x.test", MESSAGE)) for _ in range(3)]
        settle(clock)
        for outcome in outcomes[:2]:
            error = outcome.error(errors.SenderRefusedError)
            assert (error.code, error.isTransient) == (454, True)
        outcomes[2].value()
        assert server.messagesPerConnection() == [1]
        assert server.connections[0].transactions == 3

    def test_421MidSessionThenNewConnection(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A 421 to the second MAIL of the first connection fails that send
        with L{errors.ServerRefusedSessionError} and the server closes; a
        new connection then delivers it.
        """
        server.rule(
            "MAIL", connection=1, transaction=2, reply=b"421 4.7.0 too many messages"
        )
        client = connected(clock, endpoint)
        first = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.test", MESSAGE))
        settle(clock)
        first.value()
        error = second.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        assert error.result.recipients["b@x.test"].status == "deferred"
        assert client.phase is Phase.CLOSED
        assert (server.connections[0].closedBy, server.openConnections) == ("server", 0)

        again = connected(clock, endpoint)
        retry = Outcome(again.send(SENDER, "b@x.test", MESSAGE))
        settle(clock)
        retry.value()
        assert server.messagesPerConnection() == [1, 1]

    def test_greetingRefused(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A 421 greeting on the first connection only: the client's session
        fails with L{errors.ServerRefusedSessionError} and the server closed
        it; the second connection is greeted normally.
        """
        server.rule("GREETING", connection=1, reply=b"421 4.3.2 busy")
        client = connected(clock, endpoint)
        ready = Outcome(client.whenReady())
        ready.error(errors.ServerRefusedSessionError)
        assert server.connections[0].closedBy == "server"
        other = connected(clock, endpoint)
        assert other.phase is Phase.READY


class TestTimingAndFailures:
    """
    Stalls, delays, drops, idle timeouts and shutdowns.
    """

    def test_stallThenRelease(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A stall at the end of the data holds the final reply however long
        the clock runs (short of the client's timeout); once released the
        message is delivered.
        """
        server.rule("END-OF-DATA", stall=True, times=1)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        runFor(clock, 60)
        assert not outcome.called
        assert client.phase is Phase.FINAL
        assert server.stalled == [1]
        assert server.deliveries == []
        assert server.release() == 1
        settle(clock)
        outcome.value()
        assert len(server.deliveries) == 1
        with pytest.raises(ValueError):
            server.release()

    def test_releaseWithReply(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        Releasing a stall with a reply sends that reply instead: a 451 to
        the end of the data refuses the message, and nothing is delivered.
        """
        server.rule("END-OF-DATA", stall=True)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        settle(clock)
        server.release(reply=b"451 4.3.0 try again")
        settle(clock)
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.result.recipients["a@x.test"].status == "deferred"
        assert server.deliveries == []
        assert client.canSend

    def test_delayedReply(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A delay rule holds the reply for that many seconds of the clock.
        """
        server.rule("RCPT", delay=5)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        runFor(clock, 4.9)
        assert not outcome.called and server.stalled == [1]
        runFor(clock, 0.1)
        assert outcome.value().timings["done"] == 5

    def test_dropDuringData(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A drop after 10 octets of data: the client loses the connection
        before the end of the data went out, so the recipient is
        C{"deferred"} (nothing was delivered).
        """
        server.rule("DATA", dropAfter=10)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", bigMessage(3 * CHUNK_SIZE)))
        settle(clock)
        error = outcome.error(errors.ConnectionLostError)
        assert error.result is not None
        assert error.result.recipients["a@x.test"].status == "deferred"
        assert server.deliveries == []
        assert server.connections[0].closedBy == "server"

    @pytest.mark.parametrize(
        "rule",
        [
            {"verb": "END-OF-DATA", "drop": True},
            {"verb": "DATA", "dropAfter": 10**6},
        ],
    )
    def test_dropAfterFinalDot(
        self,
        clock: Clock,
        server: ScriptedServer,
        endpoint: MemoryEndpoint,
        rule: dict[str, Any],
    ) -> None:
        """
        A drop once the whole message arrived and before the final reply
        (an END-OF-DATA drop, or a C{dropAfter} beyond the message): the
        recipient's fate is C{"unknown"}, and the server delivered nothing.
        """
        server.rule(**rule)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        settle(clock)
        error = outcome.error(errors.ConnectionLostError)
        assert error.result is not None
        assert error.result.recipients["a@x.test"].status == "unknown"
        assert server.deliveries == []

    def test_stallAfterBlocksWriter(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        A server that stops reading after 1000 octets of data leaves the
        client writing the body (the window is full, so it stops being
        asked for more); once released, the rest flows and the message is
        delivered whole.
        """
        server.rule("DATA", stallAfter=1000)
        client = connected(clock, endpoint)
        message = bigMessage(1_000_000)
        outcome = Outcome(client.send(SENDER, "a@x.test", message))
        settle(clock)
        assert client.phase is Phase.BODY
        clientTransport = server.connections[0].clientTransport
        assert clientTransport is not None
        assert clientTransport.bytesWritten < 300_000
        server.release()
        settle(clock)
        outcome.value()
        assert server.deliveries[0].data == message

    def test_idleTimeoutThenNewConnection(
        self, clock: Clock, endpoint: MemoryEndpoint, server: ScriptedServer
    ) -> None:
        """
        After C{idleTimeout} seconds without a command the server says 421
        and closes; the idle client sees the session end (it cannot send
        any more), and the next message goes over a new connection.
        """
        server.idleTimeout = 30
        client = connected(clock, endpoint)
        first = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        settle(clock)
        first.value()
        runFor(clock, 29.9)
        assert client.canSend
        runFor(clock, 0.1)
        assert not client.canSend
        assert client.phase is Phase.CLOSED
        record = server.connections[0]
        assert (record.closedBy, record.closedAt) == ("server", 30)
        assert ("S", "421 4.4.2 idle timeout") in client.transcript

        again = connected(clock, endpoint)
        second = Outcome(again.send(SENDER, "a@x.test", MESSAGE))
        settle(clock)
        second.value()
        assert server.messagesPerConnection() == [1, 1]

    def test_idleSilent(self, clock: Clock, endpoint: MemoryEndpoint) -> None:
        """
        With C{idleSilent} the server closes without a word; the client sees
        the connection lost.
        """
        server = endpoint.server
        server.idleTimeout = 10
        server.idleSilent = True
        client = connected(clock, endpoint)
        ready = Outcome(client.whenReady())
        runFor(clock, 10)
        ready.value()
        assert client.phase is Phase.CLOSED
        assert not [line for line in client.transcript if "421" in line[1]]
        assert server.connections[0].closedBy == "server"

    def test_idleBlackhole(self, clock: Clock, endpoint: MemoryEndpoint) -> None:
        """
        With C{idleBlackhole} the server stops answering and keeps the
        connection open: a send after that times out on the client, which
        then drops the connection.
        """
        server = endpoint.server
        server.idleTimeout = 10
        server.idleBlackhole = True
        client = connected(clock, endpoint, timeouts=Timeouts(mail=20))
        runFor(clock, 15)
        assert server.openConnections == 1 and client.canSend
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        runFor(clock, 19.9)
        assert not outcome.called
        runFor(clock, 0.1)
        error = outcome.error(errors.SMTPTimeoutError)
        assert error.phase == "MAIL"
        assert server.connections[0].closedBy == "client-abort"

    def test_shutdownWithSendInFlight(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        L{ScriptedServer.shutdown} while a message waits for its final
        reply: the client gets the 421, and the recipient is deferred (the
        server said no before taking it).
        """
        server.rule("END-OF-DATA", stall=True)
        client = connected(clock, endpoint)
        outcome = Outcome(client.send(SENDER, "a@x.test", MESSAGE))
        settle(clock)
        server.shutdown()
        settle(clock)
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        assert error.result.recipients["a@x.test"].status == "deferred"
        assert (server.openConnections, server.stalled) == (0, [])

    def test_clientEndings(
        self, clock: Clock, server: ScriptedServer, endpoint: MemoryEndpoint
    ) -> None:
        """
        The record tells a client that aborted from one that closed without
        QUIT.
        """
        aborting = connected(clock, endpoint)
        aborting.abort(errors.SendCancelledError("test"))
        closing = connected(clock, endpoint)
        assert closing.transport is not None
        closing.transport.loseConnection()
        settle(clock)
        assert [r.closedBy for r in server.connections] == [
            "client-abort",
            "client-close",
        ]


class TestCancel:
    """
    Cancelling a send in each phase of the client.
    """

    @pytest.mark.parametrize(
        ("rule", "phase", "closedAtCancel", "closedAfterRelease"),
        [
            ({"verb": "GREETING", "stall": True}, Phase.GREETING, None, None),
            ({"verb": "EHLO", "stall": True}, Phase.EHLO, None, None),
            ({"verb": "MAIL", "stall": True}, Phase.MAIL, None, "client-abort"),
            ({"verb": "RCPT", "stall": True}, Phase.RCPT, None, "client-abort"),
            ({"verb": "DATA", "stall": True}, Phase.DATA, None, "client-abort"),
            (
                {"verb": "DATA", "stallAfter": 1000},
                Phase.BODY,
                "client-abort",
                "client-abort",
            ),
            (
                {"verb": "END-OF-DATA", "stall": True},
                Phase.FINAL,
                "client-abort",
                "client-abort",
            ),
        ],
    )
    def test_cancelInEachPhase(
        self,
        clock: Clock,
        server: ScriptedServer,
        endpoint: MemoryEndpoint,
        rule: dict[str, Any],
        phase: Phase,
        closedAtCancel: str | None,
        closedAfterRelease: str | None,
    ) -> None:
        """
        A stall catches the client in each phase; cancelling the send then
        fails it with L{errors.SendCancelledError}.  A send still queued
        (the session not ready) leaves the connection alone; one whose data
        began drops it at once; one cancelled before its data keeps it until
        the 354 to its pipelined DATA comes (released here), which the
        client can only answer by dropping the connection.  Nothing is ever
        delivered.
        """
        server.rule(**rule)
        client = connected(clock, endpoint)
        d = client.send(SENDER, "a@x.test", bigMessage(1_000_000))
        outcome = Outcome(d)
        settle(clock)
        assert client.phase is phase
        d.cancel()
        settle(clock)
        outcome.error(errors.SendCancelledError)
        record = server.connections[0]
        assert record.closedBy == closedAtCancel
        if server.stalled:
            server.release()
            settle(clock)
        assert record.closedBy == closedAfterRelease
        assert server.deliveries == []


class TestChunking:
    """
    BDAT (CHUNKING) with the real client.
    """

    def test_smallMessage(self, clock: Clock, endpoint: MemoryEndpoint) -> None:
        """
        With CHUNKING offered, a small message goes as one C{BDAT n LAST},
        and is delivered exactly (no dot-stuffing to undo).
        """
        server = endpoint.server
        server.capabilities = [*DEFAULT_CAPABILITIES, b"CHUNKING"]
        client = connected(clock, endpoint)
        message = b"Subject: c\r\n\r\n.dot\r\n.\r\n"
        outcome = Outcome(client.send(SENDER, "a@x.test", message))
        settle(clock)
        outcome.value()
        assert server.deliveries[0].data == message
        assert server.connections[0].commands[-1] == f"BDAT {len(message)} LAST"

    def test_largeMessage(self, clock: Clock) -> None:
        """
        A large message goes as several BDAT chunks; the server answers each
        and delivers them joined.
        """
        server = ScriptedServer(clock, chunking=True)
        client = connected(clock, MemoryEndpoint(clock, server))
        message = bigMessage(3 * CHUNK_SIZE + 100)
        outcome = Outcome(client.send(SENDER, "a@x.test", message))
        settle(clock)
        outcome.value()
        assert server.deliveries[0].data == message
        verbs = server.connections[0].verbs()
        assert verbs.count("BDAT") == 4
        assert server.connections[0].commands[-1].endswith(" LAST")

    def test_dropDuringChunk(self, clock: Clock) -> None:
        """
        A BDAT rule dropping the connection 100 octets into the chunk: the
        recipient is deferred (the last chunk never went whole).
        """
        server = ScriptedServer(clock, chunking=True)
        server.rule("BDAT", dropAfter=100)
        client = connected(clock, MemoryEndpoint(clock, server))
        outcome = Outcome(client.send(SENDER, "a@x.test", bigMessage(3 * CHUNK_SIZE)))
        settle(clock)
        error = outcome.error(errors.ConnectionLostError)
        assert error.result is not None
        assert error.result.recipients["a@x.test"].status == "deferred"
