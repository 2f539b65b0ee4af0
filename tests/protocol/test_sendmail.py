"""
Tests for L{mailclient.sendmail} and L{mailclient.ESMTPSenderFactory}, with
scripted endpoints and a L{MemoryReactorClock}.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from mailclient import (
    ESMTPSenderFactory,
    PlainMechanism,
    SendResult,
    Timeouts,
    TLSMode,
    _sendmail,
    errors,
    sendmail,
)
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import (
    FakeTLSOptions,
    HangingConnect,
    Outcome,
    RecordingTransport,
    ScriptedEndpoint,
    connectClient,
    serverSays,
)

GREETING = b"220 mx.example ESMTP"
EHLO = (b"250-mx.example", b"250 AUTH PLAIN")
SENDER = "alice@example.com"
RECIPIENT = "bob@example.net"
MESSAGE = b"Subject: hi\r\n\r\nhi\r\n"


class _FixedRandom:
    """
    Jitter of exactly 1: the backoff delays are 1, 2, 4, ... seconds.
    """

    def uniform(self, a: float, b: float) -> float:
        return 1.0


@pytest.fixture
def noJitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Make the retry delays exact.
    """
    monkeypatch.setattr(_sendmail, "random", _FixedRandom())


def clientOf(transport: RecordingTransport) -> ESMTPClient:
    """
    The client connected to C{transport}.
    """
    client = transport.protocol
    assert isinstance(client, ESMTPClient)
    return client


def deliver(transport: RecordingTransport, final: bytes = b"250 queued as Q1") -> None:
    """
    Play a server that accepts one message to one recipient.
    """
    client = clientOf(transport)
    serverSays(client, GREETING, *EHLO, b"250 ok", b"250 ok", b"354 go", final)


def factoryClient(factory: IProtocolFactory) -> ESMTPClient:
    """
    The client a (possibly TLS-wrapping) factory will build.
    """
    if isinstance(factory, TLSMemoryBIOFactory):
        factory = factory.wrappedFactory
    assert isinstance(factory, ESMTPSenderFactory)
    return factory.client


def plannedClient(**kw: Any) -> ESMTPClient:
    """
    Start a sendmail over a hanging endpoint and return the client it made.
    """
    endpoint = ScriptedEndpoint([HangingConnect])
    kw.setdefault("endpoint", endpoint)
    reactor = MemoryReactorClock()
    d = sendmail(
        kw.pop("smtphost", None), SENDER, RECIPIENT, MESSAGE, reactor=reactor, **kw
    )
    outcome = Outcome(d)
    assert not outcome.called, outcome.results
    client = factoryClient(endpoint.factories[0])
    d.cancel()
    return client


# -- ESMTPSenderFactory ----------------------------------------------------------------


