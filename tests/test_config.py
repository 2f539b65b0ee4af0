"""
L{mailclient.config}: settings merged from keyword arguments, an C{smtp://}
URL and C{MAILCLIENT_*} environment variables; the precedence table (the
one in C{docs/configuration.rst} included); URL and environment parsing;
conflicts; and L{SMTPSettings.keywords} feeding L{mailclient.sendmail},
L{mailclient.verifyConnection} and L{mailclient.Mailer}.
"""

from __future__ import annotations

import math
import re
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.internet import reactor
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.ssl import (
    Certificate,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)

from mailclient import Mailer, TLSMode, sendmail, verifyConnection
from mailclient.config import ENVIRONMENT_VARIABLES, SMTPSettings, loadSettings
from mailclient.demo import LoopbackReceiver, generateCertificates
from mailclient.errors import InvalidArgumentError

ROOT = Path(__file__).resolve().parent.parent
DOCS_PAGE = ROOT / "docs" / "configuration.rst"
SECRET = "s3cret"
SETTINGS = tuple(
    field.name for field in attrs.fields(SMTPSettings) if field.name != "sources"
)


def load(
    url: str | None = None, /, env: Mapping[str, str] = {}, **kw: Any
) -> SMTPSettings:
    """
    L{loadSettings} with C{env} as the whole environment.
    """
    return loadSettings(url, environ=env, **kw)


def environmentSource(setting: str) -> str:
    """
    The source recorded for C{setting} when the environment gave it.
    """
    return "environment:" + ENVIRONMENT_VARIABLES[setting]


# -- the precedence table ----------------------------------------------------


@attrs.frozen
class Row:
    """
    One setting (or pair of settings that go together) of the precedence
    table, given differently at each level.

    @ivar name: the row's name.
    @ivar keyword: the keyword arguments that give it.
    @ivar url: a URL that gives it (and only a host besides).
    @ivar environment: the variables that give it.
    @ivar values: for each attribute, its value from the keyword, the URL
        and the environment, in that order.
    """

    name: str
    keyword: Mapping[str, Any]
    url: str
    environment: Mapping[str, str]
    values: Mapping[str, tuple[Any, Any, Any]]


ROWS = [
    Row(
        "host",
        {"host": "kw.example"},
        "smtp://url.example",
        {"MAILCLIENT_HOST": "env.example"},
        {"host": ("kw.example", "url.example", "env.example")},
    ),
    Row(
        "port",
        {"port": 2525},
        "smtp://base.example:2526",
        {"MAILCLIENT_PORT": "2527"},
        {"port": (2525, 2526, 2527)},
    ),
    Row(
        "username+password",
        {"username": "kwuser", "password": "kw pass"},
        "smtp://urluser:url%20pass@base.example",
        {"MAILCLIENT_USERNAME": "envuser", "MAILCLIENT_PASSWORD": "env pass"},
        {
            "username": ("kwuser", "urluser", "envuser"),
            "password": ("kw pass", "url pass", "env pass"),
        },
    ),
    Row(
        "tls",
        {"tls": "none"},
        "smtp://base.example?tls=opportunistic",
        {"MAILCLIENT_TLS": "starttls"},
        {"tls": ("none", "opportunistic", "starttls")},
    ),
    Row(
        "timeout",
        {"timeout": 5},
        "smtp://base.example?timeout=6.5",
        {"MAILCLIENT_TIMEOUT": "7"},
        {"timeout": (5.0, 6.5, 7.0)},
    ),
    Row(
        "heloName",
        {"heloName": "kw.client.example"},
        "smtp://base.example?heloName=url.client.example",
        {"MAILCLIENT_HELO_NAME": "env.client.example"},
        {"heloName": ("kw.client.example", "url.client.example", "env.client.example")},
    ),
    Row(
        "clientCertificate+clientKey",
        {"clientCertificate": "/kw/cert.pem", "clientKey": Path("/kw/key.pem")},
        "smtp://base.example?clientCertificate=/url/cert.pem&clientKey=%2Furl%2Fkey.pem",
        {
            "MAILCLIENT_CLIENT_CERT": "/env/cert.pem",
            "MAILCLIENT_CLIENT_KEY": "/env/key.pem",
        },
        {
            "clientCertificate": ("/kw/cert.pem", "/url/cert.pem", "/env/cert.pem"),
            "clientKey": ("/kw/key.pem", "/url/key.pem", "/env/key.pem"),
        },
    ),
    Row(
        "caCertificates",
        {"caCertificates": "/kw/ca.pem"},
        "smtp://base.example?caCertificates=/url/ca.pem",
        {"MAILCLIENT_CA_FILE": "/env/ca.pem"},
        {"caCertificates": ("/kw/ca.pem", "/url/ca.pem", "/env/ca.pem")},
    ),
]

LEVELS = ("keyword", "URL", "environment")

# Which levels give the setting -> which one wins.  docs/configuration.rst
# shows the same table (test_docsPrecedenceTable).
COMBINATIONS: list[tuple[frozenset[str], str]] = [
    (frozenset({"keyword"}), "keyword"),
    (frozenset({"URL"}), "URL"),
    (frozenset({"environment"}), "environment"),
    (frozenset({"keyword", "URL"}), "keyword"),
    (frozenset({"keyword", "environment"}), "keyword"),
    (frozenset({"URL", "environment"}), "URL"),
    (frozenset({"keyword", "URL", "environment"}), "keyword"),
]


def expectedSource(level: str, setting: str) -> str:
    """
    What L{SMTPSettings.sources} records for C{setting} given at C{level}.
    """
    if level == "environment":
        return environmentSource(setting)
    return {"keyword": "keyword", "URL": "url"}[level]


def checkPrecedence(row: Row, given: frozenset[str], winner: str) -> None:
    """
    Give C{row}'s setting at the levels C{given} and check that the value
    and the recorded source are C{winner}'s.
    """
    settings = load(
        row.url if "URL" in given else None,
        row.environment if "environment" in given else {},
        **(row.keyword if "keyword" in given else {}),
    )
    for attribute, values in row.values.items():
        assert getattr(settings, attribute) == values[LEVELS.index(winner)]
        assert settings.sources[attribute] == expectedSource(winner, attribute)


@pytest.mark.parametrize(
    "given,winner", COMBINATIONS, ids=["+".join(sorted(g)) for g, _ in COMBINATIONS]
)
@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_precedence(row: Row, given: frozenset[str], winner: str) -> None:
    """
    Whatever the setting, a keyword argument wins over the URL, which wins
    over the environment; the settings record which level gave the value.
    """
    checkPrecedence(row, given, winner)


