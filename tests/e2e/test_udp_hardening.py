"""UDP reflection and amplification (issue 10, items 2 and 4).

Datagrams with forged sources are sent with a raw socket, and what goes
over loopback is watched with a packet socket on "lo": both need root, so
without it these tests skip. Every server uses a kernel-chosen port, and the
sniffer counts only packets between those ports, so traffic from other tests
never counts.
"""
import os
import socket
import struct
import subprocess
import time
import unittest

from skutil import SERVER, Server

ETH_P_IP = 0x0800
PACKET_HOST = 0
# The byte allowance a new source gets (docs/LIMITS.md), counted like the
# rest as whole IP packets: payload + 20 (IPv4) + 8 (UDP).
BYTE_BURST = 2048
HDR = 28


def forge(src, dst, payload=b""):
    """Sends one UDP datagram from src to dst (both (ip, port), IPv4)
    through a raw socket. Checksum 0: "no checksum" for UDP over IPv4."""
    udp = struct.pack("!HHHH", src[1], dst[1], 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64,
                     socket.IPPROTO_UDP, 0, socket.inet_aton(src[0]),
                     socket.inet_aton(dst[0]))
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        raw.sendto(ip + udp, (dst[0], 0))
    finally:
        raw.close()


class Sniffer:
    """Every IPv4 UDP packet delivered on lo, as (src, dst, payload length);
    a packet reaches this socket before the socket it is addressed to."""

    def __init__(self):
        self.s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM,
                               socket.htons(ETH_P_IP))
        try:
            self.s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # RCVBUFFORCE
        except OSError:
            pass
        self.s.bind(("lo", ETH_P_IP))

    def close(self):
        self.s.close()

    def _parse(self, pkt):
        if len(pkt) < 28 or pkt[9] != socket.IPPROTO_UDP:
            return None
        ihl = (pkt[0] & 15) * 4
        sport, dport, ulen = struct.unpack("!HHH", pkt[ihl:ihl + 6])
        return ((socket.inet_ntoa(pkt[12:16]), sport),
                (socket.inet_ntoa(pkt[16:20]), dport), ulen - 8)

    def read(self, timeout):
        """The next UDP packet within timeout seconds, or None."""
        self.s.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while True:
            try:
                pkt, addr = self.s.recvfrom(65536)
            except socket.timeout:
                return None
            if addr[2] == PACKET_HOST:
                p = self._parse(pkt)
                if p is not None:
                    return p
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)

    def drain(self, match):
        """Counts the packets already queued that satisfy match."""
        n = 0
        while True:
            p = self.read(0.0001)
            if p is None:
                return n
            if match(*p):
                n += 1


