"""
SMTP command encoders.

Every encoder returns one complete command line as bytes, ending with
CRLF.  Every text argument is checked first: a CR, LF, NUL or any other
ASCII control character (0x00-0x1f, 0x7f) is refused with
L{CommandArgumentError}, as is anything else that would break the command's
syntax.  Nothing is ever silently rewritten, so no argument can inject a
second command.

Non-ASCII addresses and parameters need the C{SMTPUTF8} extension (RFC
6531): they are refused with L{UnsupportedFeatureError} unless the caller
says, with C{utf8=True}, that SMTPUTF8 is in use for the transaction.  Even
then, C1 control characters (U+0080 to U+009F) and the Unicode line and
paragraph separators (U+2028, U+2029) are refused with
L{CommandArgumentError}: some software treats them as line ends.

AUTH payloads are bytes and are always sent base64-encoded, so any octet
(including the NULs of C{PLAIN}) is safe in them.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence

from mailclient.errors import CommandArgumentError, UnsupportedFeatureError

__all__ = [
    "auth",
    "authCancel",
    "authResponse",
    "bdat",
    "commandVerb",
    "data",
    "ehlo",
    "helo",
    "lhlo",
    "mailFrom",
    "noop",
    "quit",
    "rcptTo",
    "redactCommand",
    "rset",
    "starttls",
    "validateAddress",
    "validateHeloName",
    "validateParameter",
    "vrfy",
]

CRLF = b"\r\n"

# RFC 5321 section 4.5.3.1.3: a path is at most 256 octets, including the
# angle brackets.
MAX_ADDRESS_LENGTH = 254

# RFC 4422 section 3.1: a SASL mechanism name is 1 to 20 upper-case letters,
# digits, hyphens and underscores.
_MECHANISM = re.compile(r"[A-Z0-9_-]{1,20}", re.ASCII)

_NAMED_CONTROLS = {"\r": "CR", "\n": "LF", "\x00": "NUL"}

# Refused even when UTF-8 is allowed: some software ends a line at them.
_UNICODE_LINE_BREAKS = {"\u2028": "line separator", "\u2029": "paragraph separator"}

REDACTED = "<redacted>"


def _describeControl(char: str) -> str:
    """
    Name a control character for an error message.

    @param char: one control character.
    @return: a description such as C{"CR (0x0d)"}.
    """
    name = _NAMED_CONTROLS.get(char, "control character")
    return f"{name} (0x{ord(char):02x})"


def _requireStr(value: object, argument: str) -> str:
    """
    Refuse an argument that is not text.

    @param value: the argument.
    @param argument: its name, for the error.
    @return: C{value}.
    @raise CommandArgumentError: if C{value} is not a L{str}.
    """
    if not isinstance(value, str):
        raise CommandArgumentError(argument, value, "must be a string")
    return value


def _refuseControls(text: str, value: object, argument: str) -> None:
    """
    Refuse ASCII control characters (CR, LF, NUL, 0x00-0x1f, 0x7f).

    @param text: the argument as text.
    @param value: the argument as given, for the error.
    @param argument: its name, for the error.
    @raise CommandArgumentError: if C{text} contains a control character.
    """
    for char in text:
        if char < " " or char == "\x7f":
            raise CommandArgumentError(
                argument, value, f"contains {_describeControl(char)}"
            )


def _refuseUnicodeBreaks(text: str, value: object, argument: str) -> None:
    """
    Refuse what must not appear even in a UTF-8 argument: C1 control
    characters (U+0080 to U+009F), the Unicode line and paragraph separators
    (U+2028, U+2029) and lone surrogates (which have no UTF-8 form).

    @param text: the argument as text.
    @param value: the argument as given, for the error.
    @param argument: its name, for the error.
    @raise CommandArgumentError: if C{text} contains one of them.
    """
    for char in text:
        if "\x80" <= char <= "\x9f":
            raise CommandArgumentError(
                argument, value, f"contains C1 control character U+{ord(char):04X}"
            )
        if char in _UNICODE_LINE_BREAKS:
            name = _UNICODE_LINE_BREAKS[char]
            raise CommandArgumentError(
                argument, value, f"contains {name} U+{ord(char):04X}"
            )
        if "\ud800" <= char <= "\udfff":
            raise CommandArgumentError(
                argument,
                value,
                f"contains lone surrogate U+{ord(char):04X}, which is not "
                f"valid in UTF-8",
            )


def _checkText(value: str | bytes, argument: str, *, utf8: bool = False) -> str:
    """
    Refuse control characters, and non-ASCII text unless C{utf8}, in an
    argument.

    Control characters are checked first, so an argument that could inject
    a command is always refused with L{CommandArgumentError}, whatever else
    is wrong with it.

    @param value: the argument; bytes must be ASCII, or UTF-8 when C{utf8}.
    @param argument: its name, for the error.
    @param utf8: SMTPUTF8 is in use: accept non-ASCII (UTF-8) text, except
        C1 controls, U+2028 and U+2029.
    @return: the argument as text.
    @raise CommandArgumentError: if C{value} contains a control character,
        is neither L{str} nor L{bytes}, or (with C{utf8}) is not valid UTF-8
        or contains a C1 control, U+2028 or U+2029.
    @raise UnsupportedFeatureError: if C{value} is not ASCII and C{utf8} is
        false.
    """
    # Bytes are read octet for octet (as Latin-1) so that every octet is
    # checked; any octet above 0x7f then fails the ASCII check, or is
    # decoded as UTF-8 below.
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = _requireStr(text, argument)
    _refuseControls(text, value, argument)
    if text.isascii():
        return text
    if not utf8:
        raise UnsupportedFeatureError(
            argument,
            value,
            "contains non-ASCII characters, which need SMTPUTF8 "
            "(utf8=True, when the server advertises SMTPUTF8)",
        )
    if isinstance(value, bytes):
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandArgumentError(argument, value, "is not valid UTF-8") from None
    _refuseUnicodeBreaks(text, value, argument)
    return text


def _checkNoSpace(text: str, value: str | bytes, argument: str) -> None:
    """
    Refuse whitespace and angle brackets in an argument.

    @param text: the argument as text.
    @param value: the argument as given, for the error.
    @param argument: its name, for the error.
    @raise CommandArgumentError: if C{text} contains a space, C{"<"} or
        C{">"}.
    """
    if " " in text:
        raise CommandArgumentError(argument, value, "contains whitespace")
    if "<" in text or ">" in text:
        raise CommandArgumentError(argument, value, "contains '<' or '>'")


# Addresses that passed validateAddress, by (address, allowEmpty, utf8): the
# same few addresses are checked again and again (the send, the plan, the
# command encoders).  Only successes are kept, and at most _VALID_LIMIT.
_VALID: dict[tuple[str | bytes, bool, bool], str] = {}
_VALID_LIMIT = 4096


def validateAddress(
    address: str | bytes,
    argument: str,
    allowEmpty: bool = False,
    *,
    utf8: bool = False,
) -> str:
    """
    Check that an address can be sent safely inside C{<...>}.

    Only syntactic safety is checked, not whether the address is valid:
    no control characters, no whitespace, no angle brackets, at most
    254 octets (RFC 5321 limits a path to 256 octets with its brackets;
    counted in UTF-8 octets with C{utf8}), and an C{"@"}, except for the
    special recipient C{postmaster} (in any case) which RFC 5321 allows
    without a domain.

    @param address: the address, without angle brackets; bytes must be
        ASCII, or UTF-8 with C{utf8}.
    @param argument: the argument's name, for errors (C{"fromAddress"},
        C{"toAddress"}).
    @param allowEmpty: accept the empty address (the null reverse-path
        C{MAIL FROM:<>}).
    @param utf8: SMTPUTF8 (RFC 6531) is in use: accept non-ASCII
        characters, but still refuse C1 controls (U+0080 to U+009F), U+2028
        and U+2029.
    @return: the address as text.
    @raise CommandArgumentError: if the address is unsafe or empty (unless
        C{allowEmpty}).
    @raise UnsupportedFeatureError: if the address is not ASCII and C{utf8}
        is false.
    """
    key = (address, allowEmpty, utf8)
    # Only text and bytes can be valid (and hashed): anything else is
    # refused below.
    known = _VALID.get(key) if isinstance(address, str | bytes) else None
    if known is not None:
        return known
    text = _checkText(address, argument, utf8=utf8)
    if not text:
        if allowEmpty:
            return text
        raise CommandArgumentError(argument, address, "must not be empty")
    _checkNoSpace(text, address, argument)
    octets = len(text.encode("utf-8"))
    if octets > MAX_ADDRESS_LENGTH:
        raise CommandArgumentError(
            argument,
            address,
            f"is {octets} octets long; the limit is {MAX_ADDRESS_LENGTH}",
        )
    if "@" not in text and text.lower() != "postmaster":
        raise CommandArgumentError(
            argument, address, "has no '@' (only postmaster may omit the domain)"
        )
    if len(_VALID) >= _VALID_LIMIT:
        _VALID.clear()
    _VALID[key] = text
    return text


def validateHeloName(name: str) -> str:
    """
    Check that a name can be sent as the argument of C{EHLO}, C{HELO} or
    C{LHLO}.

    @param name: a host name or an address literal such as C{"[127.0.0.1]"};
        internationalized names must be IDNA-encoded first.
    @return: C{name}.
    @raise CommandArgumentError: if C{name} is empty, or contains
        whitespace, control characters or non-ASCII characters.
    """
    argument = "heloName"
    text = _requireStr(name, argument)
    _refuseControls(text, name, argument)
    if not text.isascii():
        raise CommandArgumentError(
            argument, name, "contains non-ASCII characters; encode it with IDNA"
        )
    if not text:
        raise CommandArgumentError(argument, name, "must not be empty")
    if " " in text:
        raise CommandArgumentError(argument, name, "contains whitespace")
    return text


def validateParameter(parameter: str, *, utf8: bool = False) -> str:
    """
    Check one ESMTP parameter of C{MAIL} or C{RCPT}, such as C{"SIZE=100"}.

    @param parameter: the parameter.
    @param utf8: SMTPUTF8 is in use: accept UTF-8 text (as in an RFC 6533
        C{ORCPT=utf-8;...} parameter), but still refuse C1 controls, U+2028
        and U+2029.
    @return: C{parameter}.
    @raise CommandArgumentError: if the parameter is empty, or contains
        whitespace, control characters, C{"<"} or C{">"}.
    @raise UnsupportedFeatureError: if the parameter is not ASCII and
        C{utf8} is false.
    """
    argument = "parameter"
    text = _checkText(_requireStr(parameter, argument), argument, utf8=utf8)
    if not text:
        raise CommandArgumentError(argument, parameter, "must not be empty")
    _checkNoSpace(text, parameter, argument)
    return text


def _pathCommand(prefix: str, address: str, params: Sequence[str], utf8: bool) -> bytes:
    """
    Encode C{MAIL} or C{RCPT} with a validated address.

    @param prefix: C{"MAIL FROM:"} or C{"RCPT TO:"}.
    @param address: the validated address.
    @param params: the ESMTP parameters, not yet validated.
    @param utf8: SMTPUTF8 is in use: parameters may be UTF-8, and the line
        is encoded as UTF-8.
    @return: the command line.
    @raise CommandArgumentError: if a parameter is unsafe, or C{params} is a
        single string rather than a sequence of them.
    @raise UnsupportedFeatureError: if a parameter is not ASCII and C{utf8}
        is false.
    """
    if isinstance(params, str):
        raise CommandArgumentError(
            "parameter", params, "must be a sequence of parameters, not one string"
        )
    words = [
        f"{prefix}<{address}>",
        *(validateParameter(p, utf8=utf8) for p in params),
    ]
    return " ".join(words).encode("utf-8" if utf8 else "ascii") + CRLF


def ehlo(name: str) -> bytes:
    """
    @param name: our host name or address literal.
    @return: the C{EHLO} command.
    @raise CommandArgumentError: see L{validateHeloName}.
    """
    return b"EHLO " + validateHeloName(name).encode("ascii") + CRLF


def helo(name: str) -> bytes:
    """
    @param name: our host name or address literal.
    @return: the C{HELO} command.
    @raise CommandArgumentError: see L{validateHeloName}.
    """
    return b"HELO " + validateHeloName(name).encode("ascii") + CRLF


def lhlo(name: str) -> bytes:
    """
    Encode C{LHLO}, the greeting of LMTP (RFC 2033) in place of C{EHLO}.

    @param name: our host name or address literal.
    @return: the C{LHLO} command.
    @raise CommandArgumentError: see L{validateHeloName}.
    """
    return b"LHLO " + validateHeloName(name).encode("ascii") + CRLF


def mailFrom(
    address: str | bytes, params: Sequence[str] = (), *, utf8: bool = False
) -> bytes:
    """
    @param address: the reverse-path; C{""} gives the null reverse-path
        C{MAIL FROM:<>}.
    @param params: ESMTP parameters such as C{"SIZE=100"}, appended in order.
    @param utf8: SMTPUTF8 is in use for this transaction: the address and
        parameters may be UTF-8 and the line is encoded as UTF-8.  It does
        not add the C{SMTPUTF8} parameter: pass that in C{params}.
    @return: the C{MAIL FROM} command.
    @raise CommandArgumentError: if the address or a parameter is unsafe
        (argument C{"fromAddress"} or C{"parameter"}).
    @raise UnsupportedFeatureError: if the address or a parameter is not
        ASCII and C{utf8} is false.
    """
    text = validateAddress(address, "fromAddress", allowEmpty=True, utf8=utf8)
    return _pathCommand("MAIL FROM:", text, params, utf8)


def rcptTo(
    address: str | bytes, params: Sequence[str] = (), *, utf8: bool = False
) -> bytes:
    """
    @param address: the forward-path; it may not be empty.
    @param params: ESMTP parameters such as C{"NOTIFY=NEVER"}, appended in
        order.
    @param utf8: SMTPUTF8 is in use for this transaction: the address and
        parameters may be UTF-8 and the line is encoded as UTF-8.
    @return: the C{RCPT TO} command.
    @raise CommandArgumentError: if the address or a parameter is unsafe or
        the address is empty (argument C{"toAddress"} or C{"parameter"}).
    @raise UnsupportedFeatureError: if the address or a parameter is not
        ASCII and C{utf8} is false.
    """
    text = validateAddress(address, "toAddress", utf8=utf8)
    return _pathCommand("RCPT TO:", text, params, utf8)


def vrfy(string: str | bytes, *, utf8: bool = False) -> bytes:
    """
    Encode C{VRFY} (RFC 5321 section 3.5.1).

    The argument is an RFC 5321 C{String}: an atom without whitespace (a
    user name or an address), or a quoted string C{"..."}, which may hold
    spaces.

    @param string: what to verify; bytes must be ASCII, or UTF-8 with
        C{utf8}.
    @param utf8: the server advertised SMTPUTF8: non-ASCII (UTF-8) text is
        allowed and the C{SMTPUTF8} parameter is appended (RFC 6531 section
        3.7.4.2), so that the server may reply in UTF-8.
    @return: the C{VRFY} command.
    @raise CommandArgumentError: if C{string} is empty, contains control
        characters, C1 controls, U+2028 or U+2029, or whitespace outside a
        quoted string (argument C{"string"}).
    @raise UnsupportedFeatureError: if C{string} is not ASCII and C{utf8}
        is false.
    """
    argument = "string"
    text = _checkText(string, argument, utf8=utf8)
    if not text:
        raise CommandArgumentError(argument, string, "must not be empty")
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    if " " in text and not quoted:
        raise CommandArgumentError(
            argument, string, "contains whitespace outside a quoted string"
        )
    line = f"VRFY {text}" + (" SMTPUTF8" if utf8 else "")
    return line.encode("utf-8") + CRLF


def bdat(size: int, last: bool = False) -> bytes:
    """
    Encode C{BDAT} (RFC 3030 CHUNKING): the command that precedes a chunk of
    exactly C{size} octets of message data.

    @param size: the chunk's size in octets; C{0} is valid (an empty last
        chunk).
    @param last: this is the message's last chunk: append C{LAST}.
    @return: the C{BDAT} command, such as C{b"BDAT 123 LAST\\r\\n"}.
    @raise CommandArgumentError: if C{size} is not a non-negative L{int}
        (a L{bool} is refused), or C{last} is not a L{bool}.
    """
    if type(size) is not int or size < 0:
        raise CommandArgumentError("size", size, "must be a non-negative integer")
    if not isinstance(last, bool):
        raise CommandArgumentError("last", last, "must be True or False")
    return b"BDAT %d%s" % (size, b" LAST" if last else b"") + CRLF


def data() -> bytes:
    """
    @return: the C{DATA} command.
    """
    return b"DATA" + CRLF


def rset() -> bytes:
    """
    @return: the C{RSET} command.
    """
    return b"RSET" + CRLF


def quit() -> bytes:
    """
    @return: the C{QUIT} command.
    """
    return b"QUIT" + CRLF


def noop() -> bytes:
    """
    @return: the C{NOOP} command.
    """
    return b"NOOP" + CRLF


def starttls() -> bytes:
    """
    @return: the C{STARTTLS} command.
    """
    return b"STARTTLS" + CRLF


def _encodeAuthData(response: bytes) -> bytes:
    """
    Base64-encode an AUTH payload.

    @param response: the payload.
    @return: its base64 form, without line breaks.
    @raise CommandArgumentError: if C{response} is not bytes (argument
        C{"authData"}).
    """
    if not isinstance(response, bytes):
        raise CommandArgumentError("authData", response, "must be bytes")
    return base64.b64encode(response)


def auth(mechanism: str, initialResponse: bytes | None = None) -> bytes:
    """
    Encode C{AUTH} (RFC 4954).

    @param mechanism: the SASL mechanism name, such as C{"PLAIN"}: 1 to 20
        upper-case letters, digits, C{"-"} or C{"_"} (RFC 4422).
    @param initialResponse: the initial response, sent base64-encoded;
        C{b""} is sent as C{"="} (an empty initial response), L{None} sends
        none.
    @return: the C{AUTH} command.
    @raise CommandArgumentError: if the mechanism is not a SASL mechanism
        name (argument C{"mechanism"}) or the initial response is not bytes
        (argument C{"authData"}).
    """
    _refuseControls(_requireStr(mechanism, "mechanism"), mechanism, "mechanism")
    if _MECHANISM.fullmatch(mechanism) is None:
        raise CommandArgumentError(
            "mechanism",
            mechanism,
            "is not a SASL mechanism name (1-20 of A-Z, 0-9, '-', '_')",
        )
    line = b"AUTH " + mechanism.encode("ascii")
    if initialResponse is not None:
        line += b" " + (_encodeAuthData(initialResponse) or b"=")
    return line + CRLF


def authResponse(response: bytes) -> bytes:
    """
    Encode a response to an AUTH challenge.

    @param response: the response; C{b""} gives an empty line.
    @return: the base64-encoded response line.
    @raise CommandArgumentError: if C{response} is not bytes (argument
        C{"authData"}).
    """
    return _encodeAuthData(response) + CRLF


def authCancel() -> bytes:
    """
    @return: the line that cancels an AUTH exchange (RFC 4954).
    """
    return b"*" + CRLF


def _lineText(line: bytes) -> str:
    """
    @param line: a command line.
    @return: the line as text, without its CRLF.
    """
    if line.endswith(CRLF):
        line = line[: -len(CRLF)]
    return line.decode("utf-8", errors="replace")


def commandVerb(line: bytes) -> str:
    """
    Name the command a line sends, for transcripts and errors.

    Do not pass the lines of an AUTH exchange that follow C{AUTH} itself:
    they are payloads, not commands.

    @param line: a command line, with or without its CRLF.
    @return: its first word, upper-cased, such as C{"MAIL"}; C{""} for an
        empty line.
    """
    words = _lineText(line).split(None, 1)
    return words[0].upper() if words else ""


def redactCommand(line: bytes) -> str:
    """
    Show a command line without its secrets, for transcripts and errors.

    An C{AUTH} line with an initial response has its response replaced by
    C{"<redacted>"} (even C{"="}, the empty response); other lines are
    returned unchanged.  The lines of an AUTH exchange after C{AUTH} itself
    are not recognised here: whoever knows it is inside AUTH redacts them.

    @param line: a command line, with or without its CRLF.
    @return: the line as text without its CRLF, redacted.
    """
    text = _lineText(line)
    words = text.split(None, 2)
    if len(words) == 3 and words[0].upper() == "AUTH":
        return f"{words[0]} {words[1]} {REDACTED}"
    return text
