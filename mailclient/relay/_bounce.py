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

from mailclient.relay.queue import QueuedRecipient, QueueEntry

__all__ = ["bounceMessage"]

_HEADERS_LIMIT = 64 * 1024


def _originalHeaders(message: bytes) -> str:
    """
    The header section of C{message} (at most 64 KiB), for the
    C{text/rfc822-headers} part: the lines before the first empty line,
    whether they end with CRLF or a bare LF.  UTF-8 header fields (RFC
    6532) are kept; other octets that are not ASCII become U+FFFD.
    """
    head = []
    size = 0
    for line in message.splitlines(keepends=True):
        if line in (b"\r\n", b"\n", b"\r") or size >= _HEADERS_LIMIT:
            break
        head.append(line)
        size += len(line)
    return b"".join(head)[:_HEADERS_LIMIT].decode("utf-8", "replace")


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
    C{text} for a delivery-status field, which is one line of ASCII (RFC
    3464): line breaks (a multiline reply's text has them) and other white
    space as single spaces, other characters as Python escapes.
    """
    return "".join(
        c if " " <= c <= "~" else c.encode("unicode_escape").decode("ascii")
        for c in " ".join(text.split())
    )


def _addressField(address: str) -> str:
    """
    An address for C{Final-Recipient}: C{rfc822} when ASCII, else the
    C{utf-8} address type of RFC 6533 in its 7-bit C{utf-8-addr-xtext}
    form: C{\\x{HEX}} for every character that is not printable ASCII,
    and for C{"+"}, C{"="} and C{"\\"}.
    """
    if address.isascii():
        return f"rfc822; {address}"
    escaped = "".join(
        c if "!" <= c <= "~" and c not in "+=\\" else f"\\x{{{ord(c):X}}}"
        for c in address
    )
    return f"utf-8; {escaped}"


def _fold(name: str, value: str) -> str:
    """
    C{value} for the field C{name}, folded at spaces into lines of at most
    78 characters where it can be (a continuation line starts with the
    space it was folded at, so unfolding gives C{value} back).

    The C{email} package is not left to fold these fields: it would make
    RFC 2047 encoded words of a long address or word, which have no place
    in a C{message/delivery-status} part.
    """
    lines: list[str] = []
    line, *words = value.split(" ")
    width = len(name) + 2
    for word in words:
        if word and line.strip() and width + len(line) + 1 + len(word) > 78:
            lines.append(line)
            line = word
            width = 1
        else:
            line += " " + word
    lines.append(line)
    return "\n ".join(lines)


def _status(recipient: QueuedRecipient) -> str:
    if recipient.enhancedStatus and recipient.enhancedStatus.startswith("5."):
        return recipient.enhancedStatus
    if recipient.code is not None and 500 <= recipient.code < 600:
        return "5.0.0"
    # given up on after transient failures: RFC 3463 "delivery time expired"
    return "4.4.7"


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
    blocks: list[Message | str] = [perMessage]
    for recipient in failed:
        block = Message()
        block["Final-Recipient"] = _fold(
            "Final-Recipient", _addressField(recipient.address)
        )
        block["Action"] = "failed"
        block["Status"] = _status(recipient)
        if recipient.code is not None:
            block["Diagnostic-Code"] = _fold(
                "Diagnostic-Code", _ascii(f"smtp; {recipient.code} {recipient.text}")
            )
        blocks.append(block)
    status = MIMEBase("message", "delivery-status")
    status.set_payload(blocks)
    report.attach(status)

    report.attach(_text(_originalHeaders(originalMessage), "rfc822-headers"))
    # A sender with a non-ASCII address gets the report in UTF-8 headers
    # (which then needs SMTPUTF8 on the way).  The fields are written as
    # they are (see _fold), never refolded into encoded words.
    policy = SMTP if entry.sender.isascii() else SMTPUTF8
    return report.as_bytes(policy=policy.clone(refold_source="none"))
