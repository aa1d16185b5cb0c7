"""sockit-server's signals: SIGHUP reloads the TLS files (new handshakes
get the new certificate, established connections go on, a broken file
keeps the old one and says why) and reopens the log file; SIGUSR1 logs the
counters; neither stops the server; a stopping server removes the Unix
socket file it created, and only that one.

Certificates are made at run time with the openssl command line tool."""
import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import unittest

from skutil import (SERVER, Server, needs, recv_exact, self_signed_cert,
                    wait_file_contains)


def echo(sock, payload):
    sock.sendall(payload)
    return recv_exact(sock, len(payload))


class Tmp(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sk-sig-")
        self.addCleanup(shutil.rmtree, self.dir, True)

    def path(self, name):
        return os.path.join(self.dir, name)


@needs("openssl")
class Reload(Tmp):
    def make_cert(self, name):
        """A self-signed EC certificate and key: NAME.pem, NAME.key. Returns
        the certificate's SHA-256 over DER."""
        self_signed_cert(self.dir, name)
        with open(self.path(name + ".pem")) as f:
            return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).digest()

    def install(self, name):
        """Puts NAME's files in place of the ones the server was given."""
        shutil.copy(self.path(name + ".key"), self.path("live.key.tmp"))
        shutil.copy(self.path(name + ".pem"), self.path("live.pem.tmp"))
        os.replace(self.path("live.key.tmp"), self.path("live.key"))
        os.replace(self.path("live.pem.tmp"), self.path("live.pem"))

    def tls_connect(self, srv):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        raw = socket.create_connection(srv.host_port("tls"), 10)
        t = ctx.wrap_socket(raw)
        self.addCleanup(t.close)
        return t

    @staticmethod
    def peer_fp(t):
        return hashlib.sha256(t.getpeercert(binary_form=True)).digest()

    def start(self):
        return Server(["-l", "127.0.0.1:0", "--tls", "--cert",
                       self.path("live.pem"), "--key", self.path("live.key")])

    def test_sighup_swaps_certificate(self):
        old, new = self.make_cert("one"), self.make_cert("two")
        self.assertNotEqual(old, new)
        self.install("one")
        with self.start() as srv:
            before = self.tls_connect(srv)
            self.assertEqual(self.peer_fp(before), old)
            self.assertEqual(echo(before, b"before\n"), b"before\n")
            self.install("two")
            srv.signal(signal.SIGHUP)
            srv.wait_log("TLS files reloaded")
            after = self.tls_connect(srv)
            self.assertEqual(self.peer_fp(after), new)
            self.assertEqual(echo(after, b"after\n"), b"after\n")
            # The connection made before the reload goes on.
            self.assertEqual(echo(before, b"still here\n"), b"still here\n")
            before.close()
            after.close()
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)

    def test_sighup_with_broken_file_keeps_old(self):
        old = self.make_cert("one")
        self.install("one")
        with self.start() as srv:
            with open(self.path("live.pem"), "w") as f:
                f.write("-----BEGIN CERTIFICATE-----\nnot base64 at all\n")
            srv.signal(signal.SIGHUP)
            line = srv.wait_log("TLS files not reloaded")
            # ... and why (OpenSSL's reason or the file's name follows).
            self.assertRegex(line, r"previous ones stay in use: \S+")
            t = self.tls_connect(srv)
            self.assertEqual(self.peer_fp(t), old)
            self.assertEqual(echo(t, b"old cert\n"), b"old cert\n")
            t.close()
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)

    def test_sighup_self_signed_keeps_certificate(self):
        with Server(["-l", "127.0.0.1:0", "--tls", "--self-signed"]) as srv:
            t = self.tls_connect(srv)
            first = self.peer_fp(t)
            t.close()
            srv.signal(signal.SIGHUP)
            srv.wait_log("--self-signed: the certificate is kept")
            t = self.tls_connect(srv)
            self.assertEqual(self.peer_fp(t), first)
            t.close()


class Signals(Tmp):
    def test_sigusr1_logs_summary_and_server_goes_on(self):
        with Server(["-l", "127.0.0.1:0", "-w", "2"]) as srv:
            c = socket.create_connection(srv.host_port(), 10)
            self.addCleanup(c.close)
            self.assertEqual(echo(c, b"hi"), b"hi")
            srv.signal(signal.SIGUSR1)
            srv.wait_log("SIGUSR1: 1 connection open")
            # Still serving after it.
            self.assertEqual(echo(c, b"again"), b"again")
            c.close()
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)

    def test_sighup_without_tls_survives(self):
        with Server(["-l", "127.0.0.1:0"]) as srv:
            srv.signal(signal.SIGHUP)
            srv.wait_log("SIGHUP: reloading")
            with socket.create_connection(srv.host_port(), 10) as c:
                self.assertEqual(echo(c, b"x"), b"x")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)

    def test_unix_socket_file_removed_at_stop(self):
        path = self.path("s.sock")
        with Server(["-l", "unix:" + path]) as srv:
            self.assertTrue(os.path.exists(path))
            srv.signal(signal.SIGHUP)
            srv.wait_log("SIGHUP: reloading")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)
        self.assertFalse(os.path.exists(path))

    def test_replaced_socket_path_left_alone(self):
        # Something else took the path meanwhile: not ours to remove.
        path = self.path("s.sock")
        with Server(["-l", "unix:" + path]) as srv:
            os.unlink(path)
            with open(path, "w") as f:
                f.write("not a socket")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)
        with open(path) as f:
            self.assertEqual(f.read(), "not a socket")

    def test_sighup_reopens_log_file(self):
        help_text = subprocess.run([SERVER, "--help"], capture_output=True,
                                   text=True).stdout
        if "--log-file" not in help_text:
            self.skipTest("no --log-file")
        log = self.path("server.log")
        proc = subprocess.Popen([SERVER, "-l", "127.0.0.1:0", "--log-file",
                                 log], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            wait_file_contains(log, b"listening on", proc=proc)
            # logrotate's way: move the file away, then SIGHUP.
            os.rename(log, log + ".1")
            proc.send_signal(signal.SIGHUP)
            wait_file_contains(log, b"SIGHUP", proc=proc)
            proc.send_signal(signal.SIGUSR1)
            wait_file_contains(log, b"SIGUSR1", proc=proc)
            proc.send_signal(signal.SIGTERM)
            self.assertEqual(proc.wait(15), 0)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        with open(log + ".1", "rb") as f:
            self.assertNotIn(b"SIGUSR1", f.read())

if __name__ == "__main__":
    unittest.main()
