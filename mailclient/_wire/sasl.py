"""
SASL mechanisms for SMTP AUTH (RFC 4954), as pure objects.

A mechanism holds its credentials and answers the server's challenges.  The
protocol layer does the base64 on both sides: L{SASLMechanism.respond} gets
the decoded challenge and returns the raw response.

Credentials are checked when a mechanism is made: a character that would
break the mechanism's syntax (NUL for PLAIN, C{"\\x01"} for XOAUTH2) or a CR
or LF anywhere raises L{mailclient.errors.CommandArgumentError} whose value
is the literal C{"<redacted>"}, so no secret ever reaches an error message.

This module imports nothing from Twisted.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from mailclient.errors import CommandArgumentError, SMTPProtocolError

__all__ = [
    "CLEARTEXT_MECHANISM_STRENGTH",
    "MECHANISM_STRENGTH",
    "CramMD5Mechanism",
    "LoginMechanism",
    "PlainMechanism",
    "SASLMechanism",
    "SASLMechanismError",
    "XOAuth2Mechanism",
    "chooseMechanism",
    "passwordMechanisms",
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


class XOAuth2Mechanism:
    """
    The XOAUTH2 mechanism of Google and Microsoft: an OAuth 2.0 bearer token.

    On failure the server sends one challenge, a JSON object describing the
    error; the client answers with an empty response and the server then
    sends its negative reply.  The error is kept in L{errorDetails}.

    @ivar errorDetails: the server's error challenge: the decoded JSON object
        as a C{dict}, the raw challenge bytes if it is not a JSON object, or
        L{None} while no error challenge was received.
    """

    name = "XOAUTH2"

    def __init__(self, username: str, accessToken: str) -> None:
        """
        @param username: the account's e-mail address.
        @param accessToken: the OAuth 2.0 access token.
        @raise CommandArgumentError: if a credential holds C{"\\x01"}, CR or
            LF.
        """
        self._message = (
            b"user="
            + _checkCredential(username, "\x01", "username")
            + b"\x01auth=Bearer "
            + _checkCredential(accessToken, "\x01", "access token")
            + b"\x01\x01"
        )
        self.errorDetails: dict[str, object] | bytes | None = None
        self._challenged = False

    def initialResponse(self) -> bytes:
        """
        @return: C{user=USER^Aauth=Bearer TOKEN^A^A}.
        """
        return self._message

    def respond(self, challenge: bytes) -> bytes:
        """
        Answer a challenge.

        An empty first challenge asks for the credentials (the C{AUTH}
        command went without an initial response).  Any other challenge is
        the server's error report: it is stored in L{errorDetails} and
        answered with an empty response.

        @param challenge: the server's challenge.
        @return: the credentials for an empty first challenge, else C{b""}.
        @raise SASLMechanismError: on a challenge after the error report.
        """
        first = not self._challenged
        self._challenged = True
        if first and not challenge:
            return self._message
        if self.errorDetails is not None:
            raise SASLMechanismError("unexpected XOAUTH2 challenge", self.name)
        self.errorDetails = _parseErrorChallenge(challenge)
        return b""


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
    @return: CRAM-MD5, PLAIN and LOGIN mechanisms holding the credentials.
    @raise CommandArgumentError: if a credential holds NUL, CR or LF.
    """
    return [
        CramMD5Mechanism(username, password),
        PlainMechanism(username, password),
        LoginMechanism(username, password),
    ]
