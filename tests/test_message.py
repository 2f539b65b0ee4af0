"""
Tests for L{mailclient.message}: parsing and checking addresses, composing
messages with the standard library's C{email} package, deciding the
envelope from the headers as C{smtplib} does, and sending with
L{sendMessage} and L{Mailer.sendMessage} (against the in-memory server of
L{mailclient.testing}), with the C{Bcc} header never sent.
"""

from __future__ import annotations

import base64
import copy
import datetime
import email.policy
import io
import re
import smtplib
from collections.abc import Iterator, Sequence
from email import message_from_bytes
from email.generator import BytesGenerator
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from email.utils import parsedate_to_datetime
from pathlib import Path
from random import Random
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.task import Clock

from mailclient import Mailer, SendResult
from mailclient._sendmail import sendMessage
from mailclient._source import toMessageSource
from mailclient.errors import InvalidArgumentError, UnsupportedFeatureError
from mailclient.message import (
    Attachment,
    Envelope,
    addMissingHeaders,
    composeMessage,
    envelopeFromMessage,
    parseAddress,
    parseAddressList,
)
from mailclient.testing import (
    DEFAULT_CAPABILITIES,
    MemoryEndpoint,
    ScriptedServer,
    settle,
)
from tests.helpers import Outcome

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGOQz9/yHwAENQJCfUyX2wAAAABJRU5ErkJggg=="
)
"""
A one-pixel PNG image.
"""

CONTROLS = ["\r", "\n", "\x00"]


def reasonOf(info: pytest.ExceptionInfo[InvalidArgumentError]) -> str:
    """
    The reason an L{InvalidArgumentError} gives.
    """
    return info.value.reason


# -- parseAddress ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "displayName", "username", "domain"),
    [
        ("alice@example.com", "", "alice", "example.com"),
        ("Alice <alice@example.com>", "Alice", "alice", "example.com"),
        (
            '"Liddell, Alice" <alice@example.com>',
            "Liddell, Alice",
            "alice",
            "example.com",
        ),
        ("alice@example.com (Alice)", "", "alice", "example.com"),
        ("  <alice@example.com>  ", "", "alice", "example.com"),
        ("Zoë Ångström <zoe@example.com>", "Zoë Ångström", "zoe", "example.com"),
        ("=?utf-8?q?Zo=C3=AB?= <zoe@example.com>", "Zoë", "zoe", "example.com"),
        ('"john doe"@example.com', "", "john doe", "example.com"),
        ("a+tag@sub.example.co.uk", "", "a+tag", "sub.example.co.uk"),
        ("postmaster@localhost", "", "postmaster", "localhost"),
        ("jörg@example.com", "", "jörg", "example.com"),
        ("a@bücher.de", "", "a", "bücher.de"),
        ("a@xn--bcher-kva.de", "", "a", "xn--bcher-kva.de"),
        ("a@[192.0.2.1]", "", "a", "[192.0.2.1]"),
        ("a@[IPv6:2001:db8::1]", "", "a", "[IPv6:2001:db8::1]"),
        ("a@example.com,", "", "a", "example.com"),
        (
            "x" * 64 + "@" + "d" * 63 + "." + "d" * 63 + "." + "d" * 57 + ".com",
            "",
            "x" * 64,
            None,
        ),
    ],
)
def test_parseAddress(
    value: str, displayName: str, username: str, domain: str | None
) -> None:
    """
    A mailbox is parsed into its display name (RFC 2047 encoded words
    decoded), local part and domain; non-ASCII display names, local parts
    and internationalized domains, address literals and comments are
    accepted.
    """
    address = parseAddress(value)
    assert isinstance(address, Address)
    assert address.display_name == displayName
    assert address.username == username
    if domain is not None:
        assert address.domain == domain


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"alice@example.com", "must be a string or an email.headerregistry.Address"),
        (None, "must be a string or an email.headerregistry.Address"),
        (["alice@example.com"], "must be a string"),
        ("", "is empty"),
        ("   ", "is empty"),
        ("alice", "has no '@domain'"),
        ("Alice <>", "has no '@domain'"),
        ("alice@", "has no domain after '@'"),
        ("Alice <alice@>", "cannot be parsed"),
        ("@example.com", "cannot be parsed"),
        ('""@example.com', "has no local part before '@'"),
        ("a@[", "cannot be parsed as an address"),
        ("team: a@example.com, b@example.com;", "is a group"),
        ("undisclosed-recipients:;", "is a group"),
        ("a@example.com, b@example.com", "holds 2 addresses; give exactly one"),
        ('"Alice <alice@example.com>', "end of header inside quoted string"),
        ("<alice@example.com", "missing trailing '>'"),
        ("alice@example.com>", "cannot be parsed"),
        ("Alice <alice@example.com> junk", "cannot be parsed"),
        ("alice@example.com (unclosed", "end of header inside comment"),
        ("alice smith@example.com", "cannot be parsed"),
        ("a@b@example.com", "cannot be parsed"),
        ("<@route:a@example.com>", "obsolete route"),
        ("(a@example.com)", "cannot be parsed"),
        ("a@-example.com", "is not a valid host name"),
        ("a@example-.com", "is not a valid host name"),
        ("a@exa_mple.com", "is not a valid host name"),
        ("a@" + "d" * 64 + ".com", "is not a valid host name"),
        ("a@" + ".".join(["d" * 60] * 5), "is not a valid host name"),
        ("a@☃.net", "is not a valid internationalized domain name"),
        ("a@xn--zz.com", "invalid IDNA label"),
        ("a@[192.0.2]", "is neither [IPv4] nor [IPv6:...]"),
        ("a@[IPv6:nope]", "is neither [IPv4] nor [IPv6:...]"),
        ("x" * 200 + "@" + "d" * 50 + ".com", "is 255 octets long; at most 254"),
        ("é" * 100 + "@" + "d" * 50 + ".com", "is 255 octets long; at most 254"),
        ("a" * 190 + "@" + "ü" * 40 + ".de", "octets long; at most 254"),
    ],
)
def test_parseAddressRefused(value: object, reason: str) -> None:
    """
    What is not exactly one usable mailbox is refused with an
    L{InvalidArgumentError} (a C{ValueError}) that says why.
    """
    with pytest.raises(InvalidArgumentError) as info:
        parseAddress(value)  # type: ignore[arg-type]
    assert reason in reasonOf(info)
    assert isinstance(info.value, ValueError)
    assert info.value.argument == "address"
    assert info.value.value == value


def test_parseAddressNamesTheArgument() -> None:
    """
    The error names the argument the caller gave.
    """
    with pytest.raises(InvalidArgumentError) as info:
        parseAddress("nobody", argument="fromAddress")
    assert info.value.argument == "fromAddress"
    assert str(info.value).startswith("invalid fromAddress 'nobody': ")


@pytest.mark.parametrize(
    "address",
    [
        Address("Alice", "alice", "example.com"),
        Address("Zoë", addr_spec="zoe@bücher.de"),
        Address(username="john doe", domain="example.com"),
    ],
)
def test_parseAddressObject(address: Address) -> None:
    """
    An L{Address} is checked as its text would be, and given back equal.
    """
    assert parseAddress(address) == address


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        (Address("Al\x00ice", "alice", "example.com"), "NUL"),
        (Address("Alice", "ali\x00ce", "example.com"), "NUL"),
        (Address("Alice", "alice", "example.com\x00"), "NUL"),
        (Address("Alice", "alice", "exa mple.com"), "cannot be parsed"),
        (Address("Alice", "alice", "-example.com"), "not a valid host name"),
        (Address(), "has no '@domain'"),
    ],
)
def test_parseAddressObjectRefused(address: Address, reason: str) -> None:
    """
    An L{Address} with a NUL in any part (CR and LF it refuses itself), or
    one that is not a usable mailbox, is refused.
    """
    with pytest.raises(InvalidArgumentError) as info:
        parseAddress(address)
    assert reason in reasonOf(info)


VALID = [
    "alice@example.com",
    "Alice <alice@example.com>",
    "Zoë <zoe@bücher.de>",
    "a@example.com, Bob <b@example.com>",
]


@given(
    value=st.sampled_from(VALID),
    control=st.sampled_from(CONTROLS),
    data=st.data(),
)
def test_controlsRefusedAnywhere(value: str, control: str, data: st.DataObject) -> None:
    """
    A CR, LF or NUL at any position of an address or address list is
    refused, and the error says which and where, before any parsing.
    """
    position = data.draw(st.integers(0, len(value)))
    bad = value[:position] + control + value[position:]
    for parse in (parseAddress, parseAddressList):
        with pytest.raises(InvalidArgumentError) as info:
            parse(bad)
        assert f"at position {position}; CR, LF and NUL are not allowed" in (
            reasonOf(info)
        )


