"""
C{twistd mailclient-relay}: the relay as a twistd plugin.

    twistd -n mailclient-relay \\
        --smarthost smtp+starttls://user:pass@smtp.example.com:587 \\
        --queue /var/spool/mailclient --listen tcp:2525:interface=127.0.0.1

The smarthost is a URL (C{smtp://}, C{smtp+starttls://}, C{smtps://}) read
by L{mailclient.config.loadSettings}, which also reads the C{MAILCLIENT_*}
environment variables; certificates are verified as everywhere in
mailclient.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from twisted.application.service import IService
from twisted.python import usage

from mailclient import errors
from mailclient.relay.listener import LOOPBACK

__all__ = ["Options", "makeService"]


def _positive(kind: type[Any]) -> Any:
    def convert(text: str) -> Any:
        value = kind(text)
        if value <= 0:
            raise ValueError(f"{text!r} is not positive")
        return value

    convert.__name__ = kind.__name__
    return convert


class Options(usage.Options):
    """
    The command line of C{twistd mailclient-relay}.
    """

    synopsis = "[options]"
    longdesc = (
        "An outbound mail relay: local applications hand it mail over SMTP on "
        "--listen; it queues each message durably in --queue and delivers it "
        "to the --smarthost, retrying what is deferred and reporting to the "
        "sender what cannot be delivered."
    )

    optParameters = [
        [
            "listen",
            "l",
            "tcp:2525:interface=127.0.0.1",
            "Where to accept submissions (a server endpoint description).",
        ],
        ["queue", "q", "mailclient-queue", "The queue directory."],
        [
            "allow",
            None,
            ",".join(LOOPBACK),
            "The networks applications may submit from, comma-separated "
            "(anyone else is refused: no open relay).",
        ],
        [
            "smarthost",
            "s",
            None,
            "Where to deliver: smtp://, smtp+starttls:// or smtps:// URL "
            "(else the MAILCLIENT_* environment variables).",
        ],
        ["hostname", None, None, "The relay's name (default: this host's name)."],
        [
            "max-message-size",
            None,
            25 * 1024 * 1024,
            "The largest message accepted, in octets.",
            _positive(int),
        ],
        [
            "max-recipients",
            None,
            1000,
            "The most recipients per message.",
            _positive(int),
        ],
        [
            "connections",
            None,
            4,
            "At most this many connections to the smarthost.",
            _positive(int),
        ],
        [
            "retry-base",
            None,
            60.0,
            "Seconds before the first retry (doubling each time).",
            _positive(float),
        ],
        [
            "retry-max",
            None,
            3600.0,
            "The longest delay between retries, in seconds.",
            _positive(float),
        ],
        [
            "lifetime",
            None,
            5 * 86400.0,
            "Seconds a message may stay undelivered before it is returned.",
            _positive(float),
        ],
    ]

    def postOptions(self) -> None:
        """
        Read the smarthost settings now (and the certificate files they
        name), so that a mistake is a usage error.
        """
        from mailclient.config import loadSettings

        try:
            settings = loadSettings(self["smarthost"])
            # keywords() reads the certificate and key files.
            keywords = settings.keywords(hostKeyword="host")
        except errors.InvalidArgumentError as e:
            raise usage.UsageError(f"--smarthost: {e}") from e
        if settings.host is None:
            raise usage.UsageError("give --smarthost (or set MAILCLIENT_HOST)")
        self["settings"] = settings
        self["clients"] = [n.strip() for n in self["allow"].split(",") if n.strip()]
        try:
            for network in self["clients"]:
                ipaddress.ip_network(network, strict=False)
        except ValueError as e:
            raise usage.UsageError(f"--allow: {e}") from e
        if not self["clients"]:
            raise usage.UsageError("--allow: give at least one network")
        self["mailerKeywords"] = keywords
        if self["hostname"] is None:
            self["hostname"] = socket.gethostname()
        hostname = self["hostname"]
        if (
            not hostname
            or not hostname.isascii()
            or not hostname.isprintable()
            or " " in hostname
        ):
            # It goes into the greeting and the Received fields as ASCII.
            raise usage.UsageError(f"--hostname: {hostname!r} is not a host name")


def makeService(options: Options) -> IService:
    """
    The relay described by C{options}.
    """
    from mailclient import Mailer
    from mailclient.relay import Relay

    mailer = Mailer(
        **options["mailerKeywords"],
        maxConnections=options["connections"],
        # The queue retries, durably: the Mailer tries once.
        retries=0,
    )
    return Relay(
        options["queue"],
        mailer,
        hostname=options["hostname"],
        listen=options["listen"],
        maxMessageSize=options["max-message-size"],
        maxRecipients=options["max-recipients"],
        clients=options["clients"],
        retryBaseDelay=options["retry-base"],
        retryMaxDelay=options["retry-max"],
        maxLifetime=options["lifetime"],
    )
