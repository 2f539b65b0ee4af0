"""
L{mailclient.relay.queue}: the durable queue.  An entry round-trips through
the disk; the submission is made durable in the documented order (the
message C{fsync}ed and moved into place before its envelope, the
directories flushed); whichever file system call fails, nothing is left
half queued and the error is a transient C{451}/C{452}; a crash at any call
leaves the whole entry or nothing; L{MessageQueue.open} cleans what a crash
left and quarantines unreadable envelopes; L{MessageQueue.update} and
L{MessageQueue.remove} are atomic; and a real full disk (C{/dev/full}).
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from zope.interface import implementer

from mailclient.relay.queue import (
    FileSystem,
    MessageQueue,
    QueuedRecipient,
    QueueEntry,
    QueueError,
    Submission,
)

MESSAGE = (
    b"From: alice@example.com\r\n"
    b"To: bob@example.net, carol@example.org\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hello.\r\n"
    b".leading dot, \x00 a NUL, \xff a byte that is no UTF-8\r\n"
)
SENDER = "alice@example.com"
RECIPIENTS = ("bob@example.net", "carol@example.org")
NOW = 1_700_000_000.25

_ID = re.compile(r"[0-9A-F]{23}")


class Clock:
    """
    A wall clock for L{MessageQueue}: it says L{now} until told otherwise.

    @ivar now: the time it says.
    """

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class RecordingFileSystem(FileSystem):
    """
    The real file system calls, each recorded as C{(call, path, ...)}, with
    the paths relative to the queue directory and every queue id written
    C{ID}; and an optional fault: the calls it names raise an L{OSError}
    instead of happening.

    @ivar calls: the calls made, in order.
    @ivar openFiles: the path of each descriptor still open.
    @ivar fault: L{None}, or C{(call, pattern, errno)}: every C{call} whose
        (first) path matches the C{fnmatch} C{pattern} fails with C{errno}.
    @ivar faults: how many calls the fault made fail.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.calls: list[tuple[str, ...]] = []
        self.openFiles: dict[int, str] = {}
        self.fault: tuple[str, str, int] | None = None
        self.faults = 0

    def name(self, path: str) -> str:
        """
        C{path} as recorded.
        """
        return _ID.sub("ID", os.path.relpath(path, self.root))

    def record(self, call: str, *paths: str) -> None:
        """
        Record C{call}, and raise the fault's error when it names it.
        """
        self.calls.append((call, *paths))
        if self.fault is not None:
            failing, pattern, code = self.fault
            if call == failing and fnmatch.fnmatchcase(paths[0], pattern):
                self.faults += 1
                raise OSError(code, os.strerror(code))

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        name = self.name(path)
        self.record("open", name)
        fd = super().open(path, flags, mode)
        self.openFiles[fd] = name
        return fd

    def write(self, fd: int, data: bytes) -> int:
        self.record("write", self.openFiles[fd])
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self.record("fsync", self.openFiles[fd])
        super().fsync(fd)

    def close(self, fd: int) -> None:
        # As with the real close(2), the descriptor is gone even when it
        # reports an error.
        name = self.openFiles.pop(fd)
        super().close(fd)
        self.record("close", name)

    def rename(self, source: str, destination: str) -> None:
        self.record("rename", self.name(source), self.name(destination))
        super().rename(source, destination)

    def unlink(self, path: str) -> None:
        self.record("unlink", self.name(path))
        super().unlink(path)

    def listdir(self, path: str) -> list[str]:
        self.record("listdir", self.name(path))
        return super().listdir(path)

    def makedirs(self, path: str) -> None:
        self.record("makedirs", self.name(path))
        super().makedirs(path)

    def read(self, path: str) -> bytes:
        self.record("read", self.name(path))
        return super().read(path)

    def closeAll(self) -> None:
        """
        Close the descriptors a test left open.
        """
        for fd in list(self.openFiles):
            os.close(fd)
        self.openFiles.clear()


class CrashError(Exception):
    """
    The process died (raised by L{CrashingFileSystem}).
    """


class CrashingFileSystem(RecordingFileSystem):
    """
    A file system on which the process dies at a given call: that call and
    every later one raise L{CrashError}, so nothing cleans up.

    @ivar crashAt: the index of the first call that does not happen.
    """

    def __init__(self, root: Path, crashAt: int) -> None:
        super().__init__(root)
        self.crashAt = crashAt

    def record(self, call: str, *paths: str) -> None:
        self.calls.append((call, *paths))
        if len(self.calls) > self.crashAt:
            raise CrashError(call, *paths)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """
    The queue directory (not made yet).
    """
    return tmp_path / "queue"


@pytest.fixture
def fs(root: Path) -> Iterator[RecordingFileSystem]:
    """
    A L{RecordingFileSystem} for the queue in C{root}; it checks that the
    queue left no descriptor open.
    """
    fileSystem = RecordingFileSystem(root)
    yield fileSystem
    leftOpen = dict(fileSystem.openFiles)
    fileSystem.closeAll()
    assert leftOpen == {}


@pytest.fixture
def clock() -> Clock:
    """
    The queue's clock.
    """
    return Clock()


@pytest.fixture
def queue(root: Path, fs: RecordingFileSystem, clock: Clock) -> MessageQueue:
    """
    An opened, empty L{MessageQueue} in C{root} on C{fs}.
    """
    q = MessageQueue(str(root), fileSystem=fs, now=clock)
    assert q.open() == []
    return q


