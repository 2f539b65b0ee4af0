"""
Real-reactor tests on 127.0.0.1 with real TLS: STARTTLS, implicit TLS, and
certificates that must not verify.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred
from twisted.internet.ssl import optionsForClientTLS

from mailclient import sendmail
from mailclient.errors import (
    PlaintextAuthRefusedError,
    TLSHandshakeError,
    TLSRequiredError,
)

from .conftest import PKI, TestServer

MESSAGE = b"Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"


@pytest_twisted.inlineCallbacks
def test_starttls(pki: PKI, startServer: Callable[..., Deferred[TestServer]]) -> Any:
    """
    With C{tls="starttls"} the session is upgraded, the server certificate
    is verified against the caller's trust root, and the message arrives
    intact; the result reports the TLS version.
    """
    server = yield startServer("starttls")
    result = yield sendmail(
        "localhost",
        "from@example.com",
        ["to@example.com", "reject@example.com"],
        MESSAGE,
        port=server.port,
        tls="starttls",
        tlsOptions=optionsForClientTLS("localhost", trustRoot=pki.ca),
        timeout=10,
    )
    assert result.recipients["to@example.com"].status == "accepted"
    assert result.recipients["reject@example.com"].status == "rejected"
    assert result.recipients["reject@example.com"].code == 550
    assert result.session is not None
    assert result.session.tlsVersion is not None
    assert result.session.tlsVersion.startswith("TLS")
    assert result.reply is not None and result.reply.code == 250
    assert [m.content for m in server.received.messages] == [MESSAGE]


@pytest_twisted.inlineCallbacks
def test_implicitTLS(pki: PKI, startServer: Callable[..., Deferred[TestServer]]) -> Any:
    """
    With C{tls="implicit"} TLS starts with the first byte and the message
    arrives intact.
    """
    server = yield startServer("implicit")
    result = yield sendmail(
        "127.0.0.1",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        tls="implicit",
        tlsOptions=optionsForClientTLS("localhost", trustRoot=pki.ca),
        timeout=10,
    )
    assert result.accepted == ("to@example.com",)
    assert result.session is not None and result.session.tlsVersion is not None
    assert [m.content for m in server.received.messages] == [MESSAGE]


@pytest_twisted.inlineCallbacks
def test_starttlsThenAuth(
    pki: PKI, startServer: Callable[..., Deferred[TestServer]]
) -> Any:
    """
    Credentials are sent only after the STARTTLS upgrade: the server saw
    AUTH on a TLS session, and the result names the mechanism.
    """
    server = yield startServer("starttls", auth=True)
    result = yield sendmail(
        "localhost",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        username="alice",
        password="s3cret",
        tlsOptions=optionsForClientTLS("localhost", trustRoot=pki.ca),
        timeout=10,
    )
    assert result.session is not None
    assert result.session.authMechanism in ("PLAIN", "LOGIN")
    assert server.received.tlsAtAuth == [True]
    assert "s3cret" not in repr(result)


@pytest.mark.parametrize("trust", ["other-ca", "system", "wrong-name"])
@pytest_twisted.inlineCallbacks
def test_certificateNotVerified(
    trust: str, pki: PKI, startServer: Callable[..., Deferred[TestServer]]
) -> Any:
    """
    A server certificate signed by a CA we do not trust, or issued for
    another name, fails the send with L{TLSHandshakeError} and nothing is
    delivered.
    """
    server = yield startServer("starttls")
    if trust == "other-ca":
        options = optionsForClientTLS("localhost", trustRoot=pki.otherCa)
    elif trust == "wrong-name":
        options = optionsForClientTLS("wrong.example", trustRoot=pki.ca)
    else:
        options = None  # the default: the system's trust store
    d = sendmail(
        "localhost",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        tls="starttls",
        tlsOptions=options,
        timeout=10,
        retries=0,
    )
    with pytest.raises(TLSHandshakeError):
        yield d
    assert server.received.messages == []


@pytest.mark.parametrize("mode", ["implicit"])
@pytest_twisted.inlineCallbacks
def test_implicitCertificateNotVerified(
    mode: str, pki: PKI, startServer: Callable[..., Deferred[TestServer]]
) -> Any:
    """
    With implicit TLS, an untrusted certificate also fails the send before
    any SMTP command is sent.
    """
    server = yield startServer(mode)
    d = sendmail(
        "localhost",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        tls="implicit",
        tlsOptions=optionsForClientTLS("localhost", trustRoot=pki.otherCa),
        timeout=10,
        retries=0,
    )
    with pytest.raises(TLSHandshakeError):
        yield d
    assert server.received.messages == []


@pytest_twisted.inlineCallbacks
def test_noTLSServerWithStarttlsRequired(
    startServer: Callable[..., Deferred[TestServer]],
) -> Any:
    """
    A server that offers no STARTTLS fails a C{tls="starttls"} send with
    L{TLSRequiredError}; nothing is delivered.
    """
    server = yield startServer("none")
    d = sendmail(
        "localhost",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        tls="starttls",
        timeout=10,
        retries=0,
    )
    with pytest.raises(TLSRequiredError):
        yield d
    assert server.received.messages == []


@pytest_twisted.inlineCallbacks
def test_noTLSServerWithCredentials(
    startServer: Callable[..., Deferred[TestServer]],
) -> Any:
    """
    With credentials and C{tls="opportunistic"} against a server without
    STARTTLS, the credentials are not sent in clear: the send fails with
    L{PlaintextAuthRefusedError} and the server never saw AUTH.
    """
    server = yield startServer("none", auth=True)
    d = sendmail(
        "localhost",
        "from@example.com",
        "to@example.com",
        MESSAGE,
        port=server.port,
        username="alice",
        password="s3cret",
        tls="opportunistic",
        timeout=10,
        retries=0,
    )
    with pytest.raises(PlaintextAuthRefusedError):
        yield d
    assert server.received.tlsAtAuth == []
