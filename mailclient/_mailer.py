"""
L{Mailer}: many messages to one destination over a pool of reused
connections, with retries of only what was deferred, flow control, and a
service lifecycle.
"""

from __future__ import annotations

import copy
import random as _random
import re
from collections import deque
from collections.abc import Iterable, Sequence
from email.headerregistry import Address
from email.message import Message
from typing import Any

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import (
    IDelayedCall,
    IOpenSSLClientConnectionCreator,
    IStreamClientEndpoint,
)
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient import errors
from mailclient._sendmail import _plan, _SessionFactory
from mailclient._source import MessageSource, toMessageSource
from mailclient._wire.envelope import DSN, Recipient
from mailclient._wire.replies import Reply
from mailclient._wire.sasl import SASLMechanism
from mailclient.message import envelopeFromMessage
from mailclient.protocol import ESMTPClient, LMTPClient, validateEnvelope
from mailclient.results import Attempt, RecipientResult, SendResult, SessionInfo

__all__ = ["Mailer", "MailerStats"]

_log = Logger(namespace="mailclient.mailer")

_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)\r?$", re.IGNORECASE | re.MULTILINE)

# Errors after which trying again cannot help: the caller's input, our own
# policy, the server's certificate, a cancel.
_FINAL_ERRORS = (
    errors.InvalidArgumentError,
    errors.SMTPPolicyError,
    errors.TLSHandshakeError,
    errors.SendCancelledError,
    errors.MessageTooLargeError,
    errors.MailerStoppedError,
)

# A connection that failed before it was ready with one of these is not
# worth opening again for the sends waiting now.
_SESSION_FINAL = (
    errors.SMTPPolicyError,
    errors.TLSHandshakeError,
)


@attrs.frozen
class MailerStats:
    """
    A snapshot of a L{Mailer}'s counters (L{Mailer.stats}).

    Recipient counters count each recipient once, by its final status
    (after retries).

    @ivar sent: recipients the server accepted the message for.
    @ivar deferred: recipients still deferred when the retries ran out.
    @ivar rejected: recipients refused permanently.
    @ivar unknown: recipients whose fate is unknown (the connection broke
        after the end of the data).
    @ivar notAttempted: recipients never tried (cancelled, stopped, failed
        before their turn).
    @ivar messagesSent: sends that fired with a result (at least one
        recipient accepted).
    @ivar messagesFailed: sends that failed.
    @ivar retries: attempts beyond each send's first.
    @ivar throttled: how many times a server asked us to slow down.
    @ivar throttleLevel: the current slow-down (0: full speed; each level
        halves the connections and the message rate).
    @ivar connectionsOpen: connections open or opening now.
    @ivar connectionsOpened: connections opened since the mailer was made.
    @ivar queueDepth: sends waiting for a connection or for their retry.
    @ivar inFlight: sends on a connection now.
    """

    sent: int
    deferred: int
    rejected: int
    unknown: int
    notAttempted: int
    messagesSent: int
    messagesFailed: int
    retries: int
    throttled: int
    throttleLevel: int
    connectionsOpen: int
    connectionsOpened: int
    queueDepth: int
    inFlight: int


@attrs.define(eq=False)
class _Send:
    """
    One message given to L{Mailer.send}, over all its attempts.
    """

    sender: str
    recipients: tuple[Recipient, ...]
    source: MessageSource
    message: object
    dsn: DSN | None
    requireTLS: bool
    queued: float
    deferred: Deferred[SendResult] = attrs.field(init=False)
    pending: tuple[Recipient, ...] = ()
    results: dict[str, RecipientResult] = attrs.Factory(dict)
    history: list[Attempt] = attrs.Factory(list)
    messageId: str | None = None
    messageIdKnown: bool = False
    last: SendResult | None = None
    lastError: errors.MailClientError | None = None
    reply: Reply | None = None
    attempt: Deferred[SendResult] | None = None
    connection: _Connection | None = None
    timer: IDelayedCall | None = None
    wakeAt: float = 0.0
    done: bool = False


@attrs.define(eq=False)
class _Connection:
    """
    One pooled connection.
    """

    number: int
    client: ESMTPClient
    opened: float
    connecting: Deferred[Any] | None = None
    connectTimer: IDelayedCall | None = None
    ready: bool = False
    probing: bool = False
    closing: bool = False
    closed: bool = False
    inflight: list[_Send] = attrs.Factory(list)
    messages: int = 0
    lastUsed: float = 0.0
    readyAt: float = 0.0
    idleTimer: IDelayedCall | None = None


