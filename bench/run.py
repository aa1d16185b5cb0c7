#!/usr/bin/env python3
"""sockit benchmark orchestrator (python3 stdlib only).

Runs sockit-server and sockit-client against peers on the same machine, in
one run, and prints ratios: a libuv and a libevent echo server (bench/peers/),
an io_uring completion echo, the floor (a blocking recv/send thread per
connection, and the same behind a bare epoll loop), sockperf's own server and
client, iperf3, and a socat relay. Every server is
pinned to one core (taskset -c 0) with one worker, every load generator to the
other core (taskset -c 1). Besides throughput and latency it reports the
server's CPU time per message (utime+stime from /proc/PID/stat, sampled around
the measured window) and its RSS per idle connection.

    python3 bench/run.py [--quick] [--runs N] [--cases REGEX] [--out DIR]
                         [--write-doc] [--from RESULTS_JSON]
                         [--tls TLS_JSON (from bench/tls_peers.py)]

See bench/README.md. Writes OUT/results.json, OUT/table.md, OUT/*.svg and,
with --write-doc, docs/PERFORMANCE.md and docs/perf/*.svg.
"""

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS_DIR = ROOT / "bench" / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
READY_TIMEOUT = 10.0  # seconds a server gets to print its readiness line
SOCKPERF_WARMUP = 0.4  # sockperf's own warm-up before it measures


class BenchError(Exception):
    """A case that cannot be measured; the message is the reason shown."""


# ---------------------------------------------------------------------------
# Processes


class Proc:
    """A child process in its own session; threads drain stdout and stderr.

    Every Proc is registered until stopped, so cleanup_all() can end them all
    (servers, relays, load generators) on any exit path, including Ctrl-C.
    """

    live = set()
    live_lock = threading.Lock()

    def __init__(self, name, argv, merge_stderr=False):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.out_lines = []
        self.err_lines = []
        self.cond = threading.Condition()
        self.rusage = None
        self.returncode = None
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise BenchError(f"{name}: cannot start {self.argv[0]}: {e}")
        self.pid = self.popen.pid
        with Proc.live_lock:
            Proc.live.add(self)
        self.threads = [self._drain(self.popen.stdout, self.out_lines)]
        if not merge_stderr:
            self.threads.append(self._drain(self.popen.stderr, self.err_lines))

    def _drain(self, stream, lines):
        def run():
            for raw in iter(stream.readline, b""):
                with self.cond:
                    lines.append(ANSI.sub("", raw.decode(errors="replace")))
                    self.cond.notify_all()
            with self.cond:
                self.cond.notify_all()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def alive(self):
        """True while the process has not exited (reaps it if it has)."""
        if self.returncode is not None:
            return False
        try:
            pid, status, ru = os.wait4(self.pid, os.WNOHANG)
        except ChildProcessError:
            self.returncode = -1
            return False
        if pid == 0:
            return True
        self._reaped(status, ru)
        return False

    def _reaped(self, status, ru):
        self.returncode = os.waitstatus_to_exitcode(status)
        self.rusage = ru
        self.popen.returncode = self.returncode
        with Proc.live_lock:
            Proc.live.discard(self)

    def wait_line(self, regex, timeout, stderr=True):
        """Wait until a line of output matches regex; return the match.

        Raises BenchError if the process exits first or the deadline passes.
        """
        pat = re.compile(regex)
        lines = self.err_lines if stderr else self.out_lines
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                while seen < len(lines):
                    m = pat.search(lines[seen])
                    seen += 1
                    if m:
                        return m
                if not self.alive():
                    raise BenchError(f"{self.name} exited ({self.returncode})"
                                     f"{self.last_words()}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BenchError(f"{self.name}: no '{regex}' within "
                                     f"{timeout:g} s{self.last_words()}")
                self.cond.wait(min(left, 0.05))

    def wait(self, timeout):
        """Wait for exit (keeping its rusage); kill and raise on timeout."""
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > deadline:
                self.stop()
                raise BenchError(f"{self.name}: still running after "
                                 f"{timeout:g} s, killed")
            time.sleep(0.005)
        for t in self.threads:
            t.join(2)
        return self.returncode

    def stop(self, grace=3.0):
        """SIGTERM the process group, then SIGKILL after grace seconds."""
        if not self.alive():
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.pid, sig)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline:
                if not self.alive():
                    return
                time.sleep(0.01)

    def text(self):
        """Everything the process wrote (stdout then stderr)."""
        with self.cond:
            return "".join(self.out_lines) + "".join(self.err_lines)

    def last_words(self):
        """': <last non-empty line of stderr (or stdout)>' or ''."""
        with self.cond:
            for lines in (self.err_lines, self.out_lines):
                for line in reversed(lines):
                    if line.strip():
                        return ": " + line.strip()[:200]
        return ""

    def cmdline(self):
        return " ".join(shlex.quote(a) for a in self.argv)


def cleanup_all():
    """Stop every process this script started and has not yet reaped."""
    with Proc.live_lock:
        procs = list(Proc.live)
    for p in procs:
        p.stop(grace=1.0)


# ---------------------------------------------------------------------------
# /proc sampling


def proc_cpu_us(pid, seen=None):
    """utime+stime (+ reaped children) of pid and its live descendants,
    in µs; the pids read are added to seen."""
    total = 0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state); utime..cstime are fields 14..17.
        total += sum(int(x) for x in fields[11:15])
        tids = os.listdir(f"/proc/{pid}/task")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    if seen is not None:
        seen.add(pid)
    kids = []
    for tid in tids:
        # A thread may end between the listing and the read (the floor
        # peer's threads end with their connections): skip it, its CPU
        # stays in the process's counters.
        try:
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                kids += f.read().split()
        except (FileNotFoundError, ProcessLookupError):
            pass
    us = total * 1_000_000 // CLK_TCK
    for k in kids:
        us += proc_cpu_us(int(k), seen) or 0
    return us


def cpu_of(pids):
    """Summed CPU µs of several process trees; None if one is gone.

    A child reaped between the read of its parent's counters and the
    listing of the parent's children is in neither (a forking server such
    as socat reaps a connection's process just as the load generator
    exits): such a read loses that child's whole CPU. So the trees are read
    until two reads in a row see the same processes and do not go back."""
    last = None
    for _ in range(20):
        seen = set()
        vals = [proc_cpu_us(p, seen) for p in pids]
        if any(v is None for v in vals):
            return None
        now = (sum(vals), seen)
        if last is not None and now[1] == last[1] and now[0] >= last[0]:
            return now[0]
        last = now
    return last[0]


def rss_kib(pid):
    """VmRSS of pid in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for {pid}")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def listening(port, proto="tcp"):
    """True if some socket listens on 127.0.0.1:port (from /proc/net/tcp),
    or, proto "udp", is bound there (/proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    try:
        with open(f"/proc/net/{proto}") as f:
            next(f)
            for line in f:
                parts = line.split()
                if parts[1] == want and parts[3] == ("0A" if proto == "tcp"
                                                     else "07"):
                    return True
    except OSError:
        pass
    return False


def free_port():
    """A port that was free a moment ago (bind 127.0.0.1:0, then close)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------
# Configuration


@dataclass
class Config:
    server_bin: Path
    client_bin: Path
    out: Path
    runs: int
    quick: bool
    duration: float
    warmup: float
    server_cpu: str
    client_cpu: str
    idle_conns: int
    file_size: int
    notes: list = field(default_factory=list)
    peers_ok: bool = True
    peers_error: str = ""

    def srv(self, argv):
        return ["taskset", "-c", self.server_cpu] + [str(a) for a in argv]

    def cli(self, argv):
        return ["taskset", "-c", self.client_cpu] + [str(a) for a in argv]


def pick_cpus():
    """Cores for the server and the load generator (0 and 1 when present)."""
    cores = sorted(os.sched_getaffinity(0))
    if 0 in cores and 1 in cores:
        return "0", "1", None
    if len(cores) >= 2:
        return str(cores[0]), str(cores[1]), None
    return str(cores[0]), str(cores[0]), (
        "only one core available: server and load generator share it")


def raise_nofile(want):
    """Raise our soft RLIMIT_NOFILE (inherited by children) toward want."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = want if hard == resource.RLIM_INFINITY else min(want, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


# ---------------------------------------------------------------------------
# Servers


class Server:
    """A started server (or relay chain): its port and the pids to sample."""

    def __init__(self, label, procs, port, back_port=None):
        self.label = label
        self.procs = procs
        self.port = port
        self.ports = [port] + ([back_port] if back_port else [])
        self.main = procs[-1]  # the process clients talk to
        self.metrics = None  # sockit-server --metrics URL (UDP cases)
        self.udp_in = 0  # UDP bytes it received in the sampled window

    @property
    def pids(self):
        return [p.pid for p in self.procs]

    def cmdline(self):
        return " ; ".join(p.cmdline() for p in self.procs)

    def check_alive(self):
        for p in self.procs:
            if not p.alive():
                raise BenchError(f"{p.name} exited ({p.returncode})"
                                 f"{p.last_words()}")

    def stop(self):
        for p in reversed(self.procs):
            p.stop()


def start_port0(name, argv, regex):
    """Start a server on port 0 and read the real port from its stderr."""
    p = Proc(name, argv)
    try:
        port = int(p.wait_line(regex, READY_TIMEOUT).group(1))
    except BaseException:
        p.stop()
        raise
    return p, port


def start_fixed_port(name, make_argv, merge_stderr=False, tries=4,
                     proto="tcp"):
    """Start a server that cannot use port 0: pick a free port, start it and
    wait until the port listens; retry with another port on failure."""
    last = ""
    for _ in range(tries):
        port = free_port()
        p = Proc(name, make_argv(port), merge_stderr=merge_stderr)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline and p.alive():
            if listening(port, proto):
                return p, port
            time.sleep(0.005)
        last = (f"{name} not listening on {port}{p.last_words()}"
                if p.alive() else f"{name} exited ({p.returncode})"
                f"{p.last_words()}")
        p.stop()
    raise BenchError(last)


SOCKIT_READY = r"listening on tcp://127\.0\.0\.1:(\d+)"
SOCKIT_UDP_READY = r"listening on udp://127\.0\.0\.1:(\d+)"


def udp_in_bytes(url):
    """UDP bytes a sockit-server received so far (its --metrics page)."""
    import urllib.request
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    m = re.search(r'sockit_bytes_total\{[^}]*transport="udp",'
                  r'direction="in"\} (\d+)', text)
    return int(m.group(1)) if m else 0
PEER_READY = r"listening on 127\.0\.0\.1:(\d+)"


def start_server(cfg, kind, mode):
    """Start server kind ('sockit', 'sockit-uring', 'uv', 'ev', 'ur',
    'floor', 'floor-epoll', 'sockperf', 'iperf3', 'socat') in mode 'echo'
    or 'discard'; return a Server."""
    if kind in ("sockit", "sockit-uring"):
        if not cfg.server_bin.exists():
            raise BenchError(f"{rel(cfg.server_bin)} not built (make build)")
        # --max-conns above the default 10000 for the held-connections case.
        argv = [cfg.server_bin, "-q", "--workers", "1", "--max-conns",
                "19500", "-l", "127.0.0.1:0"]
        if kind == "sockit-uring":
            argv = ["env", "SK_BACKEND=uring"] + argv
        if mode != "echo":
            argv += ["--mode", mode]
        p, port = start_port0("sockit-server", cfg.srv(argv), SOCKIT_READY)
        return Server(kind, [p], port)
    if kind in ("uv", "ev", "ur", "floor", "floor-epoll"):
        if not cfg.peers_ok:
            raise BenchError(cfg.peers_error)
        binary = PEERS_DIR / "build" / {
            "ur": "uring_echo", "floor-epoll": "floor_echo"}.get(
            kind, f"{kind}_echo")
        extra = ["epoll"] if kind == "floor-epoll" else []
        p, port = start_port0(f"{kind}_echo",
                              cfg.srv([binary, mode, 0] + extra), PEER_READY)
        return Server(kind, [p], port)
    if kind == "sockit-udp":
        # UDP: every datagram here comes from one address, which the default
        # per-source reply limit would throttle. The metrics page tells what
        # the server received (one-way loss).
        if not cfg.server_bin.exists():
            raise BenchError(f"{rel(cfg.server_bin)} not built (make build)")
        argv = [cfg.server_bin, "--workers", "1", "--udp-rate", "0",
                "--metrics", "127.0.0.1:0", "-l", "udp://127.0.0.1:0"]
        if mode != "echo":
            argv += ["--mode", mode]
        p, port = start_port0("sockit-server", cfg.srv(argv),
                              SOCKIT_UDP_READY)
        server = Server(kind, [p], port)
        server.metrics = p.wait_line(r"metrics on (http://\S+)",
                                     READY_TIMEOUT).group(1)
        return server
    if kind == "sockperf-udp":
        p, port = start_fixed_port("sockperf-server", lambda port: cfg.srv(
            ["sockperf", "server", "-i", "127.0.0.1", "-p", port]),
            merge_stderr=True, proto="udp")
        return Server(kind, [p], port)
    if kind == "sockperf":
        p, port = start_fixed_port("sockperf-server", lambda port: cfg.srv(
            ["sockperf", "server", "--tcp", "-i", "127.0.0.1", "-p", port]),
            merge_stderr=True)
        return Server(kind, [p], port)
    if kind == "iperf3":
        p, port = start_fixed_port("iperf3-server", lambda port: cfg.srv(
            ["iperf3", "-s", "-B", "127.0.0.1", "-p", port]),
            merge_stderr=True)
        return Server(kind, [p], port)
    if kind == "socat":
        # socat relays every connection to a sockit discard server; both are
        # on the server core, and both are sampled.
        back = start_server(cfg, "sockit", mode)
        try:
            p, port = start_fixed_port("socat-relay", lambda port: cfg.srv(
                ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork",
                 f"TCP:127.0.0.1:{back.port}"]))
        except BaseException:
            back.stop()
            raise
        return Server(kind, back.procs + [p], port, back.port)
    raise BenchError(f"unknown server {kind}")


