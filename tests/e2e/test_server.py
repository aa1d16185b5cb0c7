"""End-to-end tests of sockit-server, driven by real peers: python's socket
module, socat and nc. Every server listens on port 0 (or a fresh Unix path),
every wait has a deadline, and every load loop is bounded in count and time.
"""
import errno
import os
import random
import re
import resource
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from skutil import (SANITIZED, CLIENT, SERVER, Server, connect, needs,
                    recv_exact, run_client, split_addr)

# An ISO 8583 network management request (MTI 0800) with a binary primary
# bitmap announcing a secondary bitmap, field 7 (transmission date and time),
# field 11 (STAN) and, in the secondary bitmap, field 70 (network management
# information code 301 = echo test).
ISO_0800 = (b"0800"
            + bytes([0x82, 0x20, 0, 0, 0, 0, 0, 0])
            + bytes([0x04, 0, 0, 0, 0, 0, 0, 0])
            + b"1122093045" + b"000123" + b"301")


def len16(payload):
    return struct.pack(">H", len(payload)) + payload


def len32(payload):
    return struct.pack(">I", len(payload)) + payload


def ascii4(payload):
    return b"%04d" % len(payload) + payload


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def chargen_line(n):
    """Line n (from 0) of the RFC 864 pattern, with its CRLF."""
    return bytes(32 + (n + i) % 95 for i in range(72)) + b"\r\n"


def read_until_closed(sock, limit=64 << 20):
    """Reads until EOF; returns (data, how) with how 'eof' or 'reset'."""
    chunks, total = [], 0
    while total < limit:
        try:
            b = sock.recv(1 << 16)
        except ConnectionResetError:
            return b"".join(chunks), "reset"
        if not b:
            return b"".join(chunks), "eof"
        chunks.append(b)
        total += len(b)
    raise AssertionError("peer sent more than %d bytes" % limit)


