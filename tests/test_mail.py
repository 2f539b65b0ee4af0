"""
The Django-shaped API (L{mailclient.mail}) against the in-memory server on a
fake clock: opening and closing, sending several messages over one
connection, what C{failSilently} swallows, the per-recipient statuses, the
compose helpers, and C{async with}.
"""

from __future__ import annotations

import asyncio
from email.message import EmailMessage
from typing import Any

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from mailclient import errors
from mailclient.mail import (
    MessageReport,
    SentMessages,
    SMTPConnection,
    _awaitable,
    failsSilently,
    get_connection,
    send_mail,
    send_mass_mail,
)
from mailclient.message import Envelope, composeMessage
from mailclient.results import RecipientResult, SendResult
from mailclient.testing import MemoryEndpoint, ScriptedServer, settle
from tests.helpers import Outcome

SENDER = "app@example.com"


def message(number: int, *to: str, bcc: str | None = None) -> EmailMessage:
    """
    A small message from L{SENDER} to C{to} (default C{ok@example.net}).
    """
    m = EmailMessage()
    m["From"] = SENDER
    m["To"] = ", ".join(to or ("ok@example.net",))
    if bcc is not None:
        m["Bcc"] = bcc
    m["Subject"] = f"message {number}"
    m.set_content(f"body {number}\n")
    return m


class World:
    """
    A clock, a scripted server and connections to it.
    """

    def __init__(self, **serverOptions: Any) -> None:
        self.clock = Clock()
        self.server = ScriptedServer(self.clock, **serverOptions)
        self.endpoint = MemoryEndpoint(self.clock, self.server)

    def connection(self, **options: Any) -> SMTPConnection:
        """
        A connection to the server, ignoring the process environment.
        """
        options.setdefault("environ", {})
        return get_connection(reactor=self.clock, endpoint=self.endpoint, **options)

    def run(self, d: Deferred[Any]) -> Outcome[Any]:
        """
        Capture C{d}'s outcome after running the clock until nothing is due.
        """
        outcome: Outcome[Any] = Outcome(d)
        settle(self.clock)
        return outcome


@pytest.fixture
def world() -> World:
    """
    A fresh in-memory world.
    """
    return World()


def test_sendMessagesOpensSendsAndCloses(world: World) -> None:
    """
    C{send_messages} on a closed connection opens one connection, sends
    every message over it in order, says QUIT, and fires with the count and
    a report per message.
    """
    connection = world.connection()
    outcome = world.run(connection.send_messages([message(1), message(2)]))
    sent, reports = outcome.value()
    assert sent == 2
    assert [r.sent for r in reports] == [True, True]
    assert [r.statuses for r in reports] == [{"ok@example.net": "sent"}] * 2
    assert len(world.server.connections) == 1
    record = world.server.connections[0]
    assert record.verbs().count("MAIL") == 2
    assert record.closedBy == "client-quit"
    assert connection.client is None
    assert [d.message["Subject"] for d in world.server.deliveries] == [
        "message 1",
        "message 2",
    ]


def test_openReportsWhetherItOpened(world: World) -> None:
    """
    C{open} fires with C{True} when it connected and C{False} when the
    connection was already open; messages sent on an open connection leave
    it open; C{close} says QUIT.
    """
    connection = world.connection()
    assert world.run(connection.open()).value() is True
    assert world.run(connection.open()).value() is False
    assert world.run(connection.send_messages([message(1)])).value().sent == 1
    assert world.server.connections[0].isOpen
    world.run(connection.close()).value()
    assert world.server.connections[0].closedBy == "client-quit"
    assert len(world.server.connections) == 1
    assert world.run(connection.close()).value() is None


def test_emptyListSendsNothing(world: World) -> None:
    """
    No messages: nothing is opened and the count is 0, as Django returns.
    """
    outcome = world.run(world.connection().send_messages([]))
    assert outcome.value() == SentMessages(0, ())
    assert world.server.connectAttempts == 0


def test_refusedRecipientIsReportedNotHidden(world: World) -> None:
    """
    A message that one recipient refused counts as sent (the server took
    it for the other), but its report says which recipient was rejected,
    with the code: Django throws this list away, and amsdal_mail's async
    path reports the refused recipient as sent.
    """
    world.server.rule("RCPT", match="bad@", reply=b"550 5.1.1 no such user")
    world.server.rule("RCPT", match="later@", reply=b"450 4.2.1 try later")
    outcome = world.run(
        world.connection().send_messages(
            [message(1, "ok@example.net", "bad@example.net", "later@example.net")]
        )
    )
    sent, (report,) = outcome.value()
    assert sent == 1
    assert report.statuses == {
        "ok@example.net": "sent",
        "bad@example.net": "rejected",
        "later@example.net": "deferred",
    }
    results = report.recipientResults
    assert (results["bad@example.net"].code, results["bad@example.net"].text) == (
        550,
        "no such user",
    )
    assert results["later@example.net"].enhancedStatus == "4.2.1"
    assert world.server.deliveries[0].recipients == ("ok@example.net",)


