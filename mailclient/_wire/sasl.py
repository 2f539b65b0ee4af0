"""
SASL mechanisms for SMTP AUTH (RFC 4954), as pure objects.

A mechanism holds its credentials and answers the server's challenges.  The
protocol layer does the base64 on both sides: L{SASLMechanism.respond} gets
the decoded challenge and returns the raw response.

The mechanisms are PLAIN (RFC 4616), LOGIN, CRAM-MD5 (RFC 2195),
SCRAM-SHA-256 (RFC 5802 and RFC 7677, without channel binding), XOAUTH2
(Google and Microsoft) and OAUTHBEARER (RFC 7628).  L{passwordMechanisms}
makes every password mechanism for a username and a password.

SCRAM-SHA-256 proves the password without sending it and makes the server
prove it knows it too: a mechanism that has such a proof to check has a
C{successReceived()} method, which the protocol calls on the server's
C{235} and which raises L{SASLMechanismError} when the server never proved
itself.  Its credentials are prepared with L{saslprep} (RFC 4013).

The OAuth mechanisms take an access token, a L{TokenProvider}, or both.
They only hold the token: the protocol layer asks the provider for one when
L{XOAuth2Mechanism.needsToken} is true and after the server refused the
token, and hands it over with C{setToken()}.

Credentials are checked when a mechanism is made (and tokens when they are
set): a character that would break the mechanism's syntax (NUL for PLAIN,
SCRAM-SHA-256 and the OAuth tokens, C{"\\x01"} for XOAUTH2 and
OAUTHBEARER), a CR or LF anywhere, or (for SCRAM-SHA-256) a character that
SASLprep prohibits raises L{mailclient.errors.CommandArgumentError} whose
value is the literal C{"<redacted>"}, so no secret ever reaches an error
message.

This module imports nothing from Twisted.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol, runtime_checkable

from mailclient.errors import (
    CommandArgumentError,
    InvalidArgumentError,
    SMTPProtocolError,
)

__all__ = [
    "CLEARTEXT_MECHANISM_STRENGTH",
    "MECHANISM_STRENGTH",
    "CramMD5Mechanism",
    "LoginMechanism",
    "OAuthBearerMechanism",
    "PlainMechanism",
    "SASLMechanism",
    "SASLMechanismError",
    "ScramSHA256Mechanism",
    "TokenProvider",
    "XOAuth2Mechanism",
    "chooseMechanism",
    "passwordMechanisms",
    "saslprep",
]

MECHANISM_STRENGTH: tuple[str, ...] = (
    "SCRAM-SHA-256",
    "OAUTHBEARER",
    "XOAUTH2",
    "PLAIN",
    "LOGIN",
    "CRAM-MD5",
)
"""
Mechanism names, strongest first, on a TLS-protected session;
L{chooseMechanism} prefers earlier ones.  Under TLS, PLAIN is preferred to
CRAM-MD5: the channel already protects the password, and CRAM-MD5 needs the
server to keep a password equivalent and rests on MD5 (RFC 8314 and the
move of CRAM-MD5 to historic).
"""

CLEARTEXT_MECHANISM_STRENGTH: tuple[str, ...] = (
    "SCRAM-SHA-256",
    "CRAM-MD5",
    "OAUTHBEARER",
    "XOAUTH2",
    "PLAIN",
    "LOGIN",
)
"""
The ranking on a session without TLS (only when the caller allowed
credentials in clear): mechanisms that do not reveal the password to an
eavesdropper come first.
"""

_REDACTED = "<redacted>"
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@runtime_checkable
class SASLMechanism(Protocol):
    """
    A client-side SASL mechanism holding its credentials.

    @ivar name: the registered mechanism name, such as C{"PLAIN"}.
    """

    name: str

    def initialResponse(self) -> bytes | None:
        """
        The response to send with the C{AUTH} command itself.

        @return: the raw (not yet base64-encoded) initial response, or
            L{None} to send C{AUTH NAME} alone and wait for a challenge.
        """
        ...

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer a C{334} challenge.

        @param challenge: the challenge, already base64-decoded.
        @return: the raw response; the protocol base64-encodes it.
        @raise SASLMechanismError: if the mechanism did not expect this
            challenge.
        """
        ...


