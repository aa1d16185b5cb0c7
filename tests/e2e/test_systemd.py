"""sockit-server under systemd: socket activation (sockets passed with
LISTEN_FDS, here by systemd-socket-activate, which binds them and starts the
server at the first connection or datagram) and sd_notify (READY=1,
STATUS=, STOPPING=1, WATCHDOG=1) to a NOTIFY_SOCKET the test binds.

Every wait has a deadline; nothing asserts an upper bound on timing."""
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import unittest

from skutil import SERVER, Server, needs, recv_exact

ACTIVATE = "systemd-socket-activate"


class Activated:
    """systemd-socket-activate holding `listen` (its -l arguments) and
    starting sockit-server with `args` once `trigger()` (called with the
    list of addresses) has knocked. Raises SkipTest for a server built
    without libsystemd."""

    def __init__(self, listen, args, names=None, datagram=False,
                 accept=False, env=None, trigger=None):
        cmd = [ACTIVATE]
        for a in listen:
            cmd += ["-l", a]
        if datagram:
            cmd.append("--datagram")
        if accept:
            cmd.append("--accept")
        if names:
            cmd.append("--fdname=" + ":".join(names))
        cmd += [SERVER] + list(args)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        self.log = []
        self.buf = b""
        for _ in listen:
            self.wait_log(re.compile(r"^Listening on .* as \d+\.$"))
        self.knock = trigger() if trigger else None

    def wait_log(self, needle, timeout=15.0):
        deadline = time.monotonic() + timeout
        for line in self.log:
            if _match(needle, line):
                return line
        fd = self.proc.stderr.fileno()
        while True:
            while b"\n" in self.buf:
                raw, self.buf = self.buf.split(b"\n", 1)
                line = raw.decode(errors="replace")
                self.log.append(line)
                if "built without libsystemd" in line:
                    raise unittest.SkipTest("sockit-server without libsystemd")
                if _match(needle, line):
                    return line
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("%r not seen; log:\n%s" %
                                   (needle, "\n".join(self.log)))
            r, _, _ = select.select([fd], [], [], left)
            if r:
                chunk = os.read(fd, 4096)
                if not chunk:
                    raise EOFError("exited (%s) before %r; log:\n%s" %
                                   (self.proc.wait(), needle,
                                    "\n".join(self.log)))
                self.buf += chunk

    def ready_line(self):
        return self.wait_log("sockit-server: listening on")

    def stop(self):
        if self.proc.stderr.closed:
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        # What the server wrote after the signal, for assertions.
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        self.log += (self.buf + rest).decode(errors="replace").splitlines()
        return rc

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        if isinstance(self.knock, socket.socket):
            self.knock.close()


def _match(needle, line):
    if isinstance(needle, str):
        return needle in line
    return needle.search(line) is not None


