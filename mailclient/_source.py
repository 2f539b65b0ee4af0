"""
Message sources: what the caller gives as the message, turned into bytes that
can be read in chunks without loading a file into memory.
"""

from __future__ import annotations

import io
from email.generator import BytesGenerator
from email.message import Message
from typing import IO, Protocol, runtime_checkable

import attrs

from mailclient.errors import InvalidArgumentError

__all__ = ["MessageSource", "toMessageSource"]

CHUNK_SIZE = 65536


@runtime_checkable
class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@attrs.define
class MessageSource:
    """
    The bytes of one message, read in chunks.

    @ivar stream: a binary stream positioned at the start of the message.
    @ivar size: the size in octets when known up front, else L{None}.
    @ivar eightBit: C{True} when the message is known to contain octets above
        127, C{False} when known not to, L{None} when unknown (a file).
    """

    stream: IO[bytes] | _Readable
    size: int | None
    eightBit: bool | None

    def read(self, size: int = CHUNK_SIZE) -> bytes:
        """
        Read up to C{size} octets; C{b""} at the end.
        """
        data = self.stream.read(size)
        if not isinstance(data, bytes):
            raise InvalidArgumentError(
                "message", type(data), "the file must be opened in binary mode"
            )
        return data


def _fromBytes(data: bytes) -> MessageSource:
    return MessageSource(io.BytesIO(data), len(data), not data.isascii())


def toMessageSource(message: object) -> MessageSource:
    """
    Turn what the caller gave into a L{MessageSource}.

    @param message: an L{email.message.Message} (including
        C{EmailMessage}), C{bytes}/C{bytearray}/C{memoryview}, C{str}
        (encoded as UTF-8), or a binary file-like object with C{read}.
    @raise InvalidArgumentError: for anything else, or a text-mode file.
    """
    if isinstance(message, Message):
        buffer = io.BytesIO()
        policy = message.policy.clone(linesep="\r\n")
        BytesGenerator(buffer, policy=policy).flatten(message)
        return _fromBytes(buffer.getvalue())
    if isinstance(message, bytes | bytearray | memoryview):
        return _fromBytes(bytes(message))
    if isinstance(message, str):
        return _fromBytes(message.encode("utf-8"))
    if isinstance(message, io.TextIOBase):
        raise InvalidArgumentError(
            "message", message, "the file must be opened in binary mode ('rb')"
        )
    if isinstance(message, _Readable):
        return MessageSource(message, None, None)
    raise InvalidArgumentError(
        "message",
        type(message).__name__,
        "expected an email.message.Message, bytes, str or a binary file",
    )
