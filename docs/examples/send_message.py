"""
Send one message with sendmail() and print what happened to each recipient.

Usage: python send_message.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from email.message import EmailMessage

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import SendResult, sendmail

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


def main(reactor: object) -> Deferred[None]:
    message = EmailMessage()
    message["From"] = "Reports <reports@example.com>"
    message["To"] = "alice@example.com, bob@example.com"
    message["Subject"] = "Monthly figures"
    message.set_content("The figures are attached.\n")
    message.add_attachment(
        "month,messages\n2024-05,1423\n", subtype="csv", filename="figures.csv"
    )

    # Same positional arguments as twisted.mail.smtp.sendmail.  With no
    # tls= argument the session is upgraded with STARTTLS when the server
    # offers it (certificate verified), and continues in clear otherwise.
    d = sendmail(
        HOST,
        "reports@example.com",
        ["alice@example.com", "bob@example.com"],
        message,
        port=PORT,
        timeout=60,
    )
    return d.addCallback(report)


def report(result: SendResult) -> None:
    # The Deferred fires when at least one recipient accepted the message;
    # every recipient has its own result.
    for recipient in result:
        print(
            f"{recipient.address}: {recipient.status} {recipient.code} {recipient.text}"
        )
    print(f"final reply: {result.reply}")
    print(f"queue id: {result.queueId}")


if __name__ == "__main__":
    react(main)