def test_failureStopsTheBatchWithoutFailSilently(world: World) -> None:
    """
    Without C{failSilently}, the first failed message fails the Deferred
    with its own error (as Django raises), the messages after it are not
    sent, and the connection is closed.
    """
    world.server.rule("MAIL", transaction=1, reply=b"550 5.7.1 sender blocked")
    outcome = world.run(world.connection().send_messages([message(1), message(2)]))
    error = outcome.error(errors.SenderRefusedError)
    assert error.result is not None and error.result.sender == SENDER
    assert world.server.deliveries == []
    assert world.server.connections[0].verbs().count("MAIL") == 1
    assert world.server.connections[0].closedBy == "client-quit"


def test_failSilentlyKeepsTheErrorInTheReport(world: World) -> None:
    """
    With C{failSilently}, a refused message is reported with its error and
    the recipients' statuses, and the next message is still sent.
    """
    world.server.rule("MAIL", transaction=1, reply=b"550 5.7.1 sender blocked")
    outcome = world.run(
        world.connection(failSilently=True).send_messages([message(1), message(2)])
    )
    sent, reports = outcome.value()
    assert sent == 1
    assert isinstance(reports[0].error, errors.SenderRefusedError)
    assert reports[0].statuses == {"ok@example.net": "rejected"}
    assert reports[0].recipientResults["ok@example.net"].code == 550
    assert reports[1].sent and reports[1].error is None
    assert len(world.server.deliveries) == 1


def test_failSilentlyOnAFailedOpen(world: World) -> None:
    """
    When the connection cannot be opened, C{failSilently} makes the count 0
    and every message is reported with the error; the connection is tried
    once, not once per message (as Django gives up after a failed open).
    """
    world.server.rule("CONNECT", refuse=True)
    connection = world.connection(failSilently=True)
    sent, reports = world.run(
        connection.send_messages([message(1), message(2)])
    ).value()
    assert sent == 0
    assert all(isinstance(r.error, errors.SMTPConnectError) for r in reports)
    assert reports[1].statuses == {"ok@example.net": "failed"}
    assert reports[1].recipientResults["ok@example.net"].status == "not-attempted"
    assert world.server.connectAttempts == 1
    assert world.run(connection.open()).value() is None


def test_openFailsLoudlyWithoutFailSilently(world: World) -> None:
    """
    Without C{failSilently} a failed open fails the Deferred.
    """
    world.server.rule("GREETING", reply=b"554 5.7.1 go away")
    outcome = world.run(world.connection().open())
    assert outcome.error(errors.ServerRefusedSessionError).code == 554


@pytest.mark.parametrize("failSilently", [False, True])
def test_badInputIsNeverSwallowed(world: World, failSilently: bool) -> None:
    """
    A message whose envelope cannot be worked out (no recipient, an address
    with a line break) fails the Deferred before anything is sent, with or
    without C{failSilently}: Django lets C{ValueError} through too.
    """
    connection = world.connection(failSilently=failSilently)
    noRecipient = EmailMessage()
    noRecipient["From"] = SENDER
    noRecipient.set_content("x\n")
    bads: list[EmailMessage | Envelope] = [
        noRecipient,
        Envelope(SENDER, ("a@example.net\r\nRCPT TO:<x@evil>",), message(1)),
    ]
    for bad in bads:
        outcome = world.run(connection.send_messages([message(1), bad]))
        outcome.error(errors.InvalidArgumentError)
    assert world.server.connectAttempts == 0


@pytest.mark.parametrize("bad", ["not a list", b"bytes", 42, [b"raw bytes"]])
def test_notMessagesFailTheDeferred(world: World, bad: Any) -> None:
    """
    Something that is not a list of messages fails the Deferred with
    L{errors.InvalidArgumentError}; nothing is raised at the call.
    """
    d = world.connection().send_messages(bad)
    world.run(d).error(errors.InvalidArgumentError)


