"""sockit-server --udp --mode forward: a session per client address
(issue 15).

Upstreams are python3 UDP sockets run in threads of this process; clients
are python3 sockets and socat. Every port is kernel-chosen, so no test sees
another's traffic. Waits are on events (a reply, a log line) with
deadlines, never sleeps; every loop is bounded in count and time.
"""
import json
import os
import select
import socket
import subprocess
import threading
import time
import unittest

from skutil import SERVER, Server, needs

DEADLINE = 20.0  # seconds for any one event, generous for sanitizer builds


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Upstream:
    """A python3 UDP upstream in a thread: answers each datagram with
    reply(payload) (an echo by default) and records every sender."""

    def __init__(self, host="127.0.0.1", reply=None):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.addr = ("[%s]:%d" if fam == socket.AF_INET6 else "%s:%d") % (
            host, self.port)
        self.reply = reply or (lambda d: d)
        self.seen = []  # (sender (host, port), payload)
        self.lock = threading.Lock()
        self.r, self.w = os.pipe()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while True:
            r, _, _ = select.select([self.sock, self.r], [], [])
            if self.r in r:
                return
            d, a = self.sock.recvfrom(65536)
            with self.lock:
                self.seen.append((a[:2], d))
            self.sock.sendto(self.reply(d), a)

    def senders(self):
        with self.lock:
            return [a for a, _ in self.seen]

    def payloads(self):
        with self.lock:
            return [d for _, d in self.seen]

    def close(self):
        os.write(self.w, b"x")
        self.thread.join(10)
        self.sock.close()
        os.close(self.r)
        os.close(self.w)


