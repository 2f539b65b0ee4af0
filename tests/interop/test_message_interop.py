"""
Interop test of composed messages against the private Postfix: a message
built with L{composeMessage} (text, HTML, an inline image, two attachments,
non-ASCII display name and subject) sent with L{sendMessage} to its To, Cc
and Bcc recipients is delivered to each of them byte for byte as sent, with
no Bcc header anywhere.
"""

from __future__ import annotations

import base64
import copy
import email.policy
import io
from email import message_from_bytes
from email.generator import BytesGenerator
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart

import pytest

from mailclient._sendmail import sendMessage
from mailclient.message import Attachment, composeMessage

from .conftest import Peer, asyncTest, headerValue, stripTraceHeaders, uniqueToken

pytestmark = pytest.mark.interop

TIMEOUT = 10.0

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGOQz9/yHwAENQJCfUyX2wAAAABJRU5ErkJggg=="
)

BLOB = bytes(range(256)) * 64
CSV = b"month,messages\r\n2024-05,1423\r\n2024-06,1517\r\n"


def fixBoundaries(message: EmailMessage, token: str) -> None:
    """
    Give every multipart of C{message} a boundary of its own.  The
    standard generator picks a random one for a multipart without one each
    time it serialises it; fixed ones make the bytes sent computable here.
    """
    for number, part in enumerate(message.walk()):
        if part.is_multipart():
            part.set_boundary(f"=_{token}_{number}")


def serialised(message: EmailMessage, *, utf8: bool) -> bytes:
    """
    C{message} without its Bcc header, as the standard generator writes it
    for SMTP (CRLF line ends; headers in UTF-8 or RFC 2047 encoded).
    """
    withoutBcc = copy.copy(message)
    del withoutBcc["Bcc"]
    buffer = io.BytesIO()
    policy = email.policy.default.clone(linesep="\r\n", utf8=utf8)
    BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(withoutBcc)
    return buffer.getvalue()


def readHeader(data: bytes, name: str) -> str:
    """
    The value of header C{name} of the message C{data}, decoded whether it
    was sent in UTF-8 or RFC 2047 encoded.
    """
    value = headerValue(data, name)
    assert value is not None, name
    return str(make_header(decode_header(value)))


def leaves(message: EmailMessage) -> list[MIMEPart]:
    """
    The leaf parts of C{message}, in order.
    """
    return [p for p in message.walk() if not p.is_multipart()]


@asyncTest
async def test_composedMessageDeliveredIdentical(postfix: Peer) -> None:
    """
    Sent with STARTTLS and AUTH on the submission port, a composed message
    with HTML, an inline image referenced by C{cid:} and two attachments
    (every byte value; a CSV file) goes to its To, Cc and Bcc recipients as
    its headers say.  Each delivered copy, minus the trace headers Postfix
    prepends (and with its LF line ends made CRLF again), is the bytes
    sent; every part decodes to its original; the Bcc header is in no copy,
    and the Bcc recipient's address only in the trace headers of its own.
    """
    token = uniqueToken()
    text = f"token {token}\nGrüße aus dem Test.\n.a line that starts with a dot\n"
    html = f'<p>token {token}</p>\n<p><img src="cid:logo@mailclient.test"></p>\n'
    message = composeMessage(
        fromAddress="Zoë Sender <sender@example.com>",
        to="Ann Reader <ann@example.com>",
        cc="bob@example.com",
        bcc="Hidden Reader <hidden@example.com>",
        subject=f"Grüße {token}",
        text=text,
        html=html,
        inline=[Attachment(PNG, "logo.png", contentId="logo@mailclient.test")],
        attachments=[Attachment(BLOB, "blob.bin"), Attachment(CSV, "figures.csv")],
        messageId=f"<{token}@mailclient.test>",
    )
    fixBoundaries(message, token)

    result = await sendMessage(
        postfix.host,
        message,
        port=postfix.submissionPort,
        username=postfix.username,
        password=postfix.password,
        tls="starttls",
        tlsOptions=postfix.tlsOptions(),
        timeout=TIMEOUT,
        retries=0,
    )

    assert result.sender == "sender@example.com"
    assert result.accepted == (
        "ann@example.com",
        "hidden@example.com",
        "bob@example.com",
    )
    assert message["Bcc"] == "Hidden Reader <hidden@example.com>"
    sent = serialised(message, utf8="SMTPUTF8" in result.extensions)
    assert b"Bcc" not in sent

    copies = await postfix.waitForMessages(3, match=token.encode())
    assert sorted(headerValue(c.data, "Delivered-To") or "" for c in copies) == [
        "ann@example.com",
        "bob@example.com",
        "hidden@example.com",
    ]
    for delivered in copies:
        assert delivered.body == sent
        assert b"bcc:" not in delivered.data.lower()
        assert b"hidden@example.com" not in delivered.body

    # Read back as a mail reader would: the Maildir file (LF line ends).
    parsed = message_from_bytes(
        stripTraceHeaders(copies[0].data), policy=email.policy.default
    )
    assert isinstance(parsed, EmailMessage)
    assert [p.get_content_type() for p in parsed.walk()] == [
        "multipart/mixed",
        "multipart/alternative",
        "text/plain",
        "multipart/related",
        "text/html",
        "image/png",
        "application/octet-stream",
        "text/csv",
    ]
    assert readHeader(copies[0].body, "Subject") == f"Grüße {token}"
    assert readHeader(copies[0].body, "From") == "Zoë Sender <sender@example.com>"
    assert readHeader(copies[0].body, "To") == "Ann Reader <ann@example.com>"
    assert readHeader(copies[0].body, "Cc") == "bob@example.com"
    plain, htmlPart, logo, blob, csv = leaves(parsed)
    assert plain.get_content() == text
    assert htmlPart.get_content() == html
    assert (logo.get_content_type(), logo["Content-ID"]) == (
        "image/png",
        "<logo@mailclient.test>",
    )
    assert logo.get_content_disposition() == "inline"
    assert logo.get_content() == PNG
    assert (blob.get_filename(), blob.get_content()) == ("blob.bin", BLOB)
    assert (csv.get_filename(), csv.get_content_type()) == ("figures.csv", "text/csv")
    assert csv.get_payload(decode=True) == CSV