class TestFactory:
    def test_sendsOneMessageThenQuits(self) -> None:
        """
        The factory's client sends its one message, then says QUIT; the
        Deferred fires with the result.
        """
        factory = ESMTPSenderFactory(
            SENDER,
            RECIPIENT,
            MESSAGE,
            clock=MemoryReactorClock(),
            heloName="c.example",
            tls="none",
        )
        outcome = Outcome(factory.deferred)
        client = factory.buildProtocol(IPv4Address("TCP", "192.0.2.25", 25))
        assert client is factory.client and client.factory is factory
        assert factory.buildProtocol(None) is None
        transport = connectClient(factory.client)
        deliver(transport)
        assert outcome.value().queueId == "Q1"
        assert transport.value().endswith(b"QUIT\r\n")

    def test_authenticators(self) -> None:
        """
        The factory registers the given mechanisms on its client.
        """
        factory = ESMTPSenderFactory(
            SENDER,
            RECIPIENT,
            MESSAGE,
            clock=MemoryReactorClock(),
            heloName="c.example",
            tls="none",
            allowPlaintextAuth=True,
            authenticators=[PlainMechanism("u", "p")],
        )
        transport = connectClient(factory.client)
        serverSays(factory.client, GREETING, *EHLO)
        assert b"AUTH PLAIN" in transport.value()

    def test_clientConnectionFailed(self) -> None:
        """
        For C{connectTCP} callers, a failed connection fails the Deferred
        with L{errors.SMTPConnectError}; a second report changes nothing.
        """
        factory = ESMTPSenderFactory(
            SENDER, RECIPIENT, MESSAGE, clock=MemoryReactorClock()
        )
        outcome = Outcome(factory.deferred)
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("no")))
        error = outcome.error(errors.SMTPConnectError)
        assert "no" in str(error)
        factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("again")))
        assert len(outcome.results) == 1

    def test_badInputFailsDeferred(self) -> None:
        """
        Bad input fails the factory's Deferred at once.
        """
        factory = ESMTPSenderFactory(
            SENDER, "bad\r\n@x", MESSAGE, clock=MemoryReactorClock()
        )
        Outcome(factory.deferred).error(errors.CommandArgumentError)

    def test_cancelBeforeConnecting(self) -> None:
        """
        Cancelling before the connection is made fails the Deferred with
        L{errors.SendCancelledError}.
        """
        factory = ESMTPSenderFactory(
            SENDER, RECIPIENT, MESSAGE, clock=MemoryReactorClock()
        )
        outcome = Outcome(factory.deferred)
        factory.deferred.cancel()
        assert outcome.error(errors.SendCancelledError).phase == "connecting"

    def test_cancelWhileSending(self) -> None:
        """
        Cancelling while the message is in flight fails the Deferred with
        L{errors.SendCancelledError} and aborts the connection.
        """
        factory = ESMTPSenderFactory(
            SENDER,
            RECIPIENT,
            MESSAGE,
            clock=MemoryReactorClock(),
            heloName="c.example",
            tls="none",
        )
        outcome = Outcome(factory.deferred)
        transport = connectClient(factory.client)
        serverSays(factory.client, GREETING, *EHLO, b"250 ok")
        factory.deferred.cancel()
        assert outcome.error(errors.SendCancelledError).phase == "RCPT"
        assert transport.aborted

    def test_cancelWhileNegotiatingAborts(self) -> None:
        """
        As documented, cancelling the factory's Deferred aborts the
        connection, also while the session is still negotiating: no
        credential is sent for a cancelled message.
        """
        factory = ESMTPSenderFactory(
            SENDER,
            RECIPIENT,
            MESSAGE,
            clock=MemoryReactorClock(),
            heloName="c.example",
            tls="none",
            allowPlaintextAuth=True,
            authenticators=[PlainMechanism("u", "p")],
        )
        Outcome(factory.deferred)
        transport = connectClient(factory.client)
        factory.deferred.cancel()
        if not transport.aborted:
            serverSays(factory.client, GREETING, *EHLO)
        assert b"AUTH" not in transport.value()
        assert transport.aborted


# -- argument validation ---------------------------------------------------------------


