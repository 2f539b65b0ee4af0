"""
The public API is what C{mailclient.__all__} and the public modules export;
this test pins it so that a change to it is deliberate.
"""

from __future__ import annotations

import mailclient
from mailclient import errors

EXPECTED = {
    "Attempt",
    "Mailer",
    "MailerStats",
    "DSN",
    "LMTPClient",
    "OAuthBearerMechanism",
    "Recipient",
    "ScramSHA256Mechanism",
    "StatusClass",
    "TokenProvider",
    "classify",
    "verifyConnection",
    "Capabilities",
    "CramMD5Mechanism",
    "ESMTPClient",
    "ESMTPSenderFactory",
    "EnhancedStatus",
    "LoginMechanism",
    "PlainMechanism",
    "RecipientResult",
    "RecipientStatus",
    "Reply",
    "SASLMechanism",
    "SendResult",
    "SessionInfo",
    "TLSMode",
    "Timeouts",
    "XOAuth2Mechanism",
    "__version__",
    "sendmail",
}


def test_allIsPinned() -> None:
    """
    C{mailclient.__all__} names exactly the pinned public names, and each
    one exists.
    """
    assert set(mailclient.__all__) == EXPECTED
    for name in mailclient.__all__:
        assert hasattr(mailclient, name), name


def test_errorsAreOneTree() -> None:
    """
    Every public error derives from L{errors.MailClientError} and has a
    docstring.
    """
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.MailClientError), name
        assert cls.__doc__, name


def test_publicNamesDocumented() -> None:
    """
    Every public name (other than the version string and type aliases) has
    a docstring.
    """
    for name in EXPECTED - {"__version__", "RecipientStatus"}:
        assert getattr(mailclient, name).__doc__, name