class UdpHardening(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("forging datagrams needs a raw socket: run as "
                          "root")
        try:
            self.sniffer = Sniffer()
        except (PermissionError, OSError) as e:
            self.skipTest("no packet socket on lo: %s" % e)
        self.addCleanup(self.sniffer.close)

    def start(self, *args):
        srv = Server(list(args))
        self.addCleanup(srv.stop)
        return srv

    def udp(self):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(u.close)
        u.settimeout(10)
        return u

    def probe(self, addr):
        """One datagram from a real socket, answered: everything the server
        received before it has been handled (one socket, in order)."""
        u = self.udp()
        u.sendto(b"probe", addr)
        self.assertEqual(u.recvfrom(100)[0], b"probe")

    def assert_not_answered_to_itself(self, srv, src, dst):
        forge(src, dst, b"loop?")
        self.probe(dst)
        n = self.sniffer.drain(lambda s, d, _: {s, d} == {src, dst})
        # The forged datagram itself is seen once; any more is the server
        # answering it, to one of its own addresses.
        self.assertLessEqual(n, 1, "server answered a datagram from its own "
                             "address %s:%d" % src)
        srv.wait_log("ignoring datagram from %s:%d (one of this server's "
                     "own addresses)" % src)

    def test_udp_forged_own_address_not_answered(self):
        srv = self.start("-v", "-w", "1", "--udp", "-l", "127.0.0.1:0")
        addr = srv.host_port("udp")
        self.assert_not_answered_to_itself(srv, addr, addr)

    def test_udp_forged_wildcard_listener_local_source(self):
        # A listener on 0.0.0.0 receives what is sent to any local address,
        # so a source of 127.0.0.2 (or any address of this host) with its
        # port would come back to it.
        srv = self.start("-v", "-w", "1", "--udp", "-l", "0.0.0.0:0")
        port = srv.host_port("udp")[1]
        self.assert_not_answered_to_itself(srv, ("127.0.0.2", port),
                                           ("127.0.0.1", port))

    def test_udp_forged_from_another_listener_of_the_server(self):
        srv = self.start("-v", "-w", "1", "-l", "udp://127.0.0.1:0", "-l",
                         "udp://127.0.0.1:0")
        a, b = [tuple(x.rsplit(":", 1)) for x in srv.addrs["udp"]]
        a, b = (a[0], int(a[1])), (b[0], int(b[1]))
        self.assert_not_answered_to_itself(srv, a, b)

    def test_udp_echo_chargen_loop_between_two_servers_ends(self):
        a = self.start("--udp", "-l", "127.0.0.1:0")
        b = self.start("--udp", "--mode", "chargen", "-l", "127.0.0.1:0")
        pa, pb = a.host_port("udp"), b.host_port("udp")
        ports = {pa[1], pb[1]}

        def between(s, d, _):
            return {s[1], d[1]} == ports

        forge(pa, pb)  # "from A" to B: B answers A, A echoes to B, ...
        # The loop, while it runs, passes thousands of datagrams a second;
        # once a bucket runs dry one reply is dropped and it is over. Count
        # until nothing more comes for a whole second, or too many came.
        cap, n, deadline = 20000, 0, time.monotonic() + 60
        while n < cap and time.monotonic() < deadline:
            p = self.sniffer.read(1.0)
            if p is None:
                break
            if between(*p):
                n += 1
        self.assertLess(n, cap, "the echo/chargen loop did not stop")
        self.assertLess(time.monotonic(), deadline,
                        "the echo/chargen loop did not stop")
        self.assertGreater(n, 2, "the loop never started: the test proves "
                           "nothing")
        # Both still answer ordinary clients.
        self.probe(pa)
        u = self.udp()
        u.sendto(b"", pb)
        self.assertGreater(len(u.recvfrom(1000)[0]), 0)
        # The drop was logged (a warning, once), by one of them.
        for s in (a, b):
            s.signal(15)
            self.assertEqual(s.wait(15), 0)
        logs = a.log + b.log
        limited = [l for l in logs if "replies to 127.0.0.1 limited" in l]
        self.assertGreaterEqual(len(limited), 1, "\n".join(logs[-20:]))
        self.assertLessEqual(len(limited), 2, "\n".join(limited))

    def test_udp_chargen_flood_gets_no_more_bytes_than_it_sends(self):
        srv = self.start("--udp", "--mode", "chargen", "-l", "127.0.0.1:0")
        addr = srv.host_port("udp")
        u = self.udp()
        u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sent = 0
        for i in range(400):
            payload = b"" if i % 2 else b"x" * 10
            u.sendto(payload, addr)
            sent += len(payload) + HDR
        got, replies, sizes = 0, 0, []
        u.settimeout(1.0)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                data = u.recvfrom(4096)[0]
            except socket.timeout:
                break  # a second without a reply: the flood is answered
            got += len(data) + HDR
            replies += 1
            sizes.append(len(data))
        self.assertGreater(replies, 0)
        self.assertEqual(sizes[0], 444)  # the burst: full replies first
        self.assertLessEqual(got, sent + BYTE_BURST,
                             "%d bytes sent, %d received in %d replies" %
                             (sent, got, replies))
        srv.wait_log("replies to 127.0.0.1 limited")


class UdpLimitOptions(unittest.TestCase):
    def test_udp_rate_options_in_help_and_checked(self):
        p = subprocess.run([SERVER, "--help"], capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--udp-rate", p.stdout)
        self.assertIn(b"--udp-burst", p.stdout)
        for bad in (["--udp-rate", "x"], ["--udp-rate", "-1"],
                    ["--udp-burst", "0"], ["--udp-burst", "99999999"]):
            p = subprocess.run([SERVER, "--check"] + bad, capture_output=True,
                               timeout=30)
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn(bad[0].encode(), p.stderr)
        p = subprocess.run([SERVER, "--check", "--udp", "--udp-rate", "0",
                            "--udp-burst", "5", "-l", "127.0.0.1:0"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)

    def test_udp_rate_zero_answers_every_datagram(self):
        with Server(["-q", "--udp", "--udp-rate", "0", "-l",
                     "127.0.0.1:0"]) as srv:
            addr = srv.host_port("udp")
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.settimeout(10)
            try:
                for i in range(300):
                    u.sendto(b"%d" % i, addr)
                    self.assertEqual(u.recvfrom(100)[0], b"%d" % i)
            finally:
                u.close()

    def test_udp_burst_limits_a_quick_series(self):
        # --udp-rate 1 --udp-burst 3: of 10 datagrams sent at once, three
        # are answered (one more for each second that passes meanwhile).
        with Server(["-w", "1", "--udp", "--udp-rate", "1", "--udp-burst",
                     "3", "-l", "127.0.0.1:0"]) as srv:
            addr = srv.host_port("udp")
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            p = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                for i in range(10):
                    u.sendto(b"%d" % i, addr)
                # Another source address has its own bucket; one worker
                # reads one socket in order, so once the probe is answered
                # every reply to u has been sent.
                p.bind(("127.0.0.2", 0))
                p.settimeout(10)
                p.sendto(b"probe", addr)
                self.assertEqual(p.recvfrom(100)[0], b"probe")
                answers = 0
                u.settimeout(0.0)
                while True:
                    try:
                        u.recvfrom(100)
                        answers += 1
                    except BlockingIOError:
                        break
            finally:
                u.close()
                p.close()
            self.assertGreaterEqual(answers, 3)
            self.assertLessEqual(answers, 5)
            srv.wait_log("replies to 127.0.0.1 limited (reply rate")

if __name__ == "__main__":
    unittest.main()
