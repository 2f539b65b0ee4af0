"""
What a server's reply means for the sender: L{classify} turns a reply code,
its enhanced status code and its text into a L{StatusClass}.

The basic reply code (RFC 5321) decides the severity: 2xx (and 3xx) is a
success, 4xx a transient failure, 5xx a permanent one.  The enhanced status
code (RFC 3463 and the IANA "SMTP Enhanced Status Codes" registry) decides
what the problem is about, how to describe it and whether the sender can fix
it; without one, the reply code alone does.  Everything is looked up in
tables, one entry per registered code.

The reasons are:

  - C{"address"}: the address itself is bad (subject X.1: no such mailbox,
    no such domain, bad syntax);
  - C{"mailbox"}: the mailbox exists but cannot take the message (subject
    X.2: full, disabled);
  - C{"system"}: the receiving mail system (subject X.3: full, message too
    big, misconfigured);
  - C{"network"}: network or routing (subject X.4), and no reply at all;
  - C{"protocol"}: the SMTP dialogue (subject X.5: syntax, too many
    recipients);
  - C{"content"}: the message's media or encoding (subject X.6);
  - C{"policy"}: the server's acceptance policy (subject X.7 in general:
    not authorized, SPF, DKIM, DMARC, ARC, rate limits);
  - C{"security"}: authentication and encryption of the session or the
    message (X.7.3 to X.7.14, X.7.30);
  - C{"other"}: nothing more specific is known.

This module imports nothing from Twisted.
"""

from __future__ import annotations

import re
from typing import Literal

import attrs

from mailclient._wire.replies import EnhancedStatus
from mailclient.errors import InvalidArgumentError

__all__ = ["Reason", "RetryAdvice", "Severity", "StatusClass", "classify"]

Severity = Literal["success", "transient", "permanent"]
"""
How a reply ended the command: C{"success"} (2xx, and the 3xx intermediate
replies), C{"transient"} (4xx, or no reply at all) or C{"permanent"} (5xx).
"""

Reason = Literal[
    "mailbox",
    "address",
    "system",
    "network",
    "protocol",
    "content",
    "policy",
    "security",
    "other",
]
"""
What a status is about; see the module docstring.
"""

RetryAdvice = Literal[
    "none", "retry", "retry-later-slower", "fix-then-retry", "do-not-retry"
]
"""
What the sender should do: C{"none"} (it worked), C{"retry"} (the same
thing may work later), C{"retry-later-slower"} (it may work later, if the
sender slows down), C{"fix-then-retry"} (it fails until the sender changes
something: a smaller message, other credentials, TLS, fewer recipients per
transaction, a correct parameter) or C{"do-not-retry"}.
"""

# How an entry of the tables below relates to rate limiting, for the 421,
# 450, 451 and 454 replies (the only ones that can be "throttled"):
#   "always": the code itself says the server is overloaded or flooded;
#   "never":  the code says something specific that is not rate limiting,
#             whatever the text says;
#   "policy": a policy deferral (X.7.0, X.7.1 and unregistered X.7.x
#             details): throttling on 421, 450 and 451, which servers use to
#             defer senders that go too fast; on 454 (TLS or authentication
#             temporarily unavailable, RFC 3207 and RFC 4954) only when the
#             text says so;
#   "text":   only when the text uses throttling wording.
_Throttle = Literal["always", "never", "policy", "text"]


@attrs.frozen
class _Meaning:
    """
    What a code means: one entry of the tables.

    @ivar reason: what the status is about.
    @ivar description: short human text.
    @ivar fixable: a permanent failure the sender can fix.
    @ivar throttle: how the code relates to rate limiting.
    """

    reason: Reason
    description: str
    fixable: bool = False
    throttle: _Throttle = "text"


def _m(
    reason: Reason,
    description: str,
    *,
    fixable: bool = False,
    throttle: _Throttle = "text",
) -> _Meaning:
    """
    Build a table entry.
    """
    return _Meaning(reason, description, fixable, throttle)


