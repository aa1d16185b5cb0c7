"""The README's library examples: the README shows them exactly as they are
in examples/, and they build (with the test suite) and work together."""
import hashlib
import os
import socket
import subprocess
import threading
import unittest

from skutil import Server, split_addr  # noqa: F401  (BIN_DIR conventions)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BUILD = os.environ.get("SK_BUILD_DIR", os.path.join(ROOT, "build"))
EXAMPLES = os.path.join(BUILD, "examples")


class ExamplesTest(unittest.TestCase):
    def test_readme_shows_examples_verbatim(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        for name in ("sync_client.c", "async_echo.c"):
            with open(os.path.join(ROOT, "examples", name)) as f:
                code = f.read()
            self.assertIn(code, readme, "README.md does not show examples/%s "
                          "as it is; paste it again" % name)

    def test_async_echo_serves_sync_client(self):
        srv = subprocess.Popen([os.path.join(EXAMPLES, "example_async_echo"),
                                "127.0.0.1:0"], stderr=subprocess.PIPE)
        try:
            line = srv.stderr.readline().decode()
            self.assertIn("listening on 127.0.0.1:", line)
            addr = line.split()[-1]
            for msg in ("hello", "x" * 100000, '{"json": [1, 2, 3]}'):
                out = subprocess.run(
                    [os.path.join(EXAMPLES, "example_sync_client"), addr, msg],
                    capture_output=True, timeout=20)
                self.assertEqual(out.returncode, 0, out.stderr)
                self.assertEqual(out.stdout.decode(), msg)
            # A refused connection is reported in one clear line, exit 1.
            srv.terminate()
            srv.wait(10)
            out = subprocess.run(
                [os.path.join(EXAMPLES, "example_sync_client"), addr, "x"],
                capture_output=True, timeout=20)
            self.assertEqual(out.returncode, 1)
            self.assertIn("refused", out.stderr.decode().lower())
        finally:
            srv.kill()
            srv.wait()
            srv.stderr.close()

    def test_async_echo_returns_every_byte_after_eof(self):
        """The client half-closes with up to 64 MiB of echo still queued in
        the server: it must all come back before the server's FIN (closing
        at EOF would cancel it). 20 runs, byte-exact; half of them send
        everything before reading (the most queued), half read meanwhile."""
        size, runs = 64 << 20, 20
        data = os.urandom(size)
        want = hashlib.sha256(data).hexdigest()
        srv = subprocess.Popen([os.path.join(EXAMPLES, "example_async_echo"),
                                "127.0.0.1:0"], stderr=subprocess.PIPE)
        try:
            line = srv.stderr.readline().decode()
            self.assertIn("listening on 127.0.0.1:", line)
            host, port = split_addr(line.split()[-1])
            for run in range(runs):
                got, n = hashlib.sha256(), 0
                with socket.create_connection((host, port), timeout=60) as c:
                    def send():
                        c.sendall(data)
                        c.shutdown(socket.SHUT_WR)
                    if run % 2 == 0:
                        send()
                    else:
                        t = threading.Thread(target=send)
                        t.start()
                    while True:
                        chunk = c.recv(1 << 20)
                        if not chunk:
                            break
                        got.update(chunk)
                        n += len(chunk)
                    if run % 2 == 1:
                        t.join(60)
                self.assertEqual(n, size, "run %d: %d of %d bytes came back"
                                 % (run, n, size))
                self.assertEqual(got.hexdigest(), want, "run %d" % run)
        finally:
            srv.kill()
            srv.wait()
            srv.stderr.close()


if __name__ == "__main__":
    unittest.main()
