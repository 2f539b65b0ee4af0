"""
PIPELINING (RFC 2920): the envelope in one write, the next envelope behind
the end of the data, a bounded RCPT window, and the cases where a pipelining
server says no.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from mailclient import SendResult, errors
from mailclient.protocol import PIPELINE_WINDOW, ESMTPClient, Phase
from tests.helpers import Outcome, RecordingTransport, connectClient, serverSays

GREETING = b"220 mx.example ESMTP"
EHLO_PIPELINING = (
    b"250-mx.example",
    b"250-PIPELINING",
    b"250 ENHANCEDSTATUSCODES",
)
SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"
QUEUED = b"250 2.0.0 Ok: queued as Q1"


def readyClient(*ehlo: bytes, **options: Any) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO (with PIPELINING unless C{ehlo} says otherwise), its
    transport cleared.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    client = ESMTPClient(clock=Clock(), **options)
    transport = connectClient(client)
    serverSays(client, GREETING)
    serverSays(client, *(ehlo or EHLO_PIPELINING))
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


def lines(*commands: bytes) -> bytes:
    """
    Commands as written, each ended with CRLF.
    """
    return b"".join(c + b"\r\n" for c in commands)


def envelope(recipients: list[str], sender: str = SENDER) -> bytes:
    """
    MAIL, one RCPT per recipient, and DATA, as one pipelined flight.
    """
    return lines(
        f"MAIL FROM:<{sender}>".encode(),
        *(f"RCPT TO:<{r}>".encode() for r in recipients),
        b"DATA",
    )


class TestOneFlight:
    def test_envelopeInOneWrite(self) -> None:
        """
        MAIL, every RCPT and DATA leave in a single write.
        """
        client, transport = readyClient()
        rcpts = [f"r{i}@example.net" for i in range(10)]
        client.send(SENDER, rcpts, MESSAGE)
        assert transport.writes == [envelope(rcpts)]

    def test_repliesInOneSegmentThenBody(self) -> None:
        """
        The replies to the whole flight may come at once; the body and the
        final dot then leave in one write, and the result has every
        recipient.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        transport.clear()
        serverSays(client, b"250 2.1.0 Ok", b"250 2.1.5 Ok", b"250 2.1.5 Ok", b"354 Go")
        assert transport.writes == [MESSAGE + b".\r\n"]
        serverSays(client, QUEUED)
        result = outcome.value()
        assert result.accepted == ("a@x.example", "b@x.example")
        assert "PIPELINING" in result.extensions
        assert result.queueId == "Q1"

    def test_someRecipientsRefused(self) -> None:
        """
        A refused recipient in the flight does not stop the others: the
        message goes to the accepted ones and the refusal is in the result.
        """
        client, _transport = readyClient()
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        serverSays(
            client,
            b"250 Ok",
            b"550 5.1.1 no such user",
            b"250 Ok",
            b"354 Go",
        )
        serverSays(client, QUEUED)
        result = outcome.value()
        assert result.recipients["a@x.example"].status == "rejected"
        assert result.recipients["a@x.example"].phase == "RCPT"
        assert result.accepted == ("b@x.example",)

    def test_nextEnvelopeFollowsTheData(self) -> None:
        """
        On a reused session the next message's MAIL, RCPT and DATA follow
        the end of the previous message's data in the same write: one round
        trip per message.
        """
        client, transport = readyClient()
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        transport.clear()
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.writes == [MESSAGE + b".\r\n" + envelope(["b@x.example"])]
        transport.clear()
        serverSays(client, QUEUED, b"250 Ok", b"250 Ok", b"354 Go")
        assert first.value().accepted == ("a@x.example",)
        assert transport.writes == [MESSAGE + b".\r\n"]
        serverSays(client, QUEUED)
        assert second.value().accepted == ("b@x.example",)
        assert client.phase is Phase.READY

    def test_quitFollowsTheLastData(self) -> None:
        """
        With C{quitWhenIdle}, QUIT follows the end of the last message's
        data in the same write.
        """
        client = ESMTPClient(
            clock=Clock(), heloName="client.example", tls="none", quitWhenIdle=True
        )
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        transport = connectClient(client)
        serverSays(client, GREETING, *EHLO_PIPELINING)
        assert transport.take().endswith(envelope(["a@x.example"]))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.writes == [MESSAGE + b".\r\nQUIT\r\n"]
        serverSays(client, QUEUED)
        assert outcome.value().accepted == ("a@x.example",)
        assert client.phase is Phase.QUIT
        serverSays(client, b"221 Bye")
        assert transport.disconnecting


