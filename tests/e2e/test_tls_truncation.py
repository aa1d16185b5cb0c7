"""TLS peers that end the session without close_notify (issue #13 item 7).

.NET's SslStream does that unless the application calls ShutdownAsync, and
so do many servers. sockit-client takes such an end, after a reply arrived
and outside a frame, as the end of the stream with a one-line warning and
exit 0; --tls-strict-close makes it an error; before any reply, or inside
a frame, it always fails. The peer here is python3's ssl module, whose
sockets close without close_notify unless unwrap() is called.
"""
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

from skutil import needs, run_client


@needs("openssl")
class Truncation(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sk-trunc-")
        cls.cert = os.path.join(cls.dir, "c.pem")
        cls.key = os.path.join(cls.dir, "c.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                        "-nodes", "-keyout", cls.key, "-out", cls.cert,
                        "-days", "1", "-subj", "/CN=localhost"],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def server(self, reply, want=1):
        """One TLS session: reads `want` bytes, sends `reply`, then ends TCP
        without close_notify (the ssl socket is detached, shut, closed)."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(1)
        ls.settimeout(30)

        def run():
            try:
                c, _ = ls.accept()
                c.settimeout(30)
                t = ctx.wrap_socket(c, server_side=True)
                got = b""
                while len(got) < want:
                    b = t.recv(64)
                    if not b:
                        break
                    got += b
                if reply:
                    t.sendall(reply)
                raw = socket.socket(fileno=t.detach())
                raw.shutdown(socket.SHUT_WR)
                try:
                    while raw.recv(4096):
                        pass
                except OSError:
                    pass
                raw.close()
            except (OSError, ssl.SSLError):
                pass
            finally:
                ls.close()

        th = threading.Thread(target=run, daemon=True)
        th.start()
        self.addCleanup(th.join, 10)
        return "127.0.0.1:%d" % ls.getsockname()[1]

    def run_stdin(self, addr, *extra, data=b"hello\n"):
        # Data on stdin (not a terminal): the streaming path, which reads
        # until the server ends the session.
        return run_client(["--tls", "--insecure"] + list(extra) + [addr],
                          input=data, timeout=60)

    def warnings(self, r):
        return [l for l in r.stderr.decode(errors="replace").splitlines()
                if "close_notify" in l]

    def test_after_reply_is_end_of_stream_with_one_warning(self):
        r = self.run_stdin(self.server(b"the whole reply\n"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"the whole reply\n")
        w = self.warnings(r)
        self.assertEqual(len(w), 1, r.stderr)
        self.assertIn("without close_notify", w[0])

    def test_strict_close_makes_it_an_error(self):
        r = self.run_stdin(self.server(b"the whole reply\n"),
                           "--tls-strict-close")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stdout, b"the whole reply\n")
        self.assertIn(b"without close_notify", r.stderr)

    def test_before_any_reply_fails(self):
        r = self.run_stdin(self.server(b""))
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"without close_notify", r.stderr)

    def test_inside_a_frame_fails(self):
        # len16: a header that promises 10 bytes, then 3 of them.
        r = self.run_stdin(self.server(b"\x00\x0aabc", want=7), "-f", "len16",
                           data=b"hello\n")
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"middle of a frame", r.stderr)

    def test_strict_close_needs_tls(self):
        r = run_client(["--tls-strict-close", "127.0.0.1:1", "x"])
        self.assertEqual(r.returncode, 2)
        self.assertIn(b"--tls-strict-close", r.stderr)


if __name__ == "__main__":
    unittest.main()
