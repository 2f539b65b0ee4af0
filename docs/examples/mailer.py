"""
Many messages over a pool of reused connections: a Mailer for one
destination, each send's result (with every attempt), the counters, and a
stop that drains the sends in hand and closes the connections with QUIT.

Usage: python mailer.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from email.message import EmailMessage
from typing import Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import react

from mailclient import Mailer
from mailclient.errors import SendFailedError

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


def newsletter(number: int, to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "news@example.com"
    message["To"] = to
    message["Subject"] = f"Newsletter #{number}"
    message.set_content("This week: connection pools.\n")
    return message


async def main(reactor: Any) -> None:
    mailer = Mailer(
        HOST,
        port=PORT,
        tls="opportunistic",
        maxConnections=2,  # at most two connections to this server
        maxMessagesPerSecond=50,  # and at most 50 messages a second
        retries=1,  # one more try for deferred recipients...
        retryBaseDelay=0.2,  # ...after about 0.2 s (default: 2 s, doubling)
    )
    readers = [f"reader{n}@example.com" for n in range(20)]
    sends = [mailer.send("news@example.com", to, newsletter(1, to)) for to in readers]
    # One message for two recipients, one of which the server defers: only
    # that one is tried again.
    mixed = mailer.send(
        "news@example.com",
        ["editor@example.com", "tempfail@example.com"],
        newsletter(1, "editor@example.com"),
    )
    outcomes = await DeferredList(sends, consumeErrors=True)
    print(f"newsletters accepted: {sum(1 for ok, _ in outcomes if ok)}")
    try:
        result = await mixed
    except SendFailedError as e:
        assert e.result is not None
        result = e.result
    for attempt in result.history:
        tried = ", ".join(
            f"{address} {r.status}" for address, r in attempt.outcome.items()
        )
        print(f"attempt {attempt.number}: {tried}")
    stats = mailer.stats
    print(
        f"sent {stats.sent}, deferred {stats.deferred}, "
        f"connections opened {stats.connectionsOpened}"
    )
    await mailer.stopService()
    print(f"connections open after stop: {mailer.stats.connectionsOpen}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
