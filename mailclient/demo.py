"""
A self-contained demonstration of mailclient, and the loopback SMTP receiver
it runs against.

Run it with::

    python -m mailclient.demo [--directory DIR]

It starts a L{LoopbackReceiver} (Twisted's own C{twisted.mail.smtp.ESMTP}
server) on C{127.0.0.1} on a port the system picks, builds an
C{email.message.EmailMessage} with a text body and a generated CSV
attachment, and sends it with L{mailclient.sendmail} to three recipients:
one the receiver accepts, C{reject@example.com} (refused with
C{550 5.1.1}) and C{tempfail@example.com} (refused with C{450 4.2.1}).  It
prints each recipient's result, the server's final reply, the session
transcript and the path of every delivered file, and exits with status 0
when the accepted recipient's file holds exactly the bytes of the message
(status 1 otherwise).

The delivered files are kept: in C{DIR} when C{--directory} is given, else
in a new temporary directory whose path is printed.

L{LoopbackReceiver} is public so that tests and the documentation's
examples can run against the same server: it accepts mail for any address
except the two refusing ones above, writes every accepted message into a
Maildir-like folder (one file per recipient under C{new/}, holding the
message exactly as the client sent it, without an added C{Received:}
header), answers with a queue id as a real MTA does, and can offer
STARTTLS or implicit TLS with a throwaway certificate authority and require
SMTP AUTH.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import ipaddress
import itertools
import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from email.message import EmailMessage
from typing import Any, Literal, cast

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.cred.checkers import (
    AllowAnonymousAccess,
    InMemoryUsernamePasswordDatabaseDontUse,
)
from twisted.cred.credentials import CramMD5Credentials
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import (
    IListeningPort,
    IProtocolFactory,
    IReactorTCP,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.ssl import Certificate, PrivateCertificate
from twisted.mail.imap4 import PLAINCredentials
from twisted.mail.smtp import (
    ESMTP,
    Address,
    IMessage,
    IMessageDelivery,
    LOGINCredentials,
    SMTPBadRcpt,
    SMTPServerError,
    User,
)
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

import mailclient
from mailclient import errors
from mailclient.results import SendResult

__all__ = [
    "Delivery",
    "LoopbackReceiver",
    "ReceiverTLS",
    "buildDemoMessage",
    "generateCertificates",
    "main",
]

ReceiverTLS = Literal["none", "starttls", "implicit"]
"""
How a L{LoopbackReceiver} offers TLS: not at all, with STARTTLS, or from the
first byte (implicit TLS, as on port 465).
"""

REJECT_LOCAL_PART = "reject"
"""
Mail for this local part (any domain) is refused with C{550 5.1.1}.
"""

TEMPFAIL_LOCAL_PART = "tempfail"
"""
Mail for this local part (any domain) is refused with C{450 4.2.1}.
"""

DEMO_SENDER = "demo@example.com"
DEMO_RECIPIENTS = (
    "alice@example.com",
    f"{REJECT_LOCAL_PART}@example.com",
    f"{TEMPFAIL_LOCAL_PART}@example.com",
)
_OK_RECIPIENT = DEMO_RECIPIENTS[0]


@attrs.frozen
class Delivery:
    """
    One message written to the receiver's folder for one recipient.

    @ivar sender: the envelope sender (C{""} for the null sender).
    @ivar recipient: the envelope recipient this copy is for.
    @ivar path: the file in C{new/} that holds the message.
    @ivar username: the user the session authenticated as, or L{None}.
    @ivar tls: C{True} when the session was TLS-protected.
    @ivar queueId: the id the receiver gave the message in its final reply
        (C{"250 2.0.0 Ok: queued as QUEUEID"}); every copy of one message
        has the same.
    """

    sender: str
    recipient: str
    path: str
    username: str | None
    tls: bool
    queueId: str

    def read(self) -> bytes:
        """
        @return: the bytes of the delivered message.
        """
        with open(self.path, "rb") as f:
            return f.read()


def generateCertificates(
    hostname: str = "localhost",
) -> tuple[Certificate, PrivateCertificate]:
    """
    Make a throwaway certificate authority and a server certificate it
    signed, valid for one day.

    The server certificate names C{hostname}, C{localhost} and the address
    C{127.0.0.1}, so a client can verify it whichever of those it connects
    to.  Both keys are ECDSA P-256, which is fast to generate.

    @param hostname: the DNS name the server certificate is for.
    @return: the CA certificate (the trust root a client needs) and the
        server's certificate with its private key.
    """
    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=1)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "mailclient loopback test CA")]
    )
    caCert = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    serverKey = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(hostname)]
    if hostname != "localhost":
        names.append(x509.DNSName("localhost"))
    names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    serverCert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(caName)
        .public_key(serverKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    keyPEM = serverKey.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return (
        Certificate.loadPEM(caCert.public_bytes(pem)),
        PrivateCertificate.loadPEM(serverCert.public_bytes(pem) + keyPEM),
    )


@implementer(IMessage)
class _MaildirMessage:
    """
    One message for one recipient, written to C{tmp/} and then moved into
    C{new/} when its end arrives, as a Maildir delivery agent does.
    """

    def __init__(self, receiver: LoopbackReceiver, delivery: Delivery) -> None:
        """
        @param receiver: the receiver whose folder gets the message.
        @param delivery: the envelope of this copy; its C{path} is set when
            the message is written.
        """
        self._receiver = receiver
        self._delivery = delivery
        self._lines: list[bytes] = []

    def lineReceived(self, line: bytes) -> None:
        """
        Keep one line of the message (already un-dot-stuffed, without its
        CRLF).

        @param line: the line.
        """
        self._lines.append(line)

    def eomReceived(self) -> Deferred[Delivery]:
        """
        Write the message, each line ended with CRLF, and record the
        delivery.

        @return: a Deferred that has fired with the L{Delivery}.
        """
        data = b"".join(line + b"\r\n" for line in self._lines)
        self._lines = []
        path = self._receiver._writeMessage(data)
        delivery = attrs.evolve(self._delivery, path=path)
        self._receiver.deliveries.append(delivery)
        return defer.succeed(delivery)

    def connectionLost(self) -> None:
        """
        The session ended before the end of the message: forget it.
        """
        self._lines = []


@implementer(IMessageDelivery)
class _MessageDelivery:
    """
    Decides, per session, which senders and recipients are accepted.
    """

    def __init__(
        self,
        receiver: LoopbackReceiver,
        username: str | None,
        mayMail: bool,
    ) -> None:
        """
        @param receiver: the receiver that stores accepted messages.
        @param username: the user the session authenticated as, or L{None}.
        @param mayMail: whether C{MAIL FROM} is allowed (C{False} for an
            unauthenticated session on a receiver that requires AUTH).
        """
        self._receiver = receiver
        self._username = username
        self._mayMail = mayMail
        self._queueId = ""

    def receivedHeader(
        self, helo: tuple[bytes, bytes], origin: Address, recipients: Sequence[User]
    ) -> None:
        """
        Add no C{Received:} header, so that each delivered file holds
        exactly the bytes the client sent.

        @param helo: the client's HELO/EHLO argument and address.
        @param origin: the envelope sender.
        @param recipients: the recipients of this copy.
        @return: L{None}: no header.
        """
        return None

    def validateFrom(self, helo: tuple[bytes, bytes], origin: Address) -> Address:
        """
        Accept any sender, once authenticated when AUTH is required, and
        give the new transaction its queue id.

        @param helo: the client's HELO/EHLO argument and address.
        @param origin: the envelope sender.
        @return: C{origin}.
        @raise SMTPServerError: C{530 5.7.0} when the receiver requires
            authentication and the session has not authenticated.
        """
        if not self._mayMail:
            raise SMTPServerError(530, "5.7.0 Authentication required")
        self._queueId = secrets.token_hex(5).upper()
        return origin

    def validateTo(self, user: User) -> Callable[[], _MaildirMessage]:
        """
        Accept any recipient but C{reject@...} (C{550 5.1.1}) and
        C{tempfail@...} (C{450 4.2.1}).

        @param user: the recipient.
        @return: a callable that makes the message writer for this
            recipient.
        @raise SMTPBadRcpt: for the refused local parts.
        """
        address = str(user.dest)
        local = user.dest.local.decode("ascii", "replace").lower()
        if local == REJECT_LOCAL_PART:
            raise SMTPBadRcpt(
                user.dest,
                550,
                f"5.1.1 <{address}>: Recipient address rejected: no such user",
            )
        if local == TEMPFAIL_LOCAL_PART:
            raise SMTPBadRcpt(
                user.dest,
                450,
                f"4.2.1 <{address}>: Mailbox temporarily unavailable, try again later",
            )
        delivery = Delivery(
            sender=str(user.orig),
            recipient=address,
            path="",
            username=self._username,
            tls=bool(getattr(user.protocol, "tlsActive", False)),
            queueId=self._queueId,
        )
        return lambda: _MaildirMessage(self._receiver, delivery)


@implementer(IRealm)
class _Realm:
    """
    Hands out a L{_MessageDelivery} for every login, anonymous or not.
    """

    def __init__(self, receiver: LoopbackReceiver) -> None:
        """
        @param receiver: the receiver the deliveries store messages in.
        """
        self._receiver = receiver

    def requestAvatar(
        self, avatarId: bytes | tuple[()], mind: object, *interfaces: Any
    ) -> tuple[Any, _MessageDelivery, Callable[[], None]]:
        """
        Build the delivery for an authenticated user or, with the anonymous
        avatar C{()}, one that refuses C{MAIL FROM}.

        @param avatarId: the user name, or C{()} for an anonymous session.
        @param mind: unused.
        @param interfaces: the interfaces the caller asks for.
        @return: the C{IMessageDelivery} avatar.
        @raise NotImplementedError: if C{IMessageDelivery} is not asked for.
        """
        if IMessageDelivery not in interfaces:
            raise NotImplementedError("only IMessageDelivery is available")
        if isinstance(avatarId, bytes):
            delivery = _MessageDelivery(
                self._receiver, avatarId.decode("utf-8", "replace"), mayMail=True
            )
        else:
            delivery = _MessageDelivery(self._receiver, None, mayMail=False)
        return IMessageDelivery, delivery, lambda: None


class _ReceiverESMTP(ESMTP):
    """
    Twisted's ESMTP server, advertising 8BITMIME (it passes octets through
    unchanged), answering the end of the data with a queue id, and telling
    the receiver when a connection starts and ends.

    @ivar lost: fires when the connection has ended.
    """

    noisy = False

    def __init__(self, receiver: LoopbackReceiver) -> None:
        """
        @param receiver: the receiver this session belongs to.
        """
        challengers: dict[bytes, Callable[[], object]] = {}
        if receiver.credentials:
            challengers = {
                b"CRAM-MD5": CramMD5Credentials,
                b"PLAIN": PLAINCredentials,
                b"LOGIN": LOGINCredentials,
            }
        super().__init__(
            challengers,
            receiver.certificate.options()
            if receiver.tls == "starttls" and receiver.certificate is not None
            else None,
        )
        self.host = receiver.hostname.encode("ascii")
        self._receiver = receiver
        self.lost: Deferred[None] = Deferred()
        if receiver.credentials:
            # twisted.mail.smtp.SMTP declares "portal = None"; cred sets it.
            self.portal = receiver._portal  # type: ignore[assignment]
        else:
            self.delivery = _MessageDelivery(receiver, None, mayMail=True)

    @property
    def tlsActive(self) -> bool:
        """
        Whether this session is TLS-protected.
        """
        return bool(self.startedTLS) or self._receiver.tls == "implicit"

    def _messageHandled(self, resultList: list[tuple[bool, object]]) -> None:
        """
        Answer the end of the data as a queueing MTA does, with
        C{"250 2.0.0 Ok: queued as QUEUEID"}, when every copy was stored;
        else as Twisted does.

        @param resultList: what each copy's C{eomReceived} fired with.
        """
        ids = {r.queueId for ok, r in resultList if ok and isinstance(r, Delivery)}
        if len(ids) == 1 and all(ok for ok, _ in resultList):
            self.sendCode(250, f"2.0.0 Ok: queued as {ids.pop()}".encode("ascii"))
            return
        super()._messageHandled(resultList)

    def extensions(self) -> dict[bytes, list[bytes] | None]:
        """
        Twisted's extensions (C{AUTH}, C{STARTTLS}) plus C{8BITMIME}.
        """
        extensions: dict[bytes, list[bytes] | None] = super().extensions()
        extensions[b"8BITMIME"] = None
        return extensions

    def connectionMade(self) -> None:
        """
        Greet the client and register the session with the receiver.
        """
        super().connectionMade()
        self._receiver.sessionCount += 1
        self._receiver._sessions.add(self)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """
        Clean up and tell whoever waits for this session to end.

        @param reason: why the connection ended.
        """
        super().connectionLost(reason)
        self._receiver._sessions.discard(self)
        self.lost.callback(None)


class _ReceiverFactory(Factory):
    """
    Builds one L{_ReceiverESMTP} per connection.
    """

    def __init__(self, receiver: LoopbackReceiver) -> None:
        """
        @param receiver: the receiver the sessions belong to.
        """
        self._receiver = receiver

    def buildProtocol(self, addr: object) -> Protocol:
        """
        @param addr: the client's address.
        @return: a new session.
        """
        protocol = _ReceiverESMTP(self._receiver)
        protocol.factory = self
        return protocol


class LoopbackReceiver:
    """
    An SMTP server on the loopback interface that stores what it accepts.

    Built on Twisted's own server, C{twisted.mail.smtp.ESMTP}.  It accepts
    any sender and any recipient except C{reject@...} (refused with
    C{550 5.1.1}) and C{tempfail@...} (refused with C{450 4.2.1}), writes
    each accepted message once per recipient into C{new/} under
    L{directory} (exactly the bytes the client sent, un-dot-stuffed, with
    CRLF line ends and no added header), records each in L{deliveries},
    and answers the end of the data with C{"250 2.0.0 Ok: queued as
    QUEUEID"}.

    Usage::

        receiver = LoopbackReceiver()
        port = await receiver.start(reactor)
        ...  # sendmail("127.0.0.1", ..., port=port, tls="none")
        await receiver.stop()

    @ivar directory: the Maildir-like folder (C{new/}, C{tmp/}, C{cur/}).
    @ivar host: the address it listens on.
    @ivar hostname: the name it gives in its greeting and EHLO reply, and
        that its generated certificate is for.
    @ivar port: the port it listens on, once started; else L{None}.
    @ivar tls: a L{ReceiverTLS}: C{"none"}, C{"starttls"} or C{"implicit"}.
    @ivar certificate: the server's certificate and key when TLS is
        offered, else L{None}.
    @ivar caCertificate: the certificate of the throwaway CA that signed
        L{certificate} when the receiver generated it, else L{None}; give it
        to C{optionsForClientTLS(..., trustRoot=...)}.
    @ivar credentials: user names and passwords; when not empty the receiver
        offers C{AUTH CRAM-MD5 PLAIN LOGIN} and refuses C{MAIL FROM} with
        C{530 5.7.0} until the session has authenticated.
    @ivar deliveries: every L{Delivery} so far, in order.
    @ivar sessionCount: how many connections it has accepted so far.
    """

    def __init__(
        self,
        directory: str | None = None,
        *,
        host: str = "127.0.0.1",
        hostname: str = "localhost",
        tls: ReceiverTLS = "none",
        certificate: PrivateCertificate | None = None,
        credentials: Mapping[str, str] | None = None,
    ) -> None:
        """
        @param directory: where to store messages; created if missing.  By
            default a new temporary directory, which is kept.
        @param host: the IPv4 address to listen on.
        @param hostname: the server's name.
        @param tls: how TLS is offered.
        @param certificate: the server's certificate and key for TLS; by
            default one is generated with L{generateCertificates}.
        @param credentials: user names and passwords to accept with AUTH.
        @raise ValueError: if C{tls} is not a L{ReceiverTLS}.
        """
        if tls not in ("none", "starttls", "implicit"):
            raise ValueError(f"tls must be 'none', 'starttls' or 'implicit': {tls!r}")
        if directory is None:
            directory = tempfile.mkdtemp(prefix="mailclient-receiver-")
        self.directory = os.path.abspath(directory)
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.directory, sub), exist_ok=True)
        self.host = host
        self.hostname = hostname
        self.tls: ReceiverTLS = tls
        self.caCertificate: Certificate | None = None
        if tls != "none" and certificate is None:
            self.caCertificate, certificate = generateCertificates(hostname)
        self.certificate = certificate if tls != "none" else None
        self.credentials: dict[str, str] = dict(credentials or {})
        self.port: int | None = None
        self.deliveries: list[Delivery] = []
        self.sessionCount = 0
        self._listening: IListeningPort | None = None
        self._sessions: set[_ReceiverESMTP] = set()
        self._counter = itertools.count(1)
        checker = InMemoryUsernamePasswordDatabaseDontUse(
            **{
                user: password.encode("utf-8")
                for user, password in self.credentials.items()
            }
        )
        self._portal = Portal(_Realm(self), [checker, AllowAnonymousAccess()])

    @property
    def newDirectory(self) -> str:
        """
        The C{new/} folder, where delivered messages appear.
        """
        return os.path.join(self.directory, "new")

    def start(self, reactor: IReactorTCP) -> Deferred[int]:
        """
        Start listening on L{host} on a port the system picks.

        @param reactor: the reactor to listen with.
        @return: a Deferred that fires with the port number.
        """
        return Deferred.fromCoroutine(self._listen(reactor))

    async def _listen(self, reactor: IReactorTCP) -> int:
        """
        Listen, and remember the port.

        @param reactor: the reactor to listen with.
        @return: the port number.
        """
        factory: IProtocolFactory = _ReceiverFactory(self)
        if self.tls == "implicit":
            assert self.certificate is not None
            factory = TLSMemoryBIOFactory(self.certificate.options(), False, factory)
        endpoint = TCP4ServerEndpoint(reactor, 0, interface=self.host)
        listening = await endpoint.listen(factory)
        port: int = listening.getHost().port  # type: ignore[attr-defined]
        self._listening = listening
        self.port = port
        return port

    def stop(self) -> Deferred[None]:
        """
        Stop listening and drop every open session.

        @return: a Deferred that fires when the port is closed and every
            session has ended.
        """
        waits: list[Deferred[Any]] = []
        if self._listening is not None:
            port, self._listening = self._listening, None
            stopped = port.stopListening()
            if stopped is not None:
                waits.append(stopped)
        for session in list(self._sessions):
            waits.append(session.lost)
            # A TCP transport, or the TLS protocol over one: both can abort.
            cast(ITCPTransport, session.transport).abortConnection()
        self.port = None
        return defer.gatherResults(waits).addCallback(lambda _: None)

    def _writeMessage(self, data: bytes) -> str:
        """
        Write one message into C{tmp/}, then move it into C{new/}.

        @param data: the message.
        @return: the path of the file in C{new/}.
        """
        seconds, micro = divmod(time.time_ns() // 1000, 1_000_000)
        unique = f"M{micro}P{os.getpid()}Q{next(self._counter)}"
        name = f"{seconds}.{unique}.{self.hostname}"
        temporary = os.path.join(self.directory, "tmp", name)
        final = os.path.join(self.directory, "new", name)
        with open(temporary, "wb") as f:
            f.write(data)
        os.replace(temporary, final)
        return final


def buildDemoMessage() -> EmailMessage:
    """
    Build the demo's message: a text body (with a line that starts with a
    dot, which SMTP must escape) and a generated CSV attachment.

    @return: the message.
    """
    message = EmailMessage()
    message["From"] = f"mailclient demo <{DEMO_SENDER}>"
    message["To"] = ", ".join(DEMO_RECIPIENTS)
    message["Subject"] = "Weekly delivery report"
    message["Message-ID"] = "<demo.weekly-report@mailclient.example>"
    message.set_content(
        "Hello,\n"
        "\n"
        "the delivery report for this week is attached as a CSV file.\n"
        ".This line starts with a dot: SMTP escapes it in transit and the\n"
        "receiver must get it back unchanged.\n"
        "\n"
        "-- \n"
        "mailclient demo\n"
    )
    table = io.StringIO()
    writer = csv.writer(table, lineterminator="\n")
    writer.writerow(["day", "messages", "accepted", "deferred", "rejected"])
    for day, (sent, deferred, rejected) in zip(
        ("Mon", "Tue", "Wed", "Thu", "Fri"),
        ((120, 3, 1), (98, 0, 2), (143, 5, 0), (110, 1, 1), (87, 2, 3)),
        strict=True,
    ):
        writer.writerow([day, sent, sent - deferred - rejected, deferred, rejected])
    message.add_attachment(table.getvalue(), subtype="csv", filename="report.csv")
    return message


def _wireBytes(message: EmailMessage) -> bytes:
    """
    The bytes of C{message} as they go on the wire: CRLF line ends.

    Flattening also fixes the multipart boundary in the message, so every
    later flattening (mailclient's included) gives the same bytes.
    """
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def _show(value: object) -> str:
    """
    C{value} for a table cell: C{"-"} for L{None}.
    """
    return "-" if value is None else str(value)


def _report(result: SendResult, out: Callable[[str], None]) -> None:
    """
    Print every recipient's result and the final reply.
    """
    width = max(len(address) for address in result.recipients)
    out("recipients")
    for r in result:
        out(
            f"  {r.address:<{width}}  {r.status:<13}  {_show(r.code):<3}  "
            f"{_show(r.enhancedStatus):<5}  {r.text}  [{r.phase}]"
        )
    out("")
    reply = result.reply
    if reply is None:
        out("final reply  - (no message data was sent)")
    else:
        out(f"final reply  {reply}")
    if result.queueId is not None:
        out(f"queue id     {result.queueId}")


async def _run(reactor: Any, directory: str | None) -> int:
    """
    Start the receiver, send the demo message, report, and stop.

    @return: the exit status.
    """
    out = print
    receiver = LoopbackReceiver(
        directory or tempfile.mkdtemp(prefix="mailclient-demo-")
    )
    port = await receiver.start(reactor)
    try:
        message = buildDemoMessage()
        expected = _wireBytes(message)
        out(f"mailclient {mailclient.__version__} demo")
        out(
            f"  receiver   twisted.mail.smtp.ESMTP on {receiver.host}:{port} "
            "(refuses reject@ with 550 5.1.1, tempfail@ with 450 4.2.1)"
        )
        out(f"  maildir    {receiver.directory}")
        out(
            f"  message    {message['Subject']!r}: text body + report.csv "
            f"({len(expected)} octets)"
        )
        out(
            f'  sending    sendmail("{receiver.host}", "{DEMO_SENDER}", '
            f'[{len(DEMO_RECIPIENTS)} recipients], message, port={port}, tls="none")'
        )
        out("")
        result: SendResult | None
        try:
            result = await mailclient.sendmail(
                receiver.host,
                DEMO_SENDER,
                DEMO_RECIPIENTS,
                message,
                port=port,
                tls="none",
                timeout=30,
                reactor=reactor,
            )
        except errors.MailClientError as e:
            out(f"send failed: {type(e).__name__}: {e}")
            result = e.result
        if result is not None:
            _report(result, out)
            out("")
            out("transcript")
            for direction, line in result.transcript:
                out(f"  {direction}: {line}")
            out("")
        out("delivered")
        for delivery in receiver.deliveries:
            out(f"  {delivery.recipient} -> {delivery.path}")
        if not receiver.deliveries:
            out("  nothing")
        ok = [d for d in receiver.deliveries if d.recipient == _OK_RECIPIENT]
        identical = len(ok) == 1 and ok[0].read() == expected
        accepted = result is not None and result.accepted == (_OK_RECIPIENT,)
        out(f"  identical to the message sent: {'yes' if identical else 'NO'}")
        out("")
        if identical and accepted:
            out(f"OK: {_OK_RECIPIENT} got the message; the other two were refused.")
            return 0
        out(f"FAILED: {_OK_RECIPIENT} did not get the message intact.")
        return 1
    finally:
        await receiver.stop()


def main(argv: Sequence[str] | None = None) -> None:
    """
    Run the demo under C{twisted.internet.task.react}; exits the process.

    @param argv: the command-line arguments (default: C{sys.argv[1:]}).
    """
    parser = argparse.ArgumentParser(
        prog="python -m mailclient.demo",
        description=(
            "Send a message with mailclient to an embedded Twisted SMTP "
            "receiver on 127.0.0.1 and show what happened to every recipient."
        ),
    )
    parser.add_argument(
        "--directory",
        metavar="DIR",
        help="where the receiver stores messages (default: a new temporary "
        "directory, which is kept)",
    )
    arguments = parser.parse_args(argv)

    from twisted.internet.task import react

    async def demo(reactor: Any) -> None:
        status = await _run(reactor, arguments.directory)
        if status:
            raise SystemExit(status)

    react(lambda reactor: Deferred.fromCoroutine(demo(reactor)))


if __name__ == "__main__":
    main(sys.argv[1:])
