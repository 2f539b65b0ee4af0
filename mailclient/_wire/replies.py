"""
SMTP replies: parsing server lines into immutable L{Reply} values.

A reply (RFC 5321 section 4.2) is one or more lines, each starting with the
same three-digit code followed by C{"-"} on every line but the last, and by
C{" "} (or nothing at all) on the last one::

    250-mail.example.com Hello
    250-PIPELINING
    250 SIZE 1048576

L{ReplyParser} is fed one line at a time (without its CRLF) and returns a
L{Reply} when the final line arrives.  Anything that is not a well-formed
reply line is an L{SMTPProtocolError}: it is never guessed at.

Enhanced status codes (RFC 3463, such as C{"5.1.1"}) are parsed from the
start of the first line's text whenever they are well-formed and their class
matches the reply code, whether or not the server advertised
C{ENHANCEDSTATUSCODES}: some servers (aiosmtpd, for one) send them without
advertising the extension.
"""

from __future__ import annotations

import functools
import re

import attrs

from mailclient.errors import InvalidArgumentError, SMTPProtocolError

__all__ = ["EnhancedStatus", "Reply", "ReplyParser"]

_ENHANCED_STATUS = re.compile(r"([245])\.([0-9]{1,3})\.([0-9]{1,3})", re.ASCII)

# How much of an offending line is quoted in an error.
_QUOTE_LIMIT = 80


@attrs.frozen
class EnhancedStatus:
    """
    An RFC 3463 enhanced mail system status code, such as C{5.1.1}.

    @ivar klass: the class: 2 (success), 4 (persistent transient failure) or
        5 (permanent failure).
    @ivar subject: the subject, 0 to 999.
    @ivar detail: the detail, 0 to 999.
    """

    klass: int = attrs.field(validator=attrs.validators.in_((2, 4, 5)))
    subject: int = attrs.field(validator=attrs.validators.in_(range(1000)))
    detail: int = attrs.field(validator=attrs.validators.in_(range(1000)))

    def __str__(self) -> str:
        """
        @return: the code in its dotted form, such as C{"5.1.1"}.
        """
        return f"{self.klass}.{self.subject}.{self.detail}"

    @classmethod
    def parse(cls, text: str) -> EnhancedStatus | None:
        """
        Parse an enhanced status code.

        The syntax is strict: the whole of C{text} must be the code, with a
        class of C{2}, C{4} or C{5} and a subject and detail of one to three
        ASCII digits each.

        @param text: the candidate token, such as C{"5.1.1"}.
        @return: the parsed code, or L{None} when C{text} is not exactly one
            well-formed code.
        """
        if text in _PARSED:
            return _PARSED[text]
        match = _ENHANCED_STATUS.fullmatch(text)
        if match is None:
            return None
        klass, subject, detail = match.groups()
        status = cls(int(klass), int(subject), int(detail))
        if len(_PARSED) < _PARSED_LIMIT:
            _PARSED[text] = status
        return status


# Servers repeat the same few codes: remember the parsed ones (bounded).
_PARSED: dict[str, EnhancedStatus] = {}
_PARSED_LIMIT = 512


def _splitStatus(line: str) -> tuple[EnhancedStatus | None, str]:
    """
    Split a leading enhanced status code off a line of reply text.

    @param line: one line of reply text.
    @return: the code (or L{None} when the line does not start with one
        followed by a space or the end of the line) and the rest of the line
        after the code and the one space that follows it.
    """
    token, _, rest = line.partition(" ")
    status = EnhancedStatus.parse(token)
    if status is None:
        return None, line
    return status, rest


@attrs.frozen
class Reply:
    """
    One complete SMTP reply.

    @ivar code: the three-digit reply code.
    @ivar lines: the text of each line, after C{"250-"} or C{"250 "}; a line
        may be empty.  Enhanced status codes are kept here as they were sent.
    @ivar enhancedStatus: the RFC 3463 code parsed from the start of the
        first line, or L{None}.
    """

    code: int
    lines: tuple[str, ...]
    enhancedStatus: EnhancedStatus | None = None

    @functools.cached_property
    def text(self) -> str:
        """
        The reply text: the lines joined with newlines, with the enhanced
        status code (and the one space after it) removed from the start of
        every line that starts with that same code.
        """
        if self.enhancedStatus is None:
            return "\n".join(self.lines)
        stripped = []
        for line in self.lines:
            status, rest = _splitStatus(line)
            stripped.append(rest if status == self.enhancedStatus else line)
        return "\n".join(stripped)

    @functools.cached_property
    def enhancedStatusText(self) -> str | None:
        """
        The enhanced status code as a string such as C{"5.1.1"}, or L{None}.
        """
        if self.enhancedStatus is None:
            return None
        return str(self.enhancedStatus)

    @property
    def isPositive(self) -> bool:
        """
        C{True} for a positive completion reply (2xx).
        """
        return 200 <= self.code < 300

    @property
    def isIntermediate(self) -> bool:
        """
        C{True} for a positive intermediate reply (3xx), such as C{354} to
        C{DATA} or C{334} to C{AUTH}.
        """
        return 300 <= self.code < 400

    @property
    def isTransient(self) -> bool:
        """
        C{True} for a transient negative reply (4xx): the command may succeed
        if repeated later.
        """
        return 400 <= self.code < 500

    @property
    def isPermanent(self) -> bool:
        """
        C{True} for a permanent negative reply (5xx).
        """
        return 500 <= self.code < 600

    def __str__(self) -> str:
        """
        @return: a one-line summary such as C{"250 2.0.0 Ok"}: the code, the
            enhanced status code when there is one, and the text with its
            newlines shown as C{" / "}.
        """
        parts = [str(self.code)]
        if self.enhancedStatus is not None:
            parts.append(str(self.enhancedStatus))
        text = self.text.replace("\n", " / ")
        if text:
            parts.append(text)
        return " ".join(parts)


