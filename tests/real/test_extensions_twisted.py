"""
Real-reactor tests of the envelope extensions against Twisted's own ESMTP
server on 127.0.0.1, which offers none of SMTPUTF8, 8BITMIME, SIZE,
PIPELINING or CHUNKING: the client's fallbacks (IDNA A-labels, 7-bit
re-encoding, refusing what cannot be carried) and C{verifyConnection}.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Callable
from email.message import EmailMessage

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.ssl import optionsForClientTLS

from mailclient import SendResult, sendmail, verifyConnection
from mailclient.errors import AuthenticationFailedError, UnsupportedFeatureError

from .conftest import PKI, TestServer

MESSAGE = b"Subject: hi\r\n\r\nbody\r\n"
StartServer = Callable[..., Deferred[TestServer]]


def clientCommands(transcript: tuple[tuple[str, str], ...], verb: str) -> list[str]:
    """
    The client's lines in C{transcript} that start with C{verb}.
    """
    return [line for side, line in transcript if side == "C" and line.startswith(verb)]


async def send(
    pki: PKI,
    server: TestServer,
    sender: str,
    recipients: list[str],
    message: object,
) -> SendResult:
    """
    Send over STARTTLS (verified against the test CA) to C{server}.
    """
    return await sendmail(
        "localhost",
        sender,
        recipients,
        message,
        port=server.port,
        tls="starttls",
        tlsOptions=optionsForClientTLS("localhost", trustRoot=pki.ca),
        timeout=10,
        retries=0,
    )


@pytest_twisted.ensureDeferred
async def test_idnDomainsGoAsALabels(pki: PKI, startServer: StartServer) -> None:
    """
    Without SMTPUTF8, IDN domains of the sender and the recipients go as
    IDNA A-labels (UTS #46, non-transitional: C{ß} stays C{ß}), an A-label
    given as such is unchanged, and the server records those ASCII
    addresses; the results are keyed by the addresses as given and do not
    list SMTPUTF8.
    """
    server = await startServer("starttls")
    recipients = [
        "user@bücher.example",
        "strasse@faß.example",
        "x@xn--bcher-kva.example",
    ]

    result = await send(pki, server, "from@bücher.example", recipients, MESSAGE)

    assert result.session is not None
    assert not result.session.capabilities.smtpUTF8
    assert "SMTPUTF8" not in result.extensions
    assert result.accepted == tuple(recipients)
    assert clientCommands(result.transcript, "MAIL") == [
        "MAIL FROM:<from@xn--bcher-kva.example>"
    ]
    assert clientCommands(result.transcript, "RCPT") == [
        "RCPT TO:<user@xn--bcher-kva.example>",
        "RCPT TO:<strasse@xn--fa-hia.example>",
        "RCPT TO:<x@xn--bcher-kva.example>",
    ]
    received = server.received.messages
    assert [(m.sender, m.recipient) for m in received] == [
        (b"from@xn--bcher-kva.example", b"user@xn--bcher-kva.example"),
        (b"from@xn--bcher-kva.example", b"strasse@xn--fa-hia.example"),
        (b"from@xn--bcher-kva.example", b"x@xn--bcher-kva.example"),
    ]
    assert {m.content for m in received} == {MESSAGE}


@pytest.mark.parametrize(
    ("sender", "recipient", "argument"),
    [
        ("from@example.com", "пользователь@example.com", "toAddress"),
        ("отправитель@example.com", "to@example.com", "fromAddress"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_nonAsciiLocalPartRefused(
    pki: PKI,
    startServer: StartServer,
    sender: str,
    recipient: str,
    argument: str,
) -> None:
    """
    A non-ASCII local part (recipient or sender) needs SMTPUTF8, which
    Twisted's server lacks: the send fails with L{UnsupportedFeatureError}
    naming the address, after EHLO and before MAIL, and nothing arrives.
    """
    server = await startServer("starttls")

    with pytest.raises(UnsupportedFeatureError) as caught:
        await send(pki, server, sender, [recipient, "ok@example.com"], MESSAGE)

    error = caught.value
    assert error.argument == argument
    assert error.value in (sender, recipient)
    assert "SMTPUTF8" in error.reason
    assert clientCommands(error.transcript, "EHLO")
    assert clientCommands(error.transcript, "MAIL") == []
    assert error.result is not None
    assert {r.status for r in error.result} == {"not-attempted"}
    assert server.received.messages == []


@pytest_twisted.ensureDeferred
async def test_eightBitEmailMessageDowngraded(
    pki: PKI, startServer: StartServer
) -> None:
    """
    Twisted's server does not offer 8BITMIME (nor SMTPUTF8): an
    C{EmailMessage} with 8-bit text parts and a non-ASCII subject is
    re-encoded to 7 bits (no BODY parameter, 8BITMIME not listed), arrives
    as pure ASCII, and decodes to the same subject and the same text.
    """
    server = await startServer("starttls")
    subject = "Grüße — café"
    text = "naïve café, Grüße, 世界\n.leading dot\n" + "long line é " * 20 + "\n"
    html = "<p>naïve café, 世界</p>\n"
    message = EmailMessage()
    message["From"] = "from@example.com"
    message["To"] = "to@example.com"
    message["Subject"] = subject
    message.set_content(text, cte="8bit")
    message.add_alternative(html, subtype="html", cte="8bit")

    result = await send(pki, server, "from@example.com", ["to@example.com"], message)

    assert result.session is not None
    assert not result.session.capabilities.eightBitMIME
    assert not {"8BITMIME", "SMTPUTF8"} & result.extensions
    assert clientCommands(result.transcript, "MAIL") == ["MAIL FROM:<from@example.com>"]
    [received] = server.received.messages
    assert received.content.isascii()
    parsed = email.message_from_bytes(received.content, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    assert parsed["Subject"] == subject
    plain = parsed.get_body(("plain",))
    rich = parsed.get_body(("html",))
    assert plain is not None and rich is not None
    assert isinstance(plain, EmailMessage) and isinstance(rich, EmailMessage)
    assert plain["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    # the text went over SMTP in CRLF lines, and decodes so
    assert plain.get_content() == text.replace("\n", "\r\n")
    assert rich.get_content() == html.replace("\n", "\r\n")


@pytest_twisted.ensureDeferred
async def test_verifyConnection(pki: PKI, startServer: StartServer) -> None:
    """
    C{verifyConnection} against Twisted's server requiring AUTH: STARTTLS,
    then AUTH over TLS (PLAIN, the strongest it offers), and a
    L{SessionInfo} reporting both; no message is sent.  A wrong password
    fails it with L{AuthenticationFailedError} after one refused AUTH: a
    refused PLAIN is not tried again as LOGIN (one failed login, not two,
    towards an account lockout).
    """
    server = await startServer("starttls", auth=True)
    options = optionsForClientTLS("localhost", trustRoot=pki.ca)

    info = await verifyConnection(
        "localhost",
        port=server.port,
        username="alice",
        password="s3cret",
        tls="starttls",
        tlsOptions=options,
        timeout=10,
    )
    with pytest.raises(AuthenticationFailedError) as caught:
        await verifyConnection(
            "localhost",
            port=server.port,
            username="alice",
            password="wrong",
            tls="starttls",
            tlsOptions=options,
            timeout=10,
        )

    assert info.tlsVersion is not None and info.tlsVersion.startswith("TLS")
    assert info.authMechanism == "PLAIN"
    assert info.extended
    assert info.greeting is not None and info.greeting.code == 220
    assert not info.capabilities.starttls
    assert {"PLAIN", "LOGIN"} <= info.capabilities.authMechanisms
    assert caught.value.code == 535
    # one AUTH for the good password, one for the wrong one
    assert server.received.tlsAtAuth == [True, True]
    assert server.received.messages == []
