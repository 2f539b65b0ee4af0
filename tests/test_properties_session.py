"""
Stateful property tests: an L{ESMTPClient} against a L{ScriptedServer}
whose script Hypothesis makes up (refusals, drops before and after a reply,
delays, stalls past the timeouts, malformed replies, replies split into
pieces), while the client queues messages, the clock moves and the client
quits, in any order.  After every step and at the end of every run the
session's invariants are checked:

  - every Deferred the client returned fires exactly once;
  - a recipient is reported C{"accepted"} only when the server delivered
    the message to it (a 2xx to its RCPT and a 2xx final reply), and every
    delivery went to recipients the client reported as accepted (or as
    C{"unknown"}: the connection broke after the end of the data);
  - the client writes nothing after a malformed reply;
  - no credential leaves in clear: without TLS there is no AUTH unless
    C{allowPlaintextAuth}, and the password is never in what the client
    wrote then;
  - transcripts are redacted: no password, plain or in base64.

Everything runs in memory on a fake clock.  The number of runs comes from
the Hypothesis profile (C{tests/conftest.py}): the C{<profile>-stateful}
profile when it exists, else the profile itself.  C{bash .ci/fuzz} runs
many more.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

import attrs
import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from mailclient import LoginMechanism, PlainMechanism, errors
from mailclient.protocol import ESMTPClient, Timeouts
from mailclient.results import SendResult
from mailclient.testing import (
    MemoryEndpoint,
    MemoryTransport,
    ScriptedServer,
    runFor,
    settle,
)
from tests.wire.test_dataenc import referenceNormalize

USERNAME = "fuzz-user@example.test"
PASSWORD = "Zq8-pass/Word!"
MARKER = b"~MALFORMED~"

TIMEOUT = 60.0
"""Every client timeout, in seconds (the final reply: twice that)."""

TIMEOUTS = Timeouts(
    greeting=TIMEOUT,
    command=TIMEOUT,
    mail=TIMEOUT,
    rcpt=TIMEOUT,
    dataInitiation=TIMEOUT,
    dataBlock=TIMEOUT,
    finalReply=2 * TIMEOUT,
)

# Replies the client must refuse to read: each line carrying MARKER is the
# one that breaks the protocol (the scripted server needs three digits
# first).
MALFORMED: list[tuple[bytes, ...]] = [
    (b"699 " + MARKER + b" no such reply class",),
    (b"190 " + MARKER + b" no such reply class",),
    (b"260 " + MARKER + b" no such second digit",),
    (b"2500" + MARKER + b" no separator after the code",),
    (b"250-fine so far", b"251 " + MARKER + b" the code changed"),
    (b"550-fine so far", b"250 " + MARKER + b" the code changed"),
]

BODIES = [
    b"Hello.\r\n",
    b".leading dot\r\n..\r\n.\r\nMAIL FROM:<x>\r\n",
    b"bare\nline\rends\r\n.",
    b"",
    b"x" * 300 + b"\r\n.\r\n" + b"y" * 300,
]

VERBS = [
    "GREETING",
    "EHLO",
    "HELO",
    "AUTH",
    "MAIL",
    "RCPT",
    "DATA",
    "BDAT",
    "END-OF-DATA",
    "RSET",
    "QUIT",
    "*",
]
BEHAVIOURS = [
    "transient",
    "transient",
    "permanent",
    "permanent",
    "malformed",
    "shutdown",
    "drop",
    "dropAbort",
    "close",
    "delay",
    "slow",
    "stall",
    "malformed",
    "dropAfter",
]


def sender(number: int) -> str:
    """
    The envelope sender of message C{number}: it tells the deliveries apart.
    """
    return f"sender{number}@example.test"


def recipient(number: int, index: int) -> str:
    """
    Recipient C{index} of message C{number}.
    """
    return f"rcpt{number}-{index}@example.test"


@st.composite
def scriptRules(draw: st.DrawFn) -> dict[str, Any]:
    """
    The arguments of one L{ScriptedServer.rule} call: a verb, what to match,
    and a misbehaviour.
    """
    verb = draw(st.sampled_from(VERBS))
    behaviour = draw(st.sampled_from(BEHAVIOURS))
    kwargs: dict[str, Any] = {"verb": verb}
    if behaviour == "dropAfter" and verb not in ("DATA", "BDAT"):
        behaviour = "drop"
    if verb == "MAIL":
        kwargs["match"] = draw(st.none() | st.integers(0, 2).map(sender))
    elif verb == "RCPT":
        kwargs["match"] = draw(
            st.none() | st.builds(recipient, st.integers(0, 2), st.integers(0, 3))
        )
    elif verb == "END-OF-DATA":
        kwargs["match"] = draw(
            st.none() | st.integers(0, 2).map(lambda n: f"<msg-{n}@")
        )
    elif verb in ("DATA", "BDAT"):
        kwargs["transaction"] = draw(st.none() | st.integers(1, 3))
    kwargs["times"] = draw(st.sampled_from([1, 1, 2, None]))
    if behaviour == "transient":
        kwargs["reply"] = b"451 4.3.0 Try again later"
    elif behaviour == "permanent":
        kwargs["reply"] = b"554 5.7.1 Refused"
    elif behaviour == "shutdown":
        kwargs["reply"] = b"421 4.3.2 Shutting down"
    elif behaviour == "drop":
        kwargs["drop"] = True
    elif behaviour == "dropAbort":
        kwargs.update(drop=True, abort=True)
    elif behaviour == "close":
        kwargs["close"] = True
    elif behaviour == "delay":
        kwargs["delay"] = draw(st.sampled_from([0.5, 5.0, TIMEOUT / 2]))
    elif behaviour == "slow":
        kwargs["delay"] = 3 * TIMEOUT
    elif behaviour == "stall":
        kwargs["stall"] = True
    elif behaviour == "malformed":
        kwargs["reply"] = draw(st.sampled_from(MALFORMED))
    else:
        kwargs["dropAfter"] = draw(st.sampled_from([0, 1, 7, 100]))
        kwargs["abort"] = draw(st.booleans())
    return kwargs


@attrs.frozen
class Setup:
    """
    What a run is made of before anything happens: the server's script and
    settings, and the client's options.

    @ivar rules: the keyword arguments of each scripted rule.
    @ivar chunking: the server offers CHUNKING and the client uses it.
    @ivar pipelining: the client uses PIPELINING (the server offers it).
    @ivar credentials: the server offers AUTH and the client has
        credentials.
    @ivar mechanisms: the SASL mechanisms the server offers.
    @ivar allowPlaintextAuth: the client may authenticate without TLS.
    @ivar pieces: the client reads what arrives in pieces of this many
        octets (L{None}: as it arrives).
    """

    rules: tuple[dict[str, Any], ...]
    chunking: bool
    pipelining: bool
    credentials: bool
    mechanisms: tuple[str, ...]
    allowPlaintextAuth: bool
    pieces: int | None


messageShapes = st.tuples(st.integers(1, 4), st.sampled_from(BODIES))
"""A message's number of recipients and its body."""

