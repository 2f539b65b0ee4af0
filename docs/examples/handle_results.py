"""
Per-recipient results and the error raised when nobody got the message.

Usage: python handle_results.py  (the server is MAILCLIENT_EXAMPLE_HOST and
MAILCLIENT_EXAMPLE_PORT, by default localhost:25).  The addresses
reject@example.com and tempfail@example.com are the ones the test receiver,
mailclient.demo.LoopbackReceiver, refuses with 550 and 450.
"""

import os

from twisted.internet.defer import Deferred
from twisted.internet.task import react

from mailclient import sendmail
from mailclient.errors import (
    AllRecipientsRefusedError,
    MailClientError,
    SendFailedError,
)

HOST = os.environ.get("MAILCLIENT_EXAMPLE_HOST", "localhost")
PORT = int(os.environ.get("MAILCLIENT_EXAMPLE_PORT", "25"))

MESSAGE = b"""\
From: sender@example.com
Subject: Results

Some recipients will not get this.
"""


async def main(reactor: object) -> None:
    # Partial success: the Deferred fires with a SendResult.
    result = await sendmail(
        HOST,
        "sender@example.com",
        ["alice@example.com", "reject@example.com", "tempfail@example.com"],
        MESSAGE,
        port=PORT,
    )
    print("delivered to:", ", ".join(result.accepted))
    for address in result.byStatus("deferred"):
        r = result.recipients[address]
        print(f"try {address} again later: {r.code} {r.enhancedStatus} {r.text}")
    for address in result.byStatus("rejected"):
        r = result.recipients[address]
        print(f"give up on {address}: {r.code} {r.enhancedStatus} {r.text}")

    # Nobody accepted: the Deferred fails, and the error still carries
    # the result of every recipient.
    try:
        await sendmail(
            HOST,
            "sender@example.com",
            ["reject@example.com", "tempfail@example.com"],
            MESSAGE,
            port=PORT,
        )
    except AllRecipientsRefusedError as e:
        print(f"nobody accepted the message (transient: {e.isTransient})")
        assert e.result is not None
        for r in e.result:
            print(f"  {r.address}: {r.status} {r.code} [{r.phase}]")
    except SendFailedError as e:
        print(f"the server refused the message: {e}")
    except MailClientError as e:
        print(f"the session failed: {type(e).__name__}: {e}")
        raise


if __name__ == "__main__":
    react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
