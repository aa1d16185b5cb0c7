"""sockit-client: the upload progress line (only on a terminal unless forced,
never on stdout), --bench interval lines and its fast failure when nothing
can connect, and a closed stdout pipe that ends the client the way it ends
cat (killed by SIGPIPE, nothing on stderr)."""
import hashlib
import json
import os
import pty
import re
import select
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from skutil import CLIENT, Server, refusing_port, run_client

# Any redraw or final progress line: bytes and a rate.
RATE_RE = re.compile(rb"[\d.]+ (B|KiB|MiB|GiB)/s")
# --bench interval lines: "[  0.00-  0.20 s]  messages ..."
INTERVAL_RE = re.compile(r"^\[\s*[\d.]+-\s*[\d.]+ s\]")


def write_random(path, size):
    h = hashlib.sha256()
    with open(path, "wb") as f:
        left = size
        while left:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


class StdoutHasher(threading.Thread):
    """Reads a pipe to its end, hashing it (the data can be large)."""

    def __init__(self, pipe):
        super().__init__(daemon=True)
        self.pipe, self.h, self.n = pipe, hashlib.sha256(), 0
        self.go = threading.Event()

    def run(self):
        self.go.wait()
        while True:
            b = self.pipe.read(1 << 16)
            if not b:
                return
            self.h.update(b)
            self.n += len(b)


