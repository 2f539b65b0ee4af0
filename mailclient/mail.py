"""
The shape of Django's C{django.core.mail}, on top of one L{ESMTPClient}
session: L{get_connection}, L{SMTPConnection} (C{open}, C{close},
C{send_messages}, C{failSilently}, C{async with}), L{send_mail} and
L{send_mass_mail}.

The function and method names are Django's, so code that sends mail the
Django way reads the same; the keyword arguments follow this project's
casing (C{failSilently}, C{fromEmail}, C{recipientList}, C{authUser}).
Everything returns a Deferred, and what it fires with says more than
Django's count: L{SentMessages} holds the number of messages sent I{and} a
L{MessageReport} per message, with every recipient's status and reply code
(Django throws the refused recipients away).

C{failSilently} swallows exactly the errors Django's SMTP backend swallows
(see L{failsSilently}): everything the server, the network, TLS or
authentication can do, but never a mistake in the caller's input.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from email.message import Message
from typing import Any, NamedTuple, TypeVar

import attrs
from twisted.internet.defer import Deferred, DeferredLock

from mailclient import errors
from mailclient._sendmail import _openSession, _plan
from mailclient._wire.envelope import DSN
from mailclient.config import SMTPSettings, loadSettings
from mailclient.message import Envelope, composeMessage, envelopeFromMessage
from mailclient.protocol import ESMTPClient, validateEnvelope
from mailclient.results import DeliveryStatus, RecipientResult, SendResult

__all__ = [
    "MessageReport",
    "SMTPConnection",
    "SentMessages",
    "failsSilently",
    "get_connection",
    "send_mail",
    "send_mass_mail",
]

_T = TypeVar("_T")

# The keyword arguments of sendmail() that a connection also takes, with
# sendmail's defaults; the settings (host, port, credentials, TLS mode,
# timeout, HELO name) come from an SMTPSettings.
_CONNECTION_DEFAULTS: dict[str, Any] = {
    "tlsOptions": None,
    "requireAuthentication": None,
    "requireTransportSecurity": False,
    "allowPlaintextAuth": False,
    "heloFallback": True,
    "endpoint": None,
    "authenticators": None,
    "pipelining": True,
    "chunking": True,
    "lmtp": False,
}
_SEND_DEFAULTS: dict[str, Any] = {"dsn": None, "requireTLS": False}


def failsSilently(error: BaseException) -> bool:
    """
    Whether C{failSilently=True} swallows C{error}: the same errors Django's
    SMTP backend swallows.

    Django's backend swallows C{OSError} when it opens the connection and
    C{smtplib.SMTPException} when it sends a message: everything the
    network, the server, TLS and authentication can do (refused connections,
    timeouts, lost connections, negative replies, refused recipients, a
    message too large, a failed login, STARTTLS or AUTH not offered).  It
    lets through what is wrong with the caller's input (C{ValueError},
    C{TypeError}: an address with a line break, a non-ASCII address the
    server cannot take) and anything else.  Here that is: every
    L{errors.MailClientError} except L{errors.InvalidArgumentError} (and its
    subclasses L{errors.CommandArgumentError} and
    L{errors.UnsupportedFeatureError}) and L{errors.SendCancelledError} (the
    caller's own cancel); nothing that is not a L{errors.MailClientError}.

    @param error: an error a send or a connection attempt failed with.
    @return: C{True} when C{failSilently} swallows it.
    """
    return isinstance(error, errors.MailClientError) and not isinstance(
        error, errors.InvalidArgumentError | errors.SendCancelledError
    )


def _awaitable(d: Deferred[_T]) -> Awaitable[_T]:
    """
    C{d}, in the form the running coroutine can await: the Deferred itself
    in a coroutine that Twisted drives (any reactor), a Future bound to the
    loop in a coroutine that asyncio runs as a task (the asyncio reactor).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return d
    if asyncio.current_task(loop) is None:
        return d
    return d.asFuture(loop)


def _failedResults(
    recipients: Sequence[str], error: BaseException
) -> dict[str, RecipientResult]:
    """
    A result for each recipient of a message whose send failed before any
    reply decided their fate.
    """
    text = f"{type(error).__name__}: {error}"
    return {
        address: RecipientResult(
            address=address,
            status="not-attempted",
            code=None,
            enhancedStatus=None,
            text=text,
            phase="SESSION",
        )
        for address in recipients
    }


@attrs.frozen
class MessageReport:
    """
    What became of one message given to L{SMTPConnection.send_messages}.

    @ivar message: the message as given.
    @ivar sender: the envelope sender, or L{None} when it could not be
        worked out.
    @ivar recipients: the envelope recipients.
    @ivar result: the L{SendResult} when at least one recipient accepted
        the message, else L{None}.
    @ivar error: the error the send failed with (swallowed because of
        C{failSilently}), else L{None}.
    """

    message: Message | Envelope
    sender: str | None
    recipients: tuple[str, ...]
    result: SendResult | None = None
    error: Exception | None = None

    @property
    def sent(self) -> bool:
        """
        Whether the message counts as sent, as Django counts it: the server
        accepted it for at least one recipient.
        """
        return self.result is not None

    @property
    def recipientResults(self) -> Mapping[str, RecipientResult]:
        """
        Every recipient's L{RecipientResult}, with its code and text: from
        the result, or from the error's result (a refused sender, every
        recipient refused...), or C{"not-attempted"} when the send failed
        before any reply.
        """
        if self.result is not None:
            return self.result.recipients
        if isinstance(self.error, errors.MailClientError):
            outcome = self.error.result
            if outcome is not None and outcome.recipients:
                return outcome.recipients
        return _failedResults(self.recipients, self.error or Exception("not sent"))

    @property
    def statuses(self) -> dict[str, DeliveryStatus]:
        """
        Every recipient's L{DeliveryStatus}: C{"sent"}, C{"deferred"},
        C{"rejected"} or C{"failed"}.
        """
        return {a: r.deliveryStatus for a, r in self.recipientResults.items()}


class SentMessages(NamedTuple):
    """
    What L{SMTPConnection.send_messages}, L{send_mail} and L{send_mass_mail}
    fire with: unpack it as C{sent, reports = await ...}.
    """

    sent: int
    """
    How many messages were sent (Django's return value).
    """

    reports: tuple[MessageReport, ...]
    """
    A L{MessageReport} per message, in the order given.
    """


class SMTPConnection:
    """
    A connection to one SMTP server in the manner of Django's SMTP email
    backend: L{open} connects (greeting, EHLO, STARTTLS, AUTH), the messages
    of every L{send_messages} call go over it one after the other, L{close}
    says QUIT.  L{send_messages} opens the connection itself when it is not
    open, and then closes it when done; a connection that the server closed
    in the meantime is opened again.

    As an asynchronous context manager it opens on enter and closes on
    exit::

        async with get_connection("smtp+starttls://user:pw@mail.example.com") as c:
            sent, reports = await c.send_messages([first, second])

    It works in a coroutine that Twisted drives (C{Deferred.fromCoroutine},
    C{ensureDeferred}) under any reactor, and in an asyncio task under the
    asyncio reactor.

    @ivar settings: where to connect, as L{SMTPSettings}.
    @ivar failSilently: swallow the errors that Django swallows (see
        L{failsSilently}).
    @ivar client: the live session's L{ESMTPClient}, or L{None}.
    @ivar opened: how many connections it opened so far.
    """

    def __init__(
        self,
        settings: SMTPSettings,
        *,
        failSilently: bool = False,
        reactor: Any = None,
        **options: Any,
    ) -> None:
        """
        @param settings: the server and credentials.
        @param failSilently: see L{failsSilently}.
        @param reactor: the reactor (default: the global one).
        @param options: more keyword arguments of L{mailclient.sendmail}:
            C{tlsOptions}, C{requireAuthentication},
            C{requireTransportSecurity}, C{allowPlaintextAuth},
            C{heloFallback}, C{endpoint}, C{authenticators}, C{pipelining},
            C{chunking}, C{lmtp}, and for every message C{dsn} and
            C{requireTLS}.
        @raise InvalidArgumentError: for an unknown or invalid option.
        """
        unknown = set(options) - set(_CONNECTION_DEFAULTS) - set(_SEND_DEFAULTS)
        if unknown:
            name = sorted(unknown)[0]
            raise errors.InvalidArgumentError(
                name, options[name], "not a connection option"
            )
        if reactor is None:
            from twisted.internet import reactor as _reactor

            reactor = _reactor
        self.settings = settings
        self.failSilently = failSilently
        self.client: ESMTPClient | None = None
        self.opened = 0
        self._reactor = reactor
        keywords = settings.keywords()
        if "tlsOptions" in keywords and options.get("tlsOptions") is not None:
            raise errors.InvalidArgumentError(
                "tlsOptions",
                options["tlsOptions"],
                "give tlsOptions or certificate files in the settings, not both",
            )
        connection = dict(_CONNECTION_DEFAULTS)
        connection.update({k: v for k, v in options.items() if k in connection})
        for name in ("port", "username", "password", "tls", "heloName", "timeout"):
            connection[name] = keywords.get(name)
        if "tlsOptions" in keywords:
            connection["tlsOptions"] = keywords["tlsOptions"]
        self._lmtp = bool(connection["lmtp"])
        self._plan = _plan(reactor, keywords.get("smtphost"), **connection)
        self._sendOptions = dict(_SEND_DEFAULTS)
        self._sendOptions.update(
            {k: v for k, v in options.items() if k in _SEND_DEFAULTS}
        )
        dsn = self._sendOptions["dsn"]
        if dsn is not None and not isinstance(dsn, DSN):
            raise errors.InvalidArgumentError("dsn", dsn, "expected a mailclient.DSN")
        self._lock = DeferredLock()

    # -- Django's API ------------------------------------------------------------

    def open(self) -> Deferred[bool | None]:
        """
        Make sure the connection is open and ready to send.

        @return: a Deferred that fires with C{True} when it opened a new
            connection, C{False} when one was open already, or L{None} when
            opening failed and C{failSilently} swallowed the error (as
            Django's C{open()} returns); otherwise it fails with the error
            (L{errors.SMTPConnectError}, L{errors.TLSRequiredError},
            L{errors.AuthenticationFailedError}...).
        """
        return self._lock.run(lambda: Deferred.fromCoroutine(self._openSilently()))

    def close(self) -> Deferred[None]:
        """
        Say QUIT and close the connection, if one is open.

        @return: a Deferred that fires once the server answered QUIT or the
            connection closed.
        """
        return self._lock.run(lambda: Deferred.fromCoroutine(self._close()))

    def send_messages(
        self, messages: Iterable[Message | Envelope]
    ) -> Deferred[SentMessages]:
        """
        Send messages over this connection, one after the other.

        Each message is an C{email.message.Message} (such as one from
        L{mailclient.message.composeMessage}), whose envelope comes from its
        headers (L{mailclient.message.envelopeFromMessage}: sender from
        Sender/From, recipients from To, Cc and Bcc; its Bcc is never sent),
        or an L{Envelope} with an explicit sender and recipients.  A message
        you build yourself is sent as it is (add Message-ID and Date with
        L{mailclient.message.addMissingHeaders}).

        When the connection is not open it is opened first and closed at the
        end, as Django does.

        @return: a Deferred that fires with L{SentMessages}: the number of
            messages the server accepted for at least one recipient, and a
            L{MessageReport} for each message.  Without C{failSilently} it
            fails with the first message's error that stops it (the
            messages after it are not sent), as Django raises; with it,
            the errors L{failsSilently} names are kept in the reports
            instead.  A message whose envelope cannot be worked out (no
            sender, no recipient, a bad address) fails it before anything
            is sent, C{failSilently} or not.
        """
        return self._lock.run(
            lambda: Deferred.fromCoroutine(self._sendMessages(messages))
        )

    def __aenter__(self) -> Awaitable[SMTPConnection]:
        """
        Open the connection (see L{open}).
        """
        return _awaitable(self.open().addCallback(lambda _: self))

    def __aexit__(self, *exc: object) -> Awaitable[None]:
        """
        Close the connection (see L{close}).
        """
        return _awaitable(self.close())

    # -- the session ---------------------------------------------------------

    async def _connect(self) -> bool:
        """
        Open a new session unless the current one can still send.

        @return: C{True} when a new session was opened.
        """
        old = self.client
        if old is not None and old.canSend:
            return False
        self.client = None
        if old is not None:
            old.quit()
        client = await _openSession(self._plan, self._reactor, self._lmtp)
        self.opened += 1
        self.client = client
        return True

    async def _openSilently(self) -> bool | None:
        try:
            return await self._connect()
        except Exception as e:
            if self.failSilently and failsSilently(e):
                return None
            raise

    async def _close(self) -> None:
        client, self.client = self.client, None
        if client is not None:
            await client.quit()

    def _envelope(self, message: object) -> Envelope:
        if isinstance(message, Envelope):
            validateEnvelope(message.sender, message.recipients)
            return message
        if not isinstance(message, Message):
            raise errors.InvalidArgumentError(
                "messages",
                type(message),
                "expected email.message.Message or mailclient.message.Envelope",
            )
        return envelopeFromMessage(message)

    async def _sendMessages(
        self, messages: Iterable[Message | Envelope]
    ) -> SentMessages:
        if isinstance(messages, Message | Envelope | str | bytes) or not isinstance(
            messages, Iterable
        ):
            raise errors.InvalidArgumentError(
                "messages", type(messages), "expected a list of messages"
            )
        given = list(messages)
        envelopes = [self._envelope(m) for m in given]
        if not given:
            return SentMessages(0, ())
        reports: list[MessageReport] = []
        pairs = list(zip(given, envelopes, strict=True))
        closeAtEnd = self.client is None
        try:
            for index, (message, envelope) in enumerate(pairs):
                try:
                    await self._connect()
                except Exception as e:
                    if not (self.failSilently and failsSilently(e)):
                        raise
                    # As Django: when the connection cannot be opened, the
                    # rest is not tried.
                    reports.extend(
                        MessageReport(m, v.sender, v.recipients, error=e)
                        for m, v in pairs[index:]
                    )
                    break
                assert self.client is not None
                try:
                    result = await self.client.send(
                        envelope.sender,
                        envelope.recipients,
                        envelope.message,
                        **self._sendOptions,
                    )
                except Exception as e:
                    if not (self.failSilently and failsSilently(e)):
                        raise
                    reports.append(
                        MessageReport(
                            message, envelope.sender, envelope.recipients, error=e
                        )
                    )
                else:
                    reports.append(
                        MessageReport(
                            message, envelope.sender, envelope.recipients, result
                        )
                    )
        finally:
            if closeAtEnd:
                await self._close()
        return SentMessages(sum(r.sent for r in reports), tuple(reports))


_TLS_FLAGS = {"useTLS": "starttls", "useSSL": "implicit"}


def get_connection(
    url: str | None = None,
    *,
    failSilently: bool = False,
    host: str | None = None,
    port: int | None = None,
    username: str | None = None,
    password: str | None = None,
    tls: str | None = None,
    useTLS: bool | None = None,
    useSSL: bool | None = None,
    timeout: float | None = None,
    heloName: str | None = None,
    clientCertificate: str | None = None,
    clientKey: str | None = None,
    caCertificates: str | None = None,
    environ: Mapping[str, str] | None = None,
    reactor: Any = None,
    **options: Any,
) -> SMTPConnection:
    """
    A connection to the server that the keywords, C{url} and the
    C{MAILCLIENT_*} environment variables name, in that order of precedence
    (see L{mailclient.config.loadSettings}).  Nothing is connected yet: use
    L{SMTPConnection.open}, C{async with}, or let
    L{SMTPConnection.send_messages} open it.

    @param url: an C{smtp://}, C{smtp+starttls://} or C{smtps://} URL.
    @param failSilently: see L{failsSilently}.
    @param useTLS: Django's C{EMAIL_USE_TLS}: C{True} is C{tls="starttls"}.
    @param useSSL: Django's C{EMAIL_USE_SSL}: C{True} is C{tls="implicit"}.
        C{False} for either means "not set" (the default rule applies, which
        still upgrades with STARTTLS when the server offers it).
    @param environ: the environment to read (default C{os.environ}).
    @param reactor: the reactor (default: the global one).
    @param options: more options of L{SMTPConnection}.
    @raise InvalidArgumentError: for a bad or conflicting setting, such as
        C{useTLS} and C{useSSL} together (as Django refuses).
    """
    flags = {name: value for name, value in (("useTLS", useTLS), ("useSSL", useSSL))}
    for name, value in flags.items():
        if value is not None and not isinstance(value, bool):
            raise errors.InvalidArgumentError(name, value, "expected True or False")
    if useTLS and useSSL:
        raise errors.InvalidArgumentError(
            "useSSL",
            useSSL,
            "useTLS (STARTTLS) and useSSL (implicit TLS) are mutually exclusive",
        )
    for name, mode in _TLS_FLAGS.items():
        if flags[name]:
            if tls is not None and tls != mode:
                raise errors.InvalidArgumentError(
                    "tls", tls, f"{name}=True means tls={mode!r}"
                )
            tls = mode
    settings = loadSettings(
        url,
        environ=environ,
        host=host,
        port=port,
        username=username,
        password=password,
        tls=tls,
        timeout=timeout,
        heloName=heloName,
        clientCertificate=clientCertificate,
        clientKey=clientKey,
        caCertificates=caCertificates,
    )
    return SMTPConnection(
        settings, failSilently=failSilently, reactor=reactor, **options
    )


def send_mail(
    subject: str,
    message: str,
    fromEmail: str,
    recipientList: str | Sequence[str],
    *,
    failSilently: bool = False,
    authUser: str | None = None,
    authPassword: str | None = None,
    connection: SMTPConnection | None = None,
    htmlMessage: str | None = None,
    **connectionOptions: Any,
) -> Deferred[SentMessages]:
    """
    Compose one message (a text body, and an HTML alternative when
    C{htmlMessage} is given) and send it, as Django's C{send_mail}.

    @param subject: the Subject.
    @param message: the text body.
    @param fromEmail: the From address (and envelope sender).
    @param recipientList: the To addresses.
    @param failSilently: see L{failsSilently} (for the connection made
        here; a given C{connection} keeps its own).
    @param authUser: the user name for AUTH.
    @param authPassword: the password for AUTH.
    @param connection: send over this connection instead of a new one.
    @param htmlMessage: the HTML alternative.
    @param connectionOptions: for L{get_connection} when no connection is
        given (C{url}, C{host}, C{port}, C{tls}...).
    @return: a Deferred that fires with L{SentMessages} (C{sent} is 1 or
        0), or fails as L{SMTPConnection.send_messages} does.
    """
    return Deferred.fromCoroutine(
        _sendComposed(
            [(subject, message, fromEmail, recipientList, htmlMessage)],
            connection,
            dict(
                failSilently=failSilently,
                username=authUser,
                password=authPassword,
                **connectionOptions,
            ),
        )
    )


def send_mass_mail(
    datatuple: Iterable[tuple[str, str, str, str | Sequence[str]]],
    *,
    failSilently: bool = False,
    authUser: str | None = None,
    authPassword: str | None = None,
    connection: SMTPConnection | None = None,
    **connectionOptions: Any,
) -> Deferred[SentMessages]:
    """
    Send several messages over one connection, as Django's
    C{send_mass_mail}.

    @param datatuple: C{(subject, message, fromEmail, recipientList)} for
        each message.
    @return: a Deferred that fires with L{SentMessages}, or fails as
        L{SMTPConnection.send_messages} does.
    """
    options: dict[str, Any] = dict(
        failSilently=failSilently,
        username=authUser,
        password=authPassword,
        **connectionOptions,
    )

    async def send() -> SentMessages:
        items = [(*item, None) for item in _tuples(datatuple)]
        return await _sendComposed(items, connection, options)

    return Deferred.fromCoroutine(send())


def _tuples(
    datatuple: Iterable[tuple[str, str, str, str | Sequence[str]]],
) -> list[tuple[str, str, str, str | Sequence[str]]]:
    items = list(datatuple)
    for item in items:
        if not isinstance(item, tuple | list) or len(item) != 4:
            raise errors.InvalidArgumentError(
                "datatuple",
                item,
                "expected (subject, message, fromEmail, recipientList)",
            )
    return [tuple(item) for item in items]  # type: ignore[misc]


async def _sendComposed(
    items: Sequence[tuple[str, str, str, str | Sequence[str], str | None]],
    connection: SMTPConnection | None,
    connectionOptions: dict[str, Any],
) -> SentMessages:
    messages = [
        composeMessage(
            fromAddress=fromEmail,
            to=recipientList,
            subject=subject,
            text=body,
            html=html,
        )
        for subject, body, fromEmail, recipientList, html in items
    ]
    if connection is None:
        connection = get_connection(**connectionOptions)
    return await connection.send_messages(messages)
