"""sockit-server --udp --mode forward: a session per client address
(issue 15).

Upstreams are python3 UDP sockets run in threads of this process; clients
are python3 sockets and socat. Every port is kernel-chosen, so no test sees
another's traffic. Waits are on events (a reply, a log line) with
deadlines, never sleeps; every loop is bounded in count and time.
"""
import json
import os
import re
import select
import socket
import subprocess
import threading
import time
import unittest

from skutil import SERVER, Server, needs
from test_metrics import metrics_addr, parse, scrape

DEADLINE = 20.0  # seconds for any one event, generous for sanitizer builds


def wait_until(cond, what, timeout=DEADLINE):
    """Polls cond() until true; fails with what after timeout."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        select.select([], [], [], 0.02)


class TcpEcho:
    """A python3 TCP echo upstream in a thread, on a given port (the UDP
    upstream's, so that one --to serves both listeners)."""

    def __init__(self, port):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(DEADLINE)
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        try:
            c, _ = self.sock.accept()
        except OSError:
            return
        with c:
            c.settimeout(DEADLINE)
            try:
                while True:
                    d = c.recv(65536)
                    if not d:
                        return
                    c.sendall(d)
            except OSError:
                return

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes accept()
        except OSError:
            pass
        self.sock.close()
        self.thread.join(DEADLINE + 5)


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Upstream:
    """A python3 UDP upstream in a thread: answers each datagram with
    reply(payload) (an echo by default; None: no answer) and records every
    sender."""

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
            r = self.reply(d)
            if r is not None:
                self.sock.sendto(r, a)

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
            srv.wait_log("udp session from 127.0.0.1:%d on" %
                         c.getsockname()[1], DEADLINE)
        srv.wait_log("upstream %s is down" % dead, DEADLINE)
        # Marked down once, however many sessions it refused meanwhile.
        self.assertEqual(self.count(srv, "upstream %s is down" % dead), 1)
        self.assertIsNone(srv.proc.poll())

    def udp_in(self, maddr):
        """Datagrams the server's UDP listeners took in (--metrics)."""
        lab = '{mode="forward",transport="udp",direction="in"}'
        return parse(scrape(maddr)).get("sockit_messages_total" + lab, 0)

    def test_refusing_upstream_log_is_bounded(self):
        # 500 datagrams from one client to an upstream that refuses every
        # one: a handful of lines, not a session (two lines) per datagram.
        dead = self.refusing_upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", dead, "-w", "1",
                          "--metrics", "127.0.0.1:0")
        maddr = metrics_addr(srv)
        before = len(srv.log)
        c = self.client()
        sent = 0
        for burst in range(10):  # bursts the listener's buffer holds
            for i in range(50):
                c.sendto(b"ping %d" % sent, srv.host_port("udp"))
                sent += 1
            wait_until(lambda: self.udp_in(maddr) >= sent,
                       "the server to take %d datagrams" % sent)
        srv.drain_log(0.2)
        lines = srv.log[before:]
        self.assertLessEqual(len(lines), 5, "\n".join(lines[:20]))
        self.assertEqual(self.count(srv, "udp session from 127.0.0.1:%d on"
                                    % c.getsockname()[1]), 1)
        self.assertIsNone(srv.proc.poll())

    def test_refused_upstream_skipped(self):
        dead = self.refusing_upstream()
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", dead, "--to", up.addr)
        addr = srv.host_port("udp")

        def outcome(c):
            """'reply' or 'refused', whichever comes first."""
            down = "upstream %s is down" % dead
            deadline = time.monotonic() + DEADLINE
            while time.monotonic() < deadline:
                r, _, _ = select.select([c], [], [], 0.05)
                if r:
                    self.assertEqual(c.recvfrom(100)[0], b"ping")
                    return "reply"
                srv.drain_log(0.05)
                if self.count(srv, down) > 0:
                    return "refused"
            self.fail("neither a reply nor a refusal")

        seen, clients = [], []
        for _ in range(2):  # round-robin: one of two meets the dead one
            c = self.client()
            c.sendto(b"ping", addr)
            seen.append(outcome(c))
            clients.append(c)
        self.assertEqual(sorted(seen), ["refused", "reply"])
        # The refused client keeps its session, which its next datagram
        # moves to the live upstream.
        refused = clients[seen.index("refused")]
        self.assertEqual(self.roundtrip(refused, srv, b"again"), b"again")
        self.assertEqual(self.count(srv, "udp session from 127.0.0.1:%d on"
                                    % refused.getsockname()[1]), 1)
        # Down: skipped, every new client reaches the live upstream.
        for _ in range(3):
            c = self.client()
            self.assertEqual(self.roundtrip(c, srv, b"ping"), b"ping")

    def test_session_flood_leaves_streams_and_answered_sessions(self):
        # Many client addresses whose datagrams the upstream ignores (as
        # forged ones would be): sessions have their own cap, so a TCP
        # client of the same server still gets in, the unanswered sessions
        # make room for new ones, and an answered session survives.
        def reply(d):
            return d if d.startswith(b"legit") else None
        for _ in range(20):  # a UDP port whose TCP twin is free too
            up = self.upstream(reply=reply)
            try:
                tcp = TcpEcho(up.port)
                break
            except OSError:
                continue
        self.addCleanup(tcp.close)
        srv = Server(["--mode", "forward", "-l", "tcp://127.0.0.1:0", "-l",
                      "udp://127.0.0.1:0", "--to", up.addr, "--max-conns",
                      "20", "-w", "1"])
        self.addCleanup(srv.stop)
        addr = srv.host_port("udp")
        legit = self.client()
        self.assertEqual(self.roundtrip(legit, srv, b"legit 0"), b"legit 0")
        flood = 60
        for i in range(flood):
            c = self.client()
            c.sendto(b"junk", addr)
            c.close()
        # Every one forwarded: the oldest unanswered made room each time.
        wait_until(lambda: up.payloads().count(b"junk") == flood,
                   "%d junk datagrams at the upstream" % flood)
        srv.wait_log("closed: evicted", DEADLINE)
        # The answered session is the same one (same source upstream-side).
        self.assertEqual(self.roundtrip(legit, srv, b"legit 1"), b"legit 1")
        with up.lock:
            senders = [a for a, d in up.seen if d.startswith(b"legit")]
        self.assertEqual(len(set(senders)), 1, senders)
        # A stream client still gets in, and through.
        with socket.create_connection(srv.host_port("tcp"),
                                      timeout=DEADLINE) as t:
            t.sendall(b"tcp hello")
            got = b""
            while len(got) < 9:
                d = t.recv(100)
                self.assertTrue(d, "stream connection closed: %r" % got)
                got += d
            self.assertEqual(got, b"tcp hello")

    def test_unanswered_session_expires_within_30s(self):
        # --idle-timeout stays 300 s; a session the upstream never answered
        # is gone after 30 s, while an answered one stays.
        up = self.upstream(reply=lambda d: d if d == b"hi" else None)
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr)
        quiet, talker = self.client(), self.client()
        start = time.monotonic()
        quiet.sendto(b"anyone?", srv.host_port("udp"))
        self.assertEqual(self.roundtrip(talker, srv, b"hi"), b"hi")
        srv.wait_log("udp session from 127.0.0.1:%d closed: idle timeout "
                     "(never answered)" % quiet.getsockname()[1], 60)
        self.assertGreaterEqual(time.monotonic() - start, 29)
        self.assertEqual(self.count(srv, "udp session from 127.0.0.1:%d "
                                    "closed" % talker.getsockname()[1]), 0)

    def test_client_datagrams_not_limited_by_reply_rate(self):
        # The reply rate limits replies: once replies used the address's
        # tokens, the client's own datagrams are still all forwarded.
        up = self.upstream()
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--udp-rate", "1", "--udp-burst", "3")
        c = self.client()
        for i in range(3):
            self.assertEqual(self.roundtrip(c, srv, b"%d" % i), b"%d" % i)
        for i in range(3, 40):
            c.sendto(b"%d" % i, srv.host_port("udp"))
        wait_until(lambda: len(up.payloads()) == 40,
                   "40 datagrams at the upstream (%d)" % len(up.payloads()))
        self.assertEqual(up.payloads(), [b"%d" % i for i in range(40)])

    def test_udp_rate_0_lifts_the_byte_budget(self):
        # An asymmetric protocol on a trusted network: 10 bytes answered
        # with 3 x 20000, all delivered with --udp-rate 0.
        up = self.upstream(reply=lambda d: b"R" * 20000)
        srv = self.server("-l", "127.0.0.1:0", "--to", up.addr,
                          "--udp-rate", "0")
        c = self.client()
        for i in range(3):
            self.assertEqual(self.roundtrip(c, srv, b"x" * 10), b"R" * 20000)

    def test_descriptor_budget_counts_sessions_apart(self):
        # Under 1024 descriptors: a UDP session holds 1, a stream pair 6,
        # so --max-conns is fitted to (room / 1) with UDP listeners only,
        # and to (room / 7) with both kinds (each has its own cap).
        import resource

        def lowered(*listen):
            r = subprocess.run(
                [SERVER, "--mode", "forward", "--to", "127.0.0.1:9",
                 "--max-conns", "100000", "-w", "1", "--check"] +
                list(listen), stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                timeout=DEADLINE, preexec_fn=lambda: resource.setrlimit(
                    resource.RLIMIT_NOFILE, (1024, 1024)))
            err = r.stderr.decode(errors="replace")
            self.assertEqual(r.returncode, 0, err)
            m = re.search(r"--max-conns lowered from 100000 to (\d+)", err)
            self.assertTrue(m, err)
            return int(m.group(1))

        udp = lowered("-l", "udp://127.0.0.1:0")
        tcp = lowered("-l", "tcp://127.0.0.1:0")
        both = lowered("-l", "tcp://127.0.0.1:0", "-l", "udp://127.0.0.1:0")
        self.assertGreater(udp, 900)
        self.assertTrue(130 < tcp < 170, tcp)
        self.assertTrue(120 < both < tcp, (both, tcp))

    @unittest.skipUnless(os.geteuid() == 0, "a network namespace needs root")
    @needs("unshare", "ip", "tc")
    def test_full_upstream_socket_drops_never_queues(self):
        # In a network namespace of its own, the server forwards to
        # 10.9.0.2 through a veth whose token bucket (tbf, 8 kbit/s) holds
        # what it is given: the session socket's buffer fills after a few
        # 60000-byte datagrams. Every further one must be dropped at once
        # (a debug line each), never queued in the session (up to 1 MiB).
        setup = ("ip link set lo up && "
                 "ip link add v0 type veth peer name v1 && "
                 "ip addr add 10.9.0.1/24 dev v0 && ip link set v1 up && "
                 "ip link set v0 up && "
                 "ip neigh add 10.9.0.2 lladdr 02:00:00:00:00:02 dev v0 && "
                 "tc qdisc add dev v0 root tbf rate 8kbit burst 1540 "
                 "limit 10000000 && exec \"$0\" \"$@\"")
        srv = Server(["--udp", "--mode", "forward", "-l", "127.0.0.1:0",
                      "--to", "10.9.0.2:9", "-w", "1", "-v"],
                     wrapper=["unshare", "-n", "sh", "-c", setup])
        self.addCleanup(srv.stop)
        # A client socket in the server's namespace: setns(2) in a thread
        # of its own (it applies to the calling thread only).
        import ctypes
        made = []

        def make():
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open("/proc/%d/ns/net" % srv.proc.pid, os.O_RDONLY)
            try:
                if libc.setns(fd, 0x40000000) != 0:  # CLONE_NEWNET
                    made.append(OSError(ctypes.get_errno(), "setns"))
                    return
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        t = threading.Thread(target=make)
        t.start()
        t.join(DEADLINE)
        c = made[0]
        if isinstance(c, OSError):
            raise c
        self.addCleanup(c.close)
        addr = srv.host_port("udp")
        n = 30
        for i in range(n):  # one at a time: the listener's buffer is small
            c.sendto(bytes([i]) * 60000, addr)
            self.wait_count(srv, "recv 60000 bytes from", i + 1)
        dropped = "datagram to upstream 10.9.0.2:9 dropped"
        # At most a handful fit in the socket buffer; the rest are dropped.
        self.wait_count(srv, dropped, n - 8)

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
