"""
The relay's durable queue: a directory where every accepted message is on
disk, with its envelope and the state of each recipient, before the
submitting application hears C{250}.

Layout of the queue directory::

    tmp/                      submissions being written, state rewrites
    messages/ID.eml           the message, written once, never changed
    envelopes/ID.json         the envelope and the delivery state

An entry exists when its envelope exists.  A submission is written to
C{tmp/}, flushed to disk with C{fsync}, and moved into place with
C{rename} (the message first, the envelope last), and the directories are
flushed too; only then is the submission acknowledged.  A crash at any
point leaves either the whole entry or nothing that counts: on the next
start, L{MessageQueue.open} removes what is in C{tmp/} and any message
without an envelope.  A state change rewrites the envelope the same way
(write, C{fsync}, C{rename}), so an envelope is always whole.

Every file system call goes through a L{FileSystem}, so that tests can make
any of them fail (a full disk, a failing C{fsync}).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, BinaryIO, Literal

import attrs
from twisted.logger import Logger

__all__ = [
    "FileSystem",
    "MessageQueue",
    "QueueEntry",
    "QueueError",
    "QueuedRecipient",
    "Submission",
]

_log = Logger(namespace="mailclient.relay.queue")

_FORMAT = 1

RecipientState = Literal["pending", "delivered", "failed"]
"""
Where one recipient of a queued message stands: C{"pending"} (still to be
delivered, or to be tried again), C{"delivered"} (the next hop accepted
it) or C{"failed"} (refused for good, or given up on; the sender was told).
"""


class QueueError(Exception):
    """
    The queue could not store or change an entry: the disk is full, a write
    or an C{fsync} failed.  Nothing half-written is left behind.

    @ivar code: the SMTP reply code to give a submitting client (C{452}
        when the disk is full, else C{451}); always transient, so the
        client keeps the message and tries again.
    @ivar enhancedStatus: the matching enhanced status code.
    @ivar reason: what failed, for people.
    """

    def __init__(self, reason: str, *, storageFull: bool = False) -> None:
        self.reason = reason
        self.code = 452 if storageFull else 451
        self.enhancedStatus = "4.3.1" if storageFull else "4.3.0"
        super().__init__(reason)

    @classmethod
    def fromOSError(cls, doing: str, error: OSError) -> QueueError:
        """
        The error for C{error}, raised while C{doing}.
        """
        full = error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
        detail = error.strerror or str(error)
        return cls(f"{doing}: {detail}", storageFull=full)


class FileSystem:
    """
    The file system calls the queue makes, each one the C{os} function of
    the same name.  Tests subclass it to make a call fail.
    """

    def open(self, path: str, flags: int, mode: int = 0o600) -> int:
        """
        C{os.open}.
        """
        return os.open(path, flags, mode)

    def write(self, fd: int, data: bytes) -> int:
        """
        C{os.write}.
        """
        return os.write(fd, data)

    def fsync(self, fd: int) -> None:
        """
        C{os.fsync}.
        """
        os.fsync(fd)

    def close(self, fd: int) -> None:
        """
        C{os.close}.
        """
        os.close(fd)

    def rename(self, source: str, destination: str) -> None:
        """
        C{os.rename}.
        """
        os.rename(source, destination)

    def unlink(self, path: str) -> None:
        """
        C{os.unlink}.
        """
        os.unlink(path)

    def listdir(self, path: str) -> list[str]:
        """
        C{os.listdir}.
        """
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        """
        C{os.makedirs}, with C{exist_ok} and mode C{0o700}.
        """
        os.makedirs(path, mode=0o700, exist_ok=True)

    def read(self, path: str) -> bytes:
        """
        The whole content of C{path}.
        """
        with open(path, "rb") as f:
            return f.read()


@attrs.frozen
class QueuedRecipient:
    """
    One recipient of a queued message.

    @ivar address: the address.
    @ivar state: a L{RecipientState}.
    @ivar code: the reply code of the last attempt that decided or deferred
        it (L{None} before any).
    @ivar enhancedStatus: the enhanced status code of that reply, if any.
    @ivar text: that reply's text, or what went wrong.
    """

    address: str
    state: RecipientState = "pending"
    code: int | None = None
    enhancedStatus: str | None = None
    text: str = ""


@attrs.frozen
class QueueEntry:
    """
    One queued message, as its envelope on disk says.

    @ivar id: the queue id (also in the C{250} reply to the submission).
    @ivar sender: the envelope sender (C{""} for the null sender).
    @ivar recipients: every recipient, in the order given.
    @ivar received: when the queue accepted it (seconds since the epoch).
    @ivar attempts: how many delivery attempts were made.
    @ivar nextAttempt: when the next one is due (seconds since the epoch).
    @ivar lastError: what the last attempt ran into, if it failed.
    @ivar size: the message's size in octets.
    @ivar isBounce: whether this is a non-delivery report made by the relay
        (never itself bounced).
    """

    id: str
    sender: str
    recipients: tuple[QueuedRecipient, ...]
    received: float
    attempts: int = 0
    nextAttempt: float = 0.0
    lastError: str | None = None
    size: int = 0
    isBounce: bool = False

    @property
    def pending(self) -> tuple[str, ...]:
        """
        The addresses still to be delivered.
        """
        return tuple(r.address for r in self.recipients if r.state == "pending")

    def toJSON(self) -> bytes:
        """
        The envelope file's content.
        """
        data = attrs.asdict(self, recurse=True)
        data["format"] = _FORMAT
        return json.dumps(data, sort_keys=True, indent=1).encode("utf-8")

    @classmethod
    def fromJSON(cls, content: bytes) -> QueueEntry:
        """
        Read an envelope file.

        @raise ValueError: when it is not an envelope this version wrote
            (not UTF-8 JSON, another format version, a field missing,
            unknown or of the wrong type).
        """
        try:
            data = json.loads(content.decode("utf-8"))
        except RecursionError as e:
            raise ValueError("the envelope is nested too deeply") from e
        if not isinstance(data, dict):
            raise ValueError("not an envelope")
        version = data.pop("format", None)
        if type(version) is not int or version != _FORMAT:
            raise ValueError(f"not a version {_FORMAT} envelope")
        _checkFields(data, attrs.fields(cls), _ENTRY_TYPES, "the envelope")
        recipients = data.pop("recipients")
        for r in recipients:
            if not isinstance(r, dict):
                raise ValueError("a recipient is not an object")
            _checkFields(
                r, attrs.fields(QueuedRecipient), _RECIPIENT_TYPES, "a recipient"
            )
            if r.get("state", "pending") not in _STATES:
                raise ValueError(f"a recipient's state is {r['state']!r}")
        return cls(recipients=tuple(QueuedRecipient(**r) for r in recipients), **data)


_STATES = frozenset({"pending", "delivered", "failed"})

# The JSON types of each field of an envelope (an exact match: C{true} is
# no number).
_NUMBER = (int, float)
_ENTRY_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str,),
    "sender": (str,),
    "recipients": (list,),
    "received": _NUMBER,
    "attempts": (int,),
    "nextAttempt": _NUMBER,
    "lastError": (str, type(None)),
    "size": (int,),
    "isBounce": (bool,),
}
_RECIPIENT_TYPES: dict[str, tuple[type, ...]] = {
    "address": (str,),
    "state": (str,),
    "code": (int, type(None)),
    "enhancedStatus": (str, type(None)),
    "text": (str,),
}


def _checkFields(
    data: dict[str, Any],
    fields: Iterable[attrs.Attribute[Any]],
    types: dict[str, tuple[type, ...]],
    what: str,
) -> None:
    """
    Check that C{data} has each of C{fields} (unless it has a default), of
    the type C{types} gives, and nothing else.

    @raise ValueError: when it does not.
    """
    names = set()
    for field in fields:
        names.add(field.name)
        if field.name not in data:
            if field.default is attrs.NOTHING:
                raise ValueError(f"{what} has no {field.name!r}")
        elif type(data[field.name]) not in types[field.name]:
            raise ValueError(f"{what} has a wrong {field.name!r}")
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"{what} has unknown fields {unknown!r}")


def _newID(stamp: int) -> str:
    """
    A queue id: sortable by arrival, unique, safe in a file name and in an
    SMTP reply.

    @param stamp: the arrival, in milliseconds since the epoch (made
        unique and increasing by L{MessageQueue.submission}).
    """
    return f"{stamp:013X}{secrets.token_hex(5).upper()}"


class MessageQueue:
    """
    The durable queue in one directory (see the module's description).

    @ivar directory: the queue directory.
    """

    def __init__(
        self,
        directory: str,
        *,
        fileSystem: FileSystem | None = None,
        now: Any = time.time,
    ) -> None:
        """
        @param directory: the queue directory; created, with its
            subdirectories, by L{open}.
        @param fileSystem: the file system calls (L{FileSystem}).
        @param now: the wall clock (seconds since the epoch), for ids and
            arrival times.
        """
        self.directory = os.path.abspath(directory)
        self._fs = fileSystem if fileSystem is not None else FileSystem()
        self._now = now
        self._lastStamp = -1
        self._tmp = os.path.join(self.directory, "tmp")
        self._messages = os.path.join(self.directory, "messages")
        self._envelopes = os.path.join(self.directory, "envelopes")
        self._lockFile: int | None = None

    # -- paths --

    def messagePath(self, queueID: str) -> str:
        """
        The path of the message file of entry C{queueID}.
        """
        return os.path.join(self._messages, queueID + ".eml")

    def _envelopePath(self, queueID: str) -> str:
        return os.path.join(self._envelopes, queueID + ".json")

    # -- start --

    def lock(self) -> None:
        """
        Take the queue directory for this process (an exclusive C{flock} on
        its C{lock} file, which the system releases when the process dies),
        so that two relays never share a queue: the second would remove
        the first one's submissions in progress, and both would deliver the
        same messages.

        @raise QueueError: when another process (or another queue object)
            holds it.
        """
        if self._lockFile is not None:
            return
        self._fs.makedirs(self.directory)
        path = os.path.join(self.directory, "lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            raise QueueError(
                f"the queue {self.directory} is in use by another relay"
            ) from e
        self._lockFile = fd

    def unlock(self) -> None:
        """
        Release what L{lock} took (nothing happens when it was not taken).
        """
        if self._lockFile is not None:
            fd, self._lockFile = self._lockFile, None
            os.close(fd)

    def open(self) -> list[QueueEntry]:
        """
        Make the directories if needed, remove what a crash left half
        written, and read every entry.

        An envelope that cannot be read is moved aside into C{corrupt/}
        (with its message) and logged, never deleted.

        @return: the entries, oldest first.
        """
        for path in (self._tmp, self._messages, self._envelopes):
            self._fs.makedirs(path)
        for name in self._fs.listdir(self._tmp):
            self._fs.unlink(os.path.join(self._tmp, name))
        entries: list[QueueEntry] = []
        envelopes = set()
        for name in sorted(self._fs.listdir(self._envelopes)):
            if not name.endswith(".json"):
                continue
            queueID = name[: -len(".json")]
            envelopes.add(queueID)
            try:
                entry = QueueEntry.fromJSON(self._fs.read(self._envelopePath(queueID)))
                if entry.id != queueID:
                    raise ValueError(f"the envelope names {entry.id!r}")
            except ValueError as e:
                self._quarantine(queueID, str(e))
                continue
            entries.append(entry)
        for name in self._fs.listdir(self._messages):
            queueID = name[: -len(".eml")] if name.endswith(".eml") else name
            if queueID not in envelopes:
                # A crash between moving the message and its envelope into
                # place: the submission was never acknowledged.
                self._fs.unlink(os.path.join(self._messages, name))
        return entries

    def _quarantine(self, queueID: str, reason: str) -> None:
        corrupt = os.path.join(self.directory, "corrupt")
        self._fs.makedirs(corrupt)
        self._fs.rename(
            self._envelopePath(queueID), os.path.join(corrupt, queueID + ".json")
        )
        try:
            self._fs.rename(
                self.messagePath(queueID), os.path.join(corrupt, queueID + ".eml")
            )
        except FileNotFoundError:
            pass  # the envelope had no message
        _log.error(
            "queue entry {queueID} is unreadable ({reason}); moved to {corrupt}",
            queueID=queueID,
            reason=reason,
            corrupt=corrupt,
        )

    # -- adding --

    def submission(self) -> Submission:
        """
        Start writing a new entry.

        @raise QueueError: when its file cannot be created.
        """
        # Rounded, not truncated (1.001 s is 1001 ms), and one more than the
        # last one when it is not later, so that ids made within the same
        # millisecond still sort in the order they were made.
        stamp = max(round(self._now() * 1000), self._lastStamp + 1)
        self._lastStamp = stamp
        return Submission(self, _newID(stamp))

    def add(
        self,
        sender: str,
        recipients: Sequence[str],
        content: bytes,
        *,
        isBounce: bool = False,
    ) -> QueueEntry:
        """
        Queue C{content} whole, durably.

        @raise QueueError: when it could not be stored (nothing is left).
        """
        submission = self.submission()
        try:
            submission.write(content)
            return submission.commit(sender, recipients, isBounce=isBounce)
        except QueueError:
            submission.discard()
            raise

    # -- changing --

    def update(self, entry: QueueEntry) -> None:
        """
        Store C{entry}'s new state (atomically: the old envelope stays until
        the new one is whole on disk).

        @raise QueueError: when it could not be stored.
        """
        temporary = os.path.join(self._tmp, entry.id + ".json.new")
        try:
            self._writeFile(temporary, entry.toJSON())
            self._fs.rename(temporary, self._envelopePath(entry.id))
            self._syncDirectory(self._envelopes)
        except OSError as e:
            self._unlinkQuietly(temporary)
            raise QueueError.fromOSError(f"updating {entry.id}", e) from e

    def remove(self, entry: QueueEntry) -> None:
        """
        Remove C{entry}: its envelope first (which ends the entry), then its
        message.

        @raise QueueError: when the envelope could not be removed.
        """
        try:
            self._fs.unlink(self._envelopePath(entry.id))
            self._syncDirectory(self._envelopes)
        except OSError as e:
            raise QueueError.fromOSError(f"removing {entry.id}", e) from e
        self._unlinkQuietly(self.messagePath(entry.id))

    def openMessage(self, entry: QueueEntry) -> BinaryIO:
        """
        Open C{entry}'s message for reading.

        @raise QueueError: when it cannot be opened.
        """
        try:
            return open(self.messagePath(entry.id), "rb")
        except OSError as e:
            raise QueueError.fromOSError(f"reading {entry.id}", e) from e

    def entries(self) -> Iterator[str]:
        """
        The ids of the entries on disk now, oldest first.
        """
        for name in sorted(self._fs.listdir(self._envelopes)):
            if name.endswith(".json"):
                yield name[: -len(".json")]

    # -- file system helpers --

    def _writeFile(self, path: str, content: bytes) -> None:
        fd = self._fs.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            _writeAll(self._fs, fd, content)
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)

    def _syncDirectory(self, path: str) -> None:
        fd = self._fs.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)

    def _unlinkQuietly(self, path: str) -> None:
        try:
            self._fs.unlink(path)
        except OSError:
            pass


def _writeAll(fs: FileSystem, fd: int, data: bytes) -> None:
    offset = 0
    while offset < len(data):
        written = fs.write(fd, data[offset:])
        if written <= 0:
            # No progress (and no error): it would loop forever.
            raise OSError(errno.ENOSPC, "No space left on device (nothing written)")
        offset += written


class Submission:
    """
    A message being written into the queue: L{write} its octets, then
    L{commit} it (or L{discard} it).  Until L{commit} returns, the message
    is not queued, whatever happens.

    @ivar id: the queue id it gets.
    @ivar size: how many octets were written.
    """

    def __init__(self, queue: MessageQueue, queueID: str) -> None:
        self.id = queueID
        self.size = 0
        self._queue = queue
        self._fs = queue._fs
        self._path = os.path.join(queue._tmp, queueID + ".eml")
        self._fd: int | None = None
        self._done = False
        try:
            self._fd = self._fs.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        except OSError as e:
            raise QueueError.fromOSError("creating the message file", e) from e

    def write(self, data: bytes) -> None:
        """
        Append C{data} to the message.

        @raise QueueError: when it could not be written (the submission is
            then discarded).
        """
        if self._fd is None:
            raise QueueError("the submission was discarded")
        try:
            _writeAll(self._fs, self._fd, data)
        except OSError as e:
            self.discard()
            raise QueueError.fromOSError("writing the message", e) from e
        self.size += len(data)

    def commit(
        self, sender: str, recipients: Iterable[str], *, isBounce: bool = False
    ) -> QueueEntry:
        """
        Make the message durable and queue it for C{recipients}.

        @return: the new entry.
        @raise QueueError: when it could not be made durable; nothing is
            queued then.
        """
        if self._fd is None:
            raise QueueError("the submission was discarded")
        now = self._queue._now()
        entry = QueueEntry(
            id=self.id,
            sender=sender,
            recipients=tuple(QueuedRecipient(address) for address in recipients),
            received=now,
            nextAttempt=now,
            size=self.size,
            isBounce=isBounce,
        )
        queue = self._queue
        envelope = os.path.join(queue._tmp, self.id + ".json")
        placed: list[str] = []
        try:
            self._fs.fsync(self._fd)
            fd, self._fd = self._fd, None
            self._fs.close(fd)
            queue._writeFile(envelope, entry.toJSON())
            self._fs.rename(self._path, queue.messagePath(self.id))
            placed.append(queue.messagePath(self.id))
            queue._syncDirectory(queue._messages)
            self._fs.rename(envelope, queue._envelopePath(self.id))
            placed.append(queue._envelopePath(self.id))
            queue._syncDirectory(queue._envelopes)
        except OSError as e:
            for path in (*reversed(placed), envelope):
                queue._unlinkQuietly(path)
            self.discard()
            raise QueueError.fromOSError("queueing the message", e) from e
        self._done = True
        return entry

    def discard(self) -> None:
        """
        Drop the submission and its file (nothing happens when it was
        committed).
        """
        if self._done:
            return
        self._done = True
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                self._fs.close(fd)
            except OSError:
                pass
        self._queue._unlinkQuietly(self._path)