setups = st.builds(
    Setup,
    rules=st.just(()) | st.lists(scriptRules(), min_size=1, max_size=3).map(tuple),
    chunking=st.booleans(),
    pipelining=st.booleans(),
    credentials=st.booleans(),
    mechanisms=st.sampled_from([("PLAIN",), ("LOGIN",), ("PLAIN", "LOGIN")]),
    allowPlaintextAuth=st.booleans(),
    pieces=st.none() | st.integers(1, 7),
)


class ObservedClient(ESMTPClient):
    """
    An L{ESMTPClient} that notes every malformed reply line it reads, what it
    writes afterwards, and reads what arrives in pieces when told to.

    @ivar pieces: the size of the pieces to read, or L{None}.
    @ivar violationSeen: a line carrying L{MARKER} arrived.
    @ivar written: every octet written to the transport.
    @ivar writtenAfterViolation: the octets written after that line.
    """

    pieces: int | None = None
    violationSeen = False

    def __init__(self, **kwargs: Any) -> None:
        """
        @param kwargs: the L{ESMTPClient} arguments.
        """
        super().__init__(**kwargs)
        self.written = bytearray()
        self.writtenAfterViolation = bytearray()

    def makeConnection(self, transport: Any) -> None:
        """
        Watch what is written to C{transport}, then connect as usual.
        """
        write = transport.write

        def watched(data: bytes) -> None:
            self.written += data
            if self.violationSeen:
                self.writtenAfterViolation += data
            write(data)

        transport.write = watched
        transport.writeSequence = lambda seq: watched(b"".join(seq))
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        """
        Read C{data}, in pieces of L{pieces} octets when set.
        """
        size = self.pieces or len(data) or 1
        for start in range(0, len(data), size):
            super().dataReceived(data[start : start + size])

    def lineReceived(self, line: bytes) -> None:
        """
        Note a malformed reply line before reading it.
        """
        if MARKER in line:
            self.violationSeen = True
        super().lineReceived(line)