class SASLMechanismError(SMTPProtocolError):
    """
    The server sent a challenge the SASL mechanism did not expect (one too
    many, or one with the wrong content).

    @ivar mechanism: the name of the mechanism, or L{None}.
    """

    def __init__(self, reason: str, mechanism: str | None = None) -> None:
        super().__init__(reason)
        self.mechanism = mechanism


def _checkCredential(value: str, forbidden: str, reason: str) -> bytes:
    """
    Refuse a credential that holds one of C{forbidden} or a CR or LF, and
    encode it as UTF-8.

    @param value: the credential.
    @param forbidden: characters that break this mechanism's syntax.
    @param reason: says which credential was refused, for the error.
    @return: C{value} encoded as UTF-8.
    @raise CommandArgumentError: with the value C{"<redacted>"}.
    """
    for character in "\r\n" + forbidden:
        if character in value:
            raise CommandArgumentError(
                "authData", _REDACTED, f"{reason} contains {character!r}"
            )
    try:
        encoded: bytes | None = value.encode("utf-8")
    except UnicodeEncodeError:
        # The error is raised below, outside this block, so that the
        # UnicodeEncodeError (which holds the secret) is not its context.
        encoded = None
    if encoded is None:
        raise CommandArgumentError(
            "authData", _REDACTED, f"{reason} is not encodable as UTF-8"
        )
    return encoded


class PlainMechanism:
    """
    The PLAIN mechanism (RFC 4616): the credentials in one message,
    C{authzid NUL authcid NUL passwd} in UTF-8.  Use it only over TLS.
    """

    name = "PLAIN"

    def __init__(
        self, username: str, password: str, authorizationIdentity: str = ""
    ) -> None:
        """
        @param username: the authentication identity (authcid).
        @param password: the password.
        @param authorizationIdentity: the identity to act as (authzid);
            empty to act as C{username}.
        @raise CommandArgumentError: if a credential holds NUL, CR or LF.
        """
        self._message = b"\x00".join(
            [
                _checkCredential(
                    authorizationIdentity, "\x00", "authorization identity"
                ),
                _checkCredential(username, "\x00", "username"),
                _checkCredential(password, "\x00", "password"),
            ]
        )
        self._answered = False

    def initialResponse(self) -> bytes:
        """
        @return: the whole PLAIN message.
        """
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        """
        Send the PLAIN message after the server's empty challenge (when the
        C{AUTH} command went without an initial response).

        @param challenge: must be empty.
        @return: the whole PLAIN message.
        @raise SASLMechanismError: if C{challenge} is not empty or this is
            not the first challenge.
        """
        if challenge or self._answered:
            raise SASLMechanismError("unexpected PLAIN challenge", self.name)
        self._answered = True
        return self._message


class LoginMechanism:
    """
    The obsolete LOGIN mechanism: the server asks for the username, then for
    the password.  The challenge texts (usually C{"Username:"} and
    C{"Password:"}) vary between servers and are ignored.  Use it only over
    TLS.
    """

    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        """
        @param username: the user name.
        @param password: the password.
        @raise CommandArgumentError: if a credential holds CR or LF.
        """
        self._answers = [
            _checkCredential(username, "", "username"),
            _checkCredential(password, "", "password"),
        ]
        self._step = 0

    def initialResponse(self) -> bytes | None:
        """
        @return: L{None}: LOGIN waits for the server's first challenge.
        """
        return None

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer the first challenge with the username, the second with the
        password.

        @param challenge: the server's prompt (ignored).
        @return: the username or the password.
        @raise SASLMechanismError: on a third challenge.
        """
        if self._step >= len(self._answers):
            raise SASLMechanismError("unexpected third LOGIN challenge", self.name)
        answer = self._answers[self._step]
        self._step += 1
        return answer


class CramMD5Mechanism:
    """
    The CRAM-MD5 mechanism (RFC 2195): the password is never sent, only an
    HMAC-MD5 of the server's challenge keyed with it.
    """

    name = "CRAM-MD5"

    def __init__(self, username: str, password: str) -> None:
        """
        @param username: the user name.
        @param password: the password (the HMAC key).
        @raise CommandArgumentError: if a credential holds CR or LF.
        """
        self._username = _checkCredential(username, "", "username")
        self._password = _checkCredential(password, "", "password")
        self._answered = False

    def initialResponse(self) -> bytes | None:
        """
        @return: L{None}: CRAM-MD5 waits for the server's challenge.
        """
        return None

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer the challenge with the username, a space and the lower-case
        hex HMAC-MD5 of the challenge keyed with the password.

        @param challenge: the server's challenge.
        @return: the response.
        @raise SASLMechanismError: if this is not the first challenge.
        """
        if self._answered:
            raise SASLMechanismError("unexpected second CRAM-MD5 challenge", self.name)
        self._answered = True
        digest = hmac.new(self._password, challenge, "md5").hexdigest()
        return self._username + b" " + digest.encode("ascii")


