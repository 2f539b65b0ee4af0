"""
L{mailclient.relay._bounce.bounceMessage}: the non-delivery report is an
RFC 6522 C{multipart/report} with an RFC 3464 C{message/delivery-status}
part (one block per failed recipient, its C{Status} and C{Diagnostic-Code}
from the last reply, ASCII whatever the addresses and replies), the
original's header section only, and CRLF line ends throughout.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Sequence
from email.message import EmailMessage, Message, MIMEPart

import pytest

from mailclient.relay._bounce import bounceMessage
from mailclient.relay.queue import QueuedRecipient, QueueEntry

HOSTNAME = "relay.example.net"
SENDER = "alice@example.com"
RECEIVED = 1_700_000_000.0
NOW = RECEIVED + 5 * 86400
QUEUE_ID = "018BCFE56800A1B2C3D4E5F60"
HEADERS = (
    b"From: Alice <alice@example.com>\r\n"
    b"To: bob@example.net\r\n"
    b"Subject: the quarterly numbers\r\n"
    b"Message-ID: <1234@example.com>\r\n"
)
BODY = b"The secret body.\r\n\r\nSecond paragraph.\r\n"
ORIGINAL = HEADERS + b"\r\n" + BODY

NO_SUCH_USER = QueuedRecipient(
    "bob@example.net", "failed", 550, "5.1.1", "no such user"
)


def makeEntry(
    failed: Sequence[QueuedRecipient] = (NO_SUCH_USER,), sender: str = SENDER
) -> QueueEntry:
    """
    A queue entry from C{sender} with C{failed} and a delivered recipient.
    """
    delivered = QueuedRecipient("carol@example.org", "delivered", 250, "2.0.0", "OK")
    return QueueEntry(
        id=QUEUE_ID,
        sender=sender,
        recipients=(delivered, *failed),
        received=RECEIVED,
        attempts=3,
    )


def bounce(
    failed: Sequence[QueuedRecipient] = (NO_SUCH_USER,),
    original: bytes = ORIGINAL,
    sender: str = SENDER,
) -> bytes:
    """
    The report on C{failed} of a message from C{sender}.
    """
    return bounceMessage(
        makeEntry(failed, sender), failed, original, hostname=HOSTNAME, now=NOW
    )


def parse(report: bytes) -> EmailMessage:
    """
    C{report} parsed with the default policy, with no defect anywhere.
    """
    message = email.message_from_bytes(report, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    for part in message.walk():
        assert part.defects == [], (part.get_content_type(), part.defects)
    return message


def parts(report: bytes) -> list[MIMEPart]:
    """
    The parts of C{report}.
    """
    return list(parse(report).iter_parts())


def statusBlocks(report: bytes) -> list[Message]:
    """
    The blocks of the C{message/delivery-status} part of C{report}: the
    per-message one first.
    """
    blocks = parts(report)[1].get_payload()
    assert isinstance(blocks, list)
    return [block for block in blocks if isinstance(block, Message)]


def rawStatusPart(report: bytes) -> bytes:
    """
    The octets of C{report} from the C{message/delivery-status} part's
    first field to its end.
    """
    start = report.index(b"Reporting-MTA:")
    return report[start : report.index(b"\r\n--", start)]


def test_structure() -> None:
    """
    The report is a C{multipart/report} of report type C{delivery-status}
    with three parts: the text for people, the C{message/delivery-status}
    and the original's C{text/rfc822-headers}.
    """
    message = parse(bounce())
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    assert message["MIME-Version"] == "1.0"
    assert [part.get_content_type() for part in message.iter_parts()] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]


def test_headers() -> None:
    """
    The report comes from C{MAILER-DAEMON} at the relay, goes to the
    original's sender, says it is C{Auto-Submitted: auto-replied}, is dated
    C{now} and has a message id of the relay made from the queue id.
    """
    message = parse(bounce())
    assert message["From"].addresses[0].addr_spec == f"MAILER-DAEMON@{HOSTNAME}"
    assert message["To"].addresses[0].addr_spec == SENDER
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Message-ID"] == f"<{QUEUE_ID}.bounce@{HOSTNAME}>"
    assert message["Date"].datetime.timestamp() == NOW


def test_perMessageFields() -> None:
    """
    The first block of the delivery status names the reporting relay, the
    queue id and when the message arrived.
    """
    perMessage = statusBlocks(bounce())[0]
    assert perMessage["Reporting-MTA"] == f"dns; {HOSTNAME}"
    assert perMessage["X-Mailclient-Queue-ID"] == QUEUE_ID
    arrival = email.utils.parsedate_to_datetime(perMessage["Arrival-Date"])
    assert arrival.timestamp() == RECEIVED
    assert "Final-Recipient" not in perMessage


@pytest.mark.parametrize(
    ("code", "enhanced", "status"),
    [
        (550, "5.1.1", "5.1.1"),
        (554, "5.7.1", "5.7.1"),
        (550, None, "5.0.0"),
        (552, "", "5.0.0"),
        (550, "4.2.2", "5.0.0"),
        (450, "4.2.2", "4.4.7"),
        (421, None, "4.4.7"),
        (None, None, "4.4.7"),
        (None, "5.4.4", "5.4.4"),
    ],
)
def test_status(code: int | None, enhanced: str | None, status: str) -> None:
    """
    A recipient's C{Status} is the enhanced status of its last reply when
    that is a permanent one, else C{5.0.0} for a permanent reply code, else
    C{4.4.7} (delivery time expired: given up on after transient failures
    or no reply at all).  The C{Diagnostic-Code} is that reply, when there
    was one; every recipient is C{Action: failed}.
    """
    recipient = QueuedRecipient("bob@example.net", "failed", code, enhanced, "nope")
    [_, block] = statusBlocks(bounce([recipient]))
    assert block["Final-Recipient"] == "rfc822; bob@example.net"
    assert block["Action"] == "failed"
    assert block["Status"] == status
    if code is None:
        assert "Diagnostic-Code" not in block
    else:
        assert block["Diagnostic-Code"] == f"smtp; {code} nope"


def test_everyFailedRecipient() -> None:
    """
    There is a block for each failed recipient, in order, and none for the
    others; the text for people lists each with its reply (or
    C{undeliverable} when there is none).
    """
    failed = [
        NO_SUCH_USER,
        QueuedRecipient("dave@example.org", "failed", 552, "5.2.2", "mailbox full"),
        QueuedRecipient("erin@example.org", "failed", None, None, ""),
    ]
    report = bounce(failed)
    blocks = statusBlocks(report)
    assert [b["Final-Recipient"] for b in blocks[1:]] == [
        "rfc822; bob@example.net",
        "rfc822; dave@example.org",
        "rfc822; erin@example.org",
    ]
    assert [b["Status"] for b in blocks[1:]] == ["5.1.1", "5.2.2", "4.4.7"]
    text = parts(report)[0].get_content()
    assert f"This is the mail relay at {HOSTNAME}." in text
    assert "<bob@example.net>: no such user" in text
    assert "<dave@example.org>: mailbox full" in text
    assert "<erin@example.org>: undeliverable" in text
    assert "carol@example.org" not in text
    assert b"carol@example.org" not in report


def test_nonASCIIReplyText() -> None:
    """
    A reply text that is not ASCII is shown as it is to people (in UTF-8)
    and with escapes in the C{Diagnostic-Code}, which stays ASCII.
    """
    recipient = QueuedRecipient(
        "bob@example.net", "failed", 550, "5.1.1", "Benutzer unbekannt: Grüße, 用户 😞"
    )
    report = bounce([recipient])
    [_, block] = statusBlocks(report)
    assert block["Diagnostic-Code"] == (
        "smtp; 550 Benutzer unbekannt: Gr\\xfc\\xdfe, \\u7528\\u6237 \\U0001f61e"
    )
    assert rawStatusPart(report).isascii()
    assert report.isascii()
    assert "Grüße, 用户 😞" in parts(report)[0].get_content()


def test_nonASCIIRecipient() -> None:
    """
    A recipient whose address is not ASCII is given in the C{utf-8} address
    type of RFC 6533, in its ASCII form: C{\\x{HEX}} for each character
    that is not printable ASCII and for C{+}, C{=} and C{\\}.
    """
    recipient = QueuedRecipient(
        "jürgen+tag=1\\x@bücher.example", "failed", 550, "5.1.1", "unbekannt"
    )
    report = bounce([recipient])
    [_, block] = statusBlocks(report)
    assert block["Final-Recipient"] == (
        "utf-8; j\\x{FC}rgen\\x{2B}tag\\x{3D}1\\x{5C}x@b\\x{FC}cher.example"
    )
    assert rawStatusPart(report).isascii()
    text = parts(report)[0].get_content()
    assert "<jürgen+tag=1\\x@bücher.example>: unbekannt" in text


def test_astralRecipient() -> None:
    """
    Characters beyond the basic plane get their whole code point.
    """
    recipient = QueuedRecipient("😞@例え.jp", "failed", 550, None, "")
    [_, block] = statusBlocks(bounce([recipient]))
    assert block["Final-Recipient"] == "utf-8; \\x{1F61E}@\\x{4F8B}\\x{3048}.jp"


def test_multilineReply() -> None:
    """
    The text of a multiline reply (its lines joined by newlines) is one
    line in the C{Diagnostic-Code}, not a broken field.
    """
    recipient = QueuedRecipient(
        "bob@example.net",
        "failed",
        550,
        "5.7.1",
        "rejected by policy\r\nsee https://example.net/policy\nand\tgo away",
    )
    report = bounce([recipient])
    [_, block] = statusBlocks(report)
    assert block["Diagnostic-Code"] == (
        "smtp; 550 rejected by policy see https://example.net/policy and go away"
    )
    assert block["Status"] == "5.7.1"


def test_longFieldsAreFoldedNotEncoded() -> None:
    """
    A long reply and a long address are folded at spaces where they can
    be, never made RFC 2047 encoded words; unfolded, they are whole.
    """
    address = "srs0=abcd=ef=" + "x" * 80 + "@forwarder.example.net"
    text = "w" * 120 + " and then some words" * 10
    recipient = QueuedRecipient(address, "failed", 550, "5.1.1", text)
    report = bounce([recipient])
    assert b"=?" not in report
    [_, block] = statusBlocks(report)
    assert block["Final-Recipient"] == f"rfc822; {address}"
    assert block["Diagnostic-Code"] == f"smtp; 550 {text}"
    lines = rawStatusPart(report).split(b"\r\n")
    assert b"Diagnostic-Code: smtp; 550" in lines
    for line in lines:
        assert len(line) <= 78 or b" " not in line.strip(), line


def test_originalHeadersOnly() -> None:
    """
    The third part is the original's header section, without its body.
    """
    report = bounce()
    assert BODY.strip() not in report
    assert b"secret" not in report
    assert normalized(parts(report)[2].get_content()) == HEADERS.decode()


def normalized(text: str) -> str:
    """
    C{text} with CRLF line ends.
    """
    return text.replace("\r\n", "\n").replace("\n", "\r\n")


@pytest.mark.parametrize(
    ("original", "headers"),
    [
        (ORIGINAL, HEADERS),
        (ORIGINAL.replace(b"\r\n", b"\n"), HEADERS),
        (HEADERS, HEADERS),
        (HEADERS + b"\r\n", HEADERS),
        (b"Subject: no newline at the end", b"Subject: no newline at the end"),
        (b"", b""),
        (b"\r\nonly a body\r\n\r\nof two paragraphs\r\n", b""),
        (b"\nonly a body\n\nof two paragraphs\n", b""),
        (b"Subject: x\r\n\tfolded\r\n\r\nbody\r\n", b"Subject: x\r\n\tfolded\r\n"),
    ],
    ids=[
        "crlf",
        "bareLF",
        "noBody",
        "emptyBody",
        "noLineEnd",
        "empty",
        "noHeaders",
        "noHeadersBareLF",
        "folded",
    ],
)
def test_headerSection(original: bytes, headers: bytes) -> None:
    """
    The header section ends at the first empty line, whatever the line
    ends; a message without one is all header, one that starts with one
    has none.
    """
    content = parts(bounce(original=original))[2].get_content()
    assert normalized(content) == headers.decode()


def test_utf8Headers() -> None:
    """
    UTF-8 header fields of the original (RFC 6532) are kept, octets that
    are not UTF-8 become U+FFFD; the report stays 7-bit.
    """
    original = "Subject: Grüße\r\nX-Bad: \xff\r\n\r\nbody\r\n".encode("latin-1")
    original = original.replace("Grüße".encode("latin-1"), "Grüße".encode())
    report = bounce(original=original)
    assert report.isascii()
    content = parts(report)[2].get_content()
    assert normalized(content) == "Subject: Grüße\r\nX-Bad: \ufffd\r\n"


def test_hugeHeaderSection() -> None:
    """
    At most 64 KiB of the original's header section is included.
    """
    original = b"".join(b"X-Filler-%05d: %s\r\n" % (i, b"y" * 60) for i in range(5000))
    report = bounce(original=original + b"\r\nbody\r\n")
    content = parts(report)[2].get_content()
    assert 60 * 1024 < len(content.encode()) <= 64 * 1024 + 2000
    assert content.startswith("X-Filler-00000: ")
    assert "X-Filler-04999" not in content


def test_nonASCIISender() -> None:
    """
    A report to a sender whose address is not ASCII has UTF-8 header
    fields (it needs C{SMTPUTF8} on the way) and still parses; the
    delivery status stays ASCII.
    """
    sender = "jürgen@bücher.example"
    report = bounce(sender=sender)
    assert f"To: {sender}\r\n".encode() in report
    parse(report)
    # The email package reads octets that are not ASCII as surrogates: read
    # the report as the UTF-8 it is.
    message = email.message_from_string(report.decode(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == sender
    assert rawStatusPart(report).isascii()


def test_asciiReport() -> None:
    """
    With ASCII addresses the whole report is ASCII (7-bit), even when the
    replies are not.
    """
    recipient = QueuedRecipient("bob@example.net", "failed", 550, None, "nö")
    assert bounce([recipient]).isascii()


REPORTS = {
    "plain": lambda: bounce(),
    "bareLF": lambda: bounce(original=b"Subject: x\nFrom: y\n\nbody\nmore\n"),
    "bareCR": lambda: bounce(original=b"Subject: x\rFrom: y\r\rbody\r"),
    "nonASCII": lambda: bounce(
        [
            QueuedRecipient("jürgen@bücher.example", "failed", 550, None, "nö\nja"),
            QueuedRecipient("x@example.net", "failed", 421, None, "w" * 200),
        ],
        original="Subject: Grüße\n\nbody\n".encode(),
        sender="jürgen@bücher.example",
    ),
}


@pytest.mark.parametrize("makeReport", REPORTS.values(), ids=REPORTS.keys())
def test_crlf(makeReport: object) -> None:
    """
    Every line of the report ends with CRLF: there is no bare CR or LF,
    and no line is longer than 998 octets.
    """
    assert callable(makeReport)
    report = makeReport()
    assert isinstance(report, bytes)
    assert report.endswith(b"\r\n")
    lines = report.split(b"\r\n")
    assert lines[-1] == b""
    for line in lines:
        assert b"\r" not in line and b"\n" not in line, line
        assert len(line) <= 998
    parse(report)