def closed_by_peer(sock, timeout=5.0):
    """True once the peer closed the connection (EOF or reset)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def nothing_pending(sock):
    """True if no byte is waiting on the socket right now."""
    sock.setblocking(False)
    try:
        sock.recv(1)
    except BlockingIOError:
        return True
    finally:
        sock.setblocking(True)
    return False


def sum_recv_logged(srv, peer_port):
    """Bytes the server logged as received from the peer with that port."""
    rx = re.compile(r"recv (\d+) bytes from \S+:%d$" % peer_port)
    return sum(int(m.group(1)) for m in map(rx.search, srv.log) if m)


def wait_recv_logged(srv, peer_port, total, timeout=10.0):
    """Waits until the server logged `total` bytes received from the peer."""
    deadline = time.monotonic() + timeout
    while sum_recv_logged(srv, peer_port) < total:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("server logged %d of %d bytes" %
                               (sum_recv_logged(srv, peer_port), total))
        srv.next_log_line(left)


def echo_load(host, port, nclients, size, seed, timeout, family=None):
    """nclients non-blocking clients at once, each sending `size` random
    bytes in random-sized writes and checking every byte comes back in
    order. Returns the number of clients that were open at the same time."""
    rnd = random.Random(seed)
    sel = selectors.DefaultSelector()
    fam = family or socket.AF_INET
    states = []
    try:
        for i in range(nclients):
            s = socket.socket(fam, socket.SOCK_STREAM)
            s.setblocking(False)
            err = s.connect_ex((host, port))
            assert err in (0, errno.EINPROGRESS), os.strerror(err)
            st = {"sock": s, "data": rnd.randbytes(size), "sent": 0,
                  "got": 0}
            states.append(st)
            sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, st)
        open_now = peak = nclients
        deadline = time.monotonic() + timeout
        done = 0
        while done < nclients:
            if time.monotonic() > deadline:
                raise AssertionError("%d of %d clients finished in %.0f s" %
                                     (done, nclients, timeout))
            for key, ev in sel.select(timeout=1.0):
                st = key.data
                s = st["sock"]
                if ev & selectors.EVENT_WRITE and st["sent"] < size:
                    n = rnd.randint(1, 16384)
                    try:
                        k = s.send(st["data"][st["sent"]:st["sent"] + n])
                    except BlockingIOError:
                        k = 0
                    st["sent"] += k
                    if st["sent"] == size:
                        sel.modify(s, selectors.EVENT_READ, st)
                if ev & selectors.EVENT_READ:
                    try:
                        b = s.recv(65536)
                    except BlockingIOError:
                        continue
                    if not b:
                        raise AssertionError("server closed a client after "
                                             "%d of %d bytes" %
                                             (st["got"], size))
                    got = st["got"]
                    if st["data"][got:got + len(b)] != b:
                        raise AssertionError("echo differs at byte %d" % got)
                    st["got"] += len(b)
                    if st["got"] == size:
                        sel.unregister(s)
                        s.close()
                        open_now -= 1
                        done += 1
        return peak
    finally:
        for st in states:
            st["sock"].close()
        sel.close()


class ServerTest(unittest.TestCase):
    """Helpers shared by the test classes."""

    def start(self, *args, **kw):
        srv = Server(list(args), **kw)
        self.addCleanup(srv.stop)
        return srv

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="sk-srv-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def sock(self, addr, timeout=5.0):
        s = connect(addr, timeout)
        self.addCleanup(s.close)
        return s

    def assert_graceful_exit(self, srv, timeout=15.0):
        code = srv.wait(timeout)
        self.assertEqual(code, 0, "\n".join(srv.log))


class EchoBasics(ServerTest):
    """Item 1: TCP echo, the readiness line, per-message log lines."""

    def test_json_echo_logs_connection_and_messages(self):
        srv = self.start("-v", "-l", "127.0.0.1:0")
        self.assertRegex(srv.log[0],
                         r"^\d{4}-\d\d-\d\dT[\d:.]+Z sockit-server: "
                         r"listening on tcp://127\.0\.0\.1:"
                         r"[1-9]\d* \(echo\)$")
        msg = b'{"processCode":"0001","amount":"100.00","currency":"EUR"}'
        s = self.sock(srv.tcp)
        s.sendall(msg)
        self.assertEqual(recv_exact(s, len(msg)), msg)
        port = s.getsockname()[1]
        srv.wait_log("connection from 127.0.0.1:%d" % port)
        srv.wait_log("recv %d bytes from 127.0.0.1:%d" % (len(msg), port))
        srv.wait_log("sent %d bytes to 127.0.0.1:%d" % (len(msg), port))
        s.close()
        srv.wait_log("connection from 127.0.0.1:%d closed" % port)

    @unittest.skipUnless(os.path.exists(CLIENT), "sockit-client not built")
    def test_sockit_client_gets_json_back(self):
        srv = self.start("-l", "127.0.0.1:0")
        msg = '{"processCode":"0001","stan":"000123"}'
        r = run_client([srv.tcp, msg], timeout=20)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), msg.encode())

    @needs("socat")
    def test_socat_peer_round_trip(self):
        srv = self.start("-l", "127.0.0.1:0")
        host, port = srv.host_port()
        data = bytes(range(256)) * 400
        r = subprocess.run(["socat", "-t", "5", "-", "TCP:%s:%d" % (host, port)],
                           input=data, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)

    @needs("nc")
    def test_nc_peer_round_trip(self):
        srv = self.start("-l", "127.0.0.1:0")
        host, port = srv.host_port()
        data = b"line one\nline two\n" * 100
        # -N: shut the socket down at EOF on stdin, then wait for the
        # server's FIN, which comes after every echoed byte.
        r = subprocess.run(["nc", "-N", host, str(port)], input=data,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, data)

    def test_quiet_hides_info_but_keeps_errors(self):
        srv = self.start("-q", "-l", "127.0.0.1:0", "--frame", "len16",
                         "--max-frame", "10")
        s = self.sock(srv.tcp)
        s.sendall(len16(b"abc"))
        self.assertEqual(recv_exact(s, 5), len16(b"abc"))
        s.sendall(struct.pack(">H", 100))
        self.assertTrue(closed_by_peer(s))
        srv.wait_log("frame larger than --max-frame")
        self.assertFalse([l for l in srv.log
                          if "connection from" in l or "recv " in l], srv.log)

    def test_verbose_adds_debug_lines(self):
        srv = self.start("-v", "-l", "127.0.0.1:0")
        srv.wait_log(re.compile(r"debug: \d+ workers?, max \d+ connections"))


class Concurrency(ServerTest):
    """Item 2: many clients at once; nobody waits for anybody."""

    def test_thousand_concurrent_clients_echo_64k(self):
        if raise_nofile() < 1100:
            self.skipTest("RLIMIT_NOFILE too low for 1000 clients")
        srv = self.start("-q", "-l", "127.0.0.1:0")
        host, port = srv.host_port()
        t0 = time.monotonic()
        echo_load(host, port, 1000, 64 * 1024, seed=862, timeout=60)
        self.assertLess(time.monotonic() - t0, 60)
        self.assertIsNone(srv.proc.poll())

    def test_four_workers_serve_many_clients(self):
        raise_nofile()
        srv = self.start("-q", "--workers", "4", "-l", "127.0.0.1:0",
                         "-l", "[::1]:0")
        host, port = split_addr(srv.addrs["tcp"][0])
        echo_load(host, port, 200, 16 * 1024, seed=4, timeout=60)
        host6, port6 = split_addr(srv.addrs["tcp"][1])
        echo_load(host6, port6, 50, 8 * 1024, seed=6, timeout=60,
                  family=socket.AF_INET6)

    def test_silent_and_stalled_clients_do_not_delay_others(self):
        # One worker, so every client shares one event loop.
        srv = self.start("-q", "--workers", "1", "-l", "127.0.0.1:0")
        silent = self.sock(srv.tcp)
        half = self.sock(srv.tcp)
        half.sendall(b"no newline yet")  # raw: echoed, never read back
        # A client that sends without ever reading: the server's output
        # queue for it fills, and the server stops reading from it.
        stalled = self.sock(srv.tcp)
        stalled.setblocking(False)
        chunk = b"x" * 65536
        pushed = 0
        deadline = time.monotonic() + 20
        while pushed < (512 << 20) and time.monotonic() < deadline:
            try:
                pushed += stalled.send(chunk)
            except BlockingIOError:
                r = selectors.DefaultSelector()
                r.register(stalled, selectors.EVENT_WRITE)
                ready = r.select(timeout=0.5)
                r.close()
                # Before 1 MiB went out, a pause can be the kernel buffers
                # full while the server (slow under a sanitizer, or not
                # scheduled yet) has not read yet: keep waiting.
                if not ready and pushed > 1 << 20:
                    break  # back-pressure reached the client
        self.assertGreater(pushed, 1 << 20)
        # Back-pressure: the server stopped reading from the stalled client
        # instead of queueing everything it sent.
        self.assertLess(pushed, 256 << 20)
        # Each ping within 2 s (5 s for a sanitized server on a loaded
        # machine); a server stuck on the other clients would never answer
        # (they never read, or send nothing).
        limit = 5.0 if SANITIZED else 2.0
        for i in range(20):
            t0 = time.monotonic()
            c = connect(srv.tcp, timeout=10)
            c.sendall(b"ping %d" % i)
            self.assertEqual(recv_exact(c, len(b"ping %d" % i)), b"ping %d" % i)
            c.close()
            self.assertLess(time.monotonic() - t0, limit)
        self.assertTrue(nothing_pending(silent))
        self.assertIsNone(srv.proc.poll())


class Frames(ServerTest):
    """Item 3: whole messages in every frame mode."""

    def roundtrip(self, srv, wire, pieces=None):
        s = self.sock(srv.tcp)
        if pieces:
            # Split the bytes at the given offsets, header included.
            last = 0
            for cut in pieces + [len(wire)]:
                s.sendall(wire[last:cut])
                last = cut
        else:
            s.sendall(wire)
        return s, recv_exact(s, len(wire))

    def test_line_frames_are_echoed_whole(self):
        srv = self.start("-v", "-l", "127.0.0.1:0", "--frame", "line")
        self.assertIn("(echo, frame line)", srv.log[0])
        s = self.sock(srv.tcp)
        s.sendall(b"first\r\nsec")
        s.sendall(b"ond\nthird\n")
        self.assertEqual(recv_exact(s, 19), b"first\nsecond\nthird\n")
        port = s.getsockname()[1]
        srv.wait_log("recv 6 bytes from 127.0.0.1:%d" % port)

    def test_len16_iso8583_record_comes_back_intact(self):
        srv = self.start("-v", "-l", "127.0.0.1:0", "--frame", "len16")
        wire = len16(ISO_0800)
        self.assertEqual(wire[:2], b"\x00\x27")
        s, back = self.roundtrip(srv, wire, pieces=[1, 2, 10, 30])
        self.assertEqual(back, wire)
        # Two records in one write, each echoed as its own frame.
        s.sendall(wire + len16(ISO_0800.replace(b"000123", b"000124")))
        self.assertEqual(recv_exact(s, 2 * len(wire)),
                         wire + len16(ISO_0800.replace(b"000123", b"000124")))
        srv.wait_log("recv 39 bytes from")

    def test_ascii4_iso8583_record_comes_back_intact(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "ascii4")
        wire = ascii4(ISO_0800)
        self.assertEqual(wire[:4], b"0039")
        _, back = self.roundtrip(srv, wire, pieces=[2, 5])
        self.assertEqual(back, wire)

    def test_len32_large_frame_streams_through(self):
        srv = self.start("-q", "-l", "127.0.0.1:0", "--frame", "len32")
        payload = random.Random(32).randbytes(900 * 1024)
        wire = len32(payload)
        s = self.sock(srv.tcp, timeout=20)
        t = threading.Thread(target=s.sendall, args=(wire,))
        t.start()
        back = recv_exact(s, len(wire))
        t.join(20)
        self.assertEqual(back, wire)

    def test_zero_length_keepalive_frames(self):
        cases = [("len16", b"\x00\x00", len16(b"hi")),
                 ("len32", b"\x00\x00\x00\x00", len32(b"hi")),
                 ("ascii4", b"0000", ascii4(b"hi")),
                 ("line", b"\n", b"hi\n")]
        for frame, keepalive, data in cases:
            with self.subTest(frame=frame):
                srv = self.start("-v", "-l", "127.0.0.1:0", "--frame", frame)
                s = self.sock(srv.tcp)
                wire = keepalive + data + keepalive
                s.sendall(wire)
                self.assertEqual(recv_exact(s, len(wire)), wire)
                srv.wait_log("recv 0 bytes from")
                srv.wait_log("sent 0 bytes to")
                s.close()
                srv.signal(signal.SIGTERM)
                self.assert_graceful_exit(srv)

    def test_oversize_frame_closes_only_that_connection(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "len32",
                         "--max-frame", "1000")
        good = self.sock(srv.tcp)
        good.sendall(len32(b"a" * 1000))
        self.assertEqual(recv_exact(good, 1004), len32(b"a" * 1000))
        bad = self.sock(srv.tcp)
        bad.sendall(struct.pack(">I", 5000) + b"b" * 100)
        self.assertTrue(closed_by_peer(bad))
        line = srv.wait_log("frame larger than --max-frame")
        self.assertIn("error:", line)
        self.assertIn("1000 bytes", line)
        good.sendall(len32(b"still here"))
        self.assertEqual(recv_exact(good, 14), len32(b"still here"))
        self.assertIsNone(srv.proc.poll())

    def test_oversize_line_and_bad_ascii4_header(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "line",
                         "--max-frame", "16")
        s = self.sock(srv.tcp)
        s.sendall(b"x" * 17)
        self.assertTrue(closed_by_peer(s))
        srv.wait_log("frame larger than --max-frame (16 bytes)")
        srv2 = self.start("-l", "127.0.0.1:0", "--frame", "ascii4")
        s2 = self.sock(srv2.tcp)
        s2.sendall(b"00x1")
        self.assertTrue(closed_by_peer(s2))
        srv2.wait_log("malformed frame header")

    def test_frame_cut_by_eof_is_logged(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "len16")
        s = self.sock(srv.tcp)
        s.sendall(b"\x00\x10abc")
        s.shutdown(socket.SHUT_WR)
        # Frames are echoed as they stream in, so the start of the cut
        # frame came back before the server saw the end of the stream.
        self.assertEqual(read_until_closed(s), (b"\x00\x10abc", "eof"))
        srv.wait_log("stream ended inside a frame")


class Udp(ServerTest):
    """Item 4: UDP echo (RFC 862) and friends."""

    def udp_sock(self, family=socket.AF_INET, bind=None):
        u = socket.socket(family, socket.SOCK_DGRAM)
        self.addCleanup(u.close)
        if bind is not None:
            u.bind(bind)
        u.settimeout(5)
        return u

    def test_udp_echo_datagrams_including_empty(self):
        srv = self.start("-v", "--udp", "-l", "127.0.0.1:0")
        self.assertRegex(srv.log[0], r"listening on udp://127\.0\.0\.1:\d+ ")
        addr = srv.host_port("udp")
        u = self.udp_sock()
        for payload in [b"hello", b"", ISO_0800, os.urandom(1400),
                        os.urandom(60000)]:
            u.sendto(payload, addr)
            data, frm = u.recvfrom(65536)
            self.assertEqual(data, payload)
            self.assertEqual(frm, addr)
        srv.wait_log("recv 0 bytes from")

    def test_udp_never_answers_port_7_or_19(self):
        srv = self.start("-v", "--udp", "-l", "127.0.0.1:0")
        addr = srv.host_port("udp")
        for port in (7, 19):
            with self.subTest(port=port):
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                self.addCleanup(u.close)
                try:
                    u.bind(("127.0.0.1", port))
                except OSError as e:
                    self.skipTest("cannot bind port %d: %s" % (port, e))
                u.sendto(b"loop?", addr)
                srv.wait_log("ignoring datagram from 127.0.0.1:%d" % port)
                # The decision is logged after it is made; nothing was sent.
                self.assertTrue(nothing_pending(u))
        # The server still answers everybody else.
        v = self.udp_sock()
        v.sendto(b"ok", addr)
        self.assertEqual(v.recvfrom(100)[0], b"ok")

    def test_udp_chargen_and_discard(self):
        srv = self.start("--udp", "--mode", "chargen", "-l", "127.0.0.1:0")
        addr = srv.host_port("udp")
        u = self.udp_sock()
        u.sendto(b"", addr)
        first = u.recvfrom(4096)[0]
        self.assertLessEqual(len(first), 512)
        self.assertEqual(first, b"".join(chargen_line(n) for n in range(6)))
        u.sendto(b"more", addr)
        second = u.recvfrom(4096)[0]
        self.assertEqual(second[:74], chargen_line(6))
        srv.stop()
        srv = self.start("-v", "--udp", "--mode", "discard", "-l",
                         "127.0.0.1:0")
        addr = srv.host_port("udp")
        u.sendto(b"drop me", addr)
        srv.wait_log("recv 7 bytes from")
        self.assertTrue(nothing_pending(u))


class Listeners(ServerTest):
    """Item 5: Unix sockets, IPv6, several listeners at once."""

    def test_unix_listener_with_python_and_socat(self):
        d = self.tmpdir()
        path = os.path.join(d, "echo.sock")
        srv = self.start("-l", "unix:" + path)
        self.assertIn("unix://" + path, srv.log[0])
        self.assertEqual(srv.addrs["unix"], [path])
        s = self.sock("unix:" + path)
        s.sendall(len16(ISO_0800))
        self.assertEqual(recv_exact(s, 41), len16(ISO_0800))
        s.close()
        if shutil.which("socat"):
            r = subprocess.run(["socat", "-t", "5", "-", "UNIX-CONNECT:" + path],
                               input=b"via socat\n", stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, timeout=30)
            self.assertEqual(r.stdout, b"via socat\n", r.stderr)
        srv.signal(signal.SIGTERM)
        self.assert_graceful_exit(srv)
        self.assertFalse(os.path.exists(path), "socket file left behind")

    def test_unix_stale_socket_file_is_replaced(self):
        d = self.tmpdir()
        path = os.path.join(d, "stale.sock")
        old = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old.bind(path)
        old.close()  # the file stays, nobody listens
        self.start("--workers", "3", "-l", "unix:" + path)
        s = self.sock("unix:" + path)
        s.sendall(b"fresh")
        self.assertEqual(recv_exact(s, 5), b"fresh")

    def test_abstract_unix_listener(self):
        name = "sockit-test-%d-%d" % (os.getpid(), random.randrange(1 << 30))
        srv = self.start("-l", "unix:@" + name)
        self.assertIn("unix://@" + name, srv.log[0])
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.addCleanup(s.close)
        s.settimeout(5)
        s.connect("\0" + name)
        s.sendall(b"abstract")
        self.assertEqual(recv_exact(s, 8), b"abstract")

    def test_ipv6_loopback_listener(self):
        srv = self.start("-l", "[::1]:0")
        self.assertRegex(srv.log[0], r"tcp://\[::1\]:[1-9]\d*")
        host, port = srv.host_port()
        s = socket.create_connection((host, port), timeout=5)
        self.addCleanup(s.close)
        self.assertEqual(s.family, socket.AF_INET6)
        s.sendall(b"six")
        self.assertEqual(recv_exact(s, 3), b"six")

    def test_tcp_udp_and_unix_listen_together(self):
        d = self.tmpdir()
        path = os.path.join(d, "mix.sock")
        srv = self.start("--workers", "2", "-l", "127.0.0.1:0",
                         "-l", "[::1]:0", "-l", "unix:" + path,
                         "-l", "udp://127.0.0.1:0", "-l", "udp://[::1]:0")
        line = srv.log[0]
        self.assertEqual(len(srv.addrs["tcp"]), 2, line)
        self.assertEqual(len(srv.addrs["udp"]), 2, line)
        self.assertEqual(srv.addrs["unix"], [path])
        for a in srv.addrs["tcp"] + ["unix:" + path]:
            s = self.sock(a)
            s.sendall(b"via " + a.encode())
            self.assertEqual(recv_exact(s, 4 + len(a)), b"via " + a.encode())
        for a in srv.addrs["udp"]:
            host, port = split_addr(a)
            fam = socket.AF_INET6 if ":" in host else socket.AF_INET
            u = socket.socket(fam, socket.SOCK_DGRAM)
            self.addCleanup(u.close)
            u.settimeout(5)
            u.sendto(b"dgram", (host, port))
            self.assertEqual(u.recvfrom(100)[0], b"dgram")

    def test_udp_flag_and_explicit_schemes(self):
        srv = self.start("--udp", "-l", "127.0.0.1:0", "-l",
                         "tcp://127.0.0.1:0")
        self.assertEqual(len(srv.addrs["udp"]), 1)
        self.assertEqual(len(srv.addrs["tcp"]), 1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(u.close)
        u.settimeout(5)
        u.sendto(b"u", srv.host_port("udp"))
        self.assertEqual(u.recvfrom(10)[0], b"u")
        s = self.sock(srv.tcp)
        s.sendall(b"t")
        self.assertEqual(recv_exact(s, 1), b"t")


class Modes(ServerTest):
    """Item 6: discard, chargen, chat, files."""

    def test_discard_sends_nothing_and_stays_open(self):
        srv = self.start("-v", "--mode", "discard", "-l", "127.0.0.1:0")
        self.assertIn("(discard)", srv.log[0])
        s = self.sock(srv.tcp)
        port = s.getsockname()[1]
        s.sendall(b"a" * 10000)
        wait_recv_logged(srv, port, 10000)
        self.assertTrue(nothing_pending(s))
        s.sendall(b"still open")
        wait_recv_logged(srv, port, 10010)
        s.shutdown(socket.SHUT_WR)
        data, how = read_until_closed(s)
        self.assertEqual((data, how), (b"", "eof"))

    def test_chargen_sends_rfc864_pattern(self):
        srv = self.start("--mode", "chargen", "-l", "127.0.0.1:0")
        s = self.sock(srv.tcp)
        n = 200  # more than one period of 95 lines
        data = recv_exact(s, 74 * n)
        for i in range(n):
            self.assertEqual(data[74 * i:74 * (i + 1)], chargen_line(i),
                             "line %d" % i)
        self.assertEqual(data[:10], b" !\"#$%&'()")
        s.close()
        srv.wait_log("closed")

    @needs("socat")
    def test_chargen_with_socat_reader(self):
        srv = self.start("--mode", "chargen", "-l", "127.0.0.1:0")
        host, port = srv.host_port()
        p = subprocess.Popen(["socat", "-u", "TCP:%s:%d" % (host, port), "-"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            out = recv_all_from_pipe(p.stdout, 74 * 3, 10)
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        self.assertEqual(out, chargen_line(0) + chargen_line(1) +
                         chargen_line(2))

    def test_chat_between_two_clients(self):
        srv = self.start("--mode", "chat", "-l", "127.0.0.1:0")
        self.assertIn("(chat)", srv.log[0])
        a = self.sock(srv.tcp)
        a_name = "127.0.0.1:%d" % a.getsockname()[1]
        srv.wait_log("connection from " + a_name)
        b = self.sock(srv.tcp)
        b_name = "127.0.0.1:%d" % b.getsockname()[1]
        fa = a.makefile("rb")
        fb = b.makefile("rb")
        self.assertEqual(fa.readline(), b"* %s joined\n" % b_name.encode())
        b.sendall(b"hello from b\r\n")
        self.assertEqual(fa.readline(),
                         b"[%s] hello from b\n" % b_name.encode())
        a.sendall(b"hi ")
        a.sendall(b"b\n")
        self.assertEqual(fb.readline(), b"[%s] hi b\n" % a_name.encode())
        b.close()
        fb.close()
        self.assertEqual(fa.readline(), b"* %s left\n" % b_name.encode())

    def files_server(self):
        root = self.tmpdir()
        srv = self.start("--mode", "files", "--root", root,
                         "-l", "127.0.0.1:0")
        return root, srv

    def request(self, f, s, line, body=b""):
        s.sendall(line + body)
        return f.readline()

    def test_files_put_then_get_round_trip(self):
        root, srv = self.files_server()
        os.mkdir(os.path.join(root, "sub"))
        data = random.Random(7).randbytes(300 * 1024 + 17)
        s = self.sock(srv.tcp, timeout=20)
        f = s.makefile("rb")
        self.assertEqual(self.request(f, s, b"PUT sub/data.bin %d\n" % len(data),
                                      data), b"OK %d\n" % len(data))
        with open(os.path.join(root, "sub", "data.bin"), "rb") as fh:
            self.assertEqual(fh.read(), data)
        self.assertEqual(self.request(f, s, b"GET sub/data.bin\n"),
                         b"OK %d\n" % len(data))
        self.assertEqual(f.read(len(data)), data)
        # Pipelined on the same connection: empty file, missing file.
        s.sendall(b"PUT empty 0\nGET empty\nGET missing\n")
        self.assertEqual(f.readline(), b"OK 0\n")
        self.assertEqual(f.readline(), b"OK 0\n")
        self.assertTrue(f.readline().startswith(b"ERR no such file"))
        self.assertEqual(sorted(os.listdir(root)), ["empty", "sub"])
        srv.wait_log(re.compile(r"GET sub/data.bin: OK \d+ bytes"))

    def test_files_max_file_limits_a_put(self):
        """--max-file, a files option the mode's row declares and keeps."""
        root = self.tmpdir()
        srv = self.start("--max-file", "5", "--mode", "files", "--root", root,
                         "-l", "127.0.0.1:0")
        s = self.sock(srv.tcp)
        f = s.makefile("rb")
        self.assertEqual(self.request(f, s, b"PUT five 5\n", b"12345"),
                         b"OK 5\n")
        reply = self.request(f, s, b"PUT six 6\n", b"123456")
        self.assertTrue(reply.startswith(b"ERR "), reply)
        self.assertIn(b"limit 5 bytes", reply)
        self.assertEqual(os.listdir(root), ["five"])

    def test_files_rejects_path_escapes(self):
        root, srv = self.files_server()
        outside = self.tmpdir()
        with open(os.path.join(outside, "secret"), "w") as fh:
            fh.write("secret")
        os.symlink(outside, os.path.join(root, "link"))
        os.symlink(os.path.join(outside, "secret"),
                   os.path.join(root, "secret"))
        s = self.sock(srv.tcp)
        f = s.makefile("rb")
        for name in [b"../secret", b"/etc/passwd", b"a/../../secret",
                     b"link/secret", b"secret", b"a//b", b"./x", b"x/",
                     b"bad name", b"caf\xc3\xa9", b"x" * 256, b".."]:
            with self.subTest(name=name):
                reply = self.request(f, s, b"GET " + name + b"\n")
                self.assertTrue(reply.startswith(b"ERR "), reply)
        # A PUT with a bad name has its body skipped; the connection stays
        # in step and the next request works.
        reply = self.request(f, s, b"PUT ../evil 5\n", b"EVIL!")
        self.assertTrue(reply.startswith(b"ERR "), reply)
        reply = self.request(f, s, b"PUT link/evil 5\n", b"EVIL!")
        self.assertTrue(reply.startswith(b"ERR "), reply)
        self.assertEqual(self.request(f, s, b"PUT ok 2\n", b"ok"), b"OK 2\n")
        self.assertEqual(os.listdir(outside), ["secret"])
        self.assertEqual(sorted(os.listdir(root)), ["link", "ok", "secret"])

    def test_files_broken_upload_leaves_nothing(self):
        root, srv = self.files_server()
        s = self.sock(srv.tcp)
        s.sendall(b"PUT partial.bin 100000\n" + b"z" * 5000)
        s.close()
        srv.wait_log("upload discarded")
        self.assertEqual(os.listdir(root), [])