@runtime_checkable
class TokenProvider(Protocol):
    """
    Where the OAuth mechanisms (L{XOAuth2Mechanism}, L{OAuthBearerMechanism})
    get their access tokens.

    The mechanisms only keep the provider: the protocol layer calls it, then
    hands the token to the mechanism's C{setToken()}.
    """

    def getToken(self, refresh: bool) -> object:
        """
        Return the access token (str), or a Deferred/awaitable that fires with
        it; refresh=True means the last token was rejected, get a new one.

        @param refresh: C{True} when the server refused the last token (it
            may have expired): get a new one rather than a cached one.
        @return: the access token as a C{str}, or a Deferred or awaitable
            that fires with it.
        """
        ...


# --- SASLprep (RFC 4013) ---------------------------------------------------

# The characters SASLprep prohibits (RFC 4013 section 2.3): non-ASCII
# spaces, ASCII and non-ASCII controls, private use, non-character code
# points, surrogates, characters inappropriate for plain text or canonical
# representation, change of display properties, tagging characters.
_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def _saslprep(text: str, allowUnassigned: bool) -> tuple[str, str | None]:
    """
    Apply SASLprep, reporting a failure instead of raising it.

    @param text: the string to prepare.
    @param allowUnassigned: C{True} for a query (code points unassigned in
        Unicode 3.2 allowed), C{False} for a stored string.
    @return: the prepared string and L{None}, or the partly prepared string
        and the reason it is refused (which never quotes C{text}).
    """
    mapped = "".join(
        " " if stringprep.in_table_c12(character) else character
        for character in text
        if not stringprep.in_table_b1(character)
    )
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for character in prepared:
        if any(prohibited(character) for prohibited in _PROHIBITED):
            return prepared, "contains a character SASLprep prohibits"
        if not allowUnassigned and stringprep.in_table_a1(character):
            return prepared, "contains a code point unassigned in Unicode 3.2"
    if any(stringprep.in_table_d1(character) for character in prepared):
        if any(stringprep.in_table_d2(character) for character in prepared):
            return prepared, "mixes right-to-left and left-to-right characters"
        if not (
            stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])
        ):
            return prepared, "does not start and end with a right-to-left character"
    return prepared, None


def saslprep(text: str, *, allowUnassigned: bool = False) -> str:
    """
    Prepare a user name or password with SASLprep (RFC 4013), the stringprep
    (RFC 3454) profile for SASL: map non-ASCII spaces to a space and remove
    the characters commonly mapped to nothing (such as the soft hyphen),
    normalise to NFKC, then refuse prohibited characters and bad
    bidirectional text.

    @param text: the string to prepare.
    @param allowUnassigned: C{False} (the default) for a stored string, such
        as a password, where code points unassigned in Unicode 3.2 are
        refused; C{True} for a query string, such as a user name.
    @return: the prepared string.
    @raise InvalidArgumentError: if C{text} cannot be prepared; its value is
        C{"<redacted>"}, since C{text} may be a secret.
    """
    prepared, problem = _saslprep(text, allowUnassigned)
    if problem is not None:
        raise InvalidArgumentError("text", _REDACTED, problem)
    return prepared


def _prepareCredential(value: str, allowUnassigned: bool, reason: str) -> bytes:
    """
    Check a credential as L{_checkCredential} does (NUL, CR, LF, UTF-8),
    then SASLprep it.

    @param value: the credential.
    @param allowUnassigned: whether it is a query (a user name) rather than
        a stored string (a password).
    @param reason: says which credential was refused, for the error.
    @return: the prepared credential, encoded as UTF-8.
    @raise CommandArgumentError: with the value C{"<redacted>"}.
    """
    _checkCredential(value, "\x00", reason)
    prepared, problem = _saslprep(value, allowUnassigned)
    if problem is not None:
        raise CommandArgumentError("authData", _REDACTED, f"{reason} {problem}")
    return prepared.encode("utf-8")


