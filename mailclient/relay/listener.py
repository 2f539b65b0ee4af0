"""
The relay's submission listener: Twisted's own ESMTP server
(C{twisted.mail.smtp.ESMTP}), whose messages go into the durable queue.

Twisted's server is kept, with these changes for a relay:

  - a message is written to the queue once, however many recipients it has
    (Twisted makes one message object per recipient);
  - the C{250} to the end of the data is sent only when the message is on
    disk (C{fsync} done), and a failure to store it is a C{451}/C{452}
    (Twisted answers C{550} to any failure, which tells the client to give
    the message up);
  - a line longer than the limit inside the data ends the connection
    (Twisted switches back to command mode, so the rest of the message
    would be read as commands);
  - C{SIZE}, C{8BITMIME} and C{PIPELINING} are advertised, C{SIZE} is
    enforced (C{552}), and so is a limit on recipients (C{452});
  - timeouts run on an injected clock.
"""

from __future__ import annotations

import email.utils
import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.address import UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IAddress, IReactorTime
from twisted.internet.protocol import ServerFactory
from twisted.logger import Logger
from twisted.mail import smtp
from zope.interface import implementer

from mailclient import errors
from mailclient._wire import commands
from mailclient.relay.queue import MessageQueue, QueueEntry, QueueError, Submission

__all__ = ["LOOPBACK", "SubmissionFactory", "SubmissionServer"]

LOOPBACK = ("127.0.0.0/8", "::1/128")
"""
The networks a L{SubmissionFactory} accepts clients from by default.
"""

_log = Logger(namespace="mailclient.relay.listener")


def _printable(text: bytes, limit: int = 255) -> str:
    """
    C{text} (a client's HELO name) safe in a header field: printable ASCII
    only (a bare CR or LF, which Twisted's server leaves inside a line,
    would start a new field), at most C{limit} characters.
    """
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in text[:limit])


class _Transaction:
    """
    One MAIL transaction: its sender, its recipients, and the queue
    submission its data is written to.
    """

    def __init__(self, queue: MessageQueue, sender: str, maxSize: int) -> None:
        self.queue = queue
        self.sender = sender
        self.maxSize = maxSize
        self.recipients: list[str] = []
        self.writerMade = False
        self.submission: Submission | None = None
        self.failure: smtp.SMTPServerError | None = None
        self.outcome: Deferred[QueueEntry] | None = None

    def start(self) -> None:
        if self.submission is not None or self.failure is not None:
            return
        try:
            self.submission = self.queue.submission()
        except QueueError as e:
            self.failure = _replyFor(e)

    def write(self, line: bytes) -> None:
        if self.failure is not None:
            raise self.failure
        assert self.submission is not None
        if self.submission.size + len(line) + 2 > self.maxSize:
            self.submission.discard()
            self.failure = smtp.SMTPServerError(
                552, b"5.3.4 message exceeds the size limit"
            )
            raise self.failure
        try:
            self.submission.write(line + b"\r\n")
        except QueueError as e:
            self.failure = _replyFor(e)
            raise self.failure from e

    def end(self) -> Deferred[QueueEntry]:
        if self.outcome is None:
            self.outcome = self._commit()
        return self.outcome

    def _commit(self) -> Deferred[QueueEntry]:
        if self.failure is not None:
            return fail(self.failure)
        assert self.submission is not None
        try:
            return succeed(self.submission.commit(self.sender, self.recipients))
        except QueueError as e:
            self.failure = _replyFor(e)
            return fail(self.failure)
        except Exception:
            # a bug, not the disk: the server answers 451 and logs it
            return fail()

    def abandon(self) -> None:
        if self.submission is not None and self.outcome is None:
            self.submission.discard()


def _replyFor(error: QueueError) -> smtp.SMTPServerError:
    _log.error("cannot queue a message: {reason}", reason=error.reason)
    text = (
        "insufficient system storage"
        if error.code == 452
        else "local error in processing"
    )
    return smtp.SMTPServerError(
        error.code, f"{error.enhancedStatus} {text}, try again later".encode()
    )


@implementer(smtp.IMessage)
class _RecipientMessage:
    """
    What Twisted's server calls a message: one per recipient.  The first of
    a transaction writes the lines; every one answers with the same
    outcome.
    """

    def __init__(self, transaction: _Transaction, writer: bool) -> None:
        self.transaction = transaction
        self.writer = writer

    def lineReceived(self, line: bytes) -> None:
        if self.writer:
            self.transaction.write(line)

    def eomReceived(self) -> Deferred[QueueEntry]:
        return self.transaction.end()

    def connectionLost(self) -> None:
        self.transaction.abandon()


