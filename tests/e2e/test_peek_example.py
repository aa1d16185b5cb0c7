"""examples/peek_tls_or_plain.c: one port serving TLS and plain text, told
apart by peeking at the first byte, against python's socket and ssl."""
import os
import select
import socket
import ssl
import subprocess
import time
import unittest

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("SK_BUILD_DIR", os.path.join(ROOT, "build"))
EXAMPLE = os.path.join(BUILD, "examples", "example_peek_tls_or_plain")


class PeekExample:
    """The example serving `count` connections on 127.0.0.1:0."""

    def __init__(self, count):
        self.proc = subprocess.Popen([EXAMPLE, "127.0.0.1:0", str(count)],
                                     stdin=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self.log = []
        self.tls = True
        line = self.wait_line("listening on ")
        host, port = line.split()[-1].rsplit(":", 1)
        self.addr = (host, int(port))
        self.tls = not any(l.startswith("no TLS") for l in self.log)

    def wait_line(self, prefix, timeout=20.0):
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        buf = b""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no %r line; log: %r" % (prefix, self.log))
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            ch = os.read(fd, 1)
            if not ch:
                raise EOFError("example exited; log: %r" % self.log)
            if ch != b"\n":
                buf += ch
                continue
            line = buf.decode(errors="replace")
            buf = b""
            self.log.append(line)
            if line.startswith(prefix):
                return line

    def finish(self):
        try:
            return self.proc.wait(20)
        finally:
            self.proc.kill()
            self.proc.wait()
            self.proc.stderr.close()


def read_all(sock):
    chunks = []
    while True:
        b = sock.recv(65536)
        if not b:
            return b"".join(chunks)
        chunks.append(b)


class PeekExampleTest(unittest.TestCase):
    def test_plain_then_tls_on_one_port(self):
        ex = PeekExample(3)
        try:
            # Plain text, even text that looks like a protocol.
            for msg in (b"hello\n", b"GET / HTTP/1.0\r\n\r\n"):
                with socket.create_connection(ex.addr, timeout=20) as s:
                    s.sendall(msg)
                    s.shutdown(socket.SHUT_WR)
                    self.assertEqual(read_all(s), b"plain\n" + msg)
                ex.wait_line("plain connection: done")
            if not ex.tls:
                self.skipTest("built without TLS")
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE  # the example's cert is ephemeral
            raw = socket.create_connection(ex.addr, timeout=20)
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
                msg = b"secret \x16 bytes\n" * 1000
                s.sendall(msg)
                want = b"tls\n" + msg
                got = b""
                while len(got) < len(want):
                    b = s.recv(65536)
                    if not b:
                        break
                    got += b
                self.assertEqual(got, want)
                s.unwrap()  # close_notify both ways
            ex.wait_line("tls connection: done")
            self.assertEqual(ex.finish(), 0)
        finally:
            ex.finish()


if __name__ == "__main__":
    unittest.main()
