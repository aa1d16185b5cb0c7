"""Shell completion (contrib/completion/): the option lists of the bash and
zsh scripts match what each program's --help documents, both ways; and, with
bash, the completion functions offer the right candidates."""
import os
import re
import subprocess
import tempfile
import unittest

from skutil import CLIENT, SERVER, have

HERE = os.path.dirname(os.path.abspath(__file__))
CONTRIB = os.path.join(HERE, "..", "..", "contrib", "completion")

# "  -l, --listen ADDR ..." or "      --tls ..." or "  --conns N ...": an
# option defined at the start of a help line.
OPT_LINE = re.compile(r"^\s{1,8}(?:(-[A-Za-z0-9]),\s+)?(--[a-z0-9][a-z0-9-]*)")


def help_options(*argvs):
    """Every option (short and long) the help texts define."""
    opts = set()
    for argv in argvs:
        out = subprocess.run(argv, capture_output=True, text=True,
                             timeout=30).stdout
        for line in out.splitlines():
            m = OPT_LINE.match(line)
            if m:
                opts.update(o for o in m.groups() if o)
            elif line.startswith("Usage:"):
                opts.update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line))
            # "... [--conns N] [--interval S]": a synopsis of options
            opts.update(re.findall(r"\[(--[a-z][a-z0-9-]*)", line))
    return opts


def bash_options(prog):
    """The words of the option list (the compgen -W list with --help)."""
    with open(os.path.join(CONTRIB, prog + ".bash")) as f:
        text = f.read()
    for words in re.findall(r"compgen -W '([^']*)'", text):
        if "--help" in words.split():
            return {w for w in words.split() if w.startswith("-")}
    raise AssertionError("no option list in %s.bash" % prog)


def zsh_options(prog):
    with open(os.path.join(CONTRIB, "_" + prog)) as f:
        text = f.read()
    return set(re.findall(r"['{,)](--?[A-Za-z0-9][a-z0-9-]*)(?=[=+\[,}'])",
                          text))


def bash_complete(prog, words, cwd=None):
    """Candidates of prog's bash completion for the command line `words`
    (the last one being completed)."""
    func = "_" + prog.replace("-", "_")
    script = os.path.join(CONTRIB, prog + ".bash")
    quoted = " ".join("'%s'" % w.replace("'", "'\\''") for w in words)
    code = ("source '%s'\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n%s\n"
            "printf '%%s\\n' \"${COMPREPLY[@]}\"\n"
            % (script, quoted, len(words) - 1, func))
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", code],
                       capture_output=True, text=True, timeout=30, cwd=cwd)
    if r.returncode != 0:
        raise AssertionError("bash failed: %s" % r.stderr)
    return sorted(l for l in r.stdout.splitlines() if l)


class Options(unittest.TestCase):
    def check(self, prog, documented):
        self.assertIn("--help", documented)
        script = bash_options(prog)
        self.assertEqual(sorted(documented - script), [],
                         "documented but not completed (bash)")
        self.assertEqual(sorted(script - documented), [],
                         "completed but not documented (bash)")
        zsh = zsh_options(prog)
        self.assertEqual(sorted(documented - zsh), [],
                         "documented but not completed (zsh)")
        self.assertEqual(sorted(zsh - documented), [],
                         "completed but not documented (zsh)")

    def test_server_options_match_help(self):
        self.check("sockit-server", help_options([SERVER, "--help"]))

    def test_client_options_match_help(self):
        self.check("sockit-client",
                   help_options([CLIENT, "--help"],
                                [CLIENT, "--bench", "--help"]))

    def test_server_modes_match_help(self):
        out = subprocess.run([SERVER, "--help"], capture_output=True,
                             text=True, timeout=30).stdout
        modes = re.findall(r"^  ([a-z]+)\s{2,}",
                           out.split("\nModes:\n", 1)[1], re.M)
        self.assertIn("echo", modes)
        with open(os.path.join(CONTRIB, "sockit-server.bash")) as f:
            self.assertIn("compgen -W '%s'" % " ".join(modes), f.read())

    @unittest.skipUnless(have("zsh"), "zsh not installed")
    def test_zsh_scripts_parse(self):
        for prog in ("sockit-server", "sockit-client"):
            r = subprocess.run(["zsh", "-n", os.path.join(CONTRIB, "_" + prog)],
                               capture_output=True, text=True, timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)


@unittest.skipUnless(have("bash"), "bash not installed")
class Bash(unittest.TestCase):
    def test_server_option_prefix(self):
        self.assertEqual(bash_complete("sockit-server", ["sockit-server",
                                                         "--mo"]),
                         ["--mode"])
        self.assertEqual(bash_complete("sockit-server",
                                       ["sockit-server", "--max-c"]),
                         ["--max-conns"])

    def test_server_mode_and_frame_values(self):
        self.assertEqual(bash_complete("sockit-server",
                                       ["sockit-server", "--mode", "e"]),
                         ["echo"])
        self.assertEqual(bash_complete("sockit-server",
                                       ["sockit-server", "-m", "c"]),
                         ["chargen", "chat"])
        self.assertEqual(bash_complete("sockit-server",
                                       ["sockit-server", "--frame", "len"]),
                         ["len16", "len32"])
        # --opt=value as one word
        self.assertEqual(bash_complete("sockit-server",
                                       ["sockit-server", "--mode=di"]),
                         ["discard"])

    def test_files_for_file_options(self):
        with tempfile.TemporaryDirectory() as d:
            for name in ("cert.pem", "key.pem", "other.txt"):
                open(os.path.join(d, name), "w").close()
            os.mkdir(os.path.join(d, "certs"))
            self.assertEqual(
                bash_complete("sockit-server",
                              ["sockit-server", "--cert", "ce"], cwd=d),
                ["cert.pem", "certs"])
            self.assertEqual(
                bash_complete("sockit-server",
                              ["sockit-server", "--root", "c"], cwd=d),
                ["certs"])
            self.assertEqual(
                bash_complete("sockit-client",
                              ["sockit-client", "--file", "o"], cwd=d),
                ["other.txt"])

    def test_client_values(self):
        self.assertEqual(bash_complete("sockit-client",
                                       ["sockit-client", "--bench-m"]),
                         ["--bench-mode"])
        self.assertEqual(bash_complete("sockit-client",
                                       ["sockit-client", "--bench-mode", "c"]),
                         ["connect"])
        self.assertEqual(bash_complete("sockit-client",
                                       ["sockit-client", "-f", "a"]),
                         ["ascii4"])


if __name__ == "__main__":
    unittest.main()