def test_reopensAConnectionTheServerClosed() -> None:
    """
    A connection that the server closed while it sat open (an idle
    timeout) is opened again by the next C{send_messages}, and is left open
    for the caller to close.
    """
    world = World(idleTimeout=60)
    connection = world.connection()
    assert world.run(connection.open()).value() is True
    world.clock.advance(61)
    settle(world.clock)
    assert not world.server.connections[0].isOpen
    assert world.run(connection.send_messages([message(1)])).value().sent == 1
    assert connection.opened == 2
    assert world.server.connections[1].isOpen
    world.run(connection.close())
    assert not world.server.connections[1].isOpen


def test_dropMidBatchWithFailSilently(world: World) -> None:
    """
    When the connection breaks during one message's data, that message is
    reported with the error (its recipient C{"failed"}: the precise status
    says whether the data was complete) and the next message goes over a
    new connection.
    """
    world.server.rule("DATA", connection=1, dropAfter=10)
    outcome = world.run(
        world.connection(failSilently=True).send_messages([message(1), message(2)])
    )
    sent, reports = outcome.value()
    assert sent == 1
    assert isinstance(reports[0].error, errors.ConnectionLostError)
    assert reports[0].statuses == {"ok@example.net": "failed"}
    assert reports[1].sent
    assert len(world.server.connections) == 2


def test_bccIsInTheEnvelopeNotTheBytes(world: World) -> None:
    """
    A Bcc recipient gets the message, and no delivered copy shows the Bcc
    header.
    """
    outcome = world.run(
        world.connection().send_messages([message(1, bcc="hidden@example.net")])
    )
    (report,) = outcome.value().reports
    assert report.recipients == ("ok@example.net", "hidden@example.net")
    (delivery,) = world.server.deliveries
    assert delivery.recipients == ("ok@example.net", "hidden@example.net")
    assert b"hidden@" not in delivery.data and b"Bcc" not in delivery.data


def test_explicitEnvelope(world: World) -> None:
    """
    An L{Envelope} sends its message to its own sender and recipients,
    whatever the headers say.
    """
    envelope = Envelope("bounces@example.com", ("other@example.net",), message(1))
    world.run(world.connection().send_messages([envelope])).value()
    (delivery,) = world.server.deliveries
    assert (delivery.sender, delivery.recipients) == (
        "bounces@example.com",
        ("other@example.net",),
    )


def test_asyncWithOpensAndCloses(world: World) -> None:
    """
    C{async with} opens the connection on entry and closes it on exit, in a
    coroutine that Twisted drives.
    """
    connection = world.connection()
    seen: list[bool] = []

    async def use() -> int:
        async with connection as c:
            seen.append(world.server.connections[0].isOpen)
            sent, _ = await c.send_messages([message(1), message(2)])
            return sent

    outcome = world.run(Deferred.fromCoroutine(use()))
    assert outcome.value() == 2
    assert seen == [True]
    assert world.server.connections[0].closedBy == "client-quit"


def test_awaitableInAnAsyncioTask() -> None:
    """
    In a coroutine that asyncio runs as a task, the Deferreds behind
    C{async with} are awaited as Futures bound to the running loop; outside
    of a task (a coroutine Twisted drives) they stay Deferreds.
    """
    d: Deferred[int] = Deferred()
    assert _awaitable(d) is d

    async def inTask() -> int:
        awaitable = _awaitable(d)
        assert isinstance(awaitable, asyncio.Future)
        asyncio.get_running_loop().call_soon(d.callback, 7)
        value: int = await awaitable
        return value

    assert asyncio.run(inTask()) == 7


def test_sendMail(world: World) -> None:
    """
    C{send_mail} composes a text message with an HTML alternative and sends
    it; the count is 1.
    """
    d = send_mail(
        "Hello",
        "plain body\n",
        SENDER,
        ["ok@example.net", "two@example.net"],
        htmlMessage="<p>html body</p>",
        reactor=world.clock,
        endpoint=world.endpoint,
        environ={},
    )
    sent, (report,) = world.run(d).value()
    assert sent == 1
    assert report.statuses == {"ok@example.net": "sent", "two@example.net": "sent"}
    delivered = world.server.deliveries[0].message
    assert delivered["Subject"] == "Hello"
    assert delivered.get_content_type() == "multipart/alternative"
    assert delivered["Message-ID"] and delivered["Date"]
    body = delivered.get_body(("html",))
    assert body is not None and "html body" in body.get_content()


