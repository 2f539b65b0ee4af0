"""
What a send reports: a result for every recipient, the final reply, and what
the session learnt.  Plain immutable values; nothing here imports Twisted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Literal

import attrs

from mailclient._wire.capabilities import Capabilities
from mailclient._wire.replies import Reply
from mailclient._wire.status import StatusClass, classify

__all__ = [
    "Attempt",
    "DeliveryStatus",
    "RecipientResult",
    "RecipientStatus",
    "SendResult",
    "SessionInfo",
    "recipientStatusFor",
]

RecipientStatus = Literal[
    "accepted", "deferred", "rejected", "not-attempted", "unknown"
]
"""
The fate of one recipient:

- C{"accepted"}: the server accepted the recipient and took responsibility
  for the message (2xx to RCPT and 2xx to the end of the data);
- C{"deferred"}: a transient (4xx) refusal; trying again later may work;
- C{"rejected"}: a permanent (5xx) refusal;
- C{"not-attempted"}: the transaction ended before this recipient was tried;
- C{"unknown"}: the connection broke after the data was sent and before the
  server's reply; the message may or may not have been delivered.
"""

DeliveryStatus = Literal["sent", "deferred", "rejected", "failed"]
"""
A recipient's fate in the coarser vocabulary of mail APIs such as
amsdal_mail, derived from its L{RecipientStatus}:

- C{"sent"}: accepted (the server took responsibility for the message);
- C{"deferred"}: a transient (4xx) refusal;
- C{"rejected"}: a permanent (5xx) refusal;
- C{"failed"}: no reply decided it: the transaction ended before the
  recipient was tried (C{"not-attempted"}), or the connection broke after
  the data was sent (C{"unknown"}: the message I{may} have been delivered;
  the precise status says so).
