"""
A loopback TCP proxy that adds latency and counts server round trips.

    python proxy.py UPSTREAM_PORT [--delay-ms 20]

Listens on a free port of 127.0.0.1, prints ``PORT <n>`` and forwards each
connection to 127.0.0.1:UPSTREAM_PORT.  On SIGTERM or SIGINT it prints one
JSON line of totals and exits.

Latency: every server-to-client chunk is handed to the client ``delay`` after
it arrived, in order, and the upstream connection is opened ``delay`` after
the client connected (the TCP handshake's round trip).  Client-to-server data
goes through at once.  So each time the client waits for the server costs one
``delay``, as on a link with that round-trip time.

Round trips: a *reply burst* is a run of server-to-client data delivered with
no client-to-server data received in between, i.e. one time the client had
to wait for the server.  The greeting is the first burst of a connection.
A client that pipelines MAIL, RCPT and DATA and then waits gets one burst for
their three replies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from collections import deque

HOST = "127.0.0.1"


class Totals:
    def __init__(self) -> None:
        self.connections = 0
        self.bursts = 0
        self.c2s_bytes = 0
        self.s2c_bytes = 0
        self.upstream_errors = 0


class _Upstream(asyncio.Protocol):
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn.upstreamReady(transport)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.conn.fromServer(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn.fromServer(None)

    def pause_writing(self) -> None:
        self.conn.client.pause_reading()

    def resume_writing(self) -> None:
        self.conn.client.resume_reading()


class Connection(asyncio.Protocol):
    """The client side of one proxied connection."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        upstreamPort: int,
        delay: float,
        totals: Totals,
    ) -> None:
        self.loop = loop
        self.upstreamPort = upstreamPort
        self.delay = delay
        self.totals = totals
        self.client: asyncio.Transport
        self.server: asyncio.Transport | None = None
        self.early: list[bytes] = []
        self.clientSpoke = True  # so the greeting starts the first burst
        self.pending: deque[tuple[float, bytes | None]] = deque()
        self.timer: asyncio.TimerHandle | None = None
        self.closed = False

    # client side
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.client = transport  # type: ignore[assignment]
        self.totals.connections += 1
        self.loop.call_later(self.delay, self._connectUpstream)

    def _connectUpstream(self) -> None:
        if self.closed:
            return
        task = self.loop.create_task(
            self.loop.create_connection(
                lambda: _Upstream(self), HOST, self.upstreamPort
            )
        )

        def failed(t: asyncio.Task) -> None:
            if t.cancelled() or t.exception() is not None:
                self.totals.upstream_errors += 1
                self.client.close()

        task.add_done_callback(failed)

    def upstreamReady(self, transport: asyncio.Transport) -> None:
        if self.closed:
            transport.close()
            return
        self.server = transport
        for data in self.early:
            transport.write(data)
        self.early.clear()

    def data_received(self, data: bytes) -> None:
        self.totals.c2s_bytes += len(data)
        self.clientSpoke = True
        if self.server is None:
            self.early.append(data)
        else:
            self.server.write(data)

    def eof_received(self) -> bool:
        if self.server is not None and self.server.can_write_eof():
            self.server.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.server is not None:
            self.server.close()

    def pause_writing(self) -> None:
        if self.server is not None:
            self.server.pause_reading()

    def resume_writing(self) -> None:
        if self.server is not None:
            self.server.resume_reading()

    # server side; None means the server closed
    def fromServer(self, data: bytes | None) -> None:
        if data is not None:
            self.totals.s2c_bytes += len(data)
        self.pending.append((self.loop.time() + self.delay, data))
        if self.timer is None:
            self._schedule()

    def _schedule(self) -> None:
        self.timer = self.loop.call_at(self.pending[0][0], self._deliver)

    def _deliver(self) -> None:
        self.timer = None
        now = self.loop.time()  # asyncio may run a timer a little early
        while self.pending and self.pending[0][0] <= now + 0.0005:
            _, data = self.pending.popleft()
            if data is None:
                self.client.close()
                continue
            if self.clientSpoke:
                self.totals.bursts += 1
                self.clientSpoke = False
            if not self.client.is_closing():
                self.client.write(data)
        if self.pending:
            self._schedule()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("upstream_port", type=int)
    p.add_argument("--delay-ms", type=float, default=20.0)
    a = p.parse_args(argv)

    loop = asyncio.new_event_loop()
    totals = Totals()
    delay = a.delay_ms / 1000.0
    server = loop.run_until_complete(
        loop.create_server(
            lambda: Connection(loop, a.upstream_port, delay, totals),
            HOST,
            0,
            backlog=512,
        )
    )
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    server.close()
    print(json.dumps(vars(totals)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