@pytest.fixture
def events() -> Iterator[list[LogEvent]]:
    """
    The queue's log events during the test.
    """
    seen: list[LogEvent] = []

    @implementer(ILogObserver)
    def observe(event: LogEvent) -> None:
        if event.get("log_namespace") == "mailclient.relay.queue":
            seen.append(event)

    globalLogPublisher.addObserver(observe)
    yield seen
    globalLogPublisher.removeObserver(observe)


def reopen(root: Path) -> list[QueueEntry]:
    """
    What a fresh L{MessageQueue} on C{root}, on the real file system, finds.
    """
    return MessageQueue(str(root)).open()


def listing(root: Path) -> dict[str, list[str]]:
    """
    The names in each subdirectory of the queue directory.
    """
    return {
        sub.name: sorted(p.name for p in sub.iterdir())
        for sub in sorted(root.iterdir())
        if sub.is_dir()
    }


def assertEmpty(root: Path) -> None:
    """
    Nothing is in C{tmp/}, C{messages/} or C{envelopes/}.
    """
    for sub in ("tmp", "messages", "envelopes"):
        assert listing(root)[sub] == [], sub


def envelopeData(entry: QueueEntry) -> dict[str, Any]:
    """
    The JSON object of C{entry}'s envelope.
    """
    data: dict[str, Any] = json.loads(entry.toJSON())
    return data


def submit(queue: MessageQueue, content: bytes = MESSAGE) -> QueueEntry:
    """
    Queue C{content} through a L{Submission}, written in two pieces.
    """
    submission = queue.submission()
    submission.write(content[:10])
    submission.write(content[10:])
    return submission.commit(SENDER, RECIPIENTS)


def add(queue: MessageQueue, content: bytes = MESSAGE) -> QueueEntry:
    """
    Queue C{content} with L{MessageQueue.add}.
    """
    return queue.add(SENDER, RECIPIENTS, content)


# -- adding and reading back ---------------------------------------------------


def test_addRoundTrips(root: Path, queue: MessageQueue, clock: Clock) -> None:
    """
    L{MessageQueue.add} returns the new entry, every recipient pending, and
    a fresh L{MessageQueue} on the same directory reads an equal entry back;
    the message's octets are exactly those given.
    """
    entry = queue.add(SENDER, RECIPIENTS, MESSAGE)
    assert entry == QueueEntry(
        id=entry.id,
        sender=SENDER,
        recipients=(QueuedRecipient(RECIPIENTS[0]), QueuedRecipient(RECIPIENTS[1])),
        received=NOW,
        attempts=0,
        nextAttempt=NOW,
        lastError=None,
        size=len(MESSAGE),
        isBounce=False,
    )
    assert entry.pending == RECIPIENTS
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE
    with queue.openMessage(entry) as f:
        assert f.read() == MESSAGE
    assert listing(root) == {
        "envelopes": [entry.id + ".json"],
        "messages": [entry.id + ".eml"],
        "tmp": [],
    }


def test_submissionRoundTrips(root: Path, queue: MessageQueue, clock: Clock) -> None:
    """
    A L{Submission} written in pieces and committed is the same as
    L{MessageQueue.add}: its C{size} counts the octets, the entry is
    received when committed (its id was given when it began) and reads
    back equal.
    """
    submission = queue.submission()
    assert submission.size == 0
    submission.write(MESSAGE[:7])
    submission.write(b"")
    submission.write(MESSAGE[7:])
    assert submission.size == len(MESSAGE)
    clock.now = NOW + 5
    entry = submission.commit(SENDER, iter(RECIPIENTS))
    assert entry.id == submission.id
    assert (entry.received, entry.nextAttempt, entry.size) == (
        NOW + 5,
        NOW + 5,
        len(MESSAGE),
    )
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


@pytest.mark.parametrize(
    ("sender", "recipients", "isBounce"),
    [
        ("", ("alice@example.com",), True),
        (
            "jürgen@bücher.example",
            ("δοκιμή@παράδειγμα.δοκιμή", "bob@example.net"),
            False,
        ),
        (SENDER, (), False),
    ],
)
def test_addKeepsTheEnvelope(
    root: Path,
    queue: MessageQueue,
    sender: str,
    recipients: tuple[str, ...],
    isBounce: bool,
) -> None:
    """
    The null sender, non-ASCII addresses, no recipient at all and
    C{isBounce} are stored as given.
    """
    entry = queue.add(sender, recipients, b"", isBounce=isBounce)
    [again] = reopen(root)
    assert again == entry
    assert (again.sender, again.pending, again.isBounce, again.size) == (
        sender,
        recipients,
        isBounce,
        0,
    )
    assert Path(queue.messagePath(entry.id)).read_bytes() == b""


def test_shortWrites(root: Path, clock: Clock) -> None:
    """
    When the file system writes only part of what it is given each time,
    the queue writes the rest: the message and the envelope are whole.
    """

    class Short(FileSystem):
        def write(self, fd: int, data: bytes) -> int:
            return super().write(fd, data[:3])

    queue = MessageQueue(str(root), fileSystem=Short(), now=clock)
    queue.open()
    entry = add(queue)
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


def test_filesArePrivate(root: Path, queue: MessageQueue) -> None:
    """
    The subdirectories and files of the queue are neither readable nor
    writable by the group or others.
    """
    entry = add(queue)
    paths = [*root.iterdir(), Path(queue.messagePath(entry.id))]
    paths.append(root / "envelopes" / (entry.id + ".json"))
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_idsAreUnique(queue: MessageQueue) -> None:
    """
    Submissions begun at the same millisecond get different ids, which
    sort in the order they were begun, each of hexadecimal digits only
    (safe in a file name and in an SMTP reply).
    """
    ids = []
    for _ in range(300):
        submission = queue.submission()
        ids.append(submission.id)
        submission.discard()
    assert len(set(ids)) == 300
    assert sorted(ids) == ids
    assert all(re.fullmatch("[0-9A-F]{23}", i) for i in ids)


