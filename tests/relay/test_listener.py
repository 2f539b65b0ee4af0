"""
L{mailclient.relay.SubmissionServer}: Twisted's ESMTP server, writing
submissions into the durable queue, driven by hand over a
C{StringTransport} on a fake clock.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.interfaces import IAddress
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from mailclient.relay import MessageQueue, QueueEntry, SubmissionFactory
from mailclient.relay.queue import FileSystem

HELLO = b"Subject: hi\r\n\r\nHello.\r\n"


class Session:
    """
    One submission connection driven by hand.

    @ivar queued: the entries the factory reported as queued.
    """

    def __init__(
        self,
        tmp_path: Path,
        *,
        fileSystem: FileSystem | None = None,
        peer: IAddress | None = None,
        **options: object,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.queue = MessageQueue(
            str(tmp_path / "queue"), fileSystem=fileSystem, now=self.clock.seconds
        )
        self.queue.open()
        self.queued: list[QueueEntry] = []
        self.factory = SubmissionFactory(
            self.queue,
            hostname="relay.test",
            onSubmitted=self.queued.append,
            clock=self.clock,
            **options,  # type: ignore[arg-type]
        )
        self.server = self.factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 2525))
        self.transport = StringTransport(
            peerAddress=peer or IPv4Address("TCP", "127.0.0.1", 40001)
        )
        self.server.makeConnection(self.transport)

    def say(self, *lines: bytes) -> list[bytes]:
        """
        Send C{lines} (each ended with CRLF) in one segment; return the
        reply lines the server wrote since the last call.
        """
        self.transport.clear()
        self.server.dataReceived(b"".join(line + b"\r\n" for line in lines))
        written: bytes = self.transport.value()
        return written.splitlines()

    def submit(
        self, message: bytes = HELLO, recipients: tuple[str, ...] = ("a@x.example",)
    ) -> list[bytes]:
        """
        A whole transaction for C{message}, as a client using PIPELINING
        sends it: the envelope and DATA in one segment, then the data once
        the C{354} came; the replies.
        """
        lines = [b"MAIL FROM:<app@example.com>"]
        lines += [f"RCPT TO:<{r}>".encode() for r in recipients]
        lines += [b"DATA"]
        replies = self.say(*lines)
        if not replies[-1].startswith(b"354"):
            return replies
        body = message[:-2] if message.endswith(b"\r\n") else message
        lines = [
            b"." + line if line.startswith(b".") else line
            for line in body.split(b"\r\n")
        ]
        return replies + self.say(*lines, b".")

    def files(self) -> list[str]:
        """
        Every file in the queue directory, relative to it.
        """
        found = []
        for base, _, names in os.walk(self.queue.directory):
            for name in names:
                found.append(
                    os.path.relpath(os.path.join(base, name), self.queue.directory)
                )
        return sorted(found)


@pytest.fixture
def session(tmp_path: Path) -> Session:
    """
    A connected session, past EHLO.
    """
    s = Session(tmp_path)
    s.say(b"EHLO app.example")
    return s


def test_greetingAndCapabilities(tmp_path: Path) -> None:
    """
    The greeting names the relay; EHLO advertises SIZE (the limit),
    8BITMIME and PIPELINING, and no AUTH (there is no authenticator).
    """
    s = Session(tmp_path, maxMessageSize=1000)
    assert s.transport.value() == b"220 relay.test ESMTP mailclient relay\r\n"
    reply = s.say(b"EHLO app.example")
    assert reply[0].startswith(b"250-relay.test")
    assert set(reply[1:]) == {b"250-SIZE 1000", b"250-8BITMIME", b"250 PIPELINING"} or {
        line[4:] for line in reply[1:]
    } == {b"SIZE 1000", b"8BITMIME", b"PIPELINING"}
    assert not any(b"AUTH" in line for line in reply)


def test_queuedOnceForEveryRecipient(session: Session) -> None:
    """
    A message for three recipients is queued once, with all three, with a
    C{Received} field added and the dot-stuffing undone; the C{250} names
    the queue id, and the factory is told.
    """
    message = b"Subject: hi\r\n\r\n.leading dot\r\nline\r\n"
    replies = session.submit(message, ("a@x.example", "b@x.example", "c@x.example"))
    [entry] = session.queued
    assert replies[-1] == f"250 2.0.0 Ok: queued as {entry.id}".encode()
    assert entry.sender == "app@example.com"
    assert entry.pending == ("a@x.example", "b@x.example", "c@x.example")
    content = Path(session.queue.messagePath(entry.id)).read_bytes()
    assert content.startswith(
        b"Received: from app.example ([127.0.0.1])\r\n\tby relay.test"
    )
    assert content.count(b"Received:") == 1
    assert content.endswith(b"\r\n" + message)
    assert session.files() == [f"envelopes/{entry.id}.json", f"messages/{entry.id}.eml"]
    assert MessageQueue(session.queue.directory).open() == [entry]


def test_nullSender(session: Session) -> None:
    """
    The null sender is accepted and queued as C{""}.
    """
    replies = session.say(
        b"MAIL FROM:<>",
        b"RCPT TO:<a@x.example>",
        b"DATA",
        b"Subject: x",
        b"",
        b"hi",
        b".",
    )
    assert replies[-1].startswith(b"250 ")
    assert session.queued[0].sender == ""


@pytest.mark.parametrize(
    "command",
    [
        b"MAIL FROM:<a\x00b@example.com>",
        b"MAIL FROM:<a@exa mple.com>",
        b'MAIL FROM:<"a\\\x00"@example.com>',
    ],
)
def test_badSender(session: Session, command: bytes) -> None:
    """
    A sender our client could not send on is refused at MAIL (C{553}),
    not queued to fail later.
    """
    [reply] = session.say(command)
    assert reply[:3] in (b"553", b"501")
    assert session.files() == []


def test_badRecipient(session: Session) -> None:
    """
    A recipient our client could not send to is refused at RCPT (C{553});
    the others of the transaction are queued.
    """
    replies = session.say(
        b"MAIL FROM:<app@example.com>",
        b"RCPT TO:<ok@x.example>",
        b"RCPT TO:<bad\x01@x.example>",
        b'RCPT TO:<"b\\\x00"@x.example>',
    )
    assert replies[1].startswith(b"250")
    assert replies[2][:3] in (b"553", b"501")
    assert replies[3].startswith(b"553 ") and b"NUL" in replies[3]


def test_tooManyRecipients(tmp_path: Path) -> None:
    """
    Past C{maxRecipients}, RCPT gets C{452 4.5.3}: the client sends the
    rest in another transaction.
    """
    s = Session(tmp_path, maxRecipients=2)
    s.say(b"EHLO app.example")
    replies = s.say(
        b"MAIL FROM:<app@example.com>",
        b"RCPT TO:<a@x.example>",
        b"RCPT TO:<b@x.example>",
        b"RCPT TO:<c@x.example>",
    )
    assert replies[3].startswith(b"452 4.5.3")


def test_tooLarge(tmp_path: Path) -> None:
    """
    A message over C{maxMessageSize} gets C{552} at the end of the data
    and nothing is queued (no file is left).
    """
    s = Session(tmp_path, maxMessageSize=200)
    s.say(b"EHLO app.example")
    replies = s.submit(
        b"Subject: big\r\n\r\n" + b"x" * 80 + b"\r\n" * 5 + b"y" * 80 + b"\r\n"
    )
    assert replies[-1].startswith(b"552 5.3.4")
    assert s.queued == []
    assert s.files() == []


def test_longLineInDataClosesTheConnection(session: Session) -> None:
    """
    A line longer than Twisted's limit inside the data ends the
    connection: the rest of the message is never read as commands (with
    Twisted's own server it would be: a RCPT inside a message would add a
    recipient), and nothing is queued.
    """
    replies = session.say(
        b"MAIL FROM:<app@example.com>",
        b"RCPT TO:<a@x.example>",
        b"DATA",
        b"Subject: x",
        b"",
        b"x" * 20000,
        b"MAIL FROM:<evil@example.com>",
        b"RCPT TO:<victim@x.example>",
        b"DATA",
    )
    assert replies[-1].startswith(b"500 5.5.2")
    assert session.transport.disconnecting
    assert session.queued == []
    assert session.files() == []


def test_longCommandLine(session: Session) -> None:
    """
    An over-long command line is refused, as Twisted's server does, and
    the session goes on.
    """
    [reply] = session.say(b"NOOP " + b"x" * 20000)
    assert reply.startswith(b"500")
    assert not session.transport.disconnecting


@pytest.mark.parametrize(
    ("failing", "error", "code"),
    [
        ("write", errno.ENOSPC, b"452 4.3.1"),
        ("write", errno.EIO, b"451 4.3.0"),
        ("fsync", errno.EIO, b"451 4.3.0"),
        ("fsync", errno.ENOSPC, b"452 4.3.1"),
        ("rename", errno.EIO, b"451 4.3.0"),
        ("open", errno.ENOSPC, b"452 4.3.1"),
    ],
)
def test_storageFailure(tmp_path: Path, failing: str, error: int, code: bytes) -> None:
    """
    When the queue cannot store the message (a full disk, a failing
    C{fsync}, C{rename} or C{open}), the client gets a transient C{451} or
    C{452}, so that it keeps the message and tries again; nothing is
    queued and no file is left behind; the next submission, once the disk
    works again, is queued.
    """

    class Failing(FileSystem):
        active = True

        def _fail(self) -> None:
            if self.active:
                raise OSError(error, os.strerror(error))

        def write(self, fd: int, data: bytes) -> int:
            if failing == "write":
                self._fail()
            return super().write(fd, data)

        def fsync(self, fd: int) -> None:
            if failing == "fsync":
                self._fail()
            super().fsync(fd)

        def rename(self, source: str, destination: str) -> None:
            if failing == "rename":
                self._fail()
            super().rename(source, destination)

        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if failing == "open" and "/tmp/" in path:
                self._fail()
            return super().open(path, flags, mode)

    fs = Failing()
    s = Session(tmp_path, fileSystem=fs)
    s.say(b"EHLO app.example")
    replies = s.submit()
    assert replies[-1].startswith(code), replies
    assert b"try again later" in replies[-1]
    assert s.queued == []
    assert s.files() == []
    fs.active = False
    replies = s.submit()
    assert replies[-1].startswith(b"250 2.0.0 Ok: queued as ")
    assert len(s.queued) == 1


def test_connectionLostInData(session: Session) -> None:
    """
    A client that goes away in the middle of the data leaves nothing in the
    queue.
    """
    session.say(
        b"MAIL FROM:<app@example.com>", b"RCPT TO:<a@x.example>", b"DATA", b"Subject: x"
    )
    assert session.files() != []
    session.server.connectionLost(Exception("gone"))  # type: ignore[arg-type]
    assert session.files() == []
    assert session.queued == []


def test_resetTransaction(session: Session) -> None:
    """
    A new MAIL after RSET starts a new transaction: the recipients of the
    abandoned one are not queued with it.
    """
    session.say(b"MAIL FROM:<app@example.com>", b"RCPT TO:<old@x.example>", b"RSET")
    session.submit(recipients=("new@x.example",))
    assert session.queued[0].pending == ("new@x.example",)


def test_idleTimeout(session: Session) -> None:
    """
    An idle connection is closed after C{timeout} seconds on the factory's
    clock, with C{421}.
    """
    session.transport.clear()
    session.clock.advance(299)
    assert not session.transport.disconnecting
    session.clock.advance(1)
    assert session.transport.value().startswith(b"421 ")
    assert session.transport.disconnecting


@pytest.mark.parametrize(
    ("peer", "allowed"),
    [
        (IPv4Address("TCP", "127.0.0.1", 40001), True),
        (IPv4Address("TCP", "127.8.9.10", 40001), True),
        (IPv6Address("TCP", "::1", 40001), True),
        (IPv6Address("TCP", "::ffff:127.0.0.1", 40001), True),
        (IPv4Address("TCP", "192.0.2.7", 40001), False),
        (IPv6Address("TCP", "2001:db8::7", 40001), False),
        (IPv6Address("TCP", "fe80::1%eth0", 40001), False),
        (UNIXAddress(b"/run/relay.sock"), True),
    ],
)
def test_onlyAllowedClients(tmp_path: Path, peer: IAddress, allowed: bool) -> None:
    """
    By default only loopback clients (and UNIX sockets) may submit: any
    other gets C{554 5.7.1} in place of the greeting and the connection is
    closed, so a relay listening on a public address is not an open relay.
    """
    s = Session(tmp_path, peer=peer)
    if allowed:
        assert s.transport.value().startswith(b"220 ")
    else:
        assert s.transport.value() == b"554 5.7.1 not allowed to submit here\r\n"
        assert s.transport.disconnecting


def test_allowedNetworks(tmp_path: Path) -> None:
    """
    C{clients} lists the networks allowed instead of loopback; a network
    that is not one is a C{ValueError} at construction.
    """
    inside = Session(
        tmp_path / "a", peer=IPv4Address("TCP", "10.1.2.3", 1), clients=["10.0.0.0/8"]
    )
    assert inside.transport.value().startswith(b"220 ")
    loopback = Session(tmp_path / "b", clients=["10.0.0.0/8"])
    assert loopback.transport.value().startswith(b"554 ")
    with pytest.raises(ValueError):
        Session(tmp_path / "c", clients=["not a network"])


def test_unixSocket(tmp_path: Path) -> None:
    """
    A client on a UNIX socket (whose address has no host) can submit: HELO
    and EHLO name it C{localhost}, and its message is queued.
    """
    for hello in (b"EHLO app", b"HELO app"):
        s = Session(tmp_path / hello.decode()[:4], peer=UNIXAddress(b"/run/relay.sock"))
        assert s.say(hello)[0] == b"250" + (b"-" if hello[0:1] == b"E" else b" ") + (
            b"relay.test Hello localhost"
        )
        assert s.submit()[-1].startswith(b"250 2.0.0 Ok: queued as ")
        content = Path(s.queue.messagePath(s.queued[0].id)).read_bytes()
        assert content.startswith(b"Received: from app ([localhost])")


def test_heloNameCannotAddAField(tmp_path: Path) -> None:
    """
    A HELO name with a bare CR or LF (which Twisted's server leaves inside
    the line) or other control characters cannot start a field of its own
    in the C{Received} field: they become C{?}, and the name is cut at 255
    characters.
    """
    s = Session(tmp_path)
    name = b"app\rBcc: victim@x.example\n\x00"
    s.say(b"EHLO " + name + b"x" * 300)
    s.submit()
    content = Path(s.queue.messagePath(s.queued[0].id)).read_bytes()
    head = content.split(b"\r\n\t", 1)[0]
    shown = b"app?Bcc: victim@x.example??" + b"x" * (255 - len(name))
    assert head == b"Received: from " + shown + b" ([127.0.0.1])"


def test_notAnAddress(tmp_path: Path) -> None:
    """
    A peer whose host is not an IP address is not allowed.
    """
    s = Session(tmp_path, peer=IPv4Address("TCP", "relay.example", 1))
    assert s.transport.value().startswith(b"554 ")


def test_storageFailureWithSeveralRecipients(tmp_path: Path) -> None:
    """
    When the queue cannot even start a submission, DATA gets the
    transient reply once, whatever the number of recipients.
    """

    class NoOpen(FileSystem):
        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if "/tmp/" in path:
                raise OSError(errno.EIO, "Input/output error")
            return super().open(path, flags, mode)

    s = Session(tmp_path, fileSystem=NoOpen())
    s.say(b"EHLO app.example")
    replies = s.submit(recipients=("a@x.example", "b@x.example"))
    assert replies[-1].startswith(b"451 4.3.0")
    assert s.queued == []


def test_unexpectedFailureIsTransient(tmp_path: Path) -> None:
    """
    A failure that is not the disk's (a bug) still gets a transient
    C{451}, never Twisted's C{550}, and is logged.
    """

    class Broken(FileSystem):
        def rename(self, source: str, destination: str) -> None:
            raise RuntimeError("a bug")

    s = Session(tmp_path, fileSystem=Broken())
    s.say(b"EHLO app.example")
    replies = s.submit()
    assert replies[-1] == b"451 4.3.0 local error in processing"
    assert s.queued == []
