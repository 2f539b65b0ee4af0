"""
The Django-style API: get_connection() as an async context manager,
send_messages() over one connection, send_mail(), send_mass_mail(), and
failSilently; every message's report gives each recipient's status and code.

Usage: python django_style.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient.mail import get_connection, send_mail, send_mass_mail
from mailclient.message import composeMessage

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))
URL = f"smtp://{HOST}:{PORT}"
SHOP = "shop@example.com"


def order(*to: str) -> object:
    return composeMessage(
        fromAddress=SHOP, to=to, subject="Your order", text="It has shipped.\n"
    )


async def main(reactor: object) -> None:
    # One connection for several messages, closed when the block ends.
    async with get_connection(URL) as connection:
        sent, reports = await connection.send_messages(
            [order("alice@example.com"), order("bob@example.com", "reject@example.com")]
        )
    print(f"send_messages: {sent} sent")
    for report in reports:
        for address, result in report.recipientResults.items():
            print(f"  {address}: {result.deliveryStatus} {result.code}")

    # One message with an HTML alternative, on a connection of its own.
    sent, _ = await send_mail(
        "Welcome",
        "Plain text for old readers.\n",
        SHOP,
        ["carol@example.com"],
        htmlMessage="<p>Welcome!</p>",
        url=URL,
    )
    print(f"send_mail: {sent} sent")

    # Several messages over one connection.
    sent, _ = await send_mass_mail(
        [
            ("Reminder", "Your cart misses you.\n", SHOP, ["dave@example.com"]),
            ("Reminder", "Your cart misses you.\n", SHOP, ["erin@example.com"]),
        ],
        url=URL,
    )
    print(f"send_mass_mail: {sent} sent")

    # failSilently: nothing listens on port 1, so nothing is sent, and the
    # error is in the report instead of failing the Deferred.
    sent, reports = await send_mail(
        "Lost",
        "x\n",
        SHOP,
        ["frank@example.com"],
        failSilently=True,
        url=f"smtp://{HOST}:1",
    )
    print(f"failSilently: {sent} sent, {type(reports[0].error).__name__}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
