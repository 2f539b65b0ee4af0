"""
L{mailclient.testing.ScriptedServer} as the factory of a real listening
port on 127.0.0.1: Python's C{smtplib} (run in a thread) and
L{mailclient.sendmail} talk to it over loopback TCP, with its script, its
outbox, AUTH, STARTTLS, stalls and disconnects.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import (
    IListeningPort,
    IReactorCore,
    IReactorTCP,
    IReactorTime,
)
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread

from mailclient import sendmail
from mailclient.demo import generateCertificates
from mailclient.testing import ScriptedServer

_T = TypeVar("_T")

reactor: Any = _reactor
USER = "alice"
PASSWORD = "s3cret-Pa55"
MESSAGE = b"From: app@example.com\r\nSubject: over TCP\r\n\r\nHello.\r\n"
TIMEOUT = 10.0


@pytest.fixture(scope="module")
def certificates() -> tuple[Certificate, PrivateCertificate]:
    """
    A throwaway CA and a server certificate for C{localhost} and
    C{127.0.0.1}.
    """
    return generateCertificates("localhost")


@pytest.fixture
def listening() -> Iterator[Callable[..., tuple[ScriptedServer, int]]]:
    """
    A function that makes a L{ScriptedServer} (with the reactor as its
    clock and the given options) listen on 127.0.0.1, and returns it with
    its port number; every port is closed afterwards.
    """
    ports: list[IListeningPort] = []

    def listen(**options: Any) -> tuple[ScriptedServer, int]:
        server = ScriptedServer(reactor, hostname="localhost", **options)
        tcp: IReactorTCP = reactor
        port = tcp.listenTCP(0, server, interface="127.0.0.1")
        ports.append(port)
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        return server, address.port

    yield listen
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def inThread(function: Callable[[], _T]) -> Deferred[_T]:
    """
    Start blocking C{function} in a thread now; the Deferred fires with its
    result.
    """
    return deferToThread(function)


async def eventually(predicate: Callable[[], bool]) -> None:
    """
    Wait until C{predicate()} is true (the server may see a close a little
    after the client made it), at most L{TIMEOUT} seconds.
    """
    clock: IReactorTime = reactor
    deadline = clock.seconds() + TIMEOUT
    while not predicate():
        assert clock.seconds() < deadline, "timed out"
        await deferLater(clock, 0.01, lambda: None)


def smtp(port: int) -> smtplib.SMTP:
    """
    An C{smtplib} client connected to 127.0.0.1:C{port}.
    """
    return smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=10)


@pytest_twisted.ensureDeferred
async def test_smtplibRejectedRecipientAndAuth(
    listening: Callable[..., tuple[ScriptedServer, int]],
) -> None:
    """
    Over real TCP, C{smtplib} logs in with AUTH PLAIN and sends to two
    recipients; the rejected one is in smtplib's refused dict with the
    scripted reply, the message is in the outbox with the user, and the
    session ends with QUIT.
    """
    server, port = listening(credentials={USER: PASSWORD}, requireAuth=True)
    server.rejectRecipient("gone@example.com")

    def talk() -> dict[str, tuple[int, bytes]]:
        with smtp(port) as client:
            client.login(USER, PASSWORD)
            return client.sendmail(
                "app@example.com", ["dev@example.com", "gone@example.com"], MESSAGE
            )

    refused = await inThread(talk)
    assert refused == {"gone@example.com": (550, b"5.1.1 mailbox unavailable")}
    [delivery] = server.outbox
    assert delivery.recipients == ("dev@example.com",)
    assert delivery.data == MESSAGE
    assert delivery.authenticatedAs == USER
    assert delivery.message["Subject"] == "over TCP"
    await eventually(lambda: not server.connections[0].isOpen)
    record = server.connections[0]
    assert record.closedBy == "client-quit"
    assert "AUTH PLAIN ****" in record.commands
    assert PASSWORD not in repr(record.commands)
    assert record.clientTransport is None
    assert record.serverTransport is not None


@pytest_twisted.ensureDeferred
async def test_smtplibEveryRecipientRefused(
    listening: Callable[..., tuple[ScriptedServer, int]],
) -> None:
    """
    When every recipient is refused, C{smtplib} raises
    C{SMTPRecipientsRefused} with each one's reply, and nothing is
    delivered.
    """
    server, port = listening()
    server.rejectRecipient("a@example.com")
    server.deferRecipient("b@example.com")

    def talk() -> dict[str, tuple[int, bytes]]:
        with smtp(port) as client, pytest.raises(smtplib.SMTPRecipientsRefused) as e:
            client.sendmail(
                "app@example.com", ["a@example.com", "b@example.com"], MESSAGE
            )
        return e.value.recipients

    assert await inThread(talk) == {
        "a@example.com": (550, b"5.1.1 mailbox unavailable"),
        "b@example.com": (450, b"4.2.1 try again later"),
    }
    assert server.outbox == []


@pytest_twisted.ensureDeferred
async def test_smtplibLogin(
    listening: Callable[..., tuple[ScriptedServer, int]],
) -> None:
    """
    With only LOGIN offered, C{smtplib}'s login uses it; a wrong password
    is refused with 535, then the right one is accepted.
    """
    server, port = listening(credentials={USER: PASSWORD}, authMechanisms=["LOGIN"])

    def talk() -> int:
        with smtp(port) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                client.login(USER, "wrong")
            client.login(USER, PASSWORD)
            client.sendmail("app@example.com", ["dev@example.com"], MESSAGE)
            return e.value.smtp_code

    assert await inThread(talk) == 535
    assert server.outbox[0].authenticatedAs == USER
    assert server.connections[0].commands[1:5] == [
        "AUTH LOGIN ****",
        "****",
        "AUTH LOGIN ****",
        "****",
    ]


@pytest.mark.parametrize("abort", [False, True])
@pytest_twisted.ensureDeferred
async def test_smtplibDisconnect(
    listening: Callable[..., tuple[ScriptedServer, int]], abort: bool
) -> None:
    """
    A scripted disconnect before the reply to DATA (closed or reset) makes
    C{smtplib} fail with a lost connection; nothing is delivered, and the
    server is recorded as the side that closed.
    """
    server, port = listening()
    server.disconnectBefore("DATA", abort=abort)

    def talk() -> BaseException:
        client = smtp(port)
        with pytest.raises((smtplib.SMTPServerDisconnected, ConnectionError)) as e:
            client.sendmail("app@example.com", ["dev@example.com"], MESSAGE)
        client.close()
        return e.value

    await inThread(talk)
    assert server.outbox == []
    await eventually(lambda: not server.connections[0].isOpen)
    assert server.connections[0].closedBy == "server"


@pytest_twisted.ensureDeferred
async def test_smtplibStallThenRelease(
    listening: Callable[..., tuple[ScriptedServer, int]],
) -> None:
    """
    A stalled connection stops reading on the real transport; once
    released, the session finishes normally.
    """
    server, port = listening()
    server.rule("MAIL", stall=True)

    def talk() -> dict[str, tuple[int, bytes]]:
        with smtp(port) as client:
            return client.sendmail("app@example.com", ["dev@example.com"], MESSAGE)

    sent = inThread(talk)
    await eventually(lambda: server.stalled == [1])
    assert server.outbox == []
    server.release()
    assert await sent == {}
    assert len(server.outbox) == 1


@pytest_twisted.ensureDeferred
async def test_smtplibStartTLS(
    listening: Callable[..., tuple[ScriptedServer, int]],
    certificates: tuple[Certificate, PrivateCertificate],
    tmp_path: Path,
) -> None:
    """
    C{smtplib} upgrades with STARTTLS on a real connection, verifying the
    certificate, then logs in; the connection and the delivery are
    recorded as TLS.
    """
    ca, certificate = certificates
    caFile = tmp_path / "ca.pem"
    caFile.write_bytes(ca.dumpPEM())
    server, port = listening(
        credentials={USER: PASSWORD}, tlsOptions=certificate.options()
    )

    def talk() -> None:
        context = ssl.create_default_context(cafile=str(caFile))
        with smtplib.SMTP("localhost", port, timeout=10) as client:
            client.starttls(context=context)
            client.login(USER, PASSWORD)
            client.sendmail("app@example.com", ["dev@example.com"], MESSAGE)

    await inThread(talk)
    assert [(d.tls, d.authenticatedAs) for d in server.outbox] == [(True, USER)]
    record = server.connections[0]
    assert record.tls
    assert record.verbs()[:3] == ["EHLO", "STARTTLS", "EHLO"]


@pytest_twisted.ensureDeferred
async def test_sendmailOverTCP(
    listening: Callable[..., tuple[ScriptedServer, int]],
    certificates: tuple[Certificate, PrivateCertificate],
) -> None:
    """
    L{mailclient.sendmail} sends to the scripted server over real TCP with
    STARTTLS and AUTH; the deferred recipient is reported, the accepted
    one is in the outbox.
    """
    ca, certificate = certificates
    server, port = listening(
        credentials={USER: PASSWORD}, tlsOptions=certificate.options()
    )
    server.deferRecipient("later@example.com")
    core: IReactorCore = reactor
    assert core.running
    result = await sendmail(
        "localhost",
        "app@example.com",
        ["dev@example.com", "later@example.com"],
        MESSAGE,
        port=port,
        username=USER,
        password=PASSWORD,
        tlsOptions=optionsForClientTLS("localhost", trustRoot=ca),
        timeout=TIMEOUT,
        retries=0,
    )
    assert result.accepted == ("dev@example.com",)
    assert result.recipients["later@example.com"].status == "deferred"
    assert result.session is not None
    assert result.session.tlsVersion is not None
    [delivery] = server.outbox
    assert (delivery.recipients, delivery.tls, delivery.authenticatedAs) == (
        ("dev@example.com",),
        True,
        USER,
    )
