"""
The security catalogue: one test per attack a hostile server, or a man in
the middle, can try on an SMTP client, run against L{mailclient.sendmail}
with the adversarial options of L{mailclient.testing.ScriptedServer}.

Each test says what the client must do, and whether Twisted's own client
(C{twisted.mail.smtp.SMTPClient} / C{ESMTPClient}) falls for the same
attack, and through which mechanism.  A case the client fails is marked
C{xfail(strict=True)} with the finding as its reason until it is fixed
(none is, now).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
)
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mailclient import DSN, Recipient, SendResult, sendmail
from mailclient._source import CHUNK_SIZE
from mailclient.demo import generateCertificates
from mailclient.errors import (
    AuthenticationRequiredError,
    CommandArgumentError,
    ConnectionLostError,
    InvalidArgumentError,
    PlaintextAuthRefusedError,
    ServerRefusedSessionError,
    SMTPProtocolError,
    SMTPTimeoutError,
    TLSHandshakeError,
    TLSRequiredError,
)
from mailclient.testing import (
    ConnectionRecord,
    MemoryEndpoint,
    ScriptedServer,
    runFor,
    settle,
)
from tests.test_scripted import connected

SENDER = "app@example.com"
RECIPIENT = "dev@example.com"
MESSAGE = b"Subject: report\r\n\r\nAll green.\r\n"
USER = "alice"
PASSWORD = "s3cret-Pa55"
CREDENTIALS = {USER: PASSWORD}
REFUSAL = b"454 4.7.0 not now"

Certificates = tuple[Certificate, PrivateCertificate]


@pytest.fixture(scope="module")
def certificates() -> Certificates:
    """
    A throwaway CA and a server certificate for C{mx.test} it signed.
    """
    return generateCertificates("mx.test")


@pytest.fixture
def clock() -> Clock:
    """
    A fresh fake clock.
    """
    return Clock()


class Run:
    """
    One L{sendmail} call against a server in memory: every time its
    Deferred fired (to prove it fires once), and when.

    @ivar results: every result, in order.
    @ivar times: the clock's time at each.
    """

    def __init__(self, clock: Clock, deferred: Deferred[SendResult]) -> None:
        self.clock = clock
        self.results: list[SendResult | Failure] = []
        self.times: list[float] = []
        deferred.addBoth(self._record)

    def _record(self, result: SendResult | Failure) -> None:
        self.results.append(result)
        self.times.append(self.clock.seconds())

    @property
    def firedAt(self) -> float:
        """
        When the Deferred fired (it must have, once).
        """
        assert len(self.times) == 1, self.results
        return self.times[0]

    def value(self) -> SendResult:
        """
        The result; fails the test unless the Deferred succeeded once.
        """
        assert len(self.results) == 1, self.results
        [result] = self.results
        assert not isinstance(result, Failure), result
        return result

    def error(self, kind: type[Exception]) -> Any:
        """
        The error; fails the test unless the Deferred failed once with
        C{kind}.
        """
        assert len(self.results) == 1, self.results
        [result] = self.results
        assert isinstance(result, Failure), f"expected {kind}, got {result!r}"
        assert result.check(kind), result
        return result.value


def send(
    clock: Clock,
    server: ScriptedServer,
    message: bytes = MESSAGE,
    *,
    recipients: list[Any] | None = None,
    sender: str | bytes = SENDER,
    certificates: Certificates | None = None,
    run: float | None = None,
    **options: Any,
) -> Run:
    """
    Send C{message} with L{sendmail} to C{server} in memory (trusting the
    test CA when given C{certificates}), then run the clock: everything
    due now, or C{run} seconds more.
    """
    options.setdefault("retries", 0)
    if certificates is not None:
        options.setdefault(
            "tlsOptions", optionsForClientTLS("mx.test", trustRoot=certificates[0])
        )
    result = Run(
        clock,
        sendmail(
            None,
            sender,
            recipients if recipients is not None else [RECIPIENT],
            message,
            endpoint=MemoryEndpoint(clock, server),
            reactor=clock,
            **options,
        ),
    )
    if run is None:
        settle(clock)
    else:
        runFor(clock, run)
    return result


def verbs(server: ScriptedServer) -> list[str]:
    """
    The verb of every command the server received, on every connection.
    """
    return [verb for record in server.connections for verb in record.verbs()]


def authInClear(record: ConnectionRecord) -> bool:
    """
    Whether an AUTH command (or an AUTH exchange line) reached the server
    before TLS: before a STARTTLS that was followed by TLS.
    """
    seen = record.verbs()
    if "AUTH" not in seen:
        return False
    if not record.tls or "STARTTLS" not in seen:
        return True
    return seen.index("AUTH") < seen.index("STARTTLS")


# -- STARTTLS stripping -----------------------------------------------------------


def strippingServer(
    clock: Clock, certificates: Certificates, attack: str
) -> ScriptedServer:
    """
    A server that offers AUTH in clear, behind a man in the middle who
    either removes STARTTLS from the EHLO reply (C{"stripped"}) or answers
    STARTTLS with a refusal (C{"refused"}).
    """
    if attack == "stripped":
        return ScriptedServer(
            clock,
            tlsOptions=certificates[1].options(),
            credentials=CREDENTIALS,
            stripCapabilities=[b"STARTTLS"],
        )
    return ScriptedServer(clock, credentials=CREDENTIALS, refuseStartTLS=REFUSAL)


@attrs.frozen
class Stripping:
    """
    One row of the STARTTLS-stripping table: the client's settings and what
    must happen.
    """

    tls: str | None
    credentials: bool
    options: dict[str, bool]
    error: type[Exception] | None
    auth: bool = False


STRIPPING = {
    "starttls": Stripping("starttls", False, {}, TLSRequiredError),
    "starttls+creds": Stripping("starttls", True, {}, TLSRequiredError),
    "starttls+creds+plaintext": Stripping(
        "starttls", True, {"allowPlaintextAuth": True}, TLSRequiredError
    ),
    "default+creds": Stripping(None, True, {}, TLSRequiredError),
    "opportunistic": Stripping("opportunistic", False, {}, None),
    "opportunistic+requireTransportSecurity": Stripping(
        "opportunistic", False, {"requireTransportSecurity": True}, TLSRequiredError
    ),
    "opportunistic+creds": Stripping(
        "opportunistic", True, {}, PlaintextAuthRefusedError
    ),
    "opportunistic+creds+optional": Stripping(
        "opportunistic", True, {"requireAuthentication": False}, None
    ),
    "opportunistic+creds+plaintext": Stripping(
        "opportunistic", True, {"allowPlaintextAuth": True}, None, auth=True
    ),
    "none": Stripping("none", False, {}, None),
    "none+creds": Stripping("none", True, {}, PlaintextAuthRefusedError),
    "none+creds+optional": Stripping(
        "none", True, {"requireAuthentication": False}, None
    ),
    "none+creds+plaintext": Stripping(
        "none", True, {"allowPlaintextAuth": True}, None, auth=True
    ),
}


class TestStartTLSStripping:
    """
    A man in the middle removes STARTTLS from the EHLO reply, or answers it
    with a refusal, to keep the session in clear.
    """

    @pytest.mark.parametrize("attack", ["stripped", "refused"])
    @pytest.mark.parametrize("case", list(STRIPPING), ids=list(STRIPPING))
    def test_stripping(
        self, clock: Clock, certificates: Certificates, attack: str, case: str
    ) -> None:
        """
        When STARTTLS is stripped or refused: a mode that requires TLS
        (C{"starttls"}, the default with credentials, or
        C{requireTransportSecurity}) fails with L{TLSRequiredError} before
        any credential or MAIL is sent; C{"opportunistic"} and C{"none"}
        go on in clear, but never send credentials unless
        C{allowPlaintextAuth} is true (then AUTH goes in clear, as asked);
        with credentials and the default C{requireAuthentication} they
        fail with L{PlaintextAuthRefusedError} instead, before MAIL.
        STARTTLS is only sent when it is offered and the mode wants TLS.

        Twisted is vulnerable: C{ESMTPClient.tryTLS} only upgrades when
        C{b"STARTTLS"} is in the EHLO items, and when it is not (and
        C{requireTransportSecurity} is false: the default of
        C{ESMTPClient} and of C{twisted.mail.smtp.sendmail}, though not of
        C{ESMTPSenderFactory}) it calls C{authenticate}, which sends
        C{AUTH PLAIN} with the credentials in clear whenever AUTH is
        offered (it never looks at C{_tlsMode}).  A refused STARTTLS fails
        (C{esmtpTLSFailed}), which is safe.
        """
        row = STRIPPING[case]
        server = strippingServer(clock, certificates, attack)
        options: dict[str, Any] = dict(row.options)
        if row.tls is not None:
            options["tls"] = row.tls
        if row.credentials:
            options.update(username=USER, password=PASSWORD)
        run = send(clock, server, certificates=certificates, **options)
        [record] = server.connections
        seen = record.verbs()
        assert not record.tls
        assert ("STARTTLS" in seen) == (attack == "refused" and row.tls != "none")
        assert ("AUTH" in seen) == row.auth
        if row.error is not None:
            run.error(row.error)
            assert "MAIL" not in seen
            assert server.outbox == []
        else:
            assert run.value().accepted == (RECIPIENT,)
            [delivery] = server.outbox
            assert not delivery.tls
            assert delivery.authenticatedAs == (USER if row.auth else None)

    def test_implicitAgainstPlaintext(
        self, clock: Clock, certificates: Certificates
    ) -> None:
        """
        Stripping does not apply to implicit TLS: against a server (or a
        man in the middle) that speaks plain SMTP, the handshake fails
        with L{TLSHandshakeError} and not one SMTP command leaves in
        clear (the server reads only the TLS ClientHello).

        Twisted is not vulnerable either: with implicit TLS
        (C{connectSSL}/C{wrapClientTLS}) the handshake must succeed
        before C{SMTPClient.lineReceived} sees a byte.
        """
        server = ScriptedServer(clock, credentials=CREDENTIALS)
        run = send(
            clock,
            server,
            certificates=certificates,
            tls="implicit",
            username=USER,
            password=PASSWORD,
        )
        run.error(TLSHandshakeError)
        [record] = server.connections
        assert not any(
            verb in {"EHLO", "HELO", "AUTH", "MAIL"} for verb in record.verbs()
        )
        assert server.outbox == []


# -- response injection after STARTTLS ----------------------------------------------


class TestInjectionAfterStartTLS:
    """
    Bytes sent in clear right behind the C{220} to STARTTLS, before TLS
    starts (the CVE-2011-0411 class of STARTTLS command and response
    injection).
    """

    @pytest.mark.parametrize(
        "extra",
        [
            b"250 ok\r\n",
            b"25",
            b"250-mx.test\r\n250 AUTH PLAIN\r\n",
            b"\r\n",
        ],
        ids=["full-line", "partial-line", "fake-ehlo-reply", "empty-line"],
    )
    def test_injectedReply(
        self, clock: Clock, certificates: Certificates, extra: bytes
    ) -> None:
        """
        A reply (or part of one) buffered behind the C{220} ends the
        session with L{SMTPProtocolError}: nothing more is sent (no EHLO,
        no AUTH, no MAIL), the Deferred fires once, nothing is delivered.

        Twisted is vulnerable: C{ESMTPClient.esmtpState_starttls} calls
        C{transport.startTLS} and then C{esmtpState_ehlo}, while
        C{LineReceiver.dataReceived} keeps splitting the bytes already
        buffered from the same read and hands them to C{lineReceived} as
        if they were the TLS-protected reply to the new EHLO.
        """
        server = ScriptedServer(
            clock, tlsOptions=certificates[1].options(), credentials=CREDENTIALS
        )
        server.rule("STARTTLS", extra=extra)
        run = send(
            clock,
            server,
            certificates=certificates,
            tls="starttls",
            username=USER,
            password=PASSWORD,
        )
        runFor(clock, 600)
        run.error(SMTPProtocolError)
        assert verbs(server) == ["EHLO", "STARTTLS"]
        assert server.outbox == []

    def test_injectionInALaterSegment(
        self, clock: Clock, certificates: Certificates
    ) -> None:
        """
        An injection that arrives in a later segment than the C{220}
        reaches the TLS layer, never the reply parser: the handshake fails
        with L{TLSHandshakeError}, nothing more is sent.

        Twisted behaves the same here: once C{startTLS} ran, later bytes
        go to the TLS layer.
        """
        server = ScriptedServer(
            clock,
            tlsOptions=certificates[1].options(),
            splitReplies=len(b"220 2.0.0 Ready to start TLS\r\n"),
        )
        server.rule("STARTTLS", extra=b"250 ok\r\n")
        run = send(clock, server, certificates=certificates, tls="starttls")
        run.error(TLSHandshakeError)
        assert verbs(server) == ["EHLO", "STARTTLS"]
        assert server.outbox == []


# -- capabilities across TLS ------------------------------------------------------


class TestCapabilitiesAcrossTLS:
    """
    What the server said before TLS (possibly through a man in the middle)
    is forgotten after it.
    """

    def server(self, clock: Clock, certificates: Certificates) -> ScriptedServer:
        """
        A server that advertises STARTTLS, AUTH PLAIN and a 100-octet SIZE
        limit before TLS, and neither AUTH nor SIZE after it.
        """
        server = ScriptedServer(
            clock,
            tlsOptions=certificates[1].options(),
            capabilities=(b"PIPELINING", b"ENHANCEDSTATUSCODES"),
        )
        server.rule(
            "EHLO",
            times=1,
            reply=[b"250-mx.test", b"250-STARTTLS", b"250-AUTH PLAIN", b"250 SIZE 100"],
        )
        return server

    def test_authFromBeforeTLSIsForgotten(
        self, clock: Clock, certificates: Certificates
    ) -> None:
        """
        AUTH offered only before TLS is not used after it: the client,
        which requires authentication, fails with
        L{AuthenticationRequiredError} without sending AUTH.

        Twisted is not vulnerable: C{esmtpState_starttls} sends EHLO again
        and C{esmtpState_serverConfig} builds its items from the new reply
        only.
        """
        server = self.server(clock, certificates)
        run = send(
            clock,
            server,
            certificates=certificates,
            tls="starttls",
            username=USER,
            password=PASSWORD,
        )
        error = run.error(AuthenticationRequiredError)
        assert "does not offer AUTH" in str(error)
        assert verbs(server) == ["EHLO", "STARTTLS", "EHLO", "QUIT"]

    def test_sizeFromBeforeTLSIsForgotten(
        self, clock: Clock, certificates: Certificates
    ) -> None:
        """
        A SIZE limit advertised only before TLS does not stop a larger
        message after it, and MAIL carries no SIZE parameter.

        Twisted is not vulnerable (it does not use SIZE at all).
        """
        server = self.server(clock, certificates)
        message = b"Subject: big\r\n\r\n" + b"x" * 500 + b"\r\n"
        run = send(clock, server, message, certificates=certificates, tls="starttls")
        assert run.value().accepted == (RECIPIENT,)
        [record] = server.connections
        [mail] = [c for c in record.commands if c.startswith("MAIL")]
        assert "SIZE=" not in mail
        assert server.outbox[0].tls


# -- credentials never in clear -------------------------------------------------


def _tlsServer(clock: Clock, certificates: Certificates) -> ScriptedServer:
    return ScriptedServer(
        clock, tlsOptions=certificates[1].options(), credentials=CREDENTIALS
    )


def _untrusted(clock: Clock, certificates: Certificates) -> ScriptedServer:
    return _tlsServer(clock, certificates)


AUTH_PATHS: dict[
    str,
    tuple[
        Callable[[Clock, Certificates], ScriptedServer],
        dict[str, Any],
        type[Exception] | None,
    ],
] = {
    "offered-before-starttls/starttls": (_tlsServer, {"tls": "starttls"}, None),
    "offered-before-starttls/opportunistic": (
        _tlsServer,
        {"tls": "opportunistic"},
        None,
    ),
    "offered-before-starttls/default": (_tlsServer, {}, None),
    "stripped/opportunistic": (
        lambda c, certs: strippingServer(c, certs, "stripped"),
        {"tls": "opportunistic"},
        PlaintextAuthRefusedError,
    ),
    "refused/opportunistic": (
        lambda c, certs: strippingServer(c, certs, "refused"),
        {"tls": "opportunistic"},
        PlaintextAuthRefusedError,
    ),
    "refused/starttls": (
        lambda c, certs: strippingServer(c, certs, "refused"),
        {"tls": "starttls"},
        TLSRequiredError,
    ),
    "handshake-fails": (
        _untrusted,
        {
            "tls": "opportunistic",
            "tlsOptions": optionsForClientTLS(
                "mx.test", trustRoot=generateCertificates("mx.test")[0]
            ),
        },
        TLSHandshakeError,
    ),
}


class TestAuthNeverInClear:
    """
    Every path that could send credentials.
    """

    @pytest.mark.parametrize("path", list(AUTH_PATHS), ids=list(AUTH_PATHS))
    def test_neverInClear(
        self, clock: Clock, certificates: Certificates, path: str
    ) -> None:
        """
        Credentials leave only over TLS: AUTH offered before STARTTLS is
        used only after the upgrade; a stripped or refused STARTTLS, or a
        failed handshake, ends the session before AUTH (unless
        C{allowPlaintextAuth}, see L{TestStartTLSStripping}).

        Twisted is vulnerable: C{ESMTPClient.authenticate} sends AUTH
        whenever the server offers it and C{secret} is set, TLS or not;
        only C{requireTransportSecurity} (off by default in
        C{twisted.mail.smtp.sendmail}) stops it, in C{tryTLS}.
        """
        makeServer, options, error = AUTH_PATHS[path]
        server = makeServer(clock, certificates)
        run = send(
            clock,
            server,
            certificates=certificates,
            username=USER,
            password=PASSWORD,
            **options,
        )
        [record] = server.connections
        assert not authInClear(record)
        if error is None:
            run.value()
            assert record.authenticatedAs == USER
            assert [(d.tls, d.authenticatedAs) for d in server.outbox] == [(True, USER)]
        else:
            run.error(error)
            assert "AUTH" not in record.verbs()
            assert server.outbox == []


# -- CR, LF and NUL in command arguments --------------------------------------------

BAD = ["\r\n", "\r", "\n", "\0"]
BAD_IDS = ["CRLF", "CR", "LF", "NUL"]
INJECTED = "RCPT TO:<evil@example.net>"


def _argument(field: str, bad: str) -> dict[str, Any]:
    """
    The L{send} keyword arguments that put C{bad} (then an injected
    command) into C{field}.
    """
    poison = bad + INJECTED
    if field == "sender":
        return {"sender": f"app{poison}@example.com"}
    if field == "sender-bytes":
        return {"sender": f"app{poison}@example.com".encode()}
    if field == "recipient":
        return {"recipients": [f"dev{poison}@example.com"]}
    if field == "second-recipient":
        return {"recipients": [RECIPIENT, f"ops{poison}@example.com"]}
    if field == "heloName":
        return {"heloName": f"client.test{poison}"}
    if field == "username":
        return {"username": USER + poison, "password": PASSWORD}
    assert field == "password"
    return {"username": USER, "password": PASSWORD + poison}


class TestArgumentInjection:
    """
    CR, LF and NUL in anything that goes into a command line.
    """

    @pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
    @pytest.mark.parametrize(
        "field",
        [
            "sender",
            "sender-bytes",
            "recipient",
            "second-recipient",
            "heloName",
            "username",
            "password",
        ],
    )
    def test_refused(self, clock: Clock, field: str, bad: str) -> None:
        """
        The Deferred fails with L{CommandArgumentError} (an
        L{InvalidArgumentError}) and nothing reaches the wire: the server
        never even sees a connection.

        Twisted is vulnerable for the HELO name: C{esmtpState_ehlo} and
        C{smtpState_helo} write C{b"EHLO " + self.identity} with
        C{sendLine}, which checks nothing (command injection).  Addresses
        go through C{quoteaddr}, which does not refuse CR/LF either but
        silently rewrites them (C{email.utils.parseaddr} keeps only what
        it parses): mail goes to an address the caller never gave.  AUTH
        data is base64-encoded (no injection), but a NUL in the user name
        shifts the fields of the PLAIN response.
        """
        server = ScriptedServer(clock, credentials=CREDENTIALS)
        options = _argument(field, bad)
        if "username" in options:
            options.update(tls="none", allowPlaintextAuth=True)
        run = send(clock, server, **options)
        error = run.error(CommandArgumentError)
        assert isinstance(error, InvalidArgumentError)
        assert server.connectAttempts == 0
        assert server.connections == []
        assert server.outbox == []

    @pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
    def test_dsnValues(self, clock: Clock, bad: str) -> None:
        """
        The DSN ENVID and a recipient's ORCPT are refused when the values
        are made (L{CommandArgumentError}, local misuse), so no send can
        carry them; nothing reaches the wire.

        Twisted has no DSN support (not applicable).
        """
        with pytest.raises(CommandArgumentError):
            DSN(envelopeId="id" + bad + INJECTED)
        with pytest.raises(CommandArgumentError):
            Recipient(RECIPIENT, originalRecipient="rfc822;x" + bad + INJECTED)
        good = Recipient(RECIPIENT, originalRecipient="rfc822;x@example.com")
        with pytest.raises(CommandArgumentError):
            attrs.evolve(good, originalRecipient="rfc822;x" + bad + INJECTED)
        server = ScriptedServer(clock)
        assert server.connections == []


# -- smuggling in the message body --------------------------------------------------


def normalised(message: bytes) -> bytes:
    """
    What the server must receive for C{message}: every bare CR and bare LF
    made CRLF, and a final CRLF when missing.
    """
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", message)
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data


SMUGGLED = b"MAIL FROM:<evil@example.net>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\n"
BOUNDARY = b"x" * (CHUNK_SIZE - 2)

BODIES = {
    "lf-dot-lf": b"Subject: a\r\n\r\nhi\n.\n" + SMUGGLED,
    "cr-dot-cr": b"Subject: a\r\n\r\nhi\r.\r" + SMUGGLED,
    "crlf-dot-cr": b"Subject: a\r\n\r\nhi\r\n.\r" + SMUGGLED,
    "crlf-dot-crlf": b"Subject: a\r\n\r\nhi\r\n.\r\n" + SMUGGLED,
    "dot-first-line": b".\r\n" + SMUGGLED,
    "dots-first-line": b"..hidden\r\nbody\r\n",
    "dot-at-chunk-boundary": BOUNDARY + b"\r\n.\r\n" + SMUGGLED,
    "dotline-at-chunk-boundary": BOUNDARY + b"\r\n.x\r\n",
    "crlf-split-by-boundary": b"x" * (CHUNK_SIZE - 1) + b"\r\n.\r\n" + SMUGGLED,
    "bare-cr-at-boundary": b"x" * (CHUNK_SIZE - 1) + b"\r.\r" + SMUGGLED,
    "bare-lf-at-boundary": b"x" * (CHUNK_SIZE - 1) + b"\n.\n" + SMUGGLED,
    "bare-cr-and-lf": b"Subject: a\r\n\r\none\rtwo\nthree\r\r\nfour\n\r",
    "ends-with-dot": b"Subject: a\r\n\r\nlast line\r\n.",
    "ends-with-cr": b"Subject: a\r\n\r\nlast line\r",
}


class TestBodySmuggling:
    """
    Message bodies that try to end the message early and smuggle commands
    (SMTP smuggling), over DATA and over BDAT.
    """

    @pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
    @pytest.mark.parametrize("body", list(BODIES), ids=list(BODIES))
    def test_body(self, clock: Clock, body: str, chunking: bool) -> None:
        """
        The server receives exactly the message with every line ended by
        CRLF (bare CR and bare LF made CRLF), the message ends once, every
        line that starts with a dot (the first one and one that starts
        exactly at a 64 KiB chunk boundary included) is dot-stuffed over
        DATA (the server's un-stuffing gives the text back; an unstuffed
        dot would be lost or end the message), and no smuggled command is
        ever read as one.

        Twisted is vulnerable: C{SMTPClient.transformChunk} does
        C{chunk.replace(b"\\n", b"\\r\\n").replace(b"\\r\\n.", b"\\r\\n..")}
        on each C{FileSender} chunk alone, so a dot on the first line, or
        at the start of a chunk after a chunk that ended with LF, is not
        stuffed; a bare CR is sent as is (C{\\r.\\r} ends the message on
        lenient servers); and CRLF input becomes CR CR LF.
        """
        message = BODIES[body]
        server = ScriptedServer(clock, chunking=chunking)
        run = send(clock, server, message)
        assert run.value().accepted == (RECIPIENT,)
        [delivery] = server.outbox
        assert delivery.data == normalised(message)
        assert delivery.sender == SENDER
        assert delivery.recipients == (RECIPIENT,)
        seen = verbs(server)
        assert seen.count("MAIL") == 1
        assert seen.count("RCPT") == 1
        assert seen[-1] == "QUIT"
        assert ("BDAT" in seen) == chunking


# -- a drop after the final dot ----------------------------------------------------


class TestDropAfterData:
    """
    The connection drops after the whole message was sent, before its
    final reply.
    """

    @pytest.mark.parametrize("chunking", [False, True], ids=["DATA", "BDAT"])
    def test_neverResent(self, clock: Clock, chunking: bool) -> None:
        """
        The send fails with L{ConnectionLostError} whose result leaves the
        recipient C{"unknown"} (never reported delivered), and the message
        is not sent again although C{sendmail} retries (C{retries=2}, its
        default): one connection, one MAIL.

        Twisted is vulnerable: C{SMTPSenderFactory._processConnectionError}
        rewinds the file and reconnects while retries are left (5 by
        default) whenever the connection is lost before C{sentMail}, so a
        message whose final reply was lost is delivered again.
        """
        server = ScriptedServer(clock, chunking=chunking)
        server.rule("END-OF-DATA", drop=True)
        run = send(clock, server, retries=2, run=3600)
        error = run.error(ConnectionLostError)
        assert error.result is not None
        assert error.result.recipients[RECIPIENT].status == "unknown"
        assert error.result.accepted == ()
        assert server.connectAttempts == 1
        assert verbs(server).count("MAIL") == 1
        assert server.outbox == []


# -- timeouts ---------------------------------------------------------------------

TIMEOUT = 5.0


def _stall(verb: str, **rule: Any) -> Callable[[ScriptedServer], None]:
    def script(server: ScriptedServer) -> None:
        server.rule(verb, **rule)

    return script


STALLS: dict[str, tuple[Callable[[ScriptedServer], None], dict[str, Any]]] = {
    "greeting": (_stall("GREETING", stall=True), {}),
    "EHLO": (_stall("EHLO", stall=True), {}),
    "STARTTLS": (_stall("STARTTLS", stall=True), {"tls": "starttls"}),
    "AUTH": (
        _stall("AUTH", stall=True),
        {
            "tls": "none",
            "username": USER,
            "password": PASSWORD,
            "allowPlaintextAuth": True,
        },
    ),
    "MAIL": (_stall("MAIL", stall=True), {}),
    "RCPT": (_stall("RCPT", stall=True), {}),
    "DATA": (_stall("DATA", stall=True), {}),
    "data-block": (_stall("DATA", stallAfter=0), {}),
    "final-reply": (_stall("END-OF-DATA", stall=True), {}),
    "BDAT": (_stall("BDAT", stall=True), {"chunking": True}),
    "final-BDAT-reply": (_stall("END-OF-DATA", stall=True), {"chunking": True}),
}


class TestTimeouts:
    """
    A server that stops answering, or answers too slowly.
    """

    @pytest.mark.parametrize("stage", list(STALLS), ids=list(STALLS))
    def test_stall(self, clock: Clock, certificates: Certificates, stage: str) -> None:
        """
        With C{timeout=5}, a server that stalls at any step makes the send
        fail with L{SMTPTimeoutError} within 5 seconds of the fake clock,
        once, and the connection is closed.

        Twisted is vulnerable by default: C{twisted.mail.smtp.sendmail}
        builds its C{SMTPSenderFactory} with C{timeout=None}, so
        C{TimeoutMixin} never fires and a stalled server holds the send
        forever.
        """
        script, options = STALLS[stage]
        options = dict(options)
        chunking = options.pop("chunking", False)
        server = ScriptedServer(
            clock,
            chunking=chunking,
            tlsOptions=certificates[1].options(),
            credentials=CREDENTIALS,
        )
        script(server)
        options.setdefault("tls", "opportunistic")
        if options["tls"] == "opportunistic":
            server.stripCapabilities = [b"STARTTLS"]
        run = send(
            clock,
            server,
            certificates=certificates,
            timeout=TIMEOUT,
            run=TIMEOUT,
            **options,
        )
        run.error(SMTPTimeoutError)
        assert 0 < run.firedAt <= TIMEOUT
        runFor(clock, 600)
        assert len(run.results) == 1
        assert not server.connections[0].isOpen
        assert server.outbox == []

    def test_stallAtQuit(self, clock: Clock) -> None:
        """
        A server that delivers the message and then never answers QUIT:
        the send succeeds as soon as the final reply arrives (the outcome
        is known), and the client closes the connection itself within the
        timeout.

        Twisted is vulnerable by default: with no timeout
        (C{timeout=None}), C{_disconnectFromServer} waits for the QUIT
        reply forever and the connection stays open.
        """
        server = ScriptedServer(clock)
        server.rule("QUIT", stall=True)
        run = send(clock, server, timeout=TIMEOUT, run=TIMEOUT)
        assert run.value().accepted == (RECIPIENT,)
        assert run.firedAt == 0
        [record] = server.connections
        assert not record.isOpen
        assert record.closedAt is not None and record.closedAt <= TIMEOUT
        assert len(server.outbox) == 1

    def test_slowServer(self, clock: Clock) -> None:
        """
        A server that sends one byte per second never gets a reply
        finished within 5 seconds: the send fails with
        L{SMTPTimeoutError} at 5 seconds, although a byte arrives every
        second (the timeout bounds the whole reply, not each byte).

        Twisted is partly vulnerable: C{SMTPClient.lineReceived} calls
        C{resetTimeout} on every line (and C{transformChunk} on every
        chunk), so a server that sends a long multi-line reply one line
        at a time, each line within the timeout, holds it forever (see
        L{test_slowMultiLineReply}).
        """
        server = ScriptedServer(clock, byteDelay=1.0)
        run = send(clock, server, timeout=TIMEOUT, run=60)
        error = run.error(SMTPTimeoutError)
        assert error.phase == "greeting"
        assert run.firedAt == TIMEOUT
        assert server.outbox == []

    def test_slowMultiLineReply(self, clock: Clock) -> None:
        """
        A slow EHLO reply whose every line arrives within the timeout but
        whose whole takes far longer still fails the send within 5
        seconds of the EHLO command: the wait is per reply, not per line.

        Twisted is vulnerable: C{SMTPClient.lineReceived} calls
        C{resetTimeout} for each line, continuation lines included.
        """
        server = ScriptedServer(clock, greeting=b"220 x", byteDelay=0.5)
        server.rule("EHLO", raw=b"250-a\r\n" * 40 + b"250 b\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=600)
        error = run.error(SMTPTimeoutError)
        assert error.phase == "EHLO"
        greeted = len(b"220 x\r\n") * 0.5
        assert run.firedAt <= greeted + TIMEOUT + 0.5
        assert verbs(server) == ["EHLO"]

    def test_slowButInTime(self, clock: Clock) -> None:
        """
        A slow server whose every reply arrives within the timeout is
        served normally (the timeout is not a bound on the session).

        Twisted is not vulnerable (nothing to attack).
        """
        server = ScriptedServer(clock, byteDelay=0.05)
        run = send(clock, server, timeout=TIMEOUT, run=600)
        assert run.value().accepted == (RECIPIENT,)
        assert run.firedAt > TIMEOUT
        assert len(server.outbox) == 1


# -- malformed replies --------------------------------------------------------------


@attrs.frozen
class Malformed:
    """
    One malformed-reply case: what to script, and what must happen.

    @ivar verb: the rule's verb (C{GREETING} or a command).
    @ivar raw: the bytes the server sends instead of its reply.
    @ivar before: the commands the server must have received, all of
        them (nothing after the violation).
    @ivar ok: whether the send must succeed (the reply is tolerated).
    """

    verb: str
    raw: bytes
    before: tuple[str, ...]
    ok: bool = False


PIPELINED = ("EHLO", "MAIL", "RCPT", "DATA")
MALFORMED = {
    "oversized-line": Malformed("GREETING", b"220 " + b"x" * 70_000 + b"\r\n", ()),
    "mismatched-multiline-greeting": Malformed(
        "GREETING", b"220-mx.test\r\n221 b\r\n", ()
    ),
    "mismatched-multiline-ehlo": Malformed(
        "EHLO", b"250-mx.test\r\n251 b\r\n", ("EHLO",)
    ),
    "non-digit-code": Malformed("GREETING", b"2x0 mx.test\r\n", ()),
    "short-code": Malformed("GREETING", b"22\r\n", ()),
    "code-not-allowed-for-ehlo": Malformed("EHLO", b"354 go ahead\r\n", ("EHLO",)),
    "250-to-DATA": Malformed("DATA", b"250 2.0.0 ok\r\n", PIPELINED),
    "long-but-legal-line": Malformed(
        "GREETING", b"220 " + b"x" * 10_240 + b"\r\n", (*PIPELINED, "QUIT"), ok=True
    ),
    "non-ascii-text": Malformed(
        "GREETING",
        b"220 mx.test caf\xc3\xa9 \xff\xfe\r\n",
        (*PIPELINED, "QUIT"),
        ok=True,
    ),
}


class TestMalformedReplies:
    """
    Replies that are not SMTP, or not the reply the command allows.
    """

    @pytest.mark.parametrize("case", list(MALFORMED), ids=list(MALFORMED))
    def test_malformed(self, clock: Clock, case: str) -> None:
        """
        A malformed reply (a line over 64 KiB, a multi-line reply whose
        codes differ, a code that is not three digits, a code the command
        does not allow, a 250 to DATA) ends the session with
        L{SMTPProtocolError}: the Deferred fires once, nothing is sent
        after the violation, nothing is read as delivered.  A long line
        within the limit, and non-ASCII text, are tolerated.

        Twisted is vulnerable to the mismatched multi-line reply:
        C{SMTPClient.lineReceived} parses each line's code on its own and
        the last line's code decides (C{251} accepted as success after
        C{250-}); a reply code it does not expect goes to
        C{_failresponse} rather than failing the session.  It refuses a
        non-numeric code (C{int(line[:3])} raises: C{SMTPProtocolError}),
        and its C{LineReceiver} drops the connection on a line over
        C{MAX_LENGTH} (16 KiB).
        """
        row = MALFORMED[case]
        server = ScriptedServer(clock)
        server.rule(row.verb, raw=row.raw)
        run = send(clock, server, timeout=TIMEOUT, run=60)
        if row.ok:
            assert run.value().accepted == (RECIPIENT,)
            assert len(server.outbox) == 1
        else:
            run.error(SMTPProtocolError)
            assert server.outbox == []
        assert tuple(verbs(server)) == row.before

    def test_bareLF(self, clock: Clock) -> None:
        """
        Reply lines ended by a bare LF are read as lines (a trailing CR is
        dropped), as smtplib and aiosmtplib read them: a decided leniency,
        documented on the security page.  It gives a server nothing it
        could not do with CRLF, and it is no way around the other rules: a
        bare-LF line behind the greeting, sent before EHLO was, is still a
        reply before its command.

        Twisted is not vulnerable, but it does not interoperate: its
        C{LineReceiver} splits on CRLF only, so a bare-LF reply never
        completes and the send waits until the timeout.
        """
        server = ScriptedServer(clock)
        server.rule("GREETING", raw=b"220 mx.test ESMTP\n")
        server.rule("EHLO", raw=b"250-mx.test\n250-8BITMIME\r\n250 SIZE 1000\n")
        server.rule("MAIL", raw=b"250 2.1.0 ok\r\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        assert run.value().accepted == (RECIPIENT,)
        assert len(server.outbox) == 1

        server = ScriptedServer(clock)
        server.rule("GREETING", raw=b"220 mx.test ESMTP\n250 injected\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        run.error(SMTPProtocolError)
        assert verbs(server) == []

    def test_replyBeforeItsCommand(self, clock: Clock) -> None:
        """
        A reply that arrived before its command was sent (here a
        C{250} in the same segment as the greeting) answers nothing the
        server has read: the session ends with L{SMTPProtocolError} before
        EHLO leaves (it was still in the outbox), so nothing is sent.

        Twisted is vulnerable: it has no record of outstanding commands
        (C{_expected}/C{_okresponse} are set when a command is sent), so
        C{LineReceiver} hands the buffered line to the handler of the EHLO
        just sent, and every later reply answers the wrong command.
        """
        server = ScriptedServer(clock)
        server.rule("GREETING", raw=b"220 mx.test ESMTP\r\n250 injected\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        error = run.error(SMTPProtocolError)
        assert "reply before EHLO was sent" in str(error)
        assert verbs(server) == []

    def test_replyBeforeTheDataWasSent(self, clock: Clock) -> None:
        """
        A forged final reply in the same segment as the C{354} (a man in
        the middle claiming the message was queued before it was sent) is
        a reply before its command: the session ends with
        L{SMTPProtocolError}, the message is never written, and the
        recipient is not reported as delivered.

        Twisted is vulnerable: C{SMTPClient} sends the message from its
        C{354} handler and hands the buffered C{250} to the handler of the
        final dot, so the send succeeds whatever the server makes of the
        message.
        """
        server = ScriptedServer(clock)
        server.rule("DATA", reply=b"354 go ahead", extra=b"250 2.0.0 queued\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        error = run.error(SMTPProtocolError)
        assert "reply before END-OF-DATA was sent" in str(error)
        assert error.result.recipients[RECIPIENT].status == "deferred"
        assert error.result.accepted == ()
        assert server.outbox == []
        assert verbs(server) == list(PIPELINED)

    def test_pipelinedRepliesInOneSegment(self, clock: Clock) -> None:
        """
        Replies to commands that did leave may come in one segment (a
        server answering a pipelined MAIL, RCPT and DATA at once): that is
        not a reply before its command, and the message is delivered.

        Twisted does not pipeline, so this case does not arise there.
        """
        server = ScriptedServer(clock)
        run = send(clock, server, timeout=TIMEOUT, run=60)
        assert run.value().accepted == (RECIPIENT,)
        assert len(server.outbox) == 1

    def test_closingBeforeEHLOWasSent(self, clock: Clock) -> None:
        """
        A one-line C{421} behind the greeting, before EHLO was sent, is a
        server closing the session, which RFC 5321 section 3.8 allows at
        any time: L{ServerRefusedSessionError}, and nothing but a QUIT is
        sent (no EHLO).  A C{221} before our QUIT left ends the session we
        were ending anyway: the message stays delivered.

        Twisted is vulnerable to the first: it hands the C{421} to the
        EHLO it just sent, whose failure handler sends HELO on the closing
        connection (or, when it requires TLS or AUTH, reports
        C{EHLORequiredError}, "server does not support ESMTP").
        """
        server = ScriptedServer(clock)
        server.rule("GREETING", raw=b"220 mx.test\r\n421 4.3.2 shutting down\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        error = run.error(ServerRefusedSessionError)
        assert error.reply.code == 421
        assert verbs(server) == ["QUIT"]

        server = ScriptedServer(clock)
        server.rule("END-OF-DATA", extra=b"221 2.0.0 bye\r\n")
        run = send(clock, server, timeout=TIMEOUT, run=60)
        assert run.value().accepted == (RECIPIENT,)
        assert len(server.outbox) == 1

    def test_unsolicitedWhileIdle(self, clock: Clock) -> None:
        """
        A reply sent while the client waits for nothing (a session ready
        and idle) ends the session as a protocol violation: the
        connection is closed, nothing more is sent, and the next send
        fails with L{SMTPProtocolError}.

        Twisted is vulnerable: with no FIFO of outstanding commands,
        C{SMTPClient.lineReceived} hands the reply to whatever
        C{_okresponse} was last set, which acts on it (sends the next
        command).
        """
        server = ScriptedServer(clock)
        client = connected(clock, MemoryEndpoint(clock, server))
        closed: list[None] = []
        client.whenClosed().addCallback(closed.append)
        before = verbs(server)
        assert server.unsolicited(b"250 2.0.0 surprise") == 1
        settle(clock)
        assert closed == [None]
        assert verbs(server) == before
        results: list[object] = []
        client.send(SENDER, [RECIPIENT], MESSAGE).addBoth(results.append)
        settle(clock)
        [failure] = results
        assert isinstance(failure, Failure)
        assert failure.check(SMTPProtocolError)
        assert server.outbox == []

    def test_everyByteApart(self, clock: Clock) -> None:
        """
        A reply split at every byte (each byte its own segment) is a legal
        reply: the send succeeds.

        Twisted is not vulnerable (its C{LineReceiver} buffers partial
        lines too).
        """
        server = ScriptedServer(clock, splitReplies=1)
        run = send(clock, server, timeout=TIMEOUT)
        assert run.value().accepted == (RECIPIENT,)
        assert len(server.outbox) == 1
        assert server.connections[0].clientTransport is not None
        assert server.connections[0].serverTransport is not None