class OneClient(Factory):
    """
    A factory that hands out one prepared client.
    """

    def __init__(self, client: ESMTPClient) -> None:
        """
        @param client: the client to hand out.
        """
        self.client = client

    def buildProtocol(self, addr: IAddress | None) -> ESMTPClient:
        """
        The prepared client.
        """
        return self.client


@attrs.define
class Fired:
    """
    What one Deferred fired with, counted.

    @ivar callbacks: how many times it succeeded.
    @ivar errbacks: how many times it failed.
    @ivar results: every result or exception.
    """

    callbacks: int = 0
    errbacks: int = 0
    results: list[object] = attrs.Factory(list)

    def watch(self, d: Deferred[Any]) -> None:
        """
        Count what C{d} fires with (and consume a failure).
        """

        def ok(result: object) -> None:
            self.callbacks += 1
            self.results.append(result)

        def failed(reason: Failure) -> None:
            self.errbacks += 1
            self.results.append(reason.value)

        d.addCallbacks(ok, failed)

    @property
    def count(self) -> int:
        """
        How many times it fired.
        """
        return self.callbacks + self.errbacks


@attrs.define
class Sent:
    """
    One message handed to L{ESMTPClient.send}.

    @ivar number: its number, from 0, which names its sender.
    @ivar recipients: its recipients.
    @ivar message: the message octets.
    @ivar fired: what its Deferred fired with.
    """

    number: int
    recipients: list[str]
    message: bytes
    fired: Fired = attrs.Factory(Fired)

    def outcome(self) -> SendResult | None:
        """
        The result the send reported: the L{SendResult}, or the partial one an
        error carries (L{None} when it has none).
        """
        [result] = self.fired.results
        if isinstance(result, SendResult):
            return result
        assert isinstance(result, errors.MailClientError), result
        return result.result


def secrets() -> list[bytes]:
    """
    Every form of the credentials that must never be seen in a transcript.
    """
    return [
        PASSWORD.encode(),
        base64.b64encode(PASSWORD.encode()),
        base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()),
    ]


_BASE64 = re.compile(rb"[A-Za-z0-9+/]{8,}={0,2}")


def leaks(text: bytes) -> bool:
    """
    Whether C{text} holds the password, in clear or in any base64 word.
    """
    if any(secret in text for secret in secrets()):
        return True
    for word in _BASE64.findall(text):
        try:
            decoded = base64.b64decode(word + b"=" * (-len(word) % 4))
        except (binascii.Error, ValueError):
            continue
        if PASSWORD.encode() in decoded:
            return True
    return False


def transcriptLeaks(transcript: tuple[tuple[str, str], ...]) -> bool:
    """
    Whether any line of C{transcript} holds the password.
    """
    return any(leaks(line.encode("utf-8")) for _, line in transcript)


