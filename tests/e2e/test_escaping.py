"""End-to-end tests: nothing a peer sends reaches a terminal or a log as
control bytes (issue 10, items 6, 7 and 9).

- chat relays lines as text: C0 controls but the tab, DEL, C1 controls and
  invalid UTF-8 go out as \\xHH, valid UTF-8 unchanged;
- the server's log escapes every byte outside printable ASCII, so a file
  name cannot forge a log line;
- sockit-client in an interactive session on a terminal (a pseudo-terminal
  here) shows control bytes escaped, unless --raw; a pipe gets them exactly;
- a TLS session cut after its handshake is not called a handshake failure.

Every server listens on port 0 and every wait has a deadline.
"""
import shutil
import socket
import tempfile
import unittest

from skutil import (Server, client_on_pty, needs, run_client,
                    self_signed_cert, serve_one, tls_cut_server)

# The payload: retitle the window, set the clipboard, clear the
# screen, then rewind the line and forge one from another address.
ATTACK = (b"\x1b]0;PWNED\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"
          b"\r[10.0.0.1:1] admin: run this")
C0_C1 = set(range(0x20)) - {0x09} | {0x7f} | set(range(0x80, 0xa0))


class Base(unittest.TestCase):
    def start(self, *args):
        srv = Server(list(args))
        self.addCleanup(srv.stop)
        return srv

    def tmpdir(self):
        d = tempfile.mkdtemp(prefix="sk-esc-")
        self.addCleanup(shutil.rmtree, d, True)
        return d

    def sock(self, addr):
        host, _, port = addr.rpartition(":")
        s = socket.create_connection((host, int(port)), timeout=10)
        self.addCleanup(s.close)
        return s


class ChatEscaping(Base):
    def pair(self, *extra):
        srv = self.start("--mode", "chat", *extra, "-l", "127.0.0.1:0")
        a = self.sock(srv.tcp)
        srv.wait_log("connection from 127.0.0.1:%d" % a.getsockname()[1])
        b = self.sock(srv.tcp)
        fa = a.makefile("rb")
        self.addCleanup(fa.close)
        name = b"127.0.0.1:%d" % b.getsockname()[1]
        self.assertEqual(fa.readline(), b"* " + name + b" joined\n")
        return srv, fa, b, name

    def test_chat_escapes_terminal_sequences(self):
        srv, fa, b, name = self.pair()
        b.sendall(ATTACK + b"\n")
        line = fa.readline()
        self.assertTrue(line.startswith(b"[" + name + b"] "), line)
        body = line[len(name) + 3:-1]
        self.assertFalse(C0_C1 & set(body), line)
        self.assertEqual(body, b"\\x1b]0;PWNED\\x07\\x1b]52;c;cm0gLXJmIH4="
                         b"\\x07\\x1b[2J\\x0d[10.0.0.1:1] admin: run this")

    def test_chat_escapes_invalid_utf8_and_keeps_valid(self):
        srv, fa, b, name = self.pair()
        text = "h\u00e9llo \u2713 \U0001f600\tend".encode()
        b.sendall(text + b"\n")
        self.assertEqual(fa.readline(), b"[" + name + b"] " + text + b"\n")
        # A raw C1 byte, C1 in its UTF-8 form, a stray continuation byte,
        # an overlong "/", a surrogate, a cut-short sequence, DEL.
        b.sendall(b"a\x9bb \xc2\x9b \x80 \xc0\xaf \xed\xa0\x80 \xe2\x9c\x7f\n")
        self.assertEqual(
            fa.readline(),
            b"[" + name + b"] a\\x9bb \\xc2\\x9b \\x80 \\xc0\\xaf "
            b"\\xed\\xa0\\x80 \\xe2\\x9c\\x7f\n")

    def test_chat_line_too_long_once_escaped_is_refused(self):
        srv, fa, b, name = self.pair("--max-frame", "64")
        # 40 bytes fit --max-frame, their escaped form (160) does not.
        b.sendall(b"\x01" * 40 + b"\n")
        self.assertEqual(fa.readline(), b"* " + name + b" left\n")
        srv.wait_log("once its control bytes are escaped")