class TestArguments:
    @pytest.mark.parametrize(
        ("kwargs", "argument"),
        [
            ({"tls": "always"}, "tls"),
            ({"tls": TLSMode.STARTTLS}, "tls"),
            ({"username": "u"}, "username"),
            ({"password": "p"}, "username"),
            ({"username": b"\xffu", "password": "p"}, "username"),
            ({"username": 7, "password": "p"}, "username"),
            ({"port": 0}, "port"),
            ({"port": 65536}, "port"),
            ({"port": "25"}, "port"),
            ({"port": True}, "port"),
            ({"retries": -1}, "retries"),
            ({"retries": 1.5}, "retries"),
            ({"endpoint": None}, "smtphost"),
            ({"tls": "starttls"}, "tlsOptions"),
            ({"tls": "implicit"}, "tlsOptions"),
        ],
    )
    def test_invalid(self, kwargs: dict[str, Any], argument: str) -> None:
        """
        Invalid arguments fail the Deferred with
        L{errors.InvalidArgumentError} naming the argument; nothing raises
        and nothing connects.
        """
        endpoint = ScriptedEndpoint([])
        kwargs.setdefault("endpoint", endpoint)
        d = sendmail(
            None, SENDER, RECIPIENT, MESSAGE, reactor=MemoryReactorClock(), **kwargs
        )
        error = Outcome(d).error(errors.InvalidArgumentError)
        assert error.argument == argument
        assert endpoint.factories == []

    def test_badAddressDoesNotConnect(self) -> None:
        """
        A bad address fails the Deferred before any connection is tried.
        """
        endpoint = ScriptedEndpoint([])
        d = sendmail(
            None,
            SENDER,
            ["ok@x.example", "bad>@x"],
            MESSAGE,
            endpoint=endpoint,
            reactor=MemoryReactorClock(),
            tls="none",
        )
        Outcome(d).error(errors.CommandArgumentError)
        assert endpoint.factories == []

    @pytest.mark.parametrize(
        ("kwargs", "port"),
        [
            ({}, 25),
            ({"tls": "none"}, 25),
            ({"tls": "implicit"}, 465),
            ({"port": 465}, 465),
            ({"port": 587}, 587),
        ],
    )
    def test_portDefaults(self, kwargs: dict[str, Any], port: int) -> None:
        """
        Without a port, sendmail connects to 465 for implicit TLS and to 25
        otherwise; a given port is used as is.
        """
        reactor = MemoryReactorClock()
        Outcome(
            sendmail(
                "mail.example.com",
                SENDER,
                RECIPIENT,
                MESSAGE,
                reactor=reactor,
                **kwargs,
            )
        )
        reactor.advance(0)
        assert [c[1] for c in reactor.tcpClients] == [port]

    @pytest.mark.parametrize(("timeout", "expected"), [(None, 30), (10, 10), (100, 30)])
    def test_connectTimeout(self, timeout: float | None, expected: float) -> None:
        """
        Connecting waits at most 30 s, or C{timeout} when shorter.
        """
        reactor = MemoryReactorClock()
        Outcome(
            sendmail(
                "mail.example.com",
                SENDER,
                RECIPIENT,
                MESSAGE,
                reactor=reactor,
                timeout=timeout,
            )
        )
        reactor.advance(0)
        assert [c[3] for c in reactor.tcpClients] == [expected]

    def test_internationalHost(self) -> None:
        """
        A non-ASCII host name is accepted (the endpoint IDNA-encodes it).
        """
        reactor = MemoryReactorClock()
        outcome = Outcome(
            sendmail("bücher.example", SENDER, RECIPIENT, MESSAGE, reactor=reactor)
        )
        reactor.advance(0)
        assert not outcome.called
        assert len(reactor.tcpClients) == 1

    @pytest.mark.parametrize(
        ("kwargs", "mode", "requireAuth"),
        [
            ({}, TLSMode.OPPORTUNISTIC, False),
            ({"port": 465}, TLSMode.IMPLICIT, False),
            ({"username": "u", "password": "p"}, TLSMode.STARTTLS, True),
            ({"username": b"u", "password": b"p", "port": 465}, TLSMode.IMPLICIT, True),
            (
                {"username": "u", "password": "p", "tls": "opportunistic"},
                TLSMode.OPPORTUNISTIC,
                True,
            ),
            (
                {"username": "u", "password": "p", "requireAuthentication": False},
                TLSMode.STARTTLS,
                False,
            ),
            ({"authenticators": [PlainMechanism("u", "p")]}, TLSMode.STARTTLS, True),
            ({"tls": "none"}, TLSMode.NONE, False),
        ],
    )
    def test_tlsDefaults(
        self, kwargs: dict[str, Any], mode: TLSMode, requireAuth: bool
    ) -> None:
        """
        The TLS mode defaults to implicit on port 465, STARTTLS (required)
        when credentials are given, else opportunistic; credentials make
        authentication required unless said otherwise.
        """
        client = plannedClient(tlsOptions=FakeTLSOptions(), **kwargs)
        assert client.tlsMode is mode
        assert client.requireAuthentication is requireAuth

    def test_implicitWrapsEndpoint(self) -> None:
        """
        Implicit TLS layers TLS over the endpoint, with the given options.
        """
        endpoint = ScriptedEndpoint([HangingConnect])
        options = FakeTLSOptions()
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            MESSAGE,
            endpoint=endpoint,
            tls="implicit",
            tlsOptions=options,
            reactor=MemoryReactorClock(),
        )
        factory = endpoint.factories[0]
        assert isinstance(factory, TLSMemoryBIOFactory)
        assert factoryClient(factory).tlsMode is TLSMode.IMPLICIT
        assert factoryClient(factory).tlsOptions is options
        Outcome(d)
        d.cancel()

    def test_tlsOptionsFromHost(self) -> None:
        """
        With a host name and no tlsOptions, the options verify that name;
        with C{tls="none"} there are none.
        """
        assert plannedClient(smtphost="mail.example.com").tlsOptions is not None
        assert plannedClient(smtphost="mail.example.com", tls="none").tlsOptions is None

    def test_clientOptions(self) -> None:
        """
        The HELO name, fallback, plaintext-auth and transport-security
        settings and the capped timeouts reach the client.
        """
        client = plannedClient(
            tls="none",
            heloName="me.example",
            heloFallback=False,
            allowPlaintextAuth=True,
            requireTransportSecurity=True,
            timeout=42,
        )
        assert client.heloName == "me.example"
        assert client.heloFallback is False
        assert client.allowPlaintextAuth is True
        assert client.requireTransportSecurity is True
        assert client.timeouts == Timeouts().capped(42)
        assert client.quitWhenIdle


