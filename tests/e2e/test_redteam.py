"""End-to-end tests from a hostile pass over the programs after issue 10's
fixes: each test is one way a peer could still get through, attacked from
outside on loopback, and fails without its fix.

Every server listens on port 0, every wait has a deadline, every load is
bounded in count and time.
"""
import os
import pty
import select
import socket
import subprocess
import threading
import time
import tty
import unittest

from skutil import CLIENT

# Retitle the window, clear the screen, rewind the line and forge one.
HOSTILE = b"\x1b]0;PWNED\x07\x1b[2J\rforged\r\n\x9b\xff\x7f\n"
HOSTILE_ESCAPED = (b"\\x1b]0;PWNED\\x07\\x1b[2J\\x0dforged\r\n"
                   b"\\x9b\\xff\\x7f\n")


def serve_once(payload):
    """A TCP server on a kernel-chosen loopback port that reads what one
    client sends (until its half-close or a short pause), answers with
    payload and closes. Returns (port, thread)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(30)

    def run():
        try:
            c, _ = ls.accept()
            with c:
                c.settimeout(30)
                c.recv(4096)
                c.sendall(payload)
                c.shutdown(socket.SHUT_WR)
                try:
                    while c.recv(4096):
                        pass
                except OSError:
                    pass
        except OSError:
            pass
        finally:
            ls.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return ls.getsockname()[1], t


def client_stdout_on_pty(args, stdin_data=None, timeout=30.0):
    """Runs sockit-client with stdout on a pseudo-terminal (raw mode, no
    newline translation) and stdin NOT a terminal (/dev/null, or a pipe
    fed stdin_data); returns (exit code, what the terminal got)."""
    master, slave = pty.openpty()
    tty.setraw(slave)
    p = subprocess.Popen([CLIENT] + args,
                         stdin=(subprocess.PIPE if stdin_data is not None
                                else subprocess.DEVNULL),
                         stdout=slave, stderr=subprocess.DEVNULL,
                         close_fds=True)
    os.close(slave)
    if stdin_data is not None:
        p.stdin.write(stdin_data)
        p.stdin.close()
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("sockit-client did not finish; got %r"
                                   % out)
            r, _, _ = select.select([master], [], [], min(left, 0.5))
            if not r:
                if p.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the client closed the terminal
                break
            if not chunk:
                break
            out += chunk
        code = p.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if p.poll() is None:
            p.kill()
            p.wait()
    return code, out


class ClientTerminalNotInteractive(unittest.TestCase):
    """A hostile server's escape sequences reached the user's terminal
    whenever stdin was not a terminal: `sockit-client ADDR MESSAGE` or
    `echo hi | sockit-client ADDR` printed them raw."""

    def test_message_and_piped_input_are_escaped_on_a_terminal(self):
        for how in ("message", "pipe"):
            with self.subTest(how=how):
                port, t = serve_once(HOSTILE)
                addr = "127.0.0.1:%d" % port
                if how == "message":
                    code, out = client_stdout_on_pty([addr, "hi"])
                else:
                    code, out = client_stdout_on_pty([addr], b"hi\n")
                t.join(10)
                self.assertEqual(code, 0)
                self.assertNotIn(b"\x1b", out)
                self.assertEqual(out, HOSTILE_ESCAPED)

    def test_udp_reply_is_escaped_on_a_terminal(self):
        us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(us.close)
        us.bind(("127.0.0.1", 0))
        us.settimeout(30)

        def answer():
            try:
                _, peer = us.recvfrom(4096)
                us.sendto(HOSTILE, peer)
            except OSError:
                pass

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        code, out = client_stdout_on_pty(
            ["--udp", "127.0.0.1:%d" % us.getsockname()[1], "hi"])
        t.join(10)
        self.assertEqual(code, 0)
        self.assertNotIn(b"\x1b", out)
        self.assertIn(b"\\x1b]0;PWNED", out)


if __name__ == "__main__":
    unittest.main()