def _saslname(name: bytes) -> bytes:
    """
    Escape a name for a GS2 header or a SCRAM attribute (RFC 5801
    saslname): C{"="} becomes C{"=3D"} and C{","} becomes C{"=2C"}.
    """
    return name.replace(b"=", b"=3D").replace(b",", b"=2C")


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677) ------------------------------------

# The GS2 header of a client without channel binding, and its base64 form
# (the "c=" attribute of the client-final-message).
_GS2_HEADER = b"n,,"
_CHANNEL_BINDING = base64.b64encode(_GS2_HEADER)

# A printable nonce: %x21-2B / %x2D-7E (RFC 5802 section 7).
_NONCE = re.compile(rb"[\x21-\x2b\x2d-\x7e]+")
_ATTRIBUTE = re.compile(rb"([A-Za-z])=(.*)", re.DOTALL)
_ITERATIONS = re.compile(rb"[1-9][0-9]*")

# How much of a server's error text is quoted in an error.
_QUOTE_LIMIT = 80

_ScramStep = Literal["start", "first-sent", "final-sent", "verified", "failed"]


def _attributes(message: bytes) -> list[tuple[bytes, bytes]]:
    """
    Split a SCRAM message into its attributes.

    @param message: the message, such as C{b"r=...,s=...,i=4096"}.
    @return: the C{(name, value)} pairs in order, or an empty list if any
        part is not a one-letter name, C{"="} and a value.
    """
    pairs = []
    for part in message.split(b","):
        match = _ATTRIBUTE.fullmatch(part)
        if match is None:
            return []
        pairs.append((match.group(1), match.group(2)))
    return pairs


def _decodeBase64(value: bytes) -> bytes | None:
    """
    Decode strict base64.

    @param value: the encoded value.
    @return: the decoded bytes, or L{None} if C{value} is not base64.
    """
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        return None


def _quote(value: bytes) -> str:
    """
    Quote (the start of) a value the server sent, for an error message.
    """
    text = value[:_QUOTE_LIMIT].decode("utf-8", errors="replace")
    more = "..." if len(value) > _QUOTE_LIMIT else ""
    return f"{text!r}{more}"


