"""
Composing messages and deciding their envelope, with the standard library's
L{email} package.

    - L{parseAddress} and L{parseAddressList} parse and check addresses
      (one mailbox; a header-style list or an iterable) and explain what is
      wrong with a bad one.
    - L{composeMessage} builds an ordinary L{email.message.EmailMessage}:
      a text body, an HTML alternative, inline images the HTML references
      by C{cid:}, attachments (L{Attachment}), custom headers, and a
      C{Message-ID} and C{Date} (L{addMissingHeaders}).
    - L{envelopeFromMessage} decides the envelope (sender and recipients)
      from a message's headers as C{smtplib.SMTP.send_message} does, and
      gives a copy of the message without its C{Bcc} header; the result is
      an L{Envelope}.

L{mailclient.sendMessage} and L{mailclient.Mailer.sendMessage} send a
message with the envelope its headers give.

Every bad input raises L{InvalidArgumentError}, a C{ValueError}, whose
C{argument}, C{value} and C{reason} say what is wrong.  A carriage return,
a line feed or a NUL is refused in every address, name and header.

This module imports nothing from Twisted.
"""

from __future__ import annotations

import copy
import datetime
import email.policy
import ipaddress
import mimetypes
import os
import re
from collections.abc import Iterable, Mapping
from email.errors import HeaderDefect, NonASCIILocalPartDefect
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid
from typing import IO, Any, cast

import attrs
import idna

from mailclient._wire.envelope import toASCIIAddress
from mailclient.errors import InvalidArgumentError

__all__ = [
    "Attachment",
    "Envelope",
    "addMissingHeaders",
    "composeMessage",
    "envelopeFromMessage",
    "parseAddress",
    "parseAddressList",
]

MAX_ADDRESS_LENGTH = 254
"""
The longest addr-spec accepted, in octets (RFC 5321 section 4.5.3.1.3: a
path is at most 256 octets with its angle brackets).
"""

_CONTROLS = {"\r": "a carriage return (CR)", "\n": "a line feed (LF)", "\x00": "NUL"}

# RFC 5321 section 4.1.2: a domain is dot-separated labels of letters,
# digits and hyphens, neither starting nor ending with a hyphen (RFC 1035:
# at most 63 octets each, 253 in all).
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_MAX_DOMAIN = 253

# RFC 2045 section 5.1: type "/" subtype, each a token.
_MIME_NAME = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_MIME_TYPE = re.compile(rf"({_MIME_NAME})/({_MIME_NAME})\Z")

# RFC 5322 section 3.6.4: "<" id-left "@" id-right ">", in printable ASCII.
_MESSAGE_ID = re.compile(r"<[!-;=?-~]+@[!-;=?-~]+>\Z")
# A Content-ID (RFC 2392): the same, where id-left "@" id-right is loosened
# to any printable ASCII without angle brackets, as mail clients write it.
_CONTENT_ID = re.compile(r"[!-;=?-~]+\Z")

# RFC 5322 section 3.6.8: a field name is printable ASCII except ":".
_FIELD_NAME = re.compile(r"[!-9;-~]+\Z")

# What composeMessage sets itself, with the keyword that sets it.
_RESERVED_HEADERS = {
    "from": "fromAddress",
    "to": "to",
    "cc": "cc",
    "bcc": "bcc",
    "reply-to": "replyTo",
    "subject": "subject",
    "sender": "sender",
    "message-id": "messageId",
    "date": "date",
}

# A compressed file is not what its inner name says: "x.csv.gz" is gzip.
_COMPRESSED_TYPES = {"gzip": "application/gzip"}
_OCTET_STREAM = "application/octet-stream"


# -- checks ----------------------------------------------------------------------


def _refuseControls(text: str, argument: str, value: object) -> None:
    """
    Refuse a carriage return, a line feed or a NUL anywhere in C{text}: in
    a header they would end it (or the header section) and let the rest be
    read as something else.

    @param text: the text to check.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @raise InvalidArgumentError: if C{text} holds one of them.
    """
    for position, char in enumerate(text):
        if char in _CONTROLS:
            raise InvalidArgumentError(
                argument,
                value,
                f"contains {_CONTROLS[char]} at position {position}; CR, LF "
                f"and NUL are not allowed",
            )


