"""End-to-end tests of sockit-server --proxy-protocol: PROXY protocol v1
and v2 headers written by hand (python), then by peers nobody here wrote: a
real HAProxy (send-proxy, send-proxy-v2) and a real nginx stream block
(proxy_protocol on), both started by the test on loopback and killed at its
end.

What is checked: the header's client address replaces the TCP peer in the
server's log lines; v2 LOCAL keeps the real peer; a malformed header closes
that connection with one error line that never shows the peer's bytes; a
header trickling in is cut by --frame-timeout; with --tls the header comes
before the handshake; sockets passed by systemd get it too; with --mode
forward the bytes that came in the header's segment reach the upstream;
UDP listeners are refused. Every wait has a deadline.
"""
import os
import re
import select
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import time
import unittest

from skutil import SERVER, Server, connect, free_tcp_port, needs, recv_exact

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(cmd, fam, addr=b"", tlv=b""):
    """A v2 header: cmd 0 LOCAL / 1 PROXY, fam the family/transport byte."""
    return (SIG + bytes([0x20 | cmd, fam]) + struct.pack("!H", len(addr) +
                                                         len(tlv)) + addr + tlv)


def v2_inet6(src, sport, dst, dport, tlv=b""):
    return v2(1, 0x21, socket.inet_pton(socket.AF_INET6, src) +
              socket.inet_pton(socket.AF_INET6, dst) +
              struct.pack("!HH", sport, dport), tlv)


def echo_once(sock, data):
    sock.sendall(data)
    return recv_exact(sock, len(data))


