"""
Tests for L{mailclient.protocol.ESMTPClient}, driven by hand: a
L{RecordingTransport} carries what the client writes, C{dataReceived} plays
the server, and a L{Clock} makes time.
"""

from __future__ import annotations

import base64
import hmac
import io
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.exceptions import DNSMismatch
from service_identity.hazmat import DNS_ID
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.python.failure import Failure

from mailclient import (
    CramMD5Mechanism,
    LoginMechanism,
    PlainMechanism,
    SendResult,
    XOAuth2Mechanism,
    errors,
)
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.dataenc import encodeData
from mailclient._wire.sasl import SASLMechanismError
from mailclient.protocol import TRANSITIONS, ESMTPClient, Phase, Timeouts
from tests.helpers import (
    FakeTLSOptions,
    Outcome,
    RecordingTransport,
    connectClient,
    serverSays,
)

GREETING = b"220 mx.example ESMTP ready"
# Without PIPELINING: these tests drive the one-command-at-a-time path
# (tests/protocol/test_pipelining.py has the pipelined one).
EHLO_REPLY = (
    b"250-mx.example greets client.example",
    b"250-DSN",
    b"250 ENHANCEDSTATUSCODES",
)
EHLO_8BITMIME = (b"250-mx.example greets client.example", b"250 8BITMIME")
SENDER = "alice@example.com"
RECIPIENT = "bob@example.net"
MESSAGE = b"Subject: test\r\n\r\nHello.\r\n"
QUEUED = b"250 2.0.0 Ok: queued as ABC123"
USER = "alice"
PASSWORD = "correct horse battery staple"
CHUNK = 65536


def newClient(clock: Clock | None = None, **options: Any) -> ESMTPClient:
    """
    A client named C{client.example}, without TLS unless asked.
    """
    options.setdefault("heloName", "client.example")
    options.setdefault("tls", "none")
    return ESMTPClient(clock=clock if clock is not None else Clock(), **options)


def ready(
    client: ESMTPClient,
    *ehlo: bytes,
    transport: RecordingTransport | None = None,
) -> RecordingTransport:
    """
    Connect C{client}, greet it and answer its EHLO (with C{ehlo}, or
    L{EHLO_REPLY}); return the transport, cleared, with the client ready.
    """
    transport = connectClient(client, transport)
    serverSays(client, GREETING)
    serverSays(client, *(ehlo or EHLO_REPLY))
    assert client.phase is Phase.READY, client.phase
    transport.clear()
    return transport


def send(
    client: ESMTPClient,
    to: str | list[str] = RECIPIENT,
    message: object = MESSAGE,
    sender: str = SENDER,
) -> Outcome[SendResult]:
    """
    Queue one message and capture its outcome.
    """
    return Outcome(client.send(sender, to, message))


def phaseOf(client: ESMTPClient) -> Phase:
    """
    The client's phase (read through a call, so type checkers do not
    narrow it across the calls that change it).
    """
    return client.phase


def b64(data: bytes) -> bytes:
    """
    Base64 without line breaks.
    """
    return base64.b64encode(data)


def lines(*commands: bytes) -> bytes:
    """
    Commands as the client writes them, each ended with CRLF.
    """
    return b"".join(c + b"\r\n" for c in commands)


# -- the greeting ---------------------------------------------------------------


class TestGreeting:
    def test_connectionWaitsForGreeting(self) -> None:
        """
        The client says nothing until the server greets it.
        """
        client = newClient()
        transport = connectClient(client)
        assert transport.value() == b""
        assert client.phase is Phase.GREETING

    def test_greeting220SendsEHLO(self) -> None:
        """
        A 220 greeting is answered with exactly one EHLO carrying our name,
        and the greeting is kept for the session information.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, GREETING)
        assert transport.value() == b"EHLO client.example\r\n"
        assert transport.writes == [b"EHLO client.example\r\n"]
        assert client.phase is Phase.EHLO
        assert client.greeting is not None and client.greeting.code == 220
        assert client.sessionInfo().greeting == client.greeting

    def test_multiLineGreeting(self) -> None:
        """
        EHLO is sent only after the last line of a multi-line greeting.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, b"220-mx.example ESMTP")
        assert transport.value() == b""
        serverSays(client, b"220 no UCE")
        assert transport.value() == b"EHLO client.example\r\n"
        assert client.greeting is not None
        assert client.greeting.lines == ("mx.example ESMTP", "no UCE")

    def test_bareLFLineEnding(self) -> None:
        """
        A reply line ended by a bare LF is read like one ended by CRLF.
        """
        client = newClient()
        transport = connectClient(client)
        client.dataReceived(b"220 mx.example\n")
        assert transport.value() == b"EHLO client.example\r\n"

    def test_greeting554RefusesSession(self) -> None:
        """
        A 554 greeting fails every queued message with
        L{errors.ServerRefusedSessionError} (permanent), the client says
        QUIT and closes, and no EHLO is sent.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, b"554 5.7.1 go away")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "greeting"
        assert error.code == 554
        assert error.enhancedStatus == "5.7.1"
        assert error.isPermanent and not error.isTransient
        assert transport.value() == b"QUIT\r\n"
        assert transport.disconnecting and not transport.aborted
        assert error.result is not None
        assert error.result.recipients[RECIPIENT].status == "not-attempted"
        assert client.phase is Phase.CLOSED

    def test_greeting421RefusesSession(self) -> None:
        """
        A 421 greeting is a transient refusal of the session.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, b"421 4.3.2 too busy")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "greeting"
        assert error.isTransient
        assert transport.value() == b"QUIT\r\n"

    def test_greetingWithoutMessageQueued(self) -> None:
        """
        A refused greeting with no message queued still ends the session;
        a later send fails with the session's error, without raising.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, b"554 no")
        assert transport.value() == b"QUIT\r\n"
        outcome = send(client)
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.transcript[0] == ("S", "554 no")

    def test_greetingWithWrongCode(self) -> None:
        """
        A greeting that is neither 220 nor a refusal is a protocol
        violation: the connection is dropped at once, without QUIT.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, b"250 hello")
        error = outcome.error(errors.SMTPProtocolError)
        assert "250" in error.reason and "greeting" in error.reason
        assert transport.value() == b""
        assert transport.aborted


# -- EHLO and HELO ------------------------------------------------------------------


class TestEHLO:
    def test_capabilitiesRead(self) -> None:
        """
        A positive EHLO reply's capabilities are read; with nothing to
        negotiate and nothing queued the client waits, ready, in silence.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(
            client,
            b"250-mx.example greets client.example",
            b"250-SIZE 1000000",
            b"250-8BITMIME",
            b"250 AUTH PLAIN LOGIN",
        )
        assert transport.value() == b""
        assert client.phase is Phase.READY
        assert client.capabilities.serverName == "mx.example"
        assert client.capabilities.keywords == {"SIZE", "8BITMIME", "AUTH"}
        assert client.capabilities.size == 1000000
        info = client.sessionInfo()
        assert info.extended
        assert info.serverName == "mx.example"
        assert info.tlsVersion is None and info.authMechanism is None

    def test_queuedMessageStartsWhenReady(self) -> None:
        """
        A message queued before the negotiation ends is started with MAIL
        as soon as the client is ready.
        """
        client = newClient()
        transport = connectClient(client)
        send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_REPLY)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    @pytest.mark.parametrize("code", [b"500", b"502", b"550"])
    def test_refusedEHLOFallsBackToHELO(self, code: bytes) -> None:
        """
        EHLO refused with 5xx: the client says HELO, and after a 250 the
        session goes on without extensions.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, code + b" command not recognized")
        assert transport.value() == b"HELO client.example\r\n"
        assert client.phase is Phase.HELO
        transport.clear()
        outcome = send(client)
        serverSays(client, b"250 mx.example")
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        assert client.capabilities == Capabilities.empty("mx.example")
        assert not client.sessionInfo().extended
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        result = outcome.value()
        assert result.session is not None and not result.session.extended

    def test_fallbackDisabled(self) -> None:
        """
        With C{heloFallback=False}, a refused EHLO fails the session with
        L{errors.ServerRefusedSessionError} and no HELO is sent.
        """
        client = newClient(heloFallback=False)
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"502 5.5.1 no EHLO here")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "EHLO" and error.code == 502
        assert transport.value() == b"QUIT\r\n"

    @pytest.mark.parametrize(
        "options",
        [
            {"tls": "starttls", "tlsOptions": FakeTLSOptions()},
            {"tls": "opportunistic", "requireTransportSecurity": True},
            {"requireAuthentication": True},
        ],
    )
    def test_noFallbackWhenTLSOrAuthRequired(self, options: dict[str, Any]) -> None:
        """
        HELO cannot give TLS or AUTH, so a refused EHLO fails the session
        when either is required, and nothing but QUIT is sent.
        """
        client = newClient(**options)
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"500 what?")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "EHLO"
        assert transport.value() == b"QUIT\r\n"

    def test_refusedHELO(self) -> None:
        """
        A refused HELO (after a refused EHLO) fails the session.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING, b"500 no EHLO")
        transport.clear()
        serverSays(client, b"554 5.7.1 not you")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "HELO" and error.code == 554
        assert transport.value() == b"QUIT\r\n"

    def test_transientEHLORefusalFallsBack(self) -> None:
        """
        A 4xx reply to EHLO is a refusal like a 5xx one: HELO is tried.
        """
        client = newClient()
        transport = connectClient(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"451 try HELO")
        assert transport.value() == b"HELO client.example\r\n"

    def test_EHLO421ClosesSession(self) -> None:
        """
        421 to EHLO is not a refusal to fall back from: the session ends.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"421 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "EHLO" and error.isTransient
        assert transport.value() == b"QUIT\r\n"

    def test_EHLOWithIntermediateReply(self) -> None:
        """
        A 3xx reply to EHLO is a protocol violation, not a refusal.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"334 what")
        outcome.error(errors.SMTPProtocolError)
        assert transport.aborted
        assert transport.value() == b""


class TestHeloName:
    def test_givenName(self) -> None:
        """
        The name given to the constructor is used in EHLO.
        """
        client = newClient(heloName="relay.example.org")
        transport = connectClient(client)
        serverSays(client, GREETING)
        assert transport.value() == b"EHLO relay.example.org\r\n"

    def test_invalidGivenName(self) -> None:
        """
        A name that could inject a command is refused when the client is
        made.
        """
        with pytest.raises(errors.CommandArgumentError):
            ESMTPClient(clock=Clock(), heloName="x\r\nMAIL FROM:<a@b>")

    def test_invalidTLSMode(self) -> None:
        """
        An unknown TLS mode is refused when the client is made.
        """
        with pytest.raises(errors.InvalidArgumentError) as info:
            ESMTPClient(clock=Clock(), tls="sometimes")
        assert info.value.argument == "tls"

    def test_defaultFullyQualifiedHostName(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        By default EHLO carries the host's name when it is fully qualified.
        """
        monkeypatch.setattr(socket, "gethostname", lambda: "host.example.com")
        client = ESMTPClient(clock=Clock(), tls="none")
        transport = connectClient(client)
        serverSays(client, GREETING)
        assert transport.value() == b"EHLO host.example.com\r\n"

    @pytest.mark.parametrize(
        ("hostname", "address", "expected"),
        [
            ("localhost", IPv4Address("TCP", "198.51.100.7", 1234), b"[198.51.100.7]"),
            (
                "bad name.example",
                IPv4Address("TCP", "198.51.100.7", 1),
                b"[198.51.100.7]",
            ),
            (
                "localhost",
                IPv6Address("TCP", "2001:db8::7", 1234),
                b"[IPv6:2001:db8::7]",
            ),
            ("localhost", UNIXAddress(None), b"[127.0.0.1]"),
        ],
    )
    def test_defaultAddressLiteral(
        self,
        monkeypatch: pytest.MonkeyPatch,
        hostname: str,
        address: Any,
        expected: bytes,
    ) -> None:
        """
        When the host's name is not a usable fully-qualified name, EHLO
        carries the address literal of our end of the connection
        (C{[IPv6:...]} for IPv6, C{[127.0.0.1]} when there is no address).
        """
        monkeypatch.setattr(socket, "gethostname", lambda: hostname)
        client = ESMTPClient(clock=Clock(), tls="none")
        transport = connectClient(client, RecordingTransport(hostAddress=address))
        serverSays(client, GREETING)
        assert transport.value() == b"EHLO " + expected + b"\r\n"


