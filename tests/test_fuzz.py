"""
Fuzz tests of the wire core and of the client's reading of replies: the reply
parser, the capability parser, the DATA and BDAT encoders, and
L{ESMTPClient} fed arbitrary bytes.

Unlike the properties next to each module (C{tests/wire/}), which check the
rules on well-formed or lightly perturbed inputs, these throw arbitrary
octets, arbitrary splits and large inputs at the code and check that it
never fails in an unplanned way and never contradicts a reference model.
All are marked C{fuzz}; the number of inputs comes from the Hypothesis
profile (bounded with C{HYPOTHESIS_PROFILE=ci}; C{bash .ci/fuzz} runs the
C{long} profile).
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.basic import LineReceiver
from twisted.python.failure import Failure

from mailclient._wire.capabilities import Capabilities
from mailclient._wire.dataenc import ChunkEncoder, DataEncoder, encodedSize
from mailclient._wire.replies import Reply, ReplyParser
from mailclient.errors import MailClientError, SMTPProtocolError
from mailclient.protocol import ESMTPClient
from tests.wire.test_dataenc import referenceDecode, referenceNormalize, splitAt

pytestmark = pytest.mark.fuzz

END = b"\r\n.\r\n"

# Octets that matter to the parsers and the encoders, mixed with arbitrary
# ones: the mixture finds boundary cases much sooner than uniform bytes.
REPLY_TOKENS = [
    b"2",
    b"25",
    b"250",
    b"354",
    b"421",
    b"550",
    b"699",
    b"1",
    b"-",
    b" ",
    b"\r",
    b"\n",
    b"\r\n",
    b"5.1.1 ",
    b"2.0.0",
    b"\xff",
    b"\x00",
    b"x",
]
DATA_TOKENS = [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", END, b"\x00", b"\xff"]


def tokenStreams(tokens: list[bytes], maxSize: int) -> st.SearchStrategy[bytes]:
    """
    Byte strings made of C{tokens}, or arbitrary octets, or both.
    """
    fromTokens = st.lists(st.sampled_from(tokens), max_size=maxSize).map(b"".join)
    return st.one_of(
        st.binary(max_size=maxSize * 2),
        fromTokens,
        st.lists(st.one_of(fromTokens, st.binary(max_size=20)), max_size=8).map(
            b"".join
        ),
    )


@st.composite
def split(draw: st.DrawFn, data: st.SearchStrategy[bytes]) -> tuple[bytes, list[bytes]]:
    """
    Some octets and one way of cutting them into chunks (some empty).
    """
    octets = draw(data)
    points = draw(st.lists(st.integers(0, len(octets)), max_size=16))
    return octets, splitAt(octets, points)


# --- the reply parser ------------------------------------------------------------


class ReplyReader(LineReceiver):
    """
    Read replies as L{ESMTPClient} does: lines end with LF (a CR before it
    is dropped), each goes to a L{ReplyParser}, and the first violation
    ends the reading.

    @ivar outcome: every reply read, then the violation's reason, if any.
    """

    delimiter = b"\n"
    MAX_LENGTH = ESMTPClient.MAX_LENGTH

    def __init__(self) -> None:
        """
        Start with nothing read.
        """
        self.parser = ReplyParser()
        self.outcome: list[Reply | str] = []
        self.failed = False

    def lineReceived(self, line: bytes) -> None:
        """
        Parse one line; note the reply it completes, or the violation.
        """
        if self.failed:
            return
        if line.endswith(b"\r"):
            line = line[:-1]
        try:
            reply = self.parser.feed(line)
        except SMTPProtocolError as e:
            self.failed = True
            self.outcome.append(e.reason)
            return
        if reply is not None:
            self.outcome.append(reply)

    def lineLengthExceeded(self, line: bytes) -> None:
        """
        A line too long is a violation too.
        """
        if not self.failed:
            self.failed = True
            self.outcome.append("line too long")


def readReplies(chunks: list[bytes]) -> list[Reply | str]:
    """
    What a L{ReplyReader} makes of C{chunks}, received one after another.
    """
    reader = ReplyReader()
    for chunk in chunks:
        reader.dataReceived(chunk)
    return reader.outcome


@given(split(tokenStreams(REPLY_TOKENS, 80)))
def test_replyStreamSplitDoesNotMatter(case: tuple[bytes, list[bytes]]) -> None:
    """
    Whatever octets arrive, cut however: reading them never raises, gives
    the same replies and the same violation as reading them in one piece,
    and every reply read is well-formed (a valid code; a positive code's
    enhanced status of its class).
    """
    octets, chunks = case
    outcome = readReplies(chunks)
    assert outcome == readReplies([octets])
    for item in outcome:
        if isinstance(item, Reply):
            assert 200 <= item.code <= 559 and (item.code // 10) % 10 <= 5
            assert item.lines
            status = item.enhancedStatus
            assert status is None or status.klass == item.code // 100


@given(st.lists(tokenStreams(REPLY_TOKENS, 30).map(lambda b: b.replace(b"\n", b""))))
def test_replyParserOnlyRaisesProtocolErrors(lines: list[bytes]) -> None:
    """
    Any sequence of lines: L{ReplyParser.feed} returns a reply, returns
    L{None} (more lines to come) or raises L{SMTPProtocolError}, and nothing
    else; after a violation the parser has forgotten the partial reply and
    reads the next reply afresh.
    """
    parser = ReplyParser(maxLines=5, maxBytes=200)
    for line in lines:
        try:
            reply = parser.feed(line)
        except SMTPProtocolError:
            assert not parser.pending
            fresh = parser.feed(b"250 fresh")
            assert fresh is not None and fresh.lines == ("fresh",)
            continue
        if reply is not None:
            assert not parser.pending
            assert len(reply.lines) <= 5


@given(
    code=st.integers(200, 559).filter(lambda c: (c // 10) % 10 <= 5),
    texts=st.lists(
        st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
        min_size=1,
        max_size=6,
    ),
    points=st.lists(st.integers(0, 400), max_size=10),
)
def test_validRepliesSurviveAnySplit(
    code: int, texts: list[bytes], points: list[int]
) -> None:
    """
    A well-formed multi-line reply with arbitrary 8-bit text, cut anywhere,
    reads as one reply with its code and every line.
    """
    lines = [b"%d-%s" % (code, t) for t in texts[:-1]] + [b"%d %s" % (code, texts[-1])]
    stream = b"".join(line + b"\r\n" for line in lines)
    [reply] = readReplies(splitAt(stream, [p for p in points if p <= len(stream)]))
    assert isinstance(reply, Reply)
    assert reply.code == code
    assert len(reply.lines) == len(texts)


# --- the client, fed arbitrary replies ---------------------------------------------


@given(split(tokenStreams(REPLY_TOKENS, 120)), st.booleans())
def test_clientSurvivesArbitraryReplies(
    case: tuple[bytes, list[bytes]], lose: bool
) -> None:
    """
    An L{ESMTPClient} with a message queued, fed arbitrary octets as the
    server's side of the session (cut anywhere), never raises from
    C{dataReceived}; once the connection is lost the send has fired exactly
    once, with a result or a L{MailClientError}.
    """
    _, chunks = case
    clock = Clock()
    client = ESMTPClient(clock=clock, tls="none", heloName="client.test")
    fired: list[object] = []
    client.send("a@example.test", ["b@example.test"], b"Hi.\r\n").addBoth(fired.append)
    client.makeConnection(StringTransport())
    client.dataReceived(b"220 mx.test ESMTP\r\n")
    for chunk in chunks:
        client.dataReceived(chunk)
    if lose:
        clock.advance(10000)
    client.connectionLost(Failure(ConnectionDone()))
    assert len(fired) == 1
    [outcome] = fired
    if isinstance(outcome, Failure):
        assert isinstance(outcome.value, MailClientError), outcome


# --- the capability parser -------------------------------------------------------

ehloTexts = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9-]{0,12}( [!-~]{0,10}){0,3}", fullmatch=True),
    st.sampled_from(
        [
            "AUTH=PLAIN,LOGIN",
            "AUTH",
            "SIZE",
            "SIZE x",
            "SIZE 99999999999999999999",
            "LIMITS RCPTMAX=5 MAILMAX=x",
            "LIMITS =",
            "  ",
            "-BAD",
            "8BITMIME",
        ]
    ),
)
_KEYWORD = re.compile(r"[A-Z0-9][A-Z0-9-]*")


@given(greeting=st.text(max_size=30), lines=st.lists(ehloTexts, max_size=12))
def test_capabilitiesFromArbitraryLines(greeting: str, lines: list[str]) -> None:
    """
    Any EHLO reply text is read without error; every keyword is upper-case
    and well-formed, every line whose first word is a keyword (known or
    not) is kept, and every derived property can be read.
    """
    caps = Capabilities.fromEHLOReply(Reply(250, (greeting, *lines), None))
    assert caps.serverName == (greeting.split() or [""])[0]
    for keyword in caps.keywords:
        assert _KEYWORD.fullmatch(keyword), keyword
    for line in lines:
        words = line.split()
        if words and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", words[0], re.ASCII):
            assert caps.has(words[0])
            assert set(words[1:]) <= set(caps.params(words[0]))
    for name in (
        "starttls",
        "pipelining",
        "eightBitMIME",
        "smtpUTF8",
        "dsn",
        "chunking",
        "binaryMIME",
        "enhancedStatusCodes",
        "requireTLS",
        "authMechanisms",
        "sizeAdvertised",
        "size",
        "limits",
    ):
        getattr(caps, name)


@given(split(tokenStreams([*REPLY_TOKENS, b"250-", b"AUTH ", b"SIZE "], 120)))
def test_capabilitiesFromArbitraryOctets(case: tuple[bytes, list[bytes]]) -> None:
    """
    Every positive reply read from arbitrary octets gives capabilities
    without error.
    """
    _, chunks = case
    for item in readReplies(chunks):
        if isinstance(item, Reply) and item.isPositive:
            caps = Capabilities.fromEHLOReply(item)
            assert all(k == k.upper() for k in caps.keywords)
            caps.size  # noqa: B018
            caps.limits  # noqa: B018


# --- the DATA and BDAT encoders ----------------------------------------------------


@given(split(tokenStreams(DATA_TOKENS, 400)))
def test_dataEncoderFuzz(case: tuple[bytes, list[bytes]]) -> None:
    """
    Any octets, cut anywhere: the DATA stream decodes (as a server reads
    it) to the message with its line ends made CRLF, the end-of-data line
    is there exactly once, at the end, and every other line that starts
    with a dot was stuffed.
    """
    message, chunks = case
    encoder = DataEncoder()
    output = b"".join(encoder.encode(chunk) for chunk in chunks) + encoder.finish()
    decoded, consumed = referenceDecode(output)
    assert consumed == len(output)
    assert decoded == referenceNormalize(message)
    if message:
        assert output.endswith(END) and output.find(END) == len(output) - len(END)
        body = output[: -len(b".\r\n")]
    else:
        assert output == b".\r\n"
        body = b""
    for line in body.split(b"\r\n"):
        assert not line.startswith(b".") or line.startswith(b"..")
    assert encoder.bytesIn == len(message)
    assert encoder.bytesOut == len(output)


@given(split(tokenStreams(DATA_TOKENS, 400)), st.booleans())
def test_chunkEncoderFuzz(case: tuple[bytes, list[bytes]], binary: bool) -> None:
    """
    Any octets, cut anywhere: the BDAT octets are the message with CRLF
    line ends (text) or the message itself (binary), every piece is ready to
    send (no CR that might pair with a later LF), and L{encodedSize}
    predicts the exact count that BDAT announces.
    """
    message, chunks = case
    encoder = ChunkEncoder(binary=binary)
    pieces = [encoder.encode(chunk) for chunk in chunks]
    output = b"".join(pieces) + encoder.finish()
    assert output == (message if binary else referenceNormalize(message))
    if not binary:
        assert not any(piece.endswith(b"\r") for piece in pieces)
    assert encodedSize(message, binary=binary) == len(output) == encoder.bytesOut