class SessionMachine(RuleBasedStateMachine):
    """
    One client session against a scripted server: messages are queued, the
    clock moves and the client quits in an order Hypothesis chooses.
    """

    def __init__(self) -> None:
        """
        Nothing exists until L{start}.
        """
        super().__init__()
        self.clock = Clock()
        self.setup: Setup | None = None
        self.server: ScriptedServer | None = None
        self.client: ObservedClient | None = None
        self.sent: list[Sent] = []
        self.quitFired: Fired | None = None

    @initialize(setup=setups, messages=st.lists(messageShapes, min_size=1, max_size=3))
    def start(self, setup: Setup, messages: list[tuple[int, bytes]]) -> None:
        """
        Script the server, connect the client and queue the first
        C{messages} (nothing runs yet).
        """
        self.setup = setup
        server = ScriptedServer(
            self.clock,
            chunking=setup.chunking,
            credentials={USERNAME: PASSWORD} if setup.credentials else None,
            authMechanisms=setup.mechanisms,
        )
        for kwargs in setup.rules:
            server.rule(**kwargs)
        client = ObservedClient(
            clock=self.clock,
            tls="none",
            heloName="client.test",
            allowPlaintextAuth=setup.allowPlaintextAuth,
            timeouts=TIMEOUTS,
            pipelining=setup.pipelining,
            chunking=setup.chunking,
        )
        client.pieces = setup.pieces
        if setup.credentials:
            client.registerAuthenticator(PlainMechanism(USERNAME, PASSWORD))
            client.registerAuthenticator(LoginMechanism(USERNAME, PASSWORD))
        self.server, self.client = server, client
        MemoryEndpoint(self.clock, server).connect(OneClient(client))
        for count, body in messages:
            self.send(count, body)

    @rule(shape=messageShapes)
    def sendLater(self, shape: tuple[int, bytes]) -> None:
        """
        Queue one more message (at most four in all), whatever the session
        is doing (it may have failed, or be quitting).
        """
        if len(self.sent) < 4:
            self.send(*shape)

    def send(self, count: int, body: bytes) -> None:
        """
        Queue a message to C{count} recipients.
        """
        assert self.client is not None
        number = len(self.sent)
        message = (
            b"Message-Id: <msg-%d@example.test>\r\nSubject: t\r\n\r\n" % number + body
        )
        sent = Sent(number, [recipient(number, i) for i in range(count)], message)
        self.sent.append(sent)
        sent.fired.watch(self.client.send(sender(number), sent.recipients, message))

    @rule(seconds=st.sampled_from([0.0, 0.5, 5.0, TIMEOUT + 1, 3 * TIMEOUT]))
    def advance(self, seconds: float) -> None:
        """
        Let C{seconds} pass (0: only what is due now).
        """
        if seconds:
            runFor(self.clock, seconds)
        else:
            settle(self.clock)

    @rule()
    def quit(self) -> None:
        """
        Ask the client to quit once its queue is empty (once).
        """
        assert self.client is not None
        if self.quitFired is not None:
            return
        self.quitFired = Fired()
        self.quitFired.watch(self.client.quit())

    @invariant()
    def firedAtMostOnce(self) -> None:
        """
        No Deferred has fired more than once.
        """
        for sent in self.sent:
            assert sent.fired.count <= 1, sent
        assert self.quitFired is None or self.quitFired.count <= 1

    @invariant()
    def nothingAfterViolation(self) -> None:
        """
        After a malformed reply the client writes nothing more.
        """
        if self.client is not None:
            assert bytes(self.client.writtenAfterViolation) == b""

    @invariant()
    def noCredentialsInClear(self) -> None:
        """
        Without TLS (this session never has it), AUTH is sent only when the
        caller allowed it, and the password never leaves otherwise; the
        server never records a credential.
        """
        if self.client is None or self.server is None:
            return
        assert self.setup is not None
        for record in self.server.connections:
            assert not any(leaks(c.encode("utf-8")) for c in record.commands)
            if not self.setup.allowPlaintextAuth:
                assert "AUTH" not in record.verbs()
                assert record.authenticatedAs is None
        if not self.setup.allowPlaintextAuth:
            assert not leaks(bytes(self.client.written))

    def teardown(self) -> None:
        """
        Run the clock until nothing is left to happen (past every timeout),
        then check the end-of-run invariants.
        """
        if self.client is None:
            return
        client, server = self.client, self.server
        assert server is not None
        if self.quitFired is None:
            self.quit()
        for _ in range(20):
            runFor(self.clock, 4 * TIMEOUT)
            if not self.clock.getDelayedCalls():
                break
        assert not self.clock.getDelayedCalls()
        self.firedAtMostOnce()
        self.nothingAfterViolation()
        self.noCredentialsInClear()
        assert self.quitFired is not None and self.quitFired.count == 1
        assert not transcriptLeaks(client.transcript)
        self.label()
        for sent in self.sent:
            assert sent.fired.count == 1, sent
            [fired] = sent.fired.results
            if isinstance(fired, errors.MailClientError):
                assert not transcriptLeaks(fired.transcript)
            outcome = sent.outcome()
            if outcome is not None:
                assert not transcriptLeaks(outcome.transcript)
            statuses = {} if outcome is None else outcome.recipients
            accepted = {a for a, r in statuses.items() if r.status == "accepted"}
            unknown = {a for a, r in statuses.items() if r.status == "unknown"}
            deliveries = [
                d for d in server.deliveries if d.sender == sender(sent.number)
            ]
            delivered = {a for d in deliveries for a in d.recipients}
            assert accepted <= delivered, (accepted, delivered)
            allowed = accepted | unknown
            assert delivered <= allowed, (delivered, statuses)
            if isinstance(fired, SendResult):
                assert accepted, fired
            for delivery in deliveries:
                assert delivery.data == referenceNormalize(sent.message)

    def label(self) -> None:
        """
        Tell the statistics what this run exercised.
        """
        assert self.client is not None and self.server is not None
        if not currently_in_test_context():
            return
        event(f"messages sent: {len(self.sent)}")
        delivered = len(self.server.deliveries)
        event(f"deliveries: {delivered if delivered < 2 else '2+'}")
        if self.client.violationSeen:
            event("malformed reply read")
        if any("AUTH" in r.verbs() for r in self.server.connections):
            event("AUTH sent")
        statuses = {
            r.status
            for sent in self.sent
            if (outcome := sent.outcome()) is not None
            for r in outcome.recipients.values()
        }
        for status in sorted(statuses):
            event(f"a recipient {status}")


