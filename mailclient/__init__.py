"""
mailclient: a correct, safe and fast ESMTP client for Twisted.

The everyday entry points are L{sendmail} and L{sendMessage} (the envelope
from the message's headers), with L{composeMessage} to build the message;
L{ESMTPClient} (and L{LMTPClient}) and L{ESMTPSenderFactory} are the
protocol and factory under them, and L{verifyConnection} checks a server
without sending mail.  L{Mailer} sends many messages to one destination over
a pool of reused connections, with retries and flow control.  Errors live in
L{mailclient.errors}.

Public modules: L{mailclient.message} (composing, addresses, envelopes),
L{mailclient.config} (settings from keywords, a URL and the environment),
L{mailclient.mail} (the shape of Django's C{django.core.mail}),
L{mailclient.testing} (an in-memory SMTP server to test your code against),
L{mailclient.errors}, L{mailclient.results} and L{mailclient.protocol}.
"""

from mailclient._mailer import Mailer, MailerStats
from mailclient._sendmail import (
    ESMTPSenderFactory,
    sendmail,
    sendMessage,
    verifyConnection,
)
from mailclient._wire.capabilities import Capabilities
from mailclient._wire.envelope import DSN, Recipient
from mailclient._wire.policy import TLSMode
from mailclient._wire.replies import EnhancedStatus, Reply
from mailclient._wire.sasl import (
    CramMD5Mechanism,
    LoginMechanism,
    OAuthBearerMechanism,
    PlainMechanism,
    SASLMechanism,
    ScramSHA256Mechanism,
    TokenProvider,
    XOAuth2Mechanism,
)
from mailclient._wire.status import StatusClass, classify
from mailclient.message import Attachment, composeMessage
from mailclient.protocol import ESMTPClient, LMTPClient, Timeouts
from mailclient.results import (
    Attempt,
    DeliveryStatus,
    RecipientResult,
    RecipientStatus,
    SendResult,
    SessionInfo,
)

__version__ = "0.1.0.dev0"

__all__ = [
    "DSN",
    "Attachment",
    "Attempt",
    "Capabilities",
    "CramMD5Mechanism",
    "DeliveryStatus",
    "ESMTPClient",
    "ESMTPSenderFactory",
    "EnhancedStatus",
    "LMTPClient",
    "LoginMechanism",
    "Mailer",
    "MailerStats",
    "OAuthBearerMechanism",
    "PlainMechanism",
    "Recipient",
    "RecipientResult",
    "RecipientStatus",
    "Reply",
    "SASLMechanism",
    "ScramSHA256Mechanism",
    "SendResult",
    "SessionInfo",
    "StatusClass",
    "TLSMode",
    "Timeouts",
    "TokenProvider",
    "XOAuth2Mechanism",
    "__version__",
    "classify",
    "composeMessage",
    "sendMessage",
    "sendmail",
    "verifyConnection",
]