def test_idsSortByArrival(root: Path, clock: Clock) -> None:
    """
    The ids sort in the order the messages arrived (to the millisecond,
    however the times round as floating point numbers), and both
    L{MessageQueue.open} and L{MessageQueue.entries} give the oldest
    first, whatever order the directory lists them in.
    """

    class Backwards(FileSystem):
        def listdir(self, path: str) -> list[str]:
            return sorted(super().listdir(path), reverse=True)

    queue = MessageQueue(str(root), fileSystem=Backwards(), now=clock)
    queue.open()
    times = [0.5, 1.0, 1.001, 59.999, 1e9, NOW, NOW + 0.001, NOW + 86400 * 3650]
    added = []
    for now in times:
        clock.now = now
        added.append(add(queue))
    ids = [entry.id for entry in added]
    assert sorted(ids) == ids
    assert [entry.received for entry in added] == times
    assert [int(i[:13], 16) for i in ids] == [round(t * 1000) for t in times]
    assert queue.open() == added
    assert list(queue.entries()) == ids
    # Another queue on the same directory, on a clock that went back: its
    # ids still sort in the order it made them.
    again = MessageQueue(str(root), now=clock)
    clock.now = 10.0
    later = [again.submission() for _ in range(3)]
    clock.now = 9.0
    later.append(again.submission())
    for submission in later:
        submission.discard()
    assert sorted(s.id for s in later) == [s.id for s in later]


def test_entriesSkipsOtherFiles(root: Path, queue: MessageQueue) -> None:
    """
    L{MessageQueue.entries} gives the ids of the envelopes on disk now,
    not any other file of C{envelopes/}, which L{MessageQueue.open} leaves
    alone.
    """
    entry = add(queue)
    (root / "envelopes" / "README").write_text("hello")
    assert list(queue.entries()) == [entry.id]
    assert reopen(root) == [entry]
    assert (root / "envelopes" / "README").read_text() == "hello"


def test_openMessageOfRemovedEntry(queue: MessageQueue) -> None:
    """
    L{MessageQueue.openMessage} of an entry whose message is gone raises a
    transient L{QueueError}.
    """
    entry = add(queue)
    queue.remove(entry)
    with pytest.raises(QueueError) as caught:
        queue.openMessage(entry)
    assert (caught.value.code, caught.value.enhancedStatus) == (451, "4.3.0")
    assert caught.value.reason.startswith(f"reading {entry.id}: ")
    assert isinstance(caught.value.__cause__, FileNotFoundError)


# -- durability order ------------------------------------------------------------


def test_commitIsDurable(queue: MessageQueue, fs: RecordingFileSystem) -> None:
    """
    The message is written and C{fsync}ed before it is renamed into
    C{messages/}; the envelope is written and C{fsync}ed before it is
    renamed into C{envelopes/}; the message is moved into place, and
    C{messages/} flushed, before the envelope is; C{envelopes/} is flushed
    after the envelope's rename, before the submission is acknowledged.
    """
    del fs.calls[:]
    add(queue)
    calls = fs.calls
    at = calls.index

    renameMessage = at(("rename", "tmp/ID.eml", "messages/ID.eml"))
    renameEnvelope = at(("rename", "tmp/ID.json", "envelopes/ID.json"))
    messageWrites = [i for i, c in enumerate(calls) if c == ("write", "tmp/ID.eml")]
    envelopeWrites = [i for i, c in enumerate(calls) if c == ("write", "tmp/ID.json")]
    assert messageWrites and envelopeWrites

    assert max(messageWrites) < at(("fsync", "tmp/ID.eml")) < renameMessage
    assert max(envelopeWrites) < at(("fsync", "tmp/ID.json")) < renameEnvelope
    assert at(("close", "tmp/ID.eml")) < renameMessage
    assert at(("close", "tmp/ID.json")) < renameEnvelope
    assert renameMessage < at(("fsync", "messages")) < renameEnvelope
    assert renameEnvelope < at(("fsync", "envelopes"))
    # Opened once each, without replacing anything that is there.
    assert calls.count(("open", "tmp/ID.eml")) == 1
    assert calls.count(("open", "tmp/ID.json")) == 1
    # The directories are flushed last.
    assert calls[-3:] == [
        ("open", "envelopes"),
        ("fsync", "envelopes"),
        ("close", "envelopes"),
    ]


def test_updateIsDurable(queue: MessageQueue, fs: RecordingFileSystem) -> None:
    """
    L{MessageQueue.update} writes the new envelope to C{tmp/} and
    C{fsync}s it, renames it over the old one, then flushes
    C{envelopes/}; it never touches the message.
    """
    entry = add(queue)
    del fs.calls[:]
    queue.update(attrs.evolve(entry, attempts=1))
    at = fs.calls.index
    renamed = at(("rename", "tmp/ID.json.new", "envelopes/ID.json"))
    assert at(("write", "tmp/ID.json.new")) < at(("fsync", "tmp/ID.json.new"))
    assert at(("fsync", "tmp/ID.json.new")) < renamed < at(("fsync", "envelopes"))
    assert not any("messages" in " ".join(call) for call in fs.calls)