# -- parseAddressList --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", []),
        ("  ", []),
        ("undisclosed-recipients:;", []),
        ("a@example.com", ["a@example.com"]),
        ("a@example.com, Bob <b@example.com>", ["a@example.com", "b@example.com"]),
        (
            "team: a@example.com, b@example.com;, c@example.com",
            ["a@example.com", "b@example.com", "c@example.com"],
        ),
        ("a@example.com, a@example.com", ["a@example.com", "a@example.com"]),
        (Address("A", "a", "example.com"), ["a@example.com"]),
        (
            ["a@example.com", Address("B", "b", "example.com")],
            ["a@example.com", "b@example.com"],
        ),
        (("Bob <b@example.com>",), ["b@example.com"]),
        (iter(["a@example.com"]), ["a@example.com"]),
        ([], []),
    ],
)
def test_parseAddressList(value: Any, expected: list[str]) -> None:
    """
    A header-style list gives its mailboxes in order, groups expanded (an
    empty group, and an empty string, give none); an L{Address} gives
    itself; an iterable gives each of its single mailboxes.
    """
    found = parseAddressList(value)
    assert isinstance(found, tuple)
    assert [a.addr_spec for a in found] == expected


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"a@example.com", "must be a string, an email.headerregistry.Address"),
        (42, "must be a string, an email.headerregistry.Address"),
        ("a@example.com, nobody", "addr-spec local part with no domain"),
        ("a@example.com,, b@example.com", "empty element"),
        ("a@example.com, b@-x.com", "is not a valid host name"),
        ("a@example.com, b@", "has no domain after '@'"),
        (["a@example.com, b@example.com"], "holds 2 addresses; give exactly one"),
        (["a@example.com", ""], "is empty"),
        (["team: a@example.com;"], "is a group"),
        ([b"a@example.com"], "must be a string or an email.headerregistry.Address"),
    ],
)
def test_parseAddressListRefused(value: object, reason: str) -> None:
    """
    A list with a bad mailbox, or an iterable with an item that is not
    exactly one mailbox, is refused.
    """
    with pytest.raises(InvalidArgumentError) as info:
        parseAddressList(value, argument="to")  # type: ignore[arg-type]
    assert reason in reasonOf(info)
    assert info.value.argument == "to"


_ATEXT = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
# No "--" in the third and fourth places: IDNA reserves them.
_LABELS = st.from_regex(r"[a-z0-9]{1,6}(-[a-z0-9]{1,5})?", fullmatch=True)
_WORDS = st.text(
    alphabet=st.characters(
        categories=("L", "N", "P", "S"), exclude_characters="\x7f", max_codepoint=0x2FFF
    ),
    min_size=1,
    max_size=8,
)
_ADDRESSES = st.builds(
    lambda words, local, labels, unicodeDomain: Address(
        " ".join(words),
        username=".".join(local),
        domain=".".join(labels) + (".bücher.de" if unicodeDomain else ".example"),
    ),
    st.lists(_WORDS, max_size=3),
    st.lists(st.text(alphabet=_ATEXT, min_size=1, max_size=6), min_size=1, max_size=2),
    st.lists(_LABELS, min_size=1, max_size=3),
    st.booleans(),
)


def sentHeader(addresses: Sequence[Address], *, utf8Headers: bool) -> Any:
    """
    The C{To} header of a message composed to C{addresses}, as it is read
    back from the bytes sent with or without UTF-8 headers.
    """
    message = composeMessage(fromAddress="a@example.com", to=addresses, text="x")
    data = toMessageSource(message).open(utf8Headers=utf8Headers).read(-1)
    assert data.split(b"\r\n\r\n")[0].isascii() or utf8Headers
    return message_from_bytes(data, policy=email.policy.default)["To"]


@given(addresses=st.lists(_ADDRESSES, min_size=1, max_size=4))
def test_addressListSurvivesFormatAndParse(addresses: list[Address]) -> None:
    """
    Any list of mailboxes (display names of any printable text) survives
    being written as text and parsed again, and being sent in a message
    with UTF-8 headers and parsed again.
    """
    assert parseAddressList(", ".join(str(a) for a in addresses)) == tuple(addresses)
    header = sentHeader(addresses, utf8Headers=True)
    assert parseAddressList(str(header)) == tuple(_aLabels(a) for a in addresses)


def _aLabels(address: Address) -> Address:
    """
    C{address} as L{composeMessage} writes it: an internationalized domain
    as IDNA A-labels.
    """
    domain = address.domain.replace("bücher.de", "xn--bcher-kva.de")
    return Address(address.display_name, address.username, domain)


@given(address=_ADDRESSES)
def test_displayNameSurvivesRFC2047(address: Address) -> None:
    """
    Any mailbox survives being sent without UTF-8 (its display name RFC 2047
    encoded, its domain IDNA A-labels) and parsed again.  Display names are
    compared without their spaces: the standard library's parser keeps the
    folding white space between two encoded words of a long display name,
    which RFC 2047 (section 6.2) says to drop.

    (One mailbox per header: in an address list the standard library's
    generator of this Python may encode the separating comma itself when it
    folds, CPython gh-100884.)
    """
    [back] = parseAddressList(str(sentHeader([address], utf8Headers=False)))
    expected = _aLabels(address)
    assert (back.username, back.domain) == (expected.username, expected.domain)
    assert "".join(back.display_name.split()) == "".join(expected.display_name.split())


# -- non-ASCII -----------------------------------------------------------------------


def world(*capabilities: bytes) -> tuple[Clock, ScriptedServer, MemoryEndpoint]:
    """
    A clock, an in-memory server offering the default capabilities and
    C{capabilities}, and an endpoint that connects to it.
    """
    clock = Clock()
    server = ScriptedServer(clock, capabilities=[*DEFAULT_CAPABILITIES, *capabilities])
    return clock, server, MemoryEndpoint(clock, server)


def send(
    message: Message, *capabilities: bytes, **keywords: Any
) -> tuple[Outcome[SendResult], ScriptedServer]:
    """
    Send C{message} with L{sendMessage} to a new in-memory server that
    offers C{capabilities} too, and let everything happen.
    """
    clock, server, endpoint = world(*capabilities)
    keywords.setdefault("tls", "none")
    outcome = Outcome(
        sendMessage(None, message, endpoint=endpoint, reactor=clock, **keywords)
    )
    settle(clock)
    return outcome, server


def test_nonASCIIDisplayNamesEncoded() -> None:
    """
    Non-ASCII display names and subjects are written RFC 2047 encoded when
    the message is sent without UTF-8 headers: in the bytes the message
    source gives, and in the bytes a server without SMTPUTF8 receives.
    """
    message = composeMessage(
        fromAddress="Zoë Ångström <zoe@example.com>",
        to=[Address("Jörg", "joerg", "example.com")],
        subject="Grüße",
        text="hello",
    )
    data = toMessageSource(message).open(utf8Headers=False).read(-1)
    head = data.split(b"\r\n\r\n")[0]
    assert head.isascii()
    assert re.search(
        rb"^From: =\?utf-8\?[bq]\?[^?]+\?= <zoe@example.com>\r$", head, re.M
    )
    assert b"To: =?utf-8?q?J=C3=B6rg?= <joerg@example.com>" in head
    assert b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=" in head

    outcome, server = send(message)
    assert outcome.value().accepted == ("joerg@example.com",)
    [delivery] = server.deliveries
    assert delivery.data == data
    parsed = message_from_bytes(delivery.data, policy=email.policy.default)
    assert parsed["From"].addresses[0].display_name == "Zoë Ångström"


def test_internationalDomainWrittenAsALabels() -> None:
    """
    An internationalized domain with an ASCII local part is written in the
    headers as IDNA A-labels (so any generator can serialise it), and the
    Message-ID is made on that domain.
    """
    message = composeMessage(
        fromAddress="Jörg <j@bücher.de>", to="a@bücher.de", text="x"
    )
    assert message["From"].addresses[0].domain == "xn--bcher-kva.de"
    assert message["To"].addresses[0].addr_spec == "a@xn--bcher-kva.de"
    assert message["Message-ID"].endswith("@xn--bcher-kva.de>")
    assert b"xn--bcher-kva.de" in message.as_bytes(policy=email.policy.SMTP)


