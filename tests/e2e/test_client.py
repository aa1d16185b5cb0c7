"""End-to-end tests of sockit-client against peers nobody here wrote:
socat, and small python servers started in this process (threads). Once
sockit-server is built, against it too.

Every server listens on port 0 (or a fresh Unix path), readiness is
signalled (a bound socket, socat's own "listening on" line), never assumed
after a sleep, and every wait has a deadline.
"""
import hashlib
import os
import pty
import select
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from skutil import (CLIENT, SERVER, Server, localhost_listener, needs,
                    refusing_port, run_client)

# An ISO 8583 network management request (MTI 0800): binary primary bitmap
# with bit 1 (a secondary bitmap follows), bit 7 and bit 11; secondary bitmap
# with bit 70. The hex form is what a user types with --hex-input.
ISO_0800_HEX = "0800822000000000000004000000000000001122334455"
ISO_0800 = bytes.fromhex(ISO_0800_HEX)

JSON = b'{"processCode":"0001","processData":{"id":"20230001","name":"Md Hasan Monsur"}}'

DEADLINE = 10.0


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def hexdump_c(data):
    """What `hexdump -C -v` prints: the reference for --hex."""
    out = []
    for off in range(0, len(data), 16):
        chunk = data[off:off + 16]
        hexes = ""
        for i in range(16):
            if i == 8:
                hexes += " "
            hexes += ("%02x " % chunk[i]) if i < len(chunk) else "   "
        text = "".join(chr(c) if 0x20 <= c < 0x7f else "." for c in chunk)
        out.append("%08x  %s |%s|\n" % (off, hexes, text))
    if data:
        out.append("%08x\n" % len(data))
    return "".join(out).encode()


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


# ---- in-process python servers -------------------------------------------

class PyServer:
    """A threaded TCP or Unix stream server; `handler(server, conn)` runs in
    its own thread for every connection. Stops (and closes everything) on
    exit from the with-block."""

    def __init__(self, handler, unix_path=None, ipv6=False):
        self.handler = handler
        self.conns = []
        self.eof_seen = threading.Event()
        self.received = bytearray()
        self.lock = threading.Lock()
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.bind(unix_path)
            # "\0name" is a Linux abstract socket, written "unix:@name".
            self.addr = "unix:" + unix_path.replace("\0", "@", 1)
        elif ipv6:
            self.sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            self.sock.bind(("::1", 0))
            self.addr = "[::1]:%d" % self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.sock.listen(16)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.settimeout(DEADLINE)
            with self.lock:
                self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,),
                             daemon=True).start()

    def _serve(self, conn):
        try:
            self.handler(self, conn)
        except OSError:
            pass
        finally:
            conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(DEADLINE)
        self.sock.close()
        with self.lock:
            for c in self.conns:
                try:
                    c.close()
                except OSError:
                    pass


def echo_handler(srv, conn):
    """RFC 862: everything back; on end-of-stream, close."""
    while True:
        data = conn.recv(65536)
        if not data:
            srv.eof_seen.set()
            return
        conn.sendall(data)


def silent_handler(srv, conn):
    """Reads and never answers (until the client goes away)."""
    while conn.recv(65536):
        pass


def mute_after_eof_handler(srv, conn):
    """Reads to end-of-stream, then neither answers nor closes."""
    while conn.recv(65536):
        pass
    srv.eof_seen.set()
    srv.stop.wait(DEADLINE)


def prefixed_handler(hdr_len, ascii_len, transform):
    """A framed request/response host: reads frames with a hdr_len-byte
    header (binary big-endian, or ASCII digits), answers each with
    transform(payload) in the same framing."""
    def handler(srv, conn):
        while True:
            hdr = recv_exact(conn, hdr_len)
            if hdr is None:
                srv.eof_seen.set()
                return
            n = int(hdr) if ascii_len else int.from_bytes(hdr, "big")
            payload = recv_exact(conn, n) if n else b""
            reply = transform(payload)
            if ascii_len:
                head = b"%0*d" % (hdr_len, len(reply))
            else:
                head = len(reply).to_bytes(hdr_len, "big")
            conn.sendall(head + reply)
    return handler


def iso_response(payload):
    """0800 -> 0810, the rest unchanged: a host's network management reply."""
    if payload[:4] == b"0800":
        return b"0810" + payload[4:]
    return payload


