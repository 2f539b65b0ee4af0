"""
The L{Mailer} against real servers: a thousand messages over a few reused
connections to Postfix, each delivered exactly once (counted in the
Maildir); retries of only the deferred recipient; a stop that drains; and
a server without PIPELINING (aiosmtpd).
"""

from __future__ import annotations

import re
from collections import Counter
from random import Random
from typing import Any, cast

import pytest
from twisted.internet.defer import gatherResults

from mailclient import Mailer, SendResult
from mailclient.errors import AllRecipientsRefusedError

from .conftest import Peer, asyncTest, uniqueToken

pytestmark = pytest.mark.interop

SENDER = "sender@example.com"


@pytest.fixture(autouse=True)
def _emptyMaildirs(request: pytest.FixtureRequest) -> None:
    """
    Start every test with an empty Maildir on the peer it uses.
    """
    for name in ("postfix", "aiosmtpd_peer"):
        if name in request.fixturenames:
            cast(Peer, request.getfixturevalue(name)).clearMaildir()


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def _message(token: str, number: int) -> bytes:
    """
    A small message that names its run and its number.
    """
    return (
        f"From: {SENDER}\r\nTo: ok@example.com\r\n"
        f"Subject: mailer {token} {number}\r\n"
        f"Message-ID: <{token}.{number}@mailclient.test>\r\n"
        f"X-Mailer-Test: {token} {number}\r\n\r\n"
        f"message {number} of run {token}\r\n.leading dot\r\n"
    ).encode()


def _numbers(peer: Peer, token: str) -> Counter[int]:
    """
    How many delivered files carry each message number of run C{token}.
    """
    pattern = re.compile(rb"X-Mailer-Test: " + token.encode() + rb" (\d+)")
    counts: Counter[int] = Counter()
    for delivered in peer.messages():
        found = pattern.search(delivered.data)
        if found:
            counts[int(found.group(1))] += 1
    return counts


def _postfixMailer(postfix: Peer, **options: Any) -> Mailer:
    """
    A mailer for Postfix's plain port, upgraded with STARTTLS (test CA).
    """
    return Mailer(
        postfix.host,
        port=postfix.smtpPort,
        tls="starttls",
        tlsOptions=postfix.tlsOptions(),
        timeout=20.0,
        reactor=_reactor(),
        **options,
    )


@asyncTest
async def test_thousandMessagesExactlyOnce(postfix: Peer) -> None:
    """
    A thousand messages sent at once through a mailer of four connections
    are each accepted, and each delivered exactly once (one Maildir file per
    message number, none missing, none twice), over no more connections
    than the limit.
    """
    token = uniqueToken()
    mailer = _postfixMailer(postfix, maxConnections=4)
    sends = [
        mailer.send(SENDER, "ok@example.com", _message(token, n)) for n in range(1000)
    ]
    results = cast(list[SendResult], await gatherResults(sends))
    await mailer.stopService()
    assert all(r.accepted == ("ok@example.com",) for r in results)
    assert len({r.queueId for r in results}) == 1000
    stats = mailer.stats
    assert stats.sent == 1000 and stats.messagesSent == 1000
    assert stats.retries == 0
    assert 1 <= stats.connectionsOpened <= 4
    assert stats.connectionsOpen == 0 and stats.queueDepth == 0
    await postfix.waitForMessages(1000, match=token.encode(), timeout=90.0)
    counts = _numbers(postfix, token)
    assert sorted(counts) == list(range(1000))
    assert set(counts.values()) == {1}


@asyncTest
async def test_onlyTheDeferredRecipientIsRetried(postfix: Peer) -> None:
    """
    Postfix defers C{tempfail@} (450) and accepts C{ok@}: the mailer
    retries only C{tempfail@} (every attempt in the result's history), and
    C{ok@} receives the message once.
    """
    token = uniqueToken()
    mailer = _postfixMailer(
        postfix, retries=2, retryBaseDelay=0.05, retryMaxDelay=0.1, random=Random(1)
    )
    result = await mailer.send(
        SENDER, ["ok@example.com", "tempfail@example.com"], _message(token, 1)
    )
    await mailer.stopService()
    assert result.recipients["ok@example.com"].status == "accepted"
    assert result.recipients["tempfail@example.com"].status == "deferred"
    assert result.attempts == 3
    assert [a.recipients for a in result.history] == [
        ("ok@example.com", "tempfail@example.com"),
        ("tempfail@example.com",),
        ("tempfail@example.com",),
    ]
    assert result.history[0].outcome["ok@example.com"].status == "accepted"
    await postfix.waitForMessages(1, match=token.encode())
    await postfix.assertNothingDelivered(b"never", settle=0.5)
    assert _numbers(postfix, token) == Counter({1: 1})


@asyncTest
async def test_deferredOnlyFailsWithEveryAttempt(postfix: Peer) -> None:
    """
    A message whose only recipient stays deferred fails, after the retries,
    with L{AllRecipientsRefusedError} whose result lists every attempt.
    """
    mailer = _postfixMailer(
        postfix, retries=1, retryBaseDelay=0.05, retryMaxDelay=0.1, random=Random(2)
    )
    with pytest.raises(AllRecipientsRefusedError) as caught:
        await mailer.send(SENDER, "tempfail@example.com", _message("x", 1))
    await mailer.stopService()
    result = caught.value.result
    assert result is not None
    assert result.attempts == 2 and len(result.history) == 2
    assert result.recipients["tempfail@example.com"].code == 450


@asyncTest
async def test_stopDrainsSendsInHand(postfix: Peer) -> None:
    """
    Stopping right after queueing fifty messages still sends all of them,
    then closes every connection.
    """
    token = uniqueToken()
    mailer = _postfixMailer(postfix, maxConnections=2)
    sends = [
        mailer.send(SENDER, "ok@example.com", _message(token, n)) for n in range(50)
    ]
    await mailer.stopService()
    results = cast(list[SendResult], await gatherResults(sends))
    assert len(results) == 50 and all(r.accepted for r in results)
    assert mailer.stats.connectionsOpen == 0
    await postfix.waitForMessages(50, match=token.encode(), timeout=30.0)
    assert set(_numbers(postfix, token).values()) == {1}


@asyncTest
async def test_withoutPipelining(aiosmtpd_peer: Peer) -> None:
    """
    Against aiosmtpd, which offers no PIPELINING, a mailer of two
    connections carries a hundred messages, each delivered once.
    """
    token = uniqueToken()
    mailer = Mailer(
        aiosmtpd_peer.host,
        port=aiosmtpd_peer.smtpPort,
        tls="none",
        timeout=20.0,
        reactor=_reactor(),
        maxConnections=2,
    )
    sends = [
        mailer.send(SENDER, "ok@example.com", _message(token, n)) for n in range(100)
    ]
    results = cast(list[SendResult], await gatherResults(sends))
    await mailer.stopService()
    assert all(r.accepted for r in results)
    assert all("PIPELINING" not in r.extensions for r in results)
    assert mailer.stats.connectionsOpened <= 2
    await aiosmtpd_peer.waitForMessages(100, match=token.encode(), timeout=30.0)
    counts = _numbers(aiosmtpd_peer, token)
    assert sorted(counts) == list(range(100)) and set(counts.values()) == {1}
