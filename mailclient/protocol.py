"""
The ESMTP client protocol.

L{ESMTPClient} is a L{LineReceiver}.  Every command it writes leaves one
expectation record in a FIFO; every reply is handed to the record at its head,
whose handler parses with a pure call, decides with a pure call, and acts with
one command (or C{startTLS}, or a failure).  A reply with no record
outstanding is a protocol violation.

State table (every transition the client makes; any state may also go to
C{CLOSED} when the session fails or the connection is lost)::

    state        reply or event                next state
    -----------  ----------------------------  -------------------------------
    CONNECTING   connectionMade                GREETING
    GREETING     220                           EHLO
    GREETING     anything else                 CLOSED (ServerRefusedSession)
    EHLO         250 -> policy                 STARTTLS | AUTH | READY
    EHLO         4xx/5xx -> policy             HELO | CLOSED
    HELO         250 -> policy                 READY | CLOSED
    STARTTLS     220, nothing buffered         EHLO (capabilities forgotten)
    STARTTLS     220, bytes buffered           CLOSED (protocol violation)
    STARTTLS     4xx/5xx -> policy             AUTH | READY | CLOSED
    AUTH         334 -> mechanism              AUTH
    AUTH         235                           READY
    AUTH         anything else                 CLOSED (AuthenticationFailed)
    READY        a message is queued           RSET (when dirty) | MAIL
    READY        quit() and queue empty        QUIT
    RSET         250                           MAIL
    MAIL         250                           RCPT
    MAIL         4xx/5xx                       READY (message fails)
    RCPT         each reply; last one          RCPT | DATA | READY (none accepted)
    DATA         354                           BODY
    DATA         4xx/5xx                       READY (message fails, RSET due)
    BODY         last octet written            FINAL
    FINAL        2xx/4xx/5xx                   READY
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
import socket
from collections import deque
from collections.abc import Callable, Iterable

import attrs
from OpenSSL import SSL
from service_identity import VerificationError
from twisted.internet.defer import Deferred, fail
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
from mailclient._source import CHUNK_SIZE, MessageSource, toMessageSource
from mailclient._wire import commands
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.dataenc import DataEncoder
from mailclient._wire.policy import SessionFacts, Step, TLSMode, nextStep
from mailclient._wire.replies import Reply, ReplyParser
from mailclient._wire.sasl import SASLMechanism, chooseMechanism
from mailclient.results import (
    RecipientResult,
    RecipientStatus,
    SendResult,
    SessionInfo,
)

__all__ = ["TRANSITIONS", "ESMTPClient", "Phase", "Timeouts"]

_log = Logger(namespace="mailclient.protocol")


class Phase(enum.Enum):
    """
    The states of an L{ESMTPClient} session.
    """

    CONNECTING = "connecting"
    GREETING = "greeting"
    EHLO = "EHLO"
    HELO = "HELO"
    STARTTLS = "STARTTLS"
    AUTH = "AUTH"
    READY = "ready"
    RSET = "RSET"
    MAIL = "MAIL"
    RCPT = "RCPT"
    DATA = "DATA"
    BODY = "data-block"
    FINAL = "END-OF-DATA"
    QUIT = "QUIT"
    CLOSED = "closed"


_P = Phase

TRANSITIONS: dict[Phase, frozenset[Phase]] = {
    _P.CONNECTING: frozenset({_P.GREETING}),
    _P.GREETING: frozenset({_P.EHLO}),
    _P.EHLO: frozenset({_P.HELO, _P.STARTTLS, _P.AUTH, _P.READY}),
    _P.HELO: frozenset({_P.READY}),
    _P.STARTTLS: frozenset({_P.EHLO, _P.AUTH, _P.READY}),
    _P.AUTH: frozenset({_P.READY}),
    _P.READY: frozenset({_P.RSET, _P.MAIL, _P.QUIT}),
    _P.RSET: frozenset({_P.MAIL}),
    _P.MAIL: frozenset({_P.RCPT, _P.READY}),
    _P.RCPT: frozenset({_P.DATA, _P.READY}),
    _P.DATA: frozenset({_P.BODY, _P.READY}),
    _P.BODY: frozenset({_P.FINAL}),
    _P.FINAL: frozenset({_P.READY}),
    _P.QUIT: frozenset(),
    _P.CLOSED: frozenset(),
}
"""
Every allowed transition, as data.  C{CLOSED} is reachable from every state
and is not listed.
"""

# What each command accepts as success.  Anything else that is not a 4xx/5xx
# refusal is a protocol violation.
_SUCCESS: dict[str, frozenset[int]] = {
    "greeting": frozenset({220}),
    "EHLO": frozenset({250}),
    "HELO": frozenset({250}),
    "STARTTLS": frozenset({220}),
    "AUTH": frozenset({235, 334}),
    "MAIL": frozenset({250}),
    "RCPT": frozenset({250, 251}),
    "DATA": frozenset({354}),
    "END-OF-DATA": frozenset({250}),
    "RSET": frozenset({250}),
    "NOOP": frozenset({250}),
    "QUIT": frozenset({221}),
}


@attrs.frozen
class Timeouts:
    """
    Seconds to wait for each reply; the defaults are RFC 5321 section
    4.5.3.2's minimums.

    @ivar greeting: the 220 greeting (5 minutes).
    @ivar command: EHLO, HELO, STARTTLS, AUTH, RSET, NOOP and QUIT (5 min).
    @ivar mail: the reply to MAIL (5 minutes).
    @ivar rcpt: the reply to each RCPT (5 minutes).
    @ivar dataInitiation: the 354 reply to DATA (2 minutes).
    @ivar dataBlock: each block of message data to be taken by the
        network (3 minutes).
    @ivar finalReply: the reply to the end of the data (10 minutes).
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
        return {
            "greeting": self.greeting,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.dataInitiation,
            "data-block": self.dataBlock,
            "END-OF-DATA": self.finalReply,
        }.get(phase, self.command)


