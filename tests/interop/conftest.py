"""
Fixtures and helpers for the interop tests against real SMTP servers.

The servers (a private Postfix and an aiosmtpd peer) are started by
C{.ci/peers/start.sh}, which describes each one in
C{<run>/<peer>/peer.json}; C{<run>} is C{$MAILCLIENT_PEERS_RUN}, by default
C{<repo>/run/peers}.  The session-scoped fixtures L{postfix} and
L{aiosmtpd_peer} use a peer that is already running, or start it (and stop it
again at the end of the session).  When a peer cannot be started (not root,
Postfix not installed) the tests that need it are skipped, unless
C{MAILCLIENT_REQUIRE_PEERS=1} is set: then they fail with the reason.  The
aiosmtpd peer also serves LMTP (L{Peer.lmtpPort}; fixture L{lmtp_peer}).
What each peer offers in its EHLO/LHLO reply is pinned down by
C{test_peers_offer.py}.

Delivered messages are read back from the peer's Maildir.  Postfix delivers
through its queue, so a message appears shortly after the 250 reply: use
L{Peer.waitForMessages}.  Postfix stores LF line endings and prepends trace
headers; L{bodyAsSent} undoes both.  aiosmtpd stores the exact DATA bytes.
Postfix's delivery status notifications land in its Maildir too:
L{Peer.deliveryReports}.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, cast

import pytest
import pytest_twisted
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import Certificate, optionsForClientTLS

if TYPE_CHECKING:
    # Imported where used, so that the peer-contract tests
    # (test_peers_offer.py, stdlib only) run even while mailclient is broken.
    from mailclient import SendResult
    from mailclient.errors import SendFailedError

REPOSITORY = Path(__file__).resolve().parents[2]
PEERS_SCRIPTS = REPOSITORY / ".ci" / "peers"
REQUIRE_PEERS = os.environ.get("MAILCLIENT_REQUIRE_PEERS") == "1"

# Header fields Postfix adds in front of a message on receipt and delivery.
TRACE_FIELDS = frozenset(
    {b"return-path", b"x-original-to", b"delivered-to", b"received"}
)

_P = ParamSpec("_P")


def asyncTest(
    f: Callable[_P, Awaitable[None]],
) -> Callable[_P, Awaitable[None]]:
    """
    Run an C{async def} test in the Twisted reactor (C{pytest_twisted}'s
    C{ensureDeferred}, with its type kept for mypy).
    """
    return cast(Callable[_P, Awaitable[None]], pytest_twisted.ensureDeferred(f))


def peersRunDirectory() -> Path:
    """
    The directory the peer scripts keep their state in (as C{start.sh}
    computes it).
    """
    configured = os.environ.get("MAILCLIENT_PEERS_RUN")
    return Path(configured or REPOSITORY / "run" / "peers").resolve()


# -- delivered messages ----------------------------------------------------


def stripTraceHeaders(data: bytes) -> bytes:
    """
    Remove the block of trace header fields (C{Return-Path}, C{X-Original-To},
    C{Delivered-To}, C{Received}, folded continuation lines included) that an
    MTA put in front of C{data}.  Only the leading block is removed; the same
    fields further down belong to the message.
    """
    lines = data.splitlines(keepends=True)
    index = 0
    while index < len(lines):
        name, colon, _ = lines[index].partition(b":")
        if not colon or name.strip().lower() not in TRACE_FIELDS:
            break
        index += 1
        while index < len(lines) and lines[index][:1] in (b" ", b"\t"):
            index += 1
    return b"".join(lines[index:])


def bodyAsSent(data: bytes) -> bytes:
    """
    Turn a message as Postfix stored it back into the bytes the client sent:
    the trace headers go, and every LF becomes CRLF again.  (This is exact
    for messages whose lines all ended in CRLF, which is what SMTP carries.)
    """
    return re.sub(rb"(?<!\r)\n", b"\r\n", stripTraceHeaders(data))


def headerValue(data: bytes, name: str) -> str | None:
    """
    The first value of header field C{name} in the header block of C{data},
    unfolded, or L{None}.
    """
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    match = re.search(
        rb"(?im)^" + re.escape(name.encode("ascii")) + rb":[ \t]*(.*(?:\r?\n[ \t].*)*)",
        head,
    )
    if match is None:
        return None
    return (
        re.sub(rb"\r?\n[ \t]+", b" ", match.group(1)).strip().decode("utf-8", "replace")
    )


def isDeliveryReport(data: bytes) -> bool:
    """
    Whether the message C{data} is a delivery status notification: its
    C{Content-Type} is C{multipart/report} with C{report-type=delivery-status}.
    """
    contentType = (headerValue(data, "Content-Type") or "").lower()
    return contentType.startswith("multipart/report") and bool(
        re.search(r'report-type\s*=\s*"?delivery-status"?\s*(;|$)', contentType)
    )


@dataclass(frozen=True)
class Delivered:
    """
    One delivered copy of a message (one file in the Maildir).

    @ivar path: the Maildir file.
    @ivar data: its content, as stored.
    @ivar body: the bytes the client sent, as far as the server preserved
        them (Postfix: L{bodyAsSent}; aiosmtpd: the file unchanged).
    @ivar envelope: the envelope record written by the aiosmtpd peer
        (C{mail_from}, C{rcpt_to}, C{recipient}, C{auth_user}, C{tls}, ...),
        or L{None} for Postfix.
    """

    path: Path
    data: bytes
    body: bytes
    envelope: Mapping[str, Any] | None


@dataclass(frozen=True)
class Peer:
    """
    A running SMTP server to test against, as described by its C{peer.json}.
    """

    name: str
    host: str
    ports: Mapping[str, int]
    caCert: Path
    tlsServerName: str
    username: str
    password: str
    maildir: Path
    envelopes: Path | None
    sizeLimit: int
    authMechanisms: tuple[str, ...]
    description: Mapping[str, Any]

    @classmethod
    def fromDescription(cls, description: Mapping[str, Any]) -> Peer:
        """
        Build a L{Peer} from the JSON object C{start.sh} printed.
        """
        envelopes = description.get("envelopes")
        return cls(
            name=description["peer"],
            host=description["host"],
            ports={k: int(v) for k, v in description["ports"].items()},
            caCert=Path(description["ca_cert"]),
            tlsServerName=description["tls_server_name"],
            username=description["username"],
            password=description["password"],
            maildir=Path(description["maildir"]),
            envelopes=Path(envelopes) if envelopes else None,
            sizeLimit=int(description["size_limit"]),
            authMechanisms=tuple(description.get("auth_mechanisms", ())),
            description=description,
        )

    @property
    def smtpPort(self) -> int:
        """
        The plain port: STARTTLS and AUTH offered, neither required.
        """
        return self.ports["smtp"]

    @property
    def submissionPort(self) -> int:
        """
        The submission port: STARTTLS and AUTH required.
        """
        return self.ports["submission"]

    @property
    def smtpsPort(self) -> int:
        """
        The implicit-TLS port: AUTH required.
        """
        return self.ports["smtps"]

    @property
    def lmtpPort(self) -> int | None:
        """
        The LMTP port (the aiosmtpd peer has one: LHLO, no TLS, no AUTH, one
        reply per recipient after the data; its deliveries go to the same
        Maildir, with C{"protocol": "LMTP"} in the envelope record), or
        L{None} when the peer has none.  The L{lmtp_peer} fixture skips when
        it is L{None}.
        """
        port = self.ports.get("lmtp")
        return None if port is None else int(port)

    async def submit(
        self, recipients: list[str], message: bytes, sender: str = "sender@example.com"
    ) -> SendResult:
        """
        Send over the submission port: STARTTLS verified against the test
        CA, then AUTH with the peer's credentials; no retries.
        """
        from mailclient import sendmail

        return await sendmail(
            self.host,
            sender,
            recipients,
            message,
            port=self.submissionPort,
            username=self.username,
            password=self.password,
            tls="starttls",
            tlsOptions=self.tlsOptions(),
            timeout=10.0,
            retries=0,
        )

    def tlsOptions(
        self, hostname: str | None = None, trusted: bool = True
    ) -> IOpenSSLClientConnectionCreator:
        """
        Client TLS options for this peer: verify C{hostname} (default: the
        name on the peer's certificate) against the test CA, or with
        C{trusted=False} against the platform's trust store, which does not
        know the test CA.
        """
        name = hostname or self.tlsServerName
        if not trusted:
            return optionsForClientTLS(name)
        return optionsForClientTLS(
            name, trustRoot=Certificate.loadPEM(self.caCert.read_bytes())
        )

    def messages(self) -> list[Delivered]:
        """
        Every message delivered so far, oldest first.
        """
        found: list[tuple[int, str, Path]] = []
        for sub in ("new", "cur"):
            folder = self.maildir / sub
            if folder.is_dir():
                for path in folder.iterdir():
                    try:
                        found.append((path.stat().st_mtime_ns, path.name, path))
                    except FileNotFoundError:  # cleared meanwhile
                        continue
        delivered = []
        for _, name, path in sorted(found):
            data = path.read_bytes()
            envelope = None
            if self.envelopes is not None:
                record = self.envelopes / (name.split(":")[0] + ".json")
                if record.exists():
                    envelope = json.loads(record.read_text())
            body = data if self.envelopes is not None else bodyAsSent(data)
            delivered.append(Delivered(path, data, body, envelope))
        return delivered

    async def waitForMessages(
        self,
        count: int,
        match: bytes | None = None,
        timeout: float = 10.0,
    ) -> list[Delivered]:
        """
        Wait, without blocking the reactor, until at least C{count} messages
        (containing C{match}, when given) were delivered, and return them.
        Returns what there is after C{timeout} seconds.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        deadline = time.monotonic() + timeout
        while True:
            found = [m for m in self.messages() if match is None or match in m.data]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            await deferLater(cast(Any, reactor), 0.02, lambda: None)

    async def assertNothingDelivered(self, match: bytes, settle: float = 0.4) -> None:
        """
        Give the server C{settle} seconds to deliver, then check that no
        message containing C{match} arrived.
        """
        found = await self.waitForMessages(1, match=match, timeout=settle)
        assert found == [], f"unexpected delivery: {found[0].path}"

    def deliveryReports(self, match: bytes | None = None) -> list[Delivered]:
        """
        The delivery status notifications (DSNs: C{Content-Type:
        multipart/report; report-type=delivery-status}) delivered so far,
        oldest first, only those containing C{match} when given (e.g. the
        C{ENVID}, which Postfix puts in C{Original-Envelope-Id}).

        Postfix mails them from C{MAILER-DAEMON} to the envelope sender,
        whose domain is one of its own, so they land in the same Maildir:
        a success report for C{NOTIFY=SUCCESS} recipients, a failure report
        for the C{bounce@} trigger (unless C{NOTIFY=NEVER}).  Use
        L{waitForMessages} with C{match} to wait for one.
        """
        return [
            delivered
            for delivered in self.messages()
            if isDeliveryReport(delivered.data)
            and (match is None or match in delivered.data)
        ]

    def clearMaildir(self) -> None:
        """
        Delete every delivered message (and envelope record).
        """
        folders = [self.maildir / "new", self.maildir / "cur"]
        if self.envelopes is not None:
            folders.append(self.envelopes)
        for folder in folders:
            if folder.is_dir():
                for path in folder.iterdir():
                    path.unlink(missing_ok=True)


def resultOf(error: SendFailedError) -> SendResult:
    """
    The L{SendResult} a failed send carries (always there for a
    L{SendFailedError}).
    """
    result = error.result
    assert result is not None, f"{error!r} carries no result"
    return result


# -- messages to send ------------------------------------------------------

ODD_LINES = (
    ".a line that starts with a dot\r\n"
    ".\r\n"
    "..two dots\r\n"
    "trailing spaces   \r\n"
    "\r\n"
    "..\r\n"
    "last line\r\n"
)


def uniqueToken() -> str:
    """
    A token that identifies one test's message in a shared Maildir.
    """
    return uuid.uuid4().hex


def buildMessage(token: str, sender: str, recipients: list[str]) -> bytes:
    """
    A MIME message with a text part full of lines that need dot-stuffing
    (one of them exactly C{"."}) and a binary attachment, as the CRLF bytes
    an SMTP client sends.  C{token} is in the subject and the body.
    """
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = f"mailclient interop {token}"
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = make_msgid(idstring=token, domain="mailclient.test")
    message.set_content(f"token {token}\r\n" + ODD_LINES, cte="7bit")
    message.add_attachment(
        bytes(range(256)) * 16,
        maintype="application",
        subtype="octet-stream",
        filename="blob.bin",
    )
    data = message.as_bytes(policy=SMTP_POLICY)
    assert data.endswith(b"\r\n") and b"\r\n.\r\n" in data
    return data


# -- starting and stopping the peers ---------------------------------------


def _unavailable(reason: str) -> NoReturn:
    if REQUIRE_PEERS:
        pytest.fail(f"{reason} (MAILCLIENT_REQUIRE_PEERS=1)", pytrace=False)
    pytest.skip(reason)


def _processAlive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _runningPeer(name: str) -> Peer | None:
    """
    The peer C{name} if it is up: its description exists, its process lives,
    its plain port accepts connections.
    """
    try:
        description = json.loads((peersRunDirectory() / name / "peer.json").read_text())
        pid = int(Path(description["pid_file"]).read_text().strip())
    except (OSError, ValueError, KeyError):
        return None
    if not _processAlive(pid):
        return None
    peer = Peer.fromDescription(description)
    return peer if _listening(peer.host, peer.smtpPort) else None


def _whyNotStartable(name: str) -> str | None:
    if name == "postfix":
        if os.geteuid() != 0:
            return "the Postfix peer needs root (it switches to its own users)"
        if not Path("/usr/sbin/postfix").exists():
            return "Postfix is not installed (run .ci/peers/setup.sh as root)"
    return None


def _script(
    script: str, *args: str, timeout: float
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # the aiosmtpd peer runs with this interpreter, which has the test extra
    env.setdefault("MAILCLIENT_PEERS_PYTHON", sys.executable)
    return subprocess.run(
        ["bash", str(PEERS_SCRIPTS / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def _peerSession(name: str) -> Iterator[Peer]:
    peer = _runningPeer(name)
    if peer is not None:
        yield peer
        return
    reason = _whyNotStartable(name)
    if reason is not None:
        _unavailable(reason)
    try:
        started = _script("start.sh", name, timeout=120)
    except subprocess.TimeoutExpired:
        _unavailable(f"{name} peer: start.sh timed out")
    if started.returncode != 0 or not started.stdout.strip():
        _unavailable(
            f"{name} peer could not be started (exit {started.returncode}): "
            + started.stderr.strip()[-2000:]
        )
    peer = Peer.fromDescription(json.loads(started.stdout.strip().splitlines()[-1]))
    try:
        yield peer
    finally:
        _script("stop.sh", name, timeout=60)


@pytest.fixture(scope="session")
def postfix() -> Iterator[Peer]:
    """
    The private Postfix instance (started for this session when it is not
    already running).
    """
    yield from _peerSession("postfix")


@pytest.fixture(scope="session")
def aiosmtpd_peer() -> Iterator[Peer]:
    """
    The aiosmtpd peer (started for this session when it is not already
    running).
    """
    yield from _peerSession("aiosmtpd")


@pytest.fixture
def lmtp_peer(aiosmtpd_peer: Peer) -> Peer:
    """
    The aiosmtpd peer, which also serves LMTP on L{Peer.lmtpPort}; skipped
    (a failure with C{MAILCLIENT_REQUIRE_PEERS=1}) when it has no LMTP port,
    e.g. when an older start script started it.
    """
    if aiosmtpd_peer.lmtpPort is None:
        _unavailable(
            "the aiosmtpd peer has no LMTP port (restart it: .ci/peers/stop.sh"
            " aiosmtpd; .ci/peers/start.sh aiosmtpd)"
        )
    return aiosmtpd_peer
