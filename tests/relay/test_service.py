"""
L{mailclient.relay.RelayService}: what the queue holds goes to the
smarthost (a L{mailclient.testing.ScriptedServer} in memory, through a real
L{mailclient.Mailer}), on a fake clock; each recipient's fate is stored
before anything else happens, only pending recipients are retried, and
senders get a report for the ones that cannot be delivered.
"""

from __future__ import annotations

import email
import email.policy
import errno
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock

from mailclient import Mailer, SendResult, errors
from mailclient.relay import MessageQueue, QueueEntry, QueueError, RelayService
from mailclient.relay.queue import FileSystem
from mailclient.testing import MemoryEndpoint, ScriptedServer, runFor, settle

SENDER = "app@example.com"
MESSAGE = b"Subject: hello\r\nMessage-ID: <m1@example.com>\r\n\r\nHello.\r\n"
BASE = 60.0


@attrs.define
class Setup:
    """
    A relay service on a fake clock, delivering to an in-memory smarthost.

    @ivar clock: the clock; the service's wall clock is C{clock.seconds}.
    @ivar server: the smarthost.
    @ivar queue: the queue the service reads.
    @ivar service: the service (running).
    """

    clock: Clock
    server: ScriptedServer
    queue: MessageQueue
    service: RelayService

    def add(self, recipients: list[str], message: bytes = MESSAGE, **kw: Any) -> str:
        """
        Queue C{message} and tell the service; return its id.
        """
        entry = self.queue.add(kw.pop("sender", SENDER), recipients, message, **kw)
        self.service.submitted(entry)
        return entry.id

    def entry(self, queueID: str) -> QueueEntry:
        """
        The entry C{queueID} as a fresh read of the queue directory finds
        it.
        """
        [entry] = [
            e for e in MessageQueue(self.queue.directory).open() if e.id == queueID
        ]
        return entry

    def onDisk(self) -> list[str]:
        """
        The ids of the entries on disk.
        """
        return list(self.queue.entries())


def makeSetup(
    tmp_path: Path,
    *,
    fileSystem: FileSystem | None = None,
    start: bool = True,
    **options: Any,
) -> Setup:
    """
    A L{Setup} with its queue in C{tmp_path}, the smarthost's C{server}
    options taken from C{options["server"]} and the service's from the rest.
    """
    clock = Clock()
    clock.advance(1_700_000_000)
    server = ScriptedServer(clock, **options.pop("server", {}))
    mailer = Mailer(
        "smarthost.test",
        tls="none",
        endpoint=MemoryEndpoint(clock, server),
        reactor=clock,
        retries=0,
        timeout=30,
    )
    queue = MessageQueue(
        str(tmp_path / "queue"), fileSystem=fileSystem, now=clock.seconds
    )
    options.setdefault("retryBaseDelay", BASE)
    service = RelayService(
        queue, mailer, hostname="relay.test", clock=clock, now=clock.seconds, **options
    )
    if start:
        service.startService()
    return Setup(clock, server, queue, service)


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    """
    A running L{Setup}, stopped at the end.
    """
    s = makeSetup(tmp_path)
    yield s
    s.service.stopService()
    settle(s.clock)


def reports(server: ScriptedServer) -> list[email.message.EmailMessage]:
    """
    The non-delivery reports the smarthost received.
    """
    found = []
    for delivery in server.outbox:
        if delivery.sender == "":
            found.append(
                email.message_from_bytes(delivery.data, policy=email.policy.default)
            )
    return found  # type: ignore[return-value]


def test_delivered(setup: Setup) -> None:
    """
    A queued message goes to the smarthost at once, for every recipient,
    exactly as queued; the entry is then removed from the queue.
    """
    setup.add(["a@x.example", "b@x.example"])
    settle(setup.clock)
    [delivery] = setup.server.outbox
    assert delivery.sender == SENDER
    assert delivery.recipients == ("a@x.example", "b@x.example")
    assert delivery.data == MESSAGE
    assert setup.onDisk() == []
    stats = setup.service.stats()
    assert (stats.queued, stats.delivered, stats.deferred, stats.failed) == (0, 2, 0, 0)


