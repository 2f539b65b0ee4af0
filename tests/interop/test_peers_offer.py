"""
The peer contract: what the interop peers started by C{.ci/peers/start.sh}
offer, checked with the standard library's C{smtplib}, C{ssl} and sockets
only (not with mailclient, so that a client bug cannot hide a peer problem).

  - Postfix, on every listener (after STARTTLS on submission): PIPELINING,
    SIZE 1048576, 8BITMIME, SMTPUTF8, DSN, ENHANCEDSTATUSCODES, CHUNKING and
    AUTH with SCRAM-SHA-256 (a real SCRAM exchange works); mail to UTF-8
    local parts and IDN domains is delivered; BDAT works; DSNs land in the
    Maildir.
  - aiosmtpd: SIZE, 8BITMIME and SMTPUTF8 on every listener, and neither
    PIPELINING, CHUNKING nor DSN (the client's fallbacks are tested there).
  - LMTP (aiosmtpd): LHLO, and one reply per accepted recipient after the
    data.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import smtplib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import pytest

from .conftest import Delivered, Peer, headerValue, uniqueToken

pytestmark = pytest.mark.interop

TIMEOUT = 10.0

# What the client will rely on from Postfix: keyword -> required parameters.
POSTFIX_KEYWORDS = {
    "PIPELINING": "",
    "SIZE": "1048576",
    "8BITMIME": "",
    "SMTPUTF8": "",
    "DSN": "",
    "ENHANCEDSTATUSCODES": "",
    "CHUNKING": "",
}

GREETING = "Grüße, 世界"
INTERNATIONAL_RECIPIENTS = [
    "пользователь@example.com",
    "user@bücher.example",
    "user@xn--bcher-kva.example",
    "пользователь@bücher.example",
]


# -- helpers -----------------------------------------------------------------


def tlsContext(peer: Peer) -> ssl.SSLContext:
    """
    A client context that trusts only the peer's test CA.
    """
    return ssl.create_default_context(cafile=str(peer.caCert))


@contextmanager
def connected(peer: Peer, listener: str) -> Iterator[smtplib.SMTP]:
    """
    An C{smtplib} connection to C{listener} (C{"smtp"}, C{"submission"},
    C{"smtps"}) of C{peer}, in TLS from the start for C{"smtps"}; QUIT (or
    close) at the end.
    """
    port = peer.ports[listener]
    connection: smtplib.SMTP
    if listener == "smtps":
        connection = smtplib.SMTP_SSL(
            peer.host, port, timeout=TIMEOUT, context=tlsContext(peer)
        )
    else:
        connection = smtplib.SMTP(peer.host, port, timeout=TIMEOUT)
    try:
        yield connection
    finally:
        try:
            connection.quit()
        except smtplib.SMTPException:
            connection.close()


def keywords(connection: smtplib.SMTP, command: str = "EHLO") -> dict[str, str]:
    """
    Send EHLO (or LHLO) and return the keywords of the reply (upper case)
    with their parameters; fails unless the reply is 250.
    """
    connection.ehlo_msg = command.lower()
    code, text = connection.ehlo("client.example")
    assert code == 250, (code, text)
    offered = {}
    for line in text.decode("utf-8").splitlines()[1:]:
        keyword, _, parameters = line.partition(" ")
        offered[keyword.upper()] = parameters
    return offered


def ehloAfterTLS(
    peer: Peer, connection: smtplib.SMTP, starttls: bool
) -> dict[str, str]:
    """
    The EHLO keywords, after STARTTLS (verified against the test CA) when
    C{starttls} is true.
    """
    offered = keywords(connection)
    if starttls:
        assert "STARTTLS" in offered, offered
        code, text = connection.starttls(context=tlsContext(peer))
        assert code == 220, (code, text)
        offered = keywords(connection)
        assert "STARTTLS" not in offered, offered
    return offered


def waitFor(
    peer: Peer,
    match: bytes,
    count: int,
    select: Callable[[Peer], list[Delivered]] = Peer.messages,
) -> list[Delivered]:
    """
    Poll the peer's Maildir (Postfix delivers through its queue) until
    C{count} messages from C{select} contain C{match}, for at most
    L{TIMEOUT} seconds; return what is there then.
    """
    deadline = time.monotonic() + TIMEOUT
    while True:
        found = [m for m in select(peer) if match in m.data]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.02)


class SCRAMClient:
    """
    The client side of RFC 5802 / RFC 7677 SCRAM without channel binding,
    as an C{smtplib} "authobject": called without a challenge for the
    initial response, then once per server challenge.  Checks the server's
    signature in the last round.
    """

    def __init__(self, username: str, password: str, hashName: str) -> None:
        self.username = username.replace("=", "=3D").replace(",", "=2C")
        self.password = password.encode("utf-8")
        self.hashName = hashName
        self.clientNonce = base64.b64encode(secrets.token_bytes(18)).decode()
        self.clientFirstBare = f"n={self.username},r={self.clientNonce}"
        self.expectedServerSignature: bytes | None = None
        self.serverVerified = False

    def _hmac(self, key: bytes, message: bytes) -> bytes:
        return hmac.new(key, message, self.hashName).digest()

    def __call__(self, challenge: bytes | None = None) -> str:
        if challenge is None:
            return "n,," + self.clientFirstBare
        text = challenge.decode("utf-8")
        attributes = dict(item.split("=", 1) for item in text.split(","))
        if self.expectedServerSignature is None:
            # server-first-message: r=<nonce>,s=<salt>,i=<iterations>
            nonce = attributes["r"]
            assert nonce.startswith(self.clientNonce), text
            salted = hashlib.pbkdf2_hmac(
                self.hashName,
                self.password,
                base64.b64decode(attributes["s"]),
                int(attributes["i"]),
            )
            clientKey = self._hmac(salted, b"Client Key")
            storedKey = hashlib.new(self.hashName, clientKey).digest()
            withoutProof = f"c=biws,r={nonce}"
            authMessage = f"{self.clientFirstBare},{text},{withoutProof}".encode()
            signature = self._hmac(storedKey, authMessage)
            proof = bytes(a ^ b for a, b in zip(clientKey, signature, strict=True))
            self.expectedServerSignature = self._hmac(
                self._hmac(salted, b"Server Key"), authMessage
            )
            return f"{withoutProof},p={base64.b64encode(proof).decode()}"
        # server-final-message: v=<signature>
        assert "e" not in attributes, text
        assert base64.b64decode(attributes["v"]) == self.expectedServerSignature
        self.serverVerified = True
        return ""


def readReply(reader: IO[bytes]) -> list[bytes]:
    """
    One (possibly multi-line) reply from a C{makefile("rb")} reader: its
    lines without CRLF.
    """
    lines = []
    while True:
        line = reader.readline()
        assert line.endswith(b"\r\n"), f"connection closed or bad line: {line!r}"
        lines.append(line[:-2])
        if line[3:4] != b"-":
            return lines


@contextmanager
def rawLMTP(peer: Peer) -> Iterator[tuple[socket.socket, IO[bytes]]]:
    """
    A plain socket to the LMTP port after the 220 greeting, with a reader
    for L{readReply}.
    """
    assert peer.lmtpPort is not None
    with socket.create_connection((peer.host, peer.lmtpPort), timeout=TIMEOUT) as sock:
        reader = sock.makefile("rb")
        greeting = readReply(reader)
        assert greeting[0].startswith(b"220 "), greeting
        yield sock, reader


# -- Postfix -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "starttls"),
    [("smtp", False), ("smtp", True), ("submission", True), ("smtps", False)],
)
def test_postfixOffersEverything(postfix: Peer, listener: str, starttls: bool) -> None:
    """
    Postfix's EHLO reply on the smtp port (in clear and after STARTTLS),
    on the submission port after STARTTLS and on the smtps port offers
    PIPELINING, SIZE 1048576 (the peer's size_limit), 8BITMIME, SMTPUTF8,
    DSN, ENHANCEDSTATUSCODES, CHUNKING, and AUTH with every mechanism the
    peer description lists, SCRAM-SHA-256 among them.
    """
    with connected(postfix, listener) as connection:
        offered = ehloAfterTLS(postfix, connection, starttls)
    for keyword, parameters in POSTFIX_KEYWORDS.items():
        assert keyword in offered, f"{keyword} missing from {offered}"
        if parameters:
            assert offered[keyword] == parameters, (keyword, offered[keyword])
    assert offered["SIZE"] == str(postfix.sizeLimit)
    mechanisms = offered["AUTH"].split()
    assert "SCRAM-SHA-256" in mechanisms
    assert set(postfix.authMechanisms) <= set(mechanisms), mechanisms


def test_postfixSubmissionBeforeSTARTTLS(postfix: Peer) -> None:
    """
    Before STARTTLS the submission port offers STARTTLS and the other
    extensions but no AUTH (credentials only after TLS).
    """
    with connected(postfix, "submission") as connection:
        offered = keywords(connection)
    assert "STARTTLS" in offered
    assert "AUTH" not in offered
    assert set(POSTFIX_KEYWORDS) <= set(offered), offered


def test_postfixSCRAMSHA256(postfix: Peer) -> None:
    """
    A complete SCRAM-SHA-256 exchange with the peer's credentials succeeds
    on the submission port after STARTTLS (235), and the server proves it
    knows the password too (its signature in the last challenge checks
    out).
    """
    client = SCRAMClient(postfix.username, postfix.password, "sha256")
    with connected(postfix, "submission") as connection:
        ehloAfterTLS(postfix, connection, starttls=True)
        code, text = connection.auth("SCRAM-SHA-256", client)
    assert code == 235, (code, text)
    assert text.startswith(b"2.7.0"), text
    assert client.serverVerified


def test_postfixSCRAMSHA256WrongPassword(postfix: Peer) -> None:
    """
    SCRAM-SHA-256 with a wrong password ends in 535 5.7.8.
    """
    client = SCRAMClient(postfix.username, postfix.password + "x", "sha256")
    with connected(postfix, "submission") as connection:
        ehloAfterTLS(postfix, connection, starttls=True)
        with pytest.raises(smtplib.SMTPAuthenticationError) as raised:
            connection.auth("SCRAM-SHA-256", client)
    assert raised.value.smtp_code == 535
    error = raised.value.smtp_error
    assert isinstance(error, bytes) and error.startswith(b"5.7.8"), error
    assert not client.serverVerified


def test_postfixDeliversInternationalAddresses(postfix: Peer) -> None:
    """
    With MAIL FROM ... SMTPUTF8, Postfix on the submission port (STARTTLS,
    AUTH) accepts a UTF-8 sender and recipients with UTF-8 local parts and
    an IDN domain in U-label and A-label form, and delivers one copy per
    recipient into the Maildir, each addressed (Delivered-To) to the
    recipient as given.
    """
    token = uniqueToken()
    sender = "отправитель@example.com"
    message = (
        f"From: {sender}\r\nTo: {INTERNATIONAL_RECIPIENTS[0]}\r\n"
        f"Subject: UTF-8 {token}\r\n\r\n{GREETING}, {token}\r\n"
    ).encode()
    with connected(postfix, "submission") as connection:
        ehloAfterTLS(postfix, connection, starttls=True)
        connection.login(postfix.username, postfix.password)
        refused = connection.sendmail(
            sender, INTERNATIONAL_RECIPIENTS, message, ["SMTPUTF8", "BODY=8BITMIME"]
        )
    assert refused == {}
    delivered = waitFor(postfix, token.encode(), len(INTERNATIONAL_RECIPIENTS))
    addressedTo = sorted(headerValue(m.data, "Delivered-To") or "" for m in delivered)
    assert addressedTo == sorted(INTERNATIONAL_RECIPIENTS)
    for copy in delivered:
        assert copy.body.endswith(f"{GREETING}, {token}\r\n".encode())


def test_postfixRefusesUnicodeWithoutSMTPUTF8(postfix: Peer) -> None:
    """
    Without the SMTPUTF8 parameter, a recipient at a U-label domain is
    refused with 501 5.1.3, while its A-label form is accepted: a client
    must use SMTPUTF8 or convert the domain.
    """
    with connected(postfix, "smtp") as connection:
        keywords(connection)
        assert connection.mail("sender@example.com")[0] == 250
        connection.send("RCPT TO:<user@bücher.example>\r\n".encode())
        code, text = connection.getreply()
        assert (code, text[:5]) == (501, b"5.1.3"), (code, text)
        assert connection.rcpt("user@xn--bcher-kva.example")[0] == 250
        connection.rset()


def test_postfixChunking(postfix: Peer) -> None:
    """
    Pipelined MAIL, RCPT, RCPT and two BDAT chunks (the second LAST) in one
    write: Postfix answers each command in order (the refused recipient
    with 550 5.1.1, the final BDAT with 250 and the byte count), and the
    message arrives byte for byte, a line that is a lone dot included (BDAT
    has no dot-stuffing).
    """
    token = uniqueToken()
    first = f"Subject: BDAT {token}\r\n\r\nfirst chunk\r\n".encode()
    second = b".\r\n..two dots\r\nlast line\r\n"
    with connected(postfix, "smtp") as connection:
        assert "CHUNKING" in keywords(connection)
        connection.send(
            b"MAIL FROM:<sender@example.com> BODY=8BITMIME\r\n"
            b"RCPT TO:<ok@example.com>\r\n"
            b"RCPT TO:<reject@example.com>\r\n"
            + b"BDAT %d\r\n" % len(first)
            + first
            + b"BDAT %d LAST\r\n" % len(second)
            + second
        )
        replies = [connection.getreply() for _ in range(5)]
    assert [code for code, _ in replies] == [250, 250, 550, 250, 250], replies
    assert replies[2][1].startswith(b"5.1.1"), replies
    assert b"%d bytes" % (len(first) + len(second)) in replies[4][1], replies
    [delivered] = waitFor(postfix, token.encode(), 1)
    assert delivered.body == first + second


def test_postfixSuccessDSN(postfix: Peer) -> None:
    """
    For a recipient with NOTIFY=SUCCESS and ORCPT, under MAIL FROM with
    RET=HDRS and ENVID, Postfix delivers the message and mails a success DSN
    (multipart/report; report-type=delivery-status) to the sender, which
    lands in the same Maildir and carries the ENVID (Original-Envelope-Id),
    the ORCPT (Original-Recipient) and "Action: delivered"; a NOTIFY=NEVER
    recipient gets no report.
    """
    token = uniqueToken()
    sender = "dsn-sender@example.com"
    with connected(postfix, "smtp") as connection:
        assert "DSN" in keywords(connection)
        refused = connection.sendmail(
            sender,
            ["ok@example.com"],
            f"Subject: DSN {token}\r\n\r\nbody\r\n".encode(),
            mail_options=["RET=HDRS", f"ENVID={token}"],
            rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;ok@example.com"],
        )
        assert refused == {}
        refused = connection.sendmail(
            sender,
            ["quiet@example.com"],
            f"Subject: no DSN {token}\r\n\r\nbody\r\n".encode(),
            mail_options=[f"ENVID=quiet-{token}"],
            rcpt_options=["NOTIFY=NEVER"],
        )
        assert refused == {}
    [report] = waitFor(
        postfix, f"Envelope-Id: {token}".encode(), 1, Peer.deliveryReports
    )
    assert headerValue(report.data, "Delivered-To") == sender
    assert b"Original-Recipient: rfc822;ok@example.com" in report.data
    assert b"Action: delivered" in report.data
    # the other message was delivered; by then its report would be there too
    assert len(waitFor(postfix, f"no DSN {token}".encode(), 1)) == 1
    time.sleep(0.3)
    assert postfix.deliveryReports(match=f"quiet-{token}".encode()) == []


def test_postfixFailureDSN(postfix: Peer) -> None:
    """
    The bounce@ trigger: Postfix accepts the recipient at RCPT, the delivery
    then fails with 5.1.1, and the sender gets a failure DSN ("Action:
    failed", "Status: 5.1.1") in the Maildir.
    """
    token = uniqueToken()
    with connected(postfix, "smtp") as connection:
        keywords(connection)
        refused = connection.sendmail(
            "dsn-sender@example.com",
            ["bounce@example.com"],
            f"Subject: bounce {token}\r\n\r\nbody\r\n".encode(),
            mail_options=[f"ENVID={token}", "RET=HDRS"],
            rcpt_options=["NOTIFY=FAILURE"],
        )
    assert refused == {}
    [report] = waitFor(
        postfix, f"Envelope-Id: {token}".encode(), 1, Peer.deliveryReports
    )
    assert b"Action: failed" in report.data
    assert b"Status: 5.1.1" in report.data


# -- aiosmtpd ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("listener", "starttls"),
    [("smtp", False), ("submission", True), ("smtps", False)],
)
def test_aiosmtpdOffers(aiosmtpd_peer: Peer, listener: str, starttls: bool) -> None:
    """
    aiosmtpd's EHLO reply on every listener (after STARTTLS on submission)
    offers SIZE 1048576, 8BITMIME and SMTPUTF8, and AUTH; it does not offer
    PIPELINING, CHUNKING or DSN, so the client's paths without them are
    exercised against it.
    """
    with connected(aiosmtpd_peer, listener) as connection:
        offered = ehloAfterTLS(aiosmtpd_peer, connection, starttls)
    assert offered["SIZE"] == str(aiosmtpd_peer.sizeLimit)
    assert {"8BITMIME", "SMTPUTF8", "AUTH"} <= set(offered), offered
    assert not {"PIPELINING", "CHUNKING", "DSN"} & set(offered), offered


def test_aiosmtpdRecordsSMTPUTF8(aiosmtpd_peer: Peer) -> None:
    """
    aiosmtpd accepts a UTF-8 envelope with SMTPUTF8 and records it: the
    envelope record has the UTF-8 addresses, "smtputf8": true and the
    MAIL parameters, and the Maildir file holds the exact bytes.
    """
    token = uniqueToken()
    sender = "отправитель@bücher.example"
    recipient = "пользователь@example.com"
    message = f"Subject: {token}\r\n\r\n{GREETING}\r\n".encode()
    with connected(aiosmtpd_peer, "smtp") as connection:
        keywords(connection)
        refused = connection.sendmail(
            sender, [recipient], message, ["SMTPUTF8", "BODY=8BITMIME"]
        )
    assert refused == {}
    [delivered] = waitFor(aiosmtpd_peer, token.encode(), 1)
    assert delivered.data == message
    assert delivered.envelope is not None
    assert delivered.envelope["mail_from"] == sender
    assert delivered.envelope["recipient"] == recipient
    assert delivered.envelope["smtputf8"] is True
    assert "BODY=8BITMIME" in delivered.envelope["mail_options"]


# -- LMTP ------------------------------------------------------------------------


def test_lmtpGreeting(lmtp_peer: Peer) -> None:
    """
    The LMTP port answers LHLO with PIPELINING, ENHANCEDSTATUSCODES, SIZE
    1048576, 8BITMIME and SMTPUTF8, and neither STARTTLS nor AUTH; HELO and
    EHLO are not LMTP commands (500).
    """
    assert lmtp_peer.lmtpPort is not None
    connection = smtplib.LMTP(lmtp_peer.host, lmtp_peer.lmtpPort, timeout=TIMEOUT)
    try:
        assert connection.docmd("EHLO", "client.example")[0] == 500
        assert connection.docmd("HELO", "client.example")[0] == 500
        offered = keywords(connection, "LHLO")
    finally:
        connection.quit()
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SMTPUTF8"} <= set(
        offered
    ), offered
    assert offered["SIZE"] == str(lmtp_peer.sizeLimit)
    assert not {"STARTTLS", "AUTH"} & set(offered), offered


def test_lmtpOneReplyPerRecipientWithSmtplib(lmtp_peer: Peer) -> None:
    """
    With smtplib's LMTP class: after the data of a message to ok@ and
    lmtp-reject@ (both accepted at RCPT), C{data()} returns only the first
    recipient's reply (250); the second one (550 5.1.1, naming the
    recipient) is still waiting on the connection and must be read with
    C{getreply()}: smtplib does not collect LMTP's per-recipient replies
    (and C{LMTP.sendmail} would leave them unread).  Only ok@ gets a copy.
    """
    assert lmtp_peer.lmtpPort is not None
    token = uniqueToken()
    connection = smtplib.LMTP(lmtp_peer.host, lmtp_peer.lmtpPort, timeout=TIMEOUT)
    try:
        keywords(connection, "LHLO")
        assert connection.mail("sender@example.com")[0] == 250
        assert connection.rcpt("ok@example.com")[0] == 250
        assert connection.rcpt("lmtp-reject@example.com")[0] == 250
        first = connection.data(f"Subject: {token}\r\n\r\nbody\r\n".encode())
        second = connection.getreply()
        assert connection.noop()[0] == 250
    finally:
        connection.quit()
    assert first[0] == 250 and first[1].startswith(b"2.0.0 <ok@example.com>"), first
    assert second[0] == 550, second
    assert second[1].startswith(b"5.1.1 <lmtp-reject@example.com>"), second
    [delivered] = waitFor(lmtp_peer, token.encode(), 1)
    assert delivered.envelope is not None
    assert delivered.envelope["protocol"] == "LMTP"
    assert delivered.envelope["recipient"] == "ok@example.com"


@pytest.mark.parametrize(
    ("sender", "expected"),
    [
        (
            "sender@example.com",
            [
                b"250 2.0.0 <ok@example.com>",
                b"550 5.1.1 <lmtp-reject@",
                b"452 4.2.2 <lmtp-tempfail@",
            ],
        ),
        ("eod-reject@example.com", [b"554 5.7.1 "] * 3),
    ],
)
def test_lmtpPipelinedRepliesAfterData(
    lmtp_peer: Peer, sender: str, expected: list[bytes]
) -> None:
    """
    On the wire, with LHLO, MAIL, three RCPTs and DATA pipelined in one
    write: every command gets its reply in order, and after the data comes
    exactly one reply per accepted recipient, in RCPT order (250;
    lmtp-reject@ 550 5.1.1; lmtp-tempfail@ 452 4.2.2), each a single line;
    the eod-reject@ sender trigger gives its 554 once per recipient.  The
    next reply belongs to the next command (NOOP).
    """
    token = uniqueToken()
    recipients = [
        "ok@example.com",
        "lmtp-reject@example.com",
        "lmtp-tempfail@example.com",
    ]
    with rawLMTP(lmtp_peer) as (sock, reader):
        sock.sendall(
            b"LHLO client.example\r\n"
            + f"MAIL FROM:<{sender}>\r\n".encode()
            + b"".join(f"RCPT TO:<{r}>\r\n".encode() for r in recipients)
            + b"DATA\r\n"
        )
        assert readReply(reader)[-1].startswith(b"250 ")
        for _ in range(1 + len(recipients)):
            assert readReply(reader)[0].startswith(b"250 2.1.")
        assert readReply(reader)[0].startswith(b"354 ")
        sock.sendall(f"Subject: {token}\r\n\r\nbody\r\n.\r\nNOOP\r\n".encode())
        replies = [readReply(reader) for _ in recipients]
        assert readReply(reader) == [b"250 2.0.0 OK"]
        sock.sendall(b"QUIT\r\n")
        assert readReply(reader)[0].startswith(b"221 ")
    assert all(len(reply) == 1 for reply in replies), replies
    for reply, start in zip(replies, expected, strict=True):
        assert reply[0].startswith(start), replies
