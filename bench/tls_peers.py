#!/usr/bin/env python3
"""TLS against peers: sockit-server --tls next to nginx, stunnel, HAProxy and
socat, on the same certificates and ciphers, the server side on one core.

    python3 bench/tls_peers.py [--runs N] [--duration S] [--servers REGEX]
                               [--tests REGEX] [--out DIR]

Measures, for every server:
  - full and resumed handshakes/s, TLS 1.3 and 1.2, ECDSA P-256 and RSA-2048,
    driven by `sockit-client --bench --bench-mode connect --tls
    [--tls-resume]` (CONNS in flight) and cross-checked with
    `openssl s_time -new/-reuse` (one at a time);
  - TLS echo, 4 KiB messages, 16 connections: messages/s;
  - TLS one-way bulk, 128 KiB writes, 1 connection: MB/s, next to
    `openssl speed -evp aes-128-gcm -bytes 16384` on the server core.
Every cell is the median of --runs runs (min-max) with the ratio to nginx,
and the server side's CPU per handshake / message / MB.

The servers, all pinned to the server core (taskset) with one worker:
  sockit   sockit-server --tls --mode echo|discard (terminates and serves)
  nginx    nginx stream module, master_process off, one worker: handshakes
           against `return "";` (nginx finishes the handshake, sends nothing
           and closes: no backend); echo and bulk with `proxy_pass` to a
           plaintext sockit-server echo/discard backend (nginx's stream
           module has no echo of its own)
  stunnel  stunnel4 server mode in front of the plaintext sockit backend
  haproxy  mode tcp, `bind ... ssl crt`, nbthread 1, to the sockit backend
  socat    OPENSSL-LISTEN,fork (a process per connection) to the backend
The backend runs on the server core too, and its CPU is summed with the
front end's (the output says which processes each figure sums).

The protocol version and the cipher are fixed on the client side, through
an OPENSSL_CONF file given to sockit-client and openssl s_time only:
TLS_AES_128_GCM_SHA256 (1.3) or ECDHE-{ECDSA,RSA}-AES128-GCM-SHA256 (1.2),
key exchange X25519 (OpenSSL's default). Writes OUT/tls.json (read by
`bench/run.py --tls OUT/tls.json`) and prints the tables.
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as rb  # noqa: E402  (bench/run.py: processes, CPU sampling)

TLS_READY = r"listening on tls://127\.0\.0\.1:(\d+)"
NGINX_STREAM = "/usr/lib/nginx/modules/ngx_stream_module.so"
KEYS = {"ecdsa": "ECDSA P-256", "rsa": "RSA-2048"}
PROTOS = {"1.3": "TLSv1.3", "1.2": "TLSv1.2"}
CIPHERS_12 = "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
CIPHERS_13 = "TLS_AES_128_GCM_SHA256"
SERVERS = {
    # kind: (label, processes whose CPU is summed)
    "sockit": ("sockit-server --tls", "sockit-server"),
    "nginx": ("nginx stream", "nginx (one process) + sockit-server backend "
              "(echo/bulk only)"),
    "stunnel": ("stunnel4", "stunnel4 + sockit-server backend"),
    "haproxy": ("HAProxy", "haproxy + sockit-server backend"),
    "socat": ("socat OPENSSL-LISTEN,fork", "socat and its children + "
              "sockit-server backend"),
}
ECHO = {"size": 4096, "conns": 16, "pipeline": 1}
BULK = {"size": 131072, "conns": 1}


# ---------------------------------------------------------------------------
# Certificates and client-side TLS settings


def make_certs(tmp):
    """ECDSA P-256 and RSA-2048 self-signed certificates for localhost and
    127.0.0.1: tmp/KEY.crt, tmp/KEY.key and tmp/KEY.pem (both, for HAProxy).
    """
    algs = {"ecdsa": ["-newkey", "ec", "-pkeyopt",
                      "ec_paramgen_curve:prime256v1"],
            "rsa": ["-newkey", "rsa:2048"]}
    for key, alg in algs.items():
        crt, k = tmp / f"{key}.crt", tmp / f"{key}.key"
        r = subprocess.run(
            ["openssl", "req", "-x509", *alg, "-nodes", "-keyout", k, "-out",
             crt, "-days", "2", "-subj", "/CN=localhost", "-addext",
             "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            capture_output=True)
        if r.returncode != 0:
            raise SystemExit("openssl req failed: " +
                             rb.last_line(r.stderr.decode()))
        (tmp / f"{key}.pem").write_text(crt.read_text() + k.read_text())


def client_conf(tmp, proto):
    """An OpenSSL config that pins the client to one protocol version and
    the AES-128-GCM suites; returns its path (for OPENSSL_CONF)."""
    path = tmp / f"client-tls{proto}.cnf"
    path.write_text(f"""openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_module
