"""
A small SMTP sink that offers CHUNKING (RFC 3030), for the BDAT rows.

    python sink.py PORT [--no-chunking]

Postfix smtp-sink (3.7) cannot advertise CHUNKING, and aiosmtpd does not
implement BDAT, so the benchmark brings this one.  It listens on
127.0.0.1:PORT, advertises PIPELINING, 8BITMIME, ENHANCEDSTATUSCODES and
CHUNKING, accepts every MAIL/RCPT, takes message data by DATA or BDAT, and
throws it away.  All replies to the commands found in one read are written
together, as a pipelining server does.

After every message it writes ``mesg=<count> bdat=<count>`` to stdout
(flushed within 50 ms; ``mesg=`` as ``smtp-sink -c`` writes it), so the
runner can check that every message arrived and how it was sent.

Pure Python: its throughput is far below smtp-sink's, so use it for round
trips and client CPU, not for msg/s.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

END_OF_DATA = b"\r\n.\r\n"


class Counter:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.messages = 0
        self.bdat = 0  # of which sent with BDAT
        self.loop = loop
        self.dirty = False

    def add(self, bdat: bool) -> None:
        self.messages += 1
        self.bdat += bdat
        if not self.dirty:
            self.dirty = True
            self.loop.call_later(0.05, self.flush)

    def flush(self) -> None:
        self.dirty = False
        sys.stdout.write(f"mesg={self.messages} bdat={self.bdat}\n")
        sys.stdout.flush()


class Session(asyncio.Protocol):
    def __init__(self, counter: Counter, chunking: bool) -> None:
        self.counter = counter
        self.chunking = chunking
        self.buffer = b""
        self.mode = "command"  # or "data" (until CRLF.CRLF) or "bdat"
        self.tail = b""  # last bytes of DATA content seen, to find CRLF.CRLF
        self.bdatLeft = 0
        self.bdatLast = False
        self.rcpts = 0
        self.replies: list[bytes] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        transport.write(b"220 pysink ESMTP\r\n")  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer and not self.transport.is_closing():
            if self.mode == "data":
                if not self._data():
                    break
            elif self.mode == "bdat":
                if not self._bdat():
                    break
            else:
                end = self.buffer.find(b"\r\n")
                if end < 0:
                    break
                line, self.buffer = self.buffer[:end], self.buffer[end + 2 :]
                self._command(line)
        if self.replies:
            self.transport.write(b"".join(self.replies))
            self.replies.clear()

    def _data(self) -> bool:
        seen = self.tail + self.buffer
        end = seen.find(END_OF_DATA)
        if end < 0:
            self.tail = seen[-4:]
            self.buffer = b""
            return False
        self.buffer = seen[end + len(END_OF_DATA) :]
        self.tail = b""
        self.mode = "command"
        self._delivered("250 2.0.0 Ok: queued", bdat=False)
        return True

    def _bdat(self) -> bool:
        take = min(self.bdatLeft, len(self.buffer))
        self.buffer = self.buffer[take:]
        self.bdatLeft -= take
        if self.bdatLeft:
            return False
        self.mode = "command"
        if self.bdatLast:
            self._delivered("250 2.0.0 Ok: queued", bdat=True)
        else:
            self.replies.append(b"250 2.0.0 Ok: chunk received\r\n")
        return True

    def _delivered(self, reply: str, bdat: bool) -> None:
        self.rcpts = 0
        self.counter.add(bdat)
        self.replies.append(reply.encode() + b"\r\n")

    def _command(self, line: bytes) -> None:
        verb = line[:4].upper()
        out = self.replies.append
        if verb == b"EHLO":
            caps = [b"pysink", b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES"]
            if self.chunking:
                caps.append(b"CHUNKING")
            out(
                b"".join(b"250-" + c + b"\r\n" for c in caps[:-1])
                + b"250 "
                + caps[-1]
                + b"\r\n"
            )
        elif verb == b"HELO":
            out(b"250 pysink\r\n")
        elif verb == b"MAIL":
            self.rcpts = 0
            out(b"250 2.1.0 Ok\r\n")
        elif verb == b"RCPT":
            self.rcpts += 1
            out(b"250 2.1.5 Ok\r\n")
        elif verb == b"DATA":
            if self.rcpts:
                self.mode = "data"
                self.tail = b"\r\n"  # the data may be just ".\r\n"
                out(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            else:
                out(b"503 5.5.1 Error: need RCPT command\r\n")
        elif verb == b"BDAT" and self.chunking:
            parts = line.split()
            try:
                self.bdatLeft = int(parts[1])
            except (IndexError, ValueError):
                out(b"501 5.5.4 Syntax: BDAT size [LAST]\r\n")
                return
            self.bdatLast = len(parts) > 2 and parts[2].upper() == b"LAST"
            self.mode = "bdat"
        elif verb == b"RSET":
            self.rcpts = 0
            out(b"250 2.0.0 Ok\r\n")
        elif verb == b"NOOP":
            out(b"250 2.0.0 Ok\r\n")
        elif verb == b"QUIT":
            out(b"221 2.0.0 Bye\r\n")
            self.transport.write(b"".join(self.replies))
            self.replies.clear()
            self.transport.close()
        else:
            out(b"502 5.5.2 Error: command not recognized\r\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("port", type=int)
    p.add_argument("--no-chunking", action="store_true")
    a = p.parse_args(argv)
    loop = asyncio.new_event_loop()
    counter = Counter(loop)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: Session(counter, not a.no_chunking),
            "127.0.0.1",
            a.port,
            backlog=512,
        )
    )
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    server.close()
    counter.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
