"""
Tests for L{mailclient._wire.sasl}: SASL mechanisms and mechanism choice.

Vectors come from RFC 4616 (PLAIN), RFC 2195 (CRAM-MD5), RFC 7677
(SCRAM-SHA-256), RFC 4013 (SASLprep), RFC 7628 (OAUTHBEARER) and Google's
XOAUTH2 documentation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import string
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire.sasl import (
    CLEARTEXT_MECHANISM_STRENGTH,
    MECHANISM_STRENGTH,
    CramMD5Mechanism,
    LoginMechanism,
    OAuthBearerMechanism,
    PlainMechanism,
    SASLMechanism,
    SASLMechanismError,
    ScramSHA256Mechanism,
    TokenProvider,
    XOAuth2Mechanism,
    chooseMechanism,
    passwordMechanisms,
    saslprep,
)
from mailclient.errors import (
    CommandArgumentError,
    InvalidArgumentError,
    SMTPProtocolError,
)

GOOGLE_USER = "someuser@example.com"
GOOGLE_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
GOOGLE_INITIAL_B64 = (
    b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52"
    b"YjNSbGNrQmhkSFJoZG1semRHRXVZMjl0Q2cBAQ=="
)
GOOGLE_ERROR_B64 = (
    b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21h"
    b"aWwuZ29vZ2xlLmNvbS8ifQ=="
)


def referenceHMACMD5(key: bytes, message: bytes) -> bytes:
    """
    HMAC-MD5 written out from RFC 2104, independent of the C{hmac} module.
    """
    if len(key) > 64:
        key = hashlib.md5(key).digest()
    key = key.ljust(64, b"\x00")
    inner = hashlib.md5(bytes(k ^ 0x36 for k in key) + message).digest()
    return hashlib.md5(bytes(k ^ 0x5C for k in key) + inner).digest()


# --- PLAIN ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "authzid", "expected"),
    [
        ("tim", "tanstaaftanstaaf", "", b"\x00tim\x00tanstaaftanstaaf"),
        ("Kurt", "xipj3plmq", "Ursel", b"Ursel\x00Kurt\x00xipj3plmq"),
        (
            "j\u00fcrgen",
            "p\u00e4ss \u20ac",
            "",
            b"\x00j\xc3\xbcrgen\x00p\xc3\xa4ss \xe2\x82\xac",
        ),
    ],
)
def test_plainVectors(
    username: str, password: str, authzid: str, expected: bytes
) -> None:
    """
    PLAIN sends authzid NUL authcid NUL password in UTF-8, as in the RFC 4616
    examples, as the initial response.
    """
    mechanism = PlainMechanism(username, password, authzid)
    assert mechanism.name == "PLAIN"
    assert mechanism.initialResponse() == expected


def test_plainDefaultAuthorizationIdentity() -> None:
    """
    Without an authorization identity PLAIN acts as the user itself.
    """
    assert PlainMechanism("tim", "tanstaaftanstaaf").initialResponse() == (
        b"\x00tim\x00tanstaaftanstaaf"
    )


def test_plainAfterEmptyChallenge() -> None:
    """
    When the server asks with an empty challenge, PLAIN sends the same message
    it would have sent as the initial response, once.
    """
    mechanism = PlainMechanism("tim", "tanstaaftanstaaf")
    assert mechanism.respond(b"") == b"\x00tim\x00tanstaaftanstaaf"
    with pytest.raises(SASLMechanismError) as raised:
        mechanism.respond(b"")
    assert raised.value.mechanism == "PLAIN"


def test_plainRefusesNonEmptyChallenge() -> None:
    """
    PLAIN has no challenge with content; one is a protocol error, answered with
    nothing.
    """
    with pytest.raises(SASLMechanismError, match="unexpected PLAIN challenge"):
        PlainMechanism("tim", "tanstaaftanstaaf").respond(b"what?")


# --- LOGIN ---------------------------------------------------------------


def test_loginTwoSteps() -> None:
    """
    LOGIN sends no initial response, then the username to the first challenge
    and the password to the second, whatever their text.
    """
    mechanism = LoginMechanism("tim", "tanstaaftanstaaf")
    assert mechanism.name == "LOGIN"
    assert mechanism.initialResponse() is None
    assert mechanism.respond(b"Username:") == b"tim"
    assert mechanism.respond(b"anything") == b"tanstaaftanstaaf"


def test_loginThirdChallenge() -> None:
    """
    A third LOGIN challenge is a protocol error, reported as such.
    """
    mechanism = LoginMechanism("tim", "tanstaaftanstaaf")
    mechanism.respond(b"Username:")
    mechanism.respond(b"Password:")
    with pytest.raises(SASLMechanismError) as raised:
        mechanism.respond(b"Password:")
    assert isinstance(raised.value, SMTPProtocolError)
    assert raised.value.mechanism == "LOGIN"
    assert "third" in raised.value.reason


# --- CRAM-MD5 ------------------------------------------------------------


def test_cramMD5Vector() -> None:
    """
    CRAM-MD5 answers the RFC 2195 example challenge with the example
    response, and sends no initial response.
    """
    mechanism = CramMD5Mechanism("tim", "tanstaaftanstaaf")
    assert mechanism.name == "CRAM-MD5"
    assert mechanism.initialResponse() is None
    assert mechanism.respond(b"<1896.697170952@postoffice.reston.mci.net>") == (
        b"tim b913a602c7eda7a495b4e6e7334d3890"
    )


def test_cramMD5SecondChallenge() -> None:
    """
    CRAM-MD5 has exactly one challenge; a second one is a protocol error.
    """
    mechanism = CramMD5Mechanism("tim", "tanstaaftanstaaf")
    mechanism.respond(b"<1@host>")
    with pytest.raises(SASLMechanismError) as raised:
        mechanism.respond(b"<2@host>")
    assert raised.value.mechanism == "CRAM-MD5"


@given(
    st.text().filter(lambda s: "\r" not in s and "\n" not in s),
    st.text(max_size=100).filter(lambda s: "\r" not in s and "\n" not in s),
    st.binary(),
)
def test_cramMD5MatchesHMAC(username: str, password: str, challenge: bytes) -> None:
    """
    For any credentials and challenge, the response is the UTF-8 username, a
    space, and the lower-case hex HMAC-MD5 of the challenge keyed with the
    password (long passwords included).
    """
    try:
        username.encode("utf-8")
        key = password.encode("utf-8")
    except UnicodeEncodeError:
        return
    expected = (
        username.encode("utf-8")
        + b" "
        + referenceHMACMD5(key, challenge).hex().encode("ascii")
    )
    assert CramMD5Mechanism(username, password).respond(challenge) == expected


# --- XOAUTH2 -------------------------------------------------------------


def test_xoauth2GoogleVector() -> None:
    """
    The XOAUTH2 initial response is user=, ^A, auth=Bearer, ^A^A, and
    base64-encodes to the example in Google's documentation.
    """
    mechanism = XOAuth2Mechanism(GOOGLE_USER, GOOGLE_TOKEN)
    assert mechanism.name == "XOAUTH2"
    initial = mechanism.initialResponse()
    assert initial == (
        b"user=someuser@example.com\x01auth=Bearer "
        + GOOGLE_TOKEN.encode()
        + b"\x01\x01"
    )
    assert base64.b64encode(initial) == GOOGLE_INITIAL_B64
    assert mechanism.errorDetails is None


def test_xoauth2ErrorChallenge() -> None:
    """
    The server's error challenge is kept as decoded JSON and answered with an
    empty response; a further challenge is a protocol error.
    """
    mechanism = XOAuth2Mechanism(GOOGLE_USER, GOOGLE_TOKEN)
    mechanism.initialResponse()
    assert mechanism.respond(base64.b64decode(GOOGLE_ERROR_B64)) == b""
    assert mechanism.errorDetails == {
        "status": "401",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }
    with pytest.raises(SASLMechanismError) as raised:
        mechanism.respond(b"{}")
    assert raised.value.mechanism == "XOAUTH2"


@pytest.mark.parametrize(
    "challenge",
    [
        b"not json",
        b"[1, 2]",
        b'"401"',
        b"\xff\xfe\x00x",
        b"[" * 100_000,
        b"1" * 10_000,
        b'{"status": "401"',
    ],
)
def test_xoauth2NonJSONErrorKeptRaw(challenge: bytes) -> None:
    """
    An error challenge that is not a JSON object (not JSON at all, another JSON
    value, bad encoding, absurd nesting or numbers) is kept as raw bytes and
    still answered with an empty response.
    """
    mechanism = XOAuth2Mechanism(GOOGLE_USER, GOOGLE_TOKEN)
    assert mechanism.respond(challenge) == b""
    assert mechanism.errorDetails == challenge


def test_xoauth2EmptyFirstChallenge() -> None:
    """
    An empty first challenge (AUTH sent without an initial response) is
    answered with the credentials; the error challenge after it is still
    recorded.
    """
    mechanism = XOAuth2Mechanism(GOOGLE_USER, GOOGLE_TOKEN)
    assert mechanism.respond(b"") == base64.b64decode(GOOGLE_INITIAL_B64)
    assert mechanism.errorDetails is None
    assert mechanism.respond(b'{"status":"400"}') == b""
    assert mechanism.errorDetails == {"status": "400"}
    with pytest.raises(SASLMechanismError):
        mechanism.respond(b"")


def test_xoauth2EmptyErrorChallenge() -> None:
    """
    After the credentials were sent, even an empty challenge is the error
    report: it is answered with an empty response, never with the token again.
    """
    mechanism = XOAuth2Mechanism(GOOGLE_USER, GOOGLE_TOKEN)
    mechanism.respond(b"")
    assert mechanism.respond(b"") == b""
    assert mechanism.errorDetails == b""


class FakeTokenProvider:
    """
    A L{TokenProvider} that records its calls.
    """

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def getToken(self, refresh: bool) -> object:
        """
        Record the call and return a token.
        """
        self.calls.append(refresh)
        return "fresh-token"


def _xoauth2() -> XOAuth2Mechanism:
    """
    An XOAUTH2 mechanism waiting for its token.
    """
    return XOAuth2Mechanism("u", tokenProvider=FakeTokenProvider())


def _oauthBearer() -> OAuthBearerMechanism:
    """
    An OAUTHBEARER mechanism waiting for its token.
    """
    return OAuthBearerMechanism("u", tokenProvider=FakeTokenProvider())


# --- SASLprep ------------------------------------------------------------

# RFC 4013 section 3.
SASLPREP_EXAMPLES = [
    ("I\u00adX", "IX"),
    ("user", "user"),
    ("USER", "USER"),
    ("\u00aa", "a"),
    ("\u2168", "IX"),
]
SASLPREP_ERRORS = ["\u0007", "\u0627\u0031"]


@pytest.mark.parametrize(("text", "expected"), SASLPREP_EXAMPLES)
def test_saslprepExamples(text: str, expected: str) -> None:
    """
    SASLprep maps the soft hyphen to nothing, keeps case and normalises to
    NFKC, as in the RFC 4013 examples.
    """
    assert saslprep(text) == expected
    assert saslprep(text, allowUnassigned=True) == expected


@pytest.mark.parametrize("text", SASLPREP_ERRORS)
def test_saslprepExampleErrors(text: str) -> None:
    """
    The RFC 4013 examples of errors are refused: a prohibited character
    (BELL) and a right-to-left string ending with a digit; the error never
    shows the text.
    """
    with pytest.raises(InvalidArgumentError) as raised:
        saslprep(text)
    assert raised.value.value == "<redacted>"
    assert text not in str(raised.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\u00a0b", "a b"),
        ("a\u3000b", "a b"),
        ("a\u200bb", "ab"),
        ("\ufb01", "fi"),
        ("\u0627\u0628", "\u0627\u0628"),
        ("\u0627 1 \u0628", "\u0627 1 \u0628"),
        ("", ""),
    ],
)
def test_saslprepMapping(text: str, expected: str) -> None:
    """
    Non-ASCII spaces become a space, zero-width characters are removed,
    compatibility characters are decomposed, and right-to-left text that
    starts and ends with a right-to-left character is kept.
    """
    assert saslprep(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("a\x7fb", "prohibits"),
        ("a\u0085", "prohibits"),
        ("\ue000", "prohibits"),
        ("\ufffe", "prohibits"),
        ("a\u2ff0", "prohibits"),
        ("a\u200e", "prohibits"),
        ("\U000e0001", "prohibits"),
        ("\ud800", "prohibits"),
        ("\u0627a\u0628", "mixes"),
        ("1\u0627", "start and end"),
    ],
)
def test_saslprepProhibited(text: str, reason: str) -> None:
    """
    Controls, private use, non-characters, ideographic description and
    directional characters, tags and surrogates are prohibited, and so is
    bidirectional text that mixes directions or does not start and end with
    a right-to-left character.
    """
    with pytest.raises(InvalidArgumentError, match=reason):
        saslprep(text, allowUnassigned=True)


def test_saslprepUnassigned() -> None:
    """
    A code point unassigned in Unicode 3.2 is refused in a stored string
    (the default) and allowed in a query.
    """
    with pytest.raises(InvalidArgumentError, match="unassigned"):
        saslprep("pass\U0001f600")
    assert saslprep("pass\U0001f600", allowUnassigned=True) == "pass\U0001f600"


# --- SCRAM-SHA-256 -------------------------------------------------------

# RFC 7677 section 3.
SCRAM_NONCE = "rOprNGfwEbeRWgbNEkqO"
SCRAM_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
SCRAM_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
SCRAM_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
SCRAM_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="


def rfcScram() -> ScramSHA256Mechanism:
    """
    The mechanism of the RFC 7677 example.
    """
    return ScramSHA256Mechanism("user", "pencil", nonce=SCRAM_NONCE)


def scramAfterServerFirst() -> ScramSHA256Mechanism:
    """
    The mechanism of the RFC 7677 example, waiting for the server-final
    message.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    mechanism.respond(SCRAM_SERVER_FIRST)
    return mechanism


