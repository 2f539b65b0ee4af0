"""
Tests for L{mailclient._wire.policy}: the TLS/authentication decision, over
every combination of its inputs.
"""

from __future__ import annotations

import itertools

import attrs
import pytest

from mailclient._wire.policy import SessionFacts, Step, TLSMode, nextStep

_FLAGS = [f.name for f in attrs.fields(SessionFacts) if f.name != "tlsMode"]


def _allFacts() -> list[SessionFacts]:
    combos = []
    for mode in TLSMode:
        for values in itertools.product((False, True), repeat=len(_FLAGS)):
            combos.append(
                SessionFacts(tlsMode=mode, **dict(zip(_FLAGS, values, strict=True)))
            )
    return combos


ALL = _allFacts()


def test_everyCombinationIsCovered() -> None:
    """
    The exhaustive table really holds every combination: four modes times
    every assignment of the twelve flags.
    """
    assert len(ALL) == 4 * 2 ** len(_FLAGS)
    assert len(_FLAGS) == 12


@pytest.mark.parametrize("mode", list(TLSMode))
def test_credentialsNeverInClear(mode: TLSMode) -> None:
    """
    AUTH is only ever chosen on a session that is TLS right now, unless the
    caller opted in to plaintext authentication.
    """
    for facts in ALL:
        if facts.tlsMode is mode and nextStep(facts) is Step.AUTHENTICATE:
            assert facts.tlsActive or facts.allowPlaintextAuth, facts


def test_requiredTLSNeverSkipped() -> None:
    """
    When TLS is required and not active, the only steps are upgrading or
    failing: never proceeding, authenticating or falling back to HELO.
    """
    for facts in ALL:
        if facts.tlsRequired and not facts.tlsActive:
            assert nextStep(facts) in (
                Step.STARTTLS,
                Step.FAIL_TLS_REQUIRED,
                Step.FAIL_EHLO_REFUSED,
            ), facts


def test_requiredAuthenticationNeverSkipped() -> None:
    """
    When authentication is required and has not happened, the session never
    proceeds to mail and never falls back to HELO.
    """
    for facts in ALL:
        if facts.requireAuthentication and not facts.authenticated:
            assert nextStep(facts) not in (Step.PROCEED, Step.HELO), facts


def test_starttlsOnlyWhenPossibleAndWanted() -> None:
    """
    STARTTLS is chosen only on an extended plaintext session whose server
    offers it and has not refused it, and never in mode C{none} unless TLS
    is required anyway; and it is always chosen in that situation when TLS
    is wanted.
    """
    for facts in ALL:
        possible = (
            not facts.ehloRefused
            and not facts.tlsActive
            and facts.extended
            and facts.starttlsOffered
            and not facts.starttlsRefused
        )
        wanted = facts.tlsMode is not TLSMode.NONE or facts.requireTransportSecurity
        assert (nextStep(facts) is Step.STARTTLS) == (possible and wanted), facts


def test_authenticateOnlyWithSomethingToSay() -> None:
    """
    AUTH is chosen only with credentials, a common mechanism, an extended
    session, and not twice.
    """
    for facts in ALL:
        if nextStep(facts) is Step.AUTHENTICATE:
            assert facts.haveCredentials
            assert facts.mechanismAvailable
            assert facts.extended
            assert not facts.authenticated