def test_sendMailOverAGivenConnection(world: World) -> None:
    """
    With C{connection}, C{send_mail} uses it (and its C{failSilently}).
    """
    connection = world.connection(failSilently=True)
    world.server.rule("RCPT", reply=b"550 5.1.1 no")
    d = send_mail("s", "b", SENDER, ["x@example.net"], connection=connection)
    sent, (report,) = world.run(d).value()
    assert sent == 0 and isinstance(report.error, errors.AllRecipientsRefusedError)


def test_sendMailAuthenticates() -> None:
    """
    C{authUser} and C{authPassword} log in (here on a test server without
    TLS, so plaintext AUTH is allowed explicitly).
    """
    world = World(credentials={"alice": "pw"}, requireAuth=True)
    d = send_mail(
        "s",
        "b",
        SENDER,
        ["ok@example.net"],
        authUser="alice",
        authPassword="pw",
        tls="none",
        allowPlaintextAuth=True,
        reactor=world.clock,
        endpoint=world.endpoint,
        environ={},
    )
    assert world.run(d).value().sent == 1
    assert world.server.deliveries[0].authenticatedAs == "alice"


def test_sendMassMail(world: World) -> None:
    """
    C{send_mass_mail} sends each tuple as its own message over one
    connection.
    """
    d = send_mass_mail(
        [
            ("one", "1", SENDER, ["a@example.net"]),
            ("two", "2", SENDER, ["b@example.net"]),
            ("three", "3", SENDER, ["c@example.net"]),
        ],
        reactor=world.clock,
        endpoint=world.endpoint,
        environ={},
    )
    assert world.run(d).value().sent == 3
    assert len(world.server.connections) == 1
    assert [d.recipients for d in world.server.deliveries] == [
        ("a@example.net",),
        ("b@example.net",),
        ("c@example.net",),
    ]


@pytest.mark.parametrize("datatuple", [[("only", "three", SENDER)], ["not a tuple"], 5])
def test_sendMassMailBadTuples(world: World, datatuple: Any) -> None:
    """
    A malformed data tuple fails the Deferred; nothing is raised at the
    call and nothing is sent.
    """
    d = send_mass_mail(datatuple, reactor=world.clock, endpoint=world.endpoint)
    world.run(d).error(Exception)
    assert world.server.connectAttempts == 0


def test_composeErrorsGoThroughTheDeferred(world: World) -> None:
    """
    A bad address given to C{send_mail} fails its Deferred.
    """
    d = send_mail(
        "s", "b", "not an address", ["ok@example.net"], endpoint=world.endpoint
    )
    world.run(d).error(errors.InvalidArgumentError)


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"useTLS": True, "useSSL": True}, "mutually exclusive"),
        ({"useTLS": True, "tls": "implicit"}, "useTLS=True means"),
        ({"useSSL": "yes"}, "expected True or False"),
        ({"noSuchOption": 1}, "not a connection option"),
        ({"dsn": "FULL"}, "expected a mailclient.DSN"),
    ],
)
def test_getConnectionRefusesBadSettings(
    world: World, options: dict[str, Any], reason: str
) -> None:
    """
    Conflicting or unknown settings are refused when the connection is made
    (as Django refuses C{EMAIL_USE_TLS} with C{EMAIL_USE_SSL}).
    """
    with pytest.raises(errors.InvalidArgumentError, match=reason):
        world.connection(**options)


def test_useFlagsChooseTheTLSMode(world: World) -> None:
    """
    C{useTLS} means STARTTLS and C{useSSL} implicit TLS, as in Django.
    """
    starttls = world.connection(host="mx.example", useTLS=True)
    implicit = world.connection(host="mx.example", useSSL=True)
    plain = world.connection(host="mx.example", useTLS=False)
    assert starttls.settings.tls == "starttls"
    assert implicit.settings.tls == "implicit"
    assert plain.settings.tls is None


_ERRORS: list[tuple[BaseException, bool]] = [
    (errors.SMTPConnectError("refused"), True),
    (errors.SMTPTimeoutError("EHLO", 5.0), True),
    (errors.ConnectionLostError("DATA", "reset"), True),
    (errors.TLSHandshakeError("bad certificate"), True),
    (errors.TLSRequiredError("no STARTTLS"), True),
    (errors.AuthenticationRequiredError("no AUTH"), True),
    (errors.PlaintextAuthRefusedError("no TLS"), True),
    (errors.SMTPProtocolError("garbage"), True),
    (errors.SessionLimitError(10), True),
    (errors.InvalidArgumentError("toAddresses", "x", "bad"), False),
    (errors.CommandArgumentError("toAddresses", "x\r\n", "line break"), False),
    (errors.UnsupportedFeatureError("toAddresses", "é@x", "needs SMTPUTF8"), False),
    (errors.SendCancelledError("DATA"), False),
    (ValueError("not ours"), False),
    (RuntimeError("a bug"), False),
]