# ---------------------------------------------------------------------------
# Load generators: each returns a dict of metrics for one run.


def timed_client(cfg, server, name, argv, warmup, timeout, merge=False):
    """Run a load generator; sample the server's CPU at launch+warmup and at
    the generator's exit. Returns (proc, cpu_us, window_s, wall_s)."""
    server.check_alive()
    c = Proc(name, cfg.cli(argv), merge_stderr=merge)
    t_launch = time.monotonic()
    try:
        while c.alive() and time.monotonic() < t_launch + warmup:
            time.sleep(min(0.005, max(0.0, t_launch + warmup -
                                      time.monotonic())))
        cpu0, t0 = cpu_of(server.pids), time.monotonic()
        in0 = udp_in_bytes(server.metrics) if server.metrics else 0
        c.wait(timeout)
        t1 = time.monotonic()
        cpu1 = cpu_of(server.pids)
        if server.metrics:
            server.udp_in = udp_in_bytes(server.metrics) - in0
    finally:
        c.stop()
    server.check_alive()
    if cpu0 is None or cpu1 is None:
        raise BenchError("server vanished during the run")
    return c, cpu1 - cpu0, max(t1 - t0, 1e-6), t1 - t_launch


def client_json(c):
    """The one JSON object sockit-client --json prints on stdout."""
    if c.returncode != 0:
        raise BenchError(f"sockit-client exit {c.returncode}{c.last_words()}")
    text = "".join(c.out_lines).strip()
    start = text.find("{")
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except ValueError:
        raise BenchError(f"sockit-client printed no JSON{c.last_words()}")


def add_rate_cpu(m, cpu_us, window, rate, unit):
    """Server CPU per unit of work over the sampled window, assuming the
    generator's measured rate held over the whole window."""
    m["server_cpu_pct"] = 100.0 * cpu_us / 1e6 / window
    if rate > 0:
        m[f"server_cpu_us_per_{unit}"] = cpu_us / (rate * window)


def run_sockit_bench(cfg, server, case):
    """sockit-client --bench against server (echo/oneway/connect modes)."""
    if not cfg.client_bin.exists():
        raise BenchError(f"{rel(cfg.client_bin)} not built (make build)")
    p = case.params
    argv = [cfg.client_bin, "--bench", f"127.0.0.1:{server.port}",
            "--bench-mode", p["mode"], "--conns", p["conns"],
            "--duration", f"{cfg.duration:g}", "--warmup",
            f"{cfg.warmup:g}", "--json"]
    if p["mode"] in ("echo", "oneway"):
        argv += ["--size", p["size"]]
    if p["mode"] == "echo":
        argv += ["--pipeline", p["pipeline"]]
    if p.get("udp"):
        argv.append("--udp")
    if p.get("sockperf_hdr"):
        argv.append("--sockperf")
    c, cpu_us, window, _ = timed_client(
        cfg, server, "sockit-client", argv, cfg.warmup,
        cfg.warmup + cfg.duration + 60)
    j = client_json(c)
    m = {"cmd": c.cmdline()}
    errors = int(j.get("errors", 0) or 0)
    m["errors"] = errors
    if p["mode"] == "echo":
        rate = float(j["msgs_per_sec"])
        m["msgs_per_sec"] = rate
        m["mb_per_sec"] = float(j.get("mb_per_sec", 0))
        for k, v in (j.get("latency_us") or {}).items():
            m[f"lat_{k}"] = float(v)
        add_rate_cpu(m, cpu_us, window, rate, "msg")
    elif p["mode"] == "oneway":
        mbps = float(j["mb_per_sec"])
        m["gbit_per_sec"] = mbps * 8 / 1000
        m["mb_per_sec"] = mbps
        if p.get("udp"):
            # What arrived, as iperf3 -u reports; the sender's rate and the
            # loss between them (both over the same window, so approximate).
            got = server.udp_in / window / 1e6
            m["sent_gbit_per_sec"] = m["gbit_per_sec"]
            m["gbit_per_sec"] = got * 8 / 1000
            m["loss_pct"] = max(0.0, 100.0 * (1 - got / mbps)) if mbps else 0
            mbps = got
        add_rate_cpu(m, cpu_us, window, mbps, "mb")
    elif p["mode"] == "connect":
        rate = float(j["connects_per_sec"])
        m["connects_per_sec"] = rate
        add_rate_cpu(m, cpu_us, window, rate, "conn")
    if not any(v for k, v in m.items() if k.endswith("_per_sec")):
        raise BenchError(f"no traffic measured ({errors} errors)")
    return m


def parse_sockperf_pp(text):
    """Round-trip statistics from `sockperf ping-pong --full-rtt` output."""
    if "No messages were received" in text:
        raise BenchError(
            "sockperf client got no valid reply: its 14-byte header carries a "
            "client flag the server must clear, a plain byte echo sends it "
            "back unchanged and sockperf discards it")
    m = re.search(r"\[Valid Duration\] RunTime=([\d.]+) sec; SentMessages="
                  r"(\d+); ReceivedMessages=(\d+)", text)
    if not m:
        raise BenchError("sockperf ping-pong printed no statistics: " +
                         last_line(text))
    run_s, received = float(m.group(1)), int(m.group(3))
    out = {"msgs_per_sec": received / run_s}
    pct = {float(a): float(b) for a, b in
           re.findall(r"percentile\s+([\d.]+)\s*=\s*([\d.]+)", text)}
    for key, q in (("p50", 50.0), ("p90", 90.0), ("p99", 99.0),
                   ("p999", 99.9)):
        if q in pct:
            out[f"lat_{key}"] = pct[q]
    mx = re.search(r"<MAX> observation\s*=\s*([\d.]+)", text)
    if mx:
        out["lat_max"] = float(mx.group(1))
    avg = re.search(r"avg-(?:rtt|latency)=([\d.]+)", text)
    if avg:
        out["lat_mean"] = float(avg.group(1))
    return out


def run_sockperf(cfg, server, case):
    """sockperf's own client: ping-pong (round trips) or throughput."""
    p = case.params
    # sockperf warms up for 400 ms; with -t 1 it may find no valid samples.
    secs = max(2, round(cfg.duration))
    sub = {"pp": "ping-pong", "ul": "under-load"}.get(p["mode"], "throughput")
    argv = ["sockperf", sub] + ([] if p.get("udp") else ["--tcp"]) + [
        "-i", "127.0.0.1", "-p", server.port, "-m", p["size"], "-t", secs]
    if sub != "throughput":
        argv.append("--full-rtt")
    c, cpu_us, window, _ = timed_client(cfg, server, "sockperf-client", argv,
                                        SOCKPERF_WARMUP + 0.1, secs + 30,
                                        merge=True)
    text = c.text()
    if sub != "throughput":
        m = parse_sockperf_pp(text)
    else:
        t = re.search(r"Total of (\d+) messages sent in ([\d.]+) sec", text)
        if not t:
            raise BenchError("sockperf throughput printed no total: " +
                             last_line(text))
        m = {"msgs_per_sec": int(t.group(1)) / float(t.group(2))}
        m["mb_per_sec"] = m["msgs_per_sec"] * int(p["size"]) / 1e6
    if c.returncode != 0:
        raise BenchError(f"sockperf exit {c.returncode}: {last_line(text)}")
    m["cmd"] = c.cmdline()
    add_rate_cpu(m, cpu_us, window, m["msgs_per_sec"], "msg")
    return m


def run_iperf3(cfg, server, case):
    """iperf3 -c: one-way bulk (-P streams) or a file (-F)."""
    p = case.params
    argv = ["iperf3", "-c", "127.0.0.1", "-p", server.port, "-J"]
    if p["mode"] == "file":
        argv += ["-F", p["file"], "-n", cfg.file_size, "-l", "128K"]
        warm, timeout = 0.0, 300
    elif p["mode"] == "udp":
        secs = max(1, round(cfg.duration))
        omit = max(1, round(cfg.warmup))
        argv += ["-u", "-b", "0", "-l", p["size"], "-t", secs, "-O", omit]
        warm, timeout = omit, secs + omit + 30
    else:
        secs = max(1, round(cfg.duration))
        omit = max(1, round(cfg.warmup))
        argv += ["-t", secs, "-O", omit, "-l", "128K", "-P", p["conns"]]
        warm, timeout = omit, secs + omit + 30
    c, cpu_us, window, wall = timed_client(cfg, server, "iperf3-client",
                                           argv, warm, timeout)
    try:
        j = json.loads("".join(c.out_lines))
    except ValueError:
        raise BenchError(f"iperf3 printed no JSON{c.last_words()}")
    if j.get("error"):
        raise BenchError(f"iperf3: {j['error']}")
    if c.returncode != 0:
        raise BenchError(f"iperf3 exit {c.returncode}{c.last_words()}")
    m = {"cmd": c.cmdline()}
    if p["mode"] == "file":
        return file_metrics(m, c, cpu_us, wall, cfg.file_size)
    if p["mode"] == "udp":
        end = j["end"]
        got = end.get("sum_received", end["sum"])
        m["sent_gbit_per_sec"] = end.get("sum_sent", got)[
            "bits_per_second"] / 1e9
        m["loss_pct"] = float(got.get("lost_percent", 0))
    mbps = j["end"]["sum_received"]["bits_per_second"] / 8e6
    m["gbit_per_sec"] = mbps * 8 / 1000
    m["mb_per_sec"] = mbps
    add_rate_cpu(m, cpu_us, window, mbps, "mb")
    return m


def file_metrics(m, c, cpu_us, wall, size):
    """Throughput of a whole-file transfer (wall clock of the sender) and the
    CPU of both ends per GiB."""
    m["gbit_per_sec"] = size * 8 / wall / 1e9
    m["seconds"] = wall
    gib = size / (1 << 30)
    if c.rusage is not None:
        m["client_cpu_ms_per_gib"] = (c.rusage.ru_utime +
                                      c.rusage.ru_stime) * 1e3 / gib
    m["server_cpu_ms_per_gib"] = cpu_us / 1e3 / gib
    return m


def run_file_sender(cfg, server, case):
    """sockit-client --file or socat -u: send the whole file, time it."""
    p = case.params
    if p["sender"] == "sockit":
        if not cfg.client_bin.exists():
            raise BenchError(f"{rel(cfg.client_bin)} not built (make build)")
        argv = [cfg.client_bin, "--file", p["file"],
                f"127.0.0.1:{server.port}"]
    else:
        argv = ["socat", "-u", f"OPEN:{p['file']},rdonly",
                f"TCP:127.0.0.1:{server.port}"]
    c, cpu_us, _, wall = timed_client(cfg, server, p["sender"], argv, 0.0,
                                      300)
    if c.returncode != 0:
        raise BenchError(f"{p['sender']} exit {c.returncode}"
                         f"{c.last_words()}")
    return file_metrics({"cmd": c.cmdline()}, c, cpu_us, wall, cfg.file_size)


def hold_idle(cfg, server, n, open_timeout, then):
    """Have the generator open n idle connections, wait until the server
    holds all of them, measure its RSS growth per connection, run then()
    on the loaded server, and stop the server before the generator (so
    TIME_WAIT lands on the server's side, not on the client's ephemeral
    ports). Returns (generator command, bytes per connection, then())."""
    if not cfg.client_bin.exists():
        raise BenchError(f"{rel(cfg.client_bin)} not built (make build)")
    pid = server.main.pid
    rss0, fds0 = rss_kib(pid), fd_count(pid)
    argv = [cfg.client_bin, "--bench", f"127.0.0.1:{server.port}",
            "--bench-mode", "idle", "--conns", n,
            "--duration", 3 * open_timeout]
    c = Proc("sockit-client", cfg.cli(argv))
    try:
        c.wait_line(r"idle: (\d+) connections open", 2 * open_timeout)
        # Connected in the kernel is not yet accepted: wait for the fds.
        deadline = time.monotonic() + open_timeout
        while fd_count(pid) < fds0 + n:
            server.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"server holds {fd_count(pid) - fds0} of "
                                 f"{n} connections after {open_timeout} s")
            time.sleep(0.01)
        per_conn = (rss_kib(pid) - rss0) * 1024 / n
        extra = then()
        server.check_alive()
        server.stop()
    finally:
        c.stop()
    return c.cmdline(), per_conn, extra


