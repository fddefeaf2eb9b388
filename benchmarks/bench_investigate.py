"""Cold vs warm `llmrca investigate INC-0001`: the whole root-cause run, then read back.

Builds (or reuses) a zoo into a fresh store, ingests INC-0001, then runs
``llmrca investigate INC-0001 --samples N`` as separate processes: cold (every replay,
attribution and test computed) and warm (every hypothesis stored: nothing is recomputed and no
model is loaded). Reports the wall time of each process, which heavy modules it imported, the
verdicts and the proposed root cause, and the cold/warm ratio.

Usage:
    python benchmarks/bench_investigate.py [--zoo default|test] [--samples 20] [--repeat 3]

``--zoo default`` is the demo's zoo (trained on first use, about 3 minutes on 2 cores);
``--zoo test`` reuses the test suite's cached zoo (.llmrca/test-cache).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_warm import ROOT, TEST_CACHE, llmrca


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="default")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to time")
    parser.add_argument("--judge", action="append", default=None,
                        help="replay judges (default: the incident category's)")
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    workdir = Path(tempfile.mkdtemp(prefix="llmrca-bench-investigate-"))
    db = str(workdir / "bench.duckdb")
    try:
        zoo = ["zoo", "build"] + (["--test", "--cache-dir", str(TEST_CACHE)]
                                  if args.zoo == "test" else [])
        llmrca(["--db", db, *zoo], env)
        llmrca(["--db", db, "ingest", str(ROOT / "data" / "incidents" / "INC-0001")], env)
        command = ["--db", db, "investigate", "INC-0001", "--samples", str(args.samples)]
        for judge in args.judge or []:
            command += ["--judge", judge]
        runs = [("cold", *llmrca(command, env))]
        runs += [("warm", *llmrca(command, env)) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"## `llmrca investigate INC-0001 --samples {args.samples}` ({args.zoo} zoo), one "
          f"process per run\n")
    print("| run | seconds | heavy modules imported |")
    print("|---|---:|---|")
    for label, secs, out in runs:
        heavy = next((x.split(" ", 1)[1] for x in out.splitlines() if x.startswith("HEAVY")), "?")
        print(f"| {label} | {secs:.2f} | {heavy} |")
    cold = runs[0][1]
    warm = statistics.median(s for label, s, _ in runs if label == "warm")
    print(f"\ncold / warm (median of {args.repeat}): **{cold / warm:.1f}x**\n")
    out = runs[0][2]
    print("verdicts (cold run):\n")
    print("\n".join(line for line in out.splitlines() if not line.startswith("HEAVY")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