@attrs.define
class _Expectation:
    """
    One command waiting for its reply.
    """

    verb: str
    handler: Callable[[Reply], None]


@attrs.define(eq=False)
class _Transaction:
    """
    One message in flight or queued.
    """

    sender: str
    recipients: tuple[str, ...]
    source: MessageSource
    deferred: Deferred[SendResult]
    results: dict[str, RecipientResult] = attrs.Factory(dict)
    pendingRcpt: deque[str] = attrs.Factory(deque)
    reply: Reply | None = None
    begun: bool = False
    finalSent: bool = False
    done: bool = False
    started: float = 0.0
    timings: dict[str, float] = attrs.Factory(dict)

    def acceptedAtRcpt(self) -> list[str]:
        return [a for a, r in self.results.items() if r.status == "accepted"]


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


@implementer(IHandshakeListener, IPullProducer)
class ESMTPClient(LineReceiver):
    """
    An ESMTP client session: greeting, EHLO (HELO fallback), STARTTLS,
    AUTH, then any number of messages in turn, then QUIT.

    Queue messages with L{send}; each returns a Deferred that fires with a
    L{SendResult} or fails with an error from L{mailclient.errors}.  Call
    L{quit} to end the session when the queue is empty.

    @ivar heloFallback: whether to try HELO when EHLO is refused.
    @ivar requireAuthentication: fail unless AUTH succeeds.
    @ivar requireTransportSecurity: fail unless the session is TLS.
    @ivar allowPlaintextAuth: allow credentials on a session without TLS.
    @ivar capabilities: what the server advertised in its latest EHLO reply.
    @ivar phase: the current L{Phase}.
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536

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
        @raise InvalidArgumentError: for a bad C{heloName}, C{tls} value, or
            C{tls="starttls"} without C{tlsOptions}.
        @param quitWhenIdle: send QUIT as soon as the message queue is empty.
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
        self.heloFallback = heloFallback
        self.timeouts = timeouts if timeouts is not None else Timeouts()
        self.quitWhenIdle = quitWhenIdle

        self.phase = Phase.CONNECTING
        self.capabilities = Capabilities.empty()
        self.greeting: Reply | None = None
        self.authMechanism: str | None = None
        self._authenticators: list[SASLMechanism] = []
        self._mechanism: SASLMechanism | None = None
        self._parser = ReplyParser()
        self._expected: deque[_Expectation] = deque()
        self._queue: deque[_Transaction] = deque()
        self._current: _Transaction | None = None
        self._timer: IDelayedCall | None = None
        self._transcript: list[tuple[str, str]] = []
        self._negotiationEnd = 0
        self._extended = True
        self._ehloRefused = False
        self._starttlsRefused = False
        self._authenticated = False
        self._tlsHandshakeDone = False
        self._needRset = False
        self._quitRequested: Deferred[None] | None = None
        self._failure: errors.MailClientError | None = None
        self._lastRefusal: Reply | None = None
        self._lost = False
        self.dataStarted = False
        self._encoder: DataEncoder | None = None
        self._lookahead = b""
        self._bodyOctets = 0

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
        toAddresses: str | bytes | Iterable[str | bytes],
        message: object,
    ) -> Deferred[SendResult]:
        """
        Queue one message on this session.

        @param fromAddress: the envelope sender (C{""} for the null sender).
        @param toAddresses: one address or several.
        @param message: an C{EmailMessage}, C{bytes}, C{str} or a binary file.
        @return: a Deferred that fires with a L{SendResult} when at least one
            recipient accepted the message, or fails with an error from
            L{mailclient.errors} (a L{errors.SendFailedError} carries the
            result of every recipient).  Bad arguments fail it at once.
        """
        try:
            transaction = self._newTransaction(fromAddress, toAddresses, message)
        except errors.MailClientError as e:
            return fail(e)
        if self._failure is not None:
            error = copy.copy(self._failure)
            error.result = self._result(transaction)
            return fail(error)
        if self.phase in (Phase.QUIT, Phase.CLOSED) or self._quitRequested:
            return fail(errors.ConnectionLostError("send", "the session is closing"))
        self._queue.append(transaction)
        if self.phase is Phase.READY:
            self._nextTransaction()
        return transaction.deferred

    def quit(self) -> Deferred[None]:
        """
        End the session with QUIT once every queued message is done.

        @return: a Deferred that fires when the server answered QUIT or the
            connection closed.
        """
        if self._quitRequested is None:
            self._quitRequested = Deferred()
            if self.phase is Phase.READY:
                self._nextTransaction()
            elif self.phase is Phase.CLOSED:
                self._quitRequested.callback(None)
        return self._quitRequested

    def abort(self, error: errors.MailClientError) -> None:
        """
        Fail every message with C{error} and drop the connection at once.
        """
        self._fail(error, polite=False)

    @property
    def transcript(self) -> tuple[tuple[str, str], ...]:
        """
        The session transcript so far, AUTH payloads redacted.
        """
        return tuple(self._transcript)

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

    def sessionInfo(self) -> SessionInfo:
        """
        What the session has learnt so far.
        """
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

    def lineReceived(self, line: bytes) -> None:
        """
        Parse a reply line; hand a complete reply to the outstanding command.
        """
        if self.phase is Phase.CLOSED or self._failure is not None:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        self._record("S", line.decode("utf-8", "replace"))
        if not self._expected:
            self._protocolError(f"reply with no command outstanding: {line[:80]!r}")
            return
        try:
            reply = self._parser.feed(line)
        except errors.SMTPProtocolError as e:
            self._protocolError(e.reason)
            return
        if reply is None:
            return
        expectation = self._expected.popleft()
        self._cancelTimer()
        if self._expected:
            self._startTimer(self._expected[0].verb)
        if reply.code == 421 and expectation.verb != "QUIT":
            self._recordClosing(expectation.verb, reply)
            self._fail(errors.ServerRefusedSessionError(expectation.verb, reply))
            return
        allowed = _SUCCESS.get(expectation.verb, frozenset())
        if reply.code not in allowed and not _isRefusal(reply.code):
            self._protocolError(f"unexpected reply {reply.code} to {expectation.verb}")
            return
        expectation.handler(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A reply line longer than L{MAX_LENGTH} is a protocol violation.
        """
        self._protocolError(f"reply line longer than {self.MAX_LENGTH} octets")

    # -- session handlers --------------------------------------------------------

    def esmtpState_greeting(self, reply: Reply) -> None:
        """
        220: say EHLO.  Anything else: the server refused the session.
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
        self.transport.startTLS(self.tlsOptions)  # type: ignore[union-attr]
        self.capabilities = Capabilities.empty()
        self._sendEHLO()

    def authenticate(self) -> None:
        """
        Start AUTH with the strongest mechanism both sides support.
        """
        mechanism = self._chooseMechanism()
        assert mechanism is not None  # the policy said one is available
        self._mechanism = mechanism
        self._enter(Phase.AUTH)
        self._sendCommand(
            commands.auth(mechanism.name, mechanism.initialResponse()),
            "AUTH",
            self.esmtpState_auth,
        )

    def esmtpState_auth(self, reply: Reply) -> None:
        """
        334: answer the challenge.  235: authenticated.  Else: failed.
        """
        assert self._mechanism is not None
        if reply.code == 334:
            try:
                challenge = base64.b64decode(reply.text.strip(), validate=True)
                response = self._mechanism.respond(challenge)
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
            self._fail(
                errors.AuthenticationFailedError(
                    "AUTH",
                    reply,
                    f"authentication with {self._mechanism.name} failed: "
                    f"{reply.code} {reply.text}",
                )
            )
            return
        self._authenticated = True
        self.authMechanism = self._mechanism.name
        self._becomeReady()

    # -- transaction handlers ------------------------------------------------------

    def smtpState_rset(self, reply: Reply) -> None:
        """
        The transaction state is clean again.
        """
        if reply.code != 250:
            self._fail(errors.ServerRefusedSessionError("RSET", reply))
            return
        self._needRset = False
        self._startMail()

    def smtpState_mail(self, reply: Reply) -> None:
        """
        250: send the recipients.  A refusal fails the message.
        """
        tx = self._current
        assert tx is not None
        if reply.code != 250:
            for address in tx.recipients:
                tx.results[address] = RecipientResult.fromReply(address, reply, "MAIL")
            self._finish(errors.SenderRefusedError(self._result(tx), reply))
            return
        self._mark(tx, "mail")
        self._enter(Phase.RCPT)
        self._sendRcpt()

    def smtpState_rcpt(self, reply: Reply) -> None:
        """
        Record this recipient's reply; after the last one, DATA when any was
        accepted, else the message fails.
        """
        tx = self._current
        assert tx is not None
        address = tx.pendingRcpt.popleft()
        tx.results[address] = RecipientResult.fromReply(address, reply, "RCPT")
        if tx.pendingRcpt:
            self._sendRcpt()
            return
        if not tx.acceptedAtRcpt():
            self._needRset = True
            self._finish(errors.AllRecipientsRefusedError(self._result(tx)))
            return
        self._enter(Phase.DATA)
        self._sendCommand(commands.data(), "DATA", self.smtpState_data)

    def smtpState_data(self, reply: Reply) -> None:
        """
        354: send the message.  A refusal fails it for every recipient.
        """
        tx = self._current
        assert tx is not None
        if reply.code != 354:
            self._needRset = True
            self._decideAccepted(tx, reply, "DATA")
            self._finish(errors.MessageRefusedError(self._result(tx), reply))
            return
        self._mark(tx, "data")
        self._enter(Phase.BODY)
        self._encoder = DataEncoder()
        self._bodyOctets = 0
        self._lookahead = b""
        self.dataStarted = True
        self.transport.registerProducer(self, False)  # type: ignore[union-attr]
        self.resumeProducing()

    def smtpState_dataFinal(self, reply: Reply) -> None:
        """
        The server's final reply to the message.
        """
        tx = self._current
        assert tx is not None
        tx.reply = reply
        self._decideAccepted(tx, reply, "END-OF-DATA")
        self._mark(tx, "done")
        if reply.code != 250:
            self._finish(errors.MessageRefusedError(self._result(tx), reply))
        else:
            self._finish(None)

    def smtpState_quit(self, reply: Reply) -> None:
        """
        The server said goodbye (or anything else): close.
        """
        self.transport.loseConnection()  # type: ignore[union-attr]

    # -- the body producer ----------------------------------------------------------

    def resumeProducing(self) -> None:
        """
        Write the next block of the message (the transport asked for more).
        """
        tx = self._current
        if self.phase is not Phase.BODY or tx is None or self._encoder is None:
            return
        try:
            chunk = self._lookahead or tx.source.read(CHUNK_SIZE)
            following = tx.source.read(CHUNK_SIZE) if chunk else b""
        except Exception as e:
            self._fail(
                errors.InvalidArgumentError(
                    "message", type(e).__name__, f"reading the message failed: {e}"
                ),
                polite=False,
            )
            return
        # Only a file's 8-bitness is unknown up front; bytes were checked
        # before MAIL.
        if (
            tx.source.eightBit is None
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
        self._lookahead = following
        out = self._encoder.encode(chunk)
        if not following:
            out += self._encoder.finish()
            self._encoder = None
            self.transport.unregisterProducer()  # type: ignore[union-attr]
            tx.finalSent = True
            self._enter(Phase.FINAL)
            self._record("C", f"<{self._bodyOctets + len(out)} octets of data> .")
            self._expect("END-OF-DATA", self.smtpState_dataFinal)
            self.transport.write(out)  # type: ignore[union-attr]
            return
        self._bodyOctets += len(out)
        self.transport.write(out)  # type: ignore[union-attr]
        self._startTimer("data-block")

    def stopProducing(self) -> None:
        """
        The transport is going away; connectionLost does the rest.
        """

    # -- internals --------------------------------------------------------------------

    def _newTransaction(
        self,
        fromAddress: str | bytes,
        toAddresses: str | bytes | Iterable[str | bytes],
        message: object,
    ) -> _Transaction:
        sender = commands.validateAddress(fromAddress, "fromAddress", allowEmpty=True)
        if isinstance(toAddresses, str | bytes):
            toAddresses = [toAddresses]
        elif not isinstance(toAddresses, Iterable):
            raise errors.InvalidArgumentError(
                "toAddresses", toAddresses, "expected an address or a list of them"
            )
        recipients = tuple(
            commands.validateAddress(a, "toAddress") for a in toAddresses
        )
        if not recipients:
            raise errors.InvalidArgumentError(
                "toAddresses", recipients, "at least one recipient is needed"
            )
        seen: set[str] = set()
        for r in recipients:
            if r in seen:
                raise errors.InvalidArgumentError(
                    "toAddresses", r, "listed more than once"
                )
            seen.add(r)
        source = toMessageSource(message)
        d: Deferred[SendResult] = Deferred(lambda _: self._cancel(transaction))
        transaction = _Transaction(sender, recipients, source, d)
        return transaction

    def _cancel(self, tx: _Transaction) -> None:
        if tx.done:
            return
        if tx is not self._current:
            self._queue.remove(tx)  # not done, not current: still queued
            tx.done = True
            tx.deferred.errback(errors.SendCancelledError("queued"))
            return
        self._fail(errors.SendCancelledError(self.phase.value), polite=False)

    def _enter(self, phase: Phase) -> None:
        if phase not in TRANSITIONS[self.phase]:
            raise AssertionError(f"no transition {self.phase} -> {phase}")
        self.phase = phase

    def _record(self, direction: str, text: str) -> None:
        self._transcript.append((direction, text))
        _log.debug("{direction} {line}", direction=direction, line=text)

    def _sendCommand(
        self,
        line: bytes,
        verb: str,
        handler: Callable[[Reply], None],
        transcript: str | None = None,
    ) -> None:
        self._record(
            "C", transcript if transcript is not None else commands.redactCommand(line)
        )
        self._expect(verb, handler)
        self.transport.write(line)  # type: ignore[union-attr]

    def _expect(self, verb: str, handler: Callable[[Reply], None]) -> None:
        if not self._expected:
            self._startTimer(verb)
        self._expected.append(_Expectation(verb, handler))

    def _startTimer(self, phase: str) -> None:
        self._cancelTimer()
        seconds = self.timeouts.forPhase(phase)
        self._timer = self.clock.callLater(seconds, self._timedOut, phase, seconds)

    def _cancelTimer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timedOut(self, phase: str, seconds: float) -> None:
        self._timer = None
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
            [m.name for m in self._authenticators],
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
        self._fail(errors.ServerRefusedSessionError("EHLO", self._lastRefusal))

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
        self._negotiationEnd = len(self._transcript)
        self._nextTransaction()

    def _unsendable(self, tx: _Transaction) -> errors.MailClientError | None:
        """
        Why C{tx} cannot be sent on this session, if it cannot.
        """
        if tx.source.eightBit and not self.capabilities.eightBitMIME:
            return errors.UnsupportedFeatureError(
                "message",
                "8-bit data",
                "the message has 8-bit octets and the server does not "
                "advertise 8BITMIME",
            )
        return None

    def _nextTransaction(self) -> None:
        while self._queue:
            tx = self._queue.popleft()
            problem = self._unsendable(tx)
            if problem is not None:
                tx.done = True
                tx.deferred.errback(problem.withTranscript(self.transcript))
                continue
            self._current = tx
            # Keep the negotiation and this transaction only: a long-lived
            # session's transcript stays bounded.
            del self._transcript[self._negotiationEnd :]
            tx.begun = True
            tx.started = self.clock.seconds()
            if self._needRset:
                self._enter(Phase.RSET)
                self._sendCommand(commands.rset(), "RSET", self.smtpState_rset)
            else:
                self._startMail()
            return
        if self._quitRequested is not None or self.quitWhenIdle:
            self._enter(Phase.QUIT)
            self._sendCommand(commands.quit(), "QUIT", self.smtpState_quit)

    def _startMail(self) -> None:
        tx = self._current
        assert tx is not None
        params = (
            ["BODY=8BITMIME"]
            if (tx.source.eightBit is not False and self.capabilities.eightBitMIME)
            else []
        )
        self._enter(Phase.MAIL)
        tx.pendingRcpt = deque(tx.recipients)
        self._sendCommand(
            commands.mailFrom(tx.sender, params), "MAIL", self.smtpState_mail
        )

    def _sendRcpt(self) -> None:
        tx = self._current
        assert tx is not None
        self._sendCommand(
            commands.rcptTo(tx.pendingRcpt[0]), "RCPT", self.smtpState_rcpt
        )

    def _decideAccepted(self, tx: _Transaction, reply: Reply, phase: str) -> None:
        for address in tx.acceptedAtRcpt():
            tx.results[address] = RecipientResult.fromReply(address, reply, phase)

    def _mark(self, tx: _Transaction, step: str) -> None:
        tx.timings[step] = self.clock.seconds() - tx.started

    def _result(self, tx: _Transaction) -> SendResult:
        notAttempted = RecipientResult(
            "", "not-attempted", None, None, "not attempted", "SESSION"
        )
        recipients = {
            a: tx.results.get(a) or attrs.evolve(notAttempted, address=a)
            for a in tx.recipients
        }
        # A message that never began shares the negotiation's transcript (all
        # of it when the session failed before it was ready).
        transcript = (
            self._transcript
            if tx.begun or not self._negotiationEnd
            else self._transcript[: self._negotiationEnd]
        )
        return SendResult(
            sender=tx.sender,
            recipients=recipients,
            reply=tx.reply,
            session=self.sessionInfo(),
            transcript=tuple(transcript),
            timings=dict(tx.timings),
        )

    def _finish(self, error: errors.MailClientError | None) -> None:
        tx = self._current
        assert tx is not None
        self._current = None
        tx.done = True
        self._enter(Phase.READY)
        if error is None:
            tx.deferred.callback(self._result(tx))
        else:
            tx.deferred.errback(error.withTranscript(self._result(tx).transcript))
        if self.phase is Phase.READY:
            self._nextTransaction()

    def _recordClosing(self, verb: str, reply: Reply) -> None:
        """
        A 421 answered C{verb}: it decides the recipients it concerns (they
        are deferred, not of unknown fate: the server said no).
        """
        tx = self._current
        if tx is None:
            return
        if verb == "MAIL":
            for address in tx.recipients:
                tx.results[address] = RecipientResult.fromReply(address, reply, verb)
        elif verb == "RCPT":
            address = tx.pendingRcpt[0]
            tx.results[address] = RecipientResult.fromReply(address, reply, verb)
        else:
            if verb == "END-OF-DATA":
                tx.reply = reply
            self._decideAccepted(tx, reply, verb)

    def _interrupted(self, tx: _Transaction, why: str) -> None:
        """
        Record what is known of each recipient accepted at RCPT when the
        session ends before the final reply: C{"unknown"} once the end of the
        data was sent, else C{"deferred"} (nothing was delivered).
        """
        for address in tx.acceptedAtRcpt():
            if tx.finalSent:
                status: RecipientStatus = "unknown"
                text = f"{why} after the end of the data, before its reply"
            else:
                status = "deferred"
                text = f"{why} before the message was complete"
            tx.results[address] = RecipientResult(
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
        wasPhase = self.phase
        self.phase = Phase.CLOSED
        tx = self._current
        self._current = None
        pending = [t for t in ([tx] if tx else []) + list(self._queue) if not t.done]
        self._queue.clear()
        if tx is not None:
            self._interrupted(tx, type(error).__name__)
        error.withTranscript(self.transcript)
        # Mark every message done before firing any Deferred: a callback may
        # cancel or queue another one.
        for t in pending:
            t.done = True
        for index, t in enumerate(pending):
            e = error if index == 0 else copy.copy(error)
            e.result = self._result(t)
            e.withTranscript(e.result.transcript)
            if not t.deferred.called:
                t.deferred.errback(e)
        if self.transport is None or self._lost or wasPhase is Phase.CONNECTING:
            return
        if polite and wasPhase is not Phase.BODY:
            self._record("C", "QUIT")
            self.transport.write(commands.quit())
            self.transport.loseConnection()
        else:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def _quitDone(self) -> None:
        d = self._quitRequested
        if d is not None and not d.called:
            d.callback(None)


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