def test_precedenceTableCoversEverySetting() -> None:
    """
    The rows of the precedence table cover every setting.
    """
    assert {a for row in ROWS for a in row.values} == set(SETTINGS)


def test_settingsAreMergedOneByOne() -> None:
    """
    Each setting is merged on its own: a URL may give the host and the
    user, the environment the password and the port, a keyword the
    timeout.
    """
    settings = load(
        "smtps://alice@mail.example.com",
        {"MAILCLIENT_PASSWORD": SECRET, "MAILCLIENT_PORT": "2465"},
        timeout=9,
    )
    assert settings == SMTPSettings(
        host="mail.example.com",
        port=2465,
        username="alice",
        password=SECRET,
        tls="implicit",
        timeout=9.0,
        sources={
            "host": "url",
            "username": "url",
            "tls": "url",
            "password": "environment:MAILCLIENT_PASSWORD",
            "port": "environment:MAILCLIENT_PORT",
            "timeout": "keyword",
        },
    )


def test_nothingGiven() -> None:
    """
    With no keyword, no URL and an empty environment every setting is
    L{None} and nothing has a source; C{""} as the URL means no URL.
    """
    assert load() == load("") == SMTPSettings()
    assert dict(load().sources) == {}


def test_environmentDefaultsToOsEnviron(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Without C{environ}, L{loadSettings} reads C{os.environ} at the call.
    """
    monkeypatch.setenv("MAILCLIENT_HOST", "env.example")
    monkeypatch.setenv("MAILCLIENT_PORT", "2527")
    settings = loadSettings()
    assert (settings.host, settings.port) == ("env.example", 2527)
    monkeypatch.setenv("MAILCLIENT_PORT", "2528")
    assert loadSettings().port == 2528
    assert loadSettings(environ={}).port is None


# -- the tables in docs/configuration.rst -------------------------------------


def docsTable(label: str) -> list[list[str]]:
    """
    The body rows of the simple table after C{.. _label:} in the
    configuration page, each as a list of stripped cells (continuation
    lines joined to their row).
    """
    text = DOCS_PAGE.read_text("utf-8")
    after = text.split(f".. _{label}:", 1)[1].splitlines()
    borders = [
        i for i, line in enumerate(after) if re.fullmatch(r" *=+( +=+)+ *", line)
    ]
    border = after[borders[0]]
    columns = [m.span() for m in re.finditer("=+", border)]
    rows: list[list[str]] = []
    for line in after[borders[1] + 1 : borders[2]]:
        cells = [line[start:end].strip() for start, end in columns[:-1]]
        cells.append(line[columns[-1][0] :].strip())
        if cells[0]:
            rows.append(cells)
        else:  # a continuation line of the row above
            rows[-1] = [
                f"{a} {b}".strip() for a, b in zip(rows[-1], cells, strict=True)
            ]
    return rows


def literal(cell: str) -> str:
    """
    The last inline literal (C{``...``}) in a table cell.
    """
    return str(re.findall("``(.*?)``", cell)[-1])


def test_docsPrecedenceTable() -> None:
    """
    The precedence table of the documentation is the one tested above,
    and its last column is what L{SMTPSettings.sources} records.
    """
    rows = docsTable("precedence-table")
    documented = []
    for *marks, wins, recorded in rows:
        assert set(marks) <= {"yes", "no"}, marks
        given = frozenset(
            level for level, m in zip(LEVELS, marks, strict=True) if m == "yes"
        )
        documented.append((given, wins))
        assert literal(recorded).replace("VARIABLE", "MAILCLIENT_PORT") == (
            expectedSource(wins, "port")
        )
    assert documented == COMBINATIONS


SAMPLES: Mapping[str, tuple[str, Any]] = {
    "host": ("mx.example", "mx.example"),
    "port": ("2525", 2525),
    "username": ("alice", "alice"),
    "password": (SECRET, SECRET),
    "tls": ("none", "none"),
    "timeout": ("2.5", 2.5),
    "heloName": ("client.example", "client.example"),
    "clientCertificate": ("/tls/cert.pem", "/tls/cert.pem"),
    "clientKey": ("/tls/key.pem", "/tls/key.pem"),
    "caCertificates": ("/tls/ca.pem", "/tls/ca.pem"),
}

# What a setting needs besides itself, so that the check is coherent.
PARTNERS: Mapping[str, Mapping[str, Any]] = {
    "username": {"password": "x"},
    "password": {"username": "x"},
    "clientKey": {"clientCertificate": "/tls/other.pem"},
}


def test_docsSettingsTable() -> None:
    """
    The settings table of the documentation lists every setting with the
    URL part and the environment variable that really give it.
    """
    rows = docsTable("settings-table")
    assert [literal(row[0]) for row in rows] == list(SETTINGS)
    for cell, urlCell, variableCell, _ in rows:
        setting = literal(cell)
        text, value = SAMPLES[setting]
        partners = PARTNERS.get(setting, {})
        variable = literal(variableCell)
        assert ENVIRONMENT_VARIABLES[setting] == variable
        fromEnvironment = load(env={variable: text}, **partners)
        assert getattr(fromEnvironment, setting) == value
        assert fromEnvironment.sources[setting] == "environment:" + variable
        form = literal(urlCell)
        if form.startswith("?"):
            url = f"smtp://base.example{form}{text}"
        else:
            url = re.sub("[A-Z]{2,}", text, form)
        fromURL = load(url, **partners)
        assert getattr(fromURL, setting) == value
        assert fromURL.sources[setting] == "url"
        fromKeyword = load(**{setting: value, **partners})
        assert getattr(fromKeyword, setting) == value


# -- URLs ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,expected",
    [
        ("smtp://mail.example.com", {"host": "mail.example.com"}),
        ("smtp://mail.example.com/", {"host": "mail.example.com"}),
        ("smtp://mail.example.com?", {"host": "mail.example.com"}),
        (
            "smtp+starttls://mail.example.com:587",
            {"host": "mail.example.com", "port": 587, "tls": "starttls"},
        ),
        ("smtps://mail.example.com", {"host": "mail.example.com", "tls": "implicit"}),
        ("SMTPS://Mail.Example.COM", {"host": "Mail.Example.COM", "tls": "implicit"}),
        ("smtp://h.example:1", {"host": "h.example", "port": 1}),
        ("smtp://h.example:65535", {"host": "h.example", "port": 65535}),
        (
            "smtp://alice%40example.com:p%3Aw%40d%2F%3F%23%25%20@h.example",
            {
                "host": "h.example",
                "username": "alice@example.com",
                "password": "p:w@d/?#% ",
            },
        ),
        (
            "smtp://alice:p@ss@h.example",
            {"host": "h.example", "username": "alice", "password": "p@ss"},
        ),
        (
            "smtp://j%C3%BCrgen:p%C3%A4ss@h.example",
            {"host": "h.example", "username": "jürgen", "password": "päss"},
        ),
        (
            "smtp://alice:a:b@h.example",
            {"host": "h.example", "username": "alice", "password": "a:b"},
        ),
        ("smtp://[::1]:2525", {"host": "::1", "port": 2525}),
        ("smtp://[2001:db8::25]", {"host": "2001:db8::25"}),
        ("smtp://[fe80::1%25eth0]:25", {"host": "fe80::1%eth0", "port": 25}),
        ("smtp://127.0.0.1:25", {"host": "127.0.0.1", "port": 25}),
        ("smtp://bücher.example", {"host": "bücher.example"}),
        ("smtp://xn--bcher-kva.example", {"host": "xn--bcher-kva.example"}),
        (
            "smtp://h.example?timeout=2.5&heloName=client.example",
            {"host": "h.example", "timeout": 2.5, "heloName": "client.example"},
        ),
        ("smtp://h.example?timeout=.5", {"host": "h.example", "timeout": 0.5}),
        ("smtp://h.example?timeout=10", {"host": "h.example", "timeout": 10.0}),
        (
            "smtp://h.example?clientCertificate=%2Fetc%2Fc.pem&clientKey=/etc/k.pem"
            "&caCertificates=/etc/a+b%2B.pem",
            {
                "host": "h.example",
                "clientCertificate": "/etc/c.pem",
                "clientKey": "/etc/k.pem",
                "caCertificates": "/etc/a b+.pem",
            },
        ),
        ("smtp://h.example?tls=none", {"host": "h.example", "tls": "none"}),
        ("smtp://h.example?tls=implicit", {"host": "h.example", "tls": "implicit"}),
        ("smtps://h.example?tls=implicit", {"host": "h.example", "tls": "implicit"}),
        (
            "smtp+starttls://h.example/?tls=starttls",
            {"host": "h.example", "tls": "starttls"},
        ),
    ],
)
def test_url(url: str, expected: dict[str, Any]) -> None:
    """
    A URL gives the host (brackets of an IPv6 address removed, an IDN
    kept as given), the port (none means the default of
    L{mailclient.sendmail}), the percent-decoded user name and password,
    the TLS mode its scheme means, and the query's settings, all recorded
    as coming from the URL.
    """
    settings = load(url)
    assert settings == SMTPSettings(**expected, sources=dict.fromkeys(expected, "url"))


def test_smtpSchemeLeavesTLSOpen() -> None:
    """
    C{smtp://} means no TLS mode: the environment's mode applies, or none
    at all, so that L{mailclient.sendmail}'s default rule decides
    (implicit on port 465, STARTTLS with credentials, opportunistic
    otherwise).
    """
    assert load("smtp://h.example").tls is None
    assert load("smtp://h.example:465").keywords().get("tls") is None
    fromEnvironment = load("smtp://h.example", {"MAILCLIENT_TLS": "implicit"})
    assert fromEnvironment.tls == "implicit"
    assert fromEnvironment.sources["tls"] == "environment:MAILCLIENT_TLS"


@pytest.mark.parametrize(
    "url", ["smtp://h.example", "smtp+starttls://h.example", "smtps://h.example"]
)
def test_defaultPortLeftToSendmail(url: str) -> None:
    """
    A URL without a port gives none, whatever its scheme: the default of
    L{mailclient.sendmail} applies (465 with implicit TLS, else 25).
    """
    settings = load(url)
    assert settings.port is None
    assert "port" not in settings.keywords()


@pytest.mark.parametrize(
    "url,reason",
    [
        ("ftp://alice:s3cret@h.example", "unknown scheme 'ftp'"),
        ("http://h.example", "unknown scheme 'http'"),
        ("smtp+ssl://h.example", "unknown scheme 'smtp+ssl'"),
        ("h.example", "unknown scheme ''"),
        ("alice:s3cret@h.example", "unknown scheme 'alice'"),
        ("//alice:s3cret@h.example", "unknown scheme ''"),
        ("smtp:alice:s3cret@h.example", "'@' outside the user part"),
        ("smtp:h.example", "no host"),
        ("smtp://", "no host"),
        ("smtp://alice:s3cret@", "no host"),
        ("smtp://alice:s3cret@:25", "no host"),
        ("smtp://?timeout=1", "no host"),
        ("smtp://alice:s3cret@h.example:0", "the port 0: expected an int 1-65535"),
        ("smtp://alice:s3cret@h.example:65536", "the port 65536"),
        ("smtp://alice:s3cret@h.example:smtp", "the port 'smtp': expected a port"),
        ("smtp://alice:s3cret@h.example:+25", "the port '+25'"),
        ("smtp://alice:s3cret@h.example:", "the port '': expected a port"),
        ("smtp://alice:s3cret@a:b:c", "the port 'b:c'"),
        ("smtp://alice:s3cret@h.example/mail", "a path is not allowed: '/mail'"),
        ("smtp://alice:s3cret@h.example//", "a path is not allowed"),
        ("smtp://alice:s3cret@h.example#top", "a fragment"),
        ("smtp://alice:s3cret@h.example#", "a fragment"),
        ("smtp://alice:s3#cret@h.example", "a fragment"),
        ("smtp://alice:s3/cret@h.example", "'@' outside the user part"),
        ("smtp://alice:s3?cret@h.example", "'@' outside the user part"),
        ("smtp://alice:s3 cret@h.example", "spaces or control characters"),
        ("smtp://alice:s3\tcret@h.example", "spaces or control characters"),
        ("smtp://alice:s3cret@h.example\n", "spaces or control characters"),
        ("smtp://alice:s3cret@h.example?port=25", "unknown query parameter 'port'"),
        ("smtp://alice:s3cret@h.example?Timeout=1", "unknown query parameter"),
        (
            "smtp://alice:s3cret@h.example?password=x",
            "unknown query parameter 'password'",
        ),
        (
            "smtp://alice:s3cret@h.example?timeout=1&timeout=1",
            "query parameter 'timeout' given 2 times",
        ),
        ("smtp://alice:s3cret@h.example?timeout=", "?timeout= '': expected a number"),
        ("smtp://alice:s3cret@h.example?heloName=", "?heloName= '': must not be empty"),
        ("smtp://alice:s3cret@h.example?timeout", "malformed query"),
        ("smtp://alice:s3cret@h.example?timeout=1&&tls=none", "malformed query"),
        ("smtp://alice:s3cret@h.example?timeout=1;tls=none", "?timeout= '1;tls=none'"),
        ("smtp://alice:s3cret@h.example?heloName=%FF", "malformed query"),
        ("smtp://alice:s3cret@h.example?timeout=0", "?timeout= 0.0: expected a number"),
        ("smtp://alice:s3cret@h.example?timeout=-1", "?timeout= '-1'"),
        ("smtp://alice:s3cret@h.example?timeout=inf", "?timeout= 'inf'"),
        ("smtp://alice:s3cret@h.example?timeout=1e3", "?timeout= '1e3'"),
        (
            "smtp://alice:s3cret@h.example?tls=STARTTLS",
            "?tls= 'STARTTLS': expected one",
        ),
        (
            "smtp://alice:s3cret@h.example?heloName=a%0Db",
            "must not contain CR, LF or NUL",
        ),
        ("smtp://alice:s3cret@h.example?heloName=a+b", "must not contain whitespace"),
        ("smtp://alice:s3cret@h.example?caCertificates=%00", "CR, LF or NUL"),
        (
            "smtps://alice:s3cret@h.example?tls=starttls",
            "implicit TLS and STARTTLS together: the scheme smtps:// means "
            "tls='implicit', but ?tls= says 'starttls'",
        ),
        (
            "smtp+starttls://alice:s3cret@h.example?tls=implicit",
            "implicit TLS and STARTTLS together: the scheme smtp+starttls:// "
            "means tls='starttls', but ?tls= says 'implicit'",
        ),
        ("smtps://alice:s3cret@h.example?tls=none", "smtps:// means tls='implicit'"),
        (
            "smtp+starttls://alice:s3cret@h.example?tls=opportunistic",
            "but ?tls= says 'opportunistic'",
        ),
        ("smtp://@h.example", "the username '': must not be empty"),
        ("smtp://:s3cret@h.example", "the username '': must not be empty"),
        ("smtp://alice:@h.example", "the password '****': must not be empty"),
        ("smtp://al%0Dice:s3cret@h.example", "the username 'al\\rice': must not"),
        ("smtp://alice:s3%0Acret@h.example", "the password '****': must not contain"),
        ("smtp://al%FFice:s3cret@h.example", "the username is not percent-encoded"),
        ("smtp://alice:s3%FFcret@h.example", "the password is not percent-encoded"),
        ("smtp://alice:s3cret@[::1", "malformed"),
        ("smtp://alice:s3cret@::1]", "malformed"),
        ("smtp://alice:s3cret@[127.0.0.1]", "malformed"),
        ("smtp://alice:s3cret@[v1.x]", "not an IPv6 address in brackets: 'v1.x'"),
        ("smtp://alice:s3cret@[::1]25", "unexpected '25' after the IPv6 address"),
        ("smtp://alice:s3cret@[::1]:", "the port '': expected a port"),
        ("smtp://alice:s3cret@[::1]:99999", "the port 99999"),
    ],
)
def test_badURL(url: str, reason: str) -> None:
    """
    A URL that is not exactly C{scheme://[user[:password]@]host[:port][/]
    [?query]} with known parts is refused with an error naming what is
    wrong; nothing is ignored, and the password never shows: not in the
    message, the value, or the formatted traceback.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url)
    error = info.value
    assert error.argument == "url"
    assert reason in error.reason
    shown = "".join(traceback.format_exception(error))
    for text in (str(error), repr(error.value), shown):
        assert SECRET not in text
        assert "s3\ncret" not in text
    if ":s3cret@" in url:
        assert ":****@" in str(error)


@pytest.mark.parametrize("url", [b"smtp://alice:s3cret@h.example", 25])
def test_urlNotText(url: Any) -> None:
    """
    A URL that is not a C{str} is refused without being shown.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url)
    assert info.value.argument == "url"
    assert SECRET not in str(info.value)
    assert "expected a str" in info.value.reason


def test_passwordNeverInRepr() -> None:
    """
    The settings' repr shows every setting but the password, wherever the
    password came from.
    """
    for settings in (
        load("smtp://alice:s3cret@h.example"),
        load(username="alice", password=SECRET),
        load(env={"MAILCLIENT_USERNAME": "alice", "MAILCLIENT_PASSWORD": SECRET}),
    ):
        assert settings.password == SECRET
        assert SECRET not in repr(settings)
        assert "alice" in repr(settings)


# -- the environment -----------------------------------------------------------


def test_environment() -> None:
    """
    Every C{MAILCLIENT_*} variable gives its setting, recorded with the
    variable's name; other C{MAILCLIENT_*} variables are ignored.
    """
    environ = {
        "MAILCLIENT_HOST": "mx.example",
        "MAILCLIENT_PORT": "587",
        "MAILCLIENT_USERNAME": "alice",
        "MAILCLIENT_PASSWORD": "s3 cret",
        "MAILCLIENT_TLS": "starttls",
        "MAILCLIENT_TIMEOUT": "12.5",
        "MAILCLIENT_HELO_NAME": "client.example",
        "MAILCLIENT_CLIENT_CERT": "/tls/cert.pem",
        "MAILCLIENT_CLIENT_KEY": "/tls/key.pem",
        "MAILCLIENT_CA_FILE": "/tls/ca.pem",
        "MAILCLIENT_EXAMPLE_HOST": "ignored.example",
        "MAILCLIENT_URL": "smtp://ignored.example",
    }
    assert load(env=environ) == SMTPSettings(
        host="mx.example",
        port=587,
        username="alice",
        password="s3 cret",
        tls="starttls",
        timeout=12.5,
        heloName="client.example",
        clientCertificate="/tls/cert.pem",
        clientKey="/tls/key.pem",
        caCertificates="/tls/ca.pem",
        sources={s: environmentSource(s) for s in SETTINGS},
    )


def test_emptyVariableIsUnset() -> None:
    """
    An empty variable is not set: the setting stays unset, and a lower
    level does not apply to it either.
    """
    settings = load(
        env={"MAILCLIENT_HOST": "", "MAILCLIENT_PORT": "", "MAILCLIENT_TLS": ""}
    )
    assert settings == SMTPSettings()


@pytest.mark.parametrize(
    "variable,text,reason",
    [
        ("MAILCLIENT_PORT", "smtp", "expected a port 1-65535"),
        ("MAILCLIENT_PORT", "0", "expected an int 1-65535"),
        ("MAILCLIENT_PORT", "65536", "expected an int 1-65535"),
        ("MAILCLIENT_PORT", " 25", "expected a port"),
        ("MAILCLIENT_PORT", "25.0", "expected a port"),
        ("MAILCLIENT_PORT", "٢٥", "expected a port"),
        ("MAILCLIENT_TIMEOUT", "0", "greater than 0"),
        ("MAILCLIENT_TIMEOUT", "-5", "greater than 0"),
        ("MAILCLIENT_TIMEOUT", "nan", "greater than 0"),
        ("MAILCLIENT_TIMEOUT", "inf", "greater than 0"),
        ("MAILCLIENT_TIMEOUT", "1e400", "greater than 0"),
        ("MAILCLIENT_TIMEOUT", "10s", "greater than 0"),
        ("MAILCLIENT_TLS", "STARTTLS", "expected one of implicit, starttls"),
        ("MAILCLIENT_TLS", "ssl", "expected one of"),
        ("MAILCLIENT_HOST", "mx example", "must not contain whitespace"),
        ("MAILCLIENT_HOST", "mx.example\n", "CR, LF or NUL"),
        ("MAILCLIENT_HELO_NAME", "client\texample", "whitespace"),
        ("MAILCLIENT_USERNAME", "alice\r\n", "CR, LF or NUL"),
        ("MAILCLIENT_CA_FILE", "/tls/ca.pem\x00", "CR, LF or NUL"),
    ],
)
def test_badVariable(variable: str, text: str, reason: str) -> None:
    """
    A variable whose value cannot be used is refused with an error whose
    argument is the variable's name.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(env={variable: text})
    assert info.value.argument == variable
    assert reason in info.value.reason


def test_badTimeoutVariableValue() -> None:
    """
    A timeout so large that it is infinite is refused like C{inf}.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(env={"MAILCLIENT_TIMEOUT": "1" * 400})
    assert math.isinf(info.value.value)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", [f"{SECRET}\n", f"{SECRET}\r", f"\x00{SECRET}"])
def test_badPasswordVariableNotShown(text: str) -> None:
    """
    A bad C{MAILCLIENT_PASSWORD} is refused without showing it.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(env={"MAILCLIENT_USERNAME": "alice", "MAILCLIENT_PASSWORD": text})
    assert info.value.argument == "MAILCLIENT_PASSWORD"
    assert info.value.value == "****"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "variable,value", [("MAILCLIENT_PORT", 25), ("MAILCLIENT_PASSWORD", b"s3cret")]
)
def test_variableNotText(variable: str, value: object) -> None:
    """
    A value in C{environ} that is not a C{str} is refused, naming the
    variable (and not showing a password).
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(env={variable: value})  # type: ignore[dict-item]
    assert info.value.argument == variable
    assert "expected a str" in info.value.reason
    assert SECRET not in str(info.value)


# -- keyword arguments ----------------------------------------------------------


@pytest.mark.parametrize(
    "keyword,value,reason",
    [
        ("host", "", "must not be empty"),
        ("host", "mx example", "whitespace"),
        ("host", b"mx.example", "expected a str, not bytes"),
        ("port", 0, "expected an int 1-65535"),
        ("port", 65536, "expected an int 1-65535"),
        ("port", "25", "expected an int 1-65535"),
        ("port", True, "expected an int 1-65535"),
        ("port", 25.0, "expected an int 1-65535"),
        ("username", 5, "expected a str, not int"),
        ("username", "al\nice", "CR, LF or NUL"),
        ("tls", "STARTTLS", "expected one of implicit, starttls, opportunistic, none"),
        ("tls", True, "expected one of"),
        ("timeout", 0, "greater than 0"),
        ("timeout", -1.5, "greater than 0"),
        ("timeout", math.nan, "greater than 0"),
        ("timeout", math.inf, "greater than 0"),
        ("timeout", True, "greater than 0"),
        ("timeout", "10", "greater than 0"),
        ("heloName", "client.example\r\nRSET", "CR, LF or NUL"),
        ("heloName", "", "must not be empty"),
        ("clientCertificate", b"/tls/cert.pem", "expected a str, not bytes"),
        ("clientKey", Path("/tls/\nkey.pem"), "CR, LF or NUL"),
        ("clientKey", "", "must not be empty"),
        ("caCertificates", "/tls/\x00ca.pem", "CR, LF or NUL"),
    ],
)
def test_badKeyword(keyword: str, value: Any, reason: str) -> None:
    """
    A keyword argument that cannot be used is refused with an error naming
    the keyword; building L{SMTPSettings} directly checks the same way.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(**{keyword: value})
    assert info.value.argument == keyword
    assert reason in info.value.reason
    with pytest.raises(InvalidArgumentError) as direct:
        SMTPSettings(**{keyword: value})
    assert direct.value.argument == keyword


