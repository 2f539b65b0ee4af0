"""
Tests for L{mailclient._source}: message sources, their facts, and the
passes over them in the form a plan asks for.
"""

from __future__ import annotations

import email
import email.policy
import io
import itertools
import os
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient import _source
from mailclient._source import (
    CHUNK_SIZE,
    MessageSource,
    OpenedMessage,
    _Scanner,
    toMessageSource,
)
from mailclient._wire.envelope import MessageFacts
from mailclient.errors import InvalidArgumentError, UnsupportedFeatureError


class Unseekable:
    """
    A binary stream that can only be read, like a pipe; it records the
    sizes asked for.
    """

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.reads: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        """
        Read from the data.
        """
        self.reads.append(size)
        return self._data.read(size)


class Recording:
    """
    A seekable binary file that records the size of every read.
    """

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self._stream = stream
        self.reads: list[int] = []

    def read(self, size: int = -1, /) -> bytes:
        """
        Read from the file, recording C{size}.
        """
        self.reads.append(size)
        return self._stream.read(size)

    def seekable(self) -> bool:
        """
        It can seek.
        """
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        """
        Seek in the file.
        """
        return self._stream.seek(offset, whence)

    def tell(self) -> int:
        """
        Where the file is.
        """
        return self._stream.tell()


def readAll(opened: OpenedMessage, size: int = 7) -> bytes:
    """
    Read a pass to its end in small blocks.
    """
    return b"".join(iter(lambda: opened.read(size), b""))


def flatten(message: Message, *, utf8: bool | None = None) -> bytes:
    """
    Serialise C{message} with its policy (and C{utf8} when given), CRLF
    line ends.
    """
    policy: Any = message.policy.clone(linesep="\r\n")
    if utf8 is not None:
        policy = policy.clone(utf8=utf8)
    out = io.BytesIO()
    BytesGenerator(out, mangle_from_=False, policy=policy).flatten(message)
    return out.getvalue()


def parse(data: bytes) -> EmailMessage:
    """
    Parse a serialised message back with the standard library.
    """
    message = email.message_from_bytes(
        data.replace(b"\r\n", b"\n"), policy=email.policy.default
    )
    assert isinstance(message, EmailMessage)
    return message


def isSevenBit(data: bytes) -> bool:
    """
    C{True} when C{data} is 7-bit clean: ASCII, no NUL, lines of at most
    998 octets.
    """
    return (
        data.isascii()
        and b"\x00" not in data
        and all(len(line) <= 998 for line in data.split(b"\r\n"))
    )


def internationalMessage() -> EmailMessage:
    """
    A message with UTF-8 headers (display name, IDN domains, subject) and
    an 8-bit text body.
    """
    message = EmailMessage()
    message["From"] = "J\u00f6rg <jorg@b\u00fccher.example>"
    message["To"] = "x@y.example, Team: a@b\u00fccher.example, b@c.example;"
    message["Subject"] = "Gr\u00fc\u00dfe"
    message.set_content("h\u00e9llo w\u00f6rld\n")
    return message


# -- toMessageSource ------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        b"Subject: x\r\n\r\nhi\r\n",
        bytearray(b"Subject: x\r\n\r\nhi\r\n"),
        memoryview(b"Subject: x\r\n\r\nhi\r\n"),
        "Subject: x\r\n\r\nhi\r\n",
    ],
)
def test_rawSources(given: object) -> None:
    """
    Bytes, bytearrays, memoryviews and text (as UTF-8) are taken as the
    message's bytes.
    """
    source = toMessageSource(given)
    assert source.open().read(-1) == b"Subject: x\r\n\r\nhi\r\n"


def test_textEncodedAsUTF8() -> None:
    """
    Text is encoded as UTF-8; text that cannot be (a lone surrogate) is
    refused.
    """
    source = toMessageSource("Subject: \u00e9\r\n\r\n")
    assert source.open().read(-1) == "Subject: \u00e9\r\n\r\n".encode()
    with pytest.raises(InvalidArgumentError) as caught:
        toMessageSource("\ud800")
    assert caught.value.argument == "message"
    assert "UTF-8" in caught.value.reason


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        (io.StringIO("x"), "binary mode"),
        (12, "expected an email.message.Message"),
        (None, "expected an email.message.Message"),
    ],
)
def test_refusedSources(given: object, reason: str) -> None:
    """
    Text files and anything that is not a message are refused.
    """
    with pytest.raises(InvalidArgumentError) as caught:
        toMessageSource(given)
    assert caught.value.argument == "message"
    assert reason in caught.value.reason