class ForwardUdp(unittest.TestCase):
    def upstream(self, host="127.0.0.1", reply=None):
        u = Upstream(host, reply)
        self.addCleanup(u.close)
        return u

    def server(self, *args):
        srv = Server(["--udp", "--mode", "forward"] + list(args))
        self.addCleanup(srv.stop)
        return srv

    def client(self, fam=socket.AF_INET):
        c = socket.socket(fam, socket.SOCK_DGRAM)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        c.settimeout(DEADLINE)
        c.bind(("::1" if fam == socket.AF_INET6 else "127.0.0.1", 0))
        self.addCleanup(c.close)
        return c

    def roundtrip(self, c, srv, data, scheme="udp"):
        addr = srv.host_port(scheme)
        c.sendto(data, addr)
        d, a = c.recvfrom(70000)
        # The reply comes from the address the client sent to.
        self.assertEqual(a[:2], addr)
        return d

    def count(self, srv, needle):
        return sum(1 for l in srv.log if needle in l)

    def wait_count(self, srv, needle, n):
        """Reads log lines until n of them contain needle."""
        deadline = time.monotonic() + DEADLINE
        while self.count(srv, needle) < n:
            srv.next_log_line(max(0.01, deadline - time.monotonic()))

    def test_echo_python_client(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        c = self.client()
        for i in range(20):
            msg = b"hello %d" % i
            self.assertEqual(self.roundtrip(c, srv, msg), msg)
        # One session for the client: the upstream heard one source only,
        # and not the client's own address.
        self.assertEqual(len(set(up.senders())), 1)
        self.assertNotEqual(up.senders()[0], c.getsockname())
        self.assertEqual(up.payloads(), [b"hello %d" % i for i in range(20)])
        srv.wait_log("udp session from 127.0.0.1:%d" % c.getsockname()[1])

    @needs("socat")
    def test_echo_socat_client(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        host, port = srv.host_port("udp")
        p = subprocess.Popen(["socat", "-T", "60", "-",
                              "UDP:%s:%d" % (host, port)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.addCleanup(p.communicate, timeout=10)  # reaps, closes pipes
        self.addCleanup(p.kill)
        got = b""
        deadline = time.monotonic() + DEADLINE
        for line in (b"one\n", b"two\n", b"three\n"):
            p.stdin.write(line)
            p.stdin.flush()
            while not got.endswith(line):
                left = deadline - time.monotonic()
                self.assertGreater(left, 0, "socat got %r" % got)
                r, _, _ = select.select([p.stdout], [], [], left)
                if r:
                    chunk = os.read(p.stdout.fileno(), 65536)
                    self.assertTrue(chunk, "socat exited: %r" % got)
                    got += chunk
        self.assertEqual(got, b"one\ntwo\nthree\n")
        self.assertEqual(up.payloads(), [b"one\n", b"two\n", b"three\n"])

    def test_four_clients_interleaved(self):
        up = self.upstream()
        # --udp-rate 0: the four share one address, whose reply rate is
        # not what this test is about.
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--udp-rate", "0")
        addr = srv.host_port("udp")
        cs = [self.client() for _ in range(4)]
        rounds = 50
        for r in range(rounds):
            for i, c in enumerate(cs):
                c.sendto(b"client %d seq %d " % (i, r) + bytes([i]) * (r + 1),
                         addr)
            for i, c in enumerate(cs):
                d, a = c.recvfrom(70000)
                self.assertEqual(a[:2], addr)
                # Its own reply, in order: never another client's.
                self.assertEqual(
                    d, b"client %d seq %d " % (i, r) + bytes([i]) * (r + 1))
        self.assertEqual(len(set(up.senders())), 4)
        for c in cs:
            c.setblocking(False)
            with self.assertRaises(BlockingIOError):
                c.recvfrom(70000)

    def test_largest_datagram_both_ways(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        c = self.client()
        big = os.urandom(65507)
        self.assertEqual(self.roundtrip(c, srv, big), big)
        self.assertEqual(up.payloads(), [big])

    def test_replies_never_exceed_what_the_client_sent(self):
        # An upstream answering 10 bytes with 10000: the forwarder must not
        # amplify, so that reply is dropped (logged), while a request as
        # large as the reply gets it.
        up = self.upstream(reply=lambda d: b"R" * 10000)
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        addr = srv.host_port("udp")
        c = self.client()
        c.sendto(b"x" * 10, addr)
        srv.wait_log("limited (no more bytes than it sent", DEADLINE)
        c.sendto(b"y" * 10000, addr)
        d, a = c.recvfrom(70000)
        self.assertEqual(d, b"R" * 10000)
        # The first (dropped) reply never arrived: nothing else waits.
        c.setblocking(False)
        with self.assertRaises(BlockingIOError):
            c.recvfrom(70000)

    @unittest.skipUnless(os.geteuid() == 0, "forging a source needs root")
    def test_forged_source_gets_no_amplification(self):
        # A datagram "from" a victim: the upstream's large answer must not
        # reach the victim (reflection through the forwarder).
        from test_udp_hardening import forge
        up = self.upstream(reply=lambda d: b"R" * 10000)
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        victim = self.client()
        forge(victim.getsockname(), srv.host_port("udp"), b"x")
        srv.wait_log("limited (no more bytes than it sent", DEADLINE)
        self.assertEqual(up.payloads(), [b"x"])
        victim.setblocking(False)
        with self.assertRaises(BlockingIOError):
            victim.recvfrom(70000)

    def test_idle_session_expires(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--idle-timeout", "2")
        c = self.client()
        me = "udp session from 127.0.0.1:%d" % c.getsockname()[1]
        self.assertEqual(self.roundtrip(c, srv, b"first"), b"first")
        srv.wait_log(me + " closed: idle timeout", DEADLINE)
        self.assertEqual(self.roundtrip(c, srv, b"second"), b"second")
        self.wait_count(srv, me + " on ", 2)
        first, second = up.senders()
        # A new session: a new socket, seen by the upstream as a new port.
        self.assertNotEqual(first, second)

    def test_session_cap(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--max-conns", "2")
        a, b, c = self.client(), self.client(), self.client()
        self.assertEqual(self.roundtrip(a, srv, b"a"), b"a")
        self.assertEqual(self.roundtrip(b, srv, b"b"), b"b")
        c.sendto(b"c", srv.host_port("udp"))
        srv.wait_log("datagram from 127.0.0.1:%d dropped: --max-conns 2 "
                     "reached" % c.getsockname()[1], DEADLINE)
        # Dropped: never forwarded, never answered; the others go on.
        self.assertEqual(self.roundtrip(a, srv, b"a2"), b"a2")
        self.assertNotIn(b"c", up.payloads())
        c.setblocking(False)
        with self.assertRaises(BlockingIOError):
            c.recvfrom(100)

    def refusing_upstream(self):
        """A loopback UDP port that answers with ICMP port unreachable for
        as long as the test lasts: bound (no one else can take it) and
        connected elsewhere, so the kernel delivers it nothing."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(s.close)
        s.bind(("127.0.0.1", 0))
        s.connect(("127.0.0.1", 9))
        return "127.0.0.1:%d" % s.getsockname()[1]

    def test_upstream_refused(self):
        dead = self.refusing_upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", dead)
        for i in range(3):
            c = self.client()
            c.sendto(b"anyone?", srv.host_port("udp"))
            srv.wait_log("udp session from 127.0.0.1:%d closed: upstream %s:"
                         % (c.getsockname()[1], dead), DEADLINE)
        # Marked down once, however many sessions it refused meanwhile.
        self.assertEqual(self.count(srv, "upstream %s is down" % dead), 1)
        self.assertIsNone(srv.proc.poll())

    def test_refused_upstream_skipped(self):
        dead = self.refusing_upstream()
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", dead, "--to", up.addr)
        addr = srv.host_port("udp")

        def outcome(c):
            """'reply' or 'refused', whichever comes first."""
            closed = "udp session from 127.0.0.1:%d closed" % (
                c.getsockname()[1])
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                r, _, _ = select.select([c], [], [], 0.05)
                if r:
                    self.assertEqual(c.recvfrom(100)[0], b"ping")
                    return "reply"
                srv.drain_log(0.05)
                if self.count(srv, closed) > 0:
                    return "refused"
            self.fail("neither a reply nor a refusal")

        seen = []
        for _ in range(2):  # round-robin: one of two meets the dead one
            c = self.client()
            c.sendto(b"ping", addr)
            seen.append(outcome(c))
        self.assertEqual(sorted(seen), ["refused", "reply"])
        srv.wait_log("upstream %s is down" % dead)
        # Down: skipped, every new client reaches the live upstream.
        for _ in range(3):
            c = self.client()
            self.assertEqual(self.roundtrip(c, srv, b"ping"), b"ping")

    @unittest.skipUnless(has_ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6(self):
        up = self.upstream("::1")
        srv = self.server("-l", "[::1]:0", "--to", up.addr)
        c = self.client(socket.AF_INET6)
        big = os.urandom(65000)
        for msg in (b"over IPv6", big):
            self.assertEqual(self.roundtrip(c, srv, msg), msg)
        self.assertEqual(up.senders()[0][0], "::1")
        srv.wait_log("udp session from [::1]:%d" % c.getsockname()[1])
        # Across families: an IPv6 client, an IPv4 upstream.
        up4 = self.upstream()
        srv4 = self.server("-l", "[::1]:0", "--to", up4.addr)
        self.assertEqual(self.roundtrip(c, srv4, b"6 to 4"), b"6 to 4")
        self.assertEqual(up4.senders()[0][0], "127.0.0.1")

    def test_start_refuses_what_datagrams_cannot_carry(self):
        up = self.upstream()
        for extra, want in (
                (["--to", "unix:/nonexistent/sock"],
                 "UDP listeners forward to IP upstreams only"),
                (["--to", up.addr, "--upstream-tls"],
                 "--upstream-tls and --send-proxy are for stream"),
                (["--to", up.addr, "--send-proxy"],
                 "--upstream-tls and --send-proxy are for stream")):
            r = subprocess.run([SERVER, "--udp", "--mode", "forward", "-l",
                                "127.0.0.1:0"] + extra,
                               stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               timeout=DEADLINE)
            err = r.stderr.decode(errors="replace")
            self.assertEqual(r.returncode, 1, err)
            self.assertIn(want, err)
            self.assertNotIn("listening on", err)

    def test_json_session_lines(self):
        # The open and close lines carry the keys connection lines carry
        # (docs: --log-format json), with the session's counts.
        from test_logging import CLOSE_KEYS
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--log-format", "json")
        c = self.client()
        for msg in (b"12345", b"678"):
            self.assertEqual(self.roundtrip(c, srv, msg), msg)
        srv.signal(15)
        self.assertEqual(srv.wait(DEADLINE), 0)
        objs = [json.loads(l) for l in srv.log if '"event"' in l]
        self.assertEqual([o["event"] for o in objs], ["open", "close"])
        peer = "127.0.0.1:%d" % c.getsockname()[1]
        for o in objs:
            self.assertEqual((o["peer"], o["mode"], o["transport"]),
                             (peer, "forward", "udp"))
            self.assertEqual(o["upstream"], up.addr)
        close = objs[1]
        self.assertTrue(CLOSE_KEYS <= set(close), close)
        self.assertEqual((close["bytes_in"], close["msgs_in"],
                          close["bytes_out"], close["msgs_out"],
                          close["reason"]), (8, 2, 8, 2, "stopping"))

    def test_stop_closes_every_session(self):
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr, "-w", "2")
        cs = [self.client() for _ in range(5)]
        for i, c in enumerate(cs):
            self.assertEqual(self.roundtrip(c, srv, b"%d" % i), b"%d" % i)
        srv.signal(15)
        self.assertEqual(srv.wait(DEADLINE), 0, "\n".join(srv.log))
        for c in cs:
            self.assertEqual(
                self.count(srv, "udp session from 127.0.0.1:%d closed: "
                           "server stopping" % c.getsockname()[1]), 1)


if __name__ == "__main__":
    unittest.main()
