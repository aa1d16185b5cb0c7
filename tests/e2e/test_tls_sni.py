"""End-to-end tests of the TLS trust features with real peers: sockit-server
choosing its certificate by SNI (several --cert/--key pairs) for openssl
s_client, sockit-client verifying the right certificate of an openssl
s_server that has two (-servername/-cert2), session resumption seen by
openssl s_client (-sess_out / -sess_in), and TLS file errors that name the
file and say why.

Certificates are made at run time in a temporary directory and removed
afterwards. Servers listen on port 0 (s_server too: it prints the port it
got); every wait has a deadline.
"""
import os
import re
import select
import subprocess
import time
import unittest

from skutil import SERVER, CertDir, Server, needs, run_client, \
    s_server_port, self_signed_cert


class Certs(CertDir):
    """A test CA and leaves for a.test, b.test and an expired one."""

    def __init__(self):
        super().__init__("sk-sni-")
        self_signed_cert(self.dir, "ca", "/CN=sni test CA", 2,
                         ("-extensions", "v3_ca"))
        for name, days in (("a", 2), ("b", 2), ("old", -1)):
            host = "a.test" if name == "old" else name + ".test"
            with open(self.path(name + ".ext"), "w") as f:
                f.write("subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\n"
                        % host)
            self.openssl("req", "-config", "openssl.cnf", "-newkey", "ec",
                         "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                         "-keyout", name + ".key", "-out", name + ".csr",
                         "-subj", "/CN=" + host)
            self.openssl("x509", "-req", "-in", name + ".csr", "-CA",
                         "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                         "-days", str(days), "-extfile", name + ".ext",
                         "-out", name + ".pem")
        with open(self.path("garbage.pem"), "w") as f:
            f.write("not a certificate\n")


SUBJECT_RE = re.compile(r"^subject=\s*CN\s*=\s*(\S+)", re.M)


