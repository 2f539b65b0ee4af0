"""
Interop tests: mailclient's LMTP (RFC 2033) against the aiosmtpd peer's
LMTP listener, which answers once per accepted recipient after the data
(C{lmtp-reject@}: 550 5.1.1, C{lmtp-tempfail@}: 452 4.2.2, others 250) and
stores what it delivered, with an envelope record saying C{"protocol":
"LMTP"}.
"""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from mailclient import LMTPClient, SendResult, Timeouts, sendmail
from mailclient.errors import (
    AllRecipientsRefusedError,
    MessageRefusedError,
    SenderRefusedError,
)

from .conftest import Peer, asyncTest, resultOf, uniqueToken

pytestmark = pytest.mark.interop

SENDER = "sender@example.com"
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _emptyMaildir(lmtp_peer: Peer) -> None:
    lmtp_peer.clearMaildir()


def message(token: str) -> bytes:
    """
    A small message carrying C{token}, with a line that needs dot-stuffing.
    """
    return (
        f"From: {SENDER}\r\nSubject: LMTP {token}\r\n\r\ntoken {token}\r\n"
        ".\r\n.leading dot\r\nend\r\n"
    ).encode()


async def lmtpSend(peer: Peer, recipients: list[str], data: bytes) -> SendResult:
    """
    C{sendmail(..., lmtp=True)} to the peer's LMTP port, in clear.
    """
    assert peer.lmtpPort is not None
    return await sendmail(
        peer.host,
        SENDER,
        recipients,
        data,
        port=peer.lmtpPort,
        tls="none",
        lmtp=True,
        timeout=TIMEOUT,
        retries=0,
    )


async def connectLMTP(peer: Peer) -> LMTPClient:
    """
    An L{LMTPClient} connected to the peer's LMTP port, in clear.
    """
    from twisted.internet import reactor

    assert peer.lmtpPort is not None
    clock: Any = reactor
    client = LMTPClient(
        clock=clock,
        tls="none",
        heloName="client.example",
        timeouts=Timeouts().capped(TIMEOUT),
    )
    endpoint = TCP4ClientEndpoint(clock, peer.host, peer.lmtpPort, timeout=TIMEOUT)
    await connectProtocol(endpoint, client)
    return client


def outcomes(result: SendResult) -> list[tuple[str, str, int | None, str | None, str]]:
    """
    Each recipient's address, status, code, enhanced code and phase.
    """
    return [(r.address, r.status, r.code, r.enhancedStatus, r.phase) for r in result]


