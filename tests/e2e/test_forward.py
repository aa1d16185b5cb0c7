"""sockit-server --mode forward over streams (issue #15): each client
connection is relayed to an upstream (--to), any listener transport (TCP,
Unix, TLS) to any upstream transport (TCP, Unix, TLS), with half-close,
resets, back-pressure, upstream failures, upstream TLS verification and the
PROXY header (--send-proxy, --send-proxy-v2).

The peers are written by others: python's socket and ssl modules, socat and
the openssl command-line tools. Certificates are made at run time (the CA of
test_tls.Certs). Everything listens on loopback port 0 or on Unix sockets in
a temporary directory; every wait has a deadline.

The transfer through every transport pair is 1 GiB, byte-exact (a SHA-256
of the whole stream on both ends), alternating the direction; under
sanitizer builds (SK_SANITIZED, set by tests/CMakeLists.txt) it is 64 MiB,
since ASan and TSan slow every byte the server touches.
"""
import hashlib
import ipaddress
import os
import random
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from skutil import (SANITIZED, SERVER, Server, localhost_listener, needs,
                    recv_exact, refusing_port, s_server_port,
                    self_signed_cert)
from test_tls import Certs

CHUNK = 1 << 20
BIG = (64 if SANITIZED else 1024) * CHUNK
T = 120.0  # the deadline of any one blocking socket operation

CERTS = None
_BLOCK = random.Random(15).randbytes(CHUNK)


def setUpModule():
    global CERTS
    CERTS = Certs()
    # A CA that signed nothing here: verification against it must fail.
    self_signed_cert(CERTS.dir, "otherca", "/CN=some other CA", 2,
                     ("-extensions", "v3_ca"))


def tearDownModule():
    CERTS.cleanup()


def upstream_tls_ctx(require_client_cert=False):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(CERTS.path("server.pem"), CERTS.path("server.key"))
    if require_client_cert:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(CERTS.path("ca.pem"))
    return ctx


# ---- a deterministic stream, hashed on both ends ----