def test_nonASCIILocalPartNeedsSMTPUTF8() -> None:
    """
    A non-ASCII local part is accepted by L{parseAddress} and
    L{composeMessage}, sent with SMTPUTF8 to a server that offers it, and
    refused with L{UnsupportedFeatureError} (nothing delivered) by one that
    does not.
    """
    assert parseAddress("jörg@example.com").username == "jörg"
    message = composeMessage(
        fromAddress="app@example.com", to="jörg@bücher.de", text="hello"
    )
    assert message["To"].addresses[0].domain == "bücher.de"

    outcome, server = send(message)
    error = outcome.error(UnsupportedFeatureError)
    assert "SMTPUTF8" in error.reason
    assert server.deliveries == []

    outcome, server = send(message, b"SMTPUTF8")
    assert outcome.value().accepted == ("jörg@bücher.de",)
    [delivery] = server.deliveries
    assert "To: jörg@bücher.de\r\n".encode() in delivery.data


# -- attachments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "mimeType", "expected"),
    [
        ("logo.png", None, "image/png"),
        ("LOGO.PNG", None, "image/png"),
        ("figures.csv", None, "text/csv"),
        ("report.pdf", None, "application/pdf"),
        ("notes.txt", None, "text/plain"),
        ("page.html", None, "text/html"),
        ("blob.bin", None, "application/octet-stream"),
        ("figures.csv.gz", None, "application/gzip"),
        ("archive.tar.bz2", None, "application/octet-stream"),
        ("mail.eml", None, "application/octet-stream"),
        ("README", None, "application/octet-stream"),
        (None, None, "application/octet-stream"),
        ("logo.png", "image/x-custom", "image/x-custom"),
        ("data", "Application/JSON", "application/json"),
        (None, "text/plain", "text/plain"),
    ],
)
def test_attachmentMimeType(
    filename: str | None, mimeType: str | None, expected: str
) -> None:
    """
    The MIME type is the one given (lower-cased), else guessed from the
    file name, else C{application/octet-stream}; a compressed file is its
    compression's type, and message or multipart guesses fall back to
    C{application/octet-stream}.
    """
    attachment = Attachment(b"data", filename, mimeType)
    assert attachment.mimeType == expected
    assert f"{attachment.maintype}/{attachment.subtype}" == expected


def test_attachmentGuessedEqualsGiven() -> None:
    """
    An attachment whose type was guessed equals one given the same type.
    """
    assert Attachment(b"x", "a.png") == Attachment(b"x", "a.png", "image/png")


@pytest.mark.parametrize(
    ("arguments", "argument", "reason"),
    [
        ({"data": "text"}, "data", "must be bytes"),
        ({"data": None}, "data", "must be bytes"),
        ({"filename": ""}, "filename", "is empty"),
        ({"filename": 3}, "filename", "must be a string"),
        ({"filename": "a\r\nb.txt"}, "filename", "carriage return"),
        ({"filename": "a\x00.txt"}, "filename", "NUL"),
        ({"mimeType": "image"}, "mimeType", "must be type/subtype"),
        ({"mimeType": "text/plain; charset=utf-8"}, "mimeType", "must be type/subtype"),
        ({"mimeType": "image/ png"}, "mimeType", "must be type/subtype"),
        ({"mimeType": "text/plain\n"}, "mimeType", "line feed"),
        ({"mimeType": "multipart/mixed"}, "mimeType", "cannot be attached as bytes"),
        ({"mimeType": "message/rfc822"}, "mimeType", "cannot be attached as bytes"),
        ({"contentId": ""}, "contentId", "must be printable ASCII"),
        ({"contentId": "<>"}, "contentId", "must be printable ASCII"),
        ({"contentId": "a b"}, "contentId", "must be printable ASCII"),
        ({"contentId": "<a<b>"}, "contentId", "must be printable ASCII"),
        ({"contentId": "lögo"}, "contentId", "must be printable ASCII"),
        ({"contentId": "logo\r\n"}, "contentId", "carriage return"),
    ],
)
def test_attachmentRefused(
    arguments: dict[str, Any], argument: str, reason: str
) -> None:
    """
    Content that is not bytes, an empty file name or one with CR, LF or NUL,
    a MIME type that is not C{type/subtype} (or cannot be given as bytes),
    and a content id that is not printable ASCII are refused.
    """
    values = {"data": b"x", **arguments}
    with pytest.raises(InvalidArgumentError) as info:
        Attachment(**values)
    assert info.value.argument == argument
    assert reason in reasonOf(info)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("logo", "logo"), ("<logo@example.com>", "logo@example.com"), ("a.b@c", "a.b@c")],
)
def test_attachmentContentId(given: str, expected: str) -> None:
    """
    A content id is kept without its angle brackets, given or not.
    """
    assert Attachment(b"x", contentId=given).contentId == expected


def test_attachmentBytesLike() -> None:
    """
    A C{bytearray} or C{memoryview} is taken as bytes.
    """
    assert Attachment(bytearray(b"ab")).data == b"ab"
    assert Attachment(memoryview(b"cd")).data == b"cd"


def test_attachmentFromPath(tmp_path: Path) -> None:
    """
    L{Attachment.fromPath} reads the file; the file name defaults to the
    path's last part (the MIME type is guessed from it), and can be given.
    """
    path = tmp_path / "figures.csv"
    path.write_bytes(b"month,count\r\n5,12\r\n")
    attachment = Attachment.fromPath(path)
    assert attachment == Attachment(
        b"month,count\r\n5,12\r\n", "figures.csv", "text/csv"
    )
    assert Attachment.fromPath(str(path), filename="x.png").mimeType == "image/png"
    named = Attachment.fromPath(path, mimeType="text/plain", contentId="c1")
    assert (named.filename, named.mimeType, named.contentId) == (
        "figures.csv",
        "text/plain",
        "c1",
    )


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/nonexistent/file.txt", "cannot be read: No such file or directory"),
        (b"/etc/hostname", "must be a str or os.PathLike"),
        (42, "must be a str or os.PathLike"),
    ],
)
def test_attachmentFromPathRefused(path: Any, reason: str) -> None:
    """
    A path that is not text, or a file that cannot be read, is refused.
    """
    with pytest.raises(InvalidArgumentError) as info:
        Attachment.fromPath(path)
    assert info.value.argument == "path"
    assert reason in reasonOf(info)


def test_attachmentFromBytesPathLike() -> None:
    """
    A path object whose path is bytes is refused.
    """

    class BytesPath:
        def __fspath__(self) -> bytes:
            return b"/etc/hostname"

    with pytest.raises(InvalidArgumentError) as info:
        Attachment.fromPath(BytesPath())  # type: ignore[arg-type]
    assert "must be a text path" in reasonOf(info)


def test_attachmentFromFile(tmp_path: Path) -> None:
    """
    L{Attachment.fromFile} reads an open binary file from where it is to
    its end, without closing it; the file name defaults to the last part
    of the file's name, when it has one.
    """
    stream = io.BytesIO(b"skip:content")
    stream.seek(5)
    attachment = Attachment.fromFile(stream)
    assert attachment == Attachment(b"content", None, "application/octet-stream")
    assert not stream.closed
    given = Attachment.fromFile(io.BytesIO(b"x"), filename="a.pdf", contentId="p")
    assert (given.mimeType, given.contentId) == ("application/pdf", "p")
    path = tmp_path / "logo.png"
    path.write_bytes(PNG)
    with path.open("rb") as f:
        fromDisk = Attachment.fromFile(f)
    assert fromDisk == Attachment(PNG, "logo.png", "image/png")


@pytest.mark.parametrize("opened", ["text", "nothing"])
def test_attachmentFromFileRefused(tmp_path: Path, opened: str) -> None:
    """
    A file opened in text mode, or something without C{read}, is refused.
    """
    path = tmp_path / "a.txt"
    path.write_text("hello")
    with path.open("r") as f:
        fileobj: Any = f if opened == "text" else object()
        with pytest.raises(InvalidArgumentError) as info:
            Attachment.fromFile(fileobj)
    assert info.value.argument == "fileobj"
    assert "binary mode" in reasonOf(info)


# -- composeMessage: structure -------------------------------------------------------


def tree(part: MIMEPart) -> Any:
    """
    The MIME structure of C{part}: its content type, or for a multipart a
    pair of its content type and its parts' trees.
    """
    if part.is_multipart():
        return (part.get_content_type(), [tree(p) for p in part.iter_parts()])
    return part.get_content_type()