def test_sourcePassesThrough() -> None:
    """
    A source given again is returned as it is.
    """
    source = toMessageSource(b"x")
    assert toMessageSource(source) is source


def test_baseSourceIsAbstract() -> None:
    """
    The base class leaves opening, facts and the single-pass state to its
    subclasses.
    """
    source = MessageSource()
    with pytest.raises(NotImplementedError):
        source.open()
    with pytest.raises(NotImplementedError):
        source.facts()
    with pytest.raises(NotImplementedError):
        source.size  # noqa: B018


# -- the single-pass interface ------------------------------------------------------


def test_legacyBytes() -> None:
    """
    Bytes keep the single-pass interface: size, 8-bitness and C{read}.
    """
    source = toMessageSource(b"a\xffb")
    assert (source.size, source.eightBit) == (3, True)
    assert source.read(2) + source.read() == b"a\xffb"
    assert source.read() == b""
    assert toMessageSource(b"ab").eightBit is False


def test_legacyMessage() -> None:
    """
    A message keeps the single-pass interface, serialised with its own
    policy as it is (RFC 2047 headers under the default policy).
    """
    message = internationalMessage()
    source = toMessageSource(message)
    data = flatten(message)
    assert source.size == len(data)
    assert source.eightBit is True
    assert source.stream.read() == data
    assert b"=?utf-8?" in data


def test_legacyFile() -> None:
    """
    A file keeps the single-pass interface: unknown size and 8-bitness,
    read as it is; a text-mode read is refused.
    """
    stream = io.BytesIO(b"abc")
    source = toMessageSource(stream)
    assert (source.size, source.eightBit, source.stream) == (None, None, stream)
    assert source.read(2) == b"ab"

    class Textual(Unseekable):
        """
        A stream opened in text mode.
        """

        def read(self, size: int = -1, /) -> str:  # type: ignore[override]
            """
            Give text.
            """
            return "text"

    with pytest.raises(InvalidArgumentError, match="binary mode"):
        toMessageSource(Textual(b"")).read()


# -- facts of raw bytes -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "eightBit", "binary", "headersNeedUTF8"),
    [
        (b"", False, False, False),
        (b"Subject: hi\r\n\r\nbody\r\n", False, False, False),
        (b"Subject: hi\r\n\r\nb\xc3\xa9\r\n", True, False, False),
        (b"Subject: h\xc3\xa9\r\n\r\nbody", True, False, True),
        (b"Subject: hi\n\nb\xc3\xa9", True, False, False),
        (b"Subject: hi\r\rb\xc3\xa9", True, False, False),
        (b"Subject: hi\n\r\nb\xc3\xa9", True, False, False),
        (b"\r\nb\xc3\xa9", True, False, False),
        (b"\nb\xc3\xa9", True, False, False),
        (b"\rb\xc3\xa9", True, False, False),
        (b"Subject: h\xc3\xa9", True, False, True),
        (b"Subject: hi\r\n\r\n\x00", False, True, False),
        (b"A: \x00\r\n\r\n", False, True, False),
    ],
)
def test_bytesFacts(
    data: bytes, eightBit: bool, binary: bool, headersNeedUTF8: bool
) -> None:
    """
    Raw bytes give their exact size, whether they have 8-bit octets and NUL
    octets, and whether the header section (up to the first empty line,
    whatever the line ends) has non-ASCII octets; they cannot be
    re-encoded.  The facts are learnt once.
    """
    source = toMessageSource(data)
    assert source.facts() == MessageFacts(
        len(data), eightBit, binary, headersNeedUTF8, canDowngrade=False
    )
    assert source.facts() is source.facts()


def referenceHeadersNonASCII(message: bytes) -> bool:
    """
    Whether the header section has non-ASCII octets: with every line end
    made LF, the section ends at the first empty line.
    """
    normalized = message.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if normalized.startswith(b"\n"):
        return False
    end = normalized.find(b"\n\n")
    return not (normalized if end == -1 else normalized[:end]).isascii()


TOKENS = [b"\r", b"\n", b"\r\n", b"a", b":", b"\xc3\xa9", b"\x00", b" "]


