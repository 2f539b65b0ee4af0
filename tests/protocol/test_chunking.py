"""
CHUNKING (RFC 3030): BDAT with exact octet counts, pipelined with the
envelope; several chunks for a large message, with back-pressure; BINARYMIME
when the body needs it.
"""

from __future__ import annotations

import re
from typing import Any

from twisted.internet.task import Clock

from mailclient import errors
from mailclient._source import CHUNK_SIZE
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import Outcome, RecordingTransport, connectClient, serverSays

GREETING = b"220 mx.example ESMTP"
EHLO_CHUNKING = (
    b"250-mx.example",
    b"250-PIPELINING",
    b"250-8BITMIME",
    b"250 CHUNKING",
)
SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n.leading dot stays\r\n"
BDAT = re.compile(rb"BDAT (\d+)( LAST)?\r\n")


def readyClient(*ehlo: bytes, **options: Any) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO (CHUNKING and PIPELINING unless C{ehlo} says
    otherwise), its transport cleared.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    client = ESMTPClient(clock=Clock(), **options)
    transport = connectClient(client)
    serverSays(client, GREETING)
    serverSays(client, *(ehlo or EHLO_CHUNKING))
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


def chunks(data: bytes) -> tuple[list[tuple[int, bool, bytes]], bytes]:
    """
    Split what the client wrote after the envelope into BDAT chunks:
    C{(declared size, last, payload)}; also return what came before the
    first BDAT.
    """
    found = []
    start = data.find(b"BDAT ")
    head, rest = data[:start], data[start:]
    while rest:
        match = BDAT.match(rest)
        assert match is not None, rest[:40]
        size = int(match.group(1))
        payload = rest[match.end() : match.end() + size]
        assert len(payload) == size
        found.append((size, bool(match.group(2)), payload))
        rest = rest[match.end() + size :]
    return found, head


class TestSmallMessage:
    def test_oneFlight(self) -> None:
        """
        A small message is MAIL, RCPT and C{BDAT n LAST} with the message,
        in one write: one round trip, no dot-stuffing, exact count.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        assert len(transport.writes) == 1
        found, head = chunks(transport.value())
        assert head == b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<a@x.example>\r\n"
        assert found == [(len(MESSAGE), True, MESSAGE)]
        serverSays(client, b"250 Ok", b"250 Ok", b"250 2.0.0 Ok: queued as Z9")
        result = outcome.value()
        assert result.accepted == ("a@x.example",)
        assert result.queueId == "Z9"
        assert {"CHUNKING", "PIPELINING"} <= result.extensions

    def test_bareLineEndsBecomeCRLF(self) -> None:
        """
        A text message's bare LFs are sent as CRLF, and the count covers the
        octets actually sent.
        """
        client, transport = readyClient()
        client.send(SENDER, "a@x.example", b"Subject: x\n\nbody\n")
        found, _ = chunks(transport.value())
        assert found == [(20, True, b"Subject: x\r\n\r\nbody\r\n")]

    def test_nextMessageWaitsForReplies(self) -> None:
        """
        The next message's flight leaves once the previous one's replies
        are in: one round trip per message.
        """
        client, transport = readyClient()
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        transport.clear()
        serverSays(client, b"250 Ok", b"250 Ok")
        assert transport.value() == b""
        serverSays(client, b"250 Ok queued")
        assert first.called
        assert transport.value().startswith(
            b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<b@"
        )

    def test_chunkingOffUsesDATA(self) -> None:
        """
        C{chunking=False} sends with DATA even when CHUNKING is offered.
        """
        client, transport = readyClient(chunking=False)
        client.send(SENDER, "a@x.example", MESSAGE)
        assert transport.value().endswith(b"DATA\r\n")

    def test_noRecipientAccepted(self) -> None:
        """
        When every recipient is refused, the server refuses the chunk; the
        message fails and RSET precedes the next transaction.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"550 5.1.1 no", b"554 5.5.1 no valid recipients")
        outcome.error(errors.AllRecipientsRefusedError)
        transport.clear()
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.value().startswith(b"RSET\r\nMAIL FROM:")

    def test_lastChunkRefused(self) -> None:
        """
        A refusal of the last chunk refuses the message for the accepted
        recipients.
        """
        client, _transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"554 5.6.0 content rejected")
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.result.recipients["a@x.example"].phase == "END-OF-DATA"
        assert error.result.recipients["a@x.example"].code == 554


