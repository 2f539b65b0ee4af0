"""
Non-delivery reports (RFC 3464 delivery status notifications, in an RFC 6522
C{multipart/report}), built with the stdlib C{email} package.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from email.charset import QP, Charset
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.policy import SMTP, SMTPUTF8

from mailclient.relay.queue import QueueEntry, QueuedRecipient

__all__ = ["bounceMessage"]

_HEADERS_LIMIT = 64 * 1024


def _originalHeaders(message: bytes) -> str:
    """
    The header section of C{message} (at most 64 KiB), for the
    C{text/rfc822-headers} part.
    """
    end = message.find(b"\r\n\r\n")
    head = message if end < 0 else message[: end + 2]
    return head[:_HEADERS_LIMIT].decode("ascii", "replace")


def _text(text: str, subtype: str) -> MIMEText:
    """
    A readable text part: 7-bit when C{text} is ASCII, else UTF-8 in
    quoted-printable.
    """
    if text.isascii():
        return MIMEText(text, subtype, "us-ascii")
    charset = Charset("utf-8")
    charset.body_encoding = QP
    return MIMEText(text, subtype, charset)  # type: ignore[arg-type]


def _ascii(text: str) -> str:
    """
    C{text} for a delivery-status field, which is ASCII (RFC 3464): other
    characters as Python escapes.
    """
    return text.encode("ascii", "backslashreplace").decode("ascii")


def _addressField(address: str) -> str:
    """
    An address for C{Final-Recipient}: C{rfc822} when ASCII, else the
    C{utf-8} address type of RFC 6533 with C{\\x{HEX}} escapes.
    """
    if address.isascii():
        return f"rfc822; {address}"
    escaped = "".join(c if c.isascii() else f"\\x{{{ord(c):X}}}" for c in address)
    return f"utf-8; {escaped}"


def _status(recipient: QueuedRecipient) -> str:
    if recipient.enhancedStatus and recipient.enhancedStatus.startswith("5."):
        return recipient.enhancedStatus
    if recipient.code is not None and 500 <= recipient.code < 600:
        return "5.0.0"
    # given up on after transient failures: RFC 3463 "delivery time expired"
    return "4.4.7" if recipient.code is None or recipient.code < 500 else "5.0.0"


def bounceMessage(
    entry: QueueEntry,
    failed: Sequence[QueuedRecipient],
    originalMessage: bytes,
    *,
    hostname: str,
    now: float,
) -> bytes:
    """
    The report that tells C{entry}'s sender the message could not be
    delivered to C{failed}.

    @param originalMessage: the message, whose header section is returned.
    @param hostname: the relay's name (C{Reporting-MTA}, the report's
        C{From}).
    @param now: the time of the report.
    """
    report = MIMEMultipart("report", report_type="delivery-status")
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{hostname}>"
    report["To"] = entry.sender
    report["Subject"] = "Undelivered Mail Returned to Sender"
    report["Date"] = email.utils.formatdate(now, usegmt=True)
    report["Message-ID"] = f"<{entry.id}.bounce@{hostname}>"
    report["Auto-Submitted"] = "auto-replied"

    lines = [
        f"This is the mail relay at {hostname}.",
        "",
        "Your message could not be delivered to the recipients below.",
        "",
    ]
    for recipient in failed:
        lines.append(f"<{recipient.address}>: {recipient.text or 'undeliverable'}")
    report.attach(_text("\n".join(lines) + "\n", "plain"))

    perMessage = Message()
    perMessage["Reporting-MTA"] = f"dns; {hostname}"
    perMessage["X-Mailclient-Queue-ID"] = entry.id
    perMessage["Arrival-Date"] = email.utils.formatdate(entry.received, usegmt=True)
    blocks = [perMessage]
    for recipient in failed:
        block = Message()
        block["Final-Recipient"] = _addressField(recipient.address)
        block["Action"] = "failed"
        block["Status"] = _status(recipient)
        if recipient.code is not None:
            block["Diagnostic-Code"] = _ascii(f"smtp; {recipient.code} {recipient.text}")
        blocks.append(block)
    status = MIMEBase("message", "delivery-status")
    status.set_payload(blocks)
    report.attach(status)

    report.attach(_text(_originalHeaders(originalMessage), "rfc822-headers"))
    # A sender with a non-ASCII address gets the report in UTF-8 headers
    # (which then needs SMTPUTF8 on the way).
    return report.as_bytes(policy=SMTP if entry.sender.isascii() else SMTPUTF8)
