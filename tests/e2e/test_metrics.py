"""End-to-end tests of sockit-server --metrics: the Prometheus text format on
GET /metrics, counters that match a known workload exactly, the HTTP edge
cases (404, 405, 400, 431), and scrapers that stall.

Every server listens on port 0 (its metrics listener too); every wait has a
deadline.
"""
import re
import shutil
import socket
import ssl
import subprocess
import time
import unittest
import urllib.error
import urllib.request

from skutil import SERVER, Server, connect, needs, recv_exact

METRICS_RE = re.compile(r"metrics on http://(\S+)/metrics")
SAMPLE_RE = re.compile(r"^([a-z_]+)(\{[^}]*\})? (\S+)$")


def metrics_addr(srv):
    return METRICS_RE.search(srv.wait_log("metrics on http://")).group(1)


def parse(text):
    """{'name{labels}': value} for every sample; checks the HELP and TYPE
    lines come before each family's samples."""
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            typed.add(line.split()[2])
            continue
        if line.startswith("#") or not line:
            continue
        m = SAMPLE_RE.match(line)
        assert m, "not a sample line: %r" % line
        fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or fam in typed, "no TYPE for " + line
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def scrape(addr, path="/metrics", timeout=10):
    with urllib.request.urlopen("http://%s%s" % (addr, path),
                                timeout=timeout) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith(
            "text/plain; version=0.0.4"), r.headers["Content-Type"]
        return r.read().decode()


def raw_request(addr, data, timeout=10):
    """Sends data, returns everything the listener answers until it closes."""
    host, _, port = addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        got = b""
        while True:
            try:
                b = s.recv(65536)
            except ConnectionResetError:
                break
            if not b:
                break
            got += b
        return got


def wait_closed_lines(srv, n, timeout=10):
    deadline = time.monotonic() + timeout
    while sum(" closed" in l for l in srv.log) < n:
        srv.next_log_line(max(0.01, deadline - time.monotonic()))


def echo_lines(addr, nconns, nframes, payload):
    for _ in range(nconns):
        with connect(addr) as s:
            for _ in range(nframes):
                s.sendall(payload + b"\n")
            want = (payload + b"\n") * nframes
            assert recv_exact(s, len(want)) == want