def send_stream(sock, total):
    """Sends `total` bytes (1 MiB blocks, each numbered, so a lost,
    repeated or reordered block changes the digest); returns the count and
    the SHA-256 of what was sent."""
    h = hashlib.sha256()
    buf = bytearray(_BLOCK)
    for i in range(total // CHUNK):
        struct.pack_into("<Q", buf, 0, i)
        h.update(buf)
        sock.sendall(buf)
    return total, h.hexdigest()


def recv_stream(sock, total):
    """Receives up to `total` bytes (less if the peer ends first); returns
    the count and the SHA-256 of what arrived."""
    h = hashlib.sha256()
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    n = 0
    while n < total:
        got = sock.recv_into(view, min(CHUNK, total - n))
        if got == 0:
            break
        h.update(view[:got])
        n += got
    return n, h.hexdigest()


def read_line(sock, limit=200):
    line = b""
    while not line.endswith(b"\n") and len(line) < limit:
        b = sock.recv(1)
        if not b:
            break
        line += b
    return line


def finish(sock):
    """Ends a connection cleanly: close_notify over TLS, then our FIN; reads
    until the peer's end, then closes. The peer's failures are ignored (the
    tests assert what was received)."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            sock = sock.unwrap()
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except (OSError, ValueError):
        pass
    sock.close()


def reset(sock):
    """Closes with a reset (RST): SO_LINGER with a zero timeout."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                    struct.pack("ii", 1, 0))
    sock.close()


# ---- upstreams ----

class Upstream:
    """An upstream written in python: a listener on a kernel-chosen loopback
    TCP port, or on a Unix socket in `tmp`. Each connection runs
    handler(conn, index) in its own thread (index counts connections from
    0); what a handler raises is kept in `errors`."""

    def __init__(self, handler, kind="tcp", tmp=None, backlog=16):
        self.handler = handler
        self.errors = []
        self.count = 0
        self.done = threading.Semaphore(0)
        if kind == "unix":
            path = os.path.join(tmp, "up%d.sock" % random.getrandbits(32))
            self.ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.ls.bind(path)
            self.addr = "unix:" + path
        else:
            self.ls = socket.socket()
            self.ls.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.ls.getsockname()[1]
        self.ls.listen(backlog)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.ls.accept()
            except OSError:
                return
            i = self.count
            self.count += 1
            threading.Thread(target=self._run, args=(c, i),
                             daemon=True).start()

    def _run(self, c, i):
        try:
            c.settimeout(T)
            self.handler(c, i)
        except Exception as e:  # recorded, asserted by the test
            self.errors.append(e)
        finally:
            c.close()
            self.done.release()

    def wait_done(self, n=1, timeout=T):
        """Waits until n handlers have returned."""
        for _ in range(n):
            if not self.done.acquire(timeout=timeout):
                raise TimeoutError("upstream handler still running")

    def close(self):
        try:
            self.ls.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.ls.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def echo_handler(c, i):
    while True:
        b = c.recv(65536)
        if not b:
            break
        c.sendall(b)
    finish(c)


def read_proxy_header(c, dst=None):
    """Reads a PROXY header (v1 or v2) byte-exactly from c; returns
    (version, source address, source port), or (version, None, None). With
    a dict dst, the destination goes in dst["addr"] and dst["port"]."""
    dst = {} if dst is None else dst
    first = recv_exact(c, 12)
    if first == b"\r\n\r\n\x00\r\nQUIT\n":
        ver_cmd, fam, length = struct.unpack("!BBH", recv_exact(c, 4))
        body = recv_exact(c, length)
        if ver_cmd != 0x21:
            return 2, None, None
        if fam == 0x11:
            dst["addr"] = str(ipaddress.IPv4Address(body[4:8]))
            dst["port"] = struct.unpack("!H", body[10:12])[0]
            return 2, str(ipaddress.IPv4Address(body[0:4])), \
                struct.unpack("!H", body[8:10])[0]
        if fam == 0x21:
            dst["addr"] = str(ipaddress.IPv6Address(body[16:32]))
            dst["port"] = struct.unpack("!H", body[34:36])[0]
            return 2, str(ipaddress.IPv6Address(body[0:16])), \
                struct.unpack("!H", body[32:34])[0]
        return 2, None, None
    line = first
    while not line.endswith(b"\r\n"):
        line += recv_exact(c, 1)
        if len(line) > 107:
            raise ValueError("PROXY v1 line too long: %r" % line)
    parts = line.decode().split()
    if parts[0] != "PROXY":
        raise ValueError("not a PROXY header: %r" % line)
    if parts[1] == "UNKNOWN":
        return 1, None, None
    dst["addr"], dst["port"] = parts[3], int(parts[5])
    return 1, parts[2], int(parts[4])


# ---- the server ----

class ForwardCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sk-fwd-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def to_args(self, up, kind):
        args = ["--to", up.addr]
        if kind == "tls":
            args += ["--upstream-tls", "--upstream-ca", CERTS.path("ca.pem")]
        return args

    def server(self, listen, args, workers=1):
        a = ["--mode", "forward", "--workers", str(workers)]
        if listen == "unix":
            a += ["-l", "unix:" + os.path.join(self.tmp, "l.sock")]
        else:
            a += ["-l", "127.0.0.1:0"]
        if listen == "tls":
            a += ["--tls", "--cert", CERTS.path("server.pem"), "--key",
                  CERTS.path("server.key")]
        return Server(a + list(args))

    def client(self, srv, listen):
        if listen == "unix":
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(T)
            s.connect(srv.addrs["unix"][0])
            return s
        host, port = srv.host_port("tls" if listen == "tls" else "tcp")
        s = socket.create_connection((host, port), timeout=T)
        if listen == "tls":
            ctx = ssl.create_default_context(cafile=CERTS.path("ca.pem"))
            s = ctx.wrap_socket(s, server_hostname="localhost")
        return s


CLOSE_RE = r"closed(?:: [^(]*)? \(after [\d.]+ s; in (\d+) bytes, \d+ msgs; " \
    r"out (\d+) bytes"


class Transfer(ForwardCase):
    """BIG bytes through each of the nine transport pairs, one way or the
    other, checked by SHA-256; the close line counts them."""

    def transfer(self, listen, up_kind, direction):
        def handler(c, i):
            if up_kind == "tls":
                c = upstream_tls_ctx().wrap_socket(c, server_side=True)
            if direction == "up":
                n, digest = recv_stream(c, BIG)
            else:
                n, digest = send_stream(c, BIG)
            c.sendall(b"%d %s\n" % (n, digest.encode()))
            finish(c)

        with Upstream(handler, up_kind, self.tmp) as up, \
                self.server(listen, self.to_args(up, up_kind)) as srv:
            s = self.client(srv, listen)
            if direction == "up":
                n, digest = send_stream(s, BIG)
            else:
                n, digest = recv_stream(s, BIG)
            line = read_line(s)
            finish(s)
            self.assertEqual(n, BIG)
            self.assertEqual(line, b"%d %s\n" % (BIG, digest.encode()))
            up.wait_done()
            self.assertEqual(up.errors, [])
            m = re.search(CLOSE_RE, srv.wait_log(re.compile(CLOSE_RE), T))
            if direction == "up":
                self.assertEqual(int(m.group(1)), BIG)
                self.assertEqual(int(m.group(2)), len(line))
            else:
                self.assertEqual(int(m.group(1)), 0)
                self.assertEqual(int(m.group(2)), BIG + len(line))

    def test_big_tcp_to_tcp(self):
        self.transfer("tcp", "tcp", "up")

    def test_big_tcp_to_unix(self):
        self.transfer("tcp", "unix", "down")

    def test_big_tcp_to_tls(self):
        self.transfer("tcp", "tls", "up")

    def test_big_unix_to_tcp(self):
        self.transfer("unix", "tcp", "down")

    def test_big_unix_to_unix(self):
        self.transfer("unix", "unix", "up")

    def test_big_unix_to_tls(self):
        self.transfer("unix", "tls", "down")

    def test_big_tls_to_tcp(self):
        self.transfer("tls", "tcp", "up")

    def test_big_tls_to_unix(self):
        self.transfer("tls", "unix", "down")

    def test_big_tls_to_tls(self):
        self.transfer("tls", "tls", "up")


class Peers(ForwardCase):
    @needs("socat")
    def test_socat_echo_upstream_on_unix(self):
        """A socat echo (PIPE) on a Unix socket as the upstream: 64 KiB
        pieces sent and read back, 4 MiB in all (socat's PIPE echo
        deadlocks by itself on a large full-duplex stream: it blocks
        writing to its own pipe)."""
        path = os.path.join(self.tmp, "socat.sock")
        p = subprocess.Popen(["socat", "-d", "-d", "UNIX-LISTEN:" + path,
                              "PIPE"], stderr=subprocess.PIPE)
        try:
            self.wait_stderr(p, b"listening on")
            with self.server("tcp", ["--to", "unix:" + path]) as srv:
                s = self.client(srv, "tcp")
                for i in range(64):
                    piece = bytes([i]) * 1024 + _BLOCK[:63 * 1024]
                    s.sendall(piece)
                    self.assertEqual(recv_exact(s, len(piece)), piece)
                finish(s)
                srv.wait_log(re.compile(r"closed \(after .*in 4194304 bytes"),
                             T)
        finally:
            p.kill()
            p.wait()
            p.stderr.close()

    @needs("openssl")
    def test_openssl_s_client_to_tls_listener(self):
        """openssl s_client on the TLS listener; a python upstream answers
        the line it gets and ends, which ends s_client's session."""
        def handler(c, i):
            line = read_line(c)
            c.sendall(b"got " + line)
            finish(c)

        with Upstream(handler) as up, \
                self.server("tls", ["--to", up.addr]) as srv:
            host, port = srv.host_port("tls")
            r = subprocess.run(
                ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
                 "-CAfile", CERTS.path("ca.pem"), "-servername", "localhost",
                 "-verify_return_error", "-quiet", "-ign_eof"],
                input=b"hello from s_client\n", capture_output=True,
                timeout=T)
            self.assertIn(b"got hello from s_client\n", r.stdout, r.stderr)

    @needs("openssl")
    def test_mtls_upstream_openssl_s_server(self):
        """openssl s_server requiring a client certificate (-Verify 1):
        --upstream-cert and --upstream-key present ours; -rev answers each
        line reversed."""
        out = os.path.join(self.tmp, "s_server.out")
        with open(out, "wb") as f:
            p = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:0",
                 "-cert", CERTS.path("server.pem"), "-key",
                 CERTS.path("server.key"), "-CAfile", CERTS.path("ca.pem"),
                 "-Verify", "1", "-verify_return_error", "-rev",
                 "-naccept", "1"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        try:
            port = s_server_port(out, p, timeout=30)
            with self.server("tcp", [
                    "--to", "127.0.0.1:%d" % port, "--upstream-tls",
                    "--upstream-ca", CERTS.path("ca.pem"),
                    "--upstream-cert", CERTS.path("client.pem"),
                    "--upstream-key", CERTS.path("client.key")]) as srv:
                s = self.client(srv, "tcp")
                s.sendall(b"forward\n")
                self.assertEqual(read_line(s), b"drawrof\n")
                s.close()
        finally:
            p.kill()
            p.wait()

    def wait_stderr(self, p, needle):
        fd = p.stderr.fileno()
        deadline = time.monotonic() + 30
        seen = b""
        while needle not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or p.poll() is not None:
                self.fail("peer not ready: %r" % seen)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                b = os.read(fd, 4096)
                if not b:
                    self.fail("peer ended: %r" % seen)
                seen += b