def _statefulSettings() -> settings:
    """
    The settings of the current profile's C{-stateful} companion when there
    is one, else the current profile's.
    """
    name = settings.get_current_profile_name()
    try:
        return settings.get_profile(f"{name}-stateful")
    except InvalidArgument:
        return settings(stateful_step_count=12)


@pytest.mark.fuzz
class TestSessionMachine(SessionMachine.TestCase):  # type: ignore[misc,valid-type]
    """
    Whatever the server's script and whatever the client is asked to do,
    every send fires exactly once, accepted means delivered, nothing is
    written after a protocol violation, credentials never leave in clear and
    transcripts are redacted.
    """

    settings = _statefulSettings()


def pipelinedBDATSession(
    clock: Clock,
    server: ScriptedServer,
    replyLatency: float = 0.0,
    timeouts: Timeouts = TIMEOUTS,
) -> tuple[Fired, ScriptedServer]:
    """
    Send one message to two recipients with PIPELINING and CHUNKING (so the
    whole message leaves with the envelope) and run the clock until nothing
    is left to happen; the server's replies after its greeting take
    C{replyLatency} seconds to arrive.
    """
    client = ESMTPClient(
        clock=clock, tls="none", heloName="client.test", timeouts=timeouts
    )
    connecting = MemoryEndpoint(clock, server).connect(OneClient(client))

    def slowReplies(protocol: object) -> object:
        # From now on the server's replies take this long to arrive.
        transport = server.connections[-1].serverTransport
        assert isinstance(transport, MemoryTransport)
        transport.latency = replyLatency
        return protocol

    connecting.addCallback(slowReplies)
    fired = Fired()
    fired.watch(client.send(sender(0), [recipient(0, 0), recipient(0, 1)], b"Hi.\r\n"))
    client.quit()
    for _ in range(20):
        runFor(clock, 4 * TIMEOUT)
        if not clock.getDelayedCalls():
            break
    return fired, server


def test_pipelinedBDATFailureIsUnknown() -> None:
    """
    Found by L{TestSessionMachine} (fixed): with PIPELINING and CHUNKING the client
    sends C{MAIL}, C{RCPT}s and C{BDAT n LAST} with the message in one
    write; the server accepts every recipient and delivers, but its reply to
    the first RCPT is malformed (the code changes between its lines).  The
    client rightly fails the session, but a recipient whose RCPT and whole
    message were sent must not be reported C{"not-attempted"} ("the
    transaction ended before this recipient was tried"): the message may
    have been delivered, as it was here, so its status is C{"unknown"}.
    """
    clock = Clock()
    server = ScriptedServer(clock, chunking=True)
    server.rule("RCPT", reply=MALFORMED[4], times=1)
    fired, server = pipelinedBDATSession(clock, server)
    [error] = fired.results
    assert isinstance(error, errors.SMTPProtocolError)
    [delivery] = server.deliveries
    assert set(delivery.recipients) == {recipient(0, 0), recipient(0, 1)}
    assert error.result is not None
    statuses = {a: r.status for a, r in error.result.recipients.items()}
    assert statuses == {recipient(0, 0): "unknown", recipient(0, 1): "unknown"}


def test_pipelinedBDATTimeoutIsUnknown() -> None:
    """
    The same bug without a misbehaving server: when the server's replies
    take longer than the client's MAIL timeout, the client gives up after
    the whole message (C{BDAT n LAST}) has left, though the server received
    and delivered it.  Its recipients must be C{"unknown"}, not
    C{"not-attempted"} (a caller retrying "not attempted" recipients would
    deliver twice).
    """
    clock = Clock()
    server = ScriptedServer(clock, chunking=True)
    # Replies take 20 s; the client waits 60 s for EHLO but 10 s for MAIL.
    timeouts = attrs.evolve(TIMEOUTS, mail=10.0, rcpt=10.0)
    fired, server = pipelinedBDATSession(clock, server, 20.0, timeouts)
    [error] = fired.results
    assert isinstance(error, errors.SMTPTimeoutError)
    assert len(server.deliveries) == 1
    assert error.result is not None
    statuses = {a: r.status for a, r in error.result.recipients.items()}
    assert statuses == {recipient(0, 0): "unknown", recipient(0, 1): "unknown"}