@given(
    st.lists(st.sampled_from(TOKENS), max_size=40).map(b"".join),
    st.lists(st.integers(0, 200), max_size=8),
)
def test_scannerChunkingDoesNotMatter(message: bytes, points: list[int]) -> None:
    """
    However the message is split, the scanner learns the same facts, and
    they match a simple reference.
    """
    bounds = [0, *sorted(p % (len(message) + 1) for p in points), len(message)]
    scanner = _Scanner()
    for start, end in itertools.pairwise(bounds):
        scanner.feed(message[start:end])
    assert scanner.facts(canDowngrade=False) == MessageFacts(
        size=len(message),
        eightBit=not message.isascii(),
        binary=b"\x00" in message,
        headersNeedUTF8=referenceHeadersNonASCII(message),
    )


# -- opening raw bytes --------------------------------------------------------------


def test_bytesOpenedAgain() -> None:
    """
    Every pass starts at the beginning and knows its size.
    """
    source = toMessageSource(b"Subject: x\r\n\r\nbody")
    first = source.open()
    assert first.size == 18
    assert first.read(4) == b"Subj"
    second = source.open()
    assert readAll(second) == b"Subject: x\r\n\r\nbody"
    assert readAll(first) == b"ect: x\r\n\r\nbody"


def test_bytesFormsWhenNotNeeded() -> None:
    """
    Raw bytes that already are in the form asked for are given as they are.
    """
    data = b"Subject: x\r\n\r\nbody\r\n"
    source = toMessageSource(data)
    assert source.open(utf8Headers=False, downgrade=True).read(-1) == data
    eightBit = toMessageSource(b"Subject: x\r\n\r\nb\xc3\xa9")
    assert eightBit.open(utf8Headers=False).read(-1) == b"Subject: x\r\n\r\nb\xc3\xa9"


@pytest.mark.parametrize(
    ("data", "utf8Headers", "downgrade", "reason"),
    [
        (b"Subject: \xc3\xa9\r\n\r\n", False, False, "SMTPUTF8"),
        (b"Subject: x\r\n\r\n\xc3\xa9", True, True, "7 bits"),
        (b"Subject: x\r\n\r\n\x00", True, True, "7 bits"),
    ],
)
def test_bytesCannotChangeForm(
    data: bytes, utf8Headers: bool, downgrade: bool, reason: str
) -> None:
    """
    Raw bytes cannot be re-encoded: asking for RFC 2047 headers when the
    header has UTF-8, or for 7 bits when the message has 8-bit or NUL
    octets, is refused.
    """
    with pytest.raises(UnsupportedFeatureError) as caught:
        toMessageSource(data).open(utf8Headers=utf8Headers, downgrade=downgrade)
    assert caught.value.argument == "message"
    assert reason in caught.value.reason


# -- email.message.Message ----------------------------------------------------------


def test_messageFacts() -> None:
    """
    A message is measured in its UTF-8 form (raw UTF-8 headers, CRLF line
    ends), and can be re-encoded.
    """
    message = internationalMessage()
    data = flatten(message, utf8=True)
    source = toMessageSource(message)
    assert source.facts() == MessageFacts(
        size=len(data),
        eightBit=True,
        binary=False,
        headersNeedUTF8=True,
        canDowngrade=True,
    )
    opened = source.open()
    assert opened.size == len(data)
    assert readAll(opened) == data
    assert "Subject: Gr\u00fc\u00dfe\r\n".encode() in data


def test_messageASCIIFacts() -> None:
    """
    An ASCII message has ASCII headers and no 8-bit octets.
    """
    message = EmailMessage()
    message["Subject"] = "hi"
    message.set_content("plain\n")
    facts = toMessageSource(message).facts()
    assert (facts.eightBit, facts.binary, facts.headersNeedUTF8) == (
        False,
        False,
        False,
    )


def test_messageWithoutUTF8Headers() -> None:
    """
    Asked for headers without UTF-8, a message is re-serialised with RFC
    2047 encoded words and IDNA A-label domains in its addresses (an
    encoded word is not allowed in an address); read back, it says the
    same.
    """
    message = internationalMessage()
    source = toMessageSource(message)
    opened = source.open(utf8Headers=False)
    data = readAll(opened)
    assert opened.size == len(data)
    header = data.split(b"\r\n\r\n")[0]
    assert header.isascii()
    assert b"jorg@xn--bcher-kva.example" in header
    assert b"a@xn--bcher-kva.example" in header
    assert b"=?utf-8?" in header
    back = parse(data)
    assert back["Subject"] == "Gr\u00fc\u00dfe"
    assert back["From"].addresses[0].display_name == "J\u00f6rg"
    assert back["To"].groups[1].display_name == "Team"
    assert [a.addr_spec for a in back["To"].addresses] == [
        "x@y.example",
        "a@xn--bcher-kva.example",
        "b@c.example",
    ]
    assert back.get_content() == "h\u00e9llo w\u00f6rld\n"
    # The caller's message is not changed.
    assert message["From"].addresses[0].domain == "b\u00fccher.example"