def closed_by_peer(sock, timeout=10.0):
    """True once the server closed sock (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


class ByHand(unittest.TestCase):

    def test_v1_address_replaces_peer(self):
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            with connect(srv.tcp) as s:
                s.sendall(b"PROXY TCP4 203.0.113.7 10.0.0.1 4242 80\r\n")
                self.assertEqual(echo_once(s, b"ping\n"), b"ping\n")
            srv.wait_log("connection from 203.0.113.7:4242 on")
            srv.wait_log("connection from 203.0.113.7:4242 closed")
            self.assertFalse(any("connection from 127.0.0.1" in l
                                 for l in srv.log), srv.log)

    def test_v2_inet6_with_tlvs_and_data_in_one_write(self):
        tlv = b"\x04" + struct.pack("!H", 3000) + b"\xaa" * 3000  # NOOP
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            with connect(srv.tcp) as s:
                s.sendall(v2_inet6("2001:db8::7", 5151, "::1", 80, tlv) +
                          b"hello\n")
                self.assertEqual(recv_exact(s, 6), b"hello\n")
            srv.wait_log("connection from [2001:db8::7]:5151 on")

    def test_v2_local_keeps_real_peer(self):
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            with connect(srv.tcp) as s:
                port = s.getsockname()[1]
                s.sendall(v2(0, 0x00))
                self.assertEqual(echo_once(s, b"x\n"), b"x\n")
            srv.wait_log("connection from 127.0.0.1:%d on" % port)

    def test_unix_listener(self):
        d = tempfile.mkdtemp(prefix="sk-pp-")
        try:
            path = os.path.join(d, "s")
            with Server(["-l", "unix:" + path, "--proxy-protocol"]) as srv:
                with connect("unix:" + path) as s:
                    s.sendall(b"PROXY TCP6 2001:db8::9 ::1 9 10\r\nu\n")
                    self.assertEqual(recv_exact(s, 2), b"u\n")
                srv.wait_log("connection from [2001:db8::9]:9 on")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_malformed_header_closes_with_one_escaped_line(self):
        bad = [b"GET / HTTP/1.0\r\n\r\n",
               b"PROXY TCP4 1.2.3.4 5.6.7.8 99999 1\r\n",
               b"PROXY TCP4 \x1b[31mevil\x1b[0m 1.2.3.4 1 2\r\n",
               SIG + b"\x21\x11\x00\x04abcd"]  # length too small for INET
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            for data in bad:
                with connect(srv.tcp) as s:
                    port = s.getsockname()[1]
                    s.sendall(data)
                    self.assertTrue(closed_by_peer(s), data)
                line = srv.wait_log(re.compile(
                    r"error: 127\.0\.0\.1:%d: not a valid PROXY header$" %
                    port))
                self.assertNotIn("\x1b", line)
            # The server goes on serving.
            with connect(srv.tcp) as s:
                s.sendall(b"PROXY UNKNOWN\r\n")
                self.assertEqual(echo_once(s, b"ok\n"), b"ok\n")
            srv.drain_log(0.3)
            log = "\n".join(srv.log)
            self.assertNotIn("\x1b", log)
            self.assertNotIn("evil", log)
            self.assertNotIn("GET /", log)

    def test_eof_mid_header(self):
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            with connect(srv.tcp) as s:
                port = s.getsockname()[1]
                s.sendall(b"PROXY TCP4 1.2.3.4 ")
                s.shutdown(socket.SHUT_WR)
                self.assertTrue(closed_by_peer(s))
            srv.wait_log("127.0.0.1:%d: connection closed before the PROXY "
                         "header ended" % port)

    def test_trickle_cut_by_frame_timeout(self):
        # A v2 header announcing 60000 bytes of TLVs, sent a byte at a
        # time: always a valid beginning, never complete.
        head = SIG + b"\x21\x11" + struct.pack("!H", 12 + 60000) + bytes(12)
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol",
                     "--frame-timeout", "1"]) as srv:
            with connect(srv.tcp) as s:
                port = s.getsockname()[1]
                s.sendall(head)
                closed = False
                deadline = time.monotonic() + 20
                while not closed and time.monotonic() < deadline:
                    try:
                        s.sendall(b"\x00")
                    except (BrokenPipeError, ConnectionResetError):
                        closed = True
                        break
                    # Waits for the close (readable) a little, then goes on.
                    r, _, _ = select.select([s], [], [], 0.1)
                    if r:
                        closed = closed_by_peer(s, 1.0)
                self.assertTrue(closed)
            line = srv.wait_log("127.0.0.1:%d: PROXY header not complete" %
                                port)
            self.assertIn("closing the connection", line)

    def test_header_then_tls(self):
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol", "--tls",
                     "--self-signed"]) as srv:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            raw = connect(srv.addrs["tls"][0])
            raw.sendall(b"PROXY TCP4 198.51.100.3 10.0.0.1 6000 443\r\n")
            with ctx.wrap_socket(raw) as s:
                self.assertEqual(echo_once(s, b"secret\n"), b"secret\n")
            srv.wait_log("connection from 198.51.100.3:6000 on")

    def test_forward_gets_bytes_from_the_header_segment(self):
        # The request comes in the same segment as the header: it is kept
        # while the upstream connects and reaches it first.
        with Server(["-l", "127.0.0.1:0"]) as up, \
                Server(["-l", "127.0.0.1:0", "--mode", "forward", "--to",
                        up.tcp, "--proxy-protocol"]) as fw:
            with connect(fw.tcp) as s:
                s.sendall(b"PROXY TCP4 203.0.113.5 10.0.0.1 1234 80\r\n"
                          b"same segment\n")
                self.assertEqual(recv_exact(s, 13), b"same segment\n")
                self.assertEqual(echo_once(s, b"next\n"), b"next\n")
            fw.wait_log("connection from 203.0.113.5:1234 on")

    @needs("systemd-socket-activate")
    def test_socket_passed_by_systemd(self):
        from test_systemd import Activated, unix_connect
        d = tempfile.mkdtemp(prefix="sk-pp-")
        try:
            path = os.path.join(d, "sd.sock")
            with Activated([path], ["--proxy-protocol"],
                           trigger=lambda: unix_connect(path)) as a:
                s, a.knock = a.knock, None
                with s:
                    s.sendall(b"PROXY TCP4 192.0.2.44 10.0.0.1 777 80\r\n"
                              b"sd\n")
                    self.assertEqual(recv_exact(s, 3), b"sd\n")
                a.wait_log("connection from 192.0.2.44:777 on")
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_udp_listener_refused(self):
        p = subprocess.run([SERVER, "-u", "-l", "127.0.0.1:0",
                            "--proxy-protocol", "--check"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           timeout=10)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"--proxy-protocol works on TCP and Unix streams",
                      p.stderr)


def free_ports(n):
    """n distinct TCP ports nobody listens on right now."""
    ports = []
    while len(ports) < n:
        p = free_tcp_port()
        if p not in ports:
            ports.append(p)
    return ports


def owns_listener(pid, port):
    """True when a socket listens on 127.0.0.1:port and every socket that
    does is one of pid's descriptors (inodes from /proc/net/tcp)."""
    # The kernel prints the address as the 32-bit word in host order.
    addr = struct.unpack("=I", socket.inet_aton("127.0.0.1"))[0]
    want = "%08X:%04X" % (addr, port)
    try:
        with open("/proc/net/tcp") as f:
            inodes = {fields[9] for fields in (ln.split() for ln in f)
                      if len(fields) > 9 and fields[1] == want
                      and fields[3] == "0A"}
        fds = os.listdir("/proc/%d/fd" % pid)
    except OSError:
        return False
    mine = set()
    for fd in fds:
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            mine.add(link[8:-1])
    return bool(inodes) and mine == inodes


