#!/usr/bin/env python3
"""Forwarding against peers: sockit-server --mode forward next to HAProxy,
socat and stunnel, plaintext and TLS-terminating, each relaying to the same
plaintext sockit-server backend.

    python3 bench/forward.py [--runs N] [--duration S] [--forwarders REGEX]
                             [--tests REGEX] [--out DIR]

Measures, through every forwarder (and directly against the backend, the
path without a forwarder):
  - bulk one way, 128 KiB writes, 1 and 16 connections, to a discard
    backend: MB/s (sockit-client --bench --bench-mode oneway);
  - ping-pong, 64 B messages, 1 connection, 1 in flight, to an echo
    backend: round-trip p50 and p99 (sockit-client --bench-mode echo), and
    the latency the forwarder adds: its percentile minus the same
    percentile measured directly against the backend in the same run;
  - the forwarder's CPU per MB (bulk) or per message (ping-pong), from
    /proc/PID/stat utime+stime over the measured window (socat forks a
    process per connection: its children are summed, the live ones and the
    reaped ones).
Every cell is the median of --runs runs (min-max); each run starts a fresh
backend and forwarder, and each round measures every forwarder once, so
drift over time hits them alike.

Pinning: the forwarder on the server core (0) with one worker / thread /
process (socat forks per connection, all on that core), the load
generator on the client core (1), and the plaintext backend (sockit-server
-w 1) on the forwarder's core (as bench/tls_peers.py does; --backend-core
client moves it next to the load generator). Why the forwarder's core:
  - each path, direct or forwarded, then crosses cores exactly once each
    way (client -> core 0, and back), so the added latency is the
    forwarder's own work and not one more cross-core wake-up (tens of us
    on this machine, as much as a forwarder's work);
  - core 1 only sends, so the bulk rate is bound by core 0, where the
    forwarder's cost shows, not by a core 1 that both sends and receives.
Only the forwarder's CPU is sampled (not the backend's), so its CPU per MB
or per message is its own either way.

The forwarders (the same certificate, ECDSA P-256, and cipher,
TLS_AES_128_GCM_SHA256 pinned on the client side, as bench/tls_peers.py):
  sockit   sockit-server --mode forward --to BACKEND --workers 1
           [--tls --cert --key]: splice(2) between plain streams
  haproxy  mode tcp, nbthread 1, `bind ...` [`ssl crt`]
  socat    TCP-LISTEN,fork / OPENSSL-LISTEN,fork -> TCP
  stunnel  stunnel4 server mode (TLS in, plaintext out); it has no
           plaintext-to-plaintext mode: n/a there
Targets, judged in the same run: throughput >= 1.0x HAProxy and >= 2x
socat (every bulk row); added p50 latency <= HAProxy's (ping-pong rows).
Writes OUT/forward.json and prints the tables.
"""

import argparse
import dataclasses
import datetime
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as rb  # noqa: E402  (bench/run.py: processes, CPU sampling)
import tls_peers as tp  # noqa: E402  (certificates, peer configurations)

KEY = "ecdsa"
TRANSPORTS = ("plain", "tls")
FORWARDERS = {
    # kind: (label, binary, what the CPU figure sums)
    "sockit": ("sockit-server --mode forward", None, "sockit-server"),
    "haproxy": ("HAProxy mode tcp", "haproxy", "haproxy"),
    "socat": ("socat fork", "socat", "socat and its children"),
    "stunnel": ("stunnel4", "stunnel4", "stunnel4"),
}
CASES = {
    # id: (backend mode, --bench-mode, size, conns, unit, title)
    "bulk-128K-c1": ("discard", "oneway", 131072, 1, "mb",
                     "bulk one way, 128 KiB writes, 1 conn"),
    "bulk-128K-c16": ("discard", "oneway", 131072, 16, "mb",
                      "bulk one way, 128 KiB writes, 16 conns"),
    "pp-64B": ("echo", "echo", 64, 1, "msg",
               "ping-pong 64 B, 1 conn"),
}
TARGETS = {"vs_haproxy": 1.0, "vs_socat": 2.0}


# ---------------------------------------------------------------------------
# Processes