@needs("openssl")
class TestTlsSni(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = Certs()
        cls.ca = cls.certs.path("ca.pem")

    @classmethod
    def tearDownClass(cls):
        cls.certs.cleanup()

    def server(self, *pairs, extra=()):
        args = ["-l", "127.0.0.1:0", "-w", "1", "--tls"]
        for name in pairs:
            args += ["--cert", self.certs.path(name + ".pem"),
                     "--key", self.certs.path(name + ".key")]
        srv = Server(args + list(extra))
        self.addCleanup(srv.stop)
        return srv

    def s_client(self, srv, *args):
        """Runs openssl s_client against srv; returns its stdout as text.
        It sends a line and waits for the echo, so the session tickets that
        come before it have been read, then ends its input and so ends."""
        host, port = srv.host_port("tls")
        p = subprocess.Popen(
            ["openssl", "s_client", "-connect", "%s:%d" % (host, port),
             "-CAfile", self.ca] + list(args),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        p.stdin.write(b"ping-sni-test\n")
        p.stdin.flush()
        out = b""
        deadline = time.monotonic() + 30
        while b"ping-sni-test\n" not in out.split(b"---", 1)[-1]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no echo from s_client; got:\n%r" % out)
            r, _, _ = select.select([p.stdout], [], [], left)
            if r:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
        rest, _ = p.communicate(timeout=30)
        return (out + rest).decode(errors="replace")

    def test_sockit_server_picks_certificate_by_sni(self):
        srv = self.server("a", "b")
        out = self.s_client(srv, "-servername", "b.test",
                            "-verify_return_error", "-verify_hostname",
                            "b.test")
        self.assertEqual(SUBJECT_RE.findall(out), ["b.test"], out)
        self.assertIn("Verify return code: 0 (ok)", out)
        # An unknown name, and no name at all: the first pair.
        out = self.s_client(srv, "-servername", "c.test")
        self.assertEqual(SUBJECT_RE.findall(out), ["a.test"], out)
        out = self.s_client(srv, "-noservername")
        self.assertEqual(SUBJECT_RE.findall(out), ["a.test"], out)

    def test_sockit_server_resumes_sessions(self):
        srv = self.server("a")
        sess = self.certs.path("session.pem")
        out = self.s_client(srv, "-servername", "a.test", "-sess_out", sess)
        self.assertIn("New, TLSv1.3", out)
        self.assertTrue(os.path.getsize(sess) > 0)
        out = self.s_client(srv, "-servername", "a.test", "-sess_in", sess)
        self.assertIn("Reused, TLSv1.3", out)

    def test_sockit_client_verifies_the_sni_certificate(self):
        log = self.certs.path("s_server.out")
        with open(log, "wb") as f:
            p = subprocess.Popen(
                ["openssl", "s_server", "-accept", "127.0.0.1:0",
                 "-cert", self.certs.path("a.pem"),
                 "-key", self.certs.path("a.key"),
                 "-servername", "b.test",
                 "-cert2", self.certs.path("b.pem"),
                 "-key2", self.certs.path("b.key"), "-rev"],
                stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        addr = "127.0.0.1:%d" % s_server_port(log, p)
        for name in ("b.test", "a.test"):
            r = run_client(["--tls", "--ca", self.ca, "--servername", name,
                            addr], input=b"hello\n")
            self.assertEqual((r.returncode, r.stdout), (0, b"olleh\n"),
                             r.stderr)
        # A name neither certificate holds: s_server answers with a's,
        # which does not name it.
        r = run_client(["--tls", "--ca", self.ca, "--servername", "c.test",
                        addr], input=b"hello\n")
        self.assertEqual(r.returncode, 1)
        self.assertIn("hostname mismatch", r.stderr.decode())

    # ---- errors that name the file ----

    def run_server(self, *args):
        r = subprocess.run([SERVER, "-l", "127.0.0.1:0", "--tls"] + list(args)
                           + ["--check"], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        return r.returncode, r.stderr.decode(errors="replace")

    def test_server_file_errors_name_the_file(self):
        missing = self.certs.path("missing.pem")
        rc, err = self.run_server("--cert", missing)
        self.assertEqual(rc, 1, err)
        self.assertIn(missing, err)
        self.assertIn("No such file or directory", err)
        garbage = self.certs.path("garbage.pem")
        rc, err = self.run_server("--cert", garbage,
                                  "--key", self.certs.path("a.key"))
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot load certificate %s: no PEM data found"
                      % garbage, err)
        # The second pair is checked as well as the first.
        rc, err = self.run_server(
            "--cert", self.certs.path("a.pem"),
            "--key", self.certs.path("a.key"),
            "--cert", self.certs.path("b.pem"),
            "--key", self.certs.path("a.key"))
        self.assertEqual(rc, 1, err)
        self.assertIn("private key %s does not match the certificate in %s"
                      % (self.certs.path("a.key"), self.certs.path("b.pem")),
                      err)
        # Keys pair with certificates one to one.
        rc, err = self.run_server(
            "--cert", self.certs.path("a.pem"),
            "--cert", self.certs.path("b.pem"),
            "--key", self.certs.path("a.key"))
        self.assertEqual(rc, 2, err)
        self.assertIn("give one --key per --cert", err)

    def test_server_warns_about_an_expired_certificate(self):
        srv = self.server("old")
        self.assertTrue(any("old.pem" in l and "expired on" in l
                            for l in srv.log), srv.log)

    def test_client_names_a_missing_ca_file(self):
        srv = self.server("a")
        missing = self.certs.path("nope.pem")
        r = run_client(["--tls", "--ca", missing, srv.addrs["tls"][0], "x"])
        lines = r.stderr.decode(errors="replace").splitlines()
        self.assertEqual(r.returncode, 1, lines)
        self.assertEqual(len(lines), 1, lines)
        self.assertIn(missing, lines[0])
        self.assertIn("No such file or directory", lines[0])


if __name__ == "__main__":
    unittest.main()
