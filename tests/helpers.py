"""
Test doubles shared by the protocol-layer tests.

- L{RecordingTransport}: a L{StringTransport} that counts writes, records
  C{TCP_NODELAY}, and can pretend to be TLS (implicit, or upgraded with
  C{startTLS}).
- L{connectClient} and L{serverSays}: drive an L{ESMTPClient} by hand.
- L{twistedServerSession}: a whole session in memory against Twisted's real
  C{twisted.mail.smtp.ESMTP} server.  Every use of C{twisted.test.iosim} in
  the test suite is in this module.
- L{ScriptedEndpoint}: a client endpoint whose connection attempts fail,
  hang, or succeed over a L{RecordingTransport}, as scripted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import CramMD5Credentials
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IAddress,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IProtocol,
    IProtocolFactory,
    IReactorTime,
    ISSLTransport,
    IStreamClientEndpoint,
    ITCPTransport,
    ITLSTransport,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials
from twisted.python.failure import Failure
from twisted.test import iosim
from zope.interface import alsoProvides, implementer

from mailclient.protocol import ESMTPClient

__all__ = [
    "SERVER_PASSWORD",
    "SERVER_USER",
    "Delivery",
    "FakeTLSHandle",
    "FakeTLSOptions",
    "HangingConnect",
    "Outcome",
    "RecordingTransport",
    "ScriptedEndpoint",
    "ServerSession",
    "connectClient",
    "serverSays",
    "serverSaysAtOnce",
    "twistedServerSession",
]

_T = TypeVar("_T")
_E = TypeVar("_E", bound=BaseException)

SERVER_USER = "alice"
SERVER_PASSWORD = "s3cret-Pa55"


class Outcome(Generic[_T]):
    """
    What a Deferred fired with, captured (a failure is consumed, so it is
    never logged as unhandled).

    @ivar results: every result the Deferred fired with (one at most).
    """

    def __init__(self, deferred: Deferred[_T]) -> None:
        self.results: list[_T | Failure] = []
        deferred.addBoth(self._record)

    def _record(self, result: _T | Failure) -> None:
        self.results.append(result)

    @property
    def called(self) -> bool:
        """
        Whether the Deferred fired.
        """
        return bool(self.results)

    def value(self) -> _T:
        """
        The success result; fails the test unless the Deferred succeeded.
        """
        assert len(self.results) == 1, self.results
        result = self.results[0]
        if isinstance(result, Failure):
            raise AssertionError(f"expected success, got {result!r}") from (
                result.value
            )
        return result

    def error(self, kind: type[_E]) -> _E:
        """
        The error; fails the test unless the Deferred failed with C{kind}.
        """
        assert len(self.results) == 1, self.results
        result = self.results[0]
        assert isinstance(result, Failure), f"expected {kind}, got {result!r}"
        assert isinstance(result.value, kind), result.value
        return result.value


@attrs.frozen
class FakeTLSHandle:
    """
    What C{getHandle()} returns on a TLS transport: the two OpenSSL
    connection methods the client reads for its session information.
    """

    version: str = "TLSv1.3"
    cipher: str = "TLS_AES_256_GCM_SHA384"

    def get_protocol_version_name(self) -> str:
        """
        The negotiated protocol version.
        """
        return self.version

    def get_cipher_name(self) -> str:
        """
        The negotiated cipher.
        """
        return self.cipher


@implementer(IOpenSSLClientConnectionCreator)
class FakeTLSOptions:
    """
    Client TLS options that are only passed around (to a fake C{startTLS})
    and never used to make a TLS connection.
    """

    def clientConnectionForTLS(self, tlsProtocol: Any) -> Any:
        """
        Never called by the fakes.
        """
        raise NotImplementedError


class RecordingTransport(StringTransport):
    """
    A L{StringTransport} that records every C{write} call separately (to
    count the writes of a flight), and optionally:

    - provides L{ITCPTransport} and records C{setTcpNoDelay} calls
      (C{tcp=True});
    - provides L{ITLSTransport}: C{startTLS(options)} records C{options},
      then the transport provides L{ISSLTransport} and (unless
      C{autoHandshake=False}) tells the protocol the handshake completed
      (C{startTLS=True});
    - is TLS from the start, as with implicit TLS (C{secure=True}); call
      L{completeHandshake} once connected.

    @ivar writes: the data of every C{write} call since the last L{clear}.
    @ivar noDelay: the arguments of every C{setTcpNoDelay} call.
    @ivar tlsStarts: the options of every C{startTLS} call.
    @ivar protocol: the connected protocol (set by L{connectClient}).
    """

    def __init__(
        self,
        *,
        tcp: bool = False,
        startTLS: bool = False,
        secure: bool = False,
        autoHandshake: bool = True,
        handle: object = None,
        hostAddress: IAddress | None = None,
    ) -> None:
        self.writes: list[bytes] = []
        super().__init__(hostAddress=hostAddress)
        self.noDelay: list[bool] = []
        self.tlsStarts: list[object] = []
        self.protocol: IProtocol | None = None
        self.autoHandshake = autoHandshake
        self.handle = handle if handle is not None else FakeTLSHandle()
        if tcp or startTLS:
            alsoProvides(self, ITCPTransport)
        if startTLS:
            alsoProvides(self, ITLSTransport)
        if secure:
            alsoProvides(self, ISSLTransport)

    def clear(self) -> None:
        """
        Forget everything written so far.
        """
        super().clear()
        self.writes = []

    def write(self, data: bytes) -> None:
        """
        Record one write.
        """
        self.writes.append(data)
        super().write(data)

    def take(self) -> bytes:
        """
        Everything written since the last L{clear} or L{take}, then clear.
        """
        value: bytes = self.value()
        self.clear()
        return value

    @property
    def aborted(self) -> bool:
        """
        Whether C{abortConnection} was called.
        """
        return bool(self.disconnected)

    def setTcpNoDelay(self, enabled: bool) -> None:
        """
        Record a C{TCP_NODELAY} request.
        """
        self.noDelay.append(enabled)

    def startTLS(self, contextFactory: object) -> None:
        """
        Record the options and become an L{ISSLTransport}.
        """
        self.tlsStarts.append(contextFactory)
        alsoProvides(self, ISSLTransport)
        if self.autoHandshake:
            self.completeHandshake()

    def completeHandshake(self) -> None:
        """
        Tell the protocol the TLS handshake finished.
        """
        assert self.protocol is not None
        IHandshakeListener(self.protocol).handshakeCompleted()

    def getHandle(self) -> object:
        """
        The fake OpenSSL connection.
        """
        return self.handle


def connectClient(
    client: ESMTPClient, transport: RecordingTransport | None = None
) -> RecordingTransport:
    """
    Connect C{client} to C{transport} (a new plain L{RecordingTransport} by
    default) and return the transport.
    """
    if transport is None:
        transport = RecordingTransport()
    transport.protocol = client
    client.makeConnection(transport)
    return transport


def serverSays(client: ESMTPClient, *lines: bytes) -> None:
    """
    Deliver C{lines} to C{client}, each ended with CRLF, each in its own
    segment, as a server that answers what it has read does: the client
    flushes what a reply makes it send before it reads the next reply, and
    a reply to a command the client has not sent yet is a protocol error.
    Use L{serverSaysAtOnce} for several replies in one segment.
    """
    for line in lines:
        client.dataReceived(line + b"\r\n")


def serverSaysAtOnce(client: ESMTPClient, *lines: bytes) -> None:
    """
    Deliver C{lines} to C{client}, each ended with CRLF, in one segment.
    """
    client.dataReceived(b"".join(line + b"\r\n" for line in lines))


# -- whole sessions against Twisted's ESMTP server ---------------------------


@attrs.define
class Delivery:
    """
    One message as Twisted's server handed it to the delivery: one record
    per accepted recipient.

    @ivar content: the message lines, each ended with CRLF, after the
        server removed the dot-stuffing.
    """

    sender: bytes
    recipient: bytes
    content: bytes


@implementer(smtp.IMessage)
class RecordingMessage:
    """
    Records one message for one recipient in a list of L{Delivery}.
    """

    def __init__(self, store: list[Delivery], sender: bytes, recipient: bytes) -> None:
        self.store = store
        self.sender = sender
        self.recipient = recipient
        self.lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        self.lines.append(line)

    def eomReceived(self) -> Deferred[bytes]:
        content = b"".join(line + b"\r\n" for line in self.lines)
        self.store.append(Delivery(self.sender, self.recipient, content))
        return defer.succeed(b"2.0.0 Ok: queued as TWQ1")

    def connectionLost(self) -> None:
        pass


@implementer(smtp.IMessageDelivery)
class RecordingDelivery:
    """
    Accepts every sender; refuses C{reject@...} with 550 and
    C{tempfail@...} with 450; accepts every other recipient.
    """

    def __init__(self, store: list[Delivery]) -> None:
        self.store = store
        self.sender = b""

    def receivedHeader(self, helo: Any, origin: Any, recipients: Any) -> None:
        return None

    def validateFrom(self, helo: Any, origin: smtp.Address) -> smtp.Address:
        self.sender = bytes(origin)
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], RecordingMessage]:
        if user.dest.local == b"reject":
            raise smtp.SMTPBadRcpt(user)
        if user.dest.local == b"tempfail":
            raise smtp.SMTPBadRcpt(user, code=450, resp="Try again later")
        sender, recipient = self.sender, bytes(user.dest)
        return lambda: RecordingMessage(self.store, sender, recipient)


@implementer(IRealm)
class RecordingRealm:
    """
    Hands every authenticated user a L{RecordingDelivery} into C{store}.
    """

    def __init__(self, store: list[Delivery]) -> None:
        self.store = store

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> Any:
        return smtp.IMessageDelivery, RecordingDelivery(self.store), lambda: None


_CHALLENGERS: Mapping[bytes, Callable[[], object]] = {
    b"PLAIN": PLAINCredentials,
    b"LOGIN": LOGINCredentials,
    b"CRAM-MD5": lambda: CramMD5Credentials(b"mx.example"),
}


@attrs.define
class ServerSession:
    """
    An L{ESMTPClient} connected in memory to Twisted's ESMTP server.

    @ivar deliveries: every message the server delivered, one record per
        recipient.
    """

    client: ESMTPClient
    server: smtp.ESMTP
    deliveries: list[Delivery]
    _pump: iosim.IOPump

    def flush(self) -> None:
        """
        Move bytes both ways until neither side has anything more to say.
        """
        self._pump.flush()


def twistedServerSession(
    client: ESMTPClient,
    *,
    serverClass: Callable[..., smtp.ESMTP] = smtp.ESMTP,
    mechanisms: Iterable[bytes] | None = None,
    clock: Clock | None = None,
) -> ServerSession:
    """
    Connect C{client} in memory to Twisted's ESMTP server and run the
    session until it waits (the greeting and the negotiation are done when
    this returns, and any message already queued on C{client} is sent).

    @param serverClass: the server class, C{smtp.ESMTP} or a subclass.
    @param mechanisms: SASL mechanisms the server offers (C{b"PLAIN"},
        C{b"LOGIN"}, C{b"CRAM-MD5"}); when given, the server authenticates
        L{SERVER_USER} / L{SERVER_PASSWORD} through a portal and delivers
        only to authenticated clients.
    @param clock: the clock the pump advances (by zero) as it runs.
    """
    deliveries: list[Delivery] = []
    if mechanisms is None:
        server = serverClass()
        server.delivery = RecordingDelivery(deliveries)
    else:
        server = serverClass(chal={m: _CHALLENGERS[m] for m in mechanisms})
        checker = InMemoryUsernamePasswordDatabaseDontUse()
        checker.addUser(SERVER_USER.encode(), SERVER_PASSWORD.encode())
        server.portal = Portal(RecordingRealm(deliveries), [checker])  # type: ignore[assignment]
    server.host = b"mx.example"
    server.timeout = None  # type: ignore[assignment]  # no global-reactor timer
    serverTransport = iosim.FakeTransport(
        server,
        True,
        hostAddress=IPv4Address("TCP", "192.0.2.25", 25),
        peerAddress=IPv4Address("TCP", "192.0.2.1", 40000),
    )
    clientTransport = iosim.FakeTransport(
        client,
        False,
        hostAddress=IPv4Address("TCP", "192.0.2.1", 40000),
        peerAddress=IPv4Address("TCP", "192.0.2.25", 25),
    )
    pump = iosim.connect(
        server, serverTransport, client, clientTransport, greet=False, clock=clock
    )
    session = ServerSession(client, server, deliveries, pump)
    session.flush()
    return session


# -- endpoints -------------------------------------------------------------------


class HangingConnect:
    """
    A scripted outcome: the connection attempt never completes (until it
    is cancelled).
    """


@implementer(IStreamClientEndpoint)
class ScriptedEndpoint:
    """
    A client endpoint whose successive C{connect} calls follow C{script}:
    an exception fails the attempt, L{HangingConnect} leaves it pending,
    and a L{RecordingTransport} connects the factory's protocol to it.

    @ivar factories: the factory of every attempt.
    @ivar transports: the transport of every attempt that connected.
    @ivar cancelled: how many pending attempts were cancelled.
    @ivar times: the clock's time at every attempt.
    """

    def __init__(
        self,
        script: Iterable[BaseException | RecordingTransport | type[HangingConnect]],
        clock: IReactorTime | None = None,
    ) -> None:
        self.script = list(script)
        self.clock = clock
        self.factories: list[IProtocolFactory] = []
        self.transports: list[RecordingTransport] = []
        self.times: list[float] = []
        self.cancelled = 0

    def connect(self, protocolFactory: IProtocolFactory) -> Deferred[IProtocol]:
        """
        Take the next step of the script.
        """
        self.factories.append(protocolFactory)
        if self.clock is not None:
            self.times.append(self.clock.seconds())
        step = self.script.pop(0)
        if isinstance(step, BaseException):
            return defer.fail(step)
        if step is HangingConnect:

            def cancel(d: Deferred[IProtocol]) -> None:
                self.cancelled += 1

            return Deferred(cancel)
        assert isinstance(step, RecordingTransport)
        protocol = protocolFactory.buildProtocol(IPv4Address("TCP", "192.0.2.25", 25))
        assert protocol is not None
        self.transports.append(step)
        step.protocol = protocol
        protocol.makeConnection(step)
        return defer.succeed(protocol)
