"""
The demo (C{python -m mailclient.demo}, README command 1) and the
L{LoopbackReceiver} it is built on.

The demo is run in a subprocess with the project's Python, as a user runs
it; the receiver is exercised in-process with the real reactor.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol, connectionDone
from twisted.internet.ssl import optionsForClientTLS
from twisted.python.failure import Failure

from mailclient import sendmail
from mailclient.demo import LoopbackReceiver, buildDemoMessage
from mailclient.errors import AllRecipientsRefusedError, SenderRefusedError

ROOT = Path(__file__).resolve().parent.parent
DEMO_TIMEOUT = 60


def runDemo(*arguments: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{python -m mailclient.demo ARGUMENTS} from the project's root with
    the Python running the tests (the project's venv).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "mailclient.demo", *arguments],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEMO_TIMEOUT,
        check=False,
    )


def recipientLine(output: str, address: str) -> list[str]:
    """
    The columns of the demo's result line for C{address}: address, status,
    code, enhanced status, then the text and phase.
    """
    for line in output.splitlines():
        if line.startswith(f"  {address} "):
            return line.split(None, 4)
    raise AssertionError(f"no result line for {address} in:\n{output}")


def test_demoReportsEveryRecipient(tmp_path: Path) -> None:
    """
    The demo exits 0 and prints, for each of its three recipients, the
    status, reply code, enhanced status code and text: accepted for the
    ordinary address, rejected (550 5.1.1) for C{reject@} and deferred
    (450 4.2.1) for C{tempfail@}; then the final reply and its queue id.
    """
    finished = runDemo("--directory", str(tmp_path))
    assert finished.returncode == 0, (finished.stdout, finished.stderr)
    out = finished.stdout
    assert recipientLine(out, "alice@example.com")[1:4] == [
        "accepted",
        "250",
        "2.0.0",
    ]
    assert recipientLine(out, "reject@example.com")[1:4] == [
        "rejected",
        "550",
        "5.1.1",
    ]
    assert recipientLine(out, "tempfail@example.com")[1:4] == [
        "deferred",
        "450",
        "4.2.1",
    ]
    final = re.search(
        r"^final reply  250 2\.0\.0 Ok: queued as ([0-9A-F]{10})$", out, re.M
    )
    assert final is not None, out
    assert f"\nqueue id     {final.group(1)}\n" in out
    assert "  identical to the message sent: yes\n" in out
    assert out.rstrip().endswith(
        "OK: alice@example.com got the message; the other two were refused."
    )
    assert finished.stderr == ""


def test_demoDeliversTheMessageIntact(tmp_path: Path) -> None:
    """
    The demo prints the path of the one delivered file, in C{new/} under
    the directory given; the file holds the message with CRLF line ends,
    its dot-led body line un-escaped, and the CSV attachment.
    """
    finished = runDemo("--directory", str(tmp_path))
    assert finished.returncode == 0, (finished.stdout, finished.stderr)
    paths = re.findall(r"^  alice@example\.com -> (.+)$", finished.stdout, re.M)
    assert len(paths) == 1
    path = Path(paths[0])
    assert path.parent == tmp_path / "new"
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [path.name]
    data = path.read_bytes()
    assert data.startswith(b"From: mailclient demo <demo@example.com>\r\n")
    assert b"\r\n.This line starts with a dot: SMTP escapes it" in data
    assert b"\r\n..This" not in data
    assert b'filename="report.csv"' in data
    assert b"Mon,120,116,3,1\r\n" in data
    assert data.count(b"\n") == data.count(b"\r\n")
    assert data.endswith(b"\r\n")


def test_demoAsInTheReadme() -> None:
    """
    Run with no argument, exactly as the README says, the demo keeps the
    delivered file in a new temporary directory whose path it prints.
    """
    finished = runDemo()
    assert finished.returncode == 0, (finished.stdout, finished.stderr)
    match = re.search(r"^  maildir    (.+)$", finished.stdout, re.M)
    assert match is not None, finished.stdout
    directory = Path(match.group(1))
    try:
        assert len(list((directory / "new").iterdir())) == 1
    finally:
        shutil.rmtree(directory)


def test_demoHelp() -> None:
    """
    C{--help} describes the demo and its one option.
    """
    finished = runDemo("--help")
    assert finished.returncode == 0
    assert "usage: python -m mailclient.demo" in finished.stdout
    assert "--directory DIR" in finished.stdout


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[LoopbackReceiver]:
    """
    A plain L{LoopbackReceiver} storing under C{tmp_path}, started before
    the test and stopped after it.
    """
    r = LoopbackReceiver(str(tmp_path))
    pytest_twisted.blockon(r.start(reactor))  # type: ignore[arg-type]
    yield r
    pytest_twisted.blockon(r.stop())


@pytest_twisted.ensureDeferred
async def test_receiverStoresExactBytes(receiver: LoopbackReceiver) -> None:
    """
    The receiver stores one file per accepted recipient, each holding
    exactly the message the client sent (dot-led lines included, no header
    added), and records the envelope of each.
    """
    message = b"Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nend\r\n"
    result = await sendmail(
        receiver.host,
        "from@example.com",
        ["a@example.com", "b@example.net"],
        message,
        port=receiver.port,
        tls="none",
        timeout=10,
    )
    assert result.accepted == ("a@example.com", "b@example.net")
    assert result.queueId is not None
    assert {d.queueId for d in receiver.deliveries} == {result.queueId}
    assert [(d.sender, d.recipient, d.tls) for d in receiver.deliveries] == [
        ("from@example.com", "a@example.com", False),
        ("from@example.com", "b@example.net", False),
    ]
    assert [d.read() for d in receiver.deliveries] == [message, message]
    assert len(set(d.path for d in receiver.deliveries)) == 2
    assert all(
        os.path.dirname(d.path) == receiver.newDirectory for d in receiver.deliveries
    )
    assert os.listdir(os.path.join(receiver.directory, "tmp")) == []


@pytest_twisted.ensureDeferred
async def test_receiverRefusals(receiver: LoopbackReceiver) -> None:
    """
    C{reject@} is refused with 550 5.1.1 and C{tempfail@} with 450 4.2.1,
    whatever the domain; when they are the only recipients nothing is
    stored.
    """
    with pytest.raises(AllRecipientsRefusedError) as caught:
        await sendmail(
            receiver.host,
            "from@example.com",
            ["REJECT@example.org", "tempfail@example.com"],
            b"Subject: no\r\n\r\nno\r\n",
            port=receiver.port,
            tls="none",
            retries=0,
        )
    assert caught.value.result is not None
    results = caught.value.result.recipients
    assert (
        results["REJECT@example.org"].code,
        results["tempfail@example.com"].code,
    ) == (
        550,
        450,
    )
    assert results["REJECT@example.org"].enhancedStatus == "5.1.1"
    assert results["tempfail@example.com"].enhancedStatus == "4.2.1"
    assert receiver.deliveries == []


@pytest_twisted.ensureDeferred
async def test_receiverStartTLSAndAuth(tmp_path: Path) -> None:
    """
    With C{tls="starttls"} and credentials the receiver offers STARTTLS with
    a certificate from its own CA, accepts the credentials, and records the
    user and that the session was TLS.
    """
    r = LoopbackReceiver(
        str(tmp_path), tls="starttls", credentials={"carol": "pa55word"}
    )
    port = await r.start(reactor)  # type: ignore[arg-type]
    try:
        assert r.caCertificate is not None
        result = await sendmail(
            "127.0.0.1",
            "carol@example.com",
            "dave@example.com",
            b"Subject: tls\r\n\r\nhi\r\n",
            port=port,
            tlsOptions=optionsForClientTLS("127.0.0.1", trustRoot=r.caCertificate),
            username="carol",
            password="pa55word",
            timeout=10,
        )
        assert result.session is not None
        assert result.session.tlsVersion is not None
        assert result.session.authMechanism is not None
        assert [(d.username, d.tls) for d in r.deliveries] == [("carol", True)]
    finally:
        await r.stop()


@pytest_twisted.ensureDeferred
async def test_receiverRequiresAuth(tmp_path: Path) -> None:
    """
    A receiver with credentials refuses C{MAIL FROM} with 530 5.7.0 until
    the session has authenticated.
    """
    r = LoopbackReceiver(str(tmp_path), credentials={"carol": "pa55word"})
    port = await r.start(reactor)  # type: ignore[arg-type]
    try:
        with pytest.raises(SenderRefusedError) as caught:
            await sendmail(
                "127.0.0.1",
                "carol@example.com",
                "dave@example.com",
                b"hi\r\n",
                port=port,
                tls="none",
            )
        assert caught.value.code == 530
        assert r.deliveries == []
    finally:
        await r.stop()


@pytest_twisted.ensureDeferred
async def test_receiverImplicitTLS(tmp_path: Path) -> None:
    """
    With C{tls="implicit"} the receiver speaks TLS from the first byte.
    """
    r = LoopbackReceiver(str(tmp_path), tls="implicit")
    port = await r.start(reactor)  # type: ignore[arg-type]
    try:
        assert r.caCertificate is not None
        result = await sendmail(
            "localhost",
            "a@example.com",
            "b@example.com",
            b"hi\r\n",
            port=port,
            tls="implicit",
            tlsOptions=optionsForClientTLS("localhost", trustRoot=r.caCertificate),
            timeout=10,
        )
        assert result.session is not None
        assert result.session.tlsVersion is not None
        assert [d.tls for d in r.deliveries] == [True]
    finally:
        await r.stop()


class _Silent(Protocol):
    """
    A client that connects, reads the greeting and says nothing.
    """

    def __init__(self) -> None:
        self.received = b""
        self.greeted: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n" in self.received and not self.greeted.called:
            self.greeted.callback(None)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost.callback(None)


@pytest_twisted.ensureDeferred
async def test_receiverStopDropsSessions(tmp_path: Path) -> None:
    """
    L{LoopbackReceiver.stop} closes the port and ends the sessions still
    open, and fires once they are gone.
    """
    r = LoopbackReceiver(str(tmp_path))
    port = await r.start(reactor)  # type: ignore[arg-type]
    client = _Silent()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), client)
    await client.greeted
    assert client.received.startswith(b"220 localhost ")
    await r.stop()
    await client.lost
    assert r.port is None
    assert r.sessionCount == 1


def test_demoMessageIsASCII() -> None:
    """
    The demo's message is 7-bit, so any server can take it (Twisted's
    server does not need 8BITMIME for it).
    """
    assert buildDemoMessage().as_bytes().isascii()


def test_receiverRefusesUnknownTLSMode() -> None:
    """
    An unknown TLS mode is refused when the receiver is made.
    """
    with pytest.raises(ValueError, match="tls must be"):
        LoopbackReceiver(tls="sometimes")  # type: ignore[arg-type]