def line_upper_handler(srv, conn):
    """Answers every line with the line in upper case."""
    f = conn.makefile("rb")
    for line in f:
        conn.sendall(line.rstrip(b"\r\n").upper() + b"\n")
    srv.eof_seen.set()


def close_after_one_handler(srv, conn):
    """Answers the first len16 frame, then hangs up."""
    hdr = recv_exact(conn, 2)
    payload = recv_exact(conn, int.from_bytes(hdr, "big"))
    conn.sendall(hdr + payload)
    conn.shutdown(socket.SHUT_RDWR)


class UdpServer:
    """A UDP server in a thread. mode: 'echo', 'drop-first' (ignores the
    first datagram, echoes the rest), 'silent' (never answers). `seen`
    lists the datagrams received; on exit from the with-block it also gets
    those still unread (the thread may not have read a client's last one
    yet when the client exits)."""

    def __init__(self, mode="echo", unix_path=None):
        self.mode = mode
        self.seen = []
        if unix_path:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(unix_path)
            self.addr = "unix:" + unix_path
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.addr = "127.0.0.1:%d" % self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            r, _, _ = select.select([self.sock], [], [], 0.1)
            if not r:
                continue
            data, peer = self.sock.recvfrom(65536)
            self.seen.append(data)
            if self.mode == "silent":
                continue
            if self.mode == "drop-first" and len(self.seen) == 1:
                continue
            self.sock.sendto(data, peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(DEADLINE)
        # What arrived after the thread's last read.
        self.sock.setblocking(False)
        try:
            while True:
                self.seen.append(self.sock.recv(65536))
        except BlockingIOError:
            pass
        self.sock.close()


def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Socat:
    """socat as a TCP echo server on a free loopback port.

    `-b 4096` is not decoration: socat's PIPE echo writes whole blocks into
    its own pipe with blocking writes, and with the default 8 KiB block a
    write into a pipe with less room than that blocks socat forever (seen
    with a 20 MiB echo: socat asleep in pipe_write, every socket queue
    empty). A write of at most PIPE_BUF always fits once select() reports
    the pipe writable."""

    def __init__(self):
        for _ in range(5):
            self.port = free_port()
            self.proc = subprocess.Popen(
                ["socat", "-d", "-d", "-b", "4096",
                 "TCP-LISTEN:%d,bind=127.0.0.1,reuseaddr,fork" % self.port,
                 "PIPE"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE)
            if self._wait_listening():
                # Keep reading socat's log so it can never block on it.
                self.drainer = threading.Thread(target=self._drain,
                                                daemon=True)
                self.drainer.start()
                self.addr = "127.0.0.1:%d" % self.port
                return
            self._kill()
            self.proc.stderr.close()
        raise RuntimeError("socat did not start listening")

    def _wait_listening(self):
        deadline = time.monotonic() + DEADLINE
        buf = b""
        fd = self.proc.stderr.fileno()
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not r:
                continue
            chunk = os.read(fd, 4096)
            if not chunk:
                return False  # exited, e.g. the port was taken meanwhile
            buf += chunk
            if b"listening on" in buf:
                return True
        return False

    def _drain(self):
        try:
            while self.proc.stderr.read(4096):
                pass
        except (OSError, ValueError):
            pass

    def _kill(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(DEADLINE)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._kill()
        # socat has exited, so the drain thread reads end-of-file and ends.
        self.drainer.join(DEADLINE)
        self.proc.stderr.close()


def sanitized():
    """True when the client was built with a sanitizer, whose shadow memory
    makes resident-size measurements meaningless."""
    try:
        with open(CLIENT, "rb") as f:
            image = f.read()
    except OSError:
        return False
    return b"__asan_init" in image or b"__tsan_init" in image


def server_built():
    return os.access(SERVER, os.X_OK)


needs_server = unittest.skipUnless(server_built(), "sockit-server not built")


class ClientTestCase(unittest.TestCase):
    def setUp(self):
        if not os.access(CLIENT, os.X_OK):
            self.skipTest("sockit-client not built")
        self.tmp = tempfile.TemporaryDirectory(prefix="skc-")
        self.addCleanup(self.tmp.cleanup)

    def path(self, name):
        return os.path.join(self.tmp.name, name)

    def assert_ok(self, r, stdout=None):
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        if stdout is not None:
            self.assertEqual(r.stdout, stdout)

    def assert_fails(self, r, code, *needles):
        """Exit status `code` and exactly one line on stderr for a runtime
        failure (usage errors add the 'Try --help' line)."""
        err = r.stderr.decode(errors="replace")
        self.assertEqual(r.returncode, code, err)
        lines = err.splitlines()
        self.assertEqual(len(lines), 1 if code == 1 else 2, err)
        self.assertTrue(lines[0].startswith("sockit-client: "), err)
        if code == 2:
            self.assertIn("--help", lines[1])
        for n in needles:
            self.assertIn(n, lines[0])
        return lines[0]

    def random_file(self, size, name="data.bin"):
        p = self.path(name)
        with open(p, "wb") as f:
            left = size
            while left:
                n = min(left, 1 << 20)
                f.write(os.urandom(n))
                left -= n
        with open(p, "rb") as f:
            digest = hashlib.sha256()
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
        return p, digest.hexdigest()


class MessagesTest(ClientTestCase):
    @needs("socat")
    def test_json_echo_through_socat(self):
        with Socat() as s:
            r = run_client([s.addr, JSON.decode()])
        self.assert_ok(r, JSON)
        self.assertEqual(r.stderr, b"")

    def test_json_echo_python_half_closes(self):
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr, JSON.decode()])
            self.assert_ok(r, JSON)
            # Raw mode tells the end by half-closing the write side.
            self.assertTrue(srv.eof_seen.is_set())

    def test_several_raw_messages_are_one_stream(self):
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr, "one ", "", "two"])
        self.assert_ok(r, b"one two")

    def test_localhost_name_is_resolved(self):
        def start():
            srv = PyServer(echo_handler)
            return srv, int(srv.addr.rsplit(":", 1)[1])

        with localhost_listener(start, lambda srv: srv.__exit__()) \
                as (_, port):
            r = run_client(["localhost:%d" % port, "hi"])
        self.assert_ok(r, b"hi")

    def test_tcp_scheme_prefix_is_accepted(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["tcp://" + srv.addr, "hi"])
        self.assert_ok(r, b"hi")

    def test_unix_socket_echo(self):
        with PyServer(echo_handler, unix_path=self.path("echo.sock")) as srv:
            r = run_client([srv.addr, "over unix"])
        self.assert_ok(r, b"over unix")

    @unittest.skipUnless(ipv6_loopback(), "no IPv6 loopback")
    def test_ipv6_bracketed_address(self):
        with PyServer(echo_handler, ipv6=True) as srv:
            r = run_client([srv.addr, "over v6"])
        self.assert_ok(r, b"over v6")

    def test_abstract_unix_socket(self):
        name = "\0skc-test-%d-%d" % (os.getpid(), threading.get_ident())
        with PyServer(echo_handler, unix_path=name) as srv:
            r = run_client([srv.addr, "abstract"])
        self.assert_ok(r, b"abstract")

    def test_timeout_zero_means_no_limit(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--timeout", "0", srv.addr, "patient"])
            self.assert_ok(r, b"patient")
            r = run_client(["-f", "len16", "-t", "0", srv.addr, "framed"])
            self.assert_ok(r, b"framed")

    def test_verbose_logs_connection_and_counts(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["-v", srv.addr, "hello"])
        self.assert_ok(r, b"hello")
        err = r.stderr.decode()
        self.assertIn("connected to " + srv.addr, err)
        self.assertIn("sent 5 bytes, received 5 bytes", err)

    def test_big_raw_messages_do_not_deadlock(self):
        # Raw MESSAGEs go through the pump: 15 x 100 KB echoed over a Unix
        # socket (small buffers) must not wedge on full buffers.
        msgs = [os.urandom(50000).hex() for _ in range(15)]
        with PyServer(echo_handler, unix_path=self.path("big.sock")) as srv:
            r = run_client([srv.addr] + msgs)
        self.assert_ok(r, "".join(msgs).encode())


class FramedTest(ClientTestCase):
    def test_len16_iso8583_record_hex(self):
        host = prefixed_handler(2, False, iso_response)
        with PyServer(host) as srv:
            r = run_client(["--frame", "len16", "--hex-input", "--hex",
                            srv.addr, ISO_0800_HEX])
        self.assert_ok(r)
        reply = iso_response(ISO_0800)
        self.assertEqual(r.stdout, hexdump_c(reply))
        self.assertEqual(
            r.stdout.decode().splitlines()[-1], "%08x" % len(reply))

    def test_len16_hex_dump_exact_text(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--frame", "len16", "--hex-input", "--hex",
                            srv.addr, ISO_0800_HEX])
        self.assert_ok(r)
        self.assertEqual(
            r.stdout.decode(),
            "00000000  08 00 82 20 00 00 00 00  00 00 04 00 00 00 00 00"
            "  |... ............|\n"
            "00000010  00 00 11 22 33 44 55" + " " * 30 + "|...\"3DU|\n"
            "00000017\n")

    def test_len16_two_records_lockstep(self):
        host = prefixed_handler(2, False, iso_response)
        with PyServer(host) as srv:
            r = run_client(["--frame", "len16", srv.addr, "0800A", "0800B"])
        self.assert_ok(r, b"0810A0810B")

    def test_len32_binary_frames(self):
        with PyServer(prefixed_handler(4, False, lambda p: p[::-1])) as srv:
            r = run_client(["--frame", "len32", "--hex-input", srv.addr,
                            "00 01 02 ff", "aa:bb"])
        self.assert_ok(r, bytes([0xff, 2, 1, 0, 0xbb, 0xaa]))

    def test_ascii4_frames(self):
        host = prefixed_handler(4, True, lambda p: p.upper())
        with PyServer(host) as srv:
            r = run_client(["--frame", "ascii4", srv.addr, "hello", "iso"])
        self.assert_ok(r, b"HELLOISO")

    def test_line_mode_prints_a_line_per_reply(self):
        with PyServer(line_upper_handler) as srv:
            r = run_client(["--frame", "line", srv.addr, "abc", "", "d e"])
        self.assert_ok(r, b"ABC\n\nD E\n")

    def test_zero_length_keepalive_frame(self):
        host = prefixed_handler(2, False, lambda p: p)
        with PyServer(host) as srv:
            r = run_client(["--frame", "len16", srv.addr, ""])
            self.assert_ok(r, b"")
            r = run_client(["--frame", "len16", "--hex", srv.addr, "", "A"])
            self.assert_ok(r, b"00000000\n" + hexdump_c(b"A"))

    def test_reply_over_max_frame_fails(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--frame", "len32", "--max-frame", "10", srv.addr,
                            "this reply is too long"])
        self.assert_fails(r, 1, "frame larger than the maximum frame size",
                          "--max-frame 10")

    def test_server_closing_early_fails(self):
        with PyServer(close_after_one_handler) as srv:
            r = run_client(["--frame", "len16", srv.addr, "one", "two"])
        self.assertEqual(r.stdout, b"one")
        self.assert_fails(r, 1, srv.addr)

    def test_no_reply_times_out(self):
        with PyServer(silent_handler) as srv:
            t0 = time.monotonic()
            r = run_client(["--frame", "len16", "--timeout", "0.3", srv.addr,
                            "hello"])
            elapsed = time.monotonic() - t0
        self.assert_fails(r, 1, "timed out", srv.addr)
        self.assertLess(elapsed, 5.0)

    @needs("socat")
    def test_len16_through_socat(self):
        with Socat() as s:
            r = run_client(["--frame", "len16", "--hex-input", s.addr,
                            ISO_0800_HEX, ""])
        self.assert_ok(r, ISO_0800)

    def test_stdin_lines_become_frames(self):
        host = prefixed_handler(2, False, iso_response)
        with PyServer(host) as srv:
            r = run_client(["--frame", "len16", "--hex-input", "--hex",
                            srv.addr, "-"],
                           input=(ISO_0800_HEX + "\r\n\n0800 ff\n").encode())
        self.assert_ok(r)
        want = (hexdump_c(iso_response(ISO_0800)) + b"00000000\n"
                + hexdump_c(b"\x08\x00\xff"))
        self.assertEqual(r.stdout, want)

    def test_stdin_line_mode(self):
        with PyServer(line_upper_handler) as srv:
            r = run_client(["--frame", "line", srv.addr],
                           input=b"one\ntwo\r\nlast without newline")
        self.assert_ok(r, b"ONE\nTWO\nLAST WITHOUT NEWLINE\n")

    def test_file_is_one_len32_frame(self):
        path, digest = self.random_file(300000)
        with PyServer(prefixed_handler(4, False, lambda p: p)) as srv:
            r = run_client(["--frame", "len32", "--max-frame", "1M",
                            "--file", path, srv.addr])
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), digest)

    def test_file_too_big_for_len16(self):
        path, _ = self.random_file(70000)
        with PyServer(echo_handler) as srv:
            r = run_client(["--frame", "len16", "--file", path, srv.addr])
        self.assert_fails(r, 1, "65535")


