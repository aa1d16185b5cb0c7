"""Fault injection against sockit-server: hostile and broken clients, resource
exhaustion, signals during transfers, and hostile links. Every test asserts
that the server still serves a fresh client afterwards and that a bystander
connection running through the fault got every byte back in order.

Everything is bounded in count and time; no sleeps as synchronisation."""
import hashlib
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

from skutil import SANITIZED, CLIENT, Server, connect, recv_exact, split_addr


def proc_cpu_seconds(pid):
    """utime + stime of a process, in seconds, from /proc."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Bystander(threading.Thread):
    """A well-behaved client echoing random data through the whole test; at
    the end, everything it sent must have come back byte-exact."""

    def __init__(self, addr, frame=None):
        super().__init__(daemon=True)
        self.addr = addr
        self.frame = frame
        self.stop_flag = threading.Event()
        self.rounds = 0
        self.error = None
        self.first_round = threading.Event()

    def start(self):
        """Starts, and returns once the first echo came back, so the fault
        that follows really happens while the bystander is running."""
        super().start()
        if not self.first_round.wait(10):
            raise AssertionError("bystander never got its first echo")

    def run(self):
        rnd = random.Random(7)
        try:
            with connect(self.addr, timeout=10) as s:
                while not self.stop_flag.is_set() and self.rounds < 100000:
                    payload = rnd.randbytes(rnd.randint(1, 4000))
                    msg = payload
                    if self.frame == "len16":
                        msg = struct.pack(">H", len(payload)) + payload
                    s.sendall(msg)
                    back = recv_exact(s, len(msg))
                    if back != msg:
                        raise AssertionError("bystander got different bytes")
                    self.rounds += 1
                    self.first_round.set()
        except Exception as e:  # reported by finish()
            self.error = e
        self.first_round.set()

    def finish(self, testcase):
        self.stop_flag.set()
        self.join(20)
        testcase.assertFalse(self.is_alive(), "bystander hung")
        testcase.assertIsNone(self.error, "bystander failed: %r" % self.error)
        testcase.assertGreater(self.rounds, 0)


def assert_serves(testcase, addr, frame=None):
    """A fresh client gets an echo."""
    payload = os.urandom(1000)
    msg = payload if frame != "len16" else struct.pack(">H", 1000) + payload
    with connect(addr, timeout=10) as s:
        s.sendall(msg)
        testcase.assertEqual(recv_exact(s, len(msg)), msg)


def send_until_stalled(s, chunk, seconds, limit):
    """Sends chunk on s (made non-blocking) until the peer has taken no
    byte for 0.5 s, `seconds` passed or `limit` bytes went in. Returns
    (bytes sent, whether it stalled)."""
    s.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    stalled_since = None
    while time.monotonic() < deadline and sent < limit:
        try:
            sent += s.send(chunk)
            stalled_since = None
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 0.5:
                return sent, True
            selectors.DefaultSelector().select(0.01)
    return sent, False


def rst_close(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()


class FaultTest(unittest.TestCase):
    def test_reset_in_the_middle_of_a_frame(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--frame", "len16"]) as srv:
            by = Bystander(srv.tcp, "len16")
            by.start()
            for _ in range(20):
                s = connect(srv.tcp)
                s.sendall(struct.pack(">H", 5000) + b"x" * 1234)
                rst_close(s)
            by.finish(self)
            assert_serves(self, srv.tcp, "len16")

    def test_half_close_still_gets_its_echo(self):
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            data = os.urandom(3 << 20)
            with connect(srv.tcp, timeout=20) as s:
                sent = threading.Thread(
                    target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
                sent.start()
                got = bytearray()
                while True:
                    b = s.recv(1 << 20)
                    if not b:
                        break
                    got += b
                sent.join(20)
            self.assertEqual(bytes(got), data)
            assert_serves(self, srv.tcp)

    def test_silent_client_dropped_by_idle_timeout(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--idle-timeout", "1"]) as srv:
            by = Bystander(srv.tcp)
            by.start()
            s = connect(srv.tcp, timeout=10)
            t0 = time.monotonic()
            self.assertEqual(s.recv(1), b"")  # the server closed it
            elapsed = time.monotonic() - t0
            self.assertGreater(elapsed, 0.8)
            self.assertLess(elapsed, 5)
            s.close()
            by.finish(self)  # the bystander is busy, so never idle
            assert_serves(self, srv.tcp)

    def test_slowloris_dropped_by_frame_timeout(self):
        # One byte every 0.2 s keeps the idle timer (5 s) happy forever;
        # the frame timeout (1 s) is what drops it.
        with Server(["-q", "-l", "127.0.0.1:0", "--frame", "len16",
                     "--idle-timeout", "5", "--frame-timeout", "1"]) as srv:
            by = Bystander(srv.tcp, "len16")
            by.start()
            s = connect(srv.tcp, timeout=10)
            s.setblocking(False)
            msg = struct.pack(">H", 100) + b"y" * 100
            t0 = time.monotonic()
            sel = selectors.DefaultSelector()
            sel.register(s, selectors.EVENT_READ)
            closed_after = None
            for i in range(len(msg)):
                try:
                    s.send(msg[i:i + 1])
                except OSError:
                    closed_after = time.monotonic() - t0
                    break
                # The trickle's pace is 0.2 s a byte; meanwhile watch for
                # the server closing us (echoed bytes are just drained).
                pace = t0 + 0.2 * (i + 1)
                while closed_after is None and time.monotonic() < pace:
                    if not sel.select(max(0, pace - time.monotonic())):
                        continue
                    try:
                        if s.recv(4096) == b"":
                            closed_after = time.monotonic() - t0
                    except BlockingIOError:
                        pass
                    except ConnectionResetError:
                        closed_after = time.monotonic() - t0
                if closed_after is not None:
                    break
            s.close()
            self.assertIsNotNone(closed_after, "slowloris was never dropped")
            self.assertGreater(closed_after, 0.9)
            self.assertLess(closed_after, 4)
            by.finish(self)
            assert_serves(self, srv.tcp, "len16")

    def test_fast_writer_that_never_reads_is_bounded(self):
        with Server(["-q", "-l", "127.0.0.1:0", "--max-queue", "1M"]) as srv:
            pid = srv.proc.pid
            rss0 = proc_rss_kib(pid)
            s = connect(srv.tcp)
            # Write until the server stops taking data (back-pressure
            # reached the kernel buffers) or 256 MiB went in.
            sent, _ = send_until_stalled(s, b"z" * 65536, 5, 256 << 20)
            rss1 = proc_rss_kib(pid)
            # The server stopped reading: far less than what was offered
            # got in, and its memory grew by at most a few MiB.
            self.assertLess(sent, 200 << 20)
            if not SANITIZED:
                self.assertLess(rss1 - rss0, 16 * 1024,
                                "server RSS grew %d KiB" % (rss1 - rss0))
            assert_serves(self, srv.tcp)
            s.close()

    def test_reset_while_paused_for_back_pressure_is_seen(self):
        # A client fills the server's output queue without reading (so the
        # server pauses reading it: the client's sends stall), then resets.
        # The queued output fails; the server must notice and close at
        # once, not hold the connection until the idle timeout.
        with Server(["-l", "127.0.0.1:0", "--max-queue", "4096",
                     "--frame", "line", "--idle-timeout", "300"]) as srv:
            s = connect(srv.tcp)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            _, stalled = send_until_stalled(s, (b"x" * 1000 + b"\n") * 64,
                                            40, 1 << 30)
            self.assertTrue(stalled, "the server never paused")
            rst_close(s)
            # Well inside the 300 s idle timeout, even on a loaded machine.
            closed = srv.wait_log(" closed: ", timeout=40)
            self.assertNotIn("idle", closed)
            assert_serves(self, srv.tcp)

    def test_max_conns_and_emfile_neither_crash_nor_spin(self):
        # 64 descriptors: the server runs out long before 300 clients.
        def limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        srv = Server(["-l", "127.0.0.1:0", "--workers", "1", "-q"],
                     preexec=limit)
        with srv:
            clients = []
            for _ in range(300):
                try:
                    clients.append(socket.create_connection(
                        split_addr(srv.tcp), timeout=5))
                except OSError:
                    break
            cpu0 = proc_cpu_seconds(srv.proc.pid)
            t0 = time.monotonic()
            # Saturated for a second: the server must not spin.
            sel = selectors.DefaultSelector()
            sel.select(1.0)
            cpu = proc_cpu_seconds(srv.proc.pid) - cpu0
            wall = time.monotonic() - t0
            self.assertLess(cpu / wall, 0.3, "server burns CPU at EMFILE")
            self.assertIsNone(srv.proc.poll(), "server died at EMFILE")
            for c in clients:
                c.close()
            # It recovers: a new client is served once descriptors free up.
            deadline = time.monotonic() + 10
            while True:
                try:
                    assert_serves(self, srv.tcp)
                    break
                except (OSError, EOFError):
                    if time.monotonic() > deadline:
                        raise

    def test_hostile_frames_close_only_their_connection(self):
        cases = {
            "len16": [struct.pack(">H", 65535) + b"short", b"\x00"],
            "len32": [struct.pack(">I", 0xFFFFFFFF), struct.pack(">I", 10)],
            "ascii4": [b"12ab", b"99"],
            "line": [b"x" * 300000],
            "raw": [os.urandom(100000)],
        }
        for mode, attacks in cases.items():
            with self.subTest(mode=mode):
                args = ["-q", "-l", "127.0.0.1:0", "--frame", mode,
                        "--max-frame", "65536"]
                with Server(args) as srv:
                    by = Bystander(srv.tcp, "len16" if mode == "len16" else
                                   None) if mode in ("raw", "len16") else None
                    if by:
                        by.start()
                    for attack in attacks + [os.urandom(5000)]:
                        s = connect(srv.tcp)
                        try:
                            s.sendall(attack)
                            s.shutdown(socket.SHUT_WR)
                            while s.recv(65536):
                                pass
                        except OSError:
                            pass
                        s.close()
                    if by:
                        by.finish(self)
                    self.assertIsNone(srv.proc.poll())
                    if mode in ("raw", "len16"):
                        assert_serves(self, srv.tcp, mode)

    def test_sigterm_during_100_transfers(self):
        srv = Server(["-q", "-l", "127.0.0.1:0", "--frame", "len16", "--grace", "5"])
        try:
            results = []
            started = threading.Barrier(101)

            def transfer(i):
                rnd = random.Random(i)
                ok = 0
                end = "eof"
                try:
                    with connect(srv.tcp, timeout=20) as s:
                        started.wait(10)
                        for _ in range(2000):
                            p = rnd.randbytes(rnd.randint(0, 2000))
                            m = struct.pack(">H", len(p)) + p
                            try:
                                s.sendall(m)
                                back = recv_exact(s, len(m))
                            except EOFError:
                                break
                            if back != m:
                                end = "corrupt"
                                break
                            ok += 1
                except ConnectionResetError:
                    end = "reset"
                except Exception as e:
                    end = repr(e)
                results.append((ok, end))

            threads = [threading.Thread(target=transfer, args=(i,))
                       for i in range(100)]
            for t in threads:
                t.start()
            started.wait(10)
            srv.signal(signal.SIGTERM)
            code = srv.wait(15)
            for t in threads:
                t.join(20)
            self.assertEqual(code, 0)
            self.assertEqual(len(results), 100)
            bad = [r for r in results if r[1] not in ("eof",)]
            self.assertEqual(bad, [], "some transfers saw a reset or "
                             "corruption instead of a clean close")
        finally:
            srv.stop()

    def test_unread_stderr_never_stalls_the_server(self):
        # After the readiness line nobody reads the server's stderr (a
        # pipe). At the default level each connection logs two lines of
        # about 130 bytes, so 3000 of them write far more than the pipe
        # (64 KiB) and the log buffer (256 KiB) hold. The loops must keep serving; the
        # lines that did not fit are dropped and counted, and the count is
        # reported once stderr drains.
        with Server(["-w", "2", "-l", "127.0.0.1:0"]) as srv:
            by = Bystander(srv.tcp)
            by.start()
            deadline = time.monotonic() + 60
            for _ in range(3000):
                self.assertLess(time.monotonic(), deadline, "server stalled")
                with connect(srv.tcp, timeout=5) as s:
                    s.sendall(b"x" * 100)
                    self.assertEqual(recv_exact(s, 100), b"x" * 100)
            assert_serves(self, srv.tcp)
            by.finish(self)
            line = srv.wait_log("log lines dropped", timeout=30)
            self.assertRegex(line, r"warn: \d+ log lines dropped")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)
            self.assertTrue(any("stopped" in l for l in srv.log[-5:]),
                            srv.log[-5:])

    def test_udp_floods_and_oversize_datagrams(self):
        with Server(["-q", "--udp", "-l", "127.0.0.1:0"]) as srv:
            host, port = srv.host_port("udp")
            socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                     for _ in range(200)]
            for s in socks:
                s.sendto(os.urandom(1000), (host, port))
                s.close()  # replies go to closed ports: ICMP unreachable
            big = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            big.settimeout(5)
            payload = os.urandom(65507)
            big.sendto(payload, (host, port))
            try:
                data, _ = big.recvfrom(70000)
                self.assertEqual(data, payload)
            except socket.timeout:
                pass  # dropping an oversize datagram is allowed; dying is not
            big.close()
            self.assertIsNone(srv.proc.poll())
            # UDP may drop under load: up to 5 tries, each answered or not,
            # but the server must answer one of them.
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.settimeout(2)
            answer = None
            for _ in range(5):
                c.sendto(b"still there?", (host, port))
                try:
                    answer = c.recvfrom(100)[0]
                    break
                except socket.timeout:
                    continue
            c.close()
            self.assertEqual(answer, b"still there?")


class Relay(threading.Thread):
    """A TCP relay that re-cuts the stream into random pieces (1 byte to
    64 KiB) with random short pauses, both ways: a hostile link."""

    def __init__(self, target, seed=1):
        super().__init__(daemon=True)
        self.target = target
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(4)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.rnd = random.Random(seed)

    def pump(self, src, dst, rnd):
        try:
            while True:
                n = rnd.choice([1, 7, 100, 1500, 16384, 65536, 65536, 65536])
                data = src.recv(n)
                if not data:
                    dst.shutdown(socket.SHUT_WR)
                    return
                while data:
                    k = rnd.randint(1, len(data))
                    dst.sendall(data[:k])
                    data = data[k:]
                    if rnd.random() < 0.001:
                        time.sleep(rnd.random() / 1000)  # link jitter, not sync
        except OSError:
            pass

    def run(self):
        c, _ = self.lsock.accept()
        up = socket.create_connection(split_addr(self.target))
        a = threading.Thread(target=self.pump,
                             args=(c, up, random.Random(self.rnd.random())))
        b = threading.Thread(target=self.pump,
                             args=(up, c, random.Random(self.rnd.random())))
        a.start()
        b.start()
        a.join()
        b.join()
        c.close()
        up.close()
        self.lsock.close()


class UdpRelay(threading.Thread):
    """A UDP relay that drops a share of datagrams both ways and delays the
    others by random amounts, so datagrams of concurrent clients overtake
    one another (reordering). Delays stay under the client's timeout, so
    every resend the client makes answers a real loss."""

    def __init__(self, target, drop=0.3, max_delay=0.05, seed=5):
        super().__init__(daemon=True)
        self.target = target
        self.drop = drop
        self.max_delay = max_delay
        self.rnd = random.Random(seed)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.up = {}  # client address -> its own socket towards the server
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ, None)
        self.queue = []  # (due time, socket, data, destination)
        self.stop_flag = threading.Event()
        self.dropped = 0

    def forward(self, sock, data, dest):
        if self.rnd.random() < self.drop:
            self.dropped += 1
            return
        due = time.monotonic() + self.rnd.random() * self.max_delay
        self.queue.append((due, sock, data, dest))

    def run(self):
        while not self.stop_flag.is_set():
            now = time.monotonic()
            self.queue.sort(key=lambda q: q[0])
            while self.queue and self.queue[0][0] <= now:
                _, sock, data, dest = self.queue.pop(0)
                sock.sendto(data, dest)
            wait = 0.01 if not self.queue else max(0, self.queue[0][0] - now)
            for key, _ in self.sel.select(min(wait, 0.01)):
                if key.data is None:  # from a client
                    data, src = self.sock.recvfrom(70000)
                    up = self.up.get(src)
                    if up is None:
                        up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                        up.bind(("127.0.0.1", 0))
                        self.up[src] = up
                        self.sel.register(up, selectors.EVENT_READ, src)
                    self.forward(up, data, split_addr(self.target))
                else:  # from the server, back to that client
                    data, _ = key.fileobj.recvfrom(70000)
                    self.forward(self.sock, data, key.data)


class HostileLinkTest(unittest.TestCase):
    def test_udp_client_retries_through_a_lossy_reordering_relay(self):
        with Server(["-q", "--udp", "-l", "127.0.0.1:0"]) as srv:
            relay = UdpRelay(srv.addrs["udp"][0])
            relay.start()
            try:
                msgs = ["message-%02d" % i for i in range(15)]
                procs = [subprocess.Popen(
                    [CLIENT, "-u", "-t", "0.5", "--retries", "20",
                     relay.addr] + ["%s-%d" % (m, k) for m in msgs],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                    for k in range(5)]
                for k, p in enumerate(procs):
                    out, err = p.communicate(timeout=120)
                    self.assertEqual(p.returncode, 0, err)
                    # Each message answered once, in order, despite losses
                    # and datagrams of other clients overtaking each other.
                    want = "".join("%s-%d" % (m, k) for m in msgs)
                    self.assertEqual(out.decode().replace("\n", ""), want)
                self.assertGreater(relay.dropped, 0)
                # With everything dropped, the client gives up as
                # documented: exit 1 after its tries, one line.
                relay.drop = 1.0
                p = subprocess.run([CLIENT, "-u", "-t", "0.2", "--retries",
                                    "2", relay.addr, "lost"],
                                   capture_output=True, timeout=30)
                self.assertEqual(p.returncode, 1)
                self.assertIn(b"after 3 tries", p.stderr)
                self.assertEqual(len(p.stderr.strip().splitlines()), 1)
            finally:
                relay.stop_flag.set()
                relay.join(5)


    def test_file_through_a_recutting_relay_arrives_intact(self):
        size = int(os.environ.get("SK_RELAY_BYTES", 1 << 30))
        with tempfile.TemporaryDirectory() as d, \
                Server(["-l", "127.0.0.1:0", "-q"]) as srv:
            path = os.path.join(d, "blob")
            h = hashlib.sha256()
            with open(path, "wb") as f:
                rnd = random.Random(3)
                left = size
                while left:
                    n = min(left, 1 << 20)
                    b = rnd.randbytes(n)
                    h.update(b)
                    f.write(b)
                    left -= n
            relay = Relay(srv.tcp)
            relay.start()
            out = os.path.join(d, "echo")
            with open(out, "wb") as fo:
                p = subprocess.run([CLIENT, "--file", path, relay.addr],
                                   stdout=fo, stderr=subprocess.PIPE,
                                   timeout=300)
            self.assertEqual(p.returncode, 0, p.stderr)
            g = hashlib.sha256()
            with open(out, "rb") as f:
                for b in iter(lambda: f.read(1 << 20), b""):
                    g.update(b)
            self.assertEqual(os.path.getsize(out), size)
            self.assertEqual(g.hexdigest(), h.hexdigest())
            relay.join(10)


if __name__ == "__main__":
    unittest.main()