@pytest.mark.parametrize("value", [f"{SECRET}\n", b"s3cret", 12345])
def test_badPasswordKeywordNotShown(value: object) -> None:
    """
    A bad password keyword is refused without showing it.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(username="alice", password=value)  # type: ignore[arg-type]
    assert info.value.argument == "password"
    assert info.value.value == "****"
    assert SECRET not in str(info.value) and "12345" not in str(info.value)


def test_keywordValuesNormalized() -> None:
    """
    A L{TLSMode} is kept as its value, a timeout as a C{float}, and a path
    as a C{str}.
    """
    settings = load(
        tls=TLSMode.STARTTLS,
        timeout=10,
        clientCertificate=Path("/tls/cert.pem"),
        caCertificates=Path("/tls/ca.pem"),
    )
    assert settings.tls == "starttls"
    assert settings.timeout == 10.0 and isinstance(settings.timeout, float)
    assert settings.clientCertificate == "/tls/cert.pem"
    assert settings.caCertificates == "/tls/ca.pem"


def test_settingsAreValues() -> None:
    """
    Settings are frozen, comparable and hashable values; their sources
    cannot be changed afterwards.
    """
    settings = load("smtp://h.example:2525")
    assert settings == load("smtp://h.example:2525")
    assert hash(settings) == hash(load("smtp://h.example:2525"))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.port = 25  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.sources["port"] = "keyword"  # type: ignore[index]


# -- conflicts --------------------------------------------------------------------


@pytest.mark.parametrize(
    "url,tls,together",
    [
        ("smtps://h.example", "starttls", True),
        ("smtps://h.example", "opportunistic", False),
        ("smtps://h.example", "none", False),
        ("smtp+starttls://h.example", "implicit", True),
        ("smtp+starttls://h.example", "opportunistic", False),
        ("smtp+starttls://h.example", "none", False),
    ],
)
def test_tlsKeywordDisagreesWithScheme(url: str, tls: str, together: bool) -> None:
    """
    A C{tls} keyword that disagrees with the mode the URL's scheme means
    is refused; implicit TLS and STARTTLS together are named as such.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url, tls=tls)
    assert info.value.argument == "tls"
    assert f"the keyword says {tls!r}" in info.value.reason
    assert info.value.reason.startswith("implicit TLS and STARTTLS together") == (
        together
    )