class PtyClient:
    """sockit-client with stderr on a pseudo-terminal (so isatty(2) is
    true) and stdout on a pipe."""

    def __init__(self, args, stdin=subprocess.DEVNULL):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([CLIENT] + list(args), stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        self.err = b""
        self.out = StdoutHasher(self.proc.stdout)
        self.out.start()

    def read_err_until(self, pred, timeout=30.0):
        """Collects what the client writes on the terminal until pred(text)
        holds or the terminal closes (EOF); returns whether pred held."""
        deadline = time.monotonic() + timeout
        while not pred(self.err):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("terminal output so far: %r" % self.err)
            r, _, _ = select.select([self.master], [], [], left)
            if not r:
                continue
            try:
                b = os.read(self.master, 4096)
            except OSError:  # EIO: the client closed its end
                return False
            if not b:
                return False
            self.err += b
        return True

    def finish(self, timeout=60.0):
        self.out.go.set()
        self.read_err_until(lambda _: False, timeout)
        rc = self.proc.wait(timeout)
        self.out.join(timeout)
        self.close()
        return rc

    def close(self):
        if self.master >= 0:
            os.close(self.master)
            self.master = -1
        self.proc.stdout.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
            self.out.go.set()
            self.out.join(10)
        if self.master >= 0:
            self.close()


class ProgressTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)

    def test_progress_line_on_terminal(self):
        # 64 MiB cannot all wait in socket buffers: while the test leaves
        # stdout unread, the echo upload stalls part-way, so a redrawn line
        # with the share done and the ETA must show before the end.
        path = os.path.join(self.tmp.name, "big")
        size = 64 << 20
        digest = write_random(path, size)
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            c = PtyClient(["--file", path, srv.tcp])
            self.addCleanup(c.kill)
            self.assertTrue(c.read_err_until(lambda t: b"ETA" in t),
                            c.err)
            rc = c.finish()
        self.assertEqual(rc, 0, c.err)
        # stdout is exactly the echo, nothing of the progress line in it.
        self.assertEqual(c.out.n, size)
        self.assertEqual(c.out.h.hexdigest(), digest)
        self.assertIn(b"\r", c.err)
        self.assertRegex(c.err, rb"sent [\d.]+ \w+ of 64\.0 MiB \(\d+%\)")
        self.assertRegex(c.err, RATE_RE)
        # Finished with the totals and a newline (the pty shows "\r\n").
        self.assertRegex(c.err, rb"sent 67108864 bytes \(64\.0 MiB\) in "
                                rb"[\d.]+ s, [\d.]+ \w+/s *\r?\n$")

    def test_progress_stdin_size_unknown(self):
        # A pipe on stdin has no size: bytes and rate, no ETA.
        data = os.urandom(300000)
        with Server(["-q", "-l", "127.0.0.1:0", "--mode", "discard"]) as srv:
            c = PtyClient([srv.tcp], stdin=subprocess.PIPE)
            self.addCleanup(c.kill)
            c.proc.stdin.write(data)
            c.proc.stdin.close()
            rc = c.finish()
        self.assertEqual(rc, 0, c.err)
        self.assertEqual(c.out.n, 0)
        self.assertIn(b"sent 300000 bytes", c.err)
        self.assertNotIn(b"ETA", c.err)

    def test_no_progress_when_stderr_not_terminal(self):
        path = os.path.join(self.tmp.name, "f")
        with open(path, "wb") as f:
            f.write(b"hello\n" * 1000)
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            r = run_client(["--file", path, srv.tcp])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"hello\n" * 1000)
        self.assertEqual(r.stderr, b"")

    def test_progress_forced_into_pipe(self):
        path = os.path.join(self.tmp.name, "f")
        with open(path, "wb") as f:
            f.write(b"x" * 100000)
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            r = run_client(["--progress", "--file", path, srv.tcp])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, b"x" * 100000)
        self.assertRegex(r.stderr, rb"^\rsent 100000 bytes \(97\.7 KiB\) in "
                                   rb"[\d.]+ s, [\d.]+ \w+/s\n$")

    def test_no_progress_option_under_pty(self):
        path = os.path.join(self.tmp.name, "f")
        with open(path, "wb") as f:
            f.write(b"y" * 100000)
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            c = PtyClient(["--no-progress", "--file", path, srv.tcp])
            self.addCleanup(c.kill)
            rc = c.finish()
        self.assertEqual(rc, 0, c.err)
        self.assertEqual(c.out.n, 100000)
        self.assertEqual(c.err, b"")

    def test_bench_interval_lines(self):
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            r = run_client(["--bench", srv.tcp, "--interval", "0.2",
                            "--duration", "1", "--warmup", "0"])
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        first_table = next(i for i, l in enumerate(lines)
                           if l.startswith("bench echo"))
        intervals = [l for l in lines[:first_table] if INTERVAL_RE.match(l)]
        # Five in theory; a loaded machine may merge or drop the last one.
        self.assertGreaterEqual(len(intervals), 3, r.stdout)
        self.assertEqual(len(intervals), first_table, r.stdout)
        self.assertIn("messages", intervals[0])

    def test_bench_interval_json(self):
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv:
            r = run_client(["--bench", srv.tcp, "--interval", "0.2",
                            "--duration", "1", "--warmup", "0", "--json"])
        self.assertEqual(r.returncode, 0, r.stderr)
        doc = json.loads(r.stdout.decode())  # the whole stdout is one object
        iv = doc["intervals"]
        self.assertGreaterEqual(len(iv), 3, iv)
        self.assertEqual(sum(i["messages"] for i in iv), doc["messages"])
        for a, b in zip(iv, iv[1:]):
            self.assertAlmostEqual(a["end"], b["start"], places=3)

    def test_bench_refused_fails_fast(self):
        with refusing_port() as port:
            addr = "127.0.0.1:%d" % port
            t0 = time.monotonic()
            r = run_client(["--bench", addr, "--conns", "4", "--warmup", "5",
                            "--duration", "20"])
            took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertEqual(r.stderr.decode(),
                         "sockit-client: cannot connect to %s: Connection "
                         "refused\n" % addr)
        self.assertEqual(r.stdout, b"")
        # Warm-up and duration would take 25 s.
        self.assertLess(took, 10)

    def test_bench_refused_connect_mode(self):
        with refusing_port() as port:
            addr = "127.0.0.1:%d" % port
            t0 = time.monotonic()
            r = run_client(["--bench", addr, "--bench-mode", "connect",
                            "--json", "--warmup", "5", "--duration", "20"])
            took = time.monotonic() - t0
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn(b"cannot connect to %s" % addr.encode(), r.stderr)
        self.assertEqual(len(r.stderr.splitlines()), 1, r.stderr)
        self.assertLess(took, 10)

    def test_closed_stdout_ends_quietly(self):
        path = os.path.join(self.tmp.name, "big")
        write_random(path, 16 << 20)
        with Server(["-q", "-l", "127.0.0.1:0"]) as srv, \
                open(path, "rb") as f:
            # sockit-client ADDR < big | head -c 10
            p = subprocess.Popen([CLIENT, srv.tcp], stdin=f,
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            try:
                head = p.stdout.read(10)
                p.stdout.close()
                err = p.stderr.read()
                p.stderr.close()
                rc = p.wait(30)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait()
        self.assertEqual(len(head), 10)
        self.assertEqual(err, b"")
        # Like cat: killed by SIGPIPE (141 in the shell).
        self.assertEqual(rc, -signal.SIGPIPE)


if __name__ == "__main__":
    unittest.main()