def wait_listening(proc, ports, timeout=15.0):
    """Waits until proc itself listens on 127.0.0.1 on every port: True;
    False if it exits first (it could not bind one: a concurrent test took
    it after it was found free). Whether something accepts there proves
    nothing, since that could be the other test's listener."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if all(owns_listener(proc.pid, p) for p in ports):
            return True
        select.select([], [], [], 0.05)  # the peer is still starting
    raise TimeoutError("peer not listening on %s" % ports)


class RealPeers(unittest.TestCase):
    """HAProxy and nginx in front of sockit-server, each on ports found
    free just before (the peer cannot pick its own and tell it): started
    again on other ports when it cannot bind them."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="sk-pp-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for f in (p.stdout, p.stderr):
                if f:
                    f.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, args):
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, cwd=self.dir)
        self.procs.append(p)
        return p

    def start_listening(self, nports, args_for, log=None, tries=5):
        """Starts a peer on nports distinct free ports: args_for(ports)
        writes its configuration and returns its command line. Returns the
        ports once the peer listens on all of them itself. `log`: a file
        where the peer writes its errors, besides stderr."""
        for _ in range(tries):
            ports = free_ports(nports)
            p = self.start(args_for(ports))
            if wait_listening(p, ports):
                return ports
        why = p.stderr.read().decode(errors="replace")
        if log and os.path.exists(log):
            with open(log, errors="replace") as f:
                why += f.read()
        self.fail("peer never listened on its ports; it said:\n" + why)

    def through(self, srv, port):
        """Echo through the proxy on port; the server names our address."""
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            me = s.getsockname()[1]
            self.assertEqual(echo_once(s, b"through\n"), b"through\n")
        srv.wait_log("connection from 127.0.0.1:%d on" % me)

    @needs("haproxy")
    def test_haproxy_send_proxy_v1_and_v2(self):
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            p1, p2 = self.start_listening(2, lambda ports: self.haproxy(
                ports, srv.tcp))
            self.through(srv, p1)
            self.through(srv, p2)

    def haproxy(self, ports, up):
        """Writes haproxy.cfg (frontend v1 on ports[0], v2 on ports[1], to
        up); returns haproxy's command line. noreuseport: by default
        haproxy would share a port with another SO_REUSEPORT listener
        instead of failing to bind it."""
        cfg = os.path.join(self.dir, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("""global
  maxconn 100
  noreuseport
defaults
  mode tcp
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend v1
  bind 127.0.0.1:%d
  default_backend v1
backend v1
  server s1 %s send-proxy
frontend v2
  bind 127.0.0.1:%d
  default_backend v2
backend v2
  server s2 %s send-proxy-v2
""" % (ports[0], up, ports[1], up))
        return ["haproxy", "-db", "-f", cfg]

    @needs("nginx")
    def test_nginx_proxy_protocol(self):
        mod = None
        for d in ("/usr/lib/nginx/modules", "/usr/share/nginx/modules"):
            cand = os.path.join(d, "ngx_stream_module.so")
            if os.path.exists(cand):
                mod = cand
        if mod is None:
            self.skipTest("nginx stream module not installed "
                          "(libnginx-mod-stream)")
        with Server(["-l", "127.0.0.1:0", "--proxy-protocol"]) as srv:
            port, = self.start_listening(
                1, lambda ports: self.nginx(mod, ports[0], srv.tcp),
                log=os.path.join(self.dir, "error.log"))
            self.through(srv, port)

    def nginx(self, mod, port, up):
        """Writes nginx.conf (a stream server on port, to up, with the
        stream module mod); returns nginx's command line."""
        cfg = os.path.join(self.dir, "nginx.conf")
        with open(cfg, "w") as f:
            f.write("""load_module %s;
pid %s/nginx.pid;
error_log %s/error.log;
events { worker_connections 64; }
stream {
  server {
    listen 127.0.0.1:%d;
    proxy_pass %s;
    proxy_protocol on;
  }
}
""" % (mod, self.dir, self.dir, port, up))
        return ["nginx", "-p", self.dir, "-e",
                os.path.join(self.dir, "error.log"), "-c", cfg,
                "-g", "daemon off;"]


if __name__ == "__main__":
    unittest.main()