def test_onlyPendingRecipientsRetried(setup: Setup) -> None:
    """
    A recipient deferred with 4xx stays pending (stored, with the reply)
    and is the only one sent again, after C{retryBaseDelay}; the one
    accepted the first time is not sent the message twice.
    """
    setup.server.rule("RCPT", match="later@", times=1, reply=b"450 4.2.1 try later")
    queueID = setup.add(["now@x.example", "later@x.example"])
    settle(setup.clock)
    assert [d.recipients for d in setup.server.outbox] == [("now@x.example",)]
    entry = setup.entry(queueID)
    states = {r.address: (r.state, r.code) for r in entry.recipients}
    assert states == {
        "now@x.example": ("delivered", 250),
        "later@x.example": ("pending", 450),
    }
    assert entry.attempts == 1
    assert entry.nextAttempt == setup.clock.seconds() + BASE
    runFor(setup.clock, BASE - 1)
    assert len(setup.server.outbox) == 1
    runFor(setup.clock, 1)
    assert [d.recipients for d in setup.server.outbox] == [
        ("now@x.example",),
        ("later@x.example",),
    ]
    assert setup.onDisk() == []


def test_retryDelaysDouble(tmp_path: Path) -> None:
    """
    The delay between attempts doubles from C{retryBaseDelay} up to
    C{retryMaxDelay}.
    """
    s = makeSetup(tmp_path, retryMaxDelay=300.0)
    s.server.rule("RCPT", reply=b"451 4.3.0 busy")
    queueID = s.add(["a@x.example"])
    settle(s.clock)
    delays = []
    for _ in range(5):
        entry = s.entry(queueID)
        delay = entry.nextAttempt - s.clock.seconds()
        delays.append(delay)
        runFor(s.clock, delay)
    assert delays == [60.0, 120.0, 240.0, 300.0, 300.0]
    assert s.entry(queueID).attempts == 6


def test_rejectedGetsAReport(setup: Setup) -> None:
    """
    A recipient refused with 5xx is C{"failed"} and its sender gets one
    report from the null sender, naming that recipient with the server's
    reply; the accepted recipient is delivered as usual.
    """
    setup.server.rule("RCPT", match="gone@", status=(550, "5.1.1", "no such user"))
    setup.add(["ok@x.example", "gone@x.example"])
    settle(setup.clock)
    assert [d.recipients for d in setup.server.outbox] == [
        ("ok@x.example",),
        (SENDER,),
    ]
    [report] = reports(setup.server)
    assert report.get_content_type() == "multipart/report"
    text = setup.server.outbox[1].data.decode("ascii")
    assert "Final-Recipient: rfc822; gone@x.example" in text
    assert "Status: 5.1.1" in text
    assert "Diagnostic-Code: smtp; 550" in text
    assert "ok@x.example" not in text.split("message/delivery-status", 1)[1]
    assert setup.onDisk() == []
    assert setup.service.stats().bounces == 1


def test_expiredGetsAReport(tmp_path: Path) -> None:
    """
    A recipient still deferred C{maxLifetime} after arrival is given up
    on: C{"failed"}, with a report (C{Status: 4.4.7}), and no more
    attempts.
    """
    s = makeSetup(tmp_path, maxLifetime=1000.0, retryMaxDelay=400.0)
    s.server.rule("RCPT", match="slow@", reply=b"450 4.2.1 mailbox busy")
    s.add(["slow@x.example"])
    runFor(s.clock, 2000)
    assert len(reports(s.server)) == 1
    raw = s.server.outbox[-1].data.decode("ascii")
    assert "Status: 4.4.7" in raw
    assert "gave up after 1000 s" in raw
    assert s.onDisk() == []
    attempts = [r for r in s.server.connections for v in r.verbs() if v == "DATA"]
    runFor(s.clock, 5000)
    assert len([r for r in s.server.connections for v in r.verbs() if v == "DATA"]) == (
        len(attempts)
    )


def test_noReportForTheNullSender(setup: Setup) -> None:
    """
    A message from the null sender that cannot be delivered gets no
    report (a report is never answered with a report): it is dropped, and
    so is a report that cannot be delivered.
    """
    setup.server.rule("RCPT", status=(550, "5.1.1", "no such user"))
    setup.add(["gone@x.example"], sender="")
    setup.add(["gone@x.example"], isBounce=True)
    settle(setup.clock)
    assert setup.server.outbox == []
    assert setup.onDisk() == []
    assert setup.service.stats().bounces == 0