def test_scramRFC7677Vector() -> None:
    """
    SCRAM-SHA-256 sends the client-first-message as the initial response,
    answers the server-first-message with the client-final-message and
    accepts the server's signature, exactly as in the RFC 7677 example; the
    success reply is then accepted.
    """
    mechanism = rfcScram()
    assert mechanism.name == "SCRAM-SHA-256"
    assert mechanism.initialResponse() == SCRAM_CLIENT_FIRST
    assert mechanism.respond(SCRAM_SERVER_FIRST) == SCRAM_CLIENT_FINAL
    assert mechanism.respond(SCRAM_SERVER_FINAL) == b""
    mechanism.successReceived()


def test_scramEmptyFirstChallenge() -> None:
    """
    When AUTH went without an initial response, the empty first challenge is
    answered with the client-first-message, and the exchange goes on.
    """
    mechanism = rfcScram()
    assert mechanism.respond(b"") == SCRAM_CLIENT_FIRST
    assert mechanism.respond(SCRAM_SERVER_FIRST) == SCRAM_CLIENT_FINAL
    assert mechanism.respond(SCRAM_SERVER_FINAL) == b""
    mechanism.successReceived()


def test_scramServerFinalExtensions() -> None:
    """
    Extensions after the server's signature are ignored.
    """
    mechanism = scramAfterServerFirst()
    assert mechanism.respond(SCRAM_SERVER_FINAL + b",x=future") == b""
    mechanism.successReceived()


