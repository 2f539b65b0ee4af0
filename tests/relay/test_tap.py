"""
Tests for L{mailclient.relay.tap}: the command line of C{twistd
mailclient-relay}, the service it makes, and the twistd plugin that finds it.

The environment's C{MAILCLIENT_*} variables are removed before each test
(L{mailclient.relay.tap.Options} reads them, as L{loadSettings} does), and
set again by the tests about them.
"""

from __future__ import annotations

import socket
from email.message import EmailMessage
from pathlib import Path

import pytest
import pytest_twisted
from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.plugin import getPlugins
from twisted.python import usage

from mailclient import Mailer, sendmail
from mailclient.config import ENVIRONMENT_VARIABLES, loadSettings
from mailclient.demo import LoopbackReceiver
from mailclient.relay import Relay, tap


@pytest.fixture(autouse=True)
def _cleanEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    No C{MAILCLIENT_*} variable of the surrounding environment reaches the
    options.
    """
    for variable in ENVIRONMENT_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)


def parse(*argv: str) -> tap.Options:
    """
    Parse C{argv} as C{twistd mailclient-relay}'s own arguments.
    """
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def mailerOf(relay: Relay) -> Mailer:
    """
    The L{Mailer} that C{relay} delivers with.
    """
    mailer = relay.delivery.deliverer
    assert isinstance(mailer, Mailer)
    return mailer


def test_defaults() -> None:
    """
    Given only C{--smarthost}, every other option has its documented
    default, and the relay's name is this host's name.
    """
    options = parse("--smarthost", "smtp://smarthost.example")
    assert options["listen"] == "tcp:2525:interface=127.0.0.1"
    assert options["queue"] == "mailclient-queue"
    assert options["max-message-size"] == 25 * 1024 * 1024
    assert options["max-recipients"] == 1000
    assert options["connections"] == 4
    assert options["retry-base"] == 60.0
    assert options["retry-max"] == 3600.0
    assert options["lifetime"] == 5 * 86400.0
    assert options["hostname"] == socket.gethostname()
    assert options["clients"] == ["127.0.0.0/8", "::1/128"]


def test_allow() -> None:
    """
    C{--allow} lists the networks applications may submit from instead of
    loopback; an empty list, or something that is not a network, is a
    usage error.
    """
    options = parse("--smarthost", "smtp://s.example", "--allow", "10.0.0.0/8, ::1")
    assert options["clients"] == ["10.0.0.0/8", "::1"]
    relay = tap.makeService(options)
    assert isinstance(relay, Relay)
    assert [str(n) for n in relay.factory.clients] == ["10.0.0.0/8", "::1/128"]
    for bad in ("", " , ", "10.0.0.0/33", "everyone"):
        with pytest.raises(usage.UsageError, match="--allow"):
            parse("--smarthost", "smtp://s.example", "--allow", bad)


def test_everyOption() -> None:
    """
    Every option is read, long or short, numbers converted to their type.
    """
    options = parse(
        "-l",
        "tcp:2526",
        "-q",
        "/var/spool/relay",
        "-s",
        "smtp://smarthost.example",
        "--hostname",
        "relay.example.com",
        "--max-message-size",
        "1000",
        "--max-recipients",
        "5",
        "--connections",
        "2",
        "--retry-base",
        "1.5",
        "--retry-max",
        "30",
        "--lifetime",
        "600",
    )
    assert options["listen"] == "tcp:2526"
    assert options["queue"] == "/var/spool/relay"
    assert options["hostname"] == "relay.example.com"
    assert options["max-message-size"] == 1000
    assert options["max-recipients"] == 5
    assert options["connections"] == 2
    assert options["retry-base"] == 1.5
    assert options["retry-max"] == 30.0
    assert isinstance(options["retry-max"], float)
    assert options["lifetime"] == 600.0


def test_smarthostURL() -> None:
    """
    C{--smarthost} is a URL read by L{loadSettings}: host, port, user,
    password and TLS mode come from it, ready for L{Mailer}.
    """
    options = parse(
        "--smarthost", "smtp+starttls://app%40example.com:s3cret@smtp.example.com:587"
    )
    settings = options["settings"]
    assert (settings.host, settings.port, settings.username, settings.password) == (
        "smtp.example.com",
        587,
        "app@example.com",
        "s3cret",
    )
    assert settings.tls == "starttls"
    assert options["mailerKeywords"] == {
        "host": "smtp.example.com",
        "port": 587,
        "username": "app@example.com",
        "password": "s3cret",
        "tls": "starttls",
    }


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without C{--smarthost}, the C{MAILCLIENT_*} variables name the
    smarthost; with it, they give only what the URL does not.
    """
    monkeypatch.setenv("MAILCLIENT_HOST", "env.example")
    monkeypatch.setenv("MAILCLIENT_PORT", "2525")
    monkeypatch.setenv("MAILCLIENT_USERNAME", "bob")
    monkeypatch.setenv("MAILCLIENT_PASSWORD", "from-env")
    settings = parse()["settings"]
    assert (settings.host, settings.port, settings.username, settings.password) == (
        "env.example",
        2525,
        "bob",
        "from-env",
    )
    settings = parse("--smarthost", "smtp://alice@url.example")["settings"]
    assert (settings.host, settings.port, settings.username, settings.password) == (
        "url.example",
        2525,
        "alice",
        "from-env",
    )