# -- STARTTLS --------------------------------------------------------------------------

EHLO_STARTTLS = (
    b"250-mx.example greets client.example",
    b"250-STARTTLS",
    b"250 ETRN",
)
EHLO_AFTER_TLS = (
    b"250-mx.example greets client.example",
    b"250-AUTH PLAIN LOGIN",
    b"250 8BITMIME",
)


def tlsClient(**options: Any) -> tuple[ESMTPClient, RecordingTransport, FakeTLSOptions]:
    """
    A client that wants TLS, on a transport that can start it, greeted.
    """
    tlsOptions = FakeTLSOptions()
    options.setdefault("tls", "opportunistic")
    client = newClient(tlsOptions=tlsOptions, **options)
    transport = connectClient(client, RecordingTransport(startTLS=True))
    serverSays(client, GREETING)
    transport.clear()
    return client, transport, tlsOptions


class TestSTARTTLS:
    def test_upgrade(self) -> None:
        """
        STARTTLS offered: the client sends STARTTLS; on 220 it calls
        C{startTLS} with its tlsOptions, forgets the capabilities, says EHLO
        again and reads the new ones; the session information tells the TLS
        version and cipher.
        """
        client, transport, tlsOptions = tlsClient()
        serverSays(client, *EHLO_STARTTLS)
        assert transport.value() == b"STARTTLS\r\n"
        assert client.phase is Phase.STARTTLS
        assert transport.tlsStarts == []
        transport.clear()
        serverSays(client, b"220 2.0.0 go ahead")
        assert transport.tlsStarts == [tlsOptions]
        assert transport.value() == b"EHLO client.example\r\n"
        assert client.capabilities == Capabilities.empty()
        assert client.tlsActive
        transport.clear()
        outcome = send(client)
        serverSays(client, *EHLO_AFTER_TLS)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        assert client.capabilities.keywords == {"AUTH", "8BITMIME"}
        assert not client.capabilities.starttls
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        result = outcome.value()
        assert result.session is not None
        assert result.session.tlsVersion == "TLSv1.3"
        assert result.session.tlsCipher == "TLS_AES_256_GCM_SHA384"
        assert "STARTTLS" not in result.session.capabilities.keywords

    def test_handleWithoutVersion(self) -> None:
        """
        A TLS handle that cannot tell its version or cipher leaves them
        unknown in the session information.
        """
        client = newClient(tls="implicit")
        transport = RecordingTransport(secure=True, handle=object())
        connectClient(client, transport)
        transport.completeHandshake()
        serverSays(client, GREETING, *EHLO_REPLY)
        info = client.sessionInfo()
        assert client.tlsActive
        assert info.tlsVersion is None and info.tlsCipher is None

    def test_refusedOpportunistic(self) -> None:
        """
        STARTTLS refused in opportunistic mode: the session goes on in clear
        (and credentials are not sent in clear).
        """
        client, transport, _ = tlsClient()
        client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
        outcome = send(client)
        serverSays(client, b"250-mx.example", b"250-STARTTLS", b"250 AUTH PLAIN")
        transport.clear()
        serverSays(client, b"454 4.7.0 TLS not available")
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        assert transport.tlsStarts == []
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        result = outcome.value()
        assert result.session is not None
        assert result.session.authMechanism is None
        assert result.session.tlsVersion is None

    def test_refusedInSTARTTLSMode(self) -> None:
        """
        STARTTLS refused when TLS is required: L{errors.TLSRequiredError}
        naming the refusal, and nothing else is sent but QUIT.
        """
        client, transport, _ = tlsClient(tls="starttls")
        outcome = send(client)
        serverSays(client, *EHLO_STARTTLS)
        transport.clear()
        serverSays(client, b"454 4.7.0 TLS not available")
        error = outcome.error(errors.TLSRequiredError)
        assert "refused STARTTLS" in str(error) and "454" in str(error)
        assert transport.value() == b"QUIT\r\n"
        assert transport.tlsStarts == []

    def test_notOfferedInSTARTTLSMode(self) -> None:
        """
        STARTTLS not offered when TLS is required: L{errors.TLSRequiredError}
        and nothing else is sent but QUIT.
        """
        client, transport, _ = tlsClient(tls="starttls")
        outcome = send(client)
        serverSays(client, *EHLO_REPLY)
        error = outcome.error(errors.TLSRequiredError)
        assert "does not offer STARTTLS" in str(error)
        assert transport.value() == b"QUIT\r\n"

    def test_requireTransportSecurityUpgrades(self) -> None:
        """
        C{requireTransportSecurity} makes even C{tls="none"} try STARTTLS.
        """
        client, transport, _ = tlsClient(tls="none", requireTransportSecurity=True)
        serverSays(client, *EHLO_STARTTLS)
        assert transport.value() == b"STARTTLS\r\n"

    def test_tlsNoneIgnoresOffer(self) -> None:
        """
        With C{tls="none"} an offered STARTTLS is not used.
        """
        client, transport, _ = tlsClient(tls="none")
        send(client)
        serverSays(client, *EHLO_STARTTLS)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_starttlsNeedsOptions(self) -> None:
        """
        C{tls="starttls"} without tlsOptions is refused when the client is
        made: the upgrade could never happen.
        """
        with pytest.raises(errors.InvalidArgumentError) as info:
            ESMTPClient(clock=Clock(), tls="starttls")
        assert info.value.argument == "tlsOptions"

    def test_requiredWithoutOptions(self) -> None:
        """
        TLS required (C{requireTransportSecurity}) but no tlsOptions: an
        offered STARTTLS cannot be used, so the session fails with
        L{errors.TLSRequiredError} saying so; nothing else is sent.
        """
        client = newClient(tls="opportunistic", requireTransportSecurity=True)
        transport = connectClient(client, RecordingTransport(startTLS=True))
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_STARTTLS)
        error = outcome.error(errors.TLSRequiredError)
        assert "no tlsOptions" in str(error)
        assert transport.value() == b"QUIT\r\n"

    def test_opportunisticWithoutOptionsStaysClear(self) -> None:
        """
        Opportunistic TLS (the default mode) without tlsOptions cannot
        upgrade, so it must not ask to: the message goes in clear instead of
        the session failing after the server already said 220.
        """
        client = ESMTPClient(clock=Clock(), heloName="client.example")
        transport = connectClient(client, RecordingTransport(startTLS=True))
        outcome = send(client)
        serverSays(client, GREETING, *EHLO_STARTTLS)
        assert transport.value() == (
            b"EHLO client.example\r\nMAIL FROM:<alice@example.com>\r\n"
        )
        assert transport.tlsStarts == []
        assert not outcome.called

    def test_implicitTLS(self) -> None:
        """
        Implicit TLS on a TLS transport: no STARTTLS, the session proceeds.
        """
        client = newClient(tls="implicit")
        transport = RecordingTransport(secure=True)
        connectClient(client, transport)
        transport.completeHandshake()
        send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_STARTTLS)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_implicitTLSOnPlainTransport(self) -> None:
        """
        Implicit TLS on a transport that is not TLS (or whose handshake did
        not finish) fails with L{errors.TLSRequiredError}.
        """
        client = newClient(tls="implicit")
        transport = connectClient(client, RecordingTransport(secure=True))
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_REPLY)
        outcome.error(errors.TLSRequiredError)
        assert transport.value() == b"QUIT\r\n"

    def test_STARTTLS421(self) -> None:
        """
        421 to STARTTLS ends the session.
        """
        client, _transport, _ = tlsClient()
        outcome = send(client)
        serverSays(client, *EHLO_STARTTLS)
        serverSays(client, b"421 bye")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "STARTTLS"

    def test_handshakeFailure(self) -> None:
        """
        A connection lost with an OpenSSL error (such as a certificate that
        does not verify) fails with L{errors.TLSHandshakeError} quoting the
        reason.
        """
        client, _transport, _ = tlsClient(tls="starttls")
        outcome = send(client)
        serverSays(client, *EHLO_STARTTLS, b"220 go ahead")
        reason = SSL.Error(
            [
                (
                    "SSL routines",
                    "tls_process_server_certificate",
                    "certificate verify failed",
                )
            ]
        )
        client.connectionLost(Failure(reason))
        error = outcome.error(errors.TLSHandshakeError)
        assert error.reason == "certificate verify failed"

    @pytest.mark.parametrize(
        ("exception", "expected"),
        [
            (SSL.Error(["unknown ca"]), "unknown ca"),
            (SSL.Error("plain text"), "plain text"),
            (
                VerificationError(
                    errors=[DNSMismatch(mismatched_id=DNS_ID("mx.example"))]
                ),
                "mx.example",
            ),
        ],
    )
    def test_handshakeFailureReasons(self, exception: Exception, expected: str) -> None:
        """
        Every shape of TLS failure (OpenSSL error lists, plain OpenSSL
        errors, service-identity host name mismatches) becomes a
        L{errors.TLSHandshakeError} that says why.
        """
        client, _transport, _ = tlsClient()
        outcome = send(client)
        client.connectionLost(Failure(exception))
        error = outcome.error(errors.TLSHandshakeError)
        assert expected in error.reason


