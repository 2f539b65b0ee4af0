"""
Compose a message with a text body, an HTML alternative that shows an inline
image, and an attachment; send it with sendMessage() to the recipients its
headers name (two in To, one in Bcc) and print what happened to each.

Usage: python compose.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import base64
import os

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import SendResult, sendMessage
from mailclient.message import Attachment, composeMessage

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))

# A one-pixel PNG, standing in for a logo read with Attachment.fromPath().
LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGOQz9/yHwAENQJCfUyX2wAAAABJRU5ErkJggg=="
)


def main(reactor: object) -> Deferred[None]:
    message = composeMessage(
        fromAddress="Zoë at Reports <reports@example.com>",
        to=["Alice <alice@example.com>", "bob@example.com"],
        bcc="archive@example.com",
        subject="Monthly figures",
        text="The figures for May are attached.\n",
        html=(
            '<p><img src="cid:logo@example.com" alt="logo"></p>\n'
            "<p>The figures for <b>May</b> are attached.</p>\n"
        ),
        inline=[Attachment(LOGO, "logo.png", contentId="logo@example.com")],
        attachments=[
            Attachment(b"month,messages\r\n2024-05,1423\r\n", "figures.csv"),
        ],
    )

    # The envelope comes from the headers: from reports@example.com to
    # alice, bob and archive.  The Bcc header itself is not sent.
    d = sendMessage(HOST, message, port=PORT, timeout=60)
    return d.addCallback(report)


def report(result: SendResult) -> None:
    for recipient in result:
        print(f"{recipient.address}: {recipient.status} {recipient.code}")


if __name__ == "__main__":
    react(main)