def run_idle(cfg, server, case):
    """Open N idle connections; RSS growth of the server divided by N."""
    n = cfg.idle_conns
    cmd, per_conn, _ = hold_idle(cfg, server, n, 30, lambda: None)
    return {"cmd": cmd, "conns": n, "rss_bytes_per_conn": per_conn}


def fresh_client_ms(port, tries=50):
    """Connect + 4-byte echo + close, `tries` times: milliseconds each."""
    out = []
    for _ in range(tries):
        t0 = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"ping")
            got = b""
            while len(got) < 4:
                b = s.recv(4 - len(got))
                if not b:
                    raise BenchError("server closed a fresh client")
                got += b
        out.append((time.perf_counter() - t0) * 1000)
    return sorted(out)


def run_held(cfg, server, case):
    """Hold N connections open, then time fresh clients against the loaded
    server (issue target: answered in under 10 ms at 19,000)."""
    n = case.params["conns"]
    cmd, per_conn, ms = hold_idle(cfg, server, n, 60,
                                  lambda: fresh_client_ms(server.port))
    return {"cmd": cmd, "conns": n, "rss_bytes_per_conn": per_conn,
            "fresh_ms_p50": ms[len(ms) // 2],
            "fresh_ms_p90": ms[int(len(ms) * 0.9)], "fresh_ms_max": ms[-1]}


RUNNERS = {
    "held": run_held,
    "sockit-bench": run_sockit_bench,
    "sockperf": run_sockperf,
    "iperf3": run_iperf3,
    "file": run_file_sender,
    "idle": run_idle,
}


# ---------------------------------------------------------------------------
# Cases


@dataclass
class Variant:
    """One server/generator pairing measured in a case."""
    label: str  # shown in tables, e.g. "libuv (sockit-client)"
    server: str  # start_server kind
    mode: str  # echo | discard
    runner: str  # RUNNERS key
    params: dict = field(default_factory=dict)  # overrides case params
    sockit: bool = False  # the row the ratios are computed from
    client: str = "sockit-client"


@dataclass
class Case:
    id: str
    group: str
    title: str
    params: dict
    variants: list
    quick: bool = False
    min_runs: int = 0  # more runs than --runs for short, noisy measurements


@dataclass
class Group:
    """How a group of cases is summarized: its primary metric (ratios are
    taken on it) and the other columns shown."""
    title: str
    primary: str
    higher_better: bool
    columns: list  # (metric key, column title)
    cpu: str = None  # the CPU metric a second ratio is taken on
    by_client: bool = False  # the generator is what is compared (file)


GROUPS = {
    "echo": Group("Echo (sockit-client --bench, round trips)", "msgs_per_sec",
                  True, [("msgs_per_sec", "msgs/s"),
                         ("server_cpu_us_per_msg", "server CPU µs/msg"),
                         ("lat_p50", "RTT p50 µs"),
                         ("lat_p99", "RTT p99 µs")],
                  cpu="server_cpu_us_per_msg"),
    "latency": Group("Ping-pong latency, 64 B, 1 connection", "lat_p50",
                     False, [("lat_p50", "p50 µs"), ("lat_p90", "p90 µs"),
                             ("lat_p99", "p99 µs"), ("lat_p999", "p99.9 µs"),
                             ("lat_max", "max µs"),
                             ("msgs_per_sec", "round trips/s"),
                             ("server_cpu_us_per_msg", "server CPU µs/msg")],
                     cpu="server_cpu_us_per_msg"),
    "sockperf-tp": Group("sockperf throughput (one way, 64 B messages)",
                         "msgs_per_sec", True,
                         [("msgs_per_sec", "msgs/s"),
                          ("server_cpu_us_per_msg", "server CPU µs/msg")],
                         cpu="server_cpu_us_per_msg"),
    "oneway": Group("One-way bulk, 128 KiB writes", "gbit_per_sec", True,
                    [("gbit_per_sec", "Gbit/s"),
                     ("server_cpu_us_per_mb", "server CPU µs/MB"),
                     ("server_cpu_pct", "server CPU %")],
                    cpu="server_cpu_us_per_mb"),
    "file": Group("File transfer", "gbit_per_sec", True,
                  [("gbit_per_sec", "Gbit/s"),
                   ("client_cpu_ms_per_gib", "sender CPU ms/GiB"),
                   ("server_cpu_ms_per_gib", "receiver CPU ms/GiB")],
                  cpu="client_cpu_ms_per_gib", by_client=True),
    "connect": Group("Connection setup rate", "connects_per_sec", True,
                     [("connects_per_sec", "connections/s"),
                      ("server_cpu_us_per_conn", "server CPU µs/conn")],
                     cpu="server_cpu_us_per_conn"),
    "held": Group("Held connections: a fresh client's connect + echo on a "
                  "loaded server", "fresh_ms_p50", False,
                  [("fresh_ms_p50", "fresh p50 ms"),
                   ("fresh_ms_p90", "fresh p90 ms"),
                   ("fresh_ms_max", "fresh max ms"),
                   ("rss_bytes_per_conn", "bytes/conn")]),
    "udp-echo": Group("UDP echo, 64 B datagrams (round trips)",
                      "msgs_per_sec", True,
                      [("msgs_per_sec", "replies/s"),
                       ("server_cpu_us_per_msg", "server CPU µs/datagram"),
                       ("lat_p50", "RTT p50 µs"), ("lat_p99", "RTT p99 µs")],
                      cpu="server_cpu_us_per_msg"),
    "udp-oneway": Group("UDP one way, 1472 B datagrams (received)",
                        "gbit_per_sec", True,
                        [("gbit_per_sec", "received Gbit/s"),
                         ("sent_gbit_per_sec", "sent Gbit/s"),
                         ("loss_pct", "loss %"),
                         ("server_cpu_us_per_mb", "server CPU µs/MB")],
                        cpu="server_cpu_us_per_mb"),
    "idle": Group("Idle connections: server RSS growth per connection",
                  "rss_bytes_per_conn", False,
                  [("rss_bytes_per_conn", "bytes/conn")]),
}

ECHO_SERVERS = [("sockit", "sockit-server"), ("uv", "libuv echo"),
                ("ev", "libevent echo")]
# The same server on the io_uring backend, next to the epoll one, and the
# completion-based io_uring design as a bare peer (bench/peers/uring_echo.c):
# what multishot recv, provided buffers and batched sends gain here.
URING = [("sockit-uring", "sockit-server, io_uring"),
         ("ur", "io_uring completion echo")]
# The floor (bench/peers/floor_echo.c): a blocking recv/send loop per
# connection, a thread each: only what the kernel must do. In the 64 B echo
# cases, where CPU per message is judged against it. Next to it the same
# recv/send behind one bare epoll loop: the floor of an event loop, which
# does not pay a thread wake-up per message.
FLOOR = [("floor", "floor: blocking recv/send"),
         ("floor-epoll", "floor: bare epoll loop")]


def build_cases(cfg, bigfile):
    """Every case of a full run; cases with quick=True make up --quick."""
    cases = []
    quick_echo = {(64, 1, 1), (64, 100, 1), (64, 100, 16), (64, 1000, 1),
                  (4096, 100, 16)}
    for size in (64, 4096):
        for conns in (1, 100, 1000):
            for pipe in (1, 16):
                cases.append(Case(
                    f"echo-{size_name(size)}-c{conns}-p{pipe}", "echo",
                    f"echo {size_name(size)}, {conns} conn, pipeline {pipe}",
                    {"mode": "echo", "size": size, "conns": conns,
                     "pipeline": pipe},
                    [Variant(lbl, k, "echo", "sockit-bench",
                             sockit=k == "sockit")
                     for k, lbl in ECHO_SERVERS + URING +
                     (FLOOR if size == 64 else [])],
                    quick=(size, conns, pipe) in quick_echo))
    lat = [Variant(lbl, k, "echo", "sockit-bench", sockit=k == "sockit")
           for k, lbl in ECHO_SERVERS + URING]
    lat += [Variant("sockperf server", "sockperf", "echo", "sockperf",
                    {"mode": "pp"}, client="sockperf"),
            Variant("sockit-server --mode sockperf", "sockit", "sockperf",
                    "sockperf", {"mode": "pp"}, sockit=True,
                    client="sockperf")]
    cases.append(Case("latency-64B", "latency",
                      "ping-pong 64 B, 1 conn, pipeline 1",
                      {"mode": "echo", "size": 64, "conns": 1, "pipeline": 1},
                      lat, quick=True))
    tp = [Variant(lbl, k, "discard", "sockperf", {"mode": "tp"},
                  sockit=k == "sockit", client="sockperf")
          for k, lbl in ECHO_SERVERS]
    tp.append(Variant("sockperf server", "sockperf", "echo", "sockperf",
                      {"mode": "tp"}, client="sockperf"))
    cases.append(Case("sockperf-tp-64B", "sockperf-tp",
                      "sockperf throughput 64 B, 1 conn",
                      {"size": 64}, tp, quick=True))
    for streams in (1, 4):
        v = [Variant(lbl.replace("echo", "discard"), k, "discard",
                     "sockit-bench", sockit=k == "sockit")
             for k, lbl in ECHO_SERVERS]
        v += [Variant("iperf3 -s", "iperf3", "discard", "iperf3",
                      client="iperf3 -c"),
              Variant("socat relay → sockit discard", "socat", "discard",
                      "sockit-bench")]
        cases.append(Case(f"oneway-128K-s{streams}", "oneway",
                          f"one-way 128 KiB writes, {streams} stream(s)",
                          {"mode": "oneway", "size": 131072,
                           "conns": streams}, v, quick=True))
    cases += udp_cases()
    size = size_name(cfg.file_size)
    cases.append(Case(
        f"file-{size}", "file", f"--file {size} (random bytes, page cache)",
        {"mode": "file", "file": bigfile},
        [Variant("sockit-server discard", "sockit", "discard", "file",
                 {"sender": "sockit"}, sockit=True,
                 client="sockit-client --file"),
         Variant("sockit-server discard", "sockit", "discard", "file",
                 {"sender": "socat"}, client="socat -u"),
         Variant("iperf3 -s", "iperf3", "discard", "iperf3",
                 client="iperf3 -c -F")], quick=True,
        # A transfer lasts under half a second here: single runs vary by
        # a third, so this case takes more of them.
        min_runs=9))
    cases.append(Case(
        "connect-c16", "connect", "connect+close, 16 at a time",
        {"mode": "connect", "conns": 16},
        [Variant(lbl, k, "echo", "sockit-bench", sockit=k == "sockit")
         for k, lbl in ECHO_SERVERS + URING], quick=True))
    cases.append(Case(
        f"idle-{cfg.idle_conns}", "idle",
        f"{cfg.idle_conns} idle connections",
        {"mode": "idle", "conns": cfg.idle_conns},
        [Variant(lbl, k, "echo", "idle", sockit=k == "sockit")
         for k, lbl in ECHO_SERVERS], quick=True))
    held = min(19000, cfg.idle_conns * 19 // 10)
    cases.append(Case(
        f"held-{held}", "held", f"{held} connections held, fresh clients",
        {"mode": "idle", "conns": held},
        [Variant(lbl, k, "echo", "held", sockit=k == "sockit")
         for k, lbl in ECHO_SERVERS[:2]]))
    return cases


def udp_cases():
    """UDP (issue 16): 64 B echo against sockperf's UDP server with
    sockperf's client (ping-pong, throughput, under-load), sockit-client's
    UDP echo with 1 and 100 sockets, and one way against iperf3 -u."""
    cases = []
    for mode, sub in (("pp", "ping-pong"), ("tp", "throughput"),
                      ("ul", "under-load")):
        cases.append(Case(
            f"udp-sockperf-{mode}-64B", "udp-echo",
            f"UDP sockperf {sub} 64 B, 1 socket", {"size": 64},
            [Variant("sockperf server --udp", "sockperf-udp", "echo",
                     "sockperf", {"mode": mode, "udp": True},
                     client=f"sockperf {sub}"),
             Variant("sockit-server --mode sockperf (UDP)", "sockit-udp",
                     "sockperf", "sockperf", {"mode": mode, "udp": True},
                     sockit=True, client=f"sockperf {sub}")]))
    # 64 in flight on one socket: enough to keep either server busy (at 16
    # the client and the server take turns and neither core is full).
    for conns, pipe in ((1, 64), (100, 4)):
        cases.append(Case(
            f"udp-echo-64B-c{conns}", "udp-echo",
            f"UDP echo 64 B, {conns} socket(s), pipeline {pipe}",
            {"mode": "echo", "size": 64, "conns": conns, "pipeline": pipe,
             "udp": True},
            [Variant("sockit-server UDP echo", "sockit-udp", "echo",
                     "sockit-bench", sockit=True,
                     client="sockit-client --udp"),
             # One batching client for both sockperf-speaking servers:
             # sockperf's own client sends one datagram at a time, so it
             # cannot show what either server does under load.
             Variant("sockperf server --udp", "sockperf-udp", "echo",
                     "sockit-bench", {"sockperf_hdr": True},
                     client="sockit-client --udp --sockperf"),
             Variant("sockit-server --mode sockperf (UDP)", "sockit-udp",
                     "sockperf", "sockit-bench", {"sockperf_hdr": True},
                     sockit=True, client="sockit-client --udp --sockperf")]))
    cases.append(Case(
        "udp-oneway-1472B", "udp-oneway", "UDP one way, 1472 B, 1 socket",
        {"size": 1472, "conns": 1},
        [Variant("sockit-server UDP discard", "sockit-udp", "discard",
                 "sockit-bench", {"mode": "oneway", "udp": True},
                 sockit=True, client="sockit-client --udp"),
         Variant("iperf3 -s", "iperf3", "discard", "iperf3",
                 {"mode": "udp"}, client="iperf3 -c -u -b 0")]))
    return cases


# ---------------------------------------------------------------------------
# Running


def run_variant_once(cfg, case, variant):
    """Start a fresh server, run the generator once, stop the server."""
    server = start_server(cfg, variant.server, variant.mode)
    try:
        sub = Case(case.id, case.group, case.title,
                   {**case.params, **variant.params}, [])
        m = RUNNERS[variant.runner](cfg, server, sub)
        m["server_cmd"] = server.cmdline()
        m["ports"] = server.ports
        return m
    finally:
        server.stop()


def summarize(runs):
    """{metric: [median, min, max]} over the successful runs."""
    ok = [r for r in runs if "error" not in r]
    keys = sorted({k for r in ok for k, v in r.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)})
    out = {}
    for k in keys:
        vals = [r[k] for r in ok if k in r]
        out[k] = [statistics.median(vals), min(vals), max(vals)]
    return out


def run_cases(cfg, cases, results):
    """Run every case; results.json is rewritten after each one."""
    for case in cases:
        print(f"== {case.id}: {case.title}", flush=True)
        entry = {"id": case.id, "group": case.group, "title": case.title,
                 "params": {k: v for k, v in case.params.items()
                            if k != "file"}, "variants": []}
        for v in case.variants:
            entry["variants"].append({
                "label": v.label, "server": v.server, "client": v.client,
                "sockit": v.sockit, "runs": []})
        results["cases"].append(entry)
        bigfile = case.params.get("file")
        try:
            if bigfile:
                t = time.monotonic()
                make_bigfile(bigfile, cfg.file_size)
                print(f"   created {size_name(cfg.file_size)} of random "
                      f"bytes ({time.monotonic() - t:.1f} s)", flush=True)
            run_case(cfg, case, entry)
        finally:
            if bigfile:
                Path(bigfile).unlink(missing_ok=True)
        finish_entry(entry)
        write_json(cfg.out / "results.json", results)


def run_case(cfg, case, entry):
    """cfg.runs rounds; each round measures every variant once, so drift
    over time hits every server alike."""
    runs = cfg.runs if cfg.quick else max(cfg.runs, case.min_runs)
    for i in range(runs):
        for v, ve in zip(case.variants, entry["variants"]):
            t = time.monotonic()
            try:
                m = run_variant_once(cfg, case, v)
            except BenchError as e:
                m = {"error": str(e)}
            except OSError as e:
                m = {"error": f"{type(e).__name__}: {e}"}
            ve["runs"].append(m)
            head = primary_str(GROUPS[case.group], m)
            print(f"   run {i + 1}/{runs} {v.label:<30} "
                  f"{v.client:<22} {head} ({time.monotonic() - t:.1f} s)",
                  flush=True)


def finish_entry(entry):
    """Summaries, error lists, recorded commands and ratios of a case."""
    for ve in entry["variants"]:
        ve["summary"] = summarize(ve["runs"])
        errs = [r["error"] for r in ve["runs"] if "error" in r]
        if errs:
            ve["errors"] = sorted(set(errs))
        elif not ve["runs"]:
            ve["errors"] = ["not run (interrupted)"]
        cmds = [r for r in ve["runs"] if "cmd" in r]
        if cmds:
            ve["client_cmd"] = cmds[0]["cmd"]
            ve["server_cmd"] = cmds[0].get("server_cmd", "")
            ve["ports"] = cmds[0].get("ports", [])
    compute_ratios(entry)


def compute_ratios(entry):
    """Ratio sockit ÷ peer on the primary metric and on server CPU."""
    group = GROUPS[entry["group"]]
    cpu = cpu_key(group)
    refs = [v for v in entry["variants"] if v["sockit"]]
    for v in entry["variants"]:
        if v["sockit"]:
            continue
        # Prefer the sockit row measured with the same generator.
        have = [r for r in refs if r["summary"].get(group.primary)]
        ref = next((r for r in have if r["client"] == v["client"]),
                   have[0] if have else None)
        if ref is None:
            continue
        v["ratio_ref"] = ref["label"] + " / " + ref["client"]
        v["ratio_same_client"] = (group.by_client or
                                  ref["client"] == v["client"])
        for key, name in ((group.primary, "ratio"), (cpu, "cpu_ratio")):
            a = ref["summary"].get(key) if key else None
            b = v["summary"].get(key) if key else None
            if a and b and b[0]:
                v[name] = a[0] / b[0]


# ---------------------------------------------------------------------------
# Formatting


def size_name(n):
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("K", 1024)):
        if n >= div and n % div == 0:
            return f"{n // div}{unit}"
    return f"{n}B"