@pytest.mark.parametrize(
    "serverFinal",
    [
        b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        b"v=" + base64.b64encode(b"short"),
        b"v=not base64!",
        b"v=",
    ],
)
def test_scramWrongServerSignature(serverFinal: bytes) -> None:
    """
    A server signature that is not the expected one means the server does
    not know the password: the exchange fails, and a later success reply is
    refused too.
    """
    mechanism = scramAfterServerFirst()
    with pytest.raises(SASLMechanismError, match="signature is wrong") as raised:
        mechanism.respond(serverFinal)
    assert raised.value.mechanism == "SCRAM-SHA-256"
    with pytest.raises(SASLMechanismError, match="did not prove"):
        mechanism.successReceived()


def test_scramServerFinalError() -> None:
    """
    A server-final-message reporting an error fails the exchange with an
    error that names the server's error.
    """
    mechanism = scramAfterServerFirst()
    with pytest.raises(SASLMechanismError, match="invalid-proof"):
        mechanism.respond(b"e=invalid-proof")


@pytest.mark.parametrize("serverFinal", [b"", b"x=1", b"garbage", b"r=abc"])
def test_scramMalformedServerFinal(serverFinal: bytes) -> None:
    """
    A server-final-message that is neither a signature nor an error is
    refused.
    """
    with pytest.raises(SASLMechanismError, match="malformed server-final"):
        scramAfterServerFirst().respond(serverFinal)


@pytest.mark.parametrize(
    "nonce",
    [
        b"somebodyElsesNonce123",
        b"rOprNGfwEbeRWgbNEk",
        b"xrOprNGfwEbeRWgbNEkqO",
        b"rOprNGfwEbeRWgbNEkqO\x7f",
        b"rOprNGfwEbeRWgbNEkqO\xc3\xa9",
        b"",
    ],
)
def test_scramNonceMustExtendOurs(nonce: bytes) -> None:
    """
    A server nonce that does not start with ours (or holds characters that
    are not printable ASCII) is refused.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError, match="nonce does not extend ours"):
        mechanism.respond(b"r=" + nonce + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_scramServerNonceMayBeOurs() -> None:
    """
    The server's part of the nonce is optional in the RFC 5802 grammar: our
    nonce alone is accepted.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    response = mechanism.respond(
        b"r=" + SCRAM_NONCE.encode() + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    )
    assert response.startswith(b"c=biws,r=" + SCRAM_NONCE.encode() + b",p=")


@pytest.mark.parametrize(
    ("iterations", "reason"),
    [
        (b"4095", "4095 iterations, fewer than the minimum of 4096"),
        (b"1", "1 iterations, fewer than the minimum of 4096"),
        (b"1000001", "more than 1000000 iterations"),
        (b"9" * 5000, "more than 1000000 iterations"),
        (b"0", "not a positive integer"),
        (b"04096", "not a positive integer"),
        (b"-4096", "not a positive integer"),
        (b"4096.0", "not a positive integer"),
        (b"", "not a positive integer"),
        (b"\xd9\xa4\xd9\xa0\xd9\xa9\xd9\xa6", "not a positive integer"),
    ],
)
def test_scramIterationCount(iterations: bytes, reason: str) -> None:
    """
    An iteration count below 4096 (RFC 7677), absurdly large (which would
    stall the client) or not a positive integer in ASCII digits is refused.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError, match=reason):
        mechanism.respond(
            b"r="
            + SCRAM_NONCE.encode()
            + b"x,s=W22ZaJ0SNY7soEsUEjb6gQ==,i="
            + iterations
        )


def test_scramIterationLimitsAdjustable() -> None:
    """
    The iteration limits are class attributes: a subclass may accept fewer
    or more iterations, and the bounds themselves are accepted.
    """

    class Lenient(ScramSHA256Mechanism):
        minIterations = 1
        maxIterations = 5000

    for count, accepted in [(b"1", True), (b"5000", True), (b"5001", False)]:
        mechanism = Lenient("user", "pencil", nonce=SCRAM_NONCE)
        mechanism.initialResponse()
        challenge = b"r=" + SCRAM_NONCE.encode() + b"x,s=AAAA,i=" + count
        if accepted:
            assert mechanism.respond(challenge).startswith(b"c=biws,")
        else:
            with pytest.raises(SASLMechanismError, match="more than 5000"):
                mechanism.respond(challenge)


@pytest.mark.parametrize(
    ("serverFirst", "reason"),
    [
        (b"e=other-error", "the server reports an error: 'other-error'"),
        (b"m=ext,r=" + SCRAM_NONCE.encode() + b",s=AAAA,i=4096", "extension"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,s=not base64,i=4096", "salt"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,s=AAA,i=4096", "salt"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,i=4096,s=AAAA", "malformed"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,s=AAAA", "malformed"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,s=AAAA,i=4096,", "malformed"),
        (b"r=" + SCRAM_NONCE.encode() + b"x,s=AAAA,,i=4096", "malformed"),
        (b"s=AAAA,r=" + SCRAM_NONCE.encode() + b"x,i=4096", "malformed"),
        (b"", "malformed"),
        (b"garbage", "malformed"),
        (b"x" * 200, "malformed server-first-message 'x{80}'\\.\\.\\."),
    ],
)
def test_scramBadServerFirst(serverFirst: bytes, reason: str) -> None:
    """
    A server-first-message that reports an error (named in ours), requires a
    mandatory extension (m=), has a salt that is not base64, or is not
    r=, s=, i= in that order is refused; a long one is quoted shortened.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError, match=reason):
        mechanism.respond(serverFirst)
    with pytest.raises(SASLMechanismError, match="unexpected challenge"):
        mechanism.respond(SCRAM_SERVER_FIRST)


