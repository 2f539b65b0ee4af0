"""
Interop tests: mailclient against the aiosmtpd peer (C{.ci/peers/
aiosmtpd_server.py}), which stores the exact DATA bytes it received and the
envelope of every message, so what arrived can be compared byte for byte.
"""

from __future__ import annotations

import pytest

from mailclient import sendmail
from mailclient.errors import (
    AuthenticationFailedError,
    MessageRefusedError,
    SenderRefusedError,
    TLSHandshakeError,
)

from .conftest import Peer, asyncTest, buildMessage, resultOf, uniqueToken

pytestmark = pytest.mark.interop

SENDER = "sender@example.com"
TIMEOUT = 10.0
# aiosmtpd writes the message before it answers 250, so a short wait suffices
SETTLE = 0.1


@pytest.fixture(autouse=True)
def _emptyMaildir(aiosmtpd_peer: Peer) -> None:
    aiosmtpd_peer.clearMaildir()


@asyncTest
async def test_submissionReportsEveryRecipient(aiosmtpd_peer: Peer) -> None:
    """
    On the submission port with STARTTLS and AUTH PLAIN, a message to one
    good, one refused and one deferred recipient reaches the good one byte
    for byte, every outcome is reported, and the envelope the server
    recorded shows the authenticated user, TLS and only the accepted
    recipient.
    """
    token = uniqueToken()
    recipients = ["ok@example.com", "reject@example.com", "tempfail@example.com"]
    message = buildMessage(token, SENDER, recipients)

    result = await aiosmtpd_peer.submit(recipients, message)

    assert [
        (r.address, r.status, r.code, r.enhancedStatus, r.phase) for r in result
    ] == [
        ("ok@example.com", "accepted", 250, "2.0.0", "END-OF-DATA"),
        ("reject@example.com", "rejected", 550, "5.1.1", "RCPT"),
        ("tempfail@example.com", "deferred", 450, "4.2.1", "RCPT"),
    ]
    assert result.session is not None
    assert result.session.authMechanism == "PLAIN"
    assert result.session.tlsVersion is not None

    [delivered] = await aiosmtpd_peer.waitForMessages(1, match=token.encode())
    assert delivered.data == message
    envelope = delivered.envelope
    assert envelope is not None
    assert envelope["queue_id"] == result.queueId
    assert envelope["mail_from"] == SENDER
    assert envelope["rcpt_to"] == ["ok@example.com"]
    assert envelope["auth_user"] == aiosmtpd_peer.username
    assert envelope["tls"]["version"] == result.session.tlsVersion