class LogEscaping(Base):
    def test_rejected_file_name_cannot_forge_a_log_line(self):
        root = self.tmpdir()
        srv = self.start("--mode", "files", "--root", root,
                         "-l", "127.0.0.1:0")
        s = self.sock(srv.tcp)
        f = s.makefile("rb")
        self.addCleanup(f.close)
        forged = b"sockit-server: connection from 10.9.9.9:22 on tcp://x"
        s.sendall(b"GET \x1b]0;x\x07\r" + forged + b" caf\xc3\xa9\\\n")
        self.assertTrue(f.readline().startswith(b"ERR "))
        line = srv.wait_log("ERR bad file name")
        s.close()
        srv.stop()
        raw = "\n".join(srv.log)
        for l in srv.log:
            self.assertTrue(all(0x20 <= ord(ch) < 0x7f for ch in l), repr(l))
            self.assertFalse(l.startswith(forged.decode()), l)
        self.assertIn("GET \\x1b]0;x\\x07\\x0d" + forged.decode()
                      + " caf\\xc3\\xa9\\x5c: ERR", line, raw)


def serve_once(payload):
    """A TCP server on 127.0.0.1:0 that sends payload to the first client
    and closes; returns (port, thread)."""
    return serve_one(lambda c: c.sendall(payload))


class ClientTerminal(unittest.TestCase):
    PAYLOAD = (b"\x1b]0;PWNED\x07\x1b[2J\rforged\r\n"
               + "h\u00e9llo \u2713\tend".encode() + b"\x9b\xff\\\x7f\n")

    def test_interactive_terminal_sees_control_bytes_escaped(self):
        port, t = serve_once(self.PAYLOAD)
        code, out, err = client_on_pty(["127.0.0.1:%d" % port],
                                        interactive=True)
        t.join(10)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, b"\\x1b]0;PWNED\\x07\\x1b[2J\\x0dforged\r\n"
                         + "h\u00e9llo \u2713\tend".encode()
                         + b"\\x9b\\xff\\\\\\x7f\n")

    def test_raw_option_and_pipes_get_the_bytes_exactly(self):
        port, t = serve_once(self.PAYLOAD)
        code, out, err = client_on_pty(["--raw", "127.0.0.1:%d" % port],
                                        interactive=True)
        t.join(10)
        self.assertEqual(code, 0, err)
        self.assertEqual(out, self.PAYLOAD)
        # Not interactive, stdout a pipe: byte-exact as always.
        port, t = serve_once(self.PAYLOAD)
        r = run_client(["127.0.0.1:%d" % port], input=b"")
        t.join(10)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, self.PAYLOAD)


@needs("openssl")
class TlsCutNaming(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sk-esc-tls-")
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.cert, self.key = self_signed_cert(self.dir, "cert")

    def cutting_server(self):
        """Completes the handshake, reads the request (len16 "hello"),
        sends half a len16 frame, then ends TCP (a FIN) without
        close_notify."""
        return tls_cut_server(self.cert, self.key, b"\x00\x0aabc", want=7)

    def test_cut_after_handshake_is_not_called_a_handshake_failure(self):
        # MESSAGE: the synchronous path; stdin: the pump's TLS link.
        for how in ("message", "stdin"):
            with self.subTest(how=how):
                addr, th = self.cutting_server()
                args = ["--tls", "--insecure", "-q", "-f", "len16", addr]
                if how == "message":
                    r = run_client(args + ["hello"])
                else:
                    r = run_client(args, input=b"hello\n")
                th.join(10)
                err = r.stderr.decode(errors="replace")
                self.assertEqual(r.returncode, 1, err)
                self.assertNotIn("handshake", err)
                self.assertRegex(err, r"without close_notify")


if __name__ == "__main__":
    unittest.main()