def test_scramServerFirstExtensions() -> None:
    """
    Extensions after the iteration count are ignored (but are part of the
    signed exchange).
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    serverFirst = SCRAM_SERVER_FIRST + b",x=future"
    clientFinal = mechanism.respond(serverFirst)
    withoutProof = clientFinal.rpartition(b",p=")[0]
    assert withoutProof == SCRAM_CLIENT_FINAL.rpartition(b",p=")[0]
    assert clientFinal != SCRAM_CLIENT_FINAL
    authMessage = SCRAM_CLIENT_FIRST[3:] + b"," + serverFirst + b"," + withoutProof
    _, signature = referenceServer(
        b"pencil", base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ=="), 4096, authMessage
    )
    assert mechanism.respond(b"v=" + base64.b64encode(signature)) == b""


def test_scramOutOfOrder() -> None:
    """
    A challenge with content before the exchange started, a challenge after
    it ended, and a success reply before the server proved itself are all
    refused; a stray challenge ends the exchange, so a success reply after
    it is refused too.
    """
    with pytest.raises(SASLMechanismError, match="unexpected challenge"):
        rfcScram().respond(SCRAM_SERVER_FIRST)
    with pytest.raises(SASLMechanismError, match="did not prove"):
        rfcScram().successReceived()
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError, match="did not prove"):
        mechanism.successReceived()
    mechanism.respond(SCRAM_SERVER_FIRST)
    with pytest.raises(SASLMechanismError, match="did not prove"):
        mechanism.successReceived()
    mechanism.respond(SCRAM_SERVER_FINAL)
    mechanism.successReceived()
    with pytest.raises(SASLMechanismError, match="unexpected challenge"):
        mechanism.respond(b"")
    with pytest.raises(SASLMechanismError, match="did not prove"):
        mechanism.successReceived()


def test_scramServerFinalFirst() -> None:
    """
    A server-final-message where the server-first-message belongs is
    refused.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError, match="malformed server-first"):
        mechanism.respond(SCRAM_SERVER_FINAL)


def test_scramRestarts() -> None:
    """
    Each initial response starts a new exchange, so the mechanism can be
    used again (on another session) after a success or a failure.
    """
    mechanism = rfcScram()
    mechanism.initialResponse()
    with pytest.raises(SASLMechanismError):
        mechanism.respond(b"e=invalid-proof")
    for _ in range(2):
        assert mechanism.initialResponse() == SCRAM_CLIENT_FIRST
        assert mechanism.respond(SCRAM_SERVER_FIRST) == SCRAM_CLIENT_FINAL
        assert mechanism.respond(SCRAM_SERVER_FINAL) == b""
        mechanism.successReceived()


def clientNonce(clientFirst: bytes) -> str:
    """
    The nonce of a client-first-message.
    """
    assert clientFirst.startswith(b"n,,n=u,r=")
    return clientFirst[len(b"n,,n=u,r=") :].decode("ascii")


def test_scramDefaultNonce() -> None:
    """
    Without a given nonce, every exchange uses a new random one: at least 18
    bytes from the secrets module, printable ASCII, no comma.
    """
    mechanism = ScramSHA256Mechanism("u", "p")
    nonces = {clientNonce(mechanism.initialResponse()) for _ in range(20)}
    nonces.add(clientNonce(ScramSHA256Mechanism("u", "p").initialResponse()))
    assert len(nonces) == 21
    allowed = set(string.ascii_letters + string.digits + "-_")
    for nonce in nonces:
        assert set(nonce) <= allowed
        assert "," not in nonce
        assert len(base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))) >= 18


@pytest.mark.parametrize("nonce", ["", "a,b", "a b", "caf\u00e9", "a\x7f", "a\nb"])
def test_scramBadNonce(nonce: str) -> None:
    """
    A given nonce must be printable ASCII without a comma.
    """
    with pytest.raises(CommandArgumentError) as raised:
        ScramSHA256Mechanism("u", "p", nonce=nonce)
    assert (raised.value.argument, raised.value.value) == ("nonce", nonce)


@pytest.mark.parametrize(
    ("username", "sent"),
    [
        ("a=b,c", b"a=3Db=2Cc"),
        ("=,", b"=3D=2C"),
        ("j\u00fcrgen", "j\u00fcrgen".encode()),
        ("user\U0001f600", "user\U0001f600".encode()),
        *[(text, expected.encode()) for text, expected in SASLPREP_EXAMPLES],
    ],
)
def test_scramUsername(username: str, sent: bytes) -> None:
    """
    The username is SASLprep-ed as a query (unassigned code points allowed;
    the RFC 4013 examples), sent in UTF-8, with "=" and "," escaped as =3D
    and =2C.
    """
    mechanism = ScramSHA256Mechanism(username, "p", nonce="abc")
    assert mechanism.initialResponse() == b"n,,n=" + sent + b",r=abc"


@pytest.mark.parametrize("username", [*SASLPREP_ERRORS, "", "\u00ad"])
def test_scramUsernameRefused(username: str) -> None:
    """
    A username that SASLprep refuses (the RFC 4013 error examples) or that
    is empty once prepared is refused.
    """
    with pytest.raises(CommandArgumentError) as raised:
        ScramSHA256Mechanism(username, "p")
    assert raised.value.value == "<redacted>"


def finalFor(password: str) -> bytes:
    """
    The client-final-message of the RFC 7677 exchange with C{password}.
    """
    mechanism = ScramSHA256Mechanism("user", password, nonce=SCRAM_NONCE)
    mechanism.initialResponse()
    return mechanism.respond(SCRAM_SERVER_FIRST)


def test_scramPasswordPrepared() -> None:
    """
    The password is SASLprep-ed: equivalent passwords (the RFC 4013
    examples) give the same proof, others a different one.
    """
    assert finalFor("I\u00adX") == finalFor("IX") == finalFor("\u2168")
    assert finalFor("\u00aa") == finalFor("a")
    assert finalFor("a\u00a0b") == finalFor("a b")
    assert finalFor("pencil") == SCRAM_CLIENT_FINAL
    assert finalFor("Pencil") != SCRAM_CLIENT_FINAL


@pytest.mark.parametrize("password", SASLPREP_ERRORS)
def test_scramPasswordRefused(password: str) -> None:
    """
    A password that SASLprep refuses (the RFC 4013 error examples) is
    refused, without showing it.
    """
    with pytest.raises(CommandArgumentError) as raised:
        ScramSHA256Mechanism("user", password)
    assert raised.value.value == "<redacted>"
    assert "password" in raised.value.reason


