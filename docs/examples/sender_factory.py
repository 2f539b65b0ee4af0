"""
The factory level: ESMTPSenderFactory sends one message over one connection
that you make yourself (here with reactor.connectTCP), then says QUIT.

Usage: python sender_factory.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import react

from mailclient import ESMTPSenderFactory

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


async def main(reactor: Any) -> None:
    factory = ESMTPSenderFactory(
        "ops@example.com",
        ["alice@example.com"],
        b"Subject: maintenance tonight\r\n\r\nFrom 22:00 to 23:00 UTC.\r\n",
        clock=reactor,
        # The remaining keyword arguments are ESMTPClient's.
        tls="opportunistic",
        tlsOptions=optionsForClientTLS(HOST),
    )
    reactor.connectTCP(HOST, PORT, factory, timeout=30)
    result = await factory.deferred
    print(f"accepted by {', '.join(result.accepted)}: {result.reply}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