class Ends(ForwardCase):
    """Half-close and resets, both ways."""

    def test_client_half_close_reaches_upstream(self):
        """The client sends 4 MiB and its FIN; the upstream reads to the
        end, then answers, and the answer arrives before the end."""
        def handler(c, i):
            n, digest = recv_stream(c, 1 << 40)
            c.sendall(b"%d %s\n" % (n, digest.encode()))
            c.shutdown(socket.SHUT_WR)

        with Upstream(handler) as up, \
                self.server("tcp", ["--to", up.addr]) as srv:
            s = self.client(srv, "tcp")
            n, digest = send_stream(s, 4 * CHUNK)
            s.shutdown(socket.SHUT_WR)
            self.assertEqual(read_line(s), b"%d %s\n" % (n, digest.encode()))
            self.assertEqual(s.recv(1), b"")
            s.close()
            up.wait_done()
            self.assertEqual(up.errors, [])
            srv.wait_log(re.compile(CLOSE_RE))

    def test_upstream_closes_first_nothing_lost(self):
        """The upstream sends 4 MiB and closes at once; the client gets all
        of it, then the end, and may still send: the upstream's FIN only
        ended one direction."""
        got = {}
        ready = threading.Event()

        def handler(c, i):
            n, digest = send_stream(c, 4 * CHUNK)
            got["sent"] = (n, digest)
            c.shutdown(socket.SHUT_WR)
            ready.set()
            got["late"] = recv_exact(c, 5)
            got["end"] = c.recv(1)

        with Upstream(handler) as up, \
                self.server("tcp", ["--to", up.addr]) as srv:
            s = self.client(srv, "tcp")
            received = recv_stream(s, 1 << 40)
            self.assertTrue(ready.wait(T))
            self.assertEqual(received, got["sent"])
            s.sendall(b"late!")
            s.shutdown(socket.SHUT_WR)
            up.wait_done()
            self.assertEqual(up.errors, [])
            self.assertEqual(got["late"], b"late!")
            self.assertEqual(got["end"], b"")
            s.close()

    def test_upstream_reset_reaches_client(self):
        def handler(c, i):
            recv_exact(c, 4)
            reset(c)

        with Upstream(handler) as up, \
                self.server("tcp", ["--to", up.addr]) as srv:
            s = self.client(srv, "tcp")
            s.sendall(b"ping")
            with self.assertRaises(ConnectionResetError):
                while s.recv(65536):
                    pass
            s.close()
            srv.wait_log(re.compile(r"closed: upstream .*reset"), T)

    def test_tls_client_bare_fin_still_gets_the_answer(self):
        """A TLS client sends its request and ends with a FIN without
        close_notify: that ends its side like a FIN (the upstream reads to
        the end), and the upstream's answer still reaches the client."""
        def handler(c, i):
            req = b""
            while True:
                b = c.recv(65536)
                if not b:
                    break
                req += b
            c.sendall(b"got " + req)
            finish(c)

        with Upstream(handler) as up, \
                self.server("tls", ["--to", up.addr]) as srv:
            host, port = srv.host_port("tls")
            raw = socket.create_connection((host, port), timeout=T)
            t = BareFinTLS(raw)
            t.send(b"hello")
            raw.shutdown(socket.SHUT_WR)  # no close_notify
            self.assertEqual(t.recv_all(), b"got hello")
            raw.close()
            up.wait_done()
            self.assertEqual(up.errors, [])
            srv.wait_log(re.compile(CLOSE_RE), T)

    def test_client_reset_reaches_upstream(self):
        got = {}
        arrived = threading.Event()

        def handler(c, i):
            recv_exact(c, 4)
            arrived.set()
            try:
                while c.recv(65536):
                    pass
                got["end"] = "eof"
            except ConnectionResetError:
                got["end"] = "reset"

        with Upstream(handler) as up, \
                self.server("tcp", ["--to", up.addr]) as srv:
            s = self.client(srv, "tcp")
            s.sendall(b"ping")
            self.assertTrue(arrived.wait(T))
            reset(s)
            up.wait_done()
            self.assertEqual(got.get("end"), "reset")


