"""
The public error tree of mailclient.

Every error carries structured data, not just a message:

- L{InvalidArgumentError} (also a C{ValueError}): local misuse, such as a CR or
  LF in an address.  Raised at the call for pure helpers, delivered through the
  Deferred by every API that returns one.
- L{SMTPProtocolError}: the server broke the protocol (malformed or unexpected
  reply, bytes buffered across STARTTLS, a reply with no command outstanding).
- L{SMTPReplyError}: the server answered a command with a negative reply; it has
  C{code}, C{enhancedStatus}, C{text}, C{command} and C{isTransient}.
- L{SMTPPolicyError}: our own safety policy refused to continue (TLS required
  but impossible, credentials refused on a session without TLS, authentication
  required but impossible).
- L{SendFailedError}: the message was not delivered to anyone; C{result} holds
  the per-recipient outcome.
- L{SMTPLifecycleError}: connecting failed, a timeout fired, the connection was
  lost, or the caller cancelled.

This module imports nothing from Twisted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mailclient._wire.replies import Reply
    from mailclient._wire.status import StatusClass
    from mailclient.results import SendResult


def _classify(reply: Reply | None) -> StatusClass:
    """
    Classify C{reply} (L{None}: no reply arrived).
    """
    from mailclient._wire.status import classify

    if reply is None:
        return classify(None)
    return classify(reply.code, reply.enhancedStatus, reply.text)


__all__ = [
    "AllRecipientsRefusedError",
    "AuthenticationFailedError",
    "AuthenticationRequiredError",
    "CommandArgumentError",
    "ConnectionLostError",
    "InvalidArgumentError",
    "MailClientError",
    "MailerStoppedError",
    "MessageRefusedError",
    "MessageTooLargeError",
    "PlaintextAuthRefusedError",
    "QueueFullError",
    "RequireTLSError",
    "SMTPConnectError",
    "SMTPLifecycleError",
    "SMTPPolicyError",
    "SMTPProtocolError",
    "SMTPReplyError",
    "SMTPTimeoutError",
    "SendCancelledError",
    "SendFailedError",
    "SenderRefusedError",
    "ServerRefusedSessionError",
    "SessionLimitError",
    "TLSHandshakeError",
    "TLSRequiredError",
    "UnsupportedFeatureError",
]


class MailClientError(Exception):
    """
    Base class of every error mailclient raises or errbacks with.

    @ivar transcript: the session's transcript up to the failure, with AUTH
        payloads redacted, as a tuple of C{(direction, line)} pairs where
        direction is C{"C"} (client) or C{"S"} (server); empty when the
        error was raised before any session existed.
    @ivar result: when a message was in flight or queued, its partial
        L{mailclient.SendResult}: every recipient with what is known of it
        (C{"unknown"} when the connection broke after the end of the data),
        else L{None}.
    """

    transcript: tuple[tuple[str, str], ...] = ()
    result: SendResult | None = None

    def __copy__(self) -> MailClientError:
        """
        A copy with the same message and attributes (each queued message of
        a failed session gets its own copy, with its own C{result}).
        """
        new = type(self).__new__(type(self))
        new.args = self.args
        new.__dict__.update(self.__dict__)
        return new

    def withTranscript(
        self, transcript: tuple[tuple[str, str], ...]
    ) -> MailClientError:
        """
        Attach C{transcript} to this error and return it.
        """
        self.transcript = transcript
        return self


class InvalidArgumentError(MailClientError, ValueError):
    """
    An argument given by the caller cannot be used.

    @ivar argument: the name of the offending argument.
    @ivar value: the offending value.
    """

    def __init__(self, argument: str, value: object, reason: str) -> None:
        super().__init__(f"invalid {argument} {value!r}: {reason}")
        self.argument = argument
        self.value = value
        self.reason = reason


class CommandArgumentError(InvalidArgumentError):
    """
    A command argument contains a character that could inject a command (CR,
    LF or NUL) or otherwise break the command syntax.  Nothing was sent.
    """


class UnsupportedFeatureError(InvalidArgumentError):
    """
    The caller asked for something this version of mailclient cannot send
    yet, or that the server does not support (for example a non-ASCII
    address without SMTPUTF8).
    """


class SMTPProtocolError(MailClientError):
    """
    The server violated the SMTP protocol.

    @ivar reason: what was wrong, in words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SMTPReplyError(MailClientError):
    """
    The server answered a command with a negative (4xx or 5xx) reply.

    @ivar command: the command verb that was refused (C{"MAIL"}, C{"RCPT"},
        C{"DATA"}, C{"EHLO"}, ...).
    @ivar reply: the full L{mailclient.Reply}.
    @ivar code: the three-digit reply code.
    @ivar enhancedStatus: the RFC 3463 enhanced status code as a string such
        as C{"5.1.1"}, or L{None}.
    @ivar text: the reply text (lines joined by newlines).
    @ivar isTransient: C{True} for 4xx replies, which may succeed later.
    """

    def __init__(self, command: str, reply: Reply, message: str | None = None) -> None:
        self.command = command
        self.reply = reply
        self.code = reply.code
        self.enhancedStatus = reply.enhancedStatusText
        self.text = reply.text
        self.isTransient = 400 <= reply.code < 500
        super().__init__(
            message
            if message is not None
            else f"{command} refused: {reply.code} {reply.text}"
        )

    @property
    def isPermanent(self) -> bool:
        """
        C{True} for 5xx replies: repeating the same command will fail again.
        """
        return not self.isTransient

    @property
    def classification(self) -> StatusClass:
        """
        What the server's reply means: transient or permanent, the reason
        (mailbox, policy, network, security, system, content...), and
        whether to retry (see L{mailclient.classify}).
        """
        return _classify(self.reply)