class TestRefusals:
    def test_everyRecipientRefusedAndDATARefused(self) -> None:
        """
        When every recipient is refused, the server refuses DATA; nothing is
        delivered and the next message starts with RSET in its own flight.
        """
        client, transport = readyClient()
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        serverSays(
            client, b"250 Ok", b"550 5.1.1 unknown", b"554 5.5.1 no valid recipients"
        )
        error = first.error(errors.AllRecipientsRefusedError)
        assert error.result is not None
        assert error.result.recipients["a@x.example"].code == 550
        transport.clear()
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.writes == [b"RSET\r\n" + envelope(["b@x.example"])]

    def test_everyRecipientRefusedBut354(self) -> None:
        """
        A server that says 354 although it refused every recipient gets an
        empty message (only the final dot), never the content, and the send
        reports nothing delivered.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        transport.clear()
        serverSays(client, b"250 Ok", b"550 5.1.1 no", b"450 4.2.1 later", b"354 Go")
        assert transport.value() == b".\r\n"
        assert not outcome.called
        serverSays(client, b"250 Ok")
        error = outcome.error(errors.AllRecipientsRefusedError)
        assert error.result is not None
        assert error.result.accepted == ()
        assert error.result.recipients["b@x.example"].status == "deferred"
        assert error.result.reply is None

    def test_senderRefused(self) -> None:
        """
        A refused MAIL decides every recipient; the 503s the server gives
        the pipelined RCPTs and DATA change nothing.
        """
        client, _transport = readyClient()
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        serverSays(
            client,
            b"550 5.7.1 sender blocked",
            b"503 5.5.1 need MAIL",
            b"503 5.5.1 need MAIL",
            b"503 5.5.1 need MAIL",
        )
        error = outcome.error(errors.SenderRefusedError)
        assert error.code == 550
        assert {r.phase for r in error.result.recipients.values()} == {"MAIL"}  # type: ignore[union-attr]
        assert client.phase is Phase.READY

    def test_DATARefusedAfterAcceptedRecipients(self) -> None:
        """
        A refusal of DATA decides the accepted recipients, and RSET comes
        before the next message.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"451 4.3.0 try later")
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.result.recipients["a@x.example"].phase == "DATA"
        assert error.result.recipients["a@x.example"].status == "deferred"
        transport.clear()
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.value().startswith(b"RSET\r\nMAIL FROM:")

    def test_421InTheFlight(self) -> None:
        """
        A 421 to a RCPT in the flight closes the session: that recipient is
        deferred with the 421, the ones before it are not delivered
        (deferred), and the ones after it were not attempted.
        """
        client, _transport = readyClient()
        outcome = Outcome(
            client.send(SENDER, ["a@x.example", "b@x.example", "c@x.example"], MESSAGE)
        )
        serverSays(client, b"250 Ok", b"250 Ok", b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        statuses = {a: r.status for a, r in error.result.recipients.items()}
        assert statuses == {
            "a@x.example": "deferred",
            "b@x.example": "deferred",
            "c@x.example": "not-attempted",
        }
        assert error.result.recipients["b@x.example"].code == 421

    def test_lostAfterDataWithNextEnvelopeInFlight(self) -> None:
        """
        The connection breaks after the first message's data and the second
        message's envelope were sent: the first message's recipient is
        "unknown" (maybe delivered, never resent), the second was not
        delivered.
        """
        client, _transport = readyClient()
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        client.connectionLost()
        one = first.error(errors.ConnectionLostError)
        two = second.error(errors.ConnectionLostError)
        assert one.result is not None and two.result is not None
        assert one.result.recipients["a@x.example"].status == "unknown"
        assert two.result.recipients["b@x.example"].status == "not-attempted"
        assert one.phase == "END-OF-DATA"


class TestWindow:
    def test_hugeEnvelopeIsWindowed(self) -> None:
        """
        With more recipients than the window, the first flight holds MAIL
        and a window of RCPTs; each reply lets one more go, and DATA follows
        the last RCPT.
        """
        client, transport = readyClient()
        rcpts = [f"r{i}@x.example" for i in range(PIPELINE_WINDOW + 5)]
        outcome = Outcome(client.send(SENDER, rcpts, MESSAGE))
        first = transport.take()
        assert first.count(b"RCPT TO:") == PIPELINE_WINDOW
        assert b"DATA" not in first
        serverSays(client, b"250 Ok")
        assert transport.value() == b""
        serverSays(client, *[b"250 Ok"] * 4)
        assert transport.take().count(b"RCPT TO:") == 4
        serverSays(client, b"250 Ok")
        assert transport.take() == lines(f"RCPT TO:<{rcpts[-1]}>".encode(), b"DATA")
        serverSays(client, *[b"250 Ok"] * PIPELINE_WINDOW, b"354 Go")
        serverSays(client, QUEUED)
        assert len(outcome.value().accepted) == len(rcpts)


class TestSwitchedOff:
    def test_noPipeliningWhenNotOffered(self) -> None:
        """
        Without PIPELINING in the EHLO reply, every command waits for the
        previous reply.
        """
        client, transport = readyClient(b"250-mx.example", b"250 8BITMIME")
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        serverSays(client, b"250 Ok")
        assert transport.take() == b"RCPT TO:<a@x.example>\r\n"
        serverSays(client, b"250 Ok")
        assert transport.take() == b"RCPT TO:<b@x.example>\r\n"
        serverSays(client, b"250 Ok")
        assert transport.take() == b"DATA\r\n"
        serverSays(client, b"354 Go")
        serverSays(client, QUEUED)
        result: SendResult = outcome.value()
        assert "PIPELINING" not in result.extensions

    def test_switchOff(self) -> None:
        """
        C{pipelining=False} makes the client wait for every reply even when
        the server offers PIPELINING.
        """
        client, transport = readyClient(pipelining=False)
        client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE)
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        assert not client.pipeliningActive