class ScramSHA256Mechanism:
    """
    The SCRAM-SHA-256 mechanism (RFC 5802 and RFC 7677), without channel
    binding: the client proves it knows the password without sending it,
    and the server proves it knows it too.

    The exchange is the client-first-message (the initial response), the
    server-first-message (a challenge, answered with the
    client-final-message) and the server-final-message (a challenge holding
    the server's signature, answered with an empty response) before the
    server's C{235}.  The protocol must then call L{successReceived}: a
    server that said C{235} without proving itself is refused.

    L{initialResponse} starts a new exchange, with a new nonce unless one was
    given, so the mechanism may be used for several sessions.

    @cvar minIterations: the fewest PBKDF2 iterations accepted from the
        server (4096, RFC 7677).
    @cvar maxIterations: the most iterations accepted from the server, so
        that a hostile server cannot stall the client (the key derivation
        runs on the reactor's thread).
    """

    name = "SCRAM-SHA-256"
    minIterations = 4096
    maxIterations = 1_000_000

    def __init__(
        self, username: str, password: str, *, nonce: str | None = None
    ) -> None:
        """
        @param username: the user name; it is SASLprep-ed (as a query) and
            escaped (C{"="} and C{","}) for the exchange.
        @param password: the password; it is SASLprep-ed (as a stored
            string).
        @param nonce: the client nonce, for tests; by default a new random
            one (24 bytes from L{secrets}, in URL-safe base64) for every
            exchange.
        @raise CommandArgumentError: if a credential holds NUL, CR or LF, or
            a character SASLprep refuses, or the user name is empty once
            prepared (the value C{"<redacted>"}); if the nonce is not
            printable ASCII without C{","} (argument C{"nonce"}).
        """
        preparedUsername = _prepareCredential(username, True, "username")
        if not preparedUsername:
            raise CommandArgumentError(
                "authData", _REDACTED, "username is empty once SASLprep-ed"
            )
        self._username = _saslname(preparedUsername)
        self._password = _prepareCredential(password, False, "password")
        if nonce is not None and _NONCE.fullmatch(nonce.encode("utf-8")) is None:
            raise CommandArgumentError(
                "nonce", nonce, "must be printable ASCII without ','"
            )
        self._fixedNonce = nonce
        self._step: _ScramStep = "start"
        self._nonce = b""
        self._clientFirstBare = b""
        self._serverSignature = b""

    def _fail(self, reason: str) -> SASLMechanismError:
        """
        End the exchange and build the error to raise.

        @param reason: what went wrong.
        @return: the error.
        """
        self._step = "failed"
        return SASLMechanismError(f"SCRAM-SHA-256: {reason}", self.name)

    def initialResponse(self) -> bytes:
        """
        Start an exchange.

        @return: the client-first-message: C{n,,n=USER,r=NONCE}.
        """
        nonce = self._fixedNonce
        if nonce is None:
            nonce = secrets.token_urlsafe(24)
        self._nonce = nonce.encode("ascii")
        self._clientFirstBare = b"n=" + self._username + b",r=" + self._nonce
        self._serverSignature = b""
        self._step = "first-sent"
        return _GS2_HEADER + self._clientFirstBare

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer a challenge: an empty first challenge (the C{AUTH} command went
        without an initial response) with the client-first-message, the
        server-first-message with the client-final-message, the
        server-final-message with an empty response once the server's
        signature is verified.

        @param challenge: the server's challenge.
        @return: the response.
        @raise SASLMechanismError: if the challenge is malformed or out of
            order; if the server's nonce does not extend ours, it asks for
            fewer than L{minIterations} or more than L{maxIterations}
            iterations or for a mandatory extension (C{m=}); if it reports
            an error (C{e=}, named in the error); if its signature is wrong.
        """
        if self._step == "start" and not challenge:
            return self.initialResponse()
        if self._step == "first-sent":
            return self._clientFinal(challenge)
        if self._step == "final-sent":
            return self._verify(challenge)
        raise self._fail(f"unexpected challenge {_quote(challenge)}")

    def _clientFinal(self, serverFirst: bytes) -> bytes:
        """
        Check the server-first-message and compute the client-final-message.

        @param serverFirst: the server-first-message.
        @return: the client-final-message.
        @raise SASLMechanismError: if the message is refused.
        """
        attributes = _attributes(serverFirst)
        names = [name for name, _ in attributes]
        if names[:1] == [b"e"]:
            raise self._fail(f"the server reports an error: {_quote(attributes[0][1])}")
        if names[:1] == [b"m"]:
            raise self._fail("the server requires an extension (m=) we do not know")
        if names[:3] != [b"r", b"s", b"i"]:
            raise self._fail(f"malformed server-first-message {_quote(serverFirst)}")
        nonce, encodedSalt, encodedIterations = (value for _, value in attributes[:3])
        if not nonce.startswith(self._nonce) or _NONCE.fullmatch(nonce) is None:
            raise self._fail("the server's nonce does not extend ours")
        salt = _decodeBase64(encodedSalt)
        if salt is None:
            raise self._fail("the salt is not base64")
        if _ITERATIONS.fullmatch(encodedIterations) is None:
            raise self._fail("the iteration count is not a positive integer")
        if len(encodedIterations) > len(str(self.maxIterations)):
            iterations = self.maxIterations + 1
        else:
            iterations = int(encodedIterations)
        if iterations < self.minIterations:
            raise self._fail(
                f"the server asks for {iterations} iterations, fewer than the "
                f"minimum of {self.minIterations} (RFC 7677)"
            )
        if iterations > self.maxIterations:
            raise self._fail(
                f"the server asks for more than {self.maxIterations} iterations"
            )
        withoutProof = b"c=" + _CHANNEL_BINDING + b",r=" + nonce
        authMessage = b",".join([self._clientFirstBare, serverFirst, withoutProof])
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iterations)
        clientKey = hmac.digest(salted, b"Client Key", "sha256")
        storedKey = hashlib.sha256(clientKey).digest()
        clientSignature = hmac.digest(storedKey, authMessage, "sha256")
        proof = bytes(a ^ b for a, b in zip(clientKey, clientSignature, strict=True))
        serverKey = hmac.digest(salted, b"Server Key", "sha256")
        self._serverSignature = hmac.digest(serverKey, authMessage, "sha256")
        self._step = "final-sent"
        return withoutProof + b",p=" + base64.b64encode(proof)

    def _verify(self, serverFinal: bytes) -> bytes:
        """
        Check the server-final-message.

        @param serverFinal: the server-final-message.
        @return: C{b""}.
        @raise SASLMechanismError: if it reports an error or its signature is
            wrong.
        """
        attributes = _attributes(serverFinal)
        if not attributes or attributes[0][0] not in (b"e", b"v"):
            raise self._fail(f"malformed server-final-message {_quote(serverFinal)}")
        name, value = attributes[0]
        if name == b"e":
            raise self._fail(f"the server refused the authentication: {_quote(value)}")
        signature = _decodeBase64(value)
        if signature is None or not hmac.compare_digest(
            signature, self._serverSignature
        ):
            raise self._fail(
                "the server's signature is wrong: the server does not know the "
                "password, or someone tampered with the exchange"
            )
        self._step = "verified"
        return b""

    def successReceived(self) -> None:
        """
        The server said the authentication succeeded (C{235}): check that it
        proved it knows the password first.

        @raise SASLMechanismError: if the server's signature was not
            verified.
        """
        if self._step != "verified":
            raise SASLMechanismError(
                "the server did not prove it knows the password (SCRAM-SHA-256 "
                "success without a verified server signature)",
                self.name,
            )


# --- OAuth 2.0: XOAUTH2 and OAUTHBEARER (RFC 7628) -------------------------


class _BearerTokenMechanism:
    """
    What the OAuth mechanisms share: a token that may come later from a
    provider, and the server's error challenge.

    @ivar tokenProvider: where to get tokens, or L{None}.
    @ivar errorDetails: the server's error challenge: the decoded JSON object
        as a C{dict}, the raw challenge bytes if it is not a JSON object, or
        L{None} while no error challenge was received.
    """

    name: str
    # The response to the server's error challenge.
    _errorResponse: bytes

    def __init__(
        self,
        token: str | None,
        tokenProvider: TokenProvider | None,
        tokenArgument: str,
    ) -> None:
        """
        @param token: the access token, or L{None}.
        @param tokenProvider: the token provider, or L{None}.
        @param tokenArgument: the name of the token argument, for errors.
        @raise InvalidArgumentError: if both C{token} and C{tokenProvider}
            are missing, or C{tokenProvider} has no C{getToken} method.
        @raise CommandArgumentError: if the token holds NUL, C{"\\x01"}, CR or
            LF.
        """
        if token is None and tokenProvider is None:
            raise InvalidArgumentError(
                tokenArgument, None, "give an access token, a tokenProvider, or both"
            )
        if tokenProvider is not None and not isinstance(tokenProvider, TokenProvider):
            raise InvalidArgumentError(
                "tokenProvider", tokenProvider, "has no getToken method"
            )
        self._token = None if token is None else _checkToken(token)
        self.tokenProvider = tokenProvider
        self.errorDetails: dict[str, object] | bytes | None = None
        self._sent = False

    @property
    def needsToken(self) -> bool:
        """
        C{True} while no access token is set: get one from L{tokenProvider}
        and give it to L{setToken}.
        """
        return self._token is None

    def setToken(self, token: str) -> None:
        """
        Set the access token (a new one, after the server refused the last),
        and forget any error of the last exchange.

        @param token: the access token.
        @raise CommandArgumentError: if it holds NUL, C{"\\x01"}, CR or LF (the
            value C{"<redacted>"}); the previous token is kept.
        """
        self._token = _checkToken(token)
        self.errorDetails = None
        self._sent = False

    def _message(self, token: bytes) -> bytes:
        """
        @param token: the checked access token.
        @return: the mechanism's credentials message.
        """
        raise NotImplementedError()

    def initialResponse(self) -> bytes:
        """
        Start an exchange: send the credentials, and forget any error of the
        last exchange.

        @return: the credentials message.
        @raise SASLMechanismError: if no access token is set.
        """
        if self._token is None:
            raise SASLMechanismError(
                f"no access token for {self.name}: get one from the "
                "tokenProvider and call setToken() first",
                self.name,
            )
        self.errorDetails = None
        self._sent = True
        return self._message(self._token)

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer a challenge.

        An empty first challenge asks for the credentials (the C{AUTH}
        command went without an initial response).  Any other challenge is
        the server's error report: it is stored in L{errorDetails} and
        answered with the mechanism's error response.

        @param challenge: the server's challenge.
        @return: the credentials for an empty first challenge, else the
            error response.
        @raise SASLMechanismError: on a challenge after the error report, or
            when the credentials are asked for and no access token is set.
        """
        if not self._sent and not challenge:
            return self.initialResponse()
        if self.errorDetails is not None:
            raise SASLMechanismError(f"unexpected {self.name} challenge", self.name)
        self._sent = True
        self.errorDetails = _parseErrorChallenge(challenge)
        return self._errorResponse