# -- sending, retries ------------------------------------------------------------------


def _send(
    endpoint: ScriptedEndpoint, reactor: MemoryReactorClock, **kw: Any
) -> Outcome[SendResult]:
    kw.setdefault("tls", "none")
    kw.setdefault("heloName", "c.example")
    message = kw.pop("message", MESSAGE)
    to = kw.pop("to", RECIPIENT)
    return Outcome(
        sendmail(None, SENDER, to, message, endpoint=endpoint, reactor=reactor, **kw)
    )


class TestSend:
    def test_success(self) -> None:
        """
        A successful send fires with the result, one attempt.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        outcome = _send(ScriptedEndpoint([transport]), reactor)
        deliver(transport)
        result = outcome.value()
        assert result.attempts == 1 and result.queueId == "Q1"
        assert transport.value().endswith(b"QUIT\r\n")

    def test_defaultReactor(self) -> None:
        """
        Without a reactor, the global one is used (a failing endpoint keeps
        it from doing anything).
        """
        endpoint = ScriptedEndpoint([ConnectionRefusedError()])
        d = sendmail(
            None, SENDER, RECIPIENT, MESSAGE, endpoint=endpoint, tls="none", retries=0
        )
        Outcome(d).error(errors.SMTPConnectError)

    @pytest.mark.usefixtures("noJitter")
    def test_connectFailuresRetried(self) -> None:
        """
        A connection failure is retried C{retries} times, after 1, 2, 4 ...
        seconds; the last error carries the number of attempts.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint([ConnectionRefusedError()] * 4, clock=reactor)
        outcome = _send(endpoint, reactor, retries=3)
        reactor.pump([0.5] * 20)
        assert endpoint.times == [0, 1, 3, 7]
        error = outcome.error(errors.SMTPConnectError)
        assert "refused" in str(error).lower()
        assert error.result is not None and error.result.attempts == 4

    @pytest.mark.usefixtures("noJitter")
    def test_delayCapped(self) -> None:
        """
        The backoff delay never exceeds 30 seconds.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint([ConnectionRefusedError()] * 8, clock=reactor)
        outcome = _send(endpoint, reactor, retries=7)
        reactor.pump([1] * 200)
        assert endpoint.times == [0, 1, 3, 7, 15, 31, 61, 91]
        outcome.error(errors.SMTPConnectError)

    def test_jitter(self) -> None:
        """
        Each delay is the nominal one times a factor between 0.5 and 1.5.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint([ConnectionRefusedError()] * 3, clock=reactor)
        _send(endpoint, reactor, retries=2)
        reactor.pump([0.01] * 500)
        gaps = [b - a for a, b in zip(endpoint.times, endpoint.times[1:], strict=False)]
        assert len(gaps) == 2
        assert 0.5 <= gaps[0] <= 1.51 and 1.0 <= gaps[1] <= 3.01

    @pytest.mark.usefixtures("noJitter")
    def test_succeedsOnRetry(self) -> None:
        """
        A send that connects on its second attempt reports two attempts; a
        generator of recipients is read once and used for both attempts.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint(
            [ConnectionRefusedError(), transport], clock=reactor
        )
        recipients: Iterator[str] = iter([RECIPIENT])
        outcome = _send(endpoint, reactor, to=recipients)
        reactor.advance(1)
        deliver(transport)
        assert outcome.value().attempts == 2
        assert b"RCPT TO:<bob@example.net>" in transport.value()

    @pytest.mark.usefixtures("noJitter")
    @pytest.mark.parametrize(
        ("replies", "kind"),
        [
            ((b"421 4.3.2 busy",), errors.ServerRefusedSessionError),
            ((GREETING, b"421 4.3.2 busy"), errors.ServerRefusedSessionError),
        ],
    )
    def test_transientRefusalRetried(
        self, replies: tuple[bytes, ...], kind: type[Exception]
    ) -> None:
        """
        A transient refusal of the session (421) before any data is retried.
        """
        reactor = MemoryReactorClock()
        first, second = RecordingTransport(), RecordingTransport()
        endpoint = ScriptedEndpoint([first, second], clock=reactor)
        outcome = _send(endpoint, reactor)
        serverSays(clientOf(first), *replies)
        reactor.advance(1)
        assert endpoint.times == [0, 1]
        deliver(second)
        assert outcome.value().attempts == 2

    @pytest.mark.usefixtures("noJitter")
    def test_timeoutRetried(self) -> None:
        """
        A server that never greets is given up on and tried again.
        """
        reactor = MemoryReactorClock()
        first, second = RecordingTransport(), RecordingTransport()
        endpoint = ScriptedEndpoint([first, second], clock=reactor)
        outcome = _send(endpoint, reactor, timeout=5)
        reactor.advance(5)
        assert first.aborted
        clientOf(first).connectionLost(Failure(ConnectionLost()))
        reactor.advance(1)
        deliver(second)
        assert outcome.value().attempts == 2

    @pytest.mark.parametrize(
        "replies",
        [
            (b"554 5.7.1 no",),
            (GREETING, b"550 no EHLO", b"554 no HELO"),
            (GREETING, *EHLO, b"550 sender refused"),
            (GREETING, *EHLO, b"250 ok", b"450 later"),
        ],
    )
    def test_permanentOrMessageFailuresNotRetried(
        self, replies: tuple[bytes, ...]
    ) -> None:
        """
        A permanent refusal of the session (5xx greeting, refused HELO) and
        failures of the message itself are never retried.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport, RecordingTransport()], clock=reactor)
        outcome = _send(endpoint, reactor)
        serverSays(clientOf(transport), *replies)
        reactor.advance(100)
        assert len(endpoint.factories) == 1
        error = outcome.error(errors.MailClientError)
        assert error.result is not None and error.result.attempts == 1

    @pytest.mark.parametrize(
        "replies",
        [
            (GREETING, *EHLO, b"250 ok", b"250 ok", b"354 go"),
            (GREETING, *EHLO, b"250 ok", b"250 ok", b"354 go", b"421 4.3.2 bye"),
        ],
    )
    def test_neverRetriedAfterData(self, replies: tuple[bytes, ...]) -> None:
        """
        Once the message data was sent, a lost connection or a 421 is never
        retried (the message may have been delivered); the recipients are
        reported with what is known.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport, RecordingTransport()], clock=reactor)
        outcome = _send(endpoint, reactor)
        client = clientOf(transport)
        serverSays(client, *replies)
        client.connectionLost(Failure(ConnectionLost("reset")))
        reactor.advance(100)
        assert len(endpoint.factories) == 1
        error = outcome.error(errors.MailClientError)
        assert error.result is not None and error.result.attempts == 1
        assert error.result.recipients[RECIPIENT].status in ("unknown", "deferred")

    def test_lostDuringDataNotRetried(self) -> None:
        """
        A connection lost while the data is being sent is not retried.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport, RecordingTransport()], clock=reactor)
        outcome = _send(endpoint, reactor, message=b"x" * 200000)
        client = clientOf(transport)
        serverSays(client, GREETING, *EHLO, b"250 ok", b"250 ok", b"354 go")
        assert client.phase is Phase.BODY
        client.connectionLost(Failure(ConnectionLost()))
        reactor.advance(100)
        outcome.error(errors.ConnectionLostError)
        assert len(endpoint.factories) == 1

    def test_fileNotRetried(self) -> None:
        """
        A message given as a file cannot be read twice: a failed connection
        is not retried.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint(
            [ConnectionRefusedError(), RecordingTransport()], clock=reactor
        )
        outcome = _send(endpoint, reactor, message=io.BytesIO(MESSAGE), retries=3)
        reactor.advance(100)
        outcome.error(errors.SMTPConnectError)
        assert len(endpoint.factories) == 1

    def test_connectFailureAfterSessionFailed(self) -> None:
        """
        An endpoint that reports a failure after the session already failed
        (a wrapper endpoint, say) yields the session's own error.
        """

        class Failing:
            factories: list[IProtocolFactory] = []

            def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
                assert isinstance(factory, ESMTPSenderFactory)
                factory.client.abort(errors.SMTPProtocolError("garbled"))
                return defer.fail(ConnectionLost())

        outcome = _send(Failing(), MemoryReactorClock())  # type: ignore[arg-type]
        outcome.error(errors.SMTPProtocolError)


class TestCancel:
    def test_cancelWhileConnecting(self) -> None:
        """
        Cancelling while connecting cancels the connection attempt and
        fails the Deferred with C{CancelledError}; nothing is retried.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint([HangingConnect, RecordingTransport()])
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            MESSAGE,
            endpoint=endpoint,
            reactor=reactor,
            tls="none",
        )
        outcome = Outcome(d)
        d.cancel()
        outcome.error(defer.CancelledError)
        assert endpoint.cancelled == 1
        reactor.advance(100)
        assert len(endpoint.factories) == 1

    def test_cancelWhileSending(self) -> None:
        """
        Cancelling while the message is in flight aborts the connection and
        fails the Deferred with L{errors.SendCancelledError}; nothing is
        retried.
        """
        reactor = MemoryReactorClock()
        transport = RecordingTransport()
        endpoint = ScriptedEndpoint([transport, RecordingTransport()])
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            MESSAGE,
            endpoint=endpoint,
            reactor=reactor,
            tls="none",
            heloName="c.example",
        )
        outcome = Outcome(d)
        serverSays(clientOf(transport), GREETING, *EHLO, b"250 ok")
        d.cancel()
        error = outcome.error(errors.SendCancelledError)
        assert error.phase == "RCPT"
        assert transport.aborted
        reactor.advance(100)
        assert len(endpoint.factories) == 1

    def test_cancelDuringBackoff(self) -> None:
        """
        Cancelling while waiting to retry stops the retries.
        """
        reactor = MemoryReactorClock()
        endpoint = ScriptedEndpoint([ConnectionRefusedError(), RecordingTransport()])
        d = sendmail(
            None,
            SENDER,
            RECIPIENT,
            MESSAGE,
            endpoint=endpoint,
            reactor=reactor,
            tls="none",
        )
        outcome = Outcome(d)
        d.cancel()
        outcome.error(defer.CancelledError)
        reactor.advance(100)
        assert len(endpoint.factories) == 1