class BareFinTLS:
    """A TLS client over a MemoryBIO, so that it can end its side with a
    FIN and no close_notify (as many clients do) and still read the answer:
    python's SSLSocket.shutdown() would drop the TLS session."""

    def __init__(self, sock):
        self.sock = sock
        self.inc, self.out = ssl.MemoryBIO(), ssl.MemoryBIO()
        ctx = ssl.create_default_context(cafile=CERTS.path("ca.pem"))
        self.tls = ctx.wrap_bio(self.inc, self.out,
                                server_hostname="localhost")
        self._pump(self.tls.do_handshake)

    def _flush(self):
        data = self.out.read()
        if data:
            self.sock.sendall(data)

    def _pump(self, op):
        """Runs op until it needs no more bytes from the peer; returns its
        result (b"" when the peer's end arrives)."""
        while True:
            try:
                r = op()
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                data = self.sock.recv(65536)
                if not data:
                    self.inc.write_eof()
                    try:
                        return op()
                    except (ssl.SSLEOFError, ssl.SSLZeroReturnError):
                        return b""
                self.inc.write(data)
            except ssl.SSLZeroReturnError:
                return b""

    def send(self, data):
        self.tls.write(data)
        self._flush()

    def recv_all(self):
        got = b""
        while True:
            b = self._pump(lambda: self.tls.read(65536))
            if not b:
                return got
            got += b


