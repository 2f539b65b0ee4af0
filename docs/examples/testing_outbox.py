"""
Test your own mail-sending code without a socket: mailclient.testing runs an
SMTP server in memory, on a fake clock.  Script it (here: one recipient is
rejected), run the session, then check what your code reported and what the
server received.

Usage: python testing_outbox.py  (needs no mail server).
"""

from email.message import EmailMessage

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.task import Clock

from mailclient import SendResult, sendmail
from mailclient.testing import MemoryEndpoint, ScriptedServer, settle

# -- the code under test: what your application does ---------------------------


def notifyUsers(
    addresses: list[str],
    text: str,
    *,
    endpoint: IStreamClientEndpoint | None = None,
    reactor: object = None,
) -> Deferred[list[str]]:
    """
    Mail C{text} to every address; the Deferred fires with the addresses
    that could not be reached.  Production code leaves C{endpoint} and
    C{reactor} alone; its tests pass an in-memory endpoint and a clock.
    """
    message = EmailMessage()
    message["From"] = "alerts@example.com"
    message["To"] = ", ".join(addresses)
    message["Subject"] = "Service notice"
    message.set_content(text)
    d = sendmail(
        "smtp.example.com",
        "alerts@example.com",
        addresses,
        message,
        endpoint=endpoint,
        reactor=reactor,
    )

    def unreachable(result: SendResult) -> list[str]:
        return sorted(
            address
            for address, outcome in result.recipients.items()
            if outcome.status != "accepted"
        )

    return d.addCallback(unreachable)


# -- its test -----------------------------------------------------------------------


def main() -> None:
    clock = Clock()
    server = ScriptedServer(clock)
    server.rejectRecipient("former-employee@example.com")

    reported: list[list[str]] = []
    notifyUsers(
        ["alice@example.com", "former-employee@example.com", "bob@example.com"],
        "Maintenance tonight at 22:00.",
        endpoint=MemoryEndpoint(clock, server),
        reactor=clock,
    ).addCallback(reported.append)
    settle(clock)  # the whole SMTP session runs here, in memory

    # What our code reported...
    assert reported == [["former-employee@example.com"]], reported
    # ... and what the server accepted.
    [delivery] = server.outbox
    assert delivery.recipients == ("alice@example.com", "bob@example.com")
    assert server.outbox.to("BOB@example.com") == [delivery]
    message = delivery.message
    assert message["Subject"] == "Service notice"

    print(f"unreachable: {', '.join(reported[0])}")
    print(f"delivered to: {', '.join(delivery.recipients)}")
    print(f"subject: {message['Subject']}")
    print(f"body: {message.get_content().strip()}")
    print(f"server saw: {' '.join(server.connections[0].verbs())}")


if __name__ == "__main__":
    main()