[ssl_module]
system_default = tls_defaults
[tls_defaults]
MinProtocol = {PROTOS[proto]}
MaxProtocol = {PROTOS[proto]}
Ciphersuites = {CIPHERS_13}
CipherString = {CIPHERS_12}
""")
    return path


def ktls_status():
    """(available, explanation) for kernel TLS (the tls ULP)."""
    try:
        ulps = Path("/proc/sys/net/ipv4/tcp_available_ulp").read_text().split()
    except OSError:
        ulps = []
    if "tls" in ulps:
        return True, "the tls ULP is available (tcp_available_ulp)"
    why = f"tcp_available_ulp lists {' '.join(ulps) or 'nothing'}"
    if shutil.which("modprobe"):
        r = subprocess.run(["modprobe", "-n", "-q", "tls"],
                           capture_output=True)
        why += (", and `modprobe -n tls` finds no module" if r.returncode
                else "; `modprobe tls` would load a module (not tried)")
    return False, why


# ---------------------------------------------------------------------------
# Servers


def start_backend(cfg, mode):
    """The plaintext sockit-server echo/discard behind the proxies."""
    return rb.start_server(cfg, "sockit", mode)


def start_front(cfg, tmp, kind, key, mode):
    """Start server kind for key ('ecdsa'|'rsa') and mode ('echo',
    'discard', or 'hs' for handshakes only); return an rb.Server whose pids
    are every process the figures sum (backend first)."""
    crt, k = tmp / f"{key}.crt", tmp / f"{key}.key"
    if kind == "sockit":
        argv = [cfg.server_bin, "-q", "--workers", "1", "--max-conns",
                "19500", "--tls", "--cert", crt, "--key", k, "-l",
                "127.0.0.1:0", "--mode", "echo" if mode == "hs" else mode]
        p, port = rb.start_port0("sockit-server", cfg.srv(argv), TLS_READY)
        return rb.Server(kind, [p], port)
    back = None
    if kind != "nginx" or mode != "hs":
        back = start_backend(cfg, "echo" if mode == "hs" else mode)
    try:
        bp = back.port if back else None
        p, port = rb.start_fixed_port(
            kind, lambda port: cfg.srv(front_argv(tmp, kind, key, port, bp)),
            merge_stderr=True)
    except BaseException:
        if back:
            back.stop()
        raise
    return rb.Server(kind, (back.procs if back else []) + [p], port, bp)


def front_argv(tmp, kind, key, port, back_port, tls=True):
    """The command line (and config file) of a TLS front end on port; with
    tls=False, the same front end relaying plaintext (HAProxy and socat;
    bench/forward.py): stunnel has no such mode, nginx is not asked for."""
    crt, k, pem = (tmp / f"{key}.crt", tmp / f"{key}.key",
                   tmp / f"{key}.pem")
    conf = tmp / f"{kind}-{port}.conf"
    if not tls and kind not in ("haproxy", "socat"):
        raise rb.BenchError(f"{kind}: no plaintext-to-plaintext mode")
    if kind == "nginx":
        what = (f"proxy_pass 127.0.0.1:{back_port};" if back_port
                else 'return "";')
        conf.write_text(f"""load_module {NGINX_STREAM};
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx-{port}.pid;
error_log stderr error;
events {{ worker_connections 20000; }}
stream {{
    ssl_certificate {crt};
    ssl_certificate_key {k};
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_session_cache shared:tls{port}:10m;
    ssl_session_tickets on;
    server {{
        listen 127.0.0.1:{port} ssl backlog=4096;
        {what}
    }}
}}
""")
        return ["nginx", "-p", tmp, "-e", "stderr", "-c", conf]
    if kind == "stunnel":
        conf.write_text(f"""foreground = yes