ALTERNATIVE = ("multipart/alternative", ["text/plain", "text/html"])
RELATED = ("multipart/related", ["text/html", "image/png"])


@pytest.mark.parametrize(
    ("text", "html", "inline", "attach", "expected"),
    [
        (True, False, False, False, "text/plain"),
        (False, True, False, False, "text/html"),
        (True, True, False, False, ALTERNATIVE),
        (False, True, True, False, RELATED),
        (True, True, True, False, ("multipart/alternative", ["text/plain", RELATED])),
        (
            True,
            False,
            False,
            True,
            ("multipart/mixed", ["text/plain", "application/pdf", "text/csv"]),
        ),
        (
            False,
            True,
            False,
            True,
            ("multipart/mixed", ["text/html", "application/pdf", "text/csv"]),
        ),
        (
            True,
            True,
            False,
            True,
            ("multipart/mixed", [ALTERNATIVE, "application/pdf", "text/csv"]),
        ),
        (
            False,
            True,
            True,
            True,
            ("multipart/mixed", [RELATED, "application/pdf", "text/csv"]),
        ),
        (
            True,
            True,
            True,
            True,
            (
                "multipart/mixed",
                [
                    ("multipart/alternative", ["text/plain", RELATED]),
                    "application/pdf",
                    "text/csv",
                ],
            ),
        ),
    ],
)
def test_structure(
    text: bool, html: bool, inline: bool, attach: bool, expected: Any
) -> None:
    """
    Every combination of text, HTML, inline parts and attachments gives the
    usual MIME structure: alternative for text and HTML, related for HTML
    and its inline parts, mixed around everything when there are
    attachments.
    """
    message = composeMessage(
        fromAddress="app@example.com",
        to="alice@example.com",
        text="Hello" if text else None,
        html='<p>Hello <img src="cid:logo"></p>' if html else None,
        inline=[Attachment(PNG, "logo.png", contentId="logo")] if inline else (),
        attachments=[
            Attachment(b"%PDF-1.4", "report.pdf"),
            Attachment(b"a,b\r\n", "x.csv"),
        ]
        if attach
        else (),
    )
    assert isinstance(message, EmailMessage)
    assert message.policy is email.policy.default
    assert tree(message) == expected
    assert message["MIME-Version"] == "1.0"


def parts(message: EmailMessage) -> list[EmailMessage]:
    """
    The leaf parts of C{message}, in order.
    """
    return [p for p in message.walk() if not p.is_multipart()]


def test_bodies() -> None:
    """
    The text and HTML bodies are kept as given (in UTF-8).
    """
    message = composeMessage(
        fromAddress="app@example.com",
        text="Grüße\n.leading dot\n",
        html="<p>Grüße</p>\n",
    )
    plain, html = parts(message)
    assert plain.get_content() == "Grüße\n.leading dot\n"
    assert plain.get_content_charset() == "utf-8"
    assert html.get_content() == "<p>Grüße</p>\n"


def test_inlinePartReferencedByContentId() -> None:
    """
    An inline part has the C{Content-ID} the HTML refers to with C{cid:},
    an inline disposition with its file name, and its content intact.
    """
    message = composeMessage(
        fromAddress="app@example.com",
        html='<img src="cid:logo@example.com"><img src="cid:dot">',
        inline=[
            Attachment(PNG, "logo.png", contentId="<logo@example.com>"),
            Attachment(b"GIF89a", mimeType="image/gif", contentId="dot"),
        ],
    )
    html, logo, dot = parts(message)
    references = re.findall(r'src="cid:([^"]+)"', html.get_content())
    assert [f"<{r}>" for r in references] == [logo["Content-ID"], dot["Content-ID"]]
    assert logo.get_content_disposition() == "inline"
    assert logo.get_filename() == "logo.png"
    assert logo.get_content() == PNG
    assert dot.get_filename() is None
    assert dot.get_content_type() == "image/gif"


def test_attachments(tmp_path: Path) -> None:
    """
    Attachments (given as L{Attachment}s or paths) are attached in order
    with their file names and types; their decoded content is the original,
    every byte value included.
    """
    path = tmp_path / "notes.txt"
    path.write_bytes(b"line one\r\nline two\r\n")
    blob = bytes(range(256)) * 4
    message = composeMessage(
        fromAddress="app@example.com",
        text="see attached",
        attachments=[
            Attachment(blob, "blob.bin"),
            str(path),
            path,
            Attachment(b"no name"),
            Attachment(b"x", "ünïcode.txt", contentId="att1"),
        ],
    )
    _, *attached = parts(message)
    assert [(p.get_filename(), p.get_content_type()) for p in attached] == [
        ("blob.bin", "application/octet-stream"),
        ("notes.txt", "text/plain"),
        ("notes.txt", "text/plain"),
        (None, "application/octet-stream"),
        ("ünïcode.txt", "text/plain"),
    ]
    assert all(p.get_content_disposition() == "attachment" for p in attached)
    assert [p.get_payload(decode=True) for p in attached] == [
        blob,
        b"line one\r\nline two\r\n",
        b"line one\r\nline two\r\n",
        b"no name",
        b"x",
    ]
    assert attached[-1]["Content-ID"] == "<att1>"
    reparsed = message_from_bytes(message.as_bytes(), policy=email.policy.default)
    assert [p.get_payload(decode=True) for p in parts(reparsed)][1] == blob


# -- composeMessage: headers ---------------------------------------------------------


def test_headers() -> None:
    """
    Every address keyword sets its header with the mailboxes given (an
    empty list sets none), and custom headers follow.
    """
    message = composeMessage(
        fromAddress=Address("Alice", "alice", "example.com"),
        to=["bob@example.com", "Carol <carol@example.com>"],
        cc="dave@example.com",
        bcc=["eve@example.com"],
        replyTo="help@example.com",
        sender="assistant@example.com",
        subject="Hello",
        text="x",
        headers={"X-Campaign": "spring", "In-Reply-To": "<a@example.com>"},
    )
    assert message["From"] == "Alice <alice@example.com>"
    assert message["To"] == "bob@example.com, Carol <carol@example.com>"
    assert message["Cc"] == "dave@example.com"
    assert message["Bcc"] == "eve@example.com"
    assert message["Reply-To"] == "help@example.com"
    assert message["Sender"] == "assistant@example.com"
    assert message["Subject"] == "Hello"
    assert message["X-Campaign"] == "spring"
    assert message["In-Reply-To"] == "<a@example.com>"
    bare = composeMessage(fromAddress="alice@example.com", text="x")
    for name in ("To", "Cc", "Bcc", "Reply-To", "Sender", "Subject"):
        assert name not in bare


def test_customHeaderNonASCII() -> None:
    """
    A custom header value may hold non-ASCII text: it is RFC 2047 encoded
    when sent without UTF-8.
    """
    message = composeMessage(
        fromAddress="a@example.com", text="x", headers={"X-Note": "Grüße"}
    )
    data = toMessageSource(message).open(utf8Headers=False).read(-1)
    assert b"X-Note: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n" in data


@pytest.mark.parametrize(
    ("name", "keyword"),
    [
        ("From", "fromAddress="),
        ("to", "to="),
        ("CC", "cc="),
        ("Bcc", "bcc="),
        ("Reply-To", "replyTo="),
        ("Subject", "subject="),
        ("Sender", "sender="),
        ("Message-ID", "messageId="),
        ("date", "date="),
        ("MIME-Version", "from text=, html="),
        ("Content-Type", "from text=, html="),
        ("content-transfer-encoding", "from text=, html="),
    ],
)
def test_customHeaderReserved(name: str, keyword: str) -> None:
    """
    A custom header that composeMessage sets itself is refused, naming the
    keyword to use instead.
    """
    with pytest.raises(InvalidArgumentError) as info:
        composeMessage(fromAddress="a@example.com", text="x", headers={name: "v"})
    assert info.value.argument == "headers"
    assert keyword in reasonOf(info)


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ([("X-A", "b")], "must be a mapping"),
        ({"": "v"}, "is not a header name"),
        ({"X A": "v"}, "is not a header name"),
        ({"X:A": "v"}, "is not a header name"),
        ({"X-Ä": "v"}, "is not a header name"),
        ({3: "v"}, "must be a string"),
        ({"X-A": 3}, "each value must be a string"),
        ({"X-A\r\nBcc": "v"}, "carriage return"),
        ({"X-A": "v\r\nBcc: x@example.com"}, "carriage return"),
        ({"X-A": "v\nBcc: x@example.com"}, "line feed"),
        ({"X-A": "v\x00"}, "NUL"),
    ],
)
def test_customHeaderRefused(headers: Any, reason: str) -> None:
    """
    Custom headers must be a mapping of valid names to text, with no CR,
    LF or NUL in any name or value.
    """
    with pytest.raises(InvalidArgumentError) as info:
        composeMessage(fromAddress="a@example.com", text="x", headers=headers)
    assert info.value.argument == "headers"
    assert reason in reasonOf(info)


