"""
Large messages stream with backpressure and flat memory.

Every end-to-end test here runs two processes: a sink SMTP server and the
client (C{mailclient.sendmail} on the Twisted reactor), both this module run
as a script, on 127.0.0.1 with a port the sink picks itself.  The client
sends a generated message of L{SIZE} octets (a header section, then text
lines of up to 76 characters, some starting with C{"."}) and reports its own
peak RSS; the sink reports the octets it got (un-stuffed for DATA) and their
SHA-256.

The peak RSS is the client's C{VmHWM} (C{/proc/self/status}, Linux only):
the high-water mark of its own address space since exec.  Its C{ru_maxrss}
would not do: Linux carries the spawning parent's high-water mark (here the
pytest process) into a child's C{ru_maxrss} across exec.

The module imports only the standard library at the top (pytest and
mailclient are imported where they are used), so that the client process
holds mailclient and Twisted, and nothing of the test machinery.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import hashlib
import io
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

MIB = 1024 * 1024
SIZE = 256 * MIB
"""
The size of the messages of the memory tests: large enough that anything
kept per block of the message would show (4096 blocks of 64 KiB), small
enough for a few seconds per test.
"""

PEAK_RSS_LIMIT = 60 * MIB
"""
The requirement: a message of any size sends with a peak RSS under this.
"""

GROWTH_LIMIT = 8 * MIB
"""
How far above its RSS after its imports the client may peak: the block in
flight, its encoded copy, the transport's buffer and the allocator's slack,
never anything proportional to the message.
"""

SENDER = "sender@large.example"
RECIPIENT = "rcpt@large.example"
SEED = 1870
POOL_SIZE = 200 * 1024
CLIENT_TIMEOUT = 120.0

_WORDS = (
    "the of and to in is that for it as was with be by on not this are or "
    "from at which but have an they you were there been one all we has "
    "message server client octet line transfer mail delivery envelope "
    "recipient header body stream chunk buffer producer consumer reactor"
).split()


# -- the message ------------------------------------------------------------------


def _pool(rng: random.Random, size: int) -> bytes:
    """
    @return: about C{size} octets of CRLF text lines of up to 76
        characters: some empty, some starting with C{"."}, some just
        C{"."} (which must be stuffed, or it would end DATA early).
    """
    lines: list[str] = []
    total = 0
    while total < size:
        draw = rng.random()
        if draw < 0.04:
            line = ""
        elif draw < 0.05:
            line = rng.choice([".", "..", ". ."])
        else:
            width = rng.randint(60, 76)
            line = rng.choice(_WORDS)
            while True:
                word = rng.choice(_WORDS)
                if len(line) + 1 + len(word) > width:
                    break
                line += " " + word
            if draw < 0.09:
                line = "." + line[1:]
        lines.append(line)
        total += len(line) + 2
    return "".join(line + "\r\n" for line in lines).encode("ascii")


class Content:
    """
    A generated message of exactly C{size} octets, ending with CRLF: a header
    section, a pool of text lines repeated, then whole lines of the pool and
    a filler line.  Any range is made on demand.
    """

    def __init__(self, size: int) -> None:
        """
        @param size: the message's size in octets; at least its header
            section and 2.
        """
        rng = random.Random(SEED)
        head = (
            f"From: Sender <{SENDER}>\r\n"
            f"To: Recipient <{RECIPIENT}>\r\n"
            f"Subject: {size} generated octets\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "\r\n"
        ).encode("ascii")
        pool = _pool(rng, POOL_SIZE)
        repeats, left = divmod(size - len(head), len(pool))
        if left == 1:
            # No CRLF line is one octet long.
            repeats -= 1
            left += len(pool)
        if repeats < 0:
            raise ValueError(f"size {size} is too small")
        found = pool.rfind(b"\r\n", 0, left - 2) if left > 2 else -1
        cut = found + 2 if found >= 0 else 0
        tail = pool[:cut] + b"x" * (left - cut - 2) + b"\r\n" if left else b""
        self.size = size
        self._head = head
        self._pool = pool
        self._poolEnd = len(head) + repeats * len(pool)
        self._tail = tail

    def readAt(self, position: int, size: int) -> bytes:
        """
        @return: up to C{size} octets from C{position} (fewer at the end).
        """
        pieces: list[bytes] = []
        end = min(self.size, position + size)
        while position < end:
            if position < len(self._head):
                piece = self._head[position:end]
            elif position < self._poolEnd:
                offset = (position - len(self._head)) % len(self._pool)
                stop = offset + min(end, self._poolEnd) - position
                piece = self._pool[offset:stop]
            else:
                piece = self._tail[position - self._poolEnd : end - self._poolEnd]
            pieces.append(piece)
            position += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def blocks(self, size: int = MIB) -> Iterator[bytes]:
        """
        @return: the whole message, in blocks of C{size} octets.
        """
        for position in range(0, self.size, size):
            yield self.readAt(position, size)


@functools.lru_cache(maxsize=4)
def expectedDigest(size: int) -> str:
    """
    @return: the SHA-256 of the message of C{size} octets.
    """
    digest = hashlib.sha256()
    for block in Content(size).blocks():
        digest.update(block)
    return digest.hexdigest()


class GeneratedStream:
    """
    A non-seekable binary stream of the message: C{read} only, like a pipe.

    @ivar trickle: give at most this many octets per read, as a raw pipe or
        socket does, if not L{None}.
    """

    def __init__(self, content: Content, trickle: int | None = None) -> None:
        self._content = content
        self._position = 0
        self.trickle = trickle

    def read(self, size: int = -1, /) -> bytes:
        """
        @return: the next octets, at most C{size} (and L{trickle}).
        """
        if size < 0:
            size = self._content.size
        if self.trickle is not None:
            size = min(size, self.trickle)
        data = self._content.readAt(self._position, size)
        self._position += len(data)
        return data


class VirtualFile(GeneratedStream):
    """
    A seekable binary file of the message, made as it is read: no disk.
    """

    def seekable(self) -> bool:
        """
        It can seek.
        """
        return True

    def tell(self) -> int:
        """
        @return: the position.
        """
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        """
        Move to C{offset} from the start, the position or the end.
        """
        base = (0, self._position, self._content.size)[whence]
        self._position = max(0, base + offset)
        return self._position


# -- the sink ---------------------------------------------------------------------

_END_OF_DATA = b"\r\n.\r\n"


class SinkSession(asyncio.Protocol):
    """
    One session of the sink: it accepts everything, offers PIPELINING,
    8BITMIME and CHUNKING, takes DATA (un-stuffed) or BDAT, and writes one
    JSON line per message on stdout: how it came, its octets, their SHA-256.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.mode = "command"
        self.carry = b""
        self.skip = 0
        self.bdatLeft = 0
        self.bdatLast = False
        self.digest = hashlib.sha256()
        self.octets = 0
        self.replies: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        while data:
            if self.mode == "data":
                data = self._data(data)
            elif self.mode == "bdat":
                take = min(self.bdatLeft, len(data))
                self._take(data[:take] if take < len(data) else data)
                data = data[take:]
                self.bdatLeft -= take
                if not self.bdatLeft:
                    self._chunkDone()
            else:
                self.buffer += data
                data = b""
                while self.mode == "command" and b"\r\n" in self.buffer:
                    line, self.buffer = self.buffer.split(b"\r\n", 1)
                    self._command(line)
                if self.mode != "command":
                    data, self.buffer = self.buffer, b""
        if self.replies and self.transport is not None:
            self.transport.write(b"".join(self.replies))
            self.replies.clear()

    def _take(self, data: bytes) -> None:
        self.octets += len(data)
        self.digest.update(data)

    def _data(self, data: bytes) -> bytes:
        """
        Un-stuff DATA content a whole number of lines at a time: C{carry}
        starts with the CRLF before the line it holds (a made-up one before
        the first line, which C{skip} drops).

        @return: what follows the end of the data.
        """
        work = self.carry + data
        end = work.find(_END_OF_DATA)
        if end >= 0:
            self._unstuff(work[: end + 2])
            self.carry = b""
            self.mode = "command"
            self._delivered("DATA")
            return work[end + len(_END_OF_DATA) :]
        last = work.rfind(b"\r\n")
        if last > 0:
            self._unstuff(work[:last])
            work = work[last:]
        self.carry = work
        return b""

    def _unstuff(self, lines: bytes) -> None:
        data = lines.replace(b"\r\n..", b"\r\n.")
        if self.skip:
            data = data[self.skip :]
            self.skip = 0
        self._take(data)

    def _chunkDone(self) -> None:
        self.mode = "command"
        if self.bdatLast:
            self._delivered("BDAT")
        else:
            self.replies.append(b"250 2.0.0 chunk received\r\n")

    def _delivered(self, how: str) -> None:
        record = {"how": how, "octets": self.octets, "sha256": self.digest.hexdigest()}
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        self.replies.append(b"250 2.0.0 Ok: queued\r\n")

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        out = self.replies.append
        if verb == b"EHLO":
            out(
                b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                b"250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"
            )
        elif verb == b"MAIL":
            self.digest = hashlib.sha256()
            self.octets = 0
            out(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            out(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            self.mode = "data"
            self.carry = b"\r\n"
            self.skip = 2
            out(b"354 Go ahead\r\n")
        elif verb == b"BDAT":
            parts = line.split()
            self.bdatLeft = int(parts[1])
            self.bdatLast = len(parts) > 2 and parts[2].upper() == b"LAST"
            self.mode = "bdat"
            if not self.bdatLeft:
                self._chunkDone()
        elif verb == b"QUIT":
            out(b"221 2.0.0 Bye\r\n")
            if self.transport is not None:
                self.transport.write(b"".join(self.replies))
                self.replies.clear()
                self.transport.close()
        else:
            out(b"250 2.0.0 Ok\r\n")


def sinkMain() -> int:
    """
    Serve on 127.0.0.1 until stdin closes; first write C{PORT <number>}.
    """

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(SinkSession, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        server.close()

    asyncio.run(serve())
    return 0


# -- the client -------------------------------------------------------------------


def peakRss() -> int | None:
    """
    @return: this process's peak RSS in octets (C{VmHWM}), or L{None}
        without C{/proc}.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def clientMain(port: int, size: int, source: str, chunking: bool) -> int:
    """
    Send one generated message to 127.0.0.1:C{port}; write a JSON line
    with the outcome, the seconds it took, the peak RSS and the RSS after
    the imports (C{baseline}), and the length of the message's transcript.
    """
    import twisted.internet.reactor  # noqa: F401 (installed: part of the baseline)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    import mailclient

    baseline = peakRss()
    content = Content(size)
    message: GeneratedStream
    if source == "stream":
        message = GeneratedStream(content)
    elif source == "trickle":
        message = GeneratedStream(content, trickle=4096)
    else:
        message = VirtualFile(content)
    outcome: dict[str, Any] = {"baseline": baseline}

    async def go(reactor: Any) -> None:
        start = time.perf_counter()
        try:
            result = await mailclient.sendmail(
                "127.0.0.1",
                SENDER,
                [RECIPIENT],
                message,
                port=port,
                tls="none",
                reactor=reactor,
                chunking=chunking,
                timeout=CLIENT_TIMEOUT,
            )
        except mailclient.errors.MailClientError as e:
            outcome.update(ok=False, error=str(e))
        else:
            outcome.update(
                ok=True,
                extensions=sorted(result.extensions),
                transcriptLines=len(result.transcript),
            )
        outcome["seconds"] = time.perf_counter() - start
        outcome["peak"] = peakRss()
        sys.stdout.write(json.dumps(outcome) + "\n")
        sys.stdout.flush()

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


def main(argv: list[str]) -> int:
    """
    Run as the sink or the client of the tests.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", choices=["sink", "client"], required=True)
    parser.add_argument("--port", type=int)
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument(
        "--source", choices=["stream", "trickle", "virtual"], default="stream"
    )
    parser.add_argument("--chunking", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "sink":
        return sinkMain()
    return clientMain(args.port, args.size, args.source, args.chunking)


# -- running them -----------------------------------------------------------------


def _script(*args: str) -> list[str]:
    return [sys.executable, os.path.abspath(__file__), *args]


def send(source: str, chunking: bool, size: int = SIZE) -> dict[str, Any]:
    """
    Start a sink, run the client once against it.

    @return: the client's outcome, with what the sink got under C{"sink"}.
    """
    import pytest

    if peakRss() is None:
        pytest.skip("needs /proc/self/status (Linux) to measure the peak RSS")
    sink = subprocess.Popen(
        _script("--role", "sink"),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdin is not None and sink.stdout is not None
    try:
        first = sink.stdout.readline().split()
        assert first[:1] == ["PORT"], f"the sink did not start: {first!r}"
        command = [
            "--role",
            "client",
            "--port",
            first[1],
            "--size",
            str(size),
            "--source",
            source,
        ]
        client = subprocess.run(
            _script(*command, *(["--chunking"] if chunking else [])),
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT,
            check=False,
        )
        assert client.returncode == 0, client.stderr[-2000:]
        outcome: dict[str, Any] = json.loads(client.stdout.splitlines()[-1])
        assert outcome["ok"], outcome
        # The sink wrote its line before its final reply: it is there.
        sink.stdin.close()
        received = sink.stdout.read().splitlines()
        outcome["sink"] = [json.loads(line) for line in received]
        return outcome
    finally:
        if not sink.stdin.closed:
            sink.stdin.close()
        try:
            sink.wait(10)
        except subprocess.TimeoutExpired:
            sink.kill()
            sink.wait()


def checkFlat(outcome: dict[str, Any], how: str, size: int = SIZE) -> None:
    """
    Assert that the sink got the message exactly, by C{how}, and that the
    client's memory stayed under the limits.
    """
    assert outcome["sink"] == [
        {"how": how, "octets": size, "sha256": expectedDigest(size)}
    ]
    peak, baseline = outcome["peak"], outcome["baseline"]
    report = (
        f"peak RSS {peak / MIB:.1f} MiB, {baseline / MIB:.1f} MiB after imports, "
        f"{size / MIB:.0f} MiB message by {how} in {outcome['seconds']:.2f} s"
    )
    assert peak < PEAK_RSS_LIMIT, report
    assert peak - baseline < GROWTH_LIMIT, report


# -- the tests --------------------------------------------------------------------


def test_streamData() -> None:
    """
    A 256 MiB message from a non-seekable stream goes by DATA with the
    client's peak RSS under 60 MiB (and within 8 MiB of its RSS after
    imports), and the sink gets exactly its octets.
    """
    outcome = send("stream", chunking=False)
    assert "CHUNKING" not in outcome["extensions"]
    checkFlat(outcome, "DATA")


def test_streamBdat() -> None:
    """
    A 256 MiB message from a non-seekable stream goes by BDAT with the
    client's peak RSS under 60 MiB (and within 8 MiB of its RSS after
    imports), and the sink gets exactly its octets.
    """
    outcome = send("stream", chunking=True)
    assert "CHUNKING" in outcome["extensions"]
    checkFlat(outcome, "BDAT")


def test_seekableData() -> None:
    """
    A 256 MiB message from a seekable file object (scanned once for its
    facts, then read again) goes by DATA with the client's peak RSS under
    60 MiB, and the sink gets exactly its octets.
    """
    outcome = send("virtual", chunking=False)
    checkFlat(outcome, "DATA")


def test_seekableBdat() -> None:
    """
    A 256 MiB message from a seekable file object goes by BDAT with the
    client's peak RSS under 60 MiB, and the sink gets exactly its octets.
    """
    outcome = send("virtual", chunking=True)
    checkFlat(outcome, "BDAT")


def test_tricklingStreamBdat() -> None:
    """
    A stream that gives at most 4 KiB per read, as a raw pipe or socket
    does, still goes in 64 KiB BDAT chunks (not one chunk, write and
    transcript line per read), with flat memory.
    """
    size = 32 * MIB
    outcome = send("trickle", chunking=True, size=size)
    checkFlat(outcome, "BDAT", size)
    # The transcript does not grow with the number of chunks (see
    # test_bdatTranscriptBounded), nor with the number of reads.
    assert outcome["transcriptLines"] <= 64


def test_bdatTranscriptBounded() -> None:
    """
    The transcript of a message sent in many BDAT chunks does not grow with
    the number of chunks: the message's own lines name the first and the
    last chunk only (the last with the count and total).
    """
    size = 16 * MIB
    outcome = send("stream", chunking=True, size=size)
    checkFlat(outcome, "BDAT", size)
    assert outcome["transcriptLines"] <= 64


def test_tricklingReadsFilled() -> None:
    """
    L{OpenedMessage.read} reads a stream that gives fewer octets than asked
    for again until the block is full, and gives C{b""} at the end without
    reading the stream again.
    """
    from mailclient._source import CHUNK_SIZE, toMessageSource

    content = Content(200_000)
    stream = GeneratedStream(content, trickle=1000)
    opened = toMessageSource(stream).open()
    blocks = list(iter(lambda: opened.read(CHUNK_SIZE), b""))
    assert [len(b) for b in blocks] == [65536, 65536, 65536, 200_000 - 3 * 65536]
    assert b"".join(blocks) == b"".join(content.blocks())
    stream.trickle = None
    stream.read = None  # type: ignore[assignment,method-assign]
    assert opened.read(CHUNK_SIZE) == b""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