def fmt_num(v):
    """3 significant digits, k/M/G suffixes for large values."""
    if v is None:
        return "n/a"
    a = abs(v)
    for limit, div, suf in ((1e9, 1e9, "G"), (1e6, 1e6, "M"), (1e4, 1e3, "k")):
        if a >= limit:
            return f"{v / div:.3g}{suf}"
    if a >= 100 or a == int(a):
        return f"{v:.0f}"
    return f"{v:.3g}"


def cell(summary, key):
    s = summary.get(key)
    if not s:
        return "n/a"
    med, lo, hi = s
    if lo == hi:
        return fmt_num(med)
    return f"{fmt_num(med)} ({fmt_num(lo)}–{fmt_num(hi)})"


def primary_str(group, m):
    if "error" in m:
        return "n/a: " + m["error"]
    v = m.get(group.primary)
    return f"{fmt_num(v)} {dict(group.columns).get(group.primary, '')}"


def last_line(text):
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:200] if lines else "(no output)"


def rel(path):
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def cpu_key(group):
    """The CPU metric of the group's second ratio, if any."""
    return group.cpu


def table_rows(entry, width=None):
    """Rows (lists of str) of one case's table; n/a reasons are cut to width
    characters when width is given (the full text is in variant_notes)."""
    group = GROUPS[entry["group"]]
    rows = []
    for v in entry["variants"]:
        row = [v["label"], v["client"]]
        if v["summary"]:
            row += [cell(v["summary"], k) for k, _ in group.columns]
        else:
            reason = "n/a: " + v.get("errors", ["no successful run"])[0]
            if width and len(reason) > width:
                reason = reason[:width - 5] + " [*]"
            row += [reason] + [""] * (len(group.columns) - 1)
        ratios = [("ratio", group.primary)]
        if cpu_key(group):
            ratios.append(("cpu_ratio", cpu_key(group)))
        for name, _ in ratios:
            if v["sockit"]:
                row.append("(reference)" if name == "ratio" else "")
            elif name in v:
                mark = "" if v.get("ratio_same_client", True) else " †"
                row.append(f"{v[name]:.2f}{mark}")
            else:
                row.append("n/a")
        rows.append(row)
    return rows


def table_header(group, short=False):
    better = "higher" if group.higher_better else "lower"
    head = ["server", "load generator"] + [t for _, t in group.columns]
    head.append("sockit÷peer" if short else
                f"sockit ÷ peer ({better} is better for sockit)")
    if cpu_key(group):
        head.append("CPU sockit÷peer" if short else
                    "CPU sockit ÷ peer (lower is better)")
    return head


def variant_notes(entry):
    """Footnotes: failed runs (with the full reason) and generator errors."""
    notes = []
    for v in entry["variants"]:
        runs = v["runs"]
        failed = [r["error"] for r in runs if "error" in r]
        who = f"{entry['title']}, {v['label']} / {v['client']}"
        if failed:
            notes.append(f"{who}: {len(failed)} of {len(runs)} run(s) n/a: "
                         f"{'; '.join(sorted(set(failed)))}")
        errs = sum(r.get("errors", 0) for r in runs if "error" not in r)
        if errs:
            notes.append(f"{who}: the load generator counted {errs} "
                         "connection/transfer error(s)")
    return notes


def by_group(results):
    groups = {}
    for e in results["cases"]:
        groups.setdefault(e["group"], []).append(e)
    return groups


def markdown_tables(results):
    """Markdown: one table per group, one row block per case."""
    out = []
    for gkey, entries in by_group(results).items():
        group = GROUPS[gkey]
        head = ["case"] + table_header(group)
        out.append(f"### {group.title}\n")
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        notes = []
        for e in entries:
            for i, row in enumerate(table_rows(e)):
                first = e["title"] if i == 0 else ""
                cells = [c.replace("|", "\\|").replace("\n", " ")
                         for c in [first] + row]
                out.append("| " + " | ".join(cells) + " |")
            notes += variant_notes(e)
        out.append("")
        out += [f"- {n}" for n in notes]
        if notes:
            out.append("")
    return "\n".join(out)


def print_tables(results):
    """Plain-text tables on stdout, n/a reasons in full below each."""
    runs = results["config"]["runs"]
    for gkey, entries in by_group(results).items():
        group = GROUPS[gkey]
        head = table_header(group, short=True)
        rows = []
        notes = []
        for e in entries:
            rows.append([f"[{e['title']}]"] + [""] * (len(head) - 1))
            rows += table_rows(e, width=40)
            notes += variant_notes(e)
        widths = [max(len(r[i]) for r in rows[1:] + [head])
                  for i in range(len(head))]
        print(f"\n{group.title}  (median (min–max) of {runs} run(s); "
              f"sockit÷peer {'>' if group.higher_better else '<'} 1 "
              "favours sockit)")
        print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
        for r in rows:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        for n in notes:
            print(f"  [*] {n}")
    print("\n† ratio against the sockit row measured with another load "
          "generator.")


# ---------------------------------------------------------------------------
# Plots (gnuplot)


def gnuplot(script, data_files):
    """Run gnuplot on a script; data_files maps path -> text."""
    for path, text in data_files.items():
        Path(path).write_text(text)
    r = subprocess.run(["gnuplot"], input=script.encode(),
                       capture_output=True, timeout=60)
    if r.returncode != 0:
        raise BenchError("gnuplot: " + last_line(r.stderr.decode()))


SVG_FONT = "sans,11"
# Okabe-Ito colours: told apart with the common colour-vision deficiencies
# (and in grey print); point types and dash patterns differ as well.
COLORS = {"sockit": "#0072B2", "sockit-uring": "#56B4E9", "uv": "#009E73",
          "ev": "#E69F00", "ur": "#D55E00", "floor": "#000000",
          "floor-epoll": "#777777", "sockperf": "#999999",
          "iperf3": "#CC79A7", "socat": "#8C564B",
          "nginx": "#009E73", "stunnel": "#E69F00", "haproxy": "#CC79A7"}
POINTS = {"sockit": 7, "sockit-uring": 5, "uv": 9, "ev": 11, "ur": 13,
          "floor": 3, "floor-epoll": 15, "sockperf": 1, "iperf3": 2,
          "socat": 4}


def svg_term(width=960, height=560):
    """The SVG terminal: noenhanced, so io_uring is not a subscript."""
    return ("set encoding utf8\n"
            f"set terminal svg size {width},{height} dynamic noenhanced "
            f"font '{SVG_FONT}'\nset grid\nset datafile missing '?'\n")


def gq(text):
    """A gnuplot single-quoted string."""
    return "'" + str(text).replace("'", "''") + "'"


def style(kind):
    return (f"lc rgb '{COLORS.get(kind, '#000000')}' "
            f"pt {POINTS.get(kind, 6)}")


def panel(left, right, bottom=0.27, top=0.86):
    """Fixed margins (screen fractions) so panels line up."""
    return (f"set lmargin at screen {left}\nset rmargin at screen {right}\n"
            f"set bmargin at screen {bottom}\nset tmargin at screen {top}\n")


