"""
Message sources: what the caller gives as the message, turned into bytes that
can be read in chunks without loading a file into memory.

L{toMessageSource} accepts an L{email.message.Message}, bytes, text or a
binary file.  The L{MessageSource} it returns tells the envelope planner
what the message is (L{MessageSource.facts}) and gives, for every
transaction, a fresh pass over the message's bytes in the form the plan
chose (L{MessageSource.open}): headers in UTF-8 or RFC 2047 encoded, body as
it is or re-encoded to 7 bits.  Only an L{email.message.Message} can be
re-serialised; raw bytes, text and files are sent as they are, and asking
for a form they are not in raises L{UnsupportedFeatureError}.
"""

from __future__ import annotations

import base64
import copy
import io
import quopri
import tempfile
from email.errors import InvalidHeaderDefect, MessageError
from email.generator import BytesGenerator
from email.headerregistry import Address, Group
from email.message import Message
from email.policy import Policy
from typing import IO, Any, Protocol, cast, runtime_checkable

from mailclient._wire.envelope import MessageFacts, needsSMTPUTF8, toASCIIAddress
from mailclient.errors import InvalidArgumentError, UnsupportedFeatureError

__all__ = ["CHUNK_SIZE", "MessageSource", "OpenedMessage", "toMessageSource"]

CHUNK_SIZE = 65536
"""
The size of the blocks a message is read in, in octets.
"""

SPOOL_MEMORY = 1024 * 1024
"""
How much of a kept non-seekable stream is held in memory before the rest
goes to a temporary file, in octets.
"""

# RFC 5322 section 2.1.1: a line is at most 998 octets without its CRLF.
_MAX_LINE = 998

_SEVEN_BIT_ENCODINGS = frozenset({"base64", "quoted-printable"})
_IDENTITY_ENCODINGS = frozenset({"8bit", "binary"})


@runtime_checkable
class _Readable(Protocol):
    """
    Anything with a binary C{read}, such as a file opened with C{"rb"}.
    """

    def read(self, size: int = -1, /) -> bytes:
        """
        @param size: how many octets at most; C{-1} for all.
        @return: the octets read; C{b""} at the end.
        """


def _checkBytes(data: object) -> bytes:
    """
    @param data: what a stream's C{read} returned.
    @return: C{data}.
    @raise InvalidArgumentError: if C{data} is not bytes (a text-mode file).
    """
    if not isinstance(data, bytes):
        raise InvalidArgumentError(
            "message", type(data), "the file must be opened in binary mode"
        )
    return data


# -- scanning --------------------------------------------------------------------

# Two line ends in a row (CRLF, bare CR and bare LF all count) make an
# empty line: LF LF, LF CR (also in CRLF CRLF) and CR CR (a bare CR, then
# another line end).
_EMPTY_LINE_PAIRS = (b"\n\n", b"\n\r", b"\r\r")
_HEADER_WINDOW = 8192