# -- AUTH ------------------------------------------------------------------------------


def authClient(
    *mechanisms: Any, ehloAuth: bytes = b"AUTH PLAIN LOGIN CRAM-MD5 XOAUTH2", **kw: Any
) -> tuple[ESMTPClient, RecordingTransport, Outcome[SendResult]]:
    """
    A client allowed to authenticate in clear, with C{mechanisms}
    registered and a message queued, that has just sent its AUTH command.
    """
    kw.setdefault("allowPlaintextAuth", True)
    client = newClient(**kw)
    for mechanism in mechanisms:
        client.registerAuthenticator(mechanism)
    transport = connectClient(client)
    outcome = send(client)
    serverSays(client, GREETING)
    transport.clear()
    serverSays(client, b"250-mx.example", b"250 " + ehloAuth)
    return client, transport, outcome


class TestAUTH:
    def test_plainWithInitialResponse(self) -> None:
        """
        PLAIN goes with its initial response in the AUTH command; after 235
        the message is sent and the mechanism is on the result.
        """
        client, transport, outcome = authClient(PlainMechanism(USER, PASSWORD))
        expected = b"AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}".encode())
        assert transport.value() == expected + b"\r\n"
        assert client.phase is Phase.AUTH
        transport.clear()
        serverSays(client, b"235 2.7.0 Authentication successful")
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        result = outcome.value()
        assert result.session is not None
        assert result.session.authMechanism == "PLAIN"
        assert ("C", "AUTH PLAIN <redacted>") in result.transcript

    def test_login(self) -> None:
        """
        LOGIN: AUTH LOGIN alone, then the username and the password, each
        base64-encoded, in answer to the two 334 challenges.
        """
        client, transport, _outcome = authClient(LoginMechanism(USER, PASSWORD))
        assert transport.take() == b"AUTH LOGIN\r\n"
        serverSays(client, b"334 " + b64(b"Username:"))
        assert transport.take() == b64(USER.encode()) + b"\r\n"
        serverSays(client, b"334 " + b64(b"Password:"))
        assert transport.take() == b64(PASSWORD.encode()) + b"\r\n"
        serverSays(client, b"235 ok")
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        assert client.authMechanism == "LOGIN"

    def test_cramMD5(self) -> None:
        """
        CRAM-MD5: the answer to the challenge is the username and the
        HMAC-MD5 of the challenge keyed with the password.
        """
        client, transport, _outcome = authClient(CramMD5Mechanism(USER, PASSWORD))
        assert transport.take() == b"AUTH CRAM-MD5\r\n"
        challenge = b"<1896.697170952@postoffice.example.net>"
        serverSays(client, b"334 " + b64(challenge))
        digest = hmac.new(PASSWORD.encode(), challenge, "md5").hexdigest()
        assert transport.take() == b64(f"{USER} {digest}".encode()) + b"\r\n"
        serverSays(client, b"235 ok")
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_xoauth2ErrorChallenge(self) -> None:
        """
        XOAUTH2 refused: the server's JSON error challenge is answered with
        an empty line, and its 535 fails the session with
        L{errors.AuthenticationFailedError}; the error details are kept.
        """
        mechanism = XOAuth2Mechanism(USER + "@example.com", "ya29.token")
        client, transport, outcome = authClient(mechanism)
        initial = b"user=alice@example.com\x01auth=Bearer ya29.token\x01\x01"
        assert transport.take() == b"AUTH XOAUTH2 " + b64(initial) + b"\r\n"
        details = {"status": "401", "schemes": "Bearer", "scope": "mail"}
        serverSays(client, b"334 " + b64(json.dumps(details).encode()))
        assert transport.take() == b"\r\n"
        serverSays(client, b"535 5.7.8 Username and Password not accepted")
        error = outcome.error(errors.AuthenticationFailedError)
        assert error.code == 535 and error.enhancedStatus == "5.7.8"
        assert error.command == "AUTH"
        assert "XOAUTH2" in str(error)
        assert mechanism.errorDetails == details
        assert transport.take() == b"QUIT\r\n"
        assert "ya29.token" not in repr(client.transcript)

    def test_strongestMechanismChosen(self) -> None:
        """
        In clear (opted in), with PLAIN and CRAM-MD5 both registered (PLAIN
        first) and both advertised, CRAM-MD5 is used: the password is not
        sent.
        """
        _client, transport, _ = authClient(
            PlainMechanism(USER, PASSWORD),
            CramMD5Mechanism(USER, PASSWORD),
            ehloAuth=b"AUTH PLAIN CRAM-MD5",
        )
        assert transport.value() == b"AUTH CRAM-MD5\r\n"

    def test_rankingUnderTLS(self) -> None:
        """
        Over TLS, with CRAM-MD5 and PLAIN both registered (CRAM-MD5 first)
        and advertised, PLAIN is used: the channel protects the password.
        """
        client, transport, _ = tlsClient(requireAuthentication=True)
        client.registerAuthenticator(CramMD5Mechanism(USER, PASSWORD))
        client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
        serverSays(client, *EHLO_STARTTLS, b"220 go")
        transport.clear()
        serverSays(client, b"250-mx.example", b"250 AUTH CRAM-MD5 PLAIN")
        assert transport.value().startswith(b"AUTH PLAIN ")

    def test_onlyAdvertisedMechanismUsed(self) -> None:
        """
        A registered mechanism the server does not advertise is not used.
        """
        _client, transport, _ = authClient(
            CramMD5Mechanism(USER, PASSWORD),
            LoginMechanism(USER, PASSWORD),
            ehloAuth=b"AUTH LOGIN",
        )
        assert transport.value() == b"AUTH LOGIN\r\n"

    def test_invalidBase64Challenge(self) -> None:
        """
        A challenge that is not valid base64 is a protocol violation: the
        connection is dropped and nothing is answered.
        """
        client, transport, outcome = authClient(LoginMechanism(USER, PASSWORD))
        transport.clear()
        serverSays(client, b"334 not*base64!")
        error = outcome.error(errors.SMTPProtocolError)
        assert "base64" in error.reason
        assert transport.value() == b""
        assert transport.aborted

    def test_unexpectedChallenge(self) -> None:
        """
        A third LOGIN challenge is refused by the mechanism: the session
        fails with its L{SASLMechanismError} and no credential is resent.
        """
        client, transport, outcome = authClient(LoginMechanism(USER, PASSWORD))
        serverSays(client, b"334 " + b64(b"Username:"), b"334 " + b64(b"Password:"))
        transport.clear()
        serverSays(client, b"334 " + b64(b"Password again:"))
        error = outcome.error(SASLMechanismError)
        assert error.mechanism == "LOGIN"
        assert transport.value() == b"QUIT\r\n"

    def test_authFailed(self) -> None:
        """
        535 to AUTH fails the session with
        L{errors.AuthenticationFailedError}; nothing but QUIT follows.
        """
        client, transport, outcome = authClient(PlainMechanism(USER, PASSWORD))
        transport.clear()
        serverSays(client, b"535 5.7.8 Authentication credentials invalid")
        error = outcome.error(errors.AuthenticationFailedError)
        assert error.code == 535 and error.isPermanent
        assert transport.value() == b"QUIT\r\n"

    def test_authUnexpectedReply(self) -> None:
        """
        A 250 reply to AUTH is a protocol violation, not a success.
        """
        client, transport, outcome = authClient(PlainMechanism(USER, PASSWORD))
        transport.clear()
        serverSays(client, b"250 sure")
        outcome.error(errors.SMTPProtocolError)
        assert transport.aborted and transport.value() == b""

    def test_auth421(self) -> None:
        """
        421 to AUTH ends the session.
        """
        client, _transport, outcome = authClient(PlainMechanism(USER, PASSWORD))
        serverSays(client, b"421 bye")
        assert outcome.error(errors.ServerRefusedSessionError).command == "AUTH"

    def test_noCredentialsInClear(self) -> None:
        """
        Credentials but no TLS and no opt-in: AUTH is skipped (the message
        is sent unauthenticated) when authentication is not required.
        """
        _client, transport, _outcome = authClient(
            PlainMechanism(USER, PASSWORD), allowPlaintextAuth=False
        )
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_noCredentialsInClearWhenRequired(self) -> None:
        """
        Credentials required but no TLS and no opt-in:
        L{errors.PlaintextAuthRefusedError}, and no AUTH line is written.
        """
        _client, transport, outcome = authClient(
            PlainMechanism(USER, PASSWORD),
            allowPlaintextAuth=False,
            requireAuthentication=True,
        )
        outcome.error(errors.PlaintextAuthRefusedError)
        assert transport.value() == b"QUIT\r\n"

    def test_authOverSTARTTLS(self) -> None:
        """
        With credentials and opportunistic TLS, the client upgrades first
        and authenticates over TLS, without any opt-in.
        """
        client, transport, _ = tlsClient(requireAuthentication=True)
        client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
        outcome = send(client)
        serverSays(client, *EHLO_STARTTLS, b"220 go")
        transport.clear()
        serverSays(client, *EHLO_AFTER_TLS)
        assert transport.take().startswith(b"AUTH PLAIN ")
        serverSays(client, b"235 ok", b"250 ok", b"250 ok", b"354 go", QUEUED)
        result = outcome.value()
        assert result.session is not None
        assert result.session.authMechanism == "PLAIN"
        assert result.session.tlsVersion == "TLSv1.3"

    @pytest.mark.parametrize(
        ("mechanisms", "ehlo", "why"),
        [
            ((), b"250 AUTH PLAIN", "no credentials were given"),
            ((PlainMechanism(USER, PASSWORD),), b"250 SIZE 10", "does not offer AUTH"),
            (
                (PlainMechanism(USER, PASSWORD),),
                b"250 AUTH GSSAPI NTLM",
                "no common mechanism (server: GSSAPI NTLM; ours: PLAIN)",
            ),
        ],
    )
    def test_authenticationRequiredButImpossible(
        self, mechanisms: tuple[Any, ...], ehlo: bytes, why: str
    ) -> None:
        """
        Authentication required but impossible fails with
        L{errors.AuthenticationRequiredError} saying why, before any mail.
        """
        client = newClient(requireAuthentication=True, allowPlaintextAuth=True)
        for mechanism in mechanisms:
            client.registerAuthenticator(mechanism)
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, b"250-mx.example", ehlo)
        error = outcome.error(errors.AuthenticationRequiredError)
        assert why in str(error)
        assert transport.value() == b"QUIT\r\n"


