"""
Envelope planning: the one place that decides the parameters of C{MAIL} and
C{RCPT} for a message, from what the message is and what the server offers.

L{planEnvelope} takes the sender, the L{Recipient}s, the L{MessageFacts}
of the message and the server's L{Capabilities}, and returns an
L{EnvelopePlan}: the addresses in their wire form, every parameter, and how
the message must be sent (C{BDAT} or C{DATA}, re-encoded to 7 bits or not,
headers in UTF-8 or not).  It raises, with nothing sent, when the message
cannot be carried by this server:

    - C{SMTPUTF8} (RFC 6531) is used only when the envelope or the message
      header has non-ASCII text and the server advertises it; otherwise
      domains are sent as IDNA A-labels and a non-ASCII local part is
      refused;
    - 8-bit data is announced with C{BODY=8BITMIME} (RFC 6152); binary data
      (NUL octets) needs C{BODY=BINARYMIME} and C{BDAT} (RFC 3030); a
      message that can be re-serialised (an L{email.message.Message}) is
      re-encoded to 7 bits instead when the server lacks them;
    - the C{DSN} parameters (RFC 3461, RFC 6533) are sent only when the
      server advertises C{DSN};
    - C{REQUIRETLS} (RFC 8689) is sent only on a TLS session with a server
      that advertises it, and otherwise refuses the message.

L{sizeParameter} makes the C{SIZE} parameter (RFC 1870) from the size of the
message as it will be sent, and L{recipientBatches} splits the recipients to
respect the server's RFC 9422 C{LIMITS}.

This module imports nothing from Twisted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs
import idna

from mailclient._wire.capabilities import Capabilities
from mailclient._wire.commands import validateAddress
from mailclient.errors import (
    CommandArgumentError,
    InvalidArgumentError,
    MessageTooLargeError,
    RequireTLSError,
    UnsupportedFeatureError,
)

__all__ = [
    "DSN",
    "EnvelopePlan",
    "MessageFacts",
    "PlannedRecipient",
    "Recipient",
    "needsSMTPUTF8",
    "orcptParameter",
    "planEnvelope",
    "recipientBatches",
    "sizeParameter",
    "toASCIIAddress",
    "toRecipient",
    "utf8AddrUnitext",
    "utf8AddrXtext",
    "xtext",
]

# RFC 3461 section 4.4: an envelope identifier is at most 100 characters.
# It is checked in its xtext form, which is never shorter than the value:
# a server that counts either way accepts it.
MAX_ENVID_LENGTH = 100

# RFC 3461 section 4.2: the xtext of an original recipient is at most 500
# characters (checked on everything after "ORCPT=").
MAX_ORCPT_LENGTH = 500

# RFC 3461 section 4.1, in the order they are sent.
NOTIFY_KEYWORDS = ("SUCCESS", "FAILURE", "DELAY")
NOTIFY_NEVER = "NEVER"

RET_VALUES = ("FULL", "HDRS")

BodyType = Literal["7BIT", "8BITMIME", "BINARYMIME"]


# -- text encodings --------------------------------------------------------------


def _refuseControls(value: str, argument: str, *, unicode: bool = False) -> None:
    """
    Refuse control characters in a value that is encoded, rather than sent
    as it is: an encoding could carry them, but nothing of a command
    argument may be one.

    @param value: the value.
    @param argument: its name, for the error.
    @param unicode: also refuse C1 controls (U+0080 to U+009F), U+2028,
        U+2029 and lone surrogates.
    @raise CommandArgumentError: if C{value} holds one of them.
    """
    for char in value:
        if char < " " or char == "\x7f":
            raise CommandArgumentError(
                argument, value, f"contains control character U+{ord(char):04X}"
            )
        if unicode and (
            "\x80" <= char <= "\x9f"
            or char in "\u2028\u2029"
            or "\ud800" <= char <= "\udfff"
        ):
            raise CommandArgumentError(
                argument, value, f"contains U+{ord(char):04X}, which is not allowed"
            )


def _requireText(value: object, argument: str) -> str:
    """
    @param value: a value that must be text.
    @param argument: its name, for the error.
    @return: C{value}.
    @raise InvalidArgumentError: if C{value} is not a L{str}.
    """
    if not isinstance(value, str):
        raise InvalidArgumentError(argument, value, "must be a string")
    return value


def xtext(value: str, *, argument: str = "xtext") -> str:
    """
    Encode ASCII text as RFC 3461 C{xtext} (section 4): C{"+"}, C{"="} and
    every character outside C{"!"} to C{"~"} (the space) become C{"+HH"},
    with two upper-case hexadecimal digits.

    @param value: the text; printable ASCII and spaces.
    @param argument: the value's name, for errors.
    @return: the xtext.
    @raise CommandArgumentError: if C{value} holds a control character.
    @raise InvalidArgumentError: if C{value} is not ASCII text (xtext
        carries ASCII only).
    """
    _refuseControls(_requireText(value, argument), argument)
    if not value.isascii():
        raise InvalidArgumentError(
            argument, value, "must be ASCII (xtext, RFC 3461, carries ASCII only)"
        )
    return "".join(
        f"+{ord(c):02X}" if c in "+=" or not "!" <= c <= "~" else c for c in value
    )


def _embedded(char: str) -> str:
    """
    @param char: one character.
    @return: its RFC 6533 C{EmbeddedUnicodeChar} form, such as C{"\\x{2B}"}:
        upper-case hexadecimal without leading zeros, at least two digits.
    """
    return f"\\x{{{ord(char):02X}}}"


# RFC 6533 section 3: QCHAR is printable ASCII except "+", "=" and "\";
# these (and the space) must be written as EmbeddedUnicodeChar.
_UTF8_ADDR_SPECIALS = frozenset("+=\\ ")


def _utf8Addr(value: str, argument: str, *, keepUnicode: bool) -> str:
    """
    Encode an address as RFC 6533 C{utf-8-addr-xtext} or
    C{utf-8-addr-unitext}.

    @param value: the address.
    @param argument: its name, for errors.
    @param keepUnicode: keep non-ASCII characters as they are (unitext)
        instead of escaping them (xtext).
    @return: the encoded address.
    @raise CommandArgumentError: if C{value} holds a control character
        (C0 or C1), U+2028, U+2029 or a lone surrogate.
    @raise InvalidArgumentError: if C{value} is not text.
    """
    _refuseControls(_requireText(value, argument), argument, unicode=True)
    return "".join(
        _embedded(c)
        if c in _UTF8_ADDR_SPECIALS or (not keepUnicode and not c.isascii())
        else c
        for c in value
    )


def utf8AddrXtext(value: str, *, argument: str = "address") -> str:
    """
    Encode an address as RFC 6533 C{utf-8-addr-xtext} (section 3): ASCII
    only, with C{"+"}, C{"="}, C{"\\"}, the space and every non-ASCII
    character as C{"\\x{HHHH}"}.  It is valid xtext, so it can be sent
    without SMTPUTF8.

    @param value: the address.
    @param argument: its name, for errors.
    @return: the encoded address.
    @raise CommandArgumentError: if C{value} holds a control character
        (C0 or C1), U+2028, U+2029 or a lone surrogate.
    """
    return _utf8Addr(value, argument, keepUnicode=False)


def utf8AddrUnitext(value: str, *, argument: str = "address") -> str:
    """
    Encode an address as RFC 6533 C{utf-8-addr-unitext} (section 3): as
    L{utf8AddrXtext}, but non-ASCII characters are kept as they are, so it
    needs SMTPUTF8.

    @param value: the address.
    @param argument: its name, for errors.
    @return: the encoded address.
    @raise CommandArgumentError: if C{value} holds a control character
        (C0 or C1), U+2028, U+2029 or a lone surrogate.
    """
    return _utf8Addr(value, argument, keepUnicode=True)


def orcptParameter(
    address: str, *, smtputf8: bool, argument: str = "originalRecipient"
) -> str:
    """
    Make the C{ORCPT} parameter of C{RCPT} (RFC 3461 section 4.2, RFC 6533
    section 3).

    @param address: the original recipient's address.
    @param smtputf8: SMTPUTF8 is in use for the transaction.
    @param argument: the address's name, for errors.
    @return: C{"ORCPT=rfc822;<xtext>"} for an ASCII address;
        C{"ORCPT=utf-8;<utf-8-addr-unitext>"} for a non-ASCII one when
        C{smtputf8}, else C{"ORCPT=utf-8;<utf-8-addr-xtext>"}.
    @raise CommandArgumentError: if C{address} holds a control character
        (C0 or C1), U+2028, U+2029 or a lone surrogate.
    @raise InvalidArgumentError: if the encoded address is longer than 500
        characters.
    """
    _requireText(address, argument)
    if address.isascii():
        value = "rfc822;" + xtext(address, argument=argument)
    elif smtputf8:
        value = "utf-8;" + utf8AddrUnitext(address, argument=argument)
    else:
        value = "utf-8;" + utf8AddrXtext(address, argument=argument)
    if len(value) > MAX_ORCPT_LENGTH:
        raise InvalidArgumentError(
            argument,
            address,
            f"is {len(value)} characters long encoded; ORCPT allows "
            f"{MAX_ORCPT_LENGTH} (RFC 3461)",
        )
    return "ORCPT=" + value


# -- internationalized addresses -------------------------------------------------


def _splitAddress(address: str) -> tuple[str, str | None]:
    """
    @param address: an address such as C{"user@example.com"}.
    @return: its local part and its domain (after the last C{"@"}), or the
        whole address and L{None} when it has no C{"@"} (C{postmaster}).
    """
    local, at, domain = address.rpartition("@")
    if not at:
        return address, None
    return local, domain


def needsSMTPUTF8(address: str) -> bool:
    """
    @param address: an address.
    @return: C{True} when its local part is not ASCII: such an address can
        be sent only with SMTPUTF8 (a non-ASCII domain can be sent as IDNA
        A-labels instead, see L{toASCIIAddress}).
    """
    local, _ = _splitAddress(address)
    return not local.isascii()


def toASCIIAddress(address: str, *, argument: str = "address") -> str:
    """
    Make the ASCII form of an address for a transaction without SMTPUTF8:
    a non-ASCII domain becomes IDNA A-labels (UTS #46 mapping, not
    transitional, so C{"faß.de"} stays distinct from C{"fass.de"}).

    An ASCII address is returned unchanged (nothing is lower-cased or
    otherwise rewritten), as is an address literal such as
    C{"[192.0.2.1]"}.

    @param address: the address.
    @param argument: its name, for errors.
    @return: the address with an ASCII domain.
    @raise UnsupportedFeatureError: if the local part is not ASCII: that
        needs SMTPUTF8.
    @raise InvalidArgumentError: if the domain is not a valid
        internationalized domain name, or is a non-ASCII address literal.
    """
    local, domain = _splitAddress(address)
    if not local.isascii():
        raise UnsupportedFeatureError(
            argument,
            address,
            f"the local part {local!r} is not ASCII, which needs SMTPUTF8",
        )
    if domain is None or domain.isascii():
        return address
    if domain.startswith("["):
        raise InvalidArgumentError(
            argument, address, f"the address literal {domain!r} is not ASCII"
        )
    try:
        ascii = idna.encode(domain, uts46=True, transitional=False)
    except idna.IDNAError as e:
        raise InvalidArgumentError(
            argument,
            address,
            f"the domain {domain!r} is not a valid internationalized domain name: {e}",
        ) from None
    return f"{local}@{ascii.decode('ascii')}"


# -- values ------------------------------------------------------------------------


def _notifyConverter(value: Iterable[str] | None) -> tuple[str, ...] | None:
    """
    Check and normalise a C{NOTIFY} request.

    @param value: keywords among C{SUCCESS}, C{FAILURE} and C{DELAY}, in
        any case, or C{NEVER} alone; L{None} for no request.
    @return: the keywords upper-cased, without duplicates, in the order
        C{SUCCESS}, C{FAILURE}, C{DELAY}; or C{("NEVER",)}; or L{None}.
    @raise InvalidArgumentError: if C{value} is one string rather than a
        sequence, is empty, holds an unknown keyword or a non-string, or
        combines C{NEVER} with another keyword.
    """
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise InvalidArgumentError(
            "notify",
            value,
            "must be a sequence of keywords such as ('SUCCESS', 'FAILURE'), "
            "not one string",
        )
    given = tuple(value)
    keywords: set[str] = set()
    for keyword in given:
        if not isinstance(keyword, str) or (
            keyword.upper() not in (*NOTIFY_KEYWORDS, NOTIFY_NEVER)
        ):
            raise InvalidArgumentError(
                "notify",
                given,
                f"unknown keyword {keyword!r}: use SUCCESS, FAILURE, DELAY or NEVER",
            )
        keywords.add(keyword.upper())
    if not keywords:
        raise InvalidArgumentError(
            "notify",
            given,
            "must not be empty: use ('NEVER',) to ask for no notification",
        )
    if NOTIFY_NEVER in keywords:
        if len(keywords) > 1:
            raise InvalidArgumentError(
                "notify", given, "NEVER cannot be combined with other keywords"
            )
        return (NOTIFY_NEVER,)
    return tuple(k for k in NOTIFY_KEYWORDS if k in keywords)


def _retConverter(value: str | None) -> str | None:
    """
    @param value: C{"FULL"} or C{"HDRS"} in any case, or L{None}.
    @return: C{value} upper-cased.
    @raise InvalidArgumentError: for anything else.
    """
    if value is None:
        return None
    if not isinstance(value, str) or value.upper() not in RET_VALUES:
        raise InvalidArgumentError(
            "ret", value, "must be 'FULL' (the whole message) or 'HDRS' (headers)"
        )
    return value.upper()


def _envelopeIdConverter(value: str | None) -> str | None:
    """
    @param value: an envelope identifier, or L{None}.
    @return: C{value}.
    @raise CommandArgumentError: if it holds a control character.
    @raise InvalidArgumentError: if it is not ASCII text, is empty, or its
        xtext is longer than 100 characters.
    """
    if value is None:
        return None
    argument = "envelopeId"
    encoded = xtext(value, argument=argument)
    if not encoded:
        raise InvalidArgumentError(argument, value, "must not be empty")
    if len(encoded) > MAX_ENVID_LENGTH:
        raise InvalidArgumentError(
            argument,
            value,
            f"is {len(encoded)} characters long as xtext; ENVID allows "
            f"{MAX_ENVID_LENGTH} (RFC 3461)",
        )
    return value


def _recipientAddress(value: str | bytes) -> str:
    """
    @param value: a recipient's address; bytes must be UTF-8.
    @return: the address as text.
    @raise CommandArgumentError: if it is unsafe to send (see
        L{validateAddress}).
    """
    return validateAddress(value, "toAddress", utf8=True)


def _originalRecipient(value: str | bytes | None) -> str | None:
    """
    @param value: an original recipient's address, or L{None}.
    @return: the address as text.
    @raise CommandArgumentError: if it is unsafe to send (see
        L{validateAddress}).
    """
    if value is None:
        return None
    return validateAddress(value, "originalRecipient", utf8=True)


@attrs.frozen
class DSN:
    """
    The per-message delivery status notification options of RFC 3461, sent
    only when the server advertises C{DSN}.

    @ivar ret: C{"FULL"} to have notifications carry the whole message,
        C{"HDRS"} for its headers only (upper-cased); L{None} lets the
        server choose.
    @ivar envelopeId: an identifier returned in every notification
        (C{ENVID}): printable ASCII and spaces, sent as xtext, at most 100
        characters in that form.
    @ivar notify: the default C{NOTIFY} of every recipient without its own:
        any of C{"SUCCESS"}, C{"FAILURE"}, C{"DELAY"}, or C{("NEVER",)}
        alone; normalised to upper case, without duplicates, in that order.
    """

    ret: str | None = attrs.field(default=None, converter=_retConverter)
    envelopeId: str | None = attrs.field(default=None, converter=_envelopeIdConverter)
    notify: tuple[str, ...] | None = attrs.field(
        default=None, converter=_notifyConverter
    )


@attrs.frozen
class Recipient:
    """
    A recipient with its own delivery status notification options.

    @ivar address: the address, as the caller gave it (bytes are decoded as
        UTF-8); it is checked for safety when the recipient is made.
    @ivar notify: this recipient's C{NOTIFY}, overriding L{DSN.notify};
        normalised as there.
    @ivar originalRecipient: the address to report as the original
        recipient (C{ORCPT}, RFC 3461 / RFC 6533), such as the address
        before a forwarding.
    """

    address: str = attrs.field(converter=_recipientAddress)
    notify: tuple[str, ...] | None = attrs.field(
        default=None, converter=_notifyConverter
    )
    originalRecipient: str | None = attrs.field(
        default=None, converter=_originalRecipient
    )


def toRecipient(value: Recipient | str | bytes) -> Recipient:
    """
    @param value: a L{Recipient} or an address.
    @return: C{value} itself, or a L{Recipient} of the address without
        options.
    @raise CommandArgumentError: if the address is unsafe to send.
    """
    if isinstance(value, Recipient):
        return value
    return Recipient(value)


@attrs.frozen
class MessageFacts:
    """
    What the planner must know about a message.

    @ivar size: its size in octets as read, if known.
    @ivar eightBit: C{True} when it has octets above 127, C{False} when it
        has none, L{None} when unknown (a stream that cannot be scanned up
        front).
    @ivar binary: it has NUL octets, which only C{BINARYMIME} can carry.
    @ivar headersNeedUTF8: its header section (up to the first empty line)
        has non-ASCII octets.
    @ivar canDowngrade: it can be re-serialised with 7-bit transfer
        encodings and with RFC 2047 encoded headers (it came from an
        L{email.message.Message}).
    """

    size: int | None
    eightBit: bool | None
    binary: bool = False
    headersNeedUTF8: bool = False
    canDowngrade: bool = False


@attrs.frozen
class PlannedRecipient:
    """
    One recipient of a planned transaction.

    @ivar address: the address as the caller gave it (the key of its
        result).
    @ivar wireAddress: the address to send in C{RCPT TO:<...>}.
    @ivar params: the C{RCPT} parameters (C{NOTIFY}, C{ORCPT}).
    """

    address: str
    wireAddress: str
    params: tuple[str, ...] = ()


@attrs.frozen
class EnvelopePlan:
    """
    How one SMTP transaction sends a message.

    @ivar sender: the reverse-path to send in C{MAIL FROM:<...>}.
    @ivar recipients: the recipients, in order.
    @ivar mailParams: the C{MAIL} parameters, without C{SIZE} (see
        L{sizeParameter}).
    @ivar smtputf8: SMTPUTF8 is in use: encode C{MAIL} and C{RCPT} with
        C{utf8=True}.
    @ivar body: the C{BODY} parameter's value, or L{None} to send none
        (L{planEnvelope} never chooses C{"7BIT"}).
    @ivar chunking: send the message with C{BDAT} rather than C{DATA}.
    @ivar downgrade: re-serialise the message with 7-bit transfer encodings.
    @ivar utf8Headers: serialise the message's headers as raw UTF-8 (else
        RFC 2047 encoded).
    @ivar extensions: the keywords of the extensions this transaction uses,
        among C{SMTPUTF8}, C{8BITMIME}, C{BINARYMIME}, C{CHUNKING}, C{DSN},
        C{SIZE} and C{REQUIRETLS}.
    """

    sender: str
    recipients: tuple[PlannedRecipient, ...]
    mailParams: tuple[str, ...] = ()
    smtputf8: bool = False
    body: BodyType | None = None
    chunking: bool = False
    downgrade: bool = False
    utf8Headers: bool = False
    extensions: frozenset[str] = frozenset()


# -- planning ----------------------------------------------------------------------


def _checkRequireTLS(capabilities: Capabilities, tlsActive: bool) -> None:
    """
    @raise RequireTLSError: unless the session is TLS-protected and the
        server advertises REQUIRETLS.
    """
    if not tlsActive:
        raise RequireTLSError("the session is not protected by TLS")
    if not capabilities.requireTLS:
        raise RequireTLSError("the server does not advertise REQUIRETLS")


def _planBody(
    facts: MessageFacts,
    capabilities: Capabilities,
    smtputf8: bool,
    utf8Headers: bool,
) -> tuple[BodyType | None, bool]:
    """
    Choose the C{BODY} parameter and whether to re-encode the message.

    @return: the C{BODY} value (or L{None}) and whether to downgrade.
    @raise UnsupportedFeatureError: if the server cannot carry the message
        and it cannot be re-encoded.
    """
    if facts.binary:
        if capabilities.chunking and capabilities.binaryMIME:
            return "BINARYMIME", False
        if not facts.canDowngrade:
            raise UnsupportedFeatureError(
                "message",
                "binary data",
                "the message has NUL octets (binary data), which need "
                "BINARYMIME and CHUNKING; the server does not advertise "
                "both, and only an email.message.Message can be re-encoded",
            )
        # Once re-encoded, only UTF-8 headers are left 8-bit.
        eightBitLeft = utf8Headers and facts.headersNeedUTF8
        if eightBitLeft and capabilities.eightBitMIME:
            return "8BITMIME", True
        return None, True
    if facts.eightBit is False:
        return None, False
    if capabilities.eightBitMIME:
        return "8BITMIME", False
    if facts.eightBit is None or smtputf8:
        # Unknown: the protocol checks while streaming.  SMTPUTF8 implies
        # 8-bit transport (RFC 6531).
        return None, False
    if facts.canDowngrade:
        return None, True
    raise UnsupportedFeatureError(
        "message",
        "8-bit data",
        "the message has 8-bit octets and the server does not advertise "
        "8BITMIME; only an email.message.Message can be re-encoded",
    )


def planEnvelope(
    sender: str | bytes,
    recipients: Sequence[Recipient | str | bytes],
    facts: MessageFacts,
    capabilities: Capabilities,
    *,
    dsn: DSN | None = None,
    requireTLS: bool = False,
    tlsActive: bool = False,
    preferChunking: bool = True,
) -> EnvelopePlan:
    """
    Decide every parameter of one transaction.

    @param sender: the reverse-path (C{""} for the null sender).
    @param recipients: the recipients of this transaction (plain addresses
        are taken as L{Recipient}s without options).
    @param facts: what is known of the message.
    @param capabilities: what the server advertised.
    @param dsn: the message's DSN options; ignored (and C{"DSN"} left out
        of L{EnvelopePlan.extensions}) when the server does not advertise
        C{DSN}, as are the recipients' own.
    @param requireTLS: the message requires REQUIRETLS (RFC 8689).
    @param tlsActive: the session is protected by TLS.
    @param preferChunking: use C{BDAT} whenever the server offers
        C{CHUNKING} (binary data uses it regardless).
    @return: the plan.
    @raise RequireTLSError: if C{requireTLS} but the session is not
        TLS-protected or the server does not advertise REQUIRETLS.
    @raise UnsupportedFeatureError: if the server cannot carry the message:
        a non-ASCII local part or UTF-8 headers without SMTPUTF8 (unless
        the headers can be re-encoded), 8-bit data without 8BITMIME or
        binary data without BINARYMIME and CHUNKING (unless the message can
        be re-encoded).
    @raise InvalidArgumentError: if there is no recipient, or a non-ASCII
        domain is not a valid IDNA domain name.
    @raise CommandArgumentError: if an address is unsafe to send.
    """
    if requireTLS:
        _checkRequireTLS(capabilities, tlsActive)
    senderText = validateAddress(sender, "fromAddress", allowEmpty=True, utf8=True)
    wanted = tuple(toRecipient(r) for r in recipients)
    if not wanted:
        raise InvalidArgumentError(
            "toAddresses", recipients, "at least one recipient is needed"
        )
    useDSN = capabilities.dsn

    envelopeText = [senderText, *(r.address for r in wanted)]
    if useDSN:
        envelopeText += [
            r.originalRecipient for r in wanted if r.originalRecipient is not None
        ]
    wantsUTF8 = facts.headersNeedUTF8 or not all(a.isascii() for a in envelopeText)
    smtputf8 = wantsUTF8 and capabilities.smtpUTF8

    if smtputf8:
        senderWire = senderText
        wires = [r.address for r in wanted]
    else:
        for argument, address in [
            ("fromAddress", senderText),
            *(("toAddress", r.address) for r in wanted),
        ]:
            if needsSMTPUTF8(address):
                raise UnsupportedFeatureError(
                    argument,
                    address,
                    "the local part is not ASCII, which needs SMTPUTF8; the "
                    "server does not advertise SMTPUTF8",
                )
        senderWire = toASCIIAddress(senderText, argument="fromAddress")
        wires = [toASCIIAddress(r.address, argument="toAddress") for r in wanted]
        if facts.headersNeedUTF8 and not facts.canDowngrade:
            raise UnsupportedFeatureError(
                "message",
                "UTF-8 headers",
                "the message header has non-ASCII characters, which need "
                "SMTPUTF8; the server does not advertise it, and only an "
                "email.message.Message can be re-encoded",
            )
    utf8Headers = smtputf8

    body, downgrade = _planBody(facts, capabilities, smtputf8, utf8Headers)
    chunking = capabilities.chunking and (preferChunking or body == "BINARYMIME")

    mailParams: list[str] = []
    extensions: set[str] = set()
    if body is not None:
        mailParams.append(f"BODY={body}")
        extensions.add(body)
    if smtputf8:
        mailParams.append("SMTPUTF8")
        extensions.add("SMTPUTF8")
    if requireTLS:
        mailParams.append("REQUIRETLS")
        extensions.add("REQUIRETLS")
    dsnParams: list[str] = []
    if useDSN and dsn is not None:
        if dsn.ret is not None:
            dsnParams.append(f"RET={dsn.ret}")
        if dsn.envelopeId is not None:
            dsnParams.append(f"ENVID={xtext(dsn.envelopeId)}")
    mailParams += dsnParams
    defaultNotify = dsn.notify if dsn is not None else None

    planned = []
    for recipient, wire in zip(wanted, wires, strict=True):
        params: list[str] = []
        if useDSN:
            notify = recipient.notify or defaultNotify
            if notify is not None:
                params.append("NOTIFY=" + ",".join(notify))
            if recipient.originalRecipient is not None:
                params.append(
                    orcptParameter(recipient.originalRecipient, smtputf8=smtputf8)
                )
        planned.append(PlannedRecipient(recipient.address, wire, tuple(params)))

    if dsnParams or any(p.params for p in planned):
        extensions.add("DSN")
    if chunking:
        extensions.add("CHUNKING")
    if capabilities.sizeAdvertised and facts.size is not None:
        extensions.add("SIZE")
    return EnvelopePlan(
        sender=senderWire,
        recipients=tuple(planned),
        mailParams=tuple(mailParams),
        smtputf8=smtputf8,
        body=body,
        chunking=chunking,
        downgrade=downgrade,
        utf8Headers=utf8Headers,
        extensions=frozenset(extensions),
    )


def sizeParameter(size: int | None, capabilities: Capabilities) -> str | None:
    """
    Make the C{SIZE} parameter of C{MAIL} (RFC 1870).

    @param size: the size of the message as it will be sent, if known.
    @param capabilities: what the server advertised.
    @return: C{"SIZE=<size>"} when the server advertises C{SIZE} and
        C{size} is known, else L{None}.
    @raise MessageTooLargeError: if the server declared a limit (other than
        C{0}, no limit) and C{size} exceeds it.
    """
    if size is None or not capabilities.sizeAdvertised:
        return None
    limit = capabilities.size
    if limit is not None and size > limit:
        raise MessageTooLargeError(size, limit)
    return f"SIZE={size}"


def _domainKey(address: str) -> str:
    """
    @param address: an address.
    @return: its domain, case-folded, for counting distinct domains (C{""}
        for an address without one).
    """
    _, domain = _splitAddress(address)
    return (domain or "").casefold()


def recipientBatches(
    recipients: Sequence[Recipient | str | bytes], limits: Mapping[str, int]
) -> list[tuple[Recipient, ...]]:
    """
    Split recipients into transactions that respect the server's RFC 9422
    C{LIMITS}.

    C{RCPTMAX} caps the recipients of one transaction, C{RCPTDOMAINMAX}
    the distinct domains (compared case-insensitively, as written: a
    domain and its A-label form count twice, which errs on the safe side).
    Each recipient goes into the first batch it fits in, so batches keep
    the recipients' order and follow the order of their first recipients;
    with a single limit that is plain consecutive slicing.  A limit that is
    absent or not positive does not apply.

    @param recipients: the recipients, in order (plain addresses are taken
        as L{Recipient}s without options).
    @param limits: the server's limits by upper-cased name, as in
        L{Capabilities.limits}.
    @return: the batches, at least one for at least one recipient, none for
        none.
    @raise CommandArgumentError: if a plain address is unsafe to send.
    """
    upper = {name.upper(): value for name, value in limits.items()}
    rcptMax = upper.get("RCPTMAX", 0)
    domainMax = upper.get("RCPTDOMAINMAX", 0)
    batches: list[tuple[list[Recipient], set[str]]] = []
    # Batches before this one are full: no need to look at them again.
    firstOpen = 0
    for given in recipients:
        recipient = toRecipient(given)
        domain = _domainKey(recipient.address)
        for members, domains in batches[firstOpen:]:
            if rcptMax > 0 and len(members) >= rcptMax:
                continue
            if domainMax > 0 and domain not in domains and len(domains) >= domainMax:
                continue
            members.append(recipient)
            domains.add(domain)
            break
        else:
            batches.append(([recipient], {domain}))
        while (
            rcptMax > 0
            and firstOpen < len(batches)
            and len(batches[firstOpen][0]) >= rcptMax
        ):
            firstOpen += 1
    return [tuple(members) for members, _ in batches]
