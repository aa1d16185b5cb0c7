"""sockit-client's pump over TLS, which runs the same loop as plain TCP on
the library's non-blocking TLS steps (issue #12): the half-close is
close_notify then FIN with the replies still read afterwards, a whole-file
frame goes out header and file through the one send path, and a server
that stops reading for a while (full buffers, partial TLS writes) gets
every byte exactly once.

The peers are python's ssl module on kernel-chosen loopback ports, with a
self-signed certificate made in a temporary directory; every wait has a
deadline.
"""
import hashlib
import os
import random
import shutil
import ssl
import struct
import tempfile
import threading
import unittest

from skutil import needs, run_client, self_signed_cert, serve_one


@needs("openssl")
class TlsPump(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="sk-tlspump-")
        cls.cert, cls.key = self_signed_cert(cls.dir, "c")
        cls.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cls.ctx.load_cert_chain(cls.cert, cls.key)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir, ignore_errors=True)

    def serve(self, handle):
        """One TLS session: handle(ssl_socket) runs after the handshake;
        its result (or exception) is kept for the test."""
        result = {}

        def run(c):
            t = self.ctx.wrap_socket(c, server_side=True)
            try:
                result["value"] = handle(t)
            except Exception as e:  # reported by the test, not swallowed
                result["error"] = e
                raise

        port, th = serve_one(run)
        self.addCleanup(th.join, 30)
        return "127.0.0.1:%d" % port, th, result

    def finish(self, th, result):
        th.join(30)
        self.assertFalse(th.is_alive(), "the server thread did not end")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def test_half_close_then_replies_after_close_notify(self):
        # The server reads everything up to our close_notify, and only then
        # answers: the client must still be reading after its half-close.
        data = os.urandom(300000)

        def handle(t):
            got = bytearray()
            while True:
                b = t.recv(65536)
                if not b:  # our close_notify
                    break
                got += b
            t.sendall(hashlib.sha256(got).hexdigest().encode() + b"\n")
            t.sendall(b"after close_notify\n")
            t.unwrap()  # our own close_notify
            return bytes(got)

        addr, th, result = self.serve(handle)
        r = run_client(["--tls", "--insecure", addr], input=data,
                       timeout=60)
        got = self.finish(th, result)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(got, data)
        self.assertEqual(r.stdout,
                         hashlib.sha256(data).hexdigest().encode() +
                         b"\nafter close_notify\n")
        # A clean end: no truncation warning.
        self.assertNotIn(b"close_notify", r.stderr)

    def test_len32_file_frame_over_tls(self):
        # --file in len32 mode: the header and then the file, read in
        # chunks and sent through the same queue as everything else.
        path = os.path.join(self.dir, "frame.bin")
        body = random.Random(5).randbytes(3 * 1024 * 1024 + 17)
        with open(path, "wb") as f:
            f.write(body)

        def handle(t):
            hdr = b""
            while len(hdr) < 4:
                b = t.recv(4 - len(hdr))
                if not b:
                    raise AssertionError("EOF in the header")
                hdr += b
            (n,) = struct.unpack(">I", hdr)
            got = bytearray()
            while len(got) < n:
                b = t.recv(min(65536, n - len(got)))
                if not b:
                    raise AssertionError("EOF in the body")
                got += b
            reply = b"got %d" % n
            t.sendall(struct.pack(">I", len(reply)) + reply)
            # The client closes once the reply is in: close_notify, FIN.
            while t.recv(4096):
                pass
            return bytes(got)

        addr, th, result = self.serve(handle)
        r = run_client(["--tls", "--insecure", "-f", "len32", "--file", path,
                        addr], timeout=60)
        got = self.finish(th, result)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(got == body, "the file arrived changed")
        self.assertEqual(r.stdout, b"got %d" % len(body))

    def test_server_that_stalls_gets_every_byte_once(self):
        # The server reads nothing until the client has filled every
        # buffer on the way (its TLS writes stop part way), then echoes
        # all of it: byte-exact, in order.
        rnd = random.Random(11)
        data = rnd.randbytes(4 * 1024 * 1024)
        stalled = threading.Event()

        def handle(t):
            # Stall until the client cannot have sent it all (bounded).
            stalled.wait(2.0)
            total = 0
            while True:
                b = t.recv(65536)
                if not b:
                    break
                t.sendall(b)
                total += len(b)
            t.unwrap()
            return total

        addr, th, result = self.serve(handle)
        timer = threading.Timer(0.5, stalled.set)
        timer.start()
        self.addCleanup(timer.cancel)
        r = run_client(["--tls", "--insecure", addr], input=data,
                       timeout=120)
        total = self.finish(th, result)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(total, len(data))
        self.assertEqual(len(r.stdout), len(data))
        self.assertTrue(r.stdout == data, "the echo differs")


if __name__ == "__main__":
    unittest.main()
