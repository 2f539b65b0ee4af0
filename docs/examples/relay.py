"""
Embed the outbound relay: a durable queue in a temporary directory, a
submission listener on 127.0.0.1, and delivery to a smarthost.  One message
is submitted with sendmail(); the relay delivers it, and reports the
recipient the smarthost refuses to the sender.

Usage: python relay.py  (the smarthost is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
import tempfile
from email.message import EmailMessage
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import Mailer, sendmail
from mailclient.relay import Relay

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


async def main(reactor: Any) -> None:
    with tempfile.TemporaryDirectory() as queueDirectory:
        relay = Relay(
            queueDirectory,
            # The queue retries, durably: the Mailer tries once.
            Mailer(HOST, port=PORT, retries=0),
            hostname="relay.example.test",
        )
        relay.startService()
        # listen="tcp:2525:interface=127.0.0.1" would listen for us; here
        # the system picks the port.
        listening = reactor.listenTCP(0, relay.factory, interface="127.0.0.1")

        message = EmailMessage()
        message["From"] = "app@example.com"
        message["To"] = "alice@example.com, reject@example.com"
        message["Subject"] = "Your report"
        message.set_content("It is ready.\n")
        # The application's side: a plain SMTP submission.  The 250 comes
        # once the message is on disk.
        result = await sendmail(
            "127.0.0.1",
            "app@example.com",
            ["alice@example.com", "reject@example.com"],
            message,
            port=listening.getHost().port,
            tls="none",
        )
        print(f"queued as {result.queueId}")

        # The relay's side: delivery to the smarthost, then a non-delivery
        # report for reject@example.com, sent to app@example.com.
        await relay.delivery.whenIdle()
        stats = relay.delivery.stats()
        print(
            f"delivered {stats.delivered}, failed {stats.failed}, "
            f"reports {stats.bounces}, still queued {stats.queued}"
        )

        await listening.stopListening()
        await relay.stopService()


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