class TestRedaction:
    @pytest.mark.parametrize("mechanismClass", [PlainMechanism, LoginMechanism])
    def test_secretsNeverRecorded(self, mechanismClass: Any) -> None:
        """
        The password, and every base64 form of it the client sends, never
        appear in the transcript, the log, an error message, an error's
        transcript or a result, whether AUTH succeeds or fails.
        """
        events: list[LogEvent] = []
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        try:
            secrets = [
                PASSWORD,
                b64(PASSWORD.encode()).decode(),
                b64(f"\0{USER}\0{PASSWORD}".encode()).decode(),
            ]
            texts: list[str] = []
            for final in (b"235 ok", b"535 5.7.8 no"):
                client, transport, outcome = authClient(mechanismClass(USER, PASSWORD))
                if mechanismClass is LoginMechanism:
                    serverSays(client, b"334 " + b64(b"Username:"))
                    serverSays(client, b"334 " + b64(b"Password:"))
                wire = transport.value()
                assert any(s.encode() in wire for s in secrets)  # it was sent
                serverSays(client, final)
                if final.startswith(b"235"):
                    serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
                    result = outcome.value()
                    texts += [repr(result), repr(result.transcript)]
                else:
                    error = outcome.error(errors.AuthenticationFailedError)
                    texts += [str(error), repr(error), repr(error.transcript)]
                    assert error.result is not None
                    texts.append(repr(error.result))
                texts.append(repr(client.transcript))
                assert ("C", "<redacted>") in client.transcript or (
                    "C",
                    "AUTH PLAIN <redacted>",
                ) in client.transcript
            texts += [repr(e) for e in events]
        finally:
            globalLogPublisher.removeObserver(observer)
        assert events, "the client logs its transcript"
        for text in texts:
            for secret in secrets:
                assert secret not in text


# -- the mail transaction ------------------------------------------------------------


