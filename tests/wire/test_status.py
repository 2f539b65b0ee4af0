"""
Tests for L{mailclient._wire.status}: classifying replies by their reply
code, enhanced status code (RFC 3463 and the IANA registry) and text.
"""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailclient._wire.replies import EnhancedStatus
from mailclient._wire.status import StatusClass, classify
from mailclient.errors import InvalidArgumentError

THROTTLED = "the server is limiting the sending rate: slow down"

# Every registered subject.detail: (subject.detail, reason, the sender can
# fix a permanent failure, description).
DETAILS: list[tuple[str, str, bool, str]] = [
    ("1.1", "address", False, "mailbox does not exist"),
    ("1.2", "address", False, "destination domain does not exist or accepts no mail"),
    ("1.3", "address", True, "bad destination address syntax"),
    ("1.4", "address", False, "destination address is ambiguous"),
    ("1.5", "address", False, "destination address valid"),
    ("1.6", "address", False, "mailbox has moved, no forwarding address"),
    ("1.7", "address", True, "bad sender address syntax"),
    ("1.8", "address", False, "bad sender domain"),
    ("1.9", "address", False, "message relayed to a non-compliant mailer"),
    ("1.10", "address", False, "recipient domain accepts no mail (null MX)"),
    ("2.1", "mailbox", False, "mailbox disabled, not accepting messages"),
    ("2.2", "mailbox", False, "mailbox full"),
    ("2.3", "mailbox", True, "message larger than the mailbox accepts"),
    ("2.4", "mailbox", False, "mailing list expansion problem"),
    ("3.1", "system", False, "mail system full"),
    ("3.2", "system", False, "system not accepting messages"),
    ("3.3", "system", True, "system does not support the requested features"),
    ("3.4", "system", True, "message too big"),
    ("3.5", "system", False, "system incorrectly configured"),
    ("3.6", "system", False, "requested priority was changed"),
    ("4.1", "network", False, "no answer from host"),
    ("4.2", "network", False, "bad connection"),
    ("4.3", "network", False, "directory server (DNS) failure"),
    ("4.4", "network", False, "unable to route"),
    ("4.5", "network", False, "mail system congestion"),
    ("4.6", "network", False, "routing loop detected"),
    ("4.7", "network", False, "delivery time expired"),
    ("5.1", "protocol", False, "invalid command"),
    ("5.2", "protocol", True, "syntax error"),
    (
        "5.3",
        "protocol",
        True,
        "too many recipients: send the rest in another transaction",
    ),
    ("5.4", "protocol", True, "invalid command arguments"),
    ("5.5", "protocol", False, "wrong protocol version"),
    ("5.6", "protocol", True, "authentication exchange line too long"),
    ("6.1", "content", False, "media type not supported"),
    ("6.2", "content", False, "conversion required but prohibited"),
    ("6.3", "content", False, "conversion required but not supported"),
    ("6.4", "content", False, "conversion with loss performed"),
    ("6.5", "content", False, "conversion failed"),
    ("6.6", "content", False, "message content not available"),
    ("6.7", "content", False, "non-ASCII addresses not permitted"),
    ("6.8", "content", False, "UTF-8 reply required but not permitted by the client"),
    ("6.9", "content", False, "UTF-8 header cannot be transferred"),
    ("6.10", "content", False, "UTF-8 reply required but not permitted by the client"),
    ("7.1", "policy", False, "delivery not authorized by policy"),
    ("7.2", "policy", False, "mailing list expansion prohibited"),
    ("7.3", "security", False, "security conversion required but not possible"),
    ("7.4", "security", False, "security features not supported"),
    ("7.5", "security", False, "cryptographic failure"),
    ("7.6", "security", False, "cryptographic algorithm not supported"),
    ("7.7", "security", False, "message integrity failure"),
    ("7.8", "security", True, "authentication credentials invalid"),
    ("7.9", "security", True, "authentication mechanism too weak"),
    ("7.10", "security", True, "encryption needed"),
    ("7.11", "security", True, "encryption required for the authentication mechanism"),
    ("7.12", "security", True, "a password transition is needed"),
    ("7.13", "security", False, "user account disabled"),
    ("7.14", "security", False, "trust relationship required"),
    ("7.15", "policy", False, "priority level too low"),
    ("7.16", "policy", True, "message too big for the requested priority"),
    ("7.17", "mailbox", False, "mailbox owner has changed"),
    ("7.18", "address", False, "domain owner has changed"),
    ("7.19", "policy", False, "RRVS test cannot be completed"),
    ("7.20", "policy", False, "no passing DKIM signature"),
    ("7.21", "policy", False, "no acceptable DKIM signature"),
    ("7.22", "policy", False, "no valid author-matched DKIM signature"),
    ("7.23", "policy", False, "SPF validation failed"),
    ("7.24", "policy", False, "SPF validation error"),
    ("7.25", "policy", False, "reverse DNS validation failed"),
    (
        "7.26",
        "policy",
        False,
        "multiple authentication checks failed (SPF, DKIM, DMARC)",
    ),
    ("7.27", "address", False, "sender domain accepts no mail (null MX)"),
    ("7.28", "policy", False, "mail flood detected"),
    ("7.29", "policy", False, "ARC validation failure"),
    ("7.30", "security", False, "REQUIRETLS support required"),
]

