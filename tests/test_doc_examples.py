"""
Every runnable example in C{docs/examples} works: each one is run in a
subprocess, with the project's Python, against a
L{mailclient.demo.LoopbackReceiver} started in this process, and must exit
with status 0, print what its documentation promises, and get its messages
delivered.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from mailclient.demo import LoopbackReceiver

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "docs" / "examples"
DOCS = ROOT / "docs"
EXAMPLE_TIMEOUT = 60.0


@attrs.frozen
class Finished:
    """
    How an example's process ended.

    @ivar status: the exit status (L{None} when killed by a signal).
    @ivar out: what it wrote to stdout.
    @ivar err: what it wrote to stderr.
    """

    status: int | None
    out: str
    err: str


class _Collector(ProcessProtocol):
    """
    Collects a process's output and fires L{ended} with a L{Finished}.
    """

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.ended: Deferred[Finished] = Deferred()

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(
            Finished(
                getattr(reason.value, "exitCode", None),
                b"".join(self.out).decode("utf-8", "replace"),
                b"".join(self.err).decode("utf-8", "replace"),
            )
        )


async def runExample(name: str, port: int, env: Mapping[str, str] = {}) -> Finished:
    """
    Run C{docs/examples/NAME} against 127.0.0.1:C{port} and wait for it,
    killing it after L{EXAMPLE_TIMEOUT} seconds.
    """
    environment = dict(os.environ)
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    environment["MAILCLIENT_EXAMPLE_HOST"] = "127.0.0.1"
    environment["MAILCLIENT_EXAMPLE_PORT"] = str(port)
    environment.update(env)
    collector = _Collector()
    process: IReactorProcess = reactor  # type: ignore[assignment]
    clock: IReactorTime = reactor  # type: ignore[assignment]
    transport = process.spawnProcess(
        collector,
        sys.executable,
        [sys.executable, str(EXAMPLES / name)],
        env=environment,
        path=str(ROOT),
    )
    killer = clock.callLater(EXAMPLE_TIMEOUT, transport.signalProcess, "KILL")
    finished = await collector.ended
    if killer.active():
        killer.cancel()
    return finished


StartReceiver = Callable[..., Deferred[LoopbackReceiver]]


@pytest.fixture
def startReceiver(tmp_path: Path) -> Iterator[StartReceiver]:
    """
    A function that starts a L{LoopbackReceiver} on 127.0.0.1 with the
    given options, storing under C{tmp_path}; every receiver it started is
    stopped afterwards.
    """
    started: list[LoopbackReceiver] = []

    async def start(**options: Any) -> LoopbackReceiver:
        r = LoopbackReceiver(str(tmp_path / f"maildir{len(started)}"), **options)
        started.append(r)
        await r.start(reactor)  # type: ignore[arg-type]
        return r

    yield lambda **options: Deferred.fromCoroutine(start(**options))
    for r in started:
        pytest_twisted.blockon(r.stop())


@pytest.fixture
def receiver(startReceiver: StartReceiver) -> LoopbackReceiver:
    """
    A plain receiver (no TLS, no AUTH) on 127.0.0.1, started before the
    test and stopped after it.
    """
    r: LoopbackReceiver = pytest_twisted.blockon(startReceiver())
    return r


QUEUED = "Ok: queued as {id}"


def check(finished: Finished, *expected: str) -> None:
    """
    Assert that the example succeeded and printed every C{expected} line,
    where C{{id}} stands for any queue id the receiver makes.
    """
    assert finished.status == 0, (finished.out, finished.err)
    lines = finished.out.splitlines()
    for line in expected:
        pattern = re.escape(line).replace(re.escape("{id}"), "[0-9A-F]{10}")
        assert any(re.fullmatch(pattern, seen) for seen in lines), (
            line,
            finished.out,
            finished.err,
        )


def delivered(receiver: LoopbackReceiver) -> list[str]:
    """
    The recipients the receiver stored a message for, in order.
    """
    return [d.recipient for d in receiver.deliveries]


TESTED = {
    "mailer.py",
    "send_message.py",
    "handle_results.py",
    "async_await.py",
    "asyncio_reactor.py",
    "django_style.py",
    "one_connection.py",
    "sender_factory.py",
    "private_ca.py",
    "check_server.py",
    "compose.py",
    "configuration.py",
    "extensions.py",
    "testing_outbox.py",
    "relay.py",
}


def test_everyExampleIsTested() -> None:
    """
    Every example file has a test in this module: a new example cannot be
    left unchecked.
    """
    assert {p.name for p in EXAMPLES.glob("*.py")} == TESTED


def test_everyExampleIsInTheDocs() -> None:
    """
    Every example is included in a page of the documentation.
    """
    pages = "\n".join(p.read_text("utf-8") for p in DOCS.glob("*.rst"))
    for name in sorted(TESTED):
        assert f"examples/{name}" in pages, name


def test_apiPageListsEveryPublicName() -> None:
    """
    The API summary describes every name that C{mailclient} exports.
    """
    import mailclient

    page = (DOCS / "api.rst").read_text("utf-8")
    described = set(re.findall(r"^\.\. py:\w+:: (\w+)", page, re.M))
    assert set(mailclient.__all__) <= described, set(mailclient.__all__) - described


def test_errorTreeIsComplete() -> None:
    """
    The error tree in the results-and-errors page names every public error.
    """
    from mailclient import errors

    page = (DOCS / "results-and-errors.rst").read_text("utf-8")
    tree = page.split("MailClientError", 1)[1].split("On every error", 1)[0]
    for name in errors.__all__:
        assert re.search(rf"(?<![A-Za-z]){name}(?![A-Za-z])", "MailClientError" + tree)


def test_readmeOpensWithTheTwoCommands() -> None:
    """
    The README opens, right after its title and one sentence, with the two
    commands (run the demo; run the test suite) in one code block.
    """
    lines = (ROOT / "README.rst").read_text("utf-8").splitlines()
    assert lines[0] == "mailclient" and set(lines[1]) == {"="}
    assert lines[2] == "" and lines[3].endswith(".") and lines[4] == ""
    assert lines[5].startswith(".. code-block::") and lines[6] == ""
    assert [line.strip() for line in lines[7:10]] == [
        "python3 -m venv .venv && .venv/bin/pip install -q . "
        "&& .venv/bin/python -m mailclient.demo",
        "bash .ci/test",
        "",
    ]


@pytest_twisted.ensureDeferred
async def test_sendMessage(receiver: LoopbackReceiver) -> None:
    """
    The C{sendmail} example delivers its message to both recipients and
    prints each one's result and the final reply.
    """
    finished = await runExample("send_message.py", receiver.port or 0)
    check(
        finished,
        f"alice@example.com: accepted 250 {QUEUED}",
        f"bob@example.com: accepted 250 {QUEUED}",
        f"final reply: 250 2.0.0 {QUEUED}",
        "queue id: {id}",
    )
    assert delivered(receiver) == ["alice@example.com", "bob@example.com"]
    assert b'filename="figures.csv"' in receiver.deliveries[0].read()


@pytest_twisted.ensureDeferred
async def test_handleResults(receiver: LoopbackReceiver) -> None:
    """
    The results example reports the accepted, deferred and rejected
    recipients, then catches L{AllRecipientsRefusedError} with every
    recipient's result.
    """
    finished = await runExample("handle_results.py", receiver.port or 0)
    check(
        finished,
        "delivered to: alice@example.com",
        "try tempfail@example.com again later: 450 4.2.1 "
        "<tempfail@example.com>: Mailbox temporarily unavailable, try again later",
        "give up on reject@example.com: 550 5.1.1 "
        "<reject@example.com>: Recipient address rejected: no such user",
        "nobody accepted the message (transient: False)",
        "  reject@example.com: rejected 550 [RCPT]",
        "  tempfail@example.com: deferred 450 [RCPT]",
    )
    assert delivered(receiver) == ["alice@example.com"]


@pytest_twisted.ensureDeferred
async def test_asyncAwait(receiver: LoopbackReceiver) -> None:
    """
    The async/await example sends one message, then three at once.
    """
    finished = await runExample("async_await.py", receiver.port or 0)
    check(
        finished,
        "alice: accepted",
        "bob: accepted",
        "carol: accepted",
        "dave: accepted",
    )
    assert sorted(delivered(receiver)) == [
        f"{n}@example.com" for n in ("alice", "bob", "carol", "dave")
    ]
    assert receiver.sessionCount == 4


@pytest_twisted.ensureDeferred
async def test_asyncioReactor(receiver: LoopbackReceiver) -> None:
    """
    The asyncio example sends its message with Twisted running on the
    asyncio event loop.
    """
    finished = await runExample("asyncio_reactor.py", receiver.port or 0)
    check(
        finished,
        f"sent under AsyncioSelectorReactor: 250 2.0.0 {QUEUED}",
        "send_messages in an asyncio task: 1 sent",
    )
    assert delivered(receiver) == ["oncall@example.com", "oncall@example.com"]


@pytest_twisted.ensureDeferred
async def test_oneConnection(receiver: LoopbackReceiver) -> None:
    """
    The ESMTPClient example sends three messages over one connection; the
    refused one fails alone and the session goes on.
    """
    finished = await runExample("one_connection.py", receiver.port or 0)
    check(
        finished,
        f"alice@example.com: accepted, 250 2.0.0 {QUEUED}",
        f"bob@example.com: accepted, 250 2.0.0 {QUEUED}",
        "session over; the server called itself localhost",
    )
    assert "reject@example.com: not sent (every recipient was refused" in finished.out
    assert delivered(receiver) == ["alice@example.com", "bob@example.com"]
    assert receiver.sessionCount == 1


@pytest_twisted.ensureDeferred
async def test_senderFactory(receiver: LoopbackReceiver) -> None:
    """
    The factory example sends its message over a connection made with
    C{reactor.connectTCP}.
    """
    finished = await runExample("sender_factory.py", receiver.port or 0)
    check(finished, f"accepted by alice@example.com: 250 2.0.0 {QUEUED}")
    assert delivered(receiver) == ["alice@example.com"]


@pytest_twisted.ensureDeferred
async def test_privateCA(tmp_path: Path, startReceiver: StartReceiver) -> None:
    """
    The private-CA example upgrades with STARTTLS, verifies the receiver's
    certificate against the CA file it is given, and authenticates.
    """
    r = await startReceiver(tls="starttls", credentials={"alice": "wonderland"})
    assert r.caCertificate is not None
    caFile = tmp_path / "ca.pem"
    caFile.write_bytes(r.caCertificate.dumpPEM())
    finished = await runExample(
        "private_ca.py",
        r.port or 0,
        {
            "MAILCLIENT_EXAMPLE_CA": str(caFile),
            "MAILCLIENT_EXAMPLE_USERNAME": "alice",
            "MAILCLIENT_EXAMPLE_PASSWORD": "wonderland",
        },
    )
    check(finished, f"final reply: 250 2.0.0 {QUEUED}")
    assert re.search(r"^TLS: TLSv1\.[23] ", finished.out, re.M), finished.out
    assert re.search(
        r"^authenticated with (PLAIN|LOGIN|CRAM-MD5)$", finished.out, re.M
    ), finished.out
    assert [(d.recipient, d.username, d.tls) for d in r.deliveries] == [
        ("bob@example.com", "alice", True)
    ]


@pytest_twisted.ensureDeferred
async def test_privateCAUntrusted(tmp_path: Path, startReceiver: StartReceiver) -> None:
    """
    With a CA file that did not sign the receiver's certificate, the
    private-CA example fails and nothing is delivered.
    """
    r = await startReceiver(tls="starttls", credentials={"alice": "wonderland"})
    other = await startReceiver(tls="starttls")
    assert other.caCertificate is not None
    caFile = tmp_path / "other-ca.pem"
    caFile.write_bytes(other.caCertificate.dumpPEM())
    finished = await runExample(
        "private_ca.py",
        r.port or 0,
        {
            "MAILCLIENT_EXAMPLE_CA": str(caFile),
            "MAILCLIENT_EXAMPLE_USERNAME": "alice",
            "MAILCLIENT_EXAMPLE_PASSWORD": "wonderland",
        },
    )
    assert finished.status != 0
    assert "TLSHandshakeError" in finished.err
    assert r.deliveries == []


@pytest_twisted.ensureDeferred
async def test_checkServer(receiver: LoopbackReceiver) -> None:
    """
    The server-check example reports what the receiver offers without
    sending mail, and survives a server that answers neither NOOP nor VRFY.
    """
    finished = await runExample("check_server.py", receiver.port or 0)
    check(
        finished,
        "server: localhost",
        "extensions: 8BITMIME",
        "TLS: none; SASL: none",
        "NOOP refused: 500",
        "VRFY refused: 500",
    )
    assert delivered(receiver) == []


@pytest_twisted.ensureDeferred
async def test_extensions(receiver: LoopbackReceiver) -> None:
    """
    The extensions example classifies each recipient's reply, shows that
    DSN was not used with a server that does not offer it, and that
    REQUIRETLS refuses a session without TLS.
    """
    finished = await runExample("extensions.py", receiver.port or 0)
    check(
        finished,
        "alice@example.com: accepted (success, other, retry: none)",
        "reject@example.com: rejected (permanent, address, retry: do-not-retry)",
        "DSN requested: False",
        "REQUIRETLS: not sent (the session is not protected by TLS)",
    )
    assert delivered(receiver) == ["alice@example.com"]


@pytest_twisted.ensureDeferred
async def test_mailer(receiver: LoopbackReceiver) -> None:
    """
    The mailer example delivers twenty newsletters and the editor's copy
    over at most two connections, retries only the deferred recipient, and
    leaves no connection open after the stop.
    """
    finished = await runExample("mailer.py", receiver.port or 0)
    check(
        finished,
        "newsletters accepted: 20",
        "attempt 1: editor@example.com accepted, tempfail@example.com deferred",
        "attempt 2: tempfail@example.com deferred",
        "sent 21, deferred 1, connections opened 2",
        "connections open after stop: 0",
    )
    assert sorted(delivered(receiver)) == sorted(
        [f"reader{n}@example.com" for n in range(20)] + ["editor@example.com"]
    )
    assert receiver.sessionCount == 2


@pytest_twisted.ensureDeferred
async def test_djangoStyle(receiver: LoopbackReceiver) -> None:
    """
    The Django-style example sends over one connection with C{async with},
    then with C{send_mail} and C{send_mass_mail}, reports the refused
    recipient next to the accepted ones, and C{failSilently} turns the
    unreachable server into a count of 0.
    """
    finished = await runExample("django_style.py", receiver.port or 0)
    check(
        finished,
        "send_messages: 2 sent",
        "  alice@example.com: sent 250",
        "  bob@example.com: sent 250",
        "  reject@example.com: rejected 550",
        "send_mail: 1 sent",
        "send_mass_mail: 2 sent",
        "failSilently: 0 sent, SMTPConnectError",
    )
    assert delivered(receiver) == [
        "alice@example.com",
        "bob@example.com",
        "carol@example.com",
        "dave@example.com",
        "erin@example.com",
    ]
    assert receiver.sessionCount == 3


@pytest_twisted.ensureDeferred
async def test_configuration(receiver: LoopbackReceiver) -> None:
    """
    The configuration example loads its settings from a URL, a keyword and
    the environment, prints where each came from (the keyword's timeout
    over the URL's, the URL's C{tls=none} over C{MAILCLIENT_TLS}, the HELO
    name from C{MAILCLIENT_HELO_NAME}), and sends its message with them.
    """
    port = receiver.port or 0
    finished = await runExample(
        "configuration.py",
        port,
        {"MAILCLIENT_HELO_NAME": "example-client.test", "MAILCLIENT_TLS": "starttls"},
    )
    check(
        finished,
        "host = '127.0.0.1' (from url)",
        f"port = {port} (from url)",
        "tls = 'none' (from url)",
        "timeout = 30.0 (from keyword)",
        "heloName = 'example-client.test' (from environment:MAILCLIENT_HELO_NAME)",
        "alice@example.com: accepted 250",
    )
    assert delivered(receiver) == ["alice@example.com"]


@pytest_twisted.ensureDeferred
async def test_testingOutbox() -> None:
    """
    The testing example scripts an in-memory server that rejects one
    recipient, runs the user's code against it on a fake clock (no server
    needed), and checks what the code reported and what the outbox holds.
    """
    finished = await runExample("testing_outbox.py", 0)
    check(
        finished,
        "unreachable: former-employee@example.com",
        "delivered to: alice@example.com, bob@example.com",
        "subject: Service notice",
        "body: Maintenance tonight at 22:00.",
        "server saw: EHLO MAIL RCPT RCPT RCPT DATA QUIT",
    )


@pytest_twisted.ensureDeferred
async def test_compose(receiver: LoopbackReceiver) -> None:
    """
    The compose example sends its text, HTML, inline-image and attachment
    message with C{sendMessage} to its two To recipients and its Bcc
    recipient; every stored copy has the parts and no Bcc header.
    """
    finished = await runExample("compose.py", receiver.port or 0)
    check(
        finished,
        "alice@example.com: accepted 250",
        "bob@example.com: accepted 250",
        "archive@example.com: accepted 250",
    )
    assert delivered(receiver) == [
        "alice@example.com",
        "bob@example.com",
        "archive@example.com",
    ]
    for stored in receiver.deliveries:
        data = stored.read()
        head = data.split(b"\r\n\r\n", 1)[0].lower()
        assert b"\r\nbcc:" not in head and not head.startswith(b"bcc:")
        assert b"archive@example.com" not in data
        assert b"Content-ID: <logo@example.com>" in data
        assert b'filename="figures.csv"' in data


@pytest_twisted.ensureDeferred
async def test_relay(receiver: LoopbackReceiver) -> None:
    """
    The relay example queues its message with the relay (the C{250} names
    the relay's queue id), which delivers it to the receiver as smarthost
    for C{alice@example.com} and returns a non-delivery report from the null
    sender for C{reject@example.com}; nothing is left in the queue.
    """
    finished = await runExample("relay.py", receiver.port or 0)
    assert finished.status == 0, (finished.out, finished.err)
    assert re.search(r"^queued as [0-9A-F]{23}$", finished.out, re.M), finished.out
    check(finished, "delivered 2, failed 1, reports 1, still queued 0")
    assert [(d.sender, d.recipient) for d in receiver.deliveries] == [
        ("app@example.com", "alice@example.com"),
        ("", "app@example.com"),
    ]
    original = receiver.deliveries[0].read()
    assert b"Subject: Your report" in original
    assert b"by relay.example.test (mailclient relay)" in original
    report = receiver.deliveries[1].read()
    assert b"Final-Recipient: rfc822; reject@example.com" in report
    assert b"Status: 5.1.1" in report