def start_backend(cfg, mode, core):
    """The plaintext sockit-server discard/echo backend, one worker, pinned
    to core (rb.start_server pins to cfg.server_cpu: give it core)."""
    return rb.start_server(dataclasses.replace(cfg, server_cpu=core),
                           "sockit", mode)


def start_forwarder(cfg, tmp, kind, transport, back_port, log="-q"):
    """Forwarder kind on the server core relaying to back_port; an
    rb.Server whose one process is the forwarder (the CPU sampled)."""
    tls = transport == "tls"
    if kind == "sockit":
        argv = [cfg.server_bin, log, "--workers", "1", "-l", "127.0.0.1:0",
                "--mode", "forward", "--to", f"127.0.0.1:{back_port}"]
        if tls:
            argv += ["--tls", "--cert", tmp / f"{KEY}.crt", "--key",
                     tmp / f"{KEY}.key"]
        p, port = rb.start_port0("sockit-server", cfg.srv(argv),
                                 tp.TLS_READY if tls else rb.SOCKIT_READY)
    else:
        p, port = rb.start_fixed_port(
            kind, lambda port: cfg.srv(
                tp.front_argv(tmp, kind, KEY, port, back_port, tls=tls)),
            merge_stderr=True)
        if not owns_listener(p.pid, port):
            # The port was free a moment before it started: someone else
            # may have taken it (and this forwarder failed to bind).
            p.stop()
            raise rb.BenchError(f"{kind}: 127.0.0.1:{port} is not its "
                                "listener")
    return rb.Server(kind, [p], port, back_port)


def owns_listener(pid, port):
    """True if the socket listening on 127.0.0.1:port is one of pid's
    descriptors (from /proc/net/tcp's inode)."""
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            inodes = {ln.split()[9] for ln in f
                      if ln.split()[1:2] == [want] and ln.split()[3] == "0A"}
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def splice_probe(cfg, tmp):
    """Whether sockit-server relays a plain pair with splice(2): its debug
    line for one connection says "(splice)". True, False or an error."""
    back = start_backend(cfg, "discard", cfg.server_cpu)
    try:
        front = start_forwarder(cfg, tmp, "sockit", "plain", back.port, "-v")
        try:
            with socket.create_connection(("127.0.0.1", front.port), 10):
                line = front.main.wait_line(r"relaying to upstream.*", 10)
            return "(splice)" in line.group(0)
        finally:
            front.stop()
    except (rb.BenchError, OSError) as e:
        return f"unknown: {e}"
    finally:
        back.stop()


# ---------------------------------------------------------------------------
# One measurement


def bench_argv(cfg, port, case, tls, conf):
    mode, bmode, size, conns, _, _ = CASES[case]
    argv = [cfg.client_bin, "--bench", f"127.0.0.1:{port}", "--bench-mode",
            bmode, "--size", size, "--conns", conns, "--duration",
            f"{cfg.duration:g}", "--warmup", f"{cfg.warmup:g}", "--interval",
            "0", "--json"]
    if bmode == "echo":
        argv += ["--pipeline", 1]
    if tls:
        return tp.with_conf(argv + ["--tls", "--insecure"], conf)
    return [str(a) for a in argv]


def client_report(c):
    """sockit-client's JSON; when it fails but still reports, an error
    with the report's counts (rather than the raw JSON)."""
    try:
        return rb.client_json(c)
    except rb.BenchError as e:
        try:
            j = json.loads("".join(c.out_lines))
        except ValueError:
            raise e from None
        raise rb.BenchError(
            f"sockit-client exit {c.returncode}: {j.get('messages')} "
            f"messages in {j.get('duration_s')} s, {j.get('errors')} "
            f"errors, {j.get('connect_errors')} connect errors")