# The subject.detail codes that alone make a 421, 450 or 451 throttled.
THROTTLING_DETAILS = {"4.5", "7.1", "7.28"}

# Subject defaults: X.n.0 and unregistered details of a known subject.
SUBJECTS: list[tuple[int, str, str]] = [
    (1, "address", "address problem"),
    (2, "mailbox", "mailbox problem"),
    (3, "system", "mail system problem"),
    (4, "network", "network or routing problem"),
    (5, "protocol", "protocol problem"),
    (6, "content", "message content or media problem"),
    (7, "policy", "refused by security or policy"),
]

# Every basic reply code of the fallback table: (code, reason, retry,
# description).
REPLY_CODES: list[tuple[int, str, str, str]] = [
    (211, "other", "none", "system status"),
    (214, "other", "none", "help message"),
    (220, "other", "none", "service ready"),
    (221, "other", "none", "service closing the connection"),
    (235, "security", "none", "authentication succeeded"),
    (250, "other", "none", "requested action completed"),
    (251, "address", "none", "user not local; the server will forward"),
    (252, "address", "none", "cannot verify the user; delivery will be attempted"),
    (334, "security", "none", "authentication challenge"),
    (354, "other", "none", "start mail input"),
    (421, "system", "retry", "service not available, closing the connection"),
    (432, "security", "retry", "a password transition is needed"),
    (450, "mailbox", "retry", "mailbox unavailable (busy or temporarily blocked)"),
    (451, "system", "retry", "local error in processing"),
    (452, "system", "retry", "insufficient system storage or too many recipients"),
    (454, "security", "retry", "TLS or authentication temporarily unavailable"),
    (455, "protocol", "retry", "the server cannot accommodate the parameters"),
    (500, "protocol", "do-not-retry", "command not recognized"),
    (501, "protocol", "fix-then-retry", "syntax error in parameters or arguments"),
    (502, "protocol", "do-not-retry", "command not implemented"),
    (503, "protocol", "do-not-retry", "bad sequence of commands"),
    (504, "protocol", "fix-then-retry", "command parameter not implemented"),
    (521, "system", "do-not-retry", "the host does not accept mail"),
    (530, "security", "fix-then-retry", "authentication or TLS required"),
    (534, "security", "fix-then-retry", "authentication mechanism too weak"),
    (535, "security", "fix-then-retry", "authentication credentials invalid"),
    (
        538,
        "security",
        "fix-then-retry",
        "encryption required for the authentication mechanism",
    ),
    (
        550,
        "mailbox",
        "do-not-retry",
        "mailbox unavailable (not found, no access or refused)",
    ),
    (551, "address", "do-not-retry", "user not local"),
    (
        552,
        "mailbox",
        "do-not-retry",
        "exceeded storage allocation (mailbox full or message too big)",
    ),
    (553, "address", "do-not-retry", "mailbox name not allowed"),
    (554, "other", "do-not-retry", "transaction failed"),
    (
        555,
        "protocol",
        "fix-then-retry",
        "MAIL or RCPT parameters not recognized or not implemented",
    ),
    (556, "address", "do-not-retry", "the domain does not accept mail"),
]


