"""
The factory that sends one message over one connection, and L{sendmail}, the
everyday entry point.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from email.headerregistry import Address
from email.message import Message
from typing import Any

import attrs
from twisted.internet import defer
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS
from twisted.internet.interfaces import (
    IAddress,
    IOpenSSLClientConnectionCreator,
    IReactorTime,
    IStreamClientEndpoint,
)
from twisted.internet.protocol import ClientFactory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import deferLater
from twisted.python.failure import Failure

from mailclient import errors
from mailclient._wire.envelope import DSN, Recipient
from mailclient._wire.policy import TLSMode
from mailclient._wire.sasl import SASLMechanism, passwordMechanisms
from mailclient.message import envelopeFromMessage
from mailclient.protocol import ESMTPClient, LMTPClient, Timeouts
from mailclient.results import SendResult, SessionInfo

__all__ = ["ESMTPSenderFactory", "sendMessage", "sendmail", "verifyConnection"]

CONNECT_TIMEOUT = 30.0
RETRY_BASE_DELAY = 1.0
RETRY_MAX_DELAY = 30.0


class ESMTPSenderFactory(ClientFactory):
    """
    Sends one message over one connection, then QUIT.

    Its L{deferred} fires with the L{SendResult} of the message or fails
    with an error from L{mailclient.errors}; it always fires, whether the
    connection fails, is lost, or times out.  Cancelling it aborts the
    connection.  To send several messages over one connection, use
    L{ESMTPClient.send} on the protocol directly.

    @ivar deferred: fires with the L{SendResult}.
    @ivar client: the L{ESMTPClient} this factory builds (once).
    """

    def __init__(
        self,
        fromAddress: str | bytes,
        toAddresses: str | bytes | Recipient | Iterable[str | bytes | Recipient],
        message: object,
        *,
        clock: IReactorTime,
        authenticators: Sequence[SASLMechanism] = (),
        dsn: DSN | None = None,
        requireTLS: bool = False,
        lmtp: bool = False,
        **clientOptions: Any,
    ) -> None:
        """
        @param clock: the source of time for timeouts.
        @param authenticators: SASL mechanisms to register, holding their
            credentials.
        @param dsn: delivery status notification options for the message.
        @param requireTLS: send the message with REQUIRETLS (RFC 8689).
        @param lmtp: speak LMTP (L{LMTPClient}) instead of ESMTP.
        @param clientOptions: keyword arguments for L{ESMTPClient}.
        """
        protocol = LMTPClient if lmtp else ESMTPClient
        self.client = protocol(clock=clock, quitWhenIdle=True, **clientOptions)
        for mechanism in authenticators:
            self.client.registerAuthenticator(mechanism)
        self._built = False
        inner = self.client.send(
            fromAddress, toAddresses, message, dsn=dsn, requireTLS=requireTLS
        )
        self.deferred: Deferred[SendResult] = Deferred(self._cancel)
        inner.chainDeferred(self.deferred)

    def _cancel(self, _: Deferred[SendResult]) -> None:
        """
        The caller cancelled: abort the connection, whatever the phase.
        """
        self.client.abort(errors.SendCancelledError(self.client.phase.value))

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        """
        Hand out the client, once; a factory sends over one connection.
        """
        if self._built:
            return None
        self._built = True
        self.client.factory = self
        return self.client

    def clientConnectionFailed(self, connector: object, reason: Failure) -> None:
        """
        For C{reactor.connectTCP} callers: the connection failed.
        """
        if not self.deferred.called:
            self.client.abort(errors.SMTPConnectError(reason.getErrorMessage()))


_TLS_MODES = {mode.value: mode for mode in TLSMode}


def _text(value: str | bytes, argument: str) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("ascii")
        except UnicodeDecodeError as e:
            raise errors.InvalidArgumentError(argument, value, "not ASCII") from e
    if not isinstance(value, str):
        raise errors.InvalidArgumentError(argument, value, "expected str or bytes")
    return value


@attrs.frozen
class _Plan:
    """
    The validated settings of one sendmail call.
    """

    endpoint: IStreamClientEndpoint
    clientOptions: dict[str, Any]
    authenticators: tuple[SASLMechanism, ...]


def _plan(
    reactor: Any,
    smtphost: str | bytes | None,
    *,
    port: int | None,
    username: str | bytes | None,
    password: str | bytes | None,
    tls: str | None,
    tlsOptions: IOpenSSLClientConnectionCreator | None,
    heloName: str | None,
    timeout: float | None,
    requireAuthentication: bool | None,
    requireTransportSecurity: bool,
    allowPlaintextAuth: bool,
    heloFallback: bool,
    endpoint: IStreamClientEndpoint | None,
    authenticators: Sequence[SASLMechanism] | None,
    pipelining: bool = True,
    chunking: bool = True,
    lmtp: bool = False,
) -> _Plan:
    if port is not None and (
        not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536
    ):
        raise errors.InvalidArgumentError("port", port, "expected an int 1-65535")
    if (username is None) != (password is None):
        raise errors.InvalidArgumentError(
            "username", username, "username and password go together"
        )
    mechanisms: tuple[SASLMechanism, ...] = tuple(authenticators or ())
    if username is not None and password is not None:
        mechanisms += tuple(
            passwordMechanisms(_text(username, "username"), _text(password, "password"))
        )
    if tls is None:
        if port == 465:
            mode = TLSMode.IMPLICIT
        elif mechanisms:
            mode = TLSMode.STARTTLS
        else:
            mode = TLSMode.OPPORTUNISTIC
    elif tls in _TLS_MODES:
        mode = _TLS_MODES[tls]
    else:
        raise errors.InvalidArgumentError(
            "tls", tls, f"expected one of {', '.join(sorted(_TLS_MODES))}"
        )
    host = _text(smtphost, "smtphost") if smtphost is not None else None
    if tlsOptions is None and mode is not TLSMode.NONE and host is not None:
        tlsOptions = optionsForClientTLS(host)
    if tlsOptions is None and mode in (TLSMode.IMPLICIT, TLSMode.STARTTLS):
        raise errors.InvalidArgumentError(
            "tlsOptions", None, "TLS is required: give smtphost or tlsOptions"
        )
    if endpoint is None:
        if host is None:
            raise errors.InvalidArgumentError(
                "smtphost", None, "give smtphost or endpoint"
            )
        if port is None:
            port = 24 if lmtp else 465 if mode is TLSMode.IMPLICIT else 25
        endpoint = HostnameEndpoint(
            reactor,
            host,
            port,
            timeout=min(timeout or CONNECT_TIMEOUT, CONNECT_TIMEOUT),
        )
    if mode is TLSMode.IMPLICIT:
        assert tlsOptions is not None
        endpoint = wrapClientTLS(tlsOptions, endpoint)
    if requireAuthentication is None:
        requireAuthentication = bool(mechanisms)
    clientOptions: dict[str, Any] = {
        "heloName": heloName,
        "tls": mode,
        "tlsOptions": tlsOptions,
        "requireTransportSecurity": requireTransportSecurity,
        "requireAuthentication": requireAuthentication,
        "allowPlaintextAuth": allowPlaintextAuth,
        "heloFallback": heloFallback,
        "timeouts": Timeouts().capped(timeout),
        "pipelining": bool(pipelining),
        "chunking": bool(chunking),
    }
    return _Plan(endpoint, clientOptions, mechanisms)


def _retryable(error: BaseException, client: ESMTPClient) -> bool:
    """
    Whether a failed attempt may be tried again: only failures before any
    message data was sent, and only transient ones.
    """
    if client.dataStarted:
        return False
    if isinstance(error, errors.SMTPConnectError):
        return True
    if isinstance(error, errors.ServerRefusedSessionError):
        return error.isTransient
    return isinstance(error, errors.SMTPTimeoutError | errors.ConnectionLostError)


def sendmail(
    smtphost: str | bytes | None,
    fromAddress: str | bytes,
    toAddresses: str | bytes | Recipient | Iterable[str | bytes | Recipient],
    message: object,
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
    retries: int = 2,
    authenticators: Sequence[SASLMechanism] | None = None,
    dsn: DSN | None = None,
    requireTLS: bool = False,
    pipelining: bool = True,
    chunking: bool = True,
    lmtp: bool = False,
) -> Deferred[SendResult]:
    """
    Send one message and report what happened to every recipient.

    The positional arguments are those of C{twisted.mail.smtp.sendmail}, so a
    caller switches by changing the import.

    @param smtphost: the server's host name (also the name its certificate
        must carry), or L{None} when C{endpoint} is given with C{tlsOptions}.
    @param fromAddress: the envelope sender; C{""} for the null sender.
    @param toAddresses: one recipient or several.
    @param message: an C{email.message.EmailMessage}, C{bytes}, C{str}
        (sent as UTF-8) or a binary file.  The C{Bcc} and C{Resent-Bcc}
        headers of an C{email.message.Message} are never sent (the message
        itself is not changed); bytes, text and files are sent as they are.
        To take the envelope from the message's headers, use
        L{sendMessage}.
    @param port: the server's port; default 465 with implicit TLS, else 25.
    @param username: with C{password}, the credentials for AUTH (PLAIN,
        LOGIN or CRAM-MD5, the strongest the server offers).
    @param tls: C{"implicit"} (TLS from the first byte), C{"starttls"}
        (upgrade or fail), C{"opportunistic"} (upgrade when offered) or
        C{"none"}.  Default: implicit on port 465, starttls when credentials
        are given, else opportunistic.  Credentials are never sent without
        TLS unless C{allowPlaintextAuth} is true.
    @param tlsOptions: client TLS options from
        L{twisted.internet.ssl.optionsForClientTLS}, to give your own trust
        root or client certificate; default: verify C{smtphost} against the
        system's trust store.
    @param heloName: our name in EHLO/HELO.
    @param timeout: no single wait (connecting, or any reply) lasts longer
        than this many seconds; default: the RFC 5321 timeouts.
    @param reactor: the reactor (default: the global one).
    @param requireAuthentication: fail unless AUTH succeeds; default: true
        when credentials are given.
    @param requireTransportSecurity: fail unless the session is TLS.
    @param allowPlaintextAuth: allow credentials on a session without TLS.
    @param heloFallback: try HELO when the server refuses EHLO.
    @param endpoint: a client endpoint to connect with instead of
        C{smtphost}/C{port} (implicit TLS is layered on top of it).
    @param retries: how many more times to try when an attempt fails before
        any message data was sent (connection failures, timeouts, 421 and
        other transient session refusals), with exponential backoff and
        jitter.  A message is never resent after its data was sent.
    @param authenticators: more SASL mechanism objects to offer (such as
        L{mailclient.OAuthBearerMechanism} with a token provider).
    @param dsn: delivery status notification options (L{mailclient.DSN}:
        RET, ENVID and a default NOTIFY); per-recipient NOTIFY and ORCPT go
        on L{mailclient.Recipient} objects in C{toAddresses}.  Sent only when
        the server offers DSN (see L{SendResult.extensions}).
    @param requireTLS: REQUIRETLS (RFC 8689): fail unless the session is TLS
        and the server offers REQUIRETLS, and ask every later hop for TLS.
    @param pipelining: C{False} to wait for each reply even when the server
        offers PIPELINING.
    @param chunking: C{False} to prefer DATA to BDAT.
    @param lmtp: speak LMTP (RFC 2033; default port 24).
    @return: a Deferred that fires with a L{SendResult} when at least one
        recipient accepted the message, or fails with an error from
        L{mailclient.errors}.  Cancelling it aborts the connection.
    """
    return Deferred.fromCoroutine(
        _sendmail(
            smtphost,
            fromAddress,
            toAddresses,
            message,
            port=port,
            username=username,
            password=password,
            tls=tls,
            tlsOptions=tlsOptions,
            heloName=heloName,
            timeout=timeout,
            reactor=reactor,
            requireAuthentication=requireAuthentication,
            requireTransportSecurity=requireTransportSecurity,
            allowPlaintextAuth=allowPlaintextAuth,
            heloFallback=heloFallback,
            endpoint=endpoint,
            retries=retries,
            authenticators=authenticators,
            pipelining=pipelining,
            chunking=chunking,
            lmtp=lmtp,
            sendOptions={"dsn": dsn, "requireTLS": requireTLS},
        )
    )


def sendMessage(
    smtphost: str | bytes | None,
    message: Message,
    *,
    fromAddress: str | Address | None = None,
    toAddresses: str | Address | Iterable[str | Address] | None = None,
    **keywords: Any,
) -> Deferred[SendResult]:
    """
    Send an L{email.message.Message} to the recipients its headers name,
    from the sender they name (see L{mailclient.message.envelopeFromMessage}:
    C{Sender} or C{From}; C{To}, C{Bcc} and C{Cc}; the C{Resent-} headers
    of a resent message).  The C{Bcc} and C{Resent-Bcc} headers are not
    sent; the message given is not changed.

    @param smtphost: as for L{sendmail}.
    @param message: the message.
    @param fromAddress: the envelope sender to use instead of the headers'
        (C{""} for the null sender).
    @param toAddresses: the recipients to use instead of the headers'.
    @param keywords: every other keyword argument of L{sendmail} (C{port},
        C{username}, C{password}, C{tls}, C{dsn}, ...).
    @return: a Deferred that fires as L{sendmail}'s does; bad input
        (including a message whose headers give no sender or no recipient)
        fails it with L{errors.InvalidArgumentError}.
    """
    try:
        envelope = envelopeFromMessage(
            message, fromAddress=fromAddress, toAddresses=toAddresses
        )
        return sendmail(
            smtphost, envelope.sender, envelope.recipients, envelope.message, **keywords
        )
    except Exception:
        return fail()


async def _sendmail(
    smtphost: str | bytes | None,
    fromAddress: str | bytes,
    toAddresses: str | bytes | Recipient | Iterable[str | bytes | Recipient],
    message: object,
    *,
    reactor: Any,
    retries: int,
    sendOptions: dict[str, Any],
    **options: Any,
) -> SendResult:
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    if not isinstance(retries, int) or retries < 0:
        raise errors.InvalidArgumentError("retries", retries, "must be an int >= 0")
    if isinstance(toAddresses, Iterable) and not isinstance(
        toAddresses, str | bytes | Recipient
    ):
        toAddresses = list(toAddresses)
    plan = _plan(reactor, smtphost, **options)
    if hasattr(message, "read") and retries:
        retries = 0  # a stream cannot be read twice
    attempt = 0
    while True:
        attempt += 1
        factory = ESMTPSenderFactory(
            fromAddress,
            toAddresses,
            message,
            clock=reactor,
            authenticators=plan.authenticators,
            lmtp=options.get("lmtp", False),
            **sendOptions,
            **plan.clientOptions,
        )
        try:
            if not factory.deferred.called:
                try:
                    await plan.endpoint.connect(factory)
                except defer.CancelledError:
                    raise
                except Exception as e:
                    if not factory.deferred.called:
                        factory.client.abort(
                            errors.SMTPConnectError(str(e) or type(e).__name__)
                        )
            result = await factory.deferred
            return attrs.evolve(result, attempts=attempt)
        except errors.MailClientError as e:
            if attempt > retries or not _retryable(e, factory.client):
                if e.result is not None:
                    e.result = attrs.evolve(e.result, attempts=attempt)
                raise
        delay = min(RETRY_BASE_DELAY * 2 ** (attempt - 1), RETRY_MAX_DELAY)
        await deferLater(reactor, delay * random.uniform(0.5, 1.5))


class _SessionFactory(ClientFactory):
    """
    Hands out one prepared client.
    """

    def __init__(self, client: ESMTPClient) -> None:
        self.client = client

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        return self.client


def verifyConnection(
    smtphost: str | bytes | None,
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
    lmtp: bool = False,
) -> Deferred[SessionInfo]:
    """
    Check that a server can be used, without sending mail: connect, EHLO,
    STARTTLS and AUTH exactly as L{sendmail} would with the same keywords,
    then QUIT.

    @return: a Deferred that fires with the L{SessionInfo}: the greeting,
        the capabilities (after TLS), the TLS version and cipher, and the
        SASL mechanism that worked; or fails with the error L{sendmail}
        would have met (L{errors.TLSRequiredError},
        L{errors.AuthenticationFailedError}, L{errors.SMTPConnectError}...).
    """
    return Deferred.fromCoroutine(
        _verifyConnection(
            smtphost,
            reactor=reactor,
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
            lmtp=lmtp,
        )
    )


async def _openSession(plan: _Plan, clock: IReactorTime, lmtp: bool) -> ESMTPClient:
    """
    Connect a new client as C{plan} says and wait until it is ready to send
    (greeting, EHLO, STARTTLS, AUTH done).

    @return: the ready client.
    @raise MailClientError: what stopped it; cancelling aborts the client.
    """
    protocol = LMTPClient if lmtp else ESMTPClient
    client = protocol(clock=clock, **plan.clientOptions)
    for mechanism in plan.authenticators:
        client.registerAuthenticator(mechanism)
    ready = client.whenReady()
    try:
        await plan.endpoint.connect(_SessionFactory(client))
    except defer.CancelledError:
        raise
    except Exception as e:
        client.abort(errors.SMTPConnectError(str(e) or type(e).__name__))
    try:
        await ready
    except defer.CancelledError:
        client.abort(errors.SendCancelledError(client.phase.value))
        raise
    return client


async def _verifyConnection(
    smtphost: str | bytes | None, *, reactor: Any, lmtp: bool, **options: Any
) -> SessionInfo:
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    plan = _plan(reactor, smtphost, lmtp=lmtp, **options)
    client = await _openSession(plan, reactor, lmtp)
    info = client.sessionInfo()
    await client.quit()
    return info