# The registered subject.detail codes (the class is the reply's).
_DETAILS: dict[tuple[int, int], _Meaning] = {
    # X.1: addressing.
    (1, 1): _m("address", "mailbox does not exist"),
    (1, 2): _m("address", "destination domain does not exist or accepts no mail"),
    (1, 3): _m("address", "bad destination address syntax", fixable=True),
    (1, 4): _m("address", "destination address is ambiguous"),
    (1, 5): _m("address", "destination address valid"),
    (1, 6): _m("address", "mailbox has moved, no forwarding address"),
    (1, 7): _m("address", "bad sender address syntax", fixable=True),
    (1, 8): _m("address", "bad sender domain"),
    (1, 9): _m("address", "message relayed to a non-compliant mailer"),
    (1, 10): _m("address", "recipient domain accepts no mail (null MX)"),
    # X.2: mailbox.
    (2, 1): _m("mailbox", "mailbox disabled, not accepting messages"),
    (2, 2): _m("mailbox", "mailbox full", throttle="never"),
    (2, 3): _m(
        "mailbox",
        "message larger than the mailbox accepts",
        fixable=True,
        throttle="never",
    ),
    (2, 4): _m("mailbox", "mailing list expansion problem"),
    # X.3: mail system.
    (3, 1): _m("system", "mail system full"),
    (3, 2): _m("system", "system not accepting messages"),
    (3, 3): _m(
        "system",
        "system does not support the requested features",
        fixable=True,
        throttle="never",
    ),
    (3, 4): _m("system", "message too big", fixable=True, throttle="never"),
    (3, 5): _m("system", "system incorrectly configured"),
    (3, 6): _m("system", "requested priority was changed"),
    # X.4: network and routing.
    (4, 1): _m("network", "no answer from host"),
    (4, 2): _m("network", "bad connection"),
    (4, 3): _m("network", "directory server (DNS) failure"),
    (4, 4): _m("network", "unable to route"),
    (4, 5): _m("network", "mail system congestion", throttle="always"),
    (4, 6): _m("network", "routing loop detected"),
    (4, 7): _m("network", "delivery time expired"),
    # X.5: protocol.
    (5, 1): _m("protocol", "invalid command"),
    (5, 2): _m("protocol", "syntax error", fixable=True),
    (5, 3): _m(
        "protocol",
        "too many recipients: send the rest in another transaction",
        fixable=True,
        throttle="never",
    ),
    (5, 4): _m("protocol", "invalid command arguments", fixable=True),
    (5, 5): _m("protocol", "wrong protocol version"),
    (5, 6): _m(
        "protocol",
        "authentication exchange line too long",
        fixable=True,
        throttle="never",
    ),
    # X.6: content and media.
    (6, 1): _m("content", "media type not supported"),
    (6, 2): _m("content", "conversion required but prohibited"),
    (6, 3): _m("content", "conversion required but not supported"),
    (6, 4): _m("content", "conversion with loss performed"),
    (6, 5): _m("content", "conversion failed"),
    (6, 6): _m("content", "message content not available"),
    (6, 7): _m("content", "non-ASCII addresses not permitted"),
    (6, 8): _m("content", "UTF-8 reply required but not permitted by the client"),
    (6, 9): _m("content", "UTF-8 header cannot be transferred"),
    # X.6.10 is registered as a deprecated duplicate of X.6.8.
    (6, 10): _m("content", "UTF-8 reply required but not permitted by the client"),
    # X.7: security and policy.
    (7, 1): _m("policy", "delivery not authorized by policy", throttle="policy"),
    (7, 2): _m("policy", "mailing list expansion prohibited"),
    (7, 3): _m(
        "security", "security conversion required but not possible", throttle="never"
    ),
    (7, 4): _m("security", "security features not supported", throttle="never"),
    (7, 5): _m("security", "cryptographic failure", throttle="never"),
    (7, 6): _m("security", "cryptographic algorithm not supported", throttle="never"),
    (7, 7): _m("security", "message integrity failure", throttle="never"),
    (7, 8): _m(
        "security",
        "authentication credentials invalid",
        fixable=True,
        throttle="never",
    ),
    (7, 9): _m(
        "security",
        "authentication mechanism too weak",
        fixable=True,
        throttle="never",
    ),
    (7, 10): _m("security", "encryption needed", fixable=True, throttle="never"),
    (7, 11): _m(
        "security",
        "encryption required for the authentication mechanism",
        fixable=True,
        throttle="never",
    ),
    (7, 12): _m(
        "security", "a password transition is needed", fixable=True, throttle="never"
    ),
    (7, 13): _m("security", "user account disabled", throttle="never"),
    (7, 14): _m("security", "trust relationship required", throttle="never"),
    (7, 15): _m("policy", "priority level too low", throttle="never"),
    (7, 16): _m(
        "policy",
        "message too big for the requested priority",
        fixable=True,
        throttle="never",
    ),
    (7, 17): _m("mailbox", "mailbox owner has changed", throttle="never"),
    (7, 18): _m("address", "domain owner has changed", throttle="never"),
    (7, 19): _m("policy", "RRVS test cannot be completed", throttle="never"),
    (7, 20): _m("policy", "no passing DKIM signature", throttle="never"),
    (7, 21): _m("policy", "no acceptable DKIM signature", throttle="never"),
    (7, 22): _m("policy", "no valid author-matched DKIM signature", throttle="never"),
    (7, 23): _m("policy", "SPF validation failed", throttle="never"),
    (7, 24): _m("policy", "SPF validation error", throttle="never"),
    (7, 25): _m("policy", "reverse DNS validation failed", throttle="never"),
    (7, 26): _m(
        "policy",
        "multiple authentication checks failed (SPF, DKIM, DMARC)",
        throttle="never",
    ),
    (7, 27): _m("address", "sender domain accepts no mail (null MX)", throttle="never"),
    (7, 28): _m("policy", "mail flood detected", throttle="always"),
    (7, 29): _m("policy", "ARC validation failure", throttle="never"),
    (7, 30): _m("security", "REQUIRETLS support required", throttle="never"),
}