def test_messageASCIIHeadersKept() -> None:
    """
    Headers that are ASCII already are kept as they are, repeated headers
    and their order included.
    """
    message = EmailMessage()
    message["Received"] = "from a"
    message["To"] = "Plain <a@b.example>"
    message["Received"] = "from b"
    message["Subject"] = "Caf\u00e9"
    message.set_content("x\n")
    data = toMessageSource(message).open(utf8Headers=False).read(-1)
    header = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    assert header[:3] == [
        b"Received: from a",
        b"To: Plain <a@b.example>",
        b"Received: from b",
    ]


@pytest.mark.parametrize("header", ["From", "To", "Cc", "Reply-To"])
def test_messageNonASCIILocalPart(header: str) -> None:
    """
    An address with a non-ASCII local part cannot be written without
    UTF-8: asking for that is refused, naming SMTPUTF8.
    """
    message = EmailMessage()
    message[header] = "J\u00f6rg <j\u00f6rg@example.com>"
    message.set_content("x\n")
    source = toMessageSource(message)
    assert source.facts().headersNeedUTF8
    source.open()
    with pytest.raises(UnsupportedFeatureError) as caught:
        source.open(utf8Headers=False)
    assert caught.value.argument == "message"
    assert "SMTPUTF8" in caught.value.reason
    assert "j\u00f6rg@example.com" in str(caught.value.value)


def test_messageInvalidDomain() -> None:
    """
    A non-ASCII domain that is not valid IDNA cannot be written as
    A-labels.
    """
    message = EmailMessage()
    message["To"] = "a@\u2603.example"
    message.set_content("x\n")
    with pytest.raises(InvalidArgumentError) as caught:
        toMessageSource(message).open(utf8Headers=False)
    assert "\u2603.example" in caught.value.reason


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("J\u00f6rg <broken", "malformed"),
        ("<@b\u00fc.example>", "malformed"),
        ("x <a@b\u00fc ch\u00e9.example>", "malformed"),
        ('x <""@b\u00fc.example>', "cannot be rewritten"),
    ],
)
def test_messageMalformedAddressHeader(value: str, reason: str) -> None:
    """
    A malformed address header that is not ASCII is refused rather than
    guessed at when it must be written without UTF-8: what the parser made
    of it may not be what was meant, and encoded words would break it
    further.  The error shows the header as it would be sent in UTF-8.
    """
    message = EmailMessage()
    message["To"] = value
    message.set_content("x\n")
    source = toMessageSource(message)
    asIs = source.open().read(-1)
    with pytest.raises(UnsupportedFeatureError) as caught:
        source.open(utf8Headers=False)
    assert reason in caught.value.reason
    assert isinstance(caught.value.value, str)
    assert caught.value.value.startswith("To: ")
    assert caught.value.value.encode() + b"\r\n" in asIs


def test_messageAddressCommentsAndDots() -> None:
    """
    Display names with non-ASCII text (even with the obsolete dots in
    them) are RFC 2047 encoded, their addresses untouched.
    """
    message = EmailMessage()
    message["To"] = "J\u00f6rg J. M\u00fcller <a@b.example>, c@d.example"
    message.set_content("x\n")
    data = toMessageSource(message).open(utf8Headers=False).read(-1)
    to = parse(data)["To"]
    assert [a.addr_spec for a in to.addresses] == ["a@b.example", "c@d.example"]
    assert to.addresses[0].display_name == "J\u00f6rg J. M\u00fcller"


def test_messageRaw8BitHeader() -> None:
    """
    A parsed message whose header holds raw 8-bit octets (not UTF-8 text)
    cannot be given without UTF-8 headers.
    """
    message = email.message_from_bytes(
        b"Subject: caf\xe9\r\n\r\nbody\r\n", policy=email.policy.default
    )
    source = toMessageSource(message)
    assert source.facts().headersNeedUTF8
    with pytest.raises(UnsupportedFeatureError) as caught:
        source.open(utf8Headers=False)
    assert "cannot be encoded without UTF-8" in caught.value.reason


