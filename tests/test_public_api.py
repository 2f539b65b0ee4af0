"""
The public API is what C{mailclient.__all__} and the public modules export;
this test pins it so that a change to it is deliberate.
"""

from __future__ import annotations

import mailclient
from mailclient import errors

EXPECTED = {
    "Attachment",
    "Attempt",
    "DeliveryStatus",
    "composeMessage",
    "sendMessage",
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
    for name in EXPECTED - {"__version__", "RecipientStatus", "DeliveryStatus"}:
        assert getattr(mailclient, name).__doc__, name


MODULES = {
    "mailclient.message": {
        "Attachment",
        "Envelope",
        "addMissingHeaders",
        "composeMessage",
        "envelopeFromMessage",
        "parseAddress",
        "parseAddressList",
    },
    "mailclient.config": {"ENVIRONMENT_VARIABLES", "SMTPSettings", "loadSettings"},
    "mailclient.mail": {
        "MessageReport",
        "SMTPConnection",
        "SentMessages",
        "failsSilently",
        "get_connection",
        "send_mail",
        "send_mass_mail",
    },
    "mailclient.testing": {
        "DEFAULT_CAPABILITIES",
        "DEFAULT_WINDOW",
        "CloseReason",
        "ConnectionRecord",
        "Delivery",
        "MemoryEndpoint",
        "MemoryTransport",
        "Outbox",
        "Rule",
        "ScriptedServer",
        "ScriptedServerProtocol",
        "runFor",
        "settle",
    },
    "mailclient.relay": {
        "Deliverer",
        "FileSystem",
        "MessageQueue",
        "QueueEntry",
        "QueueError",
        "QueuedRecipient",
        "Relay",
        "RelayService",
        "RelayStats",
        "SubmissionFactory",
        "SubmissionServer",
    },
}


def test_publicModulesArePinned() -> None:
    """
    Each public module's C{__all__} names exactly the pinned names, each
    one exists, and each one is described in the documentation.
    """
    import importlib
    from pathlib import Path

    docs = "\n".join(
        p.read_text("utf-8")
        for p in (Path(__file__).parent.parent / "docs").glob("*.rst")
    )
    for moduleName, names in MODULES.items():
        module = importlib.import_module(moduleName)
        assert set(module.__all__) == names, moduleName
        assert f".. py:module:: {moduleName}" in docs, moduleName
        for name in names:
            assert hasattr(module, name), (moduleName, name)
            assert name in docs, (moduleName, name)
