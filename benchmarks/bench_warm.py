"""Cold vs warm replay from the command line: does a fully cached replay skip the models?

Builds (or reuses) a zoo into a fresh store, ingests INC-0001, then runs the same
``llmrca replay INC-0001 --versions assistant-v1 assistant-v2`` twice as separate processes:
cold (every sample generated) and warm (every sample in the store). Reports wall time of each
process, samples generated, forward passes, and which heavy modules the process imported.

Usage:
    python benchmarks/bench_warm.py [--zoo test|default] [--samples 20] [--repeat 3]

``--zoo test`` reuses the test suite's cached zoo (.llmrca/test-cache); ``default`` the demo's
(trained on first use).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TEST_CACHE = ROOT / ".llmrca" / "test-cache"
PROBE = ("import sys; from llmrca.cli import main; code = main(sys.argv[1:]); "
         "print('HEAVY', ','.join(m for m in ('torch', 'transformers', 'sklearn') "
         "if m in sys.modules) or '-'); sys.exit(code)")


def llmrca(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          check=False,
                          env=env, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"llmrca {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="test")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to time")
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    workdir = Path(tempfile.mkdtemp(prefix="llmrca-bench-warm-"))
    db = str(workdir / "bench.duckdb")
    try:
        zoo = ["zoo", "build"] + (["--test", "--cache-dir", str(TEST_CACHE)]
                                  if args.zoo == "test" else [])
        llmrca(["--db", db, *zoo], env)
        llmrca(["--db", db, "ingest", str(ROOT / "data" / "incidents" / "INC-0001")], env)
        replay = ["--db", db, "replay", "INC-0001", "--versions", "assistant-v1",
                  "assistant-v2", "--samples", str(args.samples), "--no-progress"]
        runs = [("cold", *llmrca(replay, env))]
        runs += [("warm", *llmrca(replay, env)) for _ in range(args.repeat)]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"## `llmrca replay INC-0001 --versions assistant-v1 assistant-v2 --samples "
          f"{args.samples}` ({args.zoo} zoo), one process per run\n")
    print("| run | seconds | samples | heavy modules imported |")
    print("|---|---:|---|---|")
    for label, secs, out in runs:
        line = next((x for x in out.splitlines() if x.startswith("samples:")), "")
        heavy = next((x.split(" ", 1)[1] for x in out.splitlines() if x.startswith("HEAVY")), "?")
        shown = re.sub(r"^samples: ", "", line)
        print(f"| {label} | {secs:.2f} | {shown} | {heavy} |")
    cold = runs[0][1]
    warm = statistics.median(s for label, s, _ in runs if label == "warm")
    print(f"\ncold / warm (median of {args.repeat}): **{cold / warm:.1f}x**")
    return 0


if __name__ == "__main__":
    sys.exit(main())