pid =
syslog = no
debug = 3
socket = l:TCP_NODELAY=1
socket = r:TCP_NODELAY=1
[tls]
accept = 127.0.0.1:{port}
connect = 127.0.0.1:{back_port}
cert = {crt}
key = {k}
sslVersionMin = TLSv1.2
""")
        return ["stunnel4", conf]
    if kind == "haproxy":
        conf.write_text(f"""global
    nbthread 1
    maxconn 9000
    ssl-default-bind-options ssl-min-ver TLSv1.2
defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s
frontend tls
    bind 127.0.0.1:{port}{f" ssl crt {pem}" if tls else ""}
    default_backend plain
backend plain
    server s1 127.0.0.1:{back_port}
""")
        return ["haproxy", "-db", "-f", conf]
    if kind == "socat":
        listen = (f"OPENSSL-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,"
                  f"cert={crt},key={k},verify=0" if tls else
                  f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork")
        return ["socat", listen, f"TCP:127.0.0.1:{back_port}"]
    raise rb.BenchError(f"unknown server {kind}")


# ---------------------------------------------------------------------------
# Measurements: each returns a dict of metrics for one run.


def with_conf(argv, conf):
    return ["env", f"OPENSSL_CONF={conf}"] + [str(a) for a in argv]


def sockit_client(cfg, server, conf, mode, extra, unit):
    """sockit-client --bench --tls against server; rate + server CPU."""
    argv = [cfg.client_bin, "--bench", f"127.0.0.1:{server.port}",
            "--bench-mode", mode, "--tls", "--insecure", "--duration",
            f"{cfg.duration:g}", "--warmup", f"{cfg.warmup:g}",
            "--interval", "0", "--json"] + [str(a) for a in extra]
    c, cpu_us, window, _ = rb.timed_client(
        cfg, server, "sockit-client", with_conf(argv, conf), cfg.warmup,
        cfg.warmup + cfg.duration + 60)
    j = rb.client_json(c)
    key = {"connect": "connects_per_sec", "echo": "msgs_per_sec",
           "oneway": "mb_per_sec"}[mode]
    rate = float(j.get(key) or 0)
    m = {"cmd": c.cmdline(), "rate": rate,
         "errors": int(j.get("errors", 0) or 0)}
    if mode == "connect":
        hs = int(j.get("handshakes", 0) or 0)
        if hs:
            m["resumed_pct"] = 100.0 * int(j.get("resumed", 0) or 0) / hs
    if rate <= 0:
        raise rb.BenchError(f"nothing measured ({m['errors']} errors)")
    m["server_cpu_pct"] = 100.0 * cpu_us / 1e6 / window
    m[f"server_cpu_us_per_{unit}"] = cpu_us / (rate * window)
    return m


def s_time(cfg, server, conf, proto, resume):
    """openssl s_time -new/-reuse: connections/s, one at a time."""
    secs = max(1, round(cfg.duration))
    argv = ["openssl", "s_time", "-connect", f"127.0.0.1:{server.port}",
            "-time", secs, f"-tls{proto.replace('.', '_')}",
            "-reuse" if resume else "-new"]
    c, cpu_us, window, _ = rb.timed_client(
        cfg, server, "s_time", with_conf(argv, conf), 0.0, secs + 60,
        merge=True)
    found = re.findall(r"(\d+) connections in ([\d.]+) real seconds",
                       c.text())
    if not found:
        raise rb.BenchError("s_time printed no total: " +
                            rb.last_line(c.text()))
    n, secs_real = found[-1]
    rate = int(n) / float(secs_real) if float(secs_real) else 0.0
    if rate <= 0:
        raise rb.BenchError("s_time made no connection: " +
                            rb.last_line(c.text()))
    return {"cmd": c.cmdline(), "rate": rate,
            "server_cpu_pct": 100.0 * cpu_us / 1e6 / window,
            "server_cpu_us_per_hs": cpu_us / (rate * window)}


def openssl_speed(cfg):
    """AES-128-GCM MB/s at 16 KiB on the server core (the bulk reference)."""
    argv = cfg.srv(["openssl", "speed", "-evp", "aes-128-gcm", "-bytes",
                    "16384", "-seconds", "2"])
    r = subprocess.run(argv, capture_output=True, timeout=120)
    out = r.stdout.decode(errors="replace")
    m = re.search(r"^aes-128-gcm\s+([\d.]+)k\s*$", out, re.M | re.I)
    if r.returncode != 0 or not m:
        raise rb.BenchError("openssl speed printed no AES-128-GCM row: " +
                            rb.last_line(out + r.stderr.decode()))
    return {"cmd": " ".join(argv), "rate": float(m.group(1)) * 1000 / 1e6}


# ---------------------------------------------------------------------------
# The matrix


def handshake_tests(args):
    """(id, key, proto, resume, tool) for every handshake measurement."""
    out = []
    for key in KEYS:
        for proto in PROTOS:
            for resume in (False, True):
                for tool in ("sockit-client", "s_time"):
                    if tool == "s_time" and args.no_stime:
                        continue
                    how = "resumed" if resume else "full"
                    by = "client" if tool == "sockit-client" else "stime"
                    tid = f"hs-{key}-{proto}-{how}-{by}"
                    out.append((tid, key, proto, resume, tool))
    return out


def new_row(rows, tid, **fields):
    if tid not in rows:
        rows[tid] = {"id": tid, "runs": {}, **fields}
    return rows[tid]


def record(row, kind, fn):
    """Run fn() for one cell; store its metrics or its error."""
    try:
        m = fn()
    except rb.BenchError as e:
        m = {"error": str(e)}
    except OSError as e:
        m = {"error": f"{type(e).__name__}: {e}"}
    row["runs"].setdefault(kind, []).append(m)
    return m


def run_round(cfg, args, tmp, confs, kinds, rows, i):
    """One run of every measurement against every server."""
    hs = [t for t in handshake_tests(args) if re.search(args.tests, t[0])]
    for key in KEYS:
        mine = [t for t in hs if t[1] == key]
        if not mine:
            continue
        for kind in kinds:
            try:
                server = start_front(cfg, tmp, kind, key, "hs")
            except rb.BenchError as e:
                for tid, k, proto, resume, tool in mine:
                    row = new_row(rows, tid, test="handshake", key=k,
                                  proto=proto, resume=resume, tool=tool)
                    row["runs"].setdefault(kind, []).append(
                        {"error": str(e)})
                continue
            try:
                for tid, k, proto, resume, tool in mine:
                    row = new_row(rows, tid, test="handshake", key=k,
                                  proto=proto, resume=resume, tool=tool)
                    conf = confs[proto]
                    if tool == "sockit-client":
                        fn = (lambda: sockit_client(
                            cfg, server, conf, "connect",
                            ["--conns", args.conns] +
                            (["--tls-resume"] if resume else []), "hs"))
                    else:
                        fn = (lambda: s_time(cfg, server, conf, proto,
                                             resume))
                    m = record(row, kind, fn)
                    show(i, cfg.runs, tid, kind, m, "handshakes/s")
            finally:
                server.stop()
    for tid, mode, bmode, params, unit in (
            ("echo-4K-c16", "echo", "echo", ECHO, "msg"),
            ("bulk-128K", "discard", "oneway", BULK, "mb")):
        if not re.search(args.tests, tid):
            continue
        row = new_row(rows, tid, test=tid.split("-")[0], key="ecdsa",
                      proto="1.3", resume=False, tool="sockit-client")
        extra = [a for k, v in params.items() for a in (f"--{k}", v)]
        for kind in kinds:
            def one():
                server = start_front(cfg, tmp, kind, "ecdsa", mode)
                try:
                    return sockit_client(cfg, server, confs["1.3"], bmode,
                                         extra, unit)
                finally:
                    server.stop()
            m = record(row, kind, one)
            show(i, cfg.runs, tid, kind, m,
                 "msgs/s" if bmode == "echo" else "MB/s")


def show(i, runs, tid, kind, m, unit):
    head = ("n/a: " + m["error"] if "error" in m else
            f"{rb.fmt_num(m['rate'])} {unit}" +
            (f", {m['resumed_pct']:.0f}% resumed" if "resumed_pct" in m
             else ""))
    print(f"   run {i + 1}/{runs} {tid:<28} {kind:<8} {head}", flush=True)


def summarize_rows(rows, kinds):
    """Per row and server: summary, errors, first command; ratios to nginx
    on the rate and on the server CPU per unit."""
    for row in rows.values():
        row["servers"] = {}
        for kind in kinds:
            runs = row["runs"].get(kind, [])
            s = {"summary": rb.summarize(runs)}
            errs = sorted({r["error"] for r in runs if "error" in r})
            if errs:
                s["errors"] = errs
            cmd = next((r["cmd"] for r in runs if "cmd" in r), None)
            if cmd:
                s["cmd"] = cmd
            row["servers"][kind] = s
        ref = row["servers"].get("nginx", {}).get("summary", {})
        for kind, s in row["servers"].items():
            for metric, name in (("rate", "ratio"),
                                 (cpu_metric(s["summary"]), "cpu_ratio")):
                a = s["summary"].get(metric) if metric else None
                b = ref.get(metric) if metric else None
                if a and b and b[0]:
                    s[name] = a[0] / b[0]
        del row["runs"]


def cpu_metric(summary):
    return next((k for k in summary if k.startswith("server_cpu_us_per_")),
                None)


def row_title(row):
    if row["test"] == "handshake":
        how = "resumed" if row["resume"] else "full"
        by = "sockit-client" if row["tool"] == "sockit-client" else "s_time"
        return f"{KEYS[row['key']]}, TLS {row['proto']}, {how} ({by})"
    if row["test"] == "echo":
        return (f"echo {ECHO['size'] // 1024} KiB, {ECHO['conns']} conns "
                "(msgs/s)")
    return f"bulk one way, {BULK['size'] // 1024} KiB writes (MB/s)"


def print_report(res):
    """The tables on stdout."""
    kinds = res["servers"]
    print(f"\nTLS against peers: median (min–max) of "
          f"{res['config']['runs']} run(s); [ratio] = server ÷ nginx "
          "(rate: higher is better; CPU per unit: lower is better)")
    ktls = "available" if res["ktls"]["available"] else "NOT available"
    print(f"kernel TLS: {ktls} ({res['ktls']['detail']}); every server does "
          "TLS in user space")
    print("CPU summed per server: " + "; ".join(
        f"{k}: {SERVERS[k][1]}" for k in kinds))
    ref = res.get("reference", {})
    if ref.get("rate"):
        print(f"reference: openssl speed -evp aes-128-gcm -bytes 16384 on the "
              f"server core: {rb.fmt_num(ref['rate'])} MB/s")
    elif ref.get("error"):
        print(f"reference: n/a: {ref['error']}")
    head = ["measurement"] + [f"{k}" for k in kinds]
    lines = []
    for row in res["rows"]:
        cells = [row_title(row)]
        cpu = []
        for k in kinds:
            s = row["servers"][k]
            if not s["summary"].get("rate"):
                cells.append("n/a: " + s.get("errors", ["no run"])[0][:30])
                cpu.append("")
                continue
            txt = rb.cell(s["summary"], "rate")
            if k != "nginx" and "ratio" in s:
                txt += f" [{s['ratio']:.2f}×]"
            if "resumed_pct" in s["summary"] and row.get("resume"):
                txt += f" {s['summary']['resumed_pct'][0]:.0f}%r"
            cells.append(txt)
            cm = cpu_metric(s["summary"])
            cpu.append(f"{rb.fmt_num(s['summary'][cm][0])} µs" if cm else "")
        lines.append(cells)
        lines.append(["  server CPU per unit"] + cpu)
    widths = [max(len(r[i]) for r in lines + [head])
              for i in range(len(head))]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip())
    for r in lines:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    bulk = next((r for r in res["rows"] if r["test"] == "bulk"), None)
    if bulk and ref.get("rate"):
        print("bulk ÷ openssl speed: " + ", ".join(
            f"{k} {s['summary']['rate'][0] / ref['rate']:.2f}×"
            for k, s in bulk["servers"].items() if s["summary"].get("rate")))
    errs = [(row_title(r), k, e) for r in res["rows"]
            for k, s in r["servers"].items() for e in s.get("errors", [])]
    for t, k, e in errs:
        print(f"  [*] {t}, {k}: {e}")


# ---------------------------------------------------------------------------
# Main


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="TLS handshakes, echo and bulk against nginx, stunnel, "
        "HAProxy and socat (bench/README.md)")
    ap.add_argument("--runs", type=int, default=5,
                    help="runs per cell (default 5)")
    ap.add_argument("--duration", type=float, default=2.0,
                    help="measured seconds per cell (default 2; s_time "
                    "rounds to whole seconds)")
    ap.add_argument("--warmup", type=float, default=0.5,
                    help="sockit-client warm-up seconds (default 0.5)")
    ap.add_argument("--conns", type=int, default=8,
                    help="handshakes in flight for sockit-client (default 8)")
    ap.add_argument("--servers", default=".",
                    help="only servers matching this regex (sockit, nginx, "
                    "stunnel, haproxy, socat)")
    ap.add_argument("--tests", default=".",
                    help="only measurements whose id matches this regex "
                    "(hs-KEY-PROTO-full|resumed-client|stime, echo-4K-c16, "
                    "bulk-128K)")
    ap.add_argument("--no-stime", action="store_true",
                    help="skip the openssl s_time cross-check")
    ap.add_argument("--out", type=Path,
                    help="results directory (default bench/results/"
                    "tls-<time>)")
    ap.add_argument("--build-dir", type=Path, default=rb.ROOT / "build",
                    help="sockit build directory (default build/)")
    ap.add_argument("--from", dest="from_json", type=Path,
                    help="only print the tables of a tls.json")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.from_json:
        print_report(json.loads(args.from_json.read_text()))
        return 0

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    for sig in (rb.signal.SIGINT, rb.signal.SIGTERM, rb.signal.SIGHUP):
        rb.signal.signal(sig, on_signal)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = args.out or rb.ROOT / "bench" / "results" / f"tls-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    server_cpu, client_cpu, cpu_note = rb.pick_cpus()
    rb.raise_nofile(20000)
    cfg = rb.Config(
        server_bin=args.build_dir / "programs" / "sockit-server",
        client_bin=args.build_dir / "programs" / "sockit-client",
        out=out, runs=args.runs, quick=False, duration=args.duration,
        warmup=args.warmup, server_cpu=server_cpu, client_cpu=client_cpu,
        idle_conns=0, file_size=0, notes=[cpu_note] if cpu_note else [])
    for b in (cfg.server_bin, cfg.client_bin):
        if not b.exists():
            raise SystemExit(f"{rb.rel(b)} not built (give --build-dir)")
    tools = {"sockit": None, "nginx": "nginx", "stunnel": "stunnel4",
             "haproxy": "haproxy", "socat": "socat"}
    kinds = [k for k in SERVERS if re.search(args.servers, k)]
    for k in list(kinds):
        if tools[k] and shutil.which(tools[k]) is None:
            cfg.notes.append(f"`{tools[k]}` not found (scripts/deps.sh "
                             "bench): no column")
            kinds.remove(k)
    if "nginx" in kinds and not Path(NGINX_STREAM).exists():
        cfg.notes.append(f"no {NGINX_STREAM} (libnginx-mod-stream): no "
                         "nginx column")
        kinds.remove("nginx")
    for tool in ("openssl", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"bench: {tool} is required")
    ok, detail = ktls_status()
    load = os.getloadavg()[0]
    if load > 0.5:
        cfg.notes.append(f"load average {load:.2f} when the run started: "
                         "other work on the machine adds noise")
    mi = rb.machine_info(cfg)
    for k, argv in (("nginx", ["nginx", "-v"]),
                    ("stunnel", ["sh", "-c", "stunnel4 -version 2>&1 | "
                                 "grep '^stunnel'"]),
                    ("haproxy", ["haproxy", "-v"]),
                    ("openssl", ["openssl", "version"])):
        mi[k] = rb.sh(argv)
    res = {"config": {"runs": cfg.runs, "duration": cfg.duration,
                      "warmup": cfg.warmup, "conns": args.conns,
                      "echo": ECHO, "bulk": BULK,
                      "ciphers": {"1.3": CIPHERS_13, "1.2": CIPHERS_12},
                      "out": str(out)},
           "machine": mi, "ktls": {"available": ok, "detail": detail},
           "servers": kinds,
           "cpu_summed": {k: SERVERS[k][1] for k in kinds},
           "labels": {k: SERVERS[k][0] for k in kinds},
           "notes": cfg.notes, "rows": []}
    n_hs = len([t for t in handshake_tests(args)
                if re.search(args.tests, t[0])])
    n_other = sum(1 for t in ("echo-4K-c16", "bulk-128K")
                  if re.search(args.tests, t))
    est = cfg.runs * len(kinds) * (n_hs + n_other) * (
        cfg.duration + cfg.warmup + 0.7)
    print(f"TLS peers: {', '.join(kinds)}; {n_hs + n_other} measurement(s) × "
          f"{cfg.runs} run(s); server side on core {server_cpu}, clients on "
          f"core {client_cpu}; about {est / 60:.0f} min; output in "
          f"{rb.rel(out)}/", flush=True)
    print(f"kernel TLS: {'available' if ok else 'not available'} ({detail})",
          flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="sockit-tls-"))
    rows = {}
    interrupted = False
    try:
        make_certs(tmp)
        confs = {p: client_conf(tmp, p) for p in PROTOS}
        if re.search(args.tests, "bulk-128K"):
            try:
                res["reference"] = openssl_speed(cfg)
            except (rb.BenchError, subprocess.SubprocessError) as e:
                res["reference"] = {"error": str(e)}
        for i in range(cfg.runs):
            run_round(cfg, args, tmp, confs, kinds, rows, i)
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: stopping everything", file=sys.stderr)
    finally:
        rb.cleanup_all()
        shutil.rmtree(tmp, ignore_errors=True)
    summarize_rows(rows, kinds)
    res["rows"] = list(rows.values())
    rb.write_json(out / "tls.json", res)
    print_report(res)
    print(f"\nresults: {rb.rel(out)}/tls.json (bench/run.py --tls "
          f"{rb.rel(out)}/tls.json renders the plot and the doc section)")
    return 130 if interrupted else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    finally:
        rb.cleanup_all()