class _Scanner:
    """
    Learns the facts of a message from its bytes, given in chunks of any
    size, split anywhere.

    @ivar size: the octets seen.
    @ivar eightBit: an octet above 127 was seen.
    @ivar binary: a NUL octet was seen.
    @ivar headersNonASCII: an octet above 127 was seen in the header
        section (before the first empty line).
    @ivar inHeader: the end of the header section was not seen yet.
    """

    def __init__(self) -> None:
        self.size = 0
        self.eightBit = False
        self.binary = False
        self.headersNonASCII = False
        self.inHeader = True
        self._last = b""

    def feed(self, chunk: bytes) -> None:
        """
        Learn from the next chunk.

        @param chunk: the next bytes of the message.
        """
        if not chunk:
            return
        if self.inHeader:
            end = self._headerEnd(chunk)
            header = chunk if end is None else chunk[:end]
            if not header.isascii():
                self.headersNonASCII = True
            self.inHeader = end is None
            self._last = chunk[-1:]
        self.size += len(chunk)
        if not self.eightBit and not chunk.isascii():
            self.eightBit = True
        if not self.binary and b"\x00" in chunk:
            self.binary = True

    def _headerEnd(self, chunk: bytes) -> int | None:
        """
        @param chunk: the next bytes, while in the header section.
        @return: where in C{chunk} the header section ends (after the line
            end before the empty line), or L{None} if it does not end in
            C{chunk}.
        """
        if not self.size and chunk[:1] in (b"\r", b"\n"):
            return 0
        data = self._last + chunk
        # Look in windows: the header section is usually short, and the
        # message behind it (a mebibyte, say) need not be searched three
        # times for pairs that only the header's end has.
        start = 0
        while start < len(data):
            stop = start + _HEADER_WINDOW
            found = [
                i
                for i in (data.find(p, start, stop) for p in _EMPTY_LINE_PAIRS)
                if i != -1
            ]
            if found:
                return min(found) + 1 - len(self._last)
            start = stop - 1
        return None

    def facts(self, *, canDowngrade: bool) -> MessageFacts:
        """
        @param canDowngrade: the message can be re-serialised.
        @return: the facts of everything fed so far.
        """
        return MessageFacts(
            size=self.size,
            eightBit=self.eightBit,
            binary=self.binary,
            headersNeedUTF8=self.headersNonASCII,
            canDowngrade=canDowngrade,
        )


def _refuseForm(facts: MessageFacts, utf8Headers: bool, downgrade: bool) -> None:
    """
    Refuse to give a message that cannot be re-serialised in a form it is
    not in.

    @param facts: the message's facts.
    @param utf8Headers: raw UTF-8 headers are acceptable.
    @param downgrade: the message must be 7-bit.
    @raise UnsupportedFeatureError: if C{utf8Headers} is false and the
        header section is not ASCII, or C{downgrade} is true and the message
        has 8-bit or NUL octets.
    """
    if not utf8Headers and facts.headersNeedUTF8:
        raise UnsupportedFeatureError(
            "message",
            "UTF-8 headers",
            "the message header has non-ASCII characters, which need "
            "SMTPUTF8; only an email.message.Message can be re-encoded "
            "without them",
        )
    if downgrade and (facts.eightBit or facts.binary):
        raise UnsupportedFeatureError(
            "message",
            "8-bit data",
            "the message has 8-bit or NUL octets; only an "
            "email.message.Message can be re-encoded to 7 bits",
        )


# -- reading ---------------------------------------------------------------------


class OpenedMessage:
    """
    One pass over the bytes of a message, from its start, in the form
    L{MessageSource.open} was asked for.

    @ivar size: the number of octets this pass gives, when known up front.
    """

    def __init__(
        self,
        stream: _Readable,
        size: int | None,
        *,
        utf8Headers: bool = True,
        downgrade: bool = False,
    ) -> None:
        """
        @param stream: where the bytes come from.
        @param size: their number, if known.
        @param utf8Headers: raw UTF-8 in the header section is acceptable;
            if false, it is refused while reading.
        @param downgrade: 8-bit and NUL octets are refused while reading.
        """
        self.size = size
        self._stream = stream
        self._utf8Headers = utf8Headers
        self._downgrade = downgrade
        self._scanner = _Scanner() if downgrade or not utf8Headers else None
        self._ended = False

    def read(self, size: int = CHUNK_SIZE) -> bytes:
        """
        Read the next octets.

        A stream that gives fewer octets than asked for before its end (a
        pipe, a socket, a raw file) is read again until C{size} octets are
        in, so that every block but the last is full: the protocol sends
        one write, and with C{BDAT} one chunk, per block, and a stream that
        trickles must not turn a message into many small ones.  Once the
        stream has given C{b""} it is not read again.

        @param size: how many octets at most; C{-1} for all the rest.
        @return: the octets, C{size} of them unless the end is reached;
            C{b""} at the end.
        @raise InvalidArgumentError: if the file is not binary.
        @raise UnsupportedFeatureError: for a message whose facts were not
            known up front (a non-seekable stream), if it turns out not to
            be in the form asked for: UTF-8 in the header section when
            C{utf8Headers} is false, 8-bit or NUL octets when C{downgrade}.
        """
        if self._ended or not size:
            return b""
        data = _checkBytes(self._stream.read(size))
        if 0 < len(data) < size:
            data = self._fill(data, size)
        elif not data:
            self._ended = True
        if self._scanner is not None:
            self._scanner.feed(data)
            _refuseForm(
                self._scanner.facts(canDowngrade=False),
                self._utf8Headers,
                self._downgrade,
            )
        return data

    def _fill(self, data: bytes, size: int) -> bytes:
        """
        @param data: the first octets of a block, fewer than C{size}.
        @param size: the size of the block.
        @return: C{data} and what follows it in the stream, up to C{size}
            octets in all, or fewer at the end.
        """
        pieces = [data]
        missing = size - len(data)
        while missing > 0:
            more = _checkBytes(self._stream.read(missing))
            if not more:
                self._ended = True
                break
            pieces.append(more)
            missing -= len(more)
        return b"".join(pieces)


