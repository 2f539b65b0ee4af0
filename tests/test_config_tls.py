"""
Client certificates from L{mailclient.config} over real TLS on 127.0.0.1:
Twisted's ESMTP server, with a certificate from a throwaway CA, requires a
client certificate from another throwaway CA.  A client certificate never
turns off the verification of the server: without C{caCertificates} the
system's trust store still decides (and refuses the throwaway CA).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import pytest_twisted
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate
from twisted.mail import smtp

from mailclient import sendmail
from mailclient.config import loadSettings
from mailclient.demo import generateCertificates
from mailclient.errors import MailClientError, TLSHandshakeError
from tests.helpers import Delivery, RecordingDelivery

CLIENT_NAME = "mailclient test client"
MESSAGE = b"Subject: client certificate\r\n\r\nSent with a client certificate.\r\n"


def _name(common: str) -> x509.Name:
    """
    A distinguished name with only a common name.
    """
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@attrs.frozen
class Files:
    """
    The PEM files of the test PKI.

    @ivar serverCa: the CA that signed the server's certificate.
    @ivar client: the client certificate followed by its key.
    @ivar clientCertificate: the client certificate alone.
    @ivar clientKey: its key alone.
    """

    serverCa: Path
    client: Path
    clientCertificate: Path
    clientKey: Path


@attrs.frozen
class PKI:
    """
    A server certificate and the CA that signed it; a client certificate
    and the (other) CA that signed it, which the server trusts.

    @ivar pem: the PEM data of L{Files}, by attribute name.
    @ivar serverOptions: the server's TLS options: its certificate, and a
        client certificate required, signed by the client CA.
    """

    pem: dict[str, bytes]
    serverOptions: Any


@pytest.fixture(scope="module")
def pki() -> PKI:
    """
    Make the two CAs, the server certificate and the client certificate.
    """
    serverCa, serverPair = generateCertificates("localhost")
    now = datetime.datetime.now(datetime.UTC)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caCertificate = (
        x509.CertificateBuilder()
        .subject_name(_name("mailclient test client CA"))
        .issuer_name(_name("mailclient test client CA"))
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(caKey, hashes.SHA256())
    )
    clientKey = ec.generate_private_key(ec.SECP256R1())
    clientCertificate = (
        x509.CertificateBuilder()
        .subject_name(_name(CLIENT_NAME))
        .issuer_name(caCertificate.subject)
        .public_key(clientKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(caKey, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    certificatePEM = clientCertificate.public_bytes(pem)
    keyPEM = clientKey.private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    trusted = Certificate.loadPEM(caCertificate.public_bytes(pem))
    return PKI(
        pem={
            "serverCa": serverCa.dumpPEM(),
            "client": certificatePEM + keyPEM,
            "clientCertificate": certificatePEM,
            "clientKey": keyPEM,
        },
        serverOptions=serverPair.options(trusted),
    )


@pytest.fixture
def files(tmp_path: Path, pki: PKI) -> Files:
    """
    The L{Files} of the PKI, written under C{tmp_path}.
    """
    paths = {}
    for name, data in pki.pem.items():
        paths[name] = tmp_path / f"{name}.pem"
        paths[name].write_bytes(data)
    return Files(**paths)


class _Server(smtp.ESMTP):
    """
    Twisted's ESMTP server, recording the common name of the client
    certificate at each C{MAIL} command.
    """

    peers: list[str]

    def do_MAIL(self, rest: bytes) -> None:
        """
        Record the client's certificate, then handle C{MAIL} as usual.
        """
        peer = self.transport.getPeerCertificate()  # type: ignore[union-attr]
        names = peer.to_cryptography().subject.get_attributes_for_oid(
            NameOID.COMMON_NAME
        )
        self.peers.append(str(names[0].value))
        super().do_MAIL(rest)  # type: ignore[misc]


@attrs.define
class Server:
    """
    A listening server: its port, what it received, and the client
    certificates it saw.
    """

    port: int
    messages: list[Delivery]
    peers: list[str]


@pytest.fixture
def startServer(pki: PKI) -> Iterator[Callable[[str], Deferred[Server]]]:
    """
    A function that starts the server on 127.0.0.1 with C{"starttls"} or
    C{"implicit"} TLS; every server is stopped after the test.
    """
    ports: list[IListeningPort] = []

    async def start(tls: str) -> Server:
        server = Server(0, [], [])

        def build() -> _Server:
            protocol = _Server(
                contextFactory=pki.serverOptions if tls == "starttls" else None
            )
            protocol.delivery = RecordingDelivery(server.messages)
            protocol.peers = server.peers
            protocol.host = b"localhost"
            return protocol

        if tls == "implicit":
            endpoint: Any = SSL4ServerEndpoint(
                reactor, 0, pki.serverOptions, interface="127.0.0.1"
            )
        else:
            endpoint = TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1")
        port = await endpoint.listen(Factory.forProtocol(build))
        ports.append(port)
        server.port = port.getHost().port
        return server

    yield lambda tls: Deferred.fromCoroutine(start(tls))
    for port in ports:
        pytest_twisted.blockon(port.stopListening())


def send(**keywords: Any) -> Deferred[Any]:
    """
    Send L{MESSAGE} once, without retries, with C{keywords}.
    """
    return sendmail(
        fromAddress="app@example.com",
        toAddresses=["alice@example.com"],
        message=MESSAGE,
        retries=0,
        **keywords,
    )


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest_twisted.ensureDeferred
async def test_clientCertificateWithoutCAStillVerifiesServer(
    tls: str, files: Files, startServer: Callable[[str], Deferred[Server]]
) -> None:
    """
    With a client certificate and no CA file, the server's certificate is
    still verified against the system's trust store, which does not hold
    the throwaway CA: the TLS handshake fails and nothing is sent.
    """
    server = await startServer(tls)
    scheme = "smtps" if tls == "implicit" else "smtp+starttls"
    settings = loadSettings(
        f"{scheme}://127.0.0.1:{server.port}?timeout=10",
        environ={},
        clientCertificate=files.client,
    )
    with pytest.raises(TLSHandshakeError) as info:
        await send(**settings.keywords())
    assert "certificate verify failed" in info.value.reason
    assert server.messages == []
    assert server.peers == []


@pytest.mark.parametrize("tls", ["starttls", "implicit"])
@pytest_twisted.ensureDeferred
async def test_clientCertificateWithCA(
    tls: str, files: Files, startServer: Callable[[str], Deferred[Server]]
) -> None:
    """
    With a client certificate, its key in another file, and the CA file
    that signed the server's certificate, the server is verified, sees
    the client certificate, and takes the message.
    """
    server = await startServer(tls)
    scheme = "smtps" if tls == "implicit" else "smtp+starttls"
    settings = loadSettings(
        f"{scheme}://127.0.0.1:{server.port}?timeout=10"
        f"&clientCertificate={files.clientCertificate}",
        environ={
            "MAILCLIENT_CLIENT_KEY": str(files.clientKey),
            "MAILCLIENT_CA_FILE": str(files.serverCa),
        },
    )
    result = await send(**settings.keywords())
    assert result.accepted == ("alice@example.com",)
    assert result.session.tlsVersion is not None
    assert server.peers == [CLIENT_NAME]
    assert [m.content for m in server.messages] == [MESSAGE]


@pytest_twisted.ensureDeferred
async def test_serverRequiresClientCertificate(
    files: Files, startServer: Callable[[str], Deferred[Server]]
) -> None:
    """
    The server really checks: with the CA file but no client certificate,
    the session fails and nothing is delivered.
    """
    server = await startServer("starttls")
    settings = loadSettings(
        f"smtp+starttls://127.0.0.1:{server.port}?timeout=10",
        environ={"MAILCLIENT_CA_FILE": str(files.serverCa)},
    )
    with pytest.raises(MailClientError):
        await send(**settings.keywords())
    assert server.messages == []
    assert server.peers == []