def severityOf(code: int) -> str:
    """
    The severity a reply code must have.
    """
    return {2: "success", 3: "success", 4: "transient", 5: "permanent"}[code // 100]


# --- the tables -----------------------------------------------------------


@pytest.mark.parametrize(("detail", "reason", "fixable", "description"), DETAILS)
def test_permanentDetails(
    detail: str, reason: str, fixable: bool, description: str
) -> None:
    """
    Every registered code on a 5xx reply gives its reason and description;
    the ones the sender can fix (too big, bad syntax, credentials, TLS, too
    many recipients) advise fixing, the others advise not to retry.
    """
    status = classify(550, f"5.{detail}")
    assert status == StatusClass(
        severity="permanent",
        reason=reason,  # type: ignore[arg-type]
        retry="fix-then-retry" if fixable else "do-not-retry",
        description=description,
        throttled=False,
    )
    assert status.isPermanent and not status.isTransient


@pytest.mark.parametrize(("detail", "reason", "fixable", "description"), DETAILS)
def test_transientDetails(
    detail: str, reason: str, fixable: bool, description: str
) -> None:
    """
    Every registered code on a 451 reply with a neutral text gives its
    reason; it is throttled (retry later, slower) only for the codes that
    say the server is congested, flooded or deferring by policy, which are
    then described as rate limiting (except the congestion and flood codes,
    which say so themselves).
    """
    status = classify(451, f"4.{detail}", "Requested action aborted")
    throttled = detail in THROTTLING_DETAILS
    assert (status.severity, status.reason, status.throttled) == (
        "transient",
        reason,
        throttled,
    )
    assert status.retry == ("retry-later-slower" if throttled else "retry")
    if detail == "7.1":
        assert status.description == THROTTLED
    else:
        assert status.description == description
    assert status.isTransient and not status.isPermanent


@pytest.mark.parametrize(("detail", "reason", "fixable", "description"), DETAILS)
def test_successDetails(
    detail: str, reason: str, fixable: bool, description: str
) -> None:
    """
    On a 2xx reply every code means success (no advice, never throttled),
    with its reason and description.
    """
    assert classify(250, f"2.{detail}", "too many") == StatusClass(
        "success",
        reason,  # type: ignore[arg-type]
        "none",
        description,
        False,
    )


@pytest.mark.parametrize(("subject", "reason", "description"), SUBJECTS)
@pytest.mark.parametrize("detail", [0, 99, 999])
def test_subjectDefaults(
    subject: int, detail: int, reason: str, description: str
) -> None:
    """
    X.n.0 and unregistered details of a known subject take the subject's
    reason and a generic description; they cannot be fixed by the sender.
    """
    status = classify(554, EnhancedStatus(5, subject, detail))
    assert (status.severity, status.reason, status.retry, status.description) == (
        "permanent",
        reason,
        "do-not-retry",
        description,
    )


@pytest.mark.parametrize(("code", "reason", "retry", "description"), REPLY_CODES)
def test_replyCodesAlone(code: int, reason: str, retry: str, description: str) -> None:
    """
    Without an enhanced status code, every known reply code gives its own
    reason, description and advice, and its class gives the severity.
    """
    status = classify(code)
    assert status == StatusClass(
        severityOf(code),  # type: ignore[arg-type]
        reason,  # type: ignore[arg-type]
        retry,  # type: ignore[arg-type]
        description,
        False,
    )


@pytest.mark.parametrize(
    ("code", "severity", "reason", "retry", "description"),
    [
        (200, "success", "protocol", "none", "success"),
        (299, "success", "other", "none", "success"),
        (
            311,
            "success",
            "other",
            "none",
            "intermediate reply: the server waits for more",
        ),
        (
            301,
            "success",
            "protocol",
            "none",
            "intermediate reply: the server waits for more",
        ),
        (429, "transient", "network", "retry", "transient failure"),
        (441, "transient", "other", "retry", "transient failure"),
        (509, "permanent", "protocol", "do-not-retry", "permanent failure"),
        (557, "permanent", "system", "do-not-retry", "permanent failure"),
        (599, "permanent", "other", "do-not-retry", "permanent failure"),
    ],
)
def test_unknownReplyCodes(
    code: int, severity: str, reason: str, retry: str, description: str
) -> None:
    """
    An unknown reply code is described by its class, and its second digit
    (x0z syntax, x2z connections, x5z mail system) gives the reason.
    """
    assert classify(code) == StatusClass(
        severity,  # type: ignore[arg-type]
        reason,  # type: ignore[arg-type]
        retry,  # type: ignore[arg-type]
        description,
        False,
    )


@pytest.mark.parametrize(
    ("enhanced", "expected"),
    [
        ("5.0.0", ("mailbox", "mailbox unavailable (not found, no access or refused)")),
        ("5.0.7", ("mailbox", "mailbox unavailable (not found, no access or refused)")),
        ("5.8.1", ("mailbox", "mailbox unavailable (not found, no access or refused)")),
        (
            "5.999.999",
            ("mailbox", "mailbox unavailable (not found, no access or refused)"),
        ),
    ],
)
def test_uninformativeEnhancedCodes(enhanced: str, expected: tuple[str, str]) -> None:
    """
    An enhanced code of subject 0 (other or undefined) or of an unknown
    subject says nothing more: the reply code decides.
    """
    status = classify(550, enhanced)
    assert (status.reason, status.description) == expected


# --- well-known replies -------------------------------------------------


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (
            552,
            "5.2.2",
            "Mailbox full",
            StatusClass("permanent", "mailbox", "do-not-retry", "mailbox full", False),
        ),
        (
            552,
            "5.3.4",
            "Message size exceeds fixed limit",
            StatusClass(
                "permanent", "system", "fix-then-retry", "message too big", False
            ),
        ),
        (
            452,
            "4.5.3",
            "Too many recipients",
            StatusClass(
                "transient",
                "protocol",
                "retry",
                "too many recipients: send the rest in another transaction",
                False,
            ),
        ),
        (
            550,
            "5.1.1",
            "The email account that you tried to reach does not exist.",
            StatusClass(
                "permanent", "address", "do-not-retry", "mailbox does not exist", False
            ),
        ),
        (
            535,
            "5.7.8",
            "Username and Password not accepted",
            StatusClass(
                "permanent",
                "security",
                "fix-then-retry",
                "authentication credentials invalid",
                False,
            ),
        ),
        (
            530,
            "5.7.0",
            "Must issue a STARTTLS command first",
            StatusClass(
                "permanent",
                "security",
                "fix-then-retry",
                "authentication or TLS required",
                False,
            ),
        ),
        (
            535,
            "5.7.0",
            "Error: authentication failed",
            StatusClass(
                "permanent",
                "security",
                "fix-then-retry",
                "authentication credentials invalid",
                False,
            ),
        ),
        (
            550,
            "5.7.0",
            "Blocked by policy",
            StatusClass(
                "permanent",
                "policy",
                "do-not-retry",
                "refused by security or policy",
                False,
            ),
        ),
        (
            550,
            "5.7.26",
            "Unauthenticated email is not accepted (DMARC)",
            StatusClass(
                "permanent",
                "policy",
                "do-not-retry",
                "multiple authentication checks failed (SPF, DKIM, DMARC)",
                False,
            ),
        ),
        (
            421,
            "4.7.28",
            "Our system has detected an unusual rate of unsolicited mail",
            StatusClass(
                "transient", "policy", "retry-later-slower", "mail flood detected", True
            ),
        ),
        (
            421,
            "4.7.0",
            "Try again later, closing connection.",
            StatusClass("transient", "policy", "retry-later-slower", THROTTLED, True),
        ),
        (
            451,
            "4.7.650",
            "The mail server has been temporarily rate limited",
            StatusClass("transient", "policy", "retry-later-slower", THROTTLED, True),
        ),
        (
            454,
            "4.7.0",
            "TLS not available due to local problem",
            StatusClass(
                "transient",
                "security",
                "retry",
                "TLS or authentication temporarily unavailable",
                False,
            ),
        ),
        (
            454,
            "4.7.0",
            "Too many failed authentication attempts",
            StatusClass("transient", "security", "retry-later-slower", THROTTLED, True),
        ),
        (
            421,
            "4.4.5",
            "Server busy",
            StatusClass(
                "transient",
                "network",
                "retry-later-slower",
                "mail system congestion",
                True,
            ),
        ),
        (
            450,
            "4.2.2",
            "Mailbox quota exceeded",
            StatusClass("transient", "mailbox", "retry", "mailbox full", False),
        ),
        (
            451,
            "4.5.3",
            "Too many recipients",
            StatusClass(
                "transient",
                "protocol",
                "retry",
                "too many recipients: send the rest in another transaction",
                False,
            ),
        ),
        (
            454,
            "4.7.10",
            "Slow down: encryption needed",
            StatusClass("transient", "security", "retry", "encryption needed", False),
        ),
        (
            550,
            "5.7.1",
            "Daily sending quota exceeded",
            StatusClass(
                "permanent",
                "policy",
                "do-not-retry",
                "delivery not authorized by policy",
                False,
            ),
        ),
        (
            421,
            None,
            "Too many concurrent SMTP connections",
            StatusClass("transient", "system", "retry-later-slower", THROTTLED, True),
        ),
        (
            421,
            None,
            "Service shutting down",
            StatusClass(
                "transient",
                "system",
                "retry",
                "service not available, closing the connection",
                False,
            ),
        ),
        (
            452,
            None,
            "Too many recipients",
            StatusClass(
                "transient",
                "system",
                "retry",
                "insufficient system storage or too many recipients",
                False,
            ),
        ),
    ],
)
def test_realReplies(
    code: int, enhanced: str | None, text: str, expected: StatusClass
) -> None:
    """
    Replies as real servers send them are classified sensibly: 552 5.2.2 is
    a full mailbox, 452 4.5.3 asks for another transaction, rate limits are
    throttled (by code or by wording), and 454 4.7.0 (TLS or authentication
    temporarily unavailable) is throttled only when its text says so.
    """
    assert classify(code, enhanced, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Rate limit reached",
        "ratelimited",
        "rate-limit",
        "TOO MANY messages",
        "Throttling in effect",
        "throttled",
        "Please try again later",
        "try later",
        "Slow down!",
        "Message rate exceeded",
        "You are sending too fast",
        "unusual rate of mail",
        "deferred due to unexpected volume",
    ],
)
@pytest.mark.parametrize("code", [421, 450, 451, 454])
def test_throttlingWording(code: int, text: str) -> None:
    """
    On 421, 450, 451 and 454 replies, throttling wording (in any case) makes
    the reply throttled: retry later, slower.
    """
    status = classify(code, None, text)
    assert status.throttled
    assert status.retry == "retry-later-slower"
    assert status.description == THROTTLED