class _SeekableReader:
    """
    Reads a seekable stream from a start offset, keeping its own position,
    so that several passes never disturb each other.
    """

    def __init__(self, stream: IO[bytes], start: int) -> None:
        """
        @param stream: the stream.
        @param start: the offset of the message's first octet.
        """
        self._stream = stream
        self._position = start

    def read(self, size: int = -1, /) -> bytes:
        """
        @param size: how many octets at most; C{-1} for all the rest.
        @return: the next octets.
        """
        self._stream.seek(self._position)
        data = _checkBytes(self._stream.read(size))
        self._position += len(data)
        return data


class _Spool:
    """
    Keeps what is read of a non-seekable stream, in memory up to
    L{SPOOL_MEMORY} octets and in a temporary file beyond, so that it can
    be read again.

    @ivar length: the number of octets kept.
    @ivar complete: the stream's end was reached: everything is kept.
    """

    def __init__(self, stream: _Readable) -> None:
        """
        @param stream: the stream.
        """
        self._stream = stream
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY)
        self.length = 0
        self.complete = False

    def readAt(self, position: int, size: int) -> bytes:
        """
        @param position: the offset of the first octet wanted; at most
            L{length}.
        @param size: how many octets at most; C{-1} for all the rest.
        @return: the octets kept from C{position} on, followed (when they
            are fewer than C{size}) by the stream's next ones, which are
            kept in turn.
        """
        data = b""
        if position < self.length:
            available = self.length - position
            self._file.seek(position)
            data = self._file.read(available if size < 0 else min(size, available))
        if self.complete or 0 <= size <= len(data):
            return data
        more = _checkBytes(self._stream.read(size - len(data) if size > 0 else -1))
        if not more:
            self.complete = True
            return data
        self._file.seek(self.length)
        self._file.write(more)
        self.length += len(more)
        return data + more

    def close(self) -> None:
        """
        Drop what is kept.
        """
        self._file.close()


class _SpoolReader:
    """
    One pass over a kept non-seekable stream, with its own position.
    """

    def __init__(self, spool: _Spool) -> None:
        """
        @param spool: the spool.
        """
        self._spool = spool
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        """
        @param size: how many octets at most; C{-1} for all the rest.
        @return: the next octets.
        """
        data = self._spool.readAt(self._position, size)
        self._position += len(data)
        return data


# -- sources ---------------------------------------------------------------------


