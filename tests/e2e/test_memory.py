"""Memory per connection stays bounded by --max-queue whatever the frame
size: a peer that floods tiny frames and never reads its replies must not
make the server allocate a request per reply (issue: 1-byte replies cost
4 KiB each, 2.3 GiB for one client).

Each case floods one server with 1-, 2- and 3-byte frames (and zero-length
keep-alives where the framing has them) from clients that never read, until
the server stops reading (back-pressure) or a byte cap is reached, then
checks the server's resident memory grew by at most a few MiB per
connection, during the flood and after the clients have gone. Under
sanitizers RSS means nothing (shadow memory, quarantine): the floods still
run, the RSS checks are skipped.

The kernel's own send buffer absorbs up to tcp_wmem's maximum (4 MiB) of
replies before the server queues anything, and tiny frames cost a system
call each, so on the host a bounded flood would never reach the server's
queue. The test process therefore moves into a network namespace of its
own (root only; CTest runs each test as its own process) with loopback up
and small TCP buffers, so the queue fills after a few hundred KiB.
"""
import ctypes
import os
import ssl
import subprocess
import select
import socket
import struct
import time
import unittest

from skutil import SANITIZED, Server, connect


# Growth allowed per flooding connection: the --max-queue, the
# kernel-bounded overshoot of one read's replies, the loop's request cache.
MIB = 1024 * 1024
ALLOWED_PER_CONN = 4 * MIB
# Bytes sent per connection at most (under sanitizers, where RSS is not
# checked, only enough to run the paths), and for at most this long.
FLOOD_CAP = MIB // 2 if SANITIZED else 3 * MIB
# At least twice --max-queue of tiny frames: with a request per reply that
# alone would cost hundreds of MiB.
FLOOD_MIN = 128 * 1024
FLOOD_SECONDS = 20.0
STALL_SECONDS = 1.0   # unwritable this long = the server stopped reading


CLONE_NEWNET = 0x40000000


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("needs root for a private network namespace")
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNET) != 0:
        raise unittest.SkipTest("unshare(CLONE_NEWNET): %s"
                                % os.strerror(ctypes.get_errno()))
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    for name in ("tcp_wmem", "tcp_rmem"):
        with open("/proc/sys/net/ipv4/" + name, "w") as f:
            f.write("4096 16384 65536")


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS for pid %d" % pid)


