"""
Tests for the public side of L{mailclient.testing}: the outbox, the scripting
shortcuts, AUTH, STARTTLS in memory, and the server with the code a user
would test (L{mailclient.sendmail}).  Everything runs on a fake clock; the
real-socket tests are in C{test_testing_tcp.py}.
"""

from __future__ import annotations

import base64
from email.message import EmailMessage
from typing import Any

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mailclient import SendResult, sendmail
from mailclient.demo import generateCertificates
from mailclient.errors import (
    AuthenticationFailedError,
    ConnectionLostError,
    MessageRefusedError,
    SenderRefusedError,
    TLSHandshakeError,
)
from mailclient.testing import (
    DEFAULT_CAPABILITIES,
    Delivery,
    MemoryEndpoint,
    MemoryTransport,
    Outbox,
    Rule,
    ScriptedServer,
    runFor,
    settle,
)
from tests.helpers import Outcome
from tests.test_scripted import (
    OneProtocol,
    Pieces,
    RawClient,
    rawSession,
    transportPair,
)

SENDER = "app@example.com"
MESSAGE = (
    b"From: app@example.com\r\n"
    b"To: dev@example.com\r\n"
    b"Subject: build done\r\n"
    b"\r\n"
    b"All green.\r\n"
)
USER = "alice"
PASSWORD = "s3cret-Pa55"


def b64(data: bytes) -> bytes:
    """
    C{data} in base64, as a SASL response is sent.
    """
    return base64.b64encode(data)


PLAIN = b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())


@pytest.fixture
def clock() -> Clock:
    """
    A fresh fake clock.
    """
    return Clock()


@pytest.fixture
def server(clock: Clock) -> ScriptedServer:
    """
    A server with the default settings.
    """
    return ScriptedServer(clock)


@pytest.fixture
def authServer(clock: Clock) -> ScriptedServer:
    """
    A server that offers AUTH PLAIN and LOGIN for C{alice}.
    """
    return ScriptedServer(clock, credentials={USER: PASSWORD})


@pytest.fixture(scope="module")
def certificates() -> tuple[Certificate, PrivateCertificate]:
    """
    A throwaway CA and a server certificate for C{mx.test} it signed.
    """
    return generateCertificates("mx.test")


def send(
    clock: Clock,
    server: ScriptedServer,
    recipients: list[str],
    message: bytes = MESSAGE,
    **options: Any,
) -> Outcome[SendResult]:
    """
    Send C{message} with L{sendmail} through a L{MemoryEndpoint} to
    C{server}, as a user's code would, and run the clock until the session
    is over.
    """
    options.setdefault("retries", 0)
    outcome = Outcome(
        sendmail(
            None,
            SENDER,
            recipients,
            message,
            endpoint=MemoryEndpoint(clock, server),
            reactor=clock,
            **options,
        )
    )
    settle(clock)
    return outcome


def session(server: ScriptedServer, clock: Clock, *lines: bytes) -> list[bytes]:
    """
    The reply lines to C{lines}, sent one at a time on a new raw connection
    after EHLO (the greeting and the EHLO reply left out).
    """
    raw, _ = rawSession(clock, server, b"EHLO client.test")
    replies: list[bytes] = []
    for line in lines:
        raw.say(line)
        settle(clock)
        replies.extend(raw.take())
    return replies


def delivery(data: bytes, *recipients: str) -> Delivery:
    """
    A delivery of C{data} to C{recipients}.
    """
    return Delivery(1, 1, SENDER, recipients, data)


# -- the outbox --------------------------------------------------------------------


class TestOutbox:
    """
    L{ScriptedServer.outbox}, L{Outbox} and L{Delivery.message}.
    """

    def test_outboxIsTheDeliveries(self, clock: Clock, server: ScriptedServer) -> None:
        """
        The outbox and C{deliveries} are one L{Outbox}, a list that gets a
        L{Delivery} per accepted message.
        """
        assert server.outbox is server.deliveries
        assert isinstance(server.outbox, Outbox)
        assert server.outbox == []
        send(clock, server, ["dev@example.com"]).value()
        assert len(server.deliveries) == 1
        assert server.outbox[0].recipients == ("dev@example.com",)
        assert server.outbox[0].sender == SENDER
        assert server.outbox[0].data == MESSAGE

    def test_to(self) -> None:
        """
        C{to(address)} lists the deliveries with C{address} among their
        recipients, in order, whatever the case of either.
        """
        first = delivery(b"1", "Dev@Example.com", "ops@example.com")
        second = delivery(b"2", "ops@example.com")
        third = delivery(b"3", "dev@example.COM")
        outbox = Outbox([first, second, third])
        assert outbox.to("dev@example.com") == [first, third]
        assert outbox.to("OPS@example.com") == [first, second]
        assert outbox.to("nobody@example.com") == []

    def test_messages(self) -> None:
        """
        C{messages()} parses every delivery into an C{EmailMessage}, in
        order.
        """
        outbox = Outbox(
            [delivery(MESSAGE, "a@x.test"), delivery(b"Subject: two\r\n\r\n2\r\n")]
        )
        messages = outbox.messages()
        assert [type(m) for m in messages] == [EmailMessage, EmailMessage]
        assert [m["Subject"] for m in messages] == ["build done", "two"]

    def test_clear(self, clock: Clock, server: ScriptedServer) -> None:
        """
        Clearing the outbox forgets what was delivered so far; later
        deliveries go into the same outbox.
        """
        send(clock, server, ["dev@example.com"]).value()
        outbox = server.outbox
        outbox.clear()
        assert server.deliveries == []
        send(clock, server, ["ops@example.com"]).value()
        assert server.outbox is outbox
        assert [d.recipients for d in outbox] == [("ops@example.com",)]

    def test_deliveryMessage(self) -> None:
        """
        L{Delivery.message} parses the data with the default policy:
        encoded headers come back decoded, and the body is readable.
        """
        data = (
            b"Subject: =?utf-8?q?caf=C3=A9?=\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n"
            b"\r\n"
            b"na=C3=AFve\r\n"
        )
        message = delivery(data, "a@x.test").message
        assert isinstance(message, EmailMessage)
        assert message["Subject"] == "café"
        body = message.get_body()
        assert body is not None
        assert isinstance(body, EmailMessage)
        assert body.get_content().strip() == "naïve"

    def test_deliveryRecordsAuthAndTLS(self) -> None:
        """
        A L{Delivery} made without them has no authenticated user and did
        not come over TLS.
        """
        d = delivery(b"x", "a@x.test")
        assert d.authenticatedAs is None
        assert d.tls is False


# -- scripting shortcuts -----------------------------------------------------------


