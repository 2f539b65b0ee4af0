"""
Check a mail server without sending mail: verifyConnection() connects, says
EHLO, does STARTTLS and AUTH as a send would, then QUIT, and reports what
the server offers.  Then, on a session of our own: NOOP and VRFY.

Usage: python check_server.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.task import react

from mailclient import ESMTPClient, verifyConnection
from mailclient.errors import MailClientError, SMTPReplyError

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


async def main(reactor: Any) -> None:
    # The same keywords as sendmail(): tls=, username=, password=, timeout=...
    try:
        info = await verifyConnection(HOST, port=PORT, tls="opportunistic", timeout=10)
    except MailClientError as e:
        print(f"cannot use {HOST}:{PORT}: {e}")
        raise SystemExit(1) from e
    print(f"server: {info.serverName}")
    print(f"extensions: {' '.join(sorted(info.capabilities.keywords))}")
    print(f"TLS: {info.tlsVersion or 'none'}; SASL: {info.authMechanism or 'none'}")

    # NOOP and VRFY queue in turn with messages on a session of your own.
    client = ESMTPClient(clock=reactor, tls="none")
    await connectProtocol(HostnameEndpoint(reactor, HOST, PORT), client)
    await client.whenReady()
    for name, check in [
        ("NOOP", client.noop),
        ("VRFY", lambda: client.verify("postmaster")),
    ]:
        try:
            reply = await check()
            print(f"{name}: {reply.code} {reply.text}")
        except SMTPReplyError as e:
            # Many servers do not answer VRFY (502); a few do not even know
            # NOOP (500).  The session goes on either way.
            print(f"{name} refused: {e.code}")
    await client.quit()


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
