"""
sendmail() and a Django-style connection from asyncio code, with Twisted
running on the asyncio event loop: install the asyncio reactor first, then
turn Deferreds into Futures with Deferred.asFuture (and Futures into
Deferreds with Deferred.fromFuture).

Usage: python asyncio_reactor.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import asyncio
import os

from twisted.internet import asyncioreactor

# Before anything imports twisted.internet.reactor.
loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
asyncioreactor.install(loop)

from twisted.internet.defer import Deferred  # noqa: E402
from twisted.internet.task import react  # noqa: E402

from mailclient import SendResult, sendmail  # noqa: E402
from mailclient.mail import get_connection  # noqa: E402
from mailclient.message import composeMessage  # noqa: E402

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


async def send() -> SendResult:
    # An asyncio coroutine: it awaits Futures, so convert the Deferred.
    # asyncio.wait_for cancels the Future on timeout, which cancels the
    # Deferred, which aborts the SMTP connection.
    d = sendmail(
        HOST,
        "alerts@example.com",
        "oncall@example.com",
        b"Subject: disk almost full\r\n\r\n/var is 95% full.\r\n",
        port=PORT,
    )
    return await asyncio.wait_for(d.asFuture(asyncio.get_running_loop()), 60)


def main(reactor: object) -> Deferred[None]:
    async def run() -> None:
        result = await send()
        print(f"sent under {type(reactor).__name__}: {result.reply}")

        # The Django-style connection works as an async context manager in an
        # asyncio task too; its other Deferreds are awaited as Futures.
        loop = asyncio.get_running_loop()
        note = composeMessage(
            fromAddress="alerts@example.com",
            to="oncall@example.com",
            subject="disk usage back to normal",
            text="/var is 60% full.\n",
        )
        async with get_connection(f"smtp://{HOST}:{PORT}") as connection:
            sent, _ = await connection.send_messages([note]).asFuture(loop)
        print(f"send_messages in an asyncio task: {sent} sent")

    return Deferred.fromFuture(asyncio.ensure_future(run()))


if __name__ == "__main__":
    react(main)