class TestLargeMessage:
    def test_severalChunks(self) -> None:
        """
        A message larger than a chunk goes as several BDAT chunks whose
        payloads, put together, are the message; only the last says LAST.
        """
        body = b"Subject: big\r\n\r\n" + b"x" * 70 + b"\r\n"
        message = body * (3 * CHUNK_SIZE // len(body) + 1)
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", message))
        # The string transport asks for no more data: produce by hand.
        while client._producingRun is not None:
            client.resumeProducing()
        found, _ = chunks(transport.value())
        assert len(found) >= 4
        assert [last for _, last, _ in found] == [False] * (len(found) - 1) + [True]
        assert b"".join(p for _, _, p in found) == message
        serverSays(client, b"250 Ok", b"250 Ok", *[b"250 Ok"] * len(found))
        assert outcome.value().accepted == ("a@x.example",)

    def test_chunkRefusedStopsTheMessage(self) -> None:
        """
        A refused chunk ends the message: no further chunk is written, the
        accepted recipients get the refusal, and RSET precedes the next
        transaction.
        """
        message = b"Subject: big\r\n\r\n" + b"y" * (3 * CHUNK_SIZE)
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", message))
        serverSays(client, b"250 Ok", b"250 Ok", b"452 4.3.1 out of space")
        written = transport.take()
        client.resumeProducing()
        assert transport.value() == b""
        assert written.count(b"BDAT") == 1
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.result.recipients["a@x.example"].phase == "BDAT"
        transport.clear()
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.value().startswith(b"RSET\r\n")

    def test_withoutPipeliningEachChunkWaits(self) -> None:
        """
        Without PIPELINING each chunk waits for the previous chunk's reply.
        """
        message = b"Subject: big\r\n\r\n" + b"z" * (2 * CHUNK_SIZE)
        client, transport = readyClient(b"250-mx.example", b"250 CHUNKING")
        outcome = Outcome(client.send(SENDER, "a@x.example", message))
        serverSays(client, b"250 Ok")
        serverSays(client, b"250 Ok")
        transport.clear()
        client.resumeProducing()
        first, _ = chunks(transport.take())
        assert len(first) == 0
        serverSays(client, b"250 Ok")  # the first chunk
        client.resumeProducing()
        serverSays(client, b"250 Ok")
        client.resumeProducing()
        serverSays(client, b"250 Ok")
        client.resumeProducing()
        while not outcome.called and client._expected:
            serverSays(client, b"250 Ok")
        assert outcome.value().accepted == ("a@x.example",)


class TestBinary:
    def test_binaryNeedsBINARYMIME(self) -> None:
        """
        A message with NUL octets goes as BDAT with BODY=BINARYMIME when the
        server offers it, untouched (no line-end conversion).
        """
        client, transport = readyClient(
            b"250-mx.example", b"250-PIPELINING", b"250-CHUNKING", b"250 BINARYMIME"
        )
        message = b"Subject: bin\r\n\r\n\x00\x01\n\r\xff"
        client.send(SENDER, "a@x.example", message)
        found, head = chunks(transport.value())
        assert b"BODY=BINARYMIME" in head
        assert found == [(len(message), True, message)]

    def test_binaryWithoutBINARYMIMEFails(self) -> None:
        """
        Raw bytes with NUL octets cannot go to a server without BINARYMIME:
        the send fails before anything is written.
        """
        client, transport = readyClient()
        outcome = Outcome(client.send(SENDER, "a@x.example", b"x\x00y\r\n"))
        outcome.error(errors.UnsupportedFeatureError)
        assert transport.value() == b""
