"""
sendmail() with async/await: await the Deferred inside a coroutine that
Twisted drives (Deferred.fromCoroutine, or defer.ensureDeferred).

Usage: python async_await.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from email.message import EmailMessage

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import react
from twisted.python.failure import Failure

from mailclient import sendmail

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


def invitation(name: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "events@example.com"
    message["To"] = f"{name}@example.com"
    message["Subject"] = "You are invited"
    message.set_content(f"Dear {name},\n\nsee you on Friday.\n")
    return message


async def main(reactor: object) -> None:
    # One message: await the Deferred that sendmail() returns.
    result = await sendmail(
        HOST, "events@example.com", "alice@example.com", invitation("alice"), port=PORT
    )
    print(f"alice: {result.recipients['alice@example.com'].status}")

    # Several at once, one connection each: wait for all of them.
    names = ["bob", "carol", "dave"]
    outcomes = await DeferredList(
        [
            sendmail(
                HOST, "events@example.com", f"{n}@example.com", invitation(n), port=PORT
            )
            for n in names
        ],
        consumeErrors=True,
    )
    for name, (_, value) in zip(names, outcomes, strict=True):
        if isinstance(value, Failure):
            print(f"{name}: not sent: {value.getErrorMessage()}")
        else:
            print(f"{name}: {value.recipients[f'{name}@example.com'].status}")


if __name__ == "__main__":
    # Deferred.fromCoroutine(main(reactor)) and
    # twisted.internet.defer.ensureDeferred(main(reactor)) do the same here.
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
