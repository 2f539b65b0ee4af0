"""
Tests for L{mailclient._wire.dataenc}: the streaming DATA and BDAT encoders.

The properties compare the encoders with references written here: a simple
per-line model of the receiving server (RFC 5321 section 4.5.2) and a
byte-by-byte line-end normalization.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailclient._wire import dataenc
from mailclient._wire.dataenc import ChunkEncoder, DataEncoder, encodeData, encodedSize

END = b"\r\n.\r\n"

# The encoders are what keeps content from ending DATA early: their
# properties run at least 500 inputs, and more under a longer profile
# (HYPOTHESIS_PROFILE=long or fuzz).
EXAMPLES = settings(max_examples=max(500, settings().max_examples))

Encoder = DataEncoder | ChunkEncoder


class NoEndOfDataError(Exception):
    """
    The reference decoder found no line that ends the data.
    """


def referenceDecode(stream: bytes) -> tuple[bytes, int]:
    """
    Read a DATA stream the way a server does: split it into CRLF-terminated
    lines, stop at the first line that is exactly C{"."}, and remove one
    leading C{"."} from every other line.

    @return: the message (every line followed by CRLF) and the number of
        octets of C{stream} read up to and including the end-of-data line.
    @raise NoEndOfDataError: if no line is exactly C{"."}.
    """
    lines: list[bytes] = []
    position = 0
    while True:
        end = stream.find(b"\r\n", position)
        if end == -1:
            raise NoEndOfDataError(stream[position:])
        line = stream[position:end]
        position = end + 2
        if line == b".":
            return b"".join(lines), position
        if line.startswith(b"."):
            line = line[1:]
        lines.append(line + b"\r\n")


def referenceNormalize(message: bytes) -> bytes:
    """
    Byte by byte, turn CRLF, bare CR and bare LF into CRLF, and end a
    non-empty message that does not end with a line end with CRLF.
    """
    out = bytearray()
    index = 0
    while index < len(message):
        byte = message[index : index + 1]
        if byte == b"\r":
            out += b"\r\n"
            index += 2 if message[index + 1 : index + 2] == b"\n" else 1
        elif byte == b"\n":
            out += b"\r\n"
            index += 1
        else:
            out += byte
            index += 1
    if out and not out.endswith(b"\r\n"):
        out += b"\r\n"
    return bytes(out)


def hasBareLineEndByte(data: bytes) -> bool:
    """
    C{True} if C{data} holds a CR not followed by LF or an LF not preceded
    by CR.
    """
    withoutPairs = data.replace(b"\r\n", b"")
    return b"\r" in withoutPairs or b"\n" in withoutPairs


def encodeChunks(chunks: Sequence[bytes]) -> tuple[list[bytes], bytes, DataEncoder]:
    """
    Encode C{chunks} with one L{DataEncoder}.

    @return: what each L{DataEncoder.encode} call returned, what
        L{DataEncoder.finish} returned, and the encoder.
    """
    encoder = DataEncoder()
    pieces = [encoder.encode(chunk) for chunk in chunks]
    return pieces, encoder.finish(), encoder


def chunkChunks(
    chunks: Sequence[bytes], *, binary: bool = False
) -> tuple[list[bytes], bytes, ChunkEncoder]:
    """
    Encode C{chunks} with one L{ChunkEncoder}.

    @return: what each L{ChunkEncoder.encode} call returned, what
        L{ChunkEncoder.finish} returned, and the encoder.
    """
    encoder = ChunkEncoder(binary=binary)
    pieces = [encoder.encode(chunk) for chunk in chunks]
    return pieces, encoder.finish(), encoder


def splitAt(data: bytes, points: Sequence[int]) -> list[bytes]:
    """
    Split C{data} at every offset in C{points} (in any order, repeats make
    empty chunks).
    """
    bounds = [0, *sorted(points), len(data)]
    return [data[start:end] for start, end in itertools.pairwise(bounds)]


# Message bytes rich in the characters that matter, plus arbitrary bytes.
TOKENS = [b"\r", b"\n", b"\r\n", b".", b"..", b"a", b" ", b"\r\n.\r\n", b"\x00"]
messages = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(TOKENS), max_size=60).map(b"".join),
)


@st.composite
def chunkedMessages(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    """
    A message and one way of splitting it into chunks.
    """
    message = draw(messages)
    points = draw(st.lists(st.integers(0, len(message)), max_size=12))
    return message, splitAt(message, points)


# --- one-shot tables -----------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", b".\r\n"),
        (b".", b"..\r\n.\r\n"),
        (b"..", b"...\r\n.\r\n"),
        (b".\r\n", b"..\r\n.\r\n"),
        (b".x\r\n", b"..x\r\n.\r\n"),
        (b"\n.\n", b"\r\n..\r\n.\r\n"),
        (b"\r.\r", b"\r\n..\r\n.\r\n"),
        (b"\r\n.\r", b"\r\n..\r\n.\r\n"),
        (b"\r\n.\r\n", b"\r\n..\r\n.\r\n"),
        (b"a\r\n.\r\nMAIL FROM:<x>\r\n", b"a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n"),
        (b"a\r\n..\r\n", b"a\r\n...\r\n.\r\n"),
        (b"a.b\r\n", b"a.b\r\n.\r\n"),
        (b" .\r\n", b" .\r\n.\r\n"),
        (b"a\r\n.", b"a\r\n..\r\n.\r\n"),
    ],
)
def test_dotStuffing(message: bytes, expected: bytes) -> None:
    """
    Every line that starts with a dot, the first line and a final
    unterminated line included, gets one more dot; dots elsewhere are left
    alone.
    """
    assert encodeData(message) == expected


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"a", b"a\r\n.\r\n"),
        (b"a\r", b"a\r\n.\r\n"),
        (b"a\n", b"a\r\n.\r\n"),
        (b"a\r\n", b"a\r\n.\r\n"),
        (b"\r", b"\r\n.\r\n"),
        (b"\n", b"\r\n.\r\n"),
        (b"\r\n", b"\r\n.\r\n"),
        (b"a\rb", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),
        (b"\r\r\n", b"\r\n\r\n.\r\n"),
        (b"\n\r", b"\r\n\r\n.\r\n"),
        (b"\r\n\n", b"\r\n\r\n.\r\n"),
        (b"\n\r\n\r", b"\r\n\r\n\r\n.\r\n"),
        (b"a\r\nb\nc\rd", b"a\r\nb\r\nc\r\nd\r\n.\r\n"),
    ],
)
def test_lineEnds(message: bytes, expected: bytes) -> None:
    """
    CRLF stays CRLF, a bare CR and a bare LF each become CRLF, and a message
    that does not end at a line start gets a CRLF before the final dot.
    """
    assert encodeData(message) == expected


@pytest.mark.parametrize(
    "message",
    [
        b"Subject: hi\r\n\r\nbody\r\n",
        b"a\r\n\r\n\r\nb\r\n",
        b"x" * 5000 + b"\r\n",
        b"\xff\xfe\x00binary-ish\r\n",
    ],
)
def test_crlfInputUnchanged(message: bytes) -> None:
    """
    A CRLF-clean message with no line starting with a dot is sent exactly as
    given, followed only by the end-of-data line.
    """
    assert encodeData(message) == message + b".\r\n"


# --- chunked tables ------------------------------------------------------


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\r", b"\nb"], b"a\r\nb\r\n.\r\n"),
        ([b"a\r", b"b"], b"a\r\nb\r\n.\r\n"),
        ([b"a\r", b".b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\n.b"], b"a\r\n..b\r\n.\r\n"),
        ([b"a\r", b"\r\n"], b"a\r\n\r\n.\r\n"),
        ([b"a\r"], b"a\r\n.\r\n"),
        ([b"\r", b"", b"\n", b"."], b"\r\n..\r\n.\r\n"),
        ([b"\r", b"\r", b"\n"], b"\r\n\r\n.\r\n"),
        ([b"a\n", b"."], b"a\r\n..\r\n.\r\n"),
        ([b"a\r\n", b".\r\n"], b"a\r\n..\r\n.\r\n"),
        ([b"", b".x"], b"..x\r\n.\r\n"),
        ([b".", b".", b"\r\n", b"."], b"...\r\n..\r\n.\r\n"),
        ([b"a", b".b"], b"a.b\r\n.\r\n"),
        ([b"a\r\n", b""], b"a\r\n.\r\n"),
        ([b"a", b""], b"a\r\n.\r\n"),
    ],
)
def test_chunkBoundaries(chunks: list[bytes], expected: bytes) -> None:
    """
    A line end or a dot split across chunks is encoded as if the message
    came in one piece: a CR at a chunk end followed by LF stays one CRLF
    (never CR CR LF), and a dot at the start of a chunk that starts a line
    is stuffed.
    """
    pieces, tail, _ = encodeChunks(chunks)
    assert b"".join(pieces) + tail == expected


def test_dotLineAtLargeChunkBoundary() -> None:
    """
    A dot line that starts exactly at the boundary after a full 16384-byte
    chunk cannot end the data early and inject a command.
    """
    first = b"x" * 16383 + b"\n"
    second = b".\r\nMAIL FROM:<x>\r\n"
    pieces, tail, _ = encodeChunks([first, second])
    assert pieces == [b"x" * 16383 + b"\r\n", b"..\r\nMAIL FROM:<x>\r\n"]
    assert tail == b".\r\n"
    output = b"".join(pieces) + tail
    assert output.find(END) == len(output) - len(END)


def test_crHeldBack() -> None:
    """
    A CR at the end of a chunk is not sent until the next chunk (or the end
    of the message) shows whether an LF follows it.
    """
    encoder = DataEncoder()
    assert encoder.encode(b"a\r") == b"a"
    assert encoder.encode(b"\n") == b"\r\n"
    assert encoder.encode(b"b\r") == b"b"
    assert encoder.encode(b"\r") == b"\r\n"
    assert encoder.encode(b"c") == b"\r\nc"
    assert encoder.encode(b"\r") == b""
    assert encoder.finish() == b"\r\n.\r\n"


# --- state and misuse ----------------------------------------------------


def test_bytesInAndFinished() -> None:
    """
    C{bytesIn} counts every message octet consumed, a held-back CR included,
    C{bytesOut} every octet handed out, and C{finished} turns true only once
    the message is ended.
    """
    encoder = DataEncoder()
    assert (encoder.bytesIn, encoder.bytesOut, encoder.finished) == (0, 0, False)
    encoder.encode(b"ab\r")
    assert (encoder.bytesIn, encoder.bytesOut) == (3, 2)
    encoder.encode(b"")
    encoder.encode(b"\n.")
    assert (encoder.bytesIn, encoder.bytesOut, encoder.finished) == (5, 6, False)
    encoder.finish()
    assert (encoder.bytesIn, encoder.bytesOut, encoder.finished) == (5, 11, True)


ENCODERS = [
    pytest.param(DataEncoder, id="DataEncoder"),
    pytest.param(ChunkEncoder, id="ChunkEncoder"),
    pytest.param(lambda: ChunkEncoder(binary=True), id="ChunkEncoder-binary"),
]


@pytest.mark.parametrize("makeEncoder", ENCODERS)
def test_encodeAfterFinish(makeEncoder: Callable[[], Encoder]) -> None:
    """
    Once the message is ended, more data is refused.
    """
    encoder = makeEncoder()
    encoder.finish()
    with pytest.raises(ValueError, match="after finish"):
        encoder.encode(b"more")


@pytest.mark.parametrize("makeEncoder", ENCODERS)
def test_finishTwice(makeEncoder: Callable[[], Encoder]) -> None:
    """
    The message can be ended only once, so the end-of-data line (or the
    final CRLF) is never sent twice.
    """
    encoder = makeEncoder()
    encoder.finish()
    with pytest.raises(ValueError, match="twice"):
        encoder.finish()


@pytest.mark.parametrize("makeEncoder", ENCODERS)
@pytest.mark.parametrize("chunk", ["text", bytearray(b"x"), 5])
def test_nonBytesRefused(makeEncoder: Callable[[], Encoder], chunk: object) -> None:
    """
    Only C{bytes} are accepted, and a refused chunk is not counted.
    """
    encoder = makeEncoder()
    with pytest.raises(TypeError, match="must be bytes"):
        encoder.encode(chunk)  # type: ignore[arg-type]
    assert encoder.bytesIn == 0
    assert encoder.bytesOut == 0


# --- the reference decoder itself ----------------------------------------


@pytest.mark.parametrize(
    ("stream", "message", "consumed"),
    [
        (b".\r\n", b"", 3),
        (b"..\r\na\r\n.\r\nrest", b".\r\na\r\n", 10),
        (b"a\r\n.\r\n.\r\n", b"a\r\n", 6),
    ],
)
def test_referenceDecoder(stream: bytes, message: bytes, consumed: int) -> None:
    """
    The reference decoder un-stuffs dots and stops at the first lone dot
    line, so the properties below can rely on it.
    """
    assert referenceDecode(stream) == (message, consumed)


@pytest.mark.parametrize("stream", [b"", b"a\r\n", b".", b"a\r\n.\n", b"a\r\n. \r\n"])
def test_referenceDecoderNeedsEnd(stream: bytes) -> None:
    """
    The reference decoder refuses a stream with no end-of-data line.
    """
    with pytest.raises(NoEndOfDataError):
        referenceDecode(stream)


@pytest.mark.parametrize(
    ("message", "expected"),
    [(b"", b""), (b"a", b"a\r\n"), (b"a\r\rb\n\r\n", b"a\r\n\r\nb\r\n\r\n")],
)
def test_referenceNormalize(message: bytes, expected: bytes) -> None:
    """
    The reference normalization maps every kind of line end to CRLF and
    terminates the last line.
    """
    assert referenceNormalize(message) == expected


# --- properties ----------------------------------------------------------


@EXAMPLES
@given(chunkedMessages())
def test_chunkingDoesNotMatter(case: tuple[bytes, list[bytes]]) -> None:
    """
    The encoded stream is the same however the message is split into
    chunks, no piece handed out ends with a CR that might still pair with a
    later LF, and every octet is counted.
    """
    message, chunks = case
    pieces, tail, encoder = encodeChunks(chunks)
    assert b"".join(pieces) + tail == encodeData(message)
    assert not any(piece.endswith(b"\r") for piece in pieces)
    assert encoder.bytesIn == len(message)


@EXAMPLES
@given(chunkedMessages())
def test_dataEndsOnlyAtTheEnd(case: tuple[bytes, list[bytes]]) -> None:
    """
    The stream always ends with the end-of-data line, and a receiver reads
    it as ending exactly there: nothing in the message ends the data early.
    """
    message, chunks = case
    pieces, tail, _ = encodeChunks(chunks)
    output = b"".join(pieces) + tail
    if message:
        assert output.endswith(END)
    else:
        assert output == b".\r\n"
    _, consumed = referenceDecode(output)
    assert consumed == len(output)


@EXAMPLES
@given(chunkedMessages())
def test_decodesToNormalizedMessage(case: tuple[bytes, list[bytes]]) -> None:
    """
    The receiver gets back the message with every line end turned into CRLF
    and the last line terminated: no content is lost, added or reordered.
    """
    message, chunks = case
    pieces, tail, _ = encodeChunks(chunks)
    decoded, _ = referenceDecode(b"".join(pieces) + tail)
    assert decoded == referenceNormalize(message)


@EXAMPLES
@given(chunkedMessages())
def test_noBareLineEnds(case: tuple[bytes, list[bytes]]) -> None:
    """
    The stream never holds a bare CR or a bare LF.
    """
    _, chunks = case
    pieces, tail, _ = encodeChunks(chunks)
    assert not hasBareLineEndByte(b"".join(pieces) + tail)


@given(
    st.lists(
        st.binary().filter(lambda b: b"\r" not in b and b"\n" not in b),
        max_size=8,
    )
)
def test_cleanInputPassesThrough(lines: list[bytes]) -> None:
    """
    CRLF-terminated lines come out byte for byte, with only a dot added in
    front of those that start with a dot.
    """
    message = b"".join(line + b"\r\n" for line in lines)
    expected = b"".join(
        (b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines
    )
    assert encodeData(message) == expected + b".\r\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [(b"", False), (b"a\r\nb", False), (b"\r", True), (b"\n", True), (b"\r\r\n", True)],
)
def test_bareLineEndDetector(data: bytes, expected: bool) -> None:
    """
    The bare-line-end check used by the properties finds a lone CR or LF and
    accepts CRLF pairs.
    """
    assert hasBareLineEndByte(data) is expected


# --- ChunkEncoder (BDAT) -------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (b"", b""),
        (b"a", b"a\r\n"),
        (b"a\r\n", b"a\r\n"),
        (b"a\r", b"a\r\n"),
        (b"a\n", b"a\r\n"),
        (b"\r", b"\r\n"),
        (b"\n", b"\r\n"),
        (b"a\rb\nc\r\nd", b"a\r\nb\r\nc\r\nd\r\n"),
        (b"\r\r\n\n\r", b"\r\n\r\n\r\n\r\n"),
        (b".", b".\r\n"),
        (b"a\r\n.\r\n", b"a\r\n.\r\n"),
        (b"a\r\n.\r\nMAIL FROM:<x>\r\n", b"a\r\n.\r\nMAIL FROM:<x>\r\n"),
        (b"\x00\xff\r\n", b"\x00\xff\r\n"),
    ],
)
def test_chunkEncoderText(message: bytes, expected: bytes) -> None:
    """
    In text mode every line end becomes CRLF and a non-empty message ends
    with CRLF; nothing is dot-stuffed and no end-of-data line is added
    (BDAT counts octets, so a dot line ends nothing).
    """
    pieces, tail, encoder = chunkChunks([message])
    assert b"".join(pieces) + tail == expected
    assert encoder.bytesOut == len(expected)
    assert encodedSize(message) == len(expected)


@pytest.mark.parametrize(
    ("chunks", "expected"),
    [
        ([b"a\r", b"\nb"], b"a\r\nb\r\n"),
        ([b"a\r", b"b"], b"a\r\nb\r\n"),
        ([b"a\r", b"\r\n"], b"a\r\n\r\n"),
        ([b"a\r"], b"a\r\n"),
        ([b"a\r", b""], b"a\r\n"),
        ([b"\r", b"", b"\n", b"."], b"\r\n.\r\n"),
        ([b"a", b""], b"a\r\n"),
        ([b"a\r\n", b""], b"a\r\n"),
        ([b"", b""], b""),
    ],
)
def test_chunkEncoderBoundaries(chunks: list[bytes], expected: bytes) -> None:
    """
    A CR at the end of one chunk and an LF at the start of the next are one
    CRLF, never CR CR LF; the final CRLF depends on the message, not on how
    it was split.
    """
    pieces, tail, _ = chunkChunks(chunks)
    assert b"".join(pieces) + tail == expected


def test_chunkEncoderHoldsCR() -> None:
    """
    A CR at the end of a chunk is not handed out until the next chunk (or
    the end) shows whether an LF follows it, and the counters say so.
    """
    encoder = ChunkEncoder()
    assert encoder.encode(b"a\r") == b"a"
    assert (encoder.bytesIn, encoder.bytesOut) == (2, 1)
    assert encoder.encode(b"\n") == b"\r\n"
    assert (encoder.bytesIn, encoder.bytesOut) == (3, 3)
    assert encoder.encode(b"b\r") == b"b"
    assert encoder.finish() == b"\r\n"
    assert (encoder.bytesIn, encoder.bytesOut, encoder.finished) == (5, 6, True)


@pytest.mark.parametrize(
    "chunks",
    [[], [b""], [b"a\rb\n"], [b"\x00\r", b"\n\xff"], [b"no end", b"\r"], [b"."]],
)
def test_chunkEncoderBinary(chunks: list[bytes]) -> None:
    """
    With C{binary=True} (BINARYMIME) every octet passes through untouched,
    at once: nothing held back, nothing added at the end.
    """
    pieces, tail, encoder = chunkChunks(chunks, binary=True)
    assert pieces == chunks
    assert tail == b""
    message = b"".join(chunks)
    assert encoder.binary
    assert encoder.bytesIn == encoder.bytesOut == len(message)
    assert encodedSize(message, binary=True) == len(message)


def test_chunkEncoderDefaultIsText() -> None:
    """
    The encoder is in text mode unless told otherwise.
    """
    assert ChunkEncoder().binary is False


@pytest.mark.parametrize("data", ["text", bytearray(b"x"), None])
def test_encodedSizeNeedsBytes(data: object) -> None:
    """
    L{encodedSize} measures bytes only.
    """
    with pytest.raises(TypeError, match="must be bytes"):
        encodedSize(data)  # type: ignore[arg-type]


def test_sharedLineEnds() -> None:
    """
    Both encoders normalize line ends with the same code, so a message
    without dots gets the same body either way.
    """
    message = b"a\rb\nc\r\n\r\rd"
    pieces, tail, _ = chunkChunks([message[:3], message[3:]])
    assert encodeData(message) == b"".join(pieces) + tail + b".\r\n"


def test_publicNames() -> None:
    """
    The module exports exactly its encoders and helpers.
    """
    assert sorted(dataenc.__all__) == [
        "ChunkEncoder",
        "DataEncoder",
        "encodeData",
        "encodedSize",
    ]


@EXAMPLES
@given(chunkedMessages())
def test_chunkEncoderMatchesReference(case: tuple[bytes, list[bytes]]) -> None:
    """
    However the message is split, the BDAT octets are exactly the reference
    normalization of the whole message (CRLF line ends, last line
    terminated), no piece ends with a CR that might pair with a later LF,
    the counters are exact, and L{encodedSize} predicts the size.
    """
    message, chunks = case
    pieces, tail, encoder = chunkChunks(chunks)
    output = b"".join(pieces) + tail
    assert output == referenceNormalize(message)
    assert not any(piece.endswith(b"\r") for piece in pieces)
    assert not hasBareLineEndByte(output)
    assert encoder.bytesIn == len(message)
    assert encoder.bytesOut == len(output)
    assert encodedSize(message) == len(output)


@given(chunkedMessages())
def test_chunkEncoderBinaryProperty(case: tuple[bytes, list[bytes]]) -> None:
    """
    In binary mode the output is the message, byte for byte, however split.
    """
    message, chunks = case
    pieces, tail, encoder = chunkChunks(chunks, binary=True)
    assert b"".join(pieces) + tail == message
    assert encoder.bytesOut == len(message)


@given(chunkedMessages())
def test_dataEncoderBytesOut(case: tuple[bytes, list[bytes]]) -> None:
    """
    The DATA encoder's C{bytesOut} is the length of everything it handed
    out, the end-of-data line included.
    """
    _, chunks = case
    pieces, tail, encoder = encodeChunks(chunks)
    assert encoder.bytesOut == len(b"".join(pieces) + tail)
