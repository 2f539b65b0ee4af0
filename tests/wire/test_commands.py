"""
Tests for L{mailclient._wire.commands}.
"""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire import commands
from mailclient._wire.commands import (
    auth,
    authCancel,
    authResponse,
    bdat,
    commandVerb,
    data,
    ehlo,
    helo,
    lhlo,
    mailFrom,
    noop,
    quit,
    rcptTo,
    redactCommand,
    rset,
    starttls,
    validateAddress,
    validateHeloName,
    validateParameter,
    vrfy,
)
from mailclient.errors import (
    CommandArgumentError,
    InvalidArgumentError,
    UnsupportedFeatureError,
)

# Every encoder that takes text, with the argument name its errors use, as
# a function of one text argument that is otherwise valid.
TEXT_ENCODERS: list[tuple[str, Callable[[str], bytes], str]] = [
    ("mailFrom", lambda v: mailFrom(v), "fromAddress"),
    ("mailFrom-bytes", lambda v: mailFrom(v.encode("utf-8")), "fromAddress"),
    ("rcptTo", lambda v: rcptTo(v), "toAddress"),
    ("rcptTo-bytes", lambda v: rcptTo(v.encode("utf-8")), "toAddress"),
    ("mailFrom-param", lambda v: mailFrom("a@b.example", [v]), "parameter"),
    (
        "mailFrom-2nd-param",
        lambda v: mailFrom("a@b.example", ["BODY=8BITMIME", v]),
        "parameter",
    ),
    ("rcptTo-param", lambda v: rcptTo("a@b.example", [v]), "parameter"),
    ("mailFrom-utf8", lambda v: mailFrom(v, utf8=True), "fromAddress"),
    (
        "mailFrom-utf8-bytes",
        lambda v: mailFrom(v.encode("utf-8"), utf8=True),
        "fromAddress",
    ),
    ("rcptTo-utf8", lambda v: rcptTo(v, utf8=True), "toAddress"),
    (
        "rcptTo-utf8-param",
        lambda v: rcptTo("a@b.example", [v], utf8=True),
        "parameter",
    ),
    ("ehlo", ehlo, "heloName"),
    ("helo", helo, "heloName"),
    ("lhlo", lhlo, "heloName"),
    ("vrfy", vrfy, "string"),
    ("vrfy-utf8", lambda v: vrfy(v, utf8=True), "string"),
    ("auth", lambda v: auth(v), "mechanism"),
    ("auth-with-response", lambda v: auth(v, b"x"), "mechanism"),
]

TEXT_ENCODER_IDS = [name for name, _, _ in TEXT_ENCODERS]


