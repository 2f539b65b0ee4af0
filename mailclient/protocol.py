"""
The ESMTP client protocol.

L{ESMTPClient} is a L{LineReceiver}.  Every command it writes leaves one
expectation record in a FIFO; every reply is handed to the record at its head,
whose handler parses with a pure call, decides with a pure call, and acts with
commands (or C{startTLS}, or a failure).  A reply with no record outstanding
is a protocol violation.

With PIPELINING (RFC 2920) several records are outstanding at once: a
message's RSET (only when needed), MAIL, every RCPT (in a bounded window) and
DATA leave in one write, and the next message's envelope follows the end of
the previous message's data in the same write.  With CHUNKING (RFC 3030) the
message goes as BDAT chunks, pipelined with the envelope; a small message is
one C{BDAT n LAST}.  L{ESMTPClient.phase} is what the client waits for: the
command at the head of the FIFO, or the body being written.

State table (every transition the client makes; any state may also go to
C{CLOSED} when the session fails or the connection is lost)::

    state        reply or event                next state
    -----------  ----------------------------  -------------------------------
    CONNECTING   connectionMade                GREETING
    GREETING     220                           EHLO (LHLO for LMTP)
    GREETING     anything else                 CLOSED (ServerRefusedSession)
    EHLO         250 -> policy                 STARTTLS | AUTH | READY
    EHLO         4xx/5xx -> policy             HELO | CLOSED
    HELO         250 -> policy                 READY | CLOSED
    STARTTLS     220, nothing buffered         EHLO (capabilities forgotten)
    STARTTLS     220, bytes buffered           CLOSED (protocol violation)
    STARTTLS     4xx/5xx -> policy             AUTH | READY | CLOSED
    AUTH         334 -> mechanism              AUTH
    AUTH         235                           READY
    AUTH         535 with a token provider     AUTH (once, with a new token)
    AUTH         504/534 (535 to SCRAM) + TLS  AUTH (the next mechanism we have)
    AUTH         anything else                 CLOSED (AuthenticationFailed)
    READY        a message is queued           RSET (when dirty) | MAIL
    READY        noop() / verify()             NOOP | VRFY
    READY        quit() and queue empty        QUIT
    NOOP, VRFY   any reply                     READY
    RSET         250                           MAIL
    MAIL         reply (pipelined: RCPT next)  RCPT | READY (refused)
    RCPT         each reply                    RCPT | DATA | BDAT | FINAL |
                                               BODY | READY (none accepted)
    DATA         354                           BODY | FINAL (empty body when
                                               no recipient was accepted)
    DATA         4xx/5xx                       READY (message fails, RSET due)
    BODY         a BDAT chunk written          BDAT | FINAL
    BODY         the end of the data written   FINAL
    BDAT         250, more to write            BDAT | BODY | FINAL
    BDAT         4xx/5xx                       BDAT | READY (RSET due)
    FINAL        each reply (LMTP: one per     FINAL | READY | RSET | MAIL |
                 accepted recipient)           QUIT (the next flight was sent
                                               behind the data)
    QUIT         221 or connection lost        CLOSED

A 421 reply to any command closes the session.  A reply code that is neither
what the command allows nor a 4xx/5xx refusal is a protocol violation (a 250
to DATA is never read as "delivered", a 251 to MAIL never as success).
"""

from __future__ import annotations

import base64
import binascii
import copy
import enum
import functools
import inspect
import socket
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any, cast

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import (
    Deferred,
    ensureDeferred,
    fail,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IDelayedCall,
    IHandshakeListener,
    IOpenSSLClientConnectionCreator,
    IPullProducer,
    IReactorTime,
    ISSLTransport,
    ITCPTransport,
)
from twisted.logger import Logger
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

from mailclient import errors
from mailclient._source import CHUNK_SIZE, MessageSource, OpenedMessage, toMessageSource
from mailclient._wire import commands
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.dataenc import ChunkEncoder, DataEncoder
from mailclient._wire.envelope import (
    DSN,
    EnvelopePlan,
    PlannedRecipient,
    Recipient,
    planEnvelope,
    recipientBatches,
    sizeParameter,
)
from mailclient._wire.policy import SessionFacts, Step, TLSMode, nextStep
from mailclient._wire.replies import Reply, ReplyParser
from mailclient._wire.sasl import SASLMechanism, chooseMechanism
from mailclient.results import (
    RecipientResult,
    RecipientStatus,
    SendResult,
    SessionInfo,
)

__all__ = [
    "TRANSITIONS",
    "ESMTPClient",
    "LMTPClient",
    "Phase",
    "Timeouts",
    "validateEnvelope",
]

_log = Logger(namespace="mailclient.protocol")


class Phase(enum.Enum):
    """
    The states of an L{ESMTPClient} session: what it waits for.
    """

    CONNECTING = "connecting"
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    READY = "ready"
    NOOP = "NOOP"
    VRFY = "VRFY"
    RSET = "RSET"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BODY = "data-block"
    BDAT = "BDAT"
    FINAL = "END-OF-DATA"
    QUIT = "QUIT"
    CLOSED = "closed"


_P = Phase
_AFTER_FINAL = frozenset({_P.READY, _P.RSET, _P.MAIL, _P.QUIT, _P.NOOP, _P.VRFY})

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    _P.CONNECTING: frozenset({_P.GREETING}),
    _P.GREETING: frozenset({_P.EHLO}),
    _P.EHLO: frozenset({_P.HELO, _P.STARTTLS, _P.AUTH, _P.READY}),
    _P.HELO: frozenset({_P.READY}),
    _P.STARTTLS: frozenset({_P.EHLO, _P.AUTH, _P.READY}),
    _P.AUTH: frozenset({_P.READY}),
    _P.READY: frozenset({_P.RSET, _P.MAIL, _P.NOOP, _P.VRFY, _P.QUIT}),
    _P.NOOP: frozenset({_P.READY}),
    _P.VRFY: frozenset({_P.READY}),
    _P.RSET: frozenset({_P.MAIL}),
    _P.MAIL: frozenset({_P.RCPT, _P.READY}),
    _P.RCPT: frozenset({_P.DATA, _P.BDAT, _P.BODY, _P.FINAL, _P.READY}),
    _P.DATA: frozenset({_P.BODY, _P.FINAL, _P.READY}),
    _P.BODY: frozenset({_P.BDAT, _P.FINAL, _P.READY}),
    _P.BDAT: frozenset({_P.BODY, _P.FINAL, _P.READY}),
    _P.FINAL: _AFTER_FINAL,
    _P.QUIT: frozenset(),
    _P.CLOSED: frozenset(),
}
"""
Every allowed transition, as data.  C{CLOSED} is reachable from every state
and is not listed; staying in a state (the next RCPT, BDAT chunk or LMTP
reply) is not a transition.
"""

# What each command accepts as success.  Anything else that is not a 4xx/5xx
# refusal is a protocol violation.
_SUCCESS: dict[str, frozenset[int]] = {
    "greeting": frozenset({220}),
    "EHLO": frozenset({250}),
    "LHLO": frozenset({250}),
    "HELO": frozenset({250}),
    "STARTTLS": frozenset({220}),
    "AUTH": frozenset({235, 334}),
    "MAIL": frozenset({250}),
    "RCPT": frozenset({250, 251}),
    "DATA": frozenset({354}),
    "BDAT": frozenset({250}),
    "END-OF-DATA": frozenset({250}),
    "RSET": frozenset({250}),
    "NOOP": frozenset({250}),
    "VRFY": frozenset({250, 251, 252}),
    "QUIT": frozenset({221}),
}

_VERB_PHASE: dict[str, Phase] = {
    "greeting": _P.GREETING,
    "EHLO": _P.EHLO,
    "LHLO": _P.EHLO,
    "HELO": _P.HELO,
    "STARTTLS": _P.STARTTLS,
    "AUTH": _P.AUTH,
    "RSET": _P.RSET,
    "MAIL": _P.MAIL,
    "RCPT": _P.RCPT,
    "DATA": _P.DATA,
    "BDAT": _P.BDAT,
    "END-OF-DATA": _P.FINAL,
    "NOOP": _P.NOOP,
    "VRFY": _P.VRFY,
    "QUIT": _P.QUIT,
}

TRANSCRIPT_RECENT = 1000
"""
How many of its latest lines a session keeps beyond the negotiation.
"""

PIPELINE_WINDOW = 100
"""
At most this many RCPT commands are outstanding at once; more are sent as
replies arrive.
"""


