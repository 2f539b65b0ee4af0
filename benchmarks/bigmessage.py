"""
Large-message benchmark: does a big message stream with flat memory?

    .venv/bin/python benchmarks/bigmessage.py --size-mib 1024 [--json PATH]

Starts a sink SMTP server (this script with ``--role sink``: asyncio,
127.0.0.1, a free port, PIPELINING, 8BITMIME and CHUNKING; it un-stuffs
DATA, counts the message octets and hashes them) in its own process, then,
for every case, runs the client (``--role client``: ``mailclient.sendmail``
on the Twisted reactor) in a process of its own, so that the memory
measured is the client's alone.  The message is generated: a header section,
then text lines of up to 76 characters (some start with ".", some are just
".") with CRLF line ends, exactly ``--size-mib`` MiB.  It is given as

* ``file``: a seekable file on disk (written once to a temporary directory,
  deleted at the end);
* ``stream``: a non-seekable stream (an object with ``read(n)`` only) that
  generates the bytes as they are read;
* ``virtual`` (not in the default set): a seekable object (``read``,
  ``seek``, ``tell``, ``seekable``) that generates them, no disk;

each sent with DATA (``chunking=False``) and BDAT (``chunking=True``).

Per case it reports the seconds from ``sendmail()`` to its result, MiB/s,
the client's peak RSS and its RSS right after its imports (the baseline),
and whether the sink got exactly the generated octets (count and SHA-256).

Peak RSS is the client's ``VmHWM`` (``/proc/self/status``): the high-water
mark of its own address space since exec.  ``ru_maxrss`` is reported too
(column "ru_maxrss"), but Linux carries the spawning parent's high-water mark
into a child's ``ru_maxrss`` across fork/vfork and exec, so it is never
below this runner's size.  Off Linux only ``ru_maxrss`` exists.

The sink is pure Python, and on a 2-CPU machine client and sink share the
CPUs: MiB/s is a floor, not the client's limit.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import queue
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

MIB = 1024 * 1024
SEED = 5321
POOL_SIZE = 512 * 1024
BLOCK = MIB
SENDER = "sender@bench.example"
RECIPIENT = "rcpt@bench.example"
SOURCES = ("file", "stream", "virtual")
DEFAULT_SOURCES = ("file", "stream")

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are "
    "or his from at which but have an they you were her she there been one "
    "all we their has would when if so no will can more other what about "
    "message server client octet line transfer mail delivery envelope "
    "recipient header body stream chunk buffer producer consumer reactor "
    "deferred transport protocol extension pipelining backpressure memory"
).split()


# -- the message --------------------------------------------------------------


def _pool(rng: random.Random, size: int) -> bytes:
    """
    @return: about C{size} octets of text lines (CRLF, at most 76
        characters), some empty, some starting with C{"."}, a few just
        C{"."}, ending with a line end.
    """
    lines: list[str] = []
    total = 0
    while total < size:
        draw = rng.random()
        if draw < 0.04:
            line = ""
        elif draw < 0.05:
            line = rng.choice([".", "..", "...", ". ."])
        else:
            width = rng.randint(60, 76)
            words: list[str] = []
            length = -1
            while True:
                word = rng.choice(_WORDS)
                if length + 1 + len(word) > width:
                    break
                words.append(word)
                length += 1 + len(word)
            line = " ".join(words)
            if draw < 0.09:
                line = "." + line[1:]
        lines.append(line)
        total += len(line) + 2
    return "".join(line + "\r\n" for line in lines).encode("ascii")


class Content:
    """
    The generated message, exactly C{size} octets: a header section, a pool
    of text lines repeated, then whole lines of the pool and one filler
    line, so that it ends with CRLF.  Any range can be read without making
    the rest.
    """

    def __init__(self, size: int, seed: int = SEED) -> None:
        rng = random.Random(seed)
        header = (
            f"From: Big Sender <{SENDER}>\r\n"
            f"To: Big Recipient <{RECIPIENT}>\r\n"
            f"Subject: a generated message of {size} octets\r\n"
            "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
            f"Message-ID: <bigmessage.{size}.{seed}@bench.example>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=us-ascii\r\n"
            "Content-Transfer-Encoding: 7bit\r\n"
        )
        pool = _pool(rng, POOL_SIZE)
        head = header.encode("ascii") + b"\r\n"
        if size < len(head):
            raise ValueError(f"size must be at least {len(head)} octets")
        repeats, left = divmod(size - len(head), len(pool))
        if left == 1:
            # No CRLF line is one octet long: one pool less, or one more
            # octet (folding white space) in the header.
            if repeats:
                repeats -= 1
                left += len(pool)
            else:
                head = head.replace(b": 7bit", b":  7bit")
                left = 0
        # Whole lines of the pool, then a filler line of what is left.
        found = pool.rfind(b"\r\n", 0, left - 2) if left > 2 else -1
        cut = found + 2 if found >= 0 else 0
        tail = pool[:cut] + b"x" * (left - cut - 2) + b"\r\n" if left else b""
        self.size = size
        self._head = head
        self._pool = pool
        self._poolEnd = len(head) + repeats * len(pool)
        self._tail = tail
        assert self._poolEnd + len(tail) == size

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
                piece = self._pool[offset : offset + min(end, self._poolEnd) - position]
            else:
                piece = self._tail[position - self._poolEnd : end - self._poolEnd]
            pieces.append(piece)
            position += len(piece)
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    def blocks(self, size: int = BLOCK) -> Iterator[bytes]:
        """
        @return: the message, in blocks of C{size} octets.
        """
        for position in range(0, self.size, size):
            yield self.readAt(position, size)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for block in self.blocks():
            digest.update(block)
        return digest.hexdigest()


class GeneratedStream:
    """
    A non-seekable binary stream of the message: C{read(n)} only.
    """

    def __init__(self, content: Content) -> None:
        self._content = content
        self._position = 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            size = self._content.size
        data = self._content.readAt(self._position, size)
        self._position += len(data)
        return data


class VirtualFile(GeneratedStream):
    """
    A seekable binary file of the message, generated as it is read.
    """

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0, /) -> int:
        base = (0, self._position, self._content.size)[whence]
        self._position = max(0, base + offset)
        return self._position


# -- the sink -------------------------------------------------------------------

_END_OF_DATA = b"\r\n.\r\n"


class _SinkSession(asyncio.Protocol):
    """
    One SMTP session of the sink: commands, DATA (un-stuffed) or BDAT, each
    message's octets counted and hashed; one JSON line per message on
    stdout.
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
        self.wire = 0
        self.replies: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(b"220 bigmessage sink ESMTP\r\n")

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
                    self.mode = "command"
                    if self.bdatLast:
                        self._delivered("BDAT")
                    else:
                        self.replies.append(b"250 2.0.0 chunk received\r\n")
            else:
                self.buffer += data
                data = b""
                while self.mode == "command":
                    end = self.buffer.find(b"\r\n")
                    if end < 0:
                        break
                    line = self.buffer[:end]
                    self.buffer = self.buffer[end + 2 :]
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
        Un-stuff DATA content, a whole number of lines at a time; C{carry}
        always starts with the CRLF before the line it holds (a virtual one
        for the first line, which C{skip} drops).

        @return: what follows the end of the data.
        """
        self.wire += len(data)
        work = self.carry + data
        end = work.find(_END_OF_DATA)
        if end >= 0:
            self._unstuffed(work[: end + 2])
            self.carry = b""
            self.wire -= len(work) - end - len(_END_OF_DATA)
            self._delivered("DATA")
            self.mode = "command"
            return work[end + len(_END_OF_DATA) :]
        last = work.rfind(b"\r\n")
        if last > 0:
            self._unstuffed(work[:last])
            work = work[last:]
        self.carry = work
        return b""

    def _unstuffed(self, lines: bytes) -> None:
        data = lines.replace(b"\r\n..", b"\r\n.")
        if self.skip:
            data = data[self.skip :]
            self.skip = 0
        self._take(data)

    def _delivered(self, how: str) -> None:
        record = {
            "how": how,
            "octets": self.octets,
            "sha256": self.digest.hexdigest(),
        }
        sys.stdout.write(json.dumps(record) + "\n")
        sys.stdout.flush()
        self.replies.append(b"250 2.0.0 Ok: queued\r\n")

    def _startMessage(self) -> None:
        self.digest = hashlib.sha256()
        self.octets = 0

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        out = self.replies.append
        if verb == b"EHLO":
            out(
                b"250-bigmessage\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                b"250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n"
            )
        elif verb == b"HELO":
            out(b"250 bigmessage\r\n")
        elif verb == b"MAIL":
            self._startMessage()
            out(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            out(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            self.mode = "data"
            self.carry = b"\r\n"
            self.skip = 2
            out(b"354 End data with <CR><LF>.<CR><LF>\r\n")
        elif verb == b"BDAT":
            parts = line.split()
            self.bdatLeft = int(parts[1])
            self.bdatLast = len(parts) > 2 and parts[2].upper() == b"LAST"
            if self.bdatLeft:
                self.mode = "bdat"
            elif self.bdatLast:
                self._delivered("BDAT")
            else:
                out(b"250 2.0.0 chunk received\r\n")
        elif verb in (b"RSET", b"NOOP"):
            out(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            out(b"221 2.0.0 Bye\r\n")
            if self.transport is not None:
                self.transport.write(b"".join(self.replies))
                self.replies.clear()
                self.transport.close()
        else:
            out(b"502 5.5.2 Error: command not recognized\r\n")


def sinkMain() -> int:
    """
    Serve on 127.0.0.1, a free port, until stdin closes; say
    C{PORT <number>} on stdout first.
    """

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(_SinkSession, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        sys.stdout.write(f"PORT {port}\n")
        sys.stdout.flush()
        # Run until the parent closes our stdin (or dies).
        await loop.run_in_executor(None, sys.stdin.buffer.read)
        server.close()

    asyncio.run(serve())
    return 0


# -- the client -------------------------------------------------------------------


def peakRss() -> tuple[float, float]:
    """
    @return: this process's peak RSS in MiB: C{VmHWM} (its own address
        space; C{ru_maxrss} off Linux) and C{ru_maxrss}.
    """
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mib = maxrss / (MIB if sys.platform == "darwin" else 1024)
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024, maxrss_mib
    except OSError:
        pass
    return maxrss_mib, maxrss_mib


def clientMain(args: argparse.Namespace) -> int:
    """
    Send one generated message; print a JSON line with the outcome.
    """
    import twisted.internet.reactor  # noqa: F401 (installed: part of the baseline)
    from twisted.internet.defer import Deferred
    from twisted.internet.task import react

    import mailclient

    baseline, baselineMaxrss = peakRss()
    content = Content(args.size)
    message: Any
    if args.source == "file":
        message = open(args.path, "rb")
    elif args.source == "stream":
        message = GeneratedStream(content)
    else:
        message = VirtualFile(content)
    recipients = [RECIPIENT] + [
        f"rcpt{i}@bench.example" for i in range(2, args.rcpts + 1)
    ]
    outcome: dict[str, Any] = {}

    async def go(reactor: Any) -> None:
        start = time.perf_counter()
        try:
            if args.via == "mailer":
                # The Mailer keeps the message for a retry: a seekable one
                # is read again, a stream is spooled to a temporary file.
                mailer = mailclient.Mailer(
                    "127.0.0.1",
                    port=args.port,
                    tls="none",
                    reactor=reactor,
                    chunking=args.chunking,
                    timeout=120,
                )
                result = await mailer.send(SENDER, recipients, message)
                await mailer.stopService()
            else:
                result = await mailclient.sendmail(
                    "127.0.0.1",
                    SENDER,
                    recipients,
                    message,
                    port=args.port,
                    tls="none",
                    reactor=reactor,
                    chunking=args.chunking,
                    timeout=120,
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
        peak, maxrss = peakRss()
        outcome.update(
            peakRssMiB=round(peak, 1),
            baselineRssMiB=round(baseline, 1),
            ruMaxrssMiB=round(maxrss, 1),
            baselineRuMaxrssMiB=round(baselineMaxrss, 1),
        )
        sys.stdout.write(json.dumps(outcome) + "\n")
        sys.stdout.flush()

    react(lambda reactor: Deferred.fromCoroutine(go(reactor)))


# -- the runner -------------------------------------------------------------------


class Sink:
    """
    The sink process, and the JSON lines it writes (one per message).
    """

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--role", "sink"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        first = self.process.stdout.readline().split()
        if len(first) != 2 or first[0] != "PORT":
            self.close()
            raise RuntimeError(f"the sink did not start: {first!r}")
        self.port = int(first[1])
        self._lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self._lines.put(line)

    def nextMessage(self, timeout: float) -> dict[str, Any] | None:
        try:
            return dict(json.loads(self._lines.get(timeout=timeout)))
        except queue.Empty:
            return None

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def runCase(
    sink: Sink,
    content: Content,
    expected: str,
    source: str,
    chunking: bool,
    path: str | None,
    timeout: float,
    rcpts: int = 1,
    via: str = "sendmail",
) -> dict[str, Any]:
    """
    Run the client once; check what the sink got.
    """
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--role",
        "client",
        "--port",
        str(sink.port),
        "--size",
        str(content.size),
        "--source",
        source,
        "--rcpts",
        str(rcpts),
        "--via",
        via,
    ]
    if chunking:
        command.append("--chunking")
    if path is not None:
        command += ["--path", path]
    row: dict[str, Any] = {
        "case": f"{via}: {source} {'BDAT' if chunking else 'DATA'}",
        "via": via,
        "source": source,
        "chunking": chunking,
        "sizeMiB": round(content.size / MIB, 1),
    }
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        row.update(ok=False, error=f"client timed out after {timeout} s")
        return row
    lines = done.stdout.strip().splitlines()
    if done.returncode or not lines:
        row.update(ok=False, error=f"client failed: {done.stderr.strip()[-500:]}")
        return row
    row.update(json.loads(lines[-1]))
    if row.get("ok"):
        row["MiBps"] = round(content.size / MIB / row["seconds"], 1)
        received = sink.nextMessage(timeout=10)
        row["sink"] = received
        row["match"] = bool(
            received
            and received["octets"] == content.size
            and received["sha256"] == expected
            and received["how"] == ("BDAT" if chunking else "DATA")
        )
    return row


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| case | size MiB | s | MiB/s | peak RSS MiB | baseline RSS MiB "
        "| ru_maxrss MiB | sink octets+hash |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if not row.get("ok"):
            lines.append(
                f"| {row['case']} | {row['sizeMiB']} | | | | | "
                f"| error: {row.get('error', '?')} |"
            )
            continue
        lines.append(
            f"| {row['case']} | {row['sizeMiB']} | {row['seconds']:.2f} "
            f"| {row['MiBps']} | {row['peakRssMiB']} | {row['baselineRssMiB']} "
            f"| {row['ruMaxrssMiB']} | {'match' if row['match'] else 'MISMATCH'} |"
        )
    return "\n".join(lines)


def runnerMain(args: argparse.Namespace) -> int:
    size = int(args.size_mib * MIB)
    content = Content(size)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    for source in sources:
        if source not in SOURCES:
            raise SystemExit(f"unknown source {source!r}; choose from {SOURCES}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bigmessage-") as directory:
        path = None
        digest = hashlib.sha256()
        if "file" in sources:
            path = os.path.join(directory, "message.eml")
            with open(path, "wb") as f:
                for block in content.blocks():
                    digest.update(block)
                    f.write(block)
            expected = digest.hexdigest()
        else:
            expected = content.sha256()
        sink = Sink()
        try:
            for via in [v.strip() for v in args.via.split(",") if v.strip()]:
                for source in sources:
                    for chunking in (False, True):
                        row = runCase(
                            sink,
                            content,
                            expected,
                            source,
                            chunking,
                            path if source == "file" else None,
                            args.timeout,
                            args.rcpts,
                            via,
                        )
                        rows.append(row)
                        print(table([row]).splitlines()[-1], flush=True)
        finally:
            sink.close()
    print()
    print(
        f"{args.size_mib:g} MiB message, {args.rcpts} recipient(s), "
        "client peak RSS from VmHWM, "
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
    )
    print()
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "sizeMiB": args.size_mib,
                    "rcpts": args.rcpts,
                    "python": sys.version.split()[0],
                    "cpus": os.cpu_count(),
                    "expectedSha256": expected,
                    "rows": rows,
                },
                f,
                indent=2,
            )
            f.write("\n")
    good = all(row.get("ok") and row.get("match") for row in rows)
    return 0 if good else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[1])
    parser.add_argument("--size-mib", type=float, default=1024)
    parser.add_argument("--json", help="write the results as JSON here")
    parser.add_argument(
        "--sources",
        default=",".join(DEFAULT_SOURCES),
        help=f"comma-separated, from {', '.join(SOURCES)}",
    )
    parser.add_argument(
        "--rcpts",
        type=int,
        default=1,
        help="recipients per message; with more than one a non-seekable "
        "stream is kept (spooled to a temporary file) for a second pass",
    )
    parser.add_argument("--timeout", type=float, default=600, help="per client run")
    parser.add_argument(
        "--via",
        default="sendmail,mailer",
        help="comma-separated: sendmail (one connection), mailer (mailclient.Mailer)",
    )
    parser.add_argument("--role", choices=["runner", "sink", "client"])
    # For --role client:
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--source", choices=SOURCES, help=argparse.SUPPRESS)
    parser.add_argument("--chunking", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sink":
        return sinkMain()
    if args.role == "client":
        return clientMain(args)
    return runnerMain(args)


if __name__ == "__main__":
    sys.exit(main())