def measure(cfg, tmp, conf, kind, transport, case, back_core):
    """One run of case through kind ('direct': no forwarder); metrics."""
    mode, bmode, _, _, unit, _ = CASES[case]
    back = start_backend(cfg, mode, back_core)
    front = None
    try:
        if kind == "direct":
            # The CPU sampled is the backend's (not reported: not a
            # forwarder's).
            server = back
        else:
            front = server = start_forwarder(cfg, tmp, kind, transport,
                                             back.port)
        argv = bench_argv(cfg, server.port, case, transport == "tls", conf)
        c, cpu_us, window, _ = rb.timed_client(
            cfg, server, "sockit-client", argv, cfg.warmup,
            cfg.warmup + cfg.duration + 60)
        back.check_alive()
        j = client_report(c)
    finally:
        if front:
            front.stop()
        back.stop()
    m = {"cmd": c.cmdline(), "fwd_cmd": front.cmdline() if front else "",
         "back_cmd": back.cmdline(), "errors": int(j.get("errors") or 0)}
    rate = float(j.get("mb_per_sec" if unit == "mb" else "msgs_per_sec")
                 or 0)
    if rate <= 0:
        raise rb.BenchError(f"nothing measured ({m['errors']} errors)")
    m["rate"] = rate
    if bmode == "echo":
        lat = j.get("latency_us") or {}
        for q in ("p50", "p99"):
            if q not in lat:
                raise rb.BenchError(f"sockit-client reported no {q}")
            m[f"lat_{q}"] = float(lat[q])
    if kind != "direct":
        rb.add_rate_cpu(m, cpu_us, window, rate, unit)
        m["fwd_cpu_pct"] = m.pop("server_cpu_pct")
        m[f"fwd_cpu_us_per_{unit}"] = m.pop(f"server_cpu_us_per_{unit}",
                                            None)
    return m


# ---------------------------------------------------------------------------
# The matrix


def cells(args, kinds):
    """(row id, case, transport, [kinds]) for every row asked for."""
    out = []
    for transport in TRANSPORTS:
        if not re.search(args.transports, transport):
            continue
        for case in CASES:
            rid = f"{case}-{transport}"
            if not re.search(args.tests, rid):
                continue
            ks = (["direct"] if transport == "plain" else []) + kinds
            out.append((rid, case, transport, ks))
    return out


def not_run(kind, transport, missing):
    """Why cell (kind, transport) is n/a without running, or None."""
    if kind == "stunnel" and transport == "plain":
        return "n/a (no plaintext mode)"
    return missing.get(kind)


def run_round(cfg, tmp, conf, plan, rows, i, back_core, missing):
    for rid, case, transport, ks in plan:
        row = rows.setdefault(rid, {"id": rid, "case": case,
                                    "transport": transport, "runs": {}})
        for kind in ks:
            why = not_run(kind, transport, missing)
            if why:
                m = {"error": why}
                row["runs"].setdefault(kind, []).append(m)
            else:
                m = tp.record(row, kind, lambda: measure(
                    cfg, tmp, conf, kind, transport, case, back_core))
            show(i, cfg.runs, rid, kind, m)


def show(i, runs, rid, kind, m):
    if "error" in m:
        head = m["error"] if m["error"].startswith("n/a") else (
            "n/a: " + m["error"])
    else:
        unit = "MB/s" if rid.startswith("bulk") else "msgs/s"
        head = f"{rb.fmt_num(m['rate'])} {unit}"
        if "lat_p50" in m:
            head += (f", p50 {rb.fmt_num(m['lat_p50'])} µs, p99 "
                     f"{rb.fmt_num(m['lat_p99'])} µs")
        if m.get("errors"):
            head += f", {m['errors']} errors"
    print(f"   run {i + 1}/{runs} {rid:<22} {kind:<8} {head}", flush=True)


def summarize_rows(rows):
    """Per row and forwarder: summary, errors, first commands; the added
    latency (against the direct row of the same case); ratios of sockit to
    HAProxy and socat."""
    direct = {}
    for row in rows.values():
        row["forwarders"] = {}
        for kind, runs in row["runs"].items():
            s = {"summary": rb.summarize(runs)}
            errs = sorted({r["error"] for r in runs if "error" in r})
            if errs:
                s["errors"] = errs
            first = next((r for r in runs if "cmd" in r), None)
            if first:
                s["cmd"] = {k: first[k] for k in ("fwd_cmd", "back_cmd",
                                                  "cmd")}
            row["forwarders"][kind] = s
        del row["runs"]
        if "direct" in row["forwarders"]:
            direct[row["case"]] = row["forwarders"]["direct"]["summary"]
    for row in rows.values():
        base = direct.get(row["case"], {})
        for kind, s in row["forwarders"].items():
            if kind == "direct":
                continue
            for q in ("p50", "p99"):
                a, b = (s["summary"].get(f"lat_{q}"),
                        base.get(f"lat_{q}"))
                if a and b:
                    s[f"added_{q}"] = a[0] - b[0]
        me = row["forwarders"].get("sockit", {}).get("summary", {})
        for peer in ("haproxy", "socat"):
            ps = row["forwarders"].get(peer, {}).get("summary", {})
            if me.get("rate") and ps.get("rate"):
                row.setdefault("ratios", {})[f"vs_{peer}"] = (
                    me["rate"][0] / ps["rate"][0])


