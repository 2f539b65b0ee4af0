"""
A scriptable SMTP server in memory, and a client endpoint that connects to
it, driven entirely by a fake clock.

- L{ScriptedServer}: the state shared by every connection: its settings,
  its L{Rule}s (the script), and what it saw (L{ScriptedServer.deliveries},
  L{ScriptedServer.connections}).
- L{ScriptedServerProtocol}: one connection's server side, a small SMTP
  server (EHLO/HELO, MAIL, RCPT, DATA, BDAT, RSET, NOOP, VRFY, QUIT) that
  follows the rules.
- L{MemoryEndpoint}: an C{IStreamClientEndpoint} whose every C{connect}
  joins the factory's protocol to a new L{ScriptedServerProtocol} with a
  pair of L{MemoryTransport}s.
- L{settle} and L{runFor}: run the clock.

Bytes never move inside C{write}: each write reaches the peer from a call on
the clock, so nothing happens until the test runs it::

    clock = Clock()
    server = ScriptedServer(clock)
    server.rule("RCPT", match="tempfail@", reply=b"450 4.2.1 later", times=1)
    endpoint = MemoryEndpoint(clock, server)
    d = endpoint.connect(factory)
    settle(clock)  # connected, greeted, EHLO answered

The rules are checked in the order they were added; the first active one
that matches fires (see L{ScriptedServer.rule}).
"""

from __future__ import annotations

import enum
import re
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, cast

import attrs
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import (
    ConnectionAborted,
    ConnectionDone,
    ConnectionLost,
    ConnectionRefusedError,
    NoProtocol,
)
from twisted.internet.interfaces import (
    IAddress,
    IConsumer,
    IDelayedCall,
    IProducer,
    IProtocol,
    IProtocolFactory,
    IPullProducer,
    IPushProducer,
    IReactorTime,
    IStreamClientEndpoint,
    ITCPTransport,
)
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface import implementer

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_WINDOW",
    "CloseReason",
    "ConnectionRecord",
    "Delivery",
    "MemoryEndpoint",
    "MemoryTransport",
    "Rule",
    "ScriptedServer",
    "ScriptedServerProtocol",
    "runFor",
    "settle",
]

DEFAULT_CAPABILITIES: tuple[bytes, ...] = (
    b"PIPELINING",
    b"8BITMIME",
    b"SIZE 10485760",
    b"ENHANCEDSTATUSCODES",
)
"""
What L{ScriptedServer} advertises in its EHLO reply unless told otherwise.
"""

DEFAULT_WINDOW = 131072
"""
How many bytes a L{MemoryTransport} lets be in flight (written and not yet
read by the peer) before it stops asking its producer for more.
"""

CloseReason = Literal["client-quit", "client-abort", "client-close", "server"]
"""
Who ended a connection, as the server saw it: the client after QUIT, the
client by aborting (RST), the client by closing without QUIT, or the server
(a 421, a drop, the idle timeout, L{ScriptedServer.shutdown}).
"""

Lines = tuple[bytes, ...]

# Verbs that only rules name: they are not command lines.
_EVENTS = frozenset({"CONNECT", "GREETING", "END-OF-DATA"})
_ADDRESS = re.compile(rb"^(FROM|TO):\s*<([^>]*)>(.*)$", re.IGNORECASE | re.DOTALL)
_FIN = None  # the end of a stream, queued behind its data


# -- the clock -------------------------------------------------------------------


def _runDue(clock: Clock, limit: int) -> int:
    """
    Run the calls due on C{clock} one at a time, in order (as
    C{Clock.advance} does), but at most C{limit} of them.
    """
    ran = 0
    while True:
        clock.calls.sort(key=lambda c: c.getTime())
        if not clock.calls or clock.calls[0].getTime() > clock.seconds():
            return ran
        if ran >= limit:
            raise RuntimeError(
                f"still busy after {limit} calls: something reschedules itself forever"
            )
        call = clock.calls.pop(0)
        call.called = 1
        call.func(*call.args, **call.kw)
        ran += 1


def settle(clock: Clock, limit: int = 100000) -> int:
    """
    Run every call due now on C{clock}, and the calls they schedule for now,
    without moving time forward: every byte in flight with no latency
    arrives, and every reaction to it runs.

    @param limit: the most calls to run.
    @return: how many calls ran.
    @raise RuntimeError: when C{limit} calls ran and more are due (something
        reschedules itself forever).
    """
    return _runDue(clock, limit)


def runFor(clock: Clock, seconds: float, limit: int = 100000) -> int:
    """
    Move C{clock} forward by C{seconds}, stopping at the time of every call
    on the way to run it (and what it schedules for then), so that a call
    scheduled by another sees the right time (C{Clock.advance} runs late
    calls at the final time).

    @param limit: the most calls to run.
    @return: how many calls ran.
    @raise RuntimeError: when more than C{limit} calls are due.
    """
    end = clock.seconds() + seconds
    ran = _runDue(clock, limit)
    while True:
        times = [c.getTime() for c in clock.getDelayedCalls()]
        nextTime = min(times, default=None)
        if nextTime is None or nextTime > end:
            break
        clock.rightNow = max(clock.rightNow, nextTime)
        ran += _runDue(clock, limit - ran)
    clock.rightNow = max(clock.rightNow, end)
    return ran + _runDue(clock, limit - ran)


# -- transports ------------------------------------------------------------------