@pytest.mark.parametrize(
    "url,tls",
    [
        ("smtps://h.example", "implicit"),
        ("smtp+starttls://h.example", "starttls"),
        ("smtp://h.example", "implicit"),
        ("smtp://h.example", "starttls"),
        ("smtp://h.example?tls=none", "opportunistic"),
    ],
)
def test_tlsKeywordAgreesWithScheme(url: str, tls: str) -> None:
    """
    A C{tls} keyword that agrees with the scheme, or any mode with
    C{smtp://} (which means none), is taken from the keyword.
    """
    settings = load(url, tls=tls)
    assert (settings.tls, settings.sources["tls"]) == (tls, "keyword")


@pytest.mark.parametrize(
    "url,variable", [("smtps://h.example", "starttls"), ("smtp+starttls://h", "none")]
)
def test_environmentTLSNeverConflictsWithScheme(url: str, variable: str) -> None:
    """
    C{MAILCLIENT_TLS} is the deployment's default: a URL's scheme, the
    caller's explicit choice, wins over it without an error.
    """
    settings = load(url, {"MAILCLIENT_TLS": variable})
    assert (
        settings.tls
        == {"smtps": "implicit", "smtp+starttls": "starttls"}[url.split(":")[0]]
    )
    assert settings.sources["tls"] == "url"


