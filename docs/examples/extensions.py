"""
Extensions in use: per-recipient DSN options, what each recipient's reply
means (classification), which extensions a message used, and REQUIRETLS
failing closed on a session without TLS.

Usage: python extensions.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).
"""

import os
from email.message import EmailMessage
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import DSN, Recipient, sendmail
from mailclient.errors import RequireTLSError, SendFailedError

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))


def report() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "reports@example.com"
    message["To"] = "alice@example.com"
    message["Subject"] = "Quarterly report"
    message.set_content("Numbers are up.\n")
    return message


async def main(reactor: Any) -> None:
    recipients = [
        # Tell me when it is delivered or fails (if the server offers DSN).
        Recipient("alice@example.com", notify=("SUCCESS", "FAILURE")),
        # A plain string is fine too; this one the demo server refuses.
        "reject@example.com",
    ]
    result = await sendmail(
        HOST,
        "reports@example.com",
        recipients,
        report(),
        port=PORT,
        tls="opportunistic",
        dsn=DSN(ret="HDRS", envelopeId="report-2026-q3"),
    )
    for r in result:
        meaning = r.classification
        print(
            f"{r.address}: {r.status} ({meaning.severity}, {meaning.reason}, "
            f"retry: {meaning.retry})"
        )
    print(f"extensions used: {' '.join(sorted(result.extensions)) or 'none'}")
    print(f"DSN requested: {'DSN' in result.extensions}")

    # REQUIRETLS: never sent over a session that is not TLS-protected.
    try:
        await sendmail(
            HOST,
            "reports@example.com",
            "alice@example.com",
            report(),
            port=PORT,
            tls="none",
            requireTLS=True,
            retries=0,
        )
    except RequireTLSError as e:
        print(f"REQUIRETLS: not sent ({e.reason})")
    except SendFailedError as e:
        print(f"REQUIRETLS: refused ({e})")


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