@pytest.mark.parametrize("code", [250, 354, 452, 455, 432, 550, 554])
def test_throttlingOnlyOnSomeReplies(code: int) -> None:
    """
    Other replies are never throttled, whatever their text or enhanced code.
    """
    for enhanced in [None, f"{code // 100}.7.0", f"{code // 100}.7.28"]:
        status = classify(code, enhanced, "rate limit exceeded, slow down")
        assert not status.throttled
        assert status.retry != "retry-later-slower"


@pytest.mark.parametrize("code", [421, 450, 451])
def test_policyDeferralThrottles(code: int) -> None:
    """
    On 421, 450 and 451, an X.7.0 or unregistered X.7.x code is a policy
    deferral and means throttling, even without throttling wording.
    """
    for enhanced in ["4.7.0", "4.7.1", "4.7.500", "4.7.999"]:
        status = classify(code, enhanced, "Temporary deferral")
        assert status.throttled
        assert status.retry == "retry-later-slower"


@pytest.mark.parametrize("enhanced", ["4.7.0", "4.7.1", "4.7.2", "4.7.500"])
def test_policyDeferralOn454(enhanced: str) -> None:
    """
    On 454 (TLS or authentication temporarily unavailable, RFC 3207 and RFC
    4954) a policy code alone does not mean throttling; its wording may.
    """
    assert not classify(454, enhanced, "Temporary authentication failure").throttled
    assert classify(454, enhanced, "Too many authentication failures").throttled