def judge(rows):
    """The issue's targets, each met / missed / n/a, with its figures."""
    out = []
    for row in rows:
        if not row["case"].startswith("bulk"):
            continue
        for key, want in TARGETS.items():
            peer = key[3:]
            got = row.get("ratios", {}).get(key)
            out.append({
                "target": f"{row_title(row)}: sockit ≥ {want:g}× {peer}",
                "row": row["id"], "want": want, "got": got,
                "verdict": "n/a" if got is None else
                ("met" if got >= want else "missed")})
    for row in rows:
        if not row["case"].startswith("pp"):
            continue
        fw = row["forwarders"]
        me = fw.get("sockit", {}).get("added_p50")
        hp = fw.get("haproxy", {}).get("added_p50")
        out.append({
            "target": f"{row_title(row)}: sockit's added p50 ≤ HAProxy's",
            "row": row["id"], "want": hp, "got": me,
            "verdict": "n/a" if me is None or hp is None else
            ("met" if me <= hp else "missed")})
    return out


# ---------------------------------------------------------------------------
# Report


def row_title(row):
    tr = "plaintext" if row["transport"] == "plain" else "TLS-terminating"
    return f"{CASES[row['case']][5]}, {tr}"


def ratio_txt(row, kind):
    """' [k×]': sockit ÷ HAProxy on sockit's cell, kind ÷ HAProxy
    elsewhere (rate)."""
    fw = row["forwarders"]
    hp = fw.get("haproxy", {}).get("summary", {}).get("rate")
    me = fw.get(kind, {}).get("summary", {}).get("rate")
    if kind in ("haproxy", "direct") or not hp or not me:
        return ""
    return f" [{me[0] / hp[0]:.2f}×]"


def cpu_txt(s, unit):
    """'378 µs, 15%': the forwarder's CPU per unit and its busy share."""
    sm = (s or {}).get("summary", {})
    per, pct = sm.get(f"fwd_cpu_us_per_{unit}"), sm.get("fwd_cpu_pct")
    if not per:
        return ""
    return f"{rb.fmt_num(per[0])} µs, {pct[0]:.0f}%"


def table(res):
    """(header, lines) of the results table, one list of cells a line."""
    kinds = ["direct"] + res["forwarders"]
    head = ["measurement"] + kinds
    lines = []
    for row in res["rows"]:
        fw = row["forwarders"]
        bulk = row["case"].startswith("bulk")
        metric = [("rate", " (MB/s)")] if bulk else [
            ("lat_p50", " p50 (µs)"), ("lat_p99", " p99 (µs)")]
        for key, suffix in metric:
            cl = [row_title(row) + suffix]
            for k in kinds:
                s = fw.get(k)
                if s is None:
                    cl.append("")
                elif not s["summary"].get(key):
                    e = s.get("errors", ["not run"])[0]
                    cl.append(e[:34] if e.startswith("n/a") else
                              "n/a: " + e[:29])
                else:
                    cl.append(rb.cell(s["summary"], key) +
                              (ratio_txt(row, k) if key == "rate" else ""))
            lines.append(cl)
        if not bulk:
            for q in ("p50", "p99"):
                lines.append([f"  added {q} (µs)"] + [
                    rb.fmt_num(fw[k][f"added_{q}"])
                    if f"added_{q}" in fw.get(k, {}) else "" for k in kinds])
        unit = "mb" if bulk else "msg"
        lines.append([f"  forwarder CPU per {'MB' if bulk else 'msg'}, "
                      "% of its core"] + [cpu_txt(fw.get(k), unit)
                                          for k in kinds])
    return head, lines


def target_fig(t):
    if t["got"] is None:
        return "n/a"
    if t["row"].startswith("bulk"):
        return f"{t['got']:.2f}×"
    return f"{rb.fmt_num(t['got'])} µs vs {rb.fmt_num(t['want'])} µs"


