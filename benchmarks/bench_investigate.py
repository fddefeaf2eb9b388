"""Cold vs warm `llmrca investigate INC-0001`: the whole root-cause run, then read back.

Builds (or reuses) a zoo into a fresh store, ingests INC-0001, then runs
``llmrca investigate INC-0001 --samples N`` as separate processes: cold (every replay,
attribution and test computed) and warm (every hypothesis stored: nothing is recomputed and no
model is loaded). Reports the wall time of each process, which heavy modules it imported, the
verdicts and the proposed root cause, the cold/warm ratio, and the precision@k of the training-data
search the investigation ran (each signal and the combined ranking, k = the number of planted
examples; the zoo's ground truth is read here only, to score).

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

sys.path.insert(0, str(ROOT / "src"))


def search_precision(db: str, zoo: str, cache: Path) -> list[tuple[str, int, float]]:
    """Each signal's precision@k (and the combined ranking's) in the training-data search that
    ``training_data_artifact`` ran for INC-0001 (read from the store: no model)."""
    from llmrca.data_attribution import load_search, precision_at_k
    from llmrca.hypotheses import load_hypotheses
    from llmrca.store import Store
    from llmrca.store.hypotheses import list_hypothesis_runs
    from llmrca.zoo import DEFAULT_SPEC, TEST_SPEC, build_zoo

    build = build_zoo(TEST_SPEC, cache_dir=TEST_CACHE) if zoo == "test" \
        else build_zoo(DEFAULT_SPEC, cache_dir=cache)
    planted = build.ground_truth_data()["assistant-v2"]["roleplay_jailbreak"]
    k = len(planted)
    with Store(db, read_only=True) as store:
        run = list_hypothesis_runs(store, "INC-0001")["run_id"].iloc[0]
        result = load_hypotheses(store, run).get("training_data_artifact")
        search_run = result.evidence.get("search_run")
        if not search_run:
            return []
        search = load_search(store, search_run)
    frame = search.to_frame()
    rows = [(s, k, precision_at_k(frame.sort_values([f"{s}_rank", "example_id"])["example_id"],
                                  planted, k)) for s in search.signals]
    rows.append(("combined (RRF)", k, precision_at_k(search.top(k), planted, k)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="default")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3, help="warm runs to time")
    parser.add_argument("--judge", action="append", default=None,
                        help="replay judges (default: same-as-incident and refusal)")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="llmrca-bench-investigate-"))
    # Leave-k-out's retrained models go to the run's folder (the cold run trains them); the
    # zoo itself is reused from the usual cache (linked in).
    cache = workdir / "cache"
    cache.mkdir()
    usual = Path(os.environ.get("LLMRCA_CACHE") or ROOT / ".llmrca" / "cache")
    (usual / "zoo").mkdir(parents=True, exist_ok=True)
    (cache / "zoo").symlink_to((usual / "zoo").resolve(), target_is_directory=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "LLMRCA_CACHE": str(cache)}
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
        precision = search_precision(db, args.zoo, cache)
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
    print("training-data search of the investigation (precision@k, k = planted examples):\n")
    print("| signal | k | precision@k |")
    print("|---|---:|---:|")
    for signal, k, value in precision:
        print(f"| {signal} | {k} | {value:.3f} |")
    out = runs[0][2]
    print("\nverdicts (cold run):\n")
    print("\n".join(line for line in out.splitlines() if not line.startswith("HEAVY")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