class Pressure(ForwardCase):
    def test_upstream_that_never_reads(self):
        """The upstream never reads: the client can send only what the
        kernel buffers and the relay's bound hold, the server's memory
        stays flat, and another client is served meanwhile. Over TLS from
        the client, so the relay's queue (not splice's pipe) is what
        bounds it."""
        hold = threading.Event()

        def handler(c, i):
            if i == 0:
                hold.wait(T)  # never reads
            else:
                echo_handler(c, i)

        with Upstream(handler) as up, \
                self.server("tls", ["--to", up.addr,
                                    "--max-queue", "256K"]) as srv:
            rss0 = rss_kib(srv.proc.pid)
            s = self.client(srv, "tls")
            s.settimeout(3.0)
            sent, block = 0, _BLOCK[:65536]
            # Until a send makes no progress for 3 s: blocked. Bounded
            # in count: 512 MiB would mean nothing holds the client back.
            try:
                while sent < 512 * CHUNK:
                    sent += s.send(block)
            except socket.timeout:
                pass
            self.assertLess(sent, 64 * CHUNK)
            other = self.client(srv, "tls")
            other.sendall(b"still serving\n")
            self.assertEqual(read_line(other), b"still serving\n")
            finish(other)
            grew = rss_kib(srv.proc.pid) - rss0
            if not SANITIZED:  # shadow memory makes RSS meaningless
                self.assertLess(grew, 16 * 1024,
                                "server grew by %d KiB" % grew)
            hold.set()
            s.close()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Failures(ForwardCase):
    def failure_lines(self, srv, cport, timeout=T):
        """The error line about the client on port cport."""
        return srv.wait_log(re.compile(
            r"127\.0\.0\.1:%d: cannot forward to upstream" % cport), timeout)

    def test_upstream_refuses(self):
        with refusing_port() as port, \
                self.server("tcp", ["--to", "127.0.0.1:%d" % port,
                                    "--connect-timeout", "60"]) as srv:
            for _ in range(2):  # the server goes on serving
                t0 = time.monotonic()
                s = self.client(srv, "tcp")
                cport = s.getsockname()[1]
                self.assertEqual(s.recv(1), b"")  # a FIN, not a reset
                # Well before --connect-timeout: refused at once.
                self.assertLess(time.monotonic() - t0, 30)
                s.close()
                line = self.failure_lines(srv, cport)
                self.assertIn("127.0.0.1:%d" % port, line)
                self.assertIn("refused", line)
            srv.drain_log(0.5)
            self.assertEqual(
                len([l for l in srv.log if "cannot forward" in l]), 2)
            self.assertEqual(len([l for l in srv.log if "is down" in l]), 1)

    def test_upstream_never_answers(self):
        """A listener whose backlog is full drops our SYNs: the client is
        closed once --connect-timeout (1 s) is over, with one line."""
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        filler = socket.create_connection(ls.getsockname(), timeout=T)
        try:
            port = ls.getsockname()[1]
            with self.server("tcp", ["--to", "127.0.0.1:%d" % port,
                                     "--connect-timeout", "1"]) as srv:
                t0 = time.monotonic()
                s = self.client(srv, "tcp")
                cport = s.getsockname()[1]
                self.assertEqual(s.recv(1), b"")
                self.assertGreaterEqual(time.monotonic() - t0, 0.9)
                s.close()
                line = self.failure_lines(srv, cport)
                self.assertIn("no connection after 1 s", line)
        finally:
            filler.close()
            ls.close()

    @needs("unshare", "ip")
    def test_kernel_timeout_without_connect_timeout(self):
        """--connect-timeout 0 sets no limit of ours: a connect the kernel
        gives up on is logged as the kernel's timeout, not as "after 0 s".
        The server runs in a network namespace of its own (a user
        namespace: no root needed) where SYNs to 10.9.0.2 go nowhere and
        are retried once (about 3 s); the client reaches it on a Unix
        socket."""
        if subprocess.run(["unshare", "-rn", "true"],
                          capture_output=True).returncode != 0:
            self.skipTest("no user and network namespaces here")
        setup = ("ip link set lo up && "
                 "echo 1 > /proc/sys/net/ipv4/tcp_syn_retries && "
                 "ip route add 10.9.0.0/24 dev lo && exec \"$0\" \"$@\"")
        with Server(["--mode", "forward", "-l",
                     "unix:" + os.path.join(self.tmp, "l.sock"),
                     "--to", "10.9.0.2:80", "--connect-timeout", "0"],
                    wrapper=["unshare", "-rn", "sh", "-c", setup]) as srv:
            s = self.client(srv, "unix")
            self.assertEqual(s.recv(1), b"")
            s.close()
            line = srv.wait_log("cannot forward to upstream", T)
            self.assertRegex(line, r"upstream 10\.9\.0\.2:80: .*timed out")
            self.assertNotIn("after 0 s", line)

    def test_no_descriptor_does_not_mark_the_upstream_down(self):
        """When the server itself has no descriptor for the upstream
        connection (EMFILE), the client is closed with one line, but the
        upstream is not marked down: that says nothing about it. The
        server's limit is lowered while it runs so that the accept gets a
        descriptor and the upstream socket does not."""
        import resource
        with Upstream(echo_handler) as up, \
                self.server("tcp", ["--to", up.addr]) as srv:
            # The main loop answers SIGUSR1 once it runs: by then every
            # descriptor of the start is open.
            srv.signal(signal.SIGUSR1)
            srv.wait_log("SIGUSR1:", T)
            pid = srv.proc.pid
            used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
            free = [n for n in range(max(used) + 3) if n not in used]
            old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
            # The accept takes free[0]; nothing at or above free[1].
            resource.prlimit(pid, resource.RLIMIT_NOFILE,
                             (free[1], old[1]))
            try:
                s = self.client(srv, "tcp")
                self.assertEqual(s.recv(1), b"")
                s.close()
                line = srv.wait_log("cannot forward to upstream", T)
            finally:
                resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
            self.assertIn("Too many open files", line)
            s = self.client(srv, "tcp")
            s.sendall(b"served\n")
            self.assertEqual(read_line(s), b"served\n")
            finish(s)
            srv.drain_log(0.3)
            self.assertFalse([l for l in srv.log if "is down" in l])

    def test_retry_goes_to_the_next_upstream(self):
        """One upstream dead, one alive: every connection is served (the
        dead one is tried at most once, then skipped), and a client
        arriving while another waits on the dead one is served
        meanwhile."""
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(0)
        filler = socket.create_connection(ls.getsockname(), timeout=T)
        try:
            with Upstream(echo_handler) as up, self.server("tcp", [
                    "--to", "127.0.0.1:%d" % ls.getsockname()[1],
                    "--to", up.addr, "--connect-timeout", "2"],
                    workers=2) as srv:
                clients = [self.client(srv, "tcp") for _ in range(8)]
                for i, s in enumerate(clients):
                    s.sendall(b"client %d\n" % i)
                for i, s in enumerate(clients):
                    self.assertEqual(read_line(s), b"client %d\n" % i)
                    finish(s)
                srv.drain_log(0.3)
                self.assertFalse(
                    [l for l in srv.log if "cannot forward" in l])
                self.assertEqual(
                    len([l for l in srv.log if "is down" in l]), 1)
        finally:
            filler.close()
            ls.close()


