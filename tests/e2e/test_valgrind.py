"""A full client/server session under valgrind memcheck: no invalid reads or
writes, no uninitialised values, no definite leaks, in either program."""
import os
import signal
import subprocess
import tempfile
import unittest

from skutil import CLIENT, SERVER, Server, needs

VG = ["valgrind", "--quiet", "--error-exitcode=99", "--leak-check=full",
      "--errors-for-leak-kinds=definite", "--track-fds=no"]


@needs("valgrind")
@unittest.skipIf(os.environ.get("SK_SANITIZED"), "sanitizer build")
class ValgrindTest(unittest.TestCase):
    def run_client(self, *args, input=None):
        p = subprocess.run(VG + [CLIENT] + list(args), input=input,
                           capture_output=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace"))
        return p.stdout

    def test_memcheck_full_session(self):
        srv = Server(["-l", "127.0.0.1:0", "--workers", "2", "-q"],
                     timeout=60, wrapper=VG)
        try:
            addr = srv.tcp
            self.assertEqual(self.run_client(addr, '{"a":1}'), b'{"a":1}')
            with tempfile.NamedTemporaryFile() as f:
                f.write(os.urandom(1 << 20))
                f.flush()
                out = self.run_client("--file", f.name, addr)
                with open(f.name, "rb") as g:
                    self.assertEqual(out, g.read())
            self.run_client("--bench", addr, "--conns", "4", "--duration",
                            "0.5", "--warmup", "0")
            srv.signal(signal.SIGTERM)
            code = srv.wait(60)
            self.assertEqual(code, 0, "\n".join(srv.log))
        finally:
            srv.stop()

    def test_memcheck_framed_and_udp(self):
        srv = Server(["-l", "127.0.0.1:0", "-l", "udp://127.0.0.1:0",
                      "--frame", "len16", "--workers", "1", "-q"],
                     timeout=60, wrapper=VG)
        try:
            out = self.run_client("-f", "len16", "--hex-input", "--hex",
                                  srv.tcp, "0800822000000000000004")
            self.assertIn(b"08 00 82 20", out)
            self.run_client("-u", srv.addrs["udp"][0], "ping")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(60), 0, "\n".join(srv.log))
        finally:
            srv.stop()


if __name__ == "__main__":
    unittest.main()
