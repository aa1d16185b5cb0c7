"""bench/forward.py (issue 15's forwarding bench): one tiny run of every row
through every forwarder writes forward.json with a figure for each
forwarder that can do the row, the added latency against the direct path,
n/a where a forwarder cannot (stunnel relays no plaintext), and the
targets judged. Skipped when a peer (HAProxy, socat, stunnel4) is not
installed."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

from skutil import BIN_DIR, SERVER

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                      "bench", "forward.py")
TOOLS = ("haproxy", "socat", "stunnel4", "openssl", "taskset")
CASES = ("bulk-128K-c1", "bulk-128K-c16", "pp-64B")
# A cell may count nothing in this tiny run (0.3 s) on a loaded machine or
# under a sanitizer (16 TLS handshakes through socat's forks outlasting the
# warm-up, a forwarder slow to start); the bench records that as an error
# with the client's counts. Such cells are allowed, but every forwarder
# must have measured something somewhere.
EMPTY = re.compile(r"^sockit-client exit 1: 0 messages in ")


def has_forward_mode():
    p = subprocess.run([SERVER, "--help"], capture_output=True, timeout=30)
    return b"forward" in p.stdout + p.stderr


class BenchForwardTest(unittest.TestCase):
    # The bench measures Release builds; a sanitizer build would only make
    # every cell slower (its memory checks run in test_forward.py).
    @unittest.skipIf(os.environ.get("SK_SANITIZED"), "sanitizer build")
    def test_every_row_through_every_forwarder(self):
        missing = [t for t in TOOLS if shutil.which(t) is None]
        if missing:
            self.skipTest("not installed: " + ", ".join(missing))
        out = tempfile.mkdtemp(prefix="sk-bench-fwd-")
        self.addCleanup(shutil.rmtree, out, True)
        p = subprocess.run(
            # The warm-up covers 16 TLS handshakes through socat (a fork
            # each) on a loaded core before anything is measured.
            [sys.executable, SCRIPT, "--runs", "1", "--duration", "0.3",
             "--warmup", "0.5", "--out", out, "--build-dir",
             os.path.dirname(os.path.abspath(BIN_DIR))],
            capture_output=True, timeout=110)
        self.assertEqual(p.returncode, 0, p.stderr.decode()[-2000:])
        self.assertIn(b"targets (issue 15)", p.stdout)
        with open(os.path.join(out, "forward.json")) as f:
            res = json.load(f)
        self.assertEqual(res["forwarders"],
                         ["sockit", "haproxy", "socat", "stunnel"])
        rows = {r["id"]: r for r in res["rows"]}
        self.assertEqual(set(rows), {f"{c}-{t}" for c in CASES
                                     for t in ("plain", "tls")})
        fwd = has_forward_mode()
        if fwd:
            # The plaintext pair is relayed with splice(2) (its debug line).
            self.assertIs(res["sockit_splice"], True)
        empty = set()
        measured = set()
        for rid, row in rows.items():
            fw = row["forwarders"]
            plain = row["transport"] == "plain"
            unit = "msg" if rid.startswith("pp") else "mb"
            self.assertEqual("direct" in fw, plain, rid)
            working = ["haproxy", "socat"] + ([] if plain else ["stunnel"])
            working += ["direct"] if plain else []
            working += ["sockit"] if fwd else []
            for kind in working:
                s = fw[kind]["summary"]
                errs = fw[kind].get("errors", [])
                if ("rate" not in s and len(errs) == 1 and
                        EMPTY.match(errs[0])):
                    empty.add(rid)
                    continue
                self.assertGreater(s.get("rate", [0])[0], 0,
                                   (rid, kind, fw[kind].get("errors")))
                measured.add(kind)
                if kind != "direct":
                    self.assertGreater(s[f"fwd_cpu_us_per_{unit}"][0], 0,
                                       (rid, kind))
                if unit == "msg":
                    self.assertLessEqual(s["lat_p50"][0], s["lat_p99"][0])
                    if kind != "direct":
                        self.assertIn("added_p50", fw[kind], (rid, kind))
            if plain:
                self.assertEqual(fw["stunnel"]["errors"],
                                 ["n/a (no plaintext mode)"])
                self.assertNotIn("rate", fw["stunnel"]["summary"])
            if not fwd:
                self.assertEqual(fw["sockit"]["errors"],
                                 ["n/a (no --mode forward in this build)"])
            elif rid.startswith("bulk") and rid not in empty:
                self.assertGreater(row["ratios"]["vs_haproxy"], 0)
                self.assertGreater(row["ratios"]["vs_socat"], 0)
        self.assertEqual(measured, {"direct", "haproxy", "socat", "stunnel"}
                         | ({"sockit"} if fwd else set()))
        # Two throughput targets per bulk row, one latency target per
        # ping-pong row; judged whenever sockit-server can forward.
        targets = res["targets"]
        self.assertEqual(len(targets), 10)
        for t in targets:
            ok = ("met", "missed") if fwd else ("n/a",)
            if t["row"] in empty:
                ok += ("n/a",)
            self.assertIn(t["verdict"], ok, t)


if __name__ == "__main__":
    unittest.main()