def referenceServer(
    password: bytes, salt: bytes, iterations: int, authMessage: bytes
) -> tuple[bytes, bytes]:
    """
    The server's side of SCRAM-SHA-256 written out from RFC 5802: the stored
    key and the server signature.
    """
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    clientKey = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    serverKey = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    storedKey = hashlib.sha256(clientKey).digest()
    return storedKey, hmac.new(serverKey, authMessage, hashlib.sha256).digest()


@given(
    st.text(min_size=1, max_size=20, alphabet=st.characters(codec="utf-8")),
    st.text(max_size=20, alphabet=st.characters(codec="utf-8")),
    st.binary(max_size=32),
    st.text(
        min_size=1,
        max_size=20,
        alphabet=st.characters(min_codepoint=0x2D, max_codepoint=0x7E),
    ),
)
def test_scramAgreesWithServer(
    username: str, password: str, salt: bytes, serverNonce: str
) -> None:
    """
    For any credentials SASLprep accepts, any salt and server nonce, the
    client's proof is the one a server computes from the stored key, and
    the server's signature is accepted.
    """
    try:
        mechanism = ScramSHA256Mechanism(username, password, nonce="cnonce")
    except CommandArgumentError:
        return
    clientFirst = mechanism.initialResponse()
    serverFirst = (
        b"r=cnonce"
        + serverNonce.encode()
        + b",s="
        + base64.b64encode(salt)
        + b",i=4096"
    )
    clientFinal = mechanism.respond(serverFirst)
    withoutProof, _, proof = clientFinal.rpartition(b",p=")
    authMessage = clientFirst[3:] + b"," + serverFirst + b"," + withoutProof
    storedKey, serverSignature = referenceServer(
        saslprep(password).encode(), salt, 4096, authMessage
    )
    clientSignature = hmac.new(storedKey, authMessage, hashlib.sha256).digest()
    clientKey = bytes(
        a ^ b for a, b in zip(base64.b64decode(proof), clientSignature, strict=True)
    )
    assert hashlib.sha256(clientKey).digest() == storedKey
    assert mechanism.respond(b"v=" + base64.b64encode(serverSignature)) == b""
    mechanism.successReceived()


# --- OAUTHBEARER ---------------------------------------------------------

# RFC 7628 section 4.
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
RFC7628_IMAP_INITIAL_B64 = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1"
    b"dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_SMTP_INITIAL_B64 = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1"
    b"dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_IMAP_ERROR_B64 = (
    b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3Blbmlk"
    b"LWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1j"
    b"b25maWd1cmF0aW9uIn0="
)
RFC7628_SMTP_ERROR_B64 = (
    b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciBtYWMiLCJzY29wZSI6"
    b"Imh0dHBzOi8vbWFpbC5leGFtcGxlLmNvbS8ifQ=="
)


@pytest.mark.parametrize(
    ("port", "expected"),
    [(143, RFC7628_IMAP_INITIAL_B64), (587, RFC7628_SMTP_INITIAL_B64)],
)
def test_oauthBearerRFC7628Vectors(port: int, expected: bytes) -> None:
    """
    The OAUTHBEARER initial response is the GS2 header with the
    authorization identity, then host, port and the bearer token as
    ^A-separated pairs, ending with ^A^A: the RFC 7628 examples (section 4.1,
    IMAP, and section 4.4, SMTP), byte for byte.
    """
    mechanism = OAuthBearerMechanism(
        "user@example.com", RFC7628_TOKEN, host="server.example.com", port=port
    )
    assert mechanism.name == "OAUTHBEARER"
    initial = mechanism.initialResponse()
    assert initial == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=%d\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01" % (port,)
    )
    assert base64.b64encode(initial) == expected
    assert mechanism.errorDetails is None


@pytest.mark.parametrize(
    ("challenge", "details"),
    [
        (
            RFC7628_SMTP_ERROR_B64,
            {
                "status": "invalid_token",
                "schemes": "bearer mac",
                "scope": "https://mail.example.com/",
            },
        ),
        (
            RFC7628_IMAP_ERROR_B64,
            {
                "status": "invalid_token",
                "scope": "example_scope",
                "openid-configuration": (
                    "https://example.com/.well-known/openid-configuration"
                ),
            },
        ),
    ],
)
def test_oauthBearerRFC7628Errors(challenge: bytes, details: dict[str, str]) -> None:
    """
    The server's error challenge (the RFC 7628 examples of sections 4.3 and
    4.4) is kept as decoded JSON and answered with the dummy response ^A
    (C{AQ==} once encoded); a further challenge is a protocol error.
    """
    mechanism = OAuthBearerMechanism(
        "user@example.com", RFC7628_TOKEN, host="server.example.com", port=587
    )
    mechanism.initialResponse()
    response = mechanism.respond(base64.b64decode(challenge))
    assert response == b"\x01"
    assert base64.b64encode(response) == b"AQ=="
    assert mechanism.errorDetails == details
    with pytest.raises(SASLMechanismError) as raised:
        mechanism.respond(b"{}")
    assert raised.value.mechanism == "OAUTHBEARER"


@pytest.mark.parametrize(
    ("username", "host", "port", "expected"),
    [
        ("u@example.com", None, None, b"n,a=u@example.com,\x01auth=Bearer t\x01\x01"),
        (
            "u",
            "mx.example",
            None,
            b"n,a=u,\x01host=mx.example\x01auth=Bearer t\x01\x01",
        ),
        ("u", None, 25, b"n,a=u,\x01port=25\x01auth=Bearer t\x01\x01"),
        ("", None, None, b"n,,\x01auth=Bearer t\x01\x01"),
        ("a,b=c", None, None, b"n,a=a=2Cb=3Dc,\x01auth=Bearer t\x01\x01"),
        (
            "j\u00fcrgen",
            None,
            65535,
            "n,a=j\u00fcrgen,\x01port=65535\x01".encode() + b"auth=Bearer t\x01\x01",
        ),
        (
            "u",
            "b\u00fccher.example",
            1,
            "n,a=u,\x01host=b\u00fccher.example\x01".encode()
            + b"port=1\x01auth=Bearer t\x01\x01",
        ),
    ],
)
def test_oauthBearerMessage(
    username: str, host: str | None, port: int | None, expected: bytes
) -> None:
    """
    Host and port are sent only when given; an empty username sends no
    authorization identity; "," and "=" in the username are escaped as in an
    RFC 5801 saslname.
    """
    assert OAuthBearerMechanism(
        username, "t", host=host, port=port
    ).initialResponse() == (expected)


@pytest.mark.parametrize("port", [0, -1, 65536, True, "25", 25.0])
def test_oauthBearerBadPort(port: object) -> None:
    """
    A port that is not an int from 1 to 65535 is refused.
    """
    with pytest.raises(InvalidArgumentError) as raised:
        OAuthBearerMechanism("u", "t", port=port)  # type: ignore[arg-type]
    assert raised.value.argument == "port"