# The meaning of X.n.0 and of unregistered details of a known subject.
# Subject 0 ("other or undefined") says nothing: the reply code decides.
_SUBJECTS: dict[int, _Meaning] = {
    1: _m("address", "address problem"),
    2: _m("mailbox", "mailbox problem"),
    3: _m("system", "mail system problem"),
    4: _m("network", "network or routing problem"),
    5: _m("protocol", "protocol problem"),
    6: _m("content", "message content or media problem"),
    7: _m("policy", "refused by security or policy", throttle="policy"),
}

# The basic reply codes (RFC 5321, RFC 4954, RFC 3207, RFC 7504, RFC 1869).
_REPLY_CODES: dict[int, _Meaning] = {
    211: _m("other", "system status"),
    214: _m("other", "help message"),
    220: _m("other", "service ready"),
    221: _m("other", "service closing the connection"),
    235: _m("security", "authentication succeeded"),
    250: _m("other", "requested action completed"),
    251: _m("address", "user not local; the server will forward"),
    252: _m("address", "cannot verify the user; delivery will be attempted"),
    334: _m("security", "authentication challenge"),
    354: _m("other", "start mail input"),
    421: _m("system", "service not available, closing the connection"),
    432: _m("security", "a password transition is needed"),
    450: _m("mailbox", "mailbox unavailable (busy or temporarily blocked)"),
    451: _m("system", "local error in processing"),
    452: _m("system", "insufficient system storage or too many recipients"),
    454: _m("security", "TLS or authentication temporarily unavailable"),
    455: _m("protocol", "the server cannot accommodate the parameters"),
    500: _m("protocol", "command not recognized"),
    501: _m("protocol", "syntax error in parameters or arguments", fixable=True),
    502: _m("protocol", "command not implemented"),
    503: _m("protocol", "bad sequence of commands"),
    504: _m("protocol", "command parameter not implemented", fixable=True),
    521: _m("system", "the host does not accept mail"),
    530: _m("security", "authentication or TLS required", fixable=True),
    534: _m("security", "authentication mechanism too weak", fixable=True),
    535: _m("security", "authentication credentials invalid", fixable=True),
    538: _m(
        "security",
        "encryption required for the authentication mechanism",
        fixable=True,
    ),
    550: _m("mailbox", "mailbox unavailable (not found, no access or refused)"),
    551: _m("address", "user not local"),
    552: _m("mailbox", "exceeded storage allocation (mailbox full or message too big)"),
    553: _m("address", "mailbox name not allowed"),
    554: _m("other", "transaction failed"),
    555: _m(
        "protocol",
        "MAIL or RCPT parameters not recognized or not implemented",
        fixable=True,
    ),
    556: _m("address", "the domain does not accept mail"),
}