class TestTransaction:
    def test_fullTransaction(self) -> None:
        """
        MAIL, one RCPT per recipient, DATA, the dot-stuffed message and its
        end; the result has every recipient accepted by the final reply,
        the reply with its queue id, the timings and the transcript.
        """
        clock = Clock()
        client = newClient(clock)
        transport = ready(client)
        outcome = send(client, [RECIPIENT, "carol@example.org"])
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        clock.advance(1)
        serverSays(client, b"250 2.1.0 Ok")
        assert transport.take() == b"RCPT TO:<bob@example.net>\r\n"
        serverSays(client, b"250 2.1.5 Ok")
        assert transport.take() == b"RCPT TO:<carol@example.org>\r\n"
        serverSays(client, b"251 2.1.5 will forward")
        assert transport.take() == b"DATA\r\n"
        clock.advance(2)
        serverSays(client, b"354 End data with <CR><LF>.<CR><LF>")
        assert transport.take() == MESSAGE + b".\r\n"
        assert client.phase is Phase.FINAL
        assert not outcome.called
        clock.advance(3)
        serverSays(client, QUEUED)
        result = outcome.value()
        assert result.sender == SENDER
        assert result.accepted == (RECIPIENT, "carol@example.org")
        for address in result.accepted:
            r = result.recipients[address]
            assert (r.status, r.code, r.phase) == ("accepted", 250, "END-OF-DATA")
            assert r.enhancedStatus == "2.0.0"
        assert result.reply is not None and result.reply.code == 250
        assert result.queueId == "ABC123"
        assert result.timings == {"start": 0.0, "mail": 1.0, "data": 3.0, "done": 6.0}
        assert result.attempts == 1
        assert ("C", f"<{len(MESSAGE) + 3} octets of data> .") in result.transcript
        assert result.transcript[-1] == ("S", "250 2.0.0 Ok: queued as ABC123")
        assert phaseOf(client) is Phase.READY
        assert transport.value() == b""

    def test_singleRecipientAsString(self) -> None:
        """
        One recipient may be given as a string (or bytes), not a list.
        """
        client = newClient()
        transport = ready(client)
        Outcome(client.send(SENDER.encode(), RECIPIENT.encode(), MESSAGE))
        serverSays(client, b"250 ok")
        assert transport.value().endswith(b"RCPT TO:<bob@example.net>\r\n")

    def test_nullSender(self) -> None:
        """
        The empty sender is the null reverse-path.
        """
        client = newClient()
        transport = ready(client)
        send(client, sender="")
        assert transport.value() == b"MAIL FROM:<>\r\n"

    @pytest.mark.parametrize(
        ("reply", "status", "transient"),
        [
            (b"550 5.7.1 sender refused", "rejected", False),
            (b"451 4.3.0 later", "deferred", True),
        ],
    )
    def test_senderRefused(self, reply: bytes, status: str, transient: bool) -> None:
        """
        A refused MAIL fails the message with L{errors.SenderRefusedError};
        every recipient carries the MAIL reply; no RCPT is sent, and the
        next message starts with MAIL (no RSET is needed).
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client, [RECIPIENT, "carol@example.org"])
        second = send(client)
        transport.clear()
        serverSays(client, reply)
        error = outcome.error(errors.SenderRefusedError)
        assert error.result is not None
        assert error.isTransient is transient
        assert error.code == int(reply[:3])
        for r in error.result.recipients.values():
            assert (r.status, r.phase) == (status, "MAIL")
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        assert not second.called

    def test_mixedRecipients(self) -> None:
        """
        Each recipient gets its own RCPT reply: accepted ones are decided
        by the final reply, refused ones keep their RCPT reply.
        """
        client = newClient()
        transport = ready(client)
        to = ["ok@example.net", "no@example.net", "later@example.net"]
        outcome = send(client, to)
        serverSays(client, b"250 ok")
        serverSays(client, b"250 2.1.5 ok")
        serverSays(client, b"550 5.1.1 no such user")
        serverSays(client, b"450 4.2.1 mailbox busy")
        assert transport.value().endswith(b"DATA\r\n")
        serverSays(client, b"354 go", QUEUED)
        result = outcome.value()
        assert [r.status for r in result] == ["accepted", "rejected", "deferred"]
        assert [r.phase for r in result] == ["END-OF-DATA", "RCPT", "RCPT"]
        assert result.recipients["no@example.net"].enhancedStatus == "5.1.1"
        assert result.recipients["later@example.net"].text == "mailbox busy"
        assert result.byStatus("rejected") == ("no@example.net",)

    @pytest.mark.parametrize(
        ("replies", "transient"),
        [((b"550 no", b"550 no"), False), ((b"450 later", b"451 later"), True)],
    )
    def test_allRecipientsRefused(
        self, replies: tuple[bytes, bytes], transient: bool
    ) -> None:
        """
        Every recipient refused: no DATA, the message fails with
        L{errors.AllRecipientsRefusedError}, and the next message on the
        session starts with RSET.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client, ["x@example.net", "y@example.net"])
        serverSays(client, b"250 ok", *replies)
        error = outcome.error(errors.AllRecipientsRefusedError)
        assert error.result is not None
        assert error.isTransient is transient
        assert [r.code for r in error.result] == [int(r[:3]) for r in replies]
        assert error.result.reply is None
        assert b"DATA" not in transport.value()
        transport.clear()
        second = send(client)
        assert transport.take() == b"RSET\r\n"
        serverSays(client, b"250 reset")
        assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        assert second.value().accepted == (RECIPIENT,)

    def test_RSETRefused(self) -> None:
        """
        A refused RSET ends the session.
        """
        client = newClient()
        transport = ready(client)
        send(client)
        serverSays(client, b"250 ok", b"550 no")
        outcome = send(client)
        transport.clear()
        serverSays(client, b"500 what RSET")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == "RSET"
        assert transport.value() == b"QUIT\r\n"

    @pytest.mark.parametrize(
        ("reply", "status"),
        [(b"554 5.3.0 no data", "rejected"), (b"451 4.3.0 later", "deferred")],
    )
    def test_DATARefused(self, reply: bytes, status: str) -> None:
        """
        A refused DATA fails the message with L{errors.MessageRefusedError};
        the recipients accepted at RCPT carry the DATA reply; nothing of the
        message is sent, and the next message starts with RSET.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client, [RECIPIENT, "no@example.net"])
        serverSays(client, b"250 ok", b"250 ok", b"550 no")
        transport.clear()
        serverSays(client, reply)
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.code == int(reply[:3])
        r = error.result.recipients[RECIPIENT]
        assert (r.status, r.phase) == (status, "DATA")
        assert error.result.recipients["no@example.net"].phase == "RCPT"
        assert transport.value() == b""
        assert not client.dataStarted
        send(client)
        assert transport.value() == b"RSET\r\n"

    @pytest.mark.parametrize(
        ("reply", "status", "transient"),
        [
            (b"554 5.7.1 spam", "rejected", False),
            (b"451 4.3.0 try later", "deferred", True),
        ],
    )
    def test_finalReplyRefused(
        self, reply: bytes, status: str, transient: bool
    ) -> None:
        """
        A refused message (negative final reply) fails with
        L{errors.MessageRefusedError} carrying the reply; the accepted
        recipients take its status; the next message needs no RSET.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        serverSays(client, reply)
        error = outcome.error(errors.MessageRefusedError)
        assert error.result is not None
        assert error.isTransient is transient
        assert error.result.reply is not None
        assert error.result.reply.code == int(reply[:3])
        r = error.result.recipients[RECIPIENT]
        assert (r.status, r.phase) == (status, "END-OF-DATA")
        transport.clear()
        send(client)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_multiLineReplies(self) -> None:
        """
        Multi-line replies to MAIL, RCPT and the final dot are read whole;
        the client acts only after their last line.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        transport.clear()
        serverSays(client, b"250-sender")
        assert transport.value() == b""
        serverSays(client, b"250 ok")
        assert transport.take() == b"RCPT TO:<bob@example.net>\r\n"
        serverSays(client, b"250-one", b"250 two", b"354-go", b"354 ahead")
        serverSays(client, b"250-2.0.0 Ok", b"250 2.0.0 queued as XYZ")
        result = outcome.value()
        assert result.reply is not None
        assert result.reply.lines == ("2.0.0 Ok", "2.0.0 queued as XYZ")
        assert result.queueId == "XYZ"

    @pytest.mark.parametrize(
        ("steps", "command"),
        [
            ((), "MAIL"),
            ((b"250 ok",), "RCPT"),
            ((b"250 ok", b"250 ok"), "DATA"),
            ((b"250 ok", b"250 ok", b"354 go"), "END-OF-DATA"),
        ],
    )
    def test_421InTransaction(self, steps: tuple[bytes, ...], command: str) -> None:
        """
        421 to any command of the transaction ends the session with
        L{errors.ServerRefusedSessionError} naming the command, then QUIT;
        a queued message fails with it too.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        serverSays(client, *steps)
        transport.clear()
        serverSays(client, b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.command == command and error.isTransient
        assert transport.value() == b"QUIT\r\n"
        assert client.phase is Phase.CLOSED

    def test_421ToFinalDotIsADeferral(self) -> None:
        """
        421 in answer to the end of the data is an answer: the message was
        not accepted, so the recipients are "deferred" with code 421, not
        "unknown" (which would forbid a safe retry).
        """
        client = newClient()
        ready(client)
        outcome = send(client)
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        serverSays(client, b"421 4.3.2 shutting down")
        error = outcome.error(errors.ServerRefusedSessionError)
        assert error.result is not None
        r = error.result.recipients[RECIPIENT]
        assert (r.status, r.code) == ("deferred", 421)

    @pytest.mark.parametrize(
        ("steps", "reply", "verb"),
        [
            ((), b"251 ok", "MAIL"),
            ((b"250 ok",), b"354 go", "RCPT"),
            ((b"250 ok", b"250 ok"), b"250 ok", "DATA"),
            ((b"250 ok", b"250 ok", b"354 go"), b"354 more", "END-OF-DATA"),
        ],
    )
    def test_unexpectedPositiveReply(
        self, steps: tuple[bytes, ...], reply: bytes, verb: str
    ) -> None:
        """
        A positive reply a command does not allow is a protocol violation,
        never a success: the connection is dropped and no recipient is
        reported accepted.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        serverSays(client, *steps)
        transport.clear()
        serverSays(client, reply)
        error = outcome.error(errors.SMTPProtocolError)
        assert error.reason == f"unexpected reply {int(reply[:3])} to {verb}"
        assert transport.value() == b"" and transport.aborted
        assert error.result is not None and error.result.accepted == ()


class TestMalformed:
    def test_replyWithNothingOutstanding(self) -> None:
        """
        A reply while no command is outstanding is a protocol violation.
        """
        client = newClient()
        transport = ready(client)
        serverSays(client, b"250 surprise")
        outcome = send(client)
        error = outcome.error(errors.SMTPProtocolError)
        assert "no command outstanding" in error.reason
        assert transport.aborted and transport.value() == b""

    @pytest.mark.parametrize(
        "data",
        [
            b"hello\r\n",
            b"2500 ok\r\n",
            b"099 ok\r\n",
            b"250-one\r\n251 two\r\n",
            b"250_ok\r\n",
        ],
    )
    def test_malformedReply(self, data: bytes) -> None:
        """
        A malformed reply line is a protocol violation: it is never guessed
        at, the connection is dropped.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        transport.clear()
        client.dataReceived(data)
        error = outcome.error(errors.SMTPProtocolError)
        assert "malformed reply line" in error.reason
        assert transport.aborted and transport.value() == b""

    def test_lineTooLong(self) -> None:
        """
        A reply line longer than 64 KiB is a protocol violation.
        """
        client = newClient()
        transport = connectClient(client)
        outcome = send(client)
        client.dataReceived(b"220 " + b"x" * 70000)
        error = outcome.error(errors.SMTPProtocolError)
        assert "longer than 65536" in error.reason
        assert transport.aborted

    def test_nothingReadAfterFailure(self) -> None:
        """
        After a protocol violation, further input is ignored: no reply is
        read and nothing more is written.
        """
        client = newClient()
        transport = ready(client)
        serverSays(client, b"999 bad")
        transport.clear()
        transcript = client.transcript
        serverSays(client, b"250 ok", b"220 again")
        assert transport.value() == b""
        assert client.transcript == transcript


# -- timeouts --------------------------------------------------------------------------

TIMEOUT_STEPS: list[tuple[tuple[bytes, ...], str, float]] = [
    ((), "greeting", 300),
    ((GREETING,), "EHLO", 300),
    ((GREETING, b"500 no EHLO"), "HELO", 300),
    ((GREETING, *EHLO_REPLY), "MAIL", 300),
    ((GREETING, *EHLO_REPLY, b"250 ok"), "RCPT", 300),
    ((GREETING, *EHLO_REPLY, b"250 ok", b"250 ok"), "DATA", 120),
    ((GREETING, *EHLO_REPLY, b"250 ok", b"250 ok", b"354 go"), "END-OF-DATA", 600),
]


class TestTimeouts:
    @pytest.mark.parametrize(("steps", "phase", "seconds"), TIMEOUT_STEPS)
    def test_defaultTimeouts(
        self, steps: tuple[bytes, ...], phase: str, seconds: float
    ) -> None:
        """
        Each wait has its RFC 5321 default timeout: nothing happens just
        before it, and L{errors.SMTPTimeoutError} naming the phase fires
        at it, dropping the connection.
        """
        clock = Clock()
        client = newClient(clock)
        transport = connectClient(client)
        outcome = send(client)
        serverSays(client, *steps)
        transport.clear()
        clock.advance(seconds - 0.001)
        assert not outcome.called
        clock.advance(0.001)
        error = outcome.error(errors.SMTPTimeoutError)
        assert (error.phase, error.seconds) == (phase, seconds)
        assert transport.aborted and transport.value() == b""
        assert not clock.getDelayedCalls()

    def test_commandTimeouts(self) -> None:
        """
        STARTTLS, AUTH, RSET and QUIT wait the command timeout, 5 minutes.
        """
        for drive in (self._toSTARTTLS, self._toAUTH, self._toRSET):
            clock = Clock()
            _client, outcome = drive(clock)
            clock.advance(299.9)
            assert not outcome.called
            clock.advance(0.1)
            assert outcome.error(errors.SMTPTimeoutError).seconds == 300

    def _toSTARTTLS(self, clock: Clock) -> tuple[ESMTPClient, Outcome[SendResult]]:
        client = newClient(clock, tls="starttls", tlsOptions=FakeTLSOptions())
        connectClient(client, RecordingTransport(startTLS=True))
        outcome = send(client)
        serverSays(client, GREETING, *EHLO_STARTTLS)
        return client, outcome

    def _toAUTH(self, clock: Clock) -> tuple[ESMTPClient, Outcome[SendResult]]:
        client = newClient(clock, allowPlaintextAuth=True)
        client.registerAuthenticator(PlainMechanism(USER, PASSWORD))
        connectClient(client)
        outcome = send(client)
        serverSays(client, GREETING, b"250-mx", b"250 AUTH PLAIN")
        return client, outcome

    def _toRSET(self, clock: Clock) -> tuple[ESMTPClient, Outcome[SendResult]]:
        client = newClient(clock)
        ready(client)
        send(client)
        serverSays(client, b"250 ok", b"550 no")
        return client, send(client)

    def test_quitTimeout(self) -> None:
        """
        A server that never answers QUIT is dropped after 5 minutes, and
        the quit Deferred still fires once the connection is gone.
        """
        clock = Clock()
        client = newClient(clock)
        transport = ready(client)
        done = Outcome(client.quit())
        clock.advance(300)
        assert transport.aborted
        client.connectionLost(Failure(ConnectionDone()))
        assert done.value() is None

    def test_dataBlockTimeout(self) -> None:
        """
        While the message is being sent, each block must be taken by the
        network within 3 minutes; otherwise L{errors.SMTPTimeoutError}
        (C{"data-block"}) and the connection is dropped.
        """
        clock = Clock()
        client = newClient(clock)
        transport = ready(client)
        outcome = send(client, message=b"x" * (3 * CHUNK))
        serverSays(client, b"250 ok")
        serverSays(client, b"250 ok")
        serverSays(client, b"354 go")
        assert len(transport.writes) == 4  # MAIL, RCPT, DATA, first block
        clock.advance(179)
        assert transport.producer is client
        client.resumeProducing()
        assert len(transport.writes) == 5
        clock.advance(179)
        assert not outcome.called
        clock.advance(1)
        error = outcome.error(errors.SMTPTimeoutError)
        assert (error.phase, error.seconds) == ("data-block", 180)
        assert error.result is not None
        assert error.result.recipients[RECIPIENT].status == "deferred"
        assert transport.aborted

    def test_replyResetsTimer(self) -> None:
        """
        Every reply starts the next wait afresh.
        """
        clock = Clock()
        client = newClient(clock)
        connectClient(client)
        outcome = send(client)
        clock.advance(299)
        serverSays(client, GREETING)
        clock.advance(299)
        serverSays(client, *EHLO_REPLY)
        clock.advance(299)
        assert not outcome.called
        clock.advance(1)
        assert outcome.error(errors.SMTPTimeoutError).phase == "MAIL"

    def test_idleHasNoTimer(self) -> None:
        """
        A ready session with nothing to send waits without a timer.
        """
        clock = Clock()
        client = newClient(clock)
        ready(client)
        assert clock.getDelayedCalls() == []

    def test_capped(self) -> None:
        """
        C{Timeouts.capped} lowers every timeout above the limit and keeps
        the others; L{None} changes nothing; a limit that is not positive
        is refused.
        """
        capped = Timeouts().capped(150)
        assert attrs.astuple(capped) == (150, 150, 150, 150, 120, 150, 150)
        assert Timeouts().capped(None) == Timeouts()
        with pytest.raises(errors.InvalidArgumentError):
            Timeouts().capped(0)

    def test_cappedTimeoutsUsed(self) -> None:
        """
        A client made with capped timeouts waits no longer than the cap.
        """
        clock = Clock()
        client = newClient(clock, timeouts=Timeouts().capped(10))
        connectClient(client)
        outcome = send(client)
        clock.advance(10)
        error = outcome.error(errors.SMTPTimeoutError)
        assert (error.phase, error.seconds) == ("greeting", 10)


# -- connection loss -------------------------------------------------------------------

LOSS_STEPS: list[tuple[tuple[bytes, ...], str, list[str]]] = [
    ((), "greeting", ["not-attempted", "not-attempted"]),
    ((GREETING,), "EHLO", ["not-attempted", "not-attempted"]),
    ((GREETING, *EHLO_REPLY), "MAIL", ["not-attempted", "not-attempted"]),
    (
        (GREETING, *EHLO_REPLY, b"250 ok", b"250 ok"),
        "RCPT",
        ["deferred", "not-attempted"],
    ),
    (
        (GREETING, *EHLO_REPLY, b"250 ok", b"250 ok", b"550 no"),
        "DATA",
        ["deferred", "rejected"],
    ),
    (
        (GREETING, *EHLO_REPLY, b"250 ok", b"250 ok", b"550 no", b"354 go"),
        "END-OF-DATA",
        ["unknown", "rejected"],
    ),
]


class TestConnectionLost:
    @pytest.mark.parametrize(("steps", "phase", "statuses"), LOSS_STEPS)
    def test_lostInPhase(
        self, steps: tuple[bytes, ...], phase: str, statuses: list[str]
    ) -> None:
        """
        A connection lost in any phase fails the message with
        L{errors.ConnectionLostError} naming the phase; recipients accepted
        at RCPT are "deferred" before the end of the data was sent and
        "unknown" after it; nothing more is written, no timer is left.
        """
        clock = Clock()
        client = newClient(clock)
        transport = connectClient(client)
        outcome = send(client, [RECIPIENT, "carol@example.org"])
        serverSays(client, *steps)
        transport.clear()
        client.connectionLost(Failure(ConnectionLost("reset by peer")))
        error = outcome.error(errors.ConnectionLostError)
        assert error.phase == phase
        assert "reset by peer" in str(error)
        assert error.result is not None
        assert [r.status for r in error.result] == statuses
        assert transport.value() == b"" and not transport.disconnecting
        assert clock.getDelayedCalls() == []
        assert client.phase is Phase.CLOSED

    def test_lostDuringBody(self) -> None:
        """
        A connection lost while the message is being sent leaves the
        accepted recipients "deferred": the end of the data never left.
        """
        client = newClient()
        ready(client)
        outcome = send(client, message=b"x" * (2 * CHUNK + 1))
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        assert client.dataStarted
        client.stopProducing()
        client.connectionLost(Failure(ConnectionLost()))
        error = outcome.error(errors.ConnectionLostError)
        assert error.phase == "data-block"
        assert error.result is not None
        assert error.result.recipients[RECIPIENT].status == "deferred"

    def test_lostWithoutReason(self) -> None:
        """
        C{connectionLost} called without a reason still fails the message.
        """
        client = newClient()
        connectClient(client)
        outcome = send(client)
        client.connectionLost()
        assert outcome.error(errors.ConnectionLostError).phase == "greeting"

    def test_lostWhileIdle(self) -> None:
        """
        A connection lost while idle fails the next send (without raising).
        """
        client = newClient()
        ready(client)
        client.connectionLost(Failure(ConnectionDone()))
        assert send(client).error(errors.ConnectionLostError).phase == "ready"


def _lose(client: ESMTPClient, clock: Clock, d: Any) -> None:
    client.connectionLost(Failure(ConnectionLost("reset")))


def _timeOut(client: ESMTPClient, clock: Clock, d: Any) -> None:
    clock.advance(300)


def _say421(client: ESMTPClient, clock: Clock, d: Any) -> None:
    serverSays(client, b"421 4.3.2 bye")


def _sayGarbage(client: ESMTPClient, clock: Clock, d: Any) -> None:
    serverSays(client, b"999 garbage")


def _failHandshake(client: ESMTPClient, clock: Clock, d: Any) -> None:
    client.connectionLost(Failure(SSL.Error("bad certificate")))


class TestSessionFailure:
    @pytest.mark.parametrize(
        ("trigger", "kind"),
        [
            (_sayGarbage, errors.SMTPProtocolError),
            pytest.param(_lose, errors.ConnectionLostError),
            pytest.param(_timeOut, errors.SMTPTimeoutError),
            pytest.param(_say421, errors.ServerRefusedSessionError),
            pytest.param(_failHandshake, errors.TLSHandshakeError),
        ],
    )
    def test_failureFiresEveryMessage(
        self,
        trigger: Callable[[ESMTPClient, Clock, Any], None],
        kind: type[errors.MailClientError],
    ) -> None:
        """
        When the session fails with a message in flight and another queued,
        nothing raises and both Deferreds fail with the same kind of error
        and the same message, each with a result about its own recipients.
        """
        clock = Clock()
        client = newClient(clock)
        ready(client)
        d1 = client.send(SENDER, RECIPIENT, MESSAGE)
        first = Outcome(d1)
        second = send(client, "carol@example.org")
        trigger(client, clock, d1)
        e1 = first.error(kind)
        e2 = second.error(kind)
        assert e1 is not e2
        assert str(e2) == str(e1)
        assert e1.result is not None and e2.result is not None
        assert list(e1.result.recipients) == [RECIPIENT]
        assert list(e2.result.recipients) == ["carol@example.org"]


# -- cancellation ----------------------------------------------------------------------


class TestCancel:
    def test_cancelQueued(self) -> None:
        """
        Cancelling a queued message fails it with
        L{errors.SendCancelledError} (C{"queued"}) and leaves the session
        and the other messages alone.
        """
        client = newClient()
        transport = ready(client)
        first = send(client)
        d = client.send(SENDER, "carol@example.org", MESSAGE)
        cancelled = Outcome(d)
        third = send(client, "dave@example.org")
        transport.clear()
        d.cancel()
        assert cancelled.error(errors.SendCancelledError).phase == "queued"
        assert transport.value() == b""
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        first.value()
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        assert third.value().accepted == ("dave@example.org",)
        assert b"carol" not in transport.value()

    def test_cancelWhileNegotiating(self) -> None:
        """
        A message cancelled before the session is ready is never started.
        """
        client = newClient()
        transport = connectClient(client)
        d = client.send(SENDER, RECIPIENT, MESSAGE)
        outcome = Outcome(d)
        d.cancel()
        outcome.error(errors.SendCancelledError)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_REPLY)
        assert transport.value() == b""

    def test_cancelDuringBody(self) -> None:
        """
        Cancelling while the message data is being sent drops the
        connection, so the server never sees the end of the data.
        """
        client = newClient()
        transport = ready(client)
        d = client.send(SENDER, RECIPIENT, b"y" * (3 * CHUNK))
        outcome = Outcome(d)
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        d.cancel()
        assert outcome.error(errors.SendCancelledError).phase == "data-block"
        assert transport.aborted
        assert not transport.value().endswith(b".\r\n")

    def test_cancelAfterResult(self) -> None:
        """
        Cancelling a message that already has its result does nothing.
        """
        client = newClient()
        transport = ready(client)
        d = client.send(SENDER, RECIPIENT, MESSAGE)
        outcome = Outcome(d)
        serverSays(client, b"250 ok", b"250 ok", b"354 go", QUEUED)
        d.cancel()
        outcome.value()
        assert not transport.disconnecting

    def test_cancelQueuedFromErrback(self) -> None:
        """
        When the session fails, a caller may cancel another queued message
        from the first one's errback: the cancel does not raise and the
        other message fails exactly once.
        """
        client = newClient()
        ready(client)
        d1 = client.send(SENDER, RECIPIENT, MESSAGE)
        d2 = client.send(SENDER, "carol@example.org", MESSAGE)
        raised: list[BaseException] = []

        def cancelOther(f: Failure) -> None:
            try:
                d2.cancel()
            except Exception as e:
                raised.append(e)

        d1.addErrback(cancelOther)
        second = Outcome(d2)
        serverSays(client, b"999 broken")
        assert raised == []
        assert len(second.results) == 1