@pytest.mark.parametrize("host", ["mx\r", "mx\n.example", "m\x00x", "m\x01x", "\ud800"])
def test_oauthBearerBadHost(host: str) -> None:
    """
    A host name holding NUL, ^A, CR or LF, or not encodable as UTF-8, is
    refused.
    """
    with pytest.raises(CommandArgumentError) as raised:
        OAuthBearerMechanism("u", "t", host=host)
    assert raised.value.argument == "host"


def test_oauthBearerEmptyFirstChallenge() -> None:
    """
    An empty first challenge (AUTH sent without an initial response) is
    answered with the credentials; after them, even an empty challenge is
    the error report.
    """
    mechanism = OAuthBearerMechanism("u", "t")
    assert mechanism.respond(b"") == b"n,a=u,\x01auth=Bearer t\x01\x01"
    assert mechanism.respond(b"") == b"\x01"
    assert mechanism.errorDetails == b""
    with pytest.raises(SASLMechanismError):
        mechanism.respond(b"")


# --- token providers -----------------------------------------------------

OAuthFactory = Callable[..., XOAuth2Mechanism | OAuthBearerMechanism]

OAUTH_MECHANISMS: list[tuple[OAuthFactory, bytes, bytes]] = [
    (XOAuth2Mechanism, b"user=u\x01auth=Bearer %s\x01\x01", b""),
    (OAuthBearerMechanism, b"n,a=u,\x01auth=Bearer %s\x01\x01", b"\x01"),
]


def test_tokenProviderProtocol() -> None:
    """
    An object with a C{getToken} method is a L{TokenProvider}; others are
    not.
    """
    assert isinstance(FakeTokenProvider(), TokenProvider)
    assert not isinstance(object(), TokenProvider)


@pytest.mark.parametrize(("factory", "message", "errorResponse"), OAUTH_MECHANISMS)
def test_tokenFromProvider(
    factory: OAuthFactory, message: bytes, errorResponse: bytes
) -> None:
    """
    A mechanism made with only a token provider needs a token: it keeps the
    provider (and never calls it itself), refuses to start until a token is
    set, then sends the token it was given.
    """
    provider = FakeTokenProvider()
    mechanism = factory("u", tokenProvider=provider)
    assert mechanism.tokenProvider is provider
    assert mechanism.needsToken
    with pytest.raises(SASLMechanismError, match="setToken") as raised:
        mechanism.initialResponse()
    assert raised.value.mechanism == mechanism.name
    with pytest.raises(SASLMechanismError, match="no access token"):
        mechanism.respond(b"")
    mechanism.setToken("tok")
    assert not mechanism.needsToken
    assert mechanism.initialResponse() == message % (b"tok",)
    assert provider.calls == []


@pytest.mark.parametrize(("factory", "message", "errorResponse"), OAUTH_MECHANISMS)
def test_setTokenResetsErrors(
    factory: OAuthFactory, message: bytes, errorResponse: bytes
) -> None:
    """
    After the server refused a token, a new token set with C{setToken}
    starts afresh: the error is forgotten and the new token is sent, also to
    an empty first challenge.
    """
    mechanism = factory("u", "old", tokenProvider=FakeTokenProvider())
    assert not mechanism.needsToken
    assert mechanism.initialResponse() == message % (b"old",)
    assert mechanism.respond(b'{"status":"401"}') == errorResponse
    assert mechanism.errorDetails == {"status": "401"}
    mechanism.setToken("new")
    assert mechanism.errorDetails is None
    assert mechanism.respond(b"") == message % (b"new",)
    assert mechanism.respond(b'{"status":"400"}') == errorResponse
    assert mechanism.errorDetails == {"status": "400"}
    assert mechanism.initialResponse() == message % (b"new",)
    assert mechanism.errorDetails is None


@pytest.mark.parametrize(("factory", "message", "errorResponse"), OAUTH_MECHANISMS)
@pytest.mark.parametrize("bad", ["\r", "\n", "\x00", "\x01", "\ud800"])
def test_setTokenRefusesBadToken(
    factory: OAuthFactory, message: bytes, errorResponse: bytes, bad: str
) -> None:
    """
    C{setToken} checks the token as the constructor does, with a redacted
    error, and keeps the previous token.
    """
    mechanism = factory("u", "good")
    with pytest.raises(CommandArgumentError) as raised:
        mechanism.setToken(SECRET + bad)
    assert raised.value.value == "<redacted>"
    assert SECRET not in str(raised.value)
    assert mechanism.initialResponse() == message % (b"good",)


@pytest.mark.parametrize(
    ("factory", "argument"),
    [(XOAuth2Mechanism, "accessToken"), (OAuthBearerMechanism, "token")],
)
def test_tokenOrProviderRequired(factory: OAuthFactory, argument: str) -> None:
    """
    Giving neither a token nor a token provider is an
    L{InvalidArgumentError} (not a L{CommandArgumentError}: nothing would
    break a command) naming the token argument; a provider without
    C{getToken} is refused too.
    """
    with pytest.raises(InvalidArgumentError) as raised:
        factory("u")
    assert not isinstance(raised.value, CommandArgumentError)
    assert (raised.value.argument, raised.value.value) == (argument, None)
    with pytest.raises(InvalidArgumentError) as raised:
        factory("u", "t", tokenProvider=object())
    assert raised.value.argument == "tokenProvider"


def test_tokenAndProvider() -> None:
    """
    A token and a provider may both be given: the token is used first, the
    provider kept for later.
    """
    provider = FakeTokenProvider()
    mechanism = XOAuth2Mechanism("u", "first", tokenProvider=provider)
    assert mechanism.tokenProvider is provider
    assert mechanism.initialResponse() == b"user=u\x01auth=Bearer first\x01\x01"
    assert XOAuth2Mechanism("u", "t").tokenProvider is None


# --- credential validation -----------------------------------------------

SECRET = "s3cr3t-Value"

Factory = Callable[[str], object]

BAD_CREDENTIALS: list[tuple[str, Factory, str]] = []
for _bad in ["\r", "\n", "\r\n"]:
    BAD_CREDENTIALS += [
        ("PLAIN user", lambda v: PlainMechanism(v, "p"), _bad),
        ("PLAIN password", lambda v: PlainMechanism("u", v), _bad),
        ("PLAIN authzid", lambda v: PlainMechanism("u", "p", v), _bad),
        ("LOGIN user", lambda v: LoginMechanism(v, "p"), _bad),
        ("LOGIN password", lambda v: LoginMechanism("u", v), _bad),
        ("CRAM-MD5 user", lambda v: CramMD5Mechanism(v, "p"), _bad),
        ("CRAM-MD5 password", lambda v: CramMD5Mechanism("u", v), _bad),
        ("XOAUTH2 user", lambda v: XOAuth2Mechanism(v, "t"), _bad),
        ("XOAUTH2 token", lambda v: XOAuth2Mechanism("u", v), _bad),
        ("XOAUTH2 set token", lambda v: _xoauth2().setToken(v), _bad),
        ("SCRAM user", lambda v: ScramSHA256Mechanism(v, "p"), _bad),
        ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), _bad),
        ("OAUTHBEARER user", lambda v: OAuthBearerMechanism(v, "t"), _bad),
        ("OAUTHBEARER token", lambda v: OAuthBearerMechanism("u", v), _bad),
        ("OAUTHBEARER set token", lambda v: _oauthBearer().setToken(v), _bad),
        ("password mechanisms", lambda v: passwordMechanisms("u", v), _bad),
    ]