class MessageSource:
    """
    The bytes of one message, read as many times as needed.

    Call L{facts} to plan the transaction, then L{open} for each pass over
    the message (each starts at its beginning).  The attributes L{stream},
    L{size} and L{eightBit} and the method L{read} are the earlier,
    single-pass interface, kept until the protocol no longer uses them.
    """

    def __init__(self) -> None:
        self._facts: MessageFacts | None = None
        self._legacy: tuple[_Readable, int | None, bool | None] | None = None

    def facts(self) -> MessageFacts:
        """
        Learn what the message is; computed once, on the first call.

        @return: the message's facts.
        @raise InvalidArgumentError: if the message cannot be read.
        """
        if self._facts is None:
            self._facts = self._computeFacts()
        return self._facts

    def keepForReopen(self) -> None:
        """
        Say that L{open} will be called more than once.  Only a stream that
        cannot seek needs to know, before it is first opened: it then keeps
        what it reads (in memory up to 1 MiB, beyond in a temporary file).
        """

    def open(
        self, *, utf8Headers: bool = True, downgrade: bool = False
    ) -> OpenedMessage:
        """
        Start a pass over the message, from its beginning.

        @param utf8Headers: raw UTF-8 in the header section is acceptable
            (SMTPUTF8 is in use); if false, a message is re-serialised with
            RFC 2047 encoded headers.
        @param downgrade: re-serialise the message with 7-bit transfer
            encodings.
        @return: the pass.
        @raise UnsupportedFeatureError: if the message cannot be given in
            that form.
        @raise InvalidArgumentError: if it cannot be read again.
        """
        raise NotImplementedError

    def close(self) -> None:
        """
        Release what the source keeps (the spool of a kept stream).  The
        caller's file is not closed.
        """

    def _computeFacts(self) -> MessageFacts:
        """
        @return: the message's facts.
        """
        raise NotImplementedError

    def _legacyState(self) -> tuple[_Readable, int | None, bool | None]:
        """
        @return: the stream, size and 8-bitness of the single-pass
            interface.
        """
        raise NotImplementedError

    def _getLegacy(self) -> tuple[_Readable, int | None, bool | None]:
        """
        @return: the single-pass state, made on first use.
        """
        if self._legacy is None:
            self._legacy = self._legacyState()
        return self._legacy

    @property
    def stream(self) -> _Readable:
        """
        The binary stream L{read} reads (single-pass interface).
        """
        return self._getLegacy()[0]

    @property
    def size(self) -> int | None:
        """
        The size in octets when known up front, else L{None} (single-pass
        interface).
        """
        return self._getLegacy()[1]

    @property
    def eightBit(self) -> bool | None:
        """
        C{True} when the message is known to contain octets above 127,
        C{False} when known not to, L{None} when unknown (a file)
        (single-pass interface).
        """
        return self._getLegacy()[2]

    def read(self, size: int = CHUNK_SIZE) -> bytes:
        """
        Read up to C{size} octets; C{b""} at the end (single-pass
        interface).

        @raise InvalidArgumentError: if the file is not binary.
        """
        return _checkBytes(self.stream.read(size))


class _BytesSource(MessageSource):
    """
    A message given as bytes (or text, encoded as UTF-8).
    """

    def __init__(self, data: bytes) -> None:
        """
        @param data: the message.
        """
        super().__init__()
        self._data = data

    def _computeFacts(self) -> MessageFacts:
        scanner = _Scanner()
        scanner.feed(self._data)
        return scanner.facts(canDowngrade=False)

    def open(
        self, *, utf8Headers: bool = True, downgrade: bool = False
    ) -> OpenedMessage:
        _refuseForm(self.facts(), utf8Headers, downgrade)
        return OpenedMessage(io.BytesIO(self._data), len(self._data))

    def _legacyState(self) -> tuple[_Readable, int | None, bool | None]:
        return io.BytesIO(self._data), len(self._data), not self._data.isascii()


def _asciiGroups(folded: str, header: Any) -> list[Group] | None:
    """
    Rewrite the addresses of one address header with IDNA A-label domains.

    @param folded: the header as written in UTF-8, for errors.
    @param header: the parsed header, not ASCII, with its groups and its
        defects.
    @return: the groups with ASCII addresses (display names are kept, to be
        RFC 2047 encoded; comments are lost), or L{None} when every address
        is ASCII already (the header is then kept as it is).
    @raise UnsupportedFeatureError: if an address has a non-ASCII local
        part, or the header is malformed (what the parser made of it may not
        be what was meant, and encoding it would break it further), or it
        cannot be rebuilt.
    @raise InvalidArgumentError: if a non-ASCII domain is not a valid IDNA
        domain name.
    """
    groups = header.groups
    specs = [address.addr_spec for group in groups for address in group.addresses]
    for spec in specs:
        if needsSMTPUTF8(spec):
            raise UnsupportedFeatureError(
                "message",
                folded,
                f"the address {spec!r} has a non-ASCII local part, which "
                f"cannot be written in a header without UTF-8 (SMTPUTF8)",
            )
    if any(isinstance(d, InvalidHeaderDefect) for d in header.defects):
        raise UnsupportedFeatureError(
            "message",
            folded,
            "the header is malformed and not ASCII, so it cannot be encoded "
            "without UTF-8 (SMTPUTF8)",
        )
    if all(spec.isascii() for spec in specs):
        return None
    asciiSpecs = iter([toASCIIAddress(spec, argument="message") for spec in specs])
    try:
        return [
            Group(
                group.display_name,
                [
                    Address(address.display_name, addr_spec=next(asciiSpecs))
                    for address in group.addresses
                ],
            )
            for group in groups
        ]
    except (ValueError, IndexError, MessageError) as e:
        raise UnsupportedFeatureError(
            "message",
            folded,
            f"the header cannot be rewritten without UTF-8: {e}",
        ) from e


