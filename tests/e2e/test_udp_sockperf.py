"""sockperf mode over UDP (issue 16): sockperf's own client in its
ping-pong, throughput and under-load modes against
`sockit-server --mode sockperf -l udp://127.0.0.1:0`, and the protocol
rules checked with a plain socket: a message asking for a reply comes back
with the client flag cleared, one that does not is dropped, and malformed
datagrams are dropped without harm.

The server runs with --udp-rate 0: every reply goes to one source address
here, and the default per-source rate limit would throttle a benchmark.
"""
import re
import socket
import struct
import subprocess
import unittest

from skutil import Server, needs

HDR = 14
CLIENT, REPLY = 1, 2


def message(seq, flags, size):
    body = bytes((seq + i) & 0xFF for i in range(size - HDR))
    return struct.pack("!QHI", seq, flags, size) + body


def sockperf(mode, port, seconds=1, size=64):
    r = subprocess.run(["sockperf", mode, "-i", "127.0.0.1", "-p", str(port),
                        "-t", str(seconds), "-m", str(size)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=60)
    out = r.stdout.decode(errors="replace")
    return r.returncode, out


def counts(out):
    m = re.search(r"SentMessages=(\d+); ReceivedMessages=(\d+)", out)
    assert m, out
    return int(m.group(1)), int(m.group(2))


class SockperfUdp(unittest.TestCase):
    def server(self):
        return Server(["--mode", "sockperf", "-l", "udp://127.0.0.1:0",
                       "--udp-rate", "0"])

    @needs("sockperf")
    def test_ping_pong(self):
        with self.server() as srv:
            port = srv.host_port("udp")[1]
            rc, out = sockperf("ping-pong", port)
            self.assertEqual(rc, 0, out)
            sent, received = counts(out)
            self.assertGreater(received, 100, out)
            self.assertIn("# dropped messages = 0", out)
            self.assertIn("Summary: Latency is", out)

    @needs("sockperf")
    def test_under_load(self):
        with self.server() as srv:
            port = srv.host_port("udp")[1]
            rc, out = sockperf("under-load", port)
            self.assertEqual(rc, 0, out)
            sent, received = counts(out)
            self.assertGreater(received, 0, out)
            self.assertGreater(sent, received, out)

    @needs("sockperf")
    def test_throughput_then_ping_pong(self):
        """Throughput mode asks for no replies; the server takes the flood
        and answers a ping-pong run right after."""
        with self.server() as srv:
            port = srv.host_port("udp")[1]
            rc, out = sockperf("throughput", port)
            self.assertEqual(rc, 0, out)
            self.assertRegex(out, r"Message Rate is \d+")
            rc, out = sockperf("ping-pong", port)
            self.assertEqual(rc, 0, out)
            self.assertGreater(counts(out)[1], 100, out)

    def test_protocol_rules(self):
        with self.server() as srv:
            addr = srv.host_port("udp")
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(10)
            try:
                # Dropped: no reply asked, shorter than the header, length
                # field disagreeing with the size, a zero-length datagram.
                s.sendto(message(1, CLIENT, 64), addr)
                s.sendto(b"\x00" * (HDR - 1), addr)
                s.sendto(message(2, CLIENT | REPLY, 64)[:40], addr)
                s.sendto(b"", addr)
                # Answered, whole, client flag cleared; the big one too.
                for seq, size in ((3, 64), (4, HDR), (5, 60000)):
                    m = message(seq, CLIENT | REPLY, size)
                    s.sendto(m, addr)
                    got, frm = s.recvfrom(65536)
                    self.assertEqual(frm, addr)
                    self.assertEqual(len(got), size)
                    seq2, flags, ln = struct.unpack("!QHI", got[:HDR])
                    # The first answer is to seq 3: nothing before it was
                    # answered (loopback keeps the order).
                    self.assertEqual(seq2, seq)
                    self.assertEqual(flags, REPLY)
                    self.assertEqual(ln, size)
                    self.assertEqual(got[HDR:], m[HDR:])
            finally:
                s.close()
            self.assertIsNone(srv.proc.poll())


if __name__ == "__main__":
    unittest.main()
