"""Helpers for the end-to-end tests: start the built programs, wait for the
server's readiness line (never a sleep), and talk to them over loopback.

Every wait has a deadline; every process started here is killed at the end of
the test that started it.
"""
import os
import re
import select
import signal
import socket
import subprocess
import time
import unittest

BIN_DIR = os.environ.get(
    "SK_BIN_DIR",
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "programs"))
SERVER = os.path.join(BIN_DIR, "sockit-server")
CLIENT = os.path.join(BIN_DIR, "sockit-client")

LISTEN_RE = re.compile(r"(tcp|udp|unix|tls|udp-unix)://(\S+)")


class Server:
    """A running sockit-server. `addrs` maps scheme -> list of addresses as
    printed on the readiness line, e.g. {'tcp': ['127.0.0.1:40113']}."""

    def __init__(self, args, timeout=10.0, env=None, preexec=None,
                 wrapper=None):
        self.args = list(wrapper or []) + [SERVER] + list(args)
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env,
                                     preexec_fn=preexec)
        self.log = []
        self.addrs = {}
        line = self.wait_log("listening on", timeout)
        for scheme, addr in LISTEN_RE.findall(line):
            self.addrs.setdefault(scheme, []).append(addr)

    def _read_line(self, deadline):
        buf = b""
        fd = self.proc.stderr.fileno()
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("server said nothing in time; log so far:\n"
                                   + "\n".join(self.log))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            ch = os.read(fd, 1)
            if not ch:
                raise EOFError("server exited (%s); log:\n%s" %
                               (self.proc.poll(), "\n".join(self.log)))
            if ch == b"\n":
                line = buf.decode(errors="replace")
                self.log.append(line)
                return line
            buf += ch

    def wait_log(self, needle, timeout=10.0):
        """Reads log lines until one contains `needle` (str or regex)."""
        deadline = time.monotonic() + timeout
        for line in self.log:
            if _matches(needle, line):
                return line
        while True:
            line = self._read_line(deadline)
            if _matches(needle, line):
                return line

    def next_log_line(self, timeout=10.0):
        """Reads the next log line the server writes (waits up to timeout)
        and returns it; it is also appended to `log`."""
        return self._read_line(time.monotonic() + timeout)

    def drain_log(self, timeout=0.2):
        """Collects whatever log lines arrive within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._read_line(deadline)
        except (TimeoutError, EOFError):
            pass
        return self.log

    @property
    def tcp(self):
        return self.addrs["tcp"][0]

    def host_port(self, scheme="tcp"):
        return split_addr(self.addrs[scheme][0])

    def signal(self, sig):
        self.proc.send_signal(sig)

    def wait(self, timeout=10.0):
        """Waits for exit, returns the exit code, keeps the rest of the log."""
        try:
            self.proc.wait(timeout)
        finally:
            rest = self.proc.stderr.read().decode(errors="replace")
            self.log.extend(l for l in rest.splitlines())
        return self.proc.returncode

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def _matches(needle, line):
    if isinstance(needle, str):
        return needle in line
    return needle.search(line) is not None


def split_addr(addr):
    """'127.0.0.1:80' -> ('127.0.0.1', 80); '[::1]:80' -> ('::1', 80)."""
    host, _, port = addr.rpartition(":")
    if host.startswith("["):
        host = host[1:-1]
    return host, int(port)


def run_client(args, input=None, timeout=30.0, env=None):
    """Runs sockit-client to completion; returns CompletedProcess (bytes)."""
    return subprocess.run([CLIENT] + list(args), input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, env=env)


def connect(addr, timeout=5.0):
    """A python socket connected to a server address ('unix:/p' works)."""
    if addr.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(addr[5:])
        return s
    host, port = split_addr(addr)
    s = socket.create_connection((host, port), timeout=timeout)
    return s


def recv_exact(sock, n):
    """Reads exactly n bytes (the socket's timeout bounds each wait)."""
    chunks = []
    while n > 0:
        b = sock.recv(min(n, 1 << 20))
        if not b:
            raise EOFError("peer closed with %d bytes still expected" % n)
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def have(cmd):
    from shutil import which
    return which(cmd) is not None


def needs(*cmds):
    """Decorator: skip a test when a peer program is not installed."""
    missing = [c for c in cmds if not have(c)]
    return unittest.skipIf(missing, "not installed: %s" % " ".join(missing))


def free_tcp_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now, for peers (openssl s_server)
    that cannot be told to pick their own and print it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class refusing_port:
    """A loopback TCP port that refuses connections for as long as the
    `with` block lasts: bound, never listening, so no other test can take
    it meanwhile (a port merely found free could be reused by a concurrent
    test and answer)."""

    def __enter__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def wait_file_contains(path, needle, timeout=10.0, proc=None):
    """Polls a file (a peer's redirected output) until it contains `needle`
    (bytes); fails early if `proc` exits first. Returns the content."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if needle in data:
            return data
        if proc is not None and proc.poll() is not None:
            raise EOFError("peer exited (%s) before printing %r; output:\n%s"
                           % (proc.returncode, needle, data))
        if time.monotonic() > deadline:
            raise TimeoutError("%r not seen in %s; so far:\n%s"
                               % (needle, path, data))
        time.sleep(0.02)