def _cloneHeadersWithoutUTF8(message: Message) -> Message:
    """
    Make the top-level address headers of a message expressible without
    UTF-8: non-ASCII domains become IDNA A-labels (an encoded word is not
    allowed in an address).  Headers whose addresses are ASCII are kept as
    they are (their display names and comments are RFC 2047 encoded when
    serialised).

    @param message: a message whose policy parses headers (an
        C{EmailPolicy}); other messages are returned as they are.
    @return: C{message}, or a copy of it with its address headers redone.
    @raise UnsupportedFeatureError: if an address has a non-ASCII local
        part, which cannot be written without UTF-8.
    @raise InvalidArgumentError: if a non-ASCII domain is not a valid IDNA
        domain name.
    """
    items = message.items()
    changed = False
    rebuilt: list[tuple[str, Any]] = []
    policy: Any = message.policy
    utf8Policy: Any = None
    for name, value in items:
        header: Any = value
        newGroups = None
        # An address header needs work when its UTF-8 form is not ASCII (its
        # value as text may be the parser's repair of it).
        if getattr(header, "groups", None) is not None:
            utf8Policy = utf8Policy or policy.clone(utf8=True)
            folded = header.fold(policy=utf8Policy).strip()
            if not folded.isascii():
                newGroups = _asciiGroups(folded, header)
        if newGroups is None:
            rebuilt.append((name, value))
        else:
            rebuilt.append(policy.header_store_parse(name, newGroups))
            changed = True
    if not changed:
        return message
    clone = copy.deepcopy(message)
    for name in {name.lower() for name, _ in items}:
        del clone[name]
    for name, value in rebuilt:
        clone.set_raw(name, value)
    return clone


def _reencodeSevenBit(message: Message) -> None:
    """
    Re-encode every part of a message that is not 7-bit clean: text parts
    as quoted-printable, others as base64.  A C{message/*} or
    C{multipart/*} part marked C{8bit} or C{binary} is then marked
    C{7bit}.

    @param message: the message, changed in place.
    """
    for part in message.walk():
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        if part.is_multipart():
            if cte in _IDENTITY_ENCODINGS:
                part.replace_header("Content-Transfer-Encoding", "7bit")
            continue
        payload = part.get_payload()
        if not isinstance(payload, str) or cte in _SEVEN_BIT_ENCODINGS:
            continue
        if (
            payload.isascii()
            and "\x00" not in payload
            and all(len(line) <= _MAX_LINE for line in payload.splitlines())
        ):
            continue
        data = part.get_payload(decode=True)
        assert isinstance(data, bytes)
        del part["Content-Transfer-Encoding"]
        if part.get_content_maintype() == "text":
            encoded = quopri.encodestring(data.replace(b"\r\n", b"\n"))
            part["Content-Transfer-Encoding"] = "quoted-printable"
        else:
            encoded = base64.encodebytes(data)
            part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(encoded.decode("ascii"))


def _headerSection(data: bytes) -> bytes:
    """
    @param data: a serialised message (CRLF line ends).
    @return: its header section, up to its first empty line.
    """
    end = data.find(b"\r\n\r\n")
    return data if end == -1 else data[: end + 2]