def eightBitTextMessage() -> EmailMessage:
    """
    A message with an 8-bit text part.
    """
    message = EmailMessage()
    message["From"] = "a@b.example"
    message["Subject"] = "text"
    message.set_content("gr\u00fc\u00dfe\n\tand trailing space \nbye\n", cte="8bit")
    return message


def binaryAttachmentMessage(cte: str) -> EmailMessage:
    """
    A message with an 8-bit text part and a binary attachment sent with
    C{cte}.
    """
    message = EmailMessage()
    message["From"] = "a@b.example"
    message["Subject"] = "attachment"
    message.set_content("h\u00e9llo\n", cte="8bit")
    message.add_attachment(
        bytes(range(256)) * 8,
        maintype="application",
        subtype="octet-stream",
        cte=cte,
        filename="data.bin",
    )
    return message


@pytest.mark.parametrize("utf8Headers", [True, False])
def test_downgradeTextPart(utf8Headers: bool) -> None:
    """
    Re-encoded to 7 bits, an 8-bit text part becomes quoted-printable: the
    message is 7-bit clean and parses back to the same text.
    """
    message = eightBitTextMessage()
    source = toMessageSource(message)
    assert source.facts().eightBit
    opened = source.open(utf8Headers=utf8Headers, downgrade=True)
    data = readAll(opened)
    assert opened.size == len(data)
    assert isSevenBit(data)
    back = parse(data)
    assert back["Content-Transfer-Encoding"] == "quoted-printable"
    assert back.get_content() == message.get_content()
    assert message["Content-Transfer-Encoding"] == "8bit"


@pytest.mark.parametrize("cte", ["binary", "8bit", "base64"])
def test_downgradeBinaryAttachment(cte: str) -> None:
    """
    Re-encoded to 7 bits, a binary attachment becomes base64 and the text
    quoted-printable: the message is 7-bit clean, and its parts parse back
    to the same content.
    """
    message = binaryAttachmentMessage(cte)
    source = toMessageSource(message)
    facts = source.facts()
    assert facts.eightBit
    assert facts.binary is (cte != "base64")
    data = source.open(utf8Headers=False, downgrade=True).read(-1)
    assert isSevenBit(data)
    text, attachment = parse(data).iter_parts()
    original = list(message.iter_parts())
    assert text.get_content() == original[0].get_content()
    assert attachment.get_content() == bytes(range(256)) * 8
    assert attachment.get_filename() == "data.bin"
    assert attachment["Content-Transfer-Encoding"] == "base64"


def test_downgradeLongLines() -> None:
    """
    A 7-bit part with lines too long for SMTP is re-encoded too.
    """
    message = Message()
    message["Content-Type"] = "text/plain"
    message.set_payload("x" * 2000 + "\n")
    data = toMessageSource(message).open(downgrade=True).read(-1)
    assert isSevenBit(data)
    assert parse(data).get_content() == "x" * 2000 + "\n"


def test_downgradeParsedMessage() -> None:
    """
    A parsed 8-bit message, including a nested message marked 8bit, is
    re-encoded to 7 bits, the nested message marked 7bit.
    """
    raw = (
        b"Subject: parsed\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain; charset=latin-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\ncaf\xe9\r\n"
        b"--b\r\nContent-Type: message/rfc822\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b"Subject: inner\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n\xc3\xa9t\xc3\xa9\r\n"
        b"--b--\r\n"
    )
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    data = toMessageSource(message).open(utf8Headers=False, downgrade=True).read(-1)
    assert isSevenBit(data)
    text, nested = parse(data).iter_parts()
    originalText, originalNested = message.iter_parts()
    assert text.get_content() == "caf\u00e9" == originalText.get_content()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert nested["Content-Transfer-Encoding"] == "7bit"
    inner = nested.get_content()
    assert inner.get_content() == "\u00e9t\u00e9"
    assert inner["Subject"] == "inner"
    assert originalNested["Content-Transfer-Encoding"] == "8bit"