# Reply codes missing above: described by their first digit, and about what
# their second digit says (RFC 5321 section 4.2.1).
_REPLY_CLASSES: dict[int, str] = {
    2: "success",
    3: "intermediate reply: the server waits for more",
    4: "transient failure",
    5: "permanent failure",
}
_SECOND_DIGITS: dict[int, Reason] = {0: "protocol", 2: "network", 5: "system"}

# The reply codes that say more than a generic enhanced code (X.n.0 or an
# unregistered detail): with one of those, the reply code decides.  Servers
# send "535 5.7.0" for bad credentials and "454 4.7.0" for TLS or
# authentication temporarily unavailable.
_SPECIFIC_REPLY_CODES = frozenset({432, 454, 501, 504, 530, 534, 535, 538, 555})

_SEVERITIES: dict[int, Severity] = {
    2: "success",
    3: "success",
    4: "transient",
    5: "permanent",
}

# The replies that may ask us to slow down, each with whether a policy
# deferral code (see _Throttle) alone says so.
_THROTTLING_REPLIES: dict[int, bool] = {421: True, 450: True, 451: True, 454: False}

_THROTTLING_WORDS = re.compile(
    r"rate[ -]?limit|too many|throttl|try again later|try later|slow down"
    r"|exceeded|too fast|unusual rate|unexpected volume",
    re.IGNORECASE,
)

_THROTTLED_DESCRIPTION = "the server is limiting the sending rate: slow down"

_NO_REPLY = "no reply: the connection was lost or timed out"


@attrs.frozen
class StatusClass:
    """
    What a reply means for the sender.

    @ivar severity: success, transient or permanent failure.
    @ivar reason: what the status is about.
    @ivar retry: what the sender should do next.
    @ivar description: short human text, such as C{"mailbox does not
        exist"}.
    @ivar throttled: the server asks us to slow down (rate limiting).
    """

    severity: Severity
    reason: Reason
    retry: RetryAdvice
    description: str
    throttled: bool

    @property
    def isTransient(self) -> bool:
        """
        C{True} for a transient failure: the same thing may work later.
        """
        return self.severity == "transient"

    @property
    def isPermanent(self) -> bool:
        """
        C{True} for a permanent failure: the same thing will fail again.
        """
        return self.severity == "permanent"


