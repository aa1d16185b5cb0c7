"""The section-3 man pages (docs/man3) against the library and its headers.

- every symbol the shared library exports is named in some page's NAME
  section (so `man <symbol>` has an alias to install) and every function a
  header declares is too;
- every sockit function a page names exists in the headers, and each
  SYNOPSIS prototype is the header's prototype (no stale names or
  signatures); every sk_ / SK_ identifier a page mentions exists in the
  headers;
- each page renders without a warning from groff/man;
- docs/man3/CMakeLists.txt installs the pages and one alias per NAME entry,
  and `man -w` resolves an alias (when cmake and man are installed).
"""
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MAN3 = os.path.join(ROOT, "docs", "man3")
INCLUDE = os.path.join(ROOT, "include")
BUILD_DIR = os.environ.get("SK_BUILD_DIR", os.path.join(ROOT, "build"))

PROTO_RE = re.compile(
    r"^SK_EXTERN\s+([^;{}#]*?)\b(sk_\w+)\s*\(([^()]*)\)\s*;", re.M)


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def headers():
    paths = [os.path.join(INCLUDE, "sockit.h")]
    paths += sorted(glob.glob(os.path.join(INCLUDE, "sockit", "*.h")))
    return {p: read(p) for p in paths}


def strip_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def norm(proto):
    """One spelling of a prototype: single spaces, none around * ( ) , ."""
    proto = re.sub(r"\s+", " ", proto).strip()
    proto = re.sub(r"\s*([*(),\[\]])\s*", r"\1", proto)
    return proto


def header_prototypes():
    """{function name: normalised prototype} of every SK_EXTERN function."""
    protos = {}
    for text in headers().values():
        for ret, name, args in PROTO_RE.findall(strip_comments(text)):
            protos[name] = norm("%s %s(%s)" % (ret, name, args))
    return protos


def header_identifiers():
    """Every sk_* / SK_* word in the headers (comments included), plus the
    SK_E* names the SK_ERRNO_MAP X-macro generates."""
    words = set()
    for text in headers().values():
        words.update(re.findall(r"\b(?:sk|SK)_\w+", text))
        words.update("SK_" + n for n in re.findall(r"XX\((\w+),", text))
    return words


def pages():
    return sorted(glob.glob(os.path.join(MAN3, "*.3")))


def page_name(path):
    return os.path.splitext(os.path.basename(path))[0]


def split_args(line):
    """The arguments of a roff macro line, honouring double quotes."""
    return [a[1:-1] if a.startswith('"') else a
            for a in re.findall(r'"[^"]*"|\S+', line)]


def sections(path):
    """{section name: [lines]} of an mdoc page."""
    out, cur = {}, None
    for line in read(path).splitlines():
        if line.startswith(".Sh "):
            cur = line[4:].strip()
            out[cur] = []
        elif cur is not None:
            out[cur].append(line)
    return out


def name_entries(path):
    return [split_args(l)[1] for l in sections(path).get("NAME", [])
            if l.startswith(".Nm ")]


def synopsis_prototypes(path):
    """[(name, normalised prototype)] from .Ft + .Fn / .Fo .Fa .Fc lines."""
    protos, ret, fo = [], None, None
    for line in sections(path).get("SYNOPSIS", []):
        args = split_args(line)
        if not args:
            continue
        if args[0] == ".Ft":
            ret = " ".join(args[1:])
        elif args[0] == ".Fn":
            params = args[2:] or ["void"]
            protos.append((args[1], norm("%s %s(%s)" % (ret, args[1],
                                                        ", ".join(params)))))
        elif args[0] == ".Fo":
            fo = (args[1], [])
        elif args[0] == ".Fa" and fo is not None:
            fo[1].append(" ".join(args[1:]))
        elif args[0] == ".Fc" and fo is not None:
            protos.append((fo[0], norm("%s %s(%s)" % (
                ret, fo[0], ", ".join(fo[1] or ["void"])))))
            fo = None
    return protos


def functions_named(path):
    """Every name a page marks up as a function (.Fn / .Fo, NAME's .Nm)."""
    names = set(n for n in name_entries(path) if n.startswith("sk_"))
    for line in read(path).splitlines():
        if line.startswith("."):
            # "sk_opt_*" stands for a family, not one function.
            names.update(n for n in re.findall(r"\b(?:Fn|Fo)\s+\"?(sk_[\w*]+)",
                                               line) if "*" not in n)
    return names


def exported_symbols():
    """T/D/B symbols of the built libsockit.so, or None if it is not there."""
    libs = sorted(glob.glob(os.path.join(BUILD_DIR, "libsockit.so*")))
    if not libs or shutil.which("nm") is None:
        return None
    out = subprocess.run(["nm", "-D", "--defined-only", libs[0]], check=True,
                         capture_output=True, text=True).stdout
    syms = set()
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "TDB":
            syms.add(f[2])
    return syms


