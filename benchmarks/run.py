"""
Side-by-side SMTP client benchmark: mailclient (ESMTPClient per connection,
and the Mailer pool) against smtplib, aiosmtplib, stock twisted.mail.smtp and
Postfix smtp-source, into Postfix smtp-sink on 127.0.0.1.

    .venv/bin/python benchmarks/run.py            # full run, results.md + README table
    .venv/bin/python benchmarks/run.py --quick    # smoke run, results-quick.md
    .venv/bin/python benchmarks/run.py \
        --clients mailer,mailclient,smtplib-reuse,smtp-source-reuse

Phase 1 (throughput): every client, one process per run, over body size x
recipients x connections, repetitions interleaved; medians of msg/s, client
CPU per message and peak RSS.  Phase 2 (round trips): C=1 through proxy.py
(adds a delay to every server reply, counts reply bursts); RT/msg is the slope
between a long and a short run.  Phase 3 (CHUNKING): phase 2 again against
sink.py, which offers CHUNKING, for the BDAT path.  See README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOST = "127.0.0.1"
SENDER = "sender@bench.example"
SMTP_SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
SMTP_SOURCE = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
# Peak RSS: GNU time's %M is the client's own ru_maxrss, taken in a tiny
# parent.  wait4() in this runner would not do: Linux carries the forking
# parent's RSS high-water mark into the child's ru_maxrss across exec.
GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None
TASKSET = shutil.which("taskset")
REFERENCE = "smtp-source-reuse"
SINK_BOUND = 0.85
KIB, MIB = 1024, 1024 * 1024
README_BEGIN = "<!-- results:begin (written by run.py) -->"
README_END = "<!-- results:end -->"


@dataclass(frozen=True)
class Client:
    name: str
    label: str
    conn: str  # "reuse" or "per-msg"
    native: bool = False  # smtp-source: timed from outside

    def argv(
        self, port: int, n: int, rcpts: int, conc: int, msg: dict[str, str]
    ) -> list[str]:
        if self.native:
            reuse = ["-d"] if self.conn == "reuse" else []
            return [
                SMTP_SOURCE,
                "-s",
                str(conc),
                "-m",
                str(n),
                "-r",
                str(rcpts),
                "-F",
                msg["lf"],
                "-f",
                SENDER,
                "-t",
                "rcpt@bench.example",
                "-M",
                "bench.local",
                *reuse,
                f"{HOST}:{port}",
            ]
        driver = {"smtplib-reuse": "smtplib", "aiosmtplib-reuse": "aiosmtplib"}.get(
            self.name, self.name
        )
        return [
            sys.executable,
            os.path.join(HERE, "driver.py"),
            driver,
            "--port",
            str(port),
            "--n",
            str(n),
            "--rcpts",
            str(rcpts),
            "--conc",
            str(conc),
            "--msg",
            msg["crlf"],
        ]


CLIENTS = [
    Client("smtp-source-reuse", "Postfix smtp-source -d", "reuse", native=True),
    Client("smtp-source", "Postfix smtp-source (conn/msg)", "per-msg", native=True),
    Client("smtplib-reuse", "smtplib (reuse)", "reuse"),
    Client("aiosmtplib-reuse", "aiosmtplib (reuse)", "reuse"),
    Client("twisted-sendmail", "twisted ESMTPSenderFactory (conn/msg)", "per-msg"),
    Client("twisted-reuse", "twisted ESMTPSender (reuse)", "reuse"),
    Client("mailclient", "**mailclient** (reuse)", "reuse"),
    Client("mailer", "**mailclient Mailer** (pool)", "reuse"),
]
BY_NAME = {c.name: c for c in CLIENTS}
# Clients run against the CHUNKING sink (phase 3).
CHUNKING_CLIENTS = ["smtp-source-reuse", "smtplib-reuse", "mailclient", "mailer"]
# Clients that import mailclient (--mailclient-path applies to them).
MAILCLIENT_CLIENTS = ("mailclient", "mailer")


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- helpers ------------------------------------------------------------------


def make_message(size: int) -> bytes:
    """
    Headers plus a body of exactly C{size} octets: CRLF line ends, lines of
    78 characters (the last one up to 80), no line starting with ".", the
    same bytes every run.
    """
    rng = random.Random(size)
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789    "
    headers = (
        "From: Bench <sender@bench.example>\r\n"
        "To: rcpt0@bench.example\r\n"
        f"Subject: benchmark message, {size}-octet body\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n"
        f"Message-ID: <bench-{size}@bench.example>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        "\r\n"
    )
    pool = [("B" + "".join(rng.choice(alphabet) for _ in range(77))) for _ in range(64)]
    lines, left, i = [], size, 0
    while left >= 80 + 3 or left == 80:
        lines.append(pool[i % len(pool)])
        left -= 80
        i += 1
    if left >= 2:
        lines.append("E" * (left - 2) if left > 2 else "")
    elif left == 1:  # a CRLF line cannot be 1 octet: lengthen the previous one
        lines[-1] += "x"
    body = "".join(line + "\r\n" for line in lines)
    assert len(body) == size, (len(body), size)
    return headers.encode() + body.encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_listening(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port}")


def proc_cpu(pid: int) -> float | None:
    """CPU seconds a live process used so far (/proc/PID/schedstat)."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[0]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return ([TASKSET, "-c", str(cpu)] if cpu is not None else []) + cmd


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values):
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return 50.0 * (max(values) - min(values)) / m if m else None


def fmt(x, digits: int | None = None) -> str:
    if x is None:
        return "-"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2
    return f"{x:,.{digits}f}"


def size_name(size: int) -> str:
    if size % MIB == 0:
        return f"{size // MIB} MiB"
    if size % KIB == 0:
        return f"{size // KIB} KiB"
    return f"{size} B"


def short_error(text: str | None, limit: int = 140) -> str:
    text = " ".join((text or "failed").split())
    return text if len(text) <= limit else text[: limit - 1] + "..."


# -- sinks and proxy ----------------------------------------------------------