_BLIND_HEADERS = ("Bcc", "Resent-Bcc")


def _withoutBcc(message: Message) -> Message:
    """
    @param message: a message.
    @return: C{message} when it has no C{Bcc} or C{Resent-Bcc} header, else
        a shallow copy of it without them (the caller's message is not
        changed: deleting a header gives the copy a list of its own).
    """
    if not any(name in message for name in _BLIND_HEADERS):
        return message
    clone = copy.copy(message)
    for name in _BLIND_HEADERS:
        del clone[name]
    return clone


class _EmailSource(MessageSource):
    """
    A message given as an L{email.message.Message}: serialised with its own
    policy (CRLF line ends), in whichever form is asked for.

    Its C{Bcc} and C{Resent-Bcc} headers are never sent: a shallow copy of
    the message without them is serialised (as C{smtplib.SMTP.send_message}
    does), and the caller's message is left as it is.  Raw bytes, text and
    files are sent as they are.
    """

    def __init__(self, message: Message) -> None:
        """
        @param message: the message.
        """
        super().__init__()
        self._message = message
        self._forms: dict[tuple[bool | None, bool], bytes] = {}

    def _serialise(self, utf8: bool | None, downgrade: bool) -> bytes:
        """
        @param utf8: serialise headers as raw UTF-8 (C{True}) or RFC 2047
            encoded (C{False}), or as the message's policy says (L{None}).
            A policy without the choice (C{compat32}) always encodes.
        @param downgrade: re-encode the message to 7 bits.
        @return: the message's bytes in that form, made once.
        @raise UnsupportedFeatureError: if the message cannot be given in
            that form.
        """
        key = (utf8, downgrade)
        if key not in self._forms:
            self._forms[key] = self._makeForm(utf8, downgrade)
        return self._forms[key]

    def _makeForm(self, utf8: bool | None, downgrade: bool) -> bytes:
        """
        @return: see L{_serialise}, made now.
        """
        message = _withoutBcc(self._message)
        policy: Policy = message.policy.clone(linesep="\r\n")
        if utf8 is not None and hasattr(policy, "utf8"):
            policy = cast(Any, policy).clone(utf8=utf8)
        owned = False
        if utf8 is False:
            clone = _cloneHeadersWithoutUTF8(message)
            owned = clone is not message
            message = clone
        if downgrade:
            if not owned:
                # A shallow copy shares its parts with the caller's message.
                message = copy.deepcopy(message)
            _reencodeSevenBit(message)
            policy = policy.clone(cte_type="7bit")
        buffer = io.BytesIO()
        try:
            BytesGenerator(buffer, mangle_from_=False, policy=policy).flatten(message)
        except (UnicodeError, LookupError, TypeError, ValueError, MessageError) as e:
            if downgrade:
                raise UnsupportedFeatureError(
                    "message",
                    type(e).__name__,
                    f"the message could not be re-encoded to 7 bits: {e}",
                ) from e
            raise InvalidArgumentError(
                "message", type(e).__name__, f"cannot be serialised: {e}"
            ) from e
        data = buffer.getvalue()
        if utf8 is False and not _headerSection(data).isascii():
            raise UnsupportedFeatureError(
                "message",
                "UTF-8 headers",
                "the message header has raw 8-bit text that cannot be "
                "encoded without UTF-8 (SMTPUTF8)",
            )
        if downgrade and (b"\x00" in data or (not utf8 and not data.isascii())):
            raise UnsupportedFeatureError(
                "message",
                "8-bit data",
                "the message could not be re-encoded to 7 bits",
            )
        return data

    def _computeFacts(self) -> MessageFacts:
        scanner = _Scanner()
        scanner.feed(self._serialise(True, False))
        return scanner.facts(canDowngrade=True)

    def open(
        self, *, utf8Headers: bool = True, downgrade: bool = False
    ) -> OpenedMessage:
        data = self._serialise(utf8Headers, downgrade)
        return OpenedMessage(io.BytesIO(data), len(data))

    def _legacyState(self) -> tuple[_Readable, int | None, bool | None]:
        data = self._serialise(None, False)
        return io.BytesIO(data), len(data), not data.isascii()


