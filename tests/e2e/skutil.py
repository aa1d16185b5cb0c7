"""Helpers for the end-to-end tests: start the built programs, wait for the
server's readiness line (never a sleep), and talk to them over loopback.

Every wait has a deadline; every process started here is killed at the end of
the test that started it.
"""
import errno
import os
import pty
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import tty
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


# A sanitizer build (tests/CMakeLists.txt sets SK_SANITIZED): slower, and its
# shadow memory makes resident-size measurements meaningless.
SANITIZED = bool(os.environ.get("SK_SANITIZED"))


def needs(*cmds):
    """Decorator: skip a test when a peer program is not installed."""
    missing = [c for c in cmds if not have(c)]
    return unittest.skipIf(missing, "not installed: %s" % " ".join(missing))


def free_tcp_port(host="127.0.0.1"):
    """A TCP port nobody listens on right now, for peers (haproxy, nginx)
    that cannot be told to pick their own and print it. Another test can
    take it before the peer binds it: start the peer again on another port
    when it fails to bind, and check that the listener is the peer's."""
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


def hold_v6_loopback(port):
    """Binds [::1]:port without listening and returns that socket: while it
    is open, a connection there is refused and no other test can listen
    there. Returns None when this machine has no IPv6 loopback (::1 then
    leads nowhere anyway); raises OSError (EADDRINUSE) when someone else
    holds the port on ::1."""
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    except OSError as e:
        if e.errno == errno.EAFNOSUPPORT:
            return None
        raise
    try:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.bind(("::1", port))
    except OSError as e:
        s.close()
        if e.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
            return None
        raise
    return s


class localhost_listener:
    """For a test that reaches a listener on 127.0.0.1 by the name
    "localhost:PORT". "localhost" may resolve to ::1 first (an /etc/hosts
    that lists it there), and a concurrent test may listen on [::1]:PORT:
    the client would talk to that one. So [::1]:PORT is held (bound, never
    listening: refused, and the client falls back to 127.0.0.1) for as long
    as the `with` block lasts.

    start() starts the listener and returns (listener, port); stop(listener)
    stops it. When the port is taken on ::1 the listener is stopped and
    started again, on another port. The block gets (listener, port); the
    listener is stopped at its end."""

    def __init__(self, start, stop, tries=5):
        self.start, self.stop, self.tries = start, stop, tries

    def __enter__(self):
        for attempt in range(self.tries):
            self.listener, port = self.start()
            try:
                self.hold = hold_v6_loopback(port)
                return self.listener, port
            except OSError:
                self.stop(self.listener)
                if attempt == self.tries - 1:
                    raise

    def __exit__(self, *exc):
        try:
            self.stop(self.listener)
        finally:
            if self.hold is not None:
                self.hold.close()


def wait_file_contains(path, needle, timeout=10.0, proc=None):
    """Polls a file (a peer's redirected output) until it contains `needle`
    (bytes, or a compiled bytes regex); fails early if `proc` exits first.
    Returns the content."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        if (needle in data if isinstance(needle, bytes)
                else needle.search(data)):
            return data
        if proc is not None and proc.poll() is not None:
            raise EOFError("peer exited (%s) before printing %r; output:\n%s"
                           % (proc.returncode, needle, data))
        if time.monotonic() > deadline:
            raise TimeoutError("%r not seen in %s; so far:\n%s"
                               % (needle, path, data))
        time.sleep(0.02)


S_SERVER_ACCEPT_RE = re.compile(rb"^ACCEPT 127\.0\.0\.1:(\d+)\r?\n", re.M)


def s_server_port(path, proc, timeout=10.0):
    """The port of `openssl s_server -accept 127.0.0.1:0`, whose output goes
    to the file `path`: the kernel picks the port when s_server binds (so
    no concurrent test can take it first), and OpenSSL 3 prints it on the
    ACCEPT line once s_server listens. Fails early if `proc` exits."""
    data = wait_file_contains(path, S_SERVER_ACCEPT_RE, timeout, proc)
    return int(S_SERVER_ACCEPT_RE.search(data).group(1))


# ---- certificates, made with the openssl command-line tool ----

# A configuration of our own, so that the system's openssl.cnf (or its
# absence) changes nothing: a CA gets exactly the extensions a CA needs
# (-extensions v3_ca).
OPENSSL_CNF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = unused
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
"""