@pytest.mark.parametrize(
    ("code", "enhanced", "description"),
    [
        (432, "4.7.0", "a password transition is needed"),
        (454, "4.7.99", "TLS or authentication temporarily unavailable"),
        (501, "5.5.0", "syntax error in parameters or arguments"),
        (504, "5.5.0", "command parameter not implemented"),
        (530, "5.7.0", "authentication or TLS required"),
        (534, "5.7.0", "authentication mechanism too weak"),
        (535, "5.7.0", "authentication credentials invalid"),
        (538, "5.7.0", "encryption required for the authentication mechanism"),
        (555, "5.5.0", "MAIL or RCPT parameters not recognized or not implemented"),
        (535, "5.7.8", "authentication credentials invalid"),
        (530, "5.7.11", "encryption required for the authentication mechanism"),
        (501, "5.1.7", "bad sender address syntax"),
    ],
)
def test_specificReplyCodes(code: int, enhanced: str, description: str) -> None:
    """
    A reply code more specific than a generic enhanced code (X.n.0 or an
    unregistered detail) decides the description and the reason; a
    registered enhanced code still decides over it.
    """
    assert classify(code, enhanced).description == description


# --- the forms of the enhanced code -------------------------------------


@pytest.mark.parametrize(
    "enhanced", ["5.1.1", " 5.1.1 ", "5.001.001", EnhancedStatus(5, 1, 1)]
)
def test_enhancedForms(enhanced: EnhancedStatus | str) -> None:
    """
    The enhanced code may be given as an L{EnhancedStatus} or in its dotted
    form (surrounding white space ignored); both classify the same.
    """
    assert classify(550, enhanced) == StatusClass(
        "permanent", "address", "do-not-retry", "mailbox does not exist", False
    )


