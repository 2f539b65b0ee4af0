"""
L{RelayService}: the scheduler that takes what the queue holds to the next
hop, retries only the recipients still pending, and tells senders about the
ones that cannot be delivered.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import attrs
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mailclient import errors
from mailclient.relay._bounce import bounceMessage
from mailclient.relay.queue import MessageQueue, QueuedRecipient, QueueEntry, QueueError
from mailclient.results import SendResult

__all__ = ["Deliverer", "RelayService"]

_log = Logger(namespace="mailclient.relay")

# Errors after which the same message can never go through, whoever tries:
# an address our client refuses, a feature the next hop lacks, a size over
# its limit.
_PERMANENT = (errors.InvalidArgumentError, errors.MessageTooLargeError)


class Deliverer(Protocol):
    """
    What sends a queued message on: a L{mailclient.Mailer} (or anything with
    its C{send}).
    """

    def send(
        self, fromAddress: str, toAddresses: list[str], message: object
    ) -> Deferred[SendResult]:
        """
        Send C{message}; fire with the L{SendResult} or fail with an error
        of L{mailclient.errors} (with a C{result} when it has one).
        """


@attrs.frozen
class RelayStats:
    """
    A snapshot of what the relay is doing.

    @ivar queued: entries in the queue.
    @ivar inFlight: deliveries under way.
    @ivar delivered: recipients delivered since the start.
    @ivar deferred: recipients put off for a retry since the start.
    @ivar failed: recipients given up on since the start.
    @ivar bounces: non-delivery reports queued since the start.
    """

    queued: int
    inFlight: int
    delivered: int
    deferred: int
    failed: int
    bounces: int


class RelayService(MultiService):
    """
    Deliver what the L{MessageQueue} holds through a L{Deliverer}, durably.

    At start it reads the queue and schedules every entry at its
    C{nextAttempt}; L{submitted} schedules a new one at once.  Each attempt
    sends the message to the recipients still pending, then stores each
    one's fate in the queue before anything else happens:

      - accepted: C{"delivered"};
      - refused for good (5xx, or an error no retry can fix):
        C{"failed"}, and the sender gets a non-delivery report;
      - anything else (4xx, a lost connection, a timeout, a connection
        lost after the data, which may have delivered it: a duplicate is
        better than a loss): C{"pending"}, tried again after a delay
        that doubles from C{retryBaseDelay} up to C{retryMaxDelay}, until
        C{maxLifetime} after arrival, when it fails too.

    An entry with no recipient pending is removed.  A report is queued
    (durably) before the entry that caused it changes, so a crash loses
    neither.  Reports go from the null sender, and a report that cannot be
    delivered is dropped (logged), never reported.

    @ivar queue: the L{MessageQueue}.
    @ivar deliverer: the next hop.
    """

    def __init__(
        self,
        queue: MessageQueue,
        deliverer: Deliverer,
        *,
        hostname: str,
        clock: IReactorTime | None = None,
        now: Any = time.time,
        retryBaseDelay: float = 60.0,
        retryMaxDelay: float = 3600.0,
        maxLifetime: float = 5 * 86400.0,
        maxInFlight: int = 100,
    ) -> None:
        """
        @param queue: the queue to deliver from.
        @param deliverer: the next hop; when it is an L{IService} (a
            L{mailclient.Mailer}) it becomes a child of this service.
        @param hostname: the relay's name, in its reports.
        @param clock: the reactor's clock (the global reactor by default).
        @param now: the wall clock (seconds since the epoch): arrival times
            and due times on disk are wall-clock times.
        @param retryBaseDelay: the delay before the first retry.
        @param retryMaxDelay: the longest delay between attempts.
        @param maxLifetime: how long a recipient may stay pending.
        @param maxInFlight: at most this many deliveries at once.
        """
        super().__init__()
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self.queue = queue
        self.deliverer = deliverer
        self.hostname = hostname
        self._clock: IReactorTime = clock  # type: ignore[assignment]
        self._now = now
        self._retryBaseDelay = retryBaseDelay
        self._retryMaxDelay = retryMaxDelay
        self._maxLifetime = maxLifetime
        self._maxInFlight = maxInFlight
        self._entries: dict[str, QueueEntry] = {}
        self._timers: dict[str, IDelayedCall] = {}
        # the entries due now, in order, each once
        self._ready: dict[str, None] = {}
        self._inFlight: set[str] = set()
        self._idle: list[Deferred[None]] = []
        self._counts = {"delivered": 0, "deferred": 0, "failed": 0, "bounces": 0}
        if IService.providedBy(deliverer):
            deliverer.setServiceParent(self)  # type: ignore[attr-defined]

    # -- lifecycle --

    def startService(self) -> None:
        """
        Lock the queue, read it and schedule every entry.

        @raise QueueError: when another relay uses the queue.
        """
        self.queue.lock()
        super().startService()
        for entry in self.queue.open():
            self._schedule(entry)

    def stopService(self) -> Deferred[None]:
        """
        Stop scheduling; deliveries under way finish (their results are
        stored), within the deliverer's own stop timeout; then release the
        queue.
        """
        for timer in self._timers.values():
            if timer.active():
                timer.cancel()
        self._timers.clear()
        self._ready.clear()
        stopped: Deferred[None] = super().stopService()

        def unlock(result: object) -> object:
            self.queue.unlock()
            return result

        return stopped.addBoth(unlock)

    # -- public --

    def submitted(self, entry: QueueEntry) -> None:
        """
        A new entry is in the queue: deliver it now.
        """
        self._schedule(entry)

    def stats(self) -> RelayStats:
        """
        What the relay is doing now.
        """
        return RelayStats(
            queued=len(self._entries),
            inFlight=len(self._inFlight),
            **self._counts,
        )

    def whenIdle(self) -> Deferred[None]:
        """
        A Deferred that fires when no delivery is under way and none is due
        now (entries waiting for a retry may remain).
        """
        d: Deferred[None] = Deferred()
        self._idle.append(d)
        self._checkIdle()
        return d

    # -- scheduling --

    def _schedule(self, entry: QueueEntry) -> None:
        self._entries[entry.id] = entry
        if not self.running or entry.id in self._inFlight:
            return
        delay = max(0.0, entry.nextAttempt - self._now())
        old = self._timers.pop(entry.id, None)
        if old is not None and old.active():
            old.cancel()
        if delay == 0.0:
            self._ready[entry.id] = None
            self._pump()
        else:
            # a new due time replaces the old one, whatever it was
            self._ready.pop(entry.id, None)
            self._timers[entry.id] = self._clock.callLater(delay, self._due, entry.id)

    def _due(self, queueID: str) -> None:
        self._timers.pop(queueID, None)
        self._ready[queueID] = None
        self._pump()

    def _pump(self) -> None:
        while self._ready and len(self._inFlight) < self._maxInFlight and self.running:
            queueID = next(iter(self._ready))
            del self._ready[queueID]
            entry = self._entries.get(queueID)
            if entry is None or queueID in self._inFlight:
                continue
            self._inFlight.add(queueID)
            self._attempt(entry)
        self._checkIdle()

    def _checkIdle(self) -> None:
        if self._inFlight or self._ready:
            return
        idle, self._idle = self._idle, []
        for d in idle:
            d.callback(None)

    # -- one attempt --

    def _attempt(self, entry: QueueEntry) -> None:
        try:
            message = self.queue.openMessage(entry)
        except QueueError as e:
            self._settled(entry, Failure(e))
            return
        d = maybeDeferred(
            self.deliverer.send, entry.sender, list(entry.pending), message
        )

        def done(outcome: SendResult | Failure) -> None:
            message.close()
            self._settled(entry, outcome)

        d.addBoth(done)

    def _settled(self, entry: QueueEntry, outcome: SendResult | Failure) -> None:
        self._inFlight.discard(entry.id)
        try:
            self._record(entry, outcome)
        finally:
            self._pump()

    def _record(self, entry: QueueEntry, outcome: SendResult | Failure) -> None:
        now = self._now()
        result: SendResult | None
        error: BaseException | None
        if isinstance(outcome, Failure):
            error = outcome.value
            result = getattr(error, "result", None)
        else:
            error, result = None, outcome
        permanent = isinstance(error, _PERMANENT)
        expired = now >= entry.received + self._maxLifetime
        recipients: list[QueuedRecipient] = []
        for recipient in entry.recipients:
            if recipient.state != "pending":
                recipients.append(recipient)
                continue
            recipients.append(
                self._fate(
                    recipient, result, error, permanent=permanent, expired=expired
                )
            )
        attempts = entry.attempts + 1
        delay = min(
            self._retryMaxDelay, self._retryBaseDelay * 2 ** min(entry.attempts, 30)
        )
        updated = attrs.evolve(
            entry,
            recipients=tuple(recipients),
            attempts=attempts,
            nextAttempt=now + delay,
            lastError=None if error is None else _describe(error),
        )
        newlyFailed = [
            r
            for old, r in zip(entry.recipients, recipients, strict=True)
            if old.state == "pending" and r.state == "failed"
        ]
        for old, new in zip(entry.recipients, recipients, strict=True):
            if old.state == "pending":
                key = {"pending": "deferred"}.get(new.state, new.state)
                self._counts[key] += 1
        if newlyFailed:
            try:
                self._bounce(updated, newlyFailed)
            except QueueError as e:
                # No report could be queued: the failed recipients stay
                # pending, so that the next attempt reports them again.
                _log.error(
                    "{queueID}: cannot queue the non-delivery report: {error}",
                    queueID=entry.id,
                    error=e.reason,
                )
                keep = {r.address for r in newlyFailed}
                updated = attrs.evolve(
                    updated,
                    recipients=tuple(
                        attrs.evolve(r, state="pending") if r.address in keep else r
                        for r in updated.recipients
                    ),
                )
        try:
            if not updated.pending:
                del self._entries[entry.id]
                self.queue.remove(updated)
                return
            self.queue.update(updated)
        except QueueError as e:
            # The entry on disk keeps its older state: after a crash, a
            # recipient delivered since may get the message again (never
            # none).
            _log.error(
                "{queueID}: cannot store its new state: {error}",
                queueID=entry.id,
                error=e.reason,
            )
            if not updated.pending:
                return
        self._schedule(updated)

    def _fate(
        self,
        recipient: QueuedRecipient,
        result: SendResult | None,
        error: BaseException | None,
        *,
        permanent: bool,
        expired: bool,
    ) -> QueuedRecipient:
        outcome = None if result is None else result.recipients.get(recipient.address)
        if outcome is not None and outcome.status in ("accepted", "rejected"):
            return attrs.evolve(
                recipient,
                state="delivered" if outcome.status == "accepted" else "failed",
                code=outcome.code,
                enhancedStatus=outcome.enhancedStatus,
                text=outcome.text,
            )
        if outcome is not None and outcome.code is not None:
            code: int | None = outcome.code
            enhanced = outcome.enhancedStatus
            text = outcome.text
        else:
            code, enhanced = recipient.code, recipient.enhancedStatus
            text = _describe(error) if error is not None else recipient.text
        if permanent:
            return attrs.evolve(
                recipient,
                state="failed",
                code=code if code is not None and code >= 500 else 554,
                enhancedStatus=enhanced,
                text=text,
            )
        if expired:
            return attrs.evolve(
                recipient,
                state="failed",
                code=code,
                enhancedStatus=enhanced,
                text=f"gave up after {self._maxLifetime:.0f} s: {text}",
            )
        return attrs.evolve(recipient, code=code, enhancedStatus=enhanced, text=text)

    def _bounce(self, entry: QueueEntry, failed: list[QueuedRecipient]) -> None:
        if entry.isBounce or entry.sender == "":
            _log.warn(
                "{queueID} from <{sender}>: undeliverable to {recipients}; "
                "no report is sent for it",
                queueID=entry.id,
                sender=entry.sender,
                recipients=", ".join(r.address for r in failed),
            )
            return
        try:
            with self.queue.openMessage(entry) as f:
                original = f.read(256 * 1024)
        except QueueError:
            original = b""
        report = bounceMessage(
            entry, failed, original, hostname=self.hostname, now=self._now()
        )
        bounce = self.queue.add("", [entry.sender], report, isBounce=True)
        self._counts["bounces"] += 1
        self._schedule(bounce)


def _describe(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"