def legend(entries, top=0.2):
    """One legend for the whole figure, across its width below the panels:
    an empty plot whose key shows entries ('with ... title ...' strings)."""
    return (panel(0.02, 0.98, bottom=0.01, top=top) +
            "unset title\nunset xlabel\nunset ylabel\nunset tics\n"
            "unset border\nunset grid\nunset logscale\nunset label\n"
            "set xrange [0:1]\nset yrange [0:1]\n"
            "set key center center horizontal samplen 2 spacing 1.2 "
            "width 2\nplot " + ", ".join(f"NaN {e}" for e in entries) +
            "\n")


def plot_throughput(results, outdir):
    """Echo 64 B msgs/s vs connections: a panel per pipeline depth, each
    with its own linear scale (so pipeline 1 is readable), one legend."""
    series = {}
    for e in results["cases"]:
        p = e["params"]
        if e["group"] != "echo" or p.get("size") != 64:
            continue
        for v in e["variants"]:
            s = v["summary"].get("msgs_per_sec")
            if s:
                series.setdefault(p["pipeline"], {}).setdefault(
                    (v["server"], v["label"]), []).append((p["conns"], s))
    if not series:
        return None
    data = outdir / "throughput-vs-conns.dat"
    order = list(COLORS)
    blocks, idx, panels, keys = [], 0, [], []
    for pipe in sorted(series):
        plots = []
        for (kind, label), pts in sorted(series[pipe].items(), key=lambda kv: (
                order.index(kv[0][0]) if kv[0][0] in order else 99)):
            blocks.append(f"# {label} pipeline {pipe}\n" + "".join(
                f"{c} {s[0]} {s[1]} {s[2]}\n" for c, s in sorted(pts)))
            plots.append(f"'{data}' index {idx} using 1:2:3:4 with "
                         f"yerrorlines lw 2 ps 0.8 {style(kind)} notitle")
            entry = (f"with linespoints lw 2 {style(kind)} "
                     f"title {gq(label)}")
            if entry not in keys:
                keys.append(entry)
            idx += 1
        panels.append((pipe, plots))
    svg = outdir / "throughput-vs-conns.svg"
    n = len(panels)
    script = svg_term() + (
        f"set output '{svg}'\n"
        "set multiplot title 'Echo 64 B: messages/s vs connections "
        "(higher is better; server on 1 core; median, bars min-max)'\n"
        "set logscale x\nset xrange [0.7:1500]\nset xlabel 'connections'\n"
        "set format y '%.1s%c'\nset yrange [0:*]\n")
    for i, (pipe, plots) in enumerate(panels):
        left = 0.07 + i * 0.93 / n
        script += panel(left, left + 0.93 / n - 0.07)
        script += (f"set title 'pipeline {pipe}'\n"
                   f"set ylabel {gq('messages/s' if i == 0 else '')}\n")
        script += "plot " + ", \\\n  ".join(plots) + "\n"
    script += legend(keys) + "unset multiplot\n"
    gnuplot(script, {data: "\n\n".join(blocks)})
    return svg


def plot_latency(results, outdir):
    """Round-trip percentiles per server (ping-pong 64 B, 1 connection)."""
    entry = next((e for e in results["cases"] if e["group"] == "latency"),
                 None)
    if entry is None:
        return None
    keys = [("lat_p50", "p50"), ("lat_p90", "p90"), ("lat_p99", "p99"),
            ("lat_p999", "p99.9"), ("lat_max", "max")]
    rows = []
    for v in entry["variants"]:
        vals = [v["summary"].get(k, [None])[0] for k, _ in keys]
        if all(x is not None and x > 0 for x in vals):
            rows.append((v, vals))
    if not rows:
        return None
    data = outdir / "latency.dat"
    text = "".join(f"{i} {name} " + " ".join(str(r[1][i]) for r in rows)
                   + "\n" for i, (_, name) in enumerate(keys))
    plots, entries = [], []
    for j, (v, _) in enumerate(rows):
        dash = "dt 1" if v["client"] == "sockit-client" else "dt 2"
        plots.append(f"'{data}' using 1:{j + 3}:xtic(2) with linespoints "
                     f"lw 2 {dash} {style(v['server'])} notitle")
        entries.append(f"with linespoints lw 2 {dash} {style(v['server'])} "
                       f"title {gq(v['label'] + ' (' + v['client'] + ')')}")
    svg = outdir / "latency.svg"
    script = svg_term() + (
        f"set output '{svg}'\nset multiplot\n" + panel(0.09, 0.97) +
        "set title 'Ping-pong round trip, 64 B, 1 connection: percentiles "
        "(lower is better; median of runs; log scale)'\n"
        "set logscale y\nset ylabel 'round trip µs'\n"
        "set xlabel 'percentile'\nunset key\n"
        f"set xrange [-0.3:{len(keys) - 0.7}]\n"
        "plot " + ", \\\n  ".join(plots) + "\n" + legend(entries) +
        "unset multiplot\n")
    gnuplot(script, {data: text})
    return svg


def plot_cpu_floor(results, outdir):
    """Server CPU µs per message in the 64 B echo cases, the floor among
    the bars (clustered by case)."""
    cases = [e for e in results["cases"] if e["group"] == "echo" and
             e["params"].get("size") == 64]
    kinds = []
    for e in cases:
        for v in e["variants"]:
            if (v["summary"].get("server_cpu_us_per_msg") and
                    (v["server"], v["label"]) not in kinds):
                kinds.append((v["server"], v["label"]))
    if not kinds:
        return None
    order = list(COLORS)
    kinds.sort(key=lambda k: order.index(k[0]) if k[0] in order else 99)
    lines = []
    for e in cases:
        p = e["params"]
        vals = []
        for kind, label in kinds:
            v = next((x for x in e["variants"] if x["server"] == kind and
                      x["label"] == label), None)
            s = v["summary"].get("server_cpu_us_per_msg") if v else None
            vals.append(f"{s[0]:.4g}" if s else "?")
        lines.append(f"\"{p['conns']} conn, p{p['pipeline']}\" " +
                     " ".join(vals))
    data = outdir / "cpu-vs-floor.dat"
    plots = [f"'{data}' using {i + 2}{':xtic(1)' if i == 0 else ''} "
             f"lc rgb '{COLORS.get(k, '#000000')}' notitle"
             for i, (k, _) in enumerate(kinds)]
    entries = [f"with boxes fill solid 0.85 lc rgb "
               f"'{COLORS.get(k, '#000000')}' title {gq(lbl)}"
               for k, lbl in kinds]
    svg = outdir / "cpu-vs-floor.svg"
    script = svg_term() + (
        f"set output '{svg}'\nset multiplot\nunset key\n" +
        panel(0.08, 0.97) +
        "set title 'Server CPU per message, echo 64 B, against the floor "
        "(lower is better; median of runs)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.85 border rgb '#333333'\n"
        "set boxwidth 0.9\nset logscale y\nset yrange [0.1:*]\n"
        "set ylabel 'server CPU µs per message (log scale)'\n"
        "set xlabel 'connections, messages in flight per connection'\n"
        "plot " + ", \\\n  ".join(plots) + "\n" + legend(entries) +
        "unset multiplot\n")
    gnuplot(script, {data: "\n".join(lines) + "\n"})
    return svg


UDP_SERIES = (
    # (server kind, label substring, legend, colour)
    ("sockit-udp", "--mode sockperf", "sockit-server --mode sockperf",
     "#0072B2"),
    ("sockit-udp", "UDP echo", "sockit-server UDP echo / discard (plain "
     "payload)", "#56B4E9"),
    ("sockperf-udp", "", "sockperf server", "#999999"))


def plot_udp(results, outdir):
    """UDP against sockperf's server and iperf3: datagrams/s and server CPU
    per datagram per case (log scales), one-way Gbit/s with the loss."""
    cases = [e for e in results["cases"]
             if e["group"] in ("udp-echo", "udp-oneway")]
    if not cases:
        return None

    def pick(e, kind, sub):
        return next((v for v in e["variants"] if v["server"] == kind and
                     sub in v["label"]), None)

    def cell(v, key):
        s = v["summary"].get(key) if v else None
        return f"{s[0]:.4g}" if s and s[0] > 0 else "?"

    def name(e):
        p = e["params"]
        if e["id"].startswith("udp-sockperf-"):
            return "sockperf " + e["title"].split()[2] + " client"
        return (f"{p.get('conns')} socket(s) x{p.get('pipeline')}, "
                "batching client")

    echo = [e for e in cases if e["group"] == "udp-echo"]
    ser = UDP_SERIES
    files, plots = {}, []
    for key, fname in (("msgs_per_sec", "udp-rate.dat"),
                       ("server_cpu_us_per_msg", "udp-cpu.dat")) if echo \
            else ():
        data = outdir / fname
        files[data] = "".join(
            f"\"{name(e)}\" " + " ".join(cell(pick(e, k, sub), key)
                                       for k, sub, _, _ in ser) + "\n"
            for e in echo)
        plots.append([f"'{data}' using {j + 2}{':xtic(1)' if j == 0 else ''}"
                      f" lc rgb '{col}' notitle"
                      for j, (_, _, _, col) in enumerate(ser)])
    ow = next((e for e in cases if e["group"] == "udp-oneway"), None)
    ow_rows = []  # (tic, colour, Gbit/s, loss %)
    for v in (ow["variants"] if ow else []):
        g = v["summary"].get("gbit_per_sec")
        if g:
            loss = v["summary"].get("loss_pct", [None])[0]
            tic = ("sockit-server" if v["server"] == "sockit-udp"
                   else v["label"])
            ow_rows.append((tic, "#56B4E9" if v["server"] == "sockit-udp"
                            else "#CC79A7", g[0], loss))
    svg = outdir / "udp.svg"
    script = svg_term(1100, 560) + (
        f"set output '{svg}'\nset multiplot title 'UDP, 64 B echo and 1472 B "
        "one way, server on 1 core (median of runs)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.85 border rgb '#333333'\nset boxwidth 0.9\n"
        "set xtics rotate by -30\nunset key\n")
    titles = (("datagrams/s answered or received (higher is better)",
               "datagrams/s", "set format y '%.1s%c'\n"),
              ("server CPU per datagram (lower is better)", "µs",
               "set format y '%g'\n"))
    for i, (title, ylabel, fmt) in enumerate(titles if echo else ()):
        script += panel(0.07 + i * 0.36, 0.34 + i * 0.36, bottom=0.34)
        script += (f"set title {gq(title)}\n"
                   f"set ylabel {gq(ylabel + ' (log scale)')}\n"
                   "set logscale y\n"
                   f"set yrange [{'10' if i == 0 else '0.1'}:*]\n{fmt}")
        script += "plot " + ", \\\n  ".join(plots[i]) + "\n"
    if ow_rows:
        data = outdir / "udp-oneway.dat"
        files[data] = "".join(
            f"{j} {g:.4g} \"{tic}\" "
            f"\"{'' if loss is None else f'loss {loss:.1f} %'}\"\n"
            for j, (tic, _, g, loss) in enumerate(ow_rows))
        script += panel(0.80, 0.98, bottom=0.34)
        script += ("set title 'one way 1472 B (higher is better)'\n"
                   "unset logscale y\nset yrange [0:*]\n"
                   "set ylabel 'Gbit/s received'\nset format y '%g'\n"
                   f"set xrange [-0.6:{len(ow_rows) - 0.4}]\n"
                   "set boxwidth 0.8\n")
        script += "plot " + ", \\\n  ".join(
            f"'{data}' every ::{j}::{j} using 1:2:xtic(3) with boxes "
            f"lc rgb '{col}' notitle"
            for j, (_, col, _, _) in enumerate(ow_rows)) + (
            f", '{data}' using 1:2:4 with labels offset 0,0.8 notitle\n")
    keys = [(lbl, col) for _, _, lbl, col in ser] if echo else []
    if ow_rows:
        if not echo:
            keys.append((UDP_SERIES[1][2], UDP_SERIES[1][3]))
        keys.append(("iperf3 -s (its own client, one way)", "#CC79A7"))
    if not echo and not ow_rows:
        return None
    script += legend([f"with boxes fill solid 0.85 lc rgb '{col}' "
                      f"title {gq(lbl)}" for lbl, col in keys],
                     top=0.12) + "unset multiplot\n"
    gnuplot(script, files)
    return svg