class TestShortcuts:
    """
    L{ScriptedServer.rejectRecipient} and the other shortcuts over
    L{ScriptedServer.rule}.
    """

    def test_rejectRecipient(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{rejectRecipient} refuses that address, whatever its case, with
        C{550 5.1.1 mailbox unavailable}, and no other address (not even
        one that ends with it); the rule counts how often it fired.
        """
        rule = server.rejectRecipient("bob@example.com")
        assert isinstance(rule, Rule)
        replies = session(
            server,
            clock,
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<BOB@example.com>",
            b"RCPT TO:<jimbob@example.com>",
            b"RCPT TO:<bob@example.com.evil>",
        )
        assert replies == [
            b"250 2.1.0 Ok",
            b"550 5.1.1 mailbox unavailable",
            b"250 2.1.5 Ok",
            b"250 2.1.5 Ok",
        ]
        assert rule.fired == 1

    def test_rejectRecipientWithSendmail(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        Code that sends to a rejected and an accepted recipient sees the
        rejection in its result, and only the accepted recipient is in the
        outbox.
        """
        server.rejectRecipient("gone@example.com", text="no such user")
        result = send(clock, server, ["dev@example.com", "gone@example.com"]).value()
        gone = result.recipients["gone@example.com"]
        assert (gone.status, gone.code, gone.text) == ("rejected", 550, "no such user")
        assert gone.enhancedStatus == "5.1.1"
        assert result.accepted == ("dev@example.com",)
        assert [d.recipients for d in server.outbox] == [("dev@example.com",)]

    def test_enhancedCodeOnlyWhenAdvertised(self, clock: Clock) -> None:
        """
        Without ENHANCEDSTATUSCODES the shortcut's reply has no enhanced
        code; the choice is made when the reply is sent, so a later change
        of the capabilities counts.
        """
        server = ScriptedServer(
            clock,
            capabilities=[c for c in DEFAULT_CAPABILITIES if b"ENHANCED" not in c],
        )
        server.rejectRecipient("bob@example.com", code=553, text="not here")
        lines = (b"MAIL FROM:<a@x.test>", b"RCPT TO:<bob@example.com>")
        assert session(server, clock, *lines)[1] == b"553 not here"
        server.capabilities.append(b"ENHANCEDSTATUSCODES")
        assert session(server, clock, *lines)[1] == b"553 5.1.1 not here"

    def test_deferRecipientOnce(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{deferRecipient(..., times=1)} answers C{450 4.2.1 try again later}
        once; the next attempt is accepted.
        """
        server.deferRecipient("later@example.com", times=1)
        first = send(clock, server, ["dev@example.com", "later@example.com"]).value()
        assert first.recipients["later@example.com"].status == "deferred"
        assert first.recipients["later@example.com"].code == 450
        assert first.recipients["later@example.com"].text == "try again later"
        second = send(clock, server, ["later@example.com"]).value()
        assert second.accepted == ("later@example.com",)
        assert [d.recipients for d in server.outbox] == [
            ("dev@example.com",),
            ("later@example.com",),
        ]

    def test_rejectSender(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{rejectSender} refuses that reverse-path at MAIL (C{550 5.7.1
        sender rejected}); C{""} is the null sender.
        """
        server.rejectSender(SENDER)
        server.rejectSender("", code=553, enhanced="5.1.7", text="no bounces")
        error = send(clock, server, ["dev@example.com"]).error(SenderRefusedError)
        assert error.code == 550
        assert session(server, clock, b"MAIL FROM:<>") == [b"553 5.1.7 no bounces"]
        assert session(server, clock, b"MAIL FROM:<other@x.test>") == [b"250 2.1.0 Ok"]
        assert server.outbox == []

    def test_rejectMessage(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{rejectMessage} refuses the message after its data (C{554 5.6.0
        message rejected}) and nothing is delivered; with C{match}, only a
        message that contains it.
        """
        server.rejectMessage(match="Subject: SPAM")
        error = send(
            clock, server, ["dev@example.com"], b"Subject: spam\r\n\r\nbuy\r\n"
        ).error(MessageRefusedError)
        assert error.code == 554
        assert server.outbox == []
        send(clock, server, ["dev@example.com"]).value()
        assert len(server.outbox) == 1

    def test_rejectMessageTransient(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{rejectMessage} with a 4xx code is a transient refusal.
        """
        server.rejectMessage(code=451, enhanced="4.3.0", text="try later")
        error = send(clock, server, ["dev@example.com"]).error(MessageRefusedError)
        assert (error.code, error.isTransient) == (451, True)
        assert error.reply.enhancedStatusText == "4.3.0"
        assert server.outbox == []

    def test_refusalCodes(self, server: ScriptedServer) -> None:
        """
        The refusal shortcuts take only 4xx and 5xx codes, and a reply is
        given as C{reply} or as C{status}, not both.
        """
        with pytest.raises(ValueError, match="4xx or 5xx"):
            server.rejectRecipient("a@x.test", code=250)
        with pytest.raises(ValueError, match="4xx or 5xx"):
            server.rejectMessage(code=600)
        with pytest.raises(ValueError, match="not both"):
            server.rule("RCPT", reply=b"550 no", status=(550, "5.1.1", "no"))
        with pytest.raises(ValueError, match="drop sends nothing"):
            server.rule("RCPT", drop=True, status=(550, "5.1.1", "no"))
        with pytest.raises(ValueError, match="CONNECT"):
            server.rule("CONNECT", status=(550, "5.1.1", "no"))
        with pytest.raises(ValueError, match="not an SMTP reply"):
            server.rule("RCPT", status=(55, "5.1.1", "no"))
        assert server.rules == []

    def test_delayReply(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{delayReply} holds the reply for that many seconds of the clock.
        """
        server.delayReply("GREETING", 5)
        raw = RawClient()
        Outcome(MemoryEndpoint(clock, server).connect(OneProtocol(raw)))
        settle(clock)
        assert raw.take() == []
        runFor(clock, 4.9)
        assert raw.take() == []
        runFor(clock, 0.1)
        assert raw.take() == [b"220 mx.test ESMTP"]

    def test_delayedSendTakesThatLong(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        A send whose DATA reply is delayed finishes only when the clock
        has moved that far.
        """
        server.delayReply("END-OF-DATA", 30)
        outcome = send(clock, server, ["dev@example.com"])
        assert not outcome.called
        runFor(clock, 30)
        assert outcome.value().accepted == ("dev@example.com",)

    def test_disconnectBefore(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{disconnectBefore} reads the command and hangs up without
        answering it; the server is recorded as the closing side.
        """
        server.disconnectBefore("DATA")
        raw, _ = rawSession(
            clock,
            server,
            b"EHLO c.test",
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<b@x.test>",
            b"DATA",
        )
        assert raw.lost is not None
        record = server.connections[0]
        assert record.closedBy == "server"
        assert record.verbs()[-1] == "DATA"
        assert raw.received.endswith(b"250 2.1.5 Ok\r\n")

    def test_disconnectBeforeEndOfData(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        C{disconnectBefore("END-OF-DATA")} hangs up once the message is
        complete, before its reply: nothing is delivered, and the sender
        learns that the connection was lost.
        """
        server.disconnectBefore("END-OF-DATA")
        send(clock, server, ["dev@example.com"]).error(ConnectionLostError)
        assert server.outbox == []

    def test_disconnectBeforeWithAbort(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        With C{abort=True} the connection is reset rather than closed.
        """
        server.disconnectBefore("MAIL", abort=True)
        raw, _ = rawSession(clock, server, b"EHLO c.test", b"MAIL FROM:<a@x.test>")
        assert raw.lost is not None
        assert raw.lost.check(ConnectionLost)

    def test_disconnectAfter(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{disconnectAfter("END-OF-DATA")} delivers and acknowledges the
        message, then hangs up.
        """
        server.disconnectAfter("END-OF-DATA", times=1)
        result = send(clock, server, ["dev@example.com"]).value()
        assert result.accepted == ("dev@example.com",)
        assert len(server.outbox) == 1
        record = server.connections[0]
        assert record.closedBy == "server"
        assert "QUIT" not in record.verbs()

    def test_disconnectAfterReply(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{disconnectAfter} sends the usual reply first.
        """
        server.disconnectAfter("NOOP")
        raw, lines = rawSession(clock, server, b"NOOP")
        assert lines[-1] == b"250 2.0.0 Ok"
        assert raw.lost is not None


# -- AUTH ---------------------------------------------------------------------------


class TestAuth:
    """
    AUTH PLAIN and LOGIN (RFC 4954, 4616) with C{credentials}, and
    C{requireAuth}.
    """

    def test_advertised(self, clock: Clock) -> None:
        """
        With credentials the EHLO reply ends with the offered mechanisms;
        without them there is no AUTH; an AUTH listed in C{capabilities}
        is not repeated.
        """

        def ehlo(server: ScriptedServer) -> list[bytes]:
            return rawSession(clock, server, b"EHLO c.test")[1][1:]

        assert b"AUTH" not in b"".join(ehlo(ScriptedServer(clock)))
        offered = ehlo(ScriptedServer(clock, credentials={USER: PASSWORD}))
        assert offered[-1] == b"250 AUTH PLAIN LOGIN"
        login = ScriptedServer(clock, credentials={}, authMechanisms=["login"])
        assert ehlo(login)[-1] == b"250 AUTH LOGIN"
        listed = ScriptedServer(
            clock, credentials={}, capabilities=[b"AUTH LOGIN PLAIN", b"PIPELINING"]
        )
        assert ehlo(listed)[1:] == [b"250-AUTH LOGIN PLAIN", b"250 PIPELINING"]

    def test_badSettings(self, clock: Clock) -> None:
        """
        Only PLAIN and LOGIN can be offered, at least one of them, and
        C{requireAuth} needs credentials.
        """
        with pytest.raises(ValueError, match="authMechanisms"):
            ScriptedServer(clock, credentials={}, authMechanisms=("CRAM-MD5",))
        with pytest.raises(ValueError, match="authMechanisms"):
            ScriptedServer(clock, credentials={}, authMechanisms=())
        with pytest.raises(ValueError, match="requireAuth"):
            ScriptedServer(clock, requireAuth=True)

    def test_plainWithInitialResponse(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        AUTH PLAIN with the credentials in the command succeeds with
        C{235 2.7.0}; the user is recorded on the connection and on what
        it delivers.
        """
        replies = session(
            authServer,
            clock,
            b"AUTH PLAIN " + PLAIN,
            b"MAIL FROM:<a@x.test>",
            b"RCPT TO:<b@x.test>",
            b"DATA",
            b"Subject: x\r\n\r\nhi\r\n.",
        )
        assert replies[0] == b"235 2.7.0 Authentication successful"
        assert replies[-1].startswith(b"250 2.0.0 Ok")
        assert authServer.connections[0].authenticatedAs == USER
        assert authServer.outbox[0].authenticatedAs == USER

    def test_plainWithAuthorizationIdentity(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        An authorization identity equal to the user is accepted; another
        one is refused with C{535 5.7.8}.
        """
        same = b64(b"alice\0alice\0" + PASSWORD.encode())
        other = b64(b"root\0alice\0" + PASSWORD.encode())
        assert session(authServer, clock, b"AUTH PLAIN " + other) == [
            b"535 5.7.8 Authentication credentials invalid"
        ]
        assert session(authServer, clock, b"AUTH PLAIN " + same) == [
            b"235 2.7.0 Authentication successful"
        ]

    def test_plainWithoutInitialResponse(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        AUTH PLAIN alone gets an empty C{334} challenge; the credentials
        follow on their own line.
        """
        replies = session(authServer, clock, b"AUTH PLAIN", PLAIN)
        assert replies == [b"334 ", b"235 2.7.0 Authentication successful"]
        assert authServer.connections[0].authenticatedAs == USER

    def test_emptyInitialResponse(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        C{=} is an empty initial response, which PLAIN cannot accept.
        """
        assert session(authServer, clock, b"AUTH PLAIN =") == [
            b"535 5.7.8 Authentication credentials invalid"
        ]

    def test_login(self, clock: Clock, authServer: ScriptedServer) -> None:
        """
        AUTH LOGIN asks for the user name, then the password (each
        challenge in base64), then succeeds.
        """
        replies = session(
            authServer,
            clock,
            b"AUTH LOGIN",
            b64(USER.encode()),
            b64(PASSWORD.encode()),
        )
        assert replies == [
            b"334 " + b64(b"Username:"),
            b"334 " + b64(b"Password:"),
            b"235 2.7.0 Authentication successful",
        ]
        assert authServer.connections[0].authenticatedAs == USER

    def test_loginWithInitialResponse(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        AUTH LOGIN with the user name in the command (as Python's smtplib
        sends it) asks for the password only.
        """
        replies = session(
            authServer,
            clock,
            b"auth login " + b64(USER.encode()),
            b64(PASSWORD.encode()),
        )
        assert replies == [
            b"334 " + b64(b"Password:"),
            b"235 2.7.0 Authentication successful",
        ]

    @pytest.mark.parametrize("mechanism", [b"PLAIN", b"LOGIN"])
    def test_cancel(
        self, clock: Clock, authServer: ScriptedServer, mechanism: bytes
    ) -> None:
        """
        C{*} in answer to a challenge cancels the exchange with C{501}; the
        client is not authenticated and may try again.
        """
        replies = session(
            authServer, clock, b"AUTH " + mechanism, b"*", b"AUTH PLAIN " + PLAIN
        )
        assert replies[1:] == [
            b"501 5.7.0 Authentication cancelled",
            b"235 2.7.0 Authentication successful",
        ]

    def test_cancelLeavesUnauthenticated(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        After a cancelled exchange nobody is authenticated.
        """
        session(authServer, clock, b"AUTH LOGIN", b64(USER.encode()), b"*")
        assert authServer.connections[0].authenticatedAs is None

    @pytest.mark.parametrize(
        "lines",
        [
            [b"AUTH PLAIN " + b64(b"\0alice\0wrong")],
            [b"AUTH PLAIN " + b64(b"\0mallory\0" + PASSWORD.encode())],
            [b"AUTH PLAIN " + b64(b"alice:" + PASSWORD.encode())],
            [b"AUTH LOGIN", b64(USER.encode()), b64(b"wrong")],
            [b"AUTH LOGIN " + b64(b"Alice"), b64(PASSWORD.encode())],
        ],
    )
    def test_wrongCredentials(
        self, clock: Clock, authServer: ScriptedServer, lines: list[bytes]
    ) -> None:
        """
        A wrong password, an unknown (or differently cased) user, or a
        malformed PLAIN message is refused with C{535 5.7.8}.
        """
        replies = session(authServer, clock, *lines)
        assert replies[-1] == b"535 5.7.8 Authentication credentials invalid"
        assert authServer.connections[0].authenticatedAs is None

    def test_notBase64(self, clock: Clock, authServer: ScriptedServer) -> None:
        """
        A response that is not base64 ends the exchange with C{501 5.5.2},
        in the command or on its own line.
        """
        assert session(authServer, clock, b"AUTH PLAIN %%%") == [
            b"501 5.5.2 Cannot decode response"
        ]
        assert session(authServer, clock, b"AUTH LOGIN", b"not base64!") == [
            b"334 " + b64(b"Username:"),
            b"501 5.5.2 Cannot decode response",
        ]

    def test_sequenceErrors(self, clock: Clock, authServer: ScriptedServer) -> None:
        """
        AUTH is refused before EHLO, during a mail transaction and once
        authenticated (503); an unknown mechanism gets 504, a missing one
        501.
        """
        _, lines = rawSession(clock, authServer, b"AUTH PLAIN " + PLAIN)
        assert lines[-1] == b"503 5.5.1 Send EHLO first"
        assert session(authServer, clock, b"AUTH CRAM-MD5", b"AUTH") == [
            b"504 5.5.4 Unrecognized authentication type",
            b"501 5.5.4 Syntax: AUTH mechanism [initial-response]",
        ]
        assert session(
            authServer, clock, b"MAIL FROM:<a@x.test>", b"AUTH PLAIN " + PLAIN
        )[-1] == (b"503 5.5.1 AUTH not allowed during a mail transaction")
        assert session(
            authServer, clock, b"AUTH PLAIN " + PLAIN, b"AUTH PLAIN " + PLAIN
        )[-1] == (b"503 5.5.1 Already authenticated")

    def test_loginOnlyOffered(self, clock: Clock) -> None:
        """
        A mechanism that is not offered is refused with 504.
        """
        server = ScriptedServer(
            clock, credentials={USER: PASSWORD}, authMechanisms=("LOGIN",)
        )
        assert session(server, clock, b"AUTH PLAIN " + PLAIN) == [
            b"504 5.5.4 Unrecognized authentication type"
        ]

    def test_noCredentialsNoAuth(self, clock: Clock, server: ScriptedServer) -> None:
        """
        Without credentials AUTH is not implemented (502).
        """
        assert session(server, clock, b"AUTH PLAIN " + PLAIN) == [
            b"502 5.5.1 Command not implemented"
        ]

    def test_requireAuth(self, clock: Clock) -> None:
        """
        With C{requireAuth}, MAIL gets C{530 5.7.0 Authentication required}
        until the client authenticated.
        """
        server = ScriptedServer(clock, credentials={USER: PASSWORD}, requireAuth=True)
        assert session(
            server,
            clock,
            b"MAIL FROM:<a@x.test>",
            b"AUTH PLAIN " + PLAIN,
            b"MAIL FROM:<a@x.test>",
        ) == [
            b"530 5.7.0 Authentication required",
            b"235 2.7.0 Authentication successful",
            b"250 2.1.0 Ok",
        ]

    def test_redacted(self, clock: Clock, authServer: ScriptedServer) -> None:
        """
        No credential is recorded: the AUTH command's initial response and
        every line of the exchange read C{****} (a cancelling C{*} is kept),
        and neither the password nor its base64 is anywhere in the record.
        """
        session(
            authServer,
            clock,
            b"AUTH PLAIN " + b64(b"\0alice\0wrong"),
            b"AUTH LOGIN",
            b"*",
            b"AUTH LOGIN " + b64(USER.encode()),
            b64(PASSWORD.encode()),
        )
        record = authServer.connections[0]
        assert record.commands == [
            "EHLO client.test",
            "AUTH PLAIN ****",
            "AUTH LOGIN",
            "*",
            "AUTH LOGIN ****",
            "****",
        ]
        seen = repr(record) + repr(authServer.connections)
        for secret in (PASSWORD, b64(PASSWORD.encode()).decode(), "wrong"):
            assert secret not in seen

    def test_ruleOnAuth(self, clock: Clock, authServer: ScriptedServer) -> None:
        """
        A rule can refuse AUTH, for instance with a transient failure.
        """
        authServer.rule(
            "AUTH", reply=b"454 4.7.0 Temporary authentication failure", times=1
        )
        assert session(
            authServer, clock, b"AUTH PLAIN " + PLAIN, b"AUTH PLAIN " + PLAIN
        ) == [
            b"454 4.7.0 Temporary authentication failure",
            b"235 2.7.0 Authentication successful",
        ]

    def test_sendmailAuthenticates(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        L{sendmail} with a user name and password authenticates (plaintext
        allowed, in memory) and the delivery records the user.
        """
        result = send(
            clock,
            authServer,
            ["dev@example.com"],
            username=USER,
            password=PASSWORD,
            tls="none",
            allowPlaintextAuth=True,
        ).value()
        assert result.session is not None
        assert result.session.authMechanism in ("PLAIN", "LOGIN")
        assert authServer.outbox[0].authenticatedAs == USER

    def test_sendmailWrongPassword(
        self, clock: Clock, authServer: ScriptedServer
    ) -> None:
        """
        L{sendmail} with a wrong password fails with
        L{AuthenticationFailedError} (535) and delivers nothing.
        """
        error = send(
            clock,
            authServer,
            ["dev@example.com"],
            username=USER,
            password="nope",
            tls="none",
            allowPlaintextAuth=True,
        ).error(AuthenticationFailedError)
        assert error.code == 535
        assert authServer.outbox == []


# -- STARTTLS in memory -------------------------------------------------------------


class TestStartTLS:
    """
    STARTTLS with C{tlsOptions}, over L{MemoryTransport}s.
    """

    def tlsServer(
        self,
        clock: Clock,
        certificates: tuple[Certificate, PrivateCertificate],
        **options: Any,
    ) -> ScriptedServer:
        """
        A server that offers STARTTLS with the C{mx.test} certificate.
        """
        return ScriptedServer(clock, tlsOptions=certificates[1].options(), **options)

    def test_sendmailOverTLS(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        L{sendmail} upgrades with STARTTLS in memory, verifies the
        certificate, authenticates over TLS, and the capabilities are
        advertised again (without STARTTLS); the connection and the
        delivery are recorded as TLS.
        """
        ca, _ = certificates
        server = self.tlsServer(clock, certificates, credentials={USER: PASSWORD})
        result = send(
            clock,
            server,
            ["dev@example.com"],
            username=USER,
            password=PASSWORD,
            tlsOptions=optionsForClientTLS("mx.test", trustRoot=ca),
        ).value()
        assert result.session is not None
        assert (result.session.tlsVersion or "").startswith("TLSv1.")
        assert not result.session.capabilities.starttls
        record = server.connections[0]
        assert record.tls
        assert record.verbs()[:4] == ["EHLO", "STARTTLS", "EHLO", "AUTH"]
        assert record.authenticatedAs == USER
        assert record.closedBy == "client-quit"
        assert [(d.tls, d.authenticatedAs) for d in server.outbox] == [(True, USER)]
        assert clock.getDelayedCalls() == []

    def test_largeMessageOverTLS(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        A message of several megabytes goes through TLS in memory, paced
        by the clock, and arrives intact.
        """
        ca, _ = certificates
        server = self.tlsServer(clock, certificates)
        message = b"Subject: big\r\n\r\n" + (b"y" * 76 + b"\r\n") * 40_000
        result = send(
            clock,
            server,
            ["dev@example.com"],
            message,
            tls="starttls",
            tlsOptions=optionsForClientTLS("mx.test", trustRoot=ca),
        ).value()
        assert result.accepted == ("dev@example.com",)
        assert server.outbox[0].data == message

    def test_untrustedCertificate(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        A client that does not trust the server's certificate fails the
        handshake; nothing is delivered.
        """
        otherCa, _ = generateCertificates("mx.test")
        server = self.tlsServer(clock, certificates)
        send(
            clock,
            server,
            ["dev@example.com"],
            tls="starttls",
            tlsOptions=optionsForClientTLS("mx.test", trustRoot=otherCa),
        ).error(TLSHandshakeError)
        assert server.outbox == []
        assert server.connections[0].tls
        assert not server.connections[0].isOpen

    def test_rawSession(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        Bytes sent after STARTTLS, before the reply, are dropped (never
        read as commands); after the handshake the session starts over:
        EHLO again, without STARTTLS, which is refused now.
        """
        ca, _ = certificates
        server = self.tlsServer(clock, certificates)
        raw, lines = rawSession(clock, server, b"EHLO c.test", b"MAIL FROM:<a@x.test>")
        assert b"250 STARTTLS" in lines
        raw.say(b"STARTTLS", b"RCPT TO:<injected@x.test>")
        settle(clock)
        assert raw.take() == [b"220 2.0.0 Ready to start TLS"]
        transport = raw.transport
        assert isinstance(transport, MemoryTransport)
        assert transport.getHandle() is None
        assert transport.getPeerCertificate() is None
        transport.startTLS(optionsForClientTLS("mx.test", trustRoot=ca))
        assert transport.tls
        raw.say(b"RCPT TO:<b@x.test>", b"EHLO c.test", b"STARTTLS")
        settle(clock)
        assert raw.take() == [
            b"503 5.5.1 Need MAIL before RCPT",
            b"250-mx.test",
            *[b"250-" + c for c in DEFAULT_CAPABILITIES[:-1]],
            b"250 " + DEFAULT_CAPABILITIES[-1],
            b"503 5.5.1 TLS already active",
        ]
        assert transport.getHandle() is not None
        assert transport.getPeerCertificate() is not None
        commands = server.connections[0].commands
        assert "RCPT TO:<injected@x.test>" not in commands
        with pytest.raises(RuntimeError, match="already"):
            transport.startTLS(optionsForClientTLS("mx.test", trustRoot=ca))
        raw.say(b"QUIT")
        settle(clock)
        assert raw.take() == [b"221 2.0.0 Bye"]
        assert raw.lost is not None
        assert server.connections[0].closedBy == "client-quit"

    def test_starttlsSyntax(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        STARTTLS takes no argument (501); without C{tlsOptions} it is not
        implemented (502) and not advertised.
        """
        server = self.tlsServer(clock, certificates)
        assert session(server, clock, b"STARTTLS now") == [
            b"501 5.5.4 Syntax: STARTTLS"
        ]
        plain = ScriptedServer(clock)
        assert session(plain, clock, b"STARTTLS") == [
            b"502 5.5.1 Command not implemented"
        ]
        assert b"STARTTLS" not in b"".join(rawSession(clock, plain, b"EHLO x")[1])

    def test_transportWithoutTLS(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        On a transport that cannot start TLS, STARTTLS is answered with
        C{454 4.7.0 TLS not available} and the session goes on in clear.
        """
        server = self.tlsServer(clock, certificates)
        protocol = server.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        assert server.connections[0].serverTransport is transport
        protocol.dataReceived(b"EHLO c.test\r\nSTARTTLS\r\nNOOP\r\n")
        assert transport.value().split(b"\r\n")[-3:] == [
            b"454 4.7.0 TLS not available",
            b"250 2.0.0 Ok",
            b"",
        ]
        assert not server.connections[0].tls

    def test_producersOverTLS(self, clock: Clock) -> None:
        """
        A pull producer registered when TLS starts moves to the TLS layer
        and is driven by the clock until it is done; a push producer can
        be registered too; one registered on a lost connection is stopped
        at once.
        """
        ca, certificate = generateCertificates("mx.test")
        left, _, right, received = transportPair(clock)
        left.tlsClient = True
        pieces = Pieces(left, 500, 40)
        left.registerProducer(pieces, False)
        left.startTLS(optionsForClientTLS("mx.test", trustRoot=ca))
        right.startTLS(certificate.options())
        settle(clock)
        assert bytes(received.received) == b"x" * 20_000
        assert left.producer is None
        push = PushProducer()
        left.registerProducer(push, True)
        assert left.producer is not None
        left.unregisterProducer()
        assert left.producer is None
        left.abortConnection()
        settle(clock)
        late = Pieces(left, 1, 1)
        left.registerProducer(late, False)
        assert late.stopped
        left.write(b"ignored")
        left.loseConnection()
        assert left.bytesWritten < 30_000

    def test_pullProducerStoppedWithTheConnection(self, clock: Clock) -> None:
        """
        A pull producer writing over TLS is paused by the window, and is
        stopped (and asked for nothing more) when the connection is lost.
        """
        ca, certificate = generateCertificates("mx.test")
        left, _, right, _ = transportPair(clock, window=4000)
        left.tlsClient = True
        left.startTLS(optionsForClientTLS("mx.test", trustRoot=ca))
        right.startTLS(certificate.options())
        settle(clock)
        right.pauseProducing()
        pieces = Pieces(left, 1000, 1000)
        left.registerProducer(pieces, False)
        settle(clock)
        assert 0 < pieces.resumed < 1000
        right.abortConnection()
        settle(clock)
        resumed = pieces.resumed
        settle(clock)
        assert pieces.stopped
        assert pieces.resumed == resumed


@implementer(IPushProducer)
class PushProducer:
    """
    A push producer that does nothing.
    """

    def pauseProducing(self) -> None:
        """
        Nothing to pause.
        """

    def resumeProducing(self) -> None:
        """
        Nothing to resume.
        """

    def stopProducing(self) -> None:
        """
        Nothing to stop.
        """


# -- the corners: transports ----------------------------------------------------------


class TestTransportCorners:
    """
    L{MemoryTransport} behaviours that whole sessions rarely reach.
    """

    def test_settings(self, clock: Clock) -> None:
        """
        The transport reports its state and keeps its TCP settings, and
        takes only bytes.
        """
        left, _, _, _ = transportPair(clock)
        assert left.connected
        left.setTcpNoDelay(True)
        left.setTcpKeepAlive(True)
        assert (left.getTcpNoDelay(), left.getTcpKeepAlive()) == (True, True)
        left.write(b"abc")
        assert left.inFlight == 3
        settle(clock)
        assert left.inFlight == 0
        with pytest.raises(TypeError, match="bytes"):
            left.write("text")  # type: ignore[arg-type]

    def test_producerRules(self, clock: Clock) -> None:
        """
        Only one producer at a time; one registered on a lost connection
        is stopped at once; stopping the transport as a producer closes it.
        """
        left, leftRaw, right, _ = transportPair(clock)
        left.registerProducer(PushProducer(), True)
        with pytest.raises(RuntimeError, match="registered"):
            left.registerProducer(PushProducer(), True)
        left.unregisterProducer()
        right.stopProducing()
        settle(clock)
        assert leftRaw.lost is not None
        late = Pieces(left, 1, 1)
        left.registerProducer(late, False)
        assert late.stopped

    def test_pushProducerPacedByWindow(self, clock: Clock) -> None:
        """
        A push producer is paused while a window's worth of bytes is in
        flight, and resumed once the peer read them.
        """
        left, _, _, _ = transportPair(clock, window=10)
        producer = CountingPushProducer()
        left.registerProducer(producer, True)
        left.write(b"x" * 10)
        assert producer.events == ["pause"]
        settle(clock)
        assert producer.events == ["pause", "resume"]

    def test_pausedReading(self, clock: Clock) -> None:
        """
        While an end does not read, what arrives waits (counted in flight
        for the writer); it is read when reading resumes; what waits when
        the connection is lost is dropped.
        """
        left, _, right, rightRaw = transportPair(clock)
        right.pauseProducing()
        left.write(b"one")
        settle(clock)
        assert (bytes(rightRaw.received), left.inFlight) == (b"", 3)
        right.resumeProducing()
        settle(clock)
        assert bytes(rightRaw.received) == b"one"
        right.pauseProducing()
        left.write(b"two")
        settle(clock)
        right.resumeProducing()
        right.abortConnection()
        settle(clock)
        assert bytes(rightRaw.received) == b"one"

    def test_noPeer(self, clock: Clock) -> None:
        """
        What a transport without a peer writes is sent nowhere and does
        not stay in flight.
        """
        a = IPv4Address("TCP", "192.0.2.1", 1)
        lonely = MemoryTransport(clock, a, a)
        lonely.protocol = RawClient()
        lonely.write(b"hello")
        settle(clock)
        assert lonely.inFlight == 0
        lonely.abortConnection()
        lonely.abortConnection()
        settle(clock)
        assert lonely.disconnected

    def test_writeSequence(self, clock: Clock) -> None:
        """
        C{writeSequence} sends the strings as one write, with or without
        TLS.
        """
        left, _, _, rightRaw = transportPair(clock)
        left.writeSequence([b"a", b"b"])
        settle(clock)
        assert bytes(rightRaw.received) == b"ab"
        assert left.writes == 1


@implementer(IPushProducer)
class CountingPushProducer:
    """
    A push producer that records how it was paused and resumed.
    """

    def __init__(self) -> None:
        self.events: list[str] = []

    def pauseProducing(self) -> None:
        """
        Record the pause.
        """
        self.events.append("pause")

    def resumeProducing(self) -> None:
        """
        Record the resumption.
        """
        self.events.append("resume")

    def stopProducing(self) -> None:
        """
        Record the stop.
        """
        self.events.append("stop")


# -- the corners: the server --------------------------------------------------------


class TestServerCorners:
    """
    Server behaviours that the sessions above do not reach.
    """

    def test_multiLineReply(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A scripted reply may be a sequence of lines, sent as given.
        """
        server.rule("NOOP", reply=[b"250-first", b"250 second"])
        assert session(server, clock, b"NOOP") == [b"250-first", b"250 second"]

    def test_moreRuleValidation(self, server: ScriptedServer) -> None:
        """
        A negative delay, refuse with hang, and negative octet counts are
        refused.
        """
        with pytest.raises(ValueError, match="negative"):
            server.delayReply("MAIL", -1)
        with pytest.raises(ValueError, match="not both"):
            server.rule("CONNECT", refuse=True, hang=True)
        with pytest.raises(ValueError, match="negative"):
            server.rule("DATA", dropAfter=-1)
        assert server.rules == []

    def test_releaseAndShutdownOneConnection(
        self, clock: Clock, server: ScriptedServer
    ) -> None:
        """
        C{release} and C{shutdown} with a connection number act on that
        connection only; releasing a connection that is not stalled is an
        error.
        """
        server.rule("NOOP", stall=True)
        first, _ = rawSession(clock, server, b"NOOP")
        second, _ = rawSession(clock, server, b"NOOP")
        assert server.stalled == [1, 2]
        assert server.release(connection=2) == 1
        settle(clock)
        assert second.take() == [b"250 2.0.0 Ok"]
        assert server.stalled == [1]
        protocol = server.connections[1].protocol
        assert protocol is not None
        with pytest.raises(ValueError, match="not stalled"):
            protocol.release()
        server.shutdown(connection=2)
        settle(clock)
        assert [r.isOpen for r in server.connections] == [True, False]
        assert first.lost is None

    def test_sizeLimits(self, clock: Clock) -> None:
        """
        C{SIZE 0} means no limit; with a limit, a message larger than it is
        refused after its data with 552.
        """
        assert ScriptedServer(clock, capabilities=[b"SIZE 0"]).sizeLimit is None
        server = ScriptedServer(clock, capabilities=[b"SIZE 20"])
        replies = session(
            server,
            clock,
            b"MAIL FROM:<a@x.test> SIZE=10 BODY=8BITMIME",
            b"RCPT TO:<b@x.test>",
            b"DATA",
            b"x" * 30 + b"\r\n.",
        )
        assert replies[-1] == b"552 Message size exceeds fixed limit"
        assert server.outbox == []

    def test_syntaxErrors(self, clock: Clock, server: ScriptedServer) -> None:
        """
        EHLO and VRFY need an argument; VRFY never says yes or no (252);
        lines ended with a bare LF are read as lines.
        """
        raw, _ = rawSession(clock, server)
        assert raw.transport is not None
        raw.transport.write(b"EHLO\nVRFY\nVRFY bob\n")
        settle(clock)
        assert raw.take() == [
            b"501 5.5.4 Syntax: EHLO hostname",
            b"501 5.5.4 Syntax: VRFY address",
            b"252 2.5.2 Cannot VRFY user, but will accept message",
        ]

    def test_bdatSequence(self, clock: Clock) -> None:
        """
        BDAT with a bad size is a syntax error; after a BDAT chunk, RCPT
        and DATA are refused; after a refused chunk, the transaction is
        failed until RSET.
        """
        server = ScriptedServer(clock, chunking=True)
        server.rule("BDAT", match="2", reply=b"452 4.3.1 no room", times=1)
        raw, _ = rawSession(
            clock, server, b"EHLO c.test", b"MAIL FROM:<>", b"RCPT TO:<b@y.test>"
        )
        assert raw.transport is not None
        raw.transport.write(
            b"BDAT x\r\n"
            b"BDAT 1\r\na"
            b"RCPT TO:<c@y.test>\r\n"
            b"DATA\r\n"
            b"BDAT 2\r\nbc"
            b"BDAT 1 LAST\r\nd"
        )
        settle(clock)
        assert raw.take() == [
            b"501 5.5.4 Syntax: BDAT size [LAST]",
            b"250 2.0.0 1 octets received",
            b"503 5.5.1 RCPT after BDAT",
            b"503 5.5.1 DATA after BDAT",
            b"452 4.3.1 no room",
            b"503 5.5.1 An earlier chunk failed: send RSET",
        ]
        assert server.outbox == []

    def test_bdatRefusedSession(self, clock: Clock) -> None:
        """
        After a refused greeting, a BDAT chunk is read and refused.
        """
        server = ScriptedServer(clock, chunking=True)
        server.rule("GREETING", reply=b"554 5.7.1 go away")
        raw, _ = rawSession(clock, server, b"EHLO c.test")
        assert raw.transport is not None
        raw.transport.write(b"BDAT 2 LAST\r\nxyNOOP\r\n")
        settle(clock)
        assert raw.take() == [
            b"503 5.5.1 No SMTP service here",
            b"503 5.5.1 No SMTP service here",
        ]

    def test_bdatChunkReply(self, clock: Clock) -> None:
        """
        A 2xx rule on a BDAT chunk replaces the text of its reply; on the
        last chunk, the text of the final reply.
        """
        server = ScriptedServer(clock, chunking=True)
        server.rule("BDAT", reply=b"250 2.0.0 got it")
        raw, _ = rawSession(
            clock, server, b"EHLO c.test", b"MAIL FROM:<>", b"RCPT TO:<b@y.test>"
        )
        assert raw.transport is not None
        raw.transport.write(b"BDAT 1\r\naBDAT 1 LAST\r\nb")
        settle(clock)
        assert raw.take() == [b"250 2.0.0 got it", b"250 2.0.0 got it"]
        assert server.outbox[0].data == b"ab"

    def test_stallAfterReleasedWithReply(self, clock: Clock) -> None:
        """
        A data stall released with a reply ends the message with that
        reply: a refusal delivers nothing.
        """
        server = ScriptedServer(clock)
        server.rule("DATA", stallAfter=0)
        raw, _ = rawSession(
            clock,
            server,
            b"EHLO c.test",
            b"MAIL FROM:<>",
            b"RCPT TO:<b@y.test>",
            b"DATA",
            b"hello",
            b".",
        )
        assert server.stalled == [1]
        server.release(reply=b"554 5.6.0 no thanks")
        settle(clock)
        assert raw.take()[-1] == b"554 5.6.0 no thanks"
        assert server.outbox == []


# -- the adversarial options ------------------------------------------------------


class Segments(RawClient):
    """
    A L{RawClient} that also records each C{dataReceived} on its own, with
    the clock's time.
    """

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.segments: list[tuple[float, bytes]] = []

    def dataReceived(self, data: bytes) -> None:
        """
        Record C{data} as one segment.
        """
        super().dataReceived(data)
        self.segments.append((self.clock.seconds(), data))


def segmentSession(clock: Clock, server: ScriptedServer) -> Segments:
    """
    Connect a L{Segments} client to C{server} and settle.
    """
    raw = Segments(clock)
    Outcome(MemoryEndpoint(clock, server).connect(OneProtocol(raw)))
    settle(clock)
    return raw


class TestAdversarial:
    """
    The options that make the server misbehave on purpose: C{raw} and
    C{extra} rules, C{splitReplies}, C{byteDelay}, C{unsolicited},
    C{stripCapabilities} and C{refuseStartTLS}.
    """

    def test_raw(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A C{raw} rule sends its bytes exactly, instead of the reply, and
        the command has its usual effect (MAIL still opens a transaction).
        """
        server.rule("MAIL", raw=b"250-a\r\n251 b\nc\xff")
        raw, _ = rawSession(clock, server, b"EHLO c.test")
        raw.say(b"MAIL FROM:<a@x.test>", b"RCPT TO:<b@x.test>")
        settle(clock)
        assert bytes(raw.received).endswith(b"250-a\r\n251 b\nc\xff250 2.1.5 Ok\r\n")

    def test_rawGreeting(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A GREETING rule can send raw bytes too; the server then serves the
        session as after its own greeting.
        """
        server.rule("GREETING", raw=b"220 hi\n")
        raw, _ = rawSession(clock, server, b"NOOP")
        assert bytes(raw.received) == b"220 hi\n250 2.0.0 Ok\r\n"

    def test_rawWithClose(self, clock: Clock, server: ScriptedServer) -> None:
        """
        A raw 421 does not close by itself; C{close=True} does.
        """
        server.rule("NOOP", raw=b"421 bye\r\n", times=1)
        server.rule("NOOP", raw=b"421 bye\r\n", close=True)
        raw, lines = rawSession(clock, server, b"NOOP")
        assert lines[-1] == b"421 bye"
        assert raw.lost is None
        raw.say(b"NOOP")
        settle(clock)
        assert raw.take() == [b"421 bye"]
        assert raw.lost is not None

    def test_extra(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{extra} bytes follow the reply in the same write (one segment),
        with a rule's own reply or with the server's.
        """
        server.rule("NOOP", extra=b"250 injected\r\n25", times=1)
        server.rule("RSET", reply=b"250 fine", extra=b"X")
        raw = segmentSession(clock, server)
        raw.segments.clear()
        raw.say(b"NOOP")
        settle(clock)
        raw.say(b"RSET")
        settle(clock)
        assert [data for _, data in raw.segments] == [
            b"250 2.0.0 Ok\r\n250 injected\r\n25",
            b"250 fine\r\nX",
        ]

    def test_extraAfterStartTLS(self, clock: Clock, certificates: Any) -> None:
        """
        C{extra} on STARTTLS goes in clear right behind the C{220}, before
        the server starts TLS.
        """
        server = ScriptedServer(clock, tlsOptions=certificates[1].options())
        server.rule("STARTTLS", extra=b"250 ok\r\n")
        raw, _ = rawSession(clock, server, b"EHLO c.test", b"STARTTLS")
        assert bytes(raw.received).endswith(
            b"220 2.0.0 Ready to start TLS\r\n250 ok\r\n"
        )
        assert server.connections[0].tls

    def test_ruleValidation(self, server: ScriptedServer) -> None:
        """
        C{raw} excludes C{reply} and C{status} and must not be empty;
        C{extra} must not be empty; neither goes with C{drop} or on a
        CONNECT rule.
        """
        with pytest.raises(ValueError, match="not both"):
            server.rule("NOOP", raw=b"x", reply=b"250 ok")
        with pytest.raises(ValueError, match="not both"):
            server.rule("NOOP", raw=b"x", status=(250, "2.0.0", "ok"))
        with pytest.raises(ValueError, match="non-empty"):
            server.rule("NOOP", raw=b"")
        with pytest.raises(ValueError, match="non-empty"):
            server.rule("NOOP", extra=b"")
        with pytest.raises(ValueError, match="drop sends nothing"):
            server.rule("NOOP", raw=b"x", drop=True)
        with pytest.raises(ValueError, match="drop sends nothing"):
            server.rule("NOOP", extra=b"x", drop=True)
        with pytest.raises(ValueError, match="CONNECT"):
            server.rule("CONNECT", raw=b"x")

    def test_splitReplies(self, clock: Clock) -> None:
        """
        With C{splitReplies=N} every write leaves in pieces of at most N
        bytes, each its own segment.
        """
        server = ScriptedServer(clock, greeting=b"220 mx.test", splitReplies=4)
        raw = segmentSession(clock, server)
        assert [data for _, data in raw.segments] == [b"220 ", b"mx.t", b"est\r", b"\n"]
        raw.say(b"NOOP")
        settle(clock)
        assert b"".join(data for _, data in raw.segments[4:]) == b"250 2.0.0 Ok\r\n"
        assert all(len(data) <= 4 for _, data in raw.segments)

    def test_byteDelay(self, clock: Clock) -> None:
        """
        With C{byteDelay} the server sends one byte at a time, each
        C{byteDelay} seconds after the previous one.
        """
        server = ScriptedServer(clock, greeting=b"220 x", byteDelay=1.0)
        raw = segmentSession(clock, server)
        assert raw.segments == []
        runFor(clock, 10)
        assert raw.segments == [
            (1.0, b"2"),
            (2.0, b"2"),
            (3.0, b"0"),
            (4.0, b" "),
            (5.0, b"x"),
            (6.0, b"\r"),
            (7.0, b"\n"),
        ]

    def test_byteDelayQueues(self, clock: Clock) -> None:
        """
        What a slow server sends while it is still sending waits its turn
        behind it, at the same pace.
        """
        server = ScriptedServer(clock, greeting=b"220 x", byteDelay=1.0)
        raw = segmentSession(clock, server)
        runFor(clock, 2.5)
        assert server.unsolicited(b"250 y") == 1
        runFor(clock, 60)
        assert bytes(raw.received) == b"220 x\r\n250 y\r\n"
        assert raw.segments[-1] == (14.0, b"\n")

    def test_byteDelayWithSplit(self, clock: Clock) -> None:
        """
        With both, pieces of C{splitReplies} bytes leave every
        C{byteDelay} seconds.
        """
        server = ScriptedServer(clock, greeting=b"220 x", byteDelay=0.5, splitReplies=3)
        raw = segmentSession(clock, server)
        runFor(clock, 10)
        assert raw.segments == [(0.5, b"220"), (1.0, b" x\r"), (1.5, b"\n")]

    def test_byteDelayCloseWaits(self, clock: Clock) -> None:
        """
        A slow server's close waits until everything before it has left:
        the whole C{221} arrives, then the connection closes.
        """
        server = ScriptedServer(clock, greeting=b"220 x", byteDelay=0.1)
        raw = segmentSession(clock, server)
        runFor(clock, 1)
        raw.take()
        raw.say(b"QUIT")
        runFor(clock, 0.5)
        assert raw.lost is None
        runFor(clock, 5)
        assert raw.take() == [b"221 2.0.0 Bye"]
        assert raw.lost is not None
        assert server.connections[0].closedBy == "client-quit"

    def test_byteDelayStartTLSWaits(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        A slow server starts TLS only once the whole C{220} has left, so
        a client that starts TLS on reading it completes the handshake
        (and L{sendmail} works, slowly).
        """
        ca, certificate = certificates
        server = ScriptedServer(
            clock, tlsOptions=certificate.options(), byteDelay=0.001
        )
        outcome = Outcome(
            sendmail(
                None,
                SENDER,
                ["dev@example.com"],
                MESSAGE,
                endpoint=MemoryEndpoint(clock, server),
                reactor=clock,
                tls="starttls",
                tlsOptions=optionsForClientTLS("mx.test", trustRoot=ca),
                retries=0,
            )
        )
        runFor(clock, 60)
        assert outcome.value().accepted == ("dev@example.com",)
        assert [d.tls for d in server.outbox] == [True]

    def test_slowConnectionLost(self, clock: Clock) -> None:
        """
        When the client goes away while a slow server is still sending,
        the rest is dropped and nothing is left on the clock.
        """
        server = ScriptedServer(clock, byteDelay=1.0)
        raw = segmentSession(clock, server)
        runFor(clock, 2.5)
        transport = raw.transport
        assert isinstance(transport, MemoryTransport)
        transport.abortConnection()
        runFor(clock, 60)
        assert len(raw.segments) == 2
        assert clock.getDelayedCalls() == []

    def test_settingsValidation(self, clock: Clock) -> None:
        """
        C{splitReplies} is at least 1, C{byteDelay} is not negative,
        C{refuseStartTLS} is a 4xx/5xx reply.
        """
        with pytest.raises(ValueError, match="splitReplies"):
            ScriptedServer(clock, splitReplies=0)
        with pytest.raises(ValueError, match="byteDelay"):
            ScriptedServer(clock, byteDelay=-1)
        with pytest.raises(ValueError, match="4xx or 5xx"):
            ScriptedServer(clock, refuseStartTLS=b"220 go ahead")
        with pytest.raises(ValueError, match="not an SMTP reply"):
            ScriptedServer(clock, refuseStartTLS=b"no")

    def test_unsolicited(self, clock: Clock, server: ScriptedServer) -> None:
        """
        C{unsolicited} sends a reply now, with no command to answer, on
        every open connection or on the one given; a 421 closes after it.
        """
        first, _ = rawSession(clock, server)
        second, _ = rawSession(clock, server)
        assert server.unsolicited(b"250 hello") == 2
        settle(clock)
        assert first.take() == second.take() == [b"250 hello"]
        assert server.unsolicited([b"250-a", b"250 b"], connection=2) == 1
        settle(clock)
        assert first.take() == []
        assert second.take() == [b"250-a", b"250 b"]
        assert server.unsolicited(b"421 4.3.2 going away", connection=1) == 1
        settle(clock)
        assert first.take() == [b"421 4.3.2 going away"]
        assert first.lost is not None
        assert server.connections[0].closedBy == "server"
        assert server.unsolicited(b"250 again") == 1
        assert server.unsolicited(b"250 again", connection=1) == 0

    def test_stripCapabilities(
        self, clock: Clock, certificates: tuple[Certificate, PrivateCertificate]
    ) -> None:
        """
        C{stripCapabilities} removes keywords from the EHLO reply (those
        added for C{credentials} and C{tlsOptions} too, whatever their
        case and parameters); the commands still work.
        """
        server = ScriptedServer(
            clock,
            tlsOptions=certificates[1].options(),
            credentials={USER: PASSWORD},
            stripCapabilities=[b"starttls", b"AUTH", b"SIZE 1"],
        )
        _, lines = rawSession(clock, server, b"EHLO c.test")
        assert lines[1:] == [
            b"250-mx.test",
            b"250-PIPELINING",
            b"250-8BITMIME",
            b"250 ENHANCEDSTATUSCODES",
        ]
        assert session(server, clock, b"AUTH PLAIN " + PLAIN) == [
            b"235 2.7.0 Authentication successful"
        ]
        assert session(server, clock, b"STARTTLS") == [b"220 2.0.0 Ready to start TLS"]

    def test_refuseStartTLS(self, clock: Clock) -> None:
        """
        C{refuseStartTLS} advertises STARTTLS (without C{tlsOptions}) and
        answers it with the refusal given.
        """
        server = ScriptedServer(clock, refuseStartTLS=b"454 4.7.0 not now")
        _, lines = rawSession(clock, server, b"EHLO c.test")
        assert lines[-1] == b"250 STARTTLS"
        assert session(server, clock, b"STARTTLS") == [b"454 4.7.0 not now"]
        assert session(server, clock, b"STARTTLS now") == [b"454 4.7.0 not now"]
        assert not server.connections[0].tls