class ServerRefusedSessionError(SMTPReplyError):
    """
    The server refused the session: a negative greeting, a refused EHLO/HELO,
    or a 421 "service not available" at any point.
    """


class AuthenticationFailedError(SMTPReplyError):
    """
    The server rejected our credentials (typically 535).
    """


class SendFailedError(MailClientError):
    """
    The message was delivered to no recipient.

    @ivar result: the L{mailclient.SendResult} with the outcome of every
        recipient; nothing about the attempt is lost.
    """

    def __init__(self, message: str, result: SendResult) -> None:
        super().__init__(message)
        self.result = result


class SenderRefusedError(SendFailedError):
    """
    The server refused C{MAIL FROM}; no recipient was attempted.

    @ivar reply: the server's reply to MAIL.
    """

    def __init__(self, result: SendResult, reply: Reply) -> None:
        super().__init__(f"sender refused: {reply.code} {reply.text}", result)
        self.reply = reply
        self.code = reply.code
        self.isTransient = 400 <= reply.code < 500

    @property
    def classification(self) -> StatusClass:
        """
        What the server's reply means: transient or permanent, the reason
        (mailbox, policy, network, security, system, content...), and
        whether to retry (see L{mailclient.classify}).
        """
        return _classify(self.reply)


class AllRecipientsRefusedError(SendFailedError):
    """
    The server refused every recipient; no message data was sent.
    """

    def __init__(self, result: SendResult) -> None:
        details = ", ".join(
            f"{r.address}: {r.code}" for r in result.recipients.values()
        )
        super().__init__(f"every recipient was refused ({details})", result)
        self.isTransient = all(
            r.status == "deferred" for r in result.recipients.values()
        )


class MessageRefusedError(SendFailedError):
    """
    The server refused the message itself: a negative reply to DATA or to
    the end of the data.

    @ivar reply: the server's negative reply.
    """

    def __init__(self, result: SendResult, reply: Reply) -> None:
        super().__init__(f"message refused: {reply.code} {reply.text}", result)
        self.reply = reply
        self.code = reply.code
        self.isTransient = 400 <= reply.code < 500

    @property
    def classification(self) -> StatusClass:
        """
        What the server's reply means: transient or permanent, the reason
        (mailbox, policy, network, security, system, content...), and
        whether to retry (see L{mailclient.classify}).
        """
        return _classify(self.reply)


class MessageTooLargeError(SendFailedError):
    """
    The message is larger than the limit the server declared with the SIZE
    extension (RFC 1870).  Nothing was sent: the message was refused before
    MAIL.

    @ivar size: the message's size in octets.
    @ivar limit: the server's declared maximum in octets.
    """

    def __init__(self, size: int, limit: int, result: SendResult | None = None) -> None:
        MailClientError.__init__(
            self,
            f"the message is {size} octets but the server accepts at most "
            f"{limit} (SIZE)",
        )
        self.size = size
        self.limit = limit
        self.result = result
        self.isTransient = False


class SMTPPolicyError(MailClientError):
    """
    mailclient refused to continue the session because doing so would break
    a safety rule or a requirement the caller set.
    """