@pytest.mark.parametrize(
    "enhanced",
    ["", "5.1", "5.1.1.1", "x.1.1", "3.1.1", "5.1000.1", "5.1.a", "5 .1.1", "5.1.1 ok"],
)
def test_badEnhancedStringsIgnored(enhanced: str) -> None:
    """
    A string that is not exactly one well-formed enhanced code is ignored:
    the reply code alone decides.
    """
    assert classify(550, enhanced) == classify(550)
    assert classify(421, enhanced, "too many") == classify(421, None, "too many")


@pytest.mark.parametrize(
    ("code", "enhanced", "expected"),
    [
        (
            550,
            "4.2.2",
            StatusClass(
                "permanent",
                "mailbox",
                "do-not-retry",
                "mailbox unavailable (not found, no access or refused)",
                False,
            ),
        ),
        (
            250,
            "5.1.1",
            StatusClass(
                "success", "address", "none", "requested action completed", False
            ),
        ),
        (
            451,
            EnhancedStatus(5, 7, 1),
            StatusClass(
                "transient", "policy", "retry", "local error in processing", False
            ),
        ),
        (
            451,
            "2.7.28",
            StatusClass(
                "transient", "policy", "retry", "local error in processing", False
            ),
        ),
        (
            535,
            "4.3.4",
            StatusClass(
                "permanent",
                "system",
                "fix-then-retry",
                "authentication credentials invalid",
                False,
            ),
        ),
        (
            550,
            "2.0.0",
            StatusClass(
                "permanent",
                "mailbox",
                "do-not-retry",
                "mailbox unavailable (not found, no access or refused)",
                False,
            ),
        ),
        (
            354,
            "2.6.0",
            StatusClass("success", "content", "none", "start mail input", False),
        ),
    ],
)
def test_classMismatch(
    code: int, enhanced: EnhancedStatus | str, expected: StatusClass
) -> None:
    """
    An enhanced code whose class disagrees with the reply code does not
    change the severity, the description, the advice or the throttling
    (all from the reply code); its subject and detail still give the
    reason, unless they say nothing (X.0.x).
    """
    assert classify(code, enhanced) == expected