def openssl(cwd, *args):
    """Runs the openssl tool in directory cwd, where OPENSSL_CNF is written
    as openssl.cnf first; raises RuntimeError with its stderr if it fails."""
    cnf = os.path.join(cwd, "openssl.cnf")
    if not os.path.exists(cnf):
        with open(cnf, "w") as f:
            f.write(OPENSSL_CNF)
    r = subprocess.run(["openssl"] + list(args), cwd=cwd,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    if r.returncode != 0:
        raise RuntimeError("openssl %s failed:\n%s" %
                           (" ".join(args), r.stderr.decode()))


def self_signed_cert(cwd, name, subject="/CN=localhost", days=2, extra=()):
    """Makes NAME.key and a self-signed NAME.pem (EC P-256) in directory
    cwd; `extra` goes to `openssl req`. Returns (certificate, key) paths."""
    openssl(cwd, "req", "-config", "openssl.cnf", "-x509", "-new",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", name + ".key", "-out", name + ".pem",
            "-days", str(days), "-subj", subject, *extra)
    return os.path.join(cwd, name + ".pem"), os.path.join(cwd, name + ".key")


class CertDir:
    """A temporary directory for certificates; cleanup() removes it."""

    def __init__(self, prefix):
        self.dir = tempfile.mkdtemp(prefix=prefix)

    def path(self, name):
        return os.path.join(self.dir, name)

    def openssl(self, *args):
        openssl(self.dir, *args)

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


# ---- one-shot peers on loopback ----

def serve_one(handle, timeout=30.0):
    """A TCP listener on a kernel-chosen loopback port whose thread accepts
    one client, calls handle(conn) and closes both (a peer's OSError, which
    includes ssl.SSLError, ends it quietly). Returns (port, thread)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(timeout)

    def run():
        try:
            c, _ = ls.accept()
            with c:
                c.settimeout(timeout)
                handle(c)
        except OSError:
            pass
        finally:
            ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls.getsockname()[1], t


def shut_and_drain(sock):
    """Ends our sending side (a FIN), reads until the peer's end, closes."""
    sock.shutdown(socket.SHUT_WR)
    try:
        while sock.recv(4096):
            pass
    except OSError:
        pass
    sock.close()


def tls_cut_server(cert, key, reply, want=1):
    """One TLS session served by python's ssl module: completes the
    handshake, reads `want` bytes (or until the client's end), sends
    `reply` (if any), then ends TCP without close_notify (the ssl socket is
    detached, shut and closed). Returns ("127.0.0.1:PORT", thread)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    def handle(c):
        t = ctx.wrap_socket(c, server_side=True)
        got = b""
        while len(got) < want:
            b = t.recv(64)
            if not b:
                break
            got += b
        if reply:
            t.sendall(reply)
        shut_and_drain(socket.socket(fileno=t.detach()))

    port, th = serve_one(handle)
    return "127.0.0.1:%d" % port, th


# ---- a terminal for sockit-client ----

def client_on_pty(args, interactive=False, stdin_data=None, timeout=30.0):
    """Runs sockit-client with stdout on a pseudo-terminal in raw mode (no
    newline translation). stdin is that terminal too when `interactive`,
    else a pipe fed stdin_data, or /dev/null when there is none. Returns
    (exit code, what the terminal received, stderr)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    if interactive:
        stdin = slave
    elif stdin_data is not None:
        stdin = subprocess.PIPE
    else:
        stdin = subprocess.DEVNULL
    p = subprocess.Popen([CLIENT] + list(args), stdin=stdin, stdout=slave,
                         stderr=subprocess.PIPE, close_fds=True)
    os.close(slave)
    if not interactive and stdin_data is not None:
        p.stdin.write(stdin_data)
        p.stdin.close()
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("sockit-client did not finish; got %r"
                                   % out)
            r, _, _ = select.select([master], [], [], min(left, 0.5))
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the client closed the terminal
                break
            if not chunk:
                break
            out += chunk
        code = p.wait(timeout=max(1.0, deadline - time.monotonic()))
        err = p.stderr.read()
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    return code, out, err
