"""
NOOP, VRFY and L{ESMTPClient.whenReady}; AUTH with a token provider that
refreshes a rejected token once; a SASL mechanism that must check the
server's proof.
"""

from __future__ import annotations

import base64
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock

from mailclient import errors
from mailclient._wire.sasl import SASLMechanismError, XOAuth2Mechanism
from mailclient.protocol import ESMTPClient, Phase
from tests.helpers import Outcome, RecordingTransport, connectClient, serverSays

SENDER = "alice@example.com"
MESSAGE = b"Subject: hi\r\n\r\nHello.\r\n"


def phaseOf(client: ESMTPClient) -> Phase:
    """
    The client's phase, read through a call so that type checkers do not
    narrow it.
    """
    return client.phase


def readyClient(**options: Any) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A client past EHLO (with PIPELINING), its transport cleared.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none", **options)
    transport = connectClient(client)
    serverSays(client, b"220 mx", b"250-mx", b"250 PIPELINING")
    transport.clear()
    return client, transport


class TestNoopVerify:
    def test_noop(self) -> None:
        """
        C{noop()} sends NOOP and fires with the 250 reply.
        """
        client, transport = readyClient()
        outcome = Outcome(client.noop())
        assert transport.take() == b"NOOP\r\n"
        assert client.phase is Phase.NOOP
        serverSays(client, b"250 2.0.0 Ok")
        assert outcome.value().code == 250
        assert phaseOf(client) is Phase.READY

    def test_verify(self) -> None:
        """
        C{verify()} sends VRFY; 252 ("cannot verify, will try") is an
        answer, 550 an L{errors.SMTPReplyError}.
        """
        client, transport = readyClient()
        known = Outcome(client.verify("postmaster"))
        unknown = Outcome(client.verify("nobody@x.example"))
        assert transport.take() == b"VRFY postmaster\r\n"
        serverSays(client, b"252 2.1.5 Cannot VRFY user, will accept")
        assert known.value().code == 252
        assert transport.take() == b"VRFY nobody@x.example\r\n"
        serverSays(client, b"550 5.1.1 unknown")
        assert unknown.error(errors.SMTPReplyError).code == 550

    def test_verifyRefusesInjection(self) -> None:
        """
        A CR or LF in the VRFY argument fails the Deferred; nothing is sent.
        """
        client, transport = readyClient()
        Outcome(client.verify("a\r\nDATA")).error(errors.CommandArgumentError)
        assert transport.value() == b""

    def test_queuedInTurn(self) -> None:
        """
        A NOOP queued behind a message waits for it.
        """
        client, transport = readyClient()
        client.send(SENDER, "a@x.example", MESSAGE)
        noop = Outcome(client.noop())
        transport.clear()
        serverSays(client, b"250 Ok", b"250 Ok", b"354 Go")
        assert b"NOOP" not in transport.take()
        serverSays(client, b"250 queued")
        assert transport.take() == b"NOOP\r\n"
        serverSays(client, b"250 Ok")
        assert noop.called

    def test_failsWithSession(self) -> None:
        """
        A queued NOOP fails with the session's error.
        """
        client, _ = readyClient()
        client.send(SENDER, "a@x.example", MESSAGE)
        noop = Outcome(client.noop())
        client.connectionLost()
        noop.error(errors.ConnectionLostError)


class TestWhenReady:
    def test_firesWithSessionInfo(self) -> None:
        """
        C{whenReady()} fires with what the session learnt once EHLO (and
        TLS/AUTH) are done; afterwards it fires at once.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
        connectClient(client)
        early = Outcome(client.whenReady())
        serverSays(client, b"220 mx", b"250-mx.example", b"250 SIZE 100")
        info = early.value()
        assert info.serverName == "mx.example"
        assert info.capabilities.size == 100
        assert Outcome(client.whenReady()).value().serverName == "mx.example"

    def test_failsWithSession(self) -> None:
        """
        A session refused before it is ready fails C{whenReady()}.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="none")
        connectClient(client)
        ready = Outcome(client.whenReady())
        serverSays(client, b"554 go away")
        ready.error(errors.ServerRefusedSessionError)
        Outcome(client.whenReady()).error(errors.ServerRefusedSessionError)