@pytest.mark.parametrize(
    "url,env,keywords,argument,where",
    [
        (None, {}, {"username": "alice"}, "username", "from the keyword"),
        ("smtp://alice@h.example", {}, {}, "username", "from the URL"),
        (None, {"MAILCLIENT_USERNAME": "alice"}, {}, "username", "MAILCLIENT_USERNAME"),
        (None, {}, {"password": SECRET}, "password", "from the keyword"),
        (None, {"MAILCLIENT_PASSWORD": SECRET}, {}, "password", "MAILCLIENT_PASSWORD"),
        (
            "smtp://alice@h.example",
            {"MAILCLIENT_USERNAME": "bob"},
            {},
            "username",
            "from the URL",
        ),
    ],
)
def test_usernameWithoutPassword(
    url: str | None,
    env: dict[str, str],
    keywords: dict[str, str],
    argument: str,
    where: str,
) -> None:
    """
    Once every level is merged, a user name without a password (or the
    reverse) is refused, saying which level gave the one there is; the
    password is not shown.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url, env, **keywords)
    assert info.value.argument == argument
    assert where in info.value.reason
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "url,env,keywords",
    [
        ("smtp://alice@h.example", {"MAILCLIENT_PASSWORD": SECRET}, {}),
        ("smtp://h.example", {"MAILCLIENT_USERNAME": "alice"}, {"password": SECRET}),
        ("smtp://alice:s3cret@h.example", {}, {"username": "bob"}),
    ],
)
def test_credentialsFromTwoLevels(
    url: str, env: dict[str, str], keywords: dict[str, str]
) -> None:
    """
    The user name and the password may come from different levels, such
    as the user in the URL and the password in the environment.
    """
    settings = load(url, env, **keywords)
    assert settings.username is not None and settings.password == SECRET


@pytest.mark.parametrize(
    "url,env,keywords,where",
    [
        (None, {}, {"clientKey": "/tls/key.pem"}, "from the keyword"),
        ("smtp://h.example?clientKey=/tls/key.pem", {}, {}, "from the URL"),
        (None, {"MAILCLIENT_CLIENT_KEY": "/tls/key.pem"}, {}, "MAILCLIENT_CLIENT_KEY"),
    ],
)
def test_clientKeyWithoutCertificate(
    url: str | None, env: dict[str, str], keywords: dict[str, str], where: str
) -> None:
    """
    A client key without a client certificate is refused.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url, env, **keywords)
    assert info.value.argument == "clientKey"
    assert where in info.value.reason
    assert "needs a clientCertificate" in info.value.reason


