"""sockit-client --bench: each mode measures something real against
sockit-server, reports it in the documented JSON shape, and stops by itself
within its duration."""
import json
import time
import unittest

from skutil import Server, run_client


def bench(addr, *args, timeout=30):
    t0 = time.monotonic()
    p = run_client(["--bench", addr, "--duration", "0.5", "--warmup", "0.2",
                    "--json"] + list(args), timeout=timeout)
    return p, json.loads(p.stdout.decode() or "{}"), time.monotonic() - t0


class BenchTest(unittest.TestCase):
    def check_latency(self, r):
        lat = r["latency_us"]
        self.assertGreater(lat["p50"], 0)
        self.assertLessEqual(lat["p50"], lat["p90"])
        self.assertLessEqual(lat["p90"], lat["p99"])
        self.assertLessEqual(lat["p99"], lat["p999"])
        self.assertLessEqual(lat["p999"], lat["max"])

    def test_echo_with_pipeline_reports_latency(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--workers", "1"]) as srv:
            p, r, took = bench(srv.tcp, "--conns", "20", "--pipeline", "4",
                               "--size", "100")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(r["mode"], "echo")
            self.assertEqual(r["errors"], 0)
            self.assertGreater(r["messages"], 100)
            self.assertAlmostEqual(r["bytes"], r["messages"] * 100)
            self.assertGreater(r["msgs_per_sec"], 0)
            self.check_latency(r)
            self.assertLess(took, 10)

    def test_echo_framed_len16(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--frame", "len16"]) as srv:
            p, r, _ = bench(srv.tcp, "--frame", "len16", "--size", "200")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(r["errors"], 0)
            self.assertGreater(r["messages"], 10)
            # Each message on the wire carries its 2-byte header.
            self.assertEqual(r["bytes"], r["messages"] * 202)

    def test_oneway_to_discard(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--mode", "discard"]) as srv:
            p, r, _ = bench(srv.tcp, "--bench-mode", "oneway", "--size",
                            "64K", "--conns", "2")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertGreater(r["mb_per_sec"], 1)
            self.assertEqual(r["errors"], 0)

    def test_connect_rate(self):
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            p, r, _ = bench(srv.tcp, "--bench-mode", "connect", "--conns",
                            "8")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertGreater(r["connects_per_sec"], 10)

    def test_idle_connections_announced(self):
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            p, r, _ = bench(srv.tcp, "--bench-mode", "idle", "--conns",
                            "300")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn(b"idle: 300 connections open", p.stderr)

    def test_udp_echo(self):
        with Server(["-q", "--udp", "-l", "127.0.0.1:0"]) as srv:
            p, r, _ = bench(srv.addrs["udp"][0], "--udp", "--conns", "4")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(r["transport"], "udp")
            self.assertGreater(r["messages"], 10)
            self.check_latency(r)

    def test_unix_echo(self):
        import tempfile, os
        d = tempfile.mkdtemp()
        path = os.path.join(d, "s")
        with Server(["-q", "-l", "unix:" + path]) as srv:
            p, r, _ = bench("unix:" + path, "--conns", "4")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertGreater(r["messages"], 10)
        os.rmdir(d) if not os.listdir(d) else None

    def test_refused_exits_1_and_usage_exits_2(self):
        p = run_client(["--bench", "127.0.0.1:1", "--duration", "0.2",
                        "--warmup", "0"])
        self.assertEqual(p.returncode, 1)
        self.assertIn(b"refused", p.stderr.lower())
        p = run_client(["--bench", "127.0.0.1:1", "--conns", "0"])
        self.assertEqual(p.returncode, 2)
        p = run_client(["--bench", "127.0.0.1:1", "--bench-mode", "nope"])
        self.assertEqual(p.returncode, 2)


if __name__ == "__main__":
    unittest.main()