# Encoders


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (ehlo("client.example"), b"EHLO client.example\r\n"),
        (ehlo("[127.0.0.1]"), b"EHLO [127.0.0.1]\r\n"),
        (ehlo("[IPv6:::1]"), b"EHLO [IPv6:::1]\r\n"),
        (helo("client.example"), b"HELO client.example\r\n"),
        (helo("localhost"), b"HELO localhost\r\n"),
        (lhlo("client.example"), b"LHLO client.example\r\n"),
        (lhlo("[192.0.2.1]"), b"LHLO [192.0.2.1]\r\n"),
        (mailFrom("a@b.example"), b"MAIL FROM:<a@b.example>\r\n"),
        (mailFrom(b"a@b.example"), b"MAIL FROM:<a@b.example>\r\n"),
        (mailFrom(""), b"MAIL FROM:<>\r\n"),
        (mailFrom(b""), b"MAIL FROM:<>\r\n"),
        (mailFrom("", ["SIZE=0"]), b"MAIL FROM:<> SIZE=0\r\n"),
        (
            mailFrom("a@b.example", ["SIZE=100", "BODY=8BITMIME"]),
            b"MAIL FROM:<a@b.example> SIZE=100 BODY=8BITMIME\r\n",
        ),
        (
            mailFrom("a@b.example", ("RET=HDRS", "ENVID=QQ314159")),
            b"MAIL FROM:<a@b.example> RET=HDRS ENVID=QQ314159\r\n",
        ),
        (mailFrom("postmaster"), b"MAIL FROM:<postmaster>\r\n"),
        (rcptTo("c@d.example"), b"RCPT TO:<c@d.example>\r\n"),
        (rcptTo(b"c@d.example"), b"RCPT TO:<c@d.example>\r\n"),
        (rcptTo("Postmaster"), b"RCPT TO:<Postmaster>\r\n"),
        (rcptTo("POSTMASTER"), b"RCPT TO:<POSTMASTER>\r\n"),
        (rcptTo("postmaster@d.example"), b"RCPT TO:<postmaster@d.example>\r\n"),
        (rcptTo('"quoted@local"@d.example'), b'RCPT TO:<"quoted@local"@d.example>\r\n'),
        (rcptTo("user+tag@[192.0.2.1]"), b"RCPT TO:<user+tag@[192.0.2.1]>\r\n"),
        (
            rcptTo(
                "c@d.example", ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;c@d.example"]
            ),
            b"RCPT TO:<c@d.example> NOTIFY=SUCCESS,FAILURE"
            b" ORCPT=rfc822;c@d.example\r\n",
        ),
        (
            mailFrom("j\u00f6rg@b\u00fccher.example", ["SMTPUTF8"], utf8=True),
            "MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8\r\n".encode(),
        ),
        (
            mailFrom("j\u00f6rg@example.com".encode(), utf8=True),
            "MAIL FROM:<j\u00f6rg@example.com>\r\n".encode(),
        ),
        (mailFrom("", utf8=True), b"MAIL FROM:<>\r\n"),
        (mailFrom("a@b.example", utf8=True), b"MAIL FROM:<a@b.example>\r\n"),
        (
            rcptTo(
                "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
                ["ORCPT=utf-8;\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a"],
                utf8=True,
            ),
            (
                "RCPT TO:<\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a>"
                " ORCPT=utf-8;\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a\r\n"
            ).encode(),
        ),
        (data(), b"DATA\r\n"),
        (vrfy("postmaster"), b"VRFY postmaster\r\n"),
        (vrfy("a@b.example"), b"VRFY a@b.example\r\n"),
        (vrfy('"John Smith"'), b'VRFY "John Smith"\r\n'),
        (vrfy(b"smith"), b"VRFY smith\r\n"),
        (vrfy("smith", utf8=True), b"VRFY smith SMTPUTF8\r\n"),
        (
            vrfy("j\u00f6rg@example.com", utf8=True),
            "VRFY j\u00f6rg@example.com SMTPUTF8\r\n".encode(),
        ),
        (bdat(0), b"BDAT 0\r\n"),
        (bdat(0, True), b"BDAT 0 LAST\r\n"),
        (bdat(123, last=True), b"BDAT 123 LAST\r\n"),
        (bdat(65536, False), b"BDAT 65536\r\n"),
        (bdat(10**12), b"BDAT 1000000000000\r\n"),
        (rset(), b"RSET\r\n"),
        (quit(), b"QUIT\r\n"),
        (noop(), b"NOOP\r\n"),
        (starttls(), b"STARTTLS\r\n"),
        (auth("LOGIN"), b"AUTH LOGIN\r\n"),
        (auth("PLAIN", b"\x00user\x00pass"), b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n"),
        (auth("PLAIN", b""), b"AUTH PLAIN =\r\n"),
        (auth("CRAM-MD5"), b"AUTH CRAM-MD5\r\n"),
        (auth("SCRAM-SHA-256"), b"AUTH SCRAM-SHA-256\r\n"),
        (auth("X_MECH_9"), b"AUTH X_MECH_9\r\n"),
        (auth("A" * 20), b"AUTH " + b"A" * 20 + b"\r\n"),
        (
            auth("XOAUTH2", b"user=u\x01auth=Bearer t\x01\x01"),
            b"AUTH XOAUTH2 dXNlcj11AWF1dGg9QmVhcmVyIHQBAQ==\r\n",
        ),
        (authResponse(b"user"), b"dXNlcg==\r\n"),
        (authResponse(b"\r\n.\r\n"), b"DQouDQo=\r\n"),
        (authResponse(b""), b"\r\n"),
        (authCancel(), b"*\r\n"),
    ],
)
def test_encoders(line: bytes, expected: bytes) -> None:
    """
    Each encoder produces its exact command line, ending with CRLF.
    """
    assert line == expected


def test_longAuthResponseIsOneLine() -> None:
    """
    A long AUTH payload is encoded on one line, without base64 line breaks.
    """
    payload = bytes(range(256)) * 10
    line = authResponse(payload)
    assert line == base64.b64encode(payload) + b"\r\n"
    assert line.count(b"\n") == 1


# Refusals of control characters, for every argument.

INJECTIONS = [
    "a\rb",
    "a\nb",
    "a\x00b",
    "a\r\nb",
    "\r\n",
    "\n",
    "\r",
    "\x00",
    "a@b>\r\nRCPT TO:<evil@x",
    "a@b\r\nDATA\r\n",
    "a@b\nRSET",
    "a@b\x00",
    "a\tb",
    "a\x0bb",
    "a\x0cb",
    "a\x1bb",
    "a\x1fb",
    "a\x7fb",
    "a\x01b",
    "caf\u00e9\r\n",
]


