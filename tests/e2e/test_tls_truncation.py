"""TLS peers that end the session without close_notify (issue #13 item 7).

.NET's SslStream does that unless the application calls ShutdownAsync, and
so do many servers. sockit-client takes such an end, after a reply arrived
and outside a frame, as the end of the stream with a one-line warning and
exit 0; --tls-strict-close makes it an error; before any reply, or inside
a frame, it always fails. The peer here is python3's ssl module, whose
sockets close without close_notify unless unwrap() is called.
"""
import shutil
import tempfile
import unittest

from skutil import needs, run_client, self_signed_cert, tls_cut_server


@needs("openssl")
class Truncation(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sk-trunc-")
        cls.cert, cls.key = self_signed_cert(cls.dir, "c")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def server(self, reply, want=1):
        """One TLS session: reads `want` bytes, sends `reply`, then ends TCP
        without close_notify."""
        addr, th = tls_cut_server(self.cert, self.key, reply, want)
        self.addCleanup(th.join, 10)
        return addr

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
