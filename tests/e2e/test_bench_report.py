"""bench/run.py's report (issue 16, part 4), rendered from a real run kept
in data/bench-report.json.gz (the run of docs/PERFORMANCE.md with each
run's raw samples dropped): one plot per question, each a valid SVG that
says which direction is better, labels not gnuplot-"enhanced" (io_uring
stays io_uring), and the targets judged from the run's figures."""
import gzip
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
BENCH = os.path.join(HERE, "..", "..", "bench")
FIXTURE = os.path.join(HERE, "data", "bench-report.json.gz")
PLOTS = ("throughput-vs-conns.svg", "latency.svg", "cpu-vs-floor.svg",
         "udp.svg", "tls.svg")

sys.path.insert(0, BENCH)
import run as bench_run  # noqa: E402  (bench/run.py)


def load_fixture():
    with gzip.open(FIXTURE) as f:
        data = json.load(f)
    return data["results"], data["tls"]


def svg_text(path):
    """All the text an SVG shows, and the SVG itself (parsed, so it is
    well-formed)."""
    root = ET.parse(path).getroot()
    return " ".join(t.strip() for t in root.itertext() if t.strip())


class BenchReportTest(unittest.TestCase):
    def setUp(self):
        if shutil.which("gnuplot") is None:
            self.fail("gnuplot is not installed (scripts/deps.sh test "
                      "installs gnuplot-nox)")
        self.tmp = tempfile.mkdtemp(prefix="sk-bench-report-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.results, self.tls = load_fixture()

    def render(self, results, tls=None):
        res = os.path.join(self.tmp, "results.json")
        with open(res, "w") as f:
            json.dump(results, f)
        argv = [sys.executable, os.path.join(BENCH, "run.py"), "--from", res]
        if tls is not None:
            t = os.path.join(self.tmp, "tls.json")
            with open(t, "w") as f:
                json.dump(tls, f)
            argv += ["--tls", t]
        p = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stderr[-2000:])
        self.assertNotIn("failed", p.stderr)
        return p

    def test_every_question_has_its_plot(self):
        self.render(self.results, self.tls)
        for name in PLOTS:
            path = os.path.join(self.tmp, name)
            self.assertTrue(os.path.exists(path), name)
            with open(path) as f:
                raw = f.read()
            # gnuplot's enhanced mode turns io_uring into io<sub>u</sub>ring
            # (tspans moved with dy=): never in these plots.
            self.assertNotIn('dy="', raw, name)
            text = svg_text(path)
            self.assertRegex(text, r"(higher|lower) is better", name)
        thr = svg_text(os.path.join(self.tmp, "throughput-vs-conns.svg"))
        self.assertIn("io_uring", thr)
        self.assertIn("pipeline 1", thr)
        self.assertIn("pipeline 16", thr)
        udp = svg_text(os.path.join(self.tmp, "udp.svg"))
        for label in ("sockperf server", "sockit-server --mode sockperf",
                      "iperf3", "loss"):
            self.assertIn(label, udp)
        floor = svg_text(os.path.join(self.tmp, "cpu-vs-floor.svg"))
        self.assertIn("floor", floor)

    def test_udp_plot_carries_the_runs_figures(self):
        self.render(self.results)
        with open(os.path.join(self.tmp, "udp-rate.dat")) as f:
            rows = [ln for ln in f if ln.strip()]
        # sockperf's three client modes and the two batching cases
        self.assertEqual(len(rows), 5, rows)
        cases = {e["id"]: e for e in self.results["cases"]}
        e = cases["udp-echo-64B-c100"]
        want = next(v for v in e["variants"]
                    if v["label"].startswith("sockperf server"))
        got = next(r for r in rows if r.startswith('"100 socket(s)'))
        # name, then sockit --mode sockperf, sockit echo, sockperf server
        fields = got.rsplit('"', 1)[1].split()
        self.assertEqual(fields[2],
                         f"{want['summary']['msgs_per_sec'][0]:.4g}")
        with open(os.path.join(self.tmp, "udp-oneway.dat")) as f:
            oneway = f.read()
        self.assertRegex(oneway, r'"loss \d+\.\d %"')

    def test_udp_plot_without_udp_cases(self):
        cases = [e for e in self.results["cases"]
                 if not e["group"].startswith("udp")]
        out = bench_run.plot_udp(dict(self.results, cases=cases),
                                 pathlib.Path(self.tmp))
        self.assertIsNone(out)
        # Without the one-way case the echo panels still render.
        cases = [e for e in self.results["cases"]
                 if e["group"] != "udp-oneway"]
        out = bench_run.plot_udp(dict(self.results, cases=cases),
                                 pathlib.Path(self.tmp))
        self.assertTrue(out.exists())
        self.assertFalse(
            os.path.exists(os.path.join(self.tmp, "udp-oneway.dat")))
        # Only the one-way case: its panel alone, iperf3 in the legend.
        cases = [e for e in self.results["cases"]
                 if e["group"] == "udp-oneway"]
        out = bench_run.plot_udp(dict(self.results, cases=cases),
                                 pathlib.Path(self.tmp))
        text = svg_text(out)
        self.assertIn("iperf3", text)
        self.assertIn("loss", text)
        self.assertNotIn("datagrams/s", text)

    def test_targets_are_judged_from_the_run(self):
        results = dict(self.results, tls=self.tls)
        table = bench_run.targets_md(results)
        rows = {r.split(" | ")[0].lstrip("| "): r
                for r in table.splitlines()[2:]}

        def row(prefix):
            hits = [v for k, v in rows.items() if k.startswith(prefix)]
            self.assertEqual(len(hits), 1, prefix)
            return hits[0]

        # Each verdict follows from the fixture's medians: recompute two.
        cases = {e["id"]: e for e in self.results["cases"]}

        def med(case, kind, key, client=None):
            v = next(x for x in cases[case]["variants"]
                     if x["server"] == kind and
                     (client is None or x["client"] == client))
            return v["summary"][key][0]

        sp = "sockit-client --udp --sockperf"
        ratio = (med("udp-echo-64B-c1", "sockit-udp", "msgs_per_sec", sp) /
                 med("udp-echo-64B-c1", "sockperf-udp", "msgs_per_sec", sp))
        r = row("UDP echo 64 B replies/s")
        self.assertIn(f"1 socket(s) {ratio:.2f}×", r)
        self.assertIn("**met**" if ratio >= 1.5 else "**missed**", r)
        ratio = (med("echo-64B-c100-p16", "sockit",
                     "server_cpu_us_per_msg") /
                 med("echo-64B-c100-p16", "floor-epoll",
                     "server_cpu_us_per_msg"))
        r = row("server CPU per message, echo 64 B × 100 connections, "
                "≤ 1.1× the bare epoll loop")
        self.assertIn(f"pipeline 16 {ratio:.2f}×", r)
        r = row("TLS bulk")
        self.assertRegex(r, r"kernel TLS (not )?available")
        r = row("resumed TLS handshakes/s ≥ 3× full")
        self.assertRegex(r, r"P-256 TLS 1\.2 \d+\.\d\d×")
        for verdict in re.findall(r"\*\*(\w+)\*\*", table):
            self.assertIn(verdict, ("met", "missed"))
        # Every target is judged from the fixture: none is n/a.
        for r in table.splitlines()[2:]:
            self.assertFalse(r.split(" | ", 1)[1].startswith("n/a"), r)


if __name__ == "__main__":
    unittest.main()