class UpstreamTLS(ForwardCase):
    def test_wrong_ca_fails_verification(self):
        def handler(c, i):
            upstream_tls_ctx().wrap_socket(c, server_side=True)

        with Upstream(handler) as up, self.server("tcp", [
                "--to", up.addr, "--upstream-tls", "--upstream-ca",
                CERTS.path("otherca.pem")]) as srv:
            s = self.client(srv, "tcp")
            cport = s.getsockname()[1]
            self.assertEqual(s.recv(1), b"")
            s.close()
            line = srv.wait_log(re.compile(
                r"127\.0\.0\.1:%d: cannot forward to upstream" % cport), T)
            self.assertIn(up.addr, line)
            self.assertRegex(line, r"TLS handshake failed: .*certificate")

    def test_servername_is_checked(self):
        """--upstream-servername names what the certificate must hold."""
        def handler(c, i):
            upstream_tls_ctx().wrap_socket(c, server_side=True)

        with Upstream(handler) as up, self.server("tcp", [
                "--to", up.addr, "--upstream-tls", "--upstream-ca",
                CERTS.path("ca.pem"), "--upstream-servername",
                "example.org"]) as srv:
            s = self.client(srv, "tcp")
            self.assertEqual(s.recv(1), b"")
            s.close()
            srv.wait_log(re.compile(r"cannot forward to upstream .*TLS "
                                    r"handshake failed: .*(host|name)"), T)

    def test_mtls_upstream_python(self):
        """A python ssl upstream with CERT_REQUIRED sees our client
        certificate. --to names it "localhost:PORT": the name the
        upstream's certificate is checked against (and the SNI) is then
        the host as given, not an address."""
        seen = {}

        def handler(c, i):
            t = upstream_tls_ctx(True).wrap_socket(c, server_side=True)
            seen["subject"] = dict(x[0] for x in t.getpeercert()["subject"])
            echo_handler(t, i)

        def start():
            up = Upstream(handler)
            return up, int(up.addr.split(":")[1])

        with localhost_listener(start, Upstream.close) as (_, port), \
                self.server("unix", [
                    "--to", "localhost:%d" % port, "--upstream-tls",
                    "--upstream-ca", CERTS.path("ca.pem"),
                    "--upstream-cert", CERTS.path("client.pem"),
                    "--upstream-key", CERTS.path("client.key")]) as srv:
            s = self.client(srv, "unix")
            s.sendall(b"mtls\n")
            self.assertEqual(read_line(s), b"mtls\n")
            finish(s)
            self.assertEqual(seen["subject"].get("commonName"),
                             "sockit test client")