@pytest.mark.parametrize("value", INJECTIONS)
@pytest.mark.parametrize(
    ("name", "encoder", "argument"), TEXT_ENCODERS, ids=TEXT_ENCODER_IDS
)
def test_controlCharactersRefused(
    name: str, encoder: Callable[[str], bytes], argument: str, value: str
) -> None:
    """
    A control character (CR, LF, NUL or any other, including CRLF
    injection attempts) in any argument of any encoder is refused with an
    error naming the argument, whatever else the argument contains.
    """
    with pytest.raises(CommandArgumentError) as caught:
        encoder(value)
    assert caught.value.argument == argument
    assert "contains" in caught.value.reason
    assert caught.value.value in (value, value.encode("utf-8"), [value])


@pytest.mark.parametrize(
    ("value", "description"),
    [
        ("a\rb", "CR (0x0d)"),
        ("a\nb", "LF (0x0a)"),
        ("a\x00b", "NUL (0x00)"),
        ("a\tb", "control character (0x09)"),
        ("a\x7fb", "control character (0x7f)"),
    ],
)
def test_controlCharacterNamed(value: str, description: str) -> None:
    """
    The error names the control character it found.
    """
    with pytest.raises(CommandArgumentError) as caught:
        rcptTo(value)
    assert caught.value.reason == f"contains {description}"


# validateAddress


@pytest.mark.parametrize(
    ("address", "allowEmpty", "expected"),
    [
        ("a@b.example", False, "a@b.example"),
        (b"a@b.example", False, "a@b.example"),
        ("", True, ""),
        (b"", True, ""),
        ("postmaster", False, "postmaster"),
        ("PostMaster", False, "PostMaster"),
        ("@", False, "@"),
        ("a@b@c", False, "a@b@c"),
        ("x" * 252 + "@b", False, "x" * 252 + "@b"),
        ("!#$%&'*+-/=?^_`{|}~@b.example", False, "!#$%&'*+-/=?^_`{|}~@b.example"),
    ],
)
def test_validateAddressAccepts(
    address: str | bytes, allowEmpty: bool, expected: str
) -> None:
    """
    Addresses that are safe to send are returned as text.
    """
    result = validateAddress(address, "toAddress", allowEmpty=allowEmpty)
    assert result == expected
    assert isinstance(result, str)


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("", "must not be empty"),
        (b"", "must not be empty"),
        ("a b@c", "whitespace"),
        (" a@b", "whitespace"),
        ("a@b ", "whitespace"),
        ("<a@b>", "'<' or '>'"),
        ("a@b>", "'<' or '>'"),
        ("a<b@c", "'<' or '>'"),
        (b"a@b>", "'<' or '>'"),
        ("x" * 253 + "@b", "255 octets long; the limit is 254"),
        ("x" * 1000, "1000 octets long"),
        ("user", "no '@'"),
        ("postmasters", "no '@'"),
        ("post master", "whitespace"),
        (b"user", "no '@'"),
        ("a@b\r\nRCPT TO:<evil@x", "CR"),
        ("a@b>\r\nRCPT TO:<evil@x", "CR"),
        ("a@b\x00", "NUL"),
        (123, "must be a string"),
        (None, "must be a string"),
        (["a@b"], "must be a string"),
        (bytearray(b"a@b"), "must be a string"),
    ],
)
def test_validateAddressRefuses(address: object, reason: str) -> None:
    """
    Empty, unsafe, over-long or domain-less addresses (other than
    postmaster) are refused with an error naming the argument.
    """
    with pytest.raises(CommandArgumentError) as caught:
        validateAddress(address, "fromAddress")  # type: ignore[arg-type]
    assert caught.value.argument == "fromAddress"
    assert caught.value.value == address
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "address",
    [
        "j\u00f6rg@example.com",
        "user@b\u00fccher.example",
        "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
        "a\u00a0b@c",
        "a@b\u2028",
        "a@b\u0085",
        "j\u00f6rg@example.com".encode(),
        b"a@b\xff",
        b"\x80",
    ],
)
def test_validateAddressNonASCII(address: str | bytes) -> None:
    """
    Non-ASCII addresses need SMTPUTF8, which is not sent yet: they are
    refused as unsupported rather than sent or rewritten.
    """
    with pytest.raises(UnsupportedFeatureError) as caught:
        validateAddress(address, "toAddress")
    assert caught.value.argument == "toAddress"
    assert "SMTPUTF8" in caught.value.reason
    assert not isinstance(caught.value, CommandArgumentError)
    assert isinstance(caught.value, InvalidArgumentError)