class Mailer(Service):
    """
    Sends many messages to one destination (a smarthost, or one MX) over a
    pool of reused connections.

    L{send} is safe to call from anywhere at any time; each call returns a
    Deferred of the same L{SendResult} as L{mailclient.sendmail} (or fails
    with the same errors), after the retries of whatever was deferred.  The
    mailer keeps up to C{maxConnections} connections, each carrying many
    messages (pipelined when the server allows), and retires a connection
    that is too old, has carried enough messages, sat idle too long, or
    failed (a 421 or a drop retires only that connection).  Transient
    failures are retried with exponential backoff and jitter, only for the
    recipients that were deferred and never after the end of the data (unless
    C{resendAfterData}).  A server that throttles (421/450/451/454 with rate
    limiting wording or codes) halves the mailer's pace until it recovers.

    It is an L{IService}: C{startService} (implied by the first L{send})
    and C{stopService}, which drains the sends in hand within
    C{stopTimeout} seconds and then closes every connection with QUIT.
    """

    def __init__(
        self,
        host: str | bytes | None,
        *,
        port: int | None = None,
        username: str | bytes | None = None,
        password: str | bytes | None = None,
        tls: str | None = None,
        tlsOptions: IOpenSSLClientConnectionCreator | None = None,
        heloName: str | None = None,
        timeout: float | None = None,
        reactor: Any = None,
        requireAuthentication: bool | None = None,
        requireTransportSecurity: bool = False,
        allowPlaintextAuth: bool = False,
        heloFallback: bool = True,
        endpoint: IStreamClientEndpoint | None = None,
        authenticators: Sequence[SASLMechanism] | None = None,
        pipelining: bool = True,
        chunking: bool = True,
        lmtp: bool = False,
        maxConnections: int = 4,
        maxMessagesPerConnection: int = 1000,
        maxConnectionAge: float = 600.0,
        idleTimeout: float = 30.0,
        probeAfter: float = 5.0,
        maxQueued: int = 10000,
        maxMessagesPerSecond: float | None = None,
        retries: int = 3,
        retryWindow: float = 600.0,
        retryBaseDelay: float = 2.0,
        retryMaxDelay: float = 120.0,
        resendAfterData: bool = False,
        throttleRecovery: float = 60.0,
        stopTimeout: float = 30.0,
        random: _random.Random | None = None,
    ) -> None:
        """
        The connection keywords are those of L{mailclient.sendmail}; see
        there.  The rest:

        @param maxConnections: at most this many connections at once.
        @param maxMessagesPerConnection: a connection is retired (QUIT) after
            carrying this many messages.
        @param maxConnectionAge: a connection takes no new message after
            this many seconds.
        @param idleTimeout: a connection idle this long is closed with QUIT.
        @param probeAfter: a connection idle this long is checked with NOOP
            before it carries a message.
        @param maxQueued: at most this many sends wait (for a connection or
            for a retry); beyond, L{send} fails with L{errors.QueueFullError}.
        @param maxMessagesPerSecond: the pace limit for this destination
            (L{None}: no limit but the connections).
        @param retries: how many more attempts a send gets after its first.
        @param retryWindow: no attempt starts later than this many seconds
            after the send was queued.
        @param retryBaseDelay: the delay before the first retry; it doubles
            for each later one (with jitter of +/-50%).
        @param retryMaxDelay: the longest delay between attempts.
        @param resendAfterData: retry recipients left C{"unknown"} (the
            connection broke after the end of the data): they may then
            receive the message twice.  Off by default.
        @param throttleRecovery: after this many seconds without another
            throttling reply, the pace steps back up one level.
        @param stopTimeout: how long C{stopService} lets sends in hand
            finish before cancelling them.
        @param random: the source of jitter (for tests).
        @raise InvalidArgumentError: for a bad setting.
        """
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self._reactor = reactor
        for name, value, least in (
            ("maxConnections", maxConnections, 1),
            ("maxMessagesPerConnection", maxMessagesPerConnection, 1),
            ("maxQueued", maxQueued, 0),
            ("retries", retries, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise errors.InvalidArgumentError(
                    name, value, f"expected an int >= {least}"
                )
        for name, number in (
            ("maxConnectionAge", maxConnectionAge),
            ("idleTimeout", idleTimeout),
            ("probeAfter", probeAfter),
            ("retryWindow", retryWindow),
            ("retryBaseDelay", retryBaseDelay),
            ("retryMaxDelay", retryMaxDelay),
            ("throttleRecovery", throttleRecovery),
            ("stopTimeout", stopTimeout),
        ):
            if not isinstance(number, int | float) or number < 0:
                raise errors.InvalidArgumentError(name, number, "expected seconds >= 0")
        if maxMessagesPerSecond is not None and not (
            isinstance(maxMessagesPerSecond, int | float) and maxMessagesPerSecond > 0
        ):
            raise errors.InvalidArgumentError(
                "maxMessagesPerSecond", maxMessagesPerSecond, "expected a number > 0"
            )
        self._plan = _plan(
            reactor,
            host,
            port=port,
            username=username,
            password=password,
            tls=tls,
            tlsOptions=tlsOptions,
            heloName=heloName,
            timeout=timeout,
            requireAuthentication=requireAuthentication,
            requireTransportSecurity=requireTransportSecurity,
            allowPlaintextAuth=allowPlaintextAuth,
            heloFallback=heloFallback,
            endpoint=endpoint,
            authenticators=authenticators,
            pipelining=pipelining,
            chunking=chunking,
            lmtp=lmtp,
        )
        if isinstance(host, bytes):
            host = host.decode("ascii", "replace")
        self.destination = (
            f"{host}:{port}" if host is not None and port else host or repr(endpoint)
        )
        self._protocol = LMTPClient if lmtp else ESMTPClient
        self._connectTimeout = min(timeout or 30.0, 30.0)
        self.maxConnections = maxConnections
        self.maxMessagesPerConnection = maxMessagesPerConnection
        self.maxConnectionAge = maxConnectionAge
        self.idleTimeout = idleTimeout
        self.probeAfter = probeAfter
        self.maxQueued = maxQueued
        self.maxMessagesPerSecond = maxMessagesPerSecond
        self.retries = retries
        self.retryWindow = retryWindow
        self.retryBaseDelay = retryBaseDelay
        self.retryMaxDelay = retryMaxDelay
        self.resendAfterData = resendAfterData
        self.throttleRecovery = throttleRecovery
        self.stopTimeout = stopTimeout
        self._random = random if random is not None else _random.Random()

        self._waiting: deque[_Send] = deque()
        self._sleeping: set[_Send] = set()
        self._connections: list[_Connection] = []
        self._numbered = 0
        self._tokens: float | None = None  # full
        self._tokensAt = 0.0
        self._pumpTimer: IDelayedCall | None = None
        self._pumping = False
        self._throttleLevel = 0
        self._throttleAt = 0.0
        self._connectFailures = 0
        self._openAfter = 0.0
        self._started = False
        self._stopping: bool | None = None
        self._stopWaiters: list[Deferred[None]] = []
        self._stopTimer: IDelayedCall | None = None
        self._counts = dict.fromkeys(
            (
                "sent",
                "deferred",
                "rejected",
                "unknown",
                "notAttempted",
                "messagesSent",
                "messagesFailed",
                "retries",
                "throttled",
                "connectionsOpened",
            ),
            0,
        )

    # -- public API -------------------------------------------------------------------

    def send(
        self,
        fromAddress: str | bytes,
        toAddresses: str | bytes | Recipient | Iterable[str | bytes | Recipient],
        message: object,
        *,
        dsn: DSN | None = None,
        requireTLS: bool = False,
    ) -> Deferred[SendResult]:
        """
        Send one message (queued until a connection can take it).

        @param fromAddress: the envelope sender (C{""} for the null sender).
        @param toAddresses: one recipient or several (strings or
            L{mailclient.Recipient} objects).
        @param message: an C{EmailMessage}, C{bytes}, C{str} or a binary
            file (streamed; one that cannot seek is kept in a temporary
            file as it is read, so that a retry can read it again).
        @param dsn: delivery status notification options.
        @param requireTLS: REQUIRETLS (RFC 8689).
        @return: a Deferred that fires with the L{SendResult} (its
            C{history} lists every attempt) when at least one recipient
            accepted the message, or fails with an error from
            L{mailclient.errors} whose C{result} has every recipient.
            Cancelling it affects only this message.
        """
        try:
            sender, recipients = validateEnvelope(fromAddress, toAddresses, dsn)
            source = toMessageSource(message)
        except errors.MailClientError as e:
            return fail(e)
        if self._stopping is not None or (self._started and not self.running):
            return fail(errors.MailerStoppedError("no new message is taken"))
        if len(self._waiting) + len(self._sleeping) >= self.maxQueued:
            return fail(errors.QueueFullError(self.maxQueued))
        if not self.running:
            self.startService()
        if self.retries:
            source.keepForReopen()
        send = _Send(
            sender, recipients, source, message, dsn, bool(requireTLS), self._now()
        )
        send.pending = recipients
        send.deferred = Deferred(lambda _: self._cancel(send))
        self._waiting.append(send)
        # With sends already waiting and every connection there may be
        # open, this one can only go when a connection frees up, which
        # pumps anyway.
        if len(self._waiting) == 1 or len(self._connections) < self._limit():
            self._pump()
        return send.deferred

    def sendMessage(
        self,
        message: Message,
        *,
        fromAddress: str | Address | None = None,
        toAddresses: str | Address | Iterable[str | Address] | None = None,
        dsn: DSN | None = None,
        requireTLS: bool = False,
    ) -> Deferred[SendResult]:
        """
        Send an L{email.message.Message} to the recipients its headers
        name, from the sender they name, as L{mailclient.sendMessage} does
        (see L{mailclient.message.envelopeFromMessage}).  The C{Bcc} and
        C{Resent-Bcc} headers are not sent.

        @param message: the message.
        @param fromAddress: the envelope sender to use instead of the
            headers' (C{""} for the null sender).
        @param toAddresses: the recipients to use instead of the headers'.
        @param dsn: delivery status notification options.
        @param requireTLS: REQUIRETLS (RFC 8689).
        @return: a Deferred that fires as L{send}'s does; bad input
            (including a message whose headers give no sender or no
            recipient) fails it with L{errors.InvalidArgumentError}.
        """
        try:
            envelope = envelopeFromMessage(
                message, fromAddress=fromAddress, toAddresses=toAddresses
            )
            return self.send(
                envelope.sender,
                envelope.recipients,
                envelope.message,
                dsn=dsn,
                requireTLS=requireTLS,
            )
        except Exception:
            return fail()

    @property
    def stats(self) -> MailerStats:
        """
        The counters now.
        """
        return MailerStats(
            **self._counts,
            throttleLevel=self._level(),
            connectionsOpen=sum(1 for c in self._connections if not c.closed),
            queueDepth=len(self._waiting) + len(self._sleeping),
            inFlight=sum(len(c.inflight) for c in self._connections),
        )

    def startService(self) -> None:
        """
        Start taking and sending messages.
        """
        super().startService()
        self._started = True
        self._stopping = None
        self._pump()

    def stopService(self) -> Deferred[None]:
        """
        Take no new message; let the sends in hand finish for up to
        C{stopTimeout} seconds (then cancel them: a send whose data was
        under way is then "unknown" for its recipients, any other fails
        with L{errors.MailerStoppedError}); close every connection with
        QUIT.

        @return: a Deferred that fires once every connection is closed.
        """
        super().stopService()
        d: Deferred[None] = Deferred()
        self._stopWaiters.append(d)
        if self._stopping is None:
            self._stopping = True
            self._stopTimer = self._reactor.callLater(
                self.stopTimeout, self._stopDeadline
            )
            # A retry due after the deadline will not happen: say so now.
            deadline = self._now() + self.stopTimeout
            for send in [s for s in self._sleeping if s.wakeAt > deadline]:
                self._finish(
                    send, errors.MailerStoppedError("stopped before its next attempt")
                )
        self._maybeStopped()
        return d

    # -- sending ----------------------------------------------------------------------

    def _pump(self) -> None:
        """
        Hand waiting sends to connections that can take them; open
        connections for the rest, within the limits.
        """
        if self._pumping or (not self.running and self._stopping is None):
            return
        self._pumping = True
        try:
            while self._waiting:
                connection = self._pickConnection()
                if connection is None:
                    break
                if not self._takeToken():
                    break
                self._dispatch(self._waiting.popleft(), connection)
            demand = len(self._waiting) - sum(
                1 for c in self._connections if not c.ready or c.probing
            )
            while demand > 0 and self._canOpen():
                self._open()
                demand -= 1
        finally:
            self._pumping = False

    def _limit(self) -> int:
        return max(1, self.maxConnections >> self._level())

    def _canOpen(self) -> bool:
        """
        Whether another connection may open now: under the (throttled)
        limit, and not too soon after connections failed.
        """
        live = [c for c in self._connections if not c.closing and not c.closed]
        if len(live) >= self._limit():
            return False
        wait = self._openAfter - self._now()
        if wait > 0:
            self._schedulePump(wait)
            return False
        return True

    def _usable(self, connection: _Connection, now: float) -> bool:
        return (
            connection.ready
            and not connection.closing
            and not connection.probing
            and connection.client.canSend
            and connection.messages < self.maxMessagesPerConnection
            and now - connection.opened < self.maxConnectionAge
        )

    def _pickConnection(self) -> _Connection | None:
        """
        A connection that can take a message now: an idle one first (one
        idle for a while is probed with NOOP first, and skipped meanwhile),
        else one whose current message the next can follow in a pipeline.
        """
        now = self._now()
        surplus = 0
        if self._throttleLevel:
            live = sum(1 for c in self._connections if not c.closing)
            surplus = live - self._limit()
        best: _Connection | None = None
        for connection in list(self._connections):
            if not connection.ready or connection.closing or connection.probing:
                continue
            if connection.inflight:
                if best is None and self._hasRoom(connection, now):
                    best = connection
                continue
            if not self._usable(connection, now):
                self._retire(connection)
                continue
            if surplus > 0:
                surplus -= 1
                self._retire(connection)
                continue
            if now - connection.lastUsed >= self.probeAfter:
                self._probe(connection)
                continue
            return connection
        return best

    def _dispatch(self, send: _Send, connection: _Connection) -> None:
        self._cancelIdle(connection)
        connection.messages += 1
        connection.inflight.append(send)
        send.connection = connection
        number = len(send.history) + 1
        started = self._now()
        tried = send.pending
        d = connection.client._sendChecked(
            send.sender, tried, send.source, send.dsn, send.requireTLS
        )
        send.attempt = d
        d.addBoth(self._attemptDone, send, connection, number, started, tried)

    def _attemptDone(
        self,
        outcome: SendResult | Failure,
        send: _Send,
        connection: _Connection,
        number: int,
        started: float,
        tried: tuple[Recipient, ...],
    ) -> None:
        send.attempt = None
        send.connection = None
        if send in connection.inflight:
            connection.inflight.remove(send)
        if isinstance(outcome, Failure):
            error = outcome.value
            if not isinstance(error, errors.MailClientError):
                error = errors.SMTPProtocolError(f"unexpected failure: {error!r}")
            result = error.result
        else:
            error = None
            result = outcome
        if (
            error is not None
            and not send.done
            and not isinstance(error, errors.SendCancelledError)
            and (result is None or "start" not in result.timings)
        ):
            # The connection failed before this message's turn came on it:
            # nothing was tried, so it is not an attempt; it goes first to
            # the next connection.
            if not connection.inflight and not connection.closed:
                self._idleOrRetire(connection)
            self._waiting.appendleft(send)
            self._pump()
            return
        self._record(send, number, started, tried, result, error, connection.number)
        self._logTransaction(send, connection, number, result, error)
        if not connection.inflight:
            connection.lastUsed = self._now()
        self._settle(send, error)
        self._refill(connection)

    def _refill(self, connection: _Connection) -> None:
        """
        C{connection} has room for another message: give it the next
        waiting ones.  After every pump either nothing waits or no
        connection has room, so only this one needs looking at (unless the
        mailer is throttled, when connections may have to go).
        """
        if self._throttleLevel or self._pumping:
            self._pump()
        else:
            now = self._now()
            while self._waiting and self._hasRoom(connection, now):
                if not self._takeToken():
                    break
                self._dispatch(self._waiting.popleft(), connection)
            if self._waiting and len(self._connections) < self._limit():
                self._pump()
        if not connection.inflight and not connection.closed:
            self._idleOrRetire(connection)

    def _hasRoom(self, connection: _Connection, now: float) -> bool:
        busy = len(connection.inflight)
        return (
            busy == 0 or (busy == 1 and connection.client.pipeliningActive)
        ) and self._usable(connection, now)

    def _record(
        self,
        send: _Send,
        number: int,
        started: float,
        tried: tuple[Recipient, ...],
        result: SendResult | None,
        error: errors.MailClientError | None,
        connection: int | None,
    ) -> None:
        """
        Add an attempt to C{send}'s history and merge what it learnt.
        """
        addresses = tuple(r.address for r in tried)
        outcome: dict[str, RecipientResult] = {}
        if result is not None:
            for address in addresses:
                found = result.recipients.get(address)
                if found is not None:
                    outcome[address] = found
            send.last = result
            if result.reply is not None:
                send.reply = result.reply
        for address in addresses:
            if address not in outcome:
                outcome[address] = RecipientResult(
                    address,
                    "not-attempted",
                    None,
                    None,
                    f"not attempted: {error}" if error else "not attempted",
                    "SESSION",
                )
        send.results.update(outcome)
        send.lastError = error
        if number > 1:
            self._counts["retries"] += 1
        now = self._now()
        send.history.append(
            Attempt(
                number=number,
                started=started - send.queued,
                duration=now - started,
                recipients=addresses,
                outcome=outcome,
                reply=result.reply if result is not None else None,
                error=f"{type(error).__name__}: {error}" if error else None,
                connection=connection,
            )
        )
        if self._throttledBy(outcome, error):
            self._throttle()

    def _throttledBy(
        self, outcome: dict[str, RecipientResult], error: errors.MailClientError | None
    ) -> bool:
        """
        Whether the server asked us to slow down: a throttling reply to the
        session or the message, or to a recipient when it is not about that
        one mailbox (a mailbox receiving too fast, C{4.2.x}, concerns only
        that recipient, whose retry backs off on its own).
        """
        if isinstance(error, errors.SMTPReplyError) and error.classification.throttled:
            return True
        for r in outcome.values():
            if r.status != "deferred" or r.code is None:
                continue
            meaning = r.classification
            if meaning.throttled and meaning.reason != "mailbox":
                return True
        return False

    def _retryable(self, error: errors.MailClientError | None) -> bool:
        if isinstance(error, _FINAL_ERRORS):
            return False
        if (
            isinstance(error, errors.SMTPReplyError)
            and not isinstance(error, errors.SendFailedError)
            and not error.isTransient
        ):
            return False
        return True

    def _settle(self, send: _Send, error: errors.MailClientError | None) -> None:
        """
        After an attempt: retry the recipients that may be, or finish.
        """
        if send.done:
            return
        again = tuple(
            r
            for r in send.recipients
            if send.results[r.address].status in ("deferred", "not-attempted")
            or (self.resendAfterData and send.results[r.address].status == "unknown")
        )
        if not again or not self._retryable(error):
            self._finish(send)
            return
        if self._stopping is not None:
            self._finish(
                send, errors.MailerStoppedError("stopped before it could be retried")
            )
            return
        delay = self._backoff(len(send.history))
        if (
            len(send.history) > self.retries
            or self._now() + delay - send.queued > self.retryWindow
        ):
            self._finish(send)
            return
        send.pending = again
        send.wakeAt = self._now() + delay
        send.timer = self._reactor.callLater(delay, self._wake, send)
        self._sleeping.add(send)

    def _backoff(self, attempts: int) -> float:
        base = min(self.retryBaseDelay * 2 ** (attempts - 1), self.retryMaxDelay)
        return float(base * self._random.uniform(0.5, 1.5))

    def _wake(self, send: _Send) -> None:
        send.timer = None
        self._sleeping.discard(send)
        self._waiting.append(send)
        self._pump()

    def _finish(self, send: _Send, error: errors.MailClientError | None = None) -> None:
        """
        Fire C{send}'s Deferred with everything learnt: a result when a
        recipient accepted the message, else C{error} or the latest error.
        A cancel always fails it with L{errors.SendCancelledError}.
        """
        if send.done:
            return
        send.done = True
        self._sleeping.discard(send)
        if send.timer is not None and send.timer.active():
            send.timer.cancel()
        send.timer = None
        send.source.close()
        result = self._merged(send)
        for r in result.recipients.values():
            key = "notAttempted" if r.status == "not-attempted" else r.status
            self._counts["sent" if key == "accepted" else key] += 1
        cancelled = isinstance(error, errors.SendCancelledError) or isinstance(
            send.lastError, errors.SendCancelledError
        )
        if result.accepted and not cancelled:
            self._counts["messagesSent"] += 1
            send.deferred.callback(result)
        else:
            self._counts["messagesFailed"] += 1
            failure = error or send.lastError
            if failure is None:
                failure = errors.AllRecipientsRefusedError(result)
            else:
                failure = copy.copy(failure)
            failure.result = result
            send.deferred.errback(failure)
        self._maybeStopped()

    def _merged(self, send: _Send) -> SendResult:
        history = tuple(send.history)
        last = send.last
        if (
            last is not None
            and len(history) == 1
            and len(last.recipients) == len(send.recipients)
        ):
            # One attempt for every recipient: its result is the whole story
            # (built directly: attrs.evolve is several times slower).
            return SendResult(
                sender=last.sender,
                recipients=last.recipients,
                reply=last.reply,
                session=last.session,
                transcript=last.transcript,
                timings=last.timings,
                attempts=1,
                extensions=last.extensions,
                history=history,
            )
        recipients = {
            r.address: send.results.get(r.address)
            or RecipientResult(
                r.address, "not-attempted", None, None, "not attempted", "SESSION"
            )
            for r in send.recipients
        }
        if last is not None:
            return attrs.evolve(
                last,
                recipients=recipients,
                reply=send.reply,
                attempts=max(1, len(history)),
                history=history,
            )
        return SendResult(
            sender=send.sender,
            recipients=recipients,
            reply=None,
            session=None,
            attempts=len(history),
            history=history,
        )

    def _cancel(self, send: _Send) -> None:
        """
        The caller cancelled C{send}: only it is affected.
        """
        if send.done:
            return
        if send.attempt is not None:
            # The connection resets the transaction (or drops it, during
            # the data); the attempt fails with SendCancelledError at once,
            # which finishes the send.
            send.attempt.cancel()
            return
        if send in self._waiting:
            self._waiting.remove(send)
        self._finish(send, errors.SendCancelledError("queued"))

    # -- connections ------------------------------------------------------------------

    def _open(self) -> None:
        self._numbered += 1
        self._counts["connectionsOpened"] += 1
        client = self._protocol(clock=self._reactor, **self._plan.clientOptions)
        client.logMessages = False
        for mechanism in self._plan.authenticators:
            client.registerAuthenticator(mechanism)
        connection = _Connection(self._numbered, client, self._now())
        self._connections.append(connection)
        _log.info(
            "connection {connection} to {destination} opening",
            connection=connection.number,
            destination=self.destination,
        )
        client.whenReady().addCallbacks(
            lambda info: self._ready(info, connection),
            lambda reason: self._notReady(reason, connection),
        )
        client.whenClosed().addCallback(lambda _: self._closed(connection))
        d = self._plan.endpoint.connect(_SessionFactory(client))
        connection.connecting = d
        timedOut = []

        def timeout() -> None:
            timedOut.append(True)
            d.cancel()

        connection.connectTimer = self._reactor.callLater(self._connectTimeout, timeout)

        def connected(_: object) -> None:
            connection.connecting = None
            self._cancelTimer(connection.connectTimer)

        def failed(reason: Failure) -> None:
            connection.connecting = None
            self._cancelTimer(connection.connectTimer)
            if timedOut:
                why = f"no connection within {self._connectTimeout:g}s"
            else:
                why = reason.getErrorMessage() or type(reason.value).__name__
            client.abort(errors.SMTPConnectError(why))

        d.addCallbacks(connected, failed)

    def _ready(self, info: SessionInfo, connection: _Connection) -> None:
        self._connectFailures = 0
        self._openAfter = 0.0
        connection.ready = True
        connection.readyAt = connection.lastUsed = self._now()
        _log.info(
            "connection {connection} to {destination} ready "
            "({tlsVersion}, {seconds:.3f}s)",
            connection=connection.number,
            destination=self.destination,
            server=info.serverName,
            tlsVersion=info.tlsVersion or "no TLS",
            tlsCipher=info.tlsCipher,
            authMechanism=info.authMechanism,
            pipelining=connection.client.pipeliningActive,
            seconds=connection.readyAt - connection.opened,
        )
        self._pump()
        if not connection.inflight:
            self._idleOrRetire(connection)

    def _notReady(self, reason: Failure, connection: _Connection) -> None:
        """
        The connection failed before it could carry mail: waiting sends are
        charged an attempt when no other connection can take them (the
        destination looks down), and fail at once when trying again cannot
        help (our TLS or authentication policy, the server's certificate).
        """
        error = reason.value
        if not isinstance(error, errors.MailClientError):
            error = errors.SMTPConnectError(str(error))
        _log.warn(
            "connection {connection} to {destination} failed: {error}",
            connection=connection.number,
            destination=self.destination,
            error=str(error),
        )
        if self._throttledBy({}, error):
            self._throttle()
        # Connections that keep failing are not reopened at once: wait
        # 0.5 s, then twice as long after each failure in a row (at most
        # retryMaxDelay), until one is ready.
        self._connectFailures += 1
        self._openAfter = self._now() + min(
            0.5 * 2 ** (self._connectFailures - 1), max(self.retryMaxDelay, 0.5)
        )
        final = isinstance(error, _SESSION_FINAL) or (
            isinstance(error, errors.SMTPReplyError) and not error.isTransient
        )
        others = any(
            c.ready and not c.closed and c is not connection for c in self._connections
        )
        if final or not others:
            waiting, self._waiting = list(self._waiting), deque()
            for send in waiting:
                number = len(send.history) + 1
                now = self._now()
                self._record(send, number, now, send.pending, None, error, None)
                if final:
                    self._finish(send)
                else:
                    self._settle(send, error)
        self._closed(connection)

    def _probe(self, connection: _Connection) -> None:
        """
        The connection sat idle for a while: check it with NOOP before it
        carries a message (a server may have closed it without our noticing).
        """
        connection.probing = True
        _log.debug(
            "connection {connection} idle for {seconds:.1f}s: NOOP",
            connection=connection.number,
            seconds=self._now() - connection.lastUsed,
        )

        def alive(_: object) -> None:
            connection.probing = False
            connection.lastUsed = self._now()
            self._pump()
            if not connection.inflight:
                self._idleOrRetire(connection)

        def dead(reason: Failure) -> None:
            connection.probing = False
            self._retire(connection, abort=True)
            self._pump()

        connection.client.noop().addCallbacks(alive, dead)

    def _idleOrRetire(self, connection: _Connection) -> None:
        """
        C{connection} has nothing in flight: retire it if it is spent, else
        close it after C{idleTimeout} of idleness.
        """
        if connection.closing or connection.closed:
            return
        if self._stopping is not None or not self._usable(connection, self._now()):
            self._retire(connection)
            return
        self._cancelIdle(connection)
        connection.idleTimer = self._reactor.callLater(
            self.idleTimeout, self._idle, connection
        )

    def _idle(self, connection: _Connection) -> None:
        connection.idleTimer = None
        if not connection.inflight:
            self._retire(connection)

    def _cancelIdle(self, connection: _Connection) -> None:
        self._cancelTimer(connection.idleTimer)
        connection.idleTimer = None

    def _retire(self, connection: _Connection, abort: bool = False) -> None:
        """
        Take no new message on C{connection}; QUIT once its messages are
        done (or drop it at once).
        """
        if connection.closing or connection.closed:
            return
        connection.closing = True
        self._cancelIdle(connection)
        if connection.connecting is not None:
            connection.connecting.cancel()
        if abort:
            connection.client.abort(
                errors.ConnectionLostError(
                    connection.client.phase.value, "closed by the mailer"
                )
            )
        else:
            connection.client.quit()

    def _closed(self, connection: _Connection) -> None:
        if connection.closed:
            return
        connection.closed = True
        self._cancelIdle(connection)
        self._cancelTimer(connection.connectTimer)
        if connection in self._connections:
            self._connections.remove(connection)
        if connection.ready:
            _log.info(
                "connection {connection} to {destination} closed after "
                "{messages} messages in {seconds:.3f}s",
                connection=connection.number,
                destination=self.destination,
                messages=connection.messages,
                seconds=self._now() - connection.opened,
            )
        self._pump()
        self._maybeStopped()

    # -- flow control -----------------------------------------------------------------

    def _now(self) -> float:
        return float(self._reactor.seconds())

    def _level(self) -> int:
        """
        The slow-down level now: one step down per C{throttleRecovery}
        seconds since the last throttling reply.
        """
        if not self._throttleLevel:
            return 0
        if self.throttleRecovery <= 0:
            return 0
        steps = int((self._now() - self._throttleAt) // self.throttleRecovery)
        return max(0, self._throttleLevel - steps)

    def _throttle(self) -> None:
        """
        A server asked us to slow down: halve the connections and the pace.
        """
        level = min(self._level() + 1, 8)
        self._throttleLevel = level
        self._throttleAt = self._now()
        self._counts["throttled"] += 1
        _log.warn(
            "{destination} asks us to slow down: level {throttleLevel} "
            "({connections} connections)",
            destination=self.destination,
            throttleLevel=level,
            connections=self._limit(),
        )
        self._schedulePump(self.throttleRecovery)

    def _rate(self) -> float | None:
        if self.maxMessagesPerSecond is None:
            return None
        return float(self.maxMessagesPerSecond) / (1 << self._level())

    def _takeToken(self) -> bool:
        """
        Whether the pace allows a message now (a token bucket); if not, try
        again when it will.
        """
        rate = self._rate()
        if rate is None:
            return True
        now = self._now()
        capacity = max(1.0, rate)
        tokens = capacity if self._tokens is None else self._tokens
        tokens = min(capacity, tokens + (now - self._tokensAt) * rate)
        self._tokensAt = now
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return True
        self._tokens = tokens
        self._schedulePump((1.0 - tokens) / rate)
        return False

    def _schedulePump(self, delay: float) -> None:
        if self._pumpTimer is not None and self._pumpTimer.active():
            if self._pumpTimer.getTime() <= self._now() + delay:
                return
            self._pumpTimer.cancel()

        def pump() -> None:
            self._pumpTimer = None
            self._pump()

        self._pumpTimer = self._reactor.callLater(delay, pump)

    # -- stopping ---------------------------------------------------------------------

    def _stopDeadline(self) -> None:
        """
        The drain time is over: sends not finished are given up.
        """
        self._stopTimer = None
        given, self._waiting = list(self._waiting), deque()
        for send in given + list(self._sleeping):
            self._finish(
                send, errors.MailerStoppedError("stopped before it could be sent")
            )
        for connection in list(self._connections):
            for send in list(connection.inflight):
                if send.attempt is not None:
                    send.attempt.cancel()
            if not connection.closed:
                self._retire(
                    connection, abort=not connection.ready or bool(connection.inflight)
                )
        self._maybeStopped()

    def _maybeStopped(self) -> None:
        """
        While stopping: once no send is left, QUIT every connection; once
        every connection is closed, the stop is complete.
        """
        if self._stopping is None:
            return
        busy = bool(self._waiting or self._sleeping)
        for connection in list(self._connections):
            if connection.inflight:
                busy = True
            elif not busy and not connection.closing:
                self._retire(connection, abort=not connection.ready)
        if busy or self._connections:
            return
        self._cancelTimer(self._stopTimer)
        self._stopTimer = None
        self._cancelTimer(self._pumpTimer)
        self._pumpTimer = None
        self._stopping = None
        waiters, self._stopWaiters = self._stopWaiters, []
        for d in waiters:
            d.callback(None)

    @staticmethod
    def _cancelTimer(timer: IDelayedCall | None) -> None:
        if timer is not None and timer.active():
            timer.cancel()

    # -- observability ----------------------------------------------------------------

    def _logTransaction(
        self,
        send: _Send,
        connection: _Connection,
        number: int,
        result: SendResult | None,
        error: errors.MailClientError | None,
    ) -> None:
        attempt = send.history[-1]
        if not send.messageIdKnown:
            send.messageIdKnown = True
            send.messageId = _messageId(send.message)
        # Plain values only (an observer may keep events for a while).
        outcomes = attempt.outcome.values()
        statuses = tuple([r.status for r in outcomes])
        _log.info(
            "message {messageId} to {destination} (attempt {attempt}, "
            "connection {connection}): {accepted}/{count} accepted{why}",
            destination=self.destination,
            connection=connection.number,
            messageId=send.messageId or "(no Message-ID)",
            sender=send.sender,
            attempt=number,
            recipients=attempt.recipients,
            statuses=statuses,
            codes=tuple([r.code for r in outcomes]),
            replyCode=attempt.reply.code if attempt.reply is not None else None,
            queueId=result.queueId if result is not None else None,
            duration=attempt.duration,
            tlsVersion=(
                result.session.tlsVersion
                if result is not None and result.session is not None
                else None
            ),
            error=attempt.error,
            accepted=statuses.count("accepted"),
            count=len(statuses),
            why=f" ({attempt.error})" if attempt.error else "",
        )


def _messageId(message: object) -> str | None:
    """
    The Message-ID of C{message} when it is cheap to find (for logs).
    """
    if isinstance(message, Message):
        value = message.get("Message-ID")
        return str(value).strip() if value is not None else None
    if isinstance(message, str):
        message = message[:65536].encode("utf-8", "replace")
    if isinstance(message, bytes | bytearray | memoryview):
        head = bytes(message[:65536])
        end = head.find(b"\n\r\n")
        if end < 0:
            end = head.find(b"\n\n")
        if end >= 0:
            head = head[:end]
        match = _MESSAGE_ID.search(head)
        if match:
            return match.group(1).decode("ascii", "replace").strip() or None
    return None