@implementer(ITCPTransport, IConsumer, IPushProducer)
class MemoryTransport:
    """
    One end of an in-memory TCP connection.

    What is written reaches the peer's protocol C{latency} seconds later, in
    order, each write in its own C{dataReceived}, from a call on the clock
    (never inside C{write}).  C{loseConnection} sends what was written, then
    both ends lose the connection with C{ConnectionDone} (the closing end
    when its data has left, the other when it reads the end of the stream);
    C{abortConnection} drops what is in flight and both ends lose the
    connection at once (C{ConnectionAborted} here, C{ConnectionLost} at the
    peer).

    A pull producer is asked for more (C{resumeProducing}, from a call on
    the clock) after each write while fewer than C{window} bytes are in
    flight; a push producer is paused while C{window} bytes or more are.
    C{pauseProducing} stops reading: what arrives meanwhile waits (and
    counts as in flight for the writer).

    @ivar protocol: the protocol this end delivers to.
    @ivar peer: the other end.
    @ivar bytesWritten: how many bytes were written here.
    @ivar writes: how many (non-empty) writes were made here.
    @ivar bytesReceived: how many bytes this end's protocol received.
    @ivar noDelay: the value of the latest C{setTcpNoDelay}.
    @ivar disconnecting: C{loseConnection} was called.
    @ivar disconnected: the protocol lost the connection (or is about to:
        an abort is on its way).
    @ivar reason: why the connection was lost, once it was.
    @ivar producer: the registered producer, if any.
    @ivar streaming: whether the producer is a push producer.
    """

    def __init__(
        self,
        clock: IReactorTime,
        host: IPv4Address,
        peerAddress: IPv4Address,
        *,
        latency: float = 0.0,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        """
        @param clock: the clock that moves the bytes.
        @param host: this end's address.
        @param peerAddress: the other end's address.
        @param latency: seconds from a write to its arrival.
        @param window: the most bytes in flight before the producer waits.
        """
        self.clock = clock
        self.host = host
        self.peerAddress = peerAddress
        self.latency = latency
        self.window = window
        self.protocol: IProtocol | None = None
        self.peer: MemoryTransport | None = None
        self.bytesWritten = 0
        self.writes = 0
        self.bytesReceived = 0
        self.noDelay = False
        self.keepAlive = False
        self.disconnecting = False
        self.disconnected = False
        self.reason: Failure | None = None
        self.producer: IPushProducer | IPullProducer | None = None
        self.streaming = False
        self._outgoing: deque[bytes | None] = deque()
        self._lastDue = 0.0
        self._inFlight = 0
        self._finQueued = False
        self._aborted = False
        self._readingPaused = False
        self._held: deque[bytes | None] = deque()
        self._drainCall: IDelayedCall | None = None
        self._producerPaused = False
        self._wantPull = False
        self._pullCall: IDelayedCall | None = None

    @property
    def connected(self) -> bool:
        """
        Whether the connection is up (not yet lost here).
        """
        return not self.disconnected

    @property
    def inFlight(self) -> int:
        """
        How many bytes written here the peer's protocol has not read yet.
        """
        return self._inFlight

    # -- ITransport ------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """
        Send C{data}; it arrives later.  Ignored once the connection is
        closing (after the end of the stream was queued) or lost.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if not data or self.disconnected or self._aborted or self._finQueued:
            return
        self.bytesWritten += len(data)
        self.writes += 1
        self._send(data)
        if (
            self.streaming
            and self.producer is not None
            and not self._producerPaused
            and self._inFlight >= self.window
        ):
            self._producerPaused = True
            cast(IPushProducer, self.producer).pauseProducing()
        self._wantPull = True
        self._maybePull()

    def writeSequence(self, data: Iterable[bytes]) -> None:
        """
        Send every string of C{data}, as one write.
        """
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Close once everything written has left (and once the producer, if
        any, is unregistered).  Nothing that arrives afterwards is read.
        """
        if self.disconnected or self._aborted or self.disconnecting:
            return
        self.disconnecting = True
        if self.producer is None:
            self._queueFin()

    def abortConnection(self) -> None:
        """
        Drop the connection now: what is in flight either way is lost; this
        end loses the connection with C{ConnectionAborted}, the peer with
        C{ConnectionLost}, from calls on the clock.
        """
        if self.disconnected or self._aborted:
            return
        self._aborted = True
        self._outgoing.clear()
        self._inFlight = 0
        self.clock.callLater(0, self._lose, ConnectionAborted())
        peer = self.peer
        if peer is not None and not peer.disconnected:
            peer._aborted = True
            peer._outgoing.clear()
            peer._inFlight = 0
            self.clock.callLater(
                0, peer._lose, ConnectionLost("Connection reset by peer")
            )

    def loseWriteConnection(self) -> None:
        """
        Half-closing is not simulated.
        """
        raise NotImplementedError("half-close is not simulated")

    def getPeer(self) -> IPv4Address:
        """
        The other end's address.
        """
        return self.peerAddress

    def getHost(self) -> IPv4Address:
        """
        This end's address.
        """
        return self.host

    # -- ITCPTransport -----------------------------------------------------------

    def setTcpNoDelay(self, enabled: bool) -> None:
        """
        Record the setting (nothing is delayed here anyway).
        """
        self.noDelay = bool(enabled)

    def getTcpNoDelay(self) -> bool:
        """
        The latest C{setTcpNoDelay} value.
        """
        return self.noDelay

    def setTcpKeepAlive(self, enabled: bool) -> None:
        """
        Record the setting.
        """
        self.keepAlive = bool(enabled)

    def getTcpKeepAlive(self) -> bool:
        """
        The latest C{setTcpKeepAlive} value.
        """
        return self.keepAlive

    # -- IConsumer -------------------------------------------------------------------

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        """
        Register C{producer}: a pull producer (C{streaming} false) is asked
        for more from a call on the clock; a push producer is paused and
        resumed with the bytes in flight.

        @raise RuntimeError: when a producer is registered already.
        """
        if self.producer is not None:
            raise RuntimeError(
                f"cannot register producer {producer!r}: {self.producer!r} is "
                "registered"
            )
        if self.disconnected or self._aborted:
            producer.stopProducing()
            return
        self.producer = cast("IPushProducer | IPullProducer", producer)
        self.streaming = bool(streaming)
        self._producerPaused = False
        if not self.streaming:
            self._wantPull = True
            self._maybePull()

    def unregisterProducer(self) -> None:
        """
        Forget the producer; a pending C{loseConnection} goes ahead.
        """
        self.producer = None
        self.streaming = False
        self._producerPaused = False
        self._wantPull = False
        if self._pullCall is not None:
            if self._pullCall.active():
                self._pullCall.cancel()
            self._pullCall = None
        if self.disconnecting and not self.disconnected and not self._aborted:
            self._queueFin()

    # -- IPushProducer (reading) -------------------------------------------------

    def pauseProducing(self) -> None:
        """
        Stop reading: what arrives waits until L{resumeProducing}.
        """
        self._readingPaused = True

    def resumeProducing(self) -> None:
        """
        Read again: what waited arrives, from a call on the clock.
        """
        self._readingPaused = False
        if self._held and self._drainCall is None:
            self._drainCall = self.clock.callLater(0, self._drain)

    def stopProducing(self) -> None:
        """
        Close the connection, as a real transport does.
        """
        self.loseConnection()

    # -- moving bytes ----------------------------------------------------------------

    def _send(self, item: bytes | None) -> None:
        now = self.clock.seconds()
        due = max(now + self.latency, self._lastDue)
        self._lastDue = due
        self._outgoing.append(item)
        if item is not None:
            self._inFlight += len(item)
        self.clock.callLater(due - now, self._arrive)

    def _queueFin(self) -> None:
        if not self._finQueued:
            self._finQueued = True
            self._send(_FIN)

    def _arrive(self) -> None:
        """
        The next item in flight reaches the peer.
        """
        if self.disconnected or self._aborted or not self._outgoing:
            return
        item = self._outgoing.popleft()
        peer = self.peer
        if item is None:
            # Everything written has left: this end is done.
            self._lose(ConnectionDone())
            if peer is not None:
                peer._receive(_FIN)
            return
        if peer is None:
            self._taken(len(item))
            return
        peer._receive(item)

    def _receive(self, item: bytes | None) -> None:
        if self.disconnected or self._aborted:
            if item is not None and self.peer is not None:
                self.peer._taken(len(item))
            return
        if self._readingPaused or self._held:
            self._held.append(item)
            return
        self._deliver(item)

    def _deliver(self, item: bytes | None) -> None:
        if item is None:
            self._lose(ConnectionDone())
            return
        if self.peer is not None:
            self.peer._taken(len(item))
        if self.disconnecting:
            return  # a closing end reads nothing more
        self.bytesReceived += len(item)
        assert self.protocol is not None
        self.protocol.dataReceived(item)

    def _drain(self) -> None:
        self._drainCall = None
        while self._held and not self._readingPaused:
            if self.disconnected or self._aborted:
                self._held.clear()
                return
            self._deliver(self._held.popleft())

    def _taken(self, size: int) -> None:
        """
        The peer read C{size} of our bytes: the producer may go on.
        """
        self._inFlight = max(0, self._inFlight - size)
        if self._inFlight < self.window:
            if self.streaming and self._producerPaused and self.producer is not None:
                self._producerPaused = False
                cast(IPushProducer, self.producer).resumeProducing()
            self._maybePull()

    def _maybePull(self) -> None:
        if (
            self.producer is None
            or self.streaming
            or self.disconnected
            or self._aborted
            or not self._wantPull
            or self._pullCall is not None
            or self._inFlight >= self.window
        ):
            return
        self._pullCall = self.clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._pullCall = None
        producer = self.producer
        if (
            producer is None
            or self.streaming
            or self.disconnected
            or self._aborted
            or self._inFlight >= self.window
        ):
            return
        self._wantPull = False
        producer.resumeProducing()

    def _lose(self, reason: Exception) -> None:
        """
        This end's protocol loses the connection.
        """
        if self.disconnected:
            return
        self.disconnected = True
        self.reason = Failure(reason)
        self._outgoing.clear()
        self._held.clear()
        self._inFlight = 0
        for call in (self._pullCall, self._drainCall):
            if call is not None and call.active():
                call.cancel()
        self._pullCall = self._drainCall = None
        producer, self.producer = self.producer, None
        if producer is not None:
            producer.stopProducing()
        if self.protocol is not None:
            self.protocol.connectionLost(self.reason)


# -- the script ----------------------------------------------------------------------


def _toLines(reply: bytes | Sequence[bytes]) -> Lines:
    """
    Normalize a scripted reply: one line, several lines in one string
    (separated by CRLF), or a sequence of lines; each line is sent as
    given (write C{250-} continuations yourself).
    """
    if isinstance(reply, bytes):
        lines = tuple(reply.splitlines())
    else:
        lines = tuple(bytes(line) for line in reply)
    if not lines or not all(len(ln) >= 3 and ln[:3].isdigit() for ln in lines):
        raise ValueError(f"not an SMTP reply: {reply!r}")
    return lines


def _code(lines: Lines) -> int:
    return int(lines[-1][:3])


@attrs.define(eq=False)
class Rule:
    """
    One step of the script; made by L{ScriptedServer.rule}, which documents
    the fields.

    @ivar fired: how many times the rule fired.
    """

    verb: str
    match: bytes | None = None
    connection: int | None = None
    transaction: int | None = None
    times: int | None = None
    reply: Lines | None = None
    close: bool = False
    drop: bool = False
    abort: bool = False
    dropAfter: int | None = None
    stallAfter: int | None = None
    stall: bool = False
    delay: float = 0.0
    refuse: bool = False
    hang: bool = False
    fired: int = 0

    @property
    def active(self) -> bool:
        """
        Whether the rule may still fire (C{times} not used up).
        """
        return self.times is None or self.fired < self.times

    def matches(
        self, verb: str, argument: bytes, connection: int, transaction: int
    ) -> bool:
        """
        Whether the rule applies to C{verb} with C{argument}, on connection
        number C{connection} in its transaction number C{transaction}.
        """
        if not self.active:
            return False
        if self.verb != verb and not (self.verb == "*" and verb not in _EVENTS):
            return False
        if self.connection is not None and self.connection != connection:
            return False
        if self.transaction is not None and self.transaction != transaction:
            return False
        return self.match is None or self.match.lower() in argument.lower()


# -- what the server saw -----------------------------------------------------------


@attrs.frozen
class Delivery:
    """
    A message the server took (its final reply was 2xx).

    @ivar connection: the number of the connection that carried it (from 1).
    @ivar transaction: its transaction number on that connection (from 1:
        the count of MAIL commands so far).
    @ivar sender: the reverse-path of MAIL FROM.
    @ivar recipients: the recipients the server accepted, in order.
    @ivar data: the message as received, dot-stuffing undone (lines end with
        CRLF as the client sent them); for BDAT, the chunks joined.
    """

    connection: int
    transaction: int
    sender: str
    recipients: tuple[str, ...]
    data: bytes


@attrs.define(eq=False)
class ConnectionRecord:
    """
    One connection as the server saw it.

    @ivar number: its number, from 1, in the order the connections opened.
    @ivar openedAt: the clock's time when it opened.
    @ivar closedAt: the clock's time when the server lost it, or L{None}.
    @ivar closedBy: a L{CloseReason}, once it closed.
    @ivar commands: every command line received, decoded (message data
        excluded; BDAT lines included).
    @ivar delivered: how many messages it delivered.
    @ivar transactions: how many MAIL commands it received.
    @ivar protocol: the server's protocol for it.
    @ivar serverTransport: the server's end of the connection.
    @ivar clientTransport: the client's end of the connection.
    """

    number: int
    openedAt: float
    closedAt: float | None = None
    closedBy: CloseReason | None = None
    commands: list[str] = attrs.Factory(list)
    delivered: int = 0
    transactions: int = 0
    protocol: ScriptedServerProtocol | None = attrs.field(default=None, repr=False)
    serverTransport: MemoryTransport | None = attrs.field(default=None, repr=False)
    clientTransport: MemoryTransport | None = attrs.field(default=None, repr=False)

    @property
    def isOpen(self) -> bool:
        """
        Whether the server still has the connection.
        """
        return self.closedAt is None

    def verbs(self) -> list[str]:
        """
        The verb of every command received, upper-cased.
        """
        return [c.split(" ", 1)[0].upper() for c in self.commands]


# -- the server ----------------------------------------------------------------------


class ScriptedServer:
    """
    A small SMTP server's settings, script and records, shared by every
    connection (each connection's protocol is a L{ScriptedServerProtocol}).

    @ivar clock: the clock for delays and the idle timeout.
    @ivar hostname: the server's name in its replies.
    @ivar greeting: the greeting line.
    @ivar capabilities: the EHLO keywords (with their parameters), in order;
        change it freely (it is read at every EHLO).
    @ivar idleTimeout: seconds without input after which the server gives
        up on a connection, or L{None} for never.
    @ivar idleReply: what it says then (then it closes).
    @ivar idleSilent: close without a word instead.
    @ivar idleBlackhole: instead, stop answering and keep the connection
        open (half-open, as after a lost peer).
    @ivar rules: the script, in order.
    @ivar deliveries: every L{Delivery}, in order.
    @ivar connections: a L{ConnectionRecord} per connection, in order.
    @ivar connectAttempts: how many times an endpoint tried to connect.
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        hostname: str = "mx.test",
        greeting: bytes | None = None,
        capabilities: Iterable[bytes] = DEFAULT_CAPABILITIES,
        chunking: bool = False,
        idleTimeout: float | None = None,
        idleReply: bytes = b"421 4.4.2 idle timeout",
        idleSilent: bool = False,
        idleBlackhole: bool = False,
    ) -> None:
        """
        @param clock: the clock for delays and the idle timeout.
        @param hostname: the server's name (C{mx.test}).
        @param greeting: the greeting line (C{220 mx.test ESMTP}); a GREETING
            rule can change it per connection.
        @param capabilities: the EHLO keywords (L{DEFAULT_CAPABILITIES}).
        @param chunking: also advertise CHUNKING (BDAT).
        @param idleTimeout: see L{idleTimeout}.
        @param idleReply: see L{idleReply}.
        @param idleSilent: see L{idleSilent}.
        @param idleBlackhole: see L{idleBlackhole}.
        """
        self.clock = clock
        self.hostname = hostname
        self.greeting = (
            greeting if greeting is not None else f"220 {hostname} ESMTP".encode()
        )
        self.capabilities = list(capabilities)
        if chunking and not self._offers(b"CHUNKING"):
            self.capabilities.append(b"CHUNKING")
        self.idleTimeout = idleTimeout
        self.idleReply = idleReply
        self.idleSilent = idleSilent
        self.idleBlackhole = idleBlackhole
        self.rules: list[Rule] = []
        self.deliveries: list[Delivery] = []
        self.connections: list[ConnectionRecord] = []
        self.connectAttempts = 0

    # -- the script --------------------------------------------------------------

    def rule(
        self,
        verb: str,
        *,
        match: str | bytes | None = None,
        connection: int | None = None,
        transaction: int | None = None,
        times: int | None = None,
        reply: bytes | Sequence[bytes] | None = None,
        close: bool = False,
        drop: bool = False,
        abort: bool = False,
        dropAfter: int | None = None,
        stallAfter: int | None = None,
        stall: bool = False,
        delay: float = 0.0,
        refuse: bool = False,
        hang: bool = False,
    ) -> Rule:
        """
        Add a rule to the script and return it.

        @param verb: what it applies to: a command verb (C{"EHLO"},
            C{"HELO"}, C{"MAIL"}, C{"RCPT"}, C{"DATA"}, C{"BDAT"} (every
            chunk's command line, LAST or not), C{"RSET"}, C{"NOOP"},
            C{"VRFY"}, C{"QUIT"}, or any other), C{"*"} (any command line),
            C{"END-OF-DATA"} (the message is complete: the final dot, or the
            last BDAT chunk's data), C{"GREETING"}, or C{"CONNECT"} (a
            connection attempt).
        @param match: a substring the command's argument must contain (case
            does not matter), such as C{"tempfail@"}; for END-OF-DATA, of
            the message.
        @param connection: only on this connection (from 1); for CONNECT,
            only for this attempt (from 1, counting every attempt).
        @param transaction: only in this transaction of a connection (the
            count of MAIL commands received, this one included; 0 before the
            first MAIL).
        @param times: how many times it fires; L{None} for always.
        @param reply: the reply to send instead of the server's own (one
            line, or several).  A 4xx/5xx reply refuses the command (a
            refused END-OF-DATA delivers nothing; a refused BDAT fails the
            transaction); a 2xx/3xx reply replaces the text of a success
            (the server's own error wins when the command fails anyway).
            A 421 reply closes the connection after it.
        @param close: close the connection after the reply.
        @param drop: close the connection without replying.
        @param abort: close with an abort (RST) rather than cleanly (with
            C{drop}, C{close} or C{dropAfter}).
        @param dropAfter: for DATA or BDAT: answer the command as usual, then
            close the connection without another word once this many octets
            of message data have arrived (or when the message is complete,
            before the final reply, if that comes first).
        @param stallAfter: like C{dropAfter}, but stall there (the server
            stops reading, so a long message blocks its writer) until
            L{release}, whose reply then replaces the reply to the data.
        @param stall: do nothing more on this connection, not even read,
            until L{release}; then go on normally, or with the reply given
            to L{release} (or this rule's C{reply}).
        @param delay: go on only after this many seconds (the command is
            handled then); for CONNECT, added to the endpoint's delay.
        @param refuse: for CONNECT: the attempt fails with
            C{ConnectionRefusedError}.
        @param hang: for CONNECT: the attempt never completes; cancelling it
            fails it with C{CancelledError}.
        @raise ValueError: for a combination that makes no sense.
        """
        verb = verb.upper()
        lines = _toLines(reply) if reply is not None else None
        if isinstance(match, str):
            match = match.encode("utf-8")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if verb == "CONNECT":
            if (
                lines is not None
                or close
                or drop
                or abort
                or stall
                or dropAfter is not None
                or stallAfter is not None
                or match is not None
                or transaction is not None
            ):
                raise ValueError("a CONNECT rule can only refuse, hang or delay")
            if refuse and hang:
                raise ValueError("refuse or hang, not both")
        elif refuse or hang:
            raise ValueError("refuse and hang are for CONNECT rules")
        if verb == "GREETING" and (match is not None or transaction is not None):
            raise ValueError("a GREETING rule has no argument or transaction")
        if dropAfter is not None or stallAfter is not None:
            if verb not in ("DATA", "BDAT"):
                raise ValueError("dropAfter and stallAfter are for DATA and BDAT")
            if dropAfter is not None and stallAfter is not None:
                raise ValueError("dropAfter or stallAfter, not both")
            if (dropAfter or 0) < 0 or (stallAfter or 0) < 0:
                raise ValueError("octet counts must not be negative")
        if drop and (lines is not None or close or stall or delay):
            raise ValueError("drop sends nothing: no reply, close, stall or delay")
        if stall and delay:
            raise ValueError("stall or delay, not both")
        if abort and not (drop or close or dropAfter is not None):
            raise ValueError("abort needs drop, close or dropAfter")
        rule = Rule(
            verb=verb,
            match=match,
            connection=connection,
            transaction=transaction,
            times=times,
            reply=lines,
            close=close,
            drop=drop,
            abort=abort,
            dropAfter=dropAfter,
            stallAfter=stallAfter,
            stall=stall,
            delay=delay,
            refuse=refuse,
            hang=hang,
        )
        self.rules.append(rule)
        return rule

    def findRule(
        self, verb: str, argument: bytes, connection: int, transaction: int
    ) -> Rule | None:
        """
        The first active rule that matches (see L{Rule.matches}), counted as
        fired; L{None} when none does.
        """
        for rule in self.rules:
            if rule.matches(verb, argument, connection, transaction):
                rule.fired += 1
                return rule
        return None

    # -- control ---------------------------------------------------------------------

    @property
    def stalled(self) -> list[int]:
        """
        The numbers of the connections stalled (or waiting out a delay).
        """
        return [
            r.number
            for r in self.connections
            if r.protocol is not None and r.protocol.isStalled
        ]

    def release(
        self,
        connection: int | None = None,
        reply: bytes | Sequence[bytes] | None = None,
    ) -> int:
        """
        Let stalled connections go on.

        @param connection: only this connection; by default every stalled one.
        @param reply: the reply to send for what stalled, instead of what the
            server (or the rule) would have said.
        @return: how many connections were released.
        @raise ValueError: when no such connection is stalled.
        """
        released = 0
        for record in list(self.connections):
            if connection is not None and record.number != connection:
                continue
            protocol = record.protocol
            if protocol is not None and protocol.isStalled:
                protocol.release(reply)
                released += 1
        if not released:
            raise ValueError(f"no stalled connection to release ({connection=})")
        return released

    def shutdown(
        self,
        reply: bytes | None = b"421 4.3.2 shutting down",
        connection: int | None = None,
        abort: bool = False,
    ) -> None:
        """
        Close every open connection (or only C{connection}) now, with
        C{reply} first (L{None}: without a word), stalled or not.
        """
        for record in list(self.connections):
            if record.protocol is not None and record.isOpen:
                if connection is None or record.number == connection:
                    record.protocol.shutdown(reply, abort=abort)

    # -- what it saw ------------------------------------------------------------------

    @property
    def openConnections(self) -> int:
        """
        How many connections are open now.
        """
        return sum(1 for r in self.connections if r.isOpen)

    def messagesPerConnection(self) -> list[int]:
        """
        How many messages each connection delivered, in connection order.
        """
        return [r.delivered for r in self.connections]

    # -- settings read by the protocol ------------------------------------------------

    def _offers(self, keyword: bytes) -> bool:
        return any(
            c.split(b" ", 1)[0].upper() == keyword.upper() for c in self.capabilities
        )

    @property
    def chunking(self) -> bool:
        """
        Whether CHUNKING is advertised (BDAT accepted).
        """
        return self._offers(b"CHUNKING")

    @property
    def enhancedStatusCodes(self) -> bool:
        """
        Whether ENHANCEDSTATUSCODES is advertised (the server's own replies
        carry enhanced codes).
        """
        return self._offers(b"ENHANCEDSTATUSCODES")

    @property
    def sizeLimit(self) -> int | None:
        """
        The advertised C{SIZE} limit (L{None} for none or 0).
        """
        for c in self.capabilities:
            words = c.split()
            if words and words[0].upper() == b"SIZE" and len(words) > 1:
                if words[1].isdigit() and int(words[1]):
                    return int(words[1])
        return None

    def buildProtocol(self, addr: IAddress | None) -> ScriptedServerProtocol:
        """
        A new connection's protocol, with its L{ConnectionRecord}.
        """
        record = ConnectionRecord(len(self.connections) + 1, self.clock.seconds())
        protocol = ScriptedServerProtocol(self, record)
        record.protocol = protocol
        self.connections.append(record)
        return protocol


# -- one connection ------------------------------------------------------------------


class _Mode(enum.Enum):
    COMMAND = "command"
    DATA = "data"
    CHUNK = "chunk"


@attrs.define(eq=False)
class _Transaction:
    number: int
    sender: str
    recipients: list[str] = attrs.Factory(list)
    data: list[bytes] = attrs.Factory(list)
    chunked: bool = False
    failed: bool = False


@attrs.define(eq=False)
class _Chunk:
    remaining: int
    last: bool
    override: Lines | None
    parts: list[bytes] = attrs.Factory(list)


@attrs.define(eq=False)
class _Trigger:
    remaining: int
    drop: bool
    abort: bool


_Handled = tuple[Lines, Callable[[], None] | None]


class ScriptedServerProtocol(Protocol):
    """
    The server side of one connection: a small SMTP server that follows
    the L{ScriptedServer}'s rules.

    Every complete line of each delivery is handled in order, and the
    replies to one delivery leave in one write.  It only needs a transport
    with C{pauseProducing}/C{resumeProducing} (to stop reading while
    stalled); any TCP transport will do.

    @ivar server: the shared L{ScriptedServer}.
    @ivar record: this connection's L{ConnectionRecord}.
    """

    def __init__(self, server: ScriptedServer, record: ConnectionRecord) -> None:
        """
        @param server: the shared server.
        @param record: this connection's record.
        """
        self.server = server
        self.record = record
        self._buffer = bytearray()
        self._out: list[bytes] = []
        self._mode = _Mode.COMMAND
        self._greeted = False
        self._refused = False
        self._helo: str | None = None
        self._extended = False
        self._tx: _Transaction | None = None
        self._chunk: _Chunk | None = None
        self._trigger: _Trigger | None = None
        self._dataOverride: Lines | None = None
        self._held: Callable[[Lines | None], None] | None = None
        self._holdCall: IDelayedCall | None = None
        self._idleCall: IDelayedCall | None = None
        self._quit = False
        self._closing = False
        self._blackholed = False
        self._processing = False

    # -- public --------------------------------------------------------------------

    @property
    def isStalled(self) -> bool:
        """
        Whether the connection waits for L{release} (or a delay).
        """
        return self._held is not None and not self._closing

    def release(self, reply: bytes | Sequence[bytes] | None = None) -> None:
        """
        Go on after a stall (or end a delay early), with C{reply} instead of
        the reply due, if given.

        @raise ValueError: when the connection is not stalled.
        """
        if self._held is None or self._closing:
            raise ValueError(f"connection {self.record.number} is not stalled")
        run, self._held = self._held, None
        self._cancelHoldCall()
        resume = getattr(self.transport, "resumeProducing", None)
        if resume is not None:
            resume()
        run(_toLines(reply) if reply is not None else None)
        self._process()
        self._touch()

    def shutdown(
        self, reply: bytes | None = b"421 4.3.2 shutting down", abort: bool = False
    ) -> None:
        """
        Close now, with C{reply} first (L{None}: without a word).
        """
        if self._closing:
            return
        if reply is not None:
            self._out.extend(line + b"\r\n" for line in _toLines(reply))
        self._close(abort)

    # -- connection events ---------------------------------------------------------

    def connectionMade(self) -> None:
        """
        Greet (as the script says).
        """
        self.record.openedAt = self.server.clock.seconds()
        rule = self.server.findRule("GREETING", b"", self.record.number, 0)
        self._apply(rule, self._greet)
        self._process()

    def dataReceived(self, data: bytes) -> None:
        """
        Handle every complete line (or chunk of data) in order.
        """
        if self._closing or self._blackholed:
            return
        self._buffer += data
        self._touch()
        self._process()

    def connectionLost(self, reason: Failure = Failure(ConnectionDone())) -> None:  # noqa: B008
        """
        Record who closed the connection, and when.
        """
        self._closing = True
        self._held = None
        self._cancelHoldCall()
        self._stopIdle()
        record = self.record
        if record.closedAt is None:
            record.closedAt = self.server.clock.seconds()
        if record.closedBy is None:
            if self._quit:
                record.closedBy = "client-quit"
            elif reason.check(ConnectionDone):
                record.closedBy = "client-close"
            else:
                record.closedBy = "client-abort"

    # -- the loop ---------------------------------------------------------------------

    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            while (
                self._greeted
                and not self._closing
                and not self._blackholed
                and self._held is None
            ):
                if self._mode is _Mode.COMMAND:
                    going = self._commandStep()
                elif self._mode is _Mode.DATA:
                    going = self._dataStep()
                else:
                    going = self._chunkStep()
                if not going:
                    break
        finally:
            self._processing = False
        self._flush()

    def _flush(self) -> None:
        if self._out and self.transport is not None:
            data = b"".join(self._out)
            self._out.clear()
            self.transport.write(data)

    def _reply(self, lines: Lines) -> None:
        self._out.extend(line + b"\r\n" for line in lines)
        if _code(lines) == 421:
            self._close()

    def _r(self, code: int, enhanced: str, text: str) -> Lines:
        if self.server.enhancedStatusCodes:
            return (f"{code} {enhanced} {text}".encode(),)
        return (f"{code} {text}".encode(),)

    def _apply(self, rule: Rule | None, action: Callable[[Lines | None], None]) -> None:
        """
        Do C{action} as C{rule} says: at once, after a stall or a delay, or
        not at all (drop).  C{action} gets the reply to send instead of its
        own, if any.
        """
        if rule is None:
            action(None)
            return
        if rule.drop:
            self._close(rule.abort)
            return

        def run(override: Lines | None) -> None:
            action(override if override is not None else rule.reply)
            if rule.close:
                self._close(rule.abort)

        if rule.stall:
            self._hold(run, None)
        elif rule.delay:
            self._hold(run, rule.delay)
        else:
            run(None)

    def _hold(self, run: Callable[[Lines | None], None], delay: float | None) -> None:
        self._held = run
        self._stopIdle()
        pause = getattr(self.transport, "pauseProducing", None)
        if pause is not None:
            pause()
        if delay is not None:
            self._holdCall = self.server.clock.callLater(delay, self._delayOver)

    def _delayOver(self) -> None:
        self._holdCall = None
        if self._held is not None and not self._closing:
            self.release()

    def _cancelHoldCall(self) -> None:
        if self._holdCall is not None:
            if self._holdCall.active():
                self._holdCall.cancel()
            self._holdCall = None

    def _close(self, abort: bool = False) -> None:
        if self._closing:
            return
        self._closing = True
        self._flush()
        self._held = None
        self._cancelHoldCall()
        self._stopIdle()
        if self.record.closedBy is None:
            self.record.closedBy = "client-quit" if self._quit else "server"
        transport = self.transport
        if transport is None:
            return
        abortConnection = getattr(transport, "abortConnection", None)
        if abort and abortConnection is not None:
            abortConnection()
        else:
            transport.loseConnection()

    # -- idle -------------------------------------------------------------------------

    def _stopIdle(self) -> None:
        if self._idleCall is not None:
            if self._idleCall.active():
                self._idleCall.cancel()
            self._idleCall = None

    def _touch(self) -> None:
        self._stopIdle()
        timeout = self.server.idleTimeout
        if (
            timeout is None
            or not self._greeted
            or self._closing
            or self._blackholed
            or self._held is not None
        ):
            return
        self._idleCall = self.server.clock.callLater(timeout, self._idle)

    def _idle(self) -> None:
        self._idleCall = None
        if self.server.idleBlackhole:
            self._blackholed = True
            return
        if not self.server.idleSilent:
            self._out.extend(line + b"\r\n" for line in _toLines(self.server.idleReply))
        self._close()

    # -- greeting and commands --------------------------------------------------------

    def _greet(self, override: Lines | None) -> None:
        lines = override if override is not None else _toLines(self.server.greeting)
        self._greeted = True
        self._refused = _code(lines) != 220
        self._reply(lines)
        self._touch()

    def _commandStep(self) -> bool:
        end = self._buffer.find(b"\n")
        if end < 0:
            return False
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 1]
        if line.endswith(b"\r"):
            line = line[:-1]
        self.record.commands.append(line.decode("utf-8", "replace"))
        head, _, argument = line.partition(b" ")
        verb = head.decode("ascii", "replace").upper()
        if verb == "MAIL":
            self.record.transactions += 1
        rule = self.server.findRule(
            verb, argument, self.record.number, self.record.transactions
        )
        self._apply(
            rule, lambda override: self._execute(verb, argument, override, rule)
        )
        return True

    def _execute(
        self, verb: str, argument: bytes, override: Lines | None, rule: Rule | None
    ) -> None:
        if verb == "BDAT":
            self._startChunk(argument, override, rule)
            return
        if self._refused and verb != "QUIT":
            lines, commit = self._r(503, "5.5.1", "No SMTP service here"), None
        else:
            lines, commit = self._handle(verb, argument.strip(), rule)
        if override is not None:
            if _code(override) >= 400:
                lines, commit = override, None
            elif commit is not None:
                lines = override
        if commit is not None:
            commit()
        self._reply(lines)
        if verb == "QUIT" and commit is not None:
            self._close()

    def _handle(self, verb: str, argument: bytes, rule: Rule | None) -> _Handled:
        r = self._r
        if verb == "EHLO" or verb == "HELO":
            if not argument:
                return r(501, "5.5.4", f"Syntax: {verb} hostname"), None
            return self._hello(verb, argument.decode("utf-8", "replace"))
        if verb == "MAIL":
            return self._mail(argument)
        if verb == "RCPT":
            return self._rcpt(argument)
        if verb == "DATA":
            return self._data(rule)
        if verb == "RSET":
            return r(250, "2.0.0", "Ok"), self._reset
        if verb == "NOOP":
            return r(250, "2.0.0", "Ok"), None
        if verb == "VRFY":
            if not argument:
                return r(501, "5.5.4", "Syntax: VRFY address"), None
            return r(252, "2.5.2", "Cannot VRFY user, but will accept message"), None
        if verb == "QUIT":

            def markQuit() -> None:
                self._quit = True

            return r(221, "2.0.0", "Bye"), markQuit
        if verb in ("STARTTLS", "AUTH", "EXPN", "HELP", "ETRN", "TURN"):
            return r(502, "5.5.1", "Command not implemented"), None
        return r(500, "5.5.2", "Command unrecognized"), None

    def _reset(self) -> None:
        self._tx = None
        self._dataOverride = None

    def _hello(self, verb: str, name: str) -> _Handled:
        def commit() -> None:
            self._reset()
            self._helo = name
            self._extended = verb == "EHLO"

        host = self.server.hostname.encode()
        if verb == "HELO":
            return (b"250 " + host,), commit
        keywords = self.server.capabilities
        lines = [b"250-" + host] + [b"250-" + k for k in keywords]
        lines[-1] = b"250 " + lines[-1][4:]
        return tuple(lines), commit

    def _mail(self, argument: bytes) -> _Handled:
        r = self._r
        if self._helo is None:
            return r(503, "5.5.1", "Send EHLO or HELO first"), None
        if self._tx is not None:
            return r(503, "5.5.1", "Nested MAIL command"), None
        parsed = _ADDRESS.match(argument)
        if parsed is None or parsed.group(1).upper() != b"FROM":
            return r(501, "5.5.4", "Syntax: MAIL FROM:<address>"), None
        limit = self.server.sizeLimit
        for parameter in parsed.group(3).split():
            key, _, value = parameter.partition(b"=")
            if key.upper() == b"SIZE" and value.isdigit() and limit is not None:
                if int(value) > limit:
                    return r(552, "5.3.4", "Message size exceeds fixed limit"), None
        sender = parsed.group(2).decode("utf-8", "replace")
        number = self.record.transactions

        def commit() -> None:
            self._tx = _Transaction(number, sender)

        return r(250, "2.1.0", "Ok"), commit

    def _rcpt(self, argument: bytes) -> _Handled:
        r = self._r
        tx = self._tx
        if tx is None:
            return r(503, "5.5.1", "Need MAIL before RCPT"), None
        if tx.chunked:
            return r(503, "5.5.1", "RCPT after BDAT"), None
        parsed = _ADDRESS.match(argument)
        if parsed is None or parsed.group(1).upper() != b"TO" or not parsed.group(2):
            return r(501, "5.5.4", "Syntax: RCPT TO:<address>"), None
        address = parsed.group(2).decode("utf-8", "replace")
        return r(250, "2.1.5", "Ok"), lambda: tx.recipients.append(address)

    def _data(self, rule: Rule | None) -> _Handled:
        r = self._r
        tx = self._tx
        if tx is None:
            return r(503, "5.5.1", "Need MAIL command"), None
        if tx.chunked:
            return r(503, "5.5.1", "DATA after BDAT"), None
        if not tx.recipients:
            return r(554, "5.5.1", "No valid recipients"), None

        def commit() -> None:
            self._mode = _Mode.DATA
            self._arm(rule)

        return (b"354 End data with <CR><LF>.<CR><LF>",), commit

    # -- message data -----------------------------------------------------------------

    def _arm(self, rule: Rule | None) -> None:
        if rule is None:
            return
        if rule.dropAfter is not None:
            self._trigger = _Trigger(rule.dropAfter, drop=True, abort=rule.abort)
        elif rule.stallAfter is not None:
            self._trigger = _Trigger(rule.stallAfter, drop=False, abort=False)

    def _fire(self, then: Callable[[], None]) -> None:
        """
        The armed trigger fires: drop, or stall until released (then do
        C{then}; the release's reply replaces the reply to the data).
        """
        trigger = self._trigger
        assert trigger is not None
        self._trigger = None
        if trigger.drop:
            self._close(trigger.abort)
            return

        def resume(override: Lines | None) -> None:
            if override is not None:
                self._dataOverride = override
            then()

        self._hold(resume, None)

    def _dataStep(self) -> bool:
        trigger = self._trigger
        end = self._buffer.find(b"\n")
        if trigger is not None:
            available = end + 1 if end >= 0 else len(self._buffer)
            if available > trigger.remaining or (
                end < 0 and available >= trigger.remaining
            ):
                self._fire(lambda: None)
                return False
        if end < 0:
            return False
        line = bytes(self._buffer[: end + 1])
        del self._buffer[: end + 1]
        if trigger is not None:
            trigger.remaining -= len(line)
        if line in (b".\r\n", b".\n"):
            if self._trigger is not None:
                self._fire(self._endOfData)
                return False
            self._endOfData()
            return True
        if line.startswith(b"."):
            line = line[1:]
        assert self._tx is not None
        self._tx.data.append(line)
        return True

    def _startChunk(
        self, argument: bytes, override: Lines | None, rule: Rule | None
    ) -> None:
        words = argument.split()
        if (
            not 1 <= len(words) <= 2
            or not words[0].isdigit()
            or (len(words) == 2 and words[1].upper() != b"LAST")
        ):
            self._reply(self._r(501, "5.5.4", "Syntax: BDAT size [LAST]"))
            return
        self._chunk = _Chunk(int(words[0]), len(words) == 2, override)
        self._mode = _Mode.CHUNK
        self._arm(rule)

    def _chunkStep(self) -> bool:
        chunk = self._chunk
        assert chunk is not None
        trigger = self._trigger
        if trigger is not None and trigger.remaining == 0:
            self._fire(lambda: None)
            return False
        if chunk.remaining:
            if not self._buffer:
                return False
            take = min(len(self._buffer), chunk.remaining)
            if trigger is not None:
                take = min(take, trigger.remaining)
                trigger.remaining -= take
            chunk.parts.append(bytes(self._buffer[:take]))
            del self._buffer[:take]
            chunk.remaining -= take
            return True
        if trigger is not None and chunk.last:
            self._fire(self._chunkDone)
            return False
        self._chunkDone()
        return True

    def _chunkDone(self) -> None:
        chunk = self._chunk
        assert chunk is not None
        self._chunk = None
        self._mode = _Mode.COMMAND
        tx = self._tx
        r = self._r
        error: Lines | None = None
        if not self._extended or not self.server.chunking:
            error = r(502, "5.5.1", "BDAT not offered")
        elif self._refused:
            error = r(503, "5.5.1", "No SMTP service here")
        elif tx is None:
            error = r(503, "5.5.1", "Need MAIL command")
        elif not tx.recipients:
            error = r(554, "5.5.1", "No valid recipients")
        elif tx.failed:
            error = r(503, "5.5.1", "An earlier chunk failed: send RSET")
        if error is not None or tx is None:
            if tx is not None:
                tx.failed = True
            self._dataOverride = None
            override = chunk.override
            if override is not None and _code(override) >= 400:
                error = override
            assert error is not None
            self._reply(error)
            return
        tx.chunked = True
        tx.data.append(b"".join(chunk.parts))
        if chunk.last:
            if self._dataOverride is None:
                self._dataOverride = chunk.override
            self._endOfData()
            return
        override = self._dataOverride or chunk.override
        self._dataOverride = None
        size = sum(len(p) for p in chunk.parts)
        lines = r(250, "2.0.0", f"{size} octets received")
        if override is not None:
            if _code(override) >= 400:
                tx.failed = True
            lines = override
        self._reply(lines)

    def _endOfData(self) -> None:
        self._mode = _Mode.COMMAND
        tx = self._tx
        assert tx is not None
        rule = self.server.findRule(
            "END-OF-DATA", b"".join(tx.data), self.record.number, tx.number
        )
        self._apply(rule, self._finish)

    def _finish(self, override: Lines | None) -> None:
        tx = self._tx
        assert tx is not None
        self._tx = None
        if override is None:
            override = self._dataOverride
        self._dataOverride = None
        data = b"".join(tx.data)
        limit = self.server.sizeLimit
        n = self.record.number
        if limit is not None and len(data) > limit:
            lines, ok = self._r(552, "5.3.4", "Message size exceeds fixed limit"), False
        else:
            lines = self._r(250, "2.0.0", f"Ok: queued as C{n}T{tx.number}")
            ok = True
        if override is not None:
            if _code(override) >= 400:
                ok = False
                lines = override
            elif ok:
                lines = override
        if ok:
            self.server.deliveries.append(
                Delivery(n, tx.number, tx.sender, tuple(tx.recipients), data)
            )
            self.record.delivered += 1
        self._reply(lines)