@pytest.mark.parametrize(
    ("encoder", "address", "argument", "error"),
    [
        (rcptTo, "", "toAddress", CommandArgumentError),
        (rcptTo, b"", "toAddress", CommandArgumentError),
        (rcptTo, "user", "toAddress", CommandArgumentError),
        (mailFrom, "user", "fromAddress", CommandArgumentError),
        (mailFrom, "a@b>", "fromAddress", CommandArgumentError),
        (rcptTo, "<a@b>", "toAddress", CommandArgumentError),
        (mailFrom, "x" * 300 + "@b", "fromAddress", CommandArgumentError),
        (mailFrom, "j\u00f6rg@example.com", "fromAddress", UnsupportedFeatureError),
        (rcptTo, "j\u00f6rg@example.com", "toAddress", UnsupportedFeatureError),
    ],
)
def test_pathCommandsRefuseAddresses(
    encoder: Callable[[str | bytes], bytes],
    address: str | bytes,
    argument: str,
    error: type[Exception],
) -> None:
    """
    C{MAIL} and C{RCPT} refuse bad addresses with the error for their own
    argument; C{RCPT} never accepts the empty address.
    """
    with pytest.raises(error) as caught:
        encoder(address)
    assert isinstance(caught.value, InvalidArgumentError)
    assert caught.value.argument == argument


# SMTPUTF8 (utf8=True)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("j\u00f6rg@example.com", "j\u00f6rg@example.com"),
        ("j\u00f6rg@example.com".encode(), "j\u00f6rg@example.com"),
        ("user@b\u00fccher.example", "user@b\u00fccher.example"),
        (
            "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
            "\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a",
        ),
        ("a\u00a0b@c", "a\u00a0b@c"),
        ("\U0001f600@example.com", "\U0001f600@example.com"),
        ("a@b.example", "a@b.example"),
        (b"a@b.example", "a@b.example"),
        ("\u00e9" * 126 + "@b", "\u00e9" * 126 + "@b"),
    ],
)
def test_validateAddressUTF8Accepts(address: str | bytes, expected: str) -> None:
    """
    With C{utf8=True}, non-ASCII addresses (text, or bytes that are valid
    UTF-8) are accepted and returned as text, unchanged.
    """
    assert validateAddress(address, "toAddress", utf8=True) == expected


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("a@b\u2028", "line separator U+2028"),
        ("a\u2029@b", "paragraph separator U+2029"),
        ("a@b\u0085", "C1 control character U+0085"),
        ("a\u0080@b", "C1 control character U+0080"),
        ("a\u009f@b", "C1 control character U+009F"),
        ("a@b\u2028".encode(), "line separator U+2028"),
        ("a@b\u0085".encode(), "C1 control character U+0085"),
        ("a\ud800@b", "lone surrogate U+D800"),
        (b"a@b\xff", "not valid UTF-8"),
        (b"\x80@b", "not valid UTF-8"),
        (b"a@b\xc3", "not valid UTF-8"),
        ("a\r\u00e9@b", "CR (0x0d)"),
        ("\u00e9a@b\n", "LF (0x0a)"),
        ("\u00e9\x00@b".encode(), "NUL (0x00)"),
        ("\u00e9 @b", "whitespace"),
        ("\u00e9<@b", "'<' or '>'"),
        ("\u00e9" * 127 + "@b", "256 octets long; the limit is 254"),
        ("\u00e9", "no '@'"),
        ("", "must not be empty"),
    ],
)
def test_validateAddressUTF8Refuses(address: str | bytes, reason: str) -> None:
    """
    With C{utf8=True}, control characters (ASCII and C1), the Unicode line
    and paragraph separators, lone surrogates and bytes that are not UTF-8
    are refused as unsafe, as are the ASCII problems; the length limit
    counts UTF-8 octets.
    """
    with pytest.raises(CommandArgumentError) as caught:
        validateAddress(address, "toAddress", utf8=True)
    assert caught.value.argument == "toAddress"
    assert caught.value.value == address
    assert reason in caught.value.reason


def test_validateAddressRemembersOnlySuccesses() -> None:
    """
    Valid addresses are remembered (a bounded number of them), and a
    remembered address is still refused in a mode it is not valid in.
    """
    commands._VALID.clear()
    assert validateAddress("j\u00f6rg@b", "toAddress", utf8=True) == "j\u00f6rg@b"
    assert validateAddress("j\u00f6rg@b", "toAddress", utf8=True) == "j\u00f6rg@b"
    with pytest.raises(UnsupportedFeatureError):
        validateAddress("j\u00f6rg@b", "toAddress")
    with pytest.raises(CommandArgumentError):
        validateAddress("", "toAddress")
    for n in range(commands._VALID_LIMIT + 1):
        validateAddress(f"user{n}@b", "toAddress")
    assert 0 < len(commands._VALID) <= commands._VALID_LIMIT
    assert validateAddress("user0@b", "toAddress") == "user0@b"


