"""
Message data encoders: message bytes in, what goes on the wire out.

L{DataEncoder} makes the stream sent after C{DATA}.  RFC 5321 section 4.5.2
ends the message data with a line that holds a single C{"."}, so every line
of the message that starts with C{"."} gets one more C{"."} in front (the
receiver removes it), and every line ends with CRLF.  L{DataEncoder} does
this as a streaming state machine so that the message can be given in chunks
of any size, split anywhere:

    - every line that starts with C{"."} gets one more C{"."}: the first line
      of the message and a line that starts exactly at a chunk boundary
      included;
    - CRLF stays CRLF; a bare LF and a bare CR (a CR not followed by LF)
      become CRLF.  A CR at the end of a chunk is held back until the next
      chunk (or L{DataEncoder.finish}) says whether an LF follows it, so a
      CRLF split across two chunks is never sent as CR CR LF;
    - the output always ends with CRLF C{"."} CRLF (just C{".\\r\\n"} for an
      empty message, since the stream starts at a line start), and no
      CRLF C{"."} CRLF can appear anywhere earlier: message content can never
      end the data early.

L{ChunkEncoder} makes the chunks sent with C{BDAT} (RFC 3030 CHUNKING).
Each chunk is announced with its exact octet count, so nothing is
dot-stuffed and there is no end-of-data line.  In text mode (the default)
line ends are made CRLF exactly as L{DataEncoder} does (with the same code)
and a non-empty message is made to end with CRLF; with C{binary=True}
(C{BODY=BINARYMIME}) every octet passes through untouched.

The line-end state is one flag::

    pendingCR    the last input byte was a CR that is not sent yet

and L{DataEncoder} adds one more::

    atLineStart  the output so far is empty or ends with CRLF

The work is done on whole chunks with C{bytes.count} and C{bytes.replace}
(no per-byte Python loop): input that is already CRLF-clean, the usual case,
costs three counts and one replace; LF-only input two counts and two replaces.

This module imports nothing from Twisted.
"""

from __future__ import annotations

__all__ = ["ChunkEncoder", "DataEncoder", "encodeData", "encodedSize"]

_CR = b"\r"
_LF = b"\n"
_CRLF = b"\r\n"
_DOT = b"."
_STUFFED_LINE_START = b"\r\n.."
_LINE_START_DOT = b"\r\n."
_END_OF_DATA = b".\r\n"


def _normalizeLineEnds(data: bytes) -> bytes:
    """
    Turn every line end in C{data} (CRLF, bare CR, bare LF) into CRLF.

    A CR at the very end of C{data} counts as bare; L{_LineEnds} holds
    such a CR back until it knows the next byte.

    @param data: message bytes.
    @return: C{data} with CRLF line ends only; C{data} itself when it has no
        bare CR and no bare LF.
    """
    crs = data.count(_CR)
    if not crs:
        return data.replace(_LF, _CRLF)
    lfs = data.count(_LF)
    if not lfs:
        return data.replace(_CR, _CRLF)
    if crs == lfs == data.count(_CRLF):
        return data
    return data.replace(_CRLF, _LF).replace(_CR, _LF).replace(_LF, _CRLF)


class _LineEnds:
    """
    The streaming line-end normalizer shared by L{DataEncoder} and
    L{ChunkEncoder}: CRLF, bare CR and bare LF all become CRLF, whatever
    the chunk boundaries.

    @ivar pendingCR: the last input byte was a CR, held back until the next
        byte shows whether it starts a CRLF.
    """

    def __init__(self) -> None:
        self.pendingCR = False

    def normalize(self, chunk: bytes) -> bytes:
        """
        Normalize the next chunk.

        @param chunk: the next message bytes.
        @return: the normalized bytes that are ready; a CR at the end of
            C{chunk} is held back (and a held-back CR from the previous
            chunk is put in front of C{chunk}).
        """
        if self.pendingCR:
            chunk = _CR + chunk
        self.pendingCR = chunk.endswith(_CR)
        if self.pendingCR:
            chunk = chunk[:-1]
        return _normalizeLineEnds(chunk)

    def flush(self) -> bytes:
        """
        End the input.

        @return: C{b"\\r\\n"} for a held-back CR (it was bare), else C{b""}.
        """
        if self.pendingCR:
            self.pendingCR = False
            return _CRLF
        return b""


def _checkChunk(chunk: object, finished: bool) -> bytes:
    """
    Refuse input an encoder cannot take.

    @param chunk: the next chunk.
    @param finished: the encoder was already finished.
    @return: C{chunk}.
    @raise TypeError: if C{chunk} is not C{bytes}.
    @raise ValueError: if C{finished}.
    """
    if finished:
        raise ValueError("encode() called after finish()")
    if not isinstance(chunk, bytes):
        raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
    return chunk


