"""
The envelope extensions on the wire: SIZE, 8BITMIME, SMTPUTF8 and IDNA, DSN,
REQUIRETLS, and RFC 9422 LIMITS (with RFC 5321's "too many recipients").
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Any

from twisted.internet.task import Clock

from mailclient import errors
from mailclient._wire.envelope import DSN, Recipient
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import Outcome, RecordingTransport, connectClient, serverSays

SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"
QUEUED = b"250 2.0.0 Ok: queued as Q1"


def readyClient(
    *keywords: bytes, **options: Any
) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO whose reply lists C{keywords} (no PIPELINING unless
    listed), its transport cleared.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    client = ESMTPClient(clock=Clock(), **options)
    transport = connectClient(client)
    serverSays(client, b"220 mx.example ESMTP")
    ehlo = [b"250-mx.example"] + [b"250-" + k for k in keywords]
    ehlo[-1] = b"250 " + ehlo[-1][4:]
    serverSays(client, *ehlo)
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


def firstLine(transport: RecordingTransport) -> bytes:
    """
    The first command line written.
    """
    written: bytes = transport.value()
    return written.split(b"\r\n", 1)[0]


class TestSize:
    def test_sizeDeclared(self) -> None:
        """
        When the server offers SIZE, MAIL declares the message's size.
        """
        client, transport = readyClient(b"SIZE 1000")
        client.send(SENDER, "a@x.example", MESSAGE)
        assert (
            firstLine(transport) == f"MAIL FROM:<{SENDER}> SIZE={len(MESSAGE)}".encode()
        )

    def test_tooLargeFailsBeforeSending(self) -> None:
        """
        A message larger than the server's declared limit fails with
        L{errors.MessageTooLargeError} before anything is written, and the
        session stays usable.
        """
        client, transport = readyClient(b"SIZE 10")
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        error = outcome.error(errors.MessageTooLargeError)
        assert (error.size, error.limit) == (len(MESSAGE), 10)
        assert error.result is not None
        assert error.result.recipients["a@x.example"].status == "not-attempted"
        assert transport.value() == b""
        assert client.phase is Phase.READY
        client.send(SENDER, "a@x.example", b"tiny\r\n")
        assert transport.value().startswith(b"MAIL FROM:")

    def test_sizeWithoutLimit(self) -> None:
        """
        C{SIZE} with no limit (or 0) still gets the declaration and never
        refuses.
        """
        client, transport = readyClient(b"SIZE")
        client.send(SENDER, "a@x.example", MESSAGE * 100)
        assert b"SIZE=" in firstLine(transport)


class TestEightBit:
    def test_eightBitDeclared(self) -> None:
        """
        8-bit content goes with BODY=8BITMIME when the server offers it.
        """
        client, transport = readyClient(b"8BITMIME")
        client.send(SENDER, "a@x.example", b"Subject: x\r\n\r\ncaf\xc3\xa9\r\n")
        assert b"BODY=8BITMIME" in firstLine(transport)

    def test_asciiNotDeclared(self) -> None:
        """
        7-bit content gets no BODY parameter.
        """
        client, transport = readyClient(b"8BITMIME")
        client.send(SENDER, "a@x.example", MESSAGE)
        assert b"BODY" not in firstLine(transport)

    def test_emailMessageDowngraded(self) -> None:
        """
        An C{EmailMessage} with 8-bit text goes to a server without 8BITMIME
        re-encoded to 7 bits, so nothing fails.
        """
        message = EmailMessage()
        message["Subject"] = "café"
        message.set_content("naïve café\n", cte="8bit")
        client, transport = readyClient(b"PIPELINING")
        outcome = Outcome(client.send(SENDER, "a@x.example", message))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.value().isascii()
        serverSays(client, QUEUED)
        assert outcome.value().accepted == ("a@x.example",)

    def test_rawEightBitWithout8BITMIMEFails(self) -> None:
        """
        Raw 8-bit bytes cannot be re-encoded: without 8BITMIME they fail
        clearly, before anything is sent.
        """
        client, transport = readyClient(b"PIPELINING")
        outcome = Outcome(client.send(SENDER, "a@x.example", b"caf\xc3\xa9\r\n"))
        outcome.error(errors.UnsupportedFeatureError)
        assert transport.value() == b""


class TestInternationalised:
    def test_smtputf8WhenNeeded(self) -> None:
        """
        A non-ASCII local part goes as UTF-8 with the SMTPUTF8 parameter when
        the server offers it.
        """
        client, transport = readyClient(b"PIPELINING", b"8BITMIME", b"SMTPUTF8")
        client.send(SENDER, "jos\u00e9@x.example", MESSAGE)
        written = transport.value()
        assert b"SMTPUTF8" in firstLine(transport)
        assert "RCPT TO:<jos\u00e9@x.example>".encode() in written

    def test_noSmtputf8WhenNotNeeded(self) -> None:
        """
        An all-ASCII message and envelope never ask for SMTPUTF8, even when
        offered.
        """
        client, transport = readyClient(b"8BITMIME", b"SMTPUTF8")
        client.send(SENDER, "a@x.example", MESSAGE)
        assert b"SMTPUTF8" not in firstLine(transport)

    def test_idnaWithoutSmtputf8(self) -> None:
        """
        Without SMTPUTF8 a non-ASCII domain becomes IDNA A-labels and the
        local part (ASCII) stays as it is.
        """
        client, transport = readyClient(b"PIPELINING")
        outcome = Outcome(client.send(SENDER, "kim@b\u00fccher.example", MESSAGE))
        assert b"RCPT TO:<kim@xn--bcher-kva.example>" in transport.value()
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        result = outcome.value()
        assert result.accepted == ("kim@b\u00fccher.example",)

    def test_nonAsciiLocalPartWithoutSmtputf8(self) -> None:
        """
        A non-ASCII local part without SMTPUTF8 is a clear error, nothing
        sent.
        """
        client, transport = readyClient(b"PIPELINING", b"8BITMIME")
        outcome = Outcome(client.send(SENDER, "jos\u00e9@x.example", MESSAGE))
        error = outcome.error(errors.UnsupportedFeatureError)
        assert "SMTPUTF8" in str(error)
        assert transport.value() == b""


class TestDSN:
    def test_parameters(self) -> None:
        """
        RET and ENVID go on MAIL (ENVID xtext-encoded), NOTIFY and ORCPT on
        each RCPT, per recipient.
        """
        client, transport = readyClient(b"PIPELINING", b"DSN")
        outcome = Outcome(
            client.send(
                SENDER,
                [
                    Recipient("a@x.example", notify=("SUCCESS", "FAILURE")),
                    Recipient("b@x.example", originalRecipient="b+old@x.example"),
                ],
                MESSAGE,
                dsn=DSN(ret="HDRS", envelopeId="id 1+2", notify=("NEVER",)),
            )
        )
        written = transport.value().split(b"\r\n")
        assert written[0] == b"MAIL FROM:<alice@example.com> RET=HDRS ENVID=id+201+2B2"
        assert written[1] == b"RCPT TO:<a@x.example> NOTIFY=SUCCESS,FAILURE"
        assert written[2] == (
            b"RCPT TO:<b@x.example> NOTIFY=NEVER ORCPT=rfc822;b+2Bold@x.example"
        )
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert "DSN" in outcome.value().extensions

    def test_notOfferedNotSent(self) -> None:
        """
        DSN options for a server without DSN are not sent, and the result
        says DSN was not used.
        """
        client, transport = readyClient(b"PIPELINING")
        outcome = Outcome(
            client.send(SENDER, "a@x.example", MESSAGE, dsn=DSN(ret="FULL"))
        )
        assert b"RET=" not in transport.value()
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert "DSN" not in outcome.value().extensions


class TestRequireTLS:
    def test_failsClosedWithoutTLS(self) -> None:
        """
        REQUIRETLS on a session without TLS fails the message before
        anything is sent, even though the server offers REQUIRETLS.
        """
        client, transport = readyClient(b"PIPELINING", b"REQUIRETLS")
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE, requireTLS=True))
        outcome.error(errors.RequireTLSError)
        assert transport.value() == b""

    def test_failsClosedWhenNotOffered(self) -> None:
        """
        REQUIRETLS fails when the server does not offer it, even over TLS.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        serverSays(client, b"220 mx", b"250 mx")
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE, requireTLS=True))
        error = outcome.error(errors.RequireTLSError)
        assert "REQUIRETLS" in str(error)

    def test_sentOverTLS(self) -> None:
        """
        Over TLS with REQUIRETLS offered, MAIL carries the REQUIRETLS
        parameter.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        serverSays(client, b"220 mx")
        serverSays(client, b"250-mx", b"250 REQUIRETLS")
        transport.clear()
        client.send(SENDER, "a@x.example", MESSAGE, requireTLS=True)
        assert firstLine(transport) == b"MAIL FROM:<alice@example.com> REQUIRETLS"


class TestLimits:
    def test_rcptMaxSplits(self) -> None:
        """
        RCPTMAX splits the recipients into transactions on the same
        connection, and the result merges them.
        """
        client, transport = readyClient(b"PIPELINING", b"LIMITS RCPTMAX=2")
        rcpts = ["a@x.example", "b@x.example", "c@x.example"]
        outcome = Outcome(client.send(SENDER, rcpts, MESSAGE))
        first = transport.take()
        assert first.count(b"RCPT TO:") == 2
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
        second = transport.take()
        assert second.startswith(MESSAGE + b".\r\nMAIL FROM:")
        assert second.count(b"RCPT TO:<c@x.example>") == 1
        serverSays(client, b"250 queued as ONE", b"250 Ok", b"250 Ok", b"354 Go")
        assert not outcome.called
        serverSays(client, b"250 queued as TWO")
        result = outcome.value()
        assert result.accepted == tuple(rcpts)
        assert result.recipients["c@x.example"].text == "queued as TWO"
        assert client.transactions == 2

    def test_mailMax(self) -> None:
        """
        After MAILMAX transactions the session takes no more: the next send
        fails with L{errors.SessionLimitError}, nothing sent.
        """
        client, _transport = readyClient(b"PIPELINING", b"LIMITS MAILMAX=1")
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert first.value().accepted == ("a@x.example",)
        error = second.error(errors.SessionLimitError)
        assert error.limit == 1
        assert error.result is not None
        assert error.result.recipients["b@x.example"].status == "not-attempted"
        assert not client.canSend
        Outcome(client.send(SENDER, "c@x.example", MESSAGE)).error(
            errors.SessionLimitError
        )

    def test_tooManyRecipientsRetried(self) -> None:
        """
        A 452 "too many recipients" after some were accepted: those
        recipients go again in a transaction of their own.
        """
        client, transport = readyClient(b"PIPELINING", b"ENHANCEDSTATUSCODES")
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        serverSays(
            client, b"250 Ok", b"250 Ok", b"452 4.5.3 too many recipients", b"354 Go"
        )
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.value() == (
            b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@x.example>\r\nDATA\r\n"
        )
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert outcome.value().accepted == ("a@x.example", "b@x.example")