def test_downgradeKeepsUTF8Headers() -> None:
    """
    Re-encoded to 7 bits with UTF-8 headers kept (under SMTPUTF8), only the
    header section has 8-bit octets.
    """
    message = internationalMessage()
    data = toMessageSource(message).open(utf8Headers=True, downgrade=True).read(-1)
    header, body = data.split(b"\r\n\r\n", 1)
    assert not header.isascii()
    assert isSevenBit(body)
    assert parse(data).get_content() == "h\u00e9llo w\u00f6rld\n"


def test_downgradeOnlyWhatNeedsIt() -> None:
    """
    Re-encoding to 7 bits leaves 7-bit parts alone, and combines with
    headers re-encoded without UTF-8.
    """
    message = internationalMessage()
    message.add_attachment("plain ascii\n")
    data = toMessageSource(message).open(utf8Headers=False, downgrade=True).read(-1)
    assert isSevenBit(data)
    text, plain = parse(data).iter_parts()
    assert text["Content-Transfer-Encoding"] == "quoted-printable"
    assert plain["Content-Transfer-Encoding"] == "7bit"
    assert plain.get_content() == "plain ascii\n"
    assert parse(data)["Subject"] == "Gr\u00fc\u00dfe"


def test_downgradeImpossible() -> None:
    """
    A part that claims a 7-bit transfer encoding but holds raw 8-bit or
    NUL octets is not re-encoded (its encoding is taken at its word), so
    the result is checked: asking for 7 bits is refused rather than sending
    8-bit data.
    """
    for payload in ["caf\udce9", "a\x00b"]:
        message = Message()
        message["Content-Type"] = "application/octet-stream"
        message["Content-Transfer-Encoding"] = "base64"
        message.set_payload(payload)
        source = toMessageSource(message)
        with pytest.raises(UnsupportedFeatureError) as caught:
            source.open(utf8Headers=False, downgrade=True)
        assert "7 bits" in caught.value.reason


def test_messageCannotBeSerialised() -> None:
    """
    A message the standard library cannot serialise (8-bit text in a
    preamble) is refused as an invalid message.
    """
    message = binaryAttachmentMessage("base64")
    message.preamble = "pr\u00e9ambule"
    with pytest.raises(InvalidArgumentError) as caught:
        toMessageSource(message).facts()
    assert caught.value.argument == "message"
    assert "cannot be serialised" in caught.value.reason


def test_messageFormsMadeOnce() -> None:
    """
    Each form of a message is serialised once and given again for every
    pass, from its start.
    """
    message = binaryAttachmentMessage("binary")
    source = toMessageSource(message)
    first = source.open(utf8Headers=False, downgrade=True).read(-1)
    message.replace_header("Subject", "changed later")
    assert source.open(utf8Headers=False, downgrade=True).read(-1) == first


def test_compat32Message() -> None:
    """
    A C{compat32} message (a plain L{Message}) is serialised with its own
    policy, which has no UTF-8 choice: its headers are always encoded.
    "From " lines of the body are not mangled (that is for mbox files).
    """
    message = Message()
    message["Subject"] = "Gr\u00fc\u00dfe"
    message.set_payload("From here on\n\u00e9\n", "utf-8")
    source = toMessageSource(message)
    facts = source.facts()
    assert (facts.headersNeedUTF8, facts.canDowngrade) == (False, True)
    data = source.open().read(-1)
    assert data == source.open(utf8Headers=False).read(-1)
    assert b"Subject: =?utf-8?" in data
    assert b"\r\n>From" not in data
    assert isSevenBit(source.open(downgrade=True).read(-1))


# -- seekable files -----------------------------------------------------------------


def test_seekableFile(tmp_path: Path) -> None:
    """
    A seekable file is scanned once for its facts, from where it was
    positioned, and put back there; every pass reads from that offset.
    """
    path = tmp_path / "message.eml"
    path.write_bytes(b"PREFIX" + b"Subject: h\xc3\xa9\r\n\r\nbody\r\n")
    with path.open("rb") as stream:
        stream.seek(6)
        source = toMessageSource(stream)
        assert source.facts() == MessageFacts(22, True, False, True, False)
        assert stream.tell() == 6
        first = source.open()
        second = source.open()
        assert first.size == second.size == 22
        assert first.read(5) == b"Subje"
        assert readAll(second) == b"Subject: h\xc3\xa9\r\n\r\nbody\r\n"
        assert readAll(first) == b"ct: h\xc3\xa9\r\n\r\nbody\r\n"
        assert readAll(source.open()) == b"Subject: h\xc3\xa9\r\n\r\nbody\r\n"


