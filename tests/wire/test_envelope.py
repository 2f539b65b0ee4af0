"""
Tests for L{mailclient._wire.envelope}: DSN values, the xtext encodings,
internationalized addresses, envelope planning, SIZE and LIMITS batches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire import envelope
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.commands import mailFrom, rcptTo
from mailclient._wire.envelope import (
    DSN,
    EnvelopePlan,
    MessageFacts,
    PlannedRecipient,
    Recipient,
    needsSMTPUTF8,
    orcptParameter,
    planEnvelope,
    recipientBatches,
    sizeParameter,
    toASCIIAddress,
    toRecipient,
    utf8AddrUnitext,
    utf8AddrXtext,
    xtext,
)
from mailclient.errors import (
    CommandArgumentError,
    InvalidArgumentError,
    MessageTooLargeError,
    RequireTLSError,
    UnsupportedFeatureError,
)


def caps(*keywords: str, **params: str) -> Capabilities:
    """
    Capabilities with C{keywords} advertised without parameters and each
    C{params} keyword with its space-separated parameters.
    """
    extensions: list[tuple[str, tuple[str, ...]]] = [(k, ()) for k in keywords]
    extensions += [(k, tuple(v.split())) for k, v in params.items()]
    return Capabilities("mx.example", tuple(extensions))


ASCII_7BIT = MessageFacts(size=100, eightBit=False)
ASCII_8BIT = MessageFacts(size=100, eightBit=True)
UNKNOWN = MessageFacts(size=None, eightBit=None)
MESSAGE_8BIT = MessageFacts(size=100, eightBit=True, canDowngrade=True)
UTF8_HEADERS = MessageFacts(size=100, eightBit=True, headersNeedUTF8=True)
UTF8_HEADERS_MESSAGE = MessageFacts(
    size=100, eightBit=True, headersNeedUTF8=True, canDowngrade=True
)
BINARY = MessageFacts(size=100, eightBit=True, binary=True)
BINARY_MESSAGE = MessageFacts(size=100, eightBit=True, binary=True, canDowngrade=True)

EVERYTHING = caps(
    "8BITMIME",
    "SMTPUTF8",
    "CHUNKING",
    "BINARYMIME",
    "DSN",
    "REQUIRETLS",
    "PIPELINING",
    SIZE="1000",
)


def xtextDecode(text: str) -> str:
    """
    A reference xtext decoder: C{"+HH"} is the character with that code,
    every other character (C{"!"} to C{"~"} but C{"+"} and C{"="}) is
    itself; anything else is an error.
    """
    out = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "+":
            digits = text[index + 1 : index + 3]
            assert re.fullmatch(r"[0-9A-F]{2}", digits), text
            out.append(chr(int(digits, 16)))
            index += 3
        else:
            assert "!" <= char <= "~" and char != "=", text
            out.append(char)
            index += 1
    return "".join(out)


def utf8AddrDecode(text: str) -> str:
    """
    A reference decoder for RFC 6533 C{utf-8-addr-xtext} and
    C{utf-8-addr-unitext}: C{"\\x{HEX}"} is that code point (upper-case
    hexadecimal, no leading zero, at least two digits); a literal C{"+"},
    C{"="}, C{"\\"} or space is an error.
    """

    def replace(match: re.Match[str]) -> str:
        digits = match.group(1)
        assert re.fullmatch(r"[1-9A-F][0-9A-F]+", digits), digits
        return chr(int(digits, 16))

    rest = re.sub(r"\\x\{([0-9A-Fa-f]*)\}", "", text)
    assert not set(rest) & set("+=\\ "), text
    return re.sub(r"\\x\{([0-9A-Fa-f]*)\}", replace, text)


# -- xtext ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ""),
        ("QQ314159", "QQ314159"),
        ("a+b=c", "a+2Bb+3Dc"),
        ("with space", "with+20space"),
        ("!~<>\\/", "!~<>\\/"),
        ("user@example.com", "user@example.com"),
        ("+", "+2B"),
    ],
)
def test_xtext(value: str, expected: str) -> None:
    """
    C{"+"}, C{"="} and the space become C{"+HH"} with upper-case hex; every
    other printable ASCII character is itself.
    """
    assert xtext(value) == expected
    assert xtextDecode(expected) == value


@pytest.mark.parametrize(
    ("value", "error", "reason"),
    [
        ("a\r\nb", CommandArgumentError, "U+000D"),
        ("a\x00", CommandArgumentError, "U+0000"),
        ("a\tb", CommandArgumentError, "U+0009"),
        ("a\x7f", CommandArgumentError, "U+007F"),
        ("caf\u00e9", InvalidArgumentError, "ASCII"),
        (b"abc", InvalidArgumentError, "must be a string"),
    ],
)
def test_xtextRefuses(value: object, error: type[Exception], reason: str) -> None:
    """
    Control characters are refused (never encoded), as is non-ASCII text,
    which xtext cannot carry.
    """
    with pytest.raises(error) as caught:
        xtext(value, argument="envelopeId")  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidArgumentError)
    assert caught.value.argument == "envelopeId"
    assert reason in caught.value.reason


@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E)))
def test_xtextRoundTrip(value: str) -> None:
    """
    Any printable ASCII text encodes to valid xtext that decodes back to it.
    """
    assert xtextDecode(xtext(value)) == value


# -- RFC 6533 utf-8-addr-xtext / unitext ---------------------------------------


@pytest.mark.parametrize(
    ("value", "asXtext", "asUnitext"),
    [
        ("user@example.com", "user@example.com", "user@example.com"),
        ("a+b=c@d", "a\\x{2B}b\\x{3D}c@d", "a\\x{2B}b\\x{3D}c@d"),
        ('"a\\b c"@d', '"a\\x{5C}b\\x{20}c"@d', '"a\\x{5C}b\\x{20}c"@d'),
        ("j\u00f6rg@d", "j\\x{F6}rg@d", "j\u00f6rg@d"),
        ("\u7528\u6237@\u4f8b", "\\x{7528}\\x{6237}@\\x{4F8B}", "\u7528\u6237@\u4f8b"),
        ("\U0001f600@d", "\\x{1F600}@d", "\U0001f600@d"),
        ("\u00a0@d", "\\x{A0}@d", "\u00a0@d"),
    ],
)
def test_utf8Addr(value: str, asXtext: str, asUnitext: str) -> None:
    """
    The xtext form escapes C{"+"}, C{"="}, C{"\\"}, the space and every
    non-ASCII character as C{"\\x{HEX}"} (upper-case, no leading zeros);
    the unitext form keeps non-ASCII characters as they are.
    """
    assert utf8AddrXtext(value) == asXtext
    assert utf8AddrUnitext(value) == asUnitext
    assert asXtext.isascii()
    assert xtextDecode(asXtext) == asXtext


@pytest.mark.parametrize(
    "value",
    [
        "a\r@b",
        "a\n@b",
        "a\x00@b",
        "a\x7f@b",
        "a\x85@b",
        "a\u2028@b",
        "a\u2029@b",
        "a\ud800@b",
        "\x9f",
    ],
)
def test_utf8AddrRefuses(value: str) -> None:
    """
    ASCII and C1 control characters, the Unicode line and paragraph
    separators and lone surrogates are refused by both forms.
    """
    for encode in [utf8AddrXtext, utf8AddrUnitext]:
        with pytest.raises(CommandArgumentError) as caught:
            encode(value, argument="originalRecipient")
        assert caught.value.argument == "originalRecipient"


def test_utf8AddrNeedsText() -> None:
    """
    Only text is encoded.
    """
    with pytest.raises(InvalidArgumentError, match="must be a string"):
        utf8AddrXtext(b"a@b")  # type: ignore[arg-type]


printableUnicode = st.text(
    alphabet=st.characters(exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=40,
)


@given(printableUnicode)
def test_utf8AddrRoundTrip(value: str) -> None:
    """
    Any text without controls encodes, in both forms, to text that decodes
    back to it; the xtext form is ASCII and valid xtext, the unitext form
    keeps every non-ASCII character.
    """
    asXtext = utf8AddrXtext(value)
    asUnitext = utf8AddrUnitext(value)
    assert asXtext.isascii()
    xtextDecode(asXtext)
    assert utf8AddrDecode(asXtext) == value
    assert utf8AddrDecode(asUnitext) == value
    assert [c for c in asUnitext if not c.isascii()] == [
        c for c in value if not c.isascii()
    ]


# -- ORCPT -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "smtputf8", "expected"),
    [
        ("a@b.example", False, "ORCPT=rfc822;a@b.example"),
        ("a@b.example", True, "ORCPT=rfc822;a@b.example"),
        ("a+tag@b.example", False, "ORCPT=rfc822;a+2Btag@b.example"),
        ("j\u00f6rg@b.example", False, "ORCPT=utf-8;j\\x{F6}rg@b.example"),
        ("j\u00f6rg@b.example", True, "ORCPT=utf-8;j\u00f6rg@b.example"),
        ("j\u00f6rg+x@b.example", True, "ORCPT=utf-8;j\u00f6rg\\x{2B}x@b.example"),
    ],
)
def test_orcptParameter(address: str, smtputf8: bool, expected: str) -> None:
    """
    An ASCII address is sent as C{rfc822} xtext; a non-ASCII one as
    C{utf-8}, in unitext under SMTPUTF8 and in the ASCII xtext form
    without it (RFC 6533).
    """
    assert orcptParameter(address, smtputf8=smtputf8) == expected
    line = rcptTo("c@d.example", [expected], utf8=smtputf8)
    assert line.endswith(expected.encode("utf-8") + b"\r\n")


def test_orcptParameterTooLong() -> None:
    """
    An original recipient whose encoded form is longer than 500 characters
    is refused (RFC 3461 section 4.2).
    """
    assert orcptParameter("a" * 491 + "@b", smtputf8=False).endswith("@b")
    with pytest.raises(InvalidArgumentError) as caught:
        orcptParameter("+" * 200 + "@b", smtputf8=False)
    assert caught.value.argument == "originalRecipient"
    assert "500" in caught.value.reason


@pytest.mark.parametrize("address", ["a\r\n@b", "\u00e9\x00@b", b"a@b"])
def test_orcptParameterRefuses(address: object) -> None:
    """
    Control characters and non-text are refused in an original recipient.
    """
    with pytest.raises(InvalidArgumentError):
        orcptParameter(address, smtputf8=True)  # type: ignore[arg-type]


# -- internationalized addresses ---------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("a@b.example", False),
        ("postmaster", False),
        ("", False),
        ("user@b\u00fccher.example", False),
        ("j\u00f6rg@example.com", True),
        ("j\u00f6rg", True),
        ('"a@\u00e9"@example.com', True),
        ("a@\u00e9@example.com", True),
    ],
)
def test_needsSMTPUTF8(address: str, expected: bool) -> None:
    """
    Only a non-ASCII local part (everything before the last C{"@"}) needs
    SMTPUTF8; a non-ASCII domain can be written as A-labels.
    """
    assert needsSMTPUTF8(address) is expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("a@b.example", "a@b.example"),
        ("A@B.Example", "A@B.Example"),
        ("a@under_score.example", "a@under_score.example"),
        ("postmaster", "postmaster"),
        ("", ""),
        ("a@[192.0.2.1]", "a@[192.0.2.1]"),
        ("user@b\u00fccher.example", "user@xn--bcher-kva.example"),
        ("user@B\u00dcCHER.Example", "user@xn--bcher-kva.example"),
        ("user@fa\u00df.de", "user@xn--fa-hia.de"),
        ("user@\u4f8b\u5b50.\u5e7f\u544a", "user@xn--fsqu00a.xn--4rr70v"),
        ("user@b\u00fccher\u3002example", "user@xn--bcher-kva.example"),
        ('"a@b"@b\u00fccher.example', '"a@b"@xn--bcher-kva.example'),
    ],
)
def test_toASCIIAddress(address: str, expected: str) -> None:
    """
    A non-ASCII domain becomes IDNA A-labels (UTS #46 mapping, not
    transitional: C{"ß"} is kept); ASCII addresses and address literals
    are returned exactly as given.
    """
    assert toASCIIAddress(address) == expected


@pytest.mark.parametrize(
    ("address", "error", "reason"),
    [
        ("j\u00f6rg@example.com", UnsupportedFeatureError, "needs SMTPUTF8"),
        ("j\u00f6rg", UnsupportedFeatureError, "needs SMTPUTF8"),
        ("a@\u2603.example", InvalidArgumentError, "'\u2603.example'"),
        ("a@-b\u00fccher.example", InvalidArgumentError, "not a valid"),
        ("a@b\u00fccher..example", InvalidArgumentError, "not a valid"),
        ("a@[\u00e9]", InvalidArgumentError, "address literal"),
    ],
)
def test_toASCIIAddressRefuses(
    address: str, error: type[InvalidArgumentError], reason: str
) -> None:
    """
    A non-ASCII local part needs SMTPUTF8; a domain that is not a valid
    internationalized domain name is refused, naming the domain.
    """
    with pytest.raises(error) as caught:
        toASCIIAddress(address, argument="toAddress")
    assert type(caught.value) is error
    assert caught.value.argument == "toAddress"
    assert caught.value.value == address
    assert reason in caught.value.reason


# -- DSN and Recipient -------------------------------------------------------------


def test_dsnDefaults() -> None:
    """
    A DSN asks for nothing by default.
    """
    assert DSN() == DSN(None, None, None)


@pytest.mark.parametrize(
    ("notify", "expected"),
    [
        (None, None),
        (["success"], ("SUCCESS",)),
        (("DELAY", "failure", "Success"), ("SUCCESS", "FAILURE", "DELAY")),
        (["FAILURE", "failure"], ("FAILURE",)),
        (["never"], ("NEVER",)),
        (["NEVER", "never"], ("NEVER",)),
        ({"DELAY"}, ("DELAY",)),
    ],
)
def test_notifyNormalised(notify: object, expected: object) -> None:
    """
    NOTIFY keywords are upper-cased, deduplicated and put in a fixed order,
    for the message default and for a recipient alike.
    """
    assert DSN(notify=notify).notify == expected  # type: ignore[arg-type]
    assert Recipient("a@b", notify=notify).notify == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("notify", "reason"),
    [
        ("SUCCESS", "not one string"),
        (b"SUCCESS", "not one string"),
        (5, "not one string"),
        ([], "must not be empty"),
        (["NEVER", "SUCCESS"], "NEVER cannot be combined"),
        (["SUCCESS", "SOMETIMES"], "unknown keyword 'SOMETIMES'"),
        ([1], "unknown keyword 1"),
        (["SUCCESS,FAILURE"], "unknown keyword"),
    ],
)
def test_notifyRefused(notify: object, reason: str) -> None:
    """
    A NOTIFY request must be a sequence of known keywords, not empty, with
    NEVER alone.
    """
    for make in [
        lambda: DSN(notify=notify),  # type: ignore[arg-type]
        lambda: Recipient("a@b", notify=notify),  # type: ignore[arg-type]
    ]:
        with pytest.raises(InvalidArgumentError) as caught:
            make()
        assert caught.value.argument == "notify"
        assert reason in caught.value.reason


@pytest.mark.parametrize(("ret", "expected"), [("full", "FULL"), ("HDRS", "HDRS")])
def test_retNormalised(ret: str, expected: str) -> None:
    """
    RET is upper-cased.
    """
    assert DSN(ret=ret).ret == expected


@pytest.mark.parametrize("ret", ["", "ALL", "headers", 1, b"FULL"])
def test_retRefused(ret: object) -> None:
    """
    RET must be FULL or HDRS.
    """
    with pytest.raises(InvalidArgumentError) as caught:
        DSN(ret=ret)  # type: ignore[arg-type]
    assert caught.value.argument == "ret"


@pytest.mark.parametrize("envelopeId", ["QQ314159", "x" * 100, "a b", "+" * 33 + "x"])
def test_envelopeIdAccepted(envelopeId: str) -> None:
    """
    An ENVID of printable ASCII and spaces is kept as given, up to 100
    characters in its xtext form.
    """
    assert DSN(envelopeId=envelopeId).envelopeId == envelopeId


@pytest.mark.parametrize(
    ("envelopeId", "error", "reason"),
    [
        ("x" * 101, InvalidArgumentError, "101 characters long as xtext"),
        ("+" * 34, InvalidArgumentError, "102 characters long as xtext"),
        ("", InvalidArgumentError, "must not be empty"),
        ("id\r\nRSET", CommandArgumentError, "control character"),
        ("id\x00", CommandArgumentError, "control character"),
        ("caf\u00e9", InvalidArgumentError, "ASCII"),
        (5, InvalidArgumentError, "must be a string"),
    ],
)
def test_envelopeIdRefused(
    envelopeId: object, error: type[InvalidArgumentError], reason: str
) -> None:
    """
    An ENVID that is too long as xtext, empty, not ASCII text, or holds a
    control character is refused when the DSN is made.
    """
    with pytest.raises(error) as caught:
        DSN(envelopeId=envelopeId)  # type: ignore[arg-type]
    assert caught.value.argument == "envelopeId"
    assert reason in caught.value.reason


def test_recipientAddress() -> None:
    """
    A recipient's address is checked when it is made (UTF-8 allowed, bytes
    decoded as UTF-8), and so is its original recipient.
    """
    assert Recipient("j\u00f6rg@b").address == "j\u00f6rg@b"
    assert Recipient("j\u00f6rg@b".encode()).address == "j\u00f6rg@b"
    assert Recipient("a@b", originalRecipient=b"o@b").originalRecipient == "o@b"
    with pytest.raises(CommandArgumentError) as caught:
        Recipient("a@b\r\nRSET")
    assert caught.value.argument == "toAddress"
    with pytest.raises(CommandArgumentError) as caught:
        Recipient("a@b", originalRecipient="o@b\u2028")
    assert caught.value.argument == "originalRecipient"
    with pytest.raises(CommandArgumentError):
        Recipient("")


def test_valuesAreFrozen() -> None:
    """
    DSN options and recipients are immutable, hashable values.
    """
    recipient = Recipient("a@b", notify=["success"])
    with pytest.raises(AttributeError):
        recipient.address = "c@d"  # type: ignore[misc]
    assert {recipient, Recipient("a@b", notify=("SUCCESS",))} == {recipient}
    assert hash(DSN(ret="full")) == hash(DSN(ret="FULL"))


def test_toRecipient() -> None:
    """
    A plain address becomes a recipient without options; a recipient is
    kept as it is.
    """
    recipient = Recipient("a@b", notify=["NEVER"])
    assert toRecipient(recipient) is recipient
    assert toRecipient("c@d") == Recipient("c@d")
    assert toRecipient(b"c@d") == Recipient("c@d")


def test_messageFactsDefaults() -> None:
    """
    Facts default to a message that is not binary, has ASCII headers and
    cannot be re-encoded.
    """
    facts = MessageFacts(10, False)
    assert (facts.binary, facts.headersNeedUTF8, facts.canDowngrade) == (
        False,
        False,
        False,
    )


# -- planEnvelope: addresses and SMTPUTF8 -----------------------------------------


def test_planPlain() -> None:
    """
    A 7-bit message between ASCII addresses uses no extension but CHUNKING
    (when offered and preferred) and SIZE (when advertised and the size is
    known).
    """
    plan = planEnvelope("a@b.example", ["c@d.example"], ASCII_7BIT, EVERYTHING)
    assert plan == EnvelopePlan(
        sender="a@b.example",
        recipients=(PlannedRecipient("c@d.example", "c@d.example", ()),),
        mailParams=(),
        smtputf8=False,
        body=None,
        chunking=True,
        downgrade=False,
        utf8Headers=False,
        extensions=frozenset({"CHUNKING", "SIZE"}),
    )


def test_planNoExtensions() -> None:
    """
    Against a server without extensions nothing is added, and addresses are
    kept exactly as given.
    """
    plan = planEnvelope("", [Recipient("Postmaster")], ASCII_7BIT, caps())
    assert plan.sender == ""
    assert plan.recipients == (PlannedRecipient("Postmaster", "Postmaster", ()),)
    assert plan.mailParams == ()
    assert plan.extensions == frozenset()
    assert not plan.chunking


def test_planNeedsRecipients() -> None:
    """
    A transaction needs at least one recipient.
    """
    with pytest.raises(InvalidArgumentError) as caught:
        planEnvelope("a@b", [], ASCII_7BIT, EVERYTHING)
    assert caught.value.argument == "toAddresses"


def test_planChecksAddresses() -> None:
    """
    Addresses are checked for safety, whoever made them.
    """
    with pytest.raises(CommandArgumentError) as caught:
        planEnvelope("a@b\r\nRSET", ["c@d"], ASCII_7BIT, EVERYTHING)
    assert caught.value.argument == "fromAddress"
    with pytest.raises(CommandArgumentError) as caught:
        planEnvelope("a@b", ["c@d\n"], ASCII_7BIT, EVERYTHING)
    assert caught.value.argument == "toAddress"


@pytest.mark.parametrize(
    ("sender", "recipient"),
    [
        ("j\u00f6rg@b.example", "c@d.example"),
        ("a@b.example", "j\u00f6rg@d.example"),
        ("a@b\u00fccher.example", "c@d.example"),
        ("a@b.example", "c@b\u00fccher.example"),
    ],
)
def test_planSMTPUTF8ForAddresses(sender: str, recipient: str) -> None:
    """
    A non-ASCII local part or domain uses SMTPUTF8 when the server offers
    it: the addresses are sent as given, and the headers may be UTF-8.
    """
    plan = planEnvelope(sender, [recipient], ASCII_7BIT, caps("SMTPUTF8", "8BITMIME"))
    assert plan.smtputf8
    assert plan.utf8Headers
    assert plan.sender == sender
    assert plan.recipients[0].wireAddress == recipient
    assert plan.mailParams == ("SMTPUTF8",)
    assert plan.extensions == frozenset({"SMTPUTF8"})
    mailFrom(plan.sender, plan.mailParams, utf8=plan.smtputf8)


def test_planSMTPUTF8ForHeaders() -> None:
    """
    UTF-8 headers use SMTPUTF8 when the server offers it, even with ASCII
    addresses, and the 8-bit message is announced as 8BITMIME.
    """
    plan = planEnvelope("a@b", ["c@d"], UTF8_HEADERS, caps("SMTPUTF8", "8BITMIME"))
    assert plan.smtputf8 and plan.utf8Headers
    assert plan.mailParams == ("BODY=8BITMIME", "SMTPUTF8")
    assert plan.extensions == frozenset({"SMTPUTF8", "8BITMIME"})


def test_planSMTPUTF8OnlyWhenNeeded() -> None:
    """
    An ASCII envelope with ASCII headers does not use SMTPUTF8, even when
    offered.
    """
    plan = planEnvelope("a@b", ["c@d"], ASCII_8BIT, EVERYTHING)
    assert not plan.smtputf8
    assert not plan.utf8Headers
    assert "SMTPUTF8" not in plan.mailParams


def test_planALabelsWithoutSMTPUTF8() -> None:
    """
    Without SMTPUTF8, non-ASCII domains are sent as A-labels; the result is
    keyed by the address as given.
    """
    plan = planEnvelope(
        "a@b\u00fccher.example",
        ["c@\u4f8b\u5b50.\u5e7f\u544a", "e@f.example"],
        ASCII_7BIT,
        caps("8BITMIME"),
    )
    assert not plan.smtputf8
    assert plan.sender == "a@xn--bcher-kva.example"
    assert plan.recipients == (
        PlannedRecipient("c@\u4f8b\u5b50.\u5e7f\u544a", "c@xn--fsqu00a.xn--4rr70v"),
        PlannedRecipient("e@f.example", "e@f.example"),
    )
    for planned in plan.recipients:
        rcptTo(planned.wireAddress, planned.params)


@pytest.mark.parametrize(
    ("sender", "recipient", "argument"),
    [
        ("j\u00f6rg@b.example", "c@d", "fromAddress"),
        ("a@b", "j\u00f6rg@d", "toAddress"),
    ],
)
def test_planNonASCIILocalPartWithoutSMTPUTF8(
    sender: str, recipient: str, argument: str
) -> None:
    """
    A non-ASCII local part cannot be sent without SMTPUTF8.
    """
    with pytest.raises(UnsupportedFeatureError) as caught:
        planEnvelope(sender, [recipient], ASCII_7BIT, caps("8BITMIME"))
    assert caught.value.argument == argument
    assert "server does not advertise SMTPUTF8" in caught.value.reason


def test_planInvalidDomainWithoutSMTPUTF8() -> None:
    """
    A non-ASCII domain that is not valid IDNA is refused when it has to be
    converted.
    """
    with pytest.raises(InvalidArgumentError) as caught:
        planEnvelope("a@b", ["c@\u2603.example"], ASCII_7BIT, caps())
    assert caught.value.argument == "toAddress"
    assert "\u2603.example" in caught.value.reason


def test_planUTF8HeadersWithoutSMTPUTF8() -> None:
    """
    Without SMTPUTF8, UTF-8 headers are re-encoded (RFC 2047) when the
    message can be, and refused when it is raw bytes.
    """
    plan = planEnvelope("a@b", ["c@d"], UTF8_HEADERS_MESSAGE, caps("8BITMIME"))
    assert not plan.smtputf8 and not plan.utf8Headers
    with pytest.raises(UnsupportedFeatureError) as caught:
        planEnvelope("a@b", ["c@d"], UTF8_HEADERS, caps("8BITMIME"))
    assert caught.value.argument == "message"
    assert "SMTPUTF8" in caught.value.reason


# -- planEnvelope: body ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "capabilities", "body", "downgrade"),
    [
        (ASCII_7BIT, caps("8BITMIME"), None, False),
        (ASCII_7BIT, caps(), None, False),
        (ASCII_8BIT, caps("8BITMIME"), "8BITMIME", False),
        (MESSAGE_8BIT, caps("8BITMIME"), "8BITMIME", False),
        (MESSAGE_8BIT, caps(), None, True),
        (UNKNOWN, caps("8BITMIME"), "8BITMIME", False),
        (UNKNOWN, caps(), None, False),
        (BINARY, caps("8BITMIME", "CHUNKING", "BINARYMIME"), "BINARYMIME", False),
        (BINARY_MESSAGE, caps("CHUNKING", "BINARYMIME"), "BINARYMIME", False),
        (BINARY_MESSAGE, caps("8BITMIME", "BINARYMIME"), None, True),
        (BINARY_MESSAGE, caps("8BITMIME", "CHUNKING"), None, True),
        (BINARY_MESSAGE, caps(), None, True),
    ],
)
def test_planBody(
    facts: MessageFacts,
    capabilities: Capabilities,
    body: str | None,
    downgrade: bool,
) -> None:
    """
    8-bit data is announced as 8BITMIME (also when 8-bitness is unknown and
    the server offers it); binary data needs BINARYMIME and CHUNKING; when
    the server lacks them a message that can be re-encoded is downgraded.
    """
    plan = planEnvelope("a@b", ["c@d"], facts, capabilities)
    assert plan.body == body
    assert plan.downgrade is downgrade
    assert plan.mailParams == ((f"BODY={body}",) if body else ())
    if body:
        assert body in plan.extensions


@pytest.mark.parametrize(
    ("facts", "capabilities", "what"),
    [
        (ASCII_8BIT, caps(), "8BITMIME"),
        (ASCII_8BIT, caps("CHUNKING", "BINARYMIME"), "8BITMIME"),
        (BINARY, caps("8BITMIME"), "BINARYMIME and CHUNKING"),
        (BINARY, caps("8BITMIME", "BINARYMIME"), "BINARYMIME and CHUNKING"),
        (BINARY, caps("8BITMIME", "CHUNKING"), "BINARYMIME and CHUNKING"),
    ],
)
def test_planBodyUnsupported(
    facts: MessageFacts, capabilities: Capabilities, what: str
) -> None:
    """
    Raw 8-bit or binary data that the server cannot carry, and that cannot
    be re-encoded, is refused before anything is sent.
    """
    with pytest.raises(UnsupportedFeatureError) as caught:
        planEnvelope("a@b", ["c@d"], facts, capabilities)
    assert caught.value.argument == "message"
    assert what in caught.value.reason


def test_planSMTPUTF8Implies8Bit() -> None:
    """
    Under SMTPUTF8 8-bit data is fine (RFC 6531): BODY=8BITMIME is sent when
    the server advertises 8BITMIME, and nothing is refused or downgraded
    when it does not.
    """
    plan = planEnvelope("j\u00f6rg@b", ["c@d"], ASCII_8BIT, caps("SMTPUTF8"))
    assert plan.smtputf8
    assert (plan.body, plan.downgrade) == (None, False)
    assert plan.mailParams == ("SMTPUTF8",)
    plan = planEnvelope(
        "j\u00f6rg@b", ["c@d"], ASCII_8BIT, caps("SMTPUTF8", "8BITMIME")
    )
    assert plan.body == "8BITMIME"


def test_planBinaryDowngradeKeepsUTF8Headers() -> None:
    """
    A binary message with UTF-8 headers, under SMTPUTF8 but without
    BINARYMIME, is re-encoded to 7 bits with its UTF-8 headers kept, which
    are still 8-bit: BODY=8BITMIME.
    """
    facts = MessageFacts(100, True, True, True, True)
    plan = planEnvelope("a@b", ["c@d"], facts, caps("SMTPUTF8", "8BITMIME"))
    assert (plan.smtputf8, plan.utf8Headers, plan.downgrade) == (True, True, True)
    assert plan.body == "8BITMIME"
    plan = planEnvelope("a@b", ["c@d"], facts, caps("SMTPUTF8"))
    assert (plan.body, plan.downgrade) == (None, True)


@pytest.mark.parametrize(
    ("facts", "capabilities", "preferChunking", "chunking"),
    [
        (ASCII_7BIT, caps("CHUNKING"), True, True),
        (ASCII_7BIT, caps("CHUNKING"), False, False),
        (ASCII_7BIT, caps(), True, False),
        (BINARY, caps("CHUNKING", "BINARYMIME"), False, True),
        (BINARY_MESSAGE, caps("CHUNKING"), False, False),
    ],
)
def test_planChunking(
    facts: MessageFacts,
    capabilities: Capabilities,
    preferChunking: bool,
    chunking: bool,
) -> None:
    """
    BDAT is used when the server offers CHUNKING and it is preferred, and
    always for BINARYMIME.
    """
    plan = planEnvelope(
        "a@b", ["c@d"], facts, capabilities, preferChunking=preferChunking
    )
    assert plan.chunking is chunking
    assert ("CHUNKING" in plan.extensions) is chunking


# -- planEnvelope: DSN ------------------------------------------------------------


def test_planDSN() -> None:
    """
    With DSN offered, RET and ENVID (as xtext) go on MAIL, and NOTIFY (the
    recipient's own, else the message default) and ORCPT on each RCPT.
    """
    dsn = DSN(ret="hdrs", envelopeId="id+1", notify=["failure", "delay"])
    recipients: list[Recipient | str] = [
        Recipient("a@x.example"),
        Recipient("b@x.example", notify=["never"], originalRecipient="old@x.example"),
        "c@x.example",
    ]
    plan = planEnvelope("s@x.example", recipients, ASCII_7BIT, caps("DSN"), dsn=dsn)
    assert plan.mailParams == ("RET=HDRS", "ENVID=id+2B1")
    assert [p.params for p in plan.recipients] == [
        ("NOTIFY=FAILURE,DELAY",),
        ("NOTIFY=NEVER", "ORCPT=rfc822;old@x.example"),
        ("NOTIFY=FAILURE,DELAY",),
    ]
    assert plan.extensions == frozenset({"DSN"})
    for planned in plan.recipients:
        rcptTo(planned.wireAddress, planned.params)


def test_planDSNRecipientOptionsOnly() -> None:
    """
    Recipient options alone use DSN, without any MAIL parameter.
    """
    plan = planEnvelope(
        "s@x", [Recipient("a@x", notify=["SUCCESS"])], ASCII_7BIT, caps("DSN")
    )
    assert plan.mailParams == ()
    assert plan.recipients[0].params == ("NOTIFY=SUCCESS",)
    assert "DSN" in plan.extensions


def test_planDSNNothingAsked() -> None:
    """
    A server offering DSN gets no DSN parameter when none was asked for,
    and DSN is not listed as used.
    """
    plan = planEnvelope("s@x", ["a@x"], ASCII_7BIT, caps("DSN"), dsn=DSN())
    assert plan.mailParams == ()
    assert plan.recipients[0].params == ()
    assert "DSN" not in plan.extensions


def test_planDSNNotOffered() -> None:
    """
    DSN options are not sent to a server that does not offer DSN, and DSN
    is not listed as used, so the caller can tell; a non-ASCII original
    recipient then does not call for SMTPUTF8 either.
    """
    dsn = DSN(ret="FULL", envelopeId="x", notify=["SUCCESS"])
    recipients = [Recipient("a@x", notify=["NEVER"], originalRecipient="\u00e9@x")]
    plan = planEnvelope("s@x", recipients, ASCII_7BIT, caps("SMTPUTF8"), dsn=dsn)
    assert plan.mailParams == ()
    assert plan.recipients[0].params == ()
    assert plan.extensions == frozenset()
    assert not plan.smtputf8


@pytest.mark.parametrize(
    ("capabilities", "smtputf8", "orcpt"),
    [
        (caps("DSN"), False, "ORCPT=utf-8;j\\x{F6}rg@x"),
        (caps("DSN", "SMTPUTF8"), True, "ORCPT=utf-8;j\u00f6rg@x"),
    ],
)
def test_planNonASCIIOriginalRecipient(
    capabilities: Capabilities, smtputf8: bool, orcpt: str
) -> None:
    """
    A non-ASCII original recipient uses SMTPUTF8 (and the unitext form)
    when the server offers it, and the ASCII xtext form otherwise.
    """
    recipients = [Recipient("a@x", originalRecipient="j\u00f6rg@x")]
    plan = planEnvelope("s@x", recipients, ASCII_7BIT, capabilities)
    assert plan.smtputf8 is smtputf8
    assert plan.recipients[0].params == (orcpt,)
    rcptTo(plan.recipients[0].wireAddress, plan.recipients[0].params, utf8=smtputf8)


# -- planEnvelope: REQUIRETLS ------------------------------------------------------


def test_planRequireTLS() -> None:
    """
    REQUIRETLS is sent on a TLS session with a server that offers it.
    """
    plan = planEnvelope(
        "a@b",
        ["c@d"],
        ASCII_7BIT,
        caps("REQUIRETLS"),
        requireTLS=True,
        tlsActive=True,
    )
    assert plan.mailParams == ("REQUIRETLS",)
    assert plan.extensions == frozenset({"REQUIRETLS"})


@pytest.mark.parametrize(
    ("capabilities", "tlsActive", "reason"),
    [
        (caps("REQUIRETLS"), False, "not protected by TLS"),
        (caps(), False, "not protected by TLS"),
        (caps("8BITMIME"), True, "does not advertise REQUIRETLS"),
    ],
)
def test_planRequireTLSRefused(
    capabilities: Capabilities, tlsActive: bool, reason: str
) -> None:
    """
    A message that requires REQUIRETLS fails, before anything else is
    checked, unless the session is TLS-protected and the server offers it.
    """
    with pytest.raises(RequireTLSError) as caught:
        planEnvelope(
            "j\u00f6rg@b",
            ["c@d"],
            BINARY,
            capabilities,
            requireTLS=True,
            tlsActive=tlsActive,
        )
    assert reason in caught.value.reason


def test_planRequireTLSNotAsked() -> None:
    """
    Without the requirement, no REQUIRETLS is sent, even on TLS to a server
    that offers it.
    """
    plan = planEnvelope("a@b", ["c@d"], ASCII_7BIT, EVERYTHING, tlsActive=True)
    assert "REQUIRETLS" not in plan.mailParams
    assert "REQUIRETLS" not in plan.extensions


def test_planEverything() -> None:
    """
    Every extension at once gives every parameter, in a fixed order, each
    line valid for its encoder.
    """
    plan = planEnvelope(
        "j\u00f6rg@b\u00fccher.example",
        [Recipient("\u00e9@x.example", originalRecipient="\u00e9+1@x.example")],
        BINARY,
        EVERYTHING,
        dsn=DSN(ret="FULL", envelopeId="e", notify=["SUCCESS"]),
        requireTLS=True,
        tlsActive=True,
    )
    assert plan.mailParams == (
        "BODY=BINARYMIME",
        "SMTPUTF8",
        "REQUIRETLS",
        "RET=FULL",
        "ENVID=e",
    )
    assert plan.recipients[0].params == (
        "NOTIFY=SUCCESS",
        "ORCPT=utf-8;\u00e9\\x{2B}1@x.example",
    )
    assert plan.extensions == frozenset(
        {"BINARYMIME", "SMTPUTF8", "REQUIRETLS", "DSN", "CHUNKING", "SIZE"}
    )
    mailFrom(plan.sender, plan.mailParams, utf8=True)
    rcptTo(plan.recipients[0].wireAddress, plan.recipients[0].params, utf8=True)


@pytest.mark.parametrize(
    ("facts", "capabilities", "listed"),
    [
        (ASCII_7BIT, caps("SIZE"), True),
        (ASCII_7BIT, caps(SIZE="100"), True),
        (UNKNOWN, caps("SIZE"), False),
        (ASCII_7BIT, caps(), False),
    ],
)
def test_planListsSize(
    facts: MessageFacts, capabilities: Capabilities, listed: bool
) -> None:
    """
    SIZE is listed as used when the server advertises it and the size is
    known (the parameter itself comes from L{sizeParameter}).
    """
    plan = planEnvelope("a@b", ["c@d"], facts, capabilities)
    assert ("SIZE" in plan.extensions) is listed
    assert not any(p.startswith("SIZE") for p in plan.mailParams)


# -- SIZE ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "capabilities", "expected"),
    [
        (100, caps("SIZE"), "SIZE=100"),
        (100, caps(SIZE="0"), "SIZE=100"),
        (100, caps(SIZE="100"), "SIZE=100"),
        (0, caps(SIZE="100"), "SIZE=0"),
        (100, caps(SIZE="junk"), "SIZE=100"),
        (None, caps(SIZE="100"), None),
        (100, caps(), None),
        (10**9, caps(), None),
    ],
)
def test_sizeParameter(
    size: int | None, capabilities: Capabilities, expected: str | None
) -> None:
    """
    SIZE is sent when advertised and the size is known; a limit of 0 (or an
    unreadable one) is no limit.
    """
    assert sizeParameter(size, capabilities) == expected


def test_sizeParameterTooLarge() -> None:
    """
    A message larger than the server's declared limit is refused before
    MAIL.
    """
    with pytest.raises(MessageTooLargeError) as caught:
        sizeParameter(101, caps(SIZE="100"))
    assert (caught.value.size, caught.value.limit) == (101, 100)


# -- LIMITS ----------------------------------------------------------------------


def addresses(batches: list[tuple[Recipient, ...]]) -> list[list[str]]:
    """
    The addresses of each batch.
    """
    return [[r.address for r in batch] for batch in batches]


@pytest.mark.parametrize(
    ("given", "limits", "expected"),
    [
        (["a@x", "b@x", "c@x"], {}, [["a@x", "b@x", "c@x"]]),
        ([], {}, []),
        ([], {"RCPTMAX": 2}, []),
        (["a@x", "b@x", "c@x"], {"RCPTMAX": 2}, [["a@x", "b@x"], ["c@x"]]),
        (
            ["a@x", "b@x", "c@x", "d@x"],
            {"RCPTMAX": 2},
            [["a@x", "b@x"], ["c@x", "d@x"]],
        ),
        (["a@x", "b@x"], {"RCPTMAX": 1}, [["a@x"], ["b@x"]]),
        (["a@x", "b@x"], {"RCPTMAX": 0}, [["a@x", "b@x"]]),
        (["a@x", "b@x"], {"rcptmax": 1}, [["a@x"], ["b@x"]]),
        (["a@x", "b@x"], {"MAILMAX": 1}, [["a@x", "b@x"]]),
        (
            ["a@x", "b@y", "c@x", "d@y", "e@z"],
            {"RCPTDOMAINMAX": 1},
            [["a@x", "c@x"], ["b@y", "d@y"], ["e@z"]],
        ),
        (
            ["a@x", "b@y", "c@X", "d@z"],
            {"RCPTDOMAINMAX": 2},
            [["a@x", "b@y", "c@X"], ["d@z"]],
        ),
        (
            ["a@x", "b@y", "c@x", "d@x", "e@y"],
            {"RCPTDOMAINMAX": 1, "RCPTMAX": 2},
            [["a@x", "c@x"], ["b@y", "e@y"], ["d@x"]],
        ),
        (
            ["a@x", "b@y", "c@y", "d@y", "e@x"],
            {"RCPTDOMAINMAX": 1, "RCPTMAX": 2},
            [["a@x", "e@x"], ["b@y", "c@y"], ["d@y"]],
        ),
        (
            ["postmaster", "Postmaster@x", "a@x"],
            {"RCPTDOMAINMAX": 1},
            [["postmaster"], ["Postmaster@x", "a@x"]],
        ),
    ],
)
def test_recipientBatches(
    given: list[str], limits: dict[str, int], expected: list[list[str]]
) -> None:
    """
    RCPTMAX caps the recipients and RCPTDOMAINMAX the distinct domains
    (case-insensitive) of each transaction; recipients keep their order
    within a batch and batches follow their first recipients.
    """
    assert addresses(recipientBatches(given, limits)) == expected


def test_recipientBatchesKeepRecipients() -> None:
    """
    The recipients in the batches are the ones given, options included.
    """
    recipient = Recipient("a@x", notify=["NEVER"])
    assert recipientBatches([recipient, "b@x"], {"RCPTMAX": 1}) == [
        (recipient,),
        (Recipient("b@x"),),
    ]


def test_recipientBatchesFromCapabilities() -> None:
    """
    The limits come straight from the capabilities.
    """
    capabilities = caps(LIMITS="RCPTMAX=2 RCPTDOMAINMAX=1 MAILMAX=5")
    assert addresses(
        recipientBatches(["a@x", "b@y", "c@x", "d@x"], capabilities.limits)
    ) == [["a@x", "c@x"], ["b@y"], ["d@x"]]


@given(
    given=st.lists(
        st.tuples(st.sampled_from("abcdef"), st.sampled_from(["x", "Y", "y", "z"])),
        max_size=30,
        unique=True,
    ),
    rcptMax=st.integers(0, 5),
    domainMax=st.integers(0, 3),
)
def test_recipientBatchesProperty(
    given: list[tuple[str, str]], rcptMax: int, domainMax: int
) -> None:
    """
    Every recipient is in exactly one batch, no batch breaks a limit, the
    recipients of a batch are in their given order, and no batch could
    have been merged into an earlier one.
    """
    wanted = [f"{local}@{domain}" for local, domain in given]
    limits: Mapping[str, int] = {"RCPTMAX": rcptMax, "RCPTDOMAINMAX": domainMax}
    batches = addresses(recipientBatches(wanted, limits))
    assert sorted(a for batch in batches for a in batch) == sorted(wanted)
    for batch in batches:
        assert batch
        assert batch == sorted(batch, key=wanted.index)
        if rcptMax:
            assert len(batch) <= rcptMax
        if domainMax:
            assert len({a.split("@")[1].lower() for a in batch}) <= domainMax
    firsts = [wanted.index(batch[0]) for batch in batches]
    assert firsts == sorted(firsts)
    if not rcptMax and not domainMax:
        assert len(batches) <= 1


def test_publicNames() -> None:
    """
    The module exports its values and functions, each documented.
    """
    assert sorted(envelope.__all__) == [
        "DSN",
        "EnvelopePlan",
        "MessageFacts",
        "PlannedRecipient",
        "Recipient",
        "needsSMTPUTF8",
        "orcptParameter",
        "planEnvelope",
        "recipientBatches",
        "sizeParameter",
        "toASCIIAddress",
        "toRecipient",
        "utf8AddrUnitext",
        "utf8AddrXtext",
        "xtext",
    ]
    for name in envelope.__all__:
        assert getattr(envelope, name).__doc__, name