def test_customHeaderPolicyRefusal() -> None:
    """
    A custom header the policy will not store (a second one of a header
    allowed once) is refused with the policy's reason.
    """
    with pytest.raises(InvalidArgumentError) as info:
        composeMessage(
            fromAddress="a@example.com",
            text="x",
            headers={"Orig-Date": "Mon, 1 Jan 2024 00:00:00 +0000", "orig-date": "x"},
        )
    assert info.value.argument == "headers"


@given(
    control=st.sampled_from(CONTROLS),
    data=st.data(),
    where=st.sampled_from(["subject", "value"]),
)
def test_headerControlsRefusedAnywhere(
    control: str, data: st.DataObject, where: str
) -> None:
    """
    A CR, LF or NUL at any position of the subject or a custom header's
    value is refused.
    """
    text = "A subject, Grüße"
    position = data.draw(st.integers(0, len(text)))
    bad = text[:position] + control + text[position:]
    keywords: dict[str, Any] = (
        {"subject": bad} if where == "subject" else {"headers": {"X-A": bad}}
    )
    with pytest.raises(InvalidArgumentError) as info:
        composeMessage(fromAddress="a@example.com", text="x", **keywords)
    assert f"at position {position}" in reasonOf(info)


def test_messageIdAndDateAdded() -> None:
    """
    Without C{messageId} and C{date}, a new Message-ID on the From domain
    and the current date (UTC) are written.
    """
    before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    message = composeMessage(fromAddress="a@mail.example.com", text="x")
    after = datetime.datetime.now(datetime.UTC)
    assert re.fullmatch(r"<[^@<>\s]+@mail\.example\.com>", message["Message-ID"])
    date = parsedate_to_datetime(message["Date"])
    assert before <= date <= after
    assert date.utcoffset() == datetime.timedelta(0)
    other = composeMessage(fromAddress="a@mail.example.com", text="x")
    assert other["Message-ID"] != message["Message-ID"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("<1234@example.com>", "<1234@example.com>"),
        ("1234@example.com", "<1234@example.com>"),
        (" <a.b-c@[192.0.2.1]> ", "<a.b-c@[192.0.2.1]>"),
    ],
)
def test_messageIdKept(given: str, expected: str) -> None:
    """
    A given Message-ID is written with its angle brackets.
    """
    message = composeMessage(fromAddress="a@example.com", text="x", messageId=given)
    assert message["Message-ID"] == expected


def test_dateKept() -> None:
    """
    A given aware date is written as it is, in its own time zone.
    """
    when = datetime.datetime(
        2024, 5, 17, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=2))
    )
    message = composeMessage(fromAddress="a@example.com", text="x", date=when)
    assert message["Date"] == "Fri, 17 May 2024 09:30:00 +0200"


@pytest.mark.parametrize(
    ("keywords", "argument", "reason"),
    [
        ({"fromAddress": "nobody"}, "fromAddress", "has no '@domain'"),
        ({"fromAddress": "a@example.com, b@example.com"}, "fromAddress", "holds 2"),
        ({"to": "a@example.com, bad@"}, "to", "no domain"),
        ({"cc": 3}, "cc", "must be a string"),
        ({"bcc": ["x"]}, "bcc", "has no '@domain'"),
        ({"replyTo": "a@-x.com"}, "replyTo", "not a valid host name"),
        ({"sender": "a@example.com, b@example.com"}, "sender", "holds 2"),
        ({"subject": 3}, "subject", "must be a string"),
        ({"subject": "a\nb"}, "subject", "line feed"),
        ({"text": None}, "text", "give text, html or both"),
        ({"text": b"bytes"}, "text", "must be a string"),
        ({"html": b"<p>"}, "html", "must be a string"),
        ({"inline": [Attachment(PNG, contentId="x")]}, "inline", "give html"),
        ({"html": "<p>", "inline": [Attachment(PNG)]}, "inline", "needs a contentId"),
        ({"html": "<p>", "inline": Attachment(PNG, contentId="x")}, "inline", "list"),
        ({"html": "<p>", "inline": [b"png"]}, "inline", "Attachment or a path"),
        (
            {
                "html": "<p>",
                "inline": [Attachment(PNG, contentId="x")],
                "attachments": [Attachment(b"", contentId="<x>")],
            },
            "contentId",
            "is used by two parts",
        ),
        ({"attachments": Attachment(b"x")}, "attachments", "give [part] for one"),
        ({"attachments": "file.txt"}, "attachments", "give [part] for one"),
        ({"attachments": 3}, "attachments", "give [part] for one"),
        ({"attachments": [b"data"]}, "attachments", "Attachment(data, filename)"),
        ({"attachments": ["/nonexistent.txt"]}, "path", "cannot be read"),
        ({"messageId": "no-at-sign"}, "messageId", "must be <left@right>"),
        ({"messageId": "<a b@example.com>"}, "messageId", "must be <left@right>"),
        ({"messageId": "<ä@example.com>"}, "messageId", "must be <left@right>"),
        ({"messageId": "<a@example.com>\r\n"}, "messageId", "carriage return"),
        ({"messageId": 3}, "messageId", "must be a string"),
        ({"date": "today"}, "date", "must be a datetime.datetime"),
        ({"date": datetime.datetime(2024, 1, 1)}, "date", "is naive"),
    ],
)
def test_composeRefused(keywords: dict[str, Any], argument: str, reason: str) -> None:
    """
    Every bad argument is refused with an L{InvalidArgumentError} that names
    it and says why.
    """
    arguments: dict[str, Any] = {"fromAddress": "a@example.com", "text": "x"}
    arguments.update(keywords)
    with pytest.raises(InvalidArgumentError) as info:
        composeMessage(**arguments)
    assert info.value.argument == argument
    assert reason in reasonOf(info)


# -- addMissingHeaders ---------------------------------------------------------------


def test_addMissingHeaders() -> None:
    """
    A Message-ID on the domain of the Sender (else From) and a Date are
    added to a message, of any policy, that lacks them; the message is
    changed in place and returned.
    """
    message = Message()
    message["From"] = "Alice <alice@bücher.de>"
    message["Sender"] = "=?utf-8?q?B=C3=B6b?= <bob@sender.example>"
    assert addMissingHeaders(message) is message
    assert message["Message-ID"].endswith("@sender.example>")
    assert parsedate_to_datetime(message["Date"]).utcoffset() is not None

    fromOnly = EmailMessage()
    fromOnly["From"] = "alice@bücher.de"
    addMissingHeaders(fromOnly)
    assert fromOnly["Message-ID"].endswith("@xn--bcher-kva.de>")


def test_addMissingHeadersSkipsBadSender() -> None:
    """
    A Sender that cannot be parsed, or has no mailbox, is passed over for
    the From address.
    """
    message = Message()
    message["Sender"] = "not an address"
    message["Sender"] = "undisclosed:;"
    message["From"] = "alice@example.org"
    addMissingHeaders(message)
    assert message["Message-ID"].endswith("@example.org>")


def test_addMissingHeadersKeepsExisting() -> None:
    """
    A Message-ID or Date already there is kept; a given domain is used
    (IDNA A-labels) for a new Message-ID.
    """
    message = Message()
    message["Message-ID"] = "<kept@example.com>"
    message["Date"] = "Mon, 01 Jan 2024 00:00:00 +0000"
    addMissingHeaders(message, domain="other.example")
    assert message["Message-ID"] == "<kept@example.com>"
    assert message["Date"] == "Mon, 01 Jan 2024 00:00:00 +0000"
    assert message.get_all("Date") == ["Mon, 01 Jan 2024 00:00:00 +0000"]
    fresh = Message()
    addMissingHeaders(fresh, domain="bücher.de")
    assert fresh["Message-ID"].endswith("@xn--bcher-kva.de>")