class SendProxy(ForwardCase):
    def proxy_case(self, flag, version, tls):
        seen = {}

        def handler(c, i):
            seen["hdr"] = read_proxy_header(c)
            if tls:
                c = upstream_tls_ctx().wrap_socket(c, server_side=True)
            echo_handler(c, i)

        with Upstream(handler) as up:
            args = [flag, "--to", up.addr]
            if tls:
                args += ["--upstream-tls", "--upstream-ca",
                         CERTS.path("ca.pem")]
            with self.server("tcp", args) as srv:
                s = self.client(srv, "tcp")
                s.sendall(b"after the header\n")
                self.assertEqual(read_line(s), b"after the header\n")
                host, port = s.getsockname()
                finish(s)
                up.wait_done()
        self.assertEqual(up.errors, [])
        self.assertEqual(seen["hdr"], (version, host, port))

    def test_send_proxy_v1(self):
        self.proxy_case("--send-proxy", 1, False)

    def test_send_proxy_v2(self):
        self.proxy_case("--send-proxy-v2", 2, False)

    def test_send_proxy_v2_before_tls(self):
        self.proxy_case("--send-proxy-v2", 2, True)

    def test_send_proxy_v1_before_tls(self):
        self.proxy_case("--send-proxy", 1, True)

    def test_send_proxy_for_a_unix_client(self):
        """A Unix client has no address a header can carry: v1 says
        UNKNOWN, v2 is a LOCAL header; the bytes follow either way."""
        for flag, version in (("--send-proxy", 1), ("--send-proxy-v2", 2)):
            seen = {}

            def handler(c, i):
                seen["hdr"] = read_proxy_header(c)
                echo_handler(c, i)

            with Upstream(handler) as up, \
                    self.server("unix", [flag, "--to", up.addr]) as srv:
                s = self.client(srv, "unix")
                s.sendall(b"unix\n")
                self.assertEqual(read_line(s), b"unix\n")
                finish(s)
                up.wait_done()
            self.assertEqual(seen["hdr"], (version, None, None))


class SendProxyMixedFamilies(ForwardCase):
    """A --proxy-protocol listener whose client came over the other IP
    version than the listener's: the IPv4 side is sent IPv4-mapped, in a
    TCP6 / INET6 header (not UNKNOWN / LOCAL, a health check upstream)."""

    def mixed(self, flag, listen, incoming, want_src, want_dst_host):
        seen, dst = {}, {}

        def handler(c, i):
            seen["hdr"] = read_proxy_header(c, dst)
            echo_handler(c, i)

        with Upstream(handler) as up, Server([
                "--mode", "forward", "-l", listen, "--proxy-protocol", flag,
                "--to", up.addr]) as srv:
            host, port = srv.host_port("tcp")
            s = socket.create_connection((host, port), timeout=T)
            s.sendall(incoming + b"mixed\n")
            self.assertEqual(read_line(s), b"mixed\n")
            finish(s)
            up.wait_done()
        self.assertEqual(up.errors, [])
        version = 2 if flag == "--send-proxy-v2" else 1
        self.assertEqual(seen["hdr"][0], version)
        self.assertEqual(ipaddress.ip_address(seen["hdr"][1]),
                         ipaddress.ip_address(want_src[0]))
        self.assertEqual(seen["hdr"][2], want_src[1])
        self.assertEqual(ipaddress.ip_address(dst["addr"]),
                         ipaddress.ip_address(want_dst_host))
        self.assertEqual(dst["port"], port)

    def test_ipv6_client_on_ipv4_listener(self):
        for flag in ("--send-proxy", "--send-proxy-v2"):
            self.mixed(flag, "127.0.0.1:0",
                       b"PROXY TCP6 2001:db8::7 ::1 4242 80\r\n",
                       ("2001:db8::7", 4242), "::ffff:127.0.0.1")

    def test_ipv4_client_on_ipv6_listener(self):
        for flag in ("--send-proxy", "--send-proxy-v2"):
            self.mixed(flag, "[::1]:0",
                       b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\r\n",
                       ("::ffff:203.0.113.7", 4242), "::1")