def recv_all_from_pipe(pipe, n, timeout):
    deadline = time.monotonic() + timeout
    out = b""
    fd = pipe.fileno()
    import select as _select
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("got %d of %d bytes" % (len(out), n))
        r, _, _ = _select.select([fd], [], [], left)
        if r:
            b = os.read(fd, n - len(out))
            if not b:
                break
            out += b
    return out


class Limits(ServerTest):
    """Item 8: --max-conns and --idle-timeout."""

    def test_max_conns_refuses_the_extra_connection(self):
        srv = self.start("--max-conns", "2", "-l", "127.0.0.1:0")
        a = self.sock(srv.tcp)
        b = self.sock(srv.tcp)
        for s in (a, b):
            s.sendall(b"in")
            self.assertEqual(recv_exact(s, 2), b"in")
        c = self.sock(srv.tcp)
        self.assertTrue(closed_by_peer(c))
        srv.wait_log(re.compile(r"refused connection from 127\.0\.0\.1:%d: "
                                r"--max-conns 2 reached" %
                                c.getsockname()[1]))
        for s in (a, b):
            s.sendall(b"still")
            self.assertEqual(recv_exact(s, 5), b"still")
        # A slot frees up when one leaves.
        port = a.getsockname()[1]
        a.close()
        srv.wait_log("connection from 127.0.0.1:%d closed" % port)
        d = self.sock(srv.tcp)
        d.sendall(b"new")
        self.assertEqual(recv_exact(d, 3), b"new")

    def test_idle_timeout_closes_silent_connections_only(self):
        srv = self.start("--idle-timeout", "2", "-l", "127.0.0.1:0")
        silent = self.sock(srv.tcp)
        busy = self.sock(srv.tcp)
        t0 = time.monotonic()
        # The busy client talks every 0.1 s for 3 s: longer than the
        # timeout in total, and never silent for anywhere near as long as
        # the timeout, even if the server stalls for a second.
        for _ in range(1000):  # bounded in count and in time
            if time.monotonic() - t0 >= 3:
                break
            busy.sendall(b".")
            self.assertEqual(recv_exact(busy, 1), b".")
            time.sleep(0.1)  # pacing, not synchronisation
        self.assertTrue(closed_by_peer(silent, timeout=5))
        srv.wait_log(re.compile(r"127\.0\.0\.1:%d closed: idle for" %
                                silent.getsockname()[1]))
        busy.sendall(b"alive")
        self.assertEqual(recv_exact(busy, 5), b"alive")

    def test_idle_timeout_zero_means_never(self):
        srv = self.start("--idle-timeout", "0", "-l", "127.0.0.1:0")
        s = self.sock(srv.tcp)
        s.sendall(b"x")
        self.assertEqual(recv_exact(s, 1), b"x")
        s.settimeout(1.0)
        with self.assertRaises(socket.timeout):
            s.recv(1)