class Metrics(unittest.TestCase):
    def test_counters_match_a_known_workload(self):
        with Server(["-l", "127.0.0.1:0", "-f", "line", "-w", "2",
                     "--metrics", "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            before = parse(scrape(addr))
            self.assertEqual(before["sockit_connections_accepted_total"], 0)
            # 3 connections, each 5 line frames of 10 bytes (+ newline).
            echo_lines(srv.tcp, 3, 5, b"0123456789")
            wait_closed_lines(srv, 3)
            m = parse(scrape(addr))
            lab = '{mode="echo",transport="tcp",direction="%s"}'
            self.assertEqual(m["sockit_connections_accepted_total"], 3)
            self.assertEqual(m["sockit_connections_open"], 0)
            self.assertEqual(
                m['sockit_connections_closed_total{reason="done"}'], 3)
            self.assertEqual(m["sockit_messages_total" + lab % "in"], 15)
            self.assertEqual(m["sockit_messages_total" + lab % "out"], 15)
            self.assertEqual(m["sockit_bytes_total" + lab % "in"], 165)
            self.assertEqual(m["sockit_bytes_total" + lab % "out"], 165)
            self.assertEqual(m["sockit_connections_refused_total"], 0)
            self.assertEqual(m["sockit_log_lines_dropped_total"], 0)
            # A worker that got no connection may never have woken up;
            # together they ran the workload.
            iters = [m['sockit_worker_loop_iterations_total{worker="%s"}' % w]
                     for w in ("0", "1")]
            self.assertGreater(sum(iters), 0)
            for w in ("0", "1"):
                self.assertIn(
                    'sockit_worker_busy_seconds_total{worker="%s"}' % w, m)
            start = m["sockit_process_start_time_seconds"]
            self.assertLess(abs(start - time.time()), 3600)

    def test_refused_rejected_frames_and_udp(self):
        with Server(["-l", "127.0.0.1:0", "-f", "line", "-w", "1",
                     "--max-conns", "1", "--max-frame", "16",
                     "--metrics", "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            held = connect(srv.tcp)
            held.sendall(b"hi\n")
            self.assertEqual(recv_exact(held, 3), b"hi\n")
            extra = connect(srv.tcp)
            srv.wait_log("refused connection from")
            self.assertEqual(extra.recv(1), b"")
            extra.close()
            held.sendall(b"x" * 100 + b"\n")  # over --max-frame
            srv.wait_log("frame larger than --max-frame")
            wait_closed_lines(srv, 1)
            held.close()
            m = parse(scrape(addr))
            self.assertEqual(m["sockit_connections_refused_total"], 1)
            self.assertEqual(
                m['sockit_frames_rejected_total{reason="too_big"}'], 1)
            self.assertEqual(
                m['sockit_connections_closed_total{reason="frame_error"}'], 1)
        with Server(["--udp", "-l", "127.0.0.1:0", "--metrics",
                     "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            host, port = srv.host_port("udp")
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(5)
            self.addCleanup(u.close)
            for i in range(4):
                u.sendto(b"dgram-%d" % i, (host, port))
                self.assertEqual(u.recvfrom(100)[0], b"dgram-%d" % i)
            lab = '{mode="echo",transport="udp",direction="%s"}'
            # A reply is counted once the kernel took it, which can be just
            # after the client got it: scrape until the last one shows.
            deadline = time.monotonic() + 10
            while True:
                m = parse(scrape(addr))
                if (m.get("sockit_messages_total" + lab % "out") == 4 or
                        time.monotonic() > deadline):
                    break
                time.sleep(0.05)
            self.assertEqual(m["sockit_messages_total" + lab % "in"], 4)
            self.assertEqual(m["sockit_messages_total" + lab % "out"], 4)
            self.assertEqual(m["sockit_bytes_total" + lab % "in"], 28)
            self.assertEqual(m["sockit_bytes_total" + lab % "out"], 28)

    @needs("openssl")
    def test_tls_handshakes_and_histogram(self):
        with Server(["-l", "127.0.0.1:0", "--tls", "--self-signed",
                     "--metrics", "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            host, port = srv.host_port("tls")
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            with socket.create_connection((host, port), timeout=10) as raw:
                with ctx.wrap_socket(raw) as s:
                    s.sendall(b"ping")
                    self.assertEqual(recv_exact(s, 4), b"ping")
            with connect("%s:%d" % (host, port)) as s:
                s.sendall(b"not a TLS client hello at all\r\n")
                srv.wait_log("TLS handshake failed")
            wait_closed_lines(srv, 2)
            m = parse(scrape(addr))
            self.assertEqual(m['sockit_tls_handshakes_total{result="ok"}'], 1)
            self.assertEqual(
                m['sockit_tls_handshakes_total{result="failed"}'], 1)
            self.assertEqual(
                m["sockit_tls_handshake_duration_seconds_count"], 2)
            self.assertEqual(
                m['sockit_tls_handshake_duration_seconds_bucket{le="+Inf"}'],
                2)
            self.assertEqual(
                m['sockit_connections_closed_total{reason="tls_handshake"}'],
                1)
            lab = '{mode="echo",transport="tls",direction="in"}'
            self.assertEqual(m["sockit_bytes_total" + lab], 4)

    @needs("curl")
    def test_curl_scrape_passes_promtool(self):
        with Server(["-l", "127.0.0.1:0", "-w", "2", "--metrics",
                     "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            echo_lines(srv.tcp, 1, 2, b"abc")
            r = subprocess.run(["curl", "-sS", "--max-time", "10", "-D", "-",
                                "http://%s/metrics" % addr],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            head, _, body = r.stdout.partition(b"\r\n\r\n")
            self.assertTrue(head.startswith(b"HTTP/1.1 200"), head)
            self.assertIn(b"version=0.0.4", head)
            self.assertIn(b"# TYPE sockit_bytes_total counter", body)
            parse(body.decode())
            if shutil.which("promtool") is None:
                self.skipTest("promtool not installed (Debian package "
                              "prometheus): exposition not validated")
            p = subprocess.run(["promtool", "check", "metrics"], input=body,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout.decode())

    def test_http_errors(self):
        with Server(["-l", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                scrape(addr, "/")
            self.assertEqual(cm.exception.code, 404)
            with self.assertRaises(urllib.error.HTTPError) as cm:
                scrape(addr, "/metricsx")
            self.assertEqual(cm.exception.code, 404)
            got = raw_request(addr, b"POST /metrics HTTP/1.1\r\nHost: x\r\n"
                              b"Content-Length: 0\r\n\r\n")
            self.assertTrue(got.startswith(b"HTTP/1.1 405 "), got[:80])
            self.assertIn(b"Allow: GET", got)
            got = raw_request(addr, b"hello there\r\n\r\n")
            self.assertTrue(got.startswith(b"HTTP/1.1 400 "), got[:80])
            got = raw_request(addr, b"GET /metrics HTTP/1.1\r\nX-Big: " +
                              b"a" * 9000 + b"\r\n\r\n")
            self.assertTrue(got.startswith(b"HTTP/1.1 431 "), got[:80])
            # A query string is still /metrics; the listener still serves.
            self.assertIn("sockit_connections_open", scrape(addr,
                                                            "/metrics?x=1"))

    def test_stuck_scrapers_delay_nothing(self):
        with Server(["-l", "127.0.0.1:0", "-w", "1", "--metrics",
                     "127.0.0.1:0"]) as srv:
            addr = metrics_addr(srv)
            host, _, port = addr.rpartition(":")
            # One scraper that connects and says nothing, one that sends
            # half a request: neither delays a scrape or the echo service.
            silent = socket.create_connection((host, int(port)), timeout=10)
            half = socket.create_connection((host, int(port)), timeout=10)
            self.addCleanup(silent.close)
            self.addCleanup(half.close)
            half.sendall(b"GET /metr")
            t0 = time.monotonic()
            self.assertIn("sockit_connections_open", scrape(addr, timeout=5))
            with connect(srv.tcp) as s:
                s.sendall(b"still here")
                self.assertEqual(recv_exact(s, 10), b"still here")
            self.assertLess(time.monotonic() - t0, 5)
            # Past the cap of concurrent scrapers a new one is closed at
            # once rather than queued.
            more = [socket.create_connection((host, int(port)), timeout=10)
                    for _ in range(8)]
            try:
                refused = 0
                for s in more:
                    s.settimeout(0.5)
                    try:
                        if s.recv(1) == b"":
                            refused += 1
                    except socket.timeout:
                        pass
                    except ConnectionResetError:
                        refused += 1
                self.assertGreaterEqual(refused, 2)
            finally:
                for s in more:
                    s.close()
            silent.close()
            half.close()
            # Once they are gone, scraping works again.
            deadline = time.monotonic() + 10
            while True:
                try:
                    scrape(addr, timeout=2)
                    break
                except (urllib.error.URLError, ConnectionError, OSError):
                    self.assertLess(time.monotonic(), deadline)

    def test_bad_metrics_address(self):
        r = subprocess.run([SERVER,
                            "-l", "127.0.0.1:0", "--metrics", "nope"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(b"--metrics: bad address 'nope'",
                      r.stderr.splitlines()[0])


if __name__ == "__main__":
    unittest.main()
