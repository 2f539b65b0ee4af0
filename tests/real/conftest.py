"""
Fixtures for real-reactor tests on 127.0.0.1: a throw-away PKI made with
C{cryptography}, and Twisted's own ESMTP server listening with STARTTLS or
implicit TLS.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.mail import smtp
from twisted.mail.imap4 import LOGINCredentials, PLAINCredentials

from mailclient.demo import generateCertificates

from ..helpers import Delivery, RecordingDelivery, RecordingRealm


@attrs.frozen
class PKI:
    """
    A CA and a server certificate for C{localhost} and C{127.0.0.1}, and an
    unrelated CA.

    @ivar ca: the CA that signed the server certificate, as a trust root.
    @ivar otherCa: a CA that did not sign it.
    @ivar server: the server's certificate and key.
    """

    ca: Certificate
    otherCa: Certificate
    server: PrivateCertificate


@pytest.fixture(scope="session")
def pki() -> PKI:
    """
    Make a CA, a server certificate it signs, and an unrelated CA (the
    demo's generator, which the demo's own tests also exercise).
    """
    ca, server = generateCertificates("localhost")
    otherCa, _ = generateCertificates("localhost")
    return PKI(ca=ca, otherCa=otherCa, server=server)


@attrs.define
class Received:
    """
    What the test server received: one L{Delivery} per message and
    recipient, and for each AUTH command whether the session was TLS.
    """

    messages: list[Delivery] = attrs.Factory(list)
    tlsAtAuth: list[bool] = attrs.Factory(list)


class _Server(smtp.ESMTP):
    """
    Twisted's ESMTP server, refusing mail until authenticated when a portal
    is set, and recording whether AUTH happened over TLS.
    """

    received: Received

    def ext_AUTH(self, rest: bytes) -> None:
        self.received.tlsAtAuth.append(bool(self.startedTLS))
        super().ext_AUTH(rest)


@attrs.define
class TestServer:
    """
    A listening Twisted ESMTP server (not a test class).
    """

    __test__ = False

    port: int
    received: Received
    listening: IListeningPort


@pytest.fixture
def startServer(pki: PKI) -> Iterator[Callable[..., Deferred[TestServer]]]:
    """
    Start Twisted's ESMTP server on 127.0.0.1 with C{tls="starttls"} or
    C{"implicit"}, optionally requiring AUTH (user C{alice}, password
    C{s3cret}).
    """
    from twisted.internet import reactor

    ports: list[IListeningPort] = []

    @defer.inlineCallbacks
    def start(tls: str = "starttls", auth: bool = False) -> Any:
        received = Received()
        options = pki.server.options()

        def build() -> _Server:
            challengers = {b"LOGIN": LOGINCredentials, b"PLAIN": PLAINCredentials}
            server = _Server(
                chal=challengers if auth else None,
                contextFactory=options if tls == "starttls" else None,
            )
            server.received = received
            if auth:
                checker = InMemoryUsernamePasswordDatabaseDontUse(alice=b"s3cret")
                server.portal = Portal(RecordingRealm(received.messages), [checker])  # type: ignore[assignment]
            else:
                server.delivery = RecordingDelivery(received.messages)
            server.host = b"localhost"
            return server

        factory = Factory.forProtocol(build)
        if tls == "implicit":
            endpoint: Any = SSL4ServerEndpoint(
                reactor, 0, options, interface="127.0.0.1"
            )
        else:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = yield endpoint.listen(factory)
        ports.append(port)
        return TestServer(port.getHost().port, received, port)

    yield start
    for p in ports:
        p.stopListening()