def plot_tls(tls, outdir):
    """bench/tls_peers.py: handshakes/s per server (left, log scale), TLS
    echo msgs/s and bulk MB/s against openssl speed (right)."""
    if not tls:
        return None
    kinds = tls["servers"]
    labels = tls.get("labels", {})
    names = {"ecdsa": "P-256", "rsa": "RSA"}
    hs = [r for r in tls["rows"] if r["test"] == "handshake" and
          r["tool"] == "sockit-client"]
    other = {r["test"]: r for r in tls["rows"] if r["test"] in
             ("echo", "bulk")}

    def med(r, k):
        s = r["servers"].get(k, {}).get("summary", {}).get("rate")
        return f"{s[0]:.4g}" if s and s[0] > 0 else "?"

    files, panels = {}, []
    if hs:
        data = outdir / "tls-handshakes.dat"
        files[data] = "".join(
            f"\"{names[r['key']]} {r['proto']} "
            f"{'res' if r['resume'] else 'full'}\" " +
            " ".join(med(r, k) for k in kinds) + "\n" for r in hs)
        panels.append(("handshakes/s (sockit-client connect), log scale",
                       "handshakes/s", data, True))
    for test, ylabel in (("echo", "messages/s"), ("bulk", "MB/s")):
        r = other.get(test)
        if r:
            data = outdir / f"tls-{test}.dat"
            files[data] = f"\"{test}\" " + " ".join(
                med(r, k) for k in kinds) + "\n"
            what = "4 KiB" if test == "echo" else "one way"
            panels.append((f"{test} ({what})", ylabel, data, False))
    if len(panels) == 1:
        panels = [(t, y, d, False) for t, y, d, _ in panels]
    if not panels:
        return None
    svg = outdir / "tls.svg"
    ref = tls.get("reference", {}).get("rate")
    script = svg_term(1100, 560) + (
        f"set output '{svg}'\n"
        "set multiplot title 'TLS on one server core (higher is better; "
        "median of runs)'\n"
        "set style data histograms\nset style histogram clustered gap 1\n"
        "set style fill solid 0.85 border rgb '#333333'\nset boxwidth 0.9\n"
        "set xtics rotate by -30\n")
    widths = [0.55 if p[3] else 0.45 / max(1, len(panels) - 1)
              for p in panels] if len(panels) > 1 else [1.0]
    left = 0.0
    for i, (title, ylabel, data, logy) in enumerate(panels):
        w = widths[i]
        script += panel(left + 0.07, left + w - 0.02, bottom=0.3)
        left += w
        script += (f"set title {gq(title)}\nset ylabel {gq(ylabel)}\n" +
                   ("set logscale y\nset yrange [10:*]\nset format y '%g'\n"
                    if logy else "unset logscale y\nset yrange [0:*]\n"
                    "set format y '%.1s%c'\n"))
        script += "unset key\n"
        plots = [f"'{data}' using {j + 2}{':xtic(1)' if j == 0 else ''} "
                 f"lc rgb '{COLORS.get(k, '#000000')}' notitle"
                 for j, k in enumerate(kinds)]
        if "bulk" in str(data) and ref:
            script += f"set yrange [0:{ref * 1.1:.0f}]\n"
            plots.append(f"{ref:.0f} with lines lw 2 dt 2 lc rgb '#000000' "
                         "notitle")
            script += (f"set label 1 'openssl speed' at graph 0.03, first "
                       f"{ref * 1.03:.0f} front\n")
        script += "plot " + ", \\\n  ".join(plots) + "\n"
    script += legend([f"with boxes fill solid 0.85 lc rgb "
                      f"'{COLORS.get(k, '#000000')}' "
                      f"title {gq(labels.get(k, k))}" for k in kinds],
                     top=0.12) + "unset multiplot\n"
    gnuplot(script, files)
    return svg


# ---------------------------------------------------------------------------
# Machine, documentation, results


def sh(argv):
    """First line of a command's output, or '?'."""
    try:
        r = subprocess.run(argv, capture_output=True, timeout=10)
        text = ANSI.sub("", (r.stdout + r.stderr).decode(errors="replace"))
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        return lines[0] if lines else "?"
    except (OSError, subprocess.SubprocessError):
        return "?"


def machine_info(cfg):
    """Facts about the machine and the peer versions, for the report."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / (1 << 20):.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    debian = "?"
    try:
        debian = Path("/etc/debian_version").read_text().strip()
    except OSError:
        pass
    commit = sh(["git", "-C", str(ROOT), "describe", "--always", "--dirty"])
    return {
        "date": datetime.datetime.now().astimezone().isoformat(
            timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": model,
        "memory": mem,
        "kernel": platform.release(),
        "os": f"Debian {debian}",
        "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0],
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "server_cpu": cfg.server_cpu,
        "client_cpu": cfg.client_cpu,
        "sockit": commit,
        "cc": sh(["cc", "--version"]),
        "python": platform.python_version(),
        "libuv": sh(["pkg-config", "--modversion", "libuv"]),
        "libevent": sh(["pkg-config", "--modversion", "libevent"]),
        "sockperf": sh(["sockperf", "--version"]),
        "iperf3": sh(["iperf3", "--version"]),
        "socat": sh(["sh", "-c", "socat -V | grep 'socat version'"]),
        "gnuplot": sh(["gnuplot", "--version"]),
    }


def show_cmd(cmd, ports, out_dir):
    """A recorded command as the doc shows it: paths relative to the repo,
    the output directory as $OUT, the run's ports as PORT (and BACKPORT)."""
    cmd = cmd.replace(str(ROOT) + "/", "")
    if out_dir:
        cmd = cmd.replace(rel(out_dir), "$OUT").replace(str(out_dir), "$OUT")
    for port, name in zip(ports, ("PORT", "BACKPORT")):
        cmd = re.sub(rf"(?<!\d){port}(?!\d)", name, cmd)
    return cmd


def commands_md(results):
    """The exact commands of every row."""
    out = []
    out_dir = results["config"].get("out")
    for e in results["cases"]:
        out.append(f"**{e['title']}** (`{e['id']}`)\n")
        out.append("```sh")
        for v in e["variants"]:
            if "client_cmd" not in v:
                out.append(f"# {v['label']} / {v['client']}: not measured")
                continue
            ports = v.get("ports", [])
            out.append(f"# {v['label']} / {v['client']}")
            for c in v["server_cmd"].split(" ; "):
                out.append(show_cmd(c, ports, out_dir) + " &")
            out.append(show_cmd(v["client_cmd"], ports, out_dir))
        out.append("```\n")
    return "\n".join(out)


# ---------------------------------------------------------------------------
# The issue's targets, judged from the run


def _med(v, key):
    s = v["summary"].get(key) if v else None
    return s[0] if s and s[0] else None


def _find(entry, server, client=None):
    for v in entry["variants"] if entry else []:
        if v["server"] == server and (client is None or v["client"] == client):
            return v
    return None


def _ratio(a, b):
    return a / b if a is not None and b else None


def _r(x):
    return "n/a" if x is None else f"{x:.2f}×"


def targets_md(results):
    """The 'Against the targets' table: each target of issue 5 with the
    same-run ratios it is judged on and a verdict."""
    cases = {e["id"]: e for e in results["cases"]}
    rows = []

    def verdict(ok):
        return "n/a" if ok is None else ("**met**" if ok else "**missed**")

    def judge(pairs, ok_fn):
        """pairs: (label, value); all must pass; None values are n/a."""
        vals = [v for _, v in pairs if v is not None]
        if not vals:
            return "n/a", ""
        ok = all(ok_fn(v) for v in vals)
        detail = "; ".join(f"{lbl} {_r(v)}" for lbl, v in pairs)
        if len(vals) < len(pairs):
            detail += " (the n/a ones are not judged)"
        return verdict(ok), detail

    echo = [(e["title"].replace("echo ", ""), e["params"].get("size", 0),
             _ratio(_med(_find(e, "sockit"), "msgs_per_sec"),
                    _med(_find(e, "uv"), "msgs_per_sec")))
            for e in results["cases"] if e["group"] == "echo"]
    pairs = [(t, r) for t, _, r in echo]
    met = sum(1 for _, v in pairs if v is not None and v >= 1.3)
    v, d = judge(pairs, lambda x: x >= 1.3)
    rows.append(("echo msgs/s ≥ 1.3× libuv at every size and connection count",
                 f"{v} (met in {met} of {len(pairs)} cases): {d}"))
    pairs = [(t, r) for t, size, r in echo if size >= 4096]
    v, d = judge(pairs, lambda x: x >= 1.0)
    rows.append(("echo bulk (4 KiB messages) ≥ libuv", f"{v}: {d}"))

    lat = cases.get("latency-64B")
    tp = cases.get("sockperf-tp-64B")
    sp_pp = (_find(lat, "sockit", "sockperf"), _find(lat, "sockperf"))
    sp_tp = (_find(tp, "sockit"), _find(tp, "sockperf"))
    pairs = [("ping-pong round trips/s (sockperf's client)",
              _ratio(_med(sp_pp[0], "msgs_per_sec"),
                     _med(sp_pp[1], "msgs_per_sec"))),
             ("throughput msgs/s (sockperf's client)",
              _ratio(_med(sp_tp[0], "msgs_per_sec"),
                     _med(sp_tp[1], "msgs_per_sec")))]
    v, d = judge(pairs, lambda x: x >= 1.0)
    rows.append(("echo msgs/s ≥ 1.0× sockperf's server", f"{v}: {d}"))
    pairs = [("ping-pong", _ratio(_med(sp_pp[0], "server_cpu_us_per_msg"),
                                  _med(sp_pp[1], "server_cpu_us_per_msg"))),
             ("throughput", _ratio(_med(sp_tp[0], "server_cpu_us_per_msg"),
                                   _med(sp_tp[1], "server_cpu_us_per_msg")))]
    v, d = judge(pairs, lambda x: x <= 0.8)
    rows.append(("server CPU per message ≤ 0.8× sockperf's server", f"{v}: {d}"))

    pairs = []
    mine = _find(lat, "sockit", "sockit-client")
    for key, name in (("lat_p50", "p50"), ("lat_p99", "p99")):
        peers = [_med(_find(lat, k, "sockit-client"), key) for k in ("uv", "ev")]
        peers = [x for x in peers if x is not None]
        pairs.append((f"{name} vs best of libuv/libevent (sockit-client)",
                      _ratio(_med(mine, key), min(peers) if peers else None)))
        pairs.append((f"{name} vs sockperf server (sockperf's client)",
                      _ratio(_med(sp_pp[0], key), _med(sp_pp[1], key))))
    v, d = judge(pairs, lambda x: x <= 1.0)
    rows.append(("p50 and p99 ping-pong latency no worse than the best peer",
                 f"{v}: {d} (below 1 is better)"))

    pairs = []
    for e in results["cases"]:
        if e["group"] == "oneway":
            pairs.append((f"{e['params'].get('conns')} stream(s)",
                          _ratio(_med(_find(e, "sockit"), "gbit_per_sec"),
                                 _med(_find(e, "iperf3"), "gbit_per_sec"))))
    v, d = judge(pairs, lambda x: x >= 0.9)
    rows.append(("one-way bulk TCP ≥ 0.9× iperf3", f"{v}: {d} (each with "
                 "its own client: sockit-client, iperf3 -c)"))
    fe = next((e for e in results["cases"] if e["group"] == "file"), None)
    pairs = [("--file vs iperf3 -F",
              _ratio(_med(_find(fe, "sockit", "sockit-client --file"),
                          "gbit_per_sec"),
                     _med(_find(fe, "iperf3"), "gbit_per_sec")))]
    v, d = judge(pairs, lambda x: x >= 0.9)
    rows.append(("file transfer with sendfile ≥ 0.9× iperf3", f"{v}: {d}"))
    ie = next((e for e in results["cases"] if e["group"] == "idle"), None)
    a = _med(_find(ie, "sockit"), "rss_bytes_per_conn")
    b = _med(_find(ie, "uv"), "rss_bytes_per_conn")
    v, d = judge([("sockit ÷ libuv", _ratio(a, b))], lambda x: x < 1.0)
    rows.append(("user-space memory per idle connection below libuv's",
                 f"{v}: {d} ({fmt_num(a) if a else 'n/a'} vs "
                 f"{fmt_num(b) if b else 'n/a'} bytes)"))
    he = next((e for e in results["cases"] if e["group"] == "held"), None)
    hv = _find(he, "sockit")
    mx = _med(hv, "fresh_ms_max")
    rows.append((f"{he['params'].get('conns') if he else 19000} connections "
                 "held, a new client answered in < 10 ms",
                 "n/a" if mx is None else
                 f"{verdict(mx < 10)}: fresh client p50 "
                 f"{fmt_num(_med(hv, 'fresh_ms_p50'))} ms, max {fmt_num(mx)} "
                 "ms (median over runs of each run's max)"))
    pairs = []
    for e in results["cases"]:
        base = _find(e, "sockit")
        key, ck = GROUPS[e["group"]].primary, GROUPS[e["group"]].cpu
        parts = []
        for kind, name in (("sockit-uring", "backend"),
                           ("ur", "completion echo")):
            u = _find(e, kind)
            if u is not None:
                parts.append(f"{name} {_r(_ratio(_med(u, key), _med(base, key)))}"
                             f"/{_r(_ratio(_med(u, ck), _med(base, ck)))}")
        if parts:
            pairs.append(f"{e['title']}: " + ", ".join(parts))
    rows.append(("io_uring: where it wins. Each entry: sockit's io_uring "
                 "backend, then the completion-based io_uring peer "
                 "(multishot recv, provided buffers, sends batched with the "
                 "wait), each as rate/CPU relative to sockit-server on epoll "
                 "(primary metric above 1 and CPU below 1 favour io_uring; "
                 "for latency the primary metric is p50, lower is better)",
                 "; ".join(pairs) if pairs else "n/a: no io_uring rows"))
    for peer, name, limit in (("floor", "the floor (thread per connection)",
                               1.1),
                              ("floor-epoll", "the bare epoll loop", 1.1),
                              ("uv", "libuv's", 0.75)):
        pairs = []
        for pipe in (1, 16):
            e = cases.get(f"echo-64B-c100-p{pipe}")
            pairs.append((f"pipeline {pipe}",
                          _ratio(_med(_find(e, "sockit"),
                                      "server_cpu_us_per_msg"),
                                 _med(_find(e, peer),
                                      "server_cpu_us_per_msg"))))
        v, d = judge(pairs, lambda x, lim=limit: x <= limit)
        rows.append((f"server CPU per message, echo 64 B × 100 connections, "
                     f"≤ {limit}× {name} (same run)",
                     f"{v}: {d} (below 1 is better)"))
    # UDP (issue 16): both sockperf-speaking servers driven by one batching
    # client (sockit-client --udp --sockperf).
    sp = "sockit-client --udp --sockperf"
    rate, cpu = [], []
    for conns in (1, 100):
        e = cases.get(f"udp-echo-64B-c{conns}")
        mine, peer = _find(e, "sockit-udp", sp), _find(e, "sockperf-udp", sp)
        rate.append((f"{conns} socket(s)",
                     _ratio(_med(mine, "msgs_per_sec"),
                            _med(peer, "msgs_per_sec"))))
        cpu.append((f"{conns} socket(s)",
                    _ratio(_med(mine, "server_cpu_us_per_msg"),
                           _med(peer, "server_cpu_us_per_msg"))))
    v, d = judge(rate, lambda x: x >= 1.5)
    rows.append(("UDP echo 64 B replies/s ≥ 1.5× sockperf's server "
                 "(one batching client for both)", f"{v}: {d}"))
    v, d = judge(cpu, lambda x: x <= 0.6)
    rows.append(("UDP server CPU per datagram ≤ 0.6× sockperf's server",
                 f"{v}: {d} (below 1 is better)"))
    ow = cases.get("udp-oneway-1472B")
    mine, peer = _find(ow, "sockit-udp"), _find(ow, "iperf3")
    v, d = judge([("received Gbit/s vs iperf3 -u",
                   _ratio(_med(mine, "gbit_per_sec"),
                          _med(peer, "gbit_per_sec")))], lambda x: x >= 1.0)
    loss = [_med(x, "loss_pct") for x in (mine, peer)]
    rows.append(("one-way UDP 1472 B with GSO ≥ 1.0× iperf3 -u, loss "
                 "reported",
                 f"{v}: {d} (each with its own client: sockit-client "
                 "sends GSO trains, iperf3 -c -u one datagram per call; "
                 f"loss: sockit "
                 f"{'n/a' if loss[0] is None else f'{loss[0]:.1f} %'}, "
                 f"iperf3 {'n/a' if loss[1] is None else f'{loss[1]:.1f} %'})"))
    rows += tls_target_rows(results.get("tls"), judge)
    out = ["| target | result |", "|---|---|"]
    out += [f"| {t} | {r} |" for t, r in rows]
    return "\n".join(out) + "\n"


