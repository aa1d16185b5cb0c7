"""End-to-end tests of TLS in sockit-server (--tls) and sockit-client (--tls):
against each other and against peers written by others, the openssl command
line tools and python's ssl module.

Every certificate is made at run time with the openssl command line tool in
a fresh temporary directory (a CA, a server certificate for localhost and
127.0.0.1, an expired one, one for another host, and a client certificate),
and removed afterwards: no key is ever part of the source tree. Every server
listens on port 0, every wait has a deadline.
"""
import hashlib
import os
import random
import re
import select
import signal
import socket
import ssl
import struct
import subprocess
import time
import unittest

from skutil import (SERVER, CertDir, Server, localhost_listener, needs,
                    recv_exact, run_client, s_server_port, self_signed_cert,
                    split_addr)

FINGERPRINT_RE = re.compile(
    r"TLS certificate SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$")


def stop_process(p):
    """Kills a peer started by a test and reaps it."""
    p.kill()
    p.wait()


class Certs(CertDir):
    """A test CA and the certificates it signed, in a temporary directory."""

    def __init__(self):
        super().__init__("sk-tls-")
        self_signed_cert(self.dir, "ca", "/CN=sockit test CA", 2,
                         ("-extensions", "v3_ca"))
        server_ext = ("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                      "extendedKeyUsage=serverAuth\n")
        self._leaf("server", "/CN=localhost", server_ext, 2)
        # "-days -1" puts the end of validity one day in the past.
        self._leaf("expired", "/CN=localhost", server_ext, -1)
        self._leaf("wronghost", "/CN=example.org",
                   "subjectAltName=DNS:example.org\n"
                   "extendedKeyUsage=serverAuth\n", 2)
        self._leaf("client", "/CN=sockit test client",
                   "extendedKeyUsage=clientAuth\n", 2)

    def _key(self, name):
        self.openssl("genpkey", "-algorithm", "EC", "-pkeyopt",
                     "ec_paramgen_curve:P-256", "-out", name + ".key")

    def _leaf(self, name, subject, ext, days):
        self._key(name)
        with open(self.path(name + ".ext"), "w") as f:
            f.write("basicConstraints=CA:FALSE\n" + ext)
        self.openssl("req", "-config", "openssl.cnf", "-new", "-key",
                     name + ".key", "-out", name + ".csr", "-subj", subject)
        self.openssl("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem",
                     "-CAkey", "ca.key", "-set_serial",
                     str(random.getrandbits(63)), "-out", name + ".pem",
                     "-days", str(days), "-extfile", name + ".ext")


def read_pipe_until(pipe, expected, timeout=10.0):
    """Reads a subprocess pipe until `expected` bytes have arrived."""
    fd = pipe.fileno()
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < len(expected):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("got %r, waiting for %r" % (data, expected))
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            data += chunk
    return data


def stderr_lines(result):
    return result.stderr.decode(errors="replace").splitlines()


@needs("openssl")
class TlsTest(unittest.TestCase):

    def setUp(self):
        self.certs = Certs()
        self.addCleanup(self.certs.cleanup)
        self.ca = self.certs.path("ca.pem")

    # ---- helpers ----

    def server(self, *extra, cert="server"):
        """A TLS sockit-server on 127.0.0.1:0 with the named certificate."""
        args = ["-l", "127.0.0.1:0", "-w", "2", "--tls"]
        if cert is not None:
            args += ["--cert", self.certs.path(cert + ".pem"),
                     "--key", self.certs.path(cert + ".key")]
        srv = Server(args + list(extra))
        self.addCleanup(srv.stop)
        return srv

    def ssl_client(self, addr, cert=None, hostname="localhost"):
        """A python ssl client that verifies the server against the test CA
        and reports a connection cut without close_notify as an error."""
        ctx = ssl.create_default_context(cafile=self.ca)
        if cert is not None:
            ctx.load_cert_chain(self.certs.path(cert + ".pem"),
                                self.certs.path(cert + ".key"))
        raw = socket.create_connection(split_addr(addr), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname=hostname,
                            suppress_ragged_eofs=False)
        self.addCleanup(s.close)
        return s

    def client(self, *args, input=b"", timeout=60.0):
        return run_client(list(args), input=input, timeout=timeout)

    def assert_fails(self, r, *needles):
        """Exit 1 and exactly one line on stderr that says it all."""
        lines = stderr_lines(r)
        self.assertEqual(r.returncode, 1, lines)
        self.assertEqual(len(lines), 1, lines)
        for n in needles:
            self.assertIn(n, lines[0])
        return lines[0]

    def handshake_failures(self, srv):
        return [l for l in srv.log if "TLS handshake failed" in l]

    def localhost_server(self, *extra, cert="server"):
        """server() for a test that names it "localhost:PORT" (see
        skutil.localhost_listener); use in a `with`, which gives (server,
        port of its TLS listener on 127.0.0.1)."""
        def start():
            srv = self.server(*extra, cert=cert)
            return srv, split_addr(srv.addrs["tls"][0])[1]
        return localhost_listener(start, Server.stop)

    # ---- interoperability ----

    def test_openssl_s_client_echo(self):
        srv = self.server("-v")
        host, port = srv.host_port("tls")
        p = subprocess.Popen(
            ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
             "-CAfile", self.ca, "-verify_return_error", "-verify_hostname",
             "localhost", "-servername", "localhost", "-quiet"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        msg = b"hello from openssl s_client\n"
        p.stdin.write(msg)
        p.stdin.flush()
        self.assertEqual(read_pipe_until(p.stdout, msg), msg)
        srv.wait_log("recv %d bytes" % len(msg))
        self.assertEqual(self.handshake_failures(srv), [])

    def s_server_rev(self):
        """openssl s_server on 127.0.0.1, a port of its own choosing, with
        -rev: every line comes back reversed, which proves the bytes made
        the whole trip through it. Returns (process, port)."""
        out = os.path.join(self.certs.dir, "s_server.out")
        with open(out, "wb") as f:
            p = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:0",
                 "-cert", self.certs.path("server.pem"), "-key",
                 self.certs.path("server.key"), "-rev"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        try:
            return p, s_server_port(out, p)
        except BaseException:
            stop_process(p)
            raise

    def test_client_with_openssl_s_server(self):
        # "localhost": resolved, and the certificate checked against it;
        # [::1]:port is held so that the name can only lead to s_server.
        with localhost_listener(self.s_server_rev, stop_process) as (p, port):
            # The pump: stdin, then close_notify + FIN, then the replies.
            r = self.client("--tls", "--ca", self.ca, "127.0.0.1:%d" % port,
                            input=b"hello world\nsockit over tls\n")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"dlrow olleh\nslt revo tikcos\n")
            # The send mode (sync API), by name: one line frame per MESSAGE.
            r = self.client("--tls", "--ca", self.ca, "-f", "line",
                            "localhost:%d" % port, "abc", "stressed")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(r.stdout, b"cba\ndesserts\n")

    def test_python_ssl_client_verifies(self):
        srv = self.server()
        s = self.ssl_client(srv.addrs["tls"][0])
        self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
        msg = os.urandom(100000)
        s.sendall(msg)
        self.assertEqual(recv_exact(s, len(msg)), msg)
        # A clean end both ways: our close_notify, then the server's.
        s.unwrap()

    # ---- sockit-client and sockit-server ----

    def test_ca_echo_round_trip(self):
        sock = os.path.join(self.certs.dir, "tls.sock")
        with self.localhost_server("-l", "unix:" + sock) as (srv, port):
            self.assertTrue(any("tls+unix://" + sock in l for l in srv.log))
            tls = srv.addrs["tls"][0]
            # stdin, raw.
            r = self.client("--tls", "--ca", self.ca, tls,
                            input=b"over stdin\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"over stdin\n"),
                             r.stderr)
            # The URL from the readiness line implies --tls; host name check
            # against "localhost" this time.
            r = self.client("--ca", self.ca, "tls://localhost:%d" % port,
                            "raw", " message")
            self.assertEqual((r.returncode, r.stdout), (0, b"raw message"),
                             r.stderr)
            # Framed MESSAGEs (sync API).
            r = self.client("--tls", "--ca", self.ca, "-f", "line", tls, "a",
                            "b")
            self.assertEqual((r.returncode, r.stdout), (0, b"a\nb\n"),
                             r.stderr)
            # A Unix listener: the name to check is given explicitly.
            r = self.client("--ca", self.ca, "--servername", "localhost",
                            "tls+unix://" + sock, input=b"via unix\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"via unix\n"),
                             r.stderr)
            self.assertEqual(self.handshake_failures(srv), [])

    def test_self_signed_pin(self):
        srv = self.server("--self-signed", cert=None)
        # The fingerprint comes before the readiness line.
        self.assertRegex(srv.log[0], FINGERPRINT_RE)
        self.assertIn("listening on tls://", srv.log[1])
        fp = FINGERPRINT_RE.search(srv.log[0]).group(1)
        tls = srv.addrs["tls"][0]
        r = self.client("--tls", "--pin", fp, tls, input=b"pinned\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"pinned\n"), r.stderr)
        self.assertEqual(r.stderr, b"")
        # Lower case without colons is the same pin.
        r = self.client("--tls", "--pin", fp.replace(":", "").lower(), "-f",
                        "line", tls, "again")
        self.assertEqual((r.returncode, r.stdout), (0, b"again\n"), r.stderr)
        # Another pin, or no pin at all (the system store does not know a
        # throwaway certificate), is refused.
        other = ("00" if not fp.startswith("00") else "11") + fp[2:]
        r = self.client("--tls", "--pin", other, tls, "x")
        self.assert_fails(r, "TLS handshake with %s failed" % tls,
                          "does not match the pinned SHA-256 fingerprint")
        r = self.client("--tls", tls, "x")
        self.assert_fails(r, "TLS handshake with %s failed" % tls,
                          "certificate verify failed")

    def test_insecure_warns(self):
        srv = self.server("--self-signed", cert=None)
        tls = srv.addrs["tls"][0]
        r = self.client("--tls", "--insecure", tls, input=b"unverified\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"unverified\n"))
        lines = stderr_lines(r)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("--insecure", lines[0])
        self.assertIn("not checked", lines[0])
        r = self.client("-q", "--tls", "--insecure", tls, input=b"quiet\n")
        self.assertEqual((r.returncode, r.stdout, r.stderr),
                         (0, b"quiet\n", b""))

    # ---- rejected, with the reason ----

    def test_rejects_expired_cert(self):
        srv = self.server(cert="expired")
        tls = srv.addrs["tls"][0]
        for extra in ([], ["-f", "line"]):
            r = self.client("--tls", "--ca", self.ca, *extra, tls, "x")
            self.assert_fails(r, "TLS handshake with %s failed: "
                              "certificate verify failed: certificate has "
                              "expired" % tls)
        with self.assertRaises(ssl.SSLCertVerificationError):
            self.ssl_client(tls)

    def test_rejects_wrong_host(self):
        with self.localhost_server(cert="wronghost") as (srv, port):
            tls = srv.addrs["tls"][0]
            r = self.client("--tls", "--ca", self.ca, tls, "x")
            self.assert_fails(r, "certificate verify failed: IP address "
                              "mismatch")
            r = self.client("--tls", "--ca", self.ca, "-f", "line",
                            "localhost:%d" % port, "x")
            self.assert_fails(r, "TLS handshake with localhost:%d failed: "
                              "certificate verify failed: hostname mismatch"
                              % port)
            # The certificate is fine for the name it does show.
            r = self.client("--tls", "--ca", self.ca, "--servername",
                            "example.org", tls, input=b"named\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"named\n"),
                             r.stderr)

    def test_rejects_untrusted_ca(self):
        srv = self.server()
        tls = srv.addrs["tls"][0]
        # No --ca: the system trust store, which does not know the test CA.
        for extra in ([], ["-f", "len16"]):
            r = self.client("--tls", *extra, tls, "x")
            self.assert_fails(r, "TLS handshake with %s failed: "
                              "certificate verify failed: unable to get "
                              "local issuer certificate" % tls)
        # The server only learns that its certificate was refused.
        srv.wait_log("TLS handshake failed")

    def test_requires_client_cert(self):
        srv = self.server("--client-ca", self.ca)
        tls = srv.addrs["tls"][0]
        # Without a certificate: refused, with the reason, in both modes.
        r = self.client("--tls", "--ca", self.ca, tls, input=b"anonymous\n")
        self.assert_fails(r, "TLS handshake with %s failed" % tls,
                          "requires a client certificate")
        self.assertEqual(r.stdout, b"")
        r = self.client("--tls", "--ca", self.ca, "-f", "line", tls, "anon")
        self.assert_fails(r, "requires a client certificate")
        srv.wait_log(re.compile(r"TLS handshake failed: .*no certificate"))
        # Mutual TLS: accepted with the client certificate.
        cert = ["--cert", self.certs.path("client.pem"), "--key",
                self.certs.path("client.key")]
        r = self.client("--tls", "--ca", self.ca, *cert, tls,
                        input=b"mutual\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"mutual\n"), r.stderr)
        r = self.client("--tls", "--ca", self.ca, *cert, "-f", "len16", tls,
                        "mutual framed")
        self.assertEqual((r.returncode, r.stdout), (0, b"mutual framed"),
                         r.stderr)
        s = self.ssl_client(tls, cert="client")
        s.sendall(b"python mutual\n")
        self.assertEqual(recv_exact(s, 14), b"python mutual\n")
        # A certificate the CA did not issue for clients (a server's is
        # not signed for clientAuth) is refused by the server too.
        r = self.client("--tls", "--ca", self.ca, "--cert",
                        self.certs.path("wronghost.pem"), "--key",
                        self.certs.path("wronghost.key"), tls, input=b"x\n")
        self.assertEqual(r.returncode, 1, r.stderr)

    # ---- robustness of the server ----

    def test_plain_client_on_tls_port(self):
        srv = self.server()
        tls = srv.addrs["tls"][0]
        plain = socket.create_connection(split_addr(tls), timeout=5)
        plain_port = plain.getsockname()[1]
        plain.sendall(b"hello in plain text\n")
        self.assertEqual(plain.recv(100), b"")  # dropped, not answered
        plain.close()
        srv.wait_log("TLS handshake failed")
        # The server goes on serving TLS clients.
        r = self.client("--tls", "--ca", self.ca, tls, input=b"still here\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"still here\n"))
        srv.drain_log(0.3)
        about = [l for l in srv.log
                 if ":%d:" % plain_port in l or "error" in l]
        self.assertEqual(len(about), 1, srv.log)
        self.assertRegex(about[0], r"error: 127\.0\.0\.1:%d: TLS handshake "
                         r"failed: peer does not speak TLS" % plain_port)

    def test_garbage_on_tls_port(self):
        srv = self.server("--handshake-timeout", "2")
        tls = srv.addrs["tls"][0]
        rnd = random.Random(864)
        # Random bytes; the first is not a TLS record type, so the server
        # can tell at once (bytes that happen to look like a record header
        # would only be given up at the handshake timeout).
        junk = b"\x00" + bytes(rnd.getrandbits(8) for _ in range(4095))
        g = socket.create_connection(split_addr(tls), timeout=5)
        g.sendall(junk)
        try:
            self.assertEqual(g.recv(100), b"")
        except ConnectionResetError:
            pass
        g.close()
        srv.wait_log("TLS handshake failed")
        s = self.ssl_client(tls)
        s.sendall(b"after the garbage\n")
        self.assertEqual(recv_exact(s, 18), b"after the garbage\n")
        srv.drain_log(0.3)
        self.assertEqual(len(self.handshake_failures(srv)), 1, srv.log)
        self.assertIsNone(srv.proc.poll())

    def test_handshake_timeout_drops_silent_peer(self):
        srv = self.server("--handshake-timeout", "1")
        tls = srv.addrs["tls"][0]
        silent = socket.create_connection(split_addr(tls), timeout=10)
        t0 = time.monotonic()
        # Meanwhile a real client is served at once.
        s = self.ssl_client(tls)
        s.sendall(b"not delayed\n")
        self.assertEqual(recv_exact(s, 12), b"not delayed\n")
        self.assertEqual(silent.recv(10), b"")
        waited = time.monotonic() - t0
        self.assertGreater(waited, 0.8)
        self.assertLess(waited, 4.0)
        silent.close()
        line = srv.wait_log("TLS handshake failed")
        self.assertIn("not complete after 1 s", line)

    def test_idle_timeout_over_tls(self):
        srv = self.server("--idle-timeout", "1")
        s = self.ssl_client(srv.addrs["tls"][0])
        s.sendall(b"x\n")
        self.assertEqual(recv_exact(s, 2), b"x\n")
        t0 = time.monotonic()
        # The server ends the session with close_notify: no SSLEOFError.
        self.assertEqual(s.recv(10), b"")
        self.assertLess(time.monotonic() - t0, 4.0)
        srv.wait_log("idle for 1 s")

    def test_sigterm_closes_tls_cleanly(self):
        srv = self.server("--grace", "5")
        s = self.ssl_client(srv.addrs["tls"][0])
        s.sendall(b"before the stop\n")
        self.assertEqual(recv_exact(s, 16), b"before the stop\n")
        srv.signal(signal.SIGTERM)
        # close_notify, then FIN: a clean end, not a cut (suppress_ragged_
        # eofs is off, so a bare FIN would raise SSLEOFError here).
        self.assertEqual(s.recv(10), b"")
        s.close()
        self.assertEqual(srv.wait(10), 0, srv.log)
        self.assertEqual(self.handshake_failures(srv), [])

    # ---- the client over TLS ----

    def test_tls_client_on_plain_port(self):
        for mode in ("echo", "chargen"):
            srv = Server(["-l", "127.0.0.1:0", "-m", mode])
            self.addCleanup(srv.stop)
            r = self.client("--tls", "--ca", self.ca, srv.tcp, "x")
            self.assert_fails(r, "TLS handshake with %s failed" % srv.tcp,
                              "not speak TLS")

    def test_framed_len16_over_tls(self):
        srv = self.server("-f", "len16")
        tls = srv.addrs["tls"][0]
        r = self.client("--tls", "--ca", self.ca, "-f", "len16", "--hex",
                        tls, "0800", "")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"30 38 30 30", r.stdout)
        # The pump: every input line is one frame (and the replies, binary
        # frames, are printed as their bare payloads).
        r = self.client("--tls", "--ca", self.ca, "-f", "len16", tls,
                        input=b"one\ntwo\nthree\n")
        self.assertEqual((r.returncode, r.stdout), (0, b"onetwothree"),
                         r.stderr)
        # Frames on the wire, checked by python.
        s = self.ssl_client(tls)
        frames = [os.urandom(n) for n in (0, 1, 1000, 65535)]
        s.sendall(b"".join(struct.pack(">H", len(f)) + f for f in frames))
        for f in frames:
            (n,) = struct.unpack(">H", recv_exact(s, 2))
            self.assertEqual(recv_exact(s, n), f)

    def test_big_file_echo_sha256(self):
        path = os.path.join(self.certs.dir, "big.bin")
        rnd = random.Random(20)
        with open(path, "wb") as f:
            for _ in range(20):
                f.write(rnd.randbytes(1 << 20))
        with open(path, "rb") as f:
            want = hashlib.sha256(f.read()).hexdigest()
        # -q: a log line per read would fill the unread stderr pipe.
        srv = self.server("-q")
        r = self.client("--tls", "--ca", self.ca, "--file", path,
                        srv.addrs["tls"][0], timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout), 20 << 20)
        self.assertEqual(hashlib.sha256(r.stdout).hexdigest(), want)

    def test_files_get_over_tls(self):
        root = os.path.join(self.certs.dir, "root")
        os.mkdir(root)
        big = random.Random(7).randbytes(5 << 20)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(big)
        with open(os.path.join(root, "small.txt"), "wb") as f:
            f.write(b"small\n")
        srv = self.server("-m", "files", "--root", root)
        tls = srv.addrs["tls"][0]
        r = self.client("--tls", "--ca", self.ca, tls,
                        input=b"GET big.bin\n", timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        head, _, body = r.stdout.partition(b"\n")
        self.assertEqual(head, b"OK %d" % len(big))
        self.assertEqual(hashlib.sha256(body).digest(),
                         hashlib.sha256(big).digest())
        # Pipelined requests are answered in order, each whole.
        r = self.client("--tls", "--ca", self.ca, tls,
                        input=b"GET small.txt\nGET big.bin\nGET small.txt\n"
                              b"GET missing\nPUT up.txt 5\nhelloGET up.txt\n",
                        timeout=120)
        self.assertEqual(r.returncode, 0, r.stderr)
        want = (b"OK 6\nsmall\n" + b"OK %d\n" % len(big) + big +
                b"OK 6\nsmall\nERR no such file\nOK 5\nOK 5\nhello")
        self.assertEqual(len(r.stdout), len(want))
        self.assertTrue(r.stdout == want)
        # python ssl, reading slowly: the server keeps its queue bounded.
        s = self.ssl_client(tls)
        s.sendall(b"GET big.bin\n")
        self.assertEqual(recv_exact(s, len(b"OK %d\n" % len(big))),
                         b"OK %d\n" % len(big))
        time.sleep(0.5)
        self.assertTrue(recv_exact(s, len(big)) == big)

    def test_stream_modes_over_tls(self):
        # chargen: the RFC 864 pattern, encrypted.
        srv = self.server("-m", "chargen")
        s = self.ssl_client(srv.addrs["tls"][0])
        data = recv_exact(s, 74 * 3)
        self.assertEqual(data[:74],
                         bytes(32 + i % 95 for i in range(72)) + b"\r\n")
        # discard: nothing comes back, and the session ends cleanly.
        srv = self.server("-m", "discard")
        r = self.client("--tls", "--ca", self.ca, srv.addrs["tls"][0],
                        input=os.urandom(300000))
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"", b""))
        # The close line counts the plaintext bytes received.
        line = srv.wait_log(re.compile(r"connection from \S+ closed \(after "))
        self.assertRegex(line, r"; in 300000 bytes, ")
        # chat: a line from one client reaches the other. A connection
        # still in its handshake is not in the room: announcements skip it
        # rather than treat it as a client that does not read.
        srv = self.server("-m", "chat")
        tls = srv.addrs["tls"][0]
        pending = socket.create_connection(split_addr(tls), timeout=5)
        self.addCleanup(pending.close)
        a = self.ssl_client(tls)
        b = self.ssl_client(tls)
        a_port, b_port = a.getsockname()[1], b.getsockname()[1]
        # b's join announcement reaches a: both are in the room now.
        joined = b"* 127.0.0.1:%d joined\n" % b_port
        self.assertEqual(recv_exact(a, len(joined)), joined)
        a.sendall(b"hello room\n")
        want = b"[127.0.0.1:%d] hello room\n" % a_port
        self.assertEqual(recv_exact(b, len(want)), want)
        pending.setblocking(False)
        with self.assertRaises(BlockingIOError):
            pending.recv(1)  # neither closed nor sent anything
        self.assertFalse(any("slow reader" in l for l in srv.log), srv.log)

    def test_tls_usage_errors(self):
        cert = ["--cert", self.certs.path("server.pem"), "--key",
                self.certs.path("server.key")]
        for args in (["--tls"],
                     ["--cert", self.certs.path("server.pem")],
                     ["--self-signed"],
                     ["--tls", "--self-signed"] + cert,
                     ["--tls", "--key", self.certs.path("server.key")],
                     ["--tls", "--udp", "-l", "127.0.0.1:0"] + cert,
                     ["--tls", "-l", "udp://127.0.0.1:0"] + cert,
                     ["--handshake-timeout", "1"]):
            r = subprocess.run([SERVER] + args,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=10)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
        # A file that cannot be loaded is a runtime failure, with its name.
        r = subprocess.run([SERVER, "-l",
                            "127.0.0.1:0", "--tls", "--cert",
                            self.certs.path("nope.pem")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"nope.pem", r.stderr)
        for args in (["--ca", self.ca, "127.0.0.1:1", "x"],
                     ["--tls", "--udp", "127.0.0.1:1", "x"],
                     ["--tls", "--insecure", "--pin", "00" * 32,
                      "127.0.0.1:1", "x"],
                     ["--tls", "--pin", "abc", "127.0.0.1:1", "x"],
                     ["--tls", "--pin", "00" * 32, "--ca", self.ca,
                      "127.0.0.1:1", "x"],
                     ["--tls", "--key", "k.pem", "127.0.0.1:1", "x"],
                     ["--tls", "unix:/nonexistent.sock", "x"]):
            r = self.client(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertEqual(len(stderr_lines(r)), 2, r.stderr)  # + "Try"
        r = self.client("--tls", "--ca", self.certs.path("nope.pem"),
                        "127.0.0.1:1", "x")
        self.assert_fails(r, "TLS: cannot load CA certificates")


if __name__ == "__main__":
    unittest.main()
