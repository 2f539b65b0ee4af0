"""
The SMTP C{DATA} encoder: message bytes in, the dot-stuffed DATA stream out.

RFC 5321 section 4.5.2 ends the message data with a line that holds a single
C{"."}, so every line of the message that starts with C{"."} gets one more
C{"."} in front (the receiver removes it), and every line ends with CRLF.
L{DataEncoder} does this as a streaming state machine so that the message can
be given in chunks of any size, split anywhere:

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

The state is two flags::

    atLineStart  the output so far is empty or ends with CRLF
    pendingCR    the last input byte was a CR that is not sent yet

The work is done on whole chunks with C{bytes.count} and C{bytes.replace}
(no per-byte Python loop): input that is already CRLF-clean, the usual case,
costs three counts and one replace; LF-only input two counts and two replaces.

This module imports nothing from Twisted.
"""

from __future__ import annotations

__all__ = ["DataEncoder", "encodeData"]

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

    A CR at the very end of C{data} counts as bare; L{DataEncoder} holds
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


class DataEncoder:
    """
    Turns message bytes, given in chunks of any size, into the SMTP DATA
    stream: dot-stuffed, CRLF line ends only, ended by CRLF C{"."} CRLF.

    Feed every chunk to L{encode} and send what it returns, then send what
    L{finish} returns.  The concatenated output does not depend on how the
    message was split into chunks.
    """

    def __init__(self) -> None:
        self._atLineStart = True
        self._pendingCR = False
        self._bytesIn = 0
        self._finished = False

    @property
    def bytesIn(self) -> int:
        """
        The number of message octets consumed so far (including a CR held
        back until the next chunk).
        """
        return self._bytesIn

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
        if self._finished:
            raise ValueError("encode() called after finish()")
        if not isinstance(chunk, bytes):
            raise TypeError(f"chunk must be bytes, not {type(chunk).__name__}")
        self._bytesIn += len(chunk)
        if self._pendingCR:
            chunk = _CR + chunk
        self._pendingCR = chunk.endswith(_CR)
        if self._pendingCR:
            chunk = chunk[:-1]
        if not chunk:
            return b""
        data = _normalizeLineEnds(chunk).replace(_LINE_START_DOT, _STUFFED_LINE_START)
        if self._atLineStart and data.startswith(_DOT):
            data = _DOT + data
        self._atLineStart = data.endswith(_CRLF)
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
        if self._pendingCR or not self._atLineStart:
            self._pendingCR = False
            self._atLineStart = True
            return _CRLF + _END_OF_DATA
        return _END_OF_DATA


def encodeData(message: bytes) -> bytes:
    """
    Encode a whole message for C{DATA} in one call.

    @param message: the message bytes (headers, blank line, body).
    @return: the complete DATA stream, ending with CRLF C{"."} CRLF.
    @raise TypeError: if C{message} is not C{bytes}.
    """
    encoder = DataEncoder()
    return encoder.encode(message) + encoder.finish()
