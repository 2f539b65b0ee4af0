"""
Cancelling one message affects only that message: before its data the
transaction is reset and the connection kept; during its data the
connection is dropped and the result says which recipients are of unknown
fate.
"""

from __future__ import annotations

from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mailclient import errors
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import Outcome, RecordingTransport, connectClient, serverSays

SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"
QUEUED = b"250 2.0.0 Ok: queued as Q1"
PLAIN = (b"250-mx.example", b"250 ENHANCEDSTATUSCODES")
PIPELINING = (b"250-mx.example", b"250 PIPELINING")
CHUNKING = (b"250-mx.example", b"250-PIPELINING", b"250 CHUNKING")


def session(*ehlo: bytes) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO with the capabilities C{ehlo}, its transport cleared.
    """
    client = ESMTPClient(clock=Clock(), heloName="client.example", tls="none")
    transport = connectClient(client)
    serverSays(client, b"220 mx.example ESMTP", *ehlo)
    assert client.phase is Phase.READY
    transport.clear()
    return client, transport


class TestBeforeData:
    def test_cancelWaitingForMail(self) -> None:
        """
        Cancelled while MAIL waits for its reply: the send fails with
        L{errors.SendCancelledError} at once, its recipient "not-attempted";
        the connection stays; no RCPT follows the 250, and the next message
        starts with RSET.
        """
        client, transport = session(*PLAIN)
        d = client.send(SENDER, "a@x.example", MESSAGE)
        cancelled = Outcome(d)
        transport.clear()
        d.cancel()
        error = cancelled.error(errors.SendCancelledError)
        assert error.phase == "MAIL"
        assert error.result is not None
        assert error.result.recipients["a@x.example"].status == "not-attempted"
        serverSays(client, b"250 Ok")
        assert transport.take() == b""
        after = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        assert transport.take() == b"RSET\r\n"
        serverSays(client, b"250 Ok")
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        serverSays(client, b"250 Ok")
        serverSays(client, b"250 Ok", b"354 Go", QUEUED)
        assert after.value().accepted == ("b@x.example",)
        assert not transport.aborted

    def test_cancelWaitingForRcpt(self) -> None:
        """
        Cancelled while RCPT waits: the recipient's later 250 starts no
        DATA; the transaction is reset before the next message, and the
        connection is kept.
        """
        client, transport = session(*PLAIN)
        d = client.send(SENDER, "a@x.example", MESSAGE)
        cancelled = Outcome(d)
        serverSays(client, b"250 Ok")
        transport.clear()
        d.cancel()
        assert cancelled.error(errors.SendCancelledError).phase == "RCPT"
        serverSays(client, b"250 Ok")
        assert transport.take() == b""
        assert client.phase is Phase.READY
        after = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        assert transport.take() == b"RSET\r\n"
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert after.value().accepted == ("b@x.example",)

    def test_recipientsAcceptedThenCancelled(self) -> None:
        """
        A recipient the server accepted at RCPT before the cancel is
        reported "not-attempted" (nothing was delivered), not "accepted".
        """
        client, _transport = session(*PLAIN)
        d = client.send(SENDER, ["a@x.example", "b@x.example"], MESSAGE)
        cancelled = Outcome(d)
        serverSays(client, b"250 Ok", b"250 Ok")
        d.cancel()
        result = cancelled.error(errors.SendCancelledError).result
        assert result is not None
        assert [r.status for r in result] == ["not-attempted", "not-attempted"]
        assert "not delivered" in result.recipients["a@x.example"].text

    def test_cancelPipelinedEnvelopeAwaiting354(self) -> None:
        """
        With PIPELINING the DATA command is already on the wire: the 354
        that then comes can only be answered by dropping the connection,
        and the message before it (already answered) is unaffected.
        """
        client, transport = session(*PIPELINING)
        first = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        d = client.send(SENDER, "b@x.example", MESSAGE)
        second = Outcome(d)
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.take().endswith(b"RCPT TO:<b@x.example>\r\nDATA\r\n")
        d.cancel()
        assert second.error(errors.SendCancelledError).result is not None
        assert not transport.aborted
        serverSays(client, QUEUED)
        assert first.value().accepted == ("a@x.example",)
        serverSays(client, b"250 Ok", b"250 Ok")
        assert not transport.aborted
        serverSays(client, b"354 Go")
        assert transport.aborted
        assert transport.value() == b""

    def test_cancelPipelinedNoRecipientAccepted(self) -> None:
        """
        A cancelled pipelined message whose recipient was refused: the 354
        gets the empty body (nothing can be delivered), and the connection
        is kept for the next message.
        """
        client, transport = session(*PIPELINING)
        d = client.send(SENDER, "b@x.example", MESSAGE)
        cancelled = Outcome(d)
        d.cancel()
        cancelled.error(errors.SendCancelledError)
        serverSays(client, b"250 Ok", b"550 5.1.1 no", b"354 Go")
        assert transport.take().endswith(b"DATA\r\n.\r\n")
        serverSays(client, b"554 5.5.1 no valid recipients")
        after = Outcome(client.send(SENDER, "c@x.example", MESSAGE))
        assert transport.take().startswith(b"RSET\r\nMAIL FROM:")
        serverSays(client, b"250 Ok", b"250 Ok", b"250 Ok", b"354 Go", QUEUED)
        assert after.value().accepted == ("c@x.example",)
        assert not transport.aborted

    def test_cancelPipelinedDataRefused(self) -> None:
        """
        A cancelled pipelined message whose DATA is refused leaves the
        connection usable (RSET before the next message).
        """
        client, transport = session(*PIPELINING)
        d = client.send(SENDER, "b@x.example", MESSAGE)
        Outcome(d)
        d.cancel()
        serverSays(client, b"250 Ok", b"250 Ok", b"451 4.3.0 not now")
        assert not transport.aborted
        transport.clear()
        Outcome(client.send(SENDER, "c@x.example", MESSAGE))
        assert transport.take().startswith(b"RSET\r\n")

    def test_cancelManyRecipientsBeyondWindow(self) -> None:
        """
        Cancelled while more RCPTs wait to be pipelined: none of them is
        sent, no DATA is sent, and RSET precedes the next message.
        """
        client, transport = session(*PIPELINING)
        recipients = [f"r{i}@x.example" for i in range(150)]
        d = client.send(SENDER, recipients, MESSAGE)
        Outcome(d)
        first = transport.take()
        assert first.count(b"RCPT TO:") == 100
        assert b"DATA" not in first
        d.cancel()
        serverSays(client, b"250 Ok", *([b"250 Ok"] * 100))
        assert transport.take() == b""
        assert client.phase is Phase.READY
        Outcome(client.send(SENDER, "c@x.example", MESSAGE))
        assert transport.take().startswith(b"RSET\r\n")


class TestDuringData:
    def test_cancelDuringBodyDropsConnection(self) -> None:
        """
        Cancelled while the body is written: the connection is dropped
        without the end of the data, so the server delivers nothing; the
        recipient is "not-attempted".
        """
        client, transport = session(*PLAIN)
        d = client.send(SENDER, "a@x.example", b"y" * (3 * 65536))
        cancelled = Outcome(d)
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        d.cancel()
        error = cancelled.error(errors.SendCancelledError)
        assert error.phase == "data-block"
        assert error.result is not None
        assert error.result.recipients["a@x.example"].status == "not-attempted"
        assert transport.aborted
        assert not transport.value().endswith(b"\r\n.\r\n")

    def test_cancelAfterFinalDotIsUnknown(self) -> None:
        """
        Cancelled after the end of the data left, before its reply: the
        connection is dropped and the recipient is "unknown" (the server
        may have delivered it), never "not-attempted".
        """
        client, transport = session(*PLAIN)
        d = client.send(SENDER, "a@x.example", MESSAGE)
        cancelled = Outcome(d)
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert transport.value().endswith(b"\r\n.\r\n")
        d.cancel()
        result = cancelled.error(errors.SendCancelledError).result
        assert result is not None
        assert result.recipients["a@x.example"].status == "unknown"
        assert transport.aborted

    def test_othersOnTheConnectionAreRetryable(self) -> None:
        """
        A message queued behind one whose data was cancelled fails with
        L{errors.ConnectionLostError}, its recipients "not-attempted" (safe
        to send again), never "unknown".
        """
        client, _transport = session(*PLAIN)
        d = client.send(SENDER, "a@x.example", MESSAGE)
        Outcome(d)
        queued = Outcome(client.send(SENDER, "b@x.example", MESSAGE))
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        d.cancel()
        error = queued.error(errors.ConnectionLostError)
        assert error.result is not None
        assert error.result.recipients["b@x.example"].status == "not-attempted"

    def test_cancelBdatLastInFlight(self) -> None:
        """
        With CHUNKING a small message leaves whole with its envelope
        (BDAT LAST): cancelling it then is cancelling during its data.
        """
        client, transport = session(*CHUNKING)
        d = client.send(SENDER, "a@x.example", MESSAGE)
        cancelled = Outcome(d)
        assert b"LAST" in transport.take()
        serverSays(client, b"250 Ok", b"250 Ok")
        d.cancel()
        result = cancelled.error(errors.SendCancelledError).result
        assert result is not None
        assert result.recipients["a@x.example"].status == "unknown"
        assert transport.aborted


class TestUnsolicited421:
    def test_idle421ClosesTheSession(self) -> None:
        """
        A 421 with no command outstanding (an idle timeout, RFC 5321
        section 3.8) ends the session with L{errors.ServerRefusedSessionError}
        carrying the reply, not a protocol error; later sends fail with it.
        """
        client, _transport = session(*PLAIN)
        serverSays(client, b"421 4.4.2 mx.example idle timeout")
        later = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
        error = later.error(errors.ServerRefusedSessionError)
        assert error.code == 421
        assert not client.canSend

    def test_otherUnsolicitedReplyIsAViolation(self) -> None:
        """
        Any other reply with no command outstanding (a forged 250, or a
        421 that claims to continue) is a protocol violation.
        """
        for line in (b"250 ok", b"421-more to come"):
            client, _transport = session(*PLAIN)
            serverSays(client, line)
            later = Outcome(client.send(SENDER, "a@x.example", MESSAGE))
            later.error(errors.SMTPProtocolError)


class TestWhenClosed:
    def test_firesOnceClosed(self) -> None:
        """
        C{whenClosed()} fires when the connection is lost, and at once when
        asked after that.
        """
        client, _transport = session(*PLAIN)
        pending = Outcome(client.whenClosed())
        assert not pending.called
        client.connectionLost(Failure(ConnectionDone()))
        assert pending.value() is None
        assert Outcome(client.whenClosed()).value() is None

    def test_firesWhenFailedBeforeConnecting(self) -> None:
        """
        A session that fails before it was ever connected (the connection
        attempt failed) is over too.
        """
        client = ESMTPClient(clock=Clock(), heloName="client.example", tls="none")
        pending = Outcome(client.whenClosed())
        client.abort(errors.SMTPConnectError("refused"))
        assert pending.value() is None
        assert Outcome(client.whenClosed()).value() is None
