"""
The relay under faults, over loopback TCP with the real reactor: the
application submits with L{mailclient.sendmail} to a L{mailclient.relay.Relay}
listening on 127.0.0.1, which delivers through a L{mailclient.Mailer} to a
L{mailclient.testing.ScriptedServer} smarthost on 127.0.0.1.

  - a full disk, or a failing C{fsync}, during a submission: the
    application gets a 4xx and the message is not half-queued;
  - a smarthost that resets the connection in the middle of the data: the
    message is deferred and retried, and arrives once;
  - a thousand submissions at once: all queued, none lost, and a new
    relay on the same queue delivers each exactly once.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from mailclient import Mailer, errors, sendmail
from mailclient.relay import MessageQueue, Relay
from mailclient.relay.queue import FileSystem
from mailclient.testing import ScriptedServer

reactor: Any = _reactor
SENDER = "app@example.com"
TIMEOUT = 30.0


def portOf(port: IListeningPort) -> int:
    """
    The port number C{port} listens on.
    """
    address = port.getHost()
    assert isinstance(address, IPv4Address)
    return address.port


class Stack:
    """
    A smarthost and a relay in front of it, both on 127.0.0.1; everything
    is stopped by L{close}.
    """

    def __init__(self, queueDirectory: Path) -> None:
        self.queueDirectory = queueDirectory
        self.smarthost = ScriptedServer(reactor, hostname="smarthost.test")
        self._ports: list[IListeningPort] = []
        self.smarthostPort = self.listen(self.smarthost)
        self.relays: list[Relay] = []

    def listen(self, factory: Any) -> int:
        """
        Listen with C{factory} on a free port of 127.0.0.1; its number.
        """
        port = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=1024)
        self._ports.append(port)
        return portOf(port)

    def relay(
        self, *, fileSystem: FileSystem | None = None, now: Any = None, **options: Any
    ) -> tuple[Relay, int]:
        """
        Start a relay on the queue directory, listening on a free port;
        the relay and its port.
        """
        mailer = Mailer(
            "127.0.0.1",
            port=self.smarthostPort,
            tls="none",
            retries=0,
            timeout=TIMEOUT,
            reactor=reactor,
        )
        relay = Relay(
            str(self.queueDirectory),
            mailer,
            hostname="relay.test",
            clock=reactor,
            now=now,
            **options,
        )
        if fileSystem is not None:
            relay.queue._fs = fileSystem
        relay.startService()
        self.relays.append(relay)
        return relay, self.listen(relay.factory)

    async def close(self) -> None:
        """
        Stop every relay and close every port.
        """
        for relay in self.relays:
            if relay.running:
                await relay.stopService()
        for port in self._ports:
            await defer.maybeDeferred(port.stopListening)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    """
    A L{Stack} with its queue in C{tmp_path}, closed afterwards.
    """
    s = Stack(tmp_path / "queue")
    yield s
    pytest_twisted.blockon(defer.Deferred.fromCoroutine(s.close()))


def submit(port: int, recipients: list[str], message: bytes) -> defer.Deferred[Any]:
    """
    Submit C{message} to the relay on C{port}, as an application would.
    """
    return sendmail(
        "127.0.0.1",
        SENDER,
        recipients,
        message,
        port=port,
        tls="none",
        retries=0,
        timeout=TIMEOUT,
        reactor=reactor,
    )


def queueFiles(directory: Path) -> list[str]:
    """
    Every file under the queue directory, relative to it.
    """
    return sorted(
        str(path.relative_to(directory))
        for path in directory.rglob("*")
        if path.is_file()
    )


class Breaking(FileSystem):
    """
    A file system whose C{failing} call fails with C{error} while
    C{broken} is set.
    """

    def __init__(self, failing: str, error: int) -> None:
        self.failing = failing
        self.error = error
        self.broken = True

    def _check(self, call: str) -> None:
        if self.broken and call == self.failing:
            raise OSError(self.error, os.strerror(self.error))

    def write(self, fd: int, data: bytes) -> int:
        """
        C{os.write}, or the failure.
        """
        self._check("write")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        """
        C{os.fsync}, or the failure.
        """
        self._check("fsync")
        super().fsync(fd)


@pytest.mark.parametrize(
    ("failing", "error", "code"),
    [
        ("write", errno.ENOSPC, 452),
        ("fsync", errno.EIO, 451),
        ("fsync", errno.ENOSPC, 452),
    ],
    ids=["disk-full", "fsync-fails", "fsync-disk-full"],
)
@pytest_twisted.ensureDeferred
async def test_storageFailureDuringSubmission(
    stack: Stack, failing: str, error: int, code: int
) -> None:
    """
    A full disk or a failing C{fsync} while a submission is stored: the
    application's send fails with the relay's transient C{451}/C{452}
    (so it keeps the message), nothing of it is in the queue, and nothing
    reaches the smarthost; once the disk works again the same submission
    is queued and delivered.
    """
    fs = Breaking(failing, error)
    relay, port = stack.relay(fileSystem=fs)
    message = b"Subject: important\r\n\r\n" + b"payload line\r\n" * 2000
    with pytest.raises(errors.SendFailedError) as caught:
        await submit(port, ["a@x.example"], message)
    failure = caught.value
    assert failure.result is not None
    refusals = [r.code for r in failure.result.recipients.values()]
    assert refusals == [code] or getattr(failure, "code", None) == code, failure
    assert failure.result.recipients["a@x.example"].status == "deferred"
    assert queueFiles(stack.queueDirectory) == ["lock"]
    assert list(relay.queue.entries()) == []
    assert stack.smarthost.outbox == []

    fs.broken = False
    result = await submit(port, ["a@x.example"], message)
    assert result.accepted == ("a@x.example",)
    await relay.delivery.whenIdle()
    [delivery] = stack.smarthost.outbox
    assert delivery.data.endswith(message)
    assert list(relay.queue.entries()) == []


@pytest_twisted.ensureDeferred
async def test_smarthostResetsMidData(stack: Stack) -> None:
    """
    The smarthost resets the connection halfway through the data: the
    recipient is deferred (stored with the error) and retried after the
    delay, and the message arrives once, whole.
    """
    stack.smarthost.rule("DATA", dropAfter=20_000, abort=True, times=1)
    relay, port = stack.relay(retryBaseDelay=0.5)
    message = b"Subject: big\r\n\r\n" + (b"0123456789" * 7 + b"\r\n") * 1000
    result = await submit(port, ["a@x.example"], message)
    queueID = result.reply.text.rsplit(" ", 1)[-1]
    await relay.delivery.whenIdle()
    [entry] = [e for e in type(relay.queue)(relay.queue.directory).open()]
    assert entry.id == queueID
    assert entry.pending == ("a@x.example",)
    assert entry.attempts == 1
    assert entry.lastError is not None
    assert "ConnectionLostError" in entry.lastError
    assert entry.recipients[0].text.startswith("ConnectionLostError")
    assert stack.smarthost.outbox == []
    for _ in range(100):
        await deferLater(reactor, 0.1, lambda: None)
        await relay.delivery.whenIdle()
        if stack.smarthost.outbox:
            break
    [delivery] = stack.smarthost.outbox
    assert delivery.data.endswith(message)
    assert list(relay.queue.entries()) == []
    assert len(stack.smarthost.connections) == 2


def raiseFileLimit(wanted: int) -> Callable[[], None]:
    """
    Raise the soft limit of open files to C{wanted} (and the hard limit,
    when it is lower and we may: root); skip the test when that is not
    possible.  Return what restores the soft limit.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return lambda: None
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        except (ValueError, OSError):
            pytest.skip(f"needs {wanted} open files, the hard limit is {hard}")
        return lambda: None
    resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