class Sink:
    """
    The server: Postfix smtp-sink (C{"smtp-sink"}) or sink.py with CHUNKING
    (C{"pysink"}).  Both print a C{mesg=<count>} counter.
    """

    def __init__(self, kind: str, workdir: str, cpu: int | None) -> None:
        self.kind = kind
        self.port = free_port()
        self.outPath = os.path.join(workdir, f"{kind}.out")
        if kind == "smtp-sink":
            user = ["-u", "nobody"] if os.geteuid() == 0 else []
            cmd = [SMTP_SINK, "-c", *user, f"{HOST}:{self.port}", "256"]
        else:
            cmd = [sys.executable, os.path.join(HERE, "sink.py"), str(self.port)]
        self.cmd = pinned(cmd, cpu)
        self.out = open(self.outPath, "wb")
        self.proc = subprocess.Popen(
            self.cmd,
            stdout=self.out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        wait_listening(self.port)
        self.ehlo = self._ehlo()

    def _ehlo(self) -> str:
        import smtplib

        with smtplib.SMTP(
            HOST, self.port, local_hostname="probe.local", timeout=5
        ) as s:
            code, text = s.ehlo()
        return f"{code} " + text.decode(errors="replace").replace("\n", " | ")

    def count(self, what: bytes = b"mesg") -> int:
        """The sink's message counter (C{what=b"bdat"}: messages sent by BDAT)."""
        with open(self.outPath, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 400))
            found = re.findall(what + rb"=(\d+)", f.read())
        return int(found[-1]) if found else 0

    def waitCount(self, expected: int, timeout: float = 3.0) -> int:
        end = time.monotonic() + timeout
        while True:
            n = self.count()
            if n >= expected or time.monotonic() > end:
                return n
            time.sleep(0.01)

    def cpu(self) -> float | None:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


class Proxy:
    def __init__(self, upstream: int, delayMs: float, cpu: int | None) -> None:
        self.cmd = pinned(
            [
                sys.executable,
                os.path.join(HERE, "proxy.py"),
                str(upstream),
                "--delay-ms",
                str(delayMs),
            ],
            cpu,
        )
        self.proc = subprocess.Popen(
            self.cmd, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        line = self.proc.stdout.readline()
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"proxy did not start: {line!r}")
        self.port = int(line.split()[1])

    def stop(self) -> dict:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=10)
        return json.loads(out.strip().splitlines()[-1])


# -- running one client -------------------------------------------------------


