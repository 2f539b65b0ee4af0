"""
sendmail() from asyncio code, with Twisted running on the asyncio event
loop: install the asyncio reactor first, then turn Deferreds into Futures
with Deferred.asFuture (and Futures into Deferreds with Deferred.fromFuture).

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

    return Deferred.fromFuture(asyncio.ensure_future(run()))


if __name__ == "__main__":
    react(main)
