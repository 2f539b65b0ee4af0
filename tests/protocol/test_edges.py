"""
Edge cases of L{mailclient.protocol.ESMTPClient}: the rarely taken paths
of AUTH with a token provider, refused BDAT chunks, LIMITS splits that stop
half-way, 8-bit data found while streaming, NOOP/VRFY on a closing session,
a 421 among LMTP's per-recipient replies, and what happens when a caller's
callback acts on the session while the client is still handling a reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mailclient import PlainMechanism, errors
from mailclient._source import CHUNK_SIZE
from mailclient._wire.sasl import SASLMechanismError, XOAuth2Mechanism
from mailclient.protocol import ESMTPClient, LMTPClient, Phase
from tests.helpers import (
    Outcome,
    RecordingTransport,
    connectClient,
    serverSays,
    serverSaysAtOnce,
    twistedServerSession,
)

SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"
QUEUED = b"250 2.0.0 Ok: queued as Q1"
EHLO_PIPELINING = (b"250-mx.example", b"250 PIPELINING")
EHLO_CHUNKING = (b"250-mx.example", b"250-PIPELINING", b"250-8BITMIME", b"250 CHUNKING")


def lines(*commands: bytes) -> bytes:
    """
    Commands as written, each ended with CRLF.
    """
    return b"".join(c + b"\r\n" for c in commands)


def readyClient(*ehlo: bytes, **options: Any) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO (with PIPELINING unless C{ehlo} says otherwise), its
    transport cleared.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    client = ESMTPClient(clock=Clock(), **options)
    transport = connectClient(client)
    serverSays(client, b"220 mx.example ESMTP", *(ehlo or EHLO_PIPELINING))
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


def bigMessage(size: int, fill: bytes = b"x") -> bytes:
    """
    A 7-bit message of C{size} octets at least, in lines of 72 octets.
    """
    line = fill * 70 + b"\r\n"
    return b"Subject: big\r\n\r\n" + line * (size // len(line) + 1)


class Stream:
    """
    A binary stream that cannot seek (a pipe): the client knows neither its
    size nor whether it holds 8-bit octets until it reads them.
    """

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        """
        The next C{size} octets (all the rest for C{-1}).
        """
        end = len(self._data) if size < 0 else self._position + size
        chunk = self._data[self._position : end]
        self._position += len(chunk)
        return chunk


# -- session state -------------------------------------------------------------------


class TestPipeliningActive:
    def test_beforeTheSessionIsReady(self) -> None:
        """
        Before the session is ready, C{pipeliningActive} reads the
        capabilities learnt so far: false until EHLO offers PIPELINING, true
        once it has, and false when C{pipelining=False}, even while AUTH is
        still under way.
        """
        client = ESMTPClient(
            clock=Clock(), heloName="c.example", tls="none", allowPlaintextAuth=True
        )
        client.registerAuthenticator(PlainMechanism("u", "p"))
        connectClient(client)
        serverSays(client, b"220 mx")
        assert not client.pipeliningActive
        serverSays(client, b"250-mx", b"250-PIPELINING", b"250 AUTH PLAIN")
        assert client.phase is Phase.AUTH
        assert client.pipeliningActive
        client.pipelining = False
        assert not client.pipeliningActive


# -- AUTH ----------------------------------------------------------------------------


class RefusingMechanism:
    """
    A mechanism whose C{initialResponse} fails (it cannot make its first
    message, as a token mechanism without a token).
    """

    name = "PLAIN"

    def initialResponse(self) -> bytes:
        """
        Refuse.
        """
        raise SASLMechanismError("no credentials to send", self.name)

    def respond(self, challenge: bytes) -> bytes:
        """
        Never reached.
        """
        raise AssertionError("no challenge expected")


class TokenProvider:
    """
    A token provider answering later, with a Deferred the test fires.
    """

    def __init__(self) -> None:
        self.pending: list[Deferred[object]] = []

    def getToken(self, refresh: bool) -> Deferred[object]:
        """
        A Deferred the test fires.
        """
        d: Deferred[object] = Deferred()
        self.pending.append(d)
        return d


def tokenClient(
    provider: object, clock: Clock | None = None
) -> tuple[ESMTPClient, RecordingTransport, Outcome[Any]]:
    """
    An implicit-TLS client with an XOAUTH2 mechanism backed by C{provider},
    past EHLO (waiting for its token), its transport cleared.
    """
    client = ESMTPClient(clock=clock or Clock(), heloName="c.example", tls="implicit")
    client.registerAuthenticator(
        XOAuth2Mechanism("alice@example.com", tokenProvider=provider)  # type: ignore[arg-type]
    )
    transport = connectClient(client, RecordingTransport(secure=True))
    transport.completeHandshake()
    ready = Outcome(client.whenReady())
    serverSays(client, b"220 mx", b"250-mx", b"250 AUTH XOAUTH2")
    assert client.phase is Phase.AUTH
    transport.clear()
    return client, transport, ready


class TestAuthEdges:
    def test_onlyMechanismRefusedUnderTLS(self) -> None:
        """
        Under TLS a 504 to the only mechanism we have is not retried with
        another one (there is none): the session fails with
        L{errors.AuthenticationFailedError} and sends QUIT.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
        client.registerAuthenticator(PlainMechanism("u", "p"))
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        ready = Outcome(client.whenReady())
        serverSays(client, b"220 mx", b"250-mx", b"250 AUTH PLAIN LOGIN")
        assert transport.take().endswith(b"\r\nAUTH PLAIN AHUAcA==\r\n")
        serverSays(client, b"504 5.5.4 mechanism not available")
        error = ready.error(errors.AuthenticationFailedError)
        assert error.code == 504
        assert transport.value() == b"QUIT\r\n"
        assert client.phase is Phase.CLOSED

    def test_initialResponseFails(self) -> None:
        """
        A mechanism that cannot make its initial response fails the session
        with its error, before any AUTH command is written.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
        client.registerAuthenticator(RefusingMechanism())
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        ready = Outcome(client.whenReady())
        queued = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        serverSays(client, b"220 mx", b"250-mx", b"250 AUTH PLAIN")
        error = ready.error(SASLMechanismError)
        assert "no credentials to send" in str(error)
        queued.error(SASLMechanismError)
        assert b"AUTH" not in transport.value()
        assert transport.value().endswith(b"QUIT\r\n")

    def test_tokenNotAString(self) -> None:
        """
        A token provider that returns something other than a string (bytes,
        here) fails the session with L{errors.AuthenticationRequiredError}
        naming the type; nothing of it is sent.
        """
        provider = TokenProvider()
        client, transport, ready = tokenClient(provider)
        provider.pending[0].callback(b"bytes-token")
        error = ready.error(errors.AuthenticationRequiredError)
        assert "bytes" in str(error)
        assert transport.value() == b"QUIT\r\n"
        assert client.phase is Phase.CLOSED

    def test_tokenRefusedBySetToken(self) -> None:
        """
        A token holding CR LF (a command injection attempt) is refused by the
        mechanism: the session fails with L{errors.CommandArgumentError},
        no AUTH and none of the token reach the wire, and the error does not
        repeat the token.
        """
        provider = TokenProvider()
        client, transport, ready = tokenClient(provider)
        provider.pending[0].callback("tok\r\nMAIL FROM:<evil@x.example>")
        error = ready.error(errors.CommandArgumentError)
        assert "evil" not in str(error)
        assert transport.value() == b"QUIT\r\n"
        assert client.phase is Phase.CLOSED

    def test_tokenAfterTimeout(self) -> None:
        """
        A token that arrives after the AUTH timeout ended the session is
        ignored: nothing more is written and the session's error stays the
        timeout.
        """
        clock = Clock()
        provider = TokenProvider()
        client, transport, ready = tokenClient(provider, clock)
        clock.advance(301)
        assert ready.error(errors.SMTPTimeoutError).phase == "AUTH"
        transport.clear()
        provider.pending[0].callback("late-token")
        assert transport.value() == b""
        assert client.phase is Phase.CLOSED
        Outcome(client.whenReady()).error(errors.SMTPTimeoutError)

    def test_providerFailsAfterTimeout(self) -> None:
        """
        A provider failing after the AUTH timeout ended the session changes
        nothing: the session's error stays the timeout.
        """
        clock = Clock()
        provider = TokenProvider()
        client, transport, ready = tokenClient(provider, clock)
        clock.advance(301)
        ready.error(errors.SMTPTimeoutError)
        transport.clear()
        provider.pending[0].errback(RuntimeError("token endpoint down"))
        assert transport.value() == b""
        Outcome(client.whenReady()).error(errors.SMTPTimeoutError)


# -- RSET ----------------------------------------------------------------------------


def test_pipelinedRsetAccepted() -> None:
    """
    With pipelining, the 250 to RSET sends nothing more (MAIL, RCPT and DATA
    already left with it), and the message is then delivered.
    """
    client, transport = readyClient()
    first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
    serverSays(client, b"250 Ok", b"550 5.1.1 unknown", b"554 5.5.1 no recipients")
    first.error(errors.AllRecipientsRefusedError)
    transport.clear()
    second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
    assert transport.take() == lines(
        b"RSET", b"MAIL FROM:<alice@example.com>", b"RCPT TO:<b@x.example>", b"DATA"
    )
    serverSays(client, b"250 2.0.0 reset")
    assert transport.value() == b""
    assert client.phase is Phase.MAIL
    serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.take() == MESSAGE + b".\r\n"
    serverSays(client, QUEUED)
    assert second.value().accepted == ("b@x.example",)


# -- refused BDAT chunks -------------------------------------------------------------


class TestChunkRefusals:
    def test_finalReplyAfterRefusedChunk(self) -> None:
        """
        When a chunk is refused while the last chunk is already on the wire,
        the reply to the last chunk does not change the outcome: the message
        fails with the chunk's refusal, and RSET precedes the next message.
        """
        client, transport = readyClient(*EHLO_CHUNKING)
        outcome = Outcome(client.send(SENDER, "a@x.example", bigMessage(CHUNK_SIZE)))
        client.resumeProducing()
        written = transport.take()
        assert written.count(b"BDAT") == 2
        assert b" LAST\r\n" in written
        serverSays(client, b"250 Ok", b"250 Ok", b"552 5.3.4 too big")
        assert not outcome.called
        serverSays(client, b"250 2.0.0 Ok: queued as LATE")
        error = outcome.error(errors.MessageRefusedError)
        assert error.code == 552
        assert error.result is not None
        recipient = error.result.recipients["a@x.example"]
        assert (recipient.status, recipient.phase) == ("rejected", "BDAT")
        assert error.result.reply is None
        assert client.phase is Phase.READY
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.value().startswith(b"RSET\r\nMAIL FROM:")

    def test_twoChunksRefused(self) -> None:
        """
        Two pipelined chunks refused in turn: the first refusal decides the
        message, the second changes nothing, and no further chunk is sent.
        """
        client, transport = readyClient(*EHLO_CHUNKING)
        outcome = Outcome(
            client.send(SENDER, "a@x.example", bigMessage(3 * CHUNK_SIZE))
        )
        client.resumeProducing()
        assert transport.take().count(b"BDAT") == 2
        serverSays(client, b"250 Ok", b"250 Ok", b"452 4.3.1 out of space")
        assert transport.producer is None
        client.resumeProducing()
        assert transport.value() == b""
        assert not outcome.called
        serverSays(client, b"503 5.5.1 no transaction")
        error = outcome.error(errors.MessageRefusedError)
        assert error.code == 452
        assert error.result is not None
        assert error.result.recipients["a@x.example"].status == "deferred"
        assert client.phase is Phase.READY

    def test_chunkRefusedWithNoRecipient(self) -> None:
        """
        When every recipient is refused, the writing of chunks stops, and
        the refusal of the chunk already sent does not change the
        recipients' outcome: the message fails with
        L{errors.AllRecipientsRefusedError} carrying the RCPT refusal.
        """
        client, transport = readyClient(*EHLO_CHUNKING)
        outcome = Outcome(
            client.send(SENDER, "a@x.example", bigMessage(2 * CHUNK_SIZE))
        )
        assert transport.take().count(b"BDAT") == 1
        serverSays(client, b"250 Ok", b"550 5.1.1 unknown")
        assert transport.producer is None
        client.resumeProducing()
        assert transport.value() == b""
        serverSays(client, b"554 5.5.1 no valid recipients")
        error = outcome.error(errors.AllRecipientsRefusedError)
        assert error.result is not None
        recipient = error.result.recipients["a@x.example"]
        assert (recipient.code, recipient.phase) == (550, "RCPT")
        client.send(SENDER, "b@x.example", MESSAGE)
        assert transport.value().startswith(b"RSET\r\nMAIL FROM:")


# -- 8-bit data found while streaming ------------------------------------------------


def test_eightBitFoundWhileStreaming() -> None:
    """
    A stream whose 8-bitness is unknown up front, sent to a server without
    8BITMIME, turns out to hold 8-bit octets in its second block: the
    message fails with L{errors.UnsupportedFeatureError}, the connection is
    dropped without the end-of-data dot (the server must not deliver a
    truncated message), and the recipient is "deferred" (nothing delivered).
    """
    first = b"Subject: x\r\n\r\n" + b"a" * (CHUNK_SIZE - 14)
    assert len(first) == CHUNK_SIZE
    data = first + b"caf\xc3\xa9\r\n"
    client, transport = readyClient()
    outcome = Outcome(client.send(SENDER, "a@x.example", Stream(data)))
    assert transport.take().endswith(b"DATA\r\n")
    serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.producer is client
    assert transport.take() == first
    client.resumeProducing()
    error = outcome.error(errors.UnsupportedFeatureError)
    assert "8BITMIME" in str(error)
    assert error.result is not None
    assert error.result.recipients["a@x.example"].status == "deferred"
    assert transport.aborted
    assert transport.value() == b""
    assert client.phase is Phase.CLOSED


# -- NOOP / VRFY ---------------------------------------------------------------------


class TestCommandsOnAClosingSession:
    def test_afterTheSessionFailed(self) -> None:
        """
        C{noop()} and C{verify()} after the session failed fail at once with
        (a copy of) the session's error; nothing is written.
        """
        client, transport = readyClient()
        serverSays(client, b"250 unsolicited")
        transport.clear()
        noop = Outcome(client.noop())
        vrfy = Outcome(client.verify("postmaster"))
        noop.error(errors.SMTPProtocolError)
        vrfy.error(errors.SMTPProtocolError)
        assert transport.value() == b""

    def test_whileQuitting(self) -> None:
        """
        C{noop()} and C{verify()} after C{quit()} fail at once with
        L{errors.ConnectionLostError} ("the session is closing"); only the
        QUIT is written.
        """
        client, transport = readyClient()
        client.quit()
        assert transport.take() == b"QUIT\r\n"
        noop = Outcome(client.noop())
        vrfy = Outcome(client.verify("postmaster"))
        assert "closing" in str(noop.error(errors.ConnectionLostError))
        assert vrfy.error(errors.ConnectionLostError).phase == "VRFY"
        assert transport.value() == b""

    def test_abortFromTheReplyCallback(self) -> None:
        """
        A NOOP callback that aborts the session leaves it closed: the next
        queued operation fails with the abort's error and is never sent.
        """
        client, transport = readyClient()
        reason = errors.ConnectionLostError("NOOP", "caller gave up")
        d = client.noop()
        d.addCallback(lambda _: client.abort(reason))
        after = Outcome(client.verify("postmaster"))
        assert transport.take() == b"NOOP\r\n"
        serverSays(client, b"250 Ok")
        assert client.phase is Phase.CLOSED
        assert transport.aborted
        assert transport.value() == b""
        error = after.error(errors.ConnectionLostError)
        assert error is not reason
        assert error.reason == "caller gave up"


# -- the DSN argument ----------------------------------------------------------------


def test_dsnOfTheWrongType() -> None:
    """
    A C{dsn} that is not a L{mailclient.DSN} fails the send at once with
    L{errors.InvalidArgumentError}; nothing is written and the session can
    still send.
    """
    client, transport = readyClient()
    bad = Outcome(
        client.send(SENDER, "a@x.example", MESSAGE, dsn={"ret": "HDRS"})  # type: ignore[arg-type]
    )
    assert bad.error(errors.InvalidArgumentError).argument == "dsn"
    assert transport.value() == b""
    client.send(SENDER, "a@x.example", MESSAGE)
    assert transport.value().startswith(b"MAIL FROM:")


# -- LIMITS --------------------------------------------------------------------------


class TestLimits:
    def test_mailMaxReachedInTheMiddleOfASplit(self) -> None:
        """
        LIMITS MAILMAX=1 RCPTMAX=1 and two recipients: the first goes in the
        one transaction allowed, the second is "not-attempted" with the
        reason, no second MAIL is sent, and the send succeeds for the first.
        """
        client, transport = readyClient(
            b"250-mx.example", b"250-PIPELINING", b"250 LIMITS MAILMAX=1 RCPTMAX=1"
        )
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        assert transport.take() == lines(
            b"MAIL FROM:<alice@example.com>", b"RCPT TO:<a@x.example>", b"DATA"
        )
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.take() == MESSAGE + b".\r\n"
        serverSays(client, QUEUED)
        result = outcome.value()
        assert result.accepted == ("a@x.example",)
        second = result.recipients["b@x.example"]
        assert (second.status, second.phase) == ("not-attempted", "SESSION")
        assert "MAILMAX" in second.text
        assert transport.value() == b""
        assert client.phase is Phase.READY
        assert not client.canSend

    def test_mailMaxReachedWithoutPipelining(self) -> None:
        """
        The same without pipelining: after the first transaction no MAIL is
        sent for the second batch, and the send succeeds for the first
        recipient only.
        """
        client, transport = readyClient(
            b"250-mx.example", b"250 LIMITS MAILMAX=1 RCPTMAX=1"
        )
        outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.value() == b""
        result = outcome.value()
        assert result.recipients["b@x.example"].status == "not-attempted"
        assert client.phase is Phase.READY

    def test_queuedMessagePastMailMax(self) -> None:
        """
        Two messages queued before the session is ready, with MAILMAX=1: the
        second fails with L{errors.SessionLimitError} (its recipient not
        attempted) and nothing of it is sent.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
        transport = connectClient(client)
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        serverSays(client, b"220 mx")
        transport.clear()
        serverSays(client, b"250-mx.example", b"250 LIMITS MAILMAX=1")
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        serverSays(client, QUEUED)
        assert first.value().accepted == ("a@x.example",)
        error = second.error(errors.SessionLimitError)
        assert error.result is not None
        assert error.result.recipients["b@x.example"].status == "not-attempted"
        assert b"b@x.example" not in transport.value()

    def test_sizeKnownOnlyForTheSecondBatch(self) -> None:
        """
        A stream of unknown size goes in the first transaction without SIZE;
        once read, its size is known, and for the next batch it exceeds the
        server's SIZE: that batch is not sent (no second MAIL), its
        recipient is not attempted, and the send succeeds for the first.
        """
        client, transport = readyClient(
            b"250-mx.example",
            b"250-PIPELINING",
            b"250-SIZE 100",
            b"250 LIMITS RCPTMAX=1",
        )
        data = bigMessage(200)
        outcome = Outcome(
            client.send(SENDER, ["a@x.example", "b@x.example"], Stream(data))
        )
        assert transport.take() == lines(
            b"MAIL FROM:<alice@example.com>", b"RCPT TO:<a@x.example>", b"DATA"
        )
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.take() == data + b".\r\n"
        serverSays(client, QUEUED)
        result = outcome.value()
        assert result.accepted == ("a@x.example",)
        assert result.recipients["b@x.example"].status == "not-attempted"
        assert transport.value() == b""
        assert client.phase is Phase.READY


