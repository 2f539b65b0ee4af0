"""
Test your own mail-sending code without sockets: an SMTP server in memory
that you script, and an outbox that records what it accepted.

Code that sends mail with L{mailclient.sendmail}, L{mailclient.Mailer} or
L{mailclient.ESMTPClient} takes an C{endpoint} and a C{reactor}.  In its
tests, give it a L{MemoryEndpoint} to a L{ScriptedServer} and a
C{twisted.internet.task.Clock}: nothing touches the network, nothing waits
for real time, and every run is the same.  Say how the server should
behave (reject a recipient, defer one, answer slowly, hang up, ask for
AUTH), run the clock with L{settle} or L{runFor}, then look at what your
code got back and at what the server received::

    from twisted.internet.task import Clock

    from mailclient import sendmail
    from mailclient.testing import MemoryEndpoint, ScriptedServer, settle


    def notify(addresses, *, endpoint=None, reactor=None):
        # The code under test.
        message = b"Subject: build done\\r\\n\\r\\nAll green.\\r\\n"
        return sendmail(
            None, "ci@example.com", addresses, message,
            endpoint=endpoint, reactor=reactor,
        )


    def test_notifyReportsTheRejectedRecipient():
        clock = Clock()
        server = ScriptedServer(clock)
        server.rejectRecipient("gone@example.com")

        results = []
        notify(
            ["dev@example.com", "gone@example.com"],
            endpoint=MemoryEndpoint(clock, server),
            reactor=clock,
        ).addBoth(results.append)
        settle(clock)  # the whole session runs now

        [result] = results
        assert result.recipients["gone@example.com"].code == 550
        [delivery] = server.outbox
        assert delivery.recipients == ("dev@example.com",)
        assert delivery.message["Subject"] == "build done"

What is here:

  - L{ScriptedServer}: the server's settings, its script (L{Rule}s, added
    with L{ScriptedServer.rule} or the shortcuts such as
    L{ScriptedServer.rejectRecipient}), and what it saw: the L{Outbox} of
    L{Delivery}s and a L{ConnectionRecord} per connection.  It speaks EHLO,
    HELO, MAIL, RCPT, DATA, BDAT (with CHUNKING), RSET, NOOP, VRFY, QUIT,
    AUTH PLAIN and LOGIN (with C{credentials}) and STARTTLS (with
    C{tlsOptions}).  It is also a protocol factory: listen with it on a
    real port (C{reactor.listenTCP(0, server, interface="127.0.0.1")},
    with the reactor as its clock) to test code that cannot take an
    endpoint.  It can also be hostile, to test a client's defences: raw
    and injected bytes (C{raw=}, C{extra=} on a rule), unsolicited replies
    (L{ScriptedServer.unsolicited}), replies in pieces or one slow byte at
    a time (C{splitReplies}, C{byteDelay}), and a man in the middle that
    strips capabilities or refuses STARTTLS (C{stripCapabilities},
    C{refuseStartTLS}).
  - L{ScriptedServerProtocol}: one connection's server side.
  - L{MemoryEndpoint}: a client endpoint whose every C{connect} joins the
    client's protocol to a new connection of the server, through a pair of
    L{MemoryTransport}s (which can also switch to TLS, so STARTTLS works in
    memory).
  - L{settle} and L{runFor}: run the clock.

Bytes never move inside C{write}: each write reaches the peer from a call
on the clock, so nothing happens until the test runs the clock.  The rules
are checked in the order they were added; the first active one that
matches fires (see L{ScriptedServer.rule}).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import enum
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Literal, cast

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
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
    IProducer,
    IProtocol,
    IProtocolFactory,
    IPullProducer,
    IPushProducer,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
    ITLSTransport,
    ITransport,
)
from twisted.internet.protocol import Factory, Protocol, ServerFactory
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

__all__ = [
    "DEFAULT_CAPABILITIES",
    "DEFAULT_WINDOW",
    "CloseReason",
    "ConnectionRecord",
    "Delivery",
    "MemoryEndpoint",
    "MemoryTransport",
    "Outbox",
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
What L{ScriptedServer} advertises in its EHLO reply unless told otherwise
(AUTH and STARTTLS are added when the server is given credentials or TLS
options).
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
(a 421, a scripted disconnect, the idle timeout, L{ScriptedServer.shutdown}).
"""

Lines = tuple[bytes, ...]

# The SASL mechanisms the server knows.
_MECHANISMS = ("PLAIN", "LOGIN")
_REDACTED = "****"

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