SUBMISSIONS = 1000


@pytest_twisted.ensureDeferred
async def test_thousandConcurrentSubmissions(stack: Stack) -> None:
    """
    A thousand applications submit at once, each on its own connection,
    while the smarthost refuses every delivery for now (4xx): every
    submission is acknowledged, and every one is on disk, whole.  Then a
    new relay on the same queue delivers each message exactly once when
    the smarthost accepts again.
    """
    restore = raiseFileLimit(2 * SUBMISSIONS + 512)
    try:
        stack.smarthost.rule("MAIL", reply=b"451 4.3.0 not now")
        relay, port = stack.relay(retryBaseDelay=3600.0)

        def message(n: int) -> bytes:
            return f"Subject: message {n}\r\n\r\nbody of message {n}\r\n".encode()

        results = await defer.gatherResults(
            [submit(port, [f"r{n}@x.example"], message(n)) for n in range(SUBMISSIONS)],
            consumeErrors=True,
        )
        ids = {r.reply.text.rsplit(" ", 1)[-1] for r in results}
        assert len(ids) == SUBMISSIONS
        await relay.delivery.whenIdle()
        assert set(relay.queue.entries()) == ids
        assert stack.smarthost.outbox == []
        for entry in type(relay.queue)(relay.queue.directory).open():
            [address] = entry.pending
            n = int(address[1:].split("@")[0])
            content = Path(relay.queue.messagePath(entry.id)).read_bytes()
            assert content.endswith(message(n))

        # Stop this relay (with nothing in flight it writes nothing: the
        # queue is what a crash would leave) and start a new one on the same
        # queue, two hours later, when the smarthost accepts again.
        await relay.stopService()
        stack.smarthost.rules.clear()
        revived, _ = stack.relay(now=lambda: time.time() + 7200)
        for _ in range(600):
            await deferLater(reactor, 0.1, lambda: None)
            if len(stack.smarthost.outbox) >= SUBMISSIONS:
                break
        await revived.delivery.whenIdle()
        delivered = sorted(d.recipients[0] for d in stack.smarthost.outbox)
        assert delivered == sorted(f"r{n}@x.example" for n in range(SUBMISSIONS))
        assert list(revived.queue.entries()) == []
    finally:
        restore()