# -- LMTP ----------------------------------------------------------------------------


def lmtpClient() -> tuple[LMTPClient, RecordingTransport]:
    """
    An LMTP client past LHLO (with PIPELINING), its transport cleared.
    """
    client = LMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client)
    serverSays(client, b"220 lmtp", b"250-lmtp", b"250 PIPELINING")
    transport.clear()
    return client, transport


LMTP_RECIPIENTS = ["a@x.example", "b@x.example", "c@x.example"]


class TestLMTP421:
    def test_421AmongTheFinalReplies(self) -> None:
        """
        A 421 in place of the second recipient's reply after the data ends
        the session: the first recipient stays delivered, the second is
        deferred with the 421, the message's Deferred fails once with
        L{errors.ServerRefusedSessionError}, and QUIT is sent.
        """
        client, transport = lmtpClient()
        outcome = Outcome(client.send(SENDER, LMTP_RECIPIENTS, MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
        transport.clear()
        serverSays(client, b"250 2.1.5 a delivered", b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        recipients = error.result.recipients
        assert recipients["a@x.example"].status == "accepted"
        assert (recipients["b@x.example"].status, recipients["b@x.example"].code) == (
            "deferred",
            421,
        )
        assert recipients["c@x.example"].status != "accepted"
        assert transport.value() == b"QUIT\r\n"

    def test_421LeavesLaterRecipientsUnknown(self) -> None:
        """
        The recipients after the one that got the 421 never got a reply of
        their own after the data was sent: as with a connection lost
        between the replies, their fate is "unknown" (the LMTP server may
        have delivered to them already), not "deferred".
        """
        client, _transport = lmtpClient()
        outcome = Outcome(client.send(SENDER, LMTP_RECIPIENTS, MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
        serverSays(client, b"250 2.1.5 a delivered", b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        last = error.result.recipients["c@x.example"]
        assert (last.status, last.code, last.phase) == ("unknown", None, "SESSION")

    def test_421AsTheFirstFinalReply(self) -> None:
        """
        A 421 as the very first reply after the data is the first
        recipient's reply only: that recipient is deferred with the 421, the
        others, which got no reply of their own, are "unknown".
        """
        client, _transport = lmtpClient()
        outcome = Outcome(client.send(SENDER, LMTP_RECIPIENTS, MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
        serverSays(client, b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        statuses = {a: (r.status, r.code) for a, r in error.result.recipients.items()}
        assert statuses == {
            "a@x.example": ("deferred", 421),
            "b@x.example": ("unknown", None),
            "c@x.example": ("unknown", None),
        }


# -- a message split in two transactions, both on the wire ---------------------------


def test_lostWithTwoTransactionsOfOneMessageInFlight() -> None:
    """
    With RCPTMAX=1 the second transaction follows the first one's data in the
    same write; when the connection is lost then, the message fails exactly
    once, the first recipient "unknown" (the data was sent) and the second
    "not-attempted".
    """
    client, transport = readyClient(
        b"250-mx.example", b"250-PIPELINING", b"250 LIMITS RCPTMAX=1"
    )
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.value().endswith(
        MESSAGE
        + b".\r\n"
        + lines(b"MAIL FROM:<alice@example.com>", b"RCPT TO:<b@x.example>", b"DATA")
    )
    client.connectionLost()
    error = outcome.error(errors.ConnectionLostError)
    assert error.result is not None
    statuses = {a: r.status for a, r in error.result.recipients.items()}
    assert statuses == {"a@x.example": "unknown", "b@x.example": "not-attempted"}


# -- writes outside a reply ----------------------------------------------------------


def test_linesHandedOneByOne() -> None:
    """
    Lines handed to C{lineReceived} one by one (not through
    C{dataReceived}) still make the client write at once: the greeting
    gets EHLO.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client)
    client.lineReceived(b"220 mx.example ESMTP")
    assert transport.writes == [b"EHLO c.example\r\n"]


# -- replies to commands that have not left ------------------------------------------


def test_replyBeforeItsCommandLeft() -> None:
    """
    A reply read in the same segment as the reply that made the client
    queue a command answers nothing the server has read: a protocol error
    naming the command, and the queued command never leaves.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client)
    outcome = Outcome(client.whenReady())
    serverSaysAtOnce(client, b"220 mx.example ESMTP", b"250 mx.example")
    error = outcome.error(errors.SMTPProtocolError)
    assert "reply before EHLO was sent" in str(error)
    assert transport.value() == b""
    assert transport.aborted


def test_repliesToCommandsThatLeftInOneSegment() -> None:
    """
    Replies in one segment to commands that all left (a pipelined MAIL,
    RCPT and DATA, or a whole multi-line EHLO reply) are read as usual.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client)
    serverSays(client, b"220 mx.example ESMTP")
    serverSaysAtOnce(client, *EHLO_PIPELINING)
    assert client.phase is Phase.READY
    outcome = Outcome(client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE))
    assert transport.take().endswith(b"DATA\r\n")
    serverSaysAtOnce(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.take() == MESSAGE + b".\r\n"
    serverSays(client, QUEUED)
    assert outcome.value().accepted == ("a@x.example", "b@x.example")


def test_closingBeforeItsCommandLeft() -> None:
    """
    A one-line C{421} before the command it follows left is the server
    closing the session (RFC 5321 section 3.8):
    L{errors.ServerRefusedSessionError} in the phase of that command.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    connectClient(client)
    outcome = Outcome(client.whenReady())
    serverSaysAtOnce(client, b"220 mx.example ESMTP", b"421 4.3.2 going down")
    error = outcome.error(errors.ServerRefusedSessionError)
    assert error.reply.code == 421
    assert "EHLO" in str(error)


class DisconnectingTransport(RecordingTransport):
    """
    A transport that tells the protocol the connection is lost as soon as
    it is asked to close it (as some in-memory transports do).
    """

    def loseConnection(self) -> None:
        """
        Close, and report the loss at once.
        """
        super().loseConnection()
        assert self.protocol is not None
        self.protocol.connectionLost(Failure(ConnectionDone()))


def test_nothingWrittenAfterTheConnectionIsLost() -> None:
    """
    A server that says goodbye in the same segment as its final reply
    (before it could read our QUIT) on a transport that reports the loss at
    once: the QUIT the final reply made the client queue is not written to
    the closed connection, the message succeeds and C{quit()} fires.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client, DisconnectingTransport())
    serverSays(client, b"220 mx", b"250 mx.example")
    outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
    quit = Outcome(client.quit())
    serverSays(client, b"250 Ok")
    serverSays(client, b"250 Ok")
    serverSays(client, b"354 Go")
    assert transport.take().endswith(b"DATA\r\n" + MESSAGE + b".\r\n")
    serverSaysAtOnce(client, QUEUED, b"221 2.0.0 Bye")
    assert outcome.value().accepted == ("a@x.example",)
    assert quit.called
    assert transport.value() == b""
    assert client.phase is Phase.CLOSED


def test_goodbyeBeforeOurQuitLeft() -> None:
    """
    A C{221} in the same segment as the final reply, before the QUIT that
    reply made the client queue left, ends the session the client was
    ending: the message is accepted and C{quit()} fires.  Any other reply
    there is a protocol error, which the message, decided already, does
    not see; the session is aborted and the QUIT is not written.
    """
    for goodbye, clean in ((b"221 2.0.0 Bye", True), (b"250 what", False)):
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
        transport = connectClient(client, DisconnectingTransport())
        serverSays(client, b"220 mx", *EHLO_PIPELINING)
        outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        quit = Outcome(client.quit())
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        transport.clear()
        serverSaysAtOnce(client, QUEUED, goodbye)
        assert outcome.value().accepted == ("a@x.example",)
        assert quit.called
        assert client.phase is Phase.CLOSED
        assert transport.value() == b""
        assert transport.aborted is not clean


# -- cancelling with pipelining ------------------------------------------------------


class TestCancelPipelined:
    def test_cancelQueuedBehindPipelinedEnvelope(self) -> None:
        """
        With the second message's envelope already behind the first one's
        data, cancelling the third (still queued) message removes it:
        nothing is written, and the first two are delivered.
        """
        client, transport = readyClient()
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        d = client.send(SENDER, "c@x.example", MESSAGE)
        third = Outcome(d)
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        transport.clear()
        d.cancel()
        assert third.error(errors.SendCancelledError).phase == "queued"
        assert transport.value() == b""
        serverSays(client, QUEUED, b"250 Ok", b"250 Ok", b"354 Go")
        serverSays(client, QUEUED)
        assert first.value().accepted == ("a@x.example",)
        assert second.value().accepted == ("b@x.example",)
        assert b"c@x.example" not in transport.value()
        assert client.phase is Phase.READY


# -- callers acting on the session from the callbacks the client fires ---------------


def queuedBeforeReady(
    client: ESMTPClient, onFirstFailure: Callable[[], object]
) -> tuple[Outcome[Any], Outcome[Any], Outcome[Any]]:
    """
    Queue three messages on C{client} before its session is ready: the
    first asks for REQUIRETLS, which this session without TLS cannot
    honour, so it fails without being sent, and its errback calls
    C{onFirstFailure}; the other two are ordinary.
    """
    d1 = client.send(
        SENDER, "x@mx.example", b"Subject: 1\r\n\r\none\r\n", requireTLS=True
    )

    def failed(f: Failure) -> Failure:
        onFirstFailure()
        return f

    d1.addErrback(failed)
    d2 = client.send(SENDER, "y@mx.example", b"Subject: 2\r\n\r\ntwo\r\n")
    d3 = client.send(SENDER, "z@mx.example", b"Subject: 3\r\n\r\nthree\r\n")
    return Outcome(d1), Outcome(d2), Outcome(d3)


def test_quitFromAnErrbackAgainstTwistedServer() -> None:
    """
    A caller calls C{quit()} from the errback of a message that could not be
    sent (REQUIRETLS without TLS), with two more messages queued.  C{quit()}
    waits for the queue: against Twisted's ESMTP server (no PIPELINING) the
    two messages go one transaction after the other and are both delivered,
    then QUIT.
    """
    clock = Clock()
    client = ESMTPClient(clock=clock, heloName="c.example", tls="none")
    quitting: list[Outcome[None]] = []
    first, second, third = queuedBeforeReady(
        client, lambda: quitting.append(Outcome(client.quit()))
    )
    session = twistedServerSession(client, clock=clock)
    session.flush()
    first.error(errors.RequireTLSError)
    assert second.value().accepted == ("y@mx.example",)
    assert third.value().accepted == ("z@mx.example",)
    assert [d.recipient for d in session.deliveries] == [
        b"y@mx.example",
        b"z@mx.example",
    ]
    sent = [
        text.split(":")[0] for direction, text in client.transcript if direction == "C"
    ]
    assert sent == [
        "EHLO c.example",
        "MAIL FROM",
        "RCPT TO",
        "DATA",
        "<22 octets of data> .",
        "MAIL FROM",
        "RCPT TO",
        "DATA",
        "<24 octets of data> .",
        "QUIT",
    ]
    assert quitting[0].called


def test_quitFromAnErrbackWithPipelining() -> None:
    """
    The same with PIPELINING: DATA ends the flight (RFC 2920), so the first
    write after EHLO is the second message's MAIL, RCPT and DATA, and the
    third message's envelope waits for the second message's data.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
    transport = connectClient(client)
    _first, second, third = queuedBeforeReady(client, client.quit)
    serverSays(client, b"220 mx")
    transport.clear()
    serverSays(client, *EHLO_PIPELINING)
    two = b"Subject: 2\r\n\r\ntwo\r\n"
    assert transport.writes == [
        lines(b"MAIL FROM:<alice@example.com>", b"RCPT TO:<y@mx.example>", b"DATA")
    ]
    transport.clear()
    serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
    assert transport.take() == two + b".\r\n" + lines(
        b"MAIL FROM:<alice@example.com>", b"RCPT TO:<z@mx.example>", b"DATA"
    )
    serverSays(client, QUEUED, b"250 Ok", b"250 Ok", b"354 Go")
    serverSays(client, QUEUED)
    assert second.value().accepted == ("y@mx.example",)
    assert third.value().accepted == ("z@mx.example",)


def test_abortFromAnErrbackWritesNothingMore() -> None:
    """
    A caller that aborts the session from the errback of a message that
    could not be sent gets a closed session: nothing more is written (no
    QUIT after the abort), nothing is awaited, and no timer is left behind.
    """
    clock = Clock()
    client = ESMTPClient(
        clock=clock, heloName="c.example", tls="none", quitWhenIdle=True
    )
    transport = connectClient(client)
    d = client.send(SENDER, "a@x.example", MESSAGE, requireTLS=True)
    d.addErrback(lambda f: client.abort(errors.ConnectionLostError("x", "stop")))
    serverSays(client, b"220 mx")
    transport.clear()
    serverSays(client, *EHLO_PIPELINING)
    assert transport.aborted
    assert client.phase is Phase.CLOSED
    assert transport.value() == b""
    assert clock.getDelayedCalls() == []


def test_abortFromASuccessCallback() -> None:
    """
    A caller that aborts the session from the callback of a delivered
    message (say, the last one it cares about) gets a closed session: the
    final reply is handled without an exception escaping into the
    transport, the queued message fails once with the abort's error, and
    nothing more is written.
    """
    client, transport = readyClient(b"250 mx.example")
    reason = errors.ConnectionLostError("caller", "enough")
    d = client.send(SENDER, "a@x.example", MESSAGE)
    d.addCallback(lambda _: client.abort(reason))
    second = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
    serverSays(client, b"250 Ok")
    serverSays(client, b"250 Ok")
    serverSays(client, b"354 Go")
    transport.clear()
    serverSays(client, QUEUED)
    assert client.phase is Phase.CLOSED
    assert transport.aborted
    assert transport.value() == b""
    second.error(errors.ConnectionLostError)


def test_abortFromAnErrbackWhileWritingTheData() -> None:
    """
    With PIPELINING the next message is planned as soon as the previous
    message's data is written; when that planning fails (REQUIRETLS without
    TLS) and the caller aborts from its errback, no exception escapes into
    the transport, and the previous message fails once with the abort's
    error.
    """
    client, transport = readyClient()
    first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
    d = client.send(SENDER, "b@x.example", MESSAGE, requireTLS=True)
    d.addErrback(lambda f: client.abort(errors.ConnectionLostError("x", "stop")))
    serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
    assert client.phase is Phase.CLOSED
    assert transport.aborted
    first.error(errors.ConnectionLostError)


def test_failureBeforeTheDataIsWritten() -> None:
    """
    A malformed line right behind the 354, in the same segment, ends the
    session before the message (written in one go at the end of the
    segment) leaves: nothing of it is written, so the recipient is
    "deferred" (certainly not delivered), not "unknown" ("the connection
    broke after the data was sent").
    """
    client, transport = readyClient()
    outcome = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
    transport.clear()
    serverSaysAtOnce(client, b"250 Ok", b"250 Ok", b"354 Go", b"garbage")
    error = outcome.error(errors.SMTPProtocolError)
    assert transport.aborted
    assert transport.value() == b""
    assert error.result is not None
    assert error.result.recipients["a@x.example"].status == "deferred"
