"""
STARTTLS to a server whose certificate comes from a private CA, then AUTH.

Usage: python private_ca.py  with the server in MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT (default localhost:587), the CA certificate (PEM) in
MAILCLIENT_EXAMPLE_CA (default ca.pem), and the credentials in
MAILCLIENT_EXAMPLE_USERNAME and MAILCLIENT_EXAMPLE_PASSWORD.
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.task import react

from mailclient import sendmail

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "587"))
CA_FILE = os.environ.get("MAILCLIENT_EXAMPLE_CA", "ca.pem")
USERNAME = os.environ.get("MAILCLIENT_EXAMPLE_USERNAME", "alice")
PASSWORD = os.environ.get("MAILCLIENT_EXAMPLE_PASSWORD", "")


async def main(reactor: object) -> None:
    with open(CA_FILE, "rb") as f:
        trustRoot = Certificate.loadPEM(f.read())
    # Verify the server's certificate against our CA only, and check that
    # it names HOST (a DNS name, or an IP address in its subjectAltName).
    tlsOptions = optionsForClientTLS(HOST, trustRoot=trustRoot)

    result = await sendmail(
        HOST,
        "alice@example.com",
        "bob@example.com",
        b"Subject: over TLS\r\n\r\nSent over a verified TLS session.\r\n",
        port=PORT,
        tls="starttls",  # upgrade, or fail before anything else is sent
        tlsOptions=tlsOptions,
        username=USERNAME,  # only ever sent once TLS is up
        password=PASSWORD,
    )
    session = result.session
    assert session is not None
    print(f"TLS: {session.tlsVersion} {session.tlsCipher}")
    print(f"authenticated with {session.authMechanism}")
    print(f"final reply: {result.reply}")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
