"""
The TLS and authentication decision, as one pure function.

After every EHLO (or HELO) reply the protocol describes the session in a
L{SessionFacts} value and asks L{nextStep} what to do.  Every combination of
the inputs is covered by a truth-table test, so the rules below are the whole
policy:

1. EHLO refused: fall back to HELO only when HELO can satisfy the caller
   (fallback enabled, TLS not required unless already active, no
   authentication required); otherwise fail.
2. Without TLS: upgrade with STARTTLS when the caller wants TLS, the session
   is extended, the server offers it and it has not already been refused;
   when TLS is required and cannot be had, fail before anything else is sent.
3. Credentials are only ever sent on a session that is TLS right now, unless
   the caller opted in with C{allowPlaintextAuth}.  When they cannot be sent,
   fail if authentication is required, else continue without it.
4. Authenticate when there are credentials, the session is extended and a
   common mechanism exists; when authentication is required and impossible,
   fail.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["SessionFacts", "Step", "TLSMode", "nextStep"]


class TLSMode(enum.Enum):
    """
    How a session uses TLS.

    @cvar IMPLICIT: TLS from the first byte (SMTPS, port 465).
    @cvar STARTTLS: plaintext connection upgraded with STARTTLS; fails when
        the upgrade is impossible.
    @cvar OPPORTUNISTIC: STARTTLS when the server offers it, plaintext
        otherwise (credentials are still never sent in clear).
    @cvar NONE: never TLS.
    """

    IMPLICIT = "implicit"
    STARTTLS = "starttls"
    OPPORTUNISTIC = "opportunistic"
    NONE = "none"


class Step(enum.Enum):
    """
    What the protocol does next.
    """

    HELO = "helo"
    STARTTLS = "starttls"
    AUTHENTICATE = "authenticate"
    PROCEED = "proceed"
    FAIL_EHLO_REFUSED = "fail-ehlo-refused"
    FAIL_TLS_REQUIRED = "fail-tls-required"
    FAIL_PLAINTEXT_AUTH = "fail-plaintext-auth"
    FAIL_AUTH_REQUIRED = "fail-auth-required"


@attrs.frozen(kw_only=True)
class SessionFacts:
    """
    Everything the decision depends on.

    @ivar tlsMode: the caller's L{TLSMode}.
    @ivar requireTransportSecurity: the caller requires TLS whatever the mode.
    @ivar tlsActive: the live transport is TLS-protected right now.
    @ivar ehloRefused: EHLO was refused and no HELO was tried yet.
    @ivar heloFallback: HELO may be tried when EHLO is refused.
    @ivar extended: the session was opened with EHLO (not HELO).
    @ivar starttlsOffered: the current capabilities include STARTTLS.
    @ivar starttlsRefused: the server refused our STARTTLS.
    @ivar haveCredentials: the caller gave credentials.
    @ivar mechanismAvailable: the server advertises a mechanism we have.
    @ivar authenticated: AUTH already succeeded.
    @ivar requireAuthentication: the caller requires authentication.
    @ivar allowPlaintextAuth: the caller allows credentials without TLS.
    """

    tlsMode: TLSMode
    requireTransportSecurity: bool = False
    tlsActive: bool = False
    ehloRefused: bool = False
    heloFallback: bool = True
    extended: bool = True
    starttlsOffered: bool = False
    starttlsRefused: bool = False
    haveCredentials: bool = False
    mechanismAvailable: bool = False
    authenticated: bool = False
    requireAuthentication: bool = False
    allowPlaintextAuth: bool = False

    @property
    def tlsRequired(self) -> bool:
        """
        Whether the session must not continue without TLS.
        """
        return self.requireTransportSecurity or self.tlsMode in (
            TLSMode.IMPLICIT,
            TLSMode.STARTTLS,
        )

    @property
    def tlsWanted(self) -> bool:
        """
        Whether STARTTLS should be tried when offered.
        """
        return self.tlsMode is not TLSMode.NONE or self.requireTransportSecurity


def nextStep(facts: SessionFacts) -> Step:
    """
    Decide what the session does next.

    @param facts: the state of the session.
    @return: the L{Step} to take.
    """
    if facts.ehloRefused:
        heloCanServe = (
            facts.heloFallback
            and (facts.tlsActive or not facts.tlsRequired)
            and not facts.requireAuthentication
        )
        return Step.HELO if heloCanServe else Step.FAIL_EHLO_REFUSED
    if not facts.tlsActive:
        if (
            facts.tlsWanted
            and facts.extended
            and facts.starttlsOffered
            and not facts.starttlsRefused
        ):
            return Step.STARTTLS
        if facts.tlsRequired:
            return Step.FAIL_TLS_REQUIRED
    if facts.haveCredentials and not facts.authenticated:
        if not facts.tlsActive and not facts.allowPlaintextAuth:
            return (
                Step.FAIL_PLAINTEXT_AUTH
                if facts.requireAuthentication
                else Step.PROCEED
            )
        if facts.extended and facts.mechanismAvailable:
            return Step.AUTHENTICATE
    if facts.requireAuthentication and not facts.authenticated:
        return Step.FAIL_AUTH_REQUIRED
    return Step.PROCEED