def test_heloOnlyAfterRefusedEhlo() -> None:
    """
    HELO is only tried after EHLO was refused, and a refused EHLO leads to
    HELO or a failure, nothing else.
    """
    for facts in ALL:
        step = nextStep(facts)
        if facts.ehloRefused:
            assert step in (Step.HELO, Step.FAIL_EHLO_REFUSED), facts
        else:
            assert step is not Step.HELO


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        # opportunistic, STARTTLS offered: upgrade
        (
            SessionFacts(tlsMode=TLSMode.OPPORTUNISTIC, starttlsOffered=True),
            Step.STARTTLS,
        ),
        # opportunistic, not offered: continue in clear
        (SessionFacts(tlsMode=TLSMode.OPPORTUNISTIC), Step.PROCEED),
        # opportunistic, stripped, with optional credentials: no AUTH in clear
        (
            SessionFacts(
                tlsMode=TLSMode.OPPORTUNISTIC,
                haveCredentials=True,
                mechanismAvailable=True,
            ),
            Step.PROCEED,
        ),
        # starttls, stripped: fail before anything is sent
        (SessionFacts(tlsMode=TLSMode.STARTTLS), Step.FAIL_TLS_REQUIRED),
        # starttls, refused by the server: fail
        (
            SessionFacts(
                tlsMode=TLSMode.STARTTLS, starttlsOffered=True, starttlsRefused=True
            ),
            Step.FAIL_TLS_REQUIRED,
        ),
        # starttls done, credentials: authenticate
        (
            SessionFacts(
                tlsMode=TLSMode.STARTTLS,
                tlsActive=True,
                haveCredentials=True,
                mechanismAvailable=True,
                requireAuthentication=True,
            ),
            Step.AUTHENTICATE,
        ),
        # TLS, credentials, no common mechanism, required: fail
        (
            SessionFacts(
                tlsMode=TLSMode.STARTTLS,
                tlsActive=True,
                haveCredentials=True,
                requireAuthentication=True,
            ),
            Step.FAIL_AUTH_REQUIRED,
        ),
        # TLS, credentials, no common mechanism, optional: proceed
        (
            SessionFacts(
                tlsMode=TLSMode.STARTTLS, tlsActive=True, haveCredentials=True
            ),
            Step.PROCEED,
        ),
        # authenticated: proceed
        (
            SessionFacts(
                tlsMode=TLSMode.IMPLICIT,
                tlsActive=True,
                haveCredentials=True,
                mechanismAvailable=True,
                authenticated=True,
                requireAuthentication=True,
            ),
            Step.PROCEED,
        ),
        # no TLS, credentials required, no opt-in: refuse to send them in clear
        (
            SessionFacts(
                tlsMode=TLSMode.NONE,
                haveCredentials=True,
                mechanismAvailable=True,
                requireAuthentication=True,
            ),
            Step.FAIL_PLAINTEXT_AUTH,
        ),
        # no TLS, opted in to plaintext AUTH
        (
            SessionFacts(
                tlsMode=TLSMode.NONE,
                haveCredentials=True,
                mechanismAvailable=True,
                requireAuthentication=True,
                allowPlaintextAuth=True,
            ),
            Step.AUTHENTICATE,
        ),
        # required auth without credentials
        (
            SessionFacts(tlsMode=TLSMode.NONE, requireAuthentication=True),
            Step.FAIL_AUTH_REQUIRED,
        ),
        # EHLO refused: HELO when it can serve
        (SessionFacts(tlsMode=TLSMode.OPPORTUNISTIC, ehloRefused=True), Step.HELO),
        (
            SessionFacts(tlsMode=TLSMode.IMPLICIT, tlsActive=True, ehloRefused=True),
            Step.HELO,
        ),
        # EHLO refused, fallback disabled / TLS required / auth required
        (
            SessionFacts(
                tlsMode=TLSMode.OPPORTUNISTIC, ehloRefused=True, heloFallback=False
            ),
            Step.FAIL_EHLO_REFUSED,
        ),
        (
            SessionFacts(tlsMode=TLSMode.STARTTLS, ehloRefused=True),
            Step.FAIL_EHLO_REFUSED,
        ),
        (
            SessionFacts(
                tlsMode=TLSMode.OPPORTUNISTIC,
                ehloRefused=True,
                requireAuthentication=True,
            ),
            Step.FAIL_EHLO_REFUSED,
        ),
        # HELO session with required TLS: impossible
        (
            SessionFacts(tlsMode=TLSMode.STARTTLS, extended=False),
            Step.FAIL_TLS_REQUIRED,
        ),
        # mode none but TLS required by flag: still upgrades
        (
            SessionFacts(
                tlsMode=TLSMode.NONE,
                requireTransportSecurity=True,
                starttlsOffered=True,
            ),
            Step.STARTTLS,
        ),
        # mode none: never upgrades
        (SessionFacts(tlsMode=TLSMode.NONE, starttlsOffered=True), Step.PROCEED),
    ],
)
def test_table(facts: SessionFacts, expected: Step) -> None:
    """
    Named situations give the documented step.
    """
    assert nextStep(facts) is expected


def test_implicitWithoutTLSFails() -> None:
    """
    Implicit TLS mode on a session that is somehow not TLS fails rather than
    continuing in clear.
    """
    assert nextStep(SessionFacts(tlsMode=TLSMode.IMPLICIT)) is Step.FAIL_TLS_REQUIRED