@asyncTest
async def test_implicitTLSWithAuthentication(aiosmtpd_peer: Peer) -> None:
    """
    On the implicit-TLS port, the session is TLS from the first byte, AUTH
    succeeds and the message arrives unchanged.
    """
    token = uniqueToken()
    message = buildMessage(token, SENDER, ["ok@example.com"])

    result = await sendmail(
        aiosmtpd_peer.host,
        SENDER,
        ["ok@example.com"],
        message,
        port=aiosmtpd_peer.smtpsPort,
        username=aiosmtpd_peer.username,
        password=aiosmtpd_peer.password,
        tls="implicit",
        tlsOptions=aiosmtpd_peer.tlsOptions(),
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.accepted == ("ok@example.com",)
    assert result.session is not None and result.session.tlsVersion is not None
    [delivered] = await aiosmtpd_peer.waitForMessages(1, match=token.encode())
    assert delivered.data == message
    assert delivered.envelope is not None
    assert delivered.envelope["auth_user"] == aiosmtpd_peer.username
    assert delivered.envelope["port"] == aiosmtpd_peer.smtpsPort


@asyncTest
async def test_wrongPassword(aiosmtpd_peer: Peer) -> None:
    """
    A wrong password fails the send with L{AuthenticationFailedError} and
    code 535; nothing is delivered.
    """
    token = uniqueToken()
    with pytest.raises(AuthenticationFailedError) as caught:
        await sendmail(
            aiosmtpd_peer.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=aiosmtpd_peer.submissionPort,
            username=aiosmtpd_peer.username,
            password="not-the-password",
            tls="starttls",
            tlsOptions=aiosmtpd_peer.tlsOptions(),
            timeout=TIMEOUT,
            retries=0,
        )
    assert caught.value.code == 535
    await aiosmtpd_peer.assertNothingDelivered(token.encode(), settle=SETTLE)


@asyncTest
async def test_submissionWithoutTLS(aiosmtpd_peer: Peer) -> None:
    """
    With C{tls="none"} and no credentials, the submission port refuses MAIL
    with 530 (a reply without an enhanced status code here); the send fails
    with L{SenderRefusedError}.
    """
    token = uniqueToken()
    with pytest.raises(SenderRefusedError) as caught:
        await sendmail(
            aiosmtpd_peer.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=aiosmtpd_peer.submissionPort,
            tls="none",
            timeout=TIMEOUT,
            retries=0,
        )
    assert caught.value.code == 530
    outcome = resultOf(caught.value).recipients["ok@example.com"]
    assert (outcome.status, outcome.phase) == ("rejected", "MAIL")
    await aiosmtpd_peer.assertNothingDelivered(token.encode(), settle=SETTLE)


@pytest.mark.parametrize("port", ["submission", "smtps"])
@pytest.mark.parametrize("problem", ["wrong-hostname", "untrusted-ca"])
@asyncTest
async def test_certificateVerificationFailure(
    aiosmtpd_peer: Peer, port: str, problem: str
) -> None:
    """
    A certificate for another name, or from a CA we do not trust, fails the
    send with L{TLSHandshakeError} before anything is sent, over STARTTLS and
    implicit TLS alike.
    """
    token = uniqueToken()
    if problem == "wrong-hostname":
        options = aiosmtpd_peer.tlsOptions(hostname="wrong.example")
    else:
        options = aiosmtpd_peer.tlsOptions(trusted=False)
    with pytest.raises(TLSHandshakeError):
        await sendmail(
            aiosmtpd_peer.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=aiosmtpd_peer.ports[port],
            username=aiosmtpd_peer.username,
            password=aiosmtpd_peer.password,
            tls="starttls" if port == "submission" else "implicit",
            tlsOptions=options,
            timeout=TIMEOUT,
            retries=0,
        )
    await aiosmtpd_peer.assertNothingDelivered(token.encode(), settle=SETTLE)


@pytest.mark.parametrize(
    ("sender", "code", "status"),
    [
        ("eod-reject@example.com", 554, "rejected"),
        ("eod-tempfail@example.com", 451, "deferred"),
    ],
)
@asyncTest
async def test_refusalAfterData(
    aiosmtpd_peer: Peer, sender: str, code: int, status: str
) -> None:
    """
    A refusal after the data fails the send with L{MessageRefusedError}; the
    recipient accepted at RCPT is rejected or deferred by the final reply.
    """
    token = uniqueToken()
    with pytest.raises(MessageRefusedError) as caught:
        await aiosmtpd_peer.submit(
            ["ok@example.com"],
            buildMessage(token, sender, ["ok@example.com"]),
            sender,
        )
    assert caught.value.code == code
    outcome = resultOf(caught.value).recipients["ok@example.com"]
    assert (outcome.status, outcome.code, outcome.phase) == (
        status,
        code,
        "END-OF-DATA",
    )
    await aiosmtpd_peer.assertNothingDelivered(token.encode(), settle=SETTLE)


@asyncTest
async def test_twoMessagesInARow(aiosmtpd_peer: Peer) -> None:
    """
    Two sends one after the other both arrive intact, with different queue
    ids.
    """
    tokens = [uniqueToken(), uniqueToken()]
    messages = [buildMessage(t, SENDER, ["ok@example.com"]) for t in tokens]

    results = [await aiosmtpd_peer.submit(["ok@example.com"], m) for m in messages]

    assert [r.accepted for r in results] == [("ok@example.com",)] * 2
    assert results[0].queueId != results[1].queueId
    for token, message in zip(tokens, messages, strict=True):
        [delivered] = await aiosmtpd_peer.waitForMessages(1, match=token.encode())
        assert delivered.data == message


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            b".first line starts with a dot\r\n.\r\n..\r\n...\r\ncaf\xc3\xa9 TOKEN\r\n",
            b".first line starts with a dot\r\n.\r\n..\r\n...\r\ncaf\xc3\xa9 TOKEN\r\n",
            id="dots-and-8bit",
        ),
        pytest.param(
            b"bare LF\nbare CR\rdot after bare LF\n.\nTOKEN\r\n",
            b"bare LF\r\nbare CR\r\ndot after bare LF\r\n.\r\nTOKEN\r\n",
            id="bare-line-ends-become-crlf",
        ),
        pytest.param(
            b"Subject: big TOKEN\r\n\r\n" + (b"." + b"x" * 76 + b"\r\n") * 8000,
            b"Subject: big TOKEN\r\n\r\n" + (b"." + b"x" * 76 + b"\r\n") * 8000,
            id="600k-of-dotted-lines",
        ),
    ],
)
@asyncTest
async def test_exactBytes(aiosmtpd_peer: Peer, given: bytes, expected: bytes) -> None:
    """
    What the server stores is what was given, after dot transparency: lines
    that start with dots (the very first line too) survive unchanged, and
    bare CR or LF become CRLF, so that no line can end the data early.
    (Plain port, opportunistic TLS, no AUTH.)
    """
    token = uniqueToken().encode()
    given = given.replace(b"TOKEN", token)
    expected = expected.replace(b"TOKEN", token)

    result = await sendmail(
        aiosmtpd_peer.host,
        SENDER,
        ["ok@example.com"],
        given,
        port=aiosmtpd_peer.smtpPort,
        tls="opportunistic",
        tlsOptions=aiosmtpd_peer.tlsOptions(),
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.accepted == ("ok@example.com",)
    [delivered] = await aiosmtpd_peer.waitForMessages(1, match=token)
    assert delivered.data == expected
