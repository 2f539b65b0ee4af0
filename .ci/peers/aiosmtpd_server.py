"""
An aiosmtpd-based SMTP server for mailclient's interop tests.

Started in the background by C{.ci/peers/start.sh aiosmtpd} with the project
venv's interpreter (aiosmtpd is in the C{test} extra).  It listens on three
loopback SMTP ports and, with C{--lmtp-port}, one LMTP port:

  - smtp: STARTTLS offered, AUTH offered in clear and after TLS, AUTH optional;
  - submission: STARTTLS required before MAIL (530), AUTH only after TLS and
    required (530 at MAIL without it);
  - smtps: implicit TLS (the socket is TLS from the first byte), AUTH required;
  - lmtp: LMTP (RFC 2033) in clear, no STARTTLS, no AUTH: LHLO instead of
    EHLO (HELO and EHLO get 500), and after the data one reply per accepted
    recipient, in RCPT order.

The SMTP listeners offer SIZE, 8BITMIME, SMTPUTF8 (and STARTTLS/AUTH as
above); aiosmtpd has neither PIPELINING in its EHLO (although it answers
pipelined commands in order) nor BDAT/CHUNKING.  The LMTP listener offers
PIPELINING, ENHANCEDSTATUSCODES, SIZE, 8BITMIME and SMTPUTF8.

AUTH mechanisms: PLAIN and LOGIN (aiosmtpd's own) and CRAM-MD5 (below).

Every accepted message is delivered once per accepted recipient into a
Maildir as the exact bytes the server received in DATA (after the dot
transparency is undone, CRLF kept, nothing prepended), and the envelope of
each file is written as JSON into the envelopes directory under the same
name.  The message file appears before the 250 reply is sent.

Test triggers, chosen by the local part of an address:

  - RCPT TO reject@ -> 550 5.1.1, tempfail@ -> 450 4.2.1
  - MAIL FROM reject@ -> 550 5.7.1, tempfail@ -> 451 4.3.0
  - MAIL FROM eod-reject@ -> 554 5.7.1 after the data,
    eod-tempfail@ -> 451 4.7.1 after the data (LMTP: once per recipient)
  - LMTP only, RCPT TO lmtp-reject@ -> 250 at RCPT, then 550 5.1.1 for that
    recipient after the data; lmtp-tempfail@ -> 250, then 452 4.2.2

LMTP deliveries go into the same Maildir and envelopes directory; their
envelope records say C{"protocol": "LMTP"} (the SMTP ones C{"ESMTP"} or
C{"SMTP"}).

This file is a script, not part of the mailclient package.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import os
import secrets
import signal
import ssl
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

log = logging.getLogger("mailclient-peer")

SENDER_TRIGGERS = {
    "reject": "550 5.7.1 Sender rejected (test trigger)",
    "tempfail": "451 4.3.0 Sender temporarily rejected (test trigger)",
}
RECIPIENT_TRIGGERS = {
    "reject": "550 5.1.1 Recipient rejected (test trigger)",
    "tempfail": "450 4.2.1 Recipient temporarily unavailable (test trigger)",
}
END_OF_DATA_TRIGGERS = {
    "eod-reject": "554 5.7.1 Message rejected after data (test trigger)",
    "eod-tempfail": "451 4.7.1 Message deferred after data (test trigger)",
}
# LMTP: per-recipient final replies (after the data) by the recipient's local part
LMTP_RECIPIENT_TRIGGERS = {
    "lmtp-reject": "550 5.1.1 <{address}> Mailbox unavailable (LMTP test trigger)",
    "lmtp-tempfail": "452 4.2.2 <{address}> Mailbox full (LMTP test trigger)",
}


def localPart(address: str | None) -> str:
    """
    The lower-cased local part of C{address} (empty for the null sender).
    """
    return (address or "").rpartition("@")[0].lower()


class MaildirHandler:
    """
    aiosmtpd handler: test triggers, authentication and Maildir delivery.
    """

    def __init__(
        self, maildir: Path, envelopes: Path, username: str, password: str
    ) -> None:
        self.maildir = maildir
        self.envelopes = envelopes
        self.username = username.encode()
        self.password = password.encode()
        self.sequence = itertools.count(1)
        for sub in ("tmp", "new", "cur"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        envelopes.mkdir(parents=True, exist_ok=True)

    # -- authentication ---------------------------------------------------

    def authenticator(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        authData: Any,
    ) -> AuthResult:
        """
        Check the user name and password given with PLAIN or LOGIN.
        """
        good = (
            isinstance(authData, LoginPassword)
            and authData.login == self.username
            and hmac.compare_digest(authData.password, self.password)
        )
        return AuthResult(
            success=good,
            handled=False,
            auth_data=self.username.decode() if good else None,
        )

    async def auth_CRAM__MD5(self, server: SMTP, args: list[str]) -> AuthResult:
        """
        RFC 2195 CRAM-MD5: a challenge, then C{user hex(hmac-md5(password, challenge))}.
        """
        challenge = f"<{secrets.randbelow(10**12)}.{int(time.time())}@localhost>"
        response = await server.challenge_auth(challenge.encode())
        if not isinstance(response, bytes):
            return AuthResult(success=False, handled=False)
        user, _, digest = response.rpartition(b" ")
        expected = hmac.new(self.password, challenge.encode(), hashlib.md5).hexdigest()
        good = user == self.username and hmac.compare_digest(
            digest.lower(), expected.encode()
        )
        return AuthResult(
            success=good, handled=False, auth_data=user.decode() if good else None
        )

    # -- envelope ---------------------------------------------------------

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mailOptions: list[str],
    ) -> str:
        refusal = SENDER_TRIGGERS.get(localPart(address))
        if refusal is not None:
            return refusal
        envelope.mail_from = address
        envelope.mail_options.extend(mailOptions)
        return "250 2.1.0 Ok"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcptOptions: list[str],
    ) -> str:
        refusal = RECIPIENT_TRIGGERS.get(localPart(address))
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        # one list of parameters per accepted recipient
        cast(list[Any], envelope.rcpt_options).append(rcptOptions)
        return "250 2.1.5 Ok"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        refusal = END_OF_DATA_TRIGGERS.get(localPart(envelope.mail_from))
        if refusal is not None:
            return refusal
        queueId = secrets.token_hex(5).upper()
        self.deliver(server, session, envelope, queueId, range(len(envelope.rcpt_tos)))
        return f"250 2.0.0 Ok: queued as {queueId}"

    def deliver(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        queueId: str,
        indexes: Iterable[int],
    ) -> None:
        """
        Write one Maildir file and one envelope record for each recipient
        C{envelope.rcpt_tos[i]}, C{i} in C{indexes}.
        """
        data = envelope.original_content or b""
        tlsInfo = None
        sslObject = (
            server.transport.get_extra_info("ssl_object") if server.transport else None
        )
        if sslObject is not None:
            tlsInfo = {"version": sslObject.version(), "cipher": sslObject.cipher()[0]}
        sockname = (
            server.transport.get_extra_info("sockname") if server.transport else None
        )
        if isinstance(server, LMTP):
            protocol = "LMTP"
        else:
            protocol = "ESMTP" if session.extended_smtp else "SMTP"
        recipients = []
        for index in indexes:
            recipient = envelope.rcpt_tos[index]
            recipients.append(recipient)
            name = f"{time.time_ns()}.P{os.getpid()}Q{next(self.sequence)}.{queueId}"
            record = {
                "queue_id": queueId,
                "protocol": protocol,
                "mail_from": envelope.mail_from,
                "rcpt_to": list(envelope.rcpt_tos),
                "recipient": recipient,
                "mail_options": list(envelope.mail_options),
                "rcpt_options": list(envelope.rcpt_options[index])
                if index < len(envelope.rcpt_options)
                else [],
                "smtputf8": envelope.smtp_utf8,
                "helo": session.host_name,
                "auth_user": session.auth_data if session.authenticated else None,
                "tls": tlsInfo,
                "port": sockname[1] if sockname else None,
                "size": len(data),
            }
            (self.envelopes / f"{name}.json").write_text(json.dumps(record, indent=1))
            # Maildir protocol: write in tmp/, then rename into new/.
            temporary = self.maildir / "tmp" / name
            temporary.write_bytes(data)
            temporary.rename(self.maildir / "new" / name)
        log.info(
            "%s queued %s from=%s to=%s size=%d",
            protocol,
            queueId,
            envelope.mail_from,
            recipients,
            len(data),
        )


class LMTPHandler(MaildirHandler):
    """
    The handler of the LMTP listener: the same triggers and Maildir, plus
    LMTP's per-recipient replies after the data and the LHLO keywords
    RFC 2033 requires (PIPELINING, ENHANCEDSTATUSCODES).
    """

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        """
        Called for LHLO (aiosmtpd's LMTP runs its EHLO code): add
        PIPELINING and ENHANCEDSTATUSCODES after the first line.
        """
        session.host_name = hostname
        return [
            *responses[:1],
            "250-PIPELINING",
            "250-ENHANCEDSTATUSCODES",
            *responses[1:],
        ]

    async def handle_NOOP(
        self, server: SMTP, session: Session, envelope: Envelope, arg: str
    ) -> str:
        return "250 2.0.0 OK"

    async def handle_RSET(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return "250 2.0.0 OK"

    async def handle_QUIT(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        return "221 2.0.0 Bye"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        """
        One reply line per accepted recipient, in RCPT order, joined with
        CRLF: aiosmtpd's LMTP class sends whatever this returns as one
        "status" and adds the final CRLF itself.
        """
        queueId = secrets.token_hex(5).upper()
        refusal = END_OF_DATA_TRIGGERS.get(localPart(envelope.mail_from))
        replies = []
        delivered = []
        for index, address in enumerate(envelope.rcpt_tos):
            if refusal is not None:
                replies.append(refusal)
                continue
            trigger = LMTP_RECIPIENT_TRIGGERS.get(localPart(address))
            if trigger is not None:
                replies.append(trigger.format(address=address))
                continue
            delivered.append(index)
            replies.append(f"250 2.0.0 <{address}> Ok: delivered as {queueId}")
        if delivered:
            self.deliver(server, session, envelope, queueId, delivered)
        return "\r\n".join(replies)


class PeerLMTP(LMTP):
    """
    aiosmtpd's LMTP, with the replies it sends itself after the data (552
    too much mail data, 500 line too long) repeated once per recipient, as
    an LMTP client waits for one reply per accepted recipient.
    """

    _recipientsInData = 0

    async def smtp_DATA(self, arg: str) -> None:
        self._recipientsInData = len(self.envelope.rcpt_tos) if self.envelope else 0
        try:
            await super().smtp_DATA(arg)
        finally:
            self._recipientsInData = 0

    async def push(self, status: Any) -> bool:
        if (
            self._recipientsInData > 1
            and isinstance(status, str)
            and status[:3] in ("500", "552")
            and "\r\n" not in status
        ):
            status = "\r\n".join([status] * self._recipientsInData)
            self._recipientsInData = 0
        return cast(bool, await super().push(status))


async def serve(options: argparse.Namespace) -> None:
    """
    Listen on the three SMTP ports (and the LMTP port, when given) until
    SIGTERM or SIGINT.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(options.cert, options.key)
    handler = MaildirHandler(
        Path(options.maildir),
        Path(options.envelopes),
        options.user,
        options.password,
    )
    loop = asyncio.get_running_loop()
    shared: dict[str, Any] = {
        "hostname": "localhost",
        "ident": "ESMTP aiosmtpd (mailclient test peer)",
        "data_size_limit": options.size_limit,
        "enable_SMTPUTF8": True,
        "authenticator": handler.authenticator,
    }
    listeners: dict[int, tuple[dict[str, Any], ssl.SSLContext | None]] = {
        # STARTTLS optional; AUTH allowed without TLS (a client's own
        # refusal to send credentials in clear can be tested here)
        options.smtp_port: ({"tls_context": context, "auth_require_tls": False}, None),
        options.submission_port: (
            {
                "tls_context": context,
                "require_starttls": True,
                "auth_required": True,
                "auth_require_tls": True,
            },
            None,
        ),
        # Implicit TLS: aiosmtpd only counts STARTTLS as TLS for
        # auth_require_tls, so it must be off here; no tls_context, so
        # STARTTLS is not offered inside TLS.
        options.smtps_port: (
            {"auth_required": True, "auth_require_tls": False},
            context,
        ),
    }
    servers = []
    for port, (settings, socketTLS) in listeners.items():

        def factory(settings: dict[str, Any] = settings) -> SMTP:
            return SMTP(handler, loop=loop, **shared, **settings)

        servers.append(
            await loop.create_server(
                factory, options.host, port, ssl=socketTLS, reuse_address=True
            )
        )
    ports = sorted(listeners)
    if options.lmtp_port:
        lmtpHandler = LMTPHandler(
            Path(options.maildir),
            Path(options.envelopes),
            options.user,
            options.password,
        )

        def lmtpFactory() -> SMTP:
            # No tls_context: no STARTTLS.  auth_require_tls without TLS:
            # no AUTH in the LHLO reply, none needed.
            return PeerLMTP(
                lmtpHandler,
                loop=loop,
                hostname="localhost",
                ident="LMTP aiosmtpd (mailclient test peer)",
                data_size_limit=options.size_limit,
                enable_SMTPUTF8=True,
                auth_require_tls=True,
            )

        servers.append(
            await loop.create_server(
                lmtpFactory, options.host, options.lmtp_port, reuse_address=True
            )
        )
        ports.append(options.lmtp_port)
    if options.pid_file:
        Path(options.pid_file).write_text(f"{os.getpid()}\n")
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    log.info("listening on %s ports %s", options.host, ports)
    await stopping.wait()
    for server in servers:
        server.close()
    for server in servers:
        await server.wait_closed()
    log.info("stopped")


def main() -> None:
    """
    Parse the command line and run the server in the foreground.
    """
    parser = argparse.ArgumentParser(description="aiosmtpd peer for mailclient tests")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--submission-port", type=int, required=True)
    parser.add_argument("--smtps-port", type=int, required=True)
    parser.add_argument("--lmtp-port", type=int, help="also serve LMTP on this port")
    parser.add_argument("--cert", required=True, help="PEM chain, server first")
    parser.add_argument("--key", required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--envelopes", required=True)
    parser.add_argument("--pid-file")
    parser.add_argument("--user", default="testuser")
    parser.add_argument("--password", default="testpass")
    parser.add_argument("--size-limit", type=int, default=1048576)
    parser.add_argument("-v", "--verbose", action="store_true")
    options = parser.parse_args()
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    # aiosmtpd warns about auth_required without auth_require_tls (intended on
    # the implicit-TLS port) and about its deprecated login_data on every AUTH.
    warnings.filterwarnings("ignore", message=".*AUTH.*TLS.*")
    logging.getLogger("mail.log").setLevel(
        logging.DEBUG if options.verbose else logging.ERROR
    )
    asyncio.run(serve(options))


if __name__ == "__main__":
    main()