@implementer(smtp.IMessageDelivery)
class _Delivery:
    """
    The submission rules of one connection.
    """

    def __init__(self, factory: SubmissionFactory) -> None:
        self.factory = factory
        self.transaction: _Transaction | None = None

    def receivedHeader(
        self, helo: tuple[bytes, bytes], origin: smtp.Address, recipients: list[Any]
    ) -> bytes | None:
        transaction = self.transaction
        if transaction is None or transaction.submission is not None:
            # one Received field per message, not one per recipient
            return None
        transaction.start()
        name = _printable(helo[0]) if helo[0] else "unknown"
        client = (
            helo[1].decode("ascii", "replace")
            if isinstance(helo[1], bytes)
            else str(helo[1])
        )
        date = email.utils.formatdate(self.factory.now(), localtime=False, usegmt=True)
        host = self.factory.hostname
        return (
            f"Received: from {name} ([{client}])\r\n\tby {host} "
            f"(mailclient relay) with ESMTP; {date}"
        ).encode("ascii", "replace")

    def validateFrom(
        self, helo: tuple[bytes, bytes], origin: smtp.Address
    ) -> smtp.Address:
        sender = str(origin)
        try:
            commands.validateAddress(sender, "sender", allowEmpty=True, utf8=True)
        except errors.InvalidArgumentError as e:
            raise smtp.SMTPBadSender(origin, 553, e.reason) from e
        if self.transaction is not None:
            self.transaction.abandon()
        self.transaction = _Transaction(
            self.factory.queue, sender, self.factory.maxMessageSize
        )
        return origin

    def validateTo(self, user: smtp.User) -> Callable[[], smtp.IMessage]:
        transaction = self.transaction
        assert transaction is not None
        address = str(user.dest)
        try:
            commands.validateAddress(address, "recipient", utf8=True)
        except errors.InvalidArgumentError as e:
            raise smtp.SMTPBadRcpt(user, 553, e.reason) from e
        if len(transaction.recipients) >= self.factory.maxRecipients:
            raise smtp.SMTPBadRcpt(user, 452, "4.5.3 too many recipients")
        transaction.recipients.append(address)

        def message() -> smtp.IMessage:
            writer = not transaction.writerMade
            transaction.writerMade = True
            return _RecipientMessage(transaction, writer)

        return message