def test_validateAddressAllowEmptyPositional() -> None:
    """
    C{allowEmpty} may be given by position or by keyword, with C{utf8} as
    well.
    """
    assert validateAddress("", "fromAddress", True) == ""
    assert validateAddress("", "fromAddress", allowEmpty=True, utf8=True) == ""


@pytest.mark.parametrize(
    "parameter",
    [
        "ORCPT=utf-8;j\u00f6rg@example.com",
        "X-\u00e9=\u4f8b",
        "SIZE=100",
    ],
)
def test_validateParameterUTF8(parameter: str) -> None:
    """
    Parameters may carry UTF-8 only with C{utf8=True} (as RFC 6533's
    C{ORCPT=utf-8;...} does under SMTPUTF8).
    """
    assert validateParameter(parameter, utf8=True) == parameter
    if not parameter.isascii():
        with pytest.raises(UnsupportedFeatureError):
            validateParameter(parameter)


@pytest.mark.parametrize(
    ("parameter", "reason"),
    [
        ("ORCPT=utf-8;a\u2028b", "U+2028"),
        ("X=\u0085", "U+0085"),
        ("X=\u00e9 Y", "whitespace"),
        ("X=\u00e9>", "'<' or '>'"),
        ("", "must not be empty"),
    ],
)
def test_validateParameterUTF8Refuses(parameter: str, reason: str) -> None:
    """
    UTF-8 parameters are still refused when they hold a C1 control, a
    Unicode line break, whitespace or angle brackets.
    """
    for encode in [
        lambda: validateParameter(parameter, utf8=True),
        lambda: mailFrom("a@b", [parameter], utf8=True),
        lambda: rcptTo("a@b", [parameter], utf8=True),
    ]:
        with pytest.raises(CommandArgumentError) as caught:
            encode()
        assert caught.value.argument == "parameter"
        assert reason in caught.value.reason


@pytest.mark.parametrize("encoder", [mailFrom, rcptTo])
def test_pathCommandsUTF8Encoding(encoder: Callable[..., bytes]) -> None:
    """
    With C{utf8=True} the whole line, address and parameters, is encoded as
    UTF-8; without it a UTF-8 parameter is refused even after an ASCII
    address.
    """
    line = encoder("\u00e9@\u00e9.example", ["X=\u00e9"], utf8=True)
    assert line.endswith(" X=\u00e9\r\n".encode())
    assert "<\u00e9@\u00e9.example>".encode() in line
    with pytest.raises(UnsupportedFeatureError) as caught:
        encoder("a@b.example", ["X=\u00e9"])
    assert caught.value.argument == "parameter"


# VRFY and BDAT


@pytest.mark.parametrize(
    ("string", "error", "reason"),
    [
        ("", CommandArgumentError, "must not be empty"),
        (b"", CommandArgumentError, "must not be empty"),
        ("John Smith", CommandArgumentError, "whitespace outside a quoted string"),
        ('"John Smith', CommandArgumentError, "whitespace outside a quoted string"),
        ('" ', CommandArgumentError, "whitespace outside a quoted string"),
        ("smith SMTPUTF8", CommandArgumentError, "whitespace"),
        ("smith\r\nRSET", CommandArgumentError, "CR"),
        ("j\u00f6rg", UnsupportedFeatureError, "SMTPUTF8"),
        (None, CommandArgumentError, "must be a string"),
    ],
)
def test_vrfyRefuses(
    string: object, error: type[InvalidArgumentError], reason: str
) -> None:
    """
    C{VRFY} refuses an empty string, whitespace outside a quoted string
    (which could pose as a parameter), control characters, and non-ASCII
    text without C{utf8}.
    """
    with pytest.raises(error) as caught:
        vrfy(string)  # type: ignore[arg-type]
    assert caught.value.argument == "string"
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("size", "last", "argument"),
    [
        (-1, False, "size"),
        (True, False, "size"),
        (False, True, "size"),
        (1.0, False, "size"),
        ("10", False, "size"),
        (None, False, "size"),
        (10, 1, "last"),
        (10, None, "last"),
        (10, "LAST", "last"),
    ],
)
def test_bdatRefuses(size: object, last: object, argument: str) -> None:
    """
    C{BDAT} takes a non-negative L{int} size (not a L{bool}) and a L{bool}
    C{last}; anything else is refused rather than sent.
    """
    with pytest.raises(CommandArgumentError) as caught:
        bdat(size, last)  # type: ignore[arg-type]
    assert caught.value.argument == argument


# Parameters