class StreamTest(ClientTestCase):
    def test_stdin_dash(self):
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr, "-"], input=b"from stdin\n\x00\xff")
        self.assert_ok(r, b"from stdin\n\x00\xff")

    def test_file_dash_is_stdin(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--file", "-", srv.addr], input=b"dash file")
        self.assert_ok(r, b"dash file")

    def test_stdin_without_message(self):
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr], input=b"no message, not a tty")
        self.assert_ok(r, b"no message, not a tty")

    def test_empty_stdin(self):
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr], input=b"")
        self.assert_ok(r, b"")

    def test_file_20mib_python_echo(self):
        path, digest = self.random_file(20 << 20)
        with PyServer(echo_handler) as srv:
            r = run_client(["--file", path, srv.addr], timeout=60)
        self.assert_ok(r)
        self.assertEqual(len(r.stdout), 20 << 20)
        self.assertEqual(sha256(r.stdout), digest)

    @needs("socat")
    def test_file_20mib_socat_echo(self):
        path, digest = self.random_file(20 << 20)
        with Socat() as s:
            r = run_client(["--file", path, s.addr], timeout=60)
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), digest)

    def test_stdin_pipe_20mib(self):
        data = os.urandom(20 << 20)
        with PyServer(echo_handler) as srv:
            r = run_client([srv.addr, "-"], input=data, timeout=60)
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), sha256(data))

    def test_stdin_redirected_from_file(self):
        path, digest = self.random_file(5 << 20)
        with PyServer(echo_handler, unix_path=self.path("f.sock")) as srv:
            with open(path, "rb") as f:
                r = subprocess.run([CLIENT, srv.addr], stdin=f,
                                   stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, timeout=60)
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), digest)

    def test_slow_stdout_reader_bounded(self):
        # A reader that takes its time must slow the transfer down, not
        # make the client buffer the whole echo.
        data = os.urandom(8 << 20)
        with PyServer(echo_handler) as srv:
            p = subprocess.Popen([CLIENT, srv.addr, "-"],
                                 stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            feeder = threading.Thread(
                target=lambda: (p.stdin.write(data), p.stdin.close()),
                daemon=True)
            feeder.start()
            got = bytearray()
            max_rss = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                chunk = p.stdout.read1(4096)
                if not chunk:
                    break
                got += chunk
                if len(got) % (256 << 10) < 4096:
                    max_rss = max(max_rss, rss_kib(p.pid))
            p.wait(DEADLINE)
            feeder.join(DEADLINE)
            err = p.stderr.read()
            p.stdout.close()
            p.stderr.close()
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(sha256(bytes(got)), sha256(data))
        if not sanitized():
            self.assertLess(max_rss, 6 * 1024,
                            "client RSS grew to %d KiB" % max_rss)

    def test_hex_output_matches_hexdump_format(self):
        data = bytes(range(256)) * 3 + b"tail"
        with PyServer(echo_handler) as srv:
            r = run_client(["--hex", srv.addr, "-"], input=data)
        self.assert_ok(r, hexdump_c(data))

    @needs("hexdump")
    def test_hex_output_equals_real_hexdump(self):
        path, _ = self.random_file(100003)
        with PyServer(echo_handler) as srv:
            r = run_client(["--hex", "--file", path, srv.addr])
        self.assert_ok(r)
        ref = subprocess.run(["hexdump", "-C", "-v", path],
                             stdout=subprocess.PIPE, timeout=DEADLINE)
        self.assertEqual(r.stdout, ref.stdout)

    def test_hex_input_stream(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--hex-input", srv.addr, "-"],
                           input=b"48 65 6c\n6c 6f\n")
        self.assert_ok(r, b"Hello")

    def test_server_silent_after_eof_times_out(self):
        with PyServer(mute_after_eof_handler) as srv:
            r = run_client(["--timeout", "0.3", srv.addr, "-"],
                           input=b"data")
        self.assert_fails(r, 1, "timed out", srv.addr)

    def test_missing_file(self):
        with PyServer(echo_handler) as srv:
            r = run_client(["--file", self.path("nope"), srv.addr])
        self.assert_fails(r, 1, "cannot open", "No such file")


def rss_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class InteractiveTest(ClientTestCase):
    def run_pty_session(self, server_addr, extra=()):
        master, slave = pty.openpty()
        p = subprocess.Popen([CLIENT] + list(extra) + [server_addr],
                             stdin=slave, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        os.close(slave)
        self.addCleanup(os.close, master)
        return p, master

    def read_until(self, fd, want, deadline):
        got = b""
        while want not in got:
            left = deadline - time.monotonic()
            self.assertGreater(left, 0, "timed out; got %r" % got)
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                self.assertTrue(chunk, "stdout closed; got %r" % got)
                got += chunk
        return got

    def test_interactive_pty_echo_and_ctrl_d(self):
        with PyServer(echo_handler) as srv:
            p, master = self.run_pty_session(srv.addr)
            try:
                deadline = time.monotonic() + DEADLINE
                os.write(master, b"hello there\n")
                got = self.read_until(p.stdout.fileno(), b"hello there\n",
                                      deadline)
                self.assertEqual(got, b"hello there\n")
                self.assertFalse(srv.eof_seen.is_set())
                os.write(master, b"second line\n")
                self.read_until(p.stdout.fileno(), b"second line\n", deadline)
                # Ctrl-D at the start of a line: end of input. The client
                # half-closes, the echo server closes, the client exits 0.
                os.write(master, b"\x04")
                self.assertEqual(p.wait(DEADLINE), 0, p.stderr.read())
                self.assertTrue(srv.eof_seen.is_set())
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()
                p.stderr.close()

    def test_interactive_server_closes_first(self):
        with PyServer(close_after_one_handler) as srv:
            p, master = self.run_pty_session(srv.addr,
                                             ["--frame", "len16"])
            try:
                os.write(master, b"only one\n")
                self.assertEqual(p.wait(DEADLINE), 0, p.stderr.read())
                self.assertEqual(p.stdout.read(), b"only one")
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
                p.stdout.close()
                p.stderr.close()


class UdpTest(ClientTestCase):
    def test_udp_echo_messages(self):
        with UdpServer("echo") as srv:
            r = run_client(["--udp", srv.addr, "ping", "", "pong"])
        self.assert_ok(r, b"pingpong")
        self.assertEqual(srv.seen, [b"ping", b"", b"pong"])

    def test_udp_scheme_and_hex(self):
        with UdpServer("echo") as srv:
            r = run_client(["--hex", "--hex-input", "udp://" + srv.addr,
                            ISO_0800_HEX])
        self.assert_ok(r, hexdump_c(ISO_0800))

    def test_udp_retries_after_a_drop(self):
        with UdpServer("drop-first") as srv:
            # The first try is dropped for sure and waits out the whole
            # timeout; the second must be answered within it even under
            # sanitizers, or a third try would be sent.
            r = run_client(["--udp", "--timeout", "2", "--retries", "3",
                            "-v", srv.addr, "again"])
        self.assert_ok(r, b"again")
        self.assertEqual(srv.seen, [b"again", b"again"])
        self.assertIn(b"sending it again", r.stderr)

    def test_udp_no_reply_exits_1(self):
        with UdpServer("silent") as srv:
            t0 = time.monotonic()
            r = run_client(["--udp", "--timeout", "0.2", "--retries", "2",
                            srv.addr, "anyone?"])
            elapsed = time.monotonic() - t0
        # The with-block's end counted the tries the thread had not read.
        self.assert_fails(r, 1, "no reply from %s after 3 tries" % srv.addr)
        self.assertEqual(len(srv.seen), 3)
        self.assertGreaterEqual(elapsed, 0.6)

    def test_udp_port_unreachable(self):
        # A port this test holds, with a socket connected elsewhere: the
        # kernel answers datagrams from anyone else with ICMP port
        # unreachable, and no other test can bind the port meanwhile (a
        # port freed and reused could answer with another test's reply).
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as hold:
            hold.bind(("127.0.0.1", 0))
            hold.connect(("127.0.0.1", 9))
            port = hold.getsockname()[1]
            r = run_client(["--udp", "--timeout", "10",
                            "127.0.0.1:%d" % port, "x"])
        self.assert_fails(r, 1, "Connection refused")

    def test_udp_stdin_lines(self):
        with UdpServer("echo") as srv:
            r = run_client(["--udp", srv.addr], input=b"a\nbb\nlast")
        self.assert_ok(r, b"a\nbb\nlast")
        self.assertEqual(srv.seen, [b"a\n", b"bb\n", b"last"])

    def test_udp_file_is_one_datagram(self):
        path, digest = self.random_file(60000)
        with UdpServer("echo") as srv:
            r = run_client(["--udp", "--file", path, srv.addr])
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), digest)
        self.assertEqual(len(srv.seen), 1)

    def test_udp_unix_datagram(self):
        with UdpServer("echo", unix_path=self.path("u.sock")) as srv:
            r = run_client(["--udp", srv.addr, "unix dgram"])
        self.assert_ok(r, b"unix dgram")

    def test_udp_datagram_too_big(self):
        r = run_client(["--udp", "127.0.0.1:9", "x" * 65508])
        self.assert_fails(r, 2, "65507")