def _checkHost(host: str) -> bytes:
    """
    Check the host name an OAUTHBEARER message carries.

    @param host: the host name.
    @return: the host name encoded as UTF-8.
    @raise CommandArgumentError: (argument C{"host"}) if it holds NUL,
        C{"\\x01"}, CR or LF, or is not encodable as UTF-8.
    """
    for character in "\x00\x01\r\n":
        if character in host:
            raise CommandArgumentError("host", host, f"contains {character!r}")
    encoded = host.encode("utf-8", errors="replace")
    if encoded.decode("utf-8") != host:
        raise CommandArgumentError("host", host, "is not encodable as UTF-8")
    return encoded


def _checkToken(token: str) -> bytes:
    """
    Check an OAuth access token.

    @param token: the token.
    @return: the token encoded as UTF-8.
    @raise CommandArgumentError: if it holds NUL, C{"\\x01"}, CR or LF (the
        value C{"<redacted>"}).
    """
    return _checkCredential(token, "\x00\x01", "access token")


class XOAuth2Mechanism(_BearerTokenMechanism):
    """
    The XOAUTH2 mechanism of Google and Microsoft: an OAuth 2.0 bearer token.

    On failure the server sends one challenge, a JSON object describing the
    error; the client answers with an empty response and the server then
    sends its negative reply.  The error is kept in L{errorDetails}.

    @ivar tokenProvider: where to get tokens, or L{None}.
    @ivar errorDetails: the server's error challenge: the decoded JSON object
        as a C{dict}, the raw challenge bytes if it is not a JSON object, or
        L{None} while no error challenge was received.
    """

    name = "XOAUTH2"
    _errorResponse = b""

    def __init__(
        self,
        username: str,
        accessToken: str | None = None,
        *,
        tokenProvider: TokenProvider | None = None,
    ) -> None:
        """
        @param username: the account's e-mail address.
        @param accessToken: the OAuth 2.0 access token, or L{None} to get one
            from C{tokenProvider} (through the protocol and L{setToken}).
        @param tokenProvider: where to get tokens, or L{None}.
        @raise CommandArgumentError: if the username holds C{"\\x01"}, CR or
            LF, or the token NUL, C{"\\x01"}, CR or LF.
        @raise InvalidArgumentError: if there is neither an access token nor
            a token provider (argument C{"accessToken"}).
        """
        self._username = _checkCredential(username, "\x01", "username")
        super().__init__(accessToken, tokenProvider, "accessToken")

    def _message(self, token: bytes) -> bytes:
        """
        @param token: the checked access token.
        @return: C{user=USER^Aauth=Bearer TOKEN^A^A}.
        """
        return b"user=" + self._username + b"\x01auth=Bearer " + token + b"\x01\x01"