@pytest.mark.parametrize(
    ("message", "domain", "argument", "reason"),
    [
        ("not a message", None, "message", "must be an email.message.Message"),
        (Message(), None, "domain", "give domain"),
        (Message(), "", "domain", "is empty"),
        (Message(), "bad domain", "domain", "not a valid host name"),
        (Message(), "a\r\nb", "domain", "carriage return"),
        (Message(), 3, "domain", "must be a string"),
    ],
)
def test_addMissingHeadersRefused(
    message: Any, domain: Any, argument: str, reason: str
) -> None:
    """
    Something that is not a message, an invalid domain, and a message
    without a From or Sender address when no domain is given are refused.
    """
    with pytest.raises(InvalidArgumentError) as info:
        addMissingHeaders(message, domain=domain)
    assert info.value.argument == argument
    assert reason in reasonOf(info)


# -- envelopeFromMessage -------------------------------------------------------------


class SMTPRecorder(smtplib.SMTP):
    """
    An C{smtplib.SMTP} that never connects: C{send_message} records the
    sender and recipients it would use.
    """

    recorded: tuple[str, list[str], bytes]

    def ehlo_or_helo_if_needed(self) -> None:
        """
        No session: nothing to greet.
        """

    def has_extn(self, opt: str) -> bool:
        """
        Claim every extension (SMTPUTF8 for non-ASCII addresses).
        """
        return True

    def sendmail(  # type: ignore[override]
        self,
        from_addr: str,
        to_addrs: Sequence[str],
        msg: bytes,
        mail_options: Sequence[str] = (),
        rcpt_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """
        Record what smtplib decided.
        """
        self.recorded = (from_addr, list(to_addrs), msg)
        return {}


def smtplibChoice(message: Message) -> tuple[str, list[str], bytes]:
    """
    The sender, recipients and bytes C{smtplib.SMTP.send_message} would
    use for C{message}.
    """
    recorder = SMTPRecorder()
    recorder.send_message(message)
    return recorder.recorded


def build(headers: Sequence[tuple[str, str]], compat32: bool) -> Message:
    """
    A message with C{headers} (in order) and a short body, of the compat32
    or the default policy.
    """
    message = Message() if compat32 else EmailMessage()
    for name, value in headers:
        message[name] = value
    message.set_payload("body\n")
    return message


SMTPLIB_CASES = [
    [("From", "alice@example.com"), ("To", "bob@example.com")],
    [
        ("From", "Alice <alice@example.com>"),
        ("To", "Bob <bob@example.com>, carol@example.com"),
    ],
    [("From", "a@example.com"), ("Sender", "s@example.com"), ("To", "b@example.com")],
    [("From", "a@example.com"), ("Cc", "c@example.com")],
    [("From", "a@example.com"), ("Bcc", "hidden@example.com")],
    [
        ("From", "a@example.com"),
        ("To", "t1@example.com, t2@example.com"),
        ("Cc", "c@example.com"),
        ("Bcc", "b1@example.com, b2@example.com"),
    ],
    [("From", "a@example.com"), ("Bcc", "b@example.com"), ("To", "t@example.com")],
    [
        ("From", "=?utf-8?q?J=C3=B6rg?= <j@example.com>"),
        ("To", "=?utf-8?q?Zo=C3=AB?= <z@example.com>"),
    ],
    [
        ("From", '"Doe, Jane" <jane@example.com>'),
        ("To", '"Roe, Rick" <rick@example.com>'),
    ],
    [("From", "a@example.com"), ("To", "team: x@example.com, y@example.com;")],
    [
        ("From", "a@example.com"),
        ("To", "undisclosed-recipients:;"),
        ("Bcc", "z@example.com"),
    ],
    [("From", "a@example.com (Alice)"), ("To", "b@example.com (Bob)")],
    [("From", "Jörg <jörg@bücher.de>"), ("To", "zoë@bücher.de")],
    [
        ("From", "a@example.com"),
        ("To", "old@example.com"),
        ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
        ("Resent-From", "r@example.com"),
        ("Resent-To", "new@example.com"),
    ],
    [
        ("From", "a@example.com"),
        ("Sender", "s@example.com"),
        ("To", "old@example.com"),
        ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
        ("Resent-From", "r@example.com"),
        ("Resent-Sender", "rs@example.com"),
        ("Resent-To", "n1@example.com"),
        ("Resent-Cc", "n2@example.com"),
        ("Resent-Bcc", "n3@example.com"),
    ],
]


@pytest.mark.parametrize("compat32", [False, True], ids=["default", "compat32"])
@pytest.mark.parametrize("headers", SMTPLIB_CASES)
def test_sameAsSMTPLib(headers: list[tuple[str, str]], compat32: bool) -> None:
    """
    For messages with at most one of each header, the sender and the
    recipients (in the same order) are those C{smtplib.SMTP.send_message}
    would use, for messages of the default and the compat32 policy; the
    message sent lacks C{Bcc} and C{Resent-Bcc}, as smtplib's does.
    """
    message = build(headers, compat32)
    try:
        sender, recipients, data = smtplibChoice(message)
    except TypeError:
        # smtplib cannot serialise a compat32 message to non-ASCII
        # addresses (Compat32 has no utf8 setting); its choice was made by
        # then, and is the same as for the twin message.
        assert compat32
        sender, recipients, data = smtplibChoice(build(headers, False))
    # smtplib takes an empty group as one empty address, RCPT TO:<>.
    recipients = [r for r in recipients if r]
    envelope = envelopeFromMessage(message)
    assert isinstance(envelope, Envelope)
    assert (envelope.sender, list(envelope.recipients)) == (sender, recipients)
    sent = toMessageSource(envelope.message).open().read(-1)
    assert b"\nBcc:" not in data and b"\nResent-Bcc:" not in data
    assert b"Bcc:" not in sent


def test_everyOccurrenceRead() -> None:
    """
    Unlike smtplib, which reads only the first, every To, Cc and Bcc header
    is read (duplicates dropped, the first kept; domains compared without
    regard to case, local parts exactly).
    """
    message = build(
        [
            ("From", "a@example.com"),
            ("To", "t1@example.com"),
            ("To", "t2@example.com, T1@EXAMPLE.COM, t1@EXAMPLE.com"),
            ("Cc", "c@example.com, t2@example.com"),
            ("Cc", "c2@example.com"),
            ("Bcc", "b@example.com"),
            ("Bcc", "b2@example.com"),
        ],
        compat32=True,
    )
    envelope = envelopeFromMessage(message)
    assert envelope.recipients == (
        "t1@example.com",
        "t2@example.com",
        "T1@EXAMPLE.COM",
        "b@example.com",
        "b2@example.com",
        "c@example.com",
        "c2@example.com",
    )
    _, smtplibRecipients, _ = smtplibChoice(message)
    assert smtplibRecipients == [
        "t1@example.com",
        "b@example.com",
        "c@example.com",
        "t2@example.com",
    ]


def test_resentHeadersUsed() -> None:
    """
    A message with one Resent-Date is sent from its Resent-Sender (else
    Resent-From) to its Resent-To, Resent-Bcc and Resent-Cc; its original
    headers are not read.
    """
    message = build(
        [
            ("From", "author@example.com"),
            ("To", "first@example.com"),
            ("Bcc", "firstHidden@example.com"),
            ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
            ("Resent-From", "forwarder@example.com"),
            ("Resent-To", "second@example.com"),
            ("Resent-Bcc", "secondHidden@example.com"),
        ],
        compat32=False,
    )
    envelope = envelopeFromMessage(message)
    assert envelope.sender == "forwarder@example.com"
    assert envelope.recipients == ("second@example.com", "secondHidden@example.com")
    assert "Bcc" not in envelope.message and "Resent-Bcc" not in envelope.message
    assert envelope.message["Resent-To"] == "second@example.com"


def test_resentBlocksAmbiguous() -> None:
    """
    Two Resent-Date headers make the latest block ambiguous: refused, as
    smtplib does, unless the envelope is given in full.
    """
    message = build(
        [
            ("From", "a@example.com"),
            ("To", "b@example.com"),
            ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
            ("Resent-To", "c@example.com"),
            ("Resent-Date", "Tue, 02 Jan 2024 00:00:00 +0000"),
            ("Resent-To", "d@example.com"),
        ],
        compat32=True,
    )
    with pytest.raises(ValueError, match="more than one 'Resent-' header block"):
        smtplibChoice(message)
    for keywords in (
        {},
        {"fromAddress": "x@example.com"},
        {"toAddresses": "y@example.com"},
    ):
        with pytest.raises(InvalidArgumentError) as info:
            envelopeFromMessage(message, **keywords)
        assert "give fromAddress and toAddresses" in reasonOf(info)
    envelope = envelopeFromMessage(
        message, fromAddress="x@example.com", toAddresses="y@example.com"
    )
    assert (envelope.sender, envelope.recipients) == (
        "x@example.com",
        ("y@example.com",),
    )


@pytest.mark.parametrize(
    ("headers", "argument", "reason"),
    [
        (
            [("To", "b@example.com")],
            "fromAddress",
            "no Sender or From address: give fromAddress",
        ),
        (
            [("From", "a@example.com, b@example.com"), ("To", "c@example.com")],
            "From",
            "holds 2 mailboxes and the message has no Sender: add a Sender header "
            "or give fromAddress",
        ),
        (
            [
                ("From", "a@example.com"),
                ("Sender", "s@example.com, t@example.com"),
                ("To", "c@example.com"),
            ],
            "Sender",
            "must be exactly one mailbox",
        ),
        (
            [
                ("From", "a@example.com"),
                ("Sender", "undisclosed:;"),
                ("To", "c@example.com"),
            ],
            "Sender",
            "must be exactly one mailbox",
        ),
        (
            [("From", "a@example.com")],
            "toAddresses",
            "no To, Bcc, Cc address: give toAddresses",
        ),
        (
            [("From", "a@example.com"), ("To", "undisclosed-recipients:;")],
            "toAddresses",
            "give toAddresses",
        ),
        ([("From", "nobody"), ("To", "b@example.com")], "From", "no domain"),
        (
            [("From", "a@example.com"), ("To", "b@example.com, nobody")],
            "To",
            "no domain",
        ),
        (
            [("From", "a@example.com"), ("Cc", "<c@example.com")],
            "Cc",
            "missing trailing",
        ),
        (
            [
                ("From", "a@example.com"),
                ("To", "b@example.com"),
                ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
            ],
            "fromAddress",
            "no Resent-Sender or Resent-From address",
        ),
        (
            [
                ("To", "b@example.com"),
                ("Resent-Date", "Mon, 01 Jan 2024 00:00:00 +0000"),
                ("Resent-From", "r@example.com"),
            ],
            "toAddresses",
            "no Resent-To, Resent-Bcc, Resent-Cc address",
        ),
    ],
)
def test_envelopeRefused(
    headers: list[tuple[str, str]], argument: str, reason: str
) -> None:
    """
    A message whose headers give no sender, an ambiguous one, no recipient,
    or a bad address is refused with an error that names the header or
    the argument to give.
    """
    for compat32 in (False, True):
        with pytest.raises(InvalidArgumentError) as info:
            envelopeFromMessage(build(headers, compat32))
        assert info.value.argument == argument
        assert reason in reasonOf(info)


def test_senderPreferred() -> None:
    """
    A From with several mailboxes is fine with a Sender, which is the
    envelope sender.
    """
    message = build(
        [
            ("From", "a@example.com, b@example.com"),
            ("Sender", "Secretary <s@example.com>"),
            ("To", "c@example.com"),
        ],
        compat32=False,
    )
    assert envelopeFromMessage(message).sender == "s@example.com"


def test_explicitEnvelope() -> None:
    """
    A given sender and recipients replace the headers' (checked the same
    way; C{""} is the null sender); the Bcc header is removed all the same.
    """
    message = build(
        [("From", "a@example.com"), ("To", "b@example.com"), ("Bcc", "h@example.com")],
        compat32=False,
    )
    envelope = envelopeFromMessage(
        message,
        fromAddress="Bounces <bounce@example.com>",
        toAddresses=[
            "x@example.com",
            "x@EXAMPLE.com",
            Address("Y", "y", "example.com"),
        ],
    )
    assert envelope.sender == "bounce@example.com"
    assert envelope.recipients == ("x@example.com", "y@example.com")
    assert "Bcc" not in envelope.message
    assert envelopeFromMessage(message, fromAddress="").sender == ""
    assert envelopeFromMessage(
        message, toAddresses="z@example.com, w@example.com"
    ).recipients == (
        "z@example.com",
        "w@example.com",
    )
    noHeaders = build([], compat32=True)
    assert envelopeFromMessage(
        noHeaders, fromAddress="a@example.com", toAddresses="b@example.com"
    ).recipients == ("b@example.com",)


@pytest.mark.parametrize(
    ("keywords", "argument", "reason"),
    [
        ({"fromAddress": "nobody"}, "fromAddress", "has no '@domain'"),
        ({"fromAddress": "a@x\r\n.com"}, "fromAddress", "carriage return"),
        ({"toAddresses": "b@example.com, nobody"}, "toAddresses", "no domain"),
        ({"toAddresses": []}, "toAddresses", "has no address"),
        ({"toAddresses": ""}, "toAddresses", "has no address"),
        ({"toAddresses": b"x@example.com"}, "toAddresses", "must be a string"),
    ],
)
def test_explicitEnvelopeRefused(
    keywords: dict[str, Any], argument: str, reason: str
) -> None:
    """
    A given sender or recipient list is checked: a bad address, or no
    recipient at all, is refused.
    """
    message = build(
        [("From", "a@example.com"), ("To", "b@example.com")], compat32=False
    )
    with pytest.raises(InvalidArgumentError) as info:
        envelopeFromMessage(message, **keywords)
    assert info.value.argument == argument
    assert reason in reasonOf(info)


def test_envelopeOfNotAMessage() -> None:
    """
    Only an L{email.message.Message} has headers to read.
    """
    with pytest.raises(InvalidArgumentError) as info:
        envelopeFromMessage(b"From: a@example.com\r\n\r\n")  # type: ignore[arg-type]
    assert info.value.argument == "message"


def test_envelopeMessageIsAShallowCopy() -> None:
    """
    The envelope's message is a shallow copy without Bcc and Resent-Bcc;
    the caller's message keeps them, and the parts are shared.
    """
    message = composeMessage(
        fromAddress="a@example.com",
        to="b@example.com",
        bcc="h@example.com",
        text="x",
        attachments=[Attachment(b"y", "y.bin")],
        headers={"Resent-Bcc": "rh@example.com"},
    )
    envelope = envelopeFromMessage(message)
    assert envelope.message is not message
    assert "Bcc" not in envelope.message and "Resent-Bcc" not in envelope.message
    assert message["Bcc"] == "h@example.com"
    assert message["Resent-Bcc"] == "rh@example.com"
    assert envelope.message.get_payload() is message.get_payload()
    assert envelope.recipients == ("b@example.com", "h@example.com")


def test_compat32Headers() -> None:
    """
    A compat32 message's headers are read whatever their form: an
    L{email.header.Header} with non-ASCII text, RFC 2047 encoded words,
    folded values, and raw UTF-8 octets from a parsed message.
    """
    message = Message()
    message["From"] = Header("Jörg <j@example.com>", "utf-8")  # type: ignore[assignment]
    message["To"] = "=?utf-8?q?Zo=C3=AB?= <z@example.com>,\r\n\tBob\n <b@example.com>"
    message.set_payload("x")
    envelope = envelopeFromMessage(message)
    assert (envelope.sender, envelope.recipients) == (
        "j@example.com",
        ("z@example.com", "b@example.com"),
    )
    parsed = message_from_bytes(
        "From: Jörg <jörg@example.com>\r\n"
        "To: Zoë <z@bücher.de>,\r\n w@example.com\r\n\r\nx".encode()
    )
    envelope = envelopeFromMessage(parsed)
    assert (envelope.sender, envelope.recipients) == (
        "jörg@example.com",
        ("z@bücher.de", "w@example.com"),
    )


# -- the Bcc header is never sent -----------------------------------------------


@pytest.mark.parametrize(
    ("utf8Headers", "downgrade"),
    [(True, False), (False, False), (True, True), (False, True)],
)
def test_sourceNeverSendsBcc(utf8Headers: bool, downgrade: bool) -> None:
    """
    An L{email.message.Message} is serialised without its Bcc and
    Resent-Bcc headers in every form, and the caller's message, parts
    included, is left as it was.
    """
    message = composeMessage(
        fromAddress="Zoë <a@example.com>",
        to="b@example.com",
        bcc="Hidden <hidden@example.com>",
        text="Grüße " * 30,
        attachments=[Attachment(bytes(range(256)), "b.bin")],
        headers={"Resent-Bcc": "rhidden@example.com"},
    )
    for part in message.walk():
        if part.is_multipart():
            part.set_boundary("BOUNDARY-" + part.get_content_subtype())
    before = message.as_bytes()
    data = (
        toMessageSource(message)
        .open(utf8Headers=utf8Headers, downgrade=downgrade)
        .read(-1)
    )
    assert b"hidden@example.com" not in data
    assert b"Bcc" not in data
    assert b"To: b@example.com\r\n" in data
    assert message.as_bytes() == before
    assert message["Bcc"] == "Hidden <hidden@example.com>"


def test_sourceSendsRawBytesAsTheyAre() -> None:
    """
    Bytes are sent as they are, Bcc header included: only a message object
    can be changed.
    """
    raw = b"From: a@example.com\r\nBcc: h@example.com\r\n\r\nbody\r\n"
    assert toMessageSource(raw).open().read(-1) == raw


def test_deliveredWithoutBcc() -> None:
    """
    Sent with L{sendMessage}, the Bcc and Resent-Bcc recipients are in the
    envelope but neither header nor their addresses are in the delivered
    bytes; the caller's message keeps its Bcc header.
    """
    message = composeMessage(
        fromAddress="Alice <alice@example.com>",
        to="bob@example.com",
        cc="carol@example.com",
        bcc=["Hidden <hidden@example.com>", "other@example.com"],
        subject="Hi",
        text="hello",
    )
    outcome, server = send(message)
    result = outcome.value()
    assert result.accepted == (
        "bob@example.com",
        "hidden@example.com",
        "other@example.com",
        "carol@example.com",
    )
    [delivery] = server.deliveries
    assert delivery.sender == "alice@example.com"
    assert delivery.recipients == result.accepted
    assert b"Bcc" not in delivery.data
    assert b"hidden@example.com" not in delivery.data
    assert b"other@example.com" not in delivery.data
    assert b"Cc: carol@example.com\r\n" in delivery.data
    assert message["Bcc"] == "Hidden <hidden@example.com>, other@example.com"


def test_sendmailLeavesBccOut() -> None:
    """
    Plain L{mailclient.sendmail} with a message object leaves its Bcc
    header out as well.
    """
    from mailclient import sendmail

    clock, server, endpoint = world()
    message = composeMessage(
        fromAddress="a@example.com", bcc="hidden@example.com", text="x"
    )
    outcome = Outcome(
        sendmail(
            None,
            "a@example.com",
            ["hidden@example.com"],
            message,
            endpoint=endpoint,
            reactor=clock,
            tls="none",
        )
    )
    settle(clock)
    assert outcome.value().accepted == ("hidden@example.com",)
    assert b"Bcc" not in server.deliveries[0].data


# -- sendMessage and Mailer.sendMessage ------------------------------------------------


def test_sendMessageOverrides() -> None:
    """
    L{sendMessage} passes a given sender and recipients, and every other
    keyword, to L{sendmail}.
    """
    message = composeMessage(fromAddress="a@example.com", to="b@example.com", text="x")
    outcome, server = send(
        message,
        b"SMTPUTF8",
        fromAddress="",
        toAddresses=["c@example.com", "d@example.com"],
        heloName="client.example",
    )
    assert outcome.value().accepted == ("c@example.com", "d@example.com")
    [delivery] = server.deliveries
    assert (delivery.sender, delivery.recipients) == (
        "",
        ("c@example.com", "d@example.com"),
    )
    assert server.connections[0].commands[0] == "EHLO client.example"
    assert b"To: b@example.com\r\n" in delivery.data


@pytest.mark.parametrize(
    ("message", "keywords", "error"),
    [
        ("From: a@example.com\r\n\r\n", {}, InvalidArgumentError),
        (build([("From", "a@example.com")], False), {}, InvalidArgumentError),
        (build([("To", "b@example.com")], True), {}, InvalidArgumentError),
        (
            build([("From", "a@x.com"), ("To", "b@x.com")], True),
            {"fromAddress": "?"},
            InvalidArgumentError,
        ),
        (
            build([("From", "a@x.com"), ("To", "b@x.com")], True),
            {"port": 0},
            InvalidArgumentError,
        ),
        (
            build([("From", "a@x.com"), ("To", "b@x.com")], True),
            {"noSuchKeyword": 1},
            TypeError,
        ),
    ],
)
def test_sendMessageFailsTheDeferred(
    message: Any, keywords: dict[str, Any], error: type[Exception]
) -> None:
    """
    Bad input (not a message, no sender or recipient in the headers, a bad
    address or keyword) fails the Deferred; nothing is raised at the call
    and nothing is sent.
    """
    clock, server, endpoint = world()
    d = sendMessage(
        None, message, endpoint=endpoint, reactor=clock, tls="none", **keywords
    )
    settle(clock)
    Outcome(d).error(error)
    assert server.deliveries == []
    assert server.connectAttempts == 0


def mailer() -> tuple[Mailer, Clock, ScriptedServer]:
    """
    A L{Mailer} for a new in-memory server, without TLS.
    """
    clock, server, endpoint = world()
    return (
        Mailer(
            None,
            endpoint=endpoint,
            reactor=clock,
            tls="none",
            heloName="client.example",
            random=Random(3),
        ),
        clock,
        server,
    )


def test_mailerSendMessage() -> None:
    """
    L{Mailer.sendMessage} sends to the recipients the headers name, Bcc
    included, without the Bcc header; a given sender replaces the headers'.
    """
    m, clock, server = mailer()
    message = composeMessage(
        fromAddress="alice@example.com",
        to="bob@example.com",
        bcc="hidden@example.com",
        text="hello",
    )
    first = Outcome(m.sendMessage(message))
    second = Outcome(m.sendMessage(message, fromAddress="bounce@example.com"))
    settle(clock)
    assert first.value().accepted == ("bob@example.com", "hidden@example.com")
    assert second.value().sender == "bounce@example.com"
    assert [(d.sender, d.recipients) for d in server.deliveries] == [
        ("alice@example.com", ("bob@example.com", "hidden@example.com")),
        ("bounce@example.com", ("bob@example.com", "hidden@example.com")),
    ]
    assert all(b"hidden" not in d.data for d in server.deliveries)
    stopped = Outcome(m.stopService())
    settle(clock)
    assert stopped.called


@pytest.mark.parametrize(
    ("message", "keywords"),
    [
        (b"From: a@example.com\r\n\r\n", {}),
        (build([("From", "a@example.com")], False), {}),
        (
            build([("From", "a@x.com"), ("To", "b@x.com")], False),
            {"toAddresses": "nobody"},
        ),
        (build([("From", "a@x.com"), ("To", "b@x.com")], False), {"dsn": "FULL"}),
    ],
)
def test_mailerSendMessageFailsTheDeferred(
    message: Any, keywords: dict[str, Any]
) -> None:
    """
    Bad input to L{Mailer.sendMessage} fails the Deferred with
    L{InvalidArgumentError}, nothing raised at the call, nothing sent.
    """
    m, clock, server = mailer()
    d = m.sendMessage(message, **keywords)
    settle(clock)
    Outcome(d).error(InvalidArgumentError)
    assert server.deliveries == []


def test_sendMessageWithoutCopying() -> None:
    """
    Sending does not change the caller's message: its headers, Bcc
    included, are as they were.
    """
    message = composeMessage(
        fromAddress="a@example.com", to="b@example.com", bcc="h@example.com", text="x"
    )
    before = list(message.items())
    outcome, _ = send(message)
    outcome.value()
    assert list(message.items()) == before
    assert copy.copy(message)["Bcc"] == "h@example.com"


@pytest.fixture
def noFQDN(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """
    Make C{socket.getfqdn} fail the test if called.
    """
    import socket

    def forbidden(*args: object) -> str:
        raise AssertionError("socket.getfqdn must not be called")

    monkeypatch.setattr(socket, "getfqdn", forbidden)
    yield


@pytest.mark.usefixtures("noFQDN")
def test_noHostNameLookup() -> None:
    """
    Composing a message never looks up the host's name (which may block on
    DNS): the Message-ID is made on the From domain.
    """
    message = composeMessage(fromAddress="a@example.com", text="x")
    assert message["Message-ID"].endswith("@example.com>")


def test_serialisedWithGenerator() -> None:
    """
    The composed message is an ordinary message: the standard generator
    and parser round-trip it.
    """
    message = composeMessage(
        fromAddress="a@example.com",
        to="b@example.com",
        text="x",
        html="<p>x</p>",
        attachments=[Attachment(b"\x00\x01", "z.bin")],
    )
    buffer = io.BytesIO()
    BytesGenerator(buffer, policy=email.policy.SMTP).flatten(message)
    parsed = message_from_bytes(buffer.getvalue(), policy=email.policy.default)
    assert tree(parsed) == tree(message)
    assert parts(parsed)[-1].get_content() == b"\x00\x01"