def test_removeOrder(root: Path, queue: MessageQueue, fs: RecordingFileSystem) -> None:
    """
    L{MessageQueue.remove} removes the envelope (which ends the entry),
    flushes C{envelopes/}, and only then removes the message.
    """
    entry = add(queue)
    del fs.calls[:]
    queue.remove(entry)
    at = fs.calls.index
    assert (
        at(("unlink", "envelopes/ID.json"))
        < at(("fsync", "envelopes"))
        < at(("unlink", "messages/ID.eml"))
    )
    assertEmpty(root)
    assert reopen(root) == []


# -- a failing call while adding -------------------------------------------------

# Each file system call of a submission, as (call, pattern of its path).
COMMIT_CALLS = [
    ("open", "tmp/ID.eml"),
    ("write", "tmp/ID.eml"),
    ("fsync", "tmp/ID.eml"),
    ("close", "tmp/ID.eml"),
    ("open", "tmp/ID.json"),
    ("write", "tmp/ID.json"),
    ("fsync", "tmp/ID.json"),
    ("close", "tmp/ID.json"),
    ("rename", "tmp/ID.eml"),
    ("open", "messages"),
    ("fsync", "messages"),
    ("close", "messages"),
    ("rename", "tmp/ID.json"),
    ("open", "envelopes"),
    ("fsync", "envelopes"),
    ("close", "envelopes"),
]

# (errno, code, enhanced status): a full disk is 452 4.3.1, anything else
# 451 4.3.0.
ERRORS = [
    (errno.ENOSPC, 452, "4.3.1"),
    (errno.EDQUOT, 452, "4.3.1"),
    (errno.EFBIG, 452, "4.3.1"),
    (errno.EIO, 451, "4.3.0"),
    (errno.EROFS, 451, "4.3.0"),
]


def test_commitCallsAreTheFaultPoints(
    queue: MessageQueue, fs: RecordingFileSystem
) -> None:
    """
    L{COMMIT_CALLS} is every file system call a submission makes (so the
    fault injection below leaves none out).
    """
    del fs.calls[:]
    add(queue)
    assert sorted(set(fs.calls)) == sorted(
        {call for call in fs.calls if (call[0], call[1]) in COMMIT_CALLS}
    )
    assert {(call[0], call[1]) for call in fs.calls} == set(COMMIT_CALLS)


@pytest.mark.parametrize("how", [add, submit], ids=["add", "submission"])
@pytest.mark.parametrize(("code", "smtpCode", "enhanced"), ERRORS)
@pytest.mark.parametrize(("call", "pattern"), COMMIT_CALLS)
def test_failureLeavesNothing(
    root: Path,
    queue: MessageQueue,
    fs: RecordingFileSystem,
    how: Callable[[MessageQueue], QueueEntry],
    code: int,
    smtpCode: int,
    enhanced: str,
    call: str,
    pattern: str,
) -> None:
    """
    Whichever call fails while a message is queued (by
    L{MessageQueue.add}, or by L{Submission.write} and
    L{Submission.commit}), a L{QueueError} is raised, with C{452 4.3.1}
    when the disk or quota is full or the file too big, else C{451 4.3.0};
    nothing is left in C{tmp/}, C{messages/} or C{envelopes/}, no
    descriptor is left open, and the queue holds no entry.
    """
    fs.fault = (call, pattern, code)
    with pytest.raises(QueueError) as caught:
        how(queue)
    assert fs.faults == 1
    error = caught.value
    assert (error.code, error.enhancedStatus) == (smtpCode, enhanced)
    assert error.reason.endswith(": " + os.strerror(code))
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == code
    assert fs.openFiles == {}
    assertEmpty(root)
    fs.fault = None
    assert queue.open() == []
    assert reopen(root) == []
    # The queue still works.
    entry = add(queue)
    assert reopen(root) == [entry]


@pytest.mark.parametrize(("call", "pattern"), COMMIT_CALLS[1:])
def test_failedSubmissionIsOver(
    root: Path, queue: MessageQueue, fs: RecordingFileSystem, call: str, pattern: str
) -> None:
    """
    After a L{Submission.write} or L{Submission.commit} failed, the
    submission is discarded: writing or committing it again raises
    L{QueueError} and stores nothing, discarding it does nothing.
    """
    fs.fault = (call, pattern, errno.EIO)
    submission = queue.submission()
    with pytest.raises(QueueError):
        submission.write(MESSAGE)
        submission.commit(SENDER, RECIPIENTS)
    fs.fault = None
    with pytest.raises(QueueError, match="discarded"):
        submission.write(MESSAGE)
    with pytest.raises(QueueError, match="discarded"):
        submission.commit(SENDER, RECIPIENTS)
    submission.discard()
    assertEmpty(root)
    assert reopen(root) == []


