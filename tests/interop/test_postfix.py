"""
Interop tests: mailclient against a real Postfix (private instance started by
C{.ci/peers/start.sh}, with Cyrus SASL, STARTTLS, implicit TLS and test
triggers that refuse chosen addresses).
"""

from __future__ import annotations

import pytest

from mailclient import sendmail
from mailclient.errors import (
    AllRecipientsRefusedError,
    AuthenticationFailedError,
    MessageRefusedError,
    SenderRefusedError,
    SendFailedError,
    TLSHandshakeError,
)

from .conftest import Peer, asyncTest, buildMessage, headerValue, resultOf, uniqueToken

pytestmark = pytest.mark.interop

SENDER = "sender@example.com"
TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def _emptyMaildir(postfix: Peer) -> None:
    postfix.clearMaildir()


@asyncTest
async def test_submissionReportsEveryRecipient(postfix: Peer) -> None:
    """
    On the submission port with STARTTLS and AUTH PLAIN, a message to one
    good, one refused (550 5.1.1) and one deferred (450 4.2.1) recipient is
    accepted for the good one only, each outcome is reported with its code,
    enhanced code and phase, the queue id is the one Postfix logged in its
    Received header, and the delivered bytes are exactly the bytes given
    (dot-stuffing undone, attachment intact).
    """
    token = uniqueToken()
    recipients = ["ok@example.com", "reject@example.com", "tempfail@example.com"]
    message = buildMessage(token, SENDER, recipients)

    result = await postfix.submit(recipients, message)

    assert list(result.recipients) == recipients
    ok = result.recipients["ok@example.com"]
    assert (ok.status, ok.code) == ("accepted", 250)
    rejected = result.recipients["reject@example.com"]
    assert (rejected.status, rejected.code) == ("rejected", 550)
    assert rejected.enhancedStatus == "5.1.1"
    assert rejected.phase == "RCPT"
    assert "test trigger" in rejected.text
    deferred = result.recipients["tempfail@example.com"]
    assert (deferred.status, deferred.code) == ("deferred", 450)
    assert deferred.enhancedStatus == "4.2.1"
    assert deferred.phase == "RCPT"
    assert result.reply is not None and result.reply.code == 250
    assert result.queueId
    assert result.session is not None
    assert result.session.tlsVersion is not None
    assert result.session.tlsVersion.startswith("TLSv1.")
    assert result.session.authMechanism == "SCRAM-SHA-256"

    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message
    received = headerValue(delivered.data, "Received") or ""
    # ESMTPSA: Postfix saw TLS (S) and authentication (A) on this session
    assert f"with ESMTPSA id {result.queueId}" in received
    assert headerValue(delivered.data, "Delivered-To") == "ok@example.com"


