"""
LMTP (RFC 2033): LHLO, and one reply per accepted recipient after the data,
each deciding that recipient.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock

from mailclient import errors
from mailclient.protocol import LMTPClient, Phase
from tests.helpers import (
    Outcome,
    RecordingTransport,
    connectClient,
    serverSays,
    serverSaysAtOnce,
)

SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


def readyClient(*lhlo: bytes, **options: Any) -> tuple[LMTPClient, RecordingTransport]:
    """
    An LMTP client past LHLO, its transport cleared.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    client = LMTPClient(clock=Clock(), **options)
    transport = connectClient(client)
    serverSays(client, b"220 lmtp.example LMTP")
    assert transport.take() == b"LHLO client.example\r\n"
    serverSays(client, *(lhlo or (b"250-lmtp.example", b"250 PIPELINING")))
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


def test_onceReplyPerRecipient() -> None:
    """
    After the data the server answers once per accepted recipient, in RCPT
    order; each reply decides its recipient, and a refused recipient at
    RCPT gets no reply after the data.
    """
    client, transport = readyClient()
    outcome = Outcome(
        client.send(
            SENDER,
            ["a@x.example", "gone@x.example", "b@x.example", "c@x.example"],
            MESSAGE,
        )
    )
    serverSays(
        client,
        b"250 Ok",
        b"250 Ok",
        b"550 5.1.1 unknown",
        b"250 Ok",
        b"250 Ok",
        b"354 Go",
    )
    assert transport.value().endswith(MESSAGE + b".\r\n")
    serverSays(client, b"250 2.1.5 a delivered")
    assert not outcome.called
    serverSays(client, b"452 4.2.2 b over quota")
    assert not outcome.called
    serverSays(client, b"250 2.1.5 c delivered")
    result = outcome.value()
    statuses = {a: (r.status, r.phase) for a, r in result.recipients.items()}
    assert statuses == {
        "a@x.example": ("accepted", "END-OF-DATA"),
        "gone@x.example": ("rejected", "RCPT"),
        "b@x.example": ("deferred", "END-OF-DATA"),
        "c@x.example": ("accepted", "END-OF-DATA"),
    }
    assert result.recipients["b@x.example"].text == "b over quota"
    assert client.phase is Phase.READY


def test_perRecipientRepliesInOneSegment() -> None:
    """
    The per-recipient replies after the data may arrive in one segment
    (each answers the final dot, which left): each decides its recipient.
    """
    client, transport = readyClient()
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    serverSaysAtOnce(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.value().endswith(MESSAGE + b".\r\n")
    serverSaysAtOnce(client, b"250 2.1.5 a delivered", b"452 4.2.2 b over quota")
    result = outcome.value()
    assert result.accepted == ("a@x.example",)
    assert result.recipients["b@x.example"].status == "deferred"
    assert client.phase is Phase.READY


def test_everyRecipientRefusedAfterData() -> None:
    """
    When every per-recipient reply after the data is a refusal, the
    message fails with the per-recipient results.
    """
    client, _ = readyClient()
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
    serverSays(client, b"550 5.2.1 disabled", b"452 4.2.2 full")
    error = outcome.error(errors.MessageRefusedError)
    assert error.result is not None
    assert error.result.recipients["a@x.example"].status == "rejected"
    assert error.result.recipients["b@x.example"].status == "deferred"


def test_lostBetweenReplies() -> None:
    """
    A connection lost after some per-recipient replies leaves the others
    "unknown".
    """
    client, _ = readyClient()
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
    serverSays(client, b"250 a done")
    client.connectionLost()
    error = outcome.error(errors.ConnectionLostError)
    assert error.result is not None
    assert error.result.recipients["a@x.example"].status == "accepted"
    assert error.result.recipients["b@x.example"].status == "unknown"


def test_lhloRefusedNoHeloFallback() -> None:
    """
    An LMTP server that refuses LHLO ends the session: there is no HELO in
    LMTP.
    """
    client = LMTPClient(clock=Clock(), heloName="client.example", tls="none")
    transport = connectClient(client)
    ready = Outcome(client.whenReady())
    serverSays(client, b"220 lmtp.example")
    serverSays(client, b"500 5.5.1 unknown command")
    error = ready.error(errors.ServerRefusedSessionError)
    assert error.command == "LHLO"
    assert b"HELO" not in transport.value().replace(b"LHLO", b"")


def test_354WithNoRecipient() -> None:
    """
    An LMTP server that says 354 although no recipient was accepted would
    never answer after the data: that is a protocol violation.
    """
    client, transport = readyClient()
    outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
    serverSays(client, b"250 Ok", b"550 no", b"354 Go")
    outcome.error(errors.SMTPProtocolError)
    assert transport.aborted


def test_chunkingRepliesPerRecipient() -> None:
    """
    With BDAT, the last chunk gets one reply per accepted recipient too.
    """
    client, transport = readyClient(
        b"250-lmtp.example", b"250-PIPELINING", b"250 CHUNKING"
    )
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    assert f"BDAT {len(MESSAGE)} LAST".encode() in transport.value()
    serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok")
    assert not outcome.called
    serverSays(client, b"250 a", b"550 b")
    result = outcome.value()
    assert result.accepted == ("a@x.example",)
    assert result.recipients["b@x.example"].status == "rejected"
