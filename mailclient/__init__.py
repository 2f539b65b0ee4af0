"""
mailclient: a correct, safe and fast ESMTP client for Twisted.

The everyday entry point is L{sendmail}; L{ESMTPClient} and
L{ESMTPSenderFactory} are the protocol and factory under it.  Errors live in
L{mailclient.errors}.
"""

from mailclient._sendmail import ESMTPSenderFactory, sendmail
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.policy import TLSMode
from mailclient._wire.replies import EnhancedStatus, Reply
from mailclient._wire.sasl import (
    CramMD5Mechanism,
    LoginMechanism,
    PlainMechanism,
    SASLMechanism,
    XOAuth2Mechanism,
)
from mailclient.protocol import ESMTPClient, Timeouts
from mailclient.results import RecipientResult, RecipientStatus, SendResult, SessionInfo

__version__ = "0.1.0.dev0"

__all__ = [
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
]