class OAuthBearerMechanism(_BearerTokenMechanism):
    """
    The OAUTHBEARER mechanism (RFC 7628): an OAuth 2.0 bearer token in a GS2
    header and key-value pairs.

    On failure the server sends one challenge, a JSON object (with
    C{"status"}, C{"schemes"}, C{"scope"}, ...); the client answers with the
    dummy response C{"\\x01"} and the server then sends its negative reply.
    The error is kept in L{errorDetails}.

    @ivar tokenProvider: where to get tokens, or L{None}.
    @ivar errorDetails: the server's error challenge: the decoded JSON object
        as a C{dict}, the raw challenge bytes if it is not a JSON object, or
        L{None} while no error challenge was received.
    """

    name = "OAUTHBEARER"
    _errorResponse = b"\x01"

    def __init__(
        self,
        username: str,
        token: str | None = None,
        *,
        host: str | None = None,
        port: int | None = None,
        tokenProvider: TokenProvider | None = None,
    ) -> None:
        """
        @param username: the authorization identity (usually the account's
            e-mail address), sent as C{a=} in the GS2 header with C{"="} and
            C{","} escaped; empty to send none.
        @param token: the OAuth 2.0 access token, or L{None} to get one from
            C{tokenProvider} (through the protocol and L{setToken}).
        @param host: the server's host name, sent as C{host=}, or L{None}.
        @param port: the server's port, sent as C{port=}, or L{None}.
        @param tokenProvider: where to get tokens, or L{None}.
        @raise CommandArgumentError: if the username or the token holds NUL,
            C{"\\x01"}, CR or LF (the value C{"<redacted>"}), or the host does
            (argument C{"host"}).
        @raise InvalidArgumentError: if there is neither a token nor a token
            provider (argument C{"token"}), or the port is not an C{int} from
            1 to 65535.
        """
        authzid = _saslname(_checkCredential(username, "\x00\x01", "username"))
        header = b"n," + (b"a=" + authzid if authzid else b"") + b",\x01"
        if host is not None:
            header += b"host=" + _checkHost(host) + b"\x01"
        if port is not None:
            if (
                not isinstance(port, int)
                or isinstance(port, bool)
                or not 0 < port < 65536
            ):
                raise InvalidArgumentError("port", port, "expected an int 1-65535")
            header += b"port=%d\x01" % (port,)
        self._header = header
        super().__init__(token, tokenProvider, "token")

    def _message(self, token: bytes) -> bytes:
        """
        @param token: the checked access token.
        @return: C{n,a=USER,^Ahost=HOST^Aport=PORT^Aauth=Bearer TOKEN^A^A}.
        """
        return self._header + b"auth=Bearer " + token + b"\x01\x01"