def print_report(res):
    print(f"\nForwarding: median (min–max) of {res['config']['runs']} "
          "run(s); [ratio] = forwarder ÷ HAProxy (higher is better); "
          "added = percentile through the forwarder − the same percentile "
          "direct")
    pin = res["pinning"]
    print(f"forwarder on core {pin['forwarder']}, load generator on core "
          f"{pin['client']}, backend on core {pin['backend']}; "
          "CPU: the forwarder's only (" + "; ".join(
              f"{k}: {FORWARDERS[k][2]}" for k in res["forwarders"]) + ")")
    if "sockit_splice" in res:
        print(f"sockit-server relays plain pairs with splice(2): "
              f"{res['sockit_splice']} (its debug line for one connection)")
    for note in res["notes"]:
        print(f"note: {note}")
    head, lines = table(res)
    widths = [max(len(r[i]) for r in lines + [head])
              for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    print("\ntargets (issue 15):")
    for t in res["targets"]:
        print(f"  {t['verdict']:<6} {t['target']}: {target_fig(t)}")
    errs = [(row_title(r), k, e) for r in res["rows"]
            for k, s in r["forwarders"].items()
            for e in s.get("errors", []) if not e.startswith("n/a")]
    for t, k, e in errs:
        print(f"  [*] {t}, {k}: {e}")


def print_markdown(res):
    """The results and targets as Markdown tables (docs/PERFORMANCE.md)."""
    head, lines = table(res)
    labels = {"direct": "direct (no forwarder)", **res.get("labels", {})}
    head = [labels.get(k, k) for k in head]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in lines:
        first = ("↳ " + r[0].strip()) if r[0].startswith(" ") else r[0]
        print("| " + " | ".join([first] + r[1:]) + " |")
    print("\n| target (issue 15) | result |\n|---|---|")
    for t in res["targets"]:
        fig = "" if t["got"] is None else ": " + target_fig(t)
        print(f"| {t['target']} | **{t['verdict']}**{fig} |")


# ---------------------------------------------------------------------------
# Main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="relay throughput and added latency through sockit-"
        "server --mode forward, HAProxy, socat and stunnel (bench/README.md)")
    ap.add_argument("--runs", type=int, default=5,
                    help="runs per cell (default 5)")
    ap.add_argument("--duration", type=float, default=2.0,
                    help="measured seconds per cell (default 2)")
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="unmeasured seconds before (default 0.5)")
    ap.add_argument("--forwarders", default=".",
                    help="only forwarders matching this regex (sockit, "
                    "haproxy, socat, stunnel); the direct row always runs")
    ap.add_argument("--tests", default=".",
                    help="only rows whose id matches this regex "
                    "(bulk-128K-c1, bulk-128K-c16, pp-64B; each -plain "
                    "or -tls)")
    ap.add_argument("--transports", default=".",
                    help="plain, tls or both (regex; default both)")
    ap.add_argument("--backend-core", choices=("server", "client"),
                    default="server",
                    help="the core of the backend: the forwarder's "
                    "(default) or the load generator's")
    ap.add_argument("--out", type=Path,
                    help="results directory (default bench/results/"
                    "forward-<time>)")
    ap.add_argument("--build-dir", type=Path, default=rb.ROOT / "build",
                    help="sockit build directory (default build/)")
    ap.add_argument("--from", dest="from_json", type=Path,
                    help="only print the tables of a forward.json")
    ap.add_argument("--markdown", action="store_true",
                    help="with --from: the tables in Markdown")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.duration <= 0 or args.warmup < 0:
        ap.error("--runs must be ≥ 1, --duration > 0, --warmup ≥ 0")
    return args