class Provider:
    """
    A token provider that hands out numbered tokens and records each call.
    """

    def __init__(self, asynchronous: bool = False) -> None:
        self.calls: list[bool] = []
        self.asynchronous = asynchronous
        self.pending: Deferred[str] | None = None

    def getToken(self, refresh: bool) -> object:
        """
        The next token; a Deferred when asynchronous.
        """
        self.calls.append(refresh)
        token = f"token{len(self.calls)}"
        if self.asynchronous:
            self.pending = Deferred()
            return self.pending
        return succeed(token) if refresh else token


def authReady(provider: Provider) -> tuple[ESMTPClient, RecordingTransport]:
    """
    A TLS client with an XOAUTH2 mechanism backed by C{provider}, just past
    EHLO (AUTH under way).
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
    client.registerAuthenticator(
        XOAuth2Mechanism("alice@example.com", tokenProvider=provider)
    )
    transport = connectClient(client, RecordingTransport(secure=True))
    transport.completeHandshake()
    serverSays(client, b"220 mx", b"250-mx", b"250 AUTH XOAUTH2")
    return client, transport


def xoauth2(token: str) -> bytes:
    """
    The AUTH line for C{token}.
    """
    raw = f"user=alice@example.com\x01auth=Bearer {token}\x01\x01".encode()
    return b"AUTH XOAUTH2 " + base64.b64encode(raw) + b"\r\n"


class TestTokenProvider:
    def test_tokenFetchedThenAuth(self) -> None:
        """
        The first AUTH uses a token from the provider (not a refresh).
        """
        provider = Provider()
        client, transport = authReady(provider)
        assert provider.calls == [False]
        assert transport.value().endswith(xoauth2("token1"))
        serverSays(client, b"235 2.7.0 Accepted")
        assert client.phase is Phase.READY

    def test_rejectedTokenRefreshedOnce(self) -> None:
        """
        A 535 to a provider's token: the client asks for a fresh token and
        tries once more; a second 535 fails the session.
        """
        provider = Provider()
        client, transport = authReady(provider)
        ready = Outcome(client.whenReady())
        transport.clear()
        serverSays(client, b"535 5.7.8 token expired")
        assert provider.calls == [False, True]
        assert transport.take() == xoauth2("token2")
        serverSays(client, b"535 5.7.8 still no")
        ready.error(errors.AuthenticationFailedError)
        assert provider.calls == [False, True]

    def test_asynchronousProvider(self) -> None:
        """
        A provider may answer later, with a Deferred; AUTH waits for it.
        """
        provider = Provider(asynchronous=True)
        _client, transport = authReady(provider)
        transport.clear()
        assert provider.pending is not None
        provider.pending.callback("late-token")
        assert transport.value() == xoauth2("late-token")

    def test_providerFails(self) -> None:
        """
        A provider that fails ends the session with
        L{errors.AuthenticationRequiredError}.
        """
        provider = Provider(asynchronous=True)
        client, _ = authReady(provider)
        ready = Outcome(client.whenReady())
        assert provider.pending is not None
        provider.pending.errback(RuntimeError("token endpoint down"))
        error = ready.error(errors.AuthenticationRequiredError)
        assert "token endpoint down" in str(error)

    def test_providerTimesOut(self) -> None:
        """
        A provider that never answers runs into the AUTH timeout.
        """
        provider = Provider(asynchronous=True)
        clock = Clock()
        client = ESMTPClient(clock=clock, heloName="c.example", tls="implicit")
        client.registerAuthenticator(
            XOAuth2Mechanism("alice@example.com", tokenProvider=provider)
        )
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        ready = Outcome(client.whenReady())
        serverSays(client, b"220 mx", b"250-mx", b"250 AUTH XOAUTH2")
        clock.advance(301)
        assert ready.error(errors.SMTPTimeoutError).phase == "AUTH"


class ProvingMechanism:
    """
    A mechanism whose exchange must end with the server's proof (as SCRAM
    does): C{successReceived} fails when the proof never came.
    """

    name = "PLAIN"

    def __init__(self) -> None:
        self.proved = False

    def initialResponse(self) -> bytes:
        """
        Any first message.
        """
        return b"\x00u\x00p"

    def respond(self, challenge: bytes) -> bytes:
        """
        The server's proof.
        """
        self.proved = challenge == b"proof"
        return b""

    def successReceived(self) -> None:
        """
        Refuse a success without proof.
        """
        if not self.proved:
            raise SASLMechanismError("the server did not prove itself", self.name)


def test_successWithoutServerProof() -> None:
    """
    A 235 is not enough for a mechanism that must verify the server: without
    the proof the session fails.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
    client.registerAuthenticator(ProvingMechanism())
    transport = connectClient(client, RecordingTransport(secure=True))
    transport.completeHandshake()
    ready = Outcome(client.whenReady())
    serverSays(client, b"220 mx", b"250-mx", b"250 AUTH PLAIN")
    serverSays(client, b"235 ok")
    ready.error(SASLMechanismError)