def _parseErrorChallenge(challenge: bytes) -> dict[str, object] | bytes:
    """
    Decode an XOAUTH2 error challenge.

    @param challenge: the decoded challenge.
    @return: the JSON object it holds, or C{challenge} itself if it is not
        a JSON object.
    """
    try:
        details = json.loads(challenge)
    except (ValueError, RecursionError):
        return challenge
    if isinstance(details, dict):
        return details
    return challenge


def _fold(name: str) -> str:
    """
    Upper-case the ASCII letters of a mechanism name (and nothing else).
    """
    return name.translate(_ASCII_UPPER)


def chooseMechanism(
    registered: Sequence[str], advertised: Iterable[str], *, tlsActive: bool = True
) -> str | None:
    """
    Choose the mechanism to authenticate with.

    @param registered: the names of the client's mechanisms, in
        registration order.
    @param advertised: the names the server advertised in its C{AUTH}
        capability.
    @param tlsActive: whether the session is TLS-protected; selects
        L{MECHANISM_STRENGTH} or L{CLEARTEXT_MECHANISM_STRENGTH}.
    @return: the strongest name in both (compared case-insensitively), with
        the spelling of C{registered}.  Known names rank by
        L{MECHANISM_STRENGTH}; unknown names rank below every known one, in
        registration order.  L{None} when nothing is in common.
    @raise TypeError: if either argument is a single C{str}.
    """
    if isinstance(registered, str) or isinstance(advertised, str):
        raise TypeError("mechanism names must be given as a collection, not a str")
    offered = {_fold(name) for name in advertised}
    ranking = MECHANISM_STRENGTH if tlsActive else CLEARTEXT_MECHANISM_STRENGTH
    ranked = [
        (_rank(_fold(name), ranking), index, name)
        for index, name in enumerate(registered)
        if _fold(name) in offered
    ]
    if not ranked:
        return None
    return min(ranked)[2]


def _rank(foldedName: str, ranking: tuple[str, ...]) -> int:
    """
    The position of a mechanism name in C{ranking}; unknown names come after
    every known one.
    """
    if foldedName in ranking:
        return ranking.index(foldedName)
    return len(ranking)


def passwordMechanisms(username: str, password: str) -> list[SASLMechanism]:
    """
    The mechanisms for a caller that has a username and a password.

    @param username: the user name.
    @param password: the password.
    @return: SCRAM-SHA-256, CRAM-MD5, PLAIN and LOGIN mechanisms holding the
        credentials; without SCRAM-SHA-256 when SASLprep refuses them (the
        other mechanisms send them as they are).
    @raise CommandArgumentError: if a credential holds NUL, CR or LF.
    """
    mechanisms: list[SASLMechanism] = [
        CramMD5Mechanism(username, password),
        PlainMechanism(username, password),
        LoginMechanism(username, password),
    ]
    try:
        scram = ScramSHA256Mechanism(username, password)
    except CommandArgumentError:
        return mechanisms
    return [scram, *mechanisms]
