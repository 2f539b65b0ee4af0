"""
Tests for L{mailclient._wire.capabilities}.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire.capabilities import Capabilities
from mailclient._wire.replies import Reply, ReplyParser

POSTFIX = [
    b"250-localhost",
    b"250-PIPELINING",
    b"250-SIZE 1048576",
    b"250-VRFY",
    b"250-ETRN",
    b"250-STARTTLS",
    b"250-AUTH PLAIN LOGIN CRAM-MD5",
    b"250-AUTH=PLAIN LOGIN",
    b"250-ENHANCEDSTATUSCODES",
    b"250-8BITMIME",
    b"250-DSN",
    b"250-SMTPUTF8",
    b"250 CHUNKING",
]

AIOSMTPD = [
    b"250-testhost.example",
    b"250-SIZE 33554432",
    b"250-8BITMIME",
    b"250-SMTPUTF8",
    b"250-AUTH LOGIN PLAIN",
    b"250 HELP",
]

BOOLEANS = [
    "starttls",
    "pipelining",
    "eightBitMIME",
    "smtpUTF8",
    "dsn",
    "chunking",
    "binaryMIME",
    "enhancedStatusCodes",
    "requireTLS",
]


def parse(lines: list[bytes]) -> Capabilities:
    """
    Parse C{lines} as an EHLO reply through the reply parser, then read the
    capabilities from it.
    """
    parser = ReplyParser()
    for line in lines[:-1]:
        assert parser.feed(line) is None
    reply = parser.feed(lines[-1])
    assert reply is not None
    return Capabilities.fromEHLOReply(reply)


def fromKeywordLines(*lines: str) -> Capabilities:
    """
    Read capabilities from an EHLO reply with the given keyword lines.
    """
    return Capabilities.fromEHLOReply(Reply(250, ("host.example greets you", *lines)))


def test_postfix() -> None:
    """
    A Postfix EHLO reply yields its server name, every keyword with its
    parameters, and the union of its C{AUTH} and legacy C{AUTH=}
    mechanisms.
    """
    caps = parse(POSTFIX)
    assert caps.serverName == "localhost"
    assert caps.keywords == frozenset(
        {
            "PIPELINING",
            "SIZE",
            "VRFY",
            "ETRN",
            "STARTTLS",
            "AUTH",
            "ENHANCEDSTATUSCODES",
            "8BITMIME",
            "DSN",
            "SMTPUTF8",
            "CHUNKING",
        }
    )
    assert caps.params("SIZE") == ("1048576",)
    assert caps.params("AUTH") == ("PLAIN", "LOGIN", "CRAM-MD5")
    assert caps.authMechanisms == frozenset({"PLAIN", "LOGIN", "CRAM-MD5"})
    assert caps.size == 1048576
    assert caps.sizeAdvertised
    enabled = {name for name in BOOLEANS if getattr(caps, name)}
    assert enabled == {
        "starttls",
        "pipelining",
        "eightBitMIME",
        "smtpUTF8",
        "dsn",
        "chunking",
        "enhancedStatusCodes",
    }
    assert dict(caps.limits) == {}
    assert caps.extensions[0] == ("PIPELINING", ())


def test_aiosmtpd() -> None:
    """
    An aiosmtpd EHLO reply yields its server name, size limit, mechanisms
    and extensions; what it does not advertise is absent.
    """
    caps = parse(AIOSMTPD)
    assert caps.serverName == "testhost.example"
    assert caps.size == 33554432
    assert caps.authMechanisms == frozenset({"LOGIN", "PLAIN"})
    assert caps.has("HELP")
    enabled = {name for name in BOOLEANS if getattr(caps, name)}
    assert enabled == {"eightBitMIME", "smtpUTF8"}


@pytest.mark.parametrize("name", BOOLEANS)
def test_eachBooleanProperty(name: str) -> None:
    """
    Each extension property is true exactly when its own keyword is
    advertised, in any case.
    """
    keyword = {
        "starttls": "STARTTLS",
        "pipelining": "PIPELINING",
        "eightBitMIME": "8BITMIME",
        "smtpUTF8": "SMTPUTF8",
        "dsn": "DSN",
        "chunking": "CHUNKING",
        "binaryMIME": "BINARYMIME",
        "enhancedStatusCodes": "ENHANCEDSTATUSCODES",
        "requireTLS": "REQUIRETLS",
    }[name]
    assert getattr(fromKeywordLines(keyword), name) is True
    assert getattr(fromKeywordLines(keyword.lower()), name) is True
    others = [k for k in BOOLEANS if k != name]
    caps = fromKeywordLines(keyword)
    assert not any(getattr(caps, other) for other in others)
    assert getattr(fromKeywordLines(), name) is False
    assert getattr(Capabilities.empty(), name) is False


@pytest.mark.parametrize(
    ("lines", "mechanisms"),
    [
        ([], set()),
        (["AUTH"], set()),
        (["AUTH PLAIN"], {"PLAIN"}),
        (["AUTH plain login"], {"PLAIN", "LOGIN"}),
        (["auth PLAIN"], {"PLAIN"}),
        (["AUTH=LOGIN PLAIN"], {"LOGIN", "PLAIN"}),
        (["auth=login"], {"LOGIN"}),
        (["AUTH=LOGIN,PLAIN"], {"LOGIN", "PLAIN"}),
        (["AUTH=LOGIN, PLAIN"], {"LOGIN", "PLAIN"}),
        (["AUTH= LOGIN"], {"LOGIN"}),
        (["AUTH="], set()),
        (["AUTH PLAIN", "AUTH=LOGIN"], {"PLAIN", "LOGIN"}),
        (["AUTH=LOGIN", "AUTH CRAM-MD5 PLAIN"], {"LOGIN", "CRAM-MD5", "PLAIN"}),
        (["AUTH XOAUTH2 SCRAM-SHA-256"], {"XOAUTH2", "SCRAM-SHA-256"}),
        (["AUTHX PLAIN"], set()),
    ],
)
def test_authMechanisms(lines: list[str], mechanisms: set[str]) -> None:
    """
    The mechanisms are the upper-cased union of every C{AUTH} line and
    every legacy C{AUTH=} line, whose mechanisms may be separated by spaces
    or commas.
    """
    assert fromKeywordLines(*lines).authMechanisms == frozenset(mechanisms)


def test_authUnionKeepsOrderWithoutDuplicates() -> None:
    """
    C{AUTH} advertised in both forms appears once, with each mechanism
    once, in the order first advertised.
    """
    caps = fromKeywordLines("AUTH PLAIN LOGIN", "AUTH=LOGIN,XOAUTH2 PLAIN")
    assert caps.params("AUTH") == ("PLAIN", "LOGIN", "XOAUTH2")
    assert [k for k, _ in caps.extensions] == ["AUTH"]


@pytest.mark.parametrize(
    ("lines", "advertised", "size"),
    [
        ([], False, None),
        (["SIZE"], True, None),
        (["SIZE 0"], True, None),
        (["SIZE 1"], True, 1),
        (["SIZE 10240000"], True, 10240000),
        (["size 100"], True, 100),
        (["SIZE 100 200"], True, 100),
        (["SIZE 100", "SIZE 200"], True, 100),
        (["SIZE abc"], True, None),
        (["SIZE -1"], True, None),
        (["SIZE 1.5"], True, None),
        (["SIZE 1e6"], True, None),
        (["SIZE \u0661\u0660"], True, None),
        (["SIZE 00"], True, None),
        (["SIZE 007"], True, 7),
    ],
)
def test_size(lines: list[str], advertised: bool, size: int | None) -> None:
    """
    The size limit is C{SIZE}'s numeric value; without C{SIZE}, without a
    value, with a non-numeric one or with C{0} (no fixed limit) there is
    none, though C{SIZE} may still be advertised.
    """
    caps = fromKeywordLines(*lines)
    assert caps.sizeAdvertised is advertised
    assert caps.size == size


@pytest.mark.parametrize(
    ("lines", "limits"),
    [
        ([], {}),
        (["LIMITS"], {}),
        (
            ["LIMITS RCPTMAX=100 MAILMAX=1000 RCPTDOMAINMAX=10"],
            {"RCPTMAX": 100, "MAILMAX": 1000, "RCPTDOMAINMAX": 10},
        ),
        (["limits rcptmax=5"], {"RCPTMAX": 5}),
        (["LIMITS RCPTMAX=5 RCPTMAX=9"], {"RCPTMAX": 5}),
        (["LIMITS X_Y-Z=3"], {"X_Y-Z": 3}),
        (
            [
                "LIMITS RCPTMAX= =5 RCPTMAX MAILMAX=x MAILMAX=-1 A=1=2 B.C=3 "
                "D=\u0661 E=7"
            ],
            {"E": 7},
        ),
        (["RCPTMAX=100"], {}),
    ],
)
def test_limits(lines: list[str], limits: dict[str, int]) -> None:
    """
    RFC 9422 limits are read from C{LIMITS} with upper-cased names;
    malformed entries are skipped and a repeated name keeps its first
    value.
    """
    assert dict(fromKeywordLines(*lines).limits) == limits


def test_limitsReadOnly() -> None:
    """
    The limits mapping cannot be changed through the capabilities.
    """
    caps = fromKeywordLines("LIMITS RCPTMAX=100")
    with pytest.raises(TypeError):
        caps.limits["RCPTMAX"] = 1  # type: ignore[index]
    assert caps.limits["RCPTMAX"] == 100


@pytest.mark.parametrize(
    ("lines", "keywords"),
    [
        (["", "   ", "PIPELINING"], {"PIPELINING"}),
        (["-BAD", "PIPELINING"], {"PIPELINING"}),
        (["X_BAD", "DSN"], {"DSN"}),
        (["X.BAD", "DSN"], {"DSN"}),
        (["=", "DSN"], {"DSN"}),
        (["\u00c4RGER", "DSN"], {"DSN"}),
        (["\uff24SN"], set()),  # full-width D is not ASCII
        (["X-GOOD-1"], {"X-GOOD-1"}),
        (["8BITMIME"], {"8BITMIME"}),
        (["xclient NAME ADDR"], {"XCLIENT"}),
        (["  DSN  "], {"DSN"}),
        (["DSN", "dsn"], {"DSN"}),
    ],
)
def test_keywordLines(lines: list[str], keywords: set[str]) -> None:
    """
    Blank lines and lines whose first word is not an RFC 5321 keyword are
    skipped, not fatal; keywords are upper-cased and surrounding whitespace
    ignored.
    """
    assert fromKeywordLines(*lines).keywords == frozenset(keywords)


def test_paramsSplitOnWhitespace() -> None:
    """
    Parameters are the words after the keyword, whatever whitespace
    separates them, with their case kept.
    """
    caps = fromKeywordLines("XCLIENT  NAME\tADDR  proto ")
    assert caps.params("xclient") == ("NAME", "ADDR", "proto")


def test_hasAndParamsCaseInsensitive() -> None:
    """
    Keywords are looked up in any case; absent keywords have no parameters.
    """
    caps = fromKeywordLines("Size 100", "PIPELINING")
    assert caps.has("size") and caps.has("SIZE") and caps.has("sIzE")
    assert caps.params("size") == ("100",)
    assert caps.params("PIPELINING") == ()
    assert not caps.has("DSN")
    assert caps.params("DSN") == ()


def test_duplicateKeywordParamsMerged() -> None:
    """
    A keyword advertised twice appears once, with the parameters of both
    lines.
    """
    caps = fromKeywordLines("XFOO A", "xfoo B A")
    assert caps.extensions == (("XFOO", ("A", "B")),)


@pytest.mark.parametrize(
    ("lines", "serverName"),
    [
        (("mail.example.com Hello [127.0.0.1]",), "mail.example.com"),
        (("mail.example.com",), "mail.example.com"),
        (("  spaced.example  hi",), "spaced.example"),
        (("",), ""),
        ((), ""),
    ],
)
def test_serverName(lines: tuple[str, ...], serverName: str) -> None:
    """
    The server name is the first word of the reply's first line, or empty.
    """
    caps = Capabilities.fromEHLOReply(Reply(250, lines))
    assert caps.serverName == serverName


def test_emptyReply() -> None:
    """
    A reply with no lines at all has no keywords.
    """
    assert Capabilities.fromEHLOReply(Reply(250, ())) == Capabilities.empty()


def test_greetingIsNotAKeyword() -> None:
    """
    The first line is the greeting, even when it looks like a keyword.
    """
    caps = Capabilities.fromEHLOReply(Reply(250, ("PIPELINING",)))
    assert caps.serverName == "PIPELINING"
    assert not caps.pipelining
    assert caps.keywords == frozenset()


@pytest.mark.parametrize("serverName", ["", "helo.example"])
def test_empty(serverName: str) -> None:
    """
    A HELO session has the given server name and no extensions.
    """
    caps = Capabilities.empty(serverName)
    assert caps.serverName == serverName
    assert caps.keywords == frozenset()
    assert caps.authMechanisms == frozenset()
    assert not caps.sizeAdvertised
    assert caps.size is None
    assert dict(caps.limits) == {}


def test_frozenAndHashable() -> None:
    """
    Capabilities are immutable values: equal replies give equal, equally
    hashed capabilities, usable as dictionary keys.
    """
    first = parse(POSTFIX)
    second = parse(POSTFIX)
    assert first == second
    assert hash(first) == hash(second)
    assert {first: 1}[second] == 1
    assert first != parse(AIOSMTPD)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        first.serverName = "x"  # type: ignore[misc]


keywordNames = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,15}", fullmatch=True).filter(
    lambda k: not k.upper().startswith("AUTH=")
)
paramWords = st.lists(st.from_regex(r"[!-~]{1,10}", fullmatch=True), max_size=4)


@given(
    entries=st.lists(st.tuples(keywordNames, paramWords), max_size=10),
)
def test_everyAdvertisedKeywordFound(
    entries: list[tuple[str, list[str]]],
) -> None:
    """
    Every well-formed keyword line of an EHLO reply is found, in any case,
    with its parameters (of its first line, when repeated).
    """
    lines = [" ".join([keyword, *params]) for keyword, params in entries]
    caps = fromKeywordLines(*lines)
    assert caps.keywords == frozenset(k.upper() for k, _ in entries)
    seen = set()
    for keyword, params in entries:
        assert caps.has(keyword.lower())
        found = caps.params(keyword)
        assert set(params) <= set(found)
        if keyword.upper() not in seen:
            seen.add(keyword.upper())
            firstParams = tuple(dict.fromkeys(params))
            assert found[: len(firstParams)] == firstParams
