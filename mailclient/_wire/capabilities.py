"""
ESMTP capabilities: what a server advertised in its EHLO reply.

The first line of a positive EHLO reply greets the client and names the
server; every further line is an extension keyword with optional
parameters (RFC 5321 section 4.1.1.1)::

    250-mail.example.com Hello
    250-SIZE 1048576
    250-AUTH PLAIN LOGIN
    250 PIPELINING

L{Capabilities.fromEHLOReply} turns such a reply into an immutable,
hashable value.  It is lenient where leniency is harmless: a line whose
first word is not a valid keyword is skipped rather than failing the
session, and the legacy C{AUTH=PLAIN LOGIN} form is understood.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from types import MappingProxyType

import attrs

from mailclient._wire.replies import Reply

__all__ = ["Capabilities"]

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*", re.ASCII)
_LIMIT = re.compile(r"([A-Za-z0-9_-]+)=([0-9]+)", re.ASCII)
_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_LEGACY_AUTH = "AUTH="


def _parseKeywordLine(line: str) -> tuple[str, list[str]] | None:
    """
    Parse one keyword line of an EHLO reply.

    @param line: the text of the line.
    @return: the upper-cased keyword and its parameters, or L{None} when the
        line is blank or its first word is not an RFC 5321 C{ehlo-keyword}.
        The legacy C{AUTH=A B} form gives the keyword C{AUTH} with the
        parameters C{A} and C{B}; commas between its mechanisms are
        tolerated.
    """
    words = line.split()
    if not words:
        return None
    first, params = words[0], words[1:]
    if first.upper().startswith(_LEGACY_AUTH):
        legacy = [first[len(_LEGACY_AUTH) :], *params]
        return "AUTH", [m for word in legacy for m in word.split(",") if m]
    if _KEYWORD.fullmatch(first) is None:
        return None
    return first.upper(), params


@attrs.frozen
class Capabilities:
    """
    The ESMTP extensions a server advertised.

    @ivar serverName: the first word of the EHLO reply's first line, usually
        the server's host name (C{""} if none).
    @ivar extensions: each advertised keyword, upper-cased, with its
        parameters, in the order the server first advertised them.  A
        keyword advertised more than once (such as C{AUTH} and the legacy
        C{AUTH=}) appears once, with the union of its parameters.
    """

    serverName: str
    extensions: tuple[tuple[str, tuple[str, ...]], ...] = ()

    @classmethod
    def fromEHLOReply(cls, reply: Reply) -> Capabilities:
        """
        Read the capabilities from a positive EHLO reply.

        Blank keyword lines, and lines whose first word is not a valid
        keyword, are skipped.

        @param reply: the EHLO reply; its first line is the greeting, the
            others are keyword lines.
        @return: the capabilities.
        """
        if not reply.lines:
            return cls.empty()
        greeting = reply.lines[0].split()
        serverName = greeting[0] if greeting else ""
        merged: dict[str, list[str]] = {}
        for line in reply.lines[1:]:
            parsed = _parseKeywordLine(line)
            if parsed is None:
                continue
            keyword, params = parsed
            known = merged.setdefault(keyword, [])
            known.extend(p for p in params if p not in known)
        extensions = tuple((k, tuple(v)) for k, v in merged.items())
        return cls(serverName, extensions)

    @classmethod
    def empty(cls, serverName: str = "") -> Capabilities:
        """
        The capabilities of a session without extensions, opened with HELO.

        @param serverName: the server's name, if known.
        @return: capabilities with no keyword.
        """
        return cls(serverName)

    def has(self, keyword: str) -> bool:
        """
        @param keyword: an extension keyword, in any case.
        @return: C{True} when the server advertised C{keyword}.
        """
        return keyword.upper() in self.keywords

    def params(self, keyword: str) -> tuple[str, ...]:
        """
        @param keyword: an extension keyword, in any case.
        @return: the parameters advertised with C{keyword}, or C{()} when it
            was advertised without any or not at all.
        """
        wanted = keyword.upper()
        for name, params in self.extensions:
            if name == wanted:
                return params
        return ()

    @functools.cached_property
    def keywords(self) -> frozenset[str]:
        """
        Every advertised keyword, upper-cased.
        """
        return frozenset(name for name, _ in self.extensions)

    @property
    def starttls(self) -> bool:
        """
        C{STARTTLS} (RFC 3207) was advertised.
        """
        return self.has("STARTTLS")

    @property
    def pipelining(self) -> bool:
        """
        C{PIPELINING} (RFC 2920) was advertised.
        """
        return self.has("PIPELINING")

    @property
    def eightBitMIME(self) -> bool:
        """
        C{8BITMIME} (RFC 6152) was advertised.
        """
        return self.has("8BITMIME")

    @property
    def smtpUTF8(self) -> bool:
        """
        C{SMTPUTF8} (RFC 6531) was advertised.
        """
        return self.has("SMTPUTF8")

    @property
    def dsn(self) -> bool:
        """
        C{DSN} (RFC 3461) was advertised.
        """
        return self.has("DSN")

    @property
    def chunking(self) -> bool:
        """
        C{CHUNKING} (RFC 3030, the C{BDAT} command) was advertised.
        """
        return self.has("CHUNKING")

    @property
    def binaryMIME(self) -> bool:
        """
        C{BINARYMIME} (RFC 3030) was advertised.
        """
        return self.has("BINARYMIME")

    @property
    def enhancedStatusCodes(self) -> bool:
        """
        C{ENHANCEDSTATUSCODES} (RFC 2034) was advertised.
        """
        return self.has("ENHANCEDSTATUSCODES")

    @property
    def requireTLS(self) -> bool:
        """
        C{REQUIRETLS} (RFC 8689) was advertised.
        """
        return self.has("REQUIRETLS")

    @functools.cached_property
    def authMechanisms(self) -> frozenset[str]:
        """
        The upper-cased SASL mechanisms advertised with C{AUTH} or the legacy
        C{AUTH=}.
        """
        return frozenset(m.upper() for m in self.params("AUTH"))

    @property
    def sizeAdvertised(self) -> bool:
        """
        C{SIZE} (RFC 1870) was advertised, with or without a limit.
        """
        return self.has("SIZE")

    @functools.cached_property
    def size(self) -> int | None:
        """
        The largest message size in octets the server accepts, from
        C{SIZE}; L{None} when C{SIZE} was not advertised, has no value or a
        non-numeric one, or is C{0} (which RFC 1870 defines as no fixed
        limit).  When C{SIZE} was advertised more than once, its first value
        counts.
        """
        params = self.params("SIZE")
        if not params or _DIGITS.fullmatch(params[0]) is None:
            return None
        return int(params[0]) or None

    @functools.cached_property
    def limits(self) -> Mapping[str, int]:
        """
        The RFC 9422 C{LIMITS} the server advertised, such as
        C{{"RCPTMAX": 100, "MAILMAX": 1000}}, with upper-cased names.
        Malformed entries are skipped; a name given twice keeps its first
        value.  The mapping is read-only and empty when C{LIMITS} was not
        advertised.
        """
        found: dict[str, int] = {}
        for param in self.params("LIMITS"):
            match = _LIMIT.fullmatch(param)
            if match is not None:
                found.setdefault(match.group(1).upper(), int(match.group(2)))
        return MappingProxyType(found)