def test_writeMakingNoProgress(root: Path, clock: Clock) -> None:
    """
    A write that reports no octet written (and no error) is a full disk,
    not an endless loop.
    """

    class Stuck(FileSystem):
        def write(self, fd: int, data: bytes) -> int:
            return 0

    queue = MessageQueue(str(root), fileSystem=Stuck(), now=clock)
    queue.open()
    with pytest.raises(QueueError) as caught:
        add(queue)
    assert (caught.value.code, caught.value.enhancedStatus) == (452, "4.3.1")
    assertEmpty(root)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_realFullDisk(root: Path, clock: Clock) -> None:
    """
    When the kernel says the disk is full (writes to C{/dev/full} fail with
    C{ENOSPC}), the submission fails with C{452 4.3.1} and leaves nothing.
    """

    class Full(FileSystem):
        def open(self, path: str, flags: int, mode: int = 0o600) -> int:
            if os.path.basename(os.path.dirname(path)) == "tmp" and path.endswith(
                ".eml"
            ):
                return super().open("/dev/full", os.O_WRONLY)
            return super().open(path, flags, mode)

    queue = MessageQueue(str(root), fileSystem=Full(), now=clock)
    queue.open()
    submission = queue.submission()
    with pytest.raises(QueueError) as caught:
        submission.write(MESSAGE)
    error = caught.value
    assert (error.code, error.enhancedStatus) == (452, "4.3.1")
    assert error.reason == "writing the message: No space left on device"
    assert isinstance(error.__cause__, OSError)
    assert error.__cause__.errno == errno.ENOSPC
    with pytest.raises(QueueError) as caught:
        add(queue)
    assert caught.value.code == 452
    assertEmpty(root)
    assert reopen(root) == []


# -- a crash at any call ------------------------------------------------------------


def test_crashLeavesWholeEntryOrNothing(tmp_path: Path, clock: Clock) -> None:
    """
    Whichever call of a submission the process dies at (so that nothing
    cleans up), the next L{MessageQueue.open} finds either nothing left at
    all, when it died before the envelope's rename, or the whole entry,
    with its exact message, when it died after.
    """
    probe = RecordingFileSystem(tmp_path / "probe")
    probeQueue = MessageQueue(str(tmp_path / "probe"), fileSystem=probe, now=clock)
    probeQueue.open()
    del probe.calls[:]
    add(probeQueue)
    renamed = probe.calls.index(("rename", "tmp/ID.json", "envelopes/ID.json"))

    for crashAt in range(len(probe.calls) + 1):
        root = tmp_path / str(crashAt)
        MessageQueue(str(root)).open()
        fs = CrashingFileSystem(root, crashAt)
        queue = MessageQueue(str(root), fileSystem=fs, now=clock)
        submission: Submission | None = None
        try:
            submission = queue.submission()
            submission.write(MESSAGE)
            submission.commit(SENDER, RECIPIENTS)
        except CrashError:
            assert crashAt < len(probe.calls)
        fs.closeAll()
        entries = reopen(root)
        if crashAt <= renamed:
            assert entries == [], crashAt
            assertEmpty(root)
        else:
            assert submission is not None
            [entry] = entries
            assert (entry.id, entry.pending, entry.size) == (
                submission.id,
                RECIPIENTS,
                len(MESSAGE),
            )
            assert listing(root)["tmp"] == []
            assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


# -- what a crash left: open() ------------------------------------------------------


def test_openMakesTheDirectories(tmp_path: Path) -> None:
    """
    L{MessageQueue.open} makes the queue directory, however deep, and its
    subdirectories; opening again changes nothing.
    """
    root = tmp_path / "a" / "b" / "queue"
    queue = MessageQueue(str(root))
    assert queue.open() == []
    assert listing(root) == {"envelopes": [], "messages": [], "tmp": []}
    assert queue.open() == []
    assert queue.directory == str(root)