# -- the endpoint --------------------------------------------------------------------


@implementer(IStreamClientEndpoint)
class MemoryEndpoint:
    """
    A client endpoint whose every C{connect} joins the factory's protocol to
    a new connection of a L{ScriptedServer}, in memory.

    Connecting takes C{delay} seconds on the clock (and a CONNECT rule may
    add to it, refuse the attempt, or leave it pending until cancelled).

    @ivar attempts: how many times C{connect} was called here.
    """

    def __init__(
        self,
        clock: IReactorTime,
        server: ScriptedServer,
        *,
        delay: float = 0.0,
        latency: float = 0.0,
        window: int = DEFAULT_WINDOW,
        serverAddress: IPv4Address | None = None,
        clientHost: str = "192.0.2.1",
    ) -> None:
        """
        @param clock: the clock that moves everything.
        @param server: the server to connect to.
        @param delay: seconds a connection attempt takes.
        @param latency: seconds from a write to its arrival, both ways.
        @param window: see L{MemoryTransport}.
        @param serverAddress: the server's address (192.0.2.25 port 25).
        @param clientHost: the client's IPv4 address (its port is 40000 plus
            the connection's number).
        """
        self.clock = clock
        self.server = server
        self.delay = delay
        self.latency = latency
        self.window = window
        self.serverAddress = serverAddress or IPv4Address("TCP", "192.0.2.25", 25)
        self.clientHost = clientHost
        self.attempts = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Connect a protocol built by C{protocolFactory} to the server.

        @return: a Deferred that fires with the connected protocol (its
            C{connectionMade} has run), or fails with
            C{ConnectionRefusedError} (a CONNECT rule refused it),
            C{CancelledError} (cancelled before it connected), or what
            C{buildProtocol} raised (C{NoProtocol} when it returned L{None}).
        """
        self.attempts += 1
        server = self.server
        server.connectAttempts += 1
        rule = server.findRule("CONNECT", b"", server.connectAttempts, 0)
        if rule is not None and rule.hang:
            return Deferred()
        call: IDelayedCall | None = None

        def cancel(d: Deferred[IProtocol]) -> None:
            if call is not None and call.active():
                call.cancel()

        d: Deferred[IProtocol] = Deferred(cancel)

        def attempt() -> None:
            if rule is not None and rule.refuse:
                d.errback(ConnectionRefusedError("refused by the script"))
                return
            try:
                protocol = self._establish(protocolFactory)
            except BaseException:
                d.errback()
                return
            d.callback(protocol)

        delay = self.delay + (rule.delay if rule is not None else 0.0)
        call = self.clock.callLater(delay, attempt)
        return d

    def _establish(self, factory: IProtocolFactory) -> IProtocol:
        number = len(self.server.connections) + 1
        clientAddress = IPv4Address("TCP", self.clientHost, 40000 + number)
        client = factory.buildProtocol(self.serverAddress)
        if client is None:
            raise NoProtocol()
        clientTransport = MemoryTransport(
            self.clock,
            clientAddress,
            self.serverAddress,
            latency=self.latency,
            window=self.window,
        )
        serverTransport = MemoryTransport(
            self.clock,
            self.serverAddress,
            clientAddress,
            latency=self.latency,
            window=self.window,
        )
        clientTransport.peer = serverTransport
        serverTransport.peer = clientTransport
        server = self.server.buildProtocol(clientAddress)
        server.record.serverTransport = serverTransport
        server.record.clientTransport = clientTransport
        clientTransport.protocol = client
        serverTransport.protocol = server
        server.makeConnection(serverTransport)
        client.makeConnection(clientTransport)
        return client