@asyncTest
async def test_oneReplyPerRecipientAfterData(lmtp_peer: Peer) -> None:
    """
    With C{sendmail(..., lmtp=True)}, each of the server's replies after the
    data decides its own recipient: accepted, rejected (550 5.1.1) and
    deferred (452 4.2.2), all in the END-OF-DATA phase, each reply naming
    the recipient it was matched to.  Only the accepted recipient gets the
    message, byte for byte, over LMTP.
    """
    token = uniqueToken()
    recipients = [
        "lmtp-ok@example.com",
        "lmtp-reject@example.com",
        "lmtp-tempfail@example.com",
    ]
    data = message(token)

    result = await lmtpSend(lmtp_peer, recipients, data)

    assert outcomes(result) == [
        ("lmtp-ok@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("lmtp-reject@example.com", "rejected", 550, "5.1.1", "END-OF-DATA"),
        ("lmtp-tempfail@example.com", "deferred", 452, "4.2.2", "END-OF-DATA"),
    ]
    for outcome in result:
        assert f"<{outcome.address}>" in outcome.text
    assert result.reply is not None and result.reply.code == 250
    assert result.session is not None and result.session.tlsVersion is None
    [delivered] = await lmtp_peer.waitForMessages(1, match=token.encode())
    assert delivered.data == data
    assert delivered.envelope is not None
    assert delivered.envelope["protocol"] == "LMTP"
    assert delivered.envelope["recipient"] == "lmtp-ok@example.com"
    assert delivered.envelope["helo"]


@asyncTest
async def test_refusalsAtRcptAndAfterData(lmtp_peer: Peer) -> None:
    """
    A recipient refused at RCPT (550 5.1.1, phase RCPT) gets no reply after
    the data; the replies after the data go, in order, to the recipients
    accepted at RCPT only, so each lands on the right one.  The two good
    recipients each get a copy.
    """
    token = uniqueToken()
    recipients = [
        "first@example.com",
        "reject@example.com",
        "lmtp-tempfail@example.com",
        "second@example.com",
        "lmtp-reject@example.com",
    ]

    result = await lmtpSend(lmtp_peer, recipients, message(token))

    assert outcomes(result) == [
        ("first@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("reject@example.com", "rejected", 550, "5.1.1", "RCPT"),
        ("lmtp-tempfail@example.com", "deferred", 452, "4.2.2", "END-OF-DATA"),
        ("second@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("lmtp-reject@example.com", "rejected", 550, "5.1.1", "END-OF-DATA"),
    ]
    for outcome in result:
        if outcome.phase == "END-OF-DATA":
            assert f"<{outcome.address}>" in outcome.text
    delivered = await lmtp_peer.waitForMessages(2, match=token.encode())
    assert sorted(
        m.envelope["recipient"] for m in delivered if m.envelope is not None
    ) == ["first@example.com", "second@example.com"]


@asyncTest
async def test_everyRecipientRefusedAfterData(lmtp_peer: Peer) -> None:
    """
    When every reply after the data is a refusal, the send fails with
    L{MessageRefusedError} holding each recipient's own outcome, and
    nothing is delivered.
    """
    token = uniqueToken()
    recipients = ["lmtp-reject@example.com", "lmtp-tempfail@example.com"]

    with pytest.raises(MessageRefusedError) as caught:
        await lmtpSend(lmtp_peer, recipients, message(token))

    assert outcomes(resultOf(caught.value)) == [
        ("lmtp-reject@example.com", "rejected", 550, "5.1.1", "END-OF-DATA"),
        ("lmtp-tempfail@example.com", "deferred", 452, "4.2.2", "END-OF-DATA"),
    ]
    await lmtp_peer.assertNothingDelivered(token.encode(), settle=0.1)


@asyncTest
async def test_severalMessagesOnOneConnection(lmtp_peer: Peer) -> None:
    """
    Three messages queued at once on one L{LMTPClient} (the LMTP listener
    offers PIPELINING, so each envelope follows the previous message's data)
    each get their own per-recipient replies: every good recipient gets its
    copy once, the C{lmtp-tempfail@} one in the middle message is deferred,
    and every result lists PIPELINING.
    """
    tokens = [uniqueToken() for _ in range(3)]
    batches = [
        ["a1@example.com", "a2@example.com"],
        ["b1@example.com", "lmtp-tempfail@example.com", "b2@example.com"],
        ["c1@example.com"],
    ]
    client = await connectLMTP(lmtp_peer)

    sends = [
        client.send(SENDER, to, message(t))
        for to, t in zip(batches, tokens, strict=True)
    ]
    results = await gatherResults(sends, consumeErrors=True)
    await client.quit()

    for result, to in zip(results, batches, strict=True):
        assert "PIPELINING" in result.extensions
        expected = ["deferred" if "tempfail" in a else "accepted" for a in to]
        assert [r.status for r in result] == expected
        assert {r.phase for r in result} == {"END-OF-DATA"}
    for token, to in zip(tokens, batches, strict=True):
        good = sorted(a for a in to if "tempfail" not in a)
        delivered = await lmtp_peer.waitForMessages(len(good), match=token.encode())
        assert (
            sorted(m.envelope["recipient"] for m in delivered if m.envelope is not None)
            == good
        )
        assert all(m.data == message(token) for m in delivered)


@asyncTest
async def test_refusalsBetweenMessagesOnOneConnection(lmtp_peer: Peer) -> None:
    """
    On one pipelining LMTP connection, between two good messages: a message
    refused after the data once per recipient (C{eod-reject@} sender, 554),
    one whose sender is refused at MAIL, one whose only recipient is refused
    at RCPT, and one to 150 recipients (more than the RCPT window) plus an
    C{lmtp-reject@} one last.  Each fails or succeeds alone with its own
    outcomes; the 150 replies after the data each land on their recipient;
    only the good recipients get copies.
    """
    tokens = [uniqueToken() for _ in range(6)]
    many = [f"many{i:03d}@example.com" for i in range(150)]
    client = await connectLMTP(lmtp_peer)

    first = client.send(SENDER, ["first@example.com"], message(tokens[0]))
    eodRefused = client.send(
        "eod-reject@example.com",
        ["eod1@example.com", "eod2@example.com"],
        message(tokens[1]),
    )
    senderRefused = client.send(
        "reject@example.com", ["mail1@example.com"], message(tokens[2])
    )
    noRecipient = client.send(SENDER, ["reject@example.com"], message(tokens[3]))
    crowd = client.send(SENDER, [*many, "lmtp-reject@example.com"], message(tokens[4]))
    last = client.send(SENDER, ["last@example.com"], message(tokens[5]))
    quitting = client.quit()

    assert (await first).accepted == ("first@example.com",)
    with pytest.raises(MessageRefusedError) as caught:
        await eodRefused
    assert outcomes(resultOf(caught.value)) == [
        ("eod1@example.com", "rejected", 554, "5.7.1", "END-OF-DATA"),
        ("eod2@example.com", "rejected", 554, "5.7.1", "END-OF-DATA"),
    ]
    with pytest.raises(SenderRefusedError) as refusedSender:
        await senderRefused
    assert outcomes(resultOf(refusedSender.value)) == [
        ("mail1@example.com", "rejected", 550, "5.7.1", "MAIL"),
    ]
    with pytest.raises(AllRecipientsRefusedError) as refusedAll:
        await noRecipient
    assert outcomes(resultOf(refusedAll.value)) == [
        ("reject@example.com", "rejected", 550, "5.1.1", "RCPT"),
    ]
    crowded = await crowd
    assert crowded.accepted == tuple(many)
    refusedLast = crowded.recipients["lmtp-reject@example.com"]
    assert (refusedLast.status, refusedLast.code) == ("rejected", 550)
    for outcome in crowded:
        assert outcome.phase == "END-OF-DATA"
        assert f"<{outcome.address}>" in outcome.text
    assert (await last).accepted == ("last@example.com",)
    await quitting

    delivered = await lmtp_peer.waitForMessages(len(many), match=tokens[4].encode())
    assert sorted(
        m.envelope["recipient"] for m in delivered if m.envelope is not None
    ) == sorted(many)
    for token in (tokens[0], tokens[5]):
        assert len(await lmtp_peer.waitForMessages(1, match=token.encode())) == 1
    for token in tokens[1:4]:
        await lmtp_peer.assertNothingDelivered(token.encode(), settle=0.05)
