"""End-to-end tests of the files mode against hostile clients (issue 10,
items 3, 5 and 8): descriptors per connection stay bounded however many
GETs a client pipelines, an upload has no reachable name until it is
complete, leftovers of a crashed server are cleaned at startup, and a file
that shrinks while it is sent ends the connection at once.

Every server listens on port 0, every wait has a deadline, and every load
loop is bounded in count and time.
"""
import os
import re
import select
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from skutil import Server, connect, recv_exact

BIG = 16 << 20  # larger than any loopback socket buffer


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def fd_targets(pid):
    out = []
    d = "/proc/%d/fd" % pid
    for name in os.listdir(d):
        try:
            out.append(os.readlink(os.path.join(d, name)))
        except FileNotFoundError:
            pass  # closed meanwhile
    return out


def wait_until(pred, what, timeout=10.0):
    """Polls a condition on another process's state (its descriptor table)
    until it holds; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.02)


def make_file(path, size):
    with open(path, "wb") as f:
        f.truncate(size)


def small_rcvbuf_socket(addr, timeout):
    """A client that (almost) never takes what the server sends."""
    host, _, port = addr.rpartition(":")
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(timeout)
    s.connect((host, int(port)))
    return s


class FilesHardening(unittest.TestCase):

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="sk-files-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def start(self, root, *extra):
        srv = Server(["--mode", "files", "--root", root, "-l", "127.0.0.1:0",
                      "-w", "1"] + list(extra))
        self.addCleanup(srv.stop)
        return srv

    def sock(self, s):
        self.addCleanup(s.close)
        return s

    def get(self, srv, name, timeout=20.0):
        """One GET on a fresh connection; returns (reply line, body)."""
        s = self.sock(connect(srv.tcp, timeout))
        f = s.makefile("rb")
        s.sendall(b"GET " + name + b"\n")
        line = f.readline()
        body = b""
        m = re.match(rb"OK (\d+)\n$", line)
        if m:
            body = f.read(int(m.group(1)))
        f.close()
        s.close()
        return line, body

    def put(self, srv, name, data, timeout=20.0):
        s = self.sock(connect(srv.tcp, timeout))
        f = s.makefile("rb")
        s.sendall(b"PUT %s %d\n" % (name, len(data)) + data)
        line = f.readline()
        f.close()
        s.close()
        return line

    def test_pipelined_gets_hold_one_file_per_connection(self):
        """Item 3: a client pipelining thousands of GETs of a big file and
        never reading holds one open file, not one per request."""
        root = self.tmpdir()
        make_file(os.path.join(root, "a"), BIG)
        with open(os.path.join(root, "b"), "wb") as f:
            f.write(b"small file\n")
        srv = self.start(root)
        pid = srv.proc.pid
        base = fd_count(pid)
        nclients, nreq = 4, 2000
        for i in range(nclients):
            s = self.sock(small_rcvbuf_socket(srv.tcp, 10))
            s.sendall(b"GET a\n" * nreq)
            port = s.getsockname()[1]
            srv.wait_log(re.compile(r"127\.0\.0\.1:%d: GET a: OK %d bytes"
                                    % (port, BIG)))
        # Answered on the same (only) worker after every request above was
        # read: another client is still served.
        self.assertEqual(self.get(srv, b"b"), (b"OK 11\n", b"small file\n"))
        # Per pipelining connection: its socket and one open file (the
        # slack covers descriptors the server opens for itself after its
        # readiness line: the main thread's signal loop, for one).
        self.assertLessEqual(fd_count(pid), base + 2 * nclients + 8)
        gets = [l for l in srv.log if ": GET a: OK" in l]
        self.assertEqual(len(gets), nclients, "\n".join(srv.log[-20:]))

    def test_pipelined_replies_are_complete_and_in_order(self):
        """Item 3: replies never interleave: GET, PUT, GET pipelined in one
        write come back whole and in order, over plain TCP, to a reader
        slower than the server (the file fills the socket many times)."""
        root = self.tmpdir()
        data = os.urandom(BIG)
        with open(os.path.join(root, "a"), "wb") as f:
            f.write(data)
        srv = self.start(root)
        s = self.sock(small_rcvbuf_socket(srv.tcp, 20))
        f = s.makefile("rb")
        # Alone: nothing behind it ever wakes the connection up again.
        s.sendall(b"GET a\n")
        self.assertEqual(f.readline(), b"OK %d\n" % len(data))
        self.assertEqual(f.read(len(data)), data)
        s.sendall(b"GET a\nPUT a 3\nxyzGET a\nGET missing\n")
        self.assertEqual(f.readline(), b"OK %d\n" % len(data))
        self.assertEqual(f.read(len(data)), data)
        self.assertEqual(f.readline(), b"OK 3\n")
        self.assertEqual(f.readline(), b"OK 3\n")
        self.assertEqual(f.read(3), b"xyz")
        self.assertTrue(f.readline().startswith(b"ERR no such file"))
        f.close()

    def test_partial_upload_is_unreachable(self):
        """Item 5: while an upload runs, nothing in the served tree reaches
        it: no new entry, and the old temporary names are refused."""
        root = self.tmpdir()
        with open(os.path.join(root, "keep"), "wb") as f:
            f.write(b"keep")
        srv = self.start(root)
        pid = srv.proc.pid
        before = sorted(os.listdir(root))
        data = os.urandom(1 << 20)
        half = len(data) // 2
        victim = self.sock(connect(srv.tcp, 20))
        victim.sendall(b"PUT up.bin %d\n" % len(data) + data[:half])
        # The server has the upload's file open once a descriptor of its
        # points below the root (the root itself is open from the start).
        real = os.path.realpath(root) + "/"
        wait_until(lambda: any(t.startswith(real) for t in fd_targets(pid)),
                   "the server never opened the upload's file")
        during = sorted(os.listdir(root))
        self.assertEqual(during, before)
        # Names the server used to give partial uploads, and any new one.
        guesses = [b".sockit-put.%d.%d" % (pid, n) for n in range(3)]
        guesses += [n.encode() for n in set(during) - set(before)]
        for name in guesses:
            with self.subTest(name=name):
                line, _ = self.get(srv, name)
                self.assertTrue(line.startswith(b"ERR "), line)
                line = self.put(srv, name, b"EVIL!")
                self.assertTrue(line.startswith(b"ERR "), line)
        self.assertEqual(sorted(os.listdir(root)), before)
        victim.sendall(data[half:])
        f = victim.makefile("rb")
        self.assertEqual(f.readline(), b"OK %d\n" % len(data))
        f.close()
        with open(os.path.join(root, "up.bin"), "rb") as fh:
            self.assertEqual(fh.read(), data)
        self.assertEqual(sorted(os.listdir(root)), sorted(before + ["up.bin"]))
        # Replacing an existing file is atomic too and leaves nothing else.
        self.assertEqual(self.put(srv, b"up.bin", b"new"), b"OK 3\n")
        with open(os.path.join(root, "up.bin"), "rb") as fh:
            self.assertEqual(fh.read(), b"new")
        self.assertEqual(sorted(os.listdir(root)), sorted(before + ["up.bin"]))

    def test_max_conns_leaves_room_for_every_upload(self):
        """Item 3: --max-conns is fitted under the open file limit counting
        three descriptors per files connection (socket, file, directory):
        that many uploads at once all succeed."""
        import resource

        def low_limit():
            resource.setrlimit(resource.RLIMIT_NOFILE, (200, 200))

        root = self.tmpdir()
        srv = Server(["--mode", "files", "--root", root, "-l", "127.0.0.1:0",
                      "-w", "1", "--max-conns", "1000"], preexec=low_limit)
        self.addCleanup(srv.stop)
        line = srv.wait_log("--max-conns lowered")
        n = int(re.search(r"lowered from 1000 to (\d+)", line).group(1))
        self.assertGreater(n, 10, line)
        pid = srv.proc.pid
        base = fd_count(pid)
        socks = []
        for i in range(n):
            s = self.sock(connect(srv.tcp, 20))
            s.sendall(b"PUT f%d 4\nab" % i)
            socks.append(s)
        # Every upload is in progress (its three descriptors open), unless
        # the server already answered one (an error) or closed one.
        wait_until(lambda: fd_count(pid) >= base + 3 * n or
                   select.select(socks, [], [], 0)[0],
                   "the uploads never all started")
        for i, s in enumerate(socks):
            s.sendall(b"cd")
        for i, s in enumerate(socks):
            self.assertEqual(recv_exact(s, 5), b"OK 4\n", "upload %d" % i)
        self.assertEqual(len(os.listdir(root)), n)

    def test_crash_leftovers_are_removed_at_startup(self):
        """Item 5: temporary files a dead server left behind go at startup;
        those of a live process (another server on the same tree) stay."""
        root = self.tmpdir()
        os.makedirs(os.path.join(root, "sub", "deeper"))
        p = subprocess.Popen(["true"])
        p.wait()
        dead, live = p.pid, os.getpid()
        planted = {
            os.path.join(root, ".sockit-put.%d.0" % dead): False,
            os.path.join(root, "sub", "deeper", ".sockit-put.%d.ab12" % dead):
                False,
            os.path.join(root, ".sockit-put.%d.1" % live): True,
            os.path.join(root, "sub", ".sockit-put.x"): True,  # not ours
        }
        for path in planted:
            with open(path, "wb") as f:
                f.write(b"partial")
        srv = self.start(root)
        for path, stays in planted.items():
            with self.subTest(path=path):
                self.assertEqual(os.path.exists(path), stays)
        srv.wait_log("removed 2 unfinished uploads")

    def test_file_shrinking_during_plain_get_cuts_the_connection(self):
        """Item 8: the promised size can no longer be sent: the connection
        ends at once, with one log line, instead of at the idle timeout."""
        root = self.tmpdir()
        path = os.path.join(root, "big")
        make_file(path, 4 * BIG)
        srv = self.start(root, "--idle-timeout", "60")
        s = self.sock(small_rcvbuf_socket(srv.tcp, 40))
        port = s.getsockname()[1]
        s.sendall(b"GET big\n")
        srv.wait_log("127.0.0.1:%d: GET big: OK" % port)
        os.truncate(path, 0)
        start = time.monotonic()
        got = 0
        try:
            while True:
                b = s.recv(1 << 20)
                if not b:
                    break
                got += len(b)
        except ConnectionResetError:
            pass
        elapsed = time.monotonic() - start
        self.assertLess(got, 4 * BIG)
        self.assertLess(elapsed, 30.0)
        srv.wait_log("connection from 127.0.0.1:%d closed" % port)
        shrank = [l for l in srv.log if "the file shrank" in l]
        self.assertEqual(len(shrank), 1, "\n".join(srv.log))
        self.assertIn("127.0.0.1:%d: GET big: the file shrank" % port,
                      shrank[0])


if __name__ == "__main__":
    unittest.main()