class ManPages(unittest.TestCase):

    def test_pages_exist(self):
        names = {page_name(p) for p in pages()}
        for want in ["sockit", "sk_socket", "sk_stream", "sk_loop", "sk_udp",
                     "sk_tls", "sk_endpoint", "sk_frame", "sk_error"]:
            self.assertIn(want, names)
        # Every page points at every other one.
        for p in pages():
            text = read(p)
            see_also = text.split(".Sh SEE ALSO", 1)
            self.assertEqual(len(see_also), 2, "%s has no SEE ALSO" % p)
            for other in names - {page_name(p)}:
                self.assertIn(".Xr %s 3" % other, see_also[1],
                              "%s: SEE ALSO lacks %s(3)" % (p, other))

    def test_every_export_and_declaration_documented(self):
        named = {}
        for p in pages():
            for n in name_entries(p):
                self.assertNotIn(n, named, "%s is in the NAME of %s and %s"
                                 % (n, named.get(n), page_name(p)))
                named[n] = page_name(p)
        declared = set(header_prototypes())
        self.assertGreater(len(declared), 100)
        missing = sorted(declared - set(named))
        self.assertEqual(missing, [], "declared but in no page's NAME")
        syms = exported_symbols()
        if syms is None:
            self.skipTest("no libsockit.so in %s (or no nm): exports not "
                          "checked" % BUILD_DIR)
        self.assertGreater(len(syms), 100)
        missing = sorted(syms - set(named))
        self.assertEqual(missing, [], "exported but in no page's NAME")

    def test_no_stale_names(self):
        protos = header_prototypes()
        titles = {page_name(p) for p in pages()}
        idents = header_identifiers() | titles | {t.upper() for t in titles}
        for p in pages():
            stale = sorted(functions_named(p) - set(protos))
            self.assertEqual(stale, [], "%s names functions no header "
                             "declares" % p)
            text = read(p)
            words = set(re.findall(r"\b(?:sk|SK)_\w+", text))
            # Words like SK_E* or sk_opt_* in prose name a family.
            unknown = sorted(w for w in words - idents
                             if not w.endswith("_"))
            self.assertEqual(unknown, [], "%s mentions names no header "
                             "has" % p)

    def test_synopsis_matches_headers(self):
        protos = header_prototypes()
        seen = set()
        for p in pages():
            nm = set(name_entries(p))
            for name, proto in synopsis_prototypes(p):
                self.assertIn(name, protos, "%s: %s is not declared"
                              % (p, name))
                self.assertEqual(proto, protos[name], "%s: SYNOPSIS of %s "
                                 "differs from the header" % (p, name))
                self.assertIn(name, nm, "%s: %s is in SYNOPSIS, not NAME"
                              % (p, name))
                seen.add(name)
        self.assertEqual(sorted(set(protos) - seen), [],
                         "declared but in no SYNOPSIS")

    def test_pages_render_without_warnings(self):
        if shutil.which("groff") is None and shutil.which("man") is None:
            self.skipTest("neither groff nor man is installed (Debian: "
                          "groff-base, man-db)")
        for p in pages():
            cmds = []
            if shutil.which("groff"):
                cmds.append(["groff", "-mandoc", "-ww", "-z", "-Tutf8", p])
            if shutil.which("man"):
                cmds.append(["man", "--warnings", "-l", "-Tutf8", p])
            for cmd in cmds:
                r = subprocess.run(cmd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, text=True,
                                   env=dict(os.environ, MANWIDTH="80",
                                            MAN_KEEP_FORMATTING="0"),
                                   timeout=60)
                self.assertEqual((r.returncode, r.stderr), (0, ""),
                                 "%s: %s" % (" ".join(cmd[:-1]), p))

    def test_install_aliases(self):
        cmake = shutil.which("cmake")
        if cmake is None:
            self.skipTest("cmake is not installed")
        with tempfile.TemporaryDirectory() as tmp:
            src = os.path.join(tmp, "src")
            os.mkdir(src)
            with open(os.path.join(src, "CMakeLists.txt"), "w") as f:
                f.write("cmake_minimum_required(VERSION 3.20)\n"
                        "project(mantest NONE)\n"
                        "add_subdirectory(\"%s\" man3)\n" % MAN3)
            build, prefix = os.path.join(tmp, "b"), os.path.join(tmp, "p")
            for cmd in ([cmake, "-S", src, "-B", build],
                        [cmake, "--install", build, "--prefix", prefix]):
                r = subprocess.run(cmd, capture_output=True, text=True,
                                   timeout=120)
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            mandir = os.path.join(prefix, "share", "man")
            man3 = os.path.join(mandir, "man3")
            for p in pages():
                page = os.path.basename(p)
                self.assertTrue(os.path.isfile(os.path.join(man3, page)))
                for n in name_entries(p):
                    if n == page_name(p):
                        continue
                    with open(os.path.join(man3, n + ".3")) as f:
                        self.assertEqual(f.read(), ".so man3/%s\n" % page)
            if shutil.which("man") is None:
                self.skipTest("man is not installed (Debian: man-db): "
                              "aliases not resolved")
            env = dict(os.environ, MANPATH=mandir, MANWIDTH="80")
            r = subprocess.run(["man", "-w", "sk_socket_connect"], env=env,
                               capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertTrue(r.stdout.strip().startswith(man3), r.stdout)
            r = subprocess.run(["man", "-P", "cat", "sk_socket_connect"],
                               env=env, capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("sk_socket_connect(sk_socket *s", r.stdout)


if __name__ == "__main__":
    unittest.main()
