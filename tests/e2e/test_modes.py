"""The mode table (programs/sockit-server/modes.c and mode.h): --help, the
--mode error, the man page's MODES list and the shell completions all name
the same modes, and what a mode's row says (descriptors per connection, the
frames and transports it takes, its own options) is what the server does.
Nothing here needs more than --help, --check or a loopback listener."""
import os
import re
import resource
import subprocess
import tempfile
import unittest

from skutil import SERVER, Server, connect

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
MAN = os.path.join(ROOT, "docs", "man", "sockit-server.1")
CONTRIB = os.path.join(ROOT, "contrib", "completion")


def run(*args, preexec=None):
    return subprocess.run([SERVER] + list(args), capture_output=True,
                          text=True, timeout=30, preexec_fn=preexec)


def help_modes():
    """The modes of --help's "Modes:" section, in order."""
    out = run("--help").stdout
    section = out.split("\nModes:\n", 1)[1].split("\n\n", 1)[0]
    return [line.split()[0] for line in section.splitlines()]


class ModeTable(unittest.TestCase):
    def test_help_and_mode_error_name_every_mode(self):
        modes = help_modes()
        self.assertIn("sockperf", modes)
        self.assertEqual(len(modes), len(set(modes)))
        out = run("--help").stdout
        m = re.search(r"^  -m, --mode MODE\s+(.*)$", out, re.M)
        self.assertIsNotNone(m, out)
        listed = [w.replace("(default)", "").strip()
                  for w in m.group(1).split(",")]
        self.assertEqual(listed, modes)
        self.assertIn("(default)", m.group(1).split(",")[0])
        r = run("--mode", "nope")
        self.assertEqual(r.returncode, 2)
        m = re.search(r"unknown mode 'nope' \(([^)]*)\)", r.stderr)
        self.assertIsNotNone(m, r.stderr)
        self.assertEqual([w.strip() for w in m.group(1).split(",")], modes)

    def test_man_page_and_completions_list_the_table(self):
        modes = help_modes()
        with open(MAN) as f:
            man = f.read()
        section = man.split("\n.Sh MODES\n", 1)[1].split("\n.Sh ", 1)[0]
        # The tags of the section's outer list (its first nesting level).
        tags, depth = [], 0
        for line in section.splitlines():
            if line.startswith(".Bl"):
                depth += 1
            elif line.startswith(".El"):
                depth -= 1
            elif depth == 1 and line.startswith(".It Cm "):
                tags.append(line.split()[2])
        self.assertEqual(tags, modes)
        with open(os.path.join(CONTRIB, "sockit-server.bash")) as f:
            bash = f.read()
        self.assertIn("compgen -W '%s'" % " ".join(modes), bash)
        with open(os.path.join(CONTRIB, "_sockit-server")) as f:
            zsh = f.read()
        self.assertIn(":mode:(%s)" % " ".join(modes), zsh)

    def test_every_mode_starts(self):
        """Each row is usable as it is: a TCP listener, the mode's default
        frame, and the readiness line naming the mode."""
        with tempfile.TemporaryDirectory() as root:
            for mode in help_modes():
                args = ["--mode", mode, "-l", "127.0.0.1:0", "--workers", "1"]
                args += mode_required_args(mode, root)
                with Server(args) as srv:
                    self.assertIn("(%s" % mode, srv.log[-1])


def mode_required_args(mode, root):
    """What a mode cannot start without: files serves a directory, forward
    needs an upstream (only resolved at start; nothing connects to it)."""
    return {"files": ["--root", root],
            "forward": ["--to", "127.0.0.1:1"]}.get(mode, [])


def lowered_max_conns(mode, root):
    """--max-conns as the server lowers it under a 256-descriptor limit."""
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))
    args = ["--mode", mode, "--max-conns", "100000", "--workers", "1",
            "-l", "127.0.0.1:0", "--check"]
    args += mode_required_args(mode, root)
    r = run(*args, preexec=limit)
    m = re.search(r"--max-conns lowered from 100000 to (\d+)", r.stderr)
    assert m is not None, r.stderr
    return int(m.group(1))


class Descriptors(unittest.TestCase):
    def test_descriptors_per_connection_come_from_the_mode(self):
        """--max-conns is capped by the descriptor limit divided by what
        one connection of the mode may hold: three for files (socket, file,
        directory), six for forward (client, upstream, two pipes), one for
        every other mode, sockperf included (it parses its own protocol
        like files, but holds no file)."""
        per_conn = {"files": 3, "forward": 6}
        with tempfile.TemporaryDirectory() as root:
            one = lowered_max_conns("echo", root)
            self.assertGreater(one, 100)
            for mode in help_modes():
                got = lowered_max_conns(mode, root)
                self.assertEqual(got, one // per_conn.get(mode, 1), mode)


class Rules(unittest.TestCase):
    def test_frames_transports_and_options_follow_the_row(self):
        cases = [
            (["--mode", "chat", "--frame", "len16"], "line-based"),
            (["--mode", "sockperf", "--frame", "line"],
             "--frame does not apply to --mode sockperf"),
            (["--mode", "chat", "-l", "udp://127.0.0.1:0"],
             "--mode chat does not work over UDP"),
            (["--mode", "sockperf", "--root", "/"],
             "--root applies only to --mode files"),
            # Every mode-only option of a row, wherever --mode comes
            # (--check: nothing would listen if one were let through).
            (["--mode", "echo", "--max-file", "5", "--check"],
             "--max-file applies only to --mode files"),
            (["--max-file", "5", "--mode", "chat", "--check"],
             "--max-file applies only to --mode files"),
            (["--mode", "files", "--max-file", "5x", "--check"],
             "--max-file: '5x' is not a size"),
        ]
        for args, needle in cases:
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(needle, r.stderr, args)
            self.assertEqual(len(r.stderr.strip().splitlines()), 2, r.stderr)

    def test_chat_takes_lines_without_being_told(self):
        with Server(["--mode", "chat", "-l", "127.0.0.1:0"]) as srv:
            self.assertIn("(chat)", srv.log[-1])
            a = connect(srv.tcp)
            b = connect(srv.tcp)
            # a hears b join, then b's line, framed by lines.
            line = b""
            while not line.endswith(b"\n"):
                line += a.recv(1)
            self.assertIn(b"joined", line)
            b.sendall(b"hello\n")
            line = b""
            while not line.endswith(b"\n"):
                line += a.recv(1)
            self.assertTrue(line.endswith(b"] hello\n"), line)
            a.close()
            b.close()


if __name__ == "__main__":
    unittest.main()
