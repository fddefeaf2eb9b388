"""Ingest benchmark: `llmrca ingest` of a large JSONL log against DuckDB's own `read_json`.

Generates a synthetic production log (default 1,000,000 rows, and a quarter of it to show how
peak memory scales), then for each size measures in fresh processes:

- `llmrca ingest` of a bundle holding that log (one read into a TEMP table, validation, salted
  hashing, content-hash ids and their dedupe), wall time and peak RSS;
- DuckDB's `CREATE TABLE AS SELECT * FROM read_json(file)` of the same file, wall time and peak RSS.

Each side runs ``--repeat`` times (fresh store each time) and the median is reported, for wall
time and for CPU time (user + system of the child, all its threads): on a shared machine the CPU
seconds are the steadier measure. Prints a Markdown table and the ratios ingest/read_json. Usage:
    python benchmarks/bench_ingest.py [--rows 1000000] [--repeat 3] [--workdir /tmp/llmrca-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import llmrca
from llmrca.samples import log_rows, write_log_rows

#: The source tree this script imported llmrca from; the measured child runs the same code (the
#: venv's `llmrca` script could point at another checkout).
SRC = str(Path(llmrca.__file__).resolve().parents[1])

READ_JSON = """
import duckdb, sys
con = duckdb.connect(sys.argv[1])
con.execute("SET enable_progress_bar = false")
con.execute("CREATE TABLE t AS SELECT * FROM read_json(?, format='newline_delimited')", [sys.argv[2]])
print(con.execute("SELECT count(*) FROM t").fetchall()[0][0])
"""


def run_measured(cmd: list[str], env: dict | None = None) -> tuple[float, float, float, str]:
    """Wall seconds, CPU seconds (user + system), peak RSS (MiB) of the child, and its stdout."""
    wrapper = [sys.executable, "-c",
               ("import resource, subprocess, sys, time, json\n"
               "t = time.perf_counter()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "dt = time.perf_counter() - t\n"
               "ru = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
               "rss, cpu = ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime\n"
               "print(json.dumps({'rc': p.returncode, 'dt': dt, 'cpu': cpu, 'rss': rss,"
               " 'out': p.stdout,"
               " 'err': p.stderr[-2000:]}))\n"), *cmd]
    result = json.loads(subprocess.run(wrapper, capture_output=True, text=True, env=env,
                                       check=True).stdout)
    if result["rc"] != 0:
        raise RuntimeError(f"{cmd} failed: {result['err']}")
    return result["dt"], result["cpu"], result["rss"], result["out"]


def make_bundle(folder: Path, rows: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "incident.yaml").write_text(
        "id: BENCH-1\ntitle: ingest benchmark\ndetected_at: 2026-10-14T09:12:00Z\n"
        "category: jailbreak\n")
    write_log_rows(folder / "logs.jsonl", log_rows(
        rows, start=datetime(2026, 10, 1), end=datetime(2026, 10, 31),
        switch_at=datetime(2026, 10, 12), old_version="assistant-v1",
        new_version="assistant-v2", seed=7, jailbreak_share=0.01))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", default="/tmp/llmrca-bench")
    args = parser.parse_args()
    work = Path(args.workdir)
    shutil.rmtree(work, ignore_errors=True)
    pythonpath = os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p)
    results = []
    for rows in (args.rows // 4, args.rows):
        t = time.perf_counter()
        bundle = make_bundle(work / f"bundle-{rows}", rows)
        gen = time.perf_counter() - t
        size_mb = (bundle / "logs.jsonl").stat().st_size / 2**20
        ingest, raw = [], []
        for i in range(args.repeat):  # alternate the sides, so that a busy spell hits both
            env = {**os.environ, "LLMRCA_DB": str(work / f"ingest-{rows}-{i}.duckdb"),
                   "PYTHONPATH": pythonpath}
            *measured, out = run_measured(
                [sys.executable, "-m", "llmrca", "ingest", str(bundle)], env=env)
            assert f"{rows} read, {rows} new" in out, out
            ingest.append(measured)
            *measured, out = run_measured([sys.executable, "-c", READ_JSON,
                                           str(work / f"raw-{rows}-{i}.duckdb"),
                                           str(bundle / "logs.jsonl")])
            assert int(out.strip()) == rows
            raw.append(measured)
            for db in work.glob("*.duckdb*"):  # each run starts from a fresh store
                db.unlink()
            print(f"{rows} rows, run {i + 1}: ingest {ingest[-1][0]:.1f} s ({ingest[-1][1]:.1f} "
                  f"CPU-s), read_json {raw[-1][0]:.1f} s ({raw[-1][1]:.1f} CPU-s)",
                  file=sys.stderr)
        med = [[statistics.median(run[k] for run in side) for k in range(3)]
               for side in (ingest, raw)]
        results.append((rows, size_mb, gen, *med[0], *med[1]))

    print(f"\nIngest benchmark, {datetime.now():%Y-%m-%d}, {os.cpu_count()} cores, median of "
          f"{args.repeat}\n")
    print("| rows | file MiB | llmrca ingest s | read_json s | ratio | ingest CPU-s "
          "| read_json CPU-s | CPU ratio | ingest peak RSS MiB | read_json peak RSS MiB |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for rows, size_mb, _, i_s, i_cpu, i_rss, r_s, r_cpu, r_rss in results:
        print(f"| {rows:,} | {size_mb:.0f} | {i_s:.1f} | {r_s:.1f} | {i_s / r_s:.2f}x | "
              f"{i_cpu:.1f} | {r_cpu:.1f} | {i_cpu / r_cpu:.2f}x | {i_rss:.0f} | {r_rss:.0f} |")
    small, big = results[0], results[-1]
    print(f"\npeak RSS grows {big[5] / small[5]:.2f}x for {big[0] / small[0]:.0f}x the rows "
          f"(read_json: {big[8] / small[8]:.2f}x)")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