def frames(frame, size):
    """One frame of `size` bytes of payload (line: `size` bytes with the
    newline) in the server's framing, repeated to about 64 KiB."""
    body = b"a" * size
    if frame == "line":
        one = b"a" * (size - 1) + b"\n" if size > 0 else b"\n"
    elif frame == "len16":
        one = struct.pack(">H", size) + body
    elif frame == "len32":
        one = struct.pack(">I", size) + body
    elif frame == "ascii4":
        one = b"%04d" % size + body
    else:
        raise ValueError(frame)
    return one * max(1, 65536 // len(one))


def flood(socks, payload, flood_min):
    """Sends payload round-robin on socks until each stalls (the server
    paused reading it) or the caps are reached. Returns bytes sent per
    socket."""
    sent = {s: 0 for s in socks}
    last_progress = {s: time.monotonic() for s in socks}
    active = set(socks)
    closed = set()
    off = {s: 0 for s in socks}
    view = memoryview(payload)
    deadline = time.monotonic() + FLOOD_SECONDS
    while active and time.monotonic() < deadline:
        _, w, _ = select.select([], list(active), [], 0.1)
        now = time.monotonic()
        for s in w:
            try:
                # Keep the stream whole: a partial send resumes mid-frame.
                n = s.send(view[off[s]:])
            except (BlockingIOError, ssl.SSLWantWriteError,
                    ssl.SSLWantReadError):
                n = 0
            except (ConnectionResetError, BrokenPipeError):
                closed.add(s)  # chat disconnects a slow reader
                active.discard(s)
                continue
            if n > 0:
                sent[s] += n
                off[s] = (off[s] + n) % len(payload)
                last_progress[s] = now
        for s in list(active):
            # A stall ends the flood only once it was big enough: a busy
            # machine may leave the server unscheduled for a while.
            if sent[s] >= FLOOD_CAP or (
                    now - last_progress[s] > STALL_SECONDS and
                    sum(sent.values()) >= flood_min):
                active.discard(s)
    return [sent[s] for s in socks], len(closed)


class TinyFrameFlood(unittest.TestCase):

    def run_case(self, args, payloads, nconns=1, max_queue="64K",
                 flood_min=FLOOD_MIN):
        if SANITIZED:
            # RSS is not checked there and a sanitized server is slow:
            # the flood only has to run the paths.
            flood_min = 16 * 1024
        chat = "chat" in args
        tls = "--tls" in args
        # A small --max-queue reaches back-pressure sooner; a request per
        # reply would still cost 64 Ki x 4 KiB = 256 MiB.
        with Server(["-l", "127.0.0.1:0", "-w", "1", "-q",
                     "--max-queue", max_queue] + args) as srv:
            if tls:
                srv.addrs["tcp"] = srv.addrs["tls"]
            pid = srv.proc.pid
            base = rss_bytes(pid)
            peak = base
            for payload in payloads:
                socks = []
                for _ in range(nconns):
                    s = connect(srv.tcp)
                    # Small receive buffer, never read: replies pile up in
                    # the server.
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                    if tls:
                        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                        ctx.check_hostname = False
                        ctx.verify_mode = ssl.CERT_NONE
                        s = ctx.wrap_socket(s)
                    s.setblocking(False)
                    socks.append(s)
                sent, nclosed = flood(socks, payload, flood_min)
                # The flood must have been big enough that a request per
                # reply would have cost far more than the allowance.
                self.assertGreaterEqual(sum(sent), flood_min,
                                        "flood too small: %r" % sent)
                if not chat:
                    self.assertEqual(nclosed, 0, "the server cut a client")
                peak = max(peak, rss_bytes(pid))
                for s in socks:
                    s.close()
                if tls:
                    continue
                # The server is alive and serves a fresh client.
                with connect(srv.tcp) as probe:
                    probe.sendall(payload[:64])
                    probe.shutdown(socket.SHUT_WR)
                    got = b""
                    while True:
                        b = probe.recv(65536)
                        if not b:
                            break
                        got += b
                    self.assertTrue(len(got) > 0 or chat)
            after = rss_bytes(pid)
            if SANITIZED:
                return
            limit = ALLOWED_PER_CONN * nconns
            self.assertLess(peak - base, limit,
                            "RSS grew %.1f MiB during the flood (limit %.1f)"
                            % ((peak - base) / MIB, limit / MIB))
            self.assertLess(after - base, limit,
                            "RSS %.1f MiB above start after the clients left"
                            % ((after - base) / MIB))

    def test_line_tiny_frames(self):
        self.run_case(["-f", "line"], [frames("line", n) for n in (1, 2, 3)])

    def test_len16_tiny_frames(self):
        self.run_case(["-f", "len16"],
                      [frames("len16", n) for n in (0, 1, 2, 3)])

    def test_len32_tiny_frames(self):
        self.run_case(["-f", "len32"],
                      [frames("len32", n) for n in (0, 1, 2, 3)])

    def test_ascii4_tiny_frames(self):
        self.run_case(["-f", "ascii4"],
                      [frames("ascii4", n) for n in (0, 1, 2, 3)])

    def test_tls_line_tiny_frames(self):
        # Each 1-byte reply is a TLS record of about 24 bytes, so the 64 KiB
        # queue is full after some 3 KiB of requests and the kernel's
        # buffers hold the rest: a smaller flood is all there is (with a
        # request per reply it would still cost 2,800 x 4 KiB).
        self.run_case(["-f", "line", "--tls", "--self-signed"],
                      [frames("line", n) for n in (1, 2, 3)],
                      flood_min=32 * 1024)

    def test_chat_tiny_lines(self):
        # Four clients that all talk and none reads: each message fans out
        # to three slow readers.
        # Each chat line carries the sender's name (~20 bytes), so a reader
        # is disconnected after max_queue / 20 lines: a larger cap than the
        # echo cases lets a request per line show.
        self.run_case(["--mode", "chat"],
                      [frames("line", n) for n in (1, 2, 3)], nconns=4,
                      max_queue="512K")


if __name__ == "__main__":
    unittest.main()