TLS_HEADING = "## TLS handshakes: full and resumed"
TLS_PEERS_HEADING = "## TLS against peers: handshakes, echo and bulk"


FORWARD_HEADING = ("## Forwarding: relay throughput and added latency "
                   "(issue 15)")


def kept_section(doc, heading):
    """A hand-kept section of the current doc (from its heading to the next
    '## '), so that rewriting the doc without the data keeps it."""
    try:
        text = doc.read_text()
    except OSError:
        return ""
    alt = (TLS_PEERS_HEADING,) if heading == TLS_HEADING else ()
    for h in (heading,) + alt:
        start = text.find("\n" + h + "\n")
        if start >= 0:
            end = text.find("\n## ", start + 1)
            return text[start + 1:end + 1 if end >= 0 else None]
    return ""


def tls_md(tls):
    """docs/PERFORMANCE.md's TLS section from bench/tls_peers.py's JSON."""
    kinds = tls["servers"]
    labels = tls.get("labels", {})
    cfgt = tls["config"]
    names = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
    ktls = tls.get("ktls", {})
    ref = tls.get("reference", {})
    out = [TLS_PEERS_HEADING, "",
           f"From `bench/tls_peers.py` ({tls['machine'].get('date', '?')}; "
           f"median (min–max) of {cfgt['runs']} run(s) of "
           f"{cfgt['duration']:g} s; regenerate with `python3 "
           "bench/tls_peers.py` then `python3 bench/run.py --from "
           "bench/results/<run>/results.json --tls "
           "bench/results/<tls-run>/tls.json --write-doc`). Every server "
           f"side is pinned to core {tls['machine'].get('server_cpu', 0)}, "
           f"the load generator to core "
           f"{tls['machine'].get('client_cpu', 1)}. In brackets: the ratio "
           "to nginx (above 1 is better for rates, below 1 for CPU).", "",
           "- Kernel TLS: **" +
           ("available" if ktls.get("available") else "not available") +
           f"** here ({ktls.get('detail', '?')}): every server does TLS in "
           "user space.",
           f"- Same certificates (self-signed ECDSA P-256 and RSA-2048) and "
           f"ciphers for all: the clients offer only "
           f"{cfgt['ciphers']['1.3']} (TLS 1.3) or "
           f"{cfgt['ciphers']['1.2']} (TLS 1.2), through an OPENSSL_CONF "
           "file that also pins the protocol version.",
           "- Handshakes: `sockit-client --bench --bench-mode connect --tls "
           f"[--tls-resume]` with {cfgt['conns']} in flight, cross-checked "
           "with `openssl s_time -new/-reuse` (one at a time, bound by round "
           "trips). nginx answers handshakes with `return \"\";` (no "
           "backend); stunnel, HAProxy and socat relay every connection to a "
           "plaintext sockit-server backend on the same core.",
           "- Versions: " + "; ".join(
               f"{tls['machine'].get(k, '?')}" for k in
               ("nginx", "stunnel", "haproxy", "socat", "openssl")) + ".",
           "- CPU summed for each server: " + "; ".join(
               f"{labels.get(k, k)}: {v}" for k, v in
               tls.get("cpu_summed", {}).items()) + ".", ""]

    def cellr(kind, s, cpu=False):
        summ = s.get("summary", {})
        if not summ.get("rate"):
            return "n/a"
        txt = cell(summ, "rate")
        if "ratio" in s and kind != "nginx":
            txt += f" [{s['ratio']:.2f}×]"
        if cpu:
            ck = next((k for k in summ if k.startswith("server_cpu_us_per_")),
                      None)
            if ck:
                txt += f"; {fmt_num(summ[ck][0])} µs"
        return txt

    for tool, title in (("sockit-client", "sockit-client, "
                         f"{cfgt['conns']} in flight: handshakes/s; server "
                         "CPU µs per handshake"),
                        ("s_time", "openssl s_time, one at a time: "
                         "handshakes/s (cross-check)")):
        rows = [r for r in tls["rows"] if r["test"] == "handshake" and
                r["tool"] == tool]
        if not rows:
            continue
        out.append(f"**{title}**\n")
        head = ["key", "TLS", "handshake"] + [labels.get(k, k) for k in kinds]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            c = [names[r["key"]], r["proto"],
                 "resumed" if r["resume"] else "full"]
            c += [cellr(k, r["servers"].get(k, {}), tool == "sockit-client")
                  for k in kinds]
            out.append("| " + " | ".join(c) + " |")
        out.append("")
    rows = [r for r in tls["rows"] if r["test"] in ("echo", "bulk")]
    if rows:
        e, b = cfgt["echo"], cfgt["bulk"]
        out.append("**Echo and bulk (ECDSA P-256, TLS 1.3): rate; server "
                   "CPU µs per message / per MB**\n")
        head = ["measurement"] + [labels.get(k, k) for k in kinds]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join("---" for _ in head) + "|")
        for r in rows:
            what = (f"echo {e['size'] // 1024} KiB, {e['conns']} conns, "
                    "msgs/s" if r["test"] == "echo" else
                    f"one way {b['size'] // 1024} KiB writes, MB/s")
            out.append("| " + " | ".join(
                [what] + [cellr(k, r["servers"].get(k, {}), True)
                          for k in kinds]) + " |")
        out.append("")
        bulk = next((r for r in rows if r["test"] == "bulk"), None)
        if bulk and ref.get("rate"):
            out.append(
                f"Reference: `{ref.get('cmd', 'openssl speed')}` = "
                f"{fmt_num(ref['rate'])} MB/s on the server core; bulk ÷ "
                "reference: " + ", ".join(
                    f"{labels.get(k, k)} "
                    f"{s['summary']['rate'][0] / ref['rate']:.2f}×"
                    for k, s in bulk["servers"].items()
                    if s.get("summary", {}).get("rate")) + ".\n")
    cmds = []
    for r in tls["rows"]:
        cmd = r["servers"].get("sockit", {}).get("cmd")
        if cmd and (r["test"] != "handshake" or (r["key"], r["proto"]) ==
                    ("ecdsa", "1.3")):
            cmd = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT",
                         cmd.replace(str(ROOT) + "/", ""))
            cmd = re.sub(r"OPENSSL_CONF=\S+", "OPENSSL_CONF=client-tls1.3.cnf",
                         cmd)
            cmds.append(f"# {r['id']}\n{cmd}")
    if cmds:
        out += ["The load generators' commands (TLS 1.3 shown; the "
                "configurations of every server, the client's OpenSSL file "
                "and the certificates are in `bench/tls_peers.py`):", "",
                "```sh"] + cmds + ["```", ""]
    errs = [f"- {r['id']}, {labels.get(k, k)}: {x}"
            for r in tls["rows"] for k, s in r["servers"].items()
            for x in s.get("errors", [])]
    notes = [f"- {n}" for n in tls.get("notes", [])]
    if errs or notes:
        out += notes + errs + [""]
    return "\n".join(out) + "\n"


def tls_rate(tls, server, key, proto, resume, tool="sockit-client"):
    """Median rate of one tls_peers.py handshake cell, or None."""
    for row in (tls or {}).get("rows", []):
        if (row["test"] == "handshake" and row["key"] == key and
                row["proto"] == proto and row["resume"] == resume and
                row["tool"] == tool):
            s = row["servers"].get(server, {}).get("summary", {}).get("rate")
            return s[0] if s else None
    return None


def tls_target_rows(tls, judge):
    """Issue 16's TLS targets, judged from bench/tls_peers.py's results."""
    if not tls:
        return [("TLS targets (full handshakes ≥ 1.0× nginx, resumed ≥ 3× "
                 "full, bulk ≥ 0.9× openssl speed)",
                 "n/a: no bench/tls_peers.py results given (--tls)")]
    cells = [(k, p) for k in ("ecdsa", "rsa") for p in ("1.3", "1.2")]
    names = {"ecdsa": "P-256", "rsa": "RSA-2048"}
    rows = []
    pairs = [(f"{names[k]} TLS {p}",
              _ratio(tls_rate(tls, "sockit", k, p, False),
                     tls_rate(tls, "nginx", k, p, False))) for k, p in cells]
    v, d = judge(pairs, lambda x: x >= 1.0)
    rows.append(("full TLS handshakes/s ≥ 1.0× nginx on one core "
                 "(sockit-client connect)", f"{v}: {d}"))
    pairs = [(f"{names[k]} TLS {p}",
              _ratio(tls_rate(tls, "sockit", k, p, True),
                     tls_rate(tls, "sockit", k, p, False)))
             for k, p in cells]
    v, d = judge(pairs, lambda x: x >= 3.0)
    rows.append(("resumed TLS handshakes/s ≥ 3× full (sockit-server)",
                 f"{v}: {d}"))
    bulk = next((r for r in tls.get("rows", []) if r["test"] == "bulk"),
                None)
    mine = (bulk or {}).get("servers", {}).get("sockit", {}).get(
        "summary", {}).get("rate")
    ref = tls.get("reference", {}).get("rate")
    v, d = judge([("sockit bulk ÷ openssl speed -evp aes-128-gcm 16 KiB",
                   _ratio(mine[0] if mine else None, ref))],
                 lambda x: x >= 0.9)
    ktls = tls.get("ktls", {})
    rows.append(("TLS bulk ≥ 0.9× openssl speed aes-128-gcm at 16 KiB per "
                 "core", f"{v}: {d}; kernel TLS "
                 f"{'available' if ktls.get('available') else 'not available'}"
                 f" ({ktls.get('detail', '?')})"))
    return rows


