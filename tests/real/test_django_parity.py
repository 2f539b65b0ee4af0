"""
C{failSilently} swallows exactly what Django's SMTP backend swallows.

Each case scripts a L{mailclient.testing.ScriptedServer} listening on
127.0.0.1 and sends the same messages twice: with Django's own
C{django.core.mail.backends.smtp.EmailBackend} (smtplib, in a thread) and
with L{mailclient.mail.get_connection}, each with C{fail_silently} on and
off.  For every case and both settings, the two must agree: both return the
same count, or both raise.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread

from mailclient import errors
from mailclient.mail import get_connection
from mailclient.message import composeMessage
from mailclient.testing import ScriptedServer

reactor: Any = _reactor
SENDER = "app@example.com"
USER = "alice"
PASSWORD = "s3cret-Pa55"
TIMEOUT = 1.0


def _configureDjango() -> None:
    """
    Configure Django's settings once, for its mail module only, and keep
    it from looking up this machine's fully qualified name.
    """
    from django.conf import settings

    if not settings.configured:
        settings.configure(DEFAULT_CHARSET="utf-8", USE_I18N=False)
    from django.core.mail.utils import DNS_NAME

    DNS_NAME._fqdn = "client.test"


@attrs.frozen
class Case:
    """
    One way for a send to go, scripted on the server.

    @ivar name: what happens.
    @ivar script: sets the server up (rules, capabilities).
    @ivar recipients: the To addresses of each message.
    @ivar server: options of the L{ScriptedServer}.
    @ivar django: options of Django's backend.
    @ivar ours: options of L{get_connection}.
    @ivar body: the text of each message.
    """

    name: str
    script: Callable[[ScriptedServer], object] = lambda server: None
    recipients: tuple[tuple[str, ...], ...] = (("ok@example.net",),)
    server: dict[str, Any] = attrs.field(factory=dict)
    django: dict[str, Any] = attrs.field(factory=dict)
    ours: dict[str, Any] = attrs.field(factory=dict)
    body: str = "Hello.\n"


_LOGIN_DJANGO = {"username": USER, "password": "wrong"}
_LOGIN_OURS = {
    "username": USER,
    "password": "wrong",
    "tls": "none",
    "allowPlaintextAuth": True,
}

CASES = [
    Case("accepted", recipients=(("ok@example.net",), ("two@example.net",))),
    Case(
        "one recipient of two refused",
        lambda s: s.rejectRecipient("bad@example.net"),
        recipients=(("ok@example.net", "bad@example.net"),),
    ),
    Case(
        "every recipient refused",
        lambda s: s.rejectRecipient("bad@example.net"),
        recipients=(("bad@example.net",), ("ok@example.net",)),
    ),
    Case(
        "every recipient deferred",
        lambda s: s.deferRecipient("later@example.net"),
        recipients=(("later@example.net",),),
    ),
    Case("sender refused", lambda s: s.rejectSender(SENDER)),
    Case("DATA refused", lambda s: s.rule("DATA", reply=b"554 5.7.1 no data")),
    Case("message refused after its data", lambda s: s.rejectMessage()),
    Case("greeting 554", lambda s: s.rule("GREETING", reply=b"554 5.7.1 go away")),
    Case("greeting 421", lambda s: s.rule("GREETING", reply=b"421 4.3.2 busy")),
    Case("hang-up before the RCPT reply", lambda s: s.disconnectBefore("RCPT")),
    Case(
        "hang-up after the data, before the final reply",
        lambda s: s.rule("DATA", dropAfter=10**6),
    ),
    Case("no reply to DATA (timeout)", lambda s: s.rule("DATA", stall=True)),
    Case(
        "wrong password",
        server={"credentials": {USER: PASSWORD}},
        django=_LOGIN_DJANGO,
        ours=_LOGIN_OURS,
    ),
    Case("AUTH not offered", django=_LOGIN_DJANGO, ours=_LOGIN_OURS),
    Case(
        "STARTTLS required, not offered",
        django={"use_tls": True},
        ours={"useTLS": True},
    ),
    Case(
        "message over the SIZE limit",
        server={"capabilities": (b"PIPELINING", b"SIZE 1000")},
        body="x" * 70 + "\n" * 100,
    ),
    Case(
        "address with a line break",
        recipients=(("ok@example.net",), ("a@example.net\r\nRCPT TO:<x@evil>",)),
    ),
    Case("connection refused", server={"listen": False}),
]


@pytest.fixture
def listening() -> Iterator[Callable[[dict[str, Any]], tuple[ScriptedServer, int]]]:
    """
    Make a L{ScriptedServer} listen on 127.0.0.1 (or, with C{listen=False},
    find a port where nothing listens); close every port afterwards and let
    stalled connections go.
    """
    servers: list[ScriptedServer] = []
    ports: list[IListeningPort] = []

    def listen(options: dict[str, Any]) -> tuple[ScriptedServer, int]:
        options = dict(options)
        listen = options.pop("listen", True)
        server = ScriptedServer(reactor, hostname="localhost", **options)
        if not listen:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                return server, probe.getsockname()[1]
        port = reactor.listenTCP(0, server, interface="127.0.0.1")
        address = port.getHost()
        assert isinstance(address, IPv4Address)
        ports.append(port)
        servers.append(server)
        return server, address.port

    yield listen
    for server in servers:
        server.shutdown(reply=None, abort=True)
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


def djangoSend(port: int, case: Case, failSilently: bool) -> tuple[str, int | str]:
    """
    Send the case's messages with Django's SMTP backend (blocking: run it in
    a thread).

    @return: C{("sent", count)}, or C{("raised", the error's type)}.
    """
    from django.core.mail import EmailMessage
    from django.core.mail.backends.smtp import EmailBackend

    try:
        backend = EmailBackend(
            host="127.0.0.1",
            port=port,
            fail_silently=failSilently,
            timeout=TIMEOUT,
            **case.django,
        )
        messages = [
            EmailMessage("Subject", case.body, SENDER, list(to))
            for to in case.recipients
        ]
        return ("sent", backend.send_messages(messages))
    except Exception as e:
        return ("raised", type(e).__name__)


async def oursSend(port: int, case: Case, failSilently: bool) -> tuple[str, int | str]:
    """
    Send the case's messages with L{get_connection}.

    @return: as L{djangoSend}.
    """
    try:
        connection = get_connection(
            host="127.0.0.1",
            port=port,
            failSilently=failSilently,
            timeout=TIMEOUT,
            environ={},
            **case.ours,
        )
        messages = [
            composeMessage(
                fromAddress=SENDER, to=list(to), subject="Subject", text=case.body
            )
            for to in case.recipients
        ]
        sent, _ = await connection.send_messages(messages)
        return ("sent", sent)
    except Exception as e:
        return ("raised", type(e).__name__)


def _kind(outcome: tuple[str, int | str]) -> tuple[str, int | str]:
    """
    What must agree: the count, or only that it raised (the types differ).
    """
    return outcome if outcome[0] == "sent" else ("raised", "")


@pytest.mark.parametrize("failSilently", [True, False], ids=["silent", "loud"])
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
@pytest_twisted.ensureDeferred
async def test_failSilentlyAgreesWithDjango(
    listening: Callable[[dict[str, Any]], tuple[ScriptedServer, int]],
    case: Case,
    failSilently: bool,
) -> None:
    """
    For this case, Django's backend and L{get_connection} return the same
    count, or both raise, with C{fail_silently} on and off.
    """
    _configureDjango()
    server, port = listening(case.server)
    case.script(server)
    theirs = await deferToThread(djangoSend, port, case, failSilently)
    server.release() if server.stalled else None
    server, port = listening(case.server)
    case.script(server)
    ours = await oursSend(port, case, failSilently)
    assert _kind(ours) == _kind(theirs), (ours, theirs)


@pytest_twisted.ensureDeferred
async def test_noRecipientIsStricterThanDjango(
    listening: Callable[[dict[str, Any]], tuple[ScriptedServer, int]],
) -> None:
    """
    The one documented difference: Django skips a message without
    recipients and counts it as not sent, even without C{fail_silently};
    here it is bad input, which fails the Deferred before anything is sent.
    """
    _configureDjango()
    from django.core.mail import EmailMessage
    from django.core.mail.backends.smtp import EmailBackend

    server, port = listening({})
    backend = EmailBackend(host="127.0.0.1", port=port, timeout=TIMEOUT)
    count = await deferToThread(
        backend.send_messages, [EmailMessage("s", "b", SENDER, [])]
    )
    assert count == 0
    message = composeMessage(fromAddress=SENDER, subject="s", text="b")
    connection = get_connection(host="127.0.0.1", port=port, environ={})
    with pytest.raises(errors.InvalidArgumentError):
        await connection.send_messages([message])
    assert server.deliveries == []


@pytest_twisted.ensureDeferred
async def test_nonASCIILocalPartIsRefusedNotRewritten(
    listening: Callable[[dict[str, Any]], tuple[ScriptedServer, int]],
) -> None:
    """
    The other difference: for a server without SMTPUTF8, Django rewrites a
    non-ASCII local part into an RFC 2047 encoded word and sends the message
    to that address, which is not the recipient's; here the send fails with
    L{errors.UnsupportedFeatureError} (never swallowed: it is the caller's
    address that cannot be carried), and nothing is delivered.
    """
    _configureDjango()
    from django.core.mail import EmailMessage
    from django.core.mail.backends.smtp import EmailBackend

    server, port = listening({})
    backend = EmailBackend(host="127.0.0.1", port=port, timeout=TIMEOUT)
    count = await deferToThread(
        backend.send_messages, [EmailMessage("s", "b", SENDER, ["jörg@example.net"])]
    )
    assert count == 1
    (delivery,) = server.deliveries
    assert delivery.recipients[0].startswith("=?utf-8?")
    server, port = listening({})
    message = composeMessage(fromAddress=SENDER, to="jörg@example.net", text="b")
    connection = get_connection(
        host="127.0.0.1", port=port, environ={}, failSilently=True
    )
    with pytest.raises(errors.UnsupportedFeatureError):
        await connection.send_messages([message])
    assert server.deliveries == []