def forward_mode_exists(server_bin):
    r = subprocess.run([str(server_bin), "--help"], capture_output=True,
                       timeout=10)
    return b"forward" in r.stdout + r.stderr


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        res = json.loads(args.from_json.read_text())
        (print_markdown if args.markdown else print_report)(res)
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    for sig in (rb.signal.SIGINT, rb.signal.SIGTERM, rb.signal.SIGHUP):
        rb.signal.signal(sig, on_signal)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or rb.ROOT / "bench" / "results" / f"forward-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    server_cpu, client_cpu, cpu_note = rb.pick_cpus()
    rb.raise_nofile(4096)
    cfg = rb.Config(
        server_bin=args.build_dir / "programs" / "sockit-server",
        client_bin=args.build_dir / "programs" / "sockit-client",
        out=out, runs=args.runs, quick=False, duration=args.duration,
        warmup=args.warmup, server_cpu=server_cpu, client_cpu=client_cpu,
        idle_conns=0, file_size=0, notes=[cpu_note] if cpu_note else [])
    for b in (cfg.server_bin, cfg.client_bin):
        if not b.exists():
            raise SystemExit(f"{rb.rel(b)} not built (give --build-dir)")
    for tool in ("openssl", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is required")
    kinds = [k for k in FORWARDERS if re.search(args.forwarders, k)]
    for k in list(kinds):
        tool = FORWARDERS[k][1]
        if tool and shutil.which(tool) is None:
            cfg.notes.append(f"`{tool}` not found (scripts/deps.sh bench): "
                             "no column")
            kinds.remove(k)
    missing = {}
    if "sockit" in kinds and not forward_mode_exists(cfg.server_bin):
        missing["sockit"] = "n/a (no --mode forward in this build)"
        cfg.notes.append(f"{rb.rel(cfg.server_bin)} has no --mode forward: "
                         "no sockit figures")
    load = os.getloadavg()[0]
    if load > 0.5:
        cfg.notes.append(f"load average {load:.2f} when the run started: "
                         "other work on the machine adds noise")
    mi = rb.machine_info(cfg)
    for k, cmd in (("haproxy", ["haproxy", "-v"]),
                   ("socat", ["sh", "-c", "socat -V | grep 'socat version'"]),
                   ("stunnel", ["sh", "-c", "stunnel4 -version 2>&1 | "
                                "grep '^stunnel'"]),
                   ("openssl", ["openssl", "version"])):
        mi[k] = rb.sh(cmd)
    back_core = server_cpu if args.backend_core == "server" else client_cpu
    plan = cells(args, kinds)
    res = {"config": {"runs": cfg.runs, "duration": cfg.duration,
                      "warmup": cfg.warmup,
                      "cases": {c: dict(zip(("backend", "bench_mode", "size",
                                             "conns", "unit", "title"), v))
                                for c, v in CASES.items()},
                      "key": tp.KEYS[KEY], "cipher": tp.CIPHERS_13,
                      "out": str(out)},
           "machine": mi, "forwarders": kinds,
           "labels": {k: FORWARDERS[k][0] for k in kinds},
           "cpu_summed": {k: FORWARDERS[k][2] for k in kinds},
           "pinning": {"forwarder": server_cpu, "client": client_cpu,
                       "backend": back_core},
           "notes": cfg.notes, "rows": [], "targets": []}
    n = sum(len(ks) for _, _, _, ks in plan)
    est = cfg.runs * n * (cfg.duration + cfg.warmup + 0.5)
    print(f"forwarding: {', '.join(kinds)}; {len(plan)} row(s), {n} cell(s) "
          f"× {cfg.runs} run(s); forwarder on core {server_cpu}, load on "
          f"core {client_cpu}, backend on core {back_core}; about "
          f"{est / 60:.1f} min; output in {rb.rel(out)}/", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sockit-fwd-"))
    rows = {}
    interrupted = False
    try:
        tp.make_certs(tmp)
        conf = tp.client_conf(tmp, "1.3")
        if "sockit" in kinds and "sockit" not in missing:
            res["sockit_splice"] = splice_probe(cfg, tmp)
            print(f"sockit-server splices plain pairs: "
                  f"{res['sockit_splice']}", flush=True)
        for i in range(cfg.runs):
            run_round(cfg, tmp, conf, plan, rows, i, back_core, missing)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", file=sys.stderr)
    finally:
        rb.cleanup_all()
        shutil.rmtree(tmp, ignore_errors=True)
    summarize_rows(rows)
    res["rows"] = list(rows.values())
    res["targets"] = judge(res["rows"])
    rb.write_json(out / "forward.json", res)
    print_report(res)
    print(f"\nresults: {rb.rel(out)}/forward.json")
    return 130 if interrupted else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        rb.cleanup_all()