def _requireText(value: object, argument: str) -> str:
    """
    @param value: a value that must be text.
    @param argument: its name, for the error.
    @return: C{value}, checked for CR, LF and NUL.
    @raise InvalidArgumentError: if C{value} is not a L{str} or holds CR, LF
        or NUL.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(argument, value, "must be a string")
    _refuseControls(value, argument, value)
    return value


def _checkLiteral(domain: str, argument: str, value: object) -> None:
    """
    Check an address literal (RFC 5321 section 4.1.3).

    @param domain: the literal, with its brackets: C{"[192.0.2.1]"} or
        C{"[IPv6:2001:db8::1]"}.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @raise InvalidArgumentError: if it is not an IPv4 or IPv6 literal.
    """
    inner = domain[1:-1] if domain.endswith("]") else ""
    try:
        if inner[:5].lower() == "ipv6:":
            ipaddress.IPv6Address(inner[5:])
        else:
            ipaddress.IPv4Address(inner)
    except ValueError:
        raise InvalidArgumentError(
            argument,
            value,
            f"the address literal {domain!r} is neither [IPv4] nor [IPv6:...]",
        ) from None


def _asciiDomain(domain: str, argument: str, value: object) -> str:
    """
    Check a domain and give its ASCII form.

    @param domain: a host name (U-labels or A-labels) or an address literal.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @return: the domain with IDNA A-labels (an ASCII domain or a literal is
        returned as it is).
    @raise InvalidArgumentError: if the domain is not a valid host name, a
        valid internationalized domain name, or an IP address literal.
    """
    if domain.startswith("["):
        _checkLiteral(domain, argument, value)
        return domain
    asciiDomain = domain
    if not domain.isascii():
        try:
            asciiDomain = toASCIIAddress(
                f"postmaster@{domain}", argument=argument
            ).partition("@")[2]
        except InvalidArgumentError as e:
            raise InvalidArgumentError(argument, value, e.reason) from None
    labels = asciiDomain.split(".")
    if len(asciiDomain) > _MAX_DOMAIN or not all(_LABEL.match(x) for x in labels):
        raise InvalidArgumentError(
            argument,
            value,
            f"the domain {domain!r} is not a valid host name (letters, digits "
            f"and hyphens in dot-separated labels of 1 to 63)",
        )
    for label in labels:
        if label[:4].lower() == "xn--":
            try:
                idna.decode(label)
            except idna.IDNAError as e:
                raise InvalidArgumentError(
                    argument,
                    value,
                    f"the domain {domain!r} has an invalid IDNA label {label!r}: {e}",
                ) from None
    return asciiDomain


def _checkMailbox(address: Address, argument: str, value: object) -> None:
    """
    Check what the parser found: a local part, a valid domain, a length
    that fits in a command.

    @param address: one parsed mailbox.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @raise InvalidArgumentError: if the mailbox is not usable.
    """
    # A mailbox without a domain always comes with a parse defect.
    if not address.username:
        raise InvalidArgumentError(argument, value, "has no local part before '@'")
    asciiDomain = _asciiDomain(address.domain, argument, value)
    octets = len(address.addr_spec.encode("utf-8", "surrogatepass"))
    domainOctets = len(address.domain.encode("utf-8", "surrogatepass"))
    octets = max(octets, octets - domainOctets + len(asciiDomain))
    if octets > MAX_ADDRESS_LENGTH:
        raise InvalidArgumentError(
            argument,
            value,
            f"the address is {octets} octets long; at most "
            f"{MAX_ADDRESS_LENGTH} are allowed",
        )


def _parseText(text: str, argument: str, value: object) -> Any:
    """
    Parse a header-style address list with the standard library.

    @param text: the list, CR, LF and NUL already refused.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @return: the parsed header: its C{groups} and its C{defects}.
    @raise InvalidArgumentError: if the parser gave up.
    """
    if text.rstrip().endswith("@"):
        raise InvalidArgumentError(argument, value, "has no domain after '@'")
    try:
        return email.policy.default.header_factory("To", text)
    except Exception as e:
        raise InvalidArgumentError(
            argument, value, f"cannot be parsed as an address ({e})"
        ) from None


def _relevantDefects(defects: Iterable[object]) -> list[str]:
    """
    @param defects: what the parser reported about an address list.
    @return: the defects that make it unusable, described: all of them but
        a non-ASCII local part (which needs SMTPUTF8, checked when sending).
    """
    return [
        str(d)
        for d in defects
        if isinstance(d, HeaderDefect) and not isinstance(d, NonASCIILocalPartDefect)
    ]


def _mailboxes(header: Any, argument: str, value: object) -> list[Address]:
    """
    @param header: a parsed address list.
    @param argument: the name of the argument, for the error.
    @param value: the argument's value, for the error.
    @return: every mailbox of every group, in order, each checked with
        L{_checkMailbox}.
    @raise InvalidArgumentError: if the parser reported a defect (other
        than a non-ASCII local part), or a mailbox is not usable.
    """
    defects = _relevantDefects(header.defects)
    if defects:
        raise InvalidArgumentError(
            argument, value, "cannot be parsed: " + "; ".join(defects)
        )
    found: list[Address] = [a for g in header.groups for a in g.addresses]
    for address in found:
        _checkMailbox(address, argument, value)
    return found


# -- addresses -------------------------------------------------------------------


def parseAddress(value: str | Address, *, argument: str = "address") -> Address:
    """
    Parse and check exactly one mailbox, such as C{"alice@example.com"} or
    C{"Alice Liddell <alice@example.com>"}.

    Display names may hold any text: a non-ASCII one is written RFC 2047
    encoded in a header sent without SMTPUTF8.  A non-ASCII domain must be
    a valid internationalized domain name (it is sent as IDNA A-labels when
    the server lacks SMTPUTF8).  A non-ASCII local part is accepted here,
    but can only be sent to a server that offers SMTPUTF8 (RFC 6531):
    sending it to one that does not fails with
    L{mailclient.errors.UnsupportedFeatureError}.

    @param value: the mailbox, as text (RFC 5322 C{mailbox}, RFC 2047
        encoded words allowed) or an L{email.headerregistry.Address}.
    @param argument: the name of the argument, for errors.
    @return: the mailbox.
    @raise InvalidArgumentError: if C{value} is not text or an C{Address};
        is empty; holds CR, LF or NUL anywhere; is a group or several
        mailboxes or none; cannot be parsed (unbalanced quotes, brackets or
        parentheses, text outside the address, obsolete syntax); has no
        C{@} or no domain; has a domain that is not a valid host name, IDNA
        name or IP address literal; or has an addr-spec over 254 octets.
    """
    if isinstance(value, Address):
        for part in (value.display_name, value.username, value.domain):
            _refuseControls(part, argument, value)
        text = str(value)
    elif isinstance(value, str):
        _refuseControls(value, argument, value)
        text = value
    else:
        raise InvalidArgumentError(
            argument, value, "must be a string or an email.headerregistry.Address"
        )
    if not text.strip():
        raise InvalidArgumentError(argument, value, "is empty")
    header = _parseText(text, argument, value)
    if any(group.display_name is not None for group in header.groups):
        raise InvalidArgumentError(argument, value, "is a group; give one mailbox")
    if "@" not in text:
        raise InvalidArgumentError(
            argument, value, "has no '@domain' (an address is local-part@domain)"
        )
    found = _mailboxes(header, argument, value)
    if len(found) != 1:
        raise InvalidArgumentError(
            argument, value, f"holds {len(found)} addresses; give exactly one"
        )
    return found[0]


def parseAddressList(
    value: str | Address | Iterable[str | Address], *, argument: str = "addresses"
) -> tuple[Address, ...]:
    """
    Parse and check a list of mailboxes.

    @param value: a header-style list (C{"a@example.com, Bob
        <b@example.com>"}; a group's mailboxes are taken, so
        C{"undisclosed-recipients:;"} gives none; an empty string gives
        none), a single L{email.headerregistry.Address}, or an iterable of
        single mailboxes (text or C{Address}, each as L{parseAddress}
        takes it).
    @param argument: the name of the argument, for errors.
    @return: the mailboxes, in order (duplicates kept).
    @raise InvalidArgumentError: for the reasons L{parseAddress} gives, for
        the whole list or any of its items.
    """
    if isinstance(value, str):
        _refuseControls(value, argument, value)
        if not value.strip():
            return ()
        return tuple(_mailboxes(_parseText(value, argument, value), argument, value))
    if isinstance(value, Address):
        return (parseAddress(value, argument=argument),)
    if isinstance(value, bytes | bytearray) or not isinstance(value, Iterable):
        raise InvalidArgumentError(
            argument,
            value,
            "must be a string, an email.headerregistry.Address or an iterable of them",
        )
    return tuple(parseAddress(item, argument=argument) for item in value)


def _forHeader(address: Address) -> Address:
    """
    @param address: a checked mailbox.
    @return: the mailbox to write in a header: with an ASCII local part, a
        non-ASCII domain becomes IDNA A-labels, so the header serialises
        correctly without UTF-8 by any generator (an RFC 2047 encoded word
        is not allowed in a domain).  A non-ASCII local part needs UTF-8
        anyway, and its domain is kept.
    """
    if address.domain.isascii() or not address.username.isascii():
        return address
    domain = _asciiDomain(address.domain, "address", address)
    return Address(address.display_name, username=address.username, domain=domain)


# -- attachments -----------------------------------------------------------------


def _checkData(value: object) -> bytes:
    """
    @param value: an attachment's content.
    @return: it as L{bytes}.
    @raise InvalidArgumentError: if it is not bytes-like.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise InvalidArgumentError(
        "data", type(value), "must be bytes (open files in binary mode)"
    )


def _checkFilename(value: object) -> str | None:
    """
    @param value: an attachment's file name, or L{None}.
    @return: C{value}.
    @raise InvalidArgumentError: if it is not text, is empty or holds CR, LF
        or NUL.
    """
    if value is None:
        return None
    text = _requireText(value, "filename")
    if not text:
        raise InvalidArgumentError("filename", value, "is empty; give None for none")
    return text


def _checkMimeType(value: object) -> str | None:
    """
    @param value: a MIME type, or L{None} to guess one.
    @return: C{value} in lower case.
    @raise InvalidArgumentError: if it is not C{type/subtype} (parameters
        are not allowed), or is C{multipart/*} or C{message/*}, which
        cannot be given as bytes.
    """
    if value is None:
        return None
    text = _requireText(value, "mimeType").lower()
    match = _MIME_TYPE.match(text)
    if match is None:
        raise InvalidArgumentError(
            "mimeType",
            value,
            "must be type/subtype, such as 'application/pdf', without parameters",
        )
    if match.group(1) in ("multipart", "message"):
        raise InvalidArgumentError(
            "mimeType",
            value,
            "multipart and message types cannot be attached as bytes; use "
            "'application/octet-stream'",
        )
    return text


def _checkContentId(value: object) -> str | None:
    """
    @param value: a content id, with or without its angle brackets, or
        L{None}.
    @return: the id without angle brackets.
    @raise InvalidArgumentError: if it is empty or holds anything but
        printable ASCII other than angle brackets.
    """
    if value is None:
        return None
    text = _requireText(value, "contentId")
    bare = text[1:-1] if text.startswith("<") and text.endswith(">") else text
    if not _CONTENT_ID.match(bare):
        raise InvalidArgumentError(
            "contentId",
            value,
            "must be printable ASCII without spaces or angle brackets, such "
            "as 'logo@example.com'",
        )
    return bare


def _guessMimeType(filename: str | None) -> str:
    """
    @param filename: a file name, or L{None}.
    @return: the MIME type its extension suggests (see L{mimetypes}); a
        compressed file (C{.gz}) is C{application/gzip}, other encodings and
        multipart or message types C{application/octet-stream}, as is a name
        without a known extension.
    """
    if filename is None:
        return _OCTET_STREAM
    guessed, encoding = mimetypes.guess_type(filename)
    if encoding is not None:
        return _COMPRESSED_TYPES.get(encoding, _OCTET_STREAM)
    if guessed is None or guessed.split("/")[0] in ("multipart", "message"):
        return _OCTET_STREAM
    return guessed


@attrs.frozen
class Attachment:
    """
    A file to attach to a message, or an inline part (an image the HTML
    shows with C{<img src="cid:ID">}).

    @ivar data: the content.
    @ivar filename: the name given to the recipient (C{Content-Disposition}
        C{filename}), or L{None}.
    @ivar mimeType: the MIME type, C{type/subtype} in lower case: the one
        given, else guessed from C{filename} with L{mimetypes.guess_type},
        else C{application/octet-stream}.
    @ivar contentId: the C{Content-ID} without angle brackets (the HTML
        refers to it as C{cid:ID}), or L{None}; required for an inline
        part.
    """

    data: bytes = attrs.field(converter=_checkData)
    filename: str | None = attrs.field(default=None, converter=_checkFilename)
    mimeType: str | None = attrs.field(default=None, converter=_checkMimeType)
    contentId: str | None = attrs.field(default=None, converter=_checkContentId)

    def __attrs_post_init__(self) -> None:
        """
        Guess the MIME type when none was given.
        """
        if self.mimeType is None:
            object.__setattr__(self, "mimeType", _guessMimeType(self.filename))

    @property
    def maintype(self) -> str:
        """
        The C{type} of L{mimeType}.
        """
        return str(self.mimeType).partition("/")[0]

    @property
    def subtype(self) -> str:
        """
        The C{subtype} of L{mimeType}.
        """
        return str(self.mimeType).partition("/")[2]

    @classmethod
    def fromPath(
        cls,
        path: str | os.PathLike[str],
        *,
        filename: str | None = None,
        mimeType: str | None = None,
        contentId: str | None = None,
    ) -> Attachment:
        """
        Read a file into an attachment.

        @param path: the file's path.
        @param filename: the name to give; default: the path's last part.
        @param mimeType: see L{Attachment.mimeType}; guessed from
            C{filename} when not given.
        @param contentId: see L{Attachment.contentId}.
        @return: the attachment.
        @raise InvalidArgumentError: if C{path} is not text or a path, or
            the file cannot be read, or another argument is invalid.
        """
        if not isinstance(path, str | os.PathLike):
            raise InvalidArgumentError("path", path, "must be a str or os.PathLike")
        name = os.fspath(path)
        if not isinstance(name, str):
            raise InvalidArgumentError("path", path, "must be a text path")
        try:
            with open(name, "rb") as f:
                data = f.read()
        except OSError as e:
            raise InvalidArgumentError(
                "path", path, f"cannot be read: {e.strerror or e}"
            ) from None
        if filename is None:
            filename = os.path.basename(name)
        return cls(data, filename, mimeType, contentId)

    @classmethod
    def fromFile(
        cls,
        fileobj: IO[bytes],
        *,
        filename: str | None = None,
        mimeType: str | None = None,
        contentId: str | None = None,
    ) -> Attachment:
        """
        Read an open binary file, from where it is to its end, into an
        attachment.  The file is not closed.

        @param fileobj: the file, opened in binary mode.
        @param filename: the name to give; default: the last part of the
            file's C{name} when it has a textual one (as a file from
            L{open} has), else none.
        @param mimeType: see L{Attachment.mimeType}; guessed from
            C{filename} when not given.
        @param contentId: see L{Attachment.contentId}.
        @return: the attachment.
        @raise InvalidArgumentError: if the file is not readable or not in
            binary mode, or another argument is invalid.
        """
        read = getattr(fileobj, "read", None)
        if not callable(read):
            raise InvalidArgumentError(
                "fileobj", fileobj, "must be a file opened in binary mode"
            )
        data = read()
        if not isinstance(data, bytes):
            raise InvalidArgumentError(
                "fileobj", fileobj, "must be a file opened in binary mode"
            )
        if filename is None:
            name = getattr(fileobj, "name", None)
            if isinstance(name, str) and os.path.basename(name):
                filename = os.path.basename(name)
        return cls(data, filename, mimeType, contentId)


def _toAttachment(item: object, argument: str) -> Attachment:
    """
    @param item: an L{Attachment} or a path.
    @param argument: the name of the argument, for errors.
    @return: the attachment (a path is read with L{Attachment.fromPath}).
    @raise InvalidArgumentError: if C{item} is neither, or the file cannot
        be read.
    """
    if isinstance(item, Attachment):
        return item
    if isinstance(item, str | os.PathLike):
        return Attachment.fromPath(item)
    raise InvalidArgumentError(
        argument,
        type(item),
        "each item must be an Attachment or a path (for bytes, use "
        "Attachment(data, filename))",
    )


# -- composing -------------------------------------------------------------------


def _checkDate(value: object) -> datetime.datetime:
    """
    @param value: a C{Date} to write.
    @return: C{value}.
    @raise InvalidArgumentError: if it is not a time-zone aware
        L{datetime.datetime}.
    """
    if not isinstance(value, datetime.datetime):
        raise InvalidArgumentError("date", value, "must be a datetime.datetime")
    if value.utcoffset() is None:
        raise InvalidArgumentError(
            "date",
            value,
            "is naive; give an aware datetime, such as datetime.now(timezone.utc)",
        )
    return value


def _checkMessageId(value: object) -> str:
    """
    @param value: a C{Message-ID}, with or without its angle brackets.
    @return: it with its angle brackets.
    @raise InvalidArgumentError: if it is not C{<left@right>} in printable
        ASCII without spaces.
    """
    text = _requireText(value, "messageId").strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    if not _MESSAGE_ID.match(text):
        raise InvalidArgumentError(
            "messageId",
            value,
            "must be <left@right> in printable ASCII, such as "
            "'<1234.5678@example.com>'",
        )
    return text


def _checkDomain(value: object) -> str:
    """
    @param value: the domain for a C{Message-ID}.
    @return: its ASCII form (IDNA A-labels).
    @raise InvalidArgumentError: if it is not a valid domain.
    """
    text = _requireText(value, "domain")
    if not text:
        raise InvalidArgumentError("domain", value, "is empty")
    return _asciiDomain(text, "domain", value)


def _domainOf(message: Message) -> str | None:
    """
    @param message: a message.
    @return: the ASCII domain of its first C{Sender} or C{From} mailbox, or
        L{None} when it has neither or they cannot be parsed.
    """
    for name in ("Sender", "From"):
        for value in _rawValues(message, name):
            try:
                found = parseAddressList(_headerText(value), argument=name)
            except InvalidArgumentError:
                continue
            if found:
                return _asciiDomain(found[0].domain, name, value)
    return None


def addMissingHeaders(message: Message, *, domain: str | None = None) -> Message:
    """
    Add a C{Message-ID} and a C{Date} to a message that lacks them (RFC
    5322 asks for both); a header that is there is kept.

    @param message: the message, changed in place.
    @param domain: the right-hand side of the new C{Message-ID}; default:
        the domain of the message's C{Sender}, else of its C{From} (IDNA
        A-labels).  The host's name is never looked up.
    @return: C{message}.
    @raise InvalidArgumentError: if C{message} is not an
        L{email.message.Message}; if C{domain} is invalid; or if a
        C{Message-ID} is missing and no domain is given or found.
    """
    if not isinstance(message, Message):
        raise InvalidArgumentError(
            "message", type(message), "must be an email.message.Message"
        )
    if domain is not None:
        domain = _checkDomain(domain)
    if message.get("Message-ID") is None:
        if domain is None:
            domain = _domainOf(message)
        if domain is None:
            raise InvalidArgumentError(
                "domain",
                None,
                "the message has no From or Sender address to take the "
                "Message-ID's domain from: give domain",
            )
        message["Message-ID"] = make_msgid(domain=domain)
    if message.get("Date") is None:
        message["Date"] = format_datetime(datetime.datetime.now(datetime.UTC))
    return message


def _checkHeaders(headers: object) -> list[tuple[str, str]]:
    """
    @param headers: custom headers, a mapping of names to values, or
        L{None}.
    @return: the headers as pairs.
    @raise InvalidArgumentError: if it is not a mapping of text to text; a
        name is not a valid field name or is one L{composeMessage} sets
        itself; a name or value holds CR, LF or NUL.
    """
    if headers is None:
        return []
    if not isinstance(headers, Mapping):
        raise InvalidArgumentError(
            "headers", headers, "must be a mapping of header names to values"
        )
    pairs = []
    for name, value in headers.items():
        _requireText(name, "headers")
        if not _FIELD_NAME.match(name):
            raise InvalidArgumentError(
                "headers",
                name,
                "is not a header name (printable ASCII without spaces or ':')",
            )
        lower = name.lower()
        if lower in _RESERVED_HEADERS:
            raise InvalidArgumentError(
                "headers",
                name,
                f"is set by composeMessage: use the keyword "
                f"{_RESERVED_HEADERS[lower]}=",
            )
        if lower == "mime-version" or lower.startswith("content-"):
            raise InvalidArgumentError(
                "headers",
                name,
                "is set by composeMessage from text=, html=, inline= and attachments=",
            )
        if not isinstance(value, str):
            raise InvalidArgumentError(
                "headers", {name: value}, "each value must be a string"
            )
        _refuseControls(value, "headers", {name: value})
        pairs.append((name, value))
    return pairs


def _addressHeader(
    message: EmailMessage, name: str, addresses: Iterable[Address]
) -> None:
    """
    Set an address header from mailboxes, unless there are none.

    @param message: the message.
    @param name: the header's name.
    @param addresses: the mailboxes.
    """
    written = tuple(_forHeader(a) for a in addresses)
    if written:
        message[name] = written


def composeMessage(
    *,
    fromAddress: str | Address,
    to: str | Address | Iterable[str | Address] = (),
    cc: str | Address | Iterable[str | Address] = (),
    bcc: str | Address | Iterable[str | Address] = (),
    replyTo: str | Address | Iterable[str | Address] = (),
    subject: str | None = None,
    text: str | None = None,
    html: str | None = None,
    attachments: Iterable[Attachment | str | os.PathLike[str]] = (),
    inline: Iterable[Attachment] = (),
    headers: Mapping[str, str] | None = None,
    sender: str | Address | None = None,
    messageId: str | None = None,
    date: datetime.datetime | None = None,
) -> EmailMessage:
    """
    Build a message with the standard library's L{email} package.

    The structure is the usual one: C{text/plain} alone, or C{text/html}
    alone, or both in a C{multipart/alternative}; inline parts make the
    HTML a C{multipart/related}; attachments wrap everything in a
    C{multipart/mixed}.  With all of them::

        multipart/mixed
            multipart/alternative
                text/plain
                multipart/related
                    text/html
                    image/png        (inline, Content-ID)
            application/pdf          (attachment)
            text/csv                 (attachment)

    Addresses are written as L{email.headerregistry.Address} objects: a
    non-ASCII display name is RFC 2047 encoded when the message is sent
    without SMTPUTF8.  The C{Bcc} header is written in the message (so
    that L{envelopeFromMessage} finds those recipients) and is never sent:
    L{mailclient.sendmail} and its kin leave it out of the bytes they send.

    @param fromAddress: the author (C{From}): one mailbox.
    @param to: the C{To} mailboxes (see L{parseAddressList}).
    @param cc: the C{Cc} mailboxes.
    @param bcc: the C{Bcc} mailboxes.
    @param replyTo: the C{Reply-To} mailboxes.
    @param subject: the C{Subject}.
    @param text: the plain text body.
    @param html: the HTML body; at least one of C{text} and C{html} is
        needed.
    @param attachments: files to attach, each an L{Attachment} or a path
        (read now, its type guessed from its name).
    @param inline: parts the HTML shows, each an L{Attachment} with a
        C{contentId}; the HTML refers to it as C{cid:ID}, as in C{<img
        src="cid:logo@example.com">}.  Needs C{html}.
    @param headers: more headers, from name to value (C{{"X-Campaign":
        "spring"}}); names this function sets itself (C{From}, C{To},
        C{Cc}, C{Bcc}, C{Reply-To}, C{Subject}, C{Sender}, C{Message-ID},
        C{Date}, C{MIME-Version}, C{Content-*}) are refused.
    @param sender: the C{Sender}, when someone sends on the author's
        behalf: one mailbox.
    @param messageId: the C{Message-ID} (angle brackets optional); default:
        a new one (L{email.utils.make_msgid}) on the domain of
        C{fromAddress}.
    @param date: the C{Date}, a time-zone aware datetime; default: now, in
        UTC.
    @return: the message, with policy L{email.policy.default}.
    @raise InvalidArgumentError: if an argument is invalid (see
        L{parseAddress} for addresses), neither C{text} nor C{html} is
        given, C{inline} is given without C{html} or an inline part has no
        C{contentId}, two parts have the same C{contentId}, or a custom
        header is refused.
    """
    author = parseAddress(fromAddress, argument="fromAddress")
    lists = {
        "To": parseAddressList(to, argument="to"),
        "Cc": parseAddressList(cc, argument="cc"),
        "Bcc": parseAddressList(bcc, argument="bcc"),
        "Reply-To": parseAddressList(replyTo, argument="replyTo"),
    }
    onBehalf = None if sender is None else parseAddress(sender, argument="sender")
    if subject is not None:
        _requireText(subject, "subject")
    if text is not None and not isinstance(text, str):
        raise InvalidArgumentError("text", text, "must be a string")
    if html is not None and not isinstance(html, str):
        raise InvalidArgumentError("html", html, "must be a string")
    if text is None and html is None:
        raise InvalidArgumentError("text", None, "give text, html or both")
    custom = _checkHeaders(headers)
    files = [
        _toAttachment(item, "attachments")
        for item in _iterate(attachments, "attachments")
    ]
    parts = [_toAttachment(item, "inline") for item in _iterate(inline, "inline")]
    if parts and html is None:
        raise InvalidArgumentError(
            "inline", parts, "inline parts are shown by the HTML: give html"
        )
    seen: set[str] = set()
    for part in parts:
        if part.contentId is None:
            raise InvalidArgumentError(
                "inline", part, "an inline part needs a contentId (cid:ID in the HTML)"
            )
    for part in [*parts, *files]:
        if part.contentId is not None:
            if part.contentId in seen:
                raise InvalidArgumentError(
                    "contentId", part.contentId, "is used by two parts"
                )
            seen.add(part.contentId)
    identifier = None if messageId is None else _checkMessageId(messageId)
    when = None if date is None else _checkDate(date)

    message = EmailMessage(policy=email.policy.default)
    message["From"] = _forHeader(author)
    if onBehalf is not None:
        message["Sender"] = _forHeader(onBehalf)
    for name, addresses in lists.items():
        _addressHeader(message, name, addresses)
    if subject is not None:
        message["Subject"] = subject
    if when is not None:
        message["Date"] = format_datetime(when)
    if identifier is not None:
        message["Message-ID"] = identifier
    addMissingHeaders(
        message, domain=_asciiDomain(author.domain, "fromAddress", author)
    )
    for name, value in custom:
        try:
            message[name] = value
        except (ValueError, TypeError) as e:
            raise InvalidArgumentError("headers", {name: value}, str(e)) from None

    htmlPart: EmailMessage = message
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
            htmlPart = cast(list[EmailMessage], message.get_payload())[-1]
    else:
        assert html is not None
        message.set_content(html, subtype="html")
    for part in parts:
        htmlPart.add_related(
            part.data,
            part.maintype,
            part.subtype,
            cid=f"<{part.contentId}>",
            disposition="inline",
            filename=part.filename,
        )
    for part in files:
        message.add_attachment(
            part.data,
            part.maintype,
            part.subtype,
            filename=part.filename,
            cid=None if part.contentId is None else f"<{part.contentId}>",
        )
    return message


def _iterate(value: object, argument: str) -> list[object]:
    """
    @param value: an iterable of parts (not one part alone).
    @param argument: the name of the argument, for errors.
    @return: its items.
    @raise InvalidArgumentError: if it is not iterable, or is text or one
        L{Attachment} (give a list).
    """
    if isinstance(value, str | bytes | Attachment | os.PathLike) or not isinstance(
        value, Iterable
    ):
        raise InvalidArgumentError(
            argument, value, "must be a list of parts (give [part] for one)"
        )
    return list(value)


# -- envelopes -------------------------------------------------------------------


@attrs.frozen
class Envelope:
    """
    Who a message is sent from and to, and the message to send.

    @ivar sender: the envelope sender (the addr-spec of C{MAIL FROM}); C{""}
        for the null sender.
    @ivar recipients: the envelope recipients (addr-specs), in order,
        without duplicates.
    @ivar message: the message to send: a shallow copy of the one given,
        without its C{Bcc} and C{Resent-Bcc} headers.
    """

    sender: str
    recipients: tuple[str, ...]
    message: Message


def _rawValues(message: Message, name: str) -> list[Any]:
    """
    @param message: a message.
    @param name: a header name.
    @return: the value of every occurrence of the header, as stored: a
        C{compat32} message would otherwise replace undecodable octets.
    """
    lower = name.lower()
    return [value for key, value in message.raw_items() if key.lower() == lower]


def _headerText(value: object) -> str:
    """
    @param value: a header's value as a message gives it: a header object
        of an C{email.policy.EmailPolicy} message, an L{email.header.Header}
        or a string (C{compat32}: maybe folded, maybe with RFC 2047 encoded
        words, maybe with undecodable octets kept as surrogates).
    @return: the value as text, unfolded.
    """
    text = str(value)
    if not isinstance(value, Header) and any("\udc80" <= c <= "\udcff" for c in text):
        # Octets a compat32 parser could not decode: UTF-8 (RFC 6532) or
        # nothing.
        text = text.encode("ascii", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"\r?\n(?=[ \t])", "", text)


def _fromHeaders(message: Message, names: Iterable[str]) -> list[Address]:
    """
    @param message: a message.
    @param names: header names.
    @return: the mailboxes of every occurrence of each header, in order.
    @raise InvalidArgumentError: if a header's value is not a valid address
        list (the error names the header).
    """
    found: list[Address] = []
    for name in names:
        for value in _rawValues(message, name):
            text = _headerText(value)
            # A header object of an EmailPolicy message holds the parser's
            # repair of a malformed value, and the defects that say so.
            defects = _relevantDefects(getattr(value, "defects", ()))
            if defects:
                raise InvalidArgumentError(
                    name, text, "cannot be parsed: " + "; ".join(defects)
                )
            found.extend(parseAddressList(text, argument=name))
    return found


def _resentPrefix(message: Message) -> str:
    """
    @param message: a message.
    @return: C{"Resent-"} when it has one C{Resent-Date}, else C{""}.
    @raise InvalidArgumentError: if it has more than one.
    """
    dates = message.get_all("Resent-Date") or []
    if len(dates) > 1:
        raise InvalidArgumentError(
            "message",
            f"{len(dates)} Resent-Date headers",
            "the message has more than one Resent- block, so which one is "
            "the latest is ambiguous: give fromAddress and toAddresses",
        )
    return "Resent-" if dates else ""


def _senderFromHeaders(message: Message, prefix: str) -> str:
    """
    @param message: a message.
    @param prefix: C{""}, or C{"Resent-"} for a resent message.
    @return: the addr-spec of its C{Sender}, else of its C{From}.
    @raise InvalidArgumentError: if there is neither, or C{Sender} is not
        one mailbox, or C{From} holds several and there is no C{Sender}.
    """
    senders = _fromHeaders(message, [prefix + "Sender"])
    if message.get_all(prefix + "Sender"):
        if len(senders) != 1:
            raise InvalidArgumentError(
                prefix + "Sender",
                [str(a) for a in senders],
                "must be exactly one mailbox; or give fromAddress",
            )
        return senders[0].addr_spec
    authors = _fromHeaders(message, [prefix + "From"])
    if not authors:
        raise InvalidArgumentError(
            "fromAddress",
            None,
            f"the message has no {prefix}Sender or {prefix}From address: "
            f"give fromAddress",
        )
    if len(authors) > 1:
        raise InvalidArgumentError(
            prefix + "From",
            [str(a) for a in authors],
            f"holds {len(authors)} mailboxes and the message has no "
            f"{prefix}Sender: add a {prefix}Sender header or give fromAddress",
        )
    return authors[0].addr_spec


def _unique(addresses: Iterable[Address]) -> tuple[str, ...]:
    """
    @param addresses: mailboxes.
    @return: their addr-specs in order, each once (the local part compared
        exactly, the domain without regard to case).
    """
    seen: set[tuple[str, str]] = set()
    specs = []
    for address in addresses:
        key = (address.username, address.domain.lower())
        if key not in seen:
            seen.add(key)
            specs.append(address.addr_spec)
    return tuple(specs)


def envelopeFromMessage(
    message: Message,
    *,
    fromAddress: str | Address | None = None,
    toAddresses: str | Address | Iterable[str | Address] | None = None,
) -> Envelope:
    """
    Decide a message's envelope from its headers, as
    C{smtplib.SMTP.send_message} does.

        - A message with exactly one C{Resent-Date} was resent (RFC 5322
          section 3.6.6): the C{Resent-} headers are read instead of the
          others.  More than one C{Resent-Date} is ambiguous and refused
          (unless both C{fromAddress} and C{toAddresses} are given).
        - The sender is the C{Sender} mailbox if there is one, else the
          C{From} mailbox; a C{From} with several mailboxes needs a
          C{Sender} (RFC 5322 section 3.6.2), or C{fromAddress}.
        - The recipients are the mailboxes of C{To}, C{Bcc} and C{Cc}, in
          that order (smtplib's), duplicates left out.  Unlike smtplib,
          which reads only the first of each, every occurrence of each
          header is read.
        - The message returned is a shallow copy (C{copy.copy}, as smtplib
          makes) without any C{Bcc} or C{Resent-Bcc} header, whatever the
          envelope.

    @param message: the message: an L{email.message.EmailMessage} or a
        C{compat32} L{email.message.Message} (RFC 2047 encoded words and
        L{email.header.Header} values are decoded).
    @param fromAddress: the sender to use instead of the headers' (one
        mailbox, checked as L{parseAddress} does); C{""} for the null
        sender.
    @param toAddresses: the recipients to use instead of the headers'
        (as L{parseAddressList} takes them).
    @return: the envelope.
    @raise InvalidArgumentError: if C{message} is not an
        L{email.message.Message}; an address (given, or in a header) is
        invalid; there is no sender or no recipient to be found (the error
        says which argument to give); or the C{Resent-} blocks are
        ambiguous.
    """
    if not isinstance(message, Message):
        raise InvalidArgumentError(
            "message", type(message), "must be an email.message.Message"
        )
    prefix = ""
    if fromAddress is None or toAddresses is None:
        prefix = _resentPrefix(message)
    if fromAddress is None:
        sender = _senderFromHeaders(message, prefix)
    elif fromAddress == "":
        sender = ""
    else:
        sender = parseAddress(fromAddress, argument="fromAddress").addr_spec
    if toAddresses is None:
        names = [prefix + name for name in ("To", "Bcc", "Cc")]
        recipients = _unique(_fromHeaders(message, names))
        if not recipients:
            raise InvalidArgumentError(
                "toAddresses",
                None,
                f"the message has no {', '.join(names)} address: give toAddresses",
            )
    else:
        recipients = _unique(parseAddressList(toAddresses, argument="toAddresses"))
        if not recipients:
            raise InvalidArgumentError("toAddresses", toAddresses, "has no address")
    sent = copy.copy(message)
    del sent["Bcc"]
    del sent["Resent-Bcc"]
    return Envelope(sender, recipients, sent)
