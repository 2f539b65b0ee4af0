"""
Several messages over one SMTP connection with ESMTPClient.send().

Usage: python one_connection.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import react

from mailclient import ESMTPClient, Timeouts
from mailclient.errors import SendFailedError

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


def note(number: int, recipient: str) -> bytes:
    return (
        f"From: builds@example.com\r\nTo: {recipient}\r\n"
        f"Subject: build {number} finished\r\n\r\nBuild {number} passed.\r\n"
    ).encode("ascii")


async def main(reactor: Any) -> None:
    client = ESMTPClient(
        clock=reactor,  # every timeout is measured with this clock
        tls="opportunistic",
        tlsOptions=optionsForClientTLS(HOST),  # used if STARTTLS is offered
        # RFC 5321 defaults, except: wait at most 2 minutes for the final reply.
        timeouts=Timeouts(finalReply=120.0),
    )
    await connectProtocol(HostnameEndpoint(reactor, HOST, PORT), client)

    # Queue three messages at once; they go one after the other over this
    # connection, and each Deferred fires with that message's result.
    recipients = ["alice@example.com", "reject@example.com", "bob@example.com"]
    sends = [
        client.send("builds@example.com", rcpt, note(n, rcpt))
        for n, rcpt in enumerate(recipients, start=1)
    ]
    for rcpt, d in zip(recipients, sends, strict=True):
        try:
            result = await d
        except SendFailedError as e:
            # Refused by the server; the session goes on with the next one.
            print(f"{rcpt}: not sent ({e})")
        else:
            print(f"{rcpt}: {result.recipients[rcpt].status}, {result.reply}")

    await client.quit()
    print(f"session over; the server called itself {client.capabilities.serverName}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