@pytest.mark.parametrize(("error", "swallowed"), _ERRORS)
def test_failsSilentlyTable(error: BaseException, swallowed: bool) -> None:
    """
    What C{failSilently} swallows: what the network, the server, TLS and
    authentication do, never the caller's own mistakes or cancel (the
    comparison with Django's backend itself is in
    C{tests/real/test_django_parity.py}).
    """
    assert failsSilently(error) is swallowed


def test_reportWithoutAResult() -> None:
    """
    A report whose error carries no result gives every recipient the
    C{"not-attempted"} result, so its status is C{"failed"}.
    """
    report = MessageReport(
        message(1), SENDER, ("a@example.net",), error=errors.SMTPConnectError("no")
    )
    (result,) = report.recipientResults.values()
    assert isinstance(result, RecipientResult)
    assert (result.status, result.deliveryStatus, result.code) == (
        "not-attempted",
        "failed",
        None,
    )
    assert "SMTPConnectError: no" in result.text
    assert not report.sent


def test_reportWithAResult() -> None:
    """
    A report with a result takes the recipients' results from it.
    """
    ok = RecipientResult("a@example.net", "accepted", 250, "2.1.5", "ok", "RCPT")
    result = SendResult(SENDER, {"a@example.net": ok}, None, None)
    report = MessageReport(message(1), SENDER, ("a@example.net",), result)
    assert report.sent and report.statuses == {"a@example.net": "sent"}
    assert report.recipientResults["a@example.net"] is ok


def test_composedMessagesAreSentAsTheyAre(world: World) -> None:
    """
    A message from L{composeMessage} keeps its Message-ID and Date.
    """
    composed = composeMessage(
        fromAddress=SENDER, to="ok@example.net", subject="s", text="t"
    )
    world.run(world.connection().send_messages([composed])).value()
    delivered = world.server.deliveries[0].message
    assert delivered["Message-ID"] == composed["Message-ID"]


def test_awaitableInALoopCallback() -> None:
    """
    In a loop callback outside any task (where Twisted's coroutine runner
    steps coroutines under the asyncio reactor) the Deferred stays a
    Deferred.
    """
    d: Deferred[int] = Deferred()
    seen: list[object] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def callback() -> None:
            seen.append(_awaitable(d))
            done.set_result(None)

        loop.call_soon(callback)
        await done

    asyncio.run(main())
    assert seen == [d]


def test_tlsOptionsTwiceIsRefused(world: World, tmp_path: Any) -> None:
    """
    TLS options given both as C{tlsOptions} and as certificate files in the
    settings are refused: one of them would be silently ignored.
    """
    from mailclient.demo import generateCertificates

    ca, _ = generateCertificates("localhost")
    path = tmp_path / "ca.pem"
    path.write_bytes(ca.dumpPEM())
    with pytest.raises(errors.InvalidArgumentError, match="not both"):
        world.connection(
            host="localhost", caCertificates=str(path), tlsOptions=object()
        )
    connection = world.connection(host="localhost", caCertificates=str(path))
    assert connection.settings.caCertificates == str(path)


@pytest.mark.parametrize("where", ["connect", "greeting"])
def test_cancelOpen(world: World, where: str) -> None:
    """
    Cancelling C{open} while it connects or waits for the greeting fails
    it with C{CancelledError} and leaves no connection behind.
    """
    from twisted.internet.defer import CancelledError

    if where == "connect":
        world.server.rule("CONNECT", hang=True)
    else:
        world.server.rule("GREETING", stall=True)
    connection = world.connection()
    d = connection.open()
    settle(world.clock)
    d.cancel()
    world.run(d).error(CancelledError)
    assert connection.client is None
    assert world.server.openConnections == 0


@pytest.mark.parametrize(
    ("status", "deliveryStatus"),
    [
        ("accepted", "sent"),
        ("deferred", "deferred"),
        ("rejected", "rejected"),
        ("not-attempted", "failed"),
        ("unknown", "failed"),
    ],
)
def test_deliveryStatusVocabulary(status: Any, deliveryStatus: str) -> None:
    """
    Each precise recipient status maps to one word of the coarser
    vocabulary; a recipient whose fate is unknown is never called sent.
    """
    result = RecipientResult("a@example.net", status, None, None, "", "SESSION")
    assert result.deliveryStatus == deliveryStatus