@pytest.mark.parametrize(
    ("data", "utf8Headers", "downgrade"),
    [
        (b"Subject: \xc3\xa9\r\n\r\n", False, False),
        (b"Subject: x\r\n\r\n\xc3\xa9", True, True),
    ],
)
def test_seekableFileCannotChangeForm(
    data: bytes, utf8Headers: bool, downgrade: bool
) -> None:
    """
    A file is sent as it is: asking for a form it is not in is refused at
    once, from its facts.
    """
    source = toMessageSource(io.BytesIO(data))
    with pytest.raises(UnsupportedFeatureError):
        source.open(utf8Headers=utf8Headers, downgrade=downgrade)


def test_largeFileScannedInBlocks(tmp_path: Path) -> None:
    """
    A 5 MiB file is scanned in blocks of at most L{CHUNK_SIZE} octets, never
    read whole, and read in blocks again when opened.
    """
    path = tmp_path / "big.eml"
    body = (b"x" * 76 + b"\r\n") * (5 * 1024 * 1024 // 78)
    path.write_bytes(b"Subject: big\r\n\r\n" + body + b"\xc3\xa9\r\n")
    size = path.stat().st_size
    with path.open("rb") as raw:
        stream = Recording(raw)
        source = toMessageSource(stream)
        facts = source.facts()
        assert facts == MessageFacts(size, True, False, False, False)
        assert max(stream.reads) == CHUNK_SIZE
        assert -1 not in stream.reads
        assert len(stream.reads) >= size // CHUNK_SIZE
        stream.reads.clear()
        opened = source.open()
        total = 0
        while chunk := opened.read(CHUNK_SIZE):
            total += len(chunk)
        assert total == size
        assert max(stream.reads) == CHUNK_SIZE


def test_fileReadFails() -> None:
    """
    A file that fails while being scanned is reported as an invalid
    message.
    """

    class Broken(io.BytesIO):
        """
        A file whose disk fails.
        """

        def read(self, size: int | None = -1, /) -> bytes:
            """
            Fail.
            """
            raise OSError("disk on fire")

    with pytest.raises(InvalidArgumentError) as caught:
        toMessageSource(Broken(b"x")).facts()
    assert "disk on fire" in caught.value.reason


def test_textModeReaderRefused() -> None:
    """
    A seekable object whose C{read} gives text is refused when scanned or
    read.
    """

    class Textual(io.BytesIO):
        """
        A seekable stream opened in text mode.
        """

        def read(self, size: int | None = -1, /) -> str:  # type: ignore[override]
            """
            Give text.
            """
            return "text"

    with pytest.raises(InvalidArgumentError, match="binary mode"):
        toMessageSource(Textual()).facts()


# -- non-seekable streams -----------------------------------------------------------


class NotReallySeekable(io.BytesIO):
    """
    A stream that says it can seek but cannot tell where it is.
    """

    def tell(self) -> int:
        """
        Fail.
        """
        raise OSError("no")


def pipe(data: bytes) -> io.BufferedReader:
    """
    The reading end of an OS pipe that holds C{data}.
    """
    reading, writing = os.pipe()
    with open(writing, "wb") as stream:
        stream.write(data)
    return open(reading, "rb")


@pytest.mark.parametrize("make", [Unseekable, NotReallySeekable, pipe])
def test_unseekableFacts(make: type[Unseekable]) -> None:
    """
    A stream that cannot seek (a pipe, or one that cannot tell where it
    is) is not scanned up front: its size and 8-bitness are unknown.
    """
    data = b"Subject: \xc3\xa9\r\n\r\n\x00"
    stream = make(data)
    source = toMessageSource(stream)
    assert source.facts() == MessageFacts(None, None, False, False, False)
    opened = source.open()
    assert opened.size is None
    assert readAll(opened) == data
    if isinstance(stream, io.BufferedReader):
        stream.close()


def test_unseekableReadOnce() -> None:
    """
    A stream that cannot seek, and was not kept, cannot be opened twice.
    """
    stream = Unseekable(b"data")
    source = toMessageSource(stream)
    assert source.open().read(-1) == b"data"
    with pytest.raises(InvalidArgumentError) as caught:
        source.open()
    assert caught.value.argument == "message"
    assert "cannot be read twice" in caught.value.reason


def test_unseekableKeptTooLate() -> None:
    """
    Keeping a stream after it was first read is too late: what was read is
    gone.
    """
    source = toMessageSource(Unseekable(b"data"))
    source.open().read(2)
    source.keepForReopen()
    with pytest.raises(InvalidArgumentError, match="cannot be read twice"):
        source.open()


def test_unseekableKept() -> None:
    """
    A kept stream is read once and spooled: every pass starts at the
    beginning, passes can interleave, and once the stream was read to its
    end a pass knows its size.
    """
    stream = Unseekable(b"0123456789")
    source = toMessageSource(stream)
    source.keepForReopen()
    first = source.open()
    assert first.size is None
    assert first.read(4) == b"0123"
    second = source.open()
    assert second.size is None
    assert second.read(6) == b"012345"
    assert first.read(0) == b""
    assert first.read(-1) == b"456789"
    assert first.read(3) == b""
    assert second.read(-1) == b"6789"
    third = source.open()
    assert third.size == 10
    assert readAll(third, 3) == b"0123456789"
    assert b"".join(iter(lambda: stream.read(1), b"")) == b""
    source.close()
    source.close()


def test_unseekableKeptLarge() -> None:
    """
    A kept stream larger than the spool's memory share goes on through a
    temporary file, unchanged.
    """
    data = bytes(range(256)) * (3 * 4096)
    source = toMessageSource(Unseekable(data))
    source.keepForReopen()
    assert readAll(source.open(), CHUNK_SIZE) == data
    assert readAll(source.open(), 100_000) == data
    assert source.open().size == len(data)
    source.close()


@pytest.mark.parametrize(
    ("data", "utf8Headers", "downgrade", "good"),
    [
        (b"A: b\r\n" + b"x" * 20 + b"\xc3\xa9\r\n\r\nbody", False, False, 26),
        (b"A: b\r\n" + b"x" * 20 + b"\xc3\xa9", False, False, 26),
        (b"A: b\r\n\r\n" + b"x" * 20 + b"\xc3\xa9", True, True, 28),
        (b"A: b\r\n\r\n" + b"x" * 20 + b"\x00", True, True, 28),
    ],
)
def test_unseekableFormCheckedWhileReading(
    data: bytes, utf8Headers: bool, downgrade: bool, good: int
) -> None:
    """
    A stream's form cannot be known up front, so it is checked while
    reading: UTF-8 in the header section when UTF-8 headers were refused,
    or 8-bit or NUL octets when 7 bits were asked for, fail the read of
    the block that holds them (C{good} is the offset of the first bad
    octet).
    """
    source = toMessageSource(Unseekable(data))
    opened = source.open(utf8Headers=utf8Headers, downgrade=downgrade)
    read = b""
    with pytest.raises(UnsupportedFeatureError):
        while chunk := opened.read(7):
            read += chunk
    assert len(read) == good - good % 7
    assert len(data) > good


@pytest.mark.parametrize(
    ("data", "downgrade"),
    [
        (b"A: b\r\n\r\nplain\r\n", True),
        (b"A: b\r\n\r\nb\xc3\xa9\xc3\xa9\xc3\xa9\r\n", False),
        (b"A: b\n\nb\xc3\xa9\xc3\xa9\xc3\xa9\r\n", False),
    ],
)
def test_unseekableFormFine(data: bytes, downgrade: bool) -> None:
    """
    A stream already in the form asked for reads through: 8-bit octets
    after the header section are fine when only UTF-8 headers are refused.
    """
    opened = toMessageSource(Unseekable(data)).open(
        utf8Headers=False, downgrade=downgrade
    )
    assert readAll(opened, 3) == data


def test_otherSourcesCloseQuietly() -> None:
    """
    Closing a source that keeps nothing does nothing, and a file given by
    the caller is not closed.
    """
    stream = io.BytesIO(b"x")
    for source in [toMessageSource(b"x"), toMessageSource(stream)]:
        source.keepForReopen()
        source.close()
    assert not stream.closed


def test_publicNames() -> None:
    """
    The module exports its sources, the pass, the factory and the block
    size, each documented.
    """
    assert sorted(_source.__all__) == [
        "CHUNK_SIZE",
        "MessageSource",
        "OpenedMessage",
        "toMessageSource",
    ]
    for name in ["MessageSource", "OpenedMessage", "toMessageSource"]:
        assert getattr(_source, name).__doc__