def freePort() -> int:
    """
    A port of 127.0.0.1 that nothing listens on (just closed).
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


async def untilListening(port: int, process: subprocess.Popen[bytes]) -> None:
    """
    Wait until something accepts connections on C{port} of 127.0.0.1
    (at most 30 s, and only while C{process} runs).
    """
    import socket

    for _ in range(300):
        assert process.poll() is None, "the relay exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        await deferLater(reactor, 0.1, lambda: None)
    raise AssertionError("the relay never listened")


CRASH_SUBMISSIONS = 400


@pytest_twisted.ensureDeferred
async def test_killedRelayLosesNothingAcknowledged(tmp_path: Path) -> None:
    """
    C{twistd mailclient-relay} is killed with SIGKILL while hundreds of
    submissions are under way: every submission it acknowledged with
    C{250} is in the queue afterwards, whole (none lost, none half
    written), and a new relay on the same queue delivers each exactly
    once.  Submissions cut off by the kill fail at the application, which
    still has them.
    """
    restore = raiseFileLimit(2 * CRASH_SUBMISSIONS + 512)
    queue = tmp_path / "queue"
    listen = freePort()
    log = (tmp_path / "twistd.log").open("wb")
    process = subprocess.Popen(
        [
            os.path.join(os.path.dirname(sys.executable), "twistd"),
            "--nodaemon",
            "--pidfile=",
            "--logfile=-",
            "mailclient-relay",
            "--smarthost",
            f"smtp://127.0.0.1:{freePort()}",
            "--queue",
            str(queue),
            "--listen",
            f"tcp:{listen}:interface=127.0.0.1:backlog=1024",
            "--retry-base",
            "3600",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        await untilListening(listen, process)
        acknowledged: dict[str, int] = {}
        failed: list[int] = []
        killed = defer.Deferred[None]()

        def message(n: int) -> bytes:
            return f"Subject: message {n}\r\n\r\n".encode() + b"line\r\n" * 200

        def outcome(result: Any, n: int) -> None:
            if isinstance(result, Failure):
                failed.append(n)
                return
            acknowledged[result.reply.text.rsplit(" ", 1)[-1]] = n
            if len(acknowledged) == CRASH_SUBMISSIONS // 3 and not killed.called:
                process.kill()
                killed.callback(None)

        sends = []
        for n in range(CRASH_SUBMISSIONS):
            d = submit(listen, [f"r{n}@x.example"], message(n))
            d.addBoth(outcome, n)
            sends.append(d)
        await defer.gatherResults(sends)
        assert killed.called
        assert process.wait(timeout=30) == -signal.SIGKILL
        assert len(acknowledged) + len(failed) == CRASH_SUBMISSIONS
        assert acknowledged, "nothing was acknowledged before the kill"
        assert failed, "the kill came after every submission"

        # What the next start finds: every acknowledged entry, whole.
        survivors = {e.id: e for e in MessageQueue(str(queue)).open()}
        assert set(acknowledged) <= set(survivors)
        for queueID, n in acknowledged.items():
            assert survivors[queueID].pending == (f"r{n}@x.example",)
            content = (queue / "messages" / f"{queueID}.eml").read_bytes()
            assert content.endswith(message(n))
        assert list((queue / "tmp").iterdir()) == []

        # A new relay on the same queue delivers each one exactly once.
        smarthost = ScriptedServer(reactor, hostname="smarthost.test")
        port = reactor.listenTCP(0, smarthost, interface="127.0.0.1")
        try:
            mailer = Mailer(
                "127.0.0.1", port=portOf(port), tls="none", retries=0, reactor=reactor
            )
            relay = Relay(
                str(queue),
                mailer,
                hostname="relay.test",
                clock=reactor,
                now=lambda: time.time() + 7200,
            )
            relay.startService()
            try:
                for _ in range(600):
                    await deferLater(reactor, 0.1, lambda: None)
                    if len(smarthost.outbox) >= len(survivors):
                        break
                await relay.delivery.whenIdle()
            finally:
                await relay.stopService()
        finally:
            await defer.maybeDeferred(port.stopListening)
        delivered = sorted(d.recipients[0] for d in smarthost.outbox)
        assert delivered == sorted(e.pending[0] for e in survivors.values())
        assert len(set(delivered)) == len(delivered)
        assert list(MessageQueue(str(queue)).entries()) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        restore()