@implementer(ITLSTransport, IConsumer, IPushProducer)
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

    C{startTLS} works as on a real TCP transport: from then on, what is
    written is encrypted (with C{twisted.protocols.tls}, timed by the same
    clock) and what arrives is decrypted, the transport provides
    C{ISSLTransport}, and C{getHandle} returns the C{OpenSSL.SSL.Connection}.

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
    @ivar tlsClient: whether this end is the TLS client when C{startTLS}
        is called (with C{normal} true).
    """

    def __init__(
        self,
        clock: IReactorTime,
        host: IPv4Address,
        peerAddress: IPv4Address,
        *,
        latency: float = 0.0,
        window: int = DEFAULT_WINDOW,
        tlsClient: bool = False,
    ) -> None:
        """
        @param clock: the clock that moves the bytes.
        @param host: this end's address.
        @param peerAddress: the other end's address.
        @param latency: seconds from a write to its arrival.
        @param window: the most bytes in flight before the producer waits.
        @param tlsClient: whether this end is the TLS client (the one that
            sends the ClientHello) when C{startTLS} is called.
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
        self.tlsClient = tlsClient
        self._tls: TLSMemoryBIOProtocol | None = None
        self._tlsPull: _ClockPullToPush | None = None

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

    @property
    def tls(self) -> bool:
        """
        Whether C{startTLS} was called: what is written now is encrypted.
        """
        return self._tls is not None

    def write(self, data: bytes) -> None:
        """
        Send C{data}; it arrives later.  Ignored once the connection is
        closing (after the end of the stream was queued) or lost.
        """
        if not isinstance(data, bytes):
            raise TypeError(f"data must be bytes, not {type(data).__name__}")
        if self._tls is not None:
            if not (self.disconnected or self._aborted):
                self._tls.write(data)
            return
        self._rawWrite(data)

    def _rawWrite(self, data: bytes) -> None:
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
        With TLS, the TLS session is shut down first.
        """
        if self._tls is not None:
            if not (self.disconnected or self._aborted):
                self._tls.loseConnection()
            return
        self._rawLoseConnection()

    def _rawLoseConnection(self) -> None:
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
        if self._tls is not None:
            if self.disconnected or self._aborted:
                producer.stopProducing()
            elif streaming:
                self._tls.registerProducer(producer, True)
            else:
                # TLS would drive a pull producer with the global reactor's
                # cooperator; drive it with this clock instead.
                pull = _ClockPullToPush(cast(IPullProducer, producer), self.clock)
                self._tls.registerProducer(pull, True)
                self._tlsPull = pull
                pull.start()
            return
        self._rawRegisterProducer(producer, streaming)

    def _rawRegisterProducer(self, producer: IProducer, streaming: bool) -> None:
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
        if self._tls is not None:
            pull, self._tlsPull = self._tlsPull, None
            if pull is not None:
                pull.stop()
            self._tls.unregisterProducer()
            return
        self._rawUnregisterProducer()

    def _rawUnregisterProducer(self) -> None:
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

    # -- ITLSTransport -----------------------------------------------------------------

    def startTLS(
        self,
        contextFactory: IOpenSSLClientConnectionCreator
        | IOpenSSLServerConnectionCreator,
        normal: bool = True,
    ) -> None:
        """
        Switch to TLS: from now on, what is written is encrypted and what
        arrives is decrypted.  This end is the TLS client when
        L{tlsClient} is true (the other way round when C{normal} is
        false).

        @param contextFactory: C{optionsForClientTLS(...)} for a client,
            C{CertificateOptions} (such as C{PrivateCertificate.options()})
            for a server.
        @raise RuntimeError: when TLS was started already.
        """
        if self._tls is not None:
            raise RuntimeError("TLS was started already")
        isClient = self.tlsClient if normal else not self.tlsClient
        producer, streaming = self.producer, self.streaming
        if producer is not None:
            self._rawUnregisterProducer()
        factory = TLSMemoryBIOFactory(
            contextFactory, isClient, Factory(), clock=self.clock
        )
        assert self.protocol is not None
        tls = factory.protocol(factory, self.protocol, False)
        self.protocol = tls
        self._tls = tls
        alsoProvides(self, ISSLTransport)
        tls.makeConnection(_RawEnd(self))
        if producer is not None:
            self.registerProducer(producer, streaming)

    def getHandle(self) -> Any:
        """
        The C{OpenSSL.SSL.Connection} once TLS was started, else L{None}.
        """
        return self._tls.getHandle() if self._tls is not None else None

    def getPeerCertificate(self) -> Any:
        """
        The peer's certificate (an C{OpenSSL.crypto.X509}) once TLS is up
        and the peer sent one, else L{None}.
        """
        return self._tls.getPeerCertificate() if self._tls is not None else None

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


class _RawEnd:
    """
    What the TLS layer of a L{MemoryTransport} writes to: the transport
    without its TLS.
    """

    def __init__(self, transport: MemoryTransport) -> None:
        self._transport = transport

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)

    def write(self, data: bytes) -> None:
        self._transport._rawWrite(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self._transport._rawWrite(b"".join(data))

    def loseConnection(self) -> None:
        self._transport._rawLoseConnection()

    def registerProducer(self, producer: IProducer, streaming: bool) -> None:
        self._transport._rawRegisterProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._transport._rawUnregisterProducer()


@implementer(IPushProducer)
class _ClockPullToPush:
    """
    A push producer that asks a pull producer for more from calls on a
    clock while it is not paused (C{twisted.protocols.tls} would use the
    global reactor's cooperator).
    """

    def __init__(self, producer: IPullProducer, clock: IReactorTime) -> None:
        self._producer = producer
        self._clock = clock
        self._paused = False
        self._stopped = False
        self._call: IDelayedCall | None = None

    def start(self) -> None:
        self._schedule()

    def stop(self) -> None:
        self._stopped = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _schedule(self) -> None:
        if self._call is None and not self._paused and not self._stopped:
            self._call = self._clock.callLater(0, self._pull)

    def _pull(self) -> None:
        self._call = None
        if self._paused or self._stopped:
            return
        self._producer.resumeProducing()
        self._schedule()

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self.stop()
        self._producer.stopProducing()


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


def _checkRefusal(code: int) -> None:
    if not 400 <= code <= 599:
        raise ValueError(f"a refusal's code is 4xx or 5xx, not {code}")


@attrs.define(eq=False)
class Rule:
    """
    One step of the script; made by L{ScriptedServer.rule} (or one of its
    shortcuts), which documents the fields.  Change C{times} to make a
    rule fire more or less often; the other fields are best left alone.

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
    status: tuple[int, str, str] | None = None
    raw: bytes | None = None
    extra: bytes | None = None
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
    A message the server accepted (its final reply was 2xx).

    @ivar connection: the number of the connection that carried it (from 1).
    @ivar transaction: its transaction number on that connection (from 1:
        the count of MAIL commands so far).
    @ivar sender: the reverse-path of MAIL FROM (C{""} for the null sender).
    @ivar recipients: the recipients the server accepted, in order.
    @ivar data: the message as received, dot-stuffing undone (lines end with
        CRLF as the client sent them); for BDAT, the chunks joined.
    @ivar authenticatedAs: the user the client authenticated as with AUTH
        on that connection, or L{None}.
    @ivar tls: whether the message came over TLS (after STARTTLS).
    """

    connection: int
    transaction: int
    sender: str
    recipients: tuple[str, ...]
    data: bytes
    authenticatedAs: str | None = None
    tls: bool = False

    @property
    def message(self) -> EmailMessage:
        """
        The message parsed with C{email.policy.default} (a new
        C{EmailMessage} at each access): C{delivery.message["Subject"]},
        C{delivery.message.get_body()}, ...
        """
        return email.message_from_bytes(self.data, policy=email.policy.default)


class Outbox(list[Delivery]):
    """
    Every message a L{ScriptedServer} accepted, as L{Delivery}s in the order
    of their final replies: a list, with a few helpers.
    """

    def to(self, address: str) -> list[Delivery]:
        """
        The deliveries that C{address} is a recipient of (case does not
        matter), in order.
        """
        wanted = address.casefold()
        return [d for d in self if any(r.casefold() == wanted for r in d.recipients)]

    def messages(self) -> list[EmailMessage]:
        """
        Every delivery's L{Delivery.message}, in order.
        """
        return [d.message for d in self]


@attrs.define(eq=False)
class ConnectionRecord:
    """
    One connection as the server saw it.

    @ivar number: its number, from 1, in the order the connections opened.
    @ivar openedAt: the clock's time when it opened.
    @ivar closedAt: the clock's time when the server lost it, or L{None}.
    @ivar closedBy: a L{CloseReason}, once it closed.
    @ivar commands: every command line received, decoded (message data
        excluded; BDAT lines included).  Credentials are never recorded:
        an AUTH command's initial response, and every line of an AUTH
        exchange but a cancelling C{*}, read C{****}.
    @ivar delivered: how many messages it delivered.
    @ivar transactions: how many MAIL commands it received.
    @ivar authenticatedAs: the user the client authenticated as, once it
        did (L{None} again after STARTTLS, which forgets it).
    @ivar tls: whether the connection switched to TLS (STARTTLS).
    @ivar protocol: the server's protocol for it.
    @ivar serverTransport: the server's end of the connection (a
        L{MemoryTransport} in memory, the reactor's transport on a real
        port).
    @ivar clientTransport: the client's end of the connection in memory;
        L{None} on a real port.
    """

    number: int
    openedAt: float
    closedAt: float | None = None
    closedBy: CloseReason | None = None
    commands: list[str] = attrs.Factory(list)
    delivered: int = 0
    transactions: int = 0
    authenticatedAs: str | None = None
    tls: bool = False
    protocol: ScriptedServerProtocol | None = attrs.field(default=None, repr=False)
    serverTransport: ITransport | None = attrs.field(default=None, repr=False)
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


class ScriptedServer(ServerFactory):
    """
    A small SMTP server that does what its script says: its settings, its
    L{Rule}s, and what it saw, shared by every connection (each
    connection's protocol is a L{ScriptedServerProtocol}).

    Connect to it in memory with a L{MemoryEndpoint}; or, as it is a
    protocol factory, listen with it on a real port, with the reactor as
    its clock::

        server = ScriptedServer(reactor)
        port = reactor.listenTCP(0, server, interface="127.0.0.1")

    Unless scripted otherwise it accepts every sender, recipient and
    message, and puts each message in its L{outbox}.

    @ivar clock: the clock for delays and the idle timeout.
    @ivar hostname: the server's name in its replies.
    @ivar greeting: the greeting line.
    @ivar capabilities: the EHLO keywords (with their parameters), in order;
        change it freely (it is read at every EHLO).  AUTH and STARTTLS are
        added to the reply when configured, unless listed here.
    @ivar idleTimeout: seconds without input after which the server gives
        up on a connection, or L{None} for never.
    @ivar idleReply: what it says then (then it closes).
    @ivar idleSilent: close without a word instead.
    @ivar idleBlackhole: instead, stop answering and keep the connection
        open (half-open, as after a lost peer).
    @ivar credentials: the user names and passwords AUTH accepts, or
        L{None} for no AUTH.
    @ivar authMechanisms: the SASL mechanisms offered with C{credentials}.
    @ivar requireAuth: whether MAIL is refused before AUTH.
    @ivar tlsOptions: the server's TLS options for STARTTLS, or L{None}
        for no STARTTLS.
    @ivar stripCapabilities: EHLO keywords (such as C{b"STARTTLS"} or
        C{b"AUTH"}, compared without case and without parameters) removed
        from every EHLO reply, those added for C{credentials} and
        C{tlsOptions} included, as a man in the middle would; the commands
        themselves still work.  Change it freely.
    @ivar refuseStartTLS: when not L{None}, the reply to every STARTTLS
        (a 4xx/5xx reply such as C{b"454 4.7.0 not now"}), and STARTTLS is
        advertised (even without C{tlsOptions}) until TLS is up.
    @ivar splitReplies: when not L{None}, everything the server sends
        leaves in pieces of at most this many bytes, each its own write
        (so each arrives in its own C{dataReceived}).
    @ivar byteDelay: when positive, a slow server: everything it sends
        leaves one byte at a time (or C{splitReplies} bytes at a time), each
        piece C{byteDelay} seconds after the previous one on the clock.  A
        scripted close, and the switch to TLS after the 220 to STARTTLS,
        wait until everything before them has left.
    @ivar rules: the script, in order.
    @ivar deliveries: the L{Outbox}: every L{Delivery}, in order (also
        L{outbox}).
    @ivar connections: a L{ConnectionRecord} per connection, in order.
    @ivar connectAttempts: how many times an endpoint tried to connect.
    """

    noisy = False

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
        credentials: Mapping[str, str] | None = None,
        authMechanisms: Sequence[str] = ("PLAIN", "LOGIN"),
        requireAuth: bool = False,
        tlsOptions: IOpenSSLServerConnectionCreator | None = None,
        stripCapabilities: Iterable[bytes] = (),
        refuseStartTLS: bytes | None = None,
        splitReplies: int | None = None,
        byteDelay: float = 0.0,
    ) -> None:
        """
        @param clock: the clock for delays and the idle timeout: a
            C{twisted.internet.task.Clock} in memory, the reactor on a real
            port.
        @param hostname: the server's name (C{mx.test}).
        @param greeting: the greeting line (C{220 mx.test ESMTP}); a GREETING
            rule can change it per connection.
        @param capabilities: the EHLO keywords (L{DEFAULT_CAPABILITIES}).
        @param chunking: also advertise CHUNKING (BDAT).
        @param idleTimeout: see L{idleTimeout}.
        @param idleReply: see L{idleReply}.
        @param idleSilent: see L{idleSilent}.
        @param idleBlackhole: see L{idleBlackhole}.
        @param credentials: user names and their passwords: offer AUTH
            (RFC 4954) and accept these (C{235}; anything else gets
            C{535 5.7.8}).
        @param authMechanisms: the mechanisms to offer, among C{"PLAIN"}
            (RFC 4616) and C{"LOGIN"}.
        @param requireAuth: answer MAIL with C{530 5.7.0} until the client
            authenticated (needs C{credentials}).
        @param tlsOptions: offer STARTTLS (RFC 3207) with these server TLS
            options, such as C{PrivateCertificate.options()} or a
            C{twisted.internet.ssl.CertificateOptions}.  It works on real
            TCP connections and in memory; on a transport that cannot start
            TLS the server answers C{454 4.7.0}.
        @param stripCapabilities: see L{stripCapabilities}.
        @param refuseStartTLS: see L{refuseStartTLS}.
        @param splitReplies: see L{splitReplies}.
        @param byteDelay: see L{byteDelay}.
        @raise ValueError: for an unknown mechanism, C{requireAuth}
            without C{credentials}, a C{refuseStartTLS} that is not a
            4xx/5xx reply, a C{splitReplies} below 1 or a negative
            C{byteDelay}.
        """
        mechanisms = tuple(m.upper() for m in authMechanisms)
        unknown = set(mechanisms) - set(_MECHANISMS)
        if unknown or not mechanisms:
            raise ValueError(
                f"authMechanisms must be some of {', '.join(_MECHANISMS)}, "
                f"not {authMechanisms!r}"
            )
        if requireAuth and credentials is None:
            raise ValueError("requireAuth needs credentials")
        if refuseStartTLS is not None:
            _checkRefusal(_code(_toLines(refuseStartTLS)))
        if splitReplies is not None and splitReplies < 1:
            raise ValueError("splitReplies must be at least 1 (or None)")
        if byteDelay < 0:
            raise ValueError("byteDelay must not be negative")
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
        self.credentials = dict(credentials) if credentials is not None else None
        self.authMechanisms = mechanisms
        self.requireAuth = requireAuth
        self.tlsOptions = tlsOptions
        self.stripCapabilities = [k.split(b" ", 1)[0] for k in stripCapabilities]
        self.refuseStartTLS = refuseStartTLS
        self.splitReplies = splitReplies
        self.byteDelay = byteDelay
        self.rules: list[Rule] = []
        self.deliveries = Outbox()
        self.connections: list[ConnectionRecord] = []
        self.connectAttempts = 0

    @property
    def outbox(self) -> Outbox:
        """
        Every message the server accepted, in order (the same L{Outbox} as
        L{deliveries}).
        """
        return self.deliveries

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
        status: tuple[int, str, str] | None = None,
        raw: bytes | None = None,
        extra: bytes | None = None,
    ) -> Rule:
        """
        Add a rule to the script and return it.

        For the common cases, L{rejectRecipient}, L{deferRecipient},
        L{rejectSender}, L{rejectMessage}, L{delayReply},
        L{disconnectBefore} and L{disconnectAfter} are shorter.

        @param verb: what it applies to: a command verb (C{"EHLO"},
            C{"HELO"}, C{"MAIL"}, C{"RCPT"}, C{"DATA"}, C{"BDAT"} (every
            chunk's command line, LAST or not), C{"RSET"}, C{"NOOP"},
            C{"VRFY"}, C{"QUIT"}, C{"AUTH"} (the command, not the lines of
            its exchange), C{"STARTTLS"}, or any other), C{"*"} (any command
            line),
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
        @param status: instead of C{reply}: a one-line reply as C{(code,
            enhanced status code, text)}, such as C{(550, "5.1.1", "no such
            user")}, sent with the enhanced code only when the server
            advertises ENHANCEDSTATUSCODES (as its own replies are).
        @param raw: bytes to send, exactly as given, instead of the reply
            (a malformed, oversized or mismatched reply, bare LF line ends,
            non-ASCII, several replies or part of one); the command has the
            effect its own reply would have had (a STARTTLS still starts
            TLS after it, a DATA still reads the message).  No 421 check is
            made on these bytes: add C{close=True} to hang up after them.
        @param extra: bytes sent right after the reply, in the same write
            (such as an injected C{b"250 ok\\r\\n"}, or a partial
            line, after the C{220} to STARTTLS, before TLS starts).
        @raise ValueError: for a combination that makes no sense.
        """
        verb = verb.upper()
        lines = _toLines(reply) if reply is not None else None
        if status is not None:
            if lines is not None:
                raise ValueError("reply or status, not both")
            code, enhanced, text = status
            _toLines(f"{code} {enhanced} {text}".encode())  # a valid reply
        if raw is not None:
            if lines is not None or status is not None:
                raise ValueError("raw or reply/status, not both")
            if not isinstance(raw, bytes) or not raw:
                raise ValueError("raw must be non-empty bytes")
        if extra is not None and (not isinstance(extra, bytes) or not extra):
            raise ValueError("extra must be non-empty bytes")
        replies = (
            lines is not None
            or status is not None
            or raw is not None
            or extra is not None
        )
        if isinstance(match, str):
            match = match.encode("utf-8")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        if delay < 0:
            raise ValueError("delay must not be negative")
        if verb == "CONNECT":
            if (
                replies
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
        if drop and (replies or close or stall or delay):
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
            status=status,
            raw=raw,
            extra=extra,
        )
        self.rules.append(rule)
        return rule

    # -- shortcuts --------------------------------------------------------------------

    def rejectRecipient(
        self,
        address: str,
        *,
        code: int = 550,
        enhanced: str = "5.1.1",
        text: str = "mailbox unavailable",
        times: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        """
        Refuse C{address} as a recipient (RCPT TO), permanently by default:
        C{550 5.1.1 mailbox unavailable}.

        @param address: the recipient, matched whole and regardless of case.
        @param code: the reply code.
        @param enhanced: the enhanced status code, sent when the server
            advertises ENHANCEDSTATUSCODES.
        @param text: the reply's text.
        @param times: how many times; L{None} for always.
        @param connection: only on this connection (from 1).
        @return: the new L{Rule}.
        """
        return self._refuse("RCPT", address, code, enhanced, text, times, connection)

    def deferRecipient(
        self,
        address: str,
        *,
        code: int = 450,
        enhanced: str = "4.2.1",
        text: str = "try again later",
        times: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        """
        Refuse C{address} as a recipient for now (a transient failure):
        C{450 4.2.1 try again later}.  With C{times=1}, the next attempt
        succeeds.

        The parameters are those of L{rejectRecipient}.

        @return: the new L{Rule}.
        """
        return self._refuse("RCPT", address, code, enhanced, text, times, connection)

    def rejectSender(
        self,
        address: str,
        *,
        code: int = 550,
        enhanced: str = "5.7.1",
        text: str = "sender rejected",
        times: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        """
        Refuse C{address} as the sender (MAIL FROM): C{550 5.7.1 sender
        rejected}.  C{""} is the null sender (C{MAIL FROM:<>}).

        The parameters are those of L{rejectRecipient}.

        @return: the new L{Rule}.
        """
        return self._refuse("MAIL", address, code, enhanced, text, times, connection)

    def rejectMessage(
        self,
        *,
        code: int = 554,
        enhanced: str = "5.6.0",
        text: str = "message rejected",
        match: str | bytes | None = None,
        times: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        """
        Refuse the message after its data (the reply to the final dot, or to
        the last BDAT chunk): C{554 5.6.0 message rejected}.  Nothing is
        delivered; use a 4xx C{code} for a transient refusal.

        @param match: only a message that contains this (regardless of
            case), such as C{"Subject: spam"}.
        @return: the new L{Rule}.
        """
        _checkRefusal(code)
        return self.rule(
            "END-OF-DATA",
            match=match,
            times=times,
            connection=connection,
            status=(code, enhanced, text),
        )

    def delayReply(
        self,
        verb: str,
        seconds: float,
        *,
        match: str | bytes | None = None,
        times: int | None = None,
        connection: int | None = None,
    ) -> Rule:
        """
        Answer C{verb} only after C{seconds} on the server's clock (the
        server reads nothing more meanwhile); C{"GREETING"} delays the
        greeting, C{"END-OF-DATA"} the reply to the message, C{"CONNECT"}
        the connection itself.

        @param match: only when the command's argument contains this.
        @return: the new L{Rule}.
        """
        return self.rule(
            verb, match=match, times=times, connection=connection, delay=seconds
        )

    def disconnectBefore(
        self,
        verb: str,
        *,
        match: str | bytes | None = None,
        times: int | None = None,
        connection: int | None = None,
        abort: bool = False,
    ) -> Rule:
        """
        Hang up instead of answering C{verb}: the command is read, and the
        connection closed without a reply (C{"GREETING"}: before the
        greeting; C{"END-OF-DATA"}: after the whole message, before its
        reply, so nothing is delivered).

        @param abort: close with an abort (RST) rather than cleanly.
        @return: the new L{Rule}.
        """
        return self.rule(
            verb,
            match=match,
            times=times,
            connection=connection,
            drop=True,
            abort=abort,
        )

    def disconnectAfter(
        self,
        verb: str,
        *,
        match: str | bytes | None = None,
        times: int | None = None,
        connection: int | None = None,
        abort: bool = False,
    ) -> Rule:
        """
        Answer C{verb} as usual, then hang up (C{"END-OF-DATA"}: the
        message is delivered and acknowledged first).

        @param abort: close with an abort (RST) rather than cleanly.
        @return: the new L{Rule}.
        """
        return self.rule(
            verb,
            match=match,
            times=times,
            connection=connection,
            close=True,
            abort=abort,
        )

    def _refuse(
        self,
        verb: str,
        address: str,
        code: int,
        enhanced: str,
        text: str,
        times: int | None,
        connection: int | None,
    ) -> Rule:
        _checkRefusal(code)
        return self.rule(
            verb,
            match=f"<{address}>",
            times=times,
            connection=connection,
            status=(code, enhanced, text),
        )

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

    def unsolicited(
        self, reply: bytes | Sequence[bytes], connection: int | None = None
    ) -> int:
        """
        Send C{reply} now on every open connection (or only on
        C{connection}), whatever the client is doing: a reply with no
        command outstanding, or one too many.  A 421 closes the connection
        after it, as a server shutting down would.

        @param reply: one reply line, or several (as for L{rule}).
        @param connection: only this connection (from 1).
        @return: on how many connections it was sent.
        """
        lines = _toLines(reply)
        sent = 0
        for record in list(self.connections):
            if connection is not None and record.number != connection:
                continue
            if record.protocol is not None and record.isOpen:
                record.protocol.unsolicited(lines)
                sent += 1
        return sent

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
        protocol.factory = self
        record.protocol = protocol
        self.connections.append(record)
        return protocol


# -- one connection ------------------------------------------------------------------


class _Mode(enum.Enum):
    COMMAND = "command"
    DATA = "data"
    CHUNK = "chunk"
    AUTH = "auth"


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


@attrs.define(eq=False)
class _AuthExchange:
    mechanism: str
    username: str | None = None


def _decodeResponse(data: bytes) -> bytes | None:
    """
    A SASL response as sent (base64; C{=} alone for an empty one), decoded;
    L{None} when it is not valid base64.
    """
    if data == b"=":
        return b""
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def _redact(line: str) -> str:
    """
    An AUTH command line as recorded: without its initial response.
    """
    words = line.split()
    if len(words) > 2:
        return f"{words[0]} {words[1]} {_REDACTED}"
    return line


# A reply, and what to do if it is sent (None: the command failed).
_Handled = tuple[Lines, Callable[[], None] | None]


def _nothing() -> None:
    """
    What a command that changes nothing does when it succeeds.
    """


class ScriptedServerProtocol(Protocol):
    """
    The server side of one connection: a small SMTP server that follows
    the L{ScriptedServer}'s rules.

    Every complete line of each delivery is handled in order, and the
    replies to one delivery leave in one write.  Any TCP transport will do:
    a L{MemoryTransport}, or a real one on a listening port.  It uses
    C{pauseProducing}/C{resumeProducing} to stop reading while stalled,
    C{abortConnection} for scripted aborts, and C{startTLS} for STARTTLS,
    when the transport has them.

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
        self._user: str | None = None
        self._exchange: _AuthExchange | None = None
        self._tlsPending = False
        self._rawNext: bytes | None = None
        self._extraNext: bytes | None = None
        self._slow: deque[bytes] = deque()
        self._slowCall: IDelayedCall | None = None
        self._whenSent: list[Callable[[], None]] = []

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

    def unsolicited(self, lines: Lines) -> None:
        """
        Send C{lines} now, with no command to answer (a 421 closes after
        it).
        """
        if self._closing:
            return
        self._out.extend(line + b"\r\n" for line in lines)
        if _code(lines) == 421:
            self._close()
        else:
            self._flush()

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
        if self.record.serverTransport is None:
            self.record.serverTransport = self.transport
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
        self._slow.clear()
        self._whenSent.clear()
        if self._slowCall is not None:
            if self._slowCall.active():
                self._slowCall.cancel()
            self._slowCall = None
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
                elif self._mode is _Mode.AUTH:
                    going = self._authStep()
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
            self._write(data)

    def _write(self, data: bytes) -> None:
        """
        Send C{data}: in one write, in pieces (C{splitReplies}), or slowly
        (C{byteDelay}).
        """
        server = self.server
        size = server.splitReplies
        if server.byteDelay > 0:
            size = size or 1
        if size is None:
            assert self.transport is not None
            self.transport.write(data)
            return
        pieces = [data[i : i + size] for i in range(0, len(data), size)]
        if server.byteDelay <= 0:
            assert self.transport is not None
            for piece in pieces:
                self.transport.write(piece)
            return
        self._slow.extend(pieces)
        if self._slowCall is None:
            self._slowCall = server.clock.callLater(server.byteDelay, self._slowStep)

    def _slowStep(self) -> None:
        """
        A slow server sends its next piece; when all have left, what waited
        for them (a close, the switch to TLS) goes ahead.
        """
        self._slowCall = None
        if self._slow and self.transport is not None:
            self.transport.write(self._slow.popleft())
        if self._slow:
            self._slowCall = self.server.clock.callLater(
                self.server.byteDelay, self._slowStep
            )
            return
        waiting, self._whenSent = self._whenSent, []
        for action in waiting:
            action()

    def _afterSent(self, action: Callable[[], None]) -> None:
        """
        Do C{action} once everything sent so far has left (at once, unless
        a slow server is still sending).
        """
        if self._slow:
            self._whenSent.append(action)
        else:
            action()

    def _reply(self, lines: Lines) -> None:
        raw, self._rawNext = self._rawNext, None
        extra, self._extraNext = self._extraNext, None
        if raw is not None:
            self._out.append(raw)
        else:
            self._out.extend(line + b"\r\n" for line in lines)
        if extra is not None:
            self._out.append(extra)
        if raw is None and _code(lines) == 421:
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
            self._rawNext = rule.raw if override is None else None
            self._extraNext = rule.extra
            action(override if override is not None else self._ruleReply(rule))
            if rule.close:
                self._close(rule.abort)

        if rule.stall:
            self._hold(run, None)
        elif rule.delay:
            self._hold(run, rule.delay)
        else:
            run(None)

    def _ruleReply(self, rule: Rule) -> Lines | None:
        if rule.status is not None:
            return self._r(*rule.status)
        return rule.reply

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

        def close() -> None:
            abortConnection = getattr(transport, "abortConnection", None)
            if abort and abortConnection is not None:
                abortConnection()
            else:
                transport.loseConnection()

        self._afterSent(close)

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
        head, _, argument = line.partition(b" ")
        verb = head.decode("ascii", "replace").upper()
        command = line.decode("utf-8", "replace")
        self.record.commands.append(_redact(command) if verb == "AUTH" else command)
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
        if self._tlsPending:
            self._startTLS()

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
            return r(250, "2.0.0", "Ok"), _nothing
        if verb == "VRFY":
            if not argument:
                return r(501, "5.5.4", "Syntax: VRFY address"), None
            text = "Cannot VRFY user, but will accept message"
            return r(252, "2.5.2", text), _nothing
        if verb == "QUIT":

            def markQuit() -> None:
                self._quit = True

            return r(221, "2.0.0", "Bye"), markQuit
        if verb == "AUTH" and self.server.credentials is not None:
            return self._auth(argument)
        refusal = self.server.refuseStartTLS
        if verb == "STARTTLS" and refusal is not None:
            return _toLines(refusal), None
        if verb == "STARTTLS" and self.server.tlsOptions is not None:
            return self._starttls(argument)
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
        server = self.server
        keywords = list(server.capabilities)
        if (
            (server.tlsOptions is not None or server.refuseStartTLS is not None)
            and not self.record.tls
            and not server._offers(b"STARTTLS")
        ):
            keywords.append(b"STARTTLS")
        if server.credentials is not None and not server._offers(b"AUTH"):
            keywords.append(" ".join(("AUTH", *server.authMechanisms)).encode())
        stripped = {k.upper() for k in server.stripCapabilities}
        keywords = [k for k in keywords if k.split(b" ", 1)[0].upper() not in stripped]
        lines = [b"250-" + host] + [b"250-" + k for k in keywords]
        lines[-1] = b"250 " + lines[-1][4:]
        return tuple(lines), commit

    def _mail(self, argument: bytes) -> _Handled:
        r = self._r
        if self._helo is None:
            return r(503, "5.5.1", "Send EHLO or HELO first"), None
        if self._tx is not None:
            return r(503, "5.5.1", "Nested MAIL command"), None
        if self.server.requireAuth and self._user is None:
            return r(530, "5.7.0", "Authentication required"), None
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

    # -- AUTH (RFC 4954) and STARTTLS (RFC 3207) -----------------------------------

    def _auth(self, argument: bytes) -> _Handled:
        r = self._r
        if not self._extended:
            return r(503, "5.5.1", "Send EHLO first"), None
        if self._user is not None:
            return r(503, "5.5.1", "Already authenticated"), None
        if self._tx is not None:
            return r(503, "5.5.1", "AUTH not allowed during a mail transaction"), None
        words = argument.split()
        if not 1 <= len(words) <= 2:
            return r(501, "5.5.4", "Syntax: AUTH mechanism [initial-response]"), None
        mechanism = words[0].decode("ascii", "replace").upper()
        if mechanism not in self.server.authMechanisms:
            return r(504, "5.5.4", "Unrecognized authentication type"), None
        exchange = _AuthExchange(mechanism)
        if len(words) == 1:
            challenge = b"" if mechanism == "PLAIN" else b"Username:"
            return self._challenge(exchange, challenge)
        response = _decodeResponse(words[1])
        if response is None:
            return r(501, "5.5.2", "Cannot decode response"), None
        return self._respond(exchange, response)

    def _challenge(self, exchange: _AuthExchange, challenge: bytes) -> _Handled:
        def commit() -> None:
            self._mode = _Mode.AUTH
            self._exchange = exchange

        return (b"334 " + base64.b64encode(challenge),), commit

    def _respond(self, exchange: _AuthExchange, response: bytes) -> _Handled:
        """
        The reply to one client response of an AUTH exchange.
        """
        if exchange.mechanism == "PLAIN":
            parts = response.split(b"\0")
            if len(parts) != 3:
                return self._authFailed()
            identity, username, password = (p.decode("utf-8", "replace") for p in parts)
            if identity and identity != username:
                return self._authFailed()
            return self._check(username, password)
        if exchange.username is None:
            exchange.username = response.decode("utf-8", "replace")
            return self._challenge(exchange, b"Password:")
        return self._check(exchange.username, response.decode("utf-8", "replace"))

    def _check(self, username: str, password: str) -> _Handled:
        credentials = self.server.credentials
        assert credentials is not None
        if credentials.get(username) != password:
            return self._authFailed()

        def commit() -> None:
            self._user = username
            self.record.authenticatedAs = username

        return self._r(235, "2.7.0", "Authentication successful"), commit

    def _authFailed(self) -> _Handled:
        return self._r(535, "5.7.8", "Authentication credentials invalid"), None

    def _authStep(self) -> bool:
        """
        One client response of an AUTH exchange.
        """
        end = self._buffer.find(b"\n")
        if end < 0:
            return False
        line = bytes(self._buffer[:end]).rstrip(b"\r")
        del self._buffer[: end + 1]
        exchange = self._exchange
        assert exchange is not None
        self._mode = _Mode.COMMAND
        self._exchange = None
        if line == b"*":
            self.record.commands.append("*")
            self._reply(self._r(501, "5.7.0", "Authentication cancelled"))
            return True
        self.record.commands.append(_REDACTED)
        response = _decodeResponse(line)
        if response is None:
            self._reply(self._r(501, "5.5.2", "Cannot decode response"))
            return True
        lines, commit = self._respond(exchange, response)
        if commit is not None:
            commit()
        self._reply(lines)
        return True

    def _starttls(self, argument: bytes) -> _Handled:
        r = self._r
        if argument:
            return r(501, "5.5.4", "Syntax: STARTTLS"), None
        if self.record.tls:
            return r(503, "5.5.1", "TLS already active"), None
        if not ITLSTransport.providedBy(self.transport):
            return r(454, "4.7.0", "TLS not available"), None

        def commit() -> None:
            self._tlsPending = True

        return r(220, "2.0.0", "Ready to start TLS"), commit

    def _startTLS(self) -> None:
        """
        After the 220 to STARTTLS: drop what the client sent after the
        command (it must wait for the reply), start TLS, and forget the
        session (RFC 3207 section 4.2).
        """
        self._tlsPending = False
        self._buffer.clear()
        self._flush()
        options = self.server.tlsOptions
        assert options is not None
        transport = cast(ITLSTransport, self.transport)
        self._afterSent(lambda: transport.startTLS(options))
        self.record.tls = True
        self._reset()
        self._helo = None
        self._extended = False
        self._user = None
        self.record.authenticatedAs = None

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
        if self._refused:
            error = r(503, "5.5.1", "No SMTP service here")
        elif not self._extended or not self.server.chunking:
            error = r(502, "5.5.1", "BDAT not offered")
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
                Delivery(
                    n,
                    tx.number,
                    tx.sender,
                    tuple(tx.recipients),
                    data,
                    authenticatedAs=self._user,
                    tls=self.record.tls,
                )
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
            tlsClient=True,
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
