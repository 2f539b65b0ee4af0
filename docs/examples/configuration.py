"""
Load the connection settings from a URL, keyword arguments and the
environment, show where each came from, and send one message with them.

Usage: python configuration.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25; MAILCLIENT_HELO_NAME and
the other MAILCLIENT_* variables fill in what the URL leaves out).
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import sendmail
from mailclient.config import loadSettings

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25")

# The example receiver speaks plain SMTP, hence tls=none.  For a real
# submission server this would be "smtps://alice@smtp.example.com", with
# MAILCLIENT_PASSWORD in the environment.
URL = f"smtp://{HOST}:{PORT}?tls=none&timeout=10"


async def main(reactor: object) -> None:
    # A keyword argument wins over the URL, the URL over the environment.
    settings = loadSettings(URL, timeout=30)
    for name, source in settings.sources.items():
        value = "****" if name == "password" else getattr(settings, name)
        print(f"{name} = {value!r} (from {source})")

    result = await sendmail(
        fromAddress="reports@example.com",
        toAddresses=["alice@example.com"],
        message=b"Subject: configured\r\n\r\nSent with loaded settings.\r\n",
        **settings.keywords(),
    )
    for recipient in result:
        print(f"{recipient.address}: {recipient.status} {recipient.code}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