BAD_CREDENTIALS += [
    ("PLAIN user", lambda v: PlainMechanism(v, "p"), "\x00"),
    ("PLAIN password", lambda v: PlainMechanism("u", v), "\x00"),
    ("PLAIN authzid", lambda v: PlainMechanism("u", "p", v), "\x00"),
    ("password mechanisms", lambda v: passwordMechanisms(v, "p"), "\x00"),
    ("XOAUTH2 user", lambda v: XOAuth2Mechanism(v, "t"), "\x01"),
    ("XOAUTH2 token", lambda v: XOAuth2Mechanism("u", v), "\x01"),
    ("PLAIN password", lambda v: PlainMechanism("u", v), "\ud800"),
    ("LOGIN user", lambda v: LoginMechanism(v, "p"), "\udfff"),
    ("XOAUTH2 token", lambda v: XOAuth2Mechanism("u", v), "\ud800"),
    ("XOAUTH2 token", lambda v: XOAuth2Mechanism("u", v), "\x00"),
    ("XOAUTH2 set token", lambda v: _xoauth2().setToken(v), "\x00"),
    ("XOAUTH2 set token", lambda v: _xoauth2().setToken(v), "\x01"),
    ("XOAUTH2 set token", lambda v: _xoauth2().setToken(v), "\udfff"),
    ("SCRAM user", lambda v: ScramSHA256Mechanism(v, "p"), "\x00"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\x00"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\ud800"),
    ("SCRAM user", lambda v: ScramSHA256Mechanism(v, "p"), "\x07"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\x7f"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\ue000"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\U0001f600"),
    ("SCRAM password", lambda v: ScramSHA256Mechanism("u", v), "\u0627"),
    ("SCRAM user", lambda v: ScramSHA256Mechanism(v, "p"), "\u200e"),
    ("OAUTHBEARER user", lambda v: OAuthBearerMechanism(v, "t"), "\x00"),
    ("OAUTHBEARER user", lambda v: OAuthBearerMechanism(v, "t"), "\x01"),
    ("OAUTHBEARER token", lambda v: OAuthBearerMechanism("u", v), "\x00"),
    ("OAUTHBEARER token", lambda v: OAuthBearerMechanism("u", v), "\x01"),
    ("OAUTHBEARER token", lambda v: OAuthBearerMechanism("u", v), "\ud800"),
    ("OAUTHBEARER set token", lambda v: _oauthBearer().setToken(v), "\x01"),
]


@pytest.mark.parametrize(
    ("label", "factory", "bad"),
    BAD_CREDENTIALS,
    ids=[f"{label}-{bad!r}" for label, _, bad in BAD_CREDENTIALS],
)
def test_badCredentialsRefused(label: str, factory: Factory, bad: str) -> None:
    """
    A credential holding CR or LF (any mechanism), NUL (PLAIN, SCRAM,
    OAUTHBEARER, OAuth tokens), ^A (XOAUTH2, OAUTHBEARER), a character
    SASLprep refuses (SCRAM: controls, private use, a code point unassigned
    in Unicode 3.2 in a password, bad bidirectional text) or text that is
    not encodable as UTF-8 is refused when the mechanism is made or the
    token set, with an error that never shows the secret.
    """
    with pytest.raises(CommandArgumentError) as raised:
        factory(SECRET[:3] + bad + SECRET[3:])
    error = raised.value
    assert (error.argument, error.value) == ("authData", "<redacted>")
    shown = str(error) + repr(error.args) + error.reason
    assert SECRET[:3] not in shown
    assert SECRET[3:] not in shown
    assert error.__cause__ is None
    assert error.__context__ is None


@pytest.mark.parametrize(
    ("factory", "separator"),
    [
        (lambda v: LoginMechanism(v, v), "\x00"),
        (lambda v: LoginMechanism(v, v), "\x01"),
        (lambda v: CramMD5Mechanism(v, v), "\x00"),
        (lambda v: CramMD5Mechanism(v, v), "\x01"),
        (lambda v: XOAuth2Mechanism(v, "t"), "\x00"),
        (lambda v: PlainMechanism(v, v, v), "\x01"),
    ],
)
def test_separatorsOnlyWhereTheyMatter(factory: Factory, separator: str) -> None:
    """
    NUL and ^A are refused only by the mechanisms whose syntax they break;
    the others accept them.
    """
    assert isinstance(factory("a" + separator + "b"), SASLMechanism)


# --- the protocol and the error ------------------------------------------


def test_mechanismsSatisfyProtocol() -> None:
    """
    Every mechanism class is a L{SASLMechanism} (statically, by the
    annotation below, and at run time); an unrelated object is not.
    """
    mechanisms: list[SASLMechanism] = [
        PlainMechanism("u", "p"),
        LoginMechanism("u", "p"),
        CramMD5Mechanism("u", "p"),
        XOAuth2Mechanism("u", "t"),
        ScramSHA256Mechanism("u", "p"),
        OAuthBearerMechanism("u", "t"),
    ]
    for mechanism in mechanisms:
        assert isinstance(mechanism, SASLMechanism)
    assert not isinstance(object(), SASLMechanism)


def test_mechanismErrorIsProtocolError() -> None:
    """
    An unexpected challenge is a server protocol violation that carries its
    reason and the mechanism's name.
    """
    error = SASLMechanismError("odd challenge", "LOGIN")
    assert isinstance(error, SMTPProtocolError)
    assert (error.reason, error.mechanism, str(error)) == (
        "odd challenge",
        "LOGIN",
        "odd challenge",
    )
    assert SASLMechanismError("odd").mechanism is None


def test_passwordMechanisms() -> None:
    """
    A username and password give SCRAM-SHA-256, CRAM-MD5, PLAIN and LOGIN
    mechanisms, in that order, each holding those credentials.
    """
    scram, cram, plain, login = passwordMechanisms("tim", "tanstaaftanstaaf")
    assert [scram.name, cram.name, plain.name, login.name] == [
        "SCRAM-SHA-256",
        "CRAM-MD5",
        "PLAIN",
        "LOGIN",
    ]
    assert isinstance(scram, ScramSHA256Mechanism)
    assert scram.initialResponse().startswith(b"n,,n=tim,r=")
    assert cram.respond(b"<1896.697170952@postoffice.reston.mci.net>") == (
        b"tim b913a602c7eda7a495b4e6e7334d3890"
    )
    assert plain.initialResponse() == b"\x00tim\x00tanstaaftanstaaf"
    assert login.initialResponse() is None
    assert login.respond(b"") == b"tim"


@pytest.mark.parametrize(
    ("username", "password"),
    [
        ("tim", "bell\x07"),
        ("tim", "smile\U0001f600"),
        ("tim", "\u0627a"),
        ("\u00ad", "tanstaaftanstaaf"),
        ("\x07", "tanstaaftanstaaf"),
    ],
)
def test_passwordMechanismsWithoutScram(username: str, password: str) -> None:
    """
    Credentials that SASLprep refuses (or that it empties) give no
    SCRAM-SHA-256 mechanism, but still the others, which send them as they
    are.
    """
    mechanisms = passwordMechanisms(username, password)
    assert [m.name for m in mechanisms] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert mechanisms[1].initialResponse() == (
        b"\x00" + username.encode() + b"\x00" + password.encode()
    )


def test_mechanismsHideCredentialsInRepr() -> None:
    """
    The text form of a mechanism never shows its credentials.
    """
    for mechanism in [
        *passwordMechanisms(SECRET, SECRET),
        XOAuth2Mechanism(SECRET, SECRET),
        OAuthBearerMechanism(SECRET, SECRET),
    ]:
        assert SECRET not in repr(mechanism)
        assert SECRET not in str(mechanism)


# --- choosing a mechanism ------------------------------------------------


def test_strengthOrder() -> None:
    """
    The ranking is the documented one, strongest first.
    """
    assert MECHANISM_STRENGTH == (
        "SCRAM-SHA-256",
        "OAUTHBEARER",
        "XOAUTH2",
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
    )
    assert CLEARTEXT_MECHANISM_STRENGTH == (
        "SCRAM-SHA-256",
        "CRAM-MD5",
        "OAUTHBEARER",
        "XOAUTH2",
        "PLAIN",
        "LOGIN",
    )


@pytest.mark.parametrize(
    ("tlsActive", "expected"), [(True, "PLAIN"), (False, "CRAM-MD5")]
)
def test_chooseMechanismDependsOnTLS(tlsActive: bool, expected: str) -> None:
    """
    Under TLS PLAIN is preferred to CRAM-MD5 (the channel protects the
    password); in clear, CRAM-MD5 is preferred because it does not reveal
    the password to an eavesdropper.
    """
    registered = ["CRAM-MD5", "PLAIN", "LOGIN"]
    advertised = ["LOGIN", "PLAIN", "CRAM-MD5"]
    assert chooseMechanism(registered, advertised, tlsActive=tlsActive) == expected


@pytest.mark.parametrize(
    ("registered", "advertised", "expected"),
    [
        (["PLAIN", "LOGIN"], ["LOGIN", "PLAIN"], "PLAIN"),
        (["LOGIN", "PLAIN", "CRAM-MD5"], ["PLAIN", "LOGIN", "CRAM-MD5"], "PLAIN"),
        (["LOGIN", "CRAM-MD5"], ["LOGIN", "CRAM-MD5"], "LOGIN"),
        (["LOGIN", "PLAIN", "CRAM-MD5"], ["PLAIN", "LOGIN"], "PLAIN"),
        (["LOGIN", "PLAIN"], ["LOGIN"], "LOGIN"),
        (["PLAIN", "XOAUTH2"], ["PLAIN", "XOAUTH2"], "XOAUTH2"),
        (["XOAUTH2", "OAUTHBEARER"], ["XOAUTH2", "OAUTHBEARER"], "OAUTHBEARER"),
        (
            ["OAUTHBEARER", "SCRAM-SHA-256"],
            ["OAUTHBEARER", "SCRAM-SHA-256"],
            "SCRAM-SHA-256",
        ),
        (["plain"], ["PLAIN"], "plain"),
        (["PLAIN"], ["plain"], "PLAIN"),
        (["Cram-Md5", "LOGIN"], ["cram-md5", "plain", "login"], "LOGIN"),
        (["Cram-Md5", "PLAIN"], ["cram-md5"], "Cram-Md5"),
        (["X-FOO", "LOGIN"], ["X-FOO", "LOGIN"], "LOGIN"),
        (["X-FOO", "X-BAR"], ["X-BAR", "X-FOO"], "X-FOO"),
        (["X-BAR", "X-FOO"], ["X-FOO", "X-BAR"], "X-BAR"),
        (["X-FOO", "PLAIN"], ["X-FOO"], "X-FOO"),
        (["plain", "PLAIN"], ["PLAIN"], "plain"),
        (["PLAIN"], ["LOGIN"], None),
        ([], ["PLAIN"], None),
        (["PLAIN"], [], None),
        (["PLAIN"], ["PLA\u0131N"], None),
        (["PLA\u0131N"], ["PLAIN"], None),
        (["PLAINX"], ["PLAIN"], None),
    ],
)
def test_chooseMechanism(
    registered: list[str], advertised: list[str], expected: str | None
) -> None:
    """
    The strongest mechanism both sides know is chosen (ASCII letters compared
    without case, the registered spelling returned); unknown mechanisms come
    after every known one, in registration order; nothing in common gives
    L{None}.
    """
    assert chooseMechanism(registered, advertised) == expected


def test_chooseMechanismAcceptsAnyIterable() -> None:
    """
    The advertised names may be any iterable, such as a frozenset or a
    generator, and are read once.
    """
    assert chooseMechanism(("LOGIN", "PLAIN"), frozenset({"PLAIN", "LOGIN"})) == "PLAIN"
    assert (
        chooseMechanism(["LOGIN", "PLAIN"], (n for n in ["PLAIN", "LOGIN"])) == "PLAIN"
    )


@pytest.mark.parametrize(
    ("registered", "advertised"), [("PLAIN", ["PLAIN"]), (["PLAIN"], "PLAIN LOGIN")]
)
def test_chooseMechanismRefusesString(registered: object, advertised: object) -> None:
    """
    A single string where a collection of names belongs is refused instead of
    being read as a collection of one-letter names.
    """
    with pytest.raises(TypeError, match="not a str"):
        chooseMechanism(registered, advertised)  # type: ignore[arg-type]


names = st.sampled_from([*MECHANISM_STRENGTH, "X-FOO", "X-BAR", "plain", "Login"])


@given(st.lists(names, unique=True), st.lists(names))
def test_choiceIsStrongestCommon(registered: list[str], advertised: list[str]) -> None:
    """
    The choice is a registered name the server offers, and no other such name
    is ranked above it; there is no choice only when nothing is in common.
    """

    def rank(name: str) -> int:
        upper = name.upper()
        if upper in MECHANISM_STRENGTH:
            return MECHANISM_STRENGTH.index(upper)
        return len(MECHANISM_STRENGTH)

    offered = {name.upper() for name in advertised}
    common = [name for name in registered if name.upper() in offered]
    choice = chooseMechanism(registered, advertised)
    if not common:
        assert choice is None
        return
    assert choice in common
    for other in common:
        assert rank(choice) <= rank(other)
        if rank(other) == rank(choice):
            assert registered.index(choice) <= registered.index(other)
    assert chooseMechanism(registered, list(reversed(advertised))) == choice