def probe_port(kind):
    """A loopback port free right now (systemd-socket-activate needs a
    fixed one); the callers retry if someone takes it first."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def activated_on_port(kind, extra_listen, args, trigger_for, **kw):
    """Activated() with a TCP or UDP port found free; a few retries when
    the bind of systemd-socket-activate loses the race for it."""
    for attempt in range(5):
        port = probe_port(kind)
        listen = ["127.0.0.1:%d" % port] + extra_listen
        try:
            return port, Activated(listen, args,
                                   trigger=lambda: trigger_for(port), **kw)
        except EOFError:
            if attempt == 4:
                raise


def echo_stream(sock, payload):
    sock.sendall(payload)
    return recv_exact(sock, len(payload))


def unix_connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    return s


class NotifySocket:
    """A NOTIFY_SOCKET: a datagram Unix socket in a temp directory."""

    def __init__(self, tmp):
        self.path = os.path.join(tmp, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def wait_for(self, pred, timeout=20.0):
        """Receives datagrams until one satisfies pred(text); returns it."""
        deadline = time.monotonic() + timeout
        for m in self.messages:
            if pred(m):
                return m
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("not notified in time; got %r" %
                                   self.messages)
            r, _, _ = select.select([self.sock], [], [], left)
            if r:
                m = self.sock.recv(4096).decode()
                self.messages.append(m)
                if pred(m):
                    return m

    def close(self):
        self.sock.close()


def has_field(msg, field):
    return field in msg.split("\n")


@needs(ACTIVATE)
class SocketActivation(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sk-sysd-")

    def test_tcp_and_unix_echo_two_workers(self):
        path = os.path.join(self.tmp, "echo.sock")
        port, a = activated_on_port(
            socket.SOCK_STREAM, [path], ["-w", "2"],
            # The connection that starts the server waits in the backlog.
            lambda port: unix_connect(path), names=["web", "local"])
        with a:
            ready = a.ready_line()
            self.assertIn("tcp://127.0.0.1:%d" % port, ready)
            self.assertIn("unix://" + path, ready)
            # Passed sockets and no -l: nothing on the default address.
            self.assertNotIn("8888", ready)
            self.assertEqual(echo_stream(a.knock, b"first, queued\n"),
                             b"first, queued\n")
            for i in range(4):  # several connections: both workers serve
                with socket.create_connection(("127.0.0.1", port), 10) as c:
                    self.assertEqual(echo_stream(c, b"tcp %d\n" % i),
                                     b"tcp %d\n" % i)
                with unix_connect(path) as c:
                    self.assertEqual(echo_stream(c, b"unix %d\n" % i),
                                     b"unix %d\n" % i)
            a.knock.close()
            self.assertEqual(a.stop(), 0)
        # A socket file systemd made is systemd's: it stays.
        self.assertTrue(os.path.exists(path))

    def test_udp_echo(self):
        cli = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cli.settimeout(10)
        self.addCleanup(cli.close)

        def knock(port):
            cli.sendto(b"wake up", ("127.0.0.1", port))

        port, a = activated_on_port(socket.SOCK_DGRAM, [], [], knock,
                                    datagram=True)
        with a:
            self.assertIn("udp://127.0.0.1:%d" % port, a.ready_line())
            # The datagram that started the server is answered too.
            self.assertEqual(cli.recvfrom(2048)[0], b"wake up")
            cli.sendto(b"again", ("127.0.0.1", port))
            self.assertEqual(cli.recvfrom(2048)[0], b"again")
            self.assertEqual(a.stop(), 0)

    def test_tls_on_passed_unix_socket(self):
        path = os.path.join(self.tmp, "tls.sock")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with Activated([path], ["--tls", "--self-signed"],
                       trigger=lambda: unix_connect(path)) as a:
            self.assertIn("tls+unix://" + path, a.ready_line())
            with ctx.wrap_socket(a.knock) as t:
                a.knock = None
                self.assertEqual(echo_stream(t, b"secret\n"), b"secret\n")
            with ctx.wrap_socket(unix_connect(path)) as t:
                self.assertEqual(echo_stream(t, b"again\n"), b"again\n")

    def test_connected_socket_refused(self):
        # --accept passes one connected socket per connection (Accept=yes):
        # not supported, and said so.
        path = os.path.join(self.tmp, "acc.sock")
        with Activated([path], [], accept=True,
                       trigger=lambda: unix_connect(path)) as a:
            a.wait_log("Accept=yes is not supported")


class Notify(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="sk-sysd-")
        self.notify = NotifySocket(self.tmp)
        self.addCleanup(self.notify.close)
        self.env = dict(os.environ, NOTIFY_SOCKET=self.notify.path)

    def test_ready_status_stopping(self):
        with Server(["-l", "127.0.0.1:0"], env=self.env) as srv:
            ready = self.notify.wait_for(lambda m: has_field(m, "READY=1"))
            if "built without libsystemd" in ready:
                self.skipTest("no libsystemd")
            self.assertRegex(ready, r"STATUS=0 connections open")
            self.assertIn("MAINPID=%d" % srv.proc.pid, ready)
            # Ready means serving: connect at once.
            c = socket.create_connection(("127.0.0.1", srv.host_port()[1]), 10)
            self.addCleanup(c.close)
            self.assertEqual(echo_stream(c, b"ping\n"), b"ping\n")
            # The periodic STATUS= sees it.
            self.notify.wait_for(
                lambda m: m.startswith("STATUS=1 connection open"))
            # No watchdog was asked for: no pings.
            self.assertFalse([m for m in self.notify.messages
                              if "WATCHDOG=1" in m])
            srv.signal(signal.SIGTERM)
            self.notify.wait_for(lambda m: has_field(m, "STOPPING=1"))
            c.close()
            self.assertEqual(srv.wait(15), 0)

    def test_watchdog_pings(self):
        env = dict(self.env, WATCHDOG_USEC="200000")
        with Server(["-l", "127.0.0.1:0", "-w", "2"], env=env) as srv:
            self.notify.wait_for(lambda m: has_field(m, "READY=1"))
            seen = []

            def ping(m):
                if has_field(m, "WATCHDOG=1"):
                    seen.append(m)
                return len(seen) >= 3

            self.notify.wait_for(ping, timeout=30)
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)

    def test_no_notify_socket_no_change(self):
        # Without NOTIFY_SOCKET nothing is sent and the server runs as ever.
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        with Server(["-l", "127.0.0.1:0"], env=env) as srv:
            with socket.create_connection(("127.0.0.1", srv.host_port()[1]),
                                          10) as c:
                self.assertEqual(echo_stream(c, b"x"), b"x")
            srv.signal(signal.SIGTERM)
            self.assertEqual(srv.wait(15), 0)
        r, _, _ = select.select([self.notify.sock], [], [], 0)
        self.assertFalse(r)


if __name__ == "__main__":
    unittest.main()
