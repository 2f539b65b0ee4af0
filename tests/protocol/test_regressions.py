"""
One test per weakness of C{twisted.mail.smtp}'s client.

Each test is written so that it would fail against Twisted's behaviour, which
its docstring describes.
"""

from __future__ import annotations

import base64

import pytest
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock

from mailclient import LoginMechanism, PlainMechanism, SendResult, errors, sendmail
from mailclient.protocol import ESMTPClient
from tests.helpers import (
    FakeTLSOptions,
    Outcome,
    RecordingTransport,
    ScriptedEndpoint,
    connectClient,
    serverSays,
    twistedServerSession,
)

GREETING = b"220 mx.example ESMTP"
SENDER = "alice@example.com"
RECIPIENT = "bob@example.net"
USER = "alice"
PASSWORD = "hunter2-but-longer"
CHUNK = 65536
SMUGGLED = (
    b".\r\nMAIL FROM:<evil@attacker.example>\r\n"
    b"RCPT TO:<victim@example.net>\r\nDATA\r\nevil\r\n.\r\n"
)


def newClient(**options: object) -> ESMTPClient:
    """
    A client named C{client.example}, without TLS unless asked.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    return ESMTPClient(clock=Clock(), **options)  # type: ignore[arg-type]


def decodeData(wire: bytes) -> bytes:
    """
    A reference DATA decoder (RFC 5321 section 4.5.2): read CRLF lines up
    to the lone C{"."}, remove one leading dot from the others.  The end
    must be the last thing on the wire.
    """
    lines = wire.split(b"\r\n")
    end = lines.index(b".")
    assert lines[end + 1 :] == [b""], "bytes after the end of the data"
    return b"".join(
        (line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines[:end]
    )


def paddedTo(offset: int, head: bytes, tail: bytes) -> bytes:
    """
    C{head}, filler lines so that the next line starts exactly at
    C{offset}, then C{tail}.
    """
    filler = b""
    while len(head) + len(filler) + 100 <= offset:
        filler += b"a" * 98 + b"\r\n"
    rest = offset - len(head) - len(filler)
    if rest:
        assert rest >= 2
        filler += b"b" * (rest - 2) + b"\r\n"
    data = head + filler
    assert len(data) == offset and data.endswith(b"\r\n")
    return data + tail


def sendOverWire(message: bytes) -> bytes:
    """
    Send C{message} over a hand-driven session and return the DATA bytes
    the client wrote (driving the pull producer to the end).
    """
    client = newClient()
    transport = connectClient(client)
    Outcome(client.send(SENDER, RECIPIENT, message))
    serverSays(client, GREETING, b"250 mx.example", b"250 ok", b"250 ok")
    transport.clear()
    serverSays(client, b"354 go ahead")
    while transport.producer is not None:
        client.resumeProducing()
    return transport.take()


def starttlsClient() -> tuple[ESMTPClient, RecordingTransport, Outcome[SendResult]]:
    """
    A client that requires STARTTLS and holds credentials, which has just
    sent STARTTLS.
    """
    client = newClient(tls="starttls", tlsOptions=FakeTLSOptions())
    client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
    transport = connectClient(client, RecordingTransport(startTLS=True))
    outcome = Outcome(client.send(SENDER, RECIPIENT, b"Subject: x\r\n\r\nx\r\n"))
    serverSays(client, GREETING, b"250-mx.example", b"250-STARTTLS", b"250 AUTH PLAIN")
    assert transport.take().endswith(b"STARTTLS\r\n")
    return client, transport, outcome


class TestSTARTTLSInjection:
    @pytest.mark.parametrize(
        "segment", [b"220 go ahead\r\n250 fake\r\n", b"220 go ahead\r\n25"]
    )
    def test_plaintextAfter220(self, segment: bytes) -> None:
        """
        Bytes that arrive in clear in the same segment as the 220 to
        STARTTLS (a whole injected line or part of one) fail the session
        with L{errors.SMTPProtocolError}; TLS is never started, nothing is
        read as a post-TLS reply, no AUTH is sent.

        Twisted's C{ESMTPClient.esmtpState_starttls} starts TLS and keeps
        reading the lines LineReceiver already buffered, so an attacker's
        plaintext "250 ..." is taken as the server's EHLO reply over TLS
        (the CVE-2011-0411 class of STARTTLS injection).
        """
        client, transport, outcome = starttlsClient()
        client.dataReceived(segment)
        error = outcome.error(errors.SMTPProtocolError)
        assert "in clear after the 220" in error.reason
        assert transport.tlsStarts == []
        assert b"AUTH" not in transport.value()
        assert b"EHLO" not in transport.value()
        assert transport.aborted

    def test_cleanUpgradeStillWorks(self) -> None:
        """
        The same session without injected bytes upgrades (the check above
        is not a blanket refusal).
        """
        client, transport, _ = starttlsClient()
        serverSays(client, b"220 go ahead")
        assert len(transport.tlsStarts) == 1
        assert transport.value() == b"EHLO client.example\r\n"


class TestDotStuffing:
    def test_firstLineDot(self) -> None:
        """
        A message whose first line starts with a dot is dot-stuffed.

        Twisted's C{SMTPClient.transformChunk} only replaces C{"\\r\\n."},
        so a leading dot on the first line goes out unstuffed (and a first
        line of just "." ends the data at once).
        """
        wire = sendOverWire(b".hidden\r\nbody\r\n")
        assert wire == b"..hidden\r\nbody\r\n.\r\n"

    def test_firstLineSmuggling(self) -> None:
        """
        A message starting with ".\\r\\nMAIL FROM:..." cannot end the data
        early and smuggle a second transaction onto the wire.
        """
        wire = sendOverWire(SMUGGLED)
        assert wire.startswith(b"..\r\nMAIL FROM:<evil@attacker.example>")
        assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")
        assert decodeData(wire) == SMUGGLED

    @pytest.mark.parametrize("offset", [16384, CHUNK, 2 * CHUNK])
    def test_dotLineAtChunkBoundary(self, offset: int) -> None:
        """
        A "." line that starts exactly at a 16 KiB or 64 KiB boundary of the
        message is dot-stuffed.

        Twisted's C{FileSender} hands C{transformChunk} 16 KiB chunks, and
        the C{"\\r\\n." -> "\\r\\n.."} replacement cannot see a CRLF at the
        end of one chunk and the dot at the start of the next: the line goes
        out as a lone "." and ends the message there.
        """
        message = paddedTo(
            offset, b"Subject: boundary\r\n\r\n", SMUGGLED + b"after\r\n"
        )
        assert message[offset : offset + 3] == b".\r\n"
        wire = sendOverWire(message)
        assert wire[offset : offset + 4] == b"..\r\n"
        assert wire.count(b"\r\n.\r\n") == 1 and wire.endswith(b"\r\n.\r\n")
        assert decodeData(wire) == message

    def test_CRLFStaysCRLF(self) -> None:
        """
        A message that already has CRLF line ends keeps them, even when a
        CRLF is split across two 64 KiB blocks; no CR CR LF is sent.

        Twisted's C{transformChunk} replaces every LF by CRLF, so CRLF input
        becomes CR CR LF.
        """
        head = b"Subject: crlf\r\n\r\n"
        message = paddedTo(CHUNK + 1, head, b"next line\r\nlast\r\n")
        assert message[CHUNK - 1 : CHUNK + 1] == b"\r\n"  # split by the block
        wire = sendOverWire(message)
        assert b"\r\r\n" not in wire
        assert wire == message + b".\r\n"

    def test_smugglingAgainstTwistedServer(self) -> None:
        """
        Against Twisted's real ESMTP server, the smuggling body is delivered
        as one message, whole, and no second transaction happens.
        """
        client = newClient()
        outcome = Outcome(client.send(SENDER, RECIPIENT, SMUGGLED))
        session = twistedServerSession(client)
        assert outcome.value().accepted == (RECIPIENT,)
        assert [d.recipient for d in session.deliveries] == [b"bob@example.net"]
        # Twisted's server inserts a blank line before a message without
        # headers (smtp.SMTP.dataLineReceived); the rest is the input.
        assert session.deliveries[0].content == b"\r\n" + SMUGGLED

    @pytest.mark.parametrize("offset", [16384, CHUNK])
    def test_boundarySmugglingAgainstTwistedServer(self, offset: int) -> None:
        """
        Against Twisted's real ESMTP server, a message with the smuggling
        lines at a 16 KiB or 64 KiB boundary is delivered once, to the
        intended recipient only, byte for byte.
        """
        message = paddedTo(offset, b"Subject: boundary\r\n\r\n", SMUGGLED + b"tail\r\n")
        client = newClient()
        outcome = Outcome(client.send(SENDER, RECIPIENT, message))
        session = twistedServerSession(client)
        outcome.value()
        assert len(session.deliveries) == 1
        assert session.deliveries[0].recipient == b"bob@example.net"
        assert session.deliveries[0].content == message


class TestReplies:
    def test_noPlaintextAUTHWithoutSTARTTLS(self) -> None:
        """
        A server that offers AUTH but not STARTTLS gets no credentials in
        clear: L{errors.PlaintextAuthRefusedError}, and no AUTH line is
        written.

        Twisted's C{ESMTPClient} (with C{requireTransportSecurity} false,
        as C{twisted.mail.smtp.sendmail} leaves it) authenticates in clear
        whenever the server offers no STARTTLS.
        """
        client = newClient(
            tls="opportunistic", tlsOptions=FakeTLSOptions(), requireAuthentication=True
        )
        client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
        transport = connectClient(client, RecordingTransport(startTLS=True))
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        serverSays(client, GREETING, b"250-mx.example", b"250 AUTH PLAIN LOGIN")
        outcome.error(errors.PlaintextAuthRefusedError)
        assert b"AUTH" not in transport.value()
        assert base64.b64encode(PASSWORD.encode()) not in transport.value()

    def test_250ToDATA(self) -> None:
        """
        A 250 reply to DATA is a protocol violation, never "delivered".

        Twisted's C{SMTPClient} treats any reply to DATA other than 354 as
        the final reply to the message, so a 250 there is reported as a
        successful delivery of a message that was never sent.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        serverSays(client, GREETING, b"250 mx.example", b"250 ok", b"250 ok")
        serverSays(client, b"250 2.0.0 Ok: queued as FAKE")
        error = outcome.error(errors.SMTPProtocolError)
        assert error.result is not None
        assert error.result.accepted == ()
        assert error.result.reply is None
        assert not transport.value().endswith(b"x\r\n.\r\n")

    def test_251ToMAIL(self) -> None:
        """
        A 251 reply to MAIL (a code only RCPT may use) is a protocol
        violation.

        Twisted's C{SMTPClient} expects 250, hands anything else to
        C{smtpState_msgSent}, and since 251 is in its C{SUCCESS} range,
        C{SMTPSenderFactory} reports the message sent without any RCPT.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        serverSays(client, GREETING, b"250 mx.example")
        transport.clear()
        serverSays(client, b"251 odd")
        outcome.error(errors.SMTPProtocolError)
        assert b"RCPT" not in transport.value()

    def test_greetingTimeout(self) -> None:
        """
        A server that never greets is given up on after 300 s.

        Twisted's C{SMTPClient.timeout} is L{None} and C{sendmail} sets no
        timeout, so a silent server hangs the Deferred forever.
        """
        clock = Clock()
        client = ESMTPClient(clock=clock, heloName="client.example", tls="none")
        connectClient(client)
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        clock.advance(299)
        assert not outcome.called
        clock.advance(1)
        error = outcome.error(errors.SMTPTimeoutError)
        assert (error.phase, error.seconds) == ("greeting", 300)

    def test_queueIdOnResult(self) -> None:
        """
        The final reply, with its queue id, is on the result.

        Twisted's C{sendmail} fires with C{(numOk, addresses)}: the reply to
        the end of the data, the only place the queue id appears, is lost.
        """
        client = newClient()
        connectClient(client)
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        serverSays(client, GREETING, b"250 mx.example", b"250 ok", b"250 ok", b"354 go")
        serverSays(client, b"250 2.0.0 Ok: queued as ABC123")
        result = outcome.value()
        assert result.queueId == "ABC123"
        assert result.reply is not None
        assert result.reply.text == "Ok: queued as ABC123"


class TestSecrets:
    @pytest.mark.parametrize("failAt", ["AUTH", "DATA"])
    def test_base64PasswordNeverInErrors(self, failAt: str) -> None:
        """
        The password and its base64 form appear in no error message or
        error transcript, whether AUTH fails or a later command does.

        Twisted's errors carry C{self.log.str()}, the last lines sent,
        including the base64 credentials of AUTH PLAIN or LOGIN.
        """
        client = newClient(allowPlaintextAuth=True)
        client.registerAuthenticator(LoginMechanism(USER, PASSWORD))
        transport = connectClient(client)
        outcome = Outcome(client.send(SENDER, RECIPIENT, b"x\r\n"))
        serverSays(client, GREETING, b"250-mx.example", b"250 AUTH LOGIN")
        serverSays(client, b"334 VXNlcm5hbWU6", b"334 UGFzc3dvcmQ6")
        secret = base64.b64encode(PASSWORD.encode())
        assert secret in transport.value()
        if failAt == "AUTH":
            serverSays(client, b"535 5.7.8 bad credentials")
        else:
            serverSays(client, b"235 ok", b"250 ok", b"250 ok", b"554 no DATA")
        error = outcome.error(errors.MailClientError)
        texts = [str(error), repr(error), repr(error.transcript), repr(error.result)]
        for text in texts:
            assert secret.decode() not in text
            assert PASSWORD not in text


class TestSendmail:
    def test_noInstantRetries(self) -> None:
        """
        A failed connection is retried only after a backoff delay (about
        1 s, then about 2 s), never at once.

        Twisted's C{SMTPSenderFactory} calls C{connector.connect()} again
        straight from C{clientConnectionFailed}: five retries in a burst.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint(
            [
                ConnectionRefusedError(),
                ConnectionRefusedError(),
                ConnectionRefusedError(),
            ],
            clock=reactor,
        )
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            b"x\r\n",
            endpoint=endpoint,
            reactor=reactor,
            tls="none",
        )
        outcome = Outcome(d)
        assert endpoint.times == [0]
        reactor.advance(0.49)
        assert len(endpoint.times) == 1
        for _ in range(100):
            reactor.advance(0.05)
        assert not reactor.getDelayedCalls()
        error = outcome.error(errors.SMTPConnectError)
        assert len(endpoint.times) == 3
        first, second = (
            b - a for a, b in zip(endpoint.times, endpoint.times[1:], strict=False)
        )
        assert 0.5 <= first <= 1.5 + 0.05
        assert 1.0 <= second <= 3.0 + 0.05
        assert error.result is not None and error.result.attempts == 3

    def test_strMessageDoesNotRaise(self) -> None:
        """
        A C{str} message is accepted (sent as UTF-8); it never raises.

        Twisted's C{sendmail} does C{BytesIO(bytes(msg))}, which raises
        C{TypeError} at the call for a C{str}.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport])
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            "Subject: hi\r\n\r\nhi\r\n",
            endpoint=endpoint,
            reactor=reactor,
            tls="none",
        )
        outcome = Outcome(d)
        client = transport.protocol
        assert isinstance(client, ESMTPClient)
        serverSays(client, GREETING, b"250 mx.example", b"250 ok", b"250 ok")
        transport.clear()
        serverSays(client, b"354 go")
        assert transport.value() == b"Subject: hi\r\n\r\nhi\r\n.\r\n"
        serverSays(client, b"250 queued as Q")
        assert outcome.value().queueId == "Q"

    @pytest.mark.parametrize(
        ("to", "message"),
        [("bøb@example.net", b"x\r\n"), (RECIPIENT, "Subject: é\r\n\r\né\r\n")],
    )
    def test_nonASCIIFailsDeferred(self, to: str, message: object) -> None:
        """
        A non-ASCII address (which needs SMTPUTF8), or a non-ASCII message
        to a server without 8BITMIME, fails the Deferred with
        L{errors.UnsupportedFeatureError} instead of raising.

        Twisted's C{sendmail} raises C{UnicodeEncodeError} (or
        C{TypeError}) at the call, or sends the octets anyway.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport])
        d = sendmail(
            None, SENDER, to, message, endpoint=endpoint, reactor=reactor, tls="none"
        )
        outcome = Outcome(d)
        if endpoint.factories:
            client = transport.protocol
            assert isinstance(client, ESMTPClient)
            serverSays(client, GREETING, b"250 mx.example")
        outcome.error(errors.UnsupportedFeatureError)
