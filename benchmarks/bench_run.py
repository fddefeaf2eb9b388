"""`llmrca run` cold (empty replay cache) against warm (the same run again: every replay from the
store's cache), on a fresh store with the model-organism zoo and one sample incident.

    python benchmarks/bench_run.py [--zoo test|default] [--incident INC-0001] [--samples 20]

Prints per-notebook seconds for both runs and the ratio. Kernel start-up and imports (about
3-5 s per notebook here) are in both; the difference is generation and scoring.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoo", choices=["test", "default"], default="test")
    parser.add_argument("--incident", default="INC-0001")
    parser.add_argument("--samples", type=int, default=20)
    args = parser.parse_args()

    from llmrca.ingest import ingest_bundle
    from llmrca.reports import run_suite
    from llmrca.store import Store
    from llmrca.zoo import DEFAULT_SPEC, TEST_SPEC, build_zoo, register_zoo

    spec = TEST_SPEC if args.zoo == "test" else DEFAULT_SPEC
    cache = REPO / ".llmrca" / ("test-cache" if args.zoo == "test" else "cache")
    zoo = build_zoo(spec, cache_dir=cache)
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        with Store(db) as store:
            register_zoo(store, zoo)
            ingest_bundle(store, REPO / "data" / "incidents" / args.incident)
        timings = {}
        for name in ("cold", "warm"):
            started = time.perf_counter()
            result = run_suite(args.incident, store_path=db, samples=args.samples,
                               out=Path(tmp) / "reports", run_id=name)
            total = time.perf_counter() - started
            counts = json.loads((result.output_dir / "results" / "reproduction.json")
                                .read_text())["data"]["counts"]
            timings[name] = total
            per = ", ".join(f"{r.name} {r.seconds:.1f} s" for r in result.notebooks)
            print(f"{name}: {total:.1f} s ({per}); reproduction samples: "
                  f"{counts['generated']} generated, {counts['cached']} cached")
        print(f"zoo {args.zoo}, {args.incident}, {args.samples} samples: cold {timings['cold']:.1f} s,"
              f" warm {timings['warm']:.1f} s, ratio {timings['cold'] / timings['warm']:.2f}x")


if __name__ == "__main__":
    main()