def test_openRelativeDirectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A relative queue directory is taken from the working directory at
    creation, and stays that directory.
    """
    monkeypatch.chdir(tmp_path)
    queue = MessageQueue("queue")
    monkeypatch.chdir("/")
    assert queue.directory == str(tmp_path / "queue")
    assert queue.open() == []
    assert (tmp_path / "queue" / "envelopes").is_dir()


def test_openRemovesTemporaryFiles(root: Path, queue: MessageQueue) -> None:
    """
    L{MessageQueue.open} removes whatever is in C{tmp/} (submissions and
    state rewrites a crash interrupted) and keeps the entries.
    """
    entry = add(queue)
    for name in ("0123.eml", "0123.json", entry.id + ".json.new", "junk"):
        (root / "tmp" / name).write_bytes(b"half")
    assert reopen(root) == [entry]
    assert listing(root)["tmp"] == []
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


def test_openRemovesMessagesWithoutEnvelope(root: Path, queue: MessageQueue) -> None:
    """
    A message in C{messages/} without an envelope (a crash between the two
    renames: never acknowledged) is removed by L{MessageQueue.open}; the
    messages of entries stay.
    """
    entry = add(queue)
    (root / "messages" / "0000000000001ABCDEF012345.eml").write_bytes(MESSAGE)
    (root / "messages" / "stray").write_bytes(MESSAGE)
    assert reopen(root) == [entry]
    assert listing(root)["messages"] == [entry.id + ".eml"]


def _without(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        del data[name]
        return data

    return change


def _with(name: str, value: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data[name] = value
        return data

    return change


def _withRecipient(**fields: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        data["recipients"][0].update(fields)
        return data

    return change


def _withoutRecipientField(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def change(data: dict[str, Any]) -> dict[str, Any]:
        del data["recipients"][0][name]
        return data

    return change


def _json(
    change: Callable[[dict[str, Any]], dict[str, Any]],
) -> Callable[[QueueEntry], bytes]:
    return lambda entry: json.dumps(change(envelopeData(entry))).encode()


def _raw(content: bytes) -> Callable[[QueueEntry], bytes]:
    return lambda entry: content


# Envelopes this version did not write, each as a function of the entry.
BAD_ENVELOPES: list[tuple[str, Callable[[QueueEntry], bytes]]] = [
    ("empty", _raw(b"")),
    ("notJSON", _raw(b"{not json")),
    ("truncated", lambda entry: entry.toJSON()[:40]),
    ("notUTF8", _raw(b'{"id": "\xff"}')),
    ("notAnObject", _raw(b"[1, 2, 3]")),
    ("null", _raw(b"null")),
    ("nestedTooDeeply", _raw(b"[" * 200_000)),
    ("noFormat", _json(_without("format"))),
    ("otherFormat", _json(_with("format", 2))),
    ("formatAsString", _json(_with("format", "1"))),
    ("formatAsBoolean", _json(_with("format", True))),
    ("noSender", _json(_without("sender"))),
    ("noRecipients", _json(_without("recipients"))),
    ("noReceived", _json(_without("received"))),
    ("unknownField", _json(_with("priority", "high"))),
    ("idNotAString", _json(_with("id", 7))),
    ("attemptsAsString", _json(_with("attempts", "3"))),
    ("attemptsAsFloat", _json(_with("attempts", 3.0))),
    ("receivedAsBoolean", _json(_with("received", True))),
    ("receivedAsString", _json(_with("received", "now"))),
    ("lastErrorAsNumber", _json(_with("lastError", 5))),
    ("isBounceAsNumber", _json(_with("isBounce", 0))),
    ("recipientsAsString", _json(_with("recipients", "bob@example.net"))),
    ("recipientsAsObject", _json(_with("recipients", {"address": "bob"}))),
    ("recipientAsString", _json(_with("recipients", ["bob@example.net"]))),
    ("recipientWithoutAddress", _json(_withoutRecipientField("address"))),
    ("recipientUnknownField", _json(_withRecipient(priority=1))),
    ("recipientUnknownState", _json(_withRecipient(state="lost"))),
    ("recipientCodeAsString", _json(_withRecipient(code="550"))),
    ("recipientTextAsNull", _json(_withRecipient(text=None))),
]


@pytest.mark.parametrize(
    "makeEnvelope", [bad for _, bad in BAD_ENVELOPES], ids=[n for n, _ in BAD_ENVELOPES]
)
def test_fromJSONRefuses(makeEnvelope: Callable[[QueueEntry], bytes]) -> None:
    """
    L{QueueEntry.fromJSON} raises L{ValueError} (and nothing else) for
    anything but an envelope this version wrote: not UTF-8 JSON, not an
    object, another format version, a field missing, unknown or of the
    wrong JSON type, a recipient state that does not exist.
    """
    entry = QueueEntry("0123", SENDER, (QueuedRecipient("bob@example.net"),), NOW)
    with pytest.raises(ValueError):
        QueueEntry.fromJSON(makeEnvelope(entry))


@pytest.mark.parametrize(
    "makeEnvelope",
    [bad for _, bad in BAD_ENVELOPES]
    + [lambda entry: attrs.evolve(entry, id="0" * 23).toJSON()],
    ids=[n for n, _ in BAD_ENVELOPES] + ["idMismatch"],
)
@pytest.mark.parametrize("withMessage", [True, False])
def test_openQuarantinesBadEnvelopes(
    root: Path,
    queue: MessageQueue,
    clock: Clock,
    events: list[LogEvent],
    makeEnvelope: Callable[[QueueEntry], bytes],
    withMessage: bool,
) -> None:
    """
    An envelope that cannot be read (see L{test_fromJSONRefuses}), or that
    names another id than its file's, is not returned by
    L{MessageQueue.open}: it is moved, unchanged, into C{corrupt/} with its
    message, if any, and an error is logged; nothing is deleted and the
    other entries are read.
    """
    before = add(queue)
    clock.now += 1
    bad = add(queue)
    clock.now += 1
    after = add(queue)
    envelope = makeEnvelope(bad)
    (root / "envelopes" / (bad.id + ".json")).write_bytes(envelope)
    if not withMessage:
        Path(queue.messagePath(bad.id)).unlink()

    assert queue.open() == [before, after]

    corrupt = root / "corrupt"
    assert (corrupt / (bad.id + ".json")).read_bytes() == envelope
    if withMessage:
        assert sorted(p.name for p in corrupt.iterdir()) == [
            bad.id + ".eml",
            bad.id + ".json",
        ]
        assert (corrupt / (bad.id + ".eml")).read_bytes() == MESSAGE
    else:
        assert [p.name for p in corrupt.iterdir()] == [bad.id + ".json"]
    assert listing(root)["envelopes"] == [before.id + ".json", after.id + ".json"]
    assert listing(root)["messages"] == [before.id + ".eml", after.id + ".eml"]
    [event] = events
    assert event["log_level"].name == "error"
    assert event["queueID"] == bad.id
    assert event["corrupt"] == str(corrupt)
    assert event["reason"]
    # Opening again finds the same, and the quarantined files stay.
    assert reopen(root) == [before, after]
    assert (corrupt / (bad.id + ".json")).read_bytes() == envelope


# -- update() and remove() ----------------------------------------------------------


def test_updateStoresTheNewState(root: Path, queue: MessageQueue) -> None:
    """
    L{MessageQueue.update} replaces the envelope: a fresh open reads the
    new state, and it can be done again and again (no temporary file is
    left in the way).
    """
    entry = add(queue)
    first = attrs.evolve(
        entry,
        recipients=(
            QueuedRecipient(RECIPIENTS[0], "delivered", 250, "2.0.0", "OK"),
            QueuedRecipient(RECIPIENTS[1], "pending", 451, "4.3.0", "try later"),
        ),
        attempts=1,
        nextAttempt=NOW + 300,
        lastError="451 4.3.0 try later",
    )
    queue.update(first)
    assert reopen(root) == [first]
    second = attrs.evolve(
        first,
        recipients=(
            first.recipients[0],
            QueuedRecipient(RECIPIENTS[1], "failed", 550, "5.1.1", "no such user"),
        ),
        attempts=2,
    )
    queue.update(second)
    assert reopen(root) == [second]
    assert listing(root)["tmp"] == []
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


# (call, pattern, whether the new envelope is in place when it fails)
UPDATE_CALLS = [
    ("open", "tmp/ID.json.new", False),
    ("write", "tmp/ID.json.new", False),
    ("fsync", "tmp/ID.json.new", False),
    ("close", "tmp/ID.json.new", False),
    ("rename", "tmp/ID.json.new", False),
    ("open", "envelopes", True),
    ("fsync", "envelopes", True),
    ("close", "envelopes", True),
]


@pytest.mark.parametrize(("code", "smtpCode", "enhanced"), ERRORS)
@pytest.mark.parametrize(("call", "pattern", "replaced"), UPDATE_CALLS)
def test_failedUpdate(
    root: Path,
    queue: MessageQueue,
    fs: RecordingFileSystem,
    code: int,
    smtpCode: int,
    enhanced: str,
    call: str,
    pattern: str,
    replaced: bool,
) -> None:
    """
    When a call of L{MessageQueue.update} fails, it raises L{QueueError}
    (C{452} for a full disk, else C{451}), no temporary file is left, and
    the envelope on disk is whole: the old one, untouched, when the new one
    was not moved into place yet, else the new one.  A later update works.
    """
    entry = add(queue)
    old = (root / "envelopes" / (entry.id + ".json")).read_bytes()
    changed = attrs.evolve(entry, attempts=1, lastError="timed out")
    fs.fault = (call, pattern, code)
    with pytest.raises(QueueError) as caught:
        queue.update(changed)
    assert fs.faults == 1
    assert (caught.value.code, caught.value.enhancedStatus) == (smtpCode, enhanced)
    assert caught.value.reason.startswith(f"updating {entry.id}: ")
    assert listing(root)["tmp"] == []
    if replaced:
        assert reopen(root) == [changed]
    else:
        assert (root / "envelopes" / (entry.id + ".json")).read_bytes() == old
        assert reopen(root) == [entry]
    fs.fault = None
    final = attrs.evolve(changed, attempts=2)
    queue.update(final)
    assert reopen(root) == [final]


def test_failedRemoveOfEnvelope(
    root: Path, queue: MessageQueue, fs: RecordingFileSystem
) -> None:
    """
    When the envelope cannot be removed, L{MessageQueue.remove} raises
    L{QueueError} and the entry is still there, whole.
    """
    entry = add(queue)
    fs.fault = ("unlink", "envelopes/ID.json", errno.EACCES)
    with pytest.raises(QueueError) as caught:
        queue.remove(entry)
    assert (caught.value.code, caught.value.enhancedStatus) == (451, "4.3.0")
    assert caught.value.reason.startswith(f"removing {entry.id}: ")
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE
    fs.fault = None
    queue.remove(entry)
    assertEmpty(root)


def test_failedSyncWhileRemoving(
    root: Path, queue: MessageQueue, fs: RecordingFileSystem
) -> None:
    """
    When C{envelopes/} cannot be flushed after the envelope was removed,
    L{MessageQueue.remove} raises L{QueueError}; the message it did not get
    to is removed by the next L{MessageQueue.open}.
    """
    entry = add(queue)
    fs.fault = ("fsync", "envelopes", errno.EIO)
    with pytest.raises(QueueError) as caught:
        queue.remove(entry)
    assert caught.value.code == 451
    assert reopen(root) == []
    assertEmpty(root)


def test_failedRemoveOfMessage(
    root: Path, queue: MessageQueue, fs: RecordingFileSystem
) -> None:
    """
    Once the envelope is gone the entry is: when its message cannot be
    removed, L{MessageQueue.remove} still succeeds, and the next
    L{MessageQueue.open} removes the message.
    """
    entry = add(queue)
    fs.fault = ("unlink", "messages/ID.eml", errno.EIO)
    queue.remove(entry)
    assert fs.faults == 1
    assert listing(root)["messages"] == [entry.id + ".eml"]
    assert list(queue.entries()) == []
    fs.fault = None
    assert queue.open() == []
    assertEmpty(root)


# -- Submission ----------------------------------------------------------------------


def test_discardRemovesTheFile(root: Path, queue: MessageQueue) -> None:
    """
    L{Submission.discard} removes the file being written from C{tmp/};
    discarding twice is harmless; afterwards L{Submission.write} and
    L{Submission.commit} raise L{QueueError} (C{451}).
    """
    submission = queue.submission()
    submission.write(MESSAGE)
    assert listing(root)["tmp"] == [submission.id + ".eml"]
    submission.discard()
    submission.discard()
    assertEmpty(root)
    with pytest.raises(QueueError) as caught:
        submission.write(b"more")
    assert (caught.value.code, caught.value.enhancedStatus) == (451, "4.3.0")
    assert caught.value.reason == "the submission was discarded"
    with pytest.raises(QueueError):
        submission.commit(SENDER, RECIPIENTS)
    assertEmpty(root)
    assert reopen(root) == []


def test_discardUnwritten(root: Path, queue: MessageQueue) -> None:
    """
    A submission nothing was written to is discarded the same way.
    """
    submission = queue.submission()
    assert listing(root)["tmp"] == [submission.id + ".eml"]
    submission.discard()
    assertEmpty(root)


def test_discardWhenCloseFails(
    root: Path, queue: MessageQueue, fs: RecordingFileSystem
) -> None:
    """
    L{Submission.discard} removes the file even when closing it reports an
    error (which it does not pass on).
    """
    submission = queue.submission()
    submission.write(MESSAGE)
    fs.fault = ("close", "tmp/ID.eml", errno.EIO)
    submission.discard()
    assert fs.faults == 1
    assertEmpty(root)


def test_discardAfterCommit(root: Path, queue: MessageQueue) -> None:
    """
    L{Submission.discard} after L{Submission.commit} does nothing: the
    entry stays queued, message and all.
    """
    submission = queue.submission()
    submission.write(MESSAGE)
    entry = submission.commit(SENDER, RECIPIENTS)
    submission.discard()
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE
    assert listing(root)["tmp"] == []


def test_commitTwice(root: Path, queue: MessageQueue) -> None:
    """
    A submission is committed once: committing or writing it again raises
    L{QueueError} and leaves the entry as it was.
    """
    submission = queue.submission()
    submission.write(MESSAGE)
    entry = submission.commit(SENDER, RECIPIENTS)
    with pytest.raises(QueueError):
        submission.commit("mallory@example.com", ["eve@example.com"])
    with pytest.raises(QueueError):
        submission.write(b"more")
    assert reopen(root) == [entry]
    assert Path(queue.messagePath(entry.id)).read_bytes() == MESSAGE


# -- QueueEntry and QueueError --------------------------------------------------------


def test_pending() -> None:
    """
    L{QueueEntry.pending} is the addresses of the pending recipients, in
    their order.
    """
    entry = QueueEntry(
        "0123",
        SENDER,
        (
            QueuedRecipient("a@example.com", "delivered", 250),
            QueuedRecipient("b@example.com"),
            QueuedRecipient("c@example.com", "failed", 550, "5.1.1", "unknown"),
            QueuedRecipient("d@example.com", "pending", 451, "4.7.1", "greylisted"),
        ),
        NOW,
    )
    assert entry.pending == ("b@example.com", "d@example.com")
    assert attrs.evolve(entry, recipients=()).pending == ()


@pytest.mark.parametrize(
    "entry",
    [
        QueueEntry("0123", SENDER, (QueuedRecipient("bob@example.net"),), NOW),
        QueueEntry("0124", "", (), 1700000000),
        QueueEntry(
            id="018BCFE56800A1B2C3D4E5",
            sender="jürgen@bücher.example",
            recipients=(
                QueuedRecipient("δοκιμή@παράδειγμα.δοκιμή", "delivered", 250, None),
                QueuedRecipient(
                    "bob@example.net", "failed", 550, "5.7.1", "refusé\nligne 2"
                ),
                QueuedRecipient("carol@example.org", "pending", None, None, "timeout"),
            ),
            received=NOW,
            attempts=7,
            nextAttempt=NOW + 1234.5,
            lastError='451 "quoted" \\ back\tslash \u2028',
            size=123_456_789,
            isBounce=True,
        ),
    ],
    ids=["minimal", "nullSender", "everything"],
)
def test_jsonRoundTrip(entry: QueueEntry) -> None:
    """
    L{QueueEntry.fromJSON} of L{QueueEntry.toJSON} is an equal entry; the
    envelope is ASCII JSON with every field and C{"format": 1}, the same
    octets each time.
    """
    content = entry.toJSON()
    assert content.isascii()
    assert QueueEntry.fromJSON(content) == entry
    assert entry.toJSON() == content
    data = json.loads(content)
    assert data["format"] == 1
    assert set(data) == {"format"} | {f.name for f in attrs.fields(QueueEntry)}
    assert QueueEntry.fromJSON(json.dumps(data).encode()) == entry


def test_fromJSONDefaults() -> None:
    """
    An envelope with only the required fields (and recipients with only an
    address) gets the defaults.
    """
    content = json.dumps(
        {
            "format": 1,
            "id": "0123",
            "sender": SENDER,
            "recipients": [{"address": "bob@example.net"}],
            "received": 5,
        }
    ).encode()
    assert QueueEntry.fromJSON(content) == QueueEntry(
        "0123", SENDER, (QueuedRecipient("bob@example.net"),), 5
    )


@pytest.mark.parametrize(("code", "smtpCode", "enhanced"), ERRORS)
def test_queueErrorFromOSError(code: int, smtpCode: int, enhanced: str) -> None:
    """
    L{QueueError.fromOSError} gives C{452 4.3.1} for a full disk or quota
    or a file too big, else C{451 4.3.0}; the reason says what was being
    done and the system's message.
    """
    error = QueueError.fromOSError("doing it", OSError(code, os.strerror(code)))
    assert (error.code, error.enhancedStatus) == (smtpCode, enhanced)
    assert error.reason == str(error) == f"doing it: {os.strerror(code)}"


def test_queueErrorWithoutStrerror() -> None:
    """
    An L{OSError} without a system message is described by its text; a
    L{QueueError} made directly is a C{451 4.3.0}.
    """
    error = QueueError.fromOSError("doing it", OSError("odd"))
    assert (error.reason, error.code) == ("doing it: odd", 451)
    direct = QueueError("broken")
    assert (direct.reason, direct.code, direct.enhancedStatus) == (
        "broken",
        451,
        "4.3.0",
    )
    full = QueueError("full", storageFull=True)
    assert (full.code, full.enhancedStatus) == (452, "4.3.1")