@attrs.frozen
class Timeouts:
    """
    Seconds to wait for each reply; the defaults are RFC 5321 section
    4.5.3.2's minimums.

    @ivar greeting: the 220 greeting (5 minutes).
    @ivar command: EHLO, HELO, STARTTLS, AUTH, RSET, NOOP, VRFY and QUIT (5
        minutes).
    @ivar mail: the reply to MAIL (5 minutes).
    @ivar rcpt: the reply to each RCPT (5 minutes).
    @ivar dataInitiation: the 354 reply to DATA (2 minutes).
    @ivar dataBlock: each block of message data to be taken by the network,
        and the reply to each BDAT chunk but the last (3 minutes).
    @ivar finalReply: the reply to the end of the data or to the last BDAT
        chunk (10 minutes).
    """

    greeting: float = 300.0
    command: float = 300.0
    mail: float = 300.0
    rcpt: float = 300.0
    dataInitiation: float = 120.0
    dataBlock: float = 180.0
    finalReply: float = 600.0

    def capped(self, limit: float | None) -> Timeouts:
        """
        A copy where no timeout exceeds C{limit} seconds (unchanged when
        C{limit} is L{None}).
        """
        if limit is None:
            return self
        if limit <= 0:
            raise errors.InvalidArgumentError("timeout", limit, "must be positive")
        return Timeouts(*(min(v, limit) for v in attrs.astuple(self)))

    def forPhase(self, phase: str) -> float:
        """
        The timeout for waiting on C{phase}.
        """
        return self._byPhase.get(phase, self.command)

    @functools.cached_property
    def _byPhase(self) -> dict[str, float]:
        return {
            "greeting": self.greeting,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.dataInitiation,
            "data-block": self.dataBlock,
            "BDAT": self.dataBlock,
            "END-OF-DATA": self.finalReply,
        }

    @functools.cached_property
    def shortest(self) -> float:
        """
        The shortest of the timeouts.
        """
        return min(
            self.greeting,
            self.command,
            self.mail,
            self.rcpt,
            self.dataInitiation,
            self.dataBlock,
            self.finalReply,
        )


@attrs.define(eq=False)
class _Expectation:
    """
    One command waiting for its reply.

    @ivar run: the transaction on the wire it belongs to, if any.
    @ivar recipient: for RCPT and LMTP final replies, the recipient concerned.
    @ivar quiet: a success reply goes in the session's recent lines only,
        not in the message's transcript (the reply to a BDAT chunk after
        the first: one per 64 KiB of the message).
    """

    verb: str
    handler: Callable[[Reply], None]
    run: _Run | None = None
    recipient: str | None = None
    quiet: bool = False


@attrs.define(eq=False)
class _Command:
    """
    A queued NOOP or VRFY.
    """

    verb: str
    line: bytes
    deferred: Deferred[Reply]
    done: bool = False


@attrs.define(eq=False)
class _Transaction:
    """
    One message, queued or in flight: one or more SMTP transactions (runs),
    one per batch of recipients when the server limits them.
    """

    sender: str
    recipients: tuple[Recipient, ...]
    source: MessageSource
    deferred: Deferred[SendResult]
    dsn: DSN | None = None
    requireTLS: bool = False
    results: dict[str, RecipientResult] = attrs.Factory(dict)
    plans: deque[EnvelopePlan] = attrs.Factory(deque)
    reply: Reply | None = None
    mailRefusal: Reply | None = None
    messageRefusal: Reply | None = None
    sessionLimit: int | None = None
    extensions: set[str] = attrs.Factory(set)
    retried: set[str] = attrs.Factory(set)
    begun: bool = False
    done: bool = False
    active: int = 0
    started: float = 0.0
    timings: dict[str, float] = attrs.Factory(dict)
    transcript: list[tuple[str, str]] = attrs.Factory(list)


@attrs.define(eq=False)
class _Run:
    """
    One SMTP transaction on the wire: MAIL, its RCPTs, and the data.

    @ivar accepted: recipients accepted at RCPT whose outcome the data's
        reply has not decided yet.
    @ivar tooMany: recipients refused with 452 "too many recipients", to be
        tried again in a transaction of their own.
    """

    tx: _Transaction
    plan: EnvelopePlan
    message: OpenedMessage
    unsent: deque[PlannedRecipient]
    mailParams: tuple[str, ...] = ()
    outstanding: int = 0
    rcptOutstanding: int = 0
    mailAccepted: bool | None = None
    accepted: list[str] = attrs.Factory(list)
    tooMany: list[str] = attrs.Factory(list)
    dataSent: bool = False
    producing: bool = False
    waitingChunk: bool = False
    finalSent: bool = False
    finalWritten: bool = False
    bodyRefused: bool = False
    finalPending: deque[str] | None = None
    encoder: DataEncoder | ChunkEncoder | None = None
    lookahead: bytes = b""
    octets: int = 0
    chunks: int = 0
    cancelled: bool = False


def validateEnvelope(
    fromAddress: str | bytes,
    toAddresses: str | bytes | Recipient | Iterable[str | bytes | Recipient],
    dsn: DSN | None = None,
) -> tuple[str, tuple[Recipient, ...]]:
    """
    Check a send's envelope arguments.

    @return: the sender and the recipients (each a L{Recipient}).
    @raise InvalidArgumentError: for an invalid address (CR, LF or NUL
        included), a recipient listed twice, no recipient, or C{dsn} that is
        not a L{DSN}.
    """
    sender = commands.validateAddress(
        fromAddress, "fromAddress", allowEmpty=True, utf8=True
    )
    if isinstance(toAddresses, str | bytes | Recipient):
        toAddresses = [toAddresses]
    elif not isinstance(toAddresses, Iterable):
        raise errors.InvalidArgumentError(
            "toAddresses", toAddresses, "expected an address or a list of them"
        )
    recipients: list[Recipient] = []
    seen: set[str] = set()
    for given in toAddresses:
        if isinstance(given, Recipient):
            address = commands.validateAddress(given.address, "toAddress", utf8=True)
            recipient = given
        else:
            address = commands.validateAddress(given, "toAddress", utf8=True)
            recipient = Recipient(address)
        if address in seen:
            raise errors.InvalidArgumentError(
                "toAddresses", address, "listed more than once"
            )
        seen.add(address)
        recipients.append(recipient)
    if not recipients:
        raise errors.InvalidArgumentError(
            "toAddresses", (), "at least one recipient is needed"
        )
    if dsn is not None and not isinstance(dsn, DSN):
        raise errors.InvalidArgumentError("dsn", dsn, "expected a mailclient.DSN")
    return sender, tuple(recipients)


def _unsolicitedClosing(line: bytes) -> Reply | None:
    """
    The reply in C{line} when it is a one-line 421 (the server closing the
    session on its own), else L{None}.
    """
    if not line.startswith(b"421 ") and line != b"421":
        return None
    return ReplyParser().feed(line)


def _isRefusal(code: int) -> bool:
    return 400 <= code < 600


def _setNoDelay(transport: object) -> None:
    """
    Turn Nagle's algorithm off on the TCP transport under C{transport}
    (through a TLS layer, if any), so each flight leaves at once.
    """
    for _ in range(3):
        if ITCPTransport.providedBy(transport):
            transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
            return
        transport = getattr(transport, "transport", None)
        if transport is None:
            return


def _tooManyRecipients(reply: Reply) -> bool:
    """
    Whether C{reply} to RCPT means "too many recipients in this
    transaction" (RFC 5321 section 4.5.3.1.10): try them in another one.
    """
    status = reply.enhancedStatusText
    return reply.code == 452 and (
        status == "4.5.3" or (status is None and "too many" in reply.text.lower())
    )


