"""
Tests for L{mailclient._wire.replies}.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire.replies import EnhancedStatus, Reply, ReplyParser
from mailclient.errors import InvalidArgumentError, SMTPProtocolError


def feedAll(parser: ReplyParser, lines: list[bytes]) -> list[Reply]:
    """
    Feed every line to C{parser} and collect the replies it completes.
    """
    replies = []
    for line in lines:
        reply = parser.feed(line)
        if reply is not None:
            replies.append(reply)
    return replies


def parseOne(*lines: bytes) -> Reply:
    """
    Parse C{lines}, which must form exactly one reply, ending on the last.
    """
    parser = ReplyParser()
    for line in lines[:-1]:
        assert parser.feed(line) is None
        assert parser.pending
    reply = parser.feed(lines[-1])
    assert reply is not None
    assert not parser.pending
    return reply


# EnhancedStatus


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2.0.0", (2, 0, 0)),
        ("4.7.0", (4, 7, 0)),
        ("5.1.1", (5, 1, 1)),
        ("5.999.999", (5, 999, 999)),
        ("5.01.001", (5, 1, 1)),
        ("4.4.12", (4, 4, 12)),
    ],
)
def test_enhancedStatusParses(text: str, expected: tuple[int, int, int]) -> None:
    """
    A well-formed RFC 3463 code parses to its class, subject and detail.
    """
    assert EnhancedStatus.parse(text) == EnhancedStatus(*expected)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.0.0",
        "3.0.0",
        "6.0.0",
        "0.0.0",
        "25.0.0",
        "5.1",
        "5.1.",
        "5..1",
        ".1.1",
        "5.1.1.1",
        "5.1000.1",
        "5.1.1000",
        "5.a.1",
        "x.1.1",
        "5.1.1x",
        " 5.1.1",
        "5.1.1 ",
        "5.1.1\n",
        "5.1.1 Ok",
        "5.\u0661.1",  # an Arabic-Indic digit is not an ASCII digit
        "5-1-1",
    ],
)
def test_enhancedStatusRejectsMalformed(text: str) -> None:
    """
    Anything other than exactly one well-formed code is not an enhanced
    status code.
    """
    assert EnhancedStatus.parse(text) is None


@pytest.mark.parametrize(
    ("status", "text"),
    [
        (EnhancedStatus(5, 1, 1), "5.1.1"),
        (EnhancedStatus(2, 0, 0), "2.0.0"),
        (EnhancedStatus(4, 999, 12), "4.999.12"),
    ],
)
def test_enhancedStatusStr(status: EnhancedStatus, text: str) -> None:
    """
    An enhanced status code shows in its dotted form.
    """
    assert str(status) == text


@pytest.mark.parametrize(
    "fields", [(3, 0, 0), (1, 0, 0), (5, 1000, 0), (5, 0, 1000), (5, -1, 0)]
)
def test_enhancedStatusRefusesImpossibleValues(
    fields: tuple[int, int, int],
) -> None:
    """
    An enhanced status code cannot be built with a class other than 2, 4 or
    5, or a subject or detail outside 0-999.
    """
    with pytest.raises(ValueError):
        EnhancedStatus(*fields)


def test_enhancedStatusIsFrozen() -> None:
    """
    Enhanced status codes are immutable and hashable values.
    """
    status = EnhancedStatus(5, 1, 1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.klass = 4  # type: ignore[misc]
    assert hash(status) == hash(EnhancedStatus(5, 1, 1))


# Reply


@pytest.mark.parametrize(
    ("reply", "text"),
    [
        (Reply(250, ("Ok",)), "Ok"),
        (Reply(250, ("",)), ""),
        (Reply(250, ("a", "b", "")), "a\nb\n"),
        (Reply(250, ("2.0.0 Ok",), EnhancedStatus(2, 0, 0)), "Ok"),
        (Reply(250, ("2.0.0",), EnhancedStatus(2, 0, 0)), ""),
        (Reply(250, ("2.0.0  two",), EnhancedStatus(2, 0, 0)), " two"),
        (
            Reply(550, ("5.1.1 No such", "5.1.1 user here"), EnhancedStatus(5, 1, 1)),
            "No such\nuser here",
        ),
        (
            Reply(
                550, ("5.1.1 first", "second", "5.7.1 other"), EnhancedStatus(5, 1, 1)
            ),
            "first\nsecond\n5.7.1 other",
        ),
        # Without a parsed code nothing is removed.
        (Reply(250, ("5.1.1 mismatched",)), "5.1.1 mismatched"),
        # A code that is not a separate token is not removed.
        (Reply(250, ("2.0.0x",), EnhancedStatus(2, 0, 0)), "2.0.0x"),
    ],
)
def test_replyText(reply: Reply, text: str) -> None:
    """
    The reply text joins the lines with newlines and drops the reply's
    enhanced status code (and the one space after it) from each line that
    starts with it.
    """
    assert reply.text == text


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (Reply(250, ("Ok",)), None),
        (Reply(250, ("2.0.0 Ok",), EnhancedStatus(2, 0, 0)), "2.0.0"),
        (Reply(550, ("x",), EnhancedStatus(5, 7, 26)), "5.7.26"),
    ],
)
def test_replyEnhancedStatusText(reply: Reply, expected: str | None) -> None:
    """
    The enhanced status code is available as text, or L{None}.
    """
    assert reply.enhancedStatusText == expected


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        (200, "positive"),
        (250, "positive"),
        (299, "positive"),
        (334, "intermediate"),
        (354, "intermediate"),
        (421, "transient"),
        (450, "transient"),
        (535, "permanent"),
        (554, "permanent"),
        (199, None),
        (600, None),
    ],
)
def test_replyKind(code: int, kind: str | None) -> None:
    """
    Exactly one of the positive, intermediate, transient and permanent
    predicates holds for a 2xx-5xx reply, according to its first digit.
    """
    reply = Reply(code, ("x",))
    assert reply.isPositive == (kind == "positive")
    assert reply.isIntermediate == (kind == "intermediate")
    assert reply.isTransient == (kind == "transient")
    assert reply.isPermanent == (kind == "permanent")


@pytest.mark.parametrize(
    ("reply", "summary"),
    [
        (Reply(250, ("2.0.0 Ok",), EnhancedStatus(2, 0, 0)), "250 2.0.0 Ok"),
        (Reply(250, ("Ok",)), "250 Ok"),
        (Reply(250, ("",)), "250"),
        (Reply(250, ("2.0.0",), EnhancedStatus(2, 0, 0)), "250 2.0.0"),
        (
            Reply(550, ("5.1.1 No such", "5.1.1 user"), EnhancedStatus(5, 1, 1)),
            "550 5.1.1 No such / user",
        ),
        (
            Reply(250, ("host", "PIPELINING", "SIZE 10")),
            "250 host / PIPELINING / SIZE 10",
        ),
    ],
)
def test_replyStr(reply: Reply, summary: str) -> None:
    """
    A reply shows as one line: code, enhanced status code, then the text
    with its newlines shown as C{" / "}.
    """
    assert str(reply) == summary


def test_replyIsFrozen() -> None:
    """
    Replies are immutable and hashable values.
    """
    reply = Reply(250, ("Ok",))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        reply.code = 550  # type: ignore[misc]
    assert hash(reply) == hash(Reply(250, ("Ok",)))
    assert reply != Reply(250, ("Ok",), EnhancedStatus(2, 0, 0))


# ReplyParser: good replies


@pytest.mark.parametrize(
    ("lines", "code", "texts", "status"),
    [
        ([b"250 Ok"], 250, ("Ok",), None),
        ([b"250"], 250, ("",), None),
        ([b"250 "], 250, ("",), None),
        (
            [b"220 mail.example.com ESMTP Postfix"],
            220,
            ("mail.example.com ESMTP Postfix",),
            None,
        ),
        (
            [b"354 End data with <CR><LF>.<CR><LF>"],
            354,
            ("End data with <CR><LF>.<CR><LF>",),
            None,
        ),
        ([b"334 "], 334, ("",), None),
        ([b"334 VXNlcm5hbWU6"], 334, ("VXNlcm5hbWU6",), None),
        ([b"250-a", b"250 b"], 250, ("a", "b"), None),
        ([b"250-a", b"250-", b"250"], 250, ("a", "", ""), None),
        ([b"250-a", b"250-b", b"250 c"], 250, ("a", "b", "c"), None),
        ([b"250 Ok  trailing  "], 250, ("Ok  trailing  ",), None),
        ([b"250  leading"], 250, (" leading",), None),
        ([b"250 a-b c"], 250, ("a-b c",), None),
        ([b"250 tab\tinside"], 250, ("tab\tinside",), None),
        # 8-bit text is decoded as UTF-8, invalid bytes replaced.
        ("250 caf\u00e9".encode(), 250, ("caf\u00e9",), None),
        ([b"250 caf\xe9"], 250, ("caf\ufffd",), None),
        # Enhanced status codes, aiosmtpd style and Postfix style.
        ([b"250 2.0.0 OK"], 250, ("2.0.0 OK",), EnhancedStatus(2, 0, 0)),
        ([b"250 2.1.5 Ok"], 250, ("2.1.5 Ok",), EnhancedStatus(2, 1, 5)),
        ([b"550 5.1.1"], 550, ("5.1.1",), EnhancedStatus(5, 1, 1)),
        (
            [b"550-5.1.1 The email account", b"550 5.1.1 does not exist"],
            550,
            ("5.1.1 The email account", "5.1.1 does not exist"),
            EnhancedStatus(5, 1, 1),
        ),
        ([b"451 4.3.0 Try later"], 451, ("4.3.0 Try later",), EnhancedStatus(4, 3, 0)),
        (
            [b"554 5.7.1 <x>: Relay denied"],
            554,
            ("5.7.1 <x>: Relay denied",),
            EnhancedStatus(5, 7, 1),
        ),
        # The code is parsed from the first line only.
        (
            [b"550-No code here", b"550 5.1.1 late"],
            550,
            ("No code here", "5.1.1 late"),
            None,
        ),
        # Class mismatch: not an enhanced status code for this reply.
        ([b"250 5.1.1 odd"], 250, ("5.1.1 odd",), None),
        ([b"550 2.0.0 odd"], 550, ("2.0.0 odd",), None),
        ([b"354 2.0.0 go ahead"], 354, ("2.0.0 go ahead",), None),
        # Malformed codes are left alone.
        ([b"550 5.1.1\tNo"], 550, ("5.1.1\tNo",), None),
        ([b"550 5.1.1: No"], 550, ("5.1.1: No",), None),
        ([b"550 5.1 No"], 550, ("5.1 No",), None),
        ([b"550  5.1.1 No"], 550, (" 5.1.1 No",), None),
    ],
)
def test_parseReply(
    lines: list[bytes] | bytes,
    code: int,
    texts: tuple[str, ...],
    status: EnhancedStatus | None,
) -> None:
    """
    Well-formed single- and multi-line replies parse to their code, the
    text of each line and the enhanced status code of their first line,
    when it is well-formed and of the reply's class.
    """
    if isinstance(lines, bytes):
        lines = [lines]
    reply = parseOne(*lines)
    assert reply == Reply(code, texts, status)


def test_parseSuccessiveReplies() -> None:
    """
    One parser parses reply after reply on the same connection.
    """
    parser = ReplyParser()
    replies = feedAll(
        parser,
        [b"220 hi", b"250-host", b"250 PIPELINING", b"250 2.1.0 Ok", b"354 go"],
    )
    assert replies == [
        Reply(220, ("hi",)),
        Reply(250, ("host", "PIPELINING")),
        Reply(250, ("2.1.0 Ok",), EnhancedStatus(2, 1, 0)),
        Reply(354, ("go",)),
    ]


def test_pending() -> None:
    """
    The parser is pending exactly while a multi-line reply is incomplete.
    """
    parser = ReplyParser()
    assert not parser.pending
    assert parser.feed(b"250-a") is None
    assert parser.pending
    assert parser.feed(b"250-b") is None
    assert parser.pending
    assert parser.feed(b"250 c") is not None
    assert not parser.pending


def test_reset() -> None:
    """
    Resetting forgets a partial reply: the next line starts a new reply,
    with its own code.
    """
    parser = ReplyParser()
    parser.feed(b"250-a")
    parser.reset()
    assert not parser.pending
    assert parser.feed(b"550 5.1.1 b") == Reply(
        550, ("5.1.1 b",), EnhancedStatus(5, 1, 1)
    )


# ReplyParser: protocol errors


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ([b""], "three-digit reply code"),
        ([b"2"], "three-digit reply code"),
        ([b"25"], "three-digit reply code"),
        ([b"abc"], "three-digit reply code"),
        ([b"25x Ok"], "three-digit reply code"),
        ([b"+OK"], "three-digit reply code"),
        ([b" 250 Ok"], "three-digit reply code"),
        ([b"\xd9\xa2\xd9\xa5\xd9\xa0 Ok"], "three-digit reply code"),
        ([b"100 Continue"], "100 is not a valid reply code"),
        ([b"199 x"], "199 is not a valid reply code"),
        ([b"600 x"], "600 is not a valid reply code"),
        ([b"999 x"], "999 is not a valid reply code"),
        ([b"060 x"], "060 is not a valid reply code"),
        ([b"260 x"], "260 is not a valid reply code"),
        ([b"590 x"], "590 is not a valid reply code"),
        ([b"250x"], "followed by '-', ' ' or end of line"),
        ([b"2500"], "followed by '-', ' ' or end of line"),
        ([b"250\tOk"], "followed by '-', ' ' or end of line"),
        ([b"250_Ok"], "followed by '-', ' ' or end of line"),
        ([b"250\rOk"], "followed by '-', ' ' or end of line"),
        ([b"250-a", b"251 b"], "differs from 250"),
        ([b"250-a", b"550-b"], "differs from 250"),
        ([b"250-a", b"250-b", b"354 c"], "differs from 250"),
        ([b"250-a", b"garbage"], "three-digit reply code"),
        ([b"250-a", b"250+b"], "followed by '-', ' ' or end of line"),
    ],
)
def test_protocolErrors(lines: list[bytes], reason: str) -> None:
    """
    A malformed line, a bad code, a bad separator or a change of code
    within a reply is a protocol error with a clear reason, after which the
    parser has forgotten the partial reply and parses the next one.
    """
    parser = ReplyParser()
    for line in lines[:-1]:
        assert parser.feed(line) is None
    with pytest.raises(SMTPProtocolError) as caught:
        parser.feed(lines[-1])
    assert reason in caught.value.reason
    assert repr(lines[-1]) in caught.value.reason
    assert not parser.pending
    assert parser.feed(b"221 Bye") == Reply(221, ("Bye",))


@pytest.mark.parametrize("maxLines", [1, 2, 5])
def test_maxLines(maxLines: int) -> None:
    """
    A reply may have up to C{maxLines} lines; one more is a protocol error.
    """
    exact = [b"250-x"] * (maxLines - 1) + [b"250 x"]
    assert len(feedAll(ReplyParser(maxLines=maxLines), exact)) == 1

    parser = ReplyParser(maxLines=maxLines)
    assert feedAll(parser, [b"250-x"] * maxLines) == []
    with pytest.raises(SMTPProtocolError, match=f"longer than {maxLines} lines"):
        parser.feed(b"250 x")
    assert not parser.pending


def test_maxLinesDefault() -> None:
    """
    By default a reply may have 1000 lines, not more.
    """
    parser = ReplyParser()
    assert feedAll(parser, [b"250-x"] * 999 + [b"250 x"]) != []
    feedAll(parser, [b"250-x"] * 1000)
    with pytest.raises(SMTPProtocolError, match="longer than 1000 lines"):
        parser.feed(b"250 x")


@pytest.mark.parametrize(
    ("maxBytes", "lines", "ok"),
    [
        # "250 Ok" is 6 bytes, 8 with its CRLF.
        (8, [b"250 Ok"], True),
        (7, [b"250 Ok"], False),
        (10, [b"250-a", b"250 b"], False),
        (14, [b"250-a", b"250 b"], True),
        (13, [b"250-a", b"250 b"], False),
        (5, [b"250"], True),
        (4, [b"250"], False),
        (1, [b"250"], False),
    ],
)
def test_maxBytes(maxBytes: int, lines: list[bytes], ok: bool) -> None:
    """
    A reply may have up to C{maxBytes} bytes, counting each line's CRLF;
    one more is a protocol error that forgets the partial reply.
    """
    parser = ReplyParser(maxBytes=maxBytes)
    if ok:
        assert len(feedAll(parser, lines)) == 1
        return
    with pytest.raises(SMTPProtocolError, match=f"longer than {maxBytes} bytes"):
        feedAll(parser, lines)
    assert not parser.pending


def test_maxBytesDefault() -> None:
    """
    By default a reply may have 65536 bytes, not more.
    """
    line = b"250-" + b"x" * 1020  # 1026 bytes with CRLF
    parser = ReplyParser()
    fits = [line] * 63 + [b"250 " + b"x" * (65536 - 63 * 1026 - 6)]
    assert len(feedAll(parser, fits)) == 1
    parser.feed(line)
    with pytest.raises(SMTPProtocolError, match="longer than 65536 bytes"):
        parser.feed(b"250 " + b"x" * 65536)


def test_longLineQuotedShort() -> None:
    """
    The error for a long malformed line quotes only its start.
    """
    with pytest.raises(SMTPProtocolError) as caught:
        ReplyParser().feed(b"x" * 1000)
    assert repr(b"x" * 80) + "..." in caught.value.reason
    assert "x" * 81 not in caught.value.reason


@pytest.mark.parametrize(
    ("kwargs", "argument"),
    [
        ({"maxLines": 0}, "maxLines"),
        ({"maxLines": -1}, "maxLines"),
        ({"maxBytes": 0}, "maxBytes"),
    ],
)
def test_badLimits(kwargs: dict[str, int], argument: str) -> None:
    """
    Limits below one are refused when the parser is made.
    """
    with pytest.raises(InvalidArgumentError) as caught:
        ReplyParser(**kwargs)
    assert caught.value.argument == argument


# Properties

lineTexts = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40
)
replyCodes = st.builds(
    lambda a, b, c: a * 100 + b * 10 + c,
    st.integers(2, 5),
    st.integers(0, 5),
    st.integers(0, 9),
)


@given(
    code=replyCodes,
    texts=st.lists(lineTexts, min_size=1, max_size=8),
    bareFinal=st.booleans(),
)
def test_roundTrip(code: int, texts: list[str], bareFinal: bool) -> None:
    """
    Any reply, rendered as lines and fed back, parses to the same code and
    line texts (a final line with no text may be sent as the bare code).
    """
    lines = [f"{code}-{t}".encode() for t in texts[:-1]]
    last = texts[-1]
    lines.append(
        f"{code}".encode() if bareFinal and not last else f"{code} {last}".encode()
    )
    parser = ReplyParser()
    replies = feedAll(parser, lines)
    assert len(replies) == 1
    assert replies[0].code == code
    assert replies[0].lines == tuple(texts)
    assert not parser.pending


@given(
    code=replyCodes,
    status=st.tuples(
        st.sampled_from([2, 4, 5]), st.integers(0, 999), st.integers(0, 999)
    ),
    rest=lineTexts,
)
def test_enhancedStatusProperty(
    code: int, status: tuple[int, int, int], rest: str
) -> None:
    """
    A well-formed enhanced status code at the start of a reply is parsed
    exactly when its class matches the reply code, and is then absent from
    the text.
    """
    enhanced = EnhancedStatus(*status)
    reply = ReplyParser().feed(f"{code} {enhanced} {rest}".encode())
    assert reply is not None
    if enhanced.klass == code // 100:
        assert reply.enhancedStatus == enhanced
        assert reply.text == rest
    else:
        assert reply.enhancedStatus is None
        assert reply.text == f"{enhanced} {rest}"


def test_parsedCodesCacheIsBounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Parsed enhanced codes are remembered only up to the cache's limit: a
    full cache still parses, and keeps nothing more.
    """
    from mailclient._wire import replies

    monkeypatch.setattr(replies, "_PARSED", {})
    monkeypatch.setattr(replies, "_PARSED_LIMIT", 1)
    assert EnhancedStatus.parse("2.0.0") == EnhancedStatus(2, 0, 0)
    assert EnhancedStatus.parse("5.1.1") == EnhancedStatus(5, 1, 1)
    assert list(replies._PARSED) == ["2.0.0"]
