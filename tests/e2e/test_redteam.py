"""End-to-end tests from a hostile pass over the programs after issue 10's
fixes: each test is one way a peer could still get through, attacked from
outside on loopback, and fails without its fix.

Every server listens on port 0, every wait has a deadline, every load is
bounded in count and time.
"""
import socket
import threading
import unittest

from skutil import client_on_pty, serve_one, shut_and_drain

# Retitle the window, clear the screen, rewind the line and forge one.
HOSTILE = b"\x1b]0;PWNED\x07\x1b[2J\rforged\r\n\x9b\xff\x7f\n"
HOSTILE_ESCAPED = (b"\\x1b]0;PWNED\\x07\\x1b[2J\\x0dforged\r\n"
                   b"\\x9b\\xff\\x7f\n")


def serve_once(payload):
    """A TCP server on a kernel-chosen loopback port that reads what one
    client sends (until its half-close or a short pause), answers with
    payload and closes. Returns (port, thread)."""
    def handle(c):
        c.recv(4096)
        c.sendall(payload)
        shut_and_drain(c)

    return serve_one(handle)


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
                    code, out, _ = client_on_pty([addr, "hi"])
                else:
                    code, out, _ = client_on_pty([addr], stdin_data=b"hi\n")
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
        code, out, _ = client_on_pty(
            ["--udp", "127.0.0.1:%d" % us.getsockname()[1], "hi"])
        t.join(10)
        self.assertEqual(code, 0)
        self.assertNotIn(b"\x1b", out)
        self.assertIn(b"\\x1b]0;PWNED", out)


if __name__ == "__main__":
    unittest.main()