@pytest.mark.parametrize(
    "url,env,keywords,setting",
    [
        (None, {}, {"tls": "none", "caCertificates": "/ca.pem"}, "caCertificates"),
        (
            "smtp://h?tls=none",
            {"MAILCLIENT_CLIENT_CERT": "/c.pem"},
            {},
            "clientCertificate",
        ),
        (
            None,
            {"MAILCLIENT_TLS": "none"},
            {"clientCertificate": "/c.pem"},
            "clientCertificate",
        ),
    ],
)
def test_noTLSWithCertificates(
    url: str | None, env: dict[str, str], keywords: dict[str, str], setting: str
) -> None:
    """
    C{tls="none"} with a client certificate or CA file is refused: the
    files could never be used.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load(url, env, **keywords)
    assert info.value.argument == "tls"
    assert f"{setting} (from" in info.value.reason
    assert "never uses TLS" in info.value.reason


def test_noTLSInEnvironmentOverriddenByScheme() -> None:
    """
    C{MAILCLIENT_TLS=none} does not conflict with certificates when the
    URL's scheme decides the mode.
    """
    settings = load(
        "smtps://h.example",
        {"MAILCLIENT_TLS": "none", "MAILCLIENT_CA_FILE": "/ca.pem"},
    )
    assert (settings.tls, settings.caCertificates) == ("implicit", "/ca.pem")


@pytest.mark.parametrize(
    "values,argument",
    [
        ({"username": "alice"}, "username"),
        ({"password": SECRET}, "password"),
        ({"clientKey": "/k.pem"}, "clientKey"),
        ({"tls": "none", "caCertificates": "/ca.pem"}, "tls"),
    ],
)
def test_directConflicts(values: dict[str, Any], argument: str) -> None:
    """
    L{SMTPSettings} built directly refuses the same conflicts.
    """
    with pytest.raises(InvalidArgumentError) as info:
        SMTPSettings(**values)
    assert info.value.argument == argument
    assert "from the keyword" in info.value.reason


# -- keywords() ---------------------------------------------------------------


def test_keywordsLeaveOutUnset() -> None:
    """
    Only the settings that have a value become keyword arguments, so the
    callee's defaults apply to the rest; the host is always there.
    """
    assert load().keywords() == {"smtphost": None}
    assert load("smtp://h.example").keywords() == {"smtphost": "h.example"}


def test_keywordsEverySetting() -> None:
    """
    Every connection setting becomes the keyword argument of the same name
    (the host C{smtphost}, or C{host} for L{Mailer}).
    """
    settings = load(
        "smtp+starttls://alice:s3cret@mx.example:587?timeout=20&heloName=me.example"
    )
    expected = {
        "smtphost": "mx.example",
        "port": 587,
        "username": "alice",
        "password": SECRET,
        "tls": "starttls",
        "timeout": 20.0,
        "heloName": "me.example",
    }
    assert settings.keywords() == expected
    expected["host"] = expected.pop("smtphost")
    assert settings.keywords(hostKeyword="host") == expected


def test_keywordsBadHostKeyword() -> None:
    """
    The host goes under C{smtphost} or C{host}, nothing else.
    """
    with pytest.raises(InvalidArgumentError) as info:
        load().keywords(hostKeyword="server")
    assert info.value.argument == "hostKeyword"


@attrs.frozen
class PEMFiles:
    """
    PEM files for building client TLS options.

    @ivar ca: a CA certificate.
    @ivar otherCa: another CA certificate.
    @ivar bundle: both CA certificates.
    @ivar both: a certificate followed by its key.
    @ivar certificate: the same certificate alone.
    @ivar key: its key alone.
    @ivar chain: the certificate, the CA certificate, then the key.
    @ivar otherKey: a key that does not match the certificate.
    @ivar encryptedKey: the certificate's key, encrypted.
    @ivar junk: a file that holds no PEM data.
    @ivar missing: a file that does not exist.
    @ivar pair: the certificate with its key, as Twisted loads them.
    """

    ca: Path
    otherCa: Path
    bundle: Path
    both: Path
    certificate: Path
    key: Path
    chain: Path
    otherKey: Path
    encryptedKey: Path
    junk: Path
    missing: Path
    pair: PrivateCertificate


@pytest.fixture(scope="module")
def pemData() -> dict[str, bytes]:
    """
    The contents of the L{PEMFiles}, made once.
    """
    ca, pair = generateCertificates("client.example")
    otherCa, _ = generateCertificates("other.example")
    keyObject = pair.privateKey.original.to_cryptography_key()
    key = keyObject.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    certificate = pair.original.to_cryptography().public_bytes(
        serialization.Encoding.PEM
    )
    otherKey = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    encrypted = keyObject.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    return {
        "ca": ca.dumpPEM(),
        "otherCa": otherCa.dumpPEM(),
        "bundle": ca.dumpPEM() + otherCa.dumpPEM(),
        "both": certificate + key,
        "certificate": certificate,
        "key": key,
        "chain": certificate + ca.dumpPEM() + key,
        "otherKey": otherKey,
        "encryptedKey": encrypted,
        "junk": b"not a certificate\n",
    }


@pytest.fixture
def pem(tmp_path: Path, pemData: dict[str, bytes]) -> PEMFiles:
    """
    The L{PEMFiles}, written under C{tmp_path}.
    """
    paths = {}
    for name, data in pemData.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    return PEMFiles(
        **paths,
        missing=tmp_path / "missing.pem",
        pair=PrivateCertificate.loadPEM(pemData["both"]),
    )


def sameKey(a: PrivateCertificate, b: PrivateCertificate) -> bool:
    """
    Whether C{a} and C{b} hold the same private key.
    """
    numbers = [
        c.privateKey.original.to_cryptography_key().private_numbers()  # type: ignore[union-attr]
        for c in (a, b)
    ]
    return bool(numbers[0] == numbers[1])


@attrs.define
class Recorder:
    """
    Records the arguments of C{optionsForClientTLS} and of
    C{trustRootFromCertificates}.
    """

    options: list[dict[str, Any]] = attrs.Factory(list)
    roots: list[list[Certificate]] = attrs.Factory(list)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """
    Replace the TLS option builders of L{mailclient.config} with recorders
    that still build the real options.
    """
    record = Recorder()

    def options(hostname: str, **kwargs: Any) -> IOpenSSLClientConnectionCreator:
        record.options.append({"hostname": hostname, **kwargs})
        return optionsForClientTLS(hostname, **kwargs)

    def roots(certificates: list[Certificate]) -> Any:
        record.roots.append(list(certificates))
        return trustRootFromCertificates(certificates)

    monkeypatch.setattr("mailclient.config.optionsForClientTLS", options)
    monkeypatch.setattr("mailclient.config.trustRootFromCertificates", roots)
    return record


def test_noTLSOptionsWithoutFiles(recorder: Recorder) -> None:
    """
    Without a client certificate or CA file no C{tlsOptions} are built:
    L{mailclient.sendmail} verifies against the system's trust store.
    """
    assert "tlsOptions" not in load("smtps://h.example").keywords()
    assert recorder.options == []


def test_clientCertificateKeepsSystemTrust(pem: PEMFiles, recorder: Recorder) -> None:
    """
    A client certificate without a CA file leaves the trust root to the
    platform (C{trustRoot=None}: the system's trust store), so the server
    is still verified, for the host of the settings.
    """
    keywords = load("smtps://mx.example", clientCertificate=pem.both).keywords()
    assert IOpenSSLClientConnectionCreator.providedBy(keywords["tlsOptions"])
    [options] = recorder.options
    assert options["hostname"] == "mx.example"
    assert options["trustRoot"] is None
    assert recorder.roots == []
    client = options["clientCertificate"]
    assert isinstance(client, PrivateCertificate)
    assert client.digest() == pem.pair.digest()
    assert sameKey(client, pem.pair)
    assert "extraCertChain" not in options["extraCertificateOptions"]


def test_caFileIsTheTrustRoot(pem: PEMFiles, recorder: Recorder) -> None:
    """
    A CA file's certificates, every one of a bundle, are the trust root;
    without a client certificate none is sent.
    """
    load("smtp://mx.example", caCertificates=pem.bundle).keywords()
    [options] = recorder.options
    assert options["clientCertificate"] is None
    [roots] = recorder.roots
    assert [c.dumpPEM() for c in roots] == [
        Certificate.loadPEM(pem.ca.read_bytes()).dumpPEM(),
        Certificate.loadPEM(pem.otherCa.read_bytes()).dumpPEM(),
    ]
    assert options["trustRoot"] is not None


def test_clientCertificateWithKeyFileAndCA(pem: PEMFiles, recorder: Recorder) -> None:
    """
    With a separate key file and a CA file, the options hold the
    certificate with that key and trust the CA.
    """
    load(
        "smtp://mx.example",
        {"MAILCLIENT_CA_FILE": str(pem.ca)},
        clientCertificate=pem.certificate,
        clientKey=pem.key,
    ).keywords()
    [options] = recorder.options
    assert options["clientCertificate"].digest() == pem.pair.digest()
    assert sameKey(options["clientCertificate"], pem.pair)
    [[root]] = recorder.roots
    assert root.dumpPEM() == Certificate.loadPEM(pem.ca.read_bytes()).dumpPEM()


def test_clientCertificateChain(pem: PEMFiles, recorder: Recorder) -> None:
    """
    Certificates after the first in the client certificate's file are sent
    as its chain.
    """
    load("smtp://mx.example", clientCertificate=pem.chain).keywords()
    [options] = recorder.options
    assert options["clientCertificate"].digest() == pem.pair.digest()
    [chained] = options["extraCertificateOptions"]["extraCertChain"]
    assert Certificate(chained).dumpPEM() == (
        Certificate.loadPEM(pem.ca.read_bytes()).dumpPEM()
    )


@pytest.mark.parametrize(
    "given,setting,reason",
    [
        ({"caCertificates": "missing"}, "caCertificates", "cannot read the file"),
        ({"caCertificates": "junk"}, "caCertificates", "no valid PEM certificate"),
        ({"caCertificates": "key"}, "caCertificates", "no valid PEM certificate"),
        ({"clientCertificate": "missing"}, "clientCertificate", "cannot read"),
        ({"clientCertificate": "junk"}, "clientCertificate", "no valid PEM cert"),
        ({"clientCertificate": "key"}, "clientCertificate", "no valid PEM cert"),
        (
            {"clientCertificate": "certificate"},
            "clientCertificate",
            "no valid PEM private key",
        ),
        (
            {"clientCertificate": "certificate", "clientKey": "missing"},
            "clientKey",
            "cannot read the file",
        ),
        (
            {"clientCertificate": "certificate", "clientKey": "junk"},
            "clientKey",
            "no valid PEM private key",
        ),
        (
            {"clientCertificate": "certificate", "clientKey": "otherKey"},
            "clientKey",
            "the private key does not match the certificate",
        ),
        (
            {"clientCertificate": "certificate", "clientKey": "encryptedKey"},
            "clientKey",
            "the private key is encrypted",
        ),
        (
            {"clientCertificate": "both", "caCertificates": "junk"},
            "caCertificates",
            "no valid PEM certificate",
        ),
    ],
)
def test_badFiles(
    pem: PEMFiles, given: dict[str, str], setting: str, reason: str
) -> None:
    """
    A certificate or key file that cannot be read or used is refused when
    the keyword arguments are built, naming the setting, the file and the
    level it came from.
    """
    keywords = {name: getattr(pem, value) for name, value in given.items()}
    settings = load("smtp://mx.example", **keywords)
    with pytest.raises(InvalidArgumentError) as info:
        settings.keywords()
    assert info.value.argument == setting
    assert info.value.value == str(keywords[setting])
    assert reason in info.value.reason
    assert info.value.reason.endswith("(from the keyword)")


def test_badFileFromEnvironment(pem: PEMFiles) -> None:
    """
    A bad file named by a variable is reported with the variable's name.
    """
    settings = load("smtp://mx.example", {"MAILCLIENT_CA_FILE": str(pem.missing)})
    with pytest.raises(InvalidArgumentError) as info:
        settings.keywords()
    assert info.value.argument == "caCertificates"
    assert info.value.reason.endswith("(from MAILCLIENT_CA_FILE)")


@pytest.mark.parametrize("setting", ["caCertificates", "clientCertificate"])
def test_certificatesNeedAHost(pem: PEMFiles, setting: str) -> None:
    """
    Client TLS options verify the server's certificate against the host
    name, so files without a host are refused when they are built.
    """
    given: dict[str, Any] = {setting: str(pem.both)}
    settings = load(**given)
    with pytest.raises(InvalidArgumentError) as info:
        settings.keywords()
    assert info.value.argument == "host"
    assert setting in info.value.reason


# -- keywords() with sendmail, verifyConnection and Mailer --------------------


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[LoopbackReceiver]:
    """
    A plain receiver (no TLS) on 127.0.0.1, stopped after the test.
    """
    r = LoopbackReceiver(str(tmp_path / "maildir"))
    pytest_twisted.blockon(r.start(reactor))
    yield r
    pytest_twisted.blockon(r.stop())


MESSAGE = b"Subject: settings\r\n\r\nSent with loaded settings.\r\n"


@pytest_twisted.ensureDeferred
async def test_sendmailWithSettings(receiver: LoopbackReceiver) -> None:
    """
    C{sendmail(..., **settings.keywords())} sends with the loaded settings.
    """
    settings = load(
        f"smtp://127.0.0.1:{receiver.port}?tls=none&heloName=client.example",
        {"MAILCLIENT_TIMEOUT": "10"},
    )
    result = await sendmail(
        fromAddress="app@example.com",
        toAddresses=["alice@example.com"],
        message=MESSAGE,
        **settings.keywords(),
    )
    assert result.accepted == ("alice@example.com",)
    assert [d.recipient for d in receiver.deliveries] == ["alice@example.com"]
    assert receiver.deliveries[0].read() == MESSAGE


@pytest_twisted.ensureDeferred
async def test_verifyConnectionWithSettings(receiver: LoopbackReceiver) -> None:
    """
    C{verifyConnection(**settings.keywords())} checks the server with the
    loaded settings.
    """
    settings = load(
        env={
            "MAILCLIENT_HOST": "127.0.0.1",
            "MAILCLIENT_PORT": str(receiver.port),
            "MAILCLIENT_TLS": "none",
            "MAILCLIENT_TIMEOUT": "10",
        }
    )
    info = await verifyConnection(**settings.keywords())
    assert info.extended and info.tlsVersion is None


@pytest_twisted.ensureDeferred
async def test_mailerWithSettings(receiver: LoopbackReceiver) -> None:
    """
    C{Mailer(**settings.keywords(hostKeyword="host"))} sends with the
    loaded settings.
    """
    settings = load(f"smtp://127.0.0.1:{receiver.port}?tls=none&timeout=10")
    mailer = Mailer(**settings.keywords(hostKeyword="host"))
    try:
        result = await mailer.send("app@example.com", "bob@example.com", MESSAGE)
    finally:
        await mailer.stopService()
    assert result.accepted == ("bob@example.com",)
    assert [d.recipient for d in receiver.deliveries] == ["bob@example.com"]