class ExitCodeTest(ClientTestCase):
    def test_refused_exits_1_one_line(self):
        with refusing_port() as port:
            r = run_client(["127.0.0.1:%d" % port, "hi"])
        line = self.assert_fails(r, 1)
        self.assertEqual(line, "sockit-client: connect to 127.0.0.1:%d: "
                               "Connection refused" % port)

    def test_refused_quiet_still_one_line(self):
        with refusing_port() as port:
            r = run_client(["-q", "127.0.0.1:%d" % port, "hi"])
        self.assert_fails(r, 1, "Connection refused")

    def test_dns_failure_exits_1(self):
        r = run_client(["nosuch.invalid:80", "hi"])
        self.assert_fails(r, 1, "cannot resolve nosuch.invalid: ")

    def test_unix_path_missing(self):
        r = run_client(["unix:" + self.path("none.sock"), "hi"])
        self.assert_fails(r, 1, "connect to unix:", "No such file")

    def test_connect_timeout_full_backlog(self):
        # A listener that never accepts and whose queue is full drops new
        # SYNs, so the connect can only time out.
        lst = socket.socket()
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        addr = lst.getsockname()
        fillers = []
        try:
            for _ in range(4):
                f = socket.socket()
                f.setblocking(False)
                f.connect_ex(addr)
                fillers.append(f)
            t0 = time.monotonic()
            r = run_client(["--timeout", "0.5",
                            "127.0.0.1:%d" % addr[1], "hi"])
            elapsed = time.monotonic() - t0
        finally:
            for f in fillers:
                f.close()
            lst.close()
        self.assert_fails(r, 1, "connect to 127.0.0.1:%d" % addr[1],
                          "timed out")
        self.assertLess(elapsed, 5.0)

    def test_usage_errors_exit_2(self):
        cases = [
            ([], "missing ADDR"),
            (["--frame", "bogus", "127.0.0.1:1"], "--frame"),
            (["--timeout", "soon", "127.0.0.1:1"], "--timeout"),
            (["--timeout"], "needs a value"),
            (["--max-frame", "-1", "127.0.0.1:1"], "--max-frame"),
            (["--retries", "x", "127.0.0.1:1"], "--retries"),
            (["--nope", "127.0.0.1:1"], "unknown option '--nope'"),
            (["-Z", "127.0.0.1:1"], "unknown option '-Z'"),
            (["no-port", "x"], "invalid address 'no-port'"),
            (["127.0.0.1:99999", "x"], "invalid address"),
            (["[::1:80", "x"], "invalid address"),
            (["--file", "/etc/hostname", "127.0.0.1:1", "msg"], "--file"),
            (["127.0.0.1:1", "-", "msg"], "'-'"),
            (["--hex-input", "127.0.0.1:1", "0g"], "MESSAGE 1 is not hex"),
            (["--hex-input", "127.0.0.1:1", "abc"], "odd number"),
            (["--frame", "len16", "127.0.0.1:1", "x" * 65536], "65535"),
            (["--frame", "ascii4", "127.0.0.1:1", "x" * 10000], "9999"),
            (["--frame", "line", "127.0.0.1:1", "a\nb"], "newline"),
            (["--udp", "--frame", "len16", "127.0.0.1:1", "x"], "--udp"),
            (["--frame", "len16", "--hex-input", "--file", "/etc/hostname",
              "127.0.0.1:1"], "--hex-input"),
        ]
        for args, needle in cases:
            with self.subTest(args=args[:4]):
                r = run_client(args)
                self.assert_fails(r, 2, needle)
                self.assertEqual(r.stdout, b"")

    def test_help_and_version(self):
        r = run_client(["--help"])
        self.assert_ok(r)
        self.assertIn(b"Usage: sockit-client", r.stdout)
        for opt in (b"--udp", b"--frame", b"--max-frame", b"--hex",
                    b"--hex-input", b"--file", b"--timeout", b"--retries",
                    b"--quiet", b"--verbose"):
            self.assertIn(opt, r.stdout)
        r = run_client(["--version"])
        self.assert_ok(r)
        self.assertRegex(r.stdout.decode(), r"^sockit-client \d+\.\d+\.\d+")

    def test_stdout_closed_early(self):
        # Nobody reads our stdout any more: the client ends quietly, as cat
        # does in `... | head`: killed by SIGPIPE, nothing on stderr.
        data = os.urandom(4 << 20)
        with PyServer(echo_handler) as srv:
            p = subprocess.Popen([CLIENT, srv.addr, "-"],
                                 stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            p.stdout.close()
            try:
                p.stdin.write(data)
                p.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                p.stdin.close()
            except BrokenPipeError:
                pass
            rc = p.wait(DEADLINE)
            err = p.stderr.read().decode()
            p.stderr.close()
        self.assertEqual(rc, -signal.SIGPIPE, err)
        self.assertEqual(err, "")


@needs_server
class AgainstServerTest(ClientTestCase):
    def test_sockit_server_json_echo(self):
        with Server(["-l", "127.0.0.1:0"]) as s:
            r = run_client([s.tcp, JSON.decode()])
        self.assert_ok(r, JSON)

    def test_sockit_server_len16_iso(self):
        with Server(["-l", "127.0.0.1:0", "--frame", "len16"]) as s:
            r = run_client(["--frame", "len16", "--hex-input", "--hex", s.tcp,
                            ISO_0800_HEX, ""])
        self.assert_ok(r, hexdump_c(ISO_0800) + b"00000000\n")

    def test_sockit_server_ascii4_and_line(self):
        with Server(["-l", "127.0.0.1:0", "--frame", "ascii4"]) as s:
            r = run_client(["--frame", "ascii4", s.tcp, "0800", "abc"])
            self.assert_ok(r, b"0800abc")
        with Server(["-l", "127.0.0.1:0", "--frame", "line"]) as s:
            r = run_client(["--frame", "line", s.tcp],
                           input=b"x\ny\r\n\nz")
            self.assert_ok(r, b"x\ny\n\nz\n")

    def test_sockit_server_file_20mib(self):
        path, digest = self.random_file(20 << 20)
        with Server(["-l", "127.0.0.1:0"]) as s:
            r = run_client(["--file", path, s.tcp], timeout=60)
        self.assert_ok(r)
        self.assertEqual(sha256(r.stdout), digest)

    def test_sockit_server_unix(self):
        sock = self.path("srv.sock")
        with Server(["-l", "unix:" + sock]) as s:
            r = run_client(["unix:" + sock, "via unix"])
            self.assert_ok(r, b"via unix")
            # The readiness line's URL form, pasted as it is.
            url = "unix://" + s.addrs["unix"][0]
            r = run_client(["-f", "line", url, "pasted"])
            self.assert_ok(r, b"pasted\n")

    def test_sockit_server_udp(self):
        with Server(["-u", "-l", "127.0.0.1:0"]) as s:
            addr = s.addrs["udp"][0]
            r = run_client(["--udp", addr, "dgram one", "two"])
            self.assert_ok(r, b"dgram onetwo")
            # The readiness line's udp:// URL selects UDP by itself.
            r = run_client(["udp://" + addr], input=b"line a\nline b\n")
            self.assert_ok(r, b"line a\nline b\n")

    def test_sockit_server_max_frame_closes(self):
        with Server(["-l", "127.0.0.1:0", "--frame", "len16",
                     "--max-frame", "8"]) as s:
            r = run_client(["--frame", "len16", s.tcp, "far too long"])
        self.assert_fails(r, 1, s.tcp)


if __name__ == "__main__":
    unittest.main()