class Stop(ServerTest):
    """Item 9: SIGTERM/SIGINT finish what is in flight and exit 0."""

    def test_sigterm_flushes_in_flight_echo_then_fin(self):
        srv = self.start("-v", "-l", "127.0.0.1:0")
        s = self.sock(srv.tcp, timeout=10)
        port = s.getsockname()[1]
        data = random.Random(9).randbytes(256 * 1024)
        s.sendall(data)  # not read back yet: the echo is in flight
        wait_recv_logged(srv, port, len(data))
        srv.signal(signal.SIGTERM)
        srv.wait_log("SIGTERM: stopping")
        back, how = read_until_closed(s)
        self.assertEqual(how, "eof")
        self.assertEqual(back, data)
        s.close()
        self.assert_graceful_exit(srv)
        self.assertIn("sockit-server: stopped", srv.log[-1])

    def test_sigterm_waits_for_the_frame_in_progress(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "len16")
        s = self.sock(srv.tcp, timeout=10)
        wire = len16(ISO_0800)
        s.sendall(wire[:20])
        # Frames are echoed as they stream in: once the first 20 bytes are
        # back, the server is inside the frame.
        self.assertEqual(recv_exact(s, 20), wire[:20])
        srv.signal(signal.SIGTERM)
        srv.wait_log("SIGTERM: stopping")
        s.sendall(wire[20:])
        back, how = read_until_closed(s)
        self.assertEqual((back, how), (wire[20:], "eof"))
        s.close()
        self.assert_graceful_exit(srv)

    def test_sigint_closes_idle_clients_cleanly(self):
        d = self.tmpdir()
        path = os.path.join(d, "s.sock")
        srv = self.start("--workers", "2", "-l", "127.0.0.1:0",
                         "-l", "unix:" + path)
        clients = [self.sock(srv.tcp) for _ in range(5)]
        clients.append(self.sock("unix:" + path))
        for c in clients:
            c.sendall(b"hi")
            self.assertEqual(recv_exact(c, 2), b"hi")
        srv.signal(signal.SIGINT)
        for c in clients:
            self.assertEqual(read_until_closed(c), (b"", "eof"))
            c.close()
        self.assert_graceful_exit(srv)

    def test_grace_period_bounds_the_stop(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "line",
                         "--grace", "0.5")
        s = self.sock(srv.tcp)
        s.sendall(b"a line that never ends")
        self.assertEqual(recv_exact(s, 22), b"a line that never ends")
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        self.assert_graceful_exit(srv, timeout=10)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertTrue(any("grace period over" in l for l in srv.log),
                        srv.log)

    def test_second_signal_stops_at_once(self):
        srv = self.start("-l", "127.0.0.1:0", "--frame", "line",
                         "--grace", "60")
        s = self.sock(srv.tcp)
        s.sendall(b"unfinished")
        self.assertEqual(recv_exact(s, 10), b"unfinished")
        srv.signal(signal.SIGTERM)
        srv.wait_log("SIGTERM: stopping")
        srv.signal(signal.SIGTERM)
        self.assert_graceful_exit(srv, timeout=10)
        self.assertTrue(any("second signal" in l for l in srv.log), srv.log)