def write_doc(results, doc, plots):
    """Rewrite docs/PERFORMANCE.md (and its plots) from the results."""
    mi = results["machine"]
    cfg = results["config"]
    perf = doc.parent / "perf"
    perf.mkdir(parents=True, exist_ok=True)
    imgs = []
    for title, svg in plots:
        if svg:
            shutil.copy(svg, perf / svg.name)
            imgs.append(f"![{title}](perf/{svg.name})\n")
    notes = "".join(f"- {n}\n" for n in results.get("notes", []))
    tls_section = (tls_md(results["tls"]) if results.get("tls") else
                   kept_section(doc, TLS_HEADING)).rstrip("\n")
    if tls_section:
        tls_section += "\n"
    # bench/forward.py's section is pasted by hand (its --markdown output):
    # kept as it is.
    fwd_section = kept_section(doc, FORWARD_HEADING).rstrip("\n")
    if fwd_section:
        fwd_section += "\n\n"
    text = f"""# sockit performance

Generated by `bench/run.py` ({'--quick, ' if cfg['quick'] else ''}{cfg['runs']}
run(s) per case) on {mi['date']}. Regenerate with `make bench` (all cases,
then `python3 bench/run.py --write-doc`) or
`python3 bench/run.py --from bench/results/<run>/results.json --write-doc`.
Every number here comes from one run of the script: the peers were measured
right next to sockit, on the same machine, with the same load generator where
the protocol allows.

## Machine

| | |
|---|---|
| CPU | {mi['cpu']} ({mi['nproc']} cores) |
| memory | {mi['memory']} |
| OS, kernel | {mi['os']}, Linux {mi['kernel']} |
| open files limit | {mi['nofile']} |
| load average at start | {mi.get('loadavg', '?')} |
| sockit | `{mi['sockit']}` |
| compiler | {mi['cc']} |
| libuv / libevent | {mi['libuv']} / {mi['libevent']} |
| sockperf | {mi['sockperf']} |
| iperf3 | {mi['iperf3']} |
| socat | {mi['socat']} |
| gnuplot | {mi['gnuplot']} |

## Method

- Loopback only (127.0.0.1). Each server runs with one worker, pinned to core
  {mi['server_cpu']} (`taskset -c {mi['server_cpu']}`); each load generator
  is pinned to core {mi['client_cpu']}. A fresh server is started for every
  measurement; the runs of a case interleave the servers.
- Durations: {cfg['duration']} s measured after {cfg['warmup']} s of warm-up
  (sockit-client `--duration/--warmup`, sockperf `-t` with its own 400 ms
  warm-up, iperf3 `-t/-O`).
- Every cell is the median of {cfg['runs']} run(s) (the file case: at
  least 9, as one transfer lasts under half a second), with min–max in
  parentheses. `n/a` carries the reason the case could not be measured.
- **Server CPU per message**: utime+stime of the server process tree from
  `/proc/PID/stat`, sampled when the generator's warm-up ends and when it
  exits, divided by (measured rate × sampled window).
- **RSS per idle connection**: VmRSS of the server before the generator
  connects and after it reports `idle: N connections open` and the server
  holds N more file descriptors, divided by N (user-space memory only; the
  kernel's socket memory is not in RSS).
- **Ratios** are sockit ÷ peer of the medians. For throughput a ratio above 1
  favours sockit; for latency, CPU and memory a ratio below 1 does. A `†`
  marks a ratio taken against a sockit row measured with another load
  generator.
- The libuv and libevent peers are `bench/peers/uv_echo.c` and
  `bench/peers/ev_echo.c`: single-threaded, TCP_NODELAY, idiomatic
  back-pressure (libuv: stop reading above 1 MiB of write queue; libevent:
  bufferevent watermarks).
- **The floor** (`bench/peers/floor_echo.c`, 64 B echo cases): a thread per
  connection doing a blocking `recv` then `send` of what came in, nothing
  else, measured in the same run and pinned the same way. Each message also
  costs it a thread wake-up and a context switch, so with many connections
  it can cost more than an event loop; hence the second floor, the same
  `recv`/`send` behind one bare level-triggered epoll loop (`floor_echo
  echo PORT epoll`): what an event loop cannot do with less. sockit's CPU
  per message above the lower of the two is user-space work.

## Results

{markdown_tables(results)}
{tls_section}
## Against the targets (issues 5 and 16), judged from the run above

{targets_md(results)}
Where the time goes, and why some targets are out of reach on this machine:
[PERFORMANCE-NOTES.md](PERFORMANCE-NOTES.md).

{fwd_section}## Plots

{''.join(imgs) or '(no plot: no data)'}
## Notes

{notes or '- none'}

## Exact commands

The server command(s), then the load generator, for each row, from the
first run (run from the repository root; PORT is the port the server
reported or was given, BACKPORT the sockit discard server behind socat, $OUT
the results directory).

{commands_md(results)}"""
    doc.write_text(text)


def write_json(path, obj):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    tmp.replace(path)


def build_peers(cfg):
    """make -C bench/peers; on failure the uv/ev rows become n/a."""
    r = subprocess.run(["make", "-s", "-C", str(PEERS_DIR)],
                       capture_output=True)
    missing = [b for b in ("uv_echo", "ev_echo", "uring_echo", "floor_echo")
               if not (PEERS_DIR / "build" / b).exists()]
    if r.returncode != 0 or missing:
        cfg.peers_ok = False
        cfg.peers_error = ("bench/peers build failed: " +
                           last_line((r.stdout + r.stderr).decode()))
        print(cfg.peers_error, file=sys.stderr)


def check_tools(cfg):
    """Note every external tool that is missing (its rows become n/a)."""
    for tool in ("taskset", "sockperf", "iperf3", "socat", "gnuplot"):
        if shutil.which(tool) is None:
            cfg.notes.append(f"`{tool}` not found (scripts/deps.sh bench); "
                             "its rows are n/a")
    if shutil.which("taskset") is None:
        raise SystemExit("bench: taskset is required (util-linux)")


def make_bigfile(path, size):
    """A file of random bytes (no zero-page or compression shortcut)."""
    chunk = 16 << 20
    with open(path, "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(os.urandom(n))
            left -= n


# ---------------------------------------------------------------------------
# Main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="sockit benchmarks against peers (bench/README.md)")
    ap.add_argument("--quick", action="store_true",
                    help="1 run per case, short durations, fewer cases")
    ap.add_argument("--runs", type=int, help="runs per case (default 3)")
    ap.add_argument("--cases", help="only cases whose id matches this regex")
    ap.add_argument("--list", action="store_true", help="list case ids")
    ap.add_argument("--out", type=Path,
                    help="results directory (default bench/results/<time>)")
    ap.add_argument("--duration", type=float,
                    help="measured seconds per run (default 4, quick 1)")
    ap.add_argument("--warmup", type=float,
                    help="warm-up seconds per run (default 1, quick 0.5)")
    ap.add_argument("--write-doc", action="store_true",
                    help="rewrite docs/PERFORMANCE.md and docs/perf/*.svg")
    ap.add_argument("--doc", type=Path, default=ROOT / "docs" /
                    "PERFORMANCE.md", help=argparse.SUPPRESS)
    ap.add_argument("--from", dest="from_json", type=Path,
                    help="re-render tables/plots/doc from a results.json")
    ap.add_argument("--tls", type=Path,
                    help="bench/tls_peers.py's tls.json: its TLS section, "
                    "plot and targets go into the report")
    ap.add_argument("--build-dir", type=Path, default=ROOT / "build",
                    help="sockit build directory (default build/)")
    ap.add_argument("--server", type=Path, help="sockit-server binary")
    ap.add_argument("--client", type=Path, help="sockit-client binary")
    return ap.parse_args(argv)


def render(results, out, args):
    """Tables on stdout, table.md and plots in out, and the doc if asked."""
    print_tables(results)
    (out / "table.md").write_text(markdown_tables(results))
    plots = []
    for title, fn in (
            ("Throughput vs connections (higher is better)", plot_throughput),
            ("Latency percentiles (lower is better)", plot_latency),
            ("Server CPU per message against the floor (lower is better)",
             plot_cpu_floor),
            ("UDP against sockperf's server and iperf3 (datagrams/s and "
             "Gbit/s: higher is better; CPU: lower is better)", plot_udp),
            ("TLS handshakes, echo and bulk against peers (higher is "
             "better)", lambda r, o: plot_tls(r.get("tls"), o))):
        try:
            plots.append((title, fn(results, out)))
        except (BenchError, OSError, subprocess.SubprocessError) as e:
            print(f"plot '{title}' failed: {e}", file=sys.stderr)
    if args.write_doc:
        write_doc(results, args.doc, plots)
        print(f"\nwrote {rel(args.doc)} and {rel(args.doc.parent / 'perf')}/")
    print(f"results: {rel(out)}/results.json")


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tls = None
    if args.tls:
        try:
            tls = json.loads(args.tls.read_text())
        except (OSError, ValueError) as e:
            raise SystemExit(f"bench: --tls {args.tls}: {e}")
        if not isinstance(tls, dict) or not {"rows", "servers"} <= set(tls):
            raise SystemExit(f"bench: --tls {args.tls}: not a tls.json of "
                             "bench/tls_peers.py")
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        if tls:
            results["tls"] = tls
        render(results, args.from_json.parent, args)
        return 0

    # SIGINT/SIGTERM/SIGHUP end the run through the finally below (SIGINT
    # too: a shell may start us with it ignored).
    def on_signal(signum, frame):
        raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or ROOT / "bench" / "results" / stamp
    server_cpu, client_cpu, cpu_note = pick_cpus()
    nofile = raise_nofile(20000)
    idle = 10000
    notes = []
    if cpu_note:
        notes.append(cpu_note)
    if nofile < idle + 100:
        idle = max(100, (nofile - 100) // 1000 * 1000 or 100)
        notes.append(f"open-files limit {nofile}: idle case scaled down to "
                     f"{idle} connections (10,000 needs ≥ 10100)")
    cfg = Config(
        server_bin=args.server or args.build_dir / "programs" /
        "sockit-server",
        client_bin=args.client or args.build_dir / "programs" /
        "sockit-client",
        out=out,
        runs=args.runs or (1 if args.quick else 3),
        quick=args.quick,
        duration=args.duration or (1.0 if args.quick else 4.0),
        warmup=args.warmup if args.warmup is not None else (
            0.5 if args.quick else 1.0),
        server_cpu=server_cpu, client_cpu=client_cpu, idle_conns=idle,
        file_size=(256 << 20) if args.quick else (1 << 30), notes=notes)
    bigfile = out / "bigfile.bin"
    cases = build_cases(cfg, bigfile)
    if args.quick:
        cases = [c for c in cases if c.quick]
    if args.cases:
        cases = [c for c in cases if re.search(args.cases, c.id)]
    if args.list:
        print("\n".join(c.id for c in cases))
        return 0
    out.mkdir(parents=True, exist_ok=True)
    check_tools(cfg)
    build_peers(cfg)

    results = {"config": {"runs": cfg.runs, "quick": cfg.quick,
                          "duration": cfg.duration, "warmup": cfg.warmup,
                          "idle_conns": cfg.idle_conns,
                          "file_size": cfg.file_size,
                          "server": rel(cfg.server_bin),
                          "out": str(out),
                          "client": rel(cfg.client_bin)},
               "machine": machine_info(cfg), "notes": cfg.notes,
               "cases": []}
    if tls:
        results["tls"] = tls
    print(f"sockit bench: {len(cases)} case(s), {cfg.runs} run(s) each, "
          f"server on core {server_cpu}, load on core {client_cpu}; "
          f"output in {rel(out)}/")
    load = os.getloadavg()[0]
    if load > 0.5:
        cfg.notes.append(f"load average {load:.2f} when the run started: "
                         "other work on the machine adds noise")
    started = time.monotonic()
    interrupted = False
    try:
        run_cases(cfg, cases, results)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", file=sys.stderr)
    finally:
        cleanup_all()
    for e in results["cases"]:
        if any("summary" not in v for v in e["variants"]):
            finish_entry(e)  # the interrupted case
    results["elapsed_s"] = round(time.monotonic() - started, 1)
    check_sockperf_note(results)
    write_json(out / "results.json", results)
    render(results, out, args)
    print(f"elapsed: {results['elapsed_s']} s")
    return 130 if interrupted else 0


def check_sockperf_note(results):
    """Record what sockperf's client did against servers not its own."""
    for e in results["cases"]:
        works, fails = [], []
        for v in e["variants"]:
            if v["client"] != "sockperf" or v["server"] == "sockperf":
                continue
            if v["summary"]:
                works.append(v["label"])
            elif v.get("errors"):
                fails.append(f"{v['label']}: {v['errors'][0]}")
        if works:
            results["notes"].append(f"{e['title']}: sockperf's client works "
                                    f"against {', '.join(works)}.")
        for f in fails:
            results["notes"].append(f"{e['title']}: sockperf's client "
                                    f"against {f}.")


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        cleanup_all()
