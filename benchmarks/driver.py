"""
One benchmark client run, in its own process.

    python driver.py CLIENT --port P --n N --rcpts R --conc C --msg FILE

CLIENT is one of: smtplib, aiosmtplib, twisted-sendmail, twisted-reuse,
mailclient, mailer (the Mailer pool).  The client sends N messages in total
over C connections to 127.0.0.1:P, each message from ``sender@bench.example``
to R recipients.
FILE holds the message with CRLF line ends and no line starting with ".";
clients that convert LF to CRLF themselves (stock Twisted) get the LF form.

Only the send phase is timed (``perf_counter`` and ``getrusage`` of this
process, all threads), so interpreter start-up and imports do not count.  The
last line on stdout is one JSON object::

    {"client", "sent", "failed", "error", "wall_s", "cpu_s", "cpu_user_s",
     "cpu_sys_s", "vmhwm_kib", "version"}

``vmhwm_kib`` is this process's peak resident set (VmHWM from
/proc/self/status): a new address space starts with exec, so unlike
``ru_maxrss`` it does not inherit the parent's high-water mark.

Exit status: 0 when every message was accepted, 1 otherwise, 2 when the
library cannot be imported (the runner reports the row as an error and goes
on).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
import traceback

SENDER = "sender@bench.example"
HELO = "bench.local"
HOST = "127.0.0.1"


def recipients(count: int) -> list[str]:
    return [f"rcpt{i}@bench.example" for i in range(count)]


def shares(n: int, conc: int) -> list[int]:
    """
    Split C{n} messages over C{conc} connections as evenly as possible.
    """
    conc = max(1, min(conc, n))
    base, extra = divmod(n, conc)
    return [base + (1 if i < extra else 0) for i in range(conc)]


class Tally:
    def __init__(self) -> None:
        self.sent = 0
        self.failed = 0
        self.error: str | None = None

    def ok(self, count: int = 1) -> None:
        self.sent += count

    def fail(self, why: object, count: int = 1) -> None:
        self.failed += count
        if self.error is None:
            self.error = why if isinstance(why, str) else repr(why)


# -- smtplib ------------------------------------------------------------------


def run_smtplib(a: argparse.Namespace, crlf: bytes, lf: bytes, tally: Tally) -> str:
    import smtplib
    import threading

    rcpts = recipients(a.rcpts)
    lock = threading.Lock()

    def session(count: int) -> None:
        done = 0
        try:
            with smtplib.SMTP(HOST, a.port, local_hostname=HELO) as s:
                for _ in range(count):
                    s.sendmail(SENDER, rcpts, crlf)
                    done += 1
            with lock:
                tally.ok(done)
        except Exception as e:
            with lock:
                tally.ok(done)
                tally.fail(e, count - done)

    parts = shares(a.n, a.conc)
    if len(parts) == 1:
        session(parts[0])
    else:
        threads = [threading.Thread(target=session, args=(p,)) for p in parts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return "python " + sys.version.split()[0]


# -- aiosmtplib ---------------------------------------------------------------


def run_aiosmtplib(a: argparse.Namespace, crlf: bytes, lf: bytes, tally: Tally) -> str:
    import asyncio

    import aiosmtplib

    rcpts = recipients(a.rcpts)

    async def session(count: int) -> None:
        done = 0
        try:
            smtp = aiosmtplib.SMTP(
                hostname=HOST,
                port=a.port,
                local_hostname=HELO,
                use_tls=False,
                start_tls=False,
                timeout=60,
            )
            await smtp.connect()
            for _ in range(count):
                await smtp.sendmail(SENDER, rcpts, crlf)
                done += 1
            await smtp.quit()
            tally.ok(done)
        except Exception as e:
            tally.ok(done)
            tally.fail(e, count - done)

    async def main() -> None:
        await asyncio.gather(*(session(p) for p in shares(a.n, a.conc)))

    asyncio.run(main())
    return "aiosmtplib " + aiosmtplib.__version__


# -- twisted.mail.smtp -------------------------------------------------------------


def run_twisted(a: argparse.Namespace, crlf: bytes, lf: bytes, tally: Tally) -> str:
    """
    Stock C{twisted.mail.smtp}.

    C{twisted-sendmail}: one L{ESMTPSenderFactory} (what C{sendmail()} uses)
    per message, so one connection per message, C{conc} of them in flight.
    Timed until every connection has closed (after QUIT).

    C{twisted-reuse}: C{conc} connections, each an L{ESMTPSender} that takes
    its next message from a counter (the stock C{SMTPClient} loop: RSET,
    MAIL, RCPT..., DATA per message).  Stock Twisted wants LF line ends and
    makes CRLF itself, so it gets the LF form of the message.
    """
    from io import BytesIO

    import twisted
    from twisted.internet import defer, reactor
    from twisted.mail import smtp

    rcpts = recipients(a.rcpts)

    def factory_args(done: defer.Deferred) -> dict:
        return dict(
            username=None,
            password=None,
            fromEmail=SENDER,
            toEmail=rcpts,
            file=BytesIO(lf),
            deferred=done,
            retries=0,
            contextFactory=None,
            heloFallback=True,
            requireAuthentication=False,
            requireTransportSecurity=False,
        )

    class ClosingFactory(smtp.ESMTPSenderFactory):
        """Stock factory; also tells when its connection has closed."""

        closed: defer.Deferred

        def clientConnectionLost(self, connector, err):
            super().clientConnectionLost(connector, err)
            if not self.closed.called:
                self.closed.callback(None)

        def clientConnectionFailed(self, connector, err):
            super().clientConnectionFailed(connector, err)
            if not self.closed.called:
                self.closed.callback(None)

    class ReuseSender(smtp.ESMTPSender):
        def getMailFrom(self):
            if self.factory.left <= 0:
                self.factory.sendFinished = True  # no error at close
                return None
            self.factory.left -= 1
            return SENDER

        def getMailData(self):
            return BytesIO(lf)

        def sentMail(self, code, resp, numOk, addresses, log):
            if code in smtp.SUCCESS:
                tally.ok()
            else:
                tally.fail(f"{code} {resp!r}")

    class ReuseFactory(ClosingFactory):
        protocol = ReuseSender

    def one_message() -> defer.Deferred:
        done: defer.Deferred = defer.Deferred()
        done.addCallbacks(lambda _: tally.ok(), lambda f: tally.fail(f.value))
        f = ClosingFactory(**factory_args(done))
        f.domain = HELO
        f.closed = defer.Deferred()
        reactor.connectTCP(HOST, a.port, f)
        return f.closed

    def per_message() -> defer.Deferred:
        left = [a.n]
        finished: defer.Deferred = defer.Deferred()
        active = [0]

        def launch() -> None:
            while left[0] > 0 and active[0] < a.conc:
                left[0] -= 1
                active[0] += 1
                one_message().addBoth(closed)

        def closed(_) -> None:
            active[0] -= 1
            if left[0] > 0:
                launch()
            elif active[0] == 0:
                finished.callback(None)

        launch()
        return finished

    def reuse() -> defer.Deferred:
        ds = []
        for count in shares(a.n, a.conc):
            done: defer.Deferred = defer.Deferred()
            done.addErrback(lambda f: tally.fail(f.value, 0))
            f = ReuseFactory(**factory_args(done))
            f.domain = HELO
            f.left = count
            f.closed = defer.Deferred()
            reactor.connectTCP(HOST, a.port, f)
            ds.append(f.closed)
        return defer.DeferredList(ds)

    start = per_message if a.client == "twisted-sendmail" else reuse

    def go() -> None:
        d = start()
        d.addErrback(lambda f: tally.fail(f.value, 0))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    if a.client == "twisted-reuse":
        missing = a.n - tally.sent - tally.failed
        if missing > 0:
            tally.fail("connection ended early", missing)
    return "twisted " + twisted.__version__


# -- mailclient ---------------------------------------------------------------------


def run_mailclient(a: argparse.Namespace, crlf: bytes, lf: bytes, tally: Tally) -> str:
    """
    C{conc} connections, each one L{mailclient.ESMTPClient}; every
    connection queues its whole share of the messages at once (so the
    client may pipeline) and then asks for QUIT.
    """
    from twisted.internet import defer, reactor
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

    import mailclient
    from mailclient import ESMTPClient

    rcpts = recipients(a.rcpts)

    @defer.inlineCallbacks
    def session(count: int):
        client = ESMTPClient(clock=reactor, tls="none", heloName=HELO)
        endpoint = TCP4ClientEndpoint(reactor, HOST, a.port, timeout=30)
        try:
            yield connectProtocol(endpoint, client)
        except Exception as e:
            tally.fail(e, count)
            return
        sends = [client.send(SENDER, rcpts, crlf) for _ in range(count)]
        for d in sends:
            d.addCallbacks(lambda _: tally.ok(), lambda f: tally.fail(f.value))
        quitting = client.quit()
        yield defer.DeferredList(sends)
        try:
            yield quitting
        except Exception as e:
            tally.fail(f"QUIT: {e!r}", 0)

    def go() -> None:
        d = defer.DeferredList([session(c) for c in shares(a.n, a.conc)])
        d.addErrback(lambda f: tally.fail(f.value, 0))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    return "mailclient " + getattr(mailclient, "__version__", "?")


def run_mailer(a: argparse.Namespace, crlf: bytes, lf: bytes, tally: Tally) -> str:
    """
    One L{mailclient.Mailer} with C{maxConnections=conc} and no retries:
    all N sends are issued at once (the mailer queues them and spreads them
    over its connections), then C{stopService} drains and QUITs.  Timed
    until every connection has closed.
    """
    from twisted.internet import defer, reactor

    import mailclient
    from mailclient import Mailer

    rcpts = recipients(a.rcpts)

    @defer.inlineCallbacks
    def session():
        m = Mailer(
            HOST,
            port=a.port,
            tls="none",
            heloName=HELO,
            reactor=reactor,
            maxConnections=a.conc,
            retries=0,
            maxQueued=max(10000, a.n),
        )
        sends = [m.send(SENDER, rcpts, crlf) for _ in range(a.n)]
        for d in sends:
            d.addCallbacks(lambda _: tally.ok(), lambda f: tally.fail(f.value))
        yield defer.DeferredList(sends)
        try:
            yield m.stopService()
        except Exception as e:
            tally.fail(f"stopService: {e!r}", 0)
        stats = m.stats
        if stats.messagesSent != tally.sent or stats.messagesFailed != tally.failed:
            tally.fail(f"stats disagree with the results: {stats!r}", 0)

    def go() -> None:
        d = session()
        d.addErrback(lambda f: tally.fail(f.value, 0))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    return "mailclient " + getattr(mailclient, "__version__", "?")


RUNNERS = {
    "smtplib": run_smtplib,
    "aiosmtplib": run_aiosmtplib,
    "twisted-sendmail": run_twisted,
    "twisted-reuse": run_twisted,
    "mailclient": run_mailclient,
    "mailer": run_mailer,
}

IMPORTS = {
    "aiosmtplib": "aiosmtplib",
    "twisted-sendmail": "twisted.mail.smtp",
    "twisted-reuse": "twisted.mail.smtp",
    "mailclient": "mailclient",
    "mailer": "mailclient:Mailer",  # a commit without the Mailer: an error row
}


def vmhwm_kib() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def emit(out: dict) -> None:
    print(json.dumps(out), flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("client", choices=sorted(RUNNERS))
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--rcpts", type=int, default=1)
    p.add_argument("--conc", type=int, default=1)
    p.add_argument("--msg", required=True, help="message file, CRLF line ends")
    a = p.parse_args(argv)

    with open(a.msg, "rb") as f:
        crlf = f.read()
    lf = crlf.replace(b"\r\n", b"\n")

    module = IMPORTS.get(a.client)
    if module:
        name, _, attr = module.partition(":")
        try:
            getattr(__import__(name), attr) if attr else __import__(name)
        except Exception as e:
            emit({"client": a.client, "error": f"import {module} failed: {e!r}"})
            return 2

    tally = Tally()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    try:
        version = RUNNERS[a.client](a, crlf, lf, tally)
    except Exception as e:
        traceback.print_exc()
        version = None
        tally.fail(e, max(0, a.n - tally.sent - tally.failed))
    wall = time.perf_counter() - t0
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = ru1.ru_utime - ru0.ru_utime, ru1.ru_stime - ru0.ru_stime
    emit(
        {
            "client": a.client,
            "sent": tally.sent,
            "failed": tally.failed,
            "error": tally.error,
            "wall_s": wall,
            "cpu_s": user + system,
            "cpu_user_s": user,
            "cpu_sys_s": system,
            "vmhwm_kib": vmhwm_kib(),
            "version": version,
        }
    )
    return 0 if tally.sent == a.n and tally.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