@pytest.mark.parametrize(
    ("parameter", "error", "reason"),
    [
        ("", CommandArgumentError, "must not be empty"),
        ("SIZE= 1", CommandArgumentError, "whitespace"),
        ("SIZE=1 BODY=8BITMIME", CommandArgumentError, "whitespace"),
        (" SIZE=1", CommandArgumentError, "whitespace"),
        ("ORCPT=<a@b>", CommandArgumentError, "'<' or '>'"),
        ("X=>", CommandArgumentError, "'<' or '>'"),
        ("SIZE=1\r\nRSET", CommandArgumentError, "CR"),
        ("SIZE=1\x00", CommandArgumentError, "NUL"),
        ("ENVID=caf\u00e9", UnsupportedFeatureError, "SMTPUTF8"),
        (b"SIZE=1", CommandArgumentError, "must be a string"),
        (1, CommandArgumentError, "must be a string"),
    ],
)
def test_parameterRefused(
    parameter: object, error: type[InvalidArgumentError], reason: str
) -> None:
    """
    Empty parameters and parameters with whitespace, control characters or
    angle brackets are refused, in either command and in any position.
    """
    for encode in [
        lambda: validateParameter(parameter),  # type: ignore[arg-type]
        lambda: mailFrom("a@b", [parameter]),  # type: ignore[list-item]
        lambda: mailFrom("a@b", ["SIZE=1", parameter]),  # type: ignore[list-item]
        lambda: rcptTo("a@b", [parameter]),  # type: ignore[list-item]
    ]:
        with pytest.raises(error) as caught:
            encode()
        assert caught.value.argument == "parameter"
        assert reason in caught.value.reason


@pytest.mark.parametrize("encoder", [mailFrom, rcptTo])
def test_parametersAsOneStringRefused(encoder: Callable[..., bytes]) -> None:
    """
    Parameters given as one string, rather than a sequence of them, are
    refused instead of being sent character by character.
    """
    with pytest.raises(CommandArgumentError) as caught:
        encoder("a@b", "SIZE=100")
    assert caught.value.argument == "parameter"
    assert "sequence" in caught.value.reason


@pytest.mark.parametrize(
    "parameter",
    ["SIZE=100", "BODY=8BITMIME", "SMTPUTF8", "ORCPT=rfc822;a+2Bb@c", 'X="q"'],
)
def test_validateParameterAccepts(parameter: str) -> None:
    """
    Well-formed parameters are returned unchanged.
    """
    assert validateParameter(parameter) == parameter


# HELO name


@pytest.mark.parametrize(
    "name",
    [
        "client.example",
        "localhost",
        "[127.0.0.1]",
        "[IPv6:2001:db8::1]",
        "xn--bcher-kva.example",
        "a",
    ],
)
def test_validateHeloNameAccepts(name: str) -> None:
    """
    Host names and address literals are accepted unchanged.
    """
    assert validateHeloName(name) == name


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "must not be empty"),
        ("my host", "whitespace"),
        (" host", "whitespace"),
        ("host\r\nMAIL FROM:<x@y>", "CR"),
        ("host\n", "LF"),
        ("host\x00", "NUL"),
        ("host\t", "control character"),
        ("b\u00fccher.example", "IDNA"),
        ("host\u00a0", "IDNA"),
        (b"host", "must be a string"),
    ],
)
def test_validateHeloNameRefuses(name: str, reason: str) -> None:
    """
    Empty names and names with whitespace, control characters or non-ASCII
    characters (which must be IDNA-encoded first) are refused.
    """
    for encode in [validateHeloName, ehlo, helo]:
        with pytest.raises(CommandArgumentError) as caught:
            encode(name)
        assert caught.value.argument == "heloName"
        assert caught.value.value == name
        assert reason in caught.value.reason


# AUTH


@pytest.mark.parametrize(
    "mechanism",
    [
        "",
        "plain",
        "Plain",
        "A" * 21,
        "PL AIN",
        "PLAIN=",
        "PLA.IN",
        "PLA\u0130N",
        "AUTH PLAIN",
        b"PLAIN",
        None,
    ],
)
def test_authMechanismRefused(mechanism: object) -> None:
    """
    Anything but a SASL mechanism name (1 to 20 upper-case letters, digits,
    hyphens and underscores) is refused as a mechanism.
    """
    for initialResponse in [None, b"x"]:
        with pytest.raises(CommandArgumentError) as caught:
            auth(mechanism, initialResponse)  # type: ignore[arg-type]
        assert caught.value.argument == "mechanism"
        assert caught.value.value == mechanism


