"""
Tests for L{mailclient._wire.sasl}: SASL mechanisms and mechanism choice.

Vectors come from RFC 4616 (PLAIN), RFC 2195 (CRAM-MD5) and Google's XOAUTH2
documentation.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire.sasl import (
    CLEARTEXT_MECHANISM_STRENGTH,
    MECHANISM_STRENGTH,
    CramMD5Mechanism,
    LoginMechanism,
    PlainMechanism,
    SASLMechanism,
    SASLMechanismError,
    XOAuth2Mechanism,
    chooseMechanism,
    passwordMechanisms,
)
from mailclient.errors import CommandArgumentError, SMTPProtocolError

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
]


@pytest.mark.parametrize(
    ("label", "factory", "bad"),
    BAD_CREDENTIALS,
    ids=[f"{label}-{bad!r}" for label, _, bad in BAD_CREDENTIALS],
)
def test_badCredentialsRefused(label: str, factory: Factory, bad: str) -> None:
    """
    A credential holding CR or LF (any mechanism), NUL (PLAIN), ^A (XOAUTH2)
    or text that is not encodable as UTF-8 is refused when the mechanism is
    made, with an error that never shows the secret.
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
        (lambda v: XOAuth2Mechanism(v, v), "\x00"),
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
    A username and password give CRAM-MD5, PLAIN and LOGIN mechanisms, in that
    order, each holding those credentials.
    """
    cram, plain, login = passwordMechanisms("tim", "tanstaaftanstaaf")
    assert [cram.name, plain.name, login.name] == ["CRAM-MD5", "PLAIN", "LOGIN"]
    assert cram.respond(b"<1896.697170952@postoffice.reston.mci.net>") == (
        b"tim b913a602c7eda7a495b4e6e7334d3890"
    )
    assert plain.initialResponse() == b"\x00tim\x00tanstaaftanstaaf"
    assert login.initialResponse() is None
    assert login.respond(b"") == b"tim"


def test_mechanismsHideCredentialsInRepr() -> None:
    """
    The text form of a mechanism never shows its credentials.
    """
    for mechanism in [
        *passwordMechanisms(SECRET, SECRET),
        XOAuth2Mechanism(SECRET, SECRET),
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