def test_connectionLostAfterDataIsRetried(setup: Setup) -> None:
    """
    A connection lost after the end of the data leaves the recipient
    "unknown" to the client: the relay keeps it pending and sends it again
    (a duplicate is better than a loss).
    """
    setup.server.rule("END-OF-DATA", drop=True, times=1)
    queueID = setup.add(["a@x.example"])
    settle(setup.clock)
    entry = setup.entry(queueID)
    assert entry.pending == ("a@x.example",)
    assert entry.lastError is not None
    runFor(setup.clock, BASE)
    assert setup.onDisk() == []
    assert [d.recipients for d in setup.server.outbox] == [("a@x.example",)]


def test_permanentClientErrorFails(setup: Setup) -> None:
    """
    A recipient our client refuses to send to (a non-ASCII local part for
    a smarthost without SMTPUTF8) can never be delivered: it fails at
    once, with a report.
    """
    setup.add(["jos\u00e9@x.example"])
    settle(setup.clock)
    assert len(reports(setup.server)) == 1
    assert "UnsupportedFeatureError" in setup.server.outbox[0].data.decode("ascii")
    assert setup.onDisk() == []


def test_queueReadAtStart(tmp_path: Path) -> None:
    """
    Entries on disk when the service starts (after a crash or a restart)
    are delivered: those due at once, and the others at their
    C{nextAttempt}.
    """
    s = makeSetup(tmp_path, start=False)
    now = s.clock.seconds()
    s.queue.open()
    due = s.queue.add(SENDER, ["due@x.example"], MESSAGE)
    later = s.queue.add(SENDER, ["later@x.example"], MESSAGE)
    s.queue.update(attrs.evolve(later, nextAttempt=now + 500))
    s.service.startService()
    settle(s.clock)
    assert [d.recipients for d in s.server.outbox] == [("due@x.example",)]
    assert s.onDisk() == [later.id]
    runFor(s.clock, 500)
    assert s.onDisk() == []
    assert due.id != later.id


class Held:
    """
    A deliverer whose sends wait until the test fires them.

    @ivar calls: the Deferred of every send, in order, with its recipients.
    """

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], Deferred[SendResult]]] = []

    def send(
        self, fromAddress: str, toAddresses: list[str], message: object
    ) -> Deferred[SendResult]:
        """
        Record the send; its Deferred is fired by the test.
        """
        d: Deferred[SendResult] = Deferred()
        self.calls.append((toAddresses, d))
        return d


def test_maxInFlight(tmp_path: Path) -> None:
    """
    At most C{maxInFlight} deliveries are under way at once; the others
    wait their turn and all are delivered.
    """

    clock = Clock()
    held = Held()
    queue = MessageQueue(str(tmp_path / "q"), now=clock.seconds)
    service = RelayService(
        queue,
        held,
        hostname="relay.test",
        clock=clock,
        now=clock.seconds,
        maxInFlight=2,
    )
    service.startService()
    for n in range(5):
        service.submitted(queue.add(SENDER, [f"r{n}@x.example"], MESSAGE))
    assert len(held.calls) == 2
    assert service.stats().inFlight == 2
    held.calls[0][1].errback(errors.ConnectionLostError("DATA", "gone"))
    assert len(held.calls) == 3
    idle = service.whenIdle()
    assert not idle.called
    for _, d in held.calls[1:]:
        d.errback(errors.ConnectionLostError("DATA", "gone"))
    for _, d in held.calls[3:]:
        d.errback(errors.ConnectionLostError("DATA", "gone"))
    assert idle.called
    assert service.stats().deferred == 5