def test_successWithServerProof() -> None:
    """
    With the proof sent as a 334 challenge before 235, AUTH succeeds.
    """
    client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
    client.registerAuthenticator(ProvingMechanism())
    transport = connectClient(client, RecordingTransport(secure=True))
    transport.completeHandshake()
    ready = Outcome(client.whenReady())
    serverSays(client, b"220 mx", b"250-mx", b"250 AUTH PLAIN")
    serverSays(client, b"334 " + base64.b64encode(b"proof"))
    serverSays(client, b"235 ok")
    assert ready.value().authMechanism == "PLAIN"


class TestMechanismFallback:
    def tlsClient(self, *mechanisms: Any) -> tuple[ESMTPClient, RecordingTransport]:
        """
        A TLS client offering C{mechanisms}, greeted, EHLO answered with
        AUTH SCRAM-SHA-256 PLAIN.
        """
        client = ESMTPClient(clock=Clock(), heloName="c.example", tls="implicit")
        for mechanism in mechanisms:
            client.registerAuthenticator(mechanism)
        transport = connectClient(client, RecordingTransport(secure=True))
        transport.completeHandshake()
        serverSays(client, b"220 mx", b"250-mx", b"250 AUTH SCRAM-SHA-256 PLAIN")
        return client, transport

    def test_nextMechanismAfter535UnderTLS(self) -> None:
        """
        Under TLS, a 535 to the strongest mechanism (a server offering SCRAM
        without SCRAM secrets for this account) leads to the next one we
        have, once; its success makes the session ready.
        """
        from mailclient import PlainMechanism, ScramSHA256Mechanism

        client, transport = self.tlsClient(
            ScramSHA256Mechanism("u", "p"), PlainMechanism("u", "p")
        )
        ready = Outcome(client.whenReady())
        assert b"AUTH SCRAM-SHA-256 " in transport.take()
        serverSays(client, b"535 5.7.8 no SCRAM secrets")
        assert transport.take().startswith(b"AUTH PLAIN ")
        serverSays(client, b"235 ok")
        assert ready.value().authMechanism == "PLAIN"

    def test_allMechanismsFail(self) -> None:
        """
        When every mechanism is refused, the session fails with the last
        refusal.
        """
        from mailclient import PlainMechanism, ScramSHA256Mechanism

        client, _transport = self.tlsClient(
            ScramSHA256Mechanism("u", "p"), PlainMechanism("u", "p")
        )
        ready = Outcome(client.whenReady())
        serverSays(client, b"535 5.7.8 no")
        serverSays(client, b"535 5.7.8 still no")
        error = ready.error(errors.AuthenticationFailedError)
        assert "PLAIN" in str(error)

    def test_noFallbackInClear(self) -> None:
        """
        Without TLS (plaintext AUTH allowed), a refused CRAM-MD5 does not
        lead to PLAIN: a forged refusal must not expose the password.
        """
        from mailclient import CramMD5Mechanism, PlainMechanism

        client = ESMTPClient(
            clock=Clock(), heloName="c.example", tls="none", allowPlaintextAuth=True
        )
        client.registerAuthenticator(CramMD5Mechanism("u", "p"))
        client.registerAuthenticator(PlainMechanism("u", "p"))
        transport = connectClient(client)
        ready = Outcome(client.whenReady())
        serverSays(client, b"220 mx", b"250-mx", b"250 AUTH CRAM-MD5 PLAIN")
        assert transport.take().endswith(b"AUTH CRAM-MD5\r\n")
        serverSays(client, b"334 " + base64.b64encode(b"<1.2@mx>"))
        transport.clear()
        serverSays(client, b"535 5.7.8 no")
        ready.error(errors.AuthenticationFailedError)
        assert b"AUTH PLAIN" not in transport.value()