@pytest.mark.parametrize("payload", ["secret", bytearray(b"secret"), 1])
def test_authDataMustBeBytes(payload: object) -> None:
    """
    AUTH payloads that are not bytes are refused rather than guessed at.
    """
    with pytest.raises(CommandArgumentError) as caught:
        auth("PLAIN", payload)  # type: ignore[arg-type]
    assert caught.value.argument == "authData"
    with pytest.raises(CommandArgumentError) as caught:
        authResponse(payload)  # type: ignore[arg-type]
    assert caught.value.argument == "authData"


# Transcript helpers


@pytest.mark.parametrize(
    ("line", "verb"),
    [
        (b"MAIL FROM:<a@b>\r\n", "MAIL"),
        (b"RCPT TO:<a@b> NOTIFY=NEVER\r\n", "RCPT"),
        (b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "AUTH"),
        (b"ehlo host\r\n", "EHLO"),
        (b"DATA\r\n", "DATA"),
        (b"QUIT", "QUIT"),
        (b"STARTTLS\r\n", "STARTTLS"),
        (b"LHLO client.example\r\n", "LHLO"),
        (b"VRFY smith SMTPUTF8\r\n", "VRFY"),
        (b"BDAT 123 LAST\r\n", "BDAT"),
        (b"bdat 0\r\n", "BDAT"),
        (b"*\r\n", "*"),
        (b"\r\n", ""),
        (b"", ""),
        (b"  \r\n", ""),
    ],
)
def test_commandVerb(line: bytes, verb: str) -> None:
    """
    The verb of a command line is its first word, upper-cased.
    """
    assert commandVerb(line) == verb


@pytest.mark.parametrize(
    ("line", "shown"),
    [
        (b"AUTH PLAIN AHVzZXIAcGFzcw==\r\n", "AUTH PLAIN <redacted>"),
        (b"AUTH PLAIN =\r\n", "AUTH PLAIN <redacted>"),
        (b"auth plain AHVzZXIAcGFzcw==\r\n", "auth plain <redacted>"),
        (b"AUTH XOAUTH2 abc def\r\n", "AUTH XOAUTH2 <redacted>"),
        (b"AUTH PLAIN secret", "AUTH PLAIN <redacted>"),
        (b"AUTH LOGIN\r\n", "AUTH LOGIN"),
        (b"AUTH\r\n", "AUTH"),
        (b"MAIL FROM:<a@b> SIZE=10\r\n", "MAIL FROM:<a@b> SIZE=10"),
        (b"RCPT TO:<auth@b> X=Y\r\n", "RCPT TO:<auth@b> X=Y"),
        (b"EHLO AUTH PLAIN\r\n", "EHLO AUTH PLAIN"),
        (b"QUIT", "QUIT"),
        (b"BDAT 123 LAST\r\n", "BDAT 123 LAST"),
        (b"BDAT 0\r\n", "BDAT 0"),
        (b"LHLO client.example\r\n", "LHLO client.example"),
        (b"VRFY smith\r\n", "VRFY smith"),
        (
            "MAIL FROM:<j\u00f6rg@b> SMTPUTF8\r\n".encode(),
            "MAIL FROM:<j\u00f6rg@b> SMTPUTF8",
        ),
        (b"NOOP\r\n\r\n", "NOOP\r\n"),
        (b"\r\n", ""),
        (b"RCPT TO:<\xff@b>\r\n", "RCPT TO:<\ufffd@b>"),
    ],
)
def test_redactCommand(line: bytes, shown: str) -> None:
    """
    Command lines show as text without their CRLF, with the payload of an
    AUTH line (even the empty one) redacted and other lines unchanged.
    """
    assert redactCommand(line) == shown


def test_redactEncodedAuth() -> None:
    """
    No part of the credentials in an encoded AUTH line survives redaction.
    """
    line = auth("PLAIN", b"\x00user\x00hunter2")
    shown = redactCommand(line)
    assert shown == "AUTH PLAIN <redacted>"
    assert base64.b64encode(b"\x00user\x00hunter2").decode() not in shown


def test_publicNames() -> None:
    """
    The module exports exactly its encoders and validators.
    """
    assert sorted(commands.__all__) == sorted(
        [
            "auth",
            "authCancel",
            "authResponse",
            "bdat",
            "commandVerb",
            "data",
            "ehlo",
            "helo",
            "lhlo",
            "mailFrom",
            "noop",
            "quit",
            "rcptTo",
            "redactCommand",
            "rset",
            "starttls",
            "validateAddress",
            "validateHeloName",
            "validateParameter",
            "vrfy",
        ]
    )
    for name in commands.__all__:
        assert callable(getattr(commands, name))


# Properties

dangerous = st.sampled_from(["\r", "\n", "\x00", "\r\n"])
anyText = st.text(max_size=30)