def test_failingUpdateKeepsDelivering(tmp_path: Path) -> None:
    """
    When the new state of an entry cannot be stored (the disk is full),
    the relay logs it and goes on with the state it has in memory: the
    pending recipient is still retried; the entry on disk keeps its older
    state (after a crash, a recipient may get the message twice, never
    not at all).
    """

    class FullOnUpdate(FileSystem):
        full = False

        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if self.full and path.endswith(".json.new"):
                raise OSError(28, "No space left on device")
            return super().open(path, flags, mode)

    fs = FullOnUpdate()
    s = makeSetup(tmp_path, fileSystem=fs)
    s.server.rule("RCPT", match="b@", times=1, reply=b"450 4.2.1 later")
    queueID = s.add(["a@x.example", "b@x.example"])
    fs.full = True
    settle(s.clock)
    assert s.entry(queueID).pending == ("a@x.example", "b@x.example")
    runFor(s.clock, BASE)
    assert [d.recipients for d in s.server.outbox] == [
        ("a@x.example",),
        ("b@x.example",),
    ]
    fs.full = False


def test_reportThatCannotBeQueuedIsRetried(tmp_path: Path) -> None:
    """
    When the report cannot be queued (the disk is full), the failed
    recipient stays pending, so that the next attempt reports it again:
    no refusal goes unreported.
    """

    class FullForNewMessages(FileSystem):
        full = False

        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if self.full and path.endswith(".eml") and "/tmp/" in path:
                raise OSError(28, "No space left on device")
            return super().open(path, flags, mode)

    fs = FullForNewMessages()
    s = makeSetup(tmp_path, fileSystem=fs)
    s.server.rule("RCPT", match="gone@", status=(550, "5.1.1", "no such user"))
    queueID = s.add(["gone@x.example"])
    fs.full = True
    settle(s.clock)
    assert s.entry(queueID).pending == ("gone@x.example",)
    fs.full = False
    runFor(s.clock, BASE)
    assert len(reports(s.server)) == 1
    assert s.onDisk() == []


def test_unreadableMessageIsDeferred(setup: Setup) -> None:
    """
    A message file that cannot be opened is a local failure: the
    recipients stay pending, with the error.
    """
    entry = setup.queue.add(SENDER, ["a@x.example"], MESSAGE)
    Path(setup.queue.messagePath(entry.id)).chmod(0)
    Path(setup.queue.messagePath(entry.id)).rename(
        setup.queue.messagePath(entry.id) + ".gone"
    )
    setup.service.submitted(entry)
    settle(setup.clock)
    stored = setup.entry(entry.id)
    assert stored.pending == ("a@x.example",)
    assert stored.lastError is not None and "QueueError" in stored.lastError
    assert setup.server.outbox == []


def test_stopDuringDelivery(tmp_path: Path) -> None:
    """
    Stopping the service cancels the scheduled retries; a delivery under
    way still stores its result; nothing is attempted after the stop.
    """
    s = makeSetup(tmp_path)
    s.server.rule("RCPT", match="later@", reply=b"450 4.2.1 later")
    s.add(["later@x.example"])
    settle(s.clock)
    s.service.stopService()
    settle(s.clock)
    runFor(s.clock, 10 * BASE)
    connections = len(s.server.connections)
    assert connections == 1
    assert s.onDisk() != []


def test_deliverDirectlyWithoutAMailer(tmp_path: Path) -> None:
    """
    Any object with a Mailer's C{send} will do as the deliverer; an error
    without a result defers every pending recipient with its description.
    """

    class Failing:
        def send(
            self, fromAddress: str, toAddresses: list[str], message: object
        ) -> Deferred[SendResult]:
            return fail(errors.SMTPConnectError("connection refused"))

    clock = Clock()
    queue = MessageQueue(str(tmp_path / "q"), now=clock.seconds)
    service = RelayService(
        queue, Failing(), hostname="relay.test", clock=clock, now=clock.seconds
    )
    service.startService()
    entry = queue.add(SENDER, ["a@x.example"], MESSAGE)
    service.submitted(entry)
    [stored] = MessageQueue(queue.directory).open()
    assert stored.pending == ("a@x.example",)
    assert stored.recipients[0].text.startswith("SMTPConnectError")
    with pytest.raises(QueueError):
        queue.openMessage(attrs.evolve(stored, id="missing"))