class SubmissionServer(smtp.ESMTP):
    """
    One submission connection (see the module's description).
    """

    factory: SubmissionFactory

    def connectionMade(self) -> None:
        """
        Greet, with the relay's name, and start the idle timeout on the
        factory's clock; a client outside the allowed networks gets C{554}
        and the connection is closed.
        """
        self.callLater = self.factory.clock.callLater  # type: ignore[method-assign,assignment]
        self.host = self.factory.hostname.encode("ascii")
        self.timeout = self.factory.timeout  # type: ignore[assignment]
        peer = self.transport.getPeer()  # type: ignore[union-attr]
        if not self.factory.allows(peer):
            _log.warn("refused a submission from {peer}", peer=peer)
            self.sendCode(554, b"5.7.1 not allowed to submit here")
            self.transport.loseConnection()  # type: ignore[union-attr]
            return
        self.delivery = _Delivery(self.factory)
        super().connectionMade()

    def greeting(self) -> bytes:
        """
        The greeting text: our name and what we are.
        """
        host: bytes = self.host
        return host + b" ESMTP mailclient relay"

    def _peerName(self) -> bytes:
        host = getattr(self.transport.getPeer(), "host", None)  # type: ignore[union-attr]
        # a UNIX socket's peer has no host
        return host.encode("idna") if isinstance(host, str) else b"localhost"

    def _hello(self, rest: bytes) -> bytes:
        """
        Start a new session for C{HELO}/C{EHLO} C{rest}; the greeting line.
        """
        peer = self._peerName()
        self._helo = (rest, peer)
        self._from = None
        self._to = []
        host: bytes = self.host
        return host + b" Hello " + peer

    def do_HELO(self, rest: bytes) -> None:
        """
        HELO, as Twisted answers it, for any kind of transport.
        """
        self.sendCode(250, self._hello(rest))

    def do_EHLO(self, rest: bytes) -> None:
        """
        EHLO, as Twisted answers it, for any kind of transport.
        """
        self.sendCode(250, self._hello(rest) + b"\n" + self.listExtensions())

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        """
        What EHLO advertises: Twisted's, plus SIZE, 8BITMIME and PIPELINING.
        """
        extensions: dict[bytes, list[bytes] | None] = super().extensions()
        if not extensions.get(b"AUTH"):
            extensions.pop(b"AUTH", None)
        extensions[b"SIZE"] = [str(self.factory.maxMessageSize).encode()]
        extensions[b"8BITMIME"] = None
        extensions[b"PIPELINING"] = None
        return extensions

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line over the limit: in the data, end the connection (the rest of
        the message must never be read as commands); else, refuse it.
        """
        if self.mode == smtp.DATA:
            self.sendCode(500, b"5.5.2 line too long, closing")
            self.transport.loseConnection()  # type: ignore[union-attr]
            messages = getattr(self, "_SMTP__messages", [])
            for message in messages:
                message.connectionLost()
            self.mode = smtp.COMMAND
            self.setTimeout(None)
            return
        super().lineLengthExceeded(line)

    def _messageHandled(self, resultList: list[tuple[bool, Any]]) -> None:
        # Twisted answers 550 to any failure; the queue's failures are
        # transient (451/452) and the size limit is 552.
        for success, result in resultList:
            if not success:
                error = result.value
                if isinstance(error, smtp.SMTPServerError):
                    self.sendCode(error.code, error.resp)
                else:
                    _log.failure("queueing a message failed", result)
                    self.sendCode(451, b"4.3.0 local error in processing")
                return
        entry: QueueEntry = resultList[0][1]
        self.sendCode(250, f"2.0.0 Ok: queued as {entry.id}".encode())
        self.factory.submitted(entry)


class SubmissionFactory(ServerFactory):
    """
    Makes a L{SubmissionServer} per connection, all writing into one queue.

    @ivar queue: the L{MessageQueue}.
    @ivar hostname: the relay's name (greeting, C{Received} fields).
    @ivar maxMessageSize: the C{SIZE} limit, in octets.
    @ivar maxRecipients: at most this many recipients per message.
    @ivar clients: the networks clients may submit from (an open relay
        would send anyone's mail): loopback by default.
    @ivar timeout: a connection idle this long is closed (C{421}).
    @ivar clock: the clock for timeouts.
    """

    noisy = False

    def __init__(
        self,
        queue: MessageQueue,
        *,
        hostname: str,
        onSubmitted: Callable[[QueueEntry], None],
        maxMessageSize: int = 25 * 1024 * 1024,
        maxRecipients: int = 1000,
        clients: Sequence[str] = LOOPBACK,
        timeout: float = 300.0,
        clock: IReactorTime | None = None,
        now: Callable[[], float] | None = None,
    ) -> None:
        """
        @param queue: where accepted messages go.
        @param hostname: the relay's name.
        @param onSubmitted: called with each entry once it is queued
            (L{RelayService.submitted}).
        @param maxMessageSize: see L{maxMessageSize}.
        @param maxRecipients: see L{maxRecipients}.
        @param clients: see L{clients}: networks such as C{"10.0.0.0/8"}
            or addresses.
        @raise ValueError: for a network that is not one.
        @param timeout: see L{timeout}.
        @param clock: see L{clock} (the global reactor by default).
        @param now: the wall clock, for C{Received} fields.
        """
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.queue = queue
        self.hostname = hostname
        self.submitted = onSubmitted
        self.maxMessageSize = maxMessageSize
        self.maxRecipients = maxRecipients
        self.clients = tuple(
            ipaddress.ip_network(network, strict=False) for network in clients
        )
        self.timeout = timeout
        self.clock: IReactorTime = clock  # type: ignore[assignment]
        self.now = now if now is not None else clock.seconds  # type: ignore[union-attr]

    def allows(self, peer: IAddress) -> bool:
        """
        Whether a client at C{peer} may submit: an IP address in one of
        L{clients} (a UNIX socket is local, and always allowed).
        """
        host = getattr(peer, "host", None)
        if not isinstance(host, str):
            return isinstance(peer, UNIXAddress)
        try:
            address = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped
        return any(address in network for network in self.clients)

    def buildProtocol(  # type: ignore[override]
        self, addr: IAddress | None
    ) -> SubmissionServer:
        """
        A new connection's server.
        """
        server = SubmissionServer()
        server.factory = self
        return server