class Runner:
    def __init__(self, a: argparse.Namespace) -> None:
        self.a = a
        self.work = tempfile.mkdtemp(prefix="mailclient-bench-")
        self.clientCpu = None if a.no_pin else 1
        self.sinkCpu = None if a.no_pin else 0
        self.messages: dict[int, dict[str, str]] = {}
        for size in sorted(set(a.sizes) | {KIB}):
            data = make_message(size)
            paths = {
                "crlf": os.path.join(self.work, f"msg-{size}.eml"),
                "lf": os.path.join(self.work, f"msg-{size}.lf.eml"),
            }
            with open(paths["crlf"], "wb") as f:
                f.write(data)
            with open(paths["lf"], "wb") as f:  # for smtp-source, which adds the CRs
                f.write(data.replace(b"\r\n", b"\n"))
            self.messages[size] = paths
        self.broken: dict[str, str] = {}  # client -> error that stops all its runs
        self.seq = 0

    def run(
        self, c: Client, sink: Sink, port: int, n: int, rcpts: int, conc: int, size: int
    ) -> dict:
        """Run one client process; never raises."""
        rec = {
            "client": c.name,
            "size": size,
            "rcpts": rcpts,
            "conc": conc,
            "n": n,
            "sink": sink.kind,
            "ok": False,
        }
        if c.name in self.broken:
            rec["error"] = self.broken[c.name]
            return rec
        try:
            self._run(c, sink, port, n, rcpts, conc, size, rec)
        except Exception as e:
            rec["error"] = f"runner: {e!r}"
        return rec

    def _run(self, c, sink, port, n, rcpts, conc, size, rec) -> None:
        self.seq += 1
        base = os.path.join(self.work, f"run{self.seq}")
        cmd = c.argv(port, n, rcpts, conc, self.messages[size])
        full = cmd
        if GNU_TIME:
            full = [GNU_TIME, "-f", "%M", "-o", base + ".rss", "--", *full]
        full = pinned(full, self.clientCpu)
        rec["cmd"] = shlex.join(cmd)
        before, bdatBefore = sink.count(), sink.count(b"bdat")
        sinkCpu0 = sink.cpu()
        env = None
        if c.name in MAILCLIENT_CLIENTS and self.a.mailclient_path:
            env = dict(os.environ, PYTHONPATH=self.a.mailclient_path)
        with open(base + ".out", "wb") as so, open(base + ".err", "wb") as se:
            t0 = time.perf_counter()
            p = subprocess.Popen(
                full,
                stdout=so,
                stderr=se,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
            timedOut = threading.Event()

            def kill() -> None:
                timedOut.set()
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

            timer = threading.Timer(self.a.timeout, kill)
            timer.start()
            try:
                _, status, usage = os.wait4(p.pid, 0)
            finally:
                timer.cancel()
            outerWall = time.perf_counter() - t0
        p.returncode = code = os.waitstatus_to_exitcode(status)
        received = sink.waitCount(before + n, 0.2 if code else 3.0) - before
        sinkCpu1 = sink.cpu()
        rec.update(exit=code, sink_msgs=received, outer_wall_s=outerWall)
        with open("/proc/loadavg") as f:
            rec["load1"] = float(f.read().split()[0])
        if sink.kind == "pysink":
            rec["bdat_msgs"] = sink.count(b"bdat") - bdatBefore
        if sinkCpu0 is not None and sinkCpu1 is not None:
            rec["sink_cpu_s"] = sinkCpu1 - sinkCpu0
        try:
            with open(base + ".rss") as f:
                rec["rss_kib"] = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            pass
        report = {}
        with open(base + ".out", "rb") as f:
            lines = [
                ln
                for ln in f.read().decode(errors="replace").splitlines()
                if ln.startswith("{")
            ]
        if lines:
            try:
                report = json.loads(lines[-1])
            except ValueError:
                pass
        with open(base + ".err", "rb") as f:
            stderr = f.read().decode(errors="replace").strip().splitlines()
        if c.native:
            rec["wall_s"] = outerWall
            rec["cpu_s"] = usage.ru_utime + usage.ru_stime
            rec["cpu_sys_s"] = usage.ru_stime
        elif "wall_s" in report:
            rec["wall_s"] = report["wall_s"]
            rec["cpu_s"] = report["cpu_s"]
            rec["cpu_sys_s"] = report.get("cpu_sys_s")
            rec["version"] = report.get("version")
            if "rss_kib" not in rec and report.get("vmhwm_kib"):
                rec["rss_kib"] = report["vmhwm_kib"]
        if timedOut.is_set():
            rec["error"] = f"timed out after {self.a.timeout:g} s"
            self.broken[c.name] = rec["error"] + " (later runs skipped)"
        elif code == 2 and report.get("error"):
            rec["error"] = report["error"]
            self.broken[c.name] = report["error"]
        elif code != 0:
            rec["error"] = report.get("error") or (
                stderr[-1] if stderr else f"exit status {code}"
            )
        elif received != n:
            rec["error"] = f"the sink received {received} of {n} messages"
        else:
            rec["ok"] = True
            rec["msg_s"] = n / rec["wall_s"]
            rec["cpu_us"] = 1e6 * rec["cpu_s"] / n
            if "sink_cpu_s" in rec and rec["wall_s"] > 0:
                rec["sink_util"] = rec["sink_cpu_s"] / rec["wall_s"]
        if not rec["ok"] and stderr:
            rec["stderr_tail"] = stderr[-5:]


# -- phase 1: throughput ------------------------------------------------------


def nBounds(a, size: int, conc: int) -> tuple[int, int]:
    large = size >= 64 * KIB
    high = a.n_large if large else a.n_small
    low = min(high, max(conc, a.n_min // 4) if large else max(4 * conc, a.n_min))
    return low, high


def throughput(
    r: Runner, clients: list[Client], sink: Sink, cells: list[tuple]
) -> list[dict]:
    a = r.a
    nFor: dict[tuple, int] = {}
    if a.quick:
        log(f"throughput into {sink.kind}: --quick, no calibration, N = the minimum")
    else:
        pilots = len(cells) * len(clients)
        log(
            f"throughput into {sink.kind}: calibrating N ({pilots} pilot runs, "
            f"~{a.target_s:g} s per run)"
        )
    for size, rcpts, conc in cells:
        low, high = nBounds(a, size, conc)
        for c in clients:
            if a.quick:
                nFor[(c.name, size, rcpts, conc)] = low
                continue
            # A short pilot (it also warms caches up); when it was too short
            # to say much (connection set-up dominates), one longer pilot.
            n = min(high, max(low // 2, 2 * conc, 4 if size >= 64 * KIB else 16))
            nFor[(c.name, size, rcpts, conc)] = low
            for _ in range(2):
                rec = r.run(c, sink, sink.port, n, rcpts, conc, size)
                if not rec["ok"]:
                    where = f"{c.name} {size_name(size)} r={rcpts} C={conc}"
                    log(f"  pilot {where}: {short_error(rec.get('error'))}")
                    break
                rate = rec["msg_s"]
                nFor[(c.name, size, rcpts, conc)] = max(
                    low, min(high, int(rate * a.target_s))
                )
                if rec["wall_s"] >= 0.25 * a.target_s or n >= high:
                    break
                n = min(high, max(2 * n, int(rate * 0.5 * a.target_s)))
    runs = []
    total = a.reps * len(cells) * len(clients)
    log(f"throughput into {sink.kind}: {total} runs, {a.reps} interleaved repetitions")
    for rep in range(a.reps):
        k = rep % len(clients)
        order = clients[k:] + clients[:k]
        for size, rcpts, conc in cells:
            for c in order:
                n = nFor[(c.name, size, rcpts, conc)]
                rec = r.run(c, sink, sink.port, n, rcpts, conc, size)
                rec["rep"] = rep
                runs.append(rec)
                what = (
                    f"{rec['msg_s']:9.1f} msg/s"
                    if rec["ok"]
                    else "error: " + short_error(rec.get("error"), 80)
                )
                log(
                    f"  [{len(runs)}/{total}] {size_name(size):>6} r={rcpts:<2} "
                    f"C={conc:<2} {c.name:<18} N={n:<5} {what}"
                )
    return runs


def summarize(runs: list[dict]) -> dict[tuple, dict]:
    groups: dict[tuple, list[dict]] = {}
    for rec in runs:
        groups.setdefault(
            (rec["client"], rec["size"], rec["rcpts"], rec["conc"]), []
        ).append(rec)
    out = {}
    for key, recs in groups.items():
        good = [x for x in recs if x["ok"]]
        out[key] = {
            "n": recs[0]["n"],
            "runs": len(recs),
            "ok_runs": len(good),
            "msg_s": median([x["msg_s"] for x in good]),
            "msg_s_spread_pct": spread([x["msg_s"] for x in good]),
            "cpu_us": median([x["cpu_us"] for x in good]),
            "rss_mib": median([x["rss_kib"] / 1024 for x in good if "rss_kib" in x]),
            "sink_util": median([x.get("sink_util") for x in good]),
            "errors": sorted(
                {short_error(x.get("error")) for x in recs if not x["ok"]}
            ),
        }
    # msg/s relative to a reference client, paired by repetition: the two
    # runs of one repetition are close in time, so the ratio of each pair
    # is less disturbed by other load on the machine than a ratio of medians.
    for (client, *cell), stats in out.items():
        for refName, field in (
            (REFERENCE, "xref"),
            ("smtplib-reuse", "x_smtplib"),
            ("mailclient", "x_mailclient"),
        ):
            mine = {x["rep"]: x for x in groups[(client, *cell)] if x["ok"]}
            ref = {x["rep"]: x for x in groups.get((refName, *cell), []) if x["ok"]}
            stats[field] = median(
                [mine[k]["msg_s"] / ref[k]["msg_s"] for k in mine if k in ref]
            )
    return out


# -- phases 2 and 3: round trips ----------------------------------------------


def roundTrips(r: Runner, clients: list[Client], sink: Sink) -> list[dict]:
    a = r.a
    long, short = a.rt_n
    rows = []
    log(
        f"round trips via proxy.py, +{a.delay_ms:g} ms per reply, C=1, 1 KiB, "
        f"{long} and {short} messages, sink {sink.kind}"
    )
    for rcpts in (1, 10):
        for c in clients:
            row: dict = {
                "client": c.name,
                "rcpts": rcpts,
                "sink": sink.kind,
                "delay_ms": a.delay_ms,
            }
            for label, n in (("long", long), ("short", short)):
                try:
                    proxy = Proxy(sink.port, a.delay_ms, r.sinkCpu)
                except Exception as e:
                    row[label] = {"ok": False, "error": f"proxy: {e!r}"}
                    continue
                try:
                    rec = r.run(c, sink, proxy.port, n, rcpts, 1, KIB)
                finally:
                    try:
                        rec["proxy"] = proxy.stop()
                    except Exception as e:
                        rec["ok"], rec["error"] = False, f"proxy: {e!r}"
                row[label] = rec
            L, S = row["long"], row["short"]
            if L.get("ok") and S.get("ok"):
                dn = L["n"] - S["n"]
                pl, ps = L["proxy"], S["proxy"]
                row["rt_per_msg"] = (pl["bursts"] - ps["bursts"]) / dn
                row["conn_per_msg"] = (pl["connections"] - ps["connections"]) / dn
                row["setup_rt"] = pl["bursts"] - row["rt_per_msg"] * L["n"]
                row["c2s_bytes_per_msg"] = (pl["c2s_bytes"] - ps["c2s_bytes"]) / dn
                row["session_msg_s"] = L["msg_s"]
                if "bdat_msgs" in L:
                    row["bdat_share"] = L["bdat_msgs"] / L["n"]
                dt = L["wall_s"] - S["wall_s"]
                row["steady_msg_s"] = dn / dt if dt > 0 else None
                log(
                    f"  r={rcpts:<2} {c.name:<18} RT/msg {row['rt_per_msg']:.2f}  "
                    f"setup {row['setup_rt']:.1f}  {row['session_msg_s']:.1f} msg/s "
                    f"({fmt(row['steady_msg_s'])} steady)"
                )
            else:
                row["error"] = L.get("error") or S.get("error") or "failed"
                log(
                    f"  r={rcpts:<2} {c.name:<18} error: "
                    + short_error(row["error"], 90)
                )
            rows.append(row)
    return rows


@dataclass
class Results:
    runs: list  # phase 1, smtp-sink
    rt: list  # phase 2, smtp-sink through the proxy
    runsChunk: list  # phase 3, sink.py with CHUNKING
    rtChunk: list

    def __post_init__(self) -> None:
        self.summary = summarize(self.runs)
        self.summaryChunk = summarize(self.runsChunk)


# -- targets ------------------------------------------------------------------


def targets(a, res: Results) -> list[dict]:
    """Each target: what, measured figures, met (True/False/None = not measured)."""
    out = []
    summary, rt, rtChunk = res.summary, res.rt, res.rtChunk

    def cell(client, size, rcpts, conc, key="msg_s"):
        s = summary.get((client, size, rcpts, conc))
        return s[key] if s else None

    def rtrow(rows, client, rcpts):
        for row in rows:
            if (
                row["client"] == client
                and row["rcpts"] == rcpts
                and "rt_per_msg" in row
            ):
                return row
        return None

    def add(what, figures, met):
        out.append({"target": what, "figures": figures, "met": met})

    # 1, 2: round trips per message
    for label, rows, limit in (
        ("DATA (smtp-sink)", rt, 2),
        ("BDAT (sink.py, CHUNKING)", rtChunk, 1),
    ):
        mine = [rtrow(rows, "mailclient", r) for r in (1, 10)]
        ref = [rtrow(rows, "smtplib-reuse", r) for r in (1, 10)]
        figs = "; ".join(
            f"r={r}: mailclient {fmt(m['rt_per_msg'], 2) if m else '-'}"
            f" (smtplib {fmt(s['rt_per_msg'], 2) if s else '-'})"
            for r, m, s in zip((1, 10), mine, ref, strict=True)
        )
        met = (
            None
            if not all(mine)
            else all(m["rt_per_msg"] <= limit + 0.01 for m in mine)
        )
        add(
            f"RT/msg on a reused connection, {label}: "
            f"≤ {limit} for 1 and 10 recipients",
            figs,
            met,
        )

    def ratio(
        what, mine, ref, refName, minimum, paired=None, name="mailclient", most=False
    ):
        """C{most}: C{minimum} is a ceiling (CPU), not a floor (msg/s)."""
        if mine is None or ref is None or not ref:
            add(what, f"{name} {fmt(mine)}, {refName} {fmt(ref)}", None)
            return
        x = paired if paired is not None else mine / ref
        how = " (median of per-repetition ratios)" if paired is not None else ""
        add(
            what,
            f"{name} {fmt(mine)} / {refName} {fmt(ref)}: **{x:.2f}x**{how}",
            x <= minimum if most else x >= minimum,
        )

    ratio(
        "msg/s, 1 KiB, 1 rcpt, C=1 ≥ 1.0x smtp-source -d",
        cell("mailclient", KIB, 1, 1),
        cell(REFERENCE, KIB, 1, 1),
        "smtp-source -d",
        1.0,
        cell("mailclient", KIB, 1, 1, "xref"),
    )
    ratio(
        "msg/s, 1 KiB, 1 rcpt, C=16 ≥ 1.0x smtplib (reuse)",
        cell("mailclient", KIB, 1, 16),
        cell("smtplib-reuse", KIB, 1, 16),
        "smtplib",
        1.0,
        cell("mailclient", KIB, 1, 16, "x_smtplib"),
    )

    # CPU per message vs smtplib, every 1 KiB cell measured
    figs, verdicts = [], []
    for rcpts in a.rcpts:
        for conc in a.conc:
            m = cell("mailclient", KIB, rcpts, conc, "cpu_us")
            s = cell("smtplib-reuse", KIB, rcpts, conc, "cpu_us")
            if m is None or s is None:
                continue
            figs.append(f"r={rcpts} C={conc}: {fmt(m)} vs {fmt(s)} us")
            verdicts.append(m <= s)
    add(
        "client CPU/msg ≤ smtplib (reuse), 1 KiB cells",
        "; ".join(figs) or "not measured",
        all(verdicts) if verdicts else None,
    )

    figs, verdicts = [], []
    for rcpts in a.rcpts:
        for conc in a.conc:
            m = cell("mailclient", MIB, rcpts, conc, "cpu_us")
            if m is None:
                continue
            figs.append(f"r={rcpts} C={conc}: {fmt(m)} us")
            verdicts.append(m <= 1000)
    add(
        "1 MiB messages: client CPU ≤ 1 ms/msg (DATA, smtp-sink)",
        "; ".join(figs) or "not measured",
        all(verdicts) if verdicts else None,
    )
    s = res.summaryChunk.get(("mailclient", MIB, 1, 1))
    if s is not None or res.runsChunk:
        m = s["cpu_us"] if s else None
        add(
            "1 MiB messages: client CPU ≤ 1 ms/msg (BDAT, CHUNKING sink, r=1 C=1)",
            f"{fmt(m)} us" if m is not None else "not measured",
            None if m is None else m <= 1000,
        )

    for label, rows in (("DATA, smtp-sink", rt), ("BDAT, CHUNKING sink", rtChunk)):
        m, s = rtrow(rows, "mailclient", 1), rtrow(rows, REFERENCE, 1)
        ratio(
            f"+{a.delay_ms:g} ms per round trip, C=1, steady msg/s "
            f"≥ 3.5x smtp-source -d ({label})",
            m and m["steady_msg_s"],
            s and s["steady_msg_s"],
            "smtp-source -d",
            3.5,
        )

    # The pool (Mailer) against the single-connection client, same cells.
    for conc in (1, 16):
        ratio(
            f"Mailer msg/s ≥ 1.0x mailclient (single-connection client), "
            f"1 KiB, 1 rcpt, C={conc}",
            cell("mailer", KIB, 1, conc),
            cell("mailclient", KIB, 1, conc),
            "mailclient",
            1.0,
            cell("mailer", KIB, 1, conc, "x_mailclient"),
            name="Mailer",
        )
        ratio(
            f"Mailer client CPU/msg ≤ 1.0x mailclient, 1 KiB, 1 rcpt, C={conc}",
            cell("mailer", KIB, 1, conc, "cpu_us"),
            cell("mailclient", KIB, 1, conc, "cpu_us"),
            "mailclient",
            1.0,
            name="Mailer",
            most=True,
        )

    for name in MAILCLIENT_CLIENTS:
        errors = [
            e
            for sm in (summary, res.summaryChunk)
            for k, v in sm.items()
            if k[0] == name
            for e in v["errors"]
        ]
        errors += [
            row["error"]
            for row in rt + rtChunk
            if row["client"] == name and "error" in row
        ]
        if errors:
            for t in out:
                # mailclient's errors explain every unmeasured target (the
                # Mailer's are against it too), the Mailer's only its own.
                mailerTarget = t["target"].startswith("Mailer")
                if t["met"] is None and (name == "mailclient" or mailerTarget):
                    t["figures"] += f" ({name} error: {short_error(errors[0], 90)})"
    return out


# -- report -------------------------------------------------------------------


def mark(met) -> str:
    return {True: "✅ met", False: "❌ NOT met", None: "- not measured"}[met]


def labelOf(name: str) -> str:
    return BY_NAME[name].label


def throughputTable(
    a, summary, clients, size, rcpts, errors: dict[str, str]
) -> list[str]:
    L = []
    head = ["client"]
    for conc in a.conc:
        head += [f"msg/s C={conc}", "xref"]
    head += [f"CPU us/msg C={conc}" for conc in a.conc]
    head += [f"RSS MiB C={conc}" for conc in a.conc]
    L.append("| " + " | ".join(head) + " |")
    L.append("|---" + "|---:" * (len(head) - 1) + "|")
    for c in clients:
        cells = [labelOf(c.name)]
        failed = []
        for conc in a.conc:
            s = summary.get((c.name, size, rcpts, conc))
            if not s or s["msg_s"] is None:
                cells += ["error" if s else "-", "-"]
                if s and s["errors"]:
                    failed.append(f"C={conc}: {s['errors'][0]}")
                continue
            sp = s["msg_s_spread_pct"]
            bound = " ‡" if (s["sink_util"] or 0) >= SINK_BOUND else ""
            cells.append(
                fmt(s["msg_s"]) + (f" ±{sp:.0f}%" if sp is not None else "") + bound
            )
            cells.append(f"{s['xref']:.2f}" if s["xref"] is not None else "-")
        for key, digits in (("cpu_us", 0), ("rss_mib", 1)):
            for conc in a.conc:
                s = summary.get((c.name, size, rcpts, conc))
                cells.append(fmt(s[key], digits) if s and s[key] is not None else "-")
        if failed and all(x in ("error", "-") for x in cells[1::2][: len(a.conc)]):
            cells = [
                labelOf(c.name),
                "error: " + short_error("; ".join(failed), 90),
            ] + ["-"] * (len(head) - 2)
        L.append("| " + " | ".join(cells) + " |")
        if failed:
            errors[c.name] = "; ".join(failed)
    return L


def rtTable(a, rows: list[dict], clients: list[Client], sinkName: str) -> list[str]:
    L = []
    head = [
        "client",
        "sink",
        "RT/msg r=1",
        "RT/msg r=10",
        "setup RT/conn",
        f"msg/s @{a.delay_ms:g}ms r=1 session",
        "steady",
        "xref steady",
        f"msg/s @{a.delay_ms:g}ms r=10 steady",
        "c→s bytes/msg r=1",
    ]
    L.append("| " + " | ".join(head) + " |")
    L.append("|---|---" + "|---:" * (len(head) - 2) + "|")
    for c in clients:
        mine = {row["rcpts"]: row for row in rows if row["client"] == c.name}
        if not mine:
            continue
        r1, r10 = mine.get(1), mine.get(10)
        ref = next(
            (
                row
                for row in rows
                if row["client"] == REFERENCE
                and row["rcpts"] == 1
                and row.get("steady_msg_s")
            ),
            None,
        )
        if not r1 or "rt_per_msg" not in r1:
            err = (r1 or r10 or {}).get("error")
            L.append(
                "| "
                + " | ".join(
                    [labelOf(c.name), sinkName, "error: " + short_error(err, 90)]
                    + ["-"] * (len(head) - 3)
                )
                + " |"
            )
            continue
        ok10 = r10 is not None and "rt_per_msg" in r10
        perMsg = r1["conn_per_msg"] >= 0.5
        via = ""
        if "bdat_share" in r1:
            share = r1["bdat_share"]
            via = " (BDAT)" if share == 1 else " (DATA)" if share == 0 else " (mixed)"
        cells = [
            labelOf(c.name),
            sinkName + via,
            fmt(r1["rt_per_msg"], 2),
            fmt(r10["rt_per_msg"], 2) if ok10 else "error",
            "(per msg)" if perMsg else fmt(r1["setup_rt"], 1),
            fmt(r1["session_msg_s"], 1),
            fmt(r1["steady_msg_s"], 1),
            f"{r1['steady_msg_s'] / ref['steady_msg_s']:.2f}"
            if ref and r1["steady_msg_s"]
            else "-",
            fmt(r10["steady_msg_s"], 1) if ok10 else "-",
            fmt(r1["c2s_bytes_per_msg"], 0),
        ]
        L.append("| " + " | ".join(cells) + " |")
    return L


def chunkTable(a, summary, clients: list[Client]) -> list[str]:
    head = ["client"]
    for size in a.sizes:
        head += [f"msg/s {size_name(size)}", f"CPU us/msg {size_name(size)}"]
    L = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for c in clients:
        cells = [labelOf(c.name)]
        errs = []
        for size in a.sizes:
            s = summary.get((c.name, size, 1, 1))
            if not s or s["msg_s"] is None:
                cells += ["error" if s else "-", "-"]
                errs += s["errors"][:1] if s else []
                continue
            bound = " ‡" if (s["sink_util"] or 0) >= SINK_BOUND else ""
            cells += [fmt(s["msg_s"]) + bound, fmt(s["cpu_us"], 0)]
        if errs and all(x in ("error", "-") for x in cells[1:]):
            cells = [labelOf(c.name), "error: " + short_error(errs[0], 90)] + ["-"] * (
                len(head) - 2
            )
        L.append("| " + " | ".join(cells) + " |")
    return L


def summaryBlock(a, res: Results, tg, clients, meta) -> list[str]:
    """The part that also goes into README.md."""
    L = [
        f"Run of {meta['date']} ({meta['mode']} run, "
        f"{meta['duration_min']:.1f} min; mailclient "
        f"{meta['mailclient_rev']}). Medians of {a.reps} interleaved repetition(s); "
        "±% = half the min-max range; ‡ = the sink's CPU was ≥85% busy (sink-bound). "
        "xref = msg/s relative to Postfix `smtp-source -d`, median of the "
        "per-repetition ratios. Full tables: "
        f"[`{os.path.basename(a.out)}`]({os.path.basename(a.out)}).",
        "",
    ]
    if a.quick:
        L += [
            "*Quick run: small N, one repetition; a smoke test, not a measurement.*",
            "",
        ]
    errors: dict[str, str] = {}
    for size, title in (
        (KIB, "1 KiB messages, 1 recipient"),
        (MIB, "1 MiB messages, 1 recipient"),
    ):
        if size in a.sizes and 1 in a.rcpts and res.runs:
            L += [f"**{title}**, into Postfix smtp-sink on 127.0.0.1", ""]
            L += throughputTable(a, res.summary, clients, size, 1, errors)
            L.append("")
    if res.runsChunk:
        chunkClients = [c for c in clients if c.name in CHUNKING_CLIENTS]
        L += [
            "**C=1, 1 recipient, into `sink.py`** (offers CHUNKING; pure Python, "
            "so the sink is the bottleneck: compare CPU)",
            "",
        ]
        L += chunkTable(a, res.summaryChunk, chunkClients)
        L.append("")
    if res.rt or res.rtChunk:
        L.append(
            f"**Server round trips per message** (C=1, 1 KiB, +{a.delay_ms:g} ms "
            "per server reply via `proxy.py`; RT/msg = slope between "
            f"{a.rt_n[0]}- and {a.rt_n[1]}-message runs; *session* = the whole "
            f"{a.rt_n[0]}-message session incl. connect, greeting, EHLO and QUIT; "
            "*steady* = msg/s from the same slope)"
        )
        L.append("")
        table = rtTable(a, res.rt, clients, "smtp-sink")
        if res.rtChunk:
            chunkClients = [c for c in clients if c.name in CHUNKING_CLIENTS]
            table += rtTable(a, res.rtChunk, chunkClients, "sink.py +CHUNKING")[2:]
        L += [*table, ""]
    if tg:
        L += ["**Targets**", "", "| target | measured | result |", "|---|---|---|"]
        for t in tg:
            L.append(f"| {t['target']} | {t['figures']} | {mark(t['met'])} |")
        L.append("")
    return L


def render(a, meta, res: Results, tg, clients) -> str:
    L = ["# mailclient benchmark results", ""]
    L += summaryBlock(a, res, tg, clients, meta)
    if res.runs:
        L += ["## All throughput cells", ""]
        L.append(
            "msg/s = N / wall time of the send phase (Python clients: measured "
            "inside the driver, connect to QUIT, without interpreter start-up; "
            "smtp-source: fork to exit). CPU = client user+sys per message over "
            "the same span (smtp-source: whole process). RSS = peak resident set "
            "of the client process (GNU time `%M`). N per run was calibrated so a run "
            f"lasts about {a.target_s:g} s (see the JSON)."
        )
        errors: dict[str, str] = {}
        for size in a.sizes:
            for rcpts in a.rcpts:
                L += [
                    "",
                    f"### {size_name(size)} body, {rcpts} "
                    + ("recipients" if rcpts > 1 else "recipient"),
                    "",
                ]
                L += throughputTable(a, res.summary, clients, size, rcpts, errors)
    failures = [
        (sink, k, v["errors"])
        for sink, sm in (("smtp-sink", res.summary), ("sink.py", res.summaryChunk))
        for k, v in sorted(sm.items())
        if v["errors"]
    ]
    failures += [
        (
            row["sink"],
            (row["client"], KIB, row["rcpts"], 1),
            [short_error(row["error"])],
        )
        for row in res.rt + res.rtChunk
        if "error" in row
    ]
    if failures:
        L += ["", "Failed runs (left out of the medians):", ""]
        for sink, (client, size, rcpts, conc), errs in failures:
            L.append(
                f"- {client} → {sink}, {size_name(size)} r={rcpts} C={conc}: "
                + "; ".join(errs)
            )
    L += ["", "## Setup", ""]
    for k, v in meta["machine"].items():
        L.append(f"- {k}: {v}")
    for k, v in meta["versions"].items():
        L.append(f"- {k}: {v}")
    L.append(f"- main sink: `{meta['sink_cmd']}`; EHLO: `{meta['sink_ehlo']}`")
    if meta.get("chunk_sink_cmd"):
        L.append(
            f"- CHUNKING sink: `{meta['chunk_sink_cmd']}`; "
            f"EHLO: `{meta['chunk_sink_ehlo']}`"
        )
    L.append(f"- pinning: {meta['pinning']}")
    L.append(f"- command: `{meta['command']}`")
    L += [
        "",
        "Client commands (`$PORT` = sink or proxy port, `$MSG` = the message file, "
        "`$MSG_LF` = the same with LF line ends):",
        "",
        "```",
    ]
    seen = set()
    for rec in res.runs + res.runsChunk + [row.get("long", {}) for row in res.rt]:
        if "cmd" not in rec or rec["client"] in seen:
            continue
        seen.add(rec["client"])
        cmd = re.sub(r"(--port |:)\d{4,5}\b", r"\1$PORT", rec["cmd"])
        cmd = re.sub(r"\S*/msg-\d+\.lf\.eml", "$MSG_LF", cmd)
        cmd = re.sub(r"\S*/msg-\d+\.eml", "$MSG", cmd)
        L.append(cmd.replace(sys.executable, "python").replace(HERE, "benchmarks"))
    L += ["```", ""]
    return "\n".join(L)


def updateReadme(block: str) -> bool:
    path = os.path.join(HERE, "README.md")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError:
        return False
    start, end = text.find(README_BEGIN), text.find(README_END)
    if start < 0 or end < start:
        return False
    text = text[: start + len(README_BEGIN)] + "\n" + block.strip() + "\n" + text[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return True


# -- setup info ---------------------------------------------------------------


def capture(cmd: list[str]) -> str:
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def versionOf(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def machine() -> dict:
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"^model name\s*:\s*(.+)$", f.read(), re.M)
        info["CPU"] = f"{m.group(1) if m else '?'} ({os.cpu_count()} CPUs)"
    except OSError:
        pass
    info["OS"] = f"{platform.system()} {platform.release()}"
    with open("/proc/loadavg") as f:
        info["load average at start"] = " ".join(f.read().split()[:3])
    return info


def mailclientRev(path: str | None = None) -> str:
    if path:
        return f"imported from {path}"
    rev = capture(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]) or "?"
    dirty = capture(["git", "-C", ROOT, "status", "--porcelain", "--", "mailclient"])
    return rev + (" + uncommitted changes" if dirty else "")


# -- main ---------------------------------------------------------------------


def parseArgs(argv):
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p.add_argument("--quick", action="store_true", help="smoke run, under a minute")
    p.add_argument(
        "--clients",
        default=",".join(c.name for c in CLIENTS),
        help="comma list of: " + ", ".join(c.name for c in CLIENTS),
    )
    p.add_argument(
        "--sizes", type=ints, default=None, help="body sizes, default 1024,1048576"
    )
    p.add_argument("--rcpts", type=ints, default=None, help="recipients, default 1,10")
    p.add_argument("--conc", type=ints, default=None, help="connections, default 1,16")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions (3)")
    p.add_argument(
        "--target-s", type=float, default=None, help="seconds per run for calibrating N"
    )
    p.add_argument("--n-small", type=int, default=20000, help="max N, bodies < 64 KiB")
    p.add_argument("--n-large", type=int, default=300, help="max N, bodies >= 64 KiB")
    p.add_argument("--n-min", type=int, default=16)
    p.add_argument(
        "--delay-ms",
        type=float,
        default=None,
        help="added per round trip (20; --quick: 10)",
    )
    p.add_argument(
        "--rt-n", type=ints, default=None, help="long,short message counts (16,4)"
    )
    p.add_argument("--no-throughput", action="store_true")
    p.add_argument("--no-rt", action="store_true", help="skip the round-trip phases")
    p.add_argument(
        "--no-chunking", action="store_true", help="skip the CHUNKING sink phase"
    )
    p.add_argument("--no-pin", action="store_true", help="no taskset pinning")
    p.add_argument(
        "--mailclient-path",
        default=None,
        metavar="DIR",
        help="import mailclient from DIR/mailclient (PYTHONPATH) instead of the "
        "installed one, e.g. a `git archive` of another commit",
    )
    p.add_argument("--timeout", type=float, default=None, help="per client run (120 s)")
    p.add_argument(
        "--out",
        default=None,
        help="report path (results.md; partial runs: results-partial.md)",
    )
    p.add_argument(
        "--readme",
        choices=["auto", "yes", "no"],
        default="auto",
        help="update the README table (auto: only after a full default run)",
    )
    a = p.parse_args(argv)
    partial = (
        any(
            x is not None
            for x in (
                a.sizes,
                a.rcpts,
                a.conc,
                a.reps,
                a.target_s,
                a.rt_n,
                a.delay_ms,
                a.mailclient_path,
            )
        )
        or a.clients != p.get_default("clients")
        or a.no_throughput
        or a.no_rt
        or a.no_chunking
    )
    q = a.quick
    a.sizes = a.sizes or ([KIB, MIB])
    a.rcpts = a.rcpts or ([1] if q else [1, 10])
    a.conc = a.conc or [1, 16]
    a.reps = a.reps or (1 if q else 3)
    a.target_s = a.target_s if a.target_s is not None else (0.12 if q else 0.7)
    a.rt_n = a.rt_n or ([4, 2] if q else [16, 4])
    if a.delay_ms is None:
        a.delay_ms = 10.0 if q else 20.0
    a.timeout = a.timeout or (30.0 if q else 120.0)
    if q:
        a.n_min = 24
    if len(a.rt_n) != 2 or a.rt_n[0] <= a.rt_n[1]:
        p.error("--rt-n wants LONG,SHORT with LONG > SHORT")
    names = [x.strip() for x in a.clients.split(",") if x.strip()]
    for name in names:
        if name not in BY_NAME:
            p.error(f"unknown client {name!r}")
    a.client_list = [c for c in CLIENTS if c.name in names]  # fixed order
    a.mode = "quick" if q else "partial" if partial else "full"
    if a.out is None:
        a.out = os.path.join(
            HERE,
            {
                "quick": "results-quick.md",
                "partial": "results-partial.md",
                "full": "results.md",
            }[a.mode],
        )
    if a.readme == "auto":
        a.readme = "yes" if a.mode == "full" else "no"
    if (os.cpu_count() or 1) < 2 or not TASKSET:
        a.no_pin = True
    return a


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    a = parseArgs(argv)
    started = time.monotonic()
    r = Runner(a)
    clients = a.client_list
    if not os.access(SMTP_SINK, os.X_OK):
        log(f"{SMTP_SINK} not found: run benchmarks/setup.sh")
        return 1
    meta = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "mode": a.mode,
        "command": shlex.join(["python", "benchmarks/run.py", *argv]),
        "machine": machine(),
        "versions": {
            "Python": sys.version.split()[0],
            "Postfix": capture(["dpkg-query", "-W", "-f", "${Version}", "postfix"])
            or "?",
            "Twisted": versionOf("twisted"),
            "aiosmtplib": versionOf("aiosmtplib"),
            "mailclient": versionOf("mailclient")
            + ", "
            + mailclientRev(a.mailclient_path),
        },
        "mailclient_rev": mailclientRev(a.mailclient_path),
        "pinning": "none"
        if a.no_pin
        else "sink and proxy on CPU 0, client on CPU 1 (taskset)",
    }
    runs, rt, runsChunk, rtChunk = [], [], [], []
    sink = Sink("smtp-sink", r.work, r.sinkCpu)
    meta["sink_cmd"], meta["sink_ehlo"] = shlex.join(sink.cmd), sink.ehlo
    log(f"sink: {meta['sink_cmd']}")
    try:
        if not a.no_throughput:
            cells = [(s, rc, c) for s in a.sizes for rc in a.rcpts for c in a.conc]
            runs = throughput(r, clients, sink, cells)
        if not a.no_rt:
            rt = roundTrips(r, clients, sink)
    finally:
        sink.stop()
    chunkClients = [c for c in clients if c.name in CHUNKING_CLIENTS]
    if not a.no_chunking and chunkClients and not (a.no_rt and a.no_throughput):
        chunk = Sink("pysink", r.work, r.sinkCpu)
        meta["chunk_sink_cmd"] = (
            shlex.join(chunk.cmd)
            .replace(sys.executable, "python")
            .replace(HERE, "benchmarks")
        )
        meta["chunk_sink_ehlo"] = chunk.ehlo
        try:
            if not a.no_throughput:
                runsChunk = throughput(
                    r, chunkClients, chunk, [(s, 1, 1) for s in a.sizes]
                )
            if not a.no_rt:
                rtChunk = roundTrips(r, chunkClients, chunk)
        finally:
            chunk.stop()
    with open("/proc/loadavg") as f:
        meta["machine"]["load average at end"] = " ".join(f.read().split()[:3])
    meta["duration_min"] = (time.monotonic() - started) / 60
    res = Results(runs, rt, runsChunk, rtChunk)
    tg = targets(a, res)
    md = render(a, meta, res, tg, clients)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(md)
    jsonPath = os.path.splitext(a.out)[0] + ".json"
    with open(jsonPath, "w") as f:
        args = {k: v for k, v in vars(a).items() if k != "client_list"}

        def table(sm):
            return [
                dict(zip(("client", "size", "rcpts", "conc"), k, strict=True), **v)
                for k, v in sm.items()
            ]

        json.dump(
            {
                "meta": meta,
                "args": args,
                "targets": tg,
                "summary": table(res.summary),
                "summary_chunking": table(res.summaryChunk),
                "round_trips": rt,
                "round_trips_chunking": rtChunk,
                "runs": runs,
                "runs_chunking": runsChunk,
            },
            f,
            indent=1,
            default=str,
        )
    if a.readme == "yes":
        block = "\n".join(summaryBlock(a, res, tg, clients, meta))
        log(
            "README.md table updated"
            if updateReadme(block)
            else "README.md markers not found"
        )
    print(md)
    log(
        f"wrote {os.path.relpath(a.out)} and {os.path.relpath(jsonPath)} "
        f"in {meta['duration_min']:.1f} min"
    )
    shutil.rmtree(r.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
