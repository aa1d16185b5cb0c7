"""End-to-end tests of sockit-server's log: one line per connection opened
and closed by default (per-message lines only with -v), RFC 3339 time
stamps, <N> priorities under journald (JOURNAL_STREAM), --log-format json
(valid JSON whatever a peer sends) and --log-file (with its reopening).

Every server listens on port 0 or on a Unix socket in a fresh temporary
directory; every wait has a deadline.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from skutil import SERVER, Server, connect, recv_exact, wait_file_contains

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d\d:\d\d)"
STAMP_RE = re.compile("^" + STAMP + " sockit-server: ")
SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "programs", "sockit-server")

CONN_KEYS = {"ts", "level", "msg", "event", "peer", "mode", "transport"}
CLOSE_KEYS = CONN_KEYS | {"duration_ms", "bytes_in", "bytes_out", "msgs_in",
                          "msgs_out", "reason"}


def echo(addr, frames):
    """One connection: sends each frame, reads it back, closes. Returns the
    local port."""
    with connect(addr) as s:
        port = s.getsockname()[1]
        for f in frames:
            s.sendall(f)
            assert recv_exact(s, len(f)) == f
    return port


def wait_count(srv, needle, n, timeout=10):
    deadline = time.monotonic() + timeout
    while sum(needle in l for l in srv.log) < n:
        srv.next_log_line(max(0.01, deadline - time.monotonic()))


class TextLog(unittest.TestCase):
    def test_default_level_logs_one_open_and_one_close_per_connection(self):
        with Server(["-l", "127.0.0.1:0", "-f", "line"]) as srv:
            ports = [echo(srv.tcp, [b"0123456789\n"] * 5) for _ in range(3)]
            wait_count(srv, " closed", 3)
            srv.drain_log(0.3)
            for l in srv.log:
                self.assertRegex(l, STAMP_RE)
                self.assertNotIn("recv ", l)
                self.assertNotIn("sent ", l)
            for p in ports:
                opened = [l for l in srv.log
                          if "connection from 127.0.0.1:%d on " % p in l]
                closed = [l for l in srv.log
                          if "connection from 127.0.0.1:%d closed" % p in l]
                self.assertEqual(len(opened), 1, srv.log)
                self.assertEqual(len(closed), 1, srv.log)
                self.assertRegex(closed[0],
                                 r"closed \(after \d+\.\d{3} s; in 55 bytes, "
                                 r"5 msgs; out 55 bytes, 5 msgs\)$")
            self.assertEqual(len(srv.log), 1 + 6, srv.log)

    def test_verbose_adds_per_message_lines(self):
        with Server(["-v", "-l", "127.0.0.1:0", "-f", "line"]) as srv:
            port = echo(srv.tcp, [b"abc\n", b"defg\n"])
            srv.wait_log("connection from 127.0.0.1:%d closed" % port)
            srv.wait_log("recv 3 bytes from 127.0.0.1:%d" % port)
            srv.wait_log("recv 4 bytes from 127.0.0.1:%d" % port)
            srv.wait_log("sent 4 bytes to 127.0.0.1:%d" % port)

    def test_journal_stream_gives_priority_prefixes(self):
        def as_journal():
            st = os.fstat(2)
            os.environ["JOURNAL_STREAM"] = "%d:%d" % (st.st_dev, st.st_ino)
        with Server(["-l", "127.0.0.1:0", "-f", "line"],
                    preexec=as_journal) as srv:
            port = echo(srv.tcp, [b"x\n"])
            srv.wait_log("connection from 127.0.0.1:%d closed" % port)
            self.assertTrue(srv.log[0].startswith("<6>listening on "),
                            srv.log)
            for l in srv.log:
                self.assertRegex(l, r"^<[3467]>")
                self.assertNotRegex(l, STAMP)
            with connect(srv.tcp) as s:
                s.sendall(b"y" * 2000000)  # over --max-frame: an error
                srv.wait_log(re.compile(r"^<3>error: .*--max-frame"))

    def test_journal_stream_of_another_file_is_ignored(self):
        # stderr was redirected since systemd set it: not the journal.
        env = dict(os.environ, JOURNAL_STREAM="1:1")
        with Server(["-l", "127.0.0.1:0"], env=env) as srv:
            self.assertRegex(srv.log[0], STAMP_RE)


class JsonLog(unittest.TestCase):
    def lines(self, srv):
        out = []
        for l in srv.log:
            obj = json.loads(l)  # every line is one JSON object
            self.assertIsInstance(obj, dict)
            for k in ("ts", "level", "msg"):
                self.assertIn(k, obj)
            self.assertRegex(obj["ts"], "^" + STAMP + "$")
            out.append(obj)
        return out

    def test_json_lines_have_the_documented_keys(self):
        with Server(["--log-format", "json", "-l", "127.0.0.1:0", "-f",
                     "line"]) as srv:
            port = echo(srv.tcp, [b"0123456789\n"] * 5)
            srv.wait_log('"event":"close"')
            objs = self.lines(srv)
            conn = [o for o in objs if o.get("event") in ("open", "close")]
            self.assertEqual([o["event"] for o in conn], ["open", "close"])
            for o in conn:
                self.assertEqual(o["peer"], "127.0.0.1:%d" % port)
                self.assertTrue(CONN_KEYS <= set(o), o)
                self.assertEqual((o["mode"], o["transport"]), ("echo", "tcp"))
            close = conn[1]
            self.assertTrue(CLOSE_KEYS <= set(close), close)
            self.assertEqual((close["bytes_in"], close["msgs_in"],
                              close["bytes_out"], close["msgs_out"],
                              close["reason"]), (55, 5, 55, 5, "done"))
            self.assertIsInstance(close["duration_ms"], int)
            self.assertEqual(objs[0]["level"], "info")
            self.assertIn("listening on", objs[0]["msg"])

    def test_control_bytes_and_invalid_utf8_stay_valid_json(self):
        root = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, root)
        # A Unix socket path with a control byte and invalid UTF-8 names
        # both the listener and every peer of it.
        path = os.path.join(root.encode(), b"s\x01\xff\xc3(")
        with Server(["--log-format", "json", "--mode", "files", "--root",
                     root, "-l", b"unix:" + path]) as srv:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            self.addCleanup(s.close)
            s.connect(path)
            name = b"\x1b]0;x\x07\x01\"\\ caf\xc3\xa9 \xff\xfe \xed\xa0\x80"
            s.sendall(b"GET " + name + b"\n")
            self.assertTrue(s.makefile("rb").readline().startswith(b"ERR "))
            line = srv.wait_log("ERR bad file name")
            s.close()
            srv.wait_log('"event":"close"')
            objs = self.lines(srv)
            err = json.loads(line)["msg"]
            self.assertIn("\x1b]0;x\x07\x01\"\\ caf\u00e9 \u00ff\u00fe "
                          "\u00ed\u00a0\u0080: ERR", err)
            for l in srv.log:
                self.assertTrue(all(ord(c) >= 0x20 for c in l), repr(l))
            peers = [o["peer"] for o in objs if "peer" in o]
            self.assertTrue(peers)
            for p in peers:
                self.assertIn("s\u0001\u00ff\u00c3(", p)


class LogFile(unittest.TestCase):
    def test_log_file_gets_the_lines_and_is_reopened(self):
        d = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, d)
        log = os.path.join(d, "server.log")
        with open(log, "w") as f:
            f.write("an older line\n")  # appended to, not replaced
        # The readiness line goes to the file too: wait on the file.
        p = subprocess.Popen([SERVER, "--log-file", log, "-l", "127.0.0.1:0"],
                             stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.addCleanup(p.wait)
        self.addCleanup(p.kill)
        wait_file_contains(log, b"listening on", proc=p)
        text = open(log).read()
        self.assertTrue(text.startswith("an older line\n"), text)
        addr = re.search(r"tcp://(\S+)", text).group(1)
        port = echo(addr, [b"hello"])
        wait_file_contains(log, b"127.0.0.1:%d closed" % port, proc=p)
        for l in open(log).read().splitlines()[1:]:
            self.assertRegex(l, STAMP_RE)
        signals = os.path.join(SRC, "signals.c")
        if not (os.path.exists(signals) and
                "log_reopen" in open(signals).read()):
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            self.skipTest("no SIGHUP handler calls log_reopen() yet")
        os.rename(log, log + ".1")
        p.send_signal(signal.SIGHUP)
        # Lines after the reopen go to a new file at the old path (the
        # writer thread reopens it: traffic until a line lands there).
        deadline = time.monotonic() + 20
        while not (os.path.exists(log) and "closed" in open(log).read()):
            self.assertLess(time.monotonic(), deadline, "not reopened")
            echo(addr, [b"again"])
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(10), 0)
        self.assertIn("stopped", open(log).read())
        self.assertEqual(p.stderr.read(), b"")


if __name__ == "__main__":
    unittest.main()