@asyncTest
async def test_implicitTLSWithAuthentication(postfix: Peer) -> None:
    """
    On the implicit-TLS port, the session is TLS from the first byte, AUTH
    succeeds and the message is delivered.
    """
    token = uniqueToken()
    message = buildMessage(token, SENDER, ["ok@example.com"])

    result = await sendmail(
        postfix.host,
        SENDER,
        ["ok@example.com"],
        message,
        port=postfix.smtpsPort,
        username=postfix.username,
        password=postfix.password,
        tls="implicit",
        tlsOptions=postfix.tlsOptions(),
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.accepted == ("ok@example.com",)
    assert result.session is not None
    assert result.session.tlsVersion is not None
    assert result.session.authMechanism is not None
    [delivered] = await postfix.waitForMessages(1, match=token.encode())
    assert delivered.body == message


@asyncTest
async def test_wrongPassword(postfix: Peer) -> None:
    """
    A wrong password fails the send with L{AuthenticationFailedError} carrying
    Postfix's 535, and nothing is delivered.
    """
    token = uniqueToken()
    with pytest.raises(AuthenticationFailedError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=postfix.submissionPort,
            username=postfix.username,
            password="not-the-password",
            tls="starttls",
            tlsOptions=postfix.tlsOptions(),
            timeout=TIMEOUT,
            retries=0,
        )
    assert caught.value.code == 535
    await postfix.assertNothingDelivered(token.encode())


@asyncTest
async def test_submissionWithoutTLS(postfix: Peer) -> None:
    """
    With C{tls="none"} and no credentials, the submission port refuses MAIL
    with 530 (STARTTLS required); the send fails with L{SenderRefusedError}
    (a L{SendFailedError}), and the recipient's outcome is that refusal, in
    the MAIL phase.
    """
    token = uniqueToken()
    with pytest.raises(SendFailedError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=postfix.submissionPort,
            tls="none",
            timeout=TIMEOUT,
            retries=0,
        )
    error = caught.value
    assert isinstance(error, SenderRefusedError)
    assert error.code == 530
    outcome = resultOf(error).recipients["ok@example.com"]
    assert (outcome.status, outcome.code, outcome.phase) == ("rejected", 530, "MAIL")
    await postfix.assertNothingDelivered(token.encode())


@pytest.mark.parametrize("port", ["submission", "smtps"])
@pytest.mark.parametrize("problem", ["wrong-hostname", "untrusted-ca"])
@asyncTest
async def test_certificateVerificationFailure(
    postfix: Peer, port: str, problem: str
) -> None:
    """
    When the server's certificate does not verify (it is not for the name we
    expect, or it is issued by a CA we do not trust), the send fails with
    L{TLSHandshakeError}, over STARTTLS and implicit TLS alike, and nothing
    is delivered.
    """
    token = uniqueToken()
    if problem == "wrong-hostname":
        options = postfix.tlsOptions(hostname="wrong.example")
    else:
        options = postfix.tlsOptions(trusted=False)
    with pytest.raises(TLSHandshakeError) as caught:
        await sendmail(
            postfix.host,
            SENDER,
            ["ok@example.com"],
            buildMessage(token, SENDER, ["ok@example.com"]),
            port=postfix.ports[port],
            username=postfix.username,
            password=postfix.password,
            tls="starttls" if port == "submission" else "implicit",
            tlsOptions=options,
            timeout=TIMEOUT,
            retries=0,
        )
    if problem == "wrong-hostname":
        assert "wrong.example" in caught.value.reason
    await postfix.assertNothingDelivered(token.encode())


@pytest.mark.parametrize(
    ("sender", "code", "status"),
    [
        ("eod-reject@example.com", 554, "rejected"),
        ("eod-tempfail@example.com", 451, "deferred"),
    ],
)
@asyncTest
async def test_refusalAfterData(
    postfix: Peer, sender: str, code: int, status: str
) -> None:
    """
    A refusal of the message after its data fails the send with
    L{MessageRefusedError} carrying the code; the recipient accepted at RCPT
    ends up rejected (5xx) or deferred (4xx) by the final reply.
    """
    token = uniqueToken()
    with pytest.raises(MessageRefusedError) as caught:
        await postfix.submit(
            ["ok@example.com"],
            buildMessage(token, sender, ["ok@example.com"]),
            sender,
        )
    error = caught.value
    assert error.code == code
    assert error.isTransient == (code < 500)
    outcome = resultOf(error).recipients["ok@example.com"]
    assert (outcome.status, outcome.code) == (status, code)
    assert outcome.phase == "END-OF-DATA"
    await postfix.assertNothingDelivered(token.encode())


@pytest.mark.parametrize(
    ("sender", "code", "status"),
    [
        ("reject@example.com", 550, "rejected"),
        ("tempfail@example.com", 451, "deferred"),
    ],
)
@asyncTest
async def test_senderRefused(
    postfix: Peer, sender: str, code: int, status: str
) -> None:
    """
    A refused MAIL FROM fails the send with L{SenderRefusedError} and the
    server's code, transient for 4xx; the recipient shares the sender's fate,
    decided in the MAIL phase.  (Plain port, opportunistic TLS, no AUTH.)
    """
    with pytest.raises(SenderRefusedError) as caught:
        await sendmail(
            postfix.host,
            sender,
            ["ok@example.com"],
            buildMessage(uniqueToken(), sender, ["ok@example.com"]),
            port=postfix.smtpPort,
            tls="opportunistic",
            tlsOptions=postfix.tlsOptions(),
            timeout=TIMEOUT,
            retries=0,
        )
    assert caught.value.code == code
    assert caught.value.isTransient == (code < 500)
    outcome = resultOf(caught.value).recipients["ok@example.com"]
    assert (outcome.status, outcome.code, outcome.phase) == (status, code, "MAIL")


@asyncTest
async def test_everyRecipientRefused(postfix: Peer) -> None:
    """
    When every recipient is refused, the send fails with
    L{AllRecipientsRefusedError} holding each recipient's outcome, and no
    data is sent.
    """
    token = uniqueToken()
    recipients = ["reject@example.com", "tempfail@example.com"]
    with pytest.raises(AllRecipientsRefusedError) as caught:
        await postfix.submit(recipients, buildMessage(token, SENDER, recipients))
    outcomes = resultOf(caught.value).recipients
    assert [(r.status, r.code) for r in outcomes.values()] == [
        ("rejected", 550),
        ("deferred", 450),
    ]
    assert resultOf(caught.value).reply is None
    assert not caught.value.isTransient
    await postfix.assertNothingDelivered(token.encode())


@asyncTest
async def test_twoMessagesInARow(postfix: Peer) -> None:
    """
    Two sends one after the other both succeed, get different queue ids, and
    both messages arrive intact.
    """
    tokens = [uniqueToken(), uniqueToken()]
    messages = [buildMessage(t, SENDER, ["ok@example.com"]) for t in tokens]

    results = [await postfix.submit(["ok@example.com"], m) for m in messages]

    assert [r.accepted for r in results] == [("ok@example.com",)] * 2
    assert results[0].queueId and results[1].queueId
    assert results[0].queueId != results[1].queueId
    for token, message in zip(tokens, messages, strict=True):
        [delivered] = await postfix.waitForMessages(1, match=token.encode())
        assert delivered.body == message