@implementer(IHandshakeListener, IPullProducer)
class ESMTPClient(LineReceiver):
    """
    An ESMTP client session: greeting, EHLO (HELO fallback), STARTTLS,
    AUTH, then any number of messages, then QUIT.

    Queue messages with L{send}; each returns a Deferred that fires with a
    L{SendResult} or fails with an error from L{mailclient.errors}.  Call
    L{quit} to end the session when the queue is empty.  When the server
    offers PIPELINING the envelope of each message (and the next message's,
    behind the end of the data) leaves in one write; when it offers
    CHUNKING the message goes as BDAT chunks.

    @ivar heloFallback: whether to try HELO when EHLO is refused.
    @ivar requireAuthentication: fail unless AUTH succeeds.
    @ivar requireTransportSecurity: fail unless the session is TLS.
    @ivar allowPlaintextAuth: allow credentials on a session without TLS.
    @ivar pipelining: use PIPELINING when the server offers it.
    @ivar chunking: prefer BDAT to DATA when the server offers CHUNKING.
    @ivar capabilities: what the server advertised in its latest EHLO reply.
    @ivar phase: the current L{Phase}.
    @ivar lmtp: whether this is an LMTP session (RFC 2033).
    @ivar logMessages: log a debug event for every message (a
        L{mailclient.Mailer} logs its own).
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536
    lmtp = False
    logMessages = True

    def __init__(
        self,
        *,
        clock: IReactorTime,
        heloName: str | None = None,
        tls: TLSMode | str = TLSMode.OPPORTUNISTIC,
        tlsOptions: IOpenSSLClientConnectionCreator | None = None,
        requireTransportSecurity: bool = False,
        requireAuthentication: bool = False,
        allowPlaintextAuth: bool = False,
        heloFallback: bool = True,
        timeouts: Timeouts | None = None,
        quitWhenIdle: bool = False,
        pipelining: bool = True,
        chunking: bool = True,
    ) -> None:
        """
        @param clock: the source of time for every timeout.
        @param heloName: our name for EHLO/HELO; by default the host's name
            when it is fully qualified, else the address literal of our end
            of the connection.
        @param tls: a L{TLSMode} or its value (C{"implicit"}, C{"starttls"},
            C{"opportunistic"}, C{"none"}).
        @param tlsOptions: the client TLS options for STARTTLS (what
            L{twisted.internet.ssl.optionsForClientTLS} returns); required
            with C{tls="starttls"}.  Without them an opportunistic session
            does not try STARTTLS.
        @param quitWhenIdle: send QUIT as soon as the message queue is empty.
        @param pipelining: C{False} to wait for every reply even when the
            server offers PIPELINING (for servers that break it).
        @param chunking: C{False} to send with DATA even when the server
            offers CHUNKING (BDAT is still used for a message that needs
            BINARYMIME).
        @raise InvalidArgumentError: for a bad C{heloName}, C{tls} value, or
            C{tls="starttls"} without C{tlsOptions}.
        """
        self.clock = clock
        self.heloName = (
            commands.validateHeloName(heloName) if heloName is not None else None
        )
        try:
            self.tlsMode = TLSMode(tls)
        except ValueError:
            raise errors.InvalidArgumentError(
                "tls", tls, "expected implicit, starttls, opportunistic or none"
            ) from None
        if self.tlsMode is TLSMode.STARTTLS and tlsOptions is None:
            raise errors.InvalidArgumentError(
                "tlsOptions", None, 'tls="starttls" needs the client TLS options'
            )
        self.tlsOptions = tlsOptions
        self.requireTransportSecurity = requireTransportSecurity
        self.requireAuthentication = requireAuthentication
        self.allowPlaintextAuth = allowPlaintextAuth
        self.heloFallback = heloFallback and not self.lmtp
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.quitWhenIdle = quitWhenIdle
        self.pipelining = pipelining
        self.chunking = chunking

        self.phase = Phase.CONNECTING
        self.capabilities = Capabilities.empty()
        self.greeting: Reply | None = None
        self.authMechanism: str | None = None
        self.transactions = 0
        self._authenticators: list[SASLMechanism] = []
        self._mechanism: SASLMechanism | None = None
        self._tokenRetried = False
        self._failedMechanisms: list[SASLMechanism] = []
        self._parser = ReplyParser()
        self._expected: deque[_Expectation] = deque()
        self._queue: deque[_Transaction | _Command] = deque()
        self._runs: deque[_Run] = deque()
        self._producingRun: _Run | None = None
        self._command: _Command | None = None
        self._timer: IDelayedCall | None = None
        self._waitingFor: str | None = None
        self._since = 0.0
        self._session: SessionInfo | None = None
        self._transcript: list[tuple[str, str]] = []
        self._negotiation: tuple[tuple[str, str], ...] = ()
        self._recent: deque[tuple[str, str]] = deque(maxlen=TRANSCRIPT_RECENT)
        self._extended = True
        self._ehloRefused = False
        self._starttlsRefused = False
        self._authenticated = False
        self._tlsHandshakeDone = False
        self._needRset = False
        self._quitSent = False
        self._quitRequested: Deferred[None] | None = None
        self._ready: list[Deferred[SessionInfo]] = []
        self._closed: list[Deferred[None]] = []
        self._failure: errors.MailClientError | None = None
        self._lastRefusal: Reply | None = None
        self._lost = False
        self._outbox: list[bytes] = []
        self._finalsInOutbox: list[_Run] = []
        self._holding = 0
        # How many expectations at the tail of _expected belong to commands
        # still in the held outbox: the server cannot have answered them.
        self._unsent = 0
        self._starting = False
        self._registered = False
        self._isReady = False
        self.dataStarted = False

    # -- public API ----------------------------------------------------------

    def registerAuthenticator(self, authenticator: SASLMechanism) -> None:
        """
        Offer a SASL mechanism for AUTH.  When the server advertises several
        registered mechanisms the strongest (by
        L{mailclient._wire.sasl.MECHANISM_STRENGTH}) is used.

        @param authenticator: a mechanism object holding its credentials,
            such as L{mailclient.PlainMechanism}.
        """
        self._authenticators.append(authenticator)

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
        Queue one message on this session.

        @param fromAddress: the envelope sender (C{""} for the null sender).
        @param toAddresses: one address or several; each a string or a
            L{Recipient} (which carries per-recipient DSN options).
        @param message: an C{EmailMessage}, C{bytes}, C{str} or a binary file.
        @param dsn: delivery status notification options (RFC 3461), sent
            when the server offers DSN.
        @param requireTLS: ask for REQUIRETLS (RFC 8689): the message fails
            unless this session is TLS-protected and the server offers it.
        @return: a Deferred that fires with a L{SendResult} when at least one
            recipient accepted the message, or fails with an error from
            L{mailclient.errors} (a L{errors.SendFailedError} carries the
            result of every recipient).  Bad arguments fail it at once.
        """
        try:
            sender, recipients = validateEnvelope(fromAddress, toAddresses, dsn)
            source = toMessageSource(message)
        except errors.MailClientError as e:
            return fail(e)
        return self._sendChecked(sender, recipients, source, dsn, requireTLS)

    def _sendChecked(
        self,
        sender: str,
        recipients: tuple[Recipient, ...],
        source: MessageSource,
        dsn: DSN | None,
        requireTLS: bool,
    ) -> Deferred[SendResult]:
        """
        L{send} with arguments already checked (by L{validateEnvelope}).
        """
        d: Deferred[SendResult] = Deferred(lambda _: self._cancel(transaction))
        transaction = _Transaction(sender, recipients, source, d, dsn, bool(requireTLS))
        if self._failure is not None:
            error = copy.copy(self._failure)
            error.result = self._result(transaction)
            return fail(error)
        if self.phase in (Phase.QUIT, Phase.CLOSED) or self._quitRequested:
            return fail(errors.ConnectionLostError("send", "the session is closing"))
        limit = self._mailMax()
        if limit is not None and self.transactions >= limit:
            return fail(errors.SessionLimitError(limit, self._result(transaction)))
        self._queue.append(transaction)
        self._kick()
        return transaction.deferred

    def noop(self) -> Deferred[Reply]:
        """
        Send NOOP in turn (after the messages queued before it).

        @return: a Deferred that fires with the server's 250 reply, or fails
            with an L{errors.SMTPReplyError} for a refusal or a session error.
        """
        return self._queueCommand("NOOP", commands.noop())

    def verify(self, address: str | bytes) -> Deferred[Reply]:
        """
        Ask the server whether it knows C{address} (VRFY, RFC 5321 section
        3.5), in turn.

        @param address: a mailbox or user name.
        @return: a Deferred that fires with the 250, 251 or 252 reply (252:
            the server will not say, but will try to deliver), or fails with
            an L{errors.SMTPReplyError} (550 unknown, 553 ambiguous, 502 not
            implemented...).
        """
        try:
            line = commands.vrfy(address)
        except errors.MailClientError as e:
            return fail(e)
        return self._queueCommand("VRFY", line)

    def whenReady(self) -> Deferred[SessionInfo]:
        """
        A Deferred that fires with the L{SessionInfo} once the session is
        ready for mail (greeting, EHLO, STARTTLS and AUTH done), or fails
        with the error that ended the session first.
        """
        if self._failure is not None:
            return fail(copy.copy(self._failure))
        if self._isReady:
            return succeed(self.sessionInfo())
        d: Deferred[SessionInfo] = Deferred()
        self._ready.append(d)
        return d

    def whenClosed(self) -> Deferred[None]:
        """
        A Deferred that fires (with L{None}, never failing) once the session
        is over: the connection closed, or the session failed before it was
        ever connected.
        """
        if self.phase is Phase.CLOSED and (self._lost or self.transport is None):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed.append(d)
        return d

    def quit(self) -> Deferred[None]:
        """
        End the session with QUIT once every queued message is done.

        @return: a Deferred that fires when the server answered QUIT or the
            connection closed.
        """
        if self._quitRequested is None:
            self._quitRequested = Deferred()
            if self.phase is Phase.CLOSED:
                self._quitRequested.callback(None)
            else:
                self._kick()
        return self._quitRequested

    def abort(self, error: errors.MailClientError) -> None:
        """
        Fail every message with C{error} and drop the connection at once.
        """
        self._fail(error, polite=False)

    @property
    def transcript(self) -> tuple[tuple[str, str], ...]:
        """
        The session transcript, AUTH payloads redacted: the negotiation
        (greeting to AUTH), then the last L{TRANSCRIPT_RECENT} lines.  Each
        message's own lines are in its L{SendResult.transcript}.
        """
        return tuple(self._transcript) + tuple(self._recent)

    @property
    def tlsActive(self) -> bool:
        """
        Whether the live transport is TLS-protected right now.
        """
        return (
            self.transport is not None
            and ISSLTransport.providedBy(self.transport)
            and self._tlsHandshakeDone
        )

    @property
    def pipeliningActive(self) -> bool:
        """
        Whether commands are pipelined on this session now: the server
        offers PIPELINING and L{pipelining} is on.
        """
        if self._session is not None:
            return self._pipeliningActive
        return self.pipelining and self.capabilities.pipelining

    @property
    def canSend(self) -> bool:
        """
        Whether this session can take another message now: it is not closing
        or failed, and the server's LIMITS MAILMAX is not reached.
        """
        limit = self._mailMax()
        return (
            self._failure is None
            and self.phase not in (Phase.QUIT, Phase.CLOSED)
            and self._quitRequested is None
            and (limit is None or self.transactions + len(self._queue) < limit)
        )

    def sessionInfo(self) -> SessionInfo:
        """
        What the session has learnt so far.
        """
        if self._session is not None:
            return self._session
        version = cipher = None
        if self.tlsActive:
            handle = self.transport.getHandle()  # type: ignore[union-attr]
            getVersion = getattr(handle, "get_protocol_version_name", None)
            getCipher = getattr(handle, "get_cipher_name", None)
            version = getVersion() if getVersion else None
            cipher = getCipher() if getCipher else None
        return SessionInfo(
            serverName=self.capabilities.serverName,
            greeting=self.greeting,
            capabilities=self.capabilities,
            extended=self._extended,
            tlsVersion=version,
            tlsCipher=cipher,
            authMechanism=self.authMechanism,
        )

    # -- connection events -----------------------------------------------------

    def connectionMade(self) -> None:
        """
        Wait for the greeting.
        """
        _setNoDelay(self.transport)
        if self.heloName is None:
            self.heloName = self._defaultHeloName()
        self._enter(Phase.GREETING)
        self._expect("greeting", self.esmtpState_greeting)

    def handshakeCompleted(self) -> None:
        """
        The TLS handshake finished: the transport is protected from now on.
        """
        self._tlsHandshakeDone = True

    def connectionLost(self, reason: Failure = Failure(Exception())) -> None:  # noqa: B008
        """
        Fire every outstanding Deferred.
        """
        self._cancelTimer()
        self._lost = True
        if self._failure is None and self.phase is not Phase.QUIT:
            error: errors.MailClientError
            if reason.check(SSL.Error, VerificationError):
                error = errors.TLSHandshakeError(_describeTLSError(reason))
            else:
                error = errors.ConnectionLostError(
                    self.phase.value, reason.getErrorMessage()
                )
            self._fail(error)
        self.phase = Phase.CLOSED
        self._quitDone()
        self._fireClosed()

    def _fireClosed(self) -> None:
        closed, self._closed = self._closed, []
        for d in closed:
            d.callback(None)

    def dataReceived(self, data: bytes) -> None:
        """
        Handle every reply in C{data}; whatever they make us send leaves in
        one write.
        """
        with self._hold():
            super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:
        """
        Parse a reply line; hand a complete reply to the outstanding command.
        """
        if self.phase is Phase.CLOSED or self._failure is not None:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        head = self._expected[0] if self._expected else None
        if (
            head is not None
            and len(self._expected) <= self._unsent
            and not (head.verb == "QUIT" and line[:3] == b"221")
        ):
            # The command this line would answer has not left yet: the
            # line was sent before the server saw it (an injection, or a
            # server that does not wait for commands).  A server that says
            # goodbye before it reads our QUIT only ends what we are ending.
            head = None
        tx = head.run.tx if head is not None and head.run is not None else None
        if head is not None and head.quiet and line[:1] == b"2":
            tx = None
        self._record("S", line.decode("utf-8", "replace"), tx)
        if head is None:
            closing = _unsolicitedClosing(line)
            if closing is not None:
                # RFC 5321 section 3.8: a server may say 421 and close at any
                # time (an idle timeout, a shutdown).
                phase = self._expected[0].verb if self._expected else "idle"
                self._fail(errors.ServerRefusedSessionError(phase, closing))
                return
            what = (
                f"reply before {self._expected[0].verb} was sent"
                if self._expected
                else "reply with no command outstanding"
            )
            self._protocolError(f"{what}: {line[:80]!r}")
            return
        try:
            reply = self._parser.feed(line)
        except errors.SMTPProtocolError as e:
            self._protocolError(e.reason)
            return
        if reply is None:
            return
        expectation = self._expected.popleft()
        run = expectation.run
        if run is not None:
            run.outstanding -= 1
        if self._expected:
            self._startTimer(self._expected[0].verb)
        else:
            self._cancelTimer()
        if reply.code == 421 and expectation.verb != "QUIT":
            self._recordClosing(expectation, reply)
            self._fail(errors.ServerRefusedSessionError(expectation.verb, reply))
            return
        allowed = _SUCCESS.get(expectation.verb, frozenset())
        if reply.code not in allowed and not _isRefusal(reply.code):
            self._protocolError(f"unexpected reply {reply.code} to {expectation.verb}")
            return
        expectation.handler(reply)
        if self._failure is not None:
            return
        if run is not None:
            self._maybeEndRun(run)
        self._syncPhase()

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A reply line longer than L{MAX_LENGTH} is a protocol violation.
        """
        self._protocolError(f"reply line longer than {self.MAX_LENGTH} octets")

    # -- session handlers --------------------------------------------------------

    def esmtpState_greeting(self, reply: Reply) -> None:
        """
        220: say EHLO (LHLO).  Anything else: the server refused the session.
        """
        self.greeting = reply
        if reply.code != 220:
            self._fail(errors.ServerRefusedSessionError("greeting", reply))
            return
        self._sendEHLO()

    def esmtpState_ehlo(self, reply: Reply) -> None:
        """
        Read the capabilities, then ask the policy what to do.
        """
        if reply.code == 250:
            self.capabilities = Capabilities.fromEHLOReply(reply)
            self._extended = True
            self._ehloRefused = False
        else:
            self._ehloRefused = True
            self._lastRefusal = reply
        self._decide()

    def smtpState_helo(self, reply: Reply) -> None:
        """
        HELO accepted: a session with no extensions.
        """
        if reply.code != 250:
            self._fail(errors.ServerRefusedSessionError("HELO", reply))
            return
        self.capabilities = Capabilities.empty(reply.lines[0].split(" ")[0])
        self._decide()

    def tryTLS(self) -> None:
        """
        Ask the server to start TLS.
        """
        self._enter(Phase.STARTTLS)
        self._sendCommand(commands.starttls(), "STARTTLS", self.esmtpState_starttls)

    def esmtpState_starttls(self, reply: Reply) -> None:
        """
        220: start TLS, unless the server sent bytes after the 220 in clear
        (an injection attempt): then fail.  A refusal goes to the policy.
        """
        if reply.code != 220:
            self._starttlsRefused = True
            self._lastRefusal = reply
            self._decide()
            return
        leftover = self.clearLineBuffer()
        if leftover:
            self._protocolError(
                f"{len(leftover)} octets received in clear after the 220 "
                "reply to STARTTLS (possible command injection)"
            )
            return
        self._flush()
        self.transport.startTLS(self.tlsOptions)  # type: ignore[union-attr]
        self.capabilities = Capabilities.empty()
        self._sendEHLO()

    def authenticate(self) -> None:
        """
        Start AUTH with the strongest mechanism both sides support (getting
        a token from its provider first, for token mechanisms).
        """
        mechanism = self._chooseMechanism()
        assert mechanism is not None  # the policy said one is available
        self._mechanism = mechanism
        self._enter(Phase.AUTH)
        if getattr(mechanism, "needsToken", False):
            self._fetchToken(mechanism, refresh=False)
            return
        self._sendAuth(mechanism)

    def esmtpState_auth(self, reply: Reply) -> None:
        """
        334: answer the challenge.  235: authenticated (after the mechanism
        checked the server's proof, for SCRAM).  A refusal with a token
        provider: get a fresh token and try once more.  Else: failed.
        """
        mechanism = self._mechanism
        assert mechanism is not None
        if reply.code == 334:
            try:
                challenge = base64.b64decode(reply.text.strip(), validate=True)
                response = mechanism.respond(challenge)
            except binascii.Error:
                self._protocolError("AUTH challenge is not valid base64")
                return
            except errors.MailClientError as e:
                self._fail(e)
                return
            self._sendCommand(
                commands.authResponse(response),
                "AUTH",
                self.esmtpState_auth,
                transcript="<redacted>",
            )
            return
        if reply.code != 235:
            if (
                getattr(mechanism, "tokenProvider", None) is not None
                and not self._tokenRetried
                and reply.code == 535
            ):
                self._tokenRetried = True
                self._fetchToken(mechanism, refresh=True)
                return
            if self.tlsActive and (
                reply.code in (504, 534)
                or (reply.code == 535 and mechanism.name.upper().startswith("SCRAM-"))
            ):
                # Under TLS, a mechanism the server cannot do (504, 534), or
                # SCRAM refused because the server keeps no SCRAM secrets for
                # this account, is not the end: try the next one we have.
                # A refused PLAIN is not retried as LOGIN (the same password,
                # one more failed login towards a lockout).  Never in clear,
                # where a forged refusal could push us from CRAM-MD5 down to
                # PLAIN.
                self._failedMechanisms.append(mechanism)
                if self._chooseMechanism() is not None:
                    self.authenticate()
                    return
            self._fail(
                errors.AuthenticationFailedError(
                    "AUTH",
                    reply,
                    f"authentication with {mechanism.name} failed: "
                    f"{reply.code} {reply.text}",
                )
            )
            return
        successReceived = getattr(mechanism, "successReceived", None)
        if successReceived is not None:
            try:
                successReceived()
            except errors.MailClientError as e:
                self._fail(e)
                return
        self._authenticated = True
        self.authMechanism = mechanism.name
        self._becomeReady()

    def _sendAuth(self, mechanism: SASLMechanism) -> None:
        try:
            initial = mechanism.initialResponse()
        except errors.MailClientError as e:
            self._fail(e)
            return
        self._sendCommand(
            commands.auth(mechanism.name, initial), "AUTH", self.esmtpState_auth
        )

    def _fetchToken(self, mechanism: SASLMechanism, refresh: bool) -> None:
        """
        Ask the mechanism's token provider for a token (a fresh one when
        C{refresh}), then send AUTH with it.
        """
        provider = mechanism.tokenProvider  # type: ignore[attr-defined]
        self._startTimer("AUTH")

        def got(token: object) -> None:
            if self._failure is not None:
                return
            self._cancelTimer()
            with self._hold():
                if not isinstance(token, str):
                    self._fail(
                        errors.AuthenticationRequiredError(
                            f"the token provider returned {type(token).__name__}, "
                            "not a str"
                        )
                    )
                    return
                try:
                    mechanism.setToken(token)  # type: ignore[attr-defined]
                except errors.MailClientError as e:
                    self._fail(e)
                    return
                self._sendAuth(mechanism)

        def failed(reason: Failure) -> None:
            if self._failure is None:
                self._fail(
                    errors.AuthenticationRequiredError(
                        f"the token provider failed: {reason.getErrorMessage()}"
                    )
                )

        d = maybeDeferred(_awaitable, provider.getToken, refresh)
        d.addCallbacks(got, failed)

    # -- transactions --------------------------------------------------------------

    def smtpState_rset(self, run: _Run, reply: Reply) -> None:
        """
        The transaction state is clean again (without pipelining: now MAIL);
        a refusal ends the session.
        """
        if reply.code != 250:
            self._fail(errors.ServerRefusedSessionError("RSET", reply))
            return
        if not self.pipeliningActive:
            self._sendMail(run)

    def smtpState_mail(self, run: _Run, reply: Reply) -> None:
        """
        250: the recipients (already sent when pipelining).  A refusal
        decides every recipient of this transaction.
        """
        tx = run.tx
        if reply.code == 250:
            run.mailAccepted = True
            self._mark(tx, "mail")
            if run.cancelled:
                self._needRset = True
            elif not self.pipeliningActive:
                self._sendRcpts(run)
            return
        run.mailAccepted = False
        tx.mailRefusal = reply
        for planned in run.plan.recipients:
            tx.results[planned.address] = RecipientResult.fromReply(
                planned.address, reply, "MAIL"
            )
        run.unsent.clear()
        self._stopBody(run)

    def smtpState_rcpt(self, run: _Run, address: str, reply: Reply) -> None:
        """
        Record this recipient's reply.  Without pipelining, after the last
        one: the data when any recipient was accepted.
        """
        tx = run.tx
        run.rcptOutstanding -= 1
        if run.mailAccepted:
            result = RecipientResult.fromReply(address, reply, "RCPT")
            tx.results[address] = result
            if result.status == "accepted":
                run.accepted.append(address)
            elif _tooManyRecipients(reply) and address not in tx.retried:
                run.tooMany.append(address)
        if run.unsent and run.mailAccepted:
            self._sendRcpts(run)
            return
        if run.rcptOutstanding or run.unsent:
            return
        # Every RCPT has its reply.
        if run.cancelled:
            if run.mailAccepted and not run.dataSent:
                self._needRset = True
            return
        if self.pipeliningActive:
            if not run.accepted:
                if run.mailAccepted:
                    self._needRset = True
                self._stopBody(run)
            return
        if run.accepted:
            self._startData(run)
        else:
            self._needRset = True

    def smtpState_data(self, run: _Run, reply: Reply) -> None:
        """
        354: send the message (an empty one when no recipient was accepted:
        a pipelining server may still say 354).  A refusal fails the message
        for every accepted recipient.
        """
        tx = run.tx
        if reply.code != 354:
            if run.accepted:
                tx.messageRefusal = reply
                self._decideAccepted(run, reply, "DATA")
            if run.mailAccepted:
                self._needRset = True
            return
        if run.cancelled and run.accepted:
            # A pipelined DATA of a cancelled message: after 354 the only
            # way out without sending it is to drop the connection.
            self._fail(
                errors.ConnectionLostError(
                    "DATA", "dropped to cancel a message the server was ready for"
                ),
                polite=False,
            )
            return
        if not run.accepted:
            if self.lmtp:
                # An LMTP server owes one reply per accepted recipient after
                # the data: with none, it would never answer.
                self._protocolError("354 to DATA with no recipient accepted (LMTP)")
                return
            run.finalSent = True
            self._finalsInOutbox.append(run)
            self._record("C", "<no recipient accepted: empty message> .", tx)
            self._expectFinal(run)
            self._write(b".\r\n")
            self._afterData(run)
            return
        self._mark(tx, "data")
        self.dataStarted = True
        run.encoder = DataEncoder()
        self._startBody(run)

    def smtpState_bdat(self, run: _Run, reply: Reply) -> None:
        """
        The reply to a BDAT chunk other than the last.  A refusal ends the
        transaction: no more chunks, RSET before the next one.
        """
        if reply.code == 250:
            if run.waitingChunk:
                run.waitingChunk = False
                self.resumeProducing()
            return
        self._bodyRefused(run, reply, "BDAT")

    def smtpState_dataFinal(self, run: _Run, reply: Reply) -> None:
        """
        The server's final reply to the message (the end of the data or the
        last BDAT chunk); with LMTP, one such reply per accepted recipient.
        """
        tx = run.tx
        if run.bodyRefused:
            return
        if not run.accepted and run.finalPending is None:
            # The empty message sent when no recipient was accepted, or a
            # BDAT LAST refused for want of recipients.
            if run.plan.chunking and run.mailAccepted:
                self._needRset = True
            return
        self._mark(tx, "done")
        if self.lmtp:
            if run.finalPending is None:
                run.finalPending = deque(run.accepted)
                run.accepted.clear()
            address = run.finalPending.popleft()
            tx.results[address] = RecipientResult.fromReply(
                address, reply, "END-OF-DATA"
            )
            if 200 <= reply.code < 300:
                tx.reply = reply
            elif tx.reply is None:
                tx.messageRefusal = reply
            if run.finalPending:
                self._expected.appendleft(
                    _Expectation(
                        "END-OF-DATA",
                        lambda r: self.smtpState_dataFinal(run, r),
                        run,
                        run.finalPending[0],
                    )
                )
                run.outstanding += 1
            return
        tx.reply = reply
        if reply.code != 250:
            tx.messageRefusal = reply
            if run.plan.chunking:
                self._needRset = True
        self._decideAccepted(run, reply, "END-OF-DATA")

    def smtpState_quit(self, reply: Reply) -> None:
        """
        The server said goodbye (or anything else): close.
        """
        self.transport.loseConnection()  # type: ignore[union-attr]

    def _commandReply(self, command: _Command, reply: Reply) -> None:
        """
        The reply to a NOOP or VRFY: fire its Deferred, go on.
        """
        self._command = None
        command.done = True
        if reply.code in _SUCCESS[command.verb]:
            command.deferred.callback(reply)
        else:
            command.deferred.errback(
                errors.SMTPReplyError(command.verb, reply).withTranscript(
                    self.transcript
                )
            )
        if self._failure is None and self.phase is not Phase.CLOSED:
            self._enter(Phase.READY)
            self._nextOperation()

    # -- the body producer ----------------------------------------------------------

    def resumeProducing(self) -> None:
        """
        Write the next block of the message (the transport asked for more).
        """
        run = self._producingRun
        if run is None or run.waitingChunk or self._failure is not None:
            return
        with self._hold():
            self._produce(run)
            if self._failure is None:
                self._syncPhase()

    def stopProducing(self) -> None:
        """
        The transport is going away; connectionLost does the rest.
        """

    def _startBody(self, run: _Run) -> None:
        """
        Start writing the message: at once when it is small, else as the
        transport asks for more.
        """
        run.producing = True
        self._producingRun = run
        size = run.message.size
        if size is not None and size <= CHUNK_SIZE:
            self._produce(run)
            return
        self.transport.registerProducer(self, False)  # type: ignore[union-attr]
        self._registered = True
        self.resumeProducing()

    def _produce(self, run: _Run) -> None:
        """
        Write one block of the message (a BDAT chunk with its command).
        """
        encoder = run.encoder
        assert encoder is not None
        try:
            chunk = run.lookahead or run.message.read(CHUNK_SIZE)
            following = run.message.read(CHUNK_SIZE) if chunk else b""
        except errors.MailClientError as e:
            self._fail(e, polite=False)
            return
        except Exception as e:
            self._fail(
                errors.InvalidArgumentError(
                    "message", type(e).__name__, f"reading the message failed: {e}"
                ),
                polite=False,
            )
            return
        # Only a file's 8-bitness may be unknown up front.
        if (
            run.plan.body is None
            and not run.plan.smtputf8
            and not self.capabilities.eightBitMIME
            and not chunk.isascii()
        ):
            self._fail(
                errors.UnsupportedFeatureError(
                    "message",
                    "8-bit data",
                    "the message has 8-bit octets and the server does not "
                    "advertise 8BITMIME",
                ),
                polite=False,
            )
            return
        run.lookahead = following
        out = encoder.encode(chunk)
        last = not following
        if last:
            out += encoder.finish()
        if run.plan.chunking:
            self._writeChunk(run, out, last)
        elif last:
            run.finalSent = True
            self._finalsInOutbox.append(run)
            self._record("C", f"<{run.octets + len(out)} octets of data> .", run.tx)
            self._expectFinal(run)
            self._write(out)
        else:
            run.octets += len(out)
            self._write(out)
            if not self._expected:
                self._startTimer("data-block")
        if last:
            self._endBody(run)
            self._afterData(run)

    def _writeChunk(self, run: _Run, data: bytes, last: bool) -> None:
        line = commands.bdat(len(data), last)
        run.chunks += 1
        run.octets += len(data)
        text = f"{line.decode('ascii').rstrip()} <{len(data)} octets>"
        if last and run.chunks > 1:
            text = f"{text[:-1]}; {run.chunks} chunks, {run.octets} in all>"
        # The message's transcript gets the first and the last chunk, not
        # one line per 64 KiB: it must not grow with the message's size.
        # Every chunk still goes in the session's bounded recent lines.
        self._record("C", text, run.tx if run.chunks == 1 or last else None)
        if last:
            run.finalSent = True
            self._finalsInOutbox.append(run)
            self._expectFinal(run)
        else:
            self._expect("BDAT", lambda r: self.smtpState_bdat(run, r), run)
            self._expected[-1].quiet = run.chunks > 1
            if not self.pipeliningActive:
                run.waitingChunk = True
        self._write(line)
        self._write(data)

    def _endBody(self, run: _Run) -> None:
        run.producing = False
        run.encoder = None
        run.lookahead = b""
        if self._producingRun is run:
            self._producingRun = None
            if self._registered:
                self._registered = False
                self.transport.unregisterProducer()  # type: ignore[union-attr]

    def _stopBody(self, run: _Run) -> None:
        """
        Stop writing BDAT chunks (nobody will take the message); the
        transaction stays open, so RSET comes before the next one.
        """
        if run.producing:
            self._endBody(run)
            self._needRset = True

    def _bodyRefused(self, run: _Run, reply: Reply, phase: str) -> None:
        if run.bodyRefused:
            return
        run.bodyRefused = True
        self._stopBody(run)
        self._needRset = True
        if run.accepted:
            run.tx.messageRefusal = reply
            self._decideAccepted(run, reply, phase)

    def _expectFinal(self, run: _Run) -> None:
        self._expect(
            "END-OF-DATA",
            lambda r: self.smtpState_dataFinal(run, r),
            run,
            run.accepted[0] if (self.lmtp and run.accepted) else None,
        )

    def _afterData(self, run: _Run) -> None:
        """
        The end of the data is written: with PIPELINING and DATA, the next
        transaction's envelope (or QUIT) follows in the same write.
        """
        if not self.pipeliningActive or run.plan.chunking:
            return
        self._nextOperation(ahead=True)

    # -- the operation queue ----------------------------------------------------------

    def _kick(self) -> None:
        """
        Something was queued (or QUIT asked for): start it if idle.  Called
        from a callback of the operation loop itself (a message that failed
        before it was sent), it leaves the work to that loop.
        """
        if self.phase is Phase.READY and not self._starting:
            with self._hold():
                self._nextOperation()
                self._syncPhase()

    def _queueCommand(self, verb: str, line: bytes) -> Deferred[Reply]:
        if self._failure is not None:
            return fail(copy.copy(self._failure))
        if self.phase in (Phase.QUIT, Phase.CLOSED) or self._quitRequested:
            return fail(errors.ConnectionLostError(verb, "the session is closing"))
        command = _Command(verb, line, Deferred())
        self._queue.append(command)
        self._kick()
        return command.deferred

    def _nextOperation(self, ahead: bool = False) -> None:
        """
        Start the next queued operation, or QUIT when asked and idle.

        @param ahead: the previous transaction's data was just written and
            its reply is outstanding; only a transaction (or QUIT) may follow
            it in the same flight.
        """
        self._starting = True
        try:
            self._startNext(ahead)
        finally:
            self._starting = False

    def _startNext(self, ahead: bool) -> None:
        while self._failure is None:
            if ahead and self._runs[-1].tx.plans:
                if self._startRun(self._runs[-1].tx):
                    return
                continue
            if not self._queue:
                break
            op = self._queue[0]
            if isinstance(op, _Command):
                if ahead:
                    return
                self._queue.popleft()
                self._command = op
                self._sendCommand(op.line, op.verb, partial(self._commandReply, op))
                return
            self._queue.popleft()
            if not op.begun and not self._beginTransaction(op):
                continue
            if self._startRun(op):
                return
        if self._failure is None and self._wantQuit() and not self._quitSent:
            self._quitSent = True
            self._sendCommand(commands.quit(), "QUIT", self.smtpState_quit)

    def _wantQuit(self) -> bool:
        return not self._queue and (
            self._quitRequested is not None or self.quitWhenIdle
        )

    def _mailMax(self) -> int | None:
        limit = self.capabilities.limits.get("MAILMAX")
        return limit if limit else None

    def _beginTransaction(self, tx: _Transaction) -> bool:
        """
        Plan every SMTP transaction of C{tx} (one per batch of recipients the
        server's LIMITS allow) before sending anything; a message this
        session cannot carry fails here, with nothing sent.
        """
        tx.begun = True
        tx.started = self.clock.seconds()
        tx.timings["start"] = 0.0
        try:
            facts = tx.source.facts()
            plans = [
                planEnvelope(
                    tx.sender,
                    batch,
                    facts,
                    self.capabilities,
                    dsn=tx.dsn,
                    requireTLS=tx.requireTLS,
                    tlsActive=self.tlsActive,
                    preferChunking=self.chunking,
                )
                for batch in recipientBatches(tx.recipients, self.capabilities.limits)
            ]
            if len(plans) > 1 or len(tx.recipients) > 1:
                # Several transactions, or a 452 "too many recipients" to
                # retry in another one: the message may be read again.
                tx.source.keepForReopen()
        except errors.MailClientError as e:
            self._failTransaction(tx, e)
            return False
        tx.plans = deque(plans)
        return True

    def _startRun(self, tx: _Transaction) -> bool:
        """
        Write the next SMTP transaction of C{tx}: RSET when due, MAIL, and
        with pipelining its RCPTs and DATA (or the first BDAT chunk).

        @return: whether a transaction was started (else C{tx} is finished).
        """
        plan = tx.plans.popleft()
        limit = self._mailMax()
        if limit is not None and self.transactions >= limit:
            tx.sessionLimit = limit
            tx.plans.clear()
            self._maybeCompleteTransaction(tx)
            return False
        try:
            message = tx.source.open(
                utf8Headers=plan.utf8Headers, downgrade=plan.downgrade
            )
            size = sizeParameter(message.size, self.capabilities)
        except errors.MailClientError as e:
            tx.plans.clear()
            if tx.active or tx.results:
                self._maybeCompleteTransaction(tx)
            else:
                self._failTransaction(tx, e)
            return False
        params = plan.mailParams + ((size,) if size else ())
        tx.extensions.update(plan.extensions)
        if size:
            tx.extensions.add("SIZE")
        if self.pipeliningActive:
            tx.extensions.add("PIPELINING")
        run = _Run(tx, plan, message, deque(plan.recipients))
        self._runs.append(run)
        tx.active += 1
        self.transactions += 1
        run.mailParams = params
        if self._needRset:
            self._needRset = False
            self._sendCommand(
                commands.rset(), "RSET", lambda r: self.smtpState_rset(run, r), run=run
            )
            if not self.pipeliningActive:
                return True
        self._sendMail(run)
        return True

    def _sendMail(self, run: _Run) -> None:
        self._sendCommand(
            commands.mailFrom(run.plan.sender, run.mailParams, utf8=run.plan.smtputf8),
            "MAIL",
            lambda r: self.smtpState_mail(run, r),
            run=run,
        )
        if self.pipeliningActive:
            self._sendRcpts(run)

    def _sendRcpts(self, run: _Run) -> None:
        """
        Send RCPTs: with pipelining up to the window (then DATA, or the
        first BDAT chunk, in the same flight); without, one.
        """
        window = PIPELINE_WINDOW if self.pipeliningActive else 1
        while run.unsent and run.rcptOutstanding < window:
            planned = run.unsent.popleft()
            run.rcptOutstanding += 1
            self._sendCommand(
                commands.rcptTo(
                    planned.wireAddress, planned.params, utf8=run.plan.smtputf8
                ),
                "RCPT",
                partial(self.smtpState_rcpt, run, planned.address),
                run=run,
                recipient=planned.address,
            )
        if not run.unsent and self.pipeliningActive and not run.dataSent:
            self._startData(run)

    def _startData(self, run: _Run) -> None:
        run.dataSent = True
        if run.plan.chunking:
            self.dataStarted = True
            run.encoder = ChunkEncoder(binary=run.plan.body == "BINARYMIME")
            self._startBody(run)
            return
        self._sendCommand(
            commands.data(), "DATA", lambda r: self.smtpState_data(run, r), run=run
        )

    def _maybeEndRun(self, run: _Run) -> None:
        """
        When every reply of C{run} is in and its body is written, it is
        over: settle its message, and go on.
        """
        if run.outstanding or run.producing or run not in self._runs:
            return
        self._runs.remove(run)
        tx = run.tx
        tx.active -= 1
        if (
            run.tooMany
            and not tx.done
            and any(r.status == "accepted" for r in tx.results.values())
        ):
            self._retryTooMany(tx, run.tooMany)
        if tx.plans and not tx.done and not tx.active and tx not in self._queue:
            self._queue.appendleft(tx)
        self._maybeCompleteTransaction(tx)
        if self._failure is not None:
            return  # a callback ended the session
        if not self._runs and not self._expected and self._command is None:
            self._enter(Phase.READY)
            self._nextOperation()

    def _retryTooMany(self, tx: _Transaction, addresses: list[str]) -> None:
        """
        The server took some recipients but said "too many" (452) to
        C{addresses}: try those once more, in a transaction of their own.
        """
        retry = tuple(r for r in tx.recipients if r.address in addresses)
        tx.retried.update(addresses)
        tx.plans.append(
            planEnvelope(
                tx.sender,
                retry,
                tx.source.facts(),
                self.capabilities,
                dsn=tx.dsn,
                requireTLS=tx.requireTLS,
                tlsActive=self.tlsActive,
                preferChunking=self.chunking,
            )
        )
        tx.source.keepForReopen()

    def _maybeCompleteTransaction(self, tx: _Transaction) -> None:
        if tx.done or tx.active or tx.plans:
            return
        tx.done = True
        result = self._result(tx)
        if self.logMessages:
            _log.debug(
                "message from {sender}: {accepted} of {count} recipients accepted",
                sender=result.sender,
                accepted=len(result.accepted),
                count=len(tx.recipients),
                transcript=tx.transcript,
            )
        if result.accepted:
            tx.deferred.callback(result)
            return
        error: errors.MailClientError
        phases = {r.phase for r in result.recipients.values()}
        if tx.sessionLimit is not None and phases == {"SESSION"}:
            error = errors.SessionLimitError(tx.sessionLimit, result)
        elif phases == {"MAIL"} and tx.mailRefusal is not None:
            error = errors.SenderRefusedError(result, tx.mailRefusal)
        elif tx.messageRefusal is not None and phases & {
            "DATA",
            "BDAT",
            "END-OF-DATA",
        }:
            error = errors.MessageRefusedError(result, tx.messageRefusal)
        else:
            error = errors.AllRecipientsRefusedError(result)
        tx.deferred.errback(error.withTranscript(result.transcript))

    def _failTransaction(self, tx: _Transaction, error: errors.MailClientError) -> None:
        """
        C{tx} cannot be sent on this session: fail it alone, nothing sent.
        """
        tx.done = True
        tx.plans.clear()
        error.result = self._result(tx)
        tx.deferred.errback(error.withTranscript(self.transcript))

    # -- internals --------------------------------------------------------------------

    def _cancel(self, tx: _Transaction) -> None:
        """
        The caller cancelled C{tx}; only C{tx} is affected.  Queued: it is
        dropped.  On the wire before any of its data was written: the
        transaction is reset (RSET) and the connection kept; a DATA already
        pipelined whose 354 then comes can only be answered by dropping the
        connection.  During its data: the connection is dropped; recipients
        whose end of data had left are then C{"unknown"}.
        """
        if tx.done:
            return
        runs = [run for run in self._runs if run.tx is tx]
        tx.plans.clear()
        if tx in self._queue:
            self._queue.remove(tx)
        during = [run for run in runs if run.producing or run.finalSent]
        phase = "queued" if not runs else self.phase.value
        for run in runs:
            run.cancelled = True
            run.unsent.clear()
            self._cancelledRecipients(run)
        tx.done = True
        error = errors.SendCancelledError(phase)
        error.result = self._result(tx)
        tx.deferred.errback(error.withTranscript(error.result.transcript))
        if during:
            # Replies come in order, so no earlier message on this
            # connection still waits for one once this one's data began:
            # dropping the connection decides only this message.
            self._fail(
                errors.ConnectionLostError(
                    self.phase.value, "dropped to cancel another message's data"
                ),
                polite=False,
            )

    def _cancelledRecipients(self, run: _Run) -> None:
        """
        What is known of C{run}'s recipients when its message is cancelled:
        those accepted at RCPT were not delivered unless the end of the data
        had left (then C{"unknown"}).
        """
        for address in run.accepted:
            if run.finalWritten:
                status: RecipientStatus = "unknown"
                text = "cancelled after the end of the data, before its reply"
            else:
                status = "not-attempted"
                text = "cancelled before the message was complete; not delivered"
            run.tx.results[address] = RecipientResult(
                address, status, None, None, text, "SESSION"
            )

    def _enter(self, phase: Phase) -> None:
        if phase is not self.phase and phase not in TRANSITIONS[self.phase]:
            raise AssertionError(f"no transition {self.phase} -> {phase}")
        self.phase = phase

    def _syncPhase(self) -> None:
        """
        After a reply in a transaction: the phase is what we wait for now.
        """
        if self.phase not in _TRANSACTION_PHASES:
            return
        if self._expected:
            target = _VERB_PHASE[self._expected[0].verb]
        elif self._producingRun is not None:
            target = Phase.BODY
        else:
            return
        if target is not self.phase:
            self._enter(target)

    def _record(
        self, direction: str, text: str, tx: _Transaction | None = None
    ) -> None:
        """
        Add a line to the transcript: the negotiation's until the session is
        ready, then the bounded recent lines and, for a message's command or
        reply, that message's own transcript.
        """
        entry = (direction, text)
        if tx is not None:
            tx.transcript.append(entry)
        if self._isReady:
            self._recent.append(entry)
        else:
            self._transcript.append(entry)

    @contextmanager
    def _hold(self) -> Iterator[None]:
        """
        Collect what is written meanwhile into one write.
        """
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1
            if not self._holding:
                self._flush()

    def _write(self, data: bytes) -> None:
        self._outbox.append(data)
        if not self._holding:
            self._flush()

    def _flush(self) -> None:
        self._unsent = 0
        if not self._outbox:
            return
        data = b"".join(self._outbox)
        self._outbox.clear()
        if self.transport is not None and not self._lost:
            self.transport.write(data)
            # The end of these messages' data has left now (until then a
            # failure would have dropped it with the rest of the outbox).
            for run in self._finalsInOutbox:
                run.finalWritten = True
        self._finalsInOutbox.clear()

    def _sendCommand(
        self,
        line: bytes,
        verb: str,
        handler: Callable[[Reply], None],
        transcript: str | None = None,
        run: _Run | None = None,
        recipient: str | None = None,
    ) -> None:
        self._record(
            "C",
            transcript if transcript is not None else commands.redactCommand(line),
            run.tx if run is not None else None,
        )
        self._expect(verb, handler, run, recipient)
        self._write(line)

    def _expect(
        self,
        verb: str,
        handler: Callable[[Reply], None],
        run: _Run | None = None,
        recipient: str | None = None,
    ) -> None:
        if not self._expected:
            self._startTimer(verb)
        self._expected.append(_Expectation(verb, handler, run, recipient))
        if self._holding:
            self._unsent += 1
        if run is not None:
            run.outstanding += 1

    def _startTimer(self, phase: str) -> None:
        """
        Wait at most the timeout of C{phase} from now.

        A busy session restarts this wait at every reply, so it costs no
        delayed call: one delayed call wakes up at most every
        L{Timeouts.shortest} seconds and compares the time since the last
        restart with the timeout of what is awaited then.
        """
        self._waitingFor = phase
        self._since = self.clock.seconds()
        if self._timer is None:
            self._timer = self.clock.callLater(
                min(self.timeouts.forPhase(phase), self.timeouts.shortest),
                self._checkTimer,
            )

    def _cancelTimer(self) -> None:
        self._waitingFor = None
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    def _checkTimer(self) -> None:
        self._timer = None
        phase = self._waitingFor
        if phase is None:
            return
        seconds = self.timeouts.forPhase(phase)
        remaining = self._since + seconds - self.clock.seconds()
        if remaining > 1e-6:
            self._timer = self.clock.callLater(
                min(remaining, self.timeouts.shortest), self._checkTimer
            )
            return
        self._waitingFor = None
        self._fail(errors.SMTPTimeoutError(phase, seconds), polite=False)

    def _defaultHeloName(self) -> str:
        name = socket.gethostname()
        if "." in name:
            try:
                return commands.validateHeloName(name)
            except errors.InvalidArgumentError:
                pass
        address = getattr(self.transport.getHost(), "host", "")  # type: ignore[union-attr]
        if ":" in address:
            return f"[IPv6:{address}]"
        return f"[{address or '127.0.0.1'}]"

    def _sendEHLO(self) -> None:
        self._enter(Phase.EHLO)
        assert self.heloName is not None
        if self.lmtp:
            self._sendCommand(
                commands.lhlo(self.heloName), "LHLO", self.esmtpState_ehlo
            )
            return
        self._sendCommand(commands.ehlo(self.heloName), "EHLO", self.esmtpState_ehlo)

    def _facts(self) -> SessionFacts:
        return SessionFacts(
            tlsMode=self.tlsMode,
            requireTransportSecurity=self.requireTransportSecurity,
            tlsActive=self.tlsActive,
            ehloRefused=self._ehloRefused,
            heloFallback=self.heloFallback,
            extended=self._extended,
            starttlsOffered=self.capabilities.starttls and self.tlsOptions is not None,
            starttlsRefused=self._starttlsRefused,
            haveCredentials=bool(self._authenticators),
            mechanismAvailable=self._chooseMechanism() is not None,
            authenticated=self._authenticated,
            requireAuthentication=self.requireAuthentication,
            allowPlaintextAuth=self.allowPlaintextAuth,
        )

    def _chooseMechanism(self) -> SASLMechanism | None:
        name = chooseMechanism(
            [m.name for m in self._authenticators if m not in self._failedMechanisms],
            self.capabilities.authMechanisms,
            tlsActive=self.tlsActive,
        )
        return next((m for m in self._authenticators if m.name == name), None)

    def _decide(self) -> None:
        _ACTIONS[nextStep(self._facts())](self)

    def _doHelo(self) -> None:
        self._ehloRefused = False
        self._extended = False
        self._enter(Phase.HELO)
        assert self.heloName is not None
        self._sendCommand(commands.helo(self.heloName), "HELO", self.smtpState_helo)

    def _failEhloRefused(self) -> None:
        assert self._lastRefusal is not None
        verb = "LHLO" if self.lmtp else "EHLO"
        self._fail(errors.ServerRefusedSessionError(verb, self._lastRefusal))

    def _failTLSRequired(self) -> None:
        if self._starttlsRefused:
            why = f"the server refused STARTTLS ({self._lastRefusal})"
        elif self.tlsOptions is None:
            why = "no tlsOptions were given for STARTTLS"
        else:
            why = "the server does not offer STARTTLS"
        self._fail(errors.TLSRequiredError(f"TLS is required but {why}"))

    def _failPlaintextAuth(self) -> None:
        self._fail(
            errors.PlaintextAuthRefusedError(
                "credentials were given but the session is not TLS-protected; "
                "refusing to send them in clear (use TLS, or pass "
                "allowPlaintextAuth=True to accept the risk)"
            )
        )

    def _failAuthRequired(self) -> None:
        if not self._authenticators:
            why = "no credentials were given"
        elif not self.capabilities.authMechanisms:
            why = "the server does not offer AUTH"
        else:
            offered = " ".join(sorted(self.capabilities.authMechanisms))
            ours = " ".join(m.name for m in self._authenticators)
            why = f"no common mechanism (server: {offered}; ours: {ours})"
        self._fail(
            errors.AuthenticationRequiredError(f"authentication required but {why}")
        )

    def _becomeReady(self) -> None:
        self._enter(Phase.READY)
        self._negotiation = tuple(self._transcript)
        self._isReady = True
        _log.debug(
            "session with {server} ready",
            server=self.capabilities.serverName,
            transcript=self._negotiation,
        )
        # Nothing the session info holds changes from here on.
        self._session = self.sessionInfo()
        self._pipeliningActive = self.pipelining and self.capabilities.pipelining
        ready, self._ready = self._ready, []
        for d in ready:
            d.callback(self.sessionInfo())
        if self.phase is Phase.READY:
            self._nextOperation()

    def _decideAccepted(self, run: _Run, reply: Reply, phase: str) -> None:
        """
        C{reply} decides every recipient of C{run} still waiting for the
        data's outcome.
        """
        results = run.tx.results
        for address in run.accepted:
            results[address] = RecipientResult.fromReply(address, reply, phase)
        run.accepted.clear()

    def _mark(self, tx: _Transaction, step: str) -> None:
        tx.timings.setdefault(step, self.clock.seconds() - tx.started)

    def _result(self, tx: _Transaction) -> SendResult:
        results = tx.results
        recipients = {}
        for r in tx.recipients:
            found = results.get(r.address)
            if found is None:
                text = (
                    f"not attempted: the server allows {tx.sessionLimit} "
                    "transactions per session (LIMITS MAILMAX)"
                    if tx.sessionLimit is not None
                    else "not attempted"
                )
                found = RecipientResult(
                    r.address, "not-attempted", None, None, text, "SESSION"
                )
            recipients[r.address] = found
        # The negotiation's lines (all of them when the session failed before
        # it was ready), then the message's own.
        transcript = (
            self._negotiation + tuple(tx.transcript)
            if self._isReady
            else tuple(self._transcript)
        )
        return SendResult(
            sender=tx.sender,
            recipients=recipients,
            reply=tx.reply,
            session=self.sessionInfo(),
            transcript=transcript,
            timings=dict(tx.timings),
            extensions=frozenset(tx.extensions),
        )

    def _recordClosing(self, expectation: _Expectation, reply: Reply) -> None:
        """
        A 421 answered C{expectation}: it decides the recipients it concerns
        (they are deferred, not of unknown fate: the server said no).
        """
        run = expectation.run
        if run is None:
            return
        verb = expectation.verb
        tx = run.tx
        if verb == "MAIL":
            for planned in run.plan.recipients:
                tx.results[planned.address] = RecipientResult.fromReply(
                    planned.address, reply, verb
                )
            run.accepted.clear()
        elif verb == "RCPT":
            assert expectation.recipient is not None
            tx.results[expectation.recipient] = RecipientResult.fromReply(
                expectation.recipient, reply, verb
            )
        elif verb == "END-OF-DATA" and self.lmtp and (run.finalPending or run.accepted):
            if run.finalPending is None:
                run.finalPending = deque(run.accepted)
                run.accepted.clear()
            # LMTP: the 421 is this recipient's reply; the ones after it
            # stay undecided (the data was sent: "unknown").
            address = run.finalPending.popleft()
            tx.results[address] = RecipientResult.fromReply(address, reply, verb)
        else:
            if verb == "END-OF-DATA":
                tx.reply = reply
            self._decideAccepted(run, reply, verb)

    def _interrupted(self, run: _Run, why: str, unanswered: Sequence[str] = ()) -> None:
        """
        Record what is known of each recipient accepted at RCPT when the
        session ends before the data's outcome: C{"unknown"} once the end of
        the data was sent, else C{"deferred"} (nothing was delivered).

        @param unanswered: the recipients whose RCPT was sent and not yet
            answered; with the whole message pipelined behind them (BDAT
            LAST), the server may have accepted and delivered to them, so
            once the end of the data was sent they are C{"unknown"} too.
        """
        waiting = list(run.accepted) + list(run.finalPending or ())
        if run.finalWritten:
            waiting += [a for a in unanswered if a not in waiting]
        for address in waiting:
            if run.finalWritten:
                status: RecipientStatus = "unknown"
                text = f"{why} after the end of the data, before its reply"
            else:
                status = "deferred"
                text = f"{why} before the message was complete"
            run.tx.results[address] = RecipientResult(
                address, status, None, None, text, "SESSION"
            )

    def _protocolError(self, reason: str) -> None:
        self._fail(errors.SMTPProtocolError(reason), polite=False)

    def _fail(self, error: errors.MailClientError, polite: bool = True) -> None:
        """
        End the session with C{error}: every queued or in-flight message
        fails with it (each with its own partial result), then QUIT when the
        session is in a state to send it, else drop the connection.
        """
        if self._failure is not None:
            return
        self._failure = error
        self._cancelTimer()
        self._outbox.clear()
        self._finalsInOutbox.clear()
        wasPhase = self.phase
        self.phase = Phase.CLOSED
        writing = self._producingRun is not None
        runs = list(self._runs)
        self._runs.clear()
        self._producingRun = None
        unanswered: dict[int, list[str]] = {}
        for expectation in self._expected:
            if expectation.verb == "RCPT" and expectation.run is not None:
                if expectation.recipient is not None:
                    key = id(expectation.run)
                    unanswered.setdefault(key, []).append(expectation.recipient)
        self._expected.clear()
        self._unsent = 0
        pending: list[_Transaction] = []
        for run in runs:
            self._interrupted(run, type(error).__name__, unanswered.get(id(run), ()))
            if run.tx not in pending:
                pending.append(run.tx)
        commandsPending = [self._command] if self._command else []
        for op in self._queue:
            if isinstance(op, _Command):
                commandsPending.append(op)
            elif op not in pending:
                pending.append(op)
        self._queue.clear()
        self._command = None
        pending = [t for t in pending if not t.done]
        error.withTranscript(self.transcript)
        _log.debug(
            "session failed: {error}", error=str(error), transcript=error.transcript
        )
        # Mark everything done before firing any Deferred: a callback may
        # cancel or queue another one.
        for t in pending:
            t.done = True
        first = True
        for t in pending:
            e = error if first else copy.copy(error)
            first = False
            e.result = self._result(t)
            e.withTranscript(e.result.transcript)
            if not t.deferred.called:
                t.deferred.errback(e)
        for c in commandsPending:
            if not c.done:
                c.done = True
                c.deferred.errback(copy.copy(error))
        ready, self._ready = self._ready, []
        for d in ready:
            d.errback(copy.copy(error))
        if self.transport is None:
            self._fireClosed()
            return
        if self._lost or wasPhase is Phase.CONNECTING:
            return
        if polite and not writing:
            self._record("C", "QUIT")
            self.transport.write(commands.quit())
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _quitDone(self) -> None:
        d = self._quitRequested
        if d is not None and not d.called:
            d.callback(None)


class LMTPClient(ESMTPClient):
    """
    An LMTP client session (RFC 2033): LHLO instead of EHLO (no HELO
    fallback), and after the data one reply per accepted recipient, each
    deciding that recipient's result.  Everything else is as
    L{ESMTPClient}.
    """

    lmtp = True


_TRANSACTION_PHASES = frozenset(
    {
        Phase.READY,
        Phase.RSET,
        Phase.MAIL,
        Phase.RCPT,
        Phase.DATA,
        Phase.BODY,
        Phase.BDAT,
        Phase.FINAL,
        Phase.NOOP,
        Phase.VRFY,
    }
)


def _awaitable(function: Callable[..., object], *args: object) -> object:
    """
    Call C{function}; turn a coroutine or other awaitable it returns into a
    Deferred.
    """
    result = function(*args)
    if inspect.isawaitable(result):
        return ensureDeferred(cast(Coroutine[Any, Any, object], result))
    return result


def _describeTLSError(reason: Failure) -> str:
    """
    A readable summary of an OpenSSL error (certificate verification
    failures name the reason).
    """
    value = reason.value
    args = getattr(value, "args", ())
    if args and isinstance(args[0], list):
        return "; ".join(
            str(entry[-1]) if isinstance(entry, tuple) else str(entry)
            for entry in args[0]
        )
    return str(value)


_ACTIONS: dict[Step, Callable[[ESMTPClient], None]] = {
    Step.HELO: ESMTPClient._doHelo,
    Step.STARTTLS: ESMTPClient.tryTLS,
    Step.AUTHENTICATE: ESMTPClient.authenticate,
    Step.PROCEED: ESMTPClient._becomeReady,
    Step.FAIL_EHLO_REFUSED: ESMTPClient._failEhloRefused,
    Step.FAIL_TLS_REQUIRED: ESMTPClient._failTLSRequired,
    Step.FAIL_PLAINTEXT_AUTH: ESMTPClient._failPlaintextAuth,
    Step.FAIL_AUTH_REQUIRED: ESMTPClient._failAuthRequired,
}