def _startOffset(stream: _Readable) -> int | None:
    """
    @param stream: a binary stream.
    @return: its current offset when it can seek, else L{None}.
    """
    try:
        if not stream.seekable():  # type: ignore[attr-defined]
            return None
        offset = stream.tell()  # type: ignore[attr-defined]
    except Exception:
        return None
    return offset if isinstance(offset, int) else None


class _FileSource(MessageSource):
    """
    A message given as a binary file or stream.  A seekable one is scanned
    for its facts and read again from its start offset for every pass; a
    non-seekable one is read once, unless kept (L{keepForReopen}).
    """

    def __init__(self, stream: _Readable) -> None:
        """
        @param stream: the stream, positioned at the message's first octet.
        """
        super().__init__()
        self._stream = stream
        self._start = _startOffset(stream)
        self._keep = False
        self._spool: _Spool | None = None
        self._opened = False

    def _computeFacts(self) -> MessageFacts:
        if self._start is None:
            return MessageFacts(size=None, eightBit=None, canDowngrade=False)
        stream: IO[bytes] = self._stream  # type: ignore[assignment]
        scanner = _Scanner()
        try:
            stream.seek(self._start)
            try:
                while chunk := _checkBytes(stream.read(CHUNK_SIZE)):
                    scanner.feed(chunk)
            finally:
                stream.seek(self._start)
        except OSError as e:
            raise InvalidArgumentError(
                "message", type(e).__name__, f"reading the message failed: {e}"
            ) from e
        return scanner.facts(canDowngrade=False)

    def keepForReopen(self) -> None:
        self._keep = True

    def open(
        self, *, utf8Headers: bool = True, downgrade: bool = False
    ) -> OpenedMessage:
        if self._start is not None:
            facts = self.facts()
            _refuseForm(facts, utf8Headers, downgrade)
            stream: IO[bytes] = self._stream  # type: ignore[assignment]
            return OpenedMessage(_SeekableReader(stream, self._start), facts.size)
        reader: _Readable
        size = None
        if self._spool is not None:
            reader = _SpoolReader(self._spool)
            size = self._spool.length if self._spool.complete else None
        elif self._opened:
            raise InvalidArgumentError(
                "message",
                self._stream,
                "cannot be read twice: the stream cannot seek, and "
                "keepForReopen() was not called before it was first read",
            )
        elif self._keep:
            self._spool = _Spool(self._stream)
            reader = _SpoolReader(self._spool)
        else:
            reader = self._stream
        self._opened = True
        return OpenedMessage(reader, size, utf8Headers=utf8Headers, downgrade=downgrade)

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def _legacyState(self) -> tuple[_Readable, int | None, bool | None]:
        return self._stream, None, None


def toMessageSource(message: object) -> MessageSource:
    """
    Turn what the caller gave into a L{MessageSource}.

    @param message: an L{email.message.Message} (including
        C{EmailMessage}), C{bytes}/C{bytearray}/C{memoryview}, C{str}
        (encoded as UTF-8), a binary file-like object with C{read}, or a
        L{MessageSource} (returned as it is).
    @return: the source.
    @raise InvalidArgumentError: for anything else, a text-mode file, or
        text that cannot be encoded as UTF-8 (a lone surrogate).
    """
    if isinstance(message, MessageSource):
        return message
    if isinstance(message, Message):
        return _EmailSource(message)
    if isinstance(message, bytes | bytearray | memoryview):
        return _BytesSource(bytes(message))
    if isinstance(message, str):
        try:
            return _BytesSource(message.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise InvalidArgumentError(
                "message", "text", f"cannot be encoded as UTF-8: {e.reason}"
            ) from None
    if isinstance(message, io.TextIOBase):
        raise InvalidArgumentError(
            "message", message, "the file must be opened in binary mode ('rb')"
        )
    if isinstance(message, _Readable):
        return _FileSource(message)
    raise InvalidArgumentError(
        "message",
        type(message).__name__,
        "expected an email.message.Message, bytes, str or a binary file",
    )
