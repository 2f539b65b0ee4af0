"""
Whole sessions against Twisted's real ESMTP server (C{twisted.mail.smtp.ESMTP}),
connected in memory.
"""

from __future__ import annotations

import io
from email.message import EmailMessage
from typing import Any

import pytest
from twisted.internet.task import Clock
from twisted.mail import smtp

from mailclient import (
    CramMD5Mechanism,
    LoginMechanism,
    PlainMechanism,
    SASLMechanism,
    errors,
)
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import (
    SERVER_PASSWORD,
    SERVER_USER,
    Outcome,
    twistedServerSession,
)

SENDER = "alice@example.com"
MESSAGE = b"From: alice@example.com\r\nSubject: hi\r\n\r\nHello.\r\n"


def newClient(**options: Any) -> ESMTPClient:
    """
    A client named C{client.example}, without TLS (the in-memory transport
    has none).
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    return ESMTPClient(clock=Clock(), **options)


class NoEHLOServer(smtp.ESMTP):
    """
    Twisted's ESMTP server, pretending to know nothing of EHLO.
    """

    def do_EHLO(self, rest: bytes) -> None:
        self.sendCode(500, b"Command not recognized")


class TestPlainSessions:
    def test_perRecipientResults(self) -> None:
        """
        One message to an accepted, a permanently refused (550) and a
        transiently refused (450) recipient: delivered to the first only,
        and the result says what happened to each.
        """
        client = newClient()
        outcome = Outcome(
            client.send(
                SENDER,
                ["ok@example.net", "reject@example.net", "tempfail@example.net"],
                MESSAGE,
            )
        )
        session = twistedServerSession(client)
        result = outcome.value()
        ok, reject, tempfail = result
        assert (ok.status, ok.code, ok.phase) == ("accepted", 250, "END-OF-DATA")
        assert (reject.status, reject.code, reject.phase) == ("rejected", 550, "RCPT")
        assert (tempfail.status, tempfail.code) == ("deferred", 450)
        assert tempfail.text == "Try again later"
        assert [(d.sender, d.recipient) for d in session.deliveries] == [
            (b"alice@example.com", b"ok@example.net")
        ]
        assert session.deliveries[0].content == MESSAGE
        assert result.session is not None
        assert result.session.serverName == "mx.example"

    def test_allRefused(self) -> None:
        """
        Every recipient refused: nothing is delivered and the Deferred fails
        with L{errors.AllRecipientsRefusedError}.
        """
        client = newClient()
        outcome = Outcome(
            client.send(SENDER, ["reject@example.net", "tempfail@example.net"], MESSAGE)
        )
        session = twistedServerSession(client)
        error = outcome.error(errors.AllRecipientsRefusedError)
        assert not error.isTransient
        assert session.deliveries == []

    def test_severalMessagesOneConnection(self) -> None:
        """
        Several messages on one connection (one of them refused by every
        recipient, so the next needs RSET), then QUIT: each is delivered
        as sent, in order, and the quit Deferred fires when the server
        closes.
        """
        client = newClient()
        bodies = [b"Subject: %d\r\n\r\nmessage %d\r\n" % (i, i) for i in range(3)]
        first = Outcome(client.send(SENDER, "one@example.net", bodies[0]))
        refused = Outcome(client.send(SENDER, "reject@example.net", b"x\r\n"))
        second = Outcome(
            client.send(SENDER, ["two@example.net", "2b@example.net"], bodies[1])
        )
        third = Outcome(client.send("", "three@example.net", bodies[2]))
        done = Outcome(client.quit())
        session = twistedServerSession(client)
        first.value()
        refused.error(errors.AllRecipientsRefusedError)
        result = second.value()
        assert result.accepted == ("two@example.net", "2b@example.net")
        assert ("C", "RSET") in result.transcript
        third.value()
        assert [(d.recipient, d.content) for d in session.deliveries] == [
            (b"one@example.net", bodies[0]),
            (b"two@example.net", bodies[1]),
            (b"2b@example.net", bodies[1]),
            (b"three@example.net", bodies[2]),
        ]
        assert session.deliveries[-1].sender == b""
        assert done.value() is None
        assert client.phase is Phase.CLOSED

    def test_sendWhileReady(self) -> None:
        """
        A message queued on an idle, ready session is sent at once.
        """
        client = newClient()
        session = twistedServerSession(client)
        assert client.phase is Phase.READY
        outcome = Outcome(client.send(SENDER, "late@example.net", MESSAGE))
        session.flush()
        outcome.value()
        assert session.deliveries[0].recipient == b"late@example.net"

    def test_emailMessageWithAttachment(self) -> None:
        """
        An C{EmailMessage} with a binary attachment (and text lines that
        need dot-stuffing) is delivered byte for byte as it flattens with
        CRLF line ends.
        """
        message = EmailMessage()
        message["From"] = SENDER
        message["To"] = "ok@example.net"
        message["Subject"] = "Report"
        message.set_content("Hello,\n.\n..leading dots\nBye.\n")
        message.add_attachment(
            bytes(range(256)) * 300,
            maintype="application",
            subtype="octet-stream",
            filename="data.bin",
        )
        expected = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
        assert b"\r\n.\r\n" in expected
        client = newClient()
        outcome = Outcome(client.send(SENDER, "ok@example.net", message))
        session = twistedServerSession(client)
        outcome.value()
        assert [d.content for d in session.deliveries] == [expected]

    def test_largeFileStreamed(self) -> None:
        """
        A binary file of several 64 KiB blocks, with a "." line at a block
        boundary and bare LF line ends, is streamed through the producer
        and delivered with its dots intact and CRLF line ends.
        """
        head = b"Subject: big\n\n"
        line = b"y" * 79 + b"\n"
        body = head + line * ((65536 - len(head)) // 80)
        body += b"z" * (65536 - len(body) - 1) + b"\n"
        assert len(body) == 65536
        data = body + b".\n" + line * 2000 + b"end"
        client = newClient()
        outcome = Outcome(client.send(SENDER, "ok@example.net", io.BytesIO(data)))
        session = twistedServerSession(client)
        outcome.value()
        expected = data.replace(b"\n", b"\r\n") + b"\r\n"
        assert [d.content for d in session.deliveries] == [expected]

    def test_eightBitRefusedLocally(self) -> None:
        """
        Twisted's server does not advertise 8BITMIME, so an 8-bit message
        fails locally with L{errors.UnsupportedFeatureError}; the next
        message is delivered.
        """
        client = newClient()
        eight = Outcome(
            client.send(SENDER, "ok@example.net", "Subject: é\r\n\r\né\r\n")
        )
        ascii = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        session = twistedServerSession(client)
        eight.error(errors.UnsupportedFeatureError)
        ascii.value()
        assert [d.content for d in session.deliveries] == [MESSAGE]

    def test_heloFallback(self) -> None:
        """
        Against a server that answers EHLO with 500, the client falls back
        to HELO and delivers the message.
        """
        client = newClient()
        outcome = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        session = twistedServerSession(client, serverClass=NoEHLOServer)
        result = outcome.value()
        assert result.session is not None and not result.session.extended
        assert ("C", "HELO client.example") in result.transcript
        assert [d.content for d in session.deliveries] == [MESSAGE]

    def test_authRequiredNotOffered(self) -> None:
        """
        Authentication required against a server that offers none fails
        with L{errors.AuthenticationRequiredError}; nothing is delivered.
        """
        client = newClient(requireAuthentication=True, allowPlaintextAuth=True)
        client.registerAuthenticator(PlainMechanism(SERVER_USER, SERVER_PASSWORD))
        outcome = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        session = twistedServerSession(client)
        outcome.error(errors.AuthenticationRequiredError)
        assert session.deliveries == []
        assert client.transcript[-1] == ("C", "QUIT")


class TestAuthSessions:
    @pytest.mark.parametrize(
        ("mechanism", "offered"),
        [
            (PlainMechanism(SERVER_USER, SERVER_PASSWORD), b"PLAIN"),
            (LoginMechanism(SERVER_USER, SERVER_PASSWORD), b"LOGIN"),
            (CramMD5Mechanism(SERVER_USER, SERVER_PASSWORD), b"CRAM-MD5"),
        ],
    )
    def test_authenticate(self, mechanism: SASLMechanism, offered: bytes) -> None:
        """
        AUTH with PLAIN, LOGIN or CRAM-MD5 against Twisted's server and its
        portal (in clear, opted in: the in-memory transport has no TLS),
        then the message is delivered by the authenticated avatar.
        """
        client = newClient(allowPlaintextAuth=True, requireAuthentication=True)
        client.registerAuthenticator(mechanism)
        outcome = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        session = twistedServerSession(
            client, mechanisms=[b"PLAIN", b"LOGIN", b"CRAM-MD5"]
        )
        result = outcome.value()
        assert result.session is not None
        assert result.session.authMechanism == offered.decode()
        assert [d.content for d in session.deliveries] == [MESSAGE]
        assert SERVER_PASSWORD not in repr(result)

    def test_strongestOffered(self) -> None:
        """
        With password credentials for PLAIN, LOGIN and CRAM-MD5 and a
        server offering all three, CRAM-MD5 is used.
        """
        client = newClient(allowPlaintextAuth=True)
        for cls in (PlainMechanism, LoginMechanism, CramMD5Mechanism):
            client.registerAuthenticator(cls(SERVER_USER, SERVER_PASSWORD))
        outcome = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        twistedServerSession(client, mechanisms=[b"LOGIN", b"PLAIN", b"CRAM-MD5"])
        result = outcome.value()
        assert result.session is not None
        assert result.session.authMechanism == "CRAM-MD5"

    @pytest.mark.parametrize("cls", [PlainMechanism, LoginMechanism])
    def test_wrongPassword(self, cls: Any) -> None:
        """
        A wrong password is refused by the server with 535:
        L{errors.AuthenticationFailedError}, nothing delivered, and the
        password appears nowhere in the error.
        """
        client = newClient(allowPlaintextAuth=True)
        client.registerAuthenticator(cls(SERVER_USER, "wrong-password"))
        outcome = Outcome(client.send(SENDER, "ok@example.net", MESSAGE))
        session = twistedServerSession(client, mechanisms=[b"PLAIN", b"LOGIN"])
        error = outcome.error(errors.AuthenticationFailedError)
        assert error.code == 535
        assert session.deliveries == []
        assert "wrong-password" not in repr(
            (str(error), error.transcript, error.result)
        )