class DataEncoder:
    """
    Turns message bytes, given in chunks of any size, into the SMTP DATA
    stream: dot-stuffed, CRLF line ends only, ended by CRLF C{"."} CRLF.

    Feed every chunk to L{encode} and send what it returns, then send what
    L{finish} returns.  The concatenated output does not depend on how the
    message was split into chunks.
    """

    def __init__(self) -> None:
        self._lineEnds = _LineEnds()
        self._atLineStart = True
        self._bytesIn = 0
        self._bytesOut = 0
        self._finished = False

    @property
    def bytesIn(self) -> int:
        """
        The number of message octets consumed so far (including a CR held
        back until the next chunk).
        """
        return self._bytesIn

    @property
    def bytesOut(self) -> int:
        """
        The number of octets handed out so far by L{encode} and L{finish}
        (the end-of-data line included once finished).
        """
        return self._bytesOut

    @property
    def finished(self) -> bool:
        """
        C{True} once L{finish} was called; the encoder takes no more input.
        """
        return self._finished

    def encode(self, chunk: bytes) -> bytes:
        """
        Encode the next chunk of the message.

        @param chunk: the next message bytes, of any length (empty is fine).
        @return: the encoded bytes that are ready to send.  A CR at the end
            of C{chunk} is held back and sent by a later call (or by
            L{finish}) once it is known whether an LF follows it.
        @raise TypeError: if C{chunk} is not C{bytes}.
        @raise ValueError: if L{finish} was already called.
        """
        chunk = _checkChunk(chunk, self._finished)
        self._bytesIn += len(chunk)
        data = self._lineEnds.normalize(chunk)
        if not data:
            return b""
        data = data.replace(_LINE_START_DOT, _STUFFED_LINE_START)
        if self._atLineStart and data.startswith(_DOT):
            data = _DOT + data
        self._atLineStart = data.endswith(_CRLF)
        self._bytesOut += len(data)
        return data

    def finish(self) -> bytes:
        """
        End the message.

        @return: the last bytes of the DATA stream: a held-back CR as CRLF,
            a CRLF if the message did not end at a line start, then
            C{".\\r\\n"}.
        @raise ValueError: if L{finish} was already called.
        """
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        tail = self._lineEnds.flush()
        if not tail and not self._atLineStart:
            tail = _CRLF
        self._atLineStart = True
        self._bytesOut += len(tail) + len(_END_OF_DATA)
        return tail + _END_OF_DATA


class ChunkEncoder:
    """
    Turns message bytes, given in chunks of any size, into the octets sent
    with C{BDAT} (RFC 3030): never dot-stuffed, never ended by a dot line.

    In text mode (the default) CRLF, bare CR and bare LF all become CRLF,
    correctly across chunk boundaries, and a non-empty message that does not
    end with a line end gets a final CRLF.  With C{binary=True} (for
    C{BODY=BINARYMIME}) the octets pass through untouched.

    Feed every chunk to L{encode}, then call L{finish}; announce and send
    what they return with C{BDAT} (the output of L{finish} may be empty, as
    may the output of L{encode} for an empty chunk or a lone CR).  The
    concatenated output does not depend on how the message was split.

    @ivar binary: octets pass through untouched.
    """

    def __init__(self, *, binary: bool = False) -> None:
        """
        @param binary: pass octets through untouched (BINARYMIME) instead of
            normalizing line ends.
        """
        self.binary = binary
        self._lineEnds = _LineEnds()
        self._endsWithLineEnd = True
        self._bytesIn = 0
        self._bytesOut = 0
        self._finished = False

    @property
    def bytesIn(self) -> int:
        """
        The number of message octets consumed so far (including a CR held
        back until the next chunk).
        """
        return self._bytesIn

    @property
    def bytesOut(self) -> int:
        """
        The number of octets handed out so far by L{encode} and L{finish}:
        the sum of the C{BDAT} sizes to announce for them.
        """
        return self._bytesOut

    @property
    def finished(self) -> bool:
        """
        C{True} once L{finish} was called; the encoder takes no more input.
        """
        return self._finished

    def encode(self, chunk: bytes) -> bytes:
        """
        Encode the next chunk of the message.

        @param chunk: the next message bytes, of any length (empty is fine).
        @return: the encoded bytes that are ready to send.  In text mode a CR
            at the end of C{chunk} is held back and sent by a later call (or
            by L{finish}) once it is known whether an LF follows it.
        @raise TypeError: if C{chunk} is not C{bytes}.
        @raise ValueError: if L{finish} was already called.
        """
        chunk = _checkChunk(chunk, self._finished)
        self._bytesIn += len(chunk)
        data = chunk if self.binary else self._lineEnds.normalize(chunk)
        if data:
            self._endsWithLineEnd = data.endswith(_CRLF)
            self._bytesOut += len(data)
        return data

    def finish(self) -> bytes:
        """
        End the message.

        @return: the last octets: in text mode a held-back CR as CRLF, or a
            CRLF when the message does not end with a line end; otherwise
            C{b""}.
        @raise ValueError: if L{finish} was already called.
        """
        if self._finished:
            raise ValueError("finish() called twice")
        self._finished = True
        if self.binary:
            return b""
        tail = self._lineEnds.flush()
        if not tail and not self._endsWithLineEnd:
            tail = _CRLF
        self._bytesOut += len(tail)
        return tail


def encodeData(message: bytes) -> bytes:
    """
    Encode a whole message for C{DATA} in one call.

    @param message: the message bytes (headers, blank line, body).
    @return: the complete DATA stream, ending with CRLF C{"."} CRLF.
    @raise TypeError: if C{message} is not C{bytes}.
    """
    encoder = DataEncoder()
    return encoder.encode(message) + encoder.finish()


def encodedSize(data: bytes, *, binary: bool = False) -> int:
    """
    The number of octets L{ChunkEncoder} makes of a whole message, without
    encoding it: the message's size as RFC 1870 C{SIZE} counts it (every
    line end as CRLF), with no copy of the message made.

    @param data: the message bytes.
    @param binary: count as C{ChunkEncoder(binary=True)} does: C{len(data)}.
    @return: the encoded size in octets.
    @raise TypeError: if C{data} is not C{bytes}.
    """
    if not isinstance(data, bytes):
        raise TypeError(f"data must be bytes, not {type(data).__name__}")
    if binary or not data:
        return len(data)
    pairs = data.count(_CRLF)
    # Every bare CR and every bare LF grows by one octet.
    size = len(data) + (data.count(_CR) - pairs) + (data.count(_LF) - pairs)
    if not data.endswith((_CR, _LF)):
        size += len(_CRLF)
    return size