def test_oneRelayPerQueue(tmp_path: Path) -> None:
    """
    A second relay cannot start on a queue that a running relay holds (it
    would delete the first one's submissions in progress, and both would
    deliver the same messages); once the first stops, it can.
    """
    first = makeSetup(tmp_path)
    second = makeSetup(tmp_path, start=False)
    with pytest.raises(QueueError, match="in use by another relay"):
        second.service.startService()
    assert not second.service.running
    first.queue.lock()
    first.service.stopService()
    settle(first.clock)
    second.service.startService()
    assert second.service.running
    first.queue.unlock()
    second.service.stopService()
    settle(second.clock)
    first.service.startService()
    first.service.stopService()
    settle(first.clock)


def test_submittedAgain(tmp_path: Path) -> None:
    """
    An entry submitted again while it is being delivered, waiting for a
    retry, or waiting for its turn is delivered once at a time: no second
    delivery runs beside the first, and a new due time replaces the old
    one.
    """
    clock = Clock()
    held = Held()
    queue = MessageQueue(str(tmp_path / "q"), now=clock.seconds)
    service = RelayService(
        queue,
        held,
        hostname="relay.test",
        clock=clock,
        now=clock.seconds,
        maxInFlight=1,
    )
    service.startService()
    first = queue.add(SENDER, ["a@x.example"], MESSAGE)
    second = queue.add(SENDER, ["b@x.example"], MESSAGE)
    service.submitted(first)
    service.submitted(second)
    service.submitted(second)
    service.submitted(first)
    assert [to for to, _ in held.calls] == [["a@x.example"]]
    held.calls[0][1].errback(errors.ConnectionLostError("DATA", "gone"))
    assert [to for to, _ in held.calls] == [["a@x.example"], ["b@x.example"]]
    held.calls[1][1].errback(errors.ConnectionLostError("DATA", "gone"))
    assert len(held.calls) == 2
    later = attrs.evolve(first, nextAttempt=clock.seconds() + 10)
    service.submitted(later)
    service.submitted(attrs.evolve(later, nextAttempt=clock.seconds() + 20))
    clock.advance(10)
    assert len(held.calls) == 2
    clock.advance(10)
    assert len(held.calls) == 3


def test_defaultClock(tmp_path: Path) -> None:
    """
    Without a clock, the service uses the global reactor.
    """
    from twisted.internet import reactor

    service = RelayService(
        MessageQueue(str(tmp_path / "q")), Held(), hostname="relay.test"
    )
    assert service._clock is reactor


def test_removeFailure(tmp_path: Path) -> None:
    """
    When a delivered entry cannot be removed (its envelope cannot be
    unlinked), the relay logs it and forgets the entry: it stays on disk,
    so a restart would deliver it again (a duplicate, never a loss).
    """

    class NoUnlink(FileSystem):
        def unlink(self, path: str) -> None:
            if path.endswith(".json"):
                raise OSError(errno.EACCES, "Permission denied")
            super().unlink(path)

    s = makeSetup(tmp_path, fileSystem=NoUnlink())
    queueID = s.add(["a@x.example"])
    settle(s.clock)
    assert len(s.server.outbox) == 1
    assert s.onDisk() == [queueID]
    assert s.service.stats().queued == 0


def test_reportWithoutTheOriginal(tmp_path: Path) -> None:
    """
    When the message file is gone by the time a report is made, the
    report is still sent, without the original's header section.
    """

    class Vanishing:
        def send(
            self, fromAddress: str, toAddresses: list[str], message: object
        ) -> Deferred[SendResult]:
            os.unlink(queue.messagePath(entry.id))
            return fail(errors.InvalidArgumentError("toAddress", "x", "refused"))

    clock = Clock()
    queue = MessageQueue(str(tmp_path / "q"), now=clock.seconds)
    service = RelayService(
        queue, Vanishing(), hostname="relay.test", clock=clock, now=clock.seconds
    )
    service.startService()
    entry = queue.add(SENDER, ["a@x.example"], MESSAGE)
    service.submitted(entry)
    [report] = [e for e in MessageQueue(queue.directory).open() if e.isBounce]
    content = Path(queue.messagePath(report.id)).read_bytes()
    parsed = email.message_from_bytes(content, policy=email.policy.default)
    parts = [p.get_content_type() for p in parsed.iter_parts()]
    assert parts[-1] == "text/rfc822-headers"
    assert b"Subject: hello" not in content