class Cli(ServerTest):
    """Item 10: --help, --version, usage errors, runtime failures."""

    def run_server(self, *args, timeout=10):
        return subprocess.run([SERVER] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def test_help_and_version(self):
        r = self.run_server("--help")
        self.assertEqual(r.returncode, 0)
        out = r.stdout.decode()
        for word in ["--listen", "--udp", "--mode", "--frame", "--max-frame",
                     "--max-conns", "--max-queue", "--idle-timeout",
                     "--grace", "--workers", "--root", "--quiet",
                     "--verbose", "chargen", "127.0.0.1:8888"]:
            self.assertIn(word, out)
        self.assertEqual(r.stderr, b"")
        r = self.run_server("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.decode(), r"^sockit-server \d+\.\d+\.\d+")

    def test_usage_errors_exit_2_with_one_line(self):
        cases = [
            (["--workers", "0"], "--workers"),
            (["--workers", "many"], "--workers"),
            (["--mode", "nope"], "unknown mode"),
            (["--frame", "len8"], "unknown frame"),
            (["--max-frame", "lots"], "--max-frame"),
            (["--max-conns", "-1"], "--max-conns"),
            (["--idle-timeout", "soon"], "--idle-timeout"),
            (["--grace", "-2"], "--grace"),
            (["-l", "300.1.1.1:80"], "bad listen address"),
            (["-l", "127.0.0.1"], "bad listen address"),
            (["-l", "[::1:80"], "bad listen address"),
            (["--bogus"], "unknown option"),
            (["-l"], "needs a value"),
            (["stray"], "unexpected argument"),
            (["--mode", "chat", "--udp"], "does not work over UDP"),
            (["--mode", "files", "--frame", "line"], "does not apply"),
            (["--mode", "chat", "--frame", "len16"], "line-based"),
            (["--udp", "-l", "unix:/tmp/x"], "stream sockets only"),
            (["--root", "/tmp"], "--root"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                r = self.run_server(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertEqual(r.stdout, b"")
                lines = r.stderr.decode().splitlines()
                self.assertTrue(lines[0].startswith("sockit-server: "), lines)
                self.assertIn(needle, lines[0])
                # One line saying what is wrong (plus the --help hint).
                self.assertLessEqual(len(lines), 2, lines)

    def test_address_in_use_exits_1(self):
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for workers in ("1", "3"):
            with self.subTest(workers=workers):
                r = self.run_server("--workers", workers,
                                    "-l", "127.0.0.1:%d" % port)
                self.assertEqual(r.returncode, 1, r.stderr)
                lines = r.stderr.decode().splitlines()
                self.assertEqual(len(lines), 1, lines)
                self.assertIn("cannot listen on 127.0.0.1:%d" % port,
                              lines[0])
                self.assertIn("in use", lines[0])
        # A live Unix socket is not taken over either.
        d = self.tmpdir()
        path = os.path.join(d, "live.sock")
        srv = self.start("-l", "unix:" + path)
        r = self.run_server("-l", "unix:" + path)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("in use", r.stderr.decode())
        self.assertIsNone(srv.proc.poll())

    def test_files_root_missing_exits_1(self):
        r = self.run_server("--mode", "files", "--root", "/nonexistent/dir",
                            "-l", "127.0.0.1:0")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/dir", r.stderr.decode())


if __name__ == "__main__":
    unittest.main()


class SockperfPeer(ServerTest):
    """sockperf's own client (a load generator nobody here wrote) against
    --mode sockperf, and the header rules checked byte by byte."""

    @needs("sockperf")
    def test_sockperf_client_ping_pong_and_throughput(self):
        with Server(["-q", "-w", "1", "--mode", "sockperf",
                     "-l", "127.0.0.1:0"]) as srv:
            port = str(srv.host_port()[1])
            p = subprocess.run(["sockperf", "ping-pong", "--tcp", "-i",
                                "127.0.0.1", "-p", port, "-m", "64", "-t",
                                "1"], capture_output=True, timeout=60)
            out = p.stdout.decode(errors="replace")
            self.assertEqual(p.returncode, 0, out + p.stderr.decode())
            m = re.search(r"SentMessages=(\d+); ReceivedMessages=(\d+)", out)
            self.assertIsNotNone(m, out)
            self.assertGreater(int(m.group(2)), 100)
            self.assertIn("Summary: Latency is", out)
            p = subprocess.run(["sockperf", "throughput", "--tcp", "-i",
                                "127.0.0.1", "-p", port, "-m", "64", "-t",
                                "1"], capture_output=True, timeout=60)
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn(b"Message Rate is", p.stdout)

    def test_sockperf_header_rules(self):
        with Server(["-q", "--mode", "sockperf", "-l", "127.0.0.1:0",
                     "--max-frame", "4096"]) as srv:
            def msg(seq, flags, body):
                return struct.pack(">QHI", seq, flags, 14 + len(body)) + body
            with connect(srv.tcp) as s:
                # A reply is asked for: the client flag is cleared, the
                # rest comes back as sent, even fed a byte at a time.
                m = msg(7, 3, b"x" * 50)
                for b in m:
                    s.sendall(bytes([b]))
                self.assertEqual(recv_exact(s, len(m)), msg(7, 2, b"x" * 50))
                # No reply asked for (throughput mode): nothing comes back,
                # and the next request is still answered.
                s.sendall(msg(8, 1, b"y" * 10) + msg(9, 3, b""))
                self.assertEqual(recv_exact(s, 14), msg(9, 2, b""))
            with connect(srv.tcp) as s:
                # 300 messages in one write (more than one batch of
                # replies): every asked-for reply comes back, in order.
                rnd = random.Random(5)
                sent, want = [], []
                for seq in range(300):
                    flags = rnd.choice([1, 3, 3])
                    body = bytes([seq % 251]) * rnd.choice([0, 1, 50, 700])
                    sent.append(msg(seq, flags, body))
                    if flags & 2:
                        want.append(msg(seq, flags & ~1, body))
                s.sendall(b"".join(sent))
                want = b"".join(want)
                self.assertEqual(recv_exact(s, len(want)), want)
            with connect(srv.tcp) as s:
                # A bad length after good messages in the same write: the
                # replies owed before it still go out, then the close.
                s.sendall(msg(1, 3, b"a") + msg(2, 3, b"b") +
                          struct.pack(">QHI", 3, 3, 5))
                want = msg(1, 2, b"a") + msg(2, 2, b"b")
                self.assertEqual(recv_exact(s, len(want)), want)
                self.assertEqual(s.recv(10), b"")
            with connect(srv.tcp) as s:
                # A length over --max-frame (or under 14) closes only this
                # connection.
                s.sendall(struct.pack(">QHI", 1, 3, 100000))
                self.assertEqual(s.recv(10), b"")
            srv.wait_log("sockperf message length")