# --- no reply, bad codes ------------------------------------------------


@pytest.mark.parametrize("enhanced", [None, "5.1.1", EnhancedStatus(2, 0, 0)])
def test_noReply(enhanced: EnhancedStatus | str | None) -> None:
    """
    No reply at all (connection lost, timeout) is a transient network
    failure, worth retrying; an enhanced code or text changes nothing.
    """
    status = classify(None, enhanced, "rate limit")
    assert status == StatusClass(
        "transient",
        "network",
        "retry",
        "no reply: the connection was lost or timed out",
        False,
    )
    assert status.isTransient


@pytest.mark.parametrize("code", [-1, 0, 199, 600, 999])
def test_badReplyCode(code: int) -> None:
    """
    A number that cannot be a reply code is refused.
    """
    with pytest.raises(InvalidArgumentError) as raised:
        classify(code)
    assert (raised.value.argument, raised.value.value) == ("code", code)


def test_statusClassIsFrozen() -> None:
    """
    A L{StatusClass} is an immutable value.
    """
    status = classify(250)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        status.severity = "permanent"  # type: ignore[misc]
    assert status == classify(250)
    assert not status.isTransient and not status.isPermanent


# --- properties ---------------------------------------------------------

enhancedCodes = st.builds(
    EnhancedStatus,
    st.sampled_from([2, 4, 5]),
    st.integers(0, 999),
    st.integers(0, 999),
)


@given(
    st.integers(200, 599),
    st.one_of(st.none(), enhancedCodes, enhancedCodes.map(str), st.text(max_size=12)),
    st.text(max_size=60),
)
def test_classifyIsTotal(
    code: int, enhanced: EnhancedStatus | str | None, text: str
) -> None:
    """
    For any reply code 200-599, any enhanced code (as a value, a string or
    garbage) and any text, classify never raises, the severity follows the
    reply code, the advice agrees with the severity, and only 421, 450, 451
    and 454 replies are ever throttled.
    """
    status = classify(code, enhanced, text)
    assert status.severity == severityOf(code)
    assert status.description
    if status.severity == "success":
        assert status.retry == "none"
    elif status.severity == "transient":
        expected = "retry-later-slower" if status.throttled else "retry"
        assert status.retry == expected
    else:
        assert status.retry in ("fix-then-retry", "do-not-retry")
    if status.throttled:
        assert code in (421, 450, 451, 454)