def test_missingSmarthost() -> None:
    """
    With neither C{--smarthost} nor C{MAILCLIENT_HOST}, the command line is
    refused with a L{usage.UsageError} that says what to give.
    """
    with pytest.raises(usage.UsageError, match="--smarthost"):
        parse()


@pytest.mark.parametrize(
    "url",
    [
        "ftp://smarthost.example",
        "smtp://smarthost.example:99999",
        "smtp://smarthost.example/path",
        "smtp://smarthost.example?unknown=1",
        "smtps://smarthost.example?tls=none",
        "smtp://",
    ],
)
def test_badSmarthost(url: str) -> None:
    """
    A smarthost URL that L{loadSettings} refuses is a L{usage.UsageError}
    naming C{--smarthost}, not a traceback.
    """
    with pytest.raises(usage.UsageError, match="--smarthost"):
        parse("--smarthost", url)


def test_badSmarthostHidesPassword() -> None:
    """
    The usage error for a bad URL does not show its password.
    """
    with pytest.raises(usage.UsageError) as caught:
        parse("--smarthost", "smtp://alice:hunter2@smarthost.example:0")
    assert "hunter2" not in str(caught.value)


def test_badEnvironment(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    A bad C{MAILCLIENT_*} variable is a L{usage.UsageError} too.
    """
    monkeypatch.setenv("MAILCLIENT_PORT", "many")
    with pytest.raises(usage.UsageError, match="MAILCLIENT_PORT"):
        parse("--smarthost", "smtp://smarthost.example")


def test_unreadableCertificates(tmp_path: Path) -> None:
    """
    A CA file that cannot be read is a L{usage.UsageError} when the options
    are parsed, not an error when the service is made.
    """
    missing = tmp_path / "missing-ca.pem"
    with pytest.raises(usage.UsageError, match="caCertificates"):
        parse("--smarthost", f"smtps://smarthost.example?caCertificates={missing}")


@pytest.mark.parametrize(
    "option",
    [
        "--max-message-size",
        "--max-recipients",
        "--connections",
        "--retry-base",
        "--retry-max",
        "--lifetime",
    ],
)
@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_nonPositiveNumbers(option: str, value: str) -> None:
    """
    Every numeric option refuses zero, a negative number and a word with a
    L{usage.UsageError}.
    """
    with pytest.raises(usage.UsageError):
        parse("--smarthost", "smtp://smarthost.example", option, value)


@pytest.mark.parametrize("option", ["--max-message-size", "--connections"])
def test_integersOnly(option: str) -> None:
    """
    Sizes and counts are whole numbers.
    """
    with pytest.raises(usage.UsageError):
        parse("--smarthost", "smtp://smarthost.example", option, "1.5")


@pytest.mark.parametrize("hostname", ["", "relay example", "relay\r\n", "relä.example"])
def test_badHostname(hostname: str) -> None:
    """
    The relay's name goes into its greeting and C{Received} fields as
    ASCII: an empty name, spaces, control characters and other characters
    are refused.
    """
    with pytest.raises(usage.UsageError, match="--hostname"):
        parse("--smarthost", "smtp://smarthost.example", "--hostname", hostname)


def test_makeService(tmp_path: Path) -> None:
    """
    L{tap.makeService} makes a L{Relay} whose L{Mailer} goes to the
    smarthost with C{retries=0} (the queue retries) and at most
    C{--connections} connections, and whose queue, listener and delivery
    have the options' settings.
    """
    queue = tmp_path / "queue"
    options = parse(
        "--smarthost",
        "smtp://smarthost.example:2526",
        "--queue",
        str(queue),
        "--hostname",
        "relay.example.com",
        "--connections",
        "3",
        "--max-message-size",
        "1000",
        "--max-recipients",
        "7",
        "--retry-base",
        "2",
        "--retry-max",
        "20",
        "--lifetime",
        "300",
    )
    relay = tap.makeService(options)
    assert isinstance(relay, Relay)
    mailer = mailerOf(relay)
    assert mailer.retries == 0
    assert mailer.maxConnections == 3
    assert mailer.destination == "smarthost.example:2526"
    assert relay.queue.directory == str(queue)
    assert relay.factory.hostname == "relay.example.com"
    assert relay.delivery.hostname == "relay.example.com"
    assert relay.factory.maxMessageSize == 1000
    assert relay.factory.maxRecipients == 7
    assert relay.delivery._retryBaseDelay == 2.0
    assert relay.delivery._retryMaxDelay == 20.0
    assert relay.delivery._maxLifetime == 300.0
    [listener] = [s for s in relay if isinstance(s, StreamServerEndpointService)]
    assert listener.factory is relay.factory
    assert not queue.exists(), "nothing is made before the service starts"


def test_makeServiceDefaults() -> None:
    """
    With the default options, the L{Mailer} goes to the smarthost's host
    with the default port and four connections, and still never retries.
    """
    relay = tap.makeService(parse("--smarthost", "smtp://smarthost.example"))
    assert isinstance(relay, Relay)
    mailer = mailerOf(relay)
    assert mailer.retries == 0
    assert mailer.maxConnections == 4
    assert mailer.destination == "smarthost.example"


@pytest_twisted.ensureDeferred
async def test_serviceRelays(tmp_path: Path) -> None:
    """
    The service L{tap.makeService} makes, once started, accepts a message
    on C{--listen}, answers with its queue id, and delivers it to the
    smarthost; stopped, it leaves an empty queue.
    """
    smarthost = LoopbackReceiver(str(tmp_path / "smarthost"))
    port = await smarthost.start(reactor)  # type: ignore[arg-type]
    relay = tap.makeService(
        parse(
            "--smarthost",
            f"smtp://127.0.0.1:{port}?tls=none",
            "--queue",
            str(tmp_path / "queue"),
            "--listen",
            "tcp:0:interface=127.0.0.1",
            "--hostname",
            "relay.example.com",
        )
    )
    assert isinstance(relay, Relay)
    relay.startService()
    [listener] = [s for s in relay if isinstance(s, StreamServerEndpointService)]
    # The port the system picked: TCP listens at once.
    assert listener._waitingForPort is not None
    listening = listener._waitingForPort.result
    try:
        message = EmailMessage()
        message["From"] = "app@example.com"
        message["To"] = "alice@example.com"
        message["Subject"] = "Through the relay"
        message.set_content("Hello.\n")
        result = await sendmail(
            "127.0.0.1",
            "app@example.com",
            ["alice@example.com"],
            message,
            port=listening.getHost().port,
            tls="none",
        )
        assert result.reply is not None
        assert result.reply.code == 250
        assert result.queueId is not None
        await relay.delivery.whenIdle()
        assert [d.recipient for d in smarthost.deliveries] == ["alice@example.com"]
        assert b"by relay.example.com (mailclient relay)" in (
            smarthost.deliveries[0].read()
        )
        assert relay.delivery.stats().delivered == 1
        assert list(relay.queue.entries()) == []
    finally:
        await relay.stopService()
        await smarthost.stop()


def test_pluginIsDiscoverable() -> None:
    """
    twistd finds the plugin C{mailclient-relay}, whose options and service
    are those of L{tap}.
    """
    makers = [
        maker
        for maker in getPlugins(IServiceMaker)
        if maker.tapname == "mailclient-relay"
    ]
    assert len(makers) == 1
    [maker] = makers
    assert maker.options is tap.Options
    assert maker.makeService is tap.makeService
    assert maker.description


def test_usageNamesEveryOption() -> None:
    """
    C{twistd mailclient-relay --help} lists every option.
    """
    text = str(tap.Options())
    for option in (
        "--listen",
        "--queue",
        "--smarthost",
        "--hostname",
        "--max-message-size",
        "--max-recipients",
        "--connections",
        "--retry-base",
        "--retry-max",
        "--lifetime",
        "--allow",
    ):
        assert option in text, option


def test_loadSettingsSeesNoEnvironment() -> None:
    """
    The autouse fixture leaves no C{MAILCLIENT_*} variable for
    L{loadSettings} to read.
    """
    assert loadSettings().host is None