class Life(ForwardCase):
    def test_sigterm_lets_a_relay_finish(self):
        """A graceful stop takes no new clients but lets a running pair go
        on until it ends (well within --grace)."""
        with Upstream(echo_handler) as up, \
                self.server("tcp", ["--to", up.addr, "--grace", "60"]) as srv:
            s = self.client(srv, "tcp")
            s.sendall(b"one\n")
            self.assertEqual(read_line(s), b"one\n")
            srv.signal(signal.SIGTERM)
            srv.wait_log("stopping", T)
            s.sendall(b"two\n")
            self.assertEqual(read_line(s), b"two\n")
            finish(s)
            self.assertEqual(srv.wait(T), 0)
            self.assertFalse([l for l in srv.log if "grace period over" in l])

    def test_grace_end_resets_a_cut_pair(self):
        """SIGTERM with --grace 1 while an endless upstream streams to the
        client: when the grace period is over the pair is cut, and the
        client sees a reset, never a clean end of a truncated stream."""
        stop = threading.Event()

        def handler(c, i):
            block = _BLOCK[:65536]
            t0 = time.monotonic()
            try:
                # Bounded in time; ends when the pair is cut.
                while not stop.is_set() and time.monotonic() - t0 < T:
                    c.sendall(block)
            except OSError:
                pass

        with Upstream(handler) as up, \
                self.server("tcp", ["--to", up.addr, "--grace", "1"]) as srv:
            s = self.client(srv, "tcp")
            self.assertTrue(s.recv(65536))
            srv.signal(signal.SIGTERM)
            srv.wait_log("stopping", T)
            t0 = time.monotonic()
            try:
                with self.assertRaises(ConnectionResetError):
                    while time.monotonic() - t0 < T:
                        if not s.recv(1 << 20):
                            break  # a clean end: the failure
                srv.wait_log("grace period over", T)
            finally:
                stop.set()
                s.close()

    def test_idle_timeout_spares_a_moving_pair(self):
        """--idle-timeout 2: a pair that moves a byte each way every 0.1 s
        for 5 s stays (the relay's progress is activity, though nothing
        ever waits in the server's queues); a silent pair is closed."""
        with Upstream(echo_handler) as up, self.server(
                "tcp", ["--to", up.addr, "--idle-timeout", "2"]) as srv:
            quiet = self.client(srv, "tcp")
            busy = self.client(srv, "tcp")
            t0 = time.monotonic()
            for _ in range(1000):  # bounded in count and in time
                if time.monotonic() - t0 >= 5:
                    break
                busy.sendall(b"x")
                self.assertEqual(recv_exact(busy, 1), b"x")
                time.sleep(0.1)  # pacing, not synchronisation
            # Cut from outside: a reset, not the clean end of a stream.
            with self.assertRaises(ConnectionResetError):
                quiet.recv(1)
            busy.sendall(b"y")
            self.assertEqual(recv_exact(busy, 1), b"y")
            finish(busy)
            self.assertEqual(
                len([l for l in srv.drain_log(0.3) if "idle for" in l]), 1)

    def test_options(self):
        cases = [
            (["--mode", "forward", "--check"], "needs --to"),
            (["--mode", "forward", "--to", "nosuch.invalid:80", "--check"],
             "--to nosuch.invalid:80"),
            (["--mode", "forward", "--to", "127.0.0.1:1", "--upstream-ca",
              "x", "--check"], "need --upstream-tls"),
            (["--mode", "forward", "--to", "unix:/nonexistent/s",
              "--upstream-tls", "--check"], "--upstream-servername"),
            (["--mode", "forward", "--to", "127.0.0.1:1",
              "--connect-timeout", "x", "--check"],
             "--connect-timeout: 'x'"),
            (["--mode", "echo", "--send-proxy", "--check"],
             "--send-proxy applies only to --mode forward"),
            # Rounded to 0 it would mean "no limit".
            (["--mode", "forward", "--to", "127.0.0.1:1",
              "--connect-timeout", "0.0004", "--check"],
             "--connect-timeout: '0.0004' is under 1 ms"),
            (["--mode", "forward", "--to", "127.0.0.1:1",
              "--connect-timeout", "0.1ms", "--check"],
             "--connect-timeout: '0.1ms' is under 1 ms"),
            # Nothing to connect to.
            (["--mode", "forward", "--to", "127.0.0.1:0", "--check"],
             "--to 127.0.0.1:0: port 0"),
            (["--mode", "forward", "--to", "0.0.0.0:80", "--check"],
             "--to 0.0.0.0:80: 0.0.0.0 is not"),
            (["--mode", "forward", "--to", "[::]:80", "--check"],
             "--to [::]:80: :: is not"),
            (["--mode", "forward", "--to", "224.0.0.1:80", "--check"],
             "--to 224.0.0.1:80: a multicast address"),
            (["--mode", "forward", "--to", "[ff02::1]:80", "--check"],
             "--to [ff02::1]:80: a multicast address"),
            (["--mode", "forward", "--udp", "-l", "127.0.0.1:0", "--to",
              "127.0.0.1:0", "--check"], "--to 127.0.0.1:0: port 0"),
        ]
        for args, needle in cases:
            r = subprocess.run([SERVER] +
                               args, capture_output=True, text=True,
                               timeout=30)
            self.assertNotEqual(r.returncode, 0, args)
            self.assertIn(needle, r.stderr, args)
        r = subprocess.run([SERVER, "--mode",
                            "forward", "--to", "127.0.0.1:1", "--to",
                            "[::1]:2", "--to", "unix:@x", "--upstream-tls",
                            "--upstream-insecure", "--send-proxy-v2",
                            "--connect-timeout", "0.001", "--check"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("--upstream-insecure", r.stderr)  # the warning


if __name__ == "__main__":
    unittest.main()
