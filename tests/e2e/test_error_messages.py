"""Errors that say why: a --root, --ca, --cert or --key that cannot be opened
is named, with the errno text, in the one error line (sockit-server and
sockit-client); the openat2 message is kept for a kernel without it."""
import os
import subprocess
import tempfile
import unittest

from skutil import CLIENT, SERVER, run_client


def run_server(args, preexec=None):
    """A server that is expected to fail at start (it never listens)."""
    return subprocess.run([SERVER, "-l", "127.0.0.1:0"] + list(args),
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=20,
                          preexec_fn=preexec)


def as_nobody():
    """preexec_fn that drops root to nobody, so permission checks apply."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


class ErrorMessageTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp()
        # Searchable by everyone: the unreadable-root test runs the server
        # as nobody, which must reach the directory it then cannot open.
        os.chmod(self.tmp, 0o755)
        self.addCleanup(subprocess.run, ["rm", "-rf", self.tmp])

    def path(self, name):
        return os.path.join(self.tmp, name)

    def assert_one_line(self, r, *needles):
        lines = r.stderr.decode(errors="replace").splitlines()
        self.assertEqual(r.returncode, 1, lines)
        self.assertEqual(len(lines), 1, lines)
        for n in needles:
            self.assertIn(n, lines[0])
        self.assertNotIn("openat2", lines[0])
        return lines[0]

    def test_root_missing(self):
        root = self.path("no-such-dir")
        r = run_server(["--mode", "files", "--root", root])
        self.assert_one_line(r, root, "No such file or directory")

    def test_root_not_a_directory(self):
        f = self.path("plain")
        open(f, "w").close()
        for root in (f, f + "/sub"):
            r = run_server(["--mode", "files", "--root", root])
            self.assert_one_line(r, root, "Not a directory")

    def test_root_unreadable(self):
        root = self.path("locked")
        os.mkdir(root)
        os.chmod(root, 0)
        self.addCleanup(os.chmod, root, 0o755)
        preexec = None
        if os.geteuid() == 0:
            # Root passes every permission check: run the server as nobody.
            try:
                import pwd
                pwd.getpwuid(65534)
            except KeyError:
                self.skipTest("running as root and there is no nobody user")
            # The binary may sit where nobody cannot reach it (a checkout
            # under /root): find out by running it as nobody.
            try:
                probe = subprocess.run([SERVER, "--help"], preexec_fn=as_nobody,
                                       capture_output=True, timeout=30)
                usable = probe.returncode == 0
            except OSError:
                usable = False
            if not usable:
                self.skipTest("nobody cannot run %s" % SERVER)
            preexec = as_nobody
        r = run_server(["--mode", "files", "--root", root], preexec=preexec)
        # Before: "files mode needs openat2() (Linux 5.6 or newer):
        # Permission denied".
        self.assert_one_line(r, root, "Permission denied")

    def test_client_ca_missing_names_file(self):
        ca = self.path("nope.pem")
        r = run_client(["--tls", "--ca", ca, "127.0.0.1:1", "x"])
        line = self.assert_one_line(r, ca, "No such file or directory")
        self.assertIn("cannot read", line)
        r = run_client(["--bench", "127.0.0.1:1", "--tls", "--ca", ca])
        self.assert_one_line(r, ca, "No such file or directory")

    def test_client_cert_and_key_missing_name_file(self):
        cert, key = self.path("nope-cert.pem"), self.path("nope-key.pem")
        r = run_client(["--tls", "--insecure", "--cert", cert, "127.0.0.1:1",
                        "x"])
        self.assert_one_line(r, cert, "No such file or directory")
        # The key is checked on its own once the certificate opens.
        present = self.path("cert.pem")
        open(present, "w").close()
        r = run_client(["--tls", "--insecure", "--cert", present, "--key", key,
                        "127.0.0.1:1", "x"])
        self.assert_one_line(r, key, "No such file or directory")

    def test_server_tls_files_missing_name_file(self):
        present = self.path("present.pem")
        open(present, "w").close()
        missing = self.path("missing.pem")
        for args in (["--cert", missing],
                     ["--cert", present, "--key", missing],
                     ["--cert", present, "--key", present, "--client-ca",
                      missing]):
            r = run_server(["--tls"] + args)
            self.assert_one_line(r, missing, "No such file or directory")


if __name__ == "__main__":
    unittest.main()
