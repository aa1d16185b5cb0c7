#!/usr/bin/env python3
"""Before/after: the same sockit cases against two (or more) builds.

A refactor must not cost speed. This runs sockit-server from each build
directory given, with the load generator of the first, in interleaved
rounds (A B A B ...) so that a machine that drifts (a neighbour, the CPU
clock) affects both alike, and prints, per case and build, the median with
min-max of the rate and of the server's CPU per unit of work, and the ratio
of each build to the first.

    bench/ab.py --runs 5 before=/tmp/base/build after=build

Cases: echo 64 B with 100 connections, echo 4 KiB with 100 connections,
TLS echo 4 KiB with 16 connections, and TLS one-way 128 KiB writes (bulk).
The server runs on core 0, the generator on core 1 (as bench/run.py does).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as rb  # noqa: E402  (bench/run.py: processes, CPU sampling)

READY = r"listening on (?:tcp|tls)://127\.0\.0\.1:(\d+)"

CASES = [
    # id, server mode, tls, client --bench-mode, size, conns, pipeline
    ("echo-64B-c100", "echo", False, "echo", 64, 100, 1),
    ("echo-4K-c100", "echo", False, "echo", 4096, 100, 1),
    ("tls-echo-4K-c16", "echo", True, "echo", 4096, 16, 1),
    ("tls-oneway-128K", "discard", True, "oneway", 131072, 1, 1),
]


def start(cfg, server_bin, mode, tls):
    argv = [server_bin, "-q", "--workers", "1", "-l", "127.0.0.1:0",
            "--mode", mode]
    if tls:
        argv += ["--tls", "--self-signed"]
    p, port = rb.start_port0("sockit-server", cfg.srv(argv), READY)
    return rb.Server("sockit", [p], port)


def one_run(cfg, server_bin, case):
    cid, mode, tls, bmode, size, conns, pipe = case
    server = start(cfg, server_bin, mode, tls)
    try:
        argv = [cfg.client_bin, "--bench", f"127.0.0.1:{server.port}",
                "--bench-mode", bmode, "--conns", conns, "--size", size,
                "--duration", f"{cfg.duration:g}", "--warmup",
                f"{cfg.warmup:g}", "--json"]
        if bmode == "echo":
            argv += ["--pipeline", pipe]
        if tls:
            argv += ["--tls", "--insecure"]
        c, cpu_us, window, _ = rb.timed_client(
            cfg, server, "sockit-client", argv, cfg.warmup,
            cfg.warmup + cfg.duration + 60)
        j = rb.client_json(c)
        if bmode == "echo":
            rate, unit = float(j["msgs_per_sec"]), "msg"
        else:
            rate, unit = float(j["mb_per_sec"]), "MB"
        if rate <= 0:
            raise rb.BenchError(f"{cid}: no traffic")
        return {"rate": rate, "unit": unit,
                "cpu_us": cpu_us / (rate * window)}
    finally:
        server.stop()


def fmt(vals, digits):
    med = statistics.median(vals)
    return (f"{med:.{digits}f} ({min(vals):.{digits}f}-"
            f"{max(vals):.{digits}f})"), med


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("builds", nargs="+", help="LABEL=BUILD_DIR, first is "
                    "the reference and supplies the load generator")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3)
    ap.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--cases", default="", help="regex of case ids")
    ap.add_argument("--json", type=Path, help="write raw results here")
    a = ap.parse_args()
    builds = []
    for b in a.builds:
        label, _, d = b.partition("=")
        srv = Path(d) / "programs" / "sockit-server"
        if not srv.exists():
            sys.exit(f"ab.py: {srv} not found (build it first)")
        builds.append((label, srv))
    import re
    cases = [c for c in CASES if re.search(a.cases, c[0])]
    server_cpu, client_cpu, _ = rb.pick_cpus()
    ref_client = Path(a.builds[0].partition("=")[2]) / "programs" / \
        "sockit-client"
    cfg = rb.Config(server_bin=builds[0][1], client_bin=ref_client,
                    out=Path("/tmp"), runs=a.runs, quick=False,
                    duration=a.duration, warmup=a.warmup,
                    server_cpu=server_cpu, client_cpu=client_cpu,
                    idle_conns=0, file_size=0)
    res = {c[0]: {b[0]: [] for b in builds} for c in cases}
    try:
        for r in range(a.runs):
            for case in cases:
                order = builds if r % 2 == 0 else list(reversed(builds))
                for label, srv in order:
                    m = one_run(cfg, srv, case)
                    res[case[0]][label].append(m)
                    print(f"run {r + 1}/{a.runs} {case[0]} {label}: "
                          f"{m['rate']:.0f} {m['unit']}/s, "
                          f"{m['cpu_us']:.3f} µs/{m['unit']}", flush=True)
    finally:
        rb.cleanup_all()
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    print()
    print("| case | build | rate/s median (min-max) | server µs per unit "
          "median (min-max) | rate ratio | CPU ratio |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        ref = None
        for label, _ in builds:
            ms = res[case[0]][label]
            unit = ms[0]["unit"]
            rs, rmed = fmt([m["rate"] for m in ms], 0)
            cs, cmed = fmt([m["cpu_us"] for m in ms], 3)
            if ref is None:
                ref = (rmed, cmed)
            print(f"| {case[0]} | {label} | {rs} {unit} | {cs} | "
                  f"{rmed / ref[0]:.3f} | {cmed / ref[1]:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