# -- several messages, quit ------------------------------------------------------------


class TestSession:
    def test_twoMessages(self) -> None:
        """
        Two messages on one connection go one after the other; the second
        starts with MAIL right after the first one's final reply, without
        RSET.
        """
        client = newClient()
        transport = ready(client)
        first = send(client)
        second = send(client, "carol@example.org", b"Subject: 2\r\n\r\n2\r\n")
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"
        assert first.value().queueId == "ABC123"
        serverSays(client, b"250 ok", b"250 ok", b"354 go", b"250 queued as DEF456")
        result = second.value()
        assert result.queueId == "DEF456"
        assert result.transcript[:5] == (
            ("S", "220 mx.example ESMTP ready"),
            ("C", "EHLO client.example"),
            ("S", "250-mx.example greets client.example"),
            ("S", "250-DSN"),
            ("S", "250 ENHANCEDSTATUSCODES"),
        )
        assert result.transcript[5] == ("C", "MAIL FROM:<alice@example.com>")
        assert ("S", "250 2.0.0 Ok: queued as ABC123") not in result.transcript

    def test_sendFromCallback(self) -> None:
        """
        A message queued from the previous message's callback is started
        once, in order.
        """
        client = newClient()
        transport = ready(client)
        first = client.send(SENDER, RECIPIENT, MESSAGE)
        later: list[Outcome[SendResult]] = []
        first.addCallback(lambda _: later.append(send(client, "carol@example.org")))
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.writes == [b"MAIL FROM:<alice@example.com>\r\n"]
        serverSays(client, b"250 ok")
        assert transport.value().endswith(b"RCPT TO:<carol@example.org>\r\n")
        assert len(later) == 1

    def test_quit(self) -> None:
        """
        C{quit()} when idle sends QUIT; 221 closes the connection; the
        Deferred fires once the connection is gone; calling it twice gives
        the same Deferred.
        """
        client = newClient()
        transport = ready(client)
        d = client.quit()
        assert client.quit() is d
        done = Outcome(d)
        assert transport.take() == b"QUIT\r\n"
        serverSays(client, b"221 2.0.0 bye")
        assert transport.disconnecting and not transport.aborted
        assert not done.called
        client.connectionLost(Failure(ConnectionDone()))
        assert done.value() is None
        assert client.phase is Phase.CLOSED

    def test_quit421(self) -> None:
        """
        421 to QUIT is taken as goodbye, not as an error.
        """
        client = newClient()
        transport = ready(client)
        done = Outcome(client.quit())
        serverSays(client, b"421 closing anyway")
        assert transport.disconnecting and not transport.aborted
        client.connectionLost(Failure(ConnectionDone()))
        assert done.value() is None

    def test_quitAfterQueue(self) -> None:
        """
        C{quit()} while a message is in flight waits for its final reply,
        then sends QUIT.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        done = Outcome(client.quit())
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.value() == b"QUIT\r\n"
        outcome.value()
        serverSays(client, b"221 bye")
        client.connectionLost(Failure(ConnectionDone()))
        assert done.called

    def test_quitWhileNegotiating(self) -> None:
        """
        C{quit()} before the session is ready sends QUIT once it is.
        """
        client = newClient()
        transport = connectClient(client)
        client.quit()
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_REPLY)
        assert transport.value() == b"QUIT\r\n"

    def test_quitAfterConnectionLost(self) -> None:
        """
        C{quit()} on a session whose connection is gone fires at once.
        """
        client = newClient()
        ready(client)
        client.connectionLost(Failure(ConnectionDone()))
        assert Outcome(client.quit()).value() is None

    def test_quitAfterFailureThenConnectionLost(self) -> None:
        """
        C{quit()} called after the session failed but before the connection
        is gone fires once, and the later connection loss raises nothing.
        """
        client = newClient()
        connectClient(client)
        serverSays(client, b"554 no")
        done = Outcome(client.quit())
        client.connectionLost(Failure(ConnectionDone()))
        assert done.value() is None

    def test_sendAfterQuit(self) -> None:
        """
        A message queued after C{quit()} fails (without raising).
        """
        client = newClient()
        ready(client)
        client.quit()
        assert "closing" in str(send(client).error(errors.ConnectionLostError))

    def test_quitWhenIdle(self) -> None:
        """
        With C{quitWhenIdle}, QUIT follows the last queued message.
        """
        client = newClient(quitWhenIdle=True)
        transport = connectClient(client)
        send(client)
        serverSays(client, GREETING, *EHLO_REPLY, b"250 ok", b"250 ok", b"354 go")
        transport.clear()
        serverSays(client, QUEUED)
        assert transport.value() == b"QUIT\r\n"

    def test_abort(self) -> None:
        """
        C{abort(error)} fails every message with C{error} and drops the
        connection.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        client.abort(errors.SMTPConnectError("stop"))
        assert str(outcome.error(errors.SMTPConnectError)) == "stop"
        assert transport.aborted

    def test_abortAfterFailure(self) -> None:
        """
        C{abort} on a session that already failed changes nothing: the
        first error stands and the connection is not touched again.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client)
        serverSays(client, b"421 bye")
        transport.clear()
        client.abort(errors.SMTPConnectError("late"))
        outcome.error(errors.ServerRefusedSessionError)
        assert not transport.aborted and transport.value() == b""

    def test_abortBeforeConnecting(self) -> None:
        """
        C{abort} before the connection exists fails the queued messages
        without touching any transport.
        """
        client = newClient()
        outcome = send(client)
        client.abort(errors.SMTPConnectError("refused"))
        outcome.error(errors.SMTPConnectError)
        assert not client.tlsActive
        assert client.sessionInfo().greeting is None

    def test_sendAfterFailureHasOwnResult(self) -> None:
        """
        A message sent after the session failed gets an error whose result
        (if any) describes that message, never another one's.
        """
        client = newClient()
        ready(client)
        first = send(client)
        serverSays(client, b"421 bye")
        first.error(errors.ServerRefusedSessionError)
        later = send(client, "carol@example.org", sender="zed@example.com")
        error = later.error(errors.ServerRefusedSessionError)
        assert error.result is None or error.result.sender == "zed@example.com"

    def test_everyFlightIsOneWrite(self) -> None:
        """
        Every reply is answered with exactly one write: each command (and
        a whole small message with its end) leaves in one segment.
        """
        client = newClient(quitWhenIdle=True)
        transport = connectClient(client)
        send(client, [RECIPIENT, "carol@example.org"])
        replies = [
            (GREETING,),
            EHLO_REPLY,
            (b"250 ok",),
            (b"250 ok",),
            (b"250 ok",),
            (b"354 go",),
            (QUEUED,),
        ]
        for reply in replies:
            before = len(transport.writes)
            serverSays(client, *reply)
            assert len(transport.writes) == before + 1, reply
        assert transport.writes[-2] == MESSAGE + b".\r\n"
        assert transport.writes[-1] == b"QUIT\r\n"


class TestNoDelay:
    def test_tcpNoDelay(self) -> None:
        """
        TCP_NODELAY is turned on when the connection is made.
        """
        transport = RecordingTransport(tcp=True)
        connectClient(newClient(), transport)
        assert transport.noDelay == [True]

    def test_tcpNoDelayUnderTLS(self) -> None:
        """
        Under a TLS wrapper, TCP_NODELAY is set on the TCP transport below.
        """
        tcp = RecordingTransport(tcp=True)
        wrapper = RecordingTransport()
        wrapper.transport = tcp  # type: ignore[attr-defined]
        connectClient(newClient(), wrapper)
        assert tcp.noDelay == [True]

    def test_noTCPBelow(self) -> None:
        """
        A transport with no TCP transport under it (within three layers) is
        left alone, and the session works.
        """

        @attrs.define
        class Layer:
            transport: object

        wrapper = RecordingTransport()
        wrapper.transport = Layer(Layer(Layer(None)))  # type: ignore[attr-defined]
        client = newClient()
        connectClient(client, wrapper)
        serverSays(client, GREETING)
        assert wrapper.value() == b"EHLO client.example\r\n"


# -- the message: 8-bit, files, bad input ----------------------------------------------

EIGHT_BIT = "Subject: cafe\r\n\r\nDéjà vu.\r\n".encode()


class TestMessage:
    def test_eightBitWithout8BITMIME(self) -> None:
        """
        An 8-bit message to a server without 8BITMIME fails with
        L{errors.UnsupportedFeatureError} before MAIL; the next message
        goes on.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client, message=EIGHT_BIT)
        error = outcome.error(errors.UnsupportedFeatureError)
        assert "8BITMIME" in str(error)
        assert transport.value() == b""
        send(client)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_eightBitWithout8BITMIMEQuitsWhenIdle(self) -> None:
        """
        An unsendable last message still lets C{quitWhenIdle} say QUIT.
        """
        client = newClient(quitWhenIdle=True)
        transport = connectClient(client)
        outcome = send(client, message=EIGHT_BIT)
        serverSays(client, GREETING)
        transport.clear()
        serverSays(client, *EHLO_REPLY)
        outcome.error(errors.UnsupportedFeatureError)
        assert transport.value() == b"QUIT\r\n"

    def test_eightBitWith8BITMIME(self) -> None:
        """
        An 8-bit message to a server with 8BITMIME is declared with
        C{BODY=8BITMIME} and sent unchanged.
        """
        client = newClient()
        transport = ready(client, *EHLO_8BITMIME)
        outcome = send(client, message=EIGHT_BIT)
        assert transport.take() == b"MAIL FROM:<alice@example.com> BODY=8BITMIME\r\n"
        serverSays(client, b"250 ok", b"250 ok")
        transport.clear()
        serverSays(client, b"354 go")
        assert transport.value() == EIGHT_BIT + b".\r\n"
        serverSays(client, QUEUED)
        outcome.value()

    def test_asciiWith8BITMIME(self) -> None:
        """
        An ASCII message is not declared 8-bit.
        """
        client = newClient()
        transport = ready(client, *EHLO_8BITMIME)
        send(client)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    def test_strMessage(self) -> None:
        """
        A C{str} message is sent as UTF-8 (declared 8-bit when it is).
        """
        client = newClient()
        transport = ready(client, *EHLO_8BITMIME)
        send(client, message="Subject: e\r\n\r\nhé\r\n")
        assert transport.take().endswith(b"BODY=8BITMIME\r\n")
        serverSays(client, b"250 ok", b"250 ok")
        transport.clear()
        serverSays(client, b"354 go")
        assert transport.value() == "Subject: e\r\n\r\nhé\r\n.\r\n".encode()

    def test_rawUTF8HeadersNeedSMTPUTF8(self) -> None:
        """
        Raw UTF-8 in the header of a C{bytes} message needs SMTPUTF8: without
        it the send fails clearly, before anything is sent (only an
        C{EmailMessage} can be re-encoded); with it, MAIL says SMTPUTF8.
        """
        message = "Subject: café\r\n\r\nhi\r\n".encode()
        client = newClient()
        transport = ready(client, *EHLO_8BITMIME)
        error = send(client, message=message).error(errors.UnsupportedFeatureError)
        assert "SMTPUTF8" in str(error)
        assert transport.value() == b""
        client = newClient()
        transport = ready(client, b"250-mx.example", b"250-8BITMIME", b"250 SMTPUTF8")
        send(client, message=message)
        assert transport.value() == (
            b"MAIL FROM:<alice@example.com> BODY=8BITMIME SMTPUTF8\r\n"
        )

    def test_fileStreamedInChunks(self, tmp_path: Path) -> None:
        """
        A binary file is streamed through the pull producer, one 64 KiB
        block per C{resumeProducing}, the end of the data with the last
        block.  A seekable file is scanned first, so an all-ASCII one is
        not declared 8-bit.
        """
        line = b"x" * 78 + b"\r\n"
        data = line * 2560  # 200 KiB: four blocks
        path = tmp_path / "message.eml"
        path.write_bytes(data)
        client = newClient()
        transport = ready(client, *EHLO_8BITMIME)
        with path.open("rb") as f:
            outcome = send(client, message=f)
            assert transport.take() == b"MAIL FROM:<alice@example.com>\r\n"
            serverSays(client, b"250 ok", b"250 ok")
            transport.clear()
            serverSays(client, b"354 go")
            assert transport.producer is client and transport.streaming is False
            while transport.producer is not None:
                client.resumeProducing()
        assert [len(w) for w in transport.writes] == [CHUNK, CHUNK, CHUNK, 8192 + 3]
        assert transport.value() == data + b".\r\n"
        assert client.phase is Phase.FINAL
        client.resumeProducing()  # a late call does nothing
        assert len(transport.writes) == 4
        serverSays(client, QUEUED)
        outcome.value()
        assert ("C", f"<{len(data) + 3} octets of data> .") in client.transcript

    def test_shortReads(self) -> None:
        """
        A file-like object that returns a few bytes per read (so blocks
        split lines, CRLFs and dots anywhere) is still sent exactly as
        the one-shot encoder would send it.
        """
        message = b"Subject: s\r\n\r\n.first\r\n..two\r\n.\r\nbare\nlf\rcr\r\nend"

        class Trickle:
            def __init__(self) -> None:
                self.data = io.BytesIO(message)

            def read(self, size: int = -1) -> bytes:
                return self.data.read(min(size, 3))

        client = newClient()
        transport = ready(client)
        send(client, message=Trickle())
        serverSays(client, b"250 ok", b"250 ok")
        transport.clear()
        serverSays(client, b"354 go")
        while transport.producer is not None:
            client.resumeProducing()
        assert transport.value() == encodeData(message)

    def test_eightBitFileWithout8BITMIME(self) -> None:
        """
        A file found to hold 8-bit data while it is being sent to a server
        without 8BITMIME fails with L{errors.UnsupportedFeatureError}, and
        the connection is dropped so the server never gets a truncated
        message with an end.
        """
        client = newClient()
        transport = ready(client)
        outcome = send(client, message=io.BytesIO(b"a" * CHUNK + EIGHT_BIT))
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        client.resumeProducing()
        outcome.error(errors.UnsupportedFeatureError)
        assert transport.aborted
        assert not transport.value().endswith(b".\r\n")

    def test_emptyFile(self) -> None:
        """
        An empty file is sent as an empty message.
        """
        client = newClient()
        transport = ready(client)
        send(client, message=io.BytesIO(b""))
        serverSays(client, b"250 ok", b"250 ok")
        transport.clear()
        serverSays(client, b"354 go")
        assert transport.value() == b".\r\n"

    @pytest.mark.parametrize(
        "reader",
        [
            lambda: (_ for _ in ()).throw(OSError("disk on fire")),
            lambda: "text, not bytes",
        ],
    )
    def test_unreadableFile(self, reader: Callable[[], object]) -> None:
        """
        A file whose read fails, or returns text, fails the message with
        L{errors.InvalidArgumentError} and drops the connection.
        """

        class Broken:
            def read(self, size: int = -1) -> Any:
                return reader()

        client = newClient()
        transport = ready(client)
        outcome = send(client, message=Broken())
        serverSays(client, b"250 ok", b"250 ok", b"354 go")
        outcome.error(errors.InvalidArgumentError)
        assert transport.aborted

    @pytest.mark.parametrize(
        ("sender", "to", "message", "kind"),
        [
            (
                "a@x.example\r\nRCPT TO:<evil@x>",
                [RECIPIENT],
                MESSAGE,
                errors.CommandArgumentError,
            ),
            (SENDER, ["b@x.example\nDATA"], MESSAGE, errors.CommandArgumentError),
            (SENDER, ["b@x.example\x00"], MESSAGE, errors.CommandArgumentError),
            (SENDER, [RECIPIENT, RECIPIENT], MESSAGE, errors.InvalidArgumentError),
            (SENDER, [], MESSAGE, errors.InvalidArgumentError),
            (
                SENDER,
                [RECIPIENT],
                io.StringIO("text mode"),
                errors.InvalidArgumentError,
            ),
            (SENDER, [RECIPIENT], 42, errors.InvalidArgumentError),
            (SENDER, ["bøb@example.net"], MESSAGE, errors.UnsupportedFeatureError),
            (None, [RECIPIENT], MESSAGE, errors.CommandArgumentError),
            (SENDER, [None], MESSAGE, errors.CommandArgumentError),
        ],
    )
    def test_badInputFailsDeferred(
        self, sender: Any, to: Any, message: object, kind: type[Exception]
    ) -> None:
        """
        Bad input (CR, LF or NUL in an address, a duplicate recipient, no
        recipient, a text-mode file, a non-message, a non-ASCII address)
        fails the Deferred, never raises; nothing is sent and the session
        goes on.
        """
        client = newClient()
        transport = ready(client)
        outcome = Outcome(client.send(sender, to, message))
        outcome.error(kind)
        assert transport.value() == b""
        send(client)
        assert transport.value() == b"MAIL FROM:<alice@example.com>\r\n"

    @pytest.mark.parametrize("to", [None, 42])
    def test_nonIterableRecipientsFailDeferred(self, to: Any) -> None:
        """
        Recipients that are neither an address nor a collection of them
        fail the Deferred instead of raising.
        """
        client = newClient()
        ready(client)
        outcome = Outcome(client.send(SENDER, to, MESSAGE))
        outcome.error(errors.InvalidArgumentError)


# -- the state table -------------------------------------------------------------------


class TestStateTable:
    def test_everyPhaseListed(self) -> None:
        """
        The transition table names every phase, and only phases.
        """
        assert set(TRANSITIONS) == set(Phase)
        for targets in TRANSITIONS.values():
            assert targets <= set(Phase)

    def test_transitionOutsideTableRefused(self) -> None:
        """
        A transition the table does not allow is refused loudly.
        """
        client = newClient()
        with pytest.raises(AssertionError):
            client._enter(Phase.DATA)

    def test_sessionInfoBeforeConnection(self) -> None:
        """
        A client that never connected reports an empty session.
        """
        client = newClient()
        info = client.sessionInfo()
        assert not client.tlsActive
        assert info.greeting is None and info.serverName == ""
