"""
Interop tests of the ESMTP extensions against real servers: PIPELINING,
CHUNKING, SIZE, 8BITMIME, SMTPUTF8, DSN, SCRAM-SHA-256, reply
classification, C{verifyConnection}, NOOP and VRFY against Postfix, and
several messages on one connection to aiosmtpd, which offers no PIPELINING.

Sessions that carry several messages use an L{ESMTPClient} connected by
hand, wrapped in L{WriteRecorder} so that what the client wrote, and in how
many writes, can be checked against what the server did with it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Sequence
from typing import Any, cast

import pytest
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Factory
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from mailclient import (
    DSN,
    ESMTPClient,
    Recipient,
    ScramSHA256Mechanism,
    SendResult,
    Timeouts,
    classify,
    sendmail,
    verifyConnection,
)
from mailclient.errors import (
    AllRecipientsRefusedError,
    AuthenticationFailedError,
    MessageRefusedError,
    MessageTooLargeError,
    RequireTLSError,
    SenderRefusedError,
    SMTPReplyError,
)

from .conftest import Peer, asyncTest, headerValue, resultOf, uniqueToken

pytestmark = pytest.mark.interop

SENDER = "sender@example.com"
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _emptyMaildirs(request: pytest.FixtureRequest) -> None:
    """
    Start every test with an empty Maildir on the peer(s) it uses.
    """
    for name in ("postfix", "aiosmtpd_peer"):
        if name in request.fixturenames:
            cast(Peer, request.getfixturevalue(name)).clearMaildir()


# -- helpers -------------------------------------------------------------------


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class WriteRecorder(ProtocolWrapper):
    """
    Wraps a client protocol and records each C{write} it makes, so a test
    can see which commands left together.  For sessions without TLS only:
    the wrapper does not follow a STARTTLS upgrade of the transport.

    @ivar writes: every write, in order.
    """

    def __init__(self, client: ESMTPClient) -> None:
        super().__init__(WrappingFactory(Factory()), client)
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(data)
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))


class OneWayStream:
    """
    A message source that can only be read once, front to back: its size
    is not known before it is sent.
    """

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._data.read(size)


async def openSession(
    peer: Peer, port: int | None = None, **options: Any
) -> tuple[ESMTPClient, list[bytes]]:
    """
    Connect an L{ESMTPClient} (no TLS) to C{peer} and wait until it is ready
    for mail.

    @return: the client and the list its writes are recorded in.
    """
    options.setdefault("heloName", "client.example")
    client = ESMTPClient(
        clock=_reactor(),
        tls="none",
        timeouts=Timeouts().capped(TIMEOUT),
        **options,
    )
    recorder = WriteRecorder(client)
    endpoint = TCP4ClientEndpoint(
        _reactor(), peer.host, port or peer.smtpPort, timeout=TIMEOUT
    )
    await connectProtocol(endpoint, recorder)
    await client.whenReady()
    return client, recorder.writes


async def sendAll(
    client: ESMTPClient, messages: Sequence[tuple[list[str], bytes]]
) -> list[SendResult]:
    """
    Queue every message on C{client} at once, wait for all of them, QUIT.
    """
    sends = [client.send(SENDER, to, data) for to, data in messages]
    results = await gatherResults(sends, consumeErrors=True)
    await client.quit()
    return results


def textMessage(token: str, body: str = "Hello.\r\n", subject: str = "") -> bytes:
    """
    A small ASCII message carrying C{token} in its subject and body.
    """
    return (
        f"From: {SENDER}\r\nSubject: {subject or 'mailclient'} {token}\r\n"
        f"\r\ntoken {token}\r\n{body}"
    ).encode()


def largeMessage(token: str, size: int) -> bytes:
    """
    An ASCII message of at least C{size} octets in CRLF lines of 78
    characters, each numbered, some starting with a dot.
    """
    lines = [textMessage(token, body="")]
    total = len(lines[0])
    number = 0
    while total < size:
        lead = "." if number % 97 == 0 else "L"
        line = f"{lead}{number:07d} {token} ".ljust(78, "x").encode("ascii") + b"\r\n"
        lines.append(line)
        total += len(line)
        number += 1
    return b"".join(lines)


def commandsSent(result: SendResult | None, verb: str) -> list[str]:
    """
    The client's command lines in C{result}'s transcript that start with
    C{verb}.
    """
    assert result is not None
    return [
        line
        for side, line in result.transcript
        if side == "C" and line.startswith(verb)
    ]


def addressedTo(delivered: Iterable[Any]) -> list[str]:
    """
    The Delivered-To of every delivered copy, sorted.
    """
    return sorted(headerValue(m.data, "Delivered-To") or "" for m in delivered)


# -- PIPELINING ----------------------------------------------------------------


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@asyncTest
async def test_pipelinedMessagesOnOneConnection(postfix: Peer, chunking: bool) -> None:
    """
    Five messages queued at once on one connection are each delivered
    exactly once, byte for byte, and each result says PIPELINING was used
    (and CHUNKING only when BDAT was).  On the wire each message's MAIL,
    RCPT and DATA (or the whole small BDAT LAST) left in one write; with
    DATA the next message's envelope rode in the same write as the end of
    the previous message's data.
    """
    tokens = [uniqueToken() for _ in range(5)]
    messages = [
        ([f"pipe{i}@example.com"], textMessage(t)) for i, t in enumerate(tokens)
    ]
    client, writes = await openSession(postfix, chunking=chunking)

    results = await sendAll(client, messages)

    for result, (to, _) in zip(results, messages, strict=True):
        assert result.accepted == tuple(to)
        assert "PIPELINING" in result.extensions
        assert ("CHUNKING" in result.extensions) == chunking
    assert len({r.queueId for r in results}) == len(results)
    for token, (to, data) in zip(tokens, messages, strict=True):
        [delivered] = await postfix.waitForMessages(1, match=token.encode())
        assert delivered.body == data
        assert headerValue(delivered.data, "Delivered-To") == to[0]
    # exactly once: after a while, still one copy of each
    await postfix.waitForMessages(len(messages) + 1, timeout=0.3)
    copies = [m.data for m in postfix.messages()]
    assert [sum(t.encode() in data for data in copies) for t in tokens] == [1] * 5

    envelopes = [w for w in writes if w.startswith(b"MAIL FROM:")]
    assert envelopes, writes
    if chunking:
        for write in envelopes:
            assert b"\r\nRCPT TO:" in write and b"\r\nBDAT " in write, write
            assert b" LAST\r\n" in write, write
    else:
        assert b"\r\nRCPT TO:" in envelopes[0] and envelopes[0].endswith(b"DATA\r\n"), (
            envelopes[0]
        )
        behindData = [w for w in writes if b"\r\n.\r\nMAIL FROM:" in w]
        assert len(behindData) == len(messages) - 1, writes


@asyncTest
async def test_moreRecipientsThanTheWindow(postfix: Peer) -> None:
    """
    A message to 150 recipients (more RCPTs than the client keeps
    outstanding at once, 100) is accepted for every one of them and a copy
    is delivered to each; every RCPT was sent once.
    """
    token = uniqueToken()
    recipients = [f"many{i:03d}.{token}@example.com" for i in range(150)]

    result = await sendmail(
        postfix.host,
        SENDER,
        recipients,
        textMessage(token),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.accepted == tuple(recipients)
    assert "PIPELINING" in result.extensions
    assert len(commandsSent(result, "RCPT TO:")) == len(recipients)
    delivered = await postfix.waitForMessages(len(recipients), match=token.encode())
    assert addressedTo(delivered) == sorted(recipients)


@asyncTest
async def test_mixedRecipientsInOneFlight(postfix: Peer) -> None:
    """
    In one pipelined flight, good recipients around a refused (550 5.1.1)
    and a deferred (450 4.2.1) one: each reply is matched to its recipient
    (codes, enhanced codes, RCPT phase), and only the good ones get a copy.
    """
    token = uniqueToken()
    recipients = [
        "first@example.com",
        "reject@example.com",
        "second@example.com",
        "tempfail@example.com",
        "third@example.com",
    ]

    result = await sendmail(
        postfix.host,
        SENDER,
        recipients,
        textMessage(token),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert "PIPELINING" in result.extensions
    assert [
        (r.address, r.status, r.code, r.enhancedStatus, r.phase) for r in result
    ] == [
        ("first@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("reject@example.com", "rejected", 550, "5.1.1", "RCPT"),
        ("second@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("tempfail@example.com", "deferred", 450, "4.2.1", "RCPT"),
        ("third@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
    ]
    assert "reject@example.com" in result.recipients["reject@example.com"].text
    delivered = await postfix.waitForMessages(3, match=token.encode())
    assert addressedTo(delivered) == [
        "first@example.com",
        "second@example.com",
        "third@example.com",
    ]


@pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
@asyncTest
async def test_refusalsBetweenPipelinedMessages(postfix: Peer, chunking: bool) -> None:
    """
    Between two good messages on one pipelining connection: one whose every
    recipient is refused (L{AllRecipientsRefusedError}), a 1.5 MiB stream
    of unknown size (no SIZE declared) that Postfix refuses with 552 at the
    end of the data or at the BDAT chunk that crosses its limit, with more
    chunks already in flight (L{MessageRefusedError}), and one whose sender
    is deferred at MAIL while its RCPTs and data were in flight
    (L{SenderRefusedError}, Postfix answers 503 to the rest).  Each fails
    alone with its own outcome, the transactions they leave open are reset,
    and only the good messages are delivered, once each.
    """
    tokens = [uniqueToken() for _ in range(5)]
    client, _ = await openSession(postfix, chunking=chunking)
    first = client.send(SENDER, ["before@example.com"], textMessage(tokens[0]))
    noRecipient = client.send(
        SENDER, ["reject@example.com", "tempfail@example.com"], textMessage(tokens[1])
    )
    tooBig = client.send(
        SENDER,
        ["big@example.com"],
        OneWayStream(largeMessage(tokens[2], 3 * postfix.sizeLimit // 2)),
    )
    senderDeferred = client.send(
        "tempfail@example.com",
        ["deferred1@example.com", "deferred2@example.com"],
        textMessage(tokens[3]),
    )
    last = client.send(SENDER, ["after@example.com"], textMessage(tokens[4]))
    quitting = client.quit()

    assert (await first).accepted == ("before@example.com",)
    with pytest.raises(AllRecipientsRefusedError) as refused:
        await noRecipient
    assert [(r.status, r.code, r.phase) for r in resultOf(refused.value)] == [
        ("rejected", 550, "RCPT"),
        ("deferred", 450, "RCPT"),
    ]
    with pytest.raises(MessageRefusedError) as tooLarge:
        await tooBig
    [big] = resultOf(tooLarge.value)
    assert (big.status, big.code, big.enhancedStatus) == ("rejected", 552, "5.3.4")
    assert big.phase == ("BDAT" if chunking else "END-OF-DATA")
    assert not [
        line for line in commandsSent(tooLarge.value.result, "MAIL") if "SIZE" in line
    ]
    with pytest.raises(SenderRefusedError) as senderRefused:
        await senderDeferred
    assert [(r.status, r.code, r.phase) for r in resultOf(senderRefused.value)] == [
        ("deferred", 451, "MAIL"),
        ("deferred", 451, "MAIL"),
    ]
    assert (await last).accepted == ("after@example.com",)
    await quitting

    for token in (tokens[0], tokens[4]):
        assert len(await postfix.waitForMessages(1, match=token.encode())) == 1
    for token in tokens[1:4]:
        await postfix.assertNothingDelivered(token.encode(), settle=0.1)


@asyncTest
async def test_pipelinedOverSTARTTLSWithSCRAM(postfix: Peer) -> None:
    """
    On the submission port, after STARTTLS and AUTH SCRAM-SHA-256, ten
    messages queued at once are pipelined (BDAT) over TLS and each is
    delivered once.
    """
    from twisted.internet.endpoints import HostnameEndpoint

    tokens = [uniqueToken() for _ in range(10)]
    client = ESMTPClient(
        clock=_reactor(),
        tls="starttls",
        tlsOptions=postfix.tlsOptions(),
        requireAuthentication=True,
        timeouts=Timeouts().capped(TIMEOUT),
    )
    client.registerAuthenticator(
        ScramSHA256Mechanism(postfix.username, postfix.password)
    )
    endpoint = HostnameEndpoint(
        _reactor(), postfix.host, postfix.submissionPort, timeout=TIMEOUT
    )
    await connectProtocol(endpoint, client)

    results = await sendAll(
        client,
        [([f"tls{i}@example.com"], textMessage(t)) for i, t in enumerate(tokens)],
    )

    for result in results:
        assert {"PIPELINING", "CHUNKING"} <= result.extensions
        assert result.session is not None
        assert result.session.tlsVersion is not None
        assert result.session.authMechanism == "SCRAM-SHA-256"
    for token in tokens:
        assert len(await postfix.waitForMessages(1, match=token.encode())) == 1


# -- CHUNKING ------------------------------------------------------------------


@pytest.mark.parametrize("size", [200, 600 * 1024], ids=["small", "600KiB"])
@asyncTest
async def test_chunkingDeliversByteIdentical(postfix: Peer, size: int) -> None:
    """
    With CHUNKING offered the message goes as BDAT (one C{BDAT n LAST} when
    small, several chunks when it is 600 KiB) and arrives byte for byte,
    lines that start with a dot included; the result lists CHUNKING.
    """
    token = uniqueToken()
    message = largeMessage(token, size)

    result = await sendmail(
        postfix.host,
        SENDER,
        ["chunks@example.com"],
        message,
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert "CHUNKING" in result.extensions
    chunks = commandsSent(result, "BDAT ")
    assert chunks[-1].startswith("BDAT ") and " LAST " in chunks[-1]
    if size > 65536:
        # The message's transcript names the first and the last chunk; the
        # last says how many there were in all.
        assert len(chunks) == 2, chunks
        count = int(re.search(r"; (\d+) chunks, ", chunks[-1]).group(1))  # type: ignore[union-attr]
        assert count >= size // 65536, chunks
    else:
        assert len(chunks) == 1, chunks
    assert commandsSent(result, "DATA") == []
    assert result.reply is not None and result.reply.code == 250
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
@asyncTest
async def test_dotLinesAndBareLineFeeds(postfix: Peer, chunking: bool) -> None:
    """
    Lines that are a lone dot or start with dots, and lines ended by a bare
    LF, arrive as sent with the bare LFs turned into CRLF, whether the
    message went as BDAT (no dot-stuffing) or DATA (dot-stuffed).
    """
    token = uniqueToken()
    body = (
        b".\r\n..\r\n.leading dot\r\n"
        b"bare LF line\n.\n..two after bare LF\nlast bare\n"
        b"back to CRLF\r\n.\r\n"
    )
    message = textMessage(token).rstrip(b"\r\n") + b"\r\n" + body

    result = await sendmail(
        postfix.host,
        SENDER,
        ["dots@example.com"],
        message,
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
        chunking=chunking,
    )

    assert ("CHUNKING" in result.extensions) == chunking
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


# -- SIZE ----------------------------------------------------------------------


@asyncTest
async def test_tooLargeFailsBeforeSending(postfix: Peer) -> None:
    """
    A 2 MiB message to a server whose SIZE limit is 1 MiB fails with
    L{MessageTooLargeError} (size and limit given) before MAIL is sent; its
    recipient is "not-attempted" and nothing is delivered.
    """
    token = uniqueToken()
    message = largeMessage(token, 2 * 1024 * 1024)

    with pytest.raises(MessageTooLargeError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["big@example.com"],
            message,
            port=postfix.smtpPort,
            tls="none",
            timeout=TIMEOUT,
            retries=0,
        )

    error = caught.value
    assert (error.size, error.limit) == (len(message), postfix.sizeLimit)
    result = resultOf(error)
    assert result.recipients["big@example.com"].status == "not-attempted"
    assert commandsSent(result, "MAIL") == []
    assert not [line for side, line in error.transcript if line.startswith("MAIL")]
    await postfix.assertNothingDelivered(token.encode())


@asyncTest
async def test_sizeDeclared(postfix: Peer) -> None:
    """
    A 1000-octet message declares C{SIZE=1000} on MAIL, the result lists
    SIZE, and the message is delivered.
    """
    token = uniqueToken()
    message = textMessage(token)
    message += b"x" * (1000 - len(message) - 2) + b"\r\n"
    assert len(message) == 1000

    result = await sendmail(
        postfix.host,
        SENDER,
        ["sized@example.com"],
        message,
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert "SIZE" in result.extensions
    [mail] = commandsSent(result, "MAIL")
    assert " SIZE=1000" in mail
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message


# -- 8BITMIME ------------------------------------------------------------------


@pytest.mark.parametrize("chunking", [True, False], ids=["BDAT", "DATA"])
@asyncTest
async def test_eightBitBodyIntact(postfix: Peer, chunking: bool) -> None:
    """
    A raw 8-bit body (UTF-8 and Latin-1 octets, every octet from 0x80 to
    0xFF) goes with BODY=8BITMIME and arrives unchanged; the result lists
    8BITMIME and not SMTPUTF8 (the header and envelope are ASCII).
    """
    token = uniqueToken()
    message = (
        textMessage(token, subject="8bit")
        + "naïve café, Grüße, 世界\r\n".encode()
        + b"latin-1: caf\xe9 na\xefve\r\n"
        + bytes(range(0x80, 0x100))
        + b"\r\n"
    )

    result = await sendmail(
        postfix.host,
        SENDER,
        ["eight@example.com"],
        message,
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
        chunking=chunking,
    )

    assert "8BITMIME" in result.extensions
    assert "SMTPUTF8" not in result.extensions
    [mail] = commandsSent(result, "MAIL")
    assert " BODY=8BITMIME" in mail
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message


# -- SMTPUTF8 and IDNA -----------------------------------------------------------


@asyncTest
async def test_utf8AddressesUseSMTPUTF8(postfix: Peer) -> None:
    """
    A UTF-8 sender and a recipient with a UTF-8 local part go with
    SMTPUTF8; Postfix delivers the message (UTF-8 header intact) to the
    recipient as written, and the result lists SMTPUTF8.
    """
    token = uniqueToken()
    sender = "отправитель@example.com"
    recipient = "пользователь@example.com"
    message = (
        f"From: {sender}\r\nTo: {recipient}\r\nSubject: Grüße {token}\r\n"
        f"\r\nGrüße, 世界, {token}\r\n"
    ).encode()

    result = await sendmail(
        postfix.host,
        sender,
        [recipient],
        message,
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.accepted == (recipient,)
    assert "SMTPUTF8" in result.extensions
    [mail] = commandsSent(result, "MAIL")
    assert mail.startswith(f"MAIL FROM:<{sender}>") and " SMTPUTF8" in mail
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert headerValue(delivered.data, "Delivered-To") == recipient
    assert delivered.body == message


@asyncTest
async def test_asciiMessageDoesNotUseSMTPUTF8(postfix: Peer) -> None:
    """
    An all-ASCII envelope and message do not use SMTPUTF8, although Postfix
    offers it.
    """
    token = uniqueToken()

    result = await sendmail(
        postfix.host,
        SENDER,
        ["ascii@example.com"],
        textMessage(token),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert "SMTPUTF8" not in result.extensions
    assert all("SMTPUTF8" not in line for line in commandsSent(result, "MAIL"))
    assert len(await postfix.waitForMessages(1, match=token.encode())) == 1


@asyncTest
async def test_idnDomainWithSMTPUTF8(postfix: Peer) -> None:
    """
    An ASCII local part at an IDN domain, to a server offering SMTPUTF8,
    goes in U-label form with SMTPUTF8 and is delivered to that address.
    """
    token = uniqueToken()
    recipient = "user@bücher.example"

    result = await sendmail(
        postfix.host,
        SENDER,
        [recipient],
        textMessage(token),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    assert "SMTPUTF8" in result.extensions
    assert commandsSent(result, "RCPT") == [f"RCPT TO:<{recipient}>"]
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert headerValue(delivered.data, "Delivered-To") == recipient


# -- DSN -------------------------------------------------------------------------


@asyncTest
async def test_successDSN(postfix: Peer) -> None:
    """
    With C{DSN(ret="HDRS", envelopeId=..., notify=("SUCCESS",))} and a
    L{Recipient} with an original recipient, the message is delivered and
    Postfix mails a success DSN to the sender that carries the ENVID
    (Original-Envelope-Id), the ORCPT (Original-Recipient), "Action:
    delivered", and only the headers of the message (RET=HDRS).
    """
    token = uniqueToken()
    bodyMarker = uniqueToken()
    envelopeId = f"mc-{token}"
    original = f"orig-{token}@example.net"
    sender = "dsn-sender@example.com"

    result = await sendmail(
        postfix.host,
        sender,
        [Recipient("dsn-ok@example.com", originalRecipient=original)],
        textMessage(token, body=f"secret body {bodyMarker}\r\n"),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
        dsn=DSN(ret="HDRS", envelopeId=envelopeId, notify=("SUCCESS",)),
    )

    assert "DSN" in result.extensions
    [mail] = commandsSent(result, "MAIL")
    assert " RET=HDRS" in mail and f" ENVID={envelopeId}" in mail
    [rcpt] = commandsSent(result, "RCPT")
    assert " NOTIFY=SUCCESS" in rcpt and f" ORCPT=rfc822;{original}" in rcpt
    delivered = await postfix.waitForMessages(1, match=bodyMarker.encode())
    assert [headerValue(m.data, "Delivered-To") for m in delivered] == [
        "dsn-ok@example.com"
    ]
    await postfix.waitForMessages(1, match=f"Envelope-Id: {envelopeId}".encode())
    [report] = postfix.deliveryReports(match=envelopeId.encode())
    assert headerValue(report.data, "Delivered-To") == sender
    assert f"Original-Envelope-Id: {envelopeId}".encode() in report.data
    assert f"Original-Recipient: rfc822;{original}".encode() in report.data
    assert b"Action: delivered" in report.data
    assert b"text/rfc822-headers" in report.data
    assert bodyMarker.encode() not in report.data


@asyncTest
async def test_notifyNeverSuppressesFailureDSN(postfix: Peer) -> None:
    """
    A message to the bounce@ trigger (accepted, then its delivery fails)
    with NOTIFY=NEVER gets no DSN, while the same message with
    NOTIFY=FAILURE, sent after it, gets a failure report.
    """
    token = uniqueToken()
    sender = "dsn-sender@example.com"

    async def bounce(envelopeId: str, notify: str) -> SendResult:
        return await sendmail(
            postfix.host,
            sender,
            ["bounce@example.com"],
            textMessage(token, subject=envelopeId),
            port=postfix.smtpPort,
            tls="none",
            timeout=TIMEOUT,
            retries=0,
            dsn=DSN(envelopeId=envelopeId, notify=(notify,)),
        )

    never = await bounce(f"never-{token}", "NEVER")
    control = await bounce(f"failure-{token}", "FAILURE")

    for result, notify in [(never, "NEVER"), (control, "FAILURE")]:
        assert result.accepted == ("bounce@example.com",)
        assert "DSN" in result.extensions
        [rcpt] = commandsSent(result, "RCPT")
        assert rcpt.endswith(f" NOTIFY={notify}")
    found = await postfix.waitForMessages(
        1, match=f"Envelope-Id: failure-{token}".encode()
    )
    assert [b"Action: failed" in report.data for report in found] == [True]
    await postfix.assertNothingDelivered(f"never-{token}".encode(), settle=0.5)


# -- SCRAM-SHA-256 ---------------------------------------------------------------


@asyncTest
async def test_scramChosenFromPassword(postfix: Peer) -> None:
    """
    Given a username and password on the submission port, the client picks
    SCRAM-SHA-256 among Postfix's mechanisms after STARTTLS, authenticates
    and the message is delivered.
    """
    token = uniqueToken()

    result = await sendmail(
        postfix.host,
        SENDER,
        ["scram@example.com"],
        textMessage(token),
        port=postfix.submissionPort,
        username=postfix.username,
        password=postfix.password,
        tls="starttls",
        tlsOptions=postfix.tlsOptions(),
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.session is not None
    assert result.session.authMechanism == "SCRAM-SHA-256"
    assert result.session.tlsVersion is not None
    assert len(await postfix.waitForMessages(1, match=token.encode())) == 1


@asyncTest
async def test_scramWrongPassword(postfix: Peer) -> None:
    """
    With only C{ScramSHA256Mechanism} and a wrong password, the send fails
    with L{AuthenticationFailedError} (535) and nothing is delivered.
    """
    token = uniqueToken()

    with pytest.raises(AuthenticationFailedError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["scram@example.com"],
            textMessage(token),
            port=postfix.submissionPort,
            authenticators=[ScramSHA256Mechanism(postfix.username, "wrong")],
            tls="starttls",
            tlsOptions=postfix.tlsOptions(),
            timeout=TIMEOUT,
            retries=0,
        )

    assert caught.value.code == 535
    await postfix.assertNothingDelivered(token.encode())


# -- REQUIRETLS -------------------------------------------------------------------


@pytest.mark.parametrize("tls", ["starttls", "none"])
@asyncTest
async def test_requireTLSFailsClosed(postfix: Peer, tls: str) -> None:
    """
    Postfix does not offer REQUIRETLS: with C{requireTLS=True} the send
    fails with L{RequireTLSError} before MAIL, whether the session is TLS
    (submission, after STARTTLS and AUTH) or not (plain port), and nothing
    is delivered.
    """
    token = uniqueToken()
    credentials: dict[str, Any] = (
        {
            "port": postfix.submissionPort,
            "username": postfix.username,
            "password": postfix.password,
            "tlsOptions": postfix.tlsOptions(),
        }
        if tls == "starttls"
        else {"port": postfix.smtpPort}
    )

    with pytest.raises(RequireTLSError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["requiretls@example.com"],
            textMessage(token),
            tls=tls,
            timeout=TIMEOUT,
            retries=0,
            requireTLS=True,
            **credentials,
        )

    error = caught.value
    if tls == "starttls":
        assert "does not advertise REQUIRETLS" in error.reason
        assert error.result is not None and error.result.session is not None
        assert error.result.session.tlsVersion is not None
    else:
        assert "not protected by TLS" in error.reason
    assert not [line for side, line in error.transcript if line.startswith("MAIL")]
    await postfix.assertNothingDelivered(token.encode(), settle=0.1)


# -- classification ----------------------------------------------------------------


@asyncTest
async def test_classification(postfix: Peer) -> None:
    """
    Each recipient's C{classification} reads Postfix's actual reply: the
    accepted one a success, C{reject@} (550 5.1.1) a permanent "address"
    problem not to retry, C{tempfail@} (450 4.2.1) a transient "mailbox"
    one to retry; each equals L{classify} of the recipient's reply.
    """
    token = uniqueToken()
    recipients = ["classy@example.com", "reject@example.com", "tempfail@example.com"]

    result = await sendmail(
        postfix.host,
        SENDER,
        recipients,
        textMessage(token),
        port=postfix.smtpPort,
        tls="none",
        timeout=TIMEOUT,
        retries=0,
    )

    for outcome in result:
        assert outcome.classification == classify(
            outcome.code, outcome.enhancedStatus, outcome.text
        )
    ok, rejected, deferred = (result.recipients[r].classification for r in recipients)
    assert (ok.severity, ok.retry) == ("success", "none")
    assert (rejected.severity, rejected.reason, rejected.retry) == (
        "permanent",
        "address",
        "do-not-retry",
    )
    assert rejected.isPermanent and not rejected.throttled
    assert (deferred.severity, deferred.reason, deferred.retry) == (
        "transient",
        "mailbox",
        "retry",
    )
    assert deferred.isTransient and not deferred.throttled


# -- session operations --------------------------------------------------------------


@asyncTest
async def test_verifyConnectionOnSubmission(postfix: Peer) -> None:
    """
    C{verifyConnection} on the submission port does STARTTLS and AUTH and
    reports the session: TLS version and cipher, the capabilities read
    over TLS (CHUNKING, no STARTTLS), the mechanism used; it sends no mail.
    """
    info = await verifyConnection(
        postfix.host,
        port=postfix.submissionPort,
        username=postfix.username,
        password=postfix.password,
        tls="starttls",
        tlsOptions=postfix.tlsOptions(),
        timeout=TIMEOUT,
    )

    assert info.tlsVersion is not None and info.tlsVersion.startswith("TLSv1.")
    assert info.tlsCipher
    assert info.authMechanism == "SCRAM-SHA-256"
    assert info.extended
    assert info.greeting is not None and info.greeting.code == 220
    assert info.serverName == "localhost"
    capabilities = info.capabilities
    assert capabilities.chunking and capabilities.pipelining and capabilities.dsn
    assert capabilities.size == postfix.sizeLimit
    assert not capabilities.starttls
    assert "SCRAM-SHA-256" in capabilities.authMechanisms


@asyncTest
async def test_noopAndVerify(postfix: Peer) -> None:
    """
    NOOP gets Postfix's 250 2.0.0; VRFY of C{testuser} gets 252 2.0.0 (it
    will not say, but will try to deliver); VRFY of a refused address fails
    with L{SMTPReplyError} carrying the 550 5.1.1 of the recipient check.
    The session then still sends mail.
    """
    token = uniqueToken()
    client, _ = await openSession(postfix)

    noop = await client.noop()
    verified = await client.verify("testuser")
    with pytest.raises(SMTPReplyError) as caught:
        await client.verify("reject@example.com")
    sent = client.send(SENDER, ["after-vrfy@example.com"], textMessage(token))
    result = await sent
    await client.quit()

    assert (noop.code, noop.enhancedStatusText, noop.text) == (250, "2.0.0", "Ok")
    assert (verified.code, verified.enhancedStatusText) == (252, "2.0.0")
    assert verified.text == "testuser"
    error = caught.value
    assert (error.command, error.code, error.enhancedStatus) == ("VRFY", 550, "5.1.1")
    assert result.accepted == ("after-vrfy@example.com",)
    assert len(await postfix.waitForMessages(1, match=token.encode())) == 1


# -- aiosmtpd: no PIPELINING -------------------------------------------------------


@asyncTest
async def test_severalMessagesWithoutPipelining(aiosmtpd_peer: Peer) -> None:
    """
    aiosmtpd offers no PIPELINING (nor CHUNKING): three messages queued on
    one connection still go one after the other, one command per write; the
    two good ones arrive byte for byte, the one whose only recipient is
    refused fails alone, and no result lists PIPELINING or CHUNKING.
    """
    tokens = [uniqueToken() for _ in range(3)]
    messages = [textMessage(t) for t in tokens]
    client, writes = await openSession(aiosmtpd_peer)
    assert not client.capabilities.pipelining

    sends: list[Deferred[SendResult]] = [
        client.send(SENDER, ["one@example.com"], messages[0]),
        client.send(SENDER, ["reject@example.com"], messages[1]),
        client.send(SENDER, ["three@example.com"], messages[2]),
    ]
    quitting = client.quit()
    first = await sends[0]
    with pytest.raises(AllRecipientsRefusedError) as caught:
        await sends[1]
    third = await sends[2]
    await quitting

    refused = resultOf(caught.value)
    for result in (first, third, refused):
        assert not {"PIPELINING", "CHUNKING"} & result.extensions
    assert "SIZE" in first.extensions
    assert refused.recipients["reject@example.com"].code == 550
    for result, token, message, to in [
        (first, tokens[0], messages[0], "one@example.com"),
        (third, tokens[2], messages[2], "three@example.com"),
    ]:
        [delivered] = await aiosmtpd_peer.waitForMessages(1, match=token.encode())
        assert delivered.data == message
        assert delivered.envelope is not None
        assert delivered.envelope["rcpt_to"] == [to]
        assert delivered.envelope["queue_id"] == result.queueId
    await aiosmtpd_peer.assertNothingDelivered(tokens[1].encode(), settle=0.1)
    commandWrites = [w for w in writes if w[:4] in (b"MAIL", b"RCPT", b"DATA", b"RSET")]
    assert len(commandWrites) >= 9, writes
    for write in commandWrites:
        assert write.count(b"\r\n") == 1, write