def classify(
    code: int | None,
    enhanced: EnhancedStatus | str | None = None,
    text: str = "",
) -> StatusClass:
    """
    Classify a server reply.

    The reply code decides the severity.  The enhanced status code decides
    the reason, the description and whether a permanent failure can be
    fixed: a registered code by its own table entry, an unregistered detail
    (or X.n.0) by its subject, unless the reply code is the more specific
    (C{"535 5.7.0"} is bad credentials).  When its class disagrees with the
    reply code it only decides the reason.  Without a usable enhanced status
    code (none, X.0.x, an unknown subject) the reply code decides
    everything.

    A 421, 450, 451 or 454 reply is C{throttled} when its enhanced code says
    the server is overloaded or deferring by policy (X.7.x other than the
    specific security and authentication codes; not on 454, which RFC 3207
    and RFC 4954 use for TLS and authentication) or when its text uses
    throttling wording (C{"rate limit"}, C{"too many"}, C{"throttl"},
    C{"try again later"}, C{"slow down"}, C{"exceeded"}, ...).

    @param code: the three-digit reply code, or L{None} when no reply
        arrived (the connection was lost or a timeout fired): that is a
        transient network failure.
    @param enhanced: the enhanced status code, as an L{EnhancedStatus} or
        in its dotted form such as C{"5.1.1"}; a string that is not one
        well-formed code is ignored.
    @param text: the reply text, searched for throttling wording.
    @return: the classification.
    @raise InvalidArgumentError: if C{code} is not L{None} or 200 to 599.
    """
    if code is None:
        return StatusClass("transient", "network", "retry", _NO_REPLY, False)
    if not 200 <= code <= 599:
        raise InvalidArgumentError("code", code, "expected a reply code 200-599")
    if isinstance(enhanced, str):
        enhanced = EnhancedStatus.parse(enhanced.strip())
    severity = _SEVERITIES[code // 100]
    meaning = _meaningOf(code, enhanced)
    throttled = _isThrottled(code, meaning, text)
    description = meaning.description
    if throttled and meaning.throttle != "always":
        description = _THROTTLED_DESCRIPTION
    return StatusClass(
        severity,
        meaning.reason,
        _advice(severity, meaning, throttled),
        description,
        throttled,
    )


def _replyMeaning(code: int) -> _Meaning:
    """
    The meaning of a basic reply code.

    @param code: a reply code, 200 to 599.
    @return: its table entry, or one made from its first two digits.
    """
    known = _REPLY_CODES.get(code)
    if known is not None:
        return known
    reason = _SECOND_DIGITS.get(code // 10 % 10, "other")
    return _m(reason, _REPLY_CLASSES[code // 100])


def _meaningOf(code: int, enhanced: EnhancedStatus | None) -> _Meaning:
    """
    The meaning of a reply.

    @param code: the reply code, 200 to 599.
    @param enhanced: the enhanced status code, or L{None}.
    @return: the meaning of the enhanced code's subject and detail when it
        is registered, else of its subject unless the reply code is more
        specific; when its class disagrees with the reply code, only its
        reason is used.  The reply code's meaning when the enhanced code
        says nothing (none, X.0.x, an unknown subject).
    """
    basic = _replyMeaning(code)
    if enhanced is None:
        return basic
    registered = _DETAILS.get((enhanced.subject, enhanced.detail))
    detailed = registered or _SUBJECTS.get(enhanced.subject)
    if detailed is None:
        return basic
    if enhanced.klass != code // 100:
        return attrs.evolve(basic, reason=detailed.reason)
    if registered is None and code in _SPECIFIC_REPLY_CODES:
        return basic
    return detailed


def _isThrottled(code: int, meaning: _Meaning, text: str) -> bool:
    """
    Whether a reply asks us to slow down.

    @param code: the reply code.
    @param meaning: the reply's meaning.
    @param text: the reply text.
    @return: C{True} when the reply is throttling.
    """
    policyDeferral = _THROTTLING_REPLIES.get(code)
    if policyDeferral is None or meaning.throttle == "never":
        return False
    if meaning.throttle == "always" or (
        meaning.throttle == "policy" and policyDeferral
    ):
        return True
    return _THROTTLING_WORDS.search(text) is not None


def _advice(severity: Severity, meaning: _Meaning, throttled: bool) -> RetryAdvice:
    """
    What the sender should do.

    @param severity: the reply's severity.
    @param meaning: the reply's meaning.
    @param throttled: whether the server asks us to slow down.
    @return: the advice.
    """
    if severity == "success":
        return "none"
    if severity == "transient":
        return "retry-later-slower" if throttled else "retry"
    return "fix-then-retry" if meaning.fixable else "do-not-retry"