"""

_DELIVERY_STATUS: dict[str, DeliveryStatus] = {
    "accepted": "sent",
    "deferred": "deferred",
    "rejected": "rejected",
    "not-attempted": "failed",
    "unknown": "failed",
}

_QUEUE_ID = re.compile(r"queued as ([A-Za-z0-9][A-Za-z0-9._:/-]*)", re.IGNORECASE)


def recipientStatusFor(code: int) -> RecipientStatus:
    """
    Classify a reply code into a recipient status.

    @param code: a reply code to RCPT, DATA or the end of the data.
    @return: C{"accepted"} for 2xx, C{"deferred"} for 4xx, C{"rejected"} for
        anything else (5xx; other codes are protocol errors upstream).
    """
    if 200 <= code < 300:
        return "accepted"
    if 400 <= code < 500:
        return "deferred"
    return "rejected"


@attrs.frozen
class RecipientResult:
    """
    The outcome for one recipient.

    @ivar address: the address as the caller gave it (decoded to C{str}).
    @ivar status: a L{RecipientStatus}.
    @ivar code: the reply code that decided it, or L{None} when no reply
        decided it (C{"not-attempted"}, C{"unknown"}).
    @ivar enhancedStatus: the RFC 3463 code such as C{"5.1.1"}, or L{None}.
    @ivar text: the text of the deciding reply (or an explanation).
    @ivar phase: the step that decided it: C{"MAIL"}, C{"RCPT"}, C{"DATA"}
        (the reply to the DATA command) or C{"END-OF-DATA"} (the final reply
        to the message), or C{"SESSION"} when the session ended first.
    """

    address: str
    status: RecipientStatus
    code: int | None
    enhancedStatus: str | None
    text: str
    phase: str

    @property
    def classification(self) -> StatusClass:
        """
        What this recipient's reply means: transient or permanent, the
        reason (mailbox, address, policy, network, security, system,
        content...) and the retry advice (see L{mailclient.classify}).  With
        no reply (C{"unknown"}, C{"not-attempted"}) it is a transient
        network matter.
        """
        return classify(self.code, self.enhancedStatus, self.text)

    @property
    def deliveryStatus(self) -> DeliveryStatus:
        """
        The L{DeliveryStatus} (C{"sent"}, C{"deferred"}, C{"rejected"} or
        C{"failed"}) that this recipient's L{status} maps to.
        """
        return _DELIVERY_STATUS[self.status]

    @classmethod
    def fromReply(cls, address: str, reply: Reply, phase: str) -> RecipientResult:
        """
        Build the result that C{reply} to C{phase} decided.
        """
        return cls(
            address=address,
            status=recipientStatusFor(reply.code),
            code=reply.code,
            enhancedStatus=reply.enhancedStatusText,
            text=reply.text,
            phase=phase,
        )


@attrs.frozen
class SessionInfo:
    """
    What the session learnt about the server and the connection.

    @ivar serverName: the name the server gave in its EHLO/HELO reply.
    @ivar greeting: the server's greeting reply.
    @ivar capabilities: the capabilities in force when the message was sent
        (after STARTTLS, the ones re-read over TLS).
    @ivar extended: C{True} when EHLO succeeded, C{False} after HELO fallback.
    @ivar tlsVersion: the negotiated TLS version (C{"TLSv1.3"}) or L{None}
        when the session was not encrypted.
    @ivar tlsCipher: the negotiated cipher name, or L{None}.
    @ivar authMechanism: the SASL mechanism used, or L{None}.
    """

    serverName: str
    greeting: Reply | None
    capabilities: Capabilities
    extended: bool
    tlsVersion: str | None
    tlsCipher: str | None
    authMechanism: str | None


@attrs.frozen
class Attempt:
    """
    One try at sending a message, as a L{mailclient.Mailer} made it (a
    retry sends only the recipients still deferred).

    @ivar number: 1 for the first attempt, 2 for the first retry, ...
    @ivar started: seconds from the send being queued to this attempt.
    @ivar duration: seconds this attempt took.
    @ivar recipients: the addresses this attempt tried.
    @ivar outcome: what this attempt learnt of each of them.
    @ivar reply: the final reply to the message in this attempt (with its
        queue id), or L{None}.
    @ivar error: the error that ended the attempt (C{"ConnectionLostError:
        ..."}), or L{None}.
    @ivar connection: the number of the mailer's connection it used, or
        L{None} when no connection could be made.
    """

    number: int
    started: float
    duration: float
    recipients: tuple[str, ...]
    outcome: Mapping[str, RecipientResult]
    reply: Reply | None
    error: str | None
    connection: int | None


@attrs.frozen
class SendResult:
    """
    The outcome of one message.

    @ivar sender: the envelope sender.
    @ivar recipients: every recipient's L{RecipientResult}, keyed by address,
        in the order given.
    @ivar reply: the server's final reply to the message (the reply to the
        end of the data, which usually carries the queue id), or L{None} when
        no data was sent.
    @ivar session: the L{SessionInfo} of the connection that carried it.
    @ivar transcript: the session transcript with AUTH payloads redacted.
    @ivar timings: seconds since the message's turn on the connection came,
        per step reached: C{"start"} (its turn came: always 0.0, missing
        when the session ended before the message was begun), C{"mail"}
        (MAIL accepted), C{"data"} (354 received), C{"done"} (final reply
        received).
    @ivar attempts: how many connections were tried (retries before any data
        was sent add to it).
    @ivar history: with a L{mailclient.Mailer}, every L{Attempt} in order;
        the recipients' results are then the latest word on each of them.
    @ivar extensions: the SMTP extensions this message used, such as
        C{"PIPELINING"}, C{"CHUNKING"}, C{"SIZE"}, C{"8BITMIME"},
        C{"SMTPUTF8"}, C{"DSN"} or C{"REQUIRETLS"}: DSN options given for a
        server without DSN are not sent, and C{"DSN"} is then missing here.
    """

    sender: str
    recipients: Mapping[str, RecipientResult]
    reply: Reply | None
    session: SessionInfo | None
    transcript: tuple[tuple[str, str], ...] = ()
    timings: Mapping[str, float] = attrs.field(factory=dict)
    attempts: int = 1
    extensions: frozenset[str] = frozenset()
    history: tuple[Attempt, ...] = ()

    @property
    def queueId(self) -> str | None:
        """
        The queue id from a final reply such as C{"250 2.0.0 Ok: queued as
        4Xyz"}, or L{None} when the server did not say.
        """
        if self.reply is None:
            return None
        match = _QUEUE_ID.search(self.reply.text)
        return match.group(1) if match else None

    def byStatus(self, status: RecipientStatus) -> tuple[str, ...]:
        """
        The addresses whose status is C{status}, in the order given.
        """
        return tuple(a for a, r in self.recipients.items() if r.status == status)

    @property
    def accepted(self) -> tuple[str, ...]:
        """
        The addresses the server accepted the message for.
        """
        return self.byStatus("accepted")

    def __iter__(self) -> Iterator[RecipientResult]:
        """
        Iterate over the recipient results in the order given.
        """
        return iter(self.recipients.values())
