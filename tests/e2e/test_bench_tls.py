"""sockit-client --bench --bench-mode connect --tls: every connection is a
real TLS handshake against sockit-server, full by default and resumed with
--tls-resume, and the JSON report says how many resumed."""
import json
import unittest

from skutil import Server, run_client


def bench_connect(addr, *args):
    p = run_client(["--bench", addr, "--bench-mode", "connect", "--tls",
                    "--insecure", "--duration", "1", "--warmup", "0.2",
                    "--conns", "2", "--json"] + list(args), timeout=60)
    return p, json.loads(p.stdout.decode() or "{}")


class BenchTlsTest(unittest.TestCase):
    def setUp(self):
        self.srv = Server(["-q", "--tls", "--self-signed", "-l",
                           "127.0.0.1:0", "--workers", "1"])
        self.addCleanup(self.srv.stop)
        self.addr = self.srv.addrs["tls"][0]

    def test_full_handshakes_by_default(self):
        p, r = bench_connect(self.addr)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(r["tls"])
        self.assertFalse(r["tls_resume"])
        self.assertGreater(r["handshakes"], 0)
        self.assertEqual(r["handshakes"], r["connects"])
        self.assertGreater(r["connects_per_sec"], 0)
        self.assertEqual(r["resumed"], 0)
        self.assertEqual(r["errors"], 0)

    def test_resumed_handshakes(self):
        p, r = bench_connect(self.addr, "--tls-resume")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(r["tls_resume"])
        self.assertGreater(r["handshakes"], 0)
        self.assertLessEqual(r["resumed"], r["handshakes"])
        # The first handshakes (in the warm-up) are full; after them
        # almost every one resumes the session an earlier one got.
        self.assertGreater(r["resumed"], r["handshakes"] * 0.5, r)
        self.assertEqual(r["errors"], 0)

    def test_text_report(self):
        p = run_client(["--bench", self.addr, "--bench-mode", "connect",
                        "--tls", "--insecure", "--duration", "0.5",
                        "--warmup", "0", "--interval", "0", "--tls-resume"],
                       timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        out = p.stdout.decode()
        self.assertRegex(out, r"handshakes\s+[1-9]\d*\s+\(\d+/s, resuming\)")
        self.assertRegex(out, r"resumed\s+\d+")

    def test_resume_needs_tls(self):
        p = run_client(["--bench", self.addr, "--bench-mode", "connect",
                        "--tls-resume"], timeout=30)
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"--tls-resume need --tls", p.stderr)


if __name__ == "__main__":
    unittest.main()