@given(
    encoder=st.sampled_from(TEXT_ENCODERS),
    before=anyText,
    bad=dangerous,
    after=anyText,
)
def test_crLfNulAlwaysRefused(
    encoder: tuple[str, Callable[[str], bytes], str],
    before: str,
    bad: str,
    after: str,
) -> None:
    """
    For any text containing CR, LF or NUL, every encoder refuses it, with a
    command argument error (never a rewrite, never another kind of error).
    """
    _, encode, argument = encoder
    value = before + bad + after
    with pytest.raises(CommandArgumentError) as caught:
        encode(value)
    assert caught.value.argument == argument


printable = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
    min_size=1,
    max_size=40,
)
anyArgument = st.one_of(printable, st.text(max_size=40))


@given(encoder=st.sampled_from(TEXT_ENCODERS), value=anyArgument)
def test_acceptedArgumentYieldsOneLine(
    encoder: tuple[str, Callable[[str], bytes], str], value: str
) -> None:
    """
    Whenever an argument is accepted, the command has exactly one CR and
    one LF: the CRLF at its end.
    """
    _, encode, argument = encoder
    try:
        line = encode(value)
    except InvalidArgumentError as e:
        assert e.argument == argument
        return
    assert line.endswith(b"\r\n")
    assert line.count(b"\r") == 1
    assert line.count(b"\n") == 1
    assert b"\x00" not in line


@given(
    address=st.from_regex(r"[!-;=?-~]{1,60}@[!-;=?-~]{1,60}", fullmatch=True),
    params=st.lists(st.from_regex(r"[!-;=?-~]{1,20}", fullmatch=True), max_size=4),
)
def test_safeAddressesAccepted(address: str, params: list[str]) -> None:
    """
    Any printable ASCII address with an C{"@"} and without spaces or angle
    brackets is sent exactly as given, with its parameters in order.
    """
    expectedParams = b"".join(b" " + p.encode() for p in params)
    assert mailFrom(address, params) == (
        b"MAIL FROM:<" + address.encode() + b">" + expectedParams + b"\r\n"
    )
    assert rcptTo(address, params) == (
        b"RCPT TO:<" + address.encode() + b">" + expectedParams + b"\r\n"
    )


@given(size=st.integers(min_value=0, max_value=2**64), last=st.booleans())
def test_bdatRoundTrip(size: int, last: bool) -> None:
    """
    Any chunk size gives one C{BDAT} line that names exactly that size, with
    C{LAST} only for the last chunk.
    """
    line = bdat(size, last)
    words = line.decode("ascii").split()
    assert line.endswith(b"\r\n") and line.count(b"\r\n") == 1
    assert words[:2] == ["BDAT", str(size)]
    assert words[2:] == (["LAST"] if last else [])
    assert commandVerb(line) == "BDAT"
    assert redactCommand(line) == line[:-2].decode("ascii")


# Printable characters of any script: no controls (C0, DEL, C1), no
# surrogates, no line or paragraph separators, no space, angle brackets or @.
addressPart = st.text(
    alphabet=st.characters(
        exclude_categories=("Cc", "Cs", "Zl", "Zp"), exclude_characters=" <>@"
    ),
    min_size=1,
    max_size=40,
)


@given(local=addressPart, domain=addressPart)
def test_utf8AddressesRoundTrip(local: str, domain: str) -> None:
    """
    Any UTF-8 address without controls, C1 controls, line separators,
    spaces or angle brackets, and short enough, is sent exactly as given,
    as UTF-8, with C{utf8=True}; and refused as unsupported without it
    when it is not ASCII.
    """
    address = f"{local}@{domain}"
    if len(address.encode("utf-8")) > 254:
        return
    assert rcptTo(address, utf8=True) == f"RCPT TO:<{address}>\r\n".encode()
    assert mailFrom(address.encode("utf-8"), utf8=True) == (
        f"MAIL FROM:<{address}>\r\n".encode()
    )
    if not address.isascii():
        with pytest.raises(UnsupportedFeatureError):
            rcptTo(address)


@given(
    payload=st.binary(max_size=200),
    mechanism=st.from_regex(r"[A-Z0-9_-]{1,20}", fullmatch=True),
)
def test_authPayloadRoundTrip(payload: bytes, mechanism: str) -> None:
    """
    Any AUTH payload, whatever octets it holds, is sent as one base64 line
    that decodes back to it.
    """
    line = auth(mechanism, payload)
    assert line.count(b"\r\n") == 1 and line.endswith(b"\r\n")
    sent = line[len(b"AUTH ") + len(mechanism) + 1 : -2]
    assert sent == (base64.b64encode(payload) or b"=")
    response = authResponse(payload)
    assert response.count(b"\r\n") == 1 and response.endswith(b"\r\n")
    assert base64.b64decode(response[:-2]) == payload
