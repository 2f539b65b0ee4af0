"""
mailclient's outbound relay: local applications hand it mail over SMTP; it
queues each message durably (on disk, C{fsync}ed, before the C{250}) and
delivers it to a smarthost with a L{mailclient.Mailer}, retrying only the
recipients still pending and reporting the ones that cannot be delivered to
their sender.

Run it with C{twistd mailclient-relay} (see L{mailclient.relay.tap}), or
build it in your own application with L{Relay}.

  - L{mailclient.relay.queue}: the durable queue (L{MessageQueue}).
  - L{mailclient.relay.listener}: the submission server (Twisted's ESMTP
    server, writing into the queue).
  - L{RelayService}: the scheduler and delivery.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twisted.application import strports
from twisted.application.service import MultiService
from twisted.internet.interfaces import IReactorTime

from mailclient.relay._service import Deliverer, RelayService, RelayStats
from mailclient.relay.listener import LOOPBACK, SubmissionFactory, SubmissionServer
from mailclient.relay.queue import (
    FileSystem,
    MessageQueue,
    QueuedRecipient,
    QueueEntry,
    QueueError,
)

__all__ = [
    "Deliverer",
    "FileSystem",
    "MessageQueue",
    "QueueEntry",
    "QueueError",
    "QueuedRecipient",
    "Relay",
    "RelayService",
    "RelayStats",
    "SubmissionFactory",
    "SubmissionServer",
]


class Relay(MultiService):
    """
    The whole relay: a L{MessageQueue}, the L{RelayService} that delivers
    from it, and the L{SubmissionFactory} that fills it (listening on
    C{listen} when given).

    @ivar queue: the queue.
    @ivar delivery: the L{RelayService}.
    @ivar factory: the L{SubmissionFactory}, for listening yourself.
    """

    def __init__(
        self,
        queueDirectory: str,
        deliverer: Deliverer,
        *,
        hostname: str,
        listen: str | None = None,
        clock: IReactorTime | None = None,
        now: Any = None,
        maxMessageSize: int = 25 * 1024 * 1024,
        maxRecipients: int = 1000,
        clients: Sequence[str] = LOOPBACK,
        submissionTimeout: float = 300.0,
        **delivery: Any,
    ) -> None:
        """
        @param queueDirectory: the queue directory (made when missing).
        @param deliverer: the next hop, usually a L{mailclient.Mailer} for
            the smarthost (it becomes a child service).
        @param hostname: the relay's name (greeting, C{Received} fields,
            reports).
        @param listen: a server endpoint description for the submission
            listener, such as C{"tcp:2525:interface=127.0.0.1"}; L{None}
            to listen yourself on L{factory}.
        @param clock: the reactor's clock (the global reactor by default).
        @param now: the wall clock (C{time.time} by default).
        @param maxMessageSize: the C{SIZE} limit of submissions.
        @param maxRecipients: at most this many recipients per submission.
        @param clients: the networks applications may submit from
            (loopback only by default: anyone else could use the relay to
            send their mail).
        @param submissionTimeout: an idle submission connection is closed
            after this many seconds.
        @param delivery: the other keyword arguments of L{RelayService}
            (C{retryBaseDelay}, C{retryMaxDelay}, C{maxLifetime},
            C{maxInFlight}).
        """
        super().__init__()
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        if now is None:
            import time

            now = time.time
        self.queue = MessageQueue(queueDirectory, now=now)
        self.delivery = RelayService(
            self.queue, deliverer, hostname=hostname, clock=clock, now=now, **delivery
        )
        self.delivery.setServiceParent(self)
        self.factory = SubmissionFactory(
            self.queue,
            hostname=hostname,
            onSubmitted=self.delivery.submitted,
            maxMessageSize=maxMessageSize,
            maxRecipients=maxRecipients,
            clients=clients,
            timeout=submissionTimeout,
            clock=clock,
            now=now,
        )
        if listen is not None:
            strports.service(listen, self.factory).setServiceParent(self)