class TLSRequiredError(SMTPPolicyError):
    """
    TLS was required (C{tls="starttls"} or C{"implicit"}, or
    C{requireTransportSecurity}) but the session could not be protected.
    Nothing (no credential, no mail) was sent.
    """


class AuthenticationRequiredError(SMTPPolicyError):
    """
    Authentication was required but is impossible on this session (the
    server offers no AUTH, or no mechanism we have credentials for).
    """


class PlaintextAuthRefusedError(SMTPPolicyError):
    """
    Credentials were given but the session is not TLS-protected, and the
    caller did not opt in to sending them in clear (C{allowPlaintextAuth}).
    No credential was sent.
    """


class RequireTLSError(SMTPPolicyError):
    """
    The message asked for REQUIRETLS (RFC 8689) but this session cannot
    honour it: the session is not TLS-protected, or the server does not
    advertise REQUIRETLS.  Nothing of the message was sent.

    @ivar reason: why, in words.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"REQUIRETLS cannot be honoured: {reason}")
        self.reason = reason


class SMTPLifecycleError(MailClientError):
    """
    Base class for errors of the connection's life: connecting, timeouts,
    loss, cancellation.
    """


class SMTPConnectError(SMTPLifecycleError):
    """
    The connection to the server could not be established.
    """


class SMTPTimeoutError(SMTPLifecycleError):
    """
    The server did not answer in time.

    @ivar phase: what we were waiting for (C{"greeting"}, C{"MAIL"},
        C{"RCPT"}, C{"DATA"}, C{"data-block"}, C{"END-OF-DATA"}, ...).
    @ivar seconds: the timeout that expired.
    @ivar result: the partial L{mailclient.SendResult} when a message was in
        flight (recipients whose fate is unknown say so), else L{None}.
    """

    def __init__(
        self, phase: str, seconds: float, result: SendResult | None = None
    ) -> None:
        super().__init__(f"no reply within {seconds:g}s while waiting for {phase}")
        self.phase = phase
        self.seconds = seconds
        self.result = result


class ConnectionLostError(SMTPLifecycleError):
    """
    The connection was lost before the work was done.

    @ivar phase: what was under way when the connection was lost.
    @ivar result: the partial L{mailclient.SendResult} when a message was in
        flight, else L{None}.  A connection lost after the final dot and
        before its reply leaves the accepted recipients C{"unknown"}: the
        message may or may not have been delivered, and it is never resent
        automatically.
    """

    def __init__(
        self, phase: str, reason: str, result: SendResult | None = None
    ) -> None:
        super().__init__(f"connection lost during {phase}: {reason}")
        self.phase = phase
        self.reason = reason
        self.result = result


class TLSHandshakeError(SMTPLifecycleError):
    """
    The TLS handshake failed, for example because the server's certificate
    could not be verified or does not match the host name.  Nothing was sent
    over the failed session.

    @ivar reason: what the TLS library said.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"TLS handshake failed: {reason}")
        self.reason = reason


class SessionLimitError(SMTPLifecycleError):
    """
    The session has carried as many transactions as the server allows (the
    C{MAILMAX} of RFC 9422 LIMITS); the message was not attempted on it and
    can be sent on a new connection.

    @ivar limit: the server's MAILMAX.
    """

    def __init__(self, limit: int, result: SendResult | None = None) -> None:
        super().__init__(
            f"the server allows {limit} transactions per session (LIMITS MAILMAX)"
        )
        self.limit = limit
        self.result = result


class SendCancelledError(SMTPLifecycleError):
    """
    The caller cancelled the send.

    @ivar result: the partial L{mailclient.SendResult} when a message was in
        flight, else L{None}.
    """

    def __init__(self, phase: str, result: SendResult | None = None) -> None:
        super().__init__(f"cancelled during {phase}")
        self.phase = phase
        self.result = result


class QueueFullError(SMTPLifecycleError):
    """
    A L{mailclient.Mailer}'s queue of waiting sends is full: the send was
    refused at once, nothing was sent.  Send again later, or slow down.

    @ivar limit: the mailer's C{maxQueued}.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"the mailer already has {limit} sends waiting (maxQueued)")
        self.limit = limit


class MailerStoppedError(SMTPLifecycleError):
    """
    The L{mailclient.Mailer} is stopped (or stopped before this send could
    be made).

    @ivar result: the partial L{mailclient.SendResult} when the send had
        been attempted, else L{None}.
    """

    def __init__(self, reason: str, result: SendResult | None = None) -> None:
        super().__init__(f"the mailer is stopped: {reason}")
        self.reason = reason
        self.result = result