class ReplyParser:
    """
    Incremental parser for the replies of one connection.

    Feed it lines (bytes, without the CRLF) with L{feed}; it returns each
    L{Reply} when its final line arrives.

    Each line must start with three ASCII digits, the first from 2 to 5 and
    the second from 0 to 5, followed by C{"-"} (more lines follow), C{" "}
    (last line) or nothing (last line with no text, such as C{"250"}).  Every
    line of a multi-line reply must carry the same code.  The text is decoded
    as UTF-8, replacing undecodable bytes, since servers may send 8-bit text.

    The enhanced status code (RFC 3463) is parsed from the start of the
    first line's text whenever it is well-formed, followed by a space or the
    end of the text, and of the same class as the reply code (a C{5.x.x}
    code on a 5xx reply).  It is parsed whether or not the server advertised
    C{ENHANCEDSTATUSCODES}, because some servers (aiosmtpd, for one) send
    the codes without advertising the extension.  A code whose class does
    not match the reply is ignored (the reply's C{enhancedStatus} is
    L{None}) and left in the text.

    On any violation L{feed} raises L{SMTPProtocolError} and the parser
    forgets the partial reply.
    """

    def __init__(self, maxLines: int = 1000, maxBytes: int = 65536) -> None:
        """
        @param maxLines: the most lines one reply may have.
        @param maxBytes: the most bytes one reply may have, counting each
            line's CRLF.
        @raise InvalidArgumentError: if a limit is not positive.
        """
        if maxLines < 1:
            raise InvalidArgumentError("maxLines", maxLines, "must be at least 1")
        if maxBytes < 1:
            raise InvalidArgumentError("maxBytes", maxBytes, "must be at least 1")
        self.maxLines = maxLines
        self.maxBytes = maxBytes
        self._code: bytes | None = None
        self._lines: list[str] = []
        self._bytes = 0

    @property
    def pending(self) -> bool:
        """
        C{True} while in the middle of a multi-line reply.
        """
        return self._code is not None

    def reset(self) -> None:
        """
        Forget any partial reply.
        """
        self._code = None
        self._lines = []
        self._bytes = 0

    def _fail(self, line: bytes, reason: str) -> SMTPProtocolError:
        """
        Reset the parser and build the error to raise for a bad line.

        @param line: the offending line.
        @param reason: what is wrong with it.
        @return: the error.
        """
        self.reset()
        quoted = line[:_QUOTE_LIMIT]
        more = "..." if len(line) > _QUOTE_LIMIT else ""
        return SMTPProtocolError(f"malformed reply line {quoted!r}{more}: {reason}")

    def feed(self, line: bytes) -> Reply | None:
        """
        Parse one line of a reply.

        @param line: the line as received, without its CRLF.
        @return: the complete L{Reply} when C{line} is its final line, else
            L{None}.
        @raise SMTPProtocolError: if the line is malformed, its code differs
            from the code of the reply's first line, or the reply grows past
            C{maxLines} lines or C{maxBytes} bytes.  The partial reply is
            forgotten.
        """
        size = self._bytes + len(line) + 2
        if size > self.maxBytes:
            raise self._fail(line, f"reply longer than {self.maxBytes} bytes")
        count = len(self._lines) + 1
        if count > self.maxLines:
            raise self._fail(line, f"reply longer than {self.maxLines} lines")
        code = line[:3]
        if len(code) < 3 or not code.isdigit():
            raise self._fail(line, "does not start with a three-digit reply code")
        if not (b"2" <= code[:1] <= b"5" and b"0" <= code[1:2] <= b"5"):
            raise self._fail(line, f"{code.decode()} is not a valid reply code")
        if self._code is not None and code != self._code:
            raise self._fail(
                line,
                f"reply code {code.decode()} differs from "
                f"{self._code.decode()} on the reply's first line",
            )
        separator = line[3:4]
        if separator not in (b"-", b" ", b""):
            raise self._fail(
                line, "the reply code must be followed by '-', ' ' or end of line"
            )
        self._lines.append(line[4:].decode("utf-8", errors="replace"))
        self._bytes = size
        self._code = code
        if separator == b"-":
            return None
        lines = tuple(self._lines)
        self.reset()
        return Reply(int(code), lines, _enhancedStatusFor(int(code), lines[0]))


def _enhancedStatusFor(code: int, firstLine: str) -> EnhancedStatus | None:
    """
    Find the enhanced status code of a reply.

    @param code: the reply code.
    @param firstLine: the text of the reply's first line.
    @return: the code at the start of C{firstLine} when it is well-formed and
        of the same class as C{code}, else L{None}.
    """
    status, _ = _splitStatus(firstLine)
    if status is None or status.klass != code // 100:
        return None
    return status
